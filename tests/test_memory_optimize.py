"""spikeflow.memory.optimize: the measured peak is the hand-derived one, the chosen
network's gradients are the plain network's bit for bit (float64), the budget holds,
the network's state is left as it was; spike counts kept as bytes (SpikingJelly's
Uint8SpikeCompressor) round-trip and are checked."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.memory import (
    Recomputed,
    has_recomputed_blocks,
    optimize,
    pack_counts,
    recompute_blocks,
    step_peak_memory,
    undo_recompute,
)
from spikeflow.memory.measure import _TensorMemory
from spikeflow.memory.packing import try_pack_counts
from spikeflow.profiling import profile_layers

# -- spike counts kept as bytes ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_counts_round_trip(dtype):
    x = torch.tensor([[0, 1, 2, 255], [7, 0, 0, 3]], dtype=dtype).t()  # non-contiguous
    counts = pack_counts(x)
    assert counts.dtype == torch.uint8 and counts.shape == x.shape
    assert torch.equal(counts.to(dtype), x)


@pytest.mark.parametrize("bad", [256.0, -1.0, 0.5, float("nan"), -0.0])
def test_counts_refuse_what_bytes_cannot_hold(bad):
    x = torch.tensor([0.0, 3.0, bad])
    assert try_pack_counts(x) is None
    with pytest.raises(ConfigurationError, match="holds"):
        pack_counts(x)
    with pytest.raises(DTypeError, match="int64"):
        pack_counts(torch.tensor([1, 2]))


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        layers.Conv2d(cin, cout, 3, padding=1, bias=False),
        layers.BatchNorm2d(cout),
        neurons.LIFNode(v_threshold=0.3),
    )


def test_a_block_fed_counts_keeps_bytes_and_equals_plain():
    """A SEW block's input is spikes plus a shortcut (0, 1, 2): kept as one byte per
    element, and the outputs, input and weight gradients are the plain block's (float64,
    bit for bit)."""
    torch.manual_seed(0)
    plain = _conv_block(2, 4).double()
    recomputed = Recomputed(copy.deepcopy(plain))
    g = torch.Generator().manual_seed(1)
    counts = (torch.rand(3, 2, 2, 6, 6, generator=g, dtype=torch.float64) * 3).floor()
    assert counts.max() == 2
    kept: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept.append(t)
        return t

    results = []
    for net in (plain, recomputed):
        x = counts.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(x)
        (out * torch.arange(out.shape[-1], dtype=out.dtype)).sum().backward()
        results.append((out.detach(), x.grad, [p.grad for p in net.parameters()]))
        if net is recomputed:
            big = [t for t in kept if t.untyped_storage().nbytes() > 8]  # not the proxy
            assert [(t.dtype, t.numel()) for t in big] == [(torch.uint8, counts.numel())]
        kept.clear()
    (out, gx, grads), (out_r, gx_r, grads_r) = results
    assert out.abs().sum() > 0 and torch.equal(out, out_r) and torch.equal(gx, gx_r)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_r))
    with pytest.raises(ConfigurationError, match=r"holds 0\.5"):
        Recomputed(_conv_block(2, 4), pack="uint8")(torch.full((2, 1, 2, 4, 4), 0.5))


# -- measuring ---------------------------------------------------------------------------------


def test_tensor_memory_counts_allocations_and_frees():
    """Hand-counted: 1000 floats, freed, then 500; views and in-place operations, and
    views of a storage from before (a parameter's, as a recomputation detaches it),
    allocate nothing."""
    weight = torch.ones(2000)
    with _TensorMemory() as tracker:
        weight.detach().view(2, 1000).mul_(1)
        assert tracker.peak == 0
        a = torch.empty(1000)
        b = a.view(10, 100)  # a view: no new storage
        del a, b
        c = torch.empty(500)
        c.add_(1)  # in place: no new storage
    assert tracker.peak == 4000 and tracker.live == 2000
    del c
    assert tracker.live == 0


def test_tensor_memory_counts_a_sparse_tensors_indices_and_values():
    """``s * 2`` of a coalesced sparse COO tensor with 3 entries: new indices (2 x 3
    int64: 48 bytes) and values (3 floats: 12 bytes), freed with it."""
    i = torch.tensor([[0, 1, 2], [0, 1, 2]])
    s = torch.sparse_coo_tensor(i, torch.ones(3), (16, 16), check_invariants=True)
    s = s.coalesce()
    with _TensorMemory() as tracker:
        y = s * 2
    assert tracker.peak == tracker.live == 48 + 12
    del y
    assert tracker.live == 0


class _Scale(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def test_step_peak_memory_is_the_hand_derived_one():
    """``x * w`` then the sum: the output (n floats) lives through the step, the
    backward pass allocates w's gradient (n floats), plus a few scalars (the loss, its
    gradient): 8n bytes and at most a few dozen more."""
    n = 1 << 14
    model = _Scale(n)
    peak = step_peak_memory(model, torch.randn(n))
    assert 8 * n <= peak <= 8 * n + 64
    assert model.w.grad is None  # the gradients are put back


class _Counter(nn.Module):
    """Counts its calls in a buffer it replaces (``self.calls = self.calls + 1``)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls = self.calls + 1
        return x


def test_a_buffer_the_step_replaces_is_put_back():
    net = nn.Sequential(_Scale(4), _Counter())
    kept = net[1].calls
    step_peak_memory(net, torch.randn(4))
    assert net[1].calls is kept and net[1].calls == 0
    profile_layers(net, torch.randn(4), repeat=1, warmup=0)
    assert net[1].calls is kept and net[1].calls == 0


def test_a_spikingjelly_networks_state_is_put_back():
    """A SpikingJelly LIF keeps its membrane in ``_memories``: put back after each
    measured step (else the next step backpropagates into the freed graph of the
    last), and reset between profiled steps."""
    layer = pytest.importorskip("spikingjelly.activation_based.layer")
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    net = nn.Sequential(layer.Linear(8, 16), neuron.LIFNode(step_mode="m"))
    x = torch.rand(4, 3, 8) * 3
    assert step_peak_memory(net, x) == step_peak_memory(net, x) > 0
    assert net[1].v == 0.0
    assert profile_layers(net, x, layers=["1"], repeat=2, warmup=1).layer("1").calls == 1
    assert net[1].v == 0.0


def test_an_input_that_requires_grad_is_left_without_one():
    """The input's gradient (n more floats) is the step's, and is put back as it was."""
    n = 1 << 10
    x = torch.randn(n, requires_grad=True)
    assert 12 * n <= step_peak_memory(_Scale(n), x) <= 12 * n + 64 and x.grad is None
    optimize(nn.Sequential(_Scale(n), nn.Tanh()), x, blocks=["0"], repeat=1)
    assert x.grad is None


# -- choosing ----------------------------------------------------------------------------------


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        _conv_block(2, 6),
        *(_conv_block(6, 6) for _ in range(4)),
        layers.MaxPool2d(2),
        layers.Flatten(),
        layers.Linear(6 * 4 * 4, 3),
    ).double()


def _input() -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return (torch.rand(4, 2, 2, 8, 8, generator=g, dtype=torch.float64) < 0.3).double()


def _step(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list, dict]:
    out = net(x)
    (out * torch.arange(3, dtype=out.dtype)).sum().backward()
    return out.detach(), [p.grad.clone() for p in net.parameters()], net.state_dict()


def test_optimize_least_memory_is_exact_and_leaves_the_state():
    """No budget: the peak of recomputing every block, reached with the blocks chosen;
    the network trains as the plain one, bit for bit (float64); optimize leaves the
    gradients, batch-norm statistics and random generator as they were."""
    plain, net = _net(), _net()
    x = _input()
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.25)
    rng = torch.get_rng_state()
    before = copy.deepcopy(net.state_dict())
    plan = optimize(net, x, repeat=1)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.25)) for p in net.parameters())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    everything = copy.deepcopy(plain)
    recompute_blocks(everything)
    assert plan.peak_bytes <= step_peak_memory(everything, x) < 0.5 * plan.peak_bytes_plain
    assert plan.peak_bytes == step_peak_memory(net, x)
    assert plan.peak_bytes_plain == step_peak_memory(plain, x)
    names = ["<model>[0]", "<model>[1]", "<model>[2]", "<model>[3]", "<model>[4,5,6,7]"]
    assert [b.name for b in plan.blocks] == names
    # the last block's activations are needed as the backward pass starts; the
    # network's input is kept by the caller: packing it would add its bits
    assert "<model>[4,5,6,7]" not in plan.recomputed and plan.recomputed["<model>[0]"] == "none"
    assert has_recomputed_blocks(net) and plan.recomputed["<model>[1]"] == "auto"
    assert plan.blocks[1].input_kind == "spikes" and plan.step_ms > 0 and plan.trials >= 5
    assert "recomputed, input as bits" in str(plan)
    for p in net.parameters():
        p.grad = None
    out, grads, state = _step(plain, x)
    out_r, grads_r, state_r = _step(net, x)
    assert torch.equal(out, out_r)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_r))
    assert all(torch.equal(v, state_r[k]) for k, v in state.items())


def test_optimize_fits_a_budget_with_less_recomputation():
    x = _input()
    plain_peak = step_peak_memory(_net(), x)
    fits = optimize(_net(), x, 1.0, repeat=0)
    assert fits.recomputed == {} and fits.peak_bytes == plain_peak == fits.budget_bytes
    least = optimize(_net(), x, repeat=0)
    # the least peak runs the last block plainly: recomputing every block is above it
    exact = optimize(_net(), x, least.peak_bytes, repeat=0)
    assert exact.peak_bytes <= least.peak_bytes == exact.budget_bytes
    budget = (least.peak_bytes + plain_peak) // 2
    net = _net()
    plan = optimize(net, x, budget, repeat=0)
    assert least.peak_bytes < plan.peak_bytes <= budget == plan.budget_bytes
    assert plan.peak_bytes == step_peak_memory(net, x)
    assert 0 < len(plan.recomputed) < len(least.recomputed)
    again = _net()
    plan.apply(again)
    assert step_peak_memory(again, x) == plan.peak_bytes
    net = _net()
    with pytest.raises(ConfigurationError, match="cannot be met"):
        optimize(net, x, 1000, repeat=0)
    assert not has_recomputed_blocks(net)


def test_optimize_named_blocks():
    net = _net()
    plan = optimize(net, _input(), blocks=["0", "1"], repeat=0)
    assert [b.name for b in plan.blocks] == ["0", "1"]
    assert all(isinstance(net[int(n)], Recomputed) for n in plan.recomputed)


def test_optimize_bad_arguments():
    x = _input()
    for budget in (-1, 1.5, "1MB", True):
        with pytest.raises(ConfigurationError, match="budget"):
            optimize(_net(), x, budget, repeat=0)
    with pytest.raises(ConfigurationError, match="'auto' or 'none'"):
        optimize(_net(), x, pack="bits")
    with pytest.raises(ConfigurationError, match="repeat"):
        optimize(_net(), x, repeat=-1)
    with pytest.raises(ConfigurationError, match=r"no submodule named \['9'\]"):
        optimize(_net(), x, blocks=["9"])
    with pytest.raises(ConfigurationError, match="loss_fn must return"):
        optimize(_net(), x, loss_fn=lambda out: out)
    net = _net()
    recompute_blocks(net)
    with pytest.raises(ConfigurationError, match="undo_recompute"):
        optimize(net, x)


def test_counts_and_bits_are_spikingjellys_compressors():
    """The bytes kept for counts are SpikingJelly 2.0's ``Uint8SpikeCompressor``'s, and
    the bits kept for spikes its ``BitSpikeCompressor``'s."""
    memopt = pytest.importorskip("spikingjelly.activation_based.memopt")
    from spikeflow.memory import pack_spikes

    g = torch.Generator().manual_seed(3)
    counts = (torch.rand(3, 5, 7, generator=g) * 4).floor()
    assert torch.equal(pack_counts(counts), memopt.Uint8SpikeCompressor().compress(counts)[0])
    spikes = (torch.rand(3, 5, 7, generator=g) < 0.3).float()
    assert torch.equal(pack_spikes(spikes).bits, memopt.BitSpikeCompressor().compress(spikes)[0])


def test_probe_leaves_out_parameters_autograd_saves():
    """A Linear(64, 64) fed a hidden layer saves its input (3 x 64 floats: 768 bytes)
    and its weight; recomputing the block frees the input only, so that is its cost."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 64), nn.Linear(64, 64, bias=False), nn.Tanh())
    plan = optimize(net, torch.randn(3, 8), blocks=["1"], repeat=0)
    assert [(b.name, b.saved_bytes, b.input_bytes) for b in plan.blocks] == [("1", 768, 768)]
    undo_recompute(net)  # profile_layers measures it the same way (one implementation)
    assert profile_layers(net, torch.randn(3, 8), layers=["1"]).layer("1").saved_bytes == 768
