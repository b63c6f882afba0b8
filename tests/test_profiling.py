"""spikeflow.profiling.profile_layers: saved bytes against what autograd keeps, computed
by hand from shapes and dtypes (a Linear + LIF net on the fused CPU kernel, views,
recomputed blocks), the attribution of backward nodes and times on hand-built layers,
and the structure of the report. SpikingJelly 2.0's layer-wise profilers need CUDA
(``torch.cuda.synchronize`` / ``torch.cuda.Event``) and its category profiler counts
only CUDA tensors, so on CPU the references are by hand (docs/profiling.md)."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.functional import streaming
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.memory import recompute_blocks
from spikeflow.neurons import IFNode, LIFNode
from spikeflow.profiling import OTHER, profile_layers

F32 = 4


def _linear_lif(n_in: int = 8, n_hidden: int = 16, n_out: int = 4) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        layers.Linear(n_in, n_hidden), LIFNode(tau=2.0),
        layers.Linear(n_hidden, n_out), LIFNode(tau=2.0),
    )  # fmt: skip


@pytest.mark.parametrize("T", [4, 20])
def test_linear_lif_saved_bytes_are_what_autograd_keeps_by_hand(T):
    """Linear keeps its input [T*B, in] (for the weight gradient; the weight it also
    keeps when the input needs a gradient is a parameter, not counted); the fused LIF
    kernel keeps its input [T, B, N] and its membrane every CHECKPOINT steps."""
    B = 3
    net = _linear_lif()
    x = torch.rand(T, B, 8, requires_grad=True)
    report = profile_layers(net, x, repeat=1, warmup=0)
    rows = {r.name: r for r in report.layers}
    assert list(rows) == ["0", "1", "2", "3", OTHER]
    kept = math.ceil(T / CHECKPOINT)  # membrane rows the kernel keeps
    expected = {
        "0": T * B * 8 * F32,
        "1": T * B * 16 * F32 + kept * B * 16 * F32,
        "2": T * B * 16 * F32,  # the spikes of layer 1, as float32
        "3": T * B * 4 * F32 + kept * B * 4 * F32,
        OTHER: 0,
    }
    assert {n: r.saved_bytes for n, r in rows.items()} == expected
    assert report.categories.saved_activations == sum(expected.values())
    outputs = {"0": T * B * 16 * F32, "1": T * B * 16 * F32, "2": T * B * 4 * F32}
    assert {n: rows[n].output_bytes for n in outputs} == outputs
    assert all(r.calls == 1 for n, r in rows.items() if n != OTHER)
    params = (16 * 8 + 16 + 4 * 16 + 4) * F32
    c = report.categories
    assert (c.parameters, c.gradients, c.buffers, c.optimizer_state) == (params, params, 0, 0)
    assert c.total == 2 * params + sum(expected.values())


def _graph_saved_bytes(loss: torch.Tensor, exclude: list[torch.Tensor]) -> int:
    """What the graph of ``loss`` keeps, read back off its nodes (no hooks): built-in
    nodes' ``_saved_*`` attributes and custom Functions' ``saved_tensors``, each storage
    once, those of ``exclude`` left out."""
    left_out = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}
    todo, seen = [loss.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        values = [getattr(node, a) for a in dir(node) if a.startswith("_saved_")]
        values += list(getattr(node, "saved_tensors", ()))
        while values:
            v = values.pop()
            if isinstance(v, (list, tuple)):
                values.extend(v)
            elif isinstance(v, torch.Tensor) and v.untyped_storage().data_ptr() not in left_out:
                storages[v.untyped_storage().data_ptr()] = v.untyped_storage().nbytes()
        todo.extend(n for n, _ in node.next_functions)
    return sum(storages.values())


def test_a_spiking_conv_net_keeps_what_its_graph_holds():
    """Conv, batch norm, IF (fused kernel), max pooling, Linear, LIF: the profile's
    saved activations equal the tensors read back off the autograd graph."""
    torch.manual_seed(0)
    net = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1), layers.BatchNorm2d(4), IFNode(),
        layers.MaxPool2d(2), layers.Flatten(), layers.Linear(4 * 4 * 4, 5), LIFNode(tau=2.0),
    )  # fmt: skip
    x = torch.rand(3, 2, 2, 8, 8)
    report = profile_layers(net, x, repeat=1, warmup=0)
    loss = net(x).sum()
    expected = _graph_saved_bytes(loss, [*net.parameters(), *net.buffers()])
    assert report.categories.saved_activations == expected
    rows = {r.name: r for r in report.layers}
    assert rows["0"].saved_bytes == x.numel() * F32  # the conv keeps its input
    assert sum(r.saved_bytes for r in report.layers) >= expected  # shared storages


def test_backward_nodes_go_to_the_layer_that_created_them():
    net = _linear_lif()
    report = profile_layers(net, torch.rand(4, 2, 8), repeat=1, warmup=0)
    nodes = {r.name: r.backward_nodes for r in report.layers}
    # addmm with its weight transposed, the [T, B] fold, weight and bias accumulators
    assert nodes["0"] == ("AccumulateGrad", "AccumulateGrad", "AddmmBackward0", "TBackward0",
                          "ViewBackward0")  # fmt: skip
    assert nodes["2"] == nodes["0"] + ("ViewBackward0",)  # (also views the input fold)
    assert nodes["1"] == nodes["3"] == ("_EagerNeuronBackward",)
    assert nodes[OTHER] == ("SumBackward0",)  # the default loss
    # a container claims only its own nodes: the residual add
    block = _Residual()
    x = torch.rand(3, 5, requires_grad=True)
    report = profile_layers(block, x, layers="all", repeat=1, warmup=0)
    rows = {r.name: r for r in report.layers}
    assert rows["(model)"].backward_nodes == ("AddBackward0",)
    # the input's gradient accumulator is no layer's
    assert rows[OTHER].backward_nodes == ("AccumulateGrad", "SumBackward0")
    # a container keeps what its layers keep (fc's input, x)
    assert rows["(model)"].saved_bytes == rows["fc"].saved_bytes == 3 * 5 * F32
    assert rows["fc"].backward_nodes == ("AccumulateGrad", "AccumulateGrad", "AddmmBackward0",
                                         "TBackward0")  # fmt: skip
    assert (rows["(model)"].depth, rows["fc"].depth) == (0, 1)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc(x)


class _SlowBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        time.sleep(0.02)
        return g * 2


class _SlowBackwardLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SlowBackward.apply(x)


class _SlowForwardLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return x.tanh()


def test_times_are_attributed_to_the_slow_layers():
    """A layer whose backward sleeps 20 ms has at least 20 ms of backward; one whose
    forward sleeps, 20 ms of forward. Only lower bounds (sleeps) and sums: the whole
    step holds every layer's time, and a container holds its layers'."""
    net = nn.Sequential(nn.Linear(4, 4), _SlowBackwardLayer(), _SlowForwardLayer())
    outer = nn.Sequential(net, nn.Linear(4, 2))
    report = profile_layers(outer, torch.rand(2, 4), layers="all", repeat=2, warmup=0)
    rows = {r.name: r for r in report.layers}
    slow_backward, slow_forward = rows["0.1"], rows["0.2"]
    assert slow_backward.backward_s >= 0.02
    assert slow_backward.backward_nodes == ("_SlowBackwardBackward",)
    assert slow_forward.forward_s >= 0.02 and slow_forward.backward_nodes == ("TanhBackward0",)
    for container, inner in (("(model)", ["0", "1"]), ("0", ["0.0", "0.1", "0.2"])):
        assert rows[container].forward_s >= sum(rows[n].forward_s for n in inner)
        assert rows[container].backward_s >= sum(rows[n].backward_s for n in inner) - 1e-12
    top = [r for r in report.layers if r.depth == 0]
    assert report.forward_s >= sum(r.forward_s for r in top)
    assert report.backward_s >= sum(r.backward_s for r in top)


def test_views_of_one_storage_are_counted_once():
    class TwoViews(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[0] * x[1]  # saves two views of x

    class FirstTwo(nn.Module):
        def forward(self, y: torch.Tensor) -> torch.Tensor:
            return y[:2]  # a view

    x = torch.rand(3, 6, dtype=torch.float64, requires_grad=True)
    report = profile_layers(nn.Sequential(TwoViews(), FirstTwo()), x, repeat=1, warmup=0)
    assert report.layer("0").saved_bytes == 3 * 6 * 8  # x's whole storage, once
    # output bytes are the outputs' own sizes, not their storages'
    assert (report.layer("0").output_bytes, report.layer("1").output_bytes) == (6 * 8, 2 * 8)


def test_recomputed_blocks_keep_their_inputs_as_bits():
    T, B = 4, 3
    net = _linear_lif()
    x = torch.rand(T, B, 8)
    plain = profile_layers(net, x, repeat=1, warmup=0)
    done = recompute_blocks(net)
    assert done == ["<model>[0,1|2,3]"]
    report = profile_layers(net, x, repeat=1, warmup=0)
    rows = {r.name: r for r in report.layers}
    # the first segment keeps x as it is (not spikes), the second the spikes as bits
    # and a one-element zero proxy carrying the gradient edge
    kept = T * B * 8 * F32 + T * B * 16 // 8 + F32
    assert rows["(model)"].saved_bytes == report.categories.saved_activations == kept
    assert all(rows[n].saved_bytes == 0 for n in "0123")
    assert kept < plain.categories.saved_activations
    # the recomputation runs in the backward pass: each layer is called once
    assert all(rows[n].calls == 1 for n in "0123")


class _Stepped(nn.Module):
    """A single-step LIF neuron driven step by step."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 5)
        self.lif = LIFNode(tau=2.0, step_mode="s")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with streaming(self.lif):
            return torch.stack([self.lif(self.fc(x[t])) for t in range(x.shape[0])])


def test_calls_and_output_bytes_add_up_over_single_steps():
    x = torch.rand(6, 2, 3, requires_grad=True)
    report = profile_layers(_Stepped(), x, repeat=1, warmup=0)
    rows = {r.name: r for r in report.layers}
    assert rows["fc"].calls == rows["lif"].calls == 6
    # each step's neuron call claims its own nodes (the kernel on x.unsqueeze(0), then
    # [0]), not the parent's x[t] reached through the state carried from the step before
    own = ("SelectBackward0", "UnsqueezeBackward0", "_EagerNeuronBackward")
    assert rows["lif"].backward_nodes == tuple(sorted(own * 6))
    assert sorted(set(rows[OTHER].backward_nodes)) == [
        "AccumulateGrad", "SelectBackward0", "StackBackward0", "SumBackward0"
    ]  # fmt: skip
    assert rows["lif"].output_bytes == 6 * 2 * 5 * F32
    assert rows["fc"].saved_bytes == 6 * 2 * 3 * F32  # each step's input


def test_the_model_is_left_as_it_was_and_optimizer_state_is_counted():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), LIFNode(tau=2.0))
    opt = torch.optim.Adam(net.parameters())
    net(torch.rand(2, 3)).sum().backward()
    opt.step()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.grad.clone() for p in net.parameters()]
    report = profile_layers(net, torch.rand(2, 3), optimizer=opt, repeat=2)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, net.parameters()))
    params = (3 * 4 + 4 + 4 + 4) * F32
    n_tensors = 4
    # Adam: exp_avg and exp_avg_sq like each parameter, a float32 step count each
    assert report.categories.optimizer_state == 2 * params + n_tensors * F32
    assert report.categories.buffers == (4 + 4) * F32 + 8  # running stats, int64 count


def test_forward_only_and_the_report_as_values():
    net = _linear_lif()
    with torch.no_grad():
        report = profile_layers(net, torch.rand(2, 1, 8), backward=False, repeat=1, warmup=0)
    assert report.categories.saved_activations == 0 and report.backward_s >= 0
    assert all(r.backward_nodes == () for r in report.layers)
    # with gradients on, the forward alone gives what is kept (as by hand above)
    kept = profile_layers(net, torch.rand(4, 3, 8), backward=False, repeat=1, warmup=0)
    assert [r.saved_bytes for r in kept.layers] == [384, 960, 768, 240, 0]
    assert kept.categories.gradients == 0
    values = json.loads(json.dumps(report.to_dict()))
    assert [r["name"] for r in values["layers"]] == ["0", "1", "2", "3", OTHER]
    assert values["categories"]["total"] == report.categories.total
    text = report.table(sort_by="output_bytes")
    assert "memory by category" in text and text.count("LIFNode") == 2


def test_bad_arguments_are_named():
    net = _linear_lif()
    x = torch.rand(2, 1, 8)
    with pytest.raises(ConfigurationError, match="repeat"):
        profile_layers(net, x, repeat=0)
    with pytest.raises(ConfigurationError, match="warmup"):
        profile_layers(net, x, warmup=-1)
    with pytest.raises(ConfigurationError, match="layers must be one of"):
        profile_layers(net, x, layers="leaf")
    with pytest.raises(ConfigurationError, match=r"no submodule named \['5'\]"):
        profile_layers(net, x, layers=["0", "5"])
    with pytest.raises(ConfigurationError, match="one-element tensor"):
        profile_layers(net, x, loss_fn=lambda y: y)
    with torch.no_grad(), pytest.raises(ConfigurationError, match="backward=False"):
        profile_layers(net, x)
    report = profile_layers(net, x, repeat=1, warmup=0)
    with pytest.raises(ConfigurationError, match="sort_by"):
        report.table(sort_by="name")
    with pytest.raises(ConfigurationError, match="no profiled layer named"):
        report.layer("fc")
    # a named layer that never runs is shown with no calls; a mode shows only those run
    report = profile_layers(_Stepped(), torch.rand(2, 1, 3), layers=["lif.surrogate_function",
                            "fc"], repeat=1, warmup=0)  # fmt: skip
    assert [(r.name, r.calls) for r in report.layers] == [
        ("fc", 2), ("lif.surrogate_function", 0), (OTHER, 0)
    ]  # fmt: skip
    report = profile_layers(_Stepped(), torch.rand(2, 1, 3), layers="all", repeat=1, warmup=0)
    assert [r.name for r in report.layers] == ["(model)", "fc", "lif", OTHER]


def test_a_compiled_model_is_one_row_with_what_its_graph_saves():
    """Under torch.compile the layers run inside one graph: one row, the compiled
    model, whose saved bytes are what the compiled graph keeps (AOTAutograd saves
    through the same hooks): for Linear + ReLU, the input (for the weight gradient) and
    the ReLU's output (for its mask), as eager PyTorch keeps them. (A spiking neuron
    compiles too, but for seconds: docs/profiling.md has its numbers.)"""
    T, B = 4, 3
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    x = torch.rand(T, B, 8)
    torch._dynamo.reset()
    report = profile_layers(torch.compile(net, backend="aot_eager"), x, repeat=1, warmup=1)
    assert report.compiled and [r.name for r in report.layers] == ["(model)", OTHER]
    row = report.layer("(model)")
    assert (row.type, row.calls, row.output_bytes) == ("OptimizedModule", 1, T * B * 16 * F32)
    assert row.backward_nodes == ("AccumulateGrad", "AccumulateGrad", "CompiledFunctionBackward")
    kept = T * B * 8 * F32 + T * B * 16 * F32
    assert row.saved_bytes == report.categories.saved_activations == kept
    assert profile_layers(net, x, repeat=1, warmup=0).categories.saved_activations == kept
    torch._dynamo.reset()


def test_random_draws_and_carried_state_are_put_back():
    """Dropout's draws do not move the global generator on, without ``reset`` a
    streaming neuron's carried state is what it was before profiling, and the input
    keeps no gradient."""
    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(8, 16), nn.Dropout(0.5), LIFNode())
    net[2].streaming = True
    x = (torch.rand(4, 3, 8) * 3).requires_grad_()
    with torch.no_grad():
        net(x)
    v, rng = net[2].v.clone(), torch.get_rng_state()
    profile_layers(net, x, repeat=1, warmup=0, reset=False)
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(net[2].v, v)
    assert x.grad is None  # (the input's gradient too)
