"""Plots of event recordings: ON/OFF images over time bins and scatter projections
(the views of Tonic's ``plot_event_grid``).

The binning is :mod:`spikeflow.data.frames`' (``split_by="time"``: ``T`` equal time
spans, the last one ending at the last event; ``"number"``: equal event counts), so a
grid shows exactly the frames a spikeflow dataset would give. With ``P == 2`` channel
0 holds the OFF events (``p == 0``) and channel 1 the ON events (``p != 0``).
Colours: OFF red, ON blue, in every plot here and in :func:`spikeflow.plot.animate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spikeflow.data.events import EventRecording
from spikeflow.data.frames import (
    SplitFunction,
    event_channels,
    integrate_segments,
    segment_index,
    unpack_events,
)
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.plot._common import check_finite, new_axes, pyplot, to_numpy

__all__ = ["channel_names", "event_grid", "event_scatter"]

#: The colours of the OFF and ON events.
OFF_COLOUR, ON_COLOUR = "tab:red", "tab:blue"
GRID_MODES = ("split", "difference")
PROJECTIONS = ("xy", "xt", "yt")


def channel_names(polarities: int) -> list[str]:
    """What each frame channel holds, for labels."""
    if polarities == 2:
        return ["OFF (p=0)", "ON (p=1)"]
    if polarities == 1:
        return ["all events"]
    return [f"channel {c}" for c in range(polarities)]


def _ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.1f}"


def _bin_titles(t: np.ndarray, index: np.ndarray, bins: int, split_by: Any) -> list[str]:
    """Each bin's time span in ms from the first event: the rule's edges for ``"time"``
    (the last bin ends at the last event), else the first and last event in the bin."""
    if t.size == 0:
        return ["empty"] * bins
    t = t.astype(np.int64) - int(t[0])
    span = (int(t[-1])) // bins
    if isinstance(split_by, str) and split_by == "time" and span > 0:
        edges = [j * span for j in range(bins)] + [int(t[-1])]
        return [f"{_ms(edges[j])}-{_ms(edges[j + 1])} ms" for j in range(bins)]
    titles = []
    for j in range(bins):
        inside = t[index == j]
        titles.append(f"{_ms(inside.min())}-{_ms(inside.max())} ms" if inside.size else "empty")
    return titles


def _grid_frames(
    recording: Any, bins: int | None, split_by: Any, sensor_size: Sequence[int] | None
) -> tuple[np.ndarray, list[str]]:
    """``[T, P, H, W]`` frames and a title per frame, from events or from frames."""
    if isinstance(recording, EventRecording) or (
        isinstance(recording, np.ndarray) and recording.dtype.names is not None
    ):
        arr, size, source = unpack_events(recording, sensor_size,
                                          need_sorted=not callable(split_by))  # fmt: skip
        bins = 6 if bins is None else bins
        index = segment_index(arr, bins, split_by)
        frames = integrate_segments(arr, index, int(bins), size, source)
        return frames, _bin_titles(arr["t"], index, int(bins), split_by)
    frames = to_numpy(recording, "recording")
    if frames.ndim != 4:
        raise ShapeError(
            "recording must be an EventRecording, a structured event array, or frames "
            f"[T, P, H, W]; got an array of shape {tuple(frames.shape)}"
        )
    if bins is not None and bins != frames.shape[0]:
        raise ConfigurationError(
            f"bins={bins} is for event recordings; the frames given have T = "
            f"{frames.shape[0]} steps already (leave bins out)"
        )
    if frames.shape[0] == 0:
        raise ShapeError(f"recording has no frame (shape {tuple(frames.shape)})")
    check_finite(frames, "recording")
    return frames, [f"frame {j}" for j in range(frames.shape[0])]


def event_grid(
    recording: Any,
    bins: int | None = None,
    *,
    split_by: str | SplitFunction = "time",
    mode: str = "split",
    sensor_size: Sequence[int] | None = None,
    cmap: str | None = None,
    colorbar: bool = True,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """Events as images over time bins: one column per bin, one row per polarity.

    Args:
        recording: an :class:`~spikeflow.data.EventRecording`, a structured event array
            plus ``sensor_size``, or frames ``[T, P, H, W]`` already binned (a
            dataset's sample, say; then each frame is a column).
        bins: the number of time bins for events (default 6).
        split_by: ``"time"`` (equal spans, the default), ``"number"`` (equal event
            counts) or a function, as in :func:`spikeflow.data.to_frames`.
        mode: ``"split"`` draws each channel's counts in its own row (OFF, ON);
            ``"difference"`` draws ON - OFF in one row (Tonic's view; needs ``P == 2``).
        sensor_size: ``(W, H, P)`` for a plain event array.
        cmap: the colour map (default ``"gray_r"`` for counts, ``"RdBu"`` for
            differences: OFF red, ON blue).
        colorbar: one colour bar for the grid; title: the figure title.
        figsize: the figure size in inches (default: 1.6 per image).

    Returns:
        the Figure; its first ``rows x bins`` Axes (row-major) hold the images, whose
        arrays are the event counts per pixel (or their ON - OFF difference), on one
        colour scale for the whole grid; each column is titled with its time span.
    """
    if mode not in GRID_MODES:
        raise ConfigurationError(f"mode must be one of {GRID_MODES}, got {mode!r}")
    frames, titles = _grid_frames(recording, bins, split_by, sensor_size)
    steps, polarities = frames.shape[:2]
    if mode == "difference":
        if polarities != 2:
            raise ConfigurationError(
                f"mode='difference' needs 2 polarities (ON and OFF); the frames have {polarities}"
            )
        images = (frames[:, 1].astype(np.int64) - frames[:, 0])[:, None]
        names = ["ON - OFF"]
        limit = max(float(np.abs(images).max()), 1.0)
        vmin, vmax, cmap = -limit, limit, cmap or "RdBu"
    else:
        images = frames
        names = channel_names(polarities)
        vmin, vmax = float(min(images.min(), 0)), max(float(images.max()), 1.0)
        cmap = cmap or "gray_r"
    rows = images.shape[1]
    plt = pyplot()
    fig, axes = plt.subplots(rows, steps, squeeze=False, layout="constrained",
                             figsize=figsize or (1.6 * steps + 1.2, 1.6 * rows + 0.7))  # fmt: skip
    image = None
    for r in range(rows):
        for j in range(steps):
            ax = axes[r, j]
            image = ax.imshow(images[j, r], cmap=cmap, vmin=vmin, vmax=vmax,
                              interpolation="nearest")  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[j], fontsize="small")
            if j == 0:
                ax.set_ylabel(names[r], fontsize="small")
    if colorbar and image is not None:
        label = "ON - OFF events" if mode == "difference" else "events per pixel"
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    if title:
        fig.suptitle(title)
    return fig


def event_scatter(
    recording: Any,
    ax: Any = None,
    *,
    projection: str = "xy",
    sensor_size: Sequence[int] | None = None,
    title: str | None = None,
    **scatter_kwargs: Any,
) -> Any:
    """Every event as a point: ``"xy"`` (the sensor plane, y pointing down as in the
    images), ``"xt"`` or ``"yt"`` (a coordinate against time, in ms from the first event).

    Args:
        recording: an :class:`~spikeflow.data.EventRecording`, or a structured event
            array plus ``sensor_size``.
        ax: the Axes to draw on (default: a new figure).
        projection: ``"xy"``, ``"xt"`` or ``"yt"``.
        sensor_size: ``(W, H, P)`` for a plain event array.
        title: the Axes title.
        scatter_kwargs: passed to ``Axes.scatter`` (default: 2-point dots).

    Returns:
        the Axes with one collection per channel (OFF then ON for two polarities),
        whose offsets are the events' coordinates in the projection.
    """
    if projection not in PROJECTIONS:
        raise ConfigurationError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    arr, (width, height, polarities), source = unpack_events(recording, sensor_size,
                                                             need_sorted=False)  # fmt: skip
    channel = event_channels(arr["p"], polarities, source)
    t = arr["t"].astype(np.int64)
    t_ms = (t - t.min()) / 1000.0 if t.size else t.astype(np.float64)
    x, y = arr["x"].astype(np.int64), arr["y"].astype(np.int64)
    horizontal, vertical = {"xy": (x, y), "xt": (t_ms, x), "yt": (t_ms, y)}[projection]
    if polarities == 2:
        colours = [OFF_COLOUR, ON_COLOUR]
    elif polarities == 1:
        colours = ["k"]
    else:
        colours = [f"C{c % 10}" for c in range(polarities)]
    ax = new_axes(ax, (5, 5) if projection == "xy" else (8, 3.5))
    style = {"s": 2, "linewidths": 0}
    for c, name in enumerate(channel_names(polarities)):
        keep = channel == c
        colour = {} if {"c", "color"} & scatter_kwargs.keys() else {"color": colours[c]}
        ax.scatter(horizontal[keep], vertical[keep], label=name,
                   **{**style, **colour, **scatter_kwargs})  # fmt: skip
    if projection == "xy":
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set(xlabel="x", ylabel="y")
    else:
        extent = width if projection == "xt" else height
        ax.set_ylim(extent - 0.5, -0.5) if projection == "yt" else ax.set_ylim(-0.5, extent - 0.5)
        ax.set(xlabel="time (ms)", ylabel=projection[0])
    if polarities <= 10 and len(arr):
        ax.legend(fontsize="small", markerscale=4, loc="upper right")
    if title:
        ax.set_title(title)
    return ax
