"""Tests of spikeflow.encoding: each encoder against hand-computed spike trains."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from spikeflow.base import MemoryModule
from spikeflow.encoding import (
    GaussianPopulationEncoder,
    LatencyEncoder,
    PeriodicEncoder,
    PoissonEncoder,
    WeightedPhaseEncoder,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.functional import streaming


def assert_binary(s: torch.Tensor) -> None:
    assert bool(((s == 0) | (s == 1)).all())


# --------------------------------------------------------------------------- Poisson


def test_poisson_rate_matches_x_within_binomial_tolerance():
    torch.manual_seed(0)
    p = torch.tensor([0.05, 0.2, 0.5, 0.8, 0.95])
    n_elem, T = 200, 2000
    x = p[:, None].expand(5, n_elem).contiguous()
    s = PoissonEncoder(T)(x)
    assert s.shape == (T, 5, n_elem)
    assert_binary(s)
    # Per element: T Bernoulli(p) draws, rate std sqrt(p(1-p)/T); allow 5 sigma.
    rate = s.mean(0)
    sigma_elem = torch.sqrt(p * (1 - p) / T)[:, None]
    assert bool(((rate - x).abs() <= 5 * sigma_elem).all())
    # Per value of p: T * n_elem draws, a much tighter 5-sigma band.
    pooled = s.mean(dim=(0, 2))
    sigma_pool = torch.sqrt(p * (1 - p) / (T * n_elem))
    assert bool(((pooled - p).abs() <= 5 * sigma_pool).all()), (pooled, p)


def test_poisson_elements_and_steps_are_independent():
    torch.manual_seed(1)
    T = 4000
    s = PoissonEncoder(T)(torch.full((2,), 0.5))
    # Two elements with the same x agree with probability 1/2 (not 1) if independent.
    agree = (s[:, 0] == s[:, 1]).double().mean().item()
    assert abs(agree - 0.5) <= 5 * math.sqrt(0.25 / T)
    # Consecutive steps agree with probability 1/2 too.
    lag = (s[1:, 0] == s[:-1, 0]).double().mean().item()
    assert abs(lag - 0.5) <= 5 * math.sqrt(0.25 / (T - 1))


def test_poisson_zero_never_fires_one_always_fires():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    s = PoissonEncoder(1000)(x)
    assert bool((s[:, x == 0] == 0).all())
    assert bool((s[:, x == 1] == 1).all())


def test_poisson_generator_reproducible():
    x = torch.rand(3, 4, generator=torch.Generator().manual_seed(5))
    a = PoissonEncoder(50, generator=torch.Generator().manual_seed(123))(x)
    b = PoissonEncoder(50, generator=torch.Generator().manual_seed(123))(x)
    c = PoissonEncoder(50, generator=torch.Generator().manual_seed(124))(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_poisson_image_shape_and_dtype():
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    s = PoissonEncoder(7)(x)
    assert s.shape == (7, 2, 3, 4, 5)
    assert s.dtype == torch.float64
    h = PoissonEncoder(3)(x.to(torch.bfloat16))
    assert h.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("values", "shown"),
    [([-0.1, 0.5], "-0.1"), ([0.5, 1.2], "1.2"), ([0.5, float("nan")], "NaN")],
)
def test_poisson_out_of_range_raises_naming_min_max(values, shown):
    with pytest.raises(ConfigurationError, match=shown.replace(".", r"\.")):
        PoissonEncoder(4)(torch.tensor(values))


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_poisson_rejects_integer_and_bool(dtype):
    with pytest.raises(DTypeError):
        PoissonEncoder(4)(torch.zeros(3, dtype=dtype))


def test_poisson_single_step_is_stateless():
    enc = PoissonEncoder(10, step_mode="s", generator=torch.Generator().manual_seed(0))
    x = torch.tensor([0.0, 1.0, 0.5])
    s = enc(x)  # no streaming needed
    assert s.shape == (3,)
    assert s[0] == 0 and s[1] == 1
    assert not isinstance(enc, MemoryModule)


@pytest.mark.parametrize("T", [0, -1, 2.5, True, "3"])
def test_poisson_bad_T(T):
    with pytest.raises(ConfigurationError, match="T"):
        PoissonEncoder(T)


# --------------------------------------------------------------------------- latency


def test_latency_linear_hand_computed():
    # T = 5: t_f = round(4 (1 - x)) = round([0, 0.8, 1.6, 2.8, 3.6, 4]).
    x = torch.tensor([1.0, 0.8, 0.6, 0.3, 0.1, 0.0])
    expected = torch.tensor([0, 1, 2, 3, 4, 4])
    enc = LatencyEncoder(5)
    assert torch.equal(enc.fire_step(x), expected)
    s = enc(x)
    assert s.shape == (5, 6)
    assert torch.equal(s.sum(0), torch.ones(6))
    assert torch.equal(s.argmax(0), expected)


def test_latency_log_hand_computed():
    # T = 8, α = e^7 - 1 ≈ 1095.633; t_f = 7 - ln(α x + 1):
    # x=0.5: 7 - 6.308 = 0.692 -> 1;  x=0.1: 7 - 4.706 = 2.294 -> 2
    # x=0.01: 7 - 2.481 = 4.519 -> 5;  x=0.001: 7 - 0.740 = 6.260 -> 6
    x = torch.tensor([1.0, 0.5, 0.1, 0.01, 0.001, 0.0])
    expected = torch.tensor([0, 1, 2, 5, 6, 7])
    enc = LatencyEncoder(8, enc_function="log")
    assert torch.equal(enc.fire_step(x), expected)
    s = enc(x)
    assert torch.equal(s.sum(0), torch.ones(6))
    assert torch.equal(s.argmax(0), expected)


@pytest.mark.parametrize("fn", ["linear", "log"])
def test_latency_one_spike_per_element_and_endpoints(fn):
    T = 9
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0.0, 1.0
    s = LatencyEncoder(T, fn)(x)
    assert s.shape == (T, 2, 3, 4, 4) and s.dtype == x.dtype
    assert_binary(s)
    assert torch.equal(s.sum(0), torch.ones_like(x))
    t_f = s.argmax(0)
    assert t_f[0, 0, 0, 0] == T - 1  # x = 0 fires at the last step
    assert t_f[0, 0, 0, 1] == 0  # x = 1 fires at step 0
    # Larger inputs never fire later.
    order = x.flatten().argsort()
    assert bool((t_f.flatten()[order].diff() <= 0).all())


def test_latency_log_large_T_does_not_overflow():
    enc = LatencyEncoder(1000, "log")
    assert torch.equal(enc.fire_step(torch.tensor([0.0, 1.0])), torch.tensor([999, 0]))


def test_latency_T1_fires_at_step_0():
    s = LatencyEncoder(1)(torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(s, torch.ones(1, 3))


def test_latency_errors():
    with pytest.raises(ConfigurationError, match=r"enc_function.*'exp'"):
        LatencyEncoder(4, "exp")
    with pytest.raises(ConfigurationError, match="T"):
        LatencyEncoder(0)
    with pytest.raises(ConfigurationError, match=r"1\.5"):
        LatencyEncoder(4)(torch.tensor([0.2, 1.5]))
    with pytest.raises(DTypeError):
        LatencyEncoder(4)(torch.tensor([0, 1]))


# --------------------------------------------------------------------------- periodic


def test_periodic_output_is_the_tiled_pattern():
    pattern = torch.tensor([[1, 0], [0, 1], [1, 1]])  # P = 3, steps of shape [2]
    T = 7
    x = torch.zeros(4, 2, dtype=torch.float64)
    s = PeriodicEncoder(pattern, T=T)(x)
    tiled = pattern.repeat(3, 1)[:T]  # rows 0,1,2,0,1,2,0
    assert s.shape == (T, 4, 2) and s.dtype == torch.float64
    for b in range(4):
        assert torch.equal(s[:, b], tiled.double())


def test_periodic_default_T_is_one_period_and_broadcasts():
    pattern = torch.tensor([True, False, False, True])  # P = 4, scalar steps
    s = PeriodicEncoder(pattern)(torch.zeros(2, 3))
    assert s.shape == (4, 2, 3)
    assert torch.equal(s[:, 1, 2], pattern.float())
    # A non-floating x gives spikes in the default dtype.
    assert PeriodicEncoder(pattern)(torch.zeros(2, dtype=torch.int64)).dtype == torch.float32


def test_periodic_errors():
    with pytest.raises(ConfigurationError, match="0 and 1"):
        PeriodicEncoder(torch.tensor([0.0, 0.5]))
    with pytest.raises(ConfigurationError):
        PeriodicEncoder(torch.tensor(1.0))
    with pytest.raises(ConfigurationError, match="T"):
        PeriodicEncoder(torch.tensor([1, 0]), T=0)
    with pytest.raises(ShapeError):
        PeriodicEncoder(torch.ones(2, 3))(torch.zeros(4, 2))


# --------------------------------------------------------------------------- weighted phase


def test_weighted_phase_hand_example():
    # 0.8125 = 0.1101b
    s = WeightedPhaseEncoder(4)(torch.tensor([0.8125]))
    assert torch.equal(s[:, 0], torch.tensor([1.0, 1.0, 0.0, 1.0]))


@pytest.mark.parametrize("K", [1, 4, 8, 16])
def test_weighted_phase_decodes_to_truncated_x(K):
    high = 1 - 2.0**-K
    x = torch.rand(64, 3, generator=torch.Generator().manual_seed(K), dtype=torch.float64)
    x = x * high
    x[0, 0], x[0, 1] = 0.0, high
    s = WeightedPhaseEncoder(K)(x)
    assert s.shape == (K, 64, 3)
    assert_binary(s)
    w = torch.tensor([2.0 ** -(1 + t) for t in range(K)], dtype=torch.float64)
    decoded = (w.view(K, 1, 1) * s).sum(0)
    truncated = torch.floor(x * 2**K) / 2**K
    assert torch.equal(decoded, truncated)
    assert torch.equal(WeightedPhaseEncoder(K).decode(s), truncated)


def test_weighted_phase_float32_input():
    x = torch.tensor([0.3, 0.7], dtype=torch.float32)
    s = WeightedPhaseEncoder(8)(x)
    assert s.dtype == torch.float32
    expected = torch.floor(x.double() * 256) / 256
    assert torch.equal(WeightedPhaseEncoder(8).decode(s.double()), expected)


@pytest.mark.parametrize("bad", [-0.01, 1.0, 1 - 2.0**-8 + 1e-6])
def test_weighted_phase_out_of_range(bad):
    with pytest.raises(ConfigurationError, match="WeightedPhaseEncoder"):
        WeightedPhaseEncoder(8)(torch.tensor([0.5, bad], dtype=torch.float64))


def test_weighted_phase_huge_K_rejects_one():
    with pytest.raises(ConfigurationError):
        WeightedPhaseEncoder(60)(torch.tensor([1.0], dtype=torch.float64))


def test_weighted_phase_bad_K():
    with pytest.raises(ConfigurationError, match="K"):
        WeightedPhaseEncoder(0)


# --------------------------------------------------------------------------- population


def test_population_centers_and_sigma_hand_worked():
    # n=5 on [0, 3]: Δ = 3/3 = 1, μ_i = (2i - 3)/2 = -0.5, 0.5, 1.5, 2.5, 3.5; σ = 1/1.5.
    enc = GaussianPopulationEncoder(5, 0.0, 3.0, T=10)
    assert torch.equal(enc.centers, torch.tensor([-0.5, 0.5, 1.5, 2.5, 3.5], dtype=torch.float64))
    assert enc.sigma == pytest.approx(2 / 3)
    # n=4 on [-1, 1], β=2: Δ = 1, μ = -1.5, -0.5, 0.5, 1.5; σ = 0.5.
    enc = GaussianPopulationEncoder(4, -1.0, 1.0, T=10, beta=2.0)
    assert torch.equal(enc.centers, torch.tensor([-1.5, -0.5, 0.5, 1.5], dtype=torch.float64))
    assert enc.sigma == pytest.approx(0.5)


def test_population_response_peaks_at_centers():
    enc = GaussianPopulationEncoder(6, -2.0, 2.0, T=10)
    r = enc.response(enc.centers.float())
    assert r.shape == (6, 6)
    assert torch.allclose(r.diagonal(), torch.ones(6))
    assert bool(((r >= 0) & (r <= 1)).all())
    # One spacing away from a center: exp(-Δ²/(2σ²)) = exp(-β²/2).
    assert r[0, 1].item() == pytest.approx(math.exp(-(1.5**2) / 2), rel=1e-6)


def test_population_spike_times_hand_worked():
    # x = 1.5 with the n=5, [0, 3] encoder: r = [e^-4.5, e^-1.125, 1, e^-1.125, e^-4.5]
    # = [0.011, 0.325, 1, 0.325, 0.011]; t_f = round(9 (1 - r)) = [-, 6, 0, 6, -],
    # the 0.011 responses are below min_response = 0.1 and stay silent.
    enc = GaussianPopulationEncoder(5, 0.0, 3.0, T=10)
    x = torch.tensor([[1.5]])
    s = enc(x)
    assert s.shape == (10, 1, 1, 5)
    assert_binary(s)
    expected = torch.zeros(10, 5)
    expected[6, 1] = expected[0, 2] = expected[6, 3] = 1
    assert torch.equal(s[:, 0, 0], expected)
    assert torch.equal(enc.fire_step(torch.tensor(1.5)), torch.tensor([-1, 6, 0, 6, -1]))


def test_population_at_most_one_spike_and_min_response():
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(2)) * 3
    enc = GaussianPopulationEncoder(5, 0.0, 3.0, T=12)
    s = enc(x)
    assert s.shape == (12, 4, 3, 5)
    r = enc.response(x)
    assert torch.equal(s.sum(0), (r >= 0.1).float())
    everyone = GaussianPopulationEncoder(5, 0.0, 3.0, T=12, min_response=0.0)(x)
    assert torch.equal(everyone.sum(0), torch.ones(4, 3, 5))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_neurons": 2}, "n_neurons"),
        ({"x_max": 0.0}, "x_max"),
        ({"x_max": -1.0}, "x_max"),
        ({"beta": 0.0}, "beta"),
        ({"T": 0}, "T"),
        ({"min_response": 1.5}, "min_response"),
        ({"x_min": float("nan")}, "x_min"),
    ],
)
def test_population_bad_arguments(kwargs, name):
    args = {"n_neurons": 5, "x_min": 0.0, "x_max": 3.0, "T": 10} | kwargs
    with pytest.raises(ConfigurationError, match=name):
        GaussianPopulationEncoder(**args)


# --------------------------------------------------------------------------- streaming

STATEFUL: dict[str, Callable[[], nn.Module]] = {
    "latency-linear": lambda: LatencyEncoder(6),
    "latency-log": lambda: LatencyEncoder(6, "log"),
    "periodic": lambda: PeriodicEncoder(torch.tensor([[1, 0, 1], [0, 0, 1]]), T=5),
    "phase": lambda: WeightedPhaseEncoder(5),
    "population": lambda: GaussianPopulationEncoder(4, 0.0, 0.9, T=6),
}


def _input() -> torch.Tensor:
    x = torch.rand(2, 3, generator=torch.Generator().manual_seed(9)) * 0.9
    x[0, 0] = 0.0
    return x


@pytest.mark.parametrize("name", STATEFUL)
def test_single_step_streaming_equals_multi_step(name):
    enc = STATEFUL[name]()
    x = _input()
    multi = enc(x)
    period = enc.period
    assert multi.shape[0] >= period
    enc.step_mode = "s"
    with streaming(enc):
        steps = torch.stack([enc(x) for _ in range(2 * multi.shape[0])])
    assert torch.equal(steps[: multi.shape[0]], multi)
    # The code repeats with its period.
    for k in range(steps.shape[0]):
        assert torch.equal(steps[k], multi[k % period]), k


@pytest.mark.parametrize("name", STATEFUL)
def test_single_step_without_streaming_raises(name):
    enc = STATEFUL[name]()
    enc.step_mode = "s"
    with pytest.raises(StateError):
        enc(_input())


@pytest.mark.parametrize("name", STATEFUL)
def test_reset_restarts_the_counter(name):
    enc = STATEFUL[name]()
    x = _input()
    multi = enc(x)
    enc.step_mode = "s"
    enc.streaming = True
    for _ in range(3):
        enc(x)
    enc.reset()
    assert torch.equal(enc(x), multi[0])
    assert torch.equal(enc(x), multi[1])


@pytest.mark.parametrize("name", STATEFUL)
@pytest.mark.parametrize("mode", ["s", "m"])
def test_streaming_with_a_new_batch_shape_raises(name, mode):
    enc = STATEFUL[name]()
    enc.step_mode = mode
    x = _input()
    with streaming(enc):
        enc(x)
        # another batch, another rank, shapes that broadcast to the first
        # (the periodic encoder's [3] pattern refuses [2, 1] itself, a ShapeError)
        others = [x[:1], torch.rand(1, 3, 3) * 0.9, x[0]] + (
            [] if name == "periodic" else [x[:, :1]]
        )
        for other in others:
            with pytest.raises(StateError, match=r"from steps of shape \(2, 3\).*reset_net"):
                enc(other)
        enc.reset()  # a new sequence after a reset is fine
        multi = STATEFUL[name]()(x[:1])
        assert torch.equal(enc(x[:1]), multi[0] if mode == "s" else multi)
    # copies carry the counter on
    enc.streaming = True
    enc(x)
    twin = copy.deepcopy(enc)
    assert torch.equal(twin(x), enc(x))


def test_multi_step_calls_start_fresh_and_streaming_continues():
    enc = LatencyEncoder(6)
    x = _input()
    first = enc(x)
    assert torch.equal(enc(x), first)  # not streaming: every call starts at step 0
    enc.step_mode = "s"
    with streaming(enc):
        enc(x)
        enc(x)
        enc.step_mode = "m"
        # Streaming multi-step input continues from the carried step (2), wrapping at T.
        assert torch.equal(enc(x), torch.roll(first, -2, dims=0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_population_spike_times_do_not_depend_on_the_modules_dtype(dtype):
    # .half()/.to(bfloat16) rounded the centres: 1410 / 10697 of 120000 spike times moved.
    x = torch.rand(2000).to(dtype)
    plain = GaussianPopulationEncoder(12, 0.0, 1.0, T=100)
    converted = nn.Sequential(GaussianPopulationEncoder(12, 0.0, 1.0, T=100)).to(dtype)[0]
    assert converted.centers.dtype == torch.float64
    assert torch.equal(converted.fire_step(x), plain.fire_step(x))
