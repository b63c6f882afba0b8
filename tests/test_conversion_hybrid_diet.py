"""Hybrid training's DIET-SNN leak and STDB surrogate, against float64 reference loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from spikeflow.conversion import (
    STDB,
    ConversionIFNode,
    TrainableIFNode,
    constant_input,
    convert,
    fine_tunable,
    frozen,
)
from spikeflow.conversion.snn import TimeFolded
from spikeflow.conversion.stdb import stdb_fire
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.surrogate import NorseTriangle, Triangle

F64 = torch.float64


class _Triangle(torch.autograd.Function):
    """Θ(z) forward, DIET-SNN's max(0, 1 − |z|) backward (written from the paper)."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * (1 - z.abs()).clamp_min(0)


class _PaperSTDB(torch.autograd.Function):
    """STDB as the paper writes it: ∂S/∂z = α·exp(−β·Δt) (Rathi et al. 2020)."""

    @staticmethod
    def forward(ctx, z, dt, alpha, beta):
        ctx.save_for_backward(dt)
        ctx.alpha, ctx.beta = alpha, beta
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        (dt,) = ctx.saved_tensors
        return grad * ctx.alpha * torch.exp(-ctx.beta * dt), None, None, None


class _STDBOfMembraneAndThreshold(torch.autograd.Function):
    """STDB's spike of ``(H, θ)``: Θ(H/θ − 1) forward; backward, θ as the membrane with
    the opposite sign, ∂S/∂H = α·exp(−β·Δt)/θ = −∂S/∂θ (hand-derived: Θ((H − θ)/θ) is
    Θ(H − θ), the 1/θ only scales the surrogate's argument)."""

    @staticmethod
    def forward(ctx, h, theta, dt, alpha, beta):
        ctx.save_for_backward(theta, alpha * torch.exp(-beta * dt) / theta)
        return (h / theta - 1.0 >= 0).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        theta, slope = ctx.saved_tensors
        return grad * slope, (-grad * slope).sum_to_size(theta.shape), None, None, None


def _stdb_spike(h, theta, dt, stdb):
    theta = torch.as_tensor(theta, dtype=h.dtype)
    return _STDBOfMembraneAndThreshold.apply(h, theta, dt, *stdb)


def _step_loop(x_seq, theta, leak, v0, stdb=None, detach_reset=False):
    """One layer of DIET-SNN neurons as a float64 loop: U = λ·U + X, z = U/θ − 1,
    S = Θ(z), output θ·S, U ← U − θ·S; STDB: Δt = t − 1 − last, last ← t − 1 where the
    neuron fired, last = −1000 before any spike (the authors' bookkeeping, verbatim)."""
    v = torch.zeros_like(x_seq[0]) + v0 * theta
    last = torch.full_like(x_seq[0], -1000.0)
    out = []
    for t, x in enumerate(x_seq):
        h = leak * v + x
        z = h / theta - 1.0
        s = _Triangle.apply(z) if stdb is None else _stdb_spike(h, theta, t - 1 - last, stdb)
        last = torch.where(s > 0, torch.full_like(last, float(t - 1)), last)
        v = h - theta * (s.detach() if detach_reset else s)
        out.append(theta * s)
    return torch.stack(out)


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("leak0", [1.0, 0.8])
@pytest.mark.parametrize("stdb", [None, (0.3, 0.01), (0.5, 0.2)])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_neuron_gradients_match_a_float64_loop(backend, per_channel, leak0, stdb, detach_reset):
    torch.manual_seed(0)
    x = (torch.randn(9, 3, 4, dtype=F64) * 0.6 + 0.35).requires_grad_()
    theta0 = torch.rand(4, dtype=F64) + 0.3 if per_channel else torch.tensor(0.7, dtype=F64)
    neuron = TrainableIFNode(
        theta0, 0.5, surrogate_function=STDB(*stdb) if stdb else None,
        leak=torch.tensor(leak0, dtype=F64), learnable_leak=True, backend=backend,
        detach_reset=detach_reset,
    )  # fmt: skip
    theta, leak = theta0.clone().requires_grad_(), torch.tensor(leak0, dtype=F64).requires_grad_()
    expected = _step_loop(x, theta, leak, 0.5, stdb, detach_reset)
    out = neuron(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    if leak0 == 1.0:  # the converted neuron, spike for spike
        torch.testing.assert_close(out, ConversionIFNode(theta0, 0.5)(x), rtol=0, atol=0)
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), [x, neuron.v_threshold, neuron.leak])
    want = torch.autograd.grad((expected * weights).sum(), [x, theta, leak])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert float(want[2].abs()) > 1e-3 and float((want[0] != 0).double().mean()) > 0.3


def test_stdb_gradient_is_the_authors_formula_of_the_spike_time():
    surrogate = STDB(alpha=0.4, beta=0.05)
    dt = torch.tensor([1.0, 2.0, 7.0, 700.0], dtype=F64)
    expected = 0.4 * torch.exp(-1 * dt) ** 0.05  # as the authors' code computes it
    torch.testing.assert_close(surrogate.derivative(dt), expected, rtol=1e-12, atol=0)
    # ... which underflows (exp(−Δt) = 0 from Δt ≈ 745 in float64, 104 in float32): 0
    # for a neuron that has not fired (Δt ≥ 999); the formula gives α·exp(−β·Δt)
    far = torch.tensor([1000.0], dtype=F64)
    assert float(0.4 * torch.exp(-1 * far) ** 0.05) == 0.0
    assert float(surrogate.derivative(far)) == pytest.approx(0.4 * 2.718281828459045**-50)
    z = torch.tensor([-0.9, 0.0, 0.3, -5.0], dtype=F64, requires_grad=True)
    spikes = surrogate(z, dt)
    assert spikes.tolist() == [0.0, 1.0, 1.0, 0.0]  # Θ(0) = 1, as the converted neuron
    (grad,) = torch.autograd.grad(spikes.sum(), z)
    torch.testing.assert_close(grad, expected, rtol=1e-14, atol=0)  # not a function of z
    assert (STDB().alpha, STDB().beta) == (0.3, 0.01)  # the authors' defaults
    # Δt in a neuron: 999 at the first step for a neuron that has not fired (the authors'
    # t − 1 − last with last = −1000), then one more per step, 1 on the step after a
    # spike; one neuron whose input fires at step 2
    neuron = TrainableIFNode(1.0, surrogate_function="stdb", learnable_threshold=False)
    x = torch.tensor([[0.4], [0.7], [0.1], [0.1]], dtype=F64, requires_grad=True)
    out = neuron(x)
    assert out[:, 0].tolist() == [0.0, 1.0, 0.0, 0.0]
    last = out[:, 0] @ torch.tensor([0, 0, 0, 1.0], dtype=F64)
    (grad,) = torch.autograd.grad(last, x, retain_graph=True)
    # ∂out_4/∂x_4 = θ·α·exp(−β·Δt)/θ with Δt = 2 (spike at step 2 of 1..4)
    assert float(grad[3, 0]) == pytest.approx(0.3 * math.exp(-0.02), rel=1e-12)
    (first,) = torch.autograd.grad(out[0, 0], x)
    assert float(first[0, 0]) == pytest.approx(0.3 * math.exp(-0.01 * 999), rel=1e-12)


def test_stdb_threshold_gradient_is_the_membranes_negated_and_bounded():
    # ∂S/∂θ = −∂S/∂H = −α·exp(−β·Δt)/θ, whatever H. Through z = H/θ − 1 as written it
    # would be −α·exp(−β·Δt)·H/θ²: 3e5 for H = 1e6 here (STDB has no window in z).
    h = torch.tensor([-1e6, -3.0, 0.2, 0.5, 0.9, 40.0, 1e6], dtype=F64, requires_grad=True)
    theta = torch.full_like(h, 0.5).requires_grad_()
    since = torch.tensor([0.0, 3.0, 999.0, 1.0, 7.0, 2.0, 0.0], dtype=F64)
    spikes = stdb_fire(h, theta, None, since, stdb_alpha=0.3, stdb_beta=0.01)
    assert spikes.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]  # Θ(H − θ), Θ(0) = 1
    grad_h, grad_theta = torch.autograd.grad(spikes.sum(), [h, theta])
    slope = 0.3 * torch.exp(-0.01 * since) / 0.5
    torch.testing.assert_close(grad_h, slope, rtol=1e-14, atol=0)
    torch.testing.assert_close(grad_theta, -slope, rtol=1e-14, atol=0)
    assert float(grad_theta.abs().max()) <= 0.3 / 0.5
    # A neuron over 6 steps with a learnt θ: inputs 1e3 and 1e6 times larger fire the
    # same spikes and give θ the same gradient (5.09; before: −1.16e4 and −1.16e7).
    grads = []
    for scale in (1e3, 1e6):
        neuron = TrainableIFNode(torch.tensor(0.5, dtype=F64), 0.5, surrogate_function="stdb")
        x = torch.linspace(-scale, scale, 5, dtype=F64).repeat(6, 1)
        (g,) = torch.autograd.grad(neuron(x).sum(), neuron.v_threshold)
        grads.append(float(g))
    assert grads[0] == pytest.approx(grads[1], rel=1e-12) and abs(grads[0]) < 10, grads


class _DIETLinearSpike(torch.autograd.Function):
    """DIET-SNN's LinearSpike: 0.3·max(0, 1 − |z|) backward (its code); forward Θ(z) with
    Θ(0) = 1, the converted neuron's (its code fires on z > 0, docs/conversion.md)."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * 0.3 * (1 - z.abs()).clamp_min(0)


@pytest.mark.parametrize("per_channel", [False, True])
def test_diet_surrogate_is_dietsnn_damped_triangle(per_channel):
    torch.manual_seed(4)
    x = (torch.randn(7, 3, 4, dtype=F64) * 0.6 + 0.35).requires_grad_()
    theta0 = torch.rand(4, dtype=F64) + 0.3 if per_channel else torch.tensor(0.7, dtype=F64)
    neuron = TrainableIFNode(theta0, 0.5, surrogate_function="diet")
    assert type(neuron.surrogate_function) is NorseTriangle
    theta = theta0.clone().requires_grad_()
    v = 0.5 * theta + torch.zeros_like(x[0])
    expected = []
    for step in x:  # the DIET-SNN neuron from its equations, λ = 1
        h = v + step
        s = _DIETLinearSpike.apply(h / theta - 1.0)
        v = h - theta * s
        expected.append(theta * s)
    expected = torch.stack(expected)
    out = neuron(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), [x, neuron.v_threshold])
    want = torch.autograd.grad((expected * weights).sum(), [x, theta])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    snn, _ = convert(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).eval(),
                     torch.rand(32, 4))  # fmt: skip
    tuned = fine_tunable(snn, surrogate_function="DIET")
    assert [n.surrogate_function.params for n in _neurons(tuned)] == [{"alpha": 0.3}]


def test_gradcheck_of_the_leak_with_the_smooth_surrogate():
    torch.manual_seed(1)
    x = (torch.randn(6, 2, 3, dtype=F64) * 0.5 + 0.4).requires_grad_()
    neuron = TrainableIFNode(
        torch.rand(3, dtype=F64) + 0.5, 0.5, surrogate_function=Triangle(spiking=False),
        leak=torch.tensor(0.7, dtype=F64), learnable_leak=True,
    )  # fmt: skip
    assert torch.autograd.gradcheck(
        lambda x, _theta, _leak: neuron(x), (x, neuron.v_threshold, neuron.leak)
    )


def _mlp_loop(x, linears, neurons, steps, stdb):
    """The converted MLP from the equations: per step, each hidden layer's DIET-SNN
    neurons on ``W·(previous output) + b``, the last linear layer read out."""
    states = [
        {"v": torch.zeros(x.shape[0], lin.out_features, dtype=F64),
         "last": torch.full((x.shape[0], lin.out_features), -1000.0, dtype=F64)}
        for lin in linears[:-1]
    ]  # fmt: skip
    outputs = []
    for t in range(steps):
        a = x
        for lin, n, st in zip(linears, neurons, states):
            h = n.leak * st["v"] + nn.functional.linear(a, lin.weight, lin.bias)
            z = h / n.v_threshold - 1.0
            dt = t - 1 - st["last"]  # the authors' Δt (their last ← t − 1 at a spike)
            s = _Triangle.apply(z) if stdb is None else _stdb_spike(h, n.v_threshold, dt, stdb)
            st["last"] = torch.where(s > 0, torch.full_like(dt, float(t - 1)), st["last"])
            st["v"] = h - n.v_threshold * s
            a = n.v_threshold * s
        outputs.append(nn.functional.linear(a, linears[-1].weight, linears[-1].bias))
    return torch.stack(outputs)


@pytest.mark.parametrize("surrogate", [None, "stdb"])
def test_network_gradients_in_input_weights_thresholds_and_leaks(surrogate):
    torch.manual_seed(2)
    ann = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(),
                        nn.Linear(6, 3)).double().eval()  # fmt: skip
    snn, _ = convert(ann, torch.rand(64, 5, dtype=F64), fraction=0.5)
    tuned = fine_tunable(snn, surrogate_function=surrogate, learnable_leak=True)
    linears = [m for m in tuned.body.modules() if isinstance(m, nn.Linear)]
    neurons = [m.module for m in tuned.body.modules() if isinstance(m, TimeFolded)]
    with torch.no_grad():
        neurons[0].leak.fill_(0.85)
        neurons[1].leak.fill_(0.6)
    x = torch.rand(8, 5, dtype=F64, requires_grad=True)
    out = tuned(constant_input(x, 6))
    expected = _mlp_loop(x, linears, neurons, 6, None if surrogate is None else (0.3, 0.01))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    params = [x] + [p for lin in linears for p in (lin.weight, lin.bias)]
    params += [p for n in neurons for p in (n.v_threshold, n.leak)]
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), params)
    want = torch.autograd.grad((expected * weights).sum(), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert all(float(g.abs().sum()) > 0 for g in want[-4:])  # both θ and both λ reached


def _cnn(pool: nn.Module) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), pool,
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 3 * 3, 5),
    ).eval()  # fmt: skip


def _neurons(snn):
    return [m.module for m in snn.body.modules() if isinstance(m, TimeFolded)
            and isinstance(m.module, ConversionIFNode)]  # fmt: skip


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.MaxPool2d(2)])
@pytest.mark.parametrize("surrogate", [None, "stdb"])
def test_leak_one_and_stdb_keep_the_converted_network_spike_for_spike(pool, surrogate):
    x = torch.rand(16, 1, 6, 6)
    snn, _ = convert(_cnn(pool), x, per_channel=True, initial_membrane=0.5)
    tuned = fine_tunable(snn, surrogate_function=surrogate, learnable_leak=True)
    neurons = _neurons(tuned)
    assert len(neurons) == 2 and all(isinstance(n.leak, nn.Parameter) for n in neurons)
    assert all(float(n.leak.detach()) == 1.0 for n in neurons)
    if surrogate:
        assert all(isinstance(n.surrogate_function, STDB) for n in neurons)
        assert neurons[0].surrogate_function is not neurons[1].surrogate_function
    x_seq = constant_input(x, 7)
    with torch.no_grad():
        torch.testing.assert_close(tuned(x_seq), snn(x_seq), rtol=0, atol=0)
    nn.functional.cross_entropy(tuned(x_seq).mean(0), torch.arange(16) % 5).backward()
    assert all(float(n.leak.grad.abs()) > 0 for n in neurons)
    # frozen: still IF neurons (λ = 1; STDB changes only the backward)
    plain = frozen(tuned)
    assert all(type(n) is ConversionIFNode and n.backend == "auto" for n in _neurons(plain))
    with torch.no_grad():
        torch.testing.assert_close(plain(x_seq), snn(x_seq), rtol=0, atol=0)


def test_a_leak_past_one_runs_as_one_with_the_gradient_passed_through():
    torch.manual_seed(4)
    x = (torch.randn(7, 2, 5, dtype=F64) * 0.6 + 0.35).requires_grad_()
    one = TrainableIFNode(0.6, leak=torch.tensor(1.0, dtype=F64), learnable_leak=True)
    past = TrainableIFNode(0.6, leak=torch.tensor(1.0, dtype=F64), learnable_leak=True)
    with torch.no_grad():
        past.leak.fill_(1.25)  # where an optimiser step can push it
    assert "leak=1.25" in repr(past)
    torch.testing.assert_close(past(x), one(x), rtol=0, atol=0)
    g_past = torch.autograd.grad(past(x).sum(), past.leak)
    g_one = torch.autograd.grad(one(x).sum(), one.leak)
    assert float(g_one[0]) != 0
    torch.testing.assert_close(g_past, g_one, rtol=0, atol=0)
    snn, _ = convert(nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2)).eval(),
                     torch.rand(32, 5))  # fmt: skip
    tuned = fine_tunable(snn, learnable_leak=True)
    with torch.no_grad():
        _neurons(tuned)[0].leak.fill_(1.1)
    assert type(_neurons(frozen(tuned))[0]) is ConversionIFNode  # it runs as IF


def test_frozen_refuses_a_leaky_network_by_name_and_a_second_call_keeps_the_leak():
    x = torch.rand(8, 1, 6, 6)
    snn, _ = convert(_cnn(nn.AvgPool2d(2)), x)
    tuned = fine_tunable(snn, learnable_leak=True)
    with torch.no_grad():
        _neurons(tuned)[1].leak.fill_(0.9)  # as trained
    with pytest.raises(ConfigurationError, match=r"frozen: '5' has a membrane leak λ = 0.9 < 1"):
        frozen(tuned)
    again = fine_tunable(tuned)  # a phase with the leak fixed: kept, as the thresholds
    leaks = [n.leak for n in _neurons(again)]
    assert leaks == [1.0, pytest.approx(0.9)] and not any(
        isinstance(lk, nn.Parameter) for lk in leaks
    )
    x_seq = constant_input(x, 5)
    with torch.no_grad():
        torch.testing.assert_close(again(x_seq), tuned(x_seq), rtol=0, atol=0)
    relearnt = fine_tunable(again, learnable_leak=True)
    assert float(_neurons(relearnt)[1].leak.detach()) == pytest.approx(0.9)


def test_bad_leaks_and_stdb_arguments_are_named():
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ConfigurationError, match=r"leak must be in \(0, 1\]"):
            TrainableIFNode(1.0, leak=bad)
    with pytest.raises(ConfigurationError, match="one number per layer"):
        TrainableIFNode(1.0, leak=torch.ones(3))
    with pytest.raises(DTypeError, match="leak must be floating-point"):
        TrainableIFNode(1.0, leak=torch.tensor(1))
    with pytest.raises(ConfigurationError, match="leak must be a number"):
        TrainableIFNode(1.0, leak="0.9")
    with pytest.raises(ConfigurationError, match="learnable_leak"):
        TrainableIFNode(1.0, learnable_leak=1)
    with pytest.raises(ConfigurationError, match=r"STDB: alpha must be .* in \(0, inf\)"):
        STDB(alpha=0.0)
    with pytest.raises(ConfigurationError, match=r"STDB: beta must be .* in \[0, inf\)"):
        STDB(beta=-0.01)
    for bad in ("0.3", True, float("inf")):
        with pytest.raises(ConfigurationError, match="STDB: alpha must be a finite real"):
            STDB(alpha=bad)
    stdb = STDB(alpha=np.float32(0.25), beta=np.int64(0))  # numpy numbers are numbers
    assert (stdb.alpha, stdb.beta) == (0.25, 0.0) and type(stdb.alpha) is float
    with pytest.raises(ConfigurationError, match="backend 'cpu' with the STDB surrogate"):
        TrainableIFNode(1.0, surrogate_function=STDB(), backend="cpu")
    snn, _ = convert(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).eval(),
                     torch.rand(32, 4))  # fmt: skip
    with pytest.raises(
        ConfigurationError, match=r"STDB\(\), 'stdb' or 'diet' \(the names taken\), got 'triangle'"
    ):
        fine_tunable(snn, surrogate_function="triangle")
    with pytest.raises(ConfigurationError, match="learnable_leak"):
        fine_tunable(snn, learnable_leak="yes")
    tuned = fine_tunable(snn, learnable_leak=True)
    with torch.no_grad():
        _neurons(tuned)[0].leak.fill_(-0.05)  # a step with too large a learning rate
    with pytest.raises(ConfigurationError, match=r"leak -0.05 is not finite and > 0"):
        tuned.rate(torch.rand(2, 4), 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_learnable_leak_lives_on_the_device_of_the_thresholds():
    snn, _ = convert(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).eval(),
                     torch.rand(32, 4))  # fmt: skip
    tuned = fine_tunable(snn.cuda(), surrogate_function="stdb", learnable_leak=True)
    devices = {p.device.type for p in tuned.parameters()}
    assert devices == {"cuda"}, devices  # one device: DDP and fused optimisers need it
    out = tuned.rate(torch.rand(3, 4, device="cuda"), 4)
    out.sum().backward()
    assert all(n.leak.grad.device.type == "cuda" for n in _neurons(tuned))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, F64])
def test_stdb_counts_the_steps_since_a_spike_past_256_in_every_dtype(dtype):
    # one spike at step 0, none after: Δt = 299 at the last of 300 steps (bfloat16 holds
    # integers exactly only up to 256, so a Δt counter in the input's dtype stops there)
    neuron = TrainableIFNode(1.0, surrogate_function="stdb", learnable_threshold=False)
    x = torch.zeros(300, 1, 1, dtype=dtype)
    x[0] = 1.0
    x.requires_grad_()
    out = neuron(x)
    assert out.dtype == dtype and float(out.detach().sum()) == 1.0
    (grad,) = torch.autograd.grad(out[-1].sum(), x)
    assert grad.dtype == dtype
    assert float(grad[-1]) == pytest.approx(0.3 * math.exp(-0.01 * 299), rel=4e-3)


@pytest.mark.parametrize("backend", ["cpu", "triton", "torch", "auto"])
def test_stdb_runs_fused_neurons_on_the_reference_loop_and_frozen_gives_the_backend_back(
    backend,
):
    x = torch.rand(16, 1, 6, 6)
    snn, _ = convert(_cnn(nn.AvgPool2d(2)), x)
    for neuron in _neurons(snn):
        neuron.backend = backend  # as a user picks one
    tuned = fine_tunable(snn, surrogate_function="stdb")  # no error on a fused backend
    neurons = _neurons(tuned)
    assert all(n.backend == "torch" and n.kept_backend == backend for n in neurons)
    x_seq = constant_input(x, 5)
    if backend != "triton":  # (the Triton kernels need a GPU)
        with torch.no_grad():
            torch.testing.assert_close(tuned(x_seq), snn(x_seq), rtol=0, atol=0)
    assert all(n.backend == backend for n in _neurons(frozen(tuned)))
    # a later phase with a membrane surrogate runs on the user's backend again
    assert all(n.backend == backend for n in _neurons(fine_tunable(tuned)))
    assert all(n.backend == backend for n in _neurons(frozen(fine_tunable(tuned))))
