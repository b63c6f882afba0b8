"""The Differentiable Spike (Dspike) surrogate of Li et al., NeurIPS 2021, the surrogate
SpikeDHS (Che et al., NeurIPS 2022) searches the temperature of."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow.surrogate.base import Surrogate, _mask, _require

__all__ = ["DSpike"]


#: At or below this ``alpha`` (a number), Dspike is computed as its ``alpha = 0`` limit,
#: the box: they differ by about ``alpha² / 12`` relative (1e-17 here, below float64's
#: rounding), and ``tanh(alpha / 2)`` underflows to 0 for the smallest (5e-324) and
#: ``1 / tanh(alpha / 2)`` overflows below about 1e-308 (float32's, 3e-38).
_BOX_BELOW = 1e-8


def _scale(alpha: float | Tensor) -> float | Tensor:
    """``alpha / (2 tanh(alpha / 2))``, and its limit 1 at ``alpha = 0``; ``alpha`` a
    number, or a traced one (a fused kernel's run-time parameter, so that a new ``alpha``
    needs no new kernel), where ``h / tanh(h)`` is taken at ``h + 1e-30`` (the same
    number for any ``h`` above 1e-14, 1 at 0, in float32 too)."""
    if isinstance(alpha, (int, float)):
        return alpha / (2.0 * math.tanh(alpha / 2.0)) if alpha > _BOX_BELOW else 1.0
    h = alpha * 0.5 + 1e-30
    return h / torch.tanh(h)


class DSpike(Surrogate):
    """Dspike surrogate: primitive ``tanh(alpha x) / (2 tanh(alpha / 2)) + 1/2`` on
    ``|x| <= 1/2`` (0 below, 1 above), derivative ``alpha / (2 tanh(alpha / 2)) ·
    sech²(alpha x)`` on ``|x| <= 1/2`` and 0 outside (alpha 3, the temperature: small
    alpha a flat window, large alpha a sharp peak at the threshold; SpikingJelly's
    ``model.spike_dhs.DSpike``, whose band also includes ``|x| = 1/2``).

    ``alpha = 0`` is the limit of the family, a unit box on ``|x| <= 1/2`` (its primitive
    ``x + 1/2`` there): SpikeDHS's surrogate search lowers alpha in steps down to 0.2 and
    tries one step below, where SpikingJelly divides by ``tanh(0)``. An ``alpha`` of
    1e-8 or less is computed as that box (the same curve to float64's precision).

    Raises:
        ConfigurationError: a negative ``alpha`` (the curve depends on ``|alpha|`` only).
    """

    def __init__(self, alpha: float = 3.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require(self, "alpha", self.alpha >= 0, ">= 0")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        t = torch.tanh(alpha * x)
        return _scale(alpha) * (1 - t * t) * _mask(torch.abs(x) <= 0.5, x)

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        xc = torch.clamp(x, -0.5, 0.5)
        if alpha > _BOX_BELOW:
            return torch.tanh(alpha * xc) * (1.0 / (2.0 * math.tanh(alpha / 2.0))) + 0.5
        return xc + 0.5
