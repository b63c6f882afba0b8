"""The adaptive exponential integrate-and-fire neuron with an absolute refractory period
(Norse 1.1's ``LIFAdExRefrac`` / ``LIFAdExRefracCell``).

:class:`~spikeflow.neurons.AdExLIFNode` with the counter of
:mod:`spikeflow.neurons.refractory`: after a spike the membrane is held at ``v_reset``
for ``refractory_steps`` steps, in which it cannot fire; the synaptic current and the
adaptation keep evolving (the adaptation relaxes towards ``a (V_r - v_leak)``)::

    I[t] = I[t-1] + (dt / tau_syn) (X[t] - I[t-1])                    (always)
    refractory = 0:  H[t] = AdEx charge of V[t-1], I[t], W[t-1]
    refractory > 0:  H[t] = V_r, and the neuron cannot fire
    S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + V_r S[t]
    W[t] = W[t-1] + (dt / tau_w) (a (V[t-1] - v_leak) - W[t-1]) + b S[t]
    refractory[t] = refractory_steps after a spike, else max(refractory[t-1] - 1, 0)

A spike at step t makes steps t+1, ..., t+refractory_steps refractory.

**Norse**: the same spikes, membranes, currents, adaptation and counter as
``LIFAdExRefracCell`` (tested) with the mapping of :class:`AdExLIFNode` and
``refractory_steps = rho_reset``, with one difference: Norse adds the adaptation jump
``b`` for the AdEx step's own spike *before* masking it, so on a refractory step whose
unheld membrane would cross the threshold (an input that lifts ``V_r`` over ``θ`` in
one step) Norse's ``a`` still jumps by ``b`` though no spike is emitted; here a
suppressed spike triggers no adaptation. Gradients differ as for
:class:`~spikeflow.neurons.RefractoryCubaLIFNode`: Norse's flow through its counter's
surrogate and its held membrane; here a refractory step passes no gradient to the
membrane and the counter none at all (the gradient of the current and the adaptation
flows on every step).

Declared once, so the reference loop and the fused C and Triton kernels, forward and
backward, come from the same functions.
"""

from __future__ import annotations

from torch import Tensor

from spikeflow.neurons.adex import AdExLIFNode, _adex_charge
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.refractory import (
    _blocked,
    _check_hard_reset,
    _check_refractory_steps,
    _count_down,
    _held,
    _Refractory,
)

__all__ = ["RefractoryAdExLIFNode"]


def _refractory_adex_charge(
    x: Tensor,
    v: Tensor,
    i: Tensor,
    w: Tensor,
    refractory: Tensor,
    *,
    syn_decay: Tensor | float,
    mem_decay: Tensor | float,
    r: Tensor | float,
    v_leak: Tensor | float,
    delta_t: Tensor | float,
    theta_rh: Tensor | float,
    w_decay: Tensor | float,
    a: Tensor | float,
    v_reset: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The AdEx charge, the membrane held at ``v_reset`` while refractory (the current
    and the adaptation's Euler step advance either way)."""
    h, i_new, w_new = _adex_charge(
        x, v, i, w, syn_decay=syn_decay, mem_decay=mem_decay, r=r, v_leak=v_leak,
        delta_t=delta_t, theta_rh=theta_rh, w_decay=w_decay, a=a,
    )  # fmt: skip
    return _held(h, refractory, v_reset), i_new, w_new, refractory


def _refractory_adex_update(
    h: Tensor,
    s: Tensor,
    i: Tensor,
    w: Tensor,
    refractory: Tensor,
    *,
    b: Tensor | float,
    refractory_steps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """After firing: the current as charged, ``W + b S``, the counter counted down."""
    return i, w + b * s, _count_down(s, refractory, refractory_steps)


def _refractory_adex_threshold(
    theta: Tensor | float, i: Tensor, w: Tensor, refractory: Tensor, *, v_reset: float
) -> Tensor:
    """θ, or out of reach of the held membrane while refractory."""
    return _blocked(theta, refractory, v_reset)


class RefractoryAdExLIFNode(_Refractory, AdExLIFNode):
    """:class:`~spikeflow.neurons.AdExLIFNode` with an absolute refractory period (see
    the module docstring)::

        I[t] = I[t-1] + (dt / tau_syn) (X[t] - I[t-1])               (also while refractory)
        refractory = 0:  H[t] = V + (dt / tau_mem) (v_leak - V
                                 + delta_T exp((V - theta_rh) / delta_T) + r I[t] - W)
        refractory > 0:  H[t] = V_r, and the neuron cannot fire
        S[t] = Θ(H[t] - θ),   V[t] = H[t] (1 - S[t]) + V_r S[t]
        W[t] = W + (dt / tau_w) (a (V - v_leak) - W) + b S[t]        (V, W of step t-1)
        refractory[t] = refractory_steps after a spike, else max(refractory[t-1] - 1, 0)

    With ``refractory_steps=0`` it is ``AdExLIFNode`` exactly.

    **Norse**: ``LIFAdExRefracCell(LIFAdExRefracParameters(LIFAdExParameters(
    adaptation_current=a, adaptation_spike=b, delta_T, tau_ada_inv, tau_syn_inv,
    tau_mem_inv, v_leak, v_th, v_reset), rho_reset=R), dt=dt)`` is
    ``RefractoryAdExLIFNode(R, <AdExLIFNode's Norse arguments>)`` in spikes and states
    (``R`` an integer), except where Norse's adaptation jumps for a spike it suppresses
    (module docstring); gradients differ as for
    :class:`~spikeflow.neurons.RefractoryCubaLIFNode`.

    Args:
        refractory_steps: the length of the refractory period in steps, an integer
            ``>= 0`` (required); Norse's ``rho_reset``.
        tau_syn, tau_mem, r, v_leak, dt, delta_T, theta_rh, tau_w, a, b: as
            :class:`~spikeflow.neurons.AdExLIFNode` (the same defaults).
        **kwargs: the arguments of :class:`~spikeflow.neurons.base.BaseNode`;
            ``v_reset`` must be a float (hard reset, default 0): the value held.

    State: ``v`` (starting at ``v_leak``), the current ``i``, the adaptation ``w`` and
    ``refractory``, the refractory steps left (``node.i``, ``node.w``,
    ``node.refractory`` while streaming), the last three starting at 0.

    Raises:
        ConfigurationError: ``refractory_steps`` not an integer ``>= 0`` (a float or a
            bool included), soft reset (``v_reset=None``), or a bad AdEx argument.
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
        delta_T: float | Tensor = 0.5,
        theta_rh: float | Tensor | None = None,
        tau_w: float | Tensor = 20.0,
        a: float | Tensor = 0.1,
        b: float | Tensor = 0.2,
        **kwargs: object,
    ) -> None:
        if kwargs.get("v_reset", 0.0) is None:  # named for the refractory period, not AdEx's
            owner = type(self).__name__
            _check_refractory_steps(owner, refractory_steps)
            _check_hard_reset(owner, None)
        super().__init__(
            refractory_steps, tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=v_leak, dt=dt,
            delta_T=delta_T, theta_rh=theta_rh, tau_w=tau_w, a=a, b=b, **kwargs,
        )  # fmt: skip

    def declaration(self) -> NeuronDeclaration:
        return declare(
            _refractory_adex_charge, _refractory_adex_update, type(self).__name__,
            charge_returns_aux=True, threshold=_refractory_adex_threshold,
        )  # fmt: skip

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {**super().neuron_params(), **self._refractory_params()}
