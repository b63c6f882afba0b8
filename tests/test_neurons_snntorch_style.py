"""snnTorch's ``Leaky``, ``Synaptic`` and ``Lapicque`` as spikeflow neurons
(``LeakyNode``, ``SynapticNode``, ``LapicqueNode``).

Hand-computed steps (the delayed and the immediate reset, snnTorch's "avoid double
reset", Synaptic's kept current, Lapicque's cleared input); spikes, membranes, synaptic
currents and float64 gradients (input, per-neuron ``alpha``/``beta``, threshold) equal
to snnTorch 1.0's for the three reset mechanisms with either ``reset_delay``, on the
reference loop, the C kernel and Triton (its interpreter without a GPU); the defaults
(``atan()``, float32, scalar ``beta``); graded spikes; float64 gradcheck of every
declaration on every backend and float32 kernels equal to the reference; chunked
streaming; snnTorch state dicts loaded by name; ``RLeaky``/``RSynaptic`` as
``layers.Recurrent`` / ``ElementWiseRecurrentContainer`` compositions; the errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from snntorch_checks import atan64, f64
from spikeflow import functional as F
from spikeflow import layers
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.kernels import resolve_backend
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.models import NEURONS, create_model
from spikeflow.neurons import LapicqueNode, LeakyNode, LIFNode, SynapticNode
from spikeflow.surrogate import ATan, LeakyKReLU, Sigmoid
from streaming_checks import check_chunked_streaming

F64 = torch.float64
BACKENDS = fused_backends("torch")
_TRITON = BACKENDS[-1]  # pytest.param("triton", marks=skip unless installed)
#: (reset_mechanism, reset_delay): "none" has no reset to delay.
CONFIGS = [("subtract", True), ("subtract", False), ("zero", True), ("zero", False), ("none", True)]
CONFIG_IDS = [f"{m}-{'delay' if d else 'now'}" for m, d in CONFIGS]

snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")


def snn_run(cell, x, n_states=1):
    """snnTorch's per-step loop: the spikes, and each returned state of every step."""
    outs, states = [], None
    for x_t in x:
        result = cell(x_t) if states is None else cell(x_t, *states)
        outs.append(result)
        states = result[1 : 1 + n_states]
    return [torch.stack(values) for values in zip(*outs)]


# -- hand-computed steps ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, x, spikes, membranes",
    [
        # beta 1/2, θ 1. Delayed subtract: U = 1.5 fires, next U = 0.75 + 0 - 1 = -0.25.
        ({}, [1.5, 0.0, 0.0], [1, 0, 0], [1.5, -0.25, -0.125]),
        # Immediate: V = 1.5 - 1 = 0.5 at once, then 0.25, 0.125.
        ({"reset_delay": False}, [1.5, 0.0, 0.0], [1, 0, 0], [0.5, 0.25, 0.125]),
        # Immediate, 5 in: U = 5 fires, V = 4 > θ; next R = 1: U = 2 + 0 - 1 = 1 does not
        # fire (U > θ), V = U - (0 - 1) θ = 2 (snnTorch's "avoid double reset").
        ({"reset_delay": False}, [5.0, 0.0, 0.0], [1, 0, 0], [4.0, 2.0, 1.0]),
        # Delayed zero keeps the input of the step after a spike: U = 0 + 0.5.
        ({"reset_mechanism": "zero"}, [1.5, 0.5, 0.0], [1, 0, 0], [1.5, 0.5, 0.25]),
        (
            {"reset_mechanism": "zero", "zero_clears_input": True},
            [1.5, 0.5, 0.0],
            [1, 0, 0],
            [1.5, 0.0, 0.0],
        ),
        (
            {"reset_mechanism": "zero", "reset_delay": False},
            [1.5, 0.5, 0.0],
            [1, 0, 0],
            [0.0, 0.5, 0.25],
        ),
        ({"reset_mechanism": "none"}, [1.5, 0.0, 0.0], [1, 0, 0], [1.5, 0.75, 0.375]),
        # U = θ exactly: no spike (U > θ), unless strict_firing=False (then reset too).
        ({}, [0.5, 0.75, 0.0], [0, 0, 0], [0.5, 1.0, 0.5]),
        ({"strict_firing": False}, [0.5, 0.75, 0.0], [0, 1, 0], [0.5, 1.0, -0.5]),
    ],
)
def test_leaky_hand_computed(kwargs, x, spikes, membranes):
    node = LeakyNode(f64(0.5), store_v_seq=True, backend="torch", **kwargs)
    s = node(torch.tensor(x, dtype=F64).view(-1, 1))
    assert s.view(-1).tolist() == spikes
    assert node.v_seq.view(-1).tolist() == membranes


def test_synaptic_and_lapicque_hand_computed():
    # alpha 1/2, beta 1/2: I = 2, U = 2 fires; zero: I = 1 + 0 = 1 kept, U = (1 + 1) 0 = 0.
    node = SynapticNode(f64(0.5), f64(0.5), reset_mechanism="zero", store_v_seq=True,
                        backend="torch")  # fmt: skip
    with F.streaming(node):
        s = node(torch.tensor([[2.0], [0.0], [0.0]], dtype=F64))
        assert node.syn.item() == 0.5 and node.state["v"].item() == 0.5  # U = 0 / 2 + 0.5
    assert s.view(-1).tolist() == [1, 0, 0] and node.v_seq.view(-1).tolist() == [2.0, 0.0, 0.5]
    # Lapicque R = 2, C = 1, dt = 1: k = 1/2, U = U/2 + X; zero clears the next input too.
    node = LapicqueNode(R=f64(2.0), C=f64(1.0), reset_mechanism="zero", store_v_seq=True,
                        backend="torch")  # fmt: skip
    s = node(torch.tensor([[1.5], [1.0], [0.5]], dtype=F64))
    assert s.view(-1).tolist() == [1, 0, 0] and node.v_seq.view(-1).tolist() == [1.5, 0.0, 0.5]


# -- against snnTorch ------------------------------------------------------------------------


def _input(device, steps, shape=(2, 5), scale=1.6):
    torch.manual_seed(1)
    return (torch.rand(steps, *shape, dtype=F64) * scale - 0.2).to(device)


def _steps(backend):
    """Enough steps for the C kernel's checkpointed backward; few for the interpreter."""
    return 8 if backend == "triton" else CHECKPOINT + 4


BETA = [0.9, 0.5, 0.7, 1.0, 0.3]  # per neuron, one at the clamp's edge
ALPHA = [0.6, 0.2, 0.9, 0.0, 0.5]


def _learned_past_the_clamp(*modules, **values):
    """As training may leave them (construction refuses it): both sides clamp when used."""
    with torch.no_grad():
        for module in modules:
            for name, value in values.items():
                getattr(module, name)[3] = value


def _compare(got, want, spikes_rate=True):
    for name, a, b in zip(("spikes", *[f"state {i}" for i in range(len(got))]), got, want):
        if name == "spikes":
            assert torch.equal(a.detach().cpu(), b.detach()), "spikes differ from snnTorch's"
            if spikes_rate:
                assert 0.05 < b.mean().item() < 0.9, "too few or too many spikes to compare"
        else:
            torch.testing.assert_close(a.detach().cpu(), b.detach(), atol=1e-12, rtol=0, msg=name)


def _check_grads(loss, loss_ref, ours, theirs):
    got = torch.autograd.grad(loss, ours)
    want = torch.autograd.grad(loss_ref, theirs)
    for i, (a, b) in enumerate(zip(got, want)):
        assert b.abs().sum() > 0, f"gradient {i} is zero"
        torch.testing.assert_close(a.cpu(), b, atol=1e-10, rtol=1e-10, msg=f"gradient {i}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mechanism, delay", CONFIGS, ids=CONFIG_IDS)
def test_leaky_equals_snntorch(backend, mechanism, delay):
    device = kernel_device(backend)
    x = _input("cpu", _steps(backend)).requires_grad_()
    theirs = snn.Leaky(
        beta=f64(BETA), threshold=f64(1.1), spike_grad=atan64, reset_mechanism=mechanism,
        reset_delay=delay, learn_beta=True, learn_threshold=True,
    )  # fmt: skip
    node = LeakyNode(
        f64(BETA), threshold=f64(1.1), reset_mechanism=mechanism, reset_delay=delay,
        learn_beta=True, learn_threshold=True, store_v_seq=True, backend=backend,
    ).to(device)  # fmt: skip
    _learned_past_the_clamp(theirs, node, beta=1.25)
    spk, mem = snn_run(theirs, x)
    xx = x.detach().to(device).requires_grad_()
    s = node(xx)
    _compare((s, node.v_seq), (spk, mem))
    g = torch.randn_like(x)
    _check_grads(
        (s * g.to(device)).sum() + node.v_seq.sum(), (spk * g).sum() + mem.sum(),
        [xx, node.beta, node.v_threshold], [x, theirs.beta, theirs.threshold],
    )  # fmt: skip


#: Each C kernel is compiled once (about 0.5 s on 2 cores): three of Synaptic's five there.
SYNAPTIC_CASES = [
    pytest.param(backend, *config, id=f"{name}-{backend}", marks=marks)
    for config, name in zip(CONFIGS, CONFIG_IDS)
    for backend, marks in (("torch", ()), ("cpu", ()), ("triton", _TRITON.marks))
    if backend != "cpu" or name in ("subtract-now", "zero-delay", "none-delay")
]


@pytest.mark.parametrize("backend, mechanism, delay", SYNAPTIC_CASES)
def test_synaptic_equals_snntorch(backend, mechanism, delay):
    device = kernel_device(backend)
    x = _input("cpu", _steps(backend), scale=0.8).requires_grad_()
    theirs = snn.Synaptic(
        alpha=f64(ALPHA), beta=f64(BETA), threshold=f64(1.1), spike_grad=atan64,
        reset_mechanism=mechanism, reset_delay=delay, learn_alpha=True, learn_beta=True,
        learn_threshold=True,
    )  # fmt: skip
    node = SynapticNode(
        f64(ALPHA), f64(BETA), threshold=f64(1.1), reset_mechanism=mechanism,
        reset_delay=delay, learn_alpha=True, learn_beta=True, learn_threshold=True,
        store_v_seq=True, backend=backend,
    ).to(device)  # fmt: skip
    _learned_past_the_clamp(theirs, node, alpha=-0.3, beta=1.25)
    spk, syn, mem = snn_run(theirs, x, 2)
    xx = x.detach().to(device).requires_grad_()
    with F.streaming(node):
        s = node(xx)
        last_syn = node.syn
    _compare((s, node.v_seq, last_syn), (spk, mem, syn[-1]))
    g = torch.randn_like(x)
    _check_grads(
        (s * g.to(device)).sum() + node.v_seq.sum(), (spk * g).sum() + mem.sum(),
        [xx, node.alpha, node.beta, node.v_threshold],
        [x, theirs.alpha, theirs.beta, theirs.threshold],
    )  # fmt: skip


LAPICQUE = [{"R": 2.0, "C": 2.5, "time_step": 0.5}, {"beta": 0.8}, {"beta": 0.8, "C": 3.0}]


@pytest.mark.parametrize("mechanism", ["subtract", "zero", "none"])
@pytest.mark.parametrize("case", range(len(LAPICQUE)))
def test_lapicque_equals_snntorch(mechanism, case):
    """The three ways of giving the constants, on the reference loop; the C kernel for
    the first's resets."""
    backend = "cpu" if case == 0 and mechanism != "none" else "torch"
    kw = {key: f64(value) for key, value in LAPICQUE[case].items()}
    x = _input("cpu", CHECKPOINT + 4, scale=2.5).requires_grad_()
    theirs = snn.Lapicque(**kw, threshold=f64(1.0), spike_grad=atan64,
                          reset_mechanism=mechanism, learn_threshold=True)  # fmt: skip
    spk, mem = snn_run(theirs, x)
    node = LapicqueNode(**kw, threshold=f64(1.0), reset_mechanism=mechanism,
                        learn_threshold=True, store_v_seq=True, backend=backend)  # fmt: skip
    xx = x.detach().clone().requires_grad_()
    s = node(xx)
    assert torch.equal(s, spk) and 0.05 < spk.mean().item() < 0.9
    torch.testing.assert_close(node.v_seq, mem, atol=1e-12, rtol=1e-12)
    g = torch.randn_like(x)
    _check_grads(
        (s * g).sum() + node.v_seq.sum(), (spk * g).sum() + mem.sum(),
        [xx, node.v_threshold], [x, theirs.threshold],
    )  # fmt: skip


def test_defaults_are_snntorchs_in_float32():
    """``snn.Leaky(beta=0.8)`` and ``LeakyNode(0.8)``: a scalar float ``beta`` (a float32
    tensor in both), snnTorch's own ``atan()`` (float32 spikes), subtract, delayed."""
    x = (torch.rand(30, 4, 16) * 1.5 - 0.2).requires_grad_()
    theirs = snn.Leaky(beta=0.8)
    spk, mem = snn_run(theirs, x)
    node = LeakyNode(0.8, store_v_seq=True)
    assert isinstance(node.surrogate_function, ATan) and node.strict_firing
    assert node.beta.dtype == torch.float32 and node.beta.shape == ()
    xx = x.detach().clone().requires_grad_()
    s = node(xx)
    assert torch.equal(s, spk) and 0.05 < spk.mean().item() < 0.9
    torch.testing.assert_close(node.v_seq, mem, atol=1e-6, rtol=1e-6)
    (want,) = torch.autograd.grad(spk.sum() + mem.sum(), x)
    (got,) = torch.autograd.grad(s.sum() + node.v_seq.sum(), xx)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("delay", [True, False])
def test_graded_spikes_equal_snntorch(delay):
    x = _input("cpu", 12).requires_grad_()
    theirs = snn.Leaky(beta=f64(0.7), spike_grad=atan64, reset_delay=delay,
                       graded_spikes_factor=f64(2.5), learn_graded_spikes_factor=True)  # fmt: skip
    spk, mem = snn_run(theirs, x)
    node = LeakyNode(f64(0.7), reset_delay=delay, graded_spikes_factor=f64(2.5),
                     learn_graded_spikes_factor=True, store_v_seq=True,
                     backend="torch")  # fmt: skip
    xx = x.detach().clone().requires_grad_()
    s = node(xx)
    assert torch.equal(s, spk) and set(s.unique().tolist()) == {0.0, 2.5}
    torch.testing.assert_close(node.v_seq, mem, atol=1e-12, rtol=0)
    g = torch.randn_like(x)
    _check_grads(
        (s * g).sum() + node.v_seq.sum(), (spk * g).sum() + mem.sum(),
        [xx, node.graded_spikes_factor], [x, theirs.graded_spikes_factor],
    )  # fmt: skip
    plain, doubled = (LeakyNode(0.7, graded_spikes_factor=f, backend="torch") for f in (1.0, 2.0))
    assert torch.equal(doubled(x.detach()), 2 * plain(x.detach()))


# -- the kernels against the reference loop --------------------------------------------------


def _declared(kind, mechanism, delay):
    """A neuron of each kind with a smooth surrogate (``spiking=False``: gradcheck)."""
    smooth = Sigmoid(2.0, spiking=False)
    if kind in ("leaky", "rleaky"):  # rleaky: zero_clears_input (RLeaky's "zero")
        return LeakyNode(0.8, reset_mechanism=mechanism, reset_delay=delay,
                         zero_clears_input=kind == "rleaky", surrogate_function=smooth)  # fmt: skip
    if kind == "synaptic":
        return SynapticNode(0.5, 0.8, reset_mechanism=mechanism, reset_delay=delay,
                            surrogate_function=smooth)  # fmt: skip
    return LapicqueNode(R=2.0, C=2.0, reset_mechanism=mechanism, surrogate_function=smooth)


GRADCHECK = [("leaky", m, d) for m, d in CONFIGS] + [
    ("rleaky", "zero", True), ("synaptic", "subtract", False), ("synaptic", "zero", True),
    ("synaptic", "none", True), ("lapicque", "subtract", True), ("lapicque", "zero", True),
]  # fmt: skip
#: Every reset rule on the C kernel (each compiled once, ~0.5 s), one of each neuron on
#: Triton's interpreter (slow).
CPU_GRADCHECK = [GRADCHECK[i] for i in (1, 3, 5, 6, 7, 10)]
TRITON_GRADCHECK = [GRADCHECK[i] for i in (1, 2, 6, 10)]


@pytest.mark.parametrize(
    "backend, kind, mechanism, delay",
    [("cpu", *case) for case in CPU_GRADCHECK]
    + [pytest.param("triton", *case, marks=_TRITON.marks) for case in TRITON_GRADCHECK],
    ids=lambda v: str(v),
)
def test_gradcheck(backend, kind, mechanism, delay):
    """float64 gradcheck of spikes and membranes with respect to the input, the
    threshold and the per-neuron decays, on every backend."""
    device = kernel_device(backend)
    node = _declared(kind, mechanism, delay)
    decl, rule = node.declaration(), node.firing_rule
    x = (torch.rand(6, 1, 3, dtype=F64, device=device) * 1.6).requires_grad_()
    theta = f64(0.7).to(device).requires_grad_()
    decays = {
        name: torch.tensor([0.9, 0.6, 0.75], dtype=F64, device=device).requires_grad_()
        for name in decl.param_names
        if name in ("alpha", "beta", "keep", "gain")
    }

    def through(name):
        runner = resolve_backend(name, x)

        def outputs(x, theta, *values):
            params = dict(zip(decays, values))
            if "theta" in decl.param_names:
                params["theta"] = theta
            state = dict.fromkeys(decl.state_names, 0.0)
            spikes, _, v_seq = runner(decl, x, state, params, theta, rule, True)
            return spikes, v_seq

        return outputs

    inputs = (x, theta, *decays.values())
    gradcheck_backend(backend, through(backend), inputs, through("torch"))


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("mechanism, delay", [CONFIGS[3]], ids=[CONFIG_IDS[3]])
def test_float32_kernels_equal_the_reference(backend, mechanism, delay):
    device = kernel_device(backend)
    x = torch.rand(CHECKPOINT + 3, 4, 33, device=device) * 0.9
    g = torch.randn_like(x)
    spikes, grads = [], []
    for name in ("torch", backend):
        node = SynapticNode(
            torch.tensor([0.5] * 33), 0.75, threshold=0.8, reset_mechanism=mechanism,
            reset_delay=delay, learn_alpha=True, learn_beta=True, learn_threshold=True,
            backend=name,
        ).to(device)  # fmt: skip
        xx = x.clone().requires_grad_()
        s = node(xx)
        spikes.append(s)
        params = [xx, node.alpha, node.beta, node.v_threshold]
        grads.append(torch.autograd.grad((s * g).sum(), params))
    assert torch.equal(spikes[1], spikes[0]) and 0.05 < spikes[0].mean().item() < 0.9
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(
    "kind, backend", [("leaky", "torch"), ("leaky", "cpu"), ("synaptic", "torch")]
)
def test_chunked_streaming_equals_one_call(kind, backend):
    """The immediate reset's pending ``R`` is carried between chunks like the membrane."""
    x = _input("cpu", CHECKPOINT + 7, scale=2.0 if kind == "leaky" else 1.0)

    def make():
        common = dict(threshold=f64(1.1), learn_threshold=True, learn_beta=True,
                      reset_delay=False, backend=backend)  # fmt: skip
        if kind == "leaky":  # (the configuration of test_leaky_equals_snntorch: its kernel)
            return LeakyNode(f64(BETA), **common)
        return SynapticNode(f64(ALPHA), f64(BETA), learn_alpha=True, **common)

    whole, _ = check_chunked_streaming(make, x, "beta")
    assert whole.sum() > 0


# -- snnTorch state dicts --------------------------------------------------------------------


def test_snntorch_state_dict_loads_by_name():
    theirs = snn.Leaky(beta=torch.tensor([0.3, 0.6, 0.9]), threshold=0.7, learn_beta=True,
                       learn_threshold=True)  # fmt: skip
    with torch.no_grad():
        theirs.beta.add_(0.05)
        theirs.threshold.add_(0.1)
    node = LeakyNode(torch.zeros(3), learn_beta=True, learn_threshold=True, backend="torch")
    node.load_state_dict(theirs.state_dict())  # strict: every key is read
    assert torch.equal(node.beta, theirs.beta) and torch.equal(node.v_threshold, theirs.threshold)
    assert {n for n, _ in node.named_parameters()} == {"beta", "v_threshold"}
    x = torch.rand(10, 2, 3) * 2
    assert torch.equal(node(x), snn_run(theirs, x)[0])
    # constants here (a float threshold, the default graded factor) are compared
    plain = snn.Leaky(beta=0.5, threshold=0.9, reset_mechanism="zero").state_dict()
    LeakyNode(0.1, threshold=0.9, reset_mechanism="zero").load_state_dict(plain)
    with pytest.raises(RuntimeError, match=r"threshold: the state dict holds 0\.9"):
        LeakyNode(0.1, threshold=1.0, reset_mechanism="zero").load_state_dict(plain)
    with pytest.raises(RuntimeError, match=r"resets by 'zero'.*this LeakyNode by 'subtract'"):
        LeakyNode(0.1, threshold=0.9).load_state_dict(plain)
    syn = snn.Synaptic(alpha=0.4, beta=0.6, learn_alpha=True).state_dict()
    node = SynapticNode(0.0, 0.0, learn_alpha=True)
    node.load_state_dict(syn)
    assert node.alpha.item() == pytest.approx(0.4) and node.beta.item() == pytest.approx(0.6)
    # spikeflow's own names round-trip
    again = LeakyNode(torch.zeros(3), learn_beta=True, learn_threshold=True)
    again.load_state_dict(LeakyNode(torch.full((3,), 0.5), learn_beta=True,
                                    learn_threshold=True).state_dict())  # fmt: skip
    assert torch.equal(again.beta, torch.full((3,), 0.5))
    # and back into snnTorch: v_threshold is its threshold; its reset_mechanism_val and
    # graded_spikes_factor (a float here unless a tensor or learned) added
    mine = {("threshold" if k == "v_threshold" else k): v for k, v in again.state_dict().items()}
    back = snn.Leaky(beta=torch.zeros(3), learn_beta=True, learn_threshold=True)
    extra = {"reset_mechanism_val": torch.tensor(0), "graded_spikes_factor": torch.tensor(1.0)}
    back.load_state_dict({**mine, **extra})
    assert torch.equal(back.beta, again.beta) and torch.equal(back.threshold, again.v_threshold)


def test_surrogate_disable_is_a_zero_surrogate():
    """snnTorch's ``surrogate_disable=True`` (a plain ``x > 0``): the same spikes and
    gradients as ``surrogate_function=LeakyKReLU(leak=0.0, k=0.0)`` (none through them)."""
    x = _input("cpu", 12).requires_grad_()
    spk, mem = snn_run(snn.Leaky(beta=f64(0.7), surrogate_disable=True), x)
    node = LeakyNode(f64(0.7), surrogate_function=LeakyKReLU(leak=0.0, k=0.0),
                     store_v_seq=True, backend="torch")  # fmt: skip
    xx = x.detach().clone().requires_grad_()
    s = node(xx)
    assert torch.equal(s, spk.to(F64)) and 0.05 < spk.mean().item() < 0.9
    g = torch.randn_like(x)
    (want,) = torch.autograd.grad((spk * g).sum() + mem.sum(), x)
    (got,) = torch.autograd.grad((s * g).sum() + node.v_seq.sum(), xx)
    assert want.abs().sum() > 0
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_snntorch_lapicque_state_dict_loads():
    theirs = snn.Lapicque(R=3.0, C=0.5, time_step=0.5, reset_mechanism="zero")
    node = LapicqueNode(R=1.0, C=1.0, reset_mechanism="zero", backend="torch")
    node.load_state_dict(theirs.state_dict())
    assert (node.R.item(), node.C.item(), node.time_step.item()) == (3.0, 0.5, 0.5)
    x = torch.rand(20, 2, 4) * 3
    assert torch.equal(node(x), snn_run(theirs, x)[0])


# -- RLeaky and RSynaptic: compositions --------------------------------------------------------


def _recurrent_run(cell, x, n_states):
    """snnTorch's loop for RLeaky/RSynaptic: the spikes go back in with the states."""
    out, states = [], None
    for x_t in x:
        result = cell(x_t) if states is None else cell(x_t, *states)
        states = result[: 1 + n_states]
        out.append(result[0])
    return torch.stack(out)


@pytest.mark.parametrize("mechanism, delay", CONFIGS, ids=CONFIG_IDS)
def test_rleaky_is_recurrent_leaky(mechanism, delay):
    n = 6
    theirs = snn.RLeaky(beta=f64(0.7), linear_features=n, spike_grad=atan64,
                        reset_mechanism=mechanism, reset_delay=delay).double()  # fmt: skip
    with torch.no_grad():
        theirs.recurrent.weight.mul_(2.0)
    theirs.graded_spikes_factor = torch.ones(1, dtype=F64)  # float64 spikes into the Linear
    cell = LeakyNode(f64(0.7), reset_mechanism=mechanism, reset_delay=delay,
                     zero_clears_input=True, step_mode="s", backend="torch")  # fmt: skip
    ours = layers.Recurrent(cell, n, bias=True).double()
    ours.recurrent.load_state_dict(theirs.recurrent.state_dict())
    x = _input("cpu", 16, (3, n), 1.4).requires_grad_()
    want = _recurrent_run(theirs, x, 1)
    xx = x.detach().clone().requires_grad_()
    got = ours(xx)
    assert torch.equal(got, want) and 0.05 < want.mean().item() < 0.9
    g = torch.randn_like(x)
    _check_grads((got * g).sum(), (want * g).sum(), [xx, ours.recurrent.weight],
                 [x, theirs.recurrent.weight])  # fmt: skip
    if mechanism == "zero" and delay:  # Leaky's own "zero" keeps the input: not RLeaky's
        plain = LeakyNode(f64(0.7), reset_mechanism="zero", step_mode="s", backend="torch")
        other = layers.Recurrent(plain, n, bias=True).double()
        other.recurrent.load_state_dict(theirs.recurrent.state_dict())
        assert not torch.equal(other(x.detach()), want)


class OneToOne(nn.Module):
    """RLeaky's ``all_to_all=False`` feedback: ``x + V * spikes``, ``V`` learnable."""

    def __init__(self, V):
        super().__init__()
        self.V = nn.Parameter(torch.as_tensor(V))

    def forward(self, x, y):
        return x + self.V * y


def test_rleaky_one_to_one_is_an_elementwise_recurrence():
    theirs = snn.RLeaky(beta=f64(0.6), V=f64([0.5, -0.4, 0.9, 0.2]), all_to_all=False,
                        spike_grad=atan64)  # fmt: skip
    theirs.graded_spikes_factor = torch.ones(1, dtype=F64)
    ours = layers.ElementWiseRecurrentContainer(
        LeakyNode(f64(0.6), step_mode="s", backend="torch"), OneToOne(f64([0.5, -0.4, 0.9, 0.2]))
    )
    x = _input("cpu", 16, (3, 4), 1.2).requires_grad_()
    want = _recurrent_run(theirs, x, 1)
    xx = x.detach().clone().requires_grad_()
    got = ours(xx)
    assert torch.equal(got, want) and 0.05 < want.mean().item() < 0.9
    g = torch.randn_like(x)
    _check_grads((got * g).sum(), (want * g).sum(), [xx, ours.element_wise_function.V],
                 [x, theirs.V])  # fmt: skip


@pytest.mark.parametrize("mechanism", ["subtract", "zero"])
def test_rsynaptic_is_recurrent_synaptic(mechanism):
    """``RSynaptic`` is ``Recurrent(SynapticNode)``. Its ``reset_delay=False`` computes
    the immediate reset into a local variable it drops (and, without the states passed
    in, divides None on the first step): snnTorch 1.0 runs it as the delayed reset."""
    n = 5
    x = _input("cpu", 16, (3, n), 0.9).requires_grad_()
    runs = []
    for delay in (True, False):
        torch.manual_seed(2)
        theirs = snn.RSynaptic(alpha=f64(0.5), beta=f64(0.7), linear_features=n,
                               spike_grad=atan64, reset_mechanism=mechanism,
                               reset_delay=delay).double()  # fmt: skip
        theirs.graded_spikes_factor = torch.ones(1, dtype=F64)
        if not delay:
            with pytest.raises(TypeError):
                theirs(x[0])
        zeros = torch.zeros(3, n, dtype=F64)
        out, states = [], (zeros, zeros, zeros)
        for x_t in x:
            states = theirs(x_t, *states)
            out.append(states[0])
        runs.append((theirs, torch.stack(out)))
    theirs, want = runs[0]
    assert torch.equal(runs[1][1], want) and 0.05 < want.mean().item() < 0.9
    ours = layers.Recurrent(
        SynapticNode(f64(0.5), f64(0.7), reset_mechanism=mechanism, step_mode="s", backend="torch"),
        n,
        bias=True,
    ).double()
    ours.recurrent.load_state_dict(theirs.recurrent.state_dict())
    xx = x.detach().clone().requires_grad_()
    got = ours(xx)
    assert torch.equal(got, want)
    g = torch.randn_like(x)
    _check_grads((got * g).sum(), (want * g).sum(), [xx, ours.recurrent.bias],
                 [x, theirs.recurrent.bias])  # fmt: skip


# -- configuration and errors ----------------------------------------------------------------


def test_state_names_and_repr():
    assert LeakyNode(0.9).declaration().state_names == ("v",)
    assert LeakyNode(0.9, reset_delay=False).declaration().state_names == ("v", "reset")
    assert SynapticNode(0.5, 0.9, reset_mechanism="none", reset_delay=False).declaration(
    ).state_names == ("v", "syn")  # fmt: skip
    assert LeakyNode(0.9).declaration() is LeakyNode(0.5).declaration()  # built once
    assert repr(LeakyNode(0.9, reset_delay=False, learn_threshold=True)).startswith(
        "LeakyNode(\n  beta=0.9, threshold=1, reset_mechanism='subtract', reset_delay=False, "
        "learn_threshold=True"
    )
    node = LapicqueNode(beta=0.9)  # R = 1, k = ln(1/beta)
    assert node.k.item() == pytest.approx(math.log(1 / 0.9), rel=1e-6)
    assert "R=1, C=9.49" in repr(node)
    assert set(dict(LeakyNode(0.9, learn_beta=True).named_parameters())) == {"beta"}


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: LeakyNode(0.9, reset_mechanism="hard"), ConfigurationError,
         r"reset_mechanism must be one of \('subtract', 'zero', 'none'\)"),
        (lambda: LeakyNode(1.2), ConfigurationError, r"beta must be in \[0, 1\]"),
        (lambda: SynapticNode(-0.1, 0.5), ConfigurationError, r"alpha must be in \[0, 1\]"),
        (lambda: LeakyNode(float("nan")), ConfigurationError, "beta must be finite"),
        (lambda: LeakyNode("0.9"), ConfigurationError, "beta must be a float or a tensor"),
        (lambda: LeakyNode(torch.tensor(1)), DTypeError, "beta must be a floating-point"),
        (lambda: LeakyNode(0.9, learn_beta=1), ConfigurationError, "learn_beta must be True"),
        (lambda: LeakyNode(0.9, reset_delay="no"), ConfigurationError, "reset_delay must be"),
        (lambda: LeakyNode(0.9, graded_spikes_factor="2"), ConfigurationError,
         "graded_spikes_factor must be a float"),
        (lambda: LapicqueNode(), ConfigurationError, "give R and C, or beta"),
        (lambda: LapicqueNode(R=1.0), ConfigurationError, "give R and C, or beta"),
        (lambda: LapicqueNode(beta=0.9, R=1.0, C=1.0), ConfigurationError, "at most two"),
        (lambda: LapicqueNode(beta=1.0), ConfigurationError, r"beta must be in \(0, 1\)"),
        (lambda: LapicqueNode(R=-1.0, C=1.0), ConfigurationError, "R must be > 0"),
        (lambda: LapicqueNode(R=1.0, C=1.0, time_step=0.0), ConfigurationError,
         "time_step must be > 0"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_zoo_network_takes_the_class():
    """The class, with ``beta``, builds the neurons, as its zoo name ``"leaky"`` does
    with snnTorch's documented 0.9 (tests/test_models_zoo_neurons.py)."""
    model = create_model("plif_digits", neuron=LeakyNode, neuron_kwargs={"beta": 0.9})
    nodes = [m for m in model.modules() if isinstance(m, LeakyNode)]
    assert nodes and all(n.beta.item() == pytest.approx(0.9) for n in nodes)
    with torch.no_grad():
        assert model(torch.rand(4, 2, 1, 8, 8)).shape == (4, 2, 10)
    assert NEURONS["leaky"].func is LeakyNode


def test_per_neuron_shape_is_checked():
    with pytest.raises(ShapeError, match=r"LeakyNode: beta of shape \(4,\) does not broadcast"):
        LeakyNode(torch.full((4,), 0.9))(torch.rand(3, 2, 5))
    with pytest.raises(ShapeError, match=r"LapicqueNode: R of shape \(4,\) does not broadcast"):
        LapicqueNode(R=torch.ones(4), C=1.0)(torch.rand(3, 2, 5))
    with pytest.raises(TypeError, match="v_reset"):
        LeakyNode(0.9, v_reset=0.0)


@pytest.mark.parametrize("make", [lambda: LeakyNode(beta=0.9), lambda: LIFNode()])
def test_snntorch_style_state_argument_is_refused_with_the_way_to_carry_state(make):
    neuron = make()
    with pytest.raises(ConfigurationError, match=r"after x.*lif\.run\(x, state\)"):
        neuron(torch.rand(3, 2, 4), torch.zeros(2, 4))
    # the documented replacement: state in, state out
    out, state = neuron.run(torch.rand(3, 2, 4), None)
    assert out.shape == (3, 2, 4) and state is not None
