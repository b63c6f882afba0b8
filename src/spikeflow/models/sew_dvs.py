"""The SEW ResNets for DVS128 Gesture and CIFAR10-DVS (Fang et al., NeurIPS 2021; methods.md 3.2).

As in the authors' code (``dvsgesture/smodels.py``, ``cifar10dvs/smodels.py``):

* **DVS128 Gesture**: conv1x1(2→32)-BN-SN, then {SEW block(32) → MaxPool2} x 7,
  flatten, FC(32 → 11).
* **CIFAR10-DVS**: conv1x1(2→64)-BN-SN, {SEW block(64) → MaxPool2} x 4,
  conv1x1(64→128)-BN-SN, {SEW block(128) → MaxPool2} x 3, flatten, FC(128 → 10).

A SEW block here is two conv3x3-BN-SN units ``A = SN(BN(conv(SN(BN(conv(S))))))`` and
``O = g(A, S)`` (ADD/AND/IAND, :func:`~spikeflow.models.sew_resnet.sew_connect`). A
128x128 input ends at 1x1 after the 7 pools; other sizes are accepted through
``input_size`` (the FC is sized from it). The FC runs at every step, giving
``[T, B, num_classes]`` (the authors average over T first; the FC is linear, so the
time-mean is the same). Default neuron: PLIF, τ₀ = 2, detach_reset, ATan(α=2).
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
    always_firing_input,
    check_input,
    check_positive_int,
    conv_bn,
    zero_init_bn,
)
from spikeflow.models.plif_nets import PLIF_NEURON_DEFAULTS
from spikeflow.models.registry import register_model
from spikeflow.models.sew_resnet import check_connect_function, sew_connect

__all__ = ["SEWDVSBlock", "SEWDVSNet", "sew_cifar10dvs", "sew_dvsgesture"]


class SEWDVSBlock(nn.Module):
    """Two conv3x3-BN-SN units and a SEW connection; channels and size are kept."""

    def __init__(self, channels: int, neuron: NeuronFactory, cnf: str = "ADD") -> None:
        super().__init__()
        self.cnf = check_connect_function(cnf)
        self.conv1, self.bn1 = conv_bn(channels, channels, 3)
        self.sn1 = neuron()
        self.conv2, self.bn2 = conv_bn(channels, channels, 3)
        self.sn2 = neuron()

    def residual(self, x: Tensor) -> Tensor:
        """The branch before its last neuron (the last BN's output)."""
        return self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        """``g(SN(residual(x)), x)``."""
        return sew_connect(x, self.sn2(self.residual(x)), self.cnf)

    def zero_init_residual(self) -> None:
        """γ = 0 in the last BN; for AND, β makes the branch neuron fire every step."""
        zero_init_bn(self.bn2, always_firing_input(self.sn2) if self.cnf == "AND" else 0.0)

    def extra_repr(self) -> str:
        return f"cnf={self.cnf}"


class SEWDVSNet(nn.Module):
    """A plain stack of SEW blocks and max pools for event frames ``[T, B, 2, H, W]``.

    Args:
        stage_channels: the width of each SEW block (a conv1x1-BN-SN widens the input
            where the width changes); each block is followed by a 2x2 max pool.
        num_classes, in_channels: classes and input channels (2 polarities).
        cnf: "ADD", "AND" or "IAND".
        neuron, neuron_kwargs: the spiking neuron (default PLIF).
        zero_init_residual: zero-init each block's last BN (β = 1 for AND).
        input_size: side of the square input (128), used to size the FC.
    """

    #: Arguments the registered builders set themselves (not user arguments).
    builder_fixed_arguments: ClassVar[tuple[str, ...]] = ("stage_channels",)

    def __init__(
        self,
        stage_channels: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 2,
        cnf: str = "ADD",
        neuron: NeuronSpec = "plif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
        input_size: int = 128,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_positive_int("input_size", input_size)
        self.cnf = check_connect_function(cnf)
        factory = NeuronFactory(neuron, neuron_kwargs, PLIF_NEURON_DEFAULTS)
        mods: list[nn.Module] = []
        c_in, size = in_channels, input_size
        for width in stage_channels:
            check_positive_int("stage width", width)
            if width != c_in:
                mods += [*conv_bn(c_in, width, 1), factory()]
                c_in = width
            mods += [SEWDVSBlock(width, factory, self.cnf), layers.MaxPool2d(2, 2)]
            size //= 2
        if size < 1:
            raise ConfigurationError(
                f"input_size {input_size} is too small for {len(stage_channels)} max pools"
            )
        self.features = nn.Sequential(*mods)
        self.flatten = layers.Flatten()
        self.fc = layers.Linear(c_in * size * size, num_classes)
        if zero_init_residual:
            for block in self.blocks():
                block.zero_init_residual()

    def blocks(self) -> list[SEWDVSBlock]:
        """The SEW blocks, in order."""
        return [m for m in self.features if isinstance(m, SEWDVSBlock)]

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]``."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        return self.fc(self.flatten(self.features(x)))


@register_model("sew_dvsgesture")
def sew_dvsgesture(**kwargs: Any) -> SEWDVSNet:
    """SEW net for DVS128 Gesture (7 SEW blocks of 32, 11 classes); kwargs of :class:`SEWDVSNet`."""
    options: dict[str, Any] = {"num_classes": 11}
    options.update(kwargs)
    return SEWDVSNet([32] * 7, **options)


@register_model("sew_cifar10dvs")
def sew_cifar10dvs(**kwargs: Any) -> SEWDVSNet:
    """SEW net for CIFAR10-DVS (4 blocks of 64, 3 of 128); kwargs of :class:`SEWDVSNet`."""
    return SEWDVSNet([64] * 4 + [128] * 3, **kwargs)
