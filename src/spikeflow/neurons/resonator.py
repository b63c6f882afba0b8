"""The resonate-and-fire neuron: a damped subthreshold oscillator that fires.

Izhikevich's resonate-and-fire neuron (Neural Networks 14, 2001) is the complex linear
system ``dz/dt = (b + i omega) z + I`` whose imaginary part fires. Its membrane rotates
and decays instead of integrating, so the neuron prefers inputs that arrive at its
intrinsic frequency (and an inhibitory pulse can make it fire on the rebound). It is
declared once: the charge advances both components, and firing and reset are the
shared rules acting on the imaginary part.
"""

from __future__ import annotations

import math

from torch import Tensor

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.nonlinear import _positive
from spikeflow.surrogate import Surrogate

__all__ = ["RAFNode", "ResonateAndFireNode"]


class RAFNode(BaseNode):
    """Resonate-and-fire neuron (Izhikevich 2001), SpikingJelly 2.0's ``RAFNode``::

        z[t] = exp((b + i omega) dt) z[t-1] + X[t],    z = u + i v

    written with two real states, ``alpha = exp(b dt)`` and ``phi = omega dt``::

        H[t] = alpha (u[t-1] sin(phi) + V[t-1] cos(phi))      (the firing component)
        u[t] = alpha (u[t-1] cos(phi) - V[t-1] sin(phi)) + X[t]   (receives the input)
        S[t] = Θ(H[t] - θ);   V[t] = reset(H[t], S[t])    (the shared hard/soft rule)

    Only ``V`` (the imaginary part) is reset; ``u`` (the real part) is never, which is
    what produces rebound spikes after inhibition. An input reaches ``V`` one step after
    it arrives (through ``u``). Both start at 0 (``V`` at ``v_reset`` for hard reset).
    Defaults are SpikingJelly's: ``b=-0.2``, ``omega=1``, ``dt=1``, ``v_threshold=1``,
    ``v_reset=0``, ``Sigmoid(alpha=4)``; ``b``, ``omega`` and ``dt`` are fixed (not
    learnable).

    Args (the first seven by position as SpikingJelly's):
        b: the decay rate, < 0 (the subthreshold oscillation is damped).
        omega: the intrinsic angular frequency, > 0 (radians per unit of ``dt``).
        dt: the time step, > 0.
        v_threshold: θ (default 1).
        v_reset: the hard-reset value of ``V`` (default 0), or ``None`` for soft reset.
        surrogate_function: the spike function (default ``Sigmoid(alpha=4)``).
        detach_reset: if True, no gradient flows through the reset of ``V``.
        **kwargs: the other arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    State: ``v`` and the real part ``u`` (``node.u`` while streaming).

    Raises:
        ConfigurationError: ``b >= 0``, ``omega <= 0``, ``dt <= 0`` or a non-finite value.
    """

    charge_returns_aux = True
    #: Online training (SLTT) passes no gradient through it: the membrane gets the input
    #: one step later, through ``u`` (carried state).
    temporal_only = "charges its membrane from the input only one step later (through u)"

    def __init__(
        self,
        b: float = -0.2,
        omega: float = 1.0,
        dt: float = 1.0,
        v_threshold: float | Tensor = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate_function=surrogate_function,
            detach_reset=detach_reset,
            **kwargs,  # type: ignore[arg-type]
        )
        self.b = check_real("b", b)
        if not self.b < 0:
            raise ConfigurationError(
                f"b must be < 0 (the decay rate of the subthreshold oscillation), got {self.b}"
            )
        self.omega = _positive("omega", omega)
        self.dt = _positive("dt", dt)

    @staticmethod
    def charge(
        x: Tensor, v: Tensor, u: Tensor, *, alpha: float, cos_phi: float, sin_phi: float
    ) -> tuple[Tensor, Tensor]:
        h = alpha * (u * sin_phi + v * cos_phi)
        return h, alpha * (u * cos_phi - v * sin_phi) + x

    def neuron_params(self) -> dict[str, Tensor | float]:
        phi = self.omega * self.dt
        return {
            "alpha": math.exp(self.b * self.dt),
            "cos_phi": math.cos(phi),
            "sin_phi": math.sin(phi),
        }

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "u": 0.0}

    @property
    def u(self) -> Tensor | None:
        """The real part carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["u"]

    def extra_repr(self) -> str:
        return f"b={self.b:g}, omega={self.omega:g}, dt={self.dt:g}, " + super().extra_repr()


#: Long name.
ResonateAndFireNode = RAFNode
