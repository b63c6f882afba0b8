"""``spikeflow eval RUN --energy neuromc``: one training step of a trained run, priced on
NeuroMC's accelerator (:func:`spikeflow.energy.neuromc_energy_report`).

The step is the one the run would take next: its model (the checkpoint's weights) in
training mode on the first ``batch_size`` test samples, as the trainer feeds them
(time-major, a static image repeated over the ``T`` steps), the run's loss, and its
optimizer (``--optimizer``, ``--momentum``, ``--weight-decay``) with SGD's momentum
buffers present, as after the first step. Nothing is updated.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from spikeflow.errors import ConfigurationError

__all__ = ["ENERGY_MODELS", "format_neuromc", "price_training_step"]

#: The names ``--energy`` takes.
ENERGY_MODELS = ("neuromc",)


def _optimizer(config: Any, model: nn.Module) -> torch.optim.Optimizer:
    """The run's optimizer over the model's trained parameters, SGD's momentum buffers
    present (a step of a run under way reads them)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)  # fmt: skip
        if config.momentum > 0:
            for p in params:
                opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return opt
    if config.optimizer in ("adam", "adamw"):
        cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ConfigurationError(f"--energy neuromc: the run's optimizer {config.optimizer!r} "
                             "is not one NeuroMC prices (sgd, adam, adamw)")  # fmt: skip


def price_training_step(
    model: nn.Module,
    test_set: Dataset,
    config: Any,
    loss_fn: Any,
    static: Any,
    *,
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """NeuroMC's joules of one training step of ``model`` on the first ``batch_size``
    samples of ``test_set`` (fewer if it is smaller), for ``spikeflow eval``'s result:
    ``samples``, ``total_j``, ``per_sample_j``, ``compute_j``, ``memory_j``,
    ``by_phase_j`` and ``layers`` (``name``, ``phase``, ``joules``)."""
    from spikeflow.energy import neuromc_energy_report
    from spikeflow.training.data import to_time_major

    count = min(batch_size, len(test_set))  # type: ignore[arg-type]
    xs, ys = zip(*(test_set[i] for i in range(count)), strict=True)
    x = to_time_major(torch.stack([torch.as_tensor(v) for v in xs]).to(device), config.T, static)
    y = torch.as_tensor(ys).to(device)
    was_training = model.training
    model.train()
    try:
        report = neuromc_energy_report(model, x, y, loss_fn, _optimizer(config, model))
    finally:
        model.train(was_training)
    rows: dict[tuple[str, str], float] = {}
    for work in report.works:
        rows[(work.name, work.phase)] = rows.get((work.name, work.phase), 0.0) + work.total
    return {
        "samples": report.samples,
        "total_j": report.total,
        "per_sample_j": report.total / report.samples,
        "compute_j": report.compute,
        "memory_j": report.memory,
        "by_phase_j": report.by_phase(),
        "layers": [{"name": n, "phase": p, "joules": j} for (n, p), j in rows.items()],
    }


def format_neuromc(result: dict[str, Any]) -> list[str]:
    """The lines ``spikeflow eval`` prints for :func:`price_training_step`'s result."""
    width = max([28, *(len(row["name"]) for row in result["layers"])])
    lines = ["", f"  {'layer (NeuroMC training step)':<{width}} {'phase':<9} {'µJ':>12}"]
    for row in result["layers"]:
        lines.append(f"  {row['name']:<{width}} {row['phase']:<9} {row['joules'] * 1e6:12.4g}")
    phases = ", ".join(f"{p} {j * 1e6:.4g} µJ" for p, j in result["by_phase_j"].items())
    lines.append(
        f"  NeuroMC training step on {result['samples']} test samples: "
        f"{result['total_j'] * 1e6:.4g} µJ ({result['per_sample_j'] * 1e6:.4g} µJ a sample; "
        f"{phases}; compute {result['compute_j'] * 1e6:.4g} µJ, memory "
        f"{result['memory_j'] * 1e6:.4g} µJ; docs/energy.md)"
    )
    return lines
