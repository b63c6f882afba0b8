"""MemoryModule.run(x, state): a module as a pure function of its input and an explicit
state (Norse's cell(x, state), snnTorch's lif(x, mem))."""

import pytest
import torch

from spikeflow import functional, layers, neurons
from spikeflow.errors import ConfigurationError, StateError

T, B, N = 12, 3, 5


def inputs(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N, generator=gen, dtype=torch.float64) * 2).requires_grad_()


def weighted_sum(out: torch.Tensor) -> torch.Tensor:
    return (out * torch.arange(1.0, out.shape[0] + 1, dtype=out.dtype)[:, None, None]).sum()


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize(
    "make",
    [
        lambda b: neurons.LIFNode(tau=2.0, backend=b),
        lambda b: neurons.ParametricLIFNode(backend=b, v_reset=None),
        lambda b: neurons.CubaLIFNode(backend=b),
        lambda b: neurons.ALIFNode(backend=b),
    ],
    ids=["lif", "plif-soft", "cuba", "alif"],
)
def test_chunks_through_explicit_state_equal_one_call(make, backend):
    whole = make(backend).double()
    x = inputs()
    full = whole(x)
    weighted_sum(full).backward()
    expected = x.grad.clone(), [p.grad.clone() for p in whole.parameters()]
    chunked = make(backend).double()
    chunked.load_state_dict(whole.state_dict())
    x.grad = None
    first, state = chunked.run(x[:5])
    assert set(state) == set(whole.declaration().state_names)
    second, state = chunked.run(x[5:], state)
    out = torch.cat([first, second])
    assert torch.equal(out, full)
    assert full.sum() > 0
    weighted_sum(out).backward()  # through the state handed from call to call
    torch.testing.assert_close(x.grad, expected[0], rtol=1e-12, atol=1e-12)
    for p, g in zip(chunked.parameters(), expected[1]):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-12)
    assert chunked.state is None and not chunked.streaming


def test_a_whole_sequence_sent_to_a_single_step_net_says_how_to_switch_back():
    """The newcomer's slip: set_step_mode(net, "s") for a streaming loop, then the
    usual multi-step call; the error names the input as one step and the way back."""
    x = inputs().detach()
    net = torch.nn.Sequential(layers.Linear(N, N), neurons.LIFNode(tau=2.0)).double()
    reference = net(x)
    functional.set_step_mode(net, "s")
    with pytest.raises(StateError) as caught:
        net(x)
    message = str(caught.value)
    assert f"one step of shape {(T, B, N)}" in message
    assert "set_step_mode(net, 'm')" in message and "functional.run(net" in message
    functional.set_step_mode(net, "m")
    assert torch.equal(net(x), reference)


def test_a_single_step_loop_needs_no_streaming_and_leaves_the_module_alone():
    x = inputs().detach()
    reference = neurons.LIFNode(tau=2.0)(x)
    lif = neurons.LIFNode(tau=2.0, step_mode="s")
    state, outs = None, []
    for t in range(T):
        z, state = lif.run(x[t], state)
        outs.append(z)
    assert torch.equal(torch.stack(outs), reference)
    assert lif.state is None and not lif.streaming
    with pytest.raises(StateError, match="streaming is off"):
        lif(x[0])  # a plain single-step call still needs streaming
    # while streaming, run() neither reads nor changes the carried state
    with functional.streaming(lif):
        lif(x[0])
        carried = lif.state["v"].clone()
        z, _ = lif.run(x[0])
        assert torch.equal(z, reference[0])
        assert torch.equal(lif.state["v"], carried)
        assert torch.equal(lif(x[1]), reference[1])


@pytest.mark.parametrize(
    "make",
    [lambda: layers.SynapseFilter(tau=3.0), lambda: layers.Delay(2)],
    ids=["synapse-filter", "delay"],
)
def test_stateful_layers_run_in_chunks(make):
    x = inputs().detach()
    full = make()(x)
    layer = make()
    first, state = layer.run(x[:7])
    second, _ = layer.run(x[7:], state)
    assert torch.equal(torch.cat([first, second]), full)


def test_run_names_what_it_cannot_take():
    lif = neurons.LIFNode(tau=2.0)
    x = inputs().detach()
    _, state = lif.run(x[:2])
    with pytest.raises(StateError, match=r"state given for LIFNode has \['w'\] but not 'v'"):
        lif.run(x, {"w": state["v"]})
    with pytest.raises(StateError, match=r"given for LIFNode has \['v', 'w'\], its state \['v'\]"):
        lif.run(x, {"v": state["v"], "w": state["v"]})
    with pytest.raises(StateError, match=r"run\(\) 'v' has shape \(3, 5\), which does not fit"):
        lif.run(torch.rand(4, 2, N, dtype=torch.float64), state)  # another batch
    with pytest.raises(ConfigurationError, match="mapping of names to tensors"):
        lif.run(x, state["v"])
    recurrent = layers.Recurrent(neurons.LIFNode(step_mode="s"), N)
    with pytest.raises(
        ConfigurationError, match=r"other stateful modules \(sub_module\).*functional.run"
    ):
        recurrent.run(x)


def test_forward_hooks_see_run_calls_and_a_nested_run_is_refused():
    lif = neurons.LIFNode(tau=2.0)
    x = inputs().detach()
    seen = []
    handle = lif.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    lif.run(x)
    assert seen == [x.shape]
    handle.remove()
    lif.register_forward_hook(lambda m, args, out: m.run(args[0]))
    with pytest.raises(StateError, match="inside its own run"):
        lif.run(x)
    assert "_explicit" not in lif.__dict__


def test_the_peers_state_in_state_out_loops_port_to_run():
    """docs/migration.md: snnTorch's ``spk, mem = lif(x_t, mem)`` and Norse's
    ``z, s = cell(x_t, s)`` are ``z, state = node.run(x_t, state)``."""
    snn = pytest.importorskip("snntorch")
    norse = pytest.importorskip("norse.torch")
    from spikeflow import surrogate

    x = inputs(1).detach()
    beta = 0.8
    leaky = snn.Leaky(beta=beta, reset_mechanism="zero", spike_grad=snn.surrogate.atan())
    lif = neurons.LIFNode(tau=1 / (1 - beta), decay_input=False, strict_firing=True,
                          detach_reset=True, surrogate_function=surrogate.ATan(),
                          step_mode="s").double()  # fmt: skip
    mem, state = leaky.init_leaky(), None
    for x_t in x:
        spk, mem = leaky(x_t, mem)
        z, state = lif.run(x_t, state)
        assert torch.equal(z, spk)
        # snnTorch's membrane is before the reset; its beta is a float32 number
        torch.testing.assert_close(state["v"], mem * (1 - spk), rtol=1e-6, atol=1e-7)
    dt, tau_mem_inv = 1e-3, 250.0
    cell = norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(tau_mem_inv)), dt=dt)
    node = neurons.LIFNode(tau=1 / (dt * tau_mem_inv), strict_firing=True, step_mode="s",
                           surrogate_function=surrogate.SuperSpike(alpha=1.0))  # fmt: skip
    s, state = None, None
    for x_t in x * 3:
        zn, s = cell(x_t, s)
        z, state = node.run(x_t, state)
        assert torch.equal(z, zn)
        torch.testing.assert_close(state["v"], s.v, rtol=1e-12, atol=1e-12)


def small_net(step_mode: str = "m") -> torch.nn.Module:
    torch.manual_seed(3)
    net = torch.nn.Sequential(
        layers.Linear(N, 6), neurons.LIFNode(tau=2.0, v_threshold=0.3),
        layers.Recurrent(neurons.LIFNode(tau=3.0, v_threshold=0.3, step_mode="s"), 6),
        layers.Linear(6, 4), neurons.ParametricLIFNode(v_threshold=0.2),
    ).double()  # fmt: skip
    functional.set_step_mode(net, step_mode)
    return net


def test_a_network_runs_in_chunks_through_functional_run():
    net = small_net()
    x = inputs(2)
    full = net(x)
    assert full.sum() > 0
    weighted_sum(full).backward()
    expected = x.grad.clone(), [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    x.grad = None
    outs, state = [], None
    for chunk in x.split([4, 1, 7]):
        out, state = functional.run(net, chunk, state)
        outs.append(out)
    assert sorted(state) == ["1", "2", "2.sub_module", "4"]  # the Recurrent's inner neuron too
    assert set(state["2"]) == {"y"}
    out = torch.cat(outs)
    assert torch.equal(out, full)
    weighted_sum(out).backward()
    torch.testing.assert_close(x.grad, expected[0], rtol=1e-12, atol=1e-12)
    for p, g in zip(net.parameters(), expected[1]):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-12)
    assert all(m.state is None for m in functional.memory_modules(net))
    # step by step, single-step mode, no streaming
    stepped = small_net("s")
    state, outs = None, []
    for x_t in x.detach():
        out, state = functional.run(stepped, x_t, state)
        outs.append(out)
    assert torch.equal(torch.stack(outs), full)


def test_functional_run_names_bad_states():
    net = small_net()
    x = inputs().detach()
    _, state = functional.run(net, x[:3])
    with pytest.raises(ConfigurationError, match=r"names \['5'\], which are not stateful"):
        functional.run(net, x, {**state, "5": state["1"]})
    with pytest.raises(ConfigurationError, match=r"state\['1'\] must be None or a mapping"):
        functional.run(net, x, {"1": state["1"]["v"]})
    with pytest.raises(StateError, match=r"state given for 2.sub_module has \['y'\]"):
        functional.run(net, x, {"2.sub_module": state["2"]})
    partial, _ = functional.run(net, x[3:], {"1": state["1"]})  # the others start fresh
    assert partial.shape == (T - 3, B, 4)
    psn = torch.nn.Sequential(layers.Linear(N, 4), neurons.PSN(T=T))
    with pytest.raises(StateError, match="runs whole sequences only"):
        functional.run(psn, x)


def test_a_step_loop_of_run_calls_compiles_in_one_graph():
    net = torch.nn.Sequential(
        layers.Linear(N, 6),
        neurons.LIFNode(tau=2.0, v_threshold=0.3),
        layers.Linear(6, 4),
        neurons.ParametricLIFNode(v_threshold=0.2),
    )
    functional.set_step_mode(net, "s")  # fmt: skip
    x = inputs(2).detach().float()[:3]

    def loop(x):
        state, outs = None, []
        for x_t in x.unbind(0):
            out, state = functional.run(net, x_t, state)
            outs.append(out)
        return torch.stack(outs)

    expected = loop(x)
    assert expected.sum() > 0
    torch._dynamo.reset()
    assert torch.equal(torch.compile(loop, backend="aot_eager", fullgraph=True)(x), expected)


def test_modules_that_count_steps_or_keep_nothing_run_from_the_state_alone():
    """GLIF and the masked PSN count steps, the sliding PSN and BN-through-time carry
    their state only while carrying it: each sequence's count is in its own state (two
    sequences interleaved), the module's own count is left alone, and a call that keeps
    nothing (dropout in eval mode, a whole-sequence masked PSN) returns {}."""
    x, y = inputs().detach(), inputs(1).detach()
    glif = neurons.GatedLIFNode(T=T).double()
    want_x, want_y = glif(x), glif(y)
    count = glif._t  # a plain call's, untouched by run()
    out_x, s_x = glif.run(x[:5])
    out_y, s_y = glif.run(y[:3])
    more_x, _ = glif.run(x[5:], s_x)
    more_y, _ = glif.run(y[3:], s_y)
    assert torch.equal(torch.cat([out_x, more_x]), want_x)
    assert torch.equal(torch.cat([out_y, more_y]), want_y)
    assert glif._t == count and glif.state is None
    psn = neurons.MaskedPSN(k=3, T=T, lambda_init=1.0).double()
    torch.nn.init.normal_(psn.bias)  # (the default -1 keeps it silent)
    want = psn(x)
    assert 0 < want.mean() < 1
    psn.step_mode = "s"
    states, outs = [None, None], []
    for t in range(T):
        z, states[0] = psn.run(x[t], states[0])
        _, states[1] = psn.run(y[t], states[1])  # another sequence in between
        outs.append(z)
    assert torch.equal(torch.stack(outs), want) and psn._t == 0
    psn.step_mode = "m"
    assert psn.run(x)[1] == {} and torch.equal(psn.run(x, {})[0], want)
    for make in (lambda: neurons.SlidingPSN(k=3), lambda: layers.BatchNormThroughTime1d(N, T)):
        module = make().double()
        first, state = module.run(x[:4])
        second, _ = module.run(x[4:], state)
        assert torch.equal(torch.cat([first, second]), module(x))
    dropout = layers.Dropout(0.5).eval()
    assert dropout.run(x)[1] == {} and torch.equal(dropout.run(x, {})[0], x)


def test_a_recomputed_block_inside_run_recomputes_from_the_chunks_state():
    from spikeflow.memory import Recomputed

    x = inputs(2)
    net = small_net()
    full = net(x)
    weighted_sum(full).backward()
    expected = x.grad.clone()
    x.grad = None
    net[1] = Recomputed(net[1])
    outs, state = [], None
    for chunk in x.split([5, 7]):
        out, state = functional.run(net, chunk, state)
        outs.append(out)
    assert "1.module" in state
    weighted_sum(torch.cat(outs)).backward()
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-12)


def test_monitors_see_a_run_loop_as_one_sequence():
    from spikeflow.losses import LayerSpikes
    from spikeflow.training import SpikeMonitor

    x = inputs(2).detach()
    net = small_net("s")
    with SpikeMonitor(net, layers=["1"]) as monitor, LayerSpikes(net, layers=["1"]) as kept:
        state = None
        for x_t in x:
            _, state = functional.run(net, x_t, state)
        (stats,) = monitor.summary()
        assert stats.spikes_per_sample == stats.spikes / B  # one sequence of B samples
        assert kept.spikes["1"].shape == (T, B, 6)  # every step, not the last one
        assert stats.spikes == kept.spikes["1"].sum() > 0


def test_a_copy_made_inside_run_is_an_ordinary_module():
    import copy

    lif = neurons.LIFNode(tau=2.0).double()
    copies = []
    lif.register_forward_hook(lambda m, args, out: copies.append(copy.deepcopy(m)))
    lif.register_forward_hook(lambda m, args, out: copies.append(copy.copy(m)))  # __getstate__
    x = inputs()
    lif.run(x[:4])
    for replica in copies:
        replica._forward_hooks = {}
        assert "_explicit" not in replica.__dict__
        with pytest.raises(StateError, match="streaming is off"):
            replica.step_mode = "s"
            replica(x[0])  # not in run(): a single step needs streaming again


def test_run_refuses_a_module_used_twice_and_a_state_on_another_device():
    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lif = neurons.LIFNode(tau=2.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lif(self.lif(x) + x)

    x = inputs().detach().float()
    with pytest.raises(StateError, match="LIFNode ran two multi-step calls in one run"):
        functional.run(Twice(), x)
    lif = neurons.LIFNode(tau=2.0)
    _, state = lif.run(x[:2])
    moved = {"v": state["v"].to("meta")}
    with pytest.raises(StateError, match="'v' is on device meta but the input is on cpu"):
        lif.run(x[2:], moved)
    with pytest.raises(StateError, match=r"state\['lif'\] 'v' is on device meta"):
        functional.run(Twice(), x, {"lif": moved})
