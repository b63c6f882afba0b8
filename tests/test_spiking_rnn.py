"""Spiking LSTM / GRU / vanilla RNN (spikeflow.layers.spiking_rnn).

* against SpikingJelly 2.0's ``activation_based.rnn`` (its state_dict loaded into
  ours): outputs and final states identical in float32 (spikes, and the LSTM's
  non-binary h, c when the initial states are random), gradients of the parameters,
  the input and the initial states equal to float32 rounding (the input projection of
  all steps is one matrix product here, one per step there, and the surrogates'
  backward formulas round differently); in float64 everything to 1e-10;
* a hand-written float64 loop of the equations (straight-through clamp included) for
  forward values and autograd gradients, independent of SpikingJelly;
* ``gradcheck`` in float64 with smooth surrogates (``spiking=False``), where the
  Heaviside forward is replaced by the surrogate's primitive so that finite
  differences apply (with the LSTM's cell state kept below the clamp);
* dropout (the invariant mask is the same at every step, the plain one is not; both
  draw what SpikingJelly draws from the same seed), the errors, the state layout.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import Tensor

from spikeflow import functional, layers, surrogate
from spikeflow.base import MemoryModule
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError

KINDS = ("LSTM", "GRU", "VanillaRNN")
F32_GRAD = dict(rtol=1e-5, atol=1e-5)  # gradients: float32 rounding
F64 = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def sj():
    """SpikingJelly's rnn and surrogate modules (the tests using it skip without it)."""
    rnn = pytest.importorskip(
        "spikingjelly.activation_based.rnn", reason="SpikingJelly is not installed"
    )
    from spikingjelly.activation_based import surrogate as sj_surrogate

    return rnn, sj_surrogate


def _surrogates(kind: str, second: bool, sj_surrogate=None) -> tuple[dict, dict]:
    """Constructor keywords (SpikingJelly's, ours): defaults, or Erf/ATan gate pair."""
    if not second:
        return {}, {}
    if kind == "VanillaRNN":
        theirs = dict(surrogate_function=sj_surrogate.ATan()) if sj_surrogate else {}
        return theirs, dict(surrogate_function=surrogate.ATan())
    theirs = {}
    if sj_surrogate:
        theirs = dict(
            surrogate_function1=sj_surrogate.Erf(), surrogate_function2=sj_surrogate.ATan()
        )
    return theirs, dict(surrogate_function1=surrogate.Erf(), surrogate_function2=surrogate.ATan())


def _initial_states(kind: str, rows: int, batch: int, hidden: int, dtype) -> tuple[Tensor, ...]:
    """Random initial states: any reals for the LSTM (c above 1 and below 0 too), spikes
    for the others."""
    if kind == "LSTM":
        return tuple(torch.randn(rows, batch, hidden, dtype=dtype) * 1.5 for _ in range(2))
    return ((torch.rand(rows, batch, hidden) < 0.5).to(dtype),)


def _run(module, x: Tensor, states, kind: str):
    y, final = module(x, states if kind == "LSTM" or states is None else states[0])
    return y, final if isinstance(final, tuple) else (final,)


def _grads(module, x, states, kind, weights):
    """The output, final states and gradients of a fixed random loss w.r.t. every
    parameter, the input and the initial states."""
    x = x.clone().requires_grad_()
    states = None if states is None else tuple(s.clone().requires_grad_() for s in states)
    y, final = _run(module, x, states, kind)
    loss = (y * weights[0]).sum() + sum((f * w).sum() for f, w in zip(final, weights[1:]))
    wrt = [*module.parameters(), x, *(states or ())]
    return y, final, torch.autograd.grad(loss, wrt)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("second", [False, True], ids=["sg1", "sg1+sg2"])
@pytest.mark.parametrize("given", [False, True], ids=["zeros", "states"])
def test_equal_to_spikingjelly(sj, kind, num_layers, bidirectional, second, given):
    rnn, sj_surrogate = sj
    theirs_kw, ours_kw = _surrogates(kind, second, sj_surrogate)
    T, B, I, H = 8, 4, 5, 7
    theirs = getattr(rnn, f"Spiking{kind}")(
        I, H, num_layers, bidirectional=bidirectional, **theirs_kw
    )
    ours = getattr(layers, f"Spiking{kind}")(
        I, H, num_layers, bidirectional=bidirectional, **ours_kw
    )
    ours.load_state_dict(theirs.state_dict())
    rows = num_layers * (2 if bidirectional else 1)
    x = torch.randn(T, B, I) * 2
    states = _initial_states(kind, rows, B, H, torch.float32) if given else None
    y_sj, _ = _run(theirs, x, states, kind)
    weights = [torch.randn_like(y_sj)] + [torch.randn(rows, B, H) for _ in range(2)]

    y_sj, final_sj, g_sj = _grads(theirs, x, states, kind, weights)
    y, final, g = _grads(ours, x, states, kind, weights)
    assert y.shape == (T, B, (2 if bidirectional else 1) * H)
    assert y.any() and not y.all()  # spiking, neither silent nor saturated
    assert torch.equal(y, y_sj)
    assert len(final) == len(final_sj) == (2 if kind == "LSTM" else 1)
    for a, b in zip(final, final_sj):
        assert torch.equal(a, b)
    for a, b in zip(g, g_sj):
        torch.testing.assert_close(a, b, **F32_GRAD)

    # float64: the same to 1e-10 (rounding only)
    theirs.double()
    ours.double()
    x64 = x.double()
    states64 = None if states is None else tuple(s.double() for s in states)
    weights64 = [w.double() for w in weights]
    y_sj, final_sj, g_sj = _grads(theirs, x64, states64, kind, weights64)
    y, final, g = _grads(ours, x64, states64, kind, weights64)
    torch.testing.assert_close(y, y_sj, **F64)
    for a, b in zip([*final, *g], [*final_sj, *g_sj]):
        torch.testing.assert_close(a, b, **F64)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("second", [False, True], ids=["sg1", "sg1+sg2"])
def test_cells_equal_to_spikingjelly(sj, kind, second):
    rnn, sj_surrogate = sj
    theirs_kw, ours_kw = _surrogates(kind, second, sj_surrogate)
    theirs = getattr(rnn, f"Spiking{kind}Cell")(4, 6, **theirs_kw)
    ours = getattr(layers, f"Spiking{kind}Cell")(4, 6, **ours_kw)
    ours.load_state_dict(theirs.state_dict())
    xs = torch.randn(5, 3, 4) * 2
    x_sj, x_sf = xs.clone().requires_grad_(), xs.clone().requires_grad_()
    s_sj = s_sf = None
    out_sj, out_sf = [], []
    for t in range(5):  # from zero states, then the returned ones
        s_sj, s_sf = theirs(x_sj[t], s_sj), ours(x_sf[t], s_sf)
        out_sj.append(s_sj[0] if kind == "LSTM" else s_sj)
        out_sf.append(s_sf[0] if kind == "LSTM" else s_sf)
    y_sj, y_sf = torch.stack(out_sj), torch.stack(out_sf)
    assert torch.equal(y_sf, y_sj) and 0 < y_sf.sum() < y_sf.numel()
    g = torch.randn_like(y_sj)
    g_sj = torch.autograd.grad((y_sj * g).sum(), [x_sj, *theirs.parameters()])
    g_sf = torch.autograd.grad((y_sf * g).sum(), [x_sf, *ours.parameters()])
    for a, b in zip(g_sf, g_sj):
        torch.testing.assert_close(a, b, **F32_GRAD)


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_and_initialisation_are_spikingjellys(sj, kind):
    rnn, _ = sj
    for bias in (True, False):
        torch.manual_seed(3)
        theirs = getattr(rnn, f"Spiking{kind}")(3, 4, 2, bias=bias, bidirectional=True)
        torch.manual_seed(3)
        ours = getattr(layers, f"Spiking{kind}")(3, 4, 2, bias=bias, bidirectional=True)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        # same seed, same draws: the same initial parameters
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
            assert torch.equal(a, b)
        ours.load_state_dict(
            getattr(rnn, f"Spiking{kind}")(3, 4, 2, bias, 0, False, True).state_dict()
        )
        theirs.load_state_dict(ours.state_dict())  # and back (strict both ways)
    assert "cells_reverse.1.linear_hh.weight" in ours.state_dict()
    assert "cells.0.linear_ih.bias" not in ours.state_dict()  # bias=False


@pytest.mark.parametrize("kind", KINDS)
def test_initialisation_range_and_cell_accessors(kind):
    gates = {"LSTM": 4, "GRU": 3, "VanillaRNN": 1}[kind]
    net = getattr(layers, f"Spiking{kind}")(3, 25, 1)
    w = net.cells[0].linear_ih.weight
    assert w.shape == (gates * 25, 3)
    bound = 25**-0.5
    for p in net.parameters():
        assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound
    cell = net.cells[0]
    assert cell.weight_ih() is w and cell.bias_hh() is cell.linear_hh.bias
    assert type(net).states_num() == (2 if kind == "LSTM" else 1)
    assert type(net).base_cell() is getattr(layers, f"Spiking{kind}Cell")


@pytest.mark.parametrize("name", [f"Spiking{k}{s}" for k in KINDS for s in ("", "Cell")])
def test_signatures_are_spikingjellys(sj, name):
    """Constructor and forward: the same argument names in the same order, the same
    defaults (the surrogate's default is None for a fresh Erf() here, an Erf() object
    there)."""
    rnn, sj_surrogate = sj
    for method in ("__init__", "forward"):
        ours = inspect.signature(getattr(getattr(layers, name), method)).parameters
        theirs = inspect.signature(getattr(getattr(rnn, name), method)).parameters
        theirs = {k: v for k, v in theirs.items() if v.kind is not v.VAR_POSITIONAL}
        assert list(ours) == list(theirs)
        for key, param in theirs.items():
            if isinstance(param.default, sj_surrogate.Erf):
                assert ours[key].default is None and param.default.alpha == 2.0
            else:
                assert ours[key].default == param.default, key


def _layer1_input(net, x: Tensor) -> Tensor:
    """What layer 1 reads: layer 0's output after the dropout between them."""
    seen = {}
    hook = net.cells[1].linear_ih.register_forward_hook(lambda m, a, out: seen.update(x=a[0]))
    net(x)
    hook.remove()
    return seen["x"]


# -- an independent reference: the equations, written out in float64 ----------------------


def _reference_step(kind: str, cell, x: Tensor, state: tuple[Tensor, ...], sg1, sg2):
    """One step of the documented equations from the cell's weights, gate by gate."""
    H = cell.hidden_size
    wi, wh = cell.linear_ih.weight, cell.linear_hh.weight
    bi, bh = cell.linear_ih.bias, cell.linear_hh.bias

    def pre(k: int, h: Tensor) -> tuple[Tensor, Tensor]:
        rows = slice(k * H, (k + 1) * H)
        return x @ wi[rows].T + bi[rows], h @ wh[rows].T + bh[rows]

    if kind == "LSTM":
        h, c = state
        i, f, g, o = (pre(k, h) for k in range(4))
        i, f, o = (sg1(a + b) for a, b in (i, f, o))
        g = sg2(g[0] + g[1])
        c_raw = f * c + i * g
        c = c_raw + (c_raw.clamp(max=1.0) - c_raw).detach()  # straight-through cap
        return o * c, c
    if kind == "GRU":
        (h,) = state
        (ri, rh), (zi, zh), (ni, nh) = (pre(k, h) for k in range(3))
        r, z = sg1(ri + rh), sg1(zi + zh)
        n = sg2(ni + r * nh)
        return ((1 - z) * n + z * h,)
    (h,) = state
    a, b = pre(0, h)
    return (sg1(a + b),)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "spiking, second",
    [(True, False), (True, True), (False, True)],
    ids=["spiking-sg1", "spiking-sg1+sg2", "smooth-sg1+sg2"],
)
def test_reference_loop_float64(kind, spiking, second):
    """Forward values and autograd gradients of a 2-layer bidirectional layer equal the
    equations run step by step (reverse direction on the reversed sequence, outputs
    concatenated forward-then-reverse, states forward layers first)."""
    sg1 = surrogate.Erf(spiking=spiking)
    sg2 = surrogate.Sigmoid(spiking=spiking) if second else None
    if kind == "VanillaRNN":
        kw = dict(surrogate_function=sg2 or sg1)
        sg1 = sg2 = sg2 or sg1
    else:
        kw = dict(surrogate_function1=sg1, surrogate_function2=sg2)
        sg2 = sg2 or sg1
    net = getattr(layers, f"Spiking{kind}")(3, 4, 2, bidirectional=True, **kw).double()
    T, B = 5, 2
    x = (torch.randn(T, B, 3, dtype=torch.float64) * 2).requires_grad_()
    states = tuple(s.requires_grad_() for s in _initial_states(kind, 4, B, 4, torch.float64))
    if kind == "LSTM":  # some cells start above the cap
        assert (states[1] > 1).any()
    y, final = _run(net, x, states, kind)

    layer_in, finals = x, {}
    for layer in range(2):
        outs = []
        for direction, cells in enumerate((net.cells, net.cells_reverse)):
            row = layer + 2 * direction
            state = tuple(s[row] for s in states)
            seq = []
            for t in range(T) if direction == 0 else reversed(range(T)):
                state = _reference_step(kind, cells[layer], layer_in[t], state, sg1, sg2)
                seq.append(state[0])
            outs.append(torch.stack(seq if direction == 0 else seq[::-1]))
            finals[row] = state
        layer_in = torch.cat(outs, dim=-1)
    want_final = tuple(torch.stack([finals[r][k] for r in range(4)]) for k in range(len(states)))
    torch.testing.assert_close(y, layer_in, **F64)
    for a, b in zip(final, want_final):
        torch.testing.assert_close(a, b, **F64)
    if spiking and kind != "LSTM":  # from spike states, spikes
        assert set(torch.unique(y).tolist()) == {0.0, 1.0}
    g = torch.randn_like(y)
    inputs = [x, *states, *net.parameters()]
    got = torch.autograd.grad((y * g).sum() + sum(f.sum() for f in final), inputs)
    want = torch.autograd.grad((layer_in * g).sum() + sum(f.sum() for f in want_final), inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **F64)


def test_lstm_clamp_is_straight_through():
    """The cell state is capped at 1 in the forward, and the gradient passes the cap as
    if it were not there (a recorded clamp would give zero gradient through c)."""
    cell = layers.SpikingLSTMCell(2, 3).double()
    with torch.no_grad():
        cell.linear_ih.bias.fill_(5.0)  # every gate fires: c = c + 1 -> capped
    x = torch.randn(4, 2, dtype=torch.float64)
    c0 = torch.full((4, 3), 0.5, dtype=torch.float64, requires_grad=True)
    h, c = cell(x, (torch.zeros_like(c0), c0))
    assert torch.equal(c, torch.ones_like(c)) and torch.equal(h, c)
    (grad,) = torch.autograd.grad(c.sum(), c0)
    assert torch.equal(grad, torch.ones_like(grad))  # dc/dc0 = f = 1 through the cap
    # from zero states, spikes in and out: c and h stay in {0, 1}
    net = layers.SpikingLSTM(3, 8, 1)
    y, (h, c) = net(torch.randn(20, 4, 3) * 3)
    assert set(torch.unique(c).tolist()) <= {0.0, 1.0}
    assert set(torch.unique(y).tolist()) == {0.0, 1.0}


def _max_cell_state(net, x: Tensor, states: tuple[Tensor, Tensor]) -> float:
    """The largest LSTM cell state (before the cap) over all steps, layers, directions."""
    layer_inputs = [x, _layer1_input(net, x)] if net.num_layers == 2 else [x]
    largest = -float("inf")
    for layer, seq in enumerate(layer_inputs):
        for direction, cells in enumerate((net.cells, net.cells_reverse)):
            row = layer + net.num_layers * direction
            cell, (h, c) = cells[layer], (states[0][row], states[1][row])
            for x_t in seq if direction == 0 else seq.flip(0):
                pre = cell.linear_ih(x_t) + cell.linear_hh(h)
                i, f, g, o = cell.surrogate_function1(pre).chunk(4, dim=1)
                c = f * c + i * g
                largest = max(largest, c.max().item())
                h = o * c
    return largest


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_smooth_surrogates(kind):
    """float64 gradcheck with ``spiking=False`` (the forward is the surrogate's smooth
    primitive, so finite differences apply), for the input, the initial states and all
    parameters of a 2-layer bidirectional layer. The LSTM's weights are halved and its
    input gates biased down so that its cell state stays below the cap (checked: the
    cap's gradient is straight-through, not its derivative, see the test above)."""
    sg = surrogate.Erf(spiking=False)
    kw = dict(surrogate_function=sg) if kind == "VanillaRNN" else dict(surrogate_function1=sg)
    net = getattr(layers, f"Spiking{kind}")(2, 3, 2, bidirectional=True, **kw).double()
    x = (torch.randn(3, 2, 2, dtype=torch.float64) * 0.5).requires_grad_()
    states = tuple(
        (torch.rand(4, 2, 3, dtype=torch.float64) * 0.3).requires_grad_()
        for _ in range(2 if kind == "LSTM" else 1)
    )
    if kind == "LSTM":
        with torch.no_grad():
            for cell in [*net.cells, *net.cells_reverse]:
                for p in cell.parameters():
                    p.mul_(0.5)
                cell.linear_ih.bias[:3] -= 1.0  # the input gate i
            assert _max_cell_state(net, x, states) < 0.9  # the cap is not active
    names = [n for n, _ in net.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in net.parameters()]

    def f(x, *args):
        sts, ps = args[: len(states)], args[len(states) :]
        call_states = sts if kind == "LSTM" else sts[0]
        y, final = torch.func.functional_call(net, dict(zip(names, ps)), (x, call_states))
        return (y, *(final if isinstance(final, tuple) else (final,)))

    assert torch.autograd.gradcheck(f, (x, *states, *params), fast_mode=True)


# -- layout, chunks, cells inside the layer ------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_layer_is_its_cells_and_chunks_continue(kind):
    """A 1-layer layer equals its cell run step by step (the batched input projection
    changes nothing), and two chunks with the states passed on equal one call."""
    net = getattr(layers, f"Spiking{kind}")(4, 5, 1)
    x = torch.randn(8, 3, 4) * 2
    y, final = _run(net, x, None, kind)
    state, outs = None, []
    for t in range(8):
        state = net.cells[0](x[t], state)
        outs.append(state[0] if kind == "LSTM" else state)
    assert torch.equal(y, torch.stack(outs))
    y1, mid = net(x[:3])
    y2, end = net(x[3:], mid)
    assert torch.equal(torch.cat([y1, y2]), y)
    for a, b in zip(end if kind == "LSTM" else (end,), final):
        assert torch.equal(a, b)


def test_bidirectional_layout():
    """Each step's output is [forward, reverse]; the reverse cell reads the sequence
    backwards; the states are [layer 0, layer 1, layer 0 reverse, layer 1 reverse]."""
    net = layers.SpikingVanillaRNN(2, 3, 2, bidirectional=True)
    x = torch.randn(6, 4, 2) * 2
    y, h = net(x)

    def alone(cell, seq):  # a one-layer, one-direction layer with this cell's weights
        one = layers.SpikingVanillaRNN(cell.input_size, 3, 1)
        one.cells[0].load_state_dict(cell.state_dict())
        return one(seq)

    f0, hf0 = alone(net.cells[0], x)
    r0, hr0 = alone(net.cells_reverse[0], x.flip(0))
    assert not torch.equal(r0.flip(0), alone(net.cells_reverse[0], x)[0])
    mid = torch.cat([f0, r0.flip(0)], dim=-1)
    assert torch.equal(_layer1_input(net, x), mid)
    f1, hf1 = alone(net.cells[1], mid)
    r1, hr1 = alone(net.cells_reverse[1], mid.flip(0))
    assert torch.equal(y, torch.cat([f1, r1.flip(0)], dim=-1))
    assert torch.equal(h, torch.cat([hf0, hf1, hr0, hr1]))


# -- dropout -------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_dropout_between_layers(bidirectional):
    net = layers.SpikingVanillaRNN(
        2, 50, 3, dropout_p=0.4, invariant_dropout_mask=True, bidirectional=bidirectional
    )
    for cells in (net.cells, getattr(net, "cells_reverse", net.cells)):
        with torch.no_grad():  # layer 0 fires at every step: its output is all ones
            cells[0].linear_ih.weight.zero_()
            cells[0].linear_ih.bias.fill_(10.0)
    x = torch.randn(7, 8, 2)
    seen = _layer1_input(net, x)
    assert seen.shape == (7, 8, (2 if bidirectional else 1) * 50)
    assert torch.equal(seen, seen[:1].expand_as(seen))  # the same mask at every step
    kept = torch.tensor(1 / 0.6).item()  # 1/(1 - p) in float32
    assert set(torch.unique(seen).tolist()) == {0.0, kept}
    assert 0.3 < (seen[0] == 0).float().mean() < 0.5
    assert not torch.equal(seen[0, 0], seen[0, 1])  # each sample its own mask
    assert not torch.equal(seen, _layer1_input(net, x))  # a new mask at every call

    net.invariant_dropout_mask = False  # a new mask at every step
    seen = _layer1_input(net, x)
    assert set(torch.unique(seen).tolist()) == {0.0, kept}
    assert not torch.equal(seen[0], seen[1])

    net.eval()  # no dropout in eval mode, nor after the last layer
    assert torch.equal(_layer1_input(net, x), torch.ones_like(seen))
    y, _ = net(x)
    net.dropout_p = 0.0
    assert torch.equal(net(x)[0], y)


@pytest.mark.parametrize("invariant", [False, True], ids=["plain", "invariant"])
def test_dropout_draws_spikingjellys_masks(sj, invariant):
    rnn, _ = sj
    theirs = rnn.SpikingGRU(
        3, 6, 3, dropout_p=0.3, invariant_dropout_mask=invariant, bidirectional=True
    )
    ours = layers.SpikingGRU(
        3, 6, 3, dropout_p=0.3, invariant_dropout_mask=invariant, bidirectional=True
    )
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 4, 3) * 2
    torch.manual_seed(11)
    y_sj, h_sj = theirs(x)
    torch.manual_seed(11)
    y, h = ours(x)
    assert torch.equal(y, y_sj) and torch.equal(h, h_sj)


# -- the module's contract -----------------------------------------------------------------


def test_not_a_memory_module_and_not_streamable():
    net = layers.SpikingLSTM(3, 4, 1)
    assert not isinstance(net, MemoryModule)
    x = torch.randn(5, 2, 3)
    y, _ = net(x)
    functional.reset_net(net)  # nothing to reset: the same output again
    assert torch.equal(net(x)[0], y)
    with pytest.raises(StateError, match="whole sequences"):
        with functional.streaming(torch.nn.Sequential(net)):
            pass


def test_extra_repr():
    net = layers.SpikingGRU(3, 4, 2, dropout_p=0.25, bidirectional=True)
    text = repr(net)
    for part in (
        "input_size=3",
        "hidden_size=4",
        "num_layers=2",
        "dropout_p=0.25",
        "invariant_dropout_mask=False",
        "bidirectional=True",
        "Erf(alpha=2)",
    ):
        assert part in text
    assert "input_size=4, hidden_size=5, bias=False" in repr(layers.SpikingLSTMCell(4, 5, False))


@pytest.mark.parametrize("kind", KINDS)
def test_shape_and_dtype_errors(kind):
    net = getattr(layers, f"Spiking{kind}")(3, 4, 2, bidirectional=True)
    with pytest.raises(ShapeError, match=r"\[T, B, input_size\] = \[T, B, 3\].*\(2, 3\).*time"):
        net(torch.randn(2, 3))
    with pytest.raises(ShapeError, match=r"\[T, B, 3\], got shape \(5, 2, 4\)"):
        net(torch.randn(5, 2, 4))
    with pytest.raises(ShapeError, match="empty"):
        net(torch.randn(0, 2, 3))
    with pytest.raises(DTypeError, match="floating-point"):
        net(torch.ones(5, 2, 3, dtype=torch.long))
    x = torch.randn(5, 2, 3)
    n = 2 if kind == "LSTM" else 1
    wrong = (3, 2, 4)  # 2 layers x 2 directions = 4 rows expected
    bad = tuple(torch.zeros(wrong) for _ in range(n))
    with pytest.raises(ShapeError, match=r"\[4, 2, 4\], got \(3, 2, 4\)"):
        net(x, bad if kind == "LSTM" else bad[0])
    bad = tuple(torch.zeros(4, 3, 4) for _ in range(n))  # batch 3, input has 2
    with pytest.raises(ShapeError, match=r"\[4, 2, 4\], got \(4, 3, 4\)"):
        net(x, bad if kind == "LSTM" else bad[0])
    good = tuple(torch.zeros(4, 2, 4, dtype=torch.float64) for _ in range(n))
    with pytest.raises(DTypeError, match="float64"):
        net(x, good if kind == "LSTM" else good[0])
    if kind == "LSTM":
        with pytest.raises(ConfigurationError, match=r"\(h, c\)"):
            net(x, torch.zeros(4, 2, 4))
    cell = getattr(layers, f"Spiking{kind}Cell")(3, 4)
    with pytest.raises(ShapeError, match=r"\[B, input_size\] = \[B, 3\].*\(5, 2, 3\)"):
        cell(x)
    with pytest.raises(ShapeError, match=r"\[B, 3\], got shape \(2, 5\)"):
        cell(torch.randn(2, 5))
    state = torch.zeros(3, 4)  # batch 3, input has 2
    with pytest.raises(ShapeError, match=r"\[B, hidden_size\] = \[2, 4\], got \(3, 4\)"):
        cell(x[0], (state, state) if kind == "LSTM" else state)


@pytest.mark.parametrize("kind", KINDS)
def test_configuration_errors(kind):
    cls = getattr(layers, f"Spiking{kind}")
    for value in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigurationError, match="num_layers must be an integer >= 1"):
            cls(3, 4, value)
    for value in (-0.1, 1.0, float("nan"), "0.5", True):
        with pytest.raises(ConfigurationError, match=r"dropout_p must be .*\[0, 1\)"):
            cls(3, 4, 2, dropout_p=value)
    with pytest.raises(ConfigurationError, match="hidden_size"):
        cls(3, 0, 1)
    with pytest.raises(ConfigurationError, match="input_size"):
        getattr(layers, f"Spiking{kind}Cell")(0, 3)
    with pytest.raises(ConfigurationError, match="bidirectional must be True or False"):
        cls(3, 4, 1, bidirectional=1)
    sg_name = "surrogate_function" if kind == "VanillaRNN" else "surrogate_function1"
    with pytest.raises(ConfigurationError, match=f"{sg_name} must be a spikeflow"):
        cls(3, 4, 1, **{sg_name: torch.nn.Sigmoid()})
    if kind != "VanillaRNN":
        with pytest.raises(ConfigurationError, match="both spike or both"):
            cls(3, 4, 1, surrogate_function2=surrogate.ATan(spiking=False))
        with pytest.raises(ConfigurationError, match="surrogate_function2 must be a spikeflow"):
            cls(3, 4, 1, surrogate_function2=torch.nn.Sigmoid())
