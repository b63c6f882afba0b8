"""Recurrent containers: the output fed back as input, multi-step and streaming."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.layers import ElementWiseRecurrentContainer, LinearRecurrentContainer
from spikeflow.neurons import IFNode, LIFNode


def gated(x, y):
    return x * (1.0 - y) + 0.5 * y


def test_elementwise_by_hand():
    net = ElementWiseRecurrentContainer(IFNode(step_mode="s"), torch.add)
    # IF(0.6) silent; IF(0.6 + 0.5) fires; then IF(0 + 1) fires on the fed-back spike.
    assert net(torch.tensor([[0.6], [0.5], [0.0], [0.0]])).view(-1).tolist() == [0, 1, 1, 1]


def test_elementwise_equals_a_manual_loop_with_gradients():
    x = torch.rand(9, 3, 4, dtype=torch.float64) * 3.0
    net = ElementWiseRecurrentContainer(LIFNode(step_mode="s"), gated)
    lif = LIFNode(step_mode="s")
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    with F.streaming(lif):
        y, outs = torch.zeros_like(x[0]), []
        for x_t in x1:
            y = lif(gated(x_t, y))
            outs.append(y)
    expected = torch.stack(outs)
    out = net(x2)
    assert torch.equal(out, expected) and 0.1 < float(out.detach().mean()) < 0.9
    g = torch.randn_like(out)
    (ga,) = torch.autograd.grad((expected * g).sum(), [x1])
    (gb,) = torch.autograd.grad((out * g).sum(), [x2])
    torch.testing.assert_close(gb, ga)


def test_linear_equals_the_concatenated_recurrence_with_gradients():
    x = torch.rand(8, 2, 3, dtype=torch.float64)
    net = LinearRecurrentContainer(LIFNode(step_mode="s"), 3, 3).double()
    with torch.no_grad():
        net.rc.weight.mul_(3.0)
        net.rc.bias.fill_(1.0)
    lif = LIFNode(step_mode="s")
    w = net.rc.weight.detach().clone().requires_grad_()
    b = net.rc.bias.detach().clone().requires_grad_()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    with F.streaming(lif):  # y[t] = LIF(W [x[t], y[t-1]] + b)
        y, outs = torch.zeros(2, 3, dtype=torch.float64), []
        for x_t in x1:
            y = lif(torch.cat([x_t, y], dim=-1) @ w.t() + b)
            outs.append(y)
    expected = torch.stack(outs)
    out = net(x2)
    torch.testing.assert_close(out, expected)
    assert 0.1 < float(out.detach().mean()) < 0.9
    g = torch.randn_like(out)
    ga = torch.autograd.grad((expected * g).sum(), [x1, w, b])
    gb = torch.autograd.grad((out * g).sum(), [x2, net.rc.weight, net.rc.bias])
    for a, c in zip(ga, gb):
        torch.testing.assert_close(c, a)


def test_linear_with_a_sub_module_changing_the_width():
    sub = nn.Sequential(nn.Linear(4, 6), LIFNode(step_mode="s"))
    net = LinearRecurrentContainer(sub, in_features=4, out_features=6, bias=False)
    out = net(torch.rand(5, 2, 4) * 2)
    assert out.shape == (5, 2, 6) and net.rc.weight.shape == (4, 10) and net.rc.bias is None


def containers():
    width_changing = nn.Sequential(nn.Linear(5, 3), LIFNode(step_mode="s"))
    return [
        ElementWiseRecurrentContainer(LIFNode(step_mode="s"), torch.add),
        LinearRecurrentContainer(LIFNode(step_mode="s", v_reset=None), 5, 5),
        # The fed-back state is [B, 3] for input steps [B, 5]: it streams too.
        LinearRecurrentContainer(width_changing, in_features=5, out_features=3),
    ]


@pytest.mark.parametrize("net", containers(), ids=lambda n: type(n).__name__)
def test_streaming_steps_and_chunks_equal_one_call(net):
    x = torch.rand(12, 3, 5) * 1.5
    whole = net(x)
    assert torch.equal(net(x), whole)  # a second call starts afresh: no state leak
    with F.streaming(net):
        chunks = torch.cat([net(c) for c in x.split([4, 1, 7])])
    assert torch.equal(chunks, whole)
    F.set_step_mode(net, "s")
    neuron = net.sub_module if hasattr(net.sub_module, "step_mode") else net.sub_module[-1]
    assert neuron.step_mode == "s"  # the container owns the time dimension
    with F.streaming(net):
        single = torch.stack([net(x_t) for x_t in x])
    assert torch.equal(single, whole)
    assert net.state is None and neuron.state is None


def test_streaming_gradients_equal_one_call():
    net = ElementWiseRecurrentContainer(LIFNode(step_mode="s"), gated)
    x = torch.rand(10, 4, dtype=torch.float64) * 1.5
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    net(x1).sum().backward()
    with F.streaming(net):
        torch.cat([net(c) for c in x2.split(4)]).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)


def test_errors():
    with pytest.raises(ConfigurationError, match="step_mode='s'"):
        ElementWiseRecurrentContainer(LIFNode(), torch.add)
    with pytest.raises(ConfigurationError, match="callable"):
        ElementWiseRecurrentContainer(LIFNode(step_mode="s"), 1.0)
    widening = ElementWiseRecurrentContainer(nn.Linear(3, 4), torch.add)
    with pytest.raises(ShapeError, match=r"output \(2, 4\) must have the shape"):
        widening(torch.rand(5, 2, 3))
    net = LinearRecurrentContainer(LIFNode(step_mode="s"), 3, 3)
    with pytest.raises(ShapeError, match=r"in_features=3\) got an input whose last dim is 4"):
        net(torch.rand(5, 2, 4))
    wrong_out = LinearRecurrentContainer(LIFNode(step_mode="s"), 3, 5)
    with pytest.raises(ShapeError, match=r"out_features=5\): the sub-module returned"):
        wrong_out(torch.rand(5, 2, 3))
    with pytest.raises(ConfigurationError, match="out_features must be an integer >= 1"):
        LinearRecurrentContainer(LIFNode(step_mode="s"), 3, 0)
    net.step_mode = "s"
    with pytest.raises(StateError, match="streaming is off"):
        net(torch.rand(2, 3))
