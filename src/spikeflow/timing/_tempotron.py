"""The Tempotron (Gütig & Sompolinsky 2006) on continuous event times, as SpikingJelly
2.0's ``spikingjelly.timing_based`` defines it.

The membrane of output ``o`` in one trial is the weighted sum of unit-peak
double-exponential PSPs (:class:`~spikeflow.timing.PSPKernel`) of the input events::

    V_o(t) = Σ_i w[o, j_i] K(t - t_i)

It fires at the first **upward** crossing of the threshold (touching it without rising
through does not fire). The spike **shunts** the inputs: events at or after the spike
time no longer reach the membrane, while the PSPs already started run on (no reset).
The neuron reports, per trial and output, ``v_max`` (the maximum of that shunted
trajectory over ``[0, duration]``), its time ``t_peak`` and the spike time ``t_spike``
(``inf`` when it does not fire). Nothing is simulated on a time grid: between events the
membrane is ``(a e^{-s/slow} - c e^{-s/fast}) / V0`` with at most one stationary point,
so maxima are found in closed form and the crossing by bisection to float64 precision.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.errors import DTypeError, ShapeError
from spikeflow.timing._events import (
    PSPKernel,
    check_dense_events,
    check_features,
    initial_weight,
    linear_scan,
    pad_events,
)

__all__ = ["Tempotron", "tempotron", "tempotron_classification_loss", "tempotron_loss"]

_BISECTION_STEPS = 80  # halves any float64 window to adjacent floats


def _segment_voltage(u: Tensor, c: Tensor, s: Tensor, k: PSPKernel) -> Tensor:
    """``V`` a delay ``s >= 0`` after an event whose state is ``u = a - c`` and ``c``:
    ``e^{-s/slow} (u + c (1 - e^{-δ s})) / V0`` (no cancellation between the decays)."""
    return torch.exp(-s / k.slow) * (u + c * -torch.expm1(-k.rate_gap * s)) / k.v0


def _segment_slope(a: Tensor, c: Tensor, s: Tensor, k: PSPKernel) -> Tensor:
    return (c * torch.exp(-s / k.fast) / k.fast - a * torch.exp(-s / k.slow) / k.slow) / k.v0


def _stationary(a: Tensor, c: Tensor, k: PSPKernel) -> Tensor:
    """Delay of the one stationary point of ``a e^{-s/slow} - c e^{-s/fast}`` (NaN or
    ``±inf`` where there is none: ``a`` and ``c`` of different sign or zero)."""
    ratio = (c * k.slow) / (a * k.fast)
    return torch.where(ratio > 0, torch.log(ratio.clamp_min(1e-300)), torch.nan) / k.rate_gap


def _solve(
    times: Tensor,
    valid: Tensor,
    count: Tensor,
    w: Tensor,
    duration: float,
    k: PSPKernel,
    threshold: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The event-exact forward pass (float64, no autograd). ``times``/``valid`` ``[B, N]``
    (sorted, padded), ``w [B, O, N]`` the weight each event brings to each output.

    Returns ``v_max``, ``t_peak``, ``t_spike`` (``[B, O]``), the peak kind (0: fixed time,
    1: interior stationary point, 2: at an input event) and that event's slot (or -1).
    """
    bsz, n = times.shape
    prev = torch.cat((times.new_zeros(bsz, 1), times[:, :-1]), 1)
    gap = times - prev
    a = linear_scan(torch.exp(-gap / k.slow), w)
    c = linear_scan(torch.exp(-gap / k.fast), w)
    u = a - c
    slot = torch.arange(n, device=times.device)
    last = slot[None, :] == (count[:, None] - 1)
    nxt = torch.cat((times[:, 1:], times.new_full((bsz, 1), duration)), 1)
    end = torch.where(last | ~valid, duration, nxt)
    length = (end - times).clamp_min(0)[:, None, :].expand_as(w)
    crit = _stationary(a, c, k)
    interior = (crit > 0) & (crit < length) & valid[:, None, :]
    mid = torch.where(interior, crit, length)
    zero = torch.zeros_like(length)
    v0 = u / k.v0
    v1 = _segment_voltage(u, c, mid, k)
    v2 = _segment_voltage(u, c, length, k)
    slope0 = _segment_slope(a, c, zero, k)
    slope2 = _segment_slope(a, c, length, k)

    # Upward crossings, in the sub-intervals [0, mid] and [mid, length] where V is monotone.
    thr = threshold
    live = valid[:, None, :]
    fire_a = live & (mid > 0) & (((v0 < thr) & (v1 > thr)) | ((v0 == thr) & (slope0 > 0)))
    fire_a |= live & (mid > 0) & (v0 < thr) & (v1 == thr) & ~interior & (slope2 > 0)
    fire_b = live & interior & (length > mid) & (v1 < thr)
    fire_b &= (v2 > thr) | ((v2 == thr) & (slope2 > 0))
    crossing = torch.stack((fire_a, fire_b), -1).flatten(2)  # [B, O, 2N]
    fired = crossing.any(-1)
    first = crossing.to(torch.int8).argmax(-1)
    seg, part = first // 2, first % 2
    pick = seg[..., None]

    def at(x: Tensor) -> Tensor:
        return x.gather(2, pick).squeeze(2)

    su, sc, sa, smid, slen = at(u), at(c), at(a), at(mid), at(length)
    lo = torch.where(part == 0, torch.zeros_like(smid), smid)
    hi = torch.where(part == 0, smid, slen)
    for _ in range(_BISECTION_STEPS):
        m = 0.5 * (lo + hi)
        below = _segment_voltage(su, sc, m, k) < thr
        lo, hi = torch.where(below, m, lo), torch.where(below, hi, m)
    origin = times.gather(1, seg)
    # A crossing right at an event (V = θ there, then rising) fires just after it.
    t_spike = torch.maximum(origin + hi, torch.nextafter(origin, origin + 1))
    t_spike = torch.where(fired, t_spike, torch.inf)
    # After the spike no input arrives: the rest is the chosen segment's free decay.
    tail_end = duration - origin
    tail_crit = _stationary(sa, sc, k)
    tail_interior = (tail_crit > hi) & (tail_crit < tail_end)
    tail_s = torch.where(tail_interior, tail_crit, tail_end)
    fire_vmax = _segment_voltage(su, sc, tail_s, k)

    # Without a spike: the largest of the segment starts, interior maxima and ends.
    cand = torch.stack((v0, torch.where(interior, v1, -torch.inf), v2), -1)
    cand = torch.where(live[..., None], cand, -torch.inf).flatten(2)
    best = cand.max(-1).values
    where = cand.argmax(-1)  # the first of equal maxima, as documented for argmax
    bseg, phase = where // 3, where % 3
    local = torch.stack((zero, torch.where(interior, crit, length), length), -1).flatten(2)
    better = best > 0
    quiet_peak = torch.where(
        better, times.gather(1, bseg) + local.gather(2, where[..., None]).squeeze(2), 0.0
    )
    nxt_slot = bseg + 1
    has_next = nxt_slot < count[:, None]
    nxt_time = times.gather(1, nxt_slot.clamp_max(n - 1))
    boundary_slot = torch.where(
        phase == 0, bseg, torch.where(has_next & (nxt_time < duration), nxt_slot, -1)
    )
    kind = torch.where(phase == 1, 1, torch.where(boundary_slot >= 0, 2, 0))
    kind = torch.where(better, kind, 0)
    boundary_slot = torch.where(better & (kind == 2), boundary_slot, -1)

    v_max = torch.where(fired, fire_vmax, torch.where(better, best, 0.0))
    t_peak = torch.where(fired, origin + tail_s, quiet_peak)
    kind = torch.where(fired, tail_interior.long(), kind)
    boundary_slot = torch.where(fired, -1, boundary_slot)
    return v_max, t_peak, t_spike, kind, boundary_slot


def _sum_psp(w: Tensor, mask: Tensor, delay: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``Σ_n mask · w · fn(delay)`` over the event axis, with masked delays made safe."""
    safe = torch.where(mask, delay, 0.0)
    return torch.where(mask, w * fn(safe), 0.0).sum(-1)


def tempotron(
    spike_times: Tensor,
    input_indices: Tensor,
    batch_offsets: Tensor,
    weight: Tensor,
    duration: float,
    tau: float = 15.0,
    tau_s: float = 3.75,
    v_threshold: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run Tempotrons on a compact event batch (module docstring; SpikingJelly 2.0's
    ``timing_based.functional.tempotron``).

    Args:
        spike_times: event times ``[E]`` (float32/float64), each in ``[0, duration]``.
        input_indices: int64 ``[E]``, the input connection of each event, in ``[0, I)``;
            a connection may carry any number of events.
        batch_offsets: int64 ``[B+1]``, trial ``b`` owns events
            ``batch_offsets[b]:batch_offsets[b+1]`` (in any order; may be empty).
        weight: ``[O, I]`` synaptic weights, same dtype and device as ``spike_times``.
        duration: end of the observation window ``[0, duration]``, ``> 0``.
        tau, tau_s: membrane and synaptic time constants of the PSP, ``> 0``, different
            (defaults 15 and 3.75, SpikingJelly's); same unit as the times.
        v_threshold: firing threshold ``> 0`` (the PSP peak is 1 whatever it is).

    Returns:
        ``(v_max, t_peak, t_spike)``, each ``[B, O]`` in the times' dtype: the maximum
        of the shunted membrane over the window and its time (``0, 0`` if the membrane
        never rises above 0, e.g. an empty trial), and the first upward threshold
        crossing (``inf`` if none).

    Gradients (computed in float64) flow to ``weight`` and ``spike_times``, exactly the
    derivatives of the event-exact solution where it is smooth: ``v_max`` by the envelope
    theorem (``Σ K(t_peak - t_i)`` over the events before the peak that the spike did not
    shunt), ``t_spike`` and an interior ``t_peak`` by the implicit-function theorem
    (``-∂V/∂θ / V'`` at the spike, ``-∂V'/∂θ / V''`` at the peak). A peak at an input
    event (the kink a negative PSP makes) moves with that event (``∂t_peak/∂t_e = 1``,
    ``∂v_max/∂t_e`` = the slope just before it); a peak at ``t = 0`` or ``duration`` has a
    fixed time. ``inf`` spike times have zero gradient. Only first-order derivatives.
    """
    owner = "tempotron"
    check_real(f"{owner}: duration", duration, 0.0, low_open=True)
    kernel = PSPKernel(tau, tau_s)
    check_real(f"{owner}: v_threshold", v_threshold, 0.0, low_open=True)
    check_dense_events(owner, spike_times, input_indices, batch_offsets, weight, duration)
    duration = float(duration)
    ev = pad_events(spike_times, input_indices, batch_offsets, duration)
    w_det = (weight.detach().double()[:, ev.index] * ev.valid).permute(1, 0, 2)
    with torch.no_grad():
        v_max, t_peak, t_spike, kind, slot = _solve(
            ev.times, ev.valid, ev.count, w_det, duration, kernel, float(v_threshold)
        )
    fired = torch.isfinite(t_spike)

    # Differentiable re-assembly: values equal the solution, gradients its derivatives.
    tt = spike_times.double()[ev.source.clamp_min(0)] if spike_times.numel() else ev.times
    tt = torch.where(ev.valid, tt, ev.times)[:, None, :]  # [B, 1, N]
    w = (weight.double()[:, ev.index] * ev.valid).permute(1, 0, 2)  # [B, O, N]
    times = ev.times[:, None, :]
    live = ev.valid[:, None, :]
    accepted = live & (times < t_spike[..., None])

    boundary = kind == 2
    at_event = tt.expand(-1, w.shape[1], -1).gather(2, slot.clamp_min(0)[..., None]).squeeze(2)
    peak_var = torch.where(boundary, at_event, t_peak)
    before_peak = accepted & (times < t_peak[..., None])
    delay = peak_var[..., None] - tt
    v_out = _sum_psp(w, before_peak, delay, kernel.value)

    interior = kind == 1
    with torch.no_grad():
        curvature = _sum_psp(w_det, before_peak, t_peak[..., None] - times, kernel.second)
    slope_at_peak = _sum_psp(w, before_peak & interior[..., None], delay, kernel.first)
    safe_curv = torch.where(interior & (curvature != 0), curvature, 1.0)
    peak_out = torch.where(
        interior, t_peak - (slope_at_peak - slope_at_peak.detach()) / safe_curv, peak_var
    )

    safe_spike = torch.where(fired, t_spike, 0.0)
    spike_mask = accepted & fired[..., None]
    v_spike = _sum_psp(w, spike_mask, safe_spike[..., None] - tt, kernel.value)
    with torch.no_grad():
        slope = _sum_psp(w_det, spike_mask, safe_spike[..., None] - times, kernel.first)
    safe_slope = torch.where(fired & (slope > 0), slope, 1.0)
    spike_out = torch.where(fired, t_spike - (v_spike - v_spike.detach()) / safe_slope, t_spike)

    # The solver's float64 values, with the re-assembly's gradients attached.
    v_out = v_max + (v_out - v_out.detach())
    dtype = spike_times.dtype
    return v_out.to(dtype), peak_out.to(dtype), spike_out.to(dtype)


class Tempotron(nn.Module):
    """A layer of ``out_features`` Tempotrons with trainable weights ``[O, I]``
    (SpikingJelly 2.0's ``timing_based.neuron.Tempotron``); see :func:`tempotron`.

    Args:
        in_features: number of input connections ``I >= 1``.
        out_features: number of output neurons ``O >= 1``.
        duration: end of the observation window ``[0, duration]``.
        tau, tau_s: PSP time constants (defaults 15, 3.75), different.
        v_threshold: threshold (default 1).

    The weights start normal with mean 0 and std 0.001, as in SpikingJelly. Calling the
    module on ``(spike_times, input_indices, batch_offsets)`` returns
    ``(v_max, t_peak, t_spike)``, each ``[B, O]``. Train it with
    :func:`tempotron_loss` (Gütig & Sompolinsky's rule) or
    :func:`tempotron_classification_loss`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        duration: float,
        tau: float = 15.0,
        tau_s: float = 3.75,
        v_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = check_features("Tempotron", in_features, out_features)
        self.duration = check_real("Tempotron: duration", duration, 0.0, low_open=True)
        PSPKernel(tau, tau_s)
        self.tau, self.tau_s = float(tau), float(tau_s)
        self.v_threshold = check_real("Tempotron: v_threshold", v_threshold, 0.0, low_open=True)
        self.weight = initial_weight(self.out_features, self.in_features)

    def forward(
        self, spike_times: Tensor, input_indices: Tensor, batch_offsets: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(v_max, t_peak, t_spike)`` ``[B, O]`` of the compact event batch."""
        return tempotron(
            spike_times,
            input_indices,
            batch_offsets,
            self.weight,
            self.duration,
            self.tau,
            self.tau_s,
            self.v_threshold,
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"duration={self.duration:g}, tau={self.tau:g}, tau_s={self.tau_s:g}, "
            f"v_threshold={self.v_threshold:g}"
        )


def _fire_target(owner: str, v_max: Tensor, target: Tensor) -> Tensor:
    if v_max.ndim != 2:
        raise ShapeError(f"{owner}: v_max must have shape [B, O], got {tuple(v_max.shape)}")
    if target.dtype == torch.bool:
        if target.shape != v_max.shape:
            raise ShapeError(
                f"{owner}: a bool target must have v_max's shape {tuple(v_max.shape)}, got "
                f"{tuple(target.shape)}"
            )
        return target
    if target.dtype != torch.int64:
        raise DTypeError(
            f"{owner}: target must be int64 class labels [B] or a bool fire/no-fire mask "
            f"[B, O], got {target.dtype}"
        )
    if target.shape != v_max.shape[:1]:
        raise ShapeError(
            f"{owner}: target must be int64 class labels [B] = [{v_max.shape[0]}] or a bool "
            f"fire/no-fire mask [B, O], got {target.dtype} {tuple(target.shape)}"
        )
    if bool(((target < 0) | (target >= v_max.shape[1])).any()):
        raise ShapeError(f"{owner}: class labels must lie in [0, {v_max.shape[1]})")
    return F.one_hot(target, v_max.shape[1]).bool()


def tempotron_loss(v_max: Tensor, t_spike: Tensor, target: Tensor, v_threshold: float) -> Tensor:
    """Gütig & Sompolinsky's Tempotron rule as a loss: only outputs that fire wrongly count.

    An output that should fire but stays silent adds ``(θ - v_max) / θ``; one that fires
    but should not adds ``(v_max - θ) / θ``; the sum is divided by the batch size. Its
    gradient is the original rule: ``∓ Σ K(t_max - t_i)`` on the weights of each wrong
    output (the PSPs at its voltage maximum). This is the firing-error term of
    SpikingJelly 2.0's ``examples/tempotron_mnist.py``.

    Args:
        v_max, t_spike: ``[B, O]`` outputs of :func:`tempotron`.
        target: int64 class labels ``[B]`` (that output should fire, the others not) or
            a bool ``[B, O]`` mask of the outputs that should fire.
        v_threshold: the neurons' threshold ``θ > 0``.
    """
    owner = "tempotron_loss"
    theta = check_real(f"{owner}: v_threshold", v_threshold, 0.0, low_open=True)
    should = _fire_target(owner, v_max, target)
    if t_spike.shape != v_max.shape:
        raise ShapeError(
            f"{owner}: t_spike {tuple(t_spike.shape)} must have v_max's shape {tuple(v_max.shape)}"
        )
    wrong = should != torch.isfinite(t_spike)
    error = torch.where(should, theta - v_max, v_max - theta)
    return torch.where(wrong, error, 0.0).sum() / (max(v_max.shape[0], 1) * theta)


def tempotron_classification_loss(
    v_max: Tensor, t_spike: Tensor, labels: Tensor, v_threshold: float, scale: float = 5.0
) -> Tensor:
    """Cross-entropy of the logits ``scale · v_max / θ`` plus :func:`tempotron_loss`: the
    loss SpikingJelly 2.0's ``examples/tempotron_mnist.py`` trains with (``scale = 5``);
    predict with ``v_max.argmax(1)``.

    Args:
        v_max, t_spike: ``[B, O]`` outputs of :func:`tempotron`.
        labels: int64 class labels ``[B]``.
        v_threshold: the threshold ``θ > 0``.
        scale: logit scale ``> 0`` (the inverse softmax temperature, in units of ``θ``).
    """
    owner = "tempotron_classification_loss"
    theta = check_real(f"{owner}: v_threshold", v_threshold, 0.0, low_open=True)
    s = check_real(f"{owner}: scale", scale, 0.0, low_open=True)
    if labels.dtype != torch.int64:
        raise DTypeError(f"{owner}: labels must be int64 class labels [B], got {labels.dtype}")
    firing = tempotron_loss(v_max, t_spike, labels, theta)
    return F.cross_entropy(s * v_max / theta, labels) + firing
