"""Prophesee / Metavision event files: EVT 2.0 and EVT 3.0 ``.raw``, and ``.dat``.

All three start with text header lines beginning with ``%`` (``% evt 3.0``,
``% format EVT3;height=720;width=1280``, ``% geometry 1280x720``, ``% Height 480``,
``% plugin_name hal_plugin_gen41_evk3``, optionally ``% end``), then little-endian
binary data:

* **EVT 2.0**: 32-bit words, type in bits 31-28. CD_OFF (0) / CD_ON (1): 6 timestamp
  LSBs in bits 27-22, ``x`` in 21-11, ``y`` in 10-0; EVT_TIME_HIGH (8): the timestamp's
  28 MSBs; EXT_TRIGGER (10), OTHERS (14), CONTINUED (15): skipped.
* **EVT 3.0**: 16-bit words, type in bits 15-12, decoded with a running state:
  EVT_ADDR_Y (0) sets ``y``; EVT_ADDR_X (2) emits one event (``x`` bits 10-0, polarity
  bit 11); VECT_BASE_X (3) sets the base ``x`` and polarity; VECT_12 (4) / VECT_8 (5)
  emit one event per set bit of their 12 / 8-bit mask at ``base + bit`` and advance the
  base by 12 / 8; EVT_TIME_LOW (6) / EVT_TIME_HIGH (8) set the low / high 12 bits of the
  24-bit time base; CONTINUED_4 (7), EXT_TRIGGER (10), OTHERS (14), CONTINUED_12 (15):
  skipped. Decoding is vectorised: the state in force at each event word is the rank
  of the last word that set it, read off a running count (``np.cumsum``) of such words;
  the base ``x`` of a vector adds a running sum of the vector widths since its
  VECT_BASE_X; one event per set mask bit comes from ``np.repeat`` and a bit table.
* **.dat** (N-CARS, ATIS/Gen1): after the header, one byte event type (0 or 12 = CD)
  and one byte event size (8), then 8-byte events: uint32 timestamp (µs) and uint32
  with ``x`` in bits 13-0, ``y`` in 27-14, polarity in 31-28.

The time-high counters of both EVT formats wrap around (after 2**34 µs for EVT 2.0,
2**24 µs for EVT 3.0); a decrease of the time-high value counts one wrap. Words before
the first time-high word (and, for EVT 3.0, before the first ``y`` / base ``x``) carry
no complete state and are dropped, as Prophesee's decoder does.
"""

from __future__ import annotations

import re
from os import PathLike

import numpy as np

from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import (
    OffsetOf,
    PathArg,
    RawBytes,
    as_bytes,
    check_in_sensor,
    check_monotonic,
    decode_in_chunks,
    decode_line,
    infer_size,
    read_bytes,
    source_name,
    split_header_lines,
)
from spikeflow.data.io._native import FAIL_CAPACITY, compiled, new_events, trimmed

__all__ = [
    "PROPHESEE_PLUGIN_SENSORS",
    "decode_dat",
    "decode_evt2",
    "decode_evt3",
    "parse_prophesee_header",
    "read_dat",
    "read_evt2",
    "read_evt3",
    "read_prophesee_raw",
]

#: Sensor size of the camera plugins seen in the sample files (when no geometry line).
PROPHESEE_PLUGIN_SENSORS: dict[str, tuple[int, int]] = {
    "hal_plugin_gen3_fx3": (640, 480),
    "hal_plugin_gen41_evk3": (1280, 720),
}
_EVT2_TYPES = (0, 1, 8, 10, 14, 15)
_EVT3_TYPES = (0, 2, 3, 4, 5, 6, 7, 8, 10, 14, 15)


def parse_prophesee_header(raw: RawBytes, path: PathArg = None) -> tuple[dict[str, str], int]:
    """Parse the ``%`` header lines.

    Returns:
        ``(fields, data_start)``: ``fields`` maps each header key (lower-cased first
        word, e.g. ``"evt"``, ``"format"``, ``"geometry"``, ``"height"``) to the rest
        of its line; ``data_start`` is the offset of the first binary byte.
    """
    data = as_bytes(raw)
    lines, start = split_header_lines(data, b"%", path)
    fields: dict[str, str] = {}
    for k, (_, line) in enumerate(lines):
        text = decode_line(line)[1:].strip()
        if text.lower() == "end":  # explicit end: binary data may itself start with '%'
            return fields, lines[k + 1][0] if k + 1 < len(lines) else start
        key, _, value = text.partition(" ")
        fields.setdefault(key.lower(), value.strip())
    return fields, start


def _encoding(fields: dict[str, str]) -> str | None:
    if "evt" in fields:
        return "evt" + fields["evt"].strip().split(".")[0]
    if "format" in fields:
        return fields["format"].split(";")[0].strip().lower()
    return None


def _sensor_from_header(fields: dict[str, str]) -> tuple[int, int] | None:
    fmt = fields.get("format", "")
    dims = dict(re.findall(r"(width|height)=(\d+)", fmt))
    if len(dims) == 2:
        return int(dims["width"]), int(dims["height"])
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", fields.get("geometry", ""))
    if m:
        return int(m.group(1)), int(m.group(2))
    if fields.get("width", "").isdigit() and fields.get("height", "").isdigit():
        return int(fields["width"]), int(fields["height"])
    return PROPHESEE_PLUGIN_SENSORS.get(fields.get("plugin_name", "").strip())


def _words(data: bytes, start: int, dtype: str, path: PathArg) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    extra = (len(data) - start) % size
    if extra:
        whole = len(data) - extra
        raise format_error(
            path,
            whole,
            f"truncated: {extra} trailing byte(s) after the last whole {size}-byte word",
        )
    return np.frombuffer(data, dtype=dtype, offset=start)


def _check_types(typ: np.ndarray, allowed: tuple[int, ...], start: int, size: int, path: PathArg):
    allowed_bits = sum(1 << k for k in allowed)
    if allowed_bits == 0xFFFF:
        return
    # One shift per word: bit ``typ`` of the allowed-set mask (typ is 4 bits wide).
    if (np.right_shift(typ.dtype.type(allowed_bits), typ) & 1).all():
        return
    ok = np.zeros(16, dtype=bool)
    ok[list(allowed)] = True
    bad = np.flatnonzero(~ok[typ])
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, start + size * i, f"unknown event word type 0x{int(typ[i]):x} in word {i}"
        )


def _count_dtype(n: int) -> type:
    """The narrowest safe dtype for running counts over ``n`` words (12 per word at most)."""
    return np.int32 if 12 * n < 2**31 else np.int64


def _unwrapped(values: np.ndarray, period: int) -> np.ndarray:
    """Time-high values with a wrap counted at every decrease."""
    values = values.astype(np.int64)
    if values.size > 1:
        values[1:] += np.cumsum(values[1:] < values[:-1]) * period
    return values


def _finish(
    t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray,
    sensor_size: tuple[int, int] | None, fields: dict[str, str], path: PathArg,
    offset_of: OffsetOf,
) -> EventRecording:  # fmt: skip
    size = sensor_size or _sensor_from_header(fields)
    if size is None:
        width, height = infer_size(x, y)
    else:
        width, height = size
        check_in_sensor(x, y, width, height, path, offset_of)
    check_monotonic(t, path, offset_of)
    return EventRecording(
        make_events(t, x, y, p.astype(np.int8)), (width, height, 2), source_name(path)
    )


def _check_encoding(fields: dict[str, str], want: str, path: PathArg) -> None:
    enc = _encoding(fields)
    if enc is not None and enc != want:
        raise format_error(path, 0, f"the header says the encoding is {enc!r}, not {want!r}")


def _decode_c(
    name: str, data: bytes, start: int, size: int, guess: int, sensor: tuple[int, int] | None
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The compiled EVT decoder ``name`` (``_decoders.c``), or ``None`` to take the numpy
    path. Room for ``guess`` events per word first (EVT 3.0 vectors hold up to 12: on
    running out, once more with room for 12)."""
    lib = compiled()
    if lib is None or (len(data) - start) % size or (sensor is not None and min(sensor) < 0):
        return None
    n = (len(data) - start) // size
    width, height = sensor if sensor is not None else (-1, -1)
    for per_word in (guess, 12):
        out, ptr, meta = new_events(per_word * n)
        k = getattr(lib, name)(data, len(data), start, width, height, ptr, per_word * n, meta)
        if k != FAIL_CAPACITY:
            break
    if k < 0:
        return None
    if sensor is None:
        width, height = meta[0] + 1, meta[1] + 1
    return trimmed(out, k), (width, height)


_EVT2_ALLOWED = np.uint32(sum(1 << k for k in _EVT2_TYPES))


class _Evt2Chunks:
    """EVT 2.0 words decoded chunk by chunk (for :func:`decode_in_chunks`), carrying the
    TIME_HIGH in force and the wrap count from one chunk to the next."""

    def __init__(self, words: np.ndarray) -> None:
        self.words = words
        self.high = -1  # the unwrapped TIME_HIGH in force, << 6; -1: none seen yet
        self.raw_high = -1  # its 28-bit value as written, to detect wraps

    def __call__(self, lo: int, hi: int) -> tuple[np.ndarray, ...] | None:
        w = self.words[lo:hi]
        typ = w >> 28
        if not (np.right_shift(_EVT2_ALLOWED, typ) & 1).all():
            return None  # an unknown word type
        th_at = np.flatnonzero(typ == 8)
        highs = np.empty(th_at.size + 1, dtype=np.int64)
        highs[0] = self.high
        if th_at.size:
            raw = (w[th_at] & 0x0FFFFFFF).astype(np.int64)
            prev = np.concatenate(([self.raw_high], raw[:-1]))
            wraps = np.cumsum(raw < prev) + (self.high >> 34 if self.high >= 0 else 0)
            highs[1:] = (raw + (wraps << 28)) << 6
            self.raw_high, self.high = int(raw[-1]), int(highs[-1])
        # The TIME_HIGH in force at every word: one run per TIME_HIGH word.
        high = np.repeat(highs, np.diff(th_at, prepend=0, append=w.size))
        is_cd = typ <= 1
        if highs[0] < 0:  # CD words before the first TIME_HIGH carry no time: dropped
            is_cd &= high >= 0
        e = w[is_cd]
        t = high[is_cd]
        t |= (e >> 22) & 0x3F
        return t, (e >> 11) & 0x7FF, e & 0x7FF, e >> 28


def decode_evt2(
    raw: RawBytes, sensor_size: tuple[int, int] | None = None, path: PathArg = None
) -> EventRecording:
    """Decode an EVT 2.0 ``.raw`` file.

    Args:
        raw: the whole file's bytes.
        sensor_size: ``(width, height)``; ``None`` reads it from the header
            (``format``/``geometry`` lines, else the plugin name) or, failing that,
            infers it from the largest coordinates.
        path: the file name, for error messages.

    Raises:
        DataFormatError: a header declaring another encoding, a length that is not a
            whole number of words (truncated), an unknown word type, coordinates
            outside the sensor, or timestamps that go backwards.
    """
    data = as_bytes(raw)
    fields, start = parse_prophesee_header(data, path)
    _check_encoding(fields, "evt2", path)
    sensor = sensor_size or _sensor_from_header(fields)
    c = _decode_c("sf_evt2", data, start, 4, 1, sensor)
    if c is not None:
        return EventRecording(c[0], (*c[1], 2), source_name(path))
    w = _words(data, start, "<u4", path)
    fast = decode_in_chunks(w.size, _Evt2Chunks(w), sensor)
    if fast is not None:
        return EventRecording(fast[0], (*fast[1], 2), source_name(path))
    # A check failed: whole arrays, to locate and name the first problem.
    typ = w >> 28
    _check_types(typ, _EVT2_TYPES, start, 4, path)
    th_at = np.flatnonzero(typ == 8)
    if th_at.size == 0:  # no TIME_HIGH: no complete timestamp, no event
        return _finish(*(np.zeros(0, np.int64),) * 4, sensor_size, fields, path, lambda i: start)
    # Every word from the first TIME_HIGH on gets the (unwrapped) TIME_HIGH in force,
    # one np.repeat over the runs between TIME_HIGH words; CD words before it are dropped.
    first = int(th_at[0])
    th_full = _unwrapped(w[th_at] & 0x0FFFFFFF, 1 << 28) << 6
    high = np.repeat(th_full, np.diff(th_at, append=w.size))
    is_cd = typ[first:] <= 1
    wc = w[first:][is_cd]
    t = high[is_cd]
    t |= (wc >> 22) & 0x3F
    x = (wc >> 11) & 0x7FF
    y = wc & 0x7FF
    p = wc >> 28

    def offset_of(i: int) -> int:  # only on an error: the CD word index of event i
        return start + 4 * (first + int(np.flatnonzero(is_cd)[i]))

    return _finish(t, x, y, p, sensor_size, fields, path, offset_of)


_POP = np.array([bin(v).count("1") for v in range(4096)], dtype=np.int64)
_WIDTH = np.zeros(16, dtype=np.int8)
_WIDTH[4], _WIDTH[5] = 12, 8  # VECT_12, VECT_8
_BITS = np.zeros((4096, 12), dtype=np.int64)
for _v in range(4096):
    _b = [k for k in range(12) if _v >> k & 1]
    _BITS[_v, : len(_b)] = _b
del _v, _b


def decode_evt3(
    raw: RawBytes, sensor_size: tuple[int, int] | None = None, path: PathArg = None
) -> EventRecording:
    """Decode an EVT 3.0 ``.raw`` file (every word type; vectorised).

    Args:
        raw: the whole file's bytes.
        sensor_size: as for :func:`decode_evt2`.
        path: the file name, for error messages.

    Raises:
        DataFormatError: a header declaring another encoding, an odd data length
            (truncated), an unknown word type, coordinates outside the sensor, or
            timestamps that go backwards.
    """
    data = as_bytes(raw)
    fields, start = parse_prophesee_header(data, path)
    _check_encoding(fields, "evt3", path)
    c = _decode_c("sf_evt3", data, start, 2, 2, sensor_size or _sensor_from_header(fields))
    if c is not None:
        return EventRecording(c[0], (*c[1], 2), source_name(path))
    w = _words(data, start, "<u2", path)
    typ = w >> 12
    _check_types(typ, _EVT3_TYPES, start, 2, path)
    val = w & 0xFFF
    cdt = _count_dtype(w.size)
    ev = np.flatnonzero((typ == 2) | (typ == 4) | (typ == 5))  # the words that emit events
    te = typ[ev]
    # State in force at each event word: rank of the last word that set it (-1: none yet),
    # from a running count of those words.
    k_y = np.cumsum(typ == 0, dtype=cdt)[ev] - 1
    k_high = np.cumsum(typ == 8, dtype=cdt)[ev] - 1
    k_base = np.cumsum(typ == 3, dtype=cdt)[ev] - 1
    is_x = te == 2
    ok = (k_y >= 0) & (k_high >= 0) & (is_x | (k_base >= 0))
    if not ok.all():
        ev, te, k_y, k_high, k_base, is_x = (
            ev[ok],
            te[ok],
            k_y[ok],
            k_high[ok],
            k_base[ok],
            is_x[ok],
        )
    k_low = np.cumsum(typ == 6, dtype=cdt)[ev] - 1
    # Vectors advance the base x: the widths of the vectors between a VECT_BASE_X and a
    # vector word, from a running sum of widths.
    widths = np.cumsum(_WIDTH[typ], dtype=cdt)
    bases = np.flatnonzero(typ == 3)
    base_at = bases[np.maximum(k_base, 0)] if bases.size else np.zeros_like(ev)
    vb = val[base_at].astype(np.int64)
    ve = val[ev].astype(np.int64)
    shift = widths[ev] - _WIDTH[te] - widths[base_at]
    base = np.where(is_x, ve & 0x7FF, (vb & 0x7FF) + shift)
    pol = np.where(is_x, ve >> 11, vb >> 11)
    mask = np.where(is_x, 1, np.where(te == 4, ve, ve & 0xFF))
    # One event per set bit: repeat each word by its bit count, pick the bits in order.
    counts = _POP[mask]
    rows = np.repeat(np.arange(ev.size), counts)
    rank = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    x = base[rows] + _BITS[mask[rows], rank]
    high = _unwrapped(val[typ == 8], 1 << 12)
    lows = val[typ == 6]
    low = np.where(k_low >= 0, lows[np.maximum(k_low, 0)] if lows.size else 0, 0)
    t = (high[k_high] << 12) | low.astype(np.int64)
    y = val[typ == 0][k_y] & 0x7FF
    word = ev[rows]
    return _finish(
        t[rows], x, y[rows], pol[rows], sensor_size, fields, path,
        lambda i: start + 2 * int(word[i]),
    )  # fmt: skip


def read_evt2(path: str | PathLike, sensor_size: tuple[int, int] | None = None) -> EventRecording:
    """Read an EVT 2.0 ``.raw`` file (see :func:`decode_evt2`)."""
    return decode_evt2(read_bytes(path), sensor_size, path)


def read_evt3(path: str | PathLike, sensor_size: tuple[int, int] | None = None) -> EventRecording:
    """Read an EVT 3.0 ``.raw`` file (see :func:`decode_evt3`)."""
    return decode_evt3(read_bytes(path), sensor_size, path)


def read_prophesee_raw(
    path: str | PathLike, sensor_size: tuple[int, int] | None = None
) -> EventRecording:
    """Read a ``.raw`` file, choosing EVT 2.0 or 3.0 from its header."""
    data = read_bytes(path)
    enc = _encoding(parse_prophesee_header(data, path)[0])
    if enc == "evt2":
        return decode_evt2(data, sensor_size, path)
    if enc == "evt3":
        return decode_evt3(data, sensor_size, path)
    raise format_error(
        path,
        0,
        f"the header names no supported encoding (found {enc!r}; "
        "expected '% evt 2.0' or '% evt 3.0')",
    )


def decode_dat(
    raw: RawBytes, sensor_size: tuple[int, int] | None = None, path: PathArg = None
) -> EventRecording:
    """Decode a Prophesee ``.dat`` file of CD events (N-CARS, ATIS).

    Args:
        raw: the whole file's bytes.
        sensor_size: ``(width, height)``; ``None`` reads ``% Width``/``% Height`` or
            ``% geometry`` from the header, else infers it from the largest coordinates
            (N-CARS samples are crops of varying size).
        path: the file name, for error messages.

    Raises:
        DataFormatError: a missing type/size header, an event type other than CD or a
            size other than 8, a truncated last event, a polarity other than 0/1,
            coordinates outside the sensor, or timestamps that go backwards.
    """
    data = as_bytes(raw)
    fields, start = parse_prophesee_header(data, path)
    if len(data) - start < 2:
        raise format_error(path, start, "truncated: no event type/size bytes after the header")
    etype, esize = data[start], data[start + 1]
    if etype not in (0, 12) or esize != 8:
        raise format_error(
            path, start, f"unsupported event type {etype} / size {esize} (expected CD events: "
            "type 0 or 12, size 8)"
        )  # fmt: skip
    body = start + 2
    words = _words(data, body, "<u8", path)
    t = (words & 0xFFFFFFFF).astype(np.int64)
    a = words >> 32
    x = a & 0x3FFF
    y = (a >> 14) & 0x3FFF
    p = a >> 28

    def offset_of(i: int) -> int:
        return body + 8 * i

    bad = np.flatnonzero(p > 1)
    if bad.size:
        i = int(bad[0])
        raise format_error(path, offset_of(i), f"event {i} has polarity {int(p[i])}, not 0 or 1")
    return _finish(t, x, y, p, sensor_size, fields, path, offset_of)


def read_dat(path: str | PathLike, sensor_size: tuple[int, int] | None = None) -> EventRecording:
    """Read a Prophesee ``.dat`` file (see :func:`decode_dat`)."""
    return decode_dat(read_bytes(path), sensor_size, path)
