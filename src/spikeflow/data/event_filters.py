"""Event noise filters: :class:`Denoise` (background activity: drop events with no
recent neighbour) and :class:`RefractoryPeriod` (per pixel, drop events too soon after
the last kept one). Deterministic and vectorised numpy (no per-event Python loop);
re-exported by :mod:`spikeflow.data.transforms`, whose :class:`EventTransform` they are.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from spikeflow._checks import check_flag
from spikeflow.data.transforms import EventTransform, Size
from spikeflow.errors import ConfigurationError

__all__ = ["Denoise", "RefractoryPeriod"]


class Denoise(EventTransform):
    """Drop events with no recent neighbour: a background-activity filter.

    Event ``i`` is kept when some earlier event ``j`` (``j < i`` in the time-sorted
    stream, any polarity) at one of the neighbouring pixels (not the event's own pixel)
    has ``t_i − t_j < filter_time`` µs.

    Args:
        filter_time: the window, µs, a finite number ``> 0``.
        neighbours: ``8`` (default: the 8 surrounding pixels) or ``4`` (left, right,
            above, below: Tonic's).
        tonic_start: a neighbour with no earlier event counts as having fired at
            ``t = 0`` (Tonic's pixel memory, which starts at ``filter_time``), if it lies
            in the grid ``[0, max x] × [0, max y]`` of the recording's events; so every
            event before ``filter_time`` with such a neighbour is kept. Default
            ``False``: such a neighbour never fired, and the first event of a recording
            is always dropped.

    ``Denoise(filter_time, neighbours=4, tonic_start=True)`` keeps exactly the events of
    Tonic's ``Denoise(filter_time)`` on a time-sorted stream (checked on every N-MNIST
    recording of ``../shared/data/nmnist-small``).
    """

    needs_sorted = True

    def __init__(self, filter_time: int, neighbours: int = 8, tonic_start: bool = False) -> None:
        if (
            isinstance(filter_time, bool)
            or not isinstance(filter_time, numbers.Real)
            or not math.isfinite(filter_time)
            or not filter_time > 0
        ):
            raise ConfigurationError(
                f"filter_time must be a finite number > 0 (microseconds); got {filter_time!r}"
            )
        if isinstance(neighbours, bool) or neighbours not in (4, 8):
            raise ConfigurationError(
                f"Denoise: neighbours must be 4 (Tonic's) or 8; got {neighbours!r}"
            )
        tonic_start = check_flag("Denoise", "tonic_start", tonic_start)
        if neighbours == 8 and not tonic_start:  # the cache key of the original transform
            super().__init__(None, filter_time=filter_time)
        else:
            super().__init__(
                None, filter_time=filter_time, neighbours=neighbours, tonic_start=tonic_start
            )
        self.filter_time = self._params["filter_time"]
        self.neighbours = int(neighbours)
        self.tonic_start = tonic_start

    def _offsets(self) -> list[tuple[int, int]]:
        if self.neighbours == 4:
            return [(0, -1), (0, 1), (-1, 0), (1, 0)]
        return [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dx or dy]

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        n = len(events)
        if n == 0:
            return events.copy(), sensor_size
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        t = events["t"].astype(np.int64)
        stride = (int(x.max()) if sensor_size is None else sensor_size[0]) + 2
        pix = (y + 1) * stride + (x + 1)
        order = np.lexsort((np.arange(n), pix))
        key = pix[order] * n + order
        idx = np.arange(n, dtype=np.int64)
        keep = np.zeros(n, dtype=bool)
        early = t < self.filter_time  # a neighbour that "fired at t = 0" is recent
        for dy, dx in self._offsets():
            q = pix + dy * stride + dx
            pos = np.searchsorted(key, q * n + idx, side="left") - 1
            ok = pos >= 0
            pos = np.maximum(pos, 0)
            ok &= key[pos] // n == q
            j = order[pos]
            keep |= ok & (t - t[j] < self.filter_time)
            if self.tonic_start:
                inside = (x + dx >= 0) & (x + dx <= x.max()) & (y + dy >= 0) & (y + dy <= y.max())
                keep |= ~ok & inside & early
        return events[keep], sensor_size


def _period(name: str, value: object) -> float:
    """A refractory period, a finite number ``>= 0`` µs, else a ConfigurationError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(
            f"{name} must be a finite number >= 0 (microseconds); got {value!r}"
        )
    return float(value)


class RefractoryPeriod(EventTransform):
    """Per pixel, drop events less than ``refractory_period`` µs after the last *kept* one.

    Scanning each pixel's events in time order: the first is kept; an event is kept when
    ``t − t_kept ≥ refractory_period``, with ``t_kept`` the time of the pixel's last kept
    event. Dropped events do not restart the period (as in a sensor pixel, which emits
    nothing while refractory). Tonic compares with the previous event instead, kept or
    not. ``per_polarity=True`` runs the rule per (pixel, polarity). The period may be
    fractional (a finite number ``>= 0``); timestamps being whole µs, the rule then acts
    as a period of ``⌈refractory_period⌉`` (0.5 drops only events at the same ``t``).
    A ``(low, high)`` range draws the period at each call, ``int(low + (high − low)·u)``
    with ``u`` uniform in ``[0, 1)`` (Tonic's ``RefractoryPeriod(delta=(low, high))``
    draw; ``seed`` as for the other random transforms).

    Vectorised over pixels: each pixel's kept events form a chain ``i -> next(i)``, the
    pixel's first event at or after ``t_i + ⌈refractory_period⌉``. The first
    :attr:`plain_rounds` links of every chain are followed one numpy step per link; the
    chains still running after that (busy pixels) are completed by pointer doubling, in
    about ``2 log2(length)`` numpy steps, so a pixel with 200,000 kept events costs
    milliseconds, not one Python iteration per event.
    """

    needs_sorted = True
    #: Links followed one by one before the remaining chains switch to pointer doubling.
    plain_rounds = 32

    def __init__(
        self,
        refractory_period: float | tuple[float, float],
        per_polarity: bool = False,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.per_polarity = check_flag("RefractoryPeriod", "per_polarity", per_polarity)
        self.range: tuple[float, float] | None = None
        if isinstance(refractory_period, (tuple, list)):
            if len(refractory_period) != 2:
                raise ConfigurationError(
                    "refractory_period must be a period or a (low, high) range; got "
                    f"{refractory_period!r}"
                )
            low, high = (
                _period(f"refractory_period[{i}]", v) for i, v in enumerate(refractory_period)
            )
            if low > high:
                raise ConfigurationError(
                    f"refractory_period range must have low <= high; got {refractory_period!r}"
                )
            self.range, self.period = (low, high), 0
            super().__init__(seed, refractory_period=[low, high], per_polarity=self.per_polarity)
            return
        # Timestamps are whole µs: t - t_kept >= p holds exactly when t - t_kept >= ⌈p⌉.
        # The cache key holds that period, a plain int: 1.5 and 2 give the same events,
        # and a cache written when 1.5 acted as 1 (the period was cut, not rounded up) is
        # not reused.
        self.period = math.ceil(_period("refractory_period", refractory_period))
        super().__init__(None, refractory_period=self.period, per_polarity=self.per_polarity)

    @property
    def random(self) -> bool:
        return self.range is not None and int(self.range[0]) != int(self.range[1])

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        period = self.period
        if self.range is not None:  # Tonic's draw: int(low + (high - low) * u)
            low, high = self.range
            period = int((high - low) * float(self.rng().random()) + low)
        return self._filter(events, period), sensor_size

    def _filter(self, events: np.ndarray, period: int) -> np.ndarray:
        """``events`` less those within ``period`` µs of their pixel's last kept one."""
        n = len(events)
        if n == 0 or period == 0:
            return events.copy()
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        group = y * (int(x.max()) + 1) + x
        if self.per_polarity:
            group = group * 2 + (events["p"] != 0)
        t = events["t"].astype(np.int64)
        t = t - t.min()
        big = int(t.max()) + period + 1
        if (int(group.max()) + 1) * big >= 2**62:
            raise ConfigurationError(
                "RefractoryPeriod: recording too long for the int64 keys "
                f"({int(group.max()) + 1} pixels x {big} us)"
            )
        order = np.lexsort((np.arange(n), group))
        sgroup = group[order]
        skey = sgroup * big + t[order]  # sorted: by pixel, then time
        starts = np.r_[True, sgroup[1:] != sgroup[:-1]]
        group_end = np.r_[np.flatnonzero(starts)[1:], n][np.cumsum(starts) - 1]

        def successor(i: np.ndarray) -> np.ndarray:
            """The next kept event after kept events ``i``, or ``n`` (none)."""
            nxt = np.searchsorted(skey, skey[i] + period, side="left")
            return np.where(nxt < group_end[i], nxt, n)

        kept = np.zeros(n, dtype=bool)
        cur = np.flatnonzero(starts)
        for _ in range(self.plain_rounds):  # short chains end here (most pixels)
            if not cur.size:
                break
            kept[cur] = True
            cur = successor(cur)
            cur = cur[cur < n]
        if cur.size:
            kept[self._long_chains(cur, group_end, successor, n)] = True
        keep = np.zeros(n, dtype=bool)
        keep[order[kept]] = True
        return events[keep]

    @staticmethod
    def _long_chains(cur: np.ndarray, group_end: np.ndarray, successor, n: int) -> np.ndarray:
        """Every event on the chains from ``cur`` on (pointer doubling over the rest of
        those pixels' events)."""
        # The events from each chain's current event to its pixel's end, in local indices.
        lengths = group_end[cur] - cur
        first = np.repeat(cur - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        sub = first + np.arange(int(lengths.sum()))
        m = sub.size
        nxt = successor(sub)
        step = np.empty(m + 1, dtype=np.int64)  # one link, local; m = no successor
        step[:m] = np.where(nxt < n, np.searchsorted(sub, nxt), m)
        step[m] = m
        heads = np.r_[0, np.cumsum(lengths)[:-1]]
        jumps = [step]  # jumps[k]: 2**k links
        while (jumps[-1][heads] != m).any():
            jumps.append(jumps[-1][jumps[-1]])
        on_chain = heads
        for jump in reversed(jumps[:-1]):  # adds the nodes 2**k links further, k = L-1..0
            on_chain = np.concatenate([on_chain, jump[on_chain]])
            on_chain = on_chain[on_chain != m]
        return sub[on_chain]
