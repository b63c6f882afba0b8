"""Differential-coding paper's conversion parts (methods.md 7.4): the Gaussian threshold
against a numerical integral of the quantisation error, the observer's exact moments,
and the multi-threshold neuron against a loop written from its rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeflow.conversion import (
    ActivationObserver,
    ConversionError,
    DifferentialMaxPool,
    DifferentialNeuron,
    MultiThresholdNeuron,
    convert,
    differential_decode,
    differential_encode,
)
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


# -- differential coding --------------------------------------------------------------------


def test_a_linear_network_passes_differential_coding_exactly():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Linear(7, 3)).double().eval()
    x = torch.randn(9, 5, 3, 4, dtype=torch.float64)  # a time-varying input [T, B, ...]
    snn, _ = convert(net, x[0], coding="differential", strict=False)
    assert snn.coding == "differential"
    torch.testing.assert_close(snn(x), net(x.flatten(0, 1)).unflatten(0, (9, 5)))
    encoded = differential_encode(x)
    assert encoded.shape[0] == 10 and (encoded[0] == 0).all()
    torch.testing.assert_close(encoded[1], x[0])
    # a constant input is sent once
    constant = differential_encode(x[:1].expand(6, *x.shape[1:]))
    assert (constant[2:] == 0).all()


def _differential_reference(x: torch.Tensor, theta: float, k: int | None) -> torch.Tensor:
    """The differential neuron's rule, one neuron at a time (x: [T + 1, N])."""
    out = torch.zeros_like(x)
    for n in range(x.shape[1]):
        bias = float(x[0, n])
        est_in, est_out, total = bias, 0.0, 0.0
        v = 0.5 * theta if k is None else 0.0
        for t in range(1, x.shape[0]):
            change = float(x[t, n]) - bias
            v += change + est_in - est_out
            total += est_out
            levels = [theta] if k is None else [theta / 2**j for j in range(k)]
            up = 1.0 if k is None else 0.75
            spike = 0.0
            for level in levels:
                if v >= up * level:
                    spike = level
                    break
            if spike == 0.0:
                for level in levels:
                    low = -0.75 * level if k is not None else 0.0
                    if v <= low and total >= level:
                        spike = -level
                        break
            v -= spike
            total += spike
            est_in += change / t
            est_out += spike / t
            out[t, n] = spike
    return out


@pytest.mark.parametrize("k", [None, 3])
def test_differential_neuron_follows_its_rule(k):
    torch.manual_seed(4)
    x = torch.randn(15, 30, dtype=torch.float64) * 0.8 + 0.2
    got = DifferentialNeuron(1.2, thresholds=k)(x)
    torch.testing.assert_close(got, _differential_reference(x, 1.2, k))
    assert (got[0] == 0).all() and (got < 0).any()


def _outputs_and_spikes(snn, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    """The SNN's outputs [T, B, ...] and how many nonzero values its neurons sent."""
    counted: list[torch.Tensor] = []
    kinds = ("MultiThresholdNeuron", "ConversionIFNode", "DifferentialNeuron")
    hooks = [m.register_forward_hook(lambda _m, _i, out: counted.append(out.ne(0).sum()))
             for m in snn.modules() if type(m).__name__ in kinds]  # fmt: skip
    with torch.no_grad():
        out = snn(x.unsqueeze(0).expand(steps, *x.shape))
    for hook in hooks:
        hook.remove()
    return out, int(sum(counted))


def test_differential_coding_converges_and_with_thresholds_sends_fewer_spikes():
    net, x = _digits_ann()
    net, x = net.double(), x.double()
    with torch.no_grad():
        ann = net(x)
    results = {}
    for name, options in (
        ("rate", {"initial_membrane": 0.5}),
        ("diff", {"coding": "differential"}),
        ("rate k=8", {"multi_threshold": 8}),
        ("diff k=8", {"coding": "differential", "multi_threshold": 8}),
    ):
        snn, _ = convert(net, x, **options)
        out, spikes = _outputs_and_spikes(snn, x, 64)
        error = [float((out[:t].mean(0) - ann).abs().mean()) for t in (4, 64)]
        results[name] = (error, spikes)
    for name, (error, _) in results.items():
        assert error[1] < error[0] / 3, name  # every variant converges
    assert results["diff"][0][1] <= 1.5 * results["rate"][0][1]
    # one threshold: ±θ corrections keep the differential neurons busy (measured 2.7x
    # the spikes of rate coding); with 8 thresholds they fall silent once the estimate
    # has converged (measured 1/10 of rate coding's values sent)
    assert results["diff k=8"][1] < 0.3 * results["rate k=8"][1]
    assert results["diff k=8"][0][1] <= 1.5 * results["rate k=8"][0][1]


def test_differential_coding_refuses_what_it_cannot_do():
    net, x = _digits_ann()
    with pytest.raises(ConfigurationError, match="drop"):
        convert(net, x, coding="differential", group_size=4)
    with pytest.raises(ConfigurationError, match="drop"):
        convert(net, x, coding="differential", initial_membrane=0.5)
    with pytest.raises(ConfigurationError, match="coding must be one of"):
        convert(net, x, coding="phase")
    overlapping = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(),
                                nn.MaxPool2d(3, stride=1), nn.Flatten(),
                                nn.Linear(8, 2)).eval()  # fmt: skip
    with pytest.raises(ConversionError, match="non-overlapping windows"):
        convert(overlapping, x, coding="differential")


def _max_pool_reference(x: torch.Tensor, k: int) -> torch.Tensor:
    """The differential max pool's rule with explicit loops (x: [T + 1, H, W])."""
    steps, height, width = x.shape
    v = torch.zeros(height, width, dtype=x.dtype)
    estimate_in = x[0].clone()
    estimate_out = torch.zeros(height // k, width // k, dtype=x.dtype)
    out = torch.zeros(steps, height // k, width // k, dtype=x.dtype)
    for t in range(1, steps):
        change = x[t] - x[0]
        v += change + estimate_in
        estimate_in += change / t
        for i in range(height // k):
            for j in range(width // k):
                window = v[i * k : (i + 1) * k, j * k : (j + 1) * k]
                top = window.max().clone()
                window -= top
                out[t, i, j] = top - estimate_out[i, j]
                estimate_out[i, j] += out[t, i, j] / t
    return out


def test_differential_max_pool_follows_its_rule_and_passes_a_constant_maximum():
    torch.manual_seed(5)
    x = torch.randn(9, 5, 7, dtype=torch.float64)  # odd sizes: the border is not pooled
    pool = DifferentialMaxPool.from_max_pool(nn.MaxPool2d(2))
    got = pool(x.view(9, 1, 1, 5, 7))
    torch.testing.assert_close(got.view(9, 2, 3), _max_pool_reference(x, 2))
    image = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    sent = differential_encode(image.unsqueeze(0).expand(5, 1, 1, 6, 6))
    rebuilt = differential_decode(pool(sent))
    want = nn.functional.max_pool2d(image, 2)
    for step in rebuilt:
        torch.testing.assert_close(step, want)


def test_a_cnn_with_max_pooling_converts_to_differential_coding():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))  # fmt: skip
    net = net.double().eval()
    x = torch.rand(64, 1, 4, 4, dtype=torch.float64)
    snn, report = convert(net, x, coding="differential", multi_threshold=8)
    assert "DifferentialMaxPool" in str(report)
    with torch.no_grad():
        ann = net(x)
        out = snn(x.unsqueeze(0).expand(32, *x.shape))
    error = [float((out[:t].mean(0) - ann).abs().mean()) for t in (2, 32)]
    assert error[1] < 0.02 * float(ann.abs().mean()) and error[1] < error[0]


def test_nir_export_names_differential_coding():
    pytest.importorskip("nir", reason="the 'nir' extra is needed")
    from spikeflow.conversion import constant_input
    from spikeflow.interop import export_to_nir

    net, x = _digits_ann()
    snn, _ = convert(net, x, coding="differential")
    with pytest.raises(ConfigurationError, match="coding='differential'"):
        export_to_nir(snn, constant_input(x, 4), soft_reset="metadata")


def test_streaming_refuses_whole_sequence_modules():
    from spikeflow.errors import StateError
    from spikeflow.event_driven import EventDrivenLinear
    from spikeflow.functional import streaming

    net, x = _digits_ann()
    snn, _ = convert(net, x, coding="differential")
    for model in (snn, nn.Sequential(EventDrivenLinear(4, 2))):
        with pytest.raises(StateError, match="whole sequences only"):
            with streaming(model):
                pass


def test_differential_modules_name_a_missing_bias_step_or_bad_input():
    from spikeflow.errors import DTypeError, ShapeError

    with pytest.raises(ShapeError, match="DifferentialNeuron needs the bias step"):
        DifferentialNeuron()(torch.zeros(1, 2))
    with pytest.raises(ShapeError, match="differential_decode needs the bias step"):
        differential_decode(torch.zeros(1, 2))
    with pytest.raises(ShapeError, match=r"DifferentialMaxPool .*at least 5 dimensions"):
        DifferentialMaxPool(2)(torch.zeros(3, 1, 1, 4))
    with pytest.raises(DTypeError, match="MultiThresholdNeuron expects a floating-point"):
        MultiThresholdNeuron()(torch.zeros(3, 2, dtype=torch.long))
