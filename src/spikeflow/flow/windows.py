"""Event windows for optical flow: the input partitions of Hagenaars, Paredes-Vallés and
de Croon (NeurIPS 2021).

A recording is cut into consecutive windows (a fixed number of events, the paper's
choice, or a fixed duration). Each window is fed to the network as two count images
(ON and OFF events per pixel, no timing inside the window: the network's state carries
time), and its events are kept as a list for the contrast-maximisation loss, with their
timestamps normalised to ``[0, 1]`` inside the window.

:class:`EventWindows` holds ``T`` windows of ``B`` recordings, padded to the same number
of events ``N`` per window (a ``valid`` mask marks the real ones): every tensor is
``[T, B, N]``, time-major like the rest of spikeflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["EventWindows", "stack_recordings", "windows_from_events"]

_FIELDS = ("x", "y", "t", "p", "valid")


@dataclass(frozen=True)
class EventWindows:
    """``T`` windows of events of ``B`` recordings on a ``height x width`` sensor.

    Attributes:
        x, y: int64 ``[T, B, N]`` pixel coordinates.
        t: floating ``[T, B, N]`` time inside the window, in ``[0, 1]``.
        p: bool ``[T, B, N]``, True for ON (positive) events.
        valid: bool ``[T, B, N]``, False for the padding after a window's last event.
        height, width: the sensor (pixels).
    """

    x: Tensor
    y: Tensor
    t: Tensor
    p: Tensor
    valid: Tensor
    height: int
    width: int

    def __post_init__(self) -> None:
        check_int("height", self.height, 1)
        check_int("width", self.width, 1)
        shape = self.x.shape
        for name in _FIELDS:
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise DTypeError(
                    f"EventWindows.{name} must be a tensor, got {type(value).__name__}"
                )
            if value.dim() != 3 or value.shape != shape:
                raise ShapeError(
                    f"EventWindows.{name} has shape {tuple(value.shape)}; every field must be "
                    f"[T, B, N] and equal to x's {tuple(shape)}"
                )
        if self.x.dtype != torch.int64 or self.y.dtype != torch.int64:
            raise DTypeError(
                f"EventWindows.x and y must be int64, got {self.x.dtype}, {self.y.dtype}"
            )
        if not self.t.is_floating_point():
            raise DTypeError(f"EventWindows.t must be floating-point, got {self.t.dtype}")
        if self.p.dtype != torch.bool or self.valid.dtype != torch.bool:
            raise DTypeError(
                f"EventWindows.p and valid must be bool, got {self.p.dtype}, {self.valid.dtype}"
            )
        v = self.valid
        for name, coord, size in (("x", self.x, self.width), ("y", self.y, self.height)):
            bad = v & ((coord < 0) | (coord >= size))
            if bad.any():
                k, b, n = (int(i) for i in bad.nonzero()[0])
                raise ConfigurationError(
                    f"EventWindows: event {n} of window {k}, sample {b} has {name} = "
                    f"{int(coord[k, b, n])}, outside the sensor (0..{size - 1})"
                )
        bad_t = v & ~((self.t >= 0) & (self.t <= 1))
        if bad_t.any():
            k, b, n = (int(i) for i in bad_t.nonzero()[0])
            raise ConfigurationError(
                f"EventWindows: event {n} of window {k}, sample {b} has t = "
                f"{float(self.t[k, b, n])}; "
                "times inside a window are normalised to [0, 1]"
            )

    @property
    def num_windows(self) -> int:
        """``T``."""
        return self.x.shape[0]

    @property
    def batch_size(self) -> int:
        """``B``."""
        return self.x.shape[1]

    def counts(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The network input ``[T, B, 2, H, W]``: ON events per pixel (channel 0) and OFF
        events per pixel (channel 1) of each window."""
        T, B, _ = self.x.shape
        channel = (~self.p).long()
        index = (
            torch.arange(T * B, device=self.x.device).view(T, B, 1) * 2 + channel
        ) * self.height + self.y
        index = index * self.width + self.x
        out = torch.zeros(T * B * 2 * self.height * self.width, dtype=dtype, device=self.x.device)
        out.index_add_(
            0, index[self.valid], torch.ones(int(self.valid.sum()), dtype=dtype, device=out.device)
        )
        return out.view(T, B, 2, self.height, self.width)

    def mask(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``[T, B, 1, H, W]``: 1 where a pixel has at least one event in the window."""
        return (self.counts(dtype).sum(2, keepdim=True) > 0).to(dtype)

    def window_slice(self, start: int, stop: int) -> EventWindows:
        """Windows ``start .. stop - 1`` (a chunk of the stream)."""
        if not 0 <= start < stop <= self.num_windows:
            raise ConfigurationError(
                f"window_slice({start}, {stop}) is outside the {self.num_windows} windows"
            )
        parts = {name: getattr(self, name)[start:stop] for name in _FIELDS}
        return EventWindows(**parts, height=self.height, width=self.width)

    def to(self, device: torch.device | str) -> EventWindows:
        """The same windows on ``device``."""
        parts = {name: getattr(self, name).to(device) for name in _FIELDS}
        return EventWindows(**parts, height=self.height, width=self.width)


def _window_bounds(
    t: np.ndarray, num_events: int | None, duration: int | None
) -> list[tuple[int, int, float, float]]:
    """``(first, stop, t_start, t_span)`` of each window: event index range and the times
    that map to 0 and 1."""
    bounds = []
    if num_events is not None:
        for first in range(0, len(t) - num_events + 1, num_events):
            stop = first + num_events
            t0, t1 = float(t[first]), float(t[stop - 1])
            bounds.append((first, stop, t0, t1 - t0))
        return bounds
    assert duration is not None
    starts = np.arange(int(t[0]), int(t[-1]) + 1, duration, dtype=np.int64)
    firsts = np.searchsorted(t, starts, side="left")
    stops = np.searchsorted(t, starts + duration, side="left")
    return [
        (int(a), int(b), float(s), float(duration))
        for a, b, s in zip(firsts, stops, starts, strict=True)
    ]


def windows_from_events(
    events: np.ndarray,
    sensor_size: Sequence[int],
    *,
    num_events: int | None = None,
    duration: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> EventWindows:
    """Cut one recording into consecutive windows (``B = 1``).

    Args:
        events: a structured array with fields ``t`` (µs, non-decreasing), ``x``, ``y``,
            ``p`` (``p > 0`` is ON), as every spikeflow reader returns.
        sensor_size: ``(width, height)`` or ``(width, height, polarities)``, as
            :class:`~spikeflow.data.EventRecording` gives it.
        num_events: events per window (the paper: 1,000 at 128x128). A tail shorter than
            one window is dropped. Times map ``[first, last]`` event to ``[0, 1]``.
        duration: or a window length in µs; times map ``[start, start + duration)`` to
            ``[0, 1)``; windows without events are kept (empty).
        dtype: dtype of ``t``.

    Raises:
        ConfigurationError: neither or both of ``num_events`` / ``duration``, fewer events
            than one window, events outside the sensor, times that go backwards.
        ShapeError: events that are not a structured array with ``t, x, y, p``.
    """
    if (num_events is None) == (duration is None):
        raise ConfigurationError("windows_from_events: give exactly one of num_events or duration")
    names = getattr(getattr(events, "dtype", None), "names", None) or ()
    if not isinstance(events, np.ndarray) or not {"t", "x", "y", "p"} <= set(names):
        raise ShapeError(
            "windows_from_events: events must be a structured array with fields t, x, y, p"
        )
    if len(sensor_size) not in (2, 3):
        raise ConfigurationError(
            f"sensor_size must be (width, height[, polarities]), got {tuple(sensor_size)}"
        )
    width, height = check_int("width", sensor_size[0], 1), check_int("height", sensor_size[1], 1)
    if num_events is not None:
        check_int("num_events", num_events, 1)
        if len(events) < num_events:
            raise ConfigurationError(
                f"windows_from_events: {len(events)} events are fewer than one window of "
                f"num_events={num_events}"
            )
    else:
        check_int("duration", duration, 1)
        if len(events) == 0:
            raise ConfigurationError("windows_from_events: the recording has no events")
    t = events["t"].astype(np.int64)
    if (np.diff(t) < 0).any():
        i = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
        raise ConfigurationError(
            f"windows_from_events: event {i} has time {t[i]} before event {i - 1}'s {t[i - 1]}"
        )
    for name, size in (("x", width), ("y", height)):
        coord = events[name].astype(np.int64)
        if ((coord < 0) | (coord >= size)).any():
            i = int(np.flatnonzero((coord < 0) | (coord >= size))[0])
            raise ConfigurationError(
                f"windows_from_events: event {i} has {name} = {coord[i]}, outside the sensor of "
                f"sensor_size {tuple(sensor_size)} (0..{size - 1})"
            )
    bounds = _window_bounds(t, num_events, duration)
    n_max = max(stop - first for first, stop, _, _ in bounds)
    T = len(bounds)
    x = np.zeros((T, 1, n_max), np.int64)
    y = np.zeros((T, 1, n_max), np.int64)
    tt = np.zeros((T, 1, n_max), np.float64)
    p = np.zeros((T, 1, n_max), bool)
    valid = np.zeros((T, 1, n_max), bool)
    for k, (first, stop, t0, span) in enumerate(bounds):
        n = stop - first
        part = events[first:stop]
        x[k, 0, :n] = part["x"]
        y[k, 0, :n] = part["y"]
        tt[k, 0, :n] = (t[first:stop] - t0) / span if span > 0 else 0.0
        p[k, 0, :n] = part["p"] > 0
        valid[k, 0, :n] = True
    return EventWindows(
        torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(tt).to(dtype),
        torch.from_numpy(p), torch.from_numpy(valid), height=height, width=width,
    )  # fmt: skip


def stack_recordings(windows: Sequence[EventWindows]) -> EventWindows:
    """Stack the windows of several recordings into one batch (dim 1), padding the
    event lists to the longest window; every entry must have the same ``T`` and sensor."""
    if not windows:
        raise ConfigurationError("stack_recordings: no windows to stack")
    first = windows[0]
    for i, w in enumerate(windows):
        if (w.num_windows, w.height, w.width) != (first.num_windows, first.height, first.width):
            raise ShapeError(
                f"stack_recordings: entry {i} has {w.num_windows} windows of {w.height}x{w.width}, "
                f"entry 0 has {first.num_windows} of {first.height}x{first.width}"
            )
    n_max = max(w.x.shape[2] for w in windows)

    def pad(name: str) -> Tensor:
        parts = [getattr(w, name) for w in windows]
        return torch.cat(
            [torch.nn.functional.pad(v, (0, n_max - v.shape[2])) for v in parts], dim=1
        )

    return EventWindows(**{n: pad(n) for n in _FIELDS}, height=first.height, width=first.width)
