"""Checking a MAT v5 container before scipy parses it.

``scipy.io.loadmat`` trusts the file: its Cython reader indexes a fixed table of 20
dtypes with the type code of each numeric data element, unchecked, so a code without
a dtype (0, 8, 10, 11, 14, 15, 19 or more) reads a NULL or out-of-bounds pointer and
kills the process (SIGSEGV/SIGBUS) instead of raising. :func:`checked_mat5_stream`
walks the container here, in Python, and hands scipy only a stream it has checked:

* the 128-byte header: the ``MATLAB`` text, version 0x0100 and the ``IM``/``MI``
  endian indicator;
* every top-level data element: an 8-byte tag, ``miMATRIX`` (14) or ``miCOMPRESSED``
  (15), its bytes inside the file; a compressed element must hold one zlib stream that
  decompresses to exactly one ``miMATRIX`` element of the size its tag gives;
* every matrix's header: array flags (``miUINT32``, 8 bytes), dimensions (``miINT32``,
  2 to 32 non-negative values) and name (``miINT8``);
* for the requested variables, everything scipy will read: a numeric class (double,
  single, (u)int8-64, logical), and real (and, when complex, imaginary) data
  elements of a numeric type whose byte count is the product of the dimensions times
  the item size, all inside the matrix.

The stream returned holds the header and the requested variables only, uncompressed
(so scipy parses exactly the bytes checked here, and each compressed element is
decompressed once). Errors name the file, the byte offset (of the compressed element,
plus the offset inside its decompressed data) and the problem.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from os import PathLike

from spikeflow.data.events import format_error
from spikeflow.data.io._common import DEFLATE_MAX_RATIO
from spikeflow.errors import DataFormatError

__all__ = ["checked_mat5_stream"]

HEADER_BYTES = 128
MI_INT8, MI_UINT32, MI_INT32, MI_MATRIX, MI_COMPRESSED, MI_UTF8 = 1, 6, 5, 14, 15, 16
#: item size of each numeric data type (the types scipy has a dtype for).
NUMERIC_TYPES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
#: mxDOUBLE_CLASS (6) ... mxUINT64_CLASS (15).
NUMERIC_CLASSES = range(6, 16)
CLASS_NAMES = {
    1: "cell",
    2: "struct",
    3: "object",
    4: "char",
    5: "sparse",
    16: "function",
    17: "opaque",
}
MAX_DIMS = 32


class _Buffer:
    """Bytes being parsed, and how to name a position in them in an error."""

    def __init__(self, data: bytes, order: str, path: str | PathLike, base: int | None) -> None:
        self.data, self.order, self.path, self.base = data, order, path, base

    def error(self, pos: int, problem: str) -> DataFormatError:
        if self.base is None:
            return format_error(self.path, pos, problem)
        return format_error(
            self.path,
            self.base,
            f"in the compressed element, at offset {pos} of its decompressed data: {problem}",
        )

    def u32(self, pos: int, limit: int, what: str) -> tuple[int, int]:
        if pos + 8 > limit:
            raise self.error(pos, f"truncated {what}: 8 tag bytes needed, {limit - pos} left")
        return struct.unpack_from(self.order + "II", self.data, pos)


def _element(buf: _Buffer, pos: int, limit: int, what: str) -> tuple[int, int, int, int]:
    """A data element at ``pos`` (full or small format) that must end by ``limit``.

    Returns ``(type, byte count, data offset, offset of the next element)``.
    """
    first, second = buf.u32(pos, limit, f"{what} tag")
    if first >> 16:  # small data element: type and byte count in the first word
        count, kind = first >> 16, first & 0xFFFF
        if count > 4:
            raise buf.error(pos, f"{what}: small data element of {count} bytes (at most 4)")
        return kind, count, pos + 4, pos + 8
    start = pos + 8
    if second > limit - start:
        raise buf.error(
            pos, f"{what}: the tag says {second} bytes, only {limit - start} are left in its matrix"
        )
    return first, second, start, start + (second + 7) // 8 * 8


def array_flags(buf: _Buffer, pos: int, limit: int) -> tuple[int, int]:
    """A matrix's array flags element at ``pos`` (one miUINT32 pair, 8 bytes; the class
    in bits 0-7, complex bit 11, logical bit 9): ``(flags, offset of the next element)``."""
    kind, count, at, p = _element(buf, pos, limit, "array flags")
    if kind != MI_UINT32 or count != 8:  # 8 bytes: never a small element (at most 4)
        raise buf.error(
            pos, f"array flags of type {kind} and {count} bytes, expected miUINT32 (6) and 8 bytes"
        )
    (flags,) = struct.unpack_from(buf.order + "I", buf.data, at)
    return flags, p


def array_dims(buf: _Buffer, pos: int, limit: int) -> tuple[list[int], int]:
    """A matrix's dimensions element at ``pos`` (2 to :data:`MAX_DIMS` non-negative
    int32): ``(dimensions, offset of the next element)``."""
    kind, count, at, p = _element(buf, pos, limit, "dimensions")
    if kind not in (MI_INT32, MI_UINT32) or count % 4 or not 8 <= count <= 4 * MAX_DIMS:
        raise buf.error(
            pos,
            f"dimensions of type {kind} and {count} bytes, expected "
            f"miINT32 (5) and 2 to {MAX_DIMS} values",
        )
    dims = list(struct.unpack_from(f"{buf.order}{count // 4}i", buf.data, at))
    if min(dims) < 0:
        raise buf.error(pos, f"negative dimension in {dims}")
    return dims, p


def array_name(buf: _Buffer, pos: int, limit: int) -> tuple[str, int]:
    """A matrix's name element at ``pos`` (miINT8 text, read as Latin-1):
    ``(name, offset of the next element)``."""
    kind, count, at, p = _element(buf, pos, limit, "array name")
    if kind not in (MI_INT8, MI_UTF8):
        raise buf.error(pos, f"array name of type {kind}, expected miINT8 (1)")
    return buf.data[at : at + count].decode("latin-1"), p


def _matrix(buf: _Buffer, pos: int, limit: int, wanted: Iterable[str]) -> tuple[str, bool]:
    """Check the miMATRIX element at ``pos``; returns ``(name, fully checked)``: the
    contents are checked when the name is in ``wanted``."""
    kind, size = buf.u32(pos, limit, "matrix tag")
    if kind != MI_MATRIX:
        raise buf.error(pos, f"data element of type {kind}, expected miMATRIX (14)")
    end = pos + 8 + size
    if size == 0 or end > limit:
        raise buf.error(
            pos, f"matrix of {size} bytes: expected 1 to {limit - pos - 8} (the bytes left)"
        )
    flags, p = array_flags(buf, pos + 8, end)
    mclass, is_complex = flags & 0xFF, bool(flags >> 11 & 1)
    dims: list[int] = []
    if mclass != 17:  # every class but opaque has dimensions
        dims, p = array_dims(buf, p, end)
    name, p = array_name(buf, p, end)
    if name not in wanted:
        return name, False
    if mclass not in NUMERIC_CLASSES:
        what = CLASS_NAMES.get(mclass, f"class {mclass}")
        raise buf.error(pos, f"variable {name!r} is a {what} array, expected a numeric array")
    n = 1
    for d in dims:
        n *= d
    for part in ("real", "imaginary") if is_complex else ("real",):
        part_at = p
        kind, count, _, p = _element(buf, p, end, f"{name!r} {part} part")
        if kind not in NUMERIC_TYPES:
            raise buf.error(
                part_at,
                f"{name!r} {part} part has data type {kind}, which is "
                "not a numeric MAT type (1-7, 9, 12, 13, 16-18)",
            )
        if count != n * NUMERIC_TYPES[kind]:
            raise buf.error(
                part_at,
                f"{name!r} {part} part holds {count} bytes, expected "
                f"{n} values of {NUMERIC_TYPES[kind]} byte(s) for dimensions {dims}",
            )
    return name, True


def _inflate(buf: _Buffer, pos: int, size: int) -> bytes:
    """The matrix element inside the compressed element at ``pos`` (payload ``size``)."""
    payload = memoryview(buf.data)[pos + 8 : pos + 8 + size]
    inflater = zlib.decompressobj()
    try:
        head = inflater.decompress(payload, 8)
        if len(head) < 8:
            raise buf.error(pos, "compressed element holds less than one 8-byte tag")
        kind, inner = struct.unpack(buf.order + "II", head)
        if kind != MI_MATRIX:
            raise buf.error(pos, f"compressed element holds type {kind}, expected miMATRIX (14)")
        if inner + 8 > DEFLATE_MAX_RATIO * size:  # before a forged size is decompressed
            raise buf.error(
                pos,
                f"compressed element's matrix tag declares {inner + 8} bytes, more than its "
                f"{size} zlib bytes can hold ({DEFLATE_MAX_RATIO} per compressed byte at most)",
            )
        body = inflater.decompress(inflater.unconsumed_tail, inner + 1)
    except zlib.error as exc:
        raise buf.error(pos, f"corrupt compressed element: zlib: {exc}") from None
    if len(body) != inner or not inflater.eof:
        got = "more" if len(body) > inner else f"{len(body) + 8}"
        raise buf.error(
            pos,
            f"compressed element decompresses to {got} bytes, its matrix tag says {inner + 8}"
            + ("" if inflater.eof else " (the zlib stream does not end)"),
        )
    return head + body


def top_level_matrices(data: bytes, path: str | PathLike) -> Iterator[tuple[_Buffer, int, int]]:
    """Check a MAT v5 file's header (length, endian indicator, version) and walk its
    top-level elements: for each, ``(buffer, offset of its miMATRIX, end of its
    bytes)``, the buffer the file itself for an miMATRIX element and the inflated bytes
    for an miCOMPRESSED one.

    Raises:
        DataFormatError: naming ``path``, the byte offset and what is wrong.
    """
    if len(data) < HEADER_BYTES:
        raise format_error(
            path, len(data), f"truncated: {len(data)} bytes, a MAT-file header has {HEADER_BYTES}"
        )
    indicator = data[126:128]
    if indicator not in (b"IM", b"MI"):
        raise format_error(path, 126, f"endian indicator {indicator!r}, expected b'IM' or b'MI'")
    order = "<" if indicator == b"IM" else ">"
    (version,) = struct.unpack_from(order + "H", data, 124)
    if version != 0x0100:
        raise format_error(path, 124, f"MAT version 0x{version:04x}, expected 0x0100 (MAT v5; "
                                      "a v7.3 file is HDF5)")  # fmt: skip
    top = _Buffer(data, order, path, None)
    pos = HEADER_BYTES
    while pos < len(data):
        kind, size = top.u32(pos, len(data), "data element tag")
        if size > len(data) - pos - 8:
            raise top.error(
                pos, f"data element of {size} bytes, only {len(data) - pos - 8} left in the file"
            )
        if kind == MI_MATRIX:
            yield top, pos, pos + 8 + size
        elif kind == MI_COMPRESSED:
            inner = _Buffer(_inflate(top, pos, size), order, path, pos)
            yield inner, 0, len(inner.data)
        else:
            raise top.error(pos, f"top-level data element of type {kind}, expected miMATRIX "
                                 "(14) or miCOMPRESSED (15)")  # fmt: skip
        pos += 8 + size


def checked_mat5_stream(data: bytes, names: Iterable[str], path: str | PathLike) -> bytes:
    """Check a MAT v5 file (module docstring) and return a stream for scipy with its
    header and the variables ``names`` (the last of each name, as scipy keeps),
    uncompressed.

    Raises:
        DataFormatError: naming ``path``, the byte offset and what is wrong.
    """
    wanted = set(names)
    kept: dict[str, bytes] = {}
    for buf, at, end in top_level_matrices(data, path):
        name, full = _matrix(buf, at, len(buf.data), wanted)
        if full:
            kept[name] = buf.data[at:end]
    header = data[:116] + bytes(8) + data[124:HEADER_BYTES]  # no subsystem offset
    return header + b"".join(kept.values())
