"""A user's own stateful module (base.MemoryModule with register_memory and
single_step_forward) behaves like a built-in neuron everywhere state matters."""

from __future__ import annotations

import copy

import pytest
import torch

from spikeflow import base, functional, monitor, neurons, surrogate
from spikeflow.errors import ConfigurationError, ShapeError, StateError


class MyIFNode(base.MemoryModule):
    """The IF neuron with hard reset, written as a user would (SpikingJelly's way)."""

    def __init__(self, v_threshold: float = 1.0, v_reset: float = 0.0) -> None:
        super().__init__()
        self.v_threshold, self.v_reset = v_threshold, v_reset
        self.spike_fn = surrogate.Sigmoid()
        self.register_memory("v", v_reset)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.v + x
        spike = self.spike_fn(h - self.v_threshold)
        self.v = (1.0 - spike) * h + spike * self.v_reset
        return spike


class LeakyTrace(base.MemoryModule):
    """Two memories, one a tensor: a trace and a step counter."""

    def __init__(self, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.register_memory("trace", 0.0)
        self.register_memory("steps", torch.zeros(()))

    def single_step_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.trace = self.decay * self.trace + x
        self.steps = self.steps + 1
        return self.trace, self.steps.expand(x.shape[0])


@pytest.fixture()
def pair(float64):
    torch.manual_seed(0)
    x = (torch.rand(12, 3, 5) * 0.8).requires_grad_()
    return MyIFNode(), neurons.IFNode(backend="torch"), x


def _grad(module, x, call=None):
    x = x.detach().clone().requires_grad_()
    y = (call or module)(x)
    (y * torch.linspace(0.5, 1.5, y.numel()).reshape(y.shape)).sum().backward()
    return y.detach(), x.grad


def test_multi_step_equals_the_builtin_neuron_with_gradients(pair):
    mine, builtin, x = pair
    y, g = _grad(mine, x)
    y_ref, g_ref = _grad(builtin, x)
    assert y.sum() > 0 and (y < 1).any()
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mine(x), y)  # a second call starts again from v = 0
    assert mine.v.shape == (3, 5)  # the last step's value, as SpikingJelly's


def test_leaky_trace_against_a_reference_loop(float64):
    x = torch.rand(7, 2, 3)
    trace, steps = LeakyTrace(0.5)(x)
    expected, t = [], torch.zeros(2, 3, dtype=torch.float64)
    for step in x:
        t = 0.5 * t + step
        expected.append(t)
    torch.testing.assert_close(trace, torch.stack(expected))
    assert steps[:, 0].tolist() == list(range(1, 8))


def test_single_step_streaming_and_chunks_equal_one_call(pair):
    mine, builtin, x = pair
    whole = mine(x)
    last = {}
    for module in (mine, builtin):
        functional.set_step_mode(module, "s")
        with pytest.raises(StateError, match="streaming is off"):
            module(x[0])
        with functional.streaming(module):
            steps = torch.stack([module(step) for step in x])
            last[type(module)] = module.v
        torch.testing.assert_close(steps, whole, rtol=0, atol=0)
        functional.set_step_mode(module, "m")
    torch.testing.assert_close(last[MyIFNode], last[neurons.IFNode])
    assert float(mine.v) == 0.0  # streaming's exit resets: the initial value again
    with functional.streaming(mine):
        chunks = torch.cat([mine(x[:5]), mine(x[5:])])
        functional.reset_net(mine)  # a new sequence starts from v = 0 again
        torch.testing.assert_close(mine(x[:5]), whole[:5])
    torch.testing.assert_close(chunks, whole)


def test_run_passes_the_state_in_and_out(pair):
    _, _, x = pair
    net = torch.nn.Sequential(torch.nn.Linear(5, 5), MyIFNode())
    ref = torch.nn.Sequential(copy.deepcopy(net[0]), neurons.IFNode(backend="torch"))
    out1, state = functional.run(net, x[:4])
    out2, state = functional.run(net, x[4:], state)
    ref1, ref_state = functional.run(ref, x[:4])
    ref2, ref_state = functional.run(ref, x[4:], ref_state)
    torch.testing.assert_close(torch.cat([out1, out2]), torch.cat([ref1, ref2]))
    torch.testing.assert_close(state["1"]["v"], ref_state["1"]["v"])
    assert net[1].v == 0.0  # run() leaves the module's memories as they were
    torch.testing.assert_close(torch.cat([out1, out2]), net(x))
    assert net[1].state is None  # the module's own state untouched
    with pytest.raises(StateError, match="'w'"):
        functional.run(net, x, {"1": {"w": state["1"]["v"]}})


def test_detach_net_cuts_the_carried_graph(pair):
    mine, _, x = pair
    with functional.streaming(mine):
        mine(x)
        assert mine.state["v"].grad_fn is not None and mine.v.grad_fn is not None
        functional.detach_net(mine)
        assert mine.state["v"].grad_fn is None and mine.v.grad_fn is None
        mine(x).sum().backward()  # the next chunk's graph stops at the detached state
    mine(x)  # not streaming: mine.v is the last step's value, in the graph
    assert copy.deepcopy(mine).v.grad_fn is None


def test_monitors_record_it_as_a_builtin_neuron(pair):
    mine, builtin, x = pair
    records = []
    for module in (mine, builtin):
        net = torch.nn.Sequential(module)
        out = monitor.OutputMonitor(net, type(module))
        attr = monitor.AttributeMonitor("v", False, net, type(module))
        functional.set_step_mode(module, "s")
        with functional.streaming(module):
            for step in x[:3]:
                module(step)
        records.append((torch.stack(out.records), torch.stack(attr.records)))
        out.remove_hooks()
        attr.remove_hooks()
    torch.testing.assert_close(records[0][0], records[1][0])
    torch.testing.assert_close(records[0][1], records[1][1])


def test_matches_spikingjelly_memory_module(float64):
    sj_base = pytest.importorskip(
        "spikingjelly.activation_based.base", reason="spikingjelly is a test-only peer"
    )
    from spikingjelly.activation_based import functional as sj_functional

    class SJTrace(sj_base.MemoryModule):
        def __init__(self) -> None:
            super().__init__()
            self.register_memory("trace", 0.0)
            self.step_mode = "s"

        def single_step_forward(self, x):
            self.trace = 0.5 * self.trace + x
            return self.trace

    x = torch.rand(6, 2, 3)
    theirs = SJTrace()
    sj_functional.reset_net(theirs)
    expected = torch.stack([theirs(step) for step in x])
    torch.testing.assert_close(LeakyTrace(0.5)(x)[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(theirs.trace, expected[-1])
    theirs.reset()
    assert theirs.trace == 0.0
    ours = LeakyTrace(0.5)
    ours(x)
    ours.reset()
    assert float(ours.trace) == 0.0 and float(ours.steps) == 0.0


def _functional_trace(parent: type) -> type:
    """A two-memory module in SpikingJelly 2.0's pure form, on either library's base."""

    class FunctionalTrace(parent):
        def __init__(self) -> None:
            super().__init__()
            self.register_memory("trace", 0.0)
            self.register_memory("peak", 0.0)

        def single_step_functional_forward(self, inputs, states):
            (x,), (trace, peak) = inputs, states
            trace = 0.75 * trace + x
            peak = torch.maximum(torch.as_tensor(peak, dtype=x.dtype), trace)
            return (trace, peak), (trace, peak)

    return FunctionalTrace


def test_functional_form_equals_spikingjelly(float64):
    sj_base = pytest.importorskip(
        "spikingjelly.activation_based.base", reason="spikingjelly is a test-only peer"
    )
    x = torch.randn(6, 2, 3)
    theirs = _functional_trace(sj_base.MemoryModule)()
    theirs.step_mode = "m"
    expected = theirs(x)
    ours = _functional_trace(base.MemoryModule)()
    got = ours(x)
    for mine, ref in zip(got, expected, strict=True):
        torch.testing.assert_close(mine, ref, rtol=0, atol=0)
    out, state = functional.run(ours, x[:2])
    out2, state = functional.run(ours, x[2:], state)
    torch.testing.assert_close(torch.cat([out[1], out2[1]]), expected[1])
    torch.testing.assert_close(state[""]["peak"], theirs.peak)


def test_bad_declarations_are_named():
    class Early(base.MemoryModule):
        def __init__(self) -> None:
            self.register_memory("v", 0.0)

    with pytest.raises(ConfigurationError, match="super"):
        Early()
    module = MyIFNode()
    with pytest.raises(ConfigurationError, match="already has an attribute 'v'"):
        module.register_memory("v", 1.0)
    with pytest.raises(ConfigurationError, match="already has an attribute 'forward'"):
        module.register_memory("forward", 1.0)
    with pytest.raises(ConfigurationError, match="number or a tensor"):
        module.register_memory("w", "0")
    with pytest.raises(NotImplementedError, match="register_memory"):
        base.MemoryModule()(torch.zeros(2, 1))

    class NoStep(base.MemoryModule):
        def __init__(self) -> None:
            super().__init__()
            self.register_memory("v", 0.0)

    with pytest.raises(NotImplementedError, match="single_step_functional_forward"):
        NoStep()(torch.zeros(2, 1))
    with pytest.raises(ShapeError, match="time-major"):
        module(torch.zeros(3))


def _counting_if(parent: type) -> type:
    """An IF neuron (reset to 0) that also counts its spikes, on either library's base."""

    class CountingIF(parent):
        def __init__(self) -> None:
            super().__init__()
            self.register_memory("v", 0.0)
            self.register_memory("count", 0.0)

        def single_step_forward(self, x):
            h = self.v + x
            spike = (h >= 1.0).to(x.dtype)
            self.v = h * (1.0 - spike)
            self.count = self.count + spike
            return spike

    return CountingIF


def _sj_steps(sj_module, x: torch.Tensor) -> torch.Tensor:
    """SpikingJelly's module stepped through ``x`` from its reset values."""
    sj_module.reset()
    return torch.stack([sj_module(step) for step in x])


def test_memories_and_named_memories_equal_spikingjelly(float64):
    sj_base = pytest.importorskip(
        "spikingjelly.activation_based.base", reason="spikingjelly is a test-only peer"
    )
    theirs, ours = _counting_if(sj_base.MemoryModule)(), _counting_if(base.MemoryModule)()
    for module in (theirs, ours):  # before any call: the initial values
        assert list(module.named_memories()) == [("v", 0.0), ("count", 0.0)]
    x = torch.rand(9, 2, 4) * 0.7
    expected = _sj_steps(theirs, x)
    torch.testing.assert_close(ours(x), expected, rtol=0, atol=0)
    assert expected.sum() > 0 and (expected.sum(0) < 9).all()
    named, ref = list(ours.named_memories()), list(theirs.named_memories())
    assert [n for n, _ in named] == [n for n, _ in ref] == ["v", "count"]
    for (_, mine), (_, their) in zip(named, ref, strict=True):
        torch.testing.assert_close(mine, their, rtol=0, atol=0)
    torch.testing.assert_close(ours.count, expected.sum(0), rtol=0, atol=0)
    values = list(ours.memories())
    assert len(values) == 2 and values[0] is ours.v and values[1] is ours.count
    assert list(neurons.IFNode().memories()) == []  # built-ins carry .state instead


def test_set_reset_value_equals_spikingjelly(float64):
    sj_base = pytest.importorskip(
        "spikingjelly.activation_based.base", reason="spikingjelly is a test-only peer"
    )
    theirs, ours = _counting_if(sj_base.MemoryModule)(), _counting_if(base.MemoryModule)()
    x = torch.rand(9, 2, 4) * 0.7
    start = torch.linspace(0.0, 0.9, 8, dtype=torch.float64).reshape(2, 4)
    for module in (theirs, ours):
        module.set_reset_value("v", start)
        module.set_reset_value("count", 2)
    original = start.clone()
    start += 5.0  # the reset value is a copy: changing the tensor passed changes nothing
    assert ours.v == 0.0  # the current value stays until the next reset
    expected = _sj_steps(theirs, x)
    torch.testing.assert_close(ours(x), expected, rtol=0, atol=0)  # a call starts from it
    torch.testing.assert_close(ours.count, theirs.count, rtol=0, atol=0)
    assert not torch.equal(expected, _sj_steps(_counting_if(sj_base.MemoryModule)(), x))
    ours.reset()
    theirs.reset()
    for (name, mine), (_, their) in zip(
        ours.named_memories(), theirs.named_memories(), strict=True
    ):
        torch.testing.assert_close(torch.as_tensor(mine), torch.as_tensor(their * 1.0), msg=name)
    torch.testing.assert_close(ours.v, original, rtol=0, atol=0)
    with pytest.raises(ConfigurationError, match=r"'w' is not a memory.*\['v', 'count'\]"):
        ours.set_reset_value("w", 0.0)
    with pytest.raises(ConfigurationError, match="value of 'v' must be a number or a tensor"):
        ours.set_reset_value("v", [0.5])
    with pytest.raises(ConfigurationError, match=r"'v' is not a memory.*none"):
        neurons.IFNode().set_reset_value("v", 0.5)


def test_reset_net_streaming_and_run_start_from_the_new_reset_value(float64):
    sj_base = pytest.importorskip(
        "spikingjelly.activation_based.base", reason="spikingjelly is a test-only peer"
    )
    theirs = _counting_if(sj_base.MemoryModule)()
    theirs.set_reset_value("v", 0.6)
    x = torch.rand(10, 3, 4) * 0.5
    expected = _sj_steps(theirs, x)
    net = torch.nn.Sequential(_counting_if(base.MemoryModule)())
    net[0].set_reset_value("v", 0.6)
    with functional.streaming(net):
        chunks = torch.cat([net(x[:4]), net(x[4:])])
        torch.testing.assert_close(net[0].count, theirs.count, rtol=0, atol=0)
        functional.reset_net(net)
        assert float(net[0].v) == 0.6 and float(net[0].count) == 0.0
        torch.testing.assert_close(net(x[:4]), expected[:4], rtol=0, atol=0)
    torch.testing.assert_close(chunks, expected, rtol=0, atol=0)
    assert float(net[0].v) == 0.6  # streaming's exit resets to the new value
    functional.set_step_mode(net, "s")
    with functional.streaming(net):
        steps = torch.stack([net(step) for step in x])
    torch.testing.assert_close(steps, expected, rtol=0, atol=0)
    functional.set_step_mode(net, "m")
    out1, state = functional.run(net, x[:3])
    out2, state = functional.run(net, x[3:], state)
    torch.testing.assert_close(torch.cat([out1, out2]), expected, rtol=0, atol=0)
    torch.testing.assert_close(state["0"]["count"], theirs.count, rtol=0, atol=0)
