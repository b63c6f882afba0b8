"""Event-based optical flow with spiking networks (docs/flow.md).

* :mod:`~spikeflow.flow.windows`: event windows, their count images and event lists.
* :mod:`~spikeflow.flow.warp`: events warped by a flow field, bilinear splatting, images
  of warped events.
* :mod:`~spikeflow.flow.loss`: the self-supervised contrast-maximisation loss of
  Hagenaars, Paredes-Vallés and de Croon (NeurIPS 2021) and its Charbonnier smoothness.
* :mod:`~spikeflow.flow.models`: the paper's spiking recurrent networks (LIF-FireNet,
  spiking EV-FlowNet).
* :mod:`~spikeflow.flow.metrics`: AEE and outliers against ground truth; FWL and RSAT
  without.
* :mod:`~spikeflow.flow.dsec`: DSEC's 16-bit PNG flow maps, read and written.
"""

from spikeflow.flow.dsec import (
    DSEC_FLOW_SCALE,
    decode_dsec_flow,
    encode_dsec_flow,
    read_dsec_flow,
    write_dsec_flow,
)
from spikeflow.flow.loss import (
    ContrastMaximizationLoss,
    average_timestamp_loss,
    charbonnier_smoothness,
    contrast_maximization_loss,
)
from spikeflow.flow.metrics import FlowErrors, endpoint_errors, flow_warp_loss, rsat
from spikeflow.flow.models import (
    ArctanSpike,
    ConvRecurrent,
    FlowNeuron,
    SpikingEVFlowNet,
    SpikingFireNet,
    flow_neuron,
)
from spikeflow.flow.warp import (
    event_flow,
    event_times,
    image_of_warped_events,
    splat,
    warp_positions,
)
from spikeflow.flow.windows import EventWindows, stack_recordings, windows_from_events

__all__ = [
    "DSEC_FLOW_SCALE",
    "ArctanSpike",
    "ContrastMaximizationLoss",
    "ConvRecurrent",
    "EventWindows",
    "FlowErrors",
    "FlowNeuron",
    "SpikingEVFlowNet",
    "SpikingFireNet",
    "average_timestamp_loss",
    "charbonnier_smoothness",
    "contrast_maximization_loss",
    "decode_dsec_flow",
    "encode_dsec_flow",
    "endpoint_errors",
    "event_flow",
    "event_times",
    "flow_neuron",
    "flow_warp_loss",
    "image_of_warped_events",
    "read_dsec_flow",
    "rsat",
    "splat",
    "stack_recordings",
    "warp_positions",
    "windows_from_events",
    "write_dsec_flow",
]
