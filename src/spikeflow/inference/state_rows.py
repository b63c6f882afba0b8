"""Stepping a network one time step at a time with its state explicit, and keeping only
some samples of that state: what early exit needs to drop the samples that are done.

Every stateful module of spikeflow (the neurons, the recurrent containers, delays,
dropout masks, the time-indexed batch norms' step counters, your own ``MemoryModule``
subclasses) keeps its state through the explicit-state protocol of
:func:`spikeflow.functional.run`, and says at each call the shape of one step its state
is checked against (batch first). The state's trailing dims are that step's, so the
samples of a state tensor sit at dim ``value.dim() - len(step)``; a tensor with fewer
dims than the step (a step counter, a value broadcast over the batch) is shared by all
samples and kept whole. :class:`SteppedNetwork` reads those shapes and selects rows.

A module that keeps a state any other way (a plain ``nn.Module``, not a MemoryModule,
holding a tensor in an attribute or a buffer it replaces or updates at each call) cannot
be carried or selected: :class:`SteppedNetwork` refuses it at the first step after which
such a tensor changed again (a cache filled once, at the first call, is not a state).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from spikeflow.base import MemoryModule, run_explicit
from spikeflow.errors import DTypeError, ShapeError, StateError
from spikeflow.functional import check_streamable

__all__ = ["NetworkState", "SteppedNetwork", "check_step_output", "selected_input"]

#: The state of every stateful module of a network, by module name (as
#: :func:`spikeflow.functional.run` returns it).
NetworkState = dict[str, dict[str, Tensor]]


class SteppedNetwork:
    """``net`` called chunk by chunk with an explicit state (as
    :func:`spikeflow.functional.run`), whose state's samples can be selected.

    After each call the network's tensor attributes are recorded once; a call after the
    first that set, replaced or updated one of them (a state kept outside the
    MemoryModule protocol) is refused. The record of one call is the next call's
    starting point: the recorded tensors (held, so that a new tensor cannot take the
    id of a freed one) are checked before a call, and the network walked again only
    where code between two calls replaced or updated one of them (a change between
    calls is not the call's; an attribute added between calls is taken for the call's).

    Raises:
        StateError: ``net`` holds a module that cannot carry its state from one call
            to the next (a whole-sequence module, another library's neuron:
            :func:`spikeflow.functional.check_streamable`).
    """

    def __init__(self, net: nn.Module) -> None:
        check_streamable(net)
        self.net = net
        self._modules = {n: m for n, m in net.named_modules() if isinstance(m, MemoryModule)}
        self._step_shapes: dict[str, tuple[int, ...] | None] = {}
        #: The network's tensor attributes after the last call (None before the first):
        #: the next call's "before", so each call walks the network once.
        self._attributes: _Attributes | None = None

    def __call__(self, x: Tensor, state: NetworkState | None) -> tuple[Any, NetworkState]:
        """``net(x)`` from ``state`` (None: the initial state): the output and the
        state after the call."""
        given: dict[str, dict[str, Tensor] | None] = dict(state or {})
        shapes: dict[str, tuple[int, ...] | None] = {}
        before = self._attributes
        if before is not None and not _still_held(before):  # changed between two calls
            before = _tensor_attributes(self.net)
        output, final = run_explicit(self._modules, given, lambda: self.net(x), shapes)
        self._step_shapes = shapes
        after = _tensor_attributes(self.net)
        if before is not None:  # the first call may fill caches; later ones must not
            _check_unchanged(before, after)
        self._attributes = after
        return output, final

    def batch_dim(self, module: str, key: str, value: Tensor, batch: int) -> int | None:
        """The dim of ``value`` (``state[module][key]`` after the last call, of a batch
        of ``batch`` samples) that holds the samples, or None for a tensor shared by all
        samples.

        Raises:
            StateError: the module did not say the shape of its steps, or the dim the
                shape places the samples at does not have ``batch`` entries.
        """
        label = f"{module or '(the network)'} ({type(self._modules[module]).__name__})"
        step = self._step_shapes.get(module)
        if step is None:
            raise StateError(
                f"early exit cannot drop samples from the state of module {label}: it keeps "
                "a state but did not say the shape of its steps (a MemoryModule subclass "
                "should start each call from self._carried_state(step_shape))"
            )
        dim = value.dim() - len(step)
        if not step or dim < 0:
            return None  # fewer dims than a step: broadcast over the samples, shared
        if value.shape[dim] != batch:
            raise StateError(
                f"early exit cannot drop samples from the state of module {label}: its "
                f"state {key!r} has shape {tuple(value.shape)}, whose dim {dim} (where its "
                f"steps of shape {step} place the samples) does not have the batch's "
                f"{batch} entries"
            )
        return dim

    def select(self, state: NetworkState, keep: Tensor, batch: int) -> NetworkState:
        """``state`` (of a batch of ``batch`` samples) with only the samples ``keep``
        (indices into the batch, in order)."""
        chosen: NetworkState = {}
        for module, tensors in state.items():
            chosen[module] = {}
            for key, value in tensors.items():
                dim = self.batch_dim(module, key, value, batch)
                index = keep.to(value.device)
                chosen[module][key] = value if dim is None else value.index_select(dim, index)
        return chosen


#: ``(module name, attribute)`` -> the module, the tensor (held: its id cannot be
#: reused while recorded) and its in-place version counter then.
_Attributes = dict[tuple[str, str], tuple[nn.Module, Tensor, int]]


def _tensor_attributes(net: nn.Module) -> _Attributes:
    """The tensors held in plain attributes and buffers of every module of ``net``
    but its MemoryModules (whose state is declared; their other tensors are records,
    as a neuron's ``v_seq``)."""
    found: _Attributes = {}
    for name, module in net.named_modules():
        if isinstance(module, MemoryModule):
            continue
        held = {k: v for k, v in vars(module).items() if isinstance(v, Tensor)}
        held.update({k: v for k, v in module._buffers.items() if v is not None})
        for key, value in held.items():
            if not isinstance(value, nn.Parameter):
                found[(name, key)] = (module, value, value._version)
    return found


def _still_held(record: _Attributes) -> bool:
    """Whether every tensor of ``record`` is still its module's, not updated since."""
    for (_, key), (module, value, version) in record.items():
        held = module._buffers[key] if key in module._buffers else vars(module).get(key)
        if held is not value or value._version != version:
            return False
    return True


def _check_unchanged(before: _Attributes, after: _Attributes) -> None:
    """A StateError naming the first attribute tensor a step set, replaced or updated."""
    for (name, key), (module, value, version) in after.items():
        then = before.get((name, key))
        if then is None or then[1] is not value or then[2] != version:
            kind = type(module).__name__
            raise StateError(
                f"early exit cannot run module {name or '(the network)'!r} ({kind}) step by "
                f"step: each call changes its tensor {key!r}, a state kept outside spikeflow's "
                "MemoryModule protocol, which early exit can neither carry from one step to "
                "the next nor select the running samples of (results would be silently "
                "wrong). Keep the state through MemoryModule (_carried_state/_keep_state)"
            )


def selected_input(x: Tensor, keep: Tensor | None) -> Tensor:
    """The samples ``keep`` of a time-major chunk ``x`` ``[t, B, ...]`` (all if None)."""
    return x if keep is None else x.index_select(1, keep.to(x.device))


def check_step_output(output: object, batch: int, where: str) -> Tensor:
    """The output of one step ``[1, B, K]`` as ``[B, K]``, else a ShapeError (a
    DTypeError if it is not floating point)."""
    if not isinstance(output, Tensor) or output.dim() != 3 or output.shape[:2] != (1, batch):
        got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ShapeError(
            f"{where}: the model must return the output of every step, [T, B, K] (one "
            f"step: [1, {batch}, K]); it returned {got}. A model that averages over time "
            "or returns several outputs cannot be stopped early"
        )
    if not output.is_floating_point():
        raise DTypeError(
            f"{where}: the model's output must be floating point (scores come from its "
            f"softmax), got {output.dtype}"
        )
    return output[0]
