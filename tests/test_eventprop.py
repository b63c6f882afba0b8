"""EventProp / the adjoint method for current-based LIF (spikeflow.learn.eventprop):
equal to Norse 1.1's adjoint (``jumps="norse"``), the exact discretised adjoint between
spikes, and the continuous system's gradient (``jumps="eventprop"``) against finite
differences of an exact event-driven simulation (tests/eventprop_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eventprop_reference import continuous_gradient
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.learn import EventPropLIF, LIFAdjointParameters, lif_adjoint, lif_recurrent_adjoint
from spikeflow.learn.eventprop import parameters_from_cuba

norse_lif = pytest.importorskip("norse.torch.functional.lif")
norse_adjoint = pytest.importorskip("norse.torch.functional.adjoint.lif_adjoint")

F64 = torch.float64


def _norse_parameters(p: LIFAdjointParameters):
    values = {k: torch.tensor(getattr(p, k), dtype=F64) for k in p._fields if k != "dt"}
    return norse_lif.LIFParameters(**values, method="super")


def _norse_run(x, p, w_in=None, w_rec=None):
    """Norse's adjoint steps over the sequence: (spikes, v) stacked."""
    batch, n = x.shape[1], (x.shape[2] if w_in is None else w_in.shape[0])
    zeros = torch.zeros(batch, n, dtype=F64)
    pn = _norse_parameters(p)
    zs, vs = [], []
    if w_in is None:
        state = norse_lif.LIFFeedForwardState(zeros + p.v_leak, zeros)
        for t in range(x.shape[0]):
            z, state = norse_adjoint.lif_feed_forward_adjoint_step(x[t], state, p=pn, dt=p.dt)
            zs.append(z)
            vs.append(state.v)
    else:
        state = norse_lif.LIFState(zeros, zeros + p.v_leak, zeros)
        for t in range(x.shape[0]):
            z, state = norse_adjoint.lif_adjoint_step(x[t], state, w_in, w_rec, p=pn, dt=p.dt)
            zs.append(z)
            vs.append(state.v)
    return torch.stack(zs), torch.stack(vs)


PARAMS = LIFAdjointParameters(v_leak=0.2, v_th=1.0, v_reset=-0.1)


@pytest.mark.parametrize("scale", [4.0, 0.05])  # many spikes / none
def test_feed_forward_equals_norse(scale: float) -> None:
    torch.manual_seed(0)
    x = (torch.rand(25, 3, 4, dtype=F64) * scale).requires_grad_()
    cz, cv = torch.randn(2, 25, 3, 4, dtype=F64)
    z, v = lif_adjoint(x, PARAMS, jumps="norse")
    zn, vn = _norse_run(x, PARAMS)
    assert torch.equal(z, zn) and torch.equal(v, vn)
    assert (z.sum() > 20) == (scale > 1) and (z.sum() == 0) == (scale < 1)
    g = torch.autograd.grad((z * cz).sum() + (v * cv).sum(), x)[0]
    gn = torch.autograd.grad((zn * cz).sum() + (vn * cv).sum(), x)[0]
    torch.testing.assert_close(g, gn, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("recurrent", [True, False])
def test_linear_lif_equals_norse(recurrent: bool) -> None:
    torch.manual_seed(1)
    x = (torch.rand(30, 2, 5) < 0.3).to(F64).requires_grad_()
    w_in = (torch.randn(4, 5, dtype=F64) * 2).requires_grad_()
    w_rec = torch.randn(4, 4, dtype=F64).requires_grad_()
    cz, cv = torch.randn(2, 30, 2, 4, dtype=F64)
    zero_rec = torch.zeros(4, 4, dtype=F64)  # Norse's feed-forward cell has no W_rec
    z, v = lif_recurrent_adjoint(x, w_in, w_rec if recurrent else None, PARAMS, "norse")
    zn, vn = _norse_run(x, PARAMS, w_in, w_rec if recurrent else zero_rec)
    assert torch.equal(z, zn) and torch.equal(v, vn) and z.sum() > 10
    wrt = (x, w_in, w_rec) if recurrent else (x, w_in)
    g = torch.autograd.grad((z * cz).sum() + (v * cv).sum(), wrt)
    gn = torch.autograd.grad((zn * cz).sum() + (vn * cv).sum(), wrt)
    for mine, theirs in zip(g, gn):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


def _discrete_autograd(x, w_in, p):
    """The forward written as a plain loop (spikes detached: no spike-time terms)."""
    current = x @ w_in.t()
    v = torch.full_like(current[0], p.v_leak)
    i = torch.zeros_like(current[0])
    vs = []
    for t in range(x.shape[0]):
        j = i + current[t]
        h = v + p.dt * p.tau_mem_inv * ((p.v_leak - v) + j)
        z = (h > p.v_th).to(h.dtype)
        v = (1 - z) * h + z * p.v_reset
        i = j * (1 - p.dt * p.tau_syn_inv)
        vs.append(v)
    return torch.stack(vs)


def test_eventprop_without_spikes_is_the_discrete_gradient() -> None:
    torch.manual_seed(2)
    x = torch.rand(40, 3, 5, dtype=F64).requires_grad_()
    w_in = (torch.rand(4, 5, dtype=F64) * 0.05).requires_grad_()
    cv = torch.randn(40, 3, 4, dtype=F64)
    z, v = lif_recurrent_adjoint(x, w_in, None, PARAMS)
    assert z.sum() == 0
    reference = _discrete_autograd(x, w_in, PARAMS)
    torch.testing.assert_close(v, reference, rtol=1e-13, atol=1e-15)
    g = torch.autograd.grad((v * cv).sum(), (x, w_in))
    gr = torch.autograd.grad((reference * cv).sum(), (x, w_in))
    for mine, exact in zip(g, gr):
        torch.testing.assert_close(mine, exact, rtol=1e-12, atol=1e-14)
    # Norse's adjoint is not: its current adjoint decays at tau_syn_inv, not tau_mem_inv
    gn = torch.autograd.grad(
        (lif_recurrent_adjoint(x, w_in, None, PARAMS, "norse")[1] * cv).sum(), x
    )[0]
    assert not torch.allclose(gn, g[0], rtol=0.1)


def test_continuous_gradient_by_finite_differences() -> None:
    """Two neurons, recurrent, six spikes in 30 ms; loss ∫ (V² - V) dt, whose integrand is
    0 at v_th = 1 and v_reset = 0 (a loss on v has no term of its own at a spike here).
    The discretised loss's own derivative (spikes fixed) lacks the spike-time terms;
    EventProp's gradient converges to the continuous system's at first order in dt."""
    p = LIFAdjointParameters(dt=2.5e-5)
    w_in = np.array([[5.5, 1.0], [0.5, 4.5]])
    w_rec = np.array([[0.0, 2.0], [-1.0, 0.0]])
    times, ids, horizon = np.array([1, 6, 12, 18]) * 1e-3, [0, 1, 0, 1], 0.03
    _, count, (g_in, g_rec) = continuous_gradient(times, ids, w_in, w_rec, horizon, p)
    x = torch.zeros(round(horizon / p.dt), 1, 2, dtype=F64)
    for when, source in zip(times, ids):
        x[round(when / p.dt), 0, source] = 1.0
    scale = max(np.abs(g_in).max(), np.abs(g_rec).max())
    errors = {}
    for jumps in ("eventprop", "norse"):
        wi, wr = torch.tensor(w_in, requires_grad=True), torch.tensor(w_rec, requires_grad=True)
        z, v = lif_recurrent_adjoint(x, wi, wr, p, jumps)
        assert int(z.sum()) == count == 6
        gi, gr = torch.autograd.grad(((v * v - v).sum() * p.dt), (wi, wr))
        errors[jumps] = max(np.abs(gi.numpy() - g_in).max(), np.abs(gr.numpy() - g_rec).max())
    assert errors["eventprop"] < 0.05 * scale
    assert errors["norse"] > 0.5 * scale


def test_module_and_cuba_mapping() -> None:
    from spikeflow.neurons import CubaLIFNode

    torch.manual_seed(3)
    layer = EventPropLIF(6, 3, recurrent=True, p=PARAMS, weight_scale=3.0).double()
    x = (torch.rand(12, 2, 6) < 0.5).to(F64)
    z, v = layer(x, return_voltage=True)
    assert z.shape == v.shape == (12, 2, 3) and torch.equal(layer(x), z)
    z.sum().backward()
    wi, wr = (
        layer.input_weights.detach().requires_grad_(),
        layer.recurrent_weights.detach().requires_grad_(),
    )
    gi, gr = torch.autograd.grad(lif_recurrent_adjoint(x, wi, wr, PARAMS)[0].sum(), (wi, wr))
    assert torch.equal(layer.input_weights.grad, gi) and torch.equal(
        layer.recurrent_weights.grad, gr
    )
    node = CubaLIFNode(
        tau_syn=5e-3,
        tau_mem=1e-2,
        r="tau_syn",
        v_leak=0.0,
        dt=1e-3,
        v_reset=0.0,
        strict_firing=True,
        step_mode="m",
    )
    p = parameters_from_cuba(node)
    current = torch.rand(20, 2, 3, dtype=F64) * 3
    spikes, _ = lif_adjoint(current, p)
    assert spikes.sum() > 0
    torch.testing.assert_close(node(current), spikes)
    with pytest.raises(ConfigurationError, match="soft reset"):
        parameters_from_cuba(CubaLIFNode(r="tau_syn", v_reset=None, strict_firing=True))


def test_bad_input_is_named() -> None:
    w = torch.zeros(3, 4)
    with pytest.raises(ShapeError, match=r"\[T, B, features\]"):
        lif_recurrent_adjoint(torch.zeros(4, 4), w, None)
    with pytest.raises(ShapeError, match="5 features per step"):
        lif_recurrent_adjoint(torch.zeros(2, 1, 5), w, None)
    with pytest.raises(DTypeError, match="float64"):
        lif_recurrent_adjoint(torch.zeros(2, 1, 4), w.double(), None)
    with pytest.raises(ShapeError, match=r"recurrent_weights must have shape \(3, 3\)"):
        lif_recurrent_adjoint(torch.zeros(2, 1, 4), w, torch.zeros(3, 4))
    with pytest.raises(ConfigurationError, match="jumps"):
        lif_adjoint(torch.zeros(2, 1, 4), jumps="exact")
    with pytest.raises(ConfigurationError, match="v_reset"):
        lif_adjoint(torch.zeros(2, 1, 4), LIFAdjointParameters(v_reset=2.0))
    with pytest.raises(ConfigurationError, match="tau_syn_inv \\* dt"):
        EventPropLIF(2, 2, p=LIFAdjointParameters(dt=0.1))
    with pytest.raises(DTypeError, match="floating-point"):
        lif_adjoint(torch.zeros(2, 1, 4, dtype=torch.long))
