"""The gated LIF neuron (GLIF; Yao et al., NeurIPS 2022) on every backend.

Against a direct loop of the equations written here from the raw parameters (always
runs): identical spikes and membranes, float64 gradients of the input and of all eight
learnable parameters, per layer and per channel, with and without ``detach_reset``.
Against SpikingJelly 2.0's ``GatedLIFNode`` (skipped without it; it is not in the test
extras): its ``state_dict`` loads, spikes identical, gradients equal; the same
positional arguments give the same initial parameters. Float32 fused kernels equal to
the reference loop; gradcheck with a smooth surrogate; chunked streaming and
single-step equal to one call; per-channel parameters on conv and linear steps; the
errors; the model zoo's ``neuron="glif"``.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from neuron_references import sigmoid_spike
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.models import NEURONS, create_model
from spikeflow.neurons import GatedLIFNode, GLIFNode
from spikeflow.surrogate import ATan, Sigmoid

BACKENDS = fused_backends("torch")
F64 = torch.float64
NAMES = ("alpha", "beta", "gamma", "tau", "v_threshold", "linear_decay", "v_subreset", "conduct")


def glif_loop(x, p, per_channel, detach_reset=False, start=0, v=None, last=None):
    """GLIF's recurrence from the raw (pre-sigmoid) parameters ``p``: returns the
    spikes, the membranes and the final ``(v, last spike)``.

    u[t] = (1 - α(1 - τ)) u[t-1] - (1 - α) E + (1 - β(1 - g[t])) x[t]
           - γ (1 - α(1 - τ)) u[t-1] o[t-1] - (1 - γ) V_sub o[t-1];   o[t] = Θ(u[t] - θ)
    """
    shape = (-1, *(1,) * (x.dim() - 3)) if per_channel else ()

    def sig(value):
        return torch.sigmoid(value).reshape(shape)

    a, b, gamma = sig(p["alpha"]), sig(p["beta"]), sig(p["gamma"])
    tau, theta = sig(p["tau"]), sig(p["v_threshold"])
    lin, v_sub = sig(p["linear_decay"]), sig(p["v_subreset"])
    v = torch.zeros_like(x[0]) if v is None else v
    last = torch.zeros_like(x[0]) if last is None else last
    spikes, membranes = [], []
    for t, x_t in enumerate(x):
        g = sig(p["conduct"][start + t])
        kept = (1 - a * (1 - tau)) * v
        o = last.detach() if detach_reset else last
        reset = gamma * kept * o + (1 - gamma) * v_sub * o
        v = kept - (1 - a) * lin + (1 - b * (1 - g)) * x_t - reset
        last = sigmoid_spike(v - theta)
        spikes.append(last)
        membranes.append(v)
    return torch.stack(spikes), torch.stack(membranes), (v, last)


def _node(T, inplane, backend, seed=0, **kw):
    """A float64 node whose parameters are spread out (every gate away from 0.5)."""
    torch.manual_seed(seed)
    node = GatedLIFNode(T, inplane, backend=backend, **kw).double()
    with torch.no_grad():
        for p in node.parameters():
            p.add_(torch.randn_like(p) * 0.8)
    return node.to(kernel_device(backend))


def _params(node):
    return {n: getattr(node, n) for n in NAMES}


# -- against the equations ---------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "step, inplane",
    [((24,), None), ((4, 3, 3), 4), ((4,), 4)],
    ids=["layer-wise", "per-channel-conv", "per-channel-linear"],
)
@pytest.mark.parametrize("detach_reset", [False, True])
def test_glif_equals_its_equations(backend, step, inplane, detach_reset):
    T, device = 14, kernel_device(backend)
    per_channel = inplane is not None
    node = _node(T, inplane, backend, detach_reset=detach_reset)
    node.store_v_seq = True
    torch.manual_seed(1)
    x = (torch.rand(T, 3, *step, dtype=F64, device=device) * 1.6 - 0.2).requires_grad_()
    g = torch.randn(T, 3, *step, dtype=F64, device=device)
    s = node(x)
    got = torch.autograd.grad((s * g).sum() + node.v_seq.sum(), [x, *_params(node).values()])
    x_ref = x.detach().clone().requires_grad_()
    p_ref = {n: p.detach().clone().requires_grad_() for n, p in _params(node).items()}
    s_ref, v_ref, _ = glif_loop(x_ref, p_ref, per_channel, detach_reset)
    want = torch.autograd.grad((s_ref * g).sum() + v_ref.sum(), [x_ref, *p_ref.values()])
    assert torch.equal(s, s_ref)
    assert 0.1 < s.mean().item() < 0.9  # spikes and silences: resets happen
    torch.testing.assert_close(node.v_seq, v_ref, rtol=1e-12, atol=1e-12)
    for name, a, b in zip(["x", *NAMES], got, want, strict=True):
        assert a.shape == b.shape and b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_glif_resets_one_step_after_the_spike():
    # One neuron, every parameter's sigmoid at a chosen value; T = 3 steps of input 1.
    node = GatedLIFNode(3, backend="torch").double()
    values = {"alpha": 0.6, "beta": 0.3, "gamma": 0.8, "tau": 0.25, "v_threshold": 0.5,
              "linear_decay": 0.05, "v_subreset": 0.4}  # fmt: skip
    with torch.no_grad():
        for name, value in values.items():
            getattr(node, name).fill_(math.log(value / (1 - value)))
        node.conduct.copy_(torch.logit(torch.tensor([0.5, 0.9, 0.2], dtype=F64)))
    node.store_v_seq = True
    s = node(torch.ones(3, 1, dtype=F64)).view(-1).tolist()
    a, b, gm = values["alpha"], values["beta"], values["gamma"]
    d = 1 - a * (1 - values["tau"])  # 0.55
    leak = (1 - a) * values["linear_decay"]  # 0.02
    u0 = -leak + (1 - b * 0.5)  # 0.83: fires
    u1 = d * u0 - leak + (1 - b * 0.1) - gm * d * u0 - (1 - gm) * values["v_subreset"]
    u2 = d * u1 - leak + (1 - b * 0.8) - gm * d * u1 * (u1 >= 0.5) - (1 - gm) * 0.4 * (u1 >= 0.5)
    assert s == [1.0, float(u1 >= 0.5), float(u2 >= 0.5)]
    assert node.v_seq.view(-1).tolist() == pytest.approx([u0, u1, u2], abs=1e-14)


@pytest.mark.parametrize("backend", fused_backends())
def test_glif_float32_fused_equals_the_reference(backend):
    device = kernel_device(backend)
    ref = _node(10, 5, "torch").float()
    node = GatedLIFNode(10, 5, backend=backend).to(device)
    node.load_state_dict(ref.state_dict())
    ref = ref.to(device)
    ref.store_v_seq = node.store_v_seq = True
    torch.manual_seed(2)
    x = torch.rand(10, 4, 5, 6, 6, device=device) * 1.6 - 0.2
    g = torch.randn_like(x)
    x_ref, x_f = x.clone().requires_grad_(), x.clone().requires_grad_()
    s_ref, s = ref(x_ref), node(x_f)
    assert s.dtype == torch.float32 and torch.equal(s, s_ref) and 0.1 < s.mean() < 0.9
    assert torch.equal(node.v_seq, ref.v_seq)
    want = torch.autograd.grad((s_ref * g).sum(), [x_ref, *ref.parameters()])
    got = torch.autograd.grad((s * g).sum(), [x_f, *node.parameters()])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_glif_gradcheck_float64(backend):
    device = kernel_device(backend)
    node = _node(4, 2, backend, surrogate_function=Sigmoid(alpha=2.0, spiking=False))
    x = (torch.rand(4, 1, 2, dtype=F64, device=device) * 2).requires_grad_()
    values = [getattr(node, n).detach().clone().requires_grad_() for n in NAMES]

    def through(name):
        def f(x, *ps):
            node.backend, node.store_v_seq = name, True
            s = torch.func.functional_call(node, dict(zip(NAMES, ps)), (x,))
            return s, node.v_seq

        return f

    gradcheck_backend(backend, through(backend), (x, *values), through("torch"))


# -- against SpikingJelly ------------------------------------------------------------------


def _sj():
    return pytest.importorskip(
        "spikingjelly.activation_based.neuron", reason="SpikingJelly is not installed"
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("inplane", [None, 4])
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
def test_glif_equals_spikingjelly(backend, inplane, surrogate):
    sj_neuron = _sj()
    sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    device = kernel_device(backend)
    T = 16
    if surrogate == "sigmoid":
        ours_sg, theirs_sg = Sigmoid(), sj_surrogate.Sigmoid()
    else:
        ours_sg, theirs_sg = ATan(alpha=3.0), sj_surrogate.ATan(alpha=3.0)
    torch.manual_seed(0)
    theirs = sj_neuron.GatedLIFNode(T, inplane, surrogate_function=theirs_sg).double()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.8)
    theirs = theirs.to(device)
    ours = GatedLIFNode(T, inplane, surrogate_function=ours_sg, backend=backend).double()
    ours = ours.to(device)
    ours.load_state_dict(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    ours.store_v_seq = True
    x = torch.rand(T, 3, 4, 5, 5, dtype=F64, device=device) * 1.6 - 0.2
    g = torch.randn_like(x)
    x_sf, x_sj = x.clone().requires_grad_(), x.clone().requires_grad_()
    s_sf, s_sj = ours(x_sf), theirs(x_sj)
    assert torch.equal(s_sf, s_sj) and 0.1 < s_sf.mean() < 0.9
    torch.testing.assert_close(ours.v_seq[-1], theirs.v, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad((s_sf * g).sum(), [x_sf, *ours.parameters()])
    want = torch.autograd.grad((s_sj * g).sum(), [x_sj, *theirs.parameters()])
    for name, a, b in zip(["x", *NAMES], got, want, strict=True):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_glif_positional_arguments_and_initial_values_are_spikingjellys():
    sj_neuron = _sj()
    for args in [(8,), (8, 3), (6, 3, 0.02, 0.4, 0.3, 0.6, 0.7)]:
        theirs, ours = sj_neuron.GatedLIFNode(*args), GatedLIFNode(*args)
        mine = ours.state_dict()
        assert list(mine) == list(theirs.state_dict())
        for name, value in theirs.state_dict().items():
            assert mine[name].shape == value.shape, name
            if name in ("alpha", "beta", "gamma"):  # drawn: U(-0.1, 0.1) on both sides
                assert mine[name].abs().max() <= 0.1
            else:
                torch.testing.assert_close(mine[name], value, msg=name)
    ours = GatedLIFNode(5, 2, 0.02, 0.4, 0.3, 0.6, 0.7, Sigmoid(alpha=2.0), "s")
    assert ours.step_mode == "s" and ours.surrogate_function.alpha == 2.0
    assert GLIFNode is GatedLIFNode


# -- streaming, shapes, errors --------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_glif_streaming_and_single_step_equal_one_call(backend):
    device = kernel_device(backend)
    T = 12
    node = _node(T, 3, backend)
    torch.manual_seed(3)
    x = (torch.rand(T, 2, 3, 4, dtype=F64, device=device) * 1.6 - 0.2).requires_grad_()
    g = torch.randn_like(x)
    whole = node(x)
    (want,) = torch.autograd.grad((whole * g).sum(), [x])
    want_p = torch.autograd.grad((node(x) * g).sum(), list(node.parameters()))
    assert node.state is None  # not streaming: nothing carried
    assert torch.equal(node(x[:5]), whole[:5])  # a shorter sequence: the first conductances

    with F.streaming(node):
        parts = torch.cat([node(c) for c in x.split([4, 1, 7])])
        assert sorted(node.state) == ["spike", "v"]
        assert torch.equal(node.state["spike"], whole[-1])
        with pytest.raises(StateError, match="T=12"):
            node(x[:1])  # past T steps
    assert torch.equal(parts, whole)
    (got,) = torch.autograd.grad((parts * g).sum(), [x])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)

    F.set_step_mode(node, "s")
    with F.streaming(node):
        steps = torch.stack([node(x_t) for x_t in x])
    assert torch.equal(steps, whole)
    got_p = torch.autograd.grad((steps * g).sum(), list(node.parameters()))
    for a, b in zip(got_p, want_p, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with F.streaming(node):  # a reset starts again from conduct[0]
        assert torch.equal(torch.stack([node(x_t) for x_t in x[:3]]), whole[:3])


def test_glif_streaming_equals_the_loop_from_the_carried_state():
    node = _node(9, None, "torch")
    x = torch.rand(9, 2, 5, dtype=F64) * 1.6 - 0.2
    with F.streaming(node):
        first = node(x[:4])
        v, last = node.state["v"], node.state["spike"]
        second = node(x[4:])
    p = {n: t.detach() for n, t in _params(node).items()}
    s_ref, _, _ = glif_loop(x[4:], p, False, start=4, v=v, last=last)
    assert torch.equal(second, s_ref)
    assert torch.equal(torch.cat([first, second]), glif_loop(x, p, False)[0])


def test_glif_per_channel_parameters():
    node = _node(6, 4, "torch")
    for shape in [(6, 2, 4, 3, 3), (6, 2, 4), (6, 2, 4, 7)]:
        x = torch.rand(shape, dtype=F64) * 1.6 - 0.2
        s = node(x)
        assert s.shape == x.shape
        # channel c runs with channel c's parameters: a layer-wise node with them
        for c in range(4):
            single = GatedLIFNode(6, backend="torch").double()
            with torch.no_grad():
                for name in NAMES:
                    getattr(single, name).copy_(getattr(node, name)[..., c])
            assert torch.equal(single(x[:, :, c]), s[:, :, c])
    node.zero_grad()
    node(torch.rand(6, 2, 4, 3, 3, dtype=F64)).sum().backward()
    assert node.alpha.grad.shape == (4,) and node.conduct.grad.shape == (6, 4)
    with pytest.raises(ShapeError, match="inplane=4"):
        node(torch.rand(6, 2, 5, 3, 3, dtype=F64))
    with pytest.raises(ShapeError, match="inplane=4"):
        node(torch.rand(6, 2, dtype=F64))
    layer = GatedLIFNode(6)
    assert layer.alpha.shape == () and layer.conduct.shape == (6,)
    assert layer(torch.rand(6, 2, 3, 5, 5)).shape == (6, 2, 3, 5, 5)
    with pytest.raises(ShapeError, match="T=6"):
        layer(torch.rand(7, 2, 3))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"T": 0}, "T"),
        ({"T": 2.5}, "T"),
        ({"T": True}, "T"),
        ({"T": 4, "inplane": 0}, "inplane"),
        ({"T": 4, "inplane": "3"}, "inplane"),
        ({"T": 4, "init_tau": 1.0}, "init_tau"),
        ({"T": 4, "init_tau": 2.0}, "init_tau"),
        ({"T": 4, "init_v_threshold": 0.0}, "init_v_threshold"),
        ({"T": 4, "init_conduct": float("nan")}, "init_conduct"),
        ({"T": 4, "init_linear_decay": 1.5}, "init_linear_decay"),
        ({"T": 4, "init_v_subreset": -0.1}, "init_v_subreset"),
        ({"T": 4, "backend": "cupy"}, "backend"),
        ({"T": 4, "detach_reset": "yes"}, "detach_reset"),
    ],
)
def test_glif_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ConfigurationError, match=rf"\b{name}\b"):
        GatedLIFNode(**kwargs)


def test_glif_takes_no_threshold_or_reset_value():
    with pytest.raises(TypeError, match="v_threshold"):
        GatedLIFNode(4, v_threshold=1.0)  # its threshold is learned: init_v_threshold
    with pytest.raises(TypeError, match="v_reset"):
        GatedLIFNode(4, v_reset=0.0)


# -- the model zoo ----------------------------------------------------------------------------


def test_glif_is_a_model_zoo_neuron():
    assert NEURONS["glif"] is GatedLIFNode
    model = create_model("plif_nmnist", channels=4, neuron="glif", neuron_kwargs={"T": 3})
    glifs = [m for m in model.modules() if isinstance(m, GatedLIFNode)]
    assert len(glifs) == 4
    # the PLIF defaults' init_tau (2, a time constant) is not GLIF's; their ATan and
    # detach_reset are taken
    for node in glifs:
        assert node.T == 3 and node.detach_reset and isinstance(node.surrogate_function, ATan)
        torch.testing.assert_close(torch.sigmoid(node.tau), torch.tensor(0.25))
    with torch.no_grad():
        assert model(torch.rand(3, 1, 2, 34, 34)).shape == (3, 1, 10)
    chosen = create_model(
        "plif_nmnist", channels=4, neuron="glif", neuron_kwargs={"T": 3, "init_tau": 0.5}
    )
    node = next(m for m in chosen.modules() if isinstance(m, GatedLIFNode))
    torch.testing.assert_close(torch.sigmoid(node.tau), torch.tensor(0.5))
    with pytest.raises(ConfigurationError, match=r"needs the argument\(s\) \['T'\]"):
        create_model("plif_nmnist", channels=4, neuron="glif")
