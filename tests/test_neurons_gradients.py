"""Reference-path gradients against the BPTT formulas of methods.md 1.1, and gradcheck."""

from __future__ import annotations

import itertools

import pytest
import torch

from spikeflow.neurons import IFNode, LIFNode, ParametricLIFNode
from spikeflow.surrogate import ATan, Sigmoid


def bptt_by_hand(x, grad_s, tau, decay_input, v_reset, detach_reset, theta, alpha):
    """Hand-derived forward + backward of an LIF layer (tau=None: IF) with Sigmoid.

    Returns dL/dX and dL/d(1/tau) for L = sum(S * grad_s).
    """
    T = x.shape[0]
    k = 0.0 if tau is None else 1.0 / tau
    vr = 0.0 if v_reset is None else v_reset
    v_prev = torch.full_like(x[0], vr)
    vs_prev, hs, ss = [], [], []
    for t in range(T):
        if tau is None:
            h = v_prev + x[t]
        elif decay_input:
            h = v_prev + (x[t] - (v_prev - vr)) * k
        else:
            h = v_prev - (v_prev - vr) * k + x[t]
        s = (h >= theta).double()
        v = h - theta * s if v_reset is None else h * (1 - s) + vr * s
        vs_prev.append(v_prev)
        hs.append(h)
        ss.append(s)
        v_prev = v

    def sg(u):
        sig = torch.sigmoid(alpha * u)
        return alpha * sig * (1 - sig)

    dh_dv = 1.0 - k  # dH[t+1]/dV[t]
    d = 1.0 if detach_reset else 0.0
    g_h_next = torch.zeros_like(x[0])
    grad_x = torch.zeros_like(x)
    grad_k = torch.zeros(())
    for t in reversed(range(T)):
        h, s = hs[t], ss[t]
        sp = sg(h - theta)
        if v_reset is None:
            dv_dh = 1 - theta * sp * (1 - d)
        else:
            dv_dh = 1 - s + (vr - h) * sp * (1 - d)
        g_v = g_h_next * dh_dv  # dL/dV[t] (no direct loss on V)
        g_h = grad_s[t] * sp + g_v * dv_dh
        dh_dx = k if (tau is not None and decay_input) else 1.0
        grad_x[t] = g_h * dh_dx
        if tau is not None:
            if decay_input:
                grad_k = grad_k + (g_h * (x[t] - vs_prev[t] + vr)).sum()
            else:
                grad_k = grad_k + (g_h * (-(vs_prev[t] - vr))).sum()
        g_h_next = g_h
    return grad_x, grad_k


CASES = [
    case
    for case in itertools.product(
        [None, 2.0, 3.0],  # tau (None: IF)
        [True, False],  # decay_input
        [0.0, -0.2, None],  # v_reset (None: soft)
        [False, True],  # detach_reset
    )
    if case[0] is not None or case[1]  # IF has no decay_input option
]


@pytest.mark.parametrize(("tau", "decay_input", "v_reset", "detach_reset"), CASES)
def test_input_gradient_equals_bptt_formula(tau, decay_input, v_reset, detach_reset):
    T, N, theta, alpha = 12, 40, 1.0, 4.0
    x = (torch.rand(T, N, dtype=torch.float64) * 2.6 - 0.3).requires_grad_()
    grad_s = torch.randn(T, N, dtype=torch.float64)
    kw = dict(v_reset=v_reset, detach_reset=detach_reset, surrogate_function=Sigmoid(alpha))
    node = IFNode(**kw) if tau is None else LIFNode(tau=tau, decay_input=decay_input, **kw)
    s = node(x)
    (s * grad_s).sum().backward()
    expected, _ = bptt_by_hand(
        x.detach(), grad_s, tau, decay_input, v_reset, detach_reset, theta, alpha
    )
    assert s.sum() > 0, "the test needs some spikes to exercise the reset branch"
    torch.testing.assert_close(x.grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_plif_time_constant_gradient(decay_input, v_reset, detach_reset):
    T, N, alpha = 10, 30, 4.0
    init_tau = 3.0
    x = (torch.rand(T, N, dtype=torch.float64) * 1.5).requires_grad_()
    grad_s = torch.randn(T, N, dtype=torch.float64)
    node = ParametricLIFNode(
        init_tau=init_tau,
        decay_input=decay_input,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=Sigmoid(alpha),
    ).double()
    (node(x) * grad_s).sum().backward()
    tau = 1.0 / torch.sigmoid(node.w.detach()).item()  # w was initialised in float32
    grad_x, grad_k = bptt_by_hand(
        x.detach(), grad_s, tau, decay_input, v_reset, detach_reset, 1.0, alpha
    )
    torch.testing.assert_close(x.grad, grad_x, rtol=1e-10, atol=1e-12)
    sig = torch.sigmoid(node.w.detach())
    expected_w = grad_k * sig * (1 - sig)  # d(1/tau)/dw = sigmoid'(w)
    torch.testing.assert_close(node.w.grad, expected_w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("decay_input", [True, False])
def test_gradcheck_float64_smooth_surrogate(v_reset, decay_input):
    """gradcheck through the whole loop, including PLIF's w and a learnable threshold.

    detach_reset=True deliberately drops a term of the true gradient, so gradcheck
    applies to detach_reset=False; the detached variant is checked against the
    hand-derived formula above.
    """
    node = ParametricLIFNode(
        init_tau=2.5,
        decay_input=decay_input,
        v_reset=v_reset,
        surrogate_function=ATan(spiking=False),
        v_threshold=torch.tensor([0.8, 1.0, 1.2]),
        learnable_threshold=True,
    ).double()
    x = (torch.rand(6, 2, 3, dtype=torch.float64) * 2).requires_grad_()

    w = node.w.detach().clone().requires_grad_()
    theta = node.v_threshold.detach().clone().requires_grad_()

    def f(x, w, theta):
        return torch.func.functional_call(node, {"w": w, "v_threshold": theta}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, theta))


def test_learnable_threshold_receives_gradient():
    node = LIFNode(v_threshold=torch.full((4,), 0.7), learnable_threshold=True)
    x = torch.rand(8, 3, 4) * 2
    node(x).sum().backward()
    assert node.v_threshold.grad is not None
    assert node.v_threshold.grad.shape == (4,)
    assert (node.v_threshold.grad != 0).all()


def test_detach_reset_changes_gradient_only():
    x = torch.rand(10, 50, dtype=torch.float64) * 2
    outs, grads = [], []
    for detach in (False, True):
        xi = x.clone().requires_grad_()
        s = LIFNode(detach_reset=detach)(xi)
        s.sum().backward()
        outs.append(s)
        grads.append(xi.grad)
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])
