"""The registry of fused kernels: each neuron configuration's kernels, built once.

A fused call looks its kernels up by a string key (the custom operators of
:mod:`spikeflow.kernels.fused` take it as an argument): :func:`entry_key` maps a
configuration (backend, compute type, declaration, surrogate, fire/reset rule, which
operands are tensors, arrays or learnable, ...) to that key, tracing the step and
building the kernels the first time. Under ``torch.compile`` the same lookup runs as a
constant of the graph (:func:`compiled_entry_key`), so a fused neuron breaks no graph.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from spikeflow._cbuild import BuildError
from spikeflow._compile_marks import assume_constant_result
from spikeflow.kernels.captures import (
    cached_captured_numbers,
    captured_numbers,
    numpy_captures,
    surrogate_captured_numbers,
    unbound_cells,
)
from spikeflow.kernels.expr import TraceError
from spikeflow.kernels.reference import FiringRule
from spikeflow.kernels.spec import KernelSpec
from spikeflow.kernels.step import StepGraph, build_step, symbolic_surrogate_params
from spikeflow.neurons.declaration import NeuronDeclaration, cached_declaration
from spikeflow.surrogate import Surrogate

__all__ = [
    "Kernels",
    "Launcher",
    "Steps",
    "compiled_entry_key",
    "compiled_refusal",
    "entry",
    "entry_key",
    "forget",
    "step_graph",
    "surrogate_key",
]

#: Traced step graphs, or the message of the TraceError their tracing raised (so that a
#: neuron the tracer refuses is not traced again at every call of backend="auto"). Keyed
#: by the declaration and the current values its functions (and the surrogate's) read
#: from globals and closures (folded into the graph as constants; see captures.py).
_GRAPHS: dict[tuple, StepGraph | str] = {}


_SYMBOLIC: dict[tuple, tuple[str, ...]] = {}


def surrogate_key(sg: Surrogate) -> tuple[tuple, tuple[str, ...]]:
    """(what of ``sg`` the generated code depends on, its run-time parameters): the
    parameters the kernels take at run time count by name, the others by value, and
    the values its ``derivative`` (``primitive`` if not spiking) reads from globals and
    closures by value (:func:`~spikeflow.kernels.captures.surrogate_captured_numbers`;
    a ``TraceError`` for a container too large to key)."""
    cls, spiking = type(sg), sg.spiking
    captured = cached_captured_numbers((cls, spiking))
    names = tuple(sg.params)
    probe = (cls, spiking, names, captured)
    symbolic = _SYMBOLIC.get(probe)
    if symbolic is None:
        symbolic = _SYMBOLIC[probe] = symbolic_surrogate_params(sg)
    fixed = tuple((n, v) for n, v in sg.params.items() if n not in symbolic)
    return (cls, spiking, names, fixed, captured), symbolic


def step_graph(
    decl: NeuronDeclaration,
    rule: FiringRule,
    captured: tuple[object, ...] | None = None,
    dtype: torch.dtype = torch.float32,
) -> StepGraph:
    """The traced and differentiated step of ``decl`` under ``rule`` for inputs of
    ``dtype`` (what a traced value's ``.dtype`` reports; cached, also by ``captured``:
    :func:`~spikeflow.kernels.captures.captured_numbers` of ``decl``, read here when not
    given)."""
    sg = rule.surrogate
    sg_key, symbolic = surrogate_key(sg)
    if captured is None:
        captured = cached_captured_numbers(decl)
    key = (decl, captured, sg_key, rule.v_reset, rule.detach_reset, rule.strict, dtype)
    graph = _GRAPHS.get(key)
    if graph is None:
        try:
            graph = build_step(decl, sg, rule.v_reset, rule.detach_reset, rule.strict, symbolic,
                               dtype)  # fmt: skip
        except TraceError as exc:
            _GRAPHS[key] = str(exc)
            raise
        _GRAPHS[key] = graph
    if isinstance(graph, str):
        raise TraceError(graph)
    return graph


#: The backward's (spike-gradient step, recorded-membrane-gradient step), see Kernels.
Steps = tuple[int, int]


class Kernels(Protocol):
    """A compiled forward/backward pair."""

    def forward(self, T: int, n: int, buffers: list[Tensor], scalars: list[float]) -> None: ...

    def backward(
        self, T: int, n: int, buffers: list[Tensor | None], scalars: list[float], steps: Steps
    ) -> None:
        """``buffers`` holds ``None`` for an absent final-state gradient (zero);
        ``steps``: the elements between two steps of the spike gradient (``n``, or
        0 when it is one ``[N]`` row shared by every step, or -1, only to kernels
        with a true ``one_value_gradients`` attribute, when it is one element shared by
        every step and neuron), and the same for the recorded membrane's gradient (a
        ``record_v`` kernel's)."""


class Launcher(Protocol):
    """Builds the kernels of a spec for one backend."""

    def __call__(self, spec: KernelSpec) -> Kernels: ...


@dataclass(frozen=True)
class Entry:
    """Everything the operators need besides tensors, looked up by a string key."""

    kernels: Kernels
    spec: KernelSpec
    state_dtype: torch.dtype
    #: Per operand (declared parameters, then the threshold): ``False`` for a Python
    #: float (whose value comes with each call), else the tensor's (dtype, 0-dim) tag
    #: (:func:`~spikeflow.kernels.precision.operand_tag`), which is truthy.
    is_tensor: tuple


_ENTRIES: dict[str, Entry] = {}
#: Every configuration seen -> its key in _ENTRIES (a dict lookup instead of rebuilding
#: the key string on each call).
_KEYS: dict[tuple, str] = {}


def _launcher_name(launcher: Launcher) -> str:
    """The first field of a registry key: entries built by one launcher share it."""
    return getattr(launcher, "__name__", type(launcher).__name__)


def entry_key(
    launcher: Launcher,
    ctype: str,
    state_dtype: torch.dtype,
    checkpoint: int,
    decl: NeuronDeclaration,
    surrogate: Surrogate,
    sg_key: tuple,
    v_reset: float | None,
    detach_reset: bool,
    strict: bool,
    is_array: tuple[bool, ...],
    save_states: bool,
    record_v: bool,
    needs: tuple[bool, ...],
    is_tensor: tuple,
    input_dtype: torch.dtype = torch.float32,
    uniform_states: tuple[bool, ...] = (),
) -> str:
    """Build (once) the kernels for this configuration; return their registry key.

    The values of Python-float parameters and of the surrogate's run-time parameters
    are not part of it (they travel with each call), so a parameter or a surrogate
    ``alpha`` annealed as a float does not grow the registry. The values ``decl``'s
    functions read from globals and closures are (the tracer folds them into the code;
    the surrogate's are in ``sg_key``): a changed one builds its own kernels.
    Never traced by ``torch.compile`` (see :func:`compiled_entry_key`).
    """
    captured = cached_captured_numbers(decl)
    config = (launcher, ctype, state_dtype, checkpoint, decl, captured, sg_key, v_reset,
              detach_reset, strict, is_array, save_states, record_v, needs, is_tensor,
              input_dtype, uniform_states)  # fmt: skip
    key = _KEYS.get(config)
    if key is not None:
        return key
    rule = FiringRule(surrogate, v_reset, detach_reset, strict)
    graph = step_graph(decl, rule, captured, input_dtype)
    flags = (ctype, is_array, save_states, record_v, needs, checkpoint, is_tensor, state_dtype,
             uniform_states)  # fmt: skip
    key = f"{_launcher_name(launcher)}|{id(graph)}|{flags}"
    if key not in _ENTRIES:
        spec = KernelSpec(
            graph,
            ctype,
            array_params=is_array[:-1],
            theta_is_array=is_array[-1],
            save_states=save_states,
            record_v=record_v,
            grad_params=needs[:-1],
            grad_theta=needs[-1],
            checkpoint=checkpoint,
            operands=is_tensor,
            uniform_states=uniform_states,
        )
        _ENTRIES[key] = Entry(launcher(spec), spec, state_dtype, is_tensor)
    _KEYS[config] = key
    return key


def forget(launcher: Launcher) -> None:
    """Drop every kernel entry built by ``launcher`` (a one-off launcher's, say)."""
    prefix = f"{_launcher_name(launcher)}|"
    for config in [c for c, k in _KEYS.items() if k.startswith(prefix)]:
        del _KEYS[config]
    for key in [k for k in _ENTRIES if k.startswith(prefix)]:
        del _ENTRIES[key]


def entry(key: str) -> Entry:
    """The kernels registered under ``key`` (by :func:`entry_key`)."""
    found = _ENTRIES.get(key)
    if found is None:
        raise KeyError(
            f"no fused kernels are registered under {key!r} in this process: the key comes "
            "from a graph compiled elsewhere (or from before spikeflow.kernels.registry."
            "forget); compile the model again in this process"
        )
    return found


# -- under torch.compile --------------------------------------------------------------
# Code generation and compilation are Python and subprocess work that Dynamo cannot
# trace. The lookup runs instead as a constant of the graph
# (torch.compiler.assume_constant_result): Dynamo calls it once while tracing, with the
# real objects, and guards on its arguments. Every argument is therefore something whose
# change must give other kernels: plain values (a float by its bit pattern, whose
# .hex() makes Dynamo specialise on it), the declaration's functions (as their parts,
# see _function_parts) and the surrogate's type; never an instance Dynamo would guard on
# by identity (identical neurons share one graph).


def _surrogate_of(cls: type[Surrogate], spiking: bool, params: dict[str, float]) -> Surrogate:
    """A surrogate of type ``cls`` with these parameters: all the kernels depend on (its
    ``derivative`` and ``primitive`` are static functions of the parameters)."""
    sg = cls.__new__(cls)
    Surrogate.__init__(sg, spiking, **params)
    return sg


@assume_constant_result
def _run_time_parameters(cls: type[Surrogate], spiking: bool, names: tuple[str, ...]) -> tuple:
    """The surrogate parameters that the kernels take at run time (see
    :func:`surrogate_key`; their values do not matter here)."""
    return surrogate_key(_surrogate_of(cls, spiking, dict.fromkeys(names, 1.0)))[1]


def _function_parts(fn: object) -> tuple[object, object, tuple | None]:
    """A declaration's function as values Dynamo can hand to a constant function, each a
    separate argument (it cannot convert a bound method, nor a ``functools.partial``
    whose bound float it has made an input): (the function or callable object, the
    instance of a bound method or None, a partial's bound arguments or None). A float
    is passed by its bit pattern, which makes Dynamo guard on its value."""
    bound = None
    if isinstance(fn, functools.partial):
        bound = (
            tuple(_constant(v) for v in fn.args),
            tuple((k, _constant(v)) for k, v in fn.keywords.items()),
        )
        fn = fn.func
    if isinstance(fn, types.MethodType):
        return fn.__func__, fn.__self__, bound
    return fn, None, bound


def _constant(value: object) -> tuple:
    return ("float", value.hex()) if isinstance(value, float) else ("value", value)


def _value(constant: tuple) -> object:
    kind, value = constant
    return float.fromhex(value) if kind == "float" else value


#: Partials rebuilt from their parts, one per distinct (function, bound values): the
#: same declaration (and kernels) for every trace of an unchanged partial.
_PARTIALS: dict[tuple, functools.partial] = {}


def _function_of(fn: object, instance: object, bound: tuple | None) -> object:
    """The function :func:`_function_parts` took apart."""
    f = fn if instance is None else types.MethodType(fn, instance)  # type: ignore[arg-type]
    if bound is None:
        return f
    key = (f, bound)
    rebuilt = _PARTIALS.get(key)
    if rebuilt is None:
        args, keywords = bound
        rebuilt = _PARTIALS[key] = functools.partial(
            f,  # type: ignore[arg-type]
            *(_value(v) for v in args),
            **{k: _value(v) for k, v in keywords},
        )
    return rebuilt


def _declaration_of(parts: tuple, declared: tuple) -> NeuronDeclaration:
    """The declaration from the parts of its five functions and (name, returns_aux)."""
    charge, update, threshold, reset, fire = (
        _function_of(*parts[i : i + 3]) for i in (0, 3, 6, 9, 12)
    )
    name, returns_aux = declared
    return cached_declaration(charge, update, name, returns_aux, threshold, reset, fire)  # type: ignore[arg-type]


@assume_constant_result
def _compiled_refusal(declared: tuple, surrogate: tuple, *parts: object) -> str | None:
    """Why the fused kernels cannot run this declaration and surrogate under
    torch.compile (None if they can), checked before Dynamo traces the reading of their
    captured values. ``surrogate``: (its class, spiking); ``parts``: the declaration's
    five functions' :func:`_function_parts`, each one an argument."""
    decl = _declaration_of(parts, declared)
    for source, who in ((decl, f"{decl.name}'s equations"),
                        (surrogate, f"{surrogate[0].__name__}'s functions")):  # fmt: skip
        try:  # a container too large to key (Dynamo would walk it, then refuse)
            cached_captured_numbers(source)
        except TraceError as exc:
            return str(exc)
        numpy_values = numpy_captures(source)
        if numpy_values:
            return (
                f"{who} read numpy scalars (or containers holding numpy values) from "
                f"globals or closures ({', '.join(numpy_values)}), whose values "
                "torch.compile cannot guard on; make them Python numbers"
            )
        if unbound_cells(source):
            return f"{who} use closure variables not yet assigned, which torch.compile cannot read"
    return None


@assume_constant_result
def _raise_compiled_refusal(declared: tuple, surrogate: tuple, *parts: object) -> None:
    """:func:`_compiled_refusal` for an explicit fused backend: raises its TraceError
    while Dynamo traces. An exception raised by a constant function stops the
    compilation at once, with or without ``fullgraph`` (Dynamo reports it as an
    ``InternalTorchDynamoError`` holding the message); one raised in traced code would
    instead, without ``fullgraph``, make Dynamo run the frame eagerly and try each frame
    of the kernel's eager launch in turn (tens of seconds), where the value of a numpy
    scalar is not refused."""
    refused = _compiled_refusal(declared, surrogate, *parts)
    if refused is not None:
        raise TraceError(
            f"{refused} (a fused backend under torch.compile; backend='auto' runs the "
            "reference loop there)"
        )


def _declaration_parts(decl: NeuronDeclaration) -> tuple[tuple, tuple]:
    """(``declared``: (name, returns_aux), ``parts``: the five functions'
    :func:`_function_parts`), the arguments of the constant functions."""
    parts = (*_function_parts(decl.charge), *_function_parts(decl.update),
             *_function_parts(decl.threshold), *_function_parts(decl.reset_membrane),
             *_function_parts(decl.fire))  # fmt: skip
    return (decl.name, decl.charge_returns_aux), parts


def compiled_refusal(decl: NeuronDeclaration, rule: FiringRule) -> str | None:
    """Why the fused kernels cannot run ``decl`` with ``rule``'s surrogate under
    torch.compile whatever the equations (None if they can): numpy values, containers
    too large to compare or closure variables not yet assigned, read from globals or
    closures. As Dynamo traces it: ``backend="auto"`` checks it before it calls the
    fused path, and runs the reference loop in the graph instead."""
    declared, parts = _declaration_parts(decl)
    return _compiled_refusal(declared, (type(rule.surrogate), rule.surrogate.spiking), *parts)


@assume_constant_result
def _compiled_key(
    launcher: Launcher,
    ctype: str,
    state_dtype: torch.dtype,
    checkpoint: int,
    declared: tuple,
    captured: tuple,
    surrogate: tuple,
    rule: tuple,
    flags: tuple,
    *parts: object,
) -> tuple[str | None, tuple[str, str] | None]:
    """(the key, None), or (None, ("trace" or "build", the message of the TraceError
    the tracer raised or of the BuildError of a failed compilation)).

    It runs while Dynamo traces, outside the graph, so it reads the caches directly
    (``torch.compiler.is_compiling()`` is true here too). ``captured`` is what Dynamo
    traced to guard on (the declaration's captured values, the surrogate's); the key
    itself is built from the current values, as in eager mode, so that both modes share
    kernels. ``parts``: as for :func:`_compiled_refusal`."""
    decl = _declaration_of(parts, declared)
    cls, spiking, names, folded = surrogate
    symbolic = _run_time_parameters(cls, spiking, names)
    values = iter(folded)
    params = {n: 1.0 if n in symbolic else float.fromhex(next(values)) for n in names}
    sg = _surrogate_of(cls, spiking, params)
    v_reset_hex, detach_reset, strict = rule
    v_reset = None if v_reset_hex is None else float.fromhex(v_reset_hex)
    try:
        return entry_key(launcher, ctype, state_dtype, checkpoint, decl, sg,
                         surrogate_key(sg)[0], v_reset, detach_reset, strict,
                         *flags), None  # fmt: skip
    except TraceError as exc:  # raised again in traced code (Dynamo cannot pass it on)
        return None, ("trace", str(exc))
    except BuildError as exc:  # the C compiler failed: the same
        return None, ("build", str(exc))


def compiled_entry_key(
    launcher: Launcher,
    ctype: str,
    state_dtype: torch.dtype,
    checkpoint: int,
    decl: NeuronDeclaration,
    rule: FiringRule,
    is_array: tuple[bool, ...],
    save_states: bool,
    record_v: bool,
    needs: tuple[bool, ...],
    is_tensor: tuple,
    input_dtype: torch.dtype = torch.float32,
    uniform_states: tuple[bool, ...] = (),
) -> tuple[str, tuple[str, ...]]:
    """:func:`entry_key` as Dynamo traces it, without a graph break: (the key, the
    surrogate's run-time parameters); a TraceError if the fused kernels cannot run.

    Dynamo guards on every value the kernels depend on: the declaration's functions and
    captured values, the surrogate's type, its ``spiking``, the values of its
    parameters that the kernels fold in and those its functions read from globals and
    closures, the reset rule. Not on the surrogate instance or the neuron: identical
    neurons share one compiled graph. A refusal of :func:`compiled_refusal` stops the
    compilation (``backend="auto"`` checked it before)."""
    declared, parts = _declaration_parts(decl)
    sg = rule.surrogate
    cls, params = type(sg), sg.params
    _raise_compiled_refusal(declared, (cls, sg.spiking), *parts)
    names = tuple(params)
    symbolic = _run_time_parameters(cls, sg.spiking, names)
    folded = tuple(float(v).hex() for n, v in params.items() if n not in symbolic)
    v_reset = None if rule.v_reset is None else float(rule.v_reset).hex()
    key, refused = _compiled_key(
        launcher, ctype, state_dtype, checkpoint, declared,
        (captured_numbers(decl), surrogate_captured_numbers(cls, sg.spiking)),
        (cls, sg.spiking, names, folded), (v_reset, rule.detach_reset, rule.strict),
        (is_array, save_states, record_v, needs, is_tensor, input_dtype, uniform_states),
        *parts,
    )  # fmt: skip
    if refused is not None:
        if refused[0] == "build":
            raise BuildError(refused[1])
        raise TraceError(refused[1])
    return key, symbolic
