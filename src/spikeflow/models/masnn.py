"""MA-SNN (Yao et al., TPAMI 2023, "Attention Spiking Neural Networks"): the DVS128
Gesture network with multi-dimensional attention before every convolutional layer's
neurons and temporal attention before every linear layer's.

* **Convolutional blocks** ``LIF(MA(AvgPool(BN(conv3x3(x)))))`` (the pool only where its
  factor is above 1), ``MA`` = :class:`~spikeflow.layers.MultiDimensionalAttention`
  (temporal, channel and spatial attention, then a ReLU); 64, 128, 128 channels with
  pools 1, 2, 2.
* **Linear blocks** ``LIF(ReLU(TA(BN(FC(x)))))`` on the flattened maps (``TA`` =
  :class:`~spikeflow.layers.TemporalWiseAttention`): to 256 features, then to the
  classes. The output ``[T, B, classes]`` is the last neurons' spikes per step (their
  time-mean, the firing rates, is SpikingJelly's output).

The neurons are the authors' LIF: ``tau = 10/7`` (a decay of 0.3), threshold 0.3, the
input not divided by ``tau``, a detached reset and a rectangular surrogate of width 2.
``T`` is a size of the model (the attention's MLPs have ``T`` inputs), and so is the
input size (the first linear layer has ``C·H·W`` inputs): 60 steps of 32x32 frames by
default, as SpikingJelly 2.0's ``model.masnn_dvs128_gesture``.

SpikingJelly's ``model.MASNN`` with the same sizes computes the same function, with the
same parameter names (its state dict loads as it is). Deliberate differences: the input
is a sequence ``[T, B, C, H, W]`` (no 4-d image repeated ``T`` times) and the output is
per step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.common import NeuronFactory, NeuronSpec, check_input, check_positive_int
from spikeflow.models.registry import register_model

__all__ = [
    "ATT_MS_NEURON_DEFAULTS",
    "MASNN",
    "MA_NEURON_DEFAULTS",
    "AttMSResNet",
    "att_ms_resnet18",
    "masnn_dvs128_gesture",
]

#: The MA-SNN authors' LIF (SpikingJelly 2.0's MA-SNN default).
MA_NEURON_DEFAULTS: dict[str, Any] = {
    "tau": 10.0 / 7.0,
    "v_threshold": 0.3,
    "decay_input": False,
    "detach_reset": True,
    "surrogate_function": {"name": "rect", "alpha": 2.0},
}

#: The Att-MS-ResNet's LIF (SpikingJelly 2.0's default): a decay of 0.25, threshold 0.5.
ATT_MS_NEURON_DEFAULTS: dict[str, Any] = {
    "tau": 4.0 / 3.0,
    "v_threshold": 0.5,
    "decay_input": False,
    "detach_reset": True,
    "surrogate_function": {"name": "rect", "alpha": 1.0},
}


class _ConvBlock(nn.Module):
    """``LIF(MA(AvgPool(BN(conv3x3(x)))))``."""

    def __init__(self, cin: int, cout: int, pool: int, attn: nn.Module, cell: nn.Module) -> None:
        super().__init__()
        self.conv = layers.Conv2d(cin, cout, 3, 1, 1)
        self.bn = layers.BatchNorm2d(cout)
        self.pool = layers.AvgPool2d(pool) if pool > 1 else None
        self.attn, self.cell = attn, cell

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> spikes ``[T, B, C', H / pool, W / pool]``."""
        x = self.bn(self.conv(x))
        if self.pool is not None:
            x = self.pool(x)
        return self.cell(self.attn(x))


class _FcBlock(nn.Module):
    """``LIF(ReLU(TA(BN(FC(x)))))`` on ``[T, B, features]``."""

    def __init__(self, fin: int, fout: int, T: int, reduction_t: int, cell: nn.Module) -> None:
        super().__init__()
        self.linear = layers.Linear(fin, fout)
        self.bn = layers.BatchNorm1d(fout)
        self.attn = layers.TemporalWiseAttention(T, reduction_t, dimension=2)
        self.relu = nn.ReLU()
        self.cell = cell

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, F]`` -> spikes ``[T, B, F']``."""
        return self.cell(self.relu(self.attn(self.bn(self.linear(x)))))


def _sizes(name: str, value: Sequence[int], owner: str = "MASNN") -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigurationError(f"{owner}: {name} must be a non-empty sequence, got {value!r}")
    return tuple(check_positive_int(f"{owner}: {name}[{i}]", v) for i, v in enumerate(value))


class MASNN(nn.Module):
    """MA-SNN: convolutional blocks with multi-dimensional attention, then two linear
    blocks with temporal attention.

    Args:
        T: the time steps of every input (the attention's MLPs have ``T`` inputs).
        num_classes: output classes.
        in_channels: input channels (2 for DVS polarities).
        input_size: the input's ``(H, W)`` (an int for square frames), divisible by
            the product of the pools.
        channels: the convolutional blocks' channels.
        pools: their average-pool factors (1: none), one per block.
        fc_hidden: the first linear block's features.
        reduction_t: the temporal attentions' reduction (``T // reduction_t`` hidden units).
        reduction_c: the channel attentions' reduction.
        neuron, neuron_kwargs: the spiking neurons, over :data:`MA_NEURON_DEFAULTS`.

    Input ``[T, B, in_channels, H, W]``, output spikes ``[T, B, num_classes]``.

    Raises:
        ConfigurationError: a size that is not a positive integer, ``channels`` and
            ``pools`` of different lengths, an ``input_size`` the pools do not divide, or
            a reduction the attention refuses.
    """

    def __init__(
        self,
        T: int = 60,
        num_classes: int = 11,
        in_channels: int = 2,
        input_size: int | Sequence[int] = 32,
        channels: Sequence[int] = (64, 128, 128),
        pools: Sequence[int] = (1, 2, 2),
        fc_hidden: int = 256,
        reduction_t: int = 5,
        reduction_c: int = 8,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("T", T), ("num_classes", num_classes),
                            ("in_channels", in_channels), ("fc_hidden", fc_hidden)):  # fmt: skip
            check_positive_int(f"MASNN: {name}", value)
        if zero_init_residual:
            raise ConfigurationError("MASNN: zero_init_residual is not supported")
        channels, pools = _sizes("channels", channels), _sizes("pools", pools)
        if len(channels) != len(pools):
            raise ConfigurationError(
                f"MASNN: channels ({len(channels)}) and pools ({len(pools)}) must have one "
                "value per block each"
            )
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if len(size) != 2:
            raise ConfigurationError(f"MASNN: input_size must be (H, W), got {input_size!r}")
        height, width = (check_positive_int("MASNN: input_size", v) for v in size)
        self.T, self.in_channels, self.num_classes = T, in_channels, num_classes
        self.input_size = (height, width)
        for pool in pools:
            if height % pool or width % pool:
                raise ConfigurationError(
                    f"MASNN: input_size {self.input_size} must be divisible by the pools "
                    f"{pools} (their product)"
                )
            height, width = height // pool, width // pool
        make = NeuronFactory(neuron, neuron_kwargs, defaults=MA_NEURON_DEFAULTS)
        blocks, cin = [], in_channels
        for cout, pool in zip(channels, pools, strict=True):
            attn = layers.MultiDimensionalAttention(T, cout, reduction_t, reduction_c)
            blocks.append(_ConvBlock(cin, cout, pool, attn, make()))
            cin = cout
        self.conv_blocks = nn.Sequential(*blocks)
        self.fc_blocks = nn.Sequential(
            _FcBlock(cin * height * width, fc_hidden, T, reduction_t, make()),
            _FcBlock(fc_hidden, num_classes, T, reduction_t, make()),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> spikes ``[T, B, num_classes]``."""
        check_input(x, "MASNN", "[T, B, C, H, W]", 5, self.in_channels)
        if x.shape[0] != self.T or tuple(x.shape[-2:]) != self.input_size:
            raise ShapeError(
                f"MASNN was built for T = {self.T} steps of {self.input_size} frames, got "
                f"shape {tuple(x.shape)}"
            )
        return self.fc_blocks(self.conv_blocks(x).flatten(2))


@register_model("masnn_dvs128_gesture")
def masnn_dvs128_gesture(
    num_classes: int = 11,
    in_channels: int = 2,
    T: int = 60,
    input_size: int | Sequence[int] = 32,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> MASNN:
    """MA-SNN for DVS128 Gesture (SpikingJelly 2.0's ``model.masnn_dvs128_gesture``): 60
    steps of 32x32 frames, channels 64, 128, 128 (pools 1, 2, 2), 256 hidden features,
    reductions 5 (temporal) and 8 (channel); ``kwargs`` are :class:`MASNN`'s other
    arguments (``channels``, ``pools``, ``fc_hidden``, ...; ``spikeflow train`` passes
    the dataset's ``input_size``, ``T`` comes from ``--model-kwargs T=...``)."""
    return MASNN(T=T, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                 neuron=neuron, neuron_kwargs=neuron_kwargs, **kwargs)  # fmt: skip


class _AttMSBlock(nn.Module):
    """``shortcut(x) + CSA(BN(conv3x3(LIF(BN(conv3x3(LIF(x)))))))``: an MS-ResNet block
    with channel and spatial attention on its branch."""

    def __init__(self, cin: int, cout: int, stride: int, attention: nn.Module,
                 make_neuron: Any) -> None:  # fmt: skip
        super().__init__()
        self.spike1 = make_neuron()
        self.conv1 = layers.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = layers.BatchNorm2d(cout)
        self.spike2 = make_neuron()
        self.conv2 = layers.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = layers.BatchNorm2d(cout)
        nn.init.constant_(self.bn1.weight, 0.5)
        nn.init.constant_(self.bn2.weight, 0.1)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or cin != cout:
            parts: list[nn.Module] = []
            if stride != 1:
                parts.append(layers.AvgPool2d(stride, stride, ceil_mode=True))
            norm = layers.BatchNorm2d(cout)
            nn.init.constant_(norm.weight, 0.5)
            self.downsample = nn.Sequential(*parts, layers.Conv2d(cin, cout, 1, bias=False), norm)
        self.attention = attention

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, C', H / stride, W / stride]`` (real values)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.conv1(self.spike1(x)))
        out = self.bn2(self.conv2(self.spike2(out)))
        return self.attention(out) + identity


class AttMSResNet(nn.Module):
    """Att-MS-ResNet (the MA-SNN paper's ImageNet networks, SpikingJelly 2.0's
    ``model.AttMSResNet``): an MS-ResNet whose blocks end with channel and spatial
    attention (:class:`~spikeflow.layers.MultiDimensionalAttention` without its temporal
    part) on the branch, before the membrane shortcut.

    Stem ``BN(conv7x7/2)`` (no pool); stages of ``base_width · (1, 2, 4, 8)`` channels,
    each downsampling by 2 (the first included) with the shortcut
    ``BN(conv1x1(AvgPool2(x)))``; head ``LIF``, global average pool, dropout (one mask for
    all steps), ``FC`` at every step. Batch norms start with ``γ = 0.5`` (0.1 for each
    block's last), the authors' and SpikingJelly's (plain batch norms: not
    :class:`~spikeflow.models.ms_resnet.MSResNet`'s tdBN).

    Args:
        depths: blocks per stage (3 or 4 stages).
        num_classes, in_channels: output classes and input channels.
        base_width: the stem's and the first stage's channels (64).
        reduction_c: the channel attention's reduction (8).
        dropout: dropout before the FC (0.2).
        neuron, neuron_kwargs: the spiking neurons, over :data:`ATT_MS_NEURON_DEFAULTS`.

    Input ``[T, B, C, H, W]`` (any ``T``, any ``H, W`` >= 1), output ``[T, B, num_classes]``.

    Raises:
        ConfigurationError: a size that is not a positive integer, not 3 or 4 stages, a
            bad ``dropout`` or reduction, or ``zero_init_residual=True``.
    """

    def __init__(
        self,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 1000,
        in_channels: int = 3,
        base_width: int = 64,
        reduction_c: int = 8,
        dropout: float = 0.2,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                            ("base_width", base_width)):  # fmt: skip
            check_positive_int(f"AttMSResNet: {name}", value)
        if zero_init_residual:
            raise ConfigurationError("AttMSResNet: zero_init_residual is not supported")
        depths = _sizes("depths", depths, "AttMSResNet")
        if len(depths) not in (3, 4):
            raise ConfigurationError(
                f"AttMSResNet: depths must have 3 or 4 stages, got {len(depths)}"
            )
        make = NeuronFactory(neuron, neuron_kwargs, defaults=ATT_MS_NEURON_DEFAULTS)
        self.in_channels, self.num_classes = in_channels, num_classes
        stem_norm = layers.BatchNorm2d(base_width)
        nn.init.constant_(stem_norm.weight, 0.5)
        self.stem = nn.Sequential(
            layers.Conv2d(in_channels, base_width, 7, 2, 3, bias=False), stem_norm
        )
        cin = base_width
        for i, depth in enumerate(depths):
            cout = base_width * 2**i
            blocks = []
            for j in range(depth):
                attention = layers.MultiDimensionalAttention(
                    1, cout, reduction_c=reduction_c, use_temporal=False
                )
                blocks.append(_AttMSBlock(cin, cout, 2 if j == 0 else 1, attention, make))
                cin = cout
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.stages = len(depths)
        self.head_lif = make()
        self.avgpool = layers.AdaptiveAvgPool2d(1)
        self.dropout = layers.Dropout(dropout)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, num_classes]``."""
        check_input(x, "AttMSResNet", "[T, B, C, H, W]", 5, self.in_channels)
        if 0 in x.shape[-2:]:
            raise ShapeError(f"AttMSResNet expects H, W >= 1, got shape {tuple(x.shape)}")
        x = self.stem(x)
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.head(self.dropout(self.avgpool(self.head_lif(x)).flatten(2)))


@register_model("att_ms_resnet18")
def att_ms_resnet18(
    num_classes: int = 1000,
    in_channels: int = 3,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> AttMSResNet:
    """Att-MS-ResNet-18 (SpikingJelly 2.0's ``model.att_ms_resnet18``): blocks 2, 2, 2, 2,
    64-512 channels, dropout 0.2; ``kwargs`` are :class:`AttMSResNet`'s other arguments
    (``base_width``, ``reduction_c``, ``dropout``)."""
    return AttMSResNet((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels,
                       neuron=neuron, neuron_kwargs=neuron_kwargs, **kwargs)  # fmt: skip
