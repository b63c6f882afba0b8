"""The converter: tracing, fallback, residuals, pooling, reports, accuracy (methods.md 7)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeflow.conversion import (
    QCFS,
    ConversionError,
    ConversionIFNode,
    GroupNeuron,
    TimeFolded,
    constant_input,
    convert,
    qcfs,
)
from spikeflow.errors import ConfigurationError
from spikeflow.functional import streaming


def _randomize_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(0.0, 0.3)
    return model.eval()


class ResidualCNN(nn.Module):
    """conv-BN-F.relu, a residual block ending in nn.ReLU, avg pool, flatten, linear."""

    def __init__(self, pool: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.act = nn.ReLU()
        self.pool = pool if pool is not None else nn.AvgPool2d(2)
        self.fc = nn.Linear(6 * 3 * 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.conv2(y)) + y)
        return self.fc(torch.flatten(self.pool(y), 1))


def test_mlp_rates_converge_layer_by_layer_as_one_over_t():
    """Layer 1 (constant input) is within θ/T of clip(ReLU, 0, θ); deeper layers O(θ/T)."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Linear(20, 48),
        nn.ReLU(),
        nn.Linear(48, 48),
        nn.ReLU(),
        nn.Linear(48, 24),
        nn.ReLU(),
        nn.Linear(24, 5),
    )
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.bias.add_(0.1)
    x = torch.rand(128, 20)
    snn, report = convert(net, x)
    assert len(report.converted) == 3
    ann_acts, h = [], x
    with torch.no_grad():
        for m in net:
            h = m(h)
            if isinstance(m, nn.ReLU):
                ann_acts.append(h)
    sites = [m for m in snn.modules() if isinstance(m, TimeFolded)]
    outs: list[torch.Tensor] = []
    for site in sites:
        site.register_forward_hook(lambda _m, _a, o: outs.append(o))
    for steps in (64, 256, 1024):
        outs.clear()
        with torch.no_grad():
            final = snn(constant_input(x, steps)).mean(0)
            ann_out = net(x)
        for layer, (out, ann, site) in enumerate(zip(outs, ann_acts, sites)):
            theta = site.module.v_threshold
            rate = out.unflatten(0, (steps, -1)).mean(0)
            err = float((rate - ann.clamp(max=theta)).abs().max())
            bound = 1.0 if layer == 0 else 4.0
            assert err <= bound * theta / steps + 1e-6, (steps, layer, err * steps / theta)
        assert float((final - ann_out).abs().max()) < 40.0 / steps


def test_residual_cnn_with_functional_relu_and_bn():
    torch.manual_seed(2)
    net = _randomize_bn(ResidualCNN())
    x = torch.rand(32, 1, 6, 6)
    snn, report = convert(net, x)
    names = {(e.name, e.action) for e in report.entries}
    assert ("bn1", "folded") in names and ("bn2", "folded") in names
    sources = {e.source for e in report.converted}
    assert sources == {"torch.nn.functional.relu", "nn.ReLU"}, report
    assert not [m for m in snn.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        ann = net(x)
        rate = snn.running_rate(x, 512)
    err_64 = float((rate[63] - ann).abs().max())
    err_512 = float((rate[511] - ann).abs().max())
    assert err_512 < 0.02 * float(ann.abs().max()) and err_512 < err_64 / 3
    # running_rate's entry T-1 is the rate of a run of T steps
    torch.testing.assert_close(rate[9], snn.rate(x, 10))


def test_torch_relu_and_tensor_relu_calls_are_converted_and_sites_not_shared():
    class Calls(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.shared = nn.ReLU()  # called twice: one neuron per call

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.shared(self.a(x))
            y = torch.relu(self.b(y)) + self.shared(x)
            return y.relu() * 2.0

    x = torch.rand(16, 4)
    snn, report = convert(Calls(), x)
    assert sorted(e.source for e in report.converted) == [
        "Tensor.relu",
        "nn.ReLU",
        "nn.ReLU",
        "torch.relu",
    ]
    neurons = [m for m in snn.modules() if isinstance(m, ConversionIFNode)]
    assert len({id(n) for n in neurons}) == 4


def test_qcfs_network_equals_ann_at_t_equal_l():
    """One QCFS layer behind a linear readout: the SNN at T = L is the ANN (float64)."""
    torch.manual_seed(3)
    levels = 8
    net = nn.Sequential(nn.Linear(10, 32), QCFS(levels, threshold=1.5), nn.Linear(32, 3)).double()
    x = torch.randn(200, 10, dtype=torch.float64)
    snn, report = convert(net)  # no calibration data needed for QCFS
    assert report.converted[0].source == "QCFS(L=8)" and "V0=0.5" in report.converted[0].detail
    with torch.no_grad():
        torch.testing.assert_close(snn.rate(x, levels), net(x), rtol=0, atol=1e-10)
        # group neurons with m members at T steps resolve T·m levels: T = 2, m = 4 is L = 8
        gsnn, _ = convert(net, group_size=4)
        assert any(isinstance(m, GroupNeuron) for m in gsnn.modules())
        torch.testing.assert_close(gsnn.rate(x, 2), net(x), rtol=0, atol=1e-10)
        # and at T = 4 with m = 4 they give the QCFS of 16 levels
        hidden = qcfs(net[0](x), net[1].threshold, 16)
        torch.testing.assert_close(gsnn.rate(x, 4), net[2](hidden), rtol=0, atol=1e-10)


def test_qcfs_network_accuracy_matches_at_t_equal_l_on_digits():
    sklearn = pytest.importorskip("sklearn.datasets", reason="scikit-learn (extra 'examples')")
    torch.manual_seed(0)
    data = sklearn.load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    x_tr, y_tr, x_te, y_te = x[:1400], y[:1400], x[1400:], y[1400:]
    levels = 4
    net = nn.Sequential(
        nn.Linear(64, 96),
        QCFS(levels, 2.0),
        nn.Linear(96, 64),
        QCFS(levels, 2.0),
        nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest on a loaded machine
    try:
        for _ in range(25):
            for i in range(0, 1400, 200):
                loss = F.cross_entropy(net(x_tr[i : i + 200]), y_tr[i : i + 200])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        ann_acc = float((net(x_te).argmax(1) == y_te).float().mean())
        snn, _ = convert(net)
        rate = snn.running_rate(x_te, 64)
    accs = {t: float((rate[t - 1].argmax(1) == y_te).float().mean()) for t in (1, levels, 64)}
    assert ann_acc > 0.85
    # T = L: the first layer is exact, the second carries the unevenness error only
    assert abs(accs[levels] - ann_acc) <= 0.02, (ann_acc, accs)
    assert accs[64] >= ann_acc - 0.02


def test_max_pool_gated_beats_per_step_max():
    torch.manual_seed(4)
    net = _randomize_bn(ResidualCNN(pool=nn.MaxPool2d(2)))
    x = torch.rand(32, 1, 6, 6)
    gated, report = convert(net, x)
    assert [e.detail for e in report.by_action("replaced")] == ["GatedMaxPool (spike counts)"]
    kept, report_keep = convert(net, x, max_pool="keep")
    (pool_entry,) = [e for e in report_keep.entries if e.source == "nn.MaxPool2d"]
    assert pool_entry.action == "kept" and "overestimates" in pool_entry.detail
    with torch.no_grad():
        ann = net(x)
        err_gated = float((gated.rate(x, 256) - ann).abs().mean())
        err_kept = float((kept.rate(x, 256) - ann).abs().mean())
    assert err_gated < 0.5 * err_kept, (err_gated, err_kept)


def test_functional_max_pool_is_converted():
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.max_pool2d(self.body(x), 2).flatten(1)

    x = torch.rand(8, 1, 4, 4)
    snn, report = convert(Wrap(), x)
    assert [(e.name, e.source) for e in report.by_action("replaced")] == [
        ("max_pool2d", "torch.nn.functional.max_pool2d")
    ]
    assert snn(constant_input(x, 3)).shape == (3, 8, 12)


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace this forward."""

    def __init__(self, direct_relu: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2)
        )
        self.head = nn.Sequential(nn.Linear(4 * 3 * 3, 8), nn.ReLU(), nn.Linear(8, 3))
        self.direct_relu = direct_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x).flatten(1)
        if y.sum() > -1e9:  # data-dependent branch (always taken)
            y = F.relu(y) if self.direct_relu else y
        return self.head(y)


def test_untraceable_model_is_converted_module_by_module():
    torch.manual_seed(5)
    net = _randomize_bn(Untraceable())
    x = torch.rand(16, 1, 6, 6)
    snn, report = convert(net, x)
    assert [e.name for e in report.by_action("untraced")] == ["<root>"]
    assert [e.name for e in report.by_action("folded")] == ["features.1"]
    assert len(report.converted) == 2 and report.ok
    with torch.no_grad():
        ann = net(x)
        err = float((snn.rate(x, 512) - ann).abs().max())
    assert err < 0.05 * float(ann.abs().max())
    with pytest.raises(ConversionError, match="could not trace"):
        convert(net, x, trace="fx")
    # module by module everywhere gives the same network (BN kept, not folded)
    snn_modules, report_modules = convert(net, x, trace="modules")
    assert not report_modules.by_action("folded")
    with torch.no_grad():
        torch.testing.assert_close(snn_modules.rate(x, 16), snn.rate(x, 16), atol=1e-5, rtol=0)


def test_relu_call_in_untraced_forward_is_reported():
    net = Untraceable(direct_relu=True).eval()
    x = torch.rand(4, 1, 6, 6)
    with pytest.raises(ConversionError, match="relu called directly"):
        convert(net, x)
    _, report = convert(net, x, strict=False)
    (entry,) = report.unconverted
    assert entry.name == "<root> (forward)" and "relu" in entry.source
    assert not report.ok and "unconverted" in str(report)


def test_unsupported_activation_error_names_it():
    net = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(ConversionError, match=r"1 \(nn.GELU\)"):
        convert(net, torch.rand(4, 4))

    class FunctionalSigmoid(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(x) + F.relu(x)

    with pytest.raises(ConversionError, match="sigmoid"):
        convert(FunctionalSigmoid(), torch.rand(4, 4))
    _, report = convert(net, torch.rand(4, 4), strict=False)
    assert [e.source for e in report.unconverted] == ["nn.GELU"]


def test_product_of_two_signals_is_unsupported_but_scaling_is_not():
    class Gate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(x) * F.relu(2.0 * x) + x.size(1) * x

    with pytest.raises(ConversionError, match=r"operator\.mul"):
        convert(Gate(), torch.rand(4, 3))


def test_per_channel_percentile_conversion_and_options():
    torch.manual_seed(6)
    net = _randomize_bn(ResidualCNN())
    x = torch.rand(32, 1, 6, 6)
    snn, report = convert(net, x, norm="percentile", percentile=99.9, per_channel=True)
    thresholds = [m.v_threshold for m in snn.modules() if isinstance(m, ConversionIFNode)]
    assert all(t.shape == (6, 1, 1) for t in thresholds)
    assert "p99.9 per-channel" in report.converted[0].detail
    snn_half, _ = convert(net, x, initial_membrane=0.5)
    assert all(
        m.initial_membrane == 0.5 for m in snn_half.modules() if isinstance(m, ConversionIFNode)
    )
    with pytest.raises(ConfigurationError, match="calibration_data"):
        convert(net)
    with pytest.raises(ConfigurationError, match="group_size"):
        convert(net, x, group_size=0)
    with pytest.raises(ConfigurationError, match="norm"):
        convert(net, x, norm="l2")
    calib = [(x[:16], None), (x[16:], None)]  # (input, label) pairs as from a DataLoader
    assert convert(net, calib).report.ok


def test_streaming_in_chunks_equals_one_call():
    torch.manual_seed(7)
    net = _randomize_bn(ResidualCNN(pool=nn.MaxPool2d(2)))
    x = torch.rand(8, 1, 6, 6)
    snn, _ = convert(net, x, group_size=2)
    seq = constant_input(x, 12)
    with torch.no_grad():
        whole = snn(seq)
        with streaming(snn):
            chunks = torch.cat([snn(seq[:5]), snn(seq[5:])])
    torch.testing.assert_close(chunks, whole)


def test_max_pool_call_in_untraced_forward_is_reported():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.act(self.conv(x))
            if y.sum() > -1.0:
                y = F.max_pool2d(y, 2)
            return y.flatten(1)

    _, report = convert(Branchy(), torch.rand(3, 1, 4, 4), strict=False)
    assert [(e.name, e.source) for e in report.unconverted] == [
        ("<root> (forward)", "torch.nn.functional.max_pool2d")
    ]
    assert [e.name for e in report.converted] == ["act"]


class DeepQCFS(nn.Module):
    """conv-BN-QCFS, residual conv-BN(+y)-QCFS, pool, conv-BN-QCFS, avg pool, FC-QCFS, FC."""

    def __init__(self, levels: int, pool: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1, self.q1 = (
            nn.Conv2d(2, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            QCFS(levels, 1.5),
        )
        self.conv2, self.bn2, self.q2 = (
            nn.Conv2d(6, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            QCFS(levels, 2.0),
        )
        self.pool = pool
        self.conv3, self.bn3, self.q3 = (
            nn.Conv2d(6, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            QCFS(levels, 1.0),
        )
        self.fc1, self.q4, self.fc2 = nn.Linear(8 * 2 * 2, 12), QCFS(levels, 1.2), nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.q1(self.bn1(self.conv1(x)))
        y = self.pool(self.q2(self.bn2(self.conv2(y)) + y))
        y = F.avg_pool2d(self.q3(self.bn3(self.conv3(y))), 2)
        return self.fc2(self.q4(self.fc1(torch.flatten(y, 1))))


def _deep_qcfs(levels: int, pool: nn.Module) -> nn.Module:
    """Random weights ±2/sqrt(fan-in): several QCFS levels used, outputs vary by sample."""
    torch.manual_seed(5)
    net = _randomize_bn(DeepQCFS(levels, pool)).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.uniform_(-1.0, 1.0).mul_(2.0 / m.weight[0].numel() ** 0.5)
    return net


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.MaxPool2d(2)], ids=["avg", "max"])
def test_deep_qcfs_network_is_exact_where_spike_timing_cannot_matter(pool):
    """With one time step no input can arrive unevenly, so a deep QCFS network (BN folded,
    residual addition, max or average pooling, linear read-out) must equal its ANN exactly:
    QCFS with L = 1 as IF neurons at T = 1, and QCFS with L levels as group neurons of
    m = L members at T = 1 (they resolve L levels in one step). A wrong initial membrane
    (shift), threshold, pooling, residual or read-out breaks these equalities."""
    x = torch.rand(64, 2, 8, 8, dtype=torch.float64) * 2
    one_level = _deep_qcfs(1, pool)
    snn, _ = convert(one_level)
    with torch.no_grad():
        torch.testing.assert_close(snn.rate(x, 1), one_level(x), rtol=0, atol=1e-12)
    net = _deep_qcfs(4, pool)
    group, _ = convert(net, group_size=4)
    with torch.no_grad():
        ann = net(x)
        assert ann.std(0).mean() > 0.05  # the answer depends on the sample
        torch.testing.assert_close(group.rate(x, 1), ann, rtol=0, atol=1e-12)
    from spikeflow.conversion import unevenness

    assert set(unevenness(group, x, 1).values()) == {0.0}  # one step: nothing uneven


def test_deep_qcfs_gap_at_t_equal_l_is_unevenness_only():
    """At T = L a deep QCFS SNN is not its ANN (methods.md 7.2: "apart from unevenness");
    this pins down that the unevenness is all there is. (1) The SNN's mean output, and the
    mean input of every neuron layer, equal the ANN evaluated on the neurons' own mean
    outputs (the affine parts, residual and read-out are exact); (2) the first layer, fed
    a constant current, is exactly QCFS; (3) every neuron whose spike count equals the
    count of its input spread evenly outputs exactly QCFS of its mean input."""
    from spikeflow.conversion import uneven_counts, unevenness

    levels = 4
    net = _deep_qcfs(levels, nn.AvgPool2d(2))
    x = torch.rand(64, 2, 8, 8, dtype=torch.float64) * 2
    snn, _ = convert(net)
    names = ["q1", "q2", "q3", "q4"]
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(name):
        def hook(module, args, out):
            seen[name] = (args[0].unflatten(0, (levels, -1)), out.unflatten(0, (levels, -1)))

        return hook

    handles = [snn.body.get_submodule(n).register_forward_hook(record(n)) for n in names]
    with torch.no_grad():
        out = snn(constant_input(x, levels)).mean(0)
    for h in handles:
        h.remove()
    pre: dict[str, torch.Tensor] = {}

    def force(name):
        def hook(module, args, output):
            pre[name] = args[0]
            return seen[name][1].mean(0)  # the SNN's rate instead of the ANN's QCFS

        return hook

    handles = [net.get_submodule(n).register_forward_hook(force(n)) for n in names]
    with torch.no_grad():
        forced = net(x)
    for h in handles:
        h.remove()
    torch.testing.assert_close(out, forced, rtol=0, atol=1e-10)  # (1)
    for name in names:
        x_seq, out_seq = seen[name]
        torch.testing.assert_close(x_seq.mean(0), pre[name], rtol=0, atol=1e-10)  # (1)
        neuron = net.get_submodule(name)
        want = qcfs(x_seq.mean(0), neuron.threshold, levels)
        off = uneven_counts(snn.body.get_submodule(name).module, x_seq, out_seq)
        torch.testing.assert_close(out_seq.mean(0)[~off], want[~off], rtol=0, atol=1e-10)  # (3)
    fractions = unevenness(snn, x, levels)
    assert list(fractions) == names
    assert fractions["q1"] == 0.0  # (2)
    assert max(fractions.values()) > 0.01  # the deeper layers do see uneven input...
    with torch.no_grad():
        assert (out - net(x)).abs().max() > 1e-3  # ...so the SNN is not the ANN at T = L


# -- batch-norm folding checks which dim the batch norm normalises (review 3) ------------


def _linear_bn_mlp(positions: int) -> nn.Module:
    """Linear(4, 4) -> BatchNorm1d(4) -> ReLU -> Flatten -> Linear, in float64: on a
    [B, positions, 4] input the batch norm normalises the positions (dim 1), not the
    Linear's outputs, although both are 4 when positions == 4."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * positions, 3)
    )
    return _randomize_bn(net).double()


def test_a_linear_on_a_sequence_input_keeps_its_batch_norm():
    from spikeflow.conversion import fold_batchnorm_in_graph, layer_output_shapes
    from spikeflow.conversion.converter import _trace

    net = _linear_bn_mlp(positions=4)
    x = torch.rand(5, 4, 4, dtype=torch.float64)  # [B, L = 4, F = 4]
    gm = _trace(net)
    not_folded: dict[str, str] = {}
    assert fold_batchnorm_in_graph(gm, layer_output_shapes(net, x), not_folded) == []
    assert "normalises dim 1 of its input [5, 4, 4]" in not_folded["1"]
    with torch.no_grad():
        torch.testing.assert_close(gm(x), net(x), rtol=0, atol=0)
    # without a forward pass nothing shows the Linear's output shape: not folded either
    assert fold_batchnorm_in_graph(_trace(net)) == []
    snn, report = convert(net, x)
    (entry,) = [e for e in report.entries if e.name == "1"]
    assert entry.action == "kept" and "not folded" in entry.detail and "[5, 4, 4]" in entry.detail
    assert not report.by_action("folded")
    with torch.no_grad():
        ann = net(x)
        err = float((snn.rate(x, 4000) - ann).abs().max())
    assert err < 0.01 * float(ann.abs().max())  # a wrong fold was off by 40% of the range


@pytest.mark.parametrize("as_generator", [False, True], ids=["tensor", "generator"])
def test_a_linear_on_flat_input_still_folds_its_batch_norm(as_generator):
    from spikeflow.conversion import fold_batchnorm_in_graph, layer_output_shapes
    from spikeflow.conversion.converter import _trace

    net = _linear_bn_mlp(positions=1)
    x = torch.rand(6, 4, dtype=torch.float64)  # [B, F]
    gm = _trace(net)
    assert fold_batchnorm_in_graph(gm, layer_output_shapes(net, x)) == [("1", "0")]
    with torch.no_grad():
        torch.testing.assert_close(gm(x), net(x), rtol=1e-12, atol=1e-12)
    # convert() probes the first calibration batch; a one-shot iterable is still read whole
    data = (batch for batch in (x[:3], x[3:])) if as_generator else x
    snn, report = convert(net, data)
    assert [(e.name, e.detail) for e in report.by_action("folded")] == [("1", "into 0")]
    reference, _ = convert(net, [x[:3], x[3:]] if as_generator else x)
    with torch.no_grad():
        torch.testing.assert_close(snn.rate(x, 16), reference.rate(x, 16), rtol=0, atol=0)


# -- layer_output_shapes is a probe without side effects (review 6) ----------------------


def test_layer_output_shapes_leaves_a_train_mode_model_as_it_was():
    """A model still in train mode (just trained): the probe runs in eval mode, so the
    batch norm's running statistics (and num_batches_tracked) stay as they were and the
    dropout does not run; every training flag is put back, a mixed one included."""
    from spikeflow.conversion import fold_batchnorm_in_graph, layer_output_shapes
    from spikeflow.conversion.converter import _trace

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 2)
    )
    _randomize_bn(net).train()
    net[4].eval()  # a mixed state comes back as it was
    flags = [m.training for m in net.modules()]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    reference = copy.deepcopy(net).eval()
    x = torch.randn(8, 4) * 5 + 3
    shapes = layer_output_shapes(net, x)
    assert shapes == {net[0]: (8, 6), net[4]: (8, 2)}
    assert [m.training for m in net.modules()] == flags
    after = net.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key  # bit-identical, num_batches_tracked too
    # the documented recipe folds the statistics the model had, not the probe batch's
    gm = _trace(net.eval())
    assert fold_batchnorm_in_graph(gm, shapes) == [("1", "0")]
    test = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(gm(test), reference(test), rtol=1e-5, atol=1e-6)


def test_layer_output_shapes_leaves_no_spiking_state_behind():
    """A streaming neuron's carried state and a recorded membrane (a masked PSN's step
    count) are what they were before the probe, and the probe itself starts from the
    initial state."""
    from spikeflow.conversion import layer_output_shapes
    from spikeflow.functional import set_streaming
    from spikeflow.neurons import LIFNode

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), LIFNode(store_v_seq=True))
    set_streaming(net, True)
    with torch.no_grad():
        net(torch.rand(2, 5, 3) * 4)  # a carried state of batch 5, a recorded membrane
    neuron = net[1]
    state = {k: v.clone() for k, v in neuron.state.items()}
    v_seq = neuron.v_seq.clone()
    # batch 2: continuing from the carried batch-5 state would raise a StateError
    assert layer_output_shapes(net, torch.rand(3, 2, 3)) == {net[0]: (3, 2, 4)}
    assert neuron.state.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(neuron.state[key], value), key
    assert torch.equal(neuron.v_seq, v_seq)
    set_streaming(net, False)
    assert layer_output_shapes(net, torch.rand(3, 2, 3)) == {net[0]: (3, 2, 4)}
    assert neuron.state is None and torch.equal(neuron.v_seq, v_seq)
    # single-step mode: a masked PSN two steps into its sequence stays there
    from spikeflow.neurons import MaskedPSN

    psn_net = nn.Sequential(nn.Linear(3, 4), MaskedPSN(k=2, T=4, lambda_init=1.0, step_mode="s"))
    with streaming(psn_net), torch.no_grad():
        psn_net(torch.rand(5, 3))
        psn_net(torch.rand(5, 3))
        psn = psn_net[1]
        before = dict(psn.__dict__)
        assert psn._t == 2
        assert layer_output_shapes(psn_net, torch.rand(2, 3)) == {psn_net[0]: (2, 4)}
        assert psn.__dict__.keys() == before.keys()
        assert all(psn.__dict__[key] is value for key, value in before.items())
        psn_net(torch.rand(5, 3))  # the sequence goes on: step 3 of 4
        assert psn._t == 3


def test_the_converted_network_stays_in_eval_mode():
    # a parent's .train() reaching the SNN must not switch on a kept dropout
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)).eval()
    x = torch.rand(8, 6)
    snn, _ = convert(net, x)
    with torch.no_grad():
        before = snn(constant_input(x, 16))
        nn.Sequential(snn).train()
        assert snn.training and not any(m.training for m in snn.body.modules())
        torch.testing.assert_close(snn(constant_input(x, 16)), before)


class AnnotatedNet(nn.Module):
    """Written under ``from __future__ import annotations`` (this file is): the traced
    graph's nodes carry the string annotation ``"torch.Tensor"``."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.relu(self.a(x)))


def test_a_converted_network_of_an_annotated_model_saves_and_loads(tmp_path):
    import io

    torch.manual_seed(0)
    snn = convert(AnnotatedNet(), torch.randn(16, 4)).snn
    buffer = io.BytesIO()
    torch.save(snn, buffer)  # AttributeError before: fx made the annotation a global
    buffer.seek(0)
    back = torch.load(buffer, weights_only=False)
    x = torch.rand(8, 2, 4)
    assert torch.equal(back(x), snn(x))
