"""EventProp for the refractory LIF, the LSNN and the conductance-based LIF, with spikes,
against autograd through reference loops written independently of spikeflow's adjoint.

The reference loops run the same forward steps; a spike's time enters them as
``σ = -δt_spike = δ(h - threshold) / (its slope before the spike)``, and the state after
the spike moves as the continuous system's does when the spike comes ``σ`` earlier:
the membrane by ``V̇⁺ σ`` (refractory LIF: by ``V̇_r σ`` at the release), the LSNN's
threshold by ``-ρ β σ``, a receiving neuron's current by ``-b W σ`` and its membrane by
``a W σ``; ``z = H + σ`` (``∂L/∂z`` stands for ``-∂L/∂t_spike``). Autograd through them
is then the discretised adjoint between spikes with Wunderlich & Pehle's jumps, derived
by hand; spikeflow's backward loops must give the same numbers (float64, 1e-10).
Covered: spikes at the first and the last step, refractory periods of 0, less than one
step, fractional and longer than the sequence, samples with different spike counts,
neurons firing at every step, and neurons that start above threshold."""

from __future__ import annotations

import pytest
import torch

from spikeflow.learn import (
    CobaLIFAdjointParameters,
    LIFAdjointParameters,
    LIFRefracAdjointParameters,
    LSNNAdjointParameters,
    coba_lif_adjoint,
    lif_recurrent_adjoint,
    lif_refrac_adjoint,
    lsnn_adjoint,
)

F64 = torch.float64
T, B, I, N = 41, 3, 5, 4


def _spike_time(u: torch.Tensor, fired: torch.Tensor, slope: torch.Tensor, fixed: torch.Tensor):
    """``σ``: ``δu / slope`` at the spikes (``u = h - threshold``), 0 elsewhere and where
    the neuron stood at threshold before the step (it fires at once, whatever its input)."""
    moving = fired & ~fixed
    return torch.where(moving, (u - u.detach()) / torch.where(moving, slope, 1.0), 0.0)


def _reference_refrac(x, w_in, w_rec, p: LIFRefracAdjointParameters):
    q = p.lif
    a, b, dt = q.tau_mem_inv, q.tau_syn_inv, q.dt
    c = x @ w_in.t()
    v = torch.full_like(c[0], q.v_leak)
    i, rho, since = (torch.zeros_like(c[0]) for _ in range(3))  # since: σ of the last spike
    z_prev, sigma_prev = torch.zeros_like(c[0]), torch.zeros_like(c[0])
    zs, vs = [], []
    for t in range(c.shape[0]):
        j = i + c[t] + (z_prev - b * sigma_prev) @ w_rec.t()
        h = v + dt * a * ((q.v_leak - v) + j) + a * sigma_prev @ w_rec.t()
        held = rho > 0
        fired = (h.detach() > q.v_th) & ~held
        slope = (a * ((q.v_leak - v) + j)).detach()
        sigma = _spike_time(h - q.v_th, fired, slope, v.detach() > q.v_th)
        since = torch.where(fired, sigma, since)
        rho_new = torch.where(fired, p.rho_reset, torch.relu(rho - held.to(F64)))
        released = (rho_new == 0) & (held | fired)  # the next step integrates again
        slope_release = (a * ((q.v_leak - q.v_reset) + j)).detach()
        v = torch.where(
            released,
            q.v_reset + slope_release * since,
            torch.where(held | fired, torch.full_like(h, q.v_reset), h),
        )
        i, rho = j * (1 - dt * b), rho_new
        z_prev, sigma_prev = fired.to(F64), sigma
        zs.append(z_prev + sigma)
        vs.append(v)
    return torch.stack(zs), torch.stack(vs)


def _reference_lsnn(x, w_in, w_rec, p: LSNNAdjointParameters):
    a, b, r, dt = p.tau_mem_inv, p.tau_syn_inv, p.tau_adapt_inv, p.dt
    c = x @ w_in.t()
    v, theta = torch.full_like(c[0], p.v_leak), torch.full_like(c[0], p.v_th)
    i, z_prev = torch.zeros_like(c[0]), torch.zeros_like(c[0])
    sigmas = [torch.zeros_like(c[0])] * 2  # σ of the last two steps
    zs, vs = [], []
    for t in range(c.shape[0]):
        h = v + dt * a * ((p.v_leak - v) + i) + a * sigmas[0] @ w_rec.t()
        theta_next = theta + dt * r * (p.v_th - theta)
        fired = (h - theta_next).detach() > 0
        slope = (a * ((p.v_leak - v) + i) - r * (p.v_th - theta)).detach()
        sigma = _spike_time(h - theta_next, fired, slope, (v > theta).detach())
        slope_plus = (a * ((p.v_leak - p.v_reset) + i)).detach()
        v = torch.where(fired, p.v_reset + slope_plus * sigma, h)
        theta = theta_next + p.beta * fired.to(F64) - r * p.beta * sigma
        i = i * (1 - dt * b) + c[t] + (z_prev - b * sigmas[1]) @ w_rec.t()
        z_prev, sigmas = fired.to(F64), [sigmas[1], sigma]
        zs.append(z_prev + sigma)
        vs.append(v)
    return torch.stack(zs), torch.stack(vs)


def _reference_coba(drive, p: CobaLIFAdjointParameters):
    v = torch.full_like(drive[0], p.v_rest)
    g_e, g_i = torch.zeros_like(v), torch.zeros_like(v)
    zs, vs = [], []
    for t in range(drive.shape[0]):
        g_e = (g_e + torch.relu(drive[t])) * (1 - p.dt * p.tau_syn_exc_inv)
        g_i = (g_i + torch.relu(-drive[t])) * (1 - p.dt * p.tau_syn_inh_inv)

        def rate(u, g_e=g_e, g_i=g_i):
            return p.c_m_inv * (
                p.g_l * (p.v_rest - u) + g_e * (p.e_rev_E - u) + g_i * (p.e_rev_I - u)
            )

        h = v + p.dt * rate(v)
        fired = h.detach() > p.v_thresh
        sigma = _spike_time(h, fired, rate(v).detach(), v.detach() > p.v_thresh)
        slope_plus = rate(torch.full_like(v, p.v_reset)).detach()
        v = torch.where(fired, p.v_reset + slope_plus * sigma, h)
        zs.append(fired.to(F64) + sigma)
        vs.append(v)
    return torch.stack(zs), torch.stack(vs)


LIF = LIFAdjointParameters(v_leak=0.2, v_th=1.0, v_reset=-0.1)
TONIC = LIFAdjointParameters(v_leak=1.5, v_th=1.0, v_reset=-0.1)  # fires on its own
LSNN = LSNNAdjointParameters(v_leak=0.2, v_reset=-0.1, tau_adapt_inv=20.0, beta=0.5)
COBA = CobaLIFAdjointParameters(
    tau_syn_exc_inv=200.0, tau_syn_inh_inv=100.0, c_m_inv=100.0, g_l=1.0, e_rev_I=-1.0,
    e_rev_E=5.0, v_rest=0.0, v_reset=0.0, v_thresh=1.0, dt=1e-3,
)  # fmt: skip

_CASES = {
    "refrac 0": ("refrac", LIFRefracAdjointParameters(LIF, 0.0)),
    "refrac 0.5": ("refrac", LIFRefracAdjointParameters(LIF, 0.5)),
    "refrac 2.5": ("refrac", LIFRefracAdjointParameters(LIF, 2.5)),
    "refrac 100 (> T)": ("refrac", LIFRefracAdjointParameters(LIF, 100.0)),
    "refrac tonic": ("refrac", LIFRefracAdjointParameters(TONIC, 3.0)),
    "lsnn": ("lsnn", LSNN),
    "lsnn tonic": ("lsnn", LSNN._replace(v_leak=1.2)),
    "coba": ("coba", COBA),
    "coba tonic": ("coba", COBA._replace(v_rest=1.5)),
}


def _inputs(neuron: str):
    """Input spikes, weights whose rows drive the neurons from barely to at every step
    (per-sample rates differ, so the samples' spike counts do)."""
    torch.manual_seed(7)
    rates = torch.tensor([0.15, 0.4, 0.9], dtype=F64)[None, :, None]
    x = (torch.rand(T, B, I, dtype=F64) < rates).to(F64)
    x[0] = 1.0  # spikes at the first step
    gain = torch.tensor([0.5, 2.0, 6.0, 60.0], dtype=F64)[:, None]
    w_in = torch.rand(N, I, dtype=F64) * gain * (0.6 if neuron == "coba" else 1.0)
    if neuron == "coba":  # some inhibition
        w_in[1, :2] *= -1
    w_rec = torch.randn(N, N, dtype=F64) * 0.5
    return x, w_in, w_rec


def _run(neuron: str, p, x, w_in, w_rec, reference: bool):
    if neuron == "refrac":
        return (_reference_refrac if reference else lif_refrac_adjoint)(x, *(
            (w_in, w_rec, p) if reference else (p, w_in, w_rec)
        ))  # fmt: skip
    if neuron == "lsnn":
        return _reference_lsnn(x, w_in, w_rec, p) if reference else lsnn_adjoint(x, p, w_in, w_rec)
    drive = x @ w_in.t()
    return (_reference_coba if reference else coba_lif_adjoint)(drive, p)


@pytest.mark.parametrize("case", list(_CASES))
def test_eventprop_is_autograd_through_the_hand_derived_jumps(case: str) -> None:
    neuron, p = _CASES[case]
    x, w_in, w_rec = _inputs(neuron)
    cz, cv = torch.randn(2, T, B, N, dtype=F64)
    results = []
    for reference in (False, True):
        leaves = [t.clone().requires_grad_() for t in (x, w_in, w_rec)]
        wrt = leaves if neuron != "coba" else leaves[:2]
        z, v = _run(neuron, p, *leaves, reference=reference)
        grads = torch.autograd.grad((z * cz).sum() + (v * cv).sum(), wrt)
        results.append((z.detach().round(), v.detach(), grads))
    (z, v, grads), (z_ref, v_ref, grads_ref) = results
    assert torch.equal(z, z_ref)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-12)
    long_period = "> T" in case  # each neuron fires once
    assert long_period or len(set(z.sum((0, 2)).tolist())) == B  # counts differ by sample
    assert z[0].any() or case == "lsnn"  # (the LSNN's input reaches v a step later)
    assert z[-1].any() or long_period
    assert long_period or z[:, :, -1].mean() > 0.25  # the strongest neuron: every step it can
    if "tonic" in case:  # every neuron starts above threshold and fires at once
        assert z[0].all()
    for name, mine, expected in zip(("x", "w_in", "w_rec"), grads, grads_ref):
        assert torch.isfinite(mine).all(), name
        scale = expected.abs().max()
        assert scale > 0, name
        torch.testing.assert_close(mine, expected, rtol=0, atol=1e-10 * float(scale), msg=name)


def test_gradcheck_without_spikes() -> None:
    """Where no spike moves (none at all), the gradient is the forward's derivative:
    torch.autograd.gradcheck (float64, finite differences) of ``v`` in the input and
    both weights (refractory LIF, LSNN) or the drive (COBA, of both signs)."""
    torch.manual_seed(3)
    x = torch.rand(12, 2, 3, dtype=F64, requires_grad=True)
    w_in = (torch.randn(4, 3, dtype=F64) * 0.05).requires_grad_()
    w_rec = torch.randn(4, 4, dtype=F64, requires_grad=True)
    refrac = LIFRefracAdjointParameters(LIF, 3.0)
    drive = (torch.randn(12, 2, 4, dtype=F64) * 0.1).requires_grad_()
    runs = [
        (lambda x, w, r: lif_refrac_adjoint(x, refrac, w, r), (x, w_in, w_rec)),
        (lambda x, w, r: lsnn_adjoint(x, LSNN, w, r), (x, w_in, w_rec)),
        (lambda d: coba_lif_adjoint(d, COBA), (drive,)),
    ]
    for run, inputs in runs:
        z, _ = run(*inputs)
        assert z.sum() == 0
        assert torch.autograd.gradcheck(lambda *a, run=run: run(*a)[1], inputs)


@pytest.mark.parametrize("backend", ["torch", "c"])
def test_lif_adjoint_with_a_neuron_that_starts_above_threshold(backend: str) -> None:
    """lif_recurrent_adjoint (both backends) gives the refractory LIF's gradients with
    ``rho_reset = 0`` (checked above against the reference loop) when ``v_leak > v_th``."""
    x, w_in, w_rec = _inputs("refrac")
    cz, cv = torch.randn(2, T, B, N, dtype=F64)
    results = []
    for run in (
        lambda x, w, r: lif_refrac_adjoint(x, LIFRefracAdjointParameters(TONIC, 0.0), w, r),
        lambda x, w, r: lif_recurrent_adjoint(x, w, r, TONIC, backend=backend),
    ):
        leaves = [t.clone().requires_grad_() for t in (x, w_in, w_rec)]
        z, v = run(*leaves)
        results.append((z, torch.autograd.grad((z * cz).sum() + (v * cv).sum(), leaves)))
    (z, grads), (z_lif, grads_lif) = results
    assert torch.equal(z, z_lif) and z[0].all()
    for mine, lif in zip(grads, grads_lif):
        assert torch.isfinite(lif).all()
        torch.testing.assert_close(lif, mine, rtol=1e-12, atol=1e-12 * float(mine.abs().max()))
