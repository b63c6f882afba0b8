"""spikeflow.energy.neurobench: NeuroBench 2.3.0's metric definitions, worked out by hand
on small networks, and (where neurobench is importable) against neurobench itself."""

import pytest
import torch
from torch import nn

from spikeflow import layers
from spikeflow.energy import NeuroBenchCounter, neurobench_metrics, neurobench_static
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.functional import streaming
from spikeflow.neurons import LeakyNode


def _tiny() -> nn.Sequential:
    # W = [[1, 0, 1], [0, 0, 0]]: input 0 reaches one output, input 1 none, input 2 one.
    net = nn.Sequential(nn.Linear(3, 2, bias=False), LeakyNode(beta=0.5))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    return net


def test_hand_derived_workload_metrics():
    """Batch 1 (T=2, B=1): x0 = [0.5, 0, 1] (real: MACs), x1 = [1, 0, 1] (ternary: ACs).
    Linear out [1.5, 0], [2, 0]; snnTorch Leaky (θ=1, delayed subtract):
    U0 = [1.5, 0] → S0 = [1, 0]; U1 = 0.5·1.5 + 2 − 1 = 1.75 → S1 = [1, 0].
    Batch 2 (T=1, B=2): zeros: no spikes, U = 0.
    SynOps: MACs 2 (step 0), ACs 2 (step 1), Dense 2·3·2 + 1·2·3·2 = 24 → per sample /3.
    ActivationSparsity per batch: 2/4 = 0.5 and 4/4 = 1, weighted by B: (0.5 + 2)/3.
    MembraneUpdates: batch 1: 2 at step 0, then U changed for neuron 0 only (1);
    batch 2: every neuron at its first step (4) → 7/3."""
    net = _tiny()
    batch1 = torch.tensor([[[0.5, 0.0, 1.0]], [[1.0, 0.0, 1.0]]])
    batch2 = torch.zeros(1, 2, 3)
    loader = [(batch1, torch.tensor([0])), (batch2, torch.tensor([1, 0]))]
    res = neurobench_metrics(net, loader)
    assert res.samples == 3
    assert res.effective_macs == pytest.approx(2 / 3)
    assert res.effective_acs == pytest.approx(2 / 3)
    assert res.dense == pytest.approx(24 / 3)
    assert res.activation_sparsity == pytest.approx((0.5 * 1 + 1.0 * 2) / 3)
    assert res.activation_sparsity_by_layer == {"1": pytest.approx(6 / 8)}
    assert res.membrane_updates == pytest.approx(7 / 3)
    # predictions: the most-spiking class (ties to class 0): 0, then 0 and 0
    assert res.classification_accuracy == pytest.approx(2 / 3)
    named = res.as_neurobench()
    assert named["SynapticOperations"]["Dense"] == pytest.approx(8.0)
    assert named["ParameterCount"] == 6 and named["ConnectionSparsity"] == 0.6667
    assert net[1].store_v_seq is False  # restored


def test_conv_pairs_and_padding():
    """A 3x3 kernel of ones with a zero centre, padding 1, on a 3x3 image with one spike
    in the middle: the spike reaches the 8 other outputs through a nonzero weight (8
    ACs). Dense counts the kernel entries inside the image per output: 4 corners of 4,
    4 edges of 6, the centre 9 = 49; with circular padding every output sees 9 = 81."""
    for mode, dense in (("zeros", 49), ("circular", 81)):
        conv = nn.Conv2d(1, 1, 3, padding=1, bias=False, padding_mode=mode)
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.weight[0, 0, 1, 1] = 0.0
        net = nn.Sequential(conv, nn.ReLU())
        x = torch.zeros(1, 1, 1, 3, 3)
        x[0, 0, 0, 1, 1] = 1.0
        with torch.no_grad(), NeuroBenchCounter(net) as nb:
            net(x.flatten(0, 1))  # [T·B, C, H, W]: one step of one sample
        res = nb.results()
        assert (res.effective_acs, res.effective_macs, res.dense) == (8, 0, dense)


def test_static_metrics_by_hand():
    """Linear(3, 2) with one zero weight, BatchNorm1d(2) and an RNN(2, 3) with 3 zeros:
    parameters 8 + 4 + (6 + 9 + 3 + 3) = 33; bytes 33·4 + running mean/var 4·4 + the
    int64 counter 8 = 156; zeros 1 + 3 over weights 6 + 21 (BatchNorm is not a
    connection; the RNN's biases are) = 4/27 = 0.1481."""
    lin, rnn = nn.Linear(3, 2), nn.RNN(2, 3)
    with torch.no_grad():
        lin.weight.fill_(0.5)
        lin.weight[0, 0] = 0.0
        rnn.weight_hh_l0.fill_(0.5)
        rnn.weight_hh_l0[0, :] = 0.0
    model = nn.Sequential(lin, nn.BatchNorm1d(2), rnn)
    assert neurobench_static(model) == {
        "ParameterCount": 33, "Footprint": 156, "ConnectionSparsity": 0.1481,
    }  # fmt: skip
    assert neurobench_static(nn.Sequential(nn.ReLU()))["ConnectionSparsity"] is None


def test_bad_inputs():
    with pytest.raises(ConfigurationError, match=r"torch\.nn\.Module"):
        neurobench_static("net")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="no batch"):
        neurobench_metrics(_tiny(), [])
    with pytest.raises(ShapeError, match=r"\[T, B, \.\.\.\]"):
        with NeuroBenchCounter(_tiny()) as nb:
            nb.model(torch.ones(3))
    nb = NeuroBenchCounter(_tiny())
    with pytest.raises(ShapeError, match="preds"):
        nb.score(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ConfigurationError, match="not run"):
        nb.results()


class _SnnTorchConvNet(nn.Module):
    """Conv2d → Leaky → Linear → Leaky in snnTorch, one step per call (NeuroBench's way)."""

    def __init__(self, snn: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.lif1 = snn.Leaky(beta=0.9)  # type: ignore[attr-defined]
        self.flat = nn.Flatten()
        self.fc = nn.Linear(6 * 8 * 8, 10)
        self.lif2 = snn.Leaky(beta=0.8)  # type: ignore[attr-defined]
        self.reset()

    def reset(self) -> None:
        self.m1 = self.lif1.reset_mem()
        self.m2 = self.lif2.reset_mem()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s1, self.m1 = self.lif1(self.conv(x), self.m1)
        s2, self.m2 = self.lif2(self.fc(self.flat(s1)), self.m2)
        return s2, self.m2


def test_equals_neurobench_on_digits():
    """The same network in snnTorch (through neurobench 2.3.0's own hooks and metrics) and
    in spikeflow (LeakyNode is snnTorch's Leaky) on sklearn's real 8x8 digits: every
    workload metric equal; the static ones equal neurobench's on the spikeflow model."""
    pytest.importorskip("neurobench.metrics.workload", reason="neurobench is not installed")
    snn = pytest.importorskip("snntorch", reason="snntorch is not installed")
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn is not installed")
    from neurobench.metrics.manager.static_manager import StaticMetricManager
    from neurobench.metrics.manager.workload_manager import WorkloadMetricManager
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ActivationSparsityByLayer,
        ClassificationAccuracy,
        MembraneUpdates,
        SynapticOperations,
    )
    from neurobench.models import SNNTorchModel, TorchModel

    torch.manual_seed(0)
    digits = datasets.load_digits()
    x = torch.tensor(digits.images[:96] / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target[:96])
    T, sizes = 6, (40, 40, 16)  # a short last batch: per-batch averaging shows
    ref_net = _SnnTorchConvNet(snn)
    with torch.no_grad():
        ref_net.conv.weight.mul_(3.0)
        ref_net.conv.weight[ref_net.conv.weight.abs() < 0.1] = 0.0  # pruned weights
        ref_net.fc.weight.mul_(6.0)
    net = nn.Sequential(  # spikeflow's sequence layers take [T, B, ...] in one call
        layers.Conv2d(1, 6, 3, padding=1), LeakyNode(beta=0.9), layers.Flatten(),
        layers.Linear(6 * 8 * 8, 10), LeakyNode(beta=0.8),
    )  # fmt: skip
    net[0].load_state_dict(ref_net.conv.state_dict())
    net[3].load_state_dict(ref_net.fc.state_dict())

    workload = [ClassificationAccuracy, ActivationSparsity, ActivationSparsityByLayer,
                MembraneUpdates, SynapticOperations]  # fmt: skip
    manager = WorkloadMetricManager(workload)
    model = SNNTorchModel(ref_net)
    manager.register_hooks(model)
    manager.initialize_metrics()
    batches = list(zip(x.split(list(sizes)), y.split(list(sizes))))
    for xb, yb in batches:
        data = (xb.unsqueeze(1).repeat(1, T, 1, 1, 1), yb)  # NeuroBench's [B, T, ...]
        preds = model(data[0]).sum(1).argmax(-1)
        manager.run_metrics(model, preds, data, len(yb), len(y))
        manager.reset_hooks(model)
    ref = dict(manager.results)
    manager.cleanup_hooks(model)

    loader = [(xb.unsqueeze(0).repeat(T, 1, 1, 1, 1), yb) for xb, yb in batches]
    ours = neurobench_metrics(net, loader).as_neurobench()
    assert ours["ClassificationAccuracy"] == pytest.approx(ref["ClassificationAccuracy"])
    assert ours["ActivationSparsity"] == pytest.approx(ref["ActivationSparsity"])
    by_layer = ref["ActivationSparsityByLayer"]
    assert list(ours["ActivationSparsityByLayer"].values()) == pytest.approx(
        [by_layer["lif1"], by_layer["lif2"]]
    )
    assert ours["MembraneUpdates"] == pytest.approx(ref["MembraneUpdates"])
    assert ours["SynapticOperations"] == pytest.approx(ref["SynapticOperations"])
    assert ours["SynapticOperations"]["Effective_MACs"] > 0  # the real-valued image
    assert ours["SynapticOperations"]["Effective_ACs"] > 0  # the spikes
    static = StaticMetricManager([ParameterCount, Footprint, ConnectionSparsity])
    assert neurobench_static(net) == static.run_metrics(TorchModel(net))


def test_spikeflow_eval_neurobench(tmp_path, capsys):
    """``spikeflow eval --neurobench`` on a trained digits run, with ``--operations``: the
    layers fed spikes ({0, 1}) give NeuroBench's Effective_ACs the counter's ACs; the
    first convolution reads the real-valued image, where NeuroBench skips the zero
    pixels the counter multiplies (fewer MACs); its accuracy is the run's."""
    import json

    from spikeflow.cli import main
    from spikeflow.training import Trainer
    from train_runs import tiny

    Trainer(tiny(tmp_path, "run", epochs=1, neuron_kwargs={"v_threshold": 0.3}),
            log=None).fit()  # fmt: skip
    out = tmp_path / "nb.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--no-progress",
                 "--operations", "--neurobench", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    nb, ops = result["neurobench"], result["operations"]
    synops = nb["SynapticOperations"]
    assert synops["Effective_ACs"] == pytest.approx(ops["acs_per_sample"])
    assert 0 < synops["Effective_MACs"] < ops["macs_per_sample"]
    assert synops["Dense"] > synops["Effective_ACs"] + synops["Effective_MACs"]
    assert nb["ClassificationAccuracy"] == result["test_acc"]
    assert 0 < nb["ActivationSparsity"] < 1 and nb["MembraneUpdates"] > 0
    assert nb["ParameterCount"] > 0 and nb["Footprint"] >= 4 * nb["ParameterCount"]
    assert "NeuroBench metrics" in text and "Effective_ACs" in text


def test_graded_spikes_are_macs_for_neurobench():
    """x = [1, 0] (spikes) → W1 = [[2, 0], [0, 0]] → [2, 0] → LeakyNode firing 0.5-graded
    spikes [0.5, 0] → W2 = [[1, 1]]. NeuroBench: the first layer 1 AC (input 0 reaches
    one output), the second 1 MAC (0.5 is not in {0, 1, -1}); Dense 2·2 + 2·1 = 6. The
    counter reads one magnitude as spikes: 2 ACs, no MAC."""
    from spikeflow.energy import count_operations

    net = nn.Sequential(nn.Linear(2, 2, bias=False), LeakyNode(beta=0.5, graded_spikes_factor=0.5),
                        nn.Linear(2, 1, bias=False))  # fmt: skip
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
        net[2].weight.fill_(1.0)
    x = torch.tensor([[[1.0, 0.0]]])  # [T=1, B=1, 2]
    res = neurobench_metrics(net, [(x, torch.tensor([0]))], postprocess=lambda o: o[0, :, 0].long())
    assert (res.effective_acs, res.effective_macs, res.dense) == (1, 1, 6)
    report = count_operations(net, x)
    assert (report.acs, report.macs) == (2, 0)


def test_equals_neurobench_graded_relu_and_unchanged_membranes():
    """Against neurobench 2.3.0: rate-coded digits (spikes: ACs) into a pruned layer and a
    non-leaky Leaky (β = 1, reset to zero at the spiking step) whose 0.5-graded spikes
    are MACs, a ReLU (an activation for NeuroBench), then a Leaky. Neurons without input
    at a step keep their membrane: MembraneUpdates counts fewer than every neuron."""
    pytest.importorskip("neurobench.metrics.workload", reason="neurobench is not installed")
    snn = pytest.importorskip("snntorch", reason="snntorch is not installed")
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn is not installed")
    from neurobench.metrics.manager.workload_manager import WorkloadMetricManager
    from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations
    from neurobench.models import SNNTorchModel

    torch.manual_seed(1)
    digits = datasets.load_digits()
    p = torch.tensor(digits.data[:64] / 16.0, dtype=torch.float32) * 0.3
    T = 5
    spikes = (torch.rand(T, *p.shape) < p).float()  # [T, B, 64]
    kwargs = {"reset_mechanism": "zero", "reset_delay": False, "graded_spikes_factor": 0.5}

    class Ref(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.lif1 = nn.Linear(64, 32), snn.Leaky(beta=1.0, **kwargs)
            self.fc2, self.relu = nn.Linear(32, 16), nn.ReLU()
            self.fc3, self.lif2 = nn.Linear(16, 10), snn.Leaky(beta=0.7)
            self.reset()

        def reset(self) -> None:
            self.m1, self.m2 = self.lif1.reset_mem(), self.lif2.reset_mem()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            s, self.m1 = self.lif1(self.fc1(x), self.m1)
            s, self.m2 = self.lif2(self.fc3(self.relu(self.fc2(s))), self.m2)
            return s, self.m2

    ref_net = Ref()
    with torch.no_grad():
        ref_net.fc1.weight.mul_(4.0)
        ref_net.fc1.weight[torch.rand(32, 64) < 0.8] = 0.0
        ref_net.fc1.bias.zero_()  # no input, no change (β = 1)
    net = nn.Sequential(
        layers.Linear(64, 32), LeakyNode(beta=1.0, **kwargs), layers.Linear(32, 16),
        nn.ReLU(), layers.Linear(16, 10), LeakyNode(beta=0.7),
    )  # fmt: skip
    for mine, theirs in ((net[0], ref_net.fc1), (net[2], ref_net.fc2), (net[4], ref_net.fc3)):
        mine.load_state_dict(theirs.state_dict())

    manager = WorkloadMetricManager([ActivationSparsity, MembraneUpdates, SynapticOperations])
    model = SNNTorchModel(ref_net)
    manager.register_hooks(model)
    manager.initialize_metrics()
    for xb in spikes.split(32, dim=1):
        data = (xb.transpose(0, 1), torch.zeros(xb.shape[1]))
        manager.run_metrics(model, model(data[0]), data, xb.shape[1], spikes.shape[1])
        manager.reset_hooks(model)
    ref = dict(manager.results)
    manager.cleanup_hooks(model)

    batches = [(xb, torch.zeros(xb.shape[1])) for xb in spikes.split(32, dim=1)]
    ours = neurobench_metrics(net, batches, postprocess=lambda o: o[0, :, 0]).as_neurobench()
    assert ours["ActivationSparsity"] == pytest.approx(ref["ActivationSparsity"])
    assert ours["MembraneUpdates"] == pytest.approx(ref["MembraneUpdates"])
    assert ours["MembraneUpdates"] < T * (32 + 10)  # some membranes stayed
    assert ours["SynapticOperations"] == pytest.approx(ref["SynapticOperations"])
    synops = ours["SynapticOperations"]
    assert synops["Effective_ACs"] > 0 and synops["Effective_MACs"] > 0


def test_recurrent_containers_feedback_synops_by_hand():
    """A Recurrent's W y[t-1] and a LinearRecurrentContainer's input and feedback parts
    run as F.linear (no module call): still counted per step, as NeuroBench counts
    snnTorch's RLeaky recurrent Linear. y[-1] = 0 counts in Dense, not in ACs."""
    torch.manual_seed(3)
    T, B, n = 4, 3, 5
    x = torch.rand(T, B, 6) * 3
    rec = layers.Recurrent(LeakyNode(beta=0.9, step_mode="s"), n)
    net = nn.Sequential(layers.Linear(6, n, bias=False), rec)
    res = neurobench_metrics(net, [(x, torch.zeros(B, dtype=torch.long))])
    with torch.no_grad():
        y = net(x)
    fan_out = (rec.recurrent.weight != 0).sum(0).float()  # per presynaptic neuron
    acs = float(((y[:-1] != 0).float() * fan_out).sum())
    assert acs > 0
    assert res.dense == pytest.approx(T * (6 * n + n * n))
    assert res.effective_acs == pytest.approx(acs / B)
    assert res.effective_macs == pytest.approx(T * 6 * n)  # x is dense and real
    # streamed in two chunks: the second starts from the first's fed-back spikes
    with torch.no_grad(), NeuroBenchCounter(net) as nb, streaming(net):
        net(x[:2]), net(x[2:])
    assert nb.results().effective_acs * 2 == pytest.approx(acs / B)

    lrc = layers.LinearRecurrentContainer(LeakyNode(beta=0.9, step_mode="s"), 6, 6, bias=False)
    res = neurobench_metrics(nn.Sequential(lrc), [(x, torch.zeros(B, dtype=torch.long))])
    with torch.no_grad():
        y = lrc(x)
    fan_out = (lrc.rc.weight[:, 6:] != 0).sum(0).float()
    assert res.dense == pytest.approx(T * (6 * 6 + 6 * 6))
    assert res.effective_acs == pytest.approx(float(((y[:-1] != 0).float() * fan_out).sum()) / B)
    assert res.effective_macs == pytest.approx(T * 6 * 6)


def test_equals_neurobench_recurrent_leaky():
    """Against neurobench 2.3.0: snnTorch's RLeaky (its recurrent Linear called per step)
    and spikeflow's Recurrent(LeakyNode) with the same weights: every workload metric."""
    pytest.importorskip("neurobench.metrics.workload", reason="neurobench is not installed")
    snn = pytest.importorskip("snntorch", reason="snntorch is not installed")
    from neurobench.metrics.manager.workload_manager import WorkloadMetricManager
    from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations
    from neurobench.models import SNNTorchModel

    torch.manual_seed(0)
    n, T = 12, 5

    class Ref(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, n)
            self.lif = snn.RLeaky(beta=0.9, linear_features=n)
            self.reset()

        def reset(self) -> None:
            self.spk, self.mem = self.lif.init_rleaky()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            self.spk, self.mem = self.lif(self.fc(x), self.spk, self.mem)
            return self.spk, self.mem

    ref_net = Ref()
    with torch.no_grad():
        ref_net.fc.weight.mul_(3.0)
        ref_net.lif.recurrent.bias.zero_()
    rec = layers.Recurrent(LeakyNode(beta=0.9, step_mode="s"), n)
    net = nn.Sequential(layers.Linear(8, n), rec)
    net[0].load_state_dict(ref_net.fc.state_dict())
    with torch.no_grad():
        rec.recurrent.weight.copy_(ref_net.lif.recurrent.weight)
    x = torch.rand(7, T, 8)  # NeuroBench's [B, T, ...]
    manager = WorkloadMetricManager([ActivationSparsity, MembraneUpdates, SynapticOperations])
    model = SNNTorchModel(ref_net)
    manager.register_hooks(model)
    manager.initialize_metrics()
    data = (x, torch.zeros(7))
    manager.run_metrics(model, model(x), data, 7, 7)
    ref = dict(manager.results)
    manager.cleanup_hooks(model)

    loader = [(x.transpose(0, 1).contiguous(), torch.zeros(7, dtype=torch.long))]
    ours = neurobench_metrics(net, loader).as_neurobench()
    assert ours["SynapticOperations"] == pytest.approx(ref["SynapticOperations"])
    assert ours["SynapticOperations"]["Effective_ACs"] > 0  # the fed-back spikes
    assert ours["ActivationSparsity"] == pytest.approx(ref["ActivationSparsity"])
    assert ours["MembraneUpdates"] == pytest.approx(ref["MembraneUpdates"])


def test_connection_sparsity_of_a_pruned_network_is_its_applied_weights():
    """A pruned (parametrized) layer's zero weights count, as NeuroBench counts them on
    the baked network: not None (no leaf Linear left) as on the parametrized one."""
    from spikeflow.prune import apply_soft_threshold, finalize, set_threshold

    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(8, 16), LeakyNode(beta=0.9), layers.Linear(16, 4))
    apply_soft_threshold(net)
    set_threshold(net, 0.15)
    zeros = sum(int((net[i].weight == 0).sum()) for i in (0, 2))
    assert 0 < zeros < 192
    assert neurobench_static(net)["ConnectionSparsity"] == round(zeros / 192, 4)
    finalize(net)  # the plain layers NeuroBench reads
    assert neurobench_static(net)["ConnectionSparsity"] == round(zeros / 192, 4)


@pytest.mark.parametrize("training", [True, False])
def test_neurobench_metrics_restores_the_models_mode(training):
    net = nn.Sequential(layers.Linear(4, 3), LeakyNode(beta=0.9))
    net.train(training)
    loader = [(torch.rand(5, 2, 4), torch.tensor([0, 1]))]
    neurobench_metrics(net, loader)
    assert net.training is training and net[1].training is training


def _last_step(out: torch.Tensor) -> torch.Tensor:
    return out[-1]


def test_regression_metrics_by_hand():
    """Batch 1 (B=2): preds [[1, 2], [3, 0]], targets [[1, 4], [1, 0]]: squared errors
    0, 4, 4, 0 → MSE 2; sMAPE terms 0, 2/6, 2/4 and 0/0 → the batch scores 200 whole.
    Batch 2 (B=1): preds [[2, 1]], targets [[4, 3]]: MSE 4; sMAPE 200·(2/6 + 2/4)/2.
    Weighted by B: MSE (2·2 + 4)/3, SMAPE (200·2 + 250/3)/3 = 1450/9.
    R2 over the set: column 0 targets [1, 1, 4] (mean 2, spread 6), errors² 8 → −1/3;
    column 1 targets [4, 0, 3] (mean 7/3, spread 26/3), errors² 8 → 1/13; mean −5/39."""
    preds = (torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([[2.0, 1.0]]))
    targets = (torch.tensor([[1.0, 4.0], [1.0, 0.0]]), torch.tensor([[4.0, 3.0]]))
    loader = [(p.unsqueeze(0).repeat(3, 1, 1), y) for p, y in zip(preds, targets)]
    res = neurobench_metrics(nn.Identity(), loader, task="regression", postprocess=_last_step)
    assert res.samples == 3 and res.classification_accuracy is None
    assert res.mse == pytest.approx(8 / 3)
    assert res.smape == pytest.approx(1450 / 9)
    assert res.r2 == pytest.approx(-5 / 39)
    named = res.as_neurobench()
    assert (named["MSE"], named["SMAPE"], named["R2"]) == (res.mse, res.smape, res.r2)
    assert "ClassificationAccuracy" not in named
    # the default postprocess of a regression is the output itself ([T, B, 2] rows)
    direct = [(x, x + 1.0) for x, _ in loader]
    assert neurobench_metrics(nn.Identity(), direct, task="regression").mse == 1.0
    # a classification reports no regression metric
    classified = neurobench_metrics(_tiny(), [(torch.ones(2, 1, 3), torch.tensor([0]))])
    assert "MSE" not in classified.as_neurobench()


def test_regression_r2_one_column_and_bad_inputs():
    """A 1-D prediction is one R2 column: targets [0, 2, 4] (spread 8), errors² 1 → 7/8."""
    loader = [(torch.tensor([[0.0, 1.0]]), torch.tensor([0.0, 1.0])),
              (torch.tensor([[5.0]]), torch.tensor([4.0]))]  # fmt: skip
    res = neurobench_metrics(nn.Identity(), loader, task="regression", postprocess=_last_step)
    assert res.r2 == pytest.approx(1 - 1 / ((0 - 5 / 3) ** 2 + (1 - 5 / 3) ** 2 + (4 - 5 / 3) ** 2))
    with pytest.raises(ConfigurationError, match="task"):
        neurobench_metrics(nn.Identity(), loader, task="detection")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="targets"):
        neurobench_metrics(nn.Identity(), loader, task="regression")  # [1, B] vs [B]
    nb = NeuroBenchCounter(nn.Identity())
    with pytest.raises(ConfigurationError, match="not run"):
        nb.score_regression(torch.zeros(2), torch.zeros(2))
    with torch.no_grad(), nb:
        nb.model(torch.zeros(1, 2, 2))
        nb.score_regression(torch.zeros(2, 2), torch.ones(2, 2))
        nb.model(torch.zeros(1, 2, 3))
        with pytest.raises(ShapeError, match="3 output columns"):
            nb.score_regression(torch.zeros(2, 3), torch.ones(2, 3))


def test_regression_equals_neurobench_on_linnerud():
    """A least-squares readout of sklearn's real Linnerud data (exercises → weight and
    waist), run as a spikeflow Linear over T steps, plus an all-zero sample whose 0/0
    sMAPE sets its batch to 200; unequal batches (8, 8, 5). neurobench 2.3.0's own MSE,
    SMAPE and R2 through its WorkloadMetricManager give the same values."""
    pytest.importorskip("neurobench.metrics.workload", reason="neurobench is not installed")
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn is not installed")
    from neurobench.metrics.manager.workload_manager import WorkloadMetricManager
    from neurobench.metrics.workload import MSE, R2, SMAPE

    data = datasets.load_linnerud()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = torch.cat((x, torch.ones(len(x), 1)), 1)  # the intercept as a constant input
    y = torch.tensor(data.target[:, :2], dtype=torch.float32)
    weight = torch.linalg.lstsq(x, y).solution.T
    x, y = torch.cat((x, torch.zeros(1, 4))), torch.cat((y, torch.zeros(1, 2)))
    net = layers.Linear(4, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(weight)
    sizes, T = [8, 8, 5], 4
    batches = list(zip(x.split(sizes), y.split(sizes)))

    manager = WorkloadMetricManager([MSE, SMAPE, R2])
    manager.initialize_metrics()
    for xb, yb in batches:
        with torch.no_grad():
            preds = net(xb.unsqueeze(0).repeat(T, 1, 1)).mean(0)
        manager.run_metrics(None, preds, (xb, yb), len(yb), len(y))
    ref = dict(manager.results)

    loader = [(xb.unsqueeze(0).repeat(T, 1, 1), yb) for xb, yb in batches]
    ours = neurobench_metrics(
        net, loader, task="regression", postprocess=lambda out: out.mean(0)
    ).as_neurobench()
    assert 0.1 < ours["R2"] < 1  # a real fit, not a constant
    assert ours["SMAPE"] > 0 and ours["MSE"] > 0
    for name in ("MSE", "SMAPE", "R2"):
        assert ours[name] == pytest.approx(ref[name], rel=1e-5), name
