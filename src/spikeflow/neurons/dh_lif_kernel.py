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
/* DH-LIF branch filter over x [T, M, K] (M neurons of K branches, contiguous):
 *   d[t] = b d[t-1] + (1 - b) x[t]        (d[-1] = d0; b, d0 [M, K])
 * and out[t, m] = sum_k d[t, m, k] (k in order). Backward, a[t] the gradient reaching
 * d[t]: g [T, M], out's gradient, reaches every branch; glast (or NULL) an extra
 * gradient of d[T-1] (the carried state):
 *   a[t] = g[t] + b a[t+1],  dx[t] = (1 - b) a[t],
 *   db = sum_t a[t] (d[t-1] - x[t]),  dd0 = b a[0].
 * Blocks of whole neurons, one thread per block; a block walks time. db and dd0 hold the
 * running sums while it does. */
#include <stdint.h>
#include <stdlib.h>

#define BLOCK 512 /* elements per block (at least one neuron) */

#define DEFINE_KERNELS(T, SUFFIX, FMA)                                                   \
  void bf_forward_##SUFFIX(int64_t steps, int64_t m, int64_t k, int threads,            \
                           const T *x, const T *b, const T *d0, T *d, T *out) {          \
    const int64_t e = m * k, nb = BLOCK / k > 0 ? BLOCK / k : 1;                          \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                    \
    for (int64_t m0 = 0; m0 < m; m0 += nb) {                                             \
      const int64_t m1 = m0 + nb < m ? m0 + nb : m, e0 = m0 * k, e1 = m1 * k;            \
      const T *prev = d0;                                                                \
      for (int64_t t = 0; t < steps; ++t) {                                              \
        const T *xt = x + t * e;                                                         \
        T *dt = d + t * e;                                                               \
        for (int64_t i = e0; i < e1; ++i)                                                \
          dt[i] = FMA(b[i], prev[i], ((T)1 - b[i]) * xt[i]);                             \
        prev = dt;                                                                       \
        T *ot = out + t * m;                                                             \
        for (int64_t n = m0; n < m1; ++n) {                                              \
          T acc = dt[n * k];                                                             \
          for (int64_t j = 1; j < k; ++j) acc += dt[n * k + j];                          \
          ot[n] = acc;                                                                   \
        }                                                                                \
      }                                                                                  \
    }                                                                                    \
  }                                                                                      \
  int bf_backward_##SUFFIX(int64_t steps, int64_t m, int64_t k, int threads,            \
                           const T *g, const T *glast, const T *x, const T *b,           \
                           const T *d0, const T *d, T *dx, T *db, T *dd0) {              \
    const int64_t e = m * k, nb = BLOCK / k > 0 ? BLOCK / k : 1;                          \
    int failed = 0;                                                                      \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                    \
    for (int64_t m0 = 0; m0 < m; m0 += nb) {                                             \
      const int64_t m1 = m0 + nb < m ? m0 + nb : m, e0 = m0 * k, e1 = m1 * k;            \
      /* gs: a step's g of the block's neurons spread over their branches; the block's  \
       * a[t] and the running dbeta live in dd0 and db until the end */                 \
      T *gs = (T *)malloc(sizeof(T) * (size_t)(e1 - e0)), *a = dd0 + e0, *s = db + e0;   \
      if (!gs) {                                                                         \
        _Pragma("omp atomic write") failed = 1;                                          \
        continue;                                                                        \
      }                                                                                  \
      const T *bb = b + e0;                                                              \
      for (int64_t t = steps - 1; t >= 0; --t) {                                         \
        const T *xt = x + t * e + e0, *prev = (t > 0 ? d + (t - 1) * e : d0) + e0;       \
        T *dxt = dx + t * e + e0;                                                        \
        for (int64_t n = m0; n < m1; ++n)                                                \
          for (int64_t j = 0; j < k; ++j) gs[(n - m0) * k + j] = g[t * m + n];           \
        if (t == steps - 1) { /* a[T] = 0; d[T-1] also gets the state's gradient */     \
          for (int64_t i = 0; i < e1 - e0; ++i) {                                        \
            a[i] = glast ? gs[i] + glast[e0 + i] : gs[i];                                \
            s[i] = (T)0;                                                                 \
          }                                                                              \
        } else {                                                                         \
          for (int64_t i = 0; i < e1 - e0; ++i) a[i] = FMA(bb[i], a[i], gs[i]);          \
        }                                                                                \
        for (int64_t i = 0; i < e1 - e0; ++i) {                                          \
          dxt[i] = ((T)1 - bb[i]) * a[i];                                                \
          s[i] += a[i] * (prev[i] - xt[i]);                                              \
        }                                                                                \
      }                                                                                  \
      for (int64_t i = 0; i < e1 - e0; ++i) dd0[e0 + i] = bb[i] * a[i];                  \
      free(gs);                                                                          \
    }                                                                                    \
    return failed;                                                                       \
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
        forward.argtypes = [i, i, i, ctypes.c_int, p, p, p, p, p]
        forward.restype = None
        backward = getattr(lib, f"bf_backward_{suffix}")
        backward.argtypes = [i, i, i, ctypes.c_int, *[p] * 9]
        backward.restype = ctypes.c_int  # 0, or 1: a block's buffer was not allocated
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


def branch_filter_forward(x: Tensor, beta: Tensor, d0: Tensor) -> tuple[Tensor, Tensor]:
    """Every ``d[t]`` (``[T, *step]``) for ``x`` ``[T, *step]`` (``step = [..., K]``),
    and their sums over the branches (``[T, *step[:-1]]``); ``beta`` and ``d0``
    contiguous, of the step's shape, same dtype as ``x``."""
    x = x.contiguous()
    steps, k = x.shape[0], x.shape[-1]
    m = beta.numel() // k
    d = torch.empty_like(x)
    total = x.new_empty(x.shape[:-1])
    fn = getattr(_library(), f"bf_forward_{_SUFFIX[x.dtype]}")
    fn(steps, m, k, _threads(steps * m * k), x.data_ptr(), beta.data_ptr(), d0.data_ptr(),
       d.data_ptr(), total.data_ptr())  # fmt: skip
    return d, total


def branch_filter_backward(
    grad: Tensor, grad_last: Tensor | None, x: Tensor, beta: Tensor, d0: Tensor, d: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dbeta, dd0)`` for the gradient ``grad`` of the sums over the branches
    (``[T, *step[:-1]]``) plus ``grad_last`` (or None) reaching ``d[T-1]``; ``dbeta``
    and ``dd0`` per element (``[*step]``), to be summed over broadcast dims."""
    grad, x = grad.contiguous(), x.contiguous()
    last = None if grad_last is None else grad_last.contiguous()
    steps, k = x.shape[0], x.shape[-1]
    m = beta.numel() // k
    dx = torch.empty_like(x)
    dbeta, dd0 = torch.empty_like(beta), torch.empty_like(beta)
    fn = getattr(_library(), f"bf_backward_{_SUFFIX[x.dtype]}")
    failed = fn(steps, m, k, _threads(steps * m * k), grad.data_ptr(),
       None if last is None else last.data_ptr(), x.data_ptr(), beta.data_ptr(),
       d0.data_ptr(), d.data_ptr(), dx.data_ptr(), dbeta.data_ptr(),
       dd0.data_ptr())  # fmt: skip
    if failed:
        raise MemoryError(
            f"DendriticBranches' C backward could not allocate its work buffers (K = {k})"
        )
    return dx, dbeta, dd0
