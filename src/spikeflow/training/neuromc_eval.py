"""``spikeflow eval RUN --energy neuromc``: one training step of a trained run, priced on
NeuroMC's accelerator (:func:`spikeflow.energy.neuromc_energy_report`).

The step is the one the run would take next: its model (the checkpoint's weights) in
training mode on the first ``batch_size`` test samples, as the trainer feeds them
(time-major, a static image repeated over the ``T`` steps), the run's loss, and the
optimizer the run trained with: built by the trainer's own builder
(:mod:`~spikeflow.training.run_optimizer`: ``--optimizer``, ``--momentum``,
``--weight-decay`` and the run's parameter groups, e.g. ``--no-decay-norm-bias``'s
groups without weight decay, the delays' and DECOLLE's layers' own rates), in the
state the checkpoint saved (SGD's momentum buffers as the run left them). Nothing is
updated.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from spikeflow.errors import ConfigurationError

__all__ = [
    "ENERGY_MODELS",
    "format_neuromc",
    "price_training_step",
    "refuse_unpriced_training",
    "trained_optimizer",
]

#: The names ``--energy`` takes.
ENERGY_MODELS = ("neuromc",)


def _refuse_unpriced_optimizer(config: Any) -> None:
    """Refuse a run whose optimizer NeuroMC does not price (before any evaluation).

    Raises:
        ConfigurationError: an optimizer other than sgd, adam and adamw, or SGD with
            Nesterov momentum.
    """
    if config.optimizer not in ("sgd", "adam", "adamw"):
        raise ConfigurationError(f"--energy neuromc: the run's optimizer {config.optimizer!r} "
                                 "is not one NeuroMC prices (sgd, adam, adamw)")  # fmt: skip
    if getattr(config, "nesterov", False):  # one more multiply-add per weight than SGD's
        raise ConfigurationError("--energy neuromc: the run's optimizer is SGD with Nesterov "
                                 "momentum (--nesterov), which NeuroMC does not price")  # fmt: skip


def refuse_unpriced_training(config: Any) -> None:
    """Refuse a run whose training step is not one BPTT step (a forward over the ``T``
    steps, one backward, one update), the only step NeuroMC's report prices.

    Raises:
        ConfigurationError: naming the run's training method: truncated BPTT or FPTT
            (``--tbptt``, ``--fptt``), online training (``--online``: SLTT, OTTT with
            ``--online-trace-decay``), e-prop (``--eprop``), EventProp (``--eventprop``)
            or DECOLLE (``--decolle``), or its optimizer, when NeuroMC does not price it.
    """
    _refuse_unpriced_optimizer(config)  # refused before the test pass, not after
    base = "--energy neuromc prices one BPTT step (a forward over the T steps, one backward, "
    base += "one update); this run trained with "
    if config.tbptt is not None:
        fptt = "" if config.fptt is None else f" --fptt {config.fptt:g},"
        raise ConfigurationError(
            f"{base}truncated BPTT (--tbptt {config.tbptt},{fptt} --tbptt-update "
            f"{config.tbptt_update}): a backward per window of K steps"
            + (", an update after each" if config.tbptt_update == "window" else "")
            + (" and FPTT's penalty and running-mean updates" if fptt else "")
            + ", which it does not price"
        )
    if config.online:
        method = "SLTT" if config.online_trace_decay is None else "OTTT"
        flags = "--online" + ("" if method == "SLTT" else " --online-trace-decay")
        raise ConfigurationError(
            f"{base}online training ({method}, {flags}): a backward per time step with "
            "no gradient through the carried state"
            + (" and the presynaptic traces' updates" if method == "OTTT" else "")
            + ", which it does not price"
        )
    if config.eprop is not None:
        raise ConfigurationError(
            f"{base}e-prop (--eprop {config.eprop}): eligibility traces updated forward "
            "in time and the learning signal's feedback in place of a backward pass, "
            "which it does not price"
        )
    if config.eventprop is not None:
        raise ConfigurationError(
            f"{base}EventProp (--eventprop {config.eventprop}): the adjoint's backward "
            "integrates the state backward in time and jumps at the recorded spike times "
            "in place of autograd's backward, which it does not price"
        )
    if config.decolle:
        raise ConfigurationError(
            f"{base}DECOLLE (--decolle, --decolle-update {config.decolle_update}): every "
            "layer's local readout loss backpropagated one step at a time"
            + (", an update after each" if config.decolle_update == "step" else "")
            + ", which it does not price"
        )


def trained_optimizer(
    config: Any,
    model: nn.Module,
    saved: dict[str, Any] | None = None,
    source: str = "the checkpoint",
) -> torch.optim.Optimizer:
    """The optimizer the run trained ``model`` with, as its trainer builds it
    (:func:`~spikeflow.training.run_optimizer.build_run_optimizer`: its parameter groups,
    their learning rates and weight decay, Grad R's optimizer, e-prop's feedback), in
    the state the checkpoint saved (``saved``, its ``"optimizer"``; SGD's momentum
    buffers as the run left them, which its next step reads), else in its first step's.

    Raises:
        ConfigurationError: the checkpoint's optimizer (from ``source``) has other
            groups than the run's options build (an older spikeflow's run), or the
            run's optimizer is not one NeuroMC prices.
    """
    from spikeflow.training.eprop import eprop_rule
    from spikeflow.training.run_optimizer import build_run_optimizer

    _refuse_unpriced_optimizer(config)
    eprop = eprop_rule(config, model, distributed=False)  # its adaptive B is stepped too
    optimizer = build_run_optimizer(config, model, eprop=eprop)
    if saved:
        try:
            optimizer.load_state_dict(saved)
        except ValueError as exc:
            built = [len(g["params"]) for g in optimizer.param_groups]
            held = [len(g["params"]) for g in saved.get("param_groups", [])]
            raise ConfigurationError(
                f"--energy neuromc: the optimizer in {source} has parameter groups of "
                f"sizes {held}, the run's options build groups of sizes {built} ({exc}): "
                "a run of another spikeflow version? Its optimizer cannot be priced"
            ) from None
    return optimizer


def price_training_step(
    model: nn.Module,
    test_set: Dataset,
    config: Any,
    loss_fn: Any,
    static: Any,
    *,
    batch_size: int,
    device: torch.device,
    saved_optimizer: dict[str, Any] | None = None,
    source: str = "the checkpoint",
) -> dict[str, Any]:
    """NeuroMC's joules of one training step of ``model`` on the first ``batch_size``
    samples of ``test_set`` (fewer if it is smaller), with the run's optimizer
    (:func:`trained_optimizer`, its state ``saved_optimizer`` from ``source``), for
    ``spikeflow eval``'s result: ``samples``, ``total_j``, ``per_sample_j``,
    ``compute_j``, ``memory_j``, ``by_phase_j`` and ``layers`` (``name``, ``phase``,
    ``joules``)."""
    from spikeflow.energy import neuromc_energy_report
    from spikeflow.training.data import to_time_major

    count = min(batch_size, len(test_set))  # type: ignore[arg-type]
    xs, ys = zip(*(test_set[i] for i in range(count)), strict=True)
    x = to_time_major(torch.stack([torch.as_tensor(v) for v in xs]).to(device), config.T, static)
    y = torch.as_tensor(ys).to(device)
    was_training = model.training
    model.train()
    try:
        optimizer = trained_optimizer(config, model, saved_optimizer, source)
        report = neuromc_energy_report(model, x, y, loss_fn, optimizer)
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
