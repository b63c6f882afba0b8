"""Gaussian-mixture surrogates: a narrow Gaussian peak minus wide negative side lobes.

The pseudo-derivatives the long-sequence neurons' authors train with: BRF's double
Gaussian (Higuchi et al., ICML 2024) and the multi-Gaussian of Yin et al.'s adaptive
SRNN (Nature Machine Intelligence 2021), which TC-LIF (Zhang et al., AAAI 2024) uses
for sequential MNIST. Both fire on ``x > 0`` in the authors' code: pass
``strict_firing=True`` to the neuron to match it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from spikeflow.surrogate.base import Surrogate, _require, _require_positive

__all__ = ["DoubleGaussian", "MultiGaussian"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


def _normal_pdf(x: Tensor, mu: float, width: float) -> Tensor:
    """The normal density ``N(x; mu, width)``, elementwise."""
    z = (x - mu) / width
    return torch.exp(-0.5 * z * z) * (_INV_SQRT_2PI / width)


def _normal_cdf(x: Tensor, mu: float, width: float) -> Tensor:
    """``P(X <= x)`` for ``X ~ N(mu, width)``, as ``erfc`` (accurate in the low tail)."""
    return torch.erfc((mu - x) * (_INV_SQRT_2 / width)) * 0.5


def _check(surrogate: Surrogate) -> None:
    _require_positive(surrogate, "sigma", "scale", "gamma")
    _require(surrogate, "p", surrogate.p >= 0, ">= 0")


def _mixture(
    f: Callable[[Tensor, float, float], Tensor],
    x: Tensor,
    sigma: float,
    p: float,
    scale: float,
    gamma: float,
    centre: float,
) -> Tensor:
    """``gamma ((1 + p) f(x; 0, sigma) - p f(x; centre, w) - p f(x; -centre, w))``,
    ``w = scale sigma``: the density (``f`` = pdf) or its primitive (``f`` = cdf)."""
    wide = scale * sigma
    wings = f(x, centre, wide) + f(x, -centre, wide)
    return gamma * ((1 + p) * f(x, 0.0, sigma) - p * wings)


class _GaussianMixture(Surrogate):
    """The two surrogates' shared parameters (defaults the authors')."""

    def __init__(
        self,
        sigma: float = 0.5,
        p: float = 0.15,
        scale: float = 6.0,
        gamma: float = 0.5,
        spiking: bool = True,
    ) -> None:
        super().__init__(spiking=spiking, sigma=sigma, p=p, scale=scale, gamma=gamma)
        _check(self)


class DoubleGaussian(_GaussianMixture):
    """BRF's double-Gaussian surrogate (AdaptiveAILab/brf-neurons,
    ``StepDoubleGaussianGrad``): derivative ``gamma ((1 + p) N(x; 0, sigma) - 2 p N(x; 0,
    scale sigma))``, ``N`` the normal density: a peak of width ``sigma`` with negative
    wings ``scale`` times wider (defaults the authors': sigma 0.5, p 0.15, scale 6,
    gamma 0.5). Primitive: its antiderivative from ``-inf``, ``gamma ((1 + p) Φ(x /
    sigma) - 2 p Φ(x / (scale sigma)))``, which rises from 0 to ``gamma (1 - p)``.

    The authors fire on ``x > 0``: ``BRFNode(strict_firing=True)`` matches them.

    Raises:
        ConfigurationError: ``sigma``, ``scale`` or ``gamma`` not > 0, or ``p < 0``.
    """

    @staticmethod
    def derivative(x: Tensor, sigma: float, p: float, scale: float, gamma: float) -> Tensor:
        return _mixture(_normal_pdf, x, sigma, p, scale, gamma, 0.0)

    @staticmethod
    def primitive(x: Tensor, sigma: float, p: float, scale: float, gamma: float) -> Tensor:
        return _mixture(_normal_cdf, x, sigma, p, scale, gamma, 0.0)


class MultiGaussian(_GaussianMixture):
    """The multi-Gaussian surrogate of Yin, Corradi & Bohté's adaptive SRNN (2021), used
    by TC-LIF for sequential MNIST (ZhangShimin1/TC-LIF, ``ActFun_adp``, ``--sg gau``):
    derivative ``gamma ((1 + p) N(x; 0, sigma) - p N(x; sigma, scale sigma) - p N(x;
    -sigma, scale sigma))``, ``N`` the normal density: a peak of width ``sigma`` with two
    negative wings ``scale`` times wider, centred ``±sigma`` (defaults the authors':
    sigma 0.5, p 0.15, scale 6, gamma 0.5). Primitive: its antiderivative from
    ``-inf``, rising from 0 to ``gamma (1 - p)``.

    The authors fire on ``x > 0``: ``TCLIFNode(strict_firing=True)`` matches them.

    Raises:
        ConfigurationError: ``sigma``, ``scale`` or ``gamma`` not > 0, or ``p < 0``.
    """

    @staticmethod
    def derivative(x: Tensor, sigma: float, p: float, scale: float, gamma: float) -> Tensor:
        return _mixture(_normal_pdf, x, sigma, p, scale, gamma, sigma)

    @staticmethod
    def primitive(x: Tensor, sigma: float, p: float, scale: float, gamma: float) -> Tensor:
        return _mixture(_normal_cdf, x, sigma, p, scale, gamma, sigma)
