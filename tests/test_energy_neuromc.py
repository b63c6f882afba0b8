"""NeuroMC's training-step energy (spikeflow.energy.neuromc): by hand on a tiny net, and
against SpikingJelly 2.0's estimate_neuromc_runtime_energy on the same models and inputs
(Linear/Conv nets with LIF, batch norm, a spiking ResNet block, a real N-MNIST batch)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from spikeflow import layers, neurons
from spikeflow.energy import NEUROMC_MEMORIES, NeuroMCMemory, neuromc_energy_report
from spikeflow.errors import ConfigurationError, ShapeError

torch.set_num_threads(1)
PJ = 1e-12


def _spikes(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.3).float()


# ---------------------------------------------------------------- by hand


def test_tiny_linear_lif_forward_by_hand():
    """Linear 2->1 (no bias) + LIF, T = B = 1, spikes [1, 0]: the released table's
    per-access costs (pJ) written out here, the dataflow and soma counted by hand."""
    net = nn.Sequential(layers.Linear(2, 1, bias=False), neurons.LIFNode())
    report = neuromc_energy_report(net, torch.tensor([[[1.0, 0.0]]]))
    reg1, reg16 = 0.00901 / 7.1 * 2, 0.14416 / 7.1 * 2
    in_s, conv_w, out_xi, soma_u, soma_s = (
        0.44854798,
        5.302477904,
        5.792676768,
        92.68282828,
        7.176767677,
    )
    # product: M = 2 MACs, O = 1 output, W = 2 weights, one chunk of 16 channels
    mac = 2 * (0.548 + 0.548 / 16)
    reg = 2 * 2 * reg1 + (2 + 2) * reg16 + (2 + 1 + 2) * reg16  # input; weights; output
    sram = 2 * conv_w + 1 * in_s + 1 * out_xi  # 32 weight bits, 1 spike bit, 16 out bits
    # soma of one neuron: mux, add, mul, 3 comparisons; x, u, s read+written, mask written
    ops = 0.548 / 16 + 0.548 + 0.812 + 3 * 0.056
    soma_mem = 2 * reg16 + 2 * out_xi + 2 * reg16 + 2 * 16 / 256 * soma_u
    soma_mem += 2 * reg1 + 2 / 16 * soma_s + reg1 + 1 / 16 * soma_s
    assert report.mac_energy == pytest.approx(mac * PJ, rel=1e-12)
    assert report.base_memory == pytest.approx((reg + sram) * PJ, rel=1e-12)
    assert report.ops_energy == pytest.approx(ops * PJ, rel=1e-12)
    assert report.extra_memory == pytest.approx(soma_mem * PJ, rel=1e-12)
    assert report.total == pytest.approx((mac + reg + sram + ops + soma_mem) * PJ, rel=1e-12)
    bits = report.memory_bits()
    assert bits[("reg", "rh2l")] == 2 + 32 + 16 + 16 + 16 + 1  # in, W, out partial; x, u, s
    assert bits[("sram", "wl2h")] == 16 + 16 + 16 + 1 + 1
    assert report.primitives() == {"mac": 2, "mux": 1, "add": 1, "mul": 1, "comp": 3, "sqrt": 0}
    assert report.samples == 1
    text = str(report)
    assert "0     forward" in text and "1     forward" in text and "for 1 samples" in text
    assert report.by_layer().keys() == {"0", "1"}


def test_tiny_linear_lif_backward_by_hand():
    """The same net's backward: the LIF's surrogate backward and the weight gradient on
    the WG engine (the input, data, needs no gradient: no BP work)."""
    net = nn.Sequential(layers.Linear(2, 1, bias=False), neurons.LIFNode())
    report = neuromc_energy_report(
        net, torch.tensor([[[1.0, 0.0]]]), torch.ones(1, 1, 1), F.mse_loss
    )
    backward = [w for w in report.works if w.phase == "backward"]
    assert [(w.name, w.op, w.engine) for w in backward] == [
        ("1", "soma.backward", "bp_grad"),
        ("0", "linear.backward.grad_weight", "wg"),
    ]
    reg1, reg16 = 0.00901 / 7.1 * 2, 0.14416 / 7.1 * 2
    in_s, dw, values, grads, spikes = 0.44854798, 5.302477904, 5.792676768, 92.68282828, 7.176767677
    soma, wg = backward
    # soma: residual, u, s, mask, du read once each; u written to SRAM, du to the register
    soma_mem = reg16 + values + reg16 + 2 * 16 / 256 * grads + 2 * (reg1 + spikes / 16)
    soma_mem += reg16 + 16 / 256 * grads + reg16
    assert soma.priced.ops == {"mux": 1, "add": 2, "mul": 4, "comp": 0, "sqrt": 0}
    assert soma.memory == pytest.approx(soma_mem * PJ, rel=1e-12)
    # WG: M = 2, O = 2 weight gradients, C = 2, K = 1
    wg_reg = 2 * 2 * reg1 + 2 * 2 * reg16 + 2 * reg16 + 2 * reg16  # spikes, du; rl2h, wl2h
    wg_sram = 2 * in_s + values + 2 * dw  # ⌈2/1⌉ spike bits, ⌈2/2⌉ du words, 2 dW words
    assert wg.priced.macs == 2
    assert wg.compute == pytest.approx(2 * (0.548 + 0.548 / 16) * PJ, rel=1e-12)
    assert wg.memory == pytest.approx((wg_reg + wg_sram) * PJ, rel=1e-12)


def test_sgd_update_by_hand():
    """SGD with momentum (first step: no buffer yet) and weight decay on the 6 MB SRAM:
    per parameter 2 additions and multiplications, 2 reads and 2 writes of 32 bits."""
    net = nn.Sequential(layers.Linear(3, 2), neurons.LIFNode())  # 6 + 2 parameters
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    report = neuromc_energy_report(net, _spikes(2, 1, 3), torch.zeros(2, 1, 2), F.mse_loss, opt)
    (work,) = [w for w in report.works if w.phase == "optimizer"]
    assert work.priced.ops == {"mux": 0, "add": 16, "mul": 16, "comp": 0, "sqrt": 0}
    mem = 8 * 32 / 256 * (2 * 458.1830181 + 2 * 375.0422185)
    assert work.memory == pytest.approx(mem * PJ, rel=1e-12)
    assert work.compute == pytest.approx(16 * (0.548 + 0.812) * PJ, rel=1e-12)
    assert all(p.grad is None for p in net.parameters())  # grads as before


def test_reuse_weights_drops_the_weight_reads():
    net = nn.Sequential(layers.Linear(40, 8, bias=False), neurons.LIFNode())
    x = _spikes(4, 2, 40)
    plain, reuse = neuromc_energy_report(net, x), neuromc_energy_report(net, x, reuse_weights=True)
    weight_bits = 40 * 8 * 16
    saved = 2 * weight_bits / 16 * 0.14416 / 7.1 * 2 + weight_bits / 16 * 5.302477904
    assert plain.total - reuse.total == pytest.approx(saved * PJ, rel=1e-9)


def test_reuse_weights_needs_them_to_fit():
    """A weight SRAM holds 18432 x 256 bits (294,912 16-bit weights): 300,000 do not fit
    and are read again."""
    net = nn.Sequential(layers.Linear(600, 500, bias=False), neurons.LIFNode())
    x = _spikes(1, 1, 600)
    plain, reuse = neuromc_energy_report(net, x), neuromc_energy_report(net, x, reuse_weights=True)
    assert reuse.total == plain.total


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("module", "words"),
    [
        (nn.ReLU(), ["1 (ReLU", "cannot price"]),
        (layers.Upsample(scale_factor=2), ["1 (Upsample", "work NeuroMC has no cost for"]),
        (layers.Conv3d(4, 4, 1), ["1 (Conv3d"]),
    ],
)
def test_unpriced_modules_are_named(module, words):
    net = nn.Sequential(layers.Conv2d(2, 4, 3), module, neurons.LIFNode())
    with pytest.raises(ConfigurationError) as info:
        neuromc_energy_report(net, _spikes(2, 1, 2, 8, 8))
    for word in words:
        assert word in str(info.value)


def test_bad_arguments():
    net = nn.Sequential(layers.Linear(3, 2), neurons.LIFNode())
    x, y = _spikes(2, 1, 3), torch.zeros(2, 1, 2)
    with pytest.raises(ConfigurationError, match="RMSprop"):
        neuromc_energy_report(net, x, y, F.mse_loss, torch.optim.RMSprop(net.parameters()))
    sgd = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ConfigurationError, match="nesterov"):
        neuromc_energy_report(net, x, y, F.mse_loss, sgd)
    with pytest.raises(ConfigurationError, match="optimizer needs loss_fn"):
        neuromc_energy_report(net, x, optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(ConfigurationError, match="loss_fn needs target"):
        neuromc_energy_report(net, x, loss_fn=F.mse_loss)
    memories = {k: v for k, v in NEUROMC_MEMORIES.items() if k != "sram_2MB"}
    with pytest.raises(ConfigurationError, match="sram_2MB"):
        neuromc_energy_report(net, x, memories=memories)
    with pytest.raises(ShapeError, match="x must be"):
        neuromc_energy_report(net, torch.zeros(3))


def test_custom_memory_costs_scale_their_traffic():
    net = nn.Sequential(layers.Linear(3, 2), neurons.LIFNode())
    x = _spikes(2, 1, 3)
    base = neuromc_energy_report(net, x)
    u = NEUROMC_MEMORIES["sram_fp_soma_u"]
    dearer = dict(NEUROMC_MEMORIES)
    dearer["sram_fp_soma_u"] = NeuroMCMemory(u.size_bits, 256, 256, 2 * u.read_j, 2 * u.write_j)
    moved = 4 * 16 / 256 * 92.68282828 * PJ  # 4 neuron-steps, u read and written
    assert neuromc_energy_report(net, x, memories=dearer).total - base.total == pytest.approx(
        2 * moved, rel=1e-9
    )


# ---------------------------------------------------------------- against SpikingJelly 2.0

sj_neuromc = pytest.importorskip("spikingjelly.activation_based.op_counter.neuromc")
from spikingjelly.activation_based import functional as sj_functional  # noqa: E402
from spikingjelly.activation_based import layer as sj_layer  # noqa: E402
from spikingjelly.activation_based import neuron as sj_neuron  # noqa: E402
from spikingjelly.activation_based.op_counter.neuromc import core as sj_core  # noqa: E402


@pytest.fixture
def sj(monkeypatch):
    """SpikingJelly's estimator, made to run and to count each layer once: its LIF's
    backward runs aten.neg (not in its list of unpriced elementwise ops: it raises), and
    it re-prices a Linear's backward from the aten.mm calls it traces (see the test of
    that difference below), which ``dedupe`` turns off."""
    monkeypatch.setattr(
        sj_core, "_AUXILIARY_ATEN_OPS", sj_core._AUXILIARY_ATEN_OPS | {"aten.neg.default"}
    )
    original = sj_core.NeuroMCEnergyProfiler._fallback_fragments_from_trace

    def run(model, x, y=None, loss=None, opt=None, dedupe=True):
        def no_trace(self, *, supplemental_only=False):
            return [] if supplemental_only else original(self, supplemental_only=False)

        if dedupe:
            monkeypatch.setattr(
                sj_core.NeuroMCEnergyProfiler, "_fallback_fragments_from_trace", no_trace
            )
        sj_functional.reset_net(model)
        try:
            return sj_neuromc.estimate_neuromc_runtime_energy(
                model, x, target=y, loss_fn=loss, optimizer=opt
            )
        finally:
            monkeypatch.setattr(
                sj_core.NeuroMCEnergyProfiler, "_fallback_fragments_from_trace", original
            )

    return run


def _assert_equal(ours, theirs):
    """Every component SpikingJelly reports equals spikeflow's (joules vs pJ)."""
    close = dict(rel=1e-9, abs=1e-9 * PJ)
    for a, b in [
        (ours.total, theirs.energy_total_pj), (ours.compute, theirs.energy_compute_pj),
        (ours.memory, theirs.energy_memory_pj), (ours.mac_energy, theirs.energy_mac_pj),
        (ours.base_memory, theirs.energy_base_memory_pj),
        (ours.extra_memory, theirs.energy_extra_memory_pj),
        (ours.ops_energy, theirs.energy_extra_compute_pj),
    ]:  # fmt: skip
        assert a == pytest.approx(b * PJ, **close)
    for mine, their in [
        (ours.by_phase(), theirs.energy_by_stage), (ours.by_op(), theirs.energy_by_op),
        (ours.by_engine(), theirs.energy_by_core_type),
        (ours.by_process(), theirs.energy_by_process_key),
    ]:  # fmt: skip
        assert mine.keys() == their.keys()
        for key in mine:
            assert mine[key] == pytest.approx(their[key] * PJ, **close), key
    their_memory = {
        (lv, d): v for lv, ds in theirs.energy_by_memory_level_dir.items() for d, v in ds.items()
    }
    assert ours.memory_energy().keys() == their_memory.keys()
    for key, value in ours.memory_energy().items():
        assert value == pytest.approx(their_memory[key] * PJ, **close), key
    their_bits = {
        (lv, d): v
        for lv, ds in theirs.memory_bits_by_level["by_level_dir"].items()
        for d, v in ds.items()
    }
    assert ours.memory_bits() == their_bits
    assert ours.primitives() == theirs.primitive_counts["totals"]


def _conv_net(sf: bool, bias: bool = True) -> nn.Sequential:
    L, N = (layers, neurons) if sf else (None, None)
    if sf:
        return nn.Sequential(
            L.Conv2d(2, 4, 3, padding=1, bias=bias), L.BatchNorm2d(4), N.LIFNode(),
            L.Conv2d(4, 6, 3, stride=2, bias=bias), N.LIFNode(), L.Flatten(),
            L.Linear(6 * 2 * 2, 5, bias=bias), N.LIFNode(),
        )  # fmt: skip
    m = "m"
    return nn.Sequential(
        sj_layer.Conv2d(2, 4, 3, padding=1, bias=bias, step_mode=m),
        sj_layer.BatchNorm2d(4, step_mode=m), sj_neuron.LIFNode(step_mode=m),
        sj_layer.Conv2d(4, 6, 3, stride=2, bias=bias, step_mode=m), sj_neuron.LIFNode(step_mode=m),
        sj_layer.Flatten(step_mode=m), sj_layer.Linear(6 * 2 * 2, 5, bias=bias, step_mode=m),
        sj_neuron.LIFNode(step_mode=m),
    )  # fmt: skip


@pytest.mark.parametrize(("steps", "batch"), [(1, 1), (3, 2), (4, 5)])
@pytest.mark.parametrize("real_input", [False, True])
def test_conv_net_training_step_equals_spikingjelly(sj, steps, batch, real_input):
    x = torch.rand(steps, batch, 2, 6, 6) if real_input else _spikes(steps, batch, 2, 6, 6)
    y = torch.rand(steps, batch, 5)
    ours_net, their_net = _conv_net(True), _conv_net(False)
    opt = torch.optim.SGD(ours_net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    their_opt = torch.optim.SGD(their_net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    _assert_equal(neuromc_energy_report(ours_net, x, y, F.mse_loss, opt),
                  sj(their_net, x, y, F.mse_loss, their_opt))  # fmt: skip
    _assert_equal(neuromc_energy_report(ours_net, x), sj(their_net, x))  # forward alone


def test_mlp_with_adam_equals_spikingjelly_without_vectors(sj):
    """Adam over matrices alone (no biases, no batch norm): equal."""

    def mlp(sf):
        L, N = (layers, neurons) if sf else (sj_layer, sj_neuron)
        kw = {} if sf else {"step_mode": "m"}
        return nn.Sequential(L.Linear(20, 16, bias=False, **kw), N.LIFNode(**kw),
                             L.Linear(16, 4, bias=False, **kw), N.LIFNode(**kw))  # fmt: skip

    x, y = torch.rand(3, 4, 20), torch.rand(3, 4, 4)
    ours, theirs = mlp(True), mlp(False)
    for cls in (torch.optim.Adam, torch.optim.AdamW):
        _assert_equal(neuromc_energy_report(ours, x, y, F.mse_loss, cls(ours.parameters())),
                      sj(theirs, x, y, F.mse_loss, cls(theirs.parameters())))  # fmt: skip


def test_adam_prices_each_vector_element_once(sj):
    """SpikingJelly gives Adam's 1-dim parameters (biases, batch norm's γ and β) both the
    released model's ``y`` and ``b`` variables, so each element is priced twice; spikeflow
    prices every parameter element once, as a matrix element (and as SpikingJelly's SGD)."""
    ours, theirs = _conv_net(True), _conv_net(False)
    x, y = _spikes(2, 2, 2, 6, 6), torch.rand(2, 2, 5)
    mine = neuromc_energy_report(ours, x, y, F.mse_loss, torch.optim.Adam(ours.parameters()))
    their = sj(theirs, x, y, F.mse_loss, torch.optim.Adam(theirs.parameters()))
    vectors = sum(p.numel() for p in ours.parameters() if p.dim() <= 1)
    assert vectors == 4 + 4 + 4 + 6 + 5
    (update,) = [w for w in mine.works if w.phase == "optimizer"]
    per_element = update.total / sum(p.numel() for p in ours.parameters())
    assert their.energy_by_stage["optimizer"] * PJ == pytest.approx(
        update.total + vectors * per_element, rel=1e-9
    )
    forward_backward = {k: v for k, v in their.energy_by_stage.items() if k != "optimizer"}
    assert {k: v for k, v in mine.by_phase().items() if k != "optimizer"} == pytest.approx(
        {k: v * PJ for k, v in forward_backward.items()}, rel=1e-9
    )


def test_spikingjelly_prices_a_linear_backward_twice(sj):
    """Unpatched, SpikingJelly prices each Linear's backward from its module hook and again
    from the two aten.mm calls it traces (their loop dims differ, so its de-duplication
    misses them): twice the MACs of the layer's input and weight gradients."""
    ours, theirs = _conv_net(True), _conv_net(False)
    x, y = _spikes(3, 2, 2, 6, 6), torch.rand(3, 2, 5)
    mine = neuromc_energy_report(ours, x, y, F.mse_loss)
    their = sj(theirs, x, y, F.mse_loss, dedupe=False)
    linear_macs = 3 * 2 * 24 * 5
    assert their.primitive_counts["totals"]["mac"] == mine.primitives()["mac"] + 2 * linear_macs
    assert their.energy_total_pj * PJ > mine.total


class _Block(nn.Module):
    """A spiking ResNet basic block: conv-BN-LIF-conv-BN, the identity added, LIF."""

    def __init__(self, sf: bool, channels: int = 4) -> None:
        super().__init__()
        L, N = (layers, neurons) if sf else (sj_layer, sj_neuron)
        kw = {} if sf else {"step_mode": "m"}
        self.conv1 = L.Conv2d(channels, channels, 3, padding=1, bias=False, **kw)
        self.bn1 = L.BatchNorm2d(channels, **kw)
        self.sn1 = N.LIFNode(**kw)
        self.conv2 = L.Conv2d(channels, channels, 3, padding=1, bias=False, **kw)
        self.bn2 = L.BatchNorm2d(channels, **kw)
        self.sn2 = N.LIFNode(**kw)

    def forward(self, x):
        return self.sn2(self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x))))) + x)


@pytest.mark.parametrize(("steps", "batch"), [(2, 3), (4, 1)])
def test_resnet_block_equals_spikingjelly(sj, steps, batch):
    x, y = _spikes(steps, batch, 4, 5, 5), torch.rand(steps, batch, 4, 5, 5)
    ours, theirs = _Block(True), _Block(False)
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    their_opt = torch.optim.SGD(theirs.parameters(), lr=0.1)
    _assert_equal(neuromc_energy_report(ours, x, y, F.mse_loss, opt),
                  sj(theirs, x, y, F.mse_loss, their_opt))  # fmt: skip


def test_real_nmnist_batch_equals_spikingjelly(sj):
    """Four real N-MNIST samples (../shared/data/nmnist-small), 8 frames each: as event
    counts (real values, the ANN engines) and as 1-bit spikes."""
    from conftest import require_shared_data
    from spikeflow.data import to_frames
    from spikeflow.data.io.atis_bin import read_atis_bin

    root = require_shared_data("nmnist-small", "Test")
    files = sorted(root.glob("*/*.bin"))[:4]
    frames = np.stack([to_frames(read_atis_bin(f), 8) for f in files], axis=1)
    counts = torch.as_tensor(frames, dtype=torch.float32)  # [8, 4, 2, 34, 34]
    y = torch.rand(8, 4, 10)

    def net(sf):
        L, N = (layers, neurons) if sf else (sj_layer, sj_neuron)
        kw = {} if sf else {"step_mode": "m"}
        return nn.Sequential(
            L.Conv2d(2, 8, 3, stride=2, padding=1, **kw), L.BatchNorm2d(8, **kw), N.LIFNode(**kw),
            L.Conv2d(8, 8, 3, stride=2, padding=1, **kw), N.LIFNode(**kw), L.Flatten(**kw),
            L.Linear(8 * 9 * 9, 10, **kw), N.LIFNode(**kw),
        )  # fmt: skip

    ours, theirs = net(True), net(False)
    for x in (counts, (counts > 0).float()):
        opt = torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
        their_opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
        mine = neuromc_energy_report(ours, x, y, F.mse_loss, opt)
        _assert_equal(mine, sj(theirs, x, y, F.mse_loss, their_opt))
    assert mine.works[0].engine == "fp_soma" and math.isfinite(mine.total)


def test_plain_linear_over_a_sequence_counts_every_row(sj):
    """A torch nn.Linear (no step_mode) on [T, B, F] runs T·B rows: spikeflow prices
    T·B·C·K MACs; SpikingJelly prices a module call over a batch of T (reading [T, B, F]
    as [B, C]) and again the traced addmm over T·B rows."""
    x = _spikes(3, 4, 20)
    mine = neuromc_energy_report(nn.Sequential(nn.Linear(20, 5), neurons.LIFNode()), x)
    their = sj(nn.Sequential(nn.Linear(20, 5), sj_neuron.LIFNode(step_mode="m")), x, dedupe=False)
    assert mine.primitives()["mac"] == 3 * 4 * 20 * 5
    assert their.primitive_counts["totals"]["mac"] == 3 * 4 * 20 * 5 + 3 * 20 * 5


def test_frozen_first_layer_equals_spikingjelly(sj):
    """A frozen first layer fed data gets no gradient: its forward is priced, no backward;
    the optimizer updates only the parameters that got a gradient."""
    ours, theirs = _conv_net(True), _conv_net(False)
    for net in (ours, theirs):
        net[0].requires_grad_(False)
    x, y = _spikes(2, 3, 2, 6, 6), torch.rand(2, 3, 5)
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    mine = neuromc_energy_report(ours, x, y, F.mse_loss, opt)
    assert [w.phase for w in mine.works if w.name == "0"] == ["forward"]
    _assert_equal(mine, sj(theirs, x, y, F.mse_loss, torch.optim.SGD(theirs.parameters(), lr=0.1)))


def test_sgd_momentum_buffer_from_an_earlier_step_equals_spikingjelly(sj):
    """After a real step the momentum buffers exist: the update reads them and adds a
    multiply-add per parameter; equal to SpikingJelly, and dearer than the first step."""
    ours, theirs = _conv_net(True), _conv_net(False)
    x, y = _spikes(2, 2, 2, 6, 6), torch.rand(2, 2, 5)
    opts = [torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9) for net in (ours, theirs)]
    first = neuromc_energy_report(ours, x, y, F.mse_loss, opts[0])
    for net, opt in zip((ours, theirs), opts, strict=True):
        F.mse_loss(net(x), y).backward()
        opt.step()
        opt.zero_grad()
    sj_functional.reset_net(theirs)
    mine = neuromc_energy_report(ours, x, y, F.mse_loss, opts[0])
    _assert_equal(mine, sj(theirs, x, y, F.mse_loss, opts[1]))
    (update,) = [w for w in mine.works if w.phase == "optimizer"]
    params = sum(p.numel() for p in ours.parameters())
    assert update.priced.ops["add"] == 2 * params
    assert mine.by_phase()["optimizer"] > first.by_phase()["optimizer"]


def test_conv1d_and_batchnorm1d_equal_spikingjelly(sj):
    """Conv1d (kernel and length read as FY and OY) and BatchNorm1d on [T, B, C, L] and
    on [T, B, C] (after flattening)."""

    def net(sf):
        L, N = (layers, neurons) if sf else (sj_layer, sj_neuron)
        kw = {} if sf else {"step_mode": "m"}
        return nn.Sequential(
            L.Conv1d(3, 6, 5, stride=2, **kw), L.BatchNorm1d(6, **kw), N.LIFNode(**kw),
            L.Flatten(**kw), L.Linear(6 * 8, 7, **kw), L.BatchNorm1d(7, **kw), N.LIFNode(**kw),
        )  # fmt: skip

    x, y = _spikes(3, 2, 3, 20), torch.rand(3, 2, 7)
    ours, theirs = net(True), net(False)
    mine = neuromc_energy_report(ours, x, y, F.mse_loss)
    assert mine.works[0].dims == {
        "B": 2,
        "T": 3,
        "C": 3,
        "K": 6,
        "OY": 8,
        "OX": 1,
        "FY": 5,
        "FX": 1,
    }
    _assert_equal(mine, sj(theirs, x, y, F.mse_loss))


def test_sgd_param_groups_equal_spikingjelly(sj):
    """Two param groups with their own lr, momentum and weight decay: each group's
    update priced with its own options, as SpikingJelly does."""
    ours, theirs = _conv_net(True), _conv_net(False)
    x, y = _spikes(2, 2, 2, 6, 6), torch.rand(2, 2, 5)

    def sgd(net):
        params = list(net.parameters())
        return torch.optim.SGD(
            [{"params": params[:4], "lr": 0.01, "weight_decay": 1e-4, "momentum": 0.9},
             {"params": params[4:], "lr": 0.1}], lr=0.1,
        )  # fmt: skip

    mine = neuromc_energy_report(ours, x, y, F.mse_loss, sgd(ours))
    assert len([w for w in mine.works if w.phase == "optimizer"]) == 2
    _assert_equal(mine, sj(theirs, x, y, F.mse_loss, sgd(theirs)))


def test_global_average_pool_is_free_in_spikingjelly(sj):
    """AdaptiveAvgPool2d(1) runs as aten.mean, which SpikingJelly does not price (its
    max and avg pools raise): everything else equal, spikeflow adds the pool's work."""

    def net(sf):
        L, N = (layers, neurons) if sf else (sj_layer, sj_neuron)
        kw = {} if sf else {"step_mode": "m"}
        return nn.Sequential(L.Conv2d(2, 4, 3, **kw), N.LIFNode(**kw),
                             L.AdaptiveAvgPool2d(1, **kw), L.Flatten(**kw),
                             L.Linear(4, 3, **kw), N.LIFNode(**kw))  # fmt: skip

    x, y = _spikes(2, 3, 2, 8, 8), torch.rand(2, 3, 3)
    mine = neuromc_energy_report(net(True), x, y, F.mse_loss)
    their = sj(net(False), x, y, F.mse_loss)
    pool = [w for w in mine.works if w.name == "2"]
    assert [w.op for w in pool] == ["avgpool.forward", "avgpool.backward"]
    assert pool[0].priced.ops["add"] == 2 * 3 * 4 * (36 - 1)
    rest = sum(w.total for w in mine.works if w.name != "2")
    assert rest == pytest.approx(their.energy_total_pj * PJ, rel=1e-9)
    assert mine.primitives()["mac"] == their.primitive_counts["totals"]["mac"]
