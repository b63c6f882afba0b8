"""Spatio-temporal event downsampling by integrate-and-fire pixels (Tonic's
``EventDownsampling``).

The method of Ghosh et al. (2023), *Insect-inspired spatio-temporal downsampling of
event-based input* (https://doi.org/10.1145/3589737.3605994), as Tonic 1.7 defines it in
``tonic.functional.event_downsampling``; the definition is written out in
:class:`EventDownsampling`'s docstring, and every difference from Tonic is listed there.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from spikeflow._checks import check_flag, check_int
from spikeflow.data.frame_transforms import int_pair
from spikeflow.data.transforms import EventTransform, Size
from spikeflow.errors import ConfigurationError

__all__ = ["EventDownsampling"]

METHODS = ("integrator", "differentiator")


class EventDownsampling(EventTransform):
    """Downsample space and time: integrate-and-fire pixels on a smaller sensor.

    **Space.** An event at ``(x, y)`` on the ``W x H`` sensor goes to the target pixel
    ``(⌊x·w/W⌋, ⌊y·h/H⌋)`` of ``target_size = (w, h)`` (in double precision, as Tonic
    and :class:`~spikeflow.data.transforms.Downsample`); ``p != 0`` is ON, ``p == 0``
    OFF. The output sensor is ``(w, h, 2)``.

    **Time.** Windows of ``duration`` µs start at the first event: window ``k`` holds
    ``t_first + k·duration <= t < t_first + (k+1)·duration``.

    **Integrator** (``downsampling_method="integrator"``). Every target pixel has an
    integer membrane ``m``, 0 at the start. At each window, ``m`` grows by the pixel's
    ON events minus its OFF events in that window (ON/OFF differencing cancels camera
    jitter); then ``m >= noise_threshold`` emits an ON event and ``m <= −noise_threshold``
    an OFF event, at ``t_first + k·duration``, and resets ``m`` to 0. Events are
    ordered by time, ON before OFF, then by row ``y`` and column ``x``.

    **Differentiator** (``"differentiator"``). The integrator runs on windows of
    ``duration / differentiator_time_bins`` µs (the boundaries are exact, also when the
    division leaves a fraction), and its events are counted per pixel and polarity in
    each ``duration`` window ``j``. Where the count rises from window ``j`` to window
    ``j + 1``, one event of that polarity is emitted, stamped ``t_first + j·duration``
    (Tonic's stamp); window 0's own count emits nothing. Events are ordered by time, then
    ``y``, ``x``, polarity.

    Differences from Tonic (the same events otherwise, checked by the tests on the real
    N-MNIST files):

    - ``duration`` is in µs, like every time in spikeflow (Tonic's ``dt`` is in ms:
      ``dt=0.5`` is ``duration=500``).
    - Times keep the recording's clock (``t_first + ...``); Tonic's start at 0 (put
      :class:`~spikeflow.data.transforms.TimeAlignment` first to get them).
    - ``include_incomplete=True`` (default) integrates every event: the windows run up
      to the one holding the last event. ``False`` is Tonic's rule: ``⌊(t_last −
      t_first)/window⌋`` windows (at least 1), so the events in the last, partial
      window, the final event included, are ignored.
    - ``noise_threshold`` must be ``>= 1`` (default 1). At Tonic's documented default
      of 0 every pixel at rest (``m = 0``) passes both tests, ``m >= 0`` and
      ``−m >= 0``, so each one emits an ON and an OFF event in every window.
    - A recording whose integrator emits nothing gives no events (Tonic raises), and
      ``"naive"`` (listed in Tonic's docstring, not implemented there) is
      :class:`~spikeflow.data.transforms.Downsample`.

    The integrator is vectorised over pixels: the (window, pixel) pairs with a nonzero
    ON−OFF balance are the only steps that can fire (``|m| < noise_threshold`` holds
    after every window), and the loop runs over the rank of a step among its pixel's
    steps, so it takes as many numpy steps as the busiest pixel has active windows.
    """

    needs_sensor = True
    needs_sorted = True

    def __init__(
        self,
        target_size: int | Sequence[int],
        duration: int,
        downsampling_method: str = "integrator",
        noise_threshold: int = 1,
        differentiator_time_bins: int = 2,
        include_incomplete: bool = True,
    ) -> None:
        size = int_pair(target_size, "EventDownsampling: target_size", "(width, height)")
        duration = check_int("EventDownsampling: duration (microseconds)", duration, 1)
        if downsampling_method not in METHODS:
            hint = " (the naive method is Downsample)" if downsampling_method == "naive" else ""
            raise ConfigurationError(
                f"EventDownsampling: downsampling_method must be 'integrator' or "
                f"'differentiator'{hint}; got {downsampling_method!r}"
            )
        if (
            isinstance(noise_threshold, numbers.Integral)
            and not isinstance(noise_threshold, (bool, np.bool_))
            and noise_threshold == 0
        ):
            raise ConfigurationError(
                "EventDownsampling: noise_threshold must be an integer >= 1, got 0: every "
                "pixel at rest would emit an ON and an OFF event in every window"
            )
        threshold = check_int("EventDownsampling: noise_threshold", noise_threshold, 1)
        bins = check_int("EventDownsampling: differentiator_time_bins", differentiator_time_bins, 1)
        incomplete = check_flag("EventDownsampling", "include_incomplete", include_incomplete)
        super().__init__(
            None, target_size=size, duration=duration, downsampling_method=downsampling_method,
            noise_threshold=threshold, differentiator_time_bins=bins,
            include_incomplete=incomplete,
        )  # fmt: skip
        self.target_size, self.duration, self.method = size, duration, downsampling_method
        self.noise_threshold, self.bins, self.include_incomplete = threshold, bins, incomplete

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        width, height, channels = sensor_size
        tw, th = self.target_size
        if tw > width or th > height:
            raise ConfigurationError(
                f"EventDownsampling: target_size {tw}x{th} is larger than the "
                f"{width}x{height} sensor"
            )
        if channels > 2:
            raise ConfigurationError(
                f"EventDownsampling: the sensor has P = {channels} channels; the method "
                "needs ON/OFF polarities (P <= 2)"
            )
        out_size = (tw, th, 2)
        if len(events) == 0:
            return events.copy(), out_size
        bins = self.bins if self.method == "differentiator" else 1
        t = events["t"].astype(np.int64)
        t0 = int(t[0])
        rel = t - t0
        span = int(rel[-1])
        if span >= 2**62 // bins:
            raise ConfigurationError(
                f"EventDownsampling: recording too long ({span} us) for the int64 windows"
            )
        window = rel * bins // self.duration  # fine windows of duration/bins, exactly
        keep = np.ones(len(events), dtype=bool)
        if not self.include_incomplete:
            keep = window < max(span * bins // self.duration, 1)
        x = np.floor(events["x"].astype(np.float64) * (tw / width)).astype(np.int64)
        y = np.floor(events["y"].astype(np.float64) * (th / height)).astype(np.int64)
        # Never off the target (x·w/W < w for x < W, but keep rounding from ever doing it).
        pixel = np.minimum(y, th - 1) * tw + np.minimum(x, tw - 1)
        sign = np.where(events["p"] != 0, 1, -1).astype(np.int64)
        fw, fq, fire = _integrate(window[keep], pixel[keep], sign[keep], self.noise_threshold)
        if self.method == "integrator":
            order = np.lexsort((fq, fire < 0, fw))  # window, ON first, row y, column x
            return _events(events.dtype, t0 + fw[order] * self.duration,
                           fq[order], (fire[order] > 0), tw), out_size  # fmt: skip
        j, cell = _rises(fw // bins, fq * 2 + (fire > 0))
        order = np.lexsort((cell, j))  # time, then y, x, polarity (cell = (y·w + x)·2 + p)
        j, cell = j[order], cell[order]
        return _events(events.dtype, t0 + j * self.duration, cell // 2, cell % 2, tw), out_size


def _events(
    dtype: np.dtype, t: np.ndarray, pixel: np.ndarray, on: np.ndarray, width: int
) -> np.ndarray:
    out = np.zeros(len(t), dtype=dtype)
    out["t"] = t
    out["x"] = pixel % width
    out["y"] = pixel // width
    out["p"] = on
    return out


def _integrate(
    window: np.ndarray, pixel: np.ndarray, sign: np.ndarray, threshold: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The integrator's output events: ``(window, pixel, +1 ON / −1 OFF)`` arrays, in no
    particular order, from the input events' windows, target pixels and signs."""
    empty = np.zeros(0, np.int64)
    if window.size == 0:
        return empty, empty, empty.astype(np.int8)
    # One step per (pixel, window) with events: its ON - OFF balance, by pixel then window.
    order = np.lexsort((window, pixel))
    w, q = window[order], pixel[order]
    starts = np.flatnonzero(np.r_[True, (q[1:] != q[:-1]) | (w[1:] != w[:-1])])
    balance = np.add.reduceat(sign[order], starts)
    active = balance != 0  # a zero balance leaves |m| < threshold: it cannot fire
    w, q, balance = w[starts][active], q[starts][active], balance[active]
    steps = w.size
    if steps == 0:
        return empty, empty, empty.astype(np.int8)
    first = np.r_[True, q[1:] != q[:-1]]
    group = np.cumsum(first) - 1  # compact pixel index
    idx = np.arange(steps)
    rank = idx - np.maximum.accumulate(np.where(first, idx, 0))
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(rank))]
    membrane = np.zeros(int(group[-1]) + 1, dtype=np.int64)
    fire = np.zeros(steps, dtype=np.int8)
    for r in range(len(bounds) - 1):  # every pixel's r-th active window at once
        sel = by_rank[bounds[r] : bounds[r + 1]]
        g = group[sel]
        v = membrane[g] + balance[sel]
        on, off = v >= threshold, v <= -threshold
        fire[sel] = on.astype(np.int8) - off.astype(np.int8)
        membrane[g] = np.where(on | off, 0, v)
    hit = fire != 0
    return w[hit], q[hit], fire[hit]


def _rises(coarse: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(j, cell)`` wherever a cell's event count rises from coarse window ``j`` to
    ``j + 1`` (a count missing from a window is 0)."""
    if coarse.size == 0:
        return coarse, cell
    order = np.lexsort((coarse, cell))
    j, c = coarse[order], cell[order]
    starts = np.flatnonzero(np.r_[True, (c[1:] != c[:-1]) | (j[1:] != j[:-1])])
    count = np.diff(np.r_[starts, j.size])
    j, c = j[starts], c[starts]
    follows = np.r_[False, (c[1:] == c[:-1]) & (j[1:] == j[:-1] + 1)]
    before = np.where(follows, np.r_[0, count[:-1]], 0)
    rise = (j >= 1) & (count > before)
    return j[rise] - 1, c[rise]
