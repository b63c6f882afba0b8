"""e-prop (spikeflow.learn.EProp) against autograd of the same network with the paths
e-prop drops detached (float64), by hand, and against its own variants; the network's
equations against a loop written here; the example on real data."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import load_example, require_shared_data
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.learn import EProp, EPropRSNN, eprop_loss, rate_regularization
from spikeflow.surrogate import Sigmoid, Triangle

D = torch.float64


def make_net(n_lif=3, n_alif=3, seed=0, in_features=5, out_features=3, **kwargs):
    """A small network whose neurons spike often but not always (so that ψ, the resets,
    the recurrent spikes and the adaptation all matter)."""
    torch.manual_seed(seed)
    args = dict(tau=5.0, tau_adapt=8.0, beta=0.3, tau_out=4.0, v_threshold=0.8)
    args.update(kwargs)
    net = EPropRSNN(in_features, out_features, n_lif, n_alif, **args).to(D)
    with torch.no_grad():
        net.input.weight.mul_(6.0 if args.get("decay_input") else 1.5)
        net.recurrent.weight.mul_(1.5)
    return net


def grads(module, set_to_none=True):
    out = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=set_to_none)
    return out


def reference(net, x, target, loss, weight, rate=(0.05, 0.0), **flags):
    """Autograd's gradient of E (+ E_reg) for the network run with ``flags``."""
    out = net(x, **flags)
    energy = eprop_loss(out.y, target, loss, weight) + rate_regularization(out.spikes, *rate)
    energy.backward()
    return grads(net), energy.detach(), out


def make_target(loss, steps, batch, classes=3, per_step=False):
    if loss == "ce":
        shape = (steps, batch) if per_step else (batch,)
        return torch.randint(0, classes, shape)
    return torch.randn((steps, batch, classes) if per_step else (batch, classes), dtype=D)


def assert_same(got, want, tol=1e-12):
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=tol, atol=tol, msg=name)


# -- the equality with autograd --------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("steps", [1, 9])
@pytest.mark.parametrize("population", [(4, 0), (0, 4), (3, 3)], ids=["lif", "alif", "mixed"])
def test_symmetric_eprop_equals_autograd_with_recurrence_and_reset_detached(
    population, steps, loss, seed
):
    net = make_net(*population, seed=seed)
    batch = 3
    x = torch.rand(steps, batch, 5, dtype=D)
    target = make_target(loss, steps, batch, per_step=seed == 1)
    weight = torch.rand(steps, batch, dtype=D)
    weight[: steps // 3] = 0.0  # steps that do not count (run skips their learning)
    want, energy, out = reference(net, x, target, loss, weight,
                                  detach_recurrent=True, detach_reset=True)  # fmt: skip
    result = EProp(net, "symmetric", loss).run(x, target, weight)
    assert_same(grads(net), want)
    torch.testing.assert_close(result.loss, energy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.y, out.y.detach(), rtol=1e-12, atol=1e-12)
    assert want["recurrent.weight"].diagonal().abs().max() == 0  # no self-connections
    if steps > 1:  # not vacuous: the neurons spike, but not always
        assert 0.1 < float(out.spikes.detach().mean()) < 0.9


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "variant",
    [dict(refractory=2), dict(decay_input=True), dict(refractory=1, decay_input=True)],
    ids=["refractory", "decay_input", "both"],
)
def test_the_equality_holds_with_refractoriness_input_decay_and_rate_regularisation(
    variant, seed
):  # fmt: skip
    net = make_net(3, 3, seed=seed, **variant)
    x = torch.rand(12, 4, 5, dtype=D)
    target = make_target("ce", 12, 4)
    rate = (0.05, 0.7)
    want, energy, out = reference(net, x, target, "ce", None, rate,
                                  detach_recurrent=True, detach_reset=True)  # fmt: skip
    rule = EProp(net, "symmetric", "ce", rate_target=rate[0], rate_strength=rate[1])
    result = rule.run(x, target)
    assert_same(grads(net), want)
    torch.testing.assert_close(result.loss, energy, rtol=1e-12, atol=1e-12)
    assert float(out.spikes.detach().mean()) > 0.1


def test_soft_cross_entropy_targets_need_not_sum_to_one():
    net = make_net(3, 3, seed=14)
    x = torch.rand(8, 3, 5, dtype=D)
    target = 2 * torch.rand(8, 3, 3, dtype=D)  # Σ_k π* ≠ 1: ∂ℓ/∂y = softmax·Σπ* − π*
    want = reference(net, x, target, "ce", None, detach_recurrent=True, detach_reset=True)[0]
    EProp(net).run(x, target)
    assert_same(grads(net), want)


def test_rate_regularisation_alone_is_its_autograd_gradient():
    net = make_net(2, 2, seed=3)
    x = torch.rand(10, 2, 5, dtype=D)
    want, energy, _ = reference(net, x, torch.zeros(2, 3, dtype=D), "mse", 0.0, (0.2, 2.0),
                                detach_recurrent=True, detach_reset=True)  # fmt: skip
    result = EProp(net, loss="mse", rate_target=0.2, rate_strength=2.0).run(x)  # no target
    got = grads(net)
    assert_same({k: v for k, v in got.items() if "output" not in k},
                {k: v for k, v in want.items() if "output" not in k})  # fmt: skip
    assert got["input.weight"].abs().max() > 0
    torch.testing.assert_close(result.loss, energy, rtol=1e-12, atol=1e-12)


def test_both_detaches_are_needed_and_one_step_is_full_bptt():
    net = make_net(3, 3, seed=0)
    x = torch.rand(9, 3, 5, dtype=D)
    target = make_target("ce", 9, 3)
    EProp(net).run(x, target)
    eprop = grads(net)["input.weight"]
    for flags in ({}, {"detach_recurrent": True}, {"detach_reset": True}):
        other = reference(net, x, target, "ce", None, **flags)[0]["input.weight"]
        assert (other - eprop).abs().max() > 1e-4, flags
    # with T = 1 nothing has crossed a step: e-prop is BPTT
    EProp(net).run(x[:1], target)
    assert_same(grads(net), reference(net, x[:1], target, "ce", None)[0])


# -- by hand --------------------------------------------------------------------------


def one_neuron(n_lif, n_alif):
    """α = κ·2 = 0.5 (κ = 0.25), ρ = 0.5, β = 0.5, v_th = 1, γ_pd = 0.3, W^in = 0.8,
    W^out = 2, b = 0."""
    net = EPropRSNN(1, 1, n_lif, n_alif, tau=1 / math.log(2), tau_adapt=1 / math.log(2),
                    beta=0.5, tau_out=1 / math.log(4), v_threshold=1.0).to(D)  # fmt: skip
    with torch.no_grad():
        net.input.weight.fill_(0.8)
        net.output.weight.fill_(2.0)
    return net


def test_one_lif_neuron_by_hand():
    # x = 1, 1, 1.5; v = 0.8, 0.5·0.8 + 0.8 = 1.2 (spike), 0.5·1.2 + 1.2 − 1 = 0.8
    # ψ = 0.3·(1 − |v − 1|) = 0.24, 0.24, 0.24;  ε = 1, 1.5, 2.25;  e = ψε = .24, .36, .54
    # ē = 0.24, 0.25·0.24 + 0.36 = 0.42, 0.25·0.42 + 0.54 = 0.645
    # y = 0, 2, 0.5;  y* = 0, 1, 0 (mse): δ = 0, 1, 0.5;  L = 2δ = 0, 2, 1
    # dE/dW^in = 2·0.42 + 1·0.645 = 1.485; z̄ = 0, 1, 0.25: dE/dW^out = 1 + 0.125 = 1.125
    # c = 1, 1.25, 1.3125: dE/db = 1.25 + 0.5·1.3125 = 1.90625; E = (1 + 0.25)/2
    net = one_neuron(1, 0)
    x = torch.tensor([1.0, 1.0, 1.5], dtype=D).view(3, 1, 1)
    target = torch.tensor([0.0, 1.0, 0.0], dtype=D).view(3, 1, 1)
    result = EProp(net, loss="mse").run(x, target)
    assert result.y.view(-1).tolist() == pytest.approx([0.0, 2.0, 0.5], abs=1e-14)
    assert float(result.loss) == pytest.approx(0.625, abs=1e-14)
    assert float(net.input.weight.grad) == pytest.approx(1.485, abs=1e-14)
    assert float(net.output.weight.grad) == pytest.approx(1.125, abs=1e-14)
    assert float(net.output.bias.grad) == pytest.approx(1.90625, abs=1e-14)
    assert float(net.recurrent.weight.grad) == 0.0


def test_one_alif_neuron_by_hand():
    # As the LIF, with a = 0, 0, 1 (the spike at t = 2): A = 1, 1, 1.5; margin at t = 3:
    # 0.8 − 1.5 = −0.7, ψ3 = 0.3·0.3 = 0.09. εa = 0, e1 = 0.24, 0.5·0.24 + e2:
    # e1 = 0.24·1 = 0.24;  e2 = 0.24·(1.5 − 0.5·0.24) = 0.3312;  εa3 = 0.12 + 0.3312
    # e3 = 0.09·(2.25 − 0.5·0.4512) = 0.182196
    # ē = 0.24, 0.06 + 0.3312 = 0.3912, 0.0978 + 0.182196 = 0.279996
    # dE/dW^in = 2·0.3912 + 0.279996 = 1.062396 (the readout's gradients as the LIF's)
    net = one_neuron(0, 1)
    x = torch.tensor([1.0, 1.0, 1.5], dtype=D).view(3, 1, 1)
    target = torch.tensor([0.0, 1.0, 0.0], dtype=D).view(3, 1, 1)
    EProp(net, loss="mse").run(x, target)
    assert float(net.input.weight.grad) == pytest.approx(1.062396, abs=1e-14)
    assert float(net.output.weight.grad) == pytest.approx(1.125, abs=1e-14)
    # full BPTT also runs through the reset of t = 2 (ψ3 ≠ 0): another number
    full = reference(net, x, target, "mse", None)[0]["input.weight"]
    assert abs(float(full) - 1.062396) > 1e-3


# -- feedback -------------------------------------------------------------------------


def test_random_feedback_with_the_output_weights_transposed_is_symmetric():
    net = make_net(3, 3, seed=4)
    x = torch.rand(8, 3, 5, dtype=D)
    target = make_target("ce", 8, 3)
    EProp(net).run(x, target)
    symmetric = grads(net)
    rule = EProp(net, "random", feedback_weight=net.output.weight.detach().T)
    rule.run(x, target)
    assert_same(grads(net), symmetric, tol=0)


def test_random_feedback_is_autograd_with_the_readout_derivative_replaced_by_b():
    net = make_net(3, 3, seed=5)
    x = torch.rand(8, 3, 5, dtype=D)
    target = make_target("mse", 8, 3, per_step=True)
    rule = EProp(net, "random", "mse", generator=torch.Generator().manual_seed(0))
    b = rule.feedback_weight  # [N, K]
    assert tuple(b.shape) == (6, 3) and not isinstance(b, torch.nn.Parameter)
    rule.run(x, target)
    got = grads(net)
    # forward: y = κ y + W^out z + b; backward: ∂y/∂z = Bᵀ
    z = net(x, detach_recurrent=True, detach_reset=True).spikes
    current = net.output(z.detach()) + F.linear(z - z.detach(), b.T)
    y, ys = torch.zeros_like(current[0]), []
    for u in current:
        y = net.kappa * y + u
        ys.append(y)
    eprop_loss(torch.stack(ys), target, "mse").backward()
    assert_same(got, grads(net))
    assert (got["input.weight"] - reference(net, x, target, "mse", None, detach_recurrent=True,
            detach_reset=True)[0]["input.weight"]).abs().max() > 1e-4  # fmt: skip


def test_adaptive_feedback_learns_b_with_the_output_weights_update_and_decay():
    net = make_net(3, 3, seed=6)
    x = torch.rand(8, 3, 5, dtype=D)
    target = make_target("ce", 8, 3)
    start = torch.randn(6, 3, dtype=D)
    EProp(net, "random", feedback_weight=start).run(x, target)
    random = grads(net)
    rule = EProp(net, "adaptive", feedback_weight=start, feedback_decay=0.1)
    assert [n for n, _ in rule.named_parameters()] == ["feedback_weight"]  # not the net's
    rule.run(x, target)
    got = grads(net)
    decay = {"output.weight": 0.1 * net.output.weight.detach()}
    for name, value in random.items():
        torch.testing.assert_close(got[name], value + decay.get(name, 0.0), rtol=1e-12, atol=0)
    want = random["output.weight"].T + 0.1 * start
    torch.testing.assert_close(rule.feedback_weight.grad, want, rtol=1e-12, atol=0)


# -- online, memory, gradients ---------------------------------------------------------


def test_stepping_by_hand_equals_run_and_the_network_forward():
    net = make_net(3, 3, seed=7, refractory=1)
    x = torch.rand(10, 2, 5, dtype=D)
    target = make_target("ce", 10, 2, per_step=True)
    weight = torch.rand(10, 2, dtype=D)
    weight[2] = 0.0
    rule = EProp(net)
    result = rule.run(x, target, weight)
    want = grads(net)
    ys = [rule.step(x[t], target[t], weight[t]) for t in range(10)]
    loss = rule.finish()
    assert_same(grads(net), want, tol=0)
    assert torch.equal(torch.stack(ys), result.y) and torch.equal(loss, result.loss)
    torch.testing.assert_close(result.y, net(x).y.detach(), rtol=1e-13, atol=1e-13)


def test_the_carried_state_does_not_grow_with_t():
    net = make_net(3, 4, seed=8)
    rule = EProp(net, rate_strength=1.0)
    sizes = {}
    for steps in (1, 5, 37):
        x = torch.rand(steps, 2, 5, dtype=D)
        for t in range(steps):
            y = rule.step(x[t], torch.tensor([0, 2]))
            assert y.grad_fn is None and not y.requires_grad
            state = rule.state_tensors()
            assert all(s.grad_fn is None for s in state.values())
            assert all(37 not in s.shape for s in state.values())
        sizes[steps] = {name: tuple(s.shape) for name, s in state.items()}
        rule.finish()
        assert rule.state_tensors() == {}
    assert sizes[1] == sizes[5] == sizes[37]
    assert sizes[1]["trace"] == (7, 2, 5 + 7)  # ē: [N, B, I + N]


def test_gradients_accumulate_like_autograd_and_frozen_weights_are_left_alone():
    net = make_net(2, 2, seed=9)
    x = torch.rand(6, 2, 5, dtype=D)
    target = make_target("ce", 6, 2)
    rule = EProp(net)
    rule.run(x, target)
    once = {n: p.grad.clone() for n, p in net.named_parameters()}
    rule.run(x, target)
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.grad, 2 * once[name], rtol=1e-14, atol=0)
    net.zero_grad(set_to_none=True)
    net.input.weight.requires_grad_(False)
    rule.run(x, target)
    assert net.input.weight.grad is None and net.recurrent.weight.grad is not None


def test_float32_gives_float64s_gradient_to_rounding():
    net = make_net(3, 3, seed=10)
    x = torch.rand(8, 3, 5, dtype=D)
    target = make_target("ce", 8, 3)
    EProp(net).run(x, target)
    want = grads(net)
    net.float()
    EProp(net).run(x.float(), target)
    got = grads(net)
    for name in want:
        torch.testing.assert_close(got[name], want[name].float(), rtol=1e-4, atol=1e-5)
        assert got[name].dtype == torch.float32


def test_an_optimizer_step_applies_the_gradient():
    net = make_net(3, 3, seed=11).float()
    x = torch.rand(15, 8, 5)
    target = torch.randint(0, 3, (8,))
    rule = EProp(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        losses.append(float(rule.run(x, target).loss))
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0]


# -- the network and the losses --------------------------------------------------------


def loop(net, x):
    """The module docstring's equations, written out (hard threshold, no autograd)."""
    w_in, w_rec = net.input.weight.detach(), net.recurrent.weight.detach().clone()
    w_rec.fill_diagonal_(0.0)
    w_out, b = net.output.weight.detach(), net.output.bias.detach()
    alpha, rho, kappa = (math.exp(-1 / t) for t in (net.tau, net.tau_adapt, net.tau_out))
    zeta = 1 - alpha if net.decay_input else 1.0
    batch, n = x.shape[1], net.hidden
    v, z, a = (torch.zeros(batch, n, dtype=D) for _ in range(3))
    wait, y, ys, spikes = torch.zeros(batch, n), torch.zeros(batch, 3, dtype=D), [], []
    beta = torch.tensor([0.0] * net.n_lif + [net.beta] * net.n_alif, dtype=D)
    for x_t in x:
        v = alpha * v + zeta * (x_t @ w_in.T + z @ w_rec.T) - net.v_threshold * z
        a = rho * a + z
        z = ((v - net.v_threshold - beta * a) > 0).to(D) * (wait == 0)
        wait = torch.where(z > 0, float(net.refractory), (wait - 1).clamp(min=0))
        y = kappa * y + z @ w_out.T + b
        ys.append(y)
        spikes.append(z)
    return torch.stack(ys), torch.stack(spikes)


@pytest.mark.parametrize("variant", [{}, dict(refractory=2), dict(decay_input=True)])
def test_the_network_follows_its_equations(variant):
    net = make_net(3, 4, seed=12, **variant)
    x = torch.rand(15, 4, 5, dtype=D)
    y, spikes = loop(net, x)
    out = net(x)
    assert torch.equal(out.spikes, spikes)
    torch.testing.assert_close(out.y, y, rtol=1e-13, atol=1e-13)
    adapted = net(x).spikes
    no_adaptation = make_net(3, 4, seed=12, beta=0.0, **variant)(x).spikes
    assert not torch.equal(adapted, no_adaptation)  # the ALIF neurons adapt


def test_the_hidden_spikes_reach_the_monitors_and_the_operation_counter_by_hand():
    """2 inputs, 2 LIF + 1 ALIF neurons, tau = 20 (α = e^(-1/20) ≈ 0.951), v_th = 1,
    β = 0.07. Sample 0, x = [1, 0], [1, 1], [0, 0], by hand:

    - t0: v = W_in x = [2, 0, 0.5], so z = [1, 0, 0];
    - t1: v = α [2, 0, 0.5] + [2, 2, 1] + W_rec z0 ([0, 0, 0.1]) − z0 = [2α + 1, 2,
      0.5α + 1.1], so z = [1, 1, 1];
    - t2: v = α v1 + W_rec z1 ([0.3, 0, 0.1]: the diagonal 5 is masked) − z1 ≈ [2.06,
      0.90, 0.60] (ALIF threshold 1 + β·1), so z = [1, 0, 0].

    Sample 1 (x = 0) stays silent: 5 spikes in 2 · 3 · 3 neuron-steps, 2.5 per sample.
    Accumulates (spike inputs): W_in, whose inputs 0 and 1 each reach 2 neurons: 2 + 4;
    W_rec over z0 and z1 (z2 feeds no step), where neuron 0 reaches 1 neuron (row 2),
    neuron 1 reaches 1 (row 0) and neuron 2 none (its only weight is the diagonal):
    1 + 2; W_out: 5 spikes to 2 readouts each."""
    from spikeflow.energy import OperationCounter, count_operations
    from spikeflow.training import SpikeMonitor

    net = EPropRSNN(2, 2, n_lif=2, n_alif=1, tau=20.0, beta=0.07)
    with torch.no_grad():
        net.input.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.5, 0.5]]))
        net.recurrent.weight.copy_(torch.tensor([[0, 0.3, 0], [0, 0, 0], [0.1, 0, 5.0]]))
    x = torch.zeros(3, 2, 2)
    x[:2, 0, 0] = 1.0
    x[1, 0, 1] = 1.0
    hand = torch.tensor([[1.0, 0, 0], [1, 1, 1], [1, 0, 0]])
    with SpikeMonitor(net) as forward, torch.no_grad():
        spikes = net(x).spikes
    assert torch.equal(spikes[:, 0], hand) and not spikes[:, 1].any()
    (stats,) = forward.summary()
    assert (stats.name, stats.spikes, stats.neurons) == ("neurons", 5.0, 3)
    assert stats.firing_rate == 5 / 18 and stats.spikes_per_sample == 2.5
    # e-prop's steps (not the forward) show the monitor the same spikes
    with SpikeMonitor(net) as steps:
        EProp(net, "symmetric", "ce").run(x, torch.tensor([0, 1]))
    assert steps.state_dict() == forward.state_dict()
    report = count_operations(net, x)
    counted = {layer.name: (layer.acs, layer.macs, layer.input_elements)
               for layer in report.layers}  # fmt: skip
    # (the recurrent weights read z0 and z1 of 2 samples x 3 neurons: 12 entries)
    assert counted == {"input": (6, 0, 12), "recurrent": (3, 0, 12), "output": (10, 0, 18)}
    assert report.not_counted == [] and report.samples == 2
    # the network stepped one call at a time (step): the same spikes, samples counted
    # once per sequence, and the same operations
    with SpikeMonitor(net) as stepped, OperationCounter(net) as counter, torch.no_grad():
        state = None
        for x_t in x:
            state = net.step(x_t, state).state
    assert stepped.state_dict() == forward.state_dict()
    by_step = {layer.name: (layer.acs, layer.macs, layer.input_elements)
               for layer in counter.report(2).layers}  # fmt: skip
    assert by_step == counted
    # e-prop applied one step at a time (EProp.step, then finish), twice: its spikes
    # pass through the tap as the network's own steps do (a sequence each time)
    rule = EProp(net, "symmetric", "ce")
    with SpikeMonitor(net) as learnt, OperationCounter(net) as counter:
        for _ in range(2):
            for x_t in x:
                rule.step(x_t, torch.tensor([0, 1]))
            rule.finish()
    (once,) = forward.summary()
    (twice,) = learnt.summary()
    assert (twice.spikes, twice.neurons, twice.spikes_per_sample) == (10.0, 3, 2.5)
    assert twice.firing_rate == once.firing_rate
    by_rule = {layer.name: (layer.acs, layer.macs, layer.input_elements)
               for layer in counter.report(4).layers}  # fmt: skip
    assert by_rule == {name: tuple(2 * n for n in ops) for name, ops in counted.items()}


def test_the_pseudo_derivative_is_bellecs_triangle_and_any_surrogate_fits():
    net = make_net(2, 2, gamma_pd=0.3, v_threshold=0.8)
    margin = torch.linspace(-1.5, 1.5, 31, dtype=D).view(1, -1)
    bellec = 0.3 * torch.clamp(1 - (margin / 0.8).abs(), min=0) / 0.8
    torch.testing.assert_close(net.pseudo_derivative(margin, None), bellec, rtol=0, atol=1e-15)
    assert isinstance(net.surrogate_function, Triangle)
    # another surrogate: e-prop still equals the detached graph's gradient
    net = make_net(3, 3, seed=13, surrogate_function=Sigmoid(alpha=3.0))
    x = torch.rand(7, 2, 5, dtype=D)
    target = make_target("ce", 7, 2)
    want = reference(net, x, target, "ce", None, detach_recurrent=True, detach_reset=True)[0]
    EProp(net).run(x, target)
    assert_same(grads(net), want)


def test_the_losses_are_the_stated_sums():
    y = torch.randn(6, 4, 3, dtype=D)
    labels = torch.tensor([0, 2, 1, 1])
    ce = sum(F.cross_entropy(y[t], labels, reduction="sum") for t in range(6)) / 4
    torch.testing.assert_close(eprop_loss(y, labels), ce)
    weight = torch.rand(6, dtype=D)
    ce = sum(weight[t] * F.cross_entropy(y[t], labels, reduction="sum") for t in range(6)) / 4
    torch.testing.assert_close(eprop_loss(y, labels, weight=weight), ce)
    goal = torch.randn(6, 4, 3, dtype=D)
    torch.testing.assert_close(eprop_loss(y, goal, "mse"), 0.5 * ((y - goal) ** 2).sum() / 4)
    # integer labels in mse are one-hot targets
    torch.testing.assert_close(eprop_loss(y, labels, "mse"),
                               eprop_loss(y, F.one_hot(labels, 3).to(D), "mse"))  # fmt: skip
    spikes = (torch.rand(10, 4, 5) < 0.3).to(D)
    rate = spikes.mean(dim=(0, 1))
    torch.testing.assert_close(rate_regularization(spikes, 0.1, 2.0), ((rate - 0.1) ** 2).sum())


# -- errors ---------------------------------------------------------------------------


def test_bad_arguments_are_named():
    with pytest.raises(ConfigurationError, match="n_lif \\+ n_alif"):
        EPropRSNN(3, 2, 0, 0)
    with pytest.raises(ConfigurationError, match="tau_out"):
        EPropRSNN(3, 2, tau_out=0.0)
    with pytest.raises(ConfigurationError, match="beta"):
        EPropRSNN(3, 2, beta=-0.1)
    with pytest.raises(ConfigurationError, match="spiking=True"):
        EPropRSNN(3, 2, surrogate_function=Triangle(spiking=False))
    with pytest.raises(ConfigurationError, match="refractory"):
        EPropRSNN(3, 2, refractory=-1)
    net = EPropRSNN(3, 2, 4, 1)
    with pytest.raises(ConfigurationError, match="feedback must be one of"):
        EProp(net, "transposed")
    with pytest.raises(ConfigurationError, match="loss must be one of"):
        EProp(net, loss="nll")
    with pytest.raises(ConfigurationError, match="feedback_weight is"):
        EProp(net, feedback_weight=torch.zeros(5, 2))
    with pytest.raises(ShapeError, match=r"\[N, K\] = \[5, 2\], got \(2, 5\)"):
        EProp(net, "random", feedback_weight=torch.zeros(2, 5))
    with pytest.raises(ConfigurationError, match="EPropRSNN"):
        EProp(torch.nn.Linear(3, 2))


def test_bad_inputs_and_targets_are_named():
    net = EPropRSNN(3, 2, 4, 1)
    rule = EProp(net)
    with pytest.raises(ShapeError, match=r"\[B, in_features\] = \[B, 3\], got \(2, 4\)"):
        rule.step(torch.zeros(2, 4))
    with pytest.raises(DTypeError, match="float64"):
        rule.step(torch.zeros(2, 3, dtype=D))
    with pytest.raises(ConfigurationError, match="labels must lie in \\[0, 1\\]"):
        rule.step(torch.zeros(2, 3), torch.tensor([0, 2]))
    rule.reset()
    with pytest.raises(ShapeError, match=r"\[B, K\] = \[2, 2\]"):
        rule.step(torch.zeros(2, 3), torch.zeros(2, 3))
    rule.reset()
    rule.step(torch.zeros(2, 3))
    with pytest.raises(ShapeError, match="batch 2, the step has 5"):
        rule.step(torch.zeros(5, 3))
    rule.reset()
    with pytest.raises(StateError, match="no step"):
        rule.finish()
    with pytest.raises(ShapeError, match="T = 4 steps first"):
        rule.run(torch.zeros(4, 2, 3), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"\[T\] = \[4\]"):
        rule.run(torch.zeros(4, 2, 3), torch.zeros(2, dtype=torch.long), torch.ones(3))
    with pytest.raises(ShapeError, match="sequence"):
        net(torch.zeros(2, 3))
    with pytest.raises(ShapeError, match="readout"):
        eprop_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))


# -- the example, on real data ---------------------------------------------------------


def test_the_example_trains_both_ways_on_the_digits(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("eprop_digits")
    results = module.main(["--epochs", "3", "--train-samples", "960", "--lif", "40",
                           "--alif", "40", "--steps-per-row", "2", "--lr", "0.01"])  # fmt: skip
    assert set(results) == {"eprop", "bptt"}
    for method, accuracies in results.items():
        assert len(accuracies) == 3
        assert accuracies[-1] > 0.5, (method, accuracies)  # chance: 10%
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("digits: 960 train / 360 test sequences of 16 steps x 8")


def test_the_example_learns_n_mnist_by_eprop():
    root = require_shared_data("nmnist-small")
    module = load_example("eprop_digits")
    results = module.main(["--dataset", "nmnist", "--nmnist-root", str(root), "--epochs",
                           "3", "--methods", "eprop", "--feedback", "random",
                           "--frames", "10", "--lif", "40", "--alif", "40"])  # fmt: skip
    assert results["eprop"][-1] > 0.4, results  # 69% here; 100 test recordings; chance 10%
