"""The fused C kernel of DH-LIF's branch filter (:class:`~spikeflow.neurons.DendriticBranches`).

The filter ``d[t] = beta d[t-1] + (1 - beta) x[t]`` is one linear recurrence per element
(branch of a neuron of a sample), with its own ``beta``. Run as torch ops it costs a
broadcast ``addcmul`` per step and six passes over ``[T, ..., K]`` in the backward; this
kernel makes one pass forward (every ``d[t]``) and one backward (``dx``, the per-element
``dbeta`` and ``dd0`` together), element blocks spread over OpenMP threads, each block
walking time with its elements contiguous in memory. Compiled on first use like the
other CPU kernels (:func:`spikeflow.kernels.cpu.load_openmp_library`), for CPU float32
and float64; the same arithmetic as the torch loop, so the same results (tested).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import torch
from torch import Tensor

__all__ = ["branch_filter_backward", "branch_filter_forward", "c_runs"]

_SOURCE = r"""
/* DH-LIF branch filter over x [T, E] (E elements, contiguous): forward
 *   d[t] = b d[t-1] + (1 - b) x[t]        (d[-1] = d0)
 * backward, a[t] the gradient reaching d[t] (a[T] = 0):
 *   a[t] = g[t] + b a[t+1],  dx[t] = (1 - b) a[t],
 *   db = sum_t a[t] (d[t-1] - x[t]),  dd0 = b a[0].
 * Elements are cut into blocks of BLOCK, one thread per block; a block walks time. */
#include <stdint.h>

#define BLOCK 512

#define DEFINE_KERNELS(T, SUFFIX, FMA)                                                      \
  void bf_forward_##SUFFIX(int64_t steps, int64_t e, int threads, const T *x,          \
                           const T *b, const T *d0, T *d) {                              \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                    \
    for (int64_t e0 = 0; e0 < e; e0 += BLOCK) {                                          \
      const int64_t e1 = e0 + BLOCK < e ? e0 + BLOCK : e;                                \
      const T *prev = d0;                                                                \
      for (int64_t t = 0; t < steps; ++t) {                                              \
        const T *xt = x + t * e;                                                         \
        T *dt = d + t * e;                                                               \
        for (int64_t i = e0; i < e1; ++i)                                                \
          dt[i] = FMA(b[i], prev[i], ((T)1 - b[i]) * xt[i]);                             \
        prev = dt;                                                                       \
      }                                                                                  \
    }                                                                                    \
  }                                                                                      \
  void bf_backward_##SUFFIX(int64_t steps, int64_t e, int threads, const T *g,          \
                            const T *x, const T *b, const T *d0, const T *d, T *dx,      \
                            T *db, T *dd0) {                                             \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                    \
    for (int64_t e0 = 0; e0 < e; e0 += BLOCK) {                                          \
      const int64_t e1 = e0 + BLOCK < e ? e0 + BLOCK : e;                                \
      T a[BLOCK], s[BLOCK];                                                              \
      for (int64_t i = e0; i < e1; ++i) { a[i - e0] = (T)0; s[i - e0] = (T)0; }         \
      for (int64_t t = steps - 1; t >= 0; --t) {                                         \
        const T *gt = g + t * e, *xt = x + t * e;                                        \
        const T *prev = t > 0 ? d + (t - 1) * e : d0;                                    \
        T *dxt = dx + t * e;                                                             \
        for (int64_t i = e0; i < e1; ++i) {                                              \
          const T acc = FMA(b[i], a[i - e0], gt[i]);                                     \
          a[i - e0] = acc;                                                               \
          dxt[i] = ((T)1 - b[i]) * acc;                                                  \
          s[i - e0] += acc * (prev[i] - xt[i]);                                          \
        }                                                                                \
      }                                                                                  \
      for (int64_t i = e0; i < e1; ++i) { db[i] = s[i - e0]; dd0[i] = b[i] * a[i - e0]; }\
    }                                                                                    \
  }

DEFINE_KERNELS(float, f32, __builtin_fmaf)
DEFINE_KERNELS(double, f64, __builtin_fma)
"""

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_WARNED: set[str] = set()


@functools.cache
def _library() -> Any:
    from spikeflow.kernels.cpu import load_openmp_library

    lib = load_openmp_library(_SOURCE, "dh_branch_filter")
    p, i = ctypes.c_void_p, ctypes.c_int64
    for suffix in _SUFFIX.values():
        forward = getattr(lib, f"bf_forward_{suffix}")
        forward.argtypes = [i, i, ctypes.c_int, p, p, p, p]
        forward.restype = None
        backward = getattr(lib, f"bf_backward_{suffix}")
        backward.argtypes = [i, i, ctypes.c_int, p, p, p, p, p, p, p, p]
        backward.restype = None
    return lib


def c_runs(backend: str, x: Tensor) -> bool:
    """Whether the branch filter of a neuron with ``backend`` runs this kernel on ``x``:
    ``"auto"`` and ``"cpu"`` on CPU float32/float64 (``"auto"`` where a compiler builds
    it; ``"cpu"`` raises naming what is missing), never under ``torch.compile``,
    ``torch.func`` transforms, tracing or export (the torch loop runs there); any other
    backend runs the torch loop."""
    from spikeflow._cbuild import use_c_kernels
    from spikeflow.kernels.fused import functorch_active

    if backend not in ("auto", "cpu"):
        return False
    if (
        torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or torch.compiler.is_exporting()
        or functorch_active()
    ):
        return False
    return use_c_kernels(
        "c" if backend == "cpu" else "auto",
        x.device.type == "cpu" and x.dtype in _SUFFIX,
        _library,
        lambda: (
            f"DendriticBranches: backend='cpu' runs on CPU float32/float64 inputs, got "
            f"{x.dtype} on {x.device}; use backend='auto' or 'torch'"
        ),
        "DH-LIF's branch filter C kernel could not be built, so its torch loop runs; fix "
        "the compiler set-up ($CC) or pass backend='torch'",
        _WARNED,
        stacklevel=4,
    )


def _threads(work: int) -> int:
    from spikeflow.kernels.cpu import kernel_threads

    return kernel_threads(work)


def branch_filter_forward(x: Tensor, beta: Tensor, d0: Tensor) -> Tensor:
    """Every ``d[t]`` (``[T, *step]``) for ``x`` ``[T, *step]``; ``beta`` and ``d0``
    contiguous, of the step's shape, same dtype."""
    x = x.contiguous()
    steps, e = x.shape[0], beta.numel()
    d = torch.empty_like(x)
    fn = getattr(_library(), f"bf_forward_{_SUFFIX[x.dtype]}")
    fn(steps, e, _threads(steps * e), x.data_ptr(), beta.data_ptr(), d0.data_ptr(),
       d.data_ptr())  # fmt: skip
    return d


def branch_filter_backward(
    grad: Tensor, x: Tensor, beta: Tensor, d0: Tensor, d: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dbeta, dd0)`` for the output gradient ``grad`` ``[T, *step]``; ``dbeta``
    and ``dd0`` per element (``[*step]``), to be summed over broadcast dims."""
    grad, x = grad.contiguous(), x.contiguous()
    steps, e = x.shape[0], beta.numel()
    dx = torch.empty_like(x)
    dbeta, dd0 = torch.empty_like(beta), torch.empty_like(beta)
    fn = getattr(_library(), f"bf_backward_{_SUFFIX[x.dtype]}")
    fn(steps, e, _threads(steps * e), grad.data_ptr(), x.data_ptr(), beta.data_ptr(),
       d0.data_ptr(), d.data_ptr(), dx.data_ptr(), dbeta.data_ptr(),
       dd0.data_ptr())  # fmt: skip
    return dx, dbeta, dd0
