"""Weight-standardised convolution and linear layers (SpikingJelly's ``WSConv2d``,
``WSLinear``; Brock et al., "Characterizing signal propagation to close the
performance gap in unnormalized ResNets", ICLR 2021).

The layer computes with a standardised copy of its weight instead of the weight::

    Ŵ[o] = g[o] · (W[o] − mean(W[o])) / sqrt(var(W[o]) · fan_in + ε)

per output channel ``o``, mean and (unbiased) variance over the channel's ``fan_in``
weights, ``g`` a learnable gain (initialised to 1; ``gain=False`` drops it). The
denominator scales by ``fan_in`` so that ``Ŵ[o]`` has unit norm: activations keep their
scale through the layer without batch norm. :func:`standardize_weight` is the shared
step (also used by :mod:`spikeflow.event_driven`'s layers, with ``fan_in`` scaling off).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.layers._checks import check_real
from spikeflow.layers._time import STEP_2D
from spikeflow.layers.sequence import SequenceLayerMixin

__all__ = ["WSConv2d", "WSLinear", "standardize_weight"]


def standardize_weight(weight: Tensor, eps: float, scale_by_fan_in: bool = False) -> Tensor:
    """``(w − mean) / sqrt(var · s + eps)`` per output channel (dim 0 of ``weight``).

    The mean and the unbiased variance are taken over the channel's other dims (its
    fan-in); ``s`` is the fan-in with ``scale_by_fan_in`` (unit-norm rows), else 1 (unit
    standard deviation). Differentiable in ``weight``.
    """
    flat = weight.reshape(weight.shape[0], -1)
    view = (-1,) + (1,) * (weight.dim() - 1)
    mean = flat.mean(dim=1).view(view)
    var = flat.var(dim=1).view(view)
    if scale_by_fan_in:
        var = var * flat.shape[1]
    return (weight - mean) / torch.sqrt(var + eps)


class _Standardized:
    """The gain, ``eps`` and the standardised weight of a WS layer.

    Put it before the torch layer in the bases: the constructor takes the torch layer's
    arguments and the keywords ``gain`` and ``eps``; the gain ``[out, 1, ...]`` has one
    value per output channel (dim 0 of the weight), broadcast over the others.
    """

    weight: Tensor
    gain: nn.Parameter | None

    def __init__(self, *args: Any, gain: bool = True, eps: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        owner = type(self).__name__
        if not isinstance(gain, bool):
            raise ConfigurationError(f"{owner}: gain must be True or False, got {gain!r}")
        self.eps = check_real(f"{owner}: eps", eps, 0.0)
        if self.weight[0].numel() < 2:
            raise ConfigurationError(
                f"{owner}: the weights are standardised over each output channel's fan-in, "
                f"which must be >= 2, got {self.weight[0].numel()}"
            )
        like = self.weight
        if gain:
            shape = (like.shape[0],) + (1,) * (like.dim() - 1)
            self.gain = nn.Parameter(torch.ones(shape, dtype=like.dtype, device=like.device))
        else:
            self.register_parameter("gain", None)  # type: ignore[attr-defined]

    def standardized_weight(self) -> Tensor:
        """The weight the layer computes with: ``gain · standardize_weight(weight)``
        (unit-norm rows times the gain)."""
        weight = standardize_weight(self.weight, self.eps, scale_by_fan_in=True)
        return weight if self.gain is None else weight * self.gain

    def get_weight(self) -> Tensor:
        """SpikingJelly's name for :meth:`standardized_weight`."""
        return self.standardized_weight()


class _WSConv2dStep(_Standardized, nn.Conv2d):
    """One step of :class:`WSConv2d`: ``nn.Conv2d`` with the standardised weight."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)


class _WSLinearStep(_Standardized, nn.Linear):
    """One step of :class:`WSLinear`: ``nn.Linear`` with the standardised weight."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.standardized_weight(), self.bias)


class WSConv2d(SequenceLayerMixin, _WSConv2dStep):
    """:class:`torch.nn.Conv2d` with a standardised weight, over a sequence; one step is
    ``[B, C, H, W]``.

    Computes with ``Ŵ = g · (W − mean) / sqrt(var · fan_in + eps)`` per output channel
    (module docstring). Arguments: ``nn.Conv2d``'s (``in_channels, out_channels,
    kernel_size, stride, padding, dilation, groups, bias, padding_mode, device,
    dtype``), then the keywords ``step_mode`` (``'m'``, default, or ``'s'``), ``gain``
    (learn ``g``, shape ``[out, 1, 1, 1]``, default True) and ``eps`` (default
    ``1e-4``). The parameters are ``weight``, ``bias`` and ``gain``, as SpikingJelly's.

    Raises:
        ConfigurationError: ``eps`` < 0, a non-bool ``gain``, or a fan-in below 2.
        ShapeError: the input is not ``[T, B, C, H, W]`` (``[B, C, H, W]`` single-step).
    """

    step_layout, step_ndim = STEP_2D


class WSLinear(SequenceLayerMixin, _WSLinearStep):
    """:class:`torch.nn.Linear` with a standardised weight, over a sequence; one step is
    ``[B, ..., in_features]``.

    Computes with ``Ŵ = g · (W − mean) / sqrt(var · in_features + eps)`` per output
    feature (module docstring). Arguments: ``nn.Linear``'s (``in_features,
    out_features, bias, device, dtype``), then the keywords ``step_mode``, ``gain``
    (shape ``[out, 1]``, default True) and ``eps`` (default ``1e-4``).

    Raises:
        ConfigurationError: ``eps`` < 0, a non-bool ``gain``, or ``in_features`` < 2.
        ShapeError: the input has fewer dims than ``[T, B, in_features]``.
    """

    step_ndim = (2, None)

    def _step_dims(self) -> tuple[str, tuple[int, int | None]]:
        return f"[B, ..., {self.in_features}]", self.step_ndim
