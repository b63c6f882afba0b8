"""The Python numbers a neuron's equations read from outside their arguments.

The tracer folds a number into a constant of the generated code, so a charge, update or
threshold function that reads a module-level number (``GAIN = 0.5``) or a closure's
would otherwise keep the value it had at the first call for ever. The current values
of those numbers are part of the keys under which the fused backends cache the traced
step and the kernels (:func:`spikeflow.kernels.registry.step_graph` and ``entry_key``), so
a changed value is traced and compiled again (once per value; the build caches key on
the generated source, so a value seen before reloads its kernel).

Which globals and closure cells to read is worked out once per declaration (every
global name and closure cell the functions use, behind ``functools.partial``, bound
methods and ``functools.wraps`` decorators too, whatever their value at that moment:
``None`` or a tensor may become a number later); each call then reads only those
(:func:`captured_numbers`, about a microsecond).
"""

from __future__ import annotations

import functools
import numbers
import types
from collections.abc import Callable, Iterator

import torch

from spikeflow.neurons.declaration import NeuronDeclaration

__all__ = ["captured_numbers"]

Reader = Callable[..., tuple]


def _nothing(raw: bool = False) -> tuple:
    return ()


#: Per declaration, the function that reads its captured numbers' current values.
_READERS: dict[NeuronDeclaration, Reader] = {}


def captured_numbers(decl: NeuronDeclaration) -> tuple[str, ...]:
    """The current values of the Python numbers (int, float, bool, ...) that ``decl``'s
    charge, update and threshold functions read from their module's globals or their
    closures, as a cache key: each value's ``repr``, so that ``1``, ``1.0`` and ``True``,
    ``0.0`` and ``-0.0`` differ and a NaN equals itself. Empty when there are none.

    Under ``torch.compile`` Dynamo traces the reading instead, so that it guards on
    every value read (and the result is only for those guards, see :func:`_traced_key`)."""
    if torch.compiler.is_compiling():
        # Traced, not cached: a dict filled while tracing would differ between
        # Dynamo's analysis passes.
        return tuple(_traced_key(v) for v in _reader(decl)(raw=True))
    return cached_captured_numbers(decl)


def cached_captured_numbers(decl: NeuronDeclaration) -> tuple[str, ...]:
    """:func:`captured_numbers` through the per-declaration reader cache, also for code
    that runs while Dynamo traces."""
    reader = _READERS.get(decl)
    if reader is None:
        reader = _READERS[decl] = _reader(decl)
    return reader()


def numpy_captures(decl: NeuronDeclaration) -> list[str]:
    """The captured values of ``decl`` that are numpy scalars (their ``repr``), which
    Dynamo turns into tensors: torch.compile cannot guard on their values."""
    return [repr(v) for v in _reader(decl)(raw=True) if _numpy_scalar(v)]


def unbound_cells(decl: NeuronDeclaration) -> bool:
    """Whether a closure variable ``decl``'s functions use is not assigned yet (Dynamo
    cannot trace reading such a cell)."""
    return any(v is _EMPTY for v in _reader(decl)(raw=True))


def _traced_key(value: object) -> str:
    """What Dynamo traces to guard on a captured value: a float by its bit pattern
    (``repr`` cannot read a float Dynamo made an input; ``.hex()`` specialises on it),
    an int or bool by ``repr`` (Dynamo keeps them constants), anything else by its type
    alone (a numpy scalar is a tensor to Dynamo: see :func:`numpy_captures`)."""
    if isinstance(value, float) and not _numpy_scalar(value):
        return value.hex()
    if value is None or (isinstance(value, int) and not _numpy_scalar(value)):
        return repr(value)
    return f"<{type(value).__name__}>"


def _code_names(code: types.CodeType) -> Iterator[str]:
    """The global (and attribute) names ``code`` and the code nested in it use."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _value_key(value: object) -> str:
    """A number's ``repr``; for anything else its type's name (a module, a function, a
    tensor: their identity is not what the tracer folds into the code)."""
    if value is None or isinstance(value, numbers.Number) or _numpy_scalar(value):
        return repr(value)
    return f"<{type(value).__name__}>"


def _numpy_scalar(value: object) -> bool:
    """A numpy scalar (``np.bool_`` is not a ``numbers.Number``)."""
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0


#: At most this many objects are unwrapped per function (a cycle of ``__wrapped__``
#: attributes ends there).
_MAX_WRAPPERS = 256


def _functions(fn: object) -> Iterator[types.FunctionType]:
    """The Python functions behind ``fn``: a bound method's, a ``functools.partial``'s
    and a decorated function's (``__wrapped__``) too."""
    # Functions are deduplicated by id; a bound method is not (it is a new object at
    # each attribute read, which Dynamo, guarding on its id, would never match again).
    seen: set[int] = set()
    stack = [fn]
    for _ in range(_MAX_WRAPPERS):
        if not stack:
            return
        f = stack.pop()
        if f is None:
            continue
        if isinstance(f, types.FunctionType):
            if id(f) in seen:
                continue
            seen.add(id(f))
            yield f
        stack += [getattr(f, "__func__", None), getattr(f, "__wrapped__", None)]
        if isinstance(f, functools.partial):
            stack.append(f.func)


def _partial_values(fn: object) -> list[object]:
    """The arguments a ``functools.partial`` (possibly nested) binds."""
    values: list[object] = []
    while isinstance(fn, functools.partial):
        values += [*fn.args, *fn.keywords.values()]
        fn = fn.func
    return values


def _reader(decl: NeuronDeclaration) -> Reader:
    """A function returning the current values of ``decl``'s captured numbers.

    Every global name and closure cell the functions use is read, whatever its value
    now: one that is ``None`` or a tensor at the first call may be a number later."""
    globs: list[tuple[dict[str, object], str]] = []
    cells: list[types.CellType] = []
    partials: list[object] = []  # a partial's bound numbers: fixed, but part of the key
    seen: set[tuple[int, str]] = set()  # (id of a namespace or cell, name): read once
    for top in (decl.charge, decl.update, decl.threshold):
        partials += _partial_values(top)
        for fn in _functions(top):
            namespace = fn.__globals__
            for name in dict.fromkeys(_code_names(fn.__code__)):
                if name in namespace and (id(namespace), name) not in seen:
                    seen.add((id(namespace), name))
                    globs.append((namespace, name))
            for cell in fn.__closure__ or ():
                if (id(cell), "") not in seen:
                    seen.add((id(cell), ""))
                    cells.append(cell)
    if not globs and not cells and not partials:
        return _nothing

    def read(raw: bool = False) -> tuple:
        """The keys of the values (their raw values if ``raw``: what Dynamo traces, once
        empty cells were refused, see registry._compiled_refusal)."""
        if raw:
            cell_values = [_cell_value(c) for c in cells]
        else:
            # Eager calls; Dynamo may still trace this frame inside a compiled call's
            # eager fallback, and it cannot trace reading an empty cell: checked first.
            cell_values = [_EMPTY if _empty(c) else c.cell_contents for c in cells]
        values = (*partials, *[ns.get(n) for ns, n in globs], *cell_values)
        return values if raw else tuple(_value_key(v) for v in values)

    return read


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
