"""Spike tensors kept at one bit per element.

A spike tensor holds only 0 and 1, yet a float32 one takes 32 bits per element. Where a
spike tensor must be kept (the input of a recomputed block, saved until the backward
pass), :func:`pack_spikes` stores it as bits, eight to a byte, and :func:`unpack_spikes`
gives back the same values in the same shape, dtype and device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, DTypeError

__all__ = ["PackedSpikes", "is_binary", "pack_spikes", "unpack_spikes"]


class PackedSpikes(NamedTuple):
    """A spike tensor as bits: ``bits`` (uint8, eight elements per byte, the first
    element in the lowest bit), and the ``shape`` and ``dtype`` to unpack it to."""

    bits: Tensor
    shape: torch.Size
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        """Bytes held: ``ceil(numel / 8)``."""
        return self.bits.numel()


def is_binary(x: Tensor) -> bool:
    """Whether every element of ``x`` is exactly 0 or 1 (a spike tensor). Reads ``x``
    once; on a GPU it waits for the result."""
    if x.dtype == torch.bool:
        return True
    return bool(torch.logical_or(x == 0, x == 1).all())


def pack_spikes(x: Tensor) -> PackedSpikes:
    """``x`` (every element 0 or 1, any shape, dtype and device) at one bit per element.

    Raises:
        DTypeError: ``x`` is complex.
        ConfigurationError: an element of ``x`` is neither 0 nor 1 (packing would lose
            it; the error gives one such value).
    """
    if x.is_complex():
        raise DTypeError(f"pack_spikes takes a real tensor, got dtype {x.dtype}")
    if not is_binary(x):
        bad = x[torch.logical_and(x != 0, x != 1)].flatten()[0].item()
        raise ConfigurationError(
            f"pack_spikes takes a tensor of 0s and 1s (spikes), but this one "
            f"(shape {tuple(x.shape)}, dtype {x.dtype}) holds {bad}"
        )
    flat = x.detach().reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    rows = flat.view(-1, 8)
    bits = rows[:, 0].clone()
    for k in range(1, 8):
        bits |= rows[:, k] << k
    return PackedSpikes(bits, x.shape, x.dtype)


def unpack_spikes(packed: PackedSpikes) -> Tensor:
    """The tensor :func:`pack_spikes` packed: same values, shape, dtype and device."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.bits.device)
    flat = packed.bits.unsqueeze(1).bitwise_right_shift(shifts).bitwise_and_(1).view(-1)
    return flat[: packed.shape.numel()].to(packed.dtype).view(packed.shape)
