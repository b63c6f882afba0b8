"""Decoding for :class:`~spikeflow.conversion.llm.SpikingCausalLM`: greedy, sampling
and beam search with the semantics of Hugging Face ``transformers``' ``generate`` (5.x).

Each step takes the last position's logits in float32 (as ``transformers`` does, whatever
the model's dtype) and runs the score processors in ``transformers``' order:
repetition penalty, n-gram ban, minimum of new tokens, then, when sampling,
temperature, top-k, top-p, min-p, typical-p, epsilon and eta cutoffs
(:mod:`~spikeflow.conversion.llm_filters`). Greedy takes
the argmax, sampling draws with ``torch.multinomial`` (one draw per sequence per step,
from ``generator`` or torch's global generator, the draws ``transformers`` makes after
the same ``torch.manual_seed``). Beam search applies ``log_softmax`` before the
processors and keeps, per prompt, ``num_beams`` running beams and ``num_beams``
finished ones scored ``sum(log p) / new_tokens ** length_penalty``, with
``transformers``' candidate count, early-stopping heuristic and ``-1e9`` markers.

The only state a sequence carries from one decoding step to the next is its
:class:`~spikeflow.conversion.llm.SpikingKVCache` (and its attention mask): the spike
encoders re-encode every call from the sums of their inputs and the temporal operators
start each call from a clean state, so when beams are reordered the cache's rows follow
them (:meth:`~spikeflow.conversion.llm.SpikingKVCache.select`) and nothing else needs to.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow.conversion.llm_filters import (
    apply_epsilon_cutoff,
    apply_eta_cutoff,
    apply_min_new_tokens,
    apply_no_repeat_ngram,
    apply_typical_p,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "DecodingOptions",
    "SpikingGenerationOutput",
    "apply_min_p",
    "apply_repetition_penalty",
    "apply_temperature",
    "apply_top_k",
    "apply_top_p",
    "check_decoding_options",
    "check_prompts",
    "decode",
    "process_scores",
    "stop_tokens",
]

#: ``transformers``' default ``top_k`` when sampling (``top_k=0`` turns it off).
DEFAULT_TOP_K = 50
#: The score ``transformers`` gives to what must not be chosen (in float32).
_NEVER = -1.0e9


@dataclass(frozen=True)
class DecodingOptions:
    """Checked decoding options (see :meth:`SpikingCausalLM.generate`)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    num_beams: int = 1
    num_return_sequences: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    typical_p: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    no_repeat_ngram_size: int = 0
    min_new_tokens: int = 0


@dataclass(frozen=True)
class SpikingGenerationOutput:
    """``sequences [B * n, S + new]``; ``scores``: per step, the processed scores
    ``[rows, V]`` (float32; beam search: the processed log-probabilities of the running
    beams, ``B * num_beams`` rows); ``sequences_scores [B * n]``: beam search's
    length-penalised scores (None otherwise). As ``transformers``' ``generate`` with
    ``return_dict_in_generate=True, output_scores=True``."""

    sequences: Tensor
    scores: tuple[Tensor, ...]
    sequences_scores: Tensor | None


def _number(value: object, name: str, low: float | None, low_open: bool, high=None) -> float:
    """``value`` as a finite float, checked against ``(low, high]`` / ``[low, high]``
    (None: no bound)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    if (low is not None and (value <= low if low_open else value < low)) or (
        high is not None and value > high
    ):
        left = "(" if low_open else "["
        right = f"{high}]" if high is not None else "inf)"
        raise ConfigurationError(f"{name} must be in {left}{low}, {right}, got {value!r}")
    return value


def _count(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def stop_tokens(
    sources: tuple[object, ...], eos_token_id: int | Iterable[int] | None, pad_token_id: int | None
) -> tuple[Tensor | None, int | None]:
    """The end-of-sequence ids (a tensor, None: none) and the padding id; those not
    given come from the first of ``sources`` (a ``generation_config``, a ``config``)
    that has them, the padding id last from the first eos id."""
    if eos_token_id is None:
        eos_token_id = next(
            (v for c in sources if (v := getattr(c, "eos_token_id", None)) is not None), None
        )
    if pad_token_id is None:
        pad_token_id = next(
            (v for c in sources if (v := getattr(c, "pad_token_id", None)) is not None), None
        )
    if eos_token_id is None:
        return None, pad_token_id
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if not ids or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
        raise ConfigurationError(
            f"eos_token_id must be a token id >= 0 or a list of them, got {eos_token_id!r}"
        )
    pad = ids[0] if pad_token_id is None else pad_token_id
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ConfigurationError(f"pad_token_id must be a token id >= 0, got {pad!r}")
    return torch.tensor(ids), pad


def check_prompts(
    input_ids: object,
    attention_mask: Tensor | None,
    vocab_size: int,
    pad: int | None,
    eos: Tensor | None,
    generator: torch.Generator | None,
) -> Tensor:
    """The attention mask of ``input_ids [B, S]`` (all ones when None) once the prompts
    can be continued: at least one prompt of at least one token, the mask ``[B, S]``
    with each row's last position a token (generation continues every row after its
    last column: right padding or an empty row would put padding before the new tokens;
    ``transformers`` only warns), the ``eos`` ids and ``pad`` tokens of the vocabulary
    (of ``vocab_size``) and ``generator`` on the prompts' device."""
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ShapeError(f"input_ids must be an integer tensor [B, S], got {input_ids!r}")
    batch, length = input_ids.shape
    if batch == 0 or length == 0:
        raise ShapeError(
            f"input_ids must hold at least one prompt of at least one token, got "
            f"[{batch}, {length}]"
        )
    if generator is not None and generator.device != input_ids.device:
        raise ConfigurationError(
            f"generator is on {generator.device}, input_ids on {input_ids.device}: "
            "torch.multinomial draws on the model's device (torch.Generator(device=...))"
        )
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if not isinstance(attention_mask, Tensor):
        raise DTypeError(f"attention_mask must be a tensor, got {type(attention_mask).__name__}")
    if tuple(attention_mask.shape) != (batch, length):
        raise ShapeError(
            f"attention_mask must be [B, S] = [{batch}, {length}] like input_ids, got "
            f"{tuple(attention_mask.shape)}"
        )
    padded_last = (attention_mask[:, -1] == 0).nonzero().flatten().tolist()
    if padded_last:
        raise ShapeError(
            f"attention_mask rows {padded_last} end with padding (or hold none of their "
            "prompt's tokens): generate continues each row after its last column, so pad "
            "prompts on the left (a tokenizer's padding_side='left')"
        )
    if eos is not None:
        outside = [int(i) for i in eos if int(i) >= vocab_size]
        if outside:
            raise ConfigurationError(
                f"eos_token_id {outside} outside the vocabulary (size {vocab_size}): no "
                "sequence could end"
            )
        if pad is not None and pad >= vocab_size:
            raise ConfigurationError(
                f"pad_token_id {pad} outside the vocabulary (size {vocab_size}): it follows "
                "the end of a sequence, and greedy or sampled decoding feeds it to the model"
            )
    return attention_mask


def check_decoding_options(
    max_new_tokens: int,
    do_sample: bool | None = False,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    num_beams: int | None = 1,
    num_return_sequences: int = 1,
    length_penalty: float | None = None,
    early_stopping: bool | str | None = None,
    generator: torch.Generator | None = None,
    typical_p: float | None = None,
    epsilon_cutoff: float | None = None,
    eta_cutoff: float | None = None,
    no_repeat_ngram_size: int | None = None,
    min_new_tokens: int | None = None,
) -> DecodingOptions:
    """The options checked one by one, and refused where they conflict (an option that
    would be ignored: a sampling option without ``do_sample=True``, a beam option
    without ``num_beams > 1``, several sequences from greedy decoding); None: the
    default of ``transformers`` (``top_k`` 50 when sampling; ``do_sample`` False,
    ``num_beams`` 1)."""
    _count(max_new_tokens, "max_new_tokens", 1)  # transformers' generate refuses 0 too
    do_sample = False if do_sample is None else do_sample
    num_beams = 1 if num_beams is None else num_beams
    if not isinstance(do_sample, bool):
        raise ConfigurationError(f"do_sample must be True or False, got {do_sample!r}")
    num_beams = _count(num_beams, "num_beams", 1)
    num_return_sequences = _count(num_return_sequences, "num_return_sequences", 1)
    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p}
    sampling.update(typical_p=typical_p, epsilon_cutoff=epsilon_cutoff, eta_cutoff=eta_cutoff)
    given = [name for name, value in sampling.items() if value is not None]
    if generator is not None:
        given.append("generator")
        if not isinstance(generator, torch.Generator):
            raise ConfigurationError(
                f"generator must be a torch.Generator, got {type(generator).__name__}"
            )
    if given and not do_sample:
        raise ConfigurationError(
            f"{', '.join(given)} only apply when sampling: pass do_sample=True (or drop them)"
        )
    beam_only = [
        n
        for n, v in (("length_penalty", length_penalty), ("early_stopping", early_stopping))
        if v is not None
    ]
    if beam_only and num_beams == 1:
        raise ConfigurationError(
            f"{', '.join(beam_only)} only apply to beam search (num_beams > 1)"
        )
    if num_beams == 1 and not do_sample and num_return_sequences > 1:
        raise ConfigurationError(
            f"num_return_sequences={num_return_sequences} with greedy decoding would repeat "
            "one sequence: sample (do_sample=True) or use beam search (num_beams > 1)"
        )
    if num_beams > 1 and num_return_sequences > num_beams:
        raise ConfigurationError(
            f"num_return_sequences ({num_return_sequences}) must be <= num_beams ({num_beams})"
        )
    # not `in (True, False, "never")`: 1 == True would pass and then act as False
    if early_stopping is not None and not (
        isinstance(early_stopping, bool) or early_stopping == "never"
    ):
        raise ConfigurationError(
            f"early_stopping must be True, False or 'never', got {early_stopping!r}"
        )
    return DecodingOptions(
        do_sample=do_sample,
        temperature=1.0 if temperature is None else _number(temperature, "temperature", 0, True),
        top_k=(DEFAULT_TOP_K if do_sample else 0) if top_k is None else _count(top_k, "top_k", 0),
        top_p=1.0 if top_p is None else _number(top_p, "top_p", 0, False, 1),
        min_p=None if min_p is None else _number(min_p, "min_p", 0, False, 1),
        repetition_penalty=(
            1.0
            if repetition_penalty is None
            else _number(repetition_penalty, "repetition_penalty", 0, True)
        ),
        num_beams=num_beams,
        num_return_sequences=num_return_sequences,
        length_penalty=1.0
        if length_penalty is None
        else _number(length_penalty, "length_penalty", None, False),
        early_stopping=False if early_stopping is None else early_stopping,
        typical_p=1.0 if typical_p is None else _number(typical_p, "typical_p", 0, True, 1),
        epsilon_cutoff=_cutoff(epsilon_cutoff, "epsilon_cutoff"),
        eta_cutoff=_cutoff(eta_cutoff, "eta_cutoff"),
        no_repeat_ngram_size=_count(no_repeat_ngram_size or 0, "no_repeat_ngram_size", 0),
        min_new_tokens=_count(min_new_tokens or 0, "min_new_tokens", 0),
    )


def _cutoff(value: float | None, name: str) -> float:
    """A cutoff in ``[0, 1)`` (0: off)."""
    if value is None:
        return 0.0
    value = _number(value, name, 0, False, 1)
    if value == 1:
        raise ConfigurationError(f"{name} must be in [0, 1), got {value!r}")
    return value


def apply_repetition_penalty(
    scores: Tensor, tokens: Tensor, penalty: float, ignore: Tensor | None = None
) -> Tensor:
    """``scores [N, V]`` of the tokens in ``tokens [N, L]`` (each once) divided by
    ``penalty`` where positive, multiplied where negative (CTRL's penalty); the first
    ``ignore[n]`` positions of row n (its left padding) do not count."""
    present = torch.ones_like(tokens, dtype=torch.long)
    if ignore is not None:
        present = (torch.arange(tokens.shape[1], device=tokens.device) >= ignore[:, None]).long()
    seen = torch.zeros(scores.shape, dtype=torch.long, device=scores.device)
    seen.scatter_add_(1, tokens, present)
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen > 0, penalised, scores)


def apply_temperature(scores: Tensor, temperature: float) -> Tensor:
    """``scores / temperature``."""
    return scores / temperature


def apply_top_k(scores: Tensor, k: int, keep: int = 1) -> Tensor:
    """``-inf`` below the ``max(k, keep)``-th largest score of each row (ties with it
    stay)."""
    k = min(max(k, keep), scores.shape[-1])
    kth = torch.topk(scores, k).values[..., -1:]
    return scores.masked_fill(scores < kth, float("-inf"))


def apply_top_p(scores: Tensor, p: float, keep: int = 1) -> Tensor:
    """Nucleus filtering: sorted ascending, the tokens whose cumulative probability is
    ``<= 1 - p`` get ``-inf`` (the ``keep`` most likely always stay)."""
    ascending, order = torch.sort(scores, descending=False)
    drop = ascending.softmax(-1).cumsum(-1) <= 1 - p
    drop[..., -keep:] = False
    return scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))


def apply_min_p(scores: Tensor, p: float, keep: int = 1) -> Tensor:
    """``-inf`` where a token's probability is below ``p`` times the row's largest (the
    ``keep`` most likely always stay)."""
    probs = scores.softmax(-1)
    drop = probs < p * probs.amax(-1, keepdim=True)
    drop.scatter_(-1, torch.topk(probs, min(keep, probs.shape[-1])).indices, False)
    return scores.masked_fill(drop, float("-inf"))


def process_scores(
    scores: Tensor,
    tokens: Tensor,
    options: DecodingOptions,
    ignore: Tensor,
    keep: int,
    prompt_length: int | None = None,
    eos: Tensor | None = None,
) -> Tensor:
    """``scores [N, V]`` through ``transformers``' processors in its order: repetition
    penalty (``tokens [N, L]`` so far, the first ``ignore[n]`` not counted), n-gram ban,
    minimum of new tokens (``eos`` barred while ``L - prompt_length`` is below it), then
    when sampling temperature, top-k, top-p, min-p, typical-p, epsilon and eta cutoffs
    (each leaving at least ``keep``)."""
    if options.repetition_penalty != 1.0:
        scores = apply_repetition_penalty(scores, tokens, options.repetition_penalty, ignore)
    if options.no_repeat_ngram_size > 0:
        scores = apply_no_repeat_ngram(scores, tokens, options.no_repeat_ngram_size)
    if options.min_new_tokens > 0 and eos is not None:
        new = tokens.shape[1] - (tokens.shape[1] if prompt_length is None else prompt_length)
        scores = apply_min_new_tokens(scores, eos, new, options.min_new_tokens)
    if options.do_sample:
        if options.temperature != 1.0:
            scores = apply_temperature(scores, options.temperature)
        if options.top_k != 0:
            scores = apply_top_k(scores, options.top_k, keep)
        if options.top_p < 1.0:
            scores = apply_top_p(scores, options.top_p, keep)
        if options.min_p is not None:
            scores = apply_min_p(scores, options.min_p, keep)
        if options.typical_p < 1.0:
            scores = apply_typical_p(scores, options.typical_p, keep)
        if options.epsilon_cutoff > 0.0:
            scores = apply_epsilon_cutoff(scores, options.epsilon_cutoff, keep)
        if options.eta_cutoff > 0.0:
            scores = apply_eta_cutoff(scores, options.eta_cutoff, keep)
    return scores


def _step(model, tokens: Tensor, mask: Tensor, cache, use_cache: bool, mode: str | None):
    """The last position's logits in float32 and the new cache (with a cache, only the
    last token runs)."""
    out = model(
        tokens if cache is None else tokens[:, -1:],
        mask,
        past_key_values=cache,
        use_cache=use_cache,
        mode=mode,
    )
    return out.logits[:, -1].float(), out.past_key_values


def _prefill(model, ids: Tensor, mask: Tensor, copies: int, use_cache: bool, mode: str | None):
    """The prompts run once; their logits, cache, ids and mask repeated ``copies`` times
    each (``[p0, p0, ..., p1, ...]``, as ``transformers`` expands them)."""
    logits, cache = _step(model, ids, mask, None, use_cache, mode)
    rows = torch.arange(ids.shape[0], device=ids.device).repeat_interleave(copies)
    return logits[rows], None if cache is None else cache.select(rows), ids[rows], mask[rows]


def _sample(model, ids, mask, new, options, eos, pad, generator, use_cache, mode, keep_scores):
    """Greedy or sampled decoding of ``num_return_sequences`` sequences per prompt."""
    copies = options.num_return_sequences
    if new == 0:
        return ids.repeat_interleave(copies, 0), (), None
    logits, cache, tokens, mask = _prefill(model, ids, mask, copies, use_cache, mode)
    ignore = (mask != 0).int().argmax(1)  # left padding: not counted as repetitions
    finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    history = []
    for step in range(new):
        if step:
            logits, cache = _step(model, tokens, mask, cache, use_cache, mode)
        scores = process_scores(logits, tokens, options, ignore, 1, ids.shape[1], eos)
        if keep_scores:
            history.append(scores)
        if options.do_sample:
            token = torch.multinomial(scores.softmax(-1), 1, generator=generator)
        else:
            token = scores.argmax(-1, keepdim=True)
        if eos is not None:
            token = torch.where(finished[:, None], torch.full_like(token, pad), token)
            finished = finished | torch.isin(token[:, 0], eos)
        tokens = torch.cat([tokens, token], 1)
        mask = torch.cat([mask, torch.ones_like(token, dtype=mask.dtype)], 1)
        if bool(finished.all()):
            break
    return tokens, tuple(history), None


def _pick(rows: Tensor, index: Tensor) -> Tensor:
    """``rows [B, K, ...]`` at ``index [B, J]`` along dim 1."""
    return rows.gather(
        1,
        index.reshape(*index.shape, *([1] * (rows.dim() - 2))).expand(
            *index.shape, *rows.shape[2:]
        ),
    )


def _beam_search(model, ids, mask, new, options, eos, pad, generator, use_cache, mode, keep_scores):
    """``transformers``' beam search (beam sampling with ``do_sample``); see the module
    docstring."""
    batch, prompt = ids.shape
    beams, copies = options.num_beams, options.num_return_sequences
    if new == 0:
        zeros = torch.zeros(batch * copies, device=ids.device)
        return ids.repeat_interleave(copies, 0), (), zeros
    total, device = prompt + new, ids.device
    eos_count = 0 if eos is None else eos.numel()
    width = max(2, 1 + eos_count) * beams  # candidates per prompt: some may end
    keep = eos_count + 1 if eos is not None else 2  # what the sampling filters leave
    fill = pad if pad is not None else 0  # after a beam's end (no end without eos)
    logits, cache, _, mask = _prefill(model, ids, mask, beams, use_cache, mode)
    ignore = (mask != 0).int().argmax(1)
    running = ids.new_full((batch, beams, total), fill)
    running[:, :, :prompt] = ids[:, None]
    running_scores = torch.zeros(batch, beams, device=device)
    running_scores[:, 1:] = _NEVER  # the beams start as copies: only the first counts
    done, done_scores = running.clone(), torch.full((batch, beams), _NEVER, device=device)
    done_flag = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    done_len = torch.zeros(batch, beams, dtype=torch.long, device=device)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    offsets = torch.arange(batch, device=device)[:, None] * beams
    leading = torch.arange(width, device=device) < beams
    history, length = [], prompt
    while True:
        flat = running[:, :, :length].flatten(0, 1)
        if length > prompt:
            logits, cache = _step(model, flat, mask, cache, use_cache, mode)
        log_probs = process_scores(
            F.log_softmax(logits, -1), flat, options, ignore, keep, prompt, eos
        )
        if keep_scores:
            history.append(log_probs)
        vocab = log_probs.shape[-1]
        summed = (log_probs.view(batch, beams, vocab) + running_scores[:, :, None]).view(batch, -1)
        if options.do_sample:  # drawn without replacement, then ordered by score
            picked = torch.multinomial(summed.softmax(-1), width, generator=generator)
            cand_scores, order = summed.gather(1, picked).sort(-1, descending=True)
            picked = picked.gather(1, order)
        else:
            cand_scores, picked = torch.topk(summed, width)
        source = picked // vocab
        cand = _pick(running, source).clone()
        cand[:, :, length] = picked % vocab
        ends = torch.full_like(leading[None].expand(batch, -1), length + 1 >= total)
        if eos is not None:
            ends = ends | torch.isin(cand[:, :, length], eos)
        # the best candidates that did not end run on
        alive = cand_scores + ends.to(torch.float32) * _NEVER
        chosen = torch.topk(alive, beams).indices
        running, running_scores = _pick(cand, chosen), alive.gather(1, chosen)
        origin = (source.gather(1, chosen) + offsets).flatten()
        # the ended ones among the first `beams` candidates join the finished ones
        ended = ends & leading
        scored = cand_scores / ((length + 1 - prompt) ** options.length_penalty)
        complete = done_flag.all(-1, keepdim=True) & (options.early_stopping is True)
        scored = scored + complete.to(torch.float32) * _NEVER
        scored = scored + (~improvable).to(torch.float32) * _NEVER
        scored = scored + (~ended) * _NEVER
        merged = torch.cat([done_scores, scored], 1)
        best = torch.topk(merged, beams).indices
        done, done_scores = _pick(torch.cat([done, cand], 1), best), merged.gather(1, best)
        done_flag = torch.cat([done_flag, ended], 1).gather(1, best)
        lengths = torch.full_like(cand[:, :, 0], length + 1 - prompt)
        done_len = torch.cat([done_len, lengths], 1).gather(1, best)
        if cache is not None:
            cache = cache.select(origin)
        length += 1
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        # can the best running beam still beat the worst finished one?
        if options.early_stopping == "never" and options.length_penalty > 0:
            hope_len = total - prompt
        else:
            hope_len = length - prompt
        hope = running_scores[:, :1] / (hope_len**options.length_penalty)
        worst = torch.where(done_flag, done_scores.min(1, keepdim=True).values, _NEVER)
        improvable = improvable & (hope > worst).any(-1, keepdim=True)
        all_done = bool(done_flag.all()) and options.early_stopping is True
        if not bool(improvable.any()) or all_done or bool(ends.all()):
            break
    out_len = prompt + int(done_len[:, :copies].max())
    sequences = done[:, :copies].flatten(0, 1)[:, :out_len]
    return sequences, tuple(history), done_scores[:, :copies].flatten()


def decode(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    max_new_tokens: int,
    options: DecodingOptions,
    eos: Tensor | None,
    pad: int | None,
    *,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    mode: str | None = None,
    output_scores: bool = False,
) -> Tensor | SpikingGenerationOutput:
    """Decode with ``model`` (a :class:`SpikingCausalLM`) under checked ``options``;
    ``eos`` (ids, None: no end) and ``pad`` as :func:`stop_tokens`
    gives them. The sequences, or with ``output_scores`` a
    :class:`SpikingGenerationOutput`."""
    if eos is not None:
        eos = eos.to(input_ids.device)
    run = _beam_search if options.num_beams > 1 else _sample
    sequences, scores, sequences_scores = run(
        model, input_ids, attention_mask, max_new_tokens, options, eos, pad, generator,
        use_cache, mode, output_scores,
    )  # fmt: skip
    if not output_scores:
        return sequences
    return SpikingGenerationOutput(sequences, scores, sequences_scores)
