"""SEW ResNet 18/34/50/101/152 (Fang et al., NeurIPS 2021; methods.md 3).

A spike-element-wise block computes ``A = SN(F(S))`` and ``O = g(A, S)`` with the
connect function ``g`` (``cnf``):

* ``"ADD"``: ``O = A + S`` (integer-valued, identity when ``A = 0``);
* ``"AND"``: ``O = A * S`` (binary, identity when ``A = 1``);
* ``"IAND"``: ``O = S * (1 - A)`` (binary, identity when ``A = 0``), the paper's
  definition in *both* the basic and the bottleneck block (SpikingJelly's bottleneck
  swaps the arguments, methods.md 3.1).

The downsample shortcut is conv1x1(stride)-BN-SN, so it also emits spikes. With
``zero_init_residual=True`` the last BN of every branch gets γ = 0 (and β = 1 for
AND), so that ``A`` is 0 (1 for AND) and each block starts as the identity. Stem, head
and ``stem="cifar"``: see :mod:`spikeflow.models.resnet`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.common import NeuronFactory, always_firing_input, zero_init_bn
from spikeflow.models.registry import register_model
from spikeflow.models.resnet import ResNetSkeleton, conv1x1, conv3x3

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


class _SEWBlockMixin(nn.Module):
    cnf: str
    downsample: nn.Module | None

    def shortcut(self, x: Tensor) -> Tensor:
        """The identity, or the downsample conv1x1-BN-SN spikes."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: Tensor) -> Tensor:
        """``g(SN(F(x)), shortcut(x))``."""
        return sew_connect(self.shortcut(x), self.branch_spikes(x), self.cnf)

    def branch_spikes(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"cnf={self.cnf}"


def _downsample(in_planes: int, out: int, stride: int, neuron: NeuronFactory) -> nn.Sequential:
    return nn.Sequential(conv1x1(in_planes, out, stride), layers.BatchNorm2d(out), neuron())


class SEWBasicBlock(_SEWBlockMixin):
    """SEW basic block: ``A = SN(BN(conv3x3(SN(BN(conv3x3(S))))))``, ``O = g(A, S)``."""

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        downsample: bool,
        neuron: NeuronFactory,
        cnf: str = "ADD",
    ) -> None:
        super().__init__()
        self.cnf = check_connect_function(cnf)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = layers.BatchNorm2d(planes)
        self.sn1 = neuron()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = layers.BatchNorm2d(planes)
        self.sn2 = neuron()
        self.downsample = _downsample(in_planes, planes, stride, neuron) if downsample else None

    def residual(self, x: Tensor) -> Tensor:
        """The branch before its last neuron (the last BN's output)."""
        return self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))

    def branch_spikes(self, x: Tensor) -> Tensor:
        """``A = SN(F(S))``."""
        return self.sn2(self.residual(x))

    def zero_init_residual(self) -> None:
        """γ = 0 in the last BN of the branch; for AND, β makes its neuron fire every step."""
        zero_init_bn(self.bn2, always_firing_input(self.sn2) if self.cnf == "AND" else 0.0)


class SEWBottleneck(_SEWBlockMixin):
    """SEW bottleneck: the 1x1-3x3-1x1 branch, each conv followed by BN and SN."""

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        downsample: bool,
        neuron: NeuronFactory,
        cnf: str = "ADD",
    ) -> None:
        super().__init__()
        self.cnf = check_connect_function(cnf)
        out = planes * self.expansion
        self.conv1 = conv1x1(in_planes, planes)
        self.bn1 = layers.BatchNorm2d(planes)
        self.sn1 = neuron()
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = layers.BatchNorm2d(planes)
        self.sn2 = neuron()
        self.conv3 = conv1x1(planes, out)
        self.bn3 = layers.BatchNorm2d(out)
        self.sn3 = neuron()
        self.downsample = _downsample(in_planes, out, stride, neuron) if downsample else None

    def residual(self, x: Tensor) -> Tensor:
        """The branch before its last neuron (the last BN's output)."""
        y = self.sn1(self.bn1(self.conv1(x)))
        y = self.sn2(self.bn2(self.conv2(y)))
        return self.bn3(self.conv3(y))

    def branch_spikes(self, x: Tensor) -> Tensor:
        """``A = SN(F(S))``."""
        return self.sn3(self.residual(x))

    def zero_init_residual(self) -> None:
        """γ = 0 in the last BN of the branch; for AND, β makes its neuron fire every step."""
        zero_init_bn(self.bn3, always_firing_input(self.sn3) if self.cnf == "AND" else 0.0)


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
        in_planes: int, planes: int, stride: int, downsample: bool, neuron: NeuronFactory
    ) -> nn.Module:
        return block_cls(in_planes, planes, stride, downsample, neuron, cnf=cnf)

    block.expansion = block_cls.expansion  # type: ignore[attr-defined]
    model = ResNetSkeleton(block, depths, **kwargs)
    model.cnf = cnf
    return model


_DOC = """SEW ResNet-{depth}: ``[T, B, C, H, W]`` → ``[T, B, num_classes]``.

    Keyword arguments: ``cnf`` ("ADD", "AND" or "IAND"), ``num_classes`` (1000),
    ``in_channels`` (3), ``neuron`` ("if"), ``neuron_kwargs``, ``zero_init_residual``
    (False), ``stem`` ("imagenet" or "cifar"), ``base_width`` (64); see
    :class:`~spikeflow.models.resnet.ResNetSkeleton`. Default neuron: IF,
    detach_reset, ATan(α=2).
    """


@register_model("sew_resnet18")
def sew_resnet18(cnf: str = "ADD", **kwargs: Any) -> ResNetSkeleton:
    return _sew_resnet(18, cnf, **kwargs)


@register_model("sew_resnet34")
def sew_resnet34(cnf: str = "ADD", **kwargs: Any) -> ResNetSkeleton:
    return _sew_resnet(34, cnf, **kwargs)


@register_model("sew_resnet50")
def sew_resnet50(cnf: str = "ADD", **kwargs: Any) -> ResNetSkeleton:
    return _sew_resnet(50, cnf, **kwargs)


@register_model("sew_resnet101")
def sew_resnet101(cnf: str = "ADD", **kwargs: Any) -> ResNetSkeleton:
    return _sew_resnet(101, cnf, **kwargs)


@register_model("sew_resnet152")
def sew_resnet152(cnf: str = "ADD", **kwargs: Any) -> ResNetSkeleton:
    return _sew_resnet(152, cnf, **kwargs)


for _depth, _fn in (
    (18, sew_resnet18),
    (34, sew_resnet34),
    (50, sew_resnet50),
    (101, sew_resnet101),
    (152, sew_resnet152),
):
    _fn.__doc__ = _DOC.format(depth=_depth)
