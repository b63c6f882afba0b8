"""Sigma-delta layers (spikeflow.layers.sigma_delta): hand-computed steps, the θ bound,
straight-through gradients, streaming and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import functional
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.layers import (
    DeltaEncoder,
    DeltaSynapse,
    SigmaDecoder,
    SigmaDelta,
    delta_activity,
    delta_encode,
    sigma_decode,
)
from spikeflow.layers import Linear as SeqLinear

f64 = torch.float64


def _column(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=f64).reshape(-1, 1, 1)  # [T, B=1, 1]


def test_delta_encoder_hand_example():
    # a = .375 .5 .625 .25 .125 1, θ = .25 (dyadic: exact in binary). By hand:
    # t0: d=.375 sent, ref .375 | t1: d=.125 held | t2: d=.25 = θ sent (>=), ref .625
    # t3: d=-.375 sent, ref .25 | t4: d=-.125 held | t5: d=.75 sent, ref 1
    a = _column([0.375, 0.5, 0.625, 0.25, 0.125, 1.0])
    enc = DeltaEncoder(0.25)
    out = enc(a)
    assert out.flatten().tolist() == [0.375, 0.0, 0.25, -0.375, 0.0, 0.75]
    s, ref = delta_encode(a, 0.25)
    assert torch.equal(s, out) and ref.item() == 1.0
    # the receiver's sum is the reference: within θ of the input at every step
    assert out.cumsum(0).flatten().tolist() == [0.375, 0.375, 0.625, 0.25, 0.25, 1.0]


def test_sigma_delta_unit_hand_example():
    # input deltas .5 -.75 .5 .125 .5 -1 -> sigma .5 -.25 .25 .375 .875 -.125
    # -> relu .5 0 .25 .375 .875 0 -> delta θ=.25 (ref .5, 0, .25, held, .875, 0)
    x = _column([0.5, -0.75, 0.5, 0.125, 0.5, -1.0])
    unit = SigmaDelta(threshold=0.25)
    out = unit(x)
    assert out.flatten().tolist() == [0.5, -0.5, 0.25, 0.0, 0.625, -0.875]
    assert SigmaDecoder()(x).flatten().tolist() == [0.5, -0.25, 0.25, 0.375, 0.875, -0.125]


def test_theta_zero_sends_every_change_and_sigma_rebuilds_it():
    a = torch.randn(20, 3, 5, dtype=f64)
    s, ref = delta_encode(a, 0.0)
    assert torch.equal(s[0], a[0]) and torch.equal(s[1:], a[1:] - a[:-1])
    assert torch.equal(ref, a[-1])
    total, last = sigma_decode(s)
    torch.testing.assert_close(total, a, rtol=0, atol=1e-13)
    assert torch.equal(last, total[-1])
    # the loop (a zero entry in a tensor θ takes the loop path) equals the vectorised form
    theta = torch.tensor([0.0, 0.0, 0.0, 0.0, 1e-300], dtype=f64)
    s_loop, _ = delta_encode(a, theta)
    assert torch.equal(s_loop, s)


@pytest.mark.parametrize("theta", [0.05, 0.3, "per-channel"])
def test_accumulated_value_stays_within_theta(theta):
    # A slow random walk: |a[t] - Σ s| < θ at every step (0 where a change was sent).
    a = torch.randn(200, 4, 6, dtype=f64).mul(0.05).cumsum(0)
    if theta == "per-channel":
        theta = torch.linspace(0.02, 0.4, 6, dtype=f64)
    s, ref = delta_encode(a, theta)
    error = (a - s.cumsum(0)).abs()
    limit = torch.as_tensor(theta, dtype=f64).expand_as(a)
    assert bool((error < limit + 1e-12).all())
    sent = s != 0
    assert bool((error[sent] < 1e-12).all())
    assert 0.0 < float(sent.double().mean()) < 0.9  # it does hold changes back
    torch.testing.assert_close(ref, s.sum(0), rtol=0, atol=1e-12)


def test_straight_through_gradient():
    # backward: ∂L/∂a[t] = g[t] - g[t+1], whatever θ (Lava-DL's delta unit)
    a = torch.randn(7, 2, 3, dtype=f64).cumsum(0)
    g = torch.randn_like(a)
    grads = []
    for theta in (0.0, 0.5):
        x = a.clone().requires_grad_()
        delta_encode(x, theta)[0].backward(g)
        grads.append(x.grad)
    expected = g - torch.cat((g[1:], torch.zeros_like(g[:1])))
    assert torch.equal(grads[0], expected) and torch.equal(grads[1], expected)
    # so sigma ∘ delta passes the gradient through unchanged (the ANN's)
    x = a.clone().requires_grad_()
    sigma_decode(delta_encode(x, 0.5)[0])[0].backward(g)
    torch.testing.assert_close(x.grad, g, rtol=0, atol=1e-12)


def test_gradcheck_float64():
    a = torch.randn(5, 2, 3, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: delta_encode(t, 0.0)[0], (a,))
    assert torch.autograd.gradcheck(lambda t: sigma_decode(t, torch.ones(2, 3, dtype=f64))[0], (a,))
    unit = SigmaDelta(nn.Softplus(), threshold=0.0)
    assert torch.autograd.gradcheck(unit, (a,))
    layer = nn.Linear(3, 4).double()
    synapse = DeltaSynapse(layer)

    def through(x, w, b):
        params = {"layer.weight": w, "bias": b}
        return SigmaDecoder()(torch.func.functional_call(synapse, params, (x,)))

    w = layer.weight.detach().clone().requires_grad_()
    b = torch.randn(4, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(through, (a, w, b))


def test_synapse_sends_the_bias_once():
    layer = nn.Conv2d(2, 3, 3, padding=1).double()
    weight, bias = layer.weight, layer.bias
    synapse = DeltaSynapse(layer)
    assert layer.bias is None and synapse.bias is bias  # the same parameter moved
    a = torch.rand(5, 4, 2, 6, 6, dtype=f64)
    ann = nn.Conv2d(2, 3, 3, padding=1).double()
    ann.weight.data.copy_(weight), ann.bias.data.copy_(bias)
    out = SigmaDecoder()(synapse(delta_encode(a)[0]))
    expected = torch.stack([ann(step) for step in a])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    linear = DeltaSynapse(nn.Linear(4, 2, bias=False))
    assert linear.bias is None and linear(torch.ones(3, 1, 4)).shape == (3, 1, 2)


def _step_by_step(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    functional.set_step_mode(net, "s")
    try:
        with functional.streaming(net):
            return torch.stack([net(step) for step in x])
    finally:
        functional.set_step_mode(net, "m")


def test_streaming_equals_one_call():
    torch.manual_seed(1)
    net = nn.Sequential(
        DeltaEncoder(0.1),
        DeltaSynapse(nn.Conv2d(1, 4, 3, padding=1)),
        SigmaDelta(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)), threshold=0.05),
        DeltaSynapse(nn.Conv2d(4, 2, 1)),
        SigmaDecoder(),
    ).double()
    x = torch.rand(9, 3, 1, 6, 6, dtype=f64).mul(0.2).cumsum(0)
    whole = net(x)
    torch.testing.assert_close(_step_by_step(net, x), whole, rtol=0, atol=1e-12)
    with functional.streaming(net):
        chunks = torch.cat([net(x[:4]), net(x[4:5]), net(x[5:])])
    torch.testing.assert_close(chunks, whole, rtol=0, atol=1e-12)
    # no state leaks: a second call (no reset) gives the same, and nothing is kept
    assert torch.equal(net(x), whole)
    assert all(m.state is None for m in functional.memory_modules(net))


def test_single_step_needs_streaming_and_one_batch():
    unit = SigmaDelta(step_mode="s")
    with pytest.raises(StateError, match="streaming is off"):
        unit(torch.rand(2, 3))
    with functional.streaming(unit):
        unit(torch.rand(2, 3))
        with pytest.raises(StateError, match="reset_net"):
            unit(torch.rand(4, 3))


def test_bad_arguments_are_named():
    with pytest.raises(ConfigurationError, match=r"threshold must be finite and >= 0, got -0\.1"):
        DeltaEncoder(-0.1)
    with pytest.raises(ConfigurationError, match="threshold must be finite"):
        SigmaDelta(threshold=float("nan"))
    with pytest.raises(ConfigurationError, match="1 of 2 entries are not"):
        DeltaEncoder(torch.tensor([0.1, -1.0]))
    with pytest.raises(ConfigurationError, match="threshold must be a number"):
        DeltaEncoder(True)
    with pytest.raises(ConfigurationError, match=r"floating-point tensor, got torch\.int64"):
        DeltaEncoder(torch.tensor([1, 2]))
    with pytest.raises(DTypeError, match=r"DeltaEncoder expects a floating-point input.*int64"):
        DeltaEncoder()(torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(DTypeError, match=r"SigmaDecoder expects"):
        SigmaDelta()(torch.ones(3, 2, dtype=torch.int32))
    with pytest.raises(DTypeError, match="delta_encode"):
        delta_encode(torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ShapeError, match=r"\[T, B, \.\.\.\]"):
        DeltaEncoder()(torch.ones(3))
    with pytest.raises(ConfigurationError, match="activation must be"):
        SigmaDelta(activation=3)
    with pytest.raises(ConfigurationError, match=r"layer must be a torch\.nn\.Linear"):
        DeltaSynapse(nn.ReLU())
    with pytest.raises(ConfigurationError, match="step_mode='s'"):
        DeltaSynapse(SeqLinear(3, 2))  # a multi-step layer cannot run on folded steps
    with pytest.raises(ConfigurationError, match="carries state"):
        SigmaDelta(activation=DeltaEncoder(step_mode="s"))


def test_step_mode_reaches_the_units_parts():
    unit = SigmaDelta(nn.ReLU(), 0.1)
    functional.set_step_mode(unit, "s")
    assert unit.sigma.step_mode == "s" and unit.delta.step_mode == "s"
    assert unit.threshold == 0.1
    with functional.streaming(unit):
        assert unit(torch.ones(2, 3)).shape == (2, 3)


def test_delta_activity_counts_the_values_sent():
    net = nn.Sequential(DeltaEncoder(0.25), SigmaDelta(threshold=0.25))
    a = _column([0.375, 0.5, 0.625, 0.25, 0.125, 1.0])  # 4 of 6 sent (hand example)
    activity = delta_activity(net, a)
    assert activity["0"] == pytest.approx(4 / 6)
    # the unit receives deltas whose sums are the reference .375 .375 .625 .25 .25 1:
    # relu of that, re-encoded with θ = .25: sends at t0, t2, t3, t5 as well
    assert activity["1.delta"] == pytest.approx(4 / 6)
    assert all(m.state is None for m in functional.memory_modules(net))
