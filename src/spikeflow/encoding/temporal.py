"""Codes whose output at step ``t`` depends on ``t``: latency, periodic, weighted phase.

They are :class:`~spikeflow.base.MemoryModule` s that carry a step counter (see the
package docstring, :mod:`spikeflow.encoding`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow._checks import broadcasts_to, check_flag, check_int, check_real
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

#: The codes of :class:`LatencyEncoder`: SpikingJelly's two and snnTorch's two.
_FUNCTIONS = ("linear", "log", "rc", "rc_linear")
#: The keyword options of the snnTorch codes ('rc', 'rc_linear') and their defaults.
_RC_DEFAULTS: dict[str, object] = {
    "tau": 1.0,
    "threshold": 0.01,
    "normalize": False,
    "clip": False,
    "first_spike_time": 0,
    "bypass": False,
    "epsilon": 1e-7,
}


class LatencyEncoder(CountingEncoder):
    """Time-to-first-spike (latency) coding: at most one spike per element, earlier for
    larger x (``x`` in ``[0, 1]``).

    SpikingJelly's codes fire every element exactly once, at step ``t_f``:

    - ``'linear'``: ``t_f = round((T - 1)(1 - x))``;
    - ``'log'``: ``t_f = round((T - 1) - ln(α x + 1))`` with ``α = e^(T-1) - 1``.

    Both map ``x = 1`` to step 0 and ``x = 0`` to step ``T - 1`` (``x = 0`` still fires,
    at the last step, as in SpikingJelly), and both are non-increasing in ``x``. The log
    code spends more of the window on small inputs. It is evaluated in the equivalent,
    overflow-free form ``t_f = -ln(x + (1 - x) e^-(T-1))`` (multiply ``α x + 1`` out as
    ``e^(T-1) (x + (1 - x) e^-(T-1))``), clamped to ``[0, T - 1]``.

    snnTorch's codes (``spikegen.latency``; the spikes are bit-identical to it) take a
    threshold ``θ`` (``threshold``), a time constant ``τ`` (``tau``) and a first spike
    time ``t0`` (``first_spike_time``); ``t_f = round(t)`` with:

    - ``'rc'`` (snnTorch's default): the time an RC circuit charged by ``x`` takes to
      reach ``θ``, ``t = τ ln(x' / (x' - θ)) + t0`` with ``x' = max(x, θ + ε)``: inputs
      at or below ``θ`` all fire at the latest time, ``τ ln((θ + ε) / ε) + t0``
      (``ε = epsilon``, 1e-7);
    - ``'rc_linear'`` (snnTorch's ``linear=True``): ``t = min(τ (1 - x), τ (1 - θ)) + t0``.

    ``normalize=True`` stretches the times over the window: ``'rc'`` scales ``t - t0``
    so that the largest time **of the input tensor** lands on ``T - 1`` (as snnTorch
    does: one sample's times depend on the others unless the input holds a value at or
    below ``θ``, whose time is the largest possible); ``'rc_linear'`` sets
    ``τ = T - 1 - t0``. ``clip=True`` silences the inputs below ``θ``. An element whose
    step is past ``T - 1`` raises :class:`~spikeflow.errors.ConfigurationError` (use
    ``normalize``, a smaller ``tau`` or a larger ``T``), unless ``bypass=True``, which
    silences it (snnTorch's ``bypass`` with ``num_steps`` given). Silent elements have
    ``t_f = -1``.

    ``round`` is :func:`torch.round` (halves go to the even step); times are computed in
    at least float32 (in the input's dtype for float32 and float64, as snnTorch). With
    ``T = 1`` the SpikingJelly codes fire every element at step 0.

    Shapes: ``'m'``: ``x [*]`` -> ``[T, *]``, ``out[t] = 1[t == t_f]``; ``'s'`` (needs
    streaming): the ``k``-th call returns ``1[k mod T == t_f]`` for the ``x`` of that call,
    so a streaming run longer than ``T`` repeats the code with period ``T``.

    Args:
        T: number of time steps (``>= 1``).
        enc_function: ``'linear'`` (default), ``'log'``, ``'rc'`` or ``'rc_linear'``.
        step_mode: ``'m'`` (default) or ``'s'``.
        tau: ``τ > 0`` (default 1.0); ``'rc'`` and ``'rc_linear'`` only, like the
            following options.
        threshold: ``θ`` in ``(0, 1)`` (default 0.01).
        normalize: stretch the times to end at ``T - 1`` (default False).
        clip: no spike for inputs below ``θ`` (default False).
        first_spike_time: ``t0``, an integer in ``[0, T - 1]`` (default 0).
        bypass: silence the elements whose step is past ``T - 1`` instead of raising
            (default False).
        epsilon: ``ε > 0``, the floor of ``x - θ`` in ``'rc'`` (default 1e-7).

    The options are kept as attributes of those names (``None`` for ``'linear'`` and
    ``'log'``).

    Raises:
        ConfigurationError: a bad argument, an option of the snnTorch codes given with
            ``'linear'`` or ``'log'``, an input outside ``[0, 1]`` (or NaN), or (when
            called) a step past ``T - 1`` without ``bypass``.
        DTypeError: the input is not a floating-point tensor.
    """

    _FUNCTIONS = _FUNCTIONS

    def __init__(
        self,
        T: int,
        enc_function: str = "linear",
        step_mode: StepMode = "m",
        *,
        tau: float | None = None,
        threshold: float | None = None,
        normalize: bool | None = None,
        clip: bool | None = None,
        first_spike_time: int | None = None,
        bypass: bool | None = None,
        epsilon: float | None = None,
    ) -> None:
        super().__init__(step_mode)
        self.T = check_int("T", T, 1)
        if enc_function not in self._FUNCTIONS:
            raise ConfigurationError(
                f"enc_function must be one of {self._FUNCTIONS}; got {enc_function!r}"
            )
        self.enc_function = enc_function
        given = {
            "tau": tau,
            "threshold": threshold,
            "normalize": normalize,
            "clip": clip,
            "first_spike_time": first_spike_time,
            "bypass": bypass,
            "epsilon": epsilon,
        }
        if enc_function in ("linear", "log"):
            passed = [name for name, value in given.items() if value is not None]
            if passed:
                raise ConfigurationError(
                    f"LatencyEncoder: {', '.join(passed)} only apply to the snnTorch codes "
                    f"enc_function='rc' and 'rc_linear', not {enc_function!r}"
                )
            for name in _RC_DEFAULTS:  # the attributes exist, as None
                setattr(self, name, None)
            return
        opt = {k: _RC_DEFAULTS[k] if v is None else v for k, v in given.items()}
        owner = "LatencyEncoder"
        self.tau = check_real(f"{owner}: tau", opt["tau"], 0.0, low_open=True)
        self.threshold = check_real(
            f"{owner}: threshold", opt["threshold"], 0.0, 1.0, low_open=True, high_open=True
        )
        self.epsilon = check_real(f"{owner}: epsilon", opt["epsilon"], 0.0, low_open=True)
        self.normalize = check_flag(owner, "normalize", opt["normalize"])
        self.clip = check_flag(owner, "clip", opt["clip"])
        self.bypass = check_flag(owner, "bypass", opt["bypass"])
        self.first_spike_time = check_int(f"{owner}: first_spike_time", opt["first_spike_time"], 0)
        if self.first_spike_time > self.T - 1:
            raise ConfigurationError(
                f"{owner}: first_spike_time must be at most T - 1 = {self.T - 1}, "
                f"got {self.first_spike_time}"
            )

    @property
    def _snntorch_code(self) -> bool:
        return self.enc_function in ("rc", "rc_linear")

    def _check_input(self, x: Tensor) -> Tensor:
        x = check_float_input(x, "LatencyEncoder")
        check_range(x, 0.0, 1.0, "LatencyEncoder")
        return x

    def fire_step(self, x: Tensor) -> Tensor:
        """The firing step ``t_f`` of every element of ``x``, as an int64 tensor (``-1``
        for an element that does not fire: ``clip`` or ``bypass``)."""
        return self._fire_step(self._check_input(x))

    def _fire_step(self, x: Tensor) -> Tensor:
        xw = x.detach().to(work_dtype(x))
        if self._snntorch_code:
            return self._rc_fire_step(xw)
        if self.enc_function == "linear":
            t = (self.T - 1) * (1.0 - xw)
        else:
            t = -torch.log(xw + (1.0 - xw) * math.exp(-(self.T - 1)))
        return torch.round(t.clamp(0.0, self.T - 1)).to(torch.int64)

    def _rc_times(self, x: Tensor) -> Tensor:
        """snnTorch's spike times, before rounding (its operations in its order, so that
        the rounded steps are bit-identical)."""
        t0, theta = self.first_spike_time, self.threshold
        if self.enc_function == "rc_linear":
            tau = self.T - 1 - t0 if self.normalize else self.tau
            return ((x - 1) * -tau).clamp_max(-tau * (theta - 1)) + t0
        floor = x.clamp_min(theta + self.epsilon)
        t = torch.log(floor / (floor - theta)) * self.tau
        if t0 > 0:
            t = t + t0
        if self.normalize and t.numel():
            shifted = t - t0
            t = shifted * (self.T - t0 - 1) / shifted.max() + t0
        return t

    def _rc_fire_step(self, x: Tensor) -> Tensor:
        steps = torch.round(self._rc_times(x))
        late = steps > self.T - 1
        below = x < self.threshold if self.clip else None
        if below is not None:
            late = late & ~below  # a clipped input is silent anyway
        if not self.bypass and late.numel() and bool(late.any()):
            last = int(steps[late].max())
            raise ConfigurationError(
                f"LatencyEncoder({self.enc_function!r}): an input fires at step {last}, "
                f"past the last step T - 1 = {self.T - 1}; use normalize=True, a smaller "
                f"tau, T >= {last + 1}, or bypass=True to drop the late spikes"
            )
        silent = late if below is None else late | below
        return torch.where(silent, -1.0, steps).to(torch.int64)

    def _encode(self, x: Tensor, steps: Tensor) -> Tensor:
        return latency_spikes(self._fire_step(x), steps, x.dtype)

    def extra_repr(self) -> str:
        text = f"T={self.T}, enc_function={self.enc_function!r}, step_mode={self.step_mode!r}"
        if self._snntorch_code:
            text += (
                f", tau={self.tau:g}, threshold={self.threshold:g}, "
                f"normalize={self.normalize}, clip={self.clip}, "
                f"first_spike_time={self.first_spike_time}, bypass={self.bypass}"
            )
            if self.enc_function == "rc":
                text += f", epsilon={self.epsilon:g}"
        return text


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
