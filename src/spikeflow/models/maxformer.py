"""Max-Former ("Spiking Neural Networks Need High Frequency Information", arXiv
2505.18608, 2025): a hierarchical spiking transformer that keeps high frequencies with
extra max-pools in its patch embeddings and depth-wise convolutions in its early stages.

Three stages of ``D/4, D/2, D`` features; the residual stream holds real values (the
neurons sit at the start of each branch, the membrane-shortcut style):

* **Patch embedding.** ImageNet stem: ``BN(conv3x3/2 → D/8)``, ``LIF``, then
  ``BN(conv3x3(LIF(BN(conv3x3/2 → D/4))))`` plus the shortcut ``BN(conv1x1/2)`` from the
  first neuron's spikes (4x smaller). CIFAR stem (``cifar=True``, no downsampling):
  ``y = BN(conv3x3 → D/8)``, then ``BN(conv3x3(LIF(y))) + BN(conv1x1(LIF'(y)))`` (two
  neurons on the same ``y``). Stages 2 and 3 start with ``s = LIF(x)``, then
  ``BN(conv3x3(LIF(MaxPool(BN(conv3x3(s))))))`` plus the shortcut
  ``MaxPool(BN(conv1x1(s)))``: twice the features at half the size (the max-pools are
  3x3 of stride 2, padding 1).
* **Blocks.** The MLP ``y = BN(conv1x1(LIF(x)))`` (to ``r·D`` features), then
  ``BN(conv1x1(LIF(y))) + x`` (with ``r = 1`` also ``y + x`` in the middle). ImageNet:
  stage 1 ``x = x + BN(DWConv7x7(LIF(x)))`` then the MLP, stage 2 the same with a 5x5
  depth-wise convolution, stage 3 ``x = x + SSA(x)`` over the ``h·w`` positions as
  tokens (:class:`~spikeflow.layers.SpikingSelfAttention`, on the stream's real values)
  then the MLP. CIFAR: stage 1 the MLP alone, stage 2 a 3x3 depth-wise convolution,
  stage 3 the CIFAR attention: ``S = LIF(x)``, spike ``Q, K, V`` from ``S`` as in SSA,
  per head ``Q Kᵀ V · s``, ``LIF`` (threshold 0.5), then ``BN(FC(·))`` (with a bias, no
  neuron after it).
* **Head**: ``LIF`` of the mean over the last stage's positions, then ``FC(D → classes)``
  at every step: the output ``[T, B, classes]`` is logits per step (SpikingJelly's model
  returns their mean over time).

``maxformer_10_384`` is the paper's ImageNet Max-Former-10-384 (SpikingJelly 2.0's
``model.maxformer_10_384``): ``D = 384``, depths 1, 2, 7, ``D/64 = 6`` heads, MLP ratio 4;
``maxformer_cifar`` its CIFAR Max-Former-4-384 (SpikingJelly's ``model.maxformer_cifar``):
depths 1, 1, 2, 8 heads, 100 classes. Every size is an argument of both builders.

SpikingJelly 2.0's ``model.MaxFormer`` with the same sizes computes the same function:
the same layers in the same order, under its names but in stage 3's attention, whose
fused ``Q, K, V`` projection :func:`convert_spikingjelly_state_dict` splits. Deliberate
differences: the input is a sequence ``[T, B, C, H, W]`` (no ``T`` argument repeating a
static image), the output is per step, and the default neurons are LIF with τ = 2 and a
detached reset everywhere, where SpikingJelly's ImageNet model leaves every neuron but
its attention's with ``LIFNode``'s attached reset (pass ``detach_reset=True`` to its model
for this one's gradients; its CIFAR model detaches them all). Weights start as
PyTorch's; the CIFAR model's head as the authors' (truncated normal, std 0.02, zero
bias).
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
    SpikingQKV,
    SpikingSelfAttention,
    _check_sizes,
    check_tokens,
    merge_heads,
)
from spikeflow.models import qkformer
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    check_positive_int,
    per_stage,
)
from spikeflow.models.registry import register_model
from spikeflow.models.spikformer import check_sizes_without_zero_init, init_trunc_normal

__all__ = [
    "CifarAttention",
    "MaxFormer",
    "convert_spikingjelly_state_dict",
    "maxformer_10_384",
    "maxformer_cifar",
]

#: How many stages Max-Former has (depth-wise convolutions or MLPs, then attention).
STAGES = 3


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = True,
          groups: int = 1) -> layers.Conv2d:  # fmt: skip
    """A multi-step convolution, padded to keep the size (at stride 1)."""
    return layers.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=bias)


def _pool() -> nn.Module:
    return layers.MaxPool2d(3, 2, 1)


class _EmbedInit(nn.Module):
    """The ImageNet stem: ``in → D/8`` (stride 2), ``→ D/4`` (stride 2), plus the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, make_neuron: Any) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv1, self.bn1 = _conv(in_channels, hidden, 3, 2), layers.BatchNorm2d(hidden)
        self.lif1 = make_neuron()
        self.conv2 = _conv(hidden, out_channels, 3, 2)
        self.bn2, self.lif2 = layers.BatchNorm2d(out_channels), make_neuron()
        self.conv3, self.bn3 = _conv(out_channels, out_channels, 3), \
            layers.BatchNorm2d(out_channels)  # fmt: skip
        self.shortcut = nn.Sequential(_conv(hidden, out_channels, 1, 2),
                                      layers.BatchNorm2d(out_channels))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, D/4, ⌈H/4⌉, ⌈W/4⌉]`` (real values)."""
        first = self.lif1(self.bn1(self.conv1(x)))
        y = self.lif2(self.bn2(self.conv2(first)))
        return self.bn3(self.conv3(y)) + self.shortcut(first)


class _CifarEmbed(nn.Module):
    """The CIFAR stem: ``y = BN(conv3x3 → D/8)``, two branches of their own neuron."""

    def __init__(self, in_channels: int, out_channels: int, make_neuron: Any) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv = _conv(in_channels, hidden, 3, bias=False)
        self.bn = layers.BatchNorm2d(hidden)
        self.branch = nn.Sequential(make_neuron(), _conv(hidden, out_channels, 3, bias=False),
                                    layers.BatchNorm2d(out_channels))  # fmt: skip
        self.shortcut = nn.Sequential(make_neuron(), _conv(hidden, out_channels, 1, bias=False),
                                      layers.BatchNorm2d(out_channels))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, D/4, H, W]`` (real values)."""
        y = self.bn(self.conv(x))
        return self.branch(y) + self.shortcut(y)


class _EmbedStage(nn.Module):
    """Stages 2 and 3: ``s = LIF(x)`` to a pooled branch and a pooled 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, make_neuron: Any,
                 bias: bool) -> None:  # fmt: skip
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3, bias=bias)
        self.bn1, self.lif1 = layers.BatchNorm2d(out_channels), make_neuron()
        self.pool = _pool()
        self.conv2 = _conv(out_channels, out_channels, 3, bias=bias)
        self.bn2, self.lif2 = layers.BatchNorm2d(out_channels), make_neuron()
        self.shortcut = nn.Sequential(_conv(in_channels, out_channels, 1, bias=bias),
                                      layers.BatchNorm2d(out_channels), _pool())  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, C', ⌈H/2⌉, ⌈W/2⌉]`` (real values)."""
        s = self.lif1(x)
        y = self.lif2(self.pool(self.bn1(self.conv1(s))))
        return self.bn2(self.conv2(y)) + self.shortcut(s)


class _MLP(nn.Module):
    """``y = BN(conv1x1(LIF(x)))``, then ``BN(conv1x1(LIF(y))) + x`` (with ``y + x`` in the
    middle when the hidden width is the input's)."""

    def __init__(self, dim: int, hidden: int, make_neuron: Any) -> None:
        super().__init__()
        self.residual = dim == hidden
        self.fc1, self.bn1 = _conv(dim, hidden, 1), layers.BatchNorm2d(hidden)
        self.lif1 = make_neuron()
        self.fc2, self.bn2 = _conv(hidden, dim, 1), layers.BatchNorm2d(dim)
        self.lif2 = make_neuron()

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, D, h, w]`` -> ``[T, B, D, h, w]``."""
        y = self.bn1(self.fc1(self.lif1(x)))
        if self.residual:
            y = x = y + x
        return self.bn2(self.fc2(self.lif2(y))) + x


class _DWCBlock(nn.Module):
    """``x + BN(DWConv(LIF(x)))``, then the MLP."""

    def __init__(self, dim: int, kernel: int, hidden: int, make_neuron: Any) -> None:
        super().__init__()
        self.lif = make_neuron()
        self.dwconv = _conv(dim, dim, kernel, groups=dim)
        self.bn = layers.BatchNorm2d(dim)
        self.mlp = _MLP(dim, hidden, make_neuron)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, D, h, w]`` -> ``[T, B, D, h, w]``."""
        return self.mlp(x + self.bn(self.dwconv(self.lif(x))))


class CifarAttention(nn.Module):
    """The CIFAR Max-Former's attention on tokens ``[T, B, N, D]`` (real values):
    ``S = SN_in(X)``, spike ``Q, K, V`` from ``S`` (linear, batch norm, neuron each),
    per head ``Q Kᵀ V · scale``, ``SN_attn`` (threshold ``attention_threshold``), then
    ``BN(FC(·))`` with a bias: real values, no neuron after the projection.

    Args:
        dim, num_heads, scale, attention_threshold, neuron, neuron_kwargs: as
            :class:`~spikeflow.layers.SpikingSelfAttention`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        scale: float = 0.125,
        attention_threshold: float = 0.5,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_sizes("CifarAttention", dim, num_heads)
        make = NeuronFactory(neuron, neuron_kwargs, defaults=ATTENTION_NEURON_DEFAULTS)
        self.dim, self.num_heads, self.scale = dim, num_heads, float(scale)
        self.input_neuron = make()
        self.qkv = SpikingQKV(dim, num_heads, make)
        self.attention_neuron = NeuronFactory(
            neuron, {**(neuron_kwargs or {}), "v_threshold": attention_threshold},
            defaults=ATTENTION_NEURON_DEFAULTS,
        )()  # fmt: skip
        self.proj = nn.Linear(dim, dim)
        self.proj_norm = FeatureBatchNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, N, D]`` -> ``[T, B, N, D]`` (real values)."""
        check_tokens("CifarAttention", x, self.dim)
        q, k, v = self.qkv(self.input_neuron(x))
        spikes = self.attention_neuron(merge_heads(q @ (k.transpose(-2, -1) @ v) * self.scale))
        return self.proj_norm(self.proj(spikes))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, scale={self.scale:g}"


class _SSABlock(nn.Module):
    """``x + Attn(x)`` over the positions as tokens, then the MLP."""

    def __init__(self, attn: nn.Module, mlp: _MLP) -> None:
        super().__init__()
        self.attn, self.mlp = attn, mlp

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, D, h, w]`` -> ``[T, B, D, h, w]``."""
        tokens = x.flatten(3).transpose(2, 3)  # [T, B, h·w, D]
        tokens = tokens + self.attn(tokens)
        return self.mlp(tokens.transpose(2, 3).reshape(x.shape))


class MaxFormer(nn.Module):
    """Max-Former: max-pooling patch embeddings, depth-wise convolution blocks (the
    CIFAR model: an MLP-only stage 1), spiking self-attention blocks in stage 3 and a
    spiking head.

    Args:
        num_classes: output classes.
        in_channels: input channels (3 for images, 2 for DVS polarities).
        embed_dim: the last stage's features ``D`` (a multiple of 4, at least 8; the
            stages have ``D/4, D/2, D``, the stem's first convolution ``D/8``).
        depths: blocks per stage (three values, or one for all).
        num_heads: stage 3's attention heads (``D`` a multiple of it); ``None``:
            ``max(1, D // 64)`` (ImageNet), 8 (CIFAR), as the authors'.
        mlp_ratio: the MLPs' hidden width over their input width (``int(width · r)``).
        cifar: the CIFAR model (a stem without downsampling, MLP / 3x3 depth-wise /
            CIFAR-attention stages, no biases in the patch embeddings' convolutions);
            ``False``: the ImageNet model (7x7 and 5x5 depth-wise stages, SSA).
        attention_scale: the attention's scale ``s`` (0.125).
        neuron, neuron_kwargs: the spiking neurons, over the defaults ``tau=2``,
            ``detach_reset=True``; the attention neurons' threshold is 0.5 unless
            ``neuron_kwargs`` set ``v_threshold``, which sets every neuron's (as
            SpikingJelly's keyword does: :func:`~spikeflow.models.qkformer.attention_threshold`).
        zero_init_residual: refused (the blocks have no last batch norm to zero).

    Input ``[T, B, in_channels, H, W]`` (any ``H, W`` ≥ 1; stage 3 sees ``⌈H/16⌉`` by
    ``⌈W/16⌉`` tokens, CIFAR ``⌈H/4⌉`` by ``⌈W/4⌉``), output ``[T, B, num_classes]`` logits.

    Raises:
        ConfigurationError: a size that is not a positive integer, an ``embed_dim`` not a
            multiple of 4 or below 8, ``D`` not a multiple of the heads, a bad
            ``mlp_ratio`` or ``attention_scale``, or ``zero_init_residual=True``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        embed_dim: int = 384,
        depths: int | Sequence[int] = (1, 2, 7),
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        cifar: bool = False,
        attention_scale: float = 0.125,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_sizes_without_zero_init(
            "MaxFormer", zero_init_residual, num_classes=num_classes, in_channels=in_channels,
            embed_dim=embed_dim,
        )  # fmt: skip
        if not isinstance(cifar, bool):
            raise ConfigurationError(f"MaxFormer: cifar must be True or False, got {cifar!r}")
        depths = per_stage("MaxFormer", "depths", depths, STAGES)
        widths = qkformer.stage_widths("MaxFormer", embed_dim)
        if num_heads is None:
            num_heads = 8 if cifar else max(1, embed_dim // 64)
        check_positive_int("MaxFormer: num_heads", num_heads)
        if embed_dim % num_heads:
            raise ConfigurationError(
                f"MaxFormer: embed_dim ({embed_dim}) must be a multiple of num_heads ({num_heads})"
            )
        ratio = check_real("MaxFormer: mlp_ratio", mlp_ratio, 0.0, low_open=True)
        scale = check_real("MaxFormer: attention_scale", attention_scale, 0.0, low_open=True)
        if int(widths[0] * ratio) < 1:
            raise ConfigurationError(
                f"MaxFormer: mlp_ratio {mlp_ratio} leaves stage 1's MLP ({widths[0]} "
                "features) no hidden feature"
            )
        make = NeuronFactory(neuron, neuron_kwargs, defaults=ATTENTION_NEURON_DEFAULTS)
        self.in_channels, self.num_classes, self.cifar = in_channels, num_classes, cifar
        stem = _CifarEmbed if cifar else _EmbedInit
        self.patch_embed1 = stem(in_channels, widths[0], make)
        self.patch_embed2 = _EmbedStage(widths[0], widths[1], make, bias=not cifar)
        self.patch_embed3 = _EmbedStage(widths[1], widths[2], make, bias=not cifar)

        def mlp(stage: int) -> _MLP:
            return _MLP(widths[stage], int(widths[stage] * ratio), make)

        def dwc(stage: int, kernel: int) -> _DWCBlock:
            return _DWCBlock(widths[stage], kernel, int(widths[stage] * ratio), make)

        def ssa() -> _SSABlock:
            kind = CifarAttention if cifar else SpikingSelfAttention
            attn = kind(embed_dim, num_heads, scale=scale, neuron=neuron,
                        attention_threshold=qkformer.attention_threshold(neuron_kwargs),
                        neuron_kwargs=neuron_kwargs)  # fmt: skip
            return _SSABlock(attn, mlp(2))

        first: list[nn.Module] = [mlp(0) if cifar else dwc(0, 7) for _ in range(depths[0])]
        self.stage1 = nn.ModuleList(first)
        self.stage2 = nn.ModuleList(dwc(1, 3 if cifar else 5) for _ in range(depths[1]))
        self.stage3 = nn.ModuleList(ssa() for _ in range(depths[2]))
        self.head_lif = make()
        self.head = nn.Linear(embed_dim, num_classes)
        if cifar:
            init_trunc_normal([self.head], (nn.Linear,))  # the authors' CIFAR head

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> the last stage's maps ``[T, B, D, h, w]`` (real values)."""
        check_input(x, "MaxFormer", "[T, B, C, H, W]", 5, self.in_channels)
        if 0 in x.shape[-2:]:
            raise ShapeError(f"MaxFormer expects H, W >= 1, got shape {tuple(x.shape)}")
        stages = ((self.patch_embed1, self.stage1), (self.patch_embed2, self.stage2),
                  (self.patch_embed3, self.stage3))  # fmt: skip
        for embed, blocks in stages:
            x = embed(x)
            for block in blocks:
                x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, num_classes]``."""
        return self.head(self.head_lif(self.forward_features(x).flatten(3).mean(-1)))


# SpikingJelly's CIFAR attention under the names of its ImageNet one (``layer.
# SpikingSelfAttention``), which the QKFormer converter splits and renames.
_CIFAR_NAMES = {"qkv.0.": "qkv_conv_bn.0.", "qkv.1.": "qkv_conv_bn.1.",
                "proj.0.": "proj_conv_bn.0.", "proj.1.": "proj_conv_bn.1."}  # fmt: skip


def convert_spikingjelly_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """SpikingJelly 2.0's ``model.MaxFormer`` state dict (ImageNet or CIFAR; or any mapping
    of its names to tensors, such as its parameters' gradients) under :class:`MaxFormer`'s
    names and shapes.

    Only stage 3's attention changes: the fused ``Q, K, V`` projection (``qkv_conv_bn``,
    CIFAR ``qkv``: a ``[3D, D, 1]`` convolution and a batch norm of ``3D`` features) becomes
    the three ``qkv.linear.i`` / ``qkv.norm.i`` (``Q``, ``K``, ``V``), a tensor of its one
    neuron ``qkv_lif`` goes to each ``qkv.neuron.i``, ``attn_lif`` becomes
    ``attention_neuron``, ``input_lif`` ``input_neuron`` and the projection
    (``proj_conv_bn`` / ``proj``) ``proj`` (a linear weight ``[D, D]``) and ``proj_norm``.

    Raises:
        ShapeError: a fused ``Q, K, V`` tensor whose first dim is not a multiple of 3.
    """
    renamed: dict[str, Tensor] = {}
    for key, value in state.items():
        prefix, sep, rest = key.partition(".attn.")
        if sep and prefix.startswith("stage3."):
            old = next((o for o in _CIFAR_NAMES if rest.startswith(o)), None)
            if old is not None:
                if old == "qkv.0." and value.dim() > 0 and value.shape[0] % 3:
                    raise ShapeError(
                        f"{key}: a fused Q, K, V tensor needs a first dim that is a multiple "
                        f"of 3, got shape {tuple(value.shape)}"
                    )
                rest = _CIFAR_NAMES[old] + rest.removeprefix(old)
            elif rest.startswith("input_lif."):
                rest = "input_neuron." + rest.removeprefix("input_lif.")
            key = f"{prefix}.attn.{rest}"
        renamed[key] = value
    return qkformer.convert_spikingjelly_state_dict(renamed)


_COMMON = """``kwargs`` are :class:`MaxFormer`'s other arguments (``embed_dim``, ``depths``,
``num_heads``, ``mlp_ratio``, ``attention_scale``; any size may be changed, e.g. for
small inputs)."""


@register_model("maxformer_10_384")
def maxformer_10_384(
    num_classes: int = 1000,
    in_channels: int = 3,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> MaxFormer:
    settings = {"embed_dim": 384, "depths": (1, 2, 7), **kwargs}
    return MaxFormer(num_classes=num_classes, in_channels=in_channels, neuron=neuron,
                     neuron_kwargs=neuron_kwargs, **settings)  # fmt: skip


@register_model("maxformer_cifar")
def maxformer_cifar(
    num_classes: int = 100,
    in_channels: int = 3,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> MaxFormer:
    if kwargs.pop("cifar", True) is not True:
        raise ConfigurationError("maxformer_cifar: cifar is fixed to True (use maxformer_10_384)")
    settings = {"embed_dim": 384, "depths": (1, 1, 2), **kwargs, "cifar": True}
    return MaxFormer(num_classes=num_classes, in_channels=in_channels, neuron=neuron,
                     neuron_kwargs=neuron_kwargs, **settings)  # fmt: skip


maxformer_10_384.__doc__ = f"""Max-Former-10-384, the paper's ImageNet model (SpikingJelly
2.0's ``model.maxformer_10_384``): ``embed_dim=384``, depths 1, 2, 7, 6 heads, MLP ratio 4,
7x7 and 5x5 depth-wise stages; {_COMMON}"""
maxformer_cifar.__doc__ = f"""Max-Former-4-384, the authors' CIFAR model (SpikingJelly 2.0's
``model.maxformer_cifar``; CIFAR-100 by default): ``embed_dim=384``, depths 1, 1, 2, 8
heads, a stem without downsampling; {_COMMON} (``cifar`` is fixed)"""
