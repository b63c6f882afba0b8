"""examples/stdp_convnet_digits.py on a slice of the real digits: Kheradpisheh's STDP
changes layer 1 within its bounds, keeps the waves cumulative, and Mozafari's R-STDP
decision layer learns its training images well above chance (10 %)."""

from __future__ import annotations

import pytest
import torch

from conftest import load_example


@pytest.fixture(scope="module")
def example():
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    return load_example("stdp_convnet_digits")


def test_layer1_stdp_and_the_rstdp_decision_layer_learn(example):
    x_tr, y_tr, _, _ = example.load_waves(0, 15.0)  # the digits
    x, y = x_tr[:, :120], y_tr[:120]
    g = torch.Generator().manual_seed(0)
    initial = (0.8 + 0.05 * torch.randn(30, 4, 5, 5, generator=g)).clamp(0, 1)
    learned = example.train_layer1(initial, x, 15.0, 1)
    change = (learned - initial).abs().mean().item()
    assert 0.005 < change < 0.2 and learned.min() >= 0 and learned.max() <= 1, change
    pooled = example.pooled(learned, x, 15.0)
    assert pooled.shape == (15, 120, 30, 4, 4)
    assert bool((pooled[1:] >= pooled[:-1]).all())  # still cumulative waves
    acc = example.rstdp_score(pooled, y, pooled, y, seed=0, epochs=3)
    assert acc > 30.0, f"R-STDP reached only {acc:.1f} % on its own training images"
