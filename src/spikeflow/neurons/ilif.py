"""The integer LIF neuron (I-LIF; Luo et al., "Integer-Valued Training and Spike-Driven
Inference Spiking Neural Network for High-performance and Energy-efficient Object
Detection", ECCV 2024, arXiv 2407.20708), SpikingJelly 2.0's ``ILIFNode``: a LIF
without input decay and with soft reset that emits an integer spike count per step::

    H[t] = (1 - 1/tau) V[t-1] + X[t]
    C[t] = round(clip(H[t] / θ, 0, D))              (round half to even)
    V[t] = H[t] - C[t] θ

Backward is a rectangular straight-through estimator: ``dC/dH = 1/θ`` where
``lower <= H/θ <= upper`` (the gradient window, ``[0, D]`` by default), 0 elsewhere;
``detach_reset`` cuts the gradient of the reset's ``C``. At deployment each count
becomes ``C`` binary events in ``D`` slots (``C W`` as ``D`` accumulates of ``W``); the
neuron itself returns the counts ``{0, 1, ..., D}``.

The declaration runs on the charged membrane, as :class:`~spikeflow.neurons.LIAFNode`'s:
its state ``v`` is ``H[t]`` (recorded by the kernels at every step) and the reset of a
step is applied at the start of the next one, inside the charge, so that
``V[t-1] = H[t-1] - C[t-1] θ`` and then the charge. ``C`` is elementwise arithmetic
(clamp, floor, comparisons, a detached copy: the straight-through estimator needs no
surrogate), so the fused C and Triton kernels, forward and backward, come from the same
functions as the reference loop; the counts are computed from the recorded ``H``
outside them. The shared fire rule's binary spike is not used.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow._checks import check_int, check_real
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.lif import _check_tau

__all__ = ["ILIFNode", "spike_count"]


def _round_half_even(c: Tensor) -> Tensor:
    """``torch.round(c)`` (half to even) from ``floor``, which the kernels compile:
    ``c - floor(c)`` is exact, so a tie is found exactly (``floor(c + 0.5)`` is not:
    ``0.49999997 + 0.5`` rounds to 1 in float32)."""
    r = torch.floor(c)
    f = c - r
    odd = (r - 2.0 * torch.floor(r * 0.5)) == 1.0
    up = (f > 0.5) | ((f == 0.5) & odd)
    return r + up.to(c.dtype)


def spike_count(
    h: Tensor, theta: Tensor | float, *, count: float, lower: float, upper: float
) -> Tensor:
    """I-LIF's count ``C = round(clip(H / θ, 0, D))`` with the straight-through gradient
    ``1/θ`` where ``lower <= H/θ <= upper`` (SpikingJelly's ``MultiLevelSpikeCount``
    applied to ``H / θ``). ``count`` is ``D``. Elementwise, traceable into the kernels."""
    scaled = h / theta
    hard = _round_half_even(torch.clamp(scaled, 0.0, count))
    # + h * 0: a NaN or infinite membrane makes the window NaN, as in SpikingJelly.
    window = ((scaled >= lower) & (scaled <= upper)).to(h.dtype) + h * 0.0
    return hard + window * (scaled - scaled.detach())


def _ilif_charge(
    x: Tensor, v: Tensor, *, decay: float, theta: Tensor | float, count: float, lower: float,
    upper: float,
) -> Tensor:  # fmt: skip
    """The reset of the last step (``v`` is its charged ``H``), then the charge."""
    previous = v - spike_count(v, theta, count=count, lower=lower, upper=upper) * theta
    return decay * previous + x


def _ilif_charge_detached(
    x: Tensor, v: Tensor, *, decay: float, theta: Tensor | float, count: float, lower: float,
    upper: float,
) -> Tensor:  # fmt: skip
    """As :func:`_ilif_charge`, no gradient through the reset's count (``detach_reset``)."""
    c = spike_count(v, theta, count=count, lower=lower, upper=upper).detach()
    return decay * (v - c * theta) + x


def _ilif_charged(h: Tensor, s: Tensor, theta: Tensor | float) -> Tensor:
    """The state keeps the charged membrane: the reset waits for the next charge."""
    return h


class ILIFNode(BaseNode):
    """Integer LIF (see the module docstring), SpikingJelly 2.0's ``ILIFNode``: the same
    counts, membranes and gradients, on every backend (the reference loop, the fused C
    and Triton kernels).

    SpikingJelly's ``surrogate_function=MultiLevelSpikeCount(D, grad_window=(lo, hi))``
    is ``max_spike_count=D, grad_window=(lo, hi)`` here.

    Args:
        tau: membrane time constant, > 1 (default 4/3: the membrane keeps a quarter of
            itself each step, the paper's ``β = 0.25``).
        v_threshold: θ > 0, a float or a tensor broadcastable to the neuron shape
            (default 1).
        max_spike_count: ``D``, the largest count of a step, an integer >= 1 (default 4).
        grad_window: ``(lower, upper)`` of ``H/θ`` where the gradient passes, with
            ``lower <= upper`` (default ``(0, D)``).
        detach_reset: no gradient through the reset's count.
        step_mode: ``'m'`` (``[T, B, ...]``, default; SpikingJelly's is ``'s'``) or
            ``'s'``.
        store_v_seq: keep the membrane after reset of every step in ``self.v_seq``.
        backend: ``'auto'`` (the fused kernels) or ``'torch'`` (the reference loop).
        learnable_threshold: make θ a trainable parameter.

    State: ``node.v`` is the membrane after reset; the carried ``node.state["v"]`` is
    the charged membrane ``H`` of the last step (the declaration's state).

    Raises:
        ConfigurationError: ``tau <= 1``, a threshold that is not > 0, a
            ``max_spike_count`` that is not an integer >= 1, a ``grad_window`` that is
            not two finite numbers with ``lower <= upper``.
    """

    def __init__(
        self,
        tau: float = 4.0 / 3.0,
        v_threshold: float | Tensor = 1.0,
        max_spike_count: int = 4,
        grad_window: tuple[float, float] | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
        backend: str = "auto",
        learnable_threshold: bool = False,
    ) -> None:
        super().__init__(v_threshold=v_threshold, v_reset=None, detach_reset=detach_reset,
                         learnable_threshold=learnable_threshold, step_mode=step_mode,
                         backend=backend, store_v_seq=store_v_seq)  # fmt: skip
        owner = type(self).__name__
        theta = self.v_threshold
        positive = theta > 0 if isinstance(theta, float) else bool((theta > 0).all())
        if not positive:
            raise ConfigurationError(
                f"{owner}: v_threshold must be > 0 (the count is H / v_threshold), got {theta}"
            )
        self.tau = _check_tau("tau", tau)
        self.max_spike_count = check_int(f"{owner}: max_spike_count", max_spike_count, 1)
        if grad_window is None:
            grad_window = (0.0, float(self.max_spike_count))
        if not isinstance(grad_window, (tuple, list)) or len(grad_window) != 2:
            raise ConfigurationError(
                f"{owner}: grad_window must be (lower, upper), got {grad_window!r}"
            )
        lower = check_real(f"{owner}: grad_window lower", grad_window[0])
        upper = check_real(f"{owner}: grad_window upper", grad_window[1])
        if lower > upper:
            raise ConfigurationError(
                f"{owner}: grad_window must have lower <= upper, got ({lower:g}, {upper:g})"
            )
        self.grad_window = (lower, upper)

    def declaration(self) -> NeuronDeclaration:
        charge = _ilif_charge_detached if self.detach_reset else _ilif_charge
        name = f"{type(self).__name__}(detach_reset={self.detach_reset})"
        return declare(charge, None, name, reset_membrane=_ilif_charged)

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"decay": 1.0 - 1.0 / self.tau, "theta": self.v_threshold,
                **self._count_params()}  # fmt: skip

    def _count_params(self) -> dict[str, float]:
        lower, upper = self.grad_window
        return {"count": float(self.max_spike_count), "lower": lower, "upper": upper}

    def _counts(self, h: Tensor, theta: Tensor | float) -> Tensor:
        return spike_count(h, theta, **self._count_params())

    def _reset_of(self, h: Tensor, theta: Tensor | float) -> Tensor:
        """The membrane after reset of the charged ``h``."""
        c = self._counts(h, theta)
        return h - (c.detach() if self.detach_reset else c) * theta

    @property
    def v(self) -> Tensor | None:
        """The membrane after reset carried to the next call (only while streaming)."""
        state = self.state
        if state is None:
            return None
        return self._reset_of(state["v"], self.firing_threshold(state["v"].shape))

    def forward(self, x: Tensor) -> Tensor:
        """The counts ``C`` for ``x``: ``[T, B, ...]`` in multi-step mode, ``[B, ...]``
        in single-step mode."""
        x_seq = self._check_input(x)
        _, h_seq = self._run_steps(x_seq, True)
        theta = self.firing_threshold(x_seq.shape[1:])
        counts = self._counts(h_seq, theta)
        if self.store_v_seq:
            self.v_seq = self._reset_of(h_seq, theta)
        return counts if self.step_mode == "m" else counts[0]

    def extra_repr(self) -> str:
        lower, upper = self.grad_window
        return (
            f"tau={self.tau:g}, max_spike_count={self.max_spike_count}, "
            f"grad_window=({lower:g}, {upper:g}), " + super().extra_repr()
        )
