"""The conductance-based LIF neuron (COBA): the input opens an excitatory and an
inhibitory conductance, each pulling the membrane towards its own reversal potential,
so the effect of an input depends on the membrane it arrives at. Norse 1.1's
``coba_lif_feed_forward_step`` / ``CobaLIFCell``.

The continuous model (a membrane capacitance ``c_m``, a leak conductance ``g_leak``)::

    c_m dV/dt = g_leak (v_leak - V) + g_e (e_rev_exc - V) + g_i (e_rev_inh - V)
    dg_e/dt = -g_e / tau_syn_exc,   dg_i/dt = -g_i / tau_syn_inh
    a drive X opens the conductances: g_e += X_e, g_i += X_i
    spike when V crosses v_threshold, then V = v_reset

discretised with step ``dt`` in Norse's order: the conductances jump by this step's
drive and decay (forward Euler), the membrane is advanced with them from the previous
step's ``V``, then the spike and the reset::

    g_e[t] = G_e - (dt / tau_syn_exc) G_e,   G_e = g_e[t-1] + X_e[t]     (likewise g_i)
    H[t]   = V + (dt / c_m) (g_leak (v_leak - V) + g_e[t] (e_rev_exc - V)
                                                + g_i[t] (e_rev_inh - V))       (V = V[t-1])
    S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + V_r S[t]

Two ways to give the drives (``input_split``):

* ``"sign"`` (default): one input ``X``, ``[T, B, ...]``; its positive part is the
  excitatory drive and its negative part the inhibitory one, ``X_e = relu(X)``,
  ``X_i = relu(-X)`` (Norse's ``coba_lif_feed_forward_step``). The sign of the *summed*
  drive decides, so a ``Linear`` before the neuron gives ``relu(W s)``.
* ``"pair"``: the two drives, already weighted, stacked in a leading dimension of 2:
  ``[2, T, B, ...]`` (``[2, B, ...]`` in single-step mode), ``x[0] = X_e`` and
  ``x[1] = X_i``, added to the conductances as given. This is what a layer whose weights
  are split by sign per synapse gives (Norse's ``CobaLIFCell``: ``relu(W) s`` to
  ``g_e`` and ``relu(-W) s`` to ``g_i``, both at once).

Both are declared once, so the reference loop and the fused C and Triton kernels,
forward and backward, come from the same functions. A declaration has one input per
step; the pair runs as two sub-steps per step, the excitatory drive's (which only
opens ``g_e``: the membrane, the spike and the reset wait) and the inhibitory drive's
(which opens ``g_i`` and runs the step above). A state ``phase`` tells them apart; the
first sub-step's output is dropped, and its reset keeps the membrane with no gradient
through its spike, so spikes, states and gradients are those of the equations above.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.base import set_constants
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.neurons.base import (
    BaseNode,
    check_float_input,
    check_step_shape,
    show_float_or_shape,
)
from spikeflow.neurons.current import _check_dt, _check_time_constant, _check_value
from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = ["CobaLIFNode"]

_SPLITS = ("sign", "pair")


def _membrane(
    v: Tensor,
    g_e: Tensor,
    g_i: Tensor,
    mem_step: Tensor | float,
    g_leak: Tensor | float,
    v_leak: Tensor | float,
    e_rev_exc: Tensor | float,
    e_rev_inh: Tensor | float,
) -> Tensor:
    """The Euler step of the membrane from ``V[t-1]`` with this step's conductances (the
    sum in Norse's order)."""
    return v + mem_step * (g_leak * (v_leak - v) + g_e * (e_rev_exc - v) + g_i * (e_rev_inh - v))


def _coba_sign_charge(
    x: Tensor,
    v: Tensor,
    g_e: Tensor,
    g_i: Tensor,
    *,
    exc_step: Tensor | float,
    inh_step: Tensor | float,
    mem_step: Tensor | float,
    g_leak: Tensor | float,
    v_leak: Tensor | float,
    e_rev_exc: Tensor | float,
    e_rev_inh: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Sign-split drive: ``g_e += relu(X)``, ``g_i += relu(-X)``, both decay
    (``exc_step = -dt / tau_syn_exc``), then the membrane."""
    ge = g_e + torch.relu(x)
    gi = g_i + torch.relu(-x)
    ge = ge + exc_step * ge
    gi = gi + inh_step * gi
    h = _membrane(v, ge, gi, mem_step, g_leak, v_leak, e_rev_exc, e_rev_inh)
    return h, ge, gi


def _coba_pair_charge(
    x: Tensor,
    v: Tensor,
    g_e: Tensor,
    g_i: Tensor,
    phase: Tensor,
    *,
    exc_step: Tensor | float,
    inh_step: Tensor | float,
    mem_step: Tensor | float,
    g_leak: Tensor | float,
    v_leak: Tensor | float,
    e_rev_exc: Tensor | float,
    e_rev_inh: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One sub-step of a pair: ``phase`` 0, ``x = X_e`` (``g_e`` jumps, nothing else
    moves); ``phase`` 1, ``x = X_i`` (``g_i`` jumps, both decay, the membrane steps).
    Returns the next phase too."""
    first = phase < 0.5
    ge = torch.where(first, g_e + x, g_e)
    gi = g_i + x
    ge_step = ge + exc_step * ge
    gi_step = gi + inh_step * gi
    h = _membrane(v, ge_step, gi_step, mem_step, g_leak, v_leak, e_rev_exc, e_rev_inh)
    return (
        torch.where(first, v, h),
        torch.where(first, ge, ge_step),
        torch.where(first, g_i, gi_step),
        1.0 - phase,
    )


def _coba_pair_reset(
    h: Tensor,
    s: Tensor,
    theta: Tensor | float,
    g_e: Tensor,
    g_i: Tensor,
    phase: Tensor,
    *,
    v_reset: float,
) -> Tensor:
    """The hard reset after the second sub-step; after the first (the next phase is 1)
    the membrane is kept, and its spike (dropped) has no effect."""
    return torch.where(phase > 0.5, h, h * (1.0 - s) + v_reset * s)


class CobaLIFNode(BaseNode):
    """Conductance-based LIF neuron, Norse 1.1's (see the module docstring)::

        g_e[t] = G_e (1 - dt/tau_syn_exc),  G_e = g_e[t-1] + X_e[t]      (likewise g_i)
        H[t]   = V + (dt/c_m) (g_leak (v_leak - V) + g_e[t] (e_rev_exc - V)
                                                  + g_i[t] (e_rev_inh - V))
        S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + V_r S[t]

    ``input_split="sign"`` (default): ``X_e = relu(X)``, ``X_i = relu(-X)`` of one input
    ``[T, B, ...]``; ``input_split="pair"``: the drives stacked, ``[2, T, B, ...]``
    (``[2, B, ...]`` in single-step mode), ``x[0] = X_e``, ``x[1] = X_i``.

    The defaults are Norse's ``CobaLIFParameters()`` and ``dt = 1e-3`` (time constants
    in the units of ``dt``): ``tau_syn_exc = tau_syn_inh = 5``, ``c_m = 0.2``,
    ``g_leak = 0.25`` (a membrane time constant ``c_m / g_leak = 0.8``),
    ``e_rev_exc = 60``, ``e_rev_inh = -100``, ``v_leak = -20``, θ = -10, ``v_reset =
    -70``. The membrane starts at rest (``v_init=None``: ``v_leak``; Norse's cell starts
    at 0), the conductances at 0. Only the hard reset is offered (a reset to a
    potential; θ is negative in these units, where a soft reset would raise ``V``).

    **Norse**: ``coba_lif_feed_forward_step`` with ``CobaLIFParameters(tau_syn_exc_inv,
    tau_syn_inh_inv, c_m_inv, g_l, e_rev_I, e_rev_E, v_rest, v_reset, v_thresh)`` and
    ``dt`` is ``CobaLIFNode(tau_syn_exc=1/tau_syn_exc_inv, tau_syn_inh=1/tau_syn_inh_inv,
    c_m=1/c_m_inv, g_leak=g_l, e_rev_exc=e_rev_E, e_rev_inh=e_rev_I, v_leak=v_rest,
    dt=dt, v_threshold=v_thresh, v_reset=v_reset, strict_firing=True,
    surrogate_function=SuperSpike(alpha=1.0))`` in spikes, states and gradients;
    ``CobaLIFCell`` is that neuron with ``input_split="pair"``, ``v_init=0`` and the
    drives ``relu(±W_rec) z[t-1]`` of its recurrent weights: Norse 1.1's
    ``coba_lif_step`` overwrites the jumps of its input weights with those of the
    recurrent ones (both start from the old conductances), so its input has no effect.

    Args:
        tau_syn_exc, tau_syn_inh: the conductances' time constants, ``>= dt``
            (default 5).
        c_m: the membrane capacitance, > 0 (default 0.2).
        g_leak: the leak conductance, >= 0, with ``dt g_leak / c_m <= 1`` (default 0.25).
        e_rev_exc, e_rev_inh: the reversal potentials (defaults 60 and -100).
        v_leak: the resting potential (default -20).
        dt: the time step, a number > 0 (default 1e-3).
        input_split: ``"sign"`` or ``"pair"`` (see above).
        v_init: the membrane at t = 0 (default ``None``: ``v_leak``).
        v_threshold: θ (default -10).
        v_reset: the membrane after a spike, a float below θ (default -70).
        **kwargs: the other arguments of :class:`~spikeflow.neurons.base.BaseNode`.

    Every parameter but ``dt`` may be a tensor broadcastable to the neuron shape. State:
    ``v``, ``g_e``, ``g_i`` (``node.g_e``, ``node.g_i`` while streaming; with
    ``input_split="pair"`` also ``phase``, 0 between calls).

    Raises:
        ConfigurationError: soft reset, a bad ``input_split``, ``dt``, time constant,
            ``c_m``, ``g_leak`` or a non-finite value.
        ShapeError: a ``"pair"`` input without its leading dimension of 2.
    """

    charge_returns_aux = True

    def __init__(
        self,
        tau_syn_exc: float | Tensor = 5.0,
        tau_syn_inh: float | Tensor = 5.0,
        c_m: float | Tensor = 0.2,
        g_leak: float | Tensor = 0.25,
        e_rev_exc: float | Tensor = 60.0,
        e_rev_inh: float | Tensor = -100.0,
        v_leak: float | Tensor = -20.0,
        dt: float = 1e-3,
        input_split: str = "sign",
        v_init: float | Tensor | None = None,
        v_threshold: float | Tensor = -10.0,
        v_reset: float | None = -70.0,
        **kwargs: object,
    ) -> None:
        owner = type(self).__name__
        super().__init__(v_threshold=v_threshold, v_reset=v_reset, **kwargs)  # type: ignore[arg-type]
        if self.v_reset is None:
            raise ConfigurationError(
                f"{owner} needs a hard reset (v_reset a float): the membrane resets to a "
                "potential, and θ is usually negative in these units, where a soft reset "
                "(V = H - θ) would raise the membrane"
            )
        if input_split not in _SPLITS:
            raise ConfigurationError(
                f"{owner}: input_split must be 'sign' (one signed drive [T, B, ...]) or "
                f"'pair' (the excitatory and inhibitory drives, [2, T, B, ...]), got "
                f"{input_split!r}"
            )
        self.input_split = input_split
        self.dt = _check_dt(dt, f"{owner}: dt")
        c = _check_value("c_m", c_m)
        if not bool(torch.all(torch.as_tensor(c) > 0)):
            raise ConfigurationError(f"{owner}: c_m must be > 0 everywhere, got {c_m}")
        g = _check_value("g_leak", g_leak)
        if not bool(torch.all((torch.as_tensor(g) >= 0) & (self.dt * g / c <= 1))):
            raise ConfigurationError(
                f"{owner}: g_leak must be >= 0 with dt g_leak / c_m <= 1 everywhere (forward "
                f"Euler overshoots the leak otherwise), got g_leak={g_leak}, c_m={c_m}, "
                f"dt={self.dt}"
            )
        values = {
            "tau_syn_exc": _check_time_constant("tau_syn_exc", tau_syn_exc, self.dt),
            "tau_syn_inh": _check_time_constant("tau_syn_inh", tau_syn_inh, self.dt),
            "c_m": c,
            "g_leak": g,
            "e_rev_exc": _check_value("e_rev_exc", e_rev_exc),
            "e_rev_inh": _check_value("e_rev_inh", e_rev_inh),
            "v_leak": _check_value("v_leak", v_leak),
            "v_init": None if v_init is None else _check_value("v_init", v_init),
        }
        set_constants(self, values)

    def declaration(self) -> NeuronDeclaration:
        name = f"{type(self).__name__}({self.input_split})"
        if self.input_split == "sign":
            return declare(_coba_sign_charge, None, name, charge_returns_aux=True)
        return declare(
            _coba_pair_charge, None, name, charge_returns_aux=True, reset_membrane=_coba_pair_reset
        )

    def neuron_params(self) -> dict[str, Tensor | float]:
        params = {
            "exc_step": -self.dt / self.tau_syn_exc,
            "inh_step": -self.dt / self.tau_syn_inh,
            "mem_step": self.dt / self.c_m,
            "g_leak": self.g_leak,
            "v_leak": self.v_leak,
            "e_rev_exc": self.e_rev_exc,
            "e_rev_inh": self.e_rev_inh,
        }
        if self.input_split == "pair":
            params["v_reset"] = self.v_reset
        return params

    def _v_start(self) -> float | Tensor:
        return self.v_leak if self.v_init is None else self.v_init

    def initial_values(self) -> dict[str, float]:
        v = self._v_start()
        if isinstance(v, Tensor):
            raise ConfigurationError(
                f"{type(self).__name__} starts from a per-neuron membrane (v_init or v_leak "
                "a tensor), not one number: use initial_state(like)"
            )
        values = {"v": v, "g_e": 0.0, "g_i": 0.0}
        if self.input_split == "pair":
            values["phase"] = 0.0
        return values

    def initial_state(self, like: Tensor) -> dict[str, Tensor]:
        v = self._v_start()
        zero = torch.zeros_like(like)
        state = {"v": zero + (v.to(like) if isinstance(v, Tensor) else v), "g_e": zero,
                 "g_i": zero.clone()}  # fmt: skip
        if self.input_split == "pair":
            state["phase"] = zero.clone()
        return state

    def start_state(self, like: Tensor) -> dict[str, Tensor | float]:
        # Numbers (which the kernels read as scalars) unless the membrane is per neuron.
        if isinstance(self._v_start(), Tensor):
            return self.initial_state(like)
        return dict(self.initial_values())

    @property
    def g_e(self) -> Tensor | None:
        """The excitatory conductance carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["g_e"]

    @property
    def g_i(self) -> Tensor | None:
        """The inhibitory conductance carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["g_i"]

    def _check_input(self, x: Tensor) -> Tensor:
        if self.input_split == "pair":
            x_seq = self._pair_steps(x)
        else:
            x_seq = super()._check_input(x)
        for name in ("tau_syn_exc", "tau_syn_inh", "c_m", "g_leak", "e_rev_exc", "e_rev_inh",
                     "v_leak", "v_init"):  # fmt: skip
            check_step_shape(type(self).__name__, name, getattr(self, name), x_seq.shape[1:])
        return x_seq

    def _pair_steps(self, x: Tensor) -> Tensor:
        """A pair input as the sub-steps the declaration runs: ``[X_e[0], X_i[0],
        X_e[1], ...]``, ``[2 T, B, ...]``."""
        owner = type(self).__name__
        check_float_input(x, owner, "floating-point drives (conductance increments)")
        single = self.step_mode == "s"
        layout = "[2, B, ...]" if single else "[2, T, B, ...]"
        if x.dim() < (2 if single else 3) or x.shape[0] != 2:
            raise ShapeError(
                f"{owner} with input_split='pair' expects the excitatory and inhibitory "
                f"drives stacked in a leading dimension of 2, {layout}, got shape "
                f"{tuple(x.shape)}"
            )
        if single:
            return x
        if x.shape[1] == 0:
            raise ShapeError(
                f"{owner} got a sequence of 0 time steps (input shape {tuple(x.shape)})"
            )
        return x.transpose(0, 1).reshape(2 * x.shape[1], *x.shape[2:])

    def forward(self, x: Tensor) -> Tensor:
        """Spikes: ``[T, B, ...]`` in multi-step mode, ``[B, ...]`` in single-step."""
        if self.input_split == "sign":
            return super().forward(x)
        steps = self._check_input(x)
        spikes, v_seq = self._run_steps(steps, self.store_v_seq)
        spikes = spikes[1::2]  # the membrane's sub-steps
        if self.store_v_seq:
            self.v_seq = v_seq[1::2]
        return spikes if self.step_mode == "m" else spikes[0]

    def extra_repr(self) -> str:
        names = ("tau_syn_exc", "tau_syn_inh", "c_m", "g_leak", "e_rev_exc", "e_rev_inh", "v_leak")
        parts = [f"{n}={show_float_or_shape(getattr(self, n))}" for n in names]
        v_init = "v_leak" if self.v_init is None else show_float_or_shape(self.v_init)
        parts += [f"dt={self.dt:g}", f"input_split={self.input_split!r}", f"v_init={v_init}"]
        return ", ".join(parts) + ", " + super().extra_repr()
