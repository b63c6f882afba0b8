"""Convolutional winner-take-all: against the rule written as a loop over positions,
with STDP on a convolution, and its errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.learn import ConvWinnerTakeAll, STDPLearner, stdp_update


def _by_loop(x: torch.Tensor, wta: ConvWinnerTakeAll, train: bool):
    """Per step, sample and position: leak; the k maps with the largest excesses above
    threshold are candidates; with a radius r, a position fires only if its best excess
    is the largest among the firing candidates within r (Chebyshev distance, clipped at
    the border); every map within r of a fired position is reset; thresholds per map."""
    steps, batch, c, h, w = x.shape
    r = wta.inhibition_radius
    v = torch.zeros(batch, c, h, w, dtype=x.dtype)
    theta = wta.theta.clone().to(x.dtype)
    out = torch.zeros_like(x)
    for t in range(steps):
        now = torch.zeros(batch, c, h, w, dtype=x.dtype)
        for b in range(batch):
            v[b] = v[b] + (x[t, b] - v[b]) / wta.tau
            best, chosen = {}, {}
            for i in range(h):
                for j in range(w):
                    excess = [float(v[b, m, i, j] - wta.v_threshold - theta[m]) for m in range(c)]
                    order = sorted(range(c), key=lambda m: -excess[m])[: wta.k]
                    chosen[i, j] = [m for m in order if excess[m] > 0]
                    best[i, j] = excess[order[0]] if chosen[i, j] else None

            def near(i, j):
                return [(p, q) for p in range(max(0, i - r), min(h, i + r + 1))
                        for q in range(max(0, j - r), min(w, j + r + 1))]  # fmt: skip

            fired = []
            for (i, j), maps in chosen.items():
                rivals = [best[p, q] for p, q in near(i, j) if best[p, q] is not None]
                if maps and best[i, j] >= max(rivals):
                    fired.append((i, j))
                    for m in maps:
                        now[b, m, i, j] = 1.0
            for i, j in fired:
                for p, q in near(i, j):
                    v[b, :, p, q] = 0.0
        out[t] = now
        if train:
            theta = theta * wta.theta_decay + wta.theta_plus * now.sum(dim=(0, 2, 3))
    return out, theta


@pytest.mark.parametrize(("k", "radius", "train"), [(1, 0, False), (2, 0, True),
                                                     (1, 1, True), (2, 2, False)])  # fmt: skip
def test_equal_to_the_rule_by_loop_over_positions(k, radius, train):
    torch.manual_seed(k + 3 * radius)
    wta = ConvWinnerTakeAll(4, tau=2.0, v_threshold=0.6, k=k, inhibition_radius=radius,
                            theta_plus=0.05, theta_decay=0.9).double()  # fmt: skip
    with torch.no_grad():
        wta.theta.copy_(torch.tensor([0.0, 0.1, 0.05, 0.2]))
    wta.train(train)
    x = torch.rand(6, 2, 4, 5, 6, dtype=torch.float64) * 2.0
    expected, theta = _by_loop(x, wta, train)
    got = wta(x)
    assert 0 < expected.mean() < 0.5  # they fire, and compete
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(wta.theta.double(), theta)
    # the constraint itself: at most k maps per position and step
    assert got.sum(dim=2).max() <= k
    if radius:  # and no two firing positions within r of each other unless tied
        fired = got.amax(dim=2)
        pooled = torch.nn.functional.max_pool2d(fired.flatten(0, 1)[:, None], 2 * radius + 1,
                                                stride=1, padding=radius)  # fmt: skip
        assert (pooled.sum() > 0) and fired.sum() < (fired.numel() / (radius + 1) ** 2)


def test_conv_stdp_learns_through_the_layer():
    torch.manual_seed(2)
    conv = layers.Conv2d(2, 6, 3, padding=1, bias=False)
    wta = ConvWinnerTakeAll(6, tau=2.0, v_threshold=0.3, k=1, inhibition_radius=1)
    net = nn.Sequential(conv, wta)
    learner = STDPLearner(conv, wta, tau_pre=2.0, tau_post=2.0)
    x = (torch.rand(8, 3, 2, 10, 10) < 0.3).float()
    with torch.no_grad():
        post = net(x)
    assert post.sum() > 0
    got = learner.step(on_grad=False)
    expected, _ = stdp_update(conv, x, post, 2.0, 2.0)
    torch.testing.assert_close(got, expected)


def test_errors_and_repr():
    wta = ConvWinnerTakeAll(3, inhibition_radius=1)
    with pytest.raises(ShapeError, match=r"\[T, B, C, H, W\] or \[T, B, C, L\] with C = 3"):
        wta(torch.zeros(2, 1, 4, 5, 5))
    with pytest.raises(ShapeError, match="got"):
        wta(torch.zeros(2, 3, 5, 5))
    with pytest.raises(DTypeError, match="floating point"):
        wta(torch.zeros(2, 1, 3, 5, 5, dtype=torch.int64))
    with pytest.raises(ConfigurationError, match="inhibition_radius"):
        ConvWinnerTakeAll(3, inhibition_radius=-1)
    with pytest.raises(ConfigurationError, match=r"ConvWinnerTakeAll: k \(4\) must not exceed "
                       r"channels \(3\)"):  # fmt: skip
        ConvWinnerTakeAll(3, k=4)
    with pytest.raises(ConfigurationError, match="ConvWinnerTakeAll: channels must be"):
        ConvWinnerTakeAll(0)
    with pytest.raises(ConfigurationError, match="ConvWinnerTakeAll: theta_decay"):
        ConvWinnerTakeAll(3, theta_decay=1.5)
    for empty in ((2, 1, 3, 0, 5), (2, 1, 3, 5, 0)):  # an empty map, not max_pool2d's error
        with pytest.raises(ShapeError, match=r"T, H, W \(L\) >= 1"):
            wta(torch.zeros(empty))
    with pytest.raises(ShapeError, match=r"got \(1, 3, 5, 5, 5, 5\)"):
        wta(torch.zeros(1, 3, 5, 5, 5, 5))
    wta.step_mode = "s"
    with pytest.raises(ShapeError, match=r"step_mode 's'\): expects one step \[B, C, H, W\]"):
        wta(torch.zeros(2, 1, 3, 5, 5))
    assert "inhibition_radius=1" in repr(wta)


@pytest.mark.parametrize("shape", [(3, 2, 3, 1, 7), (3, 1, 3, 2, 2)])
def test_a_radius_beyond_the_map_is_one_winner_per_map(shape):
    # every position within r of every other: at most one position fires per step
    # (bar exact ties) and its spike resets the whole map
    torch.manual_seed(9)
    wta = ConvWinnerTakeAll(3, tau=1.0, v_threshold=0.2, inhibition_radius=9).double()
    x = torch.rand(shape, dtype=torch.float64) + 0.3
    out = wta(x)
    assert (out.flatten(2).sum(-1) == 1).all()  # each step and sample: one spike
    expected, _ = _by_loop(x, wta, train=False)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_the_nmnist_example_learns_on_real_recordings():
    import argparse

    from conftest import load_example, require_shared_data
    from spikeflow.data import NMNIST

    root = require_shared_data("nmnist-small")
    example = load_example("conv_stdp_nmnist")
    data = NMNIST(root, train=False, data_type="frame", frames_number=10, split_by="number")
    x = (torch.stack([data[i][0] for i in range(40)], 1) > 0).float()  # [10, 40, 2, 34, 34]
    x = torch.nn.functional.max_pool2d(x.flatten(0, 1), 2).unflatten(0, (10, 40))
    conv, wta = example.build(0, 6.0, 0, 5e-4)
    start = conv.weight.detach().clone()
    args = argparse.Namespace(lr=3e-3, seed=0, batch=10)
    example.train(conv, wta, x, args)
    moved = (conv.weight - start).abs()
    assert moved.mean() > 1e-3 and 0 <= conv.weight.min() and conv.weight.max() <= 1
    assert float(wta.theta.sum()) > 0  # the maps fired and adapted
    features = example.features(conv, wta, x)
    assert features.shape == (40, 256) and features.sum() > 0
    # the frozen control adapts its thresholds as the learned layer would with lr = 0:
    # the same batches in the same order
    still, control = example.build(0, 6.0, 0, 5e-4), example.build(0, 6.0, 0, 5e-4)
    example.train(*still, x, argparse.Namespace(lr=0.0, seed=1, batch=10))
    example.frozen_pass(*control, x, argparse.Namespace(lr=3e-3, seed=1, batch=10))
    torch.testing.assert_close(control[1].theta, still[1].theta, rtol=0, atol=0)
    assert float(still[1].theta.sum()) > 0
