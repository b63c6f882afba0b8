"""Differential-coding paper's conversion parts (methods.md 7.4): the Gaussian threshold
against a numerical integral of the quantisation error, the observer's exact moments,
and the multi-threshold neuron against a loop written from its rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeflow.conversion import ActivationObserver, MultiThresholdNeuron, convert
from spikeflow.conversion.gaussian import gaussian_threshold
from spikeflow.errors import ConfigurationError
from spikeflow.functional import streaming


def _error(theta: float, mean: float, std: float, levels: int) -> float:
    """E[(q(x) - relu(x))²] for x ~ N(mean, std²), q the levels-level rounding quantiser
    clipped at theta, by the trapezoidal rule on a fine grid."""
    x = torch.linspace(mean - 10 * std, mean + 10 * std, 200_001, dtype=torch.float64)
    density = torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    q = theta / levels * torch.clamp(torch.floor(x / theta * levels + 0.5), 0, levels)
    return float(torch.trapezoid((q - x.clamp_min(0)) ** 2 * density, x))


@pytest.mark.parametrize(
    ("mean", "std", "levels"),
    [(0.0, 1.0, 4), (0.5, 1.0, 8), (-0.3, 0.7, 16), (1.0, 0.2, 2), (0.2, 1.5, 64), (3.0, 0.1, 1)],
)
def test_gaussian_threshold_minimises_the_quantisation_error(mean, std, levels):
    theta = float(gaussian_threshold(torch.tensor(mean), torch.tensor(std**2), levels))
    grid = torch.linspace(1e-3, abs(mean) + 10 * std, 121).tolist()
    best = min(_error(t, mean, std, levels) for t in grid)
    assert _error(theta, mean, std, levels) <= best + 1e-12
    # a local minimum: nudging θ either way does not help
    for factor in (0.99, 1.01):
        assert _error(theta, mean, std, levels) <= _error(theta * factor, mean, std, levels)


def test_gaussian_threshold_has_no_answer_for_constant_or_silent_inputs():
    got = gaussian_threshold(torch.tensor([0.0, 1.0, -50.0]), torch.tensor([0.0, 1.0, 0.01]), 8)
    assert math.isnan(got[0]) and math.isnan(got[2]) and got[1] > 0
    with pytest.raises(ConfigurationError, match="levels"):
        gaussian_threshold(torch.tensor(0.0), torch.tensor(1.0), 0)


def test_gaussian_observer_pools_the_batches_exactly():
    torch.manual_seed(0)
    batches = [torch.randn(n, 3, 4, 4) * torch.tensor([1.0, 2.0, 0.5]).view(3, 1, 1) + 0.3
               for n in (5, 9, 2)]  # fmt: skip
    for per_channel in (False, True):
        observer = ActivationObserver("gaussian", per_channel=per_channel, levels=8)
        for x in batches:
            y = observer(x.clamp_min(0), x)
            assert torch.equal(y, x.clamp_min(0))
        everything = torch.cat(batches).double()
        if per_channel:
            rows = everything.transpose(0, 1).reshape(3, -1)
            want = gaussian_threshold(rows.mean(1), rows.var(1, unbiased=False), 8)
            assert observer.scale().shape == (3, 1, 1)
        else:
            want = gaussian_threshold(everything.mean(), everything.var(unbiased=False), 8)
        torch.testing.assert_close(
            observer.scale().double().flatten(), want.flatten().float().double()
        )


def test_gaussian_settings_are_checked():
    with pytest.raises(ConfigurationError, match="needs levels"):
        ActivationObserver("gaussian")
    with pytest.raises(ConfigurationError, match="only used by norm='gaussian'"):
        ActivationObserver("max", levels=4)
    with pytest.raises(ConfigurationError, match="only used by the robust norm"):
        ActivationObserver("gaussian", percentile=99.0, levels=4)
    with pytest.raises(ConfigurationError, match="pre-activations"):
        ActivationObserver("gaussian", levels=4)(torch.ones(2, 3))


def _reference(x: torch.Tensor, theta: float, k: int, signed: bool) -> torch.Tensor:
    """The multi-threshold rule, one neuron and one step at a time."""
    out = torch.zeros_like(x)
    for n in range(x.shape[1]):
        v = total = 0.0
        for t in range(x.shape[0]):
            v += float(x[t, n])
            spike = 0.0
            for j in range(k):
                if v >= 0.75 * theta / 2**j:
                    spike = theta / 2**j
                    break
            if signed and spike == 0.0:
                for j in range(k):
                    if v <= -0.75 * theta / 2**j and total >= theta / 2**j:
                        spike = -theta / 2**j
                        break
            v -= spike
            total += spike
            out[t, n] = spike
    return out


@pytest.mark.parametrize("signed", [False, True])
def test_multi_threshold_neuron_follows_its_rule(signed):
    torch.manual_seed(1)
    x = (torch.rand(12, 40, dtype=torch.float64) - 0.3) * 1.5
    neuron = MultiThresholdNeuron(1.5, thresholds=5, signed=signed)
    got = neuron(x)
    torch.testing.assert_close(got, _reference(x, 1.5, 5, signed))
    assert (got < 0).any() == signed
    if signed:
        assert (got.cumsum(0) >= -1e-12).all()  # never below zero in total
    # streaming one step at a time gives the same
    stepper = MultiThresholdNeuron(1.5, thresholds=5, signed=signed, step_mode="s")
    with streaming(stepper):
        steps = torch.stack([stepper(x_t) for x_t in x])
    torch.testing.assert_close(steps, got)


def test_multi_threshold_rate_is_precise_at_small_t():
    # constant input 0.3 of θ = 1: 8 thresholds resolve it far better than IF in 4 steps
    x = torch.full((4, 1), 0.3, dtype=torch.float64)
    multi = MultiThresholdNeuron(1.0, thresholds=8)(x).mean()
    assert abs(float(multi) - 0.3) < 0.02
    per_channel = MultiThresholdNeuron(torch.tensor([1.0, 2.0]).view(2, 1), thresholds=3)
    out = per_channel(torch.full((3, 4, 2, 1), 0.8))
    assert out[0, 0, 0, 0] == 1.0 and out[0, 0, 1, 0] == 1.0  # 0.8 ≥ 0.75·1, and 0.75·(2/2)


def _digits_ann() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32),
                        nn.ReLU(), nn.Linear(32, 4))  # fmt: skip
    return net.eval(), torch.randn(256, 1, 4, 4)


def test_convert_with_gaussian_thresholds_and_multi_threshold_neurons():
    net, x = _digits_ann()
    snn, report = convert(net, x, norm="gaussian", levels=4 * 2**6, multi_threshold=6)
    assert "MultiThresholdNeuron(k=6)" in str(report) and "gaussian(levels=256)" in str(report)
    ann = net(x)
    out = snn(x.unsqueeze(0).expand(4, *x.shape)).mean(0)
    # 4 steps of 6 thresholds track the ANN closely (an IF net at T = 4 does not)
    if_snn, _ = convert(net, x)
    if_out = if_snn(x.unsqueeze(0).expand(4, *x.shape)).mean(0)
    assert (out - ann).abs().mean() < 0.5 * (if_out - ann).abs().mean()
    _, report = convert(net, x, multi_threshold=6, negative_spikes=True)
    assert "signed" in str(report)
    with pytest.raises(ConfigurationError, match="pass one"):
        convert(net, x, group_size=4, multi_threshold=4)
    with pytest.raises(ConfigurationError, match="multi_threshold=k with it"):
        convert(net, x, negative_spikes=True)
    with pytest.raises(ConfigurationError, match="starts at V0 = 0"):
        convert(net, x, multi_threshold=4, initial_membrane=0.5)
    with pytest.raises(ConfigurationError, match="needs levels"):
        convert(net, x, norm="gaussian")
