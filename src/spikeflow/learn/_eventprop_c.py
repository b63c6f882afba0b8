"""EventProp's fused CPU kernels (``_eventprop.c``): the forward over T and the adjoint
backward, compiled once with OpenMP through the builder of spikeflow's other CPU
kernels (:func:`spikeflow.kernels.cpu.load_openmp_library`; cached under
``kernels/eventprop_*.so``), called through ctypes on raw data pointers.

Callers pass contiguous CPU float32/float64 tensors (:func:`supports`); the arithmetic
is :mod:`spikeflow.learn.eventprop`'s loop's, element for element (``_eventprop.c``).
"""

from __future__ import annotations

import ctypes
import functools
from importlib import resources
from typing import Any

import torch
from torch import Tensor

from spikeflow.kernels.cpu import kernel_threads, load_openmp_library

__all__ = ["c_backward", "c_forward", "c_pack", "supports"]

_P, _I, _D, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
#: Elements per chunk of a feed-forward layer (a recurrent one's chunk is a batch row).
BLOCK = 256


def _source() -> str:
    """The kernels' C source (``_eventprop.c``, shipped with the package)."""
    return resources.files("spikeflow.learn").joinpath("_eventprop.c").read_text()


@functools.cache
def _library() -> Any:
    lib = load_openmp_library(_source(), "eventprop")
    for suffix in _SUFFIX.values():
        forward = getattr(lib, f"ep_forward_{suffix}")
        forward.argtypes = [_I, _I, _I, _INT, _P, _P, _P, _P, _P, _P, *[_D] * 7, _INT]
        forward.restype = _INT
        gather = getattr(lib, f"ep_gather_{suffix}")
        gather.argtypes = [_I, _I, _P, _P, _P, _P, _INT]
        gather.restype = _INT
        backward = getattr(lib, f"ep_backward_{suffix}")
        backward.argtypes = [_I, _I, _I, _INT, *[_P] * 9, *[_D] * 5, _INT]
        backward.restype = _INT
        rec_grad = getattr(lib, f"ep_rec_grad_{suffix}")
        rec_grad.argtypes = [_I, _I, _I, _INT, _P, _P, _P]
        rec_grad.restype = None
        pack = getattr(lib, f"ep_pack_{suffix}")
        pack.argtypes = [_I, _INT, _P, _P]
        pack.restype = None
    return lib


def supports(x: Tensor) -> bool:
    """Whether the C kernels take ``x``: a CPU float32/float64 tensor."""
    return x.device.type == "cpu" and x.dtype in _SUFFIX


def _width(plane: int, n: int, recurrent: bool) -> int:
    # at least 1: an empty plane (no sample or no neuron) has no chunk, not a 0-wide one
    return max(1, n if recurrent else min(BLOCK, plane))


def c_forward(
    current: Tensor, w_rec: Tensor | None, constants: tuple[float, ...], norse: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(spikes, voltage, slope_minus, slope_plus, counts)`` of the contiguous
    ``current`` ``[T, B, N]`` (not empty): spikes and voltage ``[T, B, N]``, the slopes
    ``V̇⁻``, ``V̇⁺`` at the spikes in time order, and the spikes of each chunk of each
    step (int64 ``[T, chunks]``, what :func:`c_backward` takes). ``constants``: ``a``,
    ``dt a``, ``-dt b``, ``v_leak``, ``v_th``, ``v_reset``, ``v_leak - v_reset``."""
    steps, batch, n = current.shape
    plane = batch * n
    width = _width(plane, n, w_rec is not None)
    chunks = -(-plane // width)
    spikes, voltage = torch.empty_like(current), torch.empty_like(current)
    counts = torch.empty(steps, chunks, dtype=torch.int64)
    lists = (ctypes.c_void_p * chunks)()
    wt = None if w_rec is None else w_rec.t().contiguous()
    lib, suffix = _library(), _SUFFIX[current.dtype]
    failed = gather_failed = 1
    slopes: tuple[Tensor, Tensor] | None = None  # set once both are allocated
    try:
        failed = getattr(lib, f"ep_forward_{suffix}")(
            steps, plane, width, kernel_threads(current.numel()), current.data_ptr(),
            None if wt is None else wt.data_ptr(), spikes.data_ptr(), voltage.data_ptr(),
            counts.data_ptr(), lists, *constants, int(norse),
        )  # fmt: skip
        if not failed:
            total = int(counts.sum())
            slopes = (current.new_empty(total), current.new_empty(total))
    finally:  # the chunks' lists are freed whatever happened (an allocation that raised)
        gather_failed = getattr(lib, f"ep_gather_{suffix}")(
            steps, chunks, counts.data_ptr(), lists,
            None if slopes is None else slopes[0].data_ptr(),
            None if slopes is None else slopes[1].data_ptr(), int(slopes is not None),
        )  # fmt: skip
    if failed or slopes is None:
        raise MemoryError("EventProp's C forward could not allocate its work buffers")
    if gather_failed:
        raise MemoryError(
            f"EventProp's C forward could not allocate the cursors ({chunks} int64) that put "
            "the spikes' slopes in time order"
        )
    return spikes, voltage, *slopes, counts


def c_pack(spikes: Tensor) -> Tensor:
    """The contiguous 0/1 ``spikes`` as bits, :func:`spikeflow.memory.pack_spikes`'s
    ``bits`` (uint8, ``ceil(numel / 8)``)."""
    bits = torch.empty((spikes.numel() + 7) // 8, dtype=torch.uint8)
    getattr(_library(), f"ep_pack_{_SUFFIX[spikes.dtype]}")(
        spikes.numel(), kernel_threads(spikes.numel()), spikes.data_ptr(), bits.data_ptr()
    )
    return bits


def c_backward(
    shape: tuple[int, int, int],
    bits: Tensor,
    counts: Tensor,
    slope_minus: Tensor,
    slope_plus: Tensor,
    grad_spikes: Tensor | None,
    grad_voltage: Tensor | None,
    w_rec: Tensor | None,
    constants: tuple[float, ...],
    norse: bool,
    spike_time: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(λJ, a λh − b λJ or None, ∂L/∂W_rec or None)``: the adjoint backward over the
    spikes ``bits`` of a ``shape`` ``[T, B, N]`` run, its spike ``counts`` and slopes
    (:func:`c_forward`'s), and the contiguous output gradients (None: zero).
    ``constants``: ``a``, ``b`` and ``dt a``, ``1 - dt b``, ``1 - dt a`` (EventProp's
    jumps) or ``dt b``, ``a dt``, 0 (Norse's)."""
    steps, batch, n = shape
    plane = batch * n
    dtype = slope_minus.dtype
    d_current = torch.empty(shape, dtype=dtype)
    d_time = torch.empty(shape, dtype=dtype) if spike_time else None
    threads = kernel_threads(steps * plane)
    wt = None if w_rec is None else w_rec.t().contiguous()
    offset = counts.view(-1).cumsum(0) - counts.view(-1)  # each (step, chunk)'s first slope

    def pointer(t: Tensor | None) -> int | None:
        return None if t is None else t.data_ptr()

    failed = getattr(_library(), f"ep_backward_{_SUFFIX[dtype]}")(
        steps, plane, _width(plane, n, wt is not None), threads, bits.data_ptr(),
        offset.data_ptr(), slope_minus.data_ptr(), slope_plus.data_ptr(), pointer(grad_spikes),
        pointer(grad_voltage), pointer(wt), d_current.data_ptr(), pointer(d_time),
        *constants, int(norse),
    )  # fmt: skip
    if failed:
        raise MemoryError("EventProp's C backward could not allocate its work buffers")
    if w_rec is None:
        return d_current, d_time, None
    # one [N, N] buffer (its rows split between the threads), not one per thread
    d_rec_t = torch.zeros(n, n, dtype=dtype)
    getattr(_library(), f"ep_rec_grad_{_SUFFIX[dtype]}")(
        steps, batch, n, max(1, min(threads, n)), bits.data_ptr(), d_current.data_ptr(),
        d_rec_t.data_ptr(),
    )  # fmt: skip
    return d_current, d_time, d_rec_t.t()
