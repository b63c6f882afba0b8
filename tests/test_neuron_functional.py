"""Stateless neuron functions (spikeflow.neuron_functional) against SpikingJelly 2.0's
``functional.*_step`` / ``*_multi_step`` and Norse 1.1's ``lif_feed_forward_step``
(float64: spikes, states, gradients wrt the input and the tau / threshold parameters),
and against the neuron modules they run."""

from __future__ import annotations

import pytest
import torch

from spikeflow import functional, neurons, surrogate
from spikeflow import neuron_functional as nf
from spikeflow.errors import ConfigurationError, ShapeError

torch.set_num_threads(1)
sjf = pytest.importorskip("spikingjelly.activation_based.functional")
sjs = pytest.importorskip("spikingjelly.activation_based.surrogate")

F64 = torch.float64


def _inputs(shape, seed=0, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=F64) * scale).requires_grad_()


def _weights(shape, seed=1):
    # a spike-dependent loss: the surrogate's gradient matters
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.3])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_lif_step_equals_spikingjelly_with_tau_and_threshold_gradients(
    decay_input, v_reset, detach_reset
):
    """A few steps of lif_step chained by hand, odd shape [3, 7]: spikes, v and gradients
    wrt the input, a per-neuron tau and a learnable threshold equal SpikingJelly's."""
    x = _inputs((4, 3, 7))
    w = _weights((4, 3, 7))
    results = []
    for fn, sg in ((sjf.lif_step, sjs.ATan()), (nf.lif_step, surrogate.ATan())):
        tau = (torch.linspace(1.5, 4.0, 7, dtype=F64)).requires_grad_()
        theta = torch.tensor(0.8, dtype=F64, requires_grad=True)
        v = torch.full((3, 7), 0.1, dtype=F64)
        spikes = []
        for t in range(4):
            s, v = fn(x[t], v, tau, decay_input, theta, v_reset, sg, detach_reset)
            spikes.append(s)
        spikes = torch.stack(spikes)
        loss = (spikes * w).sum() + (v * w[0]).sum()
        grads = torch.autograd.grad(loss, (x, tau, theta))
        results.append((spikes, v, grads))
    (s_sj, v_sj, g_sj), (s_sf, v_sf, g_sf) = results
    assert 0 < s_sj.sum() < s_sj.numel()
    assert torch.equal(s_sj, s_sf)
    _close(v_sf, v_sj)
    for ours, theirs in zip(g_sf, g_sj):
        assert theirs.abs().sum() > 0
        _close(ours, theirs)


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_if_step_and_plif_step_equal_spikingjelly(v_reset):
    x = _inputs((2, 3, 5, 5), seed=2)
    w_loss = _weights((2, 3, 5, 5))
    v0 = torch.full((2, 3, 5, 5), 0.2, dtype=F64)
    s1, v1 = sjf.if_step(x, v0, 1.0, v_reset, sjs.Sigmoid(), False)
    s2, v2 = nf.if_step(x, v0, 1.0, v_reset, surrogate.Sigmoid(), False)
    assert torch.equal(s1, s2)
    _close(v2, v1)
    g1 = torch.autograd.grad((s1 * w_loss).sum() + v1.sum(), x)[0]
    g2 = torch.autograd.grad((s2 * w_loss).sum() + v2.sum(), x)[0]
    _close(g2, g1)
    # PLIF: w per channel [3, 1, 1], gradient to w
    ws = [torch.tensor([[[0.3]], [[-0.5]], [[1.0]]], dtype=F64, requires_grad=True) for _ in "ab"]
    s1, v1 = sjf.plif_step(x, v0, ws[0], True, 1.0, v_reset, sjs.Sigmoid(), False)
    s2, v2 = nf.plif_step(x, v0, ws[1], True, 1.0, v_reset, surrogate.Sigmoid(), False)
    assert torch.equal(s1, s2)
    _close(v2, v1)
    g1 = torch.autograd.grad((s1 * w_loss).sum() + v1.sum(), (x, ws[0]))
    g2 = torch.autograd.grad((s2 * w_loss).sum() + v2.sum(), (x, ws[1]))
    assert g1[1].abs().sum() > 0
    for ours, theirs in zip(g2, g1):
        _close(ours, theirs)


@pytest.mark.parametrize("T", [1, 6])
@pytest.mark.parametrize("name", ["if", "lif", "plif"])
def test_multi_step_equals_spikingjelly(T, name):
    """*_multi_step: spike_seq, v_final, v_seq and gradients (input, w), T = 1 too."""
    x = _inputs((T, 3, 7), seed=3)
    w_loss = _weights((T, 3, 7))
    v0 = torch.full((3, 7), 0.4, dtype=F64)
    out = []
    for mod, sg in ((sjf, sjs.Sigmoid()), (nf, surrogate.Sigmoid())):
        w = torch.tensor(-0.4, dtype=F64, requires_grad=True)
        if name == "if":
            res = mod.if_multi_step(x, v0, 1.0, 0.0, sg, False, True)
        elif name == "lif":
            res = mod.lif_multi_step(x, v0, 3.0, False, 1.0, None, sg, False, True)
        else:
            res = mod.plif_multi_step(x, v0, w, True, 1.0, 0.0, sg, True, True)
        spikes, v_final, v_seq = res
        loss = (spikes * w_loss).sum() + v_final.sum() + (v_seq * w_loss).sum()
        wrt = (x, w) if name == "plif" else (x,)
        out.append((spikes, v_final, v_seq, torch.autograd.grad(loss, wrt)))
    (s1, vf1, vs1, g1), (s2, vf2, vs2, g2) = out
    assert torch.equal(s1, s2)
    _close(vf2, vf1)
    _close(vs2, vs1)
    for ours, theirs in zip(g2, g1):
        _close(ours, theirs)
    assert nf.lif_multi_step(x, 0.0)[2] is None


def test_lif_feed_forward_step_equals_norse():
    """Norse's LIF step by step: spikes, v, i and gradients wrt the input, tau_syn_inv,
    a per-neuron tau_mem_inv and v_th; v_leak != v_reset and a nonzero start."""
    L = pytest.importorskip("norse.torch.functional.lif")
    x = (
        torch.rand(5, 3, 6, generator=torch.Generator().manual_seed(4), dtype=F64) * 4
    ).requires_grad_()
    w_loss = _weights((5, 3, 6))
    results = []
    for fn in (L.lif_feed_forward_step, nf.lif_feed_forward_step):
        tsi = torch.tensor(150.0, dtype=F64, requires_grad=True)
        tmi = torch.linspace(60.0, 140.0, 6, dtype=F64).requires_grad_()
        vth = torch.tensor(0.3, dtype=F64, requires_grad=True)
        p = L.LIFParameters(
            tau_syn_inv=tsi, tau_mem_inv=tmi, v_leak=torch.tensor(0.05, dtype=F64),
            v_th=vth, v_reset=torch.tensor(-0.1, dtype=F64),
        )  # fmt: skip
        state = L.LIFFeedForwardState(
            v=torch.full((3, 6), 0.1, dtype=F64), i=torch.full((3, 6), 0.5, dtype=F64)
        )
        zs = []
        for t in range(5):
            z, state = fn(x[t], state, p, 1e-3)
            state = (
                L.LIFFeedForwardState(v=state["v"], i=state["i"])
                if isinstance(state, dict)
                else state
            )
            zs.append(z)
        zs = torch.stack(zs)
        loss = (zs * w_loss).sum() + (state.v * w_loss[0]).sum() + state.i.sum()
        results.append((zs, state, torch.autograd.grad(loss, (x, tsi, tmi, vth))))
    (z1, st1, g1), (z2, st2, g2) = results
    assert 0 < z1.sum() < z1.numel()
    assert torch.equal(z1, z2)
    _close(st2.v, st1.v)
    _close(st2.i, st1.i)
    for ours, theirs in zip(g2, g1):
        assert theirs.abs().sum() > 0
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["super", "tanh", "triangle", "heavi_erfc", "circ"])
def test_lif_feed_forward_step_surrogates_equal_norse(method):
    """Each of Norse's methods, with a non-default alpha: the input gradient over 4 steps
    (the surrogate each maps to, and whether it takes alpha)."""
    L = pytest.importorskip("norse.torch.functional.lif")
    x = (
        torch.rand(3, 5, generator=torch.Generator().manual_seed(5), dtype=F64) * 4
    ).requires_grad_()
    w_loss = _weights((3, 5))
    p = L.LIFParameters(
        tau_syn_inv=torch.tensor(200.0, dtype=F64), tau_mem_inv=torch.tensor(100.0, dtype=F64),
        v_leak=torch.tensor(0.0, dtype=F64), v_th=torch.tensor(0.05, dtype=F64),
        v_reset=torch.tensor(0.0, dtype=F64), method=method,
        alpha=torch.tensor(7.0, dtype=F64),
    )  # fmt: skip
    grads = []
    for fn in (L.lif_feed_forward_step, nf.lif_feed_forward_step):
        state = L.LIFFeedForwardState(
            v=torch.full((3, 5), 0.04, dtype=F64), i=torch.zeros(3, 5, dtype=F64)
        )
        loss = 0.0
        for _ in range(4):
            z, state = fn(x, state, p)
            loss = loss + (z * w_loss).sum()
        grads.append(torch.autograd.grad(loss, x)[0])
    assert grads[0].abs().sum() > 0
    # Norse's heavi_erfc takes sqrt(pi) of a float32 tensor (torch.as_tensor(np.pi)):
    # its gradient is 3e-8 off the exact 2/sqrt(pi) spikeflow uses
    rtol = 1e-7 if method == "heavi_erfc" else 1e-10
    torch.testing.assert_close(grads[1], grads[0], rtol=rtol, atol=1e-12)


def test_functional_equals_module_and_steps_equal_multi_step():
    """neuron_step chained over T equals neuron_multi_step (the module's fused path) and
    the module's own forward; a tau tensor given to the function gets the gradient a
    learnable-tau module's parameter gets; the module passed in keeps its own tensors."""
    x = _inputs((6, 2, 5), seed=5)
    w_loss = _weights((6, 2, 5))
    tau = torch.tensor([1.5, 2.0, 3.0, 5.0, 9.0], dtype=F64, requires_grad=True)
    seq, final = functional.neuron_multi_step("lif", x, None, tau=tau, v_reset=None)
    state, steps = None, []
    for t in range(6):
        s, state = functional.neuron_step(neurons.LIFNode, x[t], state, tau=tau, v_reset=None)
        steps.append(s)
    assert torch.equal(torch.stack(steps), seq)
    _close(state["v"], final["v"])
    node = neurons.LIFNode(tau.detach().clone(), learnable_tau=True, v_reset=None).double()
    assert torch.equal(node(x), seq)
    g_fn = torch.autograd.grad((seq * w_loss).sum(), (x, tau))
    g_mod = torch.autograd.grad((node(x) * w_loss).sum(), (x, node.tau))
    for ours, theirs in zip(g_fn, g_mod):
        assert theirs.abs().sum() > 0
        _close(ours, theirs)
    # a module: its w swapped for the call only
    plif = neurons.ParametricLIFNode().double()
    w = torch.tensor(1.2, dtype=F64, requires_grad=True)
    out, _ = nf.multi_step(plif, x, None, w=w)
    assert plif.w.item() == 0.0 and plif.step_mode == "m"
    ref = neurons.ParametricLIFNode(init_tau=1.0 + torch.exp(-w.detach()).item()).double()
    _close(out, ref(x))
    assert torch.autograd.grad((out * w_loss).sum(), w)[0] != 0


def test_cuba_lif_by_name_carries_both_states():
    x = _inputs((4, 2, 3), seed=6)
    seq, final = nf.multi_step("cuba_lif", x, None, tau_syn=3.0, tau_mem=4.0)
    state = None
    for t in range(4):
        s, state = nf.neuron_step("cuba_lif", x[t], state, tau_syn=3.0, tau_mem=4.0)
        assert torch.equal(s, seq[t])
    assert set(state) == {"v", "i"}
    _close(state["i"], final["i"])


def test_multi_step_runs_the_fused_kernel_with_swapped_tensors(monkeypatch):
    """backend='auto' takes the module's fused C kernel (no fallback to the reference
    loop) with the caller's tau / w swapped in, equal to backend='torch'."""
    import spikeflow.kernels
    import spikeflow.neurons.base as neuron_base

    if not spikeflow.kernels._has_compiler():
        pytest.skip("no C compiler: backend='auto' runs the reference loop")
    x = _inputs((6, 2, 3), seed=8, scale=2.0)
    cases = [
        ("lif", {"tau": torch.tensor([1.5, 2.5, 4.0], dtype=F64, requires_grad=True)}),
        ("plif", {"w": torch.tensor([0.5, -1.0, 2.0], dtype=F64, requires_grad=True)}),
    ]
    fused = []
    with monkeypatch.context() as m:

        def refuse(*args):
            raise AssertionError("backend='auto' fell back to the reference loop")

        m.setattr(spikeflow.kernels, "run_reference", refuse)
        real, chosen = neuron_base.resolve_backend, []
        m.setattr(neuron_base, "resolve_backend", lambda *a: chosen.append(real(*a)) or chosen[-1])
        for name, params in cases:
            out, _ = nf.neuron_multi_step(name, x, None, **params)
            fused.append((out, torch.autograd.grad(out.sum(), (x, *params.values()))))
    assert len(chosen) == 2 and all(r is spikeflow.kernels.run_cpu_or_reference for r in chosen)
    for (name, params), (out, grads) in zip(cases, fused):
        ref, _ = nf.neuron_multi_step(name, x, None, backend="torch", **params)
        assert torch.equal(out, ref)
        for ours, theirs in zip(grads, torch.autograd.grad(ref.sum(), (x, *params.values()))):
            _close(ours, theirs)


def test_vmap_over_samples_equals_the_batched_call():
    x = _inputs((4, 3, 5), seed=7, scale=4.0).detach()
    mapped = torch.func.vmap(lambda a: nf.neuron_step("lif", a, None, tau=3.0)[0])(x)
    assert mapped.sum() > 0
    assert torch.equal(mapped, nf.neuron_step("lif", x, None, tau=3.0)[0])


def test_bad_input_raises_clear_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ConfigurationError, match="'no_such'"):
        nf.neuron_step("no_such", x, None)
    with pytest.raises(ConfigurationError, match=r"\['tau'\]"):
        nf.neuron_step(neurons.IFNode(), x, None, tau=torch.tensor(2.0))
    with pytest.raises(ConfigurationError, match=r"\['init_tau'\] are neither"):
        nf.neuron_step("plif", x, None, init_tau=torch.tensor(3.0, requires_grad=True))
    with pytest.raises(ConfigurationError, match=r"\['tua'\] are neither"):
        nf.neuron_step("lif", x, None, tua=torch.tensor(3.0))
    with pytest.raises(ConfigurationError, match=r"LIFNode could not be built.*'taux'"):
        nf.neuron_step("lif", x, None, taux=3.0)
    with pytest.raises(ConfigurationError, match=r"RefractoryLIFNode.*'refractory_steps'"):
        nf.neuron_step("refractory_lif", x, None)
    with pytest.raises(ConfigurationError, match="PSN, not a stateful"):
        nf.neuron_multi_step("psn", torch.zeros(4, 2, 3), None, T=4)
    with pytest.raises(ShapeError, match="leave step_mode out"):
        nf.neuron_step("lif", x, None, step_mode="m")
    with pytest.raises(ShapeError, match="x_seq"):
        nf.neuron_multi_step("lif", torch.zeros(3), None)
    with pytest.raises(ConfigurationError, match="tau"):
        nf.lif_step(x, x, 0.5, True, 1.0, 0.0)
    with pytest.raises(ConfigurationError, match="v must be"):
        nf.if_step(x, "zero", 1.0, 0.0)
    L = pytest.importorskip("norse.torch.functional.lif")
    state = L.LIFFeedForwardState(v=x, i=x)
    with pytest.raises(ConfigurationError, match="heaviside"):
        nf.lif_feed_forward_step(x, state, L.LIFParameters(method="heaviside"))
    with pytest.raises(ConfigurationError, match="tau_syn_inv"):
        nf.lif_feed_forward_step(x, state, L.LIFParameters(), dt=0.01)
    with pytest.raises(ConfigurationError, match=r"p\.v_reset .* shape \(3,\)"):
        nf.lif_feed_forward_step(x, state, L.LIFParameters(v_reset=torch.zeros(3)))
    v_reset = torch.tensor(0.0, requires_grad=True)
    with pytest.raises(ConfigurationError, match=r"v_reset .* requiring a gradient"):
        nf.lif_feed_forward_step(x, state, L.LIFParameters(v_reset=v_reset))
    with pytest.raises(ConfigurationError, match="'i'"):
        nf.lif_feed_forward_step(x, {"v": x}, L.LIFParameters())


@pytest.mark.parametrize("name", ["adlif", "brf"])
def test_randomly_initialised_tensors_must_be_given_not_redrawn(name):
    # each call builds a fresh module: tensors its constructor draws at random would be
    # redrawn at every step of a loop, so they must be passed in (or a module given)
    x = torch.rand(2, 6) * 2
    with pytest.raises(ConfigurationError, match="at random when built"):
        nf.neuron_step(name, x, None)
    module = nf._neuron_class(name)()
    drawn = {k: t.detach().clone() for k, t in module.named_parameters()}
    spikes, state = nf.neuron_step(name, x, None, **drawn)
    ref_spikes, ref_state = nf.neuron_step(module, x, None)
    assert torch.equal(spikes, ref_spikes)
    assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)
