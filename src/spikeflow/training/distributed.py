"""Multi-process data parallelism through ``torch.distributed`` (launched by ``torchrun``).

``torchrun`` starts one process per device and sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup_distributed` reads
them, joins the process group (``gloo`` on CPU, ``nccl`` on GPU) and picks the process's
device. Without those variables (or with ``WORLD_SIZE=1``) training runs in one process.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from spikeflow.errors import ConfigurationError

__all__ = [
    "DistContext",
    "ddp_options",
    "group_rank_and_size",
    "pick_device",
    "setup_distributed",
]

#: How many process groups this process has joined: each one's keys go under their own
#: prefix of torchrun's store (see :func:`setup_distributed`).
_GROUPS_JOINED = itertools.count()


def group_rank_and_size(group: Any) -> tuple[int, int]:
    """This process's rank in ``group`` (None: the default group) and the group's size;
    ``(0, 1)`` where no process group has been joined."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def ddp_options(model: torch.nn.Module) -> dict[str, Any]:
    """Keyword arguments for ``DistributedDataParallel`` that ``model`` asks for: a model
    with parameters that a plain training step leaves without a gradient (SpikeDHS's
    search copies and auxiliary head) sets ``ddp_find_unused_parameters = True``, else
    DDP stops at the second step, waiting for their gradients."""
    return (
        {"find_unused_parameters": True}
        if getattr(model, "ddp_find_unused_parameters", False)
        else {}
    )


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> the process's GPU if there is one, else the CPU; ``"cuda"`` -> its GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigurationError(f"unknown device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} asked for, but no CUDA GPU is available")
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigurationError(
            f"device {device!r}: training runs on 'cpu' or 'cuda' (or 'auto'), got a "
            f"{resolved.type!r} device"
        )
    return resolved


@dataclass
class DistContext:
    """This process's place in the job: rank, world size, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: True when this process joined a process group (and must leave it).
    initialized: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, saves checkpoints and writes plots."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes (identity in one process)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.tolist()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (``[obj]`` in one process)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every process rank 0's buffers (batch-norm running statistics), which
        each process last updated from its own part of the batch."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def barrier(self) -> None:
        """Wait for every process (no-op in one process)."""
        if self.distributed:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def close(self, sync: bool = False) -> None:
        """Leave the process group if this context joined it; ``sync``: first wait until
        every process is leaving (only where all of them are known to get here)."""
        if self.initialized and dist.is_initialized():
            if sync:
                self.barrier()
            dist.destroy_process_group()
            self.initialized = False


def setup_distributed(device: str = "auto") -> DistContext:
    """Join the ``torchrun`` job described by the environment, or run alone.

    The backend is ``nccl`` when the processes use GPUs and ``gloo`` otherwise.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = pick_device(device, local_rank)
    if world_size <= 1:
        return DistContext(0, 1, 0, resolved, initialized=False)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    initialized = False
    if not dist.is_initialized():
        # torchrun's store outlives a group, and torch names the group after a counter it
        # resets when the group is destroyed: a second run in the same job (two trainers
        # in one script) met the first group's keys there, one process went on with them
        # and the other waited for ever. Each group this process joins gets its own prefix.
        store, rank, world_size = next(dist.rendezvous("env://", rank=rank, world_size=world_size))
        store = dist.PrefixStore(f"spikeflow_group{next(_GROUPS_JOINED)}", store)
        dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size)
        initialized = True
    return DistContext(rank, world_size, local_rank, resolved, initialized=initialized)
