"""Integrate-and-fire neurons: IF, LIF and parametric LIF (methods.md 1.2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = ["IFNode", "LIFNode", "PLIFNode", "ParametricLIFNode"]


class IFNode(BaseNode):
    """Integrate-and-fire neuron: ``H[t] = V[t-1] + X[t]``.

    Takes the arguments of :class:`~spikeflow.neurons.base.BaseNode` (threshold 1, hard
    reset to 0, Sigmoid(alpha=4) surrogate by default).
    """

    @staticmethod
    def charge(x: Tensor, v: Tensor) -> Tensor:
        return v + x


def _lif_decay_input(x: Tensor, v: Tensor, *, decay: Tensor | float, v_rest: float) -> Tensor:
    """LIF with ``decay_input=True``: ``H = V + (X - (V - V_rest)) / tau``."""
    return v + (x - (v - v_rest)) * decay


def _lif_no_decay_input(x: Tensor, v: Tensor, *, decay: Tensor | float, v_rest: float) -> Tensor:
    """LIF with ``decay_input=False``: ``H = V - (V - V_rest) / tau + X``."""
    return v - (v - v_rest) * decay + x


def _check_tau(name: str, tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise ConfigurationError(f"{name} must be a number > 1, got {tau!r}")
    tau = float(tau)
    if not tau > 1.0 or not math.isfinite(tau):
        raise ConfigurationError(
            f"{name} must be a finite number > 1 (the membrane keeps 1 - 1/{name} of its "
            f"deviation from rest each step), got {tau}"
        )
    return tau


class LIFNode(BaseNode):
    """Leaky integrate-and-fire neuron (methods.md 1.2).

    ``decay_input=True`` (default): ``H = V + (X - (V - V_r)) / tau``;
    ``decay_input=False``: ``H = V - (V - V_r) / tau + X``. With soft reset the leak
    is towards 0.

    Args:
        tau: membrane time constant, must be > 1 (default 2).
        decay_input: whether the input is divided by ``tau`` as well.
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`.
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.tau = _check_tau("tau", tau)
        self.decay_input = check_flag(type(self).__name__, "decay_input", decay_input)

    def declaration(self) -> NeuronDeclaration:
        charge = _lif_decay_input if self.decay_input else _lif_no_decay_input
        return declare(charge, None, f"{type(self).__name__}(decay_input={self.decay_input})")

    def _v_rest(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"decay": 1.0 / self.tau, "v_rest": self._v_rest()}

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, decay_input={self.decay_input}, " + super().extra_repr()


class ParametricLIFNode(LIFNode):
    """Parametric LIF (Fang et al., ICCV 2021): LIF with a learnable time constant.

    ``1/tau = sigmoid(w)`` with one scalar ``w`` per layer (shared by all neurons),
    initialised to ``-ln(init_tau - 1)`` so that ``tau = init_tau`` at the start.

    Args:
        init_tau: initial time constant, must be > 1 (default 2, giving w = 0).
        decay_input: whether the input is divided by ``tau`` as well.
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`.
    """

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, **kwargs: object) -> None:
        init_tau = _check_tau("init_tau", init_tau)
        super().__init__(tau=init_tau, decay_input=decay_input, **kwargs)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    @property
    def current_tau(self) -> float:
        """The time constant ``1 / sigmoid(w)`` right now."""
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"decay": torch.sigmoid(self.w), "v_rest": self._v_rest()}

    def extra_repr(self) -> str:
        base = BaseNode.extra_repr(self)
        return f"tau={self.current_tau:.4g}, decay_input={self.decay_input}, " + base


#: Short alias.
PLIFNode = ParametricLIFNode
