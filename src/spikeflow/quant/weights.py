"""Quantization-aware training of synaptic weights (fake quantization with a
straight-through gradient).

A quantized layer's forward uses ``w_q = s·clamp(round(w/s), -q, q)`` with
``q = 2^(bits-1) - 1`` integer levels each side of zero (symmetric, so a zero weight,
a pruned synapse, stays exactly zero) and the scale ``s = max|w| / q`` per output
channel (or per layer), taken from the current weights at each forward. The gradient
passes straight through the rounding (``∂L/∂w := ∂L/∂w_q``), so the float weights keep
learning. :func:`integer_weights` gives the integers and scales a neuromorphic chip
takes.

``bits=1`` is binary (BinaryConnect, Courbariaux et al. 2015; XNOR-Net, Rastegari et
al. 2016): ``w_q = α·sign(w)`` with ``sign(0) = +1`` (BinaryConnect's deterministic
form), ``α = mean|w|`` per output channel (or per layer; XNOR-Net's scale), and the
gradient straight through where ``|w| <= 1``, zero beyond (BinaryConnect's hard-tanh
estimator; ``α`` is taken from the detached weights, as the other widths' scale).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvTransposeNd
from torch.nn.utils import parametrize

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError
from spikeflow.prune.reparam import REPARAMETERISATIONS, chosen_layers, reparameterise

__all__ = ["WeightQuantizer", "apply_weight_quantization", "integer_weights", "weight_bits"]

#: Bits a weight may have: 1 (binary: -α, α), 2 (ternary: -s, 0, s) to 16.
MIN_BITS, MAX_BITS = 1, 16
#: BinaryConnect's straight-through range of a binary weight: the gradient passes where
#: ``|w| <= BINARY_CLIP`` (the hard tanh's slope) and is zero beyond.
BINARY_CLIP = 1.0
#: How a weight's scale is set: ``max|w|/q`` of the current weights, or learned (LSQ).
WEIGHT_METHODS = ("fixed", "lsq")


def is_integer_from(value: object, low: int, high: int) -> bool:
    """Whether ``value`` is an integer from ``low`` to ``high`` (a Python or numpy
    integer, not a bool): a number of bits, or of fraction bits."""
    return (
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, numbers.Integral)
        and low <= value <= high
    )


def check_bits(value: object) -> int:
    """``value`` as an int if it is an integer number of bits from 1 (binary) to 16 (a
    Python or numpy integer, not a bool)."""
    if not is_integer_from(value, MIN_BITS, MAX_BITS):
        raise ConfigurationError(
            f"weight quantization: bits must be an integer from {MIN_BITS} (binary; 2: "
            f"ternary) to {MAX_BITS}, got {value!r}"
        )
    return int(value)


class WeightQuantizer(nn.Module):
    """Symmetric fake quantization of a weight to ``bits`` bits (see the module doc).

    ``per_channel``: one scale per output channel (``channel_dim`` of the weight: 0
    for linear layers and convolutions, 1 for transposed convolutions, whose weight is
    ``[in, out/groups, ...]``: with ``groups > 1`` each group's slice of dim 1 is its own
    output channels), else one per layer. The levels and scales are computed in float32
    or wider; a float16/bfloat16 weight is ``k·s`` rounded to its dtype. ``bits=1``:
    binary levels ``k = ±1`` (``sign(0) = +1``), ``s = mean|w|`` (module doc).
    """

    def __init__(self, bits: int, per_channel: bool = True, channel_dim: int = 0,
                 groups: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.bits = check_bits(bits)
        self.per_channel = check_flag("WeightQuantizer", "per_channel", per_channel)
        self.channel_dim = channel_dim
        self.groups = groups
        # Levels each side of zero; binary weights have one (±1) and no zero level.
        self.levels = max(2 ** (self.bits - 1) - 1, 1)
        # Saved with the weights, so a state dict of other settings is refused on load.
        self.register_buffer("settings", self._settings())

    def _settings(self) -> Tensor:
        return torch.tensor([self.bits, int(self.per_channel), self.channel_dim, self.groups])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        saved = state_dict.get(prefix + "settings")
        if isinstance(saved, Tensor) and saved.dim() == 1 and saved.shape[0] in (4, 6):
            mine = self._settings()
            if saved.shape != mine.shape or not torch.equal(saved.cpu(), mine):
                error_msgs = args[-1]
                error_msgs.append(f"{prefix}settings: {self._mismatch(saved.cpu())}")
                return
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _mismatch(self, saved: Tensor) -> str:
        """What differs between the saved ``settings`` buffer and this quantizer: bits
        and per_channel always, the others (channel_dim, groups, fixed or learned
        steps, asymmetric levels) where they differ."""
        from spikeflow.quant.lsq import settings_described

        theirs, ours = settings_described(saved), settings_described(self._settings())
        names = ("bits", "per_channel", "channel_dim", "groups", "method", "asymmetric")
        differ = [name for name in names if theirs[name] != ours[name]]

        def described(values: dict[str, Any]) -> str:
            shown = ["per_channel"] + [n for n in names[2:] if n in differ]
            options = ", ".join(f"{n}={values[n]}" for n in shown)
            return f"{values['bits']} bits ({options})"

        return (
            f"the state dict's weights were quantized to {described(theirs)}, this layer "
            f"quantizes to {described(ours)}: they differ in {', '.join(differ)}"
        )

    def _per_channel(self, w: Tensor, mean: bool = False) -> Tensor:
        """``max`` (or ``mean``) of ``w`` per output channel (or in all), broadcasting
        against ``w``."""
        if not self.per_channel or w.dim() < 2:
            return w.mean() if mean else w.amax()
        if self.channel_dim == 1 and self.groups > 1:  # grouped transposed convolution
            grouped = w.reshape(self.groups, w.shape[0] // self.groups, *w.shape[1:])
            others = (1, *range(3, grouped.dim()))
            reduced = grouped.mean(dim=others, keepdim=True) if mean else grouped.amax(
                dim=others, keepdim=True)  # fmt: skip
            return reduced.expand_as(grouped).reshape(w.shape)
        others = tuple(d for d in range(w.dim()) if d != self.channel_dim)
        return w.mean(dim=others, keepdim=True) if mean else w.amax(dim=others, keepdim=True)

    def scale(self, weight: Tensor) -> Tensor:
        """The step between two levels, ``max|w| / q`` (binary: ``mean|w|``; 1 for a
        channel of zeros), in float32 or wider; it broadcasts against ``weight``."""
        wide = torch.promote_types(weight.dtype, torch.float32)
        size = self._per_channel(weight.detach().to(wide).abs(), mean=self.bits == 1)
        return torch.where(size > 0, size / self.levels, torch.ones_like(size))

    def integers(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``(k, s)``: the integer levels (int32) and the scale, ``w_q = k·s``."""
        s = self.scale(weight)
        if self.bits == 1:
            return binary_levels(weight.detach(), self), s
        k = torch.round(weight.detach().to(s.dtype) / s).clamp(-self.levels, self.levels)
        return k.to(torch.int32), s

    def forward(self, weight: Tensor) -> Tensor:
        """The quantized weight (straight-through gradient; binary: only where
        ``|w| <= 1``)."""
        k, s = self.integers(weight)
        quantized = (k.to(s.dtype) * s).to(weight.dtype)
        if self.bits == 1:  # BinaryConnect's hard-tanh estimator
            passed = torch.where(weight.abs() <= BINARY_CLIP, weight, weight.detach())
            # quantized + 0, so the forward is exactly ±α: w + (α - w) is not when |w| << α
            return quantized + (passed - passed.detach())
        return weight + (quantized - weight).detach()

    def right_inverse(self, weight: Tensor) -> Tensor:
        """Assigning a weight stores it as it is (it is quantized when used)."""
        return weight

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel={self.per_channel}, channel_dim={self.channel_dim}"


REPARAMETERISATIONS.append(WeightQuantizer)


def binary_levels(weight: Tensor, quantizer: WeightQuantizer) -> Tensor:
    """``sign(w)`` with ``sign(0) = +1`` as int32; a channel (or layer) of zeros stays
    at level 0 (its binary weights would otherwise all become ``+s``)."""
    k = torch.where(weight >= 0, 1, -1).to(torch.int32)
    nonzero = quantizer._per_channel((weight != 0).to(torch.float32)) > 0
    return torch.where(nonzero, k, torch.zeros_like(k))


def apply_weight_quantization(
    model: nn.Module,
    bits: int = 8,
    per_channel: bool = True,
    layers: Iterable[nn.Module] | None = None,
    *,
    method: str = "fixed",
    asymmetric: bool = False,
) -> list[str]:
    """Quantize the weights of ``model``'s linear and convolution layers (or of
    ``layers``) to ``bits`` bits while it trains; returns the layer names.

    ``method="fixed"`` (default): symmetric levels with the scale ``max|w|/q`` of the
    current weights (:class:`WeightQuantizer`); ``bits=1``: binary
    ``mean|w|·sign(w)``. ``method="lsq"``: a learned step
    (:class:`~spikeflow.quant.LSQWeightQuantizer`, initialised from the weights as
    they are now), symmetric or, with ``asymmetric=True``, all ``2^bits`` codes around
    an integer zero point.

    Works on pruned layers too (apply pruning first): the pruned weight is quantized,
    and pruned synapses stay zero. :func:`spikeflow.prune.finalize` bakes the quantized
    weights into plain layers.

    Raises:
        ConfigurationError: bits outside 1-16, a pruned layer at 1 bit, an unknown
            method, asymmetric levels with fixed scales, no such layer, or a layer
            quantized already.
    """
    bits = check_bits(bits)
    if method not in WEIGHT_METHODS:
        raise ConfigurationError(
            f"weight quantization: method must be one of {WEIGHT_METHODS}, got {method!r}"
        )
    asymmetric = check_flag("apply_weight_quantization", "asymmetric", asymmetric)
    if asymmetric and method != "lsq":
        raise ConfigurationError(
            "weight quantization: asymmetric levels need learned steps (method='lsq'); "
            "the fixed scale max|w|/q is symmetric"
        )
    chosen = chosen_layers(model, layers, what="quantize", stack=True)
    from spikeflow.quant.loihi_grid import LoihiWeightGrid  # (it imports this module)

    for name, layer in chosen:
        if parametrize.is_parametrized(layer, "weight") and any(
            isinstance(p, (WeightQuantizer, LoihiWeightGrid)) for p in layer.parametrizations.weight
        ):
            names = ", ".join(type(p).__name__ for p in layer.parametrizations.weight)
            raise ConfigurationError(f"layer {name!r}: its weight is quantized already ({names})")
        if bits == 1 and parametrize.is_parametrized(layer, "weight"):
            from spikeflow.prune.reparam import SignedStrength, SoftThreshold

            if any(isinstance(p, (SignedStrength, SoftThreshold))
                   for p in layer.parametrizations.weight):  # fmt: skip
                raise ConfigurationError(
                    f"layer {name!r} is pruned, and binary weights (bits=1) have no zero "
                    "level: its pruned synapses would become ±s; prune with 2 bits or more"
                )

    def make(layer: nn.Module) -> WeightQuantizer:
        # A transposed convolution's weight is [in, out/groups, ...]: outputs on dim 1.
        transposed = isinstance(layer, _ConvTransposeNd)
        channel_dim, groups = (1, layer.groups) if transposed else (0, 1)
        if method == "lsq":
            from spikeflow.quant.lsq import LSQWeightQuantizer  # (it imports this module)

            with torch.no_grad():
                weight = layer.weight  # (pruned already, where pruning comes first)
            return LSQWeightQuantizer(bits, weight, per_channel, channel_dim, groups,
                                      asymmetric=asymmetric)  # fmt: skip
        return WeightQuantizer(bits, per_channel, channel_dim=channel_dim, groups=groups)

    return reparameterise(chosen, make)


@torch.no_grad()
def integer_weights(layer: nn.Module, *, name: str | None = None) -> tuple[Tensor, Tensor]:
    """``(k, s)`` of a quantized layer: int32 levels and the scale (float32 or wider; per
    output channel, shaped to broadcast, or one), with ``layer.weight == k·s`` rounded to
    the weight's dtype.

    Args:
        layer: a layer quantized by :func:`apply_weight_quantization`.
        name: what errors call the layer (its name in the model); by default its class
            and weight shape.

    Raises:
        ConfigurationError: the layer is not quantized, or some of its weights (before
            quantization) are NaN or infinite: they have no integer level.
    """
    if parametrize.is_parametrized(layer, "weight"):
        chain = layer.parametrizations.weight
        if isinstance(chain[-1], WeightQuantizer):
            # The quantizer's input: the chain before it (pruning, weight norm, ...), as
            # the forward computes it.
            if chain.is_tensor:
                weight, before = chain.original, list(chain)[:-1]
            else:
                originals = [getattr(chain, f"original{i}") for i in range(chain.ntensors)]
                weight, before = chain[0](*originals), list(chain)[1:-1]
            for reparam in before:
                weight = reparam(weight)
            shape = list(weight.shape)
            _check_finite(weight, f"layer {name!r}" if name is not None
                          else f"{type(layer).__name__} (weight {shape})")  # fmt: skip
            return chain[-1].integers(weight)
        from spikeflow.quant.loihi_grid import LoihiWeightGrid  # (it imports this module)

        if any(isinstance(p, LoihiWeightGrid) for p in chain):
            raise ConfigurationError(
                f"{type(layer).__name__} is not quantized by apply_weight_quantization: its "
                "weight is on Loihi's grid (spikeflow.quant.loihi_grid), whose integers are "
                "spikeflow.quant.loihi_grid.loihi_weight_integers(layer.weight)"
            )
    raise ConfigurationError(
        f"{type(layer).__name__} is not quantized (spikeflow.quant.apply_weight_quantization)"
    )


#: Bits of a weight on Loihi's grid (:class:`~spikeflow.quant.LoihiWeightGrid`): 8.
LOIHI_WEIGHT_BITS = 8


def weight_bits(layer: nn.Module) -> int | None:
    """The bits each entry of ``layer``'s weight takes once deployed: the ``bits`` of its
    :class:`WeightQuantizer` (:func:`apply_weight_quantization`), 8 for a weight on
    Loihi's grid (:func:`~spikeflow.quant.loihi_grid`), ``None`` for a weight that is
    not quantized (stored in its dtype). What the energy and memory reports price a
    quantized layer's weights at (``docs/quantization.md``); a layer whose quantization
    was baked in (:func:`spikeflow.prune.finalize`) is a float layer again.
    """
    if not isinstance(layer, nn.Module) or not parametrize.is_parametrized(layer, "weight"):
        return None
    from spikeflow.quant.loihi_grid import LoihiWeightGrid  # (it imports this module)

    for reparam in reversed(list(layer.parametrizations.weight)):
        if isinstance(reparam, WeightQuantizer):
            return reparam.bits
        if isinstance(reparam, LoihiWeightGrid):
            return LOIHI_WEIGHT_BITS
    return None


def _check_finite(weight: Tensor, what: str) -> None:
    """Refuse a weight with NaN or infinite entries: its scale (``max|w|/q``) and levels
    would be NaN or inf, cast to meaningless int32 values."""
    bad = ~torch.isfinite(weight)
    if bool(bad.any()):
        nan = int(torch.isnan(weight).sum())
        raise ConfigurationError(
            f"{what}: {int(bad.sum())} of {weight.numel()} weights are not finite "
            f"({nan} NaN, {int(bad.sum()) - nan} inf), so they have no integer level (the "
            "training diverged, or the weights were set so): fix or reset them first"
        )
