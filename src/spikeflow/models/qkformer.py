"""QKFormer (Zhou et al., NeurIPS 2024): a hierarchical spiking transformer with Q-K attention.

Three stages of falling resolution and growing width ``D/4, D/2, D``:

* **Patch embedding.** Stage 1's stem: ``LIF(MaxPool(BN(conv3x3 → D/8)))``, then
  ``LIF(MaxPool(BN(conv3x3 → D/4)))`` and ``LIF(BN(conv3x3))``, plus a shortcut
  ``LIF(BN(conv1x1, stride 2))`` from the first neuron's spikes (4x smaller). Stages 2
  and 3 start with ``LIF(BN(conv3x3(LIF(MaxPool(BN(conv3x3(x)))))))`` plus a shortcut
  ``LIF(BN(conv1x1, stride 2))`` from ``x`` (2x smaller, twice the channels). The
  max-pools are 3x3 of stride 2 (padding 1), so the features are ``ceil(H/16)`` by
  ``ceil(W/16)`` in stage 3, from any input size.
* **Blocks** ``x = x + Attn(x)``, ``x = x + MLP(x)`` over the ``h·w`` positions as tokens,
  with ``MLP = LIF(BN(FC(D → r·D))) → LIF(BN(FC(r·D → D)))``: Q-K attention
  (:class:`~spikeflow.layers.QKAttention`, token-wise by default) in stages 1 and 2,
  spiking self-attention (:class:`~spikeflow.layers.SpikingSelfAttention`) in stage 3.
* **Head**: the mean over the last stage's tokens, then ``FC(D → classes)`` at every
  step: the output ``[T, B, classes]`` is logits per step (SpikingJelly's and the
  authors' model return their mean over time; train with ``ce``, or ``tet``).

``qkformer_10_384`` is the paper's ImageNet model QKFormer-10-384 (SpikingJelly 2.0's
``model.qkformer_10_384``): ``D = 384``, 6 heads in every stage, 1 + 2 + 7 blocks, MLP
ratio 4; ``qkformer_10_512`` and ``qkformer_10_768`` the authors' larger ones (8 and 12
heads; not in SpikingJelly). Their 16.47M, 29.08M and 64.96M parameters are the counts
of the authors' table. Every size is an argument of every builder.

SpikingJelly 2.0's ``model.QKFormer`` with the same sizes computes the same function:
the same layers in the same order, under its names (a SpikingJelly state dict loads
through :func:`convert_spikingjelly_state_dict`, which regroups its stage-3 attention's
fused ``Q, K, V`` projection into the three of spikeflow's layer). Three deliberate
differences: the input is a sequence ``[T, B, C, H, W]`` (no ``T`` argument repeating
a static image), the output is per step, and the default neurons are the authors' LIF
(τ = 2, reset detached) everywhere, where SpikingJelly's patch embeddings and MLPs keep
``LIFNode``'s attached reset (pass ``detach_reset=True`` to its model for this one's
gradients). The convolutions of the patch embeddings and the MLPs' linear layers have
biases, as SpikingJelly's (a batch norm follows each, so they change nothing in
training); the attention projections have none. Weights start as PyTorch's, but the
head's: truncated normal (std 0.02), zero bias, as the authors'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from spikeflow.layers.attention_qk import QKAttention
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    per_stage,
)
from spikeflow.models.registry import register_builder
from spikeflow.models.spikformer import (
    SJ_SSA_RENAMES,
    check_sizes_without_zero_init,
    init_trunc_normal,
    split_fused_qkv,
)

__all__ = [
    "ATTENTION_THRESHOLD",
    "QKFormer",
    "attention_threshold",
    "convert_spikingjelly_state_dict",
    "qkformer_10_384",
    "qkformer_10_512",
    "qkformer_10_768",
]

#: How many stages QKFormer has (the first two with Q-K attention, the last with SSA).
STAGES = 3


#: The threshold of the attention neurons (after ``Q Kᵀ V``, or on Q-K attention's summed
#: ``Q``) unless ``neuron_kwargs`` set one.
ATTENTION_THRESHOLD = 0.5


def attention_threshold(neuron_kwargs: Mapping[str, Any] | None) -> Any:
    """The threshold of a transformer's attention neurons: ``neuron_kwargs["v_threshold"]``
    where given, else :data:`ATTENTION_THRESHOLD` (0.5).

    SpikingJelly 2.0's QKFormer and Max-Former pass their ``**kwargs`` to every neuron, the
    attention's included (its 0.5 is a default they override), so ``v_threshold=0.75``
    sets every threshold to 0.75; spikeflow's ``neuron_kwargs`` do the same.
    """
    return (neuron_kwargs or {}).get("v_threshold", ATTENTION_THRESHOLD)


def stage_widths(owner: str, embed_dim: int) -> tuple[int, int, int]:
    """The three stages' features ``D/4, D/2, D`` (QKFormer's and Max-Former's), or a
    ConfigurationError naming ``owner`` unless ``D`` is a multiple of 4 and at least 8
    (the stem's first convolution has ``D/8``)."""
    if embed_dim % 4 or embed_dim < 8:
        raise ConfigurationError(
            f"{owner}: embed_dim ({embed_dim}) must be a multiple of 4 and at least 8 (the "
            "stages have D/4, D/2 and D features, the stem's first convolution D/8)"
        )
    return embed_dim // 4, embed_dim // 2, embed_dim


def _conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
) -> tuple[layers.Conv2d, layers.BatchNorm2d]:
    """A multi-step convolution (with bias, as SpikingJelly's) and its batch norm."""
    conv = layers.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2)
    return conv, layers.BatchNorm2d(out_channels)


def _pool() -> nn.Module:
    return layers.MaxPool2d(3, 2, 1)


class _PatchEmbedInit(nn.Module):
    """Stage 1's stem: ``in → D/8`` (pooled), ``→ D/4`` (pooled), ``→ D/4``, plus the
    shortcut from the first neuron's spikes."""

    def __init__(self, in_channels: int, out_channels: int, make_neuron: Any) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv1, self.bn1 = _conv_bn(in_channels, hidden, 3)
        self.pool1, self.lif1 = _pool(), make_neuron()
        self.conv2, self.bn2 = _conv_bn(hidden, out_channels, 3)
        self.pool2, self.lif2 = _pool(), make_neuron()
        self.conv3, self.bn3 = _conv_bn(out_channels, out_channels, 3)
        self.lif3 = make_neuron()
        self.shortcut = nn.Sequential(*_conv_bn(hidden, out_channels, 1, 2), make_neuron())

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> spikes ``[T, B, D/4, ⌈H/4⌉, ⌈W/4⌉]`` (sums of two)."""
        first = self.lif1(self.pool1(self.bn1(self.conv1(x))))
        x = self.lif2(self.pool2(self.bn2(self.conv2(first))))
        return self.lif3(self.bn3(self.conv3(x))) + self.shortcut(first)


class _PatchEmbedStage(nn.Module):
    """Stages 2 and 3: twice the channels at half the resolution, plus the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, make_neuron: Any) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(in_channels, out_channels, 3)
        self.pool, self.lif1 = _pool(), make_neuron()
        self.conv2, self.bn2 = _conv_bn(out_channels, out_channels, 3)
        self.lif2 = make_neuron()
        self.shortcut = nn.Sequential(*_conv_bn(in_channels, out_channels, 1, 2), make_neuron())

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, 2C, ⌈H/2⌉, ⌈W/2⌉]``."""
        y = self.lif1(self.pool(self.bn1(self.conv1(x))))
        return self.lif2(self.bn2(self.conv2(y))) + self.shortcut(x)


class _MLP(nn.Module):
    """``LIF(BN(FC(D → hidden))) → LIF(BN(FC(hidden → D)))`` on tokens ``[..., D]``."""

    def __init__(self, dim: int, hidden: int, make_neuron: Any) -> None:
        super().__init__()
        self.fc1, self.bn1, self.lif1 = nn.Linear(dim, hidden), FeatureBatchNorm(hidden), \
            make_neuron()  # fmt: skip
        self.fc2, self.bn2, self.lif2 = nn.Linear(hidden, dim), FeatureBatchNorm(dim), \
            make_neuron()  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, N, D]`` -> spikes ``[T, B, N, D]``."""
        return self.lif2(self.bn2(self.fc2(self.lif1(self.bn1(self.fc1(x))))))


class _Block(nn.Module):
    """``x + Attn(x)``, then ``+ MLP``, on tokens ``[T, B, N, D]``."""

    def __init__(self, attn: nn.Module, mlp: _MLP) -> None:
        super().__init__()
        self.attn, self.mlp = attn, mlp

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, N, D]`` -> ``[T, B, N, D]``."""
        x = x + self.attn(x)
        return x + self.mlp(x)


class QKFormer(nn.Module):
    """QKFormer: a hierarchical patch embedding, Q-K attention blocks in stages 1 and 2,
    spiking self-attention blocks in stage 3 and a linear head.

    Args:
        num_classes: output classes.
        in_channels: input channels (3 for images, 2 for DVS polarities).
        embed_dim: the last stage's features ``D`` (a multiple of 4; the stages have
            ``D/4, D/2, D``, the stem's first convolution ``⌊D/8⌋``).
        num_heads: attention heads per stage (three values, or one for all); each
            stage's width a multiple of its heads.
        depths: blocks per stage (three values, or one for all).
        mlp_ratio: the MLP's hidden width over its input width (the hidden width is
            ``int(width · mlp_ratio)``).
        qka_type: the Q-K attention of stages 1 and 2, ``"token"`` (QKTA, the paper's) or
            ``"channel"`` (QKCA).
        attention_scale: the stage-3 SSA's scale ``s`` (0.125).
        neuron, neuron_kwargs: the spiking neurons, over the defaults ``tau=2``,
            ``detach_reset=True``; the attention neurons' threshold is 0.5 unless
            ``neuron_kwargs`` set ``v_threshold``, which sets every neuron's (as
            SpikingJelly's keyword does: :func:`attention_threshold`).
        zero_init_residual: refused (the blocks have no last batch norm to zero).

    Input ``[T, B, in_channels, H, W]`` (any ``H, W`` ≥ 1; stage 3 sees ``⌈H/16⌉`` by
    ``⌈W/16⌉`` tokens), output ``[T, B, num_classes]`` logits.

    Raises:
        ConfigurationError: a size that is not a positive integer, an ``embed_dim`` not a
            multiple of 4, a stage width not a multiple of its heads, a bad ``qka_type``,
            ``mlp_ratio`` or ``attention_scale``, or ``zero_init_residual=True``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        embed_dim: int = 384,
        num_heads: int | Sequence[int] = (6, 6, 6),
        depths: int | Sequence[int] = (1, 2, 7),
        mlp_ratio: float = 4.0,
        qka_type: str = "token",
        attention_scale: float = 0.125,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_sizes_without_zero_init(
            "QKFormer", zero_init_residual, num_classes=num_classes, in_channels=in_channels,
            embed_dim=embed_dim,
        )  # fmt: skip
        heads = per_stage("QKFormer", "num_heads", num_heads, STAGES)
        depths = per_stage("QKFormer", "depths", depths, STAGES)
        widths = stage_widths("QKFormer", embed_dim)
        for stage, (width, head) in enumerate(zip(widths, heads, strict=True), start=1):
            if width % head:
                raise ConfigurationError(
                    f"QKFormer: stage {stage} has {width} features, not a multiple of its "
                    f"num_heads ({head})"
                )
        if qka_type not in ("token", "channel"):
            raise ConfigurationError(
                f"QKFormer: qka_type must be 'token' or 'channel', got {qka_type!r}"
            )
        ratio = check_real("QKFormer: mlp_ratio", mlp_ratio, 0.0, low_open=True)
        scale = check_real("QKFormer: attention_scale", attention_scale, 0.0, low_open=True)
        if min(int(width * ratio) for width in widths) < 1:
            raise ConfigurationError(
                f"QKFormer: mlp_ratio {mlp_ratio} leaves stage 1's MLP ({widths[0]} features) "
                "no hidden feature"
            )
        make = NeuronFactory(neuron, neuron_kwargs, defaults=ATTENTION_NEURON_DEFAULTS)
        threshold = attention_threshold(neuron_kwargs)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.patch_embed1 = _PatchEmbedInit(in_channels, widths[0], make)
        self.patch_embed2 = _PatchEmbedStage(widths[0], widths[1], make)
        self.patch_embed3 = _PatchEmbedStage(widths[1], widths[2], make)

        def block(stage: int) -> _Block:
            width, head = widths[stage], heads[stage]
            attn: nn.Module
            if stage < STAGES - 1:
                attn = QKAttention(width, head, qka_type, attention_threshold=threshold,
                                   neuron=neuron, neuron_kwargs=neuron_kwargs)  # fmt: skip
            else:
                attn = SpikingSelfAttention(width, head, scale=scale, neuron=neuron,
                                            attention_threshold=threshold,
                                            neuron_kwargs=neuron_kwargs)  # fmt: skip
            return _Block(attn, _MLP(width, int(width * ratio), make))

        self.stage1 = nn.ModuleList(block(0) for _ in range(depths[0]))
        self.stage2 = nn.ModuleList(block(1) for _ in range(depths[1]))
        self.stage3 = nn.ModuleList(block(2) for _ in range(depths[2]))
        self.head = nn.Linear(embed_dim, num_classes)
        init_trunc_normal([self.head], (nn.Linear,))  # the authors' head

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> the last stage's tokens ``[T, B, N, D]``."""
        check_input(x, "QKFormer", "[T, B, C, H, W]", 5, self.in_channels)
        if 0 in x.shape[-2:]:
            raise ShapeError(f"QKFormer expects H, W >= 1, got shape {tuple(x.shape)}")
        stages = ((self.patch_embed1, self.stage1), (self.patch_embed2, self.stage2),
                  (self.patch_embed3, self.stage3))  # fmt: skip
        for embed, blocks in stages:
            x = embed(x)
            tokens = x.flatten(3).transpose(2, 3)  # [T, B, h·w, C]
            for layer in blocks:
                tokens = layer(tokens)
            x = tokens.transpose(2, 3).reshape(x.shape)  # back to [T, B, C, h, w]
        return tokens

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, num_classes]``."""
        return self.head(self.forward_features(x).mean(dim=2))


_SSA_QKV = {"qkv_conv_bn.0": "qkv.linear.{}", "qkv_conv_bn.1": "qkv.norm.{}",
            "qkv_lif": "qkv.neuron.{}"}  # fmt: skip


def convert_spikingjelly_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """SpikingJelly 2.0's ``model.QKFormer`` state dict (or any mapping of its names to
    tensors, such as its parameters' gradients) under :class:`QKFormer`'s names and shapes.

    Stage 3's attention: SpikingJelly's fused projection ``qkv_conv_bn`` (a ``[3D, D, 1]``
    convolution and a batch norm of ``3D`` features) becomes the three ``qkv.linear.i`` /
    ``qkv.norm.i`` of :class:`~spikeflow.layers.SpikingSelfAttention` (``Q``, ``K``, ``V``
    in that order); a tensor of its one neuron ``qkv_lif`` (a learnable neuron's) goes to
    each of the three ``qkv.neuron.i``; ``attn_lif``, ``proj_conv_bn`` and ``proj_lif`` are
    renamed. The 1x1 convolutions' weights ``[out, in, 1]`` of the MLPs and of that
    projection become linear weights ``[out, in]``. Everything else keeps its name.

    ``model.load_state_dict(convert_spikingjelly_state_dict(theirs.state_dict()))`` then
    gives SpikingJelly's outputs (per step) for a model built with the same sizes.

    Raises:
        ShapeError: a fused ``qkv_conv_bn`` tensor whose first dim is not a multiple of 3.
    """
    out: dict[str, Tensor] = {}
    # The parts of one fused module, held until its last tensor so that they come out in
    # spikeflow's order (``norm.0.*``, then ``norm.1.*``, ...): a module's parameters and
    # buffers, not the three modules' weights, then their biases, ...
    held: tuple[str, list[dict[str, Tensor]]] = ("", [{}, {}, {}])
    for key, value in state.items():
        prefix, sep, rest = key.partition(".attn.")
        fused = None
        if sep and prefix.startswith("stage3."):  # spiking self-attention
            fused = next((m for m in _SSA_QKV if rest.startswith(f"{m}.")), None)
        if held[0] and held[0] != f"{prefix}.{fused}":
            for parts in held[1]:
                out.update(parts)
            held = ("", [{}, {}, {}])
        if fused is not None:
            held = (f"{prefix}.{fused}", held[1])
            tail = rest.removeprefix(f"{fused}.")
            for i, part in enumerate(split_fused_qkv(key, fused, value)):
                held[1][i][f"{prefix}.attn.{_SSA_QKV[fused].format(i)}.{tail}"] = part
            continue
        if sep and prefix.startswith("stage3."):
            old = next((o for o in SJ_SSA_RENAMES if rest.startswith(o)), None)
            if old is not None:
                key = f"{prefix}.attn.{SJ_SSA_RENAMES[old]}{rest.removeprefix(old)}"
        if value.dim() == 3 and (".mlp.fc" in key or key.endswith(".attn.proj.weight")):
            value = value[..., 0]  # a 1x1 Conv1d's weight [out, in, 1] -> [out, in]
        out[key] = value
    for parts in held[1]:
        out.update(parts)
    return out


_DOC = """QKFormer-10-{dim}, the paper's ImageNet model of {params} parameters (the
authors' ``QKFormer_10_{dim}``{sj}): ``embed_dim={dim}``, {heads} heads per stage, depths 1,
2, 7, MLP ratio 4; ``kwargs`` are :class:`QKFormer`'s other arguments (any size may be
changed, e.g. for small inputs)."""


def _register(embed_dim: int, heads: int, params: str, sj: str = "") -> Any:
    """Register the builder ``qkformer_10_{embed_dim}``."""

    def build(
        num_classes: int = 1000,
        in_channels: int = 3,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> QKFormer:
        settings = {"embed_dim": embed_dim, "num_heads": heads, "depths": (1, 2, 7), **kwargs}
        return QKFormer(num_classes=num_classes, in_channels=in_channels, neuron=neuron,
                        neuron_kwargs=neuron_kwargs, **settings)  # fmt: skip

    doc = _DOC.format(dim=embed_dim, heads=heads, params=params, sj=sj)
    return register_builder(f"qkformer_10_{embed_dim}", build, doc)


qkformer_10_384 = _register(384, 6, "16.47M", sj=", SpikingJelly 2.0's ``model.qkformer_10_384``")
qkformer_10_512 = _register(512, 8, "29.08M")
qkformer_10_768 = _register(768, 12, "64.96M")
