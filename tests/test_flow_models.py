"""spikeflow.flow models: the neurons against the paper's update written out, the recurrent
convolution against a step loop, streaming against one call, gradients, shapes, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikeflow import functional as SF
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.flow import (
    ArctanSpike,
    ConvRecurrent,
    SpikingEVFlowNet,
    SpikingFireNet,
    flow_neuron,
)


def test_flow_neuron_initial_leak_and_threshold() -> None:
    torch.manual_seed(0)
    node = flow_neuron(4096)
    leak = 1 - torch.sigmoid(node.w.detach().double())  # the official leak = sigmoid(logit)
    logit = torch.log(leak / (1 - leak))  # drawn from N(-4, 0.1) per channel
    assert leak.shape == (4096, 1, 1)
    assert abs(float(logit.mean()) + 4.0) < 0.01 and abs(float(logit.std()) - 0.1) < 0.01
    assert torch.equal(node.v_threshold.detach(), torch.full((4096, 1, 1), 0.8))
    assert node.detach_reset and node.v_reset == 0.0 and node.strict_firing


class _OfficialArctanSpike(torch.autograd.Function):
    """The official code's spike: ``x > 0`` forward, ``1 / (1 + 10 x^2)`` backward."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        return x.gt(0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return grad / (1 + 10.0 * x * x)


def test_flow_neuron_equals_the_official_convlif_with_its_gradients() -> None:
    """ConvLIF of tudelft/event_flow written out: v = v leak (1 - z) + (1 - leak) ff,
    z = arctanspike(v - max(thresh, 0.01)); spikes and every gradient in float64."""
    torch.manual_seed(5)
    C, T = 4, 5
    node = flow_neuron(C).double()
    with torch.no_grad():  # leaks far from 0 so memory matters; one threshold below 0.01
        node.w.copy_(torch.tensor([-1.0, 0.0, 1.0, 0.5], dtype=torch.float64).view(C, 1, 1))
        node.v_threshold.copy_(torch.tensor([0.3, -0.2, 0.5, 0.005]).view(C, 1, 1))
    x = (torch.rand(T, 2, C, 3, 3, dtype=torch.float64) * 1.2).requires_grad_()
    got = node(x)
    leak_logit = (-node.w.detach()).clone().requires_grad_()
    thresh = node.v_threshold.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    leak = torch.sigmoid(leak_logit)
    v = torch.zeros(2, C, 3, 3, dtype=torch.float64)
    z = torch.zeros_like(v)
    spikes = []
    for t in range(T):
        v = v * leak * (1 - z.detach()) + (1 - leak) * x_ref[t]
        z = _OfficialArctanSpike.apply(v - thresh.clamp_min(0.01))
        spikes.append(z)
    want = torch.stack(spikes)
    assert torch.equal(got, want) and 0 < float(want.detach().mean()) < 1
    weights = torch.rand_like(want)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, rtol=1e-12, atol=1e-14)
    assert torch.allclose(node.v_threshold.grad, thresh.grad, rtol=1e-12, atol=1e-14)
    assert float(node.v_threshold.grad[1].abs().sum()) == 0.0  # clamped: no gradient
    assert torch.allclose(-node.w.grad, leak_logit.grad, rtol=1e-12, atol=1e-14)


def test_conv_recurrent_equals_the_papers_update() -> None:
    torch.manual_seed(0)
    C, T = 3, 6
    layer = ConvRecurrent(flow_neuron(C, "s"), C).double()
    node = layer.sub_module
    with torch.no_grad():
        node.w.copy_(
            torch.tensor([-1.0, 0.0, 2.0]).view(C, 1, 1)
        )  # leaks far from 1: memory matters
    x = torch.rand(T, 2, C, 5, 4, dtype=torch.float64) * 2
    got = layer(x)
    leak = 1 - torch.sigmoid(node.w.detach())
    thresh = node.v_threshold.detach()
    v = torch.zeros(2, C, 5, 4, dtype=torch.float64)
    z = torch.zeros_like(v)
    for t in range(T):  # v = leak v (1 - z) + (1 - leak)(ff + rec(z)), z = [v >= thresh]
        v = leak * v * (1 - z) + (1 - leak) * (
            x[t] + F.conv2d(z, layer.recurrent.weight, padding=1)
        )
        z = (v >= thresh).double()
        assert torch.equal(got[t], z), t
    assert 0 < float(got.detach().mean()) < 1


def test_streaming_equals_one_call_and_calls_start_from_rest() -> None:
    torch.manual_seed(1)
    net = SpikingFireNet(channels=8, max_flow=5.0)
    with torch.no_grad():
        net.flow_head.pred.bias.fill_(0.3)
    x = (torch.rand(6, 2, 2, 12, 10) < 0.3).float() * 3
    whole = net(x)
    assert torch.equal(net(x), whole)  # no state leaks between calls
    with SF.streaming(net):
        parts = torch.cat([net(x[:2]), net(x[2:5]), net(x[5:])])
    assert torch.equal(parts, whole)
    assert whole.shape == (6, 2, 2, 12, 10) and float(whole.detach().abs().max()) <= 5.0


def test_gradients_reach_every_layer() -> None:
    torch.manual_seed(2)
    net = SpikingFireNet(channels=8)
    x = (torch.rand(4, 1, 2, 16, 16) < 0.4).float() * 4
    (net(x) ** 2).sum().backward()
    for name in ("head.0.weight", "G1.1.recurrent.weight", "R2b.0.weight", "flow_head.pred.weight"):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_evflownet_pads_and_crops() -> None:
    torch.manual_seed(3)
    net = SpikingEVFlowNet(channels=4, num_encoders=3)
    x = (torch.rand(3, 2, 2, 18, 21) < 0.3).float() * 3
    flow = net(x)
    assert flow.shape == (3, 2, 2, 18, 21)
    with SF.streaming(net):
        parts = torch.cat([net(x[:1]), net(x[1:])])
    assert torch.equal(parts, flow)
    flow.abs().sum().backward()
    assert float(net.encoders[0][0][0].weight.grad.abs().sum()) > 0


def test_evflownet_multiscale_predictions() -> None:
    torch.manual_seed(4)
    net = SpikingEVFlowNet(channels=4, num_encoders=3, multiscale=True, threshold=0.4)
    x = (torch.rand(2, 1, 2, 16, 24) < 0.3).float() * 3
    flows = net(x)
    assert isinstance(flows, list) and [tuple(f.shape) for f in flows] == [(2, 1, 2, 16, 24)] * 3

    # predicted at 1/4, 1/2 and full resolution: constant over 4x4, 2x2, 1x1 blocks
    def blocky(f: torch.Tensor, n: int) -> bool:
        return torch.equal(f, f[..., ::n, ::n].repeat_interleave(n, 3).repeat_interleave(n, 4))

    assert blocky(flows[0], 4) and not blocky(flows[0], 8)
    assert blocky(flows[1], 2) and not blocky(flows[1], 4) and not blocky(flows[2], 2)
    assert (
        len(net.coarse_heads) == 2
        and len(SpikingEVFlowNet(channels=4, num_encoders=3).coarse_heads) == 0
    )
    # the official decoders after the first also read the previous (tanh) prediction
    in_channels = [d[1][0].in_channels for d in net.decoders]
    assert in_channels == [2 * 32, 2 * 16 + 2, 2 * 8 + 2]
    with torch.no_grad():
        net.coarse_heads[0].pred.bias.fill_(3.0)
    assert not torch.equal(net(x)[1], flows[1])  # changing a coarse head changes the next
    whole = net(x)
    with SF.streaming(net):  # the fed-back predictions keep streaming equal to one call
        first, second = net(x[:1]), net(x[1:])
    assert all(torch.equal(torch.cat([a, b]), w) for a, b, w in zip(first, second, whole))


def test_threshold_argument_reaches_every_neuron() -> None:
    net = SpikingFireNet(channels=4, threshold=0.5)
    thresholds = [m.v_threshold for m in net.modules() if hasattr(m, "v_threshold")]
    assert len(thresholds) == 7 and all(
        torch.equal(t.detach(), torch.full((4, 1, 1), 0.5)) for t in thresholds
    )
    deep = SpikingEVFlowNet(channels=2, num_encoders=2, threshold=0.3)
    assert all(
        float(m.v_threshold.detach().max()) == pytest.approx(0.3)
        for m in deep.modules()
        if hasattr(m, "v_threshold")
    )


def test_errors() -> None:
    with pytest.raises(ShapeError, match=r"\[T, B, 2, H, W\]"):
        SpikingFireNet()(torch.zeros(2, 1, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"\[T, B, 2, H, W\]"):
        SpikingEVFlowNet()(torch.zeros(1, 2, 8, 8))
    with pytest.raises(ShapeError, match="ConvRecurrent"):
        ConvRecurrent(flow_neuron(3, "s"), 3)(torch.zeros(2, 1, 4, 5, 5))
    with pytest.raises(ConfigurationError, match="threshold"):
        SpikingFireNet(threshold=0.0)


def test_arctan_spike_primitive_is_the_antiderivative_of_its_surrogate() -> None:
    x = torch.linspace(-3, 3, 61, dtype=torch.float64).requires_grad_()
    smooth = ArctanSpike(10.0, spiking=False)
    smooth(x).sum().backward()
    assert torch.allclose(x.grad, 1 / (1 + 10 * x.detach() ** 2), rtol=1e-12)
    assert torch.allclose(ArctanSpike.derivative(x.detach(), 10.0), x.grad, rtol=1e-12)
    assert float(smooth(torch.tensor(-1e6, dtype=torch.float64))) == pytest.approx(0, abs=1e-6)
