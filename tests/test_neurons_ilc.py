"""The neurons with intra-layer connections (spikeflow.neurons.ilc): spikes, states,
outputs and gradients equal to SpikingJelly 2.0's ILC neurons with its ``conn`` weights
loaded (float64), multi-step, single-step while streaming and with explicit state,
resets; hand-derived steps, float64 gradchecks, the noisy ILC neuron in eval mode,
errors."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from sj_checks import TIGHT, grads, sj
from spikeflow import functional, neurons, surrogate
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError

ACT, POP = 2, 4
KINDS = ["if", "lif", "cuba"]


def _pair(kind: str, **kw):
    """Our node and SpikingJelly's (float64) with the same, enlarged ``conn`` weights."""
    sj_neuron = sj("neuron")
    if kind == "if":
        ours, theirs = neurons.ILCIFNode(ACT, POP, **kw), sj_neuron.ILCIFNode(ACT, POP, **kw)
    elif kind == "lif":
        ours = neurons.ILCLIFNode(ACT, POP, 0.6, **kw)
        theirs = sj_neuron.ILCLIFNode(ACT, POP, 0.6, **kw)
    else:
        ours = neurons.ILCCubaLIFNode(ACT, POP, 0.4, 0.8, **kw)
        theirs = sj_neuron.ILCCUBALIFNode(ACT, POP, 0.4, 0.8, **kw)
    theirs = theirs.double()
    with torch.no_grad():  # strong enough for the spikes to depend on them
        theirs.conn.weight.mul_(3.0)
        theirs.conn.bias.mul_(2.0)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _sj_run(theirs, x):
    """SpikingJelly's output for ``x``: it adds the intra-layer input into its input in
    place, so it is given a copy (gradients still reach ``x``)."""
    return theirs(x.clone())


def _drive(T: int = 6, B: int = 5) -> torch.Tensor:
    return (torch.rand(T, B, ACT * POP) * 1.6 - 0.2).requires_grad_()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("v_reset", [0.0, -0.3])
def test_multi_step_equal_to_spikingjelly(float64, kind, v_reset):
    ours, theirs = _pair(kind, v_threshold=0.7, v_reset=v_reset)
    x = _drive()
    x_sj = x.detach().clone().requires_grad_()
    before = x.detach().clone()
    out, state = ours.run(x)
    out_sj = _sj_run(theirs, x_sj)
    assert torch.equal(out, out_sj)
    assert 0.1 < out.mean() < 0.9
    assert torch.equal(x.detach(), before)  # our input is left as it was
    torch.testing.assert_close(state["v"], theirs.v, **TIGHT)
    if kind == "cuba":
        torch.testing.assert_close(state["c"], theirs.c, **TIGHT)
    g = torch.randn_like(out)
    got = grads(out, [x, *ours.parameters()], g)
    want = grads(out_sj, [x_sj, *theirs.parameters()], g)
    assert all(a.abs().sum() > 0 for a in got)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TIGHT)
    # the connection matters: without it the spikes differ
    with torch.no_grad():
        ours.conn.weight.zero_()
        ours.conn.bias.zero_()
    assert not torch.equal(ours(x), out)


@pytest.mark.parametrize("kind", KINDS)
def test_single_step_streaming_and_reset_equal_spikingjelly(float64, kind):
    ours, theirs = _pair(kind)
    x = _drive(T=7, B=3)
    x_sj = x.detach().clone().requires_grad_()
    want = _sj_run(theirs, x_sj)
    ours.step_mode = "s"
    with pytest.raises(StateError, match="streaming"):
        ours(x[0])
    with functional.streaming(ours):
        got = torch.stack([ours(x_t) for x_t in x])
        assert torch.equal(got, want)
        torch.testing.assert_close(ours.state["v"], theirs.v, **TIGHT)
        g = torch.randn_like(got)
        for a, b in zip(
            grads(got, [x, *ours.parameters()], g),
            grads(want, [x_sj, *theirs.parameters()], g),
            strict=True,
        ):
            torch.testing.assert_close(a, b, **TIGHT)
        functional.reset_net(ours)  # a new sequence of another batch starts afresh
        y = _drive(T=4, B=2)
        again = torch.stack([ours(y_t) for y_t in y])
    assert torch.equal(again, _sj_run(theirs, y))
    ours.step_mode = "m"
    half, state = ours.run(x[:3])  # explicit state: two calls are one sequence
    rest, _ = ours.run(x[3:], state)
    assert torch.equal(torch.cat([half, rest]), want)
    assert torch.equal(ours(x[3:]), _sj_run(theirs, x[3:]))  # not streaming: afresh


def test_defaults_are_spikingjellys(float64):
    sj_neuron = sj("neuron")
    x = torch.rand(5, 4, ACT * POP) * 1.2
    for ours, theirs in (
        (neurons.ILCIFNode(ACT, POP), sj_neuron.ILCIFNode(ACT, POP)),
        (neurons.ILCLIFNode(ACT, POP), sj_neuron.ILCLIFNode(ACT, POP)),
        (neurons.ILCCubaLIFNode(ACT, POP), sj_neuron.ILCCUBALIFNode(ACT, POP)),
    ):
        theirs = theirs.double()
        ours.load_state_dict(theirs.state_dict())
        assert ours.v_threshold == theirs.v_threshold and ours.v_reset == theirs.v_reset
        assert ours.out_pop_dim == theirs.out_pop_dim
        x_ours = x.clone().requires_grad_()
        x_sj = x.clone().requires_grad_()
        out, out_sj = ours(x_ours), _sj_run(theirs, x_sj)
        assert torch.equal(out, out_sj) and out.sum() > 0
        g = torch.randn_like(out)  # the default surrogate, Rect(alpha=1)
        torch.testing.assert_close(grads(out, x_ours, g)[0], grads(out_sj, x_sj, g)[0], **TIGHT)


def test_steps_by_hand():
    """One population of two IF neurons, θ 1: conn = [[0, 1], [-1, 0]] (out, in), bias
    (0.1, 0). Inputs (1.2, 0.5), (0, 0.3), (0, 0.2)::

        t0: H = (1.2, 0.5)                 S = (1, 0)   V = (0, 0.5)   R1 = (0.1, -1)
        t1: H = (0 + 0.1, 0.5 + 0.3 - 1)   S = (0, 0)   V = (0.1, -0.2) R2 = (0.1, 0)
        t2: H = (0.1 + 0.1, -0.2 + 0.2)    S = (0, 0)
    and with soft reset (V = H - S θ), θ 1.2, inputs (1.5, 0.9), (0, 0.4), (0.9, 0)::

        t0: H = (1.5, 0.9)   S = (1, 0)   V = (0.3, 0.9)   R1 = (0.1, -1)
        t1: H = (0.4, 0.3)   S = (0, 0)                    R2 = (0.1, 0)
        t2: H = (1.4, 0.3)   S = (1, 0)   V = (0.2, 0.3)
    """
    node = neurons.ILCIFNode(1, 2, store_v_seq=True)
    with torch.no_grad():
        node.conn.weight.copy_(torch.tensor([[[0.0, 1.0]], [[-1.0, 0.0]]]))
        node.conn.bias.copy_(torch.tensor([0.1, 0.0]))
    out = node(torch.tensor([[1.2, 0.5], [0.0, 0.3], [0.0, 0.2]]).view(3, 1, 2))
    assert out.view(3, 2).tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    torch.testing.assert_close(
        node.v_seq.view(3, 2), torch.tensor([[0, 0.5], [0.1, -0.2], [0.2, 0]])
    )
    node.v_reset, node.v_threshold = None, 1.2
    out, state = node.run(torch.tensor([[1.5, 0.9], [0.0, 0.4], [0.9, 0.0]]).view(3, 1, 2))
    assert out.view(3, 2).tolist() == [[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]
    torch.testing.assert_close(state["v"].view(2), torch.tensor([0.2, 0.3]))
    torch.testing.assert_close(state["r"].view(2), torch.tensor([0.1, -1.0]))  # conn(S[2])


def test_cuba_without_conn_is_cuba_lif():
    c, v = 0.5, 0.75
    node = neurons.ILCCubaLIFNode(3, 2, c, v)
    with torch.no_grad():
        node.conn.weight.zero_()
        node.conn.bias.zero_()
    tau_syn, tau_mem = 1 / (1 - c), 1 / (1 - v)
    ref = neurons.CubaLIFNode(
        tau_syn=tau_syn, tau_mem=tau_mem, r=tau_syn * tau_mem, v_threshold=0.5,
        surrogate_function=surrogate.Rect(),
    )  # fmt: skip
    x = torch.rand(6, 4, 6)
    out = node(x)
    torch.testing.assert_close(out, ref(x))
    assert 0 < out.mean() < 1


def test_noisy_ilc_in_eval_mode_is_the_plain_one(float64):
    """The two share ``conn`` and its product: without noise they are the same neuron."""
    noisy = neurons.NoisyILCCubaLIFNode(3, 4, 0.6, 0.7, T=5, v_threshold=0.6).eval()
    plain = neurons.ILCCubaLIFNode(3, 4, 0.6, 0.7, v_threshold=0.6)
    plain.load_state_dict(noisy.state_dict())
    x = torch.rand(5, 2, 12) * 1.5
    out = plain(x)
    assert torch.equal(noisy(x), out) and 0 < out.mean() < 1


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_through_the_loop(float64, kind):
    smooth = surrogate.Sigmoid(spiking=False)  # the primitive: a smooth forward to check
    node, _ = _pair(kind, surrogate_function=smooth, v_reset=None if kind == "if" else 0.0)
    names = [n for n, _ in node.named_parameters()]
    x = torch.rand(4, 2, ACT * POP, requires_grad=True)

    def run(x, *values):
        return functional_call(node, dict(zip(names, values, strict=True)), (x,))

    values = [p.detach().clone().requires_grad_() for p in node.parameters()]
    assert torch.autograd.gradcheck(run, (x, *values))


def test_errors():
    node = neurons.ILCLIFNode(2, 3)
    with pytest.raises(
        ShapeError, match=r"num_node = act_dim x dec_pop_dim = 2 x 3 = 6.*\(4, 2, 5\)"
    ):
        node(torch.rand(4, 2, 5))
    with pytest.raises(DTypeError, match="floating-point"):
        node(torch.ones(4, 2, 6, dtype=torch.long))
    with pytest.raises(ConfigurationError, match="act_dim"):
        neurons.ILCIFNode(0, 3)
    with pytest.raises(ConfigurationError, match="dec_pop_dim"):
        neurons.ILCCubaLIFNode(2, 2.5)
    with pytest.raises(ConfigurationError, match="ILCLIFNode: v_decay"):
        neurons.ILCLIFNode(2, 3, v_decay=1.2)
    with pytest.raises(ConfigurationError, match="ILCCubaLIFNode: c_decay"):
        neurons.ILCCubaLIFNode(2, 3, c_decay=-0.1)
    with pytest.raises(ConfigurationError, match="v_threshold"):
        neurons.ILCIFNode(2, 3, v_threshold=float("nan"))
    with pytest.raises(ConfigurationError, match="surrogate_function"):
        neurons.ILCIFNode(2, 3, surrogate_function=torch.sigmoid)
    assert node(torch.rand(4, 2, 3, 6)).shape == (4, 2, 3, 6)  # more batch dims
