"""Spiking conversion of Hugging Face decoder LLMs in the Qwen2 / Llama layout.

A decoder layer of these models is ``h += o(attn(rope(q(n1(h))), rope(k(n1(h))),
v(n1(h))))`` then ``h += down(silu(gate(n2(h))) * up(n2(h)))`` with RMSNorms ``n1, n2``,
causal grouped-query attention (GQA) and a KV cache for decoding. The converted model
runs ``T`` steps of streams ``[T, B, S, ...]`` whose running sums are the ANN's values
(:mod:`spikeflow.conversion.temporal`): the linear layers pass changes on
(:class:`~spikeflow.conversion.temporal.StepBias`), the RMSNorms, SiLU and the causal
attention are temporal differences (:class:`~spikeflow.conversion.temporal.
TemporalDifference`), the gated product is a
:class:`~spikeflow.conversion.temporal.SpikeProduct`, and the rotary embedding, linear
in its input, acts on each step. With a calibration, the token embeddings and, in each
layer, the rotated queries and keys, the values and the gated product are re-sent as
signed spikes (:class:`~spikeflow.conversion.llm_encode.SignedSpikeEncoder`) from the
sum of their input's ``T`` steps (SpikingJelly 2.0's ``Qwen2SNNModel``, its
"layerwise offline multi-step" schedule: a site sends its spikes once its input's ``T``
steps are in). Summed over the steps, the logits are then those of the ANN with these
activations quantised to ``θ · clip(round(x/θ), -T, T)``; without a calibration the
streams carry the float values at the first step and every step's logits are the
float model's.

Entry points: :func:`calibrate_causal_lm`, :func:`convert_causal_lm`,
:meth:`SpikingCausalLM.generate`. ``transformers`` is the ``llm`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeflow.conversion._checks import check_positive_int
from spikeflow.conversion.llm_attention import (
    CausalGQA,
    attention_scale,
    merge_heads,
    rotate,
    split_heads,
)
from spikeflow.conversion.llm_encode import (
    SITES,
    ChannelObserver,
    LLMCalibration,
    SignedSpikeEncoder,
    signed_quantize,
    signed_quantize_sg,
)
from spikeflow.conversion.llm_generate import (
    SpikingGenerationOutput,
    check_decoding_options,
    check_prompts,
    decode,
    stop_tokens,
)
from spikeflow.conversion.llm_generation_config import (
    name_config_options,
    resolve_generation_config,
)
from spikeflow.conversion.llm_source import (  # SILU_NAMES: kept importable from here
    LINEARS,
    SILU_NAMES,  # noqa: F401
    SUPPORTED_MODEL_TYPES,
    check_source,
)
from spikeflow.conversion.temporal import SpikeProduct, StepBias, TemporalDifference
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "SpikingCausalLM",
    "SpikingKVCache",
    "SpikingLMOutput",
    "calibrate_causal_lm",
    "convert_causal_lm",
]

MODES = ("spikes", "quantized", "qcfs_sg", "exact")


class _SpikingDecoderLayer(nn.Module):
    """One decoder layer on streams (parameters shared with the source layer)."""

    def __init__(self, layer: nn.Module, index: int) -> None:
        super().__init__()
        attn, mlp, config = layer.self_attn, layer.mlp, layer.self_attn.config
        self.index = index
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.input_layernorm = TemporalDifference(layer.input_layernorm, name="input_layernorm")
        self.post_attention_layernorm = TemporalDifference(
            layer.post_attention_layernorm, name="post_attention_layernorm"
        )
        for part, names in LINEARS.items():
            for name in names:
                setattr(self, name, StepBias(getattr(getattr(layer, part), name)))
        groups = self.heads // self.kv_heads
        self.attention = TemporalDifference(
            CausalGQA(groups, attention_scale(attn)), streams=(0, 1, 2), name="causal attention"
        )
        self.act = TemporalDifference(mlp.act_fn, name="silu")
        self.product = SpikeProduct("mul")

    def forward(self, hidden: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor, past, site):
        """``hidden [T, B, S, H]`` -> (``[T, B, S, H]``, this call's keys and values summed
        over the steps ``[B, kv_heads, S, D]``)."""
        x = self.input_layernorm(hidden)
        cos, sin = rope
        q = merge_heads(rotate(self.q_proj(x), cos, sin, self.heads))
        k = merge_heads(rotate(self.k_proj(x), cos, sin, self.kv_heads))
        q, k, v = (
            site(self.index, n, s) for n, s in (("query", q), ("key", k), ("value", self.v_proj(x)))
        )
        q, k, v = (
            split_heads(q, self.heads),
            split_heads(k, self.kv_heads),
            split_heads(v, self.kv_heads),
        )
        past_k, past_v = past if past is not None else (None, None)
        attended = self.attention(q, k, v, mask, past_k=past_k, past_v=past_v)
        hidden = hidden + self.o_proj(merge_heads(attended))
        x = self.post_attention_layernorm(hidden)
        gated = self.product(self.act(self.gate_proj(x)), self.up_proj(x))
        hidden = hidden + self.down_proj(site(self.index, "mlp", gated))
        return hidden, (k.sum(0), v.sum(0))


@dataclass(frozen=True)
class SpikingKVCache:
    """Per layer, the keys and values of the tokens so far, summed over the steps
    ``[B, kv_heads, P, D]`` (for a spiking model, the quantised ones its spikes sum to)."""

    layers: tuple[tuple[Tensor, Tensor], ...]

    @property
    def length(self) -> int:
        """``P``, the number of cached positions."""
        return int(self.layers[0][0].shape[2])

    def select(self, rows: Tensor) -> SpikingKVCache:
        """The cache of the sequences ``rows`` (indices on dim 0, repeats allowed): how
        the prompts' cache is copied per beam and how it follows the beams."""
        return SpikingKVCache(tuple((k[rows], v[rows]) for k, v in self.layers))


@dataclass(frozen=True)
class SpikingLMOutput:
    """``logits [B, S, V]`` (from the summed streams), ``step_logits [T, B, S, V]`` (from
    the running sums after each step; None unless asked for) and the new cache (None
    unless ``use_cache``)."""

    logits: Tensor
    step_logits: Tensor | None
    past_key_values: SpikingKVCache | None


class SpikingCausalLM(nn.Module):
    """A decoder LLM as streams of changes and signed spikes (see the module docstring);
    made by :func:`convert_causal_lm`. It shares the source model's parameters.

    Args:
        model: an eval-mode Hugging Face Qwen2 or Llama causal LM.
        steps: ``T``, the number of time steps.
        calibration: per-channel thresholds (:func:`calibrate_causal_lm`); None: no
            spike encoders, only ``mode='exact'`` (the float model, step by step).
    """

    def __init__(self, model: nn.Module, steps: int, calibration: LLMCalibration | None) -> None:
        super().__init__()
        check_source(model, "SpikingCausalLM")
        self.steps = check_positive_int(steps, "steps (T)")
        self.config = model.config
        self.generation_config = getattr(model, "generation_config", None)
        inner = model.model
        self.embed_tokens, self.rotary_emb, self.lm_head = (
            inner.embed_tokens,
            inner.rotary_emb,
            model.lm_head,
        )
        self.layers = nn.ModuleList(
            _SpikingDecoderLayer(layer, i) for i, layer in enumerate(inner.layers)
        )
        self.norm = TemporalDifference(inner.norm, name="norm")
        self.calibration = calibration
        self.encoders = None if calibration is None else self._encoders(calibration, inner)
        self._observers: dict | None = None

    def _encoders(self, calibration: LLMCalibration, inner: nn.Module) -> nn.ModuleDict:
        if not isinstance(calibration, LLMCalibration):
            raise ConfigurationError(
                f"calibration must be an LLMCalibration, got {type(calibration).__name__}"
            )
        if calibration.levels > self.steps:
            raise ConfigurationError(
                f"calibration levels ({calibration.levels}) exceed steps ({self.steps}): the "
                "spike counts could not reach the calibrated range"
            )
        if len(calibration.layer_scales) != len(self.layers):
            raise ConfigurationError(
                f"calibration has {len(calibration.layer_scales)} layers, the model "
                f"{len(self.layers)}"
            )
        encoders = {"input": SignedSpikeEncoder(calibration.input_scale, self.steps, "input")}
        for i, (group, layer) in enumerate(zip(calibration.layer_scales, inner.layers)):
            sizes = {
                "query": layer.self_attn.q_proj.out_features,
                "key": layer.self_attn.k_proj.out_features,
                "value": layer.self_attn.v_proj.out_features,
                "mlp": layer.mlp.down_proj.in_features,
            }
            for site in SITES:
                scale = group.get(site)
                if scale is None or scale.shape != (sizes[site],):
                    raise ConfigurationError(
                        f"calibration layer {i} {site}: expected a scale of shape "
                        f"({sizes[site]},), got {None if scale is None else tuple(scale.shape)}"
                    )
                encoders[f"{i}_{site}"] = SignedSpikeEncoder(scale, self.steps, f"layer {i} {site}")
        # on the model's device, wherever the calibration was made or loaded
        return nn.ModuleDict(encoders).to(device=inner.embed_tokens.weight.device)

    def _site(self, mode: str) -> Callable[[int | None, str, Tensor], Tensor]:
        """What happens to a stream at an encoder site under ``mode``."""

        def site(index: int | None, name: str, seq: Tensor) -> Tensor:
            key = name if index is None else f"{index}_{name}"
            if mode == "exact":
                if self._observers is not None:
                    self._observers[key].update(seq.sum(0), self._valid)
                return seq
            encoder = self.encoders[key]
            dense = seq.sum(0)
            if mode == "quantized":
                return signed_quantize(dense, encoder.scale.to(dense.dtype), self.steps)[None]
            if mode == "qcfs_sg":
                return signed_quantize_sg(dense, encoder.scale.to(dense.dtype), self.steps)[None]
            return encoder(dense)

        return site

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        past_key_values: SpikingKVCache | None = None,
        use_cache: bool = False,
        per_step: bool = False,
        mode: str | None = None,
    ) -> SpikingLMOutput:
        """Run the ``T`` steps on ``input_ids [B, S]``.

        Args:
            attention_mask: ``[B, P + S]`` (1 = token, 0 = padding; P cached positions);
                None: all tokens.
            past_key_values: the cache a previous call returned (``use_cache=True``).
            per_step: also return the logits of the running sums after each step.
            mode: ``'spikes'`` (default with a calibration), ``'quantized'`` (the ANN
                with the encoders' quantisation, no spikes: what the spikes sum to),
                ``'qcfs_sg'`` (the same values, with a surrogate gradient through each
                quantiser, SpikingJelly's ``encoding_mode="qcfs_sg"``: the mode to
                fine-tune the converted model in) or ``'exact'`` (no encoders: the float
                model; the default without one).
        """
        mode = mode or ("exact" if self.encoders is None else "spikes")
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {MODES}, got {mode!r}")
        if mode != "exact" and self.encoders is None:
            raise ConfigurationError(f"mode={mode!r} needs a calibration (convert_causal_lm)")
        if (
            not isinstance(input_ids, Tensor)
            or input_ids.dim() != 2
            or input_ids.is_floating_point()
        ):
            raise ShapeError(f"input_ids must be an integer tensor [B, S], got {input_ids!r}")
        batch, length = input_ids.shape
        if past_key_values is not None:
            self._check_cache(past_key_values)
        past = past_key_values.length if past_key_values is not None else 0
        if past_key_values is not None and past_key_values.layers[0][0].shape[0] != batch:
            raise ShapeError(
                f"past_key_values hold {past_key_values.layers[0][0].shape[0]} sequences, "
                f"input_ids {batch}"
            )
        if attention_mask is None:
            attention_mask = input_ids.new_ones(batch, past + length)
        if tuple(attention_mask.shape) != (batch, past + length):
            raise ShapeError(
                f"attention_mask must be [B, P + S] = [{batch}, {past + length}], got "
                f"{tuple(attention_mask.shape)}"
            )
        keep = attention_mask.to(torch.bool)
        positions = (keep.long().cumsum(-1) - 1).clamp_min(0)[:, past:]
        embeddings = self.embed_tokens(input_ids)
        rope = self.rotary_emb(embeddings, positions)
        rope = tuple(r.to(embeddings.dtype) for r in rope)
        query_at = torch.arange(past, past + length, device=input_ids.device)[:, None]
        causal = torch.arange(past + length, device=input_ids.device)[None] <= query_at
        self._valid = keep[:, past:]
        # a padded query sees every key: no row is fully masked (which some SDPA
        # kernels turn into NaN, and NaN values would reach the real tokens as 0 * NaN)
        mask = (causal[None] & keep[:, None]) | ~self._valid[:, :, None]
        mask = mask[:, None]
        site = self._site(mode)
        hidden = site(None, "input", embeddings[None])
        cache = []
        for i, layer in enumerate(self.layers):
            layer_past = past_key_values.layers[i] if past_key_values is not None else None
            hidden, (k, v) = layer(hidden, rope, mask, layer_past, site)
            if use_cache:
                if layer_past is not None:
                    k, v = torch.cat([layer_past[0], k], 2), torch.cat([layer_past[1], v], 2)
                cache.append((k, v))
        normed = self.norm(hidden)
        logits = self.lm_head(normed.sum(0))
        step_logits = None
        if per_step:
            step_logits = self.lm_head(normed.cumsum(0))
            if step_logits.shape[0] != self.steps:  # exact/quantized/qcfs_sg: one step for T
                step_logits = step_logits.expand(self.steps, *logits.shape)
        return SpikingLMOutput(
            logits, step_logits, SpikingKVCache(tuple(cache)) if use_cache else None
        )

    def _check_cache(self, cache: object) -> None:
        """A :class:`SpikingKVCache` with one entry per layer (not a ``transformers``
        cache: its keys are the float model's, not the spikes' sums)."""
        if not isinstance(cache, SpikingKVCache):
            raise ConfigurationError(
                "past_key_values must be the SpikingKVCache a previous call returned "
                f"(use_cache=True), got {type(cache).__name__}"
            )
        if len(cache.layers) != len(self.layers):
            raise ShapeError(
                f"past_key_values hold {len(cache.layers)} layers, the model {len(self.layers)}"
            )

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int | None = None,
        *,
        attention_mask: Tensor | None = None,
        use_cache: bool = True,
        mode: str | None = None,
        eos_token_id: int | Iterable[int] | None = None,
        pad_token_id: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        num_beams: int | None = None,
        num_return_sequences: int | None = None,
        length_penalty: float | None = None,
        early_stopping: bool | str | None = None,
        generator: torch.Generator | None = None,
        output_scores: bool = False,
        typical_p: float | None = None,
        epsilon_cutoff: float | None = None,
        eta_cutoff: float | None = None,
        no_repeat_ngram_size: int | None = None,
        min_new_tokens: int | None = None,
        **unsupported: object,
    ) -> Tensor | SpikingGenerationOutput:
        """Decode ``[B * n, S + new]`` tokens, ``new <= max_new_tokens``, as Hugging
        Face's ``generate`` with the same options (:mod:`~spikeflow.conversion.
        llm_generate`): greedy by default; ``do_sample`` with ``temperature``,
        ``top_k`` (None: 50, 0: off), ``top_p``, ``min_p``, ``typical_p``,
        ``epsilon_cutoff``, ``eta_cutoff`` and draws from ``generator`` (None: torch's
        global one); ``repetition_penalty``, ``no_repeat_ngram_size``,
        ``min_new_tokens``; ``num_beams > 1``: beam search with ``length_penalty`` and
        ``early_stopping`` (True, False, 'never'); ``num_return_sequences`` (n) per
        prompt. With ``use_cache`` each new token runs
        alone against the cached keys and values (reordered with the beams); without
        it the whole sequence runs again (the same tokens, at more cost). An option
        left unset (None) comes, as in ``transformers``, from the model's
        ``generation_config`` when it sets it (sampling options only when sampling, beam
        options only with beams), else ``transformers``' default; ``max_new_tokens``:
        the config's, else its ``max_length`` less the prompt, else 20
        (:mod:`~spikeflow.conversion.llm_generation_config`).

        A sequence that has produced an end-of-sequence token (``eos_token_id``, one id
        or several; default: the model's ``generation_config``, else its ``config``) is
        finished, its later positions hold ``pad_token_id`` (default: the model's, else
        the first eos id), and decoding stops once every sequence is (so ``new`` may be
        smaller). ``output_scores``: a :class:`~spikeflow.conversion.llm_generate.
        SpikingGenerationOutput` with the processed scores of each step (and beam
        search's sequence scores). An option this method lacks, one that would be ignored
        (a sampling option without ``do_sample=True``, ...) and right padding are refused
        (:func:`~spikeflow.conversion.llm_generate.check_prompts`)."""
        if unsupported:
            raise ConfigurationError(
                f"generate: unsupported option(s) {sorted(unsupported)}; supported: "
                "do_sample, temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff, "
                "eta_cutoff, repetition_penalty, no_repeat_ngram_size, min_new_tokens, "
                "num_beams, num_return_sequences, length_penalty, early_stopping, generator"
            )
        given = dict(
            do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            repetition_penalty=repetition_penalty, num_beams=num_beams,
            length_penalty=length_penalty, early_stopping=early_stopping, typical_p=typical_p,
            epsilon_cutoff=epsilon_cutoff, eta_cutoff=eta_cutoff, min_new_tokens=min_new_tokens,
            no_repeat_ngram_size=no_repeat_ngram_size,
        )  # fmt: skip
        length = input_ids.shape[-1] if isinstance(input_ids, Tensor) else 0
        call = {**given, "num_return_sequences": num_return_sequences,
                "max_new_tokens": max_new_tokens}  # fmt: skip
        given, max_new_tokens, num_return_sequences = resolve_generation_config(
            self.generation_config, given, max_new_tokens, num_return_sequences, length,
            getattr(self.config, "max_position_embeddings", None),
        )  # fmt: skip
        try:
            options = check_decoding_options(
                max_new_tokens, **given, num_return_sequences=num_return_sequences,
                generator=generator,
            )  # fmt: skip
        except ConfigurationError as error:
            resolved = {**given, "num_return_sequences": num_return_sequences,
                        "max_new_tokens": max_new_tokens}  # fmt: skip
            raise name_config_options(error, call, resolved) from error
        sources = (getattr(self, "generation_config", None), self.config)
        eos, pad = stop_tokens(sources, eos_token_id, pad_token_id)
        vocab = self.embed_tokens.num_embeddings
        mask = check_prompts(input_ids, attention_mask, vocab, pad, eos, generator)
        return decode(
            self, input_ids, mask, max_new_tokens, options, eos, pad, generator=generator,
            use_cache=use_cache, mode=mode, output_scores=output_scores,
        )  # fmt: skip

    def extra_repr(self) -> str:
        kind = "exact" if self.encoders is None else f"levels={self.calibration.levels}"
        return f"{self.config.model_type}, steps={self.steps}, {kind}"


def _batches(batches: Iterable[object]) -> Iterable[tuple[int, Tensor, Tensor]]:
    """``(index, ids, mask)`` per batch; one ``[B, S]`` tensor or one mapping (a
    tokenizer's output, whose iteration would give its keys) is one batch."""
    if isinstance(batches, Mapping) or (isinstance(batches, Tensor) and batches.dim() == 2):
        batches = [batches]
    for i, batch in enumerate(batches):
        if isinstance(batch, Tensor):
            ids, mask = batch, None
        elif isinstance(batch, Mapping) and isinstance(batch.get("input_ids"), Tensor):
            ids, mask = batch["input_ids"], batch.get("attention_mask")
        else:
            raise DTypeError(
                f"calibration batch {i} must be a tensor of token ids or a mapping with "
                f"'input_ids' (and 'attention_mask'), got {type(batch).__name__}"
            )
        yield i, ids, torch.ones_like(ids) if mask is None else mask


@torch.no_grad()
def calibrate_causal_lm(
    model: nn.Module, batches: Iterable[object], levels: int = 16, quantile: float = 1.0
) -> LLMCalibration:
    """Per-channel spike thresholds of a Qwen2/Llama causal LM: the maximum (or the
    ``quantile``) of ``|x|`` over the unpadded calibration tokens at each encoder site,
    divided by ``levels``.

    Args:
        model: an eval-mode Hugging Face causal LM (``model_type`` in
            :data:`SUPPORTED_MODEL_TYPES`).
        batches: an iterable of token ids ``[B, S]`` or of mappings with
            ``'input_ids'`` and ``'attention_mask'`` (a tokenizer's output); one
            ``[B, S]`` tensor or one mapping is one batch. Each is moved to the
            model's device (that of its token embedding).
        levels: the spike counts the observed range is divided into (``<= steps`` of
            the conversion).
        quantile: in ``(0, 1]``; below 1, every token's ``|x|`` is kept until the end
            (tokens x channels values per site), SpikingJelly's
            ``calibration_quantile`` without its reservoir of sampled tokens.
    """
    levels = check_positive_int(levels, "levels")
    if (
        isinstance(quantile, bool)
        or not isinstance(quantile, (int, float))
        or not 0 < quantile <= 1
    ):
        raise ConfigurationError(f"quantile must be a number in (0, 1], got {quantile!r}")
    probe = SpikingCausalLM(model, 1, None)
    names = ["input"] + [f"{i}_{s}" for i in range(len(probe.layers)) for s in SITES]
    probe._observers = {name: ChannelObserver(float(quantile)) for name in names}
    seen = 0
    device = probe.embed_tokens.weight.device  # the model's: batches are moved there
    for i, ids, mask in _batches(batches):
        seen += 1
        try:
            probe(ids.to(device), mask.to(device), mode="exact")
        except (ShapeError, DTypeError) as error:
            raise type(error)(f"calibration batch {i}: {error}") from error
    if not seen:
        raise ConfigurationError("calibrate_causal_lm: no calibration batch")
    obs = probe._observers
    scales = tuple(
        {s: obs[f"{i}_{s}"].scale(levels, f"layer {i} {s}") for s in SITES}
        for i in range(len(probe.layers))
    )
    first = obs["input"]
    return LLMCalibration(first.scale(levels, "input"), scales, levels, first.tokens, quantile)


def convert_causal_lm(
    model: nn.Module,
    steps: int = 16,
    calibration: LLMCalibration | Iterable[object] | None = None,
    levels: int | None = None,
    quantile: float = 1.0,
) -> SpikingCausalLM:
    """A Hugging Face Qwen2/Llama causal LM as a :class:`SpikingCausalLM` of ``steps``
    time steps.

    Args:
        model: an eval-mode ``transformers`` causal LM (extra ``llm``).
        steps: ``T``.
        calibration: an :class:`LLMCalibration`, or calibration batches (passed to
            :func:`calibrate_causal_lm` with ``levels``), or None for the exact
            (float) time-difference form without spike encoders.
        levels: with batches, the calibration levels (default: ``steps``).
        quantile: with batches, the calibration quantile (default: the maximum).
    """
    steps = check_positive_int(steps, "steps (T)")
    check_source(model, "convert_causal_lm")
    if calibration is None or isinstance(calibration, LLMCalibration):
        if levels is not None or quantile != 1.0:
            given = "None" if calibration is None else "an LLMCalibration"
            raise ConfigurationError(
                f"levels and quantile apply to calibration batches; calibration is {given} "
                "(its levels and quantile are fixed by calibrate_causal_lm)"
            )
    else:
        levels = steps if levels is None else check_positive_int(levels, "levels")
        if levels > steps:  # before the calibration run, which costs a pass over the data
            raise ConfigurationError(
                f"calibration levels ({levels}) exceed steps ({steps}): the spike counts "
                "could not reach the calibrated range"
            )
        calibration = calibrate_causal_lm(model, calibration, levels, quantile)
    return SpikingCausalLM(model, steps, calibration).eval()
