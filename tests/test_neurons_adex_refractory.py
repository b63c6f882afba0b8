"""``RefractoryAdExLIFNode``: the AdEx with an absolute refractory period.

Hand-computed steps (held at ``v_reset`` and silent while refractory, the current and
the adaptation evolving); spikes, membranes, current, adaptation and counter equal to
Norse 1.1's ``lif_adex_refrac_feed_forward_step`` (``LIFAdExRefracCell``) on every
backend, and the one documented difference (Norse's adaptation jumps for a spike it
suppresses) measured exactly; ``refractory_steps=0`` is ``AdExLIFNode`` in spikes,
states and gradients; no gradient through a refractory step; float64 gradcheck on
every backend; float32 fused kernels equal to the reference loop; the errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from spikeflow import functional as F
from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.kernels import resolve_backend
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.neurons import AdExLIFNode, RefractoryAdExLIFNode
from spikeflow.surrogate import Sigmoid, SuperSpike
from streaming_checks import check_chunked_streaming

BACKENDS = fused_backends("torch")
F64 = torch.float64


@pytest.mark.parametrize("backend", BACKENDS)
def test_held_and_silent_while_refractory_current_and_adaptation_evolve(backend):
    # tau_syn = dt (I = X), tau_mem = tau_w = 2, delta_T = 0.5, θ = θ_rh = 1, a = 0.5,
    # b = 0.25, V_r = v_leak = 0, refractory 1 step. X = 3 at every step:
    # t0: H = (0.5 e^-2 + 3)/2 > 1 fires, V = 0; W = 0 + b = 0.25.
    # t1: refractory: V held at 0, no spike; I = 3 still; W = 0.25 + (0 - 0.25)/2 = 0.125.
    # t2: free again: H = (0.5 e^-2 + 3 - 0.125)/2 > 1 fires; W = 0.0625 + 0.25.
    device = kernel_device(backend)
    node = RefractoryAdExLIFNode(
        1, tau_syn=1.0, tau_mem=2.0, delta_T=0.5, tau_w=2.0, a=0.5, b=0.25, backend=backend,
        store_v_seq=True,
    ).double().to(device)  # fmt: skip
    x = torch.full((3, 1), 3.0, dtype=F64, device=device)
    with F.streaming(node):
        s = node(x).view(-1).cpu()
        w, i, count = node.w.item(), node.i.item(), node.refractory.item()
    assert s.tolist() == [1.0, 0.0, 1.0]
    assert node.v_seq.view(-1).cpu().tolist() == [0.0, 0.0, 0.0]
    assert w == pytest.approx(0.125 / 2 + 0.25, abs=1e-12)
    assert i == pytest.approx(3.0, abs=1e-12) and count == 1.0
    # the same drive without the refractory period fires at t1 too
    plain = AdExLIFNode(tau_syn=1.0, tau_mem=2.0, delta_T=0.5, tau_w=2.0, a=0.5, b=0.25)
    assert plain(x.cpu().double()).view(-1).tolist() == [1.0, 1.0, 1.0]
    assert (0.5 * math.exp(-2.0) + 3.0) / 2 > 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_refractory_step_passes_no_gradient(backend):
    # X = 3 fires at t0; t1 is refractory: its spike (a held membrane against a blocked
    # threshold) depends on neither the input nor the threshold; t2 fires again.
    device = kernel_device(backend)
    node = RefractoryAdExLIFNode(
        1, tau_syn=1.0, learnable_threshold=True, backend=backend,
        surrogate_function=Sigmoid(alpha=2.0),
    ).double().to(device)  # fmt: skip
    x = torch.full((3, 1), 3.0, dtype=F64, device=device, requires_grad=True)
    s = node(x).view(-1)
    assert s.tolist() == [1.0, 0.0, 1.0]
    gx, gth = torch.autograd.grad(s[1], [x, node.v_threshold], retain_graph=True)
    assert gx.abs().sum() == 0 and gth.abs().sum() == 0
    gx, gth = torch.autograd.grad(s[2], [x, node.v_threshold])
    assert gx.abs().sum() > 0 and gth.abs().sum() > 0


# -- against Norse ---------------------------------------------------------------------------

NORSE_CASES = [
    # (a, b, delta_T, tau_ada_inv, tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, dt,
    #  scale, rho_reset)
    (4.0, 0.02, 0.5, 2.0, 200.0, 100.0, 0.0, 1.0, 0.0, 1e-3, 1.5, 3),  # Norse's defaults
    (2.0, 0.3, 0.3, 50.0, 250.0, 125.0, 0.1, 0.8, -0.2, 1e-3, 2.0, 5),  # v_leak != v_reset
]


def _norse_run(case, x):
    """Norse's feed-forward step over ``x``; also counts its suppressed spikes (the
    refractory steps whose unheld membrane crossed ``v_th``)."""
    from norse.torch.functional.lif_adex import (
        LIFAdExFeedForwardState,
        LIFAdExParameters,
        lif_adex_feed_forward_step,
    )
    from norse.torch.functional.lif_adex_refrac import (
        LIFAdExRefracFeedForwardState,
        LIFAdExRefracParameters,
        lif_adex_refrac_feed_forward_step,
    )

    values = [torch.tensor(v, dtype=F64) for v in case[:9]]
    p = LIFAdExRefracParameters(LIFAdExParameters(*values), torch.tensor(float(case[11])))
    zero = torch.zeros_like(x[0])
    state = LIFAdExRefracFeedForwardState(LIFAdExFeedForwardState(zero + case[6], zero, zero), zero)
    zs, vs, ghosts = [], [], torch.zeros_like(zero)
    for step in x:
        inner, _ = lif_adex_feed_forward_step(step, state.lif_adex, p.lif_adex, case[9])
        ghosts += inner * (state.rho > 0)
        z, state = lif_adex_refrac_feed_forward_step(step, state, p, case[9])
        zs.append(z)
        vs.append(state.lif_adex.v)
    return torch.stack(zs), torch.stack(vs), state, ghosts


def _node_for(case, **kw):
    a, b, delta_t, ada, syn, mem, leak, th, reset, dt = case[:10]
    return RefractoryAdExLIFNode(
        case[11], tau_syn=1 / syn, tau_mem=1 / mem, r=(1 / syn) / dt, v_leak=leak, dt=dt,
        delta_T=delta_t, tau_w=1 / ada, a=a, b=b, v_threshold=th, v_reset=reset,
        strict_firing=True, surrogate_function=SuperSpike(alpha=1.0), **kw,
    ).double()  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", NORSE_CASES)
def test_equals_norse_lif_adex_refrac(backend, case):
    pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    torch.manual_seed(0)
    x = torch.rand(60, 3, 7, dtype=F64) * case[10]
    z, v, state, ghosts = _norse_run(case, x)
    assert ghosts.sum() == 0  # the documented difference does not arise here
    device = kernel_device(backend)
    node = _node_for(case, backend=backend, store_v_seq=True).to(device)
    with F.streaming(node):
        s = node(x.to(device))
        i, w, count = node.i.cpu(), node.w.cpu(), node.refractory.cpu()
    assert torch.equal(s.cpu(), z), "spikes differ from Norse's"
    assert 0.03 < z.mean().item() < 0.6
    torch.testing.assert_close(node.v_seq.cpu(), v, atol=1e-12, rtol=0)
    k = case[9] * case[4]  # Norse keeps the current after its decay: I (1 - k) / k
    torch.testing.assert_close(i * (1 - k) / k, state.lif_adex.i, atol=1e-11, rtol=0)
    torch.testing.assert_close(w, state.lif_adex.a, atol=1e-12, rtol=0)
    assert torch.equal(count, state.rho)
    # the refractory period mattered: the plain AdEx fires differently
    names = ("tau_syn", "tau_mem", "r", "v_leak", "dt", "delta_T", "tau_w", "a", "b")
    kw = {name: getattr(node, name) for name in names}
    plain = AdExLIFNode(**kw, v_threshold=node.v_threshold, v_reset=node.v_reset)
    assert not torch.equal(plain(x), z)


def test_norse_adaptation_jumps_for_a_suppressed_spike():
    """The one difference from Norse, measured: a drive that lifts ``V_r`` over ``θ`` in a
    single step fires on every free step (0, 3, 6); on the refractory steps whose unheld
    membrane crosses ``θ`` Norse's ``a`` still gets ``b`` (decayed afterwards by
    ``1 - dt tau_ada_inv`` a step), spikeflow's not. ``a = 0``, so ``a`` is linear in the
    jumps. Norse's refractory steps 1, 2, 4, 5, 7 cross (``0.5 e^-2 + 3 - a > 1``); at
    step 8 its ``a`` (2.25) is too large."""
    pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    case = (0.0, 0.3, 0.5, 20.0, 1000.0, 1000.0, 0.0, 1.0, 0.0, 1e-3, 3.0, 2)  # I = X
    x = torch.full((9, 1), 3.0, dtype=F64)
    z, _, state, ghosts = _norse_run(case, x)
    node = _node_for(case)
    with F.streaming(node):
        s = node(x)
        w = node.w
    assert torch.equal(s, z) and s.view(-1).tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0]
    assert ghosts.item() == 5
    decay = 1 - 1e-3 * 20.0
    extra = 0.3 * sum(decay ** (8 - t) for t in (1, 2, 4, 5, 7))
    torch.testing.assert_close(state.lif_adex.a - w, torch.tensor([extra], dtype=F64))


def test_equals_norse_lif_adex_refrac_recurrent():
    """``LIFAdExRefracRecurrent(n_in, N, p, autapses=False, dt)`` is a bias-free
    ``layers.Linear`` then ``layers.Recurrent`` of the single-step node (Norse's recurrent
    step does not detach its reset), Norse's weights copied in."""
    norse = pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    from norse.torch.functional.lif_adex import LIFAdExParameters
    from norse.torch.functional.lif_adex_refrac import LIFAdExRefracParameters

    case = NORSE_CASES[1]
    values = [torch.tensor(v, dtype=F64) for v in case[:9]]
    p = LIFAdExRefracParameters(LIFAdExParameters(*values), torch.tensor(float(case[11])))
    torch.manual_seed(4)
    theirs = norse.LIFAdExRefracRecurrent(5, 6, p, dt=case[9]).double()
    ours = nn.Sequential(
        layers.Linear(5, 6, bias=False),
        layers.Recurrent(_node_for(case, step_mode="s"), 6, self_connections=False),
    ).double()
    with torch.no_grad():
        ours[0].weight.copy_(theirs.input_weights)
        ours[1].recurrent.weight.copy_(theirs.recurrent_weights)
    x = torch.rand(40, 3, 5, dtype=F64) * 1.5  # no suppressed-spike jumps in Norse
    want, state = theirs(x)
    got = ours(x)
    assert torch.equal(got, want)
    assert 0.03 < want.mean().item() < 0.6 and state.rho.max() > 0


def test_chunked_streaming_and_single_step_equal_one_call():
    def make():
        return RefractoryAdExLIFNode(
            3, tau_syn=1.5, v_leak=0.1, v_reset=-0.1, v_threshold=torch.tensor(1.0),
            learnable_threshold=True,
        ).double()  # fmt: skip

    torch.manual_seed(6)
    x = torch.rand(23, 2, 4, dtype=F64) * 3.0
    whole, _ = check_chunked_streaming(make, x, "v_threshold")
    assert whole.sum() > 0
    node = make()
    F.set_step_mode(node, "s")
    with F.streaming(node):
        single = torch.stack([node(x_t) for x_t in x])
    assert torch.equal(single, whole.detach())


# -- the plain AdEx, gradients ---------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_refractory_steps_is_adex(backend):
    device = kernel_device(backend)
    kw = dict(tau_syn=1.5, tau_mem=2.0, v_leak=0.1, delta_T=0.4, tau_w=3.0, a=0.3, b=0.2,
              v_reset=-0.1, backend=backend, store_v_seq=True)  # fmt: skip
    torch.manual_seed(3)
    x = (torch.rand(20, 2, 5, dtype=F64, device=device) * 2.0).requires_grad_()
    out = []
    for node in (RefractoryAdExLIFNode(0, **kw), AdExLIFNode(**kw)):
        node = node.double().to(device)
        with F.streaming(node):
            s = node(x)
            w = node.w
        out.append((s, node.v_seq, w, torch.autograd.grad((s * node.v_seq).sum(), x)[0]))
    assert out[1][0].sum() > 0
    for got, want in zip(*out):
        torch.testing.assert_close(got, want, atol=1e-14, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    """float64 gradcheck of spikes and membranes with respect to the input, the
    threshold and ``b``, on a smooth surrogate (a spike for the counter is ``H >= θ``)."""
    device = kernel_device(backend)
    smooth = Sigmoid(alpha=2.0, spiking=False)
    node = RefractoryAdExLIFNode(2, tau_syn=1.5, v_reset=-0.2, surrogate_function=smooth)
    decl, rule, params = node.declaration(), node.firing_rule, node.neuron_params()
    torch.manual_seed(2)
    x = (torch.rand(7, 3, dtype=F64, device=device) * 3.0).requires_grad_()
    theta = torch.tensor(0.9, dtype=F64, device=device, requires_grad=True)
    b = torch.tensor(0.3, dtype=F64, device=device, requires_grad=True)

    def through(name):
        runner = resolve_backend(name, x)

        def outputs(x, theta, b):
            state = {name: 0.0 for name in decl.state_names}
            values = {**params, "b": b, "theta_rh": 0.9}
            spikes, _, v_seq = runner(decl, x, state, values, theta, rule, True)
            return spikes, v_seq

        return outputs

    _, v_seq = through(backend)(x, theta, b)
    held = torch.isclose(v_seq, torch.tensor(-0.2, dtype=F64), rtol=0, atol=1e-12)
    assert 0 < int(held.sum()) < held.numel() // 2, held  # some refractory steps
    gradcheck_backend(backend, through(backend), (x, theta, b), through("torch"))


@pytest.mark.parametrize("backend", fused_backends())
def test_float32_fused_kernels_equal_the_reference(backend):
    device = kernel_device(backend)
    torch.manual_seed(5)
    x = torch.rand(CHECKPOINT + 3, 4, 3, device=device) * 3.0  # two C-kernel segments
    g = torch.randn_like(x)
    grads, spikes = [], []
    for name in ("torch", backend):
        node = RefractoryAdExLIFNode(
            2, tau_syn=2.0, tau_mem=3.0, tau_w=torch.tensor([5.0, 10.0, 20.0]), a=0.2, b=0.3,
            learnable_threshold=True, v_reset=-0.1, backend=name,
        ).to(device)  # fmt: skip
        xx = x.clone().requires_grad_()
        s = node(xx)
        spikes.append(s.detach())
        grads.append(torch.autograd.grad((s * g).sum(), [xx, node.v_threshold]))
    assert torch.equal(spikes[1], spikes[0])
    assert 0.05 < spikes[0].mean().item() < 0.6
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_errors_and_repr():
    with pytest.raises(ConfigurationError, match="RefractoryAdExLIFNode needs a hard reset"):
        RefractoryAdExLIFNode(2, v_reset=None)
    with pytest.raises(ConfigurationError, match="refractory_steps"):
        RefractoryAdExLIFNode(2.0)
    with pytest.raises(ConfigurationError, match="refractory_steps"):
        RefractoryAdExLIFNode(-1)
    with pytest.raises(ConfigurationError, match="delta_T"):
        RefractoryAdExLIFNode(1, delta_T=0.0)
    assert "refractory_steps=4, delta_T=0.5" in repr(RefractoryAdExLIFNode(4))


def test_zoo_name() -> None:
    """``--neuron refractory_adex_lif`` builds zoo models with the neuron (the refractory
    period given, as the other refractory neurons need it)."""
    from spikeflow.models import NEURONS, create_model

    assert NEURONS["refractory_adex_lif"] is RefractoryAdExLIFNode
    model = create_model(
        "plif_digits", neuron="refractory_adex_lif", neuron_kwargs={"refractory_steps": 2}
    )
    nodes = [m for m in model.modules() if isinstance(m, RefractoryAdExLIFNode)]
    assert nodes and all(n.refractory_steps == 2 for n in nodes)
    with torch.no_grad():
        assert model(torch.rand(4, 2, 1, 8, 8)).shape == (4, 2, 10)
