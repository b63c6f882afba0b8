"""Gaussian tuning curves that turn real values into continuous event times (Bohte et al.
2002), as SpikingJelly 2.0's ``timing_based.encoding.GaussianTuning`` does: the input of
the timing-based neurons (:func:`~spikeflow.timing.tempotron`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["GaussianTuning"]


class GaussianTuning(nn.Module):
    """``m`` Gaussian receptive fields per feature, read out as one event time each.

    For feature ``f`` with range ``[x_min[f], x_max[f]]`` (width ``W``), field
    ``i = 1..m`` has centre ``μ_i = x_min + (2i - 3) W / (2(m - 2))`` and variance
    ``σ² = (W / (1.5 (m - 2)))²`` (the centres and width of
    :class:`~spikeflow.encoding.GaussianPopulationEncoder` with ``β = 1.5``). A value
    ``x`` excites field ``i`` with ``r = exp(-(x - μ_i)² / (2σ²))`` and the field fires
    once, at the continuous time ``duration · (1 - r)``: strong responses early. Fields
    whose time rounds to ``duration`` or beyond (``r`` below float resolution) emit no
    event. Times are not rounded to a grid and are differentiable in ``x``.

    Args:
        n: number of features ``>= 1``.
        m: fields per feature, ``>= 3`` (the formula divides by ``m - 2``).
        x_min, x_max: the coded range per feature: floats (shared) or tensors ``[n]``,
            finite, ``x_min < x_max``.

    Calling it on ``x [B, n, S]`` (``S`` values per feature, e.g. pixels) returns the
    compact event batch ``(spike_times [E], input_indices [E], batch_offsets [B+1])``:
    events ordered by trial, feature, value, field, with input index
    ``(f · S + s) · m + i - 1``, so ``n · S · m`` input connections in all.
    """

    mu: Tensor
    sigma2: Tensor

    def __init__(self, n: int, m: int, x_min: float | Tensor, x_max: float | Tensor) -> None:
        super().__init__()
        self.n = check_int("GaussianTuning: n", n, 1)
        self.m = check_int("GaussianTuning: m", m, 3)
        lo = self._range("x_min", x_min)
        hi = self._range("x_max", x_max)
        if not bool((lo < hi).all()):
            raise ConfigurationError(
                f"GaussianTuning: x_min must be < x_max for every feature, got {lo.tolist()} "
                f"and {hi.tolist()}"
            )
        width = (hi - lo)[:, None]
        i = torch.arange(1, self.m + 1, dtype=lo.dtype, device=lo.device)[None, :]
        self.register_buffer("mu", lo[:, None] + (2 * i - 3) * width / (2 * (self.m - 2)))
        sigma2 = (width / (1.5 * (self.m - 2))).square().expand(-1, self.m).clone()
        self.register_buffer("sigma2", sigma2)

    def _range(self, name: str, value: float | Tensor) -> Tensor:
        if isinstance(value, Tensor):
            if not value.is_floating_point():
                raise DTypeError(
                    f"GaussianTuning: {name} must be floating point, got {value.dtype}"
                )
            if value.shape != (self.n,):
                raise ShapeError(
                    f"GaussianTuning: {name} must have shape [n] = [{self.n}], got "
                    f"{tuple(value.shape)}"
                )
            if not bool(torch.isfinite(value).all()):
                raise ConfigurationError(f"GaussianTuning: {name} must be finite")
            return value.detach().clone()
        v = check_real(f"GaussianTuning: {name}", value)
        return torch.full((self.n,), v, dtype=torch.get_default_dtype())

    def forward(self, x: Tensor, duration: float = 50.0) -> tuple[Tensor, Tensor, Tensor]:
        """Encode ``x [B, n, S]`` into events in ``[0, duration)`` (class docstring)."""
        dur = check_real("GaussianTuning: duration", duration, 0.0, low_open=True)
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise DTypeError(f"GaussianTuning: x must be a floating-point tensor, got {got}")
        if x.dtype != self.mu.dtype:
            raise DTypeError(
                f"GaussianTuning: x is {x.dtype} but the fields are {self.mu.dtype}; "
                f"convert one (module.to(dtype))"
            )
        if x.ndim != 3 or x.shape[1] != self.n:
            raise ShapeError(
                f"GaussianTuning: x must have shape [B, n, S] with n = {self.n}, got "
                f"{tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ConfigurationError("GaussianTuning: x must be finite (found NaN or inf)")
        z = (x[..., None] - self.mu[None, :, None, :]).square() / self.sigma2[None, :, None, :]
        times = (dur * (1 - torch.exp(-0.5 * z))).reshape(x.shape[0], -1)
        keep = times < dur
        column = torch.arange(times.shape[1], device=x.device).expand_as(times)
        counts = keep.sum(1)
        offsets = torch.cat((counts.new_zeros(1), counts.cumsum(0)))
        return times[keep], column[keep], offsets
