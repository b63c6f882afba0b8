"""The event-driven neuron of Zhu et al. (NeurIPS 2022; methods.md 10): forward and
time-based backward.

Forward, per neuron, with ``θ_m = 1/τ_m`` and ``θ_s = 1/τ_s``::

    a_m <- (a_m + I[t])(1 - θ_m);  a_s <- (a_s + I[t])(1 - θ_s)
    u[t] = (a_m - a_s) θ_s / (θ_s - θ_m);  o[t] = 1[u[t] >= threshold]

and a spike resets both traces (so the membrane) to 0. ``u[t]`` is thus the input since
the last spike filtered by the kernel ``ε(d) = ((1-θ_m)^(d+1) - (1-θ_s)^(d+1)) θ_s/(θ_s-θ_m)``.

Backward: gradients exist only at output spikes and reach only the inputs since the
previous spike. For a spike at ``t_o`` with time gradient ``g``:

- weights: ``∂L/∂u(t_o) = g · ∂t/∂u`` with ``∂t/∂u ≈ clamp(-1/Δu, -max_dt_du, 0)`` (``Δu`` the
  membrane's rise at that step, from 0 after a reset), and an input current at ``t``
  contributed ``ε(t_o - t)`` to ``u(t_o)``;
- input spike times: ``∂L/∂u(t_o)`` uses ``-1/(du/dt)`` instead, and an input at ``t`` moves
  ``u(t_o)`` by the kernel's time derivative at ``t_o - t``. The ``"exponential"`` gradient
  (the paper's fix of its "reverse gradient" problem) replaces that derivative by
  ``(1-θ_g)^(d+1)`` with ``θ_g = 1/τ_grad`` and ``du/dt`` by the matching trace
  ``a_g <- (a_g + I[t])(1 - θ_g)`` (reset at spikes); ``"exact"`` uses ``ε(d) - ε(d-1)``
  (``ε(-1) = 0``) and ``Δu``; ``"nonnegative"`` (from an earlier version of the authors'
  code) is ``"exact"`` with negative derivatives cut to 0. With ``"exact"`` and
  ``"exponential"`` the input-time gradients of one output spike sum to its own
  gradient (shifting every input shifts the spike: the paper's sum preservation).

These follow the authors' code (zhuyaoyu/SNN-event-driven-learning), checked against a
per-spike loop in the tests. On CPU float32/float64 tensors both passes run as fused C
kernels (``backend="auto"`` or ``"c"``; :mod:`spikeflow.event_driven.cpu`), equal bit for
bit to the PyTorch loops here (``backend="torch"``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["BACKENDS", "GRADIENTS", "EventDrivenNeuron", "spike_backward", "spike_forward"]

#: The input-time gradient kernels (see the module docstring).
GRADIENTS = ("exponential", "exact", "nonnegative")
#: ``"auto"``: the C kernels for CPU float32/float64 tensors when a C compiler is found
#: (a failed build warns once and runs the loop), the Triton kernels for CUDA
#: float32/float64 tensors when triton is installed, else the PyTorch loop; ``"c"``,
#: ``"triton"``: those kernels or an error; ``"torch"``: the PyTorch loop on any device
#: and dtype.
BACKENDS = ("auto", "c", "triton", "torch")
_WARNED: set[str] = set()


@dataclass(frozen=True)
class EventDrivenNeuron:
    """Settings of the event-driven neuron (methods.md 10; the paper's CIFAR-10 values).

    Args:
        tau_m: membrane time constant (> 1).
        tau_s: synaptic time constant (> 1, != tau_m).
        tau_grad: time constant of the ``"exponential"`` backward kernel (> 1).
        threshold: firing threshold (> 0).
        gradient: ``"exponential"``, ``"exact"`` or ``"nonnegative"``.
        max_dt_du: bound on ``|∂t/∂u|`` for the weight gradient (the authors' 4).
        max_dt_du_input: bound on ``|∂t/∂u|`` for the input-time gradient (the authors'
            default, 123456789, is in effect no bound).
        backend: ``"auto"``, ``"c"``, ``"triton"`` or ``"torch"`` (see :data:`BACKENDS`).
    """

    tau_m: float = 7.0
    tau_s: float = 4.0
    tau_grad: float = 3.5
    threshold: float = 1.0
    gradient: str = "exponential"
    max_dt_du: float = 4.0
    max_dt_du_input: float = 123456789.0
    backend: str = "auto"

    def __post_init__(self) -> None:
        for name in ("tau_m", "tau_s", "tau_grad"):
            value = check_real(f"EventDrivenNeuron: {name}", getattr(self, name), 1.0,
                               low_open=True)  # fmt: skip
            object.__setattr__(self, name, value)
        if self.tau_m == self.tau_s:
            raise ConfigurationError(
                f"EventDrivenNeuron: tau_m and tau_s must differ (the kernel divides by "
                f"their difference), got {self.tau_m} for both"
            )
        threshold = check_real("EventDrivenNeuron: threshold", self.threshold, 0.0, low_open=True)
        object.__setattr__(self, "threshold", threshold)
        for name in ("max_dt_du", "max_dt_du_input"):
            bound = check_real(f"EventDrivenNeuron: {name}", getattr(self, name), 0.0,
                               low_open=True)  # fmt: skip
            object.__setattr__(self, name, bound)
        if self.backend not in BACKENDS:
            raise ConfigurationError(
                f"EventDrivenNeuron: backend must be one of {BACKENDS}, got {self.backend!r}"
            )
        if self.gradient not in GRADIENTS:
            raise ConfigurationError(
                f"EventDrivenNeuron: gradient must be one of {GRADIENTS}, got {self.gradient!r}"
            )

    @property
    def exponential(self) -> bool:
        return self.gradient == "exponential"

    def kernel(self, steps: int) -> list[float]:
        """``ε(d)`` for ``d = 0 .. steps - 1``: what an input at ``t`` adds to ``u(t + d)``."""
        theta_m, theta_s = 1.0 / self.tau_m, 1.0 / self.tau_s
        scale = theta_s / (theta_s - theta_m)
        return [((1 - theta_m) ** (d + 1) - (1 - theta_s) ** (d + 1)) * scale for d in range(steps)]

    def kernel_slope(self, steps: int) -> list[float]:
        """The time derivative of ``ε`` the input-time gradient uses, ``d = 0 .. steps - 1``."""
        if self.exponential:
            decay = 1.0 - 1.0 / self.tau_grad
            return [decay ** (d + 1) for d in range(steps)]
        eps = [0.0, *self.kernel(steps)]  # eps[k] = ε(k - 1), ε(-1) = 0
        slope = [eps[d + 1] - eps[d] for d in range(steps)]
        return [max(s, 0.0) for s in slope] if self.gradient == "nonnegative" else slope


def _use_triton(x: Tensor, neuron: EventDrivenNeuron) -> bool:
    """Whether ``neuron``'s backend runs the Triton kernels on ``x``."""
    from spikeflow.event_driven import gpu

    if neuron.backend == "triton":
        return True  # gpu checks the device and dtype and names what is wrong
    return (
        neuron.backend == "auto"
        and x.device.type == "cuda"
        and x.dtype in (torch.float32, torch.float64)
        and gpu.triton_available()
    )


def _use_c(x: Tensor, neuron: EventDrivenNeuron) -> bool:
    """Whether ``neuron``'s backend runs the C kernels on ``x`` (see :data:`BACKENDS`)."""
    from spikeflow._cbuild import use_c_kernels
    from spikeflow.event_driven import cpu

    return use_c_kernels(
        neuron.backend,
        cpu.supports(x),
        cpu._library,
        lambda: (
            f"EventDrivenNeuron(backend='c') runs on CPU float32/float64 tensors, got "
            f"{x.dtype} on {x.device}; use backend='auto' or 'torch'"
        ),
        "the event-driven neuron's C kernels could not be built, so it runs as a PyTorch "
        "loop; fix the compiler set-up ($CC) or choose backend='torch'",
        _WARNED,
        stacklevel=3,
    )


def _fused(x: Tensor, neuron: EventDrivenNeuron, which: str) -> Any:
    """The fused kernel launcher (``forward`` or ``backward``) ``neuron``'s backend runs
    on ``x``, or None for the PyTorch loop."""
    if _use_triton(x, neuron):
        from spikeflow.event_driven import gpu

        return getattr(gpu, f"triton_{which}")
    if _use_c(x, neuron):
        from spikeflow.event_driven import cpu

        return getattr(cpu, f"c_{which}")
    return None


def _check_sequence(name: str, x: Any) -> None:
    """``x`` must be a floating-point ``[T, ...]`` tensor with ``T >= 1``."""
    if not isinstance(x, Tensor) or x.dim() == 0:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"event-driven neuron: {name} must be a tensor [T, ...], got {got}")
    if x.shape[0] == 0:
        raise ShapeError(
            f"event-driven neuron: {name} has no time steps (T = 0), shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise DTypeError(f"event-driven neuron: {name} must be floating point, got {x.dtype}")


def spike_forward(current: Tensor, neuron: EventDrivenNeuron) -> tuple[Tensor, Tensor, Tensor]:
    """Spikes ``[T, ...]`` of the neuron driven by ``current`` ``[T, ...]``, with the
    membrane rise ``Δu`` and the slope ``du/dt`` the backward needs (same shape).

    Raises:
        ShapeError: ``current`` is not ``[T, ...]`` with ``T >= 1``.
        DTypeError: ``current`` is not floating point.
    """
    _check_sequence("current", current)
    theta_m, theta_s = 1.0 / neuron.tau_m, 1.0 / neuron.tau_s
    decay_m, decay_s, decay_g = 1.0 - theta_m, 1.0 - theta_s, 1.0 - 1.0 / neuron.tau_grad
    scale = theta_s / (theta_s - theta_m)
    launch = _fused(current, neuron, "forward")
    if launch is not None:
        current = current.contiguous()  # the kernels read and write [T, n] rows
    spikes, rise = torch.empty_like(current), torch.empty_like(current)
    slope = torch.empty_like(current) if neuron.exponential else rise
    if launch is not None:
        if current.numel():
            launch(current, spikes, rise, slope, (decay_m, decay_s, decay_g), scale,
                   neuron.threshold, neuron.exponential)  # fmt: skip
        return spikes, rise, slope
    zeros = torch.zeros_like(current[0])
    trace_m, trace_s, trace_g, u_last = zeros, zeros, zeros, zeros
    for t in range(current.shape[0]):
        trace_m = (trace_m + current[t]) * decay_m
        trace_s = (trace_s + current[t]) * decay_s
        u = (trace_m - trace_s) * scale
        torch.sub(u, u_last, out=rise[t])
        keep = (u < neuron.threshold).to(current.dtype)
        torch.sub(1.0, keep, out=spikes[t])
        if neuron.exponential:
            trace_g = (trace_g + current[t]) * decay_g
            slope[t] = trace_g
            trace_g = trace_g * keep
        u_last, trace_m, trace_s = u * keep, trace_m * keep, trace_s * keep
    return spikes, rise, slope


@functools.lru_cache(maxsize=64)
def _tables(
    neuron: EventDrivenNeuron, steps: int, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``ε`` and its slope as tensors of ``steps + 1`` entries (index ``steps``, never
    reached while a later spike exists, holds 0); built once per setting, not at every
    backward (on a GPU each build would be a host-to-device copy). Read only."""
    kernel = torch.tensor([*neuron.kernel(steps), 0.0], dtype=dtype, device=device)
    slope = torch.tensor([*neuron.kernel_slope(steps), 0.0], dtype=dtype, device=device)
    return kernel, slope


def spike_backward(
    grad_time: Tensor, spikes: Tensor, rise: Tensor, slope: Tensor, neuron: EventDrivenNeuron
) -> tuple[Tensor, Tensor]:
    """Time-based gradients of the input currents ``[T, ...]`` given ``grad_time``, the
    gradient of the loss w.r.t. each output spike's time (read only where a spike is).

    Returns ``(for_input_times, for_weights)``: what the inputs' time gradients and the
    weight gradient are built from (see the module docstring).

    Raises:
        ShapeError, DTypeError: ``spikes`` is not a floating-point ``[T, ...]`` with
            ``T >= 1``, or ``grad_time``, ``rise`` and ``slope`` do not have its shape,
            dtype and device (the fused kernels read them as ``[T, n]`` rows).
    """
    _check_sequence("spikes", spikes)
    for name, value in (("grad_time", grad_time), ("rise", rise), ("slope", slope)):
        if not isinstance(value, Tensor) or value.shape != spikes.shape:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ShapeError(
                f"spike_backward: {name} must have the spikes' shape {tuple(spikes.shape)}, "
                f"got {got}"
            )
        if value.dtype != spikes.dtype or value.device != spikes.device:
            raise DTypeError(
                f"spike_backward: {name} is {value.dtype} on {value.device}, the spikes "
                f"{spikes.dtype} on {spikes.device}"
            )
    steps = spikes.shape[0]
    kernel, slope_kernel = _tables(neuron, steps, spikes.dtype, spikes.device)
    launch = _fused(spikes, neuron, "backward")
    # contiguous [T, n] rows: the fused kernels write them in that order
    for_input = torch.empty_like(spikes, memory_format=torch.contiguous_format)
    for_weight = torch.empty_like(spikes, memory_format=torch.contiguous_format)
    if launch is not None:
        tensors = [t.contiguous() for t in (grad_time, spikes, rise, slope)]
        if spikes.numel():
            launch(*tensors, kernel, slope_kernel, for_input, for_weight, neuron.max_dt_du,
                   neuron.max_dt_du_input)  # fmt: skip
        return for_input, for_weight
    at_weight = torch.zeros_like(spikes[0])
    at_input = torch.zeros_like(spikes[0])
    since = torch.full(spikes.shape[1:], steps, dtype=torch.long, device=spikes.device)
    for t in range(steps - 1, -1, -1):
        fired = spikes[t] > 0
        dt_du = torch.clamp(-1.0 / rise[t], -neuron.max_dt_du, 0.0)
        dt_du_input = torch.clamp(-1.0 / slope[t], -neuron.max_dt_du_input, 0.0)
        # the spike at t, if any, takes over the inputs up to the previous spike.
        at_weight = torch.where(fired, grad_time[t] * dt_du, at_weight)
        at_input = torch.where(fired, grad_time[t] * dt_du_input, at_input)
        since = torch.where(fired, 0, torch.clamp(since + 1, max=steps))
        # the input-time gradient is dL/du · du/dt_in = dL/du · (-slope kernel).
        torch.mul(at_input, -slope_kernel[since], out=for_input[t])
        torch.mul(at_weight, kernel[since], out=for_weight[t])
    return for_input, for_weight
