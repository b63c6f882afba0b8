"""The attention pieces of :mod:`spikeflow.conversion.llm`: the rotary embedding, the
head split and merge, and causal grouped-query attention (GQA) over a key/value cache.

In ``mode="spikes"`` the ``T`` steps are folded into the batch (``[T*B, heads, S, D]``).
The key/value heads are never repeated per query head: ``scaled_dot_product_attention``
with ``enable_gqa=True`` pairs each group of query heads with its key/value head (on CPU
float32 and float64 the results equal those of ``repeat_interleave``, bit for bit). With
a cache ``[B, kv_heads, P, D]`` and ``T > 1`` steps, the steps become consecutive
blocks of queries of one sequence ``[B, heads, T*S, D]`` against the cache followed by
every step's keys, a block mask letting each block see the cache and its own step's
keys: the cache is read once instead of copied per step (results equal within rounding,
the softmax sums running over other key blocks). Where that mask, ``T*S x (P + T*S)``
per sequence, would cost more than the ``T`` copies of the cache (a long chunk after a
short cache), the cache is copied per step instead.
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
        if past_k is not None and repeat > 1 and _queries_cheaper(q, k, past_k, repeat):
            return self._steps_as_queries(q, k, v, mask, past_k, past_v, repeat)
        if past_k is not None:
            k = torch.cat([past_k.repeat(repeat, 1, 1, 1), k], dim=2)
            v = torch.cat([past_v.repeat(repeat, 1, 1, 1), v], dim=2)
        if repeat > 1:
            mask = mask.repeat(repeat, 1, 1, 1)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=self.scale, enable_gqa=self.groups > 1
        )

    def _steps_as_queries(self, q, k, v, mask, past_k, past_v, steps: int) -> Tensor:
        """The steps as consecutive query blocks of one sequence ``[B, heads, T*S, D]``
        against ``[cache; keys of step 1; ...; keys of step T]``, each block seeing the
        cache and its own step's keys: the cache is read once, not copied per step."""
        batch, length, past = mask.shape[0], q.shape[2], past_k.shape[2]

        def blocks(x: Tensor) -> Tensor:  # [T*B, h, S, D] -> [B, h, T*S, D]
            return x.unflatten(0, (steps, batch)).permute(1, 2, 0, 3, 4).flatten(2, 3)

        keys = torch.cat([past_k, blocks(k)], dim=2)
        values = torch.cat([past_v, blocks(v)], dim=2)
        to_past = mask[..., :past].unsqueeze(2).expand(-1, -1, steps, -1, -1)
        same_step = torch.eye(steps, dtype=torch.bool, device=mask.device)[:, None, :, None]
        to_new = same_step & mask[:, :, None, :, None, past:]  # [B, 1, T, S, T, S]
        block_mask = torch.cat([to_past.flatten(2, 3), to_new.flatten(4, 5).flatten(2, 3)], dim=-1)
        out = F.scaled_dot_product_attention(
            blocks(q), keys, values, attn_mask=block_mask, scale=self.scale,
            enable_gqa=self.groups > 1,
        )  # fmt: skip
        return out.unflatten(2, (steps, length)).permute(2, 0, 1, 3, 4).flatten(0, 1)


def _queries_cheaper(q: Tensor, k: Tensor, past_k: Tensor, steps: int) -> bool:
    """Whether the block mask of ``steps`` steps as queries (bool, and the float copy
    the attention makes of it) costs fewer bytes than ``steps`` copies of the cache."""
    length, past, size = q.shape[2], past_k.shape[2], q.element_size()
    mask_bytes = length * (past + steps * length) * (size + 1)
    copy_bytes = 2 * k.shape[1] * (past + length) * k.shape[3] * size
    return mask_bytes < copy_bytes


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
