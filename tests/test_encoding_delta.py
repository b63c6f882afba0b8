"""Delta modulation (spikeflow.encoding.delta_modulation / DeltaModulationEncoder):
snnTorch's spikegen.delta, hand-worked trains, streaming, errors."""

from __future__ import annotations

import pytest
import torch

from spikeflow.encoding import DeltaModulationEncoder, delta_modulation
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.functional import set_step_mode, streaming

FLAGS = [(False, False), (False, True), (True, False), (True, True)]


def random_walk(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A sensor-like signal ``[T, ...]``: steps of a few tenths, some above θ = 0.1."""
    g = torch.Generator().manual_seed(seed)
    return (0.12 * torch.randn(*shape, generator=g, dtype=dtype)).cumsum(0)


# --------------------------------------------------------------------------- peer


@pytest.mark.parametrize(("padding", "off_spike"), FLAGS)
@pytest.mark.parametrize("threshold", [0.1, 0.25])
def test_equals_snntorch_delta(padding, off_spike, threshold):
    spikegen = pytest.importorskip("snntorch.spikegen", reason="snnTorch is not installed")
    x = random_walk(80, 4, 3, 5)
    want = spikegen.delta(x, threshold=threshold, padding=padding, off_spike=off_spike)
    got = delta_modulation(x, threshold, padding=padding, off_spike=off_spike)
    assert want.abs().sum() > 100  # the comparison sees many spikes
    if off_spike:
        assert (want == -1).sum() > 50
    assert torch.equal(got, want)
    enc = DeltaModulationEncoder(threshold, padding=padding, off_spike=off_spike)
    assert torch.equal(enc(x), want)


def test_equals_snntorch_with_a_per_channel_threshold_and_1d_signal():
    spikegen = pytest.importorskip("snntorch.spikegen", reason="snnTorch is not installed")
    x = random_walk(60, 2, 3, 4, 4, dtype=torch.float32)
    theta = torch.tensor([0.05, 0.1, 0.2]).view(3, 1, 1)
    want = spikegen.delta(x, threshold=theta, off_spike=True)
    assert torch.equal(delta_modulation(x, theta, off_spike=True), want)
    assert torch.equal(DeltaModulationEncoder(theta, off_spike=True)(x), want)
    signal = random_walk(100, seed=3)  # one channel, [T]
    for padding in (False, True):
        want = spikegen.delta(signal, threshold=0.1, padding=padding)
        assert torch.equal(delta_modulation(signal, 0.1, padding=padding), want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_float32_threshold_on_half_precision_signals_equals_snntorch(dtype):
    # θ = 0.1 is compared in float32 (type promotion), as snnTorch does: rounding it to
    # float16 (0.09998) made a change of 0.09998 spike.
    spikegen = pytest.importorskip("snntorch.spikegen", reason="snnTorch is not installed")
    x = random_walk(60, 2, 3, 4, dtype=torch.float32).to(dtype)
    edge = torch.tensor(0.1).to(dtype).float()  # θ in the signal's precision
    x[:, :, 0, 0] = (torch.arange(60).to(dtype) * edge.to(dtype))[:, None]  # changes ≈ θ
    theta = torch.tensor([0.1, 0.2, 0.05]).view(3, 1)
    for padding, off_spike in FLAGS:
        want = spikegen.delta(x, threshold=theta, padding=padding, off_spike=off_spike)
        got = delta_modulation(x, theta, padding=padding, off_spike=off_spike)
        assert got.dtype == dtype and torch.equal(got, want.to(dtype))
        enc = DeltaModulationEncoder(theta, padding=padding, off_spike=off_spike)
        assert torch.equal(enc(x), want.to(dtype))
    change = x[1:, :, 0, 0].float() - x[:-1, :, 0, 0].float()
    assert (change == edge).any()  # the rounded threshold's value is among the changes


# --------------------------------------------------------------------------- hand-worked


def test_hand_worked_trains():
    # Changes from 0: [0.5, 0, 0.75, -0.5, -0.75, 0.25]; θ = 0.5 (a change of exactly
    # θ spikes: >=). With padding the first change is x[0] - x[0] = 0.
    x = torch.tensor([0.5, 0.5, 1.25, 0.75, 0.0, 0.25])
    assert delta_modulation(x, 0.5).tolist() == [1, 0, 1, 0, 0, 0]
    assert delta_modulation(x, 0.5, off_spike=True).tolist() == [1, 0, 1, -1, -1, 0]
    assert delta_modulation(x, 0.5, padding=True, off_spike=True).tolist() == [0, 0, 1, -1, -1, 0]
    assert delta_modulation(x, 0.75, off_spike=True).tolist() == [0, 0, 1, 0, -1, 0]


def test_slow_drift_never_spikes_and_a_jump_does():
    # +0.05 per step, below θ = 0.1: only the change counts, not the accumulated one.
    x = torch.linspace(0.0, 5.0, 101, dtype=torch.float64)[:, None].repeat(1, 3)
    assert delta_modulation(x, 0.1, padding=True).sum() == 0
    x[50:] += 1.0
    s = delta_modulation(x, 0.1, padding=True, off_spike=True)
    assert s.nonzero()[:, 0].unique().tolist() == [50]


def test_dtype_device_and_no_gradient():
    x = random_walk(20, 3, dtype=torch.float32).requires_grad_()
    s = DeltaModulationEncoder(0.1, off_spike=True)(x)
    assert s.dtype == torch.float32 and not s.requires_grad
    h = delta_modulation(x.detach().to(torch.bfloat16), 0.125)
    assert h.dtype == torch.bfloat16
    assert delta_modulation(torch.zeros(0, 3), 0.1).shape == (0, 3)


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(("padding", "off_spike"), FLAGS)
def test_single_step_and_chunks_equal_one_multi_step_call(padding, off_spike):
    x = random_walk(40, 2, 5, seed=4)
    enc = DeltaModulationEncoder(0.1, padding=padding, off_spike=off_spike)
    whole = enc(x)
    with streaming(enc):
        chunks = torch.cat([enc(x[:7]), enc(x[7:8]), enc(x[8:30]), enc(x[30:])])
        enc.reset()  # a new sequence: the first step compares with 0 / itself again
        again = enc(x[:5])
    assert torch.equal(chunks, whole)
    assert torch.equal(again, whole[:5])
    set_step_mode(enc, "s")
    with streaming(enc):
        steps = torch.stack([enc(x_t) for x_t in x])
    assert torch.equal(steps, whole)


def test_streaming_into_a_reused_buffer_keeps_the_previous_step():
    """A sensor loop that writes each frame (or chunk) into one preallocated buffer: the
    carried previous step must be a copy, not a view of the caller's tensor (a view
    would be overwritten by the next frame, which then never spikes)."""
    x = random_walk(12, 2, 5, seed=5)
    whole = DeltaModulationEncoder(0.1, off_spike=True)(x)
    assert whole.abs().sum() > 10
    enc = DeltaModulationEncoder(0.1, off_spike=True, step_mode="s")
    frame = torch.empty_like(x[0])
    with streaming(enc):
        steps = []
        for x_t in x:
            frame.copy_(x_t)
            steps.append(enc(frame))
    assert torch.equal(torch.stack(steps), whole)
    enc = DeltaModulationEncoder(0.1, off_spike=True)
    chunk = torch.empty_like(x[:3])
    with streaming(enc):
        chunks = []
        for start in range(0, 12, 3):
            chunk.copy_(x[start : start + 3])
            chunks.append(enc(chunk))
    assert torch.equal(torch.cat(chunks), whole)


def test_streaming_state_and_errors():
    x = random_walk(10, 2, 5)
    enc = DeltaModulationEncoder(0.1, step_mode="s")
    with pytest.raises(StateError, match="streaming"):
        enc(x[0])
    with streaming(enc):
        enc(x[0])
        assert torch.equal(enc.state["last"], x[0])
        with pytest.raises(StateError, match="reset_net"):
            enc(x[0, :1])  # another batch


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "threshold", [0.0, -0.1, float("nan"), float("inf"), True, "0.1", torch.tensor([0.1, 0.0])]
)
def test_bad_threshold(threshold):
    with pytest.raises(ConfigurationError, match="threshold"):
        DeltaModulationEncoder(threshold)
    with pytest.raises(ConfigurationError, match="threshold"):
        delta_modulation(torch.zeros(3, 2), threshold)


def test_bad_inputs_and_flags():
    with pytest.raises(ConfigurationError, match=r"threshold.*floating"):
        DeltaModulationEncoder(torch.tensor([1, 2]))
    with pytest.raises(DTypeError, match="floating"):
        delta_modulation(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ShapeError, match="time dimension"):
        DeltaModulationEncoder()(torch.tensor(1.0))
    with pytest.raises(ConfigurationError, match="NaN"):
        delta_modulation(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ShapeError, match=r"\(3,\).*\(4,\)"):
        DeltaModulationEncoder(torch.full((3,), 0.1))(torch.zeros(5, 4))
    with pytest.raises(ConfigurationError, match="padding"):
        DeltaModulationEncoder(padding="yes")
    with pytest.raises(ConfigurationError, match="off_spike"):
        delta_modulation(torch.zeros(3), off_spike=1)
