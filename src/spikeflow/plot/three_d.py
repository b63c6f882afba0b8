"""Plots of SpikingJelly's ``plot_2d_bar_in_3d`` and Norse's ``norse.torch.utils.plot``
that the 2-D views do not cover: bars of ``[T, N]`` in 3-D, activity as points in
(time, row, column) or (layer, row, column), value histograms, and an Izhikevich
behaviour's membrane and input current.

Inputs follow :mod:`spikeflow.plot`'s conventions: torch tensors on any device or numpy
arrays, time-major, one ``sample=`` of a batch; every function returns what it drew on.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.plot._common import (
    NeuronSelection,
    check_finite,
    integer_ticks,
    new_axes,
    per_sample,
    pick_sample,
    pyplot,
    select_neurons,
    to_numpy,
)

__all__ = ["bars_3d", "histogram", "izhikevich", "layers_3d", "scatter_3d"]


def _axes_3d(ax: Any, figsize: tuple[float, float]) -> Any:
    """``ax`` if it is a 3-D Axes, else the one 3-D Axes of a new figure."""
    if ax is None:
        fig = pyplot().figure(figsize=figsize, layout="constrained")
        return fig.add_subplot(projection="3d")
    if getattr(ax, "name", None) != "3d":
        raise ConfigurationError(
            f"ax must be a 3-D matplotlib Axes (projection='3d'), got {type(ax).__name__}"
        )
    return ax


def bars_3d(
    x: Any,
    ax: Any = None,
    *,
    sample: int = 0,
    neurons: NeuronSelection = None,
    title: str | None = None,
    label: str = "value",
    alpha: float = 0.8,
) -> Any:
    """``[T, N]`` values as 3-D bars: one row of bars per neuron along the time axis
    (SpikingJelly's ``plot_2d_bar_in_3d``, e.g. the firing rate of each output neuron
    per epoch).

    Args:
        x: ``[T]``, ``[T, N]`` or ``[T, B, ...]`` (then sample ``sample``).
        ax: a 3-D Axes to draw on (default: a new figure).
        sample: the batch index of a ``[T, B, ...]`` input.
        neurons: the neurons to draw (flat indices; default all).
        title: the Axes title.
        label: the z-axis label.
        alpha: the bars' opacity.

    Returns:
        the 3-D Axes; ``ax.patches`` holds one bar per (neuron, step), neuron by neuron
        and steps in order within a neuron, each of height ``x[t, neuron]``.
    """
    values = to_numpy(x, "x")
    check_finite(values, "x")
    rows, _ = per_sample(values, "x", sample)
    chosen = select_neurons(neurons, rows.shape[1], "x")
    ax = _axes_3d(ax, (7, 5))
    colours = pyplot().get_cmap("tab10")
    steps = np.arange(rows.shape[0])
    for i, neuron in enumerate(chosen):
        heights = rows[:, neuron].astype(np.float64)
        ax.bar(steps, heights, zs=int(neuron), zdir="x", color=colours(i % 10), alpha=alpha)
    ax.set(xlabel="neuron", ylabel="time step", zlabel=label)
    integer_ticks(ax.xaxis)
    integer_ticks(ax.yaxis)
    if title:
        ax.set_title(title)
    return ax


def _coloured_points(
    ax: Any, where: tuple[np.ndarray, ...], values: np.ndarray, kwargs: dict[str, Any]
) -> Any:
    """Scatter at (where[0], where[2], where[1]) coloured by ``values``: the first axis
    along x, columns along y, rows along z (z inverted so row 0 is on top, as in an
    image)."""
    first, row, col = (w.astype(np.float64) for w in where)
    style = {"s": 6, "cmap": "viridis", "depthshade": False}
    if not {"c", "color", "colors"} & kwargs.keys():
        style["c"] = values.astype(np.float64)
    return ax.scatter(first, col, row, **{**style, **kwargs})


def scatter_3d(
    x: Any,
    ax: Any = None,
    *,
    sample: int = 0,
    channel: int | None = None,
    colorbar: bool = True,
    title: str | None = None,
    **scatter_kwargs: Any,
) -> Any:
    """Spatial activity over time as points at (time step, column, row), one per
    non-zero element, coloured by its value (Norse's ``plot_scatter_3d`` for one layer).

    Args:
        x: ``[T, H, W]``, ``[T, C, H, W]`` (then channel ``channel``) or
            ``[T, B, C, H, W]`` (sample ``sample``, channel ``channel``).
        ax: a 3-D Axes to draw on (default: a new figure).
        sample: the batch index of a ``[T, B, C, H, W]`` input.
        channel: the channel of a 4-D or 5-D input; ``None`` sums the channels (the
            count of ON and OFF events of event frames, say).
        colorbar: add a colour bar of the values.
        title: the Axes title.
        scatter_kwargs: passed to ``Axes3D.scatter``.

    Returns:
        the 3-D Axes; its one new collection's ``_offsets3d`` are the (step, column, row)
        coordinates and its colour array the values.
    """
    frames = to_numpy(x, "x")
    check_finite(frames, "x")
    if frames.ndim == 5:
        frames = pick_sample(frames, sample, "x", "[T, B, C, H, W]")
    if frames.ndim == 4:
        if channel is None:
            frames = frames.astype(np.float64).sum(axis=1)
        else:
            channel = check_int("channel", channel, 0)
            if channel >= frames.shape[1]:
                raise ConfigurationError(
                    f"channel={channel} is outside the {frames.shape[1]} channels of x"
                )
            frames = frames[:, channel]
    elif channel is not None and frames.ndim == 3:
        raise ConfigurationError("channel= needs a [T, C, H, W] or [T, B, C, H, W] input")
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ShapeError(
            "x must be [T, H, W], [T, C, H, W] or [T, B, C, H, W] with T >= 1, got shape "
            f"{tuple(np.shape(to_numpy(x, 'x')))}"
        )
    where = np.nonzero(frames)
    ax = _axes_3d(ax, (7, 5))
    points = _coloured_points(ax, where, frames[where], scatter_kwargs)
    ax.set_xlim(-0.5, frames.shape[0] - 0.5)
    ax.set_ylim(-0.5, frames.shape[2] - 0.5)
    ax.set_zlim(frames.shape[1] - 0.5, -0.5)
    ax.set(xlabel="time step", ylabel="column", zlabel="row")
    integer_ticks(ax.xaxis)
    if colorbar and where[0].size:
        ax.figure.colorbar(points, ax=ax, shrink=0.6)
    if title:
        ax.set_title(title)
    return ax


def layers_3d(
    maps: Any,
    ax: Any = None,
    *,
    colorbar: bool = True,
    title: str | None = None,
    **scatter_kwargs: Any,
) -> Any:
    """Several ``[H, W]`` maps side by side in 3-D: every pixel a point at (map index,
    column, row) coloured by its value (Norse's ``plot_heatmap_3d``, e.g. one time
    step's channels or the rates of several same-sized layers).

    Args:
        maps: ``[L, H, W]`` (a tensor or numpy array, or a sequence of ``[H, W]`` maps of
            one size).
        ax: a 3-D Axes to draw on (default: a new figure).
        colorbar: add a colour bar of the values.
        title: the Axes title.
        scatter_kwargs: passed to ``Axes3D.scatter``.

    Returns:
        the 3-D Axes; its one new collection has every pixel (map by map, row-major) as
        a point and the values as its colour array.
    """
    if isinstance(maps, (list, tuple)):
        parts = [to_numpy(m, f"maps[{i}]") for i, m in enumerate(maps)]
        shapes = {p.shape for p in parts}
        if len(shapes) != 1:
            raise ShapeError(f"maps must all have one [H, W] shape, got {sorted(shapes)}")
        stack = np.stack(parts) if parts else np.zeros((0, 0, 0))
    else:
        stack = to_numpy(maps, "maps")
    if stack.ndim != 3 or 0 in stack.shape:
        raise ShapeError(f"maps must be [L, H, W] with every size >= 1, got {stack.shape}")
    check_finite(stack, "maps")
    where = np.indices(stack.shape).reshape(3, -1)
    ax = _axes_3d(ax, (7, 5))
    points = _coloured_points(ax, tuple(where), stack.reshape(-1), scatter_kwargs)
    ax.set_xlim(-0.5, stack.shape[0] - 0.5)
    ax.set_ylim(-0.5, stack.shape[2] - 0.5)
    ax.set_zlim(stack.shape[1] - 0.5, -0.5)
    ax.set(xlabel="map", ylabel="column", zlabel="row")
    integer_ticks(ax.xaxis)
    if colorbar:
        ax.figure.colorbar(points, ax=ax, shrink=0.6)
    if title:
        ax.set_title(title)
    return ax


def histogram(
    x: Any,
    ax: Any = None,
    *,
    bins: int | str | np.ndarray = 30,
    title: str | None = None,
    label: str = "value",
    **hist_kwargs: Any,
) -> Any:
    """A histogram of all of ``x``'s values (membranes, weights, rates; Norse's
    ``plot_histogram_2d``).

    Args:
        x: any shape (every element counts).
        ax: the Axes to draw on (default: a new figure).
        bins: passed to ``Axes.hist`` (a count, edges, or a numpy rule like ``"auto"``).
        title: the Axes title.
        label: the x-axis label.
        hist_kwargs: passed to ``Axes.hist``.

    Returns:
        the Axes; its bars (``ax.patches``) have ``np.histogram(x, bins)``'s counts as
        heights.
    """
    values = to_numpy(x, "x")
    if values.size == 0:
        raise ShapeError(f"x has no element (shape {values.shape})")
    check_finite(values, "x")
    if isinstance(bins, numbers.Integral) and not isinstance(bins, bool):
        bins = check_int("bins", bins, 1)
    ax = new_axes(ax, (6, 4))
    ax.hist(values.reshape(-1).astype(np.float64), bins=bins, **hist_kwargs)
    ax.set(xlabel=label, ylabel="count")
    if title:
        ax.set_title(title)
    return ax


def izhikevich(
    behaviour: str = "tonic_spiking",
    current: float = 10.0,
    *,
    duration_ms: float = 250.0,
    onset_ms: float = 20.0,
    title: str | None = None,
) -> Any:
    """Simulate one Izhikevich neuron of a named behaviour under a step current and plot
    its membrane (spikes marked at the threshold) above the current (Norse's
    ``plot_izhikevich``).

    Args:
        behaviour: a name of :data:`spikeflow.neurons.IZHIKEVICH_PRESETS`; the preset's
            own Euler step ``dt`` (ms) is used.
        current: the input from ``onset_ms`` on (0 before it).
        duration_ms: the simulated time in ms (``round(duration_ms / dt)`` steps).
        onset_ms: when the current switches on, in ms.
        title: the figure title (default: the behaviour's name).

    Returns:
        the Figure: ``axes[0]`` has the membrane line (time in ms, ``v`` in mV, after
        each reset) and one collection of spike marks; ``axes[1]`` the current line.
    """
    from spikeflow.neurons import IZHIKEVICH_PRESETS, Izhikevich2003Node

    if behaviour not in IZHIKEVICH_PRESETS:
        known = ", ".join(sorted(IZHIKEVICH_PRESETS))
        raise ConfigurationError(f"unknown Izhikevich behaviour {behaviour!r}; known: {known}")
    for name, value in (("current", current), ("duration_ms", duration_ms),
                        ("onset_ms", onset_ms)):  # fmt: skip
        if not isinstance(value, numbers.Real) or not np.isfinite(value):
            raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    if duration_ms <= 0 or onset_ms < 0:
        raise ConfigurationError(
            f"duration_ms must be > 0 and onset_ms >= 0, got {duration_ms} and {onset_ms}"
        )
    dt = IZHIKEVICH_PRESETS[behaviour].dt
    times = np.arange(max(1, round(duration_ms / dt))) * dt
    drive = np.where(times >= onset_ms, float(current), 0.0)
    node = Izhikevich2003Node.preset(behaviour, step_mode="m", store_v_seq=True)
    with torch.no_grad():
        spikes = node(torch.as_tensor(drive, dtype=torch.float64)[:, None])
    v = node.v_seq[:, 0].numpy()
    fired = np.flatnonzero(spikes[:, 0].numpy())
    fig, (top, bottom) = pyplot().subplots(
        2, 1, figsize=(7, 5), sharex=True, height_ratios=(3, 1), layout="constrained"
    )
    top.plot(times, v, color="tab:blue")
    top.scatter(times[fired], np.full(fired.size, float(node.v_threshold)), marker="^",
                color="k", s=15, zorder=3)  # fmt: skip
    top.set(ylabel="membrane v (mV)")
    bottom.plot(times, drive, color="tab:orange")
    bottom.set(xlabel="time (ms)", ylabel="input current")
    fig.suptitle(title or behaviour.replace("_", " "))
    return fig
