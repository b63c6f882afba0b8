"""Delayed read-out of converted networks: the estimate equals SpikingJelly's."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from spikeflow.conversion import constant_input, convert, estimate_delay_start
from spikeflow.conversion import delay as delay_module
from spikeflow.errors import ConfigurationError
from test_conversion_peers import _net


def _batches() -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.rand(32, 1, 6, 6, dtype=torch.float64) * (0.5 + i) for i in range(3)]


def test_one_layer_delay_by_hand():
    # one neuron layer: r = (θ − V0) / mean(relu(x)); x = w·input, θ = max of x.
    ann = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        ann[0].weight.copy_(torch.eye(3, 4, dtype=torch.float64))
        ann[0].bias.zero_()
    x = torch.tensor([[2.0, -1.0, 0.5, 7.0], [0.0, 1.0, 0.5, 3.0]], dtype=torch.float64)
    snn, _ = convert(ann, x, initial_membrane=0.25)  # θ = 2, V0 = 0.5
    mean_input = (2.0 + 0.0 + 0.5 + 0.0 + 1.0 + 0.5) / 6
    expected = (2.0 - 0.5) / mean_input  # 2.25 -> 3 steps
    ratios = []
    original = delay_module.delay_ratio

    def record(neuron, x_seq):
        ratios.append(original(neuron, x_seq))
        return ratios[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(delay_module, "delay_ratio", record)
        assert estimate_delay_start(snn, x, 16) == 3
    assert ratios == pytest.approx([expected], rel=1e-12)


@pytest.mark.parametrize("per_channel", [False, True])
def test_matches_spikingjelly_estimate_delay_start(per_channel):
    ann2snn = pytest.importorskip(
        "spikingjelly.activation_based.ann2snn", reason="spikingjelly is a test-only peer"
    )
    sj_delay = pytest.importorskip("spikingjelly.activation_based.ann2snn.delay")
    net, batches = _net().double(), _batches()
    pairs = [(b, None) for b in batches]
    recipe = ann2snn.RateCodingRecipe(
        dataloader=pairs, channel_wise=per_channel, half_threshold=per_channel
    )
    sj_snn = ann2snn.FXConverter(recipe=recipe).convert(net)
    options = {"per_channel": True, "initial_membrane": 0.5} if per_channel else {}
    snn, _ = convert(net, batches, momentum=0.1, **options)
    # every layer's ratio, recorded on both sides (more telling than the rounded sum)
    sj_ratios, ours = [], []
    sj_original, our_original = sj_delay._compute_delay_ratio, delay_module.delay_ratio

    def sj_record(*args):
        sj_ratios.append(float(sj_original(*args)))
        return torch.tensor(sj_ratios[-1])

    def our_record(*args):
        ours.append(our_original(*args))
        return ours[-1]

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("ignore", RuntimeWarning)  # SpikingJelly's T < delay + 4
        patch.setattr(sj_delay, "_compute_delay_ratio", sj_record)
        patch.setattr(delay_module, "delay_ratio", our_record)
        for steps, num_batches in [(64, 3), (64, 1), (16, 2), (8, 1), (3, 1)]:
            expected = ann2snn.estimate_delay_start(sj_snn, pairs, "cpu", steps, num_batches)
            assert estimate_delay_start(snn, batches, steps, num_batches) == expected
    # SpikingJelly scales by its float32 scale: equal to its rounding
    assert ours == pytest.approx(sj_ratios, rel=1e-6)
    assert len(ours) == 2 * (3 + 1 + 2 + 1 + 1) and min(ours) > 0.5


def test_delayed_rate_reads_the_steps_after_the_delay():
    net, batches = _net().double(), _batches()
    snn, _ = convert(net, batches)
    x = batches[2][:8]
    with torch.no_grad():
        out = snn(constant_input(x, 12))
        torch.testing.assert_close(snn.rate(x, 12, delay=5), out[5:].mean(0))
        running = snn.running_rate(x, 12, delay=5)
    assert running.shape == (7, 8, 5)
    for i in range(7):
        torch.testing.assert_close(running[i], out[5 : 6 + i].mean(0))
    torch.testing.assert_close(snn.running_rate(x, 12), out.cumsum(0) / torch.arange(
        1, 13, dtype=out.dtype).reshape(-1, 1, 1))  # fmt: skip


def test_bad_delays_and_networks_are_named():
    net, batches = _net().double(), _batches()
    snn, _ = convert(net, batches)
    x = batches[0]
    for bad in (12, -1, 1.5, True):
        with pytest.raises(ConfigurationError, match=r"delay must be an integer in \[0, steps\)"):
            snn.rate(x, 12, delay=bad)
    with pytest.raises(ConfigurationError, match="num_batches must be an integer >= 1"):
        estimate_delay_start(snn, batches, 8, num_batches=0)
    with pytest.raises(ConfigurationError, match="expects a ConvertedSNN"):
        estimate_delay_start(net, batches, 8)
    group, _ = convert(net, batches, group_size=4)
    with pytest.raises(ConfigurationError, match="is a GroupNeuron; the delay estimate"):
        estimate_delay_start(group, batches, 8)
    differential, _ = convert(net, batches, coding="differential")
    with pytest.raises(ConfigurationError, match="differentially coded"):
        estimate_delay_start(differential, batches, 8)
    with pytest.warns(RuntimeWarning, match="leaves fewer than 4 of T = 3 steps"):
        assert estimate_delay_start(snn, batches, 3) == 0


@pytest.mark.parametrize("per_channel", [False, True])
def test_uneven_batches_and_small_t_match_spikingjelly(per_channel):
    # batches of 7, 20 and 3 samples at three input scales (each batch's ratio weighs
    # the same on both sides, whatever its size)
    # and T below SpikingJelly's 4 read-out steps + 1, where both clamp to max(T - 5, 0)
    ann2snn = pytest.importorskip(
        "spikingjelly.activation_based.ann2snn", reason="spikingjelly is a test-only peer"
    )
    net, batches = _net().double(), _batches()
    recipe = ann2snn.RateCodingRecipe(
        dataloader=[(b, None) for b in batches], channel_wise=per_channel,
        half_threshold=per_channel,
    )  # fmt: skip
    sj_snn = ann2snn.FXConverter(recipe=recipe).convert(net)
    options = {"per_channel": True, "initial_membrane": 0.5} if per_channel else {}
    snn, _ = convert(net, batches, momentum=0.1, **options)
    data = torch.cat(batches)
    uneven = [(data[:7] * 0.3, 0), (data[7:27], 1), (data[27:30] * 2.5, 2)]
    estimates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for steps in (1, 2, 4, 5, 6, 200):
            expected = ann2snn.estimate_delay_start(sj_snn, uneven, "cpu", steps, 3)
            estimates.append(estimate_delay_start(snn, uneven, steps, num_batches=3))
            assert estimates[-1] == expected, steps
    assert estimates[:4] == [0, 0, 0, 0] and estimates[-1] > 1


def test_no_calibration_batch_is_an_error():
    net, batches = _net().double(), _batches()
    snn, _ = convert(net, batches)
    consumed = iter(batches)
    list(consumed)
    for empty in ([], consumed):
        with pytest.raises(ConfigurationError, match="calibration_data gave no batch"):
            estimate_delay_start(snn, empty, 64)
