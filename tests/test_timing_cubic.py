"""spikeflow.timing: the first-spike solver and the single-spike cubic-PSP layers
(CubicSRM, CubicConv2d).

Checked against SpikingJelly 2.0 (``timing_based.functional.cubic_srm`` /
``cubic_conv2d`` and ``timing_based.solver.first_spike_time``, which compute in float32
only: spike pattern exactly, times and gradients to float32's resolution), hand-derived
references (a single PSP's crossing in closed form, a quadratic's root and its
derivative, a grazing peak), an independent brute-force membrane reference and float64
finite differences where the spike pattern does not change."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.timing import CubicConv2d, CubicSRM, cubic_conv2d, cubic_srm, first_spike_time

F64 = torch.float64


def _problem(seed: int, batch: int = 3, inputs: int = 5, outputs: int = 4, duration=6.0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 10, (batch,), generator=g)
    counts[1] = 0 if seed % 3 == 0 else counts[1]  # an empty trial
    off = torch.cat((torch.zeros(1, dtype=torch.int64), counts.cumsum(0)))
    t = torch.rand(int(off[-1]), generator=g, dtype=F64) * duration
    idx = torch.randint(0, inputs, (int(off[-1]),), generator=g)
    w = torch.randn(outputs, inputs, generator=g, dtype=F64) * 1.2 + 0.5  # mixed signs
    return t, idx, off, w, duration


def _membrane(t: torch.Tensor, times, idx, w, support: float) -> torch.Tensor:
    """V(t) [len(t), O] of one trial as the sum of its PSPs, written from the kernel's
    definition (not from the layer's per-interval cubics)."""
    z = (t[:, None] - times[None, :]) / support
    h = torch.where((z > 0) & (z < 1), 6.75 * z * (1 - z) ** 2, 0.0)
    return h @ w[:, idx].T


def _run_both(fn_ours, fn_sj, args, t, w, seed):
    """Our float64 result and SJ's float32 one, with the gradients of a random weighting
    of the output times w.r.t. the input times and the weights."""
    results = []
    for fn, dtype in ((fn_ours, F64), (fn_sj, torch.float32)):
        tt = t.to(dtype).requires_grad_()
        ww = w.to(dtype).requires_grad_()
        out = fn(tt, args[0], args[1], ww, *args[2:])
        r = torch.randn(out[0].shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
        grads = torch.autograd.grad((out[0] * r.to(dtype)).sum(), (tt, ww))
        results.append((out, [g.double() for g in grads]))
    return results


def test_cubic_srm_matches_spikingjelly():
    sf = pytest.importorskip("spikingjelly.timing_based.functional", reason="no SJ 2.0")
    fired = silent = 0
    for seed in range(5):
        t, idx, off, w, dur = _problem(seed)
        (ours, our_grads), (theirs, their_grads) = _run_both(
            cubic_srm, sf.cubic_srm, (idx, off, dur, 2.0, 1.0), t, w, seed
        )
        assert torch.equal(ours[1], theirs[1]) and torch.equal(ours[2], theirs[2]), seed
        assert ours[0].dtype == F64
        torch.testing.assert_close(ours[0].detach(), theirs[0].double(), rtol=0, atol=5e-5)
        for a, b in zip(our_grads, their_grads):
            torch.testing.assert_close(a, b, rtol=0, atol=5e-4 * (1 + float(b.abs().max())))
        fired += ours[0].numel()
        silent += 4 * (off.numel() - 1) - ours[0].numel()
    assert fired > 25 and silent > 25
    # times on a grid of support / 4: simultaneous events, PSPs ending where
    # others start, events at 0 and at the window's end
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        t = torch.randint(0, 9, (12,), generator=g).double() / 2
        t[:2] = torch.tensor([0.0, 4.0])
        idx = torch.randint(0, 4, (12,), generator=g)
        w = torch.randn(3, 4, generator=g, dtype=F64) + 0.4
        off = torch.tensor([0, 5, 12])
        ours, theirs = (
            cubic_srm(t, idx, off, w, 4.0),
            sf.cubic_srm(t.float(), idx, off, w.float(), 4.0),
        )
        assert torch.equal(ours[1], theirs[1]) and torch.equal(ours[2], theirs[2])
        torch.testing.assert_close(ours[0], theirs[0].double(), rtol=0, atol=5e-5)
    # float32 in, float32 out: the same spikes as SJ's float32 ones
    t, idx, off, w, dur = _problem(1)
    ours = cubic_srm(t.float(), idx, off, w.float(), dur)
    theirs = sf.cubic_srm(t.float(), idx, off, w.float(), dur)
    assert ours[0].dtype == torch.float32 and torch.equal(ours[1], theirs[1])
    torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=5e-5)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (3, 2)])
def test_cubic_conv2d_matches_spikingjelly(stride, padding):
    sf = pytest.importorskip("spikingjelly.timing_based.functional", reason="no SJ 2.0")
    g = torch.Generator().manual_seed(stride)
    counts = torch.tensor([0, 23, 31])  # an empty trial; repeated positions
    off = torch.cat((torch.zeros(1, dtype=torch.int64), counts.cumsum(0)))
    t = torch.rand(int(off[-1]), generator=g, dtype=F64) * 5.0
    idx = torch.randint(0, 2 * 5 * 6, (int(off[-1]),), generator=g)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=F64) + 0.6
    args = (idx, off, (5, 6), 5.0, 2.0, 1.0, stride, padding)
    (ours, our_grads), (theirs, their_grads) = _run_both(
        cubic_conv2d, sf.cubic_conv2d, args, t, w, stride
    )
    assert torch.equal(ours[1], theirs[1]) and torch.equal(ours[2], theirs[2])
    assert ours[0].numel() > 10 and ours[2][1] == 0
    torch.testing.assert_close(ours[0].detach(), theirs[0].double(), rtol=0, atol=5e-5)
    for a, b in zip(our_grads, their_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=5e-4 * (1 + float(b.abs().max())))
    # by hand: the output of a field is the CubicSRM of that field's events
    h_out = (5 + 2 * padding - 3) // stride + 1
    w_out = (6 + 2 * padding - 3) // stride + 1
    b, y, x = 2, h_out - 1, 0
    e = torch.arange(int(off[b]), int(off[b + 1]))
    c, r, q = idx[e] // 30, idx[e] // 6 % 5 + padding, idx[e] % 6 + padding
    ky, kx = r - y * stride, q - x * stride
    inside = (ky >= 0) & (ky < 3) & (kx >= 0) & (kx < 3)
    local = (c * 9 + ky * 3 + kx)[inside]
    field = cubic_srm(t[e][inside], local, torch.tensor([0, int(inside.sum())]),
                      w.flatten(1), 5.0)  # fmt: skip
    place = y * w_out + x
    mine = ours[1][ours[2][b] :] % (h_out * w_out) == place
    assert field[1].tolist() == (ours[1][ours[2][b] :][mine] // (h_out * w_out)).tolist()
    torch.testing.assert_close(ours[0][ours[2][b] :][mine].detach(), field[0], rtol=0, atol=0)


def test_cubic_srm_equals_a_brute_force_membrane():
    """The spike is where the membrane summed from the kernel's definition first reaches
    θ: a grid finds the crossing's neighbourhood, bisection of that direct sum pins it."""
    for seed in (2,):
        t, idx, off, w, dur = _problem(seed)
        times, index, offsets = cubic_srm(t, idx, off, w, dur, 1.5, 0.8)
        for b in range(off.numel() - 1):
            e = slice(int(off[b]), int(off[b + 1]))
            grid = torch.linspace(0, dur, 30001, dtype=F64)
            v = _membrane(grid, t[e], idx[e], w, 1.5)
            for o in range(4):
                above = torch.nonzero(v[:, o] >= 0.8)
                mine = index[offsets[b] : offsets[b + 1]] == o
                assert bool(mine.any()) == bool(above.numel()), (seed, b, o)
                if not above.numel():
                    continue
                lo, hi = grid[above[0, 0] - 1].item(), grid[above[0, 0]].item()
                for _ in range(60):
                    m = (lo + hi) / 2
                    v_m = _membrane(torch.tensor([m], dtype=F64), t[e], idx[e], w, 1.5)
                    lo, hi = (lo, m) if v_m[0, o] >= 0.8 else (m, hi)
                got = times[offsets[b] : offsets[b + 1]][mine].item()
                assert abs(got - hi) < 1e-12, (seed, b, o, got, hi)


def test_single_psp_hand_reference_and_grazing():
    """One input of weight 2 at t0 = 1, support 2, θ = 1: h(u) = 1/2 on the rise at
    z = (2 - √3)/3 (the cubic z (1 - z)² = 2/27 has roots 2/3 and (2 ± √3)/3), so the
    spike is at 1 + 2 (2 - √3)/3, with dt/dw = -h / (w h') and dt/dt0 = 1. Weight 1
    peaks exactly at θ: grazing, no spike; a hair more fires at the peak's left."""
    z = (2 - math.sqrt(3)) / 3
    t = torch.tensor([1.0], dtype=F64, requires_grad=True)
    w = torch.tensor([[2.0], [1.0], [1.0 + 1e-9]], dtype=F64, requires_grad=True)
    times, index, off = cubic_srm(t, torch.tensor([0]), torch.tensor([0, 1]), w, 4.0)
    assert index.tolist() == [0, 2] and off.tolist() == [0, 2]
    assert abs(times[0].item() - (1 + 2 * z)) < 1e-14
    assert abs(times[1].item() - (1 + 2 / 3)) < 1e-3  # at the peak, a third of the support
    grad_t, grad_w = torch.autograd.grad(times[0], (t, w))
    slope = 6.75 * (1 - 4 * z + 3 * z * z) / 2  # h'(u) = 27/4 (1 - 4z + 3z²) / support
    assert abs(grad_w[0, 0].item() - (-0.5 / (2 * slope))) < 1e-12
    assert grad_w[1:].abs().max() == 0 and abs(grad_t.item() - 1) < 1e-12
    # a peak at a kink: the membrane h(t) rises to θ = h(0.5) = 243/256 at t = 0.5, where
    # a negative PSP starts and turns it down; touching θ there (within rounding) is
    # grazing, a hair above it fires just before the kink
    theta = 243 / 256
    w = torch.tensor([[1 + 4e-15, -1.0], [1 + 1e-9, -1.0]], dtype=F64)
    times, index, _ = cubic_srm(
        torch.tensor([0.0, 0.5], dtype=F64),
        torch.tensor([0, 1]),
        torch.tensor([0, 2]),
        w,
        3.0,
        v_threshold=theta,
    )
    assert index.tolist() == [1] and 0.5 - 1e-8 < times.item() < 0.5


def test_gradcheck_finite_differences():
    """Float64 finite differences of the output times w.r.t. times and weights, through
    two chained CubicSRM layers, where ±1e-3 shifts keep the spike pattern."""
    t, idx, off, w, dur = _problem(5, batch=2, inputs=3, outputs=2)
    w2 = torch.tensor([[1.1, -0.3], [0.6, 0.9]], dtype=F64)

    def f(times, w1, w2):
        hidden = cubic_srm(times, idx, off, w1, dur)
        return cubic_srm(*hidden, w2, dur, 1.5, 0.7)

    out = f(t, w, w2)
    assert out[0].numel() >= 3
    for shift in (-1e-3, 1e-3):
        moved = f(t + shift, w * (1 + shift), w2 * (1 + shift))
        assert torch.equal(moved[1], out[1]) and torch.equal(moved[2], out[2])
    inputs = tuple(x.clone().requires_grad_() for x in (t, w, w2))
    assert torch.autograd.gradcheck(lambda *a: f(*a)[0], inputs, eps=1e-6, atol=1e-7)


def test_first_spike_time_by_hand_and_against_spikingjelly():
    """F(t) = p t² - 1 on [0, 1] and [1, 2] crosses at 1/√p (if that is <= 2) with
    dt/dp = -1/(2 p^1.5); and F(t) = c - (t - 1)² - 1 (a maximum c - 1 at t = 1, flagged)
    crosses at 1 - √(c - 1), touches 0 at c = 1 (grazing: no spike; so does a peak
    within the rounding margin above 0; unflagged, the touch fires)."""

    def square(time, piece, p):
        return p * time * time - 1, 2 * p * time

    p = torch.tensor([[0.5], [2.0], [0.1], [0.25]], dtype=F64, requires_grad=True)
    bounds = torch.tensor([0.0, 1.0, 2.0], dtype=F64).expand(4, 3)
    root = first_spike_time(square, bounds, (p,))
    assert root[2] == math.inf
    want = torch.tensor([2**0.5, 0.5**0.5, math.inf, 2.0], dtype=F64)
    torch.testing.assert_close(root, want, rtol=1e-15, atol=0)  # 2.0: a crossing at the end
    (grad,) = torch.autograd.grad(root[[0, 1, 3]].sum(), p)
    torch.testing.assert_close(grad[:, 0], torch.tensor([-2**0.5, -(0.5**0.5) / 4, 0, -4.0],
                               dtype=F64), rtol=1e-12, atol=0)  # fmt: skip
    sj = pytest.importorskip("spikingjelly.timing_based.solver", reason="no SJ 2.0")
    theirs = sj.first_spike_time(square, bounds.float().contiguous(), (p.detach().float(),))
    torch.testing.assert_close(root.float(), theirs, rtol=1e-6, atol=0)

    def bump(time, piece, c):
        return c - (time - 1) ** 2 - 1, -2 * (time - 1)

    c = torch.tensor([[1.0], [1.25], [1.0 + 1e-15], [1.0 + 1e-12]], dtype=F64)
    flags = torch.tensor([[True, True], [True, False]]).expand(4, 2, 2)
    root = first_spike_time(bump, bounds, (c,), flags)
    assert root[0] == math.inf and abs(root[1].item() - 0.5) < 1e-15
    assert root[2] == math.inf  # within the rounding margin: grazing
    assert abs(root[3].item() - (1 - 1e-6)) < 1e-9  # above it: fires, at 1 - √(c - 1)
    touch = first_spike_time(bump, bounds[:1], (c[:1],))[0].item()
    assert abs(touch - 1) < 1e-7  # unflagged, the touch fires


def test_first_spike_time_errors():
    def ok(time, piece, p):
        return p * time - 1, p.expand_as(time)

    p = torch.tensor([2.0], dtype=F64)
    b = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(DTypeError, match="float32 or float64"):
        first_spike_time(ok, b.half(), (p,))
    with pytest.raises(DTypeError, match=r"parameters\[0\] is torch.float32"):
        first_spike_time(ok, b, (p.float(),))
    with pytest.raises(DTypeError, match="tuple of tensors"):
        first_spike_time(ok, b, [p])
    with pytest.raises(ShapeError, match=r"\[\.\.\., K\+1\] with K >= 1"):
        first_spike_time(ok, b[:1], (p,))
    with pytest.raises(ConfigurationError, match="non-decreasing"):
        first_spike_time(ok, b.flip(0), (p,))
    with pytest.raises(ShapeError, match=r"extrema must have shape \(1, 2\)"):
        first_spike_time(ok, b, (p,), torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ShapeError, match="residual must have the query times' shape"):
        first_spike_time(lambda t, k, p: (t[..., None], t), b, (p,))
    with pytest.raises(ConfigurationError, match="non-finite residual"):
        first_spike_time(lambda t, k, p: (t / 0, t), b, (p,))
    q = p.clone().requires_grad_()
    root = first_spike_time(ok, b, (q,))
    with pytest.raises(StateError, match="first-order"):
        torch.autograd.grad(root, q, create_graph=True)


def test_modules_and_errors():
    torch.manual_seed(0)
    layer = CubicSRM(5, 4, 6.0, support=1.5, v_threshold=0.9).double()
    assert layer.weight.shape == (4, 5) and 0.0003 < layer.weight.std() < 0.003
    t, idx, off, w, dur = _problem(3)
    with torch.no_grad():
        layer.weight.copy_(w)
    for a, b in zip(layer(t, idx, off), cubic_srm(t, idx, off, w, dur, 1.5, 0.9)):
        assert torch.equal(a, b)
    conv = CubicConv2d(2, 3, 3, 5.0, stride=2, padding=1).double()
    assert conv.weight.shape == (3, 2, 3, 3)
    ti = torch.tensor([0.5, 1.0, 1.2], dtype=F64)
    ii, oo = torch.tensor([0, 7, 31]), torch.tensor([0, 3])
    with torch.no_grad():
        conv.weight.fill_(0.7)
    got = conv(ti, ii, oo, (5, 6))
    want = cubic_conv2d(ti, ii, oo, conv.weight, (5, 6), 5.0, 2.0, 1.0, 2, 1)
    assert all(torch.equal(a, b) for a, b in zip(got, want)) and got[0].numel() > 0
    # bad input is named
    with pytest.raises(ConfigurationError, match=r"cubic_srm: support must be"):
        cubic_srm(t, idx, off, w, dur, support=0.0)
    with pytest.raises(ShapeError, match=r"weight must have shape \[O, I\]"):
        cubic_srm(t, idx, off, w[0], dur)
    with pytest.raises(DTypeError, match="must match spike_times' dtype"):
        cubic_srm(t, idx, off, w.float(), dur)
    with pytest.raises(ConfigurationError, match="window"):
        cubic_srm(t + dur, idx, off, w, dur)
    with pytest.raises(ConfigurationError, match="does not fit the input 2x6"):
        cubic_conv2d(ti, ii, oo, conv.weight, (2, 6), 5.0)
    with pytest.raises(ShapeError, match="kernel must be square"):
        cubic_conv2d(ti, ii, oo, conv.weight[..., :2], (5, 6), 5.0)
    with pytest.raises(ConfigurationError, match=r"input_indices must lie in .* \[0, 60\)"):
        cubic_conv2d(ti, ii + 40, oo, conv.weight, (5, 6), 5.0)
    with pytest.raises(ConfigurationError, match="input_size must be"):
        conv(ti, ii, oo, 30)
    # nothing in, nothing out (with a gradient path to the weights)
    empty = cubic_srm(t[:0], idx[:0], torch.tensor([0, 0]), w.requires_grad_(), dur)
    assert empty[0].numel() == 0 and empty[2].tolist() == [0, 0]
