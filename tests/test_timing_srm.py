"""spikeflow.timing: the continuous-event SRM layer (ramp PSP, reset by subtraction).

Checked against SpikingJelly 2.0's ``timing_based.functional.srm`` (output events and
gradients on random float64 problems), a hand-derived single-input reference and float64
finite differences where the spike count does not change."""

from __future__ import annotations

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.timing import SRM, srm

F64 = torch.float64


def _problem(seed: int, e: int = 14, duration: float = 10.0):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(e, generator=g, dtype=F64) * duration
    idx = torch.randint(0, 5, (e,), generator=g)
    cuts = torch.sort(torch.randint(0, e + 1, (2,), generator=g)).values
    off = torch.cat((torch.tensor([0]), cuts, torch.tensor([e])))
    w = torch.randn(4, 5, generator=g, dtype=F64) * 0.15
    return t, idx, off, w, duration


def test_matches_spikingjelly():
    """Output times, output indices, offsets and the gradients of a random weighting of
    the output times w.r.t. the weights and input times equal SJ's."""
    sf = pytest.importorskip("spikingjelly.timing_based.functional", reason="no SJ 2.0")
    total = 0
    for seed in range(5):
        t, idx, off, w, dur = _problem(seed)
        results = []
        for fn in (srm, sf.srm):
            tt, ww = t.clone().requires_grad_(), w.clone().requires_grad_()
            out = fn(tt, idx, off, ww, dur, 1.0, 64)
            g = torch.randn(out[0].shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
            results.append((out, torch.autograd.grad((out[0] * g).sum(), (tt, ww))))
        (ours, our_grads), (theirs, their_grads) = results
        assert torch.equal(ours[1], theirs[1]) and torch.equal(ours[2], theirs[2])
        torch.testing.assert_close(ours[0].detach(), theirs[0], rtol=1e-12, atol=1e-12)
        for a, b in zip(our_grads, their_grads):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        total += ours[0].numel()
    assert total > 20  # multi-spike outputs were compared


def test_single_input_hand_reference():
    """One input of current 0.5 at t = 1, θ = 1: R = 0.5 (t - 1) reaches k at 1 + 2k, so
    spikes at 3, 5, 7, 9; with the window ending at 9 the crossing at its end counts.
    A second output with current -0.5 never fires; a silent trial has no events."""
    t = torch.tensor([1.0], dtype=F64)
    w = torch.tensor([[0.5], [-0.5]], dtype=F64)
    for dur in (10.0, 9.0):
        times, index, off = srm(t, torch.tensor([0]), torch.tensor([0, 0, 1]), w, dur)
        assert times.tolist() == [3.0, 5.0, 7.0, 9.0]
        assert index.tolist() == [0, 0, 0, 0] and off.tolist() == [0, 0, 4]


def test_gradcheck_finite_differences():
    """d output times / d (input times, weights) against central differences on a
    two-layer chain (the first layer's events feed the second) whose spike counts a 1e-6
    perturbation does not change (checked at ±1e-3) and where no crossing falls on an
    input event (a kink: there the derivative is one-sided)."""
    t = torch.tensor([0.31, 1.13, 2.07, 3.41, 4.02], dtype=F64)
    idx = torch.tensor([0, 1, 2, 0, 1])
    off = torch.tensor([0, 2, 5])
    w1 = torch.tensor([[0.6, 0.4, 0.2], [0.3, -0.2, 0.9]], dtype=F64)
    w2 = torch.tensor([[0.37, 0.29]], dtype=F64)

    def f(tt, a, b):
        h = srm(tt, idx, off, a, 8.0)
        return srm(*h, b, 8.0)[0]

    base = f(t, w1, w2).numel()
    assert base >= 10
    for shift in (1e-3, -1e-3):
        assert f(t + shift, w1, w2).numel() == base
    inputs = (t.clone().requires_grad_(), w1.clone().requires_grad_(), w2.clone().requires_grad_())
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


def test_module_and_errors():
    layer = SRM(5, 4, 10.0).double()
    assert layer.weight.shape == (4, 5)
    t, idx, off, w, dur = _problem(0)
    with torch.no_grad():
        layer.weight.copy_(w)
    for a, b in zip(layer(t, idx, off), srm(t, idx, off, w, dur)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ConfigurationError, match="max_spikes = 2"):
        srm(t, idx, off, w * 10, dur, max_spikes=2)
    with pytest.raises(ConfigurationError, match=r"window \[0, duration\]"):
        srm(t + dur, idx, off, w, dur)
    with pytest.raises(DTypeError, match="must match spike_times"):
        srm(t, idx, off, w.float(), dur)
    with pytest.raises(ConfigurationError, match="v_threshold"):
        SRM(5, 4, 10.0, v_threshold=-1.0)
