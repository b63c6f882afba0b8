"""One pass over a dataset: the training epoch and the evaluation, with their running sums.

Both work on time-major batches (see :func:`spikeflow.training.data.to_time_major`) and
take the prediction as the class with the largest time-mean output.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Self

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from spikeflow.losses.readout import predict
from spikeflow.training.data import StaticLayout, to_time_major
from spikeflow.training.distributed import DistContext
from spikeflow.training.fsdp import is_sharded
from spikeflow.training.monitors import LayerStats, SpikeMonitor

__all__ = [
    "EpochSums",
    "autocast_context",
    "count_correct",
    "epoch_learning_rates",
    "evaluate",
    "lockstep_forwards",
    "make_lr_scheduler",
    "missing_forwards",
    "monitor_results",
    "reduce_monitor",
]

#: The "linear" / "constant" warm-up's factor of ``lr`` when ``warmup_factor`` is None
#: (SpikingJelly's ``--lr-warmup-decay`` default).
WARMUP_FACTOR = 0.01


@dataclass
class EpochSums:
    """Running sums of one pass: loss x samples, correct predictions, samples, and the
    spike regulariser's term x samples (``--spike-reg``; not in ``loss``)."""

    loss: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    spike_reg: float = 0.0

    def add(self, loss: float, correct: float, count: float, spike_reg: float = 0.0) -> None:
        self.loss += loss
        self.correct += correct
        self.count += count
        self.spike_reg += spike_reg

    def reduced(self, ctx: DistContext) -> Self:
        """The sums over all processes: every field (a subclass's too), summed, as an
        instance of the same class."""
        values = [getattr(self, f.name) for f in fields(self)]
        return type(self)(*ctx.all_reduce_sum(values))

    @property
    def mean_spike_reg(self) -> float:
        return self.spike_reg / self.count if self.count else float("nan")

    @property
    def mean_loss(self) -> float:
        return self.loss / self.count if self.count else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else float("nan")

    def state_dict(self) -> dict[str, float]:
        return asdict(self)


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp`` = ``"bf16"``/``"fp16"``, a no-op for ``"off"``."""
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer, config: Any
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch learning-rate schedule of ``config.schedule``: ``"cosine"`` over
    the epochs (down to ``lr_min``; a group at ``s · lr`` to ``s · lr_min``), ``"step"``
    (``step_size``, ``gamma``), ``"exponential"`` (the rate times ``gamma`` every
    epoch), or None for ``"none"``;
    after ``config.warmup_epochs`` epochs of warm-up, when set, over the epochs that
    remain. The warm-up (``warmup_method``): ``"ramp"``, epoch ``k`` at ``lr (k + 1) /
    (warmup + 1)``; ``"linear"`` / ``"constant"``, torch's LinearLR / ConstantLR with
    ``warmup_factor`` over ``warmup`` epochs, then the schedule in a SequentialLR:
    SpikingJelly's (and torchvision's) ``train_classify`` composition."""
    warmup = getattr(config, "warmup_epochs", 0)
    main: torch.optim.lr_scheduler.LRScheduler | None = None
    lr_min = getattr(config, "lr_min", 0.0)
    if config.schedule == "cosine" and lr_min:
        main = _cosine_with_floor(optimizer, config.epochs - warmup, lr_min / config.lr)
    elif config.schedule == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs - warmup)
    elif config.schedule == "step":
        main = torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    elif config.schedule == "exponential":
        main = torch.optim.lr_scheduler.ExponentialLR(optimizer, config.gamma)
    if not warmup:
        return main
    method = getattr(config, "warmup_method", "ramp")
    factor = getattr(config, "warmup_factor", None)
    factor = WARMUP_FACTOR if factor is None else factor
    ramp: torch.optim.lr_scheduler.LRScheduler
    if method == "linear":
        ramp = torch.optim.lr_scheduler.LinearLR(optimizer, factor, total_iters=warmup)
    elif method == "constant":
        ramp = torch.optim.lr_scheduler.ConstantLR(optimizer, factor, total_iters=warmup)
    else:
        ramp = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: min(1.0, (epoch + 1) / (warmup + 1))
        )
    if main is None:
        return ramp
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def _cosine_with_floor(
    optimizer: torch.optim.Optimizer, epochs: int, floor: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """CosineAnnealingLR's closed form over ``epochs`` down to ``floor`` times each
    group's own rate: ``lr_min`` for a group at ``lr``, ``s · lr_min`` for one at ``s ·
    lr`` (torch's single ``eta_min`` would pull a group below it up to it)."""

    def factor(epoch: int) -> float:
        return floor + (1 - floor) * (1 + math.cos(math.pi * epoch / epochs)) / 2

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_learning_rates(config: Any) -> list[float]:
    """The learning rate of each epoch of a run with ``config`` (``lr``, ``schedule``,
    ``epochs``), from the same schedulers as the run."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    scheduler = make_lr_scheduler(optimizer, config)
    rates = []
    for _ in range(config.epochs):
        rates.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()  # (no gradient: nothing moves; keeps the scheduler's order check)
        if scheduler is not None:
            scheduler.step()
    return rates


def count_correct(out_seq: Tensor, target: Tensor, readout: str = "rate") -> float:
    """Samples whose predicted class (:func:`spikeflow.losses.predict` with ``readout``)
    is the label."""
    return float((predict(out_seq, readout) == target).sum())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    T: int,
    static: StaticLayout,
    batch_size: int,
    ctx: DistContext,
    amp: str = "off",
    workers: int = 0,
    membrane: bool = True,
    progress: bool = False,
    readout: str = "rate",
) -> tuple[EpochSums, float, list[LayerStats]]:
    """Loss and accuracy of ``model`` (in eval mode) on ``dataset``, its mean firing rate
    and per-layer statistics; each process takes every ``world_size``-th sample and the
    sums are reduced over the processes (no sample is counted twice). ``progress``
    shows a progress bar (on rank 0) with the running loss and accuracy; ``readout``
    reads the predicted class (:func:`spikeflow.losses.predict`). An FSDP-sharded
    ``model`` gathers its weights in every forward, with every process: a process with
    fewer batches runs its first one again, uncounted, until all have run as many."""
    was_training = model.training
    model.eval()
    indices = list(range(ctx.rank, len(dataset), ctx.world_size))  # type: ignore[arg-type]
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=indices, num_workers=workers,
        generator=torch.Generator().manual_seed(0), pin_memory=ctx.device.type == "cuda",
    )  # fmt: skip
    sums = EpochSums()
    monitor = SpikeMonitor(model, membrane=membrane)
    bar = tqdm(total=len(loader), desc="test", disable=not (progress and ctx.is_main),
               leave=False, dynamic_ncols=True)  # fmt: skip
    first = None
    missing = missing_forwards(model, ctx, len(loader))
    try:
        for x, y in loader:
            first = x if first is None else first
            x = to_time_major(x.to(ctx.device, non_blocking=True), T, static)
            y = y.to(ctx.device, non_blocking=True)
            with autocast_context(ctx.device, amp):
                out = model(x)
            loss = loss_fn(out.float(), y)
            sums.add(float(loss) * len(y), count_correct(out, y, readout), len(y))
            bar.update(1)
            bar.set_postfix(loss=f"{sums.mean_loss:.4f}", acc=f"{sums.accuracy:.3f}",
                            refresh=False)  # fmt: skip
        layer_stats, rate = monitor_results(model, dataset, first, missing, monitor, ctx,
                                            T, static, amp)  # fmt: skip
    finally:
        bar.close()
        monitor.remove()
        model.train(was_training)
    total = sums.reduced(ctx)
    return total, rate, layer_stats


def missing_forwards(model: nn.Module, ctx: DistContext, batches: int) -> int:
    """How many forwards more than its own ``batches`` this process must run in an
    evaluation: an FSDP-sharded ``model`` gathers weights with every process in each
    forward, so each runs as many as the process with the most batches (0 unsharded).
    Every process calls it before its first forward."""
    if not (ctx.distributed and is_sharded(model)):
        return 0
    return max(ctx.all_gather_object(batches)) - batches


def lockstep_forwards(
    model: nn.Module,
    dataset: Dataset,
    first: Tensor | None,
    missing: int,
    monitor: SpikeMonitor,
    prepare: Callable[[Tensor], Tensor],
    autocast: Callable[[], Any],
) -> None:
    """Run ``model`` (FSDP-sharded) ``missing`` more times, uncounted (``monitor``
    paused), on this process's ``first`` batch (the dataset's first sample for a
    process that had none), so that it joins as many forwards as the process with the
    most batches."""
    if first is None:
        first = torch.as_tensor(dataset[0][0]).unsqueeze(0)
    x = prepare(first)
    monitor.enabled = False
    try:
        for _ in range(missing):
            with autocast():
                model(x)
    finally:
        monitor.enabled = True


def monitor_results(
    model: nn.Module,
    dataset: Dataset,
    first: Tensor | None,
    missing: int,
    monitor: SpikeMonitor,
    ctx: DistContext,
    T: int,
    static: StaticLayout,
    amp: str,
) -> tuple[list[LayerStats], float]:
    """The end of an evaluation's pass: the ``missing`` uncounted forwards an
    FSDP-sharded ``model`` still owes (:func:`lockstep_forwards`, on ``first``, as the
    pass prepared its batches), ``monitor`` summed over the processes
    (:func:`reduce_monitor`), then its per-layer statistics and mean firing rate."""
    if missing:
        lockstep_forwards(model, dataset, first, missing, monitor,
                          lambda x: to_time_major(x.to(ctx.device), T, static),
                          lambda: autocast_context(ctx.device, amp))  # fmt: skip
    reduce_monitor(monitor, ctx)
    return monitor.summary(), monitor.mean_firing_rate()


def reduce_monitor(monitor: SpikeMonitor, ctx: DistContext) -> None:
    """Replace the monitor's running sums by their sums over all processes (under
    ``--tensor-parallel``: the split neurons' over the tensor-parallel group first, then
    over the data-parallel one, see :mod:`~spikeflow.training.tensor_parallel_run`)."""
    merge = getattr(ctx, "merge_monitor", None)
    if merge is not None:
        monitor.load_state_dict(merge(monitor.state_dict()))
    if not ctx.distributed:
        return
    states: list[dict[str, Any]] = ctx.all_gather_object(monitor.state_dict())
    merged: dict[str, dict[str, float]] = {}
    for state in states:
        for name, values in state.items():
            into = merged.setdefault(name, dict.fromkeys(values, 0.0))
            for key, value in values.items():
                # neurons: the layer's size, 0 on a process that saw no sample.
                into[key] = max(into[key], value) if key == "neurons" else into[key] + value
    monitor.load_state_dict(merged)  # type: ignore[arg-type]
