"""Helpers shared by the readers: bytes in, text headers, validation, optional imports.

Every check here raises :class:`~spikeflow.errors.DataFormatError` through
:func:`~spikeflow.data.events.format_error`, so messages always name the file, the byte
offset and the problem.
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
import zipfile
from collections.abc import Callable
from os import PathLike
from types import ModuleType

import numpy as np

from spikeflow.data.events import EVENT_DTYPE, EventRecording, format_error, make_events
from spikeflow.errors import ConfigurationError, DTypeError, MissingExtraError

PathArg = str | PathLike | None
RawBytes = bytes | bytearray | memoryview | np.ndarray

#: Upper bound on the decoded size of one compressed packet (AEDAT 4), against bombs.
MAX_PACKET_BYTES = 1 << 28

#: Deflate's largest expansion: a 258-byte match costs at least 2 bits, so n bytes of
#: deflate data (gzip, zlib, a ZIP member) decompress to at most 1032 n bytes.
DEFLATE_MAX_RATIO = 1032


#: Names of the ZIP compression methods, for messages.
_ZIP_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "deflate64",
                     93: "zstd", 99: "AES encryption"}  # fmt: skip


def check_zip_member_size(info: zipfile.ZipInfo, path: PathArg) -> None:
    """Refuse a ZIP member (of an ``.npz``) that could expand without bound, before
    anything is decompressed: a stored member must be as long as its data, a deflated
    one at most :data:`DEFLATE_MAX_RATIO` times longer. Without this a forged size (up
    to 4 GB, more with ZIP64) lets a small file allocate that much. Any other method
    (bzip2, LZMA: numpy writes neither, but other zip tools can) is refused: zipfile
    decompresses each chunk of such a member whole, and bzip2 expands a million-fold
    (178 bytes of it hold 200 MB of zeros), so no ratio bounds what a read allocates.

    Raises:
        DataFormatError: naming ``path``, the member and its byte offset, and both sizes
            (or the compression method).
    """
    declared, packed = info.file_size, info.compress_size
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        method = info.compress_type
        problem = (
            f"uses compression method {method} ({_ZIP_METHOD_NAMES.get(method, 'unknown')}); "
            "only stored and deflate members are read, as numpy writes "
            "them (the others have no bound on how far a few bytes expand). Save the arrays "
            "again with numpy.savez or numpy.savez_compressed"
        )
    elif info.compress_type == zipfile.ZIP_STORED and declared != packed:
        problem = f"is stored uncompressed in {packed} bytes but declares {declared}"
    elif info.compress_type == zipfile.ZIP_DEFLATED and declared > DEFLATE_MAX_RATIO * packed:
        problem = (
            f"declares {declared} bytes, more than its {packed} deflate-compressed bytes can "
            f"hold ({DEFLATE_MAX_RATIO} per compressed byte at most)"
        )
    else:
        return
    raise format_error(path, info.header_offset, f"ZIP member {info.filename!r} {problem}")


#: ``(width, height)`` of the iniVation sensors, by the names their file headers use
#: (jAER AEDAT 2.0 address layouts, AEDAT 3.1 ``#Source`` lines).
DVS_SENSOR_SIZES: dict[str, tuple[int, int]] = {
    "dvs128": (128, 128),
    "davis240": (240, 180),
    "davis346": (346, 260),
}


#: The largest sensor side a file or an argument may give: event coordinates are uint16
#: (:data:`~spikeflow.data.EVENT_DTYPE`), 0 to 65535.
MAX_SENSOR_SIDE = 65536


def is_sensor_side(value: object) -> bool:
    """Whether ``value`` is an integer (not a bool) in ``[1, MAX_SENSOR_SIDE]``."""
    return (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            and 1 <= value <= MAX_SENSOR_SIDE)  # fmt: skip


def sensor_size_arg(sensor_size: object, owner: str) -> tuple[int, int] | None:
    """A reader's ``sensor_size`` argument as ``(width, height)`` Python ints (``None``
    as is), checked before any byte is read: a bad size would otherwise surface as a
    ctypes or unpacking error, or blame the file ("outside the 0x0 sensor").

    Raises:
        ConfigurationError: not ``None`` nor two integers (bools and floats refused) in
            ``[1, MAX_SENSOR_SIDE]``; the message names ``owner`` and the value.
    """
    if sensor_size is None:
        return None
    ok = isinstance(sensor_size, (tuple, list)) and len(sensor_size) == 2
    if not ok or not all(is_sensor_side(v) for v in sensor_size):  # type: ignore[union-attr]
        raise ConfigurationError(
            f"{owner}: sensor_size must be None or (width, height), two integers in "
            f"[1, {MAX_SENSOR_SIDE}]; got {sensor_size!r}"
        )
    return int(sensor_size[0]), int(sensor_size[1])  # type: ignore[index]


def read_bytes(path: str | PathLike) -> bytes:
    """The whole file as bytes (``os.read`` calls: a few µs less than ``open().read()``,
    which counts for datasets of many small files such as N-MNIST).

    Raises:
        DataFormatError: the file is empty. No format read here has a valid 0-byte file
            (even a recording without events has a header, or is not written at all); an
            empty file is an interrupted copy or extraction, not a recording.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size) if size else b""
        if len(data) < size or not size:  # a short read, or a file that reports no size
            chunks = [data]
            while chunk := os.read(fd, 1 << 24):
                chunks.append(chunk)
            data = b"".join(chunks)
        if not data:
            raise empty_file_error(path)
        return data
    finally:
        os.close(fd)


def empty_file_error(path: PathArg) -> Exception:
    """The :class:`DataFormatError` for a file (or buffer) of 0 bytes."""
    return format_error(path, 0, "empty file (0 bytes): not a recording")


def unknown_size_error(path: PathArg, note: str = "pass sensor_size=") -> Exception:
    """The :class:`DataFormatError` for a file without events whose sensor size must be
    inferred from its events (a ``(0, 0)`` sensor would only fail later, far from here);
    ``note`` ends the message (what to do, or why the size is missing)."""
    return format_error(
        path, 0, f"no events and no sensor size in the file: the sensor size is unknown "
        f"({note})"
    )  # fmt: skip


def read_head(path: str | PathLike, size: int) -> bytes:
    """The first ``size`` bytes of a file (all of it when shorter), for choosing how to
    read it.

    Raises:
        DataFormatError: the file is empty (as :func:`read_bytes`).
    """
    with open(path, "rb") as fh:
        head = fh.read(size)
    if not head:
        raise empty_file_error(path)
    return head


def sensor_recording(
    events: np.ndarray,
    size: tuple[int, int],
    path: PathArg,
    *,
    inferred: bool,
    note: str = "pass sensor_size=",
) -> EventRecording:
    """The 2-polarity :class:`EventRecording` of a ``size = (width, height)`` sensor.

    Raises:
        DataFormatError: ``inferred`` (``size`` was taken from the largest coordinates,
            not from an argument or the file) and there are no events: the size is
            unknown (:func:`unknown_size_error`, ending with ``note``), not ``(0, 0)``.
    """
    if inferred and len(events) == 0:
        raise unknown_size_error(path, note)
    return EventRecording(events, (*size, 2), source_name(path))


def as_bytes(raw: RawBytes) -> bytes:
    """``raw`` as an immutable ``bytes`` object (header parsing works on bytes)."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, np.ndarray):
        return as_u8(raw).tobytes()  # astype would cut wider elements to their low byte
    return bytes(raw)


def as_u8(raw: RawBytes) -> np.ndarray:
    """``raw`` as a read-only uint8 view (no copy for bytes-like input)."""
    if isinstance(raw, np.ndarray):
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise DTypeError(
                f"expected a 1-D uint8 array of raw bytes, got {raw.dtype} {raw.shape}"
            )
        return raw
    return np.frombuffer(raw, dtype=np.uint8)


def source_name(path: PathArg) -> str | None:
    """The ``source`` recorded on an :class:`EventRecording`."""
    return str(path) if path is not None else None


_HEADER_PATTERNS: dict[bytes, re.Pattern[bytes]] = {}


def header_end(data: bytes, marker: bytes, path: PathArg, *, limit: int | None = None) -> int:
    """Offset of the first byte after the leading lines that start with ``marker``.

    Raises:
        DataFormatError: a header line that runs to the end of the file without a
            newline (the file is truncated).
    """
    pattern = _HEADER_PATTERNS.get(marker)
    if pattern is None:  # whole lines that start with the marker, in one regex scan
        pattern = re.compile(b"(?:" + re.escape(marker) + b"[^\n]*\n)*")
        _HEADER_PATTERNS[marker] = pattern
    end = len(data) if limit is None else min(len(data), limit)
    pos = pattern.match(data, 0, end).end() if end else 0
    if pos < end and data.startswith(marker, pos):
        raise format_error(
            path, pos, f"truncated header: the line starting here has no end of line "
            f"({len(data) - pos} byte(s) to the end of the file)"
        )  # fmt: skip
    return pos


def split_header_lines(
    data: bytes, marker: bytes, path: PathArg, *, limit: int | None = None
) -> tuple[list[tuple[int, bytes]], int]:
    """Split the leading text lines that start with ``marker``.

    Returns ``[(offset, line_without_eol), ...]`` and the offset of the first byte after
    the header (the first line that does not start with ``marker``). A header line that
    runs to the end of the file without a newline means the file is truncated.
    """
    pos = header_end(data, marker, path, limit=limit)
    raw_lines = data[:pos].split(b"\n")[:-1]
    offsets = itertools.accumulate((len(line) + 1 for line in raw_lines[:-1]), initial=0)
    return [(off, line.rstrip(b"\r")) for off, line in zip(offsets, raw_lines)], pos


def decode_line(line: bytes) -> str:
    """A header line as text (Latin-1 never fails; headers are ASCII in practice)."""
    return line.decode("latin-1")


def first_decrease(t: np.ndarray) -> int:
    """Index ``i`` of the first ``t[i] < t[i - 1]``, or -1 when ``t`` never decreases."""
    if t.size < 2:
        return -1
    down = t[1:] < t[:-1]
    if not down.any():
        return -1
    back = np.flatnonzero(down)
    return int(back[0]) + 1 if back.size else -1


OffsetOf = Callable[[int], int]


def check_monotonic(
    t: np.ndarray,
    path: PathArg,
    offset_of: OffsetOf,
    what: str = "event",
    index_of: OffsetOf | None = None,
    note: str = "",
) -> None:
    """Raise when the timestamps go backwards; ``offset_of(i)`` is event ``i``'s byte
    offset and ``index_of(i)`` its number in the file (default ``i``; differs when the
    file holds records that are not events); ``note`` ends the message."""
    i = first_decrease(t)
    if i >= 0:
        number = i if index_of is None else index_of(i)
        raise format_error(
            path, offset_of(i), f"timestamp goes backwards at {what} {number} "
            f"({int(t[i - 1])} us -> {int(t[i])} us){note}"
        )  # fmt: skip


def check_in_sensor(
    x: np.ndarray,
    y: np.ndarray,
    width: int,
    height: int,
    path: PathArg,
    offset_of: OffsetOf,
    what: str = "event",
    index_of: OffsetOf | None = None,
) -> None:
    """Raise when a coordinate falls outside a ``width`` x ``height`` sensor
    (``offset_of`` and ``index_of`` as in :func:`check_monotonic`)."""
    if x.size == 0 or (int(x.max()) < width and int(y.max()) < height):
        return
    bad = np.flatnonzero((x >= width) | (y >= height))
    if bad.size:
        i = int(bad[0])
        number = i if index_of is None else index_of(i)
        raise format_error(
            path, offset_of(i), f"{what} {number} at (x={int(x[i])}, y={int(y[i])}) is outside "
            f"the {width}x{height} sensor"
        )  # fmt: skip


def as_int64(
    values: np.ndarray, name: str, path: PathArg, *, non_negative: bool = False
) -> np.ndarray:
    """Integer values stored as any integer or bool dtype, or as whole floats (MATLAB and
    NumPy containers), flattened to int64.

    Raises:
        DataFormatError: a non-numeric dtype, a float that is not a whole number, or a
            value outside ``[-2**62, 2**62]`` (``[0, 2**62]`` with ``non_negative``).
    """
    v = np.asarray(values).reshape(-1)
    if v.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(v) | (v != np.round(v)))
        if bad.size:
            i = int(bad[0])
            raise format_error(path, None, f"{name}[{i}] = {v[i].item()!r} is not an integer")
    elif v.dtype.kind not in "iub":
        raise format_error(path, None, f"{name} has non-integer dtype {v.dtype}")
    low = 0 if non_negative else -(2**62)
    if v.size and (v.min() < low or v.max() > 2**62):
        i = int(np.flatnonzero((v < low) | (v > 2**62))[0])
        raise format_error(path, None, f"{name}[{i}] = {v[i].item()!r} is out of range")
    return v.astype(np.int64)


def infer_size(x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """``(max x + 1, max y + 1)``, or ``(0, 0)`` without events."""
    if x.size == 0:
        return 0, 0
    return int(x.max()) + 1, int(y.max()) + 1


def checked_recording(
    t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray,
    sensor_size: tuple[int, int] | None, path: PathArg, offset_of: OffsetOf,
) -> EventRecording:  # fmt: skip
    """The recording of decoded event fields, checked as whole arrays: coordinates inside
    ``sensor_size`` (:func:`check_in_sensor`; ``None``: the size is inferred from the
    largest coordinates, :func:`infer_size`), then time never decreasing
    (:func:`check_monotonic`); ``offset_of(i)`` is event ``i``'s byte offset.

    Raises:
        DataFormatError: naming ``path``, the offset of the first bad event and what is
            wrong with it; or no events and no ``sensor_size`` (:func:`sensor_recording`).
    """
    if sensor_size is None:
        width, height = infer_size(x, y)
    else:
        width, height = sensor_size
        check_in_sensor(x, y, width, height, path, offset_of)
    check_monotonic(t, path, offset_of)
    events = make_events(t, x, y, p)
    return sensor_recording(events, (width, height), path, inferred=sensor_size is None)


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


#: Items decoded per pass of :func:`decode_in_chunks`: small enough that every temporary
#: of a chunk stays in the CPU cache and is reused, instead of page-faulting fresh
#: full-size arrays (which costs more than the decoding itself on large files).
CHUNK = 1 << 16

ChunkDecoder = Callable[[int, int], "tuple[np.ndarray, ...] | None"]


def decode_in_chunks(
    n: int, decode: ChunkDecoder, sensor: tuple[int, int] | None
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Decode ``n`` source items chunk by chunk straight into an :data:`EVENT_DTYPE` array.

    ``decode(lo, hi)`` returns ``(t, x, y, p)`` of the events held by items
    ``[lo, hi)`` (it may drop items, e.g. non-event words), or ``None`` when it meets
    something invalid. Checks run per chunk on the
    cached values: coordinates inside ``sensor = (width, height)`` (or, with ``None``,
    the size is inferred) and time never decreasing, across chunk borders too.

    Returns:
        ``(events, (width, height))``, or ``None`` when a check fails: the caller then
        runs its whole-array path, which locates and names the first bad event.
    """
    out = np.empty(n, dtype=EVENT_DTYPE)
    pos = 0
    last_t: int | None = None
    xmax = ymax = -1
    for lo in range(0, n, CHUNK):
        fields = decode(lo, min(lo + CHUNK, n))
        if fields is None:
            return None
        t, x, y, p = fields
        k = len(t)
        if k == 0:
            continue
        xmax, ymax = max(xmax, int(x.max())), max(ymax, int(y.max()))
        if sensor is not None and (xmax >= sensor[0] or ymax >= sensor[1]):
            return None
        if (last_t is not None and t[0] < last_t) or (k > 1 and (t[1:] < t[:-1]).any()):
            return None
        last_t = int(t[-1])
        o = out[pos : pos + k]
        o["t"], o["x"], o["y"], o["p"] = t, x, y, p
        pos += k
    size = sensor if sensor is not None else (xmax + 1, ymax + 1)
    if pos < n:  # copy the bytes (numpy copies a packed structured array field by field)
        out = out[:pos].view(np.uint8).copy().view(EVENT_DTYPE)
    return out, size
