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
