"""L2Wrap (spikeflow.losses.l2wrap, docs/language.md): RWKV-4's/SpikeGPT's logits
regulariser, against a transcription of their autograd function and gradcheck (float64)
of the penalty whose gradient it adds."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.losses import l2wrap, l2wrap_penalty


class _TheirL2Wrap(torch.autograd.Function):
    """Their L2Wrap (SpikeGPT src/model.py, RWKV-4), batch-first [B, T, V] logits: the
    loss passes, each position's top logit gets 1e-4 · top / (B·T)."""

    @staticmethod
    def forward(ctx, loss, logits):
        ctx.save_for_backward(logits)
        return loss

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        extra = torch.zeros_like(y)
        for b in range(y.shape[0]):
            for t in range(y.shape[1]):
                j = int(y[b, t].argmax())
                extra[b, t, j] = y[b, t, j] * 1e-4 / (y.shape[0] * y.shape[1])
        return grad, extra


def _logits(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 3).requires_grad_()


def test_matches_their_function_whatever_flows_into_it():
    T, B, V = 7, 3, 11
    targets = torch.randint(0, V, (T, B), generator=torch.Generator().manual_seed(1))
    ours = _logits(T, B, V)
    theirs = ours.detach().transpose(0, 1).clone().requires_grad_()  # their [B, T, V]
    loss = F.cross_entropy(ours.flatten(0, 1), targets.flatten())
    wrapped = l2wrap(loss, ours)
    assert wrapped.item() == loss.item()
    (2.5 * wrapped).backward()  # the extra gradient does not scale with 2.5
    ref_loss = F.cross_entropy(theirs.flatten(0, 1), targets.t().flatten())
    (2.5 * _TheirL2Wrap.apply(ref_loss, theirs)).backward()
    torch.testing.assert_close(ours.grad.transpose(0, 1), theirs.grad, rtol=1e-12, atol=0)
    # the regulariser alone: nonzero at each position's top logit only
    alone = _logits(T, B, V, seed=3)
    l2wrap(torch.zeros((), dtype=torch.float64), alone).backward()
    top = alone.detach().amax(-1, keepdim=True)
    assert torch.equal(alone.grad != 0, alone.detach() == top)
    torch.testing.assert_close(alone.grad.sum(-1, keepdim=True), top * 1e-4 / (T * B))


def test_its_gradient_is_the_penalty_gradient_gradcheck():
    def wrapped_with_penalty_value(loss, logits):
        # value: loss + P(logits); gradient: what l2wrap sends (P's value detached), so
        # gradcheck's finite differences of P check l2wrap's backward
        return l2wrap(loss, logits, 0.3, scaled=True) + l2wrap_penalty(logits, 0.3).detach()

    loss = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    for shape in [(5, 2, 6), (4, 9), (6,)]:
        logits = _logits(*shape, seed=len(shape))
        assert torch.autograd.gradcheck(wrapped_with_penalty_value, (loss, logits))
    # the default (their unscaled form) equals it when the loss itself is backpropagated
    grads = []
    for scaled in (False, True):
        logits = _logits(5, 2, 6, seed=7)
        l2wrap(loss, logits, 0.3, scaled).backward()
        grads.append(logits.grad)
    assert grads[0].abs().sum() > 0 and torch.equal(grads[0], grads[1])
    # and the penalty's value by hand: 0.3 / (2 N) · Σ max²
    y = _logits(4, 9, seed=5).detach()
    want = 0.3 / (2 * 4) * sum(float(row.max()) ** 2 for row in y)
    assert abs(float(l2wrap_penalty(y, 0.3)) - want) < 1e-12


def test_bad_arguments():
    y = _logits(3, 2, 5)
    with pytest.raises(ShapeError, match="loss must be a scalar"):
        l2wrap(torch.zeros(3), y)
    with pytest.raises(ShapeError, match="logits must be a floating-point"):
        l2wrap(torch.zeros(()), torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"non-empty \[\.\.\., vocab\]"):
        l2wrap(torch.zeros(()), torch.zeros(0, 5))
    with pytest.raises(ConfigurationError, match="scale must be a finite number >= 0"):
        l2wrap(torch.zeros(()), y, -1.0)
    with pytest.raises(ConfigurationError, match="scale must be a finite number >= 0"):
        l2wrap_penalty(y, float("nan"))
    with pytest.raises(ConfigurationError, match="scale must be a finite number >= 0"):
        l2wrap(torch.zeros(()), y, float("inf"))
    with pytest.raises(ConfigurationError, match="scaled must be True or False"):
        l2wrap(torch.zeros(()), y, 1e-4, 1)


@pytest.mark.parametrize("loss_scale", [1024.0, 65536.0])
def test_scaled_float16_logits_under_a_loss_scaler(loss_scale):
    # SpikeGPT's 32 x 1024 positions: scale/N = 3e-9 underflows in float16 unless the
    # scaler's factor (65536 itself overflows float16) is applied before the cast
    T, B, V = 1024, 32, 8
    logits = (torch.randn(T, B, V, generator=torch.Generator().manual_seed(0)) * 2).half()
    logits.requires_grad_()
    (loss_scale * l2wrap(torch.zeros(()), logits, scaled=True)).backward()
    y = logits.detach().float()
    where = y.argmax(-1, keepdim=True)
    want = y.gather(-1, where) * (1e-4 / (T * B) * loss_scale)
    got = logits.grad.float()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.gather(-1, where), want, rtol=2e-3, atol=1e-7)
    # nothing lost but what float16 cannot hold (below its subnormals, ~6e-8)
    assert bool((got.gather(-1, where) != 0)[want.abs() > 1e-6].all())


def test_penalty_of_float16_logits_is_finite():
    # 32 x 1024 positions: the float16 sum of squared maxima (~8e5) passes 65504
    y = torch.randn(1024, 32, 16, generator=torch.Generator().manual_seed(0)) * 2
    value = l2wrap_penalty(y.half())
    assert value.dtype == torch.float16
    torch.testing.assert_close(value.double(), l2wrap_penalty(y.half().double()), rtol=1e-3, atol=0)
