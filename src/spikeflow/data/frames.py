"""Frames from events: the ``[T, P, H, W]`` views of an event stream (methods.md 11.1).

Events are the data; frames are a view computed from them (design principle 5). Every
function here takes an :class:`~spikeflow.data.EventRecording` (or a structured array of
:data:`~spikeflow.data.EVENT_DTYPE` plus ``sensor_size=(W, H, P)``), is vectorised numpy
(one ``np.bincount`` per call, no per-event Python loop) and returns a numpy array.
Timestamps ``t`` must be integers (microseconds); floating-point times are a
:class:`~spikeflow.errors.DataFormatError`, not cut to whole numbers.

**Channels.** With ``P == 2`` (DVS polarities) channel 0 counts events with ``p == 0``
and channel 1 events with ``p != 0``. With ``P == 1`` (polarities merged) every event
goes to channel 0. Any other ``P`` treats ``p`` as a channel index in ``[0, P)``.

**Splitting into ``T = frames_number`` segments** (events sorted by ``t``; ``N`` events,
``t_first``/``t_last`` the first and last timestamps):

- ``split_by="number"``: ``Δ = ⌊N/T⌋``; segment ``j`` holds event indices
  ``[jΔ, (j+1)Δ)`` for ``j < T-1``; the last segment ``T-1`` holds ``[(T-1)Δ, N)``, so
  it also takes the ``N mod T`` left-over events, and the last event always lands in it.
- ``split_by="time"``: ``Δt = ⌊(t_last − t_first)/T⌋`` µs; segment ``j < T-1`` holds
  events with ``t_first + jΔt ≤ t < t_first + (j+1)Δt``; the last segment holds every
  event with ``t ≥ t_first + (T-1)Δt``, the final event (``t = t_last``) included.

Ragged cases follow from these rules: with ``N < T`` (or ``t_last − t_first < T`` for
``"time"``) ``Δ = 0``, every segment but the last is empty and all events land in frame
``T-1``; a time segment with no event is an all-zero frame. ``T = 1`` gives one frame
with every event. An empty recording gives ``T`` all-zero frames. SpikingJelly 2.0
(``cal_fixed_frames_number_segment_index``) gives the same frames wherever it returns:
its ``"number"`` rule is this one, ragged cases included, but its ``"time"`` rule raises
``IndexError`` when a segment is empty (``Δt = 0`` included).

**Fixed duration** (:func:`to_frames_by_duration`): frame ``k`` holds events with
``t_first + k·d ≤ t < t_first + (k+1)·d``; there are ``K = ⌊(t_last − t_first)/d⌋ + 1``
frames, so the last event always lands in the (possibly partial) last frame. An empty
recording gives ``K = 0`` frames. Batch such variable-length samples with
:func:`pad_collate`, which pads with all-zero frames and returns a mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from spikeflow.data.events import EventRecording, format_error
from spikeflow.data.io._common import first_decrease
from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError

__all__ = [
    "SPLIT_BY",
    "event_channels",
    "integrate_segments",
    "pad_collate",
    "segment_index",
    "to_frames",
    "to_frames_by_duration",
    "to_frames_by_slices",
    "unpack_events",
]

SPLIT_BY = ("number", "time")
SplitFunction = Callable[[np.ndarray, int], np.ndarray]


def unpack_events(
    events: EventRecording | np.ndarray,
    sensor_size: Sequence[int] | None = None,
    *,
    need_sorted: bool = True,
) -> tuple[np.ndarray, tuple[int, int, int], str | None]:
    """Validate events and return ``(array, (W, H, P), source)``.

    Raises:
        ConfigurationError: no sensor size (a plain array without ``sensor_size``) or a
            non-positive one.
        DataFormatError: not a structured event array, a field ``t`` that does not hold
            integers (microseconds), timestamps that go backwards (``need_sorted``) or
            coordinates outside the sensor; the message names the source file and the
            first offending event.
    """
    source = None
    if isinstance(events, EventRecording):
        source = events.source
        if sensor_size is None:
            sensor_size = events.sensor_size
        events = events.events
    if sensor_size is None:
        raise ConfigurationError(
            "sensor_size=(width, height, polarities) is needed with a plain event array "
            "(or pass an EventRecording, which carries it); the representation objects "
            "(ToFrame, ToFrameBySlices, ToVoxelGrid, ...) take no sensor_size: wrap the "
            "array first, EventRecording(events, sensor_size) (a Tonic array too)"
        )
    size = tuple(int(s) for s in sensor_size)
    if len(size) != 3 or min(size) < 1:
        raise ConfigurationError(
            f"sensor_size must be (width, height, polarities), all >= 1; got {tuple(sensor_size)}"
        )
    if (
        not isinstance(events, np.ndarray)
        or events.dtype.names is None
        or not {"t", "x", "y", "p"}.issubset(events.dtype.names)
    ):
        raise DataFormatError(
            f"{source or '<events>'}: expected a structured array with fields t, x, y, p "
            f"(spikeflow.data.EVENT_DTYPE); got {getattr(events, 'dtype', type(events))}"
        )
    if events.ndim != 1:
        raise ShapeError(f"events must be a 1-D structured array; got shape {events.shape}")
    _check_time_field(events, source)
    if events.size:
        t = events["t"]
        i = first_decrease(t) if need_sorted else -1
        if i >= 0:
            raise format_error(
                source, None, f"events are not sorted by time: event {i} at "
                f"t={int(t[i])} us comes after t={int(t[i - 1])} us (sort them with "
                "spikeflow.data.transforms.SortEvents)"
            )  # fmt: skip
        width, height, _ = size
        x, y = events["x"], events["y"]
        # Two reductions in the common case; the first bad event is located only on failure.
        inside = int(x.max()) < width and int(y.max()) < height
        # Signed coordinates (Tonic's int16 layout) may also be negative.
        if inside and (x.dtype.kind == "i" or y.dtype.kind == "i"):
            inside = int(x.min()) >= 0 and int(y.min()) >= 0
        bad = (
            np.empty(0) if inside
            else np.flatnonzero((x >= width) | (y >= height) | (x < 0) | (y < 0))
        )  # fmt: skip
        if bad.size:
            i = int(bad[0])
            raise format_error(
                source, None, f"event {i} at (x={int(events['x'][i])}, "
                f"y={int(events['y'][i])}) is outside the {width}x{height} sensor"
            )  # fmt: skip
    return events, size, source


def _check_time_field(events: np.ndarray, source: str | None = None) -> None:
    """Raise a :class:`DataFormatError` unless fields ``t`` (microseconds), ``x`` and
    ``y`` hold integers.

    Floating-point times (seconds, as some HDF5 / Tonic sources store them) would be
    cut to whole numbers by the int64 casts of the frame functions, silently putting
    every event in one frame; signed and unsigned integers of any width are accepted.
    """
    dtype = events.dtype["t"]
    if dtype.kind not in "iu":
        raise DataFormatError(
            f"{source or '<events>'}: field 't' must hold integer microseconds; got dtype "
            f"{dtype} (convert seconds with spikeflow.data.make_events(np.rint(t * 1e6), "
            "x, y, p))"
        )
    for name in ("x", "y"):
        if events.dtype[name].kind not in "iu":
            raise DataFormatError(
                f"{source or '<events>'}: field {name!r} must hold integer pixel "
                f"coordinates; got dtype {events.dtype[name]}"
            )


def event_channels(p: np.ndarray, polarities: int, source: str | None = None) -> np.ndarray:
    """The frame channel of every event (see the module docstring for the rule)."""
    if polarities == 2:
        return (p != 0).astype(np.int64)
    if polarities == 1:
        return np.zeros(p.shape, dtype=np.int64)
    c = p.astype(np.int64)
    bad = np.flatnonzero((c < 0) | (c >= polarities))
    if bad.size:
        i = int(bad[0])
        raise format_error(
            source, None, f"event {i} has polarity/channel {int(c[i])}, outside the "
            f"sensor's {polarities} channels"
        )  # fmt: skip
    return c


def _check_frames_number(frames_number: Any) -> int:
    if isinstance(frames_number, bool) or not isinstance(frames_number, (int, np.integer)):
        raise ConfigurationError(f"frames_number must be an int >= 1; got {frames_number!r}")
    if frames_number < 1:
        raise ConfigurationError(f"frames_number must be >= 1; got {frames_number}")
    return int(frames_number)


def segment_index(
    events: np.ndarray, frames_number: int, split_by: str | SplitFunction = "number"
) -> np.ndarray:
    """The segment (frame) index in ``[0, frames_number)`` of every event.

    ``split_by`` is ``"number"``, ``"time"`` (rules in the module docstring) or a user
    function ``f(events, frames_number) -> int array`` of one index per event, each in
    ``[0, frames_number)``. ``events`` must be sorted by time for the built-in rules.
    """
    T = _check_frames_number(frames_number)
    n = len(events)
    if callable(split_by):
        idx = np.asarray(split_by(events, T))
        if idx.shape != (n,) or (n and not np.issubdtype(idx.dtype, np.integer)):
            raise ShapeError(
                f"split_by function must return one integer index per event (shape ({n},)); "
                f"got dtype {idx.dtype}, shape {idx.shape}"
            )
        if n and (idx.min() < 0 or idx.max() >= T):
            raise ConfigurationError(
                f"split_by function returned indices in [{idx.min()}, {idx.max()}], "
                f"outside [0, {T})"
            )
        return idx.astype(np.int64)
    if split_by == "number":
        step = n // T
        if step == 0:
            return np.full(n, T - 1, dtype=np.int64)
        return np.minimum(np.arange(n, dtype=np.int64) // step, T - 1)
    if split_by == "time":
        _check_time_field(events)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        t = events["t"].astype(np.int64)
        dt = (int(t[-1]) - int(t[0])) // T
        if dt == 0:
            return np.full(n, T - 1, dtype=np.int64)
        return np.minimum((t - t[0]) // dt, T - 1)
    raise ConfigurationError(f"split_by must be 'number', 'time' or a function; got {split_by!r}")


def _index(a: np.ndarray) -> np.ndarray:
    """Coordinates as they can enter intp arithmetic: uint64 ones (checked to lie inside
    the sensor) are converted, which numpy does not do safely by itself."""
    return a if np.can_cast(a.dtype, np.intp) else a.astype(np.intp)


def _pixel_index(
    events: np.ndarray, sensor_size: tuple[int, int, int], source: str | None
) -> np.ndarray:
    """``(c·H + y)·W + x`` of every event: its flat position inside one ``[P, H, W]`` frame."""
    width, height, polarities = sensor_size
    flat = np.multiply(_index(events["y"]), width, dtype=np.intp)
    flat += _index(events["x"])
    if polarities == 2:
        flat += np.multiply(events["p"] != 0, height * width, dtype=np.intp)
    elif polarities > 2:
        flat += event_channels(events["p"], polarities, source) * (height * width)
    return flat


def _count(flat: np.ndarray, frames_number: int, sensor_size: tuple[int, int, int]) -> np.ndarray:
    width, height, polarities = sensor_size
    size = frames_number * polarities * height * width
    counts = np.bincount(flat, minlength=size)
    return counts.astype(np.int32).reshape(frames_number, polarities, height, width)


def integrate_segments(
    events: np.ndarray,
    index: np.ndarray,
    frames_number: int,
    sensor_size: tuple[int, int, int],
    source: str | None = None,
) -> np.ndarray:
    """Count events into ``[frames_number, P, H, W]`` int32 frames by segment ``index``."""
    width, height, polarities = sensor_size
    if len(events) == 0:
        return np.zeros((frames_number, polarities, height, width), dtype=np.int32)
    flat = _pixel_index(events, sensor_size, source)
    flat += index * (polarities * height * width)
    return _count(flat, frames_number, sensor_size)


def _integrate_by_number(
    events: np.ndarray, frames_number: int, sensor_size: tuple[int, int, int], source: str | None
) -> np.ndarray:
    """``split_by="number"`` without a per-event segment index: the segments are
    contiguous runs of ``Δ`` events (the last one ``N - (T-1)Δ``), so each run's frame
    offset is added with one ``np.repeat``. Same result as :func:`segment_index`."""
    width, height, polarities = sensor_size
    n, T = len(events), frames_number
    if n == 0:
        return np.zeros((T, polarities, height, width), dtype=np.int32)
    flat = _pixel_index(events, sensor_size, source)
    step = n // T
    if T > 1:
        lengths = np.full(T, step, dtype=np.intp)
        lengths[-1] = n - (T - 1) * step
        frame = polarities * height * width
        flat += np.repeat(np.arange(0, T * frame, frame, dtype=np.intp), lengths)
    return _count(flat, T, sensor_size)


def to_frames(
    events: EventRecording | np.ndarray,
    frames_number: int,
    split_by: str | SplitFunction = "number",
    *,
    sensor_size: Sequence[int] | None = None,
) -> np.ndarray:
    """Integrate events into ``frames_number`` frames of raw counts, ``[T, P, H, W]`` int32.

    Args:
        events: an EventRecording, or a structured array plus ``sensor_size``.
        frames_number: ``T >= 1``.
        split_by: ``"number"`` (equal event counts), ``"time"`` (equal time spans) or a
            function ``f(events, T) -> segment index per event``. Exact bin edges, where
            the last event goes and the ragged cases are in the module docstring.
        sensor_size: ``(W, H, P)``; taken from the recording when omitted.

    Raises:
        ConfigurationError: bad ``frames_number`` or ``split_by``.
        DataFormatError: unsorted events or coordinates outside the sensor.
    """
    arr, size, source = unpack_events(events, sensor_size, need_sorted=not callable(split_by))
    T = _check_frames_number(frames_number)
    if isinstance(split_by, str) and split_by == "number":
        return _integrate_by_number(arr, T, size, source)
    index = segment_index(arr, T, split_by)
    return integrate_segments(arr, index, T, size, source)


def to_frames_by_duration(
    events: EventRecording | np.ndarray,
    duration: int,
    *,
    sensor_size: Sequence[int] | None = None,
) -> np.ndarray:
    """Integrate events into frames of ``duration`` µs each, ``[K, P, H, W]`` int32.

    Frame ``k`` holds events with ``t_first + k·duration ≤ t < t_first + (k+1)·duration``
    and ``K = ⌊(t_last − t_first)/duration⌋ + 1`` (``K = 0`` for an empty recording),
    so the last frame may cover less than ``duration`` and always holds the last event.
    """
    if isinstance(duration, bool) or not isinstance(duration, (int, np.integer)) or duration < 1:
        raise ConfigurationError(f"duration must be an int >= 1 (microseconds); got {duration!r}")
    arr, size, source = unpack_events(events, sensor_size)
    if len(arr) == 0:
        return np.zeros((0, size[2], size[1], size[0]), dtype=np.int32)
    t = arr["t"].astype(np.int64)
    index = (t - t[0]) // int(duration)
    return integrate_segments(arr, index, int(index[-1]) + 1, size, source)


def to_frames_by_slices(
    events: EventRecording | np.ndarray,
    slicer: Any,
    *,
    sensor_size: Sequence[int] | None = None,
) -> np.ndarray:
    """One frame of raw counts per slice a slicer cuts, ``[K, P, H, W]`` int32.

    ``slicer`` is any :class:`~spikeflow.data.Slicer` (``SliceByTime``,
    ``SliceByEventCount``, ``SliceByTimeBins``, ``SliceByEventBins``, ...): frame ``k``
    counts the events of its ``k``-th ``(start, stop)`` cut, so overlapping slices count
    an event in every frame it falls in, and ``K`` is the slicer's number of pieces
    (Tonic's ``ToFrame(time_window | event_count | n_time_bins | n_event_bins, overlap,
    include_incomplete)``, whose frames these equal, in int32 instead of int16).

    Raises:
        ConfigurationError: ``slicer`` is no slicer, one that slices by item count
            where timestamps are needed (its own checks), or cuts that are not
            ``0 <= start <= stop <= len(events)`` (a slicer of your own).
        DataFormatError: unsorted events or coordinates outside the sensor.
    """
    if not callable(getattr(slicer, "get_slice_metadata", None)):
        raise ConfigurationError(
            "to_frames_by_slices: slicer must be a spikeflow.data slicer (SliceByTime, "
            f"SliceByEventCount, ...) with get_slice_metadata; got {type(slicer).__name__}"
        )
    arr, size, source = unpack_events(events, sensor_size)
    width, height, polarities = size
    recording = EventRecording(arr, size, source=source)
    from spikeflow.data.slicing import check_metadata  # (lazy: slicing imports this module)

    # Checked: a negative start would index from the end, counting events of no cut.
    cuts = check_metadata(
        f"to_frames_by_slices: {type(slicer).__name__}",
        slicer.get_slice_metadata(recording),
        len(arr),
    )
    frames = len(cuts)
    lengths = cuts[:, 1] - cuts[:, 0]
    if frames == 0 or lengths.sum() == 0:
        return np.zeros((frames, polarities, height, width), dtype=np.int32)
    # The event indices of every cut, back to back, and the frame each copy lands in.
    frame_of = np.repeat(np.arange(frames, dtype=np.intp), lengths)
    index = np.arange(int(lengths.sum()), dtype=np.intp)
    index += np.repeat(cuts[:, 0] - (np.cumsum(lengths) - lengths), lengths).astype(np.intp)
    flat = _pixel_index(arr, size, source)[index]
    flat += frame_of * (polarities * height * width)
    return _count(flat, frames, size)


def pad_collate(batch: Sequence[Any], time_major: bool = False) -> tuple[torch.Tensor, ...]:
    """Collate variable-length samples (e.g. fixed-``duration`` frames) into a padded batch.

    Each sample is a tensor ``[T_i, ...]`` or a tuple whose first element is one (the
    rest, e.g. the label, are collated with PyTorch's ``default_collate``). Returns
    ``(frames, *rest, mask)``: ``frames`` is ``[B, T_max, ...]`` with all-zero frames
    after each sample's end, and ``mask`` is a bool ``[B, T_max]``, True on real frames.
    With ``time_major=True`` both come time-major (``[T_max, B, ...]``, ``[T_max, B]``),
    which is what spikeflow's multi-step layers take.

    Use it as ``DataLoader(dataset, batch_size=..., collate_fn=pad_collate)``.
    """
    if len(batch) == 0:
        raise ConfigurationError("pad_collate got an empty batch")
    is_tuple = isinstance(batch[0], (tuple, list))
    seqs = [torch.as_tensor(s[0] if is_tuple else s) for s in batch]
    tail = seqs[0].shape[1:]
    for i, s in enumerate(seqs):
        if s.dim() < 1 or s.shape[1:] != tail:
            raise ShapeError(
                f"pad_collate: sample {i} has shape {tuple(s.shape)}; every sample must be "
                f"[T_i, {', '.join(map(str, tail))}]"
            )
    lengths = torch.tensor([s.shape[0] for s in seqs])
    t_max = int(lengths.max())
    out = seqs[0].new_zeros((len(seqs), t_max, *tail))
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    mask = torch.arange(t_max)[None, :] < lengths[:, None]
    if time_major:
        out, mask = out.transpose(0, 1), mask.transpose(0, 1)
    if not is_tuple:
        return out, mask
    rest = torch.utils.data.default_collate([tuple(s[1:]) for s in batch])
    return (out, *rest, mask)
