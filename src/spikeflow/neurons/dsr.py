"""Differentiation on spike representation (DSR; Meng et al., "Training High-Performance
Low-Latency Spiking Neural Networks by Differentiation on Spike Representation", CVPR
2022, arXiv 2205.00459): SpikingJelly 2.0's ``DSRIFNode`` and ``DSRLIFNode``.

Forward: an IF or LIF neuron (membrane from 0, soft reset) whose spikes are worth the
threshold ``θ`` (clamped below by ``v_threshold_lower_bound``) and fire at ``α θ``::

    IF:  V ← V + X[t]                          LIF: V ← β V + (1 - β) X[t],  β = exp(-Δt/τ)
         S[t] = θ Θ(V - α θ);  V ← V - S[t]         S[t] = θ Θ(V - α θ);  V ← V - S[t]
         output S[t]                                output S[t] / Δt

Backward: not through time. The spike train represents (approximately) a clipped
function of the input's rate, and DSR differentiates that representation:

* IF: the rate ``r = mean_t X[t]`` maps to ``clamp(r, 0, θ)``; with ``G = Σ_t g[t]``
  (``g`` the output's gradient) every step's input gets ``G/T`` where ``0 <= r <= θ``,
  and ``θ`` gets ``Σ G`` over the neurons where ``r > θ``, times
  ``v_threshold_grad_scaling``.
* LIF: the same with rates weighted towards the last steps, ``w_i = exp(-(T - i)Δt/τ)``
  (``r`` and ``G`` are ``Σ_i w_i X[i] / Σ_i w_i`` and ``T`` times that of ``g``): the
  input gets ``G/(τ T)`` where ``0 < r < θ τ/Δt``, ``θ`` gets ``Δt Σ G`` where
  ``r > θ τ/Δt``.

Not a declared neuron, and not a stateful one: the gradient is a function of the whole
sequence's rate, so a call takes a whole sequence of exactly ``T`` steps (no
single-step mode, no streaming), and keeps no state between calls.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.base import SequenceOnly, StepMode
from spikeflow.errors import DTypeError, ShapeError
from spikeflow.neurons.base import check_sequence

__all__ = ["DSRIFNode", "DSRLIFNode", "weighted_rate"]


def weighted_rate(x_seq: Tensor, tau: float, delta_t: float) -> Tensor:
    """The LIF-weighted rate of ``x_seq`` (``[T, ...]``) over time,
    ``Σ_i w_i x[i] / Σ_i w_i`` with ``w_i = exp(-(T - i) Δt / τ)`` for ``i = 1..T``
    (SpikingJelly's ``DSRLIFNode.weight_rate_spikes``)."""
    T = x_seq.shape[0]
    weight = torch.tensor(
        [math.exp(-1 / tau * (delta_t * T - i * delta_t)) for i in range(1, T + 1)],
        dtype=x_seq.dtype,
        device=x_seq.device,
    )
    weighted = torch.tensordot(weight, x_seq, dims=([0], [0]))
    return weighted / weight.sum()


class _DSRIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: Tensor, theta: Tensor, alpha: float, scaling: float) -> Tensor:
        ctx.save_for_backward(x_seq, theta)
        ctx.scaling = scaling
        theta_x = theta.detach().to(x_seq.dtype)
        v = torch.zeros_like(x_seq[0])
        spikes = []
        for x_t in x_seq:
            v = v + x_t
            s = (v >= alpha * theta_x).to(x_seq.dtype) * theta_x
            v = v - s
            spikes.append(s)
        return torch.stack(spikes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        x_seq, theta = ctx.saved_tensors
        T = x_seq.shape[0]
        rate = x_seq.mean(0)
        coded = grad.mean(0) * T
        theta_x = theta.to(rate.dtype)
        grad_x = torch.where((rate < 0) | (rate > theta_x), 0.0, coded)
        grad_x = grad_x.unsqueeze(0).expand_as(x_seq) / T
        grad_theta = torch.where(rate <= theta_x, 0.0, coded).sum() * ctx.scaling
        return grad_x, grad_theta.to(theta.dtype), None, None


class _DSRLIF(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x_seq: Tensor, theta: Tensor, tau: float, delta_t: float, alpha: float,
        scaling: float,
    ) -> Tensor:  # fmt: skip
        ctx.save_for_backward(x_seq, theta)
        ctx.tau, ctx.delta_t, ctx.scaling = tau, delta_t, scaling
        theta_x = theta.detach().to(x_seq.dtype)
        beta = math.exp(-delta_t / tau)
        v = torch.zeros_like(x_seq[0])
        spikes = []
        for x_t in x_seq:
            v = beta * v + (1 - beta) * x_t
            s = (v >= alpha * theta_x).to(x_seq.dtype) * theta_x
            v = v - s
            spikes.append(s / delta_t)
        return torch.stack(spikes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None, None, None, None]:
        x_seq, theta = ctx.saved_tensors
        tau, delta_t = ctx.tau, ctx.delta_t
        T = x_seq.shape[0]
        rate = weighted_rate(x_seq, tau, delta_t)
        coded = weighted_rate(grad, tau, delta_t) * T
        limit = theta.to(rate.dtype) / delta_t * tau
        grad_x = torch.where((rate > 0) & (rate < limit), coded / tau, 0.0)
        grad_x = grad_x.unsqueeze(0).expand_as(x_seq) / T
        grad_theta = torch.where(rate <= limit, 0.0, coded).sum() * delta_t * ctx.scaling
        return grad_x, grad_theta.to(theta.dtype), None, None, None, None


class DSRIFNode(SequenceOnly, nn.Module):
    """DSR IF neuron (see the module docstring), SpikingJelly 2.0's ``DSRIFNode``: the
    same outputs and gradients (input and threshold), in the input's dtype.

    Args:
        T: the number of steps of every input sequence, an integer >= 1 (default 20).
        v_threshold: the initial threshold θ, >= ``v_threshold_lower_bound`` (default 6).
        alpha: the firing level as a fraction of θ, in (0, 1] (default 0.5).
        v_threshold_training: learn θ (an ``nn.Parameter``; default True), else a buffer
            (not saved in the state dict, as SpikingJelly keeps it out).
        v_threshold_grad_scaling: the factor of θ's gradient (default 1).
        v_threshold_lower_bound: the floor θ is clamped to in the forward, > 0
            (default 0.01).
        step_mode: ``'m'`` only.

    Raises:
        ConfigurationError: a bad value of any argument (named).
        ShapeError: (at a call) an input that is not ``[T, B, ...]`` with this ``T``.
    """

    streamable = False  # the gradient needs the whole sequence
    sequence_reason = "its gradient is a function of the whole sequence's rate"

    def __init__(
        self,
        T: int = 20,
        v_threshold: float = 6.0,
        alpha: float = 0.5,
        v_threshold_training: bool = True,
        v_threshold_grad_scaling: float = 1.0,
        v_threshold_lower_bound: float = 0.01,
        step_mode: StepMode = "m",
    ) -> None:
        nn.Module.__init__(self)
        owner = type(self).__name__
        self.step_mode = step_mode
        self.T = check_int(f"{owner}: T", T, 1)
        bound = check_real(f"{owner}: v_threshold_lower_bound", v_threshold_lower_bound,
                           0.0, low_open=True)  # fmt: skip
        theta = check_real(f"{owner}: v_threshold", v_threshold, bound)
        self.alpha = check_real(f"{owner}: alpha", alpha, 0.0, 1.0, low_open=True)
        self.v_threshold_grad_scaling = check_real(
            f"{owner}: v_threshold_grad_scaling", v_threshold_grad_scaling
        )
        self.v_threshold_lower_bound = bound
        if check_flag(owner, "v_threshold_training", v_threshold_training):
            self.v_threshold = nn.Parameter(torch.tensor(theta))
        else:
            self.register_buffer("v_threshold", torch.tensor(theta), persistent=False)

    def _check(self, x: Tensor) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor) or not x.is_floating_point():
            what = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise DTypeError(f"{name} expects a floating-point tensor, got {what}")
        check_sequence(x, name)
        self.check_steps(x.shape[0], f" (input shape {tuple(x.shape)})")

    def check_steps(self, steps: int, shape: str = "") -> None:
        """Raise the ShapeError a sequence of ``steps`` steps would raise: any number
        but ``T`` (before running one: ``spikeflow train`` asks)."""
        if steps != self.T:
            raise ShapeError(
                f"{type(self).__name__} was built for T = {self.T} steps (its gradient "
                f"averages over them), got a sequence of {steps} steps{shape}"
            )

    def threshold(self) -> Tensor:
        """θ as the forward uses it, clamped to ``v_threshold_lower_bound``."""
        return self.v_threshold.clamp(min=self.v_threshold_lower_bound)

    def spike_value(self, dtype: torch.dtype) -> Tensor:
        """What one spike is worth in the output (in ``dtype``, computed as the forward
        computes it): θ."""
        return self.threshold().detach().to(dtype)

    def count_spikes(self, output: Tensor) -> Tensor:
        """The spikes (0 or 1) of each entry of ``output`` (this neuron's output,
        before its threshold changes): ``output`` over :meth:`spike_value`, exactly 1
        at a spike. What the monitors, rasters and :class:`~spikeflow.losses.LayerSpikes`
        read (``spikeflow.training.monitors.output_spikes``), not the spike's worth."""
        return output / self.spike_value(output.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """The spikes (worth θ) for ``x``, ``[T, B, ...]``."""
        self._check(x)
        return _DSRIF.apply(x, self.threshold(), self.alpha, self.v_threshold_grad_scaling)

    def extra_repr(self) -> str:
        return (
            f"T={self.T}, v_threshold={float(self.v_threshold):g}, alpha={self.alpha:g}, "
            f"v_threshold_lower_bound={self.v_threshold_lower_bound:g}, "
            f"v_threshold_grad_scaling={self.v_threshold_grad_scaling:g}"
        )


class DSRLIFNode(DSRIFNode):
    """DSR LIF neuron (see the module docstring), SpikingJelly 2.0's ``DSRLIFNode``: the
    same outputs (spikes worth ``θ/Δt``) and gradients, in the input's dtype.

    Args:
        T: the number of steps of every input sequence (default 20).
        v_threshold: the initial threshold θ (default 1).
        tau: the membrane time constant, > 0 (default 2), in the units of ``delta_t``.
        delta_t: the discretisation step of the LIF equation, > 0 (default 0.05).
        alpha: the firing level as a fraction of θ, in (0, 1] (default 0.3).
        v_threshold_training, v_threshold_grad_scaling: as for :class:`DSRIFNode`.
        v_threshold_lower_bound: the floor of θ, > 0 (default 0.1).
        step_mode: ``'m'`` only.

    Raises:
        ConfigurationError: a bad value of any argument (named).
        ShapeError: (at a call) an input that is not ``[T, B, ...]`` with this ``T``.
    """

    def __init__(
        self,
        T: int = 20,
        v_threshold: float = 1.0,
        tau: float = 2.0,
        delta_t: float = 0.05,
        alpha: float = 0.3,
        v_threshold_training: bool = True,
        v_threshold_grad_scaling: float = 1.0,
        v_threshold_lower_bound: float = 0.1,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(T, v_threshold, alpha, v_threshold_training, v_threshold_grad_scaling,
                         v_threshold_lower_bound, step_mode)  # fmt: skip
        owner = type(self).__name__
        self.tau = check_real(f"{owner}: tau", tau, 0.0, low_open=True)
        self.delta_t = check_real(f"{owner}: delta_t", delta_t, 0.0, low_open=True)

    def spike_value(self, dtype: torch.dtype) -> Tensor:
        """What one spike is worth in the output (in ``dtype``, computed as the forward
        computes it): ``θ/Δt``."""
        return super().spike_value(dtype) / self.delta_t

    def forward(self, x: Tensor) -> Tensor:
        """The spikes (worth ``θ/Δt``) for ``x``, ``[T, B, ...]``."""
        self._check(x)
        return _DSRLIF.apply(x, self.threshold(), self.tau, self.delta_t, self.alpha,
                             self.v_threshold_grad_scaling)  # fmt: skip

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, delta_t={self.delta_t:g}, " + super().extra_repr()
