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

Reader = Callable[[], tuple[str, ...]]


def _nothing() -> tuple[str, ...]:
    return ()


#: Per declaration, the function that reads its captured numbers' current values.
_READERS: dict[NeuronDeclaration, Reader] = {}


def captured_numbers(decl: NeuronDeclaration) -> tuple[str, ...]:
    """The current values of the Python numbers (int, float, bool, ...) that ``decl``'s
    charge, update and threshold functions read from their module's globals or their
    closures, as a cache key: each value's ``repr``, so that ``1``, ``1.0`` and ``True``,
    ``0.0`` and ``-0.0`` differ and a NaN equals itself. Empty when there are none."""
    if torch.compiler.is_compiling():
        # Dynamo traces the reading (so it guards on every value read), not the cache: a
        # dict filled while tracing would differ between its analysis passes.
        return _reader(decl)()
    reader = _READERS.get(decl)
    if reader is None:
        reader = _READERS[decl] = _reader(decl)
    return reader()


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
        if torch.compiler.is_compiling() and isinstance(value, (int, float)):
            # What Dynamo traces here makes its guards: .hex() specialises the graph on
            # the value (repr cannot read a number Dynamo made an input).
            return float(value).hex()
        return repr(value)
    return f"<{type(value).__name__}>"


def _numpy_scalar(value: object) -> bool:
    """A numpy scalar (``np.bool_`` is not a ``numbers.Number``)."""
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0


def _functions(fn: object) -> Iterator[types.FunctionType]:
    """The Python functions behind ``fn``: a bound method's, a ``functools.partial``'s
    and a decorated function's (``__wrapped__``) too."""
    seen: set[int] = set()
    stack = [fn]
    while stack:
        f = stack.pop()
        if f is None or id(f) in seen:
            continue
        seen.add(id(f))
        if isinstance(f, types.FunctionType):
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
    bound: list[str] = []  # a partial's bound numbers: fixed, but part of the key
    seen: set[tuple[int, str]] = set()  # (id of a namespace or cell, name): read once
    for top in (decl.charge, decl.update, decl.threshold):
        bound += [_value_key(v) for v in _partial_values(top)]
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
    if not globs and not cells and not bound:
        return _nothing
    fixed = tuple(bound)

    def read() -> tuple[str, ...]:
        values = [_value_key(ns.get(n)) for ns, n in globs]
        return (*fixed, *values, *[_cell_repr(c) for c in cells])

    return read


def _cell_repr(cell: types.CellType) -> str:
    try:
        return _value_key(cell.cell_contents)
    except ValueError:  # not bound yet, or deleted since
        return "<empty>"
