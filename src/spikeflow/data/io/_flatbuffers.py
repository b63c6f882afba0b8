"""A small, bounds-checked FlatBuffers reader (enough for AEDAT 4; no dependency).

FlatBuffers wire format, as used here: little-endian; a buffer starts with a uint32
offset to the root table (preceded by a uint32 size when "size-prefixed", followed by an
optional 4-byte file identifier); a table starts with an int32 ``soffset`` such that its
vtable lies at ``table - soffset``; a vtable is uint16 ``vtable_size``, uint16
``table_size``, then one uint16 offset per field (0 = absent, use the default). Offsets
to vectors, strings and sub-tables are uint32 relative to where they are stored; a
vector or string starts with its uint32 length.

Every read checks its bounds, so a corrupt buffer gives a :class:`DataFormatError`
naming the packet and the offset inside it, never an IndexError or a wild read.
"""

from __future__ import annotations

import struct

import numpy as np

from spikeflow.data.events import format_error
from spikeflow.data.io._common import PathArg
from spikeflow.errors import DataFormatError

__all__ = ["FlatBuffer"]


class FlatBuffer:
    """Read-only view of one FlatBuffer.

    Args:
        data: the buffer's bytes.
        path: the file, for error messages.
        file_offset: where the buffer (or its compressed packet) starts in the file.
        what: a short description for messages (e.g. "packet 3 (stream 0)").
    """

    def __init__(self, data: bytes, path: PathArg, file_offset: int, what: str) -> None:
        self.data = data
        self.u8 = np.frombuffer(data, dtype=np.uint8)
        self.path = path
        self.file_offset = file_offset
        self.what = what

    def error(self, pos: int, problem: str) -> DataFormatError:
        """A DataFormatError for a problem at ``pos`` inside this buffer."""
        return format_error(
            self.path, self.file_offset, f"{self.what}: {problem} (at offset {pos} of the "
            f"{len(self.data)}-byte decoded buffer)"
        )  # fmt: skip

    def _need(self, pos: int, n: int) -> None:
        if pos < 0 or pos + n > len(self.data):
            raise self.error(pos, f"reading {n} byte(s) runs outside the buffer")

    def read(self, fmt: str, pos: int) -> int | float:
        """One little-endian scalar (``struct`` format ``fmt``) at ``pos``."""
        size = struct.calcsize("<" + fmt)
        self._need(pos, size)
        return struct.unpack_from("<" + fmt, self.data, pos)[0]

    def root(self, size_prefixed: bool, identifier: bytes | None) -> int:
        """Position of the root table, checking the size prefix and identifier."""
        base = 0
        if size_prefixed:
            size = int(self.read("I", 0))
            if size != len(self.data) - 4:
                raise self.error(
                    0, f"size prefix says {size} bytes, buffer holds {len(self.data) - 4}"
                )
            base = 4
        if identifier is not None:
            self._need(base + 4, 4)
            found = self.data[base + 4 : base + 8]
            if found != identifier:
                raise self.error(base + 4, f"file identifier {found!r}, expected {identifier!r}")
        return base + int(self.read("I", base))

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of field ``index`` of the table at ``table``, or ``None``."""
        vtable = table - int(self.read("i", table))
        vsize = int(self.read("H", vtable))
        tsize = int(self.read("H", vtable + 2))
        if vsize < 4 or vsize % 2:
            raise self.error(vtable, f"vtable size {vsize} is invalid")
        self._need(vtable, vsize)
        self._need(table, tsize)
        if 4 + 2 * index >= vsize:
            return None
        off = int(self.read("H", vtable + 4 + 2 * index))
        if off == 0:
            return None
        if off >= max(tsize, 1):
            raise self.error(
                vtable, f"field {index} at offset {off} lies outside its {tsize}-byte table"
            )
        return table + off

    def scalar(self, table: int, index: int, fmt: str, default: int | float) -> int | float:
        """Scalar field ``index`` (``struct`` format ``fmt``), or ``default`` when absent."""
        pos = self.field(table, index)
        return default if pos is None else self.read(fmt, pos)

    def _indirect(self, pos: int) -> int:
        return pos + int(self.read("I", pos))

    def vector(self, table: int, index: int, elem_size: int) -> tuple[int, int]:
        """``(start, length)`` of vector field ``index``; ``(0, 0)`` when absent."""
        pos = self.field(table, index)
        if pos is None:
            return 0, 0
        vec = self._indirect(pos)
        length = int(self.read("I", vec))
        self._need(vec + 4, length * elem_size)
        return vec + 4, length

    def string(self, table: int, index: int) -> str | None:
        """String field ``index`` decoded as UTF-8 (``None`` when absent)."""
        start, length = self.vector(table, index, 1)
        if start == 0:
            return None
        return self.data[start : start + length].decode("utf-8", errors="replace")

    def table_vector(self, table: int, index: int) -> np.ndarray:
        """Positions of the tables in vector-of-tables field ``index`` (vectorised)."""
        start, length = self.vector(table, index, 4)
        slots = start + 4 * np.arange(length, dtype=np.int64)
        return slots + self.gather(slots, "<u4").astype(np.int64)

    def gather(self, positions: np.ndarray, dtype: str) -> np.ndarray:
        """Read one little-endian value of ``dtype`` at each position (vectorised)."""
        dt = np.dtype(dtype)
        n = dt.itemsize
        if positions.size == 0:
            return np.zeros(0, dtype=dt)
        lo, hi = int(positions.min()), int(positions.max())
        if lo < 0 or hi + n > len(self.data):
            bad = lo if lo < 0 else hi
            raise self.error(bad, f"reading {n} byte(s) runs outside the buffer")
        idx = positions[:, None] + np.arange(n, dtype=np.int64)
        return np.ascontiguousarray(self.u8[idx]).view(dt.newbyteorder("<")).reshape(-1)

    def table_fields(
        self, tables: np.ndarray, index: int, dtype: str, default: float = 0
    ) -> np.ndarray:
        """Field ``index`` of every table in ``tables`` (absent fields get ``default``)."""
        out = np.full(tables.size, default, dtype=np.dtype(dtype))
        if tables.size == 0:
            return out
        vtables = tables - self.gather(tables, "<i4").astype(np.int64)
        vsize = self.gather(vtables, "<u2").astype(np.int64)
        tsize = self.gather(vtables + 2, "<u2").astype(np.int64)
        has = vsize > 4 + 2 * index
        if not has.any():
            return out
        offs = np.zeros(tables.size, dtype=np.int64)
        offs[has] = self.gather(vtables[has] + 4 + 2 * index, "<u2")
        present = offs > 0
        size = np.dtype(dtype).itemsize
        bad = np.flatnonzero(present & (offs + size > tsize))
        if bad.size:
            raise self.error(int(tables[bad[0]]), f"field {index} lies outside its table")
        out[present] = self.gather(tables[present] + offs[present], dtype)
        return out
