"""The values a neuron's equations, or a surrogate's, read from outside their arguments.

The tracer folds what an equation reads into constants of the generated code, so a
charge, update or threshold function that reads a module-level number (``GAIN = 0.5``),
a flag (``MODE = "quadratic"``, an Enum member) or an entry of a module-level container
(``CFG["gain"]``, ``COEF[0]``), or a closure's, would otherwise keep what it read at
the first call for ever. The same holds for a custom surrogate's static ``derivative``
(the backward) and ``primitive`` (the forward of a ``spiking=False`` surrogate). The
current values are part of the keys under which the fused backends cache the traced
step and the kernels (:func:`spikeflow.kernels.registry.step_graph`, ``entry_key`` and
``surrogate_key``), so a changed value is traced and compiled again (once per value;
the build caches key on the generated source, so a value seen before reloads its
kernel). What is keyed how (:func:`_value_key`):

- numbers (int, float, bool, complex, numpy scalars, ...), ``None``, ``str``, ``bytes``
  and ``torch.dtype``: by value; Enum members by class and name;
- ``tuple``, ``list``, ``dict``, ``set``, ``frozenset`` and their subclasses
  (namedtuples, ``OrderedDict``, ...): by a snapshot of their contents (keys too),
  recursively, where the other objects they hold count by identity and tensors by
  type; at most :data:`MAX_ENTRIES` entries in all and :data:`MAX_DEPTH` levels, else
  the fused backends refuse the neuron (``TraceError``: ``backend="auto"`` runs the
  reference loop) rather than risk a stale kernel;
- anything else (a module, function, class, tensor, an object whose attributes are
  read): by its type alone, since its identity is not what the tracer folds in.

Which globals and closure cells to read is worked out once per declaration or surrogate
(every global name and closure cell the functions use, behind ``functools.partial``,
bound methods and ``functools.wraps`` decorators too, whatever their value at that
moment: ``None`` or a tensor may become a number later); each call then reads only
those (:func:`captured_numbers`: a few hundred nanoseconds for numbers, flags and
modules, about a microsecond for a small config dict; at worst, 256 entries of mixed
types, about 0.1 ms).
"""

from __future__ import annotations

import dis
import enum
import functools
import numbers
import struct
import types
from collections.abc import Callable, Iterable, Iterator

import torch

from spikeflow._compile_marks import assume_constant_result
from spikeflow.kernels.expr import TraceError
from spikeflow.neurons.declaration import NeuronDeclaration, functions_behind

__all__ = ["MAX_DEPTH", "MAX_ENTRIES", "captured_numbers", "surrogate_captured_numbers"]

Reader = Callable[..., tuple]

#: What a reader reads: a neuron's declaration, or a surrogate's (class, spiking).
Source = object

#: At most this many entries (elements, dict items), nested containers' included, are
#: read from one captured container at every call; a larger one is refused.
MAX_ENTRIES = 256
#: At most this many levels of containers in one captured value.
MAX_DEPTH = 8


def _nothing(raw: bool = False) -> tuple:
    return ()


#: Per declaration or surrogate (class, spiking), the function that reads its captured
#: values' current keys.
_READERS: dict[object, tuple[Reader, tuple, int]] = {}


def captured_numbers(source: Source) -> tuple[object, ...]:
    """Keys of the current values that a declaration's charge, update and threshold
    functions (or :func:`surrogate_captured_numbers`' surrogate functions, for a (class,
    spiking) ``source``) read from their module's globals or their closures (see the
    module docstring): a
    number by its ``repr``, so that ``1``, ``1.0`` and ``True``, ``0.0`` and ``-0.0``
    differ and a NaN equals itself. Empty when there are none. A ``TraceError`` for a
    container too large to key at every call.

    Under ``torch.compile`` Dynamo traces the reading instead, so that it guards on
    every value read (and the result is only for those guards, see :func:`_traced_key`)."""
    if torch.compiler.is_compiling():
        # Traced, not cached: a dict filled while tracing would differ between
        # Dynamo's analysis passes.
        return tuple(_traced_key(v) for v in _reader(source)(raw=True))
    return cached_captured_numbers(source)


def surrogate_captured_numbers(cls: type, spiking: bool) -> tuple[object, ...]:
    """:func:`captured_numbers` of the surrogate class ``cls``'s ``derivative`` (if
    ``spiking``: the backward's) or ``primitive`` (else: the forward's)."""
    return captured_numbers((cls, spiking))


def cached_captured_numbers(source: Source) -> tuple[object, ...]:
    """:func:`captured_numbers` (or :func:`surrogate_captured_numbers` of a (class,
    spiking) pair) through the per-source reader cache, also for code that runs while
    Dynamo traces."""
    entry = _READERS.get(source)
    if entry is None or not all(fn.__code__ is code for fn, code in entry[1]):
        # New, or a function's code was replaced in place (IPython's autoreload does
        # that): read again what the new code reads, and key it apart.
        version = 0 if entry is None else entry[2] + 1
        codes = tuple((fn, fn.__code__) for top in _functions_of(source)[1]
                      for fn in functions_behind(top))  # fmt: skip
        entry = _READERS[source] = (_reader(source), codes, version)
    keys = entry[0]()
    return keys if entry[2] == 0 else (*keys, ("code version", entry[2]))


def numpy_captures(source: Source) -> list[str]:
    """The captured values of ``source`` that are numpy scalars, or containers holding
    numpy values (their ``repr``), which Dynamo turns into tensors: torch.compile cannot
    guard on their values. Call it after :func:`cached_captured_numbers` succeeded
    (which bounds the containers)."""
    return [
        repr(v)
        for v in _reader(source)(raw=True)
        if _numpy_scalar(v) or (isinstance(v, _CONTAINER_TYPES) and _holds_numpy(v, MAX_DEPTH))
    ]


def unbound_cells(source: Source) -> bool:
    """Whether a closure variable ``source``'s functions use is not assigned yet (Dynamo
    cannot trace reading such a cell)."""
    return any(v is _EMPTY for v in _reader(source)(raw=True))


def _holds_numpy(value: object, depth: int) -> bool:
    """Whether ``value`` is or holds (in containers, up to ``depth`` levels) a numpy
    value."""
    if type(value).__module__ == "numpy":
        return True
    if depth <= 0 or not isinstance(value, _CONTAINER_TYPES):
        return False
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    return any(_holds_numpy(v, depth - 1) for v in items)  # type: ignore[union-attr]


def _traced_key(value: object, nested: bool = False) -> object:
    """What Dynamo traces to guard on a captured value: a float by its bit pattern
    (``repr`` cannot read a float Dynamo made an input; ``.hex()`` specialises on it),
    an int, bool, str, bytes, dtype or None by ``repr`` (Dynamo keeps them constants),
    an Enum member by class and name, a container by its contents (Dynamo guards on
    them; inside one, another object by its identity, a tensor by type), anything else
    by its type alone. Numpy values are refused before (see :func:`numpy_captures`), as
    are containers too large (:func:`cached_captured_numbers`)."""
    if isinstance(value, float) and not _numpy_scalar(value):
        return value.hex()
    if isinstance(value, enum.Enum):
        return (type(value), value.name)
    if value is None or (
        isinstance(value, (int, str, bytes, complex, torch.dtype)) and not _numpy_scalar(value)
    ):
        return repr(value)
    t = type(value)
    if isinstance(value, dict):
        items = value.items()
        return (t.__name__, tuple((_traced_key(k, True), _traced_key(v, True)) for k, v in items))
    if isinstance(value, (tuple, list, set, frozenset)):
        return (t.__name__, tuple(_traced_key(v, True) for v in value))
    if nested and not isinstance(value, torch.Tensor):
        return ("id", id(value))
    return f"<{t.__name__}>"


#: The instructions that read a global name (LOAD_NAME: code run at module level).
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})


def _global_loads(code: types.CodeType) -> Iterator[str]:
    for instruction in dis.get_instructions(code):
        if instruction.opname in _GLOBAL_LOADS:
            yield instruction.argval
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_loads(const)


@assume_constant_result  # Dynamo cannot trace the disassembly
def _code_names(code: types.CodeType) -> tuple[str, ...]:
    """The global names ``code`` and the code nested in it read, each once (not the
    attribute and method names that ``co_names`` also holds: ``x.exp()`` reads no
    global ``exp``)."""
    return tuple(dict.fromkeys(_global_loads(code)))


#: Exact types keyed by ``repr``: it is their value, and it tells them apart (``1``,
#: ``1.0``, ``True``; ``0.0``, ``-0.0``; a str from a number; a NaN equals itself).
_BY_REPR = frozenset({int, float, bool, complex, str, bytes, type(None), torch.dtype})
_CONTAINER_TYPES = (tuple, list, dict, set, frozenset)
_CONTAINERS = frozenset(_CONTAINER_TYPES)


class _Unkeyable(Exception):
    """A container too large or too deep to key at every call."""


#: The types keyed by their name alone (modules, functions, ...), found so far.
_BY_TYPE: dict[type, str] = {}


def _value_key(value: object) -> object:
    """The cache key of a captured value (see the module docstring)."""
    t = type(value)
    if t in _BY_REPR:
        return repr(value)
    key = _BY_TYPE.get(t)
    if key is not None:
        return key
    if t in _CONTAINERS:
        return _container_key(value)
    if isinstance(value, enum.Enum):
        return (t, value._name_)
    if isinstance(value, numbers.Number) or _numpy_scalar(value):
        return repr(value)
    if isinstance(value, _CONTAINER_TYPES):  # a namedtuple, an OrderedDict, ...
        return _nested_key(value, [MAX_ENTRIES], MAX_DEPTH)
    key = f"<{t.__name__}>"
    if t.__module__ != "numpy":  # a numpy array may be a scalar (0-dim) or not
        _BY_TYPE[t] = key
    return key


def _container_key(value: object) -> object:
    """A snapshot of a container's contents: its ``repr`` when it holds only values
    keyed by ``repr`` (one C call), the bits of its floats when it holds only floats
    (a table: ``repr`` of a float is slow), else :func:`_nested_key`."""
    if len(value) <= MAX_ENTRIES:  # type: ignore[arg-type]
        if type(value) is dict:
            if _BY_REPR.issuperset(map(type, value)):
                types = set(map(type, value.values()))
                if types == _FLOAT and len(value) > _TABLE:
                    keys = tuple(value)  # str keys compare exactly; others by repr
                    return (keys if _STR.issuperset(map(type, keys)) else repr(keys),
                            _pack(value.values()))  # fmt: skip
                if _BY_REPR.issuperset(types):
                    return repr(value)
        else:
            types = set(map(type, value))  # type: ignore[call-overload]
            if types == _FLOAT and len(value) > _TABLE:  # type: ignore[arg-type]
                return (type(value), _pack(value))
            if _BY_REPR.issuperset(types):
                return repr(value)
    return _nested_key(value, [MAX_ENTRIES], MAX_DEPTH)


_FLOAT = {float}
_STR = frozenset({str})
#: Containers of more floats than this are keyed by the floats' bits (in small ones,
#: ``repr`` is as fast).
_TABLE = 16


def _pack(floats: Iterable[float]) -> bytes:
    """The bit patterns of ``floats`` (``0.0`` and ``-0.0`` differ, a NaN equals itself)."""
    values = tuple(floats)
    return struct.pack(f"{len(values)}d", *values)


def _nested_key(value: object, budget: list[int], depth: int) -> object:
    """The key of a value inside a container: as :func:`_value_key`, but another object
    by its identity (which of them the container holds is what an equation may read)
    and a tensor by its type (the tracer refuses reading a tensor, and keeping it alive
    in the key would hold its memory). ``budget``: the entries still allowed."""
    t = type(value)
    if t in _BY_REPR:
        return repr(value)
    if isinstance(value, enum.Enum):
        return (t, value._name_)
    if isinstance(value, _CONTAINER_TYPES):
        budget[0] -= len(value)
        if budget[0] < 0 or depth == 0:
            raise _Unkeyable
        if isinstance(value, dict):
            return (t, tuple((_nested_key(k, budget, depth - 1), _nested_key(v, budget, depth - 1))
                             for k, v in value.items()))  # fmt: skip
        keys = (_nested_key(v, budget, depth - 1) for v in value)
        return (t, frozenset(keys) if isinstance(value, (set, frozenset)) else tuple(keys))
    if isinstance(value, numbers.Number) or _numpy_scalar(value):
        return repr(value)
    if isinstance(value, torch.Tensor):
        return f"<{t.__name__}>"
    return _Identity(value)


class _Identity:
    """An object by its identity in a key (holding it, so that its id is not reused)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.value is self.value

    def __repr__(self) -> str:
        return f"<{type(self.value).__name__} at {id(self.value):#x}>"


def _numpy_scalar(value: object) -> bool:
    """A numpy scalar (``np.bool_`` is not a ``numbers.Number``)."""
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0


def _partial_values(fn: object) -> list[object]:
    """The arguments a ``functools.partial`` (possibly nested) binds."""
    values: list[object] = []
    while isinstance(fn, functools.partial):
        values += [*fn.args, *fn.keywords.values()]
        fn = fn.func
    return values


def _functions_of(source: Source) -> tuple[str, tuple]:
    """(who reads, the functions that read) for a declaration or a surrogate's (class,
    spiking): its ``derivative`` when spiking (the backward), else its ``primitive``
    (the forward; autograd differentiates it)."""
    if isinstance(source, NeuronDeclaration):
        return f"{source.name}'s equations", (source.charge, source.update, source.threshold,
                                               source.reset_membrane, source.fire)  # fmt: skip
    cls, spiking = source  # type: ignore[misc]
    name = "derivative" if spiking else "primitive"
    return f"{cls.__name__}.{name}", (getattr(cls, name),)


def _reader(source: Source) -> Reader:
    """A function returning the keys of the current values ``source``'s functions read.

    Every global name and closure cell the functions use is read, whatever its value
    now: one that is ``None`` or a tensor at the first call may be a number later."""
    owner, tops = _functions_of(source)
    globs: list[tuple[dict[str, object], str]] = []
    cells: list[types.CellType] = []
    cell_names: list[str] = []
    partials: list[object] = []  # a partial's bound values: fixed, but part of the key
    seen: set[tuple[int, str]] = set()  # (id of a namespace or cell, name): read once
    for top in tops:
        partials += _partial_values(top)
        for fn in functions_behind(top):
            namespace = fn.__globals__
            for name in _code_names(fn.__code__):
                if name in namespace and (id(namespace), name) not in seen:
                    seen.add((id(namespace), name))
                    globs.append((namespace, name))
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
                if (id(cell), "") not in seen:
                    seen.add((id(cell), ""))
                    cells.append(cell)
                    cell_names.append(name)
    if not globs and not cells and not partials:
        return _nothing

    def read(raw: bool = False) -> tuple:
        """The keys of the values (their raw values if ``raw``: what Dynamo traces, once
        empty cells were refused, see registry._compiled_refusal)."""
        if raw:
            return (*partials, *[ns.get(n) for ns, n in globs],
                    *[_cell_value(c) for c in cells])  # fmt: skip
        try:
            if not cells and not partials:  # the common case, in one comprehension
                return tuple([_value_key(ns.get(n)) for ns, n in globs])
            values = [*partials, *[ns.get(n) for ns, n in globs]]
            # Eager calls; Dynamo may still trace this frame inside a compiled call's
            # eager fallback, and it cannot trace reading an empty cell: checked first.
            values += [_EMPTY if _empty(c) else c.cell_contents for c in cells]
            return tuple(map(_value_key, values))
        except _Unkeyable:
            values = read(raw=True)
            labels = [
                *["a value bound by functools.partial"] * len(partials),
                *[f"the global {n!r}" for _, n in globs],
                *[f"the closure variable {n!r}" for n in cell_names],
            ]
            what = next(lab for lab, v in zip(labels, values) if _unkeyable(v))
            raise TraceError(
                f"{owner} read {what}, a container with more than {MAX_ENTRIES} entries "
                f"or {MAX_DEPTH} levels (nested ones included): what an equation reads "
                "from it is folded into the fused kernel, and its contents are too many "
                "to check at every call for a change; pass the values as neuron "
                "parameters or keep them in a smaller container (the reference loop, "
                "backend='torch', reads it as it is)"
            ) from None

    return read


def _unkeyable(value: object) -> bool:
    try:
        _value_key(value)
    except _Unkeyable:
        return True
    return False


class _Empty:
    """An unbound closure cell's value (keyed ``<_Empty>``)."""


_EMPTY = _Empty()


def _empty(cell: types.CellType) -> bool:
    return repr(cell).endswith(": empty>")


def _cell_value(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # not bound yet, or deleted since
        return _EMPTY
