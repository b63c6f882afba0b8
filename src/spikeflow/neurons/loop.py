"""Neurons stepped by a plain loop over time in PyTorch, for models the declaration
system (:mod:`spikeflow.neurons.declaration`) cannot express.

A declared neuron's step is elementwise: each neuron's next state depends on its own
state and input only. That is what lets the kernel generator trace the step into fused
C and Triton kernels (a fire rule with several thresholds, each with its surrogate
derivative, is declared too: the ternary neurons of :mod:`spikeflow.neurons.ternary`).
A step that reduces over the batch breaks it: the membrane batch normalisation of
:mod:`spikeflow.neurons.mpbn`, whose mean and variance are taken over the batch at
every step.

Such neurons subclass :class:`LoopNode`, which runs the subclass's
:meth:`LoopNode.step` once per time step (autograd through the loop, like the reference
path of the declared neurons) and shares their state protocol: a multi-step call starts
from the initial state, single-step calls need streaming, ``run(x, state)`` passes the
state explicitly, ``store_v_seq`` records the membrane after reset.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from spikeflow._checks import check_flag
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.neurons.base import check_sequence
from spikeflow.surrogate import Sigmoid, Surrogate

__all__ = ["LoopNode", "check_surrogate"]


def check_surrogate(owner: str, surrogate_function: Surrogate | None) -> Surrogate:
    """``surrogate_function`` (``Sigmoid(alpha=4)`` for ``None``), checked to be a
    :class:`~spikeflow.surrogate.Surrogate`."""
    surrogate_function = Sigmoid() if surrogate_function is None else surrogate_function
    if not isinstance(surrogate_function, Surrogate):
        raise ConfigurationError(
            f"{owner}: surrogate_function must be a spikeflow.surrogate.Surrogate instance, "
            f"got {type(surrogate_function).__name__}"
        )
    return surrogate_function


class LoopNode(MemoryModule):
    """Base class of neurons run by a loop over time (see the module docstring).

    A subclass gives :meth:`initial_values` (one number per state variable, the
    membrane ``"v"`` first) and :meth:`step` (one time step: output and new state).

    Args:
        step_mode: ``'m'`` (input ``[T, B, ...]``, default) or ``'s'`` (``[B, ...]``).
        store_v_seq: keep the membrane after reset of every step of the last call in
            ``self.v_seq`` (``[T, B, ...]``; ``[1, B, ...]`` in single-step mode).
    """

    _graph_attributes = ("v_seq",)  # copies keep the recorded membrane's values
    #: Whether the output is spikes (signed ones count: a monitor counts their magnitudes).
    output_is_spikes: ClassVar[bool] = True

    def __init__(self, step_mode: StepMode = "m", store_v_seq: bool = False) -> None:
        super().__init__(step_mode)
        self.store_v_seq = check_flag(type(self).__name__, "store_v_seq", store_v_seq)
        self.v_seq: Tensor | None = None

    def initial_values(self) -> dict[str, float]:
        """The state at t = 0, one number per state variable (``"v"`` first)."""
        raise NotImplementedError

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One time step: the output for input ``x`` (``[B, ...]``) from ``state``, and
        the new state (membrane after reset under ``"v"``)."""
        raise NotImplementedError

    @property
    def v(self) -> Tensor | None:
        """The membrane after reset carried to the next call (only while streaming)."""
        return None if self.state is None else self.state["v"]

    def _check_input(self, x: object) -> Tensor:
        """``x`` as a ``[T, B, ...]`` sequence (one step gets ``T = 1``), checked."""
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise DTypeError(f"{name} expects a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise DTypeError(
                f"{name} expects a floating-point input (the synaptic current), got dtype {x.dtype}"
            )
        if self.step_mode == "m":
            check_sequence(x, name)
            return x
        return x.unsqueeze(0)

    def forward(self, x: Tensor) -> Tensor:
        """The output for ``x``: ``[T, B, ...]`` in multi-step mode, ``[B, ...]`` in
        single-step mode."""
        x_seq = self._check_input(x)
        out = self._run_steps(x_seq, self._start_state(x_seq[0]))
        return out if self.step_mode == "m" else out[0]

    def _start_state(self, like: Tensor) -> dict[str, Tensor]:
        """The state carried from the last call (streaming, ``run(x, state)``), else
        :meth:`initial_values`, each the shape of ``like`` (one step's membrane)."""
        state = self._carried_state(like.shape)
        if state is None:
            state = {k: torch.full_like(like, v) for k, v in self.initial_values().items()}
        return state

    def _run_steps(self, x_seq: Tensor, state: dict[str, Tensor]) -> Tensor:
        """The outputs of :meth:`step` over the steps of ``x_seq`` from ``state``,
        stacked; the last state is kept (for streaming), the membranes in ``v_seq`` with
        ``store_v_seq``."""
        outputs, membranes = [], []
        for x_t in x_seq.unbind(0):
            y, state = self.step(x_t, state)
            outputs.append(y)
            if self.store_v_seq:
                membranes.append(state["v"])
        self._keep_state(state)
        if self.store_v_seq:
            self.v_seq = torch.stack(membranes)
        return torch.stack(outputs)
