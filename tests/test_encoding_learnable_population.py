"""LearnablePopulationEncoder against SpikingJelly 2.0's PopSpikeEncoderDeterministic,
PopSpikeEncoderRandom and PopEncoder (same draws, float64 gradients of the input, the
centres and the widths), hand-worked activities and gradients, streaming, errors."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.encoding import LearnablePopulationEncoder
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.functional import set_step_mode, streaming

MODES = ("deterministic", "random", "current")
SJ_CLASSES = {
    "deterministic": "PopSpikeEncoderDeterministic",
    "random": "PopSpikeEncoderRandom",
    "current": "PopEncoder",
}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def observations(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=seeded(seed), dtype=torch.float64) * 1.5


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("mode", MODES)
def test_equals_spikingjelly_outputs_and_gradients(mode, backend):
    sj_encoding = pytest.importorskip(
        "spikingjelly.activation_based.encoding", reason="SpikingJelly is not installed"
    )
    sj_functional = pytest.importorskip("spikingjelly.activation_based.functional")
    obs_dim, pop_dim, T = 6, 10, 16
    theirs = getattr(sj_encoding, SJ_CLASSES[mode])(obs_dim, pop_dim, T, (-3.0, 3.0), 0.5)
    theirs = theirs.double()
    ours = LearnablePopulationEncoder(
        obs_dim, pop_dim, T, (-3.0, 3.0), 0.5, mode=mode, generator=seeded(11), backend=backend
    ).double()
    with torch.no_grad():  # trained-looking receptive fields, the same on both sides
        noise = torch.randn(2, 1, obs_dim, pop_dim, generator=seeded(3), dtype=torch.float64)
        for module in (theirs, ours):
            module.mean.add_(0.2 * noise[0])
            module.std.mul_(1 + 0.3 * noise[1].abs())
    x = observations(32, obs_dim)
    x_sj, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(11)  # SpikingJelly draws from the global generator
    want = theirs(x_sj)
    sj_functional.reset_net(theirs)
    got = ours(x_sf)
    assert got.shape == want.shape == (T, 32, obs_dim * pop_dim)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want.to(got.dtype), rtol=0.0, atol=0.0)
    if mode != "current":
        assert 0.05 < want.mean() < 0.9
    # dyadic weights: SpikingJelly's random spikes are float32, so its gradient is too
    w = torch.randint(0, 16, want.shape, generator=seeded(4)).double() / 16
    want_grads = torch.autograd.grad((want * w).sum(), [x_sj, theirs.mean, theirs.std])
    got_grads = torch.autograd.grad((got * w).sum(), [x_sf, ours.mean, ours.std])
    for name, g_sf, g_sj in zip(("x", "mean", "std"), got_grads, want_grads):
        assert g_sj.abs().sum() > 0, name
        torch.testing.assert_close(g_sf, g_sj, rtol=1e-10, atol=1e-12, msg=name)


def test_random_mode_global_generator_and_state_dict_from_spikingjelly():
    sj_encoding = pytest.importorskip(
        "spikingjelly.activation_based.encoding", reason="SpikingJelly is not installed"
    )
    theirs = sj_encoding.PopSpikeEncoderRandom(3, 4, 8, (-1.0, 1.0), 0.4)
    with torch.no_grad():
        theirs.mean.add_(0.1)
    ours = LearnablePopulationEncoder(3, 4, 8, (0.0, 0.0), 1.0, mode="random")
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(5, 3)
    torch.manual_seed(2)
    want = theirs(x)
    torch.manual_seed(2)
    assert torch.equal(ours(x), want)


def test_hand_worked_activity_and_spikes():
    # centres linspace(-1, 1, 3) = -1, 0, 1, σ = 0.5: at x = 0 the activities are
    # exp(-0.5 (1/0.5)^2) = e^-2, 1, e^-2; at x = 0.5, e^-4.5, e^-0.5, e^-0.5.
    enc = LearnablePopulationEncoder(2, 3, 6, (-1.0, 1.0), 0.5).double()
    x = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    e = math.exp
    expected = torch.tensor([[e(-2), 1.0, e(-2), e(-4.5), e(-0.5), e(-0.5)]], dtype=torch.float64)
    torch.testing.assert_close(enc.activity(x), expected, rtol=1e-15, atol=0.0)
    # IF neuron, θ = 0.999, soft reset: a = 1 fires at every step; a = e^-0.5 ≈ 0.607
    # charges 0.607, 1.213 (fire, V = 0.214), 0.820, 1.427 (fire, 0.428), 1.034 (fire,
    # 0.035), 0.642: spikes at steps 1, 3, 4; a = e^-2 ≈ 0.135 stays below θ for 6 steps.
    s = enc(x)[:, 0]
    assert s[:, 1].tolist() == [1.0] * 6
    assert s[:, 4].tolist() == [0, 1, 0, 1, 1, 0]
    assert s[:, 0].sum() == 0
    assert enc.out_features == 6


@pytest.mark.parametrize(
    ("mode", "per_step"), [("deterministic", None), ("random", 1), ("current", 1)]
)
def test_straight_through_gradient_of_the_spike_count(mode, per_step):
    # d(Σ_t s[t]) / da: T for Bernoulli draws and currents; for the IF neuron with a
    # straight-through spike and a detached reset, step t's membrane holds t + 1 copies
    # of a, so the sum over steps is T (T + 1) / 2.
    T = 7
    enc = LearnablePopulationEncoder(2, 3, T, (-1.0, 1.0), 0.5, mode=mode).double()
    x = torch.rand(4, 2, dtype=torch.float64, generator=seeded(5))
    a = enc.activity(x).detach().requires_grad_()
    enc.activity = lambda _: a  # feed the activity in directly
    (g,) = torch.autograd.grad(enc(x).sum(), [a])
    expected = T * (T + 1) / 2 if per_step is None else T * per_step
    assert torch.equal(g, torch.full_like(g, expected))


def test_gradcheck_of_x_mean_and_std():
    enc = LearnablePopulationEncoder(3, 4, 2, (-1.0, 2.0), 0.7, mode="current").double()

    def run(x, mean, std):
        return torch.func.functional_call(enc, {"mean": mean, "std": std}, (x,))

    inputs = (observations(2, 3), enc.mean.detach() + 0.1, enc.std.detach() * 1.3)
    assert torch.autograd.gradcheck(run, tuple(t.clone().requires_grad_() for t in inputs))


def test_random_mode_rate_matches_the_activity():
    T = 400
    enc = LearnablePopulationEncoder(4, 8, T, (-2.0, 2.0), 1.0, mode="random", generator=seeded(0))
    x = torch.rand(64, 4, generator=seeded(1)) * 4 - 2
    a = enc.activity(x).detach().double()
    counts = enc(x).detach().sum(0).double()
    # Pooled over the 2048 neurons: a standard normal score of the total count.
    z = (counts - T * a).sum() / torch.sqrt((T * a * (1 - a)).sum())
    assert abs(float(z)) <= 5
    # Per neuron, where the normal approximation holds (T a (1 - a) >= 10): 5 sigma.
    var = T * a * (1 - a)
    ok = var >= 10
    assert ok.sum() > 1000
    assert bool(((counts - T * a)[ok].abs() <= 5 * var[ok].sqrt()).all())


@pytest.mark.parametrize("mode", MODES)
def test_single_step_equals_multi_step(mode):
    x = observations(5, 3).float()
    enc = LearnablePopulationEncoder(3, 4, 9, (-2.0, 2.0), 0.6, mode=mode, generator=seeded(3))
    whole = enc(x)
    enc.generator.manual_seed(3)
    set_step_mode(enc, "s")
    if mode == "deterministic":
        assert enc.neuron.step_mode == "s"
        with pytest.raises(StateError, match="streaming"):
            enc(x)
        with streaming(enc):
            steps = torch.stack([enc(x) for _ in range(9)])
    else:  # stateless: no streaming needed
        steps = torch.stack([enc(x) for _ in range(9)])
    assert torch.equal(steps, whole)


def test_leading_dimensions_are_kept():
    enc = LearnablePopulationEncoder(3, 2, 4, (-1.0, 1.0), 0.5, mode="current")
    x = torch.rand(2, 5, 3)
    out = enc(x)
    assert out.shape == (4, 2, 5, 6)
    torch.testing.assert_close(out[2, 1], enc(x[1])[2])
    assert enc(x[0, 0]).shape == (4, 6)


@pytest.mark.parametrize("mode", MODES)
def test_output_dtype_is_the_promoted_one_of_input_and_parameters(mode):
    enc = LearnablePopulationEncoder(3, 2, 4, (-1.0, 1.0), 0.5, mode=mode)
    x = torch.rand(2, 3)
    assert enc(x.double()).dtype == torch.float64
    assert enc(x.half()).dtype == torch.float32  # float32 parameters
    assert enc.half()(x.half()).dtype == torch.float16


def test_errors():
    args = (3, 4, 5, (-1.0, 1.0), 0.5)
    with pytest.raises(ShapeError, match=r"obs_dim=3.*\(2, 4\)"):
        LearnablePopulationEncoder(*args)(torch.rand(2, 4))
    with pytest.raises(DTypeError):
        LearnablePopulationEncoder(*args)(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ConfigurationError, match="mode"):
        LearnablePopulationEncoder(*args, mode="poisson")
    with pytest.raises(ConfigurationError, match="std"):
        LearnablePopulationEncoder(3, 4, 5, (-1.0, 1.0), 0.0)
    for bad in [(1.0,), "ab", 1.0, (0.0, float("nan"))]:
        with pytest.raises(ConfigurationError, match="mean_range"):
            LearnablePopulationEncoder(3, 4, 5, bad, 0.5)
    for name, index in (("obs_dim", 0), ("pop_dim", 1), ("T", 2)):
        bad = list(args)
        bad[index] = 0
        with pytest.raises(ConfigurationError, match=name):
            LearnablePopulationEncoder(*bad)
    with pytest.raises(ConfigurationError, match="generator"):
        LearnablePopulationEncoder(*args, mode="random", generator=1)
