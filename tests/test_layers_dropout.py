"""Dropout with one mask per sequence, shared by all time steps."""

from __future__ import annotations

import math

import pytest
import torch

import spikeflow.layers as L
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.functional import reset_net as reset
from spikeflow.functional import streaming


def test_mask_shared_across_time_and_scaled():
    m = L.Dropout(0.25)
    x = torch.ones(6, 4, 500)
    y = m(x)
    for t in range(6):
        assert torch.equal(y[t], y[0])
    torch.testing.assert_close(y.unique(), torch.tensor([0.0, 1 / 0.75]))
    dropped = (y[0] == 0).float().mean().item()
    assert abs(dropped - 0.25) < 0.05
    assert not torch.equal(y[0, 0], y[0, 1])  # different samples, different masks


def test_new_mask_each_multi_step_call():
    m = L.Dropout(0.5)
    x = torch.ones(2, 3, 200)
    assert not torch.equal(m(x), m(x))


def test_gradient_is_the_mask():
    m = L.Dropout(0.5)
    x = torch.randn(4, 3, 50, requires_grad=True)
    y = m(x)
    y.sum().backward()
    mask = y.detach() / x.detach()
    torch.testing.assert_close(x.grad, mask)


def test_eval_is_identity_and_p_zero_is_identity():
    m = L.Dropout2d(0.5).eval()
    x = torch.randn(3, 2, 4, 5, 5)
    assert torch.equal(m(x), x)
    x1 = torch.randn(3, 2, 7)
    assert torch.equal(L.Dropout(0.0)(x1), x1)


def test_dropout2d_zeroes_whole_channels_for_the_whole_sequence():
    m = L.Dropout2d(0.5)
    x = torch.ones(5, 4, 16, 3, 3)
    y = m(x)
    per_channel = y.permute(1, 2, 0, 3, 4).flatten(2)  # [B, C, T*H*W]
    first = per_channel[..., :1]
    assert torch.equal(per_channel, first.expand_as(per_channel))  # constant over T, H, W
    assert set(first.unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(first[0], first[1])
    with pytest.raises(ShapeError, match=r"\[T, B, C, H, W\]"):
        m(torch.ones(4, 16, 3, 3))


def test_single_step_streaming_keeps_mask_until_reset():
    m = L.Dropout(0.5, step_mode="s")
    x = torch.ones(3, 100)
    with pytest.raises(StateError):
        m(x)
    with streaming(m):
        ys = [m(x) for _ in range(4)]
        for y in ys[1:]:
            assert torch.equal(y, ys[0])
        reset(m)
        assert not torch.equal(m(x), ys[0])


def test_chunked_streaming_uses_one_mask():
    m = L.Dropout2d(0.5)
    x = torch.ones(6, 2, 8, 2, 2)
    with streaming(m):
        y = torch.cat([m(x[:2]), m(x[2:])])
    for t in range(6):
        assert torch.equal(y[t], y[0])


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, math.nan, True, "0.5"])
def test_bad_p_raises(p):
    with pytest.raises(ConfigurationError):
        L.Dropout(p)
    with pytest.raises(ConfigurationError):
        L.Dropout2d(p)


def test_defaults_and_repr():
    assert L.Dropout().p == 0.5 and L.Dropout2d().p == 0.2
    assert "p=0.2" in repr(L.Dropout2d())
