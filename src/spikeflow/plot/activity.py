"""Plots of what neurons do over time: spike rasters, membrane traces, heatmaps and
feature maps (the views of snnTorch's ``spikeplot`` and SpikingJelly's ``visualizing``).

Inputs are time-major like everything in spikeflow: ``[T]`` (one neuron), ``[T, N]``,
or ``[T, B, ...]``, of which one sample (``sample=``) is drawn with its neurons
flattened row-major: neuron ``k`` of a ``[T, B, C, H, W]`` layer is channel, row and
column ``np.unravel_index(k, (C, H, W))``. ``neurons=`` picks some of them (an int, a
slice or flat indices). Tensors may live on any device; numpy arrays work too.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

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

__all__ = ["feature_maps", "heatmap", "membrane", "raster", "spike_counts"]

#: Traces :func:`membrane` draws without an explicit ``neurons=`` selection.
MAX_DEFAULT_TRACES = 16


def raster(
    spikes: Any,
    ax: Any = None,
    *,
    sample: int = 0,
    neurons: NeuronSelection = None,
    title: str | None = None,
    **scatter_kwargs: Any,
) -> Any:
    """A spike raster: one mark at (time step, neuron) for every non-zero element.

    Args:
        spikes: ``[T]``, ``[T, N]`` or ``[T, B, ...]`` (then sample ``sample``); graded
            spikes count where they are non-zero.
        ax: the Axes to draw on (default: a new figure).
        sample: the batch index of a ``[T, B, ...]`` input.
        neurons: the neurons to draw (flat indices; default all). Marks keep each
            neuron's own index as their y coordinate, so a selection leaves gaps.
        title: the Axes title.
        scatter_kwargs: passed to ``Axes.scatter`` (default: black ``|`` marks).

    Returns:
        the Axes; its one new collection holds the spike coordinates as offsets.
    """
    s = to_numpy(spikes, "spikes")
    check_finite(s, "spikes")
    rows, _ = per_sample(s, "spikes", sample)
    chosen = select_neurons(neurons, rows.shape[1], "spikes")
    steps, which = np.nonzero(rows[:, chosen])
    ax = new_axes(ax, (7, 3))
    style = {"marker": "|", "s": 20, "linewidths": 1}
    if not {"c", "color", "colors"} & scatter_kwargs.keys():
        style["color"] = "k"
    ax.scatter(steps, chosen[which], **{**style, **scatter_kwargs})
    ax.set_xlim(-0.5, rows.shape[0] - 0.5)
    ax.set_ylim(chosen.min() - 0.5, chosen.max() + 0.5)
    ax.set(xlabel="time step", ylabel="neuron")
    integer_ticks(ax.xaxis)
    integer_ticks(ax.yaxis)
    if title:
        ax.set_title(title)
    return ax


def spike_counts(
    spikes: Any,
    ax: Any = None,
    *,
    sample: int = 0,
    neurons: NeuronSelection = None,
    labels: Sequence[str] | None = None,
    step: int | None = None,
    highlight: int | None = None,
    title: str | None = None,
) -> Any:
    """Horizontal bars of each neuron's spike count (the output layer's vote, snnTorch's
    ``spikeplot.spike_count`` without the animation).

    Args:
        spikes: ``[T]``, ``[T, N]`` or ``[T, B, ...]`` (then sample ``sample``); graded
            spikes add their values.
        ax: the Axes to draw on (default: a new figure).
        sample: the batch index of a ``[T, B, ...]`` input.
        neurons: the neurons to draw (flat indices; default all), one bar each, in order.
        labels: one name per drawn neuron (default: the neuron indices).
        step: count the steps ``0..step`` only (default: all ``T``): draw one figure per
            step for a frame-by-frame view.
        highlight: a neuron index (the label, say) whose bar is drawn in another colour.
        title: the Axes title.

    Returns:
        the Axes; its bars (``ax.patches``) have the counts as widths, top to bottom.

    Raises:
        ShapeError: a shape other than the above.
        ConfigurationError: a ``labels`` count, ``step`` or ``highlight`` that does not
            fit the neurons drawn.
    """
    s = to_numpy(spikes, "spikes")
    check_finite(s, "spikes")
    rows, _ = per_sample(s, "spikes", sample)
    chosen = select_neurons(neurons, rows.shape[1], "spikes")
    if step is not None:
        step = check_int("step", step, 0)
        if step >= rows.shape[0]:
            raise ConfigurationError(f"step={step} is outside the T = {rows.shape[0]} steps")
        rows = rows[: step + 1]
    counts = rows[:, chosen].astype(np.float64).sum(axis=0)
    if labels is None:
        names = [str(int(k)) for k in chosen]
    else:
        names = [str(name) for name in labels]
        if len(names) != len(chosen):
            raise ConfigurationError(
                f"labels has {len(names)} names for the {len(chosen)} neurons drawn"
            )
    colours = ["tab:blue"] * len(chosen)
    if highlight is not None:
        where = np.flatnonzero(chosen == check_int("highlight", highlight, 0))
        if where.size == 0:
            raise ConfigurationError(f"highlight={highlight} is not one of the neurons drawn")
        colours[int(where[0])] = "tab:orange"
    ax = new_axes(ax, (6, max(2.0, 0.3 * len(chosen))))
    ax.barh(np.arange(len(chosen)), counts, color=colours, tick_label=names)
    ax.invert_yaxis()  # the first neuron on top
    ax.set(xlabel="spike count", ylabel="neuron")
    if title:
        ax.set_title(title)
    return ax


def _thresholds(threshold: Any, neuron_shape: tuple[int, ...], chosen: np.ndarray) -> np.ndarray:
    """The threshold of every chosen neuron, from a scalar or from an array that
    broadcasts to the per-sample neuron shape (a per-channel ``[C, 1, 1]`` one, say)."""
    if isinstance(threshold, (bool, np.bool_)):
        raise ConfigurationError(f"threshold must be a number or an array, got {threshold!r}")
    if isinstance(threshold, numbers.Real):
        th = np.asarray(float(threshold))
    else:
        th = to_numpy(threshold, "threshold").astype(np.float64)
    if th.size == 1:
        th = th.reshape(())
    else:
        try:
            th = np.broadcast_to(th, neuron_shape)
        except ValueError:
            raise ShapeError(
                f"threshold of shape {th.shape} does not broadcast to the neuron shape "
                f"{neuron_shape} of one sample of v"
            ) from None
    check_finite(th, "threshold")
    return np.broadcast_to(th, neuron_shape).reshape(-1)[chosen]


def membrane(
    v: Any,
    spikes: Any = None,
    threshold: Any = None,
    ax: Any = None,
    *,
    sample: int = 0,
    neurons: NeuronSelection = None,
    v_reset: float | None = None,
    title: str | None = None,
    **plot_kwargs: Any,
) -> Any:
    """Membrane traces of chosen neurons, with threshold lines and spike marks (the view
    of SpikingJelly's ``plot_one_neuron_v_s``, for several neurons on one Axes).

    Args:
        v: the membrane, ``[T]``, ``[T, N]`` or ``[T, B, ...]`` (a neuron's ``v_seq``
            is the membrane after reset, as :func:`spikeflow.plot.record` returns it).
        spikes: the spikes, same shape as ``v``: a mark at each step where a drawn
            neuron fired, at its threshold when one is given, else on the trace.
        threshold: a number, or an array that broadcasts to one sample's neuron shape
            (per-channel and learnable thresholds); one dashed line per distinct
            threshold of the drawn neurons.
        ax: the Axes to draw on (default: a new figure).
        sample: the batch index of a ``[T, B, ...]`` input.
        neurons: the neurons to draw (flat indices); without it every neuron is drawn,
            which needs ``N <= 16`` (use :func:`heatmap` to see many).
        v_reset: draw a dotted line at the reset potential.
        title: the Axes title.
        plot_kwargs: passed to ``Axes.plot`` for every trace.

    Returns:
        the Axes: its lines are the traces (in the order of ``neurons``), then the
        threshold lines, then the reset line; its collection holds the spike marks.
    """
    values = to_numpy(v, "v").astype(np.float64, copy=False)
    check_finite(values, "v")
    rows, neuron_shape = per_sample(values, "v", sample)
    count = rows.shape[1]
    if neurons is None and count > MAX_DEFAULT_TRACES:
        raise ConfigurationError(
            f"v has {count} neurons per sample; choose the traces to draw with "
            f"neurons=[...] (at most {MAX_DEFAULT_TRACES} are drawn by default), or draw "
            "them all as an image with spikeflow.plot.heatmap"
        )
    chosen = select_neurons(neurons, count, "v")
    fired = None
    if spikes is not None:
        s = to_numpy(spikes, "spikes")
        if s.shape != values.shape:
            raise ShapeError(
                f"spikes has shape {tuple(s.shape)} but v has shape {tuple(values.shape)}; "
                "they must match"
            )
        check_finite(s, "spikes")
        fired = per_sample(s, "spikes", sample)[0][:, chosen] != 0
    th = None if threshold is None else _thresholds(threshold, neuron_shape, chosen)
    ax = new_axes(ax, (7, 3.5))
    steps = np.arange(rows.shape[0])
    colours = []
    for k in chosen:
        (line,) = ax.plot(steps, rows[:, k], label=f"neuron {k}", **plot_kwargs)
        colours.append(line.get_color())
    if th is not None:
        distinct = np.unique(th)
        for value in distinct:
            label = "threshold" if distinct.size == 1 else f"threshold {value:g}"
            ax.axhline(value, color="0.3", linestyle="--", linewidth=1, label=label)
    if v_reset is not None:
        ax.axhline(float(v_reset), color="0.5", linestyle=":", linewidth=1, label="reset")
    if fired is not None:
        t_idx, j_idx = np.nonzero(fired)
        y = th[j_idx] if th is not None else rows[t_idx, chosen[j_idx]]
        ax.scatter(t_idx, y, c=[colours[j] for j in j_idx], marker="|", s=150,
                   linewidths=1.5, zorder=3)  # fmt: skip
    ax.set_xlim(-0.5, rows.shape[0] - 0.5)
    ax.set(xlabel="time step", ylabel="membrane potential")
    integer_ticks(ax.xaxis)
    if len(chosen) <= 8:
        ax.legend(fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    return ax


def _label_rows(ax: Any, chosen: np.ndarray, steps: int) -> tuple[float, float, float, float]:
    """The image extent (neuron 0 at the bottom, as in :func:`raster`): rows at the
    neurons' own indices when the selection is a contiguous range, else at their
    positions with the indices as tick labels."""
    if np.array_equal(chosen, np.arange(chosen[0], chosen[0] + chosen.size)):
        return (-0.5, steps - 0.5, chosen[0] - 0.5, chosen[-1] + 0.5)
    if chosen.size <= 32:
        ax.set_yticks(np.arange(chosen.size), [str(k) for k in chosen])
    else:
        ax.set_yticks([])
    return (-0.5, steps - 0.5, -0.5, chosen.size - 0.5)


def heatmap(
    x: Any,
    ax: Any = None,
    *,
    sample: int = 0,
    neurons: NeuronSelection = None,
    colorbar: bool = True,
    label: str = "value",
    title: str | None = None,
    **imshow_kwargs: Any,
) -> Any:
    """``[T, N]`` values (membranes, rates, spikes) as an image: time along x, neurons
    along y, with a colour bar (SpikingJelly's ``plot_2d_heatmap``).

    Args:
        x: ``[T]``, ``[T, N]`` or ``[T, B, ...]`` (then sample ``sample``).
        ax: the Axes to draw on (default: a new figure).
        sample: the batch index of a ``[T, B, ...]`` input.
        neurons: the neurons to show as rows (flat indices; default all).
        colorbar: add a colour bar labelled ``label``.
        title: the Axes title.
        imshow_kwargs: passed to ``Axes.imshow`` (``cmap``, ``vmin``, ``vmax``, ...).

    Returns:
        the Axes; its image's array is ``x[:, neurons].T`` (row ``i`` = ``neurons[i]``).
    """
    values = to_numpy(x, "x")
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    check_finite(values, "x")
    rows, _ = per_sample(values, "x", sample)
    chosen = select_neurons(neurons, rows.shape[1], "x")
    ax = new_axes(ax, (7, 4))
    extent = _label_rows(ax, chosen, rows.shape[0])
    style = {"aspect": "auto", "interpolation": "nearest", "extent": extent, "origin": "lower"}
    image = ax.imshow(rows[:, chosen].T, **{**style, **imshow_kwargs})
    ax.set(xlabel="time step", ylabel="neuron")
    integer_ticks(ax.xaxis)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label=label)
    if title:
        ax.set_title(title)
    return ax


def _maps(x: np.ndarray, step: int | None, sample: int) -> tuple[np.ndarray, str]:
    """``[C, H, W]`` maps from ``[C, H, W]``, ``[T, C, H, W]`` or ``[T, B, C, H, W]``,
    and what they show (for the title)."""
    if x.ndim == 5:
        x = pick_sample(x, sample, "x", "[T, B, C, H, W]")
    elif x.ndim == 3:
        if step is not None:
            raise ConfigurationError(
                f"step={step} needs a time axis; x has shape {tuple(x.shape)} ([C, H, W])"
            )
        return x, "value"
    elif x.ndim != 4:
        raise ShapeError(
            f"x must be [C, H, W], [T, C, H, W] or [T, B, C, H, W]; got shape {tuple(x.shape)}"
        )
    steps = x.shape[0]
    if steps == 0:
        raise ShapeError(f"x has no time step (shape {tuple(x.shape)}); T must be >= 1")
    if step is None:
        return x.mean(axis=0, dtype=np.float64), f"mean over {steps} steps"
    step = check_int("step", step, 0)
    if step >= steps:
        raise ConfigurationError(f"step={step} is outside the {steps} steps of x")
    return x[step], f"step {step}"


def feature_maps(
    x: Any,
    *,
    step: int | None = None,
    sample: int = 0,
    channels: int | slice | Sequence[int] | None = None,
    ncols: int | None = None,
    cmap: str = "gray",
    colorbar: bool = True,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """A grid of channel images, one per channel of a convolutional layer's spikes or
    rates (SpikingJelly's ``plot_2d_feature_map``), on one shared colour scale.

    Args:
        x: ``[C, H, W]``; or ``[T, C, H, W]`` (``[T, B, C, H, W]``: sample ``sample``),
            averaged over time (the firing rate of spikes) or one ``step``.
        step: the time step to show (default: the mean over all steps).
        sample: the batch index of a ``[T, B, C, H, W]`` input.
        channels: the channels to show (an int, a slice or indices; default all).
        ncols: grid columns (default ``ceil(sqrt(channels))``).
        cmap: the colour map; colorbar: one colour bar for the whole grid.
        title: the figure title (default: what the maps show).
        figsize: the figure size in inches (default: 1.6 per grid cell).

    Returns:
        the Figure; the Axes of channel ``c`` (titled ``channel c``) shows ``maps[c]``.
    """
    values = to_numpy(x, "x")
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    check_finite(values, "x")
    maps, shows = _maps(values, step, sample)
    chosen = select_neurons(channels, maps.shape[0], "x's channels")
    cols = math.ceil(math.sqrt(chosen.size)) if ncols is None else check_int("ncols", ncols, 1)
    cols = min(cols, chosen.size)
    nrows = math.ceil(chosen.size / cols)
    plt = pyplot()
    fig, axes = plt.subplots(nrows, cols, squeeze=False,
                             figsize=figsize or (1.6 * cols + 1.2, 1.6 * nrows + 0.6))  # fmt: skip
    # (no layout engine: constrained layout takes seconds for a grid of many Axes)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.8 / fig.get_figheight(),
                        wspace=0.1, hspace=0.35)  # fmt: skip
    shown = maps[chosen]
    vmin, vmax = float(shown.min()), float(shown.max())
    image = None
    for cell, ax in enumerate(axes.flat):
        ax.set_axis_off()
        ax.set_xticks([])  # (no ticks to lay out: a title is placed above them)
        ax.set_yticks([])
        if cell < chosen.size:
            image = ax.imshow(shown[cell], cmap=cmap, vmin=vmin, vmax=vmax,
                              interpolation="nearest")  # fmt: skip
            ax.set_title(f"channel {chosen[cell]}", fontsize="small")
    if colorbar and image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle(title if title is not None else f"feature maps ({shows})")
    return fig
