"""What one generated kernel is specialised for."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from spikeflow.kernels.printing import Typing, scalar_types
from spikeflow.kernels.step import StepGraph

__all__ = ["KernelSpec"]


@dataclass(frozen=True)
class KernelSpec:
    """A step graph plus everything the printed code depends on.

    Attributes:
        graph: the traced, differentiated step.
        ctype: compute type, ``"float"`` or ``"double"``.
        array_params: per declared parameter, whether it is an ``[N]`` array (else a
            scalar passed by value).
        theta_is_array: whether the threshold is an ``[N]`` array.
        save_states: whether the forward saves the state before each step (for backward).
        record_v: whether the forward records the membrane after reset.
        grad_params: per declared parameter, whether the backward computes its gradient.
        grad_theta: whether the backward computes the threshold's gradient.
        checkpoint: the forward saves the state every ``checkpoint`` steps; the
            backward recomputes the steps in between (1: every step is saved).
        operands: per declared parameter, then the threshold, what it is in the
            reference loop: ``False`` (a Python float) or ``(dtype, zero_dim)`` (a
            tensor); see :func:`spikeflow.kernels.precision.operand_tag`. The
            sub-expressions of parameters and constants alone are computed in the types
            PyTorch gives them (:attr:`typing`). Empty: every value in ``ctype``.
        uniform_states: per state, whether its initial value is one number for every
            neuron (a fresh neuron's), which the forward reads from the scalars (after
            the surrogate's run-time parameters, in state order) instead of an ``[N]``
            buffer: no tensor to fill before the call. Empty: every state is a buffer.

    Raises:
        ScalarPrecisionError: such a sub-expression is computed by the reference loop
            in a dtype the kernels cannot reproduce (float16, say).
    """

    graph: StepGraph
    ctype: str
    array_params: tuple[bool, ...]
    theta_is_array: bool
    save_states: bool
    record_v: bool
    grad_params: tuple[bool, ...]
    grad_theta: bool
    checkpoint: int = 1
    operands: tuple = ()
    uniform_states: tuple[bool, ...] = ()

    def uniform(self, k: int) -> bool:
        """Whether state ``k``'s initial value is a scalar (see ``uniform_states``)."""
        return bool(self.uniform_states) and self.uniform_states[k]

    def __post_init__(self) -> None:
        _ = self.typing  # refuses what cannot be reproduced before any code is printed

    @functools.cached_property
    def typing(self) -> Typing:
        """The types of the scalar-only sub-expressions (see :func:`scalar_types`)."""
        dtype = torch.float32 if self.ctype == "float" else torch.float64
        return scalar_types(self.graph, self.operands, dtype)
