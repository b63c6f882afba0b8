"""spikeflow.energy.simple_energy: by hand, and against SpikingJelly 2.0's
``estimate_simple_energy`` on the equal networks (same weights, same input)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.energy import (
    E_AC,
    E_MAC,
    E_MEMORY_BYTE,
    E_MUL,
    count_operations,
    simple_energy,
)
from spikeflow.errors import ConfigurationError


def test_a_linear_lif_layer_by_hand():
    """Linear 3 -> 2 with a bias, LIF; spikes in over T = 2 steps, one sample."""
    fc = layers.Linear(3, 2)
    net = nn.Sequential(fc, neurons.LIFNode(tau=2.0))
    x = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]])  # 3 spikes
    energy = simple_energy(count_operations(net, x))
    acs = 3 * 2  # each spike reaches 2 weights
    assert (energy.weight_reads, energy.bias_reads, energy.state_words) == (6, 4, 4)
    assert energy.ac == pytest.approx(E_AC * acs, rel=1e-12) and energy.mac == 0
    word = 4 * E_MEMORY_BYTE
    assert energy.parameters == pytest.approx(word * (acs + 4), rel=1e-12)
    assert energy.neuron_states == pytest.approx(word * 2 * 4, rel=1e-12)  # read + write
    assert energy.total == pytest.approx(E_AC * acs + word * (acs + 4 + 8), rel=1e-12)
    # a pruned weight is neither multiplied nor read; fp16 words are 2 bytes
    with torch.no_grad():
        fc.weight[0, 0] = 0.0
    half = simple_energy(count_operations(net, x), word_bytes=2)
    assert (half.weight_reads, half.bias_reads) == (5, 4)
    assert half.memory == pytest.approx(2 * E_MEMORY_BYTE * (5 + 4 + 8), rel=1e-12)


def test_states_per_neuron_and_the_neurons_updates():
    """A CUBA LIF carries its current and its membrane: two state words per neuron and
    step; ``neurons=True`` adds its updates (4 additions, 2 multiplications and 1
    comparison per neuron and step) as ``report.energy(neurons=True)`` does."""
    net = nn.Sequential(layers.Linear(4, 3, bias=False), neurons.CubaLIFNode())
    x = torch.rand(5, 2, 4)  # real values: 5 · 2 · 3 · 4 MACs
    report = count_operations(net, x)
    plain = simple_energy(report)
    assert (plain.bias_reads, plain.state_words, plain.neurons) == (0, 5 * 3 * 2, 0)
    assert plain.weight_reads == report.macs == 5 * 3 * 4
    full = simple_energy(report, neurons=True)
    assert full.neurons == pytest.approx(5 * 3 * (5 * E_AC + 2 * E_MUL), rel=1e-12)
    assert full.total == pytest.approx(plain.total + full.neurons, rel=1e-12)
    assert full.compute == pytest.approx(report.energy(neurons=True), rel=1e-12)
    assert plain.mac == pytest.approx(E_MAC * report.macs, rel=1e-12)


def test_bad_arguments_are_named():
    report = count_operations(layers.Linear(2, 2), torch.ones(1, 1, 2))
    with pytest.raises(ConfigurationError, match="report must be an OperationReport"):
        simple_energy("report")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="e_byte must be a finite number"):
        simple_energy(report, e_byte=-1.0)
    with pytest.raises(ConfigurationError, match="e_ac must be a finite number"):
        simple_energy(report, e_ac=float("nan"))
    with pytest.raises(ConfigurationError, match="word_bytes must be a positive integer"):
        simple_energy(report, word_bytes=0)
    with pytest.raises(ConfigurationError, match="neurons must be a bool"):
        simple_energy(report, neurons=1)  # type: ignore[arg-type]


# -- against SpikingJelly 2.0 ----------------------------------------------------------


def _networks(kind: str) -> tuple[nn.Module, nn.Module]:
    """SpikingJelly's network and spikeflow's, the same weights (a LIF fires)."""
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(0)
    if kind == "conv":
        theirs = nn.Sequential(
            layer.Conv2d(2, 4, 3, step_mode="m"), neuron.LIFNode(tau=2.0, step_mode="m"),
            layer.Flatten(step_mode="m"), layer.Linear(64, 3, step_mode="m"),
            neuron.LIFNode(tau=2.0, step_mode="m"),
        )  # fmt: skip
        ours = nn.Sequential(
            layers.Conv2d(2, 4, 3), neurons.LIFNode(tau=2.0), layers.Flatten(),
            layers.Linear(64, 3), neurons.LIFNode(tau=2.0),
        )  # fmt: skip
    elif kind == "mlp":
        theirs = nn.Sequential(
            layer.Linear(10, 8, step_mode="m"), neuron.LIFNode(tau=2.0, step_mode="m"),
            layer.Linear(8, 4, bias=False, step_mode="m"), neuron.IFNode(step_mode="m"),
        )  # fmt: skip
        ours = nn.Sequential(
            layers.Linear(10, 8), neurons.LIFNode(tau=2.0), layers.Linear(8, 4, bias=False),
            neurons.IFNode(),
        )  # fmt: skip
    else:  # conv, batch norm, LIF, max pooling, conv with padding, IF, linear
        theirs = nn.Sequential(
            layer.Conv2d(2, 4, 3, bias=False, step_mode="m"), layer.BatchNorm2d(4, step_mode="m"),
            neuron.LIFNode(tau=2.0, step_mode="m"), layer.MaxPool2d(2, step_mode="m"),
            layer.Conv2d(4, 4, 3, padding=1, step_mode="m"), neuron.IFNode(step_mode="m"),
            layer.Flatten(step_mode="m"), layer.Linear(36, 3, step_mode="m"),
        )  # fmt: skip
        ours = nn.Sequential(
            layers.Conv2d(2, 4, 3, bias=False), layers.BatchNorm2d(4),
            neurons.LIFNode(tau=2.0), layers.MaxPool2d(2), layers.Conv2d(4, 4, 3, padding=1),
            neurons.IFNode(), layers.Flatten(), layers.Linear(36, 3),
        )  # fmt: skip
        with torch.no_grad():
            theirs[1].running_mean.uniform_(-0.2, 0.2)
            theirs[1].running_var.uniform_(0.5, 1.5)
            theirs[1].weight.uniform_(0.5, 1.5)
            theirs[1].bias.fill_(0.5)
    with torch.no_grad():
        theirs[0].weight.mul_(4.0)
    ours.load_state_dict(theirs.state_dict())
    return theirs.eval(), ours.eval()


@pytest.mark.parametrize("kind", ["conv", "mlp", "pool_bn"])
def test_equals_spikingjelly_simple_energy(kind):
    """The MACs, the synaptic ACs and the parameter and state traffic equal
    SpikingJelly's (its totals are over the batch, spikeflow's per sample). Its AC term
    also prices every ``add``/``sub`` of the run (the neurons' aten calls: 6 per neuron
    and step for its LIF, 4 for its IF; batch norm's ``x - mean`` and ``var + eps``), and its
    MACs batch norm's affine ``x̂·γ + β``: spikeflow leaves batch norm out and counts the
    neurons' updates from their declaration (``neurons=True``)."""
    simple = pytest.importorskip(
        "spikingjelly.activation_based.op_counter.simple_energy",
        reason="SpikingJelly (a benchmark extra, scripts/setup.sh bench) is the reference",
    )
    from spikingjelly.activation_based import functional

    theirs, ours = _networks(kind)
    T, B = 3, 2
    if kind == "mlp":
        x = (torch.rand(T, B, 10) < 0.5).float()
    else:
        x = torch.rand(T, B, 2, 8 if kind == "pool_bn" else 6, 8 if kind == "pool_bn" else 6)
    report = count_operations(ours, x)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    functional.reset_net(ours)
    functional.reset_net(theirs)
    sj = simple.estimate_simple_energy(theirs, x)
    functional.reset_net(theirs)
    ref, counts = sj.breakdown_pj, sj.counts
    energy = simple_energy(report)

    def equal(ours_j: float, theirs_pj: float) -> None:
        assert ours_j * B * 1e12 == pytest.approx(theirs_pj, rel=1e-9, abs=1e-9)

    equal(energy.parameters, ref["parameter_memory_pj"])
    equal(energy.neuron_states, ref["neuron_state_memory_pj"])
    assert energy.weight_reads * B * 4 == counts["weight_read_bytes"] > 0
    assert energy.bias_reads * B * 4 == counts["bias_read_bytes"] > 0
    assert energy.state_words * B * 4 == counts["neuron_state_read_bytes"] > 0
    assert report.acs * B == counts["synop"] > 0
    # its neurons' aten add/sub/rsub: LIF 6 per neuron and step, IF 4
    neuron_adds = sum(n.neuron_steps * (6 if n.kind == "LIFNode" else 4) for n in report.neurons)
    if kind == "pool_bn":  # batch norm in evaluation: N affine MACs, N + C additions
        bn = T * B * 4 * 6 * 6
        assert report.macs * B + bn == counts["mac"]
        # (and SpikingJelly's own bookkeeping: the memory counter sums its occupancy map
        # of the spike-fed conv, [T·B, 1, 3, 3], outside its dispatch guard, which its
        # ACCounter counts as 53 more additions)
        bookkeeping = T * B * 3 * 3 - 1
        assert counts["ac"] - counts["synop"] == neuron_adds + bn + 4 + bookkeeping
    else:
        assert report.macs * B == counts["mac"]
        assert counts["ac"] - counts["synop"] == neuron_adds
    equal(energy.mac, E_MAC * 1e12 * (report.macs * B))
    if kind == "conv":  # no batch norm: the MAC terms agree
        equal(energy.mac, ref["mac_pj"])
        equal(energy.mac + energy.memory, sj.energy_total_pj - E_AC * 1e12 * (counts["ac"]))


class _Gate(nn.Module):
    """A linear layer's output gated by its input's spikes: ``fc(x) ⊙ x``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = layers.Linear(3, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * x


def test_products_between_activations_read_no_weights():
    x = torch.tensor([[[1.0, 0.0, 1.0]]])  # 2 spikes: 6 ACs in fc, 2 in the gate
    report = count_operations(_Gate(), x)
    assert report.acs == 8
    energy = simple_energy(report)
    assert (energy.weight_reads, energy.bias_reads, energy.state_words) == (6, 0, 0)
    assert energy.parameters == pytest.approx(4 * E_MEMORY_BYTE * 6, rel=1e-12)


def test_biases_applied_outside_a_layers_forward_are_read():
    """nn.MultiheadAttention, Recurrent and LinearRecurrentContainer add their biases
    with F.linear, not through a Linear's forward: one bias read per output entry all
    the same (their weight reads were counted, their bias reads were 0)."""
    b, length, e, t = 2, 3, 4, 5

    class Attend(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(e, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x.flatten(0, 1)  # [T*B, L, E]
            return self.mha(y, y, y, need_weights=False)[0]

    energy = simple_energy(count_operations(Attend().eval(), torch.rand(t, b, length, e)))
    # per sample: Q, K, V (3 · L · E) and the output projection (L · E), every step
    assert energy.bias_reads == t * (3 * length * e + length * e)
    rnn = layers.Recurrent(neurons.LIFNode(step_mode="s"), e, bias=True)
    assert simple_energy(count_operations(rnn, torch.rand(t, b, e))).bias_reads == t * e
    rc = layers.LinearRecurrentContainer(neurons.LIFNode(step_mode="s"), e, e)
    assert simple_energy(count_operations(rc, torch.rand(t, b, e))).bias_reads == t * e
    unbiased = layers.Recurrent(neurons.LIFNode(step_mode="s"), e)
    assert simple_energy(count_operations(unbiased, torch.rand(t, b, e))).bias_reads == 0
