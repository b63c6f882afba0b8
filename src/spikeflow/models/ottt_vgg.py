"""OTTT's spiking VGG (Xiao et al., NeurIPS 2022, "Online Training Through Time for
Spiking Neural Networks"): VGG without batch norm, its convolutions weight-standardised.

``features``: the VGG configurations (:data:`OTTT_VGG_CONFIGS`), each convolution 3x3
followed by a spiking neuron; with ``weight_standardization`` the convolutions are
:class:`~spikeflow.layers.WSConv2d` and each neuron's spikes are scaled by 2.74 (the
authors' constant, which gives the standardised layers' inputs unit scale again; no
batch norm). ``"M"`` is a 2x2 max pool, ``"A"`` a 2x2 average pool. Then a classifier:
the light one (``light_classifier=True``) is an adaptive average pool to ``fc_hw`` x
``fc_hw``, flattening and ``FC(→ num_classes)``; the other is torchvision's,
``pool(pool_size) → FC → SN → scale → dropout → FC → SN → scale → dropout → FC`` with
``hidden_features`` (4096) units, the hidden layers weight-standardised with
``weight_standardization`` (the scales are 2.74, or 1 without standardisation).

``ottt_spiking_vggws`` is the paper's network (configuration ``"S"``: 64, 128, A, 256,
256, A, 512, 512, A, 512, 512, standardised, the light classifier); ``ottt_spiking_vgg11``
... ``ottt_spiking_vgg19`` (and their ``_ws`` variants) are the torchvision depths with
the large classifier. The names, configurations and layers are SpikingJelly 2.0's
(``model.spiking_vggws_ottt``), under the same module names: its state dict loads as
it is, and the model computes SpikingJelly's function (per step, on a sequence
``[T, B, C, H, W]``, where SpikingJelly's runs one step per call).

The default neuron is the authors' OTTT LIF (SpikingJelly's ``OTTTLIFNode``): τ = 2,
``decay_input=False``, soft reset (``v_reset=None``), threshold 1, reset detached,
Sigmoid(α=4) surrogate. Trained by BPTT it is a plain LIF network; OTTT itself, where
each step's loss is backpropagated at once and the weights learn from presynaptic
traces, is spikeflow's online training with a trace decay of ``1 - 1/τ = 0.5``
(:func:`spikeflow.training.online.online_backward` with ``trace_decay=0.5``, or
``spikeflow train --online --online-trace-decay 0.5``; :mod:`spikeflow.training.traces`).
Its weights then receive SpikingJelly's OTTT gradients, but for the first layer's:
SpikingJelly's first layer learns from the input at each step, spikeflow's from the
input's trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from spikeflow import layers
from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    check_pooled_size,
    check_positive_int,
)
from spikeflow.models.registry import register_builder

__all__ = ["OTTT_NEURON_DEFAULTS", "OTTT_VGG_CONFIGS", "WS_SCALE", "OTTTSpikingVGG", "Scale"]

#: The authors' OTTT LIF (SpikingJelly's ``OTTTLIFNode`` defaults).
OTTT_NEURON_DEFAULTS: dict[str, Any] = {
    "tau": 2.0,
    "decay_input": False,
    "v_threshold": 1.0,
    "v_reset": None,
    "detach_reset": True,
}

#: The factor a neuron's spikes are scaled by after a weight-standardised layer.
WS_SCALE = 2.74

#: Convolution widths per configuration (SpikingJelly's names): ``"M"`` a 2x2 max pool,
#: ``"A"`` a 2x2 average pool. ``"S"`` is the OTTT paper's; ``"A"``, ``"B"``, ``"D"``,
#: ``"E"`` are VGG-11, 13, 16 and 19.
OTTT_VGG_CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M"],
    "S": [64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512],
}


class Scale(nn.Module):
    """Multiplies its input by a constant ``scale`` (no parameter; SpikingJelly's
    ``Scale`` of the OTTT VGG)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = check_real("Scale: scale", scale)

    def forward(self, x: Tensor) -> Tensor:
        """``x · scale``, any shape."""
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class OTTTSpikingVGG(nn.Module):
    """OTTT's spiking VGG: ``[T, B, C, H, W]`` → ``[T, B, num_classes]`` (module docstring).

    Args:
        config: widths, ``"M"`` (max pool) and ``"A"`` (average pool), or the name of
            one of :data:`OTTT_VGG_CONFIGS`.
        weight_standardization: weight-standardised convolutions (and hidden FC layers)
            with their spikes scaled by 2.74.
        num_classes, in_channels: output classes and input channels (3).
        neuron, neuron_kwargs: the spiking neurons, over :data:`OTTT_NEURON_DEFAULTS`.
        light_classifier: pool, flatten and one FC layer (True), or torchvision's three
            FC layers (False).
        drop_rate: dropout after each convolution's neuron (0: none; the mask is shared
            over the steps).
        fc_hw: the light classifier's pooled side (1).
        pool_size, hidden_features, dropout: the large classifier's pooled side (7),
            hidden width (4096) and dropout (0.5).
        zero_init_residual: refused (VGG has no residual blocks).
        input_size: the input's side (or ``(H, W)``), checked against the pools (each
            ``"M"`` and ``"A"`` halves the maps); None (default): checked at the call.
            ``spikeflow train`` passes its dataset's.

    Raises:
        ConfigurationError: an unknown configuration name, an entry that is neither a
            positive width nor ``"M"``/``"A"``, a configuration without convolutions, a
            size that is not a positive integer, a dropout outside ``[0, 1)``,
            ``zero_init_residual=True``, or an ``input_size`` the pools shrink to nothing.
    """

    #: Arguments the registered builders set themselves (not user arguments).
    builder_fixed_arguments: ClassVar[tuple[str, ...]] = (
        "config",
        "weight_standardization",
        "light_classifier",
    )

    def __init__(
        self,
        config: str | Sequence[int | str] = "S",
        weight_standardization: bool = True,
        num_classes: int = 1000,
        in_channels: int = 3,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        light_classifier: bool = True,
        drop_rate: float = 0.0,
        fc_hw: int = 1,
        pool_size: int = 7,
        hidden_features: int = 4096,
        dropout: float = 0.5,
        zero_init_residual: bool = False,
        input_size: int | tuple[int, int] | list[int] | None = None,
    ) -> None:
        super().__init__()
        if zero_init_residual:
            raise ConfigurationError("OTTTSpikingVGG has no residual blocks to zero-init")
        config = _resolve_config(config)
        #: How many 2x2 pools halve the maps: an input side needs at least 2 ** pools.
        self.pools = sum(item in ("M", "A") for item in config)
        if input_size is not None:
            check_pooled_size("OTTTSpikingVGG", input_size, self.pools)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        for name, value in (("fc_hw", fc_hw), ("pool_size", pool_size),
                            ("hidden_features", hidden_features)):  # fmt: skip
            check_positive_int(name, value)
        for name, rate in (("drop_rate", drop_rate), ("dropout", dropout)):
            check_real(f"OTTTSpikingVGG: {name}", rate, 0.0, 1.0, high_open=True)
        make = NeuronFactory(neuron, neuron_kwargs, OTTT_NEURON_DEFAULTS)
        ws = bool(weight_standardization)
        scale = WS_SCALE if ws else 1.0
        conv = layers.WSConv2d if ws else layers.Conv2d
        feats: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                feats.append(layers.MaxPool2d(2, 2))
            elif item == "A":
                feats.append(layers.AvgPool2d(2, 2))
            else:
                feats += [conv(channels, item, 3, padding=1), make()]
                if ws:
                    feats.append(Scale(WS_SCALE))
                if drop_rate > 0.0:
                    feats.append(layers.Dropout(drop_rate))
                channels = item
        self.features = nn.Sequential(*feats)
        if light_classifier:
            self.classifier = nn.Sequential(
                layers.AdaptiveAvgPool2d((fc_hw, fc_hw)),
                layers.Flatten(),
                layers.Linear(channels * fc_hw * fc_hw, num_classes),
            )
        else:
            linear = layers.WSLinear if ws else layers.Linear
            self.classifier = nn.Sequential(
                layers.AdaptiveAvgPool2d((pool_size, pool_size)),
                layers.Flatten(),
                linear(channels * pool_size * pool_size, hidden_features),
                make(),
                Scale(scale),
                layers.Dropout(dropout),
                linear(hidden_features, hidden_features),
                make(),
                Scale(scale),
                layers.Dropout(dropout),
                layers.Linear(hidden_features, num_classes),
            )
        for m in self.modules():  # SpikingJelly's (torchvision's) initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` → ``[T, B, num_classes]``."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        if min(x.shape[-2:]) < 2**self.pools:
            raise ShapeError(
                f"{type(self).__name__}: the input's {x.shape[-2]}x{x.shape[-1]} maps are too "
                f"small for its {self.pools} 2x2 pools (a side of at least {2**self.pools} "
                "is needed)"
            )
        return self.classifier(self.features(x))


def _resolve_config(config: str | Sequence[int | str]) -> list[int | str]:
    """The configuration ``config`` names or is, checked."""
    if isinstance(config, str):
        if config not in OTTT_VGG_CONFIGS:
            raise ConfigurationError(
                f"OTTTSpikingVGG: unknown config {config!r}; available: "
                f"{', '.join(OTTT_VGG_CONFIGS)}, or a list of widths, 'M' and 'A'"
            )
        return list(OTTT_VGG_CONFIGS[config])
    if not isinstance(config, Sequence):
        raise ConfigurationError(
            f"OTTTSpikingVGG: config must be a name or a list of widths, 'M' and 'A', got "
            f"{type(config).__name__}"
        )
    for item in config:
        if item in ("M", "A"):
            continue
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise ConfigurationError(
                f"OTTTSpikingVGG: config entries must be positive widths, 'M' or 'A', got {item!r}"
            )
    if not any(isinstance(item, int) for item in config):
        raise ConfigurationError(f"OTTTSpikingVGG: config {list(config)} has no convolution")
    return list(config)


def _register(name: str, config: str, ws: bool, light: bool, doc: str) -> None:
    def build(**kwargs: Any) -> OTTTSpikingVGG:
        return OTTTSpikingVGG(config, weight_standardization=ws, light_classifier=light,
                              **kwargs)  # fmt: skip

    globals()[name] = register_builder(name, build, doc)
    __all__.append(name)


_register(
    "ottt_spiking_vggws", "S", True, True,
    "The OTTT paper's VGG (SpikingJelly's ``ottt_spiking_vggws``): configuration ``'S'``, "
    "weight-standardised, the light classifier; kwargs of :class:`OTTTSpikingVGG`.",
)  # fmt: skip
for _depth, _config in ((11, "A"), (13, "B"), (16, "D"), (19, "E")):
    for _ws in (False, True):
        _register(
            f"ottt_spiking_vgg{_depth}{'_ws' if _ws else ''}", _config, _ws, False,
            f"OTTT spiking VGG-{_depth}{', weight-standardised' if _ws else ''} with the large "
            f"classifier (SpikingJelly's ``ottt_spiking_vgg{_depth}{'_ws' if _ws else ''}``); "
            "kwargs of :class:`OTTTSpikingVGG`.",
        )  # fmt: skip
