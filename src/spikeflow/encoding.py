"""Encoders: turn static inputs (images, feature vectors) into spike trains.

Every encoder is an :class:`torch.nn.Module` with a ``step_mode``:

- ``'m'`` (multi-step, the default): ``forward(x)`` returns the whole spike train,
  time-major, ``[T, *x.shape]`` (an image batch ``[B, C, H, W]`` becomes
  ``[T, B, C, H, W]``); :class:`GaussianPopulationEncoder` adds a last dimension of
  size ``n_neurons``.
- ``'s'`` (single-step): ``forward(x)`` returns one time step ``[*x.shape]``.

Spikes are float tensors of 0s and 1s in the input's floating dtype, on its device.
Encoders are not differentiable with respect to ``x`` (the output is a step function of
the input); :meth:`GaussianPopulationEncoder.response` is.

:class:`PoissonEncoder` is stateless: every step is a fresh random draw, so it works in
single-step mode without streaming. The other encoders emit step ``t`` of a code that
depends on ``t`` (latency, periodic pattern, phase), so they are
:class:`~spikeflow.base.MemoryModule` s that carry a step counter: single-step calls
need streaming (:func:`spikeflow.functional.streaming`), ``reset()`` sets the counter
back to step 0, a streaming call whose input shape differs from the previous call's
raises :class:`~spikeflow.errors.StateError` (a new batch: reset between sequences),
and multi-step calls outside streaming always start at step 0. The code
of a counter-based encoder is periodic (period ``T``, or ``P`` / ``K`` for the periodic
and phase encoders): a streaming run longer than one period starts the code again.

Out-of-range inputs raise :class:`~spikeflow.errors.ConfigurationError` naming the
observed minimum and maximum; checking the range reads two numbers back from the device
(one synchronisation per call).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import broadcasts_to, check_int, check_real
from spikeflow.base import MemoryModule, StepMode, StepModule
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "GaussianPopulationEncoder",
    "LatencyEncoder",
    "PeriodicEncoder",
    "PoissonEncoder",
    "WeightedPhaseEncoder",
]


# --------------------------------------------------------------------------- checks


def _check_float_input(x: object, who: str) -> Tensor:
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


def _check_range(x: Tensor, low: float, high: float, who: str, strict_high: bool = False) -> None:
    """Raise a :class:`ConfigurationError` unless every element of ``x`` is in range.

    The range is ``[low, high]``, or ``[low, high)`` if ``strict_high``.
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
            f"{lo:.10g}, max {hi:.10g}{nan}. Normalise the input first."
        )


def _work_dtype(x: Tensor) -> torch.dtype:
    """Dtype to compute spike times in: at least float32 (half precision rounds badly)."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _steps_view(steps: Tensor, ndim: int) -> Tensor:
    """Reshape a 1-D tensor of step indices to ``[S, 1, ..., 1]`` (``ndim`` ones)."""
    return steps.view(-1, *([1] * ndim))


def _latency_spikes(t_fire: Tensor, steps: Tensor, dtype: torch.dtype) -> Tensor:
    """Spikes ``[S, *t_fire.shape]``: 1 where ``t_fire == steps[s]``.

    ``t_fire`` is an integer tensor; a value of ``-1`` never fires.
    """
    return (t_fire.unsqueeze(0) == _steps_view(steps, t_fire.dim())).to(dtype)


# --------------------------------------------------------------------------- Poisson


class PoissonEncoder(StepModule, nn.Module):
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

    def __init__(
        self, T: int, step_mode: StepMode = "m", generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.T = check_int("T", T, 1)
        self.step_mode = step_mode
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ConfigurationError(
                f"generator must be a torch.Generator or None; got {type(generator).__name__}"
            )
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        x = _check_float_input(x, "PoissonEncoder")
        _check_range(x, 0.0, 1.0, "PoissonEncoder")
        g = self.generator
        if g is not None and g.device.type != x.device.type:
            raise ConfigurationError(
                f"PoissonEncoder: the generator is on device '{g.device}' but the input "
                f"is on '{x.device}'; create the generator with torch.Generator(device=...)"
            )
        shape = (self.T, *x.shape) if self.step_mode == "m" else tuple(x.shape)
        # Draw in at least float32: bfloat16 uniforms have a 2^-8 grid, which biases rates.
        work = _work_dtype(x)
        u = torch.rand(shape, generator=g, dtype=work, device=x.device)
        return (u < x.detach().to(work)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"T={self.T}, step_mode={self.step_mode!r}"


# --------------------------------------------------------------------------- step counter


class _CountingEncoder(MemoryModule):
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
        return _check_float_input(x, type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        state = self._carried_state(x.shape)
        start = 0 if state is None else int(state["t"])
        n = self.T if self.step_mode == "m" else 1
        steps = (torch.arange(n, device=x.device) + start) % self.period
        out = self._encode(x, steps)
        self._keep_state({"t": torch.tensor((start + n) % self.period)})
        return out if self.step_mode == "m" else out[0]


# --------------------------------------------------------------------------- latency


class LatencyEncoder(_CountingEncoder):
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
        x = _check_float_input(x, "LatencyEncoder")
        _check_range(x, 0.0, 1.0, "LatencyEncoder")
        return x

    def fire_step(self, x: Tensor) -> Tensor:
        """The firing step ``t_f`` of every element of ``x``, as an int64 tensor."""
        return self._fire_step(self._check_input(x))

    def _fire_step(self, x: Tensor) -> Tensor:
        xw = x.detach().to(_work_dtype(x))
        if self.enc_function == "linear":
            t = (self.T - 1) * (1.0 - xw)
        else:
            t = -torch.log(xw + (1.0 - xw) * math.exp(-(self.T - 1)))
        return torch.round(t.clamp(0.0, self.T - 1)).to(torch.int64)

    def _encode(self, x: Tensor, steps: Tensor) -> Tensor:
        return _latency_spikes(self._fire_step(x), steps, x.dtype)

    def extra_repr(self) -> str:
        return f"T={self.T}, enc_function={self.enc_function!r}, step_mode={self.step_mode!r}"


# --------------------------------------------------------------------------- periodic


class PeriodicEncoder(_CountingEncoder):
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


class WeightedPhaseEncoder(_CountingEncoder):
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
        x = _check_float_input(x, "WeightedPhaseEncoder")
        high = 1.0 - 2.0**-self.K
        # For K >= 53, 1 - 2^-K rounds to 1.0 in float64: require x < 1 instead.
        _check_range(x, 0.0, high, "WeightedPhaseEncoder", strict_high=high >= 1.0)
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
        r = x.detach().to(_work_dtype(x))  # the fractional part left, in [0, 1)
        bits = []
        for _ in range(self.K):
            r = 2.0 * r
            bit = torch.floor(r)
            r = r - bit
            bits.append(bit.to(x.dtype))
        return torch.stack(bits)[steps]

    def extra_repr(self) -> str:
        return f"K={self.K}, step_mode={self.step_mode!r}"


# --------------------------------------------------------------------------- population


class GaussianPopulationEncoder(_CountingEncoder):
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
        x = _check_float_input(x, "GaussianPopulationEncoder")
        mu = self.centers.to(device=x.device, dtype=x.dtype)
        d = x.unsqueeze(-1) - mu
        return torch.exp(-(d * d) / (2.0 * self.sigma**2))

    def fire_step(self, x: Tensor) -> Tensor:
        """Firing step of every neuron, ``[*x.shape, n]`` int64; ``-1`` means silent."""
        return self._fire_step(self._check_input(x))

    def _fire_step(self, x: Tensor) -> Tensor:
        r = self.response(x.detach().to(_work_dtype(x)))
        t = torch.round((self.T - 1) * (1.0 - r)).to(torch.int64)
        return torch.where(r >= self.min_response, t, torch.full_like(t, -1))

    def _check_input(self, x: Tensor) -> Tensor:
        x = _check_float_input(x, "GaussianPopulationEncoder")
        if x.numel() and bool(torch.isnan(x).any()):
            raise ConfigurationError("GaussianPopulationEncoder: the input contains NaN")
        return x

    def _encode(self, x: Tensor, steps: Tensor) -> Tensor:
        return _latency_spikes(self._fire_step(x), steps, x.dtype)

    def extra_repr(self) -> str:
        return (
            f"n_neurons={self.n_neurons}, x_min={self.x_min:g}, x_max={self.x_max:g}, "
            f"T={self.T}, beta={self.beta:g}, min_response={self.min_response:g}, "
            f"step_mode={self.step_mode!r}"
        )
