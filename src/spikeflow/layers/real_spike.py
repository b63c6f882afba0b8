"""Real Spike (Guo et al., ECCV 2022): real-valued spikes in training, binary ones in
inference.

A spiking layer's binary spikes ``s`` are multiplied by a learnable amplitude ``a``
per channel (``o = a[c] · s``) while training; the next layer (a convolution or a
linear layer) then sees real-valued spikes. Because that layer is linear in its input,
``W * (a ⊙ s) = (W · a) * s``: for inference the amplitudes are folded into its
weights (:func:`spikeflow.conversion.fold_real_spikes`) and the network runs on binary
spikes again, its output unchanged. The paper (arXiv 2210.06686, §1 and the abstract)
folds "a part of the value" of each real spike into "its corresponding kernel weight";
one amplitude per layer or per channel keeps the folded convolution's kernel shared
over positions, which is what this layer learns. No official code was found; the
amplitude starts at 1 (the plain SNN), a choice of spikeflow's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["RealSpike"]


class RealSpike(nn.Module):
    """Spikes times a learnable amplitude per channel (or one per layer).

    ``y[..., c, ...] = amplitude[c] · x[..., c, ...]`` along dimension ``dim`` of the
    input (default 2: the channels of ``[T, B, C, ...]``), or one shared amplitude for
    ``num_channels=None``. Place it right after a spiking layer, before the convolution
    or linear layer that reads its spikes (pooling, flatten or dropout in between are
    accepted by the fold); after training, ``fold_real_spikes(model)`` returns the
    network with each ``RealSpike`` removed and its amplitudes moved into that layer's
    weights.

    Args:
        num_channels: ``C``, the size of dimension ``dim``; None for one amplitude for
            the whole layer (the paper's layer-wise form).
        dim: the channel dimension, counted from the front (>= 1; default 2, the ``C``
            of a time-major ``[T, B, C, ...]`` sequence; 1 for one step ``[B, C, ...]``).
        init: the initial amplitude (default 1.0: the plain SNN).

    Raises:
        ConfigurationError: ``num_channels`` not an int >= 1 (nor None), ``dim`` not an
            int >= 1, a non-finite ``init``.
        ShapeError: an input without dimension ``dim`` of size ``num_channels``.
        DTypeError: a non-floating input.
    """

    def __init__(self, num_channels: int | None = None, dim: int = 2, init: float = 1.0) -> None:
        super().__init__()
        owner = type(self).__name__
        if num_channels is not None:
            num_channels = check_int(f"{owner}: num_channels", num_channels, 1)
        self.num_channels = num_channels
        self.dim = check_int(f"{owner}: dim", dim, 1)
        if isinstance(init, bool) or not isinstance(init, (int, float)) or not math.isfinite(init):
            raise ConfigurationError(f"{owner}: init must be a finite number, got {init!r}")
        shape = (num_channels,) if num_channels is not None else ()
        self.amplitude = nn.Parameter(torch.full(shape, float(init)))
        #: The number of dims of the last input (None before the first call): which of
        #: them the next layer reads is what ``fold_real_spikes`` checks.
        self.input_ndim: int | None = None

    def scale_shape(self, x: Tensor) -> tuple[int, ...]:
        """The shape ``amplitude`` takes to broadcast over ``x`` (checked)."""
        owner = type(self).__name__
        if not isinstance(x, Tensor) or not x.is_floating_point():
            what = type(x).__name__ if not isinstance(x, Tensor) else f"dtype {x.dtype}"
            raise DTypeError(f"{owner} expects a floating-point tensor, got {what}")
        if self.num_channels is None:
            return ()
        if x.dim() <= self.dim or x.shape[self.dim] != self.num_channels:
            raise ShapeError(
                f"{owner}: dimension {self.dim} of the input must be num_channels="
                f"{self.num_channels} (the channels), got shape {tuple(x.shape)}"
            )
        return (self.num_channels,) + (1,) * (x.dim() - self.dim - 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` times the amplitude of its channel."""
        shape = self.scale_shape(x)
        self.input_ndim = x.dim()
        return x * self.amplitude.reshape(shape)

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, dim={self.dim}"
