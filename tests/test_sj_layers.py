"""SpikingJelly's smaller layers in ``spikeflow.layers``: the time-last containers
(``TLastMultiStepContainer``, ``TLastSeqToANNContainer``), the spike-count expansion
(``SpikeCountToBinary``, ``TemporalBinSum``), ``PrintShapeModule`` and
``ConvTranspose1d/3d``.

Against SpikingJelly 2.0 in float64 (outputs and gradients), hand-computed values, the
per-step torch layers, and the identity the count expansion exists for (a bias-free
synapse on the binary slots, summed back, equals the synapse on the counts, forward and
backward); the errors.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sj_checks import F64, TIGHT, grads, sj
from spikeflow import functional as F
from spikeflow import layers as L
from spikeflow import neurons
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

# -- time-last containers ------------------------------------------------------------------


def test_t_last_containers_equal_spikingjelly(float64):
    sj_layer, sj_neuron = sj("layer"), sj("neuron")
    torch.manual_seed(1)
    fc = nn.Linear(5, 7)
    theirs = sj_layer.TLastMultiStepContainer(sj_neuron.LIFNode(tau=2.0))
    ours = L.TLastMultiStepContainer(neurons.LIFNode(tau=2.0, step_mode="s"))
    x = torch.rand(3, 7, 9) * 2  # [B, N, T]
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = theirs(x1), ours(x2)
    assert torch.equal(got, want) and 0.05 < got.mean() < 0.95
    g = torch.randn_like(want)
    torch.testing.assert_close(grads(got, x2, g)[0], grads(want, x1, g)[0], **TIGHT)
    assert ours[0].state is None  # each call from the initial state
    assert torch.equal(ours(x), got)

    theirs = sj_layer.TLastSeqToANNContainer(fc, nn.Tanh())
    ours = L.TLastSeqToANNContainer(fc, nn.Tanh())
    x = torch.randn(4, 5, 6)  # [B, features, T]: one step is [B, 5]
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = theirs(x1), ours(x2)
    assert got.shape == (4, 7, 6)
    torch.testing.assert_close(got, want, **TIGHT)
    g = torch.randn_like(want)
    p1 = grads(want, [x1, fc.weight, fc.bias], g)
    p2 = grads(got, [x2, fc.weight, fc.bias], g)
    for a, b in zip(p2, p1):
        torch.testing.assert_close(a, b, **TIGHT)
    for t in range(6):
        torch.testing.assert_close(got[..., t], torch.tanh(fc(x[..., t])), **TIGHT)


def test_t_last_containers_errors_and_step_mode():
    with pytest.raises(ShapeError, match=r"\[B, \.\.\., T\]"):
        L.TLastMultiStepContainer(neurons.IFNode(step_mode="s"))(torch.rand(5))
    with pytest.raises(ShapeError, match="T = 0"):  # was torch.stack's RuntimeError
        L.TLastMultiStepContainer(neurons.IFNode(step_mode="s"))(torch.rand(2, 3, 0))
    with pytest.raises(ShapeError, match="0 time steps"):
        L.MultiStepContainer(neurons.IFNode(step_mode="s"))(torch.rand(0, 2, 3))
    # folded into the batch, no steps is an empty batch: the output of no steps
    assert L.TLastSeqToANNContainer(nn.Linear(3, 4))(torch.rand(2, 3, 0)).shape == (2, 4, 0)
    with pytest.raises(ConfigurationError, match="carries state"):
        L.TLastSeqToANNContainer(neurons.IFNode(step_mode="s"))
    with pytest.raises(ConfigurationError, match="step_mode='s'"):
        L.TLastMultiStepContainer(neurons.IFNode())
    net = nn.Sequential(L.TLastMultiStepContainer(neurons.IFNode(step_mode="s")))
    F.set_step_mode(net, "m")  # the container keeps its per-step neuron as it is
    assert net[0][0].step_mode == "s" and net[0].step_mode == "m"


# -- SpikeCountToBinary and TemporalBinSum -------------------------------------------------


def test_count_expansion_by_hand():
    counts = torch.tensor([[2.0, 0.0], [3.0, 1.0]])  # [T=2, B=2]
    events = L.SpikeCountToBinary(3, always_convert=True)(counts)
    assert events.shape == (6, 2)
    assert events[:, 0].tolist() == [1, 1, 0, 1, 1, 1]
    assert events[:, 1].tolist() == [0, 0, 0, 1, 0, 0]
    summed = L.TemporalBinSum(3, always_convert=True)(events)
    assert torch.equal(summed, counts)
    # an incomplete last bin is padded with zeros
    bins = L.TemporalBinSum(2, always_convert=True)(torch.arange(1.0, 6.0).view(5, 1))
    assert bins.flatten().tolist() == [3.0, 7.0, 5.0]


@pytest.mark.parametrize("k", [1, 3, 4])
def test_count_expansion_equals_spikingjelly(float64, k):
    sj_layer = sj("layer")
    counts = torch.randint(0, k + 1, (5, 3, 4)).to(F64)
    ours, theirs = L.SpikeCountToBinary(k), sj_layer.SpikeCountToBinary(k)
    x1, x2 = counts.clone().requires_grad_(), counts.clone().requires_grad_()
    assert ours(x2) is x2 and theirs(x1) is x1  # training mode: the counts as they are
    ours.eval()
    theirs.eval()
    want, got = theirs(x1), ours(x2)
    assert got.shape == (5 * k, 3, 4) and torch.equal(got, want)
    g = torch.randn_like(got)
    gx = grads(got, x2, g)[0]
    assert torch.equal(gx, grads(want, x1, g)[0])
    # straight through: each count gets the mean of its slots' gradients
    torch.testing.assert_close(gx, g.unflatten(0, (5, k)).mean(dim=1), **TIGHT)

    events = torch.randn(11, 2, 3)
    ours, theirs = L.TemporalBinSum(k), sj_layer.TemporalBinSum(k)
    assert ours(events) is events  # training mode
    ours.eval()
    theirs.eval()
    e1, e2 = events.clone().requires_grad_(), events.clone().requires_grad_()
    want, got = theirs(e1), ours(e2)
    assert got.shape == (-(-11 // k), 2, 3)
    torch.testing.assert_close(got, want, **TIGHT)
    g = torch.randn_like(got)
    torch.testing.assert_close(grads(got, e2, g)[0], grads(want, e1, g)[0], **TIGHT)


def test_expand_synapse_sum_equals_the_synapse_on_counts(float64):
    # the deployment identity: binary slots through a bias-free synapse, summed back
    k = 4
    counts = torch.randint(0, k + 1, (6, 3, 8)).to(F64)
    fc = L.Linear(8, 5, bias=False)
    slotted = nn.Sequential(
        L.SpikeCountToBinary(k, always_convert=True), fc, L.TemporalBinSum(k, always_convert=True)
    )
    c1, c2 = counts.clone().requires_grad_(), counts.clone().requires_grad_()
    got, want = slotted(c1), fc(c2)
    torch.testing.assert_close(got, want, **TIGHT)
    g = torch.randn_like(want)
    for a, b in zip(grads(got, [c1, fc.weight], g), grads(want, [c2, fc.weight], g)):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, **TIGHT)
    # the same in eval mode with the defaults (convert only in eval)
    slotted = nn.Sequential(L.SpikeCountToBinary(k), fc, L.TemporalBinSum(k)).eval()
    torch.testing.assert_close(slotted(counts), want, **TIGHT)


def test_count_expansion_errors():
    expand = L.SpikeCountToBinary(3, always_convert=True)
    with pytest.raises(ConfigurationError, match=r"integer spike counts in \[0, 3\], got 4.0"):
        expand(torch.tensor([[4.0]]))
    with pytest.raises(ConfigurationError, match=r"got 0\.5"):
        expand(torch.tensor([[1.0], [0.5]]))
    with pytest.raises(ConfigurationError, match=r"got -1\.0"):
        expand(torch.tensor([[-1.0]]))
    with pytest.raises(DTypeError, match="floating-point"):
        expand(torch.tensor([[1]]))
    with pytest.raises(ShapeError, match=r"\[T, B, \.\.\.\]"):
        L.TemporalBinSum(2, always_convert=True)(torch.ones(4))
    with pytest.raises(ShapeError, match="no time steps"):
        L.TemporalBinSum(2, always_convert=True)(torch.ones(0, 3))
    with pytest.raises(ConfigurationError, match="num_slots must be an integer >= 1"):
        L.TemporalBinSum(0)
    with pytest.raises(ConfigurationError, match="always_convert"):
        L.SpikeCountToBinary(2, always_convert=1)
    with pytest.raises(ConfigurationError, match="number of time steps"):
        F.set_step_mode(nn.Sequential(L.TemporalBinSum(2)), "s")


# -- PrintShapeModule ----------------------------------------------------------------------


def test_print_shape_module(capsys):
    net = nn.Sequential(L.Conv2d(2, 3, 3), L.PrintShapeModule("after conv"), L.Flatten())
    x = torch.rand(4, 2, 2, 6, 6)
    y = net(x)
    assert y.shape == (4, 2, 48)
    assert capsys.readouterr().err == "after conv shape=(4, 2, 3, 4, 4)\n"
    z = torch.rand(3)
    assert L.PrintShapeModule()(z) is z
    assert capsys.readouterr().err == "PrintShapeModule shape=(3,)\n"


# -- ConvTranspose1d / 3d ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "torch_cls", "step"),
    [
        (L.ConvTranspose1d, nn.ConvTranspose1d, (2, 3, 9)),
        (L.ConvTranspose3d, nn.ConvTranspose3d, (2, 3, 4, 5, 4)),
    ],
)
def test_conv_transpose_1d_3d_per_step(cls, torch_cls, step):
    torch.manual_seed(0)
    ours = cls(3, 4, 3, stride=2, padding=1)
    ref = torch_cls(3, 4, 3, stride=2, padding=1)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(5, *step, dtype=torch.float32)
    y = ours(x)
    want = torch.stack([ref(x_t) for x_t in x])
    torch.testing.assert_close(y, want, rtol=1e-6, atol=1e-6)
    # output_size picks among the sizes a stride of 2 allows
    size = [2 * n for n in step[2:]]
    assert ours(x, output_size=size).shape[3:] == tuple(size)
    ours.step_mode = "s"
    torch.testing.assert_close(ours(x[1]), want[1], rtol=1e-6, atol=1e-6)
    with pytest.raises(ShapeError, match="is this a multi-step"):
        ours(x)
    ours.step_mode = "m"
    with pytest.raises(ShapeError, match="missing the time dimension"):
        ours(x[0])


def test_conv_transpose_equals_spikingjelly(float64):
    sj_layer = sj("layer")
    for name, step in (("ConvTranspose1d", (2, 3, 7)), ("ConvTranspose3d", (2, 3, 3, 4, 3))):
        theirs = getattr(sj_layer, name)(3, 2, 2, stride=2, step_mode="m")
        ours = getattr(L, name)(3, 2, 2, stride=2)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(4, *step)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        want, got = theirs(x1), ours(x2)
        torch.testing.assert_close(got, want, **TIGHT)
        g = torch.randn_like(want)
        for a, b in zip(grads(got, [x2, ours.weight], g), grads(want, [x1, theirs.weight], g)):
            torch.testing.assert_close(a, b, **TIGHT)
