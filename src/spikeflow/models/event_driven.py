"""The networks of event-driven backpropagation (Zhu et al., NeurIPS 2022; methods.md 10).

Layer plans from the authors' configurations: N-MNIST (12c5-P2-64c5-P2-10, T = 30), the
CIFAR-10 VGG (128-128-P-256x3-P-512x3-P-FC2048-FC2048-10, dropout 0.1, T = 12), DVS128
Gesture and CIFAR10-DVS (T = 20). Every conv
and FC layer is an event-driven layer (the output layer too: the prediction is the spike
count), pooling is adjusted average pooling. Train them with the count loss
(``--loss count``; the paper's desired/undesired counts are 15/2 on N-MNIST and 10/1 on
CIFAR-10) or the time-based losses of the follow-up paper (``count+``, ``sum0``,
``ce+``, ``ttfs``; :mod:`spikeflow.losses.time_based`).

The first training forward calibrates the layers' gains on its batch
(:func:`~spikeflow.event_driven.calibrate_event_driven`); the ``calibrated`` buffer
records it, so a checkpoint resumes without calibrating again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow import layers
from spikeflow._checks import check_flag
from spikeflow._compile_marks import eager_under_compile
from spikeflow.errors import ConfigurationError
from spikeflow.event_driven import (
    AdjustedAvgPool2d,
    EventDrivenConv2d,
    EventDrivenLinear,
    EventDrivenNeuron,
    calibrate_event_driven,
)
from spikeflow.models.common import check_input, check_positive_int
from spikeflow.models.registry import register_builder

__all__ = [
    "EventDrivenNet",
    "event_driven_cifar10",
    "event_driven_cifar10dvs",
    "event_driven_dvsgesture",
    "event_driven_nmnist",
]

#: Plan entries: ("conv", channels, kernel, padding), ("pool", k), ("fc", features) and
#: ("drop",): dropout of the network's probability (channels after convolutions and
#: pooling, neurons after FC layers; one mask per sequence).
Plan = list[tuple[Any, ...]]

_NMNIST_PLAN: Plan = [("conv", 12, 5, 1), ("pool", 2), ("conv", 64, 5, 0), ("pool", 2)]
_CIFAR10_PLAN: Plan = [
    ("conv", 128, 3, 1), ("conv", 128, 3, 1), ("pool", 2), ("drop",),
    ("conv", 256, 3, 1), ("conv", 256, 3, 1), ("conv", 256, 3, 1), ("pool", 2), ("drop",),
    ("conv", 512, 3, 1), ("conv", 512, 3, 1), ("conv", 512, 3, 1), ("pool", 2), ("drop",),
    ("fc", 2048), ("drop",), ("fc", 2048), ("drop",),
]  # fmt: skip
_DVSGESTURE_PLAN: Plan = [
    *[entry for _ in range(6) for entry in (("conv", 128, 3, 1), ("pool", 2), ("drop",))],
    ("fc", 512), ("drop",), ("fc", 128), ("drop",),
]  # fmt: skip
_CIFAR10DVS_PLAN: Plan = [
    ("conv", 128, 3, 1), ("pool", 2), ("drop",),
    ("conv", 256, 3, 1), ("drop",), ("conv", 256, 3, 1), ("pool", 2), ("drop",),
    ("conv", 256, 3, 1), ("drop",), ("conv", 256, 3, 1), ("pool", 2), ("drop",),
    ("conv", 128, 3, 1), ("pool", 2), ("drop",),
    ("fc", 512), ("drop",), ("fc", 512), ("drop",),
]  # fmt: skip


class EventDrivenNet(nn.Module):
    """A feed-forward network of event-driven layers built from a plan.

    Input ``[T, B, in_channels, H, W]``, output ``[T, B, num_classes]`` spikes of the
    output layer. Dropout (one mask per sequence: whole channels after convolutions and
    pooling, neurons after FC layers, as in the authors' code) goes where the plan says.

    Args:
        plan: ``("conv", channels, kernel, padding)``, ``("pool", k)``, ``("fc",
            features)`` and ``("drop",)`` entries; the output layer is added.
        num_classes, in_channels, input_size: as the other zoo models (square input side
            or ``(H, W)``).
        neuron: the neurons' settings; ``neuron_kwargs`` build one instead.
        dropout: dropout probability (0 disables it).
        spikes_per_neuron: the calibration's target firing (spikes per sequence).
        teacher_spike: in training, give the label neuron a spike when the caller passes
            the labels (the authors' code; ``spikeflow train`` does).
        train_standardisation: train the layers' standardisation gains and shifts with
            the weights (True), or keep them as calibrated (False: the authors'
            ``norm_grad: 0``, their CIFAR-10 recipe).
    """

    def __init__(
        self,
        plan: Plan,
        num_classes: int,
        in_channels: int,
        input_size: int | tuple[int, int],
        neuron: EventDrivenNeuron | None = None,
        dropout: float = 0.0,
        spikes_per_neuron: float = 1.0,
        teacher_spike: bool = True,
        train_standardisation: bool = True,
    ) -> None:
        super().__init__()
        self.teacher_spike = check_flag("EventDrivenNet", "teacher_spike", teacher_spike)
        train_standardisation = check_flag(
            "EventDrivenNet", "train_standardisation", train_standardisation
        )
        num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        self.spikes_per_neuron = spikes_per_neuron
        body: list[nn.Module] = []
        channels, flat = in_channels, None
        for entry in plan:
            kind = entry[0]
            if kind == "conv":
                _, out, kernel, padding = entry
                body.append(
                    EventDrivenConv2d(channels, out, kernel, padding=padding, neuron=neuron)
                )
                channels, height, width = (
                    out,
                    height + 2 * padding - kernel + 1,
                    width + 2 * padding - kernel + 1,
                )
            elif kind == "pool":
                body.append(AdjustedAvgPool2d(entry[1]))
                height, width = height // entry[1], width // entry[1]
            elif kind == "drop":
                if dropout:
                    body.append(layers.Dropout(dropout) if flat else layers.Dropout2d(dropout))
            else:
                flat = flat or channels * height * width
                body.append(EventDrivenLinear(flat, entry[1], neuron=neuron))
                flat = entry[1]
            if height < 1 or width < 1:
                raise ConfigurationError(
                    f"EventDrivenNet: input_size {input_size} is too small for the plan "
                    f"(nothing is left after {entry})"
                )
        body.append(
            EventDrivenLinear(flat or channels * height * width, num_classes, neuron=neuron)
        )
        self.body = nn.Sequential(*body)
        if not train_standardisation:  # calibration still sets the gains (in place)
            for layer in self.body:
                for name in ("gain", "shift"):
                    parameter = getattr(layer, name, None)
                    if isinstance(parameter, nn.Parameter):
                        parameter.requires_grad_(False)
        self.register_buffer("calibrated", torch.tensor(False))

    #: Set by the builders (``neuron`` through ``neuron_kwargs``).
    builder_fixed_arguments = ("plan", "neuron")
    #: ``spikeflow train`` passes the labels as ``target`` (see :meth:`forward`).
    takes_target = True

    def forward(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        """Output spikes ``[T, B, num_classes]``; in training, ``target`` (labels ``[B]``)
        adds the output layer's teacher spike when ``teacher_spike`` is on (see
        :meth:`~spikeflow.event_driven.EventDrivenLinear.forward`)."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        if self.training:
            self._calibrate_once(x)
        *hidden, output = self.body
        for layer in hidden:
            x = layer(x)
        teach = self.training and self.teacher_spike and target is not None
        return output(x, target if teach else None)

    @eager_under_compile  # reads a buffer's value: eager, not a graph break
    def _calibrate_once(self, x: Tensor) -> None:
        if not bool(self.calibrated):
            calibrate_event_driven(self.body, x, self.spikes_per_neuron)
            self.calibrated.fill_(True)


def _zoo_model(
    name: str, plan: Plan, taus: tuple[float, float, float], doc: str, **defaults: Any
) -> Callable[..., EventDrivenNet]:
    """Register the builder ``name``: ``plan`` with the neuron time constants ``taus``
    (tau_m, tau_s, tau_grad) and the default arguments ``defaults``."""
    neuron_defaults = dict(zip(("tau_m", "tau_s", "tau_grad"), taus))

    def builder(neuron_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> EventDrivenNet:
        neuron = EventDrivenNeuron(**{**neuron_defaults, **(neuron_kwargs or {})})
        return EventDrivenNet(plan, neuron=neuron, **{**defaults, **kwargs})

    doc += (
        "; kwargs of :class:`EventDrivenNet` and ``neuron_kwargs`` for "
        ":class:`~spikeflow.event_driven.EventDrivenNeuron`."
    )
    return register_builder(name, builder, doc)


event_driven_nmnist = _zoo_model(
    "event_driven_nmnist", _NMNIST_PLAN, (8.0, 4.0, 3.0),
    "The authors' N-MNIST net (34x34x2: 12c5-P2-64c5-P2-10, tau_m 8, tau_s 4, tau_grad 3, "
    "2 spikes per neuron at calibration)",
    dropout=0.0, spikes_per_neuron=2.0, input_size=34, in_channels=2, num_classes=10,
)  # fmt: skip
event_driven_cifar10 = _zoo_model(
    "event_driven_cifar10", _CIFAR10_PLAN, (7.0, 4.0, 3.5),
    "The paper's CIFAR-10 VGG (32x32x3: 128-128-P-256x3-P-512x3-P-FC2048-FC2048-10, "
    "dropout 0.1, tau_m 7, tau_s 4, tau_grad 3.5, standardisation frozen as calibrated)",
    dropout=0.1, spikes_per_neuron=1.0, input_size=32, in_channels=3, num_classes=10,
    train_standardisation=False,
)  # fmt: skip
event_driven_dvsgesture = _zoo_model(
    "event_driven_dvsgesture", _DVSGESTURE_PLAN, (7.5, 4.0, 3.5),
    "The authors' DVS128 Gesture net (128x128x2, 11 classes: {128c3-P2} x6-FC512-FC128-11, "
    "dropout 0.1, tau_m 7.5, tau_s 4, tau_grad 3.5; T = 20, count loss 7/1, AdamW lr 1e-4)",
    dropout=0.1, spikes_per_neuron=1.0, input_size=128, in_channels=2, num_classes=11,
)  # fmt: skip
event_driven_cifar10dvs = _zoo_model(
    "event_driven_cifar10dvs", _CIFAR10DVS_PLAN, (8.0, 4.5, 4.0),
    "The authors' CIFAR10-DVS net (frames resized to 48x48 in their recipe; any size "
    "works: 128c3-P2-256c3-256c3-P2-256c3-256c3-P2-128c3-P2-FC512-FC512-10, dropout 0.05, "
    "tau_m 8, tau_s 4.5, tau_grad 4; T = 20, count loss 10/1, AdamW lr 1e-4)",
    dropout=0.05, spikes_per_neuron=1.0, input_size=48, in_channels=2, num_classes=10,
)  # fmt: skip
