"""Spikformer (Zhou et al., ICLR 2023): a spiking vision transformer.

* **Spiking patch splitting (SPS)**: four conv3x3-BN-SN stages widening to
  ``D/8, D/4, D/2, D`` channels, the last ``pools`` of them followed by a 3x3 max-pool
  of stride 2, then a relative position embedding ``SN(BN(conv3x3(x)))`` added to the
  result; its ``h·w`` positions are the ``N`` tokens of ``D`` features.
* ``depth`` blocks ``x = x + SSA(x)``, ``x = x + MLP(x)`` with spiking self-attention
  (:class:`~spikeflow.layers.SpikingSelfAttention`) and
  ``MLP = SN(BN(FC(D → r·D))) → SN(BN(FC(r·D → D)))``.
* Head: the mean over tokens, then ``FC(D → classes)`` at every step: the output
  ``[T, B, classes]`` is logits per step (train with ``ce`` on the time-mean, as the
  paper; or ``tet``).

Presets: ``spikformer`` is the paper's CIFAR-10 model Spikformer-4-384 (32x32x3, two
pools: 8x8 = 64 tokens, 12 heads, MLP ratio 4; T = 4 in the paper), ``spikformer_dvs``
its DVS model Spikformer-2-256 (128x128x2, four pools, 16 heads, attention scale 0.25;
T = 16). Default neuron: LIF, τ = 2, detached reset (the paper's). Linear weights start
as the authors' (truncated normal, std 0.02; zero biases). Every size is an argument.
The linear layers inside the attention have no bias (a batch norm follows each, so
the function is the same as the authors' with biases, but their checkpoints do not
load as they are).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from spikeflow import layers
from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError
from spikeflow.layers.attention import (
    ATTENTION_NEURON_DEFAULTS,
    FeatureBatchNorm,
    SpikingSelfAttention,
)
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    check_positive_int,
    conv_bn,
)
from spikeflow.models.registry import register_model

__all__ = [
    "Spikformer",
    "check_transformer_arguments",
    "patch_splitting",
    "spikformer",
    "spikformer_dvs",
]


def check_transformer_arguments(
    owner: str, zero_init_residual: bool, pools: int, **sizes: int
) -> None:
    """The spiking transformers' arguments: positive sizes, ``pools`` in 0-4,
    ``embed_dim`` a multiple of 8 and of ``num_heads``; no ``zero_init_residual``."""
    for name, value in sizes.items():
        check_positive_int(name, value)
    if zero_init_residual:
        raise ConfigurationError(f"{owner}: zero_init_residual is not supported")
    if isinstance(pools, bool) or not isinstance(pools, int) or not 0 <= pools <= 4:
        raise ConfigurationError(f"pools must be an integer from 0 to 4, got {pools!r}")
    embed_dim, heads = sizes["embed_dim"], sizes["num_heads"]
    if embed_dim % 8 or embed_dim % heads:
        raise ConfigurationError(
            f"embed_dim ({embed_dim}) must be a multiple of 8 (the patch splitting's widths "
            f"D/8, D/4, D/2) and of num_heads ({heads})"
        )


def patch_splitting(
    in_channels: int, input_size: int, embed_dim: int, pools: int, make_neuron: Any,
    last_neuron: bool,
) -> tuple[nn.Sequential, int]:  # fmt: skip
    """Four conv3x3-BN stages widening to ``D/8, D/4, D/2, D``, each followed by a
    neuron (the fourth only with ``last_neuron``), the last ``pools`` by a 3x3 max-pool
    of stride 2; and the number of tokens (positions) it leaves."""
    widths = [in_channels, embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim]
    stages: list[nn.Module] = []
    side = input_size
    for index in range(4):
        stages += conv_bn(widths[index], widths[index + 1], 3)
        if index < 3 or last_neuron:
            stages.append(make_neuron())
        if index >= 4 - pools:
            stages.append(layers.MaxPool2d(3, 2, 1))
            side = (side - 1) // 2 + 1
    return nn.Sequential(*stages), side * side


def init_trunc_normal(modules: Iterable[nn.Module], kinds: tuple[type[nn.Module], ...]) -> None:
    """The authors' initialisation of the layers of ``kinds`` among ``modules``: weights
    truncated normal (std 0.02), biases zero."""
    for module in modules:
        if isinstance(module, kinds):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class PatchTokenTransformer(nn.Module):
    """What the spiking transformers share: the patch splitting (``patch_split``), the
    position embedding added to its output (``position``), then the ``blocks`` over
    its ``h·w`` positions as tokens. Subclasses build those and add their head."""

    in_channels: int
    patch_split: nn.Sequential
    position: nn.Sequential
    blocks: nn.ModuleList

    def forward_tokens(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> the last block's tokens ``[T, B, N, D]``."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        x = self.patch_split(x)
        x = x + self.position(x)
        tokens = x.flatten(3).transpose(2, 3)  # [T, B, N, D]
        for block in self.blocks:
            tokens = block(tokens)
        return tokens


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, make_neuron: Any) -> None:
        super().__init__()
        self.fc1, self.norm1, self.neuron1 = nn.Linear(dim, hidden), FeatureBatchNorm(hidden), \
            make_neuron()  # fmt: skip
        self.fc2, self.norm2, self.neuron2 = nn.Linear(hidden, dim), FeatureBatchNorm(dim), \
            make_neuron()  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        x = self.neuron1(self.norm1(self.fc1(x)))
        return self.neuron2(self.norm2(self.fc2(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, scale: float, neuron: Any,
                 neuron_kwargs: Mapping[str, Any] | None, make_neuron: Any) -> None:  # fmt: skip
        super().__init__()
        self.attention = SpikingSelfAttention(dim, heads, scale=scale, neuron=neuron,
                                              neuron_kwargs=neuron_kwargs)  # fmt: skip
        self.mlp = _MLP(dim, hidden, make_neuron)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(x)
        return x + self.mlp(x)


class Spikformer(PatchTokenTransformer):
    """Spikformer: spiking patch splitting, SSA blocks and a linear head.

    Args:
        num_classes: output classes.
        in_channels: input channels (3 for images, 2 for DVS polarities).
        input_size: side of the square input (the tokens are its size after ``pools``
            max-pools of stride 2).
        embed_dim: token features ``D`` (a multiple of 8 and of ``num_heads``).
        depth: transformer blocks.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP over ``D``.
        pools: how many of the 4 SPS stages end in a max-pool (0-4).
        attention_scale: the SSA scale ``s`` (0.125 in the authors' CIFAR and ImageNet
            code, 0.25 in their DVS code).
        neuron, neuron_kwargs: the spiking neurons, over the defaults ``tau=2``,
            ``detach_reset=True``.

    Input ``[T, B, in_channels, H, W]``, output ``[T, B, num_classes]`` logits.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        embed_dim: int = 384,
        depth: int = 4,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        pools: int = 2,
        attention_scale: float = 0.125,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_transformer_arguments(
            "Spikformer", zero_init_residual, pools, num_classes=num_classes,
            in_channels=in_channels, input_size=input_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio,
        )  # fmt: skip
        make = NeuronFactory(neuron, neuron_kwargs, defaults=ATTENTION_NEURON_DEFAULTS)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.patch_split, self.tokens = patch_splitting(
            in_channels, input_size, embed_dim, pools, make, last_neuron=True
        )
        self.position = nn.Sequential(*conv_bn(embed_dim, embed_dim, 3), make())
        scale = check_real("Spikformer: attention_scale", attention_scale, 0.0, low_open=True)
        self.blocks = nn.ModuleList(
            _Block(embed_dim, num_heads, embed_dim * mlp_ratio, scale, neuron, neuron_kwargs, make)
            for _ in range(depth)
        )
        self.head = nn.Linear(embed_dim, num_classes)
        init_trunc_normal(self.modules(), (nn.Linear,))  # the authors' linear layers

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, num_classes]``."""
        return self.head(self.forward_tokens(x).mean(dim=2))


@register_model("spikformer")
def spikformer(
    num_classes: int = 10,
    in_channels: int = 3,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Spikformer:
    """Spikformer-4-384 for 32x32 images (the paper's CIFAR-10 model); ``kwargs`` are
    :class:`Spikformer`'s other arguments (``input_size``, ``embed_dim``, ``depth``,
    ``num_heads``, ``mlp_ratio``, ``pools``)."""
    return Spikformer(num_classes=num_classes, in_channels=in_channels, neuron=neuron,
                      neuron_kwargs=neuron_kwargs, **kwargs)  # fmt: skip


@register_model("spikformer_dvs")
def spikformer_dvs(
    num_classes: int = 10,
    in_channels: int = 2,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Spikformer:
    """Spikformer-2-256 for 128x128 event frames (the paper's CIFAR10-DVS and DVS128
    Gesture model: four pools, 16 heads, attention scale 0.25 as the authors' DVS
    code); ``kwargs`` as :func:`spikformer`."""
    settings = {"input_size": 128, "embed_dim": 256, "depth": 2, "num_heads": 16,
                "pools": 4, "attention_scale": 0.25, **kwargs}  # fmt: skip
    return Spikformer(num_classes=num_classes, in_channels=in_channels, neuron=neuron,
                      neuron_kwargs=neuron_kwargs, **settings)  # fmt: skip
