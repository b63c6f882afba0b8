"""layers.LIFMC, LIFMCRecurrent, LIFMCRefrac, LIFMCRefracRecurrent against Norse 1.1's
``lif_mc`` / ``lif_mc_refrac`` steps and cells: the same spikes, states and float64
gradients (input, weights, coupling). Norse is run by its own per-step loop, spikeflow
by one multi-step call. The Norse tests skip without Norse; the checks of bad input and
of streaming do not need it."""

from __future__ import annotations

import pytest
import torch

from spikeflow import functional, layers
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError

F64 = dict(rtol=1e-10, atol=1e-12)
DT = 1e-3
SYN, MEM = 200.0, 100.0
V_TH = 0.3


def _norse():
    return pytest.importorskip("norse.torch", reason="Norse is not installed")


def _lif_p(norse):
    return norse.LIFParameters(
        tau_syn_inv=torch.tensor(SYN), tau_mem_inv=torch.tensor(MEM), v_th=torch.tensor(V_TH)
    )


def _ours(cls, *args, **kw):
    return cls(*args, tau_syn=1 / SYN, tau_mem=1 / MEM, v_threshold=V_TH, dt=DT, **kw)


def _close_grads(got, want, inputs_got, inputs_want, g):
    a = torch.autograd.grad((got * g).sum(), inputs_got)
    b = torch.autograd.grad((want * g).sum(), inputs_want)
    for x, y in zip(a, b):
        assert y.abs().sum() > 0, "a zero gradient compares nothing"
        torch.testing.assert_close(x, y, **F64)


def _check_spikes(got, want):
    assert torch.equal(got, want), "spikes differ"
    assert 0.02 < want.mean().item() < 0.98, "too few or too many spikes to compare"


@pytest.mark.parametrize("refrac", [False, True])
def test_feed_forward_equals_norse(float64, refrac):
    norse = _norse()
    from norse.torch.functional import lif_mc, lif_mc_refrac
    from norse.torch.functional.lif import LIFFeedForwardState
    from norse.torch.functional.lif_refrac import LIFRefracFeedForwardState, LIFRefracParameters

    torch.manual_seed(0)
    n, steps = 6, 30
    g = torch.randn(n, n) / n**0.5 * (0.05 if refrac else 20.0)
    ours = _ours(layers.LIFMCRefrac if refrac else layers.LIFMC, n, g, **(
        {"rho_reset": 3} if refrac else {}
    ))  # fmt: skip
    x = torch.rand(steps, 2, n) * 1.5
    x_n, x_s = x.clone().requires_grad_(), x.clone().requires_grad_()
    g_n = g.clone().requires_grad_()
    p = _lif_p(norse)
    v0 = torch.zeros(2, n)
    out, s = [], None
    if refrac:
        s = LIFRefracFeedForwardState(LIFFeedForwardState(v0, v0), v0)
        rp = LIFRefracParameters(p, torch.tensor(3.0))
    else:
        s = LIFFeedForwardState(v0, v0)
    for x_t in x_n:
        if refrac:
            z, s = lif_mc_refrac.lif_mc_refrac_feed_forward_step(x_t, s, g_n, rp, DT)
        else:
            z, s = lif_mc.lif_mc_feed_forward_step(x_t, s, g_n, p, DT)
        out.append(z)
    want = torch.stack(out)
    got, states = functional.run(ours, x_s)
    state = states[""]
    _check_spikes(got, want)
    lif = s.lif if refrac else s
    torch.testing.assert_close(state["v"], lif.v, **F64)
    torch.testing.assert_close(state["i"], lif.i, **F64)
    if refrac:
        torch.testing.assert_close(state["rho"], s.rho, **F64)
    grad = torch.randn_like(want)
    _close_grads(got, want, [x_s, ours.g_coupling], [x_n, g_n], grad)


@pytest.mark.parametrize("refrac", [False, True])
def test_recurrent_cell_equals_norse(float64, refrac):
    norse = _norse()
    torch.manual_seed(1)
    n_in, n = 4, 5
    g = torch.randn(n, n) / n**0.5 * (0.05 if refrac else 20.0)
    g_n = torch.nn.Parameter(g.clone())
    if refrac:
        p = norse.LIFRefracParameters(_lif_p(norse), torch.tensor(2.0))
        cell = norse.LIFMCRefracRecurrentCell(n_in, n, p, g_coupling=g_n, dt=DT)
        ours = _ours(layers.LIFMCRefracRecurrent, n_in, n, g, rho_reset=2)
    else:
        cell = norse.LIFMCRecurrentCell(n_in, n, _lif_p(norse), g_coupling=g_n, dt=DT)
        ours = _ours(layers.LIFMCRecurrent, n_in, n, g)
    with torch.no_grad():
        cell.input_weights.mul_(6.0)
        cell.recurrent_weights.mul_(3.0)
        ours.input_weight.copy_(cell.input_weights)
        ours.recurrent_weight.copy_(cell.recurrent_weights)
    x = (torch.rand(40, 3, n_in) < 0.5).double()
    x_n, x_s = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, s = [], None
    for x_t in x_n:
        z, s = cell(x_t, s)
        out.append(z)
    want = torch.stack(out)
    got, states = functional.run(ours, x_s)
    state = states[""]
    _check_spikes(got, want)
    lif = s.lif if refrac else s
    torch.testing.assert_close(state["v"], lif.v, **F64)
    torch.testing.assert_close(state["i"], lif.i, **F64)
    grad = torch.randn_like(want)
    mine = [x_s, ours.input_weight, ours.recurrent_weight, ours.g_coupling]
    theirs = [x_n, cell.input_weights, cell.recurrent_weights, g_n]
    _close_grads(got, want, mine, theirs, grad)


def test_coupling_changes_the_output():
    """The coupling is not a no-op: with G = 0 the layer is an uncoupled CUBA LIF."""
    torch.manual_seed(2)
    x = torch.rand(30, 2, 5) * 1.5
    g = torch.randn(5, 5) * 10.0
    coupled = layers.LIFMC(5, g)(x)
    free = layers.LIFMC(5, torch.zeros(5, 5))(x)
    assert not torch.equal(coupled, free)


def test_streaming_continues_one_call():
    torch.manual_seed(3)
    layer = layers.LIFMCRefracRecurrent(3, 4, rho_reset=2)
    with torch.no_grad():
        layer.input_weight.mul_(40.0)
    x = (torch.rand(20, 2, 3) < 0.5).float()
    whole = layer(x)
    with functional.streaming(layer):
        parts = torch.cat([layer(x[:7]), layer(x[7:])])
        assert layer.rho is not None and layer.z is not None
        with pytest.raises(StateError):
            layer(x[:, :1])  # a different batch while carrying state
    torch.testing.assert_close(parts, whole)
    assert whole.sum() > 0


@pytest.mark.parametrize(
    ("make", "carried"),
    [
        (lambda: layers.LIFMC(3), ()),
        (lambda: layers.LIFMCRecurrent(3, 3), ("z",)),
        (lambda: layers.LIFMCRefrac(3), ("rho",)),
        (lambda: layers.LIFMCRefracRecurrent(3, 3), ("z", "rho")),
    ],
)
def test_carried_state_properties(make, carried):
    """Each layer has the properties of its state (v, i, and z / rho where it keeps
    them), None until a streamed call, then the carried tensors."""
    torch.manual_seed(0)
    layer = make()
    assert {n for n in ("z", "rho") if hasattr(layer, n)} == set(carried)
    names = ("v", "i", *carried)
    assert all(getattr(layer, n) is None for n in names)
    with functional.streaming(layer):
        out = layer(torch.rand(6, 2, 3) * 4.0)
        for n in names:
            assert getattr(layer, n) is layer.state[n]
        if "z" in carried:
            assert torch.equal(layer.z, out[-1])


def test_bad_input_is_named():
    with pytest.raises(ShapeError, match=r"g_coupling must have shape \(4, 4\)"):
        layers.LIFMC(4, torch.zeros(3, 3))
    with pytest.raises(DTypeError, match="g_coupling"):
        layers.LIFMC(4, torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ConfigurationError, match="tau_syn must be >= dt"):
        layers.LIFMC(4, tau_syn=1e-4)
    with pytest.raises(ConfigurationError, match="rho_reset"):
        layers.LIFMCRefrac(4, rho_reset=-1)
    with pytest.raises(ShapeError, match=r"expects \[T, B, 3\]"):
        layers.LIFMCRecurrent(3, 4)(torch.zeros(5, 2, 4))
    with pytest.raises(DTypeError):
        layers.LIFMC(4)(torch.zeros(5, 2, 4, dtype=torch.long))


@pytest.mark.parametrize(
    "layer",
    [
        layers.LIFMC(4),
        layers.LIFMCRecurrent(4, 3),
        layers.LIFMCRefrac(4),
        layers.LIFMCRefracRecurrent(4, 3),
    ],
    ids=lambda m: type(m).__name__,
)
def test_an_input_in_another_dtype_than_the_weights_is_named(layer):
    """A float64 input to float32 weights was a bare 'expected m1 and m2 to have the same
    dtype' RuntimeError from F.linear; under autocast a bfloat16 input still runs."""
    x = (torch.rand(6, 2, 4) < 0.5).double()
    with pytest.raises(
        DTypeError, match=rf"{type(layer).__name__}: .*weights' dtype torch\.float32"
    ):
        layer(x)
    assert layer.double()(x).dtype == torch.float64
    layer.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x.bfloat16()).shape == (6, 2, layer.hidden_size)
