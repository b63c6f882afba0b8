"""snnTorch's ``AssociativeLeaky`` (``neurons.AssociativeLeaky``): equal to snnTorch 1.0
after loading its state dict (outputs and float64 gradients of the input and every
weight; with and without the ``Q`` readout, square and oblong states); the recurrence
by hand (``decay="exact"``); where snnTorch's cumulative-product form leaves the
recurrence (its ``1e-8``) and where they agree; the form in half precision (computed in
float32: no NaN); float64 gradcheck; the errors.
"""

from __future__ import annotations

import pytest
import torch

from snntorch_checks import atan64
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.neurons import AssociativeLeaky
from spikeflow.surrogate import Sigmoid

F64 = torch.float64


@pytest.mark.parametrize("use_q", [True, False], ids=["q", "no_q"])
@pytest.mark.parametrize("in_dim, d, n", [(6, 3, 4), (5, 4, 4)])
def test_equals_snntorch(float64, use_q, in_dim, d, n):
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    torch.manual_seed(5)
    theirs = snn.AssociativeLeaky(in_dim, d, n, d * n, use_q_projection=use_q)
    theirs.spike_grad = atan64  # its atan() in float64
    if n == 4 and d == 4:  # another threshold and graded spikes, loaded from its buffers
        theirs.threshold.fill_(0.7)
        theirs.graded_spikes_factor.fill_(2.5)
    ours = AssociativeLeaky(in_dim, d, n, d * n, use_q)
    ours.load_state_dict(theirs.state_dict())  # strict: every key is read
    x = (torch.randn(12, 3, in_dim) * 2.5).requires_grad_()
    want, got = theirs(x), ours(x)
    assert got.shape == (12, 3, d * d if use_q else d * n)
    rate = (ours.membrane(x) > ours.threshold).double().mean()
    assert 0.05 < rate < 0.9  # spikes and silences
    torch.testing.assert_close(got, want, atol=1e-13, rtol=0)
    g = torch.randn_like(want)
    grads = torch.autograd.grad((got * g).sum(), [x, *ours.parameters()])
    refs = torch.autograd.grad((want * g).sum(), [x, *theirs.parameters()])
    for a, b in zip(grads, refs, strict=True):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def _scalar_neuron(decay, threshold=1.2):
    """in_dim = d = n = 1: v = x, k = 1, α = σ(0) = 1/2."""
    node = AssociativeLeaky(1, 1, 1, use_q_projection=False, threshold=threshold, decay=decay)
    with torch.no_grad():
        for layer in (node.to_v, node.to_k, node.to_alpha):
            layer.weight.fill_(1.0 if layer is node.to_v else 0.0)
            layer.bias.fill_(1.0 if layer is node.to_k else 0.0)
    return node


def test_recurrence_by_hand():
    # S = S/2 + x: x = 1, 1, 1 gives 1, 1.5, 1.75; θ = 1.2 fires at the last two.
    x = torch.ones(3, 1, 1, dtype=F64)
    exact = _scalar_neuron("exact").double()
    assert exact.membrane(x).flatten().tolist() == [1.0, 1.5, 1.75]
    assert exact(x).flatten().tolist() == [0.0, 1.0, 1.0]
    # snnTorch's form: the same but for its 1e-8 / P[t] (P = 1/2, 1/4, 1/8).
    close = _scalar_neuron("snntorch").double().membrane(x).flatten()
    torch.testing.assert_close(close, torch.tensor([1.0, 1.5, 1.75], dtype=F64), atol=3e-7, rtol=0)


def test_snntorch_form_leaves_the_recurrence_on_long_sequences():
    """P[t] = 2^-t reaches snnTorch's 1e-8 after ~27 steps: the state drifts from
    S = S/2 + x (whose value stays 2), which decay="exact" keeps."""
    x = torch.ones(60, 1, 1, dtype=F64)
    exact = _scalar_neuron("exact").double().membrane(x).flatten()
    form = _scalar_neuron("snntorch").double().membrane(x).flatten()
    torch.testing.assert_close(exact[-1], torch.tensor(2.0, dtype=F64), atol=1e-12, rtol=0)
    assert abs(form[-1].item() - 2.0) > 0.5
    torch.testing.assert_close(form[:5], exact[:5], atol=1e-6, rtol=0)  # 1e-8 / P small


def test_exact_equals_the_snntorch_form_while_the_decays_stay_large():
    """Several keys with their own decays (α ≈ 0.95): over 8 steps P[t] stays near 1, so
    snnTorch's 1e-8 is negligible and both forms are the recurrence."""
    torch.manual_seed(7)
    exact = AssociativeLeaky(4, 2, 3, decay="exact").double()
    form = AssociativeLeaky(4, 2, 3).double()
    with torch.no_grad():
        exact.to_alpha.bias.fill_(3.0)
        form.load_state_dict(exact.state_dict())
    x = torch.randn(8, 2, 4, dtype=F64)
    assert not torch.allclose(torch.sigmoid(exact.to_alpha(x))[..., 0],
                              torch.sigmoid(exact.to_alpha(x))[..., 1])  # fmt: skip
    torch.testing.assert_close(exact.membrane(x), form.membrane(x), atol=1e-7, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_snntorch_form_in_half_precision_is_computed_in_float32(dtype):
    """In float16 snnTorch's 1e-8 is 0: P = Π α underflowing made 0 · inf = NaN
    membranes (and gradients) within a dozen steps, the spikes silently 0. Computed in
    float32, the half-precision layer gives the float32 layer's membrane, rounded."""
    torch.manual_seed(8)
    layer = AssociativeLeaky(8, 4, 4)
    x = torch.randn(40, 2, 8).to(dtype)
    want = layer.membrane(x.float())
    half = layer.to(dtype)
    xx = x.clone().requires_grad_()
    got = half.membrane(xx)
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)
    half(xx).float().sum().backward()
    assert torch.isfinite(xx.grad).all() and xx.grad.abs().sum() > 0


def test_gradcheck_exact():
    torch.manual_seed(6)
    node = AssociativeLeaky(3, 2, 3, surrogate_function=Sigmoid(2.0, spiking=False),
                            decay="exact").double()  # fmt: skip
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(node, (x,))


def test_square_constructor_and_errors():
    node = AssociativeLeaky.from_num_spiking_neurons(4, 9)
    assert (node.d_value, node.d_key) == (3, 3) and node(torch.rand(2, 1, 4)).shape == (2, 1, 9)
    with pytest.raises(ConfigurationError, match="perfect square"):
        AssociativeLeaky.from_num_spiking_neurons(4, 8)
    with pytest.raises(ConfigurationError, match="must equal d_value"):
        AssociativeLeaky(4, 2, 3, 5)
    with pytest.raises(ConfigurationError, match="d_key must be a positive int"):
        AssociativeLeaky(4, 2, 0)
    with pytest.raises(ConfigurationError, match="decay must be"):
        AssociativeLeaky(4, 2, 2, decay="fast")
    with pytest.raises(ShapeError, match=r"in_dim=4"):
        AssociativeLeaky(4, 2, 2)(torch.rand(3, 2, 5))
