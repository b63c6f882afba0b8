"""DH-LIF (Zheng et al., Nature Communications 2024) and its dendritic layers.

Against a transcription, written here, of the authors' step (eva1801/DH-SNN: the branch
update of ``spike_rnn_test_denri_wotanh_R.forward``, then ``mem_update_pra``; float64):
identical spikes and membranes, and the gradients of the branch currents and of both
learnable timing factors (``tau_n`` per branch, ``tau_m`` per soma), per layer and per
neuron, through the reference loop, the fused C kernels and Triton (its interpreter
without a GPU), with spikeflow's Sigmoid and with the authors' multi-Gaussian. The whole
DH-SRNN layer (masked dense over ``[x, previous spikes]``) against the authors' layer,
weights' gradient included. gradcheck of the branch filter's own backward and of the
neuron; the filter's C kernel against its torch loop (and gradcheck), and which backend
runs it; chunked and single-step streaming equal one call; reset and detach reach the
branches; the mask; the errors.
"""

from __future__ import annotations

import pytest
import torch

from conftest import fused_backends, kernel_device
from gradchecks import gradcheck_backend
from neuron_references import compare_with_reference, sigmoid_spike
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers import DendriticLinear, DendriticRecurrent, dendritic_mask
from spikeflow.models import create_model
from spikeflow.neurons import DendriticBranches, DHLIFNode
from spikeflow.neurons.dh_lif import _BranchCurrent, _BranchFilter
from spikeflow.surrogate import MultiGaussian, Sigmoid
from test_surrogate_gaussian_mixture import TCLIFMultiGaussianSpike

BACKENDS = fused_backends("torch")
F64 = torch.float64


def authors_step(x_t, d, mem, spike, tau_n, tau_m, theta, spike_fn, detach=False):
    """One step of the authors' DH-LIF: branch currents, their sum, ``mem_update_pra``
    (``mem = mem α + (1 - α) I - θ S'``, then ``S = spike(mem - θ)``)."""
    beta = torch.sigmoid(tau_n)
    d = beta * d + (1 - beta) * x_t
    alpha = torch.sigmoid(tau_m)
    reset = spike.detach() if detach else spike
    mem = mem * alpha + (1 - alpha) * d.sum(-1) - theta * reset
    return d, mem, spike_fn(mem - theta)


def authors_loop(x, tau_n, tau_m, theta=1.0, spike_fn=sigmoid_spike, detach=False):
    d = torch.zeros_like(x[0])
    mem = torch.zeros_like(x[0, ..., 0])
    spike = torch.zeros_like(mem)
    spikes, mems = [], []
    for x_t in x:
        d, mem, spike = authors_step(x_t, d, mem, spike, tau_n, tau_m, theta, spike_fn, detach)
        spikes.append(spike)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def _node(backend, shape, branches=3, seed=0, **kw):
    torch.manual_seed(seed)
    node = DHLIFNode(branches, shape, backend=backend, store_v_seq=True, **kw).double()
    return node.to(kernel_device(backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [None, 5], ids=["per-layer", "per-neuron"])
@pytest.mark.parametrize("mode", ["sigmoid", "sigmoid-detach", "authors-mg"])
def test_equals_the_authors_step(backend, shape, mode):
    """The authors' multi-Gaussian fires on ``>``: with MultiGaussian and strict_firing,
    their spike function exactly."""
    device = kernel_device(backend)
    kw, spike_fn = {"detach_reset": mode == "sigmoid-detach"}, sigmoid_spike
    if mode == "authors-mg":
        kw = {"surrogate_function": MultiGaussian(), "strict_firing": True}
        spike_fn = TCLIFMultiGaussianSpike.apply
    node = _node(backend, shape, **kw)
    torch.manual_seed(1)
    x = (torch.rand(20, 2, 5, 3, dtype=F64, device=device) * 1.6 - 0.2).requires_grad_()
    g = torch.randn(20, 2, 5, dtype=F64, device=device)
    s = node(x)
    params = [node.dendrites.tau_n, node.tau_m]
    got = torch.autograd.grad((s * g).sum() + node.v_seq.sum(), [x, *params])
    x_ref = x.detach().clone().requires_grad_()
    p_ref = [p.detach().clone().requires_grad_() for p in params]
    s_ref, v_ref = authors_loop(x_ref, *p_ref, spike_fn=spike_fn, detach=mode == "sigmoid-detach")
    want = torch.autograd.grad((s_ref * g).sum() + v_ref.sum(), [x_ref, *p_ref])
    compare_with_reference(s, node.v_seq, got, s_ref, v_ref, want, ["x", "tau_n", "tau_m"])


def test_dh_srnn_layer_equals_the_authors_layer():
    """DendriticRecurrent(DHLIFNode) against the authors' DH-SRNN layer: masked dense
    over [x, previous spikes], branch update, sum, soma; the gradients of the weights,
    the bias, both timing factors and the input."""
    torch.manual_seed(0)
    n_in, n, k = 7, 6, 4
    node = DHLIFNode(k, n, surrogate_function=MultiGaussian(), strict_firing=True,
                     step_mode="s", backend="torch")  # fmt: skip
    layer = DendriticRecurrent(node, n_in, n, k).double()
    with torch.no_grad():
        layer.dense.weight.mul_(3.0)  # a lively layer
        layer.dense.bias.add_(0.4)
    x = torch.rand(25, 3, n_in, dtype=F64).requires_grad_()
    g = torch.randn(25, 3, n, dtype=F64)
    y = layer(x)
    params = [layer.dense.weight, layer.dense.bias, node.dendrites.tau_n, node.tau_m]
    got = torch.autograd.grad((y * g).sum(), [x, *params])

    x_ref = x.detach().clone().requires_grad_()
    w, b, tau_n, tau_m = (p.detach().clone().requires_grad_() for p in params)
    mask = layer.dense.mask
    d = torch.zeros(3, n, k, dtype=F64)
    mem = torch.zeros(3, n, dtype=F64)
    spike = torch.zeros(3, n, dtype=F64)
    outs = []
    for x_t in x_ref:
        current = torch.nn.functional.linear(torch.cat([x_t, spike], 1), w * mask, b)
        d, mem, spike = authors_step(current.reshape(-1, n, k), d, mem, spike, tau_n, tau_m,
                                     1.0, TCLIFMultiGaussianSpike.apply)  # fmt: skip
        outs.append(spike)
    y_ref = torch.stack(outs)
    want = torch.autograd.grad((y_ref * g).sum(), [x_ref, w, b, tau_n, tau_m])
    assert torch.equal(y, y_ref) and 0.05 < y.mean().item() < 0.9
    for name, a, e in zip(["x", "weight", "bias", "tau_n", "tau_m"], got, want, strict=True):
        assert e.abs().sum() > 0, name
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12, msg=name)
    assert got[1][mask == 0].abs().sum() == 0  # no gradient outside the mask


def test_branch_filter_gradcheck():
    """The filter's own backward, broadcast factors and a carried start included."""
    torch.manual_seed(0)
    x = torch.randn(6, 2, 3, 4, dtype=F64, requires_grad=True)
    beta = torch.rand(3, 4, dtype=F64, requires_grad=True)
    d0 = torch.randn(2, 1, 4, dtype=F64).expand(2, 3, 4).clone().requires_grad_()
    assert torch.autograd.gradcheck(_BranchFilter.apply, (x, beta, d0))
    beta_layer = torch.rand(4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(_BranchFilter.apply, (x, beta_layer, d0))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("last_grad", [True, False], ids=["state-grad", "no-state-grad"])
@pytest.mark.parametrize(
    "shape, beta_shape, d0_shape",
    [((7, 3, 5, 4), (5, 4), (3, 5, 4)),  # per neuron, carried start
     ((1, 4, 3), (3,), (4, 3)),  # one step (a recurrent layer's call), per layer
     ((9, 2, 700, 2), (700, 2), (1, 700, 2)),  # 1400 neurons: full blocks and a partial one
     ((3, 2, 3, 600), (600,), (2, 3, 600))],  # K over a block: one neuron per block
)  # fmt: skip
def test_branch_kernel_equals_the_loop(dtype, last_grad, shape, beta_shape, d0_shape):
    """The C kernel (filter and sum over the branches) against the torch loop and
    ``sum(-1)``: the sums, the carried d[T-1], dx and dd0 to rounding (the same
    operations), dbeta to the order of its sum over time; with and without a gradient
    reaching the carried state (a later chunk's)."""
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    beta = torch.rand(beta_shape, dtype=dtype, requires_grad=True)
    d0 = torch.randn(d0_shape, dtype=dtype).expand(shape[1:]).clone().requires_grad_()
    g, g_last = torch.randn(shape[:-1], dtype=dtype), torch.randn(shape[1:], dtype=dtype)
    d = _BranchFilter.apply(x, beta, d0)
    loop = (d.sum(-1), d[-1])
    fused = _BranchCurrent.apply(x, beta, d0)
    runs = []
    for total, last in (loop, fused):
        loss = (total * g).sum() + ((last * g_last).sum() if last_grad else 0)
        runs.append((total, last, *torch.autograd.grad(loss, (x, beta, d0))))
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == F64 else {"rtol": 1e-5, "atol": 1e-5}
    for name, want, got in zip(["sum", "d_last", "x", "beta", "d0"], *runs, strict=True):
        assert want.abs().sum() > 0, name
        torch.testing.assert_close(got, want, **tol, msg=name)


def test_branch_kernel_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(6, 2, 3, 4, dtype=F64, requires_grad=True)
    beta = torch.rand(3, 4, dtype=F64, requires_grad=True)
    d0 = torch.randn(2, 3, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(_BranchCurrent.apply, (x, beta, d0))


def test_branch_filter_backend_choice(monkeypatch):
    """'auto' and 'cpu' run the C kernel on CPU float32/float64, 'torch' the loop, and
    mixed dtypes (autocast's bfloat16 currents, float32 factors) the loop; 'cpu' names
    what it cannot run."""
    from spikeflow.neurons import dh_lif

    calls = []
    kernel = dh_lif.branch_filter_forward
    monkeypatch.setattr(dh_lif, "branch_filter_forward", lambda *a: calls.append(1) or kernel(*a))
    x = torch.rand(4, 2, 5, 3)
    for backend, expected in [("auto", 1), ("cpu", 1), ("torch", 0)]:
        calls.clear()
        DHLIFNode(3, 5, backend=backend)(x)
        assert len(calls) == expected, backend
    calls.clear()
    out = DHLIFNode(3, 5)(x.bfloat16())
    assert not calls and out.dtype == torch.float32
    with pytest.raises(ConfigurationError, match=r"backend='cpu'.*torch.bfloat16"):
        DHLIFNode(3, 5, backend="cpu").bfloat16()(x.bfloat16())


def test_reset_and_detach_reach_the_branches():
    """``node.reset()`` forgets the branch currents too (a new sequence starts from 0),
    and ``node.detach()`` cuts their graph (truncated BPTT)."""
    node = _node("torch", 4)
    x = (torch.rand(6, 2, 4, 3, dtype=F64) * 2).requires_grad_()
    fresh = node(x)
    with F.streaming(node):
        node(x)
        node.detach()
        assert not node.dendrites.state["d"].requires_grad
        node.reset()
        assert node.dendrites.state is None
        assert torch.equal(node(x), fresh)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    """Spikes and membrane against the input, both timing factors and the threshold,
    with a smooth surrogate."""
    device = kernel_device(backend)
    node = _node(backend, 2, branches=2, surrogate_function=Sigmoid(alpha=2.0, spiking=False),
                 v_threshold=torch.tensor([0.4, 0.6]), learnable_threshold=True)  # fmt: skip
    x = (torch.rand(5, 1, 2, 2, dtype=F64, device=device) * 2).requires_grad_()
    theta = node.v_threshold.detach().clone().requires_grad_()
    tau_m = node.tau_m.detach().clone().requires_grad_()
    tau_n = node.dendrites.tau_n.detach().clone().requires_grad_()

    def through(name):
        def f(x, theta, tau_m, tau_n):
            node.backend = name
            values = {"v_threshold": theta, "tau_m": tau_m, "dendrites.tau_n": tau_n}
            s = torch.func.functional_call(node, values, (x,))
            return torch.cat([s, node.v_seq])

        return f

    gradcheck_backend(backend, through(backend), (x, theta, tau_m, tau_n), through("torch"))


def test_streaming_in_chunks_and_single_steps_equals_one_call():
    node = _node("cpu", 4)
    x = torch.rand(12, 2, 4, 3, dtype=F64) * 1.5
    whole = node(x)
    with F.streaming(node):
        parts = torch.cat([node(c) for c in x.split([5, 7])])
    assert torch.equal(whole, parts)
    F.set_step_mode(node, "s")
    with F.streaming(node):
        steps = torch.stack([node(x_t) for x_t in x])
        assert node.dendrites.state["d"].shape == (2, 4, 3)
    assert torch.equal(whole, steps)


def test_dendritic_mask_and_linear():
    torch.manual_seed(0)
    mask = dendritic_mask(10, 5, 4).view(5, 4, 10)
    # every input reaches exactly one branch of each neuron, in groups of 3 (10 padded
    # to 12 with 2 absent inputs: a group holds 1 to 3 present ones)
    assert torch.equal(mask.sum(1), torch.ones(5, 10))
    assert mask.sum(2).max() == 3 and mask.sum(2).min() >= 1
    assert torch.equal(dendritic_mask(12, 5, 4).view(5, 4, 12).sum(2), torch.full((5, 4), 3.0))
    assert not torch.equal(mask[0], mask[1])  # a permutation per neuron
    layer = DendriticLinear(10, 5, 4)
    x = torch.rand(3, 2, 10)
    out = layer(x)
    assert out.shape == (3, 2, 5, 4)
    want = x @ (layer.weight * layer.mask).T + layer.bias
    torch.testing.assert_close(out, want.view(3, 2, 5, 4))
    out.sum().backward()
    assert layer.weight.grad[layer.mask == 0].abs().sum() == 0
    assert layer.weight.grad[layer.mask == 1].abs().sum() > 0


def test_dh_srnn_seq_model():
    torch.manual_seed(0)
    net = create_model("dh_srnn_seq", hidden=12, branches=3, in_channels=1,
                       neuron_kwargs={"surrogate_function": "multi_gaussian"})  # fmt: skip
    out = net(torch.rand(16, 2, 1, 4, 4))
    assert out.shape == (1, 2, 10)
    layers = [m for m in net.modules() if isinstance(m, DendriticRecurrent)]
    assert len(layers) == 2 and isinstance(layers[0].sub_module.surrogate_function, MultiGaussian)
    total = sum(p.numel() for p in net.parameters())
    # each neuron's branches share its 24 inputs: 12 x 24 weights learned of 36 x 24
    assert net.effective_parameters() == total - 2 * (36 * 24 - 12 * 24)
    # the masks are saved with the weights: a checkpoint rebuilds the same network
    torch.manual_seed(1)
    other = create_model("dh_srnn_seq", hidden=12, branches=3, in_channels=1)
    assert not torch.equal(other.core[1].dense.mask, net.core[1].dense.mask)
    other.load_state_dict(net.state_dict())
    assert torch.equal(other.core[1].dense.mask, net.core[1].dense.mask)
    x = torch.rand(16, 2, 1, 4, 4)
    assert torch.equal(other(x), net(x))


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: DHLIFNode(branches=0), ConfigurationError, "branches"),
        (lambda: DHLIFNode(shape=0), ConfigurationError, "shape"),
        (lambda: DHLIFNode(tau_m_range=(3.0, 1.0)), ConfigurationError, "tau_m_range"),
        (lambda: DHLIFNode(tau_n_range=(0.0,)), ConfigurationError, "tau_n_range"),
        (lambda: DHLIFNode(v_reset=0.0), TypeError, "v_reset"),
        (lambda: DHLIFNode(4)(torch.rand(3, 2, 5, 3)), ShapeError,
         r"branches=4.*\[T, B, \.\.\., N, 4\]"),
        (lambda: DHLIFNode(2, 5)(torch.rand(3, 2, 4, 2)), ShapeError, "tau_n"),
        (lambda: DendriticBranches(2)(torch.rand(3, 2)), ShapeError, "branches=2"),
        (lambda: DHLIFNode(2)(torch.rand(3, 2, 5, 2).long()), Exception, "floating-point"),
        (lambda: DendriticLinear(4, 3, 2)(torch.rand(2, 5)), ShapeError, "in_features=4"),
        (lambda: DendriticRecurrent(DHLIFNode(2, step_mode="s"), 4, 3, 2)(torch.rand(5, 2, 6)),
         ShapeError, "in_features=4"),
    ],
)  # fmt: skip
def test_errors(build, error, match):
    with pytest.raises(error, match=match):
        build()
