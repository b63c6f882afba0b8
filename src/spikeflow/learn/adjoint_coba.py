"""EventProp (the adjoint method) for Norse's conductance-based LIF neuron: Norse's
``coba_lif_feed_forward_step`` over a whole sequence, with gradients from an adjoint
system run backward in time (Norse 1.1's ``coba_lif_adjoint`` cannot run: its module
fails on import, ``torch.nn.Function``).

Forward (Norse's; ``c[t]`` the input drive, its positive part excitatory and its
negative part inhibitory; ``v[0] = v_rest``, ``g_e[0] = g_i[0] = 0``)::

    g_e[t] = (1 - dt/τ_e) (g_e[t-1] + relu(c[t]))
    g_i[t] = (1 - dt/τ_i) (g_i[t-1] + relu(-c[t]))
    h[t] = v[t-1] + dt/C (g_l (v_rest - v[t-1]) + g_e[t] (E_e - v[t-1]) + g_i[t] (E_i - v[t-1]))
    z[t] = H(h[t] - v_thresh),      v[t] = v_reset if z[t] else h[t]

Backward: between spikes the exact adjoint of these equations (the membrane's decay
depends on the conductances, so the backward pass recomputes ``g_e``, ``g_i`` from the
input and reads ``v`` at every step); at a spike Wunderlich & Pehle's jump
``λh = (V̇⁺ λv[t] + ∂L/∂z[t]) / V̇⁻`` with ``V̇⁻ = (h[t] - v[t-1]) / dt`` (the step's
slope) and ``V̇⁺`` the same right-hand side at ``v_reset``; the jump is 0 at the first
step of a neuron that starts above threshold (``v_rest > v_thresh``: that spike
comes whatever the input). See ``docs/learning.md`` (EventProp for more neurons).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError
from spikeflow.learn._adjoint_common import check_sequence, fixed_time

__all__ = ["COBA_DEFAULTS", "CobaLIFAdjointParameters", "coba_lif_adjoint"]


class CobaLIFAdjointParameters(NamedTuple):
    """Norse's ``CobaLIFParameters`` (and ``dt``) as plain floats; Norse's defaults.

    ``tau_syn_exc_inv``, ``tau_syn_inh_inv``: inverse time constants of the excitatory
    and inhibitory conductances; ``c_m_inv``: inverse capacitance; ``g_l``: leak
    conductance; ``e_rev_E``, ``e_rev_I``: reversal potentials; ``v_rest``, ``v_reset``,
    ``v_thresh``; ``dt``.
    """

    tau_syn_exc_inv: float = 1.0 / 5
    tau_syn_inh_inv: float = 1.0 / 5
    c_m_inv: float = 1 / 0.2
    g_l: float = 1 / 20 * 1 / 0.2
    e_rev_I: float = -100.0
    e_rev_E: float = 60.0
    v_rest: float = -20.0
    v_reset: float = -70.0
    v_thresh: float = -10.0
    dt: float = 1e-3


#: Norse's defaults.
COBA_DEFAULTS = CobaLIFAdjointParameters()


def _check_coba(owner: str, p: object) -> CobaLIFAdjointParameters:
    if not isinstance(p, CobaLIFAdjointParameters):
        raise ConfigurationError(
            f"{owner}: p must be a CobaLIFAdjointParameters, got {type(p).__name__}"
        )
    dt = check_real(f"{owner}: dt", p.dt, 0.0, low_open=True)
    for name in ("tau_syn_exc_inv", "tau_syn_inh_inv"):
        value = check_real(f"{owner}: {name}", getattr(p, name), 0.0, low_open=True)
        if value * dt > 1.0:
            raise ConfigurationError(
                f"{owner}: {name} * dt must be <= 1, got {name}={value} and dt={dt}"
            )
    c_m_inv = check_real(f"{owner}: c_m_inv", p.c_m_inv, 0.0, low_open=True)
    g_l = check_real(f"{owner}: g_l", p.g_l, 0.0)
    if c_m_inv * g_l * dt > 1.0:  # the leak alone would overshoot v_rest in one step
        raise ConfigurationError(
            f"{owner}: c_m_inv * g_l * dt must be <= 1 (a forward-Euler step may not "
            f"overshoot), got c_m_inv={c_m_inv}, g_l={g_l} and dt={dt}"
        )
    for name in ("e_rev_I", "e_rev_E", "v_rest", "v_reset", "v_thresh"):
        check_real(f"{owner}: {name}", getattr(p, name))
    if not p.v_reset < p.v_thresh:
        raise ConfigurationError(
            f"{owner}: v_reset ({p.v_reset}) must be below v_thresh ({p.v_thresh})"
        )
    return CobaLIFAdjointParameters(*(float(value) for value in p))


def _conductances(drive: Tensor, p: CobaLIFAdjointParameters) -> tuple[Tensor, Tensor]:
    """``g_e[t]``, ``g_i[t]`` of every step (they do not depend on the spikes)."""
    g_e = torch.empty_like(drive)
    g_i = torch.empty_like(drive)
    ge = drive.new_zeros(drive.shape[1:])
    gi = drive.new_zeros(drive.shape[1:])
    decay_e, decay_i = -p.dt * p.tau_syn_exc_inv, -p.dt * p.tau_syn_inh_inv
    for t in range(drive.shape[0]):
        ge = ge + torch.relu(drive[t])
        gi = gi + torch.relu(-drive[t])
        ge = ge + decay_e * ge
        gi = gi + decay_i * gi
        g_e[t], g_i[t] = ge, gi
    return g_e, g_i


class _CobaLIFAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, drive: Tensor, p: CobaLIFAdjointParameters
    ) -> tuple[Tensor, Tensor]:
        ctx.p = p
        ctx.set_materialize_grads(False)
        g_e, g_i = _conductances(drive, p)
        steps = drive.shape[0]
        v = drive.new_full(drive.shape[1:], p.v_rest)
        spikes = torch.empty_like(drive)
        voltage = torch.empty_like(drive)
        charge = p.dt * p.c_m_inv
        for t in range(steps):
            h = v + charge * (
                p.g_l * (p.v_rest - v) + g_e[t] * (p.e_rev_E - v) + g_i[t] * (p.e_rev_I - v)
            )
            fired = (h - p.v_thresh) > 0
            v = torch.where(fired, p.v_reset, h)
            spikes[t], voltage[t] = fired.to(h.dtype), v
        ctx.save_for_backward(drive, voltage, spikes)
        return spikes, voltage

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_spikes: Tensor | None, grad_voltage: Tensor | None
    ) -> tuple[Tensor | None, None]:
        drive, voltage, spikes = ctx.saved_tensors
        p: CobaLIFAdjointParameters = ctx.p
        g_e, g_i = _conductances(drive, p)
        zero = drive.new_zeros(drive.shape[1:])
        lam_v, lam_e, lam_i = zero, zero, zero
        d_drive = torch.empty_like(drive)
        charge = p.dt * p.c_m_inv
        keep_e, keep_i = 1 - p.dt * p.tau_syn_exc_inv, 1 - p.dt * p.tau_syn_inh_inv
        for t in range(drive.shape[0] - 1, -1, -1):
            if grad_voltage is not None:
                lam_v = lam_v + grad_voltage[t]
            before = voltage[t - 1] if t > 0 else zero + p.v_rest
            fired = spikes[t] > 0
            lam_h = lam_v
            if fired.any():
                ge, gi = g_e[t][fired], g_i[t][fired]
                vb = before[fired]
                slope_minus = p.c_m_inv * (
                    p.g_l * (p.v_rest - vb) + ge * (p.e_rev_E - vb) + gi * (p.e_rev_I - vb)
                )
                slope_minus = fixed_time(slope_minus, vb, p.v_thresh)
                slope_plus = p.c_m_inv * (
                    p.g_l * (p.v_rest - p.v_reset)
                    + ge * (p.e_rev_E - p.v_reset)
                    + gi * (p.e_rev_I - p.v_reset)
                )
                g = zero[fired] if grad_spikes is None else grad_spikes[t][fired]
                lam_h = lam_h.masked_scatter(fired, (slope_plus * lam_v[fired] + g) / slope_minus)
            lam_e = keep_e * (lam_e + charge * (p.e_rev_E - before) * lam_h)
            lam_i = keep_i * (lam_i + charge * (p.e_rev_I - before) * lam_h)
            d_drive[t] = torch.where(drive[t] > 0, lam_e, 0.0) - torch.where(
                drive[t] < 0, lam_i, 0.0
            )
            lam_v = (1 - charge * (p.g_l + g_e[t] + g_i[t])) * lam_h
        return d_drive, None


def coba_lif_adjoint(
    drive: Tensor, p: CobaLIFAdjointParameters = COBA_DEFAULTS
) -> tuple[Tensor, Tensor]:
    """A conductance-based LIF layer over a whole sequence, differentiated by the adjoint
    method (module docstring): Norse's ``coba_lif_feed_forward_step`` over every step,
    from ``v = v_rest`` and no conductance.

    Args:
        drive: the input ``[T, B, N]`` (a ``Linear`` of spikes, as in Norse's
            ``CobaLIFFeedForward``): its positive part adds to ``g_e``, its negative
            part to ``g_i``.
        p: the parameters (default Norse's ``CobaLIFParameters()``, ``dt = 1e-3``).

    Returns:
        ``(spikes, v)``, both ``[T, B, N]``; the gradient reaches ``drive`` (and what
        made it, by autograd).

    Raises:
        ConfigurationError: bad parameters; a NaN or infinite ``drive`` (the entry named).
        ShapeError: ``drive`` is not ``[T, B, N]`` with ``T >= 1``.
        DTypeError: ``drive`` is not floating-point.
    """
    owner = "coba_lif_adjoint"
    p = _check_coba(owner, p)
    drive = check_sequence(owner, "drive", drive)
    spikes, v = _CobaLIFAdjoint.apply(drive, p)
    return spikes, v
