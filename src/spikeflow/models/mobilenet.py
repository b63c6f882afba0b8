"""Spiking MobileNetV2 (Sandler et al. 2018, as Norse 1.1's ``models.mobilenet``).

Inverted residual blocks: a pointwise (1x1) expansion by ``t`` (omitted when ``t = 1``),
a depthwise 3x3 convolution (``groups`` = channels, stride 1 or 2), each followed by BN
and a spiking neuron, then a linear pointwise projection (conv1x1-BN, no neuron: the
"linear bottleneck"). A block with stride 1 and equal in/out channels adds its input
(real-valued, as the blocks end without a neuron) to its output. Stem: conv3x3-BN-SN
(stride 2, ``stem="imagenet"``; stride 1 with ``stem="cifar"``, for 32x32 or smaller
inputs); head: conv1x1-BN-SN to ``last_channel`` (1280, times ``width_mult`` when above
1), global average pool, dropout (mask shared over T) and FC at every step.
Output ``[T, B, num_classes]``. Default neuron: IF, detach_reset, ATan(α=2), as the
other convolutional zoo models; Norse's is its LIF (docs/models_convnets.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    check_positive_int,
)
from spikeflow.models.registry import register_model
from spikeflow.models.resnet import IMAGENET_NEURON_DEFAULTS

__all__ = [
    "MOBILENET_V2_SETTING",
    "InvertedResidual",
    "SpikingMobileNetV2",
    "conv_bn_neuron",
    "make_divisible",
    "spiking_mobilenet_v2",
]

#: The paper's stages: (expansion t, output channels c, blocks n, first stride s).
MOBILENET_V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``),
    one ``divisor`` more when rounding lost over 10% (the paper's channel rounding)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_neuron(
    in_channels: int,
    out_channels: int,
    neuron: NeuronFactory,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
) -> nn.Sequential:
    """Conv (no bias, "same" padding) → BN → neuron, over ``[T, B, C, H, W]``."""
    return nn.Sequential(
        layers.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            (kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        ),
        layers.BatchNorm2d(out_channels),
        neuron(),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1, when ``expand_ratio`` > 1) → depthwise 3x3 → linear 1x1 projection,
    plus the input when ``stride`` is 1 and the channels match.

    Args:
        in_channels, out_channels: the block's channels.
        stride: the depthwise convolution's stride (1 or 2).
        expand_ratio: hidden channels = in_channels * expand_ratio.
        neuron: the neuron factory.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: int,
        neuron: NeuronFactory,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigurationError(f"InvertedResidual stride must be 1 or 2, got {stride!r}")
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        blocks: list[nn.Module] = []
        if expand_ratio != 1:
            blocks.append(conv_bn_neuron(in_channels, hidden, neuron, kernel_size=1))
        blocks += [
            conv_bn_neuron(hidden, hidden, neuron, stride=stride, groups=hidden),
            layers.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            layers.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, out_channels, H', W']``."""
        out = self.conv(x)
        return x + out if self.use_residual else out


def _check_setting(setting: Sequence[Sequence[int]]) -> list[tuple[int, int, int, int]]:
    rows = list(setting)
    if not rows:
        raise ConfigurationError("inverted_residual_setting must not be empty")
    checked = []
    for index, row in enumerate(rows):
        if len(row) != 4 or any(isinstance(v, bool) or not isinstance(v, int) for v in row):
            raise ConfigurationError(
                f"inverted_residual_setting[{index}] must be 4 ints (t, c, n, s), got {row!r}"
            )
        t, c, n, s = row
        if t < 1 or c < 1 or n < 1 or s not in (1, 2):
            raise ConfigurationError(
                f"inverted_residual_setting[{index}] = {tuple(row)}: "
                "need t, c, n >= 1 and s in (1, 2)"
            )
        checked.append((t, c, n, s))
    return checked


class SpikingMobileNetV2(nn.Module):
    """Spiking MobileNetV2: ``[T, B, C, H, W]`` → ``[T, B, num_classes]``.

    Args:
        num_classes, in_channels: output classes (1000) and input channels (3).
        width_mult: multiplies every width (rounded to ``round_nearest``); the last
            conv keeps 1280 channels below 1.0 (the paper's rule).
        neuron, neuron_kwargs: the spiking neuron (default IF, detach_reset, ATan).
        stem: ``"imagenet"`` (first conv stride 2, 32x down-sampling) or ``"cifar"``
            (stride 1, 16x: for 32x32 and smaller inputs).
        dropout: dropout probability before the FC (0.2).
        round_nearest: channel multiple (8; 1 turns rounding off).
        inverted_residual_setting: the stages as (t, c, n, s) rows
            (:data:`MOBILENET_V2_SETTING`).

    Raises:
        ConfigurationError: a bad argument.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        neuron: NeuronSpec = "if",
        neuron_kwargs: Mapping[str, Any] | None = None,
        stem: str = "imagenet",
        dropout: float = 0.2,
        round_nearest: int = 8,
        inverted_residual_setting: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_positive_int("round_nearest", round_nearest)
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)):
            raise ConfigurationError(f"width_mult must be a number, got {width_mult!r}")
        if not 0 < width_mult < math.inf:
            raise ConfigurationError(f"width_mult must be finite and > 0, got {width_mult!r}")
        if stem not in ("imagenet", "cifar"):
            raise ConfigurationError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise ConfigurationError(f"dropout must be a number, got {dropout!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError(f"dropout must be in [0, 1), got {dropout!r}")
        setting = _check_setting(
            MOBILENET_V2_SETTING if inverted_residual_setting is None else inverted_residual_setting
        )
        factory = NeuronFactory(neuron, neuron_kwargs, IMAGENET_NEURON_DEFAULTS)
        channels = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        stem_stride = 2 if stem == "imagenet" else 1
        feats: list[nn.Module] = [
            conv_bn_neuron(in_channels, channels, factory, stride=stem_stride)
        ]
        for t, c, n, s in setting:
            out_channels = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                feats.append(
                    InvertedResidual(channels, out_channels, s if i == 0 else 1, t, factory)
                )
                channels = out_channels
        feats.append(conv_bn_neuron(channels, self.last_channel, factory, kernel_size=1))
        self.features = nn.Sequential(*feats)
        self.pool = layers.AdaptiveAvgPool2d(1)
        self.flatten = layers.Flatten()
        self.classifier = nn.Sequential(
            layers.Dropout(dropout), layers.Linear(self.last_channel, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]``."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        return self.classifier(self.flatten(self.pool(self.features(x))))


@register_model("spiking_mobilenet_v2")
def spiking_mobilenet_v2(**kwargs: Any) -> SpikingMobileNetV2:
    """Spiking MobileNetV2; kwargs of :class:`SpikingMobileNetV2` (``width_mult``,
    ``num_classes``, ``in_channels``, ``neuron``, ``neuron_kwargs``, ``stem``,
    ``dropout``, ``round_nearest``, ``inverted_residual_setting``)."""
    return SpikingMobileNetV2(**kwargs)
