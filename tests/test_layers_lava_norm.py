"""Lava-DL's neuron normalisations (``spikeflow.layers.MeanOnlyBatchNorm``,
``WgtScaleBatchNorm``) against Lava-DL's code transcribed in float64 in its layout
``[N, C, T]`` (not installable here): ``src/lava/lib/dl/slayer/neuron/norm.py`` at
commit ``56099b9c238e383f15a2bd52390c2d8d5cd30b6f`` (its ``std`` computes ``1 << e`` on
a float tensor, which this torch refuses: written as ``2.0 ** e``)."""

from __future__ import annotations

import pytest
import torch

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers import MeanOnlyBatchNorm, WgtScaleBatchNorm

F64 = torch.float64


class LavaMeanOnly:
    """``MeanOnlyBatchNorm.forward`` over ``[N, C, T]``."""

    def __init__(self, momentum=0.1, eps=None, bits=None):
        self.momentum, self.eps, self.bits = momentum, eps, bits
        self.running_mean = torch.zeros(1, dtype=F64)
        self.running_var = torch.zeros(1, dtype=F64)

    def __call__(self, inp, training):
        size = inp.shape
        if training:
            mean = torch.mean(inp.view(size[0], size[1], -1), dim=[0, 2])
            var = torch.var(inp, unbiased=False)
            n = inp.numel() / inp.shape[1]
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
                self.running_var = (
                    1 - self.momentum
                ) * self.running_var + self.momentum * var * n / (n + 1)
        else:
            mean, var = self.running_mean, self.running_var
        out = inp - mean.view(1, -1, 1)
        if self.bits is None:  # mean only
            return out
        std = 2.0 ** torch.ceil(torch.log2(torch.sqrt(var + self.eps))).clamp(-self.bits, self.bits)
        return out / std.view(1, -1, 1)


@pytest.mark.parametrize("kind", ["mean_only", "wgt_scale"])
def test_equals_lava_dl_in_training_and_evaluation(kind):
    generator = torch.Generator().manual_seed(0)
    if kind == "mean_only":
        norm, ref = MeanOnlyBatchNorm(momentum=0.2).double(), LavaMeanOnly(0.2)
    else:
        norm = WgtScaleBatchNorm(momentum=0.2, weight_exp_bits=2, eps=1e-5).double()
        ref = LavaMeanOnly(0.2, eps=1e-5, bits=2)
    scales = (5.0, 0.05, 100.0)  # std 2^e with e inside and at both clamps
    for step, scale in enumerate(scales):
        x = (torch.randn(6, 4, 3, dtype=F64, generator=generator) * scale + step).requires_grad_()
        y = norm(x)  # [T, B, C]
        x_l = x.detach().permute(1, 2, 0).clone().requires_grad_()  # [N, C, T]
        y_l = ref(x_l, training=True)
        torch.testing.assert_close(y, y_l.permute(2, 0, 1), atol=1e-12, rtol=0)
        g = torch.randn(y.shape, dtype=F64, generator=generator)
        (grad,) = torch.autograd.grad(y, x, g)
        (want,) = torch.autograd.grad(y_l, x_l, g.permute(1, 2, 0))
        torch.testing.assert_close(grad, want.permute(2, 0, 1), atol=1e-12, rtol=0)
        torch.testing.assert_close(norm.running_mean, ref.running_mean, atol=1e-12, rtol=0)
        if kind == "wgt_scale":
            torch.testing.assert_close(norm.running_var, ref.running_var, atol=1e-9, rtol=1e-12)
    norm.eval()
    x = torch.randn(5, 2, 3, dtype=F64, generator=generator)
    torch.testing.assert_close(
        norm(x), ref(x.permute(1, 2, 0), training=False).permute(2, 0, 1), atol=1e-12, rtol=0
    )
    assert torch.equal(norm.bias, -norm.running_mean)


def test_images_normalise_each_channel_and_the_scale_is_a_power_of_two():
    x = torch.randn(3, 2, 4, 5, 5, dtype=F64) * 3 + torch.arange(4, dtype=F64).view(1, 1, 4, 1, 1)
    y = MeanOnlyBatchNorm(4).double()(x)
    torch.testing.assert_close(
        y.transpose(0, 2).reshape(4, -1).mean(1), torch.zeros(4, dtype=F64), atol=1e-12, rtol=0
    )
    norm = WgtScaleBatchNorm(4).double()
    z = norm(x)
    ratio = (x - x.transpose(0, 2).reshape(4, -1).mean(1).view(1, 1, 4, 1, 1)) / z
    # the variance of the whole input: 9 (noise) + 1.25 (the channel means) -> std ~ 3.2 -> 2^2
    assert torch.allclose(ratio, torch.full_like(ratio, 4.0))
    assert norm.weight_exp.item() == 1.0  # running_var after one update: 0.1 v ~ 1.02


def test_errors_name_the_argument():
    with pytest.raises(ConfigurationError, match="momentum"):
        MeanOnlyBatchNorm(momentum=1.5)
    with pytest.raises(ConfigurationError, match="num_features"):
        MeanOnlyBatchNorm(num_features=0)
    with pytest.raises(ConfigurationError, match="weight_exp_bits"):
        WgtScaleBatchNorm(weight_exp_bits=-1)
    with pytest.raises(ConfigurationError, match="eps"):
        WgtScaleBatchNorm(eps=0.0)
    with pytest.raises(ShapeError, match="num_features is 3"):
        MeanOnlyBatchNorm(3)(torch.zeros(2, 1, 4))
    with pytest.raises(ShapeError, match=r"\[T, B, C, \.\.\.\]"):
        MeanOnlyBatchNorm()(torch.zeros(2, 4))


def _lava_cuba_with_norm(x, current_decay, voltage_decay, threshold):
    """slayer.neuron.cuba.Neuron(norm=MeanOnlyBatchNorm) over ``x[n, c, t]``, float
    dynamics transcribed (``neuron/cuba.py``): the norm acts on the *current*, after the
    synaptic filter, before the voltage; spikes where ``v >= threshold + eps``, v reset
    to 0."""
    u = torch.zeros_like(x[..., 0])
    currents = []
    for t in range(x.shape[-1]):
        u = (1 - current_decay) * u + x[..., t]
        currents.append(u)
    current = LavaMeanOnly(0.1)(torch.stack(currents, -1), training=True)
    v, spikes = torch.zeros_like(x[..., 0]), []
    for t in range(x.shape[-1]):
        v = (1 - voltage_decay) * v + current[..., t]
        s = (v >= threshold + 0.01 / 4096).to(x.dtype)
        v = v * (1 - s)
        spikes.append(s)
    return torch.stack(spikes, -1)


@pytest.mark.parametrize("current_decay", [1.0, 0.25])
def test_placement_of_a_cuba_neurons_norm(current_decay):
    """docs/neuron_zoo_lava.md: the norm before CubaLIFNode is Lava-DL's ``norm=`` (on
    the current) when the current decay is 1 (the current is the input), not otherwise."""
    from spikeflow.neurons import CubaLIFNode

    x = torch.rand(40, 3, 5, dtype=F64, generator=torch.Generator().manual_seed(1)) * 0.6
    node = CubaLIFNode(tau_syn=1 / current_decay, tau_mem=1 / 0.1, r="tau_syn*tau_mem",
                       v_threshold=0.3 + 0.01 / 4096, v_reset=0.0)  # fmt: skip
    ours = node.double()(MeanOnlyBatchNorm(5).double()(x))
    want = _lava_cuba_with_norm(x.permute(1, 2, 0), current_decay, 0.1, 0.3).permute(2, 0, 1)
    assert want.sum() > 0
    assert torch.equal(ours, want) == (current_decay == 1.0)


def test_a_sigma_delta_neurons_norm_goes_inside_the_unit():
    """docs/neuron_zoo_lava.md: Lava-DL's sigma-delta neuron normalises its sigma (the
    accumulated input, ``neuron/sigma_delta.py``); in spikeflow the norm goes in the
    unit's activation, on the folded steps viewed as one ``[1, T·B, C, ...]`` sequence."""
    from torch import nn

    from spikeflow.layers import SigmaDelta

    x = torch.randn(6, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(2))  # [T, B, C]
    norm = MeanOnlyBatchNorm(3)
    unit = SigmaDelta(nn.Sequential(nn.Unflatten(0, (1, -1)), norm, nn.Flatten(0, 1), nn.ReLU()),
                      threshold=0.0).double()  # fmt: skip
    ref = LavaMeanOnly(0.1)
    sigma = ref(x.cumsum(0).permute(1, 2, 0).contiguous(), training=True).permute(2, 0, 1)
    act = sigma.relu()  # Lava-DL: delta(activation(norm(sigma(input)))), θ = 0
    want = act - torch.cat([torch.zeros_like(act[:1]), act[:-1]])
    torch.testing.assert_close(unit(x), want, atol=1e-12, rtol=0)
    torch.testing.assert_close(norm.running_mean, ref.running_mean, atol=1e-12, rtol=0)
    before = nn.Sequential(MeanOnlyBatchNorm(3), SigmaDelta(nn.ReLU(), threshold=0.0)).double()
    assert not torch.allclose(before(x), want)  # on the deltas it is another network
