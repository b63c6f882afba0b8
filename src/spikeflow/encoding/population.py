"""Population codes: Gaussian receptive fields, latency-coded (Bohte et al. 2002), and
Norse's radial-basis population response."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spikeflow._checks import check_int, check_real
from spikeflow.base import StepMode
from spikeflow.encoding._common import (
    CountingEncoder,
    check_float_input,
    latency_spikes,
    work_dtype,
)
from spikeflow.errors import ConfigurationError

__all__ = ["GaussianPopulationEncoder", "population_rbf"]


class GaussianPopulationEncoder(CountingEncoder):
    """Population coding with Gaussian receptive fields (Bohte et al. 2002).

    Each scalar ``x`` is seen by ``n = n_neurons`` neurons ``i = 1..n`` with centers and
    a shared width (``Δ = (x_max - x_min) / (n - 2)``)::

        μ_i = x_min + (2i - 3) / 2 · Δ,     σ = Δ / β

    so the centers are spaced ``Δ`` apart, from ``x_min - Δ/2`` to ``x_max + Δ/2``. The
    response of neuron ``i`` (:meth:`response`) is::

        r_i(x) = exp(-(x - μ_i)² / (2σ²))   in (0, 1],  r_i(μ_i) = 1

    and is turned into one spike by latency coding over ``T`` steps: neuron ``i`` fires
    at ``t_f = round((T - 1)(1 - r_i))`` (strong response, early spike) if
    ``r_i >= min_response``, and not at all otherwise (Bohte et al. leave weakly excited
    neurons silent). Inputs outside ``[x_min, x_max]`` are allowed (they excite the edge
    neurons).

    Shapes: ``'m'``: ``x [*]`` -> ``[T, *, n]``; ``'s'`` (needs streaming): the ``k``-th
    call returns step ``k mod T``, ``[*, n]``.

    Args:
        n_neurons: neurons per input element, ``>= 3`` (the formula divides by ``n - 2``).
        x_min, x_max: the coded range, ``x_max > x_min``.
        T: number of time steps (``>= 1``).
        beta: sharpness ``β > 0`` (Bohte et al. use 1.5); larger is narrower.
        min_response: responses below this (in ``[0, 1]``) do not spike; default 0.1.
        step_mode: ``'m'`` (default) or ``'s'``.
    """

    centers: Tensor

    def __init__(
        self,
        n_neurons: int,
        x_min: float,
        x_max: float,
        T: int,
        beta: float = 1.5,
        step_mode: StepMode = "m",
        min_response: float = 0.1,
    ) -> None:
        super().__init__(step_mode)
        self.n_neurons = check_int("n_neurons", n_neurons, 3)
        self.x_min = check_real("x_min", x_min)
        self.x_max = check_real("x_max", x_max)
        if not self.x_max > self.x_min:
            raise ConfigurationError(
                f"x_max must be greater than x_min; got x_min={x_min!r}, x_max={x_max!r}"
            )
        self.T = check_int("T", T, 1)
        self.beta = check_real("beta", beta)
        if self.beta <= 0:
            raise ConfigurationError(f"beta must be > 0; got {beta!r}")
        self.min_response = check_real("min_response", min_response)
        if not 0.0 <= self.min_response <= 1.0:
            raise ConfigurationError(f"min_response must be in [0, 1]; got {min_response!r}")
        spacing = (self.x_max - self.x_min) / (self.n_neurons - 2)
        # float64 whatever the module is converted to (see _apply): a .half() model
        # rounded them, and moved its neurons' spike times.
        self.register_buffer("centers", self._centers(), persistent=False)
        #: The receptive-field width σ.
        self.sigma = spacing / self.beta

    def _centers(self, device: torch.device | None = None) -> Tensor:
        """The receptive-field centres μ_i, float64."""
        spacing = (self.x_max - self.x_min) / (self.n_neurons - 2)
        i = torch.arange(1, self.n_neurons + 1, dtype=torch.float64, device=device)
        return self.x_min + (2 * i - 3) / 2 * spacing

    def _apply(self, fn: Any, recurse: bool = True) -> GaussianPopulationEncoder:
        super()._apply(fn, recurse)
        if self.centers.dtype != torch.float64:  # .half(), .to(dtype): keep them exact
            self.centers = self._centers(self.centers.device)
        return self

    def response(self, x: Tensor) -> Tensor:
        """Receptive-field activations ``r_i(x)`` in ``[0, 1]``, shape ``[*x.shape, n]``.

        Differentiable with respect to ``x``.
        """
        x = check_float_input(x, "GaussianPopulationEncoder")
        mu = self.centers.to(device=x.device, dtype=x.dtype)
        d = x.unsqueeze(-1) - mu
        return torch.exp(-(d * d) / (2.0 * self.sigma**2))

    def fire_step(self, x: Tensor) -> Tensor:
        """Firing step of every neuron, ``[*x.shape, n]`` int64; ``-1`` means silent."""
        return self._fire_step(self._check_input(x))

    def _fire_step(self, x: Tensor) -> Tensor:
        r = self.response(x.detach().to(work_dtype(x)))
        t = torch.round((self.T - 1) * (1.0 - r)).to(torch.int64)
        return torch.where(r >= self.min_response, t, torch.full_like(t, -1))

    def _check_input(self, x: Tensor) -> Tensor:
        x = check_float_input(x, "GaussianPopulationEncoder")
        if x.numel() and bool(torch.isnan(x).any()):
            raise ConfigurationError("GaussianPopulationEncoder: the input contains NaN")
        return x

    def _encode(self, x: Tensor, steps: Tensor) -> Tensor:
        return latency_spikes(self._fire_step(x), steps, x.dtype)

    def extra_repr(self) -> str:
        return (
            f"n_neurons={self.n_neurons}, x_min={self.x_min:g}, x_max={self.x_max:g}, "
            f"T={self.T}, beta={self.beta:g}, min_response={self.min_response:g}, "
            f"step_mode={self.step_mode!r}"
        )


def population_rbf(x: Tensor, n_neurons: int, scale: float) -> Tensor:
    """Radial-basis population response (Norse's ``population_encode``), differentiable.

    Each scalar ``x`` is seen by ``n = n_neurons`` neurons with centres evenly spaced on
    ``[0, scale]``, ``c_j = j · scale / (n - 1)`` (``c_0 = 0`` when ``n = 1``), and::

        r_j(x) = exp(-scale · (x - c_j)² / 2)   in (0, 1],   r_j(c_j) = 1

    so the centres and the sharpness both grow with ``scale`` (the width is
    ``1 / sqrt(scale)``). The result is a rate in ``(0, 1]``, not spikes: feed it to
    :class:`PoissonEncoder` (or any rate encoder) to get a spike train. Unlike
    :class:`GaussianPopulationEncoder`, nothing is latency-coded and no neuron is
    silenced.

    Args:
        x: a floating-point tensor ``[*]`` (any real values).
        n_neurons: neurons per element, ``>= 1``.
        scale: the upper end of the centres and the sharpness, a finite number ``> 0``.
            Norse's default (``scale=None``) is the maximum of the whole input batch,
            which makes one sample's code depend on the others; pass
            ``scale=float(x.max())`` to reproduce it.

    Returns:
        ``[*x.shape, n_neurons]`` in ``x``'s dtype, on its device.

    Raises:
        DTypeError: ``x`` is not a floating-point tensor.
        ConfigurationError: a bad ``n_neurons`` or ``scale``.
    """
    x = check_float_input(x, "population_rbf")
    n = check_int("n_neurons", n_neurons, 1)
    s = check_real("population_rbf: scale", scale, 0.0, low_open=True)
    centres = torch.linspace(0.0, s, n, dtype=x.dtype, device=x.device)
    distance = (x.unsqueeze(-1) - centres).pow(2) * s
    return torch.exp(-distance / 2.0)
