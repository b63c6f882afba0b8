"""Compile a neuron's Triton kernels for a GPU architecture without a GPU.

:func:`compile_for_gpu` prints the GPU flavour of a neuron's kernels, exactly as
:func:`spikeflow.kernels.triton_backend.run_triton` would on a CUDA tensor, and has
Triton compile them ahead of time for a chosen architecture (``sm_90`` by default) with
the ``ptxas`` that ships with Triton. No GPU and no CUDA driver are needed. It checks
that a user-defined neuron compiles for a GPU, and lets tests read the generated PTX
(for example that the forward has no fused multiply-add). Triton's interpreter must be
off (``TRITON_INTERPRET`` unset or ``0`` before triton is imported).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, MissingExtraError
from spikeflow.kernels import fused, triton_backend
from spikeflow.kernels.codegen_triton import generate_triton
from spikeflow.kernels.fused import Steps
from spikeflow.kernels.spec import KernelSpec
from spikeflow.kernels.triton_backend import (
    _SUPPORTED,
    _module,
    interpreting,
    launch_config,
    run_with_launcher,
    scalar_dtype,
    step_args,
    triton_available,
)

__all__ = ["CompiledNeuronKernels", "compile_for_gpu"]

_TRITON_TYPES = {
    torch.float32: "fp32",
    torch.float64: "fp64",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.uint8: "u8",
    torch.bool: "i1",
}
_COUNTER = itertools.count()


@dataclass
class CompiledNeuronKernels:
    """The compiled forward and backward of one neuron configuration.

    Attributes:
        source: the generated Triton source (GPU flavour).
        forward: Triton's compiled forward kernel (``.asm["ptx"]``, ``.asm["cubin"]``).
        backward: the compiled backward kernel, or ``None`` when no gradient was needed.
    """

    source: str
    forward: Any = None
    backward: Any = None


@dataclass
class _Recorder:
    """Stands in for the launched kernels: compiles them with the real argument types."""

    module: Any
    arch: int
    result: CompiledNeuronKernels
    record_v: bool = False
    device_scalars: ClassVar[bool] = True  # as _TritonKernels
    one_value_gradients: ClassVar[bool] = True

    def _compile(self, fn: Any, args: list[Any], consts: dict[str, int] | None = None) -> Any:
        import triton
        from triton.backends.compiler import GPUTarget

        signature: dict[str, str] = {}
        block, warps = launch_config()
        constexprs: dict[str, Any] = {"BLOCK": block, **(consts or {})}
        for name, arg in zip(fn.arg_names, args):
            if isinstance(arg, Tensor):
                signature[name] = "*" + _TRITON_TYPES[arg.dtype]
            elif arg is None:  # an absent gradient: a compile-time None, as launched
                signature[name] = "constexpr"
                constexprs[name] = None
            else:
                signature[name] = "i32"
        for name in constexprs:
            signature[name] = "constexpr"
        source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs)
        target = GPUTarget("cuda", self.arch, 32)
        # The options run_triton launches with (read at each call, as it does).
        options = {"enable_fp_fusion": triton_backend.FP_FUSION, "num_warps": warps}
        return triton.compile(source, target=target, options=options)

    @staticmethod
    def _scal(buffers: list[Tensor]) -> Tensor:
        return torch.zeros(1, dtype=scalar_dtype(buffers))

    def forward(self, T: int, n: int, buffers: list[Tensor], scalars: list[float]) -> None:
        args = [*buffers, self._scal(buffers), T, n]
        self.result.forward = self._compile(self.module.spikeflow_forward, args)

    def backward(
        self, T: int, n: int, buffers: list[Tensor | None], scalars: list[float], steps: Steps
    ) -> None:
        steps_, elems = step_args(steps, T, self.record_v)
        args = [*buffers, self._scal(buffers), T, n, (T - 1) * n, *steps_]  # type: ignore[arg-type]
        self.result.backward = self._compile(self.module.spikeflow_backward, args, elems)


def compile_for_gpu(
    node: torch.nn.Module, x: Tensor, arch: int = 90, backward: bool = True
) -> CompiledNeuronKernels:
    """Compile ``node``'s fused Triton kernels for ``sm_{arch}``, on any machine.

    Args:
        node: a spikeflow neuron (any :class:`~spikeflow.neurons.BaseNode`).
        x: an input like the ones it will see on the GPU (``[T, ...]``, on the CPU; its
            dtype selects the kernels: float32/float64, or float16/bfloat16 computed in
            float32). Only its shape and dtype matter: nothing runs.
        arch: the CUDA compute capability times ten (90: H100/H200, 80: A100).
        backward: also compile the backward kernel (gradients of ``x`` and of every
            parameter that requires one).

    Returns:
        The generated source and Triton's compiled kernels.
    """
    if not triton_available():
        raise MissingExtraError("compile_for_gpu", "triton", "triton")
    if interpreting():
        raise ConfigurationError(
            "compile_for_gpu needs Triton's compiler: unset TRITON_INTERPRET (or set it to 0) "
            "before triton is imported"
        )
    if x.dtype not in _SUPPORTED:
        raise ConfigurationError(f"x has dtype {x.dtype}; the Triton kernels take {_SUPPORTED}")
    x_seq = node._check_input(x.detach().cpu())
    result = CompiledNeuronKernels(source="")

    def launcher(spec: KernelSpec) -> _Recorder:
        result.source = generate_triton(spec, exact=True)
        return _Recorder(_module(result.source), arch, result, spec.record_v)

    launcher.__name__ = f"triton_aot_{next(_COUNTER)}"
    x_in = x_seq.clone().requires_grad_(backward)
    theta = node.firing_threshold(x_in.shape[1:])
    # What its forward runs (a quantized membrane's rounding included).
    decl, params = node.equations(node.neuron_params(), theta, x_in.dtype)
    try:
        with torch.set_grad_enabled(backward):
            spikes, _, v_seq = run_with_launcher(
                launcher,
                decl,
                x_in,
                node.start_state(x_in[0]),
                params,
                theta,
                node.firing_rule,
                record_v=bool(getattr(node, "store_v_seq", False)),
            )
            if backward:
                loss = spikes.sum() if v_seq is None else spikes.sum() + v_seq.sum()
                loss.backward()
    finally:
        fused.forget(launcher)  # its entries hold this one-off launcher
    return result
