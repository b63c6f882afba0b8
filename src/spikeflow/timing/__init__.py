"""Timing-based (exact spike time) neurons on continuous event times, after SpikingJelly
2.0's ``spikingjelly.timing_based``.

Inputs are compact event batches ``(spike_times [E], input_indices [E], batch_offsets
[B+1])`` (see :mod:`spikeflow.timing._events`), not time-step grids: the membrane is
solved between events in closed form and spike times are exact, with gradients of the
spike times and voltage maxima with respect to the weights and the input times.

* :class:`Tempotron` / :func:`tempotron` (Gütig & Sompolinsky 2006) with
  :func:`tempotron_loss` (the Tempotron rule) and :func:`tempotron_classification_loss`;
* :class:`SRM` / :func:`srm`: multi-spike spike response model layers (ramp PSP,
  reset by subtraction) with exact output spike times;
* :class:`GaussianTuning`: real values to event times through Gaussian receptive fields;
* :class:`CubicSRM` / :func:`cubic_srm` and :class:`CubicConv2d` / :func:`cubic_conv2d`:
  single-spike layers with a finite-support cubic PSP, solved by
  :func:`first_spike_time` (the first threshold crossing of any piecewise-monotone
  response, with implicit gradients);
* :class:`PSPKernel`: the unit-peak double-exponential PSP.

See docs/timing.md.
"""

from spikeflow.timing._cubic import CubicConv2d, CubicSRM, cubic_conv2d, cubic_srm
from spikeflow.timing._events import PSPKernel, check_events
from spikeflow.timing._srm import SRM, srm
from spikeflow.timing._tempotron import (
    Tempotron,
    tempotron,
    tempotron_classification_loss,
    tempotron_loss,
)
from spikeflow.timing.encoding import GaussianTuning
from spikeflow.timing.solver import first_spike_time

__all__ = [
    "SRM",
    "CubicConv2d",
    "CubicSRM",
    "GaussianTuning",
    "PSPKernel",
    "Tempotron",
    "check_events",
    "cubic_conv2d",
    "cubic_srm",
    "first_spike_time",
    "srm",
    "tempotron",
    "tempotron_classification_loss",
    "tempotron_loss",
]
