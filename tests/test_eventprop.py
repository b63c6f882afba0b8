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
    # the reference loop, bit for bit (the C kernel sums W_rec z spike by spike, another
    # order: tests/test_eventprop_c.py compares it with this loop)
    z, v = lif_recurrent_adjoint(x, w_in, w_rec if recurrent else None, PARAMS, "norse",
                                 backend="torch")  # fmt: skip
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
    # Lava-DL's graded spikes (S = H where it fires) are not EventProp's 0/1 spikes
    graded = CubaLIFNode(r="tau_syn", strict_firing=True, graded_spike=True)
    with pytest.raises(ConfigurationError, match="graded_spike=True"):
        parameters_from_cuba(graded)


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
    current = torch.zeros(2, 1, 4)
    current[1, 0, 2] = float("nan")
    with pytest.raises(
        ConfigurationError, match=r"current must be finite .*nan at index \[1, 0, 2"
    ):
        lif_adjoint(current)
    with pytest.raises(ConfigurationError, match=r"input_weights must be finite .*inf"):
        lif_recurrent_adjoint(torch.zeros(2, 1, 4), torch.full((3, 4), torch.inf), None)
    with pytest.raises(ConfigurationError, match="v_reset"):
        lif_adjoint(torch.zeros(2, 1, 4), LIFAdjointParameters(v_reset=2.0))
    with pytest.raises(ConfigurationError, match="tau_syn_inv \\* dt"):
        EventPropLIF(2, 2, p=LIFAdjointParameters(dt=0.1))
    with pytest.raises(DTypeError, match="floating-point"):
        lif_adjoint(torch.zeros(2, 1, 4, dtype=torch.long))
    with pytest.raises(ConfigurationError, match="other than 0 and 1"):
        lif_recurrent_adjoint(torch.full((2, 1, 4), 0.5), w, None, spike_input=True)
    with pytest.raises(ConfigurationError, match="needs jumps='eventprop'"):
        EventPropLIF(2, 2, jumps="norse", spike_input=True)


def test_two_layers_exact_with_spike_input() -> None:
    """Two feed-forward layers of two neurons (seven and twelve spikes): with
    ``spike_input=True`` the second layer passes the first the spike-time gradient, and
    the first layer's gradient approaches the continuous network's (the reference: one
    network whose recurrent weights are the second layer's); passing the count
    derivative (Norse's way between layers) leaves a first-layer error that does not
    shrink with dt (0.14, 0.17, 0.20, 0.21 of the largest entry at dt = 1e-4, 2.5e-5,
    1.25e-5, 6.25e-6; spike-time: 0.40, 0.13, 0.070, 0.024)."""
    p = LIFAdjointParameters(dt=1.25e-5)
    w1, w2 = np.array([[5.5, 1.0], [0.5, 4.5]]), np.array([[3.0, 2.5], [1.0, 4.0]])
    times, ids, horizon = np.array([1, 6, 12, 18]) * 1e-3, [0, 1, 0, 1], 0.03
    w_in, w_rec = np.zeros((4, 2)), np.zeros((4, 4))
    w_in[:2], w_rec[2:, :2] = w1, w2
    masks = (w_in != 0, w_rec != 0)
    _, count, (g_in, g_rec) = continuous_gradient(times, ids, w_in, w_rec, horizon, p, masks=masks)
    g1, g2 = g_in[:2], g_rec[2:, :2]
    scale = max(np.abs(g1).max(), np.abs(g2).max())
    x = torch.zeros(round(horizon / p.dt), 1, 2, dtype=F64)
    for when, source in zip(times, ids):
        x[round(when / p.dt), 0, source] = 1.0
    errors = {}
    for spike_input in (True, False):
        a, b = torch.tensor(w1, requires_grad=True), torch.tensor(w2, requires_grad=True)
        z1, v1 = lif_recurrent_adjoint(x, a, None, p)
        z2, v2 = lif_recurrent_adjoint(z1, b, None, p, spike_input=spike_input)
        assert (int(z1.sum()), int(z2.sum())) == (7, 12) and count == 19
        loss = ((v1 * v1 - v1).sum() + (v2 * v2 - v2).sum()) * p.dt
        ga, gb = torch.autograd.grad(loss, (a, b))
        errors[spike_input] = np.abs(ga.numpy() - g1).max()
        assert np.abs(gb.numpy() - g2).max() < 0.08 * scale  # the same either way
    assert errors[True] < 0.1 * scale < 0.15 * scale < errors[False]


def test_adjoint_gradient_trains_the_hidden_layer() -> None:
    """Real data, tiny: 200 of scikit-learn's digits as constant currents, a fixed random
    readout of the spike counts; Adam on the hidden weights alone, by EventProp."""
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.data[:200], dtype=torch.float32)[None].expand(10, -1, -1) / 16
    y = torch.tensor(digits.target[:200])
    torch.manual_seed(0)
    layer = EventPropLIF(64, 40)
    readout = torch.randn(10, 40) / 40**0.5
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.02)
    losses = []
    for _ in range(8):  # 2.56 -> 1.16
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(x).sum(0) @ readout.t(), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def _eventprop_by_hand(x, w_in, w_rec, gz, gv, p, spike_input):
    """docs/learning.md's equations (``jumps="eventprop"``) written out densely."""
    a, b, dt = p.tau_mem_inv, p.tau_syn_inv, p.dt
    steps, batch, n = x.shape[0], x.shape[1], w_in.shape[0]
    v, i, z = torch.full((batch, n), p.v_leak, dtype=F64), torch.zeros(batch, n, dtype=F64), 0
    js, befores, zs = [], [], []
    for t in range(steps):
        j = i + x[t] @ w_in.t() + z @ w_rec.t() if t else i + x[t] @ w_in.t()
        h = v + dt * a * (p.v_leak - v + j)
        js.append(j)
        befores.append(v)
        z = (h > p.v_th).to(F64)
        zs.append(z)
        v, i = torch.where(z > 0, p.v_reset, h), j * (1 - dt * b)
    lam_v, lam_i = torch.zeros(batch, n, dtype=F64), torch.zeros(batch, n, dtype=F64)
    lam_h_next = lam_j_next = torch.zeros(batch, n, dtype=F64)
    d_x, d_in, d_rec = torch.zeros_like(x), torch.zeros_like(w_in), torch.zeros_like(w_rec)
    for t in range(steps - 1, -1, -1):
        lam_v = lam_v + gv[t]
        minus = a * (p.v_leak - befores[t] + js[t])
        plus = a * (p.v_leak - p.v_reset + js[t])
        g = gz[t] + (a * lam_h_next - b * lam_j_next) @ w_rec
        lam_h = torch.where(zs[t] > 0, plus / minus * lam_v + g / minus, lam_v)
        lam_j = dt * a * lam_h + (1 - dt * b) * lam_i
        d_in += lam_j.t() @ x[t]
        if t:
            d_rec += lam_j.t() @ zs[t - 1]
        d_x[t] = x[t] * ((a * lam_h - b * lam_j) @ w_in) if spike_input else lam_j @ w_in
        lam_v, lam_i = (1 - dt * a) * lam_h, lam_j
        lam_h_next, lam_j_next = lam_h, lam_j
    return torch.stack(zs), d_x, d_in, d_rec


@pytest.mark.parametrize("spike_input", [False, True])
def test_eventprop_equals_its_equations(spike_input: bool) -> None:
    torch.manual_seed(4)
    x = (torch.rand(20, 2, 5) < 0.4).to(F64).requires_grad_()
    w_in = (torch.randn(3, 5, dtype=F64) * 4).requires_grad_()
    w_rec = (torch.randn(3, 3, dtype=F64) * 2).requires_grad_()
    gz, gv = torch.randn(2, 20, 2, 3, dtype=F64)
    z, v = lif_recurrent_adjoint(x, w_in, w_rec, PARAMS, spike_input=spike_input)
    grads = torch.autograd.grad((z * gz).sum() + (v * gv).sum(), (x, w_in, w_rec))
    with torch.no_grad():
        z_ref, *reference = _eventprop_by_hand(x, w_in, w_rec, gz, gv, PARAMS, spike_input)
    assert torch.equal(z, z_ref) and 20 < z.sum() < 80  # 45 of 120
    for mine, theirs in zip(grads, reference):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)
