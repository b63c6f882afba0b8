"""Complementary LIF (CLIF) and resonate-and-fire (RAF) against SpikingJelly 2.0, and the
declaration's ``reset_membrane`` that CLIF needs.

Hand-computed sequences for each equation; spikes identical to SpikingJelly's
``ComplementaryLIFNode`` and ``RAFNode`` and float64 gradients of the input and of a
learnable threshold equal to theirs, with the membrane and the final state, on every
backend (the reference loop, the C kernel, Triton); CLIF's hard reset and
``detach_reset`` (which SpikingJelly's node lacks) against a direct loop; float64
gradcheck on every backend; chunked streaming and single-step equal to one call; the
errors. CLIF and RAF on the fused kernels against the reference loop for every reset
option are in ``tests/test_neurons_zoo.py``.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.neurons import (
    BaseNode,
    CLIFNode,
    ComplementaryLIFNode,
    RAFNode,
    ResonateAndFireNode,
    declare,
)
from spikeflow.surrogate import ATan, Rect, Sigmoid

sj_neuron = pytest.importorskip(
    "spikingjelly.activation_based.neuron",
    reason="SpikingJelly (installed by scripts/setup.sh test) is needed",
)
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

BACKENDS = fused_backends("torch")
F64 = torch.float64


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def run(node, xs):
    """Spikes and membrane after reset of a one-neuron float64 run of ``xs``."""
    node.store_v_seq = True
    device = kernel_device(node.backend)
    node = node.double().to(device)
    s = node(torch.tensor(xs, dtype=F64, device=device).view(-1, 1))
    return s.view(-1).tolist(), node.v_seq.view(-1).tolist()


# -- hand-computed sequences ---------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_clif_equations_by_hand(backend):
    # tau = 2, θ = 1, soft reset, V = M = 0 at the start:
    # t0: H = 1.5 fires; M = 0 * σ(0.75) + 1 = 1;  V = 1.5 - (1 + σ(1))
    # t1: H = V/2 + 0.5 silent; M = σ(H/2);        V = H
    # t2: H = H1/2 + 1.5 fires; M = M1 σ(H2/2) + 1; V = H2 - (1 + σ(M))
    v0 = 1.5 - (1.0 + sigmoid(1.0))
    h1 = v0 - v0 / 2 + 0.5
    m1 = sigmoid(h1 / 2)
    h2 = h1 - h1 / 2 + 1.5
    m2 = m1 * sigmoid(h2 / 2) + 1.0
    node = ComplementaryLIFNode(backend=backend)
    with F.streaming(node):
        s, v = run(node, [1.5, 0.5, 1.5])
        m = node.m.item()
    assert s == [1, 0, 1]
    assert v == pytest.approx([v0, h1, h2 - 1.0 - sigmoid(m2)], abs=1e-12)
    assert m == pytest.approx(m2, abs=1e-12)


def test_clif_hard_reset_leaks_towards_v_reset():
    # v_reset = -0.5: V starts at -0.5; H = V - (V + 0.5)/2 + X.
    # t0: H = -0.5 + 1.6 = 1.1 fires; M = 1; V = -0.5 - σ(1).
    node = ComplementaryLIFNode(v_reset=-0.5)
    s, v = run(node, [1.6, 0.0])
    v0 = -0.5 - sigmoid(1.0)
    assert s == [1, 0]
    assert v == pytest.approx([v0, v0 - (v0 + 0.5) / 2], abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_raf_rotates_and_decays(backend):
    # alpha = exp(b) = 0.5, phi = pi/2 (cos ~ 6e-17, sin = 1), θ = 1.5: z = u + iV is
    # multiplied by 0.5 i each step; a pulse of 2 into u reaches V one step later:
    # (u, V) = (2, 0) -> (0, 1) -> (-0.5, 0) -> (0, -0.25) -> (0.125, 0).
    node = RAFNode(b=math.log(0.5), omega=math.pi / 2, v_threshold=1.5, backend=backend)
    with F.streaming(node):
        s, v = run(node, [2.0, 0.0, 0.0, 0.0, 0.0])
        u = node.u.item()
    assert s == [0] * 5
    assert v == pytest.approx([0.0, 1.0, 0.0, -0.25, 0.0], abs=1e-12)
    assert u == pytest.approx(0.125, abs=1e-12)


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_raf_fires_on_the_rebound_of_inhibition(v_reset):
    # An inhibitory pulse alone: V swings to -2.7 (t1), then, half a turn later, to
    # +0.9^3 * 3 = 2.187 (t3), and fires. Only V is reset; u keeps turning.
    node = RAFNode(b=math.log(0.9), omega=math.pi / 2, v_reset=v_reset)
    s, v = run(node, [-3.0, 0.0, 0.0, 0.0])
    assert s == [0, 0, 0, 1]
    h3 = 0.9**3 * 3.0
    after = 0.0 if v_reset == 0.0 else h3 - 1.0
    assert v == pytest.approx([0.0, -2.7, 0.0, after], abs=1e-12)


# -- against SpikingJelly 2.0 ----------------------------------------------------------


SURROGATES = {
    "rect": (lambda: Rect(alpha=1.0), lambda: sj_surrogate.Rect(alpha=1.0)),
    "sigmoid": (lambda: Sigmoid(alpha=4.0), lambda: sj_surrogate.Sigmoid(alpha=4.0)),
    "atan": (lambda: ATan(alpha=2.0), lambda: sj_surrogate.ATan(alpha=2.0)),
}


def _sequence(scale: float, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.rand(CHECKPOINT + 7, 3, 41, dtype=F64) * scale + shift  # two CPU segments
    return x, torch.randn_like(x)


def _with_threshold(ours, theirs, theta):
    """A learnable tensor threshold on both (SpikingJelly's constructor takes only a
    float; its equations take the tensor as given), or the float default."""
    if theta is None:
        return ours, theirs, []
    ours.v_threshold = torch.nn.Parameter(torch.tensor(theta, dtype=F64))
    theirs.v_threshold = torch.tensor(theta, dtype=F64, requires_grad=True)
    return ours, theirs, [theirs.v_threshold]


def _compare(ours, theirs, their_params, x, g, backend):
    """Spikes and the gradients of the input and of the learnable parameters; returns
    the state ours carries after the call and its membrane of every step, for the
    caller to compare with SpikingJelly's."""
    device = kernel_device(backend)
    ours = ours.to(device)
    x_sj, x_sf = x.clone().requires_grad_(), x.to(device).requires_grad_()
    with F.streaming(ours):
        s_sf = ours(x_sf)
        final = {k: t.detach().cpu() for k, t in ours.state.items()}
    s_sj = theirs(x_sj)
    assert torch.equal(s_sf.cpu(), s_sj.detach()), "spikes differ from SpikingJelly's"
    assert 0.05 < s_sj.mean().item() < 0.95  # both firing and silent steps are exercised
    params_sf = list(ours.parameters())
    assert len(params_sf) == len(their_params)
    grads_sj = torch.autograd.grad((s_sj * g).sum(), [x_sj, *their_params])
    grads_sf = torch.autograd.grad((s_sf * g.to(device)).sum(), [x_sf, *params_sf])
    for a, b in zip(grads_sf, grads_sj):
        torch.testing.assert_close(a.cpu(), b, atol=1e-12, rtol=1e-10)
    return final, ours.v_seq.detach().cpu()


CLIF_CASES = [
    # (surrogate, tau, learnable threshold or None for the float default)
    ("rect", 2.0, None),
    ("sigmoid", 3.0, 0.9),
    ("atan", 1.5, 1.2),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("surrogate", "tau", "theta"), CLIF_CASES)
def test_clif_equal_to_spikingjelly(backend, surrogate, tau, theta):
    x, g = _sequence(2.0, -0.3)
    sf_sg, sj_sg = SURROGATES[surrogate]
    kw = {} if surrogate == "rect" else {"surrogate_function": sf_sg()}  # rect: the default
    ours = ComplementaryLIFNode(tau=tau, backend=backend, store_v_seq=True, **kw).double()
    theirs = sj_neuron.ComplementaryLIFNode(
        tau=tau, surrogate_function=sj_sg(), step_mode="m", store_state_seqs=True
    ).double()
    ours, theirs, their_params = _with_threshold(ours, theirs, theta)
    final, v_seq = _compare(ours, theirs, their_params, x, g, backend)
    v_sj, m_sj = theirs.state_seqs
    torch.testing.assert_close(v_seq, v_sj.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(final["v"], theirs.v.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(final["m"], m_sj[-1].detach(), atol=1e-12, rtol=0)


RAF_CASES = [
    # (surrogate, b, omega, dt, learnable threshold or None)
    ("sigmoid", -0.2, 1.0, 1.0, None),  # SpikingJelly's defaults
    ("atan", -0.6, 2.5, 0.5, 0.8),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize(("surrogate", "b", "omega", "dt", "theta"), RAF_CASES)
def test_raf_equal_to_spikingjelly(backend, v_reset, detach_reset, surrogate, b, omega, dt,
                                   theta):  # fmt: skip
    x, g = _sequence(2.0, -0.6)
    sf_sg, sj_sg = SURROGATES[surrogate]
    common = dict(b=b, omega=omega, dt=dt, v_reset=v_reset, detach_reset=detach_reset)
    ours = RAFNode(surrogate_function=sf_sg(), backend=backend, store_v_seq=True, **common)
    theirs = sj_neuron.RAFNode(surrogate_function=sj_sg(), step_mode="m", store_v_seq=True,
                               **common)  # fmt: skip
    ours, theirs, their_params = _with_threshold(ours.double(), theirs.double(), theta)
    final, v_seq = _compare(ours, theirs, their_params, x, g, backend)
    torch.testing.assert_close(v_seq, theirs.v_seq.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(final["v"], theirs.v.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(final["u"], theirs.u.detach(), atol=1e-12, rtol=0)


# -- CLIF's options beyond SpikingJelly's node: a direct loop ------------------------------


def clif_direct(x, theta, tau, v_reset, detach_reset, surrogate):
    """CLIF as the authors' code runs it (charge, decay M, fire, M += S, the LIF reset,
    then V -= S sigmoid(M)), autograd through a plain loop; ``detach_reset`` detaches the
    spike of both reset terms, not the one added to M."""
    c = 0.0 if v_reset is None else v_reset
    v, m = torch.full_like(x[0], c), torch.zeros_like(x[0])
    spikes, vs = [], []
    for x_t in x:
        h = v * (1 - 1 / tau) + c / tau + x_t
        m = m * torch.sigmoid(h / tau)
        s = surrogate(h - theta)
        m = m + s
        sr = s.detach() if detach_reset else s
        v = h - sr * theta if v_reset is None else (1 - sr) * h + sr * v_reset
        v = v - sr * torch.sigmoid(m)
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("v_reset", "detach_reset"), [(None, True), (0.0, False), (-0.3, True)])
def test_clif_hard_reset_and_detach_reset_equal_a_direct_loop(backend, v_reset, detach_reset):
    x, g = _sequence(2.0, -0.3)
    x = x[:, :, :8]
    g = g[:, :, :8]
    device = kernel_device(backend)
    theta = torch.tensor(0.9, dtype=F64, requires_grad=True)
    node = ComplementaryLIFNode(tau=2.5, v_reset=v_reset, detach_reset=detach_reset,
                                v_threshold=theta.detach(), learnable_threshold=True,
                                store_v_seq=True, backend=backend).double().to(device)  # fmt: skip
    x1, x2 = x.clone().requires_grad_(), x.to(device).requires_grad_()
    s_ref, v_ref = clif_direct(x1, theta, 2.5, v_reset, detach_reset, Rect())
    s = node(x2)
    assert torch.equal(s.cpu(), s_ref) and 0.05 < s_ref.mean().item() < 0.95
    torch.testing.assert_close(node.v_seq.detach().cpu(), v_ref.detach(), atol=1e-12, rtol=0)
    loss_ref = (s_ref * g).sum() + v_ref.sum()  # a membrane loss reaches the reset too
    loss = (s * g.to(device)).sum() + node.v_seq.sum()
    for a, b in zip(torch.autograd.grad(loss, [x2, node.v_threshold]),
                    torch.autograd.grad(loss_ref, [x1, theta])):  # fmt: skip
        torch.testing.assert_close(a.cpu(), b, atol=1e-12, rtol=1e-10)


# -- gradcheck, streaming, step modes ----------------------------------------------------


def _smooth(kind: str, backend: str) -> BaseNode:
    sg = Sigmoid(alpha=2.0, spiking=False)
    theta = torch.tensor([0.9, 1.1])
    kw = dict(backend=backend, surrogate_function=sg, v_threshold=theta,
              learnable_threshold=True, store_v_seq=True)  # fmt: skip
    if kind == "clif":
        return ComplementaryLIFNode(tau=2.0, **kw)
    if kind == "clif_hard":
        return ComplementaryLIFNode(tau=3.0, v_reset=-0.2, **kw)
    if kind == "raf":
        return RAFNode(b=-0.3, omega=1.2, v_reset=0.0, **kw)
    return RAFNode(b=-0.5, omega=0.8, dt=0.5, v_reset=None, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["clif", "clif_hard", "raf", "raf_soft"])
def test_gradcheck_float64(kind, backend):
    """gradcheck of spikes and membrane (input, threshold) with a smooth surrogate."""
    device = kernel_device(backend)
    node = _smooth(kind, backend).double().to(device)
    x = (torch.rand(5, 1, 2, dtype=F64, device=device) * 2.4 - 0.4).requires_grad_()
    theta = node.v_threshold.detach().clone().requires_grad_()

    def through(name):
        def f(x, theta):
            node.backend = name
            s = torch.func.functional_call(node, {"v_threshold": theta}, (x,))
            return torch.cat([s, node.v_seq])

        return f

    gradcheck_backend(backend, through(backend), (x, theta), through("torch"))


def _spikes_grads_state(node, chunks, g):
    x = torch.cat(chunks).requires_grad_()
    with F.streaming(node):
        s = torch.cat([node(c) for c in x.split([len(c) for c in chunks])])
        state = dict(node.state)
    loss = (s * g).sum() + sum(t.sum() for t in state.values())  # the carried state too
    grads = torch.autograd.grad(loss, [x, node.v_threshold])
    return s.detach(), grads, {k: t.detach() for k, t in state.items()}


def _make(kind: str, backend: str) -> BaseNode:
    kw = dict(backend=backend, v_threshold=torch.tensor(0.9), learnable_threshold=True)
    if kind == "clif":
        return ComplementaryLIFNode(tau=2.0, **kw).double()
    return RAFNode(b=-0.3, omega=1.2, v_reset=None, **kw).double()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["clif", "raf"])
def test_chunked_streaming_equals_one_call(kind, backend):
    device = kernel_device(backend)
    x = torch.rand(12, 2, 5, dtype=F64, device=device) * 2.4 - 0.4
    g = torch.randn_like(x)
    whole = _spikes_grads_state(_make(kind, backend).to(device), [x], g)
    parts = _spikes_grads_state(_make(kind, backend).to(device), list(x.split([5, 1, 6])), g)
    assert torch.equal(parts[0], whole[0]) and 0.05 < whole[0].mean().item() < 0.95
    assert sorted(whole[2]) == (["m", "v"] if kind == "clif" else ["u", "v"])
    for a, b in zip(parts[1], whole[1]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    for name in whole[2]:
        torch.testing.assert_close(parts[2][name], whole[2][name], atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["clif", "raf"])
def test_single_step_equals_multi_step(kind, backend):
    device = kernel_device(backend)
    x = torch.rand(9, 2, 5, dtype=F64, device=device) * 2.4 - 0.4
    g = torch.randn_like(x)
    multi = _spikes_grads_state(_make(kind, backend).to(device), [x], g)
    node = _make(kind, backend).to(device)
    F.set_step_mode(node, "s")
    xs = x.clone().requires_grad_()
    with F.streaming(node):
        s = torch.stack([node(x_t) for x_t in xs])
        state = dict(node.state)
    loss = (s * g).sum() + sum(t.sum() for t in state.values())
    grads = torch.autograd.grad(loss, [xs, node.v_threshold])
    assert torch.equal(s.detach(), multi[0])
    for a, b in zip(grads, multi[1]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


# -- the declaration's reset_membrane ------------------------------------------------------


class CountedResetIF(BaseNode):
    """A user neuron whose reset reads a spike count that already includes this step's
    spike, with a learnable parameter that only the reset uses."""

    @staticmethod
    def charge(x, v, c):
        return v + x

    @staticmethod
    def update(h, s, c, *, rho):
        return rho * c + s

    @staticmethod
    def reset_membrane(h, s, theta, c, *, k):
        return h - s * theta * (1.0 + k * c)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.k = torch.nn.Parameter(torch.tensor(0.5))

    def neuron_params(self):
        return {"rho": 0.5, "k": self.k}

    def initial_values(self):
        return {**super().initial_values(), "c": 0.0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_neuron_reset_membrane_reaches_every_backend(backend):
    assert CountedResetIF().declaration().reset_membrane is CountedResetIF.reset_membrane
    # H0 = 1 fires, c = 1, V = 1 - 1.5; H1 = 0.5, c = 0.5; H2 = 1.5 fires, c = 1.25,
    # V = 1.5 - 1.625. (v_reset is only where the membrane starts.)
    s, v = run(CountedResetIF(v_reset=None, backend=backend), [1.0, 1.0, 1.0])
    assert s == [1, 0, 1]
    assert v == pytest.approx([-0.5, 0.5, -0.125], abs=1e-12)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("detach_reset", [False, True])
def test_reset_membrane_gradients_on_the_fused_kernels(backend, detach_reset):
    device = kernel_device(backend)
    x = torch.rand(10, 2, 3, dtype=F64, device=device) * 1.5
    g = torch.randn_like(x)
    out = []
    for b in ("torch", backend):
        node = CountedResetIF(backend=b, detach_reset=detach_reset, store_v_seq=True,
                              v_threshold=torch.tensor(0.8), learnable_threshold=True)  # fmt: skip
        node = node.double().to(device)
        xi = x.clone().requires_grad_()
        s = node(xi)
        loss = (s * g).sum() + node.v_seq.pow(2).sum()
        out.append((s, torch.autograd.grad(loss, [xi, node.k, node.v_threshold])))
    (s_ref, g_ref), (s, grads) = out
    assert torch.equal(s, s_ref) and 0.05 < s.mean().item() < 0.95
    for a, b in zip(grads, g_ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    assert grads[1].abs().item() > 0  # k, read by the reset alone, gets a gradient


GAIN = 0.5  # read by _gained_reset: a captured number


def _gained_reset(h, s, theta, c):
    return h - s * theta * (1.0 + GAIN * c)


class GainedResetIF(CountedResetIF):
    reset_membrane = staticmethod(_gained_reset)

    def neuron_params(self):
        return {"rho": 0.5}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_number_the_reset_reads_changed_between_calls_is_read_again(backend, monkeypatch):
    # The kernels fold the reset's captured numbers in: a new value builds new ones.
    node = GainedResetIF(v_reset=None, backend=backend)
    assert run(node, [1.0, 1.0, 1.0])[1] == pytest.approx([-0.5, 0.5, -0.125], abs=1e-12)
    monkeypatch.setattr(sys.modules[__name__], "GAIN", 1.0)
    # H0 = 1 fires, c = 1, V = 1 - 2; H1 = 0, c = 0.5; H2 = 1 fires, c = 1.25, V = 1 - 2.25.
    assert run(node, [1.0, 1.0, 1.0])[1] == pytest.approx([-1.0, 0.0, -1.25], abs=1e-12)


def test_reset_membrane_signature_is_checked():
    def charge(x, v, a):
        return v + x

    def update(h, s, a):
        return a

    with pytest.raises(ConfigurationError, match="must start with the positional"):
        declare(charge, update, "bad", reset_membrane=lambda h, s, a, theta: h)
    with pytest.raises(ConfigurationError, match="auxiliary state"):
        declare(charge, update, "bad", reset_membrane=lambda h, s, theta: h)
    decl = declare(charge, update, "ok", reset_membrane=lambda h, s, theta, a, *, k: h - k * s)
    assert decl.reset_params == ("k",) and "k" in decl.param_names


def test_clif_compiles_into_one_graph_with_the_fused_kernel(monkeypatch):
    # The compiled path rebuilds the declaration from its functions, reset_membrane too.
    from spikeflow.kernels import registry

    keys = []
    entry_key = registry.entry_key
    monkeypatch.setattr(registry, "entry_key", lambda *a, **k: keys.append(a) or entry_key(*a, **k))
    torch._dynamo.reset()
    try:
        x = torch.rand(6, 4, 8) * 2
        g = torch.randn_like(x)
        outs = []
        for node in (ComplementaryLIFNode(backend="torch"),
                     torch.compile(ComplementaryLIFNode(backend="cpu"), backend="aot_eager",
                                   fullgraph=True)):  # fmt: skip
            xi = x.clone().requires_grad_()
            s = node(xi)
            outs.append((s, torch.autograd.grad((s * g).sum(), xi)[0]))
        assert torch.equal(outs[1][0], outs[0][0])
        torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-5, atol=1e-6)
        assert any(a[4].reset_membrane is not None for a in keys), "no fused kernel was built"
    finally:
        torch._dynamo.reset()


# -- arguments ------------------------------------------------------------------------------


def test_defaults_are_spikingjellys():
    clif, raf = ComplementaryLIFNode(), RAFNode()
    assert (clif.tau, clif.v_threshold, clif.v_reset, clif.detach_reset) == (2.0, 1.0, None, False)
    assert type(clif.surrogate_function) is Rect and clif.surrogate_function.params["alpha"] == 1
    assert (raf.b, raf.omega, raf.dt, raf.v_threshold, raf.v_reset) == (-0.2, 1.0, 1.0, 1.0, 0.0)
    assert type(raf.surrogate_function) is Sigmoid
    assert raf.surrogate_function.params["alpha"] == 4.0
    assert list(clif.parameters()) == [] and list(raf.parameters()) == []
    assert CLIFNode is ComplementaryLIFNode and ResonateAndFireNode is RAFNode
    assert clif.declaration().state_names == ("v", "m")
    assert raf.declaration().state_names == ("v", "u")
    assert "tau=2" in repr(clif) and "b=-0.2, omega=1, dt=1" in repr(raf)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ComplementaryLIFNode(tau=1.0), "tau must be"),
        (lambda: ComplementaryLIFNode(tau=float("inf")), "tau must be"),
        (lambda: ComplementaryLIFNode(v_reset=1.0), r"v_threshold \(1.0\) must be above"),
        (lambda: ComplementaryLIFNode(surrogate_function="rect"), "surrogate_function must"),
        (lambda: RAFNode(b=0.0), "b must be < 0"),
        (lambda: RAFNode(b=float("nan")), "b must be a finite real number"),
        (lambda: RAFNode(omega=0.0), "omega must be > 0"),
        (lambda: RAFNode(omega="1"), "omega must be a finite real number"),
        (lambda: RAFNode(dt=-1.0), "dt must be > 0"),
        (lambda: RAFNode(v_reset=1.5), r"v_threshold \(1.0\) must be above"),
    ],
)
def test_bad_arguments_are_named(build, match):
    with pytest.raises(ConfigurationError, match=match):
        build()
