"""The event-driven neuron's Triton kernels (GPU; Triton's interpreter on the CPU).

The same arithmetic, in the same order, as the PyTorch loops of
:mod:`spikeflow.event_driven.kernel` and the C kernels: constants in the data's dtype
(loaded from a small tensor, so float64 stays float64), products never fused into
FMAs (``enable_fp_fusion=False``). One program takes ``BLOCK`` neurons and walks time.
Needs the ``triton`` extra; imported only when a Triton backend runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, MissingExtraError
from spikeflow.kernels.triton_backend import interpreting, triton_available

__all__ = ["compile_for_gpu", "triton_backward", "triton_forward"]

BLOCK = 256
_KERNELS: dict[str, Any] = {}


def kernels() -> dict[str, Any]:
    """The two ``@triton.jit`` kernels, defined at first use."""
    if _KERNELS:
        return _KERNELS
    if not triton_available():
        raise MissingExtraError("the event-driven neuron's Triton backend", "triton", "triton")
    import triton
    import triton.language as tl

    @triton.jit
    def forward(current, spikes, rise, slope, constants, steps, n,
                EXPONENTIAL: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        decay_m = tl.load(constants + 0)
        decay_s = tl.load(constants + 1)
        decay_g = tl.load(constants + 2)
        scale = tl.load(constants + 3)
        threshold = tl.load(constants + 4)
        zero = tl.zeros([BLOCK], dtype=constants.dtype.element_ty)
        trace_m, trace_s, trace_g, u_last = zero, zero, zero, zero
        where = offsets  # int64: T·n may pass 2^31
        for _ in range(steps):
            c = tl.load(current + where, mask=mask, other=0.0)
            m = (trace_m + c) * decay_m
            s = (trace_s + c) * decay_s
            u = (m - s) * scale
            tl.store(rise + where, u - u_last, mask=mask)
            keep = tl.where(u < threshold, 1.0, 0.0).to(u.dtype)
            tl.store(spikes + where, 1.0 - keep, mask=mask)
            if EXPONENTIAL:
                g = (trace_g + c) * decay_g
                tl.store(slope + where, g, mask=mask)
                trace_g = g * keep
            u_last = u * keep
            trace_m = m * keep
            trace_s = s * keep
            where += n

    @triton.jit
    def backward(grad_time, spikes, rise, slope, kernel, slope_kernel, for_input,
                 for_weight, constants, steps, n, last_row, FP32: tl.constexpr,
                 BLOCK: tl.constexpr):  # fmt: skip
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        max_w = tl.load(constants + 0)
        max_in = tl.load(constants + 1)
        zero = tl.zeros([BLOCK], dtype=constants.dtype.element_ty)
        at_weight, at_input = zero, zero
        since = tl.zeros([BLOCK], dtype=tl.int32) + steps
        where = offsets + last_row  # the last step, then back
        for _ in range(steps):
            fired = tl.load(spikes + where, mask=mask, other=0.0) > 0
            minus_one = zero - 1.0
            r = tl.load(rise + where, mask=mask, other=1.0)
            d = tl.load(slope + where, mask=mask, other=1.0)
            if FP32:  # float32 "/" is not correctly rounded on the GPU; float64 "/" is
                dt_du, dt_du_in = tl.div_rn(minus_one, r), tl.div_rn(minus_one, d)
            else:
                dt_du, dt_du_in = minus_one / r, minus_one / d
            # clamp by comparisons: tl.minimum/maximum drop a NaN, torch.clamp keeps it
            dt_du = tl.where(dt_du < -max_w, -max_w, dt_du)
            dt_du = tl.where(dt_du > 0.0, 0.0, dt_du)
            dt_du_in = tl.where(dt_du_in < -max_in, -max_in, dt_du_in)
            dt_du_in = tl.where(dt_du_in > 0.0, 0.0, dt_du_in)
            g = tl.load(grad_time + where, mask=mask, other=0.0)
            at_weight = tl.where(fired, g * dt_du, at_weight)
            at_input = tl.where(fired, g * dt_du_in, at_input)
            since = tl.where(fired, 0, tl.minimum(since + 1, steps))
            tl.store(for_input + where, at_input * -tl.load(slope_kernel + since), mask=mask)
            tl.store(for_weight + where, at_weight * tl.load(kernel + since), mask=mask)
            where -= n

    _KERNELS.update(forward=forward, backward=backward)
    return _KERNELS


def _check(x: Tensor) -> None:
    if x.dtype not in (torch.float32, torch.float64):
        raise ConfigurationError(
            f"the event-driven Triton kernels take float32/float64, got {x.dtype}"
        )
    if x.device.type != "cuda" and not interpreting():
        raise ConfigurationError(
            f"the event-driven Triton kernels run on CUDA tensors (got {x.device}); set "
            "TRITON_INTERPRET=1 before importing triton to run them on the CPU interpreter"
        )


def _launch(fn: Any, device: torch.device, n: int, *args: Any, **constexprs: Any) -> None:
    import contextlib

    import triton

    grid = (triton.cdiv(n, BLOCK),)
    # Triton launches on the current CUDA device, not on the tensors' one
    where = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with where:
        fn[grid](*args, BLOCK=BLOCK, enable_fp_fusion=False, **constexprs)


def triton_forward(
    current: Tensor, spikes: Tensor, rise: Tensor, slope: Tensor,
    decays: tuple[float, float, float], scale: float, threshold: float, exponential: bool,
) -> None:  # fmt: skip
    """Fill ``spikes``, ``rise`` and ``slope`` (see :func:`spike_forward`; contiguous
    ``[T, ...]``, not empty) from ``current``."""
    _check(current)
    steps = current.shape[0]
    n = current.numel() // steps
    constants = torch.tensor([*decays, scale, threshold], dtype=current.dtype,
                             device=current.device)  # fmt: skip
    _launch(kernels()["forward"], current.device, n, current, spikes, rise, slope,
            constants, steps, n, EXPONENTIAL=exponential)  # fmt: skip


def triton_backward(
    grad_time: Tensor, spikes: Tensor, rise: Tensor, slope: Tensor, kernel: Tensor,
    slope_kernel: Tensor, for_input: Tensor, for_weight: Tensor, max_dt_du: float,
    max_dt_du_input: float,
) -> None:  # fmt: skip
    """Fill ``for_input`` and ``for_weight`` (see :func:`spike_backward`)."""
    _check(spikes)
    steps = spikes.shape[0]
    n = spikes.numel() // steps
    constants = torch.tensor([max_dt_du, max_dt_du_input], dtype=spikes.dtype,
                             device=spikes.device)  # fmt: skip
    _launch(kernels()["backward"], spikes.device, n, grad_time, spikes, rise, slope, kernel,
            slope_kernel, for_input, for_weight, constants, steps, n, (steps - 1) * n,
            FP32=spikes.dtype == torch.float32)  # fmt: skip


def compile_for_gpu(dtype: torch.dtype = torch.float32, arch: int = 90) -> dict[str, Any]:
    """Compile both kernels for ``sm_{arch}`` without a GPU (Triton's compiler and its
    ``ptxas``); the interpreter must be off. Returns ``{"forward", "exact forward",
    "backward"}`` compiled kernels (``.asm["ptx"]``), for checking that they build."""
    if interpreting():
        raise ConfigurationError(
            "compile_for_gpu needs Triton's compiler: unset TRITON_INTERPRET before "
            "importing triton"
        )
    import triton
    from triton.backends.compiler import GPUTarget

    pointer = {torch.float32: "*fp32", torch.float64: "*fp64"}[dtype]
    found = kernels()

    def build(fn: Any, constexprs: dict[str, Any]) -> Any:
        signature = {
            name: "constexpr" if name in constexprs else ("i32" if name in _INTS else pointer)
            for name in fn.arg_names
        }
        source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs)
        options = {"enable_fp_fusion": False, "num_warps": 4}
        return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)

    return {
        "forward": build(found["forward"], {"EXPONENTIAL": True, "BLOCK": BLOCK}),
        "exact forward": build(found["forward"], {"EXPONENTIAL": False, "BLOCK": BLOCK}),
        "backward": build(found["backward"], {"FP32": dtype == torch.float32, "BLOCK": BLOCK}),
    }


#: The kernels' integer (not pointer) arguments.
_INTS = ("steps", "n", "last_row")
