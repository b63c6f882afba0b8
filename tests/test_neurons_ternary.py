"""The ternary neurons ``TernaryIFNode`` and ``TernaryLIFNode`` against SpikingJelly 2.0.

Hand-computed signed spikes and membranes; spikes, membranes (every step and the last)
and float64 input gradients equal to SpikingJelly's for IF and LIF (both
``decay_input``), hard reset to 0 and to a non-zero value, signed soft reset,
``detach_reset`` both ways, multi-step and single-step, and the continuous
(``spiking=False``) mode; float64 gradcheck through the loop; streaming; the errors.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

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


def test_hand_computed_hard_and_soft_reset():
    # IF, θ = 1. X = [1.5, -0.7, -0.6, 0.2] (one neuron).
    # hard reset to 0: H = 1.5 fires +1, V = 0; H = -0.7, V = -0.7; H = -1.3 fires -1,
    # V = 0; H = 0.2, V = 0.2.
    x = torch.tensor([1.5, -0.7, -0.6, 0.2], dtype=F64).view(-1, 1)
    node = TernaryIFNode(store_v_seq=True)
    assert node(x).view(-1).tolist() == [1.0, 0.0, -1.0, 0.0]
    torch.testing.assert_close(node.v_seq.view(-1), torch.tensor([0.0, -0.7, 0.0, 0.2], dtype=F64))
    # signed soft reset: V = 1.5 - 1 = 0.5; -0.2; -0.8; -0.6 (no -1: |H| < θ throughout)
    node = TernaryIFNode(v_reset=None, store_v_seq=True)
    assert node(x).view(-1).tolist() == [1.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(
        node.v_seq.view(-1), torch.tensor([0.5, -0.2, -0.8, -0.6], dtype=F64)
    )
    # both thresholds are inclusive; strict_firing makes them exclusive
    edge = torch.tensor([[1.0, -1.0]])
    assert TernaryIFNode()(edge).tolist() == [[1.0, -1.0]]
    assert TernaryIFNode(strict_firing=True)(edge).tolist() == [[0.0, 0.0]]


def _pair(kind, v_reset, detach_reset, step_mode, spiking=True):
    ours_sg, sj_sg = Sigmoid(spiking=spiking), sj_surrogate.Sigmoid(spiking=spiking)
    if kind == "if":
        args = (1.0, v_reset)
        return (TernaryIFNode(*args, ours_sg, detach_reset, step_mode, True),
                sj_neuron.TernaryIFNode(*args, sj_sg, detach_reset, step_mode, True))  # fmt: skip
    decay_input = kind == "lif"
    args = (3.0, decay_input, 0.8, v_reset)
    return (TernaryLIFNode(*args, ours_sg, detach_reset, step_mode, True),
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
    without ``detach_reset``."""
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


@pytest.mark.parametrize("v_reset", [0.2, None])
def test_gradcheck_float64(v_reset):
    """The loop's gradients are the derivatives of its forward: gradcheck on a smooth
    (``spiking=False``) surrogate, through the output and the membranes."""
    node = TernaryLIFNode(tau=2.5, v_reset=v_reset, store_v_seq=True,
                          surrogate_function=ATan(alpha=1.0, spiking=False))  # fmt: skip
    x = (torch.randn(5, 2, 3, dtype=F64) * 2.0).requires_grad_()

    def outputs(x):
        return node(x), node.v_seq

    assert torch.autograd.gradcheck(outputs, (x,))


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
        TernaryIFNode(v_threshold=torch.tensor(1.0))
    with pytest.raises(ConfigurationError, match=r"v_reset must be a float strictly between"):
        TernaryIFNode(v_reset=-1.0)
    with pytest.raises(ConfigurationError, match=r"v_reset must be a float strictly between"):
        TernaryLIFNode(v_threshold=0.5, v_reset=0.6)
    with pytest.raises(ConfigurationError, match="tau must be a finite number > 1"):
        TernaryLIFNode(tau=1.0)
    with pytest.raises(ConfigurationError, match="decay_input must be True or False"):
        TernaryLIFNode(decay_input=1)
    with pytest.raises(ConfigurationError, match="detach_reset must be True or False"):
        TernaryIFNode(detach_reset="no")
    with pytest.raises(ConfigurationError, match="surrogate_function must be a spikeflow"):
        TernaryIFNode(surrogate_function=torch.sigmoid)
