"""convert_causal_lm on the model variants a real checkpoint brings, against Hugging Face.

Rotary scalings (Llama 3, linear, dynamic NTK, YaRN), biases on every projection, a
head size other than hidden/heads, tied embeddings, attention dropout in the config,
eager attention, one key/value head, float32; the attention layout of transformers
4.45 (a rotary module in each attention, no ``scaling``); greedy generation that stops
at the end-of-sequence token as ``transformers``' ``generate``; calibration files;
encoders on the model's device; arguments that would be ignored.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from spikeflow.conversion import LLMCalibration, calibrate_causal_lm, convert_causal_lm
from spikeflow.conversion.llm import SpikingCausalLM, SpikingKVCache
from spikeflow.errors import ConfigurationError, ShapeError

transformers = pytest.importorskip("transformers")

VOCAB = 97
SIZES = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2)
HEADS = dict(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
CLASSES = {
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
}


def _model(kind: str = "qwen2", dtype=torch.float64, **extra):
    torch.manual_seed(0)
    config_cls, model_cls = CLASSES[kind]
    config = config_cls(**{**SIZES, **HEADS, "tie_word_embeddings": False, **extra})
    model = model_cls(config).to(dtype).eval()
    with torch.no_grad():  # biases that count (Llama's start at 0)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
    return model


def _ids(shape=(3, 9), seed: int = 2):
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def _batches():
    return [_ids((2, 12), seed) for seed in (5, 6)]


LLAMA3 = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0)
VARIANTS = {
    "llama3 rope_scaling": (
        "llama",
        dict(rope_scaling={**LLAMA3, "original_max_position_embeddings": 8}),
    ),
    "linear rope_scaling": ("llama", dict(rope_scaling=dict(rope_type="linear", factor=2.0))),
    # positions beyond max_position_embeddings: the frequencies are recomputed
    "dynamic rope_scaling": (
        "llama",
        dict(rope_scaling=dict(rope_type="dynamic", factor=2.0), max_position_embeddings=8),
    ),
    "yarn rope_scaling": (
        "llama",
        dict(rope_scaling=dict(rope_type="yarn", factor=8.0, original_max_position_embeddings=8)),
    ),
    "llama biases, head_dim 16": ("llama", dict(attention_bias=True, mlp_bias=True, head_dim=16)),
    "tied embeddings": ("qwen2", dict(tie_word_embeddings=True)),
    "attention dropout": ("qwen2", dict(attention_dropout=0.5)),
    "one key/value head": ("qwen2", dict(num_key_value_heads=1)),
    "rms_norm_eps 0.5": ("qwen2", dict(rms_norm_eps=0.5)),
    "eager attention": ("llama", dict(attn_implementation="eager")),
    "hidden_act swish (silu's alias)": ("qwen2", dict(hidden_act="swish")),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_equal_hugging_face(variant):
    kind, extra = VARIANTS[variant]
    model = _model(kind, **extra)
    ids = _ids((2, 20))  # 20 positions: beyond the dynamic/yarn models' 8
    ref = model(ids).logits.detach()
    exact = convert_causal_lm(model, steps=3)
    # Hugging Face's eager attention takes its softmax in float32
    tolerance = 1e-7 if "eager" in variant else 1e-12
    torch.testing.assert_close(exact(ids).logits, ref, rtol=0, atol=tolerance)
    snn = convert_causal_lm(model, steps=8, calibration=_batches())
    out = snn(ids)
    torch.testing.assert_close(out.logits, snn(ids, mode="quantized").logits, rtol=0, atol=1e-12)
    assert (out.logits - ref).abs().max() < 0.5 * ref.abs().max()
    if extra.get("tie_word_embeddings"):
        assert snn.lm_head.weight is snn.embed_tokens.weight


def test_float32_equals_hugging_face_and_the_float64_form():
    model = _model("qwen2", dtype=torch.float32)
    ids = _ids()
    exact = convert_causal_lm(model, steps=4)(ids, per_step=True)
    ref = model(ids).logits.detach()
    for step in exact.step_logits:
        torch.testing.assert_close(step, ref, rtol=0, atol=1e-6)
    spikes = convert_causal_lm(model, steps=8, calibration=_batches())(ids).logits
    wide = copy.deepcopy(model).double()
    spikes64 = convert_causal_lm(wide, steps=8, calibration=_batches())(ids).logits
    assert spikes.dtype == torch.float32
    # float32 rounding could move a value across a boundary of the quantiser (a count
    # off by one); on these inputs none does, and the rest agrees to float32 rounding
    torch.testing.assert_close(spikes.double(), spikes64, rtol=0, atol=1e-5)


def test_transformers_445_attention_layout():
    """transformers 4.45-4.47: each attention keeps a rotary module (unused: the model's
    passes the position embeddings) and has no ``scaling`` (it divides by sqrt(head_dim));
    checked against transformers 4.45.2 itself outside the suite (docs/conversion.md)."""
    model = _model("qwen2")
    ids = _ids()
    ref = model(ids).logits.detach()
    for layer in model.model.layers:
        attn = layer.self_attn
        attn.rotary_emb = type(model.model.rotary_emb)(config=model.config)
        del attn.scaling
        attn.head_dim = model.config.hidden_size // model.config.num_attention_heads
    torch.testing.assert_close(
        convert_causal_lm(model, steps=2)(ids).logits, ref, rtol=0, atol=1e-12
    )


def _hf_generate(model, ids, mask, new, **kwargs):
    return model.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False, **kwargs)


def test_generate_stops_at_eos_as_hugging_face():
    model = _model("qwen2")
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding: three prompts of 9, 6 and 4 tokens
    mask[2, :5] = 0
    exact = convert_causal_lm(model, steps=2)
    free = exact.generate(ids, 6, attention_mask=mask)
    assert torch.equal(free, _hf_generate(model, ids, mask, 6))
    new = free[:, 9:]
    eos = int(new[0, 1])  # row 0 ends at its second token
    assert (new[1:] != eos).all()  # the others run on
    ours = exact.generate(ids, 6, attention_mask=mask, eos_token_id=eos, pad_token_id=0)
    theirs = _hf_generate(model, ids, mask, 6, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(ours, theirs)
    assert (ours[0, 11:] == 0).all() and ours.shape == (3, 15)
    # several ids; every row finishes, so decoding stops before max_new_tokens
    ends = [eos, int(new[1, 0]), int(new[2, 2])]
    ours = exact.generate(ids, 6, attention_mask=mask, eos_token_id=ends, pad_token_id=0)
    assert torch.equal(ours, _hf_generate(model, ids, mask, 6, eos_token_id=ends, pad_token_id=0))
    assert ours.shape[1] < 15
    # the defaults come from the model's generation_config; the pad, from the first eos
    model.generation_config.eos_token_id = eos
    ours = exact.generate(ids, 6, attention_mask=mask)
    assert (ours[0, 11:] == eos).all() and torch.equal(ours[1:], free[1:])
    # spiking: the same stop, with and without the cache
    snn = convert_causal_lm(model, steps=8, calibration=_batches())
    cached = snn.generate(ids, 6, attention_mask=mask, eos_token_id=ends)
    assert torch.equal(
        cached, snn.generate(ids, 6, attention_mask=mask, eos_token_id=ends, use_cache=False)
    )
    with pytest.raises(ConfigurationError, match="eos_token_id must be a token id"):
        exact.generate(ids, 2, eos_token_id=[])
    with pytest.raises(ConfigurationError, match="pad_token_id must be a token id"):
        exact.generate(ids, 2, eos_token_id=3, pad_token_id=-1)


def test_calibration_file_round_trip_atomic_and_bad_files(tmp_path, monkeypatch):
    model = _model("qwen2")
    cal = calibrate_causal_lm(model, _batches(), levels=4, quantile=0.9)
    path = cal.save(tmp_path / "scales.pt")
    back = LLMCalibration.load(path)
    assert (back.levels, back.tokens, back.quantile) == (4, cal.tokens, 0.9)
    assert torch.equal(back.input_scale, cal.input_scale)
    for mine, theirs in zip(back.layer_scales, cal.layer_scales):
        assert all(torch.equal(mine[s], theirs[s]) for s in theirs)
    ids = _ids()
    torch.testing.assert_close(
        convert_causal_lm(model, 4, back)(ids).logits,
        convert_causal_lm(model, 4, cal)(ids).logits,
        rtol=0,
        atol=0,
    )
    # a write that fails leaves the old file and no temporary one
    before = path.read_bytes()

    def broken(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        calibrate_causal_lm(model, _batches(), levels=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]
    with pytest.raises(ConfigurationError, match=r"calibration file .*missing\.pt does not exist"):
        LLMCalibration.load(tmp_path / "missing.pt")
    short = tmp_path / "short.pt"
    short.write_bytes(before[: len(before) // 2])
    with pytest.raises(ConfigurationError, match=r"short\.pt cannot be loaded \(truncated"):
        LLMCalibration.load(short)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(3)}, foreign)
    with pytest.raises(ConfigurationError, match=r"foreign\.pt is not a spikeflow LLM calibration"):
        LLMCalibration.load(foreign)
    edited = cal.state_dict()
    edited["tensors"] = {**edited["tensors"], "layer.1.key": -edited["tensors"]["layer.1.key"]}
    torch.save(edited, tmp_path / "edited.pt")
    with pytest.raises(ConfigurationError, match=r"edited\.pt: .*scale 'layer\.1\.key' must be"):
        LLMCalibration.load(tmp_path / "edited.pt")
    for key, value, message in (
        ("levels", 0, "levels must be an int >= 1"),
        ("levels", None, r"lacks \['levels'\]"),
        ("quantile", 1.5, r"quantile must be a number in \(0, 1\]"),
        ("format", "other-v9", "has format 'other-v9'"),
    ):
        state = cal.state_dict()
        if value is None:
            del state[key]
        else:
            state[key] = value
        with pytest.raises(ConfigurationError, match=message):
            LLMCalibration.from_state_dict(state)


def test_encoders_follow_the_model_device():
    model = _model("qwen2")
    cal = calibrate_causal_lm(model, _batches(), levels=4)  # made on the CPU
    model.to("meta")  # stands for an accelerator: no data, a device of its own
    snn = convert_causal_lm(model, steps=4, calibration=cal)
    devices = {encoder.scale.device.type for encoder in snn.encoders.values()}
    assert devices == {"meta"}
    assert cal.input_scale.device.type == "cpu"  # the calibration itself stays


def test_calibration_batches_are_moved_to_the_model_device(monkeypatch):
    class Seen(Exception):
        pass

    def record(self, input_ids, attention_mask=None, **kwargs):
        raise Seen(input_ids.device.type, attention_mask.device.type)

    monkeypatch.setattr(SpikingCausalLM, "forward", record)
    model = _model("qwen2").to("meta")  # stands for an accelerator: a device of its own
    ids = _ids((2, 12), 5)  # on the CPU, as a tokenizer gives them
    for batch in (ids, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}):
        with pytest.raises(Seen) as seen:  # meta tensors hold no data: stop at the call
            calibrate_causal_lm(model, batch, levels=4)
        assert seen.value.args == ("meta", "meta")


def test_arguments_that_would_be_ignored_are_refused():
    model = _model("qwen2")
    cal = calibrate_causal_lm(model, _batches(), levels=4)
    with pytest.raises(
        ConfigurationError, match="levels and quantile apply to calibration batches"
    ):
        convert_causal_lm(model, steps=8, calibration=cal, levels=8)
    with pytest.raises(ConfigurationError, match="calibration is None"):
        convert_causal_lm(model, steps=8, quantile=0.9)

    class Unread:
        def __iter__(self):
            raise AssertionError("the calibration ran before the refusal")

    with pytest.raises(ConfigurationError, match=r"levels \(16\) exceed steps \(8\)"):
        convert_causal_lm(model, steps=8, calibration=Unread(), levels=16)


def test_a_foreign_or_mismatched_cache_is_refused():
    model = _model("qwen2")
    snn = convert_causal_lm(model, steps=4)
    ids = _ids()
    theirs = model(ids[:, :4], use_cache=True).past_key_values  # transformers' own cache
    with pytest.raises(ConfigurationError, match=r"SpikingKVCache .* got \w*Cache"):
        snn(ids[:, 4:], past_key_values=theirs)
    ours = snn(ids[:, :4], use_cache=True).past_key_values
    short = SpikingKVCache(ours.layers[:1])
    with pytest.raises(ShapeError, match="past_key_values hold 1 layers, the model 2"):
        snn(ids[:, 4:], past_key_values=short)


@pytest.mark.parametrize(
    ("name", "classes", "extra"),
    [
        ("qwen3", ("Qwen3Config", "Qwen3ForCausalLM"), dict(head_dim=8)),
        ("qwen2_moe", ("Qwen2MoeConfig", "Qwen2MoeForCausalLM"), dict(num_experts=2)),
        ("mistral", ("MistralConfig", "MistralForCausalLM"), {}),
    ],
)
def test_other_families_are_refused_by_name(name, classes, extra):
    config_cls, model_cls = (getattr(transformers, c, None) for c in classes)
    if model_cls is None:
        pytest.skip(f"transformers {transformers.__version__} has no {classes[1]}")
    model = model_cls(config_cls(**{**SIZES, **HEADS, **extra})).eval()
    with pytest.raises(ConfigurationError, match=rf"model_type '{name}' is not supported"):
        convert_causal_lm(model)


def test_one_tensor_or_one_tokenizer_output_is_one_calibration_batch():
    model = _model("qwen2")
    ids = _ids((4, 16))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    reference = calibrate_causal_lm(model, [{"input_ids": ids, "attention_mask": mask}], 4)
    encoded = transformers.BatchEncoding({"input_ids": ids, "attention_mask": mask})
    for single in (encoded, {"input_ids": ids, "attention_mask": mask}):
        cal = calibrate_causal_lm(model, single, levels=4)
        assert cal.tokens == 59 and torch.equal(cal.input_scale, reference.input_scale)
    assert calibrate_causal_lm(model, ids, levels=4).tokens == 64
    with pytest.raises(ShapeError, match=r"calibration batch 1: input_ids must be"):
        calibrate_causal_lm(model, [ids, ids[0]], levels=4)
