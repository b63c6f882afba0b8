"""The numpy decoders of Prophesee EVT 2.0 / 3.0 words, chunk by chunk, in bounded memory.

Both formats are state machines over little-endian words (the layouts are in
:mod:`spikeflow.data.io.prophesee`). The words are decoded in chunks of
:data:`~spikeflow.data.io._common.CHUNK` words, each vectorised, with the decoder state
(the TIME_HIGH in force and its wrap count; for EVT 3.0 also ``y``, TIME_LOW, the vector
base ``x`` and polarity) carried from one chunk to the next, so the temporaries of a
chunk stay small and the memory is the file plus the events. Every problem is raised
where it is found, naming the byte offset of the word: an unknown word type, a TIME_HIGH
that goes back without wrapping around, an event outside the sensor (or, without one,
past ``x = 65535``, the largest an event holds), time going backwards.

TIME_HIGH wrap-around: a decrease of the time-high value counts one wrap only when it
goes from within :data:`LOOP_THRESHOLD` periods of the counter's top to near 0, the
rule of Prophesee's own sample decoders (``LoopThreshold = 10`` periods; real files
step their TIME_HIGH by 0 or 1); any other decrease is a corrupted time word, and
counting it as a wrap would silently move every later event 2**34 µs (EVT 2.0) or
2**24 µs (EVT 3.0) into the future. The compiled decoders (``_decoders.c``) apply the
same rule.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from spikeflow.data.events import EVENT_DTYPE, format_error
from spikeflow.data.io import _common
from spikeflow.data.io._common import PathArg, check_in_sensor, check_monotonic
from spikeflow.data.io._native import trimmed

__all__ = ["LOOP_THRESHOLD", "MAX_X", "decode_evt2_words", "decode_evt3_words"]

#: TIME_HIGH periods from the top of the counter within which a decrease is a wrap.
LOOP_THRESHOLD = 10
#: The largest ``x`` an event holds (``uint16``); an EVT 3.0 vector run can pass it.
MAX_X = 0xFFFF

EVT2_TYPES = (0, 1, 8, 10, 14, 15)
EVT3_TYPES = (0, 2, 3, 4, 5, 6, 7, 8, 10, 14, 15)

#: ``(t, x, y, p, word)`` of the events of a chunk; ``word``: the index of the word
#: that holds each event (for its byte offset).
Fields = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class _Where:
    """Byte offset of word ``i`` (``start + size * i``), and the file for messages."""

    def __init__(self, start: int, size: int, path: PathArg) -> None:
        self.start, self.size, self.path = start, size, path

    def __call__(self, i: int) -> int:
        return self.start + self.size * int(i)


def _check_types(typ: np.ndarray, allowed: tuple[int, ...], lo: int, where: _Where) -> None:
    """Raise at the first word of ``typ`` (words ``lo...``) whose type is not allowed."""
    mask = typ.dtype.type(sum(1 << k for k in allowed))
    if (np.right_shift(mask, typ) & 1).all():  # one shift per word: bit ``typ`` of the mask
        return
    ok = np.zeros(16, dtype=bool)
    ok[list(allowed)] = True
    i = int(np.flatnonzero(~ok[typ])[0])
    raise format_error(
        where.path, where(lo + i), f"unknown event word type 0x{int(typ[i]):x} in word {lo + i}"
    )


def _unwrap_high(
    raw: np.ndarray, prev: int, wraps: int, bits: int, at: np.ndarray, where: _Where, name: str
) -> np.ndarray:
    """Unwrapped values (``raw + wraps * 2**bits``) of consecutive TIME_HIGH words ``raw``
    (int64) at word indices ``at``, after the value ``prev`` (-1: none yet) and ``wraps``
    wrap-arounds; raises at a decrease that is no wrap-around (see the module doc)."""
    before = np.empty_like(raw)
    before[0] = prev
    before[1:] = raw[:-1]
    drop = before - raw
    if prev < 0:
        drop[0] = 0
    wrap = drop >= (1 << bits) - 1 - LOOP_THRESHOLD
    bad = (drop > 0) & ~wrap
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise format_error(
            where.path, where(at[j]), f"{name} goes back from {int(before[j])} to "
            f"{int(raw[j])} in word {int(at[j])}, which is no wrap-around of its {bits}-bit "
            f"counter (one goes from within {LOOP_THRESHOLD} of {(1 << bits) - 1} to near 0): "
            "a corrupted time word"
        )  # fmt: skip
    return raw + ((wraps + np.cumsum(wrap)) << bits)


def _decode_chunked(
    n: int,
    chunk: Callable[[int, int], Fields],
    bound: Callable[[int, int], int],
    sensor: tuple[int, int] | None,
    where: _Where,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``n`` words chunk by chunk into one :data:`EVENT_DTYPE` array.

    ``chunk(lo, hi)`` decodes words ``[lo, hi)`` (raising on a bad word) and
    ``bound(lo, hi)`` is at least their number of events (the output is allocated once).
    Checks the coordinates against ``sensor = (width, height)`` (or, with ``None``,
    against :data:`MAX_X`, inferring the size) and the time order, across chunks too.

    Returns:
        ``(events, (width, height))``.
    """
    step = _common.CHUNK
    out = np.empty(sum(bound(lo, min(lo + step, n)) for lo in range(0, n, step)), EVENT_DTYPE)
    pos, last_t, xmax, ymax = 0, None, -1, -1
    for lo in range(0, n, step):
        t, x, y, p, word = chunk(lo, min(lo + step, n))
        k = len(t)
        if k == 0:
            continue
        cx, cy = int(x.max()), int(y.max())
        if sensor is None and cx > MAX_X:
            i = int(np.flatnonzero(x > MAX_X)[0])
            raise format_error(
                where.path, where(word[i]), f"event {pos + i} at (x={int(x[i])}, y={int(y[i])}) "
                f"is past x = {MAX_X}, the largest an event holds (no sensor is that wide)"
            )  # fmt: skip
        if sensor is not None and (cx >= sensor[0] or cy >= sensor[1]):
            check_in_sensor(
                x, y, sensor[0], sensor[1], where.path,
                lambda i: where(word[i]), index_of=lambda i: pos + i,  # noqa: B023
            )  # fmt: skip
        if (last_t is not None and t[0] < last_t) or (k > 1 and (t[1:] < t[:-1]).any()):
            tt = t if last_t is None else np.concatenate(([last_t], t))
            s = 0 if last_t is None else 1
            check_monotonic(
                tt, where.path,
                lambda i: where(word[i - s]), index_of=lambda i: pos + i - s,  # noqa: B023
            )  # fmt: skip
        xmax, ymax, last_t = max(xmax, cx), max(ymax, cy), int(t[-1])
        o = out[pos : pos + k]
        o["t"], o["x"], o["y"], o["p"] = t, x, y, p
        pos += k
    return trimmed(out, pos), (sensor if sensor is not None else (xmax + 1, ymax + 1))


class _Evt2:
    """EVT 2.0 words, chunk by chunk, carrying the TIME_HIGH in force and its wraps."""

    def __init__(self, words: np.ndarray, where: _Where) -> None:
        self.words, self.where = words, where
        self.high = -1  # the unwrapped TIME_HIGH in force, << 6; -1: none seen yet
        self.raw_high = -1  # its 28-bit value as written, to detect wraps
        self.wraps = 0

    def __call__(self, lo: int, hi: int) -> Fields:
        w = self.words[lo:hi]
        typ = w >> 28
        _check_types(typ, EVT2_TYPES, lo, self.where)
        th_at = np.flatnonzero(typ == 8)
        highs = np.empty(th_at.size + 1, dtype=np.int64)
        highs[0] = self.high
        if th_at.size:
            raw = (w[th_at] & 0x0FFFFFFF).astype(np.int64)
            unwrapped = _unwrap_high(
                raw, self.raw_high, self.wraps, 28, lo + th_at, self.where, "EVT_TIME_HIGH"
            )
            highs[1:] = unwrapped << 6
            self.raw_high, self.high = int(raw[-1]), int(highs[-1])
            self.wraps = int(unwrapped[-1] >> 28)
        # The TIME_HIGH in force at every word: one run per TIME_HIGH word.
        high = np.repeat(highs, np.diff(th_at, prepend=0, append=w.size))
        is_cd = typ <= 1
        if highs[0] < 0:  # CD words before the first TIME_HIGH carry no time: dropped
            is_cd &= high >= 0
        at = np.flatnonzero(is_cd)
        e = w[at]
        t = high[at]
        t |= (e >> 22) & 0x3F
        return t, (e >> 11) & 0x7FF, e & 0x7FF, (e >> 28).astype(np.int8), lo + at


def decode_evt2_words(
    words: np.ndarray, start: int, sensor: tuple[int, int] | None, path: PathArg
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode EVT 2.0 ``words`` (uint32, from byte ``start`` of ``path``): the events and
    the sensor size (``sensor``, else inferred); raises on any bad word (module doc)."""
    where = _Where(start, 4, path)
    return _decode_chunked(len(words), _Evt2(words, where), lambda lo, hi: hi - lo, sensor, where)


_POP = np.array([bin(v).count("1") for v in range(4096)], dtype=np.int64)
_WIDTH = np.zeros(16, dtype=np.int64)
_WIDTH[4], _WIDTH[5] = 12, 8  # VECT_12, VECT_8
_BITS = np.zeros((4096, 12), dtype=np.int64)
for _v in range(4096):
    _b = [k for k in range(12) if _v >> k & 1]
    _BITS[_v, : len(_b)] = _b
del _v, _b


def _last_before(at: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """For each index of ``ev``, the rank in ``at`` of the last index before it (-1: none)."""
    return np.searchsorted(at, ev) - 1


def _in_force(k: np.ndarray, values: np.ndarray, carried: int) -> np.ndarray:
    """``values[k]`` where ``k >= 0`` (a setting word in this chunk), else ``carried``."""
    if values.size == 0:
        return np.full(k.size, carried, dtype=np.int64)
    return np.where(k >= 0, values[k], carried)


class _Evt3:
    """EVT 3.0 words, chunk by chunk, carrying the decoder state across chunk borders.

    In a chunk the state in force at each event word is the last word before it that
    set it (``np.searchsorted`` over the indices of those words), else the carried
    state; the base ``x`` of a vector adds the widths of the vectors since its
    VECT_BASE_X (a running sum); one event per set mask bit comes from ``np.repeat`` and
    a bit table.
    """

    def __init__(self, words: np.ndarray, where: _Where) -> None:
        self.words, self.where = words, where
        self.y = -1  # -1: not set yet (events before it are dropped)
        self.raw_high, self.high, self.wraps = -1, -1, 0  # high: unwrapped TIME_HIGH
        self.low = 0
        self.base, self.pol = -1, 0  # the vector base x (advanced by every vector)

    @staticmethod
    def bound(words: np.ndarray) -> int:
        """At least the number of events of ``words`` (one per EVT_ADDR_X, one per set
        vector mask bit)."""
        typ = words >> 12
        masks = words[(typ == 4) | (typ == 5)]
        masks = np.where((masks >> 12) == 4, masks & 0xFFF, masks & 0xFF)
        return int(np.count_nonzero(typ == 2)) + int(_POP[masks].sum())

    def __call__(self, lo: int, hi: int) -> Fields:
        w = self.words[lo:hi]
        typ = w >> 12
        _check_types(typ, EVT3_TYPES, lo, self.where)
        val = (w & 0xFFF).astype(np.int64)
        y_at, th_at, low_at, base_at = (np.flatnonzero(typ == k) for k in (0, 8, 6, 3))
        highs = np.zeros(0, dtype=np.int64)
        if th_at.size:
            highs = _unwrap_high(
                val[th_at], self.raw_high, self.wraps, 12, lo + th_at, self.where,
                "EVT_TIME_HIGH",
            )  # fmt: skip
        widths = np.cumsum(_WIDTH[typ])  # vector widths up to and including each word
        ev = np.flatnonzero((typ == 2) | (typ == 4) | (typ == 5))  # the words that emit
        fields = self._events(ev, typ, val, y_at, th_at, highs, low_at, base_at, widths, lo)
        # The state at the end of the chunk, for the next one.
        if y_at.size:
            self.y = int(val[y_at[-1]] & 0x7FF)
        if th_at.size:
            self.raw_high, self.high = int(val[th_at[-1]]), int(highs[-1])
            self.wraps = self.high >> 12
        if low_at.size:
            self.low = int(val[low_at[-1]])
        total = int(widths[-1]) if w.size else 0
        if base_at.size:
            b = int(base_at[-1])
            self.base = int(val[b] & 0x7FF) + total - int(widths[b])
            self.pol = int(val[b] >> 11)
        elif self.base >= 0:
            self.base += total
        return fields

    def _events(
        self, ev: np.ndarray, typ: np.ndarray, val: np.ndarray, y_at: np.ndarray,
        th_at: np.ndarray, highs: np.ndarray, low_at: np.ndarray, base_at: np.ndarray,
        widths: np.ndarray, lo: int,
    ) -> Fields:  # fmt: skip
        """The events of the emitting words ``ev`` of a chunk."""
        te = typ[ev]
        k_y, k_high, k_low, k_base = (_last_before(a, ev) for a in (y_at, th_at, low_at, base_at))
        y = _in_force(k_y, val[y_at] & 0x7FF, self.y)
        high = _in_force(k_high, highs, self.high)
        is_x = te == 2
        has_base = k_base >= 0 if base_at.size else np.zeros(ev.size, dtype=bool)
        ok = (y >= 0) & (high >= 0) & (is_x | has_base | (self.base >= 0))
        if not ok.all():
            ev, te, y, high, is_x = ev[ok], te[ok], y[ok], high[ok], is_x[ok]
            k_low, k_base, has_base = k_low[ok], k_base[ok], has_base[ok]
        low = _in_force(k_low, val[low_at], self.low)
        ve = val[ev]
        # A vector's base x: its VECT_BASE_X (in this chunk, else the carried base) plus
        # the widths of the vectors between them.
        before = widths[ev] - _WIDTH[te]
        if base_at.size:
            b = base_at[np.maximum(k_base, 0)]
            vb = val[b]
            vbase = np.where(has_base, (vb & 0x7FF) + before - widths[b], self.base + before)
            vpol = np.where(has_base, vb >> 11, self.pol)
        else:
            vbase, vpol = self.base + before, np.full(ev.size, self.pol)
        base = np.where(is_x, ve & 0x7FF, vbase)
        pol = np.where(is_x, ve >> 11, vpol)
        mask = np.where(is_x, 1, np.where(te == 4, ve, ve & 0xFF))
        # One event per set bit: repeat each word by its bit count, pick the bits in order.
        counts = _POP[mask]
        rows = np.repeat(np.arange(ev.size), counts)
        rank = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        x = base[rows] + _BITS[mask[rows], rank]
        t = (high << 12) | low
        return t[rows], x, y[rows], pol[rows].astype(np.int8), lo + ev[rows]


def decode_evt3_words(
    words: np.ndarray, start: int, sensor: tuple[int, int] | None, path: PathArg
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode EVT 3.0 ``words`` (uint16, from byte ``start`` of ``path``): the events and
    the sensor size (``sensor``, else inferred); raises on any bad word (module doc)."""
    where = _Where(start, 2, path)
    return _decode_chunked(
        len(words), _Evt3(words, where), lambda lo, hi: _Evt3.bound(words[lo:hi]), sensor, where
    )
