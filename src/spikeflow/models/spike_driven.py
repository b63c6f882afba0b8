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
4, the last two stages pooled: 64 tokens; T = 4). The authors' DVS variant also
max-pools keys, values and the attention ("Erode"); not implemented here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from spikeflow.layers.attention import (
    ATTENTION_NEURON_DEFAULTS,
    FeatureBatchNorm,
    SpikeDrivenSelfAttention,
)
from spikeflow.models.common import (
    NeuronFactory,
    NeuronSpec,
    conv_bn,
)
from spikeflow.models.registry import register_model
from spikeflow.models.spikformer import (
    PatchTokenTransformer,
    check_transformer_arguments,
    init_trunc_normal,
    patch_splitting,
)

__all__ = ["SpikeDrivenTransformer", "spike_driven_transformer"]


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
                 neuron_kwargs: Mapping[str, Any] | None, make_neuron: Any) -> None:  # fmt: skip
        super().__init__()
        self.attention = SpikeDrivenSelfAttention(dim, heads, neuron=neuron,
                                                  neuron_kwargs=neuron_kwargs)  # fmt: skip
        self.mlp = _MembraneMLP(dim, hidden, make_neuron)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x + self.attention(x))  # the MLP adds its own residual


class SpikeDrivenTransformer(PatchTokenTransformer):
    """The Spike-driven Transformer (V1): membrane-shortcut blocks with SDSA.

    Args:
        num_classes, in_channels, input_size, embed_dim, depth, num_heads, mlp_ratio,
            pools, neuron, neuron_kwargs: as :class:`~spikeflow.models.spikformer.Spikformer`.

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
    ) -> None:
        super().__init__()
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
            _Block(embed_dim, num_heads, embed_dim * mlp_ratio, neuron, neuron_kwargs, make)
            for _ in range(depth)
        )
        self.head_neuron = make()
        self.head = nn.Linear(embed_dim, num_classes)
        # The authors' initialisation: their convolutions (1x1 ones in the blocks, linear
        # layers here) truncated normal; the head as PyTorch's.
        body = [*self.patch_split, *self.position, *self.blocks.modules()]
        init_trunc_normal(body, (nn.Conv2d, nn.Linear))

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
