"""Lemaire et al.'s memory-access energy model against its formulas derived by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.energy import (
    HOROWITZ_SRAM_45NM,
    AccessCounts,
    LayerGeometry,
    Technology,
    count_operations,
    memory_energy_report,
    snn_counts,
)
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.functional import reset_net

#: Round numbers: an access to a memory of W words costs W (one byte, 1 J per byte of
#: memory), a MAC 11, an addition 1; spike queues of 5 words.
TECH = Technology(e_add=1.0, e_mul=10.0, bits=8, sram=((1, 1.0),), sram_width=8, fifo_words=5)


def _spikes_of(net: nn.Module, x: torch.Tensor, index: int) -> torch.Tensor:
    """The output of ``net[index]`` for ``x`` (the network reset before and after)."""
    reset_net(net)
    with torch.no_grad():
        out = net[: index + 1](x)
    reset_net(net)
    return out


def test_linear_layer_equals_the_hand_derived_formulas():
    torch.manual_seed(0)
    net = nn.Sequential(layers.Linear(6, 4), neurons.LIFNode(v_threshold=0.2))
    x = (torch.rand(3, 2, 6) < 0.5).float()  # T = 3, B = 2
    report = memory_energy_report(net, x, TECH)
    (layer,) = report.layers
    ti = float((x != 0).sum()) / 2  # θ_in per sample
    to = float(_spikes_of(net, x, 1).sum()) / 2  # θ_out per sample
    assert to > 0 and ti > 0
    assert (layer.steps, layer.real_steps, layer.leak, layer.neurons) == (3, 0, True, "1")
    # SNN: N_in = 6, N_out = 4, T = 3, LIF (leak), bias: 24 + 4 parameter words.
    want = AccessCounts(
        macs=3 * 4, accumulates=ti * 4 + 3 * 4 + to, address_adds=ti * 4, input_reads=ti,
        weight_reads=ti * 4, bias_reads=3 * 4, potential_reads=ti * 4 + 3 * 4,
        potential_writes=ti * 4 + 3 * 4, output_writes=to, input_words=5,
        parameter_words=28, potential_words=4, output_words=5, neuron_updates=3 * 4,
        neuron_words=4, queue_reads=ti, queue_words=5,
    )  # fmt: skip
    assert _close(layer.snn, want)
    # ANN: once, dense; addressing N_in + N_out.
    ann = AccessCounts(macs=24, accumulates=4, address_adds=10, input_reads=6,
                       weight_reads=24, bias_reads=4, output_writes=4, input_words=6,
                       parameter_words=28, output_words=4)  # fmt: skip
    assert layer.ann == ann
    # Energy: an access costs the words of its memory; MAC 11, add 1.
    snn = layer.snn.energy(TECH)
    assert snn.operations == pytest.approx(12 * 11 + (4 * ti + 12 + to))
    assert snn.addressing == pytest.approx(4 * ti)
    assert snn.inputs == pytest.approx(ti * 5)
    assert snn.weights == pytest.approx(4 * ti * 28)
    assert snn.biases == pytest.approx(12 * 28)
    assert snn.potentials == pytest.approx(2 * (4 * ti + 12) * 4)
    assert snn.outputs == pytest.approx(to * 5)
    energy = layer.ann.energy(TECH)
    assert energy.total == 24 * 11 + 4 + 10 + 6 * 6 + 24 * 28 + 4 * 28 + 4 * 4
    assert report.ratio() == pytest.approx(energy.total / snn.total)


def _close(got: AccessCounts, want: AccessCounts) -> bool:
    return all(getattr(got, k) == pytest.approx(v) for k, v in vars(want).items())


def test_conv2d_layer_equals_the_hand_derived_formulas():
    torch.manual_seed(1)
    conv = layers.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
    net = nn.Sequential(conv, neurons.IFNode(v_threshold=0.3))
    x = (torch.rand(2, 1, 2, 7, 7) < 0.4).float()  # T = 2, B = 1; 7x7 -> 4x4
    (layer,) = memory_energy_report(net, x, TECH).layers
    ti, to = float((x != 0).sum()), float(_spikes_of(net, x, 1).sum())
    assert to > 0 and layer.leak is False  # IF: no multiplication
    # C_in 2, C_out 3, K = 9, K_s = ceil(3/2)^2 = 4, I = 49, O = 16, N = 48, T = 2.
    want = AccessCounts(
        macs=0, accumulates=ti * 3 * 4 + to, address_macs=2 * ti, address_adds=ti * 3 * 9,
        input_reads=ti, weight_reads=ti * 27, bias_reads=0, potential_reads=ti * 27 + 96,
        potential_writes=ti * 27 + 96, output_writes=to, input_words=5, parameter_words=54,
        potential_words=48, output_words=5, neuron_updates=96, neuron_words=48,
        queue_reads=ti, queue_words=5,
    )  # fmt: skip
    assert _close(layer.snn, want)
    # ANN: 48 outputs of 2·9 products each.
    assert layer.ann == AccessCounts(
        macs=864, address_adds=98 + 48 + 27, input_reads=864, weight_reads=864,
        output_writes=48, input_words=98, parameter_words=54, output_words=48,
    )  # fmt: skip
    # Queues of 16 words hold the spikes in and out.
    fifo = snn_counts(layer.geometry, 2, ti, to, False, fifo_words=16)
    assert (fifo.input_words, fifo.output_words, fifo.potential_words) == (16, 16, 48)


def test_a_tiny_network_totals_by_hand():
    """Real input x = (0.5, 1, 2) at both steps; W1 keeps x0 and x2: an IF layer's
    charges (0.5, 2) then (1, 2) fire (0, 1) then (1, 1): θ_out = 3, fed to a read-out
    W2 of one output and no neurons: θ_in = 3, θ_out = 0."""
    fc1, fc2 = layers.Linear(3, 2, bias=False), layers.Linear(2, 1, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
        fc2.weight.fill_(0.5)
    net = nn.Sequential(fc1, neurons.IFNode(), fc2)
    x = torch.tensor([0.5, 1.0, 2.0]).expand(2, 1, 3).contiguous()
    report = memory_energy_report(net, x, TECH)
    first, second = report.layers
    assert (first.real_steps, first.output_spikes, second.input_spikes) == (2, 3, 3)
    # SNN layer 1, dense at 2 steps: ops 12 MACs·11 + 3 resets; addressing 2·(3 + 2);
    # inputs 6·3 words; weights 12·6; potentials (4 + 4)·2; outputs 3·5 (the queue).
    assert first.snn.energy(TECH).total == 135 + 10 + 18 + 72 + 16 + 15
    # SNN layer 2, a read-out: ops 3; addressing 3; inputs 3·5; weights 3·2;
    # potentials (3 + 3)·1 (its synapses only: no neurons to update).
    assert second.snn.energy(TECH).total == 3 + 3 + 15 + 6 + 6
    assert report.snn_energy().total == 299
    # ANN: layer 1 66 + 5 + 9 + 36 + 4 = 120; layer 2 22 + 3 + 4 + 4 + 1 = 34.
    assert report.ann_energy().total == 154
    assert report.ratio() == pytest.approx(154 / 299)
    assert report.snn_energy().potentials == 22 and report.ann_energy().potentials == 0
    text = str(report)
    assert "ANN / SNN: 0.515" in text and "real" in text


def test_default_costs_are_horowitz_and_the_sram_interpolation():
    tech = Technology()
    assert (tech.e_add, tech.e_mul, tech.bits, tech.fifo_words) == (0.1e-12, 3.1e-12, 32, 1000)
    fp32 = Technology.horowitz_45nm("fp32")
    assert (fp32.e_add, fp32.e_mul, fp32.bits) == (0.9e-12, 3.7e-12, 32)
    assert Technology.horowitz_45nm("int8").bits == 8
    # 32-bit words: 8 KiB = 2048 words, 10 pJ; halfway to 32 KiB, 15 pJ; 4 KiB, 5 pJ.
    assert tech.access(2048) == pytest.approx(10e-12)
    assert tech.access(2048 + 3072) == pytest.approx(15e-12)
    assert tech.access(1024) == pytest.approx(5e-12)
    assert tech.access(0) == 0.0
    # Past 1 MiB along the last segment: 80 pJ over 1 MiB - 32 KiB.
    assert tech.access(2 * 262144) == pytest.approx(100e-12 + 80e-12 * 1048576 / 1015808)
    # A 64-bit word moves twice the bits of the 32-bit access priced.
    assert Technology(bits=64).access(1024) == pytest.approx(20e-12)
    assert len(HOROWITZ_SRAM_45NM) == 3


def test_event_reads_equal_the_exact_synaptic_operations_of_a_dense_linear():
    """θ_in·N_out weight reads are the counter's ACs for a dense linear layer."""
    torch.manual_seed(2)
    fc = layers.Linear(8, 5)
    x = (torch.rand(4, 3, 8) < 0.3).float()
    (layer,) = memory_energy_report(fc, x).layers
    assert layer.snn.weight_reads == pytest.approx(count_operations(fc, x).acs)


def test_neurons_after_pooling_and_undeclared_neurons():
    """A layer's neurons run next on an output of its size (batch norm between is
    fine), or, with pooling between, next after it (the second convolution's IF
    neurons: 2 per step after the pooling, not its 8 outputs)."""
    torch.manual_seed(3)
    net = nn.Sequential(
        layers.Conv2d(1, 2, 3, padding=1), layers.BatchNorm2d(2), neurons.LIFNode(),
        layers.MaxPool2d(2), layers.Conv2d(2, 2, 1), layers.MaxPool2d(2), neurons.IFNode(),
        layers.Flatten(), layers.Linear(2, 3), neurons.MaskedPSN(k=2, T=2),
        layers.Linear(3, 2),
    )  # fmt: skip
    x = (torch.rand(2, 2, 1, 4, 4) < 0.5).float()
    report = memory_energy_report(net, x)
    assert [(layer.name, layer.neurons, layer.leak) for layer in report.layers] == [
        ("0", "2", True), ("4", "6", False), ("8", "9", True), ("10", None, False),
    ]  # fmt: skip
    assert report.not_counted == ["9 (MaskedPSN: leak assumed)"]
    assert report.layers[3].output_spikes == 0
    pooled = report.layers[1].snn
    assert (pooled.neuron_updates, pooled.neuron_words, pooled.potential_words) == (4, 2, 8)
    assert report.layers[0].input_rate == pytest.approx(float(x.mean()))


class _TwoSizes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = layers.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).sum() + self.conv(x[..., :4, :4]).sum()


def test_a_layer_run_on_two_geometries_is_an_error():
    with pytest.raises(ShapeError, match="layer conv ran on two geometries"):
        memory_energy_report(_TwoSizes(), torch.ones(2, 1, 1, 5, 5))
    with pytest.raises(ShapeError, match=r"layer conv's input \(2, 3, 1, 5, 5\) does not split"):
        memory_energy_report(_TwoSizes(), torch.ones(2, 3, 1, 5, 5), samples=4)


def test_spike_counts_read_event_counts_as_spikes():
    fc = layers.Linear(3, 2, bias=False)
    x = torch.tensor([[[0.0, 2.0, 1.0]], [[3.0, 0.0, 0.0]]])  # counts: 6 events
    assert memory_energy_report(fc, x).layers[0].real_steps == 2
    layer = memory_energy_report(fc, x, spike_counts=True).layers[0]
    assert (layer.real_steps, layer.input_spikes) == (0, 6)


def test_bad_arguments_are_named():
    fc = layers.Linear(3, 2)
    with pytest.raises(ShapeError, match=r"time-major \[T, B, ...\], got \(3,\)"):
        memory_energy_report(fc, torch.ones(3))
    with pytest.raises(ConfigurationError, match="samples must be a positive integer"):
        memory_energy_report(fc, torch.ones(2, 1, 3), samples=0)
    with pytest.raises(ConfigurationError, match="technology must be a Technology"):
        memory_energy_report(fc, torch.ones(2, 1, 3), technology=0.1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="spike_counts must be True or False"):
        memory_energy_report(fc, torch.ones(2, 1, 3), spike_counts="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="e_mul must be a finite number"):
        Technology(e_mul=-1.0)
    with pytest.raises(ConfigurationError, match="bits must be an integer >= 1"):
        Technology(bits=0)
    with pytest.raises(ConfigurationError, match="fifo_words must be an integer >= 1"):
        Technology(fifo_words=0)
    with pytest.raises(ConfigurationError, match="sram sizes must increase"):
        Technology(sram=((10, 1.0), (5, 2.0)))
    with pytest.raises(ConfigurationError, match=r"sram must be \(bytes, joules\) pairs"):
        Technology(sram=(1.0,))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="number must be one of"):
        Technology.horowitz_45nm("int4")
    with pytest.raises(ConfigurationError, match="groups 2 must divide the channels"):
        LayerGeometry("conv", 3, 4, (3,), (1,), groups=2)
    with pytest.raises(ConfigurationError, match="kind must be 'linear' or 'conv'"):
        LayerGeometry("pool", 3, 4)
    geometry = LayerGeometry("linear", 3, 2)
    with pytest.raises(ConfigurationError, match=r"real_steps \(3\) cannot exceed steps"):
        snn_counts(geometry, 2, 0, 0, False, real_steps=3)
    with pytest.raises(ConfigurationError, match="input_spikes must be finite and >= 0"):
        snn_counts(geometry, 2, -1, 0, False)
    with pytest.raises(ConfigurationError, match="without neurons has no leak"):
        snn_counts(geometry, 2, 0, 0, True, neurons=False)


NMNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nmnist-small"


@pytest.mark.skipif(not NMNIST.is_dir(), reason="needs ../shared/data/nmnist-small")
def test_real_nmnist_events_through_a_zoo_network():
    """Real N-MNIST frames (event counts) through the zoo's PLIF N-MNIST network: its
    first layer reads the events as spikes with ``spike_counts``, and every other
    layer's θ_in is the spikes of the neurons before it."""
    from spikeflow.data import NMNIST as Dataset
    from spikeflow.models import create_model

    data = Dataset(str(NMNIST), train=False, data_type="frame", frames_number=4,
                   split_by="number")  # fmt: skip
    frames = torch.stack([torch.as_tensor(data[i][0]) for i in (0, 50)], dim=1).float()
    torch.manual_seed(0)
    model = create_model("plif_nmnist", channels=8)
    report = memory_energy_report(model, frames, spike_counts=True)
    first = report.layers[0]
    assert (first.real_steps, first.steps) == (0, 4)
    assert first.input_spikes == pytest.approx(float(frames.sum()) / 2)
    assert all(layer.snn.energy().total > 0 for layer in report.layers)
    assert report.ann_energy().total > 0 and report.snn_energy().potentials > 0


class _Steps(nn.Module):
    """SpikingJelly's single-step network run over the steps of ``[T, B, ...]``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.net(x_t) for x_t in x])


def test_equals_spikingjelly_lemaire_profiler():
    """SpikingJelly 2.0's ``estimate_lemaire_energy`` on its own network (conv + LIF,
    pooling, linear + IF, a read-out; the first layer fed an image) and on the ANN of
    the same layers (ReLU), against spikeflow's SNN and ANN: equal per component."""
    analytical = pytest.importorskip(
        "spikingjelly.activation_based.op_counter.analytical_energy",
        reason="SpikingJelly 2.0 (a benchmark extra) is the reference",
    )
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import neuron as sj_neuron

    torch.manual_seed(4)
    convs = [nn.Conv2d(2, 4, 3, padding=1), nn.Linear(4 * 3 * 3, 6), nn.Linear(6, 3)]
    with torch.no_grad():
        convs[1].weight.mul_(4.0)  # (the IF layer fires)
    sj_snn = _Steps(nn.Sequential(
        convs[0], sj_neuron.LIFNode(), nn.MaxPool2d(2), nn.Flatten(), convs[1],
        sj_neuron.IFNode(), convs[2],
    ))  # fmt: skip
    ours = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1), neurons.LIFNode(), layers.MaxPool2d(2),
        layers.Flatten(), layers.Linear(4 * 3 * 3, 6), neurons.IFNode(), layers.Linear(6, 3),
    )  # fmt: skip
    for theirs, mine in zip(convs, (ours[0], ours[4], ours[6]), strict=True):
        mine.load_state_dict(theirs.state_dict())
    x = torch.rand(4, 1, 2, 6, 6) * 2  # T = 4, one sample, real values
    with torch.no_grad():
        assert torch.equal(sj_snn(x), ours(x))  # the same network
    reset_net(ours)
    sj_functional.reset_net(sj_snn)
    config = analytical.LemaireEnergyConfig(strict=False)
    with pytest.warns(RuntimeWarning):  # pooling, flatten, ReLU: not in the model
        sj = analytical.estimate_lemaire_energy(sj_snn, x, config=config)
        sj_ann = analytical.estimate_lemaire_energy(
            nn.Sequential(convs[0], nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), convs[1],
                          nn.ReLU(), convs[2]), x[0], config=config)  # fmt: skip
    report = memory_energy_report(ours, x)
    assert [layer.real_steps for layer in report.layers] == [4, 0, 0]
    assert report.layers[1].input_spikes > 0 and report.layers[2].input_spikes > 0
    for energy, theirs in ((report.snn_energy(), sj), (report.ann_energy(), sj_ann)):
        parts = theirs.breakdown_pj
        assert energy.operations * 1e12 == pytest.approx(parts["ops_pj"], rel=1e-9)
        assert energy.addressing * 1e12 == pytest.approx(parts["addressing_pj"], rel=1e-9)
        assert (energy.inputs + energy.outputs) * 1e12 == pytest.approx(parts["inout_pj"])
        assert (energy.weights + energy.biases) * 1e12 == pytest.approx(parts["params_pj"])
        assert energy.potentials * 1e12 == pytest.approx(parts["potential_pj"], abs=1e-9)
        assert energy.total * 1e12 == pytest.approx(theirs.total_pj, rel=1e-9)


def test_neurons_after_pooling_equal_spikingjelly():
    """conv → max-pool → LIF (QKFormer's and MA-SNN's order): the LIF neurons' leak,
    updates, resets and spikes are priced with their own count, as SpikingJelly 2.0
    prices each neuron layer (they were dropped before); a spiking layer on the
    model's input is fed by no counted layer and is listed, not priced."""
    analytical = pytest.importorskip(
        "spikingjelly.activation_based.op_counter.analytical_energy",
        reason="SpikingJelly 2.0 (a benchmark extra) is the reference",
    )
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import neuron as sj_neuron

    torch.manual_seed(5)
    conv, fc = nn.Conv2d(2, 4, 3, padding=1), nn.Linear(4 * 3 * 3, 3)
    with torch.no_grad():
        conv.weight.mul_(3.0)  # (the LIF layer fires)
    sj_snn = _Steps(nn.Sequential(conv, nn.MaxPool2d(2), sj_neuron.LIFNode(), nn.Flatten(), fc))
    ours = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1), layers.MaxPool2d(2), neurons.LIFNode(),
        layers.Flatten(), layers.Linear(4 * 3 * 3, 3),
    )  # fmt: skip
    ours[0].load_state_dict(conv.state_dict())
    ours[4].load_state_dict(fc.state_dict())
    x = (torch.rand(4, 1, 2, 6, 6) < 0.5).float()
    with torch.no_grad():
        assert torch.allclose(sj_snn(x), ours(x), atol=1e-6)
    reset_net(ours)
    sj_functional.reset_net(sj_snn)
    with pytest.warns(RuntimeWarning):  # pooling, flatten: not in the model
        sj = analytical.estimate_lemaire_energy(
            sj_snn, x, config=analytical.LemaireEnergyConfig(strict=False)
        )
    report = memory_energy_report(ours, x)
    first = report.layers[0]
    assert (first.neurons, first.leak) == ("2", True) and first.output_spikes > 0
    energy, parts = report.snn_energy(), sj.breakdown_pj
    assert energy.operations * 1e12 == pytest.approx(parts["ops_pj"], rel=1e-9)
    assert energy.potentials * 1e12 == pytest.approx(parts["potential_pj"], rel=1e-9)
    assert (energy.inputs + energy.outputs) * 1e12 == pytest.approx(parts["inout_pj"])
    assert energy.total * 1e12 == pytest.approx(sj.total_pj, rel=1e-9)
    encoded = nn.Sequential(neurons.IFNode(), layers.Linear(5, 2))
    report = memory_energy_report(encoded, torch.rand(2, 1, 5) * 2)
    assert report.not_counted == [
        "0 (IFNode: fed by no counted layer; its updates and spikes are not priced)"
    ]


class _Twice(nn.Module):
    """One linear layer called twice per step (shared weights), then a read-out."""

    def __init__(self, fc: nn.Module, first: nn.Module, second: nn.Module, head: nn.Module):
        super().__init__()
        self.fc, self.first, self.second, self.head = fc, first, second, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.second(self.fc(self.first(self.fc(x)))))


def test_a_module_called_twice_is_priced_twice_equal_spikingjelly():
    """The formal network runs a shared layer at each of its calls, as SpikingJelly
    2.0's profiler prices it (it was priced once); the head, run on the steps, once.
    The shared layer is fed real values at its first call and spikes at its second:
    those are read from the spike queue, as SpikingJelly reads them (they were priced
    at the size of the input map)."""
    analytical = pytest.importorskip(
        "spikingjelly.activation_based.op_counter.analytical_energy",
        reason="SpikingJelly 2.0 (a benchmark extra) is the reference",
    )
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import neuron as sj_neuron

    torch.manual_seed(6)
    fc, head = nn.Linear(6, 6), nn.Linear(6, 2)
    with torch.no_grad():
        fc.weight.mul_(3.0)  # (the IF layers fire)
    ours = _Twice(layers.Linear(6, 6), neurons.IFNode(), neurons.IFNode(), layers.Linear(6, 2))
    ours.fc.load_state_dict(fc.state_dict())
    ours.head.load_state_dict(head.state_dict())
    sj_snn = _Steps(_Twice(fc, sj_neuron.IFNode(), sj_neuron.IFNode(), head))
    x = torch.rand(4, 1, 6) * 2
    with torch.no_grad():
        assert torch.allclose(sj_snn(x), ours(x), atol=1e-6)
    reset_net(ours)
    sj_functional.reset_net(sj_snn)
    config = analytical.LemaireEnergyConfig(strict=False)
    with pytest.warns(RuntimeWarning):  # ReLU: not in the model
        sj = analytical.estimate_lemaire_energy(sj_snn, x, config=config)
        sj_ann = analytical.estimate_lemaire_energy(
            _Twice(fc, nn.ReLU(), nn.ReLU(), head), x[0], config=config
        )
    report = memory_energy_report(ours, x)
    assert [(layer.name, layer.steps, layer.ann_passes) for layer in report.layers] == [
        ("fc", 8, 2), ("head", 4, 1)
    ]  # fmt: skip
    for energy, theirs in ((report.snn_energy(), sj), (report.ann_energy(), sj_ann)):
        assert energy.operations * 1e12 == pytest.approx(theirs.breakdown_pj["ops_pj"])
        assert energy.total * 1e12 == pytest.approx(theirs.total_pj, rel=1e-9)
    # By hand (TECH: an access costs its memory's words): 4 dense steps read the 6
    # inputs from the 6-word input map, the θ_in spikes come from the 5-word queue.
    shared = memory_energy_report(ours, x, TECH).layers[0]
    assert shared.real_steps == 4 and shared.input_spikes > 0
    want = 4 * 6 * 6 + shared.input_spikes * 5
    assert shared.snn.energy(TECH).inputs == pytest.approx(want)


class _Folded(nn.Module):
    """A token linear layer on ``[T·B, L, F]`` (SpikingJelly's Spikformer flattens the
    steps into the batch before its linear layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(0, 1)).unflatten(0, x.shape[:2])


def test_steps_folded_into_the_batch_of_a_token_linear():
    """``[T·B, L, F]`` is T steps of L tokens whatever B, as ``[T, B, L, F]`` is; with
    B > 1 it was read as one step of T·L tokens (the ANN priced T times over)."""
    torch.manual_seed(7)
    folded = _Folded()
    x = (torch.rand(4, 2, 5, 6) < 0.5).float()  # T = 4, B = 2, L = 5
    (layer,) = memory_energy_report(folded, x).layers
    (direct,) = memory_energy_report(folded.fc, x).layers  # multi-step [T, B, L, F]
    assert (layer.steps, layer.geometry.in_size, direct.steps) == (4, 5, 4)
    assert layer.snn == direct.snn and layer.ann == direct.ann


def test_layers_whose_forward_never_runs_are_listed():
    """EPropRSNN computes its input and recurrent synapses with ``F.linear`` on the
    weights of its ``nn.Linear`` modules in its own loop: only its read-out runs as a
    module. The two layers and the tapped neurons are listed as not priced (they were
    left out without a word)."""
    from spikeflow.models import create_model

    torch.manual_seed(8)
    model = create_model("eprop_rsnn", in_features=10)
    x = (torch.rand(5, 2, 10) < 0.3).float()
    report = memory_energy_report(model, x)
    assert [layer.name for layer in report.layers] == ["output"]
    assert report.not_counted == [
        "neurons (SpikeTap: fed by no counted layer; its updates and spikes are not priced)",
        "input (Linear: its forward never ran; weights used otherwise are not priced)",
        "recurrent (Linear: its forward never ran; weights used otherwise are not priced)",
    ]
