"""spikeflow.timing: the continuous-event Tempotron, its losses and GaussianTuning.

Checked against SpikingJelly 2.0's ``spikingjelly.timing_based`` (outputs and gradients
on random float64 problems), hand-derived single-PSP references, float64 finite
differences (gradcheck, on a problem whose spike pattern small perturbations keep)."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.timing import (
    GaussianTuning,
    PSPKernel,
    Tempotron,
    tempotron,
    tempotron_classification_loss,
    tempotron_loss,
)

F64 = torch.float64
TAU, TAU_S = 15.0, 3.75


def _problem(seed: int, b: int = 3, i: int = 5, o: int = 4, e: int = 12, duration: float = 20.0):
    """Random events (some trials may be empty, connections repeat) and mixed-sign weights."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(e, generator=g, dtype=F64) * duration
    idx = torch.randint(0, i, (e,), generator=g)
    cuts = torch.sort(torch.randint(0, e + 1, (b - 1,), generator=g)).values
    off = torch.cat((torch.tensor([0]), cuts, torch.tensor([e])))
    w = torch.randn(o, i, generator=g, dtype=F64) * 0.8
    return t, idx, off, w, duration


def _sj():
    return pytest.importorskip(
        "spikingjelly.timing_based.functional", reason="SpikingJelly 2.0 is not installed"
    )


def test_outputs_and_gradients_match_spikingjelly():
    """v_max, t_peak, t_spike (inf pattern included) and the gradients of a random
    weighting of all three w.r.t. the weights and every event time equal SJ's."""
    sf = _sj()
    fired = silent = 0
    for seed in range(12):
        t, idx, off, w, dur = _problem(seed)
        gs = [torch.randn(off.numel() - 1, w.shape[0], dtype=F64) for _ in range(3)]
        results = []
        for fn in (tempotron, sf.tempotron):
            tt, ww = t.clone().requires_grad_(), w.clone().requires_grad_()
            out = fn(tt, idx, off, ww, dur, TAU, TAU_S, 1.0)
            loss = sum((torch.where(torch.isfinite(y), y, 0) * g).sum() for y, g in zip(out, gs))
            results.append((out, torch.autograd.grad(loss, (tt, ww))))
        (ours, our_grads), (theirs, their_grads) = results
        for a, b in zip(ours, theirs):
            assert torch.equal(torch.isfinite(a), torch.isfinite(b))
            torch.testing.assert_close(a.detach(), b, rtol=1e-11, atol=1e-11)
        for a, b in zip(our_grads, their_grads):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)
        fired += int(torch.isfinite(ours[2]).sum())
        silent += int(torch.isinf(ours[2]).sum())
    assert fired > 5 and silent > 5  # both branches were compared


def _finite(fn):
    def run(t, w):
        v, p, s = fn(t, w)
        return v, p, torch.where(torch.isfinite(s), s, 0)

    return run


def test_gradcheck_finite_differences():
    """All three outputs' derivatives w.r.t. weights and event times against central
    differences. Holds where a perturbation of 1e-6 changes no spike, no event order and
    no peak branch: checked here, the spike pattern (2 of 4 fire) is the same at t ± 1e-3."""
    t = torch.tensor([1.0, 2.5, 4.0, 6.5, 9.0, 12.0], dtype=F64)
    idx = torch.tensor([0, 1, 2, 0, 3, 1])
    off = torch.tensor([0, 6])
    w = torch.tensor(
        [
            [1.2, 0.8, -0.3, 0.5],  # fires at 3.2 (interior peak after it)
            [0.3, 0.2, 0.1, -0.2],  # silent, peak at the kink of the negative event at 9
            [0.6, 0.5, 0.1, -0.9],  # fires at 5.5, before the negative event
            [0.15, 0.15, 0.15, 0.15],  # silent, interior peak
        ],
        dtype=F64,
    )

    def f(tt, ww):
        return tempotron(tt, idx, off, ww, 20.0, TAU, TAU_S, 1.0)

    base = torch.isfinite(f(t, w)[2])
    for shift in (1e-3, -1e-3):
        assert torch.equal(torch.isfinite(f(t + shift, w)[2]), base)
    assert 0 < int(base.sum()) < 4
    assert torch.autograd.gradcheck(
        _finite(f), (t.clone().requires_grad_(), w.clone().requires_grad_()), eps=1e-6, atol=1e-7
    )


def test_single_psp_hand_reference_and_shunting():
    """One event of weight 2 at t0: V = 2 K(t - t0) crosses 1 where K = 1/2 (rising),
    peaks at t0 + τ τs ln(τ/τs)/(τ - τs) with v_max = 2. A later strong event arrives
    after the spike and is shunted (v_max stays 2); without the spike it would add."""
    k = PSPKernel(TAU, TAU_S)
    s_peak = TAU * TAU_S * math.log(TAU / TAU_S) / (TAU - TAU_S)
    t0 = 1.5
    t = torch.tensor([t0, 15.0], dtype=F64)
    idx = torch.tensor([0, 1])
    w = torch.tensor([[2.0, 5.0], [0.5, 0.0]], dtype=F64)  # output 1 stays below 1
    v, p, s = tempotron(t, idx, torch.tensor([0, 2]), w, 40.0, TAU, TAU_S, 1.0)
    assert v[0, 0].item() == pytest.approx(2.0, rel=1e-12)
    assert p[0, 0].item() == pytest.approx(t0 + s_peak, rel=1e-12)
    delay = s[0, 0] - t0
    assert 0 < delay.item() < s_peak
    assert (2 * k.value(delay)).item() == pytest.approx(1.0, abs=1e-12)
    assert v[0, 1].item() == pytest.approx(0.5, rel=1e-12) and math.isinf(s[0, 1].item())
    # No spike (threshold 8 > 2 + 5): the second PSP adds; the maximum is above 5.
    v3, _, s3 = tempotron(t, idx, torch.tensor([0, 2]), w, 40.0, TAU, TAU_S, 8.0)
    assert v3[0, 0].item() > 5.0 and math.isinf(s3[0, 0].item())


def test_module_and_empty_trials():
    """Tempotron owns [O, I] weights (std 1e-3 init) and equals the functional form; an
    empty trial gives (0, 0, inf)."""
    layer = Tempotron(6, 3, 10.0).double()
    assert layer.weight.shape == (3, 6) and 5e-4 < float(layer.weight.detach().std()) < 2e-3
    with torch.no_grad():
        layer.weight.normal_(0.0, 1.0)
    t = torch.tensor([0.5, 2.0, 3.0], dtype=F64)
    idx = torch.tensor([0, 5, 2])
    off = torch.tensor([0, 0, 3])
    out = layer(t, idx, off)
    ref = tempotron(t, idx, off, layer.weight, 10.0)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b)
    assert out[0][0].tolist() == [0.0] * 3 and out[1][0].tolist() == [0.0] * 3
    assert torch.isinf(out[2][0]).all()


def test_tempotron_loss_is_the_tempotron_rule():
    """Loss = Σ over wrong outputs |θ - v_max| / (B θ); a silent target output gets the
    weight gradient -Σ K(t_max - t_i) / (B θ) (the Tempotron's potentiation)."""
    k = PSPKernel(TAU, TAU_S)
    t = torch.tensor([1.0, 3.0], dtype=F64)
    idx = torch.tensor([0, 1])
    w = torch.tensor([[0.3, 0.4], [1.5, 1.0], [0.1, 0.1]], dtype=F64, requires_grad=True)
    theta = 2.0
    v, p, s = tempotron(t, idx, torch.tensor([0, 2]), w, 30.0, TAU, TAU_S, theta)
    assert torch.isinf(s[0, 0]) and torch.isfinite(s[0, 1]) and torch.isinf(s[0, 2])
    loss = tempotron_loss(v, s, torch.tensor([0]), theta)  # output 0 should fire
    expected = ((theta - v[0, 0]) + (v[0, 1] - theta)) / theta
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    loss.backward()
    psp = k.value(p[0, 0].detach() - t)
    torch.testing.assert_close(w.grad[0], -psp / theta)
    assert w.grad[2].abs().max().item() == 0.0  # silent and should be: no error
    bool_loss = tempotron_loss(v, s, torch.tensor([[True, False, False]]), theta)
    assert bool_loss.item() == pytest.approx(loss.item(), rel=1e-15)


def test_classification_loss_adds_cross_entropy():
    v = torch.tensor([[0.5, 1.5, 0.2], [1.2, 0.1, 0.9]], dtype=F64)
    s = torch.tensor([[math.inf, 3.0, math.inf], [2.0, math.inf, math.inf]], dtype=F64)
    y = torch.tensor([1, 2])
    firing = tempotron_loss(v, s, y, 1.0)
    assert firing.item() == pytest.approx(((1.2 - 1.0) + (1.0 - 0.9)) / 2)
    ce = torch.nn.functional.cross_entropy(5 * v, y)
    got = tempotron_classification_loss(v, s, y, 1.0)
    assert got.item() == pytest.approx((ce + firing).item(), rel=1e-14)


def test_gaussian_tuning_matches_spikingjelly():
    """Events (times, indices, offsets) and d times / d x equal SJ's GaussianTuning,
    including a far-out value whose fields all underflow (no events)."""
    se = pytest.importorskip("spikingjelly.timing_based.encoding", reason="no SpikingJelly 2.0")
    lo, hi = torch.tensor([0.0, -1.0], dtype=F64), torch.tensor([1.0, 2.0], dtype=F64)
    ours, theirs = GaussianTuning(2, 5, lo, hi), se.GaussianTuning(2, 5, lo, hi)
    torch.testing.assert_close(ours.mu, theirs.mu, rtol=1e-15, atol=1e-15)
    x = (torch.rand(3, 2, 4, dtype=F64) * 4 - 1.5).detach()
    x[0, 0, 0] = 100.0
    x.requires_grad_()
    a, b = ours(x, 30.0), theirs(x, 30.0)
    assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    torch.testing.assert_close(a[0], b[0], rtol=1e-14, atol=1e-13)
    ga = torch.autograd.grad(a[0].sum(), x)[0]
    gb = torch.autograd.grad(b[0].sum(), x)[0]
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-12)
    assert int(a[2][1] - a[2][0]) < 2 * 4 * 5  # the far-out value's fields are dropped


def test_clear_errors():
    t, idx, off, w, dur = _problem(0)
    with pytest.raises(ConfigurationError, match=r"window \[0, duration\]"):
        tempotron(t + 15.0, idx, off, w, dur)
    with pytest.raises(ConfigurationError, match=r"window"):
        tempotron(t - 25.0, idx, off, w, dur)
    with pytest.raises(ConfigurationError, match="tau and tau_s must differ"):
        tempotron(t, idx, off, w, dur, 4.0, 4.0)
    with pytest.raises(ConfigurationError, match="input_indices must lie in"):
        tempotron(t, idx, off, w[:, :2], dur)
    with pytest.raises(ShapeError, match=r"weight must have shape \[O, I\]"):
        tempotron(t, idx, off, w[0], dur)
    with pytest.raises(ShapeError, match="batch_offsets must start at 0 and end at E"):
        tempotron(t, idx, off[:-1], w, dur)
    with pytest.raises(ShapeError, match="non-decreasing"):
        tempotron(t, idx, torch.tensor([0, 9, 3, 12]), w, dur)
    with pytest.raises(ShapeError, match=r"shape \[E\]"):
        tempotron(t, idx[:-1], off, w, dur)
    with pytest.raises(DTypeError, match="must match spike_times"):
        tempotron(t, idx, off, w.float(), dur)
    with pytest.raises(DTypeError, match="int64"):
        tempotron(t, idx.int(), off, w, dur)
    with pytest.raises(ConfigurationError, match="finite"):
        tempotron(torch.full_like(t, math.nan), idx, off, w, dur)
    with pytest.raises(ConfigurationError, match="v_threshold"):
        Tempotron(3, 2, 10.0, v_threshold=0.0)
    with pytest.raises(ShapeError, match=r"class labels \[B\]"):
        tempotron_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), 1.0)
    with pytest.raises(DTypeError, match="int64 class labels"):
        tempotron_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), 1.0)
    with pytest.raises(DTypeError, match="labels must be int64"):
        tempotron_classification_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), 1.0)
    empty = torch.zeros(0, 3)
    assert tempotron_loss(empty, empty, torch.zeros(0, dtype=torch.long), 1.0).item() == 0.0
    with pytest.raises(ConfigurationError, match="m must be"):
        GaussianTuning(2, 2, 0.0, 1.0)
    with pytest.raises(ConfigurationError, match="x_min must be < x_max"):
        GaussianTuning(1, 4, 1.0, 1.0)
    with pytest.raises(ShapeError, match=r"\[B, n, S\]"):
        GaussianTuning(2, 4, 0.0, 1.0)(torch.zeros(3, 4))
