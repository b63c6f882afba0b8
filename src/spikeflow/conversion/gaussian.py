"""The threshold iteration of Huang, Fang et al. (ICML 2025; methods.md 7.4).

A converted neuron that runs ``n`` levels (``n = T`` steps of an IF neuron, ``T·m`` for a
group of ``m``, ``T·2^k`` for ``k`` thresholds) turns the ReLU into the uniform
quantiser ``q(x) = (θ/n)·m(x)``, ``m(x) = #{i = 1..n : x ≥ (2i-1)θ/(2n)}`` (round to
the nearest level, clipped at θ). Model the pre-activation as Gaussian ``N(μ, σ²)``
(calibration statistics) and choose θ to minimise ``E[(q(x) - relu(x))²]``. The error is
continuous in θ at the level boundaries (both neighbours are equally far), so

    dE/dθ = (2/θ)·(E[q²] - E[q·x]) = 0   ⇔   θ = n·E[m·x] / E[m²]

and with ``m² = Σ_i (2i-1)·1[x ≥ c_i]`` (``c_i = (2i-1)θ/(2n)``) both expectations have
closed forms:

    E[m·x] = Σ_i μ·P(x ≥ c_i) + σ·φ((c_i - μ)/σ),   E[m²] = Σ_i (2i-1)·P(x ≥ c_i).

The authors iterate ``θ <- F(θ) = n·E[m·x]/E[m²]`` 100 times from θ = 1. That converges
slowly when ``n`` is large (for ``N(0.2, 1.5²)`` and ``n = 64`` it stops at 4.92; the
fixed point is 5.57, with a 26% lower error), and the error can have more than one
local minimum (``N(1, 0.2²)``, ``n = 2``: 1.08 and 1.99). Here the error itself, in
closed form up to a constant, ``E(θ) = θ²·E[m²]/n² - 2θ·E[m·x]/n``, is minimised: on a
grid of 64 values of θ up to ``|μ| + 10σ``, then by golden-section search around the
best of them. The tests check it against a numerical integral of the error.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow._checks import check_int

__all__ = ["gaussian_threshold"]


def _moments(theta: Tensor, mean: Tensor, std: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    """``E[m·x]`` and ``E[m²]`` at ``theta`` (all float64, same shape)."""
    i = torch.arange(1, levels + 1, dtype=theta.dtype, device=theta.device)
    bounds = (2 * i - 1) / (2 * levels) * theta.unsqueeze(-1)  # [..., n]
    z = (bounds - mean.unsqueeze(-1)) / std.unsqueeze(-1)
    above = 0.5 * torch.erfc(z / math.sqrt(2.0))  # P(x >= c_i)
    density = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    product = (mean.unsqueeze(-1) * above + std.unsqueeze(-1) * density).sum(-1)
    square = ((2 * i - 1) * above).sum(-1)
    return product, square


def _error(theta: Tensor, mean: Tensor, std: Tensor, levels: int) -> Tensor:
    """``E[(q(x) - relu(x))²] - E[relu(x)²]`` at ``theta``."""
    product, square = _moments(theta, mean, std, levels)
    return theta * theta * square / levels**2 - 2 * theta * product / levels


def gaussian_threshold(mean: Tensor, var: Tensor, levels: int) -> Tensor:
    """θ minimising the expected squared error of an ``levels``-level clipped ReLU for
    Gaussian pre-activations ``N(mean, var)`` (elementwise; see the module docstring).

    Computed in float64; entries with no such θ (``var = 0``, or a mean so negative
    that no level is ever reached) come back NaN.
    """
    levels = check_int("gaussian_threshold: levels", levels, 1)
    mean = mean.detach().to(torch.float64)
    std = var.detach().to(torch.float64).clamp_min(0).sqrt()
    top = mean.abs() + 10 * std
    points = 64
    best = torch.full_like(mean, math.inf)
    index = torch.zeros_like(mean)
    for k in range(1, points + 1):
        value = _error(top * (k / points), mean, std, levels)
        better = value < best
        best = torch.where(better, value, best)
        index = torch.where(better, float(k), index)
    # golden-section search between the grid points beside the best one
    low, high = (index - 1) * top / points, (index + 1) * top / points
    ratio = (math.sqrt(5.0) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    error_a, error_b = _error(a, mean, std, levels), _error(b, mean, std, levels)
    for _ in range(60):
        left = error_a <= error_b  # the minimum is in [low, b]
        low, high = torch.where(left, low, a), torch.where(left, b, high)
        moved = torch.where(left, high - ratio * (high - low), low + ratio * (high - low))
        error_moved = _error(moved, mean, std, levels)
        a, b, error_a, error_b = (
            torch.where(left, moved, b), torch.where(left, a, moved),
            torch.where(left, error_moved, error_b), torch.where(left, error_a, error_moved),
        )  # fmt: skip
    theta = 0.5 * (low + high)
    _, square = _moments(theta, mean, std, levels)
    solvable = (std > 0) & torch.isfinite(theta) & (theta > 0) & (square > 0)
    return torch.where(solvable, theta, math.nan)
