"""Why attention does not export to NIR, for the refusal's message.

Every spiking attention layer multiplies two signals computed from its input
(``Q·Kᵀ·V``, ``Q ⊙ KV``, ``mask ⊙ K``, ``x ⊙ scores(x)``); a NIR node sums its inputs and
maps each element of one signal (``Threshold`` of a sum expresses a product of two 0/1
spikes element by element, as SEW's AND does, but not the matrix products and
real-valued scores of attention). NIR export names each such layer with its product.
"""

from __future__ import annotations

from torch import nn

from spikeflow.errors import ConfigurationError

__all__ = ["attention_layers", "attention_reason", "attention_refusal"]


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
    "RWKVTimeMix": "sigmoid(r) ⊙ wkv(k, v), RWKV's linear attention: products of signals",
}


def attention_layers(module: nn.Module, qualified: str = "") -> list[str]:
    """``"'path' (Class) computes <product>"`` for each spikeflow attention layer inside
    ``module`` (itself included, at ``qualified``), in module order."""
    found = []
    for name, inner in module.named_modules():
        reason = _ATTENTION_PRODUCTS.get(type(inner).__name__)
        if reason is not None and type(inner).__module__.startswith("spikeflow."):
            path = ".".join(part for part in (qualified, name) if part) or type(inner).__name__
            found.append(f"'{path}' ({type(inner).__name__}) computes {reason}")
    return found


def attention_reason(module: nn.Module, qualified: str) -> str:
    """The text naming each attention layer in ``module`` (at ``qualified``) and the
    product of signals it computes, to follow ``'path' (Class)`` in NIR export's
    refusal; empty where ``module`` holds no attention layer."""
    found = attention_layers(module, qualified)
    if not found:
        return ""
    return (
        ": attention, " + "; ".join(found) + ", which no NIR node computes (a NIR node "
        "sums its inputs and maps each element of one signal; a product of two signals "
        "computed from the input has no such form)"
    )


def attention_refusal(net: nn.Module, probe: str, error: Exception) -> ConfigurationError | None:
    """NIR export's refusal naming the attention layers of ``net`` when the shape probe
    on ``probe`` zeros failed with ``error`` before the modules were checked (MA-SNN's
    and TCJA's attention are built for a fixed ``T``, which the probe's is not); None
    without attention (the probe's error is then the one to raise)."""
    found = attention_layers(net)
    if not found:
        return None
    return ConfigurationError(
        "NIR export does not support these modules: attention, " + ", ".join(found) + ", "
        "which no NIR node computes (a NIR node sums its inputs and maps each element of "
        "one signal; a product of two signals computed from the input has no such form); "
        f"the shape probe on {probe} zeros failed too ({type(error).__name__}: {error})"
    )
