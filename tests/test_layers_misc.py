"""VotingLayer and Delay by hand."""

from __future__ import annotations

import pytest
import torch

import spikeflow.layers as L
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.functional import streaming

# -- VotingLayer -------------------------------------------------------------------------


def test_voting_by_hand():
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(L.VotingLayer(2)(x), torch.tensor([[0.5, 1.0, 0.0]]))
    torch.testing.assert_close(L.VotingLayer(3)(x), torch.tensor([[2 / 3, 1 / 3]]))
    torch.testing.assert_close(L.VotingLayer(1)(x), x)


def test_voting_any_leading_dims():
    x = torch.randn(4, 3, 2, 20)
    y = L.VotingLayer()(x)
    assert y.shape == (4, 3, 2, 2)
    torch.testing.assert_close(y[1, 2, 0, 1], x[1, 2, 0, 10:].mean())
    torch.testing.assert_close(L.VotingLayer(5)(torch.arange(10.0)), torch.tensor([2.0, 7.0]))


def test_voting_errors():
    with pytest.raises(ShapeError, match="multiple of 10"):
        L.VotingLayer()(torch.randn(2, 3, 25))
    with pytest.raises(ShapeError):
        L.VotingLayer()(torch.tensor(1.0))
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ConfigurationError):
            L.VotingLayer(bad)


# -- Delay -------------------------------------------------------------------------------


def test_delay_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]).view(5, 1)
    torch.testing.assert_close(L.Delay(2)(x), torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0]).view(5, 1))
    torch.testing.assert_close(L.Delay(7)(x), torch.zeros(5, 1))
    assert torch.equal(L.Delay(0)(x), x)


def test_delay_multi_step_calls_are_independent():
    d = L.Delay(1)
    x = torch.randn(4, 2, 3)
    y1, y2 = d(x), d(x)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(y1[0], torch.zeros(2, 3))
    torch.testing.assert_close(y1[1:], x[:-1])
    assert d.state is None


@pytest.mark.parametrize("k", [0, 1, 3])
def test_delay_chunked_streaming_equals_one_call(k):
    d = L.Delay(k)
    x = torch.randn(9, 2, 3)
    whole = d(x)
    with streaming(d):
        # chunks shorter and longer than k
        chunks = torch.cat([d(x[:1]), d(x[1:3]), d(x[3:8]), d(x[8:])])
    torch.testing.assert_close(chunks, whole)
    d.step_mode = "s"
    with streaming(d):
        stepped = torch.stack([d(s) for s in x])
    torch.testing.assert_close(stepped, whole)


def test_delay_gradient_and_errors():
    x = torch.randn(5, 2, requires_grad=True)
    L.Delay(2)(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([1.0, 1, 1, 0, 0]).view(5, 1).expand(5, 2))
    for bad in (-1, 1.5, None):
        with pytest.raises(ConfigurationError):
            L.Delay(bad)
    d = L.Delay(1, step_mode="s")
    with pytest.raises(StateError):
        d(torch.randn(2))
    with pytest.raises(ShapeError, match="missing the time dimension"):
        L.Delay(1)(torch.randn(3))
    with streaming(d):
        d(torch.randn(2, 3))
        with pytest.raises(StateError):
            d(torch.randn(4, 3))  # another batch size without a reset
