"""snnTorch's alpha neuron (``AlphaNode``).

Hand-computed steps for the three reset mechanisms; spikes, every state and float64
gradients (input, learnable ``beta`` and threshold) equal to snnTorch 1.0's ``Alpha`` on
every backend (the reference loop, the C kernel, Triton), and with snnTorch's default
float32 ``atan()`` to float32 rounding; learnable ``alpha`` by gradcheck; why no
``CubaLIFNode`` mapping exists (its subthreshold membrane is the alpha one a step
earlier, its reset is not); float32 fused kernels equal to the reference loop; chunked
streaming and single-step equal to one call; the errors; the zoo's ``alpha``.
snnTorch's ``Lapicque`` is ``LapicqueNode`` (tests/test_neurons_snntorch_style.py).
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from snntorch_checks import atan64, f64
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.kernels import resolve_backend
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.models import NEURONS, create_model
from spikeflow.neurons import AlphaNode, CubaLIFNode
from spikeflow.surrogate import ATan, Sigmoid
from streaming_checks import check_chunked_streaming

BACKENDS = fused_backends("torch")
F64 = torch.float64
MECHANISMS = ("zero", "subtract", "none")


def snntorch_run(neuron, x):
    """A per-step snnTorch loop: spikes, membranes and the traces of every step."""
    outs = {"spk": [], "syn_exc": [], "syn_inh": [], "mem": []}
    state = ()
    for x_t in x:
        spk, *state = neuron(x_t, *state)
        for name, value in zip(outs, (spk, *state)):
            outs[name].append(value)
    return {name: torch.stack(values) for name, values in outs.items()}


# -- hand-computed steps ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "mechanism, spikes, membranes, exc, inh",
    [
        # alpha = 1/2, beta = 1/4: tau_a = ln 2 / (ln 4 - ln 2) + 1 = 2. X = [4, 0, 0, 0].
        # t0: E = 4, I = -4, U = 0;  t1: E = 2, I = -1, U = 2 fires;
        # zero: t2 clears E and I (U = 0); subtract: t2 U = 2 (1 - 0.25) + (-1) 1 = 0.5,
        # E = 1 - 1 = 0, I = 0; none: t2 E = 1, I = -1/4, U = 1.5 fires, t3 U = 0.875.
        ("zero", [0, 1, 0, 0], [0.0, 2.0, 0.0, 0.0], 0.0, 0.0),
        ("subtract", [0, 1, 0, 0], [0.0, 2.0, 0.5, 0.0], 0.0, 0.0),
        ("none", [0, 1, 1, 0], [0.0, 2.0, 1.5, 0.875], 0.5, -0.0625),
    ],
)
def test_hand_computed_steps(backend, mechanism, spikes, membranes, exc, inh):
    device = kernel_device(backend)
    node = AlphaNode(0.5, 0.25, reset_mechanism=mechanism, backend=backend, store_v_seq=True)
    node = node.double().to(device)
    x = torch.tensor([4.0, 0.0, 0.0, 0.0], dtype=F64, device=device).view(-1, 1)
    with F.streaming(node):
        s = node(x)
        final = (node.syn_exc.item(), node.syn_inh.item())
    assert s.view(-1).tolist() == spikes
    assert node.v_seq.view(-1).tolist() == pytest.approx(membranes, abs=1e-12)
    assert final == pytest.approx((exc, inh), abs=1e-12)


def test_state_and_repr():
    node = AlphaNode(0.9, 0.8)
    assert node.declaration().state_names == ("v", "syn_exc", "syn_inh", "last_spike")
    assert AlphaNode(reset_mechanism="none").declaration().state_names == (
        "v", "syn_exc", "syn_inh",
    )  # fmt: skip
    assert node.syn_exc is None and node.syn_inh is None  # not streaming
    assert "alpha=0.9, beta=0.8, reset_mechanism='zero'" in repr(node)
    params = node.neuron_params()
    want = math.log(0.9) / (math.log(0.8) - math.log(0.9)) + 1
    assert params["tau_alpha"].item() == pytest.approx(want, rel=1e-6)


# -- against snnTorch ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_equals_snntorch_alpha(backend, mechanism):
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    device = kernel_device(backend)
    torch.manual_seed(0)
    x = (torch.rand(CHECKPOINT + 20, 3, 7, dtype=F64) * 0.8 - 0.1).requires_grad_()
    theirs = snn.Alpha(
        alpha=f64(0.9), beta=f64(0.8), threshold=f64(1.0), spike_grad=atan64,
        reset_mechanism=mechanism, learn_beta=True, learn_threshold=True,
    )  # fmt: skip
    ref = snntorch_run(theirs, x)
    node = AlphaNode(
        f64(0.9), f64(0.8), reset_mechanism=mechanism, learn_beta=True, strict_firing=True,
        surrogate_function=ATan(), v_threshold=f64(1.0), learnable_threshold=True,
        store_v_seq=True, backend=backend,
    ).double().to(device)  # fmt: skip
    xx = x.detach().to(device).requires_grad_()
    with F.streaming(node):
        s = node(xx)
        exc, inh = node.syn_exc, node.syn_inh
    assert torch.equal(s.detach().cpu(), ref["spk"].detach()), "spikes differ from snnTorch's"
    assert 0.05 < ref["spk"].mean().item() < 0.9
    torch.testing.assert_close(node.v_seq.detach().cpu(), ref["mem"].detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(exc.detach().cpu(), ref["syn_exc"][-1].detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(inh.detach().cpu(), ref["syn_inh"][-1].detach(), atol=1e-12, rtol=0)
    torch.manual_seed(1)
    g = torch.randn_like(x)
    loss_ref = (ref["spk"] * g).sum() + ref["mem"].sum()
    loss = (s * g.to(device)).sum() + node.v_seq.sum()
    want = torch.autograd.grad(loss_ref, [x, theirs.beta, theirs.threshold])
    got = torch.autograd.grad(loss, [xx, node.beta, node.v_threshold])
    for name, a, b in zip(("x", "beta", "threshold"), got, want):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a.cpu(), b, atol=1e-10, rtol=1e-10, msg=name)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_equals_snntorch_default_atan_in_float32(mechanism):
    """snnTorch's own ``atan()`` returns float32 spikes: the rest to float32 rounding."""
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    torch.manual_seed(2)
    x = (torch.rand(30, 4, 16) * 0.8 - 0.1).requires_grad_()
    ref = snntorch_run(snn.Alpha(alpha=0.85, beta=0.7, reset_mechanism=mechanism), x)
    node = AlphaNode(0.85, 0.7, reset_mechanism=mechanism, strict_firing=True,
                     surrogate_function=ATan(), store_v_seq=True)  # fmt: skip
    xx = x.detach().clone().requires_grad_()
    s = node(xx)
    assert torch.equal(s, ref["spk"]) and ref["spk"].sum() > 0
    torch.testing.assert_close(node.v_seq, ref["mem"], atol=1e-6, rtol=1e-6)
    (want,) = torch.autograd.grad(ref["spk"].sum(), x)
    (got,) = torch.autograd.grad(s.sum(), xx)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_gradcheck(backend, mechanism):
    """float64 gradcheck of spikes and membranes with respect to the input, the
    threshold, ``alpha`` and ``beta`` (through ``tau_alpha``: what ``learn_alpha``
    trains), on a smooth surrogate."""
    device = kernel_device(backend)
    node = AlphaNode(reset_mechanism=mechanism, surrogate_function=Sigmoid(2.0, spiking=False))
    decl, rule = node.declaration(), node.firing_rule
    torch.manual_seed(3)
    x = (torch.rand(8, 3, dtype=F64, device=device) * 1.5).requires_grad_()
    theta = f64(0.6).to(device).requires_grad_()
    alpha = torch.tensor([0.9, 0.8, 0.95], dtype=F64, device=device).requires_grad_()
    beta = f64(0.5).to(device).requires_grad_()

    def through(name):
        runner = resolve_backend(name, x)

        def outputs(x, theta, alpha, beta):
            node.alpha, node.beta = alpha, beta
            params = node.neuron_params()
            if "theta" in params:
                params["theta"] = theta
            state = dict.fromkeys(decl.state_names, 0.0)
            spikes, _, v_seq = runner(decl, x, state, params, theta, rule, True)
            return spikes, v_seq

        return outputs

    gradcheck_backend(backend, through(backend), (x, theta, alpha, beta), through("torch"))


def test_learn_alpha_trains_alpha():
    node = AlphaNode(0.9, 0.5, learn_alpha=True, learn_beta=True)
    assert {n for n, _ in node.named_parameters()} == {"alpha", "beta"}
    node(torch.rand(10, 2, 4) * 2).sum().backward()
    assert node.alpha.grad.abs() > 0 and node.beta.grad.abs() > 0


def test_no_cuba_lif_mapping():
    """Below threshold, ``U`` is ``CubaLIFNode``'s membrane one step earlier
    (``tau_syn = 1/(1 - alpha)``, ``tau_mem = 1/(1 - beta)``, ``r = tau_a (alpha - beta)
    tau_syn tau_mem``): the alpha neuron sees an input one step late. At a spike the two
    part: snnTorch clears both traces and the next input, CubaLIF resets its membrane
    and keeps its current, so no mapping gives the spikes (hard or soft reset)."""
    alpha, beta = 0.9, 0.7
    tau_a = math.log(alpha) / (math.log(beta) - math.log(alpha)) + 1
    tau_syn, tau_mem = 1 / (1 - alpha), 1 / (1 - beta)
    cuba = dict(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_a * (alpha - beta) * tau_syn * tau_mem)
    torch.manual_seed(4)
    x = torch.rand(40, 3, 5, dtype=F64)
    node = AlphaNode(f64(alpha), f64(beta), reset_mechanism="none", store_v_seq=True)
    node(x)
    silent = CubaLIFNode(**cuba, v_threshold=1e9, store_v_seq=True).double()
    silent(x)
    assert (node.v_seq[0] == 0).all()  # U[0] holds no X[0]
    torch.testing.assert_close(node.v_seq[1:], silent.v_seq[:-1], atol=1e-12, rtol=1e-12)
    delayed = torch.cat([torch.zeros_like(x[:1]), x[:-1]])
    spikes = AlphaNode(f64(alpha), f64(beta), strict_firing=True)(x)
    assert spikes.sum() > 10
    for v_reset in (0.0, None):
        for strict in (False, True):
            node = CubaLIFNode(**cuba, v_reset=v_reset, strict_firing=strict).double()
            assert not torch.equal(node(delayed), spikes)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_float32_fused_kernels_equal_the_reference(backend, mechanism):
    device = kernel_device(backend)
    torch.manual_seed(5)
    x = torch.rand(CHECKPOINT + 3, 4, 33, device=device) * 0.8
    g = torch.randn_like(x)
    grads, spikes = [], []
    for name in ("torch", backend):
        node = _make(name, mechanism, torch.float32).to(device)
        xx = x.clone().requires_grad_()
        s = node(xx)
        spikes.append(s.detach())
        grads.append(torch.autograd.grad((s * g).sum(), [xx, node.beta, node.v_threshold]))
    assert torch.equal(spikes[1], spikes[0])
    assert 0.05 < spikes[0].mean().item() < 0.9
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)


# -- streaming -------------------------------------------------------------------------------


def _make(backend, mechanism="zero", dtype=F64):
    return AlphaNode(
        torch.tensor(0.9), torch.tensor(0.75), reset_mechanism=mechanism, learn_beta=True,
        v_threshold=torch.tensor(0.8), learnable_threshold=True, backend=backend,
    ).to(dtype)  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_chunked_streaming_equals_one_call(backend, mechanism):
    device = kernel_device(backend)
    torch.manual_seed(6)
    x = torch.rand(CHECKPOINT + 7, 2, 5, dtype=F64, device=device)
    whole, _ = check_chunked_streaming(lambda: _make(backend, mechanism).to(device), x, "beta")
    assert whole.sum() > 0


def test_single_step_equals_multi_step():
    node = _make("auto")
    x = torch.rand(12, 2, 5, dtype=F64)
    multi = node(x)
    assert torch.equal(node(x), multi)  # each multi-step call starts at rest
    F.set_step_mode(node, "s")
    with F.streaming(node):
        single = torch.stack([node(x_t) for x_t in x])
    assert torch.equal(multi, single) and multi.sum() > 0


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"reset_mechanism": "hard"}, ConfigurationError, r"reset_mechanism must be one of"),
        ({"alpha": 0.5, "beta": 0.6}, ConfigurationError, "alpha must be greater than beta"),
        ({"alpha": 0.5, "beta": 0.5}, ConfigurationError, "alpha must be greater than beta"),
        ({"alpha": 1.2}, ConfigurationError, r"0 < beta < alpha <= 1"),
        ({"beta": 0.0}, ConfigurationError, r"0 < beta < alpha <= 1"),
        ({"alpha": float("nan")}, ConfigurationError, "alpha must be finite"),
        ({"beta": "0.5"}, ConfigurationError, "beta must be a float or a tensor"),
        ({"alpha": torch.tensor(1)}, DTypeError, "alpha must be a floating-point tensor"),
        ({"learn_beta": 1}, ConfigurationError, "learn_beta must be True or False"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        AlphaNode(**kwargs)


def test_no_v_reset_or_detach_reset():
    with pytest.raises(TypeError, match="v_reset"):
        AlphaNode(v_reset=0.0)
    with pytest.raises(ShapeError, match=r"AlphaNode: alpha of shape \(4,\) does not broadcast"):
        AlphaNode(torch.full((4,), 0.9))(torch.rand(3, 2, 5))


def test_zoo_name():
    assert NEURONS["alpha"] is AlphaNode
    model = create_model("plif_digits", neuron="alpha", neuron_kwargs={"alpha": 0.8, "beta": 0.5})
    nodes = [m for m in model.modules() if isinstance(m, AlphaNode)]
    assert nodes and all(n.alpha.item() == pytest.approx(0.8) for n in nodes)
    assert all(isinstance(n.surrogate_function, ATan) for n in nodes)  # the model's default
    with torch.no_grad():
        assert model(torch.rand(4, 2, 1, 8, 8)).shape == (4, 2, 10)
