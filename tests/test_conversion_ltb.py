"""Local threshold balancing (norm='ltb') equals SpikingJelly's LocalThresholdBalancingRecipe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeflow.conversion import ActivationObserver, constant_input, convert
from spikeflow.errors import ConfigurationError


def _digits_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small CNN trained for a few epochs on sklearn's 8x8 digits, in float64."""
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn (extra 'examples')")
    torch.manual_seed(0)
    digits = datasets.load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float64).reshape(-1, 1, 8, 8)
    y = torch.tensor(digits.target)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    ).double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(6):
            for i in range(0, 1400, 100):
                loss = F.cross_entropy(net(x[i : i + 100]), y[i : i + 100])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval(), x, y


def test_thresholds_and_outputs_equal_spikingjelly_on_digits():
    ann2snn = pytest.importorskip(
        "spikingjelly.activation_based.ann2snn", reason="spikingjelly is a test-only peer"
    )
    from spikingjelly.activation_based import functional as sj_functional

    net, x, y = _digits_cnn()
    with torch.no_grad():
        assert float((net(x[1400:]).argmax(1) == y[1400:]).double().mean()) > 0.85
    calibration = [(x[i : i + 100], y[i : i + 100]) for i in range(0, 300, 100)]
    recipe = ann2snn.LocalThresholdBalancingRecipe(dataloader=calibration)
    sj_snn = ann2snn.FXConverter(recipe=recipe).convert(net)
    snn, report = convert(net, calibration, norm="ltb", per_channel=True, initial_membrane=0.5)
    ours = [b for n, b in snn.named_buffers() if n.endswith("v_threshold")]
    theirs = [sj_snn.get_submodule(f"ltb_spiking_{i}.scaler1").scale for i in range(3)]
    assert len(ours) == 3
    for mine, sj_theta in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine.reshape(-1), sj_theta.reshape(-1), rtol=1e-12, atol=0)
    # Layer by layer: the last layer's θ differs from unclipped calibration's.
    assert "ltb per-channel" in str(report)
    images, steps = x[1400:1600], 32
    sj_functional.reset_net(sj_snn)
    with torch.no_grad():
        sj_out = torch.stack([sj_snn(images) for _ in range(steps)])
        out = snn(constant_input(images, steps))
    torch.testing.assert_close(out, sj_out, rtol=1e-10, atol=1e-10)
    accuracy = float((out.mean(0).argmax(1) == y[1400:1600]).double().mean())
    assert accuracy > 0.8


def _reference_ltb(batches: list[torch.Tensor], per_channel: bool) -> torch.Tensor:
    """θ by the paper's rule, written out as a loop over batches and channels."""
    channels = batches[0].shape[1] if per_channel else 1
    theta = [0.0] * channels
    for batch in batches:
        for c in range(channels):
            a = (batch[:, c] if per_channel else batch).clamp_min(0).flatten().tolist()
            overflow = sum(max(v - theta[c], 0.0) for v in a) / len(a)
            theta[c] = max(theta[c] + 2.0 * overflow, 1e-6)
    return torch.tensor(theta, dtype=torch.float64)


@pytest.mark.parametrize("per_channel", [False, True])
def test_observer_follows_the_balancing_rule_and_clips(per_channel):
    torch.manual_seed(1)
    batches = [torch.randn(6, 3, 4, dtype=torch.float64) * (k + 1) for k in range(3)]
    batches[0][:, 2] = -1.0  # a channel silent in the first batch
    observer = ActivationObserver("ltb", per_channel=per_channel)
    for batch in batches:
        out = observer(batch.clamp_min(0))
        theta = observer._theta
        view = theta.reshape(1, -1, 1) if per_channel else theta.reshape(())
        torch.testing.assert_close(out, torch.minimum(batch.clamp_min(0), view))
    expected = _reference_ltb(batches, per_channel)
    torch.testing.assert_close(observer.scale().reshape(-1), expected, rtol=1e-12, atol=0)


def test_ltb_calibrates_on_the_clipped_network():
    # Two ReLUs in a row of identity layers: the second sees the first's clipped output,
    # so after one batch its θ is 2·mean(min(a, θ1)), not 2·mean(a).
    net = nn.Sequential(nn.Identity(), nn.ReLU(), nn.Linear(1, 1, bias=False), nn.ReLU()).double()
    with torch.no_grad():
        net[2].weight.fill_(1.0)
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    _, report = convert(net, x, norm="ltb")
    theta1 = 2 * 4.0 / 3
    theta2 = 2 * (1.0 + theta1) / 3
    text = str(report)
    assert f"θ={theta1:.4g}" in text and f"θ={theta2:.4g}" in text


def test_ltb_refuses_options_of_other_norms():
    with pytest.raises(ConfigurationError, match="percentile"):
        ActivationObserver("ltb", percentile=99.0)
    with pytest.raises(ConfigurationError, match="'ltb'"):
        ActivationObserver("lbt")


def test_bfloat16_activations_are_balanced_in_float32():
    # In bfloat16, 2·mean(overflow) of a late batch is below half a step of θ ≈ 8 and
    # rounds away, so θ stalls ~7% low; SpikingJelly balances 16-bit inputs in float32.
    torch.manual_seed(0)
    batches = [(torch.randn(32, 4, 64) * 3).to(torch.bfloat16) for _ in range(200)]
    observer = ActivationObserver("ltb", per_channel=True)
    theta = torch.zeros(4, dtype=torch.float64)
    for batch in batches:
        observer(batch)
        rows = batch.double().clamp_min(0).transpose(0, 1).reshape(4, -1)
        theta = (theta + 2 * (rows - theta[:, None]).clamp_min(0).mean(1)).clamp_min(1e-6)
    scale = observer.scale()
    assert scale.dtype == torch.bfloat16  # the activations' dtype, as before
    torch.testing.assert_close(scale.reshape(-1).double(), theta, rtol=2**-8, atol=0)
