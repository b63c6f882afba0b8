"""Forward hooks that record or count skip the forward that ``torch.utils.checkpoint``
reruns inside the backward pass, as they skip spikeflow's own recomputation
(``memory.reruns_forward``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from spikeflow import layers, neurons
from spikeflow.energy import OperationCounter
from spikeflow.memory.recompute import reruns_forward
from spikeflow.monitor import OutputMonitor


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(layers.Linear(6, 5), neurons.LIFNode(), layers.Linear(5, 3),
                         neurons.LIFNode())  # fmt: skip


@pytest.mark.parametrize("reentrant", [True, False])
def test_monitors_and_counters_skip_a_checkpointed_rerun(reentrant):
    net = network()
    x = (torch.rand(4, 2, 6) * 20).requires_grad_(True)
    seen = []
    net[0].register_forward_hook(lambda m, a, out: seen.append(reruns_forward()))
    with OutputMonitor(net, neurons.LIFNode) as monitor, OperationCounter(net) as counter:
        out = checkpoint(net, x, use_reentrant=reentrant)
        out.sum().backward()
    assert seen == [False, True]  # the rerun happened, and was told apart
    assert len(monitor.records) == 2  # one per neuron layer, not two
    report = counter.report(samples=2)
    with OperationCounter(net) as plain:
        net(x.detach())
    once = plain.report(samples=2)
    assert (
        once.acs > 0 and once.macs > 0 and (report.acs, report.macs) == (once.acs, once.macs)
    )  # counted once
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_a_forward_outside_any_backward_is_not_a_rerun():
    assert not reruns_forward()
    net = network()
    seen = []
    net[0].register_forward_hook(lambda m, a, out: seen.append(reruns_forward()))
    net(torch.rand(4, 2, 6))
    with torch.no_grad():
        net(torch.rand(4, 2, 6))
    assert seen == [False, False]
