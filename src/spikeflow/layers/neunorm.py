"""NeuNorm (Wu et al., AAAI 2019): spike-driven normalisation with an auxiliary neuron."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ShapeError
from spikeflow.layers._checks import check_int, check_real
from spikeflow.layers._time import STEP_2D, check_step_dims

__all__ = ["NeuNorm"]


class NeuNorm(MemoryModule):
    """NeuNorm (Wu et al., AAAI 2019): subtract a decaying channel-summed spike average.

    An auxiliary state per spatial location integrates the spikes ``o`` of all ``F``
    channels (``F = in_channels``), and a learnable weight scales its subtraction::

        x[t](i,j) = k·x[t−1](i,j) + ((1 − k)/F²)·Σ_f o[t](i,j,f),      x[−1] = 0
        y[t]      = o[t] − w ⊙ x[t]

    ``w`` has shape ``(C, H, W)``, or ``(1, H, W)`` with ``shared_across_channels``, and
    is initialised with ``kaiming_uniform_(a=sqrt(5))`` (SpikingJelly's choice, so
    ported scripts start alike). The auxiliary state ``x`` (shape ``[B, 1, H, W]``) is
    carried state: a multi-step call starts from ``x = 0`` unless streaming.

    Args:
        in_channels: C (= F).
        height, width: H and W of the input.
        k: decay of the auxiliary state, in ``[0, 1]``.
        shared_across_channels: one weight per location, shared by the channels.
        step_mode: ``'m'`` (input ``[T, B, C, H, W]``, default) or ``'s'``
            (``[B, C, H, W]``, needs streaming).

    Example::

        >>> nn_ = NeuNorm(8, 16, 16)
        >>> nn_(torch.rand(4, 2, 8, 16, 16).round()).shape
        torch.Size([4, 2, 8, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        height: int,
        width: int,
        k: float = 0.9,
        shared_across_channels: bool = False,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.height = check_int("height", height, 1)
        self.width = check_int("width", width, 1)
        self.k = check_real("k", k, 0.0, 1.0)
        self.shared_across_channels = bool(shared_across_channels)
        channels = 1 if self.shared_across_channels else self.in_channels
        self.w = nn.Parameter(torch.empty(channels, self.height, self.width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise ``w`` with ``kaiming_uniform_(a=sqrt(5))``."""
        nn.init.kaiming_uniform_(self.w, a=math.sqrt(5))

    @property
    def decay(self) -> float:
        """``k``, the factor on the previous auxiliary state."""
        return self.k

    @property
    def gain(self) -> float:
        """``(1 − k) / F²``, the factor on the channel sum of the spikes."""
        return (1.0 - self.k) / self.in_channels**2

    def forward(self, x: Tensor) -> Tensor:
        """``o − w ⊙ x``: ``[T, B, C, H, W]`` (multi-step) or ``[B, C, H, W]`` (single)."""
        name = type(self).__name__
        check_step_dims(x, name, *STEP_2D, self.step_mode)
        seq = x if self.step_mode == "m" else x.unsqueeze(0)
        expected = (self.in_channels, self.height, self.width)
        if tuple(seq.shape[2:]) != expected:
            raise ShapeError(
                f"{name} was built for (C, H, W) = {expected}, but one step of the input "
                f"has shape {tuple(seq.shape[1:])}"
            )
        state = self._carried_state(seq.shape[1:])
        if state is None:
            aux = seq.new_zeros(seq.shape[1], 1, self.height, self.width)
        else:
            aux = state["x"]
        channel_sum = seq.sum(dim=2, keepdim=True)  # [T, B, 1, H, W]
        auxes = []
        for t in range(seq.shape[0]):
            aux = self.k * aux + self.gain * channel_sum[t]
            auxes.append(aux)
        self._keep_state({"x": aux})
        y = seq - self.w * torch.stack(auxes)
        return y if self.step_mode == "m" else y[0]

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, height={self.height}, width={self.width}, "
            f"k={self.k}, shared_across_channels={self.shared_across_channels}, "
            f"step_mode={self.step_mode}"
        )
