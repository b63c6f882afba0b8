"""Compact continuous-time event batches and the double-exponential PSP kernel shared by
the timing-based (exact spike time) neurons.

A batch of ``B`` trials is three tensors, the layout SpikingJelly 2.0's
``timing_based`` package uses:

* ``spike_times [E]``: the event times (float32 or float64), in the same time unit as
  the window ``duration`` and the time constants;
* ``input_indices [E]`` (int64): the input connection (synapse) each event arrives on;
* ``batch_offsets [B+1]`` (int64): trial ``b`` owns events
  ``batch_offsets[b]:batch_offsets[b+1]``, in any order; a trial may be empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["PSPKernel", "check_events", "pad_events"]

_FLOATS = (torch.float32, torch.float64)


@dataclass(frozen=True)
class PSPKernel:
    """The double-exponential postsynaptic potential, normalised to peak 1::

        K(s) = (exp(-s/τ) - exp(-s/τ_s)) / V0      for s >= 0,  K(s) = 0 for s < 0

    with ``V0`` the maximum of the bracket, reached at
    ``s_peak = τ τ_s ln(τ/τ_s) / (τ - τ_s)``. ``τ`` (membrane) and ``τ_s`` (synaptic)
    play symmetric roles: whichever is larger is the slow decay, so ``τ_s > τ`` is allowed
    (as in SpikingJelly), ``τ == τ_s`` is not (the bracket vanishes). Precision degrades
    as ``τ_s`` approaches ``τ``: the bracket is a difference of two nearly equal decays.

    Args:
        tau: membrane time constant, finite and ``> 0``.
        tau_s: synaptic time constant, finite, ``> 0`` and ``!= tau``.
    """

    tau: float
    tau_s: float
    _v0: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_real("PSPKernel: tau", self.tau, 0.0, low_open=True)
        check_real("PSPKernel: tau_s", self.tau_s, 0.0, low_open=True)
        if self.tau == self.tau_s:
            raise ConfigurationError(
                f"PSPKernel: tau and tau_s must differ (the double-exponential PSP "
                f"exp(-s/tau) - exp(-s/tau_s) is zero when they are equal), got "
                f"tau = tau_s = {self.tau!r}"
            )
        s = self.peak_delay
        v0 = math.exp(-s / self.slow) * -math.expm1(-self.rate_gap * s)
        if not (math.isfinite(v0) and v0 > 0):
            raise ConfigurationError(
                f"PSPKernel: tau = {self.tau!r} and tau_s = {self.tau_s!r} give a PSP "
                f"peak that is not a positive float64 ({v0!r}); use time constants "
                f"that differ more"
            )
        object.__setattr__(self, "_v0", v0)

    @property
    def slow(self) -> float:
        """The larger time constant."""
        return float(max(self.tau, self.tau_s))

    @property
    def fast(self) -> float:
        """The smaller time constant."""
        return float(min(self.tau, self.tau_s))

    @property
    def rate_gap(self) -> float:
        """``δ = 1/fast - 1/slow > 0``."""
        return 1.0 / self.fast - 1.0 / self.slow

    @property
    def peak_delay(self) -> float:
        """Delay ``s_peak`` after the input at which ``K`` reaches 1."""
        return math.log(self.slow / self.fast) / self.rate_gap

    @property
    def v0(self) -> float:
        """The normaliser ``V0``: the peak of ``exp(-s/slow) - exp(-s/fast)``."""
        return self._v0

    def value(self, s: Tensor) -> Tensor:
        """``K(s)`` for ``s >= 0`` (the caller masks ``s < 0``)."""
        return torch.exp(-s / self.slow) * -torch.expm1(-self.rate_gap * s) / self.v0

    def first(self, s: Tensor) -> Tensor:
        """``K'(s)`` for ``s >= 0``."""
        return (torch.exp(-s / self.fast) / self.fast - torch.exp(-s / self.slow) / self.slow) / (
            self.v0
        )

    def second(self, s: Tensor) -> Tensor:
        """``K''(s)`` for ``s >= 0``."""
        return (
            torch.exp(-s / self.slow) / self.slow**2 - torch.exp(-s / self.fast) / self.fast**2
        ) / self.v0


def check_features(owner: str, in_features: int, out_features: int) -> tuple[int, int]:
    """``(I, O)`` of a dense timing layer (its weights ``[O, I]``), each an integer >= 1
    (the error names ``owner`` and the argument)."""
    return (
        check_int(f"{owner}: in_features", in_features, 1),
        check_int(f"{owner}: out_features", out_features, 1),
    )


def initial_weight(*shape: int) -> nn.Parameter:
    """Trainable weights of ``shape``, drawn N(0, 0.001²) as SpikingJelly's timing-based
    layers start theirs."""
    weight = nn.Parameter(torch.empty(*shape))
    nn.init.normal_(weight, mean=0.0, std=0.001)
    return weight


def check_events(
    owner: str,
    spike_times: Tensor,
    input_indices: Tensor,
    batch_offsets: Tensor,
    in_features: int,
    duration: float,
) -> None:
    """Check a compact event batch (see the module docstring); raise a
    :class:`~spikeflow.errors.DTypeError`, :class:`~spikeflow.errors.ShapeError` or
    :class:`~spikeflow.errors.ConfigurationError` naming ``owner`` and what is wrong:
    dtypes, shapes, devices, non-finite times, times outside ``[0, duration]``, indices
    outside ``[0, in_features)``, offsets that do not run from 0 to ``E`` non-decreasing.
    """
    for name, t in (
        ("spike_times", spike_times),
        ("input_indices", input_indices),
        ("batch_offsets", batch_offsets),
    ):
        if not isinstance(t, Tensor):
            raise DTypeError(f"{owner}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if spike_times.dtype not in _FLOATS:
        raise DTypeError(
            f"{owner}: spike_times must be float32 or float64, got {spike_times.dtype}"
        )
    for name, t in (("input_indices", input_indices), ("batch_offsets", batch_offsets)):
        if t.dtype != torch.int64:
            raise DTypeError(f"{owner}: {name} must be int64, got {t.dtype}")
    if spike_times.ndim != 1 or input_indices.shape != spike_times.shape:
        raise ShapeError(
            f"{owner}: spike_times and input_indices must both have shape [E], got "
            f"{tuple(spike_times.shape)} and {tuple(input_indices.shape)}"
        )
    if batch_offsets.ndim != 1 or batch_offsets.numel() < 1:
        raise ShapeError(
            f"{owner}: batch_offsets must have shape [B+1] with B >= 0, got "
            f"{tuple(batch_offsets.shape)}"
        )
    devices = {spike_times.device, input_indices.device, batch_offsets.device}
    if len(devices) != 1:
        raise ConfigurationError(f"{owner}: the event tensors are on different devices {devices}")
    n = spike_times.numel()
    if int(batch_offsets[0]) != 0 or int(batch_offsets[-1]) != n:
        raise ShapeError(
            f"{owner}: batch_offsets must start at 0 and end at E = {n}, got "
            f"{int(batch_offsets[0])} ... {int(batch_offsets[-1])}"
        )
    if bool((batch_offsets[1:] < batch_offsets[:-1]).any()):
        raise ShapeError(f"{owner}: batch_offsets must be non-decreasing")
    if n == 0:
        return
    if not bool(torch.isfinite(spike_times).all()):
        raise ConfigurationError(f"{owner}: spike_times must be finite (found NaN or inf)")
    low, high = float(spike_times.detach().min()), float(spike_times.detach().max())
    if low < 0 or high > duration:
        raise ConfigurationError(
            f"{owner}: spike_times must lie in the window [0, duration] = [0, {duration:g}], "
            f"got times in [{low:g}, {high:g}] (SpikingJelly silently drops such events; "
            f"filter them first if that is what you want)"
        )
    lo_i, hi_i = int(input_indices.min()), int(input_indices.max())
    if lo_i < 0 or hi_i >= in_features:
        raise ConfigurationError(
            f"{owner}: input_indices must lie in [0, in_features) = [0, {in_features}), "
            f"got indices in [{lo_i}, {hi_i}]"
        )


def check_dense_events(
    owner: str,
    spike_times: Tensor,
    input_indices: Tensor,
    batch_offsets: Tensor,
    weight: Tensor,
    duration: float,
) -> None:
    """Check a dense layer's call: ``weight`` ``[O, I]`` (``O, I >= 1``), the event batch
    (:func:`check_events`, ``I`` inputs, the window ``[0, duration]``), and the weight's
    dtype and device against the times'.

    Raises:
        ShapeError, DTypeError: naming ``owner`` and what is wrong.
    """
    if not isinstance(weight, Tensor) or weight.ndim != 2 or min(weight.shape) < 1:
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ShapeError(f"{owner}: weight must have shape [O, I] with O, I >= 1, got {got}")
    check_events(owner, spike_times, input_indices, batch_offsets, weight.shape[1], duration)
    if weight.dtype != spike_times.dtype or weight.device != spike_times.device:
        raise DTypeError(
            f"{owner}: weight ({weight.dtype}, {weight.device}) must match spike_times' "
            f"dtype and device ({spike_times.dtype}, {spike_times.device})"
        )


@dataclass(frozen=True)
class PaddedEvents:
    """A compact event batch sorted by time within each trial and padded to ``[B, N]``.

    ``source`` is each slot's position in the compact tensors (``-1`` for padding),
    ``index`` its input connection (0 for padding), ``valid`` marks real events and
    ``times`` (float64, detached) their times (``duration`` for padding).
    """

    times: Tensor
    index: Tensor
    source: Tensor
    valid: Tensor
    count: Tensor


def pad_events(
    spike_times: Tensor, input_indices: Tensor, batch_offsets: Tensor, duration: float
) -> PaddedEvents:
    """Sort each trial's events by time (stably: equal times keep their order) and pad
    them to ``[B, N]``, ``N = max(1, longest trial)``; see :class:`PaddedEvents`."""
    device = spike_times.device
    b = batch_offsets.numel() - 1
    count = batch_offsets.diff()
    n = max(1, int(count.max())) if b else 1
    e = spike_times.numel()
    times64 = spike_times.detach().double()
    trial = torch.repeat_interleave(torch.arange(b, device=device), count, output_size=e)
    order = torch.argsort(times64, stable=True)
    order = order[torch.argsort(trial[order], stable=True)]
    rank = torch.arange(e, device=device) - batch_offsets[trial[order]]
    source = torch.full((b, n), -1, dtype=torch.int64, device=device)
    source[trial[order], rank] = order
    valid = source >= 0
    safe = source.clamp_min(0)
    times = torch.where(valid, times64[safe] if e else times64.new_zeros(b, n), duration)
    index = torch.where(valid, input_indices[safe] if e else source, 0)
    return PaddedEvents(times=times, index=index, source=source, valid=valid, count=count)


def linear_scan(decay: Tensor, x: Tensor) -> Tensor:
    """Solve ``y[n] = decay[n] * y[n-1] + x[n]`` (``y[-1] = 0``) along the last axis by a
    log-depth (Hillis-Steele) scan: no exponential rescaling, so no overflow for any
    window length. ``decay [B, N]`` broadcasts against ``x [B, O, N]``."""
    d = decay.unsqueeze(1).expand_as(x)
    y = x
    step = 1
    n = x.shape[-1]
    while step < n:
        y = torch.cat((y[..., :step], y[..., step:] + d[..., step:] * y[..., :-step]), -1)
        d = torch.cat((d[..., :step], d[..., step:] * d[..., :-step]), -1)
        step *= 2
    return y
