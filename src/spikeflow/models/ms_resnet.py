"""MS-ResNet 18/34/104: membrane-shortcut ResNets (Hu et al., TNNLS 2024; methods.md 6).

The shortcut carries real-valued pre-activations, and the neuron sits at the start of
the residual branch so every convolution receives spikes::

    x_{l+1} = shortcut(x_l) + BN0(conv3x3(SN(BN(conv3x3(SN(x_l))))))

* All norms are tdBN (:class:`~spikeflow.layers.ThresholdDependentBatchNorm2d`,
  γ initialised to ``bn_threshold`` = θ = 0.5); BN0, the branch's last tdBN, has γ = 0
  at init, the paper's design (``zero_init_residual=True`` by default).
* Shortcut when the shape changes: conv1x1(stride)-tdBN for 18/34,
  avgpool2-conv1x1-tdBN for 104.
* Stem, as in the authors' code: 18/34 conv7x7/2-tdBN; 104 three 3x3 convs (the first
  with stride 2) then tdBN; no max pool. All four stages downsample by 2, so a 224x224
  input ends at 7x7 and a 32x32 input at 1x1. ``stem="cifar"`` uses conv3x3/1-tdBN and
  keeps the first stage at stride 1 (32x32 → 4x4).
* Head: SN, global average pool, dropout (0.2 for 104, 0 otherwise; mask shared over
  T), FC at every step → ``[T, B, num_classes]``.
* Default neuron: the authors' LIF ``u[t] = 0.25 u[t-1] (1 - o[t-1]) + x[t]`` with
  θ = 0.5, strict firing ``u > θ``, detached reset and a rectangular surrogate of
  width 1 (LIFNode with ``tau=4/3``, ``decay_input=False``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_positive_int,
    init_conv_linear,
    zero_init_bn,
)
from spikeflow.models.registry import register_model
from spikeflow.models.resnet import FourStageNet, conv1x1, conv3x3
from spikeflow.surrogate import Rect

__all__ = ["MSBasicBlock", "MSResNet", "ms_resnet18", "ms_resnet34", "ms_resnet104"]

#: The MS-ResNet authors' LIF: decay 0.25, θ = 0.5, strict, detached hard reset, Rect.
MS_NEURON_DEFAULTS: dict[str, Any] = {
    "tau": 4.0 / 3.0,
    "decay_input": False,
    "v_threshold": 0.5,
    "v_reset": 0.0,
    "strict_firing": True,
    "detach_reset": True,
    "surrogate_function": Rect(alpha=1.0),
}


def _tdbn(channels: int, threshold: float) -> layers.ThresholdDependentBatchNorm2d:
    return layers.ThresholdDependentBatchNorm2d(channels, alpha=1.0, v_threshold=threshold)


class MSBasicBlock(nn.Module):
    """Membrane-shortcut basic block; input and output are membrane-like ``[T, B, C, H, W]``.

    Args:
        in_planes, planes, stride: as in a ResNet basic block.
        neuron: the neuron factory.
        bn_threshold: θ of the tdBN layers.
        avgpool_shortcut: downsample the shortcut with avgpool2 + conv1x1 (MS-ResNet-104)
            instead of a strided conv1x1.
    """

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        neuron: NeuronFactory,
        bn_threshold: float = 0.5,
        avgpool_shortcut: bool = False,
    ) -> None:
        super().__init__()
        self.sn1 = neuron()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = _tdbn(planes, bn_threshold)
        self.sn2 = neuron()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = _tdbn(planes, bn_threshold)
        nn.init.zeros_(self.bn2.weight)  # BN0
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_planes != planes:
            if avgpool_shortcut and stride != 1:
                self.downsample = nn.Sequential(
                    layers.AvgPool2d(stride, stride, ceil_mode=True),
                    conv1x1(in_planes, planes),
                    _tdbn(planes, bn_threshold),
                )
            else:
                self.downsample = nn.Sequential(
                    conv1x1(in_planes, planes, stride), _tdbn(planes, bn_threshold)
                )

    def residual(self, x: Tensor) -> Tensor:
        """The branch ``BN0(conv(SN(BN(conv(SN(x))))))``."""
        y = self.bn1(self.conv1(self.sn1(x)))
        return self.bn2(self.conv2(self.sn2(y)))

    def shortcut(self, x: Tensor) -> Tensor:
        """The identity or the downsample path (no neuron: the shortcut is a membrane)."""
        return x if self.downsample is None else self.downsample(x)

    def zero_init_residual(self) -> None:
        """γ = β = 0 in BN0, so the block is ``shortcut(x)`` at init."""
        zero_init_bn(self.bn2)

    def forward(self, x: Tensor) -> Tensor:
        """``shortcut(x) + residual(x)``."""
        return self.shortcut(x) + self.residual(x)


class MSResNet(FourStageNet):
    """MS-ResNet: ``[T, B, C, H, W]`` → ``[T, B, num_classes]`` (see the module docs).

    Args:
        depths: basic blocks per stage (4 numbers).
        num_classes, in_channels: output classes and input channels.
        neuron, neuron_kwargs: the spiking neuron (default: the authors' LIF).
        zero_init_residual: γ = 0 in each block's last tdBN (default True, the paper's
            design); False gives it γ = ``bn_threshold``.
        stem: ``"imagenet"`` (conv7x7/2), ``"imagenet3"`` (three 3x3 convs, first
            stride 2; MS-ResNet-104's) or ``"cifar"`` (conv3x3/1, first stage stride 1).
        avgpool_shortcut: avgpool2-conv1x1-tdBN downsample shortcut (MS-ResNet-104).
        dropout: dropout before the FC (mask shared over T).
        bn_threshold: θ of the tdBN layers (0.5).
        base_width: channels of the stem and the first stage (64); the stages have
            ``base_width * (1, 2, 4, 8)`` planes.
    """

    #: Arguments the registered builders set themselves (not user arguments).
    builder_fixed_arguments: ClassVar[tuple[str, ...]] = ("depths",)

    def __init__(
        self,
        depths: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = True,
        stem: str = "imagenet",
        avgpool_shortcut: bool = False,
        dropout: float = 0.0,
        bn_threshold: float = 0.5,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        self._check_sizes(num_classes, in_channels, depths)
        factory = NeuronFactory(neuron, neuron_kwargs, MS_NEURON_DEFAULTS)
        w = check_positive_int("base_width", base_width)
        if stem == "imagenet":
            self.stem = nn.Sequential(
                layers.Conv2d(in_channels, w, 7, 2, 3, bias=False), _tdbn(w, bn_threshold)
            )
        elif stem == "imagenet3":
            self.stem = nn.Sequential(
                layers.Conv2d(in_channels, w, 3, 2, 1),
                layers.Conv2d(w, w, 3, 1, 1),
                layers.Conv2d(w, w, 3, 1, 1),
                _tdbn(w, bn_threshold),
            )
        elif stem == "cifar":
            self.stem = nn.Sequential(
                layers.Conv2d(in_channels, w, 3, 1, 1, bias=False), _tdbn(w, bn_threshold)
            )
        else:
            raise ConfigurationError(
                f"stem must be 'imagenet', 'imagenet3' or 'cifar', got {stem!r}"
            )

        def make_block(in_planes: int, planes: int, stride: int) -> nn.Module:
            return MSBasicBlock(in_planes, planes, stride, factory, bn_threshold, avgpool_shortcut)

        in_planes = self._init_stages(depths, w, 1 if stem == "cifar" else 2, 1, make_block)
        self.sn = factory()
        self.avgpool = layers.AdaptiveAvgPool2d(1)
        self.flatten = layers.Flatten()
        # Dropout validates p (a negative one is an error, not "no dropout").
        self.dropout = layers.Dropout(dropout) if dropout != 0 else nn.Identity()
        self.fc = layers.Linear(in_planes, num_classes)
        init_conv_linear(self)
        for m in self.modules():
            if isinstance(m, layers.ThresholdDependentBatchNorm2d):
                m.reset_parameters()
        for block in self.blocks():
            if zero_init_residual:
                block.zero_init_residual()
            else:
                nn.init.constant_(block.bn2.weight, bn_threshold)

    def forward_features(self, x: Tensor) -> Tensor:
        """The spikes of the final neuron ``[T, B, 512, h, w]``."""
        return self.sn(self.forward_stages(x))

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]``."""
        features = self.flatten(self.avgpool(self.forward_features(x)))
        return self.fc(self.dropout(features))


@register_model("ms_resnet18")
def ms_resnet18(**kwargs: Any) -> MSResNet:
    """MS-ResNet-18 (basic blocks [2, 2, 2, 2], conv7x7 stem); kwargs of :class:`MSResNet`."""
    return MSResNet((2, 2, 2, 2), **kwargs)


@register_model("ms_resnet34")
def ms_resnet34(**kwargs: Any) -> MSResNet:
    """MS-ResNet-34 (basic blocks [3, 4, 6, 3], conv7x7 stem); kwargs of :class:`MSResNet`."""
    return MSResNet((3, 4, 6, 3), **kwargs)


@register_model("ms_resnet104")
def ms_resnet104(**kwargs: Any) -> MSResNet:
    """MS-ResNet-104 (basic blocks [3, 8, 32, 8], three-conv stem, avgpool shortcut,
    dropout 0.2); kwargs of :class:`MSResNet` override these."""
    options: dict[str, Any] = {"stem": "imagenet3", "avgpool_shortcut": True, "dropout": 0.2}
    options.update(kwargs)
    return MSResNet((3, 8, 32, 8), **options)
