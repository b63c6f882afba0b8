"""docs/migration.md, "From Norse": the rows beyond LIF, checked against Norse 1.1.

Leaky integrators (``LI``, ``LICell``, ``LILinearCell``), ``IAF``, the adaptive LSNN
(feed-forward and recurrent), ``LIFRecurrent``, Norse's surrogate methods other than
``"super"``, and what replaces ``SequentialState``, ``Lift`` and
``RecurrentSequential``. Each mapping runs on both sides with the same weights and the
same input: spikes identical, states and gradients equal in float64 (Norse builds its
modules in the default dtype; the states it starts in float32 start at values float32
holds exactly here). A cell is run by Norse's own per-step loop (``z, s = cell(x_t, s)``)
against one multi-step call of the spikeflow module. Each Norse test skips without Norse.

The ALIF tests at the end check ``ALIFNode(detach_adaptation=True)``, added for Norse's
``LSNNRecurrent``, against a hand-written loop on every backend.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import fused_backends, kernel_device
from spikeflow import functional, layers, neurons, surrogate
from spikeflow.errors import ConfigurationError

F64 = dict(rtol=1e-10, atol=1e-12)
DT = 1e-3
SYN, MEM, ADAPT = 200.0, 100.0, 50.0  # Norse's tau_syn_inv, tau_mem_inv, tau_adapt_inv (1/s)


def _norse():
    return pytest.importorskip("norse.torch", reason="Norse is not installed")


def _leaves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.clone().requires_grad_(), x.clone().requires_grad_()


def _grads(out, inputs, g):
    return torch.autograd.grad((out * g).sum(), inputs)


def _assert_same_spikes(got, want, low=0.02):
    assert torch.equal(got, want), "spikes differ"
    assert low < want.double().mean().item() < 0.98, "too few or too many spikes to compare"


def _cell_loop(cell, x):
    """Norse's per-step loop: ``z, s = cell(x_t, s)``, ``s`` None first."""
    out, state = [], None
    for x_t in x:
        z, state = cell(x_t, state)
        out.append(z)
    return torch.stack(out), state


def _close_all(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert b.abs().sum() > 0, "a zero gradient compares nothing"
        torch.testing.assert_close(a, b, **F64)


# -- LI, LICell, LILinearCell: the leaky-integrator readout -----------------------------


def li_stack(v_leak: float = 0.0, step_mode: str = "m") -> nn.Sequential:
    """Norse's ``LI(LIParameters(SYN, MEM, v_leak), dt=DT)``: the synaptic current
    ``c[t] = (1 - dt tau_syn_inv) c[t-1] + x[t]`` (Norse's ``i`` before its decay), then
    the membrane ``v[t] = v[t-1] + dt tau_mem_inv (v_leak - v[t-1] + c[t])``."""
    return nn.Sequential(
        neurons.LINode(tau=1 / (DT * SYN), decay_input=False, step_mode=step_mode),
        neurons.LINode(tau=1 / (DT * MEM), v_leak=v_leak, step_mode=step_mode),
    )


@pytest.mark.parametrize("form", ["module", "cell"])
def test_norse_li(float64, form):
    norse = _norse()
    v_leak = 0.25  # Norse starts the membrane at v_leak, as LINode does
    p = norse.LIParameters(
        tau_syn_inv=torch.tensor(SYN), tau_mem_inv=torch.tensor(MEM), v_leak=torch.tensor(v_leak)
    )
    x = torch.randn(20, 3, 5)
    g = torch.randn(20, 3, 5)
    x_norse, x_sf = _leaves(x)
    if form == "module":
        want, state = norse.LI(p, dt=DT)(x_norse)
    else:
        want, state = _cell_loop(norse.LICell(p, dt=DT), x_norse)
    got, ours = functional.run(li_stack(v_leak), x_sf)
    torch.testing.assert_close(got, want, **F64)
    torch.testing.assert_close(ours["1"]["v"], state.v, **F64)
    torch.testing.assert_close(ours["0"]["v"] * (1 - DT * SYN), state.i, **F64)
    _close_all(_grads(got, [x_sf], g), _grads(want, [x_norse], g))
    # the current matters: the membrane alone (tau_mem) is another readout
    assert not torch.allclose(neurons.LINode(tau=1 / (DT * MEM), v_leak=v_leak)(x), want)


def test_norse_li_linear_cell(float64):
    norse = _norse()
    p = norse.LIParameters(tau_syn_inv=torch.tensor(SYN), tau_mem_inv=torch.tensor(MEM))
    cell = norse.LILinearCell(4, 3, p, dt=DT)
    ours = nn.Sequential(layers.Linear(4, 3, bias=False), *li_stack())
    with torch.no_grad():
        ours[0].weight.copy_(cell.input_weights)
    x = (torch.rand(16, 2, 4) < 0.3).double()  # input spikes
    g = torch.randn(16, 2, 3)
    x_norse, x_sf = _leaves(x)
    want, _ = _cell_loop(cell, x_norse)
    got = ours(x_sf)
    torch.testing.assert_close(got, want, **F64)
    _close_all(
        _grads(got, [x_sf, ours[0].weight], g), _grads(want, [x_norse, cell.input_weights], g)
    )


# -- IAF, IAFCell -----------------------------------------------------------------------


def iaf_node(**kw) -> neurons.IFNode:
    """Norse's ``IAF(IAFParameters(v_th=1, v_reset=-0.5))``."""
    return neurons.IFNode(
        v_threshold=1.0,
        v_reset=-0.5,
        strict_firing=True,
        surrogate_function=surrogate.SuperSpike(alpha=1.0),
        **kw,
    )


@pytest.mark.parametrize("form", ["module", "cell"])
def test_norse_iaf(float64, form):
    norse = _norse()
    p = norse.IAFParameters(v_th=torch.tensor(1.0), v_reset=torch.tensor(-0.5))
    x = torch.rand(20, 4, 6) * 0.8 - 0.1
    g = torch.randn(20, 4, 6)
    x_norse, x_sf = _leaves(x)
    if form == "module":
        want, state = norse.IAF(p)(x_norse)
    else:
        want, state = _cell_loop(norse.IAFCell(p), x_norse)
    ours = iaf_node(store_v_seq=True)
    got = ours(x_sf)
    _assert_same_spikes(got, want)
    torch.testing.assert_close(ours.v_seq[-1], state.v, **F64)
    _close_all(_grads(got, [x_sf], g), _grads(want, [x_norse], g))
    # v > v_th: from v_reset = -0.5, an input of 1.5 charges exactly to the threshold
    exact = torch.full((1, 1), 1.5)
    assert norse.IAF(p)(exact)[0].sum() == 0 == iaf_node()(exact).sum()
    assert neurons.IFNode(v_reset=-0.5)(exact).sum() == 1  # spikeflow's default fires


# -- LSNN, LSNNCell, LSNNRecurrent, LSNNRecurrentCell: adaptive threshold ----------------


def lsnn_params(norse):
    return norse.LSNNParameters(
        tau_syn_inv=torch.tensor(SYN),
        tau_mem_inv=torch.tensor(MEM),
        tau_adapt_inv=torch.tensor(ADAPT),
        v_leak=torch.tensor(0.25),
        v_reset=torch.tensor(0.25),  # = v_leak: ALIF's membrane rests at v_reset
        beta=torch.tensor(1.8),
    )  # v_th = 1


def lsnn_stack(step_mode: str = "m", **kw) -> nn.Sequential:
    """Norse's ``LSNN(lsnn_params(norse), dt=DT)``: its current
    (``LINode`` as in ``li_stack``) reaches the membrane one step late (Norse adds the
    input after firing), and its threshold ``b = v_th + beta a``, with ``a`` ALIF's
    trace: ``rho = 1 - dt tau_adapt_inv``, ALIF's ``beta = beta rho``."""
    rho = 1 - DT * ADAPT
    return nn.Sequential(
        neurons.LINode(tau=1 / (DT * SYN), decay_input=False, step_mode=step_mode),
        layers.Delay(1, step_mode=step_mode),
        neurons.ALIFNode(
            tau=1 / (DT * MEM),
            tau_adapt=-1 / math.log(rho),
            beta=1.8 * rho,
            v_threshold=1.0,
            v_reset=0.25,
            strict_firing=True,
            surrogate_function=surrogate.SuperSpike(alpha=1.0),
            step_mode=step_mode,
            **kw,
        ),
    )


@pytest.mark.parametrize("form", ["module", "cell"])
def test_norse_lsnn(float64, form):
    norse = _norse()
    p = lsnn_params(norse)
    x = torch.rand(20, 4, 6) * 40 - 5
    g = torch.randn(20, 4, 6)
    x_norse, x_sf = _leaves(x)
    if form == "module":
        want, state = norse.LSNN(p, dt=DT)(x_norse)
    else:
        want, state = _cell_loop(norse.LSNNCell(p, dt=DT), x_norse)
    ours = lsnn_stack()
    got, final = functional.run(ours, x_sf)
    _assert_same_spikes(got, want)
    torch.testing.assert_close(final["2"]["v"], state.v, **F64)
    torch.testing.assert_close(1.0 + 1.8 * final["2"]["a"], state.b, **F64)
    torch.testing.assert_close(final["0"]["v"], state.i, **F64)
    _close_all(_grads(got, [x_sf], g), _grads(want, [x_norse], g))


def lsnn_recurrent_stack(n_in: int, n: int, autapses: bool = False, **kw) -> nn.Sequential:
    """Norse's ``LSNNRecurrent(n_in, n, p, autapses=autapses, dt=DT)``: the input
    weights, then the recurrent spikes of the last step added to the current; its reset
    and adaptation are detached."""
    stack = lsnn_stack("s", detach_reset=True, **kw)
    return nn.Sequential(
        layers.Linear(n_in, n, bias=False),
        layers.Recurrent(stack, n, self_connections=autapses),
    )


@pytest.mark.parametrize(
    ("form", "autapses"), [("module", False), ("cell", False), ("module", True)]
)
def test_norse_lsnn_recurrent(float64, form, autapses):
    norse = _norse()
    p = lsnn_params(norse)
    cls = norse.LSNNRecurrent if form == "module" else norse.LSNNRecurrentCell
    theirs = cls(5, 6, p, autapses=autapses, dt=DT)
    ours = lsnn_recurrent_stack(5, 6, autapses, detach_adaptation=True)
    with torch.no_grad():
        ours[0].weight.copy_(theirs.input_weights)
        ours[1].recurrent.weight.copy_(theirs.recurrent_weights)
    x = torch.rand(20, 4, 5) * 15
    g = torch.randn(20, 4, 6)
    x_norse, x_sf = _leaves(x)
    want = theirs(x_norse)[0] if form == "module" else _cell_loop(theirs, x_norse)[0]
    got = ours(x_sf)
    _assert_same_spikes(got, want, low=0.05)
    weights = [ours[0].weight, ours[1].recurrent.weight]
    want_grads = _grads(want, [x_norse, theirs.input_weights, theirs.recurrent_weights], g)
    got_grads = _grads(got, [x_sf, *weights], g)
    _close_all(got_grads, want_grads)
    assert bool((got_grads[2].diagonal() == 0).all()) is not autapses
    # Norse detaches the adaptation as well as the reset: without it, other gradients
    attached = lsnn_recurrent_stack(5, 6, autapses)
    attached.load_state_dict(ours.state_dict())
    x_attached = x.clone().requires_grad_()
    y = attached(x_attached)
    assert torch.equal(y, want)
    assert not torch.allclose(_grads(y, [x_attached], g)[0], want_grads[0])


# -- LIFRecurrent, LIFRecurrentCell ---------------------------------------------------


def lif_recurrent_stack(n_in: int, n: int, autapses: bool = False) -> nn.Sequential:
    """Norse's ``LIFRecurrent(n_in, n, LIFParameters(SYN, MEM), autapses, dt=DT)``."""
    tau_syn, tau_mem = 1 / SYN, 1 / MEM
    node = neurons.CubaLIFNode(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=tau_syn / DT,
        dt=DT,
        v_threshold=1.0,
        v_reset=0.0,
        strict_firing=True,
        detach_reset=True,  # Norse's recurrent lif_step detaches its reset
        surrogate_function=surrogate.SuperSpike(alpha=1.0),
        step_mode="s",
    )
    return nn.Sequential(
        layers.Linear(n_in, n, bias=False),
        layers.Recurrent(node, n, self_connections=autapses),
    )


@pytest.mark.parametrize(
    ("form", "autapses"), [("module", False), ("cell", False), ("module", True)]
)
def test_norse_lif_recurrent(float64, form, autapses):
    norse = _norse()
    p = norse.LIFParameters(tau_syn_inv=torch.tensor(SYN), tau_mem_inv=torch.tensor(MEM))
    cls = norse.LIFRecurrent if form == "module" else norse.LIFRecurrentCell
    theirs = cls(5, 6, p, autapses=autapses, dt=DT)
    ours = lif_recurrent_stack(5, 6, autapses)
    with torch.no_grad():
        ours[0].weight.copy_(theirs.input_weights)
        ours[1].recurrent.weight.copy_(theirs.recurrent_weights)
    x = torch.rand(20, 4, 5) * 8
    g = torch.randn(20, 4, 6)
    x_norse, x_sf = _leaves(x)
    want = theirs(x_norse)[0] if form == "module" else _cell_loop(theirs, x_norse)[0]
    got = ours(x_sf)
    _assert_same_spikes(got, want)
    weights = [ours[0].weight, ours[1].recurrent.weight]
    got_grads = _grads(got, [x_sf, *weights], g)
    want_grads = _grads(want, [x_norse, theirs.input_weights, theirs.recurrent_weights], g)
    _close_all(got_grads, want_grads)
    assert bool((got_grads[2].diagonal() == 0).all()) is not autapses


def test_norse_recurrent_initialisation():
    """Norse's weights, drawn in spikeflow: ``N(0, 2 / hidden)`` for both, in Norse's
    order (input first), the recurrent diagonal masked by ``self_connections=False``."""
    norse = _norse()
    for n_in, n in [(5, 6), (40, 33)]:
        torch.manual_seed(1)
        theirs = norse.LIFRecurrent(n_in, n)
        ours = lif_recurrent_stack(n_in, n)
        torch.manual_seed(1)
        nn.init.normal_(ours[0].weight, std=math.sqrt(2 / n))
        nn.init.normal_(ours[1].recurrent.weight, std=math.sqrt(2 / n))
        # Norse scales by a float32 sqrt(2 / n): equal to float32 rounding
        torch.testing.assert_close(ours[0].weight, theirs.input_weights, rtol=1e-6, atol=0)
        torch.testing.assert_close(
            ours[1].feedback_weight(), theirs.recurrent_weights, rtol=1e-6, atol=0
        )


# -- LIFParameters(method=...): Norse's surrogates --------------------------------------


GRID = torch.cat([torch.linspace(-3, 3, 601), torch.tensor([0.0, 1.0, -1.0, 1e-9, -1e-9])])


def _derivatives(norse_method: str, alpha: float, ours: surrogate.Surrogate):
    """Norse's threshold and ``ours`` (strict firing) on GRID: both derivatives, after
    checking the forward (``x > 0``) is the same."""
    from norse.torch.functional.threshold import threshold

    x_norse, x_sf = _leaves(GRID.double())
    z_norse = threshold(x_norse, norse_method, torch.tensor(alpha))
    z_sf = ours(x_sf, strict=True)
    assert torch.equal(z_sf, z_norse) and z_sf[600] == 1 and z_sf[601] == 0
    return (
        torch.autograd.grad(z_sf.sum(), x_sf)[0],
        torch.autograd.grad(z_norse.sum(), x_norse)[0],
    )


@pytest.mark.parametrize(
    ("method", "alpha", "ours"),
    [
        ("tanh", 2.0, surrogate.Sigmoid(alpha=4.0)),
        ("triangle", 1.0, surrogate.Triangle(gamma=1.0)),
        ("triangle", 1.0, surrogate.PiecewiseQuadratic(alpha=1.0)),
        ("heavi_erfc", 2.0, surrogate.Erf(alpha=2.0)),
        ("super", 100.0, surrogate.SuperSpike(alpha=1.0)),
        ("super", 0.5, surrogate.SuperSpike(alpha=1.0)),
    ],
)
def test_norse_surrogate_built_in_equivalents(float64, method, alpha, ours):
    _norse()
    got, want = _derivatives(method, alpha, ours)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("alpha", [0.5, 3.0, 100.0])
def test_norse_surrogate_scales(float64, alpha):
    """Why only one alpha matches: Norse's derivatives are spikeflow's times a factor
    that is 1 only there (tanh: 2/alpha; triangle: alpha; heavi_erfc: 2/alpha)."""
    _norse()
    cases = [
        ("tanh", surrogate.Sigmoid(alpha=2 * alpha), 2 / alpha),
        ("triangle", surrogate.Triangle(gamma=1.0), alpha),
        ("heavi_erfc", surrogate.Erf(alpha=alpha), 2 / alpha),
    ]
    for method, ours, factor in cases:
        got, want = _derivatives(method, alpha, ours)
        torch.testing.assert_close(factor * got, want, rtol=1e-12, atol=1e-15, msg=method)


@pytest.mark.parametrize(
    ("method", "recipe"),
    [("tanh", surrogate.HeaviTanh), ("triangle", surrogate.NorseTriangle),
     ("heavi_erfc", surrogate.HeaviErfc), ("circ", surrogate.HeaviCirc)],
)  # fmt: skip
def test_norse_surrogate_recipes(float64, method, recipe):
    """Any alpha: the built-in of each method, on the grid and in Norse's LIF (the
    default backend: the fused kernels are generated from it)."""
    norse = _norse()
    for alpha in (0.5, 100.0):
        got, want = _derivatives(method, alpha, recipe(alpha))
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    alpha = 3.0
    p = norse.LIFParameters(
        tau_syn_inv=torch.tensor(SYN),
        tau_mem_inv=torch.tensor(MEM),
        method=method,
        alpha=torch.tensor(alpha),
    )
    x = torch.rand(20, 3, 4) * 4 - 0.2
    g = torch.randn(20, 3, 4)
    x_norse, x_sf = _leaves(x)
    want, _ = norse.LIF(p, dt=DT)(x_norse)
    ours = neurons.CubaLIFNode(
        tau_syn=1 / SYN,
        tau_mem=1 / MEM,
        r=(1 / SYN) / DT,
        dt=DT,
        strict_firing=True,
        surrogate_function=recipe(alpha),
    )
    got = ours(x_sf)
    _assert_same_spikes(got, want)
    _close_all(_grads(got, [x_sf], g), _grads(want, [x_norse], g))


# -- SequentialState, Lift, RecurrentSequential ------------------------------------------


def cuba_lif(step_mode: str = "m") -> neurons.CubaLIFNode:
    """Norse's ``LIF(LIFParameters(SYN, MEM), dt=DT)`` (docs/migration.md's LIF row)."""
    return neurons.CubaLIFNode(
        tau_syn=1 / SYN,
        tau_mem=1 / MEM,
        r=(1 / SYN) / DT,
        dt=DT,
        strict_firing=True,
        surrogate_function=surrogate.SuperSpike(alpha=1.0),
        step_mode=step_mode,
    )


def _copy_linears(ours: nn.Module, theirs: nn.Module) -> list[nn.Linear]:
    """Copy Norse's linear layers (lifted or not) into ours, in order; ours returned."""
    mine = [m for m in ours.modules() if isinstance(m, nn.Linear)]
    norse_linears = [m for m in theirs.modules() if isinstance(m, nn.Linear)]
    assert len(mine) == len(norse_linears) > 0
    with torch.no_grad():
        for a, b in zip(mine, norse_linears):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
    return mine


@pytest.mark.parametrize("form", ["sequence", "steps"])
def test_norse_sequential_state(float64, form):
    """``SequentialState(Lift(Linear), LIF, Lift(Linear), LI)`` is an ``nn.Sequential``;
    its ``model(x, state)`` chunk by chunk is ``functional.run(net, x, state)``; the
    per-step ``SequentialState`` of cells is the same net in single-step mode."""
    norse = _norse()
    p = norse.LIFParameters(tau_syn_inv=torch.tensor(SYN), tau_mem_inv=torch.tensor(MEM))
    p_li = norse.LIParameters(tau_syn_inv=torch.tensor(SYN), tau_mem_inv=torch.tensor(MEM))
    if form == "sequence":
        theirs = norse.SequentialState(
            norse.Lift(nn.Linear(4, 6)),
            norse.LIF(p, dt=DT),
            norse.Lift(nn.Linear(6, 3)),
            norse.LI(p_li, dt=DT),
        )
    else:
        theirs = norse.SequentialState(
            nn.Linear(4, 6), norse.LIFCell(p, dt=DT), nn.Linear(6, 3), norse.LICell(p_li, dt=DT)
        )
    ours = nn.Sequential(layers.Linear(4, 6), cuba_lif(), layers.Linear(6, 3), *li_stack())
    weights = [m.weight for m in _copy_linears(ours, theirs)]
    x = torch.rand(12, 2, 4) * 30
    assert 0.02 < ours[1](ours[0](x)).mean() < 0.98  # the hidden LIF layer fires
    if form == "sequence":  # two chunks, the state carried between them
        first, state = theirs(x[:7])
        want = torch.cat([first, theirs(x[7:], state)[0]])
        first, state = functional.run(ours, x[:7])
        got = torch.cat([first, functional.run(ours, x[7:], state)[0]])
        torch.testing.assert_close(ours(x), got, **F64)  # chunks continue one call
    else:  # step by step
        want, state = _cell_loop(theirs, x)
        functional.set_step_mode(ours, "s")
        steps, state = [], None
        for x_t in x:
            y_t, state = functional.run(ours, x_t, state)
            steps.append(y_t)
        got = torch.stack(steps)
    torch.testing.assert_close(got, want, **F64)
    g = torch.randn_like(want)
    norse_weights = [m.weight for m in theirs.modules() if isinstance(m, nn.Linear)]
    _close_all(_grads(got, weights, g), _grads(want, norse_weights, g))


def test_norse_recurrent_sequential(float64):
    """``RecurrentSequential(*cells)`` (``y[t] = cells(x[t] + y[t-1])``) is
    ``ElementWiseRecurrentContainer(nn.Sequential(*single-step modules), torch.add)``."""
    norse = _norse()
    p = norse.LIFParameters(tau_syn_inv=torch.tensor(SYN), tau_mem_inv=torch.tensor(MEM))
    theirs = norse.RecurrentSequential(nn.Linear(3, 3), norse.LIFCell(p, dt=DT))
    ours = layers.ElementWiseRecurrentContainer(
        nn.Sequential(nn.Linear(3, 3), cuba_lif("s")), torch.add
    )
    (weight,) = [m.weight for m in _copy_linears(ours, theirs)]
    x = torch.rand(16, 4, 3) * 20
    want, _ = _cell_loop(theirs, x)
    got = ours(x)
    _assert_same_spikes(got, want)
    g = torch.randn_like(want)
    _close_all(_grads(got, [weight], g), _grads(want, [theirs.module[0].weight], g))


# -- ALIFNode(detach_adaptation=...) ----------------------------------------------------


def _alif_loop(x, theta, *, tau, rho, beta, detach):
    """ALIF by hand (hard reset to 0, Sigmoid surrogate): the trace's spike detached or not."""
    spike = surrogate.Sigmoid()
    v, a = torch.zeros_like(x[0]), torch.zeros_like(x[0])
    out, vs = [], []
    for x_t in x:
        h = v + (x_t - v) / tau
        s = spike(h - (theta + beta * a))
        v = h * (1 - s)
        a = rho * a + (s.detach() if detach else s)
        out.append(s)
        vs.append(v)
    return torch.stack(out), torch.stack(vs)


@pytest.mark.parametrize("backend", fused_backends("torch"))
@pytest.mark.parametrize("detach", [False, True])
def test_alif_detach_adaptation(backend, detach):
    device = kernel_device(backend)
    node = neurons.ALIFNode(
        tau=2.0,
        tau_adapt=3.0,
        beta=0.4,
        detach_adaptation=detach,
        v_threshold=torch.tensor(0.9, dtype=torch.float64),
        learnable_threshold=True,
        backend=backend,
        store_v_seq=True,
    ).to(device)
    x = torch.rand(10, 2, 3, dtype=torch.float64, device=device) * 2.2 - 0.2
    g = torch.randn(10, 2, 3, dtype=torch.float64, device=device)
    x_ref, x_sf = _leaves(x)
    theta = torch.tensor(0.9, dtype=torch.float64, device=device, requires_grad=True)
    rho = math.exp(-1 / 3.0)
    want, v_want = _alif_loop(x_ref, theta, tau=2.0, rho=rho, beta=0.4, detach=detach)
    got = node(x_sf)
    _assert_same_spikes(got, want, low=0.05)
    torch.testing.assert_close(node.v_seq, v_want, **F64)
    got_grads = _grads(got, [x_sf, node.v_threshold], g)
    _close_all(got_grads, _grads(want, [x_ref, theta], g))
    other, _ = _alif_loop(x_ref, theta, tau=2.0, rho=rho, beta=0.4, detach=not detach)
    assert not torch.allclose(got_grads[0], _grads(other, [x_ref], g)[0])  # the flag matters


def test_alif_detach_adaptation_is_a_flag():
    assert "detach_adaptation=True" in repr(neurons.ALIFNode(detach_adaptation=True))
    assert "detach_adaptation" not in repr(neurons.ALIFNode())
    with pytest.raises(ConfigurationError, match="detach_adaptation must be True or False"):
        neurons.ALIFNode(detach_adaptation="yes")
