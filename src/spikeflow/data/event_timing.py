"""The event transforms of time and of dropping events: :class:`TimeJitter`,
:class:`TimeSkew`, :class:`DropEvent` and :class:`DropTimeWindow` (Tonic's
``DropEventByTime``). Re-exported by :mod:`spikeflow.data.transforms`, where the
module docstring says how seeds and sensor sizes work."""

from __future__ import annotations

from typing import Any

import numpy as np

from spikeflow._checks import check_flag
from spikeflow.data._transform_args import probability_range
from spikeflow.data.transforms import EventTransform, Size
from spikeflow.errors import ConfigurationError

__all__ = ["DropEvent", "DropTimeWindow", "TimeJitter", "TimeSkew"]


class TimeJitter(EventTransform):
    """Add Gaussian noise of ``std`` µs to every timestamp (rounded), then re-sort stably.

    ``clip_negative=True`` clamps jittered times at 0 (Tonic drops those events).
    ``sort_timestamps=False`` keeps the input order (Tonic's default), so the times may
    go backwards: the transforms that need sorted events then refuse the recording
    (put :class:`~spikeflow.data.transforms.SortEvents` before them).
    """

    def __init__(
        self, std: float, clip_negative: bool = False,
        seed: int | np.random.Generator | None = None, sort_timestamps: bool = True,
    ) -> None:  # fmt: skip
        if not std >= 0:
            raise ConfigurationError(f"std must be >= 0 (microseconds); got {std!r}")
        clip_negative = check_flag("TimeJitter", "clip_negative", clip_negative)
        sort_timestamps = check_flag("TimeJitter", "sort_timestamps", sort_timestamps)
        params: dict[str, Any] = {"std": std, "clip_negative": clip_negative}
        if not sort_timestamps:  # the cache key of the sorted default is unchanged
            params["sort_timestamps"] = False
        super().__init__(seed, **params)
        self.std, self.clip_negative = float(std), clip_negative
        self.sort_timestamps = sort_timestamps

    @property
    def random(self) -> bool:
        return self.std > 0

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        out = events.copy()
        noise = np.rint(self.rng().normal(0.0, self.std, len(events))).astype(np.int64)
        out["t"] = events["t"] + noise
        if self.clip_negative:
            out["t"] = np.maximum(out["t"], 0)
        if not self.sort_timestamps:
            return out, sensor_size
        return out[np.argsort(out["t"], kind="stable")], sensor_size


class TimeSkew(EventTransform):
    """``t -> round(coefficient·t + offset)``.

    ``coefficient`` (and ``offset``) may be a ``(low, high)`` range: each call then draws
    it uniformly, which makes the transform random.
    """

    def __init__(
        self, coefficient: float | tuple[float, float],
        offset: float | tuple[float, float] = 0.0,
        seed: int | np.random.Generator | None = None,
    ) -> None:  # fmt: skip
        for name, v in (("coefficient", coefficient), ("offset", offset)):
            if isinstance(v, (tuple, list)) and (len(v) != 2 or v[0] > v[1]):
                raise ConfigurationError(f"{name} range must be (low, high); got {v!r}")
        lo = coefficient[0] if isinstance(coefficient, (tuple, list)) else coefficient
        if not lo > 0:
            raise ConfigurationError(f"coefficient must be > 0; got {coefficient!r}")
        super().__init__(seed, coefficient=coefficient, offset=offset)
        self.coefficient, self.offset = coefficient, offset

    @property
    def random(self) -> bool:
        return isinstance(self.coefficient, (tuple, list)) or isinstance(self.offset, (tuple, list))

    def _draw(self, v: float | tuple[float, float]) -> float:
        return float(self.rng().uniform(*v)) if isinstance(v, (tuple, list)) else float(v)

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        out = events.copy()
        a, b = self._draw(self.coefficient), self._draw(self.offset)
        out["t"] = np.rint(events["t"] * a + b).astype(np.int64)
        return out, sensor_size


class DropEvent(EventTransform):
    """Drop exactly ``round(p·N)`` events chosen uniformly; order is kept.

    ``fraction`` is ``p`` in ``[0, 1]``, or a ``(low, high)`` range (Tonic's
    ``DropEvent(p=(low, high))``): each call then draws ``p = low + (high − low)·u``,
    ``u`` uniform in ``[0, 1)``, as Tonic does. (Tonic counts ``⌊p·N + ½⌋``; the two
    differ only where ``p·N`` ends in exactly ``.5``.)
    """

    def __init__(
        self,
        fraction: float | tuple[float, float],
        seed: int | np.random.Generator | None = None,
    ) -> None:
        fraction = probability_range("DropEvent: fraction", fraction)
        super().__init__(seed, fraction=list(fraction) if isinstance(fraction, tuple) else fraction)
        self.fraction = fraction

    @property
    def random(self) -> bool:
        if isinstance(self.fraction, tuple):
            return self.fraction[1] > 0.0 and self.fraction[0] < 1.0
        return 0.0 < self.fraction < 1.0

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        rng = self.rng()
        fraction = self.fraction
        if isinstance(fraction, tuple):
            fraction = (fraction[1] - fraction[0]) * float(rng.random()) + fraction[0]
        return _drop_events(events, round(fraction * len(events)), rng), sensor_size


class DropTimeWindow(EventTransform):
    """Drop the events of one random time window of the recording (Tonic's
    ``DropEventByTime``).

    The window lasts ``duration_ratio·(t_last − t_first)`` µs and starts uniformly in
    ``[t_first, t_last − length]``; events with ``start ≤ t < start + length`` go.
    SpikingJelly's "random temporal delete", which keeps random whole frames of a
    framed sample, is :class:`~spikeflow.data.frame_transforms.RandomTemporalDelete`.
    """

    def __init__(
        self, duration_ratio: float, seed: int | np.random.Generator | None = None
    ) -> None:
        if not 0.0 <= duration_ratio <= 1.0:
            raise ConfigurationError(f"duration_ratio must be in [0, 1]; got {duration_ratio!r}")
        super().__init__(seed, duration_ratio=duration_ratio)
        self.ratio = duration_ratio

    @property
    def random(self) -> bool:
        return self.ratio > 0

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        return _drop_time_window(events, self.ratio, self.rng()), sensor_size


def _drop_events(events: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``events`` less ``count`` of them drawn uniformly without replacement
    (``rng.choice``); the order is kept."""
    n = len(events)
    keep = np.ones(n, dtype=bool)
    keep[rng.choice(n, size=count, replace=False)] = False
    return events[keep]


def _drop_time_window(events: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """``events`` less those of one window of ``ratio`` times their span, see
    :class:`DropTimeWindow` (one ``rng.uniform`` draw, none for an empty input or a
    window as long as the span)."""
    if len(events) == 0:
        return events.copy()
    t = events["t"]
    t0, t1 = int(t.min()), int(t.max())
    length = ratio * (t1 - t0)
    start = rng.uniform(t0, t1 - length) if t1 - length > t0 else float(t0)
    return events[(t < start) | (t >= start + length)]
