"""Neurons with an absolute refractory period: ``RefractoryLIFNode`` and
``RefractoryCubaLIFNode``.

Hand-computed sequences; spikes, membranes and float64 gradients equal to a direct loop
of the equations written in the masked form (Norse's: compute the plain step, then keep
the membrane and drop the spike where the neuron is refractory) on every backend (the
reference loop, the C kernel, Triton); spikes, membranes, current and counter equal to
Norse's ``LIFRefracCell``; ``refractory_steps=0`` is the plain neuron exactly; float32
fused kernels equal to the reference loop, and their GPU flavour compiled for sm_90;
float64 gradcheck on every backend with a smooth surrogate; the counter in half
precision; chunked streaming and single-step equal to one call; the errors; the model
zoo's names.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from conftest import fused_backends, kernel_device, run_compiler_child
from gradchecks import gradcheck_backend
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.kernels import resolve_backend
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.kernels.triton_backend import triton_available
from spikeflow.models import NEURONS, create_model, list_neurons
from spikeflow.neurons import CubaLIFNode, LIFNode, RefractoryCubaLIFNode, RefractoryLIFNode
from spikeflow.surrogate import ATan, Sigmoid
from streaming_checks import check_chunked_streaming

BACKENDS = fused_backends("torch")
F64 = torch.float64


def run(node, xs):
    """Spikes and membrane after reset of a one-neuron float64 run of ``xs``."""
    node.store_v_seq = True
    device = kernel_device(node.backend)
    node = node.double().to(device)
    s = node(torch.tensor(xs, dtype=F64, device=device).view(-1, 1))
    return s.view(-1).tolist(), node.v_seq.view(-1).tolist()


# -- hand-computed sequences ---------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_lif_is_held_at_v_reset_and_silent_while_refractory(backend):
    # tau = 2, θ = 1, V_r = -0.5: H = V + (X - (V + 0.5))/2, two refractory steps.
    # t0: H = 1.25 fires;  t1, t2 refractory: V = -0.5 and no spike, although X = 9
    #     would make a plain LIF fire;  t3: H = 1.25 fires;  t4, t5 refractory;
    # t6: H = -0.5 + 0.6/2 = -0.2;  t7: H = -0.2 + (3 - 0.3)/2 = 1.15 fires.
    xs = [3.5, 9.0, 9.0, 3.5, 0.0, 0.0, 0.6, 3.0]
    node = RefractoryLIFNode(2, v_reset=-0.5, backend=backend)
    with F.streaming(node):
        s, v = run(node, xs)
        left = node.refractory.item()
    assert s == [1, 0, 0, 1, 0, 0, 0, 1]
    assert v == pytest.approx([-0.5] * 6 + [-0.2, -0.5], abs=1e-12)
    assert left == 2  # the last spike's period is still to come
    assert run(LIFNode(v_reset=-0.5), xs)[0] == [1, 1, 1, 1, 0, 0, 0, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_cuba_lif_current_keeps_filtering_while_refractory(backend):
    # I = I + (X - I)/2; H = V + (0 - V + 2 I)/2 = V/2 + I; one refractory step.
    # t0: I = 2, H = 2 fires;  t1: I = 1, refractory (a plain CUBA LIF: H = 1 fires);
    # t2: I = 0.5, H = 0.5;  t3: I = 0.25, H = 0.25 + 0.25 = 0.5.
    node = RefractoryCubaLIFNode(1, tau_syn=2.0, tau_mem=2.0, r=2.0, backend=backend)
    with F.streaming(node):
        s, v = run(node, [4.0, 0.0, 0.0, 0.0])
        i, left = node.i.item(), node.refractory.item()
    assert s == [1, 0, 0, 0]
    assert v == pytest.approx([0.0, 0.0, 0.5, 0.5], abs=1e-12)
    assert (i, left) == (pytest.approx(0.25, abs=1e-12), 0.0)
    assert run(CubaLIFNode(tau_syn=2.0, tau_mem=2.0, r=2.0), [4.0, 0.0])[0] == [1, 1]


def test_state_and_repr():
    node = RefractoryLIFNode(3, tau=4.0)
    assert node.refractory is None  # not streaming
    assert node.initial_values() == {"v": 0.0, "refractory": 0.0}
    assert node.declaration().state_names == ("v", "refractory")
    assert "refractory_steps=3" in repr(node) and "tau=4" in repr(node)
    cuba = RefractoryCubaLIFNode(np.int64(2))  # a numpy integer is an integer
    assert cuba.refractory_steps == 2 and type(cuba.refractory_steps) is int
    assert cuba.declaration().state_names == ("v", "i", "refractory")
    assert "refractory_steps=2" in repr(cuba)


# -- against a direct loop of the equations -----------------------------------------


def direct(x, theta, steps, charge, v_reset, surrogate, detach_reset, strict):
    """The refractory neuron in Norse's masked form, autograd through a plain loop:
    the plain step, then the membrane held at ``v_reset`` (a constant) and the spike
    dropped (no gradient) where the counter is positive. ``charge(x_t, v, aux)`` gives
    ``(H, aux)``. Returns spikes, membranes, the final counter."""
    v = torch.full_like(x[0], v_reset)
    count = torch.zeros_like(x[0])
    aux = torch.zeros_like(x[0])
    spikes, vs = [], []
    for x_t in x:
        h, aux = charge(x_t, v, aux)
        refractory = count > 0
        s = torch.where(refractory, torch.zeros_like(h), surrogate(h - theta, strict=strict))
        sr = s.detach() if detach_reset else s
        v = torch.where(refractory, torch.full_like(h, v_reset), h * (1 - sr) + v_reset * sr)
        count = torch.where(s > 0, torch.full_like(count, steps), (count - 1).clamp(min=0))
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs), count


def lif_charge(tau, decay_input, v_reset):
    def charge(x_t, v, aux):
        if decay_input:
            return v + (x_t - (v - v_reset)) / tau, aux
        return v - (v - v_reset) / tau + x_t, aux

    return charge


def cuba_charge(tau_syn, tau_mem, r, v_leak, dt):
    def charge(x_t, v, i):
        i = i + (x_t - i) * (dt / tau_syn)
        return v + (v_leak - v + r * i) * (dt / tau_mem), i

    return charge


LIF_CASES = [
    # (refractory_steps, tau, decay_input, v_reset, detach_reset, strict, surrogate)
    (2, 2.0, True, 0.0, False, False, Sigmoid()),
    (3, 3.0, False, -0.3, True, True, ATan()),
    (1, 1.5, True, 0.2, False, True, Sigmoid(alpha=2.0)),
]


def _compare_with_direct(node, x, x_ref, spikes_ref, v_ref, count_ref, theta_ref, device):
    """Spikes and membranes identical (float64: to the last bits), the gradients of a
    spike and membrane loss with respect to the input and the learnable threshold
    equal; refractoriness must have mattered (a plain neuron's spikes differ)."""
    node = node.to(device)
    xf = x.to(device).requires_grad_()
    with F.streaming(node):
        s = node(xf)
        count = node.refractory
    assert torch.equal(s.detach().cpu(), spikes_ref.detach()), "spikes differ from the loop"
    assert 0.05 < spikes_ref.mean().item() < 0.6
    torch.testing.assert_close(node.v_seq.detach().cpu(), v_ref.detach(), atol=1e-12, rtol=0)
    assert torch.equal(count.cpu(), count_ref)
    torch.manual_seed(1)
    g, gv = torch.randn_like(spikes_ref), torch.randn_like(v_ref)
    loss_ref = (spikes_ref * g).sum() + (v_ref * gv).sum()
    loss = (s * g.to(device)).sum() + (node.v_seq * gv.to(device)).sum()
    want = torch.autograd.grad(loss_ref, [x_ref, theta_ref])
    got = torch.autograd.grad(loss, [xf, node.v_threshold])
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(len(LIF_CASES)))
def test_lif_equals_the_direct_loop(backend, case):
    steps, tau, decay_input, v_reset, detach_reset, strict, sg = LIF_CASES[case]
    torch.manual_seed(case)
    x = torch.rand(CHECKPOINT + 7, 2, 9, dtype=F64) * 2.4 - 0.2  # two C-kernel segments
    theta = torch.tensor(0.9, dtype=F64, requires_grad=True)
    x_ref = x.clone().requires_grad_()
    charge = lif_charge(tau, decay_input, v_reset)
    s_ref, v_ref, count_ref = direct(x_ref, theta, steps, charge, v_reset, sg, detach_reset, strict)
    node = RefractoryLIFNode(
        steps, tau=tau, decay_input=decay_input, v_reset=v_reset, detach_reset=detach_reset,
        strict_firing=strict, surrogate_function=sg, v_threshold=torch.tensor(0.9, dtype=F64),
        learnable_threshold=True, backend=backend, store_v_seq=True,
    ).double()  # fmt: skip
    plain = LIFNode(tau=tau, decay_input=decay_input, v_reset=v_reset, v_threshold=0.9).double()
    assert not torch.equal(plain(x), s_ref.detach())
    _compare_with_direct(node, x, x_ref, s_ref, v_ref, count_ref, theta, kernel_device(backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("detach_reset", [False, True])
def test_cuba_lif_equals_the_direct_loop(backend, detach_reset):
    torch.manual_seed(3)
    x = torch.rand(CHECKPOINT + 7, 2, 3, dtype=F64) * 3.0 - 0.5
    tau_mem = torch.tensor([2.0, 3.0, 4.0], dtype=F64)  # one per neuron, as NIR stores them
    kw = dict(tau_syn=2.5, tau_mem=tau_mem, r=1.5, v_leak=0.1, dt=1.0)
    theta = torch.tensor(0.9, dtype=F64, requires_grad=True)
    x_ref = x.clone().requires_grad_()
    charge = cuba_charge(**kw)
    s_ref, v_ref, count_ref = direct(x_ref, theta, 2, charge, -0.2, ATan(), detach_reset, True)
    node = RefractoryCubaLIFNode(
        2, **kw, v_reset=-0.2, detach_reset=detach_reset, strict_firing=True,
        surrogate_function=ATan(), v_threshold=torch.tensor(0.9, dtype=F64),
        learnable_threshold=True, backend=backend, store_v_seq=True,
    ).double()  # fmt: skip
    plain = CubaLIFNode(**kw, v_reset=-0.2, v_threshold=0.9, strict_firing=True).double()
    assert not torch.equal(plain(x), s_ref.detach())
    _compare_with_direct(node, x, x_ref, s_ref, v_ref, count_ref, theta, kernel_device(backend))


# -- against Norse ----------------------------------------------------------------------


NORSE_CASES = [
    # (refractory_steps, tau_syn_inv, tau_mem_inv, dt, v_leak, v_th, v_reset, scale)
    (3, 200.0, 100.0, 1e-3, 0.0, 1.0, 0.0, 3.0),  # Norse's LIF defaults, rho_reset 3
    (5, 250.0, 125.0, 1e-3, 0.1, 0.8, 0.1, 4.0),  # Norse's rho_reset default, a leak
    (1, 0.5, 0.25, 1.0, -0.2, 1.0, 0.3, 1.5),  # v_leak != v_reset: given as the start
    (0, 200.0, 100.0, 1e-3, 0.0, 1.0, 0.0, 3.0),  # no refractoriness: Norse's plain LIF
]


@pytest.mark.parametrize("case", NORSE_CASES)
def test_cuba_lif_equals_norse_lif_refrac_cell(case):
    norse = pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    from norse.torch.functional.lif import LIFFeedForwardState
    from norse.torch.functional.lif_refrac import LIFRefracFeedForwardState

    steps, tau_syn_inv, tau_mem_inv, dt, v_leak, v_th, v_reset, scale = case

    def f64(value):
        return torch.tensor(value, dtype=F64)

    p = norse.LIFRefracParameters(
        norse.LIFParameters(
            tau_syn_inv=f64(tau_syn_inv), tau_mem_inv=f64(tau_mem_inv), v_leak=f64(v_leak),
            v_th=f64(v_th), v_reset=f64(v_reset),
        ),
        rho_reset=f64(float(steps)),
    )  # fmt: skip
    cell = norse.LIFRefracCell(p, dt=dt)
    torch.manual_seed(0)
    x = torch.rand(40, 3, 7, dtype=F64) * scale
    zero = torch.zeros_like(x[0])
    # Norse starts the membrane at v_leak, spikeflow at v_reset: give Norse ours.
    state = LIFRefracFeedForwardState(LIFFeedForwardState(zero + v_reset, zero), zero)
    zs, vs = [], []
    for x_t in x:
        z, state = cell(x_t, state)
        zs.append(z)
        vs.append(state.lif.v)
    tau_syn = 1 / tau_syn_inv
    node = RefractoryCubaLIFNode(
        steps, tau_syn=tau_syn, tau_mem=1 / tau_mem_inv, r=tau_syn / dt, v_leak=v_leak, dt=dt,
        v_threshold=v_th, v_reset=v_reset, strict_firing=True, store_v_seq=True,
    ).double()  # fmt: skip
    with F.streaming(node):
        s = node(x)
        i, count = node.i, node.refractory
    spikes = torch.stack(zs).detach()
    assert torch.equal(s, spikes), "spikes differ from Norse's"
    assert 0.05 < spikes.mean().item() < 0.6
    torch.testing.assert_close(node.v_seq, torch.stack(vs).detach(), atol=1e-12, rtol=0)
    assert torch.equal(count, state.rho.detach())
    # Norse keeps the current after its decay, J (1 - a) with J = I / a, a = dt/tau_syn.
    a = dt * tau_syn_inv
    torch.testing.assert_close(i * (1 - a) / a, state.lif.i.detach(), atol=1e-12, rtol=1e-12)
    plain = CubaLIFNode(
        tau_syn=tau_syn, tau_mem=1 / tau_mem_inv, r=tau_syn / dt, v_leak=v_leak, dt=dt,
        v_threshold=v_th, v_reset=v_reset, strict_firing=True,
    ).double()  # fmt: skip
    assert torch.equal(plain(x), s) == (steps == 0)  # refractoriness mattered


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("kind", ["lif", "cuba"])
def test_float32_fused_kernels_equal_the_reference(backend, kind):
    device = kernel_device(backend)
    torch.manual_seed(5)
    x = torch.rand(CHECKPOINT + 3, 4, 33, device=device) * 2.5
    g = torch.randn_like(x)
    grads, spikes = [], []
    for name in ("torch", backend):
        node = _make(kind, name).float().to(device)
        xx = x.clone().requires_grad_()
        s = node(xx)
        spikes.append(s.detach())
        grads.append(torch.autograd.grad((s * g).sum(), [xx, node.v_threshold]))
    assert torch.equal(spikes[1], spikes[0])
    assert 0.05 < spikes[0].mean().item() < 0.6
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


AOT_CHILD = textwrap.dedent(
    """
    import json, re, torch
    from spikeflow.kernels.triton_aot import compile_for_gpu
    from spikeflow.neurons import RefractoryCubaLIFNode, RefractoryLIFNode
    from spikeflow.surrogate import PiecewiseQuadratic, Sigmoid

    out = {}
    for dtype in (torch.float32, torch.float64, torch.float16):
        # float64: no libdevice call (whose float64 exp has FMAs of its own)
        sg = PiecewiseQuadratic() if dtype == torch.float64 else Sigmoid()
        for node in (RefractoryLIFNode(3, learnable_threshold=True, store_v_seq=True,
                                       surrogate_function=sg),
                     RefractoryCubaLIFNode(2, tau_mem=torch.tensor([2.0, 3.0, 4.0]),
                                           surrogate_function=sg)):
            k = compile_for_gpu(node, torch.rand(6, 2, 3).to(dtype), arch=90)
            ptx = k.forward.asm["ptx"] + k.backward.asm["ptx"]
            out[f"{type(node).__name__} {dtype}"] = {
                "target": k.forward.metadata.target.arch,
                "fma": len(re.findall(r"\\bfma\\.rn\\.f(32|64)\\b", ptx)),
            }
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not triton_available(), reason="triton (the 'triton' extra) is not installed")
def test_triton_kernels_compile_for_a_gpu():
    """The GPU flavour of the kernels (which the interpreter never sees) compiles for
    sm_90 with Triton's bundled ptxas, without contraction into FMAs (which would change
    the rounding, and so the spikes, against the reference loop)."""
    compiled = run_compiler_child(AOT_CHILD)
    assert len(compiled) == 6
    for name, info in compiled.items():
        assert info == {"target": 90, "fma": 0}, name


# -- refractory_steps=0 is the plain neuron --------------------------------------------


def _outputs(node, x, device):
    """Spikes, membranes, final state and the gradients of a spike and membrane loss
    (input and learnable threshold)."""
    node = node.to(device)
    xx = x.to(device).requires_grad_()
    with F.streaming(node):
        s = node(xx)
        final = {k: t.detach() for k, t in node.state.items() if k != "refractory"}
    torch.manual_seed(1)
    g, gv = torch.randn_like(s), torch.randn_like(s)
    grads = torch.autograd.grad((s * g).sum() + (node.v_seq * gv).sum(), [xx, node.v_threshold])
    return s.detach(), node.v_seq.detach(), final, grads


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["lif", "lif_nodecay", "cuba"])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_zero_refractory_steps_is_the_plain_neuron(backend, kind, detach_reset):
    device = kernel_device(backend)
    kw = dict(detach_reset=detach_reset, v_reset=-0.1, backend=backend, store_v_seq=True,
              v_threshold=torch.tensor(0.8), learnable_threshold=True)  # fmt: skip
    if kind == "cuba":
        cuba = dict(tau_syn=2.5, tau_mem=torch.tensor([2.0, 3.0, 4.0]), r=1.5, v_leak=0.1)
        ours, plain = RefractoryCubaLIFNode(0, **cuba, **kw), CubaLIFNode(**cuba, **kw)
    else:
        lif = dict(tau=3.0, decay_input=kind == "lif")
        ours, plain = RefractoryLIFNode(0, **lif, **kw), LIFNode(**lif, **kw)
    x = torch.rand(CHECKPOINT + 5, 2, 3, dtype=F64) * 2.2 - 0.2
    s0, v0, final0, grads0 = _outputs(plain.double(), x, device)
    s1, v1, final1, grads1 = _outputs(ours.double(), x, device)
    assert 0.1 < s0.mean().item() < 0.9
    assert torch.equal(s1, s0) and torch.equal(v1, v0)
    assert final1.keys() == final0.keys()
    assert all(torch.equal(final1[k], final0[k]) for k in final0)
    assert all(torch.equal(a, b) for a, b in zip(grads1, grads0))


# -- gradcheck ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["lif", "cuba"])
def test_gradcheck(backend, kind):
    """float64 gradcheck of spikes and membranes with respect to the input, the
    threshold and (CUBA) a per-neuron membrane decay, on a smooth surrogate
    (``spiking=False``: its primitive is the forward, and a spike for the counter is
    ``S >= 0.5``, i.e. ``H >= θ``)."""
    device = kernel_device(backend)
    smooth = Sigmoid(alpha=2.0, spiking=False)
    if kind == "lif":
        node = RefractoryLIFNode(2, tau=2.5, v_reset=-0.2, surrogate_function=smooth)
    else:
        node = RefractoryCubaLIFNode(2, tau_syn=1.5, v_reset=-0.2, surrogate_function=smooth)
    decl, rule, params = node.declaration(), node.firing_rule, node.neuron_params()
    torch.manual_seed(2)
    x = (torch.rand(7, 3, dtype=F64, device=device) * 3.0).requires_grad_()
    theta = torch.tensor(0.9, dtype=F64, device=device, requires_grad=True)
    inputs = [x, theta]
    if kind == "cuba":
        inputs.append(torch.tensor([0.5, 0.4, 0.3], dtype=F64, device=device).requires_grad_())

    def through(name):
        runner = resolve_backend(name, x)

        def outputs(x, theta, *mem_decay):
            values = {**params, "mem_decay": mem_decay[0]} if mem_decay else params
            state = {name: 0.0 for name in decl.state_names} | {"v": -0.2}
            spikes, _, v_seq = runner(decl, x, state, values, theta, rule, True)
            return spikes, v_seq

        return outputs

    outputs = through(backend)
    _, v_seq = outputs(*inputs)
    held = torch.isclose(v_seq, torch.tensor(-0.2, dtype=F64), rtol=0, atol=1e-12)
    assert 0 < int(held.sum()) < held.numel() // 2, held  # some refractory steps
    gradcheck_backend(backend, outputs, tuple(inputs), through("torch"))


# -- the counter's precision -----------------------------------------------------------------


def test_counter_is_exact_in_half_precision():
    # bfloat16 holds the integers up to 256 exactly: a constant drive fires at 0 and,
    # after 256 silent steps, at 257.
    node = RefractoryLIFNode(256, backend="torch")
    s = node(torch.full((260, 1), 5.0, dtype=torch.bfloat16)).view(-1)
    assert s.nonzero().view(-1).tolist() == [0, 257]
    with pytest.raises(DTypeError, match=r"refractory_steps=257 cannot be counted in "):
        RefractoryLIFNode(257)(torch.ones(2, 1, dtype=torch.bfloat16))
    with pytest.raises(DTypeError, match=r"torch\.float16"):
        RefractoryCubaLIFNode(3000)(torch.ones(2, 1, dtype=torch.float16))
    RefractoryCubaLIFNode(2048, backend="torch")(torch.ones(2, 1, dtype=torch.float16))


# -- streaming --------------------------------------------------------------------------------


def _make(kind, backend):
    kw = dict(v_reset=-0.1, backend=backend, v_threshold=torch.tensor(0.9, dtype=F64),
              learnable_threshold=True)  # fmt: skip
    if kind == "lif":
        return RefractoryLIFNode(3, tau=2.5, **kw).double()
    return RefractoryCubaLIFNode(2, tau_syn=2.0, tau_mem=3.0, r=2.0, **kw).double()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["lif", "cuba"])
def test_chunked_streaming_equals_one_call(backend, kind):
    device = kernel_device(backend)
    torch.manual_seed(4)
    x = torch.rand(CHECKPOINT + 7, 2, 5, dtype=F64, device=device) * 2.5
    _, carried = check_chunked_streaming(
        lambda: _make(kind, backend).to(device), x, "v_threshold",
        after_chunk=lambda node: node.refractory.clone(),
    )  # fmt: skip
    assert all(bool((c > 0).any()) for c in carried[:2])  # refractory across the boundaries


@pytest.mark.parametrize("kind", ["lif", "cuba"])
def test_single_step_equals_multi_step(kind):
    node = _make(kind, "auto")
    x = torch.rand(12, 2, 5, dtype=F64) * 2.5
    multi = node(x)
    F.set_step_mode(node, "s")
    with F.streaming(node):
        single = torch.stack([node(x_t) for x_t in x])
    assert torch.equal(multi, single)
    assert multi.sum() > 0


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RefractoryLIFNode, RefractoryCubaLIFNode])
@pytest.mark.parametrize("bad", [-1, 2.0, 1.5, True, False, "2", None, np.float64(2.0)])
def test_bad_refractory_steps_are_named(cls, bad):
    with pytest.raises(
        ConfigurationError, match=rf"{cls.__name__}: refractory_steps must be an integer >= 0"
    ):
        cls(bad)


@pytest.mark.parametrize("cls", [RefractoryLIFNode, RefractoryCubaLIFNode])
def test_soft_reset_is_refused(cls):
    with pytest.raises(ConfigurationError, match=r"needs a hard reset \(v_reset a float\)"):
        cls(2, v_reset=None)


def test_lif_arguments_are_still_checked():
    with pytest.raises(ConfigurationError, match="tau must be"):
        RefractoryLIFNode(2, tau=1.0)
    with pytest.raises(ConfigurationError, match="tau_syn must be >= dt"):
        RefractoryCubaLIFNode(2, tau_syn=0.5)


# -- the model zoo ----------------------------------------------------------------------------


def test_zoo_names():
    assert NEURONS["refractory_lif"] is RefractoryLIFNode
    assert NEURONS["refractory_cuba_lif"] is RefractoryCubaLIFNode
    assert {"refractory_lif", "refractory_cuba_lif"} <= set(list_neurons())
    model = create_model(
        "plif_digits", neuron="refractory_lif", neuron_kwargs={"refractory_steps": 1}
    )
    nodes = [m for m in model.modules() if isinstance(m, RefractoryLIFNode)]
    assert nodes and all(n.refractory_steps == 1 for n in nodes)
    with torch.no_grad():
        assert model(torch.rand(4, 2, 1, 8, 8)).shape == (4, 2, 10)
    with pytest.raises(ConfigurationError, match=r"needs the argument\(s\) \['refractory_steps'\]"):
        create_model("plif_digits", neuron="refractory_cuba_lif")
    # rsnn's default soft reset (for adLIF) is refused by name; a hard reset builds it
    kw = {"in_features": 8, "neuron": "refractory_lif"}
    with pytest.raises(ConfigurationError, match="needs a hard reset"):
        create_model("rsnn", **kw, neuron_kwargs={"refractory_steps": 1})
    rsnn = create_model("rsnn", **kw, neuron_kwargs={"refractory_steps": 1, "v_reset": 0.0})
    with torch.no_grad():
        assert rsnn(torch.rand(5, 2, 8)).shape == (5, 2, 20)
