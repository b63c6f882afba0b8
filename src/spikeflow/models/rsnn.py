"""Recurrent spiking networks for spoken commands: the surrogate-gradient baseline of
Bittar & Garner (Front. Neurosci. 2022) on SHD and SSC.

``hidden_layers`` x [Linear - BatchNorm1d - neurons (with layer-wise recurrent
connections when ``recurrent``) - Dropout], then a Linear - BatchNorm1d to the classes
read by a leaky integrator (no spikes): the output is the per-step membrane
``[T, B, num_classes]``. With ``neuron="adlif"`` and ``recurrent=True`` it is their
RadLIF network (their best: 3 x 128 neurons on SHD, 94.6 %); ``neuron="lif"`` and
``recurrent=False`` give their LIF baseline. The defaults are theirs: 3 hidden layers of
128, dropout 0.1, batch norm (momentum 0.05), no biases, fixed threshold 1 with
``H > θ`` and a boxcar surrogate of width 1, soft reset, orthogonal recurrent weights
without self-connections, adLIF parameters per neuron in the paper's ranges. Any input
``[T, B, ...]`` is flattened per step (SHD: 700 channels).

Differences from their code, on purpose: states start at 0 (theirs draw them at
random for every batch); the read-out's time constant is fixed (``readout_tau``, theirs
is learned per neuron in [5, 25] steps); the loss is spikeflow's (``--loss ce`` on the
mean membrane), where theirs is a cross-entropy of the summed per-step softmax.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.functional import set_step_mode
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_dense_net,
    flat_steps,
)
from spikeflow.models.registry import register_model
from spikeflow.neurons import LINode

__all__ = ["RSNN", "RSNN_NEURON_DEFAULTS", "rsnn"]

#: The hidden neurons' arguments in Bittar & Garner's network (those a neuron does not
#: accept are dropped: ``tau`` for the LIF, spikeflow's choice in their range 5-25).
RSNN_NEURON_DEFAULTS: dict[str, Any] = {
    "v_reset": None,
    "strict_firing": True,
    "surrogate_function": {"name": "rect", "alpha": 1.0},
    "tau": 10.0,
}


class RSNN(nn.Module):
    """See the module docstring.

    Args:
        num_classes: output classes (20 for SHD, 35 for SSC).
        in_channels, input_size: the input's per-step shape ``[C, H, W]`` when
            ``in_features`` is not given (``C·H·W`` features).
        in_features: the number of input features per step (700 for SHD).
        hidden: neurons per hidden layer.
        hidden_layers: how many hidden layers.
        recurrent: layer-wise recurrent connections (:class:`~spikeflow.layers.Recurrent`).
        dropout: dropout on each hidden layer's spikes (a mask per step, as theirs).
        batch_norm: batch norm after each Linear (else the Linears have biases).
        readout_tau: the output leaky integrator's time constant, in steps.
        neuron, neuron_kwargs: the hidden neurons (default ``"adlif"``), over
            :data:`RSNN_NEURON_DEFAULTS`; a neuron taking ``shape`` gets ``hidden``
            (per-neuron parameters).
    """

    def __init__(
        self,
        num_classes: int = 20,
        in_channels: int = 1,
        input_size: int | tuple[int, int] | list[int] | None = None,
        in_features: int | None = None,
        hidden: int = 128,
        hidden_layers: int = 3,
        recurrent: bool = True,
        dropout: float = 0.1,
        batch_norm: bool = True,
        readout_tau: float = 10.0,
        neuron: NeuronSpec = "adlif",
        neuron_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_dense_net(
            "RSNN", num_classes, hidden, hidden_layers, dropout, in_features, in_channels,
            input_size,
        )  # fmt: skip
        for name, flag in (("recurrent", recurrent), ("batch_norm", batch_norm)):
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{name} must be true or false; got {flag!r}")
        self.recurrent = recurrent
        spiking = NeuronFactory(neuron, neuron_kwargs, defaults=RSNN_NEURON_DEFAULTS)

        def dense(n_in: int, n_out: int) -> list[nn.Module]:
            if not batch_norm:
                return [layers.Linear(n_in, n_out)]
            return [
                layers.Linear(n_in, n_out, bias=False),
                layers.BatchNorm1d(n_out, momentum=0.05),
            ]

        blocks: list[nn.Module] = []
        size = self.in_features
        for _ in range(hidden_layers):
            cell = spiking(shape=hidden)
            if recurrent:  # the recurrence owns the time loop: per-step neurons inside
                set_step_mode(cell, "s")
                cell = layers.Recurrent(cell, hidden, self_connections=False)
            blocks += [*dense(size, hidden), cell]
            if dropout > 0:
                blocks.append(nn.Dropout(dropout))
            size = hidden
        blocks += [*dense(size, num_classes), LINode(tau=readout_tau)]
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ...]`` (``in_features`` values per step) -> ``[T, B, num_classes]``."""
        return self.net(flat_steps("RSNN", x, self.in_features))


@register_model("rsnn")
def rsnn(num_classes: int = 20, **kwargs: Any) -> RSNN:
    """The recurrent spiking network of Bittar & Garner (:class:`RSNN`); ``kwargs`` are
    its arguments."""
    return RSNN(num_classes=num_classes, **kwargs)
