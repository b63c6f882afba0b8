"""NIR export then import gives the same modules, parameters and spikes (spikeflow only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError
from spikeflow.interop import (
    NIRGraphNetwork,
    OffDiagonalLinear,
    Scale,
    Threshold,
    export_to_nir,
    import_from_nir,
    read_nir,
    write_nir,
)

nir = pytest.importorskip("nir", reason="the nir extra is not installed")
pytest.importorskip("nirtorch", reason="the nir extra is not installed")


def _drive(*shape: int) -> torch.Tensor:
    """Random non-negative input strong enough to make neurons fire."""
    return torch.rand(*shape) * 1.5


def _positive_weights(net: nn.Module, low: float = -0.1, high: float = 0.6) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
                m.weight.uniform_(low, high)


def _modules_of(net: nn.Module, kinds: tuple[type, ...]) -> list[nn.Module]:
    return [m for m in net.modules() if type(m) in kinds]


def _roundtrip(net: nn.Module, x: torch.Tensor, tmp_path=None, **export_kwargs):
    graph = export_to_nir(net, x, **export_kwargs)
    if tmp_path is not None:
        path = tmp_path / "net.nir"
        write_nir(graph, path)
        graph = read_nir(path)
    imported = import_from_nir(graph)
    assert isinstance(imported, NIRGraphNetwork)
    expected, got = net(x), imported(x)
    assert torch.equal(expected, got)
    return graph, imported, expected


_NEURON_ATTRS = ("tau", "decay_input", "v_threshold", "v_reset", "strict_firing", "detach_reset")


def _same_neurons(a: nn.Module, b: nn.Module, kinds: tuple[type, ...]) -> None:
    left, right = _modules_of(a, kinds), _modules_of(b, kinds)
    assert [type(m) for m in left] == [type(m) for m in right]
    for m, n in zip(left, right):
        for attr in (*_NEURON_ATTRS, "tau_syn", "tau_mem", "r", "v_leak", "dt"):
            if hasattr(m, attr):
                x, y = getattr(m, attr), getattr(n, attr)
                if isinstance(x, torch.Tensor):
                    assert torch.equal(x, y), attr
                else:
                    assert x == y, attr


NEURONS = (
    neurons.IFNode,
    neurons.LIFNode,
    neurons.ParametricLIFNode,
    neurons.CubaLIFNode,
    neurons.LINode,
)


@pytest.mark.parametrize(
    "neuron",
    [
        neurons.IFNode(),
        neurons.IFNode(v_threshold=0.8, v_reset=-0.2, strict_firing=True),
        neurons.LIFNode(tau=3.0),
        neurons.LIFNode(tau=1.7, decay_input=False, v_reset=0.1),
        neurons.ParametricLIFNode(init_tau=2.5),
        neurons.CubaLIFNode(tau_syn=3.0, tau_mem=5.0, r=2.0, v_leak=0.1),
        neurons.LINode(tau=4.0, decay_input=False, v_leak=0.2),
    ],
    ids=lambda m: type(m).__name__,
)
@pytest.mark.parametrize("dt", [1.0, 1e-3])
def test_neuron_roundtrip_exact(neuron, dt, tmp_path):
    net = nn.Sequential(layers.Linear(5, 7), neuron)
    _positive_weights(net)
    x = _drive(30, 3, 5)
    _, imported, out = _roundtrip(net, x, tmp_path, dt=dt)
    _same_neurons(net, imported, NEURONS)
    if not isinstance(neuron, neurons.LINode):
        assert 0 < out.sum() < out.numel()  # the comparison saw spikes and silences


def test_plif_weight_and_learnable_threshold_roundtrip(tmp_path):
    plif = neurons.ParametricLIFNode(init_tau=3.0, learnable_threshold=True)
    with torch.no_grad():
        plif.w.fill_(0.123456789)
        plif.v_threshold.fill_(0.7)
    net = nn.Sequential(layers.Linear(4, 6), plif)
    _positive_weights(net)
    _, imported, _ = _roundtrip(net, _drive(20, 2, 4), tmp_path)
    (plif2,) = _modules_of(imported, (neurons.ParametricLIFNode,))
    assert torch.equal(plif2.w, plif.w)
    assert isinstance(plif2.v_threshold, nn.Parameter)
    assert torch.equal(plif2.v_threshold, plif.v_threshold)


def test_conv_pool_flatten_delay_scale_threshold_roundtrip(tmp_path):
    channel_threshold = torch.tensor([0.6, 0.8, 1.0, 1.2]).view(4, 1, 1)
    net = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1, bias=False),
        neurons.LIFNode(tau=2.0, v_threshold=channel_threshold),
        layers.AvgPool2d(2),
        layers.SeqToANNContainer(nn.Conv2d(4, 4, 3, stride=2), nn.AvgPool2d(2, divisor_override=1)),
        neurons.IFNode(),
        layers.Flatten(),
        layers.Linear(16, 6),
        Scale(torch.linspace(0.5, 2.0, 6)),
        layers.Delay(2),
        neurons.CubaLIFNode(tau_syn=2.0, tau_mem=3.0, r=3.0),
        layers.Linear(6, 3, bias=False),
        Threshold(torch.tensor([0.1, 0.2, 0.3])),
    )
    _positive_weights(net, -0.05, 0.4)
    x = (torch.rand(12, 2, 2, 18, 18) < 0.6).float()
    graph, imported, out = _roundtrip(net, x, tmp_path)
    kinds = [type(v).__name__ for v in graph.nodes.values()]
    for kind in ("Conv2d", "AvgPool2d", "SumPool2d", "Flatten", "Delay", "Scale", "Threshold"):
        assert kind in kinds
    assert 0 < out.sum() < out.numel()
    conv = _modules_of(imported, (layers.Conv2d,))[0]
    assert conv.bias is None and torch.equal(conv.weight, net[0].weight)
    _same_neurons(net, imported, NEURONS)


def test_conv1d_roundtrip():
    net = nn.Sequential(layers.Conv1d(3, 5, 3, padding=1), neurons.LIFNode(), layers.Flatten())
    _positive_weights(net)
    graph, _, out = _roundtrip(net, _drive(10, 2, 3, 9))
    assert any(type(v).__name__ == "Conv1d" for v in graph.nodes.values())
    assert out.sum() > 0


@pytest.mark.parametrize("dims", [1, 2])
def test_grouped_and_depthwise_convs_roundtrip_through_a_file(dims, tmp_path):
    # nir infers a conv's input channels as weight.shape[1] (in_channels / groups).
    conv = layers.Conv1d if dims == 1 else layers.Conv2d
    x = _drive(6, 2, 4, *([9] * dims))
    for groups in (2, 4):
        net = nn.Sequential(conv(4, 8, 3, padding=1, groups=groups), neurons.IFNode())
        _positive_weights(net)
        path = tmp_path / f"g{groups}.nir"
        write_nir(export_to_nir(net, x), path)
        out = import_from_nir(path)(x)
        assert torch.equal(out, net(x)) and out.sum() > 0


class _Residual(nn.Module):
    """A branch joined by an addition: NIR sums the inputs of the node after it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = layers.Linear(6, 6)
        self.lif = neurons.LIFNode(tau=2.0)
        self.skip = layers.Linear(6, 6, bias=False)
        self.out = neurons.IFNode()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lif(self.lin(x)) + self.skip(x))


def test_branches_roundtrip():
    net = _Residual()
    _positive_weights(net)
    graph, _, out = _roundtrip(net, _drive(16, 3, 6))
    into_out = [a for a, b in graph.edges if b == "out"]
    assert sorted(into_out) == ["lif", "skip"]
    assert 0 < out.sum() < out.numel()


class _Sum(nn.Module):
    """Three branches a, b, c of the input combined by ``combine`` into a LIF neuron
    (on ones, a = 0.8 per step: a alone never fires the neuron, 2 a does)."""

    def __init__(self, combine) -> None:
        super().__init__()
        self.a, self.b, self.c = (layers.Linear(4, 3) for _ in range(3))
        self.lif = neurons.LIFNode(tau=2.0, strict_firing=True)
        self.combine = combine
        with torch.no_grad():
            for i, layer in enumerate((self.a, self.b, self.c)):
                layer.weight.fill_((0.2, 0.1, 0.15)[i])
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.combine(self.a(x), self.b(x), self.c(x)))


@pytest.mark.parametrize(
    ("combine", "factors"),
    [
        (lambda a, b, c: a + a, {"a": 2.0}),
        (lambda a, b, c: a + a + b, {"a": 2.0}),
        (lambda a, b, c: (a + b) + (a + c), {"a": 2.0}),
        (lambda a, b, c: a * 2 + a, {"a": 3.0}),
        (lambda a, b, c: 3 * c - b, {"b": -1.0, "c": 3.0}),
        (lambda a, b, c: -b + 3 * c, {"b": -1.0, "c": 3.0}),
        (lambda a, b, c: torch.add(a, a), {"a": 2.0}),
        (lambda a, b, c: a.add(b).add(a), {"a": 2.0}),
        (lambda a, b, c: a - a + c * 3, {"c": 3.0}),
    ],
    ids=["h+h", "a+a+b", "(a+b)+(a+c)", "h*2+h", "3c-b", "-b+3c", "torch.add", "add-method", "a-a"],
)
def test_a_branch_summed_more_than_once_exports_as_one_scaled_edge(combine, factors, tmp_path):
    # NIR has one edge per pair of nodes: h + h used to export as one edge h -> lif (the
    # factor 2 lost, no error), and products with numbers or differences did not export.
    net = _Sum(combine)
    x = torch.ones(8, 2, 4)
    graph, _, out = _roundtrip(net, x, tmp_path)
    assert out.sum() > 0
    assert len(set(graph.edges)) == len(graph.edges)
    scales = {a: float(graph.nodes[b].scale[0]) for a, b in graph.edges if b.endswith("_scale")}
    assert scales == factors
    assert ("a" in graph.nodes) == ("a" in factors)  # a - a: the branch is dropped


@pytest.mark.parametrize(
    ("combine", "named"),
    [
        (lambda a, b, c: a + 1.0, r"'add' \(operator.add with a constant operand"),
        (lambda a, b, c: a.add(b, alpha=2), r"'add' \(Tensor.add with alpha=\)"),
        (lambda a, b, c: a * b, r"'mul' \(operator.mul of two signals"),
        (lambda a, b, c: a - a, r"input of 'lif' \('sub'\) is a sum whose terms cancel"),
    ],
    ids=["constant", "alpha", "product", "cancels"],
)
def test_sums_nir_cannot_express_are_named(combine, named):
    # a + 1 used to export as a alone (nirtorch drops the constant).
    with pytest.raises(ConfigurationError, match=named):
        export_to_nir(_Sum(combine), torch.ones(3, 2, 4))


class _SkipToOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = layers.Linear(4, 4)
        self.lif = neurons.LIFNode(tau=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.fc(x)) + x


class _PoolBesideConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = layers.Conv2d(2, 2, 3, stride=2, padding=1)
        self.pool = layers.AvgPool2d(2)
        self.lif = neurons.LIFNode(tau=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.conv(x) + self.pool(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_residual_sums_fed_by_the_input_export(dtype, tmp_path):
    # Both used to fail with nirtorch's "Input type mismatch for followers of x: [4] vs
    # None" (the pool node and the output had no type), re-raised as if the network used
    # an unsupported operation.
    for net, x in [
        (_SkipToOutput(), _drive(12, 2, 4)),
        (_PoolBesideConv(), _drive(12, 2, 2, 8, 8)),
    ]:
        _positive_weights(net)
        net, x = net.to(dtype), x.to(dtype)
        graph = export_to_nir(net, x)
        assert ("x", "output" if isinstance(net, _SkipToOutput) else "pool") in graph.edges
        path = tmp_path / "skip.nir"
        write_nir(graph, path)
        out = import_from_nir(read_nir(path), dtype=dtype)(x)
        assert out.dtype == dtype and torch.equal(out, net(x))


def test_a_failed_write_leaves_the_existing_file(tmp_path):
    net = nn.Sequential(layers.Linear(4, 3), neurons.LIFNode(tau=2.0))
    x = _drive(5, 2, 4)
    path = tmp_path / "net.nir"
    write_nir(export_to_nir(net, x), path)
    before = path.read_bytes()
    bad = export_to_nir(net, x)
    bad.metadata["note"] = None  # HDF5 cannot store None: nir.write fails part way
    with pytest.raises(ConfigurationError, match=r"net.nir.*None in its metadata.*not changed"):
        write_nir(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.nir"]  # no temporary left
    assert torch.equal(import_from_nir(path)(x), net(x))


def test_a_missing_folder_is_named_not_the_temporary_file(tmp_path):
    graph = export_to_nir(nn.Sequential(layers.Linear(4, 3), neurons.LIFNode()), _drive(2, 1, 4))
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as error:
        write_nir(graph, missing / "net.nir")
    assert str(error.value) == (
        f"cannot write {missing / 'net.nir'}: the folder {missing} does not exist"
    )
    assert list(tmp_path.iterdir()) == []


def test_read_nir_names_a_damaged_file(tmp_path):
    import h5py

    truncated, junk = tmp_path / "truncated.nir", tmp_path / "junk.nir"
    with h5py.File(truncated, "w") as f:
        f.create_group("node")  # what a write that failed part way leaves
    junk.write_text("not HDF5")
    for path, cause in [(truncated, "KeyError"), (junk, "OSError")]:
        with pytest.raises(
            ConfigurationError, match=rf"'.*{path.name}' is not a valid NIR file \({cause}"
        ):
            read_nir(path)


def test_read_nir_tells_mismatched_node_types_from_a_damaged_file(tmp_path):
    import nir

    path = tmp_path / "mismatch.nir"
    ones = np.ones(5)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([4])),
            "fc": nir.Linear(np.ones((3, 4))),  # 3 outputs into 5 neurons
            "lif": nir.LIF(tau=ones, r=ones, v_leak=0 * ones, v_threshold=ones),
            "output": nir.Output(np.array([5])),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
        type_check=False,
    )  # a well-formed file: nir.write does not check the types
    nir.write(str(path), graph)
    with pytest.raises(ConfigurationError, match=r"was read, but its node types do not fit"):
        read_nir(path)


def test_recurrent_containers_roundtrip(tmp_path):
    net = nn.Sequential(
        layers.Linear(3, 6),
        layers.LinearRecurrentContainer(neurons.LIFNode(step_mode="s"), 6, 6),
        layers.ElementWiseRecurrentContainer(
            nn.Sequential(layers.Linear(6, 6, step_mode="s"), neurons.IFNode(step_mode="s")),
            torch.add,
        ),
    )
    _positive_weights(net, -0.3, 1.0)
    x = _drive(25, 2, 3)
    _, imported, out = _roundtrip(net, x, tmp_path)
    cycles = [plan for plan in imported.plan if len(plan) > 1]
    assert len(cycles) == 2
    assert 0 < out.sum() < out.numel()
    # The feedback matters (so the equality above checked it): without it, spikes change.
    recurrent_spikes = net[:2](x)
    assert 0 < recurrent_spikes.sum() < recurrent_spikes.numel()
    with torch.no_grad():
        net[1].rc.weight[:, 6:].zero_()
    assert not torch.equal(net[:2](x), recurrent_spikes)


def test_recurrent_layer_roundtrip(tmp_path):
    """layers.Recurrent (bias, masked diagonal) exports as input -> LIF <-> W_rec."""
    net = nn.Sequential(
        layers.Linear(3, 6),
        layers.Recurrent(neurons.LIFNode(step_mode="s"), 6, bias=True, self_connections=False),
    )
    _positive_weights(net, -0.3, 1.0)
    with torch.no_grad():
        net[1].recurrent.weight.uniform_(-0.6, 0.6)
        net[1].recurrent.bias.uniform_(-0.2, 0.2)
    x = _drive(25, 2, 3)
    graph, imported, out = _roundtrip(net, x, tmp_path)
    assert 0 < out.sum() < out.numel()
    feedback = [n for n in graph.nodes.values()
                if type(n).__name__ == "Affine" and n.weight.shape == (6, 6)]  # fmt: skip
    assert len(feedback) == 1 and np.all(np.diag(feedback[0].weight) == 0)  # masked
    assert len([plan for plan in imported.plan if len(plan) > 1]) == 1  # one cycle
    # The zero diagonal comes back as structure: the imported weight cannot learn it.
    assert feedback[0].metadata == {"spikeflow_self_connections": False}
    (masked,) = [m for m in imported.modules() if isinstance(m, OffDiagonalLinear)]
    imported(x).sum().backward()
    assert masked.weight.grad.abs().sum() > 0 and not masked.weight.grad.diagonal().any()
    with torch.no_grad():
        masked.weight.diagonal().fill_(5.0)
    assert torch.equal(imported(x), out)
    with torch.no_grad():
        net[1].recurrent.weight.zero_()
    assert not torch.equal(net(x), out)  # the feedback mattered


def test_self_connection_mark_needs_a_square_weight():
    """A Linear marked spikeflow_self_connections=False that is not square is refused."""
    weight = np.ones((3, 2), dtype=np.float32)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([2])),
            "w": nir.Linear(weight=weight, metadata={"spikeflow_self_connections": False}),
            "output": nir.Output(output_type=np.array([3])),
        },
        edges=[("input", "w"), ("w", "output")],
    )
    with pytest.raises(ConfigurationError, match=r"must be square, got weight \(3, 2\)"):
        import_from_nir(graph)


def test_recurrence_matches_reference_loop():
    """A hand-made NIR graph LIF <-> W_rec runs as s[t] = LIF(W x[t] + W_rec s[t-1])."""
    w_in = np.array([[0.9, 0.3], [0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    w_rec = np.array([[0.0, 0.6, -0.4], [0.5, 0.0, 0.3], [-0.2, 0.7, 0.0]], dtype=np.float32)
    tau, thr = 4.0, 1.0
    ones = np.ones(3)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([2])),
            "w_in": nir.Linear(weight=w_in),
            "lif": nir.LIF(tau=tau * ones, r=ones, v_leak=0 * ones, v_threshold=thr * ones),
            "w_rec": nir.Linear(weight=w_rec),
            "output": nir.Output(output_type=np.array([3])),
        },
        edges=[
            ("input", "w_in"),
            ("w_in", "lif"),
            ("lif", "w_rec"),
            ("w_rec", "lif"),
            ("lif", "output"),
        ],
    )
    x = torch.rand(30, 2, 2) * 2
    got = import_from_nir(graph)(x)
    v = torch.zeros(2, 3)
    s = torch.zeros(2, 3)
    expected = []
    for t in range(x.shape[0]):
        current = x[t] @ torch.from_numpy(w_in).T + s @ torch.from_numpy(w_rec).T
        v = v + (current - v) / tau
        s = (v > thr).float()
        v = torch.where(s > 0, torch.zeros_like(v), v)
        expected.append(s)
    assert torch.equal(got, torch.stack(expected))
    assert got.sum() > 0


def test_soft_reset_needs_metadata_opt_in(tmp_path):
    net = nn.Sequential(layers.Linear(4, 5), neurons.IFNode(v_reset=None))
    _positive_weights(net)
    x = _drive(20, 2, 4)
    with pytest.raises(ConfigurationError, match="IFNode at '1' uses soft reset"):
        export_to_nir(net, x)
    graph, imported, _ = _roundtrip(net, x, tmp_path, soft_reset="metadata")
    assert _modules_of(imported, (neurons.IFNode,))[0].v_reset is None
    assert np.all(graph.nodes["_1"].v_reset == 0)


def test_edited_graph_is_read_from_the_nir_fields():
    net = nn.Sequential(layers.Linear(4, 5), neurons.LIFNode(tau=2.0))
    graph = export_to_nir(net, _drive(5, 1, 4))
    graph.nodes["_1"].tau = graph.nodes["_1"].tau * 4  # stale metadata now
    (lif,) = _modules_of(import_from_nir(graph), (neurons.LIFNode,))
    assert lif.tau == pytest.approx(8.0) and lif.strict_firing  # NIR fires on v > v_th


def test_export_writes_nir_equations():
    """The NIR fields follow the documented discretisation (docs/nir.md)."""
    net = nn.Sequential(
        layers.Linear(2, 3),
        neurons.LIFNode(tau=4.0, decay_input=False, v_reset=-0.5, v_threshold=0.5),
        layers.Linear(3, 3),
        neurons.IFNode(),
        layers.Linear(3, 3),
        neurons.CubaLIFNode(tau_syn=2.0, tau_mem=8.0, r=1.5, dt=0.5),
        layers.Linear(3, 3),
        neurons.LINode(tau=3.0),
    )
    graph = export_to_nir(net, torch.zeros(1, 1, 2), dt=1e-3)
    lif, if_, cuba, li = (graph.nodes[k] for k in ("_1", "_3", "_5", "_7"))
    np.testing.assert_allclose(lif.tau, 4e-3)
    np.testing.assert_allclose(lif.r, 4.0)
    np.testing.assert_allclose(lif.v_leak, -0.5)
    np.testing.assert_allclose(lif.v_reset, -0.5)
    np.testing.assert_allclose(lif.v_threshold, 0.5)
    np.testing.assert_allclose(if_.r, 1e3)
    np.testing.assert_allclose(cuba.tau_syn, 2.0 / 0.5 * 1e-3)
    np.testing.assert_allclose(cuba.tau_mem, 8.0 / 0.5 * 1e-3)
    np.testing.assert_allclose(cuba.r, 1.5)
    np.testing.assert_allclose(li.tau, 3e-3)
    np.testing.assert_allclose(li.r, 1.0)
    assert lif.tau.shape == (3,) and graph.metadata["spikeflow_dt"] == 1e-3


class _Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = layers.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.lin(x), x], dim=-1)


@pytest.mark.parametrize(
    ("net", "named"),
    [
        (nn.Sequential(layers.Linear(4, 4), nn.ReLU()), r"'1' \(ReLU\)"),
        (nn.Sequential(layers.Linear(4, 4), neurons.ALIFNode()), r"'1' \(ALIFNode\)"),
        (
            nn.Sequential(layers.SeqToANNContainer(nn.Linear(4, 4), nn.BatchNorm1d(4))),
            r"'0.1' \(BatchNorm1d\)",
        ),
        (neurons.QIFNode(), r"QIFNode"),
        (
            layers.LinearRecurrentContainer(
                nn.Sequential(layers.Linear(4, 4, step_mode="s"), nn.ReLU()), 4, 4
            ),
            r"'net.sub_module.1' \(ReLU\)",
        ),
        (_Concat(), r"operations in _Concat.forward\(\): 'cat' \(torch.cat\)"),
    ],
    ids=["relu", "alif", "batchnorm-in-container", "qif-alone", "relu-in-recurrence", "concat"],
)
def test_unsupported_modules_are_named(net, named):
    with pytest.raises(ConfigurationError, match=named):
        export_to_nir(net, torch.rand(3, 2, 4))


def test_a_linear_on_non_flat_input_is_named_before_nir_type_checks():
    # NIR's Linear maps one vector per sample; nir's own type check used to raise a raw
    # ValueError naming no module ("type mismatch: _0.output: [[2 100]] -> _1.input").
    net = nn.Sequential(layers.Flatten(2), layers.Linear(100, 5), neurons.IFNode())
    with pytest.raises(ConfigurationError, match=r"'1' \(Linear\).*flat input \[100\].*\[2, 100\]"):
        export_to_nir(net, torch.rand(4, 3, 2, 10, 10))


def test_unsupported_nir_node_is_named():
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([3])),
            "integrator": nir.I(r=np.ones(3)),
            "output": nir.Output(output_type=np.array([3])),
        },
        edges=[("input", "integrator"), ("integrator", "output")],
    )
    with pytest.raises(ConfigurationError, match="'integrator' has type I"):
        import_from_nir(graph)


def test_bad_arguments():
    net = nn.Sequential(layers.Linear(4, 4), neurons.LIFNode())
    with pytest.raises(ConfigurationError, match="dt"):
        export_to_nir(net, torch.rand(3, 2, 4), dt=0.0)
    with pytest.raises(ConfigurationError, match="convention"):
        import_from_nir(export_to_nir(net, torch.rand(3, 2, 4)), convention="lava")
    graph = export_to_nir(net, torch.rand(3, 2, 4))
    with pytest.raises(ConfigurationError, match="shorter than one step"):
        import_from_nir(graph, dt=10.0)
    with pytest.raises(ConfigurationError, match="does not exist"):
        import_from_nir("/nonexistent/graph.nir")


def test_delay_must_be_whole_steps():
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([2])),
            "delay": nir.Delay(delay=np.array([1.5, 1.5])),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "delay"), ("delay", "output")],
    )
    with pytest.raises(ConfigurationError, match="whole number of steps"):
        import_from_nir(graph)
    x = torch.rand(6, 1, 2)
    assert torch.equal(import_from_nir(graph, dt=0.5)(x), layers.Delay(3)(x))


def test_missing_extra(monkeypatch):
    import sys

    from spikeflow.errors import MissingExtraError

    net = nn.Sequential(layers.Linear(4, 4), neurons.LIFNode())
    monkeypatch.setitem(sys.modules, "nirtorch", None)
    with pytest.raises(MissingExtraError, match=r"spikeflow\[nir\]") as info:
        export_to_nir(net, torch.rand(3, 2, 4))
    assert info.value.package == "nirtorch" and info.value.extra == "nir"
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(MissingExtraError, match="'nir'"):
        import_from_nir("graph.nir")


def test_imported_network_trains():
    """Imported modules are ordinary spikeflow modules: surrogate gradients flow."""
    net = nn.Sequential(
        layers.Linear(4, 6), neurons.LIFNode(), layers.Linear(6, 2), neurons.LINode()
    )
    _positive_weights(net)
    imported = import_from_nir(export_to_nir(net, _drive(3, 1, 4)))
    imported(_drive(10, 3, 4)).sum().backward()
    grads = [p.grad for p in imported.parameters()]
    assert len(grads) == 4 and all(g is not None and g.abs().sum() > 0 for g in grads)
