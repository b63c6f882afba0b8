"""The attention pieces of :mod:`spikeflow.conversion.llm`: the rotary embedding, the
head split and merge, and causal grouped-query attention (GQA) over a key/value cache.

In ``mode="spikes"`` the ``T`` steps are folded into the batch (``[T*B, heads, S, D]``).
The key/value heads are never repeated per query head: ``scaled_dot_product_attention``
with ``enable_gqa=True`` pairs each group of query heads with its key/value head (on CPU
float32 and float64 the results equal those of ``repeat_interleave``, bit for bit). The
cache ``[B, kv_heads, P, D]`` is still copied once per step, since each step's new keys
follow it in one key sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.errors import ShapeError

__all__ = ["CausalGQA", "attention_scale", "merge_heads", "rotate", "split_heads"]


class CausalGQA(nn.Module):
    """Masked scaled dot-product attention with the key/value heads shared by groups of
    ``groups`` query heads; ``past_k, past_v`` (the cache, ``[B, kv_heads, P, D]``) come
    before the keys.

    Args:
        groups: query heads per key/value head.
        scale: the factor of ``q·k``.
    """

    def __init__(self, groups: int, scale: float) -> None:
        super().__init__()
        self.groups, self.scale = groups, scale

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor,
        past_k: Tensor | None = None,
        past_v: Tensor | None = None,
    ) -> Tensor:
        """``q [T*B, heads, S, D]``, ``k, v [T*B, kv_heads, S, D]``, ``mask [B, 1, S,
        P + S]`` (True: attend) -> ``[T*B, heads, S, D]``."""
        if q.shape[1] != k.shape[1] * self.groups:
            raise ShapeError(
                f"CausalGQA: {q.shape[1]} query heads are not {self.groups} per key/value "
                f"head of {k.shape[1]}"
            )
        repeat = q.shape[0] // mask.shape[0]  # time folded into the batch
        if past_k is not None:
            k = torch.cat([past_k.repeat(repeat, 1, 1, 1), k], dim=2)
            v = torch.cat([past_v.repeat(repeat, 1, 1, 1), v], dim=2)
        if repeat > 1:
            mask = mask.repeat(repeat, 1, 1, 1)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=self.scale, enable_gqa=self.groups > 1
        )


def rotate(x: Tensor, cos: Tensor, sin: Tensor, heads: int) -> Tensor:
    """The rotary embedding of ``x [T, B, S, heads*D]`` (the rotate-half convention of
    Qwen2/Llama), ``cos, sin [B, S, D]``; returns ``[T, B, heads, S, D]``."""
    x = split_heads(x, heads)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[None, :, None] + rotated * sin[None, :, None]


def attention_scale(attn: nn.Module) -> float:
    """The factor of ``q·k``: ``attn.scaling`` (transformers >= 4.48), else
    ``1/sqrt(head_dim)`` as the attention of transformers 4.45-4.47 divides by."""
    scaling = getattr(attn, "scaling", None)
    if scaling is None:
        scaling = float(attn.head_dim) ** -0.5
    return float(scaling)


def split_heads(x: Tensor, heads: int) -> Tensor:
    """``[..., S, heads*D]`` -> ``[..., heads, S, D]``."""
    return x.unflatten(-1, (heads, -1)).transpose(-3, -2)


def merge_heads(x: Tensor) -> Tensor:
    """``[..., heads, S, D]`` -> ``[..., S, heads*D]``."""
    return x.transpose(-3, -2).flatten(-2)
