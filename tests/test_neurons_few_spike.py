"""The few-spike neurons (``FewSpikeNode``, ``OutlierAwareThresholdNode``, ``HGNode``) and
the DSR neurons (``DSRIFNode``, ``DSRLIFNode``) against SpikingJelly 2.0 and by hand.

Few-spike: hand-computed outputs of a binary-expansion table; outputs, float64 input
gradients and state-dict names equal to SpikingJelly's, single-step and multi-step, the
outlier split with and without a clamp, the gated regions; gradcheck on a smooth
surrogate. DSR: forward and the representation gradients (input and threshold) by hand
in float64 and equal to SpikingJelly's (float32: SpikingJelly computes its spikes in
float32 whatever the input); the errors of both.
"""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.neurons import (
    DSRIFNode,
    DSRLIFNode,
    FewSpikeNode,
    FewSpikeTable,
    HGNode,
    OutlierAwareThresholdNode,
)
from spikeflow.neurons.dsr import weighted_rate
from spikeflow.surrogate import Sigmoid

sj_neuron = pytest.importorskip(
    "spikingjelly.activation_based.neuron", reason="SpikingJelly is needed for the comparisons"
)

F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)
BINARY = dict(theta=[1.0, 0.5, 0.25, 0.125], h=[1.0, 0.5, 0.25, 0.125], d=[1.0, 0.5, 0.25, 0.125])
LARGE = dict(theta=[4.0, 2.0, 1.0, 0.5], h=[4.0, 2.0, 1.0, 0.5], d=[4.0, 2.0, 1.0, 0.5])
SMALL = dict(theta=[0.3, 0.2, 0.1, 0.05], h=[0.3, 0.2, 0.1, 0.05], d=[0.2, 0.1, 0.1, 0.05])


# -- few-spike neurons -----------------------------------------------------------------------


def test_few_spike_hand_computed():
    # the binary table rounds a gate in [0, 2) down to 1/8: 0.8 = 0.5 + 0.25 + 0.05 gives
    # spikes at steps 2 and 3 (0.75); 1.3 -> 1 + 0.25 (1.25); -0.4 -> nothing.
    node = FewSpikeNode(FewSpikeTable(**BINARY), step_mode="s")
    assert node(torch.tensor([0.8, 1.3, -0.4])).tolist() == [0.75, 1.25, 0.0]
    node.step_mode = "m"  # the gate is the sum of the K steps
    out = node(torch.tensor([[0.4], [0.4], [0.0], [0.0]]))
    assert out.view(-1).tolist() == [0.0, 0.5, 0.25, 0.0]
    # outliers (|g| > 2) use the large table, the sign comes back: -5 -> -(4 + 1)
    oat = OutlierAwareThresholdNode(FewSpikeTable(**BINARY), FewSpikeTable(**LARGE), 2.0,
                                    step_mode="s")  # fmt: skip
    assert oat(torch.tensor([-5.0, 0.8, -0.8, 0.0])).tolist() == [-5.0, 0.75, -0.75, 0.0]
    # regions: g <= 1 runs the binary table, g > 1 the small one (1.0 -> 1.0; 1.01 ->
    # 0.2 + 0.1 + 0.1 + 0.05 = 0.45, every entry firing)
    hg = HGNode([FewSpikeTable(**BINARY), FewSpikeTable(**SMALL)], [1.0], step_mode="s")
    torch.testing.assert_close(hg(torch.tensor([1.0, 1.01])), torch.tensor([1.0, 0.45]))


def _tables(lib):
    table = lib.FewSpikeTable
    return table(**BINARY), table(**LARGE), table(**SMALL)


def _few_spike_pairs(step_mode):
    ours, theirs = _tables(__import__("spikeflow.neurons", fromlist=["x"])), _tables(sj_neuron)
    return {
        "fs": (FewSpikeNode(ours[0], step_mode=step_mode),
               sj_neuron.FewSpikeNode(theirs[0], step_mode=step_mode)),
        "oat": (OutlierAwareThresholdNode(ours[0], ours[1], 1.8, step_mode=step_mode),
                sj_neuron.OutlierAwareThresholdNode(theirs[0], theirs[1], 1.8,
                                                    step_mode=step_mode)),
        "oat_clamp": (OutlierAwareThresholdNode(ours[0], ours[1], 1.8, 5.0, step_mode=step_mode),
                      sj_neuron.OutlierAwareThresholdNode(theirs[0], theirs[1], 1.8, 5.0,
                                                          step_mode=step_mode)),
        "hg": (HGNode(ours, [0.4, 1.9], step_mode=step_mode),
               sj_neuron.HGNode(theirs, [0.4, 1.9], step_mode=step_mode)),
    }  # fmt: skip


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_few_spike_equal_to_spikingjelly(float64, step_mode):
    torch.manual_seed(0)
    x = torch.randn(4, 5, 6) if step_mode == "m" else torch.randn(5, 6) * 3.0
    for name, (ours, theirs) in _few_spike_pairs(step_mode).items():
        assert list(ours.state_dict()) == list(theirs.state_dict()), name
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = ours(x1), theirs(x2)
        assert torch.equal(y1, y2) and y1.unique().numel() > 3, name
        g = torch.randn_like(y1)
        (g1,) = torch.autograd.grad((y1 * g).sum(), x1)
        (g2,) = torch.autograd.grad((y2 * g).sum(), x2)
        assert g1.abs().sum() > 0
        torch.testing.assert_close(g1, g2, **TIGHT, msg=name)


def test_few_spike_gradcheck():
    torch.manual_seed(1)
    smooth = Sigmoid(alpha=3.0, spiking=False)
    nodes = [FewSpikeNode(FewSpikeTable(**BINARY), smooth),
             HGNode([FewSpikeTable(**BINARY), FewSpikeTable(**SMALL)], [0.5], smooth)]  # fmt: skip
    for node in nodes:
        x = (torch.rand(4, 3, 2, dtype=F64) * 0.6).requires_grad_()
        assert torch.autograd.gradcheck(node.double(), (x,))


def test_few_spike_errors():
    with pytest.raises(ConfigurationError, match="theta, h and d must have the same length"):
        FewSpikeTable([1.0, 0.5], [1.0], [1.0, 0.5])
    with pytest.raises(ConfigurationError, match=r"h must be a non-empty 1-D tensor"):
        FewSpikeTable([1.0], [[1.0]], [1.0])
    with pytest.raises(ConfigurationError, match=r"d must be finite"):
        FewSpikeTable([1.0], [1.0], [math.inf])
    table = FewSpikeTable(**BINARY)
    with pytest.raises(ConfigurationError, match="table must be a FewSpikeTable, got dict"):
        FewSpikeNode(BINARY)
    with pytest.raises(ConfigurationError, match="outlier_table must have K = 4 entries"):
        OutlierAwareThresholdNode(table, FewSpikeTable([1.0], [1.0], [1.0]), 1.0)
    with pytest.raises(ConfigurationError, match="split_threshold must be a finite number >= 0"):
        OutlierAwareThresholdNode(table, table, -1.0)
    with pytest.raises(ConfigurationError, match="clamp_value must be None or a finite number"):
        OutlierAwareThresholdNode(table, table, 2.0, clamp_value=1.0)
    with pytest.raises(ConfigurationError, match="gate_thresholds must hold len"):
        HGNode([table, table], [0.1, 0.2])
    with pytest.raises(ConfigurationError, match="gate_thresholds must be strictly increasing"):
        HGNode([table, table, table], [0.3, 0.2])
    with pytest.raises(ShapeError, match=r"takes exactly K = 4 steps \[K, B, \.\.\.\]"):
        FewSpikeNode(table)(torch.rand(3, 2))
    with pytest.raises(DTypeError, match="floating-point"):
        FewSpikeNode(table)(torch.ones(4, 2, dtype=torch.long))


# -- DSR -------------------------------------------------------------------------------------


def test_dsr_if_by_hand(float64):
    """Spikes worth θ = 1 fired at α θ = 0.5; the input's gradient is ``Σ_t g[t] / T``
    where the rate lies in [0, θ], θ's the sum of ``Σ_t g[t]`` where it is above."""
    x = torch.tensor([[0.6, 1.5, -0.2], [0.6, 1.5, -0.2]], dtype=F64, requires_grad=True)
    node = DSRIFNode(T=2, v_threshold=1.0, alpha=0.5)
    y = node(x)
    # neuron 0: V = 0.6 fires (V = -0.4), then 0.2; neuron 1: fires twice; neuron 2: never
    assert y.tolist() == [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    g = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], dtype=F64)
    gx, gt = torch.autograd.grad((y * g).sum(), [x, node.v_threshold])
    assert gx.tolist() == [[0.75, 0.0, 0.0], [0.75, 0.0, 0.0]]  # rates 0.6, 1.5, -0.2
    assert gt.item() == 1.0  # neuron 1: 2 - 1


def test_dsr_lif_by_hand(float64):
    tau, dt, T = 2.0, 0.5, 3
    x = (torch.rand(T, 4, dtype=F64) * 2.0).requires_grad_()
    node = DSRLIFNode(T, v_threshold=0.4, tau=tau, delta_t=dt, alpha=0.3)
    y = node(x)
    beta, v, want = math.exp(-dt / tau), torch.zeros(4, dtype=F64), []
    for x_t in x.detach():
        v = beta * v + (1 - beta) * x_t
        s = (v >= 0.3 * 0.4).double() * 0.4
        v = v - s
        want.append(s / dt)
    assert torch.equal(y, torch.stack(want)) and y.sum() > 0
    w = torch.tensor([math.exp(-(T - i) * dt / tau) for i in range(1, T + 1)], dtype=F64)
    rate = (w.view(-1, 1) * x.detach()).sum(0) / w.sum()
    torch.testing.assert_close(weighted_rate(x.detach(), tau, dt), rate, **TIGHT)
    g = torch.randn(T, 4, dtype=F64)
    coded = (w.view(-1, 1) * g).sum(0) / w.sum() * T
    inside = (rate > 0) & (rate < 0.4 / dt * tau)
    gx, gt = torch.autograd.grad((y * g).sum(), [x, node.v_threshold])
    torch.testing.assert_close(
        gx, (torch.where(inside, coded / tau, 0.0) / T).expand(T, 4), **TIGHT
    )
    torch.testing.assert_close(
        gt, torch.where(rate > 0.4 / dt * tau, coded, 0.0).sum() * dt, **TIGHT
    )


@pytest.mark.parametrize("kind", ["if", "lif"])
def test_dsr_equal_to_spikingjelly(kind):
    """float32 (SpikingJelly's forward casts to it); rates below 0, inside and above θ."""
    torch.manual_seed(2)
    T = 8
    spread = torch.linspace(-0.5, 1.6, 60).view(1, 1, 60)
    x = torch.rand(T, 3, 60) * 0.6 - 0.3 + spread
    if kind == "if":
        ours, theirs = (
            DSRIFNode(T, 1.0, 0.5, True, 2.0),
            sj_neuron.DSRIFNode(T, 1.0, 0.5, True, 2.0),
        )
    else:
        ours = DSRLIFNode(T, 0.3, 2.0, 0.5, 0.3, True, 0.5)
        theirs = sj_neuron.DSRLIFNode(T, 0.3, 2.0, 0.5, 0.3, True, 0.5)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    assert torch.equal(y1, y2) and 0.05 < (y1 > 0).float().mean() < 0.9
    g = torch.randn_like(y1)
    got = torch.autograd.grad((y1 * g).sum(), [x1, ours.v_threshold])
    want = torch.autograd.grad((y2 * g).sum(), [x2, theirs.v_threshold])
    assert got[1] != 0 and 0.1 < (got[0] != 0).float().mean() < 0.95
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_dsr_errors():
    with pytest.raises(ConfigurationError, match="alpha must be a finite real number in"):
        DSRIFNode(alpha=0.0)
    with pytest.raises(
        ConfigurationError, match=r"v_threshold must be a finite real number in \[0.01"
    ):
        DSRIFNode(v_threshold=0.001)
    with pytest.raises(ConfigurationError, match="T must be an integer >= 1"):
        DSRLIFNode(T=0)
    with pytest.raises(ConfigurationError, match="delta_t must be a finite real number in"):
        DSRLIFNode(delta_t=0.0)
    with pytest.raises(ConfigurationError, match="only runs in multi-step mode"):
        DSRIFNode(step_mode="s")
    with pytest.raises(ShapeError, match=r"built for T = 4 steps .* got a sequence of 3"):
        DSRIFNode(T=4)(torch.rand(3, 2))
    frozen = DSRIFNode(v_threshold_training=False)
    assert list(frozen.state_dict()) == [] and not list(frozen.parameters())
    with pytest.raises(StateError, match="runs whole sequences only"):
        with F.streaming(torch.nn.Sequential(DSRIFNode(T=2))):
            pass
