"""The sums behind :class:`~spikeflow.training.monitors.SpikeMonitor`, fast on the CPU
and equal bit for bit to their definitions.

- :func:`spike_magnitude_sum`: ``spikes.abs().sum(dtype=float64)``. Spikes whose
  magnitudes are all integers (binary, ternary, counts) sum exactly in any order, so one
  vectorised pass of a small C loop (``sf_magnitude_sum_f32``) checks that and sums
  them: ~19 µs of CPU time for 262,144 float32 spikes and 0.6 ms for 5.9 M, where the
  float64 sum takes ~50-70 µs and ~20 ms, and the float32-chunk path used before ~120
  µs and ~3.3 ms (one thread, 2-core AMD EPYC VM). Without a C compiler: those float32
  chunks, which cannot round (silently; a build that fails warns once, as spikeflow's
  other C kernels do); other spikes: the float64 sum itself. Boolean spikes: their
  count.
- :class:`Float64Scratch`: ``v.sum(dtype=float64)`` and ``v.to(float64).square().sum()``
  of a membrane, the same numbers from a float64 buffer reused from call to call. On
  the CPU both definitions convert the whole tensor into a fresh float64 temporary
  first, and for a large one that allocation's first-touch page faults are most of the
  time (5.9 M elements: ~20 ms per sum; ~2.5 ms into a buffer already touched). The
  same float64 values summed by the same kernel in the same order give the same bits.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor

__all__ = ["Float64Scratch", "magnitude_sum_c", "spike_magnitude_sum"]

#: float32 holds every integer up to 2^24 exactly (and float64 up to 2^53).
_EXACT_FLOAT32 = 2**24

_SOURCE = r"""
/* The sum of |x[i]| when every |x[i]| is an integer (binary and ternary spikes, spike
 * counts) and the sum is at most 2^52: returns 1 and writes it, exact (every partial
 * sum is then an integer below 2^53, whatever the order of the additions). Returns 0,
 * writing nothing, for anything else (a fraction, NaN, Inf, a larger sum): the caller
 * takes the float64 sum. resid sums |x| - trunc|x|, in [0, 1) each (NaN for NaN or
 * Inf): it stays 0 exactly when every term is 0. */
#include <stdint.h>
#include <math.h>

int sf_magnitude_sum_f32(int64_t n, int threads, const float *x, double *out) {
    double total = 0.0;
    float resid = 0.0f;
    #pragma omp parallel for simd num_threads(threads) schedule(static) \
        reduction(+:total, resid)
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        resid += a - truncf(a);
        total += (double)a;
    }
    if (resid != 0.0f || !(total <= 4503599627370496.0)) return 0;
    *out = total;
    return 1;
}
"""

_LIB: list[Any] = []  # the loaded library, once built (empty: not tried yet)


def _library() -> Any:
    """The C reduction, built once (raises the build's error)."""
    if not _LIB:
        from spikeflow.kernels.cpu import _FLAGS, load_openmp_library

        # (-fno-trapping-math: truncf vectorised, as in the neuron kernels; no result changes)
        lib = load_openmp_library(_SOURCE, "monitor_sums", [[*_FLAGS, "-fno-trapping-math"]])
        lib.sf_magnitude_sum_f32.argtypes = [
            ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.sf_magnitude_sum_f32.restype = ctypes.c_int
        _LIB.append(lib)
    return _LIB[0]


_C_STATE: dict[str, bool] = {}  # "usable": whether the C reduction loaded
_WARNED: set[str] = set()  # (one warning per process for a failed build)


def _c_usable() -> bool:
    """Whether the C reduction can run here, decided once, as spikeflow's other C
    kernels with ``backend="auto"`` decide (``_cbuild.library_or_fallback``): no C
    compiler: False, silently (the torch paths give the same numbers); a compiler whose
    build fails: False and one RuntimeWarning with the compiler's error."""
    usable = _C_STATE.get("usable")
    if usable is None:
        from spikeflow._cbuild import library_or_fallback

        fallback = ("SpikeMonitor: the C spike-sum loop could not be built; the monitors "
                    "sum spikes with torch instead (the same numbers, slower)")  # fmt: skip
        usable = library_or_fallback(_library, fallback, _WARNED, stacklevel=4)
        _C_STATE["usable"] = usable
    return usable


def magnitude_sum_c(spikes: Tensor) -> float | None:
    """The exact sum of ``|spikes|`` by one pass of the C loop when every magnitude is
    an integer and the sum at most 2^52 (it then equals
    ``spikes.abs().sum(dtype=float64)``), else None; None too for anything but a
    contiguous CPU float32 tensor, and where the C reduction cannot be built."""
    if not (spikes.device.type == "cpu" and spikes.dtype == torch.float32):
        return None
    if not spikes.is_contiguous() or not _c_usable():
        return None
    n = spikes.numel()
    from spikeflow.kernels.cpu import kernel_threads

    out = ctypes.c_double()
    ok = _library().sf_magnitude_sum_f32(n, kernel_threads(n), spikes.data_ptr(), ctypes.byref(out))
    return out.value if ok else None


def spike_magnitude_sum(spikes: Tensor, dtype: torch.dtype) -> Tensor:
    """``spikes.abs().sum(dtype=dtype)`` (a 0-dim tensor), the same number faster on the
    CPU for the usual spikes.

    On the CPU a float32 tensor summed into float64 takes ~5-50x the float32 sum (the
    whole tensor converted into a fresh temporary first).
    Spikes whose magnitudes are all integers (binary, ternary, spike counts: checked)
    sum exactly in any order: float32 spikes by one pass of a C loop
    (:func:`magnitude_sum_c`), others (or without a C compiler) in float32 chunks whose
    sums cannot pass 2^24 (one reduction over rows of a chunk each, however short large
    magnitudes make them), the chunks' sums added in ``dtype``: every partial sum is
    then an exactly represented integer, so the result equals the float64 sum bit for
    bit. Other spikes (real-valued ones, NaN), other devices and traced code
    (``torch.compile``) take the plain float64 sum.
    """
    if spikes.dtype == torch.bool:  # (abs() has no bool kernel): the count, exact
        return spikes.sum(dtype=dtype)
    fast = (
        dtype == torch.float64
        and spikes.device.type == "cpu"
        and spikes.dtype in (torch.float32, torch.float16, torch.bfloat16)
        and spikes.numel() > 0
        and not torch.compiler.is_compiling()
    )
    if fast:
        if spikes.dtype == torch.float32 and spikes.is_contiguous():
            exact = magnitude_sum_c(spikes)
            if exact is not None:
                return torch.tensor(exact, dtype=dtype)
        flat = spikes.reshape(-1).float()  # (exact from float16 and bfloat16)
        low, high = (float(v) for v in torch.aminmax(flat))
        magnitude = flat if low >= 0 else flat.abs()  # (no copy for non-negative spikes)
        top = max(high, -low)
        # frac of a magnitude is in [0, 1), 0 exactly where it is an integer
        if top <= _EXACT_FLOAT32 and float(torch.frac(magnitude).max()) == 0:  # (NaN: no)
            # Rows of `chunk` magnitudes, each summed in float32 by one vectorised
            # reduction (a Python loop over chunks would take seconds for large
            # magnitudes, whose chunks are short), then the rows' sums in `dtype`.
            chunk = int(_EXACT_FLOAT32 // max(top, 1.0))
            rows = magnitude.numel() // chunk
            full = magnitude[: rows * chunk].view(rows, chunk).sum(dim=1)
            rest = magnitude[rows * chunk :].sum().reshape(1)
            return torch.cat((full, rest)).sum(dtype=dtype)
    return spikes.abs().sum(dtype=dtype)


class Float64Scratch:
    """A float64 buffer, grown as needed and reused, for a membrane's two sums.

    :meth:`sums` gives ``(v.sum(dtype=float64), v.to(float64).square().sum())`` bit for
    bit (tests/test_train_monitors.py checks it): a contiguous CPU tensor is converted
    into the buffer's first ``v.numel()`` elements, summed, squared in place and summed
    again (the definitions convert into a fresh temporary and sum that: the same values
    in the same order). Other tensors (another device, non-contiguous, traced code)
    take the definitions.
    """

    def __init__(self) -> None:
        self._buffer: Tensor | None = None

    def release(self) -> None:
        """Drop the buffer (its memory goes back)."""
        self._buffer = None

    def sums(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``(v.sum(dtype=float64), v.to(float64).square().sum())`` (0-dim tensors)."""
        if (
            v.device.type != "cpu"
            or not v.is_contiguous()
            or not v.is_floating_point()
            or torch.compiler.is_compiling()
        ):
            return v.sum(dtype=torch.float64), v.to(torch.float64).square().sum()
        n = v.numel()
        if self._buffer is None or self._buffer.numel() < n:
            self._buffer = torch.empty(n, dtype=torch.float64)
        values = self._buffer[:n]
        values.copy_(v.reshape(-1))
        total = values.sum()
        return total, values.square_().sum()
