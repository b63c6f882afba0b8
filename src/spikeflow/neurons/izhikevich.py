"""The classic Izhikevich neuron (Izhikevich, IEEE Trans. Neural Netw. 2003), in its
published form: a quadratic membrane ``v`` in mV and a recovery variable ``u``::

    dv/dt = 0.04 v^2 + 5 v + 140 - u + I        (sq v^2 + mn v + bias - u + I)
    du/dt = a (b v - u)
    if v >= 30 mV:  v = c,  u = u + d

discretised by forward Euler with a step ``dt`` in ms, both variables from the previous
step's values, then the spike, the reset of ``v`` to ``c`` and the jump of ``u``::

    H[t] = V + dt (sq V^2 + mn V + bias - U + X[t])             (V, U: step t-1)
    U'   = U + dt a (b V - U)
    S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + c S[t],   U[t] = U' + d S[t]

This is Norse 1.1's ``izhikevich_feed_forward_step`` (``IzhikevichCell``,
``Izhikevich``) step for step, with ``dt = tau_inv * dt_norse``; its twenty named
behaviours (Izhikevich 2004, "Which model to use for cortical spiking neurons?") are
:data:`IZHIKEVICH_PRESETS` (``Izhikevich2003Node.preset(name)``).

:class:`~spikeflow.neurons.IzhikevichNode` is another neuron: SpikingJelly's
dimensionless variant (a QIF with an adaptation ``W``, time constants in steps, threshold
1), not this one.

Declared once (the charge advances ``u``'s Euler step, the update adds ``d S``, the
reset sets ``v`` to ``c``), so the reference loop and the fused C and Triton kernels,
forward and backward, come from the same functions.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from spikeflow.base import set_constants
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode, check_step_shape, show_float_or_shape
from spikeflow.neurons.current import _check_dt, _check_value
from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = ["IZHIKEVICH_PRESETS", "Izhikevich2003Node", "IzhikevichPreset"]


def _izhikevich_charge(
    x: Tensor,
    v: Tensor,
    u: Tensor,
    *,
    dt: float,
    sq: Tensor | float,
    mn: Tensor | float,
    bias: Tensor | float,
    a_dt: Tensor | float,
    b: Tensor | float,
) -> tuple[Tensor, Tensor]:
    """The Euler step of ``v`` and ``u``, both from the previous step's values (the
    sums in Norse's order, so float64 results agree to the last bits)."""
    h = v + dt * (sq * (v * v) + mn * v + bias - u + x)
    u_new = u + a_dt * (b * v - u)
    return h, u_new


def _izhikevich_update(h: Tensor, s: Tensor, u: Tensor, *, d: Tensor | float) -> Tensor:
    """After firing: ``u`` jumps by ``d`` at a spike."""
    return u + d * s


def _izhikevich_reset(
    h: Tensor, s: Tensor, theta: Tensor | float, u: Tensor, *, c: Tensor | float
) -> Tensor:
    """The membrane after firing: ``c`` at a spike (a float or one value per neuron)."""
    return h * (1.0 - s) + c * s


@dataclass(frozen=True)
class IzhikevichPreset:
    """One named behaviour: the model's parameters and the state it starts from.

    Attributes:
        a, b, c, d: Izhikevich's four parameters (recovery rate, coupling of ``u`` to
            ``v``, the reset of ``v`` in mV, the jump of ``u``).
        sq, mn, bias: the coefficients of ``sq v^2 + mn v + bias``.
        dt: the Euler step in ms (Norse's ``tau_inv * dt`` with its ``dt = 1e-3``).
        v_init: the membrane at t = 0, in mV.
        u_init: ``u`` at t = 0, or ``None`` for ``b * v_init``.
    """

    a: float
    b: float
    c: float
    d: float
    sq: float = 0.04
    mn: float = 5.0
    bias: float = 140.0
    dt: float = 0.25
    v_init: float = -65.0
    u_init: float | None = None


def _preset(a: float, b: float, c: float, d: float, v_init: float, **kw: float) -> IzhikevichPreset:
    floats = {name: float(value) for name, value in kw.items()}
    return IzhikevichPreset(float(a), float(b), float(c), float(d), v_init=float(v_init), **floats)


#: Izhikevich's (2004) twenty behaviours, as Norse 1.1 ships them (the same parameters,
#: steps and starting states; Norse's ``accomodation`` is spelt ``accommodation``).
IZHIKEVICH_PRESETS: Mapping[str, IzhikevichPreset] = types.MappingProxyType(
    {
        "tonic_spiking": _preset(0.02, 0.2, -65, 6, -70),
        "phasic_spiking": _preset(0.02, 0.25, -65, 6, -64),
        "tonic_bursting": _preset(0.02, 0.2, -50, 2, -70),
        "phasic_bursting": _preset(0.02, 0.25, -55, 0.05, -64, dt=0.2),
        "mixed_mode": _preset(0.02, 0.2, -55, 4, -70),
        "spike_frequency_adaptation": _preset(0.01, 0.2, -65, 8, -70),
        "class_1_exc": _preset(0.02, -0.1, -55, 6, -60, mn=4.1, bias=108),
        "class_2_exc": _preset(0.2, 0.26, -65, 0, -64),
        "spike_latency": _preset(0.02, 0.2, -65, 6, -70),
        "subthreshold_oscillation": _preset(0.05, 0.26, -60, 0, -62),
        "resonator": _preset(0.1, 0.26, -60, -1, -62),
        "integrator": _preset(0.02, -0.1, -55, 6, -60, mn=4.1, bias=108),
        "rebound_spike": _preset(0.03, 0.25, -60, 4, -64, dt=0.2),
        "rebound_burst": _preset(0.03, 0.25, -52, 0, -64, dt=0.2),
        "threshold_variability": _preset(0.03, 0.25, -60, 4, -64),
        "bistability": _preset(0.1, 0.26, -60, 0, -61),
        "dap": _preset(1.0, 0.2, -60, -21, -70, dt=0.1),
        "accommodation": _preset(0.02, 1.0, -55, 4, -65, dt=0.5, u_init=-16),
        "inhibition_induced_spiking": _preset(-0.02, -1.0, -60, 8, -63.8),
        "inhibition_induced_bursting": _preset(-0.026, -1.0, -45, -2, -63.8),
    }
)


class Izhikevich2003Node(BaseNode):
    """The classic Izhikevich (2003) neuron, in mV and ms (see the module docstring)::

        H[t] = V + dt (sq V^2 + mn V + bias - U + X[t])
        U'   = U + dt a (b V - U)                                  (V, U: step t-1)
        S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + c S[t],   U[t] = U' + d S[t]

    The defaults are the 2003 paper's regular-spiking cortical cell (``a = 0.02``,
    ``b = 0.2``, ``c = -65``, ``d = 8``, starting at ``v = -65``, ``u = b v``), the spike
    cut at θ = 30 mV, with Norse's step ``dt = 0.25`` ms. The input is a current in the
    model's units (about 4 and above makes the regular-spiking cell fire), not the
    threshold-1 scale of the other neurons. ``Izhikevich2003Node.preset(name)`` builds
    one of :data:`IZHIKEVICH_PRESETS`.

    Not :class:`~spikeflow.neurons.IzhikevichNode`, SpikingJelly's dimensionless variant
    (``H = V + (X + a0 (V - V_rest)(V - V_c) - W) / τ``, threshold 1, its ``W`` advanced
    from the charged membrane).

    **Norse**: ``IzhikevichCell(IzhikevichSpikingBehavior(IzhikevichParameters(a, b, c,
    d, sq, mn, bias, v_th, tau_inv), IzhikevichState(v0, u0)), dt=dt_n)`` is
    ``Izhikevich2003Node(a, b, c, d, sq=sq, mn=mn, bias=bias, dt=tau_inv * dt_n,
    v_init=v0, u_init=u0, v_threshold=v_th, strict_firing=True,
    surrogate_function=SuperSpike(alpha=1.0))`` in spikes, ``v``, ``u`` and gradients
    (Norse's ``u0`` of a behaviour is ``b v0`` rounded to float32).

    Args:
        a: the recovery rate of ``u`` (per ms; default 0.02).
        b: the coupling of ``u`` to ``v`` (default 0.2).
        c: the membrane after a spike, in mV (default -65): the reset (this neuron takes
            no ``v_reset``).
        d: the jump of ``u`` at a spike (default 8).
        sq, mn, bias: the coefficients of the quadratic ``sq v^2 + mn v + bias``
            (defaults 0.04, 5, 140).
        dt: the Euler step in ms, a number > 0 (default 0.25).
        v_init: the membrane at t = 0, in mV (default -65).
        u_init: ``u`` at t = 0 (default ``None``: ``b * v_init``).
        v_threshold: the spike cut-off θ in mV (default 30).
        **kwargs: the other arguments of :class:`~spikeflow.neurons.base.BaseNode`
            (``surrogate_function``, ``detach_reset``, ``strict_firing``,
            ``learnable_threshold``, ``step_mode``, ``backend``, ``store_v_seq``).

    ``a``, ``b``, ``c``, ``d``, ``sq``, ``mn``, ``bias``, ``v_init`` and ``u_init`` may be
    tensors broadcastable to the neuron shape (one value per neuron, as in Izhikevich's
    network of 1,000 cells). State: ``v`` and ``u`` (``node.u`` while streaming).

    Raises:
        ConfigurationError: a ``v_reset`` argument, ``dt`` not a finite number > 0, a
            non-finite value, ``c`` not below θ somewhere, an unknown preset.
    """

    def __init__(
        self,
        a: float | Tensor = 0.02,
        b: float | Tensor = 0.2,
        c: float | Tensor = -65.0,
        d: float | Tensor = 8.0,
        *,
        sq: float | Tensor = 0.04,
        mn: float | Tensor = 5.0,
        bias: float | Tensor = 140.0,
        dt: float = 0.25,
        v_init: float | Tensor = -65.0,
        u_init: float | Tensor | None = None,
        v_threshold: float | Tensor = 30.0,
        **kwargs: object,
    ) -> None:
        owner = type(self).__name__
        if "v_reset" in kwargs:
            raise ConfigurationError(
                f"{owner} resets its membrane to c (Izhikevich's reset, in mV): pass c=..., "
                "not v_reset"
            )
        reset = _check_value("c", c)
        # BaseNode checks θ > v_reset: the highest reset must be below the threshold.
        highest = reset if isinstance(reset, float) else float(reset.max())
        super().__init__(v_threshold=v_threshold, v_reset=highest, **kwargs)  # type: ignore[arg-type]
        self.dt = _check_dt(dt, f"{owner}: dt", " (ms)")
        values = {name: _check_value(name, value) for name, value in
                  (("a", a), ("b", b), ("d", d), ("sq", sq), ("mn", mn), ("bias", bias),
                   ("v_init", v_init))}  # fmt: skip
        values["c"] = reset
        values["u_init"] = None if u_init is None else _check_value("u_init", u_init)
        set_constants(self, values)

    @classmethod
    def preset(cls, name: str, **kwargs: object) -> Izhikevich2003Node:
        """The neuron of one of :data:`IZHIKEVICH_PRESETS` (``"tonic_spiking"``,
        ``"phasic_bursting"``, ...); ``kwargs`` override its values (``dt=0.5``) or set
        the other arguments (``step_mode="s"``, ``surrogate_function=...``).

        Raises:
            ConfigurationError: an unknown name (the known ones are listed).
        """
        if name not in IZHIKEVICH_PRESETS:
            known = ", ".join(sorted(IZHIKEVICH_PRESETS))
            raise ConfigurationError(f"unknown Izhikevich preset {name!r}; choose one of {known}")
        return cls(**{**asdict(IZHIKEVICH_PRESETS[name]), **kwargs})  # type: ignore[arg-type]

    def declaration(self) -> NeuronDeclaration:
        return declare(
            _izhikevich_charge, _izhikevich_update, type(self).__name__, charge_returns_aux=True,
            reset_membrane=_izhikevich_reset,
        )  # fmt: skip

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {
            "dt": self.dt,
            "sq": self.sq,
            "mn": self.mn,
            "bias": self.bias,
            "a_dt": self.dt * self.a,
            "b": self.b,
            "d": self.d,
            "c": self.c,
        }

    def _u_start(self) -> float | Tensor:
        return self.b * self.v_init if self.u_init is None else self.u_init

    def initial_values(self) -> dict[str, float]:
        u = self._u_start()
        if isinstance(self.v_init, Tensor) or isinstance(u, Tensor):
            raise ConfigurationError(
                f"{type(self).__name__} starts from per-neuron values (v_init or u_init a "
                "tensor), not one number per state: use initial_state(like)"
            )
        return {"v": self.v_init, "u": u}

    def initial_state(self, like: Tensor) -> dict[str, Tensor]:
        zero = torch.zeros_like(like)
        return {
            name: zero + (value.to(like) if isinstance(value, Tensor) else value)
            for name, value in (("v", self.v_init), ("u", self._u_start()))
        }

    def start_state(self, like: Tensor) -> dict[str, Tensor | float]:
        # Numbers (which the kernels read as scalars) unless a start value is per neuron.
        if isinstance(self.v_init, Tensor) or isinstance(self._u_start(), Tensor):
            return self.initial_state(like)
        return dict(self.initial_values())

    @property
    def u(self) -> Tensor | None:
        """The recovery variable carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["u"]

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        for name in ("a", "b", "c", "d", "sq", "mn", "bias", "v_init", "u_init"):
            check_step_shape(type(self).__name__, name, getattr(self, name), x_seq.shape[1:])
        return x_seq

    def extra_repr(self) -> str:
        show = show_float_or_shape
        parts = [f"{n}={show(getattr(self, n))}" for n in ("a", "b", "c", "d", "sq", "mn", "bias")]
        u = "b*v_init" if self.u_init is None else show(self.u_init)
        parts += [f"dt={self.dt:g}", f"v_init={show(self.v_init)}", f"u_init={u}"]
        parts += [f"v_threshold={show(self.v_threshold)}", f"detach_reset={self.detach_reset}",
                  *self._mode_repr()]  # fmt: skip
        return ", ".join(parts)
