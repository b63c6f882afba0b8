"""Import a QANN written in the SpikeZIP-TF code's own layout (ViT or RoBERTa).

>>> snn, report = convert_spikezip_qann(qann, family="roberta", mask_argument="attention_mask")
>>> logits = snn.accumulate(tokens, steps=32, mask=attention_mask)[-1]   # = qann(...)

SpikeZIP-TF (You et al., ICML 2024) trains its quantised Transformers with quantiser
modules that carry ``s`` (the step), ``pos_max`` and ``neg_min`` (the integer bounds),
and optionally ``level`` (``pos_max - neg_min + 1``) and ``sym``, placed inside the
attention modules as ``quan_q/quan_k/quan_v/attn_quan/after_attn_quan/quan_proj`` (ViT,
beside ``qkv``/``proj``) or ``query_quan/key_quan/value_quan/attn_quan/after_attn_quan``
(RoBERTa, beside ``query``/``key``/``value``). SpikingJelly 2.0 converts such a model in
place (``SpikeZIPTFQANNRecipe``); here it is imported into spikeflow's own conversion:

1. every quantiser becomes a :class:`~spikeflow.conversion.signed.SymmetricQuant` with
   the same step and bounds (``s·clip(floor(x/s + 1/2), neg_min, pos_max)``), every
   ``nn.Embedding`` a :class:`TokenEmbedding` (the same lookup, on token ids that may
   arrive as floats), a quantiser with ``pos_max = "full"`` (SpikeZIP-TF's ``MyQuan``
   at a level of 512 or more, which returns its input) an identity, and an ``nn.ReLU``
   whose every use is an unsigned quantiser (``neg_min = 0``, which clips at 0 itself)
   or whose input is one's output (SpikeZIP-TF's own ``Sequential(MyQuan(sym=False),
   ReLU)``) is dropped;
2. the result is converted by :func:`~spikeflow.conversion.transformer.convert_transformer`
   (signed IF neurons, temporal-difference operators, spike products), traced through
   the model's own forward (a class token, a position embedding, a mask added to the
   scores: each enters once, at the first step);
3. biases follow SpikingJelly's schedule (``bias_steps="spikezip"``): a linear or
   convolution layer sends ``bias / level`` at each of its first ``level`` steps
   (``level`` of the model's first quantiser; of the attention's first quantiser for a
   RoBERTa attention's ``query``/``key``/``value``), a ViT attention's ``qkv`` and
   ``proj`` their whole bias at the first step (:class:`SpreadBias`). It is SpikeZIP-TF's
   RoBERTa code's (``LLLinear.steps = level``); SpikeZIP-TF's ViT release sends every
   bias whole at the first step (``LLLinear.steps = 1``): ``bias_steps=1``.

A Hugging Face ``RobertaModel``/``BertModel`` (or ``...ForSequenceClassification``) whose
self-attentions carry the quantisers converts as it is: its parts are called in a forward
that traces (:mod:`~spikeflow.conversion.spikezip_hf`).

The token ids and the attention mask are inputs sent once, at the first step (the
running sum of each input sequence is the input): the embedding's output is then the
embedding at the first step and exactly 0 after, and the mask is added to the first
step's scores, whose running sum the softmax's temporal difference keeps (SpikeZIP-TF's
own loop adds the mask at every step, ``t·mask`` after ``t`` steps: the same only for
masks of -1e4 or ``finfo.min``). The SNN's running sum equals the QANN's output once its
neurons have settled, up to floating-point rounding where a quantiser's input lies on
(within rounding of) a rounding tie ``x/s + 1/2`` whole.
"""

from __future__ import annotations

import copy
import numbers
from typing import Any, NamedTuple

import torch
from torch import Tensor, fx, nn
from torch.nn import functional as F

from spikeflow.base import check_time_major
from spikeflow.conversion._spikezip_checks import check_call, trace_named
from spikeflow.conversion.fold import set_submodule
from spikeflow.conversion.report import ConversionError, ConversionReport, ReportEntry
from spikeflow.conversion.signed import SymmetricQuant
from spikeflow.conversion.snn import run_time_folded
from spikeflow.conversion.spikezip_hf import (
    HFEncoderQANN,
    float_dtype,
    hugging_face_encoder,
    is_hugging_face,
    typed_inputs,
)
from spikeflow.conversion.temporal import StepBias, impulse_input
from spikeflow.conversion.transformer import DifferenceSNN, convert_transformer
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "SPIKEZIP_ATTENTION",
    "SpikeZIPConversion",
    "SpikeZIPSNN",
    "SpreadBias",
    "TokenEmbedding",
    "convert_spikezip_qann",
]

#: Per family: the attention's quantisers, and its layers whose bias follows the
#: attention's schedule (ViT: all at once; RoBERTa: over the attention's level).
SPIKEZIP_ATTENTION: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vit": (
        ("quan_q", "quan_k", "quan_v", "attn_quan", "after_attn_quan", "quan_proj"),
        ("qkv", "proj"),
    ),
    "roberta": (
        ("query_quan", "key_quan", "value_quan", "attn_quan", "after_attn_quan"),
        ("query", "key", "value"),
    ),
}
_QUANTIZER_ATTRS = ("s", "pos_max", "neg_min")


class SpikeZIPConversion(NamedTuple):
    """The result of :func:`convert_spikezip_qann`: the spiking network and the report."""

    snn: SpikeZIPSNN
    report: ConversionReport


@fx.wrap
def _lookup(ids: Tensor, weight: Tensor, padding_idx: int | None, name: str = "") -> Tensor:
    """``embedding(ids)`` for ids given as integers or as whole floats (a leaf of
    ``torch.fx`` traces, so that it becomes one temporal difference); ``name``: the
    embedding's module path, for the errors."""
    where = f"TokenEmbedding {name}" if name else "TokenEmbedding"
    if ids.is_floating_point():
        whole = ids.round()
        if not torch.equal(whole, ids):
            raise DTypeError(
                f"{where}: the token ids (their running sum over the steps) are not "
                "whole numbers; send the ids once, at the first step (impulse_input)"
            )
        ids = whole.long()
    count = weight.shape[0]
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= count):
        raise ShapeError(
            f"{where}: token ids must be in [0, {count}), got "
            f"{int(ids.min())}..{int(ids.max())} (ids sent at more than one step add up)"
        )
    return F.embedding(ids, weight, padding_idx)


class TokenEmbedding(nn.Module):
    """An ``nn.Embedding`` that also takes its ids as whole floats (the running sum of
    ids sent once); in a converted network its output is the embedding at the first
    step and exactly 0 after (SpikeZIP-TF's embedding).

    Args:
        embedding: the ``nn.Embedding`` (shared, not copied; without ``max_norm``,
            which would change its weights at each lookup).
        name: its module path in the model, named by the errors (ids out of range).
    """

    def __init__(self, embedding: nn.Embedding, name: str = "") -> None:
        super().__init__()
        if embedding.max_norm is not None:
            raise ConversionError(
                f"TokenEmbedding: an nn.Embedding with max_norm={embedding.max_norm} renormalises "
                "its weights in place at each lookup; the SNN would not be exact"
            )
        self.embedding, self.name = embedding, name

    def forward(self, ids: Tensor) -> Tensor:
        """``embedding(ids)``."""
        return _lookup(ids, self.embedding.weight, self.embedding.padding_idx, self.name)


class SpreadBias(StepBias):
    """:class:`~spikeflow.conversion.temporal.StepBias` with the bias spread over the
    first ``bias_steps`` steps of a sequence, ``bias / bias_steps`` at each (SpikeZIP-TF's
    ``realize_time``); its running sum is the layer's output on the input's running sum
    from step ``bias_steps`` on.

    Args:
        layer: an ``nn.Linear`` or ``nn.Conv1d/2d/3d`` (shared, not copied).
        bias_steps: over how many steps the bias is sent (>= 1).
    """

    def __init__(self, layer: nn.Module, bias_steps: int) -> None:
        super().__init__(layer)
        if isinstance(bias_steps, bool) or not isinstance(bias_steps, int) or bias_steps < 1:
            raise ConfigurationError(f"bias_steps must be a positive int, got {bias_steps!r}")
        self.bias_steps = bias_steps

    def forward(self, x: Tensor) -> Tensor:
        """``W x_t`` at every step, plus ``bias / bias_steps`` at the sequence's first
        ``bias_steps`` steps (counted across streamed chunks)."""
        seq = self._unfold(x, "the input")
        flat = seq.flatten(0, 1)
        layer = self.layer
        if isinstance(layer, nn.Linear):
            out = F.linear(flat, layer.weight)
        else:
            out = layer._conv_forward(flat, layer.weight, None)
        out = out.unflatten(0, seq.shape[:2])
        state = self._start(seq.shape[1])
        done = 0
        if state is not None:  # the steps sent in earlier chunks
            done = int(self._state_tensor(state, "sent", seq[0].flatten(1)[:, 0])[0])
        self._keep_state({"sent": seq.new_full((seq.shape[1],), float(done + seq.shape[0]))})
        left = max(0, min(self.bias_steps - done, seq.shape[0]))
        if layer.bias is not None and left:
            shape = (-1,) if isinstance(layer, nn.Linear) else (-1,) + (1,) * (out.dim() - 3)
            share = (layer.bias / self.bias_steps).reshape(shape)
            out = torch.cat([out[:left] + share, out[left:]])
        return self._fold(out)

    def extra_repr(self) -> str:
        return f"bias_steps={self.bias_steps}"


class _Inputs(nn.Module):
    """The model called on its main input alone (no mask)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Any:
        return self.model(x)


class _MaskedInputs(_Inputs):
    """The model called on its main input and a mask passed by keyword."""

    def __init__(self, model: nn.Module, mask_argument: str) -> None:
        super().__init__(model)
        self.mask_argument = mask_argument

    def forward(self, x: Tensor, mask: Tensor) -> Any:  # type: ignore[override]
        return self.model(x, **{self.mask_argument: mask})


class SpikeZIPSNN(DifferenceSNN):
    """A SpikeZIP-TF QANN converted by :func:`convert_spikezip_qann`.

    ``forward(x_seq, mask_seq=None)`` takes the input's sequence ``[T, B, ...]`` (token
    ids, integer or whole floats, or images; its running sum is the input, so the input
    goes at the first step and zeros after: :func:`~spikeflow.conversion.temporal.
    impulse_input`) and, when converted with a ``mask_argument``, the mask's sequence
    likewise; it returns the change of the output at each step. :meth:`accumulate`
    returns the running sums. A Hugging Face RoBERTa/BERT model's SNN takes the 0/1 mask
    ``[T, B, L]`` and the token types' sequence ``token_type_seq`` (zeros when None).

    Attributes:
        mask_argument: the model's keyword argument the mask is passed as (or None).
        family: ``"vit"`` or ``"roberta"``.
        token_types: whether it takes token types (a Hugging Face model's SNN).
    """

    def __init__(
        self,
        body: nn.Module,
        report: ConversionReport,
        family: str,
        mask_argument: str | None,
        token_types: bool = False,
    ) -> None:
        super().__init__(body, report)
        self.family = family
        self.mask_argument = mask_argument
        self.token_types = token_types

    def _dtype(self) -> torch.dtype:
        return float_dtype(self.body)

    def _as_input(self, x: Tensor) -> Tensor:
        """A float ``x`` as it is; integers (token ids) in the network's dtype when it
        holds them exactly, else in float64 (float16 holds whole numbers to 2048, bfloat16
        to 256: larger ids would be looked up as other tokens)."""
        if x.is_floating_point():
            return x
        cast = x.to(self._dtype())
        return cast if torch.equal(cast.to(x.dtype), x) else x.to(torch.float64)

    def forward(  # type: ignore[override]
        self, x_seq: Tensor, mask_seq: Tensor | None = None, token_type_seq: Tensor | None = None
    ) -> Tensor:
        """The output's change at each step ``[T, B, ...]``."""
        check_time_major(x_seq, "SpikeZIPSNN input", single_step=False)
        if x_seq.shape[0] == 0:
            raise ShapeError(f"SpikeZIPSNN needs at least one time step, got {tuple(x_seq.shape)}")
        if x_seq.shape[1] == 0:
            raise ShapeError(f"SpikeZIPSNN needs at least one sample, got {tuple(x_seq.shape)}")
        if self.token_types and x_seq.dim() != 3:
            raise ShapeError(
                f"SpikeZIPSNN: a Hugging Face model's token ids' sequence must be [T, B, L] "
                f"(ids [B, L] to accumulate), got {tuple(x_seq.shape)}"
            )
        seqs = [self._as_input(x_seq)]
        if (mask_seq is None) != (self.mask_argument is None):
            raise ConfigurationError(
                f"SpikeZIPSNN was converted with mask_argument={self.mask_argument!r}: "
                + ("pass mask_seq" if mask_seq is None else "it takes no mask")
            )
        if mask_seq is not None:
            check_time_major(mask_seq, "SpikeZIPSNN mask", single_step=False)
            if mask_seq.shape[0] == x_seq.shape[0] and mask_seq.shape[1] == 1:
                # one mask for every sample ([1, 1, L, L] causal, say): the batch's copies
                mask_seq = mask_seq.expand(x_seq.shape[0], x_seq.shape[1], *mask_seq.shape[2:])
            if mask_seq.shape[:2] != x_seq.shape[:2]:
                raise ShapeError(
                    f"SpikeZIPSNN: the mask's sequence {tuple(mask_seq.shape)} must have the "
                    f"input's steps and batch {tuple(x_seq.shape[:2])} (or a batch of 1)"
                )
            if self.token_types and mask_seq.shape[2:] != x_seq.shape[2:]:
                raise ShapeError(
                    f"SpikeZIPSNN: the 0/1 attention mask's sequence {tuple(mask_seq.shape)} "
                    f"must have the token ids' shape {tuple(x_seq.shape)} (one per token)"
                )
            seqs.append(mask_seq.to(self._dtype()))  # the network's, as the scores'
        if self.token_types:
            types = torch.zeros_like(x_seq) if token_type_seq is None else token_type_seq
            if types.shape != x_seq.shape:
                raise ShapeError(
                    f"SpikeZIPSNN: the token types' sequence {tuple(types.shape)} must have "
                    f"the token ids' shape {tuple(x_seq.shape)}"
                )
            seqs.append(self._as_input(types))
        elif token_type_seq is not None:
            raise ConfigurationError(
                "SpikeZIPSNN: token types are taken only by a Hugging Face model's SNN"
            )
        return run_time_folded(self.body, *seqs)

    @torch.no_grad()
    def accumulate(  # type: ignore[override]
        self,
        x: Tensor,
        steps: int,
        mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """The running sum of the output after each of ``1..steps`` steps
        ``[steps, B, ...]``, for the input ``x`` ``[B, ...]`` (and ``mask``,
        ``token_type_ids``) sent once."""
        x = self._as_input(x)
        mask_seq = None if mask is None else impulse_input(mask.to(self._dtype()), steps)
        types = token_type_ids
        if types is not None:
            types = impulse_input(self._as_input(types), steps)
        return self(impulse_input(x, steps), mask_seq, types).cumsum(0)


def _number(module: nn.Module, name: str, where: str) -> float:
    value = getattr(module, name)
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ConversionError(
                f"{where}.{name} must be one number, got a tensor of shape {tuple(value.shape)}"
            )
        value = float(value.detach())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConversionError(f"{where}.{name} must be a number, got {value!r}")
    return float(value)


def _quantizer(module: nn.Module, where: str) -> tuple[SymmetricQuant, int]:
    """The :class:`SymmetricQuant` of a SpikeZIP-TF quantiser and its level."""
    missing = [a for a in _QUANTIZER_ATTRS if not hasattr(module, a)]
    if missing:
        raise ConversionError(
            f"quantiser {where} ({type(module).__name__}) lacks {', '.join(missing)} (a "
            "SpikeZIP-TF quantiser has s, pos_max and neg_min)"
        )
    step = _number(module, "s", where)
    high, low = _number(module, "pos_max", where), _number(module, "neg_min", where)
    if not (0 < step < float("inf")):
        raise ConversionError(f"{where}.s must be positive and finite, got {step}")
    if high != int(high) or low != int(low) or not (low <= 0 < high):
        raise ConversionError(
            f"{where}: pos_max and neg_min must be integers with neg_min <= 0 < pos_max, "
            f"got pos_max={high:g}, neg_min={low:g}"
        )
    level = int(high) - int(low) + 1
    if hasattr(module, "level") and _number(module, "level", where) != level:
        raise ConversionError(
            f"{where}.level = {_number(module, 'level', where):g} does not match its bounds "
            f"(pos_max - neg_min + 1 = {int(high)} - ({int(low)}) + 1 = {level})"
        )
    s = module.s
    quant = SymmetricQuant(int(high), step, int(low), 0.5, learnable=False)
    like = s.detach() if isinstance(s, Tensor) else torch.tensor(step)
    quant.scale = like.abs().reshape(()).clone()
    return quant, level


def _is_quantizer(module: nn.Module, name: str, all_names: set[str]) -> bool:
    """A SpikeZIP-TF quantiser, or a module meant as one (named or half-built as one)."""
    return name.rsplit(".", 1)[-1] in all_names or any(
        hasattr(module, a) for a in ("pos_max", "neg_min")
    )


def _is_full(module: nn.Module) -> bool:
    """A SpikeZIP-TF ``MyQuan`` built with a level too high to quantise (``pos_max =
    "full"``): its forward returns its input."""
    return isinstance(getattr(module, "pos_max", None), str) and module.pos_max == "full"


def convert_spikezip_qann(
    model: nn.Module,
    family: str,
    *,
    mask_argument: str | None = None,
    bias_steps: str | int = "spikezip",
) -> SpikeZIPConversion:
    """Convert a QANN in SpikeZIP-TF's layout into a spiking network whose running sum
    equals the QANN's output once settled (see the module docstring).

    Args:
        model: the QANN (not modified; a copy is converted in eval mode). Its forward
            must trace with ``torch.fx`` and return one tensor; or a Hugging Face
            ``RobertaModel``, ``BertModel`` or their ``...ForSequenceClassification``
            whose self-attentions carry the quantisers (its parts are called in a
            forward that traces: :mod:`~spikeflow.conversion.spikezip_hf`; the SNN then
            takes the 0/1 mask ``[B, L]`` and ``token_type_ids`` too).
        family: ``"vit"`` or ``"roberta"``: the attention layout it must contain
            (:data:`SPIKEZIP_ATTENTION`).
        mask_argument: the keyword of ``model.forward`` that takes an attention mask
            (``"attention_mask"``), or None when the SNN runs without one.
        bias_steps: ``"spikezip"`` (default): SpikingJelly's schedule, SpikeZIP-TF's
            RoBERTa code's (module docstring); a positive int: every bias spread over
            that many steps (1: at the first step, as :func:`convert_transformer` and
            SpikeZIP-TF's ViT release).

    Returns:
        ``(snn, report)``: the :class:`SpikeZIPSNN` and the conversion report.

    Raises:
        ConversionError: ``family`` unknown; ``model.forward`` not callable with the
            input and one mask by ``mask_argument``; no attention of the family; an attention
            lacking one of its quantisers; a quantiser lacking ``s``, ``pos_max`` or
            ``neg_min``, or whose ``level`` does not match its bounds; a forward that
            does not trace (the message names the module whose forward failed, with
            what a Hugging Face model needs when one is called whole); a Hugging Face
            model :func:`~spikeflow.conversion.spikezip_hf.hugging_face_encoder`
            refuses; anything :func:`convert_transformer` refuses.
    """
    if family not in SPIKEZIP_ATTENTION:
        raise ConversionError(f"family must be 'vit' or 'roberta', got {family!r}")
    if not (bias_steps == "spikezip" or (isinstance(bias_steps, int) and bias_steps >= 1)):
        raise ConfigurationError(
            f"bias_steps must be 'spikezip' or a positive int, got {bias_steps!r}"
        )
    if mask_argument is not None and not (isinstance(mask_argument, str) and mask_argument):
        raise ConfigurationError(f"mask_argument must be a keyword name, got {mask_argument!r}")
    if is_hugging_face(model):  # RoBERTa/BERT: its parts called in a forward that traces
        model = hugging_face_encoder(model, family, mask_argument)
    check_call(model, mask_argument)
    qann = copy.deepcopy(model).eval()
    names, layers = SPIKEZIP_ATTENTION[family]
    every_name = {n for quantizers, _ in SPIKEZIP_ATTENTION.values() for n in quantizers}
    attention_level: dict[str, int] = {}  # attention path -> its first quantiser's level
    for path, module in list(qann.named_modules()):
        present = [n for n in names if hasattr(module, n)]
        for other, (other_names, _) in SPIKEZIP_ATTENTION.items():
            if other != family and len(present) < len(names):
                if all(hasattr(module, n) for n in other_names):
                    raise ConversionError(
                        f"{path or type(module).__name__} is a SpikeZIP-TF {other} attention "
                        f"({', '.join(other_names)}), not a {family} one: use family={other!r}"
                    )
        if present and len(present) < len(names):
            missing = ", ".join(n for n in names if n not in present)
            raise ConversionError(
                f"{family} attention {path or type(module).__name__} lacks {missing} (a "
                f"SpikeZIP-TF {family} attention has {', '.join(names)})"
            )
        if present:
            attention_level[path] = -1
    if not attention_level:
        raise ConversionError(
            f"{type(model).__name__} has no SpikeZIP-TF {family} attention (a module with "
            f"{', '.join(names)}); family={family!r} is the wrong layout or the model is not "
            "a SpikeZIP-TF QANN"
        )
    first_level = None
    passed: list[tuple[str, str]] = []  # quantisers with pos_max = "full": identities
    for path, module in list(qann.named_modules()):
        if path and _is_full(module):
            set_submodule(qann, path, nn.Identity())
            passed.append((path, type(module).__name__))
        elif path and _is_quantizer(module, path, every_name):
            quant, level = _quantizer(module, path)
            set_submodule(qann, path, quant)
            first_level = level if first_level is None else first_level
            owner = path.rpartition(".")[0]
            if attention_level.get(owner) == -1:
                attention_level[owner] = level
        elif isinstance(module, nn.Embedding):
            set_submodule(qann, path, TokenEmbedding(module, path))
    wrapper = _Inputs(qann) if mask_argument is None else _MaskedInputs(qann, mask_argument)
    typed = isinstance(qann, HFEncoderQANN)
    if typed:  # the ids, the mask and the token types
        wrapper = typed_inputs(qann, mask_argument)
    dropped = _drop_relus(wrapper)
    snn, report = convert_transformer(wrapper)
    for name, why in dropped.items():
        _amend(report, name, "nn.ReLU", "kept", f"dropped: {why}")
    for path, kind in passed:
        detail = "passed through: pos_max = 'full' (a SpikeZIP-TF quantiser returns its input)"
        _amend(report, f"model.{path}", kind, "kept", detail)
    schedule = _bias_schedule(qann, family, layers, attention_level, first_level, bias_steps)
    _spread_biases(snn.body, schedule, report)
    report.entries = [  # the model's own module paths (the wrapper's "model." dropped)
        _unwrapped(e) for e in report.entries
    ]
    body = SpikeZIPSNN(snn.body, report, family, mask_argument, token_types=typed)
    return SpikeZIPConversion(body, report)


def _unsigned(wrapper: nn.Module, node: Any) -> bool:
    """Whether ``node`` is a call of an unsigned :class:`SymmetricQuant` (output >= 0)."""
    return (
        isinstance(node, fx.Node)
        and node.op == "call_module"
        and isinstance(wrapper.get_submodule(node.target), SymmetricQuant)
        and wrapper.get_submodule(node.target).min_level == 0
    )


def _drop_relus(wrapper: nn.Module) -> dict[str, str]:
    """Replace by ``nn.Identity`` each ``nn.ReLU`` whose every call feeds only unsigned
    quantisers (``q(relu(x)) = q(x)`` when ``neg_min = 0``: SpikingJelly's example
    layout) or takes an unsigned quantiser's output (``relu(q(x)) = q(x)``: SpikeZIP-TF's
    own ``Sequential(MyQuan(sym=False), ReLU)``); their names and why."""
    graph = trace_named(wrapper)
    verdict: dict[str, str | None] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(wrapper.get_submodule(node.target), nn.ReLU):
            continue
        users = list(node.users)
        why = None
        if node.args and _unsigned(wrapper, node.args[0]):
            why = "its input is an unsigned quantiser's output (>= 0)"
        elif users and all(_unsigned(wrapper, u) for u in users):
            why = "every use is an unsigned quantiser"
        earlier = verdict.get(node.target, why)
        verdict[node.target] = why if earlier is not None and why is not None else None
    dropped = {name: why for name, why in verdict.items() if why is not None}
    for name in dropped:
        set_submodule(wrapper, name, nn.Identity())
    return dropped


def _bias_schedule(
    qann: nn.Module,
    family: str,
    layers: tuple[str, ...],
    attention_level: dict[str, int],
    first_level: int | None,
    bias_steps: str | int,
) -> dict[str, int]:
    """Over how many steps each linear/conv layer (by its path in the wrapper) sends
    its bias."""
    schedule: dict[str, int] = {}
    default = bias_steps if isinstance(bias_steps, int) else (first_level or 1)
    for path, module in qann.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            schedule[f"model.{path}"] = default
    if bias_steps == "spikezip":
        for path, level in attention_level.items():
            for layer in layers:
                inner = f"model.{path}.{layer}" if path else f"model.{layer}"
                if inner in schedule:
                    own = level if level > 0 else default  # -1: no bounded quantiser
                    schedule[inner] = 1 if family == "vit" else own
    return schedule


def _spread_biases(body: nn.Module, schedule: dict[str, int], report: ConversionReport) -> None:
    """Swap each :class:`StepBias` whose layer's schedule is over more than one step for
    a :class:`SpreadBias` (a call of a shared layer gets the layer's schedule)."""
    steps_of_layer: dict[int, int] = {}
    for name, module in body.named_modules():
        if type(module) is StepBias and name in schedule:
            steps_of_layer[id(module.layer)] = schedule[name]
    for name, module in list(body.named_modules()):
        if type(module) is not StepBias or module.layer.bias is None:
            continue
        steps = steps_of_layer.get(id(module.layer), 1)
        if steps > 1:
            set_submodule(body, name, SpreadBias(module.layer, steps))
            detail = f"weights every step, bias over the first {steps} steps"
            _amend(report, name, f"nn.{type(module.layer).__name__}", "replaced", detail)


def _unwrapped(entry: ReportEntry) -> ReportEntry:
    """The entry named by the model's own module path (without the wrapper's "model."),
    an embedding's lookup said as such."""
    name = entry.name.removeprefix("model.")
    if entry.source == f"{__name__}._lookup":
        detail = "TokenEmbedding: the embedding at the first step, exactly 0 after (ids sent once)"
        return ReportEntry(name, "nn.Embedding", entry.action, detail)
    return ReportEntry(name, entry.source, entry.action, entry.detail)


def _amend(report: ConversionReport, name: str, source: str, action: Any, detail: str) -> None:
    """Rewrite the report's entry for ``name`` (or add one)."""
    for i, entry in enumerate(report.entries):
        if entry.name == name:
            report.entries[i] = ReportEntry(name, source, action, detail)
            return
    report.add(name, source, action, detail)
