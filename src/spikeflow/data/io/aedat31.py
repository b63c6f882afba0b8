"""AEDAT 3.x polarity packets (cAER / DVS128 Gesture) and the Gesture label files.

Layout (little-endian): text header lines starting with ``#`` (the first one
``#!AER-DAT3.1``, the last one ``#!END-HEADER``), then packets. Each packet is a 28-byte
header -- ``eventType`` int16, ``eventSource`` int16, ``eventSize`` int32,
``eventTSOffset`` int32, ``eventTSOverflow`` int32, ``eventCapacity`` int32,
``eventNumber`` int32, ``eventValid`` int32 -- followed by ``eventCapacity * eventSize``
bytes of events. Polarity events (type 1) are 8 bytes: a uint32 whose bit 0 is the
valid mark, bit 1 the polarity, bits 2-16 ``y`` and bits 17-31 ``x``, then an int32
timestamp (31 bits used) which ``eventTSOverflow << 31`` extends. Other event types
(special, frames, IMU, ...) are skipped; events whose valid bit is 0 are dropped.
"""

from __future__ import annotations

import re
import struct
from os import PathLike
from typing import Any

import numpy as np

from spikeflow.data.events import EventRecording, format_error
from spikeflow.data.io._common import (
    DVS_SENSOR_SIZES,
    PathArg,
    RawBytes,
    as_bytes,
    checked_recording,
    decode_in_chunks,
    decode_line,
    empty_file_error,
    read_bytes,
    sensor_recording,
    sensor_size_arg,
    split_header_lines,
)
from spikeflow.data.io._native import compiled, native_events, new_events

__all__ = [
    "GESTURE_LABEL_DTYPE",
    "decode_aedat31",
    "read_aedat31",
    "read_gesture_labels",
    "split_by_labels",
]

_PACKET = struct.Struct("<hhiiiiii")
_POLARITY = 1

#: One row of a DVS128 Gesture ``*_labels.csv`` file.
GESTURE_LABEL_DTYPE = np.dtype([("label", "<i8"), ("start", "<i8"), ("end", "<i8")])

#: An integer of a label file: ASCII decimal digits, an optional sign.
_DECIMAL = re.compile(r"[+-]?[0-9]+")


def _sensor_from_sources(lines: list[str]) -> tuple[int, int] | None:
    for line in lines:
        if line.startswith("#Source"):
            name = line.split(":", 1)[-1].strip().lower()
            for key, size in DVS_SENSOR_SIZES.items():
                if key in name:
                    return size
    return None


def _parse_header(data: bytes, path: PathArg) -> tuple[int, list[str]]:
    found, start = split_header_lines(data, b"#", path)
    if not found or not found[0][1].startswith(b"#!AER-DAT3"):
        got = found[0][1][:40] if found else data[:16]
        raise format_error(
            path, 0, f"not an AEDAT 3.x file: expected '#!AER-DAT3.1', found {got!r}"
        )
    version = decode_line(found[0][1])[len("#!AER-DAT") :].strip()
    if version not in ("3.0", "3.1"):
        raise format_error(path, 0, f"unsupported AEDAT version {version!r}")
    if found[-1][1].strip() != b"#!END-HEADER":
        raise format_error(
            path, start, "truncated header: no '#!END-HEADER' line before the binary data"
        )
    return start, [decode_line(line) for _, line in found]


def decode_aedat31(
    raw: RawBytes, sensor_size: tuple[int, int] | None = None, path: PathArg = None
) -> EventRecording:
    """Decode the polarity events of an AEDAT 3.0/3.1 file.

    Args:
        raw: the whole file's bytes.
        sensor_size: ``(width, height)``; ``None`` takes it from the ``#Source`` header
            line (DVS128, DAVIS240, DAVIS346) or, failing that, from the largest
            coordinates.
        path: the file name, for error messages.

    Raises:
        DataFormatError: an empty file, a wrong magic line or a missing
            ``#!END-HEADER``, a packet header with impossible sizes, a packet running
            past the end of the file (truncated), polarity events not 8 bytes long,
            negative timestamps, coordinates outside the sensor, timestamps that go
            backwards, or no valid polarity event when the size must be inferred.
    """
    sensor_size = sensor_size_arg(sensor_size, "decode_aedat31")
    data = as_bytes(raw)
    if not data:
        raise empty_file_error(path)
    pos, lines = _parse_header(data, path)
    if sensor_size is None:
        sensor_size = _sensor_from_sources(lines)
    inferred = sensor_size is None  # from the largest coordinates: unknown without events
    bodies: list[int] = []  # byte offset of each polarity packet's first event
    counts: list[int] = []
    overflows: list[int] = []
    end = len(data)
    while pos < end:
        if end - pos < _PACKET.size:
            raise format_error(
                path, pos, f"truncated: {end - pos} byte(s) left, less than a 28-byte packet header"
            )
        etype, _src, size, ts_off, ovf, cap, number, valid = _PACKET.unpack_from(data, pos)
        problem = None
        if size <= 0 or cap < 0 or number < 0 or valid < 0 or ovf < 0:
            problem = "negative or zero size/count fields"
        elif number > cap or valid > number:
            problem = f"eventNumber {number} > eventCapacity {cap} or eventValid > eventNumber"
        elif not 0 <= ts_off <= size - 4:
            problem = f"eventTSOffset {ts_off} does not fit in a {size}-byte event"
        elif etype == _POLARITY and (size != 8 or ts_off != 4):
            problem = (
                f"polarity events must be 8 bytes with the timestamp at 4, got {size}/{ts_off}"
            )
        if problem:
            raise format_error(path, pos, f"bad packet header (type {etype}): {problem}")
        body = pos + _PACKET.size
        stop = body + cap * size
        if stop > end:
            raise format_error(
                path, pos, f"truncated: the type-{etype} packet here needs {cap * size} bytes of "
                f"events but only {end - body} remain"
            )  # fmt: skip
        if etype == _POLARITY and number:
            bodies.append(body)
            counts.append(number)
            overflows.append(ovf)
        pos = stop
    n = int(sum(counts))
    lib = compiled()
    if lib is not None and (sensor_size is None or min(sensor_size) >= 0):
        c = _decode_c(lib, data, bodies, counts, overflows, n, sensor_size)
        if c is not None:
            return sensor_recording(c[0], c[1], path, inferred=inferred)
    first = np.cumsum([0, *counts])  # index of each packet's first event
    buf = np.frombuffer(data, dtype=np.uint8)
    ovf_of_event = (
        np.repeat(np.asarray(overflows, dtype=np.int64) << 31, counts) if any(overflows) else None
    )

    def words_of(lo: int, hi: int) -> np.ndarray:
        """The (address, timestamp) words of polarity events ``[lo, hi)``, shape [k, 2]:
        a view into the file when they lie in one packet, else a small concatenation."""
        k0 = int(np.searchsorted(first, lo, side="right")) - 1
        pieces = []
        while lo < hi:
            stop = min(hi, int(first[k0 + 1]))
            at = bodies[k0] + 8 * (lo - int(first[k0]))
            pieces.append(buf[at : at + 8 * (stop - lo)])
            lo, k0 = stop, k0 + 1
        raw = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        return raw.view("<u4").reshape(-1, 2)

    def chunk(lo: int, hi: int) -> tuple[np.ndarray, ...] | None:
        w = words_of(lo, hi)
        # Contiguous copies first: every later pass then runs at full speed.
        a, tc = np.ascontiguousarray(w[:, 0]), np.ascontiguousarray(w[:, 1])
        if int(tc.max()) >> 31:  # a negative timestamp: reported by the checked path
            return None
        every = bool(np.bitwise_and.reduce(a) & 1)  # every valid bit set
        if not every:
            ok = (a & 1).astype(bool)
            a, tc = a[ok], tc[ok]
        if ovf_of_event is not None:
            o = ovf_of_event[lo:hi]
            tc = (o if every else o[ok]) | tc
        return tc, a >> 17, (a >> 2) & 0x7FFF, (a >> 1) & 1

    fast = decode_in_chunks(n, chunk, sensor_size)
    if fast is not None:
        return sensor_recording(fast[0], fast[1], path, inferred=inferred)
    # A check failed: decode again as whole arrays, to locate and name the first problem.
    words = words_of(0, n) if n else np.zeros((0, 2), dtype=np.uint32)
    addr = words[:, 0]
    ts = words[:, 1]

    def word_offset(i: int) -> int:
        """Byte offset of polarity event ``i`` (before dropping invalid ones)."""
        k = int(np.searchsorted(first, i, side="right")) - 1
        return bodies[k] + 8 * (i - int(first[k]))

    if n and int(ts.max()) >> 31:
        i = int(np.flatnonzero(ts >> 31)[0])
        raise format_error(
            path, word_offset(i) + 4,
            f"polarity event has a negative timestamp ({int(ts[i]) - (1 << 32)})",
        )  # fmt: skip
    valid = addr & 1
    keep: np.ndarray | None = None
    if not valid.all():  # events whose valid mark is 0 are dropped
        keep = valid.astype(bool)
        addr, ts = addr[keep], ts[keep]
    if any(overflows):
        ovf = np.repeat(np.asarray(overflows, dtype=np.int64) << 31, counts)
        t = (ovf if keep is None else ovf[keep]) | ts
    else:
        t = ts
    x = (addr >> 17) & 0x7FFF
    y = (addr >> 2) & 0x7FFF
    p = ((addr >> 1) & 1).astype(np.int8)

    def offset_of(i: int) -> int:  # only on an error
        return word_offset(i if keep is None else int(np.flatnonzero(keep)[i]))

    return checked_recording(t, x, y, p, sensor_size, path, offset_of)


def _decode_c(
    lib: Any,
    data: bytes,
    bodies: list[int],
    counts: list[int],
    overflows: list[int],
    n: int,
    sensor_size: tuple[int, int] | None,
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The compiled decoder (``_decoders.c``), or ``None`` to take the numpy paths."""
    table = np.array([bodies, counts, overflows], dtype=np.int64).reshape(3, -1)
    out, ptr, meta = new_events(n)
    width, height = sensor_size if sensor_size is not None else (-1, -1)
    k = lib.sf_aedat31(
        data, len(data), table[0].ctypes.data, table[1].ctypes.data, table[2].ctypes.data,
        table.shape[1], width, height, ptr, n, meta,
    )  # fmt: skip
    return native_events(out, k, meta, sensor_size)


def read_aedat31(
    path: str | PathLike, sensor_size: tuple[int, int] | None = None
) -> EventRecording:
    """Read the polarity events of an AEDAT 3.x file (see :func:`decode_aedat31`)."""
    return decode_aedat31(read_bytes(path), sensor_size, path)


def read_gesture_labels(path: str | PathLike) -> np.ndarray:
    """Read a DVS128 Gesture ``*_labels.csv`` (``class,startTime_usec,endTime_usec``).

    Returns:
        A :data:`GESTURE_LABEL_DTYPE` array with the class as written (1-11) and the
        ``[start, end)`` window in microseconds.

    Raises:
        DataFormatError: a wrong header line, a row that is not three decimal integers
            (of at most ``2**62``), or a window that does not end after it starts.
    """
    data = read_bytes(path)
    rows: list[tuple[int, int, int]] = []
    offset = 0
    for lineno, line in enumerate(data.split(b"\n")):
        text = line.decode("latin-1").strip()
        here, offset = offset, offset + len(line) + 1
        if lineno == 0:
            if text.replace(" ", "") != "class,startTime_usec,endTime_usec":
                raise format_error(
                    path,
                    0,
                    f"expected the header 'class,startTime_usec,endTime_usec', found {text!r}",
                )
            continue
        if not text:
            continue
        parts = [v.strip() for v in text.split(",")]
        # decimal digits only (int() would take "1_0" and "\u0661"), values int64 holds
        if len(parts) != 3 or not all(_DECIMAL.fullmatch(v) for v in parts):
            raise format_error(
                path, here, f"line {lineno + 1}: expected three integers, found {text!r}"
            )
        label, start, stop = (int(v) for v in parts)
        if max(abs(label), abs(start), abs(stop)) > 2**62:
            raise format_error(path, here, f"line {lineno + 1}: a value out of range in {text!r}")
        if stop <= start or start < 0:
            raise format_error(path, here, f"line {lineno + 1}: window [{start}, {stop}) is empty")
        rows.append((label, start, stop))
    return np.array(rows, dtype=GESTURE_LABEL_DTYPE)


def split_by_labels(
    recording: EventRecording, labels: np.ndarray
) -> list[tuple[EventRecording, int]]:
    """Cut a recording into one ``(sample, label)`` per label row.

    Each sample holds the events with ``start <= t < end`` (the windows of
    :func:`read_gesture_labels`); the recording must be sorted by time, as every
    reader here returns it.
    """
    t = recording.events["t"]
    lo = np.searchsorted(t, labels["start"], side="left")
    hi = np.searchsorted(t, labels["end"], side="left")
    return [
        (EventRecording(recording.events[a:b], recording.sensor_size, recording.source), int(c))
        for a, b, c in zip(lo, hi, labels["label"])
    ]
