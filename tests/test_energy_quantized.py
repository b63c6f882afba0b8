"""Energy and memory reports of quantized networks: each quantized layer's weights
priced at its own bit width (simple_energy, Lemaire et al.'s memory_energy_report,
NeuroBench's Footprint), checked against numbers derived by hand on a small net;
float layers keep their words; ``spikeflow eval`` of a ``--weight-bits`` run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from spikeflow import layers, prune, quant
from spikeflow.energy import (
    E_MEMORY_BYTE,
    Technology,
    count_operations,
    memory_energy_report,
    neurobench_static,
    simple_energy,
)
from spikeflow.neurons import CubaLIFNode, IFNode
from train_runs import tiny


def _net() -> nn.Sequential:
    """A convolution (1 -> 2, 3x3, no bias) quantized to 3 bits per layer, Linear(8, 4)
    quantized to 4 bits per output channel, a float Linear(4, 3)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        layers.Conv2d(1, 2, 3, padding=1, bias=False), IFNode(), layers.Flatten(),
        layers.Linear(8, 4), IFNode(), layers.Linear(4, 3),
    )  # fmt: skip
    quant.apply_weight_quantization(net, bits=3, per_channel=False, layers=[net[0]])
    quant.apply_weight_quantization(net, bits=4, layers=[net[3]])
    return net


def _input() -> torch.Tensor:
    """Spikes of amplitude 3 on a 2x2 image, [T, B, 1, 2, 2]."""
    g = torch.Generator().manual_seed(1)
    return (torch.rand(3, 2, 1, 2, 2, generator=g) < 0.6).float() * 3


def test_weight_bits():
    net = _net()
    assert [quant.weight_bits(net[i]) for i in (0, 3, 5)] == [3, 4, None]
    assert quant.weight_bits(nn.ReLU()) is None
    grid = nn.Sequential(
        layers.Linear(4, 2, bias=False),
        CubaLIFNode(tau_syn=4.0, tau_mem=8.0, r="tau_syn*tau_mem"),
    )  # fmt: skip
    quant.loihi_grid(grid)
    assert quant.weight_bits(grid[0]) == 8  # Loihi's 8-bit weights
    prune.finalize(net)  # baked in: a float layer again
    assert quant.weight_bits(net[3]) is None


def test_footprint_by_hand():
    net = _net()
    # conv: 18 weights at 3 bits = 54 bits -> 7 bytes, one float32 scale (4); Linear 3:
    # 32 weights at 4 bits = 16 bytes, 4 scales (16), bias 4 x 4 (16); Linear 5: 15 x 4.
    expected = (7 + 4) + (16 + 16 + 16) + 15 * 4
    static = neurobench_static(net)
    assert static["Footprint"] == expected
    assert static["ParameterCount"] == 18 + 36 + 15  # entries, as before
    float_net = _net()
    prune.finalize(float_net)
    assert neurobench_static(float_net)["Footprint"] == 4 * (18 + 36 + 15)


def test_footprint_of_other_quantized_layers_by_hand():
    """A grouped transposed convolution (weight [4, 3, 3, 3], groups 2): 6 output
    channels, so 6 scales, not the weight's 3 columns; a pruned then quantized Linear:
    the pruning's sign buffer and the float original are replaced by the deployed
    weights too; Loihi's grid: 8-bit weights, no scale."""
    conv = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, groups=2))
    quant.apply_weight_quantization(conv, bits=4)
    # 108 weights at 4 bits = 54 bytes, 6 scales (24), bias 6 x 4 (24)
    assert neurobench_static(conv)["Footprint"] == 54 + 24 + 24
    pruned = nn.Sequential(layers.Linear(10, 6), IFNode())
    prune.apply_gradient_rewiring(pruned)
    quant.apply_weight_quantization(pruned, bits=3)
    # 60 weights at 3 bits = 180 bits -> 23 bytes, 6 scales (24), bias 6 x 4 (24)
    assert neurobench_static(pruned)["Footprint"] == 23 + 24 + 24
    grid = nn.Sequential(
        layers.Linear(5, 3, bias=False),
        CubaLIFNode(tau_syn=4.0, tau_mem=8.0, r="tau_syn*tau_mem"),
    )  # fmt: skip
    quant.loihi_grid(grid)
    settings = sum(b.numel() * b.element_size() for b in grid[1].buffers())
    # 15 weights at a byte each, no scale; the neuron's quantizer settings as they are
    assert neurobench_static(grid)["Footprint"] == 15 + settings


def test_footprint_departs_from_neurobench_by_the_deployed_weights():
    """neurobench 2.3.0's own Footprint reads ``element_size()``: the quantized net's
    float originals (4 bytes each) and its quantizers' settings (4 int64 each), 340
    bytes; spikeflow's (119, above) departs by exactly the deployed weights (docs:
    "Where spikeflow departs"); the baked float net is equal to neurobench's."""
    pytest.importorskip("neurobench.metrics.static", reason="neurobench is not installed")
    from neurobench.metrics.manager.static_manager import StaticMetricManager
    from neurobench.metrics.static import Footprint, ParameterCount
    from neurobench.models import TorchModel

    def theirs(model: nn.Module) -> dict:
        return StaticMetricManager([ParameterCount, Footprint]).run_metrics(TorchModel(model))

    net = _net()
    ref = theirs(net)
    assert ref["ParameterCount"] == neurobench_static(net)["ParameterCount"] == 69
    floats = 4 * (18 + 32 + 4 + 15) + 2 * 4 * 8  # parameters, two settings buffers
    assert ref["Footprint"] == floats == 340
    deployed = (7 + 4) + (16 + 16)  # packed integers and scales of the two layers
    replaced = 4 * (18 + 32) + 2 * 4 * 8  # their float weights and settings
    assert neurobench_static(net)["Footprint"] == ref["Footprint"] - replaced + deployed
    prune.finalize(net)
    assert neurobench_static(net)["Footprint"] == theirs(net)["Footprint"] == 4 * 69


def test_simple_energy_by_hand():
    net, x = _net(), _input()
    report = count_operations(net, x)
    assert report.not_counted == []  # (not the parametrizations' float weights)
    rows = {r.name: r for r in report.layers}
    assert [rows[n].weight_bits for n in ("0", "3", "5")] == [3, 4, None]
    reads = {n: (rows[n].acs + rows[n].macs) / report.samples for n in ("0", "3", "5")}
    assert all(r > 0 for r in reads.values())
    energy = simple_energy(report)
    weight_bytes = reads["0"] * 3 / 8 + reads["3"] * 4 / 8 + reads["5"] * 4
    biases = (rows["3"].bias_reads + rows["5"].bias_reads) / report.samples
    assert energy.weight_bytes == pytest.approx(weight_bytes, rel=1e-12)
    assert energy.weight_reads == pytest.approx(sum(reads.values()), rel=1e-12)
    assert energy.parameters == pytest.approx(
        E_MEMORY_BYTE * (weight_bytes + 4 * biases), rel=1e-12
    )
    # 2-byte words: the float layer's weights and the biases halve, the quantized not
    half = simple_energy(report, word_bytes=2)
    assert half.parameters == pytest.approx(
        E_MEMORY_BYTE * (reads["0"] * 3 / 8 + reads["3"] / 2 + reads["5"] * 2 + 2 * biases),
        rel=1e-12,
    )


def test_lemaire_memory_by_hand():
    net, x = _net(), _input()
    tech = Technology()  # 32-bit words; 10 pJ per 32-bit access at 8 KiB, linear from 0
    report = memory_energy_report(net, x, tech)
    layer = {r.name: r for r in report.layers}

    def per_bit(size_bytes: float) -> float:
        return 10e-12 * size_bytes / 8192 / 32

    # Linear 3: 32 weights x 4 bits + 4 biases x 32 bits = 32 bytes of parameter memory
    for counts in (layer["3"].snn, layer["3"].ann):
        e = counts.energy(tech)
        assert counts.weight_bits == 4 and counts.bias_words == 4
        assert counts.weight_reads > 0 and counts.bias_reads > 0
        assert e.weights == pytest.approx(counts.weight_reads * per_bit(32) * 4, rel=1e-12)
        assert e.biases == pytest.approx(counts.bias_reads * per_bit(32) * 32, rel=1e-12)
    # conv: 18 weights x 3 bits = 6.75 bytes, no bias
    e = layer["0"].snn.energy(tech)
    assert e.weights == pytest.approx(layer["0"].snn.weight_reads * per_bit(6.75) * 3, rel=1e-12)
    # Linear 5: float words, 15 x 4 bytes, as before
    e = layer["5"].snn.energy(tech)
    assert layer["5"].snn.weight_bits == 0
    assert e.weights == pytest.approx(layer["5"].snn.weight_reads * per_bit(60) * 32, rel=1e-12)
    assert e.biases == pytest.approx(layer["5"].snn.bias_reads * per_bit(60) * 32, rel=1e-12)
    # the same net with float weights spends more on weights
    float_net = _net()
    prune.finalize(float_net)
    before = memory_energy_report(float_net, x, tech).snn_energy().weights
    assert report.snn_energy().weights < before / 4


class _Twice(nn.Module):
    """A quantized Linear(4, 4) applied twice per step: two passes in the formal network."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = layers.Linear(4, 4)
        self.lif = IFNode()
        quant.apply_weight_quantization(self, bits=5, layers=[self.fc])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.fc(self.fc(x)))


def test_a_layer_run_twice_keeps_its_bits():
    net, x = _Twice(), torch.rand(3, 2, 4)
    report = memory_energy_report(net, x)
    [layer] = report.layers
    assert layer.ann_passes == 2  # every count doubled, the memory and the bits kept
    assert layer.ann.weight_bits == layer.snn.weight_bits == 5
    assert layer.ann.bias_words == 4


def test_eval_of_a_weight_bits_run(tmp_path):
    """``spikeflow eval --operations --neurobench`` of a ``--weight-bits 4`` run: every
    linear and convolution layer's weight read at half a byte, its Footprint packed."""
    from spikeflow.cli import main
    from spikeflow.training import Trainer, load_trained_model

    Trainer(tiny(tmp_path, "run", epochs=1, weight_bits=4), log=None).fit()
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--no-progress",
                 "--operations", "--neurobench", "--json", str(out)]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    simple = result["operations"]["simple_energy"]
    assert simple["weight_bytes"] == pytest.approx(simple["weight_reads"] / 2, rel=1e-12)
    model = load_trained_model(tmp_path / "run").model
    quantized = [m for m in model.modules() if quant.weight_bits(m) == 4]
    assert quantized, "the run's layers should be quantized"
    packed = sum(math.ceil(m.weight.numel() / 2) + 4 * m.weight.shape[0] for m in quantized)
    floats = sum(m.weight.numel() * 4 for m in quantized)
    expected = neurobench_static(model)["Footprint"]
    assert result["neurobench"]["Footprint"] == expected
    prune.finalize(model)
    # baked into float layers: the float weights, without the quantizers' settings
    assert neurobench_static(model)["Footprint"] - expected == floats - packed
