"""Presynaptic traces for online training through time (OTTT; Xiao et al., NeurIPS
2022, "Online Training Through Time for Spiking Neural Networks").

Online training (:mod:`spikeflow.training.online`) backpropagates each step's loss at
once, within the step. With SLTT's gradient, a weight learns from the layer's input at
that step, ``dL[t]/dW = g[t] x[t]ᵀ`` (``g[t]`` the gradient at the layer's output).
OTTT keeps, for each synaptic layer, a trace of its inputs,
``â[t] = λ â[t-1] + x[t]``, and the weight learns from the trace instead:
``g[t] â[t]ᵀ``. Through a leaky membrane ``u[t] = λ u[t-1] + W x[t]`` (reset
ignored), ``du[t]/dW`` is exactly ``â[t]``, so the trace carries the temporal
dependencies that the per-step backward drops from the weight updates, at the cost of
one trace per synaptic layer. Use λ = the network's membrane decay, ``1 - 1/τ`` (0.5 for
``τ = 2``). The layer's output and the gradient passed to its input are unchanged: a
layer computes ``W â[t]`` for the gradient and takes its value ``W x[t]`` from a
second, gradient-free pass (as the authors' code does), so its forward costs double.

:class:`PresynapticTraces` installs this on every ``nn.Linear`` and ``nn.Conv1d/2d/3d``
(spikeflow's layers included) of a model while the context is open; the traces start
at zero on entry (one sequence).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.memory.recompute import reruns_forward

__all__ = ["SYNAPTIC_LAYERS", "PresynapticTraces", "check_trace_decay"]

#: The layers whose weights learn from presynaptic traces.
SYNAPTIC_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def check_trace_decay(decay: Any) -> float:
    """``decay`` as a float if it is a number in ``[0, 1]``.

    Raises:
        ConfigurationError: anything else.
    """
    name = "the presynaptic trace decay (1 - 1/tau of the network's neurons, 0.5 for tau = 2)"
    return check_real(name, decay, 0.0, 1.0)


class PresynapticTraces:
    """While open, ``model``'s synaptic layers learn from traces of their inputs (OTTT).

    Call :meth:`end_step` after each step: a layer called more than once in a step
    (a shared weight) would mix the traces of its inputs, and is refused.

    Args:
        model: the network.
        decay: λ of ``â[t] = λ â[t-1] + x[t]``.

    Raises:
        ConfigurationError: a bad ``decay``, or a model without synaptic layers.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = check_trace_decay(decay)
        self.layers = {m: name for name, m in model.named_modules()
                       if isinstance(m, SYNAPTIC_LAYERS)}  # fmt: skip
        if not self.layers:
            raise ConfigurationError(
                f"{type(model).__name__} has no Linear or Conv layer whose weight could learn "
                "from presynaptic traces"
            )
        self.traces: dict[nn.Module, Tensor] = {}
        self._inputs: dict[nn.Module, Tensor] = {}
        self._called: set[nn.Module] = set()
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> PresynapticTraces:
        self.traces.clear()
        self._called.clear()
        for layer in self.layers:
            self._handles.append(layer.register_forward_pre_hook(self._before))
            self._handles.append(layer.register_forward_hook(self._after))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.traces.clear()
        self._inputs.clear()

    def end_step(self) -> None:
        """Mark the end of a step (each layer runs once per step)."""
        self._called.clear()

    def _before(self, layer: nn.Module, args: tuple) -> tuple | None:
        if not args or not isinstance(args[0], Tensor):
            return None
        if reruns_forward():
            raise ConfigurationError(
                f"layer {self.layers[layer] or '(model)'} is recomputed in the backward pass "
                "(spikeflow.memory.Recomputed, torch.utils.checkpoint): OTTT's presynaptic "
                "traces cannot be; online "
                "training keeps one step's graph, so it needs no recomputation"
            )
        if layer in self._called:
            raise ConfigurationError(
                f"layer {self.layers[layer] or '(model)'} ran twice in one step: OTTT keeps one "
                "presynaptic trace per layer, so a weight used twice per step cannot learn "
                "from traces"
            )
        self._called.add(layer)
        x = args[0]
        previous = self.traces.get(layer)
        if previous is not None and previous.shape != x.shape:
            raise ShapeError(
                f"layer {self.layers[layer] or '(model)'}: input {tuple(x.shape)} after "
                f"{tuple(previous.shape)} in the same sequence; its trace needs one shape"
            )
        with torch.no_grad():
            trace = x.detach().clone() if previous is None else previous * self.decay + x
        self.traces[layer] = trace
        if not torch.is_grad_enabled():
            return None
        self._inputs[layer] = x
        # The value of the trace, the gradient of the input: W learns g âᵀ and the
        # input still receives Wᵀ g.
        return (trace + (x - x.detach()), *args[1:])

    def _after(self, layer: nn.Module, args: tuple, output: object) -> object:
        x = self._inputs.pop(layer, None)
        if x is None or not isinstance(output, Tensor):
            return None
        with torch.no_grad():
            value = layer.forward(x, *args[1:])  # the hooks' own pass: W x (+ b)
        return output + (value - output).detach()
