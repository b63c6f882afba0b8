"""The tiny digits training run the training tests share (imported, not collected)."""

from __future__ import annotations

from pathlib import Path

from spikeflow.training import TrainConfig
from spikeflow.training.config import config_from_dict

#: A tiny digits run: ~0.1 s per epoch.
TINY = {
    "train_samples": 192, "test_samples": 96, "batch_size": 32, "T": 2, "epochs": 3,
    "model_kwargs": {"channels": 8, "hidden": 32}, "progress": False, "plots": "off",
    "device": "cpu",
}  # fmt: skip


def tiny(
    tmp_path: Path, name: str, *, base: dict[str, object] = TINY, **changes: object
) -> TrainConfig:
    """``base`` with ``changes``, writing to ``tmp_path / name``."""
    return config_from_dict({**base, "output_dir": str(tmp_path / name), **changes})
