"""Review of the event-driven neuron's public passes and the calibration: layouts and
bad inputs that the fused kernels read as raw [T, n] memory."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spikeflow.errors import DTypeError, ShapeError
from spikeflow.event_driven import (
    EventDrivenLinear,
    EventDrivenNeuron,
    calibrate_event_driven,
    spike_backward,
    spike_forward,
)


def _backends() -> list[str]:
    from spikeflow.kernels.cpu import CompilerNotFoundError, compiler
    from spikeflow.kernels.triton_backend import interpreting, triton_available

    found = ["torch"]
    try:
        compiler()
        found.append("c")
    except CompilerNotFoundError:
        pass
    if triton_available() and (interpreting() or torch.cuda.is_available()):
        found.append("triton")
    return found


def _device(backend: str) -> torch.device:
    if backend == "triton" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@pytest.mark.parametrize("backend", _backends())
def test_spike_backward_of_permuted_tensors_is_the_loops(backend: str) -> None:
    """The fused kernels write [T, n] rows: outputs allocated like a permuted ``spikes``
    were filled in the wrong order (the C and Triton results differed from the loop)."""
    neuron = EventDrivenNeuron(backend=backend)
    device = _device(backend)
    torch.manual_seed(0)
    current = torch.rand(8, 5, 7, dtype=torch.float64).to(device)
    spikes, rise, slope = spike_forward(current, neuron)
    assert 0 < float(spikes.mean()) < 0.6
    grad_time = torch.randn(current.shape, dtype=torch.float64).to(device) * spikes
    want = spike_backward(grad_time, spikes, rise, slope, neuron)
    permuted = [t.transpose(1, 2) for t in (grad_time, spikes, rise, slope)]
    got = spike_backward(*permuted, neuron)
    for a, b in zip(got, want):
        assert torch.equal(a, b.transpose(1, 2))


@pytest.mark.parametrize("backend", _backends())
def test_spike_backward_refuses_tensors_that_do_not_match_the_spikes(backend: str) -> None:
    """A float32 gradient for float64 spikes (or a shorter one) was read by the C kernel
    as raw memory: wrong values, or a read past its end, and no error."""
    neuron = EventDrivenNeuron(backend=backend)
    device = _device(backend)
    current = torch.rand(6, 40, dtype=torch.float64).to(device)
    spikes, rise, slope = spike_forward(current, neuron)
    grad_time = torch.ones_like(spikes)
    with pytest.raises(DTypeError, match=r"grad_time.*float32.*float64"):
        spike_backward(grad_time.float(), spikes, rise, slope, neuron)
    with pytest.raises(ShapeError, match=r"grad_time.*\(6, 40\), got \(3, 40\)"):
        spike_backward(grad_time[:3], spikes, rise, slope, neuron)
    with pytest.raises(ShapeError, match=r"slope.*\(6, 39\)"):
        spike_backward(grad_time, spikes, rise, slope[:, 1:], neuron)


@pytest.mark.parametrize("backend", _backends())
def test_spike_forward_names_inputs_it_cannot_run(backend: str) -> None:
    """No time steps ran on the C kernel (empty outputs) but failed in the loop with an
    IndexError; a 0-dim or integer current failed inside the loop."""
    neuron = EventDrivenNeuron(backend="auto" if backend == "triton" else backend)
    with pytest.raises(ShapeError, match="no time steps"):
        spike_forward(torch.zeros(0, 3), neuron)
    with pytest.raises(ShapeError, match=r"\[T, \.\.\.\]"):
        spike_forward(torch.zeros(()), neuron)
    with pytest.raises(DTypeError, match=r"floating point.*torch\.int64"):
        spike_forward(torch.ones(4, 3, dtype=torch.long), neuron)
    spikes = torch.zeros(0, 3)
    with pytest.raises(ShapeError, match="no time steps"):
        spike_backward(spikes, spikes, spikes, spikes, neuron)


def test_calibration_on_an_empty_batch_is_named() -> None:
    """A batch of 0 samples divided by zero (ZeroDivisionError) in the bisection."""
    layer = EventDrivenLinear(4, 3)
    with pytest.raises(ShapeError, match="no samples"):
        calibrate_event_driven(torch.nn.Sequential(layer), torch.zeros(5, 0, 4))
    assert torch.equal(layer.gain, torch.ones(3))  # untouched


def test_the_loop_and_the_kernels_agree_on_permuted_gradients_in_a_layer() -> None:
    """The layer's own backward (the path training takes) with a permuted upstream
    gradient: every backend gives the loop's gradients."""
    grads = {}
    for backend in _backends():
        torch.manual_seed(3)
        device = _device(backend)
        neuron = dataclasses.replace(EventDrivenNeuron(), backend=backend)
        layer = EventDrivenLinear(12, 6, neuron=neuron).double().to(device)
        with torch.no_grad():
            layer.gain.fill_(2.0)
        x = (torch.rand(7, 3, 12, dtype=torch.float64) < 0.4).double().to(device)
        x.requires_grad_()
        out = layer(x)
        upstream = torch.randn(6, 3, 7, dtype=torch.float64).to(device).permute(2, 1, 0)
        out.backward(upstream)
        grads[backend] = (out.cpu(), x.grad.cpu(), layer.weight.grad.cpu())
    for backend, found in grads.items():
        for a, b in zip(found, grads["torch"]):
            assert torch.equal(a, b), backend


def test_a_layer_called_twice_is_calibrated_once() -> None:
    """A shared layer's hook ran at each call: its gain was scaled twice (the second
    search on top of the first), though the returned scale was only the second."""
    torch.manual_seed(5)
    x = (torch.rand(12, 4, 6) < 0.3).float()
    alone = EventDrivenLinear(6, 6)
    shared = EventDrivenLinear(6, 6)
    shared.load_state_dict(alone.state_dict())
    expected = calibrate_event_driven(torch.nn.Sequential(alone), x, 1.0)["0"]
    scales = calibrate_event_driven(torch.nn.Sequential(shared, shared), x, 1.0)
    assert scales == {"0": expected}
    torch.testing.assert_close(shared.gain, alone.gain, rtol=0, atol=0)
    assert expected != pytest.approx(1.0, rel=0.05)  # the search did move the gain


def test_the_teacher_spike_is_for_training_only() -> None:
    """EventDrivenLinear(x, target) added the teacher spike in eval mode too (the net
    passes the target in training only): evaluation saw the labels."""
    torch.manual_seed(6)
    layer = EventDrivenLinear(20, 4)
    with torch.no_grad():
        layer.gain.fill_(0.05)  # nearly silent: the label neurons get teacher spikes
    x = (torch.rand(10, 3, 20) < 0.3).float()
    target = torch.tensor([0, 2, 3])
    taught = layer(x, target)
    assert not torch.equal(taught, layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x, target), layer(x), rtol=0, atol=0)
    with pytest.raises(ShapeError, match="class labels must have shape"):
        layer(x, target[:2])  # still checked
