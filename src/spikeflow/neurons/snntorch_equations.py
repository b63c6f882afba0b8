"""The equations of snnTorch's ``Leaky``, ``Synaptic`` and ``Lapicque`` as spikeflow
declarations (:mod:`spikeflow.neurons.declaration`), one per configuration, for
:mod:`spikeflow.neurons.snntorch_style` (whose docstring gives the equations).

Each configuration's charge is built once at import (a closure over its flags), so a
declaration picks an existing function; the kernels key on it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from spikeflow.neurons.declaration import NeuronDeclaration, declare

__all__ = ["lapicque_declaration", "leaky_declaration", "synaptic_declaration"]


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
    mechanism: str, reset_delay: bool, strict: bool, clear_input: bool
) -> NeuronDeclaration:
    """Leaky's equations for one configuration."""
    clear_input = clear_input and mechanism == "zero"
    extra = ", zero_clears_input=True" if clear_input else ""
    label = _label("LeakyNode", mechanism, reset_delay, strict, extra)
    if mechanism == "none":
        return declare(_leaky_none, None, label, reset_membrane=_keep_charged)
    charge = _LEAKY[(mechanism, reset_delay, strict, clear_input)]
    if reset_delay:
        return declare(charge, None, label, reset_membrane=_keep_charged)
    rule = _subtract_now if mechanism == "subtract" else _zero_now
    return declare(charge, None, label, charge_returns_aux=True, reset_membrane=rule)


def synaptic_declaration(mechanism: str, reset_delay: bool, strict: bool) -> NeuronDeclaration:
    """Synaptic's equations for one configuration."""
    label = _label("SynapticNode", mechanism, reset_delay, strict)
    if mechanism == "none":
        charge, rule = _synaptic_none, _keep_charged_syn
    else:
        charge = _SYNAPTIC[(mechanism, reset_delay, strict)]
        if reset_delay:
            rule = _keep_charged_syn
        else:
            rule = _subtract_now_syn if mechanism == "subtract" else _zero_now_syn
    return declare(charge, None, label, charge_returns_aux=True, reset_membrane=rule)


def lapicque_declaration(mechanism: str, strict: bool) -> NeuronDeclaration:
    """Lapicque's equations for one configuration."""
    label = _label("LapicqueNode", mechanism, True, strict)
    charge = _lapicque_none if mechanism == "none" else _LAPICQUE[(mechanism, strict)]
    return declare(charge, None, label, reset_membrane=_keep_charged)
