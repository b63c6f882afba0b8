"""``convert_spikezip_qann`` on Hugging Face RoBERTa / BERT models whose self-attentions
carry SpikeZIP-TF's quantisers: the SNN's running sum against the model's own logits
(padded batches, RoBERTa's padding-aware positions, BERT's token types), against
SpikingJelly 2.0's ``SpikeZIPTFQANNRecipe`` at every step, and what is refused."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spikeflow.conversion import ConversionError, impulse_input
from spikeflow.conversion.spikezip import convert_spikezip_qann
from spikeflow.errors import ConfigurationError, ShapeError
from spikezip_models import Roberta, hugging_face_qann

transformers = pytest.importorskip("transformers", reason="the 'llm' extra (transformers)")

F64 = torch.float64
TIGHT = dict(rtol=0, atol=1e-12)
STEPS = 24


def _batch(pad_id: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [4, 6] and their 0/1 mask: 6, 4 and 2 tokens right-padded, and 3
    left-padded (RoBERTa's positions then start past the padding)."""
    torch.manual_seed(7)
    tokens = torch.randint(3, 40, (4, 6))
    mask = torch.ones(4, 6, dtype=torch.long)
    mask[1, 4:], mask[2, 2:], mask[3, :3] = 0, 0, 0
    tokens[mask == 0] = pad_id
    return tokens, mask


def _logits(model, tokens, mask, types=None) -> torch.Tensor:
    with torch.no_grad():
        out = model(tokens, attention_mask=mask, token_type_ids=types)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def test_roberta_classifier_converts_in_one_call_and_equals_its_logits():
    model = hugging_face_qann("RobertaForSequenceClassification")
    tokens, mask = _batch()
    expected = _logits(model, tokens, mask)
    snn, report = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    sums = snn.accumulate(tokens, STEPS, mask=mask)
    assert (sums[0] - expected).abs().amax() > 0.01  # not settled at the first step
    for t in range(16, STEPS):
        torch.testing.assert_close(sums[t], expected, **TIGHT)
    # the mask and the padding-aware positions matter
    unmasked = _logits(model, tokens, torch.ones_like(mask))
    assert (unmasked - expected).abs().amax() > 1e-3
    entries = {e.name: e for e in report.entries}
    assert entries["roberta.encoder.layer.1.attention.self.attn_quan"].action == "converted"
    assert "bias over the first 8 steps" in entries["classifier.out_proj"].detail
    assert entries["_position_ids"].action == "replaced"
    assert model.roberta.embeddings.word_embeddings.__class__ is nn.Embedding  # not modified


def test_roberta_positions_are_hugging_faces_for_left_padding():
    """Left padding shifts RoBERTa's positions (counted over the real tokens from
    ``padding_idx + 1``); the same tokens without it give other logits."""
    model = hugging_face_qann("RobertaForSequenceClassification", layers=1)
    tokens, mask = _batch()
    snn, _ = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    left = snn.accumulate(tokens[3:], STEPS, mask=mask[3:])[-1]
    torch.testing.assert_close(left, _logits(model, tokens[3:], mask[3:]), **TIGHT)
    shifted = torch.arange(2, 8)[None]  # positions as if there were no padding
    with torch.no_grad():
        other = model(tokens[3:], attention_mask=mask[3:], position_ids=shifted).logits
    assert (other - left).abs().amax() > 1e-3


def test_roberta_encoder_equals_spikingjelly_at_every_step():
    """SpikingJelly's recipe on the same Hugging Face encoder (a ReLU then an unsigned
    quantiser in the MLP, which its recipe needs), run step by step as its example runs
    it (ids and mask at every step). Its attention returns one output where Hugging
    Face 5 unpacks two (``ValueError: not enough values to unpack``): a hook adds None."""
    converter = pytest.importorskip("spikingjelly.activation_based.ann2snn")
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.ann2snn.recipes.spikezip_qann import (
        SpikeZIPRobertaSelfAttention,
    )

    model = hugging_face_qann("RobertaModel", relu_quan=True, add_pooling_layer=False)
    tokens, mask = _batch()
    recipe = converter.SpikeZIPTFQANNRecipe(time_steps=STEPS, model_family="roberta")
    theirs = converter.ModuleConverter(recipe=recipe).convert(model).eval()
    for module in theirs.modules():
        if isinstance(module, SpikeZIPRobertaSelfAttention):
            module.register_forward_hook(lambda m, args, out: (out[0], None))
    functional.set_step_mode(theirs, "s")
    functional.reset_net(theirs)
    with torch.no_grad():
        reference = torch.stack([
            theirs(tokens, attention_mask=mask).last_hidden_state for _ in range(STEPS)
        ])  # fmt: skip
    snn, report = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    ours = snn(impulse_input(tokens.to(F64), STEPS), impulse_input(mask.to(F64), STEPS))
    torch.testing.assert_close(ours, reference, **TIGHT)
    assert ours[1:].abs().amax() > 0.01  # later steps matter
    torch.testing.assert_close(ours.sum(0), _logits(model, tokens, mask), **TIGHT)
    dropped = {e.name: e.detail for e in report.entries if e.source == "nn.ReLU"}
    assert dropped["encoder.layer.0.intermediate.intermediate_act_fn.0"].startswith("dropped")


def test_bert_classifier_with_token_types():
    """A sentence pair: token types 0 then 1 (BERT's second segment) change the answer;
    none given are zeros, as in Hugging Face."""
    model = hugging_face_qann("BertForSequenceClassification", pad_token_id=0)
    tokens, mask = _batch(pad_id=0)
    types = torch.zeros_like(tokens)
    types[:, 3:] = 1
    snn, report = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    assert snn.token_types
    expected = _logits(model, tokens, mask, types)
    sums = snn.accumulate(tokens, STEPS, mask=mask, token_type_ids=types)
    torch.testing.assert_close(sums[-1], expected, **TIGHT)
    plain = _logits(model, tokens, mask)
    assert (plain - expected).abs().amax() > 1e-3
    torch.testing.assert_close(snn.accumulate(tokens, STEPS, mask=mask)[-1], plain, **TIGHT)
    assert {e.name for e in report.entries} >= {"bert.pooler.dense", "bert.pooler.activation"}


def test_without_a_mask():
    model = hugging_face_qann("RobertaForSequenceClassification", layers=1)
    tokens, _ = _batch()
    snn, _ = convert_spikezip_qann(model, "roberta")
    with torch.no_grad():
        expected = model(tokens).logits
    torch.testing.assert_close(snn.accumulate(tokens, STEPS)[-1], expected, **TIGHT)


def test_what_does_not_convert_is_named():
    plain = transformers.RobertaForSequenceClassification(
        transformers.RobertaConfig(
            vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=32, max_position_embeddings=16,
        )
    )  # fmt: skip
    with pytest.raises(
        ConversionError,
        match=r"roberta\.encoder\.layer\.0\.attention\.self \(RobertaSelfAttention\) lacks "
        "query_quan, key_quan, value_quan, attn_quan, after_attn_quan",
    ):
        convert_spikezip_qann(plain, "roberta", mask_argument="attention_mask")
    lm = transformers.RobertaForMaskedLM(plain.config)
    with pytest.raises(ConversionError, match="RobertaForMaskedLM is a Hugging Face model that"):
        convert_spikezip_qann(lm, "roberta")
    model = hugging_face_qann("RobertaForSequenceClassification", layers=1)
    with pytest.raises(ConversionError, match="use family='roberta', not 'vit'"):
        convert_spikezip_qann(model, "vit")
    with pytest.raises(
        ConversionError, match="takes its mask as attention_mask, got mask_argument='mask'"
    ):
        convert_spikezip_qann(model, "roberta", mask_argument="mask")
    for flag in ("output_attentions", "is_decoder", "add_cross_attention"):
        flagged = hugging_face_qann("RobertaModel", layers=1)
        setattr(flagged.config, flag, True)
        with pytest.raises(ConversionError, match=f"config.{flag}=True"):
            convert_spikezip_qann(flagged, "roberta", mask_argument="attention_mask")
    relative = hugging_face_qann("RobertaModel", layers=1)
    relative.config.position_embedding_type = "relative_key"  # a transformers 4 config's
    with pytest.raises(ConversionError, match="position_embedding_type='relative_key'"):
        convert_spikezip_qann(relative, "roberta")
    unpadded = hugging_face_qann("RobertaForSequenceClassification", layers=1, pad_token_id=None)
    with pytest.raises(ConversionError, match=r"roberta\.embeddings \(RobertaEmbeddings\) has no"):
        convert_spikezip_qann(unpadded, "roberta")
    snn, _ = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    tokens, mask = _batch()
    with pytest.raises(ShapeError, match="0/1 attention mask's sequence"):
        snn.accumulate(tokens, 4, mask=mask[:, None, None, :])
    with pytest.raises(ShapeError, match="token types' sequence"):
        snn.accumulate(tokens, 4, mask=mask, token_type_ids=tokens[:, :3])
    own, _ = convert_spikezip_qann(Roberta().to(F64), "roberta")
    with pytest.raises(ConfigurationError, match="only by a Hugging Face model's SNN"):
        own.accumulate(tokens, 4, token_type_ids=torch.zeros_like(tokens))


class _CallsWhole(nn.Module):
    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, tokens, attention_mask):
        return self.hf(tokens, attention_mask=attention_mask).logits


def test_a_hugging_face_model_called_whole_inside_a_module_is_refused_with_advice():
    model = hugging_face_qann("RobertaForSequenceClassification", layers=1)
    with pytest.raises(
        ConversionError,
        match=r"\(in hf\.roberta, RobertaModel\).* hf is a Hugging Face .* pass it to "
        "convert_spikezip_qann itself",
    ):
        convert_spikezip_qann(_CallsWhole(model), "roberta", mask_argument="attention_mask")


def test_text_example_trains_converts_and_is_exact(monkeypatch, capsys):
    """examples/convert_spikezip_roberta_text.py, briefly: a quantised Hugging Face
    RoBERTa classifier trained on lines of CPython's own modules converts in one call,
    every test line's SNN logits equal to the QANN's at the last T and none at T = 1."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    import convert_spikezip_roberta_text as example

    result = example.main(["--train-steps", "20", "--lines", "40", "--test-lines", "12"])
    assert result["exact"][-1] == 1.0 and result["exact"][0] == 0.0
    assert result["snn"][-1] == result["qann"]
    assert "| SNN = QANN (% of lines) |" in capsys.readouterr().out


def test_hugging_faces_own_attention_with_quantisers_attached_is_named():
    """Quantisers set on Hugging Face's own ``RobertaSelfAttention`` (its forward,
    which does not trace and would not call them, unchanged)."""
    from spikezip_models import Quan

    model = hugging_face_qann("RobertaForSequenceClassification", layers=1)
    modeling = transformers.models.roberta.modeling_roberta
    own = modeling.RobertaSelfAttention(model.config).to(F64)
    for name in ("query_quan", "key_quan", "value_quan", "attn_quan", "after_attn_quan"):
        setattr(own, name, Quan())
    model.roberta.encoder.layer[0].attention.self = own
    with pytest.raises(
        ConversionError,
        match=r"trace RobertaForSequenceClassification \(in roberta\.encoder\.layer\.0\."
        r"attention\.self, RobertaSelfAttention\).*own self-attention forward does not trace",
    ):
        convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")


def test_a_mask_needs_eager_attention():
    """Under transformers 5's default ``sdpa`` the model's own forward hands
    ``attention.self`` a boolean mask (None without padding), which SpikeZIP-TF's
    attention adds to its scores: its padding is not masked, so a masked SNN could not
    equal it (1.5 apart on this batch) and is refused; without a mask it converts."""
    model = hugging_face_qann("RobertaForSequenceClassification", attn_implementation="sdpa")
    tokens, mask = _batch()
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    assert (_logits(model, tokens, mask) - _logits(eager, tokens, mask)).abs().amax() > 0.1
    with pytest.raises(ConversionError, match=r"config\._attn_implementation='sdpa'.*'eager'"):
        convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    snn, _ = convert_spikezip_qann(eager, "roberta", mask_argument="attention_mask")
    torch.testing.assert_close(
        snn.accumulate(tokens, STEPS, mask=mask)[-1], _logits(eager, tokens, mask), **TIGHT
    )
    snn, _ = convert_spikezip_qann(model, "roberta")
    expected = _logits(model, tokens, None)
    torch.testing.assert_close(snn.accumulate(tokens, STEPS)[-1], expected, **TIGHT)


def test_bad_inputs_are_named():
    """Ids out of a table's range name the embedding (a sequence longer than the
    position table, a token type past ``type_vocab_size``); ids without a batch and an
    empty batch are refused by shape."""
    model = hugging_face_qann("RobertaForSequenceClassification", layers=1)
    snn, _ = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    long = torch.randint(3, 40, (2, 15))  # RoBERTa's positions 2..16, its table 16 rows
    with pytest.raises(ShapeError, match=r"roberta\.embeddings\.position_embeddings: .*\[0, 16\)"):
        snn.accumulate(long, 4, mask=torch.ones_like(long))
    tokens, mask = _batch()
    with pytest.raises(ShapeError, match=r"roberta\.embeddings\.token_type_embeddings: .*\[0, 2\)"):
        snn.accumulate(tokens, 4, mask=mask, token_type_ids=torch.full_like(tokens, 2))
    with pytest.raises(ShapeError, match=r"roberta\.embeddings\.word_embeddings: .*\[0, 40\)"):
        snn.accumulate(tokens + 40, 4, mask=mask)
    with pytest.raises(ShapeError, match=r"must be \[T, B, L\] .*got \(4, 6\)"):
        snn.accumulate(tokens[0], 4, mask=mask[0])
    with pytest.raises(ShapeError, match=r"at least one sample, got \(4, 0, 6\)"):
        snn.accumulate(tokens[:0], 4, mask=mask[:0])


def test_padding_on_both_sides_and_an_all_padding_row():
    """A row padded on both sides (RoBERTa's positions skip the leading padding), and in
    BERT (whose padding has positions 0..L-1, so its keys differ) a row of padding only,
    every score masked: Hugging Face's ``finfo.min`` swamps the scores, so its attention
    is uniform there (not the unmasked one), and so is the SNN's."""
    for name, pad in (
        ("RobertaForSequenceClassification", 1),
        ("BertForSequenceClassification", 0),
    ):
        model = hugging_face_qann(name, pad_token_id=pad)
        tokens, mask = _batch(pad)
        mask[0, 0] = mask[0, 5] = 0
        mask[2] = 0
        tokens[mask == 0] = pad
        snn, _ = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
        expected = _logits(model, tokens, mask)
        sums = snn.accumulate(tokens, STEPS, mask=mask)
        torch.testing.assert_close(sums[-1], expected, **TIGHT)
    unmasked = _logits(model, tokens[2:3], torch.ones_like(mask[2:3]))
    assert (unmasked - expected[2:3]).abs().amax() > 1e-3


def test_bert_on_a_tokenizer_made_batch_of_sentence_pairs():
    """A ``BertTokenizerFast`` batch (``[CLS] a [SEP] b [SEP]``, its token types and
    mask, padded right then left) given to the SNN as the tokenizer made it."""
    words = (
        "[PAD] [UNK] [CLS] [SEP] [MASK] the a spike neuron fires when its membrane crosses "
        "threshold and resets to zero"
    ).split()
    model = hugging_face_qann(
        "BertForSequenceClassification", vocab_size=len(words), pad_token_id=0
    )
    snn, _ = convert_spikezip_qann(model, "roberta", mask_argument="attention_mask")
    firsts = ["the neuron fires", "a spike crosses threshold", "zero"]
    seconds = ["its membrane", "when", "the spike resets to zero"]
    for side in ("right", "left"):
        tokenizer = transformers.BertTokenizerFast(
            vocab={w: i for i, w in enumerate(words)}, padding_side=side
        )
        batch = tokenizer(firsts, seconds, padding=True, return_tensors="pt")
        assert batch["token_type_ids"].amax() == 1 and batch["attention_mask"].amin() == 0
        with torch.no_grad():
            expected = model(**batch).logits
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        sums = snn.accumulate(ids, STEPS, mask=mask, token_type_ids=types)
        torch.testing.assert_close(sums[-1], expected, **TIGHT)
