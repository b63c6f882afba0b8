"""Parallel spiking neurons (methods.md 4): PSN, masked PSN, sliding PSN, LIF without reset.

Each parallel form is checked against a plain loop over time written from the paper's
equations (outputs and gradients by autograd through the loop, float64), with float64
gradcheck on the smooth surrogate, and its step-by-step mode against the whole-sequence
call.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.neurons import (
    PSN,
    LINode,
    MaskedPSN,
    NoResetLIFNode,
    SlidingPSN,
    band_mask,
    lif_no_reset_matrix,
    linear_scan,
    mask_lambda,
    set_mask_lambda,
    sliding_toeplitz,
)
from spikeflow.surrogate import ATan, Sigmoid


def dense_loop(weight, bias, x):
    """H[t] = sum_j W[t, j] X[j] + b[t], step by step."""
    return torch.stack([sum(weight[t, j] * x[j] for j in range(x.shape[0])) + bias[t, 0]
                        for t in range(x.shape[0])])  # fmt: skip


def sliding_loop(w, b, x):
    """H[t] = sum_i w_i X[t - k + 1 + i] + b, X[j] = 0 for j < 0."""
    k = w.shape[0]
    out = []
    for t in range(x.shape[0]):
        h = torch.zeros_like(x[0]) + b
        for i in range(k):
            j = t - k + 1 + i
            if j >= 0:
                h = h + w[i] * x[j]
        out.append(h)
    return torch.stack(out)


def lif_no_reset_loop(x, tau, decay_input=True):
    """H[t] = (1 - 1/tau) H[t-1] + X[t]/tau (or + X[t]), H[-1] = 0."""
    h = torch.zeros_like(x[0])
    out = []
    for x_t in x:
        h = (1 - 1 / tau) * h + (x_t / tau if decay_input else x_t)
        out.append(h)
    return torch.stack(out)


def assert_same_grads(out_a, inputs_a, out_b, inputs_b):
    g = torch.randn_like(out_a)
    ga = torch.autograd.grad((out_a * g).sum(), inputs_a)
    gb = torch.autograd.grad((out_b * g).sum(), inputs_b)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


# -- PSN --------------------------------------------------------------------------------


def test_psn_init_is_linear_t_t_and_bias_minus_one():
    psn = PSN(T=16)
    assert psn.weight.shape == (16, 16) and psn.bias.shape == (16, 1)
    assert psn.weight.abs().max() <= 1 / math.sqrt(16)  # Kaiming-uniform(a=√5) bound
    assert psn.weight.std() > 0.5 / math.sqrt(16) / math.sqrt(3)
    assert torch.equal(psn.bias, torch.full((16, 1), -1.0))
    assert isinstance(psn.surrogate_function, ATan) and psn.surrogate_function.alpha == 2.0


@pytest.mark.parametrize("cls", [PSN, MaskedPSN])
def test_bias_init_sets_the_start_and_survives_reset_parameters(cls):
    make = (lambda **kw: PSN(8, **kw)) if cls is PSN else (lambda **kw: MaskedPSN(4, 8, **kw))
    neuron = make(bias_init=-0.5)
    assert torch.equal(neuron.bias, torch.full((8, 1), -0.5))
    assert "bias_init=-0.5" in repr(neuron) and "bias_init" not in repr(make())
    with torch.no_grad():
        neuron.bias.zero_()
    neuron.reset_parameters()
    assert torch.equal(neuron.bias, torch.full((8, 1), -0.5))
    for bad in (float("nan"), float("inf"), "x", True, None):
        with pytest.raises(ConfigurationError, match="bias_init must be a finite number"):
            make(bias_init=bad)


def test_masked_psn_k4_fires_rarely_from_the_paper_start():
    # docs/neuron_zoo_parallel.md: at bias -1 only k = 4 of the T = 8 inputs, each
    # weighted at most 1/sqrt(8), reach a step: on unit-variance (BatchNorm'd) inputs the
    # neurons fire far less often than a dense PSN, and bias_init=-0.5 restores the rate.
    x = torch.randn(8, 4096, generator=torch.Generator().manual_seed(0))

    def rate(neuron, seed=0):
        torch.manual_seed(seed)
        neuron.reset_parameters()
        with torch.no_grad():
            return float(neuron(x).mean())

    masked = [rate(MaskedPSN(4, 8, lambda_init=1.0), s) for s in range(5)]
    dense = [rate(PSN(8), s) for s in range(5)]
    shifted = [rate(MaskedPSN(4, 8, lambda_init=1.0, bias_init=-0.5), s) for s in range(5)]
    assert max(masked) < 0.03 and sum(masked) < 0.5 * sum(dense)
    assert sum(shifted) > 4 * sum(masked)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_masked_psn_equals_spikingjelly_forward_and_backward(float64, lam):
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    ours = MaskedPSN(4, 8, lambda_init=lam)
    theirs = sj.MaskedPSN(4, 8, lambda_init=lam, step_mode="m")
    theirs.load_state_dict(ours.state_dict(), strict=False)
    x = 2 * torch.randn(8, 5, 3)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    s1, s2 = ours(x1), theirs(x2)
    assert torch.equal(s1, s2) and 0 < float(s1.mean()) < 1
    assert_same_grads(s1, [x1, ours.weight, ours.bias], s2, [x2, theirs.weight, theirs.bias])
    if lam == 1.0:  # the gradient reaches only the band: W ⊙ M_k, as SpikingJelly's
        (grad,) = torch.autograd.grad(ours(x).sum(), ours.weight)
        assert torch.equal(grad * (1 - band_mask(8, 4)), torch.zeros(8, 8))
        assert grad.abs().sum() > 0


def test_psn_is_one_gemm_over_time_with_loop_gradients():
    psn = PSN(T=6).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    w = psn.weight.detach().clone().requires_grad_()
    b = psn.bias.detach().clone().requires_grad_()
    h_loop = dense_loop(w, b, x1)
    torch.testing.assert_close(psn.membrane(x2), h_loop, atol=1e-12, rtol=0)
    s = psn(x2)
    assert torch.equal(s, (h_loop >= 0).double())
    assert_same_grads(psn.surrogate_function(h_loop), [x1, w, b], s, [x2, psn.weight, psn.bias])


def test_psn_gradcheck_float64():
    psn = PSN(T=4, surrogate_function=ATan(spiking=False)).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = psn.weight.detach().clone().requires_grad_()
    b = psn.bias.detach().clone().requires_grad_()

    def f(x, w, b):
        return torch.func.functional_call(psn, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b))


def test_psn_errors_name_the_values():
    psn = PSN(T=4)
    with pytest.raises(ShapeError, match=r"T=4 .* input has 5 steps"):
        psn(torch.rand(5, 3))
    with pytest.raises(ShapeError, match="time-major"):
        psn(torch.rand(4))
    with pytest.raises(DTypeError, match="floating-point"):
        psn(torch.ones(4, 2, dtype=torch.long))
    with pytest.raises(ConfigurationError, match="T must be an integer >= 1"):
        PSN(T=0)
    with pytest.raises(ConfigurationError, match="only runs in multi-step mode"):
        F.set_step_mode(nn.Sequential(nn.Identity(), psn), "s")


# -- masked PSN ---------------------------------------------------------------------------


def test_band_mask_by_hand():
    expected = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    assert band_mask(4, 2).tolist() == expected
    assert band_mask(3, 3).tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    with pytest.raises(ConfigurationError, match=r"order k \(5\) must not exceed .* T \(4\)"):
        band_mask(4, 5)


@pytest.mark.parametrize("lam", [0.0, 0.25, 1.0])
def test_masked_psn_progressive_mask(lam):
    m = MaskedPSN(k=2, T=5, lambda_init=lam).double()
    x = torch.randn(5, 3, 2, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    w = m.weight.detach().clone().requires_grad_()
    b = m.bias.detach().clone().requires_grad_()
    mask = lam * band_mask(5, 2).double() + (1 - lam) * torch.ones(5, 5, dtype=torch.float64)
    h_loop = dense_loop(w * mask, b, x1)
    s = m(x2)
    assert torch.equal(s, (h_loop >= 0).double())
    assert_same_grads(m.surrogate_function(h_loop), [x1, w, b], s, [x2, m.weight, m.bias])
    if lam == 0.0:  # no mask: the PSN with the same weights
        psn = PSN(T=5).double()
        psn.load_state_dict({"weight": m.weight, "bias": m.bias})
        assert torch.equal(psn(x), s)
    if lam == 1.0:  # causal: step t ignores inputs after t
        x_late = x.clone()
        x_late[3:] += 5.0
        assert torch.equal(m(x_late)[:3], m(x)[:3])


def test_masked_psn_single_step_equals_multi_step_at_lambda_one():
    m = MaskedPSN(k=3, T=7, lambda_init=1.0).double()
    with torch.no_grad():
        m.bias.fill_(0.0)  # fire about half of the time
    x = torch.randn(7, 4, 2, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    multi = m(x1)
    m.step_mode = "s"
    with F.streaming(m):
        single = torch.stack([m(x_t) for x_t in x2])
        with pytest.raises(StateError, match="T=7 steps and has already run 7"):
            m(x[0])
    assert torch.equal(multi, single) and 0.1 < float(multi.detach().mean()) < 0.9
    assert_same_grads(multi, [x1, m.weight], single, [x2, m.weight])


def test_masked_psn_errors():
    with pytest.raises(ConfigurationError, match=r"order k \(9\) must not exceed"):
        MaskedPSN(k=9, T=8)
    with pytest.raises(ConfigurationError, match="lambda_ must be in"):
        MaskedPSN(k=2, T=8, lambda_init=1.5)
    m = MaskedPSN(k=2, T=8)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ConfigurationError, match="lambda_ must be in"):
            m.lambda_ = bad
    m.step_mode = "s"
    with F.streaming(m), pytest.raises(ConfigurationError, match="lambda_=1"):
        m(torch.rand(3))
    m.lambda_ = 1.0
    with pytest.raises(StateError, match="streaming is off"):
        m(torch.rand(3))
    m.step_mode = "m"
    with pytest.raises(ShapeError, match="T=8"):
        m(torch.rand(4, 3))


def test_mask_schedules():
    assert [mask_lambda(e, 17) for e in (0, 1, 2, 16)] == [0.0, 0.5, 1.0, 1.0]
    assert mask_lambda(0, 1) == 1.0
    assert [mask_lambda(e, 4, "linear") for e in range(4)] == [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ConfigurationError, match=r"epoch must be in \[0, epochs=4\)"):
        mask_lambda(4, 4)
    with pytest.raises(ConfigurationError, match="schedule must be"):
        mask_lambda(0, 4, "cosine")
    net = nn.Sequential(MaskedPSN(2, 4), nn.Identity(), MaskedPSN(3, 4))
    assert set_mask_lambda(net, 0.5) == 2
    assert [m.lambda_ for m in (net[0], net[2])] == [0.5, 0.5]
    assert net.state_dict()["0.mask_lambda"].item() == 0.5  # saved with the model


# -- sliding PSN ------------------------------------------------------------------------


def test_sliding_toeplitz_by_hand():
    w = torch.tensor([2.0, 3.0])
    expected = [[3, 0, 0, 0], [2, 3, 0, 0], [0, 2, 3, 0], [0, 0, 2, 3]]
    assert sliding_toeplitz(w, 4).tolist() == expected
    assert sliding_toeplitz(torch.tensor([1.0, 2.0, 3.0]), 2).tolist() == [[3, 0], [2, 3]]


def test_sliding_psn_init():
    s = SlidingPSN(k=3)
    assert s.weight.tolist() == [0.25, 0.5, 1.0] and s.bias.item() == -1.0
    s = SlidingPSN(k=16, exp_init=False)
    assert s.weight.abs().max() <= 0.25 and s.weight.std() > 0.05  # U(-1/4, 1/4)


@pytest.mark.parametrize("backend", ["gemm", "conv"])
@pytest.mark.parametrize(("k", "T"), [(1, 5), (3, 1), (3, 8), (6, 4)])
def test_sliding_psn_equals_its_equation_for_any_t(backend, k, T):
    sp = SlidingPSN(k=k, exp_init=False, backend=backend).double()
    x = torch.randn(T, 2, 3, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    w = sp.weight.detach().clone().requires_grad_()
    b = sp.bias.detach().clone().requires_grad_()
    h_loop = sliding_loop(w, b, x1)
    torch.testing.assert_close(sp.membrane(x2), h_loop, atol=1e-12, rtol=0)
    s = sp(x2)
    assert torch.equal(s, (h_loop >= 0).double())
    assert_same_grads(sp.surrogate_function(h_loop), [x1, w, b], s, [x2, sp.weight, sp.bias])


def test_sliding_psn_gemm_and_conv_agree():
    gemm = SlidingPSN(k=4, exp_init=False).double()
    conv = SlidingPSN(k=4, exp_init=False, backend="conv").double()
    conv.load_state_dict(gemm.state_dict())
    x = torch.randn(16, 8, 5, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.testing.assert_close(gemm.membrane(x), conv.membrane(x), atol=1e-12, rtol=0)
    s1, s2 = gemm(x1), conv(x2)
    assert torch.equal(s1, s2)
    assert_same_grads(s1, [x1, gemm.weight, gemm.bias], s2, [x2, conv.weight, conv.bias])


@pytest.mark.parametrize("backend", ["gemm", "conv"])
def test_sliding_psn_gradcheck_float64(backend):
    sp = SlidingPSN(k=3, backend=backend, surrogate_function=Sigmoid(spiking=False)).double()
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    w = sp.weight.detach().clone().requires_grad_()
    b = sp.bias.detach().clone().requires_grad_()

    def f(x, w, b):
        return torch.func.functional_call(sp, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("backend", ["gemm", "conv"])
def test_sliding_psn_streams_step_by_step_and_in_chunks(backend):
    sp = SlidingPSN(k=3, exp_init=False, backend=backend).double()
    with torch.no_grad():
        sp.bias.fill_(0.0)
    x = torch.randn(11, 3, 2, dtype=torch.float64)
    whole = sp(x)
    with F.streaming(sp):
        chunks = torch.cat([sp(c) for c in x.split([2, 1, 5, 3])])
    assert torch.equal(chunks, whole)
    sp.step_mode = "s"
    with F.streaming(sp):
        single = torch.stack([sp(x_t) for x_t in x])
    assert torch.equal(single, whole) and 0.1 < float(whole.detach().mean()) < 0.9
    assert sp.state is None


def test_sliding_psn_errors():
    with pytest.raises(ConfigurationError, match="k must be an integer >= 1"):
        SlidingPSN(k=0)
    with pytest.raises(ConfigurationError, match="backend must be 'gemm' or 'conv'"):
        SlidingPSN(k=2, backend="fft")
    with pytest.raises(ShapeError, match="time-major"):
        SlidingPSN(k=2)(torch.rand(3))


# -- LIF without reset, in parallel -----------------------------------------------------


def test_lif_no_reset_matrix_by_hand():
    lam = lif_no_reset_matrix(3, 0.5, 0.5, torch.float64)
    assert lam.tolist() == [[0.5, 0, 0], [0.25, 0.5, 0], [0.125, 0.25, 0.5]]


@pytest.mark.parametrize("T", [1, 2, 5, 16, 17])
def test_linear_scan_equals_the_recurrence(T):
    b = torch.randn(T, 3, dtype=torch.float64)
    h0 = torch.randn(3, dtype=torch.float64)
    expected, h = [], h0
    for b_t in b:
        h = 0.7 * h + b_t
        expected.append(h)
    torch.testing.assert_close(linear_scan(b, 0.7, h0), torch.stack(expected))


@pytest.mark.parametrize("method", ["gemm", "scan"])
@pytest.mark.parametrize("decay_input", [True, False])
def test_no_reset_lif_equals_the_sequential_loop(method, decay_input):
    node = NoResetLIFNode(tau=3.0, decay_input=decay_input, method=method)
    x = torch.rand(37, 4, 5, dtype=torch.float64) * (2.0 if decay_input else 0.6)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    h_loop = lif_no_reset_loop(x1, 3.0, decay_input)
    torch.testing.assert_close(node.membrane(x2), h_loop, atol=1e-12, rtol=0)
    s = node(x2)
    assert torch.equal(s, (h_loop >= 1.0).double()) and 0.05 < float(s.detach().mean()) < 0.95
    s_loop = node.surrogate_function(h_loop - 1.0)
    assert_same_grads(s_loop, [x1], s, [x2])


@pytest.mark.parametrize("method", ["gemm", "scan"])
def test_no_reset_lif_streams_and_single_steps(method):
    node = NoResetLIFNode(method=method)
    x = torch.rand(13, 3, dtype=torch.float64) * 1.5
    whole = node(x)
    with F.streaming(node):
        chunks = torch.cat([node(c) for c in x.split([5, 1, 7])])
    assert torch.equal(chunks, whole)
    node.step_mode = "s"
    with F.streaming(node):
        single = torch.stack([node(x_t) for x_t in x])
        torch.testing.assert_close(node.state["h"], lif_no_reset_loop(x, 2.0)[-1])
    assert torch.equal(single, whole)


def test_no_reset_lif_gradcheck_scan():
    node = NoResetLIFNode(method="scan", surrogate_function=ATan(spiking=False))
    x = torch.rand(9, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(node, (x,))


def test_no_reset_lif_errors():
    with pytest.raises(ConfigurationError, match="tau must be"):
        NoResetLIFNode(tau=1.0)
    with pytest.raises(ConfigurationError, match="method must be 'gemm' or 'scan'"):
        NoResetLIFNode(method="fft")
    with pytest.raises(DTypeError, match="floating-point"):
        NoResetLIFNode()(torch.ones(3, 2, dtype=torch.int64))


@pytest.mark.parametrize("backend", ["gemm", "conv"])
def test_sliding_psn_runs_an_empty_batch(backend):
    # The depthwise convolution was built with groups=0, which torch refuses.
    node = SlidingPSN(2, backend=backend)
    x = torch.rand(4, 0, 3, requires_grad=True)
    out = node(x)
    assert out.shape == (4, 0, 3)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cls", [PSN, MaskedPSN])
def test_psn_and_masked_psn_compute_in_the_inputs_dtype(cls, dtype):
    # Their GEMM raised torch's "self and mat2 must have the same dtype" where SlidingPSN
    # and single-step MaskedPSN cast the weights to the input's dtype.
    torch.manual_seed(0)
    node = cls(T=4) if cls is PSN else cls(T=4, k=2, lambda_init=1.0)  # the band mask on
    with torch.no_grad():
        node.bias.zero_()  # about half the neurons fire
    x = torch.randn(4, 3, 5)
    out = node(x.to(dtype))
    assert out.dtype == dtype
    weight = node.weight if cls is PSN else node.weight * band_mask(4, 2)
    with torch.no_grad():
        h = torch.addmm(node.bias.to(dtype), weight.to(dtype), x.to(dtype).reshape(4, -1))
    expected = (h.view(4, 3, 5) >= 0).to(dtype)
    assert 0 < expected.sum() < expected.numel()
    assert torch.equal(out, expected)


@pytest.mark.parametrize(
    "make", [lambda: SlidingPSN(2), lambda: SlidingPSN(2, backend="conv"),
             lambda: NoResetLIFNode(), lambda: NoResetLIFNode(method="scan"), lambda: LINode()],
)  # fmt: skip
def test_zero_time_steps_are_a_shape_error_for_every_sequence_neuron(make):
    # These failed inside torch (reshape of 0 elements, index -1 of an empty dim).
    node = make()
    with pytest.raises(
        ShapeError, match=r"got a sequence of 0 time steps \(input shape \(0, 2, 3\)\)"
    ):
        node(torch.rand(0, 2, 3))


def test_masked_psn_compiles_once_for_every_mask_lambda():
    # λ is read as a tensor: one graph (fullgraph) serves the whole schedule, where
    # reading it as a Python float broke the graph at every call.
    import contextlib

    from spikeflow.neurons import set_mask_lambda

    torch.manual_seed(0)
    neuron = MaskedPSN(k=2, T=6)
    x = torch.rand(6, 3, 5)
    compiled = torch.compile(neuron, fullgraph=True)
    for lam in (0.0, 0.3, 1.0):
        set_mask_lambda(neuron, lam)
        once = torch.compiler.set_stance("fail_on_recompile") if lam else contextlib.nullcontext()
        with once:
            assert torch.equal(compiled(x), neuron(x))
