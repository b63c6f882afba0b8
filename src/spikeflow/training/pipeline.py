"""Pipeline parallelism for sequential spiking networks: torch's
``torch.distributed.pipelining`` (GPipe schedule) over the processes of a group.

The network (an ``nn.Sequential``) is cut into as many consecutive stages as there are
processes; process ``i`` holds stage ``i`` only (its weights, gradients, optimizer
state). A batch ``[T, B, ...]`` is cut into micro-batches along the batch dim (dim 1,
time-major), which flow through the stages one after another, so the stages work on
different micro-batches at once. Each micro-batch is a whole sequence: the neurons
start it from rest (spikeflow's default: no state carried between calls), so the
result is that of the whole network run on each micro-batch.

The loss is the mean of the micro-batches' losses (GPipe scales each backward by
1/n), and every stage's gradients are the whole network's for that mean. Batch norm in
training mode sees one micro-batch's statistics, as a smaller batch would.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.training.distributed import group_rank_and_size

__all__ = ["PipelineRun", "pipeline", "stage_bounds"]


def stage_bounds(model: nn.Sequential, stages: int) -> list[int]:
    """Where each of ``stages`` consecutive stages of ``model`` starts (and, last, its
    length): cuts that balance the parameter counts, each stage at least one module."""
    sizes = [sum(p.numel() for p in m.parameters()) for m in model]
    if stages < 1 or stages > len(sizes):
        raise ConfigurationError(
            f"pipeline: {len(sizes)} modules cannot make {stages} stages (one module at least "
            "per stage)"
        )
    total, bounds, done = sum(sizes), [0], 0
    for i, size in enumerate(sizes):
        left_stages = stages - len(bounds)
        if left_stages == 0:
            break
        done += size
        # cut after module i once this stage holds its share, leaving a module per stage
        if done >= total * len(bounds) / stages or len(sizes) - (i + 1) == left_stages:
            bounds.append(i + 1)
    return [*bounds, len(sizes)]


@dataclass
class PipelineRun:
    """This process's stage and the schedule that runs it.

    Attributes:
        stage: this process's modules (an ``nn.Sequential`` keeping the whole model's
            names, so ``stage.state_dict()`` keys are the model's).
        schedule: torch's ``ScheduleGPipe``.
        index, stages: this stage's place and the number of stages.
    """

    stage: nn.Sequential
    schedule: Any
    index: int
    stages: int

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.stages - 1

    def step(self, x: Tensor | None = None, target: Tensor | None = None) -> list[Tensor]:
        """One forward and backward of a batch: the first stage gives ``x`` (``[T, B,
        ...]``), the last ``target`` (``[B, ...]``); every stage calls it. Returns the
        micro-batches' losses on the last stage, else ``[]``. The gradients land in
        ``stage``'s parameters (step the optimizer after it)."""
        losses: list[Tensor] = []
        if self.is_first and x is None:
            raise ConfigurationError("pipeline: the first stage's step needs the input x")
        if self.is_last and target is None:
            raise ConfigurationError("pipeline: the last stage's step needs the target")
        args = (x,) if self.is_first else ()
        kwargs = {"target": target, "losses": losses} if self.is_last else {}
        self.schedule.step(*args, **kwargs)
        return losses


class _UndoFirstForward:
    """torch's schedule runs each stage once more (forward and backward) before the
    first step's micro-batches, to learn the shapes the stages exchange. Hooks that
    give that first forward copies of the buffers (batch-norm running statistics,
    which it would update), the module's own buffers coming back after it."""

    def __init__(self, module: nn.Module) -> None:
        self.originals: list[tuple[nn.Module, str, Tensor]] = []
        self.handles = [
            module.register_forward_pre_hook(self.swap_in),
            module.register_forward_hook(self.swap_back),
        ]

    def swap_in(self, module: nn.Module, args: Any) -> None:
        for owner in module.modules():
            for name, buffer in owner._buffers.items():
                if buffer is not None:
                    self.originals.append((owner, name, buffer))
                    owner._buffers[name] = buffer.clone()

    def swap_back(self, module: nn.Module, args: Any, output: Any) -> None:
        for owner, name, buffer in self.originals:
            owner._buffers[name] = buffer
        self.originals.clear()
        for handle in self.handles:
            handle.remove()


def _checked_loss(
    loss_fn: Callable[[Tensor, Tensor], Tensor],
) -> Callable[[Tensor, Tensor], Tensor]:
    """``loss_fn`` refusing, by a clear error, what the schedule's backward cannot take
    (a Python float, a per-sample loss): torch's schedule fails on it with an assertion
    on the last stage only, the other stages waiting for ever."""

    def loss(output: Tensor, target: Tensor) -> Tensor:
        value = loss_fn(output, target)
        if not isinstance(value, Tensor) or value.numel() != 1:
            got = (
                f"a tensor of shape {tuple(value.shape)}"
                if isinstance(value, Tensor)
                else type(value).__name__
            )
            raise ConfigurationError(
                "pipeline: loss_fn must return the micro-batch's loss as a one-element "
                f"tensor (differentiable, not .item()), got {got}"
            )
        return value

    return loss


def pipeline(
    model: nn.Sequential,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    microbatches: int,
    group: Any = None,
    bounds: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
) -> PipelineRun:
    """Cut ``model`` into one stage per process of ``group`` (None: the default) and
    build this process's GPipe schedule.

    Args:
        model: the whole network (the same weights on every process: build it after
            the same seed); only this process's stage is kept.
        loss_fn: ``loss_fn(output, target)`` of one micro-batch (output ``[T, b, ...]``).
        microbatches: how many micro-batches a batch is cut into (along dim 1).
        bounds: the stages' first module indices and the model's length
            (``[0, 3, 7]``: modules 0-2, 3-6); None: :func:`stage_bounds`.
        device: where this stage runs.

    Raises:
        ConfigurationError: a model that is not an ``nn.Sequential``, a streaming
            module in it (named), bounds that do not cover it in one stage per process,
            no initialised process group, or a torch without ``pipelining``; on the
            last stage's step, a ``loss_fn`` that returns no one-element tensor.
    """
    try:
        from torch.distributed.pipelining import PipelineStage, ScheduleGPipe
        from torch.distributed.pipelining.microbatch import TensorChunkSpec
    except ImportError as exc:  # torch < 2.4
        raise ConfigurationError(
            f"pipeline needs torch.distributed.pipelining (torch >= 2.4): {exc}"
        ) from None
    if not isinstance(model, nn.Sequential):
        raise ConfigurationError(
            f"pipeline cuts an nn.Sequential into stages, got {type(model).__name__}: put "
            "its parts in a Sequential, each a module that takes one tensor"
        )
    streaming = [name for name, m in model.named_modules() if getattr(m, "streaming", False)]
    if streaming:
        raise ConfigurationError(
            f"pipeline: {streaming[0]!r} is streaming (carries its state from one call to "
            "the next): the micro-batches are different samples, each a whole sequence "
            "from rest; set_streaming(model, False) first"
        )
    rank, world = group_rank_and_size(group)
    bounds = stage_bounds(model, world) if bounds is None else list(bounds)
    if len(bounds) != world + 1 or bounds[0] != 0 or bounds[-1] != len(model):
        raise ConfigurationError(
            f"pipeline: bounds {bounds} must run from 0 to {len(model)} (the model's "
            f"length) in {world + 1} entries, one stage per process"
        )
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ConfigurationError(f"pipeline: bounds {bounds} leave a stage empty")
    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigurationError(
            "pipeline: no process group is initialised: run one process per stage under "
            "torchrun and call torch.distributed.init_process_group first"
        )
    stage_module = model[bounds[rank] : bounds[rank + 1]]
    _UndoFirstForward(stage_module)
    stage = PipelineStage(stage_module, rank, world, torch.device(device), group=group)
    by_batch = TensorChunkSpec(1)  # [T, B, ...]: the batch is dim 1
    schedule = ScheduleGPipe(
        stage,
        n_microbatches=microbatches,
        loss_fn=_checked_loss(loss_fn),
        args_chunk_spec=(by_batch,),
        kwargs_chunk_spec={},
        output_merge_spec=by_batch,
    )
    return PipelineRun(stage_module, schedule, rank, world)
