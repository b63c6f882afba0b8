"""The equations of snnTorch's ``Leaky``, ``Synaptic`` and ``Lapicque`` as spikeflow
declarations (:mod:`spikeflow.neurons.declaration`), one per configuration, for
:mod:`spikeflow.neurons.snntorch_style` (whose docstring gives the equations).

Each configuration's charge is built once at import (a closure over its flags), so a
declaration picks an existing function; the kernels key on it.

``inhibition=True`` declares a fire rule of its own, :func:`inhibited_spikes`: an argmax
across the neurons of each sample, which couples them and so runs on the reference loop
only (the fused kernels step each neuron alone).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = [
    "inhibited_spikes",
    "lapicque_declaration",
    "leaky_declaration",
    "synaptic_declaration",
]


# -- the equations ---------------------------------------------------------------------------


def _pending(v: Tensor, theta: Tensor | float, strict: bool) -> Tensor:
    """snnTorch's ``mem_reset``: 1 where the membrane ``v`` is over the threshold, as the
    fire rule decides it (``v > θ``, or ``v >= θ`` without ``strict``); no gradient."""
    over = v > theta if strict else v >= theta
    return over.to(v.dtype)


def _leaky_membrane(
    x: Tensor,
    v: Tensor,
    reset: Tensor,
    beta: Tensor | float,
    theta: Tensor | float,
    mechanism: str,
    clear_input: bool,
) -> Tensor:
    """Leaky's charge with the pending reset ``reset`` (Python flags select the rule)."""
    if mechanism == "subtract":
        return beta * v + x - reset * theta
    if clear_input:  # RLeaky's "zero": the whole step cleared
        return (beta * v + x) * (1.0 - reset)
    return beta * ((1.0 - reset) * v) + x


def _leaky_none(x: Tensor, v: Tensor, *, beta: Tensor | float) -> Tensor:
    """Leaky with ``reset_mechanism="none"``: ``U = β U + X``."""
    return beta * v + x


def _synaptic_membrane(
    x: Tensor,
    v: Tensor,
    syn: Tensor,
    reset: Tensor | None,
    alpha: Tensor | float,
    beta: Tensor | float,
    theta: Tensor | float | None,
    mechanism: str,
) -> tuple[Tensor, Tensor]:
    """Synaptic's charge: the membrane and the new synaptic current."""
    current = alpha * syn + x
    mem = beta * v + current
    if mechanism == "subtract":
        mem = mem - reset * theta
    elif mechanism == "zero":
        mem = mem - mem * reset
    return mem, current


def _synaptic_none(
    x: Tensor, v: Tensor, syn: Tensor, *, alpha: Tensor | float, beta: Tensor | float
) -> tuple[Tensor, Tensor]:
    """Synaptic with ``reset_mechanism="none"``."""
    return _synaptic_membrane(x, v, syn, None, alpha, beta, None, "none")


def _lapicque_membrane(
    x: Tensor,
    v: Tensor,
    reset: Tensor | None,
    keep: Tensor | float,
    gain: Tensor | float,
    theta: Tensor | float | None,
    mechanism: str,
) -> Tensor:
    """Lapicque's charge: ``U = k R X + (1 - k) U`` (``gain = k R``, ``keep = 1 - k``)."""
    u = x * gain + keep * v
    if mechanism == "subtract":
        return u - reset * theta
    if mechanism == "zero":
        return u - reset * u
    return u


def _lapicque_none(
    x: Tensor, v: Tensor, *, keep: Tensor | float, gain: Tensor | float
) -> Tensor:  # fmt: skip
    """Lapicque with ``reset_mechanism="none"``."""
    return _lapicque_membrane(x, v, None, keep, gain, None, "none")


def _keep_charged(h: Tensor, s: Tensor, theta: Tensor | float) -> Tensor:
    """The delayed reset: the membrane after firing is ``U`` itself."""
    return h


def _keep_charged_syn(h: Tensor, s: Tensor, theta: Tensor | float, syn: Tensor) -> Tensor:
    """As :func:`_keep_charged`, with the synaptic current as state."""
    return h


def _subtract_now(h: Tensor, s: Tensor, theta: Tensor | float, reset: Tensor) -> Tensor:
    """``reset_delay=False``, ``"subtract"``: ``V = U - (S - R) θ``."""
    return h - (s - reset) * theta


def _zero_now(h: Tensor, s: Tensor, theta: Tensor | float, reset: Tensor) -> Tensor:
    """``reset_delay=False``, ``"zero"``: ``V = U - (S - R) U``."""
    return h - (s - reset) * h


def _subtract_now_syn(
    h: Tensor, s: Tensor, theta: Tensor | float, syn: Tensor, reset: Tensor
) -> Tensor:
    """As :func:`_subtract_now`, with the synaptic current as state."""
    return h - (s - reset) * theta


def _zero_now_syn(
    h: Tensor, s: Tensor, theta: Tensor | float, syn: Tensor, reset: Tensor
) -> Tensor:
    """As :func:`_zero_now`, with the synaptic current as state."""
    return h - (s - reset) * h


def inhibited_spikes(h: Tensor, theta: Tensor | float, spike: Callable[[Tensor], Tensor]) -> Tensor:
    """snnTorch's ``fire_inhibition``: of each sample (row of the ``[B, N]`` step) only
    the neuron with the largest ``h - θ`` may fire (the first on a tie, as
    ``torch.argmax``), and fires if it is over the threshold; the others output 0. The
    winner's spike carries its surrogate gradient, the choice none. The reset is not
    inhibited: the pending reset of the next step is every neuron's ``Θ(U - θ)``, as
    snnTorch's ``mem_reset`` (the charges read it from the membrane)."""
    u = h - theta
    spikes = spike(u)
    winner = torch.argmax(u, dim=1, keepdim=True)
    return spikes * torch.zeros_like(spikes).scatter(1, winner, 1.0)


def _inhibited_reset(
    h: Tensor, theta: Tensor | float, spike: Callable[[Tensor], Tensor], reset: Tensor
) -> Tensor:
    """:func:`inhibited_spikes` with the pending reset as state."""
    return inhibited_spikes(h, theta, spike)


def _inhibited_syn(
    h: Tensor, theta: Tensor | float, spike: Callable[[Tensor], Tensor], syn: Tensor
) -> Tensor:
    """:func:`inhibited_spikes` with the synaptic current as state."""
    return inhibited_spikes(h, theta, spike)


def _inhibited_syn_reset(
    h: Tensor,
    theta: Tensor | float,
    spike: Callable[[Tensor], Tensor],
    syn: Tensor,
    reset: Tensor,
) -> Tensor:
    """:func:`inhibited_spikes` with the synaptic current and pending reset as state."""
    return inhibited_spikes(h, theta, spike)


#: The inhibited fire rule for each set of auxiliary states.
_INHIBITED = {
    (): inhibited_spikes,
    ("reset",): _inhibited_reset,
    ("syn",): _inhibited_syn,
    ("syn", "reset"): _inhibited_syn_reset,
}


def _declared(
    charge: Callable,
    label: str,
    rule: Callable,
    inhibition: bool,
    returns_aux: bool,
    aux: tuple[str, ...],
) -> NeuronDeclaration:
    """The declaration, with the inhibited fire rule when ``inhibition``."""
    if not inhibition:
        return declare(charge, None, label, charge_returns_aux=returns_aux, reset_membrane=rule)
    return declare(
        charge, None, label[:-1] + ", inhibition=True)", charge_returns_aux=returns_aux,
        reset_membrane=rule, fire=_INHIBITED[aux],
    )  # fmt: skip


# Each configuration's charge is a closure over its flags, built once here at import: the
# declaration then picks an existing function (under torch.compile too, where building
# one while Dynamo traces would fail), and the kernels key on it.


def _leaky_charge(mechanism: str, reset_delay: bool, strict: bool, clear_input: bool) -> Callable:
    """Leaky's charge for ``"subtract"`` or ``"zero"`` (``"none"``: :func:`_leaky_none`)."""
    if reset_delay:

        def charge(x: Tensor, v: Tensor, *, beta: Tensor | float, theta: Tensor | float) -> Tensor:
            reset = _pending(v, theta, strict)
            return _leaky_membrane(x, v, reset, beta, theta, mechanism, clear_input)

        return charge

    def charge_now(
        x: Tensor, v: Tensor, reset: Tensor, *, beta: Tensor | float, theta: Tensor | float
    ) -> tuple[Tensor, Tensor]:
        pending = _pending(v, theta, strict)
        return _leaky_membrane(x, v, pending, beta, theta, mechanism, clear_input), pending

    return charge_now


def _synaptic_charge(mechanism: str, reset_delay: bool, strict: bool) -> Callable:
    """Synaptic's charge for ``"subtract"`` or ``"zero"``."""
    if reset_delay:

        def charge(
            x: Tensor,
            v: Tensor,
            syn: Tensor,
            *,
            alpha: Tensor | float,
            beta: Tensor | float,
            theta: Tensor | float,
        ) -> tuple[Tensor, Tensor]:
            reset = _pending(v, theta, strict)
            return _synaptic_membrane(x, v, syn, reset, alpha, beta, theta, mechanism)

        return charge

    def charge_now(
        x: Tensor,
        v: Tensor,
        syn: Tensor,
        reset: Tensor,
        *,
        alpha: Tensor | float,
        beta: Tensor | float,
        theta: Tensor | float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        pending = _pending(v, theta, strict)
        mem, current = _synaptic_membrane(x, v, syn, pending, alpha, beta, theta, mechanism)
        return mem, current, pending

    return charge_now


def _lapicque_charge(mechanism: str, strict: bool) -> Callable:
    """Lapicque's charge for ``"subtract"`` or ``"zero"`` (always the delayed reset)."""

    def charge(
        x: Tensor,
        v: Tensor,
        *,
        keep: Tensor | float,
        gain: Tensor | float,
        theta: Tensor | float,
    ) -> Tensor:
        reset = _pending(v, theta, strict)
        return _lapicque_membrane(x, v, reset, keep, gain, theta, mechanism)

    return charge


_RESETS = ("subtract", "zero")
_FLAGS = (True, False)
_LEAKY = {
    (m, d, s, c): _leaky_charge(m, d, s, c)
    for m in _RESETS for d in _FLAGS for s in _FLAGS for c in _FLAGS
    if m == "zero" or not c
}  # fmt: skip
_SYNAPTIC = {(m, d, s): _synaptic_charge(m, d, s) for m in _RESETS for d in _FLAGS for s in _FLAGS}
_LAPICQUE = {(m, s): _lapicque_charge(m, s) for m in _RESETS for s in _FLAGS}


def _label(model: str, mechanism: str, reset_delay: bool, strict: bool, extra: str = "") -> str:
    delay = "" if reset_delay else ", reset_delay=False"
    fire = "" if strict else ", strict_firing=False"
    return f"{model}({mechanism}{delay}{fire}{extra})"


def leaky_declaration(
    mechanism: str, reset_delay: bool, strict: bool, clear_input: bool, inhibition: bool = False
) -> NeuronDeclaration:
    """Leaky's equations for one configuration."""
    clear_input = clear_input and mechanism == "zero"
    extra = ", zero_clears_input=True" if clear_input else ""
    label = _label("LeakyNode", mechanism, reset_delay, strict, extra)
    if mechanism == "none":
        return _declared(_leaky_none, label, _keep_charged, inhibition, False, ())
    charge = _LEAKY[(mechanism, reset_delay, strict, clear_input)]
    if reset_delay:
        return _declared(charge, label, _keep_charged, inhibition, False, ())
    rule = _subtract_now if mechanism == "subtract" else _zero_now
    return _declared(charge, label, rule, inhibition, True, ("reset",))


def synaptic_declaration(
    mechanism: str, reset_delay: bool, strict: bool, inhibition: bool = False
) -> NeuronDeclaration:
    """Synaptic's equations for one configuration."""
    label = _label("SynapticNode", mechanism, reset_delay, strict)
    aux: tuple[str, ...] = ("syn",)
    if mechanism == "none":
        charge, rule = _synaptic_none, _keep_charged_syn
    else:
        charge = _SYNAPTIC[(mechanism, reset_delay, strict)]
        if reset_delay:
            rule = _keep_charged_syn
        else:
            rule = _subtract_now_syn if mechanism == "subtract" else _zero_now_syn
            aux = ("syn", "reset")
    return _declared(charge, label, rule, inhibition, True, aux)


def lapicque_declaration(
    mechanism: str, strict: bool, inhibition: bool = False
) -> NeuronDeclaration:
    """Lapicque's equations for one configuration."""
    label = _label("LapicqueNode", mechanism, True, strict)
    charge = _lapicque_none if mechanism == "none" else _LAPICQUE[(mechanism, strict)]
    return _declared(charge, label, _keep_charged, inhibition, False, ())
