"""Lava-DL's cumulative-error delta encoder (``DeltaEncoder(cum_error=True)``,
``delta_encode_cumulative``): a hand-worked case, a transcription of Lava-DL's
``_DeltaUnit`` loop (``slayer/axon/delta.py``, ``cum_error=True``), streaming, gradients."""

from __future__ import annotations

import pytest
import torch

from spikeflow import functional
from spikeflow.errors import ConfigurationError
from spikeflow.layers import DeltaEncoder, delta_encode
from spikeflow.layers.sigma_delta import delta_encode_cumulative

f64 = torch.float64


def _lava_cum_error(x: torch.Tensor, threshold: torch.Tensor | float):
    """_DeltaUnit.forward with cum_error=True, transcribed time-major (time first)."""
    pre_state = torch.zeros_like(x[0])
    residual_state = torch.zeros_like(x[0])
    error = torch.zeros_like(x[0])
    output = torch.zeros_like(x)
    for t in range(x.shape[0]):
        delta = x[t] - pre_state + residual_state
        error += delta
        output[t] = torch.where(torch.abs(error) > threshold, delta, 0 * delta)
        error *= 1 - (torch.abs(output[t]) > 0).to(x.dtype)
        residual_state = delta - output[t]
        pre_state = x[t]
    return output, error


def test_hand_worked_held_change_is_sent_once_its_sum_reaches_theta() -> None:
    # a step of 0.375 under θ = 1: the plain encoder never sends it; with cum_error the
    # error runs 0.375, 0.75, 1.125 -> sent at the third step, then nothing changes
    x = torch.full((5, 1), 0.375, dtype=f64)
    s, ref, err = delta_encode_cumulative(x, 1.0)
    assert s[:, 0].tolist() == [0.0, 0.0, 0.375, 0.0, 0.0]
    assert float(ref) == 0.375 and float(err) == 0.0
    assert delta_encode(x, 1.0)[0].abs().sum() == 0
    # a change reaching θ at once is sent at once, as without cum_error
    y = torch.tensor([[1.5], [1.5], [1.25]], dtype=f64)
    s, _, err = delta_encode_cumulative(y, 1.0)
    assert s[:, 0].tolist() == [1.5, 0.0, 0.0] and float(err) == -0.25
    # an error equal to θ is sent (|e| >= θ, as the plain encoder's |d| >= θ; Lava-DL: >)
    s = delta_encode_cumulative(torch.full((3, 1), 0.5, dtype=f64), 1.0)[0]
    assert s[:, 0].tolist() == [0.0, 0.5, 0.0]
    # θ = 0 sends every change, and no error is left over
    s, _, err = delta_encode_cumulative(y, 0.0, error=torch.ones(1, dtype=f64))
    assert s[:, 0].tolist() == [1.5, 0.0, -0.25] and float(err) == 0.0


@pytest.mark.parametrize("per_channel", [False, True])
def test_equals_lava_transcription(per_channel: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, 4, 5, generator=gen, dtype=f64).mul(0.1).cumsum(0)
    theta = torch.tensor([0.05, 0.2, 0.4, 0.1], dtype=f64).view(4, 1) if per_channel else 0.15
    ours, _, err = delta_encode_cumulative(x, theta)
    lava, lava_err = _lava_cum_error(x, theta)
    torch.testing.assert_close(ours, lava, rtol=0, atol=1e-12)
    torch.testing.assert_close(err, lava_err, rtol=0, atol=1e-12)
    assert not torch.equal(ours, delta_encode(x, theta)[0])  # the option changes things


def test_module_streams_and_keeps_no_state() -> None:
    x = torch.randn(12, 2, 6, generator=torch.Generator().manual_seed(1), dtype=f64).cumsum(0)
    encoder = DeltaEncoder(0.3, cum_error=True)
    whole = encoder(x)
    torch.testing.assert_close(whole, delta_encode_cumulative(x, 0.3)[0], rtol=0, atol=0)
    with functional.streaming(encoder):
        chunks = torch.cat([encoder(x[:5]), encoder(x[5:6]), encoder(x[6:])])
    torch.testing.assert_close(chunks, whole, rtol=0, atol=0)
    assert torch.equal(encoder(x), whole) and encoder.state is None
    assert "cum_error=True" in repr(encoder)
    with pytest.raises(ConfigurationError, match="cum_error must be a bool"):
        DeltaEncoder(0.1, cum_error=1)  # type: ignore[arg-type]


def test_gradient_is_the_plain_encoders_straight_through() -> None:
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(2), dtype=f64)
    x.requires_grad_(True)
    w = torch.randn(7, 3, generator=torch.Generator().manual_seed(3), dtype=f64)
    (delta_encode_cumulative(x, 0.5)[0] * w).sum().backward()
    grad = x.grad.clone()
    x.grad = None
    (delta_encode(x, 0.5)[0] * w).sum().backward()
    torch.testing.assert_close(grad, x.grad)
    # by hand: ds[t]/da[t] = 1, ds[t+1]/da[t] = -1
    torch.testing.assert_close(grad, w - torch.cat((w[1:], torch.zeros_like(w[:1]))))
