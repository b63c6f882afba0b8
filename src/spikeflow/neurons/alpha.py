"""snnTorch's alpha neuron (``snntorch.Alpha``, snnTorch 1.0): a membrane that is the
difference of an excitatory and an inhibitory synaptic trace of the same input, so that
one input pulse gives an alpha-shaped (rise, then decay) membrane response.

Each step, with the previous step's spike ``R = S[t-1]`` as the pending reset (no
gradient; snnTorch's reset is always detached)::

    E' = alpha E[t-1] + X[t],     I' = beta I[t-1] - X[t]
    zero (default):  E[t] = E' (1 - R),  I[t] = I' (1 - R),  U[t] = tau_a (E[t] + I[t])
    subtract:        E[t] = E' - θ R,    I[t] = I' (1 - R),  U[t] = tau_a (E' + I') + I[t-1] R
    none:            E[t] = E',          I[t] = I',          U[t] = tau_a (E' + I')
    S[t] = Θ(U[t] - θ)

with ``tau_a = ln(alpha) / (ln(beta) - ln(alpha)) + 1`` (snnTorch's normalisation).
``U`` is a function of the synaptic traces, not of its own past: a spike resets the
traces (and so the membrane) at the next step, together with that step's input
(``"zero"``), and the membrane is never reset at the step it fires. These are
snnTorch's equations read from its code, ``"subtract"``'s ``+ I[t-1] R`` included.

No existing spikeflow neuron equals it under a parameter mapping (tested against
:class:`~spikeflow.neurons.CubaLIFNode`, the nearest): the membrane here reaches an
input one step later (``tau_a (E' + I')`` holds ``alpha - beta`` times ``X[t-1]`` and no
``X[t]``), it does not integrate its own past, and the reset clears the synaptic traces
and the next input rather than the membrane.

Declared once: the charge advances the traces and returns ``U``; the update stores the
spike (detached) as the next step's pending reset; ``reset_membrane`` keeps ``U`` (the
membrane snnTorch reports). The reference loop and the fused C and Triton kernels,
forward and backward, come from these functions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode, check_step_shape, show_float_or_shape
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.snntorch_base import (
    check_inhibited_steps,
    inhibition_backend,
    show_value,
)
from spikeflow.neurons.snntorch_equations import inhibited_spikes
from spikeflow.neurons.snntorch_style import snntorch_factor
from spikeflow.surrogate import Surrogate

__all__ = ["AlphaNode"]

#: snnTorch's reset mechanisms.
RESET_MECHANISMS = ("zero", "subtract", "none")


# -- the declarations ------------------------------------------------------------------------


def _alpha_charge_zero(
    x: Tensor,
    v: Tensor,
    syn_exc: Tensor,
    syn_inh: Tensor,
    last_spike: Tensor,
    *,
    alpha: Tensor | float,
    beta: Tensor | float,
    tau_alpha: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``"zero"``: both traces (this step's input included) cleared after a spike."""
    keep = 1.0 - last_spike
    exc = (alpha * syn_exc + x) * keep
    inh = (beta * syn_inh - x) * keep
    return tau_alpha * (exc + inh), exc, inh, last_spike


def _alpha_charge_subtract(
    x: Tensor,
    v: Tensor,
    syn_exc: Tensor,
    syn_inh: Tensor,
    last_spike: Tensor,
    *,
    alpha: Tensor | float,
    beta: Tensor | float,
    tau_alpha: Tensor | float,
    theta: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``"subtract"``: θ off the excitatory trace, the inhibitory one cleared, and the
    membrane (from the traces before the reset) raised by the previous inhibitory trace."""
    exc = alpha * syn_exc + x
    inh = beta * syn_inh - x
    h = tau_alpha * (exc + inh) + syn_inh * last_spike
    return h, exc - theta * last_spike, inh * (1.0 - last_spike), last_spike


def _alpha_update(
    h: Tensor, s: Tensor, syn_exc: Tensor, syn_inh: Tensor, last_spike: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """After firing: the traces as charged; the spike is the next step's reset, without a
    gradient. A spike is ``S >= 0.5``: ``S`` itself for a spiking surrogate, ``H >= θ`` for
    a smooth one (``spiking=False``, whose primitive is 0.5 there)."""
    one = torch.ones_like(s)
    return syn_exc, syn_inh, torch.where(s >= 0.5, one, one * 0.0).detach()


def _alpha_keep_membrane(
    h: Tensor, s: Tensor, theta: Tensor | float, syn_exc: Tensor, syn_inh: Tensor,
    last_spike: Tensor,
) -> Tensor:  # fmt: skip
    """No reset at the spiking step: the membrane is ``U`` (reset through the traces)."""
    return h


def _alpha_charge_none(
    x: Tensor,
    v: Tensor,
    syn_exc: Tensor,
    syn_inh: Tensor,
    *,
    alpha: Tensor | float,
    beta: Tensor | float,
    tau_alpha: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor]:
    """``"none"``: the traces are never reset."""
    exc = alpha * syn_exc + x
    inh = beta * syn_inh - x
    return tau_alpha * (exc + inh), exc, inh


def _alpha_keep_membrane_none(
    h: Tensor, s: Tensor, theta: Tensor | float, syn_exc: Tensor, syn_inh: Tensor
) -> Tensor:
    """No reset at all: the membrane is ``U``."""
    return h


# -- inhibition=True: one winner per sample (snnTorch's fire_inhibition) -------------------
# Only the winner fires, but every neuron over the threshold resets at the next step
# (snnTorch's mem_reset reads the membrane, not the spike): the update stores Θ(U - θ).


def _alpha_fire_inhibited(
    h: Tensor, theta: Tensor | float, spike: Callable[[Tensor], Tensor], syn_exc: Tensor,
    syn_inh: Tensor, last_spike: Tensor,
) -> Tensor:  # fmt: skip
    """The inhibited fire rule (:func:`~spikeflow.neurons.snntorch_equations.inhibited_spikes`)."""
    return inhibited_spikes(h, theta, spike)


def _alpha_fire_inhibited_none(
    h: Tensor, theta: Tensor | float, spike: Callable[[Tensor], Tensor], syn_exc: Tensor,
    syn_inh: Tensor,
) -> Tensor:  # fmt: skip
    """As :func:`_alpha_fire_inhibited`, without a reset (``"none"``)."""
    return inhibited_spikes(h, theta, spike)


def _alpha_update_over(
    h: Tensor, s: Tensor, syn_exc: Tensor, syn_inh: Tensor, last_spike: Tensor, *,
    theta: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """After an inhibited step: the pending reset is every neuron's ``U > θ``."""
    return syn_exc, syn_inh, (h > theta).to(h.dtype)


def _alpha_update_over_or_at(
    h: Tensor, s: Tensor, syn_exc: Tensor, syn_inh: Tensor, last_spike: Tensor, *,
    theta: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """As :func:`_alpha_update_over`, firing on ``U >= θ`` (``strict_firing=False``)."""
    return syn_exc, syn_inh, (h >= theta).to(h.dtype)


class AlphaNode(BaseNode):
    """snnTorch's ``Alpha`` neuron (see the module docstring)::

        E' = alpha E + X,   I' = beta I - X,   U = tau_a (E' + I')   (+ the reset)
        S = Θ(U - θ),       tau_a = ln(alpha) / (ln(beta) - ln(alpha)) + 1

    ``reset_mechanism`` is snnTorch's: ``"zero"`` (default) clears both traces one step
    after a spike (that step's input too), ``"subtract"`` takes θ off the excitatory
    trace, ``"none"`` never resets. ``alpha`` and ``beta`` are clamped to ``[0, 1]`` when
    used, as in snnTorch.

    **snnTorch**: ``snntorch.Alpha(alpha, beta, threshold=θ, spike_grad=sg,
    reset_mechanism=m)`` is ``AlphaNode(alpha, beta, reset_mechanism=m, v_threshold=θ,
    strict_firing=True, surrogate_function=sg')`` in spikes, states (``syn_exc``,
    ``syn_inh``, ``mem`` are ``node.syn_exc``, ``node.syn_inh`` and ``v_seq``) and
    gradients (``sg'`` the matching spikeflow surrogate: snnTorch's default ``atan()``
    is ``ATan()``; docs/migration.md). The field's defaults hold otherwise: fire on
    ``U >= θ`` (``strict_firing=False``) and the Sigmoid(α=4) surrogate.

    Args:
        alpha: the decay of the excitatory trace, ``beta < alpha <= 1`` (default 0.9,
            snnTorch's example; snnTorch has no default). A float (kept, as in snnTorch,
            as a scalar tensor of the default dtype: pass a float64 tensor for float64
            values) or a tensor broadcastable to the neuron shape.
        beta: the decay of the inhibitory trace, ``0 < beta < alpha`` (default 0.8).
        reset_mechanism: ``"zero"``, ``"subtract"`` or ``"none"``.
        learn_alpha, learn_beta: make ``alpha`` / ``beta`` trainable parameters
            (snnTorch 1.0's ``learn_alpha=True`` fails in its constructor; here it works).
        v_threshold, surrogate_function, strict_firing, learnable_threshold, step_mode,
            backend, store_v_seq: as :class:`~spikeflow.neurons.base.BaseNode`. There is
            no ``v_reset`` or ``detach_reset``: the reset is ``reset_mechanism``'s, and
            it is always detached.
        inhibition: snnTorch's: only the neuron with the largest ``U - θ`` of each
            sample may fire at each step (``[B, N]`` steps, the reference loop; the
            fused backends are refused); every neuron over θ resets at the next step
            all the same (the pending reset is ``U > θ``, or ``U >= θ`` without
            ``strict_firing``, not the inhibited spike), as
            :class:`~spikeflow.neurons.LeakyNode`'s.

    State: the membrane ``v`` (``U``), ``syn_exc``, ``syn_inh`` and, unless
    ``reset_mechanism="none"``, ``last_spike`` (the pending reset), all starting at 0.

    Raises:
        ConfigurationError: an unknown ``reset_mechanism``, ``alpha <= beta``,
            ``beta <= 0``, ``alpha > 1`` or a non-finite value.
        DTypeError: an integer tensor for ``alpha`` or ``beta``.
    """

    def __init__(
        self,
        alpha: float | Tensor = 0.9,
        beta: float | Tensor = 0.8,
        reset_mechanism: str = "zero",
        learn_alpha: bool = False,
        learn_beta: bool = False,
        v_threshold: float | Tensor = 1.0,
        surrogate_function: Surrogate | None = None,
        strict_firing: bool = False,
        learnable_threshold: bool = False,
        inhibition: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        inhibited = check_flag(type(self).__name__, "inhibition", inhibition)
        if inhibited:
            backend = inhibition_backend(type(self).__name__, backend)
        super().__init__(
            v_threshold=v_threshold, v_reset=0.0, surrogate_function=surrogate_function,
            detach_reset=True, strict_firing=strict_firing,
            learnable_threshold=learnable_threshold, step_mode=step_mode,
            backend=backend, store_v_seq=store_v_seq,
        )  # fmt: skip
        owner = type(self).__name__
        if reset_mechanism not in RESET_MECHANISMS:
            raise ConfigurationError(
                f"{owner}: reset_mechanism must be one of {RESET_MECHANISMS} (snnTorch's), "
                f"got {reset_mechanism!r}"
            )
        self.reset_mechanism = reset_mechanism
        self.inhibition = inhibited
        alpha_t = snntorch_factor(owner, "alpha", alpha)
        beta_t = snntorch_factor(owner, "beta", beta)
        if not bool((beta_t > 0).all() and (alpha_t <= 1).all()):
            raise ConfigurationError(
                f"{owner}: alpha and beta must satisfy 0 < beta < alpha <= 1 (their logs "
                f"set the membrane's scale), got alpha={alpha}, beta={beta}"
            )
        if not bool((alpha_t > beta_t).all()):
            raise ConfigurationError(
                f"{owner}: alpha must be greater than beta (the excitatory trace outlasts "
                f"the inhibitory one), got alpha={alpha}, beta={beta}"
            )
        for name, value, learn in (
            ("alpha", alpha_t, learn_alpha), ("beta", beta_t, learn_beta)
        ):  # fmt: skip
            if check_flag(owner, f"learn_{name}", learn):
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def declaration(self) -> NeuronDeclaration:
        inhibited = self.inhibition
        name = f"{type(self).__name__}({self.reset_mechanism}{', inhibition' if inhibited else ''})"
        if self.reset_mechanism == "none":
            return declare(
                _alpha_charge_none, None, name, charge_returns_aux=True,
                reset_membrane=_alpha_keep_membrane_none,
                fire=_alpha_fire_inhibited_none if inhibited else None,
            )  # fmt: skip
        charge = _alpha_charge_zero if self.reset_mechanism == "zero" else _alpha_charge_subtract
        update = _alpha_update
        if inhibited:
            update = _alpha_update_over if self.strict_firing else _alpha_update_over_or_at
        return declare(
            charge, update, name, charge_returns_aux=True, reset_membrane=_alpha_keep_membrane,
            fire=_alpha_fire_inhibited if inhibited else None,
        )  # fmt: skip

    def neuron_params(self) -> dict[str, Tensor | float]:
        alpha, beta = self.alpha.clamp(0, 1), self.beta.clamp(0, 1)
        log_alpha = torch.log(alpha)
        params: dict[str, Tensor | float] = {
            "alpha": alpha,
            "beta": beta,
            "tau_alpha": log_alpha / (torch.log(beta) - log_alpha) + 1,
        }
        if self.reset_mechanism == "subtract" or (
            self.inhibition and self.reset_mechanism == "zero"
        ):
            params["theta"] = self.v_threshold
        return params

    def initial_values(self) -> dict[str, float]:
        values = {"v": 0.0, "syn_exc": 0.0, "syn_inh": 0.0}
        if self.reset_mechanism != "none":
            values["last_spike"] = 0.0
        return values

    @property
    def syn_exc(self) -> Tensor | None:
        """The excitatory trace carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["syn_exc"]

    @property
    def syn_inh(self) -> Tensor | None:
        """The inhibitory trace carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["syn_inh"]

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        if self.inhibition:
            check_inhibited_steps(type(self).__name__, x_seq)
        for name in ("alpha", "beta"):
            check_step_shape(type(self).__name__, name, getattr(self, name), x_seq.shape[1:])
        return x_seq

    def extra_repr(self) -> str:
        theta = self.v_threshold
        parts = [
            f"alpha={show_value(self.alpha)}",
            f"beta={show_value(self.beta)}",
            f"reset_mechanism={self.reset_mechanism!r}",
            f"v_threshold={show_float_or_shape(theta)}",
            *self._mode_repr(),
        ]
        if isinstance(theta, nn.Parameter):
            parts.append("learnable_threshold=True")
        if self.inhibition:
            parts.append("inhibition=True")
        return ", ".join(parts)
