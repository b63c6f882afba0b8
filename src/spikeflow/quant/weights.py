"""Quantization-aware training of synaptic weights (fake quantization with a
straight-through gradient).

A quantized layer's forward uses ``w_q = s·clamp(round(w/s), -q, q)`` with
``q = 2^(bits-1) - 1`` integer levels each side of zero (symmetric, so a zero weight,
a pruned synapse, stays exactly zero) and the scale ``s = max|w| / q`` per output
channel (or per layer), taken from the current weights at each forward. The gradient
passes straight through the rounding (``∂L/∂w := ∂L/∂w_q``), so the float weights keep
learning. :func:`integer_weights` gives the integers and scales a neuromorphic chip
takes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvTransposeNd
from torch.nn.utils import parametrize

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError
from spikeflow.prune.reparam import REPARAMETERISATIONS, chosen_layers

__all__ = ["WeightQuantizer", "apply_weight_quantization", "integer_weights"]

#: Bits a weight may have: 2 (ternary: -s, 0, s) to 16.
MIN_BITS, MAX_BITS = 2, 16


def check_bits(value: object) -> int:
    """``value`` if it is an integer number of bits from 2 to 16."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        raise ConfigurationError(
            f"weight quantization: bits must be an integer from {MIN_BITS} (ternary) to "
            f"{MAX_BITS}, got {value!r}"
        )
    return value


class WeightQuantizer(nn.Module):
    """Symmetric fake quantization of a weight to ``bits`` bits (see the module doc).

    ``per_channel``: one scale per output channel (``channel_dim`` of the weight: 0
    for linear layers and convolutions, 1 for transposed convolutions), else one per
    layer.
    """

    def __init__(self, bits: int, per_channel: bool = True, channel_dim: int = 0) -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.per_channel = check_flag("WeightQuantizer", "per_channel", per_channel)
        self.channel_dim = channel_dim
        self.levels = 2 ** (self.bits - 1) - 1

    def scale(self, weight: Tensor) -> Tensor:
        """The step between two levels: ``max|w| / q`` (broadcasts against ``weight``)."""
        w = weight.detach().abs()
        if self.per_channel and weight.dim() > 1:
            others = tuple(d for d in range(weight.dim()) if d != self.channel_dim)
            peak = w.amax(dim=others, keepdim=True)
        else:
            peak = w.amax()
        tiny = torch.finfo(weight.dtype).tiny
        return peak.clamp(min=tiny) / self.levels

    def integers(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``(k, s)``: the integer levels (int32) and the scale, ``w_q = k·s``."""
        s = self.scale(weight)
        k = torch.round(weight.detach() / s).clamp(-self.levels, self.levels)
        return k.to(torch.int32), s

    def forward(self, weight: Tensor) -> Tensor:
        """The quantized weight (straight-through gradient)."""
        k, s = self.integers(weight)
        quantized = k.to(weight.dtype) * s
        return weight + (quantized - weight).detach()

    def right_inverse(self, weight: Tensor) -> Tensor:
        """Assigning a weight stores it as it is (it is quantized when used)."""
        return weight

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel={self.per_channel}, channel_dim={self.channel_dim}"


REPARAMETERISATIONS.append(WeightQuantizer)


def apply_weight_quantization(
    model: nn.Module,
    bits: int = 8,
    per_channel: bool = True,
    layers: Iterable[nn.Module] | None = None,
) -> list[str]:
    """Quantize the weights of ``model``'s linear and convolution layers (or of
    ``layers``) to ``bits`` bits while it trains; returns the layer names.

    Works on pruned layers too (apply pruning first): the pruned weight is quantized,
    and pruned synapses stay zero. :func:`spikeflow.prune.finalize` bakes the quantized
    weights into plain layers.

    Raises:
        ConfigurationError: bits outside 2-16, no such layer, or a layer quantized
            already.
    """
    bits = check_bits(bits)
    chosen = chosen_layers(model, layers, what="quantize", stack=True)
    for name, layer in chosen:
        if parametrize.is_parametrized(layer, "weight") and any(
            isinstance(p, WeightQuantizer) for p in layer.parametrizations.weight
        ):
            raise ConfigurationError(f"layer {name!r}: its weight is quantized already")
    for _, layer in chosen:
        # A transposed convolution's weight is [in, out/groups, ...]: outputs on dim 1.
        channel_dim = 1 if isinstance(layer, _ConvTransposeNd) else 0
        parametrize.register_parametrization(
            layer, "weight", WeightQuantizer(bits, per_channel, channel_dim)
        )
    return [name for name, _ in chosen]


@torch.no_grad()
def integer_weights(layer: nn.Module) -> tuple[Tensor, Tensor]:
    """``(k, s)`` of a quantized layer: int32 levels and the scale (per output channel,
    shaped to broadcast, or one), with ``layer.weight == k·s``.

    Raises:
        ConfigurationError: the layer is not quantized.
    """
    if parametrize.is_parametrized(layer, "weight"):
        chain = list(layer.parametrizations.weight)
        if chain and isinstance(chain[-1], WeightQuantizer):
            weight = layer.parametrizations.weight.original
            for reparam in chain[:-1]:  # pruning first, as the forward does
                weight = reparam(weight)
            return chain[-1].integers(weight)
    raise ConfigurationError(
        f"{type(layer).__name__} is not quantized (spikeflow.quant.apply_weight_quantization)"
    )
