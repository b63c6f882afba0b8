"""NeuroMC's price of an attention's products of two activations (``Q Kᵀ``, ``· V``:
spikeflow.energy.neuromc_matmul): by hand on a tiny attention block, against
SpikingJelly 2.0's pricing of the ``aten.bmm`` it traces, and end to end on the zoo's
transformers against torch's FlopCounterMode."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from spikeflow import layers, neurons
from spikeflow.energy import NEUROMC_MEMORIES, neuromc_energy_report
from spikeflow.errors import ConfigurationError
from spikeflow.functional import reset_net

torch.set_num_threads(1)
PJ = 1e-12


def _spikes(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.4).float()


class _Attention(nn.Module):
    """Spike ``Q, K, V`` (a linear layer and a LIF each), then ``Q (Kᵀ V)`` and a LIF;
    ``order="qk"``: ``(Q Kᵀ) V``."""

    def __init__(self, dim: int, order: str = "kv", sj: bool = False) -> None:
        super().__init__()
        if sj:
            from spikingjelly.activation_based import layer, neuron

            linear, lif, kw = layer.Linear, neuron.LIFNode, {"step_mode": "m"}
        else:
            linear, lif, kw = layers.Linear, neurons.LIFNode, {}
        self.q, self.k, self.v = (linear(dim, dim, bias=False, **kw) for _ in range(3))
        self.sq, self.sk, self.sv, self.out = (lif(**kw) for _ in range(4))
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.sq(self.q(x)), self.sk(self.k(x)), self.sv(self.v(x))
        if self.order == "kv":
            return self.out(q @ (k.transpose(-2, -1) @ v))
        return self.out((q @ k.transpose(-2, -1)) @ v)


# ---------------------------------------------------------------- by hand


def _matmul_bits(report) -> list[tuple[str, str, dict]]:
    return [(w.op, w.engine, w.priced.bits) for w in report.works if w.op.startswith("matmul")]


def test_tiny_attention_products_by_hand():
    """``[T, B, N, D] = [2, 1, 3, 2]`` tokens: ``G = 2`` matrices. ``Kᵀ V``: ``M = D = 2``
    rows of ``K = N = 3`` spikes, ``N_out = D = 2``; ``Q (Kᵀ V)``: ``M = 3``, ``K = 2``,
    ``N_out = 2``. Each is 2·2·3·2 = 24 MACs; every count below is written out."""
    torch.manual_seed(0)
    net = _Attention(2)
    nn.init.uniform_(net.q.weight, 0.6, 1.0)  # the neurons fire: Kᵀ V is not all zeros
    for lin in (net.k, net.v):
        nn.init.uniform_(lin.weight, 0.6, 1.0)
    x = torch.ones(2, 1, 3, 2)
    report = neuromc_energy_report(net, x, torch.rand(2, 1, 3, 2), F.mse_loss)
    works = _matmul_bits(report)
    ops = [(op, engine) for op, engine, _ in works]
    assert ops == [
        ("matmul.forward", "fp_soma"), ("matmul.forward", "fp_soma"),
        ("matmul.backward.grad_left", "bp_grad"), ("matmul.backward.grad_right", "wg"),
        ("matmul.backward.grad_left", "bp_grad"), ("matmul.backward.grad_right", "wg"),
    ]  # fmt: skip
    # Kᵀ V forward: M = 24 MACs, W = 12 weights (V), O = 8 outputs, one 16-channel chunk
    # (3 inputs summed): no partial sums; S = O streamed.
    kv = {
        ("reg", "rh2l"): 24 * 1 + 12 * 16 + (24 - 8) * 16,
        ("reg", "wh2l"): 24 + 12 * 16 + 24 * 16,
        ("reg", "rl2h"): 24 * 16,
        ("sram", "rh2l"): 12 * 16 + 8 * 1,
        ("sram", "wl2h"): 8 * 16,
    }
    assert works[0][2] == kv
    # Q (Kᵀ V): W = 8 (Kᵀ V), O = 12
    q = {
        ("reg", "rh2l"): 24 + 8 * 16 + (24 - 12) * 16,
        ("reg", "wh2l"): 24 + 8 * 16 + 24 * 16,
        ("reg", "rl2h"): 24 * 16,
        ("sram", "rh2l"): 8 * 16 + 12,
        ("sram", "wl2h"): 12 * 16,
    }
    assert works[1][2] == q
    # dQ = dY (Kᵀ V)ᵀ on BP: 16-bit gradients in, reducing over N_out = 2; O = 12
    dq = {
        ("reg", "rh2l"): 24 * 16 + 8 * 16 + (24 - 12) * 16,
        ("reg", "wh2l"): 24 * 16 + 8 * 16 + 24 * 16,
        ("reg", "rl2h"): 24 * 16,
        ("sram", "rh2l"): 8 * 16 + 12 * 16,
        ("sram", "wl2h"): 12 * 16,
    }
    assert works[2][2] == dq
    # d(Kᵀ V) = Qᵀ dY on WG: Q's spikes and dY meet; O = 8 gradients; the SRAMs read
    # ⌈24 / min(N_out, 16)⌉ = 12 spikes and ⌈24 / min(K, 16)⌉ = 12 gradients.
    dkv = {
        ("reg", "rh2l"): 24 + 24 * 16 + (24 - 8) * 16,
        ("reg", "wh2l"): 24 + 24 * 16,
        ("reg", "rl2h"): 8 * 16,
        ("reg", "wl2h"): 24 * 16,
        ("sram", "rh2l"): 12 * 1 + 12 * 16,
        ("sram", "wl2h"): 8 * 16,
    }
    assert works[3][2] == dkv
    # d(Kᵀ) = dY' Vᵀ (BP, reducing over D = 2; O = 12) and dV = K dY' (WG: K = 3 inputs,
    # ⌈24/2⌉ = 12 spikes, ⌈24/3⌉ = 8 gradients; O = 12)
    assert works[4][2] == {
        ("reg", "rh2l"): 24 * 16 + 12 * 16 + 12 * 16,
        ("reg", "wh2l"): 24 * 16 + 12 * 16 + 24 * 16,
        ("reg", "rl2h"): 384,
        ("sram", "rh2l"): 12 * 16 + 12 * 16,
        ("sram", "wl2h"): 12 * 16,
    }
    assert works[5][2] == {
        ("reg", "rh2l"): 24 + 24 * 16 + 12 * 16,
        ("reg", "wh2l"): 24 + 384,
        ("reg", "rl2h"): 12 * 16,
        ("reg", "wl2h"): 384,
        ("sram", "rh2l"): 12 + 8 * 16,
        ("sram", "wl2h"): 12 * 16,
    }
    products = [w for w in report.works if w.op.startswith("matmul")]
    assert [w.priced.macs for w in products] == [24] * 6
    # the joules of Kᵀ V's forward, access by access (pJ)
    reg1, reg16 = 0.00901 / 7.1 * 2, 0.14416 / 7.1 * 2
    memory = (24 + 24) * reg1 + (12 * 2 + 24 * 3 - 8) * reg16  # inputs; weights, outputs
    memory += 12 * 5.302477904 + 8 * 0.44854798 + 8 * 5.792676768  # W, spikes, outputs
    assert products[0].memory == pytest.approx(memory * PJ, rel=1e-12)
    assert products[0].compute == pytest.approx(24 * (0.548 + 0.548 / 16) * PJ, rel=1e-12)
    assert products[0].dims == {"B": 4, "T": 1, "C": 3, "K": 2, "OY": 1, "OX": 1, "FY": 1, "FX": 1}
    assert {w.name for w in products} == {"(model)"}


def test_a_product_with_data_prices_only_the_gradients_needed():
    """``x @ V``: the data ``x`` (real values) needs no gradient: forward on ``ann_fe``
    (16-bit inputs), backward only ``dV`` on ``ann_we``; ``V @ x``: only ``dV`` on BP."""

    class DataLeft(nn.Module):
        def __init__(self, left: bool) -> None:
            super().__init__()
            self.v, self.sv, self.left = layers.Linear(4, 4), neurons.LIFNode(), left

        def forward(self, x):
            v = self.sv(self.v(x))
            return x @ v.transpose(-2, -1) if self.left else v @ x.transpose(-2, -1)

    x, y = torch.rand(2, 3, 5, 4), torch.rand(2, 3, 5, 5)
    left = neuromc_energy_report(DataLeft(True), x, y, F.mse_loss)
    products = [(w.op, w.engine) for w in left.works if w.op.startswith("matmul")]
    assert products == [("matmul.forward", "ann_fe"), ("matmul.backward.grad_right", "ann_we")]
    right = neuromc_energy_report(DataLeft(False), x, y, F.mse_loss)
    products = [(w.op, w.engine) for w in right.works if w.op.startswith("matmul")]
    assert products == [("matmul.forward", "fp_soma"), ("matmul.backward.grad_left", "bp_grad")]
    forward = next(w for w in left.works if w.op == "matmul.forward")
    assert forward.priced.macs == 2 * 3 * 5 * 4 * 5
    inference = neuromc_energy_report(DataLeft(True), x)
    assert [w.op for w in inference.works if w.op.startswith("matmul")] == ["matmul.forward"]


class _SharedRight(nn.Module):
    """Spikes of a Linear and a LIF, then a second Linear's product: called, or written
    ``s @ W.T`` (the weights broadcast over every row, as a tied output head does)."""

    def __init__(self, as_matmul: bool) -> None:
        super().__init__()
        self.first, self.spike = layers.Linear(8, 8), neurons.LIFNode()
        self.head = nn.Linear(8, 6, bias=False)
        self.as_matmul = as_matmul

    def forward(self, x):
        s = self.spike(self.first(x))
        return s @ self.head.weight.t() if self.as_matmul else self.head(s)


def test_a_shared_right_operand_is_priced_as_a_linear():
    """``s @ W.T`` with ``W`` ``[6, 8]`` shared by the ``T·B·N`` rows is a Linear: its
    forward and both gradients cost what ``nn.Linear``'s do, work by work (the weight
    gradient writes ``6·8`` outputs, not one per row's matrix)."""
    x, y = _spikes(2, 3, 5, 8), torch.rand(2, 3, 5, 6)
    torch.manual_seed(0)
    as_linear = _SharedRight(False)
    as_matmul = _SharedRight(True)
    as_matmul.load_state_dict(as_linear.state_dict())
    linear = neuromc_energy_report(as_linear, x, y, F.mse_loss)
    product = neuromc_energy_report(as_matmul, x, y, F.mse_loss)
    rename = {"linear.forward": "matmul.forward", "linear.backward.grad_input":
              "matmul.backward.grad_left", "linear.backward.grad_weight":
              "matmul.backward.grad_right"}  # fmt: skip
    ours = [(rename[w.op] if w.name == "head" else w.op, w.engine, w.priced.macs,
             w.priced.bits) for w in linear.works]  # fmt: skip
    theirs = [(w.op, w.engine, w.priced.macs, w.priced.bits) for w in product.works]
    assert sorted(ours, key=str) == sorted(theirs, key=str)
    assert {w.op for w in product.works} >= set(rename.values())
    assert product.total == pytest.approx(linear.total, rel=1e-12)


def test_a_shared_left_operand_gets_one_gradient_per_entry():
    """``A`` ``[5, 4]`` times ``B`` ``[2, 3, 4, 6]``: ``G = 6`` matrices share ``A``.
    ``dA`` has 20 outputs, each summing ``6·6 = 36`` products (3 chunks of 16: 2
    partial sums each); ``dB`` one output per entry of ``B`` (144)."""
    from spikeflow.energy.neuromc_matmul import MatmulShape, matmul_backward_works

    a, b = _spikes(5, 4), torch.rand(2, 3, 4, 6)
    shape = MatmulShape(a, b)
    assert (shape.g, shape.m, shape.k, shape.n, shape.macs) == (6, 5, 4, 6, 720)
    (_, left), (_, right) = matmul_backward_works(shape, True, True, True)
    assert (left.output_numel, left.reduce, left.weight_numel) == (20, (36, 1), 144)
    assert (right.output_numel, right.reduce) == (144, (4, 6))
    from spikeflow.energy.neuromc_costs import price

    bits = price(left).bits
    assert bits[("sram", "wl2h")] == 20 * 3 * 16  # O·⌈36/16⌉ streamed outputs
    assert bits[("sram", "rh2l")] == 144 * 16 + 20 * 3 * 16 + 20 * 2 * 16  # W, S, P
    assert price(right).bits[("sram", "wl2h")] == 144 * 16


class _CheckpointedAttention(nn.Module):
    """A spiking layer, then :class:`_Attention` run through ``torch.utils.checkpoint``
    (``reentrant`` True or False) or not (None)."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.spike = layers.Linear(8, 8), neurons.LIFNode()
        self.attention = _Attention(8)
        self.reentrant: bool | None = None

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        x = self.spike(self.first(x))
        if self.reentrant is None:
            return self.attention(x)
        return checkpoint(self.attention, x, use_reentrant=self.reentrant)


@pytest.mark.parametrize("reentrant", [True, False])
def test_a_checkpointed_attention_is_priced_as_the_plain_one(reentrant):
    """Its products are priced once forward, and their gradients too: a reentrant
    checkpoint's first run is gradient-free, so the products' backward is registered
    when the backward recomputes them (it was left out: 4 of the 6 products' works)."""
    torch.manual_seed(0)
    net = _CheckpointedAttention()
    x, y = _spikes(2, 3, 5, 8), torch.rand(2, 3, 5, 8)
    plain = neuromc_energy_report(net, x, y, F.mse_loss)
    net.reentrant = reentrant
    checkpointed = neuromc_energy_report(net, x, y, F.mse_loss)
    assert sorted((w.name, w.op) for w in checkpointed.works) == sorted(
        (w.name, w.op) for w in plain.works
    )
    assert sum(w.op.startswith("matmul") for w in checkpointed.works) == 6
    assert checkpointed.total == pytest.approx(plain.total, rel=1e-12)


def test_a_recomputed_attention_is_priced_as_the_plain_one():
    """spikeflow's ``Recomputed`` wrapper packs the spikes it keeps into bits with a
    matrix product of its own: not the model's work (it was priced as an attention
    product under the wrapper's name); the attention's works are the plain ones."""
    from spikeflow.memory import Recomputed

    torch.manual_seed(0)
    first, attention = nn.Sequential(layers.Linear(8, 8), neurons.LIFNode()), _Attention(8)
    x, y = _spikes(2, 3, 5, 8), torch.rand(2, 3, 5, 8)
    plain = neuromc_energy_report(nn.Sequential(first, attention), x, y, F.mse_loss)
    wrapped = neuromc_energy_report(nn.Sequential(first, Recomputed(attention)), x, y,
                                    F.mse_loss)  # fmt: skip
    names = [(w.name.replace("1.module", "1"), w.op) for w in wrapped.works]
    assert sorted(names) == sorted((w.name, w.op) for w in plain.works)
    assert wrapped.total == pytest.approx(plain.total, rel=1e-12)


def test_other_products_are_still_refused():
    class Einsum(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = layers.Linear(8, 8)

        def forward(self, x):
            return torch.einsum("tbnd,tbmd->tbnm", self.proj(x), x)

    net = nn.Sequential(layers.Linear(8, 8), neurons.LIFNode(), Einsum(), neurons.LIFNode())
    with pytest.raises(ConfigurationError, match=r"2 \(Einsum\): einsum x1.*softmax"):
        neuromc_energy_report(net, _spikes(2, 3, 5, 8))


# ---------------------------------------------------------------- SpikingJelly 2.0

sj_neuromc = pytest.importorskip("spikingjelly.activation_based.op_counter.neuromc")
from spikingjelly.activation_based import functional as sj_functional  # noqa: E402
from spikingjelly.activation_based.op_counter.neuromc import core as sj_core  # noqa: E402


@pytest.fixture
def sj_products(monkeypatch):
    """SpikingJelly's estimate of the ``aten.bmm`` products it traces, alone: its module
    fragments (a multi-step Linear on ``[T, B, N, D]`` tokens is priced over ``T·B``
    rows there, not ``T·B·N``) and its traced ``addmm``/``mm`` (the Linears' again) are
    dropped; its LIF's ``aten.neg`` is let through (it raises on it on the CPU)."""
    monkeypatch.setattr(
        sj_core, "_AUXILIARY_ATEN_OPS", sj_core._AUXILIARY_ATEN_OPS | {"aten.neg.default"}
    )
    traced = sj_core.NeuroMCEnergyProfiler._fallback_fragments_from_trace
    report = sj_core.NeuroMCEnergyProfiler.get_report

    def products_only(self, *, supplemental_only=False):
        return [f for f in traced(self) if f.op_name == "aten.bmm.default"]

    def get_report(self):
        self._fragments = []
        return report(self)

    monkeypatch.setattr(sj_core.NeuroMCEnergyProfiler, "_fallback_fragments_from_trace",
                        products_only)  # fmt: skip
    monkeypatch.setattr(sj_core.NeuroMCEnergyProfiler, "get_report", get_report)

    def run(model, x, y=None, loss=None):
        sj_functional.reset_net(model)
        return sj_neuromc.estimate_neuromc_runtime_energy(model, x, target=y, loss_fn=loss)

    return run


def _assert_products_equal(ours, theirs):
    """spikeflow's matmul works equal every component of SpikingJelly's bmm estimate."""
    from spikeflow.energy.neuromc import NeuroMCReport

    mine = NeuroMCReport([w for w in ours.works if w.op.startswith("matmul")], 1, NEUROMC_MEMORIES)
    close = dict(rel=1e-9, abs=1e-9 * PJ)
    assert mine.total == pytest.approx(theirs.energy_total_pj * PJ, **close)
    assert mine.mac_energy == pytest.approx(theirs.energy_mac_pj * PJ, **close)
    assert mine.base_memory == pytest.approx(theirs.energy_base_memory_pj * PJ, **close)
    assert mine.extra_memory == theirs.energy_extra_memory_pj == 0
    assert theirs.energy_by_op.keys() == {"aten.bmm.default"}
    for mine_by, their_by in [
        (mine.by_phase(), theirs.energy_by_stage), (mine.by_engine(), theirs.energy_by_core_type),
    ]:  # fmt: skip
        assert mine_by.keys() == their_by.keys()
        for key, value in mine_by.items():
            assert value == pytest.approx(their_by[key] * PJ, **close), key
    their_bits = {
        (level, d): v
        for level, ds in theirs.memory_bits_by_level["by_level_dir"].items()
        for d, v in ds.items()
    }
    assert mine.memory_bits() == their_bits
    assert mine.primitives() == theirs.primitive_counts["totals"]
    rows = sorted((r["phase"], r["core_type"], r["mac_count"]) for r in theirs.mapping_summary)
    assert rows == sorted((w.phase, w.engine, w.priced.macs) for w in mine.works)


@pytest.mark.parametrize("order", ["kv", "qk"])
@pytest.mark.parametrize(("steps", "batch", "tokens", "dim"), [(2, 3, 5, 8), (1, 2, 20, 24)])
def test_attention_products_equal_spikingjelly(sj_products, order, steps, batch, tokens, dim):
    """``Q (Kᵀ V)`` and ``(Q Kᵀ) V`` of spikes, forward and both gradients of each product,
    and inference alone: equal to SpikingJelly's pricing of the traced ``aten.bmm``
    (tokens and features in as many 16-wide chunks: see the next test)."""
    x, y = _spikes(steps, batch, tokens, dim), torch.rand(steps, batch, tokens, dim)
    torch.manual_seed(0)
    ours, theirs = _Attention(dim, order), _Attention(dim, order, sj=True)
    _assert_products_equal(neuromc_energy_report(ours, x, y, F.mse_loss),
                           sj_products(theirs, x, y, F.mse_loss))  # fmt: skip
    _assert_products_equal(neuromc_energy_report(ours, x), sj_products(theirs, x))


def test_spikingjelly_reduces_an_operand_gradient_over_the_wrong_dim(sj_products, monkeypatch):
    """``dA = dY Bᵀ`` sums over ``B``'s ``N`` columns. SpikingJelly's traced backward
    ``bmm`` has loop dims ``C = N``, ``K = A``'s width, which its mapping reads with a
    Linear's convention (its input gradient sums over ``K``): it chunks the sum by
    ``A``'s width. 20 tokens and 4 features: spikeflow's estimate made to do the same
    equals SpikingJelly's, and is dearer than spikeflow's (partial sums that are not
    there)."""
    from spikeflow.energy import neuromc, neuromc_matmul

    x, y = _spikes(1, 2, 20, 4), torch.rand(1, 2, 20, 4)
    torch.manual_seed(0)
    ours, theirs = _Attention(4), _Attention(4, sj=True)
    their = sj_products(theirs, x, y, F.mse_loss)
    right = neuromc_energy_report(ours, x, y, F.mse_loss)

    def by_width(shape, *args):
        works = neuromc_matmul.matmul_backward_works(shape, *args)
        swap = {"matmul.backward.grad_left": (shape.k, 1)}
        return [(op, replace(w, reduce=swap.get(op, w.reduce))) for op, w in works]

    monkeypatch.setattr(neuromc, "matmul_backward_works", by_width)
    as_theirs = neuromc_energy_report(ours, x, y, F.mse_loss)
    _assert_products_equal(as_theirs, their)
    products = sum(w.total for w in right.works if w.op.startswith("matmul"))
    assert their.energy_total_pj * PJ > products * 1.01
    assert as_theirs.total - right.total == pytest.approx(their.energy_total_pj * PJ - products)


def _as_spikingjelly_chunks(monkeypatch):
    """Make spikeflow chunk ``dA``'s sum by ``A``'s width, as SpikingJelly does."""
    from spikeflow.energy import neuromc, neuromc_matmul

    def by_width(shape, *args):
        works = neuromc_matmul.matmul_backward_works(shape, *args)
        swap = {"matmul.backward.grad_left": (shape.k, 1)}
        return [(op, replace(w, reduce=swap.get(op, w.reduce))) for op, w in works]

    monkeypatch.setattr(neuromc, "matmul_backward_works", by_width)


_SJ_ZOO = [
    ("spikformer", {"input_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2},
     (2, 2, 3, 16, 16)),
    ("spikformer_ti", {"input_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2},
     (1, 2, 3, 16, 16)),
    ("maxformer_cifar", {"embed_dim": 16, "num_heads": 2}, (1, 2, 3, 32, 32)),
    ("qkformer_10_384", {"embed_dim": 16, "num_heads": 2, "depths": (1, 1, 1), "num_classes": 10},
     (1, 2, 3, 32, 32)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs", "shape"), _SJ_ZOO)
def test_zoo_attention_products_equal_spikingjelly(name, kwargs, shape, monkeypatch):
    """The zoo transformers' attention products, a training step of the zoo model
    itself: equal per component to SpikingJelly's pricing of the ``aten.bmm`` it traces
    (its tracer runs on spikeflow's model; the other operations, which it cannot price
    or prices otherwise, are set aside), with spikeflow chunking ``dA`` as it does."""
    from spikeflow.models import create_model

    monkeypatch.setattr(sj_core, "_AUXILIARY_ATEN_OPS",
                        sj_core._AUXILIARY_ATEN_OPS | {"aten.neg.default"})  # fmt: skip
    traced = sj_core.NeuroMCEnergyProfiler._fallback_fragments_from_trace
    report = sj_core.NeuroMCEnergyProfiler.get_report

    def bmm_only(self, *, supplemental_only=False):
        self._trace_events = [e for e in self._trace_events if e.op_name == "aten.bmm.default"]
        return traced(self)

    def get_report(self):
        self._fragments = []
        return report(self)

    profiler = sj_core.NeuroMCEnergyProfiler
    monkeypatch.setattr(profiler, "_fallback_fragments_from_trace", bmm_only)
    monkeypatch.setattr(profiler, "get_report", get_report)
    monkeypatch.setattr(profiler, "_unsupported_ops", lambda self: {})
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    x, y = _spikes(*shape), torch.randint(0, 10, (shape[1],))

    def loss(out, y):
        return F.cross_entropy(out.mean(0), y)

    reset_net(model)
    theirs = sj_neuromc.estimate_neuromc_runtime_energy(model, x, target=y, loss_fn=loss)
    _as_spikingjelly_chunks(monkeypatch)
    ours = neuromc_energy_report(model, x, y, loss)
    assert sum(w.op.startswith("matmul") for w in ours.works) >= 6
    _assert_products_equal(ours, theirs)


# ---------------------------------------------------------------- the zoo's transformers

_ZOO = [
    ("spikformer", {"input_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2},
     (2, 2, 3, 16, 16), 1),
    ("spikformer_ti", {"input_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2},
     (1, 2, 3, 16, 16), 1),
    ("spike_driven_transformer", {"input_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2},
     (2, 2, 3, 16, 16), 0),
    ("sdt_cifar10dvs", {"input_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2},
     (1, 2, 2, 16, 16), 0),
    ("maxformer_cifar", {"embed_dim": 16, "num_heads": 2}, (1, 2, 3, 32, 32), 2),
    ("qkformer_10_384", {"embed_dim": 16, "num_heads": 2, "depths": (1, 1, 1), "num_classes": 10},
     (1, 2, 3, 32, 32), 1),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs", "shape", "attentions"), _ZOO)
def test_zoo_transformers_are_priced_end_to_end(name, kwargs, shape, attentions):
    """A training step of each zoo transformer: its forward MACs (the attention's
    products included) equal half the FLOPs torch's FlopCounterMode counts; backward,
    the products' (``aten.bmm``), the linear layers' (``aten.mm``) and, but for
    Max-Former's depth-wise convolutions (whose backward FLOPs torch counts as dense:
    tests/test_energy_neuromc_groups.py checks them), the convolutions'. Each
    product-attention module has its two products forward and four gradients (the
    Spike-driven Transformer's attention multiplies elementwise: none)."""
    from spikeflow.models import create_model

    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    x, y = _spikes(*shape), torch.randint(0, 10, (shape[1],))

    def loss(out, y):
        return F.cross_entropy(out.mean(0), y)

    report = neuromc_energy_report(model, x, y, loss, torch.optim.SGD(model.parameters(), 0.1))
    macs: dict[tuple[str, str], int] = {}
    for work in report.works:
        kind = work.op.split(".")[0] if work.phase == "backward" else ""
        macs[(work.phase, kind)] = macs.get((work.phase, kind), 0) + work.priced.macs
    reset_net(model)
    with FlopCounterMode(display=False) as forward:
        out = loss(model(x), y)
    with FlopCounterMode(display=False) as backward:
        out.backward()
    reset_net(model)
    assert macs[("forward", "")] == forward.get_total_flops() // 2
    flops = {str(op): n // 2 for op, n in backward.get_flop_counts()["Global"].items()}
    assert macs.get(("backward", "matmul"), 0) == flops.get("aten.bmm", 0)
    assert macs.get(("backward", "linear"), 0) == flops["aten.mm"]
    grouped = any(getattr(m, "groups", 1) > 1 for m in model.modules())
    if not grouped:
        assert macs[("backward", "conv")] == flops["aten.convolution_backward"]
    products: dict[str, list[str]] = {}
    for work in report.works:
        if work.op.startswith("matmul"):
            products.setdefault(work.name, []).append(work.op)
    assert len(products) == attentions
    for ops in products.values():
        assert sorted(ops) == sorted(["matmul.forward"] * 2 + ["matmul.backward.grad_left"] * 2
                                     + ["matmul.backward.grad_right"] * 2)  # fmt: skip
    assert report.total > 0 and math.isfinite(report.total)


def test_the_dvs_spike_driven_transformers_erode_pools_are_priced():
    """``sdt_cifar10dvs`` (``erode=True``) max-pools in its attention's own forward:
    ``K`` and ``V`` ``[T, B, H, N, d] = [1, 2, 2, 16, 8]`` over the 4x4 grid (32 maps,
    3x3 windows, stride 1, padding 1: 2+3+3+2 = 10 inputs a row, Σw = 100 a map:
    3200 − 512 comparisons), and ``K ⊙ V`` and the attention over (token, channel)
    (4 maps of 16x8: (2+14·3+2)(2+6·3+2) = 1012, 4048 − 512); backward one mux per
    output (512) each. All on spikes, under the attention's name (they were unpriced)."""
    from spikeflow.models import create_model

    torch.manual_seed(0)
    model = create_model("sdt_cifar10dvs", input_size=16, embed_dim=16, depth=1, num_heads=2)
    x, y = _spikes(1, 2, 2, 16, 16), torch.randint(0, 10, (2,))
    report = neuromc_energy_report(model, x, y, lambda out, y: F.cross_entropy(out.mean(0), y))
    erode = [w for w in report.works if w.name == "blocks.0.attention"]
    forward = [(w.op, w.engine, w.priced.ops["comp"], w.priced.bits) for w in erode
               if w.phase == "forward"]  # fmt: skip
    grid, heads = (3200, 512), (4048, 512)
    assert forward == [
        ("maxpool.forward", "fp_soma", read - out, {("reg", "rh2l"): read, ("reg", "wl2h"): out})
        for read, out in (grid, grid, heads, heads)
    ]
    backward = [(w.op, w.engine, w.priced.ops["mux"]) for w in erode if w.phase == "backward"]
    assert backward == [("maxpool.backward", "bp_grad", 512)] * 4
