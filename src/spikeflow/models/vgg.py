"""Spiking VGG 11/13/16/19, with and without batch norm (SpikingJelly's spiking_vgg).

``features``: the torchvision VGG configurations, each conv3x3 followed by BN (the
``_bn`` variants) and a spiking neuron, 2x2 pooling between blocks (max, as in the
paper; ``pooling="avg"`` or ``"sum"`` for a network NIR can express). ``classifier``:
adaptive average pool to ``pool_size`` x ``pool_size`` (7 as in torchvision; use 1 for
32x32 inputs, where the features end at 1x1), then FC-SN-dropout-FC-SN-dropout-FC
with ``hidden_features`` (4096) units; dropout masks are shared over T. Output
``[T, B, num_classes]``. Default neuron: IF, detach_reset, ATan(α=2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.models.building import pooling_2x2
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    check_pooled_size,
    check_positive_int,
)
from spikeflow.models.registry import register_builder
from spikeflow.models.resnet import IMAGENET_NEURON_DEFAULTS, with_pretrained

__all__ = ["VGG_CONFIGS", "SpikingVGG"]

#: Convolution widths per depth; "M" is a 2x2 pooling (max unless ``pooling`` says).
VGG_CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M"],
}


class SpikingVGG(nn.Module):
    """Spiking VGG: ``[T, B, C, H, W]`` → ``[T, B, num_classes]``.

    Args:
        config: widths and ``"M"`` pools (see :data:`VGG_CONFIGS`).
        batch_norm: BN after every convolution.
        num_classes, in_channels: output classes and input channels.
        neuron, neuron_kwargs: the spiking neuron.
        pool_size: side of the adaptive average pool before the classifier (7).
        hidden_features: width of the two hidden FC layers (4096).
        dropout: dropout probability in the classifier (0.5).
        zero_init_residual: accepted for a uniform interface; VGG has no residual
            blocks, so it must be False.
        input_size: the input's side (or ``(H, W)``), checked against the pools
            (each halves it, rounding down: a side must stay at least 1); None: not
            checked (``spikeflow train`` gives its dataset's).
        pooling: the 2x2, stride-2 pooling at each ``"M"``: ``"max"`` (default, the
            paper's), ``"avg"`` or ``"sum"`` (average pooling times 4); the last two
            export to NIR (docs/nir.md).

    Raises:
        ConfigurationError: a bad argument, or an input too small for the pools.
    """

    #: Arguments the registered builders set themselves (not user arguments).
    builder_fixed_arguments: ClassVar[tuple[str, ...]] = ("config", "batch_norm")

    def __init__(
        self,
        config: Sequence[int | str],
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_channels: int = 3,
        neuron: NeuronSpec = "if",
        neuron_kwargs: Mapping[str, Any] | None = None,
        pool_size: int = 7,
        hidden_features: int = 4096,
        dropout: float = 0.5,
        zero_init_residual: bool = False,
        input_size: int | tuple[int, int] | list[int] | None = None,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        pool_2x2 = pooling_2x2(pooling)
        if zero_init_residual:
            raise ConfigurationError("SpikingVGG has no residual blocks to zero-init")
        if input_size is not None:
            check_pooled_size("SpikingVGG", input_size, sum(item == "M" for item in config))
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_positive_int("pool_size", pool_size)
        check_positive_int("hidden_features", hidden_features)
        factory = NeuronFactory(neuron, neuron_kwargs, IMAGENET_NEURON_DEFAULTS)
        feats: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                feats.append(pool_2x2())
                continue
            if not isinstance(item, int) or isinstance(item, bool) or item < 1:
                raise ConfigurationError(f"VGG config entries must be widths or 'M', got {item!r}")
            feats.append(layers.Conv2d(channels, item, 3, 1, 1))
            if batch_norm:
                feats.append(layers.BatchNorm2d(item))
            feats.append(factory())
            channels = item
        self.features = nn.Sequential(*feats)
        self.avgpool = layers.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            layers.Flatten(),
            layers.Linear(channels * pool_size * pool_size, hidden_features),
            factory(),
            layers.Dropout(dropout),
            layers.Linear(hidden_features, hidden_features),
            factory(),
            layers.Dropout(dropout),
            layers.Linear(hidden_features, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]``."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        return self.classifier(self.avgpool(self.features(x)))


def _register(depth: int, batch_norm: bool) -> None:
    name = f"spiking_vgg{depth}{'_bn' if batch_norm else ''}"

    def build(
        pretrained: str | os.PathLike[str] | None = None,
        pretrained_classifier: str = "load",
        **kwargs: Any,
    ) -> SpikingVGG:
        model = SpikingVGG(VGG_CONFIGS[depth], batch_norm=batch_norm, **kwargs)
        return with_pretrained(model, pretrained, pretrained_classifier)

    doc = (
        f"Spiking VGG-{depth}{' with batch norm' if batch_norm else ''}; kwargs of "
        f":class:`SpikingVGG` and ``pretrained`` (None, or the path of torchvision's "
        f"``vgg{depth}{'_bn' if batch_norm else ''}`` ImageNet weights file: docs/models.md) "
        'and ``pretrained_classifier`` ("load", "skip_last" or "skip_all": leave the '
        "last or every Linear)."
    )
    globals()[name] = register_builder(name, build, doc)
    __all__.append(name)


for _depth in (11, 13, 16, 19):
    for _bn in (False, True):
        _register(_depth, _bn)
