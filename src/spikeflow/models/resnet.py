"""Spiking ResNet 18/34/50/101/152, ResNeXt-50 32x4d / 101 32x8d and Wide ResNet-50-2 /
101-2 (the baseline of the SEW paper, methods.md 3.1).

A block computes ``O = SN(F(S) + shortcut(S))``: the spiking neuron sits after the
addition, as ReLU does in an ANN ResNet. ``F`` is conv3x3-BN-SN-conv3x3-BN (basic) or
conv1x1-BN-SN-conv3x3-BN-SN-conv1x1-BN (bottleneck); the downsample shortcut is
conv1x1(stride)-BN. Widths and depths follow torchvision.

**ResNeXt and wide ResNets** (torchvision's, SpikingJelly's ``spiking_resnext50_32x4d``
etc.): the bottleneck's 1x1-3x3 convolutions have ``int(planes · width_per_group / 64) ·
groups`` channels and its 3x3 convolution ``groups`` groups (``groups=1,
width_per_group=64``: the plain ResNet's ``planes``); the block's output stays
``4 · planes``. ResNeXt-50 32x4d is ``groups=32, width_per_group=4``, Wide ResNet-50-2
``width_per_group=128``.

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

import inspect
import os
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
from spikeflow.models.registry import register_builder
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
    "spiking_resnext50_32x4d",
    "spiking_resnext101_32x8d",
    "spiking_wide_resnet50_2",
    "spiking_wide_resnet101_2",
]

#: IF neuron, θ = 1, hard reset, detach_reset, ATan(α=2) (methods.md 3.2).
IMAGENET_NEURON_DEFAULTS: dict[str, Any] = {"detach_reset": True, "surrogate_function": ATan()}

BlockFactory = Callable[[int, int, int, bool, NeuronFactory], nn.Module]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> layers.Conv2d:
    """3x3 convolution with padding 1, ``groups`` groups and no bias, over a sequence."""
    return layers.Conv2d(in_planes, out_planes, 3, stride, 1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> layers.Conv2d:
    """1x1 convolution without bias, over a sequence."""
    return layers.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)


class ResidualBranch(nn.Module):
    """Base of the residual blocks of the spiking and the SEW ResNets, which share their
    branches (:class:`BasicBranch`, :class:`BottleneckBranch`): ``residual(x)`` is the
    branch ``F`` up to its last batch norm (``last_bn``), which a neuron
    (``last_neuron``) follows, and ``shortcut(x)`` the identity or the ``downsample``
    path. The family (:class:`SpikingResidual`, SEW's) builds the block from them and
    says where the two paths meet."""

    expansion: ClassVar[int]
    downsample: nn.Module | None

    def _init_branch(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        neuron: NeuronFactory,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> int:
        raise NotImplementedError

    def _init_last_neuron(self, neuron: NeuronFactory) -> None:
        raise NotImplementedError

    @property
    def last_bn(self) -> nn.Module:
        raise NotImplementedError

    @property
    def last_neuron(self) -> nn.Module:
        raise NotImplementedError

    def residual(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def shortcut(self, x: Tensor) -> Tensor:
        """The identity or the downsample path."""
        return x if self.downsample is None else self.downsample(x)


class BasicBranch(ResidualBranch):
    """The basic block's branch: ``BN(conv3x3(SN(BN(conv3x3(S)))))``, then ``sn2``."""

    expansion = 1

    def _init_branch(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        neuron: NeuronFactory,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> int:
        """Build ``conv1``, ``bn1``, ``sn1``, ``conv2``, ``bn2``; return their output
        channels. The basic block has no groups: ``groups`` must be 1 and
        ``width_per_group`` 64 (as in torchvision), else a ConfigurationError."""
        if groups != 1 or width_per_group != 64:
            raise ConfigurationError(
                "the basic block takes only groups=1 and width_per_group=64 (ResNeXt and wide "
                f"ResNets use the bottleneck), got groups={groups!r}, "
                f"width_per_group={width_per_group!r}"
            )
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = layers.BatchNorm2d(planes)
        self.sn1 = neuron()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = layers.BatchNorm2d(planes)
        return planes

    def _init_last_neuron(self, neuron: NeuronFactory) -> None:
        self.sn2 = neuron()

    @property
    def last_bn(self) -> nn.Module:
        """The branch's last batch norm, ``bn2``."""
        return self.bn2

    @property
    def last_neuron(self) -> nn.Module:
        """The neuron after the branch, ``sn2``."""
        return self.sn2

    def residual(self, x: Tensor) -> Tensor:
        """The residual branch ``F(S)`` (the last BN's output, before the last neuron)."""
        return self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))


class BottleneckBranch(ResidualBranch):
    """The bottleneck's branch, conv1x1-BN-SN-conv3x3-BN-SN-conv1x1-BN (torchvision's
    v1.5 stride, on the 3x3), then ``sn3``."""

    expansion = 4

    def _init_branch(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        neuron: NeuronFactory,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> int:
        """Build ``conv1``, ``bn1``, ``sn1`` to ``conv3``, ``bn3``; return their output
        channels, ``expansion·planes``. The inner width is ``int(planes ·
        width_per_group / 64) · groups`` (torchvision's), the 3x3 conv grouped."""
        check_positive_int("groups", groups)
        check_positive_int("width_per_group", width_per_group)
        width = int(planes * (width_per_group / 64.0)) * groups
        if width < 1:
            raise ConfigurationError(
                f"the bottleneck's width int(planes * width_per_group / 64) * groups is 0 for "
                f"planes={planes}, width_per_group={width_per_group}, groups={groups}: raise "
                "base_width or width_per_group"
            )
        out = planes * self.expansion
        self.conv1 = conv1x1(in_planes, width)
        self.bn1 = layers.BatchNorm2d(width)
        self.sn1 = neuron()
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = layers.BatchNorm2d(width)
        self.sn2 = neuron()
        self.conv3 = conv1x1(width, out)
        self.bn3 = layers.BatchNorm2d(out)
        return out

    def _init_last_neuron(self, neuron: NeuronFactory) -> None:
        self.sn3 = neuron()

    @property
    def last_bn(self) -> nn.Module:
        """The branch's last batch norm, ``bn3``."""
        return self.bn3

    @property
    def last_neuron(self) -> nn.Module:
        """The neuron after the branch, ``sn3``."""
        return self.sn3

    def residual(self, x: Tensor) -> Tensor:
        """The residual branch ``F(S)`` (the last BN's output, before the last neuron)."""
        y = self.sn1(self.bn1(self.conv1(x)))
        y = self.sn2(self.bn2(self.conv2(y)))
        return self.bn3(self.conv3(y))


class SpikingResidual(ResidualBranch):
    """The spiking ResNet's block over a branch: ``SN(F(S) + shortcut(S))``, the
    downsample shortcut conv1x1(stride)-BN (layers in that order: the branch, the
    downsample, the last neuron)."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        downsample: bool,
        neuron: NeuronFactory,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        out = self._init_branch(in_planes, planes, stride, neuron, groups, width_per_group)
        self.downsample = (
            nn.Sequential(conv1x1(in_planes, out, stride), layers.BatchNorm2d(out))
            if downsample
            else None
        )
        self._init_last_neuron(neuron)

    def zero_init_residual(self) -> None:
        """γ = 0 in the branch's last BN, so ``F(S) = 0`` at init."""
        zero_init_bn(self.last_bn)

    def forward(self, x: Tensor) -> Tensor:
        """Spikes ``[T, B, expansion·planes, H', W']``."""
        return self.last_neuron(self.residual(x) + self.shortcut(x))


class SpikingBasicBlock(SpikingResidual, BasicBranch):
    """``SN(BN(conv3x3(SN(BN(conv3x3(S))))) + shortcut(S))``, input/output ``[T, B, C, H, W]``."""


class SpikingBottleneck(SpikingResidual, BottleneckBranch):
    """``SN(F(S) + shortcut(S))`` with the 1x1-3x3-1x1 branch (torchvision's v1.5 stride;
    ``groups`` and ``width_per_group`` for ResNeXt and wide ResNets)."""


class FourStageNet(nn.Module):
    """What the residual networks share (:class:`ResNetSkeleton`, the SEW ResNets and
    :class:`~spikeflow.models.ms_resnet.MSResNet`): a ``stem``, then four stages of
    residual blocks ``layer1`` to ``layer4`` of ``base_width · (1, 2, 4, 8)`` planes,
    each stage but the first halving the resolution."""

    in_channels: int
    stem: nn.Module

    def _check_sizes(self, num_classes: int, in_channels: int, depths: Sequence[int]) -> None:
        """Keep ``num_classes`` and ``in_channels`` (positive integers); four ``depths``."""
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        if len(depths) != 4:
            raise ConfigurationError(f"depths must have 4 stages, got {list(depths)}")

    def _init_stages(
        self,
        depths: Sequence[int],
        base_width: int,
        first_stride: int,
        expansion: int,
        make_block: Callable[[int, int, int], nn.Module],
    ) -> int:
        """Build ``layer1`` to ``layer4``: ``depths[i]`` blocks
        ``make_block(in_planes, planes, stride)`` of ``planes · expansion`` output
        channels, the first of stage 1 with stride ``first_stride``, of the others with
        stride 2, the rest with stride 1. Returns the last stage's channels."""
        in_planes = base_width
        stages = []
        for index, count in enumerate(depths):
            check_positive_int(f"depths[{index}]", count)
            planes = base_width * 2**index
            stride = first_stride if index == 0 else 2
            blocks = []
            for j in range(count):
                blocks.append(make_block(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes * expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        return in_planes

    def blocks(self) -> list[nn.Module]:
        """The residual blocks, in order."""
        return [b for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for b in stage]

    def forward_stages(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` through the stem and the four stages."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class ResNetSkeleton(FourStageNet):
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
        groups: groups of the bottleneck's 3x3 convolution (1; ResNeXt-50 32x4d: 32).
        width_per_group: the bottleneck's inner width is ``int(planes ·
            width_per_group / 64) · groups`` (64: ``planes``; Wide ResNet-50-2: 128).
            The basic block takes only ``groups=1, width_per_group=64``. Passed on to
            ``block`` as keywords only when not these defaults.
    """

    #: Arguments the registered builders set themselves (not user arguments).
    builder_fixed_arguments: ClassVar[tuple[str, ...]] = (
        "block",
        "depths",
        "groups",
        "width_per_group",
    )

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
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        self._check_sizes(num_classes, in_channels, depths)
        check_positive_int("groups", groups)
        check_positive_int("width_per_group", width_per_group)
        # Blocks written for (in_planes, planes, stride, downsample, neuron) keep working.
        grouping = (
            {}
            if (groups, width_per_group) == (1, 64)
            else {"groups": groups, "width_per_group": width_per_group}
        )
        if grouping:
            accepted = inspect.signature(block).parameters
            if not {"groups", "width_per_group"} <= accepted.keys() and not any(
                p.kind is p.VAR_KEYWORD for p in accepted.values()
            ):
                raise ConfigurationError(
                    f"ResNetSkeleton: the block {getattr(block, '__name__', block)!r} takes no "
                    f"groups or width_per_group, got groups={groups}, "
                    f"width_per_group={width_per_group}"
                )
        factory = NeuronFactory(
            neuron,
            neuron_kwargs,
            IMAGENET_NEURON_DEFAULTS if neuron_defaults is None else neuron_defaults,
        )
        check_positive_int("base_width", base_width)
        self.stem = _make_stem(stem, in_channels, base_width, factory)
        self.stem_kind = stem

        def make_block(in_planes: int, planes: int, stride: int) -> nn.Module:
            downsample = stride != 1 or in_planes != planes * block.expansion
            return block(in_planes, planes, stride, downsample, factory, **grouping)

        in_planes = self._init_stages(depths, base_width, 1, block.expansion, make_block)
        self.avgpool = layers.AdaptiveAvgPool2d(1)
        self.flatten = layers.Flatten()
        self.fc = layers.Linear(in_planes, num_classes)
        init_conv_linear(self)
        if zero_init_residual:
            for m in self.modules():
                if m is not self and hasattr(m, "zero_init_residual"):
                    m.zero_init_residual()

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's output ``[T, B, C, h, w]``."""
        return self.forward_stages(x)

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

#: ResNeXt and wide ResNets (torchvision's names, suffixes of SpikingJelly's): the
#: bottleneck ResNet's depth, ``groups`` and ``width_per_group``.
GROUPED_VARIANTS: dict[str, tuple[int, int, int]] = {
    "resnext50_32x4d": (50, 32, 4),
    "resnext101_32x8d": (101, 32, 8),
    "wide_resnet50_2": (50, 1, 128),
    "wide_resnet101_2": (101, 1, 128),
}


def grouped_variant(name: str, kwargs: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """The depth of the variant ``name`` (a key of :data:`GROUPED_VARIANTS`) and
    ``kwargs`` with its ``groups`` and ``width_per_group``; a ConfigurationError if
    ``kwargs`` sets either (the name fixes them: use :class:`ResNetSkeleton` for others)."""
    depth, groups, width_per_group = GROUPED_VARIANTS[name]
    fixed = sorted({"groups", "width_per_group"} & set(kwargs))
    if fixed:
        raise ConfigurationError(
            f"{name} fixes groups={groups} and width_per_group={width_per_group}; got "
            f"{', '.join(f'{k}={kwargs[k]!r}' for k in fixed)} (ResNetSkeleton takes any)"
        )
    return depth, {**kwargs, "groups": groups, "width_per_group": width_per_group}


def with_pretrained(
    model: Any, pretrained: str | os.PathLike[str] | None, classifier: str = "load"
) -> Any:
    """``model`` with torchvision's ImageNet weights from the file ``pretrained`` (None:
    as built), its head loaded or left as ``classifier`` says ("load", "skip_last",
    "skip_all"); see :func:`spikeflow.models.torchvision_weights.load_torchvision_weights`."""
    from spikeflow.models.torchvision_weights import load_pretrained  # imports this module

    return load_pretrained(model, pretrained, classifier)


def _spiking_resnet(depth: int, **kwargs: Any) -> ResNetSkeleton:
    block, depths = RESNET_DEPTHS[depth]
    return ResNetSkeleton(block, depths, **kwargs)


_DOC = """Spiking ResNet-{depth}: ``[T, B, C, H, W]`` → ``[T, B, num_classes]``.

    Keyword arguments: ``num_classes`` (1000), ``in_channels`` (3), ``neuron`` ("if"),
    ``neuron_kwargs``, ``zero_init_residual`` (False), ``stem`` ("imagenet" or "cifar"),
    ``base_width`` (64), ``pretrained`` (None, or the path of torchvision's
    ``resnet{depth}`` ImageNet weights file: docs/models.md), ``pretrained_classifier`` ("load",
    "skip_last": leave ``fc`` for other classes); see :class:`ResNetSkeleton`.
    Default neuron: IF, detach_reset, ATan(α=2).
    """

_GROUPED_DOC = """Spiking {title} (SpikingJelly's ``spiking_{name}``): ``[T, B, C, H, W]`` →
    ``[T, B, num_classes]``.

    The bottleneck ResNet-{depth} with ``groups={groups}``, ``width_per_group={width}``
    (fixed by the name). Keyword arguments: ``num_classes`` (1000), ``in_channels`` (3),
    ``neuron`` ("if"), ``neuron_kwargs``, ``zero_init_residual`` (False), ``stem``
    ("imagenet" or "cifar"), ``base_width`` (64), ``pretrained`` (None, or the path of
    torchvision's ``{name}`` ImageNet weights file: docs/models.md),
    ``pretrained_classifier`` ("load", "skip_last": leave ``fc`` for other classes); see
    :class:`ResNetSkeleton`. Default neuron: IF, detach_reset, ATan(α=2).
    """


def grouped_title(name: str) -> str:
    """``"resnext50_32x4d"`` → ``"ResNeXt-50 32x4d"``, ``"wide_resnet50_2"`` →
    ``"Wide ResNet-50-2"`` (for the builders' docstrings)."""
    depth, _, _ = GROUPED_VARIANTS[name]
    if name.startswith("resnext"):
        return f"ResNeXt-{depth} {name.rsplit('_', 1)[1]}"
    return f"Wide ResNet-{depth}-{name.rsplit('_', 1)[1]}"


def _register(depth: int) -> Callable[..., ResNetSkeleton]:
    """Register the builder ``spiking_resnet{depth}``."""

    def build(
        pretrained: str | os.PathLike[str] | None = None,
        pretrained_classifier: str = "load",
        **kwargs: Any,
    ) -> ResNetSkeleton:
        model = _spiking_resnet(depth, **kwargs)
        return with_pretrained(model, pretrained, pretrained_classifier)

    return register_builder(f"spiking_resnet{depth}", build, _DOC.format(depth=depth))


def _register_grouped(name: str) -> Callable[..., ResNetSkeleton]:
    """Register the builder ``spiking_{name}`` for a key of :data:`GROUPED_VARIANTS`."""

    def build(
        pretrained: str | os.PathLike[str] | None = None,
        pretrained_classifier: str = "load",
        **kwargs: Any,
    ) -> ResNetSkeleton:
        depth, options = grouped_variant(name, kwargs)
        model = _spiking_resnet(depth, **options)
        return with_pretrained(model, pretrained, pretrained_classifier)

    depth, groups, width = GROUPED_VARIANTS[name]
    doc = _GROUPED_DOC.format(
        title=grouped_title(name), name=name, depth=depth, groups=groups, width=width
    )
    return register_builder(f"spiking_{name}", build, doc)


spiking_resnet18 = _register(18)
spiking_resnet34 = _register(34)
spiking_resnet50 = _register(50)
spiking_resnet101 = _register(101)
spiking_resnet152 = _register(152)
spiking_resnext50_32x4d = _register_grouped("resnext50_32x4d")
spiking_resnext101_32x8d = _register_grouped("resnext101_32x8d")
spiking_wide_resnet50_2 = _register_grouped("wide_resnet50_2")
spiking_wide_resnet101_2 = _register_grouped("wide_resnet101_2")
