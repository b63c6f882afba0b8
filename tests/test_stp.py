"""Tsodyks-Markram short-term plasticity: ``layers.ShortTermPlasticity``.

Hand-computed steps; outputs and states equal to Norse 1.1's ``stp_step`` for its
depressing and facilitating parameter sets (its own test's spike train and random
trains), per-neuron parameters equal to separate scalar layers; Norse's test example
(the postsynaptic current through ``LINode``) reproduced, depression and facilitation
visible; float64 gradcheck of the efficacies with respect to the spikes and the three
parameters; gradients reach the weights of a network; chunked streaming and
single-step equal to one call, no state between multi-step calls; the errors.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow import layers
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.layers import ShortTermPlasticity
from spikeflow.layers.short_term_plasticity import tsodyks_markram
from spikeflow.neurons import LINode

F64 = torch.float64
DEPRESSING = {"tau_f_inv": 1 / 50e-3, "tau_s_inv": 1 / 20e-3, "tau_d_inv": 1 / 750e-3, "U": 0.45}
FACILITATING = {"tau_f_inv": 1 / 750e-3, "tau_s_inv": 1 / 20e-3, "tau_d_inv": 1 / 50e-3, "U": 0.15}


def norse_example_train():
    """The spike train of Norse's own test: every 100 ms from 100 ms, 1000 steps."""
    z = torch.zeros(1000, 1, 1, dtype=F64)
    z[::100] = 1.0
    z[0:10] = 0.0
    return z


def test_hand_computed_steps():
    # U = 0.5, tau_f = 2, tau_d = 4 (dt = 1); spikes 1, 1, 0, 1; from u = 0, x = 1:
    # t0: u = 0.5,               y = 0.5 * 1 = 0.5,          x = 1 - 0.5 = 0.5
    # t1: u = 0.25 + 0.25 = 0.5, y = 0.5 * 0.5 = 0.25,       x = 0.5 + 0.125 - 0.25
    # t2: u = 0.25,              y = 0,                      x = 0.375 + 0.25 * 0.625
    # t3: u = 0.125 + 0.375,     y = 0.5 * 0.53125,          x = 0.53125 + 0.1171875 - y
    node = ShortTermPlasticity(tau_f=2.0, tau_d=4.0, U=0.5)
    z = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=F64).view(-1, 1)
    with F.streaming(node):
        y = node(z).view(-1).tolist()
        u, x = node.u.item(), node.x.item()
    assert y == pytest.approx([0.5, 0.25, 0.0, 0.265625], abs=1e-15)
    assert (u, x) == pytest.approx((0.5, 0.3828125), abs=1e-15)


# -- against Norse ---------------------------------------------------------------------------


@pytest.mark.parametrize("params", [DEPRESSING, FACILITATING], ids=["depressing", "facilitating"])
@pytest.mark.parametrize("train", ["norse-example", "random"])
def test_equals_norse_stp_step(params, train):
    pytest.importorskip("norse.torch", reason="Norse (norse.torch) is not installed")
    from norse.torch.functional.tsodyks_makram import (
        TsodyksMakramParameters,
        TsodyksMakramState,
        stp_step,
    )

    p = TsodyksMakramParameters(**params)
    torch.manual_seed(0)
    if train == "random":
        z = (torch.rand(400, 4, 25, dtype=F64) < 0.05).to(F64)
    else:
        z = norse_example_train()
    state = TsodyksMakramState(u=torch.zeros_like(z[0]), x=torch.ones_like(z[0]))
    ys, us, xs = [], [], []
    for z_t in z:
        y, state = stp_step(z_t, state, p, dt=1e-3)
        ys.append(y)
        us.append(state.u)
        xs.append(state.x)
    node = ShortTermPlasticity(tau_f=1 / p.tau_f_inv, tau_d=1 / p.tau_d_inv, U=p.U, dt=1e-3)
    F.set_step_mode(node, "s")
    got_u, got_x = [], []
    with F.streaming(node):
        steps = []
        for z_t in z:
            steps.append(node(z_t))
            got_u.append(node.u)
            got_x.append(node.x)
    y = torch.stack(steps)
    torch.testing.assert_close(y, torch.stack(ys), atol=1e-14, rtol=0)
    torch.testing.assert_close(torch.stack(got_u), torch.stack(us), atol=1e-14, rtol=0)
    torch.testing.assert_close(torch.stack(got_x), torch.stack(xs), atol=1e-14, rtol=0)
    F.set_step_mode(node, "m")
    assert torch.equal(node(z), y)  # one multi-step call
    spikes = z > 0
    assert y[spikes].std() > 0.01  # the efficacy changed from spike to spike


@pytest.mark.parametrize("params", [DEPRESSING, FACILITATING], ids=["depressing", "facilitating"])
def test_norse_example_current_depresses_or_facilitates(params):
    """Norse's test example: the efficacies through ``i ← i - dt tau_s_inv i + y``, which
    is ``LINode(tau=1/(dt tau_s_inv), decay_input=False)``. The first spike gives ``U``;
    a depressing synapse's peaks fall over the train, a facilitating one's rise."""
    dt = 1e-3
    node = ShortTermPlasticity(
        tau_f=1 / params["tau_f_inv"], tau_d=1 / params["tau_d_inv"], U=params["U"], dt=dt
    )
    current = LINode(tau=1 / (dt * params["tau_s_inv"]), decay_input=False)
    i = current(node(norse_example_train())).view(-1)
    loop, expected = 0.0, []
    for y in node(norse_example_train()).view(-1).tolist():
        loop = loop - dt * params["tau_s_inv"] * loop + y
        expected.append(loop)
    torch.testing.assert_close(i, torch.tensor(expected, dtype=F64), atol=1e-14, rtol=0)
    assert i[100].item() == pytest.approx(params["U"], abs=1e-15)
    peaks = i[100::100]
    if params is DEPRESSING:
        assert i[500:].max() < i[:500].max()
        assert bool((peaks[1:] < peaks[:-1]).all())
    else:
        assert i[500:].max() > i[:500].max()
        assert bool((peaks[1:] > peaks[:-1]).all())


def test_per_neuron_parameters_equal_separate_layers():
    torch.manual_seed(1)
    z = (torch.rand(200, 3, 4, dtype=F64) < 0.2).to(F64)
    tau_f = torch.tensor([5.0, 50.0, 500.0, 20.0], dtype=F64)
    tau_d = torch.tensor([500.0, 50.0, 5.0, 20.0], dtype=F64)
    U = torch.tensor([0.1, 0.3, 0.6, 1.0], dtype=F64)
    y = ShortTermPlasticity(tau_f=tau_f, tau_d=tau_d, U=U)(z)
    for n in range(4):
        node = ShortTermPlasticity(tau_f=tau_f[n].item(), tau_d=tau_d[n].item(), U=U[n].item())
        alone = node(z[..., n : n + 1])
        torch.testing.assert_close(y[..., n : n + 1], alone, atol=1e-15, rtol=0)
    assert not torch.allclose(y[..., 0], y[..., 2])


# -- gradients -------------------------------------------------------------------------------


def test_gradcheck():
    """The efficacies and the final state, in float64, with respect to graded spikes
    (a surrogate's output), ``U`` and the two decays (per neuron)."""
    torch.manual_seed(2)
    z = torch.rand(12, 2, 3, dtype=F64).requires_grad_()
    U = torch.tensor([0.2, 0.5, 0.8], dtype=F64, requires_grad=True)
    f_decay = torch.tensor([0.1, 0.3, 0.02], dtype=F64, requires_grad=True)
    d_decay = torch.tensor(0.05, dtype=F64, requires_grad=True)
    u0 = (torch.rand(2, 3, dtype=F64) * 0.5).requires_grad_()

    def run(z, U, f_decay, d_decay, u0):
        return tsodyks_markram(z, U=U, f_decay=f_decay, d_decay=d_decay, u=u0, x=1.0)

    assert torch.autograd.gradcheck(run, (z, U, f_decay, d_decay, u0))
    assert torch.autograd.gradgradcheck(run, (z, U, f_decay, d_decay, u0))


def test_module_gradcheck_on_spikes():
    node = ShortTermPlasticity(tau_f=3.0, tau_d=6.0, U=0.4)
    z = torch.rand(9, 2, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(node, (z,))


def test_gradients_reach_a_networks_weights():
    """Between spikes and a linear layer at a realistic size (SHD-like: 700 inputs,
    T = 100): the weights get the gradient of the efficacies, not of the raw spikes."""
    torch.manual_seed(3)
    z = (torch.rand(100, 8, 700) < 0.05).float()
    net = nn.Sequential(ShortTermPlasticity(tau_f=20.0, tau_d=200.0, U=0.3), layers.Linear(700, 20))
    out = net(z)
    out.sum().backward()
    weight = net[1].weight
    efficacies = net[0](z)
    want = efficacies.sum((0, 1)).expand_as(weight)
    torch.testing.assert_close(weight.grad, want, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(want, z.sum((0, 1)).expand_as(weight))


# -- state -----------------------------------------------------------------------------------


def test_chunked_streaming_and_single_step_equal_one_call():
    torch.manual_seed(4)
    z = (torch.rand(50, 2, 6, dtype=F64) < 0.3).to(F64).requires_grad_()
    node = ShortTermPlasticity(tau_f=10.0, tau_d=30.0, U=0.3)
    whole = node(z)
    assert torch.equal(node(z), whole)  # each multi-step call starts at rest
    assert node.state is None
    with F.streaming(node):
        chunks = torch.cat([node(c) for c in z.split([7, 20, 23])])
    torch.testing.assert_close(chunks, whole, atol=1e-15, rtol=0)
    (g_whole,) = torch.autograd.grad(whole.sum(), z)
    (g_chunks,) = torch.autograd.grad(chunks.sum(), z)
    torch.testing.assert_close(g_chunks, g_whole, atol=1e-14, rtol=0)
    F.set_step_mode(node, "s")
    with F.streaming(node):
        single = torch.stack([node(z_t) for z_t in z])
    torch.testing.assert_close(single, whole, atol=1e-15, rtol=0)
    with pytest.raises(StateError, match="single-step mode"):
        node(z[0])


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"tau_f": 0.5}, ConfigurationError, r"tau_f must be >= dt \(1\)"),
        ({"tau_d": torch.tensor([10.0, 0.1])}, ConfigurationError, "tau_d must be >= dt"),
        ({"tau_f": 5.0, "dt": 10.0}, ConfigurationError, r"tau_f must be >= dt \(10\)"),
        ({"U": 0.0}, ConfigurationError, r"U must be in \(0, 1\]"),
        ({"U": 1.5}, ConfigurationError, r"U must be in \(0, 1\]"),
        ({"U": float("nan")}, ConfigurationError, "U must be a finite float"),
        ({"dt": 0.0}, ConfigurationError, "dt must be a finite number > 0"),
        ({"tau_f": "20"}, ConfigurationError, "tau_f must be a finite float or a tensor"),
        ({"U": torch.tensor([1, 0])}, DTypeError, "U must be a floating-point tensor"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        ShortTermPlasticity(**kwargs)


def test_bad_inputs_are_named():
    node = ShortTermPlasticity()
    with pytest.raises(DTypeError, match=r"expects floating-point spikes, got torch\.int64"):
        node(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"\[T, B, \.\.\.\]"):
        node(torch.ones(3))
    with pytest.raises(ShapeError, match=r"single-step mode expects \[B, \.\.\.\], got a scalar"):
        ShortTermPlasticity(step_mode="s")(torch.tensor(1.0))
    with pytest.raises(ShapeError, match=r"U of shape \(5,\) does not broadcast"):
        ShortTermPlasticity(U=torch.full((5,), 0.3))(torch.ones(3, 2, 4))
    assert "tau_f=50, tau_d=750, U=0.45, dt=1" in repr(node)


def test_the_docs_example_runs():
    text = (Path(__file__).resolve().parents[1] / "docs" / "synapses.md").read_text()
    match = re.search(r"<!-- synapses: example\b.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "no example block in docs/synapses.md"
    namespace = {}
    exec(compile(match.group(1), "docs/synapses.md", "exec"), namespace)
    assert namespace["out"].shape == (100, 8, 128)
    assert isinstance(namespace["net"][0], ShortTermPlasticity)
