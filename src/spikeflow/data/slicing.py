"""Slicers: cut one recording into several samples, as Tonic's ``tonic.slicers`` do.

A slicer describes where to cut; it holds no data. ``get_slice_metadata(recording)``
returns the cuts as an int64 array ``[n, 2]`` of ``(start, stop)`` event indices (a
slice is ``events[start:stop]``; always ``0 <= start <= stop <= len(recording)``), and
``slice(recording)`` returns the pieces. :class:`~spikeflow.data.SlicedDataset` uses the
metadata to turn a dataset of long recordings into a dataset of slices.

What a slicer takes:

- an :class:`~spikeflow.data.EventRecording`: the pieces are EventRecordings with the
  same sensor size and source;
- a structured event array with a field ``t`` (spikeflow's
  :data:`~spikeflow.data.EVENT_DTYPE`, or Tonic's ``x, y, t, p`` layout): the pieces are
  arrays;
- for the slicers that count (:class:`SliceByEventCount`, :class:`SliceByEventBins`,
  :class:`SliceAtIndices`), any numpy array or torch tensor, cut along its first axis:
  frames ``[T, C, H, W]`` into runs of frames, as Tonic's count slicers cut any array.

The time slicers (:class:`SliceByTime`, :class:`SliceByTimeBins`,
:class:`SliceAtTimePoints`) need timestamps: integer microseconds sorted by time (a
:class:`~spikeflow.errors.DataFormatError` names the recording and the first event out
of order otherwise). They find every cut with one ``np.searchsorted``; a window
``[a, b)`` holds the events with ``a <= t < b``.

The slicers, their arguments and their cuts are Tonic 1.7's, checked equal on real
N-MNIST recordings and on generated streams (``tests/test_slicing.py``), with these
differences: a stop past the end of the recording is clipped to its length (Tonic's
metadata may pass it; the slices are the same); an empty recording gives what Tonic's
rule gives for no events where Tonic raises (:class:`SliceByTime`: one empty slice, or
the windows between ``start_time`` and ``end_time``; :class:`SliceByTimeBins`:
``bin_count`` empty slices); a negative ``overlap`` (Tonic's gaps between windows) is
refused, use :class:`SliceAtTimePoints` or :class:`SliceAtIndices` for those; Tonic's
``SliceByTime(reset_time=True)`` has no counterpart (put
``spikeflow.data.transforms.TimeAlignment()`` in the dataset's ``transform`` to start
every slice at ``t = 0``); and ``slice(recording)`` returns the list of pieces (Tonic's
``slice(data, targets)`` returns ``(pieces, targets)``); and integer times are compared
exactly (Tonic compares uint64 timestamps with its int64 window starts as float64, and
lets a window end past the int64 range wrap around to a negative time).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.data.events import EventRecording
from spikeflow.data.io._common import first_decrease
from spikeflow.data.representations import user_class_key
from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError

__all__ = [
    "SliceAtIndices",
    "SliceAtTimePoints",
    "SliceByEventBins",
    "SliceByEventCount",
    "SliceByTime",
    "SliceByTimeBins",
    "Slicer",
]

_INT64_MAX = int(np.iinfo(np.int64).max)

#: What a slicer cuts: a recording, a structured event array, or (count slicers) any
#: array or tensor along its first axis.
Sliceable = EventRecording | np.ndarray | torch.Tensor
#: Event indices or times (µs) of :class:`SliceAtIndices` and :class:`SliceAtTimePoints`.
Indices = Sequence[int] | np.ndarray | torch.Tensor
Times = Sequence[float] | np.ndarray | torch.Tensor


def _describe(data: Any) -> str:
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return f"{type(data).__name__} of shape {tuple(data.shape)} and dtype {data.dtype}"
    return type(data).__name__


def _length(owner: str, data: Any) -> int:
    """How many items ``data`` holds along the axis a slicer cuts."""
    if isinstance(data, EventRecording):
        return len(data.events)
    if isinstance(data, (np.ndarray, torch.Tensor)):
        if data.ndim == 0:
            raise ShapeError(f"{owner}: cannot slice a 0-d {_describe(data)}")
        return int(data.shape[0])
    raise ConfigurationError(
        f"{owner}: expected an EventRecording, a structured event array or (for the count "
        f"slicers) an array or tensor to cut along its first axis; got {_describe(data)}"
    )


def _cut(data: Any, start: int, stop: int) -> Any:
    if isinstance(data, EventRecording):
        return EventRecording(data.events[start:stop], data.sensor_size, data.source)
    return data[start:stop]


def _timestamps(owner: str, data: Any) -> np.ndarray:
    """The timestamps of ``data`` after checking they are sorted integers."""
    source = None
    events = data
    if isinstance(data, EventRecording):
        events, source = data.events, data.source
    if not (isinstance(events, np.ndarray) and events.dtype.names and "t" in events.dtype.names):
        raise ConfigurationError(
            f"{owner} cuts by time: it needs an EventRecording or a structured event array "
            f"with a field 't'; got {_describe(events)} (cut frames with SliceByEventCount "
            "or SliceAtIndices)"
        )
    where = f"recording {source}" if source else "the recording"
    if events.ndim != 1:
        raise ShapeError(f"{owner}: {where} must be a 1-D event array; got shape {events.shape}")
    t = events["t"]
    if t.dtype.kind not in "iu":
        raise DataFormatError(
            f"{owner}: {where} has timestamps of dtype {t.dtype}; field 't' must hold integer "
            "microseconds (convert seconds with spikeflow.data.make_events(np.rint(t * 1e6), "
            "x, y, p))"
        )
    if t.ndim != 1:
        raise ShapeError(
            f"{owner}: field 't' of {where} holds {t.shape[1:]} values per event; it must hold "
            "one timestamp per event"
        )
    if not (t.flags.aligned and t.dtype.isnative):
        # spikeflow's packed EVENT_DTYPE: np.searchsorted would copy the column on every
        # call; one native copy serves the order check and every search
        t = t.astype(t.dtype.newbyteorder("="))
    i = first_decrease(t)
    if i >= 0:
        raise DataFormatError(
            f"{owner}: {where} is not sorted by time: event {i} at t={int(t[i])} us comes "
            f"after t={int(t[i - 1])} us (sort it with spikeflow.data.transforms.SortEvents)"
        )
    if t.dtype == np.uint64:  # numpy compares uint64 with int64 as float64: inexact
        if len(t) and int(t[-1]) > _INT64_MAX:
            raise DataFormatError(
                f"{owner}: {where} has a timestamp t={int(t[-1])} us past the int64 range "
                f"(at most {_INT64_MAX})"
            )
        t = t.astype(np.int64)
    return t


def _time(owner: str, name: str, value: Any) -> int | float:
    """A finite time (µs) as a Python int (within int64, as timestamps are), or a float
    when it is one."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
    ):
        raise ConfigurationError(f"{owner}: {name} must be a finite number (µs); got {value!r}")
    if isinstance(value, numbers.Integral):
        if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
            raise ConfigurationError(
                f"{owner}: {name} = {value!r} µs is outside the int64 range of timestamps"
            )
        return int(value)
    return float(value)


def _pairs(starts: np.ndarray, stops: np.ndarray, length: int) -> np.ndarray:
    """``[n, 2]`` int64 ``(start, stop)`` clipped to ``[0, length]``."""
    out = np.empty((len(starts), 2), dtype=np.int64)
    out[:, 0] = np.minimum(starts, length)
    out[:, 1] = np.minimum(stops, length)
    return out


def check_metadata(owner: str, metadata: Any, length: int) -> np.ndarray:
    """``metadata`` as int64 ``[n, 2]`` ``(start, stop)`` rows after checking that
    ``0 <= start <= stop <= length`` (``length``: the items of the recording they cut).

    Raises:
        ConfigurationError: rows that are not ``[n, 2]`` integers, or one out of bounds.
    """
    meta = np.asarray(metadata)
    if meta.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if meta.ndim != 2 or meta.shape[1] != 2 or meta.dtype.kind not in "iu":
        raise ConfigurationError(
            f"{owner}: metadata must be [n, 2] integer (start, stop) rows; got {_describe(meta)}"
        )
    bad = np.flatnonzero((meta[:, 0] < 0) | (meta[:, 0] > meta[:, 1]) | (meta[:, 1] > length))
    if bad.size:
        i = int(bad[0])
        raise ConfigurationError(
            f"{owner}: metadata row {i} = {meta[i].tolist()} is not 0 <= start <= stop <= "
            f"{length} (the recording's length)"
        )
    return meta.astype(np.int64, copy=False)


class Slicer:
    """Base class of the slicers: subclasses implement :meth:`get_slice_metadata` and
    :meth:`params`; :meth:`slice` and :meth:`slice_with_metadata` follow."""

    #: Whether the slicer reads timestamps (else it counts items along the first axis).
    needs_time: ClassVar[bool] = False

    def get_slice_metadata(self, recording: Sliceable) -> np.ndarray:
        """The cuts of ``recording``: int64 ``[n, 2]`` rows of ``(start, stop)`` indices,
        ``0 <= start <= stop <= len(recording)``."""
        raise NotImplementedError  # pragma: no cover

    def slice_with_metadata(self, recording: Sliceable, metadata: Any) -> list[Any]:
        """The pieces ``recording[start:stop]`` for each ``(start, stop)`` row of
        ``metadata`` (as :meth:`get_slice_metadata` returns it; an EventRecording's
        pieces are EventRecordings).

        Raises:
            ConfigurationError: ``metadata`` that is not ``[n, 2]`` integer rows with
                ``0 <= start <= stop <= len(recording)``.
        """
        owner = type(self).__name__
        meta = check_metadata(owner, metadata, _length(owner, recording))
        return [_cut(recording, a, b) for a, b in meta.tolist()]

    def slice(self, recording: Sliceable) -> list[Any]:
        """Cut ``recording`` into its pieces (see the module docstring)."""
        return self.slice_with_metadata(recording, self.get_slice_metadata(recording))

    def params(self) -> dict[str, Any]:
        """The parameters the cuts depend on (JSON-able)."""
        return {}  # pragma: no cover

    def cache_key(self) -> dict[str, Any]:
        """``{"name": class name, **params}``; a subclass written outside spikeflow also
        by its class and its ``get_slice_metadata`` (code and instance attributes)."""
        return {"name": type(self).__name__, **self.params(),
                **user_class_key(self, self.get_slice_metadata)}  # fmt: skip

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class SliceByTime(Slicer):
    """Windows of ``time_window`` µs, each starting ``time_window - overlap`` µs after the
    previous one (Tonic's ``SliceByTime``).

    Window ``k`` is ``[s + k·stride, s + k·stride + time_window)`` with ``s`` =
    ``start_time`` (default: the first event's time) and ``stride = time_window -
    overlap``. With ``e`` = ``end_time`` (default: the last event's time) and ``d = e -
    s``, there are ``⌊(d - time_window)/stride⌋ + 1`` windows (those that end by ``e``),
    or with ``include_incomplete=True`` ``⌈(d - time_window)/stride⌉ + 1`` (the last may
    run past ``e``); never fewer than one. So by default the events after the last whole
    window are left out, and a window that ends exactly at ``e`` leaves the event at
    ``e`` out (windows exclude their end), as in Tonic. An empty recording gives one
    empty slice (or, with ``start_time`` and ``end_time``, their windows, all empty).

    Args:
        time_window: window length in µs (> 0; an int, or a float as Tonic allows).
        overlap: µs shared by consecutive windows, ``0 <= overlap < time_window``.
        include_incomplete: also the last window that runs past ``end_time``.
        start_time: where the first window starts (µs); default the first event.
        end_time: the time the windows cover up to (µs); default the last event.
    """

    needs_time = True

    def __init__(
        self,
        time_window: float,
        overlap: float = 0,
        include_incomplete: bool = False,
        start_time: float | None = None,
        end_time: float | None = None,
    ) -> None:
        owner = type(self).__name__
        self.time_window = _time(owner, "time_window", time_window)
        self.overlap = _time(owner, "overlap", overlap)
        if self.time_window <= 0:
            raise ConfigurationError(f"{owner}: time_window must be > 0 µs; got {time_window!r}")
        if not 0 <= self.overlap < self.time_window:
            raise ConfigurationError(
                f"{owner}: overlap must be in [0, time_window) = [0, {time_window!r}); got "
                f"{overlap!r} (the next window would not start after the previous one)"
            )
        self.include_incomplete = check_flag(owner, "include_incomplete", include_incomplete)
        self.start_time = None if start_time is None else _time(owner, "start_time", start_time)
        self.end_time = None if end_time is None else _time(owner, "end_time", end_time)
        if self.start_time is not None and self.end_time is not None:
            if self.end_time < self.start_time:
                raise ConfigurationError(
                    f"{owner}: end_time ({end_time!r}) is before start_time ({start_time!r})"
                )

    def params(self) -> dict[str, Any]:
        return {"time_window": self.time_window, "overlap": self.overlap,
                "include_incomplete": self.include_incomplete,
                "start_time": self.start_time, "end_time": self.end_time}  # fmt: skip

    def window_starts(self, t: np.ndarray) -> np.ndarray:
        """The start time of every window over sorted timestamps ``t`` (µs)."""
        n = len(t)
        first = int(t[0]) if n else None
        start = self.start_time if self.start_time is not None else first
        end = self.end_time if self.end_time is not None else (int(t[-1]) if n else None)
        if start is None:  # an empty recording without start_time: at end_time, or 0
            start = 0 if end is None else end
        if end is None:
            end = start
        stride = self.time_window - self.overlap
        span = (end - start) - self.time_window
        exact = all(isinstance(v, int) for v in (start, end, self.time_window, self.overlap))
        if exact:  # integer arithmetic: exact for any timestamp
            count = (-(-span // stride) if self.include_incomplete else span // stride) + 1
        else:  # Tonic's float arithmetic, step for step
            ratio = span / stride
            count = int((math.ceil(ratio) if self.include_incomplete else math.floor(ratio)) + 1)
        count = max(int(count), 1)
        if exact:
            return start + stride * np.arange(count, dtype=np.int64)
        return np.arange(count) * stride + start

    def get_slice_metadata(self, recording: Sliceable) -> np.ndarray:
        t = _timestamps(type(self).__name__, recording)
        starts = self.window_starts(t)
        if starts.dtype.kind == "f":
            return _pairs(np.searchsorted(t, starts),
                          np.searchsorted(t, starts + self.time_window), len(t))  # fmt: skip
        # int64: a window that ends past the int64 range holds every event from its start
        past = starts > _INT64_MAX - self.time_window
        stops = np.searchsorted(t, np.where(past, 0, starts) + self.time_window)
        stops[past] = len(t)
        return _pairs(np.searchsorted(t, starts), stops, len(t))


class _BinSlicer(Slicer):
    """A slicer into ``bin_count`` slices overlapping by a fraction ``overlap`` of a bin."""

    def __init__(self, bin_count: int, overlap: float = 0.0) -> None:
        owner = type(self).__name__
        self.bin_count = check_int(f"{owner}: bin_count", bin_count, 1)
        self.overlap = check_real(f"{owner}: overlap", overlap, 0.0, 1.0, high_open=True)

    def params(self) -> dict[str, Any]:
        return {"bin_count": self.bin_count, "overlap": self.overlap}


class SliceByTimeBins(_BinSlicer):
    """``bin_count`` windows over the recording's span (Tonic's ``SliceByTimeBins``).

    With ``b = ⌊(t_last - t_first)/bin_count⌋`` µs, window ``k`` starts at ``t_first +
    k·b·(1 + overlap)·(1 - overlap)`` and lasts ``b·(1 + overlap)`` µs: ``overlap`` is a
    fraction of a bin by which each window grows (Tonic's rule, kept to the number). The
    windows end at ``t_first + bin_count·b`` (with no overlap), so the last event and
    those after that point are left out, as in Tonic. A recording shorter than
    ``bin_count`` µs (``b = 0``) or with no events gives ``bin_count`` empty slices.

    Args:
        bin_count: the number of slices (>= 1).
        overlap: fraction of a bin, ``0 <= overlap < 1``.
    """

    needs_time = True

    def get_slice_metadata(self, recording: Sliceable) -> np.ndarray:
        t = _timestamps(type(self).__name__, recording)
        if len(t) == 0:
            return np.zeros((self.bin_count, 2), dtype=np.int64)
        first = int(t[0])
        base = (int(t[-1]) - first) // self.bin_count
        if self.overlap == 0:  # integer arithmetic: exact for any timestamp
            starts = first + base * np.arange(self.bin_count, dtype=np.int64)
            ends = starts + base
        else:  # Tonic's float arithmetic, step for step
            window = base * (1 + self.overlap)
            starts = np.arange(self.bin_count) * (window * (1 - self.overlap)) + first
            ends = starts + window
        return _pairs(np.searchsorted(t, starts),
                      np.searchsorted(t, ends), len(t))  # fmt: skip


class SliceByEventCount(Slicer):
    """Runs of ``event_count`` events, each starting ``event_count - overlap`` events
    after the previous one (Tonic's ``SliceByEventCount``).

    With ``N`` events, ``c = min(event_count, N)`` and ``stride = event_count -
    overlap``, slice ``k`` is ``[k·stride, k·stride + c)``; there are ``⌊(N -
    c)/stride⌋ + 1`` slices, or with ``include_incomplete=True`` ``⌈(N - c)/stride⌉ +
    1``, the last of which is shorter. A recording with fewer than ``event_count``
    events gives one slice of all of them (an empty one gives one empty slice), as in
    Tonic. Cuts any array or tensor along its first axis too (frames into runs of
    ``event_count`` frames).

    Args:
        event_count: events per slice (>= 1).
        overlap: events shared by consecutive slices, ``0 <= overlap < event_count``.
        include_incomplete: also the shorter slice at the end.
    """

    def __init__(
        self, event_count: int, overlap: int = 0, include_incomplete: bool = False
    ) -> None:
        owner = type(self).__name__
        self.event_count = check_int(f"{owner}: event_count", event_count, 1)
        self.overlap = check_int(f"{owner}: overlap", overlap, 0)
        if self.overlap >= self.event_count:
            raise ConfigurationError(
                f"{owner}: overlap must be in [0, event_count) = [0, {self.event_count}); got "
                f"{overlap!r} (the next slice would not start after the previous one)"
            )
        self.include_incomplete = check_flag(owner, "include_incomplete", include_incomplete)

    def params(self) -> dict[str, Any]:
        return {"event_count": self.event_count, "overlap": self.overlap,
                "include_incomplete": self.include_incomplete}  # fmt: skip

    def get_slice_metadata(self, recording: Sliceable) -> np.ndarray:
        n = _length(type(self).__name__, recording)
        count = min(self.event_count, n)
        stride = self.event_count - self.overlap
        span = n - count
        slices = (-(-span // stride) if self.include_incomplete else span // stride) + 1
        starts = stride * np.arange(slices, dtype=np.int64)
        return _pairs(starts, starts + count, n)


class SliceByEventBins(_BinSlicer):
    """``bin_count`` runs of events (Tonic's ``SliceByEventBins``): each holds ``c =
    ⌊⌊N/bin_count⌋·(1 + overlap)⌋`` events and starts ``⌊c·(1 - overlap)⌋`` events
    after the previous one. The ``N mod bin_count`` events at the end are left out
    (with no overlap), as in Tonic. Cuts any array or tensor along its first axis too.

    Args:
        bin_count: the number of slices (>= 1).
        overlap: fraction of a bin, ``0 <= overlap < 1``.
    """

    def get_slice_metadata(self, recording: Sliceable) -> np.ndarray:
        n = _length(type(self).__name__, recording)
        count = int(n // self.bin_count * (1 + self.overlap))
        stride = int(count * (1 - self.overlap))
        starts = stride * np.arange(self.bin_count, dtype=np.int64)
        return _pairs(starts, starts + count, n)


def _index_array(owner: str, name: str, values: Any, kind: str) -> np.ndarray:
    """``values`` as a read-only 1-D array of integers (``kind="int"``) or finite reals,
    a copy: changing the caller's array later changes neither the cuts nor the key."""
    if isinstance(values, torch.Tensor):
        array = values.detach().cpu().numpy().copy()
    else:
        array = np.array(values)
    if array.ndim != 1:
        raise ShapeError(f"{owner}: {name} must be a 1-D sequence; got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    allowed = "iu" if kind == "int" else "iuf"
    if array.dtype.kind not in allowed:
        what = "integer event indices" if kind == "int" else "times in µs"
        raise ConfigurationError(f"{owner}: {name} must hold {what}; got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        i = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ConfigurationError(f"{owner}: {name}[{i}] = {array[i]} is not finite")
    if array.dtype.kind == "u" and array.dtype.itemsize < 8:
        array = array.astype(np.int64)
    elif array.dtype == np.uint64 and kind != "int":  # compared with int64 timestamps
        if array.max() > _INT64_MAX:
            i = int(np.argmax(array > _INT64_MAX))
            raise ConfigurationError(
                f"{owner}: {name}[{i}] = {array[i]} µs is outside the int64 range of timestamps"
            )
        array = array.astype(np.int64)
    array.setflags(write=False)
    return array


def _check_bounds(
    owner: str, names: tuple[str, str], starts: np.ndarray, stops: np.ndarray
) -> None:
    if starts.shape != stops.shape:
        raise ShapeError(
            f"{owner}: {names[0]} has {len(starts)} entries but {names[1]} has {len(stops)}: "
            "one start and one end per slice"
        )
    bad = np.flatnonzero(stops < starts)
    if bad.size:
        i = int(bad[0])
        raise ConfigurationError(
            f"{owner}: slice {i} ends before it starts ({names[1]}[{i}] = {stops[i]} < "
            f"{names[0]}[{i}] = {starts[i]})"
        )


def _short(array: np.ndarray) -> str:
    return np.array2string(array, separator=", ", threshold=8)


class SliceAtIndices(Slicer):
    """The slices ``[start_indices[k], end_indices[k])`` (Tonic's ``SliceAtIndices``),
    in the order given; overlapping and empty slices are allowed. Indices past the end
    of a recording are clipped to its length (Tonic's slices too). Cuts any array or
    tensor along its first axis too.

    Args:
        start_indices: the first index of each slice (integers >= 0).
        end_indices: the index one past the last of each slice (``>= start_indices``).
    """

    def __init__(self, start_indices: Indices, end_indices: Indices) -> None:
        owner = type(self).__name__
        starts = _index_array(owner, "start_indices", start_indices, "int")
        stops = _index_array(owner, "end_indices", end_indices, "int")
        _check_bounds(owner, ("start_indices", "end_indices"), starts, stops)
        if starts.size and starts.min() < 0:
            i = int(np.flatnonzero(starts < 0)[0])
            raise ConfigurationError(
                f"{owner}: start_indices[{i}] = {starts[i]} is negative (indices count from "
                "the first event)"
            )
        self.start_indices, self.end_indices = starts, stops

    def params(self) -> dict[str, Any]:
        return {"start_indices": self.start_indices.tolist(),
                "end_indices": self.end_indices.tolist()}  # fmt: skip

    def get_slice_metadata(self, recording: Sliceable) -> np.ndarray:
        n = _length(type(self).__name__, recording)
        return _pairs(self.start_indices, self.end_indices, n)

    def __repr__(self) -> str:
        return (f"SliceAtIndices(start_indices={_short(self.start_indices)}, "
                f"end_indices={_short(self.end_indices)})")  # fmt: skip


class SliceAtTimePoints(Slicer):
    """The windows ``[start_tw[k], end_tw[k])`` in µs (Tonic's ``SliceAtTimePoints``), in
    the order given; overlapping and empty windows are allowed.

    Args:
        start_tw: the start time of each window (µs).
        end_tw: the end time of each window (µs, exclusive; ``>= start_tw``).
    """

    needs_time = True

    def __init__(self, start_tw: Times, end_tw: Times) -> None:
        owner = type(self).__name__
        self.start_tw = _index_array(owner, "start_tw", start_tw, "time")
        self.end_tw = _index_array(owner, "end_tw", end_tw, "time")
        _check_bounds(owner, ("start_tw", "end_tw"), self.start_tw, self.end_tw)

    def params(self) -> dict[str, Any]:
        return {"start_tw": self.start_tw.tolist(), "end_tw": self.end_tw.tolist()}

    def get_slice_metadata(self, recording: Sliceable) -> np.ndarray:
        t = _timestamps(type(self).__name__, recording)
        return _pairs(np.searchsorted(t, self.start_tw),
                      np.searchsorted(t, self.end_tw), len(t))  # fmt: skip

    def __repr__(self) -> str:
        return (f"SliceAtTimePoints(start_tw={_short(self.start_tw)}, "
                f"end_tw={_short(self.end_tw)})")  # fmt: skip
