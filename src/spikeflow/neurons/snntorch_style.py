"""snnTorch's default neurons (snnTorch 1.0): ``Leaky``, ``Synaptic`` and ``Lapicque``.

Each is declared once (:mod:`spikeflow.neurons.declaration`), so it runs on the
reference loop and on the fused C and Triton kernels, forward and backward, like any
other spikeflow neuron; a snnTorch script ports by changing the constructor and
dropping its time loop. The equations are snnTorch's, read from its code.

snnTorch keeps the membrane it returns, ``U``, and applies a spike's reset at the
*next* step, from ``R[t] = Θ(U[t-1] - θ)`` (its ``mem_reset``, with no gradient)::

    Leaky       U[t] = β U[t-1] + X[t] - R θ              ("subtract", the default)
                U[t] = β (1 - R) U[t-1] + X[t]            ("zero")
                U[t] = β U[t-1] + X[t]                    ("none")
    Synaptic    I[t] = α I[t-1] + X[t]
                U[t] = β U[t-1] + I[t] - R θ              ("subtract")
                U[t] = (β U[t-1] + I[t]) (1 - R)          ("zero": I is kept)
    Lapicque    U[t] = (1 - k) U[t-1] + k R_m X[t] - R θ  ("subtract", k = dt / (R_m C))
                U[t] = ((1 - k) U[t-1] + k R_m X[t]) (1 - R)  ("zero")
    S[t] = Θ(U[t] - θ)        (fires on U > θ; its surrogate's gradient backward)

with ``α`` and ``β`` clamped to ``[0, 1]`` where used. The subtracted θ does not decay,
and Leaky's ``"zero"`` clears the old membrane but keeps the step's input where
Synaptic's and Lapicque's clear both.

``reset_delay=False`` (Leaky and Synaptic) resets at the spiking step instead: the
membrane kept is ``V[t] = U[t] - (S[t] - R[t]) θ`` (``"subtract"``) or
``U[t] (1 - S[t] + R[t])`` (``"zero"``), where ``U[t]`` is charged as above from
``V[t-1]`` and ``R[t] = Θ(V[t-1] - θ)`` (snnTorch's "avoid double reset", which is 0
unless the membrane after a reset is still over the threshold). The spike in that
reset carries its surrogate gradient (snnTorch does not detach it).

Declared with the pending reset recomputed in the charge from the membrane it reads
(no state for it), the reset of the spiking step in ``reset_membrane`` (``U`` kept as
it is with the default delayed reset, so that ``v_seq`` is snnTorch's ``mem``), and
``R[t]`` as a state ``reset`` when ``reset_delay=False`` (the reset rule needs it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.neurons.base import BaseNode, check_step_shape
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.surrogate import ATan, Surrogate

__all__ = ["RESET_MECHANISMS", "LapicqueNode", "LeakyNode", "SynapticNode"]

#: snnTorch's reset mechanisms, in the order of its ``reset_mechanism_val``.
RESET_MECHANISMS = ("subtract", "zero", "none")


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


def _leaky_declaration(
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


def _synaptic_declaration(mechanism: str, reset_delay: bool, strict: bool) -> NeuronDeclaration:
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


def _lapicque_declaration(mechanism: str, strict: bool) -> NeuronDeclaration:
    """Lapicque's equations for one configuration."""
    label = _label("LapicqueNode", mechanism, True, strict)
    charge = _lapicque_none if mechanism == "none" else _LAPICQUE[(mechanism, strict)]
    return declare(charge, None, label, reset_membrane=_keep_charged)


# -- checks ----------------------------------------------------------------------------------


def snntorch_factor(
    owner: str, name: str, value: object, low: float | None = None, high: float | None = None
) -> Tensor:
    """A decay (or other) factor as a floating tensor: a Python number becomes a scalar of
    the default dtype, as in snnTorch; a tensor keeps its dtype and shape. Checked
    finite and, where given, within ``[low, high]``."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise DTypeError(f"{owner}: {name} must be a floating-point tensor, got {value.dtype}")
        tensor = value.detach().clone()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{owner}: {name} must be a float or a tensor, got {value!r}")
    else:
        tensor = torch.tensor(float(value))
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigurationError(f"{owner}: {name} must be finite, got {value}")
    below = low is not None and bool((tensor < low).any())
    above = high is not None and bool((tensor > high).any())
    if below or above:
        raise ConfigurationError(
            f"{owner}: {name} must be in [{low:g}, {high:g}] (snnTorch clamps it there when "
            f"used), got {value}"
        )
    return tensor


def _show(value: float | Tensor) -> str:
    if isinstance(value, Tensor):
        return f"{value.item():g}" if value.dim() == 0 else f"tensor{tuple(value.shape)}"
    return f"{value:g}"


# -- the modules -----------------------------------------------------------------------------


class _SnnTorchNode(BaseNode):
    """What snnTorch's ``SpikingNeuron`` gives its neurons: the threshold (learnable), the
    reset mechanism, strict firing and its ``atan()`` surrogate by default, graded spikes,
    and loading a snnTorch ``state_dict`` by name. Subclasses declare the equations."""

    #: The decay factors the subclass keeps (tensors, checked against the step shape).
    _factors: tuple[str, ...] = ()

    def __init__(
        self,
        threshold: float | Tensor,
        reset_mechanism: str,
        learn_threshold: bool,
        surrogate_function: Surrogate | None,
        strict_firing: bool,
        graded_spikes_factor: float | Tensor,
        learn_graded_spikes_factor: bool,
        step_mode: StepMode,
        backend: str,
        store_v_seq: bool,
    ) -> None:
        owner = type(self).__name__
        super().__init__(
            v_threshold=threshold,
            v_reset=None,
            surrogate_function=ATan() if surrogate_function is None else surrogate_function,
            detach_reset=False,
            strict_firing=strict_firing,
            learnable_threshold=check_flag(owner, "learn_threshold", learn_threshold),
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
        )
        if reset_mechanism not in RESET_MECHANISMS:
            raise ConfigurationError(
                f"{owner}: reset_mechanism must be one of {RESET_MECHANISMS} (snnTorch's), "
                f"got {reset_mechanism!r}"
            )
        self.reset_mechanism = reset_mechanism
        learn = check_flag(owner, "learn_graded_spikes_factor", learn_graded_spikes_factor)
        if learn or isinstance(graded_spikes_factor, Tensor):
            factor = snntorch_factor(owner, "graded_spikes_factor", graded_spikes_factor)
            if learn:
                self.graded_spikes_factor: float | Tensor = nn.Parameter(factor)
            else:
                self.register_buffer("graded_spikes_factor", factor)
        else:
            self.graded_spikes_factor = float(
                snntorch_factor(owner, "graded_spikes_factor", graded_spikes_factor)
            )

    def _set_factor(self, name: str, value: object, learn: bool) -> None:
        """Keep a decay factor in ``[0, 1]`` as a buffer, or a parameter if ``learn``."""
        tensor = snntorch_factor(type(self).__name__, name, value, 0.0, 1.0)
        if check_flag(type(self).__name__, f"learn_{name}", learn):
            setattr(self, name, nn.Parameter(tensor))
        else:
            self.register_buffer(name, tensor)

    @property
    def threshold_params(self) -> dict[str, Tensor | float]:
        """``{"theta": θ}`` where the charge reads the threshold (a reset), else empty."""
        return {} if self.reset_mechanism == "none" else {"theta": self.v_threshold}

    def forward(self, x: Tensor) -> Tensor:
        """Spikes for ``x`` (``[T, B, ...]``, or ``[B, ...]`` in single-step mode), times
        ``graded_spikes_factor`` as in snnTorch."""
        spikes = super().forward(x)
        factor = self.graded_spikes_factor
        if isinstance(factor, Tensor) or factor != 1.0:
            spikes = spikes * factor
        return spikes

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        for name in self._factors:
            check_step_shape(type(self).__name__, name, getattr(self, name), x_seq.shape[1:])
        return x_seq

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Read snnTorch's names too: ``threshold`` is ``v_threshold``; its
        ``reset_mechanism_val``, and a threshold or graded spikes factor that is a
        constant float here, must equal this neuron's (a mismatch is an error naming
        both)."""
        errors: list[str] = args[-1]
        theirs = prefix + "threshold"
        if theirs in state_dict and prefix + "v_threshold" not in state_dict:
            value = state_dict.pop(theirs)
            if isinstance(self.v_threshold, Tensor):
                state_dict[prefix + "v_threshold"] = value
            else:
                self._compare_constant(errors, prefix, "threshold", value, self.v_threshold)
        mechanism = state_dict.pop(prefix + "reset_mechanism_val", None)
        if mechanism is not None:
            index = int(mechanism)
            if not 0 <= index < len(RESET_MECHANISMS) or (
                RESET_MECHANISMS[index] != self.reset_mechanism
            ):
                saved = RESET_MECHANISMS[index] if 0 <= index < len(RESET_MECHANISMS) else index
                errors.append(
                    f"{prefix}reset_mechanism_val: the state dict's neuron resets by "
                    f"{saved!r} (snnTorch's reset_mechanism_val={index}), this "
                    f"{type(self).__name__} by {self.reset_mechanism!r}"
                )
        factor = self.graded_spikes_factor
        theirs = prefix + "graded_spikes_factor"
        if not isinstance(factor, Tensor) and theirs in state_dict:
            self._compare_constant(
                errors, prefix, "graded_spikes_factor", state_dict.pop(theirs), factor
            )
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _compare_constant(
        self, errors: list[str], prefix: str, name: str, saved: object, mine: float | Tensor
    ) -> None:
        """Append an error unless ``saved`` equals ``mine`` (rounded to ``saved``'s dtype:
        snnTorch keeps its numbers as float32 tensors)."""
        if not isinstance(saved, Tensor):
            errors.append(f"{prefix}{name}: expected a tensor, got {type(saved).__name__}")
            return
        want = torch.as_tensor(mine).detach().to(saved.dtype).cpu()
        try:
            same = bool(torch.all(torch.broadcast_to(want, saved.shape) == saved.cpu()))
        except RuntimeError:
            same = False
        if not same:
            errors.append(
                f"{prefix}{name}: the state dict holds {_show(saved)}, this "
                f"{type(self).__name__} was built with {name}={_show(mine)} (a constant "
                "here: build the neuron with the saved value)"
            )

    def extra_repr(self) -> str:
        parts = [f"{name}={_show(getattr(self, name))}" for name in self._factors]
        parts += [
            f"threshold={_show(self.v_threshold)}",
            f"reset_mechanism={self.reset_mechanism!r}",
        ]
        parts += self._extra_flags()
        if not self.strict_firing:
            parts.append("strict_firing=False")
        if isinstance(self.v_threshold, nn.Parameter):
            parts.append("learn_threshold=True")
        factor = self.graded_spikes_factor
        if isinstance(factor, Tensor) or factor != 1.0:
            parts.append(f"graded_spikes_factor={_show(factor)}")
        parts += [f"step_mode={self.step_mode!r}", f"backend={self.backend!r}"]
        return ", ".join(parts)

    def _extra_flags(self) -> list[str]:
        return []


class LeakyNode(_SnnTorchNode):
    """snnTorch's ``Leaky`` (first-order LIF, snnTorch 1.0; see the module docstring)::

        U[t] = β U[t-1] + X[t] - R[t] θ,   R[t] = Θ(U[t-1] - θ)   ("subtract")
        S[t] = Θ(U[t] - θ)

    ``snn.Leaky(beta, threshold=θ, spike_grad=sg, ...)`` is ``LeakyNode(beta,
    threshold=θ, surrogate_function=sg', ...)`` on the whole ``[T, B, ...]`` sequence:
    the same spikes, membranes (``v_seq``, snnTorch's ``mem``) and gradients, for the
    three reset mechanisms with either ``reset_delay``. The defaults are snnTorch's
    (subtract reset, delayed; fire on ``U > θ``; ``ATan(alpha=2)``, its ``atan()``),
    not the field's of :class:`~spikeflow.neurons.LIFNode`.

    Args:
        beta: the membrane decay, in ``[0, 1]`` (clamped there when used, as snnTorch
            does, so a learned ``beta`` may leave it). A float (kept, as in snnTorch, as
            a scalar tensor of the default dtype: pass a float64 tensor for float64
            values) or a tensor broadcastable to the neuron shape (one per neuron).
        threshold: θ, a float or a tensor broadcastable to the neuron shape (default 1;
            the module's ``v_threshold``).
        reset_mechanism: ``"subtract"`` (default), ``"zero"`` or ``"none"``.
        reset_delay: True (default): a spike resets the membrane at the next step, and
            ``v_seq`` holds the membrane before the reset; False: at the spiking step,
            ``v_seq`` after it (the spike's gradient flows through that reset).
        learn_beta: make ``beta`` a trainable parameter (its ``state_dict`` name is
            ``beta``, as snnTorch's).
        learn_threshold: make θ a trainable parameter (``v_threshold``; a snnTorch state
            dict's ``threshold`` loads into it).
        surrogate_function: the spike function (default ``ATan(alpha=2)``); snnTorch's
            ``fast_sigmoid(slope=k)`` is :class:`~spikeflow.surrogate.FastSigmoid`.
        strict_firing: fire on ``U > θ`` (default, snnTorch's) or, if False, ``U >= θ``
            (the pending reset follows the same rule).
        graded_spikes_factor: the output is the spikes times this (default 1); a float
            or a tensor broadcastable to the neuron shape.
        learn_graded_spikes_factor: make it a trainable parameter.
        zero_clears_input: with ``reset_mechanism="zero"``, clear the whole step after a
            spike, its input included, ``U[t] = (β U[t-1] + X[t]) (1 - R[t])``, as
            snnTorch's ``RLeaky`` (inside :class:`~spikeflow.layers.Recurrent`) does;
            ``Leaky`` keeps that input (default False).
        step_mode, backend, store_v_seq: as :class:`~spikeflow.neurons.base.BaseNode`.

    State: the membrane ``v`` (and, with ``reset_delay=False`` and a reset, ``reset``:
    ``R[t]``), starting at 0. snnTorch's ``init_hidden``, ``inhibition``,
    ``state_quant`` and ``surrogate_disable`` are not offered (docs/neurons.md).

    Raises:
        ConfigurationError: an unknown ``reset_mechanism``, ``beta`` outside ``[0, 1]``,
            a non-finite value, a flag that is not a bool.
        DTypeError: an integer tensor for ``beta`` or ``graded_spikes_factor``.
    """

    _factors = ("beta",)

    def __init__(
        self,
        beta: float | Tensor,
        threshold: float | Tensor = 1.0,
        reset_mechanism: str = "subtract",
        reset_delay: bool = True,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        surrogate_function: Surrogate | None = None,
        strict_firing: bool = True,
        graded_spikes_factor: float | Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        zero_clears_input: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            threshold, reset_mechanism, learn_threshold, surrogate_function, strict_firing,
            graded_spikes_factor, learn_graded_spikes_factor, step_mode, backend, store_v_seq,
        )  # fmt: skip
        owner = type(self).__name__
        self.reset_delay = check_flag(owner, "reset_delay", reset_delay)
        self.zero_clears_input = check_flag(owner, "zero_clears_input", zero_clears_input)
        self._set_factor("beta", beta, learn_beta)

    def declaration(self) -> NeuronDeclaration:
        return _leaky_declaration(
            self.reset_mechanism, self.reset_delay, self.strict_firing, self.zero_clears_input
        )

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"beta": self.beta.clamp(0, 1), **self.threshold_params}

    def initial_values(self) -> dict[str, float]:
        if self.reset_delay or self.reset_mechanism == "none":
            return {"v": 0.0}
        return {"v": 0.0, "reset": 0.0}

    def _extra_flags(self) -> list[str]:
        flags = [] if self.reset_delay else ["reset_delay=False"]
        if self.zero_clears_input:
            flags.append("zero_clears_input=True")
        return flags


class SynapticNode(_SnnTorchNode):
    """snnTorch's ``Synaptic`` (second-order LIF: a synaptic current filters the input,
    snnTorch 1.0; see the module docstring)::

        I[t] = α I[t-1] + X[t]
        U[t] = β U[t-1] + I[t] - R[t] θ,   R[t] = Θ(U[t-1] - θ)   ("subtract")
        S[t] = Θ(U[t] - θ)

    ``"zero"`` clears ``β U[t-1] + I[t]`` (the membrane, the current is kept). The same
    spikes, membranes (``v_seq``), synaptic currents (``syn`` while streaming) and
    gradients as ``snn.Synaptic(alpha, beta, ...)``, for the three reset mechanisms
    with either ``reset_delay``.

    Args:
        alpha: the synaptic current's decay, in ``[0, 1]`` (clamped when used), a float
            or a tensor broadcastable to the neuron shape.
        beta: the membrane decay, as :class:`LeakyNode`'s.
        learn_alpha, learn_beta: make them trainable parameters (``alpha``, ``beta``).
        threshold, reset_mechanism, reset_delay, learn_threshold, surrogate_function,
            strict_firing, graded_spikes_factor, learn_graded_spikes_factor, step_mode,
            backend, store_v_seq: as :class:`LeakyNode` (snnTorch's ``Synaptic`` has no
            graded spikes; the factor defaults to 1).

    State: ``v``, ``syn`` (and ``reset`` with ``reset_delay=False``), starting at 0.

    Raises:
        ConfigurationError: an unknown ``reset_mechanism``, ``alpha`` or ``beta`` outside
            ``[0, 1]``, a non-finite value, a flag that is not a bool.
        DTypeError: an integer tensor for ``alpha`` or ``beta``.
    """

    _factors = ("alpha", "beta")
    charge_returns_aux = True

    def __init__(
        self,
        alpha: float | Tensor,
        beta: float | Tensor,
        threshold: float | Tensor = 1.0,
        reset_mechanism: str = "subtract",
        reset_delay: bool = True,
        learn_alpha: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        surrogate_function: Surrogate | None = None,
        strict_firing: bool = True,
        graded_spikes_factor: float | Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            threshold, reset_mechanism, learn_threshold, surrogate_function, strict_firing,
            graded_spikes_factor, learn_graded_spikes_factor, step_mode, backend, store_v_seq,
        )  # fmt: skip
        self.reset_delay = check_flag(type(self).__name__, "reset_delay", reset_delay)
        self._set_factor("alpha", alpha, learn_alpha)
        self._set_factor("beta", beta, learn_beta)

    def declaration(self) -> NeuronDeclaration:
        return _synaptic_declaration(self.reset_mechanism, self.reset_delay, self.strict_firing)

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {
            "alpha": self.alpha.clamp(0, 1),
            "beta": self.beta.clamp(0, 1),
            **self.threshold_params,
        }

    def initial_values(self) -> dict[str, float]:
        if self.reset_delay or self.reset_mechanism == "none":
            return {"v": 0.0, "syn": 0.0}
        return {"v": 0.0, "syn": 0.0, "reset": 0.0}

    @property
    def syn(self) -> Tensor | None:
        """The synaptic current carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["syn"]

    def _extra_flags(self) -> list[str]:
        return [] if self.reset_delay else ["reset_delay=False"]


def _positive(owner: str, name: str, value: object) -> Tensor | None:
    """An optional positive constant (``None`` stays ``None``), as a tensor."""
    if value is None:
        return None
    tensor = snntorch_factor(owner, name, value)
    if not bool((tensor > 0).all()):
        raise ConfigurationError(f"{owner}: {name} must be > 0, got {value}")
    return tensor


class LapicqueNode(_SnnTorchNode):
    """snnTorch's ``Lapicque`` (an RC membrane, snnTorch 1.0; see the module docstring)::

        U[t] = (1 - k) U[t-1] + k R X[t] - R[t] θ,   k = time_step / (R C)   ("subtract")
        U[t] = ((1 - k) U[t-1] + k R X[t]) (1 - R[t])                        ("zero")
        S[t] = Θ(U[t] - θ)

    The reset is always delayed (snnTorch's ``Lapicque`` has no ``reset_delay``). As in
    snnTorch, give ``R`` and ``C``; or ``beta`` alone (then ``R = 1`` and
    ``C = time_step / ln(1/beta)``, so ``k = ln(1/beta)``, not ``1 - beta``); or ``beta``
    with one of ``R`` and ``C`` (the other follows from ``beta = exp(-time_step / (R C))``).
    ``1 - k`` is negative when ``time_step > R C`` (``beta < 1/e`` alone), as in snnTorch.

    Args:
        beta: the decay ``exp(-time_step / (R C))``, in ``(0, 1)``, or None.
        R: the membrane resistance (> 0), or None.
        C: the membrane capacitance (> 0), or None.
        time_step: the step (> 0, default 1).
        threshold, reset_mechanism, learn_threshold, surrogate_function, strict_firing,
            graded_spikes_factor, learn_graded_spikes_factor, step_mode, backend,
            store_v_seq: as :class:`LeakyNode`. ``beta``, ``R``, ``C`` and ``time_step``
            are constants (snnTorch's ``learn_beta`` changes nothing in its
            ``Lapicque``: ``C`` is computed once from ``beta``), each a float or a
            tensor broadcastable to the neuron shape.

    State: the membrane ``v``, starting at 0.

    Raises:
        ConfigurationError: neither ``R`` and ``C`` nor ``beta`` given, or all three;
            a value out of range; an unknown ``reset_mechanism``.
    """

    def __init__(
        self,
        beta: float | Tensor | None = None,
        R: float | Tensor | None = None,
        C: float | Tensor | None = None,
        time_step: float | Tensor = 1.0,
        threshold: float | Tensor = 1.0,
        reset_mechanism: str = "subtract",
        learn_threshold: bool = False,
        surrogate_function: Surrogate | None = None,
        strict_firing: bool = True,
        graded_spikes_factor: float | Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            threshold, reset_mechanism, learn_threshold, surrogate_function, strict_firing,
            graded_spikes_factor, learn_graded_spikes_factor, step_mode, backend, store_v_seq,
        )  # fmt: skip
        owner = type(self).__name__
        dt = _positive(owner, "time_step", time_step)
        r, c = _positive(owner, "R", R), _positive(owner, "C", C)
        decay = None
        if beta is not None:
            decay = snntorch_factor(owner, "beta", beta)
            if not bool(((decay > 0) & (decay < 1)).all()):
                raise ConfigurationError(
                    f"{owner}: beta must be in (0, 1) (C = time_step / (R ln(1/beta))), got {beta}"
                )
        if decay is None and (r is None or c is None):
            raise ConfigurationError(
                f"{owner}: give R and C, or beta (alone or with one of R and C), as "
                f"snnTorch's Lapicque; got beta={beta}, R={R}, C={C}"
            )
        if decay is not None and r is not None and c is not None:
            raise ConfigurationError(
                f"{owner}: give at most two of beta, R and C (the third follows from "
                f"beta = exp(-time_step / (R C))); got beta={beta}, R={R}, C={C}"
            )
        if decay is not None:
            log_inv = torch.log(1 / decay)
            if r is None and c is None:
                r = torch.tensor(1.0)
            if c is None:
                c = dt / (r * log_inv)
            else:
                r = dt / (c * log_inv)
        self.register_buffer("R", r)
        self.register_buffer("C", c)
        self.register_buffer("time_step", dt)

    def declaration(self) -> NeuronDeclaration:
        return _lapicque_declaration(self.reset_mechanism, self.strict_firing)

    @property
    def k(self) -> Tensor:
        """``time_step / (R C)``: the fraction of the membrane lost each step."""
        return self.time_step / (self.R * self.C)

    def neuron_params(self) -> dict[str, Tensor | float]:
        k = self.k
        return {"keep": 1 - k, "gain": self.R * k, **self.threshold_params}

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # snnTorch also keeps beta (unused by its Lapicque once C is set): not compared.
        state_dict.pop(prefix + "beta", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        for name in ("R", "C", "time_step"):
            check_step_shape(type(self).__name__, name, getattr(self, name), x_seq.shape[1:])
        return x_seq

    def extra_repr(self) -> str:
        constants = [f"{name}={_show(getattr(self, name))}" for name in ("R", "C", "time_step")]
        return ", ".join([*constants, super().extra_repr()])
