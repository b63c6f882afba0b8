"""The ternary neurons ``TernaryIFNode`` and ``TernaryLIFNode`` against SpikingJelly 2.0.

Hand-computed signed spikes and membranes; spikes, membranes (every step and the last)
and float64 input gradients equal to SpikingJelly's for IF and LIF (both
``decay_input``), hard reset to 0 and to a non-zero value, signed soft reset,
``detach_reset`` both ways, multi-step and single-step, and the continuous
(``spiking=False``) mode, on the reference loop; the fused C and Triton kernels (their
fire rule declared: ``fire`` of the declaration) equal to the reference loop and to
SpikingJelly, in float64 and float32; float64 gradcheck of every backend, a learnable
threshold included; streaming; the errors.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, StateError
from spikeflow.neurons import TernaryIFNode, TernaryLIFNode
from spikeflow.surrogate import ATan, Sigmoid
from spikeflow.training import SpikeMonitor

sj_neuron = pytest.importorskip(
    "spikingjelly.activation_based.neuron", reason="SpikingJelly is needed for the comparisons"
)
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
sj_functional = pytest.importorskip("spikingjelly.activation_based.functional")

F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)
FUSED = fused_backends()


def test_hand_computed_hard_and_soft_reset():
    # IF, θ = 1. X = [1.5, -0.7, -0.6, 0.2] (one neuron).
    # hard reset to 0: H = 1.5 fires +1, V = 0; H = -0.7, V = -0.7; H = -1.3 fires -1,
    # V = 0; H = 0.2, V = 0.2.
    # (the reference loop: the kernels are checked against it below)
    x = torch.tensor([1.5, -0.7, -0.6, 0.2], dtype=F64).view(-1, 1)
    node = TernaryIFNode(store_v_seq=True, backend="torch")
    assert node(x).view(-1).tolist() == [1.0, 0.0, -1.0, 0.0]
    torch.testing.assert_close(node.v_seq.view(-1), torch.tensor([0.0, -0.7, 0.0, 0.2], dtype=F64))
    # signed soft reset: V = 1.5 - 1 = 0.5; -0.2; -0.8; -0.6 (no -1: |H| < θ throughout)
    node = TernaryIFNode(v_reset=None, store_v_seq=True, backend="torch")
    assert node(x).view(-1).tolist() == [1.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(
        node.v_seq.view(-1), torch.tensor([0.5, -0.2, -0.8, -0.6], dtype=F64)
    )
    # both thresholds are inclusive; strict_firing makes them exclusive
    edge = torch.tensor([[1.0, -1.0]])
    assert TernaryIFNode(backend="torch")(edge).tolist() == [[1.0, -1.0]]
    assert TernaryIFNode(strict_firing=True, backend="torch")(edge).tolist() == [[0.0, 0.0]]


def _pair(kind, v_reset, detach_reset, step_mode, spiking=True, backend="torch"):
    ours_sg, sj_sg = Sigmoid(spiking=spiking), sj_surrogate.Sigmoid(spiking=spiking)
    if kind == "if":
        args = (1.0, v_reset)
        return (TernaryIFNode(*args, ours_sg, detach_reset, step_mode, True, backend=backend),
                sj_neuron.TernaryIFNode(*args, sj_sg, detach_reset, step_mode, True))  # fmt: skip
    decay_input = kind == "lif"
    args = (3.0, decay_input, 0.8, v_reset)
    return (TernaryLIFNode(*args, ours_sg, detach_reset, step_mode, True, backend=backend),
            sj_neuron.TernaryLIFNode(*args, sj_sg, detach_reset, step_mode, True))  # fmt: skip


def _run(node, x, step_mode):
    if step_mode == "m":
        return node(x), node.v_seq
    ours = isinstance(node, TernaryIFNode)  # SpikingJelly's carries its state always
    with F.streaming(node) if ours else contextlib.nullcontext():
        steps = [(node(x_t), node.v) for x_t in x]
    return torch.stack([s for s, _ in steps]), torch.stack([v for _, v in steps])


@pytest.mark.parametrize("kind", ["if", "lif", "lif_no_decay_input"])
@pytest.mark.parametrize("v_reset", [0.0, 0.3, None])
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_equal_to_spikingjelly(float64, kind, v_reset, step_mode):
    """Spikes, membranes after reset and input gradients (through both), with and
    without ``detach_reset``, on the reference loop."""
    torch.manual_seed(1)
    x = torch.randn(12, 3, 5) * (1.5 if kind == "if" else 3.0)
    g, gv = torch.randn_like(x), torch.randn_like(x)
    for detach_reset in (False, True):
        ours, theirs = _pair(kind, v_reset, detach_reset, step_mode)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        s1, v1 = _run(ours, x1, step_mode)
        s2, v2 = _run(theirs, x2, step_mode)
        assert torch.equal(s1, s2) and torch.equal(v1, v2)
        assert 0.05 < (s1 == 1).double().mean() < 0.6 and 0.05 < (s1 == -1).double().mean() < 0.6
        (g1,) = torch.autograd.grad((s1 * g).sum() + (v1 * gv).sum(), x1)
        (g2,) = torch.autograd.grad((s2 * g).sum() + (v2 * gv).sum(), x2)
        assert g1.abs().sum() > 0
        torch.testing.assert_close(g1, g2, **TIGHT)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize(("kind", "v_reset"),
                         [("if", 0.3), ("lif", None), ("lif_no_decay_input", 0.0)])  # fmt: skip
def test_fused_kernels_equal_the_reference_and_spikingjelly(float64, backend, kind, v_reset):
    """The kernels generated from the declared fire rule (two thresholds, each with the
    surrogate derivative; the hard reset's event ``P + N``): spikes and membranes
    identical to the reference loop's and SpikingJelly's, input gradients equal, with
    and without ``detach_reset``."""
    device = kernel_device(backend)
    torch.manual_seed(3)
    x = torch.randn(10, 2, 4) * (1.5 if kind == "if" else 3.0)
    g, gv = torch.randn_like(x), torch.randn_like(x)
    for detach_reset in (False, True):
        fused, theirs = _pair(kind, v_reset, detach_reset, "m", backend=backend)
        reference, _ = _pair(kind, v_reset, detach_reset, "m")
        runs = []
        for node, on in ((fused.to(device), device), (reference, "cpu"), (theirs, "cpu")):
            xi = x.to(on).requires_grad_()
            s = node(xi)
            (grad,) = torch.autograd.grad((s * g.to(on)).sum() + (node.v_seq * gv.to(on)).sum(), xi)
            runs.append((s.cpu(), node.v_seq.cpu(), grad.cpu()))
        (s1, v1, g1), (s2, v2, g2), (s3, v3, g3) = runs
        assert torch.equal(s1, s2) and torch.equal(s1, s3)
        assert torch.equal(v1, v2) and torch.equal(v1, v3)
        assert (s1 == 1).any() and (s1 == -1).any() and g1.abs().sum() > 0
        torch.testing.assert_close(g1, g2, **TIGHT)
        torch.testing.assert_close(g1, g3, **TIGHT)


@pytest.mark.parametrize("backend", FUSED)
def test_fused_kernels_float32_spikes_identical(backend):
    """In float32 too: the kernels compute what the reference loop computes, in its
    order (the spikes and membranes bit for bit); ``strict_firing`` in the kernels."""
    device = kernel_device(backend)
    torch.manual_seed(4)
    x = torch.randn(16, 3, 8) * 3.0
    out = []
    for b, on in ((backend, device), ("torch", "cpu")):
        node = TernaryLIFNode(tau=2.5, v_threshold=0.7, store_v_seq=True, backend=b).to(on)
        xi = x.to(on).requires_grad_()
        s = node(xi)
        (grad,) = torch.autograd.grad((s * torch.cos(xi)).sum(), xi)
        out.append((s.cpu(), node.v_seq.cpu(), grad.cpu()))
    (s1, v1, g1), (s2, v2, g2) = out
    assert torch.equal(s1, s2) and torch.equal(v1, v2) and (s1 == -1).any()
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6)
    # both thresholds inclusive, or exclusive with strict_firing, in the kernels too
    edge = torch.tensor([[1.0, -1.0, 0.5]], device=device)
    assert TernaryIFNode(backend=backend)(edge).tolist() == [[1.0, -1.0, 0.0]]
    assert TernaryIFNode(strict_firing=True, backend=backend)(edge).tolist() == [[0.0, 0.0, 0.0]]


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_continuous_mode_equal_to_spikingjelly(float64, v_reset):
    """``spiking=False``: the surrogate's primitive for both thresholds and the reset."""
    x = torch.randn(8, 4, 3) * 2.0
    ours, theirs = _pair("lif", v_reset, False, "m", spiking=False)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    s1, s2 = ours(x1), theirs(x2)
    torch.testing.assert_close(s1, s2, **TIGHT)
    torch.testing.assert_close(ours.v_seq, theirs.v_seq, **TIGHT)
    assert not torch.equal(s1, s1.round())  # continuous
    g = torch.randn_like(x)
    torch.testing.assert_close(torch.autograd.grad((s1 * g).sum(), x1)[0],
                               torch.autograd.grad((s2 * g).sum(), x2)[0], **TIGHT)  # fmt: skip


# Both resets on the reference loop and the C kernel; Triton's interpreter (slow) the hard.
TRITON = [pytest.param(p.values[0], 0.2, marks=p.marks) for p in FUSED[1:]]


@pytest.mark.parametrize(
    ("backend", "v_reset"), [("torch", 0.2), ("torch", None), ("cpu", 0.2), ("cpu", None), *TRITON]
)
def test_gradcheck_float64(backend, v_reset):
    """Every backend's gradients are the derivatives of its forward: gradcheck on a
    smooth (``spiking=False``) surrogate, through the output and the membranes, of the
    input and of a learnable threshold (both thresholds move with it)."""
    device = kernel_device(backend)
    torch.manual_seed(5)
    x = (torch.randn(5, 2, 3, dtype=F64) * 2.0).to(device).requires_grad_()
    theta = torch.tensor(0.9, dtype=F64, device=device).requires_grad_()

    def outputs(x, theta, backend=backend):
        smooth = ATan(alpha=1.0, spiking=False)
        node = TernaryLIFNode(tau=2.5, v_threshold=theta.detach(), v_reset=v_reset,
                              surrogate_function=smooth, store_v_seq=True, backend=backend,
                              learnable_threshold=True)  # fmt: skip
        spikes = torch.func.functional_call(node.to(device), {"v_threshold": theta}, (x,))
        return spikes, node.v_seq

    gradcheck_backend(backend, outputs, (x, theta), lambda x, t: outputs(x, t, "torch"))


def test_streaming_run_and_no_state_leak():
    x = torch.randn(10, 2, 3, dtype=F64) * 2.0
    node = TernaryLIFNode(v_reset=None)
    whole = node(x)
    assert torch.equal(node(x), whole)  # a second call starts at rest again
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn_like(x)
    with F.streaming(node):
        chunks = torch.cat([node(chunk) for chunk in x2.split([3, 3, 4])])
    assert torch.equal(chunks, whole)
    (g_chunks,) = torch.autograd.grad((chunks * g).sum(), x2)
    torch.testing.assert_close(g_chunks, torch.autograd.grad((node(x1) * g).sum(), x1)[0], **TIGHT)
    out, state = node.run(x[:4])
    rest, _ = node.run(x[4:], state)
    assert torch.equal(torch.cat([out, rest]), whole) and set(state) == {"v"}
    single = TernaryIFNode(step_mode="s")
    with pytest.raises(StateError, match="single-step mode"):
        single(x[0])
    assert "tau=2, decay_input=True, v_threshold=1, v_reset=None" in repr(node)


def test_spike_monitor_counts_signed_spikes_as_events():
    # One step: +1, -1, 0 and +1 spikes; the membrane after the hard reset is 0, 0, 0.2, 0.
    node = TernaryIFNode()
    x = torch.tensor([[[1.5, -1.5, 0.2, 1.0]]])
    with SpikeMonitor(torch.nn.Sequential(node), membrane=True) as monitor:
        assert torch.equal(node(x), torch.tensor([[[1.0, -1.0, 0.0, 1.0]]]))
        (stats,) = monitor.summary()
    assert stats.name == "0" and stats.spikes == 3.0 and stats.firing_rate == 0.75
    assert stats.spikes_per_sample == 3.0 and stats.neurons == 4
    assert stats.v_mean == pytest.approx(0.05) and node.v_seq is None  # claimed, then dropped


def test_bad_arguments_are_named():
    with pytest.raises(ConfigurationError, match=r"v_threshold must be a finite float > 0"):
        TernaryIFNode(v_threshold=0.0)
    with pytest.raises(ConfigurationError, match=r"v_threshold must be a finite float > 0"):
        TernaryIFNode(v_threshold=float("inf"))
    with pytest.raises(ConfigurationError, match=r"v_threshold must be > 0 .* got tensor"):
        TernaryIFNode(v_threshold=torch.tensor([1.0, -0.5]))
    with pytest.raises(ConfigurationError, match=r"v_reset must be strictly between"):
        TernaryIFNode(v_reset=-1.0)
    with pytest.raises(ConfigurationError, match=r"v_reset must be strictly between"):
        TernaryIFNode(v_threshold=torch.tensor([1.0, 0.4]), v_reset=-0.5)
    with pytest.raises(ConfigurationError, match=r"v_threshold \(0.5\) must be above v_reset"):
        TernaryLIFNode(v_threshold=0.5, v_reset=0.6)
    with pytest.raises(ConfigurationError, match="unknown backend 'gpu'"):
        TernaryIFNode(backend="gpu")
    with pytest.raises(ConfigurationError, match="tau must be a finite number > 1"):
        TernaryLIFNode(tau=1.0)
    with pytest.raises(ConfigurationError, match="decay_input must be True or False"):
        TernaryLIFNode(decay_input=1)
    with pytest.raises(ConfigurationError, match="detach_reset must be True or False"):
        TernaryIFNode(detach_reset="no")
    with pytest.raises(ConfigurationError, match="surrogate_function must be a spikeflow"):
        TernaryIFNode(surrogate_function=torch.sigmoid)
