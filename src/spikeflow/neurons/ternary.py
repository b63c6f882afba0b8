"""Ternary spiking neurons: signed spikes in {-1, 0, +1} (SpikingJelly 2.0's
``TernaryIFNode`` and ``TernaryLIFNode``; Guo et al., "Ternary Spike: Learning Ternary
Spikes for Spiking Neural Networks", AAAI 2024, arXiv 2312.06372)::

    H[t] = charge(V[t-1], X[t])                          (IF or LIF)
    P[t] = Θ(H[t] - θ),   N[t] = Θ(-H[t] - θ),   S[t] = P[t] - N[t]
    V[t] = (1 - R[t]) H[t] + R[t] V_r,   R[t] = P[t] + N[t]       (hard reset)
    V[t] = H[t] - θ S[t]                                        (signed soft reset)

Both thresholds are inclusive (``Θ(0) = 1``), each with the surrogate derivative; the
hard reset differentiates ``P + N``, so a neuron that does not fire still passes the
gradients of both events through its reset. ``detach_reset`` detaches the reset's event
only, never the output.

Why a loop (:class:`~spikeflow.neurons.loop.LoopNode`) and not a declaration: the
declared neurons fire by one Heaviside ``Θ(H - θ)``, while a ternary neuron needs two,
each with its own surrogate derivative, in its output and in its reset. Their step runs
as PyTorch code over time (every device, autograd through it); no fused kernel is
generated for them.
"""

from __future__ import annotations

import math

from torch import Tensor

from spikeflow._checks import check_flag
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.lif import _check_tau
from spikeflow.neurons.loop import LoopNode, check_surrogate
from spikeflow.surrogate import Surrogate

__all__ = ["TernaryIFNode", "TernaryLIFNode"]


class TernaryIFNode(LoopNode):
    """Ternary integrate-and-fire neuron, ``H[t] = V[t-1] + X[t]``, with signed spikes
    (see the module docstring for the fire and reset rules). SpikingJelly 2.0's
    ``TernaryIFNode``: the same spikes, membranes and gradients.

    Args:
        v_threshold: θ, the magnitude of both thresholds (``+θ`` and ``-θ``): a finite
            float > 0 (default 1).
        v_reset: the hard-reset value of both polarities, strictly between ``-θ`` and
            ``θ`` (default 0), or ``None`` for the signed soft reset ``V = H - θ S``.
            The membrane starts at ``v_reset`` (0 with soft reset).
        surrogate_function: the spike function of both thresholds (default
            ``Sigmoid(alpha=4)``); with ``spiking=False`` its smooth primitive gives
            continuous outputs and reset events, as in SpikingJelly.
        detach_reset: detach the reset's event (``R``, or ``S`` with soft reset) from
            the graph; the output keeps its gradient.
        step_mode: ``'m'`` (``[T, B, ...]``, default; SpikingJelly's default is ``'s'``)
            or ``'s'`` (``[B, ...]``).
        store_v_seq: keep the membrane after reset of every step in ``self.v_seq``.
        strict_firing: fire on ``H > θ`` and ``-H > θ`` instead of ``>=`` (keyword
            only: the positional arguments are SpikingJelly's).

    Raises:
        ConfigurationError: ``v_threshold`` not a finite float > 0, ``v_reset`` not a
            float strictly between ``-v_threshold`` and ``v_threshold`` (nor ``None``), a
            surrogate that is not a ``spikeflow.surrogate.Surrogate``, a flag that is not
            a bool.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
        *,
        strict_firing: bool = False,
    ) -> None:
        super().__init__(step_mode, store_v_seq)
        owner = type(self).__name__
        if (
            isinstance(v_threshold, bool)
            or not isinstance(v_threshold, (int, float))
            or not math.isfinite(v_threshold)
            or not v_threshold > 0
        ):
            raise ConfigurationError(
                f"{owner}: v_threshold must be a finite float > 0 (the magnitude of the "
                f"thresholds +θ and -θ), got {v_threshold!r}"
            )
        self.v_threshold = float(v_threshold)
        if v_reset is not None:
            if (
                isinstance(v_reset, bool)
                or not isinstance(v_reset, (int, float))
                or not math.isfinite(v_reset)
                or not -self.v_threshold < v_reset < self.v_threshold
            ):
                raise ConfigurationError(
                    f"{owner}: v_reset must be a float strictly between -v_threshold and "
                    f"v_threshold ({-self.v_threshold:g}, {self.v_threshold:g}), or None for "
                    f"the signed soft reset; got {v_reset!r}"
                )
            v_reset = float(v_reset)
        self.v_reset = v_reset
        self.surrogate_function = check_surrogate(owner, surrogate_function)
        self.detach_reset = check_flag(owner, "detach_reset", detach_reset)
        self.strict_firing = check_flag(owner, "strict_firing", strict_firing)

    @property
    def v_rest(self) -> float:
        """Where the leak of a ternary LIF goes: ``v_reset``, or 0 with soft reset."""
        return 0.0 if self.v_reset is None else self.v_reset

    def initial_values(self) -> dict[str, float]:
        return {"v": self.v_rest}

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        """``H[t] = V[t-1] + X[t]``."""
        return v + x

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        h = self.charge(x, state["v"])
        theta = self.v_threshold
        fire = self.surrogate_function
        positive = fire(h - theta, strict=self.strict_firing)
        negative = fire(-h - theta, strict=self.strict_firing)
        spike = positive - negative
        event = spike if self.v_reset is None else positive + negative
        if self.detach_reset:
            event = event.detach()
        if self.v_reset is None:
            v = h - event * theta
        else:
            v = event * self.v_reset + (1.0 - event) * h
        return spike, {"v": v}

    def extra_repr(self) -> str:
        parts = [
            f"v_threshold={self.v_threshold:g}",
            f"v_reset={self.v_reset}",
            f"detach_reset={self.detach_reset}",
            f"step_mode={self.step_mode!r}",
        ]
        if self.strict_firing:
            parts.append("strict_firing=True")
        return ", ".join(parts)


class TernaryLIFNode(TernaryIFNode):
    """Ternary leaky integrate-and-fire neuron with signed spikes, SpikingJelly 2.0's
    ``TernaryLIFNode`` (the same spikes, membranes and gradients)::

        H[t] = V[t-1] + (X[t] - (V[t-1] - V_rest)) / tau      (decay_input=True)
        H[t] = V[t-1] - (V[t-1] - V_rest) / tau + X[t]        (decay_input=False)

    with ``V_rest = v_reset`` (0 with soft reset), then the ternary fire and reset
    rules of :class:`TernaryIFNode`. ``tau=4/3, decay_input=False, v_reset=0`` is the
    unit-amplitude forward of Guo et al. (AAAI 2024), eqs. (7)-(8) (the membrane keeps
    a quarter of itself); their learnable spike amplitudes are not part of the neuron.

    Args:
        tau: membrane time constant, a finite number > 1 (default 2).
        decay_input: whether the input is divided by ``tau`` too (default True).
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
            store_v_seq, strict_firing: as for :class:`TernaryIFNode` (the positional
            order is SpikingJelly's).

    Raises:
        ConfigurationError: ``tau <= 1`` or not finite, ``decay_input`` not a bool, and
            the errors of :class:`TernaryIFNode`.
    """

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
        *,
        strict_firing: bool = False,
    ) -> None:
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, strict_firing=strict_firing)  # fmt: skip
        self.tau = _check_tau("tau", tau)
        self.decay_input = check_flag(type(self).__name__, "decay_input", decay_input)

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        """The LIF charge (see the class docstring), SpikingJelly's operation order."""
        if self.decay_input:
            return v + (x - (v - self.v_rest)) / self.tau
        return v - (v - self.v_rest) / self.tau + x

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, decay_input={self.decay_input}, " + super().extra_repr()
