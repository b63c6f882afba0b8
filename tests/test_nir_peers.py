"""NIR against real peers: spikeflow -> snnTorch / Norse and snnTorch / Norse -> spikeflow.

Each test runs the same input through both libraries and compares spikes exactly
(membrane read-outs to float32 rounding). The peers' conventions are in docs/nir.md.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.interop import export_to_nir, import_from_nir

pytest.importorskip("nir", reason="the nir extra is not installed")
pytest.importorskip("nirtorch", reason="the nir extra is not installed")


def _snntorch():
    return pytest.importorskip("snntorch", reason="snnTorch (test-only peer) is not installed")


def _norse():
    return pytest.importorskip("norse.torch", reason="Norse (test-only peer) is not installed")


@contextlib.contextmanager
def _quiet():
    """The peers print and log warnings while converting; keep the test output clean."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _weights(net: nn.Module, gain: float = 3.0) -> None:
    """Weights with a positive mean that scales as 1/fan-in, so every layer fires sometimes."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.uniform_(-1.0, 2.0).mul_(gain / fan_in)
                if m.bias is not None:
                    m.bias.uniform_(-0.05, 0.05)


def _step_through(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a peer's per-step module (returns ``(output, state)``) over ``[T, B, ...]``."""
    state, outputs = None, []
    for x_t in x:
        out, state = module(x_t, state)
        outputs.append(out)
    return torch.stack(outputs)


def _active(spikes: torch.Tensor) -> None:
    assert 0 < spikes.sum() < spikes.numel(), "the comparison needs spikes and silences"


# -- spikeflow -> peers ---------------------------------------------------------------


def test_spikeflow_to_snntorch_dense():
    _snntorch()
    from snntorch.import_nir import import_from_nir as snn_import

    net = nn.Sequential(
        layers.Linear(5, 16),
        neurons.LIFNode(tau=3.0, decay_input=False, strict_firing=True),
        layers.Linear(16, 12),
        neurons.LIFNode(tau=2.0, decay_input=True, strict_firing=True),
        layers.Linear(12, 6),
        # snnTorch reads CubaLIF only with r = tau_mem / dt (its Synaptic has no r).
        neurons.CubaLIFNode(tau_syn=2.0, tau_mem=4.0, r=4.0, strict_firing=True),
    )
    _weights(net)
    x = torch.rand(30, 3, 5) * 1.5
    expected = net(x)
    _active(expected)
    with _quiet():
        peer = snn_import(export_to_nir(net, x, dt=1e-4))
        got = _step_through(peer, x)
    assert torch.equal(got, expected)


def test_spikeflow_to_snntorch_conv():
    _snntorch()
    from snntorch.import_nir import import_from_nir as snn_import

    net = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1),
        neurons.LIFNode(tau=2.0, decay_input=False, strict_firing=True),
        layers.AvgPool2d(2),
        layers.Conv2d(4, 3, 3),
        neurons.LIFNode(tau=4.0, decay_input=False, strict_firing=True),
    )
    _weights(net)
    x = (torch.rand(12, 2, 2, 10, 10) < 0.5).float()
    expected = net(x)
    _active(expected)
    with _quiet():
        peer = snn_import(export_to_nir(net, x, dt=1e-4))
        got = _step_through(peer, x)
    assert torch.equal(got, expected)


def test_spikeflow_to_norse_dense():
    norse = _norse()
    net = nn.Sequential(
        layers.Linear(5, 16),
        neurons.LIFNode(tau=2.0, strict_firing=True),
        layers.Linear(16, 12),
        neurons.IFNode(strict_firing=True),
        layers.Linear(12, 6),
        neurons.CubaLIFNode(tau_syn=2.0, tau_mem=4.0, strict_firing=True),
    )
    _weights(net)
    x = torch.rand(30, 3, 5) * 1.5
    expected = net(x)
    _active(expected)
    with _quiet():
        peer = norse.from_nir(export_to_nir(net, x, dt=1e-3), ignore_warnings=True)
        got = _step_through(peer, x)
    assert torch.equal(got, expected)


def test_spikeflow_to_norse_conv():
    norse = _norse()
    net = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1),
        neurons.IFNode(strict_firing=True),
        layers.AvgPool2d(2, divisor_override=1),  # NIR SumPool2d (Norse has no AvgPool2d)
        layers.Conv2d(4, 3, 3),
        neurons.LIFNode(tau=2.0, strict_firing=True),
    )
    _weights(net)
    x = (torch.rand(12, 2, 2, 10, 10) < 0.5).float()
    expected = net(x)
    _active(expected)
    with _quiet():
        peer = norse.from_nir(export_to_nir(net, x, dt=1e-3), ignore_warnings=True)
        got = _step_through(peer, x)
    assert torch.equal(got, expected)


# -- peers -> spikeflow ---------------------------------------------------------------


def test_snntorch_to_spikeflow():
    snn = _snntorch()
    from snntorch import utils
    from snntorch.export_nir import export_to_nir as snn_export

    def full(value, n):
        return torch.full((n,), value)

    # NIR's reset: to zero in the same step (snnTorch's defaults subtract, one step late).
    kw = {"init_hidden": True, "reset_mechanism": "zero", "reset_delay": False}
    net = nn.Sequential(
        nn.Linear(4, 16),
        snn.Leaky(beta=full(0.8, 16), threshold=full(1.0, 16), **kw),
        nn.Linear(16, 8),
        snn.Synaptic(alpha=full(0.7, 8), beta=full(0.85, 8), threshold=full(1.0, 8), **kw),
        nn.Linear(8, 6),
        snn.RLeaky(beta=full(0.9, 6), threshold=full(1.0, 6), linear_features=6, **kw),
        nn.Linear(6, 3),
        snn.Leaky(beta=full(0.9, 3), threshold=full(1.0, 3), **kw),
    )
    _weights(net)
    x = torch.rand(30, 2, 4)
    with _quiet():
        graph = snn_export(net, x[0], ignore_dims=[0])
        utils.reset(net)
        expected = torch.stack([net(x_t) for x_t in x])
    _active(expected)
    imported = import_from_nir(graph, convention="snntorch")
    assert any(len(block) > 1 for block in imported.plan)  # RLeaky became a cycle
    assert torch.equal(imported(x), expected)


def test_norse_to_spikeflow():
    norse = _norse()
    net = norse.SequentialState(
        nn.Linear(4, 16),
        norse.LIFBoxCell(),
        nn.Linear(16, 8),
        norse.IAFCell(),
        nn.Linear(8, 6),
        norse.LIFCell(),  # exported as CubaLIF
    )
    _weights(net, gain=8.0)
    x = torch.rand(30, 2, 4)
    with _quiet():
        graph = norse.to_nir(net, x[0])
        expected = _step_through(net, x)
    _active(expected)
    assert torch.equal(import_from_nir(graph, convention="norse")(x), expected)


def test_norse_leaky_integrator_readout():
    norse = _norse()
    net = norse.SequentialState(
        nn.Linear(4, 8), norse.LIFBoxCell(), nn.Linear(8, 3), norse.LIBoxCell()
    )
    _weights(net)
    x = torch.rand(30, 2, 4)
    with _quiet():
        graph = norse.to_nir(net, x[0])
        expected = _step_through(net, x)
    got = import_from_nir(graph, convention="norse")(x)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_norse_graph_needs_the_norse_convention():
    """Norse writes tau as dt * tau: read as plain NIR, its time constants are too short."""
    norse = _norse()
    net = norse.SequentialState(nn.Linear(4, 8), norse.LIFBoxCell())
    with _quiet():
        graph = norse.to_nir(net, torch.rand(2, 4))
    with pytest.raises(ValueError, match="shorter than one step"):
        import_from_nir(graph, dt=1e-3)


def test_norse_conv_to_spikeflow():
    norse = _norse()
    net = norse.SequentialState(
        nn.Conv2d(2, 4, 3, padding=1), norse.LIFBoxCell(), nn.Conv2d(4, 3, 3), norse.IAFCell()
    )
    _weights(net, gain=8.0)
    x = (torch.rand(12, 2, 2, 8, 8) < 0.5).float()
    with _quiet():
        graph = norse.to_nir(net, x[0])
        expected = _step_through(net, x)
    _active(expected)
    assert torch.equal(import_from_nir(graph, convention="norse")(x), expected)


def test_snntorch_conv_to_spikeflow():
    """snnTorch exports a conv network (Conv2d, Leaky, AvgPool2d, Flatten, Linear)."""
    snn = _snntorch()
    from snntorch import utils
    from snntorch.export_nir import export_to_nir as snn_export

    def leaky(beta, *shape):
        # Per-neuron β and threshold of the layer's full shape: with scalars snnTorch's
        # exporter writes 0-d parameters and fails NIR's type inference on conv layers.
        return snn.Leaky(
            beta=torch.full(shape, beta),
            threshold=torch.ones(shape),
            init_hidden=True,
            reset_mechanism="zero",
        )

    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        leaky(0.8, 4, 10, 10),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 3, 3),
        leaky(0.9, 3, 3, 3),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 5),
        leaky(0.85, 5),
    )
    _weights(net)
    x = (torch.rand(12, 2, 2, 10, 10) < 0.5).float()
    with _quiet():
        graph = snn_export(net, x[0], ignore_dims=[0])
        utils.reset(net)
        expected = torch.stack([net(x_t) for x_t in x])
        hidden = torch.stack([net[:2](x_t) for x_t in x])  # first LIF layer (state reused)
    _active(expected)
    assert hidden.sum() > 0
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"Conv2d", "AvgPool2d", "Flatten"}
    assert torch.equal(import_from_nir(graph, convention="snntorch")(x), expected)


def _recurrent_net(decay_input: bool) -> nn.Module:
    """Linear -> LinearRecurrentContainer(LIF): s[t] = LIF(W_x u[t] + b + W_y s[t-1])."""
    lif = neurons.LIFNode(tau=2.0, decay_input=decay_input, strict_firing=True, step_mode="s")
    net = nn.Sequential(layers.Linear(4, 6), layers.LinearRecurrentContainer(lif, 6, 6))
    _weights(net)
    with torch.no_grad():
        net[1].rc.weight[:, 6:].uniform_(-0.6, 0.6)  # W_y: mixed-sign feedback
    return net


def test_spikeflow_recurrent_to_norse():
    """A cycle exported by spikeflow (Affine -> LIF <-> Linear) runs in Norse exactly."""
    norse = _norse()
    net = _recurrent_net(decay_input=True)  # r = 1: Norse ignores r
    x = torch.rand(30, 2, 4) * 1.5
    expected = net(x)
    _active(expected)
    with torch.no_grad():
        no_feedback = net[1].rc.weight.clone()
        no_feedback[:, 6:] = 0
        ablated = _recurrent_net(decay_input=True)
        ablated.load_state_dict(net.state_dict())
        ablated[1].rc.weight.copy_(no_feedback)
    assert not torch.equal(ablated(x), expected)  # the feedback matters
    graph = export_to_nir(net, x, dt=1e-3)
    assert any(b in graph.edges and b[::-1] in graph.edges for b in graph.edges)  # a cycle
    with _quiet():
        got = _step_through(norse.from_nir(graph, ignore_warnings=True), x)
    assert torch.equal(got, expected)


def test_spikeflow_recurrent_layer_to_norse():
    """layers.Recurrent exported (LIF <-> Linear, the input straight into the cell)
    runs in Norse exactly."""
    norse = _norse()
    lif = neurons.LIFNode(tau=2.0, strict_firing=True, step_mode="s")
    net = nn.Sequential(layers.Linear(4, 6), layers.Recurrent(lif, 6, self_connections=False))
    _weights(net)
    with torch.no_grad():
        net[1].recurrent.weight.uniform_(-0.6, 0.6)
    x = torch.rand(30, 2, 4) * 1.5
    expected = net(x)
    _active(expected)
    graph = export_to_nir(net, x, dt=1e-3)
    with _quiet():
        got = _step_through(norse.from_nir(graph, ignore_warnings=True), x)
    assert torch.equal(got, expected)
    with torch.no_grad():
        net[1].recurrent.weight.zero_()
    assert not torch.equal(net(x), expected)  # the feedback mattered


def test_spikeflow_recurrent_to_snntorch_feeds_the_input_through_the_recurrent_weight():
    """snnTorch's importer rewires a LIF <-> W_rec cycle so that the cell's input also
    passes through W_rec: it computes s[t] = LIF(W_rec (W_x u[t] + b) + W_rec s[t-1])
    where NIR (and spikeflow) mean s[t] = LIF(W_x u[t] + b + W_rec s[t-1])."""
    _snntorch()
    from snntorch.import_nir import import_from_nir as snn_import

    net = _recurrent_net(decay_input=False)  # r = tau/dt: snnTorch's Leaky without scaling
    x = torch.rand(30, 2, 4) * 1.5
    expected = net(x)
    _active(expected)
    with _quiet():
        got = _step_through(snn_import(export_to_nir(net, x, dt=1e-4)), x)
    assert not torch.equal(got, expected)
    with torch.no_grad():
        u = net[0](x)
        w = net[1].rc.weight
        w_x, w_y, b = w[:, :6], w[:, 6:], net[1].rc.bias
        beta = 1.0 - 1.0 / 2.0
        mem, s, rewired = torch.zeros(2, 6), torch.zeros(2, 6), []
        for u_t in u:
            mem = beta * mem + (u_t @ w_x.T + b) @ w_y.T + s @ w_y.T
            s = (mem > 1.0).float()
            mem = mem * (1 - s)
            rewired.append(s)
    assert torch.equal(got, torch.stack(rewired))


@pytest.mark.parametrize(
    ("mechanism", "delay", "same"),
    [
        ("zero", False, True),
        ("zero", True, True),
        ("subtract", True, False),
        ("subtract", False, False),
    ],
)
def test_snntorch_reset_conventions(mechanism, delay, same):
    """snnTorch exports v_reset = 0 whatever the reset: only reset_mechanism='zero' gives the
    graph's spikes. reset_delay only changes when the returned membrane is zeroed (the next
    step zeroes the old membrane before adding the input), not the spikes; 'subtract' (the
    default) does give different spikes."""
    snn = _snntorch()
    from snntorch import utils
    from snntorch.export_nir import export_to_nir as snn_export

    kw = {"init_hidden": True, "reset_mechanism": mechanism, "reset_delay": delay}
    net = nn.Sequential(
        nn.Linear(4, 16),
        snn.Leaky(beta=torch.full((16,), 0.8), threshold=torch.ones(16), **kw),
        nn.Linear(16, 3),
        snn.Leaky(beta=torch.full((3,), 0.9), threshold=torch.ones(3), **kw),
    )
    _weights(net)
    x = torch.rand(30, 2, 4)
    with _quiet():
        graph = snn_export(net, x[0], ignore_dims=[0])
        utils.reset(net)
        expected = torch.stack([net(x_t) for x_t in x])
    _active(expected)
    assert torch.equal(import_from_nir(graph, convention="snntorch")(x), expected) is same


@pytest.mark.parametrize(
    ("cell", "survives"), [("LIFBoxCell", False), ("LIFCell", False), ("IAFCell", True)]
)
def test_norse_own_round_trip_breaks_its_leaky_cells(cell, survives):
    """Norse's exporter writes tau = dt / tau_inv (tau·dt), its importer reads tau as NIR
    defines it: Norse -> NIR -> Norse changes the spikes of every leaky cell (the IAF cell
    has no time constant). spikeflow's convention='norse' reads the same graph exactly."""
    norse = _norse()
    net = norse.SequentialState(nn.Linear(4, 8), getattr(norse, cell)())
    _weights(net, gain=8.0)
    x = torch.rand(30, 2, 4)
    with _quiet():
        graph = norse.to_nir(net, x[0])
        expected = _step_through(net, x)
        round_trip = _step_through(norse.from_nir(graph, ignore_warnings=True), x)
    _active(expected)
    assert torch.equal(round_trip, expected) is survives
    assert torch.equal(import_from_nir(graph, convention="norse")(x), expected)


def test_peer_importer_limits():
    """What docs/nir.md says the peers' importers cannot read, checked."""
    _snntorch()
    norse = _norse()
    from snntorch.import_nir import import_from_nir as snn_import

    x = torch.rand(6, 3, 4)
    # snnTorch cannot read IF (it asserts r = 1; spikeflow's IF has r = 1/dt).
    if_net = nn.Sequential(layers.Linear(4, 5), neurons.IFNode(strict_firing=True))
    with _quiet(), pytest.raises(AssertionError, match="r != 1"):
        snn_import(export_to_nir(if_net, x, dt=1e-4))
    # Norse has no AvgPool2d and no LI: with ignore_warnings it drops those nodes.
    images = torch.rand(6, 3, 2, 6, 6)
    pooled = nn.Sequential(layers.Conv2d(2, 3, 3, padding=1), neurons.IFNode(), layers.AvgPool2d(2))
    readout = nn.Sequential(layers.Linear(4, 3), neurons.LINode(tau=2.0))
    with _quiet():
        peer_pool = norse.from_nir(export_to_nir(pooled, images, dt=1e-3), ignore_warnings=True)
        peer_li = norse.from_nir(export_to_nir(readout, x, dt=1e-3), ignore_warnings=True)
        assert _step_through(peer_pool, images).shape == (6, 3, 3, 6, 6)  # not pooled
        torch.testing.assert_close(_step_through(peer_li, x), readout[0](x))  # no integrator
    # Norse ignores r: LIFNode(decay_input=False) (r = tau) does not survive it.
    undecayed = nn.Sequential(
        layers.Linear(4, 6), neurons.LIFNode(tau=2.0, decay_input=False, strict_firing=True)
    )
    _weights(undecayed)
    spikes = undecayed(x * 1.5)
    _active(spikes)
    with _quiet():
        peer = norse.from_nir(export_to_nir(undecayed, x, dt=1e-3), ignore_warnings=True)
        assert not torch.equal(_step_through(peer, x * 1.5), spikes)
    # Both flatten with NIR's per-sample dims on batched tensors: batch > 1 breaks.
    flat = nn.Sequential(
        layers.Conv2d(2, 3, 3),
        neurons.LIFNode(tau=2.0, decay_input=False),
        layers.Flatten(),
        layers.Linear(3 * 4 * 4, 5),
    )
    with _quiet():
        peers = (
            snn_import(export_to_nir(flat, images, dt=1e-4)),
            norse.from_nir(export_to_nir(flat, images, dt=1e-3), ignore_warnings=True),
        )
    for peer in peers:
        with _quiet(), pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
            _step_through(peer, images)
