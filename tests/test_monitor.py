"""spikeflow.monitor: hook monitors of outputs, inputs, attributes and gradients,
checked against hand-computed neurons and autograd in float64, in multi-step, streamed
single-step and chunked calls, with modules called several times per forward, and with
recomputed blocks (whose recomputation must not be recorded)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.memory import is_recomputing, recompute_blocks
from spikeflow.monitor import (
    AttributeMonitor,
    GradInputMonitor,
    GradOutputMonitor,
    InputMonitor,
    OutputMonitor,
    select_modules,
)
from spikeflow.training.monitors import select_layers

ROOT = Path(__file__).resolve().parents[1]


def lif_reference(x: torch.Tensor, tau: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """LIF by hand (decay_input, threshold 1, hard reset to 0): spikes and v after reset."""
    v = torch.zeros_like(x[0])
    spikes, vs = [], []
    for xt in x:
        h = v + (xt - v) / tau
        s = (h >= 1.0).to(x.dtype)
        v = h * (1 - s)
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs)


def two_layer_net(step_mode: str = "m") -> nn.Sequential:
    torch.manual_seed(1)
    net = nn.Sequential(
        layers.Linear(5, 12), neurons.LIFNode(tau=2.0), layers.Linear(12, 4),
        neurons.LIFNode(tau=2.0),
    ).double()  # fmt: skip
    F.set_step_mode(net, step_mode)
    with torch.no_grad():  # enough input for every layer to spike, not always
        for fc in (net[0], net[2]):
            fc.weight.mul_(3.0)
            fc.bias.add_(1.0)
    return net


def by_hand(net: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    h1 = net[0](x)
    s1, v1 = lif_reference(h1)
    h3 = net[2](s1)
    s3, v3 = lif_reference(h3)
    assert 0.05 < s1.mean() < 0.95 and 0.05 < s3.mean() < 0.95, "too few spikes to compare"
    return {"h1": h1, "s1": s1, "v1": v1, "h3": h3, "s3": s3, "v3": v3}


def test_records_equal_hand_computed_layers():
    net = two_layer_net()
    x = torch.rand(7, 3, 5, dtype=torch.float64)
    outputs, inputs = OutputMonitor(net), InputMonitor(net)
    membranes = AttributeMonitor("v_seq", False, net)
    rates = OutputMonitor(net, function_on_output=lambda s: s.mean(dim=(1, 2)))
    with torch.no_grad():
        net(x)
        net(x)  # a second batch: one more record per layer
        ref = by_hand(net, x)
    for m in (outputs, inputs, membranes, rates):
        assert m.monitored_layers == ["1", "3"] and len(m) == 4
        assert m.name_records_index == {"1": [0, 2], "3": [1, 3]}
    for name, s, h, v in (("1", "s1", "h1", "v1"), ("3", "s3", "h3", "v3")):
        for k in range(2):
            assert torch.equal(outputs[name][k], ref[s])
            assert torch.equal(inputs[name][k], ref[h])
            torch.testing.assert_close(membranes[name][k], ref[v], rtol=0, atol=1e-12)
            torch.testing.assert_close(rates[name][k], ref[s].mean(dim=(1, 2)))
    assert outputs[1] is outputs["3"][0] and rates[0].shape == (7,)
    # The monitor turned v_seq on for itself and drops it after reading.
    assert net[1].store_v_seq and net[1].v_seq is None
    assert len(net[1]._forward_hooks) == 4  # outputs, rates, membranes, the drop
    membranes.remove_hooks()
    assert not net[1].store_v_seq and len(net[1]._forward_hooks) == 2


def test_records_are_detached_unless_asked():
    net = two_layer_net()
    x = torch.rand(6, 2, 5, dtype=torch.float64)
    kept = OutputMonitor(net)
    with_graph = OutputMonitor(net, detach=False)
    on_cpu = InputMonitor(net, function_on_input=lambda h: h.sum(), cpu=True)
    net(x)
    assert all(r.grad_fn is None and not r.requires_grad for r in kept.records)
    assert all(r.grad_fn is not None for r in with_graph.records)
    assert all(r.dim() == 0 and r.device.type == "cpu" for r in on_cpu.records)
    assert on_cpu.records[0].grad_fn is None  # the function ran on the detached input


def test_named_tuples_and_structures_are_recorded_as_they_are():
    # EPropRSNN returns a NamedTuple (y, spikes): detaching it rebuilt the tuple from one
    # generator argument, a TypeError that broke the network's forward call.
    from spikeflow.learn import EPropRSNN

    torch.manual_seed(0)
    net = nn.Sequential(EPropRSNN(3, 2, n_lif=6)).double()
    x = torch.rand(4, 2, 3, dtype=torch.float64, requires_grad=True)
    expected = net(x)
    outputs = OutputMonitor(net, EPropRSNN, cpu=True)
    inputs = InputMonitor(net, nn.Sequential, function_on_input=lambda v: {"x": [v]})
    got = net(x)
    assert torch.equal(got.y, expected.y) and torch.equal(got.spikes, expected.spikes)
    (record,) = outputs.records
    assert type(record) is type(expected) and record._fields == ("y", "spikes")
    assert torch.equal(record.y, expected.y) and not record.y.requires_grad
    assert torch.equal(record.spikes, expected.spikes)
    assert not inputs.records[0]["x"][0].requires_grad


class Moved(torch.Tensor):
    """A tensor that notes each ``Tensor.cpu`` call on it (there is no GPU to move from
    in CI: this checks that ``cpu=True`` moves what the function returns)."""

    calls: ClassVar[list[str]] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.cpu:
            cls.calls.append("cpu")
        return super().__torch_function__(func, types, args, kwargs or {})


def test_cpu_moves_what_the_function_returns():
    net = two_layer_net()
    Moved.calls = []
    OutputMonitor(net, function_on_output=lambda s: s.as_subclass(Moved))
    moved = OutputMonitor(net, function_on_output=lambda s: s.as_subclass(Moved), cpu=True)
    with torch.no_grad():
        net(torch.rand(3, 2, 5, dtype=torch.float64))
    assert Moved.calls == ["cpu", "cpu"]  # the monitor with cpu=True, each layer
    assert all(type(r) is Moved for r in moved.records)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cpu_moves_records_off_the_gpu():
    net = two_layer_net().cuda()
    m = OutputMonitor(net, cpu=True)
    plain = OutputMonitor(net)
    net(torch.rand(4, 2, 5, dtype=torch.float64, device="cuda"))
    assert all(r.device.type == "cpu" for r in m.records)
    assert all(r.device.type == "cuda" for r in plain.records)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(m.records, plain.records))


def test_gradients_equal_autograd():
    net = two_layer_net()
    x = torch.rand(7, 3, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(7, 3, 4, dtype=torch.float64)
    # the same network layer by layer, its intermediate tensors kept
    h1 = net[0](x)
    s1 = net[1](h1)
    h3 = net[2](s1)
    s3 = net[3](h3)
    dh1, ds1, dh3 = torch.autograd.grad((s3 * g).sum(), [h1, s1, h3])
    grad_in, grad_out = GradInputMonitor(net), GradOutputMonitor(net)
    norms = GradOutputMonitor(net, function_on_grad_output=torch.linalg.vector_norm)
    (net(x) * g).sum().backward()
    assert float(dh1.abs().sum()) > 0 and float(ds1.abs().sum()) > 0
    # backward order: the last layer first
    assert grad_in.name_records_index == {"1": [1], "3": [0]}
    torch.testing.assert_close(grad_out["3"][0], g, rtol=0, atol=0)
    torch.testing.assert_close(grad_in["3"][0], dh3, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_out["1"][0], ds1, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_in["1"][0], dh1, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(norms["1"][0], ds1.norm())


def test_input_needing_no_gradient_gives_none_without_the_function():
    plif = neurons.ParametricLIFNode().double()  # its output needs a gradient (of tau)
    calls = []
    m = GradInputMonitor(plif, function_on_grad_input=lambda g: calls.append(g) or g)
    with pytest.warns(UserWarning, match="no inputs require gradients"):  # PyTorch's
        plif(torch.rand(4, 2, 3, dtype=torch.float64) * 3).sum().backward()
    assert plif.w.grad is not None
    assert m.records == [None] and calls == []


def test_single_step_stream_equals_multi_step_call():
    x = torch.rand(9, 3, 5, dtype=torch.float64)
    whole = two_layer_net("m")
    stepped = two_layer_net("s")
    m_whole, v_whole = OutputMonitor(whole), AttributeMonitor("v_seq", False, whole)
    m_step, v_step = OutputMonitor(stepped), AttributeMonitor("v_seq", False, stepped)
    carried = AttributeMonitor("v", False, stepped)
    before = AttributeMonitor("v", True, stepped)
    inputs = InputMonitor(stepped)
    with torch.no_grad():
        whole(x)
        with F.streaming(stepped):
            for xt in x:
                stepped(xt)
    for name in ("1", "3"):
        assert len(m_step[name]) == 9 and m_step[name][0].shape[0] == 3  # [B, N] each
        assert torch.equal(m_step.sequence(name), m_whole[name][0])
        assert torch.equal(m_whole.sequence(name), m_whole[name][0])
        v = torch.cat(v_step[name])  # [1, B, N] per step
        torch.testing.assert_close(v, v_whole[name][0], rtol=0, atol=1e-12)
        torch.testing.assert_close(torch.stack(carried[name]), v, rtol=0, atol=1e-12)
        assert before[name][0] is None  # no carried state before the first step
        torch.testing.assert_close(torch.stack(before[name][1:]), v[:-1], rtol=0, atol=1e-12)
    with torch.no_grad():  # (a matmul per step and one over all steps: rounding apart)
        torch.testing.assert_close(inputs.sequence("1"), whole[0](x), rtol=1e-14, atol=1e-14)


def test_chunks_of_a_stream_join_in_time():
    net = two_layer_net()
    x = torch.rand(10, 2, 5, dtype=torch.float64)
    m = OutputMonitor(net, layers="3")
    with torch.no_grad():
        whole = net(x)
        with F.streaming(net):
            for chunk in x.split([4, 1, 5]):
                net(chunk)
    assert [r.shape[0] for r in m["3"]] == [10, 4, 1, 5]
    assert torch.equal(torch.cat(m["3"][1:]), whole)
    m.clear_recorded_data()
    assert len(m) == 0 and m["3"] == []
    with F.streaming(net), torch.no_grad():
        for chunk in x.split([4, 1, 5]):
            net(chunk)
    assert torch.equal(m.sequence("3"), whole)


def test_a_module_called_several_times_records_every_call():
    torch.manual_seed(2)
    lif = neurons.LIFNode(tau=2.0).double()
    fc1, fc2 = layers.Linear(4, 6).double(), layers.Linear(6, 6).double()
    net = nn.Sequential(fc1, lif, fc2, lif)  # one neuron object, two places
    with torch.no_grad():
        fc1.weight.mul_(4.0)
        fc2.weight.mul_(4.0)
    x = torch.rand(5, 2, 4, dtype=torch.float64, requires_grad=True)
    outputs, grads = OutputMonitor(net), GradOutputMonitor(net)
    assert outputs.monitored_layers == ["1"]  # registered twice, named and hooked once
    y = net(x)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    outputs.disable()
    grads.disable()
    s1 = lif(fc1(x))
    assert len(outputs["1"]) == 2
    assert torch.equal(outputs["1"][0], s1.detach()) and torch.equal(outputs["1"][1], y)
    (ds1,) = torch.autograd.grad((lif(fc2(s1)) * g).sum(), [s1])
    assert len(grads["1"]) == 2  # backward order: the second call first
    assert torch.equal(grads["1"][0], g)
    torch.testing.assert_close(grads["1"][1], ds1, rtol=1e-12, atol=1e-14)


def test_steps_of_a_container_are_calls():
    """A container runs its single-step neuron once per step: T records, in order."""
    torch.manual_seed(3)
    inner = neurons.LIFNode(tau=2.0, step_mode="s").double()
    net = nn.Sequential(layers.Linear(3, 5), layers.MultiStepContainer(inner)).double()
    x = torch.rand(6, 2, 3, dtype=torch.float64) * 4
    m = OutputMonitor(net, instance=neurons.LIFNode)
    grads = GradInputMonitor(net, instance=neurons.LIFNode)
    g = torch.randn(6, 2, 5, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    (net(xr) * g).sum().backward()
    assert m.monitored_layers == ["1.0"] and len(m) == 6
    m.disable()
    grads.disable()
    h = net[0](x)
    spikes, _ = lif_reference(h.detach())
    assert torch.equal(m.sequence("1.0"), spikes)
    hh = h.detach().requires_grad_()
    (dh,) = torch.autograd.grad((net[1](hh) * g).sum(), [hh])
    assert len(grads) == 6  # the last step first
    torch.testing.assert_close(torch.stack(grads.records[::-1]), dh, rtol=1e-12, atol=1e-14)


def recomputing_net() -> nn.Sequential:
    torch.manual_seed(4)
    block = nn.Sequential(layers.Linear(5, 8), neurons.LIFNode(), layers.Linear(8, 8),
                          neurons.LIFNode())  # fmt: skip
    net = nn.Sequential(block, layers.Linear(8, 3), neurons.LIFNode()).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(4.0)
    return net


def run_all_monitors(net, x, g):
    kw = dict(instance=neurons.LIFNode)
    monitors = {
        "out": OutputMonitor(net, **kw), "in": InputMonitor(net, **kw),
        "v": AttributeMonitor("v_seq", False, net, **kw),
        "gin": GradInputMonitor(net, **kw), "gout": GradOutputMonitor(net, **kw),
    }  # fmt: skip
    (net(x) * g).sum().backward()
    return monitors


def test_recomputation_is_not_recorded():
    x = torch.rand(6, 2, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(6, 2, 3, dtype=torch.float64)
    plain = run_all_monitors(recomputing_net(), x, g)
    net = recomputing_net()
    assert recompute_blocks(net, ["0"]) == ["0"]
    recomputed_calls = []
    net[0].module[1].register_forward_hook(lambda *a: recomputed_calls.append(is_recomputing()))
    ours = run_all_monitors(net, x, g)
    assert recomputed_calls == [False, True], "the block was not recomputed: nothing tested"
    for key, monitor in ours.items():
        assert monitor.monitored_layers == ["0.module.1", "0.module.3", "2"]
        assert len(monitor) == 3, key  # one per layer: the recomputation left no record
        for a, b in zip(monitor.records, plain[key].records):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert net[0].module[1].v_seq is None  # dropped after the monitor read it
    for monitor in ours.values():
        monitor.close()
    lif = net[0].module[1]
    assert not lif.store_v_seq and len(lif._forward_hooks) == 1  # the test's own hook


def test_enable_disable_close_and_context():
    net = two_layer_net()
    x = torch.rand(3, 2, 5, dtype=torch.float64)
    with OutputMonitor(net) as m, torch.no_grad():
        assert m.enabled and m.is_enable()
        m.disable()
        net(x)
        assert len(m) == 0 and not m.is_enable()
        m.enable()
        net(x)
        assert len(m) == 2
        m.enabled = False
        net(x)
        assert len(m) == 2
        m.enabled = True
    assert m.hooks == [] and not net[1]._forward_hooks and not m.enabled
    with torch.no_grad():
        net(x)
    assert len(m) == 2  # records kept after close
    m.remove_hooks()  # again: nothing to do
    assert "records=2" in repr(m) and "OutputMonitor" in repr(m)


def test_own_store_v_seq_is_kept():
    net = two_layer_net()
    net[1].store_v_seq = True
    m = AttributeMonitor("v_seq", False, net, layers=["1", "3"])
    with torch.no_grad():
        net(torch.rand(4, 2, 5, dtype=torch.float64))
    assert net[1].v_seq is not None and net[3].v_seq is None  # 3 dropped after reading
    assert torch.equal(m["1"][0], net[1].v_seq)
    m.close()
    assert net[1].store_v_seq and not net[3].store_v_seq


def test_selection_by_instance_names_and_predicate():
    net = two_layer_net()
    assert list(select_modules(net)) == ["1", "3"]  # the spiking layers
    assert list(select_modules(net, nn.Linear)) == ["0", "2"]
    assert list(select_modules(net, layers=["2", "1", "2"])) == ["2", "1"]
    assert list(select_modules(net, where=lambda n, m: n in "03")) == ["0", "3"]
    assert list(select_modules(net, (nn.Linear, neurons.LIFNode), where=lambda n, m: n > "0")) == [
        "1", "2", "3",
    ]  # fmt: skip
    assert list(select_modules(net, nn.Sequential)) == ["(root)"]
    # the training monitors' choice, for what both can choose
    assert select_modules(net) == select_layers(net, None)
    assert select_modules(net, layers=["3", "1"]) == select_layers(net, ["3", "1"])
    linear = OutputMonitor(net, layers="0")
    with torch.no_grad():
        net(torch.rand(2, 1, 5, dtype=torch.float64))
    assert linear.monitored_layers == ["0"] and linear["0"][0].shape == (2, 1, 12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(layers=["1", "9"]), r"no module named \['9'\].*'\(root\)', '0', '1', "),
        (dict(instance=nn.Linear, layers="1"), "no module of the chosen instance named"),
        (dict(instance=int), "instance must be an nn.Module subclass"),
        (dict(instance=(nn.Linear, "x")), "instance must be"),
        (dict(where="1"), "where must be a callable"),
        (dict(instance=nn.Conv2d), "nothing to monitor"),
        (dict(layers=[1]), "layers must be module names"),
        (dict(detach="yes"), "detach must be True or False"),
        (dict(cpu=1), "cpu must be True or False"),
        (dict(function_on_output=3), "must be callable"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        OutputMonitor(two_layer_net(), **kwargs)


def test_bad_uses_are_named():
    net = two_layer_net()
    with pytest.raises(ConfigurationError, match=r"net must be an nn\.Module"):
        OutputMonitor([net])
    with pytest.raises(ConfigurationError, match=r"\['1', '3'\].*no attribute 'v_sq'"):
        AttributeMonitor("v_sq", False, net)
    with pytest.raises(ConfigurationError, match="pre_forward must be True or False"):
        AttributeMonitor("v", "after", net)
    m = OutputMonitor(net, function_on_output=lambda s: s.sum())
    with pytest.raises(ConfigurationError, match="watches no module named 'lif'"):
        m["lif"]
    with pytest.raises(ConfigurationError, match="a record number"):
        m[1.5]
    with pytest.raises(ConfigurationError, match="no record of '1' yet"):
        m.sequence("1")
    with torch.no_grad():
        net(torch.rand(3, 2, 5, dtype=torch.float64))
    with pytest.raises(ShapeError, match="no time axis"):
        m.sequence("1")
    pairs = OutputMonitor(net, function_on_output=lambda s: (s, s))
    with torch.no_grad():
        net(torch.rand(3, 2, 5, dtype=torch.float64))
    with pytest.raises(DTypeError, match="is a tuple, not a tensor"):
        pairs.sequence("3")
    with torch.no_grad():
        net(torch.rand(3, 4, 5, dtype=torch.float64))  # another batch size
    m.clear_recorded_data()
    shapes = OutputMonitor(net, layers="3")
    with torch.no_grad():
        net(torch.rand(3, 2, 5, dtype=torch.float64))
        net(torch.rand(3, 4, 5, dtype=torch.float64))
    with pytest.raises(ShapeError, match=r"do not join in time: \[\(3, 2, 4\), \(3, 4, 4\)\]"):
        shapes.sequence("3")


def test_docs_monitors_runs():
    """Every python block of docs/monitors.md, in order, in one namespace."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "monitors.md").read_text(), re.S)
    assert len(blocks) >= 3
    ns: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/monitors.md python block {i}", "exec"), ns)
