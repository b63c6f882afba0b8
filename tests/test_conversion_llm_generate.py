"""SpikingCausalLM.generate's sampling and beam search against Hugging Face's generate.

Tiny random Qwen2 and Llama (2 layers, hidden 32, 4 query heads on 2 key/value heads)
in float64, a left-padded batch of prompts of 9, 6 and 4 tokens. References:
``transformers``' ``model.generate`` after the same ``torch.manual_seed`` (sequences,
processed scores of every step, beam scores), its logits processors, and the
processors' distributions worked out by hand in float64.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from spikeflow.conversion import convert_causal_lm
from spikeflow.conversion.llm import SpikingKVCache
from spikeflow.conversion.llm_filters import (
    apply_epsilon_cutoff,
    apply_eta_cutoff,
    apply_min_new_tokens,
    apply_no_repeat_ngram,
    apply_typical_p,
)
from spikeflow.conversion.llm_generate import (
    apply_min_p,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    check_decoding_options,
    process_scores,
)
from spikeflow.errors import ConfigurationError, ShapeError

transformers = pytest.importorskip("transformers")

VOCAB = 97
SIZES = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2)
HEADS = dict(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def _model(kind: str = "qwen2"):
    torch.manual_seed(0)
    config_cls, model_cls = {
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    }[kind]
    model = model_cls(config_cls(**SIZES, **HEADS, tie_word_embeddings=False)).double().eval()
    with torch.no_grad():  # biases that count (Llama's start at 0)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
    return model


def _prompts():
    ids = torch.randint(0, VOCAB, (3, 9), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding: prompts of 9, 6 and 4 tokens
    mask[2, :5] = 0
    return ids, mask


def _both(model, snn, ids, mask, new, seed=7, **options):
    """Ours and Hugging Face's generate with the same options, each after
    ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    ours = snn.generate(ids, new, attention_mask=mask, output_scores=True, **options)
    torch.manual_seed(seed)
    theirs = model.generate(
        ids, attention_mask=mask, max_new_tokens=new, return_dict_in_generate=True,
        output_scores=True, **options,
    )  # fmt: skip
    return ours, theirs


def _assert_same(ours, theirs, rtol=0.0, atol=1e-6):
    assert ours.sequences.shape == theirs.sequences.shape
    assert torch.equal(ours.sequences, theirs.sequences)
    assert len(ours.scores) == len(theirs.scores)
    for mine, hf in zip(ours.scores, theirs.scores):
        assert mine.dtype == torch.float32
        torch.testing.assert_close(mine, hf, rtol=rtol, atol=atol)


SAMPLING = {
    "default top_k 50": dict(do_sample=True),
    "temperature, top_k, top_p, penalty, 3 each": dict(
        do_sample=True,
        temperature=0.7,
        top_k=20,
        top_p=0.9,
        repetition_penalty=1.3,
        num_return_sequences=3,
    ),
    "min_p, hot, no top_k": dict(do_sample=True, min_p=0.05, temperature=1.5, top_k=0),
    "greedy with a repetition penalty": dict(repetition_penalty=1.5),
    "top_p then min_p": dict(do_sample=True, temperature=3.0, top_p=0.5, min_p=0.6, top_k=0),
}


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
@pytest.mark.parametrize("case", list(SAMPLING))
def test_sampling_draws_hugging_face_tokens(kind, case):
    model = _model(kind)
    snn = convert_causal_lm(model, steps=2)  # exact: the float model's logits
    ids, mask = _prompts()
    options = SAMPLING[case]
    ours, theirs = _both(model, snn, ids, mask, 8, **options)
    _assert_same(ours, theirs)
    assert ours.sequences_scores is None
    # with end-of-sequence ids each row reaches at a different step, and a pad
    new = ours.sequences[:, 9:]
    ends = [int(new[0, 1]), int(new[1, 3])]
    ours, theirs = _both(model, snn, ids, mask, 8, eos_token_id=ends, pad_token_id=5, **options)
    _assert_same(ours, theirs)
    assert (ours.sequences == 5).any()


def test_a_generator_gives_the_global_seed_s_draws_and_other_seeds_differ():
    model = _model()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    torch.manual_seed(11)
    theirs = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=True)
    draws = [
        snn.generate(ids, 10, attention_mask=mask, do_sample=True, generator=g)
        for g in (torch.Generator().manual_seed(11), torch.Generator().manual_seed(12))
    ]
    assert torch.equal(draws[0], theirs)
    assert not torch.equal(draws[0], draws[1])
    # the global generator is left alone when one is given
    torch.manual_seed(3)
    snn.generate(ids, 4, do_sample=True, generator=torch.Generator().manual_seed(1))
    after = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(1))


BEAMS = {
    "4 beams, 2 returned": dict(num_beams=4, num_return_sequences=2),
    "length_penalty 0.5, early_stopping": dict(
        num_beams=3, length_penalty=0.5, early_stopping=True
    ),
    "never, penalty 2, repetition": dict(
        num_beams=3, early_stopping="never", length_penalty=2.0, repetition_penalty=1.2
    ),
    # top_k 1 keeps 2 tokens per beam (transformers: one more than the eos ids)
    "beam sampling": dict(
        num_beams=3, do_sample=True, temperature=0.8, top_k=1, num_return_sequences=3
    ),
}


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
@pytest.mark.parametrize("case", list(BEAMS))
def test_beam_search_gives_hugging_face_sequences_and_scores(kind, case):
    model = _model(kind)
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    ours, theirs = _both(model, snn, ids, mask, 8, **BEAMS[case])
    _assert_same(ours, theirs)
    torch.testing.assert_close(ours.sequences_scores, theirs.sequences_scores, rtol=0, atol=1e-6)
    returned = BEAMS[case].get("num_return_sequences", 1)
    assert ours.sequences.shape[0] == 3 * returned


def test_beam_search_ends_as_hugging_face():
    """End ids that finish beams at different steps: the three ``early_stopping`` modes
    give three different results, a negative length penalty shortens the output."""
    model = _model()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    common = dict(num_beams=3, num_return_sequences=2, pad_token_id=96)
    outputs = []
    for ends, penalty, stopping in (
        ([2, 14, 16], 1.0, False),
        ([2, 14, 16], 1.0, True),
        ([2, 14, 16], 1.0, "never"),
        ([2, 14, 25], -1.0, False),
    ):
        ours, theirs = _both(
            model, snn, ids, mask, 8, eos_token_id=ends, length_penalty=penalty,
            early_stopping=stopping, **common,
        )  # fmt: skip
        _assert_same(ours, theirs)
        assert torch.equal(ours.sequences_scores, theirs.sequences_scores)
        outputs.append(ours.sequences)
    assert len({str(o.tolist()) for o in outputs[:3]}) == 3
    assert outputs[3].shape[1] < 17 and (outputs[3] == 96).any()
    # half the vocabulary ends: transformers keeps (ids + 1) * beams candidates per step
    # (here 100) so that beams can run on when the best ones all end
    evens = dict(num_beams=2, num_return_sequences=2, pad_token_id=96, length_penalty=-0.5)
    ours, theirs = _both(model, snn, ids, mask, 6, eos_token_id=list(range(0, 97, 2)), **evens)
    _assert_same(ours, theirs)
    assert torch.equal(ours.sequences_scores, theirs.sequences_scores)


def test_spiking_modes_decode_the_same_with_and_without_the_cache():
    model = _model()
    batches = [
        torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(s)) for s in (5, 6)
    ]
    snn = convert_causal_lm(model, steps=8, calibration=batches)
    ids, mask = _prompts()
    for options in (
        dict(do_sample=True, temperature=1.3, top_p=0.95, num_return_sequences=2),
        dict(num_beams=3, num_return_sequences=2, length_penalty=0.7),
        dict(num_beams=2, do_sample=True, repetition_penalty=1.2),
    ):
        for mode in ("spikes", "quantized"):
            runs = [
                snn.generate(
                    ids,
                    6,
                    attention_mask=mask,
                    mode=mode,
                    use_cache=cached,
                    output_scores=True,
                    generator=torch.Generator().manual_seed(4)
                    if options.get("do_sample")
                    else None,
                    **options,
                )
                for cached in (True, False)
            ]
            assert torch.equal(runs[0].sequences, runs[1].sequences), (options, mode)
            for a, b in zip(runs[0].scores, runs[1].scores):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # the spikes sum to the quantised model: the same beams
    beams = dict(num_beams=3, attention_mask=mask)
    assert torch.equal(
        snn.generate(ids, 6, **beams), snn.generate(ids, 6, mode="quantized", **beams)
    )


def test_cache_select_follows_the_rows():
    model = _model()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    cache = snn(ids, mask, use_cache=True).past_key_values
    rows = torch.tensor([2, 0, 0])
    picked = cache.select(rows)
    assert isinstance(picked, SpikingKVCache) and picked.length == cache.length
    for (k, v), (k2, v2) in zip(cache.layers, picked.layers):
        assert torch.equal(k2, k[rows]) and torch.equal(v2, v[rows])
    # continuing from the selected cache is continuing those prompts
    nxt = torch.tensor([[4], [5], [6]])
    mask2 = torch.cat([mask[rows], torch.ones_like(nxt)], 1)
    stepped = snn(nxt, mask2, past_key_values=picked).logits
    full = snn(torch.cat([ids[rows], nxt], 1), mask2).logits[:, -1:]
    torch.testing.assert_close(stepped, full, rtol=0, atol=1e-12)


def test_processors_against_hand_computed_distributions():
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0, 1.0]], dtype=torch.float64)
    inf = float("-inf")
    # top-k 2: the largest and everything tied with the second
    assert apply_top_k(scores, 2).tolist() == [[2.0, 1.0, inf, inf, 1.0]]
    assert apply_top_k(scores, 1, keep=3).tolist() == [[2.0, 1.0, inf, inf, 1.0]]
    # softmax: e^2, e, 1, 1/e, e over their sum; top-p keeps the smallest set >= p
    e = torch.e
    probs = torch.tensor([e**2, e, 1, 1 / e, e], dtype=torch.float64)
    probs = probs / probs.sum()
    torch.testing.assert_close(scores.softmax(-1)[0], probs, rtol=0, atol=1e-15)
    # mass outside: 1/e and 1 are 0.026 + 0.072 of it; p = 0.9 drops both, p = 0.95 only 1/e
    assert apply_top_p(scores, 0.9).tolist() == [[2.0, 1.0, inf, inf, 1.0]]
    assert apply_top_p(scores, 0.95).tolist() == [[2.0, 1.0, 0.0, inf, 1.0]]
    assert apply_top_p(scores, 0.5, keep=2).isfinite().sum() == 2  # p(2.0) = 0.53 alone
    # min-p: keep p >= 0.2 * p_max, i.e. score >= 2 + ln 0.2 = 0.39
    assert apply_min_p(scores, 0.2).tolist() == [[2.0, 1.0, inf, inf, 1.0]]
    assert apply_min_p(scores, 0.99, keep=2).isfinite().sum() == 2
    tied = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    assert apply_min_p(tied, 1.0).tolist() == [[1.0, 1.0, inf]]  # p_max itself stays
    torch.testing.assert_close(apply_temperature(scores, 0.5), scores * 2, rtol=0, atol=0)
    # repetition penalty: seen tokens divided (positive) or multiplied (negative), once
    seen = torch.tensor([[3, 0, 0, 1]])
    out = apply_repetition_penalty(scores, seen, 2.0)
    assert out.tolist() == [[1.0, 0.5, 0.0, -2.0, 1.0]]
    # the first ignore[n] positions (left padding) do not count
    out = apply_repetition_penalty(scores, seen, 2.0, ignore=torch.tensor([2]))
    assert out.tolist() == [[1.0, 0.5, 0.0, -1.0, 1.0]]


def test_processors_run_in_hugging_face_order():
    """p = 0.4, 0.3, 0.2, 0.1: top-p 0.75 first drops 0.1 (cumulative 0.1 <= 0.25), then
    min-p 0.4 (below 0.16) nothing more; min-p first would drop 0.1, and top-p on the
    renormalised 0.44, 0.33, 0.22 then 0.22 too."""
    scores = torch.tensor([[0.4, 0.3, 0.2, 0.1]], dtype=torch.float64).log()
    none = torch.tensor([0])
    options = check_decoding_options(8, True, None, 0, 0.75, 0.4)
    out = process_scores(scores, torch.tensor([[0]]), options, none, 1)
    assert out.isfinite().tolist() == [[True, True, True, False]]
    torch.testing.assert_close(out[0, :3], scores[0, :3], rtol=0, atol=0)
    # the repetition penalty comes first: token 0 seen, log 0.4 * 3 = log 0.064, which
    # top-p then drops (0.064 / 0.664 <= 0.25 with 0.1 / 0.664)
    options = check_decoding_options(8, True, None, 0, 0.75, None, 3.0)
    out = process_scores(scores, torch.tensor([[0]]), options, none, 1)
    assert out.isfinite().tolist() == [[False, True, True, False]]


def test_processors_equal_hugging_face_ones():
    proc = pytest.importorskip("transformers.generation.logits_process")
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 50, generator=gen, dtype=torch.float64) * 3
    scores[0, :5] = scores[0, 5]  # ties
    tokens = torch.randint(0, 50, (4, 12), generator=gen)
    ignore = torch.tensor([0, 3, 12, 5])
    pairs = [
        (apply_top_k(scores, 7, 2), proc.TopKLogitsWarper(7, min_tokens_to_keep=2)),
        (apply_top_p(scores, 0.8, 3), proc.TopPLogitsWarper(0.8, min_tokens_to_keep=3)),
        (apply_min_p(scores, 0.1, 2), proc.MinPLogitsWarper(0.1, min_tokens_to_keep=2)),
        (apply_temperature(scores, 0.3), proc.TemperatureLogitsWarper(0.3)),
        (
            apply_repetition_penalty(scores, tokens, 1.7, ignore),
            proc.RepetitionPenaltyLogitsProcessor(1.7, prompt_ignore_length=ignore),
        ),
    ]
    for ours, theirs in pairs:
        assert torch.equal(ours, theirs(tokens, scores.clone()))


def test_options_that_would_be_ignored_or_are_unknown_are_refused():
    snn = convert_causal_lm(_model(), steps=2)
    ids, _ = _prompts()
    refusals = [
        (dict(top_h=0.9), r"unsupported option\(s\) \['top_h'\]"),
        (dict(typical_p=0.9), "typical_p only apply when sampling"),
        (dict(do_sample=True, typical_p=0.0), r"typical_p must be in \(0, 1\]"),
        (dict(do_sample=True, epsilon_cutoff=1.0), r"epsilon_cutoff must be in \[0, 1\)"),
        (dict(do_sample=True, eta_cutoff=-0.1), r"eta_cutoff must be in \[0, 1\]"),
        (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size must be an integer >= 0"),
        (dict(min_new_tokens=1.5), "min_new_tokens must be an integer >= 0"),
        (dict(temperature=0.7), "temperature only apply when sampling"),
        (dict(top_k=5, generator=torch.Generator()), "top_k, generator only apply"),
        (dict(length_penalty=0.5), "length_penalty only apply to beam search"),
        (dict(num_return_sequences=2), "greedy decoding would repeat"),
        (dict(num_beams=2, num_return_sequences=3), r"num_return_sequences \(3\) must be <="),
        (dict(do_sample=True, temperature=0.0), r"temperature must be in \(0"),
        (dict(do_sample=True, top_p=1.5), r"top_p must be in \[0, 1\]"),
        (dict(do_sample=True, top_k=-1), "top_k must be an integer >= 0"),
        (dict(do_sample=True, min_p=-0.1), "min_p must be in"),
        (dict(repetition_penalty=0), r"repetition_penalty must be in \(0"),
        (dict(num_beams=2, length_penalty=float("nan")), "length_penalty must be a finite"),
        (dict(num_beams=0), "num_beams must be an integer >= 1"),
        (dict(num_beams=2, early_stopping="sometimes"), "early_stopping must be True"),
        (dict(num_beams=2, early_stopping=1), "early_stopping must be True, False or 'never'"),
        (dict(do_sample=1), "do_sample must be True or False"),
        (dict(do_sample=True, generator=3), "generator must be a torch.Generator"),
    ]
    for options, message in refusals:
        with pytest.raises(ConfigurationError, match=message):
            snn.generate(ids, 2, **options)
    # 0 as well: transformers' generate refuses it ("must be greater than 0").
    for count in (-1, 0):
        with pytest.raises(ConfigurationError, match="max_new_tokens must be an integer >= 1"):
            snn.generate(ids, count)


def test_prompts_that_cannot_be_continued_are_refused_by_name():
    """Where Hugging Face's generate crashes deep inside (an empty prompt, a pad id
    outside the embedding), warns and continues after padding (right padding) or never
    ends (an eos id outside the vocabulary), ours refuses before running the model."""
    snn = convert_causal_lm(_model(), steps=2)
    ids, mask = _prompts()
    right = mask.clone()
    right[1] = 1
    right[1, -2:] = 0  # right padding: the new tokens would follow two pads
    empty_row = torch.ones_like(mask)
    empty_row[2] = 0
    refusals = [
        (dict(input_ids=ids[:, :0]), ShapeError, r"at least one token, got \[3, 0\]"),
        (dict(input_ids=ids[:0]), ShapeError, r"at least one prompt .* got \[0, 9\]"),
        (dict(attention_mask=mask[:, 1:]), ShapeError, r"attention_mask must be \[B, S\]"),
        (dict(attention_mask=right), ShapeError, r"rows \[1\] end with padding"),
        (dict(attention_mask=empty_row), ShapeError, r"rows \[2\] end with padding"),
        (dict(eos_token_id=[3, VOCAB]), ConfigurationError, r"eos_token_id \[97\] outside"),
        (dict(eos_token_id=3, pad_token_id=VOCAB + 5), ConfigurationError, "pad_token_id 102"),
        (
            dict(input_ids=ids.to("meta"), do_sample=True, generator=torch.Generator()),
            ConfigurationError,
            "generator is on cpu, input_ids on meta",
        ),
    ]
    for options, error, message in refusals:
        options = {"input_ids": ids, "attention_mask": mask, **options}
        with pytest.raises(error, match=message):
            snn.generate(max_new_tokens=3, **options)
    # the same pad id is fine where no eos id could make a sequence reach it
    assert snn.generate(ids, 2, attention_mask=mask, pad_token_id=VOCAB + 5).shape == (3, 11)


EDGES = {
    "1 new token, beams": (dict(num_beams=3, num_return_sequences=3), 1),
    "prompts of 1 token, beam sampling": (dict(num_beams=2, do_sample=True), 4),
    "top_k above the vocabulary, 2 each": (
        dict(do_sample=True, top_k=500, num_return_sequences=2),
        4,
    ),
    "tiny temperature": (dict(do_sample=True, temperature=1e-4), 4),
    # top_k 1 keeps as many tokens as there are eos ids + 1 (2 without)
    "top_k 1 then min_p, beams": (dict(do_sample=True, top_k=1, min_p=0.3, num_beams=2), 4),
    "no cache, beams with a penalty": (
        dict(num_beams=2, repetition_penalty=1.4, use_cache=False),
        4,
    ),
}


@pytest.mark.parametrize("case", list(EDGES))
def test_edge_cases_give_hugging_face_tokens_in_float32(case):
    """Float32 (the suite's other tests run float64), one row padded up to its last
    token, batch sizes 1 and 3, end ids hit at the first new token (pad: the first one)."""
    model = _model().float()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    mask[1, :-1] = 0  # a prompt of one token after 8 pads
    options, new = EDGES[case]
    # float32 logits to 1e-5 (a temperature scales them and their rounding)
    tolerance = dict(rtol=0.0, atol=1e-5 / options.get("temperature", 1.0))
    if case.startswith("prompts of 1"):
        ids, mask = ids[:, -1:], mask[:, -1:]
    ours, theirs = _both(model, snn, ids, mask, new, **options)
    _assert_same(ours, theirs, **tolerance)
    first = snn.generate(ids, 1, attention_mask=mask)[:, -1].tolist()
    for rows in (slice(0, 1), slice(0, 3)):
        ours, theirs = _both(
            model, snn, ids[rows], mask[rows], new, eos_token_id=first[rows], **options
        )
        _assert_same(ours, theirs, **tolerance)
        if options.get("num_beams"):
            torch.testing.assert_close(
                ours.sequences_scores, theirs.sequences_scores, rtol=0, atol=1e-5
            )


def _hf(model, ids, mask, seed=7, **options):
    torch.manual_seed(seed)
    return model.generate(
        ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True, **options
    )


def test_a_checkpoint_s_generation_config_decodes_as_transformers():
    """An instruct checkpoint's generation_config (sampling with temperature, top-k,
    top-p, a repetition penalty, its own length and eos id) applies where the call
    leaves an option unset, as in transformers: the same tokens and scores after the
    same seed; what the call gives wins; beam options from the config; the default
    lengths."""
    model = _model()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    config = model.generation_config
    config.update(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.05)
    config.update(max_new_tokens=5, length_penalty=0.5)  # ignored without beams, as in HF
    torch.manual_seed(7)
    ours = snn.generate(ids, attention_mask=mask, output_scores=True)
    _assert_same(ours, _hf(model, ids, mask))
    assert ours.sequences.shape[1] == 9 + 5
    greedy = snn.generate(ids, attention_mask=mask, do_sample=False)
    assert not torch.equal(ours.sequences, greedy)  # the config made it sample
    # given options win: greedy (the config's penalty still applies), 3 tokens, an eos id
    given = dict(do_sample=False, max_new_tokens=3, eos_token_id=int(greedy[1, 10]))
    torch.manual_seed(7)
    _assert_same(snn.generate(ids, attention_mask=mask, output_scores=True, **given),
                 _hf(model, ids, mask, **given))  # fmt: skip
    assert not torch.equal(greedy, snn.generate(ids, attention_mask=mask, do_sample=False,
                                                repetition_penalty=1.0))  # fmt: skip
    # beams from the config, with its length penalty, early stopping and return count
    config.update(do_sample=False, num_beams=3, early_stopping=True, num_return_sequences=2)
    ours, theirs = snn.generate(ids, attention_mask=mask, output_scores=True), _hf(model, ids, mask)
    assert ours.sequences.shape[0] == 6 and torch.equal(ours.sequences, theirs.sequences)
    torch.testing.assert_close(ours.sequences_scores, theirs.sequences_scores, rtol=0, atol=1e-6)
    # the rarer options from the config: sampling with typical-p, an n-gram ban
    config.update(num_beams=1, num_return_sequences=1, do_sample=True, typical_p=0.6)
    config.update(no_repeat_ngram_size=1, top_k=0)
    torch.manual_seed(7)
    ours = snn.generate(ids, attention_mask=mask, output_scores=True)
    _assert_same(ours, _hf(model, ids, mask))
    assert torch.isinf(torch.stack(ours.scores)).any()


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default `max_length`")
def test_lengths_from_the_generation_config_and_transformers_default():
    model = _model()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    ids, mask = ids[:, :4], torch.ones(3, 4, dtype=torch.long)  # no eos: the full length
    cases = [
        dict(),  # 20 new tokens
        dict(max_length=11),  # the whole sequence, prompt included
        dict(max_length=11, max_new_tokens=2),  # max_new_tokens first
    ]
    for settings in cases:
        model.generation_config.update(**{"max_length": None, "max_new_tokens": None, **settings})
        ours = snn.generate(ids, attention_mask=mask)
        theirs = model.generate(ids, attention_mask=mask)
        assert torch.equal(ours, theirs), settings
    assert snn.generate(ids).shape == (3, 4 + 2) and ours.shape == (3, 4 + 2)
    model.config.max_position_embeddings = 10  # 20 new tokens, within the positions
    model.generation_config.update(max_length=None, max_new_tokens=None)
    assert snn.generate(ids).shape == (3, 10)
    model.generation_config.update(max_length=4)
    with pytest.raises(ConfigurationError, match=r"max_length \(4, prompt included\) leaves no"):
        snn.generate(ids)
    # A config's max_new_tokens=0 (set as an attribute: update() validates) is refused as
    # a given 0 is, named as the config's; transformers' generate refuses it too.
    model.generation_config.update(max_length=None)
    model.generation_config.max_new_tokens = 0
    with pytest.raises(ConfigurationError, match=r">= 1, got 0 \(max_new_tokens: from the model"):
        snn.generate(ids)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(ids, attention_mask=torch.ones_like(ids))


def test_a_config_s_options_generate_lacks_are_warned_about_by_name():
    model = _model()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    config = model.generation_config
    config.update(suppress_tokens=[3], typical_p=0.9)  # typical_p: ignored, not sampling
    with pytest.warns(UserWarning, match=r"sets suppress_tokens=\[3\], which") as caught:
        snn.generate(ids, 2, attention_mask=mask)
    assert caught[0].filename == __file__  # points at the call
    config.update(suppress_tokens=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        snn.generate(ids, 2, attention_mask=mask)
        config.update(token_healing=False)  # transformers' no-op value: no warning
        snn.generate(ids, 2, attention_mask=mask)
    # transformers applies these too: a watermark changes its tokens, max_time may end
    # decoding early, token healing rewrites the prompt
    plain = model.generate(ids, attention_mask=mask, max_new_tokens=6)
    config.update(watermarking_config={"bias": 4.0}, max_time=60.0, token_healing=True)
    for name in ("watermarking_config=", "max_time=60.0", "token_healing=True"):
        with pytest.warns(UserWarning, match=f"sets .*{name}.*which transformers"):
            snn.generate(ids, 2, attention_mask=mask)
    config.update(max_time=None, token_healing=None)
    marked = model.generate(ids, attention_mask=mask, max_new_tokens=6)
    assert not torch.equal(plain, marked)


def test_rarer_processors_equal_hugging_face_ones_and_do_something():
    proc = pytest.importorskip("transformers.generation.logits_process")
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 50, generator=gen) * 3  # float32, as decoding runs them
    scores[1, :6] = scores[1, 6]  # ties
    tokens = torch.randint(0, 6, (4, 14), generator=gen)  # few ids: n-grams repeat
    eos = torch.tensor([3, 7])
    pairs = [
        (apply_typical_p(scores, 0.7, 2), proc.TypicalLogitsWarper(0.7, min_tokens_to_keep=2)),
        (apply_typical_p(scores, 0.01, 3), proc.TypicalLogitsWarper(0.01, min_tokens_to_keep=3)),
        (
            apply_epsilon_cutoff(scores, 0.02, 3),
            proc.EpsilonLogitsWarper(0.02, min_tokens_to_keep=3),
        ),
        (apply_eta_cutoff(scores, 0.05, 2), proc.EtaLogitsWarper(0.05, min_tokens_to_keep=2)),
        (apply_no_repeat_ngram(scores, tokens, 3), proc.NoRepeatNGramLogitsProcessor(3)),
        (
            apply_min_new_tokens(scores, eos, 3, 5),
            proc.MinNewTokensLengthLogitsProcessor(11, 5, eos),
        ),
    ]
    for ours, theirs in pairs:
        expected = theirs(tokens, scores.clone())
        assert torch.equal(ours, expected)
        dropped = torch.isinf(ours)
        assert dropped.any() and not dropped.all(-1).any()  # each filters, none empties a row
    assert torch.equal(apply_min_new_tokens(scores, eos, 5, 5), scores)  # enough new tokens
    # by hand: p = 1/2, 1/4, 1/8, 1/8 (exact in float32), entropy 1.75 bits, so |-log2 p - H|
    # = 0.75, 0.25, 1.25, 1.25 bits: token 1 first, then 0. A mass the kept tokens reach
    # exactly keeps no more (0.25: token 1 alone; 0.75: tokens 0 and 1)
    halves = torch.tensor([[3.0, 2.0, 1.0, 1.0]]) * math.log(2)
    for mass, kept in ((0.25, [1]), (0.75, [0, 1]), (0.8, [0, 1, 2, 3])):
        ours = apply_typical_p(halves, mass)
        assert torch.isfinite(ours[0]).nonzero().flatten().tolist() == kept, mass
        assert torch.equal(ours, proc.TypicalLogitsWarper(mass)(tokens, halves.clone()))
    # by hand: in [1, 2, 1, 2, 1] the bigrams (1, 2) and (2, 1) were seen: after 1, ban 2
    row = apply_no_repeat_ngram(torch.zeros(1, 4), torch.tensor([[1, 2, 1, 2, 1]]), 2)
    assert row.tolist() == [[0.0, 0.0, float("-inf"), 0.0]]


RARER = {
    "typical_p": dict(do_sample=True, typical_p=0.6, temperature=1.5, top_k=0),
    "epsilon": dict(do_sample=True, epsilon_cutoff=0.03, temperature=2.0, top_k=0),
    "eta": dict(do_sample=True, eta_cutoff=0.5, temperature=0.05, top_k=0),
    "n-grams, greedy": dict(no_repeat_ngram_size=1),
    "beams, n-grams, min new tokens": dict(num_beams=3, no_repeat_ngram_size=2, min_new_tokens=6),
    "beam sampling, typical": dict(num_beams=2, do_sample=True, typical_p=0.5),
}


@pytest.mark.parametrize("case", list(RARER))
def test_rarer_options_give_hugging_face_tokens_and_scores(case):
    model = _model()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    options = dict(RARER[case])
    plain = snn.generate(ids, 8, attention_mask=mask, do_sample=options.get("do_sample"),
                         num_beams=options.get("num_beams"))  # fmt: skip
    torch.manual_seed(7)
    ours, theirs = _both(model, snn, ids, mask, 8, **options)
    _assert_same(ours, theirs)
    if options.get("num_beams"):
        torch.testing.assert_close(
            ours.sequences_scores, theirs.sequences_scores, rtol=0, atol=1e-6
        )
    assert torch.isinf(torch.stack(ours.scores)).any()  # the option filtered something
    if not options.get("do_sample"):
        assert not torch.equal(ours.sequences, plain)  # and changed the greedy/beam tokens


def test_min_new_tokens_holds_off_the_end_as_hugging_face():
    model = _model()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    free = snn.generate(ids, 8, attention_mask=mask)
    ends = dict(eos_token_id=[int(free[0, 10]), int(free[2, 9])], pad_token_id=0)
    early = snn.generate(ids, 8, attention_mask=mask, **ends)
    assert (early[:, 9:] == 0).any()  # rows end before 8 new tokens
    ours, theirs = _both(model, snn, ids, mask, 8, min_new_tokens=5, **ends)
    _assert_same(ours, theirs)
    new = ours.sequences[:, 9:14]
    assert not torch.isin(new, torch.tensor(ends["eos_token_id"])).any()
    assert not torch.equal(ours.sequences[:, : early.shape[1]], early)


def test_min_new_tokens_holds_off_the_end_in_beam_search_as_hugging_face():
    """Three eos ids, each a beam's early end (the tiny model has no eos of its own);
    the pad is the first eos id, as transformers writes into a finished beam."""
    model = _model()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    free = snn.generate(ids, 8, attention_mask=mask, num_beams=3)
    eos = [int(free[0, 10]), int(free[1, 9]), int(free[2, 11])]
    beams = dict(num_beams=3, num_return_sequences=2, eos_token_id=eos)
    early = snn.generate(ids, 8, attention_mask=mask, **beams)
    assert torch.isin(early[:, 9:14], torch.tensor(eos)).any()  # ends within 5 tokens
    for minimum in (2, 5):
        ours, theirs = _both(model, snn, ids, mask, 8, min_new_tokens=minimum, **beams)
        _assert_same(ours, theirs)
        torch.testing.assert_close(
            ours.sequences_scores, theirs.sequences_scores, rtol=0, atol=1e-6
        )
        assert not torch.isin(ours.sequences[:, 9 : 9 + minimum], torch.tensor(eos)).any()
    assert not torch.equal(ours.sequences[:, : early.shape[1]], early)


def test_a_config_s_refused_option_is_named_as_the_config_s():
    model = _model()
    snn = convert_causal_lm(model, steps=2)
    ids, mask = _prompts()
    config = model.generation_config
    # set as a hand-edited or older json would (update() would validate them first)
    for name, value in dict(do_sample=True, temperature=0.0, num_return_sequences=3).items():
        setattr(config, name, value)
    with pytest.raises(ConfigurationError, match=r"\(temperature: from the model's gener"):
        snn.generate(ids, 2, attention_mask=mask)
    with pytest.raises(ConfigurationError, match=r"got 0\.0$"):  # given: not the config's
        snn.generate(ids, 2, attention_mask=mask, temperature=0.0)
    config.temperature = None
    note = r"num_beams \(2\) \(num_return_sequences: from the model's generation_config\)"
    with pytest.raises(ConfigurationError, match=note):
        snn.generate(ids, 2, attention_mask=mask, num_beams=2)
