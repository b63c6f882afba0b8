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
