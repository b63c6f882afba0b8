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

Declared neurons (:class:`~spikeflow.neurons.BaseNode`): the two thresholds are the
declaration's fire rule (:func:`ternary_fire`, the ``fire`` of
:mod:`spikeflow.neurons.declaration`), which returns the signed spike and the hard
reset's event ``P + N``. The reference loop, the fused C kernel and the fused Triton
kernel, forward and backward, all come from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor

from spikeflow._checks import check_flag
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.lif import _check_tau
from spikeflow.surrogate import Surrogate

__all__ = ["TernaryIFNode", "TernaryLIFNode", "ternary_fire"]


def ternary_fire(
    h: Tensor, theta: Tensor | float, spike: Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor]:
    """The ternary fire rule: the signed spike ``S = P - N`` and the hard reset's event
    ``R = P + N``, with ``P = spike(H - θ)`` and ``N = spike(-H - θ)`` (each with the
    surrogate derivative at its own argument)."""
    positive = spike(h - theta)
    negative = spike(-h - theta)
    return positive - negative, positive + negative


def _ternary_if_charge(x: Tensor, v: Tensor) -> Tensor:
    """``H = V + X``."""
    return v + x


def _ternary_lif_decay_input(x: Tensor, v: Tensor, *, tau: float, v_rest: float) -> Tensor:
    """``H = V + (X - (V - V_rest)) / tau`` (SpikingJelly's operation order)."""
    return v + (x - (v - v_rest)) / tau


def _ternary_lif_no_decay_input(x: Tensor, v: Tensor, *, tau: float, v_rest: float) -> Tensor:
    """``H = V - (V - V_rest) / tau + X`` (SpikingJelly's operation order)."""
    return v - (v - v_rest) / tau + x


def _values(theta: float | Tensor) -> list[float]:
    """The threshold's values (none of a tensor on the meta device, which has none)."""
    if isinstance(theta, Tensor):
        return [] if theta.is_meta else theta.detach().double().flatten().tolist()
    return [theta]


class TernaryIFNode(BaseNode):
    """Ternary integrate-and-fire neuron, ``H[t] = V[t-1] + X[t]``, with signed spikes
    (see the module docstring for the fire and reset rules). SpikingJelly 2.0's
    ``TernaryIFNode``: the same spikes, membranes and gradients, on every backend (the
    reference loop, the fused C and Triton kernels).

    Args:
        v_threshold: θ, the magnitude of both thresholds (``+θ`` and ``-θ``): a float > 0
            (default 1), or a tensor of them broadcastable to the neuron shape (one per
            channel: ``[C, 1, 1]``).
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
        backend: ``'auto'`` (the fused kernels where they run) or ``'torch'`` (the
            reference loop), ``'cpu'``, ``'triton'`` (keyword only).
        learnable_threshold: make θ a trainable parameter (keyword only); both
            thresholds move with it.

    Raises:
        ConfigurationError: ``v_threshold`` not finite and > 0, ``v_reset`` not a float
            strictly between ``-v_threshold`` and ``v_threshold`` (nor ``None``), a
            surrogate that is not a ``spikeflow.surrogate.Surrogate``, a flag that is not
            a bool, an unknown backend.
    """

    def __init__(
        self,
        v_threshold: float | Tensor = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
        *,
        strict_firing: bool = False,
        backend: str = "auto",
        learnable_threshold: bool = False,
    ) -> None:
        owner = type(self).__name__
        if isinstance(v_threshold, (int, float)) and not isinstance(v_threshold, bool):
            if not (math.isfinite(v_threshold) and v_threshold > 0):
                raise ConfigurationError(
                    f"{owner}: v_threshold must be a finite float > 0 (the magnitude of the "
                    f"thresholds +θ and -θ), got {v_threshold!r}"
                )
        elif isinstance(v_threshold, Tensor) and v_threshold.is_floating_point():
            if any(not t > 0 for t in _values(v_threshold)):  # (not finite: BaseNode says)
                raise ConfigurationError(
                    f"{owner}: v_threshold must be > 0 (the magnitude of the thresholds +θ "
                    f"and -θ), got {v_threshold}"
                )
        # (a v_reset at or above θ is refused by BaseNode, with its message; at or below
        # -θ just after, here)
        super().__init__(v_threshold=v_threshold, v_reset=v_reset,
                         surrogate_function=surrogate_function, detach_reset=detach_reset,
                         strict_firing=strict_firing, learnable_threshold=learnable_threshold,
                         step_mode=step_mode, backend=backend, store_v_seq=store_v_seq)  # fmt: skip
        values = _values(self.v_threshold)
        if self.v_reset is not None and any(not -t < self.v_reset for t in values):
            raise ConfigurationError(
                f"{owner}: v_reset must be strictly between -v_threshold and v_threshold "
                f"(a negative spike resets to it too), or None for the signed soft reset; "
                f"got v_reset={self.v_reset:g} with v_threshold={self.v_threshold}"
            )

    @property
    def v_rest(self) -> float:
        """Where the leak of a ternary LIF goes: ``v_reset``, or 0 with soft reset."""
        return 0.0 if self.v_reset is None else self.v_reset

    def declaration(self) -> NeuronDeclaration:
        return declare(_ternary_if_charge, None, type(self).__name__, fire=ternary_fire)


class TernaryLIFNode(TernaryIFNode):
    """Ternary leaky integrate-and-fire neuron with signed spikes, SpikingJelly 2.0's
    ``TernaryLIFNode`` (the same spikes, membranes and gradients, on every backend)::

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
            store_v_seq, strict_firing, backend, learnable_threshold: as for
            :class:`TernaryIFNode` (the positional order is SpikingJelly's).

    Raises:
        ConfigurationError: ``tau <= 1`` or not finite, ``decay_input`` not a bool, and
            the errors of :class:`TernaryIFNode`.
    """

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float | Tensor = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
        *,
        strict_firing: bool = False,
        backend: str = "auto",
        learnable_threshold: bool = False,
    ) -> None:
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, strict_firing=strict_firing, backend=backend,
                         learnable_threshold=learnable_threshold)  # fmt: skip
        self.tau = _check_tau("tau", tau)
        self.decay_input = check_flag(type(self).__name__, "decay_input", decay_input)

    def declaration(self) -> NeuronDeclaration:
        charge = _ternary_lif_decay_input if self.decay_input else _ternary_lif_no_decay_input
        name = f"{type(self).__name__}(decay_input={self.decay_input})"
        return declare(charge, None, name, fire=ternary_fire)

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"tau": self.tau, "v_rest": self.v_rest}

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, decay_input={self.decay_input}, " + super().extra_repr()
