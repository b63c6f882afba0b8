"""Pruning (methods.md 8): the reparameterisations, Grad R's update against the paper's
equations written out here, the threshold schedules, and the reports."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from spikeflow import layers, neurons, prune
from spikeflow.errors import ConfigurationError


def small_net(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 5 * 5, 6),
    ).to(dtype)  # fmt: skip


# -- the reparameterisations ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_signed_strength_is_s_times_relu_with_gradient_s(dtype):
    torch.manual_seed(1)
    weight = torch.randn(7, 9, dtype=dtype)
    weight[0, :3] = 0.0
    layer = nn.Linear(9, 7, bias=False).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
    prune.apply_gradient_rewiring(layer)
    hidden = layer.parametrizations.weight.original
    sign = layer.parametrizations.weight[0].sign
    assert torch.equal(hidden, weight.abs())
    assert torch.equal(sign, torch.where(weight < 0, -1.0, 1.0).to(dtype))
    assert torch.equal(layer.weight, weight)  # the function is unchanged
    with torch.no_grad():  # prune some synapses: θ <= 0
        hidden[1:3] = -hidden[1:3]
    expected = sign * hidden.clamp(min=0)
    assert torch.equal(layer.weight, expected)
    upstream = torch.randn(7, 9, dtype=dtype)
    (layer.weight * upstream).sum().backward()
    # The redefined gradient: s·∂L/∂w, also where the synapse is pruned (no ReLU gate).
    assert torch.equal(hidden.grad, sign * upstream)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_threshold_is_the_formula_with_a_straight_through_gradient(dtype):
    torch.manual_seed(2)
    layer = nn.Conv1d(3, 5, 4, bias=False).to(dtype)
    prune.apply_soft_threshold(layer, 0.0)
    prune.set_threshold(layer, 0.2)
    hidden = layer.parametrizations.weight.original
    d = torch.tensor(0.2, dtype=dtype)
    expected = torch.sign(hidden) * torch.relu(hidden.abs() - d)
    assert torch.equal(layer.weight, expected)
    assert bool((layer.weight == 0).any())
    upstream = torch.randn_like(hidden)
    (layer.weight * upstream).sum().backward()
    assert torch.equal(hidden.grad, upstream)


def test_applying_keeps_what_the_model_computes():
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    net = small_net()
    ref = copy.deepcopy(net).eval()
    net.eval()
    names = prune.apply_gradient_rewiring(net)
    assert names == ["0", "4"]
    assert torch.equal(net(x), ref(x))
    net = copy.deepcopy(ref)
    prune.apply_soft_threshold(net, 0.05)
    # θ = w + sign(w)·d: thresholded back to w up to one rounding
    torch.testing.assert_close(net(x), ref(x), rtol=1e-12, atol=1e-12)
    for layer in (net[0], net[4]):
        hidden = layer.parametrizations.weight.original
        assert float(hidden.detach().abs().min()) >= 0.05  # every synapse starts alive


def test_only_linear_and_convolution_weights_are_reparameterised():
    net = nn.Sequential(
        layers.Linear(10, 8), neurons.LIFNode(), layers.BatchNorm1d(8), layers.Linear(8, 3),
        neurons.ParametricLIFNode(),
    )  # fmt: skip
    assert prune.apply_soft_threshold(net, 0.01) == ["0", "3"]
    assert not parametrize.is_parametrized(net[2])
    x = torch.rand(4, 2, 10)  # [T, B, N]: the sequence layers still fold T
    net(x).sum().backward()
    assert net[0].parametrizations.weight.original.grad is not None


def test_choosing_layers_and_refusing_bad_input():
    net = small_net()
    assert prune.apply_gradient_rewiring(net, layers=[net[4]]) == ["4"]
    assert not parametrize.is_parametrized(net[0])
    with pytest.raises(ConfigurationError, match="already parametrized"):
        prune.apply_soft_threshold(net, layers=[net[4]])
    with pytest.raises(ConfigurationError, match="not a linear or convolution layer"):
        prune.apply_soft_threshold(net, layers=[nn.Linear(2, 2)])
    with pytest.raises(ConfigurationError, match="no linear or convolution layer"):
        prune.apply_soft_threshold(nn.Sequential(nn.ReLU()))
    for bad in (-0.1, math.nan, math.inf, True, "0.1"):
        with pytest.raises(ConfigurationError, match="threshold"):
            prune.apply_soft_threshold(small_net(), bad)
    with pytest.raises(ConfigurationError, match="apply_soft_threshold"):
        prune.set_threshold(small_net(), 0.1)


def test_assigning_a_weight_goes_through_the_inverse():
    layer = nn.Linear(4, 3).double()
    prune.apply_gradient_rewiring(layer)
    new = torch.tensor([[1.0, -2.0, 0.0, 3.0]] * 3, dtype=torch.float64)
    layer.weight = new
    assert torch.equal(layer.weight, new)
    layer = nn.Linear(4, 3).double()
    prune.apply_soft_threshold(layer, 0.5)
    layer.weight = new
    assert torch.equal(layer.weight, new)


def test_finalize_gives_plain_layers_holding_the_sparse_weights():
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    net = small_net().eval()
    prune.apply_soft_threshold(net, 0.0)
    prune.set_threshold(net, 0.1)
    out = net(x)
    report = prune.sparsity(net)
    assert report.sparsity > 0.3
    assert prune.finalize(net) == ["0", "4"]
    assert not parametrize.is_parametrized(net[0])
    plain = small_net().eval()
    plain.load_state_dict(net.state_dict())
    assert torch.equal(plain(x), out)
    assert prune.sparsity(plain) == report


def test_sparsity_counts_weights_not_biases():
    net = small_net()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.zero_()
        net[4].weight[:, :10] = 0
    report = prune.sparsity(net)
    assert [(r.name, r.zeros, r.total) for r in report.layers] == [
        ("0", 72, 72), ("4", 60, 600)]  # fmt: skip
    assert report.zeros == 132 and report.total == 672
    assert report.sparsity == pytest.approx(132 / 672)
    assert report.connectivity == pytest.approx(1 - 132 / 672)
    text = str(report)
    assert "all" in text and "19.64%" in text


# -- Gradient Rewiring ----------------------------------------------------------------


@pytest.mark.parametrize("target", [0.3, 0.5, 0.8, 0.95, 0.99])
def test_the_prior_puts_the_target_share_below_zero(target):
    alpha = 2e-3
    mu = prune.prior_centre(alpha, target)
    # Laplace(μ, b = 1/α): P(θ < 0) = exp(α(0 - μ))/2 below μ, 1 - exp(-α(0 - μ))/2 above.
    below = 0.5 * math.exp(-alpha * mu) if mu >= 0 else 1 - 0.5 * math.exp(alpha * mu)
    assert below == pytest.approx(target, rel=1e-12)


def _paper_grad_r(net0, x, target_fn, steps, lr, alpha, s_star, betas=(0.9, 0.999), eps=1e-8,
                  wd=0.0):  # fmt: skip
    """Grad R written out from methods.md 8.1 on a plain copy of the network: θ and the
    signs s kept here, Adam moments of ∂L/∂w, the prior step not divided by Adam's
    denominator; biases (no strengths) with plain Adam."""
    net = copy.deepcopy(net0)
    beta1, beta2 = betas
    mu = prune.prior_centre(alpha, s_star)
    weights = [net[0].weight, net[4].weight]
    sign = [torch.where(w < 0, -1.0, 1.0).to(w.dtype) for w in weights]
    theta = [w.detach().abs() for w in weights]
    others = [p for n, p in net.named_parameters() if not n.endswith("weight") or n == "1.weight"]
    params = weights + others
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for k in range(1, steps + 1):
        net.zero_grad()
        target_fn(net(x)).backward()
        eta = lr / (1 - beta1**k)
        for i, p in enumerate(params):
            g = p.grad + wd * p.detach()  # the authors' code decays the weight w itself
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            denom = v[i].sqrt() / math.sqrt(1 - beta2**k) + eps
            with torch.no_grad():
                if i < len(weights):
                    pull = torch.sign(theta[i] - mu)
                    theta[i] = theta[i] - sign[i] * eta * m[i] / denom - eta * alpha * pull
                    p.copy_(sign[i] * theta[i].clamp(min=0))
                else:
                    p.sub_(eta * m[i] / denom)
    return net, theta


@pytest.mark.parametrize(("foreach", "wd"), [(False, 0.0), (True, 0.0), (True, 0.3)])
def test_grad_rewiring_is_the_papers_update(foreach, wd):
    x = torch.randn(8, 2, 5, 5, dtype=torch.float64)
    net0 = small_net()
    net0.train()

    def target_fn(out):
        return (out - 0.3).pow(2).mean()

    lr, alpha, s_star = 0.02, 0.5, 0.9
    ref, theta = _paper_grad_r(net0, x, target_fn, 25, lr, alpha, s_star, wd=wd)
    net = copy.deepcopy(net0)
    prune.apply_gradient_rewiring(net)
    opt = prune.GradRewiring(net, lr=lr, alpha=alpha, target_sparsity=s_star, foreach=foreach,
                             weight_decay=wd)  # fmt: skip
    for _ in range(25):
        opt.zero_grad()
        target_fn(net(x)).backward()
        opt.step()
    for i, index in enumerate((0, 4)):
        hidden = net[index].parametrizations.weight.original
        torch.testing.assert_close(hidden, theta[i], rtol=0, atol=1e-12)
        torch.testing.assert_close(net[index].weight, ref[index].weight, rtol=0, atol=1e-12)
        torch.testing.assert_close(net[index].bias, ref[index].bias, rtol=0, atol=1e-12)
    torch.testing.assert_close(net[1].weight, ref[1].weight, rtol=0, atol=1e-12)
    assert prune.sparsity(net).sparsity > 0.2  # the prior pruned some synapses


def test_a_pruned_synapse_regrows_when_the_loss_wants_it():
    layer = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.fill_(0.5)
    prune.apply_gradient_rewiring(layer)
    with torch.no_grad():
        layer.parametrizations.weight.original.fill_(-0.05)  # pruned
    assert float(layer.weight.detach()) == 0.0
    opt = prune.GradRewiring(layer, lr=0.01, alpha=0.0)
    for _ in range(20):
        opt.zero_grad()
        (layer.weight - 1.0).pow(2).sum().backward()  # wants w = 1
        opt.step()
    assert float(layer.weight.detach()) > 0.1


def test_the_prior_alone_carries_every_strength_to_its_centre():
    torch.manual_seed(3)
    layer = nn.Linear(200, 100, bias=False).double()
    prune.apply_gradient_rewiring(layer)
    opt = prune.GradRewiring(layer, lr=1e-3, alpha=20.0, target_sparsity=0.9)
    for _ in range(300):
        opt.zero_grad()
        (layer.weight * 0).sum().backward()  # zero gradient: Adam does not move θ
        opt.step()
    # Steps of lr·α = 0.02 towards μ = ln(0.2)/20 ≈ -0.08, then one step around it.
    mu = prune.prior_centre(20.0, 0.9)
    hidden = layer.parametrizations.weight.original.detach()
    assert float((hidden - mu).abs().max()) <= 0.02 * (1 + 1e-9)
    assert prune.sparsity(layer).sparsity == 1.0


def test_grad_rewiring_param_groups_and_state():
    net = small_net()
    prune.apply_gradient_rewiring(net)
    opt = prune.GradRewiring(net, lr=1e-3, alpha=1e-2, target_sparsity=0.8)
    assert [g["alpha"] for g in opt.param_groups] == [1e-2, 0.0]
    assert len(opt.param_groups[0]["params"]) == 2  # the two strengths
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))]})
    assert opt.param_groups[-1]["alpha"] == 1e-2
    state = opt.state_dict()
    assert state["param_groups"][0]["target_sparsity"] == 0.8
    # explicit groups
    strengths = [net[0].parametrizations.weight.original]
    opt = prune.GradRewiring([{"params": strengths, "alpha": 0.1},
                              {"params": [net[1].weight], "alpha": 0}])  # fmt: skip
    assert [g["alpha"] for g in opt.param_groups] == [0.1, 0]
    assert [g["target_sparsity"] for g in opt.param_groups] == [0.95, 0.95]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"target_sparsity": 0.0}, "target_sparsity"),
        ({"target_sparsity": 1.0}, "target_sparsity"),
        ({"target_sparsity": "0.9"}, "target_sparsity"),
    ],
)
def test_grad_rewiring_refuses_bad_arguments(kwargs, message):
    net = small_net()
    prune.apply_gradient_rewiring(net)
    with pytest.raises(ConfigurationError, match=message):
        prune.GradRewiring(net, **kwargs)


def test_grad_rewiring_needs_a_prepared_model():
    with pytest.raises(ConfigurationError, match="apply_gradient_rewiring"):
        prune.GradRewiring(small_net())


# -- threshold schedules --------------------------------------------------------------


def _threshold(net):
    return float(net[0].parametrizations.weight[0].threshold)


@pytest.mark.parametrize(
    ("shape", "middle"),
    [("sine", 0.5), ("linear", 0.5), ("slats", 0.5 + 1 / math.pi)],
)
def test_threshold_schedule_shapes(shape, middle):
    net = small_net()
    prune.apply_soft_threshold(net)
    schedule = prune.ThresholdSchedule(net, 0.4, total_steps=10, shape=shape)
    seen = [_threshold(net)] + [schedule.step() for _ in range(12)]
    assert seen[0] == 0.0
    assert seen[5] == pytest.approx(0.4 * middle, rel=1e-12)
    assert seen[10] == pytest.approx(0.4, rel=1e-12) and seen[12] == seen[10]
    assert all(b >= a for a, b in itertools.pairwise(seen))
    assert _threshold(net) == seen[-1]
    assert float(net[4].parametrizations.weight[0].threshold) == seen[-1]


def test_threshold_schedule_start_and_resume():
    net = small_net()
    prune.apply_soft_threshold(net)
    schedule = prune.ThresholdSchedule(net, 1.0, total_steps=12, shape="linear", start_step=4)
    values = [schedule.step() for _ in range(8)]
    assert values[:5] == [0.0, 0.0, 0.0, 0.0, 0.125]  # steps 1-5
    assert values[7] == pytest.approx(0.5)
    other = small_net()
    prune.apply_soft_threshold(other)
    resumed = prune.ThresholdSchedule(other, 1.0, total_steps=12, shape="linear", start_step=4)
    resumed.load_state_dict(schedule.state_dict())
    assert _threshold(other) == _threshold(net)
    assert resumed.step() == schedule.step()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"final_threshold": -1, "total_steps": 5}, "final_threshold"),
        ({"final_threshold": 1, "total_steps": 0}, "total_steps"),
        ({"final_threshold": 1, "total_steps": 5, "start_step": 5}, "start_step"),
        ({"final_threshold": 1, "total_steps": 5, "shape": "cosine"}, "shape"),
        ({"final_threshold": 1, "total_steps": 5, "shape": "pgh"}, "shape 'pgh' needs beta"),
        ({"final_threshold": 1, "total_steps": 5, "shape": "pgh", "beta": -2.0}, "beta must"),
        ({"final_threshold": 1, "total_steps": 5, "beta": 2.0}, "beta is for shape 'pgh'"),
    ],
)
def test_threshold_schedule_refuses_bad_arguments(kwargs, message):
    net = small_net()
    prune.apply_soft_threshold(net)
    with pytest.raises(ConfigurationError, match=message):
        prune.ThresholdSchedule(net, **kwargs)


def test_lats_threshold_is_l1_times_the_summed_learning_rate():
    net = small_net()
    prune.apply_soft_threshold(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    steps = 200
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    prune.LATSThreshold(net, opt, l1=0.5)
    total = 0.0
    for _ in range(steps):
        total += opt.param_groups[0]["lr"]
        opt.step()  # moves the threshold, with the rate this step used
        sched.step()
    assert _threshold(net) == pytest.approx(0.5 * total, rel=1e-12)
    # Under the cosine schedule LATS is S-LATS's closed form (to one step's rate).
    final = 0.5 * 0.1 * steps / 2
    for k in (50, 100, 150):
        assert prune.threshold_at("slats", k / steps, final) == pytest.approx(
            0.5 * sum(0.1 * (1 + math.cos(math.pi * i / steps)) / 2 for i in range(k)),
            abs=0.5 * 0.1,
        )


def _simpson(f, a: float, b: float, n: int = 2000) -> float:
    h = (b - a) / n
    return h / 3 * sum((1 if i in (0, n) else 4 if i % 2 else 2) * f(a + i * h)
                       for i in range(n + 1))  # fmt: skip


@pytest.mark.parametrize("beta", [1e-3, 0.2, 1.0, 5.0, 1e3])
def test_pgh_is_lats_with_an_exponentially_growing_l1_under_a_cosine_rate(beta):
    """PGH's threshold is the running integral of λ(x)·η(x) with λ ∝ β^x and a cosine η,
    normalised to end at D: checked by quadrature, and against the authors' closed
    form as methods.md's source gives it; β = 1 is S-LATS."""

    def rate(u: float) -> float:
        return beta**u * (1 + math.cos(math.pi * u))

    total = _simpson(rate, 0.0, 1.0)
    for x in (0.0, 0.1, 0.37, 0.5, 0.8, 1.0):
        want = 2.5 * _simpson(rate, 0.0, x) / total if x else 0.0
        assert prune.threshold_at("pgh", x, 2.5, beta) == pytest.approx(want, rel=1e-9, abs=1e-12)
        if beta != 1.0:
            lb, p = math.log(beta), beta**x
            closed = (math.pi**2 * (p - 1) + (p - 2) * lb**2
                      + p * lb * (lb * math.cos(math.pi * x) + math.pi * math.sin(math.pi * x))
                      ) / (math.pi**2 * (beta - 1) - 2 * lb**2)  # fmt: skip
            assert prune.threshold_at("pgh", x, 1.0, beta) == pytest.approx(closed, abs=1e-12)
        else:
            assert prune.threshold_at("pgh", x, 1.0, beta) == prune.threshold_at("slats", x, 1.0)
    # β < 1 prunes early: more than S-LATS's threshold in the first half
    if beta < 1:
        assert prune.threshold_at("pgh", 0.3, 1.0, beta) > prune.threshold_at("slats", 0.3, 1.0)


def test_pgh_schedule_steps_through_the_layers():
    net = small_net()
    prune.apply_soft_threshold(net)
    schedule = prune.ThresholdSchedule(net, 0.2, total_steps=10, shape="pgh", beta=0.1)
    for k in range(1, 11):
        assert schedule.step() == pytest.approx(prune.threshold_at("pgh", k / 10, 0.2, 0.1))
        assert _threshold(net) == pytest.approx(schedule.threshold)
    assert _threshold(net) == pytest.approx(0.2)


def test_lats_with_a_final_threshold_is_the_authors_per_epoch_lats():
    """λ = D / (steps × Σ η_e) under a per-epoch cosine rate: at every step the threshold
    is the authors' "low-frequency" LATS, D·(Σ_{e<n} (1 + cos(πe/N)) + (b/B)(1 + cos(πn/N)))
    / (N + 1) after step b of epoch n, written with their closed form of the partial sum."""
    from spikeflow.training.pruning import lats_strength

    net = small_net()
    prune.apply_soft_threshold(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    epochs, per_epoch, final = 6, 7, 0.3
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    lrs = [0.05 * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    prune.LATSThreshold(net, opt, l1=lats_strength(final, lrs, per_epoch))

    def base(n: int) -> float:  # Σ_{e<n} (1 + cos(πe/N)) / (N + 1), in closed form
        ratio = math.sin(math.pi * (n - 0.5) / epochs) / math.sin(math.pi * 0.5 / epochs)
        return 0.5 * (1.0 + 2 * n + ratio) / (epochs + 1.0)

    for n in range(epochs):
        for b in range(1, per_epoch + 1):
            opt.step()
            flat = (1 + math.cos(n * math.pi / epochs)) / per_epoch / (1 + epochs)
            assert _threshold(net) == pytest.approx(final * (base(n) + b * flat), rel=1e-9)
        sched.step()
    assert _threshold(net) == pytest.approx(final, rel=1e-12)


def test_lats_threshold_follows_each_layers_group():
    net = small_net()
    prune.apply_soft_threshold(net)
    first = net[0].parametrizations.weight.original
    rest = [p for p in net.parameters() if p is not first]
    opt = torch.optim.SGD([{"params": [first], "lr": 0.1}, {"params": rest, "lr": 0.01}])
    lats = prune.LATSThreshold(net, opt, l1=2.0)
    opt.step()
    assert _threshold(net) == pytest.approx(0.2)
    assert float(net[4].parametrizations.weight[0].threshold) == pytest.approx(0.02)
    saved = lats.state_dict()
    other = small_net()
    prune.apply_soft_threshold(other)
    again = prune.LATSThreshold(other, torch.optim.SGD(other.parameters(), lr=0.1), l1=2.0)
    again.load_state_dict(saved)
    assert _threshold(other) == pytest.approx(0.2)
    with pytest.raises(ConfigurationError, match="does not train"):
        prune.LATSThreshold(net, torch.optim.SGD(rest, lr=0.1), l1=1.0)
    with pytest.raises(ConfigurationError, match="l1"):
        prune.LATSThreshold(net, opt, l1=-1.0)


def test_soft_threshold_training_prunes_and_learns():
    torch.manual_seed(4)
    x = torch.randn(256, 20)
    true_w = torch.zeros(1, 20)
    true_w[0, :3] = torch.tensor([1.5, -2.0, 1.0])
    y = x @ true_w.T
    layer = nn.Linear(20, 1, bias=False)
    prune.apply_soft_threshold(layer)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    schedule = prune.ThresholdSchedule(layer, 0.05, total_steps=300, shape="sine")
    for _ in range(300):
        opt.zero_grad()
        (layer(x) - y).pow(2).mean().backward()
        opt.step()
        schedule.step()
    # the irrelevant inputs are pruned, the relevant ones kept
    assert torch.equal(layer.weight[0, 3:], torch.zeros(17))
    torch.testing.assert_close(layer.weight[0, :3], true_w[0, :3], atol=0.1, rtol=0)


# -- pruned models in the rest of spikeflow -------------------------------------------


def test_a_pruned_model_exports_its_sparse_weights_to_nir():
    pytest.importorskip("nir", reason="the nir extra is not installed")
    from spikeflow.interop import export_to_nir

    torch.manual_seed(5)
    net = nn.Sequential(layers.Linear(20, 10), neurons.LIFNode(), layers.Linear(10, 3),
                        neurons.LIFNode())  # fmt: skip
    prune.apply_gradient_rewiring(net)
    with torch.no_grad():
        net[0].parametrizations.weight.original[:, :5] = -1.0
    graph = export_to_nir(net, torch.zeros(2, 1, 20))
    exported = graph.nodes["_0"].weight
    assert (exported == 0).sum() == 50  # the effective weight, not θ
    assert torch.equal(torch.as_tensor(exported), net[0].weight.detach())
    assert torch.equal(torch.as_tensor(graph.nodes["_2"].weight), net[2].weight.detach())


def test_a_pruned_ann_converts_with_its_batch_norm_folded():
    from spikeflow.conversion import constant_input, convert

    torch.manual_seed(6)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 10))  # fmt: skip
    prune.apply_soft_threshold(ann)
    prune.set_threshold(ann, 0.05)
    x = torch.rand(16, 1, 8, 8)
    ann.eval()
    snn, report = convert(ann, x)
    assert "folded" in str(report)
    assert parametrize.is_parametrized(ann[0])  # the model given is not modified
    convs = [m for m in snn.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and not parametrize.is_parametrized(convs[0])
    # folding scales each output channel: the pruned synapses stay zero
    assert torch.equal(convs[0].weight == 0, ann[0].weight == 0)
    out = snn(constant_input(x, 256)).mean(0)
    torch.testing.assert_close(out, ann(x).detach(), atol=0.05, rtol=0)


def test_finalizing_a_copy_leaves_the_original_pruned_model_working():
    net = small_net().eval()
    prune.apply_gradient_rewiring(net)
    twin = copy.deepcopy(net)
    prune.finalize(twin)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    assert torch.equal(net(x), twin(x))
    assert parametrize.is_parametrized(net[0]) and not parametrize.is_parametrized(twin[0])
    assert type(twin[0]) is nn.Conv2d and type(twin[4]) is nn.Linear
    net(x).sum().backward()  # still trains
    assert net[0].parametrizations.weight.original.grad is not None


# -- found in review ------------------------------------------------------------------


def test_schedules_follow_the_model_through_a_dtype_change():
    net = small_net(torch.float32)
    prune.apply_soft_threshold(net)
    schedule = prune.ThresholdSchedule(net, 0.5, total_steps=2, shape="linear")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    lats_net = small_net(torch.float32)
    prune.apply_soft_threshold(lats_net)
    lats_opt = torch.optim.SGD(lats_net.parameters(), lr=0.1)
    prune.LATSThreshold(lats_net, lats_opt, l1=1.0)
    net.double()  # replaces the buffers
    lats_net.double()
    schedule.step()
    lats_opt.step()
    assert _threshold(net) == 0.25 and net[0].parametrizations.weight[0].threshold.dtype == (
        torch.float64)  # fmt: skip
    assert _threshold(lats_net) == pytest.approx(0.1)
    del opt


def test_lats_sums_in_double_precision_in_a_low_precision_model():
    layer = nn.Linear(4, 4, bias=False).to(torch.bfloat16)
    prune.apply_soft_threshold(layer)
    opt = torch.optim.SGD(layer.parameters(), lr=1e-3)
    lats = prune.LATSThreshold(layer, opt, l1=1.0)
    for _ in range(4000):
        opt.step()
    assert lats.thresholds[0] == pytest.approx(4.0, rel=1e-12)
    # bfloat16 holds 4.0 exactly; summed in bfloat16 it would stall near 0.5
    assert float(layer.parametrizations.weight[0].threshold) == 4.0


def test_lats_waits_for_its_start_and_ignores_skipped_steps():
    layer = nn.Linear(3, 2)
    prune.apply_soft_threshold(layer)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    lats = prune.LATSThreshold(layer, opt, l1=1.0, start_step=2)
    for _ in range(3):
        opt.step()
    assert lats.thresholds == [pytest.approx(0.1)]
    scaler = torch.amp.GradScaler("cpu")
    opt.zero_grad()
    scaler.scale(layer(torch.ones(1, 3)).sum() * math.inf).backward()  # inf: step skipped
    scaler.step(opt)
    scaler.update()
    assert lats.thresholds == [pytest.approx(0.1)]
    assert lats.state_dict()["step_count"] == 3
    lats.remove()
    opt.step()
    assert lats.thresholds == [pytest.approx(0.1)]


def test_grad_rewiring_refuses_bare_parameters():
    net = small_net()
    prune.apply_gradient_rewiring(net)
    with pytest.raises(ConfigurationError, match="parameter group 0 sets no alpha"):
        prune.GradRewiring(net.parameters())
    with pytest.raises(ConfigurationError, match="parameter group 1 sets no alpha"):
        prune.GradRewiring([{"params": [net[0].bias], "alpha": 0.0},
                            {"params": [net[1].weight]}])  # fmt: skip


def test_grad_rewiring_runs_hooks_once_and_skips_the_prior_on_skipped_fused_steps():
    net = small_net(torch.float32)
    prune.apply_gradient_rewiring(net)
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])  # torch wraps Adam.step too
    opt = prune.GradRewiring(net, lr=0.01, alpha=1.0, fused=True)
    calls = []
    opt.register_step_post_hook(lambda *args: calls.append(1))
    hidden = net[0].parametrizations.weight.original
    before = hidden.detach().clone()
    scaler = torch.amp.GradScaler("cpu")
    opt.zero_grad()
    scaler.scale(net(torch.ones(1, 2, 5, 5)).sum() * math.inf).backward()
    scaler.step(opt)  # the fused kernel skips it: no Adam step, so no prior step
    scaler.update()
    assert torch.equal(hidden.detach(), before)
    opt.zero_grad()
    net(torch.ones(1, 2, 5, 5)).sum().backward()
    opt.step()
    assert not torch.equal(hidden.detach(), before)
    assert len(calls) == 2  # one per step, skipped or not


def test_assigning_a_weight_of_another_dtype_or_shape_to_a_grad_r_layer():
    from spikeflow.errors import ShapeError

    layer = nn.Linear(3, 2, bias=False)
    prune.apply_gradient_rewiring(layer)
    sign = layer.parametrizations.weight[0].sign.clone()
    with pytest.raises(ShapeError, match=r"shape \(3, 3\)"):
        layer.weight = torch.ones(3, 3)
    assert torch.equal(layer.parametrizations.weight[0].sign, sign)
    new = -torch.ones(2, 3, dtype=torch.float64)
    layer.weight = new  # cast to the layer's dtype, as copy_ would
    assert layer.weight.dtype == torch.float32 and torch.equal(layer.weight, new.float())


def test_distributed_training_ignores_the_fixed_signs():
    from spikeflow.training.pruning import ignore_fixed_buffers

    net = small_net()
    prune.apply_gradient_rewiring(net)
    ignore_fixed_buffers(net)
    ignored = set(net._ddp_params_and_buffers_to_ignore)
    assert ignored == {"0.parametrizations.weight.0.sign", "4.parametrizations.weight.0.sign"}
    assert ignored <= set(net.state_dict())


def test_a_pruned_recurrent_layer_computes_its_weight_once_per_sequence():
    inner = nn.Sequential(nn.Linear(6, 4), neurons.LIFNode(step_mode="s"))
    container = layers.LinearRecurrentContainer(inner, in_features=6, out_features=4)
    rc = container.rc
    prune.apply_soft_threshold(container)
    prune.set_threshold(container, 0.05)
    calls = []
    rc.parametrizations.weight[0].register_forward_hook(lambda *args: calls.append(1))
    x = torch.rand(7, 2, 6)
    out = container(x)
    assert len(calls) == 1
    out.sum().backward()
    assert rc.parametrizations.weight.original.grad is not None


def test_pgh_stays_finite_for_huge_beta_and_names_bad_beta():
    values = [prune.threshold_at("pgh", k / 10, 0.3, 1e306) for k in range(11)]
    assert all(math.isfinite(v) for v in values) and values[-1] == pytest.approx(0.3)
    assert values == sorted(values) and values[5] < 1e-100  # all the pruning at the end
    for beta in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigurationError, match="threshold_at: beta must be"):
            prune.threshold_at("pgh", 0.5, 1.0, beta)
