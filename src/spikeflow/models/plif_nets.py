"""The networks of the PLIF paper (Fang et al., ICCV 2021; methods.md 11.2).

As in the authors' code (``codes/models.py`` of the PLIF repository):

* **MNIST / Fashion-MNIST** (28x28x1): {conv3x3(128)-BN-SN-MaxPool2} x2, then
  Dropout(0.5)-FC(128·7·7 → 128·4·4)-SN-Dropout(0.5)-FC(→ 10·classes)-SN-voting.
* **CIFAR-10** (32x32x3): {conv3x3(256)-BN-SN} x3-MaxPool2-{conv3x3(256)-BN-SN} x3-MaxPool2,
  then Dropout(0.5)-FC(256·8·8 → 128·4·4)-SN-FC(→ 10·classes)-SN-voting.
* **Neuromorphic** (N-MNIST 34x34, CIFAR10-DVS and DVS128 Gesture 128x128, 2
  polarity channels): {conv3x3(128)-BN-SN-MaxPool2} x n with n = 2, 4, 5, then
  Dropout(0.5)-FC(C·h·w → C·h·w/4)-SN-Dropout(0.5)-FC(→ 10·classes)-SN-voting.

The FC layers have no bias; dropout masks are shared over time; the voting layer
averages each group of 10 output neurons, so the output ``[T, B, num_classes]`` is a
spike train whose time-mean is the firing rate the PLIF paper trains with the rate
MSE loss. For the static datasets the paper applies the first conv-BN once and repeats
its output over T; feeding the image repeated T times (``[T, B, C, H, W]``) gives the
same numbers. Default neuron: PLIF, τ₀ = 2, θ = 1, V_r = 0, detach_reset, ATan(α=2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.models.building import pooling_2x2
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    check_positive_int,
    conv_bn,
)
from spikeflow.models.registry import register_model
from spikeflow.surrogate import ATan

__all__ = [
    "PLIFNet",
    "plif_cifar10",
    "plif_cifar10dvs",
    "plif_dvsgesture",
    "plif_fashion_mnist",
    "plif_mnist",
    "plif_nmnist",
]

#: PLIF, τ₀ = 2, detach_reset, ATan(α=2) (methods.md 11.2).
PLIF_NEURON_DEFAULTS: dict[str, Any] = {
    "init_tau": 2.0,
    "detach_reset": True,
    "surrogate_function": ATan(),
}


class PLIFNet(nn.Module):
    """A PLIF-paper CSNN: conv blocks, two FC layers and voting.

    Args:
        conv_plan: one entry per conv-BN-SN layer: ``True`` if a 2x2 max pool follows it.
        channels: width of every conv layer.
        hidden_features: width of the hidden FC layer.
        input_size: side of the (square) input, used to size the first FC layer.
        num_classes: classes (the last FC has ``voting_size * num_classes`` neurons).
        in_channels: input channels.
        neuron, neuron_kwargs: the spiking neuron (default PLIF).
        dropout: dropout probability (0.5).
        second_dropout: dropout also before the last FC (all but the CIFAR-10 net).
        voting_size: output neurons per class (10).
        zero_init_residual: must be False (no residual blocks).
        pooling: ``"max"`` (the paper's 2x2 max pool), ``"avg"`` or ``"sum"`` (2x2
            average or sum pooling, which NIR can express: docs/nir.md).
    """

    #: Arguments the registered builders set themselves (not user arguments).
    builder_fixed_arguments: ClassVar[tuple[str, ...]] = ("conv_plan",)

    def __init__(
        self,
        conv_plan: list[bool],
        channels: int,
        hidden_features: int,
        input_size: int,
        num_classes: int = 10,
        in_channels: int = 1,
        neuron: NeuronSpec = "plif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        dropout: float = 0.5,
        second_dropout: bool = True,
        voting_size: int = 10,
        zero_init_residual: bool = False,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if zero_init_residual:
            raise ConfigurationError("the PLIF networks have no residual blocks to zero-init")
        pool_2x2 = pooling_2x2(pooling)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.input_size = check_positive_int("input_size", input_size)
        check_positive_int("channels", channels)
        check_positive_int("hidden_features", hidden_features)
        check_positive_int("voting_size", voting_size)
        factory = NeuronFactory(neuron, neuron_kwargs, PLIF_NEURON_DEFAULTS)
        conv: list[nn.Module] = []
        size = input_size
        c_in = in_channels
        for pool in conv_plan:
            conv += [*conv_bn(c_in, channels, 3), factory()]
            if pool:
                conv.append(pool_2x2())
                size //= 2
            c_in = channels
        if size < 1:
            raise ConfigurationError(
                f"input_size {input_size} is too small for {sum(conv_plan)} poolings"
            )
        self.conv = nn.Sequential(*conv)
        fc: list[nn.Module] = [
            layers.Flatten(),
            layers.Dropout(dropout),
            layers.Linear(channels * size * size, hidden_features, bias=False),
            factory(),
        ]
        if second_dropout:
            fc.append(layers.Dropout(dropout))
        fc += [layers.Linear(hidden_features, num_classes * voting_size, bias=False), factory()]
        self.fc = nn.Sequential(*fc)
        self.voting = layers.VotingLayer(voting_size)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → output firing ``[T, B, num_classes]`` (after voting)."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        return self.voting(self.fc(self.conv(x)))


def _static(
    in_channels: int, input_size: int, channels: int, plan: list[bool], hidden: int | None,
    second_dropout: bool, kwargs: dict[str, Any],
) -> PLIFNet:  # fmt: skip
    options: dict[str, Any] = {
        "in_channels": in_channels,
        "input_size": input_size,
        "channels": channels,
        "second_dropout": second_dropout,
    }
    options.update(kwargs)
    size = check_positive_int("input_size", options["input_size"])
    check_positive_int("channels", options["channels"])
    for pool in plan:
        size //= 2 if pool else 1
    if hidden is None:
        hidden = options["channels"] * size * size // 4
    options.setdefault("hidden_features", max(hidden, 1))
    return PLIFNet(plan, **options)


@register_model("plif_mnist")
def plif_mnist(**kwargs: Any) -> PLIFNet:
    """PLIF MNIST net (28x28x1, T = 8 in the paper); kwargs of :class:`PLIFNet`."""
    return _static(1, 28, 128, [True, True], 128 * 4 * 4, True, kwargs)


@register_model("plif_fashion_mnist")
def plif_fashion_mnist(**kwargs: Any) -> PLIFNet:
    """PLIF Fashion-MNIST net (same as MNIST); kwargs of :class:`PLIFNet`."""
    return _static(1, 28, 128, [True, True], 128 * 4 * 4, True, kwargs)


@register_model("plif_cifar10")
def plif_cifar10(**kwargs: Any) -> PLIFNet:
    """PLIF CIFAR-10 net (32x32x3, 6 convs of 256, T = 8); kwargs of :class:`PLIFNet`."""
    plan = [False, False, True, False, False, True]
    return _static(3, 32, 256, plan, 128 * 4 * 4, False, kwargs)


def _neuromorphic(n: int, input_size: int, num_classes: int, kwargs: dict[str, Any]) -> PLIFNet:
    options: dict[str, Any] = {"num_classes": num_classes}
    options.update(kwargs)
    return _static(2, input_size, 128, [True] * n, None, True, options)


@register_model("plif_nmnist")
def plif_nmnist(**kwargs: Any) -> PLIFNet:
    """PLIF N-MNIST net (34x34x2, 2 conv blocks, T = 10); kwargs of :class:`PLIFNet`."""
    return _neuromorphic(2, 34, 10, kwargs)


@register_model("plif_cifar10dvs")
def plif_cifar10dvs(**kwargs: Any) -> PLIFNet:
    """PLIF CIFAR10-DVS net (128x128x2, 4 conv blocks, T = 20); kwargs of :class:`PLIFNet`."""
    return _neuromorphic(4, 128, 10, kwargs)


@register_model("plif_dvsgesture")
def plif_dvsgesture(**kwargs: Any) -> PLIFNet:
    """PLIF DVS128 Gesture net (128x128x2, 5 conv blocks, 11 classes, T = 20); kwargs of
    :class:`PLIFNet`."""
    return _neuromorphic(5, 128, 11, kwargs)
