"""snnTorch's ``inhibition=True`` on ``LeakyNode``, ``SynapticNode``, ``LapicqueNode`` and
``AlphaNode``: only the neuron with the largest ``U - θ`` of each sample may fire at
each step.

Hand-computed steps (the winner below the threshold, a tie, a loser over the threshold
reset all the same); spikes, membranes and float64 gradients equal to snnTorch 1.0's
(``fire_inhibition``) for every reset rule (Alpha's too), on the reference loop (the only one that
runs it), and inside ``layers.Recurrent`` as ``RLeaky(inhibition=True)``; the errors.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from snntorch_checks import atan64, f64
from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.neurons import AlphaNode, LapicqueNode, LeakyNode, SynapticNode
from spikeflow.surrogate import ATan

F64 = torch.float64
CONFIGS = [("subtract", True), ("subtract", False), ("zero", True), ("zero", False), ("none", True)]
CONFIG_IDS = [f"{m}-{'delay' if d else 'now'}" for m, d in CONFIGS]
BETA = [0.9, 0.5, 0.7, 1.0, 0.3]
THRESHOLD = [1.1, 0.8, 1.0, 1.3, 0.9]  # per neuron: the argmax is of U - θ, not of U

snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")


def _snn(cls, *args, **kwargs):
    with warnings.catch_warnings():  # "Inhibition is an unstable feature ..."
        warnings.simplefilter("ignore", UserWarning)
        return cls(*args, spike_grad=atan64, inhibition=True, **kwargs)


def _run(cell, x, n_states=1):
    """snnTorch's per-step loop: the spikes and each returned state of every step."""
    outs, states = [], None
    for x_t in x:
        result = cell(x_t) if states is None else cell(x_t, *states)
        outs.append(result)
        states = result[1 : 1 + n_states]
    return [torch.stack(values) for values in zip(*outs)]


def _input(steps=10, shape=(3, 5), scale=1.6):
    torch.manual_seed(3)
    return (torch.rand(steps, *shape, dtype=F64) * scale - 0.2).requires_grad_()


def _check(got, want, ours, theirs, loser_over=True):
    """Equal spikes (one at most per sample and step, some suppressed) and states, and
    equal float64 gradients of a loss of all of them."""
    spikes, *states = want
    assert torch.equal(got[0].detach(), spikes.detach())
    assert bool((spikes.sum(-1) <= 1).all()) and spikes.sum() > 3
    if loser_over:  # some neuron over its threshold did not fire: inhibition was tested
        assert bool(((states[-1] > f64(THRESHOLD)) & (spikes == 0)).any())
    for a, b in zip(got[1:], states):
        torch.testing.assert_close(a.detach(), b.detach(), atol=1e-12, rtol=0)
    g = torch.randn_like(spikes)
    loss = (got[0] * g).sum() + sum(s.sum() for s in got[1:])
    loss_ref = (spikes * g).sum() + sum(s.sum() for s in states)
    for a, b in zip(torch.autograd.grad(loss, ours), torch.autograd.grad(loss_ref, theirs)):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_hand_computed_winner_tie_and_reset():
    # beta 1/2, θ 1, subtract. Step 0: U = (1.5, 2.0) -> only neuron 1 fires; neuron 0,
    # over θ too, is reset at step 1 all the same (snnTorch's mem_reset of every
    # neuron): U = (0.75 - 1, 1.0 - 1). Step 2: a tie at U = 1.25 fires the first (as
    # torch.argmax). Step 3: both reset (both were over θ), U = 0.625 - 1: no spike.
    node = LeakyNode(f64(0.5), inhibition=True, store_v_seq=True)
    x = torch.tensor([[[1.5, 2.0]], [[0.0, 0.0]], [[1.375, 1.25]], [[0.0, 0.0]]], dtype=F64)
    s = node(x)
    assert s.view(4, 2).tolist() == [[0, 1], [0, 0], [1, 0], [0, 0]]
    v = node.v_seq.view(4, 2)
    torch.testing.assert_close(v[1], torch.tensor([-0.25, 0.0], dtype=F64))
    torch.testing.assert_close(v[2], torch.tensor([1.25, 1.25], dtype=F64))
    # Without inhibition both fire at step 0 and 2.
    torch.testing.assert_close(v[3], torch.tensor([-0.375, -0.375], dtype=F64))
    plain = LeakyNode(f64(0.5), backend="torch")(x)
    assert plain.view(4, 2).tolist() == [[1, 1], [0, 0], [1, 1], [0, 0]]


@pytest.mark.parametrize("mechanism, delay", CONFIGS, ids=CONFIG_IDS)
def test_leaky_inhibition_equals_snntorch(mechanism, delay):
    x = _input()
    theirs = _snn(snn.Leaky, beta=f64(BETA), threshold=f64(THRESHOLD), learn_beta=True,
                  learn_threshold=True, reset_mechanism=mechanism, reset_delay=delay)  # fmt: skip
    node = LeakyNode(f64(BETA), threshold=f64(THRESHOLD), learn_beta=True, learn_threshold=True,
                     reset_mechanism=mechanism, reset_delay=delay, inhibition=True,
                     store_v_seq=True)  # fmt: skip
    xx = x.detach().clone().requires_grad_()
    s = node(xx)
    _check((s, node.v_seq), _run(theirs, x), [xx, node.beta, node.v_threshold],
           [x, theirs.beta, theirs.threshold], loser_over=mechanism != "none")  # fmt: skip


@pytest.mark.parametrize("mechanism, delay", [("subtract", False), ("zero", True), ("none", True)])
def test_synaptic_inhibition_equals_snntorch(mechanism, delay):
    x = _input(scale=1.0)
    theirs = _snn(snn.Synaptic, alpha=f64(0.5), beta=f64(BETA), threshold=f64(THRESHOLD),
                  learn_alpha=True, reset_mechanism=mechanism, reset_delay=delay)  # fmt: skip
    node = SynapticNode(f64(0.5), f64(BETA), threshold=f64(THRESHOLD), learn_alpha=True,
                        reset_mechanism=mechanism, reset_delay=delay, inhibition=True,
                        store_v_seq=True)  # fmt: skip
    xx = x.detach().clone().requires_grad_()
    s = node(xx)
    spk, _syn, mem = _run(theirs, x, 2)
    _check((s, node.v_seq), (spk, mem), [xx, node.alpha], [x, theirs.alpha],
           loser_over=mechanism != "none")  # fmt: skip


def test_lapicque_inhibition_equals_snntorch():
    x = _input()
    theirs = _snn(snn.Lapicque, R=f64(2.0), C=f64(1.0), time_step=f64(1.0),
                  threshold=f64(THRESHOLD), reset_mechanism="zero")  # fmt: skip
    node = LapicqueNode(R=f64(2.0), C=f64(1.0), threshold=f64(THRESHOLD), reset_mechanism="zero",
                        inhibition=True, store_v_seq=True)  # fmt: skip
    xx = x.detach().clone().requires_grad_()
    s = node(xx)
    _check((s, node.v_seq), _run(theirs, x), [xx], [x])


@pytest.mark.parametrize("mechanism", ["zero", "subtract", "none"])
def test_alpha_inhibition_equals_snntorch(mechanism):
    x = _input(12, scale=0.9)
    theirs = _snn(snn.Alpha, alpha=f64(0.9), beta=f64(0.8), threshold=f64(THRESHOLD),
                  reset_mechanism=mechanism, learn_beta=True)  # fmt: skip
    node = AlphaNode(f64(0.9), f64(0.8), reset_mechanism=mechanism, learn_beta=True,
                     v_threshold=f64(THRESHOLD), strict_firing=True, surrogate_function=ATan(),
                     inhibition=True, store_v_seq=True)  # fmt: skip
    xx = x.detach().clone().requires_grad_()
    s = node(xx)
    spk, _exc, _inh, mem = _run(theirs, x, 3)
    _check((s, node.v_seq), (spk, mem), [xx, node.beta], [x, theirs.beta],
           loser_over=mechanism != "none")  # fmt: skip


def test_rleaky_inhibition_is_recurrent_inhibited_leaky():
    n = 5
    theirs = _snn(snn.RLeaky, beta=f64(0.7), linear_features=n, reset_mechanism="subtract")
    theirs = theirs.double()
    theirs.graded_spikes_factor = torch.ones(1, dtype=F64)  # float64 spikes into the Linear
    cell = LeakyNode(f64(0.7), inhibition=True, step_mode="s")
    ours = layers.Recurrent(cell, n, bias=True).double()
    ours.recurrent.load_state_dict(theirs.recurrent.state_dict())
    x = _input(12, (3, n), 1.4)
    want = []
    spk = mem = None
    for x_t in x:
        spk, mem = theirs(x_t) if spk is None else theirs(x_t, spk, mem)
        want.append(spk)
    want = torch.stack(want)
    xx = x.detach().clone().requires_grad_()
    got = ours(xx)
    assert torch.equal(got, want) and bool((want.sum(-1) <= 1).all()) and want.sum() > 3
    g = torch.randn_like(want)
    a = torch.autograd.grad((got * g).sum(), [xx, ours.recurrent.weight])
    b = torch.autograd.grad((want * g).sum(), [x, theirs.recurrent.weight])
    for u, w in zip(a, b):
        torch.testing.assert_close(u, w, atol=1e-10, rtol=1e-10)


def test_inhibition_errors_and_repr():
    with pytest.raises(ConfigurationError, match=r"reference loop only.*backend='cpu'.*argmax"):
        LeakyNode(0.5, inhibition=True, backend="cpu")
    with pytest.raises(ConfigurationError, match="backend='triton'"):
        SynapticNode(0.5, 0.5, inhibition=True, backend="triton")
    with pytest.raises(ConfigurationError, match="backend='cpu'"):
        AlphaNode(inhibition=True, backend="cpu")
    with pytest.raises(ShapeError, match=r"steps of shape \[B, N\]"):
        AlphaNode(inhibition=True)(torch.zeros(2, 3))
    assert "inhibition=True" in repr(AlphaNode(inhibition=True))
    with pytest.raises(ConfigurationError, match=r"no graded spikes.*graded_spikes_factor=2"):
        LeakyNode(0.5, inhibition=True, graded_spikes_factor=2.0)
    with pytest.raises(ConfigurationError, match="learn_graded_spikes_factor=True"):
        LapicqueNode(0.5, inhibition=True, learn_graded_spikes_factor=True)
    with pytest.raises(ConfigurationError, match="inhibition must be True or False"):
        LeakyNode(0.5, inhibition=1)
    node = LeakyNode(0.5, inhibition=True)
    with pytest.raises(ShapeError, match=r"steps of shape \[B, N\].*\(2, 3, 4\)"):
        node(torch.zeros(3, 2, 3, 4))
    assert node.backend == "torch" and "inhibition=True" in repr(node)
    assert LeakyNode(0.5, inhibition=True, backend="torch").backend == "torch"
    assert "inhibition" not in repr(LeakyNode(0.5))
