"""EventProp in ``spikeflow train`` (``--eventprop [JUMPS]``; docs/training_methods.md).

The run's model is the zoo's ``eventprop_snn`` (:class:`EventPropClassifier`): hidden
layers of Norse's current-based LIF neurons (:class:`~spikeflow.learn.EventPropLIF`)
whose spikes drive a leaky, non-spiking readout, ``examples/eventprop_digits.py``'s
network. With ``--eventprop`` its hidden layers are differentiated by the adjoint method
(EventProp, Wunderlich & Pehle 2021: ``jumps="eventprop"``, exact across layers; or
``--eventprop norse``, Norse 1.1's adjoint): the backward pass keeps the spike flags and
two numbers per spike, no graph over time. Without ``--eventprop`` the same network
trains by BPTT through autograd with a surrogate gradient (the same forward pass, the
same spikes). Either way the training loop is BPTT's (one backward per batch), so
checkpoints, resume, ``torchrun`` and the monitors work as for any zoo model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.models.eventprop_snn import EVENTPROP_GRADIENTS, EventPropClassifier, eventprop_snn

__all__ = [
    "EVENTPROP_GRADIENTS",
    "EventPropClassifier",
    "check_eventprop_model",
    "eventprop_snn",
]


def check_eventprop_model(config: Any, model: nn.Module) -> None:
    """Raise unless an ``--eventprop`` run's model is an :class:`EventPropClassifier`
    (the zoo's ``eventprop_snn``).

    Raises:
        ConfigurationError: naming the model.
    """
    if getattr(config, "eventprop", None) is None:
        return
    if not isinstance(model, EventPropClassifier):
        raise ConfigurationError(
            f"--eventprop differentiates current-based LIF layers by the adjoint method: "
            f"use --model eventprop_snn (got {config.model!r}, a {type(model).__name__})"
        )
