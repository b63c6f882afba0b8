"""Execution backends for neuron declarations.

``"torch"`` is the reference loop (:mod:`spikeflow.kernels.reference`); ``"cpu"`` the
fused C kernel generated from the declaration (:mod:`spikeflow.kernels.cpu`);
``"triton"`` the fused Triton kernel from the same graph
(:mod:`spikeflow.kernels.triton_backend`). ``"auto"`` picks Triton for CUDA tensors
when triton is installed (the reference loop for CUDA inside ``torch.compile``), the C
kernel for CPU float32/float64 tensors when a C compiler is available (in eager mode
and inside ``torch.compile``), and the reference loop otherwise (inside ``torch.func``
transforms, ``torch.jit.trace`` and ``torch.export``, under forward-mode AD, and,
with a warning that names the reason, for equations the tracer cannot compile, for
parameters, thresholds or states wider than the input, which the reference computes
in mixed precision, and when the C compiler fails on the kernels).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from spikeflow._cbuild import BuildError
from spikeflow._compile_marks import assume_constant_result
from spikeflow.errors import ConfigurationError
from spikeflow.kernels.cpu import CompilerNotFoundError, compiler, run_cpu
from spikeflow.kernels.expr import TraceError
from spikeflow.kernels.fused import dual_tensors, functorch_active
from spikeflow.kernels.precision import HostScalarError, MixedPrecisionError
from spikeflow.kernels.reference import FiringRule, run_reference
from spikeflow.kernels.registry import compiled_refusal
from spikeflow.kernels.second_order import second_order
from spikeflow.kernels.triton_backend import run_triton, triton_available
from spikeflow.neurons.declaration import NeuronDeclaration

__all__ = [
    "BACKENDS",
    "FiringRule",
    "HostScalarError",
    "MixedPrecisionError",
    "TraceError",
    "check_backend",
    "resolve_backend",
    "run_reference",
    "second_order",
]

#: Backend name -> runner with the signature of :func:`run_reference`.
BACKENDS: dict[str, Callable[..., tuple]] = {
    "torch": run_reference,
    "cpu": run_cpu,
    "triton": run_triton,
}
_FUSED_CPU_DTYPES = (torch.float32, torch.float64)


def check_backend(name: str) -> str:
    """Return ``name`` if it is ``"auto"`` or a known backend, else raise."""
    if not isinstance(name, str) or (name != "auto" and name not in BACKENDS):
        valid = ", ".join(repr(n) for n in ("auto", *BACKENDS))
        raise ConfigurationError(f"unknown backend {name!r}; choose one of {valid}")
    return name


def resolve_backend(name: str, x: Tensor, stepped: bool = False) -> Callable[..., tuple]:
    """The runner for backend ``name`` on ``x``'s device (``"auto"``: the best one);
    ``stepped``: the call is one of the steps a container runs through the neuron."""
    check_backend(name)
    if name == "auto":
        # The fused kernels read raw memory: not under torch.func transforms nor
        # torch.jit.trace; an exported program must not name this process's kernels
        # (torch.export). Under torch.compile the C kernels are custom operators in the
        # graph; on CUDA the compiler fuses the reference loop (the Triton kernels as
        # operators inside compiled graphs are not yet validated on a GPU).
        if functorch_active() or torch.jit.is_tracing() or torch.compiler.is_exporting():
            return run_reference
        if torch.compiler.is_compiling():
            # A container's steps (a recurrent layer's) have no time loop to fuse: the
            # compiler fuses the reference step with the operations around it, where a
            # kernel is an opaque call (a recurrent LIF layer's forward and backward:
            # 3x faster). Not other one-step calls: inductor (torch 2.13) can overwrite
            # a reference step's spikes that are an output of the graph during the
            # backward (CLIF with detach_reset and store_v_seq), which a container's
            # stacked output avoids.
            if stepped and x.shape[0] == 1:
                return run_reference
            if x.device.type == "cpu" and x.dtype in _FUSED_CPU_DTYPES and _compiler_found():
                return run_cpu_or_reference
            return run_reference
        if x.device.type == "cuda" and triton_available():
            return run_triton_or_reference
        if x.device.type == "cpu" and x.dtype in _FUSED_CPU_DTYPES and _has_compiler():
            return run_cpu_or_reference
        return run_reference
    return BACKENDS[name]


_WARNED: set[tuple[str, object]] = set()


def _warn_once(name: str, key: object, why: str) -> None:
    """Warn that neuron ``name`` falls back to the reference loop, once per neuron and
    ``key``."""
    if (name, key) not in _WARNED:
        _WARNED.add((name, key))
        warnings.warn(f"{name} runs on the reference loop (backend='auto'): {why}", stacklevel=4)


# Under torch.compile: run while Dynamo traces (which would drop a traced warning).
_warn_once_compiled = assume_constant_result(_warn_once)


def _fallback_warning(decl: NeuronDeclaration, key: object, why: str) -> None:
    if torch.compiler.is_compiling():
        _warn_once_compiled(decl.name, key, why)
    else:
        _warn_once(decl.name, key, why)


def _or_reference(fused: Callable[..., tuple]) -> Callable[..., tuple]:
    """``backend="auto"``'s runner: ``fused``, or the reference loop where the fused
    kernels cannot give the reference's results or cannot be built: forward-mode AD
    dual tensors (the kernels would drop the tangent), equations the tracer refuses (an
    unsupported call, a captured tensor, ...), mixed precision (a parameter, threshold
    or state wider than the input), a 0-dim CPU tensor beside a GPU input (a host
    scalar to PyTorch) and a C compiler that fails on the kernels (a compiler without
    OpenMP, say); all but the first warned once per neuron and reason."""

    def run(*args: Any) -> tuple:  # the arguments of run_reference
        decl, x_seq, state, params, threshold = args[:5]
        if dual_tensors(x_seq, state, params, threshold):
            return run_reference(*args)
        if torch.compiler.is_compiling():  # before the fused path (see compiled_refusal)
            refused = compiled_refusal(decl, args[5])
            if refused is not None:
                why = f"its equations cannot be compiled to a fused kernel: {refused}"
                _fallback_warning(decl, refused, why)
                return run_reference(*args)
        try:
            return fused(*args)
        except TraceError as exc:  # raised while tracing, before any kernel ran
            reason = str(exc)
            _fallback_warning(
                decl, reason, f"its equations cannot be compiled to a fused kernel: {reason}"
            )
        except MixedPrecisionError as exc:  # raised before tracing, before any kernel ran
            key = (exc.value, exc.dtype, exc.input_dtype)  # not the shape (a batch size)
            why = f"it {exc.summary}, which a fused kernel cannot: {exc.reason}"
            _fallback_warning(decl, key, why)
        except BuildError as exc:  # the C compiler is there but failed (no OpenMP, ...)
            message = str(exc)
            why = (
                "the C compiler could not build its fused kernel; fix the compiler set-up "
                f"($CC) or choose backend='torch'. The compiler's command and output: {message}"
            )
            _fallback_warning(decl, ("build", message), why)
        return run_reference(*args)

    run.__name__ = run.__qualname__ = f"{fused.__name__}_or_reference"
    run.fused = fused  # type: ignore[attr-defined]
    return run


#: What ``backend="auto"`` runs on CPU and CUDA tensors (see :func:`_or_reference`).
run_cpu_or_reference = _or_reference(run_cpu)
run_triton_or_reference = _or_reference(run_triton)


def _has_compiler() -> bool:
    try:
        compiler()
    except CompilerNotFoundError:
        return False
    return True


#: The same, as a constant of a compiled graph (Dynamo cannot trace the search).
_compiler_found = assume_constant_result(_has_compiler)
