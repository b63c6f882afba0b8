"""Products between activations (spiking attention): hand-derived counts on known
spike patterns, and loops over the attention layers' own Q, K, V."""

from __future__ import annotations

import itertools
import threading

import pytest
import torch
from torch import nn
from torch.overrides import _get_current_function_mode_stack

from spikeflow import layers, neurons
from spikeflow.energy import OperationCounter, count_operations

S = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # spikes, 3 nonzero
S2 = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
R = torch.tensor([[0.5, 0.0], [1.5, -2.0], [0.25, 3.0]])  # real, one zero entry


class _Inner(nn.Module):
    def forward(self, s: torch.Tensor, s2: torch.Tensor, r: torch.Tensor) -> None:
        s @ r  # each of the 3 spikes meets a row of r (2 entries, the zero too): 6 ACs
        r.T @ r  # real by real [2, 3] @ [3, 2]: 12 MACs
        s * s2  # both spike at (0, 0) and (1, 2): 2 ACs
        s * r.T  # a gate: one AC per spike, 3


class _Products(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _Inner()
        self.weight = nn.Parameter(torch.ones(3, 2))
        self.register_buffer("mask", torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
        self.dropout = layers.Dropout(0.5)
        self.lif = neurons.LIFNode(backend="torch")

    def forward(self, s: torch.Tensor, s2: torch.Tensor, r: torch.Tensor) -> None:
        self.inner(s, s2, r)
        s * r[:, 0]  # broadcast over the rows: 3 ACs
        torch.einsum("ij,jk->ik", s, r)  # as s @ r: 6 ACs
        s2 @ s.T  # spikes by spikes: columns meet 1·1 + 2·0 + 1·2 = 3 times: 3 ACs
        s[0] @ r  # a 1-D operand: 2 spikes, 2 entries each: 4 ACs
        s.clone().mul_(r.T)  # in place, counted before it makes real values: 3 ACs
        r.T * (s2 > 0)  # a boolean mask: 4 ACs
        # Not activation products:
        s @ self.weight  # a weight
        s @ (self.weight * self.mask)  # computed from weights alone
        s * 2.0, s * torch.tensor(2.0), 2 * s  # scales
        s.long() * s2.long()  # integer arithmetic
        self.dropout(r[None, None])  # a dropout mask (training mode)
        self.lif(r[None].expand(3, 3, 2) * 3)  # a neuron's own update
        torch.einsum("ij,jk,kl->il", s, r, r.T)  # three operands: listed, not counted


def test_products_between_activations_by_hand():
    net = _Products().train()
    with OperationCounter(net) as counter:
        net(S, S2, R)
    report = counter.report(1)
    rows = [(r.name, r.kind, r.acs, r.macs, r.calls) for r in report.layers]
    assert rows == [
        ("inner (activation products)", "products", 6 + 2 + 3, 12, 4),
        ("(model) (activation products)", "products", 3 + 6 + 3 + 4 + 3 + 4, 0, 6),
    ]
    # (its own 2-D weight, which it applies itself, and the three-operand einsum)
    assert report.not_counted == ["(model)", "(model) (einsum of 3 operands)"]
    inner = report.layers[0]
    assert inner.input_kind == "mixed" and report.layers[1].input_kind == "spikes"
    assert inner.input_elements == 4 * (6 + 6)  # both operands' entries, 4 products


def test_analog_values_multiply_as_real_values():
    """A LIAF's outputs are real values whatever they are (zeros here): their product
    is every pair, MACs, as a layer fed them does."""

    class Analog(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.liaf = neurons.LIAFNode("relu", True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.liaf(x)  # [T, B, N, d]
            return a @ a.transpose(-2, -1)

    x = torch.zeros(2, 1, 4, 3)  # silent: act(H - θ) = 0 everywhere
    report = count_operations(Analog(), x)
    (row,) = report.layers
    assert (row.acs, row.macs) == (0, 2 * 4 * 3 * 4)


def _row(report, kind="products"):
    (row,) = [r for r in report.layers if r.kind == kind]
    return row


def _spiking_attention(layer):
    """Fire the Q, K, V neurons: their batch norms' shift high."""
    layer.eval()
    with torch.no_grad():
        for module in layer.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.bias.fill_(1.0)
    return layer


@pytest.mark.parametrize("kind", ["SSA", "SDSA"])
def test_attention_products_are_counted_by_loop(kind):
    """Spikformer's Q (Kᵀ V): each (key spike, value spike) pair of a token accumulates
    into M = Kᵀ V; each query spike then meets the d entries of a row of M (real
    values: zeros too). The Spike-driven Transformer's K ⊙ V and Q ⊙ SN(Σ K ⊙ V): one
    AC where both spike."""
    from spikeflow.layers import SpikeDrivenSelfAttention, SpikingSelfAttention

    torch.manual_seed(7)
    cls = SpikingSelfAttention if kind == "SSA" else SpikeDrivenSelfAttention
    layer = _spiking_attention(cls(8, 2))
    seen = {}
    layer.qkv.register_forward_hook(lambda m, a, out: seen.setdefault("qkv", out))
    if kind == "SDSA":
        layer.kv_neuron.register_forward_hook(lambda m, a, out: seen.setdefault("kv", out))
    x = (torch.rand(3, 2, 5, 8) < 0.5).float() * 2
    report = count_operations(layer, x)
    q, k, v = seen["qkv"]
    want = 0
    if kind == "SSA":
        products = k.transpose(-2, -1) @ v
        nonzero = products[products != 0]
        assert not (nonzero == nonzero[0]).all()  # counts of several values: real
    for t, b, h in itertools.product(range(3), range(2), range(2)):
        qh, kh, vh = q[t, b, h], k[t, b, h], v[t, b, h]  # [N, d]
        if kind == "SSA":
            want += sum(int(kh[n].sum()) * int(vh[n].sum()) for n in range(5))
            want += int(qh.sum()) * 4
        else:
            kv = seen["kv"][t, b, h, 0]  # [d]
            want += int((kh * vh).sum()) + int((qh * kv).sum())
    row = _row(report)
    assert row.acs == want > 0 and row.macs == 0
    assert row.name == "(model) (activation products)"


@pytest.mark.parametrize("qka_type", ["token", "channel"])
def test_qk_attention_masks_are_counted_by_loop(qka_type):
    """QKFormer's A ⊙ K: A one spike per token and head (token) or per channel and
    head (channel); one AC where A and K both spike."""
    from spikeflow.layers import QKAttention

    torch.manual_seed(3)
    layer = _spiking_attention(QKAttention(8, 2, qka_type))
    seen = {}
    layer.qk_lif.register_forward_hook(lambda m, a, out: seen.setdefault("qk", out))
    layer.attn_lif.register_forward_hook(lambda m, a, out: seen.setdefault("a", out))
    x = (torch.rand(2, 3, 5, 8) < 0.5).float()
    report = count_operations(layer, x)
    k = seen["qk"].chunk(2, dim=-1)[1].unflatten(-1, (2, 4))  # [T, B, N, H, d]
    mask = seen["a"]
    want = 0
    for t, b, n, h, i in itertools.product(range(2), range(3), range(5), range(2), range(4)):
        a = mask[t, b, n, h, 0] if qka_type == "token" else mask[t, b, 0, h, i]
        want += int(a != 0 and k[t, b, n, h, i] != 0)
    assert _row(report).acs == want > 0
    assert _row(report).name == "(model) (activation products)"


def test_nested_counters_do_not_count_each_others_arithmetic():
    # A counter on the model and one on its submodule (or two on one model): each
    # counts the model's products, 6 ACs, and none of the other counter's own masks.
    net = _Products().train()
    with OperationCounter(net) as outer, OperationCounter(net.inner) as inner:
        net.inner(S, S2, R)
    for counter, name in ((outer, "inner"), (inner, "(model)")):
        rows = [(r.name, r.acs, r.macs) for r in counter.report(1).layers]
        assert rows == [(f"{name} (activation products)", 6 + 2 + 3, 12)]


class _Meeting(nn.Module):
    """``s @ r`` once every thread running it is inside its forward."""

    def __init__(self, threads: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(threads, timeout=30)

    def forward(self, s: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        self.barrier.wait()
        return s @ r


class _Container(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, s: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return self.inner(s, r)


def test_threads_running_the_model_at_once_count_each_run():
    # nn.DataParallel's replicas run in threads: each thread's run is counted (6 ACs
    # each, as by hand above) and leaves no mode behind in its thread.
    net = _Container(_Meeting(2))
    failures: list[BaseException] = []
    modes_left: list[int] = []

    def run() -> None:
        try:
            net(S, R)
        except BaseException as exc:  # (reported below)
            failures.append(exc)
        modes_left.append(len(_get_current_function_mode_stack()))

    with OperationCounter(net) as counter:
        workers = [threading.Thread(target=run) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert failures == [] and modes_left == [0, 0]
    rows = [(r.name, r.acs, r.macs, r.calls) for r in counter.report(2).layers]
    assert rows == [("inner (activation products)", 2 * 6, 0, 2)]


class _Interrupted(nn.Module):
    def forward(self, s: torch.Tensor) -> torch.Tensor:
        s @ s.T
        raise KeyboardInterrupt  # no Exception: the forward hooks do not run


def test_an_interrupted_run_leaves_no_mode_behind():
    net = nn.Sequential(_Interrupted())
    with pytest.raises(KeyboardInterrupt), OperationCounter(net):
        net(S)
    assert _get_current_function_mode_stack() == []
    with OperationCounter(net[0]) as counter:  # a counter after it counts as before
        with pytest.raises(KeyboardInterrupt):
            net[0](S)
    rows = [(r.name, r.acs, r.calls) for r in counter.report(1).layers]
    assert rows == [("(model) (activation products)", 5, 1)]  # columns: 1·1 + 0 + 2·2
    assert _get_current_function_mode_stack() == []


def test_weights_masked_by_drawn_masks_are_no_activations():
    # DropConnectLinear trains with (W ⊙ M_b) x_b, M_b drawn by torch.rand: a layer with
    # weights of its own, listed as not counted, not a product between activations.
    layer = layers.DropConnectLinear(3, 2, p=0.5).train()
    with OperationCounter(layer) as counter:
        layer(S[None].expand(2, 2, 3))
    report = counter.report(2)
    assert report.layers == [] and report.not_counted == ["(model)"]


class _Attend(nn.Module):
    """An nn.MultiheadAttention over a sequence ``[L, N, E]`` (self-attention) or a
    query and a memory (``batch_first``, cross-attention)."""

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        source = x if memory is None else memory
        return self.attention(x, source, source)[0]


def test_multihead_attention_is_counted_as_its_projections_and_products():
    """By hand, E = 4, 2 heads, L = S = 3 tokens, N = 2: the input projection ``W_in``
    ``[12, 4]`` of ones but for the query's column 0; input feature 0 spikes at all 6
    tokens (reaching 8 weights: the key's and value's), feature 1 at 2 (12 weights):
    48 + 24 = 72 ACs. ``Q Kᵀ`` and ``A V`` of real values: 2 N L S E = 144 MACs. The
    output projection over the 6 attended values (real), 10 nonzero weights: 60 MACs.
    The same whether its forward takes the fused path (evaluation, no gradient) or
    ``bmm`` (training), which the product mode does not count again."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(4, 2)
    with torch.no_grad():
        attention.in_proj_weight.fill_(1.0)
        attention.in_proj_weight[0:4, 0] = 0.0
        attention.out_proj.weight.fill_(0.5)
        for row, column in ((0, 1), (0, 3), (1, 0), (2, 2), (3, 0), (3, 1)):
            attention.out_proj.weight[row, column] = 0.0  # 16 - 6 = 10 nonzero
    net = _Attend(attention)
    x = torch.zeros(3, 2, 4)
    x[:, :, 0] = 1.0
    x[0, :, 1] = 1.0
    for train in (False, True):
        net.train(train)
        report = count_operations(net, x)
        rows = {r.name: (r.acs, r.macs, r.input_kind) for r in report.layers}
        assert rows == {
            "attention.in_proj": (72, 0, "spikes"),
            "attention.out_proj": (0, 60, "real"),
            "attention (activation products)": (0, 144, "real"),
        }, train
        assert len(report.layers) == 3 and report.not_counted == [] and report.samples == 2
    # batch_first cross-attention with key/value widths of their own (separate weights):
    # L = 2 queries of E = 4, S = 5 keys of 3 features, N = 2, real inputs (MACs)
    cross = _Attend(nn.MultiheadAttention(4, 2, batch_first=True, kdim=3, vdim=3))
    with OperationCounter(cross) as counter, torch.no_grad():
        cross(torch.rand(2, 2, 4), torch.rand(2, 5, 3))
    rows = {r.name: (r.acs, r.macs) for r in counter.report(2).layers}
    assert rows == {
        "attention.in_proj": (0, 2 * 2 * 4 * 4 + 2 * 2 * 5 * 3 * 4),  # Q; K and V
        "attention.out_proj": (0, 2 * 2 * 16),
        "attention (activation products)": (0, 2 * 2 * 2 * 5 * 4),
    }
