"""``spikeflow train --tensor-parallel N``: channel tensor parallelism
(:mod:`~spikeflow.training.tensor_parallel`) times data parallelism under ``torchrun``.

The ``W`` processes form ``W / N`` tensor-parallel groups of ``N`` consecutive ranks
(ranks ``kN .. kN + N - 1``), each holding one copy of the model split over its ``N``
processes, and ``N`` data-parallel groups (ranks ``j, j + N, j + 2N, ...``: the
processes that hold the same slice). The processes of a tensor-parallel group run the
same batch: the sampler shards the data by *data-parallel* rank (``rank // N``) over
the ``W / N`` copies, and a copy's gradients (after the tensor-parallel reductions in
the backward) are averaged over its data-parallel group only (DDP on that group).
Every process of a tensor-parallel group computes the same loss and outputs, so the
metrics are reduced over a data-parallel group (each sample counted once) and the
spike monitors' sums of the split neurons over the tensor-parallel group first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.distributed as dist
from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode
from spikeflow.training.distributed import DistContext
from spikeflow.training.tensor_parallel import ChannelShards, channel_plan, parallelize_channels

__all__ = [
    "TENSOR_PARALLEL_REFUSED",
    "DataParallelContext",
    "TensorParallelRun",
    "check_tensor_parallel_config",
    "join_tensor_parallel",
]

#: The settings ``--tensor-parallel N`` (N > 1) refuses (config name, flag, why): what
#: its tests do not cover, or what reads whole weights or per-process batches.
TENSOR_PARALLEL_REFUSED = (
    ("fsdp", "--fsdp", "the data-parallel copies are DDP's (FSDP would shard the slices)"),
    ("sync_bn", "--sync-bn", "a split batch norm already sees its channels' whole batch"),
    ("compile", "--compile", "not tested with the split layers' collectives"),
    ("model_ema", "--model-ema", "the average would be of this process's slices only"),
    ("prune", "--prune", "pruning masks and thresholds act on whole weights"),
    ("online", "--online", "its per-step backward is not tested with split layers"),
    ("tbptt", "--tbptt", "its per-window backward is not tested with split layers"),
    ("fptt", "--fptt", "its penalty reads whole weights"),
    ("eprop", "--eprop", "e-prop writes the gradients itself, past the split layers"),
    ("decolle", "--decolle", "DECOLLE updates each layer alone, step by step"),
    ("eventprop", "--eventprop", "the adjoint runs whole float sequences"),
    ("weight_bits", "--weight-bits", "quantizers read whole weights for their scales"),
    ("input_bits", "--input-bits", "quantizers read whole weights for their scales"),
    ("membrane_bits", "--membrane-bits", "quantizers read whole weights for their scales"),
    ("recompute", "--recompute", "not tested with the split layers' collectives"),
    ("ra_sampler", "--ra-sampler", "its shards are by global rank"),
    ("spike_reg", "--spike-reg", "its hooks would see this process's channels only"),
    ("mixup", "--mixup", "not tested with split layers"),
    ("cutmix", "--cutmix", "not tested with split layers"),
    ("teacher", "--teacher", "not tested with split layers"),
    ("amp", "--amp", "mixed precision is not tested with split layers"),
)


def check_tensor_parallel_config(config: Any) -> None:
    """Refuse a ``tensor_parallel`` that is not a positive integer and, for N > 1, a
    setting it does not run (naming it) or a two-view loss (``stcl``)."""
    size = config.tensor_parallel
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigurationError(
            f"tensor_parallel (--tensor-parallel) must be an integer >= 1, got {size!r}"
        )
    if size == 1:
        return
    for name, flag, why in TENSOR_PARALLEL_REFUSED:
        if getattr(config, name) not in (None, False, 0, 0.0, "none", "off"):
            raise ConfigurationError(
                f"--tensor-parallel {size} cannot be combined with {flag}: {why}"
            )
    if config.loss is not None and str(config.loss).split(":")[0].lower() == "stcl":
        raise ConfigurationError(
            f"--tensor-parallel {size} cannot be combined with --loss stcl: its two views "
            "are drawn per process"
        )


@dataclass
class DataParallelContext(DistContext):
    """The view of a :class:`DistContext` that data handling uses under tensor
    parallelism: ``rank``/``world_size`` are the data-parallel rank and size (how the
    sampler and the evaluation shard the data), the reductions run over the
    data-parallel group, and ``merge_monitor`` first sums the split neurons' monitor
    sums over the tensor-parallel group. ``is_main`` stays the global rank 0's."""

    group: Any = None
    main: bool = False
    run: TensorParallelRun | None = None

    @property
    def is_main(self) -> bool:
        return self.main

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over the data-parallel group."""
        if not self.distributed:
            return list(values)
        import torch

        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t, group=self.group)
        return t.tolist()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` of every process of the data-parallel group, in its rank order."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def broadcast_buffers(self, module: nn.Module) -> None:
        """The first copy's buffers to every copy: over the data-parallel group, so
        that each process keeps the buffers of its own channel slice."""
        if self.distributed:
            first = dist.get_global_rank(self.group, 0)  # (group_src needs torch >= 2.6)
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=first, group=self.group)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.group)

    def merge_monitor(self, state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """A spike monitor's sums of this copy of the model (every process of the
        tensor-parallel group joins)."""
        return state if self.run is None else self.run.merge_monitor(state)

    def close(self, sync: bool = False) -> None:
        """Nothing: the global context leaves the process group."""


@dataclass
class TensorParallelRun:
    """This process's place in a ``--tensor-parallel`` run: its tensor-parallel rank and
    group (``size`` processes), its data-parallel rank and group (``data_size``), and,
    once :meth:`shard` ran, the model's :class:`ChannelShards`."""

    size: int
    rank: int
    group: Any
    data_rank: int
    data_size: int
    data_group: Any
    shards: ChannelShards | None = None
    #: the monitored neurons that run on a slice of the channels (module names)
    split_neurons: set[str] = field(default_factory=set)

    def data_context(self, ctx: DistContext) -> DataParallelContext:
        """The data-parallel view of ``ctx`` (see :class:`DataParallelContext`)."""
        return DataParallelContext(self.data_rank, self.data_size, ctx.local_rank, ctx.device,
                                   initialized=False, group=self.data_group, main=ctx.is_main,
                                   run=self)  # fmt: skip

    def shard(self, model: nn.Module) -> ChannelShards:
        """Split ``model``'s channels over the tensor-parallel group
        (:func:`~spikeflow.training.tensor_parallel.parallelize_channels`).

        Raises:
            ConfigurationError: a model with no pair to split, naming it and the flag.
        """
        if not channel_plan(model, self.size):  # (parallelize_channels' advice is pairs=)
            raise ConfigurationError(
                f"--tensor-parallel {self.size}: {type(model).__name__} has no column/row "
                f"layer pair to split over {self.size} processes (two Conv1d/Conv2d/Linear "
                "layers in a row, in an nn.Sequential or a ResNet branch, with only batch "
                "norm, spiking neurons, pooling or dropout between them and channels a "
                f"multiple of {self.size}); train it without --tensor-parallel (--fsdp "
                "shards any model's weights)"
            )
        self.shards = parallelize_channels(model, group=self.group)
        self.split_neurons = {
            name
            for pair in self.shards.pairs
            for name in pair.between
            if isinstance(model.get_submodule(name), BaseNode)
        }
        return self.shards

    def merge_monitor(self, state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The monitor sums of the whole copy: a split neuron's spike, membrane and
        element sums (and its neuron count) summed over the tensor-parallel group; a
        whole layer's, and the sample counts, the group's first process's (every
        process of the group saw the same samples)."""
        states: list[Any] = [None] * self.size
        dist.all_gather_object(states, state, group=self.group)
        merged = {}
        for name, values in states[0].items():
            if name not in self.split_neurons:
                merged[name] = dict(values)
                continue
            into = dict(values)
            for key in ("spikes", "v_sum", "v_sumsq", "elements", "v_count", "neurons"):
                if key in into:
                    into[key] = sum(s[name][key] for s in states)
            merged[name] = into
        return merged


def join_tensor_parallel(ctx: DistContext, size: int, task_kind: str) -> TensorParallelRun | None:
    """Form the tensor- and data-parallel groups of ``--tensor-parallel size`` (every
    process calls it); None for ``size`` 1 (plain data parallelism).

    Raises:
        ConfigurationError: a world size that ``size`` does not divide (naming both), or
            a task other than classification.
    """
    if size == 1:
        return None
    if task_kind != "classification":
        raise ConfigurationError(
            f"--tensor-parallel {size}: the {task_kind} trainer does not split channels "
            "(tensor parallelism trains classification runs only)"
        )
    world = ctx.world_size
    if world % size:
        raise ConfigurationError(
            f"--tensor-parallel {size}: the world size ({world} process(es) under torchrun) "
            f"is not a multiple of {size}; launch torchrun with --nproc_per_node (times "
            f"nodes) a multiple of {size}"
        )
    mine: dict[str, Any] = {}
    for start in range(0, world, size):  # every process creates every group, in order
        group = dist.new_group(list(range(start, start + size)))
        if start <= ctx.rank < start + size:
            mine["group"] = group
    for offset in range(size):
        group = dist.new_group(list(range(offset, world, size)))
        if ctx.rank % size == offset:
            mine["data_group"] = group
    return TensorParallelRun(size, ctx.rank % size, mine["group"], ctx.rank // size,
                             world // size, mine["data_group"])  # fmt: skip
