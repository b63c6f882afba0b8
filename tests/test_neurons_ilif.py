"""The integer LIF ``ILIFNode`` against SpikingJelly 2.0.

Hand-computed counts; the floor-based rounding of the kernels equal to ``torch.round``
(ties to even); counts, membranes and float64 gradients of the input equal to
SpikingJelly's ``ILIFNode`` on every backend (the reference loop, the C kernel, Triton),
``detach_reset`` both ways, the default and a narrower gradient window, multi-step and
single-step; gradcheck of the membrane chain on every backend (the counts' gradient is
a straight-through estimate, not a derivative: compared, not gradchecked); streaming;
the errors.
"""

from __future__ import annotations

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError
from spikeflow.neurons import ILIFNode
from spikeflow.neurons.ilif import _round_half_even
from streaming_checks import check_chunked_streaming

sj_neuron = pytest.importorskip(
    "spikingjelly.activation_based.neuron", reason="SpikingJelly is needed for the comparisons"
)
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

BACKENDS = fused_backends("torch")
F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)


def test_hand_computed():
    # tau 4/3 (the membrane keeps 1/4), θ 1, D 4. X = [2.6, 1.0, 9.0]:
    # H = 2.6 -> C = 3, V = -0.4; H = -0.1 + 1.0 = 0.9 -> C = 1, V = -0.1;
    # H = -0.025 + 9 = 8.975 -> C = 4 (clipped), V = 4.975.
    node = ILIFNode(store_v_seq=True)
    c = node(torch.tensor([2.6, 1.0, 9.0], dtype=F64).view(-1, 1))
    assert c.view(-1).tolist() == [3.0, 1.0, 4.0]
    torch.testing.assert_close(node.v_seq.view(-1), torch.tensor([-0.4, -0.1, 4.975], dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_rounding_is_torch_round(dtype):
    ties = torch.arange(0, 41, dtype=dtype) / 8  # .5 ties, both parities
    near = torch.tensor([0.49999997, 1.4999999, 2.5000002, 0.50000006, 3.4999998], dtype=dtype)
    c = torch.cat([ties, near, torch.rand(2000, dtype=dtype) * 5])
    assert torch.equal(_round_half_even(c), torch.round(c))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grad_window", [None, (0.5, 3.0)])
def test_equal_to_spikingjelly(float64, backend, grad_window):
    device = kernel_device(backend)
    torch.manual_seed(2)
    x = (torch.randn(8, 3, 5) * 1.5 + 0.8).to(device)
    g, gv = torch.randn_like(x), torch.randn_like(x)
    for detach_reset in (False, True):
        ours = ILIFNode(4 / 3, 1.0, 4, grad_window, detach_reset, store_v_seq=True, backend=backend)
        count = sj_surrogate.MultiLevelSpikeCount(4, grad_window=grad_window)
        theirs = sj_neuron.ILIFNode(4 / 3, 1.0, count, detach_reset, "m", True)
        x1, x2 = x.clone().requires_grad_(), x.clone().cpu().requires_grad_()
        c1, c2 = ours(x1), theirs(x2)
        assert torch.equal(c1.cpu(), c2) and set(c1.unique().tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}
        torch.testing.assert_close(ours.v_seq.cpu(), theirs.v_seq, **TIGHT)
        (g1,) = torch.autograd.grad((c1 * g).sum() + (ours.v_seq * gv).sum(), x1)
        (g2,) = torch.autograd.grad((c2 * g.cpu()).sum() + (theirs.v_seq * gv.cpu()).sum(), x2)
        assert g1.abs().sum() > 0
        torch.testing.assert_close(g1.cpu(), g2, **TIGHT)


def test_single_step_equal_to_spikingjelly(float64):
    x = torch.randn(8, 3, 5) * 1.5 + 0.8
    ours = ILIFNode(tau=2.0, v_threshold=0.7, step_mode="s")
    theirs = sj_neuron.ILIFNode(tau=2.0, v_threshold=0.7, step_mode="s")
    with F.streaming(ours):
        mine = [(ours(x_t), ours.v) for x_t in x]
    sj = [(theirs(x_t), theirs.v) for x_t in x]
    for (c1, v1), (c2, v2) in zip(mine, sj):
        assert torch.equal(c1, c2)
        torch.testing.assert_close(v1, v2, **TIGHT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_membrane_chain(backend):
    """With the reset's count detached, the membranes after reset are a differentiable
    function of the input and the threshold wherever no count changes (the counts are
    locally constant): gradcheck of ``v_seq`` through the kernels' chain."""
    device = kernel_device(backend)
    torch.manual_seed(5)
    x = (torch.rand(4, 3, dtype=F64, device=device) * 3.0).requires_grad_()
    theta = torch.tensor(0.9, dtype=F64, device=device).requires_grad_()

    def membranes(x, theta, backend=backend):
        node = ILIFNode(v_threshold=theta.detach(), detach_reset=True, store_v_seq=True,
                        learnable_threshold=True, backend=backend).to(device)  # fmt: skip
        return torch.func.functional_call(node, {"v_threshold": theta}, (x,)), node.v_seq

    gradcheck_backend(backend, lambda x, t: membranes(x, t)[1], (x, theta),
                      lambda x, t: membranes(x, t, "torch")[1])  # fmt: skip


def test_streaming_and_no_state_leak():
    x = torch.randn(12, 2, 3, dtype=F64) * 2.0 + 1.0
    make = lambda: ILIFNode(v_threshold=torch.tensor(0.8, dtype=F64),  # noqa: E731
                            learnable_threshold=True)  # fmt: skip
    whole, _ = check_chunked_streaming(make, x, "v_threshold", (3, 4, 5))
    node = make()
    assert torch.equal(node(x), whole) and torch.equal(node(x), whole)
    with F.streaming(node):
        node(x[:5])
        h = node.state["v"]
        torch.testing.assert_close(node.v, h - torch.round(torch.clamp(h / 0.8, 0, 4)) * 0.8)
    assert "max_spike_count=4, grad_window=(0, 4)" in repr(node)


def test_bad_arguments_are_named():
    with pytest.raises(ConfigurationError, match=r"v_threshold must be > 0"):
        ILIFNode(v_threshold=-1.0)
    with pytest.raises(ConfigurationError, match=r"max_spike_count must be an integer >= 1"):
        ILIFNode(max_spike_count=0)
    with pytest.raises(ConfigurationError, match=r"max_spike_count must be an integer >= 1"):
        ILIFNode(max_spike_count=2.5)
    with pytest.raises(ConfigurationError, match=r"grad_window must be \(lower, upper\)"):
        ILIFNode(grad_window=1.0)
    with pytest.raises(ConfigurationError, match=r"grad_window must have lower <= upper"):
        ILIFNode(grad_window=(2.0, 1.0))
    with pytest.raises(ConfigurationError, match=r"grad_window upper must be a finite"):
        ILIFNode(grad_window=(0.0, float("nan")))
    with pytest.raises(ConfigurationError, match="tau must be a finite number > 1"):
        ILIFNode(tau=1.0)
