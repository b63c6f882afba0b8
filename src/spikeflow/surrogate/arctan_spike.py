"""The arctangent surrogate of the event-based optical flow networks (Hagenaars,
Paredes-Vallés and de Croon, NeurIPS 2021): their official code's ``arctanspike``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow.surrogate.base import Surrogate, _require_positive

__all__ = ["ArctanSpike"]


class ArctanSpike(Surrogate):
    """The optical flow networks' ``arctanspike``: pseudo-derivative
    ``1 / (1 + width x^2)`` (height 1 at threshold; ``width`` 10, must be > 0), primitive
    ``atan(sqrt(width) x) / sqrt(width) + pi / (2 sqrt(width))`` (from 0 to
    ``pi / sqrt(width)``). Not SpikingJelly's ``ATan``, whose height and width are tied
    by one ``alpha``. Built by name as ``get_surrogate("arctan_spike", width=...)``."""

    def __init__(self, width: float = 10.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, width=width)
        _require_positive(self, "width")

    @staticmethod
    def derivative(x: Tensor, width: float) -> Tensor:
        return 1.0 / (1.0 + width * x * x)

    @staticmethod
    def primitive(x: Tensor, width: float) -> Tensor:
        root = math.sqrt(width)
        return torch.atan(root * x) / root + math.pi / (2 * root)
