"""Nonlinear integrate-and-fire neurons: QIF, EIF and Izhikevich (methods.md 1.2).

Each is declared once by its charge equation (and, for Izhikevich, the post-spike
update of its adaptation current); the reference loop and the fused CPU/Triton kernels
are derived from that declaration. ``V`` below is the membrane after the previous
reset, ``V[t-1]``; all time constants are in steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.lif import _check_tau

__all__ = ["EIFNode", "IzhikevichNode", "QIFNode"]


def _positive(name: str, value: object) -> float:
    value = check_real(name, value)
    if not value > 0:
        raise ConfigurationError(f"{name} must be > 0, got {value}")
    return value


def _check_v_c(v_c: float, v_rest: float, v_reset: float | None) -> None:
    """The quadratic charge's fixed points: stable at ``v_rest``, unstable at ``v_c``."""
    if not v_c > v_rest:
        raise ConfigurationError(
            f"v_c ({v_c}) must be above v_rest ({v_rest}): the membrane rests at v_rest "
            "and runs away (fires) above the critical voltage v_c"
        )
    if v_reset is not None and not v_reset < v_c:
        raise ConfigurationError(
            f"v_reset ({v_reset}) must be below v_c ({v_c}): a membrane reset above the "
            "critical voltage keeps firing with no input"
        )


class QIFNode(BaseNode):
    """Quadratic integrate-and-fire neuron (methods.md 1.2)::

        H[t] = V + (X[t] + a0 (V - V_rest)(V - V_c)) / tau

    then the shared fire and reset rules. Defaults are SpikingJelly's: ``tau=2``,
    ``v_c=0.8``, ``a0=1``, ``v_rest=0``, **``v_reset=-0.1``**, ``v_threshold=1``.

    Args:
        tau: membrane time constant, > 1.
        v_c: critical voltage (unstable fixed point), > ``v_rest``.
        a0: sharpness of the quadratic term, > 0.
        v_rest: resting voltage (stable fixed point).
        v_reset: hard-reset value (default -0.1; below ``v_c``), or ``None`` for soft
            reset. The membrane starts at ``v_reset`` (hard) or 0 (soft).
        **kwargs: the other arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    Raises:
        ConfigurationError: ``tau <= 1``, ``a0 <= 0``, ``v_c <= v_rest``,
            ``v_reset >= v_c`` or a non-finite value.
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_c: float = 0.8,
        a0: float = 1.0,
        v_rest: float = 0.0,
        v_reset: float | None = -0.1,
        **kwargs: object,
    ) -> None:
        super().__init__(v_reset=v_reset, **kwargs)  # type: ignore[arg-type]
        self.tau = _check_tau("tau", tau)
        self.a0 = _positive("a0", a0)
        self.v_c = check_real("v_c", v_c)
        self.v_rest = check_real("v_rest", v_rest)
        _check_v_c(self.v_c, self.v_rest, self.v_reset)

    @staticmethod
    def charge(
        x: Tensor, v: Tensor, *, decay: float, a0: float, v_rest: float, v_c: float
    ) -> Tensor:
        return v + (x + a0 * (v - v_rest) * (v - v_c)) * decay

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"decay": 1.0 / self.tau, "a0": self.a0, "v_rest": self.v_rest, "v_c": self.v_c}

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau:g}, v_c={self.v_c:g}, a0={self.a0:g}, v_rest={self.v_rest:g}, "
            + super().extra_repr()
        )


class EIFNode(BaseNode):
    """Exponential integrate-and-fire neuron (methods.md 1.2)::

        H[t] = V + (X[t] - (V - V_rest) + delta_T exp((V - theta_rh) / delta_T)) / tau

    then the shared fire and reset rules. Defaults are SpikingJelly's: ``tau=2``,
    ``delta_T=1``, ``theta_rh=0.8``, ``v_rest=0``, **``v_reset=-0.1``**,
    ``v_threshold=1``.

    Args:
        tau: membrane time constant, > 1.
        delta_T: sharpness of the exponential upswing, > 0.
        theta_rh: rheobase threshold (where the upswing takes over).
        v_rest: resting voltage.
        v_reset: hard-reset value (default -0.1), or ``None`` for soft reset.
        **kwargs: the other arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    Raises:
        ConfigurationError: ``tau <= 1``, ``delta_T <= 0`` or a non-finite value.
    """

    def __init__(
        self,
        tau: float = 2.0,
        delta_T: float = 1.0,
        theta_rh: float = 0.8,
        v_rest: float = 0.0,
        v_reset: float | None = -0.1,
        **kwargs: object,
    ) -> None:
        super().__init__(v_reset=v_reset, **kwargs)  # type: ignore[arg-type]
        self.tau = _check_tau("tau", tau)
        self.delta_T = _positive("delta_T", delta_T)
        self.theta_rh = check_real("theta_rh", theta_rh)
        self.v_rest = check_real("v_rest", v_rest)

    @staticmethod
    def charge(
        x: Tensor, v: Tensor, *, decay: float, delta_t: float, theta_rh: float, v_rest: float
    ) -> Tensor:
        upswing = delta_t * torch.exp((v - theta_rh) / delta_t)
        return v + (x - (v - v_rest) + upswing) * decay

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {
            "decay": 1.0 / self.tau,
            "delta_t": self.delta_T,
            "theta_rh": self.theta_rh,
            "v_rest": self.v_rest,
        }

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau:g}, delta_T={self.delta_T:g}, theta_rh={self.theta_rh:g}, "
            f"v_rest={self.v_rest:g}, " + super().extra_repr()
        )


class IzhikevichNode(BaseNode):
    """Izhikevich-style adaptive QIF neuron with an adaptation current ``W`` (methods.md 1.2)::

        H[t] = V + (X[t] + a0 (V - V_rest)(V - V_c) - W[t-1]) / tau
        S[t] = Θ(H[t] - θ);  V[t] = reset(H[t], S[t])
        W[t] = W[t-1] + (a (H[t] - V_rest) - W[t-1]) / tau_w + b S[t]

    ``W`` is advanced from the charged ``H[t]`` (before reset); the spike-triggered jump
    ``b S[t]`` is added after firing. Defaults are SpikingJelly's: ``tau=2``,
    ``v_c=0.8``, ``a0=1``, ``v_threshold=1``, ``v_reset=0``, **``v_rest=-0.1``**,
    ``w_rest=0`` (the initial ``W``), ``tau_w=2``, ``a=0``, ``b=0``. State: ``v`` and
    ``w`` (``node.state["w"]`` while streaming).

    Args:
        tau: membrane time constant, > 1.
        v_c: critical voltage, > ``v_rest``.
        a0: sharpness of the quadratic term, > 0.
        v_rest: resting voltage (default -0.1).
        w_rest: the initial adaptation current.
        tau_w: adaptation time constant, > 1.
        a: subthreshold coupling of ``W`` to the membrane.
        b: spike-triggered jump of ``W``.
        v_reset: hard-reset value (default 0, below ``v_c``), or ``None`` for soft reset.
        **kwargs: the other arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    Raises:
        ConfigurationError: ``tau <= 1``, ``tau_w <= 1``, ``a0 <= 0``, ``v_c <= v_rest``,
            ``v_reset >= v_c`` or a non-finite value.
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_c: float = 0.8,
        a0: float = 1.0,
        v_rest: float = -0.1,
        w_rest: float = 0.0,
        tau_w: float = 2.0,
        a: float = 0.0,
        b: float = 0.0,
        v_reset: float | None = 0.0,
        **kwargs: object,
    ) -> None:
        super().__init__(v_reset=v_reset, **kwargs)  # type: ignore[arg-type]
        self.tau = _check_tau("tau", tau)
        self.tau_w = _check_tau("tau_w", tau_w)
        self.a0 = _positive("a0", a0)
        self.v_c = check_real("v_c", v_c)
        self.v_rest = check_real("v_rest", v_rest)
        self.w_rest = check_real("w_rest", w_rest)
        self.a = check_real("a", a)
        self.b = check_real("b", b)
        _check_v_c(self.v_c, self.v_rest, self.v_reset)

    @staticmethod
    def charge(
        x: Tensor, v: Tensor, w: Tensor, *, decay: float, a0: float, v_rest: float, v_c: float
    ) -> Tensor:
        return v + (x + a0 * (v - v_rest) * (v - v_c) - w) * decay

    @staticmethod
    def update(
        h: Tensor, s: Tensor, w: Tensor, *, a: float, v_rest: float, decay_w: float, b: float
    ) -> Tensor:
        return w + (a * (h - v_rest) - w) * decay_w + b * s

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {
            "decay": 1.0 / self.tau,
            "a0": self.a0,
            "v_rest": self.v_rest,
            "v_c": self.v_c,
            "a": self.a,
            "decay_w": 1.0 / self.tau_w,
            "b": self.b,
        }

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "w": self.w_rest}

    @property
    def w(self) -> Tensor | None:
        """The adaptation current carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["w"]

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau:g}, v_c={self.v_c:g}, a0={self.a0:g}, v_rest={self.v_rest:g}, "
            f"w_rest={self.w_rest:g}, tau_w={self.tau_w:g}, a={self.a:g}, b={self.b:g}, "
            + super().extra_repr()
        )
