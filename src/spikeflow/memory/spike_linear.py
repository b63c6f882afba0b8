"""Spikes as bits, and a Linear layer fed with them (SpikingJelly 2.0's ``bit_*``,
``packed_spike_linear`` and ``sparse_linear``).

- :func:`bit_spike_compress` / :func:`bit_spike_decompress`: any spike tensor as one flat
  run of bits, eight to a byte, the first element in the lowest bit, the last byte
  padded with zeros (SpikingJelly's bytes exactly; the format of
  :func:`spikeflow.memory.pack_spikes`).
- :func:`bit_pack_spike_dense`: a ``[M, K]`` spike matrix packed row by row,
  ``[M, ceil(K / 8)]`` bytes, each row padded on its own.
- :func:`packed_spike_linear`: ``Linear`` on row-packed spikes (gradients for the weight
  and bias), and :func:`sparse_linear`: ``Linear`` on unpacked spikes with every
  gradient, dense (``strategy="torch"``) or spike by spike (``strategy="sparse"``).

The spike-by-spike path (``backend="c"``) is a small C kernel compiled with OpenMP on
first use, like the other CPU kernels: each output row is the sum of the weight columns
of the row's spikes (the weight gradient likewise). It runs on CPU float32/float64
tensors; ``backend="auto"`` uses it where it runs and falls back to unpacking and a
dense matmul (``backend="torch"``) elsewhere. See ``docs/memory.md`` for where it is
faster than the dense matmul (measured by ``benchmarks/bench_packed_linear.py``).
"""

from __future__ import annotations

import ctypes
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.memory.packing import _table

__all__ = [
    "AUTO_MAX_RATE",
    "BACKENDS",
    "bit_pack_spike_dense",
    "bit_spike_compress",
    "bit_spike_decompress",
    "packed_spike_linear",
    "sparse_linear",
]

#: ``"auto"``: the C kernel for CPU float32/float64 weights when a C compiler is found (a
#: failed build warns once) and at most :data:`AUTO_MAX_RATE` of the bits are set, else
#: ``"torch"``; ``"c"``: the C kernel or an error; ``"torch"``: unpack the bits and call
#: a dense matmul, on any device and dtype.
BACKENDS = ("auto", "c", "torch")
#: The firing rate above which ``backend="auto"`` unpacks and runs the dense matmul: the
#: spike-by-spike kernel's work grows with the spikes, the matmul's does not, and on a
#: 2-core AMD EPYC (one thread, float32, M=256, K=512 and 2048, N=512) the two met
#: between rates 0.1 and 0.2 (benchmarks/bench_packed_linear.py, docs/memory.md).
AUTO_MAX_RATE = 0.15
_WARNED: set[str] = set()

_SOURCE = r"""
/* Linear on row-packed binary spikes, spike by spike: out[r, :] = sum of wt[k, :] over
 * the set bits k of row r (bits[r, k / 8] >> (k % 8) & 1); the weight gradient is the
 * transpose, gwt[k, :] = sum of g[r, :] over the rows r with bit k set. wt and gwt are
 * the weight transposed, [K, N]. Bits past K in a row's last byte are ignored. */
#include <stdint.h>

#define KCHUNK 8 /* bytes (64 inputs) of the weight gradient per task */

#define DEFINE_KERNELS(T, SUFFIX)                                                        \
  void sl_forward_##SUFFIX(int64_t m, int64_t k, int64_t n, int threads,                \
                           const uint8_t *bits, const T *wt, T *out) {                   \
    const int64_t kp = (k + 7) / 8;                                                      \
    const unsigned last = k % 8 ? (1u << (k % 8)) - 1u : 0xffu;                          \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                    \
    for (int64_t r = 0; r < m; ++r) {                                                    \
      T *y = out + r * n;                                                                \
      for (int64_t j = 0; j < n; ++j) y[j] = (T)0;                                       \
      const uint8_t *row = bits + r * kp;                                                \
      for (int64_t b = 0; b < kp; ++b) {                                                 \
        unsigned byte = row[b];                                                          \
        if (b == kp - 1) byte &= last;                                                   \
        while (byte) {                                                                   \
          const T *w = wt + (8 * b + __builtin_ctz(byte)) * n;                           \
          for (int64_t j = 0; j < n; ++j) y[j] += w[j];                                  \
          byte &= byte - 1;                                                              \
        }                                                                                \
      }                                                                                  \
    }                                                                                    \
  }                                                                                      \
                                                                                         \
  void sl_weight_grad_##SUFFIX(int64_t m, int64_t k, int64_t n, int threads,            \
                               const uint8_t *bits, const T *g, T *gwt) {                \
    const int64_t kp = (k + 7) / 8;                                                      \
    const unsigned last = k % 8 ? (1u << (k % 8)) - 1u : 0xffu;                          \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                    \
    for (int64_t b0 = 0; b0 < kp; b0 += KCHUNK) {                                        \
      const int64_t b1 = b0 + KCHUNK < kp ? b0 + KCHUNK : kp;                            \
      const int64_t k1 = 8 * b1 < k ? 8 * b1 : k;                                        \
      for (int64_t i = 8 * b0 * n; i < k1 * n; ++i) gwt[i] = (T)0;                       \
      for (int64_t r = 0; r < m; ++r) {                                                  \
        const T *gr = g + r * n;                                                         \
        for (int64_t b = b0; b < b1; ++b) {                                              \
          unsigned byte = bits[r * kp + b];                                              \
          if (b == kp - 1) byte &= last;                                                 \
          while (byte) {                                                                 \
            T *w = gwt + (8 * b + __builtin_ctz(byte)) * n;                              \
            for (int64_t j = 0; j < n; ++j) w[j] += gr[j];                               \
            byte &= byte - 1;                                                            \
          }                                                                              \
        }                                                                                \
      }                                                                                  \
    }                                                                                    \
  }

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
"""

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


@functools.cache
def _library() -> Any:
    from spikeflow.kernels.cpu import load_openmp_library

    lib = load_openmp_library(_SOURCE, "spike_linear")
    p, i = ctypes.c_void_p, ctypes.c_int64
    for suffix in _SUFFIX.values():
        for name in ("sl_forward", "sl_weight_grad"):
            function = getattr(lib, f"{name}_{suffix}")
            function.argtypes = [i, i, i, ctypes.c_int, p, p, p]
            function.restype = None
    return lib


def _use_c(weight: Tensor, backend: str, rate: Callable[[], float] | None = None) -> bool:
    """Whether ``backend`` runs the C kernel for ``weight``: ``"c"`` raises where it
    cannot, ``"auto"`` falls back where it cannot run, where ``rate()`` (the fraction of
    bits set) exceeds :data:`AUTO_MAX_RATE`, or (warning once) where a compiler is found
    but the build fails."""
    from spikeflow._cbuild import use_c_kernels

    if backend not in BACKENDS:
        raise ConfigurationError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return use_c_kernels(
        backend,
        weight.device.type == "cpu" and weight.dtype in _SUFFIX,
        _library,
        lambda: (
            f"backend='c' runs on CPU float32/float64 weights, got {weight.dtype} on "
            f"{weight.device}; use backend='auto' or 'torch'"
        ),
        "the packed spike Linear's C kernel could not be built, so it unpacks and runs a "
        "dense matmul; fix the compiler set-up ($CC) or pass backend='torch'",
        _WARNED,
        stacklevel=4,
        worth_it=None if rate is None else lambda: not rate() > AUTO_MAX_RATE,
    )


def _threads(work: int) -> int:
    from spikeflow.kernels.cpu import kernel_threads

    return kernel_threads(work)


# -- checks ------------------------------------------------------------------------------


def _check_tensor(x: Any, name: str, owner: str) -> None:
    if not isinstance(x, Tensor):
        raise DTypeError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        raise DTypeError(f"{owner}: {name} must be a dense (strided) tensor, got {x.layout}")


def _check_spikes(spike: Tensor, owner: str) -> None:
    """``spike`` holds only 0 and 1 (bool, integer or real floating-point)."""
    _check_tensor(spike, "spike", owner)
    if spike.is_complex():
        raise DTypeError(f"{owner}: spike must be real (0s and 1s), got dtype {spike.dtype}")
    if spike.dtype == torch.bool:
        return
    odd = (spike != 0) & (spike != 1)
    if bool(odd.any()):
        bad = spike[odd].flatten()[0].item()
        raise ConfigurationError(
            f"{owner} takes binary spikes (0s and 1s), but this tensor (shape "
            f"{tuple(spike.shape)}, dtype {spike.dtype}) holds {bad}"
        )


def _check_packed(packed: Tensor, owner: str, ndim: int) -> None:
    _check_tensor(packed, "packed", owner)
    if packed.dtype != torch.uint8:
        raise DTypeError(f"{owner}: packed must be a uint8 tensor, got dtype {packed.dtype}")
    if packed.dim() != ndim:
        raise ShapeError(
            f"{owner}: packed must be {ndim}-D, got shape {tuple(packed.shape)}"
            + (" (row-packed [M, ceil(K / 8)])" if ndim == 2 else " (flat bits)")
        )


def _check_weight_bias(
    weight: Tensor, bias: Tensor | None, device: torch.device, owner: str
) -> None:
    _check_tensor(weight, "weight", owner)
    if not weight.is_floating_point():
        raise DTypeError(f"{owner}: weight must be floating-point, got dtype {weight.dtype}")
    if weight.dim() != 2:
        raise ShapeError(f"{owner}: weight must be [N, K], got shape {tuple(weight.shape)}")
    if weight.device != device:
        raise ConfigurationError(f"{owner}: weight is on {weight.device}, the spikes on {device}")
    if bias is None:
        return
    _check_tensor(bias, "bias", owner)
    if bias.dtype != weight.dtype:
        raise DTypeError(
            f"{owner}: bias must have the weight's dtype {weight.dtype}, got {bias.dtype}"
        )
    if bias.shape != weight.shape[:1]:
        raise ShapeError(
            f"{owner}: bias must be [N] = [{weight.shape[0]}], got shape {tuple(bias.shape)}"
        )
    if bias.device != device:
        raise ConfigurationError(f"{owner}: bias is on {bias.device}, the spikes on {device}")


# -- packing -------------------------------------------------------------------------------


def _pack_rows(rows: Tensor) -> Tensor:
    """``[M, K]`` 0/1 values (not checked) -> ``[M, ceil(K / 8)]`` uint8, each row padded."""
    m, k = rows.shape
    kp = -(-k // 8)
    if k % 8:
        rows = torch.nn.functional.pad(rows.to(torch.uint8), (0, 8 - k % 8))
    if rows.dtype in (torch.float32, torch.float64):
        # Eight 0/1 values times 1, 2, ..., 128 summed: exact in any float format.
        weights = torch.pow(2.0, torch.arange(8, dtype=rows.dtype, device=rows.device))
        return (rows.reshape(m, kp, 8) @ weights).to(torch.uint8)
    grouped = rows.to(torch.uint8).reshape(m, kp, 8)
    shifts = torch.arange(8, dtype=torch.uint8, device=rows.device)
    return grouped.bitwise_left_shift(shifts).sum(-1, dtype=torch.uint8)


_POPCOUNT: dict[torch.device, Tensor] = {}


def _set_bits(packed: Tensor, k: int) -> int:
    """The number of bits set in the first ``k`` columns of row-packed ``packed``."""
    if packed.device not in _POPCOUNT:
        _POPCOUNT[packed.device] = _table(torch.float64, packed.device).sum(1).to(torch.int64)
    counts = _POPCOUNT[packed.device]
    if k % 8 and packed.numel():
        packed = packed.clone()
        packed[:, -1] &= (1 << (k % 8)) - 1
    # a histogram of the byte values: no int64 copy of the bits (8x their size)
    histogram = torch.bincount(packed.reshape(-1), minlength=256)
    return int((histogram * counts).sum())


def _unpack_rows(packed: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """``[M, ceil(K / 8)]`` uint8 -> ``[M, K]`` 0/1 of ``dtype`` (padding bits dropped)."""
    table = _table(dtype, packed.device)
    rows = torch.nn.functional.embedding(packed.long(), table)
    rows = rows.reshape(packed.shape[0], packed.shape[1] * 8)
    # Contiguous: torch's matmul of a column slice is slow (a parallel copy per call).
    return rows if rows.shape[1] == k else rows[:, :k].contiguous()


def bit_spike_compress(spike: Tensor) -> Tensor:
    """Pack a spike tensor of any shape into flat bits (SpikingJelly's
    ``functional.bit_spike_compress``, the same bytes).

    Args:
        spike: 0s and 1s, any shape, dtype bool, integer or real floating-point, any
            device; read in row-major (``reshape(-1)``) order.

    Returns:
        uint8 tensor of ``ceil(numel / 8)`` bytes on ``spike``'s device: element ``i`` is
        bit ``i % 8`` (least significant first) of byte ``i // 8``; the last byte is
        padded with zeros. Not differentiable (the result is integer).

    Raises:
        DTypeError: ``spike`` is not a dense tensor or is complex.
        ConfigurationError: an element is neither 0 nor 1 (the error gives one).
    """
    _check_spikes(spike, "bit_spike_compress")
    return _pack_rows(spike.detach().reshape(1, -1))[0]


def bit_spike_decompress(
    packed: Tensor, shape: Sequence[int], dtype: torch.dtype = torch.uint8
) -> Tensor:
    """Unpack :func:`bit_spike_compress`'s bytes into a tensor of ``shape`` and ``dtype``
    (SpikingJelly's ``functional.bit_spike_decompress``).

    Args:
        packed: 1-D uint8 tensor of ``ceil(prod(shape) / 8)`` bytes.
        shape: the shape to unpack to (non-negative sizes).
        dtype: dtype of the result (default uint8), holding 0 and 1.

    Returns:
        Tensor of ``shape`` and ``dtype`` on ``packed``'s device.

    Raises:
        DTypeError: ``packed`` is not a dense uint8 tensor, or ``dtype`` is not a dtype.
        ShapeError: ``packed`` is not 1-D, ``shape`` has a negative or non-integer
            size, or the byte count does not match ``shape``.
    """
    owner = "bit_spike_decompress"
    _check_packed(packed, owner, 1)
    if not isinstance(dtype, torch.dtype):
        raise DTypeError(f"{owner}: dtype must be a torch.dtype, got {dtype!r}")
    if isinstance(shape, int) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise ShapeError(f"{owner}: shape must be a sequence of sizes >= 0, got {shape!r}")
    numel = math.prod(shape)
    if packed.numel() != -(-numel // 8):
        raise ShapeError(
            f"{owner}: shape {tuple(shape)} has {numel} elements, which take "
            f"{-(-numel // 8)} bytes, but packed holds {packed.numel()}"
        )
    table = _table(dtype, packed.device)
    flat = torch.nn.functional.embedding(packed.long(), table).reshape(-1)
    return flat[:numel].reshape(tuple(shape))


def bit_pack_spike_dense(spike: Tensor) -> Tensor:
    """Pack a ``[M, K]`` spike matrix row by row (SpikingJelly's
    ``functional.bit_pack_spike_dense``, which runs on CUDA only; this one on any device).

    Args:
        spike: ``[M, K]`` 0s and 1s, dtype bool, integer or real floating-point.

    Returns:
        uint8 ``[M, ceil(K / 8)]``: column ``k`` of row ``m`` is bit ``k % 8`` of byte
        ``[m, k // 8]``; each row's last byte is padded with zeros.

    Raises:
        DTypeError: ``spike`` is not a dense tensor or is complex.
        ShapeError: ``spike`` is not 2-D.
        ConfigurationError: an element is neither 0 nor 1.
    """
    _check_spikes(spike, "bit_pack_spike_dense")
    if spike.dim() != 2:
        raise ShapeError(
            f"bit_pack_spike_dense: spike must be [M, K], got shape {tuple(spike.shape)}"
        )
    return _pack_rows(spike.detach())


# -- Linear on packed spikes -------------------------------------------------------------------


class _PackedLinear(torch.autograd.Function):
    """``bits [M, Kp] @ weight.T`` with the weight's gradient (the bits have none)."""

    @staticmethod
    def forward(ctx: Any, packed: Tensor, weight: Tensor, use_c: bool) -> Tensor:
        m, (n, k) = packed.shape[0], weight.shape
        ctx.save_for_backward(packed, weight)
        ctx.use_c = use_c
        if not use_c:
            return _unpack_rows(packed, k, weight.dtype) @ weight.t()
        out = weight.new_empty(m, n)
        if m and n:
            bits, wt = packed.contiguous(), weight.t().contiguous()
            getattr(_library(), f"sl_forward_{_SUFFIX[weight.dtype]}")(
                m, k, n, _threads(m * n), bits.data_ptr(), wt.data_ptr(), out.data_ptr()
            )
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[None, Tensor | None, None]:
        packed, weight = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:
            return None, None, None
        n, k = weight.shape
        if not ctx.use_c or grad_out.dtype != weight.dtype:
            return None, grad_out.t() @ _unpack_rows(packed, k, grad_out.dtype), None
        gwt = weight.new_empty(k, n)
        if k and n:
            g = grad_out.contiguous()
            getattr(_library(), f"sl_weight_grad_{_SUFFIX[weight.dtype]}")(
                packed.shape[0], k, n, _threads(k * n), packed.contiguous().data_ptr(),
                g.data_ptr(), gwt.data_ptr(),
            )  # fmt: skip
        else:
            gwt.zero_()
        return None, gwt.t(), None


def packed_spike_linear(
    packed: Tensor, weight: Tensor, bias: Tensor | None = None, *, backend: str = "auto"
) -> Tensor:
    """``Linear`` on row-packed spikes (SpikingJelly's ``functional.packed_spike_linear``):
    ``unpacked @ weight.T + bias`` with ``unpacked`` the ``[M, K]`` spikes
    :func:`bit_pack_spike_dense` packed, without unpacking them on the ``"c"`` backend.

    Args:
        packed: uint8 ``[M, ceil(K / 8)]``; the padding bits past ``K`` are ignored.
        weight: ``[N, K]`` floating-point, on ``packed``'s device; differentiable.
        bias: optional ``[N]``, the weight's dtype and device; differentiable.
        backend: one of :data:`BACKENDS` (``"c"``: spike by spike, CPU float32/float64).

    Returns:
        ``[M, N]`` in the weight's dtype. The bits get no gradient (they are integers).

    Raises:
        DTypeError: ``packed`` is not uint8, the weight not floating-point, the bias not
            the weight's dtype, or an argument is not a dense tensor.
        ShapeError: ``packed`` is not 2-D, its width is not ``ceil(K / 8)``, the weight
            is not 2-D, or the bias is not ``[N]``.
        ConfigurationError: tensors on different devices, an unknown backend, or
            ``backend="c"`` where the C kernel does not run.
    """
    owner = "packed_spike_linear"
    _check_packed(packed, owner, 2)
    _check_weight_bias(weight, bias, packed.device, owner)
    k = weight.shape[1]
    if packed.shape[1] != -(-k // 8):
        raise ShapeError(
            f"{owner}: packed is {tuple(packed.shape)}, but a weight of {k} inputs needs "
            f"{-(-k // 8)} bytes per row (ceil(K / 8))"
        )
    use_c = _use_c(weight, backend, lambda: _set_bits(packed, k) / max(1, packed.shape[0] * k))
    out = _PackedLinear.apply(packed, weight, use_c)
    return out if bias is None else out + bias


_STRATEGIES = ("torch", "sparse")


def sparse_linear(
    spike: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    strategy: str = "torch",
    *,
    backend: str = "auto",
) -> Tensor:
    """``Linear`` on unpacked binary spikes with every gradient (SpikingJelly's
    ``functional.sparse_linear``): ``spike @ weight.T + bias``.

    Args:
        spike: ``[..., K]`` 0s and 1s, floating-point (the weight's dtype for
            ``"sparse"``); differentiable.
        weight: ``[N, K]`` floating-point; differentiable.
        bias: optional ``[N]``; differentiable.
        strategy: ``"torch"`` (the default, SpikingJelly's: ``torch.nn.functional.linear``,
            spikes not checked) or ``"sparse"`` (checks the spikes are 0/1, packs them and
            runs :func:`packed_spike_linear`'s path; the input gradient is
            ``grad @ weight``).
        backend: for ``"sparse"``, one of :data:`BACKENDS`.

    Returns:
        ``[..., N]``.

    Raises:
        ConfigurationError: an unknown strategy or backend, or (``"sparse"``) a spike
            neither 0 nor 1 or tensors on different devices.
        DTypeError, ShapeError: (``"sparse"``) a spike dtype other than the weight's, or
            shapes that do not fit (as :func:`packed_spike_linear`).
    """
    owner = "sparse_linear"
    if strategy not in _STRATEGIES:
        raise ConfigurationError(
            f"{owner}: strategy must be one of {_STRATEGIES}, got {strategy!r}"
        )
    if strategy == "torch":
        return torch.nn.functional.linear(spike, weight, bias)
    _check_spikes(spike, owner)
    _check_weight_bias(weight, bias, spike.device, owner)
    if spike.dtype != weight.dtype:
        raise DTypeError(
            f"{owner}: strategy='sparse' needs spikes of the weight's dtype {weight.dtype}, "
            f"got {spike.dtype}"
        )
    if spike.dim() < 1 or spike.shape[-1] != weight.shape[1]:
        raise ShapeError(
            f"{owner}: spike must be [..., K] with K = {weight.shape[1]} (the weight's "
            f"inputs), got shape {tuple(spike.shape)}"
        )
    use_c = _use_c(weight, backend, lambda: float(spike.count_nonzero()) / max(1, spike.numel()))
    out = _SparseLinear.apply(spike, weight, use_c)
    return out if bias is None else out + bias


class _SparseLinear(torch.autograd.Function):
    """``spike @ weight.T`` through the packed path, with the spikes' gradient too."""

    @staticmethod
    def forward(ctx: Any, spike: Tensor, weight: Tensor, use_c: bool) -> Tensor:
        rows = spike.detach().reshape(math.prod(spike.shape[:-1]), spike.shape[-1])
        packed = _pack_rows(rows)
        ctx.save_for_backward(packed, weight)
        ctx.use_c = use_c
        out = _PackedLinear.forward(ctx, packed, weight, use_c)
        return out.reshape(*spike.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        weight = ctx.saved_tensors[1]
        rows = grad_out.reshape(math.prod(grad_out.shape[:-1]), weight.shape[0])
        grad_spike = None
        if ctx.needs_input_grad[0]:
            grad_spike = (rows @ weight).reshape(*grad_out.shape[:-1], weight.shape[1])
        _, grad_weight, _ = _PackedLinear.backward(ctx, rows)
        return grad_spike, grad_weight, None
