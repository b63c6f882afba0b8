"""Writing events: the 40-bit spike files, Lava-DL's ``.npy`` spike arrays, and dense
spike tensors turned into events (Lava-DL's ``slayer.io.encode_2d_spikes``,
``encode_1d_spikes``, ``encode_np_spikes``, ``read_np_spikes`` and ``tensor_to_event``).

* **ATIS ``.bin``** (N-MNIST, N-Caltech101; Lava-DL's 2-D files): 5 bytes per event,
  ``x`` (8 bits), ``y`` (8 bits), polarity (1 bit), time (23 bits, µs), the layout
  :func:`~spikeflow.data.io.read_atis_bin` reads. ``y = 240`` is the format's
  timestamp-overflow marker, so ``y`` may be 0-239; ``overflow_markers=True`` writes
  such markers for times past the 23-bit field.
* **``.bs1``** (N-TIDIGITS; Lava-DL's 1-D files): a 16-bit channel (``x``), polarity,
  23-bit time; :func:`~spikeflow.data.io.read_bs1` reads it. ``y`` must be 0.
* **``.npy``** (Lava-DL's ``encode_np_spikes``): float64 ``[N, 4]`` rows ``(x, y, p, t)``
  (``[N, 3]`` ``(x, p, t)`` for a 1-D sensor), ``t`` in units of ``time_unit`` seconds
  (default ms); :func:`read_np_spikes` reads it back.

A value that the format cannot hold is refused, naming the field and the first event
that has it (Lava-DL's encoders keep only the low bits, silently). Files are written
atomically: to a temporary file in the same folder, then renamed over ``path``, so a
failed write leaves no partial file and an earlier file as it was.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeflow.data.cache import atomic_write_bytes
from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import read_bytes, sensor_size_arg
from spikeflow.data.io.numpy_layouts import _parse_npy
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "encode_atis_bin",
    "encode_bs1",
    "read_np_spikes",
    "spikes_to_events",
    "write_atis_bin",
    "write_bs1",
    "write_np_spikes",
]

_T_MAX = 2**23 - 1  # the 23-bit timestamp field, µs
_MARK_US = 2**13  # what each ATIS overflow marker (y = 240) adds to later times, µs
_MAX_MARKS = 2**26  # (5 bytes each: 320 MiB of markers, times up to ~6.4 days)


def _fields(events: Any, owner: str) -> dict[str, np.ndarray]:
    """``t, x, y, p`` of an EventRecording or a structured event array, as int64."""
    array = events.events if isinstance(events, EventRecording) else events
    names = getattr(getattr(array, "dtype", None), "names", None)
    if names is None or not {"t", "x", "y", "p"} <= set(names):
        raise ConfigurationError(
            f"{owner}: events must be an EventRecording or a structured array with fields "
            f"t, x, y, p; got {type(events).__name__}"
        )
    out = {}
    for name in "txyp":
        values = np.asarray(array[name])
        if values.dtype.kind == "f":
            bad = ~np.isfinite(values) | (values != np.round(values))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ConfigurationError(
                    f"{owner}: event {i} has {name} = {values[i]!r}, not a whole number"
                )
        elif values.dtype.kind not in "bui":
            raise ConfigurationError(f"{owner}: field {name} has dtype {values.dtype}")
        out[name] = values.astype(np.int64)
    return out


def _check_field(owner: str, name: str, values: np.ndarray, high: int, what: str) -> None:
    """Refuse a value outside ``[0, high]``, naming ``name`` and the first bad event."""
    bad = (values < 0) | (values > high)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigurationError(
            f"{owner}: event {i} has {name} = {int(values[i])}, outside the format's {what} "
            f"[0, {high}] ({int(bad.sum())} event(s) out of range)"
        )


def _check_40bit_order(owner: str, t: np.ndarray) -> None:
    """Refuse an empty recording or times that go backwards: the 40-bit readers
    (:func:`~spikeflow.data.io.read_atis_bin`, :func:`~spikeflow.data.io.read_bs1`)
    refuse both files, an empty one as no recording and a backwards time as corrupt."""
    if t.size == 0:
        raise ConfigurationError(
            f"{owner}: no events; a 0-byte file is not a recording (the readers refuse it)"
        )
    back = np.flatnonzero(t[1:] < t[:-1])
    if back.size:
        i = int(back[0]) + 1
        raise ConfigurationError(
            f"{owner}: event {i} has t = {int(t[i])} µs, before event {i - 1}'s "
            f"{int(t[i - 1])} µs; the format's times must not decrease (sort the events "
            "by t first, stably)"
        )


def _pack40(address: np.ndarray, p: np.ndarray, t: np.ndarray) -> bytes:
    """5 bytes per event: the 16-bit ``address`` (big-endian), then ``p << 23 | t``."""
    out = np.empty((address.size, 5), dtype=np.uint8)
    out[:, 0] = address >> 8
    out[:, 1] = address & 0xFF
    word = (p << 23) | t
    out[:, 2] = word >> 16
    out[:, 3] = (word >> 8) & 0xFF
    out[:, 4] = word & 0xFF
    return out.tobytes()


def encode_atis_bin(
    events: EventRecording | np.ndarray, *, overflow_markers: bool = False
) -> bytes:
    """The bytes of an ATIS ``.bin`` file holding ``events`` (in their order).

    Args:
        events: the events (times in µs, not decreasing).
        overflow_markers: write times past the 23-bit field (2**23 - 1 µs, 8.4 s) with
            the format's overflow markers: events with ``y = 240``, each adding 2**13
            µs to every later timestamp (Orchard's reader, Tonic's ``read_mnist_file``
            and :func:`~spikeflow.data.io.read_atis_bin` apply them; Lava-DL's
            ``read_2d_spikes`` does not). Each event is preceded by as many markers as
            it needs beyond the previous event's; the markers' own fields are 0.

    Raises:
        ConfigurationError: ``x`` outside 0-255, ``y`` outside 0-239 (240 and up would
            read back as timestamp-overflow markers), ``p`` not 0 or 1, or ``t`` below
            0 or (without ``overflow_markers``) above 2**23 - 1 µs: naming the field and
            the first such event; no events, or a time before the previous event's (the
            readers refuse both files); with markers, a time needing more than 2**26.
    """
    owner = "encode_atis_bin"
    f = _fields(events, owner)
    _check_field(owner, "x", f["x"], 255, "8-bit x field")
    _check_field(owner, "y", f["y"], 239, "y field (240 is the overflow marker)")
    _check_field(owner, "p", f["p"], 1, "1-bit polarity field")
    if not overflow_markers:
        t_field = "23-bit timestamp field (µs; overflow_markers=True writes later times)"
        _check_field(owner, "t", f["t"], _T_MAX, t_field)
    _check_field(owner, "t", f["t"], _T_MAX + _MAX_MARKS * _MARK_US, "times overflow "
                 f"markers reach (at most {_MAX_MARKS} markers, µs)")  # fmt: skip
    _check_40bit_order(owner, f["t"])
    address = f["x"] << 8 | f["y"]
    marks = np.maximum(0, -((_T_MAX - f["t"]) // _MARK_US))  # ceil((t - T_MAX) / 2**13)
    if not marks[-1]:  # (sorted times: no event needs a marker)
        return _pack40(address, f["p"], f["t"])
    # Event i goes to row i + marks[i]; every other row is a marker (y = 240).
    rows = np.zeros(len(address) + int(marks[-1]), dtype=np.int64)
    address_rows, p_rows, t_rows = rows + 240, rows.copy(), rows.copy()
    at = np.arange(len(address)) + marks
    address_rows[at], p_rows[at], t_rows[at] = address, f["p"], f["t"] - marks * _MARK_US
    return _pack40(address_rows, p_rows, t_rows)


def encode_bs1(events: EventRecording | np.ndarray) -> bytes:
    """The bytes of a ``.bs1`` file holding ``events`` (``x`` is the channel).

    Raises:
        ConfigurationError: ``x`` outside 0-65535, ``y`` not 0 (a 1-D sensor), ``p`` not
            0 or 1, or ``t`` outside 0 to 2**23 - 1 µs: naming the field and event;
            no events, or a time before the previous event's.
    """
    owner = "encode_bs1"
    f = _fields(events, owner)
    _check_field(owner, "x", f["x"], 65535, "16-bit channel field")
    _check_field(owner, "y", f["y"], 0, "1-D layout, which has no y")
    _check_field(owner, "p", f["p"], 1, "1-bit polarity field")
    _check_field(owner, "t", f["t"], _T_MAX, "23-bit timestamp field (µs)")
    _check_40bit_order(owner, f["t"])
    return _pack40(f["x"], f["p"], f["t"])


def _write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename
    it over ``path`` (:func:`~spikeflow.data.cache.atomic_write_bytes`); a missing
    folder is an error, not created."""
    path = Path(path)
    if not path.parent.is_dir():  # (mkstemp's error would name the temporary file)
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    atomic_write_bytes(path, data)
    return path


def write_atis_bin(
    path: str | os.PathLike, events: EventRecording | np.ndarray, *, overflow_markers: bool = False
) -> Path:
    """Write ``events`` to ``path`` as an ATIS ``.bin`` file (:func:`encode_atis_bin`,
    ``overflow_markers`` for times past 2**23 - 1 µs), atomically. Returns the path."""
    data = encode_atis_bin(events, overflow_markers=overflow_markers)  # checked first
    return _write_atomic(path, data)


def write_bs1(path: str | os.PathLike, events: EventRecording | np.ndarray) -> Path:
    """Write ``events`` to ``path`` as a ``.bs1`` file (:func:`encode_bs1`), atomically."""
    data = encode_bs1(events)
    return _write_atomic(path, data)


def _time_unit(value: Any, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"{owner}: time_unit must be a number > 0 (seconds); got {value!r}"
        )
    if not math.isfinite(value):
        raise ConfigurationError(f"{owner}: time_unit must be finite; got {value!r}")
    return float(value)


def write_np_spikes(
    path: str | os.PathLike,
    events: EventRecording | np.ndarray,
    dim: int = 2,
    time_unit: float = 1e-3,
) -> Path:
    """Write ``events`` as Lava-DL's ``.npy`` spike array, atomically.

    Args:
        path: the ``.npy`` file (``np.save`` layout, float64).
        events: the events (times in µs).
        dim: 2 for rows ``(x, y, p, t)``, 1 for ``(x, p, t)`` (a 1-D sensor: ``y`` must
            be 0).
        time_unit: the unit of the ``t`` column in seconds (1e-3: ms, Lava-DL's
            ``Event`` times, which its ``encode_np_spikes`` writes as they are).

    Raises:
        ConfigurationError: a value :func:`read_np_spikes` would refuse or read back
            otherwise: ``x``/``y`` outside 0-65535, ``p`` outside 0-127, ``t`` < 0, or
            a ``t`` that ``t / time_unit`` in float64 does not hold exactly enough to
            read back (huge times, odd units), naming the field and the first event.
    """
    owner = "write_np_spikes"
    if dim not in (1, 2) or isinstance(dim, bool):
        raise ConfigurationError(f"{owner}: dim must be 1 or 2; got {dim!r}")
    unit_us = _time_unit(time_unit, owner) * 1e6
    f = _fields(events, owner)
    if dim == 1:
        _check_field(owner, "y", f["y"], 0, "1-D layout, which has no y")
    for name in "xy":
        _check_field(owner, name, f[name], 65535, "coordinates read_np_spikes reads")
    _check_field(owner, "p", f["p"], 127, "polarities read_np_spikes reads")
    _check_field(owner, "t", f["t"], 2**62, "times read_np_spikes reads (µs)")
    times = f["t"] / unit_us
    back = np.rint(times * unit_us).astype(np.int64)  # the reader's arithmetic
    lost = np.flatnonzero(back != f["t"])
    if lost.size:
        i = int(lost[0])
        raise ConfigurationError(
            f"{owner}: event {i} has t = {int(f['t'][i])} µs, which t / time_unit in float64 "
            f"does not keep (reads back as {int(back[i])}); "
            f"{lost.size} event(s) affected: use a smaller time_unit or times below 2**53"
        )
    columns = [f["x"], f["y"], f["p"]] if dim == 2 else [f["x"], f["p"]]
    table = np.stack([*(c.astype(np.float64) for c in columns), times], axis=1)
    buffer = io.BytesIO()
    np.save(buffer, table.reshape(-1, dim + 2))
    return _write_atomic(path, buffer.getvalue())


def read_np_spikes(
    path: str | os.PathLike,
    time_unit: float = 1e-3,
    sensor_size: tuple[int, int] | None = None,
) -> EventRecording:
    """Read Lava-DL's ``.npy`` spike array (``[N, 4]`` ``(x, y, p, t)`` or ``[N, 3]``
    ``(x, p, t)``; ``t`` in units of ``time_unit`` seconds) as events with integer µs
    times (``t · time_unit · 1e6``, rounded), sorted by time (stable).

    ``sensor_size`` ``(width, height)`` checks the coordinates; ``None`` infers it from
    the largest ones. The polarities (channels) give ``P = max(p) + 1``, at least 2.

    Raises:
        DataFormatError: a file that is not such an array, or a value that is not a
            whole number >= 0 (a coordinate or polarity) or a time that is negative or
            not finite, naming the file and the row.
    """
    owner = "read_np_spikes"
    unit_us = _time_unit(time_unit, owner) * 1e6
    size = sensor_size_arg(sensor_size, owner)
    array, _ = _parse_npy(read_bytes(path), path, None)
    if array.ndim != 2 or array.shape[1] not in (3, 4) or array.dtype.kind not in "biuf":
        raise format_error(path, None, f"expected a numeric [N, 3] or [N, 4] array of Lava-DL "
                           f"spikes; got {array.dtype} {array.shape}")  # fmt: skip
    table = array.astype(np.float64)
    t = table[:, -1] * unit_us
    ints = table[:, :-1]
    bad = ~np.isfinite(ints) | (ints != np.round(ints)) | (ints < 0) | (ints > 65535)
    bad = bad.any(axis=1) | ~np.isfinite(t) | (t < 0) | (t > 2**62)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise format_error(path, None, f"row {i} {table[i].tolist()} is not an event (x, y, p "
                           "whole numbers 0-65535, t finite and >= 0)")  # fmt: skip
    x, p = ints[:, 0], ints[:, -1]
    y = ints[:, 1] if table.shape[1] == 4 else np.zeros_like(x)
    if p.size and p.max() > 127:
        i = int(np.argmax(p > 127))
        raise format_error(path, None, f"row {i}: polarity {p[i]:g} is above 127")
    events = make_events(np.rint(t).astype(np.int64), x.astype(np.int64), y.astype(np.int64),
                         p.astype(np.int64))  # fmt: skip
    events = events[np.argsort(events["t"], kind="stable")]
    if size is None:
        size = (int(x.max()) + 1, int(y.max()) + 1) if x.size else (1, 1)
    elif x.size and (x.max() >= size[0] or y.max() >= size[1]):
        i = int(np.flatnonzero((x >= size[0]) | (y >= size[1]))[0])
        raise format_error(path, None, f"row {i}: ({x[i]:g}, {y[i]:g}) is outside the "
                           f"{size[0]}x{size[1]} sensor")  # fmt: skip
    polarities = max(2, int(p.max()) + 1) if p.size else 2
    return EventRecording(events, (*size, polarities), str(path))


def spikes_to_events(
    spikes: Any,
    sampling_time: int = 1000,
    *,
    time_last: bool = True,
    counts: bool = False,
) -> EventRecording:
    """The events of a dense spike tensor (Lava-DL's ``tensor_to_event``).

    Args:
        spikes: ``[C, H, W, T]`` or ``[C, W, T]`` (Lava-DL's layouts; with
            ``time_last=False``: ``[T, C, H, W]`` or ``[T, C, W]``, spikeflow's frames),
            numpy array or tensor.
        sampling_time: µs per time step: step ``k`` gives events at ``t = k ·
            sampling_time``.
        time_last: whether time is the last axis (Lava-DL) or the first (spikeflow).
        counts: ``False``: every nonzero entry is one event (Lava-DL's binary spikes);
            ``True``: an entry ``k`` (a whole number >= 0) is ``k`` events, which undoes
            counting frames such as :func:`~spikeflow.data.to_frames`.

    Returns:
        An :class:`~spikeflow.data.EventRecording` of sensor ``(W, H, C)`` (``H = 1``
        for 3-D input) with ``p`` the channel, sorted by time; within a step in
        ``(c, y, x)`` order, Lava-DL's ``argwhere`` order.

    Raises:
        ShapeError: a tensor of another rank. ConfigurationError: with ``counts``, an
        entry that is not a whole number >= 0 (named by its index); a sampling time
        that is not an integer >= 1, or steps that end past int64 µs; more than 128
        channels or 65536 pixels per side.
    """
    owner = "spikes_to_events"
    array = (
        spikes.detach().cpu().numpy() if isinstance(spikes, torch.Tensor) else np.asarray(spikes)
    )
    if array.ndim not in (3, 4):
        raise ShapeError(f"{owner}: spikes must be [C, H, W, T] or [C, W, T] (time_last=False: "
                         f"[T, C, H, W] or [T, C, W]); got shape {array.shape}")  # fmt: skip
    if (
        isinstance(sampling_time, bool)
        or not isinstance(sampling_time, (int, np.integer))
        or sampling_time < 1
    ):
        raise ConfigurationError(
            f"{owner}: sampling_time must be an integer >= 1 (µs); got {sampling_time!r}"
        )
    if counts:  # checked in the caller's layout, so the index named is theirs
        bad = ~np.isfinite(array) | (array < 0) | (array != np.round(array))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            value = array[where].item()
            raise ConfigurationError(
                f"{owner}: counts must be whole numbers >= 0; entry {where} is {value!r}"
            )
    if not time_last:
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3:
        array = array[:, None]
    channels, height, width, steps = array.shape
    if max(steps - 1, 1) * int(sampling_time) > np.iinfo(np.int64).max:  # (exact ints)
        raise ConfigurationError(
            f"{owner}: {steps} steps of {int(sampling_time)} µs end past the int64 "
            "timestamps (2**63 - 1 µs); give a smaller sampling_time"
        )
    if channels > 128 or height > 65536 or width > 65536:
        raise ConfigurationError(f"{owner}: {channels} channels of {width}x{height} do not fit "
                                 "the event fields (p: 128 channels, x and y: 65536)")  # fmt: skip
    c, y, x, step = np.nonzero(array)
    repeat = array[c, y, x, step].astype(np.int64) if counts else None
    order = np.argsort(step, kind="stable")
    c, y, x, step = c[order], y[order], x[order], step[order]
    if repeat is not None:
        c, y, x, step = (np.repeat(v, repeat[order]) for v in (c, y, x, step))
    events = make_events(step.astype(np.int64) * int(sampling_time), x, y, c)
    return EventRecording(events, (width, height, channels))
