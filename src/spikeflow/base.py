"""Step modes and the carried-state protocol shared by every stateful module.

Tensors that flow between spiking layers are time-major: ``[T, B, ...]`` in multi-step
mode (the default, one call per sequence) and ``[B, ...]`` in single-step mode (one
call per time step).

Carried state is explicit (design principle 3): a :class:`MemoryModule` starts every
multi-step call from its initial state, so running two batches in a row never needs a
manual reset. State is kept between calls only while the module is *streaming*
(:func:`spikeflow.functional.streaming` or :func:`spikeflow.functional.set_streaming`),
which is what chunked multi-step input and single-step calls need. A single-step call
outside streaming raises :class:`~spikeflow.errors.StateError` instead of silently
restarting or silently continuing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from spikeflow._checks import broadcasts_to
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.explicit_state import check_state, check_state_device, run_explicit

__all__ = [
    "MemoryModule",
    "SequenceOnly",
    "StepMode",
    "StepModule",
    "check_step_mode",
    "check_time_major",
    "set_constants",
]

StepMode = Literal["s", "m"]
_STEP_MODES = ("s", "m")


def check_step_mode(mode: str) -> StepMode:
    """Return ``mode`` if it is ``'s'`` (single-step) or ``'m'`` (multi-step), else raise."""
    if mode not in _STEP_MODES:
        raise ConfigurationError(
            f"step_mode must be 's' (single-step, input [B, ...]) or 'm' (multi-step, "
            f"input [T, B, ...]); got {mode!r}"
        )
    return mode  # type: ignore[return-value]


def check_time_major(x: Tensor, what: str, min_dims: int = 2, single_step: bool = True) -> None:
    """Raise a :class:`ShapeError` unless ``x`` has at least ``min_dims`` dimensions
    (``single_step``: whether ``what`` also runs with ``step_mode='s'``, which the
    message then suggests)."""
    if x.dim() < min_dims:
        other = " or use step_mode='s'" if single_step else ""
        raise ShapeError(
            f"{what} in multi-step mode expects a time-major tensor [T, B, ...] with at "
            f"least {min_dims} dimensions; got shape {tuple(x.shape)}. Add the time "
            f"dimension (x.unsqueeze(0) for one step){other}."
        )


class StepModule:
    """Mixin for modules that have a ``step_mode`` (``'s'`` or ``'m'``)."""

    _step_mode: StepMode = "m"
    #: True for containers that own the time dimension of their children (the children
    #: are per-step modules); :func:`spikeflow.functional.set_step_mode` stops there.
    owns_children_time: bool = False
    #: True for sequence containers whose step mode is always ``'m'``.
    multi_step_only: bool = False

    @property
    def step_mode(self) -> StepMode:
        """``'m'``: input is ``[T, B, ...]``; ``'s'``: input is one step ``[B, ...]``."""
        return self._step_mode

    @step_mode.setter
    def step_mode(self, mode: str) -> None:
        self._step_mode = check_step_mode(mode)
        modules = self.__dict__.get("_modules", {})
        for name in self.step_mode_parts:
            part = modules.get(name)
            if part is not None:  # None: an optional part left out, or not built yet
                part.step_mode = self._step_mode

    #: Names of child modules that run in this module's step mode (set along with it).
    step_mode_parts: tuple[str, ...] = ()


class SequenceOnly(StepModule):
    """Mixin for modules that only run whole sequences: ``step_mode`` is always ``'m'``
    and setting another mode raises a ConfigurationError giving ``sequence_reason``
    (and ``sequence_hint``, what to use instead)."""

    #: Why the module needs the whole sequence, for the error.
    sequence_reason: str = "it takes a whole sequence"
    #: What to use instead, appended to the error ("" for nothing).
    sequence_hint: str = ""

    @property
    def step_mode(self) -> StepMode:
        """Always ``'m'``: the input is a whole sequence ``[T, B, ...]``."""
        return "m"

    @step_mode.setter
    def step_mode(self, mode: str) -> None:
        if mode != "m":
            hint = f". {self.sequence_hint}" if self.sequence_hint else ""
            raise ConfigurationError(
                f"{type(self).__name__} only runs in multi-step mode ({self.sequence_reason}); "
                f"got step_mode={mode!r}{hint}"
            )


class MemoryModule(StepModule, nn.Module):
    """A module whose output depends on earlier time steps: the base class of your own
    stateful modules (SpikingJelly's ``base.MemoryModule``).

    Declare each state variable in ``__init__`` with :meth:`register_memory` and write
    one time step in ``single_step_forward(x)``, reading and assigning the variables as
    attributes (``self.v = self.v + x``). The module then runs ``[T, B, ...]`` in
    multi-step mode (``multi_step_forward``, by default the steps in a loop; override
    it for a faster form) and ``[B, ...]`` in single-step mode, starts every call from
    the initial values unless it is streaming, and works with
    :func:`~spikeflow.functional.reset_net`, :func:`~spikeflow.functional.detach_net`,
    :func:`~spikeflow.functional.streaming`, :func:`~spikeflow.functional.run` and the
    monitors as spikeflow's own neurons do. After a call, each variable holds its last
    value; :meth:`reset` gives back the initial one.

    spikeflow's built-in modules define ``forward`` themselves and keep their carried
    state as a ``dict[str, Tensor]`` through :meth:`_carried_state` (at the start of a
    call) and :meth:`_keep_state` (at its end).
    """

    #: Attributes that may hold tensors of the last call's autograd graph, besides the
    #: carried state (a neuron's recorded ``v_seq``); see :meth:`__getstate__`.
    _graph_attributes: tuple[str, ...] = ()

    def __init__(self, step_mode: StepMode = "m") -> None:
        super().__init__()
        self.step_mode = step_mode
        self.streaming = False
        self._state: dict[str, Tensor] | None = None

    def _begin_steps(self) -> None:
        """A container is about to run the steps of one of its calls through this
        module, one single-step call each (:func:`spikeflow.layers._time.stepping_memory`):
        what stays the same for those steps may be computed once. Calls nest."""

    def _end_steps(self) -> None:
        """The steps of :meth:`_begin_steps` are done."""

    def _graph_names(self) -> tuple[str, ...]:
        """:attr:`_graph_attributes` and the registered memories."""
        return self._graph_attributes + tuple(self.__dict__.get("_memory_initials") or ())

    def _graph_tensors(self) -> list[Tensor]:
        """The carried state's tensors and those of :attr:`_graph_attributes`: what may
        belong to the last call's autograd graph."""
        found = list((self.__dict__.get("_state") or {}).values())
        for name in self._graph_names():
            value = self.__dict__.get(name)
            if isinstance(value, Tensor):
                found.append(value)
        return found

    def __getstate__(self) -> dict[str, Any]:
        """What pickle (and ``copy.copy``) copies: the carried state and the tensors of
        :attr:`_graph_attributes` as values, detached from the last call's autograd
        graph (PyTorch cannot deep-copy a tensor that is not a graph leaf, so a model
        copied after a training step, for an EMA or by the NIR export, failed)."""
        state = super().__getstate__()
        state.pop("_explicit", None)  # a copy made inside run() is not in that run
        if state.get("_state") is not None:
            state["_state"] = {k: v.detach() for k, v in state["_state"].items()}
        for name in self._graph_names():
            if isinstance(state.get(name), Tensor):
                state[name] = state[name].detach()
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> MemoryModule:
        """A deep copy whose carried state and recorded tensors are detached values (as
        :meth:`__getstate__`), each registered in ``memo`` under the original's id, so
        that other references to it among the copied objects share the one copy.
        Defined here, not left to ``__getstate__``, because
        ``torch.nn.utils.parametrize`` gives a parametrized module a ``__deepcopy__``
        of its own unless its class has one."""
        replica = type(self).__new__(type(self))
        memo[id(self)] = replica
        keep = memo.setdefault(id(memo), [])  # deepcopy's keep-alive list
        for tensor in self._graph_tensors():
            if id(tensor) not in memo:
                memo[id(tensor)] = copy.deepcopy(tensor.detach(), memo)
                keep.append(tensor)
        attributes = dict(self.__dict__)
        attributes.pop("_compiled_call_impl", None)  # as nn.Module.__getstate__
        attributes.pop("_explicit", None)  # a copy made inside run() is not in that run
        replica.__dict__ = copy.deepcopy(attributes, memo)
        return replica

    @property
    def state(self) -> dict[str, Tensor] | None:
        """The carried state (``None`` when not streaming or right after a reset)."""
        return self._state

    def reset(self) -> None:
        """Forget the carried state; the next call starts from the initial state (the
        registered memories hold their initial values again)."""
        self._state = None
        for name, initial in (self.__dict__.get("_memory_initials") or {}).items():
            self.__dict__[name] = initial.clone() if isinstance(initial, Tensor) else initial

    def detach(self) -> None:
        """Cut the autograd graph of the carried state (truncated BPTT)."""
        if self._state is not None:
            self._state = {k: v.detach() for k, v in self._state.items()}
        for name in self.__dict__.get("_memory_initials") or ():
            if isinstance(self.__dict__.get(name), Tensor):
                self.__dict__[name] = self.__dict__[name].detach()

    # -- your own stateful module: register_memory + single_step_forward ------------------

    def register_memory(self, name: str, initial: float | Tensor) -> None:
        """Declare the state variable ``name`` with its initial value (a number, kept
        as a 0-dim tensor that broadcasts, or a tensor), read and assigned as
        ``self.<name>`` in :meth:`single_step_forward`. Not a parameter or buffer: it
        is not in the ``state_dict``.

        Raises:
            ConfigurationError: ``name`` is not an identifier or is already an
                attribute of the module; ``initial`` is neither a number nor a tensor;
                called before ``MemoryModule.__init__``.
        """
        if "_state" not in self.__dict__:
            raise ConfigurationError(
                f"{type(self).__name__}.register_memory: call super().__init__() first"
            )
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigurationError(f"register_memory: name must be an identifier, got {name!r}")
        if hasattr(self, name):
            raise ConfigurationError(
                f"register_memory: {type(self).__name__} already has an attribute {name!r}"
            )
        value = self._memory_value(initial, f"register_memory: the initial value of {name!r}")
        self.__dict__.setdefault("_memory_initials", {})[name] = value
        self.__dict__[name] = value.clone() if isinstance(value, Tensor) else value

    def named_memories(self) -> Iterator[tuple[str, Any]]:
        """``(name, current value)`` of each memory of :meth:`register_memory`, in
        registration order (SpikingJelly's ``named_memories``). A built-in module
        keeps its carried state in :attr:`state` instead and yields nothing here."""
        for name in self.__dict__.get("_memory_initials") or ():
            yield name, self.__dict__[name]

    def memories(self) -> Iterator[Any]:
        """The current value of each memory of :meth:`register_memory`, in registration
        order (SpikingJelly's ``memories``)."""
        for _, value in self.named_memories():
            yield value

    def set_reset_value(self, name: str, value: float | Tensor) -> None:
        """Make ``value`` the initial value of the memory ``name``: what :meth:`reset`
        (and ``reset_net``) gives back and what every call that does not continue a
        sequence (not streaming, ``functional.run`` without a state) starts from. The
        current value is left as it is. ``value`` is copied (detached), so changing
        the tensor passed afterwards changes nothing (SpikingJelly deep-copies it).

        Raises:
            ConfigurationError: ``name`` is not a memory of :meth:`register_memory`
                (SpikingJelly silently keeps it), or ``value`` is neither a number nor a
                tensor.
        """
        initials = self.__dict__.get("_memory_initials") or {}
        if not isinstance(name, str) or name not in initials:
            raise ConfigurationError(
                f"{type(self).__name__}.set_reset_value: {name!r} is not a memory of "
                f"register_memory (memories: {list(initials) or 'none'})"
            )
        initials[name] = self._memory_value(value, f"set_reset_value: the value of {name!r}")

    @staticmethod
    def _memory_value(value: object, what: str) -> float | Tensor:
        """A memory's initial value as kept: a float, or a detached copy of a tensor."""
        if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
            raise ConfigurationError(
                f"{what} must be a number or a tensor, got {type(value).__name__}"
            )
        return value.detach().clone() if isinstance(value, Tensor) else float(value)

    def single_step_forward(self, x: Tensor) -> Any:
        """One time step ``[B, ...]`` of a module built with :meth:`register_memory`:
        read and assign its memories as attributes; return the step's output. By
        default it calls :meth:`single_step_functional_forward` (SpikingJelly 2.0's
        pure form) with the memories in registration order."""
        if type(self).single_step_functional_forward is MemoryModule.single_step_functional_forward:
            raise NotImplementedError(
                f"{type(self).__name__}: define single_step_forward(x) (one step, with the "
                "memories of register_memory as attributes), single_step_functional_forward"
                "(inputs, states), or forward itself"
            )
        names = list(self.__dict__.get("_memory_initials") or ())
        outputs, states = self.single_step_functional_forward(
            (x,), tuple(self.__dict__[name] for name in names)
        )
        if len(states) != len(names):
            raise StateError(
                f"{type(self).__name__}.single_step_functional_forward returned "
                f"{len(states)} states for the {len(names)} memories {names}"
            )
        self.__dict__.update(zip(names, states, strict=True))
        return outputs[0] if len(outputs) == 1 else outputs

    def single_step_functional_forward(
        self, inputs: tuple[Tensor, ...], states: tuple[Tensor, ...]
    ) -> tuple[tuple[Any, ...], tuple[Tensor, ...]]:
        """One step as a pure function (SpikingJelly 2.0's form): ``(outputs, states
        after the step)``, the states in the order of :meth:`register_memory`. Define
        this or :meth:`single_step_forward`."""
        raise NotImplementedError(
            f"{type(self).__name__}: define single_step_forward or single_step_functional_forward"
        )

    def multi_step_forward(self, x_seq: Tensor) -> Any:
        """The steps of ``x_seq`` (``[T, B, ...]``) through :meth:`single_step_forward`,
        outputs stacked along a new dim 0 (a tuple of outputs: each stacked)."""
        outputs = [self.single_step_forward(x) for x in x_seq]
        if isinstance(outputs[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*outputs, strict=True))
        return torch.stack(outputs)

    def forward(self, x: Tensor) -> Any:
        """Run :meth:`multi_step_forward` or :meth:`single_step_forward` from the carried
        (or initial) memories, and keep the final ones as the carried state."""
        memories = self.__dict__.get("_memory_initials")
        if not memories:
            raise NotImplementedError(
                f"{type(self).__name__}: a MemoryModule declares its state with "
                "register_memory(name, initial) and defines single_step_forward(x), or "
                "defines forward itself"
            )
        owner = type(self).__name__
        if not isinstance(x, Tensor):
            raise ConfigurationError(f"{owner}: the input must be a tensor, got {type(x).__name__}")
        if self.step_mode == "m":
            check_time_major(x, owner)
            step_shape = x.shape[1:]
        else:
            step_shape = x.shape
        start = self._carried_state(step_shape)
        explicit = self._explicit_call()
        before = {name: self.__dict__[name] for name in memories} if explicit else {}
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        for name, initial in memories.items():
            if start is not None:
                value = start[name]  # a missing name: run() names it
            elif isinstance(initial, Tensor):
                value = initial.to(x.device, dtype if initial.is_floating_point() else None)
            else:
                value = torch.tensor(initial, dtype=dtype, device=x.device)
            self.__dict__[name] = value
        try:
            out = (
                self.multi_step_forward(x) if self.step_mode == "m" else self.single_step_forward(x)
            )
            final = {}
            for name in memories:
                value = self.__dict__[name]
                final[name] = value if isinstance(value, Tensor) else torch.as_tensor(value)
            self._keep_state(final)
        finally:
            self.__dict__.update(before)  # run() leaves the module as it was
        return out

    @property
    def _carrying(self) -> bool:
        """Whether calls carry state from one to the next: streaming, or inside an
        explicit-state call (:meth:`run`), whose state is carried as streaming's is."""
        return self.streaming or self.__dict__.get("_explicit") is not None

    def _explicit_call(self) -> bool:
        """Whether this call is part of an explicit-state call (:meth:`run`): a module
        that keeps state outside :meth:`_keep_state` (a step counter) must put it in
        the state it keeps then."""
        return self.__dict__.get("_explicit") is not None

    def starting_state(self) -> dict[str, Tensor] | None:
        """The state the next call starts from: inside :meth:`run`, the state it was
        given or an earlier call of the same run kept; else the carried state while
        streaming; None for the initial state. What forward pre-hooks read (the
        operation counter's carried recurrent output)."""
        explicit = self.__dict__.get("_explicit")
        if explicit is not None:
            return explicit.current
        return self._state if self.streaming else None

    def continues_sequence(self) -> bool:
        """Whether the next call continues a sequence rather than starting one (it
        starts from a state: :meth:`starting_state`). What a forward pre-hook that
        counts sequences (the training monitors) asks."""
        return self.starting_state() is not None

    def run(
        self, x: Any, state: Mapping[str, Tensor] | None = None
    ) -> tuple[Any, dict[str, Tensor]]:
        """Call the module as a pure function of its input and an explicit state:
        ``(output, state after the call)`` (Norse's ``cell(x, state)``, snnTorch's
        ``lif(x, mem)``). ``state`` None starts from the initial state; pass the returned
        state to the next call to continue the sequence (a whole sequence ``[T, B, ...]``
        in multi-step mode, one step ``[B, ...]`` in single-step mode, which needs no
        streaming here). Gradients flow through the state from call to call (detach it
        for truncated BPTT). The module's own carried state, ``streaming`` flag and
        step mode are left as they were. Forward hooks run as in any call. A module
        that keeps no state for a call (dropout in eval mode, a whole-sequence call of
        ``MaskedPSN``) returns ``{}``, which may be passed back in.

        Raises:
            ConfigurationError: the module holds other stateful modules (their state
                would not be in ``state``: stream the model instead), or ``state`` is not
                a mapping of names to tensors.
            StateError: a state whose tensors do not fit this input's steps or are on
                another device than the input, a state missing one of the module's keys,
                or a call inside another ``run`` of the same module.
        """
        inner = [
            n for n, m in self.named_modules() if m is not self and isinstance(m, MemoryModule)
        ]
        if inner:
            raise ConfigurationError(
                f"{type(self).__name__}.run: it holds other stateful modules ({', '.join(inner)}) "
                "whose state run() does not pass in or out: use "
                "spikeflow.functional.run(net, x, state), which takes every module's"
            )
        from spikeflow.functional import check_streamable

        check_streamable(self)
        given = check_state(state, f"{type(self).__name__}.run: state")
        check_state_device(given, x, f"{type(self).__name__}.run: state")
        output, final = run_explicit({"": self}, {"": given}, lambda: self(x))
        return output, final.get("", {})

    def _carried_state(self, step_shape: torch.Size) -> dict[str, Tensor] | None:
        """State to start this call from: ``None`` means the initial state.

        ``step_shape`` is the shape of one time step of the input, used to catch a
        carried state that belongs to a different batch.
        """
        explicit = self.__dict__.get("_explicit")
        if explicit is not None:  # run(x, state): the given state, then the last call's
            explicit.step_shape = tuple(step_shape)
            if explicit.current is not None:
                self._check_state_fits(explicit.current, step_shape, "the state given to run()")
            return explicit.current
        if not self.streaming:
            if self.step_mode == "s":
                raise StateError(
                    f"{type(self).__name__} is in single-step mode, which carries state "
                    "from one call to the next, but streaming is off. Run the steps of "
                    "one sequence inside `with spikeflow.functional.streaming(net):` "
                    "(state is reset on entry and exit), or call "
                    "spikeflow.functional.set_streaming(net, True) and "
                    "spikeflow.functional.reset_net(net) between sequences, or pass "
                    "the state explicitly: `out, state = spikeflow.functional.run(net, "
                    f"x_t, state)`. This call's input is one step of shape {tuple(step_shape)}; "
                    "to run whole sequences [T, B, ...] in one call again, switch back "
                    "with spikeflow.functional.set_step_mode(net, 'm')."
                )
            return None
        state = self._state
        if state is not None:
            self._check_state_fits(state, step_shape, "carried state")
            # The steps' shape the state was carried from: one sequence keeps it (a
            # state of 0-dim values alone, a step counter, has no shape to compare).
            previous = self.__dict__.get("_carried_shape")
            if previous is not None and previous != tuple(step_shape):
                raise StateError(
                    f"{type(self).__name__}: its carried state is from steps of shape "
                    f"{previous}, but this input has steps of shape {tuple(step_shape)}. A "
                    "new sequence started: call spikeflow.functional.reset_net(net) "
                    "between sequences."
                )
        self._carried_shape = tuple(step_shape)
        return state

    def _check_state_fits(
        self, state: Mapping[str, Tensor], step_shape: torch.Size, what: str
    ) -> None:
        """A StateError naming the first tensor of ``state`` that does not fit steps of
        ``step_shape``."""
        for name, value in state.items():
            # Trailing dims must fit one step (a queue of steps may lead with more).
            trailing = value.shape[max(0, value.dim() - len(step_shape)) :]
            # The batch dim must match exactly: a state of batch 1 broadcasting over a
            # larger batch is an earlier sequence's, not this one's (other dims may
            # broadcast: Dropout2d's [B, C, 1, 1] mask).
            other_batch = len(trailing) == len(step_shape) > 0 and trailing[0] != step_shape[0]
            if value.dim() > 0 and (other_batch or not broadcasts_to(trailing, step_shape)):
                if what == "carried state":
                    advice = (
                        " from an earlier call, but this input has steps of shape "
                        f"{tuple(step_shape)}. A new sequence started: call "
                        "spikeflow.functional.reset_net(net) between sequences."
                    )
                else:
                    advice = f", which does not fit this input's steps of shape {tuple(step_shape)}"
                raise StateError(
                    f"{type(self).__name__}: {what} '{name}' has shape {tuple(value.shape)}"
                    + advice
                )

    def _keep_state(self, state: dict[str, Tensor]) -> None:
        """Store ``state`` for the next call if streaming (otherwise drop it)."""
        explicit = self.__dict__.get("_explicit")
        if explicit is not None:  # run(x, state): handed back, not kept
            if explicit.final is not None and self.step_mode == "m":
                raise StateError(
                    f"{type(self).__name__} ran two multi-step calls in one run() (a module "
                    "used twice in the forward): the second would start from the first's "
                    "final state, where a plain call starts each from the initial state. "
                    "Give each use its own module."
                )
            explicit.final = explicit.current = state
            return
        if self.streaming:
            self._state = state


def set_constants(module: nn.Module, values: dict[str, Any]) -> None:
    """Set each of ``values`` on ``module``: a tensor as a buffer (it follows ``.to()`` and
    is saved in the ``state_dict``), anything else (a float) as a plain attribute."""
    for name, value in values.items():
        if isinstance(value, Tensor):
            module.register_buffer(name, value)
        else:
            setattr(module, name, value)
