"""Reference pieces the neuron test modules share: the Sigmoid surrogate spike written
out by hand, and the comparison of a fused neuron against a transcribed reference loop
(imported, not collected by pytest)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class SigmoidSpike(torch.autograd.Function):
    """Θ(u >= 0) forward, ``a σ(a u) (1 - σ(a u))`` backward (the Sigmoid surrogate)."""

    @staticmethod
    def forward(ctx, u, a):
        ctx.save_for_backward(u)
        ctx.a = a
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.a * u)
        return grad * ctx.a * sg * (1 - sg), None


def sigmoid_spike(u: Tensor, a: float = 4.0) -> Tensor:
    """:class:`SigmoidSpike` with slope ``a`` (spikeflow's Sigmoid default, 4)."""
    return SigmoidSpike.apply(u, a)


def compare_with_reference(
    s: Tensor,
    v_seq: Tensor,
    got: Sequence[Tensor],
    s_ref: Tensor,
    v_ref: Tensor,
    want: Sequence[Tensor],
    names: Sequence[str],
) -> None:
    """Spikes equal, some spikes and some silences, membranes to 1e-12 and each named
    gradient (nonzero) to 1e-10 of the reference's."""
    assert torch.equal(s, s_ref)
    assert 0.05 < s.mean().item() < 0.9  # spikes and silences
    torch.testing.assert_close(v_seq, v_ref, rtol=1e-12, atol=1e-12)
    for name, a, b in zip(names, got, want, strict=True):
        assert a.shape == b.shape and b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
