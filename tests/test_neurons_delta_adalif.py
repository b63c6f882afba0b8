"""snnTorch's ``DeltaLeaky`` (``DeltaLeakyNode``) and Norse's ``ada_lif_step``
(``AdaLIFNode``): hand-computed steps; spikes, membranes and float64 gradients equal to
the installed peer's own loop on the reference loop, the C kernel and Triton (its
interpreter without a GPU), several shapes and parameters (per-neuron tensors, learned
``beta``), Norse's recurrent weights through ``layers.Recurrent``; float64 gradcheck of
the learnable parameters on the C kernel; chunked streaming; snnTorch's own float32
``atan()``; the errors.
"""

from __future__ import annotations

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from snntorch_checks import atan64, f64
from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.neurons import AdaLIFNode, DeltaLeakyNode
from spikeflow.surrogate import Sigmoid, SuperSpike
from streaming_checks import check_chunked_streaming

F64 = torch.float64
BACKENDS = fused_backends("torch")
#: A smooth spike (the surrogate's primitive) for gradcheck.
SMOOTH = Sigmoid(2.0, spiking=False)


def _steps(backend):
    """Enough steps for the C kernel's checkpointed backward; few for the interpreter."""
    return 8 if backend == "triton" else CHECKPOINT + 4


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


def _assert_grads(got, want):
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert b.abs().sum() > 0, f"gradient {i} is zero"
        torch.testing.assert_close(a.cpu(), b, atol=1e-12, rtol=1e-10, msg=f"gradient {i}")


# -- DeltaLeaky ------------------------------------------------------------------------------


def test_delta_leaky_by_hand():
    # β 1/2, θ_Δ 1/2: U = 1.5 (D = 1.5: fires), 0.75 (D = -0.75: fires, a fall),
    # 0.875 (D = 0.125: silent), 0.4375 + 1 (D = 1 - 0.4375 > 0.5: fires). No reset.
    node = DeltaLeakyNode(0.5, delta_threshold=0.5, store_v_seq=True)
    x = torch.tensor([1.5, 0.0, 0.5, 1.0]).view(4, 1, 1)
    assert node(x).flatten().tolist() == [1.0, 1.0, 0.0, 1.0]
    assert node.v_seq.flatten().tolist() == [1.5, 0.75, 0.875, 1.4375]
    # |D| = θ_Δ exactly fires only with strict_firing=False.
    x = torch.tensor([0.5, 0.25]).view(2, 1, 1)
    assert DeltaLeakyNode(0.5, 0.5)(x).flatten().tolist() == [0.0, 0.0]
    loose = DeltaLeakyNode(0.5, 0.5, strict_firing=False)
    assert loose(x).flatten().tolist() == [1.0, 0.0]


def _snn_delta(cell, x):
    """snnTorch's per-step loop of ``DeltaLeaky``: spikes and membranes."""
    spikes, mems, state = [], [], (None, None)
    for x_t in x:
        spk, state = cell(x_t, state)
        spikes.append(spk)
        mems.append(state[0])
    return torch.stack(spikes), torch.stack(mems)


DELTA_CASES = [  # (beta, delta_threshold, input shape [B, ...], learn_beta)
    (0.9, 0.4, (3, 5), False),
    ([0.95, 0.5, 0.8, 0.0, 1.0], 0.3, (2, 5), True),  # per neuron, both ends of [0, 1]
    (0.7, 0.25, (2, 3, 4), True),  # [B, C, N] steps
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("beta, theta, shape, learn", DELTA_CASES)
def test_delta_leaky_equals_snntorch(backend, beta, theta, shape, learn):
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    device = kernel_device(backend)
    torch.manual_seed(2)
    x = (torch.randn(_steps(backend), *shape, dtype=F64) * 0.6).requires_grad_()
    theirs = snn.DeltaLeaky(delta_threshold=theta, beta=f64(beta), spike_grad=atan64,
                            learn_beta=learn)  # fmt: skip
    node = DeltaLeakyNode(f64(beta), theta, learn_beta=learn, store_v_seq=True,
                          backend=backend).to(device)  # fmt: skip
    spk, mem = _snn_delta(theirs, x)
    xx = x.detach().to(device).requires_grad_()
    s = node(xx)
    assert torch.equal(s.detach().cpu(), spk.detach())
    assert 0.05 < spk.mean().item() < 0.9
    torch.testing.assert_close(node.v_seq.detach().cpu(), mem.detach(), atol=1e-12, rtol=0)
    g = torch.randn_like(x)
    ours, want = [xx], [x]
    if learn:
        ours.append(node.beta)
        want.append(theirs.beta)
    got = _grads((s * g.to(device)).sum() + (node.v_seq**2).sum(), ours)
    _assert_grads(got, _grads((spk * g).sum() + (mem**2).sum(), want))


def test_delta_leaky_snntorch_defaults_float32():
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    torch.manual_seed(3)
    x = (torch.randn(20, 4, 6) * 0.8).requires_grad_()
    theirs = snn.DeltaLeaky(delta_threshold=0.5, beta=0.8)  # its own atan(), float32
    spk, mem = _snn_delta(theirs, x)
    node = DeltaLeakyNode(0.8, 0.5, store_v_seq=True)
    s = node(x)
    assert torch.equal(s, spk) and 0.05 < spk.mean().item() < 0.9
    torch.testing.assert_close(node.v_seq, mem)
    got = _grads(s.sum(), [x])
    torch.testing.assert_close(got[0], _grads(spk.sum(), [x])[0], atol=1e-6, rtol=1e-5)


def test_delta_leaky_gradcheck_c_kernel():
    """float64 gradcheck (smooth spikes) of the C kernel's outputs and membranes."""
    torch.manual_seed(4)
    x = (torch.randn(CHECKPOINT + 3, 2, 3, dtype=F64) * 0.7).requires_grad_()

    def run(backend):
        node = DeltaLeakyNode(f64([0.9, 0.6, 0.3]), f64([0.3, 0.4, 0.2]), backend=backend,
                              surrogate_function=SMOOTH, store_v_seq=True)  # fmt: skip
        return lambda x: (node(x), node.v_seq)

    gradcheck_backend("cpu", run("cpu"), (x,), run("torch"))


def test_delta_leaky_learned_threshold_c_kernel():
    """The C kernel's gradients of a per-neuron θ_Δ and β equal the reference loop's."""
    torch.manual_seed(4)
    x = torch.randn(CHECKPOINT + 3, 2, 3, dtype=F64) * 0.7
    g = torch.randn_like(x)
    grads = []
    for backend in ("torch", "cpu"):
        node = DeltaLeakyNode(f64([0.9, 0.6, 0.3]), f64([0.3, 0.4, 0.2]), learn_beta=True,
                              learn_delta_threshold=True, backend=backend)  # fmt: skip
        grads.append(_grads((node(x) * g).sum(), [node.v_threshold, node.beta]))
    _assert_grads(grads[1], grads[0])


def test_delta_leaky_chunked_streaming():
    torch.manual_seed(5)
    x = torch.randn(23, 2, 4, dtype=F64) * 0.6
    make = lambda: DeltaLeakyNode(f64([0.9, 0.5, 0.7, 0.2]), 0.3, learn_beta=True)  # noqa: E731
    check_chunked_streaming(make, x, "beta")


def test_delta_leaky_errors():
    with pytest.raises(ConfigurationError, match="delta_threshold must be > 0"):
        DeltaLeakyNode(0.5, delta_threshold=0.0)
    with pytest.raises(ConfigurationError, match="beta must be in"):
        DeltaLeakyNode(1.5)
    with pytest.raises(ConfigurationError, match="learn_beta"):
        DeltaLeakyNode(0.5, learn_beta="yes")
    assert "delta_threshold=0.3" in repr(DeltaLeakyNode(0.5, 0.3))


# -- Norse's ada_lif_step --------------------------------------------------------------------


def test_ada_lif_by_hand():
    # dt/τ_mem = 1/2, τ_syn = τ_adapt = dt (current and adaptation last one step), β 1,
    # θ 1, V_r 0.25. Step 0: H = 0 (I = 0), I = 4. Step 1: H = 0 + (0 + 4 - 0)/2 = 2
    # fires, V = 2 - 0.75 = 1.25, B = 1. Step 2: H = 1.25 + (-1.25 + 0 - 1)/2 = 0.125.
    node = AdaLIFNode(tau_syn=1.0, tau_mem=2.0, tau_adapt=1.0, beta=1.0, v_reset=0.25,
                      store_v_seq=True)  # fmt: skip
    x = torch.tensor([4.0, 0.0, 0.0]).view(3, 1, 1)
    assert node(x).flatten().tolist() == [0.0, 1.0, 0.0]
    assert node.v_seq.flatten().tolist() == [0.0, 1.25, 0.125]


def _norse_params(v_leak, v_reset, beta, tau_adapt_inv=20.0):
    from norse.torch.functional.lsnn import LSNNParameters

    return LSNNParameters(
        tau_syn_inv=f64(200.0), tau_mem_inv=f64(100.0), tau_adapt_inv=f64(tau_adapt_inv),
        v_leak=torch.as_tensor(v_leak, dtype=F64), v_th=f64(1.0), v_reset=f64(v_reset),
        beta=torch.as_tensor(beta, dtype=F64), method="super", alpha=100.0,
    )  # fmt: skip


def _norse_run(x, w_in, w_rec, p, dt):
    """Norse's ``ada_lif_step`` loop from rest (``v = v_leak``): spikes, v, b."""
    from norse.torch.functional.lsnn import LSNNState, ada_lif_step

    shape = (x.shape[1], w_in.shape[0])
    zeros = torch.zeros(shape, dtype=F64)
    state = LSNNState(zeros, zeros + p.v_leak, zeros, zeros)
    spikes, vs, bs = [], [], []
    for x_t in x:
        z, state = ada_lif_step(x_t, state, w_in, w_rec, p, dt)
        spikes.append(z)
        vs.append(state.v)
        bs.append(state.b)
    return torch.stack(spikes), torch.stack(vs), torch.stack(bs)


ADA_CASES = [  # (v_leak, v_reset, beta): scalars, then per neuron
    (0.1, -0.2, 1.8),
    ([0.0, 0.2, -0.1, 0.05], 0.0, [1.8, 0.5, 3.0, 0.0]),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("v_leak, v_reset, beta", ADA_CASES)
def test_ada_lif_equals_norse(backend, v_leak, v_reset, beta):
    pytest.importorskip("norse", reason="Norse is not installed")
    device = kernel_device(backend)
    dt, n = 1e-3, 4
    torch.manual_seed(6)
    x = (torch.rand(_steps(backend) + 10, 3, n, dtype=F64) * 12).requires_grad_()
    p = _norse_params(v_leak, v_reset, beta)
    spk, v, _ = _norse_run(x, torch.eye(n, dtype=F64), torch.zeros(n, n, dtype=F64), p, dt)

    def value(a):
        return torch.tensor(a, dtype=F64) if isinstance(a, list) else a

    node = AdaLIFNode(
        tau_syn=1 / 200, tau_mem=1 / 100, tau_adapt=1 / 20, v_leak=value(v_leak),
        beta=value(beta), dt=dt, v_threshold=1.0, v_reset=v_reset, strict_firing=True,
        surrogate_function=SuperSpike(alpha=1.0), store_v_seq=True, backend=backend,
    ).to(device)  # fmt: skip
    xx = x.detach().to(device).requires_grad_()
    s = node(xx)
    assert torch.equal(s.detach().cpu(), spk.detach())
    assert 0.05 < spk.mean().item() < 0.9
    torch.testing.assert_close(node.v_seq.detach().cpu(), v.detach(), atol=1e-12, rtol=0)
    g = torch.randn_like(x)
    got = _grads((s * g.to(device)).sum() + node.v_seq.sum(), [xx])
    _assert_grads(got, _grads((spk * g).sum() + v.sum(), [x]))


def test_ada_lif_recurrent_equals_norse():
    """Norse's input and recurrent weights: a bias-free Linear and layers.Recurrent."""
    pytest.importorskip("norse", reason="Norse is not installed")
    dt, n_in, n = 1e-3, 5, 6
    torch.manual_seed(7)
    x = (torch.rand(30, 2, n_in, dtype=F64) * 8).requires_grad_()
    w_in = (torch.rand(n, n_in, dtype=F64) * 1.5).requires_grad_()
    w_rec = (torch.randn(n, n, dtype=F64) * 2).requires_grad_()
    p = _norse_params(0.0, 0.0, 1.8, tau_adapt_inv=1 / 800)
    spk, _, _ = _norse_run(x, w_in, w_rec, p, dt)
    node = AdaLIFNode(tau_syn=1 / 200, tau_mem=1 / 100, tau_adapt=800.0, dt=dt,
                      strict_firing=True, surrogate_function=SuperSpike(alpha=1.0),
                      step_mode="s")  # fmt: skip
    linear = layers.Linear(n_in, n, bias=False).double()
    recurrent = layers.Recurrent(node, n).double()
    with torch.no_grad():
        linear.weight.copy_(w_in)
        recurrent.recurrent.weight.copy_(w_rec)
    s = recurrent(linear(x))
    assert torch.equal(s, spk) and 0.05 < spk.mean().item() < 0.9
    g = torch.randn_like(spk)
    got = _grads((s * g).sum(), [x, linear.weight, recurrent.recurrent.weight])
    _assert_grads(got, _grads((spk * g).sum(), [x, w_in, w_rec]))


def test_ada_lif_gradcheck_c_kernel():
    """float64 gradcheck (smooth spikes) of the C kernel's outputs and membranes."""
    torch.manual_seed(8)
    x = (torch.rand(CHECKPOINT + 3, 2, 3, dtype=F64) * 3).requires_grad_()

    def run(backend):
        def fn(x):
            node = AdaLIFNode(tau_syn=2.0, tau_mem=3.0, tau_adapt=5.0, v_leak=0.1, beta=0.5,
                              v_reset=-0.1, backend=backend, surrogate_function=SMOOTH,
                              store_v_seq=True)  # fmt: skip
            return node(x), node.v_seq

        return fn

    gradcheck_backend("cpu", run("cpu"), (x,), run("torch"))


def test_ada_lif_chunked_streaming():
    torch.manual_seed(9)
    x = torch.rand(23, 2, 4, dtype=F64) * 3
    make = lambda: AdaLIFNode(tau_syn=2.0, tau_mem=3.0, tau_adapt=6.0, beta=0.8, v_leak=0.1,  # noqa: E731
                              learnable_threshold=True)  # fmt: skip
    check_chunked_streaming(make, x, "v_threshold")


def test_ada_lif_errors():
    with pytest.raises(ConfigurationError, match="v_reset must be a float"):
        AdaLIFNode(v_reset=None)
    with pytest.raises(ConfigurationError, match="tau_adapt must be >= dt"):
        AdaLIFNode(tau_adapt=0.5)
    with pytest.raises(ConfigurationError, match="dt must be"):
        AdaLIFNode(dt=0.0)
    with pytest.raises(ConfigurationError, match="beta must be finite"):
        AdaLIFNode(beta=float("nan"))
    # Norse's names (a TypeError of BaseNode.__init__ before) name what to pass instead
    with pytest.raises(ConfigurationError, match=r"\['tau_adapt_inv', 'v_th'\] are Norse's .*"
                       r"tau_adapt=1/tau_adapt_inv, v_th: v_threshold=v_th"):  # fmt: skip
        AdaLIFNode(tau_adapt_inv=1 / 800, v_th=1.0)
