"""Current-based LIF (CUBA): a synaptic current filters the input before the membrane.

The continuous-time model is NIR's ``CubaLIF`` (``nir.CubaLIF``)::

    tau_syn dI/dt = -I + w_in X
    tau_mem dV/dt = (v_leak - V) + r I
    spike when V crosses v_threshold, then V = v_reset

discretised with step ``dt`` (forward Euler for the current, then the membrane is
advanced with the *updated* current, as Lava/Loihi's CUBA and snnTorch's ``Synaptic``
do, so an input reaches the membrane in the step it arrives)::

    I[t] = I[t-1] + (dt / tau_syn) (X[t] - I[t-1])
    H[t] = V[t-1] + (dt / tau_mem) (v_leak - V[t-1] + r I[t])
    S[t] = Θ(H[t] - θ),   V[t] = reset(H[t], S[t])

``w_in`` is 1 here: the weights live in the layer before the neuron. NIR's numpy
reference simulator instead feeds ``I[t-1]`` to the membrane, which delays every input
by one step; that is the only difference.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow.base import set_constants
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.neurons.base import BaseNode, check_step_shape

__all__ = ["CubaLIFNode"]


def _check_value(name: str, value: object, low: float | None = None) -> float | Tensor:
    """A neuron parameter: a finite float, or a floating-point tensor of finite values
    (a detached copy), everywhere ``>= low`` when ``low`` is given."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise DTypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        ok = bool(torch.isfinite(value).all()) and (low is None or bool((value >= low).all()))
        checked: float | Tensor = value.detach().clone()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a float or a tensor, got {value!r}")
    else:
        checked = float(value)
        ok = math.isfinite(checked) and (low is None or checked >= low)
    if not ok:
        bound = "" if low is None else f" and >= {low:g}"
        raise ConfigurationError(f"{name} must be finite{bound}, got {value}")
    return checked


def _check_dt(dt: object, name: str = "dt", unit: str = "") -> float:
    """The step ``dt`` as a float if it is a finite number > 0, else a ConfigurationError
    naming it ``name`` (``"Owner: dt"``) and its ``unit`` (``" (ms)"``)."""
    if (
        isinstance(dt, bool)
        or not isinstance(dt, (int, float))
        or not (math.isfinite(dt) and dt > 0)
    ):
        raise ConfigurationError(f"{name} must be a finite number > 0{unit}, got {dt!r}")
    return float(dt)


def _check_time_constant(name: str, value: object, dt: float) -> float | Tensor:
    checked = _check_value(name, value)
    if not bool(torch.all(torch.as_tensor(checked) >= dt)):
        raise ConfigurationError(
            f"{name} must be >= dt ({dt}) everywhere: forward Euler with dt/{name} > 1 "
            f"overshoots the decay; got {name}={value}"
        )
    return checked


class CubaLIFNode(BaseNode):
    """Current-based LIF with NIR ``CubaLIF`` semantics (see the module docstring)::

        I[t] = I[t-1] + (dt / tau_syn) (X[t] - I[t-1])
        H[t] = V[t-1] + (dt / tau_mem) (v_leak - V[t-1] + r I[t])

    then the shared fire and reset rules (``v_threshold``, ``v_reset``; NIR fires on
    ``V > θ``: pass ``strict_firing=True`` for that). The current is advanced before
    firing (the charge returns ``(H, I[t])``). State: ``v`` and the current ``i``, both
    starting at 0 (``v`` at ``v_reset`` for hard reset).

    Mapping to ``nir.CubaLIF(tau_syn, tau_mem, r, v_leak, v_threshold, v_reset,
    w_in=1)``: the same names and values, with time constants in the units of ``dt``.
    ``tau_syn``, ``tau_mem``, ``r`` and ``v_leak`` may be tensors broadcastable to the
    neuron shape (one value per neuron, as NIR stores them).

    Args:
        tau_syn: synaptic time constant, >= ``dt`` (default 2).
        tau_mem: membrane time constant, >= ``dt`` (default 2).
        r: resistance (gain of the current on the membrane), default 1.
        v_leak: the membrane's resting (leak) voltage, default 0.
        dt: the time step, > 0 (default 1).
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    Raises:
        ConfigurationError: ``dt <= 0``, a time constant below ``dt``, a non-finite value.
    """

    charge_returns_aux = True

    def __init__(
        self,
        tau_syn: float | Tensor = 2.0,
        tau_mem: float | Tensor = 2.0,
        r: float | Tensor = 1.0,
        v_leak: float | Tensor = 0.0,
        dt: float = 1.0,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.dt = _check_dt(dt)
        values = {
            "tau_syn": _check_time_constant("tau_syn", tau_syn, self.dt),
            "tau_mem": _check_time_constant("tau_mem", tau_mem, self.dt),
            "r": _check_value("r", r),
            "v_leak": _check_value("v_leak", v_leak),
        }
        set_constants(self, values)

    @staticmethod
    def charge(
        x: Tensor,
        v: Tensor,
        i: Tensor,
        *,
        syn_decay: Tensor | float,
        mem_decay: Tensor | float,
        r: Tensor | float,
        v_leak: Tensor | float,
    ) -> tuple[Tensor, Tensor]:
        i_new = i + (x - i) * syn_decay
        h = v + (v_leak - v + r * i_new) * mem_decay
        return h, i_new

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {
            "syn_decay": self.dt / self.tau_syn,
            "mem_decay": self.dt / self.tau_mem,
            "r": self.r,
            "v_leak": self.v_leak,
        }

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "i": 0.0}

    @property
    def i(self) -> Tensor | None:
        """The synaptic current carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["i"]

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        step_shape = x_seq.shape[1:]
        for name in ("tau_syn", "tau_mem", "r", "v_leak"):
            check_step_shape("CubaLIFNode", name, getattr(self, name), step_shape)
        return x_seq

    def extra_repr(self) -> str:
        def show(value: float | Tensor) -> str:
            return f"{value:g}" if isinstance(value, float) else f"tensor{tuple(value.shape)}"

        return (
            f"tau_syn={show(self.tau_syn)}, tau_mem={show(self.tau_mem)}, r={show(self.r)}, "
            f"v_leak={show(self.v_leak)}, dt={self.dt:g}, " + super().extra_repr()
        )
