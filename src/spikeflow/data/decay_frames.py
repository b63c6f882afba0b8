"""Exponential-decay frames: a leaky running sum of per-window event counts.

The representation of Lava-DL's action-recognition loader
(``slayer.action_recognition.spiking_ntu_dataset.SpikingNTUDataset``): events are cut
into windows of ``duration`` µs from ``t_start``; window ``j`` gives, per pixel and
polarity, its event count clipped at ``max_count`` (Lava-DL's 4-bit
``metavision_ml.preprocessing.histo_quantized``: 15); a state starts at zero, decays by
``exp(-duration/tau)`` after each window and adds the next window's counts. Frame ``k``
is the state after ``k`` windows,

    F_k = sum_{j < k} exp(-(k - 1 - j) duration / tau) · c_j ,   k = 0 .. N,

so ``F_0`` is all zeros (Lava-DL's list starts with that frame) and there are ``N + 1``
frames for ``N = ⌊(t_last − t_start)/duration⌋ + 1`` windows. ``signed=True`` gives
Lava-DL's single channel ``c = clip(count p=0) − clip(count p≠0)``.

Frames are computed only where asked (``frame_indices``): between two wanted frames the
state decays in one step and the windows in between are added with their weights, so
sampling 30 frames of a long recording never holds all of them in memory.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from spikeflow._checks import check_flag, is_count
from spikeflow.data.events import EventRecording
from spikeflow.data.frames import event_channels, unpack_events
from spikeflow.data.representations import Representation, _check_tau
from spikeflow.errors import ConfigurationError

__all__ = ["ToDecayFrames", "decay_frame_count", "to_decay_frames"]


def _check_params(duration: Any, tau: Any, max_count: Any, t_start: Any) -> None:
    if not is_count(duration):
        raise ConfigurationError(f"duration must be an int >= 1 (microseconds); got {duration!r}")
    _check_tau(tau)
    if max_count is not None and not is_count(max_count):
        raise ConfigurationError(f"max_count must be an int >= 1 or None; got {max_count!r}")
    if t_start is not None and (
        isinstance(t_start, bool) or not isinstance(t_start, numbers.Integral)
    ):
        raise ConfigurationError(f"t_start must be an int (microseconds) or None; got {t_start!r}")


def _origin(arr: np.ndarray, t_start: int | None, source: str | None) -> int:
    if t_start is None:
        return int(arr["t"][0]) if len(arr) else 0
    if len(arr) and int(arr["t"][0]) < t_start:
        raise ConfigurationError(
            f"{source or '<events>'}: event 0 at t={int(arr['t'][0])} us is before "
            f"t_start={t_start} us (drop earlier events, or pass t_start=None to start at "
            "the first event)"
        )
    return int(t_start)


def decay_frame_count(
    events: EventRecording | np.ndarray,
    duration: int,
    t_start: int | None = None,
    *,
    sensor_size: Sequence[int] | None = None,
) -> int:
    """How many frames :func:`to_decay_frames` gives: ``N + 1`` for
    ``N = ⌊(t_last − t_start)/duration⌋ + 1`` windows (1 for an empty recording)."""
    _check_params(duration, 1.0, None, t_start)
    arr, _, source = unpack_events(events, sensor_size)
    if len(arr) == 0:
        return 1
    t0 = _origin(arr, t_start, source)
    return (int(arr["t"][-1]) - t0) // int(duration) + 2


def to_decay_frames(
    events: EventRecording | np.ndarray,
    duration: int,
    tau: float,
    *,
    max_count: int | None = 15,
    t_start: int | None = None,
    signed: bool = True,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    sensor_size: Sequence[int] | None = None,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Exponential-decay frames ``[K, C, H, W]`` (module docstring for the formula).

    Args:
        events: an EventRecording, or a structured array plus ``sensor_size``.
        duration: window length in µs (Lava-DL: ``int(1e6 / 150) = 6666``).
        tau: decay time constant in µs; each window multiplies the state by
            ``exp(-duration/tau)`` (Lava-DL's factor ``exp(-1/5)``: ``tau = 5 * duration``).
        max_count: per-window, per-pixel, per-polarity counts are clipped at this
            (Lava-DL: 15); None: no clipping.
        t_start: where the first window starts, µs (Lava-DL: 0, the file's clock);
            None: at the first event.
        signed: one channel, ``clip(count p=0) − clip(count p≠0)`` (Lava-DL's sign;
            needs 2 polarities); False: one channel per polarity, ``[K, P, H, W]``.
        frame_indices: which frames to return, in that order (repeats allowed), each
            in ``[0, decay_frame_count(...))``; None: all of them.
        sensor_size: ``(W, H, P)``; taken from the recording when omitted.
        dtype: a floating output dtype (float32 by default; the sums are float64).

    Raises:
        ConfigurationError: a bad parameter, events before ``t_start``, ``signed`` with
            a sensor that has not 2 polarities, a frame index out of range, a dtype that
            is not floating (decayed and signed values would be cut or wrapped).
        DataFormatError: unsorted events or coordinates outside the sensor.
    """
    _check_params(duration, tau, max_count, t_start)
    signed = check_flag("to_decay_frames", "signed", signed)
    try:
        kind = np.dtype(dtype).kind
    except TypeError as exc:
        raise ConfigurationError(f"to_decay_frames: dtype {dtype!r} is not a dtype") from exc
    if kind != "f":
        raise ConfigurationError(
            f"to_decay_frames: dtype must be floating (float16/32/64); got {np.dtype(dtype)} "
            "(decayed values are fractions and signed frames are negative)"
        )
    arr, (width, height, polarities), source = unpack_events(events, sensor_size)
    if signed and polarities != 2:
        raise ConfigurationError(
            f"to_decay_frames: signed=True needs 2 polarities; the sensor has {polarities} "
            "(use signed=False)"
        )
    count = decay_frame_count(arr, duration, t_start, sensor_size=(width, height, polarities))
    if frame_indices is None:
        wanted = np.arange(count)
    else:
        wanted = np.asarray(frame_indices)
        if wanted.ndim != 1 or (wanted.size and not np.issubdtype(wanted.dtype, np.integer)):
            raise ConfigurationError(
                f"frame_indices must be a 1-D sequence of ints; got {wanted.dtype} "
                f"shape {wanted.shape}"
            )
        if wanted.size and (wanted.min() < 0 or wanted.max() >= count):
            raise ConfigurationError(
                f"frame_indices must lie in [0, {count}) for this recording "
                f"({count} frames); got values in [{wanted.min()}, {wanted.max()}]"
            )
    channels = 1 if signed else polarities
    plane = channels * height * width
    out = np.zeros((len(wanted), plane), dtype=dtype)
    if len(arr) and len(wanted):
        window, pixel, value = _window_counts(arr, duration, t_start, max_count, signed, source,
                                              (width, height, polarities))  # fmt: skip
        decay = math.exp(-float(duration) / float(tau))
        targets = np.unique(wanted)
        state = np.zeros(plane, dtype=np.float64)
        done = 0  # windows already in `state`
        lo = 0
        computed = np.empty((len(targets), plane), dtype=dtype)  # (the sums stay float64)
        for i, k in enumerate(targets.tolist()):
            hi = int(np.searchsorted(window, k, side="left"))  # entries of windows < k
            if k > done:
                state *= decay ** (k - done)
                weights = value[lo:hi] * decay ** (k - 1 - window[lo:hi])
                state += np.bincount(pixel[lo:hi], weights, minlength=plane)
            computed[i] = state
            done, lo = k, hi
        # All frames: `computed` is the output already (no second copy of a long stack).
        out = computed if frame_indices is None else computed[np.searchsorted(targets, wanted)]
    return out.astype(dtype, copy=False).reshape(len(wanted), channels, height, width)


def _window_counts(
    arr: np.ndarray,
    duration: int,
    t_start: int | None,
    max_count: int | None,
    signed: bool,
    source: str | None,
    size: tuple[int, int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(window, pixel, value)`` per nonzero (window, pixel, polarity) entry, sorted by
    window: the clipped count, signed by polarity with ``signed``."""
    width, height, polarities = size
    t0 = _origin(arr, t_start, source)
    window = (arr["t"].astype(np.int64) - t0) // int(duration)
    area = height * width
    if signed:
        channel = (arr["p"] != 0).astype(np.int64)
        key_plane = 2 * area
    else:
        channel = event_channels(arr["p"], polarities, source)
        key_plane = polarities * area
    flat = channel * area + arr["y"].astype(np.int64) * width + arr["x"].astype(np.int64)
    # Windows by rank among the occupied ones (events are sorted, so window is too):
    # window numbers themselves can be ~1e13 (epoch-µs clocks from t_start=0) and
    # window * key_plane would overflow int64 into wrong keys.
    starts = np.empty(len(window), dtype=bool)
    starts[:1], starts[1:] = True, window[1:] != window[:-1]
    occupied, rank = window[starts], np.cumsum(starts) - 1
    # One key per (window, channel, pixel); unique sorts them by window first.
    uniq, counts = np.unique(rank.astype(np.int64) * key_plane + flat, return_counts=True)
    win, flat = np.divmod(uniq, key_plane)
    win = occupied[win]
    pixel = flat % area if signed else flat
    value = counts.astype(np.float64)
    if max_count is not None:
        np.minimum(value, max_count, out=value)
    if signed:
        value = np.where(flat < area, value, -value)
    return win, pixel, value


class ToDecayFrames(Representation):
    """:func:`to_decay_frames` as a representation (all ``N + 1`` frames; cacheable).

    Lava-DL's NTU frames: ``ToDecayFrames(6666, tau=5 * 6666, t_start=0)``.
    """

    name = "decay_frames"

    def __init__(
        self,
        duration: int,
        tau: float,
        *,
        max_count: int | None = 15,
        t_start: int | None = None,
        signed: bool = True,
    ) -> None:
        _check_params(duration, tau, max_count, t_start)
        self.duration, self.tau = int(duration), float(tau)
        self.max_count = None if max_count is None else int(max_count)
        self.t_start = None if t_start is None else int(t_start)
        self.signed = check_flag("ToDecayFrames", "signed", signed)

    def params(self) -> dict[str, Any]:
        return {"duration": self.duration, "tau": self.tau, "max_count": self.max_count,
                "t_start": self.t_start, "signed": self.signed}  # fmt: skip

    def __call__(self, events: EventRecording) -> np.ndarray:
        return to_decay_frames(
            events, self.duration, self.tau, max_count=self.max_count,
            t_start=self.t_start, signed=self.signed,
        )  # fmt: skip
