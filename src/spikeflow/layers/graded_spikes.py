"""snnTorch's ``GradedSpikes``: a learnable amplitude per neuron for the spikes of a layer."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["GradedSpikes"]


class GradedSpikes(nn.Module):
    """Spikes times a learnable amplitude per neuron, ``y = x · w[n]`` (snnTorch 1.0's
    ``snntorch.GradedSpikes``).

    The weights have snnTorch's name and shape (``weights``, ``[size, 1]``), so its
    ``state_dict`` loads, and the same initialisation: ``constant_factor`` everywhere,
    or ``U(0.5, 1.5)`` (``torch.rand(size, 1) + 0.5``, the same draw as snnTorch's
    under the same seed) when it is None.

    ``dim`` is the neuron dimension of the input (default -1: the features of
    ``[T, B, N]`` or ``[B, N]``; -3 for the channels of ``[..., C, H, W]``).
    snnTorch's layer multiplies by its ``[size, 1]`` weights as they are, which scales
    dimension -2 of its input (``[B, N]`` broadcasts to ``[N, N]``, or fails): that is
    ``dim=-2`` here, equal to it on any input.

    Args:
        size: the neurons ``N`` (>= 1).
        constant_factor: the initial amplitude of every neuron, or None (default) for
            ``U(0.5, 1.5)``. snnTorch also draws randomly for ``0`` (a falsy check);
            here 0.0 is 0.
        dim: the input's neuron dimension (negative, counted from the end; default -1).

    Raises:
        ConfigurationError: a ``size`` that is not an int >= 1, a non-finite
            ``constant_factor``, a ``dim`` that is not a negative int.
        ShapeError: an input whose dimension ``dim`` is not ``size`` (in :meth:`forward`).
    """

    def __init__(self, size: int, constant_factor: float | None = None, dim: int = -1) -> None:
        super().__init__()
        owner = type(self).__name__
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(f"{owner}: size must be an int >= 1, got {size!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim >= 0:
            raise ConfigurationError(
                f"{owner}: dim must be a negative int (the neuron dimension counted from the "
                f"end, so that leading time and batch dimensions may vary), got {dim!r}"
            )
        self.size = size
        self.dim = dim
        if constant_factor is None:
            weights = torch.rand(size=[size, 1]) + 0.5
        else:
            if isinstance(constant_factor, bool) or not isinstance(constant_factor, (int, float)):
                raise ConfigurationError(
                    f"{owner}: constant_factor must be a float or None, got {constant_factor!r}"
                )
            if not math.isfinite(constant_factor):
                raise ConfigurationError(
                    f"{owner}: constant_factor must be finite, got {constant_factor}"
                )
            weights = torch.ones(size=[size, 1]) * constant_factor
        self.weights = nn.Parameter(weights)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` times each neuron's amplitude along :attr:`dim`."""
        owner = type(self).__name__
        if not isinstance(x, Tensor) or not x.is_floating_point():
            what = type(x).__name__ if not isinstance(x, Tensor) else f"dtype {x.dtype}"
            raise DTypeError(f"{owner} expects a floating-point tensor, got {what}")
        if x.dim() < -self.dim or x.shape[self.dim] != self.size:
            raise ShapeError(
                f"{owner}: dimension {self.dim} of the input must be size={self.size} (the "
                f"neurons), got shape {tuple(x.shape)}"
            )
        return x * self.weights.reshape((self.size,) + (1,) * (-self.dim - 1))

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
