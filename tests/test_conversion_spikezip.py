"""``convert_spikezip_qann``: SpikeZIP-TF's own QANN layouts (ViT, RoBERTa with its
attention mask and token embedding) against SpikingJelly 2.0's ``SpikeZIPTFQANNRecipe``
step by step, the exact-equivalence property, the bias schedule, and bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.conversion import ConversionError, impulse_input
from spikeflow.conversion.spikezip import SpreadBias, convert_spikezip_qann
from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.functional import streaming
from spikezip_models import FullQuan, Roberta, RobertaAttention, ViT, ViTAttention, ZipMlp

F64 = torch.float64
TIGHT = dict(rtol=0, atol=1e-12)
STEPS = 24
#: The step from which both networks equal their QANN (2 x level; both settle by 9).
SETTLED = 16


def _roberta() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = Roberta().to(F64).eval()
    tokens = torch.randint(0, 32, (3, 6))
    mask = torch.zeros(3, 1, 1, 6, dtype=F64)
    mask[..., -2:] = -10000.0  # the last two tokens masked, as HF's extended mask
    return model, tokens, mask


def _vit(**kwargs) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(1)
    return ViT(**kwargs).to(F64).eval(), torch.randn(2, 3, 8, 8, dtype=F64)


def _spikingjelly_steps(
    model, family, x, steps, impulse, bias_at_once=False, **kwargs
) -> torch.Tensor:
    """SpikingJelly's recipe run step by step (its example's loop): ``x`` at every step
    (tokens: its embedding sends once) or only at the first (``impulse``: images).
    ``bias_at_once``: every layer's bias sent whole at the first step, as SpikeZIP-TF's
    ViT release does (its ``LLLinear``/``LLConv2d`` have ``steps = 1``)."""
    converter = pytest.importorskip("spikingjelly.activation_based.ann2snn")
    from spikingjelly.activation_based import functional

    recipe = converter.SpikeZIPTFQANNRecipe(time_steps=steps, model_family=family)
    snn = converter.ModuleConverter(recipe=recipe).convert(model).eval()
    if bias_at_once:
        layers = (
            converter.recipes.spikezip_qann.SpikeZIPLinear,
            converter.recipes.spikezip_qann.SpikeZIPConv2d,
        )
        for module in snn.modules():
            if isinstance(module, layers):
                module.bias_steps = 1
                module.set_reset_value("realize_time", 1)
    functional.set_step_mode(snn, "s")
    functional.reset_net(snn)
    with torch.no_grad():
        return torch.stack([
            snn(x if t == 0 or not impulse else torch.zeros_like(x), **kwargs)
            for t in range(steps)
        ])  # fmt: skip


def test_roberta_with_mask_equals_spikingjelly_at_every_step():
    model, tokens, mask = _roberta()
    reference = _spikingjelly_steps(model, "roberta", tokens, STEPS, False, attention_mask=mask)
    snn, report = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    ours = snn(impulse_input(tokens.to(F64), STEPS), impulse_input(mask, STEPS))
    torch.testing.assert_close(ours, reference, **TIGHT)
    assert ours[1:].abs().amax() > 0.01  # not all sent at once: later steps matter
    # the mask changes the answer (it is not lost after the first step)
    unmasked = _spikingjelly_steps(model, "roberta", tokens, STEPS, False)
    assert (unmasked.sum(0) - ours.sum(0)).abs().amax() > 1e-3
    names = {e.name: e for e in report.entries}
    assert "bias over the first 8 steps" in names["attention.query"].detail
    assert "bias over the first 8 steps" in names["classifier"].detail
    assert names["_lookup"].source == "nn.Embedding"


def test_vit_equals_spikingjelly_at_every_step():
    model, images = _vit()
    reference = _spikingjelly_steps(model, "vit", images, STEPS, True)
    snn, report = convert_spikezip_qann(model, "vit")
    ours = snn(impulse_input(images, STEPS))
    torch.testing.assert_close(ours, reference, **TIGHT)
    details = {e.name: (e.source, e.detail) for e in report.entries}
    assert details["blocks.0.attn.qkv"][1].endswith("bias once")
    assert details["blocks.1.mlp.act"] == (
        "nn.ReLU",
        "dropped: every use is an unsigned quantiser",
    )


@pytest.mark.parametrize("family", ["vit", "roberta"])
def test_running_sum_is_the_qann_output_once_settled(family):
    if family == "vit":
        model, x = _vit()
        snn, _ = convert_spikezip_qann(model, "vit")
        sums, qann = snn.accumulate(x, STEPS), model(x)
    else:
        model, x, mask = _roberta()
        snn, _ = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
        sums, qann = snn.accumulate(x, STEPS, mask=mask), model(x, attention_mask=mask)
    qann = qann.detach()
    assert (sums[0] - qann).abs().amax() > 0.01  # not settled at the first step
    for t in range(SETTLED - 1, STEPS):
        torch.testing.assert_close(sums[t], qann, **TIGHT)


def test_one_causal_mask_for_the_whole_batch():
    """A mask of batch 1 ([1, 1, L, L], causal) broadcasts over the batch, as in the QANN."""
    model, tokens, _ = _roberta()
    causal = torch.full((6, 6), torch.finfo(F64).min, dtype=F64).triu(1)[None, None]
    snn, _ = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    sums = snn.accumulate(tokens, STEPS, mask=causal)
    qann = model(tokens, attention_mask=causal).detach()
    torch.testing.assert_close(sums[-1], qann, **TIGHT)
    assert (qann - model(tokens).detach()).abs().amax() > 1e-3  # the mask matters
    per_sample = causal.expand(3, -1, -1, -1)
    torch.testing.assert_close(snn.accumulate(tokens, STEPS, mask=per_sample), sums, **TIGHT)


class _CrossAttention(RobertaAttention):
    """Keys and values from ``encoder_hidden_states`` when given (its mask then)."""

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None):
        memory = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q = self.split(self.query_quan(self.query(hidden_states)))
        k = self.split(self.key_quan(self.key(memory)))
        v = self.split(self.value_quan(self.value(memory)))
        scores = q @ k.transpose(-1, -2) / self.attention_head_size**0.5 + attention_mask
        context = self.after_attn_quan(self.attn_quan(scores.softmax(-1)) @ v)
        return (context.transpose(1, 2).flatten(2),)


class _EncoderDecoder(nn.Module):
    """An encoder attention, then a decoder on the first 3 tokens attending to it."""

    def __init__(self):
        super().__init__()
        self.embedding, self.head = nn.Embedding(32, 16), nn.Linear(16, 3)
        self.encoder, self.decoder = _CrossAttention(), _CrossAttention()

    def forward(self, tokens, attention_mask=None):
        hidden = self.embedding(tokens)
        memory = self.encoder(hidden, attention_mask=attention_mask)[0]
        out = self.decoder(hidden[:, :3], attention_mask, encoder_hidden_states=memory)[0]
        return self.head(out[:, 0])


class _TwoMasks(_EncoderDecoder):
    def forward(self, tokens, attention_mask, decoder_mask):
        return super().forward(tokens, attention_mask + decoder_mask)


def test_cross_attention_converts_and_a_second_mask_is_refused_by_name():
    """SpikingJelly's recipe refuses cross-attention; here keys and values from another
    stream are one more spike product. The SNN takes one mask: a forward that needs a
    second is refused before tracing, by its parameter's name."""
    torch.manual_seed(4)
    model = _EncoderDecoder().to(F64).eval()
    _, tokens, mask = _roberta()
    snn, _ = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    sums, qann = snn.accumulate(tokens, STEPS, mask=mask), model(tokens, mask).detach()
    assert (sums[0] - qann).abs().amax() > 0.01
    torch.testing.assert_close(sums[-1], qann, **TIGHT)
    with pytest.raises(ConversionError, match="missing a required argument: 'decoder_mask'"):
        convert_spikezip_qann(_TwoMasks(), "roberta", mask_argument="attention_mask")
    with pytest.raises(ConversionError, match="unexpected keyword argument 'attn_mask'"):
        convert_spikezip_qann(model, "roberta", mask_argument="attn_mask")


def test_roberta_without_mask_and_bias_at_the_first_step():
    model, tokens, _ = _roberta()
    snn, _ = convert_spikezip_qann(model, "roberta", bias_steps=1)
    assert not any(isinstance(m, SpreadBias) for m in snn.modules())
    torch.testing.assert_close(snn.accumulate(tokens, STEPS)[-1], model(tokens).detach(), **TIGHT)
    # per step it is not SpikingJelly's (whose biases are spread over 8 steps)
    reference = _spikingjelly_steps(model, "roberta", tokens, STEPS, False)
    assert (snn(impulse_input(tokens.to(F64), STEPS)) - reference).abs().amax() > 1e-3


def test_vit_bias_at_once_is_spikezip_tf_own_vit_schedule():
    """SpikeZIP-TF's ViT release sends every bias at the first step (``bias_steps=1``);
    SpikingJelly's recipe (the default ``"spikezip"``) spreads all but qkv/proj's."""
    model, images = _vit()
    snn, _ = convert_spikezip_qann(model, "vit", bias_steps=1)
    ours = snn(impulse_input(images, STEPS))
    at_once = _spikingjelly_steps(model, "vit", images, STEPS, True, bias_at_once=True)
    torch.testing.assert_close(ours, at_once, **TIGHT)
    spread = _spikingjelly_steps(model, "vit", images, STEPS, True)
    assert (ours - spread).abs().amax() > 1e-3
    torch.testing.assert_close(ours.sum(0), model(images).detach(), **TIGHT)


def test_spikezip_tf_own_mlp_layout_drops_the_relu_after_its_unsigned_quantiser():
    """SpikeZIP-TF's ViT puts ``Sequential(MyQuan(sym=False), ReLU)``: relu(q(x)) = q(x)."""
    model, images = _vit()
    for block in model.blocks:
        block.mlp = ZipMlp(16, 32, 8).to(F64)
    snn, report = convert_spikezip_qann(model, "vit")
    entries = {e.name: e for e in report.entries}
    for i in range(2):
        entry = entries[f"blocks.{i}.mlp.act.1"]
        assert (entry.source, entry.action) == ("nn.ReLU", "kept")
        assert "its input is an unsigned quantiser's output" in entry.detail
    ours = snn(impulse_input(images, STEPS))
    torch.testing.assert_close(
        ours, _spikingjelly_steps(model, "vit", images, STEPS, True), **TIGHT
    )
    torch.testing.assert_close(ours.sum(0), model(images).detach(), **TIGHT)


def test_full_quantiser_passes_its_input_through():
    """SpikeZIP-TF's ``MyQuan`` at level >= 512 has ``pos_max = "full"`` and returns its
    input; SpikingJelly's recipe leaves it as it is."""
    model, images = _vit()
    model.blocks[0].norm2_quan = FullQuan().to(F64)
    snn, report = convert_spikezip_qann(model, "vit")
    entry = next(e for e in report.entries if e.name == "blocks.0.norm2_quan")
    assert (entry.source, entry.action) == ("FullQuan", "kept") and "passed through" in entry.detail
    ours = snn(impulse_input(images, STEPS))
    torch.testing.assert_close(
        ours, _spikingjelly_steps(model, "vit", images, STEPS, True), **TIGHT
    )
    torch.testing.assert_close(ours.sum(0), model(images).detach(), **TIGHT)


class _Branching(ViTAttention):
    def forward(self, x):
        if x.sum() > 0:  # a branch on values: torch.fx cannot trace it
            x = 2 * x
        return super().forward(x)


def test_untraceable_model_names_the_module_that_failed():
    model, _ = _vit()
    model.blocks[1].attn = _Branching().to(F64)
    with pytest.raises(ConversionError, match=r"trace ViT \(in blocks\.1\.attn, _Branching\)"):
        convert_spikezip_qann(model, "vit")
    with pytest.raises(ConversionError, match=r"trace _BranchingViT \(in its own forward\)"):
        convert_spikezip_qann(_BranchingViT().to(F64), "vit")


class _BranchingViT(ViT):
    def forward(self, x):
        return super().forward(x if x.amax() < 10 else x / 10)


def test_relu_before_a_signed_quantiser_is_kept_and_exact():
    model, images = _vit(signed_after_relu=True)
    snn, report = convert_spikezip_qann(model, "vit")
    entry = next(e for e in report.entries if e.name == "blocks.0.mlp.act")
    assert entry.action == "replaced" and "temporal difference" in entry.detail
    torch.testing.assert_close(snn.accumulate(images, 32)[-1], model(images).detach(), **TIGHT)


def test_streamed_in_chunks_equals_the_whole_sequence():
    model, tokens, mask = _roberta()
    snn, _ = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    x_seq, m_seq = impulse_input(tokens.to(F64), STEPS), impulse_input(mask, STEPS)
    whole = snn(x_seq, m_seq)
    with streaming(snn):  # chunks of 3 cross the 8 steps of the biases
        parts = [snn(x, m) for x, m in zip(x_seq.split(3), m_seq.split(3), strict=True)]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)


def test_spread_bias_against_its_formula():
    torch.manual_seed(2)
    layer = nn.Linear(5, 4).to(F64)
    x_seq = torch.randn(10, 3, 5, dtype=F64)
    sums = SpreadBias(layer, 4)(x_seq).cumsum(0)
    for t in range(10):
        expected = nn.functional.linear(x_seq[: t + 1].sum(0), layer.weight)
        expected = expected + layer.bias * min(t + 1, 4) / 4
        torch.testing.assert_close(sums[t], expected, **TIGHT)


def test_half_precision_models_look_up_the_tokens_they_are_given():
    """float16 holds whole numbers only to 2048, bfloat16 to 256: ids cast to the
    network's dtype would be other tokens (3901 -> 3900 or 3904)."""
    torch.manual_seed(5)
    tokens = torch.randint(2049, 5000, (2, 6))
    tokens[0, 0] = 3901  # 3901 and 3903 are both 3904 in bfloat16
    model = Roberta(vocab=5000).to(torch.float16).eval()
    snn, _ = convert_spikezip_qann(model, "roberta")
    sums, qann = snn.accumulate(tokens, STEPS)[-1], model(tokens).detach()
    assert sums.dtype == torch.float16
    torch.testing.assert_close(sums, qann, rtol=0, atol=0.01)  # float16 rounding only
    other = tokens.clone()
    other[0, 0] = 3903
    model = model.to(torch.bfloat16)
    snn, _ = convert_spikezip_qann(model, "roberta")
    changed = (snn.accumulate(other, STEPS)[-1] - snn.accumulate(tokens, STEPS)[-1])[0]
    assert changed.abs().amax() > 0.01


def test_token_ids_sent_at_every_step_are_refused():
    model, tokens, _ = _roberta()
    snn, _ = convert_spikezip_qann(model, "roberta")
    with pytest.raises(Exception, match="token ids must be in"):
        snn(tokens.unsqueeze(0).expand(4, -1, -1) + 20)  # their running sums leave the vocab
    with pytest.raises(DTypeError, match="not whole numbers"):
        snn(impulse_input(tokens.to(F64) + 0.5, 4))


def test_bad_inputs_are_named():
    model, _ = _vit()
    with pytest.raises(ConversionError, match="family must be 'vit' or 'roberta', got 'bert'"):
        convert_spikezip_qann(model, "bert")
    with pytest.raises(ConversionError, match=r"blocks\.0\.attn is a SpikeZIP-TF vit attention"):
        convert_spikezip_qann(model, "roberta")
    with pytest.raises(ConversionError, match="has no SpikeZIP-TF vit attention"):
        convert_spikezip_qann(nn.Sequential(nn.Linear(2, 2)), "vit")
    broken = _vit()[0]
    del broken.blocks[1].attn.quan_proj
    with pytest.raises(ConversionError, match=r"vit attention blocks\.1\.attn lacks quan_proj"):
        convert_spikezip_qann(broken, "vit")
    broken = _vit()[0]
    del broken.blocks[0].attn.quan_k.s
    with pytest.raises(ConversionError, match=r"blocks\.0\.attn\.quan_k \(Quan\) lacks s"):
        convert_spikezip_qann(broken, "vit")
    broken = _vit()[0]
    broken.blocks[0].mlp.quan2.level = 16
    with pytest.raises(ConversionError, match=r"mlp\.quan2\.level = 16 does not match"):
        convert_spikezip_qann(broken, "vit")
    with pytest.raises(ConfigurationError, match="bias_steps"):
        convert_spikezip_qann(model, "vit", bias_steps=0)
    roberta, tokens, _ = _roberta()
    snn, _ = convert_spikezip_qann(roberta, "roberta", mask_argument="attention_mask")
    with pytest.raises(ConfigurationError, match="pass mask_seq"):
        snn(impulse_input(tokens.to(F64), 2))


def test_digits_example_trains_converts_and_matches_spikingjelly(capsys, monkeypatch):
    """examples/convert_spikezip_digits.py, briefly: a SpikeZIP-layout ViT trained on
    the real digits converts exactly (every test image equal from T = 32), as
    SpikingJelly's recipe does step for step."""
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    import convert_spikezip_digits as example

    result = example.main(["--epochs", "4", "--test-samples", "60"])
    assert result["qann"] > 0.15  # 4 epochs learn well above chance (10 %)
    assert result["exact"][-2:] == [1.0, 1.0]  # T = 32 and 64: every image equal
    assert result["snn"][-1] == result["qann"]
    assert result["exact"][0] == 0.0  # not at T = 1
    versus = result["spikingjelly"]
    assert versus != versus or versus < 1e-12  # nan: SpikingJelly not installed
    assert "| SNN = QANN (% of images) |" in capsys.readouterr().out
