"""Synaptic operation counts against loops over every (input, weight) pair."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from spikeflow import layers
from spikeflow.energy import E_AC, E_MAC, E_MUL, OperationCounter, count_operations
from spikeflow.errors import ConfigurationError


def _conv2d_pairs_by_loop(conv: nn.Conv2d, mask: torch.Tensor) -> int:
    """Count (input entry set in ``mask``, nonzero weight) pairs reaching an output."""
    batch, _, height, width = mask.shape
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    ph, pw = conv.padding
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group_in = conv.in_channels // conv.groups
    per_group_out = conv.out_channels // conv.groups
    total = 0
    for b, co, oh, ow in itertools.product(range(batch), range(conv.out_channels),
                                           range(out_h), range(out_w)):  # fmt: skip
        group = co // per_group_out
        for cl, i, j in itertools.product(range(per_group_in), range(kh), range(kw)):
            if conv.weight[co, cl, i, j] == 0:
                continue
            y, x = oh * sh - ph + i * dh, ow * sw - pw + j * dw
            if conv.padding_mode == "circular":
                y, x = y % height, x % width
            elif not (0 <= y < height and 0 <= x < width):
                continue  # zero padding: no input there
            total += bool(mask[b, group * per_group_in + cl, y, x])
    return total


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 3, "padding": 1},
        {"kernel_size": (3, 2), "stride": 2, "padding": (1, 0), "dilation": (1, 2)},
        {"kernel_size": 3, "padding": 1, "groups": 2},
        {"kernel_size": 3, "padding": 1, "padding_mode": "circular"},
    ],
)
def test_conv_counts_equal_the_pair_loop(kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, **kwargs)
    with torch.no_grad():
        conv.weight[conv.weight.abs() < 0.05] = 0.0  # some pruned weights
    spikes = (torch.rand(2, 4, 7, 6) < 0.3).float()
    real = torch.randn(2, 4, 7, 6)
    with OperationCounter(conv) as counter:
        conv(spikes)
        conv(real)
    record = counter.report(2).layers[0]
    assert record.acs == _conv2d_pairs_by_loop(conv, spikes != 0)
    assert record.macs == _conv2d_pairs_by_loop(conv, torch.ones_like(real, dtype=torch.bool))
    assert (record.calls, record.spike_calls) == (2, 1)
    assert record.input_nonzero == int((spikes != 0).sum()) + int((real != 0).sum())


def test_linear_counts_and_pruned_weights():
    torch.manual_seed(1)
    fc = nn.Linear(10, 5)
    with torch.no_grad():
        fc.weight[:, :3] = 0.0
        fc.weight[0, 5] = 0.0
    x = (torch.rand(3, 4, 10) < 0.5).float()  # [T, B, in]: leading dims fold
    report = count_operations(fc, x)
    want = sum(int(x[t, b, j] != 0) * int((fc.weight[:, j] != 0).sum())
               for t in range(3) for b in range(4) for j in range(10))  # fmt: skip
    assert report.layers[0].acs == want and report.layers[0].macs == 0
    assert report.samples == 4
    assert report.acs == pytest.approx(want / 4)
    assert report.energy() == pytest.approx(E_AC * want / 4)


def test_spikes_are_inputs_with_one_magnitude():
    fc = nn.Linear(4, 2, bias=False)
    cases = [
        (torch.tensor([[0.0, 1.0, 1.0, 0.0]]), True),
        (torch.tensor([[0.0, -1.0, 1.0, 0.0]]), True),  # signed spikes
        (torch.tensor([[0.0, 0.5, 0.5, 0.0]]), True),  # spikes times one constant
        (torch.tensor([[0.0, 0.5, 1.0, 0.0]]), False),  # graded values
    ]
    for x, spikes in cases:
        with OperationCounter(fc) as counter:
            fc(x)
        record = counter.report(1).layers[0]
        assert (record.acs > 0, record.macs > 0) == (spikes, not spikes), x
        assert (record.acs or record.macs) == (4 * 2 if not spikes else 2 * 2)


def test_a_sequence_network_and_its_report():
    torch.manual_seed(2)
    net = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1), nn.Identity(), layers.Flatten(),
        layers.Linear(4 * 5 * 5, 3), nn.Embedding(5, 3),
    )  # fmt: skip
    x = (torch.rand(6, 2, 2, 5, 5) < 0.2).float()  # [T, B, C, H, W]
    with OperationCounter(net[:4]) as counter:
        out = net[:4](x)
    report = counter.report(2)
    assert out.shape == (6, 2, 3)
    names = [layer.name for layer in report.layers]
    assert names == ["0", "3"]
    folded = x.reshape(12, 2, 5, 5)
    assert report.layers[0].acs == _conv2d_pairs_by_loop(net[0], folded != 0)
    assert report.layers[1].macs > 0  # the conv's real-valued output feeds the FC
    assert OperationCounter(net).not_counted == ["4"]
    text = str(report)
    assert "ACs/sample" in text and "µJ per sample" in text and "\n0 " in text
    assert report.energy() == pytest.approx(E_AC * report.acs + E_MAC * report.macs)


def test_counts_match_spikingjelly_synop_counter():
    """SpikingJelly's SynOpCounter on the same spikes and a dense conv and linear."""
    op_counter = pytest.importorskip(
        "spikingjelly.activation_based.op_counter",
        reason="SpikingJelly (a benchmark extra, scripts/setup.sh bench) is the reference",
    )
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    fc = nn.Linear(5 * 4 * 4, 7)
    x = (torch.rand(4, 3, 8, 8) < 0.25).float()
    y = (torch.rand(4, 5 * 4 * 4) < 0.4).float()
    theirs = []
    for module, inp in ((conv, x), (fc, y)):
        counter = op_counter.SynOpCounter()
        with op_counter.DispatchCounterMode([counter]):
            module(inp)
        theirs.append(counter.get_total())
    with OperationCounter(nn.ModuleList([conv, fc])) as ours:
        conv(x)
        fc(y)
    assert [layer.acs for layer in ours.report(4).layers] == theirs


def test_bad_samples_and_inputs_are_named():
    fc = nn.Linear(3, 2)
    with pytest.raises(ConfigurationError, match="samples must be a positive integer"):
        OperationCounter(fc).report(0)
    with pytest.raises(ConfigurationError, match="has no batch dimension; pass samples"):
        count_operations(fc, torch.ones(3))


def test_spikeflow_eval_counts_operations(tmp_path, capsys):
    """``spikeflow eval --operations`` on a trained digits run: the first convolution
    reads the image (real values: MACs, the dense count 22 x 22 x 8 per step on 8x8
    with 3x3 and padding 1); the later layers read spikes (ACs); JSON holds the same."""
    import json

    from spikeflow.cli import main
    from spikeflow.training import Trainer
    from train_runs import tiny

    # a low threshold: every layer spikes after two tiny epochs
    Trainer(tiny(tmp_path, "run", epochs=2, neuron_kwargs={"v_threshold": 0.3}),
            log=None).fit()  # fmt: skip
    out = tmp_path / "ops.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--no-progress",
                 "--operations", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    ops = json.loads(out.read_text())["operations"]
    first, *rest = ops["layers"]
    assert first["name"] == "features.0" and first["acs"] == 0
    steps, samples = 2, 96  # tiny(): T = 2, 96 test samples
    assert first["macs"] == 22 * 22 * 8 * steps * samples  # tiny(): 8 channels
    assert [layer["name"] for layer in rest] == ["features.3", "classifier.2", "classifier.5"]
    assert all(layer["macs"] == 0 and layer["acs"] > 0 for layer in rest)
    assert ops["energy_per_sample_j"] == pytest.approx(
        E_AC * ops["acs_per_sample"] + E_MAC * ops["macs_per_sample"]
    )
    assert "per sample:" in text and "µJ" in text and "features.3" in text
    # the neurons' updates, apart: tiny() has PLIF neurons (2 additions, 1 multiplication
    # and 1 comparison per neuron and step) and resets them hard (no arithmetic)
    neurons = ops["neurons"]
    assert [n["name"] for n in neurons] == ["features.2", "features.5", "classifier.3",
                                           "classifier.6"]  # fmt: skip
    for n in neurons:
        assert n["neuron_steps"] > 0 and n["resets"] > 0
        assert (n["additions"], n["multiplications"], n["comparisons"]) == (
            2 * n["neuron_steps"], n["neuron_steps"], n["neuron_steps"])  # fmt: skip
    assert ops["neuron_energy_per_sample_j"] == pytest.approx(
        sum(n["neuron_steps"] * (3 * E_AC + E_MUL) for n in neurons) / samples
    )
    assert "neuron layer" in text and "features.5" in text and "adds/sample" in text
    # the simple estimate with memory traffic: a float32 weight read per operation, a
    # bias read per output entry, a state read and write per neuron and step
    from spikeflow.energy import E_MEMORY_BYTE

    simple = ops["simple_energy"]
    assert simple["weight_reads"] == pytest.approx(ops["acs_per_sample"] + ops["macs_per_sample"])
    word = 4 * E_MEMORY_BYTE
    assert simple["parameters"] == pytest.approx(
        word * (simple["weight_reads"] + simple["bias_reads"])
    )
    assert simple["state_words"] == pytest.approx(sum(n["neuron_steps"] for n in neurons) / samples)
    assert simple["total"] == pytest.approx(
        ops["energy_per_sample_j"] + simple["parameters"] + 2 * word * simple["state_words"]
    )
    assert "with memory traffic (simple_energy" in text


def test_counts_stay_exact_under_autocast():
    torch.manual_seed(5)
    conv = nn.Conv2d(513, 4, 3)
    x = torch.ones(1, 513, 6, 6)  # dense spikes: 4617 pairs per output, not a bf16 number
    with OperationCounter(conv) as exact:
        conv(x)
    with OperationCounter(conv) as mixed, torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x)
    assert mixed.report(1).layers[0].acs == exact.report(1).layers[0].acs == 16 * 513 * 9 * 4


def test_event_driven_layers_count_their_standardised_weight():
    from spikeflow.event_driven import EventDrivenLinear

    layer = EventDrivenLinear(6, 3)
    with torch.no_grad():
        layer.weight[:, :2] = 0.0  # zero raw weights, nonzero after standardisation
    x = torch.ones(4, 1, 6)
    report = count_operations(layer, x)
    assert report.layers[0].acs == 4 * 6 * 3


def test_weights_used_without_their_forward_are_listed():
    class Tied(nn.Module):  # uses its child's weight without calling the child
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(x, self.inner.weight)

    net = nn.Sequential(layers.Linear(4, 8), Tied())
    report = count_operations(net, (torch.rand(5, 2, 4) < 0.5).float())
    assert [layer.name for layer in report.layers] == ["0"]
    assert report.not_counted == ["1.inner (its forward never ran)"]
    # (nn.MultiheadAttention is counted: tests/test_energy_products.py)
    other = nn.ModuleList([nn.MultiheadAttention(8, 2), nn.LSTM(4, 4), nn.BatchNorm2d(3)])
    assert OperationCounter(other).not_counted == ["1"]


def test_linear_recurrent_container_is_counted_by_loop():
    # rc = [W_x, W_y] applied with F.linear: W_x over the input (real values: MACs),
    # W_y over the spikes fed back (ACs), by the pair loop, streamed calls included.
    from spikeflow.functional import streaming
    from spikeflow.layers import LinearRecurrentContainer
    from spikeflow.neurons import LIFNode

    torch.manual_seed(1)
    layer = LinearRecurrentContainer(LIFNode(step_mode="s"), 5, 5)
    with torch.no_grad():
        layer.rc.weight.mul_(4.0)
        layer.rc.weight[1, 2] = 0.0  # pruned: an input weight
        layer.rc.weight[3, 7] = 0.0  # and a recurrent one
    w_x, w_y = layer.rc.weight[:, :5].detach(), layer.rc.weight[:, 5:].detach()
    x = torch.rand(6, 2, 5)
    spikes = layer(x)
    assert spikes[:-1].sum() > 0
    macs = sum(int((w_x[:, i] != 0).sum()) for t, b, i in itertools.product(
        range(6), range(2), range(5)))  # fmt: skip
    acs = sum(int(spikes[t, b, i]) * int((w_y[:, i] != 0).sum())
              for t, b, i in itertools.product(range(5), range(2), range(5)))  # fmt: skip
    report = count_operations(layer, x)
    assert [(r.name, r.macs, r.acs) for r in report.layers] == [
        ("rc", macs, 0),
        ("rc (recurrent)", 0, acs),
    ]
    assert report.not_counted == []
    counter = OperationCounter(layer)
    with streaming(layer):
        layer(x[:2])
        layer(x[2:])
    streamed = counter.report(2).layers
    assert [(r.macs, r.acs) for r in streamed] == [(macs, 0), (0, acs)]


def test_spike_counts_option_reads_whole_numbers_as_that_many_spikes():
    """A residual stream of summed spikes (Spikformer's blocks) or event counts: with
    ``spike_counts=True`` an input of n is n accumulates per weight; by default it is a
    real-valued input (MACs)."""
    fc = nn.Linear(4, 3, bias=False)
    x = torch.tensor([[0.0, 2.0, 1.0, 0.0]])
    default = count_operations(fc, x, samples=1).layers[0]
    counted = count_operations(fc, x, samples=1, spike_counts=True).layers[0]
    assert (default.acs, default.macs) == (0, 4 * 3)
    assert (counted.acs, counted.macs) == ((2 + 1) * 3, 0)
    fractions = count_operations(fc, x / 3, samples=1, spike_counts=True).layers[0]
    assert fractions.macs == 12 and fractions.acs == 0
    torch.manual_seed(8)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    counts = torch.randint(0, 4, (2, 2, 5, 5)).float()
    with OperationCounter(conv, spike_counts=True) as counter:
        conv(counts)
    want = sum(_conv2d_pairs_by_loop(conv, counts >= level) for level in (1, 2, 3))
    assert counter.report(2).layers[0].acs == want
    assert "counts" in str(counter.report(2))


def test_spike_counts_of_one_value_and_large_counts_stay_exact():
    fc = nn.Linear(4, 3, bias=False)
    counted = count_operations(fc, torch.tensor([[0.0, 2.0, 2.0, 0.0]]), samples=1,
                               spike_counts=True).layers[0]  # fmt: skip
    assert counted.acs == (2 + 2) * 3 and counted.count_calls == 1  # not 2 single spikes
    conv = nn.Conv2d(64, 8, 3, padding=1)
    ones = count_operations(conv, torch.ones(1, 64, 6, 6), samples=1).layers[0].acs
    big = torch.full((1, 64, 6, 6), 30001.0)  # sums per output beyond 2^24
    got = count_operations(conv, big, samples=1, spike_counts=True).layers[0].acs
    assert got == 30001 * ones


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
        {"kernel_size": (2, 3), "stride": (1, 2), "dilation": (2, 1), "groups": 2},
    ],
)
def test_transposed_conv_counts_equal_the_pair_loop(kwargs):
    torch.manual_seed(9)
    conv = nn.ConvTranspose2d(4, 6, **kwargs)
    with torch.no_grad():
        conv.weight[conv.weight.abs() < 0.05] = 0.0
    x = (torch.rand(2, 4, 5, 4) < 0.4).float()
    with OperationCounter(conv) as counter:
        out = conv(x)
    out_h, out_w = out.shape[-2:]
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    ph, pw = conv.padding
    per_out = 6 // conv.groups
    want = 0
    for b, ci, i, j in itertools.product(range(2), range(4), range(5), range(4)):
        if x[b, ci, i, j] == 0:
            continue
        for co_local, a, c in itertools.product(range(per_out), range(kh), range(kw)):
            if conv.weight[ci, co_local, a, c] == 0:
                continue
            y, z = i * sh - ph + a * dh, j * sw - pw + c * dw
            want += 0 <= y < out_h and 0 <= z < out_w
    record = counter.report(2).layers[0]
    assert record.acs == want > 0 and record.kind == "ConvTranspose2d"
    assert OperationCounter(conv).not_counted == []


@pytest.mark.parametrize("self_connections", [True, False])
def test_recurrent_weights_are_counted_from_the_spikes_fed_back(self_connections):
    # layers.Recurrent applies W to its previous outputs with F.linear: counted from
    # them, by the pair loop (each spike fed back reaches every nonzero weight of its
    # column), including what a streamed call carried in.
    from spikeflow.functional import streaming
    from spikeflow.neurons import LIFNode

    torch.manual_seed(0)
    layer = layers.Recurrent(LIFNode(step_mode="s"), 6, self_connections=self_connections)
    with torch.no_grad():
        layer.recurrent.weight[0, 3] = 0.0  # a pruned weight
    weight = layer.recurrent.weight.detach().clone()
    if not self_connections:
        weight.fill_diagonal_(0)
    x = torch.rand(7, 3, 6) * 2.4
    spikes = layer(x)
    fed = spikes[:-1]
    expected = sum(int(fed[t, b, i]) * int((weight[:, i] != 0).sum())
                   for t, b, i in itertools.product(range(6), range(3), range(6)))  # fmt: skip
    report = count_operations(layer, x)
    (record,) = [r for r in report.layers if r.name == "recurrent"]
    assert 0 < expected == record.acs and record.macs == 0  # (totals; the report divides)
    assert report.not_counted == []
    # Streamed in two chunks: the second chunk's first step reads the carried output.
    counter = OperationCounter(layer)
    with streaming(layer):
        layer(x[:4])
        layer(x[4:])
    assert counter.report(3).layers[0].acs == expected
    counter.remove()
    # The same in chunks through an explicit state (functional.run).
    from spikeflow.functional import run

    counter = OperationCounter(layer)
    _, state = run(layer, x[:4])
    run(layer, x[4:], state)
    assert counter.report(3).layers[0].acs == expected
