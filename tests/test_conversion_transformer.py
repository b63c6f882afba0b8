"""convert_transformer: quantised ViTs and signed MLPs become spiking networks whose
summed output equals the quantised ANN's exactly (float64) once the neurons settle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.conversion import QCFS
from spikeflow.conversion.report import ConversionError
from spikeflow.conversion.signed import SymmetricQuant
from spikeflow.conversion.transformer import convert_transformer
from spikeflow.errors import ShapeError

F64 = torch.float64


def quant(generator: torch.Generator, unsigned: bool = False) -> SymmetricQuant:
    # steps drawn at random: products of grid values then never land on a rounding tie
    scale = 0.2 + 0.2 * float(torch.rand((), generator=generator))
    return SymmetricQuant(levels=4, scale=scale, min_level=0 if unsigned else None)


class Attention(nn.Module):
    """Multi-head self-attention written out, quantisers before both products."""

    def __init__(self, dim: int, heads: int, g: torch.Generator) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_quant, self.k_quant, self.v_quant = quant(g), quant(g), quant(g)
        self.attn_quant, self.out_quant = quant(g, unsigned=True), quant(g)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, self.heads, d).transpose(1, 2)

        q, k = heads(self.q_quant(self.q(x))), heads(self.k_quant(self.k(x)))
        v = heads(self.v_quant(self.v(x)))
        attn = self.attn_quant((q @ k.transpose(-2, -1) * d**-0.5).softmax(dim=-1))
        return self.proj(self.out_quant(attn @ v).transpose(1, 2).reshape(b, n, c))


class TinyViT(nn.Module):
    """Patch embedding, class token, position embedding, one pre-norm block (attention
    and a GELU MLP, residual adds), final norm, class-token or mean pooling, head."""

    def __init__(self, pool: str = "cls", builtin_attention: bool = False, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        dim, self.pool = 8, pool
        self.embed = nn.Linear(16, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim, generator=g) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 5, dim, generator=g) * 0.5)
        self.in_quant, self.norm1_quant, self.norm2_quant = quant(g), quant(g), quant(g)
        self.builtin = builtin_attention
        if builtin_attention:
            self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        else:
            self.attn = Attention(dim, 2, g)
        self.res1_quant, self.res2_quant = quant(g), quant(g)
        self.norm1, self.norm2, self.norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 16), nn.GELU(), nn.Linear(16, dim)
        self.mlp_quant = quant(g)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        patches = x.unfold(1, 4, 4).unfold(2, 4, 4).reshape(b, 4, 16)
        x = torch.cat([self.cls.expand(b, -1, -1), self.embed(patches)], dim=1) + self.pos
        x = self.in_quant(x)
        h = self.norm1_quant(self.norm1(x))
        h = self.attn(h, h, h, need_weights=False)[0] if self.builtin else self.attn(h)
        x = self.res1_quant(x + h)
        h = self.fc2(self.mlp_quant(self.act(self.fc1(self.norm2_quant(self.norm2(x))))))
        x = self.norm(self.res2_quant(x + h))
        return self.head(x[:, 0] if self.pool == "cls" else x.mean(dim=1))


@pytest.mark.parametrize(("pool", "builtin"), [("cls", False), ("mean", False), ("mean", True)])
def test_vit_converts_exactly(pool, builtin):
    torch.manual_seed(0)
    ann = TinyViT(pool, builtin).to(F64).eval()
    x = torch.randn(6, 8, 8, dtype=F64)
    snn, report = convert_transformer(ann)
    expected = ann(x).detach()
    total = snn.accumulate(x, 16)
    torch.testing.assert_close(total[-1], expected, rtol=0, atol=1e-9)
    assert (total[0] - expected).abs().max() > 1e-3  # the neurons need steps to settle
    converted = {e.name for e in report.converted}
    assert {"in_quant", "res2_quant", "mlp_quant"} <= converted
    products = [e for e in report.entries if "product of two streams" in e.detail]
    assert len(products) == (0 if builtin else 2)
    assert ann(x).detach().equal(expected)  # the ANN itself is left alone


def test_report_says_what_each_call_became():
    report = convert_transformer(TinyViT().to(F64)).report
    by_name = {e.name: e for e in report.entries}
    assert by_name["norm1"].action == "replaced" and "inputs: spikes" in by_name["norm1"].detail
    assert "not all spikes" in by_name["softmax"].detail  # its input is q k^T, not spikes
    assert "spikes" in by_name["matmul"].detail and "not all" not in by_name["matmul"].detail
    assert by_name["embed"].detail == "weights every step, bias once"
    assert by_name["cat"].action == "replaced"  # the class token enters once
    assert by_name["add_1"].action == "kept"  # residual: a sum of two streams
    assert len(report.converted) == 11


@pytest.mark.parametrize("unsigned", [False, True])
def test_signed_mlp_converges_to_the_quantised_ann(unsigned):
    g = torch.Generator().manual_seed(1)
    layers: list[nn.Module] = [nn.Linear(10, 20), quant(g), nn.Tanh(), nn.Linear(20, 20)]
    layers += [QCFS(levels=4, threshold=1.3) if unsigned else quant(g), nn.Linear(20, 5)]
    ann = nn.Sequential(*layers).to(F64)
    x = torch.randn(32, 10, dtype=F64) * 2
    snn, report = convert_transformer(ann)
    expected = ann(x).detach()
    errors = (snn.accumulate(x, 12) - expected).abs().amax(dim=(1, 2))
    assert errors[0] > 1e-2 and float(errors[-1]) < 1e-9
    assert bool((errors[1:] <= errors[:-1] + 1e-12).all())  # settles, does not wander
    assert [e.name for e in report.converted] == ["1", "4"]
    assert report.entries[2].source == "nn.Tanh" and report.entries[2].action == "replaced"


class Reciprocal(nn.Module):
    """A constant divided by a stream is not linear in it (nor is a constant added)."""

    def __init__(self):
        super().__init__()
        self.q = SymmetricQuant(levels=4, scale=0.37)

    def forward(self, x):
        return 1.0 / (self.q(x) ** 2 + 1.0) - self.q(x) / 2.0


def test_division_by_a_stream_is_a_temporal_difference():
    ann = Reciprocal().to(F64)
    x = torch.randn(20, 3, dtype=F64)
    snn, report = convert_transformer(ann)
    total = snn.accumulate(x, 8)
    torch.testing.assert_close(total[-1], ann(x).detach(), rtol=0, atol=1e-12)
    # 1.0 / (...): a temporal difference; q(x) / 2: linear, on every step
    assert [e.action for e in report.entries if e.source == "_operator.truediv"] == [
        "replaced",
        "kept",
    ]


class NoQuant(nn.Module):
    def forward(self, x):
        return torch.tanh(x) + 1


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = SymmetricQuant()

    def forward(self, x):
        return self.q(x).add_(1)


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = SymmetricQuant()

    def forward(self, x):
        return self.q(x) if x.sum() > 0 else x


class SharedOnConstant(nn.Module):
    """One Linear applied to the input and to a parameter."""

    def __init__(self):
        super().__init__()
        self.q, self.fc = SymmetricQuant(), nn.Linear(3, 3)
        self.token = nn.Parameter(torch.ones(1, 3))

    def forward(self, x):
        return self.q(self.fc(x)) + self.fc(self.token)


class SharedOnConstantFirst(SharedOnConstant):
    """The same, the call on the parameter first (it was made a StepBias too)."""

    def forward(self, x):
        token = self.fc(self.token)
        return self.q(self.fc(x)) + token


def zero_scale() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 3), SymmetricQuant())
    model[1].scale.data.zero_()
    return model


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (NoQuant(), "no SymmetricQuant"),
        (InPlace(), "in place"),
        (Untraceable(), "trace"),
        (SharedOnConstant(), "fc is called on the input's stream at one place"),
        (SharedOnConstantFirst(), "fc is called on the input's stream at one place"),
        (zero_scale(), r"^1 \(SymmetricQuant\): SignedIFNeuron threshold"),
    ],
)
def test_refusals_name_the_problem(model, message):
    with pytest.raises(ConversionError, match=message):
        convert_transformer(model)


class SequenceFirst(nn.Module):
    """Attention-like mixing over the tokens in a sequence-first [L, B, E] layout (as
    nn.MultiheadAttention with batch_first=False): dim 0 is not the batch there."""

    def __init__(self):
        super().__init__()
        self.q, self.fc = SymmetricQuant(4, 0.25), nn.Linear(3, 3)

    def forward(self, x):  # x [B, L, E]
        y = self.q(self.fc(x)).transpose(0, 1)  # [L, B, E]
        return y.softmax(-1).cumsum(0).transpose(0, 1)


@pytest.mark.parametrize("tokens", [4, 5])
def test_a_sequence_first_layout_is_refused_not_split_along_the_tokens(tokens):
    # 4 tokens at T = 2 divide by T (they were unflattened into fake steps, a silently
    # wrong sum); only T*B (here 6) tells them from the folded batch
    snn, _ = convert_transformer(SequenceFirst())
    with pytest.raises(ShapeError, match=r"softmax.*not \[T\*B = 2\*3, \.\.\.\].*batch_first"):
        snn.accumulate(torch.randn(3, tokens, 3), 2)


class NormedDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.q = nn.Linear(3, 3), SymmetricQuant(4, 0.3)
        self.bn, self.drop, self.q2 = nn.BatchNorm1d(3), nn.Dropout(0.5), SymmetricQuant(4, 0.2)

    def forward(self, x):
        return self.q2(self.drop(self.bn(self.q(self.fc(x)))))


def test_train_mode_leaves_the_converted_network_as_the_eval_ann():
    # a parent's .train() reaching the SNN must not switch on dropout or let the batch
    # norm's temporal difference overwrite its running statistics with running sums'
    ann = NormedDropout().to(F64).eval()
    x = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    snn, _ = convert_transformer(ann)
    stats = snn.body.bn.fn.running_mean.clone()
    assert nn.Sequential(snn).train() is not None and snn.training
    torch.testing.assert_close(snn.accumulate(x, 12)[-1], ann(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(snn.body.bn.fn.running_mean, stats, rtol=0, atol=0)


class KeywordProduct(nn.Module):
    def __init__(self, call):
        super().__init__()
        self.call, self.a, self.b = call, SymmetricQuant(4, 0.3), SymmetricQuant(4, 0.25)

    def forward(self, x):
        return self.call(self.a(x), self.b(2 * x))


@pytest.mark.parametrize(
    "call",
    [
        lambda a, b: torch.mul(a, other=b),
        lambda a, b: a.mul(other=b),
        lambda a, b: torch.matmul(input=a, other=b.transpose(-1, -2)),
    ],
)
def test_a_product_with_a_factor_given_by_keyword_is_a_spike_product(call):
    # the second factor was dropped: SpikeProduct called with one argument, a TypeError
    ann = KeywordProduct(call).to(F64)
    x = torch.randn(4, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    snn, report = convert_transformer(ann)
    torch.testing.assert_close(snn.accumulate(x, 20)[-1], ann(x), rtol=0, atol=1e-12)
    assert "product of two streams" in report.entries[-1].detail


class KeywordConstant(nn.Module):
    def __init__(self, call):
        super().__init__()
        self.call, self.q = call, SymmetricQuant(4, 0.3)
        self.c = nn.Parameter(torch.linspace(-1, 1, 3))

    def forward(self, x):
        return self.call(self.q(x), self.c)


@pytest.mark.parametrize(
    "call",
    [
        lambda a, c: torch.add(a, other=c),
        lambda a, c: a.sub(other=c),
        lambda a, c: torch.add(a, other=1.5),
        lambda a, c: torch.mul(input=a, other=2.0),
    ],
)
def test_a_constant_given_by_keyword_is_not_added_at_every_step(call):
    # torch.add(stream, other=constant) was kept as a sum of streams: T times the constant
    ann = KeywordConstant(call).to(F64)
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(6))
    snn, _ = convert_transformer(ann)
    torch.testing.assert_close(snn.accumulate(x, 10)[-1], ann(x), rtol=0, atol=1e-12)
