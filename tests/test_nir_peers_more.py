"""More NIR peer checks: branches, Conv1d/SumPool2d, snnTorch's recurrent variants, which
nodes each peer's importer reads, and what a peer runs for a converted (soft-reset) graph.

Same rules as tests/test_nir_peers.py: identical spikes, or the peer's own behaviour
pinned where docs/nir.md says it differs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.conversion import ConversionIFNode, constant_input, convert
from spikeflow.errors import ShapeError
from spikeflow.interop import Scale, Threshold, export_to_nir, import_from_nir, write_nir
from test_nir_peers import _active, _norse, _quiet, _snntorch, _step_through, _weights

nir = pytest.importorskip("nir", reason="the nir extra is not installed")
pytest.importorskip("nirtorch", reason="the nir extra is not installed")


class _Branches(nn.Module):
    """a = LIF(W1 x); b = LIF(W2 a); out = LIF(W3 (a + b)): two edges into one node."""

    def __init__(self, decay_input: bool) -> None:
        super().__init__()

        def lif():
            return neurons.LIFNode(tau=2.0, decay_input=decay_input, strict_firing=True)

        self.l1, self.n1 = layers.Linear(4, 8), lif()
        self.l2, self.n2 = layers.Linear(8, 8), lif()
        self.l3, self.n3 = layers.Linear(8, 3), lif()

    def forward(self, x):
        a = self.n1(self.l1(x))
        b = self.n2(self.l2(a))
        return self.n3(self.l3(a + b))


def _branch_net(decay_input: bool) -> nn.Module:
    torch.manual_seed(3)
    net = _Branches(decay_input)
    _weights(net, gain=4.0)
    return net


@pytest.mark.parametrize("peer", ["snntorch", "norse"])
def test_spikeflow_branches_to_peers(peer):
    """An addition of two branches (a residual) is two NIR edges into one node; both peers
    sum them, as spikeflow does."""
    # snnTorch's Leaky needs r = tau/dt (decay_input=False); Norse ignores r (use r = 1).
    net = _branch_net(decay_input=peer == "norse")
    x = torch.rand(30, 2, 4) * 1.5
    expected = net(x)
    _active(expected)
    _active(net.n2(net.l2(net.n1(net.l1(x)))))  # the second branch carries spikes too
    with _quiet():
        if peer == "snntorch":
            _snntorch()
            from snntorch.import_nir import import_from_nir as snn_import

            graph = export_to_nir(net, x, dt=1e-4)
            imported = snn_import(graph)
        else:
            graph = export_to_nir(net, x, dt=1e-3)
            imported = _norse().from_nir(graph, ignore_warnings=True)
        got = _step_through(imported, x)
    assert ("n1", "l3") in graph.edges and ("n2", "l3") in graph.edges
    assert torch.equal(got, expected)


def test_spikeflow_conv1d_and_sumpool_to_snntorch():
    _snntorch()
    from snntorch.import_nir import import_from_nir as snn_import

    def lif(tau):
        return neurons.LIFNode(tau=tau, decay_input=False, strict_firing=True)

    conv1d = nn.Sequential(
        layers.Conv1d(2, 4, 3, padding=1), lif(2.0), layers.Conv1d(4, 3, 3), lif(3.0)
    )
    pooled = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1),
        lif(2.0),
        layers.AvgPool2d(2, divisor_override=1),
        layers.Conv2d(4, 3, 3),
        lif(2.0),
    )
    torch.manual_seed(6)
    for net, x in (
        (conv1d, torch.rand(12, 2, 2, 10) < 0.5),
        (pooled, torch.rand(12, 2, 2, 10, 10) < 0.5),
    ):
        _weights(net)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.Conv1d):  # _weights covers Linear and Conv2d only
                    m.weight.uniform_(-1.0, 2.0).mul_(3.0 / m.weight[0].numel())
        x = x.float()
        expected = net(x)
        _active(expected)
        graph = export_to_nir(net, x, dt=1e-4)
        kinds = {type(n).__name__ for n in graph.nodes.values()}
        assert kinds & {"Conv1d", "SumPool2d"}
        with _quiet():
            got = _step_through(snn_import(graph), x)
        assert torch.equal(got, expected)


def _snntorch_run(net, x):
    from snntorch import utils

    with _quiet(), torch.no_grad():
        utils.reset(net)
        return torch.stack([net(x_t) for x_t in x])


def test_snntorch_recurrent_bias_and_diagonal_rleaky_to_spikeflow():
    """snnTorch's RLeaky with a biased recurrent nn.Linear and with one recurrent weight per
    neuron (all_to_all=False: a diagonal W_rec) import exactly. The bias enters at the
    first step already (W_rec s[-1] + b with s[-1] = 0): the back edge of a cycle starts
    from the recurrent node's output for zero input, not from 0."""
    snn = _snntorch()
    from snntorch.export_nir import export_to_nir as snn_export

    kw = {"init_hidden": True, "reset_mechanism": "zero", "reset_delay": False}
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Linear(4, 5),
        snn.RLeaky(beta=torch.full((5,), 0.85), threshold=torch.ones(5), linear_features=5, **kw),
        nn.Linear(5, 4),
        snn.RLeaky(
            beta=torch.full((4,), 0.8),
            threshold=torch.ones(4),
            all_to_all=False,
            V=torch.linspace(-0.8, 0.8, 4),
            **kw,
        ),
    )
    _weights(net)
    with torch.no_grad():
        net[1].recurrent.weight.uniform_(-0.5, 0.5)
        net[1].recurrent.bias.fill_(0.7)
    x = torch.rand(20, 2, 4)
    with _quiet():
        graph = snn_export(net, x[0], ignore_dims=[0])
    expected = _snntorch_run(net, x)
    _active(expected)
    _active(_snntorch_run(net[:2], x))
    assert type(graph.nodes["1.w_rec"]).__name__ == "Affine"
    imported = import_from_nir(graph, convention="snntorch")
    assert sum(len(block) > 1 for block in imported.plan) == 2  # two cycles
    assert torch.equal(imported(x), expected)
    # What the recurrence adds matters: without the bias, or the diagonal, spikes change.
    with torch.no_grad():
        net[1].recurrent.bias.zero_()
        assert not torch.equal(_snntorch_run(net, x), expected)
        net[1].recurrent.bias.fill_(0.7)
        net[3].recurrent.V.zero_()
        assert not torch.equal(_snntorch_run(net, x), expected)


def test_snntorch_rsynaptic_resets_its_current_too():
    """snnTorch's RSynaptic exports as a CubaLIF cycle (w_in = tau_syn/dt), but its "zero"
    reset also clears the synaptic current (one step late, reset_delay=True), which NIR's
    CubaLIF (reset of v only) does not express: the spikes differ. With reset_delay=False
    snnTorch 1.0 cannot export it at all."""
    snn = _snntorch()
    from snntorch.export_nir import export_to_nir as snn_export

    torch.manual_seed(4)
    cell = snn.RSynaptic(
        alpha=torch.full((6,), 0.6),
        beta=torch.full((6,), 0.8),
        threshold=torch.ones(6),
        linear_features=6,
        init_hidden=True,
        reset_mechanism="zero",
    )
    net = nn.Sequential(nn.Linear(4, 6), cell)
    _weights(net)
    x = torch.rand(30, 2, 4)
    with _quiet():
        graph = snn_export(net, x[0], ignore_dims=[0])
    expected = _snntorch_run(net, x)
    _active(expected)
    assert type(graph.nodes["1.lif"]).__name__ == "CubaLIF"
    imported = import_from_nir(graph, convention="snntorch")
    assert sum(len(block) > 1 for block in imported.plan) == 1
    assert not torch.equal(imported(x), expected)
    late = snn.RSynaptic(
        alpha=0.6, beta=0.8, linear_features=6, init_hidden=True, reset_delay=False
    )
    with _quiet(), pytest.raises(ValueError, match="empty graph"):
        snn_export(nn.Sequential(nn.Linear(4, 6), late), x[0], ignore_dims=[0])


def _single(kind: str) -> tuple[nn.Module, torch.Tensor]:
    head = {
        "LI": neurons.LINode(tau=2.0),
        "Scale": Scale(2.0),
        "Threshold": Threshold(0.5),
        "Delay": layers.Delay(2),
    }[kind]
    return nn.Sequential(layers.Linear(4, 3), head), torch.rand(6, 2, 4)


@pytest.mark.parametrize("kind", ["LI", "Scale", "Threshold", "Delay"])
def test_what_the_peer_importers_do_with_nodes_they_lack(kind):
    """snnTorch refuses LI, Scale, Threshold and Delay naming the node type; Norse drops
    them (with ignore_warnings=True), leaving the Linear layer's output. spikeflow reads
    all of them back exactly."""
    _snntorch()
    norse = _norse()
    from snntorch.import_nir import import_from_nir as snn_import

    net, x = _single(kind)
    expected = net(x)
    assert torch.equal(import_from_nir(export_to_nir(net, x))(x), expected)
    with _quiet(), pytest.raises(ValueError, match=rf"Unknown node type .*{kind}"):
        snn_import(export_to_nir(net, x, dt=1e-4))
    with _quiet():
        dropped = norse.from_nir(export_to_nir(net, x, dt=1e-3), ignore_warnings=True)
        got = _step_through(dropped, x)
    torch.testing.assert_close(got, net[0](x))
    assert not torch.allclose(got, expected)


def test_a_peer_runs_a_converted_graph_as_hard_reset_if_neurons():
    """A converted network exports as NIR IF nodes (0/1 spikes, θ folded into the next
    layer) with the soft reset and V0 only in spikeflow's metadata. Norse reads the NIR
    fields: IF neurons that reset to 0 and start at 0, i.e. spikeflow's own reading of
    the graph without the metadata - not the converted network."""
    norse = _norse()
    torch.manual_seed(5)
    ann = nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)
    ).eval()
    images = torch.rand(32, 6)
    snn, _ = convert(ann, images, initial_membrane=0.5)
    x = constant_input(images[:8], 24)
    graph = export_to_nir(snn, x, dt=1e-3, soft_reset="metadata")
    converted = snn(x)
    torch.testing.assert_close(import_from_nir(graph)(x), converted, rtol=1e-5, atol=1e-5)
    plain = import_from_nir(graph)
    for name, node in graph.nodes.items():
        if type(node).__name__ == "IF":
            node.metadata = {}  # what another tool sees
            assert isinstance(plain.module(name), ConversionIFNode)
    hard = import_from_nir(graph, convention="norse")
    assert not any(isinstance(m, ConversionIFNode) for m in hard.modules())
    with _quiet():
        peer = _step_through(norse.from_nir(graph, ignore_warnings=True), x)
    torch.testing.assert_close(peer, hard(x), rtol=1e-5, atol=1e-5)
    assert (peer - converted).abs().max() > 0.05  # a different network


def test_imported_spikeflow_graph_checks_the_input_shape(tmp_path):
    net = nn.Sequential(layers.Linear(4, 5), neurons.LIFNode(tau=2.0))
    x = torch.rand(5, 2, 4)
    write_nir(export_to_nir(net, x), tmp_path / "net.nir")
    imported = import_from_nir(tmp_path / "net.nir")
    assert imported.input_shape == (4,)
    assert torch.equal(imported(x), net(x))
    with pytest.raises(ShapeError, match=r"samples of shape \(4,\).*got shape \(5, 2, 3\)"):
        imported(torch.rand(5, 2, 3))
    with pytest.raises(ShapeError, match=r"at least one time step.*T = 0"):
        imported(torch.rand(0, 2, 4))


@pytest.mark.parametrize(("delay", "same"), [(False, True), (True, False)])
def test_snntorch_synaptic_reset_delay_changes_its_spikes(delay, same):
    """Unlike Leaky's (tests/test_nir_peers.py), Synaptic's delayed "zero" reset changes the
    spikes: the graph means reset in the step that fires (reset_delay=False)."""
    snn = _snntorch()
    from snntorch.export_nir import export_to_nir as snn_export

    torch.manual_seed(7)
    net = nn.Sequential(
        nn.Linear(4, 6),
        snn.Synaptic(
            alpha=torch.full((6,), 0.6),
            beta=torch.full((6,), 0.8),
            threshold=torch.ones(6),
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=delay,
        ),
    )
    _weights(net)
    x = torch.rand(30, 2, 4)
    with _quiet():
        graph = snn_export(net, x[0], ignore_dims=[0])
    expected = _snntorch_run(net, x)
    _active(expected)
    assert torch.equal(import_from_nir(graph, convention="snntorch")(x), expected) is same
