"""The QCFS activation (Bu et al., ICLR 2022; methods.md 7.2) for training convertible ANNs.

``h(z) = λ · clip(floor(z·L/λ + φ) / L, 0, 1)`` with ``L`` quantisation levels, shift
``φ`` (1/2) and a learnable threshold ``λ`` per layer. The floor passes its gradient
straight through (gradient 1), so inside the range ``∂h/∂λ = h/λ - z/λ``, above it 1 and
below it 0 (autograd gives exactly that; the derivative printed in the OpenReview PDF is
wrong, methods.md 13.6).

A QCFS network converts to IF neurons with threshold ``λ``, soft reset and initial
membrane ``φ·λ``; with ``T = L`` time steps and constant input the neuron's mean output
equals ``h(z)`` exactly (:func:`spikeflow.conversion.convert`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow.conversion._checks import check_positive_int, check_threshold
from spikeflow.errors import ConfigurationError

__all__ = ["QCFS", "floor_ste", "qcfs"]


class _FloorSTE(torch.autograd.Function):
    """``floor`` forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return torch.floor(x)

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        return grad


def floor_ste(x: Tensor) -> Tensor:
    """``floor(x)`` whose gradient is passed straight through (1 everywhere)."""
    return _FloorSTE.apply(x)


def qcfs(z: Tensor, threshold: Tensor | float, levels: int, shift: float = 0.5) -> Tensor:
    """``λ · clip(floor(z·L/λ + φ) / L, 0, 1)`` with ``λ = threshold``, ``L = levels``."""
    scaled = floor_ste(z / threshold * levels + shift) / levels
    return torch.clamp(scaled, 0.0, 1.0) * threshold


class QCFS(nn.Module):
    """Quantisation-clip-floor-shift activation with a learnable threshold (methods.md 7.2).

    Args:
        levels: L, the number of quantisation levels (default 8, as the authors' newer
            repository); the converted SNN reproduces this layer exactly at ``T = L``.
        threshold: initial λ (default 8.0, as the authors' code), one scalar per layer.
        shift: φ (default 1/2); the converted neuron starts at ``φ·λ``.
        learnable: whether λ is a trainable parameter (default True).
    """

    def __init__(
        self,
        levels: int = 8,
        threshold: float = 8.0,
        shift: float = 0.5,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        self.levels = check_positive_int(levels, "levels (L)")
        threshold = check_threshold(threshold, "QCFS (λ)")
        shift = float(shift)
        if not 0.0 <= shift < 1.0:
            raise ConfigurationError(f"QCFS shift (φ) must be in [0, 1), got {shift}")
        self.shift = shift
        value = torch.tensor(threshold, dtype=torch.get_default_dtype())
        if learnable:
            self.threshold = nn.Parameter(value)
        else:
            self.register_buffer("threshold", value)

    def forward(self, z: Tensor) -> Tensor:
        """``h(z)``, elementwise."""
        return qcfs(z, self.threshold, self.levels, self.shift)

    def extra_repr(self) -> str:
        return (
            f"levels={self.levels}, threshold={float(self.threshold.detach()):.4g}, "
            f"shift={self.shift:g}"
        )
