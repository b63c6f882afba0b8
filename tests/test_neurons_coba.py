"""The conductance-based LIF neuron ``CobaLIFNode``.

Hand-computed steps for both input splits (and why a pair is not its summed drive);
spikes, membranes, conductances and float64 gradients (input, learnable threshold)
equal to Norse 1.1's ``coba_lif_feed_forward_step`` on every backend (the reference
loop, the C kernel, Triton), with the sign split and with the pair of its drives; Norse's
``CobaLIFCell`` reproduced with its recurrent weights (spikes, membranes, the weights'
gradients), and its input weights shown to have no effect there; gradcheck of both
declarations on every backend; chunked streaming and single-step equal to one call;
the errors.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import linear, relu

from conftest import fused_backends, kernel_device
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.kernels import resolve_backend
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.neurons import CobaLIFNode
from spikeflow.surrogate import Sigmoid, SuperSpike
from streaming_checks import check_chunked_streaming

BACKENDS = fused_backends("torch")
F64 = torch.float64


def pair_of(x: torch.Tensor) -> torch.Tensor:
    """The drives of a signed input, stacked: ``[relu(X), relu(-X)]``."""
    return torch.stack((relu(x), relu(-x)))


# -- hand-computed steps ---------------------------------------------------------------------

# dt = 0.5, tau_syn = 1 (the conductances halve), c_m = 1, g_leak = 0.5, E_e = 2,
# E_i = -1, v_leak = 0, θ = 1, V_r = -0.5, starting at 0.
# t0: X = 4: g_e = 2, g_i = 0; H = 0.5 (2 · 2) = 2 ≥ 1: spike, V = -0.5.
# t1: X = -2: g_e = 1, g_i = 1; H = -0.5 + 0.5 (0.5 · 0.5 + 1 · 2.5 + 1 · -0.5) = 0.625.
# t2: X = 0: g_e = g_i = 0.5; H = 0.625 + 0.5 (0.5 (-0.625 + 1.375 - 1.625)) = 0.40625.
HAND = dict(tau_syn_exc=1.0, tau_syn_inh=1.0, c_m=1.0, g_leak=0.5, e_rev_exc=2.0,
            e_rev_inh=-1.0, v_leak=0.0, dt=0.5, v_threshold=1.0, v_reset=-0.5)  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("split", ["sign", "pair"])
def test_hand_computed_steps(backend, split):
    device = kernel_device(backend)
    node = CobaLIFNode(**HAND, input_split=split, backend=backend, store_v_seq=True)
    node = node.double().to(device)
    x = torch.tensor([4.0, -2.0, 0.0], dtype=F64, device=device).view(-1, 1)
    with F.streaming(node):
        s = node(x if split == "sign" else pair_of(x))
        assert node.g_e.item() == node.g_i.item() == 0.5
    assert s.view(-1).tolist() == [1, 0, 0]
    assert node.v_seq.view(-1).tolist() == [-0.5, 0.625, 0.40625]


def test_a_pair_is_not_its_summed_drive():
    # Both drives at once: g_e = g_i = 1, H = 0.5 (1 · 2 + 1 · -1) = 0.5; their sum (0)
    # opens nothing.
    node = CobaLIFNode(**HAND, input_split="pair", store_v_seq=True).double()
    node(torch.tensor([[[2.0]], [[2.0]]], dtype=F64))
    assert node.v_seq.item() == 0.5
    sign = CobaLIFNode(**HAND, store_v_seq=True).double()
    sign(torch.zeros(1, 1, dtype=F64))
    assert sign.v_seq.item() == 0.0


def test_state_defaults_and_repr():
    node = CobaLIFNode()
    assert node.g_e is None and node.g_i is None  # not streaming
    assert node.initial_values() == {"v": -20.0, "g_e": 0.0, "g_i": 0.0}
    assert CobaLIFNode(input_split="pair", v_init=0.0).initial_values()["phase"] == 0.0
    assert node.declaration().state_names == ("v", "g_e", "g_i")
    text = repr(CobaLIFNode(g_leak=torch.tensor([0.1, 0.2]), input_split="pair"))
    assert "g_leak=tensor(2,)" in text and "input_split='pair'" in text
    assert "v_init=v_leak" in text and "v_threshold=-10" in text
    # a per-neuron resting potential: the membrane starts there
    leak = torch.tensor([-20.0, -30.0], dtype=F64)
    per_neuron = CobaLIFNode(v_leak=leak, store_v_seq=True).double()
    per_neuron(torch.zeros(1, 3, 2, dtype=F64))
    torch.testing.assert_close(per_neuron.v_seq[0], leak.expand(3, 2), rtol=0, atol=0)


# -- against Norse ---------------------------------------------------------------------------

# (tau_syn_exc_inv, tau_syn_inh_inv, c_m_inv, g_l, e_rev_I, e_rev_E, v_rest, v_reset,
#  v_thresh, dt, input scale)
NORSE_CASES = [
    (200.0, 100.0, 5.0, 0.25, -100.0, 60.0, -20.0, -70.0, -10.0, 1e-3, 60.0),
    (0.5, 0.25, 2.0, 0.3, -80.0, 0.0, -65.0, -70.0, -50.0, 0.5, 0.3),  # dt = 0.5, bio-like
]


def _norse_params(case, v_thresh):
    from norse.torch.functional.coba_lif import CobaLIFParameters

    return CobaLIFParameters(*case[:8], v_thresh)


def _node_for(case, **kw):
    exc, inh, c_inv, g_l, e_i, e_e, rest, reset, thresh, dt, _ = case
    return CobaLIFNode(
        tau_syn_exc=1 / exc, tau_syn_inh=1 / inh, c_m=1 / c_inv, g_leak=g_l, e_rev_exc=e_e,
        e_rev_inh=e_i, v_leak=rest, dt=dt, v_threshold=thresh, v_reset=reset,
        strict_firing=True, surrogate_function=SuperSpike(alpha=1.0), **kw,
    ).double()  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("case", "split"), [(NORSE_CASES[0], "sign"), (NORSE_CASES[1], "pair")])
def test_equals_norse_feed_forward_step(backend, case, split):
    pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    from norse.torch.functional.coba_lif import (
        CobaLIFFeedForwardState,
        coba_lif_feed_forward_step,
    )

    torch.manual_seed(0)
    x = ((torch.rand(CHECKPOINT + 9, 3, 5, dtype=F64) - 0.4) * case[10]).requires_grad_()
    theta = torch.tensor(case[8], dtype=F64, requires_grad=True)
    p = _norse_params(case, theta)
    zero = torch.zeros_like(x[0])
    state = CobaLIFFeedForwardState(zero + case[6], zero, zero)
    z, v = [], []
    for x_t in x:
        z_t, state = coba_lif_feed_forward_step(x_t, state, p, dt=case[9])
        z.append(z_t)
        v.append(state.v)
    z, v = torch.stack(z), torch.stack(v)
    assert 0.05 < z.mean().item() < 0.5
    device = kernel_device(backend)
    node = _node_for(case, input_split=split, backend=backend, store_v_seq=True,
                     learnable_threshold=True).to(device)  # fmt: skip
    xx = x.detach().to(device).requires_grad_()
    with F.streaming(node):
        s = node(xx if split == "sign" else pair_of(xx))
        g_e, g_i = node.g_e, node.g_i
    assert torch.equal(s.detach().cpu(), z.detach()), "spikes differ from Norse's"
    torch.testing.assert_close(node.v_seq.detach().cpu(), v.detach(), atol=1e-12, rtol=1e-13)
    torch.testing.assert_close(g_e.cpu(), state.g_e.detach(), atol=1e-12, rtol=1e-13)
    torch.testing.assert_close(g_i.cpu(), state.g_i.detach(), atol=1e-12, rtol=1e-13)
    torch.manual_seed(1)
    g, gv = torch.randn_like(z), torch.randn_like(v) * 1e-2
    want = torch.autograd.grad((z * g).sum() + (v * gv).sum(), [x, theta])
    loss = (s * g.to(device)).sum() + (node.v_seq * gv.to(device)).sum()
    got = torch.autograd.grad(loss, [xx, node.v_threshold])
    for name, a, b in zip(("x", "v_thresh"), got, want):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a.cpu(), b, atol=1e-11, rtol=1e-9, msg=name)


def test_reproduces_norse_cell_with_its_weights():
    """Norse's ``CobaLIFCell`` is the pair neuron fed ``relu(±W_rec) z[t-1]``, starting at
    0; its input weights never reach the conductances (``coba_lif_step`` overwrites
    their jumps with the recurrent ones)."""
    norse = pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    case = NORSE_CASES[0]
    torch.manual_seed(3)
    cell = norse.CobaLIFCell(4, 6, p=_norse_params(case, case[8])).double()
    with torch.no_grad():
        cell.recurrent_weights.mul_(200.0)
    x = torch.rand(40, 2, 4, dtype=F64)

    def run_cell(inputs):
        state, out, vs = None, [], []
        for x_t in inputs:
            z, state = cell(x_t, state)
            out.append(z)
            vs.append(state.v)
        return torch.stack(out), torch.stack(vs)

    z, v = run_cell(x)
    assert torch.equal(run_cell(x * 100.0 - 7.0)[0], z)  # the input has no effect
    assert 0.1 < z[1:].mean().item() < 0.8  # recurrent activity after the first step
    node = _node_for(case, input_split="pair", v_init=0.0, step_mode="s")
    w_rec = cell.recurrent_weights
    prev, out = torch.zeros(2, 6, dtype=F64), []
    with F.streaming(node):
        for t in range(x.shape[0]):
            prev = node(torch.stack((linear(prev, relu(w_rec)), linear(prev, relu(-w_rec)))))
            out.append(prev)
            torch.testing.assert_close(node.v, v[t], atol=1e-9, rtol=1e-12)
    s = torch.stack(out)
    assert torch.equal(s, z)
    torch.manual_seed(4)
    g = torch.randn_like(z)
    (want,) = torch.autograd.grad((z * g).sum(), [w_rec], retain_graph=True)
    (got,) = torch.autograd.grad((s * g).sum(), [w_rec])
    assert want.abs().sum() > 0
    torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


# -- kernels ---------------------------------------------------------------------------------


# Triton's interpreter is slow: there, the pair's declaration only (the sign's Triton
# gradients are checked against Norse's).
GRADCHECKS = [
    *((b, split) for b in ("torch", "cpu") for split in ("sign", "pair")),
    pytest.param("triton", "pair", marks=BACKENDS[-1].marks),
]


@pytest.mark.parametrize(("backend", "split"), GRADCHECKS)
def test_gradcheck(backend, split):
    """float64 gradcheck of spikes, membranes and the final conductance with respect to
    the input (the pair's sub-steps as the declaration runs them) and the threshold
    (Triton's interpreter: fewer steps, and gradcheck's fast mode)."""
    device = kernel_device(backend)
    node = CobaLIFNode(**HAND, input_split=split, surrogate_function=Sigmoid(alpha=2.0,
                       spiking=False))  # fmt: skip
    decl, rule, params = node.declaration(), node.firing_rule, node.neuron_params()
    torch.manual_seed(2)
    fast = backend == "triton"
    steps = (2 if fast else 6) * (1 if split == "sign" else 2)
    x = ((torch.rand(steps, 2, dtype=F64, device=device) - 0.3) * 4).requires_grad_()
    theta = torch.tensor(0.9, dtype=F64, device=device).requires_grad_()
    runner = resolve_backend(backend, x)

    def outputs(x, theta):
        state = node.initial_values()
        spikes, final, v_seq = runner(decl, x, state, params, theta, rule, True)
        return spikes, v_seq, final["g_i"]

    assert torch.autograd.gradcheck(outputs, (x, theta), fast_mode=fast)


# -- streaming -------------------------------------------------------------------------------


def _make(backend, split="sign"):
    return CobaLIFNode(
        tau_syn_exc=3.0, tau_syn_inh=torch.tensor([2.0, 4.0, 6.0]), c_m=1.0, g_leak=0.2,
        e_rev_exc=2.0, e_rev_inh=-1.0, v_leak=0.0, dt=1.0, v_threshold=torch.tensor(1.0),
        learnable_threshold=True, v_reset=-0.2, input_split=split, backend=backend,
    ).double()  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_streaming_equals_one_call(backend):
    device = kernel_device(backend)
    torch.manual_seed(4)
    split = (3, 4, 5) if backend == "triton" else (5, 9, 9)  # the interpreter is slow
    x = (torch.rand(sum(split), 2, 3, dtype=F64, device=device) - 0.3) * 2.0
    make = lambda: _make(backend).to(device)  # noqa: E731
    whole, _ = check_chunked_streaming(make, x, "v_threshold", split)
    assert whole.sum() > 0


def test_single_step_pair_equals_multi_step_and_no_state_leaks():
    torch.manual_seed(5)
    x = torch.rand(2, 12, 2, 3, dtype=F64) * 1.5
    node = _make("auto", "pair")
    multi = node(x)
    assert torch.equal(node(x), multi) and multi.sum() > 0  # the second call starts at rest
    F.set_step_mode(node, "s")
    with F.streaming(node):
        single = torch.stack([node(x[:, t]) for t in range(x.shape[1])])
        assert torch.equal(node.state["phase"], torch.zeros(2, 3, dtype=F64))
    assert torch.equal(multi, single)


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"v_reset": None}, r"CobaLIFNode needs a hard reset \(v_reset a float\)"),
        ({"input_split": "both"}, "input_split must be 'sign'"),
        ({"dt": 0.0}, "dt must be a finite number > 0"),
        ({"c_m": 0.0}, "c_m must be > 0"),
        ({"g_leak": -0.1}, "g_leak must be >= 0"),
        ({"g_leak": 1.0, "c_m": 0.5, "dt": 1.0}, r"dt g_leak / c_m <= 1"),
        ({"tau_syn_inh": 1e-4}, r"tau_syn_inh must be >= dt \(0.001\)"),
        ({"e_rev_exc": float("nan")}, "e_rev_exc must be finite"),
        ({"v_init": "0"}, "v_init must be a float or a tensor"),
        ({"v_threshold": -80.0}, r"must be above v_reset \(-70.0\)"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        CobaLIFNode(**kwargs)


def test_bad_inputs_are_named():
    pair = CobaLIFNode(input_split="pair")
    with pytest.raises(
        ShapeError, match=r"leading dimension of 2, \[2, T, B, \.\.\.\], got shape \(3, 4, 5\)"
    ):
        pair(torch.rand(3, 4, 5))
    with pytest.raises(ShapeError, match=r"\[2, T, B, \.\.\.\], got shape \(2, 4\)"):
        pair(torch.rand(2, 4))
    with pytest.raises(DTypeError, match="floating-point drives"):
        pair(torch.ones(2, 3, 4, dtype=torch.int64))
    with pytest.raises(ShapeError, match=r"g_leak of shape \(4,\) does not broadcast"):
        CobaLIFNode(g_leak=torch.full((4,), 0.2))(torch.rand(3, 2, 5))
