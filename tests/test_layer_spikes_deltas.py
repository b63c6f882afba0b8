"""LayerSpikes(deltas=True): the graded outputs of a sigma-delta network's DeltaEncoder
modules, recorded with their graph for an event-rate loss (Lava-DL's PilotNet SDNN
tutorial's ``relu(mean|x| - max_rate)^2`` per layer), checked against the outputs that
plain forward hooks capture, in multi-step and streaming (single-step) mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError
from spikeflow.functional import reset_net, set_step_mode, streaming
from spikeflow.layers import DeltaEncoder, DeltaSynapse, SigmaDecoder, SigmaDelta
from spikeflow.losses import LayerSpikes


def _pilotnet_like(theta: float = 0.05) -> nn.Sequential:
    """A small PilotNet-shaped SDNN: input delta, conv / conv / dense sigma-delta units,
    a sigma read-out (Lava-DL's Input, Conv, Dense, Output blocks)."""
    torch.manual_seed(0)
    return nn.Sequential(
        DeltaEncoder(theta),
        DeltaSynapse(nn.Conv2d(3, 8, 3, stride=2)),
        SigmaDelta(nn.ReLU(), threshold=theta),
        DeltaSynapse(nn.Conv2d(8, 8, 3, stride=2)),
        SigmaDelta(nn.ReLU(), threshold=theta),
        layers.Flatten(),
        DeltaSynapse(nn.Linear(8 * 7 * 24, 16)),
        SigmaDelta(nn.ReLU(), threshold=theta),
        DeltaSynapse(nn.Linear(16, 1)),
        SigmaDecoder(),
    )


def _frames(t: int = 8, b: int = 2) -> torch.Tensor:
    """A slowly changing sequence of 3 x 33 x 100 frames (PilotNet's input size)."""
    torch.manual_seed(1)
    base = torch.rand(1, b, 3, 33, 100)
    drift = 0.02 * torch.randn(t, b, 3, 33, 100).cumsum(0)
    return (base + drift).clamp(0, 1)


def _hooked(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The DeltaEncoder outputs of ``net(x)`` captured by plain forward hooks."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
        for name, m in net.named_modules()
        if isinstance(m, DeltaEncoder)
    ]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def _event_rate_loss(x: torch.Tensor, max_rate: float = 0.01) -> torch.Tensor:
    """The PilotNet SDNN tutorial's loss on one layer's deltas (written from its text)."""
    return torch.relu(x.abs().mean() - max_rate).pow(2)


def test_deltas_are_recorded_as_the_hooks_see_them_with_their_graph():
    net, x = _pilotnet_like(), _frames()
    expected = _hooked(net, x)
    assert set(expected) == {"0", "2.delta", "4.delta", "7.delta"}
    reset_net(net)
    with LayerSpikes(net, deltas=True) as recorded:
        net(x)
        got = recorded.spikes
        assert list(got) == ["0", "2.delta", "4.delta", "7.delta"]
        for name, value in expected.items():
            torch.testing.assert_close(got[name], value, rtol=0, atol=0)
            assert got[name].shape[:2] == (8, 2)
        # graded and sparse: not 0/1 spikes, and some changes held back
        assert not torch.all((got["2.delta"] == 0) | (got["2.delta"] == 1))
        assert 0 < (got["2.delta"] != 0).float().mean() < 1
        loss = sum(_event_rate_loss(v, 0.0) for v in got.values())
        loss.backward()
        grad = net[1].layer.weight.grad
        assert grad is not None and grad.abs().sum() > 0
        # the next forward replaces what was recorded
        reset_net(net)
        net(x[:3])
        assert recorded.spikes["4.delta"].shape[0] == 3


def test_streaming_steps_are_stacked_into_the_sequence():
    net, x = _pilotnet_like(), _frames(t=5)
    whole = {k: v.detach() for k, v in _hooked(net, x).items()}
    reset_net(net)
    set_step_mode(net, "s")
    with LayerSpikes(net, deltas=True) as recorded, streaming(net):
        for x_t in x:
            net(x_t)
        for name, value in whole.items():
            torch.testing.assert_close(recorded.spikes[name].detach(), value)


def test_a_mixed_network_records_spikes_and_deltas():
    net = nn.Sequential(layers.Linear(6, 8), neurons.LIFNode(v_threshold=0.3), DeltaEncoder(0.1))
    x = torch.rand(4, 3, 6)
    with LayerSpikes(net, deltas=True) as recorded:
        out = net(x)
        assert list(recorded.spikes) == ["1", "2"]
        torch.testing.assert_close(recorded.spikes["2"], out)
    assert LayerSpikes(net).layers.keys() == {"1"}  # deltas are opt-in


def _trained_delta_magnitude(strength: float) -> float:
    """The sigma-delta units' summed mean ``|delta|`` after 15 Adam steps on an MSE
    read-out loss plus ``strength`` times the event-rate loss of every recorded layer
    (same start and data)."""
    net, x = _pilotnet_like(theta=0.02), _frames(t=6)
    target = x.mean((2, 3, 4)).unsqueeze(-1)  # a steering-like regression target
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    units = ("2.delta", "4.delta", "7.delta")
    with LayerSpikes(net, deltas=True) as recorded:
        for _ in range(15):
            reset_net(net)
            opt.zero_grad()
            out = net(x)
            events = sum(_event_rate_loss(v, 0.0) for v in recorded.spikes.values())
            (nn.functional.mse_loss(out, target) + strength * events).backward()
            opt.step()
        reset_net(net)
        with torch.no_grad():
            net(x)
        return sum(float(recorded.spikes[name].abs().mean()) for name in units)


def test_event_rate_loss_on_the_recorded_deltas_lowers_the_event_rate():
    plain, regularised = _trained_delta_magnitude(0.0), _trained_delta_magnitude(100.0)
    assert regularised < 0.5 * plain  # measured: 0.029 against 0.094


def test_deltas_option_errors():
    sdnn = nn.Sequential(DeltaEncoder(0.1), DeltaSynapse(nn.Linear(4, 2)), SigmaDecoder())
    with pytest.raises(ConfigurationError, match="pass deltas=True"):
        LayerSpikes(sdnn)
    with pytest.raises(ConfigurationError, match="deltas must be True or False"):
        LayerSpikes(sdnn, deltas="yes")
    with pytest.raises(ConfigurationError, match=r"no spiking layer.*nor a DeltaEncoder"):
        LayerSpikes(nn.Sequential(nn.Linear(4, 2)), deltas=True)
