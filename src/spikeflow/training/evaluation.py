"""``spikeflow eval``: a checkpoint's model on the test split of its dataset."""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from typing import Any

from spikeflow.training.checkpoint import load_checkpoint
from spikeflow.training.config import config_from_dict, resolve
from spikeflow.training.data import build_datasets
from spikeflow.training.distributed import DistContext, pick_device
from spikeflow.training.loop import evaluate
from spikeflow.training.trainer import build_model

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(
    path: str | os.PathLike,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """Loss, accuracy, mean firing rate and per-layer statistics of the model saved in the
    checkpoint ``path``, on the test split of the dataset it was trained on.

    ``data_dir`` overrides where that dataset is now; ``batch_size`` the evaluation batch.
    Returns a dict with ``test_loss``, ``test_acc``, ``test_rate``, ``samples``,
    ``epoch`` and ``layers`` (a list of dicts, one per spiking layer).
    """
    payload = load_checkpoint(path)
    config = config_from_dict(payload["config"])
    if data_dir is not None:
        config = replace(config, data_dir=data_dir)
    config = resolve(config)
    _, test_set, info = build_datasets(config)
    ctx = DistContext(device=pick_device(device))
    model = build_model(config, info).to(ctx.device)
    model.load_state_dict(payload["model"])
    sums, rate, layers = evaluate(
        model, test_set, _loss(config), T=config.T, static=info.static,  # type: ignore[arg-type]
        batch_size=batch_size or config.batch_size, ctx=ctx, amp=config.amp, workers=workers,
    )  # fmt: skip
    return {
        "checkpoint": str(path),
        "epoch": int(payload["epoch"]),
        "samples": int(sums.count),
        "test_loss": sums.mean_loss,
        "test_acc": sums.accuracy,
        "test_rate": rate,
        "layers": [asdict(s) for s in layers],
    }


def _loss(config: Any) -> Any:
    from spikeflow.losses import get_loss

    return get_loss(config.loss, **config.loss_kwargs)
