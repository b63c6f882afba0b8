"""Max-ResNet (the ResNet of "Spiking Neural Networks Need High Frequency Information",
arXiv 2505.18608, 2025): a membrane-shortcut ResNet whose downsampling blocks max-pool.

Each block is ``x + BN(conv3x3(LIF(BN(conv3x3(LIF(x))))))`` (the neurons start the
branch; the shortcut carries real values, as MS-ResNet's). A stage's first block that
halves the maps does it with a 3x3 max pool of stride 2 (padding 1) after its first
batch norm, its convolutions at stride 1, and its shortcut with ``BN(conv1x1, stride
2)``; a block that changes the width without halving has the shortcut ``BN(conv1x1)``.
Stem: ``BN(conv(k x k, stride s))`` (``stem_kernel_size``, ``stem_stride``; an optional
3x3 max pool). Head: ``LIF``, a global average pool and ``FC`` at every step, output
``[T, B, num_classes]`` (SpikingJelly's returns the mean over time).

``max_resnet18`` is the paper's CIFAR Max-ResNet-18 (SpikingJelly 2.0's
``model.max_resnet18``): a 3x3 stem of stride 1 to 64 channels, three stages of 3, 3
and 2 blocks with 128, 256 and 512 channels (the first at stride 1), 10 classes. The
layers and their names are SpikingJelly's ``model.MaxResNet``: its state dict loads as
it is. Batch norms start at γ = 1 (the last of each block too). Neurons: LIF with τ = 2
and a detached reset (SpikingJelly's defaults for this model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.models.common import NeuronFactory, NeuronSpec, check_input, check_positive_int
from spikeflow.models.registry import register_model

__all__ = ["MAX_RESNET_NEURON_DEFAULTS", "MaxResNet", "MaxResNetBlock", "max_resnet18"]

#: Max-ResNet's neurons: LIF, τ = 2, reset detached (SpikingJelly's defaults for it).
MAX_RESNET_NEURON_DEFAULTS: dict[str, Any] = {"tau": 2.0, "detach_reset": True}


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> layers.Conv2d:
    return layers.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)


class MaxResNetBlock(nn.Module):
    """``shortcut(x) + BN(conv3x3(LIF(pool(BN(conv3x3(LIF(x)))))))`` on ``[T, B, C, H, W]``;
    ``pool`` is a 3x3 max pool of stride ``stride`` when ``stride > 1``, else nothing.

    Args:
        in_channels, out_channels: the widths.
        stride: 1, or the max pool's (and the shortcut's) stride.
        make_neuron: a fresh multi-step neuron per call.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, make_neuron: NeuronFactory
    ) -> None:
        super().__init__()
        self.spike1 = make_neuron()
        self.conv1 = _conv(in_channels, out_channels, 3)
        self.bn1 = layers.BatchNorm2d(out_channels)
        self.spike2 = make_neuron()
        self.conv2 = _conv(out_channels, out_channels, 3)
        self.bn2 = layers.BatchNorm2d(out_channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                _conv(in_channels, out_channels, 1, stride), layers.BatchNorm2d(out_channels)
            )
        if stride != 1:
            self.max_pool = layers.MaxPool2d(3, stride, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, C', ⌈H/s⌉, ⌈W/s⌉]`` (real values)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.conv1(self.spike1(x)))
        if hasattr(self, "max_pool"):
            out = self.max_pool(out)
        return self.bn2(self.conv2(self.spike2(out))) + identity


class MaxResNet(nn.Module):
    """Max-ResNet (module docstring): ``[T, B, C, H, W]`` → ``[T, B, num_classes]``.

    Args:
        depths: blocks per stage (3 or 4 values).
        num_classes, in_channels: output classes and input channels.
        stage_channels: each stage's width (``base_channels · 2^i`` when None).
        base_channels: the stem's width (64).
        stem_kernel_size, stem_stride, stem_pool: the stem convolution's kernel and
            stride, and a 3x3 max pool of stride 2 after it.
        first_stage_stride: the first stage's stride (1; the others halve).
        neuron, neuron_kwargs: the spiking neurons, over :data:`MAX_RESNET_NEURON_DEFAULTS`.
        zero_init_residual: γ = 0 in each block's last batch norm (default False: 1).

    Raises:
        ConfigurationError: ``depths`` not 3 or 4 positive integers, ``stage_channels``
            of another length, or another size that is not a positive integer.
    """

    #: Arguments the registered builders set themselves (not user arguments).
    builder_fixed_arguments: ClassVar[tuple[str, ...]] = ("depths",)

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 2),
        num_classes: int = 10,
        in_channels: int = 3,
        stage_channels: Sequence[int] | None = (128, 256, 512),
        base_channels: int = 64,
        stem_kernel_size: int = 3,
        stem_stride: int = 1,
        stem_pool: bool = False,
        first_stage_stride: int = 1,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(depths, (str, bytes)) or not isinstance(depths, Sequence) \
                or len(depths) not in (3, 4):  # fmt: skip
            raise ConfigurationError(
                f"MaxResNet: depths must be 3 or 4 stage depths, got {depths!r}"
            )
        for i, depth in enumerate(depths):
            check_positive_int(f"MaxResNet: depths[{i}]", depth)
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                            ("base_channels", base_channels),
                            ("stem_kernel_size", stem_kernel_size), ("stem_stride", stem_stride),
                            ("first_stage_stride", first_stage_stride)):  # fmt: skip
            check_positive_int(f"MaxResNet: {name}", value)
        if stage_channels is None:
            stage_channels = [base_channels * 2**i for i in range(len(depths))]
        if len(stage_channels) != len(depths):
            raise ConfigurationError(
                f"MaxResNet: stage_channels {list(stage_channels)} must have one width per "
                f"stage ({len(depths)})"
            )
        for i, width in enumerate(stage_channels):
            check_positive_int(f"MaxResNet: stage_channels[{i}]", width)
        make = NeuronFactory(neuron, neuron_kwargs, MAX_RESNET_NEURON_DEFAULTS)
        self.in_channels, self.num_classes = in_channels, num_classes
        stem: list[nn.Module] = [
            _conv(in_channels, base_channels, stem_kernel_size, stem_stride),
            layers.BatchNorm2d(base_channels),
        ]
        if stem_pool:
            stem.append(layers.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        channels = base_channels
        for i, (depth, width) in enumerate(zip(depths, stage_channels, strict=True)):
            stride = first_stage_stride if i == 0 else 2
            blocks = [MaxResNetBlock(channels, width, stride, make)]
            blocks += [MaxResNetBlock(width, width, 1, make) for _ in range(1, depth)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            channels = width
        self.stages = len(depths)
        self.head_lif = make()
        self.avgpool = layers.AdaptiveAvgPool2d(1)
        self.head = layers.Linear(channels, num_classes)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, MaxResNetBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]``."""
        check_input(x, "MaxResNet", "[T, B, C, H, W]", 5, self.in_channels)
        x = self.stem(x)
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.head(self.avgpool(self.head_lif(x)).flatten(2))


@register_model("max_resnet18")
def max_resnet18(**kwargs: Any) -> MaxResNet:
    """Max-ResNet-18, the paper's CIFAR model (SpikingJelly 2.0's ``model.max_resnet18``):
    blocks (3, 3, 2) of 128, 256 and 512 channels after a 3x3 stem of stride 1, 10
    classes; kwargs of :class:`MaxResNet`."""
    return MaxResNet((3, 3, 2), **kwargs)
