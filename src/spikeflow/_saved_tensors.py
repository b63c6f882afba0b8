"""The bytes autograd keeps for the backward pass while code runs: the one measurement
:func:`spikeflow.profiling.profile_layers` (per layer) and
:func:`spikeflow.memory.optimize` (per candidate block) share.

Every tensor autograd saves passes through :class:`torch.autograd.graph.saved_tensors_hooks`;
it is counted by its storage (address and size), so views of one storage saved many times
count once, and the storages of the model's parameters and buffers are left out: they stay
in memory whatever the layer does, and are counted under parameters and buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

StorageKey = tuple[int, int]


def storage_key(t: Tensor) -> StorageKey:
    """(address, bytes) of the storage ``t`` keeps alive (``t``'s own size where it has
    no plain storage: a fake or functional tensor under ``torch.compile``)."""
    try:
        s = t.untyped_storage()
        return s.data_ptr(), s.nbytes()
    except (RuntimeError, NotImplementedError, TypeError):
        return id(t), t.numel() * t.element_size()


def model_storages(model: nn.Module) -> set[StorageKey]:
    """The storages of ``model``'s parameters and buffers (left out of saved bytes)."""
    return {storage_key(t) for t in (*model.parameters(), *model.buffers())}


def _unpack(t: Tensor) -> Tensor:
    return t


@contextmanager
def recording_saved(
    on_saved: Callable[[StorageKey], None], exclude: Collection[StorageKey]
) -> Iterator[None]:
    """Within the block, call ``on_saved(key)`` for each tensor autograd saves for the
    backward pass whose storage is not in ``exclude`` (the same storage may be reported
    again: the caller counts each key once where it means to)."""

    def pack(t: Tensor) -> Tensor:
        key = storage_key(t)
        if key not in exclude:
            on_saved(key)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
        yield
