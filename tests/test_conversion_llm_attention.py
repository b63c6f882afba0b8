"""The causal grouped-query attention of the spiking LLM (``llm_attention.CausalGQA``).

Checked against a reference loop over the query heads (softmax of the scaled scores
with the mask, each query head reading key/value head ``h // groups``), against the
``repeat_interleave`` form it replaced (bit for bit, float32 and float64, where the
cache is copied per step; within rounding where the steps are query blocks), by
``gradcheck`` in float64, and for not copying the keys and values per query head or
the cache per step.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from spikeflow.conversion.llm_attention import CausalGQA, _queries_cheaper
from spikeflow.errors import ShapeError

STEPS, BATCH, HEADS, KV_HEADS, DIM = 3, 2, 6, 2, 8
GROUPS = HEADS // KV_HEADS


def _inputs(length: int, past: int, dtype=torch.float64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(STEPS * BATCH, HEADS, length, DIM, generator=gen, dtype=dtype)
    k = torch.randn(STEPS * BATCH, KV_HEADS, length, DIM, generator=gen, dtype=dtype)
    v = torch.randn(STEPS * BATCH, KV_HEADS, length, DIM, generator=gen, dtype=dtype)
    past_k = torch.randn(BATCH, KV_HEADS, past, DIM, generator=gen, dtype=dtype)
    past_v = torch.randn(BATCH, KV_HEADS, past, DIM, generator=gen, dtype=dtype)
    causal = torch.arange(past + length)[None] <= torch.arange(past, past + length)[:, None]
    keep = torch.ones(BATCH, past + length, dtype=torch.bool)
    keep[1, :2] = False  # left padding of the second sequence
    mask = (causal[None] & keep[:, None]) | ~keep[:, past:, None]
    return q, k, v, mask[:, None], past_k, past_v


def _reference(q, k, v, mask, past_k, past_v, scale):
    """The loop: step t, sequence b, query head h reads key/value head h // GROUPS."""
    out = torch.empty_like(q)
    for row in range(q.shape[0]):
        b = row % BATCH
        for h in range(HEADS):
            g = h // GROUPS
            keys = torch.cat([past_k[b, g], k[row, g]])
            values = torch.cat([past_v[b, g], v[row, g]])
            scores = (q[row, h] @ keys.T) * scale
            scores = scores.masked_fill(~mask[b, 0], float("-inf"))
            out[row, h] = scores.softmax(-1) @ values
    return out


def _repeated(q, k, v, mask, past_k, past_v, scale):
    """The former form: the cache repeated per step, then every key/value head per
    query head of its group."""
    k = torch.cat([past_k.repeat(STEPS, 1, 1, 1), k], 2).repeat_interleave(GROUPS, 1)
    v = torch.cat([past_v.repeat(STEPS, 1, 1, 1), v], 2).repeat_interleave(GROUPS, 1)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask.repeat(STEPS, 1, 1, 1), scale=scale
    )


# (1, 7), (4, 6): the steps as query blocks against the cache read once; (20, 1): the
# block mask would cost more than the cache's copies, so the cache is copied per step
@pytest.mark.parametrize(
    "length, past, blocks", [(5, 0, True), (1, 7, True), (4, 6, True), (20, 1, False)]
)
def test_matches_the_reference_loop(length, past, blocks):
    args = _inputs(length, past)
    assert _queries_cheaper(args[0], args[1], args[4], STEPS) is blocks
    ours = CausalGQA(GROUPS, 0.3)(*args[:4], past_k=args[4], past_v=args[5])
    torch.testing.assert_close(ours, _reference(*args, 0.3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("length, past", [(5, 0), (1, 40), (3, 9), (20, 1)])
def test_equals_the_repeated_form(dtype, length, past):
    """Bit for bit without a cache or with the cache copied per step; with the steps as
    query blocks the softmax sums run over other key blocks: within rounding."""
    q, k, v, mask, past_k, past_v = _inputs(length, past, dtype, seed=1)
    attention = CausalGQA(GROUPS, 0.25)
    if past == 0:  # no cache
        assert torch.equal(attention(q, k, v, mask), _repeated(q, k, v, mask, past_k, past_v, 0.25))
    ours = attention(q, k, v, mask, past_k=past_k, past_v=past_v)
    expected = _repeated(q, k, v, mask, past_k, past_v, 0.25)
    if _queries_cheaper(q, k, past_k, STEPS):
        tolerance = 1e-6 if dtype == torch.float32 else 1e-14
        torch.testing.assert_close(ours, expected, rtol=0, atol=tolerance)
    else:
        assert torch.equal(ours, expected)


def test_gradcheck_float64():
    q, k, v, mask, past_k, past_v = _inputs(2, 3)
    leaves = [t.clone().requires_grad_() for t in (q, k, v, past_k, past_v)]
    attention = CausalGQA(GROUPS, 0.5)

    def fn(q, k, v, past_k, past_v):
        return attention(q, k, v, mask, past_k=past_k, past_v=past_v)

    assert torch.autograd.gradcheck(fn, leaves)


class _Shapes(TorchDispatchMode):
    """Records the shapes of every operation's tensor outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def test_keys_and_values_are_not_copied_per_query_head_or_step():
    length, past = 1, 30
    q, k, v, mask, past_k, past_v = _inputs(length, past, torch.float32)
    with _Shapes() as record:
        CausalGQA(GROUPS, 0.25)(q, k, v, mask, past_k=past_k, past_v=past_v)
    assert (STEPS * BATCH, HEADS, past + length, DIM) not in record.shapes  # per head
    assert (STEPS * BATCH, KV_HEADS, past + length, DIM) not in record.shapes  # per step
    # the cache, once, followed by the steps' keys (and values)
    assert record.shapes.count((BATCH, KV_HEADS, past + STEPS * length, DIM)) == 2


def test_refuses_heads_not_in_groups():
    q, k, v, mask, _, _ = _inputs(2, 0)
    with pytest.raises(ShapeError, match="query heads"):
        CausalGQA(4, 0.25)(q, k, v, mask)
