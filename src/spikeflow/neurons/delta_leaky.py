"""A leaky neuron that fires on a change of its membrane: snnTorch 1.0's ``DeltaLeaky``
(``snntorch/_neurons/deltaleaky.py``, read from its code)::

    U[t] = β U[t-1] + X[t]                      (no reset: the membrane keeps integrating)
    D[t] = U[t] - U[t-1] = (β - 1) U[t-1] + X[t]
    S[t] = Θ(|D[t]| - θ_Δ)                      (fires on |D| > θ_Δ; the surrogate's gradient)

A spike says that the membrane moved by more than ``θ_Δ`` in one step, up or down (a
delta, or sigma-delta, encoding of the membrane). ``β`` is used as it is (snnTorch's
``DeltaLeaky`` does not clamp it, where its ``Leaky`` does).

Declared once (:mod:`spikeflow.neurons.declaration`): the charge returns the membrane
and its change ``D`` (a state ``delta``, which the fire rule reads), the fire rule
thresholds ``|D|`` and the reset keeps the membrane, so the reference loop and the
fused C and Triton kernels, forward and backward, come from the same functions.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError
from spikeflow.neurons.base import BaseNode, check_step_shape, show_float_or_shape
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.snntorch_base import show_value, snntorch_factor
from spikeflow.surrogate import ATan, Surrogate

__all__ = ["DeltaLeakyNode"]


def _delta_charge(x: Tensor, v: Tensor, delta: Tensor, *, beta: Tensor | float) -> tuple:
    """``U = β U + X`` and its change ``D = U - U_prev`` (``delta`` is only written)."""
    h = beta * v + x
    return h, h - v


def _delta_fire(
    h: Tensor, theta: Tensor | float, spike: Callable[[Tensor], Tensor], delta: Tensor
) -> Tensor:
    """A spike where the membrane changed by more than θ_Δ, either way."""
    return spike(delta.abs() - theta)


def _delta_keep(h: Tensor, s: Tensor, theta: Tensor | float, delta: Tensor) -> Tensor:
    """No reset: the membrane after firing is the charged one."""
    return h


class DeltaLeakyNode(BaseNode):
    """snnTorch's ``DeltaLeaky``: a leaky membrane without reset that fires where it
    changed by more than ``delta_threshold`` in one step (see the module docstring)::

        U[t] = β U[t-1] + X[t],   S[t] = Θ(|U[t] - U[t-1]| - θ_Δ)

    ``snn.DeltaLeaky(delta_threshold=d, beta=b, spike_grad=sg)`` stepped over a
    sequence is ``DeltaLeakyNode(beta=b, delta_threshold=d, surrogate_function=sg')``
    on the whole ``[T, B, ...]`` input: the same spikes, membranes (``v_seq``, snnTorch's
    ``mem``) and gradients (tested in float64 on every backend). snnTorch's first
    positional argument is ``delta_threshold`` (``snn.DeltaLeaky(0.9)`` sets it, not
    ``beta``); here ``beta`` comes first, as in :class:`~spikeflow.neurons.LeakyNode`.
    Its other ``Leaky`` arguments (``threshold``, ``reset_mechanism``,
    ``graded_spikes_factor``, ...) have no effect on ``DeltaLeaky``'s output and are not
    taken.

    Args:
        beta: the membrane decay, in ``[0, 1]`` when built, used unclamped (a learned
            ``beta`` may leave the range, as in snnTorch). A float (kept as a scalar
            tensor of the default dtype) or a tensor broadcastable to the neuron shape.
        delta_threshold: θ_Δ > 0, the change that fires (default 1; the module's
            ``v_threshold``): a float or a tensor broadcastable to the neuron shape.
        learn_beta: make ``beta`` a trainable parameter.
        learn_delta_threshold: make θ_Δ a trainable parameter (``v_threshold``).
        surrogate_function: the spike function of ``|D| - θ_Δ`` (default
            ``ATan(alpha=2)``, snnTorch's ``atan()``).
        strict_firing: fire on ``|D| > θ_Δ`` (default, snnTorch's) or, if False, ``>=``.
        step_mode, backend, store_v_seq: as :class:`~spikeflow.neurons.base.BaseNode`.

    State: the membrane ``v`` and its last change ``delta`` (``node.state`` while
    streaming), both starting at 0.

    Raises:
        ConfigurationError: ``beta`` outside ``[0, 1]`` or not finite, ``delta_threshold``
            not > 0, a flag that is not a bool.
        DTypeError: an integer tensor for ``beta``.
    """

    def __init__(
        self,
        beta: float | Tensor,
        delta_threshold: float | Tensor = 1.0,
        learn_beta: bool = False,
        learn_delta_threshold: bool = False,
        surrogate_function: Surrogate | None = None,
        strict_firing: bool = True,
        step_mode: StepMode = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ) -> None:
        owner = type(self).__name__
        checked = snntorch_factor(owner, "delta_threshold", delta_threshold)
        if not bool((checked > 0).all()):
            raise ConfigurationError(
                f"{owner}: delta_threshold must be > 0 (a spike marks a change larger "
                f"than it), got {delta_threshold}"
            )
        super().__init__(
            v_threshold=delta_threshold,
            v_reset=None,
            surrogate_function=ATan() if surrogate_function is None else surrogate_function,
            detach_reset=False,
            strict_firing=strict_firing,
            learnable_threshold=learn_delta_threshold,
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
        )
        tensor = snntorch_factor(owner, "beta", beta, 0.0, 1.0)
        if check_flag(owner, "learn_beta", learn_beta):
            self.beta = nn.Parameter(tensor)
        else:
            self.register_buffer("beta", tensor)

    def declaration(self) -> NeuronDeclaration:
        return declare(
            _delta_charge, None, type(self).__name__, charge_returns_aux=True,
            fire=_delta_fire, reset_membrane=_delta_keep,
        )  # fmt: skip

    def neuron_params(self) -> dict[str, Tensor | float]:
        return {"beta": self.beta}

    def initial_values(self) -> dict[str, float]:
        return {"v": 0.0, "delta": 0.0}

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        check_step_shape(type(self).__name__, "beta", self.beta, x_seq.shape[1:])
        return x_seq

    def extra_repr(self) -> str:
        parts = [f"beta={show_value(self.beta)}",
                 f"delta_threshold={show_float_or_shape(self.v_threshold)}"]  # fmt: skip
        if isinstance(self.beta, nn.Parameter):
            parts.append("learn_beta=True")
        if isinstance(self.v_threshold, nn.Parameter):
            parts.append("learn_delta_threshold=True")
        return ", ".join([*parts, *self._mode_repr()])
