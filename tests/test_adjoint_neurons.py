"""EventProp for the refractory LIF, the LSNN and the conductance-based LIF
(spikeflow.learn.adjoint_refrac / adjoint_lsnn / adjoint_coba): Norse 1.1's forward and
adjoint (``jumps="norse"``) in float64, the exact discretised adjoint without spikes,
and the continuous system's gradient (``jumps="eventprop"``) against finite
differences of the forward on a fine grid."""

from __future__ import annotations

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
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

norse_lif = pytest.importorskip("norse.torch.functional.lif")
norse_refrac = pytest.importorskip("norse.torch.functional.lif_refrac")
norse_lsnn = pytest.importorskip("norse.torch.functional.lsnn")
norse_coba = pytest.importorskip("norse.torch.functional.coba_lif")
refrac_adjoint = pytest.importorskip("norse.torch.functional.adjoint.lif_refrac_adjoint")
lsnn_adjoint_norse = pytest.importorskip("norse.torch.functional.adjoint.lsnn_adjoint")

F64 = torch.float64
LIF = LIFAdjointParameters(v_leak=0.2, v_th=1.0, v_reset=-0.1)
REFRAC = LIFRefracAdjointParameters(LIF, 3.0)
LSNN = LSNNAdjointParameters(v_leak=0.2, v_reset=-0.1, tau_adapt_inv=20.0, beta=0.5)


def _t(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=F64)


class _RefracParameters(norse_refrac.LIFRefracParameters):
    """Norse's LIFAdjointRefracFunction.backward reads p.tau_syn_inv and p.tau_mem_inv,
    which LIFRefracParameters lacks (AttributeError in Norse 1.1): the values it means."""

    @property
    def tau_syn_inv(self) -> torch.Tensor:
        return self.lif.tau_syn_inv

    @property
    def tau_mem_inv(self) -> torch.Tensor:
        return self.lif.tau_mem_inv


def _norse_refrac(x, p, w_in=None, w_rec=None):
    q = p.lif
    lif = norse_lif.LIFParameters(
        tau_syn_inv=_t(q.tau_syn_inv), tau_mem_inv=_t(q.tau_mem_inv), v_leak=_t(q.v_leak),
        v_th=_t(q.v_th), v_reset=_t(q.v_reset), method="super",
    )  # fmt: skip
    pn = _RefracParameters(lif, _t(p.rho_reset))
    n = x.shape[2] if w_in is None else w_in.shape[0]
    zero = torch.zeros(x.shape[1], n, dtype=F64)
    zs, vs = [], []
    if w_in is None:
        s = norse_refrac.LIFRefracFeedForwardState(
            norse_lif.LIFFeedForwardState(zero + q.v_leak, zero), zero
        )
        step = refrac_adjoint.lif_refrac_feed_forward_adjoint_step
        for t in range(x.shape[0]):
            z, s = step(x[t], s, pn, q.dt)
            zs.append(z), vs.append(s.lif.v)
    else:
        s = norse_refrac.LIFRefracState(norse_lif.LIFState(zero, zero + q.v_leak, zero), zero)
        for t in range(x.shape[0]):
            z, s = refrac_adjoint.lif_refrac_adjoint_step(x[t], s, w_in, w_rec, pn, q.dt)
            zs.append(z), vs.append(s.lif.v)
    return torch.stack(zs), torch.stack(vs)


def _norse_lsnn(x, p, w_in=None, w_rec=None):
    values = {k: _t(getattr(p, k)) for k in p._fields if k != "dt"}
    pn = norse_lsnn.LSNNParameters(**values, method="super")
    n = x.shape[2] if w_in is None else w_in.shape[0]
    zero = torch.zeros(x.shape[1], n, dtype=F64)
    zs, vs = [], []
    if w_in is None:
        s = norse_lsnn.LSNNFeedForwardState(zero + p.v_leak, zero, zero + p.v_th)
        for t in range(x.shape[0]):
            z, s = lsnn_adjoint_norse.lsnn_feed_forward_adjoint_step(x[t], s, pn, p.dt)
            zs.append(z), vs.append(s.v)
    else:
        s = norse_lsnn.LSNNState(zero, zero + p.v_leak, zero, zero + p.v_th)
        for t in range(x.shape[0]):
            z, s = lsnn_adjoint_norse.lsnn_adjoint_step(x[t], s, w_in, w_rec, pn, p.dt)
            zs.append(z), vs.append(s.v)
    return torch.stack(zs), torch.stack(vs)


def _gradients(run, wrt, cz, cv):
    z, v = run()
    return z, v, torch.autograd.grad((z * cz).sum() + (v * cv).sum(), wrt)


@pytest.mark.parametrize("neuron", ["refrac", "lsnn"])
@pytest.mark.parametrize("layer", ["current", "recurrent"])
def test_equals_norse(neuron: str, layer: str) -> None:
    """Norse's adjoint steps over the sequence: the same spikes and membrane bit for bit,
    and ``jumps="norse"``'s gradients (input, W_in, W_rec) to 1e-12."""
    torch.manual_seed(0)
    ours, theirs, p = (
        (lif_refrac_adjoint, _norse_refrac, REFRAC)
        if neuron == "refrac"
        else (lsnn_adjoint, _norse_lsnn, LSNN)
    )
    cz, cv = torch.randn(2, 40, 3, 4, dtype=F64)
    if layer == "current":
        x = (torch.rand(40, 3, 4, dtype=F64) * 3).requires_grad_()
        weights, wrt = (), (x,)
    else:
        x = (torch.rand(40, 3, 5, dtype=F64) < 0.3).to(F64).requires_grad_()
        w_in = (torch.randn(4, 5, dtype=F64) * 2).requires_grad_()
        w_rec = torch.randn(4, 4, dtype=F64).requires_grad_()
        weights, wrt = (w_in, w_rec), (x, w_in, w_rec)
    z, v, g = _gradients(lambda: ours(x, p, *weights, jumps="norse"), wrt, cz, cv)
    zn, vn, gn = _gradients(lambda: theirs(x, p, *weights), wrt, cz, cv)
    assert torch.equal(z, zn) and torch.equal(v, vn) and z.sum() > 30
    for mine, norse in zip(g, gn):
        torch.testing.assert_close(mine, norse, rtol=1e-12, atol=1e-12)
    if neuron == "refrac":  # the refractory period is exercised: fewer spikes without it
        plain = lif_refrac_adjoint(x, REFRAC._replace(rho_reset=0.0), *weights)[0]
        assert plain.sum() > z.sum()


def test_coba_forward_equals_norse() -> None:
    torch.manual_seed(1)
    p = CobaLIFAdjointParameters(dt=0.1)
    drive = torch.randn(60, 3, 4, dtype=F64) * 0.05
    z, v = coba_lif_adjoint(drive, p)
    values = {k: _t(getattr(p, k)) for k in p._fields if k != "dt"}
    pn = norse_coba.CobaLIFParameters(**values, method="super")
    zero = torch.zeros(3, 4, dtype=F64)
    s = norse_coba.CobaLIFFeedForwardState(zero + p.v_rest, zero, zero)
    zs, vs = [], []
    for t in range(60):
        zt, s = norse_coba.coba_lif_feed_forward_step(drive[t], s, pn, p.dt)
        zs.append(zt), vs.append(s.v)
    assert torch.equal(z, torch.stack(zs)) and torch.equal(v, torch.stack(vs))
    assert 5 < z.sum() < z.numel() / 2


def _loop_refrac(x, w_in, p):
    q = p.lif
    v, i = torch.full_like(x[0, :, :1].expand(-1, w_in.shape[0]), q.v_leak), 0.0
    vs = []
    for t in range(x.shape[0]):
        j = i + x[t] @ w_in.t()
        v = v + q.dt * q.tau_mem_inv * ((q.v_leak - v) + j)
        i = j * (1 - q.dt * q.tau_syn_inv)
        vs.append(v)
    return torch.stack(vs)


def _loop_lsnn(x, w_in, p):
    v, i = torch.full_like(x[0, :, :1].expand(-1, w_in.shape[0]), p.v_leak), 0.0
    vs = []
    for t in range(x.shape[0]):
        v = v + p.dt * p.tau_mem_inv * ((p.v_leak - v) + i)
        i = i * (1 - p.dt * p.tau_syn_inv) + x[t] @ w_in.t()
        vs.append(v)
    return torch.stack(vs)


def _loop_coba(x, w_in, p):
    drive = x @ w_in.t()
    v, g_e, g_i = torch.full_like(drive[0], p.v_rest), 0.0, 0.0
    vs = []
    for t in range(x.shape[0]):
        g_e = (g_e + torch.relu(drive[t])) * (1 - p.dt * p.tau_syn_exc_inv)
        g_i = (g_i + torch.relu(-drive[t])) * (1 - p.dt * p.tau_syn_inh_inv)
        v = v + p.dt * p.c_m_inv * (
            p.g_l * (p.v_rest - v) + g_e * (p.e_rev_E - v) + g_i * (p.e_rev_I - v)
        )
        vs.append(v)
    return torch.stack(vs)


COBA = CobaLIFAdjointParameters(
    tau_syn_exc_inv=200.0, tau_syn_inh_inv=100.0, c_m_inv=100.0, g_l=1.0, e_rev_I=-1.0,
    e_rev_E=5.0, v_rest=0.0, v_reset=0.0, v_thresh=1.0, dt=1e-3,
)  # fmt: skip
_NO_SPIKES = {
    "refrac": (lambda x, w: lif_refrac_adjoint(x, REFRAC, w), _loop_refrac, REFRAC),
    "lsnn": (lambda x, w: lsnn_adjoint(x, LSNN, w), _loop_lsnn, LSNN),
    "coba": (lambda x, w: coba_lif_adjoint(x @ w.t(), COBA), _loop_coba, COBA),
}


@pytest.mark.parametrize("neuron", list(_NO_SPIKES))
def test_eventprop_without_spikes_is_the_discrete_gradient(neuron: str) -> None:
    """Without spikes ``jumps="eventprop"`` is autograd through the forward as a loop."""
    torch.manual_seed(2)
    ours, loop, p = _NO_SPIKES[neuron]
    x = torch.rand(40, 3, 5, dtype=F64).requires_grad_()
    w_in = (torch.randn(4, 5, dtype=F64) * 0.05).requires_grad_()
    cv = torch.randn(40, 3, 4, dtype=F64)
    z, v = ours(x, w_in)
    assert z.sum() == 0
    reference = loop(x, w_in, p)
    torch.testing.assert_close(v, reference, rtol=1e-12, atol=1e-14)
    g = torch.autograd.grad((v * cv).sum(), (x, w_in))
    gr = torch.autograd.grad((reference * cv).sum(), (x, w_in))
    for mine, exact in zip(g, gr):
        torch.testing.assert_close(mine, exact, rtol=1e-12, atol=1e-14)


def test_refrac_without_refractory_period_is_lif_eventprop() -> None:
    """``rho_reset = 0``: lif_recurrent_adjoint's EventProp, spikes and gradients."""
    torch.manual_seed(3)
    x = (torch.rand(30, 2, 4, dtype=F64) < 0.6).to(F64).requires_grad_()
    w_in = (torch.randn(3, 4, dtype=F64) * 3 + 0.5).requires_grad_()
    w_rec = torch.randn(3, 3, dtype=F64).requires_grad_()
    cz, cv = torch.randn(2, 30, 2, 3, dtype=F64)
    wrt = (x, w_in, w_rec)
    p = REFRAC._replace(rho_reset=0.0)
    z, v, g = _gradients(lambda: lif_refrac_adjoint(x, p, w_in, w_rec), wrt, cz, cv)
    zl, vl, gl = _gradients(
        lambda: lif_recurrent_adjoint(x, w_in, w_rec, LIF, backend="torch"), wrt, cz, cv
    )
    assert torch.equal(z, zl) and torch.equal(v, vl)
    assert 0.3 < z.mean() < 0.7  # neither silent nor firing at every step
    for mine, lif in zip(g, gl):
        torch.testing.assert_close(mine, lif, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("neuron", ["refrac", "lsnn"])
def test_recurrent_gradient_pairs_the_current_with_the_spikes_that_made_it(neuron: str) -> None:
    """W_rec z[t-1] enters the current at step t as the input does: with EventProp's
    jumps, ∂L/∂W_rec = Σ_t (∂L/∂c[t])ᵀ z[t-1], the input current's gradient (exact)."""
    torch.manual_seed(4)
    run = lif_refrac_adjoint if neuron == "refrac" else lsnn_adjoint
    p = REFRAC if neuron == "refrac" else LSNN
    current = (torch.rand(40, 3, 4, dtype=F64) * 3).requires_grad_()
    w_rec = torch.randn(4, 4, dtype=F64).requires_grad_()
    cz, cv = torch.randn(2, 40, 3, 4, dtype=F64)
    z, _, (d_current, d_rec) = _gradients(
        lambda: run(current, p, None, w_rec), (current, w_rec), cz, cv
    )
    assert 0.05 < z.mean() < 0.5
    expected = torch.einsum("tbn,tbm->nm", d_current[1:], z[:-1])
    torch.testing.assert_close(d_rec, expected, rtol=1e-12, atol=1e-12)


# -- the continuous system's gradient, by finite differences on a fine grid ------------

_DURATION = 0.02
_INPUT_TIMES = (
    (1e-3, 4e-3, 7.5e-3, 12e-3),
    (2e-3, 6e-3, 9e-3, 15e-3),
    (3e-3, 8e-3, 13.5e-3, 17e-3),
)


def _input_spikes(dt: float) -> torch.Tensor:
    x = torch.zeros(round(_DURATION / dt), 1, 3, dtype=F64)
    for k, times in enumerate(_INPUT_TIMES):
        for time in times:
            x[round(time / dt) - 1, 0, k] = 1.0
    return x


def _setup(neuron: str, dt: float):
    """(run(current, W_rec, jumps), loss(v) per sample, W_in, W_rec)."""
    if neuron == "refrac":  # 2 ms refractory; loss ∫ v (v - 1) dt: 0 at v_th and v_reset
        p = LIFRefracAdjointParameters(LIFAdjointParameters(dt=dt), 2e-3 / dt)
        w_in = torch.tensor([[1.6, 1.4, 1.5], [0.7, 0.6, 0.7]], dtype=F64)
        w_rec = torch.tensor([[0.0, 0.0], [1.2, 0.0]], dtype=F64)
        return (
            lambda c, w, jumps: lif_refrac_adjoint(c, p, None, w, jumps),
            lambda v: dt * (v * (v - 1)).sum((0, 2)),
            w_in,
            w_rec,
        )
    if neuron == "lsnn":  # neuron 1 never fires and observes neuron 0's spikes: ∫ v_1² dt
        p = LSNNAdjointParameters(v_th=1.0, tau_adapt_inv=50.0, beta=0.3, dt=dt)
        w_in = torch.tensor([[1.6, 1.4, 1.5], [0.0, 0.0, 0.0]], dtype=F64)
        w_rec = torch.tensor([[0.0, 0.0], [0.5, 0.0]], dtype=F64)
        return (
            lambda c, w, jumps: lsnn_adjoint(c, p, None, w, jumps),
            lambda v: dt * (v[..., 1] ** 2).sum(0),
            w_in,
            w_rec,
        )
    p = COBA._replace(dt=dt)
    w_in = torch.tensor([[0.45, -0.2, 0.5], [0.35, 0.4, -0.3]], dtype=F64)
    return (
        lambda c, w, jumps: coba_lif_adjoint(c, p),
        lambda v: dt * (v * (v - 1)).sum((0, 2)),
        w_in,
        None,
    )


def _row_error(gradient: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest error in a neuron's input weights relative to their largest entry."""
    scale = reference.abs().amax(1, keepdim=True)
    return float(((gradient - reference).abs() / scale).max())


def _adjoint_gradient(neuron: str, dt: float, jumps: str, recurrent: bool = False):
    """The gradient of W_in (or, ``recurrent``, of W_rec[1, 0]) and the spike counts."""
    run, loss, w_in, w_rec = _setup(neuron, dt)
    w_in = w_in.clone().requires_grad_()
    if recurrent:
        w_rec = w_rec.clone().requires_grad_()
    z, v = run(_input_spikes(dt) @ w_in.t(), w_rec, jumps)
    gradient = torch.autograd.grad(loss(v).sum(), w_rec if recurrent else w_in)[0]
    return (gradient[1, 0] if recurrent else gradient), z.sum((0, 1))


def _recurrent_difference(neuron: str, dt: float, eps: float) -> float:
    """Central difference in W_rec[1, 0] (two runs)."""
    run, loss, w_in, w_rec = _setup(neuron, dt)
    losses = []
    for sign in (1.0, -1.0):
        w = w_rec.clone()
        w[1, 0] += sign * eps
        with torch.no_grad():
            losses.append(loss(run(_input_spikes(dt) @ w_in.t(), w, "eventprop")[1]))
    return float((losses[0] - losses[1]) / (2 * eps))


def _finite_differences(neuron: str, dt: float, eps: float):
    """Central differences in each entry of W_in, all in one batch (one run)."""
    run, loss, w_in, w_rec = _setup(neuron, dt)
    shifted = []
    for index in range(w_in.numel()):
        for sign in (1.0, -1.0):
            w = w_in.clone()
            w.view(-1)[index] += sign * eps
            shifted.append(w)
    current = torch.einsum("tbi,pni->tpn", _input_spikes(dt), torch.stack(shifted))
    with torch.no_grad():
        z, v = run(current, w_rec, "eventprop")
    losses = loss(v)
    assert (z.sum(0) == z.sum(0)[0]).all()  # the same spike counts: a smooth stretch
    return ((losses[0::2] - losses[1::2]) / (2 * eps)).reshape(w_in.shape), z.sum(0)[0]


@pytest.mark.parametrize(
    ("neuron", "dt", "eps", "tolerance"),
    [("refrac", 2.5e-5, 3e-2, 0.1), ("lsnn", 2.5e-5, 3e-2, 0.03), ("coba", 5e-6, 1e-2, 0.2)],
)
def test_continuous_gradient_by_finite_differences(
    neuron: str, dt: float, eps: float, tolerance: float
) -> None:
    """EventProp on the grid against the continuous system's gradient: central
    differences of the forward at dt = 2 µs (spike counts unchanged; ``eps`` large enough
    that the spike times move by tens of steps). Norse's adjoint (refractory LIF, LSNN)
    is off by about the gradient itself or more."""
    reference, counts = _finite_differences(neuron, 2e-6, eps)
    assert counts[0] >= 4  # neuron 0 fires several times
    rows = slice(None)
    if neuron == "lsnn":  # the observer stays below threshold; its own weights see no jump
        assert counts[1] == 0
        rows = slice(0, 1)
    mine, mine_counts = _adjoint_gradient(neuron, dt, "eventprop")
    assert torch.equal(mine_counts, counts)
    assert _row_error(mine[rows], reference[rows]) < tolerance
    if neuron != "coba":
        norse, _ = _adjoint_gradient(neuron, dt, "norse")
        assert _row_error(norse[rows], reference[rows]) > 0.9
        # the recurrent weight from the spiking neuron 0 to neuron 1
        recurrent = _recurrent_difference(neuron, 2e-6, eps)
        mine_recurrent, _ = _adjoint_gradient(neuron, dt, "eventprop", recurrent=True)
        assert abs(float(mine_recurrent) - recurrent) < tolerance * abs(recurrent)


def test_bad_input_is_named() -> None:
    x = torch.rand(5, 2, 3)
    with pytest.raises(ConfigurationError, match="LIFRefracAdjointParameters"):
        lif_refrac_adjoint(x, LIF)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="rho_reset"):
        lif_refrac_adjoint(x, REFRAC._replace(rho_reset=-1.0))
    with pytest.raises(ConfigurationError, match="jumps"):
        lsnn_adjoint(x, LSNN, jumps="exact")
    with pytest.raises(ConfigurationError, match="tau_adapt_inv"):
        lsnn_adjoint(x, LSNN._replace(tau_adapt_inv=5e3))
    with pytest.raises(ConfigurationError, match="v_thresh"):
        coba_lif_adjoint(x, COBA._replace(v_reset=2.0))
    with pytest.raises(ConfigurationError, match="c_m_inv \\* g_l \\* dt must be <= 1"):
        coba_lif_adjoint(x, COBA._replace(c_m_inv=2e3))  # the leak: 2 per step
    with pytest.raises(ShapeError, match="recurrent_weights must have shape"):
        lsnn_adjoint(x, LSNN, None, torch.zeros(2, 2))
    with pytest.raises(ShapeError, match="x has 3 features per step"):
        lif_refrac_adjoint(x, REFRAC, torch.zeros(4, 5))
    with pytest.raises(DTypeError, match="drive must be floating-point"):
        coba_lif_adjoint(torch.ones(5, 2, 3, dtype=torch.long))
    with pytest.raises(ShapeError, match="time-major"):
        lsnn_adjoint(torch.rand(5, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_input_or_weights_are_named(bad: float) -> None:
    x = torch.rand(5, 2, 3)
    x[3, 1, 2] = bad
    found = rf"must be finite \(found NaN or inf: {bad} at index \[3, 1, 2\]\)"
    with pytest.raises(ConfigurationError, match=rf"lif_refrac_adjoint: x {found}"):
        lif_refrac_adjoint(x, REFRAC)
    with pytest.raises(ConfigurationError, match=rf"lsnn_adjoint: x {found}"):
        lsnn_adjoint(x, LSNN)
    with pytest.raises(ConfigurationError, match=rf"coba_lif_adjoint: drive {found}"):
        coba_lif_adjoint(x, COBA)
    w = torch.rand(4, 3)
    w[2, 0] = bad
    weight = rf"must be finite \(found NaN or inf: {bad} at index \[2, 0\]\)"
    with pytest.raises(ConfigurationError, match=rf"lsnn_adjoint: input_weights {weight}"):
        lsnn_adjoint(torch.rand(5, 2, 3), LSNN, w)
    recurrent = torch.rand(3, 3)
    recurrent[2, 0] = bad
    with pytest.raises(ConfigurationError, match=rf"recurrent_weights {weight}"):
        lif_refrac_adjoint(torch.rand(5, 2, 3), REFRAC, None, recurrent)


_TRAIN = {
    "refrac": lambda x, w: lif_refrac_adjoint(x, LIFRefracAdjointParameters(), w)[0],
    "lsnn": lambda x, w: lsnn_adjoint(x, LSNNAdjointParameters(), w)[0],
    "coba": lambda x, w: coba_lif_adjoint(x @ w.t(), COBA)[0],
}


@pytest.mark.parametrize("neuron", list(_TRAIN))
def test_eventprop_trains_the_hidden_layer(neuron: str) -> None:
    """Real data, small: 200 of scikit-learn's digits as constant inputs for 20 steps, a
    fixed random readout of 40 neurons' spike counts; Adam on the input weights alone, by
    EventProp (measured: 2.69 -> 1.17, 2.53 -> 1.32, 4.05 -> 1.40 in 8 steps)."""
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.data[:200], dtype=torch.float32)[None].expand(20, -1, -1) / 16
    y = torch.tensor(digits.target[:200])
    torch.manual_seed(0)
    scale = (2 / 64) ** 0.5 * (0.3 if neuron == "coba" else 1.0)
    weights = (torch.randn(40, 64) * scale).requires_grad_()
    readout = torch.randn(10, 40) / 40**0.5
    optimizer = torch.optim.Adam([weights], lr=0.02)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        spikes = _TRAIN[neuron](x, weights)
        loss = torch.nn.functional.cross_entropy(spikes.sum(0) @ readout.t(), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
