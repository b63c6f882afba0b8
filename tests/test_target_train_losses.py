"""The "timing" and "kernel" losses (Zhu et al., NeurIPS 2023) against loops written
from the authors' code (``layers/losses.py`` and the targets of ``main.py`` of
SNN-temporal-training-losses), in float64, and ``gradcheck`` for "kernel"."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.losses import (
    desired_spike_train,
    get_loss,
    loss_readout,
    spike_kernel_loss,
    spike_timing_loss,
)


def _spikes(steps: int, batch: int, classes: int, p: float = 0.4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, classes, generator=g) < p).double()


def _authors_targets(steps: int, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """``main.get_loss``'s targets ``[T, B, K]``, written as loops."""
    if steps >= 20:
        train = [0.0, 1.0] * (steps // 2)
        if steps % 2 == 1:
            train = [0.0, *train]
    else:
        train = [0.0] + [1.0] * (steps - 1)
    targets = torch.zeros(steps, len(labels), classes, dtype=torch.float64)
    for b, label in enumerate(labels.tolist()):
        targets[:, b, label] = torch.tensor(train, dtype=torch.float64)
    return targets


@pytest.mark.parametrize("steps", [1, 5, 19, 20, 21, 30])
def test_the_target_trains_are_the_authors(steps):
    labels = torch.tensor([2, 0])
    want = _authors_targets(steps, labels, 3)
    torch.testing.assert_close(desired_spike_train(steps, torch.float64), want[:, 0, 2])


def _timing_by_loops(out: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The authors' ``loss_spike_timing``: per neuron the j-th output spike time (1-based,
    ``T + 1`` past the last) against the j-th target's, ``δ = (t - t* + 0.5) / T``, the
    label neuron's negative δ zeroed, the others' positive ones zeroed and negative ones
    ``-1/sqrt(K)``; value ``1/2 Σ δ²``, the j-th spike's time gradient δ. Here divided by
    B (a batch mean) and as presence gradients (minus the time gradients)."""
    steps, batch, classes = out.shape
    targets = _authors_targets(steps, labels, classes)
    value, grad = 0.0, torch.zeros_like(out)
    for b in range(batch):
        for k in range(classes):
            fired = [t for t in range(steps) if out[t, b, k] == 1]
            wanted = [t for t in range(steps) if targets[t, b, k] == 1]
            for j in range(steps):
                t_out = fired[j] + 1 if j < len(fired) else steps + 1
                t_tar = wanted[j] + 1 if j < len(wanted) else steps + 1
                delta = (t_out - t_tar + 0.5) / steps
                if k == labels[b]:
                    delta = max(delta, 0.0)
                else:
                    delta = -1.0 / math.sqrt(classes) if delta < 0 else 0.0
                value += 0.5 * delta**2
                if j < len(fired):
                    grad[fired[j], b, k] = -delta / batch
    return value / batch, grad


@pytest.mark.parametrize(("steps", "p"), [(5, 0.4), (8, 0.2), (24, 0.5)])
def test_timing_equals_the_authors_by_loops(steps, p):
    out = _spikes(steps, 6, 4, p=p, seed=steps).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    value = spike_timing_loss(out, labels)
    (value * 3.0).backward()  # the incoming gradient multiplies
    want_value, want_grad = _timing_by_loops(out.detach(), labels)
    assert value.item() == pytest.approx(want_value, rel=1e-12)
    torch.testing.assert_close(out.grad, 3.0 * want_grad)
    assert (out.grad[out.detach() == 0] == 0).all()  # spikes only
    assert (out.grad < 0).any() and (out.grad > 0).any()


def test_timing_moves_label_spikes_earlier_and_others_later():
    """A late label spike gets a negative presence gradient (a positive time gradient:
    earlier), a spike of another class a positive one (later); a label spike on its
    target still gets ``-1/(2T)/B``, as the authors'."""
    out = torch.zeros(5, 1, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        out[1, 0, 0] = 1.0  # on the first target step (t* = 2)
        out[4, 0, 0] = 1.0  # second spike at t = 5 against t* = 3: late
        out[2, 0, 1] = 1.0  # another class
    spike_timing_loss(out, torch.tensor([0])).backward()
    assert out.grad[1, 0, 0] == pytest.approx(-0.5 / 5)
    assert out.grad[4, 0, 0] == pytest.approx(-(5 - 3 + 0.5) / 5)
    assert out.grad[2, 0, 1] == pytest.approx(1 / math.sqrt(3))


def _kernel_by_loops(out: torch.Tensor, labels: torch.Tensor, tau_s: float) -> torch.Tensor:
    """The authors' ``spike_kernel``: ``1/2 Σ psp(O - Y)²``, ``psp`` by its recursion,
    over the batch's B samples (here their mean)."""
    steps, batch, classes = out.shape
    diff = out - _authors_targets(steps, labels, classes)
    total = out.new_zeros(())
    for b in range(batch):
        for k in range(classes):
            syn = out.new_zeros(())
            for t in range(steps):
                syn = syn * (1 - 1 / tau_s) + diff[t, b, k]
                total = total + 0.5 * (syn / tau_s) ** 2
    return total / batch


@pytest.mark.parametrize(("steps", "tau_s"), [(5, 3.0), (22, 4.0), (3, 1.0)])
def test_kernel_equals_the_authors_by_loops(steps, tau_s):
    labels = torch.tensor([1, 0, 2])
    out = _spikes(steps, 3, 3, seed=1).requires_grad_(True)
    value = spike_kernel_loss(out, labels, tau_s=tau_s)
    value.backward()
    ref = out.detach().clone().requires_grad_(True)
    want = _kernel_by_loops(ref, labels, tau_s)
    want.backward()
    assert value.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(out.grad, ref.grad)
    assert out.grad.abs().sum() > 0


def test_kernel_gradcheck():
    labels = torch.tensor([1, 0])
    out = torch.rand(6, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda o: spike_kernel_loss(o, labels, tau_s=2.5), (out,))


def test_registry_names_readouts_and_errors():
    assert loss_readout("timing") == loss_readout("kernel") == "count"
    out, labels = _spikes(5, 2, 3), torch.tensor([0, 2])
    assert get_loss("kernel", tau_s=4.0)(out, labels) == spike_kernel_loss(out, labels, 4.0)
    assert get_loss("timing")(out, labels) == spike_timing_loss(out, labels)
    with pytest.raises(ConfigurationError, match="tau_s must be >= 1"):
        get_loss("kernel", tau_s=0.5)
    with pytest.raises(ConfigurationError, match="takes no argument"):
        get_loss("timing", tau_s=3.0)
    with pytest.raises(ConfigurationError, match="out_seq must be spikes"):
        spike_timing_loss(out * 0.5, labels)
    with pytest.raises(DTypeError, match="target must be integer class labels"):
        spike_kernel_loss(out, torch.rand(2, 3))


@pytest.mark.parametrize("name", ["timing", "kernel"])
def test_truncated_bptt_refuses_them(name):
    """A window holds part of the target train: both need all T steps."""
    from spikeflow.training.tbptt import check_window_loss

    with pytest.raises(ConfigurationError, match=f"loss '{name}' needs the target spike train"):
        check_window_loss(name)
    with pytest.raises(ConfigurationError, match="needs the target spike train"):
        check_window_loss(get_loss(name))


def test_timing_constants_keep_float64():
    """A spike of another class gets exactly ``1/sqrt(K) / B`` in float64 (K = 3: not a
    float32 number), and the value is the loops' to the last bits."""
    out = _spikes(7, 2, 3, p=0.5, seed=4).requires_grad_(True)
    labels = torch.tensor([2, 0])
    value = spike_timing_loss(out, labels)
    value.backward()
    want_value, want_grad = _timing_by_loops(out.detach(), labels)
    assert value.item() == pytest.approx(want_value, rel=1e-15)
    torch.testing.assert_close(out.grad, want_grad, rtol=1e-15, atol=0.0)
    assert (out.grad == 1.0 / math.sqrt(3) / 2).any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_outputs_are_computed_in_float32(dtype):
    """Autocast's half-precision spikes: both losses as on float32 spikes, a float32
    value, gradients in the outputs' dtype. At T = 300, B = 64, K = 10 the kernel loss's
    sum (~1e5) overflows float16, and bfloat16 cannot hold the timing loss's t + 1/2."""
    g = torch.Generator().manual_seed(3)
    spikes = (torch.rand(300, 64, 10, generator=g) < 0.5).float()
    labels = torch.randint(0, 10, (64,), generator=g)
    for loss in (spike_timing_loss, spike_kernel_loss):
        full = spikes.clone().requires_grad_(True)
        half = spikes.to(dtype).requires_grad_(True)
        want, got = loss(full, labels), loss(half, labels)
        assert got.dtype == torch.float32 and math.isfinite(got.item())
        assert got.item() == pytest.approx(want.item(), rel=1e-6)
        (2.0 * want).backward()
        (2.0 * got).backward()
        assert half.grad.dtype == dtype
        torch.testing.assert_close(half.grad.float(), full.grad.to(dtype).float())


class _StraightThrough(torch.autograd.Function):
    """Heaviside spikes in the drive's dtype, the gradient passed straight through."""

    @staticmethod
    def forward(ctx, drive):  # type: ignore[override]
        return (drive > 0).to(drive.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad


def test_under_cpu_autocast():
    """Spikes from a layer run under ``torch.autocast`` (bfloat16) train through both."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(16, 4, generator=g, requires_grad=True)
    inputs = torch.rand(25, 3, 16, generator=g)
    labels = torch.tensor([0, 3, 1])
    for loss in (spike_timing_loss, spike_kernel_loss):
        weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            drive = inputs @ weight
            spikes = _StraightThrough.apply(drive)
            assert spikes.dtype == torch.bfloat16
            value = loss(spikes, labels)
        value.backward()
        assert value.dtype == torch.float32 and weight.grad.abs().sum() > 0
