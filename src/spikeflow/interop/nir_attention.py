"""Why attention does not export to NIR, for the refusal's message.

Every spiking attention layer multiplies two signals computed from its input
(``Q·Kᵀ·V``, ``Q ⊙ KV``, ``mask ⊙ K``, ``x ⊙ scores(x)``); a NIR node sums its inputs and
maps each element of one signal (``Threshold`` of a sum expresses a product of two 0/1
spikes element by element, as SEW's AND does, but not the matrix products and
real-valued scores of attention). NIR export names each such layer with its product.
"""

from __future__ import annotations

from torch import nn

__all__ = ["attention_reason"]


#: Why the attention layers do not export (by class name): each multiplies two signals
#: computed from its input, and a NIR node sums its inputs and maps each element of one.
_ATTENTION_PRODUCTS: dict[str, str] = {
    "SpikingSelfAttention": "Q·(Kᵀ·V): products of spike matrices",
    "CifarAttention": "Q·(Kᵀ·V): products of spike matrices",
    "SpikeDrivenSelfAttention": "Q ⊙ SN(Σ K ⊙ V): element-wise products of spikes",
    "QKAttention": "mask ⊙ K: a product of spikes",
    "TokenQKAttention": "mask ⊙ K: a product of spikes",
    "ChannelQKAttention": "mask ⊙ K: a product of spikes",
    "TemporalWiseAttention": "x ⊙ scores(x) over the whole sequence: a product of signals",
    "MultiDimensionalAttention": "x ⊙ scores(x) over the whole sequence: a product of signals",
    "TCJA": "x ⊙ sigmoid(scores(x)) over the whole sequence: a product of signals",
}


def attention_reason(module: nn.Module, qualified: str) -> str:
    """The text naming each attention layer in ``module`` (at ``qualified``) and the
    product of signals it computes, to follow ``'path' (Class)`` in NIR export's
    refusal; empty where ``module`` holds no attention layer."""
    found = []
    for name, inner in module.named_modules():
        reason = _ATTENTION_PRODUCTS.get(type(inner).__name__)
        if reason is not None and type(inner).__module__.startswith("spikeflow."):
            path = f"{qualified}.{name}" if name else qualified
            found.append(f"'{path}' ({type(inner).__name__}) computes {reason}")
    if not found:
        return ""
    return (
        ": attention, " + "; ".join(found) + ", which no NIR node computes (a NIR node "
        "sums its inputs and maps each element of one signal; a product of two signals "
        "computed from the input has no such form)"
    )
