"""The classic conversion equals SpikingJelly's rate-coding converter, spike for spike."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.conversion import constant_input, convert


def _net() -> nn.Module:
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 5),
    )
    with torch.no_grad():
        bn = net[1]
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(0.0, 0.3)
    return net.eval()


@pytest.mark.parametrize(
    ("sj_mode", "options"),
    [
        ("max", {"norm": "max"}),
        ("99.9%", {"norm": "percentile", "percentile": 99.9, "include_zeros": True}),
    ],
)
def test_matches_spikingjelly_rate_coding_recipe(sj_mode, options):
    ann2snn = pytest.importorskip(
        "spikingjelly.activation_based.ann2snn", reason="spikingjelly is a test-only peer"
    )
    from spikingjelly.activation_based import functional as sj_functional

    net = _net()
    x = torch.rand(64, 1, 6, 6)
    recipe = ann2snn.RateCodingRecipe(dataloader=[(x, None)], mode=sj_mode)
    sj_snn = ann2snn.FXConverter(recipe=recipe).convert(net)
    steps = 32
    sj_functional.reset_net(sj_snn)
    with torch.no_grad():
        sj_out = torch.stack([sj_snn(x) for _ in range(steps)])  # single-step, one call per t
        snn, _ = convert(net, x, **options)
        out = snn(constant_input(x, steps))
    # SpikingJelly scales the input by 1/s into a threshold-1 neuron and back by s; ours
    # is a threshold-s neuron: the same spikes here, so the same outputs at every step.
    torch.testing.assert_close(out, sj_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("sj_mode", "options", "channel_wise"),
    [
        (0.5, {"norm": "max", "fraction": 0.5}, False),
        ("max", {"norm": "max"}, False),
        ("99.9%", {"norm": "percentile", "percentile": 99.9, "include_zeros": True}, False),
        (0.7, {"norm": "max", "fraction": 0.7, "per_channel": True}, True),
    ],
)
def test_matches_spikingjelly_fraction_and_moving_average(sj_mode, options, channel_wise):
    # Three calibration batches: SpikingJelly's scale is the moving average (momentum
    # 0.3 here) of each batch's statistic, times the fraction for mode=0.5; spikeflow's
    # with momentum=0.3. Float64, so that no membrane sits within rounding of θ.
    # Checked: without momentum= the outputs differ (the last assertion).
    ann2snn = pytest.importorskip(
        "spikingjelly.activation_based.ann2snn", reason="spikingjelly is a test-only peer"
    )
    from spikingjelly.activation_based import functional as sj_functional

    torch.manual_seed(1)
    net = _net().double()
    batches = [torch.rand(32, 1, 6, 6, dtype=torch.float64) * (1 + i) for i in range(3)]
    recipe = ann2snn.RateCodingRecipe(
        dataloader=[(x, None) for x in batches], mode=sj_mode, momentum=0.3,
        channel_wise=channel_wise,
    )  # fmt: skip
    sj_snn = ann2snn.FXConverter(recipe=recipe).convert(net)
    x, steps = batches[1], 32
    sj_functional.reset_net(sj_snn)
    with torch.no_grad():
        sj_out = torch.stack([sj_snn(x) for _ in range(steps)])
        snn, report = convert(net, batches, momentum=0.3, **options)
        out = snn(constant_input(x, steps))
        plain, _ = convert(net, batches, **options)  # the running max / plain mean
        plain_out = plain(constant_input(x, steps))
    # SpikingJelly's VoltageScaler holds the scale as torch.tensor(float): float32, so its
    # outputs carry float32 rounding of s; the spikes are the same.
    torch.testing.assert_close(out, sj_out, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(plain_out, sj_out, atol=1e-3)  # the average matters here
    assert "(EMA 0.3)" in str(report)
