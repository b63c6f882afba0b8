"""Exact (input, weight) pair counts of linear layers and convolutions, on masks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

__all__ = [
    "conv_pairs",
    "is_counts",
    "is_spikes",
    "layer_weight",
    "linear_pairs",
    "tensors",
    "transposed_pairs",
]


def is_counts(x: Tensor) -> bool:
    """Whether every entry is a whole number (spike counts, sums of spikes)."""
    return bool(torch.isfinite(x).all()) and bool((x == x.round()).all())


def is_spikes(x: Tensor) -> bool:
    """Whether all nonzero entries of ``x`` have one magnitude (``{0, 1}``, signed
    ``{0, ±1}``, spikes scaled by one constant, a boolean mask; no nonzero entry at all
    counts too)."""
    if x.dtype == torch.bool:
        return True
    nonzero = x[x != 0]
    if nonzero.numel() == 0:
        return True
    magnitude = nonzero.abs()
    return bool((magnitude == magnitude[0]).all())


def layer_weight(layer: nn.Module) -> Tensor:
    """The weight the layer computes with (event-driven layers standardise theirs)."""
    standardized = getattr(layer, "standardized_weight", None)
    return standardized() if callable(standardized) else layer.weight


def linear_pairs(weight: Tensor, mask: Tensor) -> int:
    """(input entry in ``mask``, nonzero weight) pairs of a linear map ``weight``
    ``[out, in]`` (an entry of ``mask`` counts as many times as its value)."""
    fan_out = (weight != 0).sum(dim=0).to(torch.float64)  # outputs each input reaches
    per_input = mask.reshape(-1, weight.shape[1]).to(torch.float64).sum(dim=0)
    return round(float((per_input * fan_out).sum()))


def _step_masks(
    layer: nn.Module, mask: Tensor, weight: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The input mask with the steps folded into the batch, and the nonzero-weight mask
    (of ``weight``, default the layer's own).

    0/1 masks are float32, exact: an output's count is at most C_in·k² < 2^24. Spike
    counts can sum beyond that, so they are float64.
    """
    weight = layer_weight(layer) if weight is None else weight
    spatial = weight.dim() - 2
    dtype = torch.float32 if mask.dtype == torch.bool else torch.float64
    steps = mask.reshape(-1, *mask.shape[-(spatial + 1) :]).to(dtype)
    return steps, (weight != 0).to(dtype)


def conv_pairs(layer: nn.Module, mask: Tensor, weight: Tensor | None = None) -> int:
    """(input entry in ``mask``, nonzero weight) pairs that reach an output of a
    convolution: the layer's convolution of the masks, summed (``weight``: the one
    applied, default the layer's own)."""
    steps, weight = _step_masks(layer, mask, weight)
    with torch.autocast(mask.device.type, enabled=False):  # counts stay exact integers
        counts = layer._conv_forward(steps, weight, None)  # type: ignore[operator]
    return int(counts.sum(dtype=torch.float64).item())


_TRANSPOSED_FUNCTIONS = (
    torch.nn.functional.conv_transpose1d,
    torch.nn.functional.conv_transpose2d,
    torch.nn.functional.conv_transpose3d,
)


def transposed_pairs(layer: nn.Module, mask: Tensor, output: object) -> int:
    """(input entry in ``mask``, nonzero weight) pairs of a transposed convolution that
    land inside its output (the output padding read from the layer's actual output)."""
    steps, weight = _step_masks(layer, mask)
    spatial = weight.dim() - 2
    natural = [(size - 1) * stride - 2 * pad + dilation * (kernel - 1) + 1
               for size, stride, pad, dilation, kernel in zip(
                   steps.shape[2:], layer.stride, layer.padding, layer.dilation,
                   layer.kernel_size, strict=True)]  # fmt: skip
    padding = [0] * spatial
    if isinstance(output, Tensor):
        padding = [size - base for size, base in zip(output.shape[-spatial:], natural,
                                                     strict=True)]  # fmt: skip
    with torch.autocast(mask.device.type, enabled=False):
        counts = _TRANSPOSED_FUNCTIONS[spatial - 1](
            steps, weight, None, layer.stride, layer.padding, tuple(padding), layer.groups,
            layer.dilation,
        )  # fmt: skip
    return int(counts.sum(dtype=torch.float64).item())


def tensors(value: Any) -> list[Tensor]:
    """The tensors in a nest of tuples, lists and dicts."""
    return [leaf for leaf in tree_flatten(value)[0] if isinstance(leaf, Tensor)]
