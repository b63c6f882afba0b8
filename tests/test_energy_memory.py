"""Lemaire et al.'s memory-access energy model against its formulas derived by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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

#: Round numbers: an access to a memory of W words costs W + 3, a MAC 11, an add 1.
TECH = Technology(e_add=1.0, e_mul=10.0, bits=2, sram_per_bit=0.5, sram_base=3.0)


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
    # SNN: N_in = 6, N_out = 4, T = 3, LIF (leak), bias.
    want = AccessCounts(
        macs=3 * 4, accumulates=ti * 4 + 3 * 4 + to, address_adds=ti * 4, input_reads=ti,
        weight_reads=ti * 4, bias_reads=3 * 4, potential_reads=ti * 4 + 3 * 4,
        potential_writes=ti * 4 + 3 * 4, output_writes=to, input_words=6, weight_words=24,
        bias_words=4, potential_words=4, output_words=4,
    )  # fmt: skip
    assert _close(layer.snn, want)
    # ANN: once, dense.
    ann = AccessCounts(macs=24, accumulates=4, address_adds=24, input_reads=6,
                       weight_reads=24, bias_reads=4, output_writes=4, input_words=6,
                       weight_words=24, bias_words=4, output_words=4)  # fmt: skip
    assert layer.ann == ann
    # Energy: access(W) = 0.5·W·2 + 3 = W + 3; MAC 11, add 1.
    snn = layer.snn.energy(TECH)
    assert snn.operations == pytest.approx(12 * 11 + (4 * ti + 12 + to))
    assert snn.addressing == pytest.approx(4 * ti)
    assert snn.inputs == pytest.approx(ti * 9)
    assert snn.weights == pytest.approx(4 * ti * 27)
    assert snn.biases == pytest.approx(12 * 7)
    assert snn.potentials == pytest.approx(2 * (4 * ti + 12) * 7)
    assert snn.outputs == pytest.approx(to * 7)
    energy = layer.ann.energy(TECH)
    assert energy.total == pytest.approx(24 * 11 + 4 + 24 + 6 * 9 + 24 * 27 + 4 * 7 + 4 * 7)
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
        macs=0, accumulates=ti * 3 * 4 + 2 * 48 + to, address_macs=2 * ti,
        address_adds=ti * 3 * 9, input_reads=ti, weight_reads=ti * 27, bias_reads=0,
        potential_reads=ti * 27 + 96, potential_writes=ti * 27 + 96, output_writes=to,
        input_words=98, weight_words=54, bias_words=0, potential_words=48, output_words=48,
    )  # fmt: skip
    assert _close(layer.snn, want)
    # ANN: 48 outputs of 2·9 products each.
    assert layer.ann == AccessCounts(
        macs=864, accumulates=48, address_adds=98 + 48 + 27, input_reads=864,
        weight_reads=864, output_writes=48, input_words=98, weight_words=54, output_words=48,
    )  # fmt: skip
    # A FIFO of 16 words holds the spikes in and out.
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
    tech = Technology(e_add=1.0, e_mul=10.0, bits=1, sram_per_bit=1.0, sram_base=0.0)
    report = memory_energy_report(net, x, tech)  # access(W) = W
    first, second = report.layers
    assert (first.real_steps, first.output_spikes, second.input_spikes) == (2, 3, 3)
    # SNN layer 1, dense at 2 steps: ops 12 MACs·11 + (4 + 3) adds; addressing 12;
    # inputs 6·3; weights 12·6; potentials (4 + 4)·2; outputs 3·2.
    assert first.snn.energy(tech).total == 139 + 12 + 18 + 72 + 16 + 6
    # SNN layer 2: ops 3 + 2; addressing 3; inputs 3·2; weights 3·2; potentials 10·1.
    assert second.snn.energy(tech).total == 5 + 3 + 6 + 6 + 10
    assert report.snn_energy().total == 293
    # ANN: layer 1 66 + 2 + 6 + 9 + 36 + 4 = 123; layer 2 22 + 1 + 2 + 4 + 4 + 1 = 34.
    assert report.ann_energy().total == 157
    assert report.ratio() == pytest.approx(157 / 293)
    assert report.snn_energy().potentials == 26 and report.ann_energy().potentials == 0
    text = str(report)
    assert "ANN / SNN: 0.536" in text and "real" in text


def test_default_costs_are_horowitz_and_the_sram_fit():
    tech = Technology()
    assert (tech.e_add, tech.e_mul, tech.bits) == (0.1e-12, 3.1e-12, 32)
    fp32 = Technology.horowitz_45nm("fp32")
    assert (fp32.e_add, fp32.e_mul, fp32.bits) == (0.9e-12, 3.7e-12, 32)
    assert Technology.horowitz_45nm("int8").bits == 8
    bits = np.array([8.0 * size for size, _ in HOROWITZ_SRAM_45NM])
    slope, base = np.polyfit(bits, [e for _, e in HOROWITZ_SRAM_45NM], 1)
    assert tech.sram_per_bit == pytest.approx(slope, rel=1e-9)
    assert tech.sram_base == pytest.approx(base, rel=1e-9)
    assert tech.sram_base == pytest.approx(13.26e-12, rel=1e-3)
    # 8 KiB of 64-bit words: near Horowitz's 10 pJ (a fit through three points).
    wide = Technology(bits=64)
    assert wide.access(1024) == pytest.approx(slope * 65536 + base, rel=1e-9)
    assert wide.access(0) == 0.0


def test_event_reads_equal_the_exact_synaptic_operations_of_a_dense_linear():
    """θ_in·N_out weight reads are the counter's ACs for a dense linear layer."""
    torch.manual_seed(2)
    fc = layers.Linear(8, 5)
    x = (torch.rand(4, 3, 8) < 0.3).float()
    (layer,) = memory_energy_report(fc, x).layers
    assert layer.snn.weight_reads == pytest.approx(count_operations(fc, x).acs)


def test_neurons_after_pooling_and_undeclared_neurons():
    """A layer's neurons run next on an output of its size: batch norm between is
    fine, pooling between is not (the second convolution feeds no neurons)."""
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
        ("0", "2", True), ("4", None, False), ("8", "9", True), ("10", None, False),
    ]  # fmt: skip
    assert report.not_counted == ["9 (MaskedPSN: leak assumed)"]
    assert report.layers[1].output_spikes == report.layers[3].output_spikes == 0
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
    with pytest.raises(ConfigurationError, match="fifo_words must be None or an integer"):
        Technology(fifo_words=0)
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
