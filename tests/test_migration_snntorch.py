"""docs/migration.md "From snnTorch", checked against snnTorch 1.0.

Every mapping the section states is run here on both sides with the same weights and the
same input: spikes must be identical and gradients equal in float64 (snnTorch returns its
spikes as float32 tensors, so gradients through them carry float32 rounding: rtol 1e-5).
The section's code blocks are executed as printed. The tests skip when snnTorch is absent.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from migration_checks import (
    F64_RTOL,
    SNN_RTOL,
    assert_same_spikes,
    block,
    grads,
    run,
    sequence,
    step_loop,
)
from spikeflow import encoding, layers, neurons, surrogate
from spikeflow.errors import ConfigurationError
from spikeflow.kernels.expr import TraceError


def snntorch():
    return pytest.importorskip("snntorch", reason="snnTorch is not installed")


def _float64_spikes(*cells):
    """snnTorch makes float32 spikes; a 1-d float64 factor promotes them (the value is 1),
    so that layers after them run in float64 like the rest of the test."""
    for cell in cells:
        cell.graded_spikes_factor = torch.ones(1, dtype=torch.float64)


def test_snntorch_loop_becomes_one_call(float64):
    snntorch()
    torch.manual_seed(0)
    theirs = run(block("snntorch-loop"), "snnTorch loop")
    _float64_spikes(theirs["lif1"], theirs["lif2"])
    ours = run(block("snntorch-port"), "spikeflow port")
    net = ours["net"]
    net[0].load_state_dict(theirs["fc1"].state_dict())
    net[2].load_state_dict(theirs["fc2"].state_dict())
    x = torch.rand(8, 4, 2 * 34 * 34) * 4
    g = torch.randn(8, 4, 10)
    x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = theirs["forward"](x_snn), net(x_sf)
    assert_same_spikes(got, want, low=0.01)
    hidden = net[1](net[0](x))
    assert 0.1 < hidden.mean() < 0.9
    params = [theirs["fc1"].weight, theirs["fc2"].weight]
    g_snn = grads(want, [x_snn, *params], g)
    g_sf = grads(got, [x_sf, net[0].weight, net[2].weight], g)
    for a, b in zip(g_sf, g_snn):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b.double(), **SNN_RTOL)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_leaky_node_is_snntorchs_default_leaky(float64, backend):
    """The ``Leaky`` row with snnTorch's defaults (subtract, delayed, ``atan()``,
    ``U > θ``): ``neurons.LeakyNode(beta, threshold=θ)`` gives its spikes, membranes
    (``v_seq`` is its ``mem``) and gradients; no ``LIFNode`` setting gives the spikes."""
    snn = snntorch()
    beta, theta = 0.8, 1.2
    x, g = sequence()
    leaky = snn.Leaky(beta=beta, threshold=theta)  # reset_mechanism="subtract", atan()
    assert leaky.reset_mechanism == "subtract" and leaky.reset_delay
    x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    spikes, mems, mem = [], [], None
    for x_t in x_snn:
        spk, mem = leaky(x_t) if mem is None else leaky(x_t, mem)
        spikes.append(spk)
        mems.append(mem)
    want = torch.stack(spikes)
    ours = neurons.LeakyNode(beta, threshold=theta, store_v_seq=True, backend=backend)
    got = ours(x_sf)
    assert_same_spikes(got, want)
    torch.testing.assert_close(ours.v_seq, torch.stack(mems).double(), **SNN_RTOL)
    torch.testing.assert_close(grads(got, [x_sf], g)[0], grads(want, [x_snn], g)[0], **SNN_RTOL)
    # no LIFNode setting: neither reset gives these spikes
    for v_reset in (0.0, None):
        lif = neurons.LIFNode(
            tau=1 / (1 - beta),
            decay_input=False,
            v_threshold=theta,
            v_reset=v_reset,
            strict_firing=True,
        )
        assert not torch.equal(lif(x), want.double())


class _OneToOne(nn.Module):
    """RLeaky's ``all_to_all=False`` feedback (docs/neuron_zoo_snntorch.md): ``x + V y``."""

    def __init__(self, V):
        super().__init__()
        self.V = nn.Parameter(torch.as_tensor(V))

    def forward(self, x, y):
        return x + self.V * y


@pytest.mark.parametrize("reset, delay", [("subtract", True), ("zero", True), ("zero", False)])
def test_rleaky_ports(float64, reset, delay):
    """The ``RLeaky`` row: ``layers.Recurrent`` around ``LeakyNode(...,
    zero_clears_input=True)`` with RLeaky's ``recurrent`` weights loaded, and the
    one-to-one feedback (``all_to_all=False``) in ``ElementWiseRecurrentContainer``."""
    snn = snntorch()
    n, beta = 30, 0.7
    x, g = sequence(1.2)
    torch.manual_seed(3)
    rleaky = snn.RLeaky(beta=beta, linear_features=n, reset_mechanism=reset, reset_delay=delay)
    with torch.no_grad():
        rleaky.recurrent.weight.mul_(2.0)
    _float64_spikes(rleaky)
    cell = dict(reset_mechanism=reset, reset_delay=delay, zero_clears_input=True, step_mode="s")
    ours = layers.Recurrent(neurons.LeakyNode(beta, **cell), n, bias=True)
    ours.recurrent.load_state_dict(rleaky.recurrent.state_dict())
    x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = step_loop(rleaky, x_snn, recurrent=True), ours(x_sf)
    assert_same_spikes(got, want)
    g_snn = grads(want, [x_snn, rleaky.recurrent.weight, rleaky.recurrent.bias], g)
    g_sf = grads(got, [x_sf, ours.recurrent.weight, ours.recurrent.bias], g)
    for a, b in zip(g_sf, g_snn):
        torch.testing.assert_close(a, b, **SNN_RTOL)

    v = torch.linspace(-0.5, 0.9, n)
    rleaky = snn.RLeaky(
        beta=beta, V=v.clone(), all_to_all=False, reset_mechanism=reset, reset_delay=delay
    )
    _float64_spikes(rleaky)
    ours = layers.ElementWiseRecurrentContainer(neurons.LeakyNode(beta, **cell), _OneToOne(v))
    x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = step_loop(rleaky, x_snn, recurrent=True), ours(x_sf)
    assert_same_spikes(got, want)
    g_snn = grads(want, [x_snn, rleaky.V], g)
    g_sf = grads(got, [x_sf, ours.element_wise_function.V], g)
    for a, b in zip(g_sf, g_snn):
        torch.testing.assert_close(a, b, **SNN_RTOL)
    if reset == "zero" and delay:  # Leaky's own "zero" keeps the input: not RLeaky's
        plain = neurons.LeakyNode(beta, reset_mechanism="zero", step_mode="s")
        other = layers.ElementWiseRecurrentContainer(plain, _OneToOne(v))
        assert not torch.equal(other(x), want.double())


def test_rsynaptic_port(float64):
    """The ``RSynaptic`` row: ``layers.Recurrent(SynapticNode(...))``; snnTorch 1.0's
    ``reset_delay=False`` gives the numbers of its delayed reset."""
    snn = snntorch()
    n = 8
    x, g = sequence(0.9, (16, 4, n))
    runs = []
    for delay in (True, False):
        torch.manual_seed(2)
        rsyn = snn.RSynaptic(
            alpha=0.5, beta=0.7, linear_features=n, reset_mechanism="zero", reset_delay=delay
        )
        _float64_spikes(rsyn)
        x_snn = x.clone().requires_grad_()
        zeros = torch.zeros(4, n)
        out, states = [], (zeros, zeros, zeros)  # its reset_delay=False needs them passed
        for x_t in x_snn:
            states = rsyn(x_t, *states)
            out.append(states[0])
        runs.append((rsyn, x_snn, torch.stack(out)))
    rsyn, x_snn, want = runs[0]
    assert torch.equal(runs[1][2], want)
    node = neurons.SynapticNode(0.5, 0.7, reset_mechanism="zero", step_mode="s")
    ours = layers.Recurrent(node, n, bias=True)
    ours.recurrent.load_state_dict(rsyn.recurrent.state_dict())
    x_sf = x.clone().requires_grad_()
    got = ours(x_sf)
    assert_same_spikes(got, want)
    g_snn = grads(want, [x_snn, rsyn.recurrent.weight], g)
    g_sf = grads(got, [x_sf, ours.recurrent.weight], g)
    for a, b in zip(g_sf, g_snn):
        torch.testing.assert_close(a, b, **SNN_RTOL)


def test_synaptic_and_reset_delay(float64):
    snn = snntorch()
    alpha, beta = 0.6, 0.8
    x, g = sequence()
    synaptic = snn.Synaptic(alpha=alpha, beta=beta, reset_mechanism="zero", reset_delay=False)
    tau_syn, tau_mem = 1 / (1 - alpha), 1 / (1 - beta)
    ours = neurons.CubaLIFNode(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=tau_syn * tau_mem,
        strict_firing=True,
        surrogate_function=surrogate.ATan(),
    )
    x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = step_loop(synaptic, x_snn, 2), ours(x_sf)
    assert_same_spikes(got, want)
    torch.testing.assert_close(grads(got, [x_sf], g)[0], grads(want, [x_snn], g)[0], **SNN_RTOL)
    # with the default reset_delay=True a "zero" reset also drops the next step's input
    delayed = snn.Synaptic(alpha=alpha, beta=beta, reset_mechanism="zero")
    spk, syn, mem = delayed(torch.full((1,), 5.0))
    assert spk.item() == 1
    spk, syn, mem = delayed(torch.full((1,), 5.0), syn, mem)
    assert mem.item() == 0.0 and syn.item() > 5.0
    assert not torch.equal(step_loop(delayed, x, 2).double(), want.double())
    # ... which SynapticNode does (the Synaptic row, here its delayed "zero")
    delayed = snn.Synaptic(alpha=alpha, beta=beta, reset_mechanism="zero")
    ours = neurons.SynapticNode(alpha, beta, reset_mechanism="zero")
    x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = step_loop(delayed, x_snn, 2), ours(x_sf)
    assert_same_spikes(got, want)
    torch.testing.assert_close(grads(got, [x_sf], g)[0], grads(want, [x_snn], g)[0], **SNN_RTOL)
    rleaky = snn.RLeaky(beta=beta, linear_features=1, reset_mechanism="zero")
    with torch.no_grad():
        rleaky.recurrent.weight.zero_()
        rleaky.recurrent.bias.zero_()
    _float64_spikes(rleaky)
    spk, mem = rleaky(torch.full((1, 1), 5.0))
    assert spk.item() == 1
    spk, mem = rleaky(torch.full((1, 1), 5.0), spk, mem)
    assert mem.item() == 0.0


def test_leaky_learnable_parameters_and_bntt(float64):
    snn = snntorch()
    beta = 0.8
    x, g = sequence(2.0)
    common = dict(
        decay_input=False,
        strict_firing=True,
        detach_reset=True,
        surrogate_function=surrogate.ATan(),
    )
    leaky = snn.Leaky(beta=beta, threshold=0.9, reset_mechanism="zero", learn_threshold=True)
    ours = neurons.LIFNode(tau=1 / (1 - beta), v_threshold=0.9, learnable_threshold=True, **common)
    x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = step_loop(leaky, x_snn), ours(x_sf)
    assert_same_spikes(got, want)
    for a, b in zip(
        grads(got, [x_sf, ours.v_threshold], g), grads(want, [x_snn, leaky.threshold], g)
    ):
        torch.testing.assert_close(a, b, **SNN_RTOL)

    leaky = snn.Leaky(beta=beta, reset_mechanism="zero", learn_beta=True)
    ours = neurons.ParametricLIFNode(init_tau=1 / (1 - beta), **common)
    x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = step_loop(leaky, x_snn), ours(x_sf)
    assert_same_spikes(got, want)
    torch.testing.assert_close(grads(got, [x_sf], g)[0], grads(want, [x_snn], g)[0], **SNN_RTOL)
    # LeakyNode learns snnTorch's beta and threshold themselves (per neuron here); its
    # atan() as a float64 spike function, so that the sums over steps agree to 1e-10
    betas = torch.linspace(0.6, 0.9, x.shape[-1])
    leaky = snn.Leaky(beta=betas.clone(), threshold=0.9, learn_beta=True, learn_threshold=True,
                      spike_grad=lambda u: surrogate.ATan()(u, strict=True))  # fmt: skip
    ours = neurons.LeakyNode(betas.clone(), threshold=0.9, learn_beta=True, learn_threshold=True)
    x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = step_loop(leaky, x_snn), ours(x_sf)
    assert_same_spikes(got, want)
    g_snn = grads(want, [x_snn, leaky.beta, leaky.threshold], g)
    for a, b in zip(grads(got, [x_sf, ours.beta, ours.v_threshold], g), g_snn):
        torch.testing.assert_close(a, b, **F64_RTOL)

    bntt = snn.BatchNormTT2d(8, 4)
    ours = layers.BatchNormThroughTime2d(8, T=4)
    ours.load_state_dict({"bn." + k: v for k, v in nn.ModuleList(bntt).state_dict().items()})
    frames = torch.randn(4, 3, 8, 5, 5)
    want = torch.stack([bntt[t](frames[t]) for t in range(4)])
    torch.testing.assert_close(ours(frames), want, **F64_RTOL)


def test_snntorch_fires_strictly(float64):
    snn = snntorch()
    x = torch.tensor([[0.5], [0.75], [0.0]])  # U = 0.5, then 0.5 * 0.5 + 0.75 = 1.0 = θ
    want = step_loop(snn.Leaky(beta=0.5, reset_mechanism="zero"), x)
    lif = dict(tau=2.0, decay_input=False, detach_reset=True)
    assert want.sum() == 0
    assert torch.equal(neurons.LIFNode(strict_firing=True, **lif)(x), want.double())
    assert neurons.LIFNode(**lif)(x).sum() == 1  # H >= θ fires

    # snnTorch returns the membrane before the reset, spikeflow's v_seq holds it after
    x = torch.tensor([[1.5], [0.2]])
    leaky, mem, mems = snn.Leaky(beta=0.5, reset_mechanism="zero"), None, []
    for x_t in x:
        _, mem = leaky(x_t) if mem is None else leaky(x_t, mem)
        mems.append(mem)
    ours = neurons.LIFNode(strict_firing=True, store_v_seq=True, **lif)
    assert ours(x).flatten().tolist() == [1.0, 0.0]
    assert [m.item() for m in mems] == [1.5, 0.2] and ours.v_seq.flatten().tolist() == [0.0, 0.2]


def _snn_surrogate_pairs(snn_surrogate):
    return {
        "atan()": (snn_surrogate.atan(), surrogate.ATan()),
        "atan(alpha=3)": (snn_surrogate.atan(alpha=3.0), surrogate.ATan(alpha=3.0)),
        "sigmoid(slope=5)": (snn_surrogate.sigmoid(slope=5.0), surrogate.Sigmoid(alpha=5.0)),
        "fast_sigmoid(slope=25)": (
            snn_surrogate.fast_sigmoid(slope=25),
            surrogate.FastSigmoid(slope=25),
        ),
        "fast_sigmoid(slope=2)": (snn_surrogate.fast_sigmoid(slope=2), surrogate.QPseudoSpike(2.0)),
        "straight_through_estimator()": (
            snn_surrogate.straight_through_estimator(),
            surrogate.LeakyKReLU(leak=1.0, k=1.0),
        ),
        "heaviside()": (snn_surrogate.heaviside(), surrogate.LeakySpikeOperator(slope=0.0)),
        "spike_rate_escape(beta=2, slope=10)": (
            snn_surrogate.spike_rate_escape(beta=2.0, slope=10.0),
            surrogate.SpikeRateEscape(beta=2.0, slope=10.0),
        ),
        "SFS(slope=10, B=0.5)": (
            snn_surrogate.SFS(slope=10.0, B=0.5),
            surrogate.SparseFastSigmoid(slope=10.0, B=0.5),
        ),
        "triangular(threshold=0.5)": (
            snn_surrogate.triangular(threshold=0.5),
            surrogate.Triangular(threshold=0.5),
        ),
    }


def test_snntorch_surrogates(float64):
    snntorch()
    from snntorch import surrogate as snn_surrogate

    x = torch.linspace(-2, 2, 400)  # even count: 0 is not on the grid
    assert not (x == 0).any()
    for label, (theirs, ours) in _snn_surrogate_pairs(snn_surrogate).items():
        x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_snn, y_sf = theirs(x_snn), ours(x_sf, strict=True)
        assert torch.equal(y_snn.double(), y_sf), label
        y_snn.sum().backward()
        y_sf.sum().backward()
        assert x_snn.grad.abs().sum() > 0, label
        torch.testing.assert_close(x_sf.grad, x_snn.grad.double(), **SNN_RTOL, msg=label)
    # SoftSign(alpha=k) is fast_sigmoid(slope=k) times k/2
    soft = surrogate.SoftSign.derivative(x, alpha=25.0)
    torch.testing.assert_close(soft, 12.5 * surrogate.FastSigmoid.derivative(x, slope=25.0))
    named = surrogate.get_surrogate("fast_sigmoid")  # by name, snnTorch's tutorials' 25
    assert isinstance(named, surrogate.FastSigmoid) and named.params == {"slope": 25.0}
    # heaviside at x = 0: LeakySpikeOperator(slope=0) passes 0 as snnTorch, LeakyKReLU 1
    zero = torch.zeros(1, requires_grad=True)
    snn_surrogate.heaviside()(zero).sum().backward()
    assert zero.grad.item() == 0.0
    assert surrogate.LeakySpikeOperator.derivative(torch.zeros(1), slope=0.0).item() == 0.0
    assert surrogate.LeakyKReLU.derivative(torch.zeros(1), leak=0.0, k=1.0).item() == 1.0
    # LSO fails in snnTorch 1.0; SSO is random, refused by name and by the fused kernels
    with pytest.raises(TypeError):
        snn_surrogate.LSO(slope=0.2)(x.clone().requires_grad_()).sum().backward()
    with pytest.raises(ConfigurationError, match="unknown surrogate"):
        surrogate.get_surrogate("stochastic_spike_operator")
    sso = surrogate.StochasticSpikeOperator(mean=0.1, variance=0.3)
    with pytest.raises(TraceError, match="random"):
        neurons.LeakyNode(0.8, surrogate_function=sso, backend="cpu")(x.reshape(400, 1, 1))

    # the surrogate inside a neuron, on the fused kernels: snnTorch's Leaky("zero") as LIFNode
    snn = snntorch()
    x, g = sequence()
    leaky = snn.Leaky(
        beta=0.5, spike_grad=snn_surrogate.fast_sigmoid(slope=25), reset_mechanism="zero"
    )
    ours = neurons.LIFNode(
        tau=2.0,
        decay_input=False,
        strict_firing=True,
        detach_reset=True,
        surrogate_function=surrogate.FastSigmoid(slope=25),
        backend="cpu",
    )
    x_snn, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = step_loop(leaky, x_snn), ours(x_sf)
    assert_same_spikes(got, want)
    torch.testing.assert_close(grads(got, [x_sf], g)[0], grads(want, [x_snn], g)[0], **SNN_RTOL)


def test_spikegen():
    snntorch()
    from snntorch import spikegen

    x = torch.rand(4, 3, 5)
    x[0, 0] = torch.tensor([0.0, 1.0, 0.5, 0.005, 0.01])
    for steps in (8, 50):
        want = spikegen.latency(x, num_steps=steps, linear=True, normalize=True)
        assert torch.equal(encoding.LatencyEncoder(steps)(x), want)
    want = spikegen.latency(x, num_steps=60, linear=True, normalize=True)
    assert not torch.equal(encoding.LatencyEncoder(60)(x), want)  # the 0.01 threshold
    want = spikegen.latency(x, num_steps=8, normalize=True)  # snnTorch's log code
    assert not torch.equal(encoding.LatencyEncoder(8, "log")(x), want)
    binary = (torch.rand(4, 3, 5) > 0.5).float()
    assert torch.equal(encoding.PoissonEncoder(8)(binary), spikegen.rate(binary, num_steps=8))
    p = torch.full((4000,), 0.3)
    snn_rate = spikegen.rate(p, num_steps=50).mean().item()
    ours_rate = encoding.PoissonEncoder(50)(p).mean().item()
    assert abs(snn_rate - 0.3) < 0.01 and abs(ours_rate - 0.3) < 0.01


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_stdp_learner(float64, kind):
    """snnTorch's ``functional.stdp_learner.STDPLearner`` (its STDP tutorial), stepped per
    time step, is ``learn.STDPLearner`` on the whole sequence: the same spikes and Δw."""
    snn = snntorch()
    from snntorch import utils
    from snntorch.functional.stdp_learner import STDPLearner as TheirLearner

    from spikeflow.learn import STDPLearner

    steps, batch = 30, 3
    if kind == "conv2d":
        theirs = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        ours = layers.Conv2d(2, 4, 3, padding=1, bias=False)
        pre = (torch.rand(steps, batch, 2, 6, 6) < 0.3).double()
    else:
        theirs, ours = nn.Linear(12, 5, bias=False), layers.Linear(12, 5, bias=False)
        pre = (torch.rand(steps, batch, 12) < 0.3).double()
    nn.init.uniform_(theirs.weight, 0.0, 0.6)
    ours.load_state_dict(theirs.state_dict())
    leaky = snn.Leaky(beta=0.9, init_hidden=True)
    _float64_spikes(leaky)
    node = neurons.LeakyNode(0.9)
    rule = dict(tau_pre=2.0, tau_post=3.0, f_pre=lambda w: w.clamp(min=0),
                f_post=lambda w: (1 - w).clamp(min=0))  # fmt: skip
    their_learner = TheirLearner(theirs, leaky, **rule)
    our_learner = STDPLearner(ours, node, **rule)
    net = nn.Sequential(theirs, leaky)
    utils.reset(net)
    with torch.no_grad():
        want = torch.stack([net(x_t) for x_t in pre])
        got = nn.Sequential(ours, node)(pre)
    assert_same_spikes(got, want, low=0.05)
    torch.testing.assert_close(
        our_learner.step(on_grad=False), their_learner.step(on_grad=False), **F64_RTOL
    )


def test_per_step_batch_norm_and_dropout():
    """The "Plots, probes and utilities" rows: an ``nn.BatchNorm2d`` called at every step
    of snnTorch's loop is ``layers.MultiStepContainer(nn.BatchNorm2d)`` (statistics and
    running statistics per step), not ``layers.BatchNorm2d`` (statistics over ``T·B``);
    ``layers.Dropout`` shares its mask over the steps, ``nn.Dropout`` draws per element."""
    torch.manual_seed(0)
    x = torch.randn(5, 4, 3, 6, 6) * torch.arange(1.0, 6.0).view(5, 1, 1, 1, 1)
    loop_bn, per_step = nn.BatchNorm2d(3), layers.MultiStepContainer(nn.BatchNorm2d(3))
    folded = layers.BatchNorm2d(3)
    want = torch.stack([loop_bn(x_t) for x_t in x])
    torch.testing.assert_close(per_step(x), want)
    torch.testing.assert_close(per_step[0].running_var, loop_bn.running_var)
    assert (folded(x) - want).abs().max() > 0.5  # one normalisation for all steps
    ones = torch.ones(6, 2, 400)
    shared = layers.Dropout(0.5)(ones)
    assert torch.equal(shared, shared[:1].expand_as(shared))
    fresh = nn.Dropout(0.5)(ones)
    assert not torch.equal(fresh, fresh[:1].expand_as(fresh))


def test_snntorch_tutorial_static_input_loop_port(float64):
    """The ``snntorch-static`` block: snnTorch tutorial 5's loop (the same image at every
    step, cross-entropy on each step's output membrane) gives the same spikes, membranes,
    loss and gradients."""
    snn = snntorch()
    torch.manual_seed(0)
    ours = run(block("snntorch-static"), "spikeflow tutorial port")
    net, num_steps, beta = ours["net"], ours["num_steps"], ours["beta"]
    fc1, fc2 = nn.Linear(28 * 28, 1000), nn.Linear(1000, 10)
    lif1, lif2 = snn.Leaky(beta=beta), snn.Leaky(beta=beta)
    _float64_spikes(lif1, lif2)
    net[0].load_state_dict(fc1.state_dict())
    net[2].load_state_dict(fc2.state_dict())

    def tutorial_forward(x):
        mem1, mem2 = lif1.init_leaky(), lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for _ in range(num_steps):
            spk1, mem1 = lif1(fc1(x), mem1)
            spk2, mem2 = lif2(fc2(spk1), mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec), torch.stack(mem2_rec)

    x, targets = torch.rand(6, 28 * 28), torch.tensor([0, 1, 2, 3, 4, 5])
    spk_want, mem_want = tutorial_forward(x)
    spk_got, mem_got = ours["forward"](x)
    assert spk_got.shape == mem_got.shape == (num_steps, 6, 10)
    assert_same_spikes(spk_got, spk_want, low=0.01)
    torch.testing.assert_close(mem_got, mem_want.double(), **SNN_RTOL)
    loss_want = sum(nn.functional.cross_entropy(m, targets) for m in mem_want)
    loss_got = ours["loss"](x, targets)
    torch.testing.assert_close(loss_got, loss_want.double(), **SNN_RTOL)
    g_want = torch.autograd.grad(loss_want, [fc1.weight, fc2.weight])
    g_got = torch.autograd.grad(loss_got, [net[0].weight, net[2].weight])
    for a, b in zip(g_got, g_want):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b.double(), **SNN_RTOL)


def test_snntorch_sequential_init_hidden_port(float64):
    """The ``snntorch-sequential`` block: tutorial 7's ``nn.Sequential`` of ``torch.nn``
    layers and ``Leaky(init_hidden=True)`` (the last ``output=True``), stepped after
    ``utils.reset(net)``, gives the same spikes, membranes and gradients."""
    snn = snntorch()
    from snntorch import utils

    torch.manual_seed(0)
    ours = run(block("snntorch-sequential"), "spikeflow sequential port")
    net, beta = ours["net"], ours["beta"]
    theirs = nn.Sequential(
        nn.Conv2d(2, 12, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Conv2d(12, 32, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
        snn.Leaky(beta=beta, init_hidden=True, output=True),
    )  # fmt: skip
    _float64_spikes(theirs[2], theirs[5], theirs[8])
    for i in (0, 3, 7):
        net[i].load_state_dict(theirs[i].state_dict())
        with torch.no_grad():  # a trained net fires; PyTorch's init barely does here
            net[i].weight.mul_(3)
            theirs[i].weight.mul_(3)
    data = (torch.rand(8, 3, 2, 34, 34) < 0.3).double()
    utils.reset(theirs)
    spk, mem = zip(*(theirs(x_t) for x_t in data))
    spk_want, mem_want = torch.stack(spk), torch.stack(mem)
    spk_got = net(data)
    assert spk_got.shape == (8, 3, 10)
    assert_same_spikes(spk_got, spk_want, low=0.01)
    torch.testing.assert_close(net[-1].v_seq, mem_want.double(), **SNN_RTOL)
    g = torch.randn(8, 3, 10)
    g_want = grads(mem_want, [theirs[0].weight, theirs[7].weight], g)
    g_got = grads(net[-1].v_seq, [net[0].weight, net[7].weight], g)
    for a, b in zip(g_got, g_want):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b.double(), **SNN_RTOL)


@pytest.mark.parametrize("steps, equal", [(10, True), (16, False)])
def test_mse_count_loss_agrees_only_for_whole_wanted_counts(float64, steps, equal):
    """The losses row: snnTorch wants ``int(T·rate)`` spikes, spikeflow ``T·rate``."""
    snntorch()
    from snntorch import functional as SF

    from spikeflow import losses

    spk = (torch.rand(steps, 6, 10) < 0.4).double()
    y = torch.tensor([0, 1, 2, 3, 4, 9])
    want = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(spk, y)
    got = losses.mse_count_loss(spk, y, correct_rate=0.8, incorrect_rate=0.2)
    assert torch.isclose(got, want.double(), rtol=1e-6) == equal
