"""The Spike-driven Transformer (Yao et al., NeurIPS 2023), V1.

Membrane-shortcut residuals: the stream between blocks carries real values (membrane
inputs), and each branch starts with a spiking neuron, so every linear layer and the
attention see spikes only.

* **Patch splitting**: conv3x3-BN-SN at ``D/8, D/4, D/2`` channels, then conv3x3-BN to
  ``D`` (no neuron), the last ``pools`` of the four stages followed by a 3x3 max-pool of
  stride 2 (after the neuron; after the BN in the fourth); a relative position
  embedding ``BN(conv3x3(SN(x)))`` is added to those values.
* ``depth`` blocks ``x = x + SDSA(x)`` (:class:`~spikeflow.layers.SpikeDrivenSelfAttention`)
  and ``x = x + BN(FC(SN(BN(FC(SN(x))))))`` (the MLP, hidden width ``mlp_ratio·D``; with
  ``mlp_ratio=1`` the authors also add ``x`` to the hidden values).
* Head: the mean over tokens, a spiking neuron, ``FC(D → classes)`` at every step.

``spike_driven_transformer`` is the authors' CIFAR-10 model 2-512 (8 heads, MLP ratio
4, the last two stages pooled: 64 tokens; T = 4). ``erode=True`` is the authors' DVS
variant, which also max-pools keys, values and the attention ("Erode",
:class:`~spikeflow.layers.SpikeDrivenSelfAttention`); ``sdt_cifar10dvs`` is their
CIFAR10-DVS model with it, ``sdt_dvsgesture`` their DVS128 Gesture model (whose runs
their code builds without it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.layers.attention import (
    ATTENTION_NEURON_DEFAULTS,
    FeatureBatchNorm,
    SpikeDrivenSelfAttention,
)
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    check_input,
    conv_bn,
)
from spikeflow.models.registry import register_model
from spikeflow.models.spikformer import (
    PatchTokenTransformer,
    attention_threshold,
    check_transformer_arguments,
    init_trunc_normal,
    patch_splitting,
    sps_indices,
)

__all__ = [
    "SpikeDrivenTransformer",
    "convert_spikingjelly_state_dict",
    "sdt_8_384",
    "sdt_cifar10dvs",
    "sdt_dvsgesture",
    "spike_driven_transformer",
]


class _MembraneMLP(nn.Module):
    """``x + BN(FC(SN(h)))`` with ``h = BN(FC(SN(x)))``, plus ``x`` inside (``h + x``)
    when the hidden width equals ``D`` (``mlp_ratio=1``), as the authors' code."""

    def __init__(self, dim: int, hidden: int, make_neuron: Any) -> None:
        super().__init__()
        self.neuron1, self.fc1, self.norm1 = make_neuron(), nn.Linear(dim, hidden), \
            FeatureBatchNorm(hidden)  # fmt: skip
        self.neuron2, self.fc2, self.norm2 = make_neuron(), nn.Linear(hidden, dim), \
            FeatureBatchNorm(dim)  # fmt: skip
        self.inner_residual = hidden == dim  # the authors add one when the widths agree

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.norm1(self.fc1(self.neuron1(x)))
        if self.inner_residual:
            hidden = hidden + x
        residual = hidden if self.inner_residual else x
        return self.norm2(self.fc2(self.neuron2(hidden))) + residual


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, neuron: Any,
                 neuron_kwargs: Mapping[str, Any] | None, make_neuron: Any,
                 erode: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.attention = SpikeDrivenSelfAttention(
            dim, heads, kv_threshold=attention_threshold(neuron_kwargs), neuron=neuron,
            neuron_kwargs=neuron_kwargs, erode=erode,
        )  # fmt: skip
        self.mlp = _MembraneMLP(dim, hidden, make_neuron)

    def forward(self, x: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        return self.mlp(x + self.attention(x, grid))  # the MLP adds its own residual


class SpikeDrivenTransformer(PatchTokenTransformer):
    """The Spike-driven Transformer (V1): membrane-shortcut blocks with SDSA.

    Args:
        num_classes, in_channels, input_size, embed_dim, depth, num_heads, mlp_ratio,
            pools, neuron, neuron_kwargs: as :class:`~spikeflow.models.spikformer.Spikformer`
            (a ``v_threshold`` in ``neuron_kwargs`` sets the ``K ⊙ V`` neuron's too).
        erode: the authors' DVS variant: every attention max-pools its keys, values,
            ``K ⊙ V`` and output ("Erode", their ``dvs_mode``).

    Input ``[T, B, in_channels, H, W]``, output ``[T, B, num_classes]`` logits.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        embed_dim: int = 512,
        depth: int = 2,
        num_heads: int = 8,
        mlp_ratio: int = 4,
        pools: int = 2,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
        erode: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(erode, bool):
            raise ConfigurationError(
                f"SpikeDrivenTransformer: erode must be True or False, got {erode!r}"
            )
        check_transformer_arguments(
            "SpikeDrivenTransformer", zero_init_residual, pools, num_classes=num_classes,
            in_channels=in_channels, input_size=input_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio,
        )  # fmt: skip
        make = NeuronFactory(neuron, neuron_kwargs, defaults=ATTENTION_NEURON_DEFAULTS)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.patch_split, self.tokens = patch_splitting(
            in_channels, input_size, embed_dim, pools, make, last_neuron=False
        )
        self.position = nn.Sequential(make(), *conv_bn(embed_dim, embed_dim, 3))
        self.blocks = nn.ModuleList(
            _Block(embed_dim, num_heads, embed_dim * mlp_ratio, neuron, neuron_kwargs, make, erode)
            for _ in range(depth)
        )
        self.head_neuron = make()
        self.head = nn.Linear(embed_dim, num_classes)
        # The authors' initialisation: their convolutions (1x1 ones in the blocks, linear
        # layers here) truncated normal; the head as PyTorch's.
        body = [*self.patch_split, *self.position, *self.blocks.modules()]
        init_trunc_normal(body, (nn.Conv2d, nn.Linear))

    def forward_tokens(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> the last block's tokens ``[T, B, N, D]`` (each block
        told the grid of positions, which the DVS variant's max-pools read)."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        x = self.patch_split(x)
        x = x + self.position(x)
        grid = (x.shape[-2], x.shape[-1])
        tokens = x.flatten(3).transpose(2, 3)  # [T, B, N, D], row-major positions
        for block in self.blocks:
            tokens = block(tokens, grid)
        return tokens

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, num_classes]``."""
        return self.head(self.head_neuron(self.forward_tokens(x).mean(dim=2)))


@register_model("spike_driven_transformer")
def spike_driven_transformer(
    num_classes: int = 10,
    in_channels: int = 3,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> SpikeDrivenTransformer:
    """The Spike-driven Transformer 2-512 for 32x32 images (the authors' CIFAR-10
    model); ``kwargs`` are :class:`SpikeDrivenTransformer`'s other arguments."""
    return SpikeDrivenTransformer(num_classes=num_classes, in_channels=in_channels,
                                  neuron=neuron, neuron_kwargs=neuron_kwargs, **kwargs)  # fmt: skip


@register_model("sdt_8_384")
def sdt_8_384(
    num_classes: int = 1000,
    in_channels: int = 3,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> SpikeDrivenTransformer:
    """The Spike-driven Transformer 8-384 for 224x224 images (the paper's ImageNet
    model, SpikingJelly 2.0's ``model.sdt_8_384``): ``embed_dim=384``, 8 heads, depth 8,
    MLP ratio 4, all four stages pooled (16x16 patches); ``kwargs`` are
    :class:`SpikeDrivenTransformer`'s other arguments. SpikingJelly's weights load
    through :func:`convert_spikingjelly_state_dict` with ``pools=4``; its ``T`` is not an
    argument (the input ``[T, B, C, H, W]`` carries it) and its output is the time-mean
    of this one's."""
    settings = {"input_size": 224, "embed_dim": 384, "depth": 8, "num_heads": 8, "pools": 4,
                **kwargs}  # fmt: skip
    return SpikeDrivenTransformer(
        num_classes=num_classes, in_channels=in_channels, neuron=neuron,
        neuron_kwargs=neuron_kwargs, **settings,
    )  # fmt: skip


@register_model("sdt_cifar10dvs")
def sdt_cifar10dvs(
    num_classes: int = 10,
    in_channels: int = 2,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> SpikeDrivenTransformer:
    """The Spike-driven Transformer 2-256 of the authors' CIFAR10-DVS configuration:
    64x64 frames of 2 polarities, 8 heads, depth 2, MLP ratio 4, the last two stages
    pooled (16x16 = 256 tokens), with the DVS variant's "Erode" max-pools
    (``erode=True``; their runs use T = 10); ``kwargs`` are
    :class:`SpikeDrivenTransformer`'s other arguments."""
    settings = {"input_size": 64, "embed_dim": 256, "depth": 2, "num_heads": 8, "pools": 2,
                "erode": True, **kwargs}  # fmt: skip
    return SpikeDrivenTransformer(
        num_classes=num_classes, in_channels=in_channels, neuron=neuron,
        neuron_kwargs=neuron_kwargs, **settings,
    )  # fmt: skip


@register_model("sdt_dvsgesture")
def sdt_dvsgesture(
    num_classes: int = 11,
    in_channels: int = 2,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> SpikeDrivenTransformer:
    """The Spike-driven Transformer 2-256 of the authors' DVS128 Gesture configuration:
    128x128 frames of 2 polarities, 11 classes, 8 heads, depth 2, MLP ratio 4, the last
    three stages pooled (16x16 = 256 tokens; T = 16 or 10). Their training script turns
    the "Erode" max-pools on for CIFAR10-DVS only, so they are off here
    (``erode=True`` adds them); ``kwargs`` are :class:`SpikeDrivenTransformer`'s other
    arguments."""
    settings = {"input_size": 128, "embed_dim": 256, "depth": 2, "num_heads": 8, "pools": 3,
                **kwargs}  # fmt: skip
    return SpikeDrivenTransformer(
        num_classes=num_classes, in_channels=in_channels, neuron=neuron,
        neuron_kwargs=neuron_kwargs, **settings,
    )  # fmt: skip


_SJ_ATTENTION = {
    "shortcut_lif.": "input_neuron.",
    "q_conv.": "qkv.linear.0.", "q_bn.": "qkv.norm.0.", "q_lif.": "qkv.neuron.0.",
    "k_conv.": "qkv.linear.1.", "k_bn.": "qkv.norm.1.", "k_lif.": "qkv.neuron.1.",
    "v_conv.": "qkv.linear.2.", "v_bn.": "qkv.norm.2.", "v_lif.": "qkv.neuron.2.",
    "attn_lif.": "kv_neuron.", "proj_conv.": "proj.", "proj_bn.": "proj_norm.",
}  # fmt: skip
_SJ_RENAMES = {
    "patch_embed.final_lif.": "position.0.",
    "patch_embed.rpe_conv.": "position.1.",
    "patch_embed.rpe_bn.": "position.2.",
    "head_lif.": "head_neuron.",
}
_SJ_MLP = {"fc1.": "fc1.", "bn1.": "norm1.", "lif1.": "neuron1.", "fc2.": "fc2.",
           "bn2.": "norm2.", "lif2.": "neuron2."}  # fmt: skip


def _sj_name(key: str, stages: list[tuple[int, int, int | None]]) -> str:
    """The name in :class:`SpikeDrivenTransformer` of SpikingJelly's tensor ``key``."""
    if key.startswith("patch_embed.stages."):
        stage, _, tail = key.removeprefix("patch_embed.stages.").partition(".")
        which, _, leaf = tail.partition(".")  # 0 conv, 1 BN, 2 neuron, 3 pool
        return f"patch_split.{stages[int(stage)][int(which)]}.{leaf}"
    if key.startswith("patch_embed.final_stage."):
        which, _, leaf = key.removeprefix("patch_embed.final_stage.").partition(".")
        return f"patch_split.{stages[3][int(which)]}.{leaf}"
    for old, new in _SJ_RENAMES.items():
        if key.startswith(old):
            return new + key.removeprefix(old)
    for part, renames in ((".attn.", _SJ_ATTENTION), (".mlp.", _SJ_MLP)):
        prefix, sep, rest = key.partition(part)
        old = next((o for o in renames if rest.startswith(o)), None) if sep else None
        if old is not None:
            module = "attention" if part == ".attn." else "mlp"
            return f"{prefix}.{module}.{renames[old]}{rest.removeprefix(old)}"
    return key


def convert_spikingjelly_state_dict(
    state: Mapping[str, Tensor], *, pools: int
) -> dict[str, Tensor]:
    """SpikingJelly 2.0's ``model.SpikeDrivenTransformer`` state dict (or any mapping of
    its names to tensors, such as its parameters' gradients) under
    :class:`SpikeDrivenTransformer`'s names and shapes, for a model with ``pools``
    max-pools (SpikingJelly's ``pooling_stat`` ``"0011"`` is 2, its default ``"1111"``
    4; a mask with a 0 after a 1 has no equal here).

    The patch embedding's ``stages.i``, ``final_stage``, ``final_lif``, ``rpe_conv`` and
    ``rpe_bn`` become ``patch_split.*`` and ``position.*``; the attention's ``q_*``,
    ``k_*``, ``v_*`` become ``qkv.{linear,norm,neuron}.{0,1,2}``, ``shortcut_lif``
    ``input_neuron``, ``attn_lif`` ``kv_neuron``; ``head_lif`` ``head_neuron``; 1x1
    convolution weights ``[out, in, 1, 1]`` become linear weights ``[out, in]``.

    The biases of SpikingJelly's convolutions that a batch norm follows (the patch
    stages' and the attention's ``proj_conv``; spikeflow's have none) fold into that
    norm: its ``running_mean`` less the bias, which gives the same outputs in eval and in
    training mode, and the same running statistics after (convert them the same way).
    A mapping without the norm's ``running_mean`` (gradients) drops those biases. The
    mapping's order is free (a sorted state dict converts the same).
    """
    stages = sps_indices(pools, last_neuron=False)
    convs = {f"patch_split.{conv}.bias": f"patch_split.{norm}" for conv, norm, _ in stages}
    renamed = {key: _sj_name(key, stages) for key in state}
    # A norm's name -> the bias of the conv before it, gathered first: the mapping's
    # order is free (a sorted state dict has a "proj_bn.running_mean" before its
    # "proj_conv.bias").
    folded: dict[str, Tensor] = {}
    for key, new in renamed.items():
        if new in convs or new.endswith(".attention.proj.bias"):
            folded[convs.get(new, new.removesuffix("proj.bias") + "proj_norm")] = state[key]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = renamed[key]
        if new in convs or new.endswith(".attention.proj.bias"):
            continue
        if new.endswith(".running_mean") and new.removesuffix(".running_mean") in folded:
            value = value - folded[new.removesuffix(".running_mean")]
        if value.dim() == 4 and (".mlp.fc" in new or ".attention." in new):
            value = value[..., 0, 0]  # a 1x1 conv weight [out, in, 1, 1] -> [out, in]
        out[new] = value
    return out
