"""Learned delta thresholds (``DeltaEncoder(requires_grad=True)``) against Lava-DL.

Lava-DL cannot be installed here: its delta unit is transcribed below into a float64
autograd function in its time-last layout (``[N, C, ..., T]``), read from
``lava-nc/lava-dl`` ``src/lava/lib/dl/slayer/axon/delta.py`` at commit
``8157ba91a31ed7ebd41e08cd7533f57236fe9519`` (not copied): ``_DeltaUnit.forward``
(``delta = x[t] - pre + residual``, sent where ``|delta| >= θ`` or, with
``cum_error``, where the running error ``|e| >= θ``; ``e`` cleared where the output is
nonzero) and ``_DeltaUnit.backward`` (``grad_x[t] = g[t] - g[t+1]``; the threshold's
``where(|d| - θ > 0, -d · scale_grad · exp(-| |d| - θ | / tau_grad) / θ, -sign(d)) · g``
summed over everything (one threshold) or over all but the channel), with ``Delta``'s
``clamp`` of θ to ``>= 1 / scale``. Lava-DL's sigma-delta neuron
(``neuron/sigma_delta.py`` at ``7af9455787f4bbda9db8e0c295f7787ef1730849``) passes its
``requires_grad``, ``tau_grad`` and ``scale_grad`` to this unit, with ``scale = 64 ·
64``. Lava-DL's final ``quantize(output, step=1/scale, FLOOR)`` is not reproduced (as
for the rest of spikeflow's sigma-delta, ``docs/sigma_delta.md``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers.sigma_delta import DeltaEncoder, SigmaDelta, delta_threshold_grad

F64 = torch.float64


class _LavaDeltaUnit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold, cum_error, tau_grad, scale_grad):
        out = torch.zeros_like(x)
        delta_input = torch.zeros_like(x)
        pre = torch.zeros_like(x[..., 0])
        residual = torch.zeros_like(x[..., 0])
        error = torch.zeros_like(x[..., 0])
        for t in range(x.shape[-1]):
            delta = x[..., t] - pre + residual
            delta_input[..., t] = delta
            if cum_error:
                error = error + delta
                out[..., t] = torch.where(error.abs() >= threshold, delta, 0 * delta)
                error = error * (1 - (out[..., t].abs() > 0).to(x.dtype))
            else:
                out[..., t] = torch.where(delta.abs() >= threshold, delta, 0 * delta)
            residual = delta - out[..., t]
            pre = x[..., t]
        ctx.save_for_backward(delta_input, threshold)
        ctx.relax = (tau_grad, scale_grad)
        return out

    @staticmethod
    def backward(ctx, grad):
        delta_input, threshold = ctx.saved_tensors
        tau_grad, scale_grad = ctx.relax
        th = threshold.unsqueeze(-1)  # Lava-DL: "threshold dim was unsqueezed in the last dim"
        sub = delta_input.abs() - th
        nascent = scale_grad * torch.exp(-sub.abs() / tau_grad)
        grad_th = torch.where(sub > 0, -delta_input * nascent / th, -torch.sign(delta_input))
        grad_th = grad_th * grad
        grad_x = torch.zeros_like(grad)
        grad_x[..., :-1] = grad[..., :-1] - grad[..., 1:]
        grad_x[..., -1] = grad[..., -1]
        if threshold.numel() == 1:
            grad_th = grad_th.sum().reshape(threshold.shape)
        else:
            n, c = delta_input.shape[:2]
            grad_th = grad_th.reshape(n, c, -1).sum((0, -1)).reshape(threshold.shape)
        return grad_x, grad_th, None, None, None


def _walk(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.cumsum(torch.randn(shape, dtype=F64, generator=generator) * 0.1, 0)


def _weighted_sum(y):
    return (y * torch.linspace(-1, 2, y.numel(), dtype=F64).view_as(y)).sum()


@pytest.mark.parametrize("cum_error", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_learned_threshold_equals_lava_dl_outputs_and_gradients(cum_error, per_channel):
    theta0 = torch.tensor([0.05, 0.12, 0.2], dtype=F64).view(3, 1, 1) if per_channel else 0.1
    encoder = DeltaEncoder(
        theta0, cum_error=cum_error, requires_grad=True, tau_grad=0.5, scale_grad=2.0
    ).double()
    x = _walk((30, 2, 3, 2, 2), seed=int(cum_error) + 2 * int(per_channel)).requires_grad_()
    y = encoder(x)
    got = torch.autograd.grad(_weighted_sum(y), [x, encoder.threshold])

    theta = encoder.threshold.detach().clone().requires_grad_()  # 0.1 as a float32 parameter
    x_lava = x.detach().movedim(0, -1).clone().requires_grad_()
    y_lava = _LavaDeltaUnit.apply(x_lava, theta, cum_error, 0.5, 2.0).movedim(-1, 0)
    want = torch.autograd.grad(_weighted_sum(y_lava), [x_lava, theta])

    torch.testing.assert_close(y.detach(), y_lava.detach(), atol=1e-12, rtol=0)
    assert 0.05 < float((y != 0).double().mean()) < 0.9  # some sent, some held back
    torch.testing.assert_close(got[0], want[0].movedim(-1, 0), atol=1e-12, rtol=0)
    assert encoder.threshold.shape == theta.shape and want[1].abs().min() > 0
    torch.testing.assert_close(got[1], want[1], atol=1e-10, rtol=1e-12)


def test_threshold_gradient_by_hand():
    # θ = 0.5, tau 1, scale 1: d = 0.75 sent: -0.75 e^{-0.25} / 0.5; d = -0.25 held: +1;
    # d = 0.5 (|d| = θ, sent, but |d| - θ = 0 is not > 0): -1
    d = torch.tensor([0.75, -0.25, 0.5], dtype=F64)
    local = delta_threshold_grad(d, torch.tensor(0.5, dtype=F64))
    expected = [-0.75 * torch.exp(torch.tensor(-0.25, dtype=F64)).item() / 0.5, 1.0, -1.0]
    assert local.tolist() == pytest.approx(expected, abs=1e-15)
    scaled = delta_threshold_grad(d, torch.tensor(0.5, dtype=F64), tau_grad=0.25, scale_grad=3)
    assert scaled[0].item() == pytest.approx(-3 * 0.75 * torch.exp(torch.tensor(-1.0)).item() / 0.5)
    assert scaled[1:].tolist() == [1.0, -1.0]  # at |d| = θ: -sign(d), not the relaxation's -3


def test_learned_threshold_is_clamped_trained_and_streams():
    encoder = DeltaEncoder(0.1, requires_grad=True, min_threshold=0.01).double()
    assert isinstance(encoder.threshold, nn.Parameter) and encoder.threshold.dim() == 0
    with torch.no_grad():
        encoder.threshold.fill_(-0.3)  # an optimiser step below the bound
    x = _walk((12, 2, 4), seed=7)
    encoder(x)
    assert float(encoder.threshold.detach()) == 0.01
    with torch.no_grad():
        encoder.threshold.fill_(0.1)
    whole = encoder(x)
    with F.streaming(encoder):  # in chunks: the output of one call
        chunks = torch.cat([encoder(part) for part in x.split(5)])
    torch.testing.assert_close(chunks, whole, atol=1e-12, rtol=0)
    unit = SigmaDelta(nn.ReLU(), threshold=0.1, requires_grad=True, cum_error=True).double()
    out = unit(torch.diff(x, dim=0, prepend=torch.zeros_like(x[:1])))
    (grad,) = torch.autograd.grad(_weighted_sum(out), unit.delta.threshold)
    assert unit.threshold is unit.delta.threshold and unit.delta.cum_error and grad != 0


def test_learned_threshold_refusals_name_the_argument():
    with pytest.raises(ConfigurationError, match="min_threshold"):
        DeltaEncoder(0.0, requires_grad=True)
    with pytest.raises(ConfigurationError, match="min_threshold"):
        DeltaEncoder(torch.tensor([0.1, 0.0]), requires_grad=True)
    with pytest.raises(ConfigurationError, match="requires_grad must be a bool"):
        DeltaEncoder(0.1, requires_grad=1)
    with pytest.raises(ConfigurationError, match="tau_grad"):
        DeltaEncoder(0.1, requires_grad=True, tau_grad=0)
    with pytest.raises(ConfigurationError, match="unknown option"):
        SigmaDelta(threshold=0.1, requires_gradient=True)


def test_learned_threshold_survives_two_calls_before_one_backward():
    # the clamp must not bump θ's version: single steps, or a shared encoder, build one
    # graph over several calls; θ's gradient is then the sum of the calls' gradients
    encoder = DeltaEncoder(torch.tensor([0.1, 0.2]), requires_grad=True).double()
    first, second = _walk((6, 2, 2), seed=3), _walk((6, 2, 2), seed=4)
    parts = [
        torch.autograd.grad(_weighted_sum(encoder(x)), encoder.threshold)[0]
        for x in (first, second)
    ]
    both = _weighted_sum(encoder(first)) + _weighted_sum(encoder(second))
    (grad,) = torch.autograd.grad(both, encoder.threshold)
    torch.testing.assert_close(grad, parts[0] + parts[1], atol=1e-12, rtol=0)
    stepped = DeltaEncoder(0.1, requires_grad=True, step_mode="s").double()
    with F.streaming(stepped):
        total = sum(_weighted_sum(stepped(x_t)) for x_t in first)
    (grad,) = torch.autograd.grad(total, stepped.threshold)
    assert grad.shape == () and grad != 0


@pytest.mark.parametrize("requires_grad", [False, True])
def test_threshold_that_does_not_fit_the_input_is_named(requires_grad):
    encoder = DeltaEncoder(torch.full((3,), 0.1), requires_grad=requires_grad)
    with pytest.raises(ShapeError, match=r"threshold of shape \(3,\).*\(2, 5\)"):
        encoder(torch.zeros(4, 2, 5))
    deeper = DeltaEncoder(torch.full((2, 1, 1), 0.1), requires_grad=requires_grad)
    with pytest.raises(ShapeError, match=r"threshold of shape \(2, 1, 1\)"):
        deeper(torch.zeros(4, 2, 5))  # would broadcast, but to a larger step
    assert encoder(torch.zeros(4, 2, 3)).shape == (4, 2, 3)
