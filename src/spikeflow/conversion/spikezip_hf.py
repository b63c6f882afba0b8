"""Hugging Face RoBERTa / BERT encoders whose self-attentions carry SpikeZIP-TF's
quantisers, as :func:`~spikeflow.conversion.spikezip.convert_spikezip_qann` takes them.

>>> snn, report = convert_spikezip_qann(hf_qann, family="roberta", mask_argument="attention_mask")
>>> logits = snn.accumulate(ids, steps=32, mask=attention_mask)[-1]  # = hf_qann(...).logits

A ``transformers`` ``RobertaModel`` / ``BertModel`` (or their ``...ForSequenceClassification``)
does not trace with ``torch.fx`` as it is: its forward checks its inputs, builds the mask
and dispatches the attention on values, computes RoBERTa's position ids from the token ids
and returns a ``ModelOutput``. :class:`HFEncoderQANN` holds the model's own modules
(under their own names) and calls them as the model's forward does, in a forward that
traces:

* the embeddings: ``word_embeddings(ids) + token_type_embeddings(token_type_ids) +
  position_embeddings(positions)``, then ``LayerNorm``; the positions are computed from
  the ids as Hugging Face computes them (RoBERTa: ``padding_idx + 1, 2, ...`` over the
  tokens that are not padding, ``padding_idx`` on padding; BERT: ``0..L-1``) in one
  function of the ids, which the conversion turns into one temporal difference (sent at
  the first step);
* the additive mask ``(1 - attention_mask[:, None, None, :]) · finfo.min`` from the 0/1
  mask ``[B, L]``;
* per layer: ``attention.self(hidden, attention_mask=additive)`` (the model's own
  quantised self-attention; its first output), ``attention.output``, ``intermediate``,
  ``output``;
* the head: RoBERTa's ``classifier`` (token 0, dense, tanh, out_proj), BERT's pooler,
  dropout and ``classifier``; a bare ``RobertaModel``/``BertModel`` returns its last
  hidden state (its pooler is not called).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, fx, nn

from spikeflow.conversion.report import ConversionError

__all__ = [
    "HF_ENCODERS",
    "HFEncoderQANN",
    "float_dtype",
    "hugging_face_encoder",
    "is_hugging_face",
]

#: The Hugging Face classes that convert, and their head.
HF_ENCODERS: dict[str, str] = {
    "RobertaModel": "none",
    "RobertaForSequenceClassification": "roberta",
    "BertModel": "none",
    "BertForSequenceClassification": "bert",
}


def is_hugging_face(module: nn.Module) -> bool:
    """Whether ``module`` is a Hugging Face ``transformers.PreTrainedModel``."""
    return any(
        c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers.")
        for c in type(module).__mro__
    )


@fx.wrap
def _position_ids(ids: Tensor, padding_idx: int | None) -> Tensor:
    """Hugging Face's position ids for ``ids`` ``[B, L]``, in the ids' dtype: RoBERTa's
    (``padding_idx`` given) count the tokens that are not padding from ``padding_idx + 1``
    and give padding ``padding_idx``; BERT's are ``0..L-1`` (a leaf of ``torch.fx``
    traces: one temporal difference)."""
    if padding_idx is None:
        return torch.arange(ids.shape[1], device=ids.device).to(ids.dtype).expand_as(ids)
    real = (ids != padding_idx).to(ids.dtype)
    return torch.cumsum(real, dim=1) * real + padding_idx


class HFEncoderQANN(nn.Module):
    """A Hugging Face RoBERTa/BERT encoder (or sequence classifier) as a module whose
    forward traces with ``torch.fx`` (see the module docstring); built by
    :func:`hugging_face_encoder`, it holds the model's own children under their names
    (shared, not copied) and returns one tensor: the logits (the last hidden state for
    a bare encoder).

    Attributes:
        source: the Hugging Face class name.
        head: ``"roberta"``, ``"bert"`` or ``"none"``.
        base: the attribute holding the encoder (``"roberta"``, ``"bert"``; ``""``: self).
        padding_idx: RoBERTa's padding id (positions counted past it), None for BERT.
    """

    def __init__(self, model: nn.Module, head: str, padding_idx: int | None) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        self.source, self.head, self.padding_idx = type(model).__name__, head, padding_idx
        prefix = getattr(model, "base_model_prefix", "")
        self.base = prefix if head != "none" and hasattr(model, prefix) else ""
        self.lowest = torch.finfo(float_dtype(model)).min  # the masked score, as Hugging Face's

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """The logits (or last hidden state) for ``input_ids`` ``[B, L]``, the 0/1
        ``attention_mask`` ``[B, L]`` and the ``token_type_ids`` (zeros when None)."""
        base = getattr(self, self.base) if self.base else self
        embeddings = base.embeddings
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = embeddings.word_embeddings(input_ids)
        hidden = hidden + embeddings.token_type_embeddings(token_type_ids)
        positions = _position_ids(input_ids, self.padding_idx)
        hidden = hidden + embeddings.position_embeddings(positions)
        hidden = embeddings.dropout(embeddings.LayerNorm(hidden))
        additive = None
        if attention_mask is not None:
            additive = (1.0 - attention_mask[:, None, None, :]) * self.lowest
        for layer in base.encoder.layer:
            attended = layer.attention.self(hidden, attention_mask=additive)
            if isinstance(attended, (tuple, list)):  # (output, weights), as Hugging Face's
                attended = attended[0]
            attended = layer.attention.output(attended, hidden)
            hidden = layer.output(layer.intermediate(attended), attended)
        if self.head == "roberta":
            return self.classifier(hidden)
        if self.head == "bert":
            return self.classifier(self.dropout(base.pooler(hidden)))
        return hidden


def float_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of ``model``'s first floating-point parameter (the default dtype when
    it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _refuse(model: nn.Module, family: str, mask_argument: str | None) -> None:
    """A :class:`ConversionError` for what the SNN cannot be (see
    :func:`hugging_face_encoder`)."""
    name = type(model).__name__
    if name not in HF_ENCODERS:
        raise ConversionError(
            f"{name} is a Hugging Face model that convert_spikezip_qann does not take: "
            f"it converts {', '.join(HF_ENCODERS)} (their encoder layout, one tensor out)"
        )
    if family != "roberta":
        raise ConversionError(
            f"{name}: a Hugging Face RoBERTa/BERT attention is SpikeZIP-TF's roberta "
            f"layout (query, key, value): use family='roberta', not {family!r}"
        )
    if mask_argument not in (None, "attention_mask"):
        raise ConversionError(
            f"{name} takes its mask as attention_mask, got mask_argument={mask_argument!r}"
        )
    config = model.config
    for flag, why in (
        ("is_decoder", "a decoder (causal self-attention, a key/value cache)"),
        ("add_cross_attention", "cross-attention to encoder states"),
        ("output_attentions", "the attention weights as outputs"),
        ("output_hidden_states", "every layer's hidden states as outputs"),
    ):
        if getattr(config, flag, False):
            raise ConversionError(
                f"{name} has config.{flag}=True: {why} is not converted (the SNN takes the "
                "token ids, one mask and the token types, and returns one tensor)"
            )
    kind = getattr(config, "position_embedding_type", "absolute")
    if kind != "absolute":
        raise ConversionError(
            f"{name} has position_embedding_type={kind!r}: only absolute positions convert"
        )


def _refuse_unmasked_attention(model: nn.Module, mask_argument: str | None) -> None:
    """A :class:`ConversionError` for a mask under an attention implementation whose
    mask is not the additive one (checked once the self-attentions are known to be
    SpikeZIP-TF's)."""
    name, config = type(model).__name__, model.config
    attention = getattr(config, "_attn_implementation", None) or "eager"
    if mask_argument is not None and attention != "eager":
        raise ConversionError(
            f"{name} has config._attn_implementation={attention!r}: Hugging Face then hands "
            "each attention.self a boolean mask (or None), not the additive one (0 or "
            "finfo.min) SpikeZIP-TF's attention adds to its scores, so the model's own "
            "forward does not mask the padding and the SNN would not equal it; build and "
            "train it with attn_implementation='eager' (model.set_attn_implementation("
            "'eager')), or convert it without mask_argument"
        )


def hugging_face_encoder(model: nn.Module, family: str, mask_argument: str | None) -> nn.Module:
    """The :class:`HFEncoderQANN` of a Hugging Face RoBERTa/BERT model (one of
    :data:`HF_ENCODERS`) whose every self-attention carries SpikeZIP-TF's quantisers.

    Raises:
        ConversionError: another Hugging Face class; ``family`` not ``"roberta"``; a
            ``mask_argument`` other than ``"attention_mask"``; a decoder, cross-attention,
            ``output_attentions``/``output_hidden_states`` or relative positions in its
            config; a mask with ``config._attn_implementation`` other than ``"eager"``
            (Hugging Face's mask is then not additive); a self-attention lacking one of
            ``query_quan``, ``key_quan``, ``value_quan``, ``attn_quan``,
            ``after_attn_quan`` (named by its path).
    """
    from spikeflow.conversion.spikezip import SPIKEZIP_ATTENTION  # (it imports this module)

    _refuse(model, family, mask_argument)
    quantizers = SPIKEZIP_ATTENTION["roberta"][0]
    head = HF_ENCODERS[type(model).__name__]
    base = getattr(model, model.base_model_prefix) if head != "none" else model
    prefix = f"{model.base_model_prefix}." if head != "none" else ""
    for i, layer in enumerate(base.encoder.layer):
        attention = layer.attention.self
        missing = [q for q in quantizers if not hasattr(attention, q)]
        if missing:
            raise ConversionError(
                f"{prefix}encoder.layer.{i}.attention.self ({type(attention).__name__}) lacks "
                f"{', '.join(missing)}: replace each layer's attention.self by SpikeZIP-TF's "
                "quantised self-attention (query, key, value and their quantisers)"
            )
    _refuse_unmasked_attention(model, mask_argument)
    embeddings = base.embeddings
    roberta = hasattr(type(embeddings), "create_position_ids_from_input_ids")
    padding_idx = getattr(embeddings, "padding_idx", None) if roberta else None
    if roberta and padding_idx is None:
        raise ConversionError(
            f"{prefix}embeddings ({type(embeddings).__name__}) has no padding_idx to count "
            "RoBERTa's positions from: set config.pad_token_id"
        )
    return HFEncoderQANN(model, head, padding_idx)


class _TypedInputs(nn.Module):
    """:class:`HFEncoderQANN` called on the ids and the token types (no mask)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, token_types: Tensor) -> Any:
        return self.model(x, token_type_ids=token_types)


class _MaskedTypedInputs(_TypedInputs):
    """:class:`HFEncoderQANN` called on the ids, the 0/1 mask and the token types."""

    def forward(self, x: Tensor, mask: Tensor, token_types: Tensor) -> Any:  # type: ignore[override]
        return self.model(x, attention_mask=mask, token_type_ids=token_types)


def typed_inputs(model: nn.Module, mask_argument: str | None) -> nn.Module:
    """The wrapper the SNN's graph is traced from (ids, [mask,] token types)."""
    return _TypedInputs(model) if mask_argument is None else _MaskedTypedInputs(model)
