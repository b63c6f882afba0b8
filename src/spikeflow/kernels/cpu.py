"""The fused CPU backend: C generated from the neuron declaration, compiled once, cached.

Technology: plain C printed from the traced step graph and compiled with the system C
compiler (``$CC``, else ``cc``/``gcc``/``clang``) with OpenMP, loaded through ctypes.
It needs no PyTorch headers, so a kernel compiles in a fraction of a second (a C++
torch extension takes tens of seconds); the shared object is cached on disk under a
hash of the source and compiler flags (``$SPIKEFLOW_CACHE_DIR``, else
``$XDG_CACHE_HOME/spikeflow``, else ``~/.cache/spikeflow``, in ``kernels/``; see
:mod:`spikeflow._cbuild`, shared with the event-file
decoders), so later runs load it in milliseconds.

Pointer order of the generated functions: array parameters (declaration order),
threshold array, ``x``, then for the forward: initial states (those that are not one
number, see ``KernelSpec.uniform_states``), spikes, final states,
saved states (if saving), recorded membrane (if recording); for the backward: saved
states, grad of spikes, grads of final states (NULL for an absent one), grad of the
recorded membrane (if recording), grad of ``x``,
grads of initial states, per-neuron grads of the parameters that need one, of the
threshold. Scalar parameters (and a scalar threshold) go in the ``scalars`` array in
declaration order, then the surrogate's run-time parameters, then the initial states
that are one number.
"""

from __future__ import annotations

import ctypes
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spikeflow._cbuild import (
    BuildError,
    CompilerNotFoundError,
    build_library,
    cache_folder,
    find_compiler,
)
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.kernels.codegen_c import CHECKPOINT, generate_c
from spikeflow.kernels.fused import Steps, promoted_input, run_fused
from spikeflow.kernels.precision import rounded_start
from spikeflow.kernels.reference import FiringRule
from spikeflow.kernels.spec import KernelSpec
from spikeflow.neurons.declaration import NeuronDeclaration

__all__ = ["CompilerNotFoundError", "compiler", "run_cpu"]

_CTYPES = {torch.float32: "float", torch.float64: "double"}
# The forward must reproduce the reference's float arithmetic exactly (no contraction, no
# reassociation). Both units keep IEEE semantics; the backward differs only in calling
# libm through glibc's vector variants (libmvec, see codegen_c._HEADER) for the
# gradient's own functions (the surrogate's exp), while its recomputation of the
# forward's values calls the scalar ones, as the forward does. -ffast-math is not used:
# its finite-math-only made an exp that overflows to inf give NaN gradients.
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-fno-math-errno", "-ffp-contract=off"]
# -fno-trapping-math changes no result; without it GCC keeps a loop with floorf scalar
# (a quantized membrane's forward: 55 ms instead of 5.1 for LIF T=64, N=1e5, 1 thread).
# The forward declares no vector variants, so its libm calls stay the scalar ones.
_FORWARD_FLAGS: list[str] = ["-fno-trapping-math"]
_BACKWARD_FLAGS = ["-fno-trapping-math", "-DSPIKEFLOW_BACKWARD_ONLY"]
# The backward is compute-bound (the surrogate's exp through libmvec): 512-bit vectors
# where the CPU has them (GCC otherwise keeps 256 on x86). LIF T=4 N=1e6 backward on an
# AVX-512 Xeon: 2.0 -> 1.6 ms; the memory-bound forward gained nothing, so keeps 256.
if platform.machine().lower() in ("x86_64", "amd64"):
    _BACKWARD_FLAGS.append("-mprefer-vector-width=512")
_ARGTYPES = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int,
             ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_double)]  # fmt: skip


def compiler() -> str:
    """The C compiler used for CPU kernels (``$CC`` or the first of cc, gcc, clang)."""
    return find_compiler("the fused CPU backend compiles C kernels", "use backend='torch'")


def cache_dir() -> Path:
    """Where the compiled kernels are cached (see :func:`spikeflow._cbuild.cache_folder`)."""
    return cache_folder("kernels")


#: Compilers that refused ``-fopenmp`` (Apple clang without libomp, say): their kernels
#: are built without it and run on one thread (the OpenMP pragmas are ignored).
_NO_OPENMP: set[str] = set()


def _build(source: str, cc: str, openmp: bool, prefix: str, units: list[list[str]]) -> Any:
    def plain(flags: list[str]) -> list[str]:
        return flags if openmp else [f for f in flags if f != "-fopenmp"]

    return build_library(
        source,
        cc=cc,
        subdir="kernels",
        prefix=prefix,
        units=[plain(unit) for unit in units],
        link_flags=["-fopenmp", "-lm"] if openmp else ["-lm"],
    )


def load_openmp_library(source: str, prefix: str, units: list[list[str]] | None = None) -> Any:
    """Compile ``source`` with OpenMP (or reuse the cached build) and return the loaded
    library; ``units`` are the flags of each object file (default: one, the kernels'
    flags).

    A compiler that cannot build with OpenMP (but can without) builds kernels that run
    on one thread, with a warning, once per compiler."""
    units = units or [_FLAGS]
    cc = compiler()
    if cc in _NO_OPENMP:
        return _build(source, cc, False, prefix, units)
    try:
        return _build(source, cc, True, prefix, units)
    except BuildError as with_openmp:
        try:
            lib = _build(source, cc, False, prefix, units)
        except BuildError:
            raise with_openmp from None
        _NO_OPENMP.add(cc)
        warnings.warn(
            f"the C compiler {cc!r} cannot build with OpenMP ({with_openmp.detail}); "
            "the fused CPU kernels run on one thread. Install OpenMP for it (libomp "
            "for clang) or set $CC to a compiler with OpenMP (gcc) to use every core",
            RuntimeWarning,
            stacklevel=3,
        )
        return lib


def _load(source: str) -> Any:
    """The neuron kernels of a generated ``source``, loaded (see
    :func:`load_openmp_library`)."""
    lib = load_openmp_library(
        source, "neuron", [[*_FLAGS, *_FORWARD_FLAGS], [*_FLAGS, *_BACKWARD_FLAGS]]
    )
    for fn in (lib.spikeflow_forward, lib.spikeflow_backward):
        fn.restype = ctypes.c_int  # 0, or 1: a thread's work buffer could not be allocated
    lib.spikeflow_forward.argtypes = _ARGTYPES
    lib.spikeflow_backward.argtypes = [*_ARGTYPES, ctypes.c_int64, ctypes.c_int64]
    return lib


_FORKED_CHILD = False


def _after_fork_in_child() -> None:
    # GNU OpenMP's thread pool does not survive fork(): a parallel region in the child
    # of a process that ran one waits for ever on the parent's threads. A forked child
    # (multiprocessing's "fork", a pre-fork server) runs the kernels on one thread.
    global _FORKED_CHILD
    _FORKED_CHILD = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: Neuron-steps per thread below which a call stays on one thread: an OpenMP region
#: costs microseconds even on an idle machine, and on a busy one (its threads waiting
#: for cores held by others) milliseconds, more than a small call's work (a single
#: step of a recurrent layer: 0.12 ms on one thread, 7 ms on two, measured on a loaded
#: 2-core machine). PyTorch's elementwise kernels use the same grain.
PARALLEL_GRAIN = 32768


def kernel_threads(work: int | None = None) -> int:
    """Threads the kernels run on: ``torch.get_num_threads()``, 1 in a forked child,
    and no more than one per :data:`PARALLEL_GRAIN` of ``work`` (neuron-steps) when
    given."""
    threads = 1 if _FORKED_CHILD else torch.get_num_threads()
    if work is not None:
        threads = max(1, min(threads, work // PARALLEL_GRAIN))
    return threads


class _CKernels:
    """The loaded shared object, called through ctypes with raw data pointers."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib

    @staticmethod
    def _args(
        buffers: list[Tensor | None], scalars: list[float], work: int
    ) -> tuple[Any, Any, int]:
        # None (an absent gradient) is passed as a NULL pointer.
        ptrs = (ctypes.c_void_p * max(1, len(buffers)))(
            *[None if b is None else b.data_ptr() for b in buffers]
        )
        vals = (ctypes.c_double * max(1, len(scalars)))(*scalars)
        return ptrs, vals, kernel_threads(work)

    def forward(self, T: int, n: int, buffers: list[Tensor], scalars: list[float]) -> None:
        ptrs, vals, threads = self._args(buffers, scalars, T * n)
        if self.lib.spikeflow_forward(T, n, threads, ptrs, vals):
            raise MemoryError("the fused CPU forward could not allocate its work buffer")

    def backward(
        self, T: int, n: int, buffers: list[Tensor | None], scalars: list[float], steps: Steps
    ) -> None:
        ptrs, vals, threads = self._args(buffers, scalars, T * n)
        if self.lib.spikeflow_backward(T, n, threads, ptrs, vals, *steps):
            raise MemoryError("the fused CPU backward could not allocate its work buffer")


def _c_launcher(spec: KernelSpec) -> _CKernels:
    return _CKernels(_load(generate_c(spec)))


def run_cpu(
    decl: NeuronDeclaration,
    x_seq: Tensor,
    state: dict[str, Tensor | float],
    params: dict[str, Tensor | float],
    threshold: Tensor | float,
    rule: FiringRule,
    record_v: bool = False,
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """Fused CPU equivalent of :func:`spikeflow.kernels.reference.run_reference`."""
    if x_seq.device.type != "cpu":
        raise ConfigurationError(f"backend 'cpu' needs a CPU tensor, got device {x_seq.device}")
    state = rounded_start(state, x_seq.dtype)  # before a parameter promotes the input
    x_seq = promoted_input(x_seq, params, threshold, state)
    dtype = x_seq.dtype
    if dtype not in _CTYPES:
        raise DTypeError(
            f"backend 'cpu' supports float32 and float64, got {dtype}; use backend='torch' "
            "(or 'auto', which picks it) for other dtypes"
        )
    args = (decl, x_seq, state, params, threshold, rule, record_v)
    return run_fused(_c_launcher, _CTYPES[dtype], dtype, CHECKPOINT, *args)
