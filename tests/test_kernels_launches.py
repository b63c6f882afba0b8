"""What the Triton backward is handed: a gradient that is one value for every step and
neuron (``spikes.sum()``'s, an absent recorded membrane's) goes to the kernel as that one
element, with no ``[N]`` copy before it (one GPU launch fewer per backward), and the
gradients still equal the reference loop's. Run through Triton's interpreter in CI."""

from __future__ import annotations

import pytest
import torch

from conftest import kernel_device
from spikeflow.kernels import triton_backend
from spikeflow.neurons import LIFNode, ParametricLIFNode

pytestmark = pytest.mark.skipif(
    not triton_backend.triton_available(), reason="triton (the 'triton' extra) is not installed"
)


@pytest.fixture
def handed(monkeypatch):
    """The (buffers, steps) of every Triton backward call."""
    calls: list[tuple[list, tuple]] = []
    original = triton_backend._TritonKernels.backward

    def spy(self, T, n, buffers, scalars, steps):
        calls.append(([None if b is None else b.numel() for b in buffers], steps))
        return original(self, T, n, buffers, scalars, steps)

    monkeypatch.setattr(triton_backend._TritonKernels, "backward", spy)
    return calls


_LOSSES = {
    "sum": lambda s, v, w: s.sum(),
    "sum over time": lambda s, v, w: (s.sum(0) * w).sum(),
    "weighted": lambda s, v, w: (s * w).sum(),
    "membrane only": lambda s, v, w: v.sum() * 0.5,
    "spikes and membrane": lambda s, v, w: s.sum() + (v * w).sum(),
}


def _pair(make):
    ref, fused = make("torch"), make("triton")
    fused.load_state_dict(ref.state_dict())
    return ref, fused


@pytest.mark.parametrize("loss", _LOSSES)
def test_one_value_gradients_reach_the_triton_kernel_as_one_element(handed, loss):
    device = kernel_device("triton")
    x = (torch.rand(5, 3, 17, dtype=torch.float64) * 2).to(device)
    ref, fused = _pair(lambda b: ParametricLIFNode(backend=b, store_v_seq=True).double())
    fused.to(device), ref.to(device)
    w = torch.rand(3, 17, dtype=torch.float64, device=device)
    grads = []
    for node in (ref, fused):
        xi = x.clone().requires_grad_()
        s = node(xi)
        value = _LOSSES[loss](s, node.v_seq, w)
        grads.append(torch.autograd.grad(value, [xi, *node.parameters()]))
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    (sizes, steps), n = handed[-1], 3 * 17
    # the spike gradient's step, then the recorded membrane's: -1 one element, 0 a row
    expected = {"sum": (-1, -1), "sum over time": (0, -1), "weighted": (n, -1),
                "membrane only": (-1, -1), "spikes and membrane": (-1, n)}[loss]  # fmt: skip
    assert steps == expected
    assert sizes.count(1) >= sum(step == -1 for step in steps)


def test_a_plain_sum_triton_backward_copies_no_gradient_row(handed):
    x = (torch.rand(4, 64) * 2).to(kernel_device("triton")).requires_grad_()
    ref, fused = _pair(lambda b: LIFNode(tau=2.0, backend=b))
    fused(x).sum().backward()
    g = x.grad.clone()
    x.grad = None
    ref(x).sum().backward()
    torch.testing.assert_close(g, x.grad)
    sizes, steps = handed[-1]
    assert steps[0] == -1 and 1 in sizes  # was a [64] copy of the broadcast 1
