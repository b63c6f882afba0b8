"""SpikingJelly's network helpers in ``spikeflow.functional``: ``delay``,
``chunk_multi_step_forward``, the time-last ``t_last_multi_step_forward`` and
``t_last_seq_to_ann_forward``, and ``kaiming_normal_conv_linear_weight``.

Against hand-computed values, ``layers.Delay``, one call on the whole sequence and
SpikingJelly 2.0 in float64 (outputs and gradients; the same weights, the same draws
from one seed); the state left behind; gradcheck of ``delay``; the errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sj_checks import F64, TIGHT, grad, sj
from spikeflow import functional as F
from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError, ShapeError, StateError

# -- delay ---------------------------------------------------------------------------------


def test_delay_by_hand_and_against_the_layer():
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    assert F.delay(x, 2).flatten().tolist() == [0.0, 0.0, 1.0, 2.0]
    assert F.delay(x, 0) is x
    assert F.delay(x, 4).abs().sum() == 0 and F.delay(x, 9).shape == x.shape
    seq = torch.randn(7, 3, 5)
    for k in (0, 1, 3, 6, 7, 10):
        assert torch.equal(F.delay(seq, k), layers.Delay(k)(seq)), k


@pytest.mark.parametrize("k", [0, 1, 3, 8, 11])
def test_delay_equals_spikingjelly(k):
    functional = sj("functional")
    x = torch.randn(8, 2, 4, dtype=F64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = functional.delay(x1, k), F.delay(x2, k)
    assert torch.equal(got, want)
    g = torch.randn_like(x)
    if k >= 8:  # SpikingJelly's zeros are outside the graph: a loss on them cannot backward
        assert not want.requires_grad and grad(got, x2, g).abs().sum() == 0
    else:
        assert torch.equal(grad(got, x2, g), grad(want, x1, g))
    assert torch.autograd.gradcheck(
        lambda s: F.delay(s, k), (x[:, :1, :2].clone().requires_grad_(),)
    )


def test_delay_errors():
    with pytest.raises(ConfigurationError, match="delay_steps must be an integer >= 0"):
        F.delay(torch.zeros(3, 2), -1)
    with pytest.raises(ConfigurationError, match="delay_steps"):
        F.delay(torch.zeros(3, 2), 1.5)
    with pytest.raises(ShapeError, match="0-d"):
        F.delay(torch.tensor(1.0), 1)


# -- chunk_multi_step_forward --------------------------------------------------------------


def _net(lib_layer, lib_neuron, **step):
    torch.manual_seed(3)
    net = nn.Sequential(
        lib_layer.Linear(6, 12, **step),
        lib_neuron.LIFNode(tau=2.0, **step),
        lib_layer.Linear(12, 4, **step),
        lib_neuron.IFNode(**step),
    )
    with torch.no_grad():  # weights that make both layers fire
        net[0].weight.uniform_(-0.2, 1.0)
        net[2].weight.uniform_(-0.2, 0.6)
    return net


@pytest.mark.parametrize("split", [1, 3, 7, 20, 40])
def test_chunked_forward_equals_one_call_and_spikingjelly(float64, split):
    sj_layer, sj_neuron, functional = sj("layer"), sj("neuron"), sj("functional")
    theirs = _net(sj_layer, sj_neuron, step_mode="m")
    ours = _net(layers, neurons)
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(20, 5, 6) * 2
    g = torch.randn(20, 5, 4)
    x1, x2, x3 = (x.clone().requires_grad_() for _ in range(3))
    want = functional.chunk_multi_step_forward(split, x1, theirs)
    got = F.chunk_multi_step_forward(split, x2, ours)
    whole = ours(x3)
    assert torch.equal(got, want) and torch.equal(got, whole) and 0.05 < got.mean() < 0.95
    assert 0.05 < ours[1](ours[0](x)).mean() < 0.95  # the hidden layer fires too
    grad_ours = grad(got, x2, g)
    assert grad_ours.abs().sum() > 0
    torch.testing.assert_close(grad_ours, grad(want, x1, g), **TIGHT)
    torch.testing.assert_close(grad_ours, grad(whole, x3, g), **TIGHT)
    # nothing carried out of the call: the next call starts fresh
    assert all(m.state is None and not m.streaming for m in F.memory_modules(ours))
    assert torch.equal(F.chunk_multi_step_forward(split, x, ours), whole)


def test_chunked_forward_inside_streaming_continues_the_state():
    net = _net(layers, neurons)
    x = torch.rand(12, 3, 6) * 2
    with torch.no_grad():
        whole = net(x)
        with F.streaming(net):
            first = net(x[:5])
            rest = F.chunk_multi_step_forward(2, x[5:], net)  # carries on from step 5
            assert net[1].state is not None  # the streaming state is kept
    assert torch.equal(torch.cat([first, rest]), whole)


def test_chunked_forward_errors():
    net = _net(layers, neurons)
    with pytest.raises(ConfigurationError, match="split_size must be an integer >= 1"):
        F.chunk_multi_step_forward(0, torch.rand(4, 2, 6), net)
    with pytest.raises(ShapeError, match=r"\[T, B, \.\.\.\]"):
        F.chunk_multi_step_forward(2, torch.rand(6), net)

    class WholeSequences(nn.Module):
        streamable = False

        def forward(self, x):
            return x

    with pytest.raises(StateError, match="whole"):
        F.chunk_multi_step_forward(2, torch.rand(4, 2, 6), nn.Sequential(net, WholeSequences()))
    assert not any(m.streaming for m in F.memory_modules(net))


# -- time-last forward helpers -------------------------------------------------------------


def test_t_last_forwards_equal_spikingjelly(float64):
    functional, sj_neuron = sj("functional"), sj("neuron")
    x = torch.rand(4, 6, 10) * 2  # [B, N, T]
    g = torch.randn(4, 6, 10)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = functional.t_last_multi_step_forward(x1, sj_neuron.LIFNode(tau=2.0))
    node = neurons.LIFNode(tau=2.0, step_mode="s")
    got = F.t_last_multi_step_forward(x2, node)
    assert torch.equal(got, want) and 0.05 < got.mean() < 0.95
    assert torch.equal(got, neurons.LIFNode(tau=2.0)(x.movedim(-1, 0)).movedim(0, -1))
    assert node.state is None  # nothing carried out of the call
    torch.testing.assert_close(grad(got, x2, g), grad(want, x1, g), **TIGHT)

    conv = nn.Conv1d(3, 5, 3, padding=1)
    seq = torch.randn(2, 3, 7, 6)  # [B, C, L, T]
    s1, s2 = seq.clone().requires_grad_(), seq.clone().requires_grad_()
    want = functional.t_last_seq_to_ann_forward(s1, [conv, nn.ReLU()])
    got = F.t_last_seq_to_ann_forward(s2, [conv, nn.ReLU()])
    assert got.shape == (2, 5, 7, 6)
    torch.testing.assert_close(got, want, **TIGHT)
    g = torch.randn_like(got)
    torch.testing.assert_close(grad(got, s2, g), grad(want, s1, g), **TIGHT)
    for t in range(6):  # each step on its own
        torch.testing.assert_close(got[..., t], torch.relu(conv(seq[..., t])), **TIGHT)
    # a tuple output keeps its parts, each with time last again
    values, indices = F.t_last_seq_to_ann_forward(seq, nn.MaxPool1d(2, return_indices=True))
    assert values.shape == indices.shape == (2, 3, 3, 6)
    assert torch.equal(values[..., 4], nn.functional.max_pool1d(seq[..., 4], 2))


def test_t_last_forward_errors():
    with pytest.raises(ShapeError, match=r"\[B, \.\.\., T\]"):
        F.t_last_seq_to_ann_forward(torch.rand(5), nn.ReLU())
    with pytest.raises(ShapeError, match="time-last"):
        F.t_last_multi_step_forward(torch.rand(5), neurons.IFNode(step_mode="s"))
    with pytest.raises(ShapeError, match="T = 0"):  # was torch.stack's RuntimeError
        F.t_last_multi_step_forward(torch.rand(2, 3, 0), neurons.IFNode(step_mode="s"))
    with pytest.raises(ShapeError, match="0 time steps"):
        F.multi_step_forward(torch.rand(0, 2, 3), neurons.IFNode(step_mode="s"))


def test_per_step_forwards_refuse_what_would_misread_time():
    # a default (multi-step) neuron called on one step [B, N] reads B as time and
    # restarts at every step: the stacked output was silently not the neuron's
    x = torch.rand(6, 2, 5)
    for node in (neurons.IFNode(), layers.Conv1d(2, 2, 1)):
        with pytest.raises(ConfigurationError, match=r"multi_step_forward.*step_mode='m'"):
            F.multi_step_forward(x, node)
        with pytest.raises(ConfigurationError, match=r"multi_step_forward.*step_mode='m'"):
            F.t_last_multi_step_forward(x.permute(1, 2, 0), [nn.Identity(), node])
    # folding time into the batch mixes the steps of a stateful module (a multi-step
    # neuron read T*B as time; a single-step one raised a misleading StateError)
    for node in (neurons.IFNode(), neurons.IFNode(step_mode="s")):
        with pytest.raises(ConfigurationError, match="seq_to_ann_forward folds time"):
            F.seq_to_ann_forward(x, node)
        with pytest.raises(ConfigurationError, match="seq_to_ann_forward folds time"):
            F.t_last_seq_to_ann_forward(x.permute(1, 2, 0), [nn.Linear(5, 5), node])
    # what they accept is unchanged: a single-step neuron, step by step, is the neuron
    assert torch.equal(F.multi_step_forward(x, neurons.IFNode(step_mode="s")), neurons.IFNode()(x))


# -- kaiming_normal_conv_linear_weight -----------------------------------------------------


def test_kaiming_init_equals_spikingjelly_and_its_distribution():
    functional, sj_layer = sj("functional"), sj("layer")

    def build(lib, **kw):
        return nn.Sequential(
            lib.Conv1d(2, 3, 3, **kw),
            lib.Conv2d(3, 4, 3, **kw),
            lib.Conv3d(4, 4, 2, **kw),
            lib.ConvTranspose2d(4, 2, 3, **kw),
            nn.Sequential(lib.Linear(40, 600, **kw)),
        )

    torch.manual_seed(0)
    theirs, ours = build(sj_layer, step_mode="m"), build(layers)
    ours.load_state_dict(theirs.state_dict())
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    torch.manual_seed(7)
    functional.kaiming_normal_conv_linear_weight(theirs)
    torch.manual_seed(7)
    F.kaiming_normal_conv_linear_weight(ours)
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), name
        redrawn = name.endswith("weight") and not name.startswith("3.")
        assert torch.equal(a, before[name]) != redrawn, name  # weights only, no transpose
    w = ours[4][0].weight  # 24,000 draws: std 1/sqrt(3 fan_in) within 2 %
    assert abs(w.std().item() * math.sqrt(3 * 40) - 1) < 0.02 and abs(w.mean().item()) < 0.01
