"""spikeflow.memory: recomputed blocks equal the plain network exactly (outputs,
gradients, carried states, buffers, random draws), keep only their packed input, and
leave no trace of the recomputation; spike packing round-trips."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
from torch import nn

from spikeflow import functional, layers, neurons
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.memory import (
    Recomputed,
    has_recomputed_blocks,
    is_recomputing,
    pack_spikes,
    recompute_blocks,
    undo_recompute,
    unpack_spikes,
)
from spikeflow.memory.packing import try_pack_spikes
from spikeflow.models import create_model
from spikeflow.training.monitors import SpikeMonitor

# -- packing -------------------------------------------------------------------------------


@pytest.mark.parametrize("numel", [0, 1, 7, 8, 9, 1000, 4099])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bool])
def test_pack_round_trip(numel, dtype):
    g = torch.Generator().manual_seed(numel)
    x = (torch.rand(numel, generator=g) < 0.3).to(dtype)
    packed = pack_spikes(x.reshape(-1, 1) if numel else x)
    assert packed.bits.dtype == torch.uint8 and packed.nbytes == -(-numel // 8)
    back = unpack_spikes(packed)
    assert back.dtype == dtype and torch.equal(back.reshape(-1), x)


@pytest.mark.parametrize("numel", [15, 16, 17, 33, 100])
def test_pack_and_check_across_slices(monkeypatch, numel):
    """Packed and checked 16 elements at a time: every slice lands in its bytes, the last
    one padded, and a bad value in any slice is found."""
    import spikeflow.memory.packing as packing

    monkeypatch.setattr(packing, "_CHUNK", 16)
    x = (torch.rand(numel, generator=torch.Generator().manual_seed(numel)) < 0.5).float()
    assert torch.equal(unpack_spikes(pack_spikes(x)), x)
    for where in (0, 16, numel - 1):
        if where < numel:
            y = x.clone()
            y[where] = 0.5
            assert packing.try_pack_spikes(y) is None


def test_pack_bit_order_is_little_endian():
    """Element k of a group of eight is bit k of its byte."""
    x = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 1, 0, 1])
    assert pack_spikes(x).bits.tolist() == [0b10000001, 0b10]


def test_pack_keeps_shape():
    x = (torch.rand(3, 5, 2, 7) < 0.5).float()
    assert torch.equal(unpack_spikes(pack_spikes(x)), x)


def test_pack_refuses_non_spikes():
    message = r"shape \(2, 2\), dtype torch.float32\) holds 0.5"
    with pytest.raises(ConfigurationError, match=message):
        pack_spikes(torch.tensor([[0.0, 1.0], [0.5, 1.0]]))
    with pytest.raises(DTypeError, match="complex"):
        pack_spikes(torch.zeros(3, dtype=torch.complex64))


class _SignOfZero(nn.Module):
    """atan2(x, -1): pi for +0.0, -pi for -0.0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.atan2(x, -torch.ones_like(x))


def test_negative_zero_is_not_packed():
    """-0.0 equals 0.0, but its bits unpack to +0.0: it is kept as it is (a recomputed
    block saw +0.0 where the plain one saw -0.0)."""
    x = torch.tensor([[0.0, 1.0, -0.0, 1.0]] * 3)
    assert try_pack_spikes(x) is None
    with pytest.raises(ConfigurationError, match=r"holds -0\.0"):
        pack_spikes(x)
    xs = x.clone().requires_grad_()
    out = Recomputed(_SignOfZero())(xs)
    assert torch.equal(out, _SignOfZero()(x)) and out[0, 2] < 0


# -- recomputed blocks equal the plain network ------------------------------------------------


def _block(cin: int, cout: int, **neuron_kwargs) -> nn.Sequential:
    return nn.Sequential(
        layers.Conv2d(cin, cout, 3, padding=1, bias=False),
        layers.BatchNorm2d(cout),
        neurons.LIFNode(**neuron_kwargs),
        layers.MaxPool2d(2),
        layers.Dropout(0.2),
    )


def _net(**neuron_kwargs) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        _block(2, 8, **neuron_kwargs),
        _block(8, 8, **neuron_kwargs),
        layers.Flatten(),
        layers.Linear(8 * 2 * 2, 5),
        neurons.LIFNode(v_threshold=0.1, **neuron_kwargs),
    )


def _spikes(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.3).float()


def _run(net: nn.Module, x: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    torch.manual_seed(seed)
    out = net(x)
    (out * torch.arange(out.shape[-1], dtype=out.dtype, device=out.device)).sum().backward()
    return out.detach(), x.grad


def _same(a: nn.Module, b: nn.Module) -> None:
    assert list(a.state_dict()) == list(b.state_dict())
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p.grad, q.grad), name
    for (name, u), v in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(u, v), name


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("how", ["names", "auto", "predicate"])
def test_recomputed_equals_plain(backend, how):
    """Outputs, input and weight gradients, BN running statistics and dropout draws are
    bit for bit the plain network's (the fused CPU kernel and the reference loop)."""
    plain = _net(backend=backend)
    plain.train()
    recomputed = copy.deepcopy(plain)
    if how == "names":
        assert recompute_blocks(recomputed, ["0", "1"]) == ["0", "1"]
    elif how == "auto":
        assert recompute_blocks(recomputed) == ["<model>[0|1,2|3,4]"]
    else:
        chosen = recompute_blocks(recomputed, lambda name, m: isinstance(m, nn.Sequential))
        assert chosen == ["0", "1"]
    x = _spikes(6, 3, 2, 8, 8)
    out, gx = _run(plain, x)
    out_r, gx_r = _run(recomputed, x)
    assert out.sum() > 0 and gx.abs().sum() > 0
    assert torch.equal(out, out_r) and torch.equal(gx, gx_r)
    _same(plain, recomputed)


def test_recomputed_float_input_and_plif_parameters():
    """A float (not spike) input is kept as it is; a learnable tau's gradient matches."""
    torch.manual_seed(0)
    plain = nn.Sequential(layers.Linear(4, 6), neurons.ParametricLIFNode(), layers.Linear(6, 3))
    recomputed = copy.deepcopy(plain)
    recompute_blocks(recomputed, ["0", "1"])
    x = torch.randn(9, 2, 4) * 2
    out, gx = _run(plain, x)
    out_r, gx_r = _run(recomputed, x)
    assert torch.equal(out, out_r) and torch.equal(gx, gx_r)
    _same(plain, recomputed)


def test_streaming_chunks_start_from_the_carried_state():
    """Streamed in chunks with the graph kept across them: each recomputation starts
    from the state the previous chunk left, and afterwards the carried state is the
    forward pass's, not the recomputation's."""
    plain = _net(backend="cpu")
    recomputed = copy.deepcopy(plain)
    recompute_blocks(recomputed, ["0", "1"])
    x = _spikes(8, 2, 2, 8, 8, seed=3)
    results = []
    for net in (plain, recomputed):
        xs = x.detach().clone().requires_grad_()
        torch.manual_seed(5)
        with functional.streaming(net):
            out = torch.cat([net(chunk) for chunk in xs.split(3)])
            state = [m.state["v"].clone() for m in net.modules() if isinstance(m, neurons.LIFNode)]
            out.sum().backward()
            after = [m.state["v"] for m in net.modules() if isinstance(m, neurons.LIFNode)]
        assert all(torch.equal(a, b) for a, b in zip(state, after))
        results.append((out.detach(), xs.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    _same(plain, recomputed)


def test_reset_between_forward_and_backward_leaves_the_network_reset():
    recomputed = _net(backend="torch")
    recompute_blocks(recomputed, ["0"])
    functional.set_streaming(recomputed, True)
    out = recomputed(_spikes(4, 2, 2, 8, 8))
    functional.reset_net(recomputed)
    out.sum().backward()
    assert all(m.state is None for m in functional.memory_modules(recomputed))
    functional.set_streaming(recomputed, False)


def test_recorded_membrane_in_the_loss_and_restored():
    """A loss on the recorded membrane (store_v_seq) backpropagates through the
    recomputation; the recorded tensor is the forward pass's object afterwards."""
    torch.manual_seed(0)
    plain = nn.Sequential(
        layers.Linear(5, 4), neurons.LIFNode(store_v_seq=True, backend="torch"), layers.Linear(4, 2)
    )
    recomputed = Recomputed(copy.deepcopy(plain))
    x = torch.randn(7, 3, 5)
    grads = []
    for net, lif in ((plain, plain[1]), (recomputed, recomputed.module[1])):
        xs = x.clone().requires_grad_()
        out = net(xs)
        v_seq = lif.v_seq
        (out.sum() + v_seq.square().sum()).backward()
        assert lif.v_seq is v_seq
        grads.append(xs.grad)
    assert torch.equal(*grads)


def _glif_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(5, 6), neurons.GLIFNode(T=10, inplane=6))
    with torch.no_grad():  # a different conductance at every step
        net[1].conduct.normal_()
    return net


@pytest.mark.parametrize("sizes", [(3, 3), (4, 3, 3)])
def test_a_step_counter_is_carried_state(sizes):
    """GLIF counts the steps it has run (which conductance is next): the recomputation
    of a chunk started from the count after the last chunk. Within T its gradients were
    silently those of other steps; past T it raised a StateError in the backward pass."""
    plain = _glif_net()
    recomputed = Recomputed(copy.deepcopy(plain))
    x = torch.randn(sum(sizes), 2, 5)
    results = []
    for net in (plain, recomputed):
        xs = x.clone().requires_grad_()
        with functional.streaming(net):
            out = torch.cat([net(chunk) for chunk in xs.split(list(sizes))])
            (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
            steps = [m._t for m in net.modules() if isinstance(m, neurons.GLIFNode)]
        results.append((out, xs.grad, steps))
    assert results[0][1].abs().sum() > 0 and results[0][2] == results[1][2] == [sum(sizes)]
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    _same(plain, recomputed.module)


def test_single_steps_of_a_masked_psn():
    """A masked PSN streamed one step per call counts its steps too."""
    torch.manual_seed(0)
    psn = neurons.MaskedPSN(k=2, T=5, step_mode="s")
    psn.lambda_ = 1.0
    plain = nn.Sequential(layers.Linear(4, 3, step_mode="s"), psn)
    recomputed = Recomputed(copy.deepcopy(plain))
    x = torch.randn(5, 2, 4)
    grads = []
    for net in (plain, recomputed):
        xs = x.clone().requires_grad_()
        with functional.streaming(net):
            out = torch.stack([net(step) for step in xs])
            (out * torch.arange(3.0)).sum().backward()
        grads.append(xs.grad)
    assert grads[0].abs().sum() > 0 and torch.equal(*grads)
    _same(plain, recomputed.module)


def test_train_mode_switched_before_the_backward_pass():
    """The recomputation runs in the mode of the forward call (batch statistics,
    dropout), not in the mode the network was switched to before backward (it raised
    a CheckpointError)."""
    plain = _net()
    recomputed = copy.deepcopy(plain)
    recompute_blocks(recomputed)
    x = _spikes(4, 3, 2, 8, 8)
    results = []
    for net in (plain, recomputed):
        net.train()
        xs = x.clone().requires_grad_()
        torch.manual_seed(1)
        out = net(xs)
        net.eval()
        out.sum().backward()
        assert not any(m.training for m in net.modules())
        results.append((out, xs.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    _same(plain, recomputed)


def test_a_recomputed_block_inside_a_recurrent_container():
    """The container runs the block one step per call, its neurons streaming for the
    call and their parameters computed once at the first step: the recomputation of a
    step sees both (it raised a StateError in the backward pass)."""
    torch.manual_seed(0)
    cell = nn.Sequential(layers.Linear(6, 6, step_mode="s"), neurons.PLIFNode(step_mode="s"))
    plain = nn.Sequential(layers.Linear(4, 6), layers.Recurrent(cell, 6))
    recomputed = copy.deepcopy(plain)
    assert recompute_blocks(recomputed, ["1.sub_module"]) == ["1.sub_module"]
    x = torch.randn(5, 2, 4)
    out, gx = _run(plain, x)
    out_r, gx_r = _run(recomputed, x)
    assert gx.abs().sum() > 0 and torch.equal(out, out_r) and torch.equal(gx, gx_r)
    _same(plain, recomputed)


def test_a_modules_own_random_generator_is_replayed():
    """A Poisson encoder drawing from its own generator inside a recomputed block: the
    recomputation drew other spikes (the first layer's weight gradient was another), and
    the generator advanced twice."""
    from spikeflow.encoding import PoissonEncoder

    results = []
    for recompute in (False, True):
        torch.manual_seed(0)
        encoder = PoissonEncoder(4, generator=torch.Generator().manual_seed(5))
        net = nn.Sequential(encoder, layers.Linear(6, 5), neurons.LIFNode(), layers.Linear(5, 3))
        if recompute:
            recompute_blocks(net)
        net(torch.rand(2, 6, generator=torch.Generator().manual_seed(1))).sum().backward()
        results.append((net, torch.rand(3, generator=encoder.generator)))
    assert torch.equal(results[0][1], results[1][1])
    _same(results[0][0], results[1][0])


def test_gradcheck_through_a_recomputed_block():
    """float64 gradcheck of a recomputed stateful block (a leaky integrator: no spikes,
    so the finite differences see the gradient), with batch norm in training mode."""
    torch.manual_seed(0)
    net = nn.Sequential(
        layers.Linear(3, 4), layers.BatchNorm1d(4), neurons.LINode(tau=3.0), layers.Linear(4, 2)
    ).double()
    block = Recomputed(net)
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x: block(x), (x,))


# -- what is kept -----------------------------------------------------------------------------


@pytest.mark.parametrize("pack, freed", [("auto", True), ("bits", True), ("none", False)])
def test_a_packed_input_is_not_kept(pack, freed):
    """With packing, the block holds no reference to its float input (only its bits and
    a zero-size proxy for the gradient); without it, the input stays alive."""
    block = Recomputed(_block(2, 4, backend="cpu"), pack=pack)
    x = _spikes(4, 2, 2, 8, 8).requires_grad_()
    h = x * 1.0  # an intermediate tensor, as a previous layer's output is
    ref = weakref.ref(h)
    out = block(h)
    del h
    gc.collect()
    assert (ref() is None) == freed
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_recomputed_blocks_keep_only_their_packed_inputs():
    """Bytes (distinct storages) saved for backward outside the recomputed blocks: the
    plain network keeps every layer's activations; the recomputed one keeps each
    block's input as bits, plus a one-element proxy per input for its gradient."""

    def saved_bytes(net: nn.Module, x: torch.Tensor) -> int:
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(x)
        out.sum().backward()
        return sum(storages.values())

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            layers.Conv2d(cin, cout, 3, padding=1), layers.BatchNorm2d(cout),
            neurons.LIFNode(v_threshold=0.2), layers.MaxPool2d(2),
        )  # fmt: skip

    plain = nn.Sequential(block(2, 8), block(8, 8))
    recomputed = copy.deepcopy(plain)
    recompute_blocks(recomputed)
    x = _spikes(8, 4, 2, 16, 16).requires_grad_()
    inner = plain[0](x)
    assert 0 < inner.mean() < 1  # the second block gets spikes
    bits = x.numel() // 8 + inner.numel() // 8
    assert saved_bytes(recomputed, x) == bits + 2 * 4
    assert saved_bytes(plain, x) > 30 * bits


def test_pack_bits_refuses_a_non_spike_input():
    block = Recomputed(nn.Sequential(layers.Linear(3, 3), neurons.LIFNode()), pack="bits")
    with pytest.raises(ConfigurationError, match="holds"):
        block(torch.full((2, 1, 3), 0.5, requires_grad=True))


def test_no_grad_calls_the_module():
    block = Recomputed(_block(2, 4))
    with torch.no_grad():
        out = block(_spikes(3, 1, 2, 8, 8))
    assert out.grad_fn is None


# -- the model around it ----------------------------------------------------------------------


def test_state_dict_keys_are_the_plain_ones():
    plain = _net()
    recomputed = copy.deepcopy(plain)
    recompute_blocks(recomputed, ["0"])
    assert list(recomputed.state_dict()) == list(plain.state_dict())
    fresh = _net()
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    recomputed.load_state_dict(fresh.state_dict())
    plain.load_state_dict(recomputed.state_dict())
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), fresh.parameters()))


class _Wrapper(nn.Module):
    """A block whose own child is named ``module`` (as a wrapper's often is)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def test_state_dict_of_a_block_whose_child_is_named_module():
    """The block's own keys start with ``module.``: they were taken for the wrapper's
    and not prefixed again, so the recomputed model could not load even its own."""
    torch.manual_seed(0)
    plain = nn.Sequential(layers.Linear(3, 4), _Wrapper(nn.Sequential(neurons.PLIFNode())))
    recomputed = copy.deepcopy(plain)
    recompute_blocks(recomputed, ["1"])
    assert list(recomputed.state_dict()) == ["0.weight", "0.bias", "1.module.0.w"]
    with torch.no_grad():
        plain[1].module[0].w.fill_(0.25)
    recomputed.load_state_dict(plain.state_dict())
    assert recomputed[1].module.module[0].w.item() == 0.25
    recomputed.load_state_dict(recomputed.state_dict())
    plain.load_state_dict(recomputed.state_dict())


def test_a_segmented_sequential_changed_afterwards_runs_its_children():
    """Sliced (it crashed: the slice had no segments), a child appended or replaced
    (the old segments ran without it): the children run, recomputed."""
    plain = _net()
    recomputed = copy.deepcopy(plain)
    recompute_blocks(recomputed)
    x = _spikes(4, 3, 2, 8, 8)
    with torch.no_grad():
        h = copy.deepcopy(plain[0])(x)  # the input of plain[1:]
    for start, stop, inputs in ((None, 2, x), (1, None, h)):
        out, gx = _run(plain[start:stop], inputs)
        out_r, gx_r = _run(recomputed[start:stop], inputs)
        assert torch.equal(out, out_r) and torch.equal(gx, gx_r)
    torch.manual_seed(1)
    plain.append(layers.Linear(5, 2))
    plain[3] = layers.Linear(8 * 2 * 2, 5)
    recomputed.append(copy.deepcopy(plain[5]))
    recomputed[3] = copy.deepcopy(plain[3])
    out, gx = _run(plain, x)
    out_r, gx_r = _run(recomputed, x)
    assert out.shape[-1] == 2 and torch.equal(out, out_r) and torch.equal(gx, gx_r)
    _same(plain, recomputed)
    segments = recomputed.__dict__["_recompute_segments"]
    assert [m for s in segments for m in s.module] == list(recomputed)
    unpacked = _net()
    recompute_blocks(unpacked, pack="none")
    part = unpacked[:2]
    part(x.requires_grad_()).sum().backward()
    assert [s.pack for s in part.__dict__["_recompute_segments"]] == ["none", "none"]


class _RecurrentNet(nn.Module):
    """An encoder block, then a recurrent layer whose cell is a plain nn.Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(layers.Linear(4, 6), neurons.LIFNode())
        cell = nn.Sequential(layers.Linear(6, 6, step_mode="s"), neurons.PLIFNode(step_mode="s"))
        self.recurrent = layers.Recurrent(cell, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.recurrent(self.encoder(x))


def test_auto_leaves_the_cells_a_container_runs_step_by_step():
    """The "auto" choice recomputed the recurrent layer's cell at every step; with a
    pruned (reparameterised) weight, which the container computes once for its steps,
    the backward pass raised a CheckpointError. The container is left as it is."""
    from spikeflow.prune import apply_soft_threshold

    torch.manual_seed(0)
    plain = _RecurrentNet()
    apply_soft_threshold(plain, 0.01)
    recomputed = copy.deepcopy(plain)
    assert recompute_blocks(recomputed) == ["encoder[0,1]"]
    x = torch.randn(5, 2, 4) * 2
    out, gx = _run(plain, x)
    out_r, gx_r = _run(recomputed, x)
    assert gx.abs().sum() > 0 and torch.equal(out, out_r) and torch.equal(gx, gx_r)
    _same(plain, recomputed)


def test_auto_on_zoo_models():
    assert recompute_blocks(create_model("plif_nmnist")) == [
        "conv[0,1,2,3|4,5,6,7]",
        "fc[0,1,2,3|4,5,6]",
    ]
    assert recompute_blocks(create_model("sew_resnet18", num_classes=10))[1:] == [
        "layer1[0|1]", "layer2[0|1]", "layer3[0|1]", "layer4[0|1]",
    ]  # fmt: skip
    assert recompute_blocks(create_model("spikformer", num_classes=10))[-1] == "blocks[0|1|2|3]"


def test_zoo_model_recomputed_equals_plain():
    torch.manual_seed(0)
    plain = create_model("sew_resnet18", num_classes=4, in_channels=2)
    recomputed = copy.deepcopy(plain)
    recompute_blocks(recomputed)
    x = _spikes(2, 2, 2, 32, 32)
    out, gx = _run(plain, x)
    out_r, gx_r = _run(recomputed, x)
    assert torch.equal(out, out_r) and torch.equal(gx, gx_r)
    _same(plain, recomputed)


def test_undo_recompute_gives_back_the_plain_network():
    torch.manual_seed(0)
    plain = create_model("spikformer", num_classes=4, in_channels=2, input_size=32, embed_dim=32,
                         depth=2, num_heads=2)  # fmt: skip
    model = copy.deepcopy(plain)
    recompute_blocks(model)
    recompute_blocks(model, ["head"])  # a Recomputed child of the model itself
    assert has_recomputed_blocks(model)
    assert undo_recompute(model) is model and not has_recomputed_blocks(model)
    assert [type(m) for m in model.modules()] == [type(m) for m in plain.modules()]
    assert model.state_dict().keys() == plain.state_dict().keys()
    x = _spikes(2, 2, 2, 32, 32)
    out, gx = _run(plain, x)
    out_u, gx_u = _run(model, x)
    assert torch.equal(out, out_u) and torch.equal(gx, gx_u)
    block = Recomputed(nn.Sequential(layers.Linear(3, 3), neurons.LIFNode()))
    assert type(undo_recompute(block)) is nn.Sequential


def test_nir_export_of_a_recomputed_network_is_the_plain_ones():
    pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    from spikeflow.interop import export_to_nir

    net = nn.Sequential(layers.Linear(4, 8), neurons.LIFNode(), layers.Linear(8, 3),
                        neurons.LIFNode())  # fmt: skip
    plain = export_to_nir(net, torch.rand(2, 1, 4))
    recompute_blocks(net)
    graph = export_to_nir(net, torch.rand(2, 1, 4))
    assert has_recomputed_blocks(net)  # the network itself is left as it is
    assert graph.edges == plain.edges and graph.nodes.keys() == plain.nodes.keys()
    for name, node in plain.nodes.items():
        for key, value in vars(node).items():
            other = getattr(graph.nodes[name], key)
            if hasattr(value, "shape"):
                assert (value == other).all(), (name, key)


def test_monitor_counts_once():
    """The training monitor's hooks skip the recomputation: the same rates as plain."""
    rates = []
    for recompute in (False, True):
        net = _net()
        if recompute:
            recompute_blocks(net)
        with SpikeMonitor(net) as monitor:
            net(_spikes(4, 3, 2, 8, 8).requires_grad_()).sum().backward()
            rates.append([(s.spikes, s.spikes_per_sample) for s in monitor.summary()])
    assert rates[0] == rates[1] and rates[0][0][0] > 0


def test_stdp_learner_records_once():
    """STDP on one layer of a network trained by gradients: the learner's hooks skip
    the recomputation (they recorded the layer's input twice and the neuron's output
    once, and step() raised a StateError)."""
    from spikeflow.learn import STDPLearner

    updates = []
    for recompute in (False, True):
        torch.manual_seed(0)
        fc, lif = layers.Linear(6, 5, bias=False), neurons.LIFNode(v_threshold=0.3)
        net = nn.Sequential(fc, lif, layers.Linear(5, 3), neurons.LIFNode())
        if recompute:
            recompute_blocks(net)
        learner = STDPLearner(fc, lif, tau_pre=2.0, tau_post=2.0)
        net(_spikes(6, 2, 6)).sum().backward()
        fc.weight.grad = None
        learner.step()
        updates.append(fc.weight.grad)
    assert updates[0].abs().sum() > 0 and torch.equal(*updates)


def test_is_recomputing_only_in_the_recomputation():
    seen = []
    block = Recomputed(nn.Sequential(layers.Linear(3, 3), neurons.LIFNode()))
    block.module[0].register_forward_hook(lambda *a: seen.append(is_recomputing()))
    block(torch.randn(4, 2, 3, requires_grad=True)).sum().backward()
    assert seen == [False, True] and not is_recomputing()


def test_bad_arguments():
    net = _net()
    message = r"no submodule named \['9'\].*\['0', '1', '2', '3', '4'\]"
    with pytest.raises(ConfigurationError, match=message):
        recompute_blocks(net, ["9"])
    with pytest.raises(ConfigurationError, match="pack must be one of"):
        Recomputed(nn.Linear(2, 2), pack="bytes")
    with pytest.raises(ConfigurationError, match="already Recomputed"):
        Recomputed(Recomputed(nn.Linear(2, 2)))
    with pytest.raises(ConfigurationError, match="'all'"):
        recompute_blocks(net, "all")
    with pytest.raises(ConfigurationError, match=r"no nn\.Sequential or nn\.ModuleList"):
        recompute_blocks(neurons.LIFNode())
    recompute_blocks(net, ["0"])
    with pytest.raises(ConfigurationError, match="no block"):
        recompute_blocks(net, ["0"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_equals_plain():
    """On a GPU (the Triton neuron kernels where triton is installed): packing round
    trips and a recomputed network equals the plain one."""
    device = torch.device("cuda")
    x = _spikes(6, 3, 2, 8, 8).to(device)
    assert torch.equal(unpack_spikes(pack_spikes(x)), x)
    plain = _net().to(device)
    recomputed = copy.deepcopy(plain)
    recompute_blocks(recomputed)
    out, gx = _run(plain, x)
    out_r, gx_r = _run(recomputed, x)
    assert torch.equal(out, out_r) and torch.equal(gx, gx_r)
    _same(plain, recomputed)


def test_a_layer_placed_twice_in_a_sequential_runs_twice_when_recomputed():
    # named_children() lists a module once: the segments dropped its second place
    torch.manual_seed(0)
    shared = layers.Linear(8, 8)
    net = nn.Sequential(layers.Linear(8, 8), neurons.LIFNode(v_threshold=0.05), shared,
                        neurons.LIFNode(v_threshold=0.05), shared,
                        neurons.LIFNode(v_threshold=0.05))  # fmt: skip
    plain = copy.deepcopy(net)
    x = torch.rand(4, 3, 8) * 20
    assert recompute_blocks(net) == ["<model>[0,1|2,3|4,5]"]
    out, ref = net(x), plain(x)
    assert out.equal(ref) and ref.sum() > 0
    out.sum().backward()
    ref.sum().backward()
    for a, b in zip(net.parameters(), plain.parameters()):
        assert a.grad.equal(b.grad)


def test_a_named_block_inside_another_is_left_to_it():
    net = nn.Sequential(nn.Sequential(layers.Linear(3, 3), neurons.LIFNode()), layers.Linear(3, 2))
    assert recompute_blocks(net, ["0.1", "0"]) == ["0"]
    assert isinstance(net[0], Recomputed) and not isinstance(net[0].module[1], Recomputed)
