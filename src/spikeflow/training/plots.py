"""PNG plots of a run (needs matplotlib, the ``plot`` extra): learning curves, per-layer
firing rates over the epochs, and a spike raster of one test sample (drawn by
:func:`spikeflow.plot.raster`, written through the same atomic rename as its files)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from spikeflow.plot._common import atomic_output, integer_ticks, require_matplotlib
from spikeflow.plot.activity import raster

__all__ = [
    "check_matplotlib",
    "plot_firing_rates",
    "plot_learning_curves",
    "plot_raster",
]


def check_matplotlib() -> None:
    """Raise :class:`MissingExtraError` unless matplotlib is installed."""
    require_matplotlib("plots of a training run")


def _pyplot() -> Any:
    check_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Loss and accuracy per epoch (train and test) from the ``metrics.csv`` rows."""
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-"), ("test", "--")):
        ax_loss.plot(epochs, [float(r[f"{split}_loss"]) for r in rows], style, label=split)
        ax_acc.plot(epochs, [100 * float(r[f"{split}_acc"]) for r in rows], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        integer_ticks(ax.xaxis)
    return _save(fig, plt, path)


def plot_firing_rates(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Test firing rate of each spiking layer per epoch, from the ``layers.csv`` rows."""
    plt = _pyplot()
    by_layer: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r["split"] == "test":
            by_layer.setdefault(r["layer"], []).append((int(r["epoch"]), float(r["firing_rate"])))
    fig, ax = plt.subplots(figsize=(7, 4))
    for layer, points in by_layer.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=layer)
    ax.set(xlabel="epoch", ylabel="firing rate (spikes / neuron / step)",
           title="firing rate per spiking layer (test split)")  # fmt: skip
    ax.grid(alpha=0.3)
    integer_ticks(ax.xaxis)
    if by_layer:
        ax.legend(fontsize="small")
    return _save(fig, plt, path)


def plot_raster(
    spikes: Mapping[str, Tensor],
    path: str | os.PathLike,
    title: str = "",
    neuron_counts: Mapping[str, int] | None = None,
) -> Path:
    """One raster per spiking layer: a dot at (step, neuron) for each spike of a sample
    (``spikes`` as returned by :func:`~spikeflow.training.monitors.record_spikes`).

    ``neuron_counts`` gives a layer's number of neurons; where the raster shows fewer
    (``record_spikes`` keeps the first 256), its axis label says "first N of M"."""
    plt = _pyplot()
    n = max(len(spikes), 1)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.8 * n + 0.6), squeeze=False)
    for ax, (layer, s) in zip(axes[:, 0], spikes.items()):
        raster(s, ax=ax, marker="|", s=4, color="k")
        shown = s.shape[-1] if s.dim() > 1 else 1
        total = (neuron_counts or {}).get(layer, shown)
        label = f"first {shown} of\n{total:,} neurons" if total > shown else "neuron"
        ax.set(xlabel="", ylabel=f"{layer}\n{label}")
        ax.yaxis.label.set_fontsize("small")
    axes[-1, 0].set_xlabel("time step")
    if title:
        fig.suptitle(title)
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary file, then a rename), so a
    failed write leaves no truncated image."""
    path = Path(path)
    try:
        fig.tight_layout()
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
