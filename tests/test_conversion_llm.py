"""convert_causal_lm: Hugging Face Qwen2/Llama decoder LLMs as spiking models.

Tiny random models (2 layers, hidden 32, 4 query heads sharing 2 key/value heads) in
float64. References: the Hugging Face model itself (exact form, every step), SpikingJelly
2.0's ``Qwen2SNNRecipe`` with the same calibration batches (scales, logits after every
step, generation), the quantised ANN the spikes sum to, a loop written from the
encoder's rule.
"""

from __future__ import annotations

import sys

import pytest
import torch

from spikeflow.conversion import (
    LLMCalibration,
    SignedSpikeEncoder,
    calibrate_causal_lm,
    convert_causal_lm,
)
from spikeflow.conversion.llm_encode import signed_quantize
from spikeflow.errors import ConfigurationError, MissingExtraError, ShapeError

transformers = pytest.importorskip("transformers")

VOCAB = 97


def _config(kind: str, **extra):
    cls = {"qwen2": transformers.Qwen2Config, "llama": transformers.LlamaConfig}[kind]
    sizes = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    heads = dict(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return cls(**sizes, **heads, tie_word_embeddings=False, **extra)


def _model(kind: str = "qwen2", seed: int = 0, **extra):
    torch.manual_seed(seed)
    cls = {"qwen2": transformers.Qwen2ForCausalLM, "llama": transformers.LlamaForCausalLM}[kind]
    if kind == "llama":  # biases on every projection (Qwen2 has q/k/v ones)
        extra = {"attention_bias": True, "mlp_bias": True, **extra}
    model = cls(_config(kind, **extra)).double().eval()
    if kind == "llama":  # Llama's biases start at 0: make them count
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0, 0.05)
    return model


def _batches(seed: int = 1, count: int = 3):
    gen = torch.Generator().manual_seed(seed)
    ones = torch.ones(2, 9, dtype=torch.long)
    ids = [torch.randint(0, VOCAB, (2, 9), generator=gen) for _ in range(count)]
    return [{"input_ids": x, "attention_mask": ones} for x in ids]


def _ids(seed: int = 2, shape=(2, 7)):
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_exact_form_equals_the_float_model_at_every_step(kind):
    model = _model(kind)
    ids = _ids()
    out = convert_causal_lm(model, steps=4)(ids, per_step=True)
    ref = model(ids).logits
    assert out.step_logits.shape == (4, *ref.shape)
    torch.testing.assert_close(out.logits, ref, rtol=0, atol=1e-12)
    for step in out.step_logits:
        torch.testing.assert_close(step, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_spikes_sum_to_the_quantised_model(kind):
    model = _model(kind)
    snn = convert_causal_lm(model, steps=8, calibration=_batches())
    ids = _ids()
    spikes = snn(ids, per_step=True)
    quantized = snn(ids, mode="quantized").logits
    torch.testing.assert_close(spikes.logits, quantized, rtol=0, atol=1e-12)
    torch.testing.assert_close(spikes.step_logits[-1], quantized, rtol=0, atol=1e-12)
    # the early steps are not there yet, the quantised model is close to the float one
    assert (spikes.step_logits[0] - quantized).abs().max() > 1e-3
    assert (quantized - model(ids).logits).abs().max() < 0.2


def _spikingjelly(model, steps):
    pytest.importorskip("spikingjelly.activation_based.ann2snn.recipes.qwen2")
    from spikingjelly.activation_based.ann2snn import ModuleConverter
    from spikingjelly.activation_based.ann2snn.recipes import qwen2 as sj

    config = sj.Qwen2SNNConfig(time_steps=steps, calibration_levels=steps)
    calibration = sj.calibrate_qwen2_snn(model, _batches(), config)
    return ModuleConverter(sj.Qwen2SNNRecipe(calibration, config)).convert(model), calibration


def test_scales_and_logits_at_every_step_equal_spikingjelly():
    from spikingjelly.activation_based import functional as sjf

    model, steps = _model(), 8
    theirs, their_scales = _spikingjelly(model, steps)
    ours = convert_causal_lm(model, steps=steps, calibration=_batches())
    cal = ours.calibration
    assert torch.equal(cal.input_scale, their_scales.input_scale)
    for mine, sj_group in zip(cal.layer_scales, their_scales.layer_scales):
        for site in ("query", "key", "value", "mlp"):
            assert torch.equal(mine[site], sj_group[site]), site
    ids = _ids()
    seen = []
    hook = theirs.norm.register_forward_hook(lambda _m, _i, out: seen.append(out))
    for mode in ("signed_if", "qcfs_sg"):
        sjf.reset_net(theirs)  # SpikingJelly carries its running sums across calls
        final = theirs(ids, encoding_mode=mode).logits
        mine = ours(ids, per_step=True, mode="spikes" if mode == "signed_if" else "quantized")
        # SpikingJelly runs the attention and the logits in float32
        torch.testing.assert_close(mine.logits, final.double(), rtol=0, atol=1e-6)
        if mode == "signed_if":
            their_steps = model.lm_head(seen[-1].cumsum(0))
            torch.testing.assert_close(mine.step_logits, their_steps, rtol=0, atol=1e-6)
    hook.remove()
    sjf.reset_net(theirs)
    greedy = theirs.generate(ids, max_new_tokens=4)
    assert torch.equal(ours.generate(ids, 4), greedy)
    # an instruct checkpoint's generation_config: SpikingJelly's generate stays greedy
    # (it reads no config), ours samples as transformers' does unless told otherwise
    model.generation_config.update(do_sample=True, temperature=0.7, repetition_penalty=1.5)
    torch.manual_seed(0)
    assert not torch.equal(ours.generate(ids, 4), greedy)
    assert torch.equal(ours.generate(ids, 4, do_sample=False, repetition_penalty=1.0), greedy)


def test_generation_with_the_kv_cache_equals_without():
    model = _model()
    snn = convert_causal_lm(model, steps=8, calibration=_batches())
    ids = _ids()
    with_cache = snn.generate(ids, 5)
    assert with_cache.shape == (2, 12)
    assert torch.equal(with_cache, snn.generate(ids, 5, use_cache=False))
    # the exact form generates the float model's tokens
    exact = convert_causal_lm(model, steps=2)
    assert torch.equal(
        exact.generate(ids, 5), model.generate(ids, max_new_tokens=5, do_sample=False)
    )
    # prefix then continuation: the summed logits of the full sequence
    first = snn(ids[:, :4], use_cache=True)
    assert first.past_key_values.length == 4
    rest = snn(ids[:, 4:], past_key_values=first.past_key_values, use_cache=True)
    assert rest.past_key_values.length == 7
    torch.testing.assert_close(rest.logits, snn(ids).logits[:, 4:], rtol=0, atol=1e-12)


def test_left_padding_leaves_the_other_tokens_alone():
    model = _model()
    snn = convert_causal_lm(model, steps=8, calibration=_batches())
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    padded = snn(ids, mask).logits
    assert torch.isfinite(padded).all()
    torch.testing.assert_close(padded[1, 3:], snn(ids[1:, 3:]).logits[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(padded[0], snn(ids[:1]).logits[0], rtol=0, atol=1e-12)
    exact = convert_causal_lm(model, steps=2)(ids, mask).logits
    positions = (mask.cumsum(-1) - 1).clamp_min(0)  # as generate() numbers them
    ref = model(ids, attention_mask=mask, position_ids=positions).logits
    torch.testing.assert_close(exact[1, 3:], ref[1, 3:], rtol=0, atol=1e-12)


def test_calibration_skips_padding_and_round_trips():
    model = _model()
    ids = _ids(shape=(1, 6))
    padded = torch.cat([torch.full((1, 3), 5), ids], 1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 6, dtype=torch.long)], 1)
    a = calibrate_causal_lm(model, [{"input_ids": padded, "attention_mask": mask}], levels=4)
    b = calibrate_causal_lm(model, [ids], levels=4)
    assert a.tokens == b.tokens == 6
    torch.testing.assert_close(a.input_scale, b.input_scale, rtol=0, atol=1e-15)
    for x, y in zip(a.layer_scales, b.layer_scales):
        for site in x:
            torch.testing.assert_close(x[site], y[site], rtol=1e-12, atol=0)
    # the threshold is the maximum |embedding| per channel over the tokens, / levels
    emb = model.model.embed_tokens(ids)[0]
    torch.testing.assert_close(b.input_scale, emb.abs().amax(0) / 4, rtol=0, atol=0)
    back = LLMCalibration.from_state_dict(b.state_dict())
    assert back.levels == 4 and back.tokens == 6
    assert all(
        torch.equal(back.layer_scales[1][s], b.layer_scales[1][s]) for s in back.layer_scales[1]
    )


def test_quantile_calibration_equals_spikingjelly_and_torch_quantile():
    pytest.importorskip("spikingjelly.activation_based.ann2snn.recipes.qwen2")
    from spikingjelly.activation_based.ann2snn.recipes import qwen2 as sj

    model = _model()
    ours = calibrate_causal_lm(model, _batches(), levels=8, quantile=0.9)
    assert ours.quantile == 0.9
    # SpikingJelly keeps a reservoir of 4096 sampled tokens: all 54 here
    config = sj.Qwen2SNNConfig(time_steps=8, calibration_levels=8, calibration_quantile=0.9)
    theirs = sj.calibrate_qwen2_snn(model, _batches(), config)
    # SpikingJelly keeps the samples in float32 (to 1e-5)
    torch.testing.assert_close(ours.input_scale, theirs.input_scale.double(), rtol=1e-5, atol=0)
    for mine, group in zip(ours.layer_scales, theirs.layer_scales):
        for site in ("query", "key", "value", "mlp"):
            torch.testing.assert_close(mine[site], group[site].double(), rtol=1e-5, atol=0)
    emb = torch.cat([model.model.embed_tokens(b["input_ids"]).flatten(0, 1) for b in _batches()])
    expected = torch.quantile(emb.abs().detach(), 0.9, dim=0) / 8
    torch.testing.assert_close(ours.input_scale, expected, rtol=1e-12, atol=0)
    assert (ours.input_scale < calibrate_causal_lm(model, _batches(), levels=8).input_scale).all()
    with pytest.raises(ConfigurationError, match=r"quantile must be a number in \(0, 1\]"):
        calibrate_causal_lm(model, _batches(), quantile=0.0)


def _encoder_loop(x, theta, steps):
    """Per value: IF neurons on relu(±x)/T, membrane from 0, fire at v + θ/2 >= θ, soft
    reset; counts that miss round(|x|/θ) clipped to T fire in the first steps."""
    out = torch.zeros(steps, *x.shape, dtype=x.dtype)
    for idx in torch.cartesian_prod(*[torch.arange(n) for n in x.shape]).reshape(-1, x.dim()):
        idx = tuple(idx.tolist())
        th = float(theta[idx[-1]])
        for sign in (1.0, -1.0):
            value, v, count = max(sign * float(x[idx]), 0.0), 0.0, 0
            train = []
            for _ in range(steps):
                v += value / steps
                fire = v + 0.5 * th - th >= 0
                v -= th * fire
                count += fire
                train.append(float(fire))
            wanted = min(round(value / th), steps)
            if count != wanted:
                train = [float(t < wanted) for t in range(steps)]
            for t in range(steps):
                out[(t, *idx)] += sign * train[t] * th
    return out


def test_encoder_against_its_rule_the_quantiser_and_spikingjelly():
    gen = torch.Generator().manual_seed(3)
    theta = torch.rand(5, generator=gen, dtype=torch.float64) + 0.2
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64) * 4
    x[0, 0] = 2.5 * theta[0]  # a tie: round sends it to 2
    x[1, 1] = -20 * theta[1]  # beyond T: clipped
    steps = 6
    spikes = SignedSpikeEncoder(theta, steps)(x)
    torch.testing.assert_close(spikes, _encoder_loop(x, theta, steps), rtol=0, atol=1e-12)
    torch.testing.assert_close(spikes.sum(0), signed_quantize(x, theta, steps), rtol=0, atol=1e-12)
    assert spikes.sum(0)[0, 0] == 2 * theta[0] and spikes.sum(0)[1, 1] == -steps * theta[1]
    assert set((spikes / theta).abs().unique().tolist()) <= {0.0, 1.0}
    qcfs = pytest.importorskip("spikingjelly.activation_based.ann2snn.qcfs")
    theirs = qcfs.SignedQCFSSequenceEncoder(theta, steps).encode(x)
    torch.testing.assert_close(spikes, theirs, rtol=0, atol=1e-12)


def test_error_shrinks_with_more_levels():
    model = _model()
    ids = _ids()
    ref = model(ids).logits
    errors = []
    for levels in (4, 32):  # T = 2 levels: room for values beyond the calibration's
        snn = convert_causal_lm(model, steps=2 * levels, calibration=_batches(), levels=levels)
        errors.append(float((snn(ids).logits - ref).abs().max().detach()))
    assert errors[1] < errors[0] / 4


def test_refusals_name_what_is_wrong(monkeypatch):
    model = _model()
    with pytest.raises(ConfigurationError, match="PreTrainedModel"):
        convert_causal_lm(torch.nn.Linear(2, 2))
    sizes = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    heads = dict(num_attention_heads=4, num_key_value_heads=2)
    mistral = transformers.MistralForCausalLM(transformers.MistralConfig(**sizes, **heads)).eval()
    with pytest.raises(ConfigurationError, match=r"'mistral' is not supported.*qwen2, llama"):
        convert_causal_lm(mistral)
    with pytest.raises(ConfigurationError, match="hidden_act"):
        convert_causal_lm(_model(hidden_act="gelu"))
    with pytest.raises(ConfigurationError, match="sliding-window"):
        convert_causal_lm(_model(use_sliding_window=True, sliding_window=4))
    with_norms = _model()
    with_norms.model.layers[1].self_attn.q_norm = torch.nn.LayerNorm(8)  # as Qwen3's
    with pytest.raises(ConfigurationError, match=r"layer 1 attention has unsupported .*q_norm"):
        convert_causal_lm(with_norms)
    no_up = _model()
    del no_up.model.layers[0].mlp.up_proj
    with pytest.raises(ConfigurationError, match=r"layer 0 has no nn\.Linear mlp\.up_proj"):
        convert_causal_lm(no_up)
    no_norm = _model()
    no_norm.model.layers[0].post_attention_layernorm = None
    with pytest.raises(ConfigurationError, match="layer 0 has no post_attention_layernorm"):
        convert_causal_lm(no_norm)
    with pytest.raises(ConfigurationError, match=r"model\.eval\(\)"):
        convert_causal_lm(_model().train())
    with pytest.raises(ConfigurationError, match=r"levels \(8\) exceed steps \(4\)"):
        convert_causal_lm(model, steps=4, calibration=_batches(), levels=8)
    cal = calibrate_causal_lm(model, _batches(), levels=4)
    short = LLMCalibration(cal.input_scale, cal.layer_scales[:1], 4, cal.tokens)
    with pytest.raises(ConfigurationError, match="calibration has 1 layers, the model 2"):
        convert_causal_lm(model, steps=4, calibration=short)
    snn = convert_causal_lm(model, steps=4, calibration=cal)
    ids = _ids()
    with pytest.raises(ShapeError, match=r"attention_mask must be \[B, P \+ S\] = \[2, 7\]"):
        snn(ids, torch.ones(2, 6))
    with pytest.raises(ConfigurationError, match="mode must be one of"):
        snn(ids, mode="rate")
    with pytest.raises(ConfigurationError, match="needs a calibration"):
        convert_causal_lm(model, steps=4)(ids, mode="spikes")
    with pytest.raises(ShapeError, match="input_ids"):
        snn(ids.double())
    with pytest.raises(ConfigurationError, match="calibration batch"):
        calibrate_causal_lm(model, [])
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingExtraError, match=r"spikeflow\[llm\]"):
        convert_causal_lm(model)
