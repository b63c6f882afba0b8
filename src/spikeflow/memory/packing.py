"""Spike tensors kept at one bit per element, spike counts at one byte.

A spike tensor holds only 0 and 1, yet a float32 one takes 32 bits per element. Where a
spike tensor must be kept (the input of a recomputed block, saved until the backward
pass), :func:`pack_spikes` stores it as bits, eight to a byte, and :func:`unpack_spikes`
gives back the same values in the same shape, dtype and device.

A tensor of small counts (the sum of spikes and a shortcut in a SEW ResNet's ADD block,
multi-level spikes, event counts) is not 0/1 but holds integers: :func:`pack_counts`
stores it as uint8 when every element is an integer from 0 to 255 (SpikingJelly's
``Uint8SpikeCompressor``), a quarter of float32, and ``.to(dtype)`` gives it back.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, DTypeError

__all__ = [
    "PackedSpikes",
    "is_binary",
    "pack_counts",
    "pack_spikes",
    "try_pack_counts",
    "try_pack_spikes",
    "unpack_spikes",
]


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
    """Whether every element of ``x`` is exactly 0 or 1 (a spike tensor). On a GPU it
    waits for the result."""
    if x.dtype == torch.bool:
        return True
    return torch.equal(x, x.bool().to(x.dtype))


# Byte b's eight bits as a row of values, per (dtype, device): unpacking is one gather.
_TABLES: dict[tuple[torch.dtype, torch.device], Tensor] = {}


def _table(dtype: torch.dtype, device: torch.device) -> Tensor:
    key = (dtype, device)
    if key not in _TABLES:
        byte = torch.arange(256).unsqueeze(1)
        bits = byte.bitwise_right_shift(torch.arange(8)).bitwise_and(1)
        _TABLES[key] = bits.to(dtype=dtype, device=device)
    return _TABLES[key]


_CHUNK = 1 << 20  # elements packed and checked at a time (4 MiB of float32: in cache)


def _pack_bytes(flat: Tensor) -> Tensor:
    """The bytes of a 1-D 0/1 tensor whose length is a multiple of 8 (not checked)."""
    if flat.dtype in (torch.float32, torch.float64):
        # Eight 0/1 values times 1, 2, ..., 128 summed: exact in any float format.
        weights = torch.pow(2.0, torch.arange(8, dtype=flat.dtype, device=flat.device))
        return (flat.view(-1, 8) @ weights).to(torch.uint8)
    rows = flat.to(torch.uint8).view(-1, 8)
    bits = rows[:, 0].clone()
    for k in range(1, 8):
        bits |= rows[:, k] << k
    return bits


_SAME_SIZE_INTEGERS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether two 1-D tensors of one dtype are equal bit for bit (-0.0 is not 0.0)."""
    if a.is_floating_point():
        integers = _SAME_SIZE_INTEGERS[a.element_size()]
        return torch.equal(a.view(integers), b.view(integers))
    return torch.equal(a, b)


def try_pack_spikes(x: Tensor) -> PackedSpikes | None:
    """``x`` as bits if every element is 0 or 1 (not -0.0), else None. Packs and checks (by
    unpacking) a slice at a time, so for a contiguous ``x`` nothing of its size is
    allocated but the bits (a non-contiguous one is copied once, by ``reshape``)."""
    if x.is_complex() or not (x.is_floating_point() or x.dtype == torch.bool):
        return None
    flat = x.detach().reshape(-1)
    n = flat.numel()
    bits = torch.empty(-(-n // 8), dtype=torch.uint8, device=flat.device)
    table = _table(flat.dtype, flat.device)
    for start in range(0, n, _CHUNK):
        part = flat[start : start + _CHUNK]
        if part.numel() % 8:  # the last slice: padded with zeros to whole bytes
            part = torch.cat([part, part.new_zeros(-part.numel() % 8)])
        packed = _pack_bytes(part)
        if not _same_bits(torch.nn.functional.embedding(packed.long(), table).view(-1), part):
            return None
        bits[start // 8 : start // 8 + packed.numel()] = packed
    return PackedSpikes(bits, x.shape, x.dtype)


def pack_spikes(x: Tensor) -> PackedSpikes:
    """``x`` (every element 0 or 1, any shape, floating-point or bool dtype, any device)
    at one bit per element.

    Raises:
        DTypeError: ``x`` is complex or an integer tensor.
        ConfigurationError: an element of ``x`` is neither 0 nor 1, or is -0.0 (packing
            would lose it; the error gives one such value).
    """
    if x.is_complex() or not (x.is_floating_point() or x.dtype == torch.bool):
        raise DTypeError(f"pack_spikes takes a floating-point or bool tensor, got dtype {x.dtype}")
    packed = try_pack_spikes(x)
    if packed is None:
        odd = torch.logical_and(x != 0, x != 1)
        if x.is_floating_point():
            odd |= torch.signbit(x)  # -0.0 (it would unpack to +0.0)
        bad = x[odd].flatten()[0].item()
        raise ConfigurationError(
            f"pack_spikes takes a tensor of 0s and 1s (spikes), but this one "
            f"(shape {tuple(x.shape)}, dtype {x.dtype}) holds {bad}"
        )
    return packed


def unpack_spikes(packed: PackedSpikes) -> Tensor:
    """The tensor :func:`pack_spikes` packed: same values, shape, dtype and device."""
    table = _table(packed.dtype, packed.bits.device)
    flat = torch.nn.functional.embedding(packed.bits.long(), table).view(-1)
    return flat[: packed.shape.numel()].view(packed.shape)


def try_pack_counts(x: Tensor) -> Tensor | None:
    """``x`` as uint8 (same shape) if every element is an integer from 0 to 255 (not
    -0.0), else None: converting back with ``.to(x.dtype)`` gives ``x`` bit for bit
    (checked a slice at a time, by converting back)."""
    if x.is_complex() or not (x.is_floating_point() or x.dtype == torch.bool):
        return None
    flat = x.detach().reshape(-1)
    counts = torch.empty(flat.shape, dtype=torch.uint8, device=flat.device)
    for start in range(0, flat.numel(), _CHUNK):
        part = flat[start : start + _CHUNK]
        as_bytes = part.to(torch.uint8)
        if not _same_bits(as_bytes.to(part.dtype), part):
            return None
        counts[start : start + _CHUNK] = as_bytes
    return counts.view(x.shape)


def pack_counts(x: Tensor) -> Tensor:
    """``x`` (every element an integer from 0 to 255, floating-point or bool dtype) as a
    uint8 tensor of its shape; ``.to(x.dtype)`` gives ``x`` back bit for bit.

    Raises:
        DTypeError: ``x`` is complex or an integer tensor.
        ConfigurationError: an element is not an integer from 0 to 255, or is -0.0 (the
            error gives one such value).
    """
    if x.is_complex() or not (x.is_floating_point() or x.dtype == torch.bool):
        raise DTypeError(f"pack_counts takes a floating-point or bool tensor, got dtype {x.dtype}")
    counts = try_pack_counts(x)
    if counts is None:
        odd = (x != torch.round(x)) | (x < 0) | (x > 255) | torch.isnan(x) | torch.signbit(x)
        bad = x[odd].flatten()[0].item()
        raise ConfigurationError(
            f"pack_counts takes a tensor of integers from 0 to 255 (spike counts), but "
            f"this one (shape {tuple(x.shape)}, dtype {x.dtype}) holds {bad}"
        )
    return counts
