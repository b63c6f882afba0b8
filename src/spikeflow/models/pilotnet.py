"""PilotNet steering-angle regressors in the layouts of Lava-DL's PilotNet tutorials.

Both map a dashboard image (repeated over ``T`` steps, or a sequence of frames) to one
steering angle per step, ``[T, B, C, H, W]`` -> ``[T, B, 1]``; ``spikeflow train
--dataset pilotnet`` trains them (docs/training.md, "Regression").

* :class:`PilotNetSDNN` (``pilotnet_sdnn``): the sigma-delta network of Lava-DL's
  ``slayer/pilotnet/train.ipynb`` (deployed by ``netx/pilotnet_sdnn``) on 33 x 100
  images: a delta-encoded input, four conv units (24, 36, 64, 64 channels, 3 x 3 kernels,
  strides 2, 2, (2, 1), 1, padding (1, 0) on the third), three dense units (100, 50, 10)
  and a linear read-out of one value with sigma decoding. Every unit is sigma ->
  mean-only batch norm -> ReLU -> delta (θ = 0.1, learned, one per layer); the dense
  units drop neurons with p = 0.2 (the same neurons at every step); every synapse is
  bias-free and weight-normalised (its initial weights doubled: Lava-DL's
  ``weight_scale=2``).
* :class:`PilotNetLIF` (``pilotnet_lif``): the layout of ``netx/pilotnet_snn``'s network
  on 66 x 200 images: an input layer of spiking neurons, five conv layers (24, 36, 48,
  64, 64 channels; 3 x 3; strides 2, 2, 2, (2, 1), 1; padding (1, 0) on the fourth) and
  dense layers of 100, 50 and 10 neurons, all bias-free with CUBA LIF neurons
  (``cuba_lif`` by default), then a bias-free linear read-out of one value per step,
  the current into Lava-DL's non-spiking output neuron, whose membrane over a sample
  the tutorial reads (``--regression-readout mean``: the mean of that current).

The neurons' parameters of Lava-DL's trained LIF network live in its HDF5 file, which
spikeflow does not read here: ``neuron_kwargs`` sets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.layers.lava_norm import MeanOnlyBatchNorm
from spikeflow.layers.sigma_delta import DeltaEncoder, DeltaSynapse, SigmaDecoder, SigmaDelta
from spikeflow.models.common import NeuronFactory, NeuronSpec, check_input, check_positive_int
from spikeflow.models.registry import register_model

__all__ = ["PILOTNET_LIF_CONVS", "PILOTNET_SDNN_CONVS", "PilotNetLIF", "PilotNetSDNN"]

#: ``(out_channels, stride, padding)`` of each 3 x 3 conv, (H, W) order.
PILOTNET_SDNN_CONVS = ((24, 2, 0), (36, 2, 0), (64, (2, 1), (1, 0)), (64, 1, 0))
PILOTNET_LIF_CONVS = ((24, 2, 0), (36, 2, 0), (48, 2, 0), (64, (2, 1), (1, 0)), (64, 1, 0))
#: The dense layers after the convs; then the read-out of one value.
PILOTNET_DENSE = (100, 50, 10)


def _size(input_size: Any) -> tuple[int, int]:
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    if not isinstance(input_size, (tuple, list)) or len(input_size) != 2:
        raise ConfigurationError(f"input_size must be (H, W) or one int; got {input_size!r}")
    return tuple(check_positive_int("input_size", s) for s in input_size)  # type: ignore[return-value]


def _conv_out(size: tuple[int, int], stride: Any, padding: Any) -> tuple[int, int]:
    s = (stride, stride) if isinstance(stride, int) else stride
    p = (padding, padding) if isinstance(padding, int) else padding
    return tuple((n + 2 * pi - 3) // si + 1 for n, si, pi in zip(size, s, p))  # type: ignore[return-value]


def _flat_features(name: str, size: tuple[int, int], convs: tuple) -> int:
    """Features after the convs of an ``size`` input; an error if a side vanishes."""
    h, w = size
    for _, stride, padding in convs:
        h, w = _conv_out((h, w), stride, padding)
        if h < 1 or w < 1:
            raise ConfigurationError(
                f"{name}: input_size {size} is too small for its {len(convs)} convs"
            )
    return convs[-1][0] * h * w


def _scaled_weight_norm(layer: nn.Module, scale: float) -> nn.Module:
    """``layer`` with its initial weights times ``scale``, weight-normalised (per output)."""
    with torch.no_grad():
        layer.weight.mul_(scale)
    return weight_norm(layer)


class _FoldedMeanOnlyNorm(nn.Module):
    """:class:`MeanOnlyBatchNorm` on one folded step ``[N, C, ...]`` (inside a sigma-delta
    unit, which folds time into the batch): the statistics span time, batch and space."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.norm = MeanOnlyBatchNorm(num_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.unsqueeze(0)).squeeze(0)


class PilotNetSDNN(nn.Module):
    """Lava-DL's PilotNet sigma-delta network (module docstring).

    Args:
        num_classes: values regressed (1: the steering angle).
        in_channels: image channels (3).
        input_size: ``(H, W)``; Lava-DL's 33 x 100 (the first dense layer's width follows).
        threshold: the delta units' initial θ (learned, one per layer).
        dropout: of the dense units' neurons (same mask at every step); 0: off.
        weight_scale: multiplies the initial weights before weight normalisation.
        learn_threshold: learn each unit's θ (Lava-DL's ``requires_grad``; θ must then
            be positive), else keep it fixed (θ = 0: the network computes its ANN).
        tau_grad, scale_grad: the learned θ's gradient (Lava-DL's ``tau_grad``,
            ``scale_grad``; :class:`~spikeflow.layers.DeltaEncoder`).
    """

    def __init__(
        self,
        num_classes: int = 1,
        in_channels: int = 3,
        input_size: int | tuple[int, int] | list[int] = (33, 100),
        threshold: float = 0.1,
        dropout: float = 0.2,
        weight_scale: float = 2.0,
        tau_grad: float = 0.5,
        scale_grad: float = 1.0,
        learn_threshold: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError(f"dropout must be in [0, 1); got {dropout}")
        size = _size(input_size)
        flat = _flat_features("PilotNetSDNN", size, PILOTNET_SDNN_CONVS)
        self.in_channels = in_channels
        if not isinstance(learn_threshold, bool):
            raise ConfigurationError(
                f"learn_threshold must be true or false; got {learn_threshold!r}"
            )
        delta: dict[str, Any] = {"requires_grad": learn_threshold}
        if learn_threshold:
            delta.update(tau_grad=tau_grad, scale_grad=scale_grad)

        def unit(channels: int) -> SigmaDelta:
            act = nn.Sequential(_FoldedMeanOnlyNorm(channels), nn.ReLU())
            return SigmaDelta(act, threshold=threshold, **delta)

        blocks: list[nn.Module] = [DeltaEncoder(threshold, **delta)]
        channels = in_channels
        for out, stride, padding in PILOTNET_SDNN_CONVS:
            conv = nn.Conv2d(channels, out, 3, stride=stride, padding=padding, bias=False)
            blocks += [DeltaSynapse(_scaled_weight_norm(conv, weight_scale)), unit(out)]
            channels = out
        blocks.append(layers.Flatten())
        width = flat
        for out in PILOTNET_DENSE:
            dense = nn.Linear(width, out, bias=False)
            blocks += [DeltaSynapse(_scaled_weight_norm(dense, weight_scale)), unit(out)]
            if dropout > 0:
                blocks.append(layers.Dropout(dropout))
            width = out
        readout = nn.Linear(width, num_classes, bias=False)
        blocks += [DeltaSynapse(_scaled_weight_norm(readout, weight_scale)), SigmaDecoder()]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, num_classes]`` (the accumulated read-out)."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        return self.blocks(x)


#: The LIF network's neuron defaults: Lava-DL's CUBA dynamics (current and membrane add
#: their input unscaled); the rest is the neuron's.
PILOTNET_LIF_DEFAULTS: dict[str, Any] = {"r": "tau_syn*tau_mem"}


class PilotNetLIF(nn.Module):
    """The PilotNet LIF network of Lava-DL's ``netx/pilotnet_snn`` (module docstring).

    Args:
        num_classes: values regressed (1: the steering angle).
        in_channels: image channels (3).
        input_size: ``(H, W)``; Lava-DL's 66 x 200.
        neuron, neuron_kwargs: the spiking neurons (default ``"cuba_lif"``), over
            :data:`PILOTNET_LIF_DEFAULTS` (those a neuron does not take are dropped).
    """

    def __init__(
        self,
        num_classes: int = 1,
        in_channels: int = 3,
        input_size: int | tuple[int, int] | list[int] = (66, 200),
        neuron: NeuronSpec = "cuba_lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        size = _size(input_size)
        flat = _flat_features("PilotNetLIF", size, PILOTNET_LIF_CONVS)
        spiking = NeuronFactory(neuron, neuron_kwargs, defaults=PILOTNET_LIF_DEFAULTS)
        self.in_channels = in_channels
        blocks: list[nn.Module] = [spiking()]  # the input layer: the image drives neurons
        channels = in_channels
        for out, stride, padding in PILOTNET_LIF_CONVS:
            conv = layers.Conv2d(channels, out, 3, stride=stride, padding=padding, bias=False)
            blocks += [conv, spiking()]
            channels = out
        blocks.append(layers.Flatten())
        width = flat
        for out in PILOTNET_DENSE:
            blocks += [layers.Linear(width, out, bias=False), spiking()]
            width = out
        blocks.append(layers.Linear(width, num_classes, bias=False))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, num_classes]`` (the read-out's input current)."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        return self.blocks(x)


@register_model("pilotnet_sdnn")
def pilotnet_sdnn(num_classes: int = 1, in_channels: int = 3, **kwargs: Any) -> PilotNetSDNN:
    """Lava-DL's PilotNet SDNN (:class:`PilotNetSDNN`); ``kwargs`` are its arguments."""
    return PilotNetSDNN(num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model("pilotnet_lif")
def pilotnet_lif(
    num_classes: int = 1,
    in_channels: int = 3,
    neuron: NeuronSpec = "cuba_lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> PilotNetLIF:
    """The PilotNet LIF network (:class:`PilotNetLIF`); ``kwargs`` are its arguments."""
    return PilotNetLIF(num_classes, in_channels, neuron=neuron, neuron_kwargs=neuron_kwargs,
                       **kwargs)  # fmt: skip
