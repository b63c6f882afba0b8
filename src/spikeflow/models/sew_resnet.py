"""SEW ResNet 18/34/50/101/152, ResNeXt-50 32x4d / 101 32x8d and Wide ResNet-50-2 / 101-2
(Fang et al., NeurIPS 2021; methods.md 3).

A spike-element-wise block computes ``A = SN(F(S))`` and ``O = g(A, S)`` with the
connect function ``g`` (``cnf``):

* ``"ADD"``: ``O = A + S`` (integer-valued, identity when ``A = 0``);
* ``"AND"``: ``O = A * S`` (binary, identity when ``A = 1``);
* ``"IAND"``: ``O = S * (1 - A)`` (binary, identity when ``A = 0``), the paper's
  definition in *both* the basic and the bottleneck block (SpikingJelly's bottleneck
  swaps the arguments, methods.md 3.1).

The downsample shortcut is conv1x1(stride)-BN-SN, so it also emits spikes. With
``zero_init_residual=True`` the last BN of every branch gets γ = 0 (and β = 1 for
AND), so that ``A`` is 0 (1 for AND) and each block starts as the identity. Stem, head,
``stem="cifar"`` and the ResNeXt / wide bottleneck (``groups``, ``width_per_group``):
see :mod:`spikeflow.models.resnet`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.common import NeuronFactory, always_firing_input, zero_init_bn
from spikeflow.models.registry import register_builder
from spikeflow.models.resnet import (
    GROUPED_VARIANTS,
    BasicBranch,
    BottleneckBranch,
    ResidualBranch,
    ResNetSkeleton,
    conv1x1,
    grouped_title,
    grouped_variant,
    with_pretrained,
)

__all__ = [
    "CONNECT_FUNCTIONS",
    "SEWBasicBlock",
    "SEWBottleneck",
    "check_connect_function",
    "sew_connect",
    "sew_resnet18",
    "sew_resnet34",
    "sew_resnet50",
    "sew_resnet101",
    "sew_resnet152",
    "sew_resnext50_32x4d",
    "sew_resnext101_32x8d",
    "sew_wide_resnet50_2",
    "sew_wide_resnet101_2",
]

CONNECT_FUNCTIONS = ("ADD", "AND", "IAND")


def check_connect_function(cnf: str) -> str:
    """``cnf`` upper-cased if it is ADD, AND or IAND, else a ConfigurationError."""
    key = cnf.upper() if isinstance(cnf, str) else cnf
    if key not in CONNECT_FUNCTIONS:
        raise ConfigurationError(
            f"unknown SEW connect function {cnf!r}; available: {', '.join(CONNECT_FUNCTIONS)}"
        )
    return key


def sew_connect(identity: Tensor, branch: Tensor, cnf: str) -> Tensor:
    """``g(A, S)`` for the shortcut spikes ``S = identity`` and branch spikes ``A = branch``.

    ADD: ``A + S``; AND: ``A * S``; IAND: ``S * (1 - A)``.
    """
    key = check_connect_function(cnf)
    if identity.shape != branch.shape:
        raise ShapeError(
            f"sew_connect: identity {tuple(identity.shape)} and branch "
            f"{tuple(branch.shape)} must have the same shape"
        )
    if key == "ADD":
        return branch + identity
    if key == "AND":
        return branch * identity
    return identity * (1.0 - branch)


class _SEWBlockMixin(ResidualBranch):
    """The SEW block over a branch: ``A = SN(F(S))``, ``O = g(A, S)``, the downsample
    shortcut conv1x1(stride)-BN-SN, so it also emits spikes (layers in that order: the
    branch, its last neuron, the downsample)."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        downsample: bool,
        neuron: NeuronFactory,
        cnf: str = "ADD",
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        self.cnf = check_connect_function(cnf)
        out = self._init_branch(in_planes, planes, stride, neuron, groups, width_per_group)
        self._init_last_neuron(neuron)
        self.downsample = (
            nn.Sequential(conv1x1(in_planes, out, stride), layers.BatchNorm2d(out), neuron())
            if downsample
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """``g(SN(F(x)), shortcut(x))``."""
        return sew_connect(self.shortcut(x), self.branch_spikes(x), self.cnf)

    def branch_spikes(self, x: Tensor) -> Tensor:
        """``A = SN(F(S))``."""
        return self.last_neuron(self.residual(x))

    def zero_init_residual(self) -> None:
        """γ = 0 in the last BN of the branch; for AND, β makes its neuron fire every step."""
        neuron = self.last_neuron
        zero_init_bn(self.last_bn, always_firing_input(neuron) if self.cnf == "AND" else 0.0)

    def extra_repr(self) -> str:
        return f"cnf={self.cnf}"


class SEWBasicBlock(_SEWBlockMixin, BasicBranch):
    """SEW basic block: ``A = SN(BN(conv3x3(SN(BN(conv3x3(S))))))``, ``O = g(A, S)``."""


class SEWBottleneck(_SEWBlockMixin, BottleneckBranch):
    """SEW bottleneck: the 1x1-3x3-1x1 branch, each conv followed by BN and SN (``groups``
    and ``width_per_group`` for ResNeXt and wide ResNets)."""


_DEPTHS: dict[int, tuple[type[_SEWBlockMixin], tuple[int, int, int, int]]] = {
    18: (SEWBasicBlock, (2, 2, 2, 2)),
    34: (SEWBasicBlock, (3, 4, 6, 3)),
    50: (SEWBottleneck, (3, 4, 6, 3)),
    101: (SEWBottleneck, (3, 4, 23, 3)),
    152: (SEWBottleneck, (3, 8, 36, 3)),
}


def _sew_resnet(depth: int, cnf: str = "ADD", **kwargs: Any) -> ResNetSkeleton:
    block_cls, depths = _DEPTHS[depth]
    cnf = check_connect_function(cnf)

    def block(
        in_planes: int,
        planes: int,
        stride: int,
        downsample: bool,
        neuron: NeuronFactory,
        **grouping: int,
    ) -> nn.Module:
        return block_cls(in_planes, planes, stride, downsample, neuron, cnf=cnf, **grouping)

    block.expansion = block_cls.expansion  # type: ignore[attr-defined]
    model = ResNetSkeleton(block, depths, **kwargs)
    model.cnf = cnf
    return model


_DOC = """SEW ResNet-{depth}: ``[T, B, C, H, W]`` → ``[T, B, num_classes]``.

    Keyword arguments: ``cnf`` ("ADD", "AND" or "IAND"), ``num_classes`` (1000),
    ``in_channels`` (3), ``neuron`` ("if"), ``neuron_kwargs``, ``zero_init_residual``
    (False), ``stem`` ("imagenet" or "cifar"), ``base_width`` (64), ``pretrained``
    (None, or the path of torchvision's ``resnet{depth}`` ImageNet weights file:
    docs/models.md), ``pretrained_classifier`` ("load", "skip_last": leave ``fc`` for
    other classes); see :class:`~spikeflow.models.resnet.ResNetSkeleton`. Default
    neuron: IF, detach_reset, ATan(α=2).
    """


_GROUPED_DOC = """SEW {title} (SpikingJelly's ``sew_{name}``): ``[T, B, C, H, W]`` →
    ``[T, B, num_classes]``.

    The SEW bottleneck ResNet-{depth} with ``groups={groups}``, ``width_per_group={width}``
    (fixed by the name). Keyword arguments: ``cnf`` ("ADD", "AND" or "IAND"),
    ``num_classes`` (1000), ``in_channels`` (3), ``neuron`` ("if"), ``neuron_kwargs``,
    ``zero_init_residual`` (False), ``stem`` ("imagenet" or "cifar"), ``base_width`` (64),
    ``pretrained`` (None, or the path of torchvision's ``{name}`` ImageNet weights file:
    docs/models.md), ``pretrained_classifier`` ("load", "skip_last"); see
    :class:`~spikeflow.models.resnet.ResNetSkeleton`. Default neuron: IF, detach_reset,
    ATan(α=2).
    """


def _register(depth: int) -> Callable[..., ResNetSkeleton]:
    """Register the builder ``sew_resnet{depth}``."""

    def build(
        cnf: str = "ADD",
        pretrained: str | os.PathLike[str] | None = None,
        pretrained_classifier: str = "load",
        **kwargs: Any,
    ) -> ResNetSkeleton:
        model = _sew_resnet(depth, cnf, **kwargs)
        return with_pretrained(model, pretrained, pretrained_classifier)

    return register_builder(f"sew_resnet{depth}", build, _DOC.format(depth=depth))


sew_resnet18 = _register(18)
sew_resnet34 = _register(34)
sew_resnet50 = _register(50)
sew_resnet101 = _register(101)
sew_resnet152 = _register(152)


def _register_grouped(name: str) -> Callable[..., ResNetSkeleton]:
    """Register the builder ``sew_{name}`` for a key of
    :data:`~spikeflow.models.resnet.GROUPED_VARIANTS`."""

    def build(
        cnf: str = "ADD",
        pretrained: str | os.PathLike[str] | None = None,
        pretrained_classifier: str = "load",
        **kwargs: Any,
    ) -> ResNetSkeleton:
        depth, options = grouped_variant(name, kwargs)
        model = _sew_resnet(depth, cnf, **options)
        return with_pretrained(model, pretrained, pretrained_classifier)

    depth, groups, width = GROUPED_VARIANTS[name]
    doc = _GROUPED_DOC.format(
        title=grouped_title(name), name=name, depth=depth, groups=groups, width=width
    )
    return register_builder(f"sew_{name}", build, doc)


sew_resnext50_32x4d = _register_grouped("resnext50_32x4d")
sew_resnext101_32x8d = _register_grouped("resnext101_32x8d")
sew_wide_resnet50_2 = _register_grouped("wide_resnet50_2")
sew_wide_resnet101_2 = _register_grouped("wide_resnet101_2")
