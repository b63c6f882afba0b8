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
from spikezip_models import Roberta, ViT

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


def _spikingjelly_steps(model, family, x, steps, impulse, **kwargs) -> torch.Tensor:
    """SpikingJelly's recipe run step by step (its example's loop): ``x`` at every step
    (tokens: its embedding sends once) or only at the first (``impulse``: images)."""
    converter = pytest.importorskip("spikingjelly.activation_based.ann2snn")
    from spikingjelly.activation_based import functional

    recipe = converter.SpikeZIPTFQANNRecipe(time_steps=steps, model_family=family)
    snn = converter.ModuleConverter(recipe=recipe).convert(model).eval()
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


def test_roberta_without_mask_and_bias_at_the_first_step():
    model, tokens, _ = _roberta()
    snn, _ = convert_spikezip_qann(model, "roberta", bias_steps=1)
    assert not any(isinstance(m, SpreadBias) for m in snn.modules())
    torch.testing.assert_close(snn.accumulate(tokens, STEPS)[-1], model(tokens).detach(), **TIGHT)
    # per step it is not SpikingJelly's (whose biases are spread over 8 steps)
    reference = _spikingjelly_steps(model, "roberta", tokens, STEPS, False)
    assert (snn(impulse_input(tokens.to(F64), STEPS)) - reference).abs().amax() > 1e-3


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
