"""SpikeMonitor under torch.compile (what ``spikeflow train --compile`` records as the
training firing rates): a compiled network's counts equal an eager copy's, a SpikeTap's
per-step calls included, and recording compiles nothing more (its sums are
tensors the graph adds to, not Python numbers Dynamo guards on): one graph."""

from __future__ import annotations

import copy

import torch
from torch import nn

from spikeflow.functional import reset_net
from spikeflow.neurons import LIFNode, SpikeTap
from spikeflow.training import SpikeMonitor


class _TapNet(nn.Module):
    """Spikes computed in its own loop (passed step by step through a SpikeTap, as
    DECOLLE's layers pass theirs), then a LIF neuron."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.tap = SpikeTap(4)
        self.lif = LIFNode(tau=2.0, v_threshold=0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.linear(x) > 0).float()
        steps = [self.tap.pass_step(z[t : t + 1], t > 0) for t in range(x.shape[0])]
        return self.lif(torch.cat(steps))


def test_a_compiled_network_records_what_an_eager_one_does_without_recompiling():
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):  # counts the graphs Dynamo compiles
        graphs.append(gm)
        return gm.forward

    torch.manual_seed(0)
    net = _TapNet()
    eager = copy.deepcopy(net)
    compiled = torch.compile(net, backend=backend)
    monitor, reference = SpikeMonitor(net, membrane=True), SpikeMonitor(eager, membrane=True)
    for _epoch in range(2):
        for _batch in range(3):
            x = torch.randn(2, 2, 3)
            reset_net(net), reset_net(eager)
            torch.testing.assert_close(compiled(x), eager(x), rtol=0, atol=0)
        recorded = monitor.state_dict()
        assert recorded == reference.state_dict()
        assert recorded["tap"]["samples"] == 6 and recorded["tap"]["elements"] == 48
        assert 0 < recorded["tap"]["spikes"] < 48 and recorded["lif"]["spikes"] > 0
        monitor.reset(), reference.reset()
    # One graph for all six calls, the resets included (the sums are tensors from the
    # start; Python counters made Dynamo compile again as they changed).
    assert len(graphs) == 1
    monitor.remove(), reference.remove()
    torch._dynamo.reset()


def test_the_sums_follow_a_model_moved_after_its_monitor() -> None:
    """A model moved to another device after its monitor was made (the meta device here,
    as no GPU is at hand): every sum and count follows the spikes there, and so do the
    ones ``reset()`` makes."""
    net = nn.Sequential(nn.Linear(4, 3), LIFNode())
    monitor = SpikeMonitor(net)
    net.to("meta")
    net(torch.rand(2, 5, 4, device="meta"))
    (acc,) = monitor._acc.values()
    fields = ("spikes", "v_sum", "v_sumsq", "elements", "samples", "v_count")
    assert {getattr(acc, f).device.type for f in fields} == {"meta"}
    monitor.reset()
    (acc,) = monitor._acc.values()
    assert acc.samples.device.type == "meta"
