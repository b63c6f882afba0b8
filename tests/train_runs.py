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


def check_resume_is_exact(tmp_path: Path, **changes: object) -> dict:
    """Train ``tiny(**changes)`` whole ("full") and stopped after one epoch then resumed
    ("split"); assert the two final models are equal; return the split run's first
    checkpoint payload (what the resume started from)."""
    import torch

    from spikeflow.training import Trainer, config_for_resume, load_checkpoint

    Trainer(tiny(tmp_path, "full", **changes), log=None).fit()
    Trainer(tiny(tmp_path, "split", stop_after=1, **changes), log=None).fit()
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    full, split = (load_checkpoint(tmp_path / n / "last.pt")["model"] for n in ("full", "split"))
    assert full.keys() == split.keys()
    for key in full:
        assert torch.equal(full[key], split[key]), key
    return payload
