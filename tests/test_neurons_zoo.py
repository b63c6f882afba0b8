"""The neuron zoo: QIF, EIF, Izhikevich, ALIF, KLIF, current-based LIF, CLIF and RAF.

Hand-computed sequences for each equation; KLIF's scaled reset against a direct loop of
its published form; every neuron x every reset option on the fused CPU and Triton
kernels (generated from the declaration, no per-neuron kernel code) against the
reference loop, spikes exactly and gradients of the input and of every learnable
parameter; single-step equals multi-step; the errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.kernels.cpu import run_cpu
from spikeflow.neurons import (
    ALIFNode,
    BaseNode,
    ComplementaryLIFNode,
    CubaLIFNode,
    EIFNode,
    IzhikevichNode,
    KLIFNode,
    LIFNode,
    QIFNode,
    RAFNode,
    declare,
)
from spikeflow.surrogate import Sigmoid

BACKENDS = fused_backends()


def run(node, xs):
    """Spikes and membrane after reset of a one-neuron float64 run of ``xs``."""
    node.store_v_seq = True
    device = kernel_device(node.backend)
    node.double().to(device)
    s = node(torch.tensor(xs, dtype=torch.float64, device=device).view(-1, 1))
    return s.view(-1).tolist(), node.v_seq.view(-1).tolist()


# -- hand-computed sequences ---------------------------------------------------------


def test_qif_hard_reset_defaults():
    # V0 = v_reset = -0.1; H = V + (X + V (V - 0.8)) / 2.
    # H0 = -0.1 + (1 + 0.09)/2 = 0.445;  H1 = 0.445 + (1 - 0.157975)/2 = 0.8660125;
    # H2 = 0.8660125 + (1.5 + 0.8660125 * 0.0660125)/2 = 1.6446 -> fire, V = -0.1.
    s, v = run(QIFNode(), [1.0, 1.0, 1.5])
    assert s == [0, 0, 1]
    assert v == pytest.approx([0.445, 0.8660125, -0.1], abs=1e-12)


def test_qif_soft_reset_starts_at_zero():
    # H0 = 0.5; H1 = 0.5 + (1 - 0.15)/2 = 0.925; H2 = 0.925 + (1.5 + 0.115625)/2 = 1.7328125.
    s, v = run(QIFNode(v_reset=None), [1.0, 1.0, 1.5])
    assert s == [0, 0, 1]
    assert v == pytest.approx([0.5, 0.925, 0.7328125], abs=1e-12)


def test_eif_hard_reset_defaults():
    # H0 = -0.1 + (1 + 0.1 + exp(-0.9))/2; it fires at the next step and resets to -0.1,
    # so step 2 repeats step 0.
    h0 = -0.1 + (1.1 + math.exp(-0.9)) / 2
    h1 = h0 + (1.2 - h0 + math.exp(h0 - 0.8)) / 2
    assert h1 > 1.0
    s, v = run(EIFNode(), [1.0, 1.2, 1.0])
    assert s == [0, 1, 0]
    assert v == pytest.approx([h0, -0.1, h0], abs=1e-12)


def test_izhikevich_adaptation_from_the_charged_membrane():
    # v_rest = -0.1, V0 = 0, W0 = 0, a = 0.5, b = 0.3, tau = tau_w = 2:
    # H0 = (1.5 - 0.08)/2 = 0.71;            W0' = (0.5 * 0.81)/2 = 0.2025
    # H1 = 0.71 + (1.5 - 0.0729 - 0.2025)/2 = 1.3223 -> fire;
    #                                         W1 = 0.2025 + (0.71115 - 0.2025)/2 + 0.3
    # H2 = (-0.08 - 0.756825)/2 = -0.4184125; W2 = 0.756825 + (-0.15920625 - 0.756825)/2
    node = IzhikevichNode(a=0.5, b=0.3).double()
    with F.streaming(node):
        s, v = run(node, [1.5, 1.5, 0.0])
        w = node.w.item()
    assert s == [0, 1, 0]
    assert v == pytest.approx([0.71, 0.0, -0.4184125], abs=1e-12)
    assert w == pytest.approx(0.298809375, abs=1e-12)


def test_izhikevich_initial_adaptation_is_w_rest():
    node = IzhikevichNode(w_rest=0.4)
    assert node.initial_state(torch.zeros(3, dtype=torch.float64))["w"].tolist() == [0.4] * 3
    # With W0 = 0.4 the first charge is lower by 0.4/2.
    v0 = run(IzhikevichNode(), [0.5])[1]
    v1 = run(IzhikevichNode(w_rest=0.4), [0.5])[1]
    assert v0[0] - v1[0] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("v_reset", "expected_v"),
    [
        (0.0, [0.0, 1.0, 0.0, 1.0]),
        # soft reset subtracts the *effective* threshold: 1.5 - 1.25 at step 2
        (None, [0.0, 1.0, 0.25, 1.125]),
    ],
)
def test_alif_threshold_rises_after_each_spike(v_reset, expected_v):
    # rho = 0.5, beta = 0.5: theta_t = 1 + 0.5 a[t-1], a[t] = 0.5 a[t-1] + S[t].
    # H0 = 1 >= 1 fire (a=1); H1 = 1 < 1.5 (a=0.5); H2 = 1.5 >= 1.25 fire (a=1.25);
    # H3 < 1.625.
    node = ALIFNode(tau=2.0, tau_adapt=1.0 / math.log(2.0), beta=0.5, v_reset=v_reset)
    with F.streaming(node):
        s, v = run(node, [2.0, 2.0, 2.0, 2.0])
        a = node.state["a"].item()
    assert s == [1, 0, 1, 0]
    assert v == pytest.approx(expected_v, abs=1e-12)
    assert a == pytest.approx(0.625, abs=1e-12)


@pytest.mark.parametrize("v_reset", [0.0, -0.5, None])
@pytest.mark.parametrize("decay_input", [True, False])
def test_alif_without_adaptation_is_lif(v_reset, decay_input):
    x = torch.rand(12, 3, 4, dtype=torch.float64) * 1.5
    kw = dict(tau=3.0, decay_input=decay_input, v_reset=v_reset, store_v_seq=True)
    alif, lif = ALIFNode(beta=0.0, **kw), LIFNode(**kw)
    assert torch.equal(alif(x), lif(x))
    assert torch.equal(alif.v_seq, lif.v_seq)


def test_klif_fires_and_resets_on_relu_of_k_h():
    node = KLIFNode().double()
    with torch.no_grad():
        node.k.fill_(2.0)
    # H0 = 0.4, F = 0.8; H1 = 0.8 + (0 - 0.8)/2 = 0.4, F = 0.8; H2 = 0.9, F = 1.8 fires.
    s, v = run(node, [0.8, 0.0, 1.0])
    assert s == [0, 0, 1]
    assert v == pytest.approx([0.8, 0.8, 0.0], abs=1e-12)
    assert run(node, [-1.0])[1] == [0.0]  # ReLU


def test_klif_scale_reset_keeps_f_over_k():
    node = KLIFNode(scale_reset=True).double()
    with torch.no_grad():
        node.k.fill_(2.0)
    # V = F/k when silent: F0 = 0.8 -> V 0.4; H1 = 0.2, F = 0.4 -> V 0.2;
    # H2 = 0.2 + 0.4 = 0.6, F = 1.2 fires -> V 0.
    s, v = run(node, [0.8, 0.0, 1.0])
    assert s == [0, 0, 1]
    assert v == pytest.approx([0.4, 0.2, 0.0], abs=1e-12)


def klif_direct(x, k, tau, v_reset, detach_reset, scale_reset, surrogate):
    """KLIF as published (SpikingJelly's form), autograd through a plain loop."""
    c = 0.0 if v_reset is None else v_reset
    v = torch.full_like(x[0], c)
    spikes, vs = [], []
    for x_t in x:
        f = torch.relu(k * (v + (x_t - (v - c)) / tau))
        s = surrogate(f - 1.0)
        sr = s.detach() if detach_reset else s
        scale = k if scale_reset else 1.0
        if v_reset is None:
            v = (f - 1.0 * sr) / scale
        else:
            v = (f / scale) * (1 - sr) + v_reset * sr
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs)


@pytest.mark.parametrize("scale_reset", [False, True])
@pytest.mark.parametrize("v_reset", [0.0, -0.2, None])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_klif_equals_its_published_form_with_gradients(scale_reset, v_reset, detach_reset):
    x = torch.rand(10, 3, 4, dtype=torch.float64) * 1.2
    node = KLIFNode(
        tau=2.5, scale_reset=scale_reset, v_reset=v_reset, detach_reset=detach_reset
    ).double()
    node.store_v_seq = True
    with torch.no_grad():
        node.k.fill_(1.3)
    k = node.k.detach().clone().requires_grad_()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    s_ref, v_ref = klif_direct(x1, k, 2.5, v_reset, detach_reset, scale_reset, Sigmoid())
    s = node(x2)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(node.v_seq, v_ref.detach(), atol=1e-12, rtol=0)
    g = torch.randn_like(s)
    gx_ref, gk_ref = torch.autograd.grad((s_ref * g).sum(), [x1, k])
    gx, gk = torch.autograd.grad((s * g).sum(), [x2, node.k])
    torch.testing.assert_close(gx, gx_ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(gk, gk_ref, atol=1e-12, rtol=1e-10)


def test_klif_scaled_streaming_carries_v_not_the_kernel_scale():
    node = KLIFNode(scale_reset=True, v_reset=-0.2, store_v_seq=True).double()
    with torch.no_grad():
        node.k.fill_(1.7)
    x = torch.rand(9, 5, dtype=torch.float64) * 1.5
    whole = node(x)
    v_whole = node.v_seq
    with F.streaming(node):
        parts = torch.cat([node(c) for c in x.split([4, 5])])
        torch.testing.assert_close(node.v, v_whole[-1])
    assert torch.equal(parts, whole)


def test_cuba_lif_current_then_membrane():
    # I = I + (X - I)/2 ; H = V + (0 - V + 2 I)/4:
    # I 1, H 0.5; I 0.5, H 0.625; I 0.25, H 0.59375; I 1.125, H 1.0078125 -> fire.
    node = CubaLIFNode(tau_syn=2.0, tau_mem=4.0, r=2.0)
    with F.streaming(node):
        s, v = run(node, [2.0, 0.0, 0.0, 2.0])
        i = node.i.item()
    assert s == [0, 0, 0, 1]
    assert v == pytest.approx([0.5, 0.625, 0.59375, 0.0], abs=1e-12)
    assert i == pytest.approx(1.125, abs=1e-12)


def test_cuba_lif_dt_and_leak_follow_the_ode():
    # tau_syn = tau_mem = 4, dt = 2: decays dt/tau = 1/2; v_leak = 0.2 pulls V up from 0.
    node = CubaLIFNode(tau_syn=4.0, tau_mem=4.0, v_leak=0.2, dt=2.0, v_threshold=5.0)
    s, v = run(node, [0.0, 1.0])
    # I0 = 0, H0 = 0 + (0.2 - 0) / 2 = 0.1;  I1 = 0.5, H1 = 0.1 + (0.2 - 0.1 + 0.5) / 2 = 0.4
    assert s == [0, 0]
    assert v == pytest.approx([0.1, 0.4], abs=1e-12)


def test_cuba_lif_per_neuron_parameters_like_nir():
    tau_mem = torch.tensor([2.0, 4.0])
    node = CubaLIFNode(tau_syn=1.0, tau_mem=tau_mem, v_threshold=10.0, store_v_seq=True)
    node(torch.ones(1, 2))
    # tau_syn = dt: I = X = 1; H = r I dt / tau_mem.
    assert node.v_seq[0].tolist() == pytest.approx([0.5, 0.25])
    with pytest.raises(ShapeError, match="tau_mem of shape"):
        node(torch.ones(1, 3))


# -- every neuron on the fused kernels --------------------------------------------------


def make(kind, backend, v_reset, detach_reset):
    kw = dict(v_reset=v_reset, detach_reset=detach_reset, backend=backend)
    kw.update(v_threshold=torch.tensor(0.9), learnable_threshold=True)
    if kind == "qif":
        node = QIFNode(tau=2.5, **kw)
    elif kind == "eif":
        node = EIFNode(theta_rh=0.7, **kw)
    elif kind == "izhikevich":
        node = IzhikevichNode(a=0.4, b=0.2, w_rest=0.05, **kw)
    elif kind == "alif":
        node = ALIFNode(tau=2.0, tau_adapt=3.0, beta=0.4, **kw)
    elif kind == "alif_nodecay":
        node = ALIFNode(tau=3.0, tau_adapt=5.0, beta=0.3, decay_input=False, **kw)
    elif kind == "klif":
        node = KLIFNode(**kw)
    elif kind == "klif_scaled":
        node = KLIFNode(tau=3.0, scale_reset=True, **kw)
    elif kind == "cuba":
        node = CubaLIFNode(tau_syn=2.5, tau_mem=torch.tensor([2.0, 3.0, 4.0]), r=1.5, **kw)
    elif kind == "clif":
        node = ComplementaryLIFNode(tau=2.5, **kw)
    elif kind == "raf":
        node = RAFNode(b=-0.4, omega=1.3, dt=0.8, **kw)
    node = node.double()
    if kind.startswith("klif"):
        with torch.no_grad():
            node.k.fill_(1.25)
    return node


KINDS = ["qif", "eif", "izhikevich", "alif", "alif_nodecay", "klif", "klif_scaled", "cuba",
         "clif", "raf"]  # fmt: skip
# hard reset to each neuron's usual value (and a non-zero one for KLIF), soft reset.
RESETS = {"qif": -0.1, "eif": -0.1, "klif_scaled": -0.2}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_kernels_equal_the_reference(kind, hard, detach_reset, backend):
    v_reset = RESETS.get(kind, 0.0) if hard else None
    device = kernel_device(backend)
    ref = make(kind, "torch", v_reset, detach_reset).to(device)
    fused = make(kind, backend, v_reset, detach_reset).to(device)
    x = torch.rand(8, 2, 3, dtype=torch.float64, device=device) * 2.2 - 0.2
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yf = ref(xr), fused(xf)
    assert torch.equal(yr, yf), "fused spikes differ from the reference loop"
    assert 0.05 < float(yr.detach().mean()) < 0.95  # the test exercises firing and resetting
    g = torch.randn_like(yr)
    params_r, params_f = list(ref.parameters()), list(fused.parameters())
    assert len(params_r) == (2 if kind.startswith("klif") else 1)  # k, threshold
    gr = torch.autograd.grad((yr * g).sum(), [xr, *params_r])
    gf = torch.autograd.grad((yf * g).sum(), [xf, *params_f])
    for a, b in zip(gr, gf):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("kind", ["alif", "klif_scaled", "izhikevich", "cuba", "clif", "raf"])
def test_gradcheck_of_the_generated_cpu_backward(kind):
    """float64 gradcheck of the fused CPU kernel (input, threshold, KLIF's k)."""
    node = make(kind, "cpu", -0.2 if kind == "klif_scaled" else None, False)
    node.surrogate_function = Sigmoid(alpha=2.0, spiking=False)
    decl, rule = node.declaration(), node.firing_rule
    x = (torch.rand(6, 3, dtype=torch.float64) * 2).requires_grad_()
    theta = node.v_threshold.detach().clone().requires_grad_()

    def spikes(x, theta, *learned):
        params = node.neuron_params()
        if learned:
            params = {**params, "k": learned[0]}
        state = node.initial_state(x[0])
        return run_cpu(decl, x, state, params, theta, rule)[0]

    inputs = [x, theta]
    if kind.startswith("klif"):
        inputs.append(node.k.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(spikes, tuple(inputs))


# -- step modes ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_single_step_equals_multi_step(kind):
    node = make(kind, "auto", RESETS.get(kind, 0.0), False)
    x = torch.rand(7, 2, 3, dtype=torch.float64) * 2
    multi = node(x)
    F.set_step_mode(node, "s")
    with F.streaming(node):
        single = torch.stack([node(x_t) for x_t in x])
    assert torch.equal(multi, single)


# -- the threshold extension of the declaration ------------------------------------------


class DecayingThresholdIF(BaseNode):
    """A user neuron with a state-dependent threshold declared on the class."""

    @staticmethod
    def charge(x, v, a):
        return v + x

    @staticmethod
    def update(h, s, a, *, rho):
        return rho * a + s

    @staticmethod
    def threshold(theta, a):
        return theta * (1.0 + a)

    def neuron_params(self):
        return {"rho": 0.5}

    def initial_state(self, like):
        return {**super().initial_state(like), "a": torch.zeros_like(like)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_neuron_threshold_method_reaches_every_backend(backend):
    assert DecayingThresholdIF().declaration().threshold is DecayingThresholdIF.threshold
    # soft reset: H0 = 1 >= 1, V = 0, a = 1; H1 = 1 < 2; H2 = 2 >= 1.5, V = 0.5.
    s, v = run(DecayingThresholdIF(v_reset=None, backend=backend), [1.0, 1.0, 1.0])
    assert s == [1, 0, 1]
    assert v == pytest.approx([0.0, 1.0, 0.5])


def test_threshold_signature_is_checked():
    def charge(x, v, a):
        return v + x

    def update(h, s, a):
        return a

    with pytest.raises(ConfigurationError, match="must start with the positional"):
        declare(charge, update, "bad", threshold=lambda a, theta: theta)
    with pytest.raises(ConfigurationError, match="auxiliary state"):
        declare(charge, update, "bad", threshold=lambda theta: theta)


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: QIFNode(tau=1.0), "tau must be"),
        (lambda: QIFNode(a0=0.0), "a0 must be > 0"),
        (lambda: QIFNode(v_c=-0.5), r"v_c \(-0.5\) must be above v_rest"),
        (lambda: QIFNode(v_reset=0.9, v_threshold=1.5), r"v_reset \(0.9\) must be below v_c"),
        (lambda: EIFNode(delta_T=-1.0), "delta_T must be > 0"),
        (lambda: EIFNode(theta_rh=float("nan")), "theta_rh must be a finite real number"),
        (lambda: IzhikevichNode(tau_w=0.5), "tau_w must be"),
        (lambda: ALIFNode(beta=-0.1), "beta must be >= 0"),
        (lambda: ALIFNode(tau_adapt=0.0), "tau_adapt must be > 0"),
        (lambda: KLIFNode(tau=0.5), "tau must be"),
        (lambda: CubaLIFNode(dt=0.0), "dt must be"),
        (lambda: CubaLIFNode(tau_syn=0.5), r"tau_syn must be >= dt \(1.0\)"),
        (lambda: CubaLIFNode(tau_mem=torch.tensor([2.0, 0.5])), "tau_mem must be >= dt"),
        (lambda: CubaLIFNode(r="1"), "r must be a float or a tensor"),
    ],
)
def test_bad_arguments_are_named(build, match):
    with pytest.raises(ConfigurationError, match=match):
        build()


def test_defaults_are_the_fields():
    qif, eif, izh = QIFNode(), EIFNode(), IzhikevichNode()
    assert (qif.tau, qif.v_c, qif.a0, qif.v_rest, qif.v_reset) == (2.0, 0.8, 1.0, 0.0, -0.1)
    assert (eif.delta_T, eif.theta_rh, eif.v_rest, eif.v_reset) == (1.0, 0.8, 0.0, -0.1)
    assert (izh.v_rest, izh.v_reset, izh.tau_w, izh.a, izh.b) == (-0.1, 0.0, 2.0, 0.0, 0.0)
    assert KLIFNode().k.item() == 1.0 and KLIFNode().k.requires_grad
    assert QIFNode(v_reset=None).initial_state(torch.zeros(2))["v"].tolist() == [0.0, 0.0]
    assert QIFNode().initial_state(torch.zeros(1))["v"].item() == pytest.approx(-0.1)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_klif_scaled_reset_membrane_loss_differentiates_k(backend):
    # v_seq of a scale_reset KLIF is F/k (1 - S): a membrane loss reaches k through the
    # division too. Reference: the docstring's equations written out with autograd.
    from spikeflow.neurons import KLIFNode
    from spikeflow.surrogate import ATan

    torch.manual_seed(0)
    x = torch.rand(6, 2, 5, dtype=torch.float64) * 2.0
    sg = ATan()
    k = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    v, vs = torch.zeros_like(x[0]), []
    for xt in x:
        h = v + (xt - v) / 2.0
        f = torch.relu(k * h)
        s = sg(f - 1.0)
        v = (f / k) * (1 - s)
        vs.append(v)
    torch.stack(vs).pow(2).sum().backward()
    node = KLIFNode(scale_reset=True, store_v_seq=True, surrogate_function=ATan(), backend=backend)
    node = node.double()
    with torch.no_grad():
        node.k.fill_(1.3)
    node(x)
    node.v_seq.pow(2).sum().backward()
    torch.testing.assert_close(node.v_seq.detach(), torch.stack(vs).detach())
    torch.testing.assert_close(node.k.grad, k.grad, rtol=1e-9, atol=1e-12)
