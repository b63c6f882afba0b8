"""spikeflow.monitor against SpikingJelly 2.0's monitors on the same network (same
records, float64, multi-step and single-step), and under torch.compile (same records as
eager, no recompilation per call, disabling and removing respected)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

from spikeflow import functional as F
from spikeflow import layers, monitor, neurons


def spikeflow_net(step_mode: str = "m", width: int = 16) -> nn.Sequential:
    torch.manual_seed(5)
    net = nn.Sequential(layers.Linear(6, width), neurons.LIFNode(tau=2.0),
                        layers.Linear(width, 5), neurons.LIFNode(tau=2.0)).double()  # fmt: skip
    with torch.no_grad():
        for fc in (net[0], net[2]):
            fc.weight.mul_(3.0)
            fc.bias.add_(1.0)
    F.set_step_mode(net, step_mode)
    return net


@pytest.fixture
def sj():
    mod = pytest.importorskip(
        "spikingjelly.activation_based.monitor", reason="SpikingJelly is not installed"
    )
    from spikingjelly.activation_based import functional, layer, neuron

    def net_like(ours: nn.Sequential, step_mode: str) -> nn.Sequential:
        lif = dict(tau=2.0, step_mode=step_mode, store_v_seq=True)
        theirs = nn.Sequential(layer.Linear(6, 16, step_mode=step_mode), neuron.LIFNode(**lif),
                               layer.Linear(16, 5, step_mode=step_mode),
                               neuron.LIFNode(**lif)).double()  # fmt: skip
        theirs.load_state_dict(ours.state_dict())
        return theirs

    return mod, neuron.LIFNode, functional, net_like


def five_monitors(lib, net, instance, **kw):
    return [
        lib.OutputMonitor(net, instance, **kw),
        lib.InputMonitor(net, instance, **kw),
        lib.AttributeMonitor("v_seq", False, net, instance, **kw),
        lib.GradInputMonitor(net, instance, **kw),
        lib.GradOutputMonitor(net, instance, **kw),
    ]


def assert_same_records(ours, theirs):
    assert ours.monitored_layers == theirs.monitored_layers
    assert ours.name_records_index == theirs.name_records_index
    assert len(ours.records) == len(theirs.records) > 0
    for a, b in zip(ours.records, theirs.records):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)


def test_multi_step_records_equal_spikingjelly(sj):
    sj_monitor, sj_lif, sj_functional, net_like = sj
    ours = spikeflow_net()
    theirs = net_like(ours, "m")
    x = torch.rand(8, 3, 6, dtype=torch.float64)
    g = torch.randn(8, 3, 5, dtype=torch.float64)
    ours_m = five_monitors(monitor, ours, neurons.LIFNode)
    theirs_m = five_monitors(sj_monitor, theirs, sj_lif)
    rates = monitor.OutputMonitor(ours, neurons.LIFNode, lambda s: s.mean())
    sj_rates = sj_monitor.OutputMonitor(theirs, sj_lif, lambda s: s.mean())
    for _ in range(2):  # two batches
        for net in (ours, theirs):
            x_ = x.clone().requires_grad_()
            y = net(x_)
            (y * g).sum().backward()
        sj_functional.reset_net(theirs)  # (spikeflow's starts every batch afresh)
        assert 0.05 < float(y.detach().mean()) < 0.95
    for a, b in zip([*ours_m, rates], [*theirs_m, sj_rates]):
        assert_same_records(a, b)
    assert ours_m[0]["1"][0].requires_grad is False  # ours detached, SJ's keep the graph
    assert theirs_m[0]["1"][0].requires_grad is True
    for m in (*ours_m, *theirs_m):
        m.clear_recorded_data()
        assert len(m.records) == 0 and all(v == [] for v in m.name_records_index.values())


def test_single_step_records_equal_spikingjelly(sj):
    sj_monitor, sj_lif, sj_functional, net_like = sj
    ours = spikeflow_net("s")
    theirs = net_like(ours, "s")
    x = torch.rand(7, 2, 6, dtype=torch.float64)
    pairs = [
        (monitor.OutputMonitor(ours, neurons.LIFNode), sj_monitor.OutputMonitor(theirs, sj_lif)),
        (monitor.AttributeMonitor("v", False, ours, neurons.LIFNode),
         sj_monitor.AttributeMonitor("v", False, theirs, sj_lif)),
        (monitor.InputMonitor(ours, neurons.LIFNode), sj_monitor.InputMonitor(theirs, sj_lif)),
    ]  # fmt: skip
    with torch.no_grad():
        with F.streaming(ours):
            for xt in x:
                ours(xt)
        for xt in x:
            theirs(xt)
        sj_functional.reset_net(theirs)
    for a, b in pairs:
        assert len(a.records) == 14
        assert_same_records(a, b)
    assert torch.equal(pairs[0][0].sequence("3"), torch.stack(pairs[0][1]["3"]))


# -- torch.compile ----------------------------------------------------------------------


def test_compiled_forward_records_as_eager_without_recompiling():
    net = spikeflow_net(width=5)  # (both neurons of one shape: fewer compilations)
    x = torch.rand(6, 2, 6, dtype=torch.float64)
    outputs = monitor.OutputMonitor(net, function_on_output=lambda s: s.mean(dim=(1, 2)))
    membranes = monitor.AttributeMonitor("v_seq", False, net)
    with torch.no_grad():
        net(x)
    eager = [list(m.records) for m in (outputs, membranes)]
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(net, backend="eager")
    for m in (outputs, membranes):
        m.clear_recorded_data()
    with torch.no_grad():
        for _ in range(2):
            compiled(x)
        graphs = counters["stats"]["unique_graphs"]
        for _ in range(3):
            compiled(x)
    assert counters["stats"]["unique_graphs"] == graphs, "recompiled at a later call"
    assert any("torch.compiler.disable" in reason for reason in counters["graph_break"])
    for m, before in zip((outputs, membranes), eager):
        assert len(m) == 5 * len(before)
        for k, record in enumerate(m.records):
            torch.testing.assert_close(record, before[k % len(before)], rtol=1e-12, atol=1e-14)
    outputs.disable()
    with torch.no_grad():
        compiled(x)
    assert len(outputs) == 10 and len(membranes) == 12
    outputs.enable()
    membranes.remove_hooks()
    with torch.no_grad():
        compiled(x)
    assert len(outputs) == 12 and len(membranes) == 12
    assert net[1].v_seq is None and not net[1].store_v_seq


def test_compiled_backward_records_gradients_as_eager():
    net = spikeflow_net(width=5)
    x = torch.rand(6, 2, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(6, 2, 5, dtype=torch.float64)
    grad_in, grad_out = monitor.GradInputMonitor(net), monitor.GradOutputMonitor(net)
    (net(x) * g).sum().backward()
    eager = [list(grad_in.records), list(grad_out.records)]
    grad_in.clear_recorded_data()
    grad_out.clear_recorded_data()
    torch._dynamo.reset()
    (torch.compile(net, backend="eager")(x) * g).sum().backward()
    for m, before in zip((grad_in, grad_out), eager):
        assert len(m) == len(before) == 2
        for a, b in zip(m.records, before):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["OutputMonitor", "GradOutputMonitor"])
def test_fullgraph_compile_of_a_monitored_network_raises(kind):
    net = spikeflow_net()
    getattr(monitor, kind)(net)
    torch._dynamo.reset()
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    with pytest.raises(torch._dynamo.exc.Unsupported):
        compiled(torch.rand(3, 2, 6, dtype=torch.float64, requires_grad=True))
