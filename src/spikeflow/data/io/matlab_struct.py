"""MAT v5 variables of any nesting of structs, cells, char and numeric arrays, decoded
here in Python (no scipy): e.g. the ``synsets`` struct array of the ImageNet devkit's
``meta.mat``.

:func:`~spikeflow.data.io.matlab.load_mat_variables` reads numeric variables only (it
checks the container and hands the checked bytes to scipy, whose parser trusts the
file); a struct array of strings is refused there. This reader walks the same container
(header, top-level elements, zlib-compressed elements; the checks of
:mod:`spikeflow.data.io._matv5`) and decodes the one variable asked for itself, with
every element checked to lie inside its parent and every byte count checked against
the dimensions before anything is allocated, so a corrupt file is an error naming the
byte offset, never a crash.

Values: a struct array is a list of dicts (one per element, column-major order), a
cell array a list, a char array a ``str`` (one row; a matrix of rows: a tuple of str),
a numeric or logical array an ndarray of its MATLAB class's dtype and dimensions (the
stored type may be smaller: MATLAB writes a double holding small integers as bytes).
Sparse, object, function and opaque arrays are refused.
"""

from __future__ import annotations

import math
import struct
from os import PathLike
from typing import Any

import numpy as np

from spikeflow.data.events import format_error
from spikeflow.data.io._matv5 import (
    CLASS_NAMES,
    HEADER_BYTES,
    MI_INT8,
    MI_INT32,
    MI_MATRIX,
    MI_UTF8,
    _Buffer,
    _element,
    array_dims,
    array_flags,
    array_name,
    top_level_matrices,
)

__all__ = ["read_mat_variable"]

#: Data type code -> numpy type (the MAT-file's own types).
_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
          12: "i8", 13: "u8", 16: "u1", 17: "u2", 18: "u4"}  # fmt: skip
#: MATLAB class -> numpy dtype (mxDOUBLE_CLASS = 6 ... mxUINT64_CLASS = 15).
_CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4",
            14: "i8", 15: "u8"}  # fmt: skip
MX_CELL, MX_STRUCT, MX_CHAR = 1, 2, 4
#: Type codes of char data: 8-bit (Latin-1 or UTF-8), UTF-16 code units, UTF-32.
_CHAR_CODECS = {1: "latin-1", 2: "latin-1", MI_UTF8: "utf-8", 3: "utf-16", 4: "utf-16",
                17: "utf-16", 5: "utf-32", 6: "utf-32", 18: "utf-32"}  # fmt: skip
MAX_DEPTH = 16


def read_mat_variable(data: bytes, name: str, path: str | PathLike) -> Any:
    """The variable ``name`` of the MAT v5 file ``data`` (the last one of that name, as
    scipy keeps), decoded as the module docstring says; ``path`` names the file in
    errors.

    Raises:
        DataFormatError: a malformed header or element (naming the byte offset), a
            class this reader does not decode, or no variable ``name``.
    """
    if len(data) >= HEADER_BYTES and not data.startswith(b"MATLAB"):
        raise format_error(path, 0, f"not a MAT-file: expected the 'MATLAB' text header, "
                                    f"found {data[:16]!r}")  # fmt: skip
    found: tuple[_Buffer, int] | None = None
    for buf, at, _ in top_level_matrices(data, path):
        if _header(buf, at, len(buf.data))[3] == name:
            found = (buf, at)
    if found is None:
        raise format_error(path, None, f"no variable {name!r}")
    buf, at = found
    return _value(buf, at, len(buf.data), 0)[0]


def _header(buf: _Buffer, pos: int, limit: int) -> tuple[int, int, list[int], str, int, int, int]:
    """The matrix at ``pos``: ``(flags, class, dims, name, offset of its first data
    element, end of its bytes, offset of the next element)``; an empty matrix (a tag of
    0 bytes, as MATLAB writes ``[]`` in a struct field) is class 0."""
    kind, count, start, after = _element(buf, pos, limit, "matrix tag")
    if kind != MI_MATRIX:
        raise buf.error(pos, f"data element of type {kind}, expected miMATRIX (14)")
    if count == 0:
        return 0, 0, [0, 0], "", start, start, after
    stop = start + count
    flags, p = array_flags(buf, start, stop)
    dims, p = array_dims(buf, p, stop)  # read for every class (an opaque one has none)
    name, p = array_name(buf, p, stop)
    return flags, flags & 0xFF, dims, name, p, stop, after


def _value(buf: _Buffer, pos: int, limit: int, depth: int) -> tuple[Any, int]:
    """The decoded matrix at ``pos`` and the offset after it."""
    if depth > MAX_DEPTH:
        raise buf.error(pos, f"arrays nested more than {MAX_DEPTH} deep")
    flags, mclass, dims, _, p, stop, end = _header(buf, pos, limit)
    n = math.prod(dims)
    if mclass == 0:
        return np.zeros((0, 0)), end
    if mclass in _CLASSES:
        return _numeric(buf, p, stop, flags, mclass, dims, n), end
    if mclass == MX_CHAR:
        return _chars(buf, p, stop, dims, n), end
    if mclass == MX_CELL:
        items = []
        _room(buf, p, stop, n, "cells")
        for _ in range(n):
            item, p = _value(buf, p, stop, depth + 1)
            items.append(item)
        return items, end
    if mclass == MX_STRUCT:
        return _struct(buf, p, stop, n, depth), end
    what = CLASS_NAMES.get(mclass, f"class {mclass}")
    raise buf.error(pos, f"a {what} array, which this reader does not decode")


def _room(buf: _Buffer, pos: int, stop: int, count: int, what: str) -> None:
    """At least 8 bytes per element must be left: no loop over a forged count."""
    if count * 8 > stop - pos:
        raise buf.error(pos, f"{count} {what} announced, only {stop - pos} bytes left for them")


def _numeric(buf: _Buffer, p: int, stop: int, flags: int, mclass: int, dims: list[int],
             n: int) -> np.ndarray:  # fmt: skip
    parts = []
    for part in ("real", "imaginary") if flags >> 11 & 1 else ("real",):
        at0 = p
        kind, count, at, p = _element(buf, p, stop, f"{part} part")
        if kind not in _TYPES:
            raise buf.error(at0, f"{part} part has data type {kind}, not a numeric MAT type")
        dtype = np.dtype(_TYPES[kind]).newbyteorder(buf.order)
        if count != n * dtype.itemsize:
            raise buf.error(at0, f"{part} part holds {count} bytes, expected {n} values of "
                                 f"{dtype.itemsize} byte(s) for dimensions {dims}")  # fmt: skip
        values = np.frombuffer(buf.data, dtype, n, at).astype(_CLASSES[mclass])
        parts.append(values)
    values = parts[0] if len(parts) == 1 else parts[0] + 1j * parts[1]
    if flags >> 9 & 1:  # logical
        values = values != 0
    return values.reshape(dims, order="F")


def _chars(buf: _Buffer, p: int, stop: int, dims: list[int], n: int) -> str | tuple[str, ...]:
    at0 = p
    kind, count, at, p = _element(buf, p, stop, "char data")
    if kind not in _CHAR_CODECS:
        raise buf.error(at0, f"char data of type {kind}, expected a character type")
    codec = _CHAR_CODECS[kind]
    unit = {"latin-1": 1, "utf-8": 1, "utf-16": 2, "utf-32": 4}[codec]
    raw = buf.data[at : at + count]
    if codec in ("latin-1", "utf-16", "utf-32") and count != n * unit:
        raise buf.error(at0, f"char data holds {count} bytes, expected {n} characters of "
                             f"{unit} byte(s) for dimensions {dims}")  # fmt: skip
    if unit > 1:  # the file's byte order
        codec = f"{codec}-{'le' if buf.order == '<' else 'be'}"
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise buf.error(at0, f"char data is not valid {codec}: {exc}") from None
    if len(text) != n:
        raise buf.error(at0, f"char data decodes to {len(text)} characters, the dimensions "
                             f"{dims} say {n}")  # fmt: skip
    rows = dims[0] if len(dims) == 2 else 0
    if rows <= 1 or len(dims) != 2:
        return text
    columns = dims[1]
    return tuple(text[r::rows][:columns] for r in range(rows))  # column-major storage


def _struct(buf: _Buffer, p: int, stop: int, n: int, depth: int) -> list[dict[str, Any]]:
    at0 = p
    kind, count, at, p = _element(buf, p, stop, "field name length")
    if kind != MI_INT32 or count != 4:
        raise buf.error(at0, f"field name length of type {kind} and {count} bytes, expected "
                             "one miINT32 (5)")  # fmt: skip
    (width,) = struct.unpack_from(buf.order + "i", buf.data, at)
    at0 = p
    kind, count, at, p = _element(buf, p, stop, "field names")
    if kind != MI_INT8 or width <= 0 or count % width:
        raise buf.error(at0, f"field names of type {kind} and {count} bytes, expected miINT8 "
                             f"(1) names of {width} bytes each")  # fmt: skip
    names = [buf.data[at + i : at + i + width].split(b"\0", 1)[0].decode("latin-1")
             for i in range(0, count, width)]  # fmt: skip
    _room(buf, p, stop, n * len(names), "struct fields")
    out = []
    for _ in range(n):
        entry = {}
        for field in names:
            entry[field], p = _value(buf, p, stop, depth + 1)
        out.append(entry)
    return out
