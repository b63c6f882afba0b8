"""Execution backends for neuron declarations.

``"torch"`` is the reference loop (:mod:`spikeflow.kernels.reference`); ``"cpu"`` the
fused C kernel generated from the declaration (:mod:`spikeflow.kernels.cpu`);
``"triton"`` the fused Triton kernel from the same graph
(:mod:`spikeflow.kernels.triton_backend`). ``"auto"`` picks Triton for CUDA tensors
when triton is installed, the C kernel for CPU float32/float64 tensors when a C
compiler is available, and the reference loop otherwise (and inside ``torch.compile``
and ``torch.func`` transforms).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError
from spikeflow.kernels.cpu import CompilerNotFoundError, compiler, run_cpu
from spikeflow.kernels.fused import functorch_active
from spikeflow.kernels.reference import FiringRule, run_reference
from spikeflow.kernels.triton_backend import run_triton, triton_available

__all__ = ["BACKENDS", "FiringRule", "check_backend", "resolve_backend", "run_reference"]

#: Backend name -> runner with the signature of :func:`run_reference`.
BACKENDS: dict[str, Callable[..., tuple]] = {
    "torch": run_reference,
    "cpu": run_cpu,
    "triton": run_triton,
}
_FUSED_CPU_DTYPES = (torch.float32, torch.float64)


def check_backend(name: str) -> str:
    """Return ``name`` if it is ``"auto"`` or a known backend, else raise."""
    if name != "auto" and name not in BACKENDS:
        valid = ", ".join(repr(n) for n in ("auto", *BACKENDS))
        raise ConfigurationError(f"unknown backend {name!r}; choose one of {valid}")
    return name


def resolve_backend(name: str, x: Tensor) -> Callable[..., tuple]:
    """The runner for backend ``name`` on ``x``'s device (``"auto"``: the best one)."""
    check_backend(name)
    if name == "auto":
        # Under torch.compile the reference loop is traced and fused by the compiler;
        # the ctypes kernel is opaque to it (and to torch.func and torch.jit.trace).
        if torch.compiler.is_compiling() or functorch_active() or torch.jit.is_tracing():
            return run_reference
        if x.device.type == "cuda" and triton_available():
            return run_triton
        if x.device.type == "cpu" and x.dtype in _FUSED_CPU_DTYPES and _has_compiler():
            return run_cpu
        return run_reference
    return BACKENDS[name]


def _has_compiler() -> bool:
    try:
        compiler()
    except CompilerNotFoundError:
        return False
    return True
