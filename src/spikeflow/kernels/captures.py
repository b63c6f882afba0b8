"""The Python numbers a neuron's equations read from outside their arguments.

The tracer folds a number into a constant of the generated code, so a charge, update or
threshold function that reads a module-level number (``GAIN = 0.5``) or a closure's
would otherwise keep the value it had at the first call for ever. The current values
of those numbers are part of the keys under which the fused backends cache the traced
step and the kernels (:func:`spikeflow.kernels.fused.step_graph`, ``_entry_key``), so
a changed value is traced and compiled again (once per value; the build caches key on
the generated source, so a value seen before reloads its kernel).

Which globals and closure cells to read is worked out once per declaration; each call
then reads only those (:func:`captured_numbers`, well under a microsecond for the usual
zero to two numbers, and one dict lookup when there are none).
"""

from __future__ import annotations

import numbers
import operator
import types
from collections.abc import Callable, Iterator

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


def _reader(decl: NeuronDeclaration) -> Reader:
    """A function returning the current values of ``decl``'s captured numbers."""
    globs: list[tuple[dict[str, object], str]] = []
    cells: list[types.CellType] = []
    seen: set[tuple[int, str]] = set()  # (id of a namespace or cell, name): read once
    for fn in (decl.charge, decl.update, decl.threshold):
        fn = getattr(fn, "__func__", fn)  # a bound method's function
        code = getattr(fn, "__code__", None)
        if code is None:  # None, or a callable without Python code (a partial, ...)
            continue
        namespace = fn.__globals__
        for name in dict.fromkeys(_code_names(code)):
            value = namespace.get(name)
            if isinstance(value, numbers.Number) and (id(namespace), name) not in seen:
                seen.add((id(namespace), name))
                globs.append((namespace, name))
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell (a name not yet bound)
                continue
            if isinstance(value, numbers.Number) and (id(cell), "") not in seen:
                seen.add((id(cell), ""))
                cells.append(cell)
    if not globs and not cells:
        return _nothing

    def read() -> tuple[str, ...]:
        return (*[repr(ns.get(n)) for ns, n in globs], *[_cell_repr(c) for c in cells])

    namespaces = {id(ns): ns for ns, _ in globs}
    if cells or len(namespaces) != 1:
        return read
    # The usual case, globals of one module only: read them in one C call.
    (namespace,) = namespaces.values()
    names = [n for _, n in globs]
    if len(names) == 1:
        name = names[0]
        return lambda: (repr(namespace.get(name)),)
    get = operator.itemgetter(*names)

    def read_module() -> tuple[str, ...]:
        try:
            return tuple(map(repr, get(namespace)))
        except KeyError:  # a global deleted since (the reference loop would fail too)
            return read()

    return read_module


def _cell_repr(cell: types.CellType) -> str:
    try:
        return repr(cell.cell_contents)
    except ValueError:  # deleted since (the reference loop would fail on it too)
        return "<empty>"
