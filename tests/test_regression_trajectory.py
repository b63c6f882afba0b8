"""Regression at every step (snnTorch's tutorial_regression_1): the Trajectories dataset
equals the tutorial's (a reference loop written from it), the example's network gives
snnTorch's forward and gradients for the same weights (float64), and the example runs."""

from __future__ import annotations

import pytest
import torch

from conftest import load_example
from spikeflow.data.datasets.trajectory import Trajectories
from spikeflow.errors import ConfigurationError


def _tutorial_dataset(timesteps: int, num_samples: int, mode: str):
    """The tutorial's RegressionDataset, step by step: one end per sample from the global
    generator, a ramp to it, then (sqrt) one slope for all."""
    ramps = []
    for _ in range(num_samples):
        end = float(torch.rand(1))
        ramps.append(torch.linspace(start=0.0, end=end, steps=timesteps).view(timesteps, 1))
    features = torch.stack(ramps, dim=1)  # [T, samples, 1]
    if mode == "linear":
        return features, features * 1
    slope = float(torch.rand(1))
    return features, torch.sqrt(features * slope)


@pytest.mark.parametrize("mode", ["linear", "sqrt"])
def test_trajectories_equal_the_tutorial_dataset(mode):
    torch.manual_seed(3)
    features, labels = _tutorial_dataset(50, 4, mode)
    after = torch.rand(1)
    torch.manual_seed(3)
    data = Trajectories(4, T=50, mode=mode)
    assert torch.equal(torch.rand(1), after)  # the same draws from the global generator
    assert len(data) == 4
    for i in range(4):
        x, y = data[i]
        assert x.shape == y.shape == (50, 1) and x.dtype == torch.float32
        assert torch.equal(x, features[:, i]) and torch.equal(y, labels[:, i])


def test_seeded_trajectories_are_reproducible_and_leave_the_global_generator():
    state = torch.get_rng_state()
    a, b = Trajectories(3, T=10, seed=7), Trajectories(3, T=10, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.targets, b.targets) and not torch.equal(
        a.targets, Trajectories(3, T=10, seed=8).targets
    )
    assert 0.0 < a.slope < 1.0 and torch.allclose(a.targets, torch.sqrt(a.inputs * a.slope))
    with pytest.raises(
        ConfigurationError, match=r"mode must be one of \('linear', 'sqrt'\), got 'cubic'"
    ):
        Trajectories(2, mode="cubic")
    with pytest.raises(ConfigurationError, match=r"Trajectories: T must be an integer >= 2, got 1"):
        Trajectories(2, T=1)
    with pytest.raises(ConfigurationError, match=r"Trajectories: samples must be"):
        Trajectories(0)


def test_the_network_equals_snntorchs_forward_and_gradients_in_float64():
    pytest.importorskip("snntorch")
    example = load_example("regression_trajectory")
    torch.manual_seed(0)
    data = Trajectories(3, T=40)
    net = example.TrajectoryNet(32).double()
    reference = example.snntorch_net(net)
    x = data.inputs.transpose(0, 1).double().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out, out_ref = net(x), reference(x_ref)
    assert out.shape == (40, 3, 1) and out.dtype == torch.float64
    assert out.abs().max() > 0.05  # the spikes reach the output
    torch.testing.assert_close(out, out_ref, rtol=1e-12, atol=1e-12)
    weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)
    (out * weights).sum().backward()
    (out_ref * weights).sum().backward()
    # snnTorch's surrogate hands back float32 gradients through its float32 spikes
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-6, atol=1e-6)
    ref_params = dict(reference.named_parameters())
    for name, param in net.named_parameters():
        torch.testing.assert_close(param.grad, ref_params[name].grad, rtol=1e-6, atol=1e-6)


def test_the_example_trains_and_its_loss_falls():
    example = load_example("regression_trajectory")
    results = example.main(["--steps", "40", "--T", "20", "--hidden", "32", "--lr", "1e-2"])
    result = results["spikeflow"]
    assert len(result["losses"]) == 40 and result["seconds"] > 0
    assert result["mse"] < 0.5 * result["losses"][0]
    assert 0 <= result["relative_l1"] < 1


def test_the_network_starts_from_the_tutorials_draws():
    example = load_example("regression_trajectory")
    torch.manual_seed(5)
    net = example.TrajectoryNet(16)
    # the tutorial's Net.__init__ order: each layer's decay and threshold, then its Linear
    torch.manual_seed(5)
    beta_in, thr_in = torch.rand(16), torch.rand(16)
    fc_in = torch.nn.Linear(1, 16)
    beta_hidden, thr_hidden = torch.rand(16), torch.rand(16)
    fc_hidden = torch.nn.Linear(16, 16)
    beta_out = torch.rand(1)
    fc_out = torch.nn.Linear(16, 1)
    for mine, theirs in ((net.fc_in, fc_in), (net.fc_hidden, fc_hidden), (net.fc_out, fc_out)):
        assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)
    for node, beta, threshold in ((net.lif_in, beta_in, thr_in),
                                  (net.lif_hidden, beta_hidden, thr_hidden)):  # fmt: skip
        assert torch.equal(node.beta, beta) and torch.equal(node.v_threshold, threshold)
    assert torch.equal(net.li_out.beta, beta_out)
    given = tuple(torch.full((n,), 0.5) for n in (16, 16, 16, 16, 1))
    assert torch.equal(example.TrajectoryNet(16, given).lif_hidden.beta, given[2])
