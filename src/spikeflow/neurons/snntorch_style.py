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
The declarations are in :mod:`spikeflow.neurons.snntorch_equations`, what the three
share (snnTorch's ``SpikingNeuron``) in :mod:`spikeflow.neurons.snntorch_base`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spikeflow._checks import check_flag
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import check_step_shape
from spikeflow.neurons.declaration import NeuronDeclaration
from spikeflow.neurons.snntorch_base import (
    RESET_MECHANISMS,
    SnnTorchNode,
    show_value,
    snntorch_factor,
)
from spikeflow.neurons.snntorch_equations import (
    lapicque_declaration,
    leaky_declaration,
    synaptic_declaration,
)
from spikeflow.surrogate import Surrogate

__all__ = ["RESET_MECHANISMS", "LapicqueNode", "LeakyNode", "SynapticNode", "snntorch_factor"]


class LeakyNode(SnnTorchNode):
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
        inhibition: as snnTorch's, only the neuron with the largest ``U - θ`` of each
            sample (the first on a tie) may fire at each step, and does if over θ; the
            others output 0 but still reset as if they had fired (the pending reset is
            every neuron's ``Θ(U - θ)``, snnTorch's ``mem_reset``). Steps must be
            ``[B, N]``; runs on the reference loop (``backend="auto"`` is kept as
            ``"torch"``; ``"cpu"`` and ``"triton"`` are refused); no graded spikes.
        step_mode, backend, store_v_seq: as :class:`~spikeflow.neurons.base.BaseNode`.

    State: the membrane ``v`` (and, with ``reset_delay=False`` and a reset, ``reset``:
    ``R[t]``), starting at 0. snnTorch's ``init_hidden`` and ``surrogate_disable`` are
    not offered (docs/neurons.md); its ``state_quant=q`` is
    ``quant.apply_state_quantization(node, quant.snntorch_state_levels(...))``.

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
        inhibition: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            threshold, reset_mechanism, learn_threshold, surrogate_function, strict_firing,
            graded_spikes_factor, learn_graded_spikes_factor, step_mode, backend, store_v_seq,
            inhibition,
        )  # fmt: skip
        owner = type(self).__name__
        self.reset_delay = check_flag(owner, "reset_delay", reset_delay)
        self.zero_clears_input = check_flag(owner, "zero_clears_input", zero_clears_input)
        self._set_factor("beta", beta, learn_beta)

    def declaration(self) -> NeuronDeclaration:
        return leaky_declaration(
            self.reset_mechanism, self.reset_delay, self.strict_firing, self.zero_clears_input,
            self.inhibition,
        )  # fmt: skip

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


class SynapticNode(SnnTorchNode):
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
            strict_firing, graded_spikes_factor, learn_graded_spikes_factor, inhibition,
            step_mode, backend, store_v_seq: as :class:`LeakyNode` (snnTorch's ``Synaptic`` has
            no graded spikes; the factor defaults to 1).

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
        inhibition: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            threshold, reset_mechanism, learn_threshold, surrogate_function, strict_firing,
            graded_spikes_factor, learn_graded_spikes_factor, step_mode, backend, store_v_seq,
            inhibition,
        )  # fmt: skip
        self.reset_delay = check_flag(type(self).__name__, "reset_delay", reset_delay)
        self._set_factor("alpha", alpha, learn_alpha)
        self._set_factor("beta", beta, learn_beta)

    def declaration(self) -> NeuronDeclaration:
        return synaptic_declaration(
            self.reset_mechanism, self.reset_delay, self.strict_firing, self.inhibition
        )

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


class LapicqueNode(SnnTorchNode):
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
            graded_spikes_factor, learn_graded_spikes_factor, inhibition, step_mode, backend,
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
        inhibition: bool = False,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        super().__init__(
            threshold, reset_mechanism, learn_threshold, surrogate_function, strict_firing,
            graded_spikes_factor, learn_graded_spikes_factor, step_mode, backend, store_v_seq,
            inhibition,
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
        return lapicque_declaration(self.reset_mechanism, self.strict_firing, self.inhibition)

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
        constants = [
            f"{name}={show_value(getattr(self, name))}" for name in ("R", "C", "time_step")
        ]
        return ", ".join([*constants, super().extra_repr()])
