"""Plots a spiking-network researcher reaches for (matplotlib: the ``plot`` extra).

- :func:`raster`: spikes as marks at (time step, neuron); :func:`spike_counts`: each
  neuron's spike count as a bar (an output layer's vote).
- :func:`membrane`: membrane traces with threshold lines and spike marks.
- :func:`heatmap`: ``[T, N]`` membranes, rates or spikes as an image with a colour bar.
- :func:`feature_maps`: a grid of the channel images of a ``[C, H, W]`` map (or the time
  mean / one step of ``[T, C, H, W]``).
- :func:`event_grid`: an event recording as ON/OFF count images over time bins;
  :func:`event_scatter`: its events as points in x-y, x-t or y-t.
- :func:`animate`: ``[T, (P,) H, W]`` frames (or a recording through a representation)
  to a GIF or an MP4, written atomically.
- :func:`bars_3d`, :func:`scatter_3d`, :func:`layers_3d`: ``[T, N]`` as 3-D bars,
  activity as points in (time, column, row) or (map, column, row); :func:`histogram`:
  a value histogram; :func:`izhikevich`: an Izhikevich behaviour's membrane and current.
- :func:`record`: run a forward and collect the spikes and membranes of chosen layers.

Inputs are torch tensors on any device or numpy arrays, time-major (``[T, B, ...]``:
one sample is drawn, ``sample=0`` by default). Functions that draw on one Axes take
``ax=`` and return the Axes; grids return the Figure; :func:`animate` returns the path.
Importing this module does not import matplotlib: a call without it raises
:class:`~spikeflow.errors.MissingExtraError` naming ``pip install 'spikeflow[plot]'``.
See ``docs/visualization.md``.
"""

from spikeflow.plot.activity import feature_maps, heatmap, membrane, raster, spike_counts
from spikeflow.plot.animation import WriterNotFoundError, animate
from spikeflow.plot.events import event_grid, event_scatter
from spikeflow.plot.recording import LayerRecord, record
from spikeflow.plot.three_d import bars_3d, histogram, izhikevich, layers_3d, scatter_3d

__all__ = [
    "LayerRecord",
    "WriterNotFoundError",
    "animate",
    "bars_3d",
    "event_grid",
    "event_scatter",
    "feature_maps",
    "heatmap",
    "histogram",
    "izhikevich",
    "layers_3d",
    "membrane",
    "raster",
    "record",
    "scatter_3d",
    "spike_counts",
]
