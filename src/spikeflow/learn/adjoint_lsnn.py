"""EventProp (the adjoint method) for Norse's LSNN neuron, a current-based LIF with an
adaptive threshold (Bellec et al. 2018): Norse's ``lsnn_step`` /
``lsnn_feed_forward_step`` over a whole sequence, with gradients from an adjoint system
run backward in time (Norse: ``lsnn_adjoint_step``, ``lsnn_feed_forward_adjoint_step``).

Forward (Norse's; ``a = tau_mem_inv``, ``b = tau_syn_inv``, ``ρ = tau_adapt_inv``;
``v[0] = v_leak``, ``i[0] = 0``, ``θ[0] = v_th``)::

    h[t] = v[t-1] + dt a (v_leak - v[t-1] + i[t-1])
    θ'[t] = θ[t-1] + dt ρ (v_th - θ[t-1])
    z[t] = H(h[t] - θ'[t])
    v[t] = v_reset if z[t] else h[t],      θ[t] = θ'[t] + β z[t]
    i[t] = (1 - dt b) i[t-1] + c[t] (+ W_rec z[t-1])   c[t] = W_in x[t], or the current

(the input reaches the current after the membrane's step, as in Norse).

Backward, ``jumps="eventprop"`` (default): between spikes the exact adjoint of these
equations; at a spike of neuron ``n`` Wunderlich & Pehle's jump for the event
``v = θ`` (the threshold jumps by ``β`` and its slope by ``-ρ β``)::

    Δ_n = (V̇⁺ λv_n[t] - ρ β λθ_n[t] + G_n) / (V̇⁻ - θ̇⁻)
    λh_n = Δ_n,     λθ'_n = λθ_n[t] - Δ_n
    V̇⁻ = a (v_leak - v[t-1] + i[t-1]),  V̇⁺ = a (v_leak - v_reset + i[t-1]),
    θ̇⁻ = ρ (v_th - θ[t-1])
    G_n = ∂L/∂z_n[t] + Σ_k W_rec[k, n] (a λh_k[t+2] - b λi_k[t+1])

``jumps="norse"``: Norse 1.1's ``LSNNAdjointFunction`` (with either weight) or
``LSNNFeedForwardAdjointFunction``, equation for equation: it treats the membrane and
the threshold as two separate events, jumping ``λv`` by ``V̇⁺/V̇⁻`` and ``λθ`` by
``θ̇⁺/θ̇⁻`` each with ``∂L/∂z`` divided by its own slope (``θ̇⁻`` is 0 at the first
spike and ``ρ`` times smaller than ``V̇⁻`` after: Norse's ``λθ`` is then orders of
magnitude off); ``λi`` couples to ``λv`` at rate ``b``; the input gradient uses ``λi``
one step late. See ``docs/learning.md`` (EventProp for more neurons).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikeflow.errors import ConfigurationError
from spikeflow.learn._adjoint_common import (
    adjoint_buffers,
    check_euler_fields,
    check_layer,
    layer_backward,
    shifted,
    start_layer,
    take,
)
from spikeflow.learn.eventprop_parameters import _check_jumps

__all__ = ["LSNN_DEFAULTS", "LSNNAdjointParameters", "lsnn_adjoint"]


class LSNNAdjointParameters(NamedTuple):
    """Norse's ``LSNNParameters`` (and ``dt``) as plain floats; Norse's defaults.

    ``tau_syn_inv``, ``tau_mem_inv``, ``tau_adapt_inv``: inverse time constants (1/s) of
    the current, the membrane and the threshold; ``v_leak``, ``v_th`` (the threshold's
    resting value), ``v_reset``; ``beta``: the threshold's jump per spike; ``dt`` (s).
    """

    tau_syn_inv: float = 200.0
    tau_mem_inv: float = 100.0
    tau_adapt_inv: float = 1.0 / 800
    v_leak: float = 0.0
    v_th: float = 1.0
    v_reset: float = 0.0
    beta: float = 1.8
    dt: float = 1e-3


#: Norse's defaults.
LSNN_DEFAULTS = LSNNAdjointParameters()


def _check_lsnn(owner: str, p: object) -> LSNNAdjointParameters:
    if not isinstance(p, LSNNAdjointParameters):
        raise ConfigurationError(
            f"{owner}: p must be a LSNNAdjointParameters, got {type(p).__name__}"
        )
    rates = ("tau_syn_inv", "tau_mem_inv", "tau_adapt_inv")
    check_euler_fields(owner, p, rates, nonnegative=("beta",))
    return LSNNAdjointParameters(*(float(value) for value in p))


class _Saved(NamedTuple):
    spikes: Tensor  # bool
    counts: list[int]
    slope_minus: Tensor  # eventprop: V̇⁻ - θ̇⁻; norse: dv_m
    slope_plus: Tensor  # V̇⁺ (norse: dv_p)
    threshold_minus: Tensor  # norse: db_m (else empty)
    threshold_plus: Tensor  # norse: db_p (else empty)


class _LSNNAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        w_in: Tensor | None,
        w_rec: Tensor | None,
        p: LSNNAdjointParameters,
        jumps: str,
    ) -> tuple[Tensor, Tensor]:
        a, b, rho, dt = p.tau_mem_inv, p.tau_syn_inv, p.tau_adapt_inv, p.dt
        current = start_layer(ctx, x, w_in, w_rec, p, jumps)
        steps, batch, n = current.shape
        v = current.new_full((batch, n), p.v_leak)
        i = current.new_zeros(batch, n)
        theta = current.new_full((batch, n), p.v_th)
        z = current.new_zeros(batch, n)
        spikes = current.new_empty(steps, batch, n)
        voltage = current.new_empty(steps, batch, n)
        minus, plus, th_minus, th_plus = [], [], [], []
        norse = jumps == "norse"
        charge, leak, adapt = dt * a, -dt * b, dt * rho
        for t in range(steps):
            h = v + charge * ((p.v_leak - v) + i)
            theta_new = theta + adapt * (p.v_th - theta)
            fired = (h - theta_new) > 0  # Norse's H(v - b)
            v_new = torch.where(fired, p.v_reset, h)
            if norse:
                minus.append(a * ((p.v_leak - v[fired]) + i[fired]))
                plus.append(a * ((p.v_leak - v_new[fired]) + i[fired]))
                th_minus.append(rho * (p.v_th - theta[fired]))
                th_plus.append(rho * (p.v_th - (theta_new[fired] + p.beta)))
            else:
                v_dot = a * ((p.v_leak - v[fired]) + i[fired])
                minus.append(v_dot - rho * (p.v_th - theta[fired]))
                plus.append(a * ((p.v_leak - p.v_reset) + i[fired]))
            i = (i + leak * i) + current[t]
            if w_rec is not None:
                i = i + torch.matmul(z, w_rec.t())
            z = fired.to(h.dtype)
            theta = theta_new + z * p.beta
            v = v_new
            spikes[t], voltage[t] = z, v
        empty = current.new_empty(0)
        ctx.saved = _Saved(
            spikes.bool(),
            [len(m) for m in minus],
            torch.cat(minus),
            torch.cat(plus),
            torch.cat(th_minus) if norse else empty,
            torch.cat(th_plus) if norse else empty,
        )
        return spikes, voltage

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_spikes: Tensor | None, grad_voltage: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        return layer_backward(ctx, grad_spikes, grad_voltage, _backward_eventprop, _backward_norse)


def _backward_eventprop(
    p: LSNNAdjointParameters,
    s: _Saved,
    grad_spikes: Tensor,
    grad_voltage: Tensor,
    w_in: Tensor | None,
    w_rec: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    a, b, rho, dt = p.tau_mem_inv, p.tau_syn_inv, p.tau_adapt_inv, p.dt
    zero, d_current, d_rec, spikes_float = adjoint_buffers(grad_voltage, s.spikes, w_rec)
    lam_v, lam_i, lam_th, lam_h_next, g_rec = zero, zero, zero, zero, zero
    end = s.slope_minus.numel()
    for t in range(grad_voltage.shape[0] - 1, -1, -1):
        lam_v = lam_v + grad_voltage[t]
        d_current[t] = lam_i  # c[t] enters i[t]
        lam_h, lam_th_pre = lam_v, lam_th
        if s.counts[t]:
            fired = s.spikes[t]
            slope, start = take(s.slope_minus, s.counts, end, t)
            v_plus = s.slope_plus[start:end]
            end = start
            g = (grad_spikes[t] + g_rec)[fired]
            delta = (v_plus * lam_v[fired] - rho * p.beta * lam_th[fired] + g) / slope
            lam_h = lam_h.masked_scatter(fired, delta)
            lam_th_pre = lam_th.masked_scatter(fired, lam_th[fired] - delta)
        if d_rec is not None and w_rec is not None:
            if t > 0:
                d_rec += lam_i.t().mm(spikes_float[t - 1])  # z[t-1] enters i[t]
            g_rec = (a * lam_h_next - b * lam_i).mm(w_rec)  # for the spikes of t-1
        lam_v = (1 - dt * a) * lam_h
        lam_i = dt * a * lam_h + (1 - dt * b) * lam_i
        lam_th = (1 - dt * rho) * lam_th_pre
        lam_h_next = lam_h
    return d_current, d_current, d_rec


def _backward_norse(
    p: LSNNAdjointParameters,
    s: _Saved,
    grad_spikes: Tensor,
    grad_voltage: Tensor,
    w_in: Tensor | None,
    w_rec: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    a, b, rho, dt = p.tau_mem_inv, p.tau_syn_inv, p.tau_adapt_inv, p.dt
    cell = w_in is not None or w_rec is not None
    zero, d_current, d_rec, spikes_float = adjoint_buffers(grad_voltage, s.spikes, w_rec)
    lam_v, lam_i, lam_th, d_z = zero, zero, zero, zero
    end = s.slope_minus.numel()
    for t in range(grad_voltage.shape[0] - 1, -1, -1):
        lam_v = lam_v + grad_voltage[t]
        d_out = grad_spikes[t] + d_z if cell else grad_spikes[t]
        if d_rec is not None:
            d_rec += lam_i.t().mm(spikes_float[t])  # Norse pairs z[t], not z[t-1]
        lam_i = lam_i + dt * (b * (lam_v - lam_i))
        lam_v = lam_v - a * dt * lam_v
        lam_th = lam_th - rho * dt * lam_th
        if s.counts[t]:
            fired = s.spikes[t]
            dv_m, start = take(s.slope_minus, s.counts, end, t)
            dv_p = s.slope_plus[start:end]
            db_m, db_p = s.threshold_minus[start:end], s.threshold_plus[start:end]
            end = start
            out = d_out[fired]
            new_v = torch.where(dv_m != 0, (1 / dv_m) * out + (dv_p / dv_m) * lam_v[fired], 0.0)
            new_th = torch.where(db_m != 0, (1 / db_m) * out + (db_p / db_m) * lam_th[fired], 0.0)
            lam_v = lam_v.masked_scatter(fired, new_v)
            lam_th = lam_th.masked_scatter(fired, new_th)
        d_current[t] = lam_i
        if w_rec is not None:
            d_z = lam_i.mm(w_rec)
    return d_current, shifted(d_current), d_rec


def lsnn_adjoint(
    x: Tensor,
    p: LSNNAdjointParameters = LSNN_DEFAULTS,
    input_weights: Tensor | None = None,
    recurrent_weights: Tensor | None = None,
    jumps: str = "eventprop",
) -> tuple[Tensor, Tensor]:
    """An LSNN layer (adaptive threshold) over a whole sequence, differentiated by the
    adjoint method (module docstring): Norse's ``lsnn_feed_forward_adjoint_step`` (``x``
    the current) or ``lsnn_adjoint_step`` (with either weight) over every step,
    from ``v = v_leak``, ``i = 0``, ``θ = v_th``.

    Args:
        x: the input current ``[T, B, N]``, or with ``input_weights`` the inputs
            ``[T, B, I]`` (current ``W_in x[t]``).
        p: the parameters (default Norse's ``LSNNParameters()``, ``dt = 1e-3``).
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
    owner = "lsnn_adjoint"
    p = _check_lsnn(owner, p)
    jumps = _check_jumps(owner, jumps)
    x, w_in, w_rec = check_layer(owner, x, input_weights, recurrent_weights)
    spikes, v = _LSNNAdjoint.apply(x, w_in, w_rec, p, jumps)
    return spikes, v
