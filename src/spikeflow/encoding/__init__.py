"""Encoders: turn inputs (images, feature vectors, signals) into spike trains.

Every encoder is an :class:`torch.nn.Module` with a ``step_mode``:

- ``'m'`` (multi-step, the default): ``forward(x)`` returns the whole spike train,
  time-major, ``[T, *x.shape]`` (an image batch ``[B, C, H, W]`` becomes
  ``[T, B, C, H, W]``); :class:`GaussianPopulationEncoder` adds a last dimension of
  size ``n_neurons``, :class:`LearnablePopulationEncoder` replaces the last one by
  ``obs_dim · pop_dim``. :class:`DeltaModulationEncoder` and :class:`FirstSpikeFilter`
  take a sequence ``[T, *]`` and return ``[T, *]``.
- ``'s'`` (single-step): ``forward(x)`` returns one time step ``[*x.shape]``.

Spikes are float tensors in the input's floating dtype, on its device: 0s and 1s, or -1,
0, 1 for the signed codes (:class:`SignedPoissonEncoder`, delta modulation with
``off_spike``); :class:`LearnablePopulationEncoder` gives the dtype its input and its
parameters promote to (``enc.half()`` for float16 spikes). The static codes (Poisson,
latency, periodic, phase, Gaussian population, delta) are not differentiable with
respect to ``x`` (the output is a step function of the input;
:meth:`GaussianPopulationEncoder.response` and :func:`population_rbf` are).
:class:`ConstantCurrentLIFEncoder` is, through its neuron's surrogate gradient, and
:class:`LearnablePopulationEncoder` through a straight-through estimator (its receptive
fields are trained).

Stateless encoders (:class:`PoissonEncoder`, :class:`SignedPoissonEncoder`, the
``'random'`` and ``'current'`` modes of :class:`LearnablePopulationEncoder`) draw or
compute every step afresh, so they work in single-step mode without streaming. The
others carry state from step to step (a step counter, a membrane, the previous input,
a "has spiked" mask): they are, or contain, :class:`~spikeflow.base.MemoryModule` s.
Their single-step calls need streaming (:func:`spikeflow.functional.streaming`),
``reset()`` goes back to step 0, a streaming call whose input shape differs from the
previous call's raises :class:`~spikeflow.errors.StateError` (a new batch: reset
between sequences), and multi-step calls outside streaming always start at step 0. The
code of a counter-based encoder is periodic (period ``T``, or ``P`` / ``K`` for the
periodic and phase encoders): a streaming run longer than one period starts the code
again.

:class:`StatelessEncoder` and :class:`StatefulEncoder` are bases for encoders of your
own (implement one step, or the whole train ``[T, *]``).

:func:`target_spike_trains` and :func:`ramp_targets` make the target trains of
rate-coded losses (snnTorch's ``spikegen.targets_rate`` and its ``interpolate``).

Out-of-range inputs raise :class:`~spikeflow.errors.ConfigurationError` naming the
observed minimum and maximum; checking the range (or for NaN) reads numbers back from
the device (one synchronisation per call).
"""

from spikeflow.encoding.base import StatefulEncoder, StatelessEncoder
from spikeflow.encoding.delta import DeltaModulationEncoder, delta_modulation
from spikeflow.encoding.learnable_population import LearnablePopulationEncoder
from spikeflow.encoding.lif import ConstantCurrentLIFEncoder, FirstSpikeFilter
from spikeflow.encoding.population import GaussianPopulationEncoder, population_rbf
from spikeflow.encoding.rate import PoissonEncoder, SignedPoissonEncoder
from spikeflow.encoding.spike_wave import (
    DoGFilter,
    dog_kernel,
    intensity_to_latency,
    local_normalization,
)
from spikeflow.encoding.targets import FIRING_PATTERNS, ramp_targets, target_spike_trains
from spikeflow.encoding.temporal import LatencyEncoder, PeriodicEncoder, WeightedPhaseEncoder

__all__ = [
    "FIRING_PATTERNS",
    "ConstantCurrentLIFEncoder",
    "DeltaModulationEncoder",
    "DoGFilter",
    "FirstSpikeFilter",
    "GaussianPopulationEncoder",
    "LatencyEncoder",
    "LearnablePopulationEncoder",
    "PeriodicEncoder",
    "PoissonEncoder",
    "SignedPoissonEncoder",
    "StatefulEncoder",
    "StatelessEncoder",
    "WeightedPhaseEncoder",
    "delta_modulation",
    "dog_kernel",
    "intensity_to_latency",
    "local_normalization",
    "population_rbf",
    "ramp_targets",
    "target_spike_trains",
]
