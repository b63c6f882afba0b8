"""Event transforms for spatial noise, time windows and reversal, polarity and thinning.

These are the event transforms Tonic has beyond those of :mod:`spikeflow.data.transforms`
(which re-exports every one of them): :class:`SpatialJitter`, :class:`UniformNoise`,
:class:`CropTime`, :class:`TimeAlignment`, :class:`TimeReversal`,
:class:`RandomTimeReversal`, :class:`RandomFlipPolarity`, :class:`Decimation`,
:class:`DropArea` (Tonic's ``DropEventByArea``) and :class:`EventDrop`. They follow
that module's conventions: the input is never modified, the sensor size comes from the
:class:`~spikeflow.data.EventRecording` (a plain array is refused where it is needed),
random ones take ``seed`` and report ``.random``, and the constructor's arguments are
the cache key. Where Tonic's behaviour is questionable, the docstring says what spikeflow
does instead and why.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.data.event_timing import _drop_events, _drop_time_window
from spikeflow.data.transforms import EventTransform, Size, _flip_polarity, _RandomApply
from spikeflow.errors import ConfigurationError

__all__ = [
    "CropTime",
    "Decimation",
    "DropArea",
    "EventDrop",
    "RandomFlipPolarity",
    "RandomTimeReversal",
    "SpatialJitter",
    "StabilizeSaccades",
    "TimeAlignment",
    "TimeReversal",
    "UniformNoise",
]

Seed = int | np.random.Generator | None


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) or (isinstance(value, np.ndarray) and value.ndim == 1)


def _real_or_range(
    name: str, value: Any, low: float, high: float | None = None
) -> float | tuple[float, float]:
    """A real in ``[low, high]``, or a ``(lo, hi)`` range inside it with ``lo <= hi``;
    else a ConfigurationError naming ``name`` (which starts with its owner)."""
    if not _is_pair(value):
        return check_real(name, value, low, high)
    if len(value) != 2:
        raise ConfigurationError(f"{name} range must be (low, high); got {value!r}")
    lo, hi = (check_real(f"{name}[{i}]", v, low, high) for i, v in enumerate(value))
    if lo > hi:
        raise ConfigurationError(
            f"{name} range must be (low, high) with low <= high; got {value!r}"
        )
    return (lo, hi)


def _check_polarities(owner: str, sensor_size: Size | None) -> None:
    if sensor_size is not None and sensor_size[2] > 2:
        raise ConfigurationError(
            f"{owner}: the sensor has P = {sensor_size[2]} channels, so p is a channel "
            "index, not an ON/OFF polarity: flipping it would move events between channels"
        )


def move_events(events: np.ndarray, sensor_size: Size, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The events at the new coordinates ``(x, y)`` (floats), rounded to the nearest pixel
    (``numpy.rint``); those off the ``(W, H)`` sensor dropped (a copy)."""
    x, y = np.rint(x), np.rint(y)
    inside = (x >= 0) & (x < sensor_size[0]) & (y >= 0) & (y < sensor_size[1])
    out = events[inside]  # boolean indexing copies
    out["x"] = x[inside]
    out["y"] = y[inside]
    return out


class SpatialJitter(EventTransform):
    """Move every event by its own Gaussian offset, rounded to the nearest pixel.

    ``(x, y) -> (round(x + dx), round(y + dy))`` with ``(dx, dy)`` drawn from
    ``N(0, [[var_x, sigma_xy], [sigma_xy, var_y]])`` (pixels², Tonic's parameters; the
    covariance must be positive semi-definite, ``sigma_xy² <= var_x·var_y``). Times, and
    so the order of the events, are kept. An event jittered off the sensor is dropped
    (``outliers="drop"``, the default) or moved to the nearest pixel on the sensor's
    border (``outliers="clamp"``, which piles such events up along the edges).

    Tonic truncates ``x + dx`` toward zero, which moves events half a pixel toward the
    origin on average, and by default keeps events off the sensor (negative coordinates,
    which spikeflow's unsigned fields cannot hold); its ``clip_outliers=True`` drops
    them, as ``outliers="drop"`` does. The offsets are drawn with
    ``rng.multivariate_normal([0, 0], cov, size=len(events))``.
    """

    needs_sensor = True

    def __init__(
        self, var_x: float = 1.0, var_y: float = 1.0, sigma_xy: float = 0.0,
        outliers: str = "drop", seed: Seed = None,
    ) -> None:  # fmt: skip
        var_x = check_real("SpatialJitter: var_x", var_x, 0.0)
        var_y = check_real("SpatialJitter: var_y", var_y, 0.0)
        sigma_xy = check_real("SpatialJitter: sigma_xy", sigma_xy)
        if sigma_xy * sigma_xy > var_x * var_y:
            raise ConfigurationError(
                f"SpatialJitter: sigma_xy = {sigma_xy!r} makes the covariance "
                "[[var_x, sigma_xy], [sigma_xy, var_y]] not positive semi-definite: "
                f"|sigma_xy| must be <= sqrt(var_x * var_y) = {math.sqrt(var_x * var_y):g}"
            )
        if outliers not in ("drop", "clamp"):
            raise ConfigurationError(
                f"SpatialJitter: outliers must be 'drop' or 'clamp'; got {outliers!r}"
            )
        super().__init__(seed, var_x=var_x, var_y=var_y, sigma_xy=sigma_xy, outliers=outliers)
        self.var_x, self.var_y, self.sigma_xy, self.outliers = var_x, var_y, sigma_xy, outliers

    @property
    def random(self) -> bool:
        return self.var_x > 0 or self.var_y > 0

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        if not self.random:
            return events.copy(), sensor_size
        cov = [[self.var_x, self.sigma_xy], [self.sigma_xy, self.var_y]]
        shift = self.rng().multivariate_normal([0.0, 0.0], cov, size=len(events))
        x = np.rint(events["x"] + shift[:, 0])
        y = np.rint(events["y"] + shift[:, 1])
        width, height = sensor_size[0], sensor_size[1]
        if self.outliers == "clamp":
            out = events.copy()
            out["x"] = np.clip(x, 0, width - 1)
            out["y"] = np.clip(y, 0, height - 1)
            return out, sensor_size
        return move_events(events, sensor_size, x, y), sensor_size


class UniformNoise(EventTransform):
    """Add ``n`` noise events drawn uniformly over the sensor and the recording's span.

    Each noise event gets ``x`` uniform in ``0..W−1``, ``y`` in ``0..H−1``, ``p`` in
    ``0..P−1`` and ``t`` a uniform whole microsecond in ``[t_min, t_max]`` (both ends
    included). ``n`` is a count ``>= 0`` or a ``(low, high)`` range, drawn per call
    uniformly from ``low..high`` (both included). The result is sorted by time, stably:
    at equal times the recording's events come before the noise. An empty recording is
    returned unchanged (it has no time span to draw from), as in Tonic.

    The draws, in order: ``n`` (a range only), then ``t``, ``x``, ``y``, ``p`` with
    ``rng.integers``. Tonic draws ``t`` from ``[t_min, t_max)`` and ``n`` from
    ``[low, high)`` (so ``t_max`` and ``high`` never occur) and sorts with an unstable
    sort, which leaves events at equal times in an arbitrary order.
    """

    needs_sensor = True

    def __init__(self, n: int | tuple[int, int], seed: Seed = None) -> None:
        if _is_pair(n):
            if len(n) != 2:
                raise ConfigurationError(f"UniformNoise: n range must be (low, high); got {n!r}")
            low, high = (check_int(f"UniformNoise: n[{i}]", v, 0) for i, v in enumerate(n))
            if low > high:
                raise ConfigurationError(
                    f"UniformNoise: n range must be (low, high) with low <= high; got {n!r}"
                )
            count: int | tuple[int, int] = (low, high)
        else:
            count = check_int("UniformNoise: n", n, 0)
        super().__init__(seed, n=count)
        self.n = count

    @property
    def random(self) -> bool:
        return self.n != 0 and self.n != (0, 0)

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        if len(events) == 0 or not self.random:
            return events.copy(), sensor_size
        rng = self.rng()
        n = int(rng.integers(self.n[0], self.n[1], endpoint=True)) if _is_pair(self.n) else self.n
        t = events["t"]
        noise = np.zeros(n, dtype=events.dtype)
        noise["t"] = rng.integers(int(t.min()), int(t.max()), size=n, endpoint=True)
        noise["x"] = rng.integers(0, sensor_size[0], size=n)
        noise["y"] = rng.integers(0, sensor_size[1], size=n)
        noise["p"] = rng.integers(0, sensor_size[2], size=n)
        both = np.concatenate([events, noise])
        return both[np.argsort(both["t"], kind="stable")], sensor_size


class CropTime(EventTransform):
    """Keep the events with ``min <= t <= max`` (µs, both ends included).

    ``None`` leaves that end open; times are not shifted (follow with
    :class:`TimeAlignment` to start at 0). Tonic's ``max=None`` is replaced, at the first
    call, by that recording's last time, which then crops every later recording there;
    here ``None`` means no bound at every call. Tonic's ``min`` defaults to 0, which
    drops negative times; here it defaults to ``None`` (the same on the usual
    non-negative times).
    """

    def __init__(self, min: float | None = None, max: float | None = None) -> None:
        low = None if min is None else check_real("CropTime: min", min)
        high = None if max is None else check_real("CropTime: max", max)
        if low is not None and high is not None and low > high:
            raise ConfigurationError(f"CropTime: min must be <= max; got min={min!r}, max={max!r}")
        # Whole numbers stay ints in the key: CropTime(0, 10) and CropTime(0.0, 10.0) match.
        low, high = (v if v is None or v != int(v) else int(v) for v in (low, high))
        super().__init__(None, min=low, max=high)
        self.min, self.max = low, high

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        t = events["t"]
        keep = np.ones(len(events), dtype=bool)
        if self.min is not None:
            keep &= t >= self.min
        if self.max is not None:
            keep &= t <= self.max
        return events[keep], sensor_size


class StabilizeSaccades(EventTransform):
    """Undo the camera motion of N-MNIST's three saccades (Orchard et al. 2015's
    stabilisation, as Tonic's ``NMNIST(stabilize=True)``): a digit that sweeps across
    the sensor stays still.

    The saccades last 105 ms each; with ``s = t / 105 ms`` (float64), an event moves to
    ``(x + 4 − 3.5 s, y + 2 − 7 s)`` in the first, ``(x + 4 − 3.5 − 3.5 (s − 1),
    y + 2 − 7 + 7 (s − 1))`` in the second (``105 ms < t <= 210 ms``) and
    ``(x + 4 − 7 + 7 (s − 2), y + 2)`` after, rounded half to even (``np.round``). An
    event whose unrounded position is off the sensor (below 0 or above ``W − 1``,
    ``H − 1``) is dropped. Equal to Tonic's function on the real N-MNIST recordings
    (``tests/test_data_transforms_extra.py``); the offsets are N-MNIST's, so it is meant
    for N-MNIST only (recordings that start at ``t = 0``).
    """

    needs_sensor = True

    def __init__(self) -> None:
        super().__init__(None)

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        t = events["t"].astype(np.float64)
        x = 4.0 + events["x"].astype(np.float64)
        y = 2.0 + events["y"].astype(np.float64)
        first, third = t <= 105e3, t > 210e3
        second = ~first & ~third
        x[first] -= 3.5 * t[first] / 105e3
        y[first] -= 7 * t[first] / 105e3
        x[second] = x[second] - 3.5 - 3.5 * (t[second] - 105e3) / 105e3
        y[second] = y[second] - 7 + 7 * (t[second] - 105e3) / 105e3
        x[third] = x[third] - 7 + 7 * (t[third] - 210e3) / 105e3
        width, height = sensor_size[0], sensor_size[1]
        inside = (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)
        out = events[inside]  # a copy: boolean indexing
        out["x"], out["y"] = np.round(x[inside]), np.round(y[inside])
        return out, sensor_size


class TimeAlignment(EventTransform):
    """Shift times so that the earliest event is at ``t = 0``: ``t -> t − min(t)``."""

    def __init__(self) -> None:
        super().__init__(None)

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        out = events.copy()
        if len(out):
            out["t"] = events["t"] - events["t"].min()
        return out, sensor_size


class TimeReversal(EventTransform):
    """Play the recording backwards, in place: ``t -> t_min + t_max − t``, order reversed.

    The recording keeps its span ``[t_min, t_max]`` (applying the transform twice gives
    the input back), and a time-sorted input gives a time-sorted output (events at one
    time in reverse order). With ``flip_polarities=True`` (default) ON and OFF are
    swapped as by :class:`~spikeflow.data.transforms.FlipPolarity`, since a brightening
    played backwards is a darkening; a sensor with more than two channels (``p`` a
    channel index) refuses it. Tonic maps ``t -> t_max − t`` instead, which moves the
    span to ``[0, t_max − t_min]``: the same events, shifted by ``t_min`` (frames,
    which count from the first event, are identical).
    """

    def __init__(self, flip_polarities: bool = True) -> None:
        flip = check_flag("TimeReversal", "flip_polarities", flip_polarities)
        super().__init__(None, flip_polarities=flip)
        self.flip_polarities = flip

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        if self.flip_polarities:
            _check_polarities(type(self).__name__, sensor_size)
        out = events[::-1].copy()
        if len(out):
            t = out["t"]
            out["t"] = (t.max() - t) + t.min()
        if self.flip_polarities:
            out["p"] = _flip_polarity(out["p"])
        return out, sensor_size


class RandomTimeReversal(_RandomApply):
    """:class:`TimeReversal` with probability ``p`` (one draw per call: ``u < p``)."""

    def __init__(self, p: float = 0.5, flip_polarities: bool = True, seed: Seed = None) -> None:
        p = check_real("RandomTimeReversal: p", p, 0.0, 1.0)
        flip = check_flag("RandomTimeReversal", "flip_polarities", flip_polarities)
        EventTransform.__init__(self, seed, p=p, flip_polarities=flip)
        self.p, self.flip_polarities = p, flip
        self.inner = TimeReversal(flip)

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        if self.flip_polarities:
            _check_polarities(type(self).__name__, sensor_size)
        return super().apply(events, sensor_size)


class RandomFlipPolarity(EventTransform):
    """Swap ON and OFF (``p -> 1`` where ``p == 0``, else ``0``) with probability ``p``.

    By default one draw per call flips every event or none (what Tonic does; its
    docstring says it flips individual events); ``per_event=True`` flips each event
    independently with probability ``p`` (one draw per event), a polarity noise. A
    sensor with more than two channels (``p`` a channel index) is refused.
    """

    def __init__(self, p: float = 0.5, per_event: bool = False, seed: Seed = None) -> None:
        p = check_real("RandomFlipPolarity: p", p, 0.0, 1.0)
        per_event = check_flag("RandomFlipPolarity", "per_event", per_event)
        super().__init__(seed, p=p, per_event=per_event)
        self.p, self.per_event = p, per_event

    @property
    def random(self) -> bool:
        return 0.0 < self.p < 1.0

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        _check_polarities(type(self).__name__, sensor_size)
        out = events.copy()
        if self.per_event:
            flip = self.rng().random(len(events)) < self.p
            out["p"][flip] = _flip_polarity(events["p"][flip])
        elif self.rng().random() < self.p:
            out["p"] = _flip_polarity(events["p"])
        return out, sensor_size


class Decimation(EventTransform):
    """Keep every ``n``-th event of each pixel: the ``n``-th, ``2n``-th, ... in input order.

    Tonic's rule (a counter per pixel, any polarity); ``per_polarity=True`` counts each
    (pixel, polarity) apart. ``n = 1`` keeps everything. Vectorised: an event's rank
    among its pixel's events comes from one stable sort by pixel.
    """

    def __init__(self, n: int, per_polarity: bool = False) -> None:
        n = check_int("Decimation: n", n, 1)
        per_polarity = check_flag("Decimation", "per_polarity", per_polarity)
        super().__init__(None, n=n, per_polarity=per_polarity)
        self.n, self.per_polarity = n, per_polarity

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        count = len(events)
        if count == 0 or self.n == 1:
            return events.copy(), sensor_size
        x = events["x"].astype(np.int64)
        group = events["y"].astype(np.int64) * (int(x.max()) + 1) + x
        if self.per_polarity:
            group = group * 2 + (events["p"] != 0)
        order = np.argsort(group, kind="stable")
        sorted_group = group[order]
        idx = np.arange(count)
        starts = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
        first = np.maximum.accumulate(np.where(starts, idx, 0))
        keep = np.zeros(count, dtype=bool)
        keep[order[(idx - first + 1) % self.n == 0]] = True
        return events[keep], sensor_size


class DropArea(EventTransform):
    """Drop the events inside one random box (Tonic's ``DropEventByArea``).

    The box is ``w = ⌊W·r⌋`` by ``h = ⌊H·r⌋`` pixels (``r = area_ratio``, a side ratio:
    the box covers ``r²`` of the sensor), at an origin drawn uniformly from every
    position that keeps it on the sensor. ``area_ratio`` is a number in ``[0, 1]`` or a
    ``(low, high)`` range, drawn uniformly per call. ``r = 1`` drops everything; a box
    with ``w`` or ``h`` zero (e.g. on a 1-D sensor, ``H = 1``) drops nothing.

    Draws, in order: ``r`` (a range only, ``rng.uniform``), then ``rng.integers`` for the
    origin's ``x`` and ``y``. Tonic's origin never lets the box touch the sensor's right
    or bottom edge (its upper bound is exclusive one pixel too early), its ratio must be
    below 1, and its range draws from ``[high, 1)`` (``uniform(low and high)``).
    """

    needs_sensor = True

    def __init__(self, area_ratio: float | tuple[float, float] = 0.2, seed: Seed = None) -> None:
        ratio = _real_or_range("DropArea: area_ratio", area_ratio, 0.0, 1.0)
        super().__init__(seed, area_ratio=ratio)
        self.area_ratio = ratio

    @property
    def random(self) -> bool:
        return isinstance(self.area_ratio, tuple) or 0.0 < self.area_ratio < 1.0

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        ratio = self.area_ratio
        if not self.random:  # 0: no box; 1: the whole sensor
            return (events.copy() if ratio == 0.0 else events[:0].copy()), sensor_size
        rng = self.rng()
        if isinstance(ratio, tuple):
            ratio = float(rng.uniform(*ratio))
        return _drop_box(events, sensor_size, ratio, rng), sensor_size


def _drop_box(
    events: np.ndarray, sensor_size: Size, ratio: float, rng: np.random.Generator
) -> np.ndarray:
    """``events`` less those in a ``⌊W·ratio⌋ x ⌊H·ratio⌋`` box at a uniform origin on
    the sensor (two ``rng.integers`` draws, ``x`` then ``y``), see :class:`DropArea`."""
    width, height = sensor_size[0], sensor_size[1]
    w, h = int(width * ratio), int(height * ratio)
    x0 = int(rng.integers(0, width - w + 1))
    y0 = int(rng.integers(0, height - h + 1))
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    inside = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
    return events[~inside]


class EventDrop(EventTransform):
    """EventDrop (Gu et al., IJCAI 2021): per call, one of four strategies, each with
    probability 1/4, at a ratio drawn uniformly from a fixed set (Tonic's sets):

    ====  ====================  ==================================================
    k     strategy              ratio ``r``
    ====  ====================  ==================================================
    0     identity              none
    1     drop by time          ``r ∈ {0.1, ..., 0.9}``: the events of one window
                                ``r·(t_last − t_first)`` long, as
                                :class:`~spikeflow.data.transforms.DropTimeWindow`
    2     drop by area          ``r ∈ {0.05, 0.10, ..., 0.25}``: a ``⌊W·r⌋ x ⌊H·r⌋``
                                box, as :class:`DropArea`
    3     drop events           ``r ∈ {0.1, ..., 0.9}``: ``⌊r·N + ½⌋`` events drawn
                                uniformly without replacement (order kept)
    ====  ====================  ==================================================

    Draws, in order: ``k = rng.integers(0, 4)``; then ``rng.integers(1, 10)`` (``r``
    in tenths, k = 1 or 3) or ``rng.integers(1, 6)`` (``r`` in twentieths, k = 2);
    then the strategy's own: one ``rng.uniform`` for the window's start (k = 1; none
    when the recording is empty or one time), two ``rng.integers`` for the box's
    origin (k = 2), one ``rng.choice`` (k = 3). These are Tonic's draws, in Tonic's
    order, so with the same values fed to both the output is Tonic's, except where
    spikeflow's drops depart from Tonic's (docs/migration.md): Tonic's window lies in
    ``[0, t_last]`` (here the recording's own span ``[t_first, t_last]``; on a recording
    that starts at ``t = 0`` they agree), includes its end (here it excludes it: an event
    exactly there, a measure-zero case, stays), and Tonic's box never touches the
    sensor's right or bottom edge. Tonic's drop-by-time fails on an empty recording;
    here every strategy returns it unchanged. The count ``⌊r·N + ½⌋`` is Tonic's
    (:class:`~spikeflow.data.transforms.DropEvent` rounds half to even, which differs
    when ``r·N`` ends in exactly .5).
    """

    needs_sensor = True

    def __init__(self, seed: Seed = None) -> None:
        super().__init__(seed)

    @property
    def random(self) -> bool:
        return True

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        rng = self.rng()
        strategy = int(rng.integers(0, 4))
        if strategy == 0:
            return events.copy(), sensor_size
        if strategy == 1:
            ratio = int(rng.integers(1, 10)) / 10.0
            return _drop_time_window(events, ratio, rng), sensor_size
        if strategy == 2:
            ratio = int(rng.integers(1, 6)) / 20.0
            return _drop_box(events, sensor_size, ratio, rng), sensor_size
        ratio = int(rng.integers(1, 10)) / 10.0
        return _drop_events(events, math.floor(ratio * len(events) + 0.5), rng), sensor_size
