"""output_coding.spikes_to_times / SpikesToTimesDecoder against Norse 1.1's
``SpikesToTimesDecoder`` (times and gradients) and against a hand-derived reference
(float64, and the cases where Norse's backward fails: a neuron with too few spikes,
float64 input). The Norse test skips without Norse."""

from __future__ import annotations

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.output_coding import SpikesToTimesDecoder, spikes_to_times


def _reference(spikes: torch.Tensor, count: int, dt: float):
    """Times and the Jacobian's nonzeros by a plain loop: (times, [(k, t, b, n)])."""
    steps, batch, n = spikes.shape
    times = torch.full((min(count, steps), batch, n), float("inf"), dtype=spikes.dtype)
    read = []
    for b in range(batch):
        for j in range(n):
            fired = [t for t in range(steps) if spikes[t, b, j] != 0][:count]
            for k, t in enumerate(fired):
                times[k, b, j] = t * dt
                read.append((k, t, b, j))
    return times, read


@pytest.mark.parametrize("count", [1, 3, 9])
def test_times_and_gradients_by_hand(count):
    torch.manual_seed(0)
    spikes = (torch.rand(7, 3, 4, dtype=torch.float64) < 0.35).double()
    spikes[:, 0, 0] = 0.0  # a silent neuron: inf everywhere, no gradient
    dt = 0.25
    want, read = _reference(spikes, count, dt)
    x = spikes.clone().requires_grad_()
    got = spikes_to_times(x, count, dt)
    assert torch.equal(got, want)
    g = torch.randn_like(got)
    (grad,) = torch.autograd.grad(got.where(got.isfinite(), 0.0).mul(g).sum(), x)
    expected = torch.zeros_like(spikes)
    for k, t, b, j in read:
        expected[t, b, j] = -dt * g[k, b, j]
    assert torch.equal(grad, expected)
    assert len(read) > 0 and got.isinf().any()


def test_equals_norse_decoder():
    pytest.importorskip("norse.torch", reason="Norse is not installed")
    from norse.torch import SpikesToTimesDecoder as NorseDecoder

    torch.manual_seed(1)
    # Norse's backward needs every neuron to fire spike_count times and float32
    spikes = (torch.rand(12, 3, 5) < 0.5).float()
    spikes[:3] = 1.0
    for count, convert in ((1, True), (3, True), (2, False)):
        theirs = NorseDecoder(torch.as_tensor(count), convert, dt=1e-3)
        ours = SpikesToTimesDecoder(count, convert, dt=1e-3)
        x_n, x_s = spikes.clone().requires_grad_(), spikes.clone().requires_grad_()
        want, got = theirs(x_n), ours(x_s)
        assert torch.equal(got, want)
        g = torch.randn_like(want)
        (gw,) = torch.autograd.grad((want * g).sum(), x_n)
        (gg,) = torch.autograd.grad((got * g).sum(), x_s)
        assert gw.abs().sum() > 0
        torch.testing.assert_close(gg, gw, rtol=0, atol=0)
    # spike_count beyond T: T rows, as Norse
    assert SpikesToTimesDecoder(20)(spikes).shape == NorseDecoder(torch.as_tensor(20))(spikes).shape


def test_bad_input_is_named():
    with pytest.raises(DTypeError, match="spikes"):
        spikes_to_times(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ShapeError, match="T >= 1"):
        spikes_to_times(torch.zeros(0, 2))
    with pytest.raises(ConfigurationError, match="spike_count"):
        spikes_to_times(torch.zeros(3, 2), 0)
    with pytest.raises(ConfigurationError, match="dt"):
        SpikesToTimesDecoder(dt=0.0)
    with pytest.raises(ConfigurationError, match="convert_indices_to_times"):
        SpikesToTimesDecoder(convert_indices_to_times="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_spikes_give_exact_step_indices(dtype):
    """bfloat16 holds whole numbers exactly only up to 256, float16 up to 2048: the
    times come back in float32, the step each spike was at (257 was read as 256)."""
    spikes = torch.zeros(2100, 1, 3, dtype=dtype)
    spikes[257, 0, 0] = spikes[2049, 0, 1] = spikes[5, 0, 2] = spikes[2099, 0, 2] = 1
    x = spikes.clone().requires_grad_()
    got = spikes_to_times(x, 2)
    want = torch.tensor([[[257.0, 2049.0, 5.0]], [[float("inf"), float("inf"), 2099.0]]])
    assert got.dtype == torch.float32 and torch.equal(got, want)
    (grad,) = torch.autograd.grad(got.where(got.isfinite(), 0.0).sum(), x)
    assert grad.dtype == dtype
    read = torch.tensor([[5, 0, 2], [257, 0, 0], [2049, 0, 1], [2099, 0, 2]])
    assert torch.equal(grad.nonzero(), read)
    assert torch.equal(grad[grad != 0], torch.full((4,), -1.0, dtype=dtype))
    assert torch.equal(SpikesToTimesDecoder(2, dt=0.5)(spikes), want * 0.5)
