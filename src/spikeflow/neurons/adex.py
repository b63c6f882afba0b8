"""The adaptive exponential integrate-and-fire neuron (AdEx; Brette & Gerstner, J.
Neurophysiol. 2005), current-based: a synaptic current ``I``, a membrane ``V`` with an
exponential upswing, and an adaptation current ``W``.

The continuous model, with ``w_in = 1`` (the weights live in the layer before)::

    tau_syn dI/dt = -I + X
    tau_mem dV/dt = (v_leak - V) + delta_T exp((V - theta_rh) / delta_T) + r I - W
    tau_w   dW/dt = a (V - v_leak) - W
    spike when V reaches v_threshold, then V = v_reset and W = W + b

discretised with step ``dt`` by forward Euler, the current advanced first as in
:class:`~spikeflow.neurons.CubaLIFNode` (an input reaches the membrane in the step it
arrives), the membrane and the adaptation both from the previous step's ``V`` and
``W``::

    I[t] = I[t-1] + (dt / tau_syn) (X[t] - I[t-1])
    H[t] = V + (dt / tau_mem) ((v_leak - V) + delta_T exp((V - theta_rh) / delta_T)
                               + r I[t] - W[t-1])                       (V = V[t-1])
    S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + V_r S[t]
    W[t] = W[t-1] + (dt / tau_w) (a (V[t-1] - v_leak) - W[t-1]) + b S[t]

``a`` couples the adaptation to the membrane below threshold, ``b`` is the jump of
``W`` at each spike; ``W`` is subtracted from the drive in the units of ``V`` (Brette &
Gerstner's ``w / g_L``). This is Norse 1.1's ``LIFAdEx`` / ``LIFAdExCell`` step for step
(tested: spikes, every state and the gradients), with ``r = tau_syn / dt`` (Norse adds
the input to its current unscaled) and ``theta_rh = v_threshold`` (Norse's exponential
uses its ``v_th``).

Declared once (the charge advances ``I`` and the Euler part of ``W``; the update adds
the spike-triggered jump), so the reference loop and the fused C and Triton kernels,
forward and backward, come from the same functions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.base import set_constants
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import check_step_shape, show_float_or_shape
from spikeflow.neurons.current import CubaLIFNode, _check_time_constant, _check_value
from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = ["AdExLIFNode"]


def _adex_charge(
    x: Tensor,
    v: Tensor,
    i: Tensor,
    w: Tensor,
    *,
    syn_decay: Tensor | float,
    mem_decay: Tensor | float,
    r: Tensor | float,
    v_leak: Tensor | float,
    delta_t: Tensor | float,
    theta_rh: Tensor | float,
    w_decay: Tensor | float,
    a: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The current, the charged membrane and the adaptation's Euler step (before the
    spike-triggered jump), all from the previous step's ``V`` and ``W``."""
    i_new = i + (x - i) * syn_decay
    upswing = delta_t * torch.exp((v - theta_rh) / delta_t)
    h = v + mem_decay * ((v_leak - v) + upswing + r * i_new - w)
    w_new = w + w_decay * (a * (v - v_leak) - w)
    return h, i_new, w_new


def _adex_update(h: Tensor, s: Tensor, i: Tensor, w: Tensor, *, b: Tensor | float) -> tuple:
    """After firing: the current as charged, ``W + b S``."""
    return i, w + b * s


class AdExLIFNode(CubaLIFNode):
    """Adaptive exponential integrate-and-fire neuron, current-based (see the module
    docstring)::

        I[t] = I[t-1] + (dt / tau_syn) (X[t] - I[t-1])
        H[t] = V + (dt / tau_mem) (v_leak - V + delta_T exp((V - theta_rh) / delta_T)
                                   + r I[t] - W)
        S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + V_r S[t]
        W[t] = W + (dt / tau_w) (a (V - v_leak) - W) + b S[t]       (V, W of step t-1)

    The membrane starts at rest, ``v_leak`` (as Brette & Gerstner and Norse; the other
    spikeflow neurons start at ``v_reset``: the AdEx's reset is often above rest, a
    bursting setting, where starting there would start mid-burst); ``I`` and ``W`` at 0.
    Only the hard reset is offered: the model resets to ``v_reset``, and a soft reset
    (``V = H - θ``) can leave ``V`` far above ``theta_rh``, where the exponential
    overflows.

    The defaults are spikeflow's choice for networks of a few to a few hundred steps,
    not a paper's: :class:`CubaLIFNode`'s ``tau_syn = tau_mem = 2``, ``r = 1``;
    ``delta_T = 0.5`` and ``theta_rh = v_threshold`` (Norse's); ``tau_w = 20`` steps,
    ``a = 0.1``, ``b = 0.2``. With ``a = b = 0`` it is Norse's ``LIFEx``; with also
    ``tau_syn = dt`` (no synaptic filter) it is :class:`~spikeflow.neurons.EIFNode`.

    **Norse**: ``LIFAdEx(LIFAdExParameters(adaptation_current=a, adaptation_spike=b,
    delta_T, tau_ada_inv, tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset), dt=dt)`` is
    ``AdExLIFNode(tau_syn=1/tau_syn_inv, tau_mem=1/tau_mem_inv, r=tau_syn/dt,
    v_leak=v_leak, dt=dt, delta_T=delta_T, tau_w=1/tau_ada_inv, a=a, b=b,
    v_threshold=v_th, v_reset=v_reset, strict_firing=True,
    surrogate_function=SuperSpike(alpha=1.0))`` in spikes, states and gradients (Norse's
    current is ``node.i (1 - k) / k``, ``k = dt tau_syn_inv``; its ``a`` is ``node.w``).

    Args:
        tau_syn, tau_mem, r, v_leak, dt: as :class:`~spikeflow.neurons.CubaLIFNode`
            (time constants ``>= dt``, in the units of ``dt``).
        delta_T: the slope factor of the exponential upswing, > 0 (default 0.5).
        theta_rh: the rheobase threshold of the exponential; ``None`` (default): the
            firing threshold ``v_threshold`` (which then gets the gradient of both).
        tau_w: the adaptation time constant, ``>= dt`` (default 20).
        a: the subthreshold adaptation coupling (default 0.1).
        b: the spike-triggered adaptation jump (default 0.2).
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`;
            ``v_reset`` must be a float (hard reset, default 0).

    Every parameter but ``dt`` may be a tensor broadcastable to the neuron shape (one
    value per neuron or per channel). State: ``v``, the current ``i`` and the adaptation
    ``w`` (``node.i``, ``node.w`` while streaming).

    Raises:
        ConfigurationError: soft reset (``v_reset=None``), ``delta_T <= 0``, a time
            constant below ``dt``, ``dt <= 0``, a non-finite value.
    """

    def __init__(
        self,
        tau_syn: float | Tensor = 2.0,
        tau_mem: float | Tensor = 2.0,
        r: float | Tensor = 1.0,
        v_leak: float | Tensor = 0.0,
        dt: float = 1.0,
        delta_T: float | Tensor = 0.5,
        theta_rh: float | Tensor | None = None,
        tau_w: float | Tensor = 20.0,
        a: float | Tensor = 0.1,
        b: float | Tensor = 0.2,
        **kwargs: object,
    ) -> None:
        super().__init__(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=v_leak, dt=dt, **kwargs)
        owner = type(self).__name__
        if self.v_reset is None:
            raise ConfigurationError(
                f"{owner} needs a hard reset (v_reset a float): the AdEx resets to "
                "v_reset, and a soft reset (v_reset=None) can leave the membrane far above "
                "theta_rh, where the exponential term overflows"
            )
        delta = _check_value("delta_T", delta_T)
        if not bool(torch.all(torch.as_tensor(delta) > 0)):
            raise ConfigurationError(f"{owner}: delta_T must be > 0 everywhere, got {delta_T}")
        values = {
            "delta_T": delta,
            "theta_rh": None if theta_rh is None else _check_value("theta_rh", theta_rh),
            "tau_w": _check_time_constant("tau_w", tau_w, self.dt),
            "a": _check_value("a", a),
            "b": _check_value("b", b),
        }
        set_constants(self, values)

    def declaration(self) -> NeuronDeclaration:
        return declare(_adex_charge, _adex_update, type(self).__name__, charge_returns_aux=True)

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {
            **super().neuron_params(),
            "delta_t": self.delta_T,
            "theta_rh": self.v_threshold if self.theta_rh is None else self.theta_rh,
            "w_decay": self.dt / self.tau_w,
            "a": self.a,
            "b": self.b,
        }

    def initial_values(self) -> dict[str, float]:
        values = {**super().initial_values(), "w": 0.0}
        if not isinstance(self.v_leak, Tensor):
            values["v"] = self.v_leak  # at rest
        return values

    def initial_state(self, like: Tensor) -> dict[str, Tensor]:
        state = super().initial_state(like)
        if isinstance(self.v_leak, Tensor):  # one resting value per neuron
            state["v"] = torch.zeros_like(like) + self.v_leak.to(like)
        return state

    def start_state(self, like: Tensor) -> dict[str, Tensor | float]:
        # Numbers (which the kernels read as scalars) unless v_leak is per neuron.
        if isinstance(self.v_leak, Tensor):
            return self.initial_state(like)
        return dict(self.initial_values())

    @property
    def w(self) -> Tensor | None:
        """The adaptation current carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["w"]

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        for name in ("delta_T", "theta_rh", "tau_w", "a", "b"):
            check_step_shape(type(self).__name__, name, getattr(self, name), x_seq.shape[1:])
        return x_seq

    def extra_repr(self) -> str:
        def show(value: float | Tensor | None) -> str:
            return "v_threshold" if value is None else show_float_or_shape(value)

        return (
            f"delta_T={show(self.delta_T)}, theta_rh={show(self.theta_rh)}, "
            f"tau_w={show(self.tau_w)}, a={show(self.a)}, b={show(self.b)}, " + super().extra_repr()
        )
