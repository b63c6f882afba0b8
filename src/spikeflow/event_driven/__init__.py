"""Event-driven backpropagation (Zhu et al., NeurIPS 2022; methods.md 10).

Time-based training: gradients exist only at spikes and flow to the spike times of the
inputs. :class:`EventDrivenLinear` and :class:`EventDrivenConv2d` (synapse + the paper's
dual-exponential neuron), :class:`AdjustedAvgPool2d`, :func:`calibrate_event_driven` (the
firing-rate initialisation) and the neuron itself (:class:`EventDrivenNeuron`,
:func:`spike_forward`, :func:`spike_backward`). The networks of the paper are
``event_driven_nmnist`` and ``event_driven_cifar10`` in the model zoo. See
docs/event_driven.md.
"""

from spikeflow.event_driven.calibrate import calibrate_event_driven
from spikeflow.event_driven.kernel import (
    GRADIENTS,
    EventDrivenNeuron,
    spike_backward,
    spike_forward,
)
from spikeflow.event_driven.layers import EventDrivenConv2d, EventDrivenLayer, EventDrivenLinear
from spikeflow.event_driven.pooling import AdjustedAvgPool2d, adjusted_avg_pool2d

__all__ = [
    "GRADIENTS",
    "AdjustedAvgPool2d",
    "EventDrivenConv2d",
    "EventDrivenLayer",
    "EventDrivenLinear",
    "EventDrivenNeuron",
    "adjusted_avg_pool2d",
    "calibrate_event_driven",
    "spike_backward",
    "spike_forward",
]
