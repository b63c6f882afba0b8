"""spikeflow.memory: recomputed blocks run in windows of time (``time_chunks``) give the
plain network's outputs and gradients bit for bit, carry the neuron state from window
to window, lower the peak memory of the step, and refuse whole-sequence modules."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spikeflow import functional, layers, neurons
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.memory import (
    Recomputed,
    has_recomputed_blocks,
    optimize,
    recompute_blocks,
    step_peak_memory,
    undo_recompute,
)
from spikeflow.models import create_model


def _spikes(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.3).to(dtype)


def _run(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    out = net(x)
    (out * torch.arange(1, out.shape[-1] + 1, dtype=out.dtype)).sum().backward()
    return out.detach(), x.grad


def _same_grads(a: nn.Module, b: nn.Module, exact: bool = True) -> None:
    """``b``'s parameter gradients are ``a``'s: bit for bit, or (``exact`` False) to
    float64 rounding (a weight's gradient summed window by window)."""
    grads = [(n, p.grad) for n, p in a.named_parameters()]
    assert grads and all(g is not None for _, g in grads)
    assert sum(float(g.abs().sum()) for _, g in grads) > 0
    for (name, g), q in zip(grads, b.parameters()):
        if exact:
            assert torch.equal(g, q.grad), name
        else:
            torch.testing.assert_close(q.grad, g, rtol=1e-13, atol=1e-15, msg=name)


def _streamed(net: nn.Module, x: torch.Tensor, chunks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain BPTT (nothing recomputed) of ``x`` streamed in the windows time_chunks cuts,
    the graph kept across them."""
    from spikeflow.memory.chunking import _window_sizes

    x = x.detach().clone().requires_grad_()
    with functional.streaming(net):
        out = torch.cat([net(w) for w in torch.split(x, _window_sizes(x.shape[0], chunks))])
    (out * torch.arange(1, out.shape[-1] + 1, dtype=out.dtype)).sum().backward()
    return out.detach(), x.grad


def _conv_net(backend: str) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        layers.Conv2d(2, 6, 3, padding=1),
        neurons.LIFNode(tau=2.0, backend=backend),
        layers.MaxPool2d(2),
        layers.Conv2d(6, 8, 3, padding=1),
        neurons.PLIFNode(backend=backend),
        layers.MaxPool2d(2),
        layers.Flatten(),
        layers.Linear(8 * 2 * 2, 5),
        neurons.LIFNode(v_threshold=0.1, backend=backend),
    ).double()


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("chunks", [2, 3, 7, 20])
def test_chunked_conv_net_equals_plain(backend, chunks):
    """LIF/PLIF conv net, float64, T = 7 (windows of unequal length; more chunks than
    steps: one step each): outputs, input and weight gradients (the PLIF time constants'
    too) bit for bit those of plain BPTT streamed in the same windows; against plain
    BPTT of the whole sequence, outputs bit for bit, gradients to float64 rounding (a
    weight's summed over each window, then added; the fused kernel's state gradient
    handed from window to window). Auto segments and one block alike."""
    plain = _conv_net(backend)
    for how in ("auto", "whole"):
        plain.zero_grad(set_to_none=True)
        chunked = copy.deepcopy(plain)
        if how == "auto":
            recompute_blocks(chunked, time_chunks=chunks)
        else:
            chunked = Recomputed(chunked, time_chunks=chunks)
        x = _spikes(7, 3, 2, 8, 8)
        out, gx = _run(plain, x)
        out_c, gx_c = _run(chunked, x)
        assert out.sum() > 0 and gx.abs().sum() > 0
        assert torch.equal(out, out_c)
        torch.testing.assert_close(gx_c, gx, rtol=1e-13, atol=1e-18)
        _same_grads(plain, chunked, exact=False)
        plain.zero_grad(set_to_none=True)
        out_s, gx_s = _streamed(plain, x, chunks)
        assert torch.equal(out_s, out_c) and torch.equal(gx_s, gx_c)
        _same_grads(plain, chunked)


def _compare(plain: nn.Module, chunked: nn.Module, x: torch.Tensor, chunks: int) -> None:
    """``chunked`` against plain BPTT streamed in the same windows, bit for bit."""
    plain.zero_grad(set_to_none=True)
    out, gx = _streamed(plain, x, chunks)
    out_c, gx_c = _run(chunked, x)
    assert gx.abs().sum() > 0
    assert torch.equal(out, out_c) and torch.equal(gx, gx_c)
    _same_grads(plain, chunked)


def test_chunked_sew_resnet_equals_plain():
    """SEW ResNet-18 (ADD blocks: their inputs are counts, kept as bytes) with frozen
    batch norm, every auto segment in 2 windows of 2 steps."""
    torch.manual_seed(0)
    plain = create_model("sew_resnet18", num_classes=4, in_channels=2).double().eval()
    chunked = copy.deepcopy(plain)
    recompute_blocks(chunked, time_chunks=2)
    _compare(plain, chunked, _spikes(4, 2, 2, 32, 32), 2)


def test_chunked_recurrent_layer_equals_plain():
    """A Recurrent layer (its cell run step by step, its output fed back) carries its
    state from window to window."""
    torch.manual_seed(0)
    cell = nn.Sequential(layers.Linear(6, 6, step_mode="s"), neurons.PLIFNode(step_mode="s"))
    plain = nn.Sequential(layers.Linear(4, 6), layers.Recurrent(cell, 6), layers.Linear(6, 3))
    plain = plain.double()
    chunked = Recomputed(copy.deepcopy(plain), time_chunks=3)
    _compare(plain, chunked, torch.randn(8, 2, 4, dtype=torch.float64), 3)


def test_gradcheck_through_a_chunked_block():
    """float64 gradcheck of a leaky integrator (no spikes: the finite differences see
    the gradient) run in 3 windows of 5 steps."""
    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(3, 4), neurons.LINode(tau=3.0), layers.Linear(4, 2))
    block = Recomputed(net.double(), time_chunks=3)
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x: block(x), (x,))


def test_streaming_and_plain_calls_keep_their_state():
    """A plain call starts from the initial state and keeps none; while streaming, the
    first window continues from the carried state and the last one's is kept (equal to
    the plain network's)."""
    plain = _conv_net("torch")
    chunked = copy.deepcopy(plain)
    recompute_blocks(chunked, time_chunks=3)
    x = _spikes(6, 2, 2, 8, 8)
    for _ in range(2):  # a second plain call starts afresh
        assert torch.equal(_run(plain, x)[0], _run(chunked, x)[0])
    assert all(m._state is None and not m.streaming for m in functional.memory_modules(chunked))
    with functional.streaming(plain), functional.streaming(chunked):
        for seed in (1, 2):
            y = _spikes(5, 2, 2, 8, 8, seed=seed)
            assert torch.equal(_run(plain, y)[0], _run(chunked, y)[0])
            functional.detach_net(plain)
            functional.detach_net(chunked)
        for a, b in zip(functional.memory_modules(plain), functional.memory_modules(chunked)):
            assert a.streaming and b.streaming and a.state.keys() == b.state.keys()
            assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    _same_grads(plain, chunked, exact=False)


def test_chunks_lower_the_peak_memory():
    """The measured peak of a training step of a plif_nmnist-sized conv stage (T = 16,
    batch 4, 34x34) falls as the windows shrink."""
    net = _stage()
    x = _spikes(16, 4, 2, 34, 34, dtype=torch.float32)
    peaks = []
    for chunks in (1, 4, 16):
        model = copy.deepcopy(net)
        recompute_blocks(model, time_chunks=chunks)
        peaks.append(step_peak_memory(model, x, lambda out: out.sum()))
    assert peaks[0] > 1.5 * peaks[1] > 1.5 * peaks[2]


def _stage() -> nn.Sequential:
    """A plif_nmnist-sized conv stage (34x34 input, 16 channels) without batch norm."""
    torch.manual_seed(0)
    return nn.Sequential(
        layers.Conv2d(2, 16, 3, padding=1), neurons.LIFNode(backend="torch"),
        layers.MaxPool2d(2),
        layers.Conv2d(16, 16, 3, padding=1), neurons.LIFNode(backend="torch"),
        layers.MaxPool2d(2), layers.Flatten(), layers.Linear(16 * 8 * 8, 10),
    )  # fmt: skip


def test_optimize_measures_and_applies_chunked_blocks():
    """optimize(time_chunks=4) measures the chunked blocks (a lower least peak than
    whole calls), says so in its plan, and plan.apply chunks another instance alike."""
    x = _spikes(16, 2, 2, 34, 34, dtype=torch.float32)
    whole = optimize(_stage(), x, repeat=0)
    model = _stage()
    plan = optimize(model, x, repeat=0, time_chunks=4)
    assert plan.time_chunks == 4 and "4 time chunks" in str(plan)
    assert plan.recomputed and plan.peak_bytes < 0.75 * whole.peak_bytes
    assert plan.peak_bytes_plain == whole.peak_bytes_plain
    other = _stage()
    plan.apply(other)
    chunked = [m for m in other.modules() if isinstance(m, Recomputed)] + [
        s for s in other.__dict__.get("_recompute_segments", ()) if isinstance(s, Recomputed)
    ]
    assert has_recomputed_blocks(other) and chunked
    assert all(m.time_chunks == 4 for m in chunked)
    assert step_peak_memory(other, x, lambda out: out.sum()) == plan.peak_bytes
    with pytest.raises(ConfigurationError, match="time_chunks must be"):
        optimize(_stage(), x, repeat=0, time_chunks=0)


def test_whole_sequence_modules_are_refused():
    """PSN (step t reads the whole sequence), temporal attention and a batch norm in
    training mode (its statistics over all the steps) are refused by name; a frozen
    batch norm runs; bad time_chunks and inputs are named."""
    psn = nn.Sequential(layers.Linear(3, 4), neurons.PSN(T=4))
    with pytest.raises(ConfigurationError, match=r"'1' \(PSN\)"):
        Recomputed(psn, time_chunks=2)
    attention = nn.Sequential(layers.TemporalWiseAttention(T=4, reduction=1), neurons.LIFNode())
    with pytest.raises(ConfigurationError, match="TemporalWiseAttention"):
        recompute_blocks(attention, ["0"], time_chunks=2)
    bn = nn.Sequential(layers.Linear(3, 4), layers.BatchNorm1d(4), neurons.LIFNode())
    block = Recomputed(bn, time_chunks=2)
    x = torch.rand(4, 2, 3, requires_grad=True)
    with pytest.raises(ConfigurationError, match=r"'1' \(BatchNorm1d\).*training mode"):
        block(x)
    bn.eval()
    assert block(x).shape == (4, 2, 4)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigurationError, match="time_chunks must be"):
            Recomputed(nn.Sequential(neurons.LIFNode()), time_chunks=bad)
    with pytest.raises(ShapeError, match="time_chunks > 1"):
        block(torch.rand(3, requires_grad=True))
    with pytest.raises(ConfigurationError, match=r"its .* input alone"):
        block(x, 1)


def test_undo_and_repr():
    net = _conv_net("torch")
    recompute_blocks(net, time_chunks=2)
    seg = net.__dict__["_recompute_segments"]
    assert "time_chunks=2" in repr(seg[0])
    assert net[2:].__dict__["_recompute_chunks"] == 2
    undo_recompute(net)
    assert type(net) is nn.Sequential and "_recompute_chunks" not in net.__dict__


def test_explicit_state_calls_are_not_chunked():
    """Inside functional.run (explicit state in and out) the block runs whole calls: the
    output and final state are the plain network's."""
    plain = _conv_net("torch")
    chunked = copy.deepcopy(plain)
    recompute_blocks(chunked, time_chunks=3)
    x = _spikes(6, 2, 2, 8, 8).requires_grad_()
    out, state = functional.run(plain, x)
    out_c, state_c = functional.run(chunked, x)
    assert torch.equal(out, out_c) and state.keys() == state_c.keys()
    assert all(torch.equal(state[m][k], state_c[m][k]) for m in state for k in state[m])


class _FirstOut(nn.Module):
    """The first output of a PyTorch RNN or multi-head attention (self-attention)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.inner, nn.MultiheadAttention):
            return self.inner(x, x, x, need_weights=False)[0]
        return self.inner(x)[0]


@pytest.mark.parametrize(
    "make",
    [
        lambda: _FirstOut(nn.GRU(8, 8)),
        lambda: _FirstOut(nn.LSTM(8, 8)),
        lambda: _FirstOut(nn.MultiheadAttention(8, 2)),
        lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0),
    ],
    ids=["gru", "lstm", "mha", "transformer_layer"],
)
def test_time_first_torch_modules_are_refused(make):
    """PyTorch's RNNs and multi-head attention with batch_first=False read dim 0 (time)
    as their sequence: in windows an RNN would restart its hidden state and attention
    would attend within the window (silently other outputs), so they are refused by
    name; with batch_first=True, or marked streamable, they run (batch-first: the
    plain network's outputs and gradients)."""
    torch.manual_seed(0)
    mixer = make()
    net = nn.Sequential(layers.Linear(4, 8), neurons.LIFNode(v_threshold=0.3), mixer)
    net = net.double()
    with pytest.raises(ConfigurationError, match=r"'2(\.inner|\.self_attn)?' \(.*first dim"):
        Recomputed(copy.deepcopy(net), time_chunks=2)
    for m in mixer.modules():
        if isinstance(m, (nn.RNNBase, nn.MultiheadAttention)):
            m.batch_first = True  # now dim 1 (the batch here) is the sequence
    x = torch.rand(6, 3, 4, dtype=torch.float64) * 2
    _compare(net, Recomputed(copy.deepcopy(net), time_chunks=2), x, 2)
    plain = _run(net, x)  # whole sequence: to float64 rounding (GEMMs of other sizes)
    chunked = _run(Recomputed(copy.deepcopy(net), time_chunks=2), x)
    torch.testing.assert_close(chunked, plain, rtol=1e-13, atol=1e-15)
    for m in mixer.modules():
        if isinstance(m, (nn.RNNBase, nn.MultiheadAttention)):
            m.batch_first = False
            m.streamable = True  # the caller vouches for it: runs
    assert Recomputed(copy.deepcopy(net), time_chunks=2)(x).shape == (6, 3, 8)


def test_a_block_that_does_not_keep_time_is_refused():
    """A block starting with an encoder takes a static [B, ...] input: cut along dim 0 it
    would be split along the batch and joined along time (a [3T, B/3, ...] output) --
    the call raises a ShapeError naming the window and output shapes instead, and leaves
    no state behind."""
    from spikeflow import encoding

    torch.manual_seed(0)
    net = nn.Sequential(encoding.PoissonEncoder(T=8), layers.Linear(4, 8), neurons.LIFNode())
    block = Recomputed(net.double(), time_chunks=3)
    image = torch.rand(6, 4, dtype=torch.float64)
    with pytest.raises(ShapeError, match=r"window of 2 step\(s\).*\(6, 4\).*\(8, 2, 8\)"):
        block(image)
    assert all(m._state is None and not m.streaming for m in functional.memory_modules(net))
    block.time_chunks = 1  # whole calls: the encoder's [T, B, ...] output
    assert block(image).shape == (8, 6, 8)


def test_recorded_membranes_span_the_whole_call():
    """A store_v_seq neuron in a chunked block records the membranes of all T steps, not
    the last window's: v_seq and the gradients of a loss on it (a membrane
    regulariser) are the plain network's (to float64 rounding)."""
    torch.manual_seed(0)
    plain = nn.Sequential(
        layers.Linear(4, 8), neurons.LIFNode(v_threshold=0.3, store_v_seq=True), layers.Linear(8, 3)
    ).double()
    chunked = Recomputed(copy.deepcopy(plain), time_chunks=3)
    x = torch.rand(8, 2, 4, dtype=torch.float64) * 2
    for net, node in ((plain, plain[1]), (chunked, chunked.module[1])):
        out = net(x)
        (out.sum() + node.v_seq.square().sum()).backward()
    assert chunked.module[1].v_seq.shape == (8, 2, 8)
    assert torch.equal(plain[1].v_seq, chunked.module[1].v_seq)
    _same_grads(plain, chunked, exact=False)


def test_hoyer_neuron_is_refused_by_name():
    """Lava's Hoyer neuron runs calls of exactly its T steps (a running extremum per step)
    and its hoyer_loss is over all of them: refused by name, not a shape error of a
    window."""
    node = neurons.LavaCubaHoyerNode(1.0, 0.5, 0.5, num_features=4, T=6)
    node.bn.eval()
    with pytest.raises(ConfigurationError, match=r"'1' \(LavaCubaHoyerNode\).*exactly its T"):
        Recomputed(nn.Sequential(layers.Conv2d(2, 4, 3, padding=1), node), time_chunks=2)
    block = Recomputed(nn.Sequential(layers.Conv2d(2, 4, 3, padding=1), node), time_chunks=1)
    assert block(torch.rand(6, 2, 2, 5, 5)).shape == (6, 2, 4, 5, 5)
