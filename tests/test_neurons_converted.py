"""The conversion neurons ``HalfThresholdIFNode`` and ``ActivationAwareIFNode`` against
SpikingJelly 2.0, on every backend (the reference loop, the C kernel, Triton).

Hand-computed spikes (the half-threshold start rounds a constant input's rate, the
offset shifts the firing level but not the reset); spikes, membranes and float64
gradients of the input equal to SpikingJelly's, ``detach_reset`` both ways, hard and
soft reset, scalar and per-channel values along the last dim and dim 1, multi-step and
single-step; ``HalfThresholdIFNode`` equals the conversion's ``ConversionIFNode(θ, 0.5,
weighted=False)``; gradcheck; the errors.
"""

from __future__ import annotations

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from spikeflow import functional as F
from spikeflow.conversion import ConversionIFNode
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.neurons import ActivationAwareIFNode, HalfThresholdIFNode
from spikeflow.surrogate import Sigmoid

sj_neuron = pytest.importorskip(
    "spikingjelly.activation_based.neuron", reason="SpikingJelly is needed for the comparisons"
)
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

BACKENDS = fused_backends("torch")
F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)


def test_hand_computed():
    # a constant 0.3 for 4 steps, θ 1: from θ/2 the membrane is 0.8, 1.1 (fires, 0.1),
    # 0.4, 0.7: one spike, round(4 · 0.3) = 1; from 0 (IFNode's soft reset) none.
    x = torch.full((4, 1), 0.3, dtype=F64)
    half = HalfThresholdIFNode(store_v_seq=True)
    assert half(x).view(-1).tolist() == [0.0, 1.0, 0.0, 0.0]
    torch.testing.assert_close(half.v_seq.view(-1), torch.tensor([0.8, 0.1, 0.4, 0.7], dtype=F64))
    # offset 0.25, θ 1, soft reset: fires at H >= 0.75 and subtracts θ: H = 0.5, 0.8
    # (fires, V = -0.2), 0.1; with hard reset to 0 the second step resets to 0.
    x = torch.tensor([0.5, 0.3, 0.3], dtype=F64).view(-1, 1)
    aaif = ActivationAwareIFNode(v_offset=0.25, store_v_seq=True)
    assert aaif(x).view(-1).tolist() == [0.0, 1.0, 0.0]
    torch.testing.assert_close(aaif.v_seq.view(-1), torch.tensor([0.5, -0.2, 0.1], dtype=F64))
    hard = ActivationAwareIFNode(v_offset=0.25, v_reset=0.0, store_v_seq=True)
    hard(x)
    torch.testing.assert_close(hard.v_seq.view(-1), torch.tensor([0.5, 0.0, 0.3], dtype=F64))


def _compare(ours, theirs, x, g):
    x1, x2 = x.clone().requires_grad_(), x.clone().cpu().requires_grad_()
    s1, s2 = ours(x1), theirs(x2)
    assert torch.equal(s1.cpu(), s2) and 0.05 < s2.mean() < 0.9
    torch.testing.assert_close(ours.v_seq.cpu(), theirs.v_seq, **TIGHT)
    (g1,) = torch.autograd.grad((s1 * g).sum() + (ours.v_seq * g).sum(), x1)
    (g2,) = torch.autograd.grad((s2 * g.cpu()).sum() + (theirs.v_seq * g.cpu()).sum(), x2)
    assert g1.abs().sum() > 0
    torch.testing.assert_close(g1.cpu(), g2, **TIGHT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_half_threshold_equal_to_spikingjelly(float64, backend):
    device = kernel_device(backend)
    torch.manual_seed(1)
    x = (torch.randn(8, 3, 5) * 0.8 + 0.3).to(device)
    g = torch.randn_like(x)
    for detach_reset in (False, True):
        ours = HalfThresholdIFNode(0.7, None, detach_reset, "m", True, backend=backend)
        theirs = sj_neuron.HalfThresholdIFNode(0.7, sj_surrogate.Sigmoid(), detach_reset, "m", True)
        _compare(ours, theirs, x, g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("v_reset", [None, 0.0])
def test_activation_aware_equal_to_spikingjelly(float64, backend, v_reset):
    """Per-channel θ and O along the last dim (the default) and along dim 1, scalar ones,
    ``detach_reset`` both ways; SpikingJelly's state dict loads."""
    device = kernel_device(backend)
    torch.manual_seed(2)
    x = (torch.randn(8, 4, 3, 6) * 0.8 + 0.3).to(device)
    g = torch.randn_like(x)
    cases = [(torch.rand(6) + 0.5, torch.randn(6) * 0.3, -1, False),
             (torch.rand(3) + 0.5, torch.randn(3) * 0.3, 1, True),
             (0.8, 0.2, -1, False)]  # fmt: skip
    for theta, offset, channel_dim, detach_reset in cases:
        args = (theta, offset, channel_dim, v_reset)
        theirs = sj_neuron.ActivationAwareIFNode(*args, sj_surrogate.Sigmoid(), detach_reset,
                                                 "m", True)  # fmt: skip
        ours = ActivationAwareIFNode(*args, None, detach_reset, "m", True, backend=backend)
        ours.load_state_dict(theirs.state_dict())
        _compare(ours.to(device), theirs, x, g)


def test_single_step_equal_to_spikingjelly(float64):
    x = torch.randn(6, 4, 3) * 0.8 + 0.3
    pairs = [(HalfThresholdIFNode(0.6, step_mode="s"), sj_neuron.HalfThresholdIFNode(0.6)),
             (ActivationAwareIFNode(torch.tensor([0.6, 0.9, 1.2]), 0.1, step_mode="s"),
              sj_neuron.ActivationAwareIFNode(torch.tensor([0.6, 0.9, 1.2]), 0.1))]  # fmt: skip
    for ours, theirs in pairs:
        with F.streaming(ours):
            mine = [(ours(x_t), ours.v) for x_t in x]
        sj = [(theirs(x_t), theirs.v) for x_t in x]
        for (s1, v1), (s2, v2) in zip(mine, sj):
            assert torch.equal(s1, s2)
            torch.testing.assert_close(v1, v2, **TIGHT)


def test_half_threshold_is_the_conversions_qcfs_neuron():
    theta = torch.tensor([0.5, 1.0, 1.5]).view(3, 1)
    x = torch.rand(16, 2, 3, 4) * 1.5
    half = HalfThresholdIFNode(theta, store_v_seq=True)
    conversion = ConversionIFNode(theta, 0.5, weighted=False, store_v_seq=True)
    assert torch.equal(half(x), conversion(x)) and torch.equal(half.v_seq, conversion.v_seq)
    assert 0.1 < half(x).mean() < 0.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    """The input, the threshold and the per-channel offset on a smooth surrogate."""
    device = kernel_device(backend)
    torch.manual_seed(3)
    x = (torch.rand(4, 2, 3, dtype=F64, device=device) * 1.5).requires_grad_()
    theta = torch.tensor([0.8, 1.0, 1.2], dtype=F64, device=device).requires_grad_()
    offset = torch.tensor([0.1, -0.2, 0.3], dtype=F64, device=device).requires_grad_()

    def membranes(x, theta, offset, backend=backend):
        node = ActivationAwareIFNode(theta.detach(), offset.detach(), store_v_seq=True,
                                     surrogate_function=Sigmoid(alpha=2.0, spiking=False),
                                     backend=backend).to(device)  # fmt: skip
        spikes = torch.func.functional_call(node, {"v_threshold": theta, "v_offset": offset}, (x,))
        return spikes, node.v_seq

    gradcheck_backend(backend, membranes, (x, theta, offset),
                      lambda *a: membranes(*a, backend="torch"))  # fmt: skip


def test_bad_arguments_are_named():
    with pytest.raises(ConfigurationError, match=r"v_threshold must be > 0 everywhere"):
        HalfThresholdIFNode(-0.5)
    with pytest.raises(ConfigurationError, match=r"v_threshold must be > 0 everywhere"):
        ActivationAwareIFNode(torch.tensor([1.0, 0.0]))
    with pytest.raises(ConfigurationError, match=r"v_offset must be a scalar or a 1-D tensor"):
        ActivationAwareIFNode(v_offset=torch.zeros(2, 2))
    with pytest.raises(ConfigurationError, match=r"v_offset must be finite"):
        ActivationAwareIFNode(v_offset=torch.tensor([float("nan")]))
    with pytest.raises(ConfigurationError, match="channel_dim must be an int"):
        ActivationAwareIFNode(channel_dim=1.0)
    node = ActivationAwareIFNode(torch.tensor([1.0, 2.0]), channel_dim=1)
    with pytest.raises(ShapeError, match=r"v_threshold has 2 values but the steps \(4, 3\) have 3"):
        node(torch.rand(5, 4, 3))
    with pytest.raises(ShapeError, match="channel_dim=5 is out of range for steps with 2"):
        ActivationAwareIFNode(torch.tensor([1.0, 2.0]), channel_dim=5)(torch.rand(5, 4, 2))
