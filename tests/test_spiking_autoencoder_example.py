"""examples/spiking_autoencoder.py: the spiking network against a hand-written step loop,
the float reference being the same architecture, training lowering the reconstruction
loss on a fixed batch of real digits (deterministically), and the trivial predictor."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import load_example

sae = load_example("spiking_autoencoder")


def lif_loop(currents: torch.Tensor) -> torch.Tensor:
    """LIF by hand (tau 2, no input decay, threshold 1, hard reset to 0) over ``[T, ...]``."""
    v = torch.zeros_like(currents[0])
    spikes = []
    for current in currents:
        h = v - v / 2.0 + current
        s = (h >= 1.0).to(h.dtype)
        v = h * (1 - s)
        spikes.append(s)
    return torch.stack(spikes)


def test_spiking_forward_matches_a_step_loop():
    torch.manual_seed(1)
    net = sae.Autoencoder(2, 17, 12, spiking=True).double()
    with torch.no_grad():  # larger weights than the initial ones, so every layer fires
        for parameter in net.parameters():
            parameter.mul_(4.0)
    x = 4 * torch.rand(5, 3, 2, 17, 17, dtype=torch.float64)  # input currents
    out, z = net(x)
    h = lif_loop(
        F.conv2d(x.flatten(0, 1), net.conv1.weight, net.conv1.bias, 2, 1).unflatten(0, (5, 3))
    )
    h = lif_loop(
        F.conv2d(h.flatten(0, 1), net.conv2.weight, net.conv2.bias, 2, 1).unflatten(0, (5, 3))
    )
    assert h.shape == (5, 3, 32, 5, 5)
    latent = lif_loop(F.linear(h.flatten(2), net.encode.weight, net.encode.bias))
    torch.testing.assert_close(z, latent, rtol=0, atol=0)
    assert 0 < latent.mean() < 1  # the check is not on silent (or saturated) layers
    h = lif_loop(F.linear(latent, net.decode.weight, net.decode.bias)).reshape(5, 3, 32, 5, 5)
    h = lif_loop(torch.stack([
        F.conv_transpose2d(s, net.deconv1.weight, net.deconv1.bias, 2, 1)
        for s in h]))  # fmt: skip
    assert h.shape == (5, 3, 16, 9, 9)
    y = torch.stack([F.conv_transpose2d(s, net.deconv2.weight, net.deconv2.bias, 2, 1)
                     for s in h])  # fmt: skip
    torch.testing.assert_close(out, y.mean(0), rtol=1e-12, atol=1e-12)


def test_float_reference_is_the_same_architecture_with_relu():
    torch.manual_seed(0)
    spiking = sae.Autoencoder(1, 8, 32, spiking=True)
    torch.manual_seed(0)
    floating = sae.Autoencoder(1, 8, 32, spiking=False)
    a, b = spiking.state_dict(), floating.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert sum(isinstance(m, nn.ReLU) for m in floating.modules()) == 4 + 1
    x = torch.rand(6, 1, 8, 8)
    out, latent = floating(x)
    assert out.shape == (6, 1, 8, 8) and latent.shape == (1, 6, 32)
    h = F.relu(F.conv2d(F.relu(F.conv2d(x, floating.conv1.weight, floating.conv1.bias, 2, 1)),
                        floating.conv2.weight, floating.conv2.bias, 2, 1))  # fmt: skip
    z = F.relu(F.linear(h.flatten(1), floating.encode.weight, floating.encode.bias))
    torch.testing.assert_close(latent[0], z)


def fixed_batch_losses(steps: int) -> list[float]:
    """The example's ``train`` on one batch of 64 real digits: one Adam step per epoch."""
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    train_img, _ = sae.load_digits_images(seed=0)
    target = train_img[:64]
    x = target.unsqueeze(0).expand(4, *target.shape)
    torch.manual_seed(0)
    net = sae.Autoencoder(1, 8, 32, spiking=True)
    args = argparse.Namespace(lr=1e-2, seed=0, epochs=steps, batch_size=64)
    return sae.train(net, x, target, args, sequence=True)


def test_training_lowers_the_loss_on_a_fixed_batch_deterministically():
    losses = fixed_batch_losses(40)
    assert losses[-1] < 0.3 * losses[0], losses
    assert fixed_batch_losses(40) == losses


def test_main_reports_the_three_test_errors():
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    from sklearn.datasets import load_digits

    result = sae.main(["--epochs", "10", "--T", "4"])
    x = torch.tensor(load_digits().data, dtype=torch.float32) / 16.0
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]
    trivial = ((x[1437:] - x[:1437].mean(0)) ** 2).mean().item()
    assert abs(result["trivial"] - trivial) < 1e-6
    assert result["float"] < trivial and result["spiking"] < trivial, result
    assert 0 < result["latent_rate"] < 1 and 0 <= result["latent_silent"] < 1
