"""Rate coding: independent Bernoulli (Poisson) spikes, unsigned and signed."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.base import StepMode, StepModule
from spikeflow.encoding._common import (
    check_float_input,
    check_generator,
    check_generator_device,
    check_range,
    work_dtype,
)

__all__ = ["PoissonEncoder", "SignedPoissonEncoder"]


class _BernoulliEncoder(StepModule, nn.Module):
    """Shared part of the Poisson encoders: ``T``, the generator and the draws."""

    def __init__(
        self, T: int, step_mode: StepMode = "m", generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
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

    At every step ``t`` and for every element, independently::

        s[t] = 1  with probability x,   s[t] = 0  otherwise
             = 1[u[t] < x],  u[t] ~ Uniform[0, 1)

    so the expected firing rate over ``T`` steps is ``x``; ``x = 0`` never fires and
    ``x = 1`` always fires.

    Shapes: ``'m'``: ``x [*]`` -> ``[T, *]``; ``'s'``: ``x [*]`` -> ``[*]`` (one draw; the
    encoder is stateless, so single-step calls need no streaming and ``T`` is unused).

    Args:
        T: number of time steps of a multi-step call (``>= 1``).
        step_mode: ``'m'`` (default) or ``'s'``.
        generator: a :class:`torch.Generator` on the input's device for reproducible
            spikes; ``None`` uses torch's global generator.

    Raises:
        DTypeError: ``x`` is not a floating-point tensor.
        ConfigurationError: ``x`` has values outside ``[0, 1]`` (or NaN).
    """

    def forward(self, x: Tensor) -> Tensor:
        x = check_float_input(x, "PoissonEncoder")
        check_range(x, 0.0, 1.0, "PoissonEncoder")
        return self._fires(x).to(x.dtype)


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
