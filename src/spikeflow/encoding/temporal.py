"""Codes whose output at step ``t`` depends on ``t``: latency, periodic, weighted phase.

They are :class:`~spikeflow.base.MemoryModule` s that carry a step counter (see the
package docstring, :mod:`spikeflow.encoding`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow._checks import broadcasts_to, check_int
from spikeflow.base import StepMode
from spikeflow.encoding._common import (
    CountingEncoder,
    check_float_input,
    check_range,
    latency_spikes,
    work_dtype,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["LatencyEncoder", "PeriodicEncoder", "WeightedPhaseEncoder"]


# --------------------------------------------------------------------------- latency


class LatencyEncoder(CountingEncoder):
    """Time-to-first-spike (latency) coding: one spike per element, earlier for larger x.

    Each element fires exactly once, at step ``t_f`` (``x`` in ``[0, 1]``):

    - ``'linear'``: ``t_f = round((T - 1)(1 - x))``;
    - ``'log'``: ``t_f = round((T - 1) - ln(α x + 1))`` with ``α = e^(T-1) - 1``.

    Both map ``x = 1`` to step 0 and ``x = 0`` to step ``T - 1`` (``x = 0`` still fires,
    at the last step, as in SpikingJelly), and both are non-increasing in ``x``. The log
    code spends more of the window on small inputs. It is evaluated in the equivalent,
    overflow-free form ``t_f = -ln(x + (1 - x) e^-(T-1))`` (multiply ``α x + 1`` out as
    ``e^(T-1) (x + (1 - x) e^-(T-1))``), clamped to ``[0, T - 1]``. ``round`` is
    :func:`torch.round` (halves go to the even step); times are computed in at least
    float32. With ``T = 1`` every element fires at step 0.

    Shapes: ``'m'``: ``x [*]`` -> ``[T, *]``, ``out[t] = 1[t == t_f]``; ``'s'`` (needs
    streaming): the ``k``-th call returns ``1[k mod T == t_f]`` for the ``x`` of that call,
    so a streaming run longer than ``T`` repeats the code with period ``T``.

    Args:
        T: number of time steps (``>= 1``).
        enc_function: ``'linear'`` (default) or ``'log'``.
        step_mode: ``'m'`` (default) or ``'s'``.
    """

    _FUNCTIONS = ("linear", "log")

    def __init__(self, T: int, enc_function: str = "linear", step_mode: StepMode = "m") -> None:
        super().__init__(step_mode)
        self.T = check_int("T", T, 1)
        if enc_function not in self._FUNCTIONS:
            raise ConfigurationError(
                f"enc_function must be one of {self._FUNCTIONS}; got {enc_function!r}"
            )
        self.enc_function = enc_function

    def _check_input(self, x: Tensor) -> Tensor:
        x = check_float_input(x, "LatencyEncoder")
        check_range(x, 0.0, 1.0, "LatencyEncoder")
        return x

    def fire_step(self, x: Tensor) -> Tensor:
        """The firing step ``t_f`` of every element of ``x``, as an int64 tensor."""
        return self._fire_step(self._check_input(x))

    def _fire_step(self, x: Tensor) -> Tensor:
        xw = x.detach().to(work_dtype(x))
        if self.enc_function == "linear":
            t = (self.T - 1) * (1.0 - xw)
        else:
            t = -torch.log(xw + (1.0 - xw) * math.exp(-(self.T - 1)))
        return torch.round(t.clamp(0.0, self.T - 1)).to(torch.int64)

    def _encode(self, x: Tensor, steps: Tensor) -> Tensor:
        return latency_spikes(self._fire_step(x), steps, x.dtype)

    def extra_repr(self) -> str:
        return f"T={self.T}, enc_function={self.enc_function!r}, step_mode={self.step_mode!r}"


# --------------------------------------------------------------------------- periodic


class PeriodicEncoder(CountingEncoder):
    """Replay a fixed spike pattern periodically, broadcast to the input's shape.

    Given a pattern ``spikes`` of shape ``[P, *pattern_shape]`` (0/1 values)::

        out[t] = spikes[t mod P]   broadcast to x.shape

    The input ``x`` only supplies the shape (``pattern_shape`` must broadcast to
    ``x.shape``), device and dtype of the output, so the encoder fits in an
    :class:`torch.nn.Sequential` like the others. The output dtype is ``x``'s if it is
    floating point, else torch's default dtype.

    Shapes: ``'m'``: ``x [*]`` -> ``[T, *]`` (``T`` defaults to ``P``, one period);
    ``'s'`` (needs streaming): the ``k``-th call returns ``spikes[k mod P]``.

    Args:
        spikes: the pattern ``[P, ...]`` (``P >= 1``); bool or numeric, values 0 or 1.
        T: number of steps of a multi-step call (``>= 1``); ``None`` means ``P``.
        step_mode: ``'m'`` (default) or ``'s'``.
    """

    spikes: Tensor

    def __init__(self, spikes: Tensor, T: int | None = None, step_mode: StepMode = "m") -> None:
        super().__init__(step_mode)
        pattern = torch.as_tensor(spikes).detach()
        if pattern.dim() < 1 or pattern.shape[0] < 1:
            raise ConfigurationError(
                f"spikes must have shape [P, ...] with P >= 1; got shape {tuple(pattern.shape)}"
            )
        if pattern.dtype != torch.bool:
            if pattern.is_complex() or not ((pattern == 0) | (pattern == 1)).all():
                raise ConfigurationError(
                    "spikes must contain only 0 and 1 (or be a bool tensor); got values "
                    f"{torch.unique(pattern)[:8].tolist()}"
                )
            pattern = pattern != 0
        self.register_buffer("spikes", pattern.clone())
        self.T = pattern.shape[0] if T is None else check_int("T", T, 1)

    @property
    def period(self) -> int:
        """``P``, the length of the pattern."""
        return self.spikes.shape[0]

    def _check_input(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise DTypeError(f"PeriodicEncoder expects a torch.Tensor; got {type(x).__name__}")
        pattern_shape = self.spikes.shape[1:]
        if not broadcasts_to(pattern_shape, x.shape):
            raise ShapeError(
                f"PeriodicEncoder: the pattern's step shape {tuple(pattern_shape)} does not "
                f"broadcast to the input's shape {tuple(x.shape)}"
            )
        return x

    def _encode(self, x: Tensor, steps: Tensor) -> Tensor:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        picked = self.spikes.to(x.device)[steps].to(dtype)  # [S, *pattern_shape]
        n_steps, pattern_shape = picked.shape[0], picked.shape[1:]
        lead = [1] * (x.dim() - len(pattern_shape))
        # Materialised (not an expanded view) so that in-place ops downstream work.
        return picked.view(n_steps, *lead, *pattern_shape).expand(n_steps, *x.shape).contiguous()

    def extra_repr(self) -> str:
        return f"P={self.period}, T={self.T}, step_mode={self.step_mode!r}"


# --------------------------------------------------------------------------- phase


class WeightedPhaseEncoder(CountingEncoder):
    """Weighted phase coding (Kim et al. 2018): the spikes are the bits of ``x``.

    For ``x`` in ``[0, 1 - 2^-K]``, step ``t = 0..K-1`` carries bit ``t + 1`` of the
    binary expansion of ``x``::

        s[t] = floor(2^(t+1) x) - 2 floor(2^t x)   (in {0, 1})

    and a neuron that weighs step ``t`` by the phase weight ``w_t = 2^-(1+t)`` recovers
    ``x`` truncated to ``K`` bits::

        sum_t w_t s[t] = floor(2^K x) / 2^K

    (:meth:`decode` does this sum). The bits are extracted exactly, with no rounding:
    doubling and dropping the integer part are exact in floating point.

    Shapes: ``'m'``: ``x [*]`` -> ``[K, *]``; ``'s'`` (needs streaming): the ``k``-th call
    returns the bit of phase ``k mod K`` (the phase repeats with period ``K``).

    Args:
        K: number of phases (bits), ``>= 1``.
        step_mode: ``'m'`` (default) or ``'s'``.
    """

    def __init__(self, K: int, step_mode: StepMode = "m") -> None:
        super().__init__(step_mode)
        self.K = check_int("K", K, 1)
        self.T = self.K

    def _check_input(self, x: Tensor) -> Tensor:
        x = check_float_input(x, "WeightedPhaseEncoder")
        high = 1.0 - 2.0**-self.K
        # For K >= 53, 1 - 2^-K rounds to 1.0 in float64: require x < 1 instead.
        check_range(x, 0.0, high, "WeightedPhaseEncoder", strict_high=high >= 1.0)
        return x

    def weights(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """The phase weights ``w_t = 2^-(1+t)``, ``t = 0..K-1``, shape ``[K]``."""
        t = torch.arange(self.K, device=device, dtype=torch.float64)
        return torch.pow(2.0, -(1.0 + t)).to(dtype or torch.get_default_dtype())

    def decode(self, spikes: Tensor) -> Tensor:
        """``sum_t 2^-(1+t) spikes[t]`` over the first dimension of ``spikes [K, *]``."""
        if spikes.dim() < 1 or spikes.shape[0] != self.K:
            raise ShapeError(
                f"WeightedPhaseEncoder.decode expects spikes [K={self.K}, ...]; got shape "
                f"{tuple(spikes.shape)}"
            )
        dtype = spikes.dtype if spikes.is_floating_point() else torch.get_default_dtype()
        w = self.weights(dtype, spikes.device)
        return torch.tensordot(w, spikes.to(dtype), dims=1)

    def _encode(self, x: Tensor, steps: Tensor) -> Tensor:
        r = x.detach().to(work_dtype(x))  # the fractional part left, in [0, 1)
        bits = []
        for _ in range(self.K):
            r = 2.0 * r
            bit = torch.floor(r)
            r = r - bit
            bits.append(bit.to(x.dtype))
        return torch.stack(bits)[steps]

    def extra_repr(self) -> str:
        return f"K={self.K}, step_mode={self.step_mode!r}"
