"""Which Hugging Face causal LMs :mod:`spikeflow.conversion.llm` converts: an eval-mode
``transformers`` Qwen2 or Llama model (RMSNorm, SiLU-gated MLP, rotary, causal GQA,
no sliding window), checked part by part before the conversion."""

from __future__ import annotations

from torch import nn

from spikeflow.errors import ConfigurationError, MissingExtraError

__all__ = ["LINEARS", "SILU_NAMES", "SUPPORTED_MODEL_TYPES", "check_source"]

SUPPORTED_MODEL_TYPES = ("qwen2", "llama")
#: The ``hidden_act`` names of SiLU in Hugging Face's ``ACT2FN`` (``swish`` is its alias).
SILU_NAMES = ("silu", "swish")
#: The ``nn.Linear`` parts of a decoder layer, by sub-module.
LINEARS = {
    "self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
}
_NORMS = ("input_layernorm", "post_attention_layernorm")


def check_source(model: object, feature: str) -> nn.Module:
    """``model`` if it is an eval-mode Hugging Face causal LM of a supported layout
    (``feature`` names the caller in the errors).

    Raises:
        MissingExtraError: ``transformers`` is not installed (extra ``llm``).
        ConfigurationError: not a ``PreTrainedModel``, a ``model_type`` outside
            :data:`SUPPORTED_MODEL_TYPES`, an activation other than SiLU, sliding-window
            attention, training mode, or a part of the Qwen2/Llama layout missing or
            unsupported (the layer and part named).
    """
    try:
        from transformers import PreTrainedModel
    except ImportError as error:
        raise MissingExtraError(feature, "transformers", "llm") from error
    if not isinstance(model, PreTrainedModel):
        raise ConfigurationError(
            f"{feature} takes a Hugging Face causal LM (transformers.PreTrainedModel), got "
            f"{type(model).__name__}"
        )
    config = model.config
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED_MODEL_TYPES:
        raise ConfigurationError(
            f"{feature}: model_type {kind!r} is not supported; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (RMSNorm, SiLU-gated MLP, rotary, causal GQA)"
        )
    if getattr(config, "hidden_act", "silu") not in SILU_NAMES:
        raise ConfigurationError(
            f"{feature}: hidden_act must be 'silu' (or its alias 'swish'), got "
            f"{config.hidden_act!r}"
        )
    layer_types = getattr(config, "layer_types", None) or ()
    if getattr(config, "use_sliding_window", False) or "sliding_attention" in layer_types:
        raise ConfigurationError(f"{feature}: sliding-window attention is not supported")
    if model.training:
        raise ConfigurationError(f"{feature}: the model is in training mode; call model.eval()")
    inner = getattr(model, "model", None)
    if not isinstance(getattr(inner, "layers", None), nn.ModuleList) or not isinstance(
        getattr(model, "lm_head", None), nn.Linear
    ):
        raise ConfigurationError(f"{feature}: the model has no model.layers and lm_head")
    for name in ("embed_tokens", "rotary_emb", "norm"):
        if not isinstance(getattr(inner, name, None), nn.Module):
            raise ConfigurationError(
                f"{feature}: the model has no model.{name} (transformers >= 4.45 layout)"
            )
    for i, layer in enumerate(inner.layers):
        for part, names in LINEARS.items():
            for name in names:
                if not isinstance(getattr(getattr(layer, part, None), name, None), nn.Linear):
                    raise ConfigurationError(
                        f"{feature}: layer {i} has no nn.Linear {part}.{name} (not the "
                        "Qwen2/Llama layout)"
                    )
        for name in (*_NORMS, "mlp.act_fn"):
            part, _, leaf = name.rpartition(".")
            if not callable(getattr(getattr(layer, part) if part else layer, leaf, None)):
                raise ConfigurationError(f"{feature}: layer {i} has no {name}")
        # transformers < 4.46 keeps a rotary_emb in each attention, unused since 4.45
        # (the model's own passes the position embeddings down): not a part of ours
        allowed = {*LINEARS["self_attn"], "rotary_emb"}
        extra = sorted(set(dict(layer.self_attn.named_children())) - allowed)
        if extra:
            raise ConfigurationError(
                f"{feature}: layer {i} attention has unsupported parts {extra}"
            )
    return model
