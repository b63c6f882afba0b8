"""EventProp (the adjoint method) for the current-based LIF neuron with an absolute
refractory period: Norse's ``lif_refrac_step`` / ``lif_refrac_feed_forward_step`` over a
whole sequence, with gradients from an adjoint system run backward in time (Norse:
``lif_refrac_adjoint_step``, ``lif_refrac_feed_forward_adjoint_step``).

Forward (Norse's; ``a = tau_mem_inv``, ``b = tau_syn_inv``, ``R = rho_reset``; ``v[0] =
v_leak``, ``i[0] = 0``, ``ρ[0] = 0``, ``m[t] = ρ[t-1] > 0``, the neuron is refractory)::

    J[t] = i[t-1] + c[t] (+ W_rec z[t-1])         c[t] = W_in x[t], or the current
    h[t] = v[t-1] + dt a (v_leak - v[t-1] + J[t])
    z[t] = H(h[t] - v_th) (1 - m[t])
    v[t] = v[t-1] if m[t], else v_reset if z[t], else h[t]
    ρ[t] = R if z[t] else max(ρ[t-1] - m[t], 0)     i[t] = (1 - dt b) J[t]

While refractory the membrane is held (at ``v_reset``) and the current keeps decaying.

Backward, ``jumps="eventprop"`` (default): between events the exact adjoint of these
equations (held steps: ``λv[t-1] = λv[t]``, ``λh = 0``); at a spike of neuron ``n``::

    λh_n = (V̇_r λv_n[r-1] + G_n) / V̇⁻,   V̇⁻ = a (v_leak - v[t-1] + J[t])
                                          V̇_r = a (v_leak - v_reset + J[r-1])
    G_n = ∂L/∂z_n[t] + Σ_i W_rec[i, n] (a λh_i[t+1] - b λJ_i[t+1])

where ``r`` is the first step after the refractory period (the release) and ``λv[r-1]``
the adjoint of the held membrane entering it (0 when the release is past the sequence's
end). An earlier spike makes the release earlier by as much, and the membrane then
starts to integrate sooner: the release, not the reset, carries the spike-time shift (the
slope just after the spike is 0). With ``rho_reset = 0`` this is
:func:`~spikeflow.learn.lif_adjoint`'s EventProp, step for step. A neuron that starts
above threshold (``v_leak > v_th``) fires at the first step whatever the input: that
spike's jump is 0 (in both).

``jumps="norse"``: Norse 1.1's adjoint, equation for equation: with either weight
Norse's ``LIFAdjointRefracFunction`` (the jump ``V̇⁺/V̇⁻`` with ``V̇`` from the current
before the input, the refractory mask of ``ρ[t]`` instead of ``ρ[t-1]``, ``W_in``'s gradient
paired one step late, the recurrent spikes' effect as counts), without them
``LIFAdjointRefracFeedForwardFunction`` (the jump carried back from the release through
``λρ``). See ``docs/learning.md`` (EventProp for more neurons) for what differs and
what was checked.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError
from spikeflow.learn._adjoint_common import (
    adjoint_buffers,
    check_layer,
    fixed_time,
    layer_backward,
    shifted,
    start_layer,
    take,
)
from spikeflow.learn.eventprop_parameters import (
    NORSE_DEFAULTS,
    LIFAdjointParameters,
    _check_jumps,
    _check_parameters,
)

__all__ = ["REFRAC_DEFAULTS", "LIFRefracAdjointParameters", "lif_refrac_adjoint"]


class LIFRefracAdjointParameters(NamedTuple):
    """Norse's ``LIFRefracParameters``: the LIF's parameters (with ``dt``) and
    ``rho_reset``, the refractory count a spike sets (steps; Norse's default 5)."""

    lif: LIFAdjointParameters = NORSE_DEFAULTS
    rho_reset: float = 5.0


#: Norse's defaults.
REFRAC_DEFAULTS = LIFRefracAdjointParameters()


def _check_refrac(owner: str, p: object) -> LIFRefracAdjointParameters:
    if not isinstance(p, LIFRefracAdjointParameters):
        raise ConfigurationError(
            f"{owner}: p must be a LIFRefracAdjointParameters, got {type(p).__name__}"
        )
    lif = _check_parameters(owner, p.lif)
    rho_reset = check_real(f"{owner}: rho_reset", p.rho_reset, 0.0)
    return LIFRefracAdjointParameters(lif, rho_reset)


class _Saved(NamedTuple):
    spikes: Tensor  # z[t], bool
    held: Tensor  # m[t], bool
    counting: Tensor  # norse: ρ[t] > 0, bool (else empty)
    events: Tensor  # eventprop: the release steps r-1; norse: ρ[t-1] == 1 (Norse's end)
    spike_counts: list[int]
    event_counts: list[int]
    slope_minus: Tensor  # V̇⁻ at each spike, in time order
    slope_plus: Tensor  # norse: V̇⁺ at each spike (else empty)
    slope_event: Tensor  # V̇_r at each release (eventprop) or Norse's dv_p at each end


class _LIFRefracAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        w_in: Tensor | None,
        w_rec: Tensor | None,
        p: LIFRefracAdjointParameters,
        jumps: str,
    ) -> tuple[Tensor, Tensor]:
        q = p.lif
        a, b, dt = q.tau_mem_inv, q.tau_syn_inv, q.dt
        current = start_layer(ctx, x, w_in, w_rec, p, jumps)
        steps, batch, n = current.shape
        norse = jumps == "norse"
        v = current.new_full((batch, n), q.v_leak)
        i = current.new_zeros(batch, n)
        rho = current.new_zeros(batch, n)
        z = current.new_zeros(batch, n)
        spikes = current.new_empty(steps, batch, n)
        voltage = current.new_empty(steps, batch, n)
        held_all = torch.empty(steps, batch, n, dtype=torch.bool, device=current.device)
        counting = torch.empty_like(held_all) if norse else held_all.new_empty(0)
        events = torch.empty_like(held_all)
        minus, plus, at_event = [], [], []
        charge, leak = dt * a, -dt * b
        for t in range(steps):
            j = i + current[t]
            if w_rec is not None:
                j = j + torch.matmul(z, w_rec.t())
            h = v + charge * ((q.v_leak - v) + j)
            held = rho > 0
            fired = (h > q.v_th) & ~held
            v_new = torch.where(held, v, torch.where(fired, q.v_reset, h))
            rho_new = torch.where(fired, p.rho_reset, torch.relu(rho - held.to(rho.dtype)))
            if norse:  # Norse's slopes use the current before the input (i[t-1])
                minus.append(a * ((q.v_leak - v[fired]) + i[fired]))
                plus.append(a * ((q.v_leak - v_new[fired]) + i[fired]))
                event = rho == 1  # Norse's end of the refractory period
                at_event.append(a * ((q.v_leak - v_new[event]) + i[event]))
            else:
                minus.append(fixed_time(a * ((q.v_leak - v[fired]) + j[fired]), v[fired], q.v_th))
                event = (rho_new == 0) & (held | fired)  # the next step is the release
                at_event.append(a * ((q.v_leak - q.v_reset) + j[event]))
            i = j + leak * j
            v, rho = v_new, rho_new
            z = fired.to(h.dtype)
            spikes[t], voltage[t], held_all[t], events[t] = z, v, held, event
            if norse:
                counting[t] = rho > 0
        ctx.saved = _Saved(
            spikes.bool(),
            held_all,
            counting,
            events,
            [len(m) for m in minus],
            [len(e) for e in at_event],
            torch.cat(minus),
            torch.cat(plus) if norse else current.new_empty(0),
            torch.cat(at_event),
        )
        return spikes, voltage

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_spikes: Tensor | None, grad_voltage: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        return layer_backward(ctx, grad_spikes, grad_voltage, _backward_eventprop, _backward_norse)


def _backward_eventprop(
    p: LIFRefracAdjointParameters,
    s: _Saved,
    grad_spikes: Tensor,
    grad_voltage: Tensor,
    w_in: Tensor | None,
    w_rec: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(λJ, λJ, ∂L/∂W_rec)``: the module docstring's adjoint."""
    q = p.lif
    a, b, dt = q.tau_mem_inv, q.tau_syn_inv, q.dt
    zero, d_current, d_rec, spikes_float = adjoint_buffers(grad_voltage, s.spikes, w_rec)
    lam_v, lam_i, g_rec = zero, zero, zero
    lam_release, slope_release = zero, zero
    end_spike, end_event = s.slope_minus.numel(), s.slope_event.numel()
    for t in range(grad_voltage.shape[0] - 1, -1, -1):
        lam_v = lam_v + grad_voltage[t]
        fired, held, event = s.spikes[t], s.held[t], s.events[t]
        if s.event_counts[t]:
            values, end_event = take(s.slope_event, s.event_counts, end_event, t)
            lam_release = torch.where(event, lam_v, lam_release)
            slope_release = slope_release.masked_scatter(event, values)
        lam_h = torch.where(held, zero, lam_v)
        if s.spike_counts[t]:
            slope_minus, end_spike = take(s.slope_minus, s.spike_counts, end_spike, t)
            g = (grad_spikes[t] + g_rec)[fired]
            jump = (slope_release[fired] * lam_release[fired] + g) / slope_minus
            lam_h = lam_h.masked_scatter(fired, jump)
        lam_j = dt * a * lam_h + (1 - dt * b) * lam_i
        # held: v[t] = v[t-1] (what reaches the spike that began the period is dropped
        # there: the release term stands for it)
        lam_v = torch.where(held, lam_v, (1 - dt * a) * lam_h)
        if w_rec is not None and d_rec is not None:
            if t > 0:
                d_rec += lam_j.t().mm(spikes_float[t - 1])
            g_rec = (a * lam_h - b * lam_j).mm(w_rec)
        d_current[t] = lam_j
        lam_i = lam_j
    return d_current, d_current, d_rec


def _backward_norse(
    p: LIFRefracAdjointParameters,
    s: _Saved,
    grad_spikes: Tensor,
    grad_voltage: Tensor,
    w_in: Tensor | None,
    w_rec: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Norse 1.1's refractory adjoint (module docstring): ``(∂L/∂c as Norse, the
    λ paired with x for W_in, ∂L/∂W_rec)``."""
    q = p.lif
    a, b, dt = q.tau_mem_inv, q.tau_syn_inv, q.dt
    cell = (
        w_in is not None or w_rec is not None
    )  # LIFAdjointRefracFunction, else the feed-forward one
    zero, d_current, d_rec, spikes_float = adjoint_buffers(grad_voltage, s.spikes, w_rec)
    lam_v, lam_i, lam_rho, d_z = zero, zero, zero, zero
    end_spike, end_event = s.slope_minus.numel(), s.slope_event.numel()
    for t in range(grad_voltage.shape[0] - 1, -1, -1):
        lam_v = lam_v + grad_voltage[t]
        d_out = grad_spikes[t] + d_z if cell else grad_spikes[t]
        if d_rec is not None:
            d_rec += lam_i.t().mm(spikes_float[t])  # Norse pairs z[t], not z[t-1]
        free = 1 - s.counting[t].to(lam_v.dtype)  # Norse's mask of ρ[t]
        lam_i = lam_i + dt * b * (free * lam_v - lam_i)
        lam_v = lam_v - free * a * dt * lam_v
        fired = s.spikes[t]
        if s.spike_counts[t]:
            start = end_spike - s.spike_counts[t]
            dv_m = s.slope_minus[start:end_spike]
            out = (1 / dv_m) * d_out[fired]
            if cell:
                jump = s.slope_plus[start:end_spike] / dv_m
                new = torch.where(jump.isnan(), 0.0, jump) * lam_v[fired]
            else:
                new = lam_rho[fired] / dv_m
                new = torch.where(new.isnan(), 0.0, new)
            out = torch.where(out.isnan(), 0.0, out)
            lam_v = lam_v.masked_scatter(fired, new + out)
            end_spike = start
        if not cell:
            ends = s.events[t]
            values, end_event = take(s.slope_event, s.event_counts, end_event, t)
            lam_rho = lam_rho.masked_scatter(ends, lam_v[ends] * values)
        d_current[t] = lam_i
        if w_rec is not None:
            d_z = lam_i.mm(w_rec)
    return d_current, shifted(d_current), d_rec


def lif_refrac_adjoint(
    x: Tensor,
    p: LIFRefracAdjointParameters = REFRAC_DEFAULTS,
    input_weights: Tensor | None = None,
    recurrent_weights: Tensor | None = None,
    jumps: str = "eventprop",
) -> tuple[Tensor, Tensor]:
    """A refractory current-based LIF layer over a whole sequence, differentiated by the
    adjoint method (module docstring): Norse's ``lif_refrac_feed_forward_adjoint_step``
    (``x`` the current) or ``lif_refrac_adjoint_step`` (with either weight) over
    every step, from ``v = v_leak``, ``i = 0``, not refractory.

    Args:
        x: the input current ``[T, B, N]``, or with ``input_weights`` the inputs
            ``[T, B, I]`` (current ``W_in x[t]``).
        p: the parameters (default Norse's ``LIFRefracParameters()``, ``dt = 1e-3``).
        input_weights: ``W_in`` ``[N, I]``, or None.
        recurrent_weights: ``W_rec`` ``[N, N]`` (row: receiving neuron), or None.
        jumps: ``"eventprop"`` (default) or ``"norse"`` (module docstring).

    Returns:
        ``(spikes, v)``, both ``[T, B, N]``; gradients reach ``x``, ``input_weights``
        and ``recurrent_weights``.

    Raises:
        ConfigurationError: bad parameters or ``jumps``; a NaN or infinite ``x`` or
            weight (the entry named).
        ShapeError: shapes that do not fit (named).
        DTypeError: a non-floating ``x``, weights of another dtype or device.
    """
    owner = "lif_refrac_adjoint"
    p = _check_refrac(owner, p)
    jumps = _check_jumps(owner, jumps)
    x, w_in, w_rec = check_layer(owner, x, input_weights, recurrent_weights)
    spikes, v = _LIFRefracAdjoint.apply(x, w_in, w_rec, p, jumps)
    return spikes, v
