"""The fused CPU backend: C generated from the neuron declaration, compiled once, cached.

Technology: plain C printed from the traced step graph and compiled with the system C
compiler (``$CC``, else ``cc``/``gcc``/``clang``) with OpenMP, loaded through ctypes.
It needs no PyTorch headers, so a kernel compiles in a fraction of a second (a C++
torch extension takes tens of seconds); the shared object is cached on disk under a
hash of the source and compiler flags (``$SPIKEFLOW_CACHE_DIR``, default
``~/.cache/spikeflow/kernels``), so later runs load it in milliseconds.

Pointer order of the generated functions: array parameters (declaration order),
threshold array, ``x``, then for the forward: initial states, spikes, final states,
saved states (if saving), recorded membrane (if recording); for the backward: saved
states, grad of spikes, grads of final states, grad of ``x``, grads of initial states,
per-neuron grads of the parameters that need one, of the threshold. Scalar parameters
(and a scalar threshold) go in the ``scalars`` array in declaration order.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, DTypeError, SpikeflowError
from spikeflow.kernels.codegen_c import KernelSpec, generate_c
from spikeflow.kernels.reference import FiringRule
from spikeflow.kernels.step import StepGraph, build_step
from spikeflow.neurons.declaration import NeuronDeclaration

__all__ = ["CompilerNotFoundError", "compiler", "run_cpu"]

_CTYPES = {torch.float32: "float", torch.float64: "double"}
# The forward must reproduce the reference's float arithmetic exactly (no contraction, no
# reassociation). The backward only needs float tolerance, so it is built with
# -ffast-math, which lets the compiler vectorise exp/log through glibc's libmvec.
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-fno-math-errno"]
_FORWARD_FLAGS = ["-ffp-contract=off"]
_BACKWARD_FLAGS = ["-ffast-math", "-DSPIKEFLOW_BACKWARD_ONLY"]
_ARGTYPES = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int,
             ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_double)]  # fmt: skip
_LOCK = threading.Lock()
_LIBS: dict[str, Any] = {}
_GRAPHS: dict[tuple, StepGraph] = {}


class CompilerNotFoundError(SpikeflowError, RuntimeError):
    """No C compiler for the fused CPU backend."""


def compiler() -> str:
    """The C compiler used for CPU kernels (``$CC`` or the first of cc, gcc, clang)."""
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return candidate
    raise CompilerNotFoundError(
        "the fused CPU backend compiles C kernels but found no C compiler (tried $CC, cc, "
        "gcc, clang): install one (e.g. apt-get install gcc) or use backend='torch'"
    )


def cache_dir() -> Path:
    root = os.environ.get("SPIKEFLOW_CACHE_DIR") or Path.home() / ".cache" / "spikeflow"
    path = Path(root) / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load(source: str) -> Any:
    """Compile ``source`` (or reuse the cached build) and return the loaded library."""
    cc = compiler()
    key = hashlib.sha256(
        "\n".join([source, cc, *_FLAGS, *_FORWARD_FLAGS, *_BACKWARD_FLAGS, platform.machine(),
                   platform.processor()]).encode()
    ).hexdigest()[:24]
    lib = _LIBS.get(key)
    if lib is not None:
        return lib
    with _LOCK:
        lib = _LIBS.get(key)
        if lib is not None:
            return lib
        folder = cache_dir()
        so = folder / f"neuron_{key}.so"
        if not so.exists():
            src = folder / f"neuron_{key}.c"
            src.write_text(source)
            with tempfile.TemporaryDirectory(dir=folder) as work:
                fwd, bwd, lib_tmp = (str(Path(work) / n) for n in ("f.o", "b.o", "k.so"))
                for cmd in (
                    [cc, *_FLAGS, *_FORWARD_FLAGS, "-c", str(src), "-o", fwd],
                    [cc, *_FLAGS, *_BACKWARD_FLAGS, "-c", str(src), "-o", bwd],
                    [cc, "-shared", "-fopenmp", fwd, bwd, "-o", lib_tmp, "-lm"],
                ):
                    result = subprocess.run(cmd, capture_output=True, text=True)
                    if result.returncode != 0:
                        raise SpikeflowError(
                            f"compiling the generated kernel {src} failed ({' '.join(cmd)}):\n"
                            f"{result.stderr[-4000:]}"
                        )
                os.replace(lib_tmp, so)  # atomic: a half-written .so is never loaded
        lib = ctypes.CDLL(str(so))
        for fn in (lib.spikeflow_forward, lib.spikeflow_backward):
            fn.restype = None
            fn.argtypes = _ARGTYPES
        _LIBS[key] = lib
        return lib


def _graph(decl: NeuronDeclaration, rule: FiringRule) -> StepGraph:
    sg = rule.surrogate
    key = (decl, type(sg), sg.spiking, tuple(sorted(sg.params.items())), rule.v_reset,
           rule.detach_reset, rule.strict)  # fmt: skip
    graph = _GRAPHS.get(key)
    if graph is None:
        graph = _GRAPHS[key] = build_step(decl, sg, rule.v_reset, rule.detach_reset, rule.strict)
    return graph


@dataclass
class _Operand:
    """A parameter or the threshold as the kernel sees it."""

    value: float | None  # scalar (passed by value)
    array: Tensor | None  # [N] (expanded to the neuron shape)
    source: Tensor | None  # the original tensor, when a gradient may be needed
    shape: torch.Size | None  # its shape, to reduce the per-neuron gradient


def _operand(value: Tensor | float, step_shape: torch.Size, dtype: torch.dtype) -> _Operand:
    if not isinstance(value, Tensor):
        return _Operand(float(value), None, None, None)
    if value.dim() == 0:
        return _Operand(float(value.detach()), None, value, value.shape)
    array = value.detach().to(dtype).expand(step_shape).contiguous().view(-1)
    return _Operand(None, array, value, value.shape)


def _ptrs(tensors: list[Tensor]) -> Any:
    return (ctypes.c_void_p * max(1, len(tensors)))(*[t.data_ptr() for t in tensors])


def _scalars(values: list[float]) -> Any:
    return (ctypes.c_double * max(1, len(values)))(*values)


class _FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, run: _Run, x: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        T = x.shape[0]
        n = run.n
        states = [s.detach() for s in tensors[: run.n_states]]
        xs = x.detach().contiguous().view(T, n)
        spikes = torch.empty_like(xs)
        finals = [torch.empty(n, dtype=x.dtype) for _ in states]
        saved = [torch.empty_like(xs) for _ in states] if run.spec.save_states else []
        vrec = [torch.empty_like(xs)] if run.spec.record_v else []
        ptrs = [*run.arrays, xs, *states, spikes, *finals, *saved, *vrec]
        run.lib.spikeflow_forward(T, n, run.threads, _ptrs(ptrs), _scalars(run.scalars))
        ctx.run = run
        ctx.save_for_backward(xs, *saved)
        shape = x.shape
        outputs = [spikes.view(shape), *(f.view(shape[1:]) for f in finals)]
        if vrec:
            outputs.append(vrec[0].view(shape))
            ctx.mark_non_differentiable(outputs[-1])
        return tuple(outputs)

    @staticmethod
    def backward(ctx: Any, grad_spikes: Tensor, *grad_rest: Tensor | None) -> tuple:
        run: _Run = ctx.run
        xs, *saved = ctx.saved_tensors
        T, n = xs.shape
        g_spk = grad_spikes.contiguous().view(T, n).to(xs.dtype)
        g_out = [
            torch.zeros(n, dtype=xs.dtype) if g is None else g.contiguous().view(n).to(xs.dtype)
            for g in grad_rest[: run.n_states]
        ]
        gx = torch.empty_like(xs)
        g_states = [torch.empty(n, dtype=xs.dtype) for _ in range(run.n_states)]
        g_params = [torch.empty(n, dtype=xs.dtype) for g in run.spec.grad_params if g]
        g_theta = [torch.empty(n, dtype=xs.dtype)] if run.spec.grad_theta else []
        ptrs = [*run.arrays, xs, *saved, g_spk, *g_out, gx, *g_states, *g_params, *g_theta]
        run.lib.spikeflow_backward(T, n, run.threads, _ptrs(ptrs), _scalars(run.scalars))
        step_shape = run.step_shape
        grads: list[Tensor | None] = [gx.view(T, *step_shape)]
        grads += [g.view(step_shape) for g in g_states]
        per_neuron = iter([*g_params, *g_theta])
        for op, wants in zip(run.operands, (*run.spec.grad_params, run.spec.grad_theta)):
            if op.source is None:
                continue
            if wants:
                g = next(per_neuron).view(step_shape)
                grads.append(g.sum().view(op.shape) if op.array is None else
                             g.sum_to_size(op.shape))  # fmt: skip
            else:
                grads.append(None)
        return (None, *grads)


@dataclass
class _Run:
    lib: Any
    spec: KernelSpec
    n: int
    n_states: int
    step_shape: torch.Size
    threads: int
    arrays: list[Tensor]
    scalars: list[float]
    operands: list[_Operand]


def run_cpu(
    decl: NeuronDeclaration,
    x_seq: Tensor,
    state: dict[str, Tensor],
    params: dict[str, Tensor | float],
    threshold: Tensor | float,
    rule: FiringRule,
    record_v: bool = False,
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """Fused CPU equivalent of :func:`spikeflow.kernels.reference.run_reference`."""
    if x_seq.device.type != "cpu":
        raise ConfigurationError(f"backend 'cpu' needs a CPU tensor, got device {x_seq.device}")
    dtype = x_seq.dtype
    if dtype not in _CTYPES:
        raise DTypeError(
            f"backend 'cpu' supports float32 and float64, got {dtype}; use backend='torch' "
            "(or 'auto', which picks it) for other dtypes"
        )
    step_shape = x_seq.shape[1:]
    operands = [_operand(params[p], step_shape, dtype) for p in decl.param_names]
    operands.append(_operand(threshold, step_shape, dtype))
    needs = [op.source is not None and op.source.requires_grad for op in operands]
    states = [state[s].to(dtype).expand(step_shape).contiguous() for s in decl.state_names]
    grad_on = torch.is_grad_enabled() and (
        x_seq.requires_grad or any(needs) or any(s.requires_grad for s in states)
    )
    spec = KernelSpec(
        _graph(decl, rule),
        _CTYPES[dtype],
        array_params=[op.array is not None for op in operands[:-1]],
        theta_is_array=operands[-1].array is not None,
        save_states=grad_on,
        record_v=record_v,
        grad_params=needs[:-1],
        grad_theta=needs[-1],
    )
    run = _Run(
        lib=_load(generate_c(spec)),
        spec=spec,
        n=step_shape.numel(),
        n_states=len(states),
        step_shape=step_shape,
        threads=torch.get_num_threads(),
        arrays=[op.array for op in operands if op.array is not None],
        scalars=[op.value for op in operands if op.value is not None],
        operands=operands,
    )
    grad_inputs = [op.source for op in operands if op.source is not None]
    out = _FusedNeuron.apply(run, x_seq, *states, *grad_inputs)
    spikes, finals = out[0], out[1 : 1 + len(states)]
    v_seq = out[-1] if record_v else None
    return spikes, dict(zip(decl.state_names, finals)), v_seq
