"""What one generated kernel is specialised for."""

from __future__ import annotations

from dataclasses import dataclass

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
