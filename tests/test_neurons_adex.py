"""The adaptive exponential integrate-and-fire neuron ``AdExLIFNode``.

Hand-computed steps; spikes, every state and float64 gradients equal to a direct loop
of the equations on every backend (the reference loop, the C kernel, Triton), with
per-neuron parameters and ``detach_reset`` both ways; spikes, membranes, currents,
adaptation and gradients (input and the parameters ``a``, ``b``, ``delta_T``, ``v_th``)
equal to Norse 1.1's ``LIFAdEx`` and ``LIFAdExCell``; Norse's ``LIFEx`` equal to
``AdExLIFNode(a=0, b=0)`` and to ``EIFNode`` after a leaky integrator (the mapping in
docs/migration.md); float32 fused kernels equal to the reference loop and their GPU
flavour compiled for sm_90; gradcheck on every backend; chunked streaming and
single-step equal to one call; the errors; the model zoo's ``adex_lif``.
"""

from __future__ import annotations

import math
import textwrap

import pytest
import torch

from conftest import fused_backends, kernel_device, run_compiler_child
from gradchecks import gradcheck_backend
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.kernels import resolve_backend
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.kernels.triton_backend import triton_available
from spikeflow.models import NEURONS, create_model
from spikeflow.neurons import AdExLIFNode, EIFNode, LINode
from spikeflow.surrogate import ATan, Sigmoid, SuperSpike
from streaming_checks import check_chunked_streaming

BACKENDS = fused_backends("torch")
F64 = torch.float64


def f64(value):
    return torch.tensor(value, dtype=F64)


# -- hand-computed steps ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_adaptation_follows_the_previous_membrane_and_jumps_at_a_spike(backend):
    # tau_syn = dt: I = X. tau_mem = tau_w = 2, delta_T = 0.5, θ_rh = θ = 1, a = 0.5,
    # b = 0.25, V_r = v_leak = 0.
    # t0: H = (0.5 e^-2 + 1.5)/2, no spike; W = 0 + (0.5·0 - 0)/2 = 0.
    # t1: H = h0 + (-h0 + 0.5 e^(2(h0-1)) + 1.5)/2 > 1 fires, V = 0;
    #     W = (0.5 h0 - 0)/2 + 0.25: from V[t-1] = h0, plus the jump b.
    # t2: X = 0: H = (0.5 e^-2 - w1)/2 < 0 (the adaptation pulls it below rest).
    h0 = (0.5 * math.exp(-2.0) + 1.5) / 2
    h1 = h0 + (-h0 + 0.5 * math.exp(2 * (h0 - 1)) + 1.5) / 2
    w1 = 0.5 * h0 / 2 + 0.25
    h2 = (0.5 * math.exp(-2.0) - w1) / 2
    assert h0 < 1 < h1 and h2 < 0
    node = AdExLIFNode(
        tau_syn=1.0, tau_mem=2.0, delta_T=0.5, tau_w=2.0, a=0.5, b=0.25, backend=backend,
        store_v_seq=True,
    ).double()  # fmt: skip
    device = kernel_device(backend)
    node.to(device)
    with F.streaming(node):
        s = node(torch.tensor([1.5, 1.5, 0.0], dtype=F64, device=device).view(-1, 1))
        w = node.w.item()
    assert s.view(-1).tolist() == [0, 1, 0]
    assert node.v_seq.view(-1).tolist() == pytest.approx([h0, 0.0, h2], abs=1e-12)
    assert w == pytest.approx(w1 / 2, abs=1e-12)


def test_the_membrane_starts_at_rest():
    node = AdExLIFNode(tau_syn=1.0, v_leak=0.2, v_reset=-0.3, store_v_seq=True).double()
    node(torch.zeros(1, 1, dtype=F64))
    up = 0.5 * math.exp((0.2 - 1.0) / 0.5)
    assert node.v_seq.item() == pytest.approx(0.2 + up / 2, abs=1e-12)
    assert node.initial_values() == {"v": 0.2, "i": 0.0, "w": 0.0}
    # one resting value per neuron
    leak = torch.tensor([0.0, 0.1, -0.2], dtype=F64)
    per_neuron = AdExLIFNode(tau_syn=1.0, v_leak=leak, store_v_seq=True).double()
    per_neuron(torch.zeros(1, 2, 3, dtype=F64))
    want = leak + 0.5 * torch.exp((leak - 1.0) / 0.5) / 2
    torch.testing.assert_close(per_neuron.v_seq[0], want.expand(2, 3), rtol=0, atol=1e-12)
    assert per_neuron.start_state(torch.zeros(2, 3))["v"].shape == (2, 3)


def test_state_and_repr():
    node = AdExLIFNode(tau_w=5.0, a=0.3, b=torch.tensor([0.1, 0.2]))
    assert node.w is None and node.i is None  # not streaming
    assert node.declaration().state_names == ("v", "i", "w")
    text = repr(node)
    assert "theta_rh=v_threshold" in text and "tau_w=5" in text and "b=tensor(2,)" in text
    assert "tau_syn=2" in text


# -- against a direct loop of the equations --------------------------------------------------


def direct(x, theta, p, surrogate, detach_reset, strict):
    """AdEx by its equations, autograd through a plain loop: spikes, membranes, the
    final (v, i, w)."""
    v = torch.zeros_like(x[0]) + p["v_leak"]
    i = torch.zeros_like(x[0])
    w = torch.zeros_like(x[0])
    dt = p["dt"]
    spikes, vs = [], []
    for x_t in x:
        i = i + (x_t - i) * dt / p["tau_syn"]
        upswing = p["delta_T"] * torch.exp((v - p["theta_rh"]) / p["delta_T"])
        h = v + dt / p["tau_mem"] * ((p["v_leak"] - v) + upswing + p["r"] * i - w)
        w = w + dt / p["tau_w"] * (p["a"] * (v - p["v_leak"]) - w)
        s = surrogate(h - theta, strict=strict)
        sr = s.detach() if detach_reset else s
        v = h * (1 - sr) + p["v_reset"] * sr
        w = w + p["b"] * s
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs), (v, i, w)


CASES = [
    # scalar parameters, Sigmoid, a rheobase below the threshold
    dict(tau_syn=2.0, tau_mem=3.0, r=1.5, v_leak=0.0, dt=1.0, delta_T=0.4, theta_rh=0.7,
         tau_w=6.0, a=0.3, b=0.4, v_reset=-0.1),
    # per-neuron parameters, dt != 1
    dict(tau_syn=1.0, tau_mem=torch.tensor([2.0, 3.0, 5.0], dtype=F64), r=1.0,
         v_leak=torch.tensor([0.0, 0.1, -0.1], dtype=F64), dt=0.5,
         delta_T=torch.tensor([0.3, 0.5, 0.8], dtype=F64), theta_rh=0.9,
         tau_w=torch.tensor([4.0, 8.0, 16.0], dtype=F64),
         a=torch.tensor([0.0, 0.5, 1.0], dtype=F64),
         b=torch.tensor([0.5, 0.2, 0.0], dtype=F64), v_reset=0.2),
]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("detach_reset", [False, True])
def test_equals_the_direct_loop(backend, case, detach_reset):
    p = CASES[case]
    device = kernel_device(backend)
    sg = Sigmoid() if case == 0 else ATan()
    strict = case == 1
    torch.manual_seed(case)
    x = torch.rand(CHECKPOINT + 7, 2, 3, dtype=F64) * 2.4 - 0.2  # two C-kernel segments
    theta_ref = f64(1.0).requires_grad_()
    x_ref = x.clone().requires_grad_()
    s_ref, v_ref, final_ref = direct(x_ref, theta_ref, p, sg, detach_reset, strict)
    node = AdExLIFNode(
        **p, detach_reset=detach_reset, strict_firing=strict, surrogate_function=sg,
        v_threshold=f64(1.0), learnable_threshold=True, backend=backend, store_v_seq=True,
    ).double().to(device)  # fmt: skip
    xx = x.to(device).requires_grad_()
    with F.streaming(node):
        s = node(xx)
        final = (node.v, node.i, node.w)
    assert torch.equal(s.detach().cpu(), s_ref.detach()), "spikes differ from the loop"
    assert 0.05 < s_ref.mean().item() < 0.6
    torch.testing.assert_close(node.v_seq.detach().cpu(), v_ref.detach(), atol=1e-12, rtol=0)
    for got, want in zip(final, final_ref):
        torch.testing.assert_close(got.detach().cpu(), want.detach(), atol=1e-12, rtol=0)
    assert final_ref[2].abs().max() > 0.05  # the adaptation mattered
    torch.manual_seed(1)
    g, gv = torch.randn_like(s_ref), torch.randn_like(v_ref)
    loss_ref = (s_ref * g).sum() + (v_ref * gv).sum() + final_ref[2].sum()
    loss = (s * g.to(device)).sum() + (node.v_seq * gv.to(device)).sum() + final[2].sum()
    want = torch.autograd.grad(loss_ref, [x_ref, theta_ref])
    got = torch.autograd.grad(loss, [xx, node.v_threshold])
    for a, b in zip(got, want):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a.cpu(), b, atol=1e-12, rtol=1e-10)


# -- against Norse ---------------------------------------------------------------------------


NORSE_CASES = [
    # (a, b, delta_T, tau_ada_inv, tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, dt, scale)
    (4.0, 0.02, 0.5, 2.0, 200.0, 100.0, 0.0, 1.0, 0.0, 1e-3, 1.5),  # Norse's defaults
    (2.0, 0.3, 0.3, 50.0, 250.0, 125.0, 0.1, 0.8, -0.2, 1e-3, 2.0),  # v_leak != v_reset
    (0.5, 0.5, 1.0, 0.25, 0.5, 0.25, -0.1, 1.0, 0.3, 1.0, 1.0),  # dt = 1, reset above rest
]


def _norse_params(case, requires_grad=False):
    from norse.torch.functional.lif_adex import LIFAdExParameters

    a, b, delta_t, ada, syn, mem, leak, th, reset = (f64(v) for v in case[:9])
    for t in (a, b, delta_t, th):
        t.requires_grad_(requires_grad)
    return LIFAdExParameters(a, b, delta_t, ada, syn, mem, leak, th, reset)


def _node_for(case, **kw):
    a, b, delta_t, ada, syn, mem, leak, th, reset, dt, _ = case
    return AdExLIFNode(
        tau_syn=1 / syn, tau_mem=1 / mem, r=(1 / syn) / dt, v_leak=leak, dt=dt,
        delta_T=delta_t, tau_w=1 / ada, a=a, b=b, v_threshold=th, v_reset=reset,
        strict_firing=True, surrogate_function=SuperSpike(alpha=1.0), **kw,
    ).double()  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", NORSE_CASES)
def test_equals_norse_lif_adex(backend, case):
    norse = pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    dt, scale = case[9], case[10]
    p = _norse_params(case, requires_grad=True)
    torch.manual_seed(0)
    x = (torch.rand(60, 3, 7, dtype=F64) * scale).requires_grad_()
    layer = norse.LIFAdEx(p, dt=dt, record_states=True)
    z, states = layer(x)
    device = kernel_device(backend)
    node = _node_for(case, backend=backend, store_v_seq=True).to(device)
    xx = x.detach().to(device).requires_grad_()
    with F.streaming(node):
        s = node(xx)
        i, w = node.i, node.w
    assert torch.equal(s.detach().cpu(), z.detach()), "spikes differ from Norse's"
    assert 0.03 < z.mean().item() < 0.6
    torch.testing.assert_close(node.v_seq.detach().cpu(), states.v.detach(), atol=1e-12, rtol=0)
    # Norse keeps the current after its decay, J (1 - k) with J = I / k, k = dt/tau_syn.
    k = dt * case[4]
    torch.testing.assert_close((i * (1 - k) / k).cpu(), states.i[-1].detach(), atol=1e-11, rtol=0)
    torch.testing.assert_close(w.cpu(), states.a[-1].detach(), atol=1e-12, rtol=0)
    assert states.a[-1].abs().max() > 1e-3  # the adaptation mattered
    # gradients of a spike loss: input, and the parameters through the declaration's
    # runner (Norse's v_th is both θ and the exponential's θ_rh)
    torch.manual_seed(1)
    g = torch.randn_like(x)
    want = torch.autograd.grad((z * g).sum(), [x, p.adaptation_current, p.adaptation_spike,
                                               p.delta_T, p.v_th])  # fmt: skip
    params = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
              for k, v in node.neuron_params().items()}  # fmt: skip
    leaves = {n: f64(float(params[n])).to(device).requires_grad_() for n in ("a", "b", "delta_t")}
    theta, theta_rh = (f64(case[7]).to(device).requires_grad_() for _ in range(2))
    params.update(leaves, theta_rh=theta_rh)
    runner = resolve_backend(backend, xx)
    state = {"v": case[6], "i": 0.0, "w": 0.0}
    spikes, _, _ = runner(node.declaration(), xx, state, params, theta, node.firing_rule, False)
    assert torch.equal(spikes.detach().cpu(), z.detach())
    inputs = [xx, leaves["a"], leaves["b"], leaves["delta_t"], theta, theta_rh]
    got = torch.autograd.grad((spikes * g.to(device)).sum(), inputs)
    got = [*got[:4], got[4] + got[5]]
    for name, a, b in zip(["x", "a", "b", "delta_T", "v_th"], got, want):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a.cpu(), b, atol=1e-10, rtol=1e-9, msg=name)


def test_equals_norse_lif_adex_cell_step_by_step():
    norse = pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    from norse.torch.functional.lif_adex import LIFAdExFeedForwardState

    case = NORSE_CASES[1]
    cell = norse.LIFAdExCell(_norse_params(case), dt=case[9])
    torch.manual_seed(2)
    x = torch.rand(40, 2, 5, dtype=F64) * case[10]
    zero = torch.zeros_like(x[0])
    state = LIFAdExFeedForwardState(zero + case[6], zero, zero)
    node = _node_for(case, step_mode="s")
    with F.streaming(node):
        for x_t in x:
            z, state = cell(x_t, state)
            s = node(x_t)
            assert torch.equal(s, z)
            torch.testing.assert_close(node.v, state.v, atol=1e-12, rtol=0)
            torch.testing.assert_close(node.w, state.a, atol=1e-12, rtol=0)


def test_norse_lif_ex_is_adex_without_adaptation_and_eif_after_a_filter():
    """Norse's ``LIFEx`` (an exponential LIF with a synaptic current) is
    ``AdExLIFNode(a=0, b=0)``, and ``EIFNode`` fed by ``LINode(decay_input=False)`` (the
    current, unscaled); with ``tau_syn = dt`` (no filter) ``EIFNode`` alone."""
    norse = pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    from norse.torch.functional.lif_ex import LIFExParameters

    for syn_inv in (200.0, 1000.0):  # filtered; tau_syn = dt
        dt, mem_inv, delta_t, v_th, v_reset = 1e-3, 100.0, 0.5, 1.0, -0.1
        p = LIFExParameters(f64(delta_t), f64(syn_inv), f64(mem_inv), f64(v_reset),
                            f64(v_th), f64(v_reset))  # fmt: skip
        torch.manual_seed(3)
        x = torch.rand(80, 4, 6, dtype=F64) * (1.5 if syn_inv == 200.0 else 12.0)
        z, _ = norse.LIFEx(p, dt=dt)(x)
        assert 0.03 < z.mean().item() < 0.6
        kw = dict(v_threshold=v_th, v_reset=v_reset, strict_firing=True,
                  surrogate_function=SuperSpike(alpha=1.0))  # fmt: skip
        adex = AdExLIFNode(
            tau_syn=1 / syn_inv, tau_mem=1 / mem_inv, r=(1 / syn_inv) / dt, v_leak=v_reset,
            dt=dt, delta_T=delta_t, a=0.0, b=0.0, **kw,
        ).double()  # fmt: skip
        assert torch.equal(adex(x), z)
        eif = EIFNode(tau=1 / (dt * mem_inv), delta_T=delta_t, theta_rh=v_th, v_rest=v_reset, **kw)
        current = LINode(tau=1 / (dt * syn_inv), decay_input=False, v_leak=0.0)
        assert torch.equal(eif.double()(current(x)), z)
        if syn_inv * dt == 1.0:
            assert torch.equal(eif(x), z)
        else:
            assert not torch.equal(eif(x), z)


# -- kernels ---------------------------------------------------------------------------------


def _make(backend, dtype=F64):
    return AdExLIFNode(
        tau_syn=2.0, tau_mem=3.0, tau_w=torch.tensor([5.0, 10.0, 20.0]), a=0.2, b=0.3,
        v_threshold=torch.tensor(1.0), learnable_threshold=True, v_reset=-0.1, backend=backend,
    ).to(dtype)  # fmt: skip


@pytest.mark.parametrize("backend", fused_backends())
def test_float32_fused_kernels_equal_the_reference(backend):
    device = kernel_device(backend)
    torch.manual_seed(5)
    x = torch.rand(CHECKPOINT + 3, 4, 3, device=device) * 3.0
    g = torch.randn_like(x)
    grads, spikes = [], []
    for name in ("torch", backend):
        node = _make(name, torch.float32).to(device)
        xx = x.clone().requires_grad_()
        s = node(xx)
        spikes.append(s.detach())
        grads.append(torch.autograd.grad((s * g).sum(), [xx, node.v_threshold]))
    assert torch.equal(spikes[1], spikes[0])
    assert 0.05 < spikes[0].mean().item() < 0.6
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    """float64 gradcheck of spikes and membranes with respect to the input, the
    threshold and the per-neuron ``a``, ``b`` and ``delta_t``, on a smooth surrogate."""
    device = kernel_device(backend)
    node = AdExLIFNode(
        tau_syn=1.5, tau_w=3.0, theta_rh=0.8, surrogate_function=Sigmoid(alpha=2.0, spiking=False)
    )
    decl, rule, params = node.declaration(), node.firing_rule, node.neuron_params()
    torch.manual_seed(2)
    x = (torch.rand(7, 3, dtype=F64, device=device) * 3.0).requires_grad_()
    theta = f64(0.9).to(device).requires_grad_()
    per_neuron = [torch.tensor(v, dtype=F64, device=device).requires_grad_()
                  for v in ([0.1, 0.5, 1.0], [0.3, 0.2, 0.1], [0.4, 0.5, 0.7])]  # fmt: skip

    def through(name):
        runner = resolve_backend(name, x)

        def outputs(x, theta, a, b, delta_t):
            values = {**params, "a": a, "b": b, "delta_t": delta_t}
            state = {"v": 0.0, "i": 0.0, "w": 0.0}
            spikes, final, v_seq = runner(decl, x, state, values, theta, rule, True)
            return spikes, v_seq, final["w"]

        return outputs

    gradcheck_backend(backend, through(backend), (x, theta, *per_neuron), through("torch"))


AOT_CHILD = textwrap.dedent(
    """
    import json, re, torch
    from spikeflow.kernels.triton_aot import compile_for_gpu
    from spikeflow.neurons import AdExLIFNode, AlphaNode
    from spikeflow.surrogate import PiecewiseQuadratic, Sigmoid

    out = {}
    for dtype in (torch.float32, torch.float64):
        sg = PiecewiseQuadratic() if dtype == torch.float64 else Sigmoid()
        for node in (AdExLIFNode(tau_w=torch.tensor([2.0, 3.0, 4.0]), surrogate_function=sg),
                     AlphaNode(reset_mechanism="subtract", learn_beta=True,
                               surrogate_function=sg)):
            k = compile_for_gpu(node, torch.rand(6, 2, 3).to(dtype), arch=90)
            ptx = k.forward.asm["ptx"] + k.backward.asm["ptx"]
            out[f"{type(node).__name__} {dtype}"] = {
                "target": k.forward.metadata.target.arch,
                "fma": len(re.findall(r"\\bfma\\.rn\\.f(32|64)\\b", ptx)),
                "div_approx": len(re.findall(r"\\bdiv\\.(full|approx)\\.f32\\b", ptx)),
                "libdevice": "libdevice." in k.source,
            }
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not triton_available(), reason="triton (the 'triton' extra) is not installed")
def test_triton_kernels_compile_for_a_gpu():
    """The GPU flavour of the AdEx and alpha kernels (which the interpreter never sees)
    compiles for sm_90, with IEEE division and without contraction into FMAs: none at
    all but in float64 AdEx, whose exponential is libdevice's (whose float64 code has
    FMAs of its own, as EIF's)."""
    compiled = run_compiler_child(AOT_CHILD)
    assert len(compiled) == 4
    for name, info in compiled.items():
        assert info["target"] == 90 and info["div_approx"] == 0, name
        assert info["libdevice"] or not name.startswith("AdEx"), name  # its exp
        if name != "AdExLIFNode torch.float64":
            assert info["fma"] == 0, name


# -- streaming -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_streaming_equals_one_call(backend):
    device = kernel_device(backend)
    torch.manual_seed(4)
    x = torch.rand(CHECKPOINT + 7, 2, 3, dtype=F64, device=device) * 3.0
    whole, _ = check_chunked_streaming(lambda: _make(backend).to(device), x, "v_threshold")
    assert whole.sum() > 0


def test_single_step_equals_multi_step_and_no_state_leaks():
    node = _make("auto")
    x = torch.rand(12, 2, 3, dtype=F64) * 3.0
    multi = node(x)
    assert torch.equal(node(x), multi)  # the second call starts at rest again
    F.set_step_mode(node, "s")
    with F.streaming(node):
        single = torch.stack([node(x_t) for x_t in x])
    assert torch.equal(multi, single) and multi.sum() > 0


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"v_reset": None}, r"AdExLIFNode needs a hard reset \(v_reset a float\)"),
        ({"delta_T": 0.0}, "delta_T must be > 0"),
        ({"delta_T": torch.tensor([0.5, -0.1])}, "delta_T must be > 0"),
        ({"tau_w": 0.5}, r"tau_w must be >= dt \(1.0\)"),
        ({"tau_syn": 20.0, "tau_mem": 20.0, "tau_w": 5.0, "dt": 10.0}, r"tau_w must be >= dt \(10"),
        ({"a": float("nan")}, "a must be finite"),
        ({"b": "0.2"}, "b must be a float or a tensor"),
        ({"theta_rh": float("inf")}, "theta_rh must be finite"),
        ({"tau_syn": 0.5}, "tau_syn must be >= dt"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        AdExLIFNode(**kwargs)


def test_parameter_shapes_are_checked():
    with pytest.raises(ShapeError, match=r"AdExLIFNode: tau_w of shape \(4,\) does not broadcast"):
        AdExLIFNode(tau_w=torch.full((4,), 5.0))(torch.rand(3, 2, 5))


# -- the model zoo ---------------------------------------------------------------------------


def test_zoo_name():
    assert NEURONS["adex_lif"] is AdExLIFNode
    model = create_model("plif_digits", neuron="adex_lif", neuron_kwargs={"b": 0.5})
    nodes = [m for m in model.modules() if isinstance(m, AdExLIFNode)]
    assert nodes and all(n.b == 0.5 and n.detach_reset for n in nodes)
    with torch.no_grad():
        assert model(torch.rand(4, 2, 1, 8, 8)).shape == (4, 2, 10)
    with pytest.raises(ConfigurationError, match="needs a hard reset"):
        create_model("rsnn", in_features=8, neuron="adex_lif")
    rsnn = create_model("rsnn", in_features=8, neuron="adex_lif", neuron_kwargs={"v_reset": 0.0})
    with torch.no_grad():
        assert rsnn(torch.rand(5, 2, 8)).shape == (5, 2, 20)
