"""Norse 1.1 pieces that existing spikeflow modules already cover, each mapping checked
against Norse in float64 (outputs, states and gradients):

- ``ExpFilter(in, out, tau_filter_inv, dt)``: ``layers.Linear`` then
  ``neurons.LINode(tau=1/(1 - exp(-dt tau_filter_inv)), decay_input=False)``;
- ``LIBoxCell(LIBoxParameters(tau_mem_inv, v_leak), dt)`` (``li_box_feed_forward_step``):
  ``neurons.LINode(tau=1/(dt tau_mem_inv), v_leak=v_leak)``;
- ``LConv2d(in, out, k, stride, padding, dilation, groups)``: ``layers.Conv2d(...,
  bias=False)`` with Norse's weight's last (time) axis dropped;
- ``lif_step_sparse`` (sparse input and spikes): the dense ``layers.Recurrent`` LIF
  stack, with the reset not detached (the sparse step does not detach it): the same
  spikes; not the same gradients (Norse's flow only through the spikes that happened);
- ``RegularizationCell`` with ``spike_accumulator``: ``losses.l1_rate_sparsity(spikes,
  strength=1.0, reduction="sum")``; with ``voltage_accumulator``: ``v_seq.sum(0)`` of a
  node built with ``store_v_seq=True``;
- the online STDP (``stdp_step_linear`` / ``stdp_step_conv2d`` after every step):
  ``learn.STDPLearner`` on the streamed layer, ``Δw`` added after every step (spikes and
  weights).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from spikeflow import layers, losses, neurons, surrogate

F64 = dict(rtol=1e-10, atol=1e-12)
DT = 1e-3
SYN, MEM = 200.0, 100.0  # Norse's tau_syn_inv, tau_mem_inv (1/s)


def _norse():
    return pytest.importorskip("norse.torch", reason="Norse is not installed")


def _grads(out, inputs, g):
    return torch.autograd.grad((out * g).sum(), inputs)


def _close_all(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert b.abs().sum() > 0, "a zero gradient compares nothing"
        torch.testing.assert_close(a, b, **F64)


def _cuba_lif(**kw) -> neurons.CubaLIFNode:
    """Norse's ``LIF(LIFParameters(SYN, MEM), dt=DT)`` (the migration table's row)."""
    return neurons.CubaLIFNode(
        tau_syn=1 / SYN, tau_mem=1 / MEM, r=(1 / SYN) / DT, dt=DT, v_threshold=1.0,
        v_reset=0.0, strict_firing=True, surrogate_function=surrogate.SuperSpike(alpha=1.0),
        **kw,
    )  # fmt: skip


@pytest.mark.parametrize("tau_filter_inv", [1e3, 250.0])
def test_exp_filter(float64, tau_filter_inv):
    _norse()
    from norse.torch.module.exp_filter import ExpFilter

    theirs = ExpFilter(5, 3, tau_filter_inv=tau_filter_inv, dt=DT)
    alpha = math.exp(-DT * tau_filter_inv)
    ours = nn.Sequential(
        layers.Linear(5, 3), neurons.LINode(tau=1 / (1 - alpha), decay_input=False)
    )
    with torch.no_grad():
        ours[0].weight.copy_(theirs.linear.weight)
        ours[0].bias.copy_(theirs.linear.bias)
    x = torch.rand(12, 4, 5)
    g = torch.randn(12, 4, 3)
    x_norse, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = theirs(x_norse), ours(x_sf)
    torch.testing.assert_close(got, want, **F64)
    want_grads = _grads(want, [x_norse, theirs.linear.weight, theirs.linear.bias], g)
    _close_all(_grads(got, [x_sf, ours[0].weight, ours[0].bias], g), want_grads)


@pytest.mark.parametrize("v_leak", [0.0, 0.3])
def test_li_box_cell(float64, v_leak):
    norse = _norse()
    from norse.torch.functional.leaky_integrator_box import LIBoxParameters

    p = LIBoxParameters(tau_mem_inv=torch.tensor(MEM), v_leak=torch.tensor(v_leak))
    cell = norse.LIBoxCell(p, dt=DT)
    ours = neurons.LINode(tau=1 / (DT * MEM), v_leak=v_leak)
    x = torch.randn(15, 3, 4) * 5
    g = torch.randn(15, 3, 4)
    x_norse, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, state = [], None
    for x_t in x_norse:
        v, state = cell(x_t, state)
        out.append(v)
    want, got = torch.stack(out), ours(x_sf)
    torch.testing.assert_close(got, want, **F64)
    _close_all(_grads(got, [x_sf], g), _grads(want, [x_norse], g))


def test_li_box_step_with_weights(float64):
    _norse()
    from norse.torch.functional.leaky_integrator_box import (
        LIBoxParameters,
        LIBoxState,
        li_box_step,
    )

    p = LIBoxParameters(tau_mem_inv=torch.tensor(MEM), v_leak=torch.tensor(0.2))
    w = torch.randn(3, 4).requires_grad_()
    ours = nn.Sequential(
        layers.Linear(4, 3, bias=False), neurons.LINode(tau=1 / (DT * MEM), v_leak=0.2)
    )
    with torch.no_grad():
        ours[0].weight.copy_(w)
    x = torch.rand(10, 2, 4) * 5
    state, out = LIBoxState(torch.full((2, 3), 0.2)), []
    for x_t in x:
        v, state = li_box_step(x_t, state, w, p, DT)
        out.append(v)
    want, got = torch.stack(out), ours(x)
    torch.testing.assert_close(got, want, **F64)
    g = torch.randn_like(want)
    _close_all(_grads(got, [ours[0].weight], g), _grads(want, [w], g))


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), [(1, 0, 1, 1), (2, 1, 2, 2)])
def test_lconv2d(float64, stride, padding, dilation, groups):
    norse = _norse()
    theirs = norse.LConv2d(4, 6, 3, stride=stride, padding=padding, dilation=dilation,
                           groups=groups)  # fmt: skip
    ours = layers.Conv2d(4, 6, 3, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=False)  # fmt: skip
    with torch.no_grad():
        ours.weight.copy_(theirs.weight[..., 0])
    x = torch.randn(5, 2, 4, 9, 9)
    x_norse, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = theirs(x_norse), ours(x_sf)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, **F64)
    g = torch.randn_like(want)
    got_grads = _grads(got, [x_sf, ours.weight], g)
    want_x, want_w = _grads(want, [x_norse, theirs.weight], g)
    _close_all(got_grads, [want_x, want_w[..., 0]])


def _dense_lif_step_loop(x, w_in, w_rec, masked):
    """Norse's ``lif_step_sparse`` written densely (``threshold`` is Norse's SuperSpike,
    alpha 100). ``masked``: the spikes reach the output and the recurrence through
    ``z * [z != 0]``, i.e. with a gradient only where a spike happened, which is what a
    sparse tensor's gradient is (its values are its nonzeros); the reset uses the dense
    ``z``, as Norse's does."""
    from norse.torch.functional.threshold import threshold

    z = v = i = torch.zeros(x.shape[1], w_in.shape[0])
    out = []
    for x_t in x:
        seen = z * (z.detach() != 0) if masked else z
        i = i + x_t @ w_in.t() + seen @ w_rec.t()
        v = v + DT * MEM * (-v + i)
        i = i - DT * SYN * i
        z = threshold(v - 1.0, "super", 100.0)
        v = (1 - z) * v
        out.append(z * (z.detach() != 0) if masked else z)
    return torch.stack(out)


def test_lif_step_sparse(float64):
    """Norse's sparse step fires as the dense recurrent LIF stack (the reset not detached:
    the sparse step does not detach it); its gradients are the dense ones with the spike
    tensor's gradient kept only where a spike happened (sparse autograd), so they differ
    from the stack's (and from Norse's dense ``lif_step``'s)."""
    _norse()
    from norse.torch.functional.lif import LIFParameters, LIFState, lif_step_sparse

    n_in, n, batch = 5, 6, 4
    torch.manual_seed(0)
    w_in = (torch.randn(n, n_in) * 2.0).requires_grad_()
    w_rec = (torch.randn(n, n) * 0.5).requires_grad_()
    x = (torch.rand(30, batch, n_in) < 0.6).double()
    p = LIFParameters(tau_syn_inv=torch.tensor(SYN), tau_mem_inv=torch.tensor(MEM))
    zero = torch.zeros(batch, n)
    state = LIFState(zero.to_sparse(), zero, zero)
    out = []
    for x_t in x:
        z, state = lif_step_sparse(x_t.to_sparse(), state, w_in, w_rec, p, DT)
        assert z.is_sparse
        out.append(z.to_dense())
    want = torch.stack(out)
    ours = nn.Sequential(
        layers.Linear(n_in, n, bias=False),
        layers.Recurrent(_cuba_lif(step_mode="s"), n, self_connections=True),
    )
    with torch.no_grad():
        ours[0].weight.copy_(w_in)
        ours[1].recurrent.weight.copy_(w_rec)
    got = ours(x)
    assert torch.equal(got, want)
    assert 0.05 < want.mean().item() < 0.95
    g = torch.randn_like(want)
    got_grads = _grads(got, [ours[0].weight, ours[1].recurrent.weight], g)
    want_grads = _grads(want, [w_in, w_rec], g)
    # the stack's gradients are the dense step's ...
    dense = _dense_lif_step_loop(x, w_in, w_rec, False)
    _close_all(got_grads, _grads(dense, [w_in, w_rec], g))
    # ... Norse's sparse step's the masked ones, which differ
    masked = _dense_lif_step_loop(x, w_in, w_rec, True)
    _close_all(_grads(masked, [w_in, w_rec], g), want_grads)
    assert not torch.allclose(got_grads[0], want_grads[0])


@pytest.mark.parametrize("kind", ["spikes", "voltage"])
def test_regularization_cell(float64, kind):
    norse = _norse()
    from norse.torch.functional.regularization import spike_accumulator, voltage_accumulator

    accumulator = spike_accumulator if kind == "spikes" else voltage_accumulator
    p = norse.LIFParameters(tau_syn_inv=torch.tensor(SYN), tau_mem_inv=torch.tensor(MEM))
    cell = norse.LIFCell(p, dt=DT)
    regularizer = norse.RegularizationCell(accumulator)
    x = torch.rand(25, 3, 4) * 8
    x_norse, x_sf = x.clone().requires_grad_(), x.clone().requires_grad_()
    state = None
    for x_t in x_norse:
        z, state = cell(x_t, state)
        _, term = regularizer(z, state)
    node = _cuba_lif(store_v_seq=True)
    spikes = node(x_sf)
    if kind == "spikes":
        got = losses.l1_rate_sparsity(spikes, strength=1.0, reduction="sum")
        assert 0.05 < spikes.mean().item() < 0.95
    else:
        got = node.v_seq.sum(0)
    torch.testing.assert_close(got, term, **F64)
    g = torch.randn_like(term)
    _close_all(_grads(got, [x_sf], g), _grads(term, [x_norse], g))


def _norse_stdp_rule(algorithm: str, p, dt: float):
    """docs/norse_equivalents.md's ``f_pre``/``f_post`` and trace constants for Norse's
    ``STDPParameters``: Norse's traces are ``k·a`` times the learner's (``k = dt·τ⁻¹``)."""
    k_pre, k_post = dt * float(p.tau_pre_inv), dt * float(p.tau_post_inv)
    plus, minus = p.eta_plus * k_pre * float(p.a_pre), p.eta_minus * k_post * float(p.a_post)
    if algorithm == "additive":
        f_post, f_pre = (lambda w: torch.full_like(w, plus)), (lambda w: torch.full_like(w, minus))
    else:  # multiplicative_relu
        f_post = lambda w: plus * (p.w_max - w).clamp(min=0)  # noqa: E731
        f_pre = lambda w: minus * (w - p.w_min).clamp(min=0)  # noqa: E731
    return dict(tau_pre=1 / k_pre, tau_post=1 / k_post, f_pre=f_pre, f_post=f_post)


@pytest.mark.parametrize("algorithm", ["additive", "multiplicative_relu"])
@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_stdp_step_online(float64, algorithm, kind):
    """Norse's online STDP (``stdp_step_linear`` / ``stdp_step_conv2d`` after every step
    of a LIF layer, weights clamped) is ``learn.STDPLearner`` on the streamed layer, its
    ``Δw`` added after every step: the same spikes and weights."""
    norse = _norse()
    from norse.torch.functional.stdp import (
        STDPParameters,
        STDPState,
        stdp_step_conv2d,
        stdp_step_linear,
    )

    from spikeflow import functional
    from spikeflow.learn import STDPLearner

    steps, batch = 60, 2
    conv = kind == "conv2d"
    p = STDPParameters(eta_plus=2e-2, eta_minus=1.5e-2, a_pre=torch.as_tensor(2.0),
                       stdp_algorithm=algorithm, convolutional=conv, padding=1)  # fmt: skip
    if conv:
        pre = (torch.rand(steps, batch, 2, 6, 6) < 0.3).double()
        w0, norse_step = torch.rand(3, 2, 3, 3) * 0.5, stdp_step_conv2d
        layer = layers.Conv2d(2, 3, 3, padding=1, bias=False, step_mode="s")
        synapse = lambda x, w: torch.nn.functional.conv2d(x, w, padding=1)  # noqa: E731
        post_shape, scale = (batch, 3, 6, 6), 1.0
    else:
        pre = (torch.rand(steps, batch, 12) < 0.3).double()
        w0, norse_step = torch.rand(4, 12) * 0.5, stdp_step_linear
        layer = layers.Linear(12, 4, bias=False, step_mode="s")
        synapse, post_shape, scale = torch.nn.functional.linear, (batch, 4), 2.0
    cell = norse.LIFCell(norse.LIFParameters(), dt=DT)
    w, state, s, want = w0.clone(), None, None, []
    for x_t in pre:
        if state is None:
            state = STDPState(torch.zeros_like(x_t), torch.zeros(post_shape))
        z, s = cell(synapse(x_t, w) * scale, s)
        w, state = norse_step(x_t, z, w, state, p, DT)
        want.append(z)

    node = _cuba_lif(step_mode="s")
    with torch.no_grad():
        layer.weight.copy_(w0)
    learner = STDPLearner(layer, node, **_norse_stdp_rule(algorithm, p, DT))
    got = []
    with functional.streaming(node), torch.no_grad():
        for x_t in pre:
            got.append(node(layer(x_t) * scale))
            layer.weight += learner.step(on_grad=False)
            layer.weight.clamp_(p.w_min, p.w_max)
    want, got = torch.stack(want), torch.stack(got)
    assert torch.equal(got, want) and 0.02 < got.mean() < 0.98
    assert (w - w0).abs().max() > 0.05  # the weights moved
    torch.testing.assert_close(layer.weight, w, **F64)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Norse's
def test_plots_and_probes_rows():
    """docs/migration.md's table of Norse's plots and hooks: ``plot.heatmap`` draws Norse's
    ``plot_heatmap_2d`` / ``plot_spikes_2d`` image, and the other rows run as written."""
    _norse()
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from norse.torch.utils.plot.plot import plot_heatmap_2d, plot_spikes_2d

    from spikeflow import monitor, plot

    torch.manual_seed(0)
    node = _cuba_lif(store_v_seq=True)
    spikes = node(torch.rand(40, 1, 6) * 4)[:, 0]  # [T, N]
    assert 0 < spikes.sum() < spikes.numel()
    for norse_plot, ours in (
        (plot_heatmap_2d, lambda x, ax: plot.heatmap(x, ax, colorbar=False)),
        (plot_spikes_2d, lambda x, ax: plot.heatmap(x, ax, colorbar=False, cmap="binary")),
    ):
        fig, (ax_norse, ax_ours) = plt.subplots(1, 2)
        plt.sca(ax_norse)  # Norse draws with plt.imshow on the current Axes
        norse_plot(spikes, ax_norse)
        ours(spikes, ax_ours)
        want, got = ax_norse.images[-1], ax_ours.images[-1]
        assert np.array_equal(np.asarray(got.get_array()), np.asarray(want.get_array()))
        assert got.get_cmap().name == want.get_cmap().name
        plt.close(fig)
    plot.raster(spikes)
    plot.membrane(node.v_seq[:, 0], spikes, 1.0)
    plt.close("all")
    net = nn.Sequential(layers.Linear(6, 4), _cuba_lif())
    with monitor.OutputMonitor(net, neurons.BaseNode, lambda s: s.mean().item()) as probe:
        out = net(torch.rand(10, 2, 6) * 4)
    assert probe.records == [out.mean().item()]
