"""Real Spike: the amplitude layer, and the folded binary-spike network equals the
trained real-spike network in float64 (convolutions with groups, pooling, flatten,
dropout, linear layers, one amplitude per layer), and the fold's errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers
from spikeflow.conversion import fold_real_spikes
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.functional import reset_net
from spikeflow.layers import RealSpike
from spikeflow.neurons import LIFNode

F64 = dict(rtol=1e-12, atol=1e-12)


def _net(pool: nn.Module) -> nn.Sequential:
    return nn.Sequential(
        layers.Conv2d(2, 6, 3, padding=1),
        layers.BatchNorm2d(6),
        LIFNode(),
        RealSpike(6),
        layers.Conv2d(6, 8, 3, padding=1, groups=2, padding_mode="replicate"),
        layers.BatchNorm2d(8),
        LIFNode(),
        RealSpike(8),
        pool,
        layers.Flatten(),
        layers.Dropout(0.3),
        layers.Linear(8 * 4 * 4, 12),
        LIFNode(),
        RealSpike(),  # one amplitude for the layer
        layers.Linear(12, 5),
    )


def _trained_like(net: nn.Sequential, negative: bool) -> nn.Sequential:
    """Random amplitudes (some negative if asked) and BN statistics, in eval mode."""
    g = torch.Generator().manual_seed(7)
    net = net.double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, RealSpike):
                a = torch.rand(m.amplitude.shape, generator=g, dtype=torch.float64) * 2 + 0.2
                m.amplitude.copy_(-a if negative and m.amplitude.dim() else a)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 2 + 2)  # (fire)
            if isinstance(m, nn.Linear):
                m.weight.mul_(6.0)
    return net.eval()


def _binary_inputs(net: nn.Module) -> list[torch.Tensor]:
    """What each conv or linear layer of ``net`` reads in the next forward."""
    seen: list[torch.Tensor] = []
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    return seen


@pytest.mark.parametrize(
    ("pool", "negative"),
    [
        (layers.MaxPool2d(2), False),
        (layers.AvgPool2d(2), True),
        (layers.AdaptiveAvgPool2d(4), True),
    ],
)
def test_folded_binary_network_equals_the_real_spike_network_float64(pool, negative):
    torch.manual_seed(0)
    net = _trained_like(_net(pool), negative)
    x = torch.rand(4, 3, 2, 8, 8, dtype=torch.float64) * 3
    reset_net(net)
    expected = net(x)
    folded = fold_real_spikes(net)
    assert not any(isinstance(m, RealSpike) for m in folded.modules())
    assert any(isinstance(m, RealSpike) for m in net.modules())  # a copy by default
    seen = _binary_inputs(folded)
    reset_net(folded)
    out = folded(x)
    torch.testing.assert_close(out, expected, **F64)
    assert len(seen) == 4
    for tensor in seen[1:]:  # all but the image are binary spikes (or their 2x2 means
        assert torch.equal((4 * tensor).round(), 4 * tensor)  # after an average pool)
        assert tensor.min() == 0 and tensor.max() == 1  # and some fire (not vacuous)


def test_fold_in_place_and_a_linear_reading_features_directly():
    torch.manual_seed(1)
    net = nn.Sequential(layers.Linear(5, 7), LIFNode(), RealSpike(7), layers.Linear(7, 3))
    net = _trained_like(net, negative=True)
    x = torch.rand(6, 2, 5, dtype=torch.float64) * 2
    reset_net(net)
    expected = net(x)
    same = fold_real_spikes(net, inplace=True)
    assert same is net and isinstance(net[2], nn.Identity)
    reset_net(net)
    torch.testing.assert_close(net(x), expected, **F64)


def test_real_spike_layer_forward_and_gradient():
    layer = RealSpike(3, init=0.5)
    x = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]]).reshape(2, 1, 3)
    with torch.no_grad():
        layer.amplitude.copy_(torch.tensor([0.5, 2.0, -1.0]))
    y = layer(x)
    torch.testing.assert_close(y, x * torch.tensor([0.5, 2.0, -1.0]))
    y.sum().backward()
    torch.testing.assert_close(layer.amplitude.grad, x.sum((0, 1)))
    assert RealSpike(4).amplitude.tolist() == [1.0] * 4
    assert RealSpike().amplitude.shape == ()
    x5 = torch.rand(2, 3, 4, 5, 5)
    torch.testing.assert_close(RealSpike(4, init=2.0)(x5), 2 * x5)


def test_real_spike_layer_errors():
    with pytest.raises(ConfigurationError, match="num_channels"):
        RealSpike(0)
    with pytest.raises(ConfigurationError, match="dim"):
        RealSpike(3, dim=0)
    with pytest.raises(ConfigurationError, match="init"):
        RealSpike(3, init=float("nan"))
    with pytest.raises(ShapeError, match="num_channels=3"):
        RealSpike(3)(torch.rand(2, 2, 4, 5))
    with pytest.raises(DTypeError, match="floating-point"):
        RealSpike(3)(torch.ones(2, 2, 3, dtype=torch.int64))


@pytest.mark.parametrize(
    ("net", "message"),
    [
        (nn.Sequential(RealSpike(4), LIFNode(), layers.Linear(4, 2)), "found LIFNode"),
        (nn.Sequential(layers.Linear(3, 4), RealSpike(4)), "is the last layer"),
        (nn.Sequential(RealSpike(4), layers.Flatten(), layers.Linear(10, 2)), "do not divide"),
        (nn.Sequential(RealSpike(4), layers.Conv2d(3, 2, 1)), "in_channels=3"),
        (nn.Sequential(RealSpike(4), layers.WSConv2d(4, 2, 1)), "weight-standardised"),
    ],
)
def test_fold_errors_name_the_real_spike_and_the_problem(net, message):
    with pytest.raises(ConfigurationError, match=message):
        fold_real_spikes(net)


def test_fold_refuses_a_negative_amplitude_before_max_pool_and_a_loose_real_spike():
    net = nn.Sequential(RealSpike(2), layers.MaxPool2d(2), layers.Conv2d(2, 2, 1))
    with torch.no_grad():
        net[0].amplitude.fill_(-1.0)
    with pytest.raises(ConfigurationError, match="negative amplitude"):
        fold_real_spikes(net)

    class Loose(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.spike = RealSpike(3)
            self.fc = layers.Linear(3, 2)

    with pytest.raises(ConfigurationError, match=r"outside an nn\.Sequential.*spike"):
        fold_real_spikes(Loose())


def _amplitudes(net: nn.Module) -> nn.Module:
    net = net.double().eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, RealSpike):
                m.amplitude.copy_(torch.rand(m.amplitude.shape, generator=g) * 3 - 1)
    return net


def _spikes(*shape: int) -> torch.Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(5)) > 0.5).double()


@pytest.mark.parametrize(
    ("net", "shape", "message"),
    [  # each folded to a different output before the layout was followed
        (
            nn.Sequential(RealSpike(4, dim=3), layers.Flatten(), layers.Linear(20, 3)),
            (3, 2, 5, 4),
            "merges behind dim 2",
        ),  # channels last, not the flatten's first
        (nn.Sequential(RealSpike(4), layers.Linear(4, 3)), (3, 2, 4, 4), "reads the last dim"),
        (
            nn.Sequential(RealSpike(4), layers.Flatten(2), layers.Linear(4, 3)),
            (3, 2, 4, 2, 2),
            "reads the last dim",
        ),  # flattens the pixels, not the channels
        (nn.Sequential(RealSpike(4), layers.Linear(4, 3)), (3, 2, 4, 5, 4), "reads the last dim"),
        (
            nn.Sequential(RealSpike(4, dim=2), nn.Conv2d(4, 3, 3)),
            (2, 4, 4, 5),
            "reads its channels from dim 1",
        ),  # one step [B, C, H, W]: dim 2 is H
    ],
)
def test_fold_refuses_a_real_spike_whose_channels_the_next_layer_does_not_read(net, shape, message):
    net = _amplitudes(net)
    net(_spikes(*shape))  # trains (runs) as built: the shapes fit, the layout does not
    with pytest.raises(ConfigurationError, match=rf"RealSpike at '0'.*{message}"):
        fold_real_spikes(net)


class _Residual(nn.Module):
    def __init__(self, shared_outside: bool) -> None:
        super().__init__()
        spike = RealSpike(4)
        if shared_outside:
            self.spike = spike
        self.body = nn.Sequential(spike, layers.Conv2d(4, 4, 3, padding=1), layers.BatchNorm2d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.spike(x) if hasattr(self, "spike") else x
        return self.body(x) + skip


@pytest.mark.parametrize(
    ("net", "shape", "run_first"),
    [
        (nn.Sequential(RealSpike(4), nn.Flatten(0, 1), nn.Conv2d(4, 3, 3)), (3, 2, 4, 5, 5), True),
        (nn.Sequential(RealSpike(4, dim=1), nn.Flatten(), nn.Linear(36, 3)), (2, 4, 3, 3), True),
        (
            nn.Sequential(
                RealSpike(4), layers.Flatten(1, 2), layers.Flatten(), layers.Linear(24, 3)
            ),
            (3, 2, 4, 2, 3),
            True,
        ),
        (
            nn.Sequential(RealSpike(4), nn.Flatten(0, 1), nn.Flatten(), nn.Linear(24, 3)),
            (3, 2, 4, 2, 3),
            True,
        ),
        (_Residual(shared_outside=False), (3, 2, 4, 5, 5), True),  # BN after the conv
        (
            nn.Sequential(
                layers.Conv2d(2, 4, 3, padding=1),
                RealSpike(4),
                layers.AvgPool2d(2),
                layers.Flatten(),
                layers.Linear(16, 3),
            ),
            (3, 2, 2, 4, 4),
            False,
        ),
        (nn.Sequential(RealSpike(4), layers.Conv1d(4, 3, 3, groups=1)), (3, 2, 4, 6), False),
    ],
)
def test_fold_follows_the_channels_through_flattens_and_step_layouts(net, shape, run_first):
    net = _amplitudes(net)
    x = _spikes(*shape)
    expected = net(x)
    if not run_first:  # a loaded model never run: the layout follows from the layers
        for m in net.modules():
            if isinstance(m, RealSpike):
                m.input_ndim = None
    torch.testing.assert_close(fold_real_spikes(net)(x), expected, **F64)


def test_fold_refuses_a_shared_layer_a_real_spike_also_used_outside_and_an_unknown_layout():
    conv = layers.Conv2d(4, 4, 3, padding=1)
    shared = nn.Sequential(RealSpike(4), conv, RealSpike(4), conv)
    with pytest.raises(ConfigurationError, match=r"Conv2d '3'.*also reads the RealSpike at '0'"):
        fold_real_spikes(shared)
    with pytest.raises(ConfigurationError, match=r"also registered outside one.*: spike"):
        fold_real_spikes(_Residual(shared_outside=True))
    never_run = nn.Sequential(RealSpike(4), layers.Linear(4, 3))
    with pytest.raises(ConfigurationError, match="RealSpike at '0' has not run yet"):
        fold_real_spikes(never_run)
    never_run(torch.rand(3, 2, 4))
    assert isinstance(fold_real_spikes(never_run)[0], nn.Identity)


def test_a_refused_fold_in_place_leaves_the_model_unchanged():
    """Before: the RealSpikes before the refused one were already folded into ``net``."""
    net = _amplitudes(nn.Sequential(RealSpike(4), layers.Linear(4, 4), RealSpike(4)))
    net(torch.rand(2, 3, 4, dtype=torch.float64))
    weight = net[1].weight.detach().clone()
    with pytest.raises(ConfigurationError, match="RealSpike at '2' is the last layer"):
        fold_real_spikes(net, inplace=True)
    assert isinstance(net[0], RealSpike) and torch.equal(net[1].weight, weight)
