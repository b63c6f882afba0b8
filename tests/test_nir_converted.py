"""NIR export of converted networks (ANN-to-SNN conversion output) and the way back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeflow.conversion import QCFS, ConversionIFNode, constant_input, convert
from spikeflow.errors import ConfigurationError
from spikeflow.interop import export_to_nir, import_from_nir, read_nir, write_nir

nir = pytest.importorskip("nir", reason="the nir extra is not installed")
pytest.importorskip("nirtorch", reason="the nir extra is not installed")


class ResidualNet(nn.Module):
    """conv-BN-act, residual conv-BN(+y)-act, pool, conv-act, F.avg_pool2d, flatten, FC-act, FC."""

    def __init__(self, act=nn.ReLU, pool: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), act()
        self.conv2, self.bn2, self.act2 = (
            nn.Conv2d(6, 6, 3, padding=1, bias=False),
            nn.BatchNorm2d(6),
            act(),
        )
        self.pool = pool if pool is not None else nn.AvgPool2d(2)
        self.conv3, self.act3 = nn.Conv2d(6, 8, 3, padding=1), act()
        self.drop = nn.Dropout(0.2)
        self.fc1, self.act4, self.fc2 = nn.Linear(8 * 2 * 2, 12), act(), nn.Linear(12, 5)

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.pool(self.act2(self.bn2(self.conv2(y)) + y))
        y = F.avg_pool2d(self.act3(self.conv3(y)), 2)
        return self.fc2(self.act4(self.fc1(self.drop(torch.flatten(y, 1)))))


def _net(act=nn.ReLU, pool=None) -> nn.Module:
    torch.manual_seed(2)
    net = ResidualNet(act, pool)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(0.0, 0.3)
            elif isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.uniform_(-1.0, 1.0).mul_(2.0 / m.weight[0].numel() ** 0.5)
    return net.eval()


@pytest.mark.parametrize(
    ("act", "options"),
    [
        (nn.ReLU, {"norm": "percentile", "per_channel": True, "initial_membrane": 0.5}),
        (lambda: QCFS(4, 1.5), {}),
    ],
    ids=["relu-per-channel", "qcfs"],
)
def test_converted_snn_exports_to_nir_and_back(tmp_path, act, options):
    net = _net(act)
    x = torch.rand(32, 2, 8, 8) * 2
    snn, _ = convert(net, x, **options)
    x_seq = constant_input(x, 16)
    graph = export_to_nir(snn, x_seq, soft_reset="metadata")
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert sorted(n for n, k in kinds.items() if k == "IF") == ["act1", "act2", "act3", "act4"]
    # θ folds into the next conv / linear layer; only the residual edge into a neuron
    # needs a Scale node.
    assert [n for n, k in kinds.items() if k == "Scale"] == ["act1_scale"]
    assert ("act1_scale", "act2") in graph.edges and ("conv2", "act2") in graph.edges
    assert {"Flatten", "AvgPool2d", "Conv2d", "Affine"} <= set(kinds.values())
    # Plain NIR fields: IF r = 1/dt, threshold θ, spikes 0/1 with θ in the next weights.
    if1 = snn.body.act1.module
    theta1 = (
        if1.v_threshold
        if isinstance(if1.v_threshold, torch.Tensor)
        else torch.tensor(if1.v_threshold)
    )
    node = graph.nodes["act1"]
    assert np.allclose(node.r, 1.0) and np.allclose(node.v_reset, 0.0)
    assert np.allclose(node.v_threshold, np.broadcast_to(theta1.numpy(), (6, 8, 8)))
    want = snn.body.conv2.weight.detach() * theta1.reshape(1, -1, 1, 1)
    assert np.allclose(graph.nodes["conv2"].weight, want.numpy())
    meta = node.metadata["spikeflow_kwargs"]
    assert meta["soft_reset"] and meta["weighted"] is False
    assert meta["initial_membrane"] == 0.5  # V0 = θ/2 (asked for ReLU, φ for QCFS)
    write_nir(graph, tmp_path / "converted.nir")
    imported = import_from_nir(read_nir(tmp_path / "converted.nir"))
    neurons = [m for m in imported.modules() if isinstance(m, ConversionIFNode)]
    assert len(neurons) == 4 and not any(m.weighted for m in neurons)
    spikes = []
    handles = [m.register_forward_hook(lambda m, a, out: spikes.append(out)) for m in neurons]
    with torch.no_grad():
        expected, got = snn(x_seq), imported(x_seq)
    for handle in handles:
        handle.remove()
    for s in spikes:  # every layer fires 0/1 spikes, and not always
        assert set(s.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (expected - expected.mean(0)).abs().max() > 0  # outputs change over time


def test_converted_export_needs_soft_reset_metadata():
    snn, _ = convert(_net(), torch.rand(8, 2, 8, 8))
    with pytest.raises(ConfigurationError, match="soft_reset='metadata'"):
        export_to_nir(snn, torch.rand(2, 3, 2, 8, 8))


@pytest.mark.parametrize(
    ("net", "options", "named"),
    [
        (lambda: _net(pool=nn.MaxPool2d(2)), {}, "'pool' (GatedMaxPool"),
        (lambda: _net(pool=nn.MaxPool2d(2)), {"max_pool": "keep"}, "'pool' (MaxPool2d"),
        (lambda: _net(lambda: QCFS(4, 1.5)), {"group_size": 4}, "(GroupNeuron: it fires up to m"),
        (_net, {"trace": "modules"}, "converted module by module"),
    ],
    ids=["gated-max-pool", "kept-max-pool", "group-neurons", "untraced"],
)
def test_converted_export_names_what_nir_cannot_express(net, options, named):
    snn, _ = convert(net(), torch.rand(8, 2, 8, 8), **options)
    with pytest.raises(ConfigurationError, match=named.replace("(", "\\(")):
        export_to_nir(snn, torch.rand(2, 3, 2, 8, 8), soft_reset="metadata")


def test_weighted_conversion_neuron_alone_does_not_export():
    net = nn.Sequential(nn.Linear(3, 4), ConversionIFNode(0.5))
    with pytest.raises(ConfigurationError, match="spikes worth θ"):
        export_to_nir(net, torch.rand(2, 3, 3), soft_reset="metadata")
    plain = nn.Sequential(nn.Linear(3, 4), ConversionIFNode(0.5, 0.5, weighted=False))
    x = torch.rand(10, 3, 3) * 2
    imported = import_from_nir(export_to_nir(plain, x, soft_reset="metadata"))
    assert torch.equal(imported(x), plain(x))


class _Doubled(nn.Module):
    """h + dropout(h): both summands are the same NIR node after conversion."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.fc2, self.drop = nn.Linear(4, 6), nn.Linear(6, 3), nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(x))
        return self.fc2(h + self.drop(h))


def test_a_value_added_to_itself_exports_as_one_scaled_edge():
    # NIR allows one edge per pair of nodes: h + h must become 2 h, not a duplicate edge.
    torch.manual_seed(0)
    x = torch.rand(8, 4)
    snn, _ = convert(_Doubled().eval(), x)
    xs = constant_input(x, 16)
    graph = export_to_nir(snn, xs, soft_reset="metadata")
    assert len(set(graph.edges)) == len(graph.edges)
    torch.testing.assert_close(import_from_nir(graph)(xs), snn(xs), atol=1e-5, rtol=1e-5)


class _ThreeQCFS(nn.Module):
    """Two neurons of θ = 0.7 summed into a third of θ = 1.4 (float64)."""

    def __init__(self, combine) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(1, 1), nn.Linear(1, 1), nn.Linear(1, 1)
        self.q1, self.q2 = QCFS(1, 0.7, shift=0.0), QCFS(1, 0.7, shift=0.0)
        self.q3 = QCFS(1, 1.4, shift=0.0)
        self.combine = combine
        with torch.no_grad():
            for fc in (self.fc1, self.fc2, self.fc3):
                fc.weight.fill_(1.0)
                fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.q3(self.combine(self.q1(self.fc1(x)), self.q2(self.fc2(x)))))


def _three_qcfs(combine) -> nn.Module:
    net = _ThreeQCFS(combine).double()
    with torch.no_grad():  # exact float64 thresholds (QCFS builds λ in the default dtype)
        for q, theta in ((net.q1, 0.7), (net.q2, 0.7), (net.q3, 1.4)):
            q.threshold.fill_(theta)
    return net


def test_a_float64_network_exports_its_scale_nodes_in_float64(tmp_path):
    # The Scale nodes were written in float32: 0.7 became 0.69999998807907, the sum of
    # two spikes missed the threshold 1.4 and the third neuron fired one step later.
    net = _three_qcfs(lambda a, b: a + b)
    xs = constant_input(torch.full((1, 1), 0.7, dtype=torch.float64), 4)
    snn, _ = convert(net)
    graph = export_to_nir(snn, xs, soft_reset="metadata")
    scales = [node.scale for node in graph.nodes.values() if type(node).__name__ == "Scale"]
    assert len(scales) == 2 and all(s.dtype == np.float64 and s[0] == 0.7 for s in scales)
    write_nir(graph, tmp_path / "f64.nir")
    imported = import_from_nir(read_nir(tmp_path / "f64.nir"), dtype=torch.float64)
    with torch.no_grad():
        expected = snn(xs)
        assert torch.equal(imported(xs), expected) and expected.flatten().tolist() == [1.4] * 4


@pytest.mark.parametrize(
    ("combine", "factors"),
    [
        (lambda a, b: a * 2 + a, {"q1": 3 * 0.7}),
        (lambda a, b: 3 * a - b, {"q1": 3 * 0.7, "q2": -0.7}),
        (lambda a, b: -b + a + a, {"q1": 2 * 0.7, "q2": -0.7}),
    ],
    ids=["h*2+h", "3a-b", "-b+a+a"],
)
def test_products_with_numbers_and_differences_export_as_scaled_edges(combine, factors):
    # They used to be refused ('mul' (call of mul)); a factor now adds to θ on the edge.
    snn, _ = convert(_three_qcfs(combine))
    xs = constant_input(torch.linspace(0.2, 1.5, 6, dtype=torch.float64).reshape(6, 1), 8)
    graph = export_to_nir(snn, xs, soft_reset="metadata")
    into_q3 = {a: float(graph.nodes[a].scale[0]) for a, b in graph.edges if b == "q3"}
    assert into_q3 == {f"{name}_scale": value for name, value in factors.items()}
    with torch.no_grad():
        expected = snn(xs)
        got = import_from_nir(graph, dtype=torch.float64)(xs)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert expected.abs().sum() > 0
