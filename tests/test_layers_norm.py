"""tdBN, NeuNorm, BNTT and TEBN checked against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import spikeflow.layers as L
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.functional import streaming


def normalise(x: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-5) -> torch.Tensor:
    """(x − mean) / sqrt(var + eps) with biased statistics over ``dims``."""
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


# -- tdBN --------------------------------------------------------------------------------


def test_tdbn_statistics_over_time_batch_and_space():
    bn = L.ThresholdDependentBatchNorm2d(3, alpha=0.5, v_threshold=2.0)
    x = torch.randn(4, 2, 3, 5, 5) * 3 + torch.arange(4.0).view(4, 1, 1, 1, 1)
    y = bn(x)
    # per channel: statistics over T*B*H*W = 4*2*5*5 values, output scaled by α·θ = 1
    expected = 0.5 * 2.0 * normalise(x, (0, 1, 3, 4))
    torch.testing.assert_close(y, expected)
    n = 4 * 2 * 5 * 5
    mean = x.mean(dim=(0, 1, 3, 4))
    var_unbiased = x.var(dim=(0, 1, 3, 4), unbiased=True)
    assert x.transpose(0, 2).flatten(1).shape[1] == n
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var_unbiased)


def test_tdbn_weight_init_alpha_threshold():
    bn = L.ThresholdDependentBatchNorm2d(4, alpha=1 / math.sqrt(2), v_threshold=0.5)
    torch.testing.assert_close(bn.weight.data, torch.full((4,), 0.5 / math.sqrt(2)))
    torch.testing.assert_close(bn.bias.data, torch.zeros(4))
    bn.weight.data.fill_(7.0)
    bn.reset_parameters()
    torch.testing.assert_close(bn.weight.data, torch.full((4,), 0.5 / math.sqrt(2)))
    x = torch.randn(3, 2, 4, 3, 3)
    torch.testing.assert_close(bn(x), 0.5 / math.sqrt(2) * normalise(x, (0, 1, 3, 4)))
    assert "alpha=" in repr(bn) and "v_threshold=0.5" in repr(bn)


def test_tdbn_variants_and_no_affine():
    bn1 = L.ThresholdDependentBatchNorm1d(3, alpha=2.0, affine=False)
    x = torch.randn(4, 5, 3, 6)
    torch.testing.assert_close(bn1(x), 2.0 * normalise(x, (0, 1, 3)))
    bn3 = L.ThresholdDependentBatchNorm3d(2, v_threshold=3.0)
    x3 = torch.randn(2, 2, 2, 3, 3, 3)
    torch.testing.assert_close(bn3(x3), 3.0 * normalise(x3, (0, 1, 3, 4, 5)))
    with pytest.raises(ShapeError, match=r"\[T, B, C, H, W\]"):
        L.ThresholdDependentBatchNorm2d(3)(torch.randn(2, 3, 4, 4))


def test_tdbn_single_step_is_batch_norm_of_the_step():
    bn = L.ThresholdDependentBatchNorm2d(3, v_threshold=2.0, step_mode="s")
    x = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(bn(x), 2.0 * normalise(x, (0, 2, 3)))


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"v_threshold": -1.0}, {"alpha": math.nan}])
def test_tdbn_rejects_bad_scale(kwargs):
    with pytest.raises(ConfigurationError):
        L.ThresholdDependentBatchNorm2d(3, **kwargs)


# -- NeuNorm -----------------------------------------------------------------------------


def test_neunorm_two_steps_by_hand():
    m = L.NeuNorm(2, 1, 1, k=0.5)
    with torch.no_grad():
        m.w.copy_(torch.tensor([2.0, 4.0]).view(2, 1, 1))
    o = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(2, 1, 2, 1, 1)  # [T=2, B=1, C=2, 1, 1]
    # gain = (1 - k) / F² = 0.5 / 4 = 0.125
    # x[0] = 0.5·0 + 0.125·2 = 0.25;   y[0] = [1 − 2·0.25, 1 − 4·0.25] = [0.5, 0]
    # x[1] = 0.5·0.25 + 0.125·0 = 0.125; y[1] = [−2·0.125, −4·0.125] = [−0.25, −0.5]
    y = m(o)
    torch.testing.assert_close(y.flatten(), torch.tensor([0.5, 0.0, -0.25, -0.5]))
    assert m.state is None  # not streaming: nothing carried


def test_neunorm_shared_weight_and_init():
    m = L.NeuNorm(3, 4, 5, shared_across_channels=True)
    assert m.w.shape == (1, 4, 5)
    assert L.NeuNorm(3, 4, 5).w.shape == (3, 4, 5)
    torch.manual_seed(1)
    m = L.NeuNorm(3, 4, 5)
    torch.manual_seed(1)
    ref = torch.empty(3, 4, 5)
    nn.init.kaiming_uniform_(ref, a=math.sqrt(5))
    torch.testing.assert_close(m.w.data, ref)
    assert m.w.abs().max() <= 1 / math.sqrt(4 * 5)  # bound of kaiming_uniform(a=√5)


def test_neunorm_single_step_streaming_equals_multi_step():
    m = L.NeuNorm(3, 4, 4, k=0.8)
    x = (torch.rand(5, 2, 3, 4, 4) > 0.5).float()
    whole = m(x)
    m.step_mode = "s"
    with pytest.raises(StateError):
        m(x[0])
    with streaming(m):
        stepped = torch.stack([m(s) for s in x])
    torch.testing.assert_close(stepped, whole)
    m.step_mode = "m"
    with streaming(m):
        chunks = torch.cat([m(x[:2]), m(x[2:])])
    torch.testing.assert_close(chunks, whole)


def test_neunorm_gradients_and_shape_errors():
    m = L.NeuNorm(2, 3, 3)
    x = torch.rand(4, 2, 2, 3, 3, requires_grad=True)
    m(x).sum().backward()
    assert x.grad is not None and m.w.grad is not None and m.w.grad.abs().sum() > 0
    with pytest.raises(ShapeError, match=r"\(C, H, W\) = \(2, 3, 3\)"):
        m(torch.rand(4, 2, 3, 3, 3))
    with pytest.raises(ShapeError, match="missing the time dimension"):
        m(torch.rand(2, 2, 3, 3))
    with pytest.raises(ConfigurationError):
        L.NeuNorm(2, 3, 3, k=1.5)


# -- BNTT --------------------------------------------------------------------------------


def test_bntt_statistics_per_time_step():
    m = L.BatchNormThroughTime2d(3, T=4)
    x = torch.randn(4, 8, 3, 5, 5) + 10 * torch.arange(4.0).view(4, 1, 1, 1, 1)
    y = m(x)
    for t in range(4):
        torch.testing.assert_close(y[t], normalise(x[t], (0, 2, 3)))
        torch.testing.assert_close(m.bn[t].running_mean, 0.1 * x[t].mean(dim=(0, 2, 3)))
    # step t's running mean reflects step t's inputs (≈ t), so they differ per step
    means = torch.stack([m.bn[t].running_mean.mean() for t in range(4)])
    assert torch.all(means[1:] - means[:-1] > 0.5)
    # one set of statistics over all steps would not normalise each step to zero mean
    assert not torch.allclose(y, normalise(x, (0, 1, 3, 4)))


def test_bntt_scales_without_a_shift_as_the_paper():
    # Kim & Panda's BNTT (and SpikingJelly's, snnTorch's) learns a scale per step, no
    # shift; spikeflow's had a shift too (T*C more parameters, other state dicts).
    m = L.BatchNormThroughTime2d(3, T=4)
    assert [n for n, _ in m.named_parameters()] == [f"bn.{t}.weight" for t in range(4)]
    with torch.no_grad():
        for t in range(4):
            m.bn[t].weight.fill_(t + 1.0)
    x = torch.randn(4, 5, 3, 2, 2)
    y = m(x)
    for t in range(4):
        torch.testing.assert_close(y[t], (t + 1.0) * normalise(x[t], (0, 2, 3)))
    with pytest.raises(ConfigurationError, match="bias"):
        L.BatchNormThroughTime1d(2, T=3, bias="no")


def test_bntt_separate_affine_parameters():
    m = L.BatchNormThroughTime1d(2, T=3, bias=True)
    with torch.no_grad():
        for t in range(3):
            m.bn[t].weight.fill_(t + 1.0)
            m.bn[t].bias.fill_(-t)
    x = torch.randn(3, 6, 2)
    y = m(x)
    for t in range(3):
        torch.testing.assert_close(y[t], (t + 1.0) * normalise(x[t], (0,)) - t)
    assert len(list(m.parameters())) == 6


def test_bntt_time_mismatch_and_streaming():
    m = L.BatchNormThroughTime2d(3, T=4)
    with pytest.raises(ShapeError) as info:
        m(torch.randn(3, 2, 3, 4, 4))
    assert "T=4" in str(info.value) and "T=3" in str(info.value)
    with torch.no_grad():  # make every step's norm different
        for t in range(4):
            m.bn[t].weight.fill_(t + 1.0)
            m.bn[t].running_mean.fill_(-t)
    m.eval()
    x = torch.randn(4, 2, 3, 4, 4)
    whole = m(x)
    m.step_mode = "s"
    with streaming(m):
        stepped = torch.stack([m(s) for s in x])
        with pytest.raises(ShapeError, match="T=4"):
            m(x[0])  # a fifth step
    torch.testing.assert_close(stepped, whole)
    # per-step statistics: chunked streaming in training mode equals one call too
    m.train()
    m.step_mode = "m"
    whole = m(x)
    with streaming(m):
        chunks = torch.cat([m(x[:1]), m(x[1:3]), m(x[3:])])
    torch.testing.assert_close(chunks, whole)


# -- TEBN --------------------------------------------------------------------------------


def test_tebn_per_step_scale_by_hand():
    m = L.TemporalEffectiveBatchNorm2d(3, T=3)
    torch.testing.assert_close(m.p.data, torch.ones(3))
    with torch.no_grad():
        m.p.copy_(torch.tensor([1.0, 2.0, -0.5]))
        m.bn.bias.fill_(0.25)
    x = torch.randn(3, 4, 3, 2, 2) + torch.arange(3.0).view(3, 1, 1, 1, 1)
    y = m(x)
    folded = normalise(x, (0, 1, 3, 4)) + 0.25  # statistics over T*B*H*W
    expected = torch.tensor([1.0, 2.0, -0.5]).view(3, 1, 1, 1, 1) * folded
    torch.testing.assert_close(y, expected)


def test_tebn_gradients_and_errors():
    m = L.TemporalEffectiveBatchNorm1d(2, T=4)
    x = torch.randn(4, 5, 2, requires_grad=True)
    (m(x) * torch.randn(4, 5, 2)).sum().backward()
    assert m.p.grad is not None and m.p.grad.shape == (4,) and x.grad is not None
    with pytest.raises(ShapeError, match="T=4"):
        m(torch.randn(5, 5, 2))
    with pytest.raises(ConfigurationError):
        L.TemporalEffectiveBatchNorm2d(3, T=0)


def test_tebn_single_step_streaming_eval_equals_multi_step():
    m = L.TemporalEffectiveBatchNorm2d(2, T=3).eval()
    with torch.no_grad():
        m.p.copy_(torch.tensor([0.5, 1.5, 3.0]))
        m.bn.running_mean.fill_(0.3)
    x = torch.randn(3, 2, 2, 3, 3)
    whole = m(x)
    m.step_mode = "s"
    with streaming(m):
        stepped = torch.stack([m(s) for s in x])
    torch.testing.assert_close(stepped, whole)


@pytest.mark.parametrize("cls", [L.BatchNormThroughTime2d, L.TemporalEffectiveBatchNorm2d])
def test_per_step_norms_refuse_a_new_batch_while_streaming(cls):
    # Their carried state is a 0-dim step counter, which no shape check caught: a new
    # batch went on from the last sequence's step.
    m = cls(3, T=4, step_mode="s")
    x = torch.rand(4, 2, 3, 5, 5)
    with streaming(m):
        m(x[0])
        with pytest.raises(StateError, match=r"from steps of shape \(2, 3, 5, 5\).*\(1, 3, 5, 5\)"):
            m(x[1, :1])
        m(x[1])  # the same sequence goes on
        m.reset()
        m(x[0, :1])  # a new one after a reset


@pytest.mark.parametrize("kind", ["BatchNormThroughTime", "TemporalEffectiveBatchNorm"])
def test_per_step_norms_check_the_dims_of_one_step(kind):
    # one step of 1d: [B, C] or [B, C, L]; 2d: [B, C, H, W]; 3d: [B, C, D, H, W]
    steps = {"1d": [(3, 2), (3, 2, 4)], "2d": [(3, 2, 4, 4)], "3d": [(3, 2, 2, 2, 2)]}
    layouts = {
        "1d": r"\[T, B, C\] or \[T, B, C, L\]",
        "2d": r"\[T, B, C, H, W\]",
        "3d": r"\[T, B, C, D, H, W\]",
    }
    for dim, shapes in steps.items():
        m = getattr(L, f"{kind}{dim}")(2, T=2)
        for shape in shapes:
            assert m(torch.randn(2, *shape)).shape == (2, *shape)
        for other in steps.keys() - {dim}:
            for shape in steps[other]:
                with pytest.raises(ShapeError, match=layouts[dim]):
                    m(torch.randn(2, *shape))
