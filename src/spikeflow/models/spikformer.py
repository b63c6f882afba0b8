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
from spikeflow.errors import ConfigurationError, ShapeError
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
from spikeflow.models.registry import register_builder, register_model

__all__ = [
    "Spikformer",
    "attention_threshold",
    "check_transformer_arguments",
    "convert_spikingjelly_state_dict",
    "patch_splitting",
    "spikformer",
    "spikformer_cifar10",
    "spikformer_dvs",
    "spikformer_s",
    "spikformer_ti",
    "sps_indices",
]


def check_sizes_without_zero_init(owner: str, zero_init_residual: bool, **sizes: int) -> None:
    """Each of ``sizes`` a positive integer (checked in the order given, a
    ConfigurationError naming it), then ``zero_init_residual`` refused (one naming
    ``owner``): the spiking transformers have no residual branch to zero-init."""
    for name, value in sizes.items():
        check_positive_int(name, value)
    if zero_init_residual:
        raise ConfigurationError(f"{owner}: zero_init_residual is not supported")


def check_transformer_arguments(
    owner: str, zero_init_residual: bool, pools: int, **sizes: int
) -> None:
    """The spiking transformers' arguments: positive sizes, ``pools`` in 0-4,
    ``embed_dim`` a multiple of 8 and of ``num_heads``; no ``zero_init_residual``."""
    check_sizes_without_zero_init(owner, zero_init_residual, **sizes)
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
    last_neuron: bool, pool_first: bool = False,
) -> tuple[nn.Sequential, int]:  # fmt: skip
    """Four conv3x3-BN stages widening to ``D/8, D/4, D/2, D``, each followed by a
    neuron (the fourth only with ``last_neuron``), the last ``pools`` by a 3x3 max-pool
    of stride 2 (after the neuron; before it with ``pool_first``); and the number of
    tokens (positions) it leaves."""
    widths = [in_channels, embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim]
    stages: list[nn.Module] = []
    side = input_size
    for index in range(4):
        stages += conv_bn(widths[index], widths[index + 1], 3)
        pooled = index >= 4 - pools
        if pooled and pool_first:
            stages.append(layers.MaxPool2d(3, 2, 1))
        if index < 3 or last_neuron:
            stages.append(make_neuron())
        if pooled and not pool_first:
            stages.append(layers.MaxPool2d(3, 2, 1))
        if pooled:
            side = (side - 1) // 2 + 1
    return nn.Sequential(*stages), side * side


def attention_threshold(neuron_kwargs: Mapping[str, Any] | None) -> Any:
    """The threshold of a transformer's attention neurons: ``neuron_kwargs["v_threshold"]``
    where given, else 0.5 (the authors'). SpikingJelly 2.0's transformers pass their
    ``**kwargs`` to every neuron, the attention's too (its 0.5 is a default they
    override); spikeflow's ``neuron_kwargs`` do the same."""
    return (neuron_kwargs or {}).get("v_threshold", 0.5)


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
        self.attention = SpikingSelfAttention(
            dim, heads, scale=scale, attention_threshold=attention_threshold(neuron_kwargs),
            neuron=neuron, neuron_kwargs=neuron_kwargs,
        )  # fmt: skip
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
            ``detach_reset=True``; a ``v_threshold`` there sets the attention neurons'
            too (0.5 otherwise), as SpikingJelly's keywords do.
        pool_first: each of the SPS max-pools before its stage's neuron, as SpikingJelly
            2.0's ``model.Spikformer`` (``conv-BN-pool-SN``); by default after it, as the
            authors' code (``conv-BN-SN-pool``).

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
        pool_first: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(pool_first, bool):
            raise ConfigurationError(f"Spikformer: pool_first must be True or False, got "
                                     f"{pool_first!r}")  # fmt: skip
        check_transformer_arguments(
            "Spikformer", zero_init_residual, pools, num_classes=num_classes,
            in_channels=in_channels, input_size=input_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio,
        )  # fmt: skip
        make = NeuronFactory(neuron, neuron_kwargs, defaults=ATTENTION_NEURON_DEFAULTS)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.patch_split, self.tokens = patch_splitting(
            in_channels, input_size, embed_dim, pools, make, last_neuron=True,
            pool_first=pool_first,
        )  # fmt: skip
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


_SJ_DOC = """{title} as SpikingJelly 2.0's ``model.{name}`` builds it: {sizes}, MLP
ratio 4, attention scale 0.125, each SPS max-pool before its stage's neuron
(``pool_first=True``, SpikingJelly's layout; :func:`spikformer` pools after it, as the
authors). ``kwargs`` are :class:`Spikformer`'s other arguments (any size may be
changed). SpikingJelly's weights load through :func:`convert_spikingjelly_state_dict`
with ``pools={pools}``; its ``T`` is not an argument: the input ``[T, B, C, H, W]``
carries it (repeat a static image ``T`` times). One difference: with its default neuron
(no ``spiking_neuron``) SpikingJelly keeps its attention neurons (``qkv_lif``,
``attn_lif``, ``proj_lif``) at ``tau=2``, ``detach_reset=True`` whatever its keywords;
here a ``tau`` or ``detach_reset`` in ``neuron_kwargs`` sets those too (its other
keywords, ``v_threshold`` included, set them in both)."""


def _register_sj(name: str, title: str, sizes: dict[str, int], num_classes: int,
                 described: str) -> Any:  # fmt: skip
    """Register the builder ``name`` of SpikingJelly's Spikformer variant of ``sizes``."""

    def build(
        num_classes: int = num_classes,
        in_channels: int = 3,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Spikformer:
        settings: dict[str, Any] = {**sizes, "mlp_ratio": 4, "pool_first": True, **kwargs}
        return Spikformer(num_classes=num_classes, in_channels=in_channels, neuron=neuron,
                          neuron_kwargs=neuron_kwargs, **settings)  # fmt: skip

    doc = _SJ_DOC.format(title=title, name=name, sizes=described, pools=sizes["pools"])
    return register_builder(name, build, doc)


spikformer_ti = _register_sj(
    "spikformer_ti", "Spikformer-Ti",
    {"input_size": 224, "embed_dim": 256, "depth": 4, "num_heads": 8, "pools": 4}, 1000,
    "224x224 images, four pools (16x16 patches), ``embed_dim=256``, 8 heads, depth 4",
)  # fmt: skip
spikformer_s = _register_sj(
    "spikformer_s", "Spikformer-S",
    {"input_size": 224, "embed_dim": 384, "depth": 6, "num_heads": 12, "pools": 4}, 1000,
    "224x224 images, four pools (16x16 patches), ``embed_dim=384``, 12 heads, depth 6",
)  # fmt: skip
spikformer_cifar10 = _register_sj(
    "spikformer_cifar10", "The CIFAR-10 Spikformer-4-384",
    {"input_size": 32, "embed_dim": 384, "depth": 4, "num_heads": 12, "pools": 2}, 10,
    "32x32 images, two pools (4x4 patches), ``embed_dim=384``, 12 heads, depth 4",
)  # fmt: skip

#: SpikingJelly's names in a spiking self-attention (after ``.attn.``) that become
#: :class:`~spikeflow.layers.SpikingSelfAttention`'s (QKFormer's converter shares them).
SJ_SSA_RENAMES = {
    "attn_lif.": "attention_neuron.",
    "proj_conv_bn.0.": "proj.",
    "proj_conv_bn.1.": "proj_norm.",
    "proj_lif.": "proj_neuron.",
}
_SJ_MLP_RENAMES = {"fc1.0.": "fc1.", "fc1.1.": "norm1.", "fc2.0.": "fc2.", "fc2.1.": "norm2."}
_SJ_QKV = {"qkv_conv_bn.0.": "qkv.linear.{}.", "qkv_conv_bn.1.": "qkv.norm.{}.",
           "qkv_lif.": "qkv.neuron.{}."}  # fmt: skip


def sps_indices(
    pools: int, last_neuron: bool, pool_first: bool = False
) -> list[tuple[int, int, int | None]]:
    """The positions in :func:`patch_splitting`'s ``nn.Sequential`` (of the same
    arguments) of each stage's convolution, batch norm and neuron (``None`` for a fourth
    stage without one)."""
    if isinstance(pools, bool) or not isinstance(pools, int) or not 0 <= pools <= 4:
        raise ConfigurationError(f"pools must be an integer from 0 to 4, got {pools!r}")
    out: list[tuple[int, int, int | None]] = []
    start = 0
    for index in range(4):
        has_neuron = index < 3 or last_neuron
        pooled = index >= 4 - pools
        neuron_at = start + 2 + int(pooled and pool_first)  # conv, BN, (pool), neuron
        out.append((start, start + 1, neuron_at if has_neuron else None))
        start += 2 + int(has_neuron) + int(pooled)
    return out


def convert_spikingjelly_state_dict(
    state: Mapping[str, Tensor], *, pools: int, pool_first: bool = True
) -> dict[str, Tensor]:
    """SpikingJelly 2.0's ``model.Spikformer`` state dict (or any mapping of its names to
    tensors, such as its parameters' gradients) under :class:`Spikformer`'s names and
    shapes, for a model with ``pools`` max-pools (2 for its ``spikformer_cifar10``,
    ``patch_size=4``; 4 for ``spikformer_ti`` / ``spikformer_s``, ``patch_size=16``).

    The SPS stages ``patch_embed.stages.i`` and ``positional_encoding`` become
    ``patch_split.*`` and ``position.*``; each attention's fused ``qkv_conv_bn`` (a
    ``[3D, D, 1]`` convolution and a batch norm of ``3D`` features) becomes the three
    ``qkv.linear.i`` / ``qkv.norm.i`` (``Q``, ``K``, ``V``), a tensor of its one neuron
    ``qkv_lif`` goes to each ``qkv.neuron.i``; 1x1 convolution weights ``[out, in, 1]``
    become linear weights ``[out, in]``. SpikingJelly's MLP convolutions have no bias:
    where a state dict has an MLP weight, the zero bias of spikeflow's linear layer is
    added (a batch norm follows it). Build the model with ``pool_first=True`` (as the
    SpikingJelly-named builders do) for SpikingJelly's outputs; ``pool_first`` here is
    the target model's (it places the SPS neurons' tensors, a learnable neuron's).

    Raises:
        ConfigurationError: ``pools`` not from 0 to 4.
        ShapeError: a fused ``qkv_conv_bn`` tensor whose first dim is not a multiple of 3.
    """
    stages = sps_indices(pools, last_neuron=True, pool_first=pool_first)
    out: dict[str, Tensor] = {}
    # The parts of one fused module, held until its last tensor so that they come out in
    # spikeflow's order (``norm.0.*``, then ``norm.1.*``, ...).
    held: list[dict[str, Tensor]] = [{}, {}, {}]
    holding = ""

    def release() -> None:
        for parts in held:
            out.update(parts)
            parts.clear()

    for key, value in state.items():
        prefix, sep, rest = key.partition(".attn.")
        fused = next((m for m in _SJ_QKV if rest.startswith(m)), None) if sep else None
        if holding != f"{prefix}.{fused}":
            release()
            holding = f"{prefix}.{fused}" if fused else ""
        if fused is not None:
            for i, part in enumerate(split_fused_qkv(key, fused.rstrip("."), value)):
                name = f"{prefix}.attention.{_SJ_QKV[fused].format(i)}{rest[len(fused) :]}"
                held[i][name] = part
            continue
        new = key
        if key.startswith("patch_embed.stages."):
            stage, _, tail = key.removeprefix("patch_embed.stages.").partition(".")
            part, _, leaf = tail.partition(".")
            if part == "conv_bn":  # conv_bn.block.0 / .1
                which, _, leaf = leaf.removeprefix("block.").partition(".")
                index = stages[int(stage)][int(which)]
            else:  # the stage's neuron
                index = stages[int(stage)][2]
            new = f"patch_split.{index}.{leaf}"
        elif key.startswith("patch_embed.positional_encoding."):
            tail = key.removeprefix("patch_embed.positional_encoding.")
            if tail.startswith("conv_bn.block."):
                new = "position." + tail.removeprefix("conv_bn.block.")
            else:  # the neuron
                new = "position.2." + tail.partition(".")[2]
        elif sep:
            old = next((o for o in SJ_SSA_RENAMES if rest.startswith(o)), None)
            new = f"{prefix}.attention.{SJ_SSA_RENAMES[old]}{rest[len(old):]}" if old else \
                f"{prefix}.attention.{rest}"  # fmt: skip
        elif ".mlp." in key:
            prefix, _, rest = key.partition(".mlp.")
            old = next((o for o in _SJ_MLP_RENAMES if rest.startswith(o)), None)
            if old is not None:
                new = f"{prefix}.mlp.{_SJ_MLP_RENAMES[old]}{rest[len(old) :]}"
        if value.dim() == 3 and (".mlp.fc" in new or new.endswith(".attention.proj.weight")):
            value = value[..., 0]  # a 1x1 Conv1d's weight [out, in, 1] -> [out, in]
        out[new] = value
        if new.endswith((".mlp.fc1.weight", ".mlp.fc2.weight")):
            out[new.removesuffix("weight") + "bias"] = value.new_zeros(value.shape[0])
    release()
    return out


def split_fused_qkv(key: str, module: str, value: Tensor) -> tuple[Tensor, ...]:
    """The fused ``Q, K, V`` tensor ``value`` of ``module`` in three (a 1x1 conv weight
    also as a linear one), or three references to a tensor of the one neuron
    ``qkv_lif`` or to a batch norm's step count (Spikformer's and QKFormer's
    converters)."""
    if module == "qkv_lif" or value.dim() == 0:
        return (value, value, value)
    if value.shape[0] % 3:
        raise ShapeError(
            f"{key}: a fused Q, K, V tensor needs a first dim that is a multiple of 3, got "
            f"shape {tuple(value.shape)}"
        )
    return tuple(p[..., 0] if p.dim() == 3 else p for p in value.chunk(3, dim=0))
