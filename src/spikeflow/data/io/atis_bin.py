"""The 40-bit ATIS ``.bin`` format of N-MNIST and N-Caltech101 (Orchard et al., 2015).

Each event is 5 bytes: ``x`` (byte 0), ``y`` (byte 1), polarity (bit 7 of byte 2) and a
23-bit microsecond timestamp (bits 6-0 of byte 2, then bytes 3 and 4, big-endian). An
event with ``y == 240`` is a timestamp-overflow marker: every later timestamp is offset
by ``2**13`` per marker seen, and the marker itself is not an event.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np

from spikeflow.data.events import EVENT_DTYPE, EventRecording, format_error, make_events
from spikeflow.data.io._common import (
    as_u8,
    check_in_sensor,
    check_monotonic,
    empty_file_error,
    infer_size,
    read_bytes,
    sensor_recording,
    sensor_size_arg,
    strided,
)
from spikeflow.data.io._native import address, compiled, native_events, new_events

__all__ = ["decode_atis_bin", "read_atis_bin"]

_OVERFLOW_Y = 240
_T_MASK, _P_SHIFT, _ONE = np.uint32(0x7FFFFF), np.uint32(23), np.uint32(1)


def decode_atis_bin(
    raw: bytes | np.ndarray,
    sensor_size: tuple[int, int] | None = (34, 34),
    path: str | PathLike | None = None,
) -> EventRecording:
    """Decode the bytes of an ATIS ``.bin`` file.

    Args:
        raw: the file's bytes.
        sensor_size: ``(width, height)`` to validate coordinates against (N-MNIST
            34x34); ``None`` infers it from the largest coordinates (N-Caltech101,
            whose samples vary in size).
        path: the file name, for error messages.

    Raises:
        DataFormatError: an empty file, a length that is not a multiple of 5 (truncated
            file), coordinates outside the sensor, timestamps that go backwards, or (with
            ``sensor_size=None``) no events to infer the size from.
    """
    sensor_size = sensor_size_arg(sensor_size, "decode_atis_bin")
    raw = as_u8(raw)  # a TypeError for an array of other elements than bytes
    if len(raw) == 0:
        raise empty_file_error(path)
    lib = compiled()
    if lib is not None:
        c = _decode_c(lib, raw, sensor_size)
        if c is not None:
            return sensor_recording(c[0], c[1], path, inferred=sensor_size is None)
    data = raw
    check_whole_events(data, path)
    fast = _decode_fast(data, sensor_size)
    if fast is not None:
        return sensor_recording(fast[0], fast[1], path, inferred=sensor_size is None)
    ev = data.reshape(-1, 5)
    x = ev[:, 0].astype(np.uint16)
    y = ev[:, 1].astype(np.uint16)
    p, t = polarity_and_time(ev)
    overflow = y == _OVERFLOW_Y
    offset_of, index_of = strided(0, 5), None
    if overflow.any():  # markers are not events: name events by their number in the file
        t = t + (np.cumsum(overflow) << 13)
        keep = ~overflow
        idx = np.flatnonzero(keep)
        x, y, p, t = x[keep], y[keep], p[keep], t[keep]

        def index_of(i: int) -> int:
            return int(idx[i])

        def offset_of(i: int) -> int:
            return 5 * int(idx[i])

    check_monotonic(t, path, offset_of, index_of=index_of)
    if sensor_size is None:
        width, height = infer_size(x, y)
    else:
        width, height = sensor_size
        check_in_sensor(x, y, width, height, path, offset_of, index_of=index_of)
    events = make_events(t, x, y, p)
    return sensor_recording(events, (width, height), path, inferred=sensor_size is None)


def check_whole_events(data: np.ndarray, path: str | PathLike | None) -> None:
    """Raise when the bytes are not a whole number of 5-byte events (a truncated file);
    the 40-bit formats (ATIS ``.bin``, SLAYER ``.bs1``) share this layout."""
    if data.size % 5:
        whole = data.size - data.size % 5
        raise format_error(
            path, whole, f"truncated: {data.size % 5} trailing byte(s) after {whole // 5} "
            "complete 5-byte events"
        )  # fmt: skip


def polarity_and_time(ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polarity (bit 7 of byte 2, int8) and 23-bit timestamp (int64) of ``(n, 5)`` events:
    the layout ATIS ``.bin`` and SLAYER ``.bs1`` share after their 2 address bytes."""
    p = (ev[:, 2] >> 7).astype(np.int8)
    t = (
        (ev[:, 2].astype(np.int64) & 0x7F) << 16
        | ev[:, 3].astype(np.int64) << 8
        | ev[:, 4].astype(np.int64)
    )
    return p, t


def _decode_c(
    lib: Any, raw: bytes | np.ndarray, sensor_size: tuple[int, int] | None
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The compiled decoder (``_decoders.c``), or ``None`` to take the numpy paths."""
    if not isinstance(raw, bytes):
        raw = np.ascontiguousarray(raw)  # a 1-D uint8 array (decode_atis_bin checked)
    if sensor_size is not None and min(sensor_size) < 0:
        return None
    if len(raw) % 5:
        return None  # truncated: the numpy path names it
    n = len(raw) // 5
    out, ptr, meta = new_events(n)
    width, height = sensor_size if sensor_size is not None else (-1, -1)
    k = lib.sf_atis_bin(address(raw), len(raw), width, height, ptr, n, meta)
    return native_events(out, k, meta, sensor_size)


def _decode_fast(
    data: np.ndarray, sensor_size: tuple[int, int] | None
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The common case in a few whole-array passes, or ``None`` to take the checked path.

    Valid when there is no overflow marker (every ``y < 240``), every coordinate is
    inside the sensor and time never goes backwards; anything else (including every
    error) is left to the general code, which finds and names the first problem.
    """
    n = data.size // 5
    if n == 0:
        return None
    data = np.ascontiguousarray(data)
    # Bytes 1-4 of every event read as one big-endian word: y in the top byte, then the
    # polarity bit and the 23-bit timestamp. Its maximum gives the largest y (no
    # separate pass over the strided y bytes).
    word = np.ndarray((n,), dtype=">u4", buffer=data, offset=1, strides=(5,)).astype(np.uint32)
    ymax = int(word.max()) >> 24
    x = data[0::5]
    xmax = int(x.max())
    if ymax >= _OVERFLOW_Y:
        return None
    if sensor_size is None:
        width, height = xmax + 1, ymax + 1
    else:
        width, height = sensor_size
        if xmax >= width or ymax >= height:
            return None
    t = word & _T_MASK
    if n > 1 and (t[1:] < t[:-1]).any():
        return None
    out = np.empty(n, dtype=EVENT_DTYPE)
    out["t"] = t
    out["x"] = x
    out["y"] = data[1::5]
    np.right_shift(word, _P_SHIFT, out=word)
    word &= _ONE
    out["p"] = word
    return out, (width, height)


def read_atis_bin(
    path: str | PathLike, sensor_size: tuple[int, int] | None = (34, 34)
) -> EventRecording:
    """Read an N-MNIST (``sensor_size=(34, 34)``) or N-Caltech101 (``None``) file."""
    return decode_atis_bin(read_bytes(path), sensor_size, path)
