"""snnTorch 1.0 ``spikegen`` parity of the encoders: the RC latency codes, the Poisson
encoder's gain / offset / first spike time, target spike trains and their ramps.

Spikes are compared bit for bit with snnTorch where both are deterministic (or draw
from torch's global generator in the same order); random target patterns are checked in
distribution (seeded, binomial bounds). snnTorch's parts skip when it is absent; the
hand-worked values and errors run anyway.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from spikeflow.encoding import (
    LatencyEncoder,
    PoissonEncoder,
    ramp_targets,
    target_spike_trains,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError


def spikegen():
    return pytest.importorskip("snntorch.spikegen", reason="snnTorch is not installed")


def latency_input(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An odd shape with 0, 1, values at and around the thresholds, and others between."""
    x = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(5), dtype=dtype)
    special = [0.0, 1.0, 0.01, 0.0099999, 0.0100001, 0.2, 0.5, 0.02, 0.011, 0.99, 1e-9]
    x.view(-1)[: len(special)] = torch.tensor(special, dtype=dtype)
    return x


def within(count: torch.Tensor, n: int, p: torch.Tensor | float, sigmas: float = 5.0) -> bool:
    """Every binomial count (of ``n`` trials) within ``sigmas`` standard deviations."""
    p = torch.as_tensor(p, dtype=torch.float64)
    sd = torch.sqrt(n * p * (1 - p)).clamp_min(0.5)
    return bool(((count.double() - n * p).abs() <= sigmas * sd).all())


# --------------------------------------------------------------------------- latency


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("clip", [False, True])
def test_rc_latency_equals_snntorch(linear, normalize, clip):
    sg = spikegen()
    x = latency_input()
    code = "rc_linear" if linear else "rc"
    checked = raised = 0
    for T, tau, threshold, t0, bypass in itertools.product(
        (1, 5, 14), (1, 0.5, 3.0), (0.01, 0.2, 0.5), (0, 3), (False, True)
    ):
        if t0 > T - 1:
            continue
        kw = dict(
            tau=tau,
            threshold=threshold,
            normalize=normalize,
            clip=clip,
            first_spike_time=t0,
            bypass=bypass,
        )
        enc = LatencyEncoder(T, code, **kw)
        try:
            want = sg.latency(x, num_steps=T, linear=linear, **kw)
        except Exception:  # snnTorch refuses a spike time past T - 1 without bypass
            assert not bypass  # (here some unclipped input is late: see the next test)
            with pytest.raises(ConfigurationError, match=r"past the last step T - 1"):
                enc(x)
            raised += 1
            continue
        assert torch.equal(enc(x), want), kw
        checked += 1
    assert checked > 20
    assert raised > 0 or normalize


@pytest.mark.parametrize("linear", [False, True])
def test_rc_latency_float64_equals_snntorch(linear):
    sg = spikegen()
    x = torch.rand(500, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for normalize in (False, True):
        want = sg.latency(x, num_steps=30, linear=linear, normalize=normalize, bypass=True)
        enc = LatencyEncoder(30, "rc_linear" if linear else "rc", normalize=normalize, bypass=True)
        got = enc(x)
        assert got.dtype == torch.float64
        assert torch.equal(got.float(), want)  # snnTorch's spikes are float32


def test_rc_latency_clipped_late_inputs_give_snntorchs_bypass_output():
    # snnTorch raises when any time is past T - 1, even that of an input clip removes;
    # spikeflow raises only for a late spike that would be emitted
    sg = spikegen()
    x = latency_input().clamp_min(0.02)
    x.view(-1)[:3] = torch.tensor([0.0, 0.005, 0.0099])  # late (step 12), below θ
    with pytest.raises(Exception, match="out of bounds"):
        sg.latency(x, num_steps=10, clip=True)
    want = sg.latency(x, num_steps=10, clip=True, bypass=True)
    assert torch.equal(LatencyEncoder(10, "rc", clip=True)(x), want)
    assert want.sum() == x.numel() - 3


def test_rc_latency_hand_worked():
    # t = ln(x' / (x' - 0.01)), x' = max(x, 0.0100001): x <= 0.01 -> ln(100001) = 11.51
    # -> 12; 0.0101 -> ln(101) = 4.62 -> 5; 0.02 -> ln 2 -> 1; 0.1 -> ln(10/9) -> 0
    x = torch.tensor([0.0, 0.01, 0.0101, 0.02, 0.1, 0.5, 1.0])
    assert LatencyEncoder(13, "rc").fire_step(x).tolist() == [12, 12, 5, 1, 0, 0, 0]
    # normalize, T = 5: times [11.51, 4.62, 0.69, 0.01] * 4 / 11.51 = [4, 1.60, 0.24, 0.003]
    enc = LatencyEncoder(5, "rc", normalize=True)
    assert enc.fire_step(torch.tensor([0.0, 0.0101, 0.02, 1.0])).tolist() == [4, 2, 0, 0]
    # clip silences x < θ (not x = θ); tau = 2 doubles the times; t0 shifts them
    enc = LatencyEncoder(30, "rc", clip=True, tau=2.0, first_spike_time=3)
    assert enc.fire_step(x).tolist() == [-1, 26, 12, 4, 3, 3, 3]
    s = enc(x)
    assert s.shape == (30, 7) and s.sum(0).tolist() == [0, 1, 1, 1, 1, 1, 1]
    # rc_linear, normalize, θ = 0.2: τ = T - 1 - t0, t = min(τ(1 - x), τ(1 - θ)) + t0
    x = torch.tensor([0.0, 0.1, 0.5, 0.96, 1.0])
    enc = LatencyEncoder(11, "rc_linear", normalize=True, threshold=0.2)
    assert enc.fire_step(x).tolist() == [8, 8, 5, 0, 0]
    enc = LatencyEncoder(11, "rc_linear", normalize=True, threshold=0.2, first_spike_time=2)
    assert enc.fire_step(x).tolist() == [8, 8, 6, 2, 2]
    # without normalize τ = 1: t = 1 - max(x, θ) rounds to 1 or 0
    assert LatencyEncoder(2, "rc_linear").fire_step(x).tolist() == [1, 1, 0, 0, 0]


def test_rc_latency_late_spikes_raise_or_are_dropped():
    x = torch.tensor([0.0, 0.5])  # steps 12 and 0
    with pytest.raises(ConfigurationError, match=r"step 12, past the last step T - 1 = 9.*T >= 13"):
        LatencyEncoder(10, "rc")(x)
    s = LatencyEncoder(10, "rc", bypass=True)(x)
    assert s.sum(0).tolist() == [0.0, 1.0] and s[0, 1] == 1
    # clipped inputs are silent anyway: no error
    assert LatencyEncoder(10, "rc", clip=True)(x).sum(0).tolist() == [0.0, 1.0]


def test_rc_latency_targets_and_on_off_values():
    sg = spikegen()
    labels = torch.tensor([0, 3, 2])
    one_hot = F.one_hot(labels, 4).float()
    for kw in (dict(normalize=True), dict(normalize=True, clip=True), dict(tau=0.5)):
        want = sg.targets_latency(labels, 4, num_steps=8, **kw)
        assert torch.equal(LatencyEncoder(8, "rc", **kw)(one_hot), want)
    x = latency_input()
    s = LatencyEncoder(14, "rc")(x)
    for on, off in ((1.0, 0.0), (1.25, 0.25), (0.5, 0.5)):
        want = sg.latency(x, num_steps=14, on_target=on, off_target=off)
        assert torch.equal(off + (on - off) * s, want)


def test_rc_latency_streams_like_a_multi_step_call():
    x = latency_input()
    enc = LatencyEncoder(6, "rc", normalize=True, clip=True, step_mode="s")
    multi = LatencyEncoder(6, "rc", normalize=True, clip=True)(x)
    enc.streaming = True
    assert torch.equal(torch.stack([enc(x) for _ in range(6)]), multi)


def test_rc_latency_half_input_and_empty():
    x = latency_input().half()
    s = LatencyEncoder(14, "rc")(x)
    assert s.dtype == torch.float16 and torch.equal(s.sum(0), torch.ones_like(x))
    assert LatencyEncoder(5, "rc", normalize=True)(torch.zeros(0, 3)).shape == (5, 0, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tau=0.0), "tau"),
        (dict(tau=float("nan")), "tau"),
        (dict(threshold=0.0), "threshold"),
        (dict(threshold=1.0), "threshold"),
        (dict(epsilon=0.0), "epsilon"),
        (dict(first_spike_time=5), r"first_spike_time must be at most T - 1 = 4"),
        (dict(first_spike_time=-1), "first_spike_time"),
        (dict(first_spike_time=1.5), "first_spike_time"),
        (dict(normalize=1), "normalize"),
        (dict(clip="yes"), "clip"),
        (dict(bypass=None, clip=0), "clip"),
    ],
)
def test_rc_latency_bad_arguments(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        LatencyEncoder(5, "rc", **kwargs)


def test_rc_options_refused_for_the_spikingjelly_codes():
    with pytest.raises(ConfigurationError, match=r"tau, clip only apply.*not 'log'"):
        LatencyEncoder(5, "log", tau=1.0, clip=False)
    with pytest.raises(ConfigurationError, match=r"threshold only apply.*not 'linear'"):
        LatencyEncoder(5, threshold=0.01)
    with pytest.raises(ConfigurationError, match=r"'rc', 'rc_linear'"):
        LatencyEncoder(5, "exp")
    with pytest.raises(ConfigurationError, match=r"1\.5"):
        LatencyEncoder(5, "rc")(torch.tensor([0.5, 1.5]))
    with pytest.raises(DTypeError):
        LatencyEncoder(5, "rc")(torch.tensor([0, 1]))


# --------------------------------------------------------------------------- rate


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_poisson_equals_snntorch_rate_with_the_same_seed(dtype):
    sg = spikegen()
    x = torch.rand(3, 5, 7, dtype=dtype, generator=torch.Generator().manual_seed(2))
    for T, gain, offset, t0 in [
        (7, 1.0, 0.0, 0),
        (7, 0.5, 0.1, 0),
        (9, 1, 0, 4),
        (1, 0.25, 0.3, 0),
    ]:
        torch.manual_seed(11)
        want = sg.rate(x, num_steps=T, gain=gain, offset=offset, first_spike_time=t0)
        torch.manual_seed(11)
        got = PoissonEncoder(T, gain=gain, offset=offset, first_spike_time=t0)(x)
        assert got.dtype == dtype and torch.equal(got, want), (T, gain, offset, t0)
    # snnTorch clamps gain * x + offset into [0, 1]; spikeflow asks for it explicitly
    torch.manual_seed(3)
    want = sg.rate(x, num_steps=6, gain=2.0, offset=-0.5)
    torch.manual_seed(3)
    assert torch.equal(PoissonEncoder(6)((2.0 * x - 0.5).clamp(0, 1)), want)
    # time-varying input: one single-step call, one draw per step and element
    torch.manual_seed(5)
    want = sg.rate(x, time_var_input=True)
    torch.manual_seed(5)
    assert torch.equal(PoissonEncoder(1, step_mode="s")(x), want)
    # rate_conv: one clamped draw per element
    torch.manual_seed(6)
    want = sg.rate_conv(2.0 * x - 0.5)
    torch.manual_seed(6)
    assert torch.equal(PoissonEncoder(1, step_mode="s")((2.0 * x - 0.5).clamp(0, 1)), want)


def test_poisson_gain_offset_deterministic_cases():
    x = torch.rand(4, 6)
    assert torch.equal(PoissonEncoder(5, gain=0.0)(x), torch.zeros(5, 4, 6))
    assert torch.equal(PoissonEncoder(5, gain=0.0, offset=1.0)(x), torch.ones(5, 4, 6))
    # 8-bit values brought into [0, 1] by the gain: 0 never fires, 255 always does
    pixels = torch.tensor([0.0, 255.0])
    s = PoissonEncoder(50, gain=1 / 255)(pixels)
    assert s[:, 0].sum() == 0 and s[:, 1].sum() == 50
    s = PoissonEncoder(8, offset=0.5, gain=-0.5, first_spike_time=3)(torch.ones(2, 3))
    assert torch.equal(s, torch.zeros(8, 2, 3))
    s = PoissonEncoder(8, first_spike_time=3)(torch.ones(2, 3))
    assert torch.equal(s[:3], torch.zeros(3, 2, 3)) and torch.equal(s[3:], torch.ones(5, 2, 3))


def test_poisson_first_spike_time_drops_the_first_draws():
    x = torch.rand(10, 10)
    plain = PoissonEncoder(12, generator=torch.Generator().manual_seed(7))(x)
    late = PoissonEncoder(12, generator=torch.Generator().manual_seed(7), first_spike_time=4)(x)
    assert late[:4].sum() == 0 and torch.equal(late[4:], plain[4:])


def test_poisson_gain_offset_rates_within_binomial_bounds():
    x = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0])
    T = 4000
    enc = PoissonEncoder(T, generator=torch.Generator().manual_seed(0), gain=0.5, offset=0.25)
    counts = enc(x).sum(0)
    assert within(counts, T, 0.5 * x.double() + 0.25)
    assert not within(counts, T, x.double())  # the gain and offset matter


def test_poisson_gain_offset_errors():
    with pytest.raises(
        ConfigurationError, match=r"gain \* x \+ offset, gain=2.*max 1\.7999.*clamp"
    ):
        PoissonEncoder(4, gain=2.0)(torch.tensor([0.1, 0.9]))
    with pytest.raises(ConfigurationError, match=r"offset=-0\.5.*min -0\.5"):
        PoissonEncoder(4, offset=-0.5)(torch.tensor([0.0, 0.9]))
    with pytest.raises(ConfigurationError, match=r"NaN"):
        PoissonEncoder(4, gain=0.5)(torch.tensor([0.1, float("nan")]))
    with pytest.raises(ConfigurationError, match="gain"):
        PoissonEncoder(4, gain=float("inf"))
    with pytest.raises(ConfigurationError, match="offset"):
        PoissonEncoder(4, offset="0.1")
    with pytest.raises(ConfigurationError, match=r"first_spike_time must be at most T - 1 = 3"):
        PoissonEncoder(4, first_spike_time=4)
    with pytest.raises(ConfigurationError, match=r"first_spike_time=2 needs multi-step"):
        PoissonEncoder(4, step_mode="s", first_spike_time=2)(torch.rand(3))


# --------------------------------------------------------------------------- targets

# 0.55 and 0.75 give other steps with T = 50 if the times are computed in float64
# (0.75: 28 and 40 in float32, as snnTorch; 27 and 39 in float64)
RATES = (0.0, 0.01, 0.25, 0.3, 1 / 3, 0.45, 0.55, 0.7, 0.75, 0.999, 1.0)


def test_regular_targets_equal_snntorch_target_rate_code():
    sg = spikegen()
    labels = torch.tensor([2, 0])
    for T, t0, (label_rate, other_rate) in itertools.product(
        (1, 7, 50), (0, 5), itertools.permutations(RATES, 2)
    ):
        if t0 > T - 1:
            continue
        got = target_spike_trains(labels, 3, T, label_rate, other_rate, first_spike_time=t0)
        assert got.shape == (T, 2, 3)
        want_label = sg.target_rate_code(T, t0, label_rate)[0]
        want_other = sg.target_rate_code(T, t0, other_rate)[0]
        assert torch.equal(got[:, 0, 2], want_label) and torch.equal(got[:, 1, 0], want_label)
        for b, c in ((0, 0), (0, 1), (1, 1), (1, 2)):
            assert torch.equal(got[:, b, c], want_other), (T, t0, label_rate, other_rate)


def test_regular_target_time_rounding_up_to_T_is_dropped():
    # 13 / 0.26 is 49.99999999 in float64, 50.0 in float32: snnTorch indexes step 50 of 50
    sg = spikegen()
    with pytest.raises(RuntimeError, match="out of bounds"):
        sg.target_rate_code(50, 0, 0.26)
    got = target_spike_trains(torch.tensor([0]), 1, 50, 0.26)[:, 0, 0]
    want = [int(k / 0.26) for k in range(13)]  # 0, 3, 7, ..., 46
    assert got.nonzero().flatten().tolist() == want
    assert torch.equal(got, sg.target_rate_code(51, 0, 0.26)[0][:50])


def test_targets_equal_snntorch_targets_rate_one_hot_cases():
    sg = spikegen()
    labels = torch.tensor([4, 0, 2])
    for t0, on, off in ((0, 1.0, 0.0), (0, 1.2, 0.5), (2, 1.0, 0.0), (3, 1.2, 0.5)):
        want = sg.targets_rate(
            labels, 5, num_steps=6, first_spike_time=t0, on_target=on, off_target=off
        )
        got = target_spike_trains(labels, 5, 6, first_spike_time=t0, on_target=on, off_target=off)
        if t0 == 0:  # snnTorch leaves time out of a constant target: [B, C]
            want = want.expand(6, 3, 5)
        assert torch.equal(got, want)


def test_targets_hand_worked_and_shapes():
    got = target_spike_trains(torch.tensor([1]), 3, 5, correct_rate=0.5, incorrect_rate=0.25)
    want = torch.tensor([[1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, 0, 0, 0, 1]]).T.float()
    assert torch.equal(got[:, 0], want)
    labels = torch.tensor([[0, 1, 2], [2, 2, 0]])
    got = target_spike_trains(labels, 3, 4, on_target=2.0, off_target=-1.0, dtype=torch.float64)
    assert got.shape == (4, 2, 3, 3) and got.dtype == torch.float64
    assert torch.equal(got, (3 * F.one_hot(labels, 3) - 1).double().expand(4, 2, 3, 3))


def test_poisson_targets_in_distribution():
    T, t0, n = 12, 3, 4000
    labels = torch.arange(n) % 2
    got = target_spike_trains(
        labels, 2, T, 0.8, 0.3, "poisson", t0, generator=torch.Generator().manual_seed(1)
    )
    assert got[:t0].sum() == 0
    is_label = F.one_hot(labels, 2).bool()
    for rate, mask in ((0.8, is_label), (0.3, ~is_label)):
        per_step = got[t0:, mask].sum(1)  # spikes at each step over n neurons
        assert within(per_step, n, rate)
    # rate 1 fires at every step from t0, rate 0 never
    ones = target_spike_trains(labels[:5], 2, T, 1.0, 0.0, "poisson", t0)
    assert torch.equal(ones, target_spike_trains(labels[:5], 2, T, first_spike_time=t0))


def test_uniform_targets_in_distribution_like_snntorch():
    # n = |regular train| draws over M = T - t0 steps: each step fires with probability
    # 1 - (1 - 1/M)^n, at most n spikes, none before t0
    T, t0, rate = 10, 2, 0.3  # regular train 2, 5.33, 8.67 -> n = 3, M = 8
    p = 1 - (1 - 1 / 8) ** 3
    n = 3000
    got = target_spike_trains(
        torch.zeros(n, dtype=torch.long),
        1,
        T,
        rate,
        0.0,
        "uniform",
        t0,
        generator=torch.Generator().manual_seed(2),
    )[..., 0]
    assert got[:t0].sum() == 0
    assert int(got.sum(0).max()) <= 3 and int(got.sum(0).min()) >= 1
    assert within(got[t0:].sum(1), n, p)
    sg = spikegen()
    draws = torch.stack(
        [sg.target_rate_code(T, t0, rate, firing_pattern="uniform")[0] for _ in range(600)]
    )
    assert draws[:, :t0].sum() == 0 and within(draws[:, t0:].sum(0), 600, p)


def test_one_hot_rows():
    sg = spikegen()
    labels = torch.tensor([3, 0, 2, 2])
    one_hot = F.one_hot(labels, 5).float()
    assert torch.equal(sg.to_one_hot(labels, 5), one_hot)
    assert torch.equal(target_spike_trains(labels, 5, 1)[0], one_hot)
    assert torch.equal(sg.from_one_hot(one_hot[0]), one_hot[0].argmax(-1, keepdim=True))
    # on a batch snnTorch's from_one_hot gives the rows, not the classes
    assert sg.from_one_hot(one_hot).tolist() == [0, 1, 2, 3] != one_hot.argmax(-1).tolist()


def test_target_errors():
    labels = torch.tensor([0, 1])
    with pytest.raises(DTypeError, match="integer class labels"):
        target_spike_trains(labels.float(), 2, 5)
    with pytest.raises(
        ConfigurationError, match=r"labels must lie in \[0, 1\], got range \[0, 2\]"
    ):
        target_spike_trains(torch.tensor([0, 2]), 2, 5)
    with pytest.raises(ConfigurationError, match="correct_rate"):
        target_spike_trains(labels, 2, 5, correct_rate=1.5)
    with pytest.raises(ConfigurationError, match="incorrect_rate"):
        target_spike_trains(labels, 2, 5, incorrect_rate=-0.1)
    with pytest.raises(ConfigurationError, match=r"firing_pattern.*'Regular'"):
        target_spike_trains(labels, 2, 5, firing_pattern="Regular")
    with pytest.raises(ConfigurationError, match=r"first_spike_time must be at most T - 1 = 4"):
        target_spike_trains(labels, 2, 5, first_spike_time=5)
    with pytest.raises(ConfigurationError, match="num_classes"):
        target_spike_trains(labels, 0, 5)
    with pytest.raises(DTypeError, match="dtype"):
        target_spike_trains(labels, 2, 5, dtype=torch.int32)
    with pytest.raises(ConfigurationError, match="generator"):
        target_spike_trains(labels, 2, 5, generator=3)


# --------------------------------------------------------------------------- ramps


def test_ramp_targets_hand_worked():
    s = torch.tensor([0.0, 0, 1, 1, 0, 0, 0, 1, 0, 0])
    want = [0.0, 0.5, 1.0, 1.0, 0.0, 1 / 3, 2 / 3, 1.0, 0.0, 0.0]
    torch.testing.assert_close(ramp_targets(s), torch.tensor(want))
    got = ramp_targets(s.bool(), on_target=1.5, off_target=0.5)
    assert got.dtype == torch.get_default_dtype()
    torch.testing.assert_close(got, 0.5 + torch.tensor(want))
    assert torch.equal(ramp_targets(torch.zeros(4, 2), 2.0, 0.5), torch.full((4, 2), 0.5))
    with pytest.raises(ShapeError):
        ramp_targets(torch.tensor(1.0))
    with pytest.raises(ConfigurationError, match="on_target"):
        ramp_targets(s, on_target=math.inf)


def test_ramp_targets_equal_snntorch_interpolation():
    sg = spikegen()
    for times, T, on, off in (
        ([0, 4], 5, 1.0, 0.0),
        ([1, 2, 6], 9, 1.25, 0.25),
        ([3], 4, 1.2, 0.5),
    ):
        spikes = torch.zeros(T)
        spikes[times] = 1
        want = sg.rate_interpolate(torch.tensor(times), T, on_target=on, off_target=off)
        torch.testing.assert_close(ramp_targets(spikes, on, off), want)
    x = latency_input()
    for on, off in ((1.0, 0.0), (1.25, 0.25)):
        want = sg.latency(
            x, num_steps=9, normalize=True, interpolate=True, on_target=on, off_target=off
        )
        got = ramp_targets(LatencyEncoder(9, "rc", normalize=True)(x), on, off)
        torch.testing.assert_close(got, want)
    # snnTorch 1.0's targets_rate with other rates than 1 and 0 only runs when T equals
    # the number of classes (a broadcasting slip); its interpolated output is right then
    labels = torch.tensor([0, 3, 5])
    for rates, t0, on, off in (((0.5, 0.25), 0, 1.0, 0.0), ((0.75, 0.1), 2, 1.25, 0.25)):
        want = sg.targets_rate(
            labels,
            6,
            num_steps=6,
            correct_rate=rates[0],
            incorrect_rate=rates[1],
            first_spike_time=t0,
            on_target=on,
            off_target=off,
            interpolate=True,
        )
        trains = target_spike_trains(labels, 6, 6, *rates, first_spike_time=t0)
        torch.testing.assert_close(ramp_targets(trains, on, off), want)
