"""Signed spike encoding and scale calibration for converted decoder LLMs.

:class:`SignedSpikeEncoder` turns a float activation ``x`` (channels last) into ``T``
steps of signed spikes ``±θ_c``, one channel's threshold ``θ_c`` per feature, whose sum
over the steps is ``θ_c · clip(round(x / θ_c), -T, T)``: the quantisation a QCFS-style
ANN would apply at that point (SpikingJelly 2.0's ``SignedQCFSSequenceEncoder``). The
spikes come from two integrate-and-fire neurons per value, one for ``relu(x)`` and one
for ``relu(-x)``, each fed ``1/T`` of its value per step, with a membrane that starts
half a threshold up and a soft reset, so spike ``t`` of a neuron falls when the running
input passes ``(k - 1/2) θ``. Where floating-point rounding of the membrane (or a tie
at exactly ``k + 1/2``, which ``round`` sends to the even count) gives a count other than
the rounded one, that neuron fires its ``n`` spikes in the first ``n`` steps instead,
so the sum is always the quantised value.

:class:`ChannelObserver` turns the per-channel maximum (or a quantile) of ``|x|`` seen on
calibration tokens into thresholds ``θ_c = max_c / levels`` (so ``levels`` spike counts
span the observed range).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from spikeflow._files import load_weights_only
from spikeflow.conversion._checks import check_positive_int
from spikeflow.data.cache import atomic_write_bytes
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["LLMCalibration", "SignedSpikeEncoder", "signed_quantize", "signed_quantize_sg"]

SITES = ("query", "key", "value", "mlp")
CALIBRATION_FORMAT = "spikeflow-llm-calibration-v1"


def signed_quantize(x: Tensor, scale: Tensor, steps: int) -> Tensor:
    """``scale · clip(round(x / scale), -steps, steps)`` with ``scale`` per channel (the
    last dim of ``x``): what a :class:`SignedSpikeEncoder`'s spikes sum to."""
    return torch.round(x / scale).clamp(-steps, steps) * scale


class _SpikeCount(torch.autograd.Function):
    """``round(clamp(x, 0, T))`` forward; backward passes the gradient where ``0 <= x <= T``
    (a multi-level spike count with a straight-through window, SpikingJelly's
    ``multi_level_spike_count``)."""

    @staticmethod
    def forward(ctx, x: Tensor, steps: int) -> Tensor:
        ctx.save_for_backward(x)
        ctx.steps = steps
        return torch.round(x.clamp(0, steps))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        inside = (x >= 0) & (x <= ctx.steps)
        return grad * inside.to(grad.dtype), None


def signed_quantize_sg(x: Tensor, scale: Tensor, steps: int) -> Tensor:
    """:func:`signed_quantize` with a surrogate gradient (``mode="qcfs_sg"``): the counts
    ``round(clamp(relu(±x)/θ, 0, T))`` of the two neurons, each passing the gradient
    straight through where its ``relu(±x)/θ`` lies in ``[0, T]``. So ``dy/dx`` is 1 where
    ``0 < |x| <= T·θ`` and 0 where the count is clipped (and at ``x = 0``, where both
    ``relu`` have slope 0), as SpikingJelly's ``SignedQCFSSequenceEncoder.reconstruct``.
    ``scale`` gets no gradient (a fixed threshold)."""
    scale = scale.detach()
    positive = _SpikeCount.apply(torch.relu(x) / scale, steps)
    negative = _SpikeCount.apply(torch.relu(-x) / scale, steps)
    return (positive - negative) * scale


def _if_spikes(value: Tensor, threshold: Tensor, steps: int) -> Tensor:
    """Spikes ``[T, ...]`` (0/1) of an IF neuron fed ``value / T`` per step (``value >= 0``),
    membrane starting at 0 with a firing offset of ``θ/2`` and soft reset; counts fixed to
    ``clip(round(value / θ), 0, T)`` where rounding of the membrane disagrees."""
    step_input = value / steps
    offset = 0.5 * threshold
    membrane = torch.zeros_like(value)
    spikes = []
    for _ in range(steps):
        membrane = membrane + step_input
        spike = (membrane + offset - threshold >= 0).to(value.dtype)
        membrane = membrane - spike * threshold
        spikes.append(spike)
    seq = torch.stack(spikes)
    wanted = torch.round(value / threshold).clamp(0, steps)
    wrong = seq.sum(0).ne(wanted)
    if bool(wrong.any()):
        time = torch.arange(steps, device=value.device, dtype=value.dtype)
        early = (time.reshape(steps, *([1] * value.dim())) < wanted).to(value.dtype)
        seq = torch.where(wrong, early, seq)
    return seq


class SignedSpikeEncoder(nn.Module):
    """Encode ``x [..., C]`` as ``T`` steps of signed spikes ``±θ_c`` ``[T, ..., C]``
    summing to :func:`signed_quantize` ``(x, θ, T)`` (see the module docstring).

    Args:
        scale: the per-channel thresholds ``θ`` ``[C]``, finite and > 0.
        steps: ``T``, the number of steps (and the largest spike count).
        name: what error messages call it (e.g. ``'layer 3 query'``).
    """

    def __init__(self, scale: Tensor, steps: int, name: str = "encoder") -> None:
        super().__init__()
        self.steps = check_positive_int(steps, "steps (T)")
        self.name = name
        if not isinstance(scale, Tensor) or scale.dim() != 1 or scale.numel() == 0:
            raise ShapeError(f"{name}: scale must be a 1-D tensor [C], got {scale!r}")
        if not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
            raise ConfigurationError(f"{name}: scale must be finite and > 0 in every channel")
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        """The spike train ``[T, *x.shape]`` (values ``0`` or ``±θ_c``)."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise DTypeError(f"{self.name}: input must be a floating-point tensor")
        if x.dim() == 0 or x.shape[-1] != self.scale.numel():
            raise ShapeError(
                f"{self.name}: input's last dim must be the {self.scale.numel()} channels of "
                f"the scale, got shape {tuple(x.shape)}"
            )
        scale = self.scale.to(x.dtype)
        positive = _if_spikes(torch.relu(x), scale, self.steps)
        negative = _if_spikes(torch.relu(-x), scale, self.steps)
        return (positive - negative) * scale

    def extra_repr(self) -> str:
        return f"{self.name}, channels={self.scale.numel()}, steps={self.steps}"


@dataclass(frozen=True)
class LLMCalibration:
    """Per-channel spike thresholds of a decoder LLM, from :func:`calibrate_causal_lm`.

    Attributes:
        input_scale: ``[hidden]``, for the token embeddings.
        layer_scales: one dict per decoder layer with ``'query'``, ``'key'`` (after the
            rotary embedding, ``[heads * head_dim]`` / ``[kv_heads * head_dim]``),
            ``'value'`` and ``'mlp'`` (the gated product, ``[intermediate]``).
        levels: the spike counts the observed maxima were divided into.
        tokens: how many (unpadded) calibration tokens were seen.
        quantile: the quantile of ``|x|`` the thresholds come from (1: the maximum).
    """

    input_scale: Tensor
    layer_scales: tuple[dict[str, Tensor], ...]
    levels: int
    tokens: int
    quantile: float = 1.0

    def state_dict(self) -> dict[str, object]:
        """Plain tensors and numbers (for ``torch.save``; ``weights_only=True`` loads it)."""
        tensors = {"input": self.input_scale}
        for i, group in enumerate(self.layer_scales):
            tensors.update({f"layer.{i}.{site}": group[site] for site in SITES})
        meta = {"levels": self.levels, "tokens": self.tokens, "quantile": self.quantile}
        return {"format": CALIBRATION_FORMAT, **meta, "tensors": tensors}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, object]) -> LLMCalibration:
        """The inverse of :meth:`state_dict`. Checks every entry: each layer has every
        site, each scale is a 1-D floating tensor, finite and > 0, ``levels >= 1``,
        ``tokens >= 0``, ``0 < quantile <= 1``; a ``ConfigurationError`` names the
        entry that is not."""
        if not isinstance(state, Mapping):
            raise ConfigurationError(
                f"calibration state must be a dict, got {type(state).__name__}"
            )
        if state.get("format", CALIBRATION_FORMAT) != CALIBRATION_FORMAT:
            raise ConfigurationError(
                f"calibration state has format {state['format']!r}, expected {CALIBRATION_FORMAT!r}"
            )
        tensors = state.get("tensors")
        if not isinstance(tensors, Mapping) or "input" not in tensors:
            raise ConfigurationError("calibration state has no 'tensors' with an 'input' scale")
        count = (len(tensors) - 1) // len(SITES)
        layers = []
        for i in range(count):
            missing = [s for s in SITES if f"layer.{i}.{s}" not in tensors]
            if missing:
                raise ConfigurationError(f"calibration state: layer {i} lacks {missing}")
            layers.append({s: tensors[f"layer.{i}.{s}"] for s in SITES})
        if len(tensors) != 1 + count * len(SITES):
            raise ConfigurationError("calibration state has tensors of no known site")
        for name, scale in tensors.items():
            if (
                not isinstance(scale, Tensor)
                or scale.dim() != 1
                or not scale.is_floating_point()
                or not bool(torch.isfinite(scale).all())
                or not bool((scale > 0).all())
            ):
                raise ConfigurationError(
                    f"calibration state: scale {name!r} must be a 1-D floating tensor, "
                    f"finite and > 0, got {_describe(scale)}"
                )
        missing = [key for key in ("levels", "tokens") if key not in state]
        if missing:
            raise ConfigurationError(f"calibration state lacks {missing}")
        levels, tokens, quantile = state["levels"], state["tokens"], state.get("quantile", 1.0)
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ConfigurationError(
                f"calibration state: levels must be an int >= 1, got {levels!r}"
            )
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ConfigurationError(
                f"calibration state: tokens must be an int >= 0, got {tokens!r}"
            )
        if (
            isinstance(quantile, bool)
            or not isinstance(quantile, (int, float))
            or not (0 < quantile <= 1)
        ):
            raise ConfigurationError(
                f"calibration state: quantile must be a number in (0, 1], got {quantile!r}"
            )
        return cls(tensors["input"], tuple(layers), levels, tokens, float(quantile))

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`state_dict` to ``path`` with ``torch.save``, atomically (a
        temporary file in the same folder, then ``os.replace``: an interrupted save
        leaves the old file or none, never a truncated one). Returns the path."""
        path = Path(path)
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> LLMCalibration:
        """Read a file :meth:`save` wrote (``weights_only=True``: no pickled code runs).
        A missing, truncated or foreign file raises a ``ConfigurationError`` naming it."""
        path = Path(path)
        state = load_weights_only(
            path, "calibration file", "truncated or not a torch.save file?", map_location
        )
        if not isinstance(state, Mapping) or state.get("format") != CALIBRATION_FORMAT:
            raise ConfigurationError(
                f"{path} is not a spikeflow LLM calibration (expected format "
                f"{CALIBRATION_FORMAT!r})"
            )
        try:
            return cls.from_state_dict(state)
        except ConfigurationError as error:
            raise ConfigurationError(f"calibration file {path}: {error}") from error


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


class ChannelObserver:
    """Per channel, the ``quantile`` of ``|x|`` over the valid tokens seen: the running
    maximum for ``quantile=1``, else every token's ``|x|`` is kept (tokens x channels
    values) and the quantile taken at the end (linear interpolation, as
    ``torch.quantile``)."""

    def __init__(self, quantile: float = 1.0) -> None:
        self.quantile = quantile
        self.value: Tensor | None = None
        self.rows: list[Tensor] = []
        self.tokens = 0

    def update(self, x: Tensor, valid: Tensor) -> None:
        """``x [B, S, C]``; ``valid [B, S]`` bool (padding excluded)."""
        rows = x.detach()[valid].abs()
        self.tokens += int(rows.shape[0])
        if rows.shape[0] == 0:
            return
        if self.quantile < 1.0:
            self.rows.append(rows)
            return
        peak = rows.amax(0)
        self.value = peak if self.value is None else torch.maximum(self.value, peak)

    def bound(self) -> Tensor | None:
        """The per-channel quantile (None before any token)."""
        if self.quantile == 1.0 or not self.rows:
            return self.value
        ordered = torch.cat(self.rows).sort(0).values
        position = self.quantile * (ordered.shape[0] - 1)
        low = int(position)
        high = min(low + 1, ordered.shape[0] - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def scale(self, levels: int, what: str) -> Tensor:
        """``bound / levels``, floored at 1e-6 (a channel that stayed 0 still gets a
        threshold)."""
        bound = self.bound()
        if bound is None:
            raise ConfigurationError(f"calibration saw no valid token at {what}")
        return (bound / levels).clamp_min(1e-6)
