"""The encoders that map Norse 1.1's: SignedPoissonEncoder, ConstantCurrentLIFEncoder
(with first_spike_only), FirstSpikeFilter and population_rbf. Equal to Norse (same
draws, float64 gradients), to hand-worked trains and to plain reference loops."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.encoding import (
    ConstantCurrentLIFEncoder,
    FirstSpikeFilter,
    PoissonEncoder,
    SignedPoissonEncoder,
    population_rbf,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.functional import set_step_mode, streaming
from spikeflow.surrogate import Sigmoid, SuperSpike


def norse_encode():
    return pytest.importorskip("norse.torch.functional.encode", reason="Norse is not installed")


@pytest.fixture
def float64_default():
    """Norse builds its state (and linspace) in the default dtype: make it float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grads(out: torch.Tensor, inputs: list[torch.Tensor], weight: torch.Tensor) -> tuple:
    return torch.autograd.grad((out * weight).sum(), inputs)


# --------------------------------------------------------------------------- signed Poisson


@pytest.mark.parametrize(("f_max", "dt"), [(100.0, 1e-3), (1000.0, 1e-3)])
def test_signed_poisson_equals_norse_with_the_same_draws(f_max, dt):
    encode = norse_encode()
    x = torch.rand(6, 50, generator=seeded(1)) * 2 - 1
    x[0, :3] = torch.tensor([-1.0, 0.0, 1.0])
    want = encode.signed_poisson_encode(x, 200, f_max=f_max, dt=dt, generator=seeded(5))
    got = SignedPoissonEncoder(200, generator=seeded(5))(x * (dt * f_max))
    assert (want == 1).sum() > 500 and (want == -1).sum() > 500
    assert torch.equal(got, want)
    # and the unsigned pair, as docs/encoding.md maps it
    want = encode.poisson_encode(x.abs(), 200, f_max=f_max, dt=dt, generator=seeded(6))
    assert torch.equal(PoissonEncoder(200, generator=seeded(6))(x.abs() * (dt * f_max)), want)


def test_signed_poisson_signs_rates_and_magnitudes():
    x = torch.tensor([-1.0, -0.7, -0.2, 0.0, 0.3, 0.9, 1.0])[:, None].repeat(1, 400)
    T = 500
    s = SignedPoissonEncoder(T, generator=seeded(2))(x)
    assert s.shape == (T, 7, 400) and s.dtype == x.dtype
    assert bool((s * torch.sign(x) >= 0).all())  # only spikes of x's sign
    assert torch.equal(s[:, 0], -torch.ones(T, 400)) and torch.equal(s[:, 6], torch.ones(T, 400))
    assert s[:, 3].abs().sum() == 0
    # mean over T·400 draws per value: within 5 pooled standard deviations of x
    p = x[:, 0].abs()
    sigma = torch.sqrt(p * (1 - p) / (T * 400))
    assert bool(((s.mean(dim=(0, 2)) - x[:, 0]).abs() <= 5 * sigma + 1e-12).all())
    # |s| is the unsigned encoder's train of |x| with the same uniforms
    assert torch.equal(s.abs(), PoissonEncoder(T, generator=seeded(2))(x.abs()))


def test_signed_poisson_single_step_is_stateless_and_draws_in_order():
    x = torch.rand(3, 8, generator=seeded(0)) * 2 - 1
    whole = SignedPoissonEncoder(12, generator=seeded(9))(x)
    enc = SignedPoissonEncoder(12, step_mode="s", generator=seeded(9))
    assert torch.equal(torch.stack([enc(x) for _ in range(12)]), whole)  # no streaming


def test_signed_poisson_errors():
    with pytest.raises(ConfigurationError, match=r"\[-1, 1\].*1\.5"):
        SignedPoissonEncoder(4)(torch.tensor([0.2, 1.5]))
    with pytest.raises(ConfigurationError, match="NaN"):
        SignedPoissonEncoder(4)(torch.tensor([0.2, float("nan")]))
    with pytest.raises(DTypeError):
        SignedPoissonEncoder(4)(torch.tensor([1, -1]))
    with pytest.raises(ConfigurationError, match="T"):
        SignedPoissonEncoder(0)
    with pytest.raises(ConfigurationError, match="generator"):
        SignedPoissonEncoder(4, generator=5)


# --------------------------------------------------------------------------- constant current


def norse_params(**values: float):
    lif = pytest.importorskip("norse.torch.functional.lif", reason="Norse is not installed")
    return lif.LIFParameters(**{k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()})


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("first_spike_only", [False, True])
def test_constant_current_equals_norse(float64_default, backend, first_spike_only):
    encode = norse_encode()
    p = norse_params(tau_mem_inv=200.0, v_th=0.8)  # dt · tau_mem_inv = 0.2: tau = 5
    x = torch.rand(6, 40, generator=seeded(3)) * 4 - 0.5  # some never fire
    x[0, 0] = 4.0  # H[0] = 4 / 5 = 0.8 = θ exactly: no spike, Norse fires on H > θ
    x_norse, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    norse_fn = (
        encode.spike_latency_lif_encode if first_spike_only else encode.constant_current_lif_encode
    )
    want = norse_fn(x_norse, 30, p=p, dt=1e-3)
    enc = ConstantCurrentLIFEncoder(
        30,
        tau=5.0,
        v_threshold=0.8,
        strict_firing=True,
        surrogate_function=SuperSpike(alpha=1.0),
        first_spike_only=first_spike_only,
        backend=backend,
    )
    got = enc(x_ours)
    assert want.sum() > 200 if not first_spike_only else want.sum() > 150
    assert torch.equal(got, want)
    assert want[0, 0, 0] == 0 and want[1, 0, 0] == 1
    w = torch.rand(want.shape, generator=seeded(4))
    (expected,) = grads(want, [x_norse], w)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(grads(got, [x_ours], w)[0], expected, rtol=1e-10, atol=1e-12)


def test_constant_current_hand_worked():
    # tau = 2, θ = 1, V_r = 0: H[t] = V + (x - V)/2.
    # x = 1.5: H = 0.75, 1.125 (fire, V = 0), 0.75, 1.125, ...: period 2.
    # x = 3: H = 1.5 at every step: fires every step. x = 0.9: V -> 0.9, never fires.
    x = torch.tensor([1.5, 3.0, 0.9, -2.0], dtype=torch.float64)
    s = ConstantCurrentLIFEncoder(8)(x)
    assert s[:, 0].tolist() == [0, 1] * 4
    assert s[:, 1].tolist() == [1] * 8
    assert s[:, 2].sum() == 0 and s[:, 3].sum() == 0
    # x = 2: H[0] = 1 = θ exactly, a spike with H >= θ (default), none with H > θ.
    exact = torch.tensor([2.0])
    assert ConstantCurrentLIFEncoder(2)(exact)[:, 0].tolist() == [1, 1]
    assert ConstantCurrentLIFEncoder(2, strict_firing=True)(exact)[:, 0].tolist() == [0, 1]
    once = ConstantCurrentLIFEncoder(8, first_spike_only=True)(x)
    assert once.sum(0).tolist() == [1, 1, 0, 0]
    assert once[1, 0] == 1 and once[0, 1] == 1


def reference_loop(x, T, tau, theta, v_reset, surrogate, strict):
    """The encoder's equations, one plain step at a time (autograd through it)."""
    v = torch.full_like(x, v_reset)
    out = []
    for _ in range(T):
        h = v + (x - (v - v_reset)) / tau
        s = surrogate(h - theta, strict)
        v = h * (1 - s) + v_reset * s
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("strict", [False, True])
def test_constant_current_equals_a_reference_loop_with_gradients(strict):
    x = (torch.rand(5, 30, generator=seeded(8), dtype=torch.float64) * 3).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    enc = ConstantCurrentLIFEncoder(
        25, tau=4.0, v_threshold=0.7, v_reset=-0.25, strict_firing=strict
    )
    got = enc(x)
    want = reference_loop(x_ref, 25, 4.0, 0.7, -0.25, Sigmoid(alpha=4.0), strict)
    assert torch.equal(got, want) and want.sum() > 300
    w = torch.rand(want.shape, generator=seeded(1), dtype=torch.float64)
    torch.testing.assert_close(
        grads(got, [x], w)[0], grads(want, [x_ref], w)[0], rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("first_spike_only", [False, True])
def test_constant_current_single_step_equals_multi_step(first_spike_only):
    x = torch.rand(4, 6, generator=seeded(2)) * 3
    enc = ConstantCurrentLIFEncoder(20, first_spike_only=first_spike_only)
    whole = enc(x)
    assert torch.equal(enc(x), whole)  # multi-step calls start afresh
    with streaming(enc):  # chunks continue the membrane
        assert torch.equal(torch.cat([enc(x), enc(x)])[:20], whole)
    set_step_mode(enc, "s")
    assert enc.neuron.step_mode == "s"
    with pytest.raises(StateError, match="streaming"):
        enc(x)
    with streaming(enc):
        steps = torch.stack([enc(x) for _ in range(20)])
        enc.reset()
        assert torch.equal(enc(x), whole[0])
    assert torch.equal(steps, whole)


def test_constant_current_errors():
    with pytest.raises(ConfigurationError, match="T"):
        ConstantCurrentLIFEncoder(0)
    with pytest.raises(ConfigurationError, match="tau"):
        ConstantCurrentLIFEncoder(5, tau=1.0)
    with pytest.raises(ConfigurationError, match="first_spike_only"):
        ConstantCurrentLIFEncoder(5, first_spike_only="no")
    with pytest.raises(DTypeError):
        ConstantCurrentLIFEncoder(5)(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ConfigurationError, match="NaN"):
        ConstantCurrentLIFEncoder(5)(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ShapeError, match="0-dim"):
        ConstantCurrentLIFEncoder(5)(torch.tensor(1.0))


# --------------------------------------------------------------------------- first spike


def test_first_spike_filter_equals_norse_with_gradients(float64_default):
    encode = norse_encode()
    trains = (torch.rand(25, 4, 30, generator=seeded(7)) < 0.15).double()
    trains[:, 0, 0] = 0  # a silent element
    a, b = trains.clone().requires_grad_(), trains.clone().requires_grad_()
    want = encode.spike_latency_encode(a)
    got = FirstSpikeFilter()(b)
    assert torch.equal(got, want)
    assert torch.equal(got.sum(0), (trains.sum(0) > 0).double())
    w = torch.rand(want.shape, generator=seeded(2))
    assert torch.equal(grads(got, [b], w)[0], grads(want, [a], w)[0])


def test_first_spike_filter_hand_worked_and_graded_spikes():
    s = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, -0.5], [0.0, 1.0, 2.0]])
    out = FirstSpikeFilter()(s)
    assert out.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, -0.5], [0, 0, 0]]


def test_first_spike_filter_streaming():
    trains = (torch.rand(30, 3, 7, generator=seeded(3)) < 0.1).float()
    whole = FirstSpikeFilter()(trains)
    f = FirstSpikeFilter()
    with streaming(f):
        chunks = torch.cat([f(trains[:4]), f(trains[4:4]), f(trains[4:20]), f(trains[20:])])
    assert torch.equal(chunks, whole)
    f.step_mode = "s"
    with pytest.raises(StateError):
        f(trains[0])
    with streaming(f):
        assert torch.equal(torch.stack([f(t) for t in trains]), whole)
        with pytest.raises(StateError, match="reset_net"):
            f(trains[0, :2])
    with pytest.raises(ShapeError, match="time dimension"):
        FirstSpikeFilter()(torch.tensor(1.0))
    with pytest.raises(DTypeError):
        FirstSpikeFilter()(trains.bool())


# --------------------------------------------------------------------------- population_rbf


@pytest.mark.parametrize(("n", "scale"), [(1, 1.0), (3, 2.0), (10, 0.5), (16, 7.0)])
def test_population_rbf_equals_norse_values_and_gradients(float64_default, n, scale):
    encode = norse_encode()
    x = torch.rand(5, 7, generator=seeded(n)) * scale * 1.2 - 0.1
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = encode.population_encode(a, n, scale=scale)
    got = population_rbf(b, n, scale)
    assert got.shape == (5, 7, n) and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0.0)
    w = torch.rand(want.shape, generator=seeded(0))
    torch.testing.assert_close(grads(got, [b], w)[0], grads(want, [a], w)[0], rtol=1e-12, atol=0.0)
    # Norse's default scale, the batch maximum
    torch.testing.assert_close(population_rbf(x, n, float(x.max())), encode.population_encode(x, n))


def test_population_rbf_hand_worked_and_gradcheck():
    # n = 3, scale 2: centres 0, 1, 2; r_j(x) = exp(-(x - c_j)^2): at x = 1, e^-1, 1, e^-1.
    r = population_rbf(torch.tensor([1.0, 0.0], dtype=torch.float64), 3, 2.0)
    e1, e4 = math.exp(-1), math.exp(-4)
    expected = torch.tensor([[e1, 1.0, e1], [1.0, e1, e4]], dtype=torch.float64)
    torch.testing.assert_close(r, expected, rtol=1e-15, atol=0.0)
    x = torch.rand(4, 3, dtype=torch.float64, generator=seeded(1)).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: population_rbf(v, 5, 1.5), (x,))


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), None, "1"])
def test_population_rbf_bad_scale(scale):
    with pytest.raises(ConfigurationError, match="scale"):
        population_rbf(torch.rand(3), 4, scale)


def test_population_rbf_other_errors():
    with pytest.raises(ConfigurationError, match="n_neurons"):
        population_rbf(torch.rand(3), 0, 1.0)
    with pytest.raises(DTypeError):
        population_rbf(torch.arange(3), 4, 1.0)
