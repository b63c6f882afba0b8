"""Helpers shared by the readers: bytes in, text headers, validation, optional imports.

Every check here raises :class:`~spikeflow.errors.DataFormatError` through
:func:`~spikeflow.data.events.format_error`, so messages always name the file, the byte
offset and the problem.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from os import PathLike
from types import ModuleType

import numpy as np

from spikeflow.data.events import format_error
from spikeflow.errors import MissingExtraError

PathArg = str | PathLike | None
RawBytes = bytes | bytearray | memoryview | np.ndarray

#: Upper bound on the decoded size of one compressed packet (AEDAT 4), against bombs.
MAX_PACKET_BYTES = 1 << 28


def read_bytes(path: str | PathLike) -> bytes:
    """The whole file as bytes."""
    with open(path, "rb") as fh:
        return fh.read()


def as_bytes(raw: RawBytes) -> bytes:
    """``raw`` as an immutable ``bytes`` object (header parsing works on bytes)."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, np.ndarray):
        return raw.astype(np.uint8, copy=False).tobytes()
    return bytes(raw)


def as_u8(raw: RawBytes) -> np.ndarray:
    """``raw`` as a read-only uint8 view (no copy for bytes-like input)."""
    if isinstance(raw, np.ndarray):
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise TypeError(f"expected a 1-D uint8 array of raw bytes, got {raw.dtype} {raw.shape}")
        return raw
    return np.frombuffer(raw, dtype=np.uint8)


def source_name(path: PathArg) -> str | None:
    """The ``source`` recorded on an :class:`EventRecording`."""
    return str(path) if path is not None else None


def split_header_lines(
    data: bytes, marker: bytes, path: PathArg, *, limit: int | None = None
) -> tuple[list[tuple[int, bytes]], int]:
    """Split the leading text lines that start with ``marker``.

    Returns ``[(offset, line_without_eol), ...]`` and the offset of the first byte after
    the header (the first line that does not start with ``marker``). A header line that
    runs to the end of the file without a newline means the file is truncated.
    """
    lines: list[tuple[int, bytes]] = []
    pos = 0
    end = len(data) if limit is None else min(len(data), limit)
    while pos < end and data.startswith(marker, pos):
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise format_error(
                path, pos, f"truncated header: the line starting here has no end of line "
                f"({len(data) - pos} byte(s) to the end of the file)"
            )  # fmt: skip
        lines.append((pos, data[pos:nl].rstrip(b"\r")))
        pos = nl + 1
    return lines, pos


def decode_line(line: bytes) -> str:
    """A header line as text (Latin-1 never fails; headers are ASCII in practice)."""
    return line.decode("latin-1")


def first_decrease(t: np.ndarray) -> int:
    """Index ``i`` of the first ``t[i] < t[i - 1]``, or -1 when ``t`` never decreases."""
    if t.size < 2:
        return -1
    back = np.flatnonzero(t[1:] < t[:-1])
    return int(back[0]) + 1 if back.size else -1


OffsetOf = Callable[[int], int]


def check_monotonic(t: np.ndarray, path: PathArg, offset_of: OffsetOf, what: str = "event") -> None:
    """Raise when the timestamps go backwards; ``offset_of(i)`` is event ``i``'s byte offset."""
    i = first_decrease(t)
    if i >= 0:
        raise format_error(
            path, offset_of(i), f"timestamp goes backwards at {what} {i} "
            f"({int(t[i - 1])} us -> {int(t[i])} us)"
        )  # fmt: skip


def check_in_sensor(
    x: np.ndarray,
    y: np.ndarray,
    width: int,
    height: int,
    path: PathArg,
    offset_of: OffsetOf,
    what: str = "event",
) -> None:
    """Raise when a coordinate falls outside a ``width`` x ``height`` sensor."""
    bad = np.flatnonzero((x >= width) | (y >= height))
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, offset_of(i), f"{what} {i} at (x={int(x[i])}, y={int(y[i])}) is outside the "
            f"{width}x{height} sensor"
        )  # fmt: skip


def infer_size(x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """``(max x + 1, max y + 1)``, or ``(0, 0)`` without events."""
    if x.size == 0:
        return 0, 0
    return int(x.max()) + 1, int(y.max()) + 1


def strided(base: int, stride: int) -> OffsetOf:
    """``offset_of`` for fixed-size records starting at ``base``."""
    return lambda i: base + stride * i


def indexed(offsets: np.ndarray) -> OffsetOf:
    """``offset_of`` from an array of per-event byte offsets."""
    return lambda i: int(offsets[i])


def import_optional(module: str, feature: str, package: str, extra: str = "data") -> ModuleType:
    """Import an optional dependency, or raise :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(feature, package, extra) from exc


def sort_by_time(events: np.ndarray) -> np.ndarray:
    """Stable sort by ``t`` when not already sorted (for formats without an order)."""
    if first_decrease(events["t"]) < 0:
        return events
    return events[np.argsort(events["t"], kind="stable")]


def seconds_to_us(seconds: np.ndarray, path: PathArg, what: str) -> np.ndarray:
    """Float seconds to int64 microseconds (rounded to nearest), rejecting NaN/inf/negative."""
    s = np.asarray(seconds, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(s) | (s < 0) | (s > 9.2e12))
    if bad.size:
        i = int(bad[0])
        raise format_error(path, None, f"{what}[{i}] = {s[i]!r} is not a valid time in seconds")
    return np.rint(s * 1e6).astype(np.int64)
