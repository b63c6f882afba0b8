"""Spiking ResNet 18/34/50/101/152 (the baseline of the SEW paper, methods.md 3.1).

A block computes ``O = SN(F(S) + shortcut(S))``: the spiking neuron sits after the
addition, as ReLU does in an ANN ResNet. ``F`` is conv3x3-BN-SN-conv3x3-BN (basic) or
conv1x1-BN-SN-conv3x3-BN-SN-conv1x1-BN (bottleneck); the downsample shortcut is
conv1x1(stride)-BN. Widths and depths follow torchvision.

The skeleton :class:`ResNetSkeleton` (stem, four stages, head) is shared with the SEW
ResNets (:mod:`spikeflow.models.sew_resnet`).

**Stem.** ``stem="imagenet"`` (default): conv7x7/2-BN-SN-maxpool3x3/2, as in the
papers; the head's adaptive average pool then accepts any input of at least 1 pixel,
e.g. 32x32 (feature maps 8, 4, 2, 1 pixels) or even 16x16. ``stem="cifar"``:
conv3x3/1-BN-SN without max pool, the usual choice for 32x32 images (feature maps 32,
16, 8, 4 pixels).

**Head.** Global average pool, then the FC layer at every time step: the output is
``[T, B, num_classes]``; its mean over T equals the papers' "mean over T, then FC"
(the FC is linear).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    check_positive_int,
    init_conv_linear,
    zero_init_bn,
)
from spikeflow.models.registry import register_model
from spikeflow.surrogate import ATan

__all__ = [
    "ResNetSkeleton",
    "SpikingBasicBlock",
    "SpikingBottleneck",
    "spiking_resnet18",
    "spiking_resnet34",
    "spiking_resnet50",
    "spiking_resnet101",
    "spiking_resnet152",
]

#: IF neuron, θ = 1, hard reset, detach_reset, ATan(α=2) (methods.md 3.2).
IMAGENET_NEURON_DEFAULTS: dict[str, Any] = {"detach_reset": True, "surrogate_function": ATan()}

BlockFactory = Callable[[int, int, int, bool, NeuronFactory], nn.Module]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> layers.Conv2d:
    """3x3 convolution with padding 1 and no bias, over a sequence."""
    return layers.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> layers.Conv2d:
    """1x1 convolution without bias, over a sequence."""
    return layers.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)


class SpikingBasicBlock(nn.Module):
    """``SN(BN(conv3x3(SN(BN(conv3x3(S))))) + shortcut(S))``, input/output ``[T, B, C, H, W]``."""

    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int, downsample: bool, neuron: NeuronFactory
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = layers.BatchNorm2d(planes)
        self.sn1 = neuron()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = layers.BatchNorm2d(planes)
        self.downsample = (
            nn.Sequential(conv1x1(in_planes, planes, stride), layers.BatchNorm2d(planes))
            if downsample
            else None
        )
        self.sn2 = neuron()

    def residual(self, x: Tensor) -> Tensor:
        """The residual branch ``F(S)`` (the last BN's output, before the addition)."""
        return self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))

    def shortcut(self, x: Tensor) -> Tensor:
        """The identity or the downsample conv1x1-BN."""
        return x if self.downsample is None else self.downsample(x)

    def zero_init_residual(self) -> None:
        """γ = 0 in the branch's last BN, so ``F(S) = 0`` at init."""
        zero_init_bn(self.bn2)

    def forward(self, x: Tensor) -> Tensor:
        """Spikes ``[T, B, C', H', W']``."""
        return self.sn2(self.residual(x) + self.shortcut(x))


class SpikingBottleneck(nn.Module):
    """``SN(F(S) + shortcut(S))`` with the 1x1-3x3-1x1 branch (torchvision's v1.5 stride)."""

    expansion = 4

    def __init__(
        self, in_planes: int, planes: int, stride: int, downsample: bool, neuron: NeuronFactory
    ) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = conv1x1(in_planes, planes)
        self.bn1 = layers.BatchNorm2d(planes)
        self.sn1 = neuron()
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = layers.BatchNorm2d(planes)
        self.sn2 = neuron()
        self.conv3 = conv1x1(planes, out)
        self.bn3 = layers.BatchNorm2d(out)
        self.downsample = (
            nn.Sequential(conv1x1(in_planes, out, stride), layers.BatchNorm2d(out))
            if downsample
            else None
        )
        self.sn3 = neuron()

    def residual(self, x: Tensor) -> Tensor:
        """The residual branch ``F(S)`` (the last BN's output, before the addition)."""
        y = self.sn1(self.bn1(self.conv1(x)))
        y = self.sn2(self.bn2(self.conv2(y)))
        return self.bn3(self.conv3(y))

    def shortcut(self, x: Tensor) -> Tensor:
        """The identity or the downsample conv1x1-BN."""
        return x if self.downsample is None else self.downsample(x)

    def zero_init_residual(self) -> None:
        """γ = 0 in the branch's last BN, so ``F(S) = 0`` at init."""
        zero_init_bn(self.bn3)

    def forward(self, x: Tensor) -> Tensor:
        """Spikes ``[T, B, 4*planes, H', W']``."""
        return self.sn3(self.residual(x) + self.shortcut(x))


class ResNetSkeleton(nn.Module):
    """Stem, four stages of residual blocks and the classification head.

    Input ``[T, B, in_channels, H, W]``, output ``[T, B, num_classes]``.

    Args:
        block: a block class taking ``(in_planes, planes, stride, downsample, neuron)``
            with an ``expansion`` attribute and a ``zero_init_residual()`` method.
        depths: blocks per stage (4 numbers).
        num_classes: outputs of the FC head.
        in_channels: channels of the input.
        neuron: neuron name/class/factory (see :mod:`spikeflow.models.common`).
        neuron_kwargs: arguments of every neuron (override ``neuron_defaults``).
        zero_init_residual: zero-init the last BN of every block's residual branch.
        stem: ``"imagenet"`` (conv7x7/2-BN-SN-maxpool/2) or ``"cifar"`` (conv3x3-BN-SN).
        base_width: channels of the stem and the first stage (64); the stages have
            ``base_width * (1, 2, 4, 8)`` planes.
        neuron_defaults: the model's default neuron arguments.
    """

    #: Arguments the registered builders set themselves (not user arguments).
    builder_fixed_arguments: ClassVar[tuple[str, ...]] = ("block", "depths")

    def __init__(
        self,
        block: Any,
        depths: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        neuron: NeuronSpec = "if",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
        stem: str = "imagenet",
        base_width: int = 64,
        neuron_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        if len(depths) != 4:
            raise ConfigurationError(f"depths must have 4 stages, got {list(depths)}")
        factory = NeuronFactory(
            neuron,
            neuron_kwargs,
            IMAGENET_NEURON_DEFAULTS if neuron_defaults is None else neuron_defaults,
        )
        check_positive_int("base_width", base_width)
        self.stem = _make_stem(stem, in_channels, base_width, factory)
        self.stem_kind = stem
        in_planes = base_width
        widths = [base_width * m for m in (1, 2, 4, 8)]
        stages = []
        for index, (planes, count) in enumerate(zip(widths, depths, strict=True)):
            check_positive_int(f"depths[{index}]", count)
            stride = 1 if index == 0 else 2
            blocks = []
            for j in range(count):
                s = stride if j == 0 else 1
                downsample = s != 1 or in_planes != planes * block.expansion
                blocks.append(block(in_planes, planes, s, downsample, factory))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = layers.AdaptiveAvgPool2d(1)
        self.flatten = layers.Flatten()
        self.fc = layers.Linear(in_planes, num_classes)
        init_conv_linear(self)
        if zero_init_residual:
            for m in self.modules():
                if m is not self and hasattr(m, "zero_init_residual"):
                    m.zero_init_residual()

    def blocks(self) -> list[nn.Module]:
        """The residual blocks, in order."""
        return [b for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for b in stage]

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's output ``[T, B, C, h, w]``."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]``."""
        return self.fc(self.flatten(self.avgpool(self.forward_features(x))))


def _make_stem(kind: str, in_channels: int, width: int, neuron: NeuronFactory) -> nn.Sequential:
    if kind == "imagenet":
        return nn.Sequential(
            layers.Conv2d(in_channels, width, 7, 2, 3, bias=False),
            layers.BatchNorm2d(width),
            neuron(),
            layers.MaxPool2d(3, 2, 1),
        )
    if kind == "cifar":
        return nn.Sequential(
            layers.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            layers.BatchNorm2d(width),
            neuron(),
        )
    raise ConfigurationError(f"stem must be 'imagenet' or 'cifar', got {kind!r}")


RESNET_DEPTHS: dict[int, tuple[Any, tuple[int, int, int, int]]] = {
    18: (SpikingBasicBlock, (2, 2, 2, 2)),
    34: (SpikingBasicBlock, (3, 4, 6, 3)),
    50: (SpikingBottleneck, (3, 4, 6, 3)),
    101: (SpikingBottleneck, (3, 4, 23, 3)),
    152: (SpikingBottleneck, (3, 8, 36, 3)),
}


def _spiking_resnet(depth: int, **kwargs: Any) -> ResNetSkeleton:
    block, depths = RESNET_DEPTHS[depth]
    return ResNetSkeleton(block, depths, **kwargs)


_DOC = """Spiking ResNet-{depth}: ``[T, B, C, H, W]`` → ``[T, B, num_classes]``.

    Keyword arguments: ``num_classes`` (1000), ``in_channels`` (3), ``neuron`` ("if"),
    ``neuron_kwargs``, ``zero_init_residual`` (False), ``stem`` ("imagenet" or "cifar"),
    ``base_width`` (64); see :class:`ResNetSkeleton`. Default neuron: IF, detach_reset, ATan(α=2).
    """


@register_model("spiking_resnet18")
def spiking_resnet18(**kwargs: Any) -> ResNetSkeleton:
    return _spiking_resnet(18, **kwargs)


@register_model("spiking_resnet34")
def spiking_resnet34(**kwargs: Any) -> ResNetSkeleton:
    return _spiking_resnet(34, **kwargs)


@register_model("spiking_resnet50")
def spiking_resnet50(**kwargs: Any) -> ResNetSkeleton:
    return _spiking_resnet(50, **kwargs)


@register_model("spiking_resnet101")
def spiking_resnet101(**kwargs: Any) -> ResNetSkeleton:
    return _spiking_resnet(101, **kwargs)


@register_model("spiking_resnet152")
def spiking_resnet152(**kwargs: Any) -> ResNetSkeleton:
    return _spiking_resnet(152, **kwargs)


for _depth, _fn in (
    (18, spiking_resnet18),
    (34, spiking_resnet34),
    (50, spiking_resnet50),
    (101, spiking_resnet101),
    (152, spiking_resnet152),
):
    _fn.__doc__ = _DOC.format(depth=_depth)
