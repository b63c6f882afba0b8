"""Input checks and small helpers shared by the encoders."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError, DTypeError


def check_float_input(x: object, who: str) -> Tensor:
    """Raise a :class:`DTypeError` unless ``x`` is a floating-point tensor."""
    if not isinstance(x, Tensor):
        raise DTypeError(f"{who} expects a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(
            f"{who} expects a floating-point tensor (spikes are returned in the input's "
            f"dtype); got dtype {x.dtype}. Convert it first, e.g. x.float() / 255 for "
            f"8-bit images."
        )
    return x


def check_range(
    x: Tensor,
    low: float,
    high: float,
    who: str,
    strict_high: bool = False,
    hint: str = "Normalise the input first.",
) -> None:
    """Raise a :class:`ConfigurationError` unless every element of ``x`` is in range.

    The range is ``[low, high]``, or ``[low, high)`` if ``strict_high``; the message
    ends with ``hint``.
    """
    if x.numel() == 0:
        return
    lo_t, hi_t = torch.aminmax(x.detach())
    lo, hi = float(lo_t), float(hi_t)
    too_high = hi >= high if strict_high else hi > high
    if math.isnan(lo) or math.isnan(hi) or lo < low or too_high:
        bracket = ")" if strict_high else "]"
        nan = " (the input contains NaN)" if math.isnan(lo) or math.isnan(hi) else ""
        raise ConfigurationError(
            f"{who} expects inputs in [{low:g}, {high:.10g}{bracket}; observed min "
            f"{lo:.10g}, max {hi:.10g}{nan}. {hint}"
        )


def check_no_nan(x: Tensor, who: str) -> None:
    """Raise a :class:`ConfigurationError` if ``x`` contains NaN (one synchronisation)."""
    if x.numel() and bool(torch.isnan(x.detach()).any()):
        raise ConfigurationError(f"{who}: the input contains NaN")


def check_generator(generator: object, who: str) -> torch.Generator | None:
    """``generator`` if it is a :class:`torch.Generator` or ``None``, else a
    :class:`ConfigurationError` naming ``who``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigurationError(
            f"{who}: generator must be a torch.Generator or None; got {type(generator).__name__}"
        )
    return generator


def check_generator_device(generator: torch.Generator | None, x: Tensor, who: str) -> None:
    """Raise a :class:`ConfigurationError` if ``generator`` is on another device type."""
    if generator is not None and generator.device.type != x.device.type:
        raise ConfigurationError(
            f"{who}: the generator is on device '{generator.device}' but the input is on "
            f"'{x.device}'; create the generator with torch.Generator(device=...)"
        )


def work_dtype(x: Tensor) -> torch.dtype:
    """Dtype to compute spike times in: at least float32 (half precision rounds badly)."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def steps_view(steps: Tensor, ndim: int) -> Tensor:
    """Reshape a 1-D tensor of step indices to ``[S, 1, ..., 1]`` (``ndim`` ones)."""
    return steps.view(-1, *([1] * ndim))


def latency_spikes(t_fire: Tensor, steps: Tensor, dtype: torch.dtype) -> Tensor:
    """Spikes ``[S, *t_fire.shape]``: 1 where ``t_fire == steps[s]``.

    ``t_fire`` is an integer tensor; a value of ``-1`` never fires.
    """
    return (t_fire.unsqueeze(0) == steps_view(steps, t_fire.dim())).to(dtype)


# --------------------------------------------------------------------------- step counter


class CountingEncoder(MemoryModule):
    """Base of encoders whose output at step ``t`` depends on ``t``.

    The carried state is ``{'t': counter}`` (a 0-dim int64 CPU tensor), the index of the
    next step to emit, kept modulo :attr:`period`; a streaming call with another batch
    size raises :class:`~spikeflow.errors.StateError` (MemoryModule compares it with
    the previous call's). Subclasses implement :meth:`_encode`, which returns the spikes
    of the given steps ``[S]`` as ``[S, ...]``.
    """

    #: Number of steps a multi-step call emits.
    T: int

    @property
    def period(self) -> int:
        """The code repeats after this many steps."""
        return self.T

    def _encode(self, x: Tensor, steps: Tensor) -> Tensor:
        raise NotImplementedError

    def _check_input(self, x: Tensor) -> Tensor:
        return check_float_input(x, type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        state = self._carried_state(x.shape)
        start = 0 if state is None else int(state["t"])
        n = self.T if self.step_mode == "m" else 1
        steps = (torch.arange(n, device=x.device) + start) % self.period
        out = self._encode(x, steps)
        self._keep_state({"t": torch.tensor((start + n) % self.period)})
        return out if self.step_mode == "m" else out[0]
