"""Neurons with an absolute refractory period: after a spike, the membrane is held at
``v_reset`` for ``refractory_steps`` steps, in which it integrates no input and cannot
fire.

Refractoriness is an auxiliary state ``refractory``, the number of refractory steps
left, declared like every other state variable::

    refractory > 0:  H[t] = V_r              held; the input is not integrated
                     θ_eff[t] = 2|V_r| + 1   out of reach: S[t] = 0
    refractory = 0:  H[t] = charge(X[t], V[t-1]),   θ_eff[t] = θ     (the plain neuron)
    S[t] = Θ(H[t] - θ_eff[t]),   V[t] = H[t] (1 - S[t]) + V_r S[t]
    refractory[t] = refractory_steps        where S[t] = 1
                    max(refractory[t-1] - 1, 0)   elsewhere

so a spike at step t makes steps t+1, ..., t+refractory_steps refractory, and the
neuron may fire again at step t+refractory_steps+1. This is Norse's ``LIFRefracCell``
(``rho_reset = refractory_steps``; tested), and the idea of Lava's ``LIFRefractory`` and
Brian2's ``refractory=`` with the membrane clamped (not compared), counted in steps.

Gradients: the counter is discrete and carries none (its update is detached). On a
refractory step the held membrane and the blocked threshold are constants, so that step
passes no gradient to the input, the previous membrane, the threshold or the
parameters (a spike that cannot happen has no surrogate gradient either); on the other
steps the gradients are the plain neuron's. With ``refractory_steps=0`` the counter
stays 0 and the neuron is the plain one, spikes, states and gradients alike.

The equations are declared once (charge, the counter's ``update`` and the blocked
``threshold``), so the reference loop and the fused C and Triton kernels, forward and
backward, come from the same functions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.neurons.current import CubaLIFNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.lif import LIFNode, _lif_decay_input, _lif_no_decay_input

__all__ = ["RefractoryCubaLIFNode", "RefractoryLIFNode"]


# -- the declaration's shared pieces ---------------------------------------------------


def _held(h: Tensor, refractory: Tensor, v_reset: Tensor | float) -> Tensor:
    """``H``, or ``v_reset`` (a constant: no gradient) where the neuron is refractory."""
    return torch.where(refractory > 0, v_reset, h)


def _blocked(theta: Tensor | float, refractory: Tensor, v_reset: Tensor | float) -> Tensor:
    """θ, or a constant above the held membrane ``v_reset`` where the neuron is
    refractory: ``2|v_reset| + 1``, which exceeds ``v_reset`` in any precision (``v_reset
    + 1`` rounds to ``v_reset`` for ``|v_reset| >= 2**24`` in float32), so the refractory
    step cannot fire and its surrogate sees a constant ``H - θ_eff`` (no gradient)."""
    out_of_reach = torch.ones_like(refractory) * (2.0 * abs(v_reset) + 1.0)  # the state's dtype
    return torch.where(refractory > 0, out_of_reach, theta)


def _count_down(s: Tensor, refractory: Tensor, refractory_steps: Tensor | float) -> Tensor:
    """The next counter: ``refractory_steps`` after a spike, else one step fewer (down to 0).

    A spike is ``S >= 0.5``: ``S = 1`` for a spiking surrogate, and ``H >= θ`` for a
    smooth one (``spiking=False``, whose primitive is 0.5 at ``H = θ``). Detached: the
    counter is discrete and carries no gradient."""
    return torch.where(s >= 0.5, refractory_steps, torch.relu(refractory - 1.0)).detach()


def _refractory_lif_decay_input(
    x: Tensor, v: Tensor, refractory: Tensor, *, decay: Tensor | float, v_reset: float
) -> Tensor:
    """LIF with ``decay_input=True``, held at ``v_reset`` while refractory."""
    return _held(_lif_decay_input(x, v, decay=decay, v_rest=v_reset), refractory, v_reset)


def _refractory_lif_no_decay_input(
    x: Tensor, v: Tensor, refractory: Tensor, *, decay: Tensor | float, v_reset: float
) -> Tensor:
    """LIF with ``decay_input=False``, held at ``v_reset`` while refractory."""
    return _held(_lif_no_decay_input(x, v, decay=decay, v_rest=v_reset), refractory, v_reset)


def _refractory_lif_update(
    h: Tensor, s: Tensor, refractory: Tensor, *, refractory_steps: float
) -> Tensor:
    """The LIF's ``update``: the counter counted down."""
    return _count_down(s, refractory, refractory_steps)


def _refractory_lif_threshold(
    theta: Tensor | float, refractory: Tensor, *, v_reset: float
) -> Tensor:
    """The LIF's ``threshold``: θ, or out of reach while refractory."""
    return _blocked(theta, refractory, v_reset)


# -- checks ------------------------------------------------------------------------------


def _check_refractory_steps(owner: str, value: object) -> int:
    """An integer >= 0 (a Python or numpy integer; not a float, not a bool)."""
    return check_int(f"{owner}: refractory_steps", value, 0)


def _check_hard_reset(owner: str, v_reset: float | None) -> None:
    if v_reset is None:
        raise ConfigurationError(
            f"{owner} needs a hard reset (v_reset a float): during the refractory period "
            "the membrane is held at v_reset, and soft reset (v_reset=None) has no reset "
            "value to hold; use LIFNode/CubaLIFNode for soft reset without refractoriness"
        )


def _check_counter_dtype(owner: str, refractory_steps: int, dtype: torch.dtype) -> None:
    """The counter runs in the input's dtype: it must hold every integer up to
    ``refractory_steps`` exactly (2048 in float16, 256 in bfloat16), or counting down
    would stall."""
    exact = round(2.0 / torch.finfo(dtype).eps)
    if refractory_steps > exact:
        raise DTypeError(
            f"{owner}: refractory_steps={refractory_steps} cannot be counted in {dtype} "
            f"(integers are exact only up to {exact}); give the neuron a wider input "
            "(float32: 2**24, float64)"
        )


# -- the neurons ---------------------------------------------------------------------------


class _Refractory:
    """What the refractory neurons add to their base neuron: the period's checks, the
    charge's refractory parameters, the counter's start value, its reading while
    streaming, the input-dtype check and the repr. Listed before the base class, so
    ``super()`` reaches the neuron's own methods."""

    refractory_steps: int
    v_reset: float

    def __init__(self, refractory_steps: int, **kwargs: object) -> None:
        """Check ``refractory_steps``, build the base neuron from ``kwargs``, then
        require its hard reset (the value the membrane is held at)."""
        owner = type(self).__name__
        steps = _check_refractory_steps(owner, refractory_steps)
        super().__init__(**kwargs)  # type: ignore[call-arg]
        _check_hard_reset(owner, self.v_reset)
        self.refractory_steps = steps

    def _refractory_params(self) -> dict[str, float]:
        """What the refractory charge and update read: the value held, the period."""
        return {"v_reset": self.v_reset, "refractory_steps": float(self.refractory_steps)}

    def initial_values(self) -> dict[str, float]:
        return {**super().initial_values(), "refractory": 0.0}  # type: ignore[misc]

    @property
    def refractory(self) -> Tensor | None:
        """The refractory steps left, carried to the next call (only while streaming)."""
        state = self.state  # type: ignore[attr-defined]
        return None if state is None else state["refractory"]

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)  # type: ignore[misc]
        _check_counter_dtype(type(self).__name__, self.refractory_steps, x_seq.dtype)
        return x_seq

    def extra_repr(self) -> str:
        return f"refractory_steps={self.refractory_steps}, " + super().extra_repr()  # type: ignore[misc]


class RefractoryLIFNode(_Refractory, LIFNode):
    """LIF with an absolute refractory period (see the module docstring)::

        refractory = 0:  H[t] = V + (X - (V - V_r)) / tau     (decay_input=True)
                         H[t] = V - (V - V_r) / tau + X       (decay_input=False)
        refractory > 0:  H[t] = V_r, and the neuron cannot fire
        S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + V_r S[t]
        refractory[t] = refractory_steps after a spike, else max(refractory[t-1] - 1, 0)

    After a spike the membrane stays at ``v_reset`` for ``refractory_steps`` steps,
    integrating no input and firing no spike, whatever the input; then it integrates
    from ``v_reset`` again. ``tau``, ``decay_input`` and the other arguments are
    :class:`~spikeflow.neurons.LIFNode`'s (SpikingJelly's conventions); with
    ``refractory_steps=0`` it is ``LIFNode`` exactly. A refractory step passes no
    gradient (the held membrane is a constant); the counter carries none.

    Args:
        refractory_steps: the length of the refractory period in steps, an integer
            ``>= 0`` (required: there is no field default).
        tau: membrane time constant, > 1 (default 2): a number or a tensor of them
            (one per neuron or channel), as :class:`~spikeflow.neurons.LIFNode`'s.
        decay_input: whether the input is divided by ``tau`` as well (default True).
        **kwargs: ``learnable_tau`` (as :class:`~spikeflow.neurons.LIFNode`'s) and the
            arguments of :class:`~spikeflow.neurons.base.BaseNode`;
            ``v_reset`` must be a float (hard reset, default 0): the value held.

    State: ``v`` and ``refractory``, the refractory steps left (``node.refractory``
    while streaming), both starting at rest (``v_reset`` and 0).

    Raises:
        ConfigurationError: ``refractory_steps`` not an integer ``>= 0`` (a float or a
            bool included), soft reset (``v_reset=None``), or a bad LIF argument.
        DTypeError: an input whose dtype cannot count to ``refractory_steps``.
    """

    def __init__(
        self,
        refractory_steps: int,
        tau: float | Tensor = 2.0,
        decay_input: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(refractory_steps, tau=tau, decay_input=decay_input, **kwargs)

    def declaration(self) -> NeuronDeclaration:
        charge = _refractory_lif_decay_input if self.decay_input else _refractory_lif_no_decay_input
        name = f"{type(self).__name__}(decay_input={self.decay_input})"
        return declare(charge, _refractory_lif_update, name, threshold=_refractory_lif_threshold)

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"decay": self.decay(), **self._refractory_params()}


class RefractoryCubaLIFNode(_Refractory, CubaLIFNode):
    """Current-based LIF (:class:`~spikeflow.neurons.CubaLIFNode`) with an absolute
    refractory period::

        I[t] = I[t-1] + (dt / tau_syn) (X[t] - I[t-1])         (also while refractory)
        refractory = 0:  H[t] = V + (dt / tau_mem) (v_leak - V + r I[t])
        refractory > 0:  H[t] = V_r, and the neuron cannot fire
        S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + V_r S[t]
        refractory[t] = refractory_steps after a spike, else max(refractory[t-1] - 1, 0)

    The synaptic current keeps filtering the input during the refractory period (only
    the membrane is held), as in Norse's ``LIFRefracCell``.

    **Norse**: ``LIFRefracCell(LIFRefracParameters(LIFParameters(tau_syn_inv,
    tau_mem_inv, v_leak, v_th, v_reset), rho_reset=R), dt=dt)`` is
    ``RefractoryCubaLIFNode(R, tau_syn=1/tau_syn_inv, tau_mem=1/tau_mem_inv,
    r=tau_syn/dt, v_leak=v_leak, dt=dt, v_threshold=v_th, v_reset=v_reset,
    strict_firing=True)`` in spikes and states: Norse adds the input to its current
    unscaled, which is this current times ``r = tau_syn/dt``. Norse starts its membrane
    at ``v_leak``, spikeflow at ``v_reset`` (the same when they are equal, as in Norse's
    defaults). Its gradients differ: they pass through the counter's surrogate, and
    through the held membrane; these do not.

    Args:
        refractory_steps: the length of the refractory period in steps, an integer
            ``>= 0`` (required); Norse's ``rho_reset``.
        tau_syn, tau_mem, r, v_leak, dt: as :class:`~spikeflow.neurons.CubaLIFNode`.
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`;
            ``v_reset`` must be a float (hard reset, default 0): the value held.

    State: ``v``, the current ``i`` and ``refractory``, the refractory steps left
    (``node.i``, ``node.refractory`` while streaming), starting at ``v_reset``, 0, 0.

    Raises:
        ConfigurationError: ``refractory_steps`` not an integer ``>= 0`` (a float or a
            bool included), soft reset (``v_reset=None``), or a bad CUBA argument.
        DTypeError: an input whose dtype cannot count to ``refractory_steps``.
    """

    def __init__(
        self,
        refractory_steps: int,
        tau_syn: float | Tensor = 2.0,
        tau_mem: float | Tensor = 2.0,
        r: float | Tensor = 1.0,
        v_leak: float | Tensor = 0.0,
        dt: float = 1.0,
        **kwargs: object,
    ) -> None:
        super().__init__(
            refractory_steps, tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=v_leak, dt=dt, **kwargs
        )

    @staticmethod
    def charge(  # type: ignore[override]
        x: Tensor,
        v: Tensor,
        i: Tensor,
        refractory: Tensor,
        *,
        syn_decay: Tensor | float,
        mem_decay: Tensor | float,
        r: Tensor | float,
        v_leak: Tensor | float,
        v_reset: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``CubaLIFNode``'s current and charge, the charge held at ``v_reset`` while
        refractory (the current is advanced either way)."""
        h, i_new = CubaLIFNode.charge(
            x, v, i, syn_decay=syn_decay, mem_decay=mem_decay, r=r, v_leak=v_leak
        )
        return _held(h, refractory, v_reset), i_new, refractory

    @staticmethod
    def update(
        h: Tensor, s: Tensor, i: Tensor, refractory: Tensor, *, refractory_steps: float
    ) -> tuple[Tensor, Tensor]:
        """After firing: the current as charged, the counter counted down."""
        return i, _count_down(s, refractory, refractory_steps)

    @staticmethod
    def threshold(
        theta: Tensor | float, i: Tensor, refractory: Tensor, *, v_reset: float
    ) -> Tensor:
        """θ, or out of reach of the held membrane while refractory."""
        return _blocked(theta, refractory, v_reset)

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {**super().neuron_params(), **self._refractory_params()}
