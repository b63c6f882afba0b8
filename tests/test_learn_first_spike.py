"""One-spike-per-neuron convolutional STDP (Kheradpisheh et al. 2018) and R-STDP
(Mozafari et al. 2019), and the spike-wave input stage.

SpykeTorch is not installed: the ``ref_*`` functions below are our own transcriptions
of the few SpykeTorch functions these mirror (``utils.DoGKernel``, ``utils.Filter``,
``functional.local_normalization``, ``utils.Intensity2Latency``, ``functional.fire``,
``functional.pointwise_inhibition``, ``functional.get_k_winners``, ``snn.STDP``),
written from reading its code: one image at a time, time as the batch dimension
``[T, C, H, W]``, Python loops where SpykeTorch loops. The rules are also checked
against loops written from the papers' formulas in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeflow.encoding import DoGFilter, dog_kernel, intensity_to_latency, local_normalization
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.learn import (
    adaptive_rstdp_rates,
    decide,
    fire_once,
    first_spike_stdp,
    k_winners,
    kheradpisheh_rates,
    pointwise_inhibition,
    reward_stdp,
)

# ---- transcribed SpykeTorch references (one image; time is dim 0) ----


def ref_dog(size, s1, s2):
    w = size // 2
    x, y = np.mgrid[-w : w + 1, -w : w + 1]
    d2 = x * x + y * y
    g1 = np.exp(-0.5 * d2 / (s1 * s1)) / (s1 * s1)
    g2 = np.exp(-0.5 * d2 / (s2 * s2)) / (s2 * s2)
    dog = (g1 - g2) / (2 * math.pi)
    dog = dog - dog.mean()
    return torch.from_numpy(dog / dog.max())


def ref_local_norm(x, r):  # x [1, C, H, W]
    kernel = torch.ones(1, 1, 2 * r + 1, 2 * r + 1, dtype=x.dtype) / (2 * r + 1) ** 2
    y = x[0][:, None]
    return (y / (F.conv2d(y, kernel, padding=r) + 1e-12))[:, 0][None]


def ref_latency(img, steps):  # img [C, H, W] -> cumulative values [T, C, H, W]
    flat = img.reshape(-1)
    n = int((flat != 0).sum())
    size = n // steps
    vals, idx = torch.sort(flat, descending=True)
    out, current = [], torch.zeros_like(flat)
    for t in range(steps):
        current[idx[t * size : (t + 1) * size]] = vals[t * size : (t + 1) * size]
        out.append(current.clone().reshape(img.shape))
    return torch.stack(out)


def ref_fire(pot, threshold):
    th = pot.clone()
    if threshold is None:
        th[:-1] = 0
    else:
        th = torch.where(th > threshold, th, torch.zeros_like(th))
    return th.sign(), th


def ref_pointwise(th):  # [T, C, H, W]
    best, arg = th.max(dim=1, keepdim=True)
    fired = best.sign()
    first_val, first_t = fired.max(dim=0, keepdim=True)
    win = arg.gather(0, first_t)
    coef = torch.zeros_like(th[:1]).scatter_(1, win, first_val)
    return th * coef


def ref_k_winners(pot, k, radius, spikes):
    first = spikes.max(dim=0, keepdim=True)[1]
    values = pot.gather(0, first)
    trunc = spikes * values
    big = trunc.max() * pot.shape[0]
    total = (trunc + spikes * big).sum(0)
    out = []
    for _ in range(k):
        val, idx = total.reshape(-1).max(0)
        if val.item() == 0:
            break
        c, h, w = np.unravel_index(idx.item(), tuple(total.shape))
        out.append((int(c), int(h), int(w)))
        total[c] = 0
        if radius:
            total[:, max(0, h - radius) : h + radius + 1, max(0, w - radius) : w + radius + 1] = 0
    return out


def ref_stdp(weight, pre, post, winners, ap, an, stabilizer=True, lo=0.0, hi=1.0):
    # snn.STDP: the stabilizer is w(1 - w) whatever the bounds (they only clip)
    pre_lat, post_lat = pre.sum(0), post.sum(0)
    kh, kw = weight.shape[-2:]
    lr = torch.zeros_like(weight)
    for c, h, w in winners:
        field = pre_lat[:, h : h + kh, w : w + kw]
        lr[c] = torch.where(field >= post_lat[c, h, w], torch.tensor(ap, dtype=weight.dtype),
                            torch.tensor(an, dtype=weight.dtype))  # fmt: skip
    factor = weight * (1 - weight) if stabilizer else 1
    return (weight + lr * factor).clamp(lo, hi)


def cumulative_wave(steps, shape, p_never=0.3, generator=None):
    """A random cumulative wave [T, *shape]: each neuron fires once or never."""
    first = torch.randint(0, steps, shape, generator=generator)
    never = torch.rand(shape, generator=generator) < p_never
    first = torch.where(never, steps, first)
    return (torch.arange(steps).view(-1, *[1] * len(shape)) >= first).double()


# ---- input stage ----


@pytest.mark.parametrize(
    "size,s1,s2", [(3, 3 / 9, 6 / 9), (7, 14 / 9, 7 / 9), (13, 13 / 9, 26 / 9)]
)
def test_dog_kernel_matches_spyketorchs_definition(size, s1, s2):
    torch.testing.assert_close(dog_kernel(size, s1, s2), ref_dog(size, s1, s2))


def test_dog_filter_pads_kernels_and_thresholds_like_spyketorchs_filter():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 1, 20, 20, generator=g, dtype=torch.float64) * 255
    scales = [(3, 3 / 9, 6 / 9), (7, 7 / 9, 14 / 9)]
    filt = DoGFilter.on_off(scales, padding=3, threshold=50)
    kernels = [ref_dog(3, 3 / 9, 6 / 9), ref_dog(3, 6 / 9, 3 / 9), ref_dog(7, 7 / 9, 14 / 9),
               ref_dog(7, 14 / 9, 7 / 9)]  # fmt: skip
    bank = torch.stack([F.pad(k, [(7 - k.shape[0]) // 2] * 4) for k in kernels])[:, None]
    # float64 images are filtered with the float64 kernels (a float32 copy was off by ~1e-7)
    expect = F.conv2d(img, bank, padding=3)
    expect = torch.where(expect < 50, torch.zeros_like(expect), expect)
    torch.testing.assert_close(filt(img), expect, rtol=1e-12, atol=1e-12)
    out32 = filt(img.float())  # float32 images: the kernels rounded to float32
    assert out32.dtype == torch.float32
    expect32 = F.conv2d(img.float(), bank.float(), padding=3)
    torch.testing.assert_close(out32, torch.where(expect32 < 50, 0.0, expect32))
    assert filt(img[:, 0]).shape == (2, 4, 20, 20)
    with pytest.raises(ShapeError, match=r"\[B, 1, H, W\]"):
        filt(torch.rand(2, 3, 8, 8))
    with pytest.raises(ConfigurationError, match="odd"):
        dog_kernel(4, 1.0, 2.0)


def test_local_normalization_matches_spyketorch():
    x = torch.rand(1, 3, 11, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(local_normalization(x, 2), ref_local_norm(x, 2))
    with pytest.raises(ShapeError, match=r"\[B, C, H, W\]"):
        local_normalization(x[0], 2)


def test_local_normalization_in_float16_keeps_zero_neighbourhoods_zero():
    # a thresholded DoG output is mostly 0; eps = 1e-12 is 0 in float16, so a zero
    # neighbourhood gave 0/0 = NaN and the latency coding then refused the image
    g = torch.Generator().manual_seed(3)
    img = 255 * torch.rand(2, 1, 28, 28, generator=g)
    img[:, :, :, 14:] = 0  # a blank half: its DoG output is 0
    dog = DoGFilter.on_off([(3, 3 / 9, 6 / 9), (7, 7 / 9, 14 / 9)], padding=3, threshold=50)
    x = dog(img)
    out = local_normalization(x.half(), 4)
    assert out.dtype == torch.float16 and not bool(out.isnan().any())
    ref = torch.cat([ref_local_norm(x[b : b + 1].double(), 4) for b in range(2)])
    torch.testing.assert_close(out.double(), ref, rtol=2e-3, atol=2e-3)
    assert intensity_to_latency(out, 15).shape == (15, 2, 4, 28, 28)


@pytest.mark.parametrize("steps", [1, 4, 15])
def test_intensity_to_latency_matches_spyketorchs_spike_waves(steps):
    g = torch.Generator().manual_seed(steps)
    img = torch.rand(3, 4, 6, 6, generator=g, dtype=torch.float64)
    img = torch.where(torch.rand(img.shape, generator=g) < 0.4, 0.0, img)  # zeros never fire
    values = intensity_to_latency(img, steps, to_spike=False)
    spikes = intensity_to_latency(img, steps)
    for b in range(3):
        ref = ref_latency(img[b], steps)
        torch.testing.assert_close(values[:, b], ref)
        torch.testing.assert_close(spikes[:, b], ref.sign())
    assert bool((spikes[1:] >= spikes[:-1]).all())  # cumulative


def test_intensity_to_latency_fewer_values_than_steps_and_errors():
    img = torch.tensor([[0.0, 0.5, 0.0, 0.9]])
    wave = intensity_to_latency(img, 4)  # n = 2 < T: one step per value, largest first
    assert wave[:, 0].tolist() == [[0, 0, 0, 1], [0, 1, 0, 1], [0, 1, 0, 1], [0, 1, 0, 1]]
    with pytest.raises(ConfigurationError, match="non-negative"):
        intensity_to_latency(-img, 4)


# ---- firing, inhibition, winners ----


def _potentials(steps, batch, channels, size, seed):
    """Non-decreasing potentials: a non-negative conv of a cumulative wave."""
    g = torch.Generator().manual_seed(seed)
    pre = cumulative_wave(steps, (batch, 2, size + 2, size + 2), generator=g)
    weight = torch.rand(channels, 2, 3, 3, generator=g, dtype=torch.float64)
    pot = F.conv2d(pre.flatten(0, 1), weight).unflatten(0, (steps, batch))
    return pre, weight, pot


@pytest.mark.parametrize("threshold", [None, 3.0, 6.0])
def test_fire_once_and_pointwise_inhibition_match_spyketorch(threshold):
    _, _, pot = _potentials(6, 3, 5, 7, seed=2)
    spikes, kept = fire_once(pot, threshold)
    inhibited = pointwise_inhibition(kept)
    for b in range(3):
        ref_s, ref_th = ref_fire(pot[:, b], threshold)
        torch.testing.assert_close(spikes[:, b], ref_s)
        torch.testing.assert_close(kept[:, b], ref_th)
        torch.testing.assert_close(inhibited[:, b], ref_pointwise(ref_th))
    assert bool((inhibited[-1] > 0).sum(1).le(1).all())  # one map per position


@pytest.mark.parametrize("k,radius", [(1, 0), (3, 0), (4, 1), (6, 2), (30, 0)])
def test_k_winners_match_spyketorch(k, radius):
    _, _, pot = _potentials(6, 4, 5, 7, seed=3)
    spikes, kept = fire_once(pot, 4.0)
    kept = pointwise_inhibition(kept)
    spikes = kept.sign()
    winners, valid = k_winners(kept, spikes, k, radius)
    for b in range(4):
        ref = ref_k_winners(kept[:, b].clone(), k, radius, spikes[:, b])
        got = [tuple(w) for w, v in zip(winners[b].tolist(), valid[b].tolist()) if v]
        assert got == ref
        assert valid[b].tolist() == [True] * len(ref) + [False] * (k - len(ref))


# ---- the rules ----


def _loop_stdp(weight, pre, post, winners, valid, ap, an, stabilizer, lo, hi):
    """The papers' rule, written as loops over samples, winners and synapses."""
    steps = pre.shape[0]
    delta = torch.zeros_like(weight)
    for b in range(pre.shape[1]):
        for (c, h, w), ok in zip(winners[b].tolist(), valid[b].tolist()):
            if not ok:
                continue
            t_post = next(t for t in range(steps) if post[t, b, c, h, w] > 0)
            for i in range(weight.shape[1]):
                for u in range(weight.shape[2]):
                    for v in range(weight.shape[3]):
                        col = pre[:, b, i, h + u, w + v]
                        t_pre = next((t for t in range(steps) if col[t] > 0), math.inf)
                        a = ap[b][c] if t_pre <= t_post else an[b][c]
                        x = weight[c, i, u, v]
                        delta[c, i, u, v] += a * ((x - lo) * (hi - x) if stabilizer else 1)
    return (weight + delta).clamp(lo, hi)


@pytest.mark.parametrize(
    "stabilizer,lo,hi", [(True, 0.0, 1.0), (False, 0.0, 1.0), (True, 0.1, 0.9)]
)
def test_first_spike_stdp_matches_spyketorch_and_the_papers_loop(stabilizer, lo, hi):
    pre, weight, pot = _potentials(6, 3, 5, 7, seed=4)
    weight = 0.2 + 0.6 * weight
    pot = F.conv2d(pre.flatten(0, 1), weight).unflatten(0, (6, 3))
    spikes, kept = fire_once(pot, 3.0)
    kept = pointwise_inhibition(kept)
    spikes = kept.sign()
    winners, valid = k_winners(kept, spikes, 3, 1)
    new = first_spike_stdp(weight, pre, spikes, winners, valid, 0.004, -0.003, stabilizer, (lo, hi))
    ap = [[0.004] * 5] * 3
    an = [[-0.003] * 5] * 3
    torch.testing.assert_close(
        new, _loop_stdp(weight, pre, spikes, winners, valid, ap, an, stabilizer, lo, hi)
    )
    for b in range(3):  # one sample per call: SpykeTorch's STDP on that image
        ws = [tuple(w) for w, v in zip(winners[b].tolist(), valid[b].tolist()) if v]
        one = first_spike_stdp(weight, pre[:, b:b + 1], spikes[:, b:b + 1], winners[b:b + 1],
                               valid[b:b + 1], 0.004, -0.003, stabilizer, (lo, hi))  # fmt: skip
        ref = ref_stdp(weight, pre[:, b], spikes[:, b], ws, 0.004, -0.003, stabilizer, lo, hi)
        if stabilizer and (lo, hi) != (0.0, 1.0):  # ours (w - lo)(hi - w): a documented
            assert not torch.allclose(one, ref)  # departure from SpykeTorch's w(1 - w)
        else:
            torch.testing.assert_close(one, ref)
        assert not torch.equal(one, weight)


def test_reward_stdp_is_stdp_on_reward_and_anti_stdp_on_punishment():
    pre, weight, pot = _potentials(5, 3, 4, 6, seed=5)
    weight = 0.2 + 0.6 * weight
    pot = F.conv2d(pre.flatten(0, 1), weight).unflatten(0, (5, 3))
    classes, spikes, winners, valid = decide(pot, [0, 0, 1, 1])
    assert valid.all() and classes.tolist() == [[0, 0, 1, 1][c] for c in winners[:, 0, 0]]
    reward = torch.tensor([1, -1, 0])
    new = reward_stdp(weight, pre, spikes, winners, valid, reward)
    ap = [[0.004] * 4, [-0.004] * 4, [0.0] * 4]
    an = [[-0.003] * 4, [0.0005] * 4, [0.0] * 4]
    torch.testing.assert_close(
        new, _loop_stdp(weight, pre, spikes, winners, valid, ap, an, False, 0.2, 0.8)
    )
    with pytest.raises(ConfigurationError, match="-1, 0 or 1"):
        reward_stdp(weight, pre, spikes, winners, valid, torch.tensor([2, 0, 0]))


def test_decide_picks_the_largest_final_potential_and_reports_silence():
    pot = torch.zeros(3, 2, 4, 1, 1, dtype=torch.float64)
    pot[:, 0, 2] = torch.tensor([1.0, 2.0, 5.0])[:, None, None]
    pot[:, 0, 1] = torch.tensor([3.0, 3.0, 4.0])[:, None, None]
    classes, *_ = decide(pot, [7, 8, 9, 9])
    assert classes.tolist() == [9, -1]
    classes, *_ = decide(pot, [7, 8, 9, 9], threshold=2.5)  # map 1 fires first
    assert classes.tolist() == [8, -1]


def test_rate_schedules():
    assert kheradpisheh_rates(1) == (0.004, -0.003)
    assert kheradpisheh_rates(499) == (0.004, -0.003)
    assert kheradpisheh_rates(500) == pytest.approx((0.008, -0.006))
    assert kheradpisheh_rates(1000) == pytest.approx((0.016, -0.012))
    assert kheradpisheh_rates(10**6) == pytest.approx((0.15, -0.1125))
    (rp, rm), (pp, pm) = adaptive_rstdp_rates(0.9, 0.1)
    assert (rp, rm, pp, pm) == pytest.approx((0.0004, -0.0003, -0.0036, 0.00045))


def test_shape_errors_name_the_argument():
    pre, weight, pot = _potentials(4, 2, 3, 5, seed=6)
    spikes, kept = fire_once(pot, 2.0)
    winners, valid = k_winners(kept, spikes, 2)
    with pytest.raises(ShapeError, match="post_spikes"):
        first_spike_stdp(weight, pre, spikes[:, :, :, 1:], winners, valid)
    with pytest.raises(ShapeError, match="winners"):
        first_spike_stdp(weight, pre, spikes, winners[:1], valid)
    with pytest.raises(ShapeError, match="a_plus"):
        first_spike_stdp(weight, pre, spikes, winners, valid, torch.ones(7))
    with pytest.raises(ShapeError, match="decision_map"):
        decide(pot, [0, 1])
    with pytest.raises(ShapeError, match="k_winners"):
        k_winners(kept[0], spikes[0])


def test_first_spike_stdp_refuses_one_hot_trains_and_bad_winners():
    pre, weight, pot = _potentials(5, 2, 3, 6, seed=8)
    spikes, kept = fire_once(pot, 2.0)
    winners, valid = k_winners(kept, spikes, 2)
    assert valid.any()
    # a one-spike train (not cumulative) read as latencies would give every input that
    # ever fired the winner's potentiation: refused, naming the argument
    one_hot_pre = torch.cat([pre[:1], pre[1:] - pre[:-1]])
    one_hot_post = torch.cat([spikes[:1], spikes[1:] - spikes[:-1]])
    with pytest.raises(ConfigurationError, match="pre_spikes must be a cumulative"):
        first_spike_stdp(weight, one_hot_pre, spikes, winners, valid)
    with pytest.raises(ConfigurationError, match="post_spikes must be a cumulative"):
        first_spike_stdp(weight, pre, one_hot_post, winners, valid)
    # the advertised conversion gives back the wave and the same update
    back = torch.cummax((one_hot_pre > 0).to(pre.dtype), 0).values
    torch.testing.assert_close(
        first_spike_stdp(weight, back, spikes, winners, valid),
        first_spike_stdp(weight, pre, spikes, winners, valid),
    )
    # negative weights: a potential falls below 0 after firing, so kept.sign() (the
    # recipe for non-negative weights) drops to -1 and its sum is no latency
    signed = weight - 0.5
    pot = F.conv2d(pre.flatten(0, 1), signed).unflatten(0, pre.shape[:2])
    s, kept = fire_once(pot, 0.5)
    w, v = k_winners(kept, s, 2)
    assert bool((kept.sign()[1:] < kept.sign()[:-1]).any())  # it does fall here
    with pytest.raises(ConfigurationError, match=r"post_spikes .*\(negative weights\)"):
        first_spike_stdp(signed, pre, kept.sign(), w, v, bounds=(-1.0, 1.0))
    fixed = torch.cummax((kept.sign() > 0).to(pre.dtype), 0).values
    torch.testing.assert_close(fixed, s)
    first_spike_stdp(signed, pre, fixed, w, v, bounds=(-1.0, 1.0))
    # a winner outside the output maps (a negative column wrapped to another receptive
    # field before) and winners/valid of the wrong dtype name what was wrong
    bad = winners.clone()
    bad[0, 0] = torch.tensor([0, 1, -1])
    valid_bad = valid.clone()
    valid_bad[0, 0] = True
    with pytest.raises(ShapeError, match=r"winners\[0, 0\] = \[0, 1, -1\]"):
        first_spike_stdp(weight, pre, spikes, bad, valid_bad)
    bad[0, 0] = torch.tensor([3, 0, 0])  # map 3 of 3
    with pytest.raises(ShapeError, match=r"outside the output maps"):
        first_spike_stdp(weight, pre, spikes, bad, valid_bad)
    bad[0, 0] = torch.tensor([0, 0, 6])  # H' = W' = 8 - 3 + 1 = 6
    with pytest.raises(ShapeError, match=r"\[C_out, H', W'\] = \[3, 6, 6\]"):
        first_spike_stdp(weight, pre, spikes, bad, valid_bad)
    valid_bad[0, 0] = False  # an invalid row is ignored, whatever it holds
    first_spike_stdp(weight, pre, spikes, bad, valid_bad)
    with pytest.raises(DTypeError, match="valid bool"):
        first_spike_stdp(weight, pre, spikes, winners, valid.long())
    with pytest.raises(DTypeError, match="winners int64"):
        first_spike_stdp(weight, pre, spikes, winners.float(), valid)


def test_k_winners_and_decide_refuse_nan_potentials():
    # one NaN potential made its sample's keys NaN: the sample was reported silent
    # (valid all False, decide's class -1) instead of an error
    _, _, pot = _potentials(5, 3, 4, 6, seed=9)
    spikes, kept = fire_once(pot, 2.0)
    assert k_winners(kept, spikes, 2)[1].all()
    kept[2, 1, 0, 3, 3] = math.nan
    with pytest.raises(ConfigurationError, match=r"NaN \(samples \[1\]\)"):
        k_winners(kept, spikes, 2)
    pot[:, 2, 1, 0, 0] = math.nan
    for threshold in (None, 2.0):  # the decision layer's threshold swallowed the NaN
        with pytest.raises(ConfigurationError, match=r"fire_once: potentials hold NaN"):
            decide(pot, [0, 1, 0, 1], threshold)


def test_decide_refuses_fractional_or_negative_classes():
    _, _, pot = _potentials(4, 2, 4, 5, seed=10)
    classes = decide(pot, torch.tensor([0.0, 1.0, 0.0, 1.0]))[0]  # whole floats are classes
    torch.testing.assert_close(classes, decide(pot, [0, 1, 0, 1])[0])
    with pytest.raises(ConfigurationError, match=r"whole classes >= 0, got \[0.5, 1.0"):
        decide(pot, [0.5, 1.0, 0.0, 1.0])  # was truncated to class 0
    with pytest.raises(ConfigurationError, match="decision_map"):
        decide(pot, [0, -1, 0, 1])  # -1 is decide's answer for silence


def test_stdp_refuses_non_finite_rates():
    pre, weight, pot = _potentials(4, 2, 3, 5, seed=11)
    spikes, kept = fire_once(pot, 2.0)
    winners, valid = k_winners(kept, spikes, 2)
    with pytest.raises(ConfigurationError, match="a_plus: must be finite"):
        first_spike_stdp(weight, pre, spikes, winners, valid, math.nan)
    with pytest.raises(ConfigurationError, match="a_minus: must be finite"):
        first_spike_stdp(weight, pre, spikes, winners, valid, 0.004, torch.tensor([0, math.inf, 0]))
    with pytest.raises(ConfigurationError, match="a_minus: must be finite"):
        reward_stdp(weight, pre, spikes, winners, valid, torch.tensor([1, -1]),
                    anti_stdp_rates=(-0.004, math.nan))  # fmt: skip
