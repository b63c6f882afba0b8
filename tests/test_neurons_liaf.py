"""The leaky integrate-and-analog-fire neuron ``LIAFNode`` against SpikingJelly 2.0.

Hand-computed outputs; outputs, membranes (every step and the last) and float64
gradients of the input and of a learnable threshold equal to SpikingJelly's
``LIAFNode`` on every backend (the reference loop, the C kernel, Triton), for hard and
soft reset, ``decay_input``, ``detach_reset`` and ``threshold_related`` both ways;
gradcheck of the declaration on every backend; chunked streaming and single-step equal
to one call; the errors.
"""

from __future__ import annotations

import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.kernels import resolve_backend
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.neurons import LIAFNode
from spikeflow.surrogate import ATan, Sigmoid
from streaming_checks import check_chunked_streaming

sj_neuron = pytest.importorskip(
    "spikingjelly.activation_based.neuron",
    reason="SpikingJelly (installed by scripts/setup.sh test) is needed",
)
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

BACKENDS = fused_backends("torch")
F64 = torch.float64


# -- hand-computed ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("threshold_related", [False, True])
def test_hand_computed(backend, threshold_related):
    # tau 2, θ 1, hard reset to 0, the identity as act. X = [2.5, 0.5]:
    # H0 = 2.5 / 2 = 1.25 fires, V0 = 0; H1 = 0 + 0.5 / 2 = 0.25, no spike.
    # Y = H (or H - θ: [0.25, -0.75]); the membrane after reset [0, 0.25].
    device = kernel_device(backend)
    node = LIAFNode(lambda h: h, threshold_related, backend=backend, store_v_seq=True)
    node = node.double().to(device)
    with F.streaming(node):
        y = node(torch.tensor([2.5, 0.5], dtype=F64, device=device).view(-1, 1))
        assert node.v.item() == 0.25 and node.state["spike"].item() == 0.0
    assert y.view(-1).tolist() == ([0.25, -0.75] if threshold_related else [1.25, 0.25])
    assert node.v_seq.view(-1).tolist() == [0.0, 0.25]


def test_state_and_repr():
    node = LIAFNode(torch.nn.ReLU(), True, tau=3.0)
    assert node.v is None  # not streaming
    assert node.declaration().state_names == ("v", "spike")
    text = repr(node)
    assert "act=ReLU, threshold_related=True, tau=3" in text and "v_reset=0.0" in text
    assert "act=tanh" in repr(LIAFNode(torch.tanh, False))


# -- against SpikingJelly --------------------------------------------------------------------

CASES = [
    # (v_reset, decay_input, detach_reset, threshold_related, act, surrogate)
    (0.0, True, False, True, "relu", "sigmoid"),  # SpikingJelly's defaults
    (None, False, False, False, "tanh", "atan"),
    (-0.3, False, True, False, "relu", "sigmoid"),
    (None, True, True, True, "sigmoid", "atan"),
]
ACTS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
SURROGATES = {
    "sigmoid": (lambda: Sigmoid(alpha=4.0), lambda: sj_surrogate.Sigmoid(alpha=4.0)),
    "atan": (lambda: ATan(alpha=2.0), lambda: sj_surrogate.ATan(alpha=2.0)),
}


def _sequence() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(CHECKPOINT + 7, 3, 8, dtype=F64) * 2.4 - 0.2  # two C-kernel segments


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_equals_spikingjelly(backend, case):
    v_reset, decay_input, detach_reset, related, act, surrogate = case
    common = dict(tau=3.0, decay_input=decay_input, v_reset=v_reset, detach_reset=detach_reset)
    sf_sg, sj_sg = SURROGATES[surrogate]
    device = kernel_device(backend)
    ours = LIAFNode(ACTS[act](), related, surrogate_function=sf_sg(), backend=backend,
                    store_v_seq=True, **common).double().to(device)  # fmt: skip
    ours.v_threshold = torch.nn.Parameter(torch.tensor(0.9, dtype=F64, device=device))
    theirs = sj_neuron.LIAFNode(ACTS[act](), related, surrogate_function=sj_sg(), step_mode="m",
                                store_v_seq=True, **common)  # fmt: skip
    theirs.v_threshold = torch.tensor(0.9, dtype=F64, requires_grad=True)
    x = _sequence()
    x_sj, x_sf = x.clone().requires_grad_(), x.to(device).requires_grad_()
    with F.streaming(ours):
        y = ours(x_sf)
        v_last = ours.v
    y_sj = theirs(x_sj)
    torch.testing.assert_close(y.detach().cpu(), y_sj.detach(), atol=1e-13, rtol=0)
    torch.testing.assert_close(ours.v_seq.detach().cpu(), theirs.v_seq.detach(), atol=1e-13, rtol=0)
    torch.testing.assert_close(v_last.detach().cpu(), theirs.v.detach(), atol=1e-13, rtol=0)
    torch.manual_seed(1)
    g, gv = torch.randn_like(x), torch.randn_like(x)
    # (with a hard, detached reset and act(H), θ does not reach the output: no gradient)
    want = torch.autograd.grad((y_sj * g).sum() + (theirs.v_seq * gv).sum(),
                               [x_sj, theirs.v_threshold], allow_unused=True)  # fmt: skip
    loss = (y * g.to(device)).sum() + (ours.v_seq * gv.to(device)).sum()
    got = torch.autograd.grad(loss, [x_sf, ours.v_threshold], allow_unused=True)
    assert want[0].abs().sum() > 0 and (want[1] is None) == (v_reset is not None and detach_reset
                                                               and not related)  # fmt: skip
    for name, a, b in zip(("x", "v_threshold"), got, want):
        if b is None:
            assert a is None or not a.any(), name
            continue
        torch.testing.assert_close(a.cpu(), b, atol=1e-12, rtol=1e-10, msg=name)


def test_the_reset_fires_at_the_spikingjelly_rate():
    """The sequences of the comparison spike on some steps and not others (so the
    reset's branches are both exercised), and the output is not the spikes."""
    x = _sequence()
    node = LIAFNode(torch.nn.ReLU(), True, tau=3.0, v_threshold=0.9, store_v_seq=True).double()
    y = node(x)
    fired = node.v_seq == 0.0  # a hard reset to 0
    assert 0.1 < fired.double().mean().item() < 0.6
    assert not torch.equal(y, fired.to(y.dtype))


# -- kernels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_gradcheck(backend, v_reset):
    """float64 gradcheck of the spikes, the charged membranes (what the output reads)
    and the last spike with respect to the input and the threshold (which the soft
    reset reads as a parameter too), on a smooth surrogate (Triton's interpreter:
    gradcheck's fast mode)."""
    device = kernel_device(backend)
    node = LIAFNode(torch.relu, True, v_reset=v_reset,
                    surrogate_function=Sigmoid(alpha=2.0, spiking=False))  # fmt: skip
    decl, rule, params = node.declaration(), node.firing_rule, node.neuron_params()
    torch.manual_seed(2)
    fast = backend == "triton"
    x = (torch.rand(3 if fast else 6, 3, dtype=F64, device=device) * 2.0).requires_grad_()
    theta = torch.tensor(0.8, dtype=F64, device=device).requires_grad_()
    runner = resolve_backend(backend, x)

    def outputs(x, theta):
        values = {**params, "theta": theta} if v_reset is None else params
        spikes, final, h_seq = runner(decl, x, node.initial_values(), values, theta, rule, True)
        return spikes, h_seq, final["spike"]

    assert torch.autograd.gradcheck(outputs, (x, theta), fast_mode=fast)


# -- streaming -------------------------------------------------------------------------------


def _make(backend):
    return LIAFNode(torch.nn.Tanh(), True, v_reset=None, v_threshold=torch.tensor(0.8),
                    learnable_threshold=True, backend=backend).double()  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_streaming_equals_one_call(backend):
    device = kernel_device(backend)
    torch.manual_seed(4)
    split = (3, 4, 5) if backend == "triton" else (5, 9, 9)  # the interpreter is slow
    x = torch.rand(sum(split), 2, 3, dtype=F64, device=device) * 2.0
    make = lambda: _make(backend).to(device)  # noqa: E731
    whole, _ = check_chunked_streaming(make, x, "v_threshold", split)
    assert whole.abs().sum() > 0


def test_single_step_equals_multi_step_and_no_state_leaks():
    node = _make("auto")
    x = torch.rand(12, 2, 3, dtype=F64) * 2.0
    multi = node(x)
    assert torch.equal(node(x), multi)  # the second call starts at rest again
    F.set_step_mode(node, "s")
    with F.streaming(node):
        single = torch.stack([node(x_t) for x_t in x])
    assert torch.equal(multi, single)


def test_act_by_name_is_that_function():
    """``act="tanh"`` (a configuration file's or the zoo's ``--neuron-kwargs``) is
    ``act=torch.tanh``."""
    from spikeflow.neurons.liaf import LIAF_ACTIVATIONS

    x = torch.randn(5, 2, 3) * 2
    for name in ("tanh", "leaky_relu"):
        by_name, by_function = LIAFNode(name, False), LIAFNode(LIAF_ACTIVATIONS[name], False)
        assert by_name.act is LIAF_ACTIVATIONS[name] and f"act={name}," in repr(by_name)
        assert torch.equal(by_name(x), by_function(x))
    assert LIAF_ACTIVATIONS["tanh"] is torch.tanh


# -- errors ----------------------------------------------------------------------------------


def test_bad_arguments_are_named():
    with pytest.raises(ConfigurationError, match=r"act must be a callable .* got int"):
        LIAFNode(3, True)
    with pytest.raises(ConfigurationError, match=r"act 'relu6' is not a known .* relu, leaky"):
        LIAFNode("relu6", True)
    with pytest.raises(ConfigurationError, match="threshold_related"):
        LIAFNode(torch.relu, 1)
    with pytest.raises(ConfigurationError, match="tau must be a finite number > 1"):
        LIAFNode(torch.relu, True, tau=1.0)
    with pytest.raises(ConfigurationError, match="decay_input"):
        LIAFNode(torch.relu, True, decay_input="yes")
    node = LIAFNode(lambda h: h.sum(-1), False)
    with pytest.raises(
        ShapeError, match=r"act must return a tensor of the shape of its input \(8, 3\)"
    ):
        node(torch.rand(4, 2, 3))
