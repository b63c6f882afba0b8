"""Rate coding: independent Bernoulli (Poisson) spikes, unsigned and signed."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.base import StepMode, StepModule
from spikeflow.encoding._common import (
    check_float_input,
    check_generator,
    check_generator_device,
    check_range,
    work_dtype,
)
from spikeflow.errors import ConfigurationError

__all__ = ["PoissonEncoder", "SignedPoissonEncoder"]


class _BernoulliEncoder(StepModule, nn.Module):
    """Shared part of the Poisson encoders: ``T``, the generator and the draws."""

    def __init__(
        self, T: int | None, step_mode: StepMode = "m", generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if T is None:  # SpikingJelly's PoissonEncoder() takes no T: say how to port it
            name = type(self).__name__
            raise ConfigurationError(
                f"{name}: T, the number of steps, is required: {name}(T)(x) returns the "
                f"whole train [T, *x.shape] in one call (call it once, outside a step "
                f"loop); SpikingJelly's {name}() draws one step per call, which is "
                f"{name}(1, step_mode='s')"
            )
        self.T = check_int("T", T, 1)
        self.step_mode = step_mode
        self.generator = check_generator(generator, type(self).__name__)

    def _fires(self, p: Tensor) -> Tensor:
        """``u < p`` for fresh uniforms ``u`` of shape ``[T, *p.shape]`` (``[*p.shape]``
        single-step), as a bool tensor; ``p`` is detached."""
        check_generator_device(self.generator, p, type(self).__name__)
        shape = (self.T, *p.shape) if self.step_mode == "m" else tuple(p.shape)
        # Draw in at least float32: bfloat16 uniforms have a 2^-8 grid, which biases rates.
        work = work_dtype(p)
        u = torch.rand(shape, generator=self.generator, dtype=work, device=p.device)
        return u < p.detach().to(work)

    def extra_repr(self) -> str:
        return f"T={self.T}, step_mode={self.step_mode!r}"


class PoissonEncoder(_BernoulliEncoder):
    """Rate coding with independent Bernoulli (Poisson) spikes.

    At every step ``t`` and for every element, independently, with the firing
    probability ``p = gain · x + offset`` (``p = x`` by default)::

        s[t] = 1  with probability p,   s[t] = 0  otherwise
             = 1[u[t] < p],  u[t] ~ Uniform[0, 1)

    so the expected firing rate over ``T`` steps is ``p``; ``p = 0`` never fires and
    ``p = 1`` always fires. ``p`` must lie in ``[0, 1]`` (``x`` itself may lie anywhere
    if ``gain`` and ``offset`` bring it there, e.g. ``gain=1/255`` for 8-bit values);
    snnTorch's ``spikegen.rate`` clamps ``p`` into ``[0, 1]`` silently, here an
    out-of-range ``p`` raises: pass ``(gain * x + offset).clamp(0, 1)`` for snnTorch's
    clamping. With ``first_spike_time = t0 > 0`` the first ``t0`` steps are silent: the
    draws are made for all ``T`` steps and those of steps ``< t0`` dropped (as snnTorch
    does), so with the same generator state the later steps equal the ``t0 = 0`` train.

    With ``generator=None`` the draws are those of ``torch.bernoulli``, so after the
    same ``torch.manual_seed`` the spikes equal snnTorch's ``spikegen.rate`` (float32
    and float64 inputs, on the CPU).

    Shapes: ``'m'``: ``x [*]`` -> ``[T, *]``; ``'s'``: ``x [*]`` -> ``[*]`` (one draw per
    element; the encoder is stateless, so single-step calls need no streaming and ``T``
    is unused). A time-varying input ``x [T', *]`` (snnTorch's ``time_var_input=True``)
    is one single-step call: one draw per step and element.

    Args:
        T: number of time steps of a multi-step call (``>= 1``); required: ``None``
            (SpikingJelly's ``PoissonEncoder()``) raises ``ConfigurationError`` saying how
            to port it.
        step_mode: ``'m'`` (default) or ``'s'``.
        generator: a :class:`torch.Generator` on the input's device for reproducible
            spikes; ``None`` uses torch's global generator.
        gain: the factor of ``x`` in ``p`` (default 1.0), a finite number.
        offset: the shift of ``p`` (default 0.0), a finite number.
        first_spike_time: ``t0``, the number of silent steps at the start of a
            multi-step call, an integer in ``[0, T - 1]`` (default 0); a single-step call
            has no step counter, so ``t0 > 0`` is refused there.

    Raises:
        DTypeError: ``x`` is not a floating-point tensor.
        ConfigurationError: a bad argument; ``p`` has values outside ``[0, 1]`` (or NaN);
            a single-step call with ``first_spike_time > 0``.
    """

    def __init__(
        self,
        T: int | None = None,
        step_mode: StepMode = "m",
        generator: torch.Generator | None = None,
        *,
        gain: float = 1.0,
        offset: float = 0.0,
        first_spike_time: int = 0,
    ) -> None:
        super().__init__(T, step_mode, generator)
        self.gain = check_real("PoissonEncoder: gain", gain)
        self.offset = check_real("PoissonEncoder: offset", offset)
        self.first_spike_time = check_int("PoissonEncoder: first_spike_time", first_spike_time, 0)
        if self.first_spike_time > self.T - 1:
            raise ConfigurationError(
                f"PoissonEncoder: first_spike_time must be at most T - 1 = {self.T - 1}, "
                f"got {self.first_spike_time}"
            )

    def forward(self, x: Tensor) -> Tensor:
        x = check_float_input(x, "PoissonEncoder")
        t0 = self.first_spike_time
        if t0 and self.step_mode == "s":
            raise ConfigurationError(
                f"PoissonEncoder: first_spike_time={t0} needs multi-step mode; a single-step "
                f"call has no step counter (set first_spike_time=0, or silence the first "
                f"steps yourself)"
            )
        if self.gain == 1.0 and self.offset == 0.0:
            p = x
            check_range(p, 0.0, 1.0, "PoissonEncoder")
        else:
            p = x.detach().to(work_dtype(x)) * self.gain + self.offset
            check_range(
                p,
                0.0,
                1.0,
                f"PoissonEncoder (the probability gain * x + offset, gain={self.gain:g}, "
                f"offset={self.offset:g})",
                hint="Rescale x, or clamp as snnTorch does: "
                "PoissonEncoder(T)((gain * x + offset).clamp(0, 1)).",
            )
        fires = self._fires(p)
        if t0:
            fires[:t0] = False
        return fires.to(x.dtype)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.gain != 1.0 or self.offset != 0.0:
            text += f", gain={self.gain:g}, offset={self.offset:g}"
        if self.first_spike_time:
            text += f", first_spike_time={self.first_spike_time}"
        return text


class SignedPoissonEncoder(_BernoulliEncoder):
    """Signed rate coding: spikes of ``x``'s sign, with probability ``|x|``.

    At every step ``t`` and for every element, independently (``x`` in ``[-1, 1]``)::

        s[t] = sign(x) · 1[u[t] < |x|],   u[t] ~ Uniform[0, 1)

    so ``s`` is in ``{-1, 0, +1}``, ``x > 0`` only gives ``+1`` spikes, ``x < 0`` only
    ``-1`` spikes, and the mean of ``s`` over ``T`` steps estimates ``x`` (expected value
    ``x``, standard deviation ``sqrt(|x| (1 - |x|) / T)``). The uniforms are the ones
    :class:`PoissonEncoder` draws (same shape, dtype and generator), so with the same
    generator state ``|s|`` equals ``PoissonEncoder(T)(|x|)``.

    Shapes: ``'m'``: ``x [*]`` -> ``[T, *]``; ``'s'``: ``x [*]`` -> ``[*]`` (one draw,
    stateless, no streaming needed).

    Args:
        T: number of time steps of a multi-step call (``>= 1``).
        step_mode: ``'m'`` (default) or ``'s'``.
        generator: a :class:`torch.Generator` on the input's device for reproducible
            spikes; ``None`` uses torch's global generator.

    Raises:
        DTypeError: ``x`` is not a floating-point tensor.
        ConfigurationError: ``x`` has values outside ``[-1, 1]`` (or NaN).
    """

    def forward(self, x: Tensor) -> Tensor:
        x = check_float_input(x, "SignedPoissonEncoder")
        check_range(x, -1.0, 1.0, "SignedPoissonEncoder")
        x = x.detach()
        return torch.sign(x) * self._fires(x.abs()).to(x.dtype)
