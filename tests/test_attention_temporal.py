"""Temporal-wise (TA-SNN) and multi-dimensional (MA-SNN) attention: against loops written
from the papers' equations, gradcheck, SpikingJelly 2.0's layers, and the errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.functional import set_step_mode, streaming
from spikeflow.layers import MultiDimensionalAttention, TemporalWiseAttention

F64 = dict(rtol=1e-10, atol=1e-12)
MA_PARTS = [p for p in itertools.product([True, False], repeat=3) if any(p)]


@pytest.fixture(scope="module")
def sj():
    """SpikingJelly's layer module (the tests using it skip without it)."""
    return pytest.importorskip(
        "spikingjelly.activation_based.layer", reason="SpikingJelly is not installed"
    )


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))


def _mlp(w1: torch.Tensor, w2: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """W₂ ReLU(W₁ z) for one vector z (weights of any trailing 1x1x1 shape)."""
    return w2.flatten(1) @ torch.relu(w1.flatten(1) @ z)


def _axis_scores(w1, w2, x: torch.Tensor) -> torch.Tensor:
    """σ(MLP(mean) + MLP(max)) with x [n, R] (mean and max per row, loops)."""
    means = torch.stack([row.mean() for row in x])
    maxes = torch.stack([row.max() for row in x])
    return torch.sigmoid(_mlp(w1, w2, means) + _mlp(w1, w2, maxes))


def _ta_by_hand(ta: TemporalWiseAttention, x: torch.Tensor) -> torch.Tensor:
    w1, w2 = ta.sharedMLP[0].weight, ta.sharedMLP[2].weight
    out = torch.empty_like(x)
    for b in range(x.shape[1]):
        s = _axis_scores(w1, w2, torch.stack([x[t, b].flatten() for t in range(x.shape[0])]))
        for t in range(x.shape[0]):
            out[t, b] = s[t] * x[t, b]
    return out


def _ma_by_hand(ma: MultiDimensionalAttention, x: torch.Tensor) -> torch.Tensor:
    steps, batch, channels, height, width = x.shape
    out = x.clone()
    for b in range(batch):
        y = out[:, b]  # [T, C, H, W]
        if ma.ta is not None:
            w1, w2 = ma.ta.sharedMLP[0].weight, ma.ta.sharedMLP[2].weight
            s = _axis_scores(w1, w2, torch.stack([y[t].flatten() for t in range(steps)]))
            y = torch.stack([s[t] * y[t] for t in range(steps)])
        if ma.ca is not None:
            w1, w2 = ma.ca.sharedMLP[0].weight, ma.ca.sharedMLP[2].weight
            s = _axis_scores(w1, w2, torch.stack([y[:, c].flatten() for c in range(channels)]))
            y = torch.stack([s[c] * y[:, c] for c in range(channels)], dim=1)
        if ma.sa is not None:
            stacked = y.reshape(steps * channels, height, width)
            maps = torch.stack([stacked.mean(0), stacked.max(0).values])  # [2, H, W]
            weight = ma.sa.conv.weight[0]  # [2, k, k]
            k = weight.shape[-1]
            padded = torch.nn.functional.pad(maps, (k // 2,) * 4)
            score = torch.empty(height, width, dtype=x.dtype)
            for i in range(height):
                for j in range(width):
                    score[i, j] = (padded[:, i : i + k, j : j + k] * weight).sum()
            y = y * torch.sigmoid(score)
        out[:, b] = torch.relu(y)
    return out


@pytest.mark.parametrize("shape", [(8, 3, 4, 5, 5), (8, 3, 7), (8, 2, 3, 6)])
def test_ta_equals_the_formula_by_hand(shape):
    ta = TemporalWiseAttention(8, reduction=2, dimension=len(shape) - 1).double()
    _randomise(ta, 1)
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(ta(x), _ta_by_hand(ta, x), **F64)
    scores = ta.scores(x)
    assert scores.shape == (shape[1], 8) and scores.std() > 0.05  # the scores vary


@pytest.mark.parametrize("parts", MA_PARTS)
def test_ma_equals_the_formula_by_hand(parts):
    ma = MultiDimensionalAttention(6, 8, 3, 2, 3, *parts).double()
    _randomise(ma, 2)
    x = torch.randn(6, 2, 8, 5, 7, dtype=torch.float64)
    out = ma(x)
    torch.testing.assert_close(out, _ma_by_hand(ma, x), **F64)
    assert (out >= 0).all() and (out > 0).float().mean() > 0.2


def test_ma_spatial_kernel_sizes_beyond_spikingjellys():
    """SpikingJelly takes kernel sizes 3 and 7; any odd size keeps H x W."""
    ma = MultiDimensionalAttention(4, 4, 2, 2, kernel_size=5, use_temporal=False).double()
    _randomise(ma, 3)
    x = torch.randn(4, 2, 4, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(ma(x), _ma_by_hand(ma, x), **F64)
    assert ma.sa.conv.weight.shape == (1, 2, 5, 5)


def test_gradcheck_in_float64():
    ta = TemporalWiseAttention(6, reduction=2, dimension=3).double()
    ma = MultiDimensionalAttention(5, 4, 2, 2).double()
    _randomise(ta, 4)
    _randomise(ma, 5)
    x3 = torch.randn(6, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    x5 = torch.randn(5, 2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ta, (x3,))
    assert torch.autograd.gradcheck(ma, (x5,))
    weights = tuple(ta.parameters())
    assert torch.autograd.gradcheck(
        lambda *w: torch.func.functional_call(ta, dict(zip(("sharedMLP.0.weight",
                   "sharedMLP.2.weight"), w, strict=True)), (x3.detach(),)), weights)  # fmt: skip
    names = [n for n, _ in ma.named_parameters()]
    assert torch.autograd.gradcheck(
        lambda *w: torch.func.functional_call(ma, dict(zip(names, w, strict=True)),
                                              (x5.detach(),)), tuple(ma.parameters()))  # fmt: skip


def _same_as_peer(peer, ours, x, peer_x=None):
    """Outputs and the gradients of the input and of every parameter (by name) equal."""
    ours.load_state_dict(peer.state_dict())
    x1 = (x if peer_x is None else peer_x).clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    y1, y2 = peer(x1), ours(x2)
    torch.testing.assert_close(y2, y1, **F64)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    theirs = dict(peer.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, **F64, msg=name)
    assert x2.grad.abs().sum() > 0 and all(p.grad.abs().sum() > 0 for p in ours.parameters())


@pytest.mark.parametrize("spikes", [False, True])
@pytest.mark.parametrize(("dimension", "shape"), [(4, (16, 3, 4, 5, 5)), (2, (16, 3, 7))])
def test_ta_equals_spikingjelly(sj, dimension, shape, spikes):
    """Outputs and gradients, also on spikes, whose maxima tie: the gradient goes to the
    first of the tied values, as SpikingJelly's adaptive max pooling sends it."""
    peer = sj.TemporalWiseAttention(16, 4, dimension).double()
    ours = TemporalWiseAttention(16, 4, dimension).double()
    assert ours.state_dict().keys() == peer.state_dict().keys()
    x = torch.randn(*shape, dtype=torch.float64)
    _same_as_peer(peer, ours, (x > 0.3).double() if spikes else x)
    peer.load_state_dict(ours.state_dict())  # and back: the same keys and shapes


@pytest.mark.parametrize("kernel_size", [3, 7])
@pytest.mark.parametrize("parts", MA_PARTS)
def test_ma_equals_spikingjelly(sj, parts, kernel_size):
    peer = sj.MultiDimensionalAttention(16, 8, 4, 2, kernel_size, *parts).double()
    ours = MultiDimensionalAttention(16, 8, 4, 2, kernel_size, *parts).double()
    assert ours.state_dict().keys() == peer.state_dict().keys()
    x = (torch.rand(16, 2, 8, 6, 7, dtype=torch.float64) < 0.3).double() * 2 - 0.5
    _same_as_peer(peer, ours, x)
    x = torch.randn(16, 2, 8, 6, 7, dtype=torch.float64)
    _same_as_peer(peer, ours, x)


def test_where_spikingjelly_refuses_these_work(sj):
    """Generalisations: TA on one-step layouts of 3 dims, MA with a 5x5 spatial kernel."""
    with pytest.raises(AssertionError):
        sj.MultiDimensionalAttention(16, 16, kernel_size=5)
    with pytest.raises(AssertionError):  # SpikingJelly takes [T, B, L] or [T, B, C, H, W]
        sj.TemporalWiseAttention(16, 4, 4)(torch.rand(16, 2, 3, 5))
    x = torch.rand(16, 2, 3, 5, dtype=torch.float64)
    ta = TemporalWiseAttention(16, 4, dimension=3).double()
    torch.testing.assert_close(ta(x), _ta_by_hand(ta, x), **F64)
    ma = MultiDimensionalAttention(16, 16, kernel_size=5)
    assert ma(torch.rand(16, 2, 16, 4, 4)).shape == (16, 2, 16, 4, 4)


@pytest.mark.parametrize("layer", ["ta", "ma"])
def test_only_multi_step_and_no_streaming(layer):
    """A step's score depends on the whole sequence: single-step mode and streaming are
    refused by name; the output at an early step changes when a later step does."""
    module = TemporalWiseAttention(8, 2) if layer == "ta" else MultiDimensionalAttention(8, 4, 2, 2)
    net = torch.nn.Sequential(module)
    with pytest.raises(ConfigurationError, match="only runs in multi-step mode"):
        set_step_mode(net, "s")
    assert module.step_mode == "m"
    with pytest.raises(StateError, match="runs whole sequences only"):
        with streaming(net):
            pass
    x = torch.rand(8, 2, 4, 5, 5)
    changed = x.clone()
    changed[-1] *= 3
    assert not torch.allclose(module(x)[0], module(changed)[0])


def test_ma_parts_turned_off_hold_none_and_no_parameters():
    ma = MultiDimensionalAttention(4, 8, 2, 2, use_temporal=False, use_spatial=False)
    assert ma.ta is None and ma.sa is None
    assert set(ma.state_dict()) == {"ca.sharedMLP.0.weight", "ca.sharedMLP.2.weight"}
    assert ma(torch.rand(9, 2, 8, 3, 3)).shape == (9, 2, 8, 3, 3)  # T unchecked without TA
    assert "uses=channel" in repr(ma)


def test_bad_arguments_are_named():
    with pytest.raises(ConfigurationError, match=r"reduction \(16\) must be at most T \(8\)"):
        TemporalWiseAttention(8)
    with pytest.raises(ConfigurationError, match="dimension must be an integer >= 2"):
        TemporalWiseAttention(8, 2, dimension=1)
    with pytest.raises(ConfigurationError, match="T must be an integer >= 1"):
        TemporalWiseAttention(0, 1)
    with pytest.raises(ConfigurationError, match=r"reduction_c \(16\) must be at most C \(8\)"):
        MultiDimensionalAttention(16, 8)
    with pytest.raises(ConfigurationError, match="kernel_size must be odd"):
        MultiDimensionalAttention(4, 4, 2, 2, kernel_size=4)
    with pytest.raises(ConfigurationError, match="at least one of use_temporal"):
        MultiDimensionalAttention(4, 4, 2, 2, 3, False, False, False)
    with pytest.raises(ConfigurationError, match="use_channel must be True or False"):
        MultiDimensionalAttention(4, 4, 2, 2, use_channel="no")
    MultiDimensionalAttention(16, 2, reduction_c=16, use_channel=False)  # unchecked when off


def test_bad_inputs_are_named():
    ta = TemporalWiseAttention(8, 2)
    with pytest.raises(ShapeError, match=r"T \(steps\) = 8, but the input has 6"):
        ta(torch.rand(6, 2, 3, 4, 4))
    with pytest.raises(
        ShapeError,
        match=r"expects a whole sequence \[T, B, C, H, W\] \(5 dims\).*missing the time dim",
    ):
        ta(torch.rand(2, 3, 4, 4))
    with pytest.raises(ShapeError, match=r"expects a whole sequence \[T, B, L\]"):
        TemporalWiseAttention(8, 2, dimension=2)(torch.rand(8, 2, 3, 4))
    with pytest.raises(DTypeError, match="floating-point input"):
        ta(torch.ones(8, 2, 3, 4, 4, dtype=torch.long))
    ma = MultiDimensionalAttention(8, 4, 2, 2)
    with pytest.raises(ShapeError, match=r"C \(channels\) = 4, but the input has 3"):
        ma(torch.rand(8, 2, 3, 5, 5))
    with pytest.raises(ShapeError, match=r"expects a whole sequence \[T, B, C, H, W\]"):
        ma(torch.rand(8, 2, 4, 25))
