"""Spike statistics of a neuron with an analog output (LIAF: ``act(H)``, not spikes).

The monitors, spike rasters, spike regularisers and operation counts read LIAF's spike
decision ``S = Θ(H − θ)``, not its output, checked against a LIF loop by hand (LIAF's
membrane, firing and reset are a LIF's); a layer fed LIAF's output multiplies (MACs),
also where that output is all zeros or of one magnitude (which reads as spikes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow import layers, neurons
from spikeflow.energy import count_operations
from spikeflow.errors import ConfigurationError
from spikeflow.losses import LayerSpikes
from spikeflow.monitor import AttributeMonitor
from spikeflow.plot import record
from spikeflow.training import SpikeMonitor, record_spikes


def lif_spikes(x: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """LIF by hand (decay_input, θ = 1, hard reset to 0): the spikes of ``x`` ``[T, ...]``."""
    v, spikes = torch.zeros_like(x[0]), []
    for xt in x:
        h = v + (xt - v) / tau
        s = (h >= 1.0).to(x.dtype)
        v = h * (1 - s)
        spikes.append(s)
    return torch.stack(spikes)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(layers.Linear(5, 6), neurons.LIAFNode("relu", True))


def test_spike_monitor_counts_the_spike_decision_not_the_output():
    net, x = _net(), torch.rand(6, 4, 5) * 3
    with SpikeMonitor(net) as monitor, torch.no_grad():
        out = net(x)
        want = lif_spikes(net[0](x))
        stats = monitor.summary()[0]
    assert 0 < float(want.sum()) < want.numel() and float(out.sum()) != float(want.sum())
    assert stats.name == "1" and stats.spikes == float(want.sum())
    assert stats.firing_rate == pytest.approx(float(want.sum()) / want.numel(), abs=1e-12)
    # The claim is given back: no spikes kept after the monitor (nor during, once read).
    assert not net[1].store_spike_seq and net[1].spike_seq is None
    # Single-step calls: the same counts.
    F.set_step_mode(net, "s")
    with SpikeMonitor(net) as monitor, torch.no_grad(), F.streaming(net):
        for xt in x:
            net(xt)
        assert monitor.summary()[0].spikes == float(want.sum())


def test_a_layer_kept_by_the_neuron_itself_stays():
    net, x = _net(), torch.rand(6, 4, 5) * 3
    net[1].store_spike_seq = True
    with SpikeMonitor(net), torch.no_grad():
        net(x)
    assert net[1].store_spike_seq and torch.equal(net[1].spike_seq, lif_spikes(net[0](x)))


def test_rasters_regularisers_and_attribute_monitors_read_the_spikes():
    net, x = _net(), torch.rand(6, 4, 5) * 3
    with torch.no_grad():
        want = lif_spikes(net[0](x))
    assert torch.equal(record(net, x)["1"].spikes, want)
    assert torch.equal(record_spikes(net, x)["1"], want[:, 0])
    with AttributeMonitor("spike_seq", False, net, neurons.LIAFNode) as monitor:
        with torch.no_grad():
            net(x)
    assert torch.equal(monitor["1"][0], want) and not net[1].store_spike_seq
    with LayerSpikes(net) as recorded:
        net(x)
        spikes = recorded.spikes["1"]
        assert torch.equal(spikes.detach(), want)
        spikes.sum().backward()  # the surrogate gradient of the spikes
    assert net[0].weight.grad.abs().sum() > 0 and net[1].spike_seq is None


class _AnalogOnly(neurons.LIFNode):
    """An analog output and no record of its spikes: nothing to count."""

    output_is_spikes = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def test_an_analog_layer_without_spikes_is_left_out_or_refused():
    net = nn.Sequential(layers.Linear(3, 3), _AnalogOnly(), neurons.IFNode())
    with SpikeMonitor(net) as monitor:
        net(torch.rand(2, 1, 3))
    assert [s.name for s in monitor.summary()] == ["2"]
    with pytest.raises(ConfigurationError, match=r"\['1'\] output analog values"):
        SpikeMonitor(net, layers=["1"])


def test_a_layer_fed_the_analog_output_multiplies_even_where_it_is_zero():
    """LIAF silent (act(H - θ) = 0 everywhere): the layers it feeds, through pooling and
    flattening, still multiply every input; the layer after a LIF counts its spikes."""
    torch.manual_seed(0)
    net = nn.Sequential(layers.Conv2d(1, 2, 3, padding=1), neurons.LIAFNode("relu", True),
                        layers.MaxPool2d(2), layers.Flatten(), layers.Linear(32, 3),
                        neurons.IFNode(), layers.Linear(3, 2))  # fmt: skip
    with torch.no_grad():
        net[0].weight.fill_(0.01)
        net[0].bias.zero_()
        net[4].weight.fill_(1.0)
        net[4].bias.fill_(1.0)  # the IF after it fires at every step
    x = torch.rand(2, 3, 1, 8, 8)  # T = 2, B = 3
    report = count_operations(net, x)
    fed, after = report.layers[1], report.layers[2]
    assert (fed.name, fed.acs, fed.macs) == ("4", 0, 2 * 3 * 32 * 3)  # every input x weight
    assert fed.spike_calls == 0 and "real" in str(report).splitlines()[2]
    with torch.no_grad():
        spikes = (net[:6](x) != 0).sum()
    assert spikes == 2 * 3 * 3 and (after.name, after.macs, after.acs) == ("6", 0, 18 * 2)
    # Without the LIAF (an output of zeros from a layer that outputs spikes): nothing.
    net[1] = neurons.IFNode()
    assert count_operations(net, x).layers[1].macs == 0
