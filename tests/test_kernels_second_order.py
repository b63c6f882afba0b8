"""Second-order gradients through the fused kernels under ``spikeflow.kernels.second_order``.

The gradient's value is the fused backward's and its derivative the reference loop's
(recomputed during a ``create_graph=True`` backward). ``gradgradcheck`` in float64
checks those derivatives against finite differences of the fused gradients; the
Hessian-vector products and a MAML step are compared with ``backend="torch"``.

``gradgradcheck`` needs the gradient to be the derivative of what it differentiates:
a smooth surrogate forward (``spiking=False``) with the reset in the graph, or spikes
with ``detach_reset=True`` (the backward then reads the spikes as constants). Spikes
with the reset in the graph, or a smooth forward with a detached reset, fail it on the
reference loop too (the surrogate is not the spikes' derivative); there the fused
kernels are compared with the reference loop's double backward.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import fused_backends, kernel_device
from spikeflow.errors import ConfigurationError
from spikeflow.functional import set_streaming
from spikeflow.kernels import second_order
from spikeflow.kernels.cpu import run_cpu
from spikeflow.memory import Recomputed
from spikeflow.neurons import BaseNode, IzhikevichNode, LIFNode, ParametricLIFNode
from spikeflow.surrogate import ATan, Sigmoid

BACKENDS = fused_backends()
DT = torch.float64


def _through(node, backend, names=()):
    """``node`` run on ``backend`` as a function of its input and of the named
    parameters, its forward inside the opt-in."""

    def f(x, *tensors):
        node.backend = backend
        with second_order():
            return torch.func.functional_call(node, dict(zip(names, tensors)), (x,))

    return f


def _gradgradcheck(f, inputs):
    """``gradgradcheck``, after checking that every input's gradient has a graph
    (``gradgradcheck`` skips the gradients that do not require grad)."""
    outputs = f(*inputs)
    outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
    cotangents = [torch.randn_like(o) for o in outputs]
    grads = torch.autograd.grad(outputs, inputs, cotangents, create_graph=True)
    assert all(g.requires_grad for g in grads), [g.requires_grad for g in grads]
    assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("spiking", [True, False])
def test_gradgradcheck_lif_both_resets(v_reset, spiking):
    """Spikes with a detached reset, and the smooth forward with the reset in the graph."""
    surrogate = ATan(spiking=spiking)
    node = LIFNode(tau=2.0, v_reset=v_reset, detach_reset=spiking, surrogate_function=surrogate)
    x = (torch.rand(6, 2, 3, dtype=DT) * 2).requires_grad_()
    _gradgradcheck(_through(node.double(), "cpu"), (x,))


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_gradgradcheck_plif_tau_and_learnable_threshold(v_reset):
    node = ParametricLIFNode(
        init_tau=2.0,
        v_reset=v_reset,
        surrogate_function=ATan(spiking=False),
        v_threshold=torch.tensor([0.9, 1.1]),
        learnable_threshold=True,
    ).double()
    x = (torch.rand(5, 3, 2, dtype=DT) * 2).requires_grad_()
    w = node.w.detach().clone().requires_grad_()
    theta = node.v_threshold.detach().clone().requires_grad_()
    f = _through(node, "cpu", ("w", "v_threshold"))
    _gradgradcheck(f, (x, w, theta))


def test_gradgradcheck_izhikevich_through_its_initial_states():
    """Two states, passed as tensors (a streaming call's): their second derivatives go
    through the initial-state tensors the opt-in keeps."""
    node = IzhikevichNode(a=0.3, b=0.2, surrogate_function=ATan(spiking=False)).double()
    decl, rule, params = node.declaration(), node.firing_rule, node.neuron_params()

    def f(x, v0, w0):
        with second_order():
            spikes, final, _ = run_cpu(decl, x, {"v": v0, "w": w0}, params, 1.0, rule)
        return spikes, final["v"], final["w"]

    x = (torch.rand(5, 4, dtype=DT) * 1.5).requires_grad_()
    v0 = (torch.rand(4, dtype=DT) * 0.5).requires_grad_()
    w0 = (torch.rand(4, dtype=DT) * 0.2).requires_grad_()
    _gradgradcheck(f, (x, v0, w0))


class QuadraticAdaptive(BaseNode):
    """A user neuron: a learnable 0-dim coefficient and an adaptation state."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = nn.Parameter(torch.tensor(0.1))

    @staticmethod
    def charge(x, v, w, *, a):
        return 0.8 * v + torch.tanh(x) + a * v * v - w

    @staticmethod
    def update(h, s, w, *, b):
        return 0.5 * w + b * s

    def neuron_params(self):
        return {"a": self.a, "b": 0.3}

    def initial_state(self, like):
        return {**super().initial_state(like), "w": torch.zeros_like(like)}


def test_gradgradcheck_user_neuron_with_a_learnable_parameter():
    node = QuadraticAdaptive(surrogate_function=Sigmoid(spiking=False)).double()
    x = (torch.rand(6, 3, dtype=DT) * 2).requires_grad_()
    a = node.a.detach().clone().requires_grad_()
    _gradgradcheck(_through(node, "cpu", ("a",)), (x, a))


def _hvp(node, x, backend, vector):
    """The gradient of ``sum(spikes * weights)`` and its Hessian-vector product."""
    x = x.clone().requires_grad_()
    node.backend = backend
    with second_order():
        spikes = node(x)
    weights = torch.linspace(-1, 1, spikes.numel(), dtype=x.dtype, device=x.device)
    loss = (spikes.flatten() * weights).sum() + spikes.sum() ** 2 / spikes.numel()
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    (hv,) = torch.autograd.grad((g * vector).sum(), x)
    return g.detach(), hv


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_hessian_vector_product_equals_the_reference_loop(backend, v_reset, detach_reset):
    """With spikes (every reset rule, the reset in the graph or not): the same
    Hessian-vector product as backend='torch', and a gradient whose value is the fused
    kernel's first-order one, bit for bit."""
    device = kernel_device(backend)
    node = LIFNode(tau=2.0, v_reset=v_reset, detach_reset=detach_reset).double().to(device)
    x = torch.rand(8, 2, 5, dtype=DT, device=device) * 2
    vector = torch.randn_like(x)
    g_ref, hv_ref = _hvp(node, x, "torch", vector)
    g, hv = _hvp(node, x, backend, vector)
    assert hv_ref.abs().max() > 0.1  # the neuron's second-order terms are there
    torch.testing.assert_close(hv, hv_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(g, g_ref, atol=1e-12, rtol=1e-12)
    xf = x.clone().requires_grad_()
    node.backend = backend
    spikes = node(xf)  # without the opt-in or create_graph: the fused backward alone
    weights = torch.linspace(-1, 1, spikes.numel(), dtype=DT, device=device)
    loss = (spikes.flatten() * weights).sum() + spikes.sum() ** 2 / spikes.numel()
    assert torch.equal(g, torch.autograd.grad(loss, xf)[0])


def test_functional_hvp_and_state_gradients_with_plif():
    """torch.autograd.functional.hvp (the double-backward trick: a derivative with
    respect to the cotangent too) through PLIF, w.r.t. its time constant and the input."""
    node = ParametricLIFNode(init_tau=2.0).double()
    x = torch.rand(6, 3, 4, dtype=DT) * 2
    w = node.w.detach().clone()
    v = (torch.randn_like(x), torch.randn_like(w))
    results = []
    for backend in ("torch", "cpu"):

        def loss(x, w, backend=backend):
            node.backend = backend
            with second_order():
                out = torch.func.functional_call(node, {"w": w}, (x,))
            return (out.mean(0) ** 2).sum()

        results.append(torch.autograd.functional.hvp(loss, (x, w), v))
    (val_ref, (hx_ref, hw_ref)), (val, (hx, hw)) = results
    torch.testing.assert_close(val, val_ref, atol=1e-12, rtol=1e-12)
    assert hw_ref.abs() > 1e-3
    torch.testing.assert_close(hx, hx_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(hw, hw_ref, atol=1e-10, rtol=1e-10)


def _maml_outer_gradients(backend, second):
    """One MAML step of a Linear-LIF-Linear network: an inner SGD step on a support
    batch (create_graph when ``second``), the outer loss on a query batch through the
    adapted weights, its gradient with respect to the initial weights."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), LIFNode(tau=2.0, backend=backend), nn.Linear(16, 3))
    net = net.double()
    support, query = torch.rand(2, 10, 8, 4, dtype=DT) * 2  # [T, B, 4] each
    labels = torch.randint(0, 3, (2, 8))
    params = dict(net.named_parameters())

    def loss(weights, x, y):
        out = torch.func.functional_call(net, weights, (x,)).mean(0)
        return nn.functional.cross_entropy(out, y)

    with second_order():
        inner = loss(params, support, labels[0])
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=second)
        fast = {name: p - 0.5 * g for (name, p), g in zip(params.items(), grads)}
        outer = loss(fast, query, labels[1])
    return torch.autograd.grad(outer, list(params.values()))


def test_maml_inner_step_equals_the_reference_loop():
    exact = _maml_outer_gradients("cpu", second=True)
    reference = _maml_outer_gradients("torch", second=True)
    first_order = _maml_outer_gradients("cpu", second=False)
    for got, want in zip(exact, reference):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    # The second-order terms matter here: first-order MAML differs.
    assert (exact[0] - first_order[0]).abs().max() > 1e-4


def test_without_the_opt_in_a_double_backward_is_refused_by_name():
    x = (torch.rand(6, 3, 5, dtype=DT) * 2).requires_grad_()
    node = LIFNode(backend="cpu").double()
    for run in (lambda: node(x), lambda: _off(node, x)):  # no opt-in; switched off
        (g,) = torch.autograd.grad(run().sum() + (x**3).sum(), x, create_graph=True)
        with pytest.raises(ConfigurationError, match=r"spikeflow\.kernels\.second_order\(\)"):
            with second_order():  # too late: the forward decides what is kept
                torch.autograd.grad(g.pow(2).sum(), x)
    with pytest.raises(ConfigurationError, match="enabled must be a bool"):
        with second_order("yes"):
            pass


def _off(node, x):
    with second_order():
        with second_order(False):
            return node(x)


def test_the_opt_in_keeps_only_the_initial_states_more():
    """Saved for backward under the opt-in: the input, checkpoints and operands as
    before, plus the initial states passed as tensors (none for a fresh neuron)."""
    x = (torch.rand(32, 4, 64, dtype=torch.float32) * 2).requires_grad_()
    v0 = torch.rand(4, 64, requires_grad=True)
    decl = LIFNode().declaration()
    rule = LIFNode().firing_rule

    def saved_bytes(state, opt_in):
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), second_order(opt_in):
            run_cpu(decl, x, state, {"decay": 0.5, "v_rest": 0.0}, 1.0, rule)
        return sum(storages.values())

    assert saved_bytes({"v": 0.0}, True) == saved_bytes({"v": 0.0}, False)
    assert saved_bytes({"v": v0}, True) == saved_bytes({"v": v0}, False) + v0.numel() * 4


def test_a_surrogate_parameter_changed_before_the_backward_is_not_read():
    """As the reference loop's surrogate, the recompute uses the forward's alpha."""
    x = torch.rand(8, 2, 5, dtype=DT) * 2
    vector = torch.randn_like(x)
    node = LIFNode(tau=2.0, surrogate_function=Sigmoid(alpha=4.0)).double()
    _, want = _hvp(node, x, "cpu", vector)
    xg = x.clone().requires_grad_()
    with second_order():
        spikes = node(xg)
    node.surrogate_function.alpha = 1.0
    weights = torch.linspace(-1, 1, spikes.numel(), dtype=DT)
    loss = (spikes.flatten() * weights).sum() + spikes.sum() ** 2 / spikes.numel()
    (g,) = torch.autograd.grad(loss, xg, create_graph=True)
    torch.testing.assert_close(torch.autograd.grad((g * vector).sum(), xg)[0], want)


def test_a_recorded_membrane_in_the_loss():
    """store_v_seq: the recorded membrane's gradient enters the recompute too."""
    x = torch.rand(8, 3, 4, dtype=DT) * 2
    vector = torch.randn_like(x)
    results = []
    for backend in ("torch", "cpu"):
        node = ParametricLIFNode(init_tau=2.0, store_v_seq=True, backend=backend).double()
        xg = x.clone().requires_grad_()
        with second_order():
            spikes = node(xg)
        loss = (node.v_seq**2).sum() + spikes.sum()
        (g,) = torch.autograd.grad(loss, [xg], create_graph=True)
        results.append(torch.autograd.grad((g * vector).sum(), [xg, node.w]))
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def _recomputed_hvp(backend, time_chunks, streaming):
    """A Hessian-vector product through a memory.Recomputed block (checkpointed: its
    fused neuron runs again in the backward pass, outside the forward's opt-in)."""
    torch.manual_seed(0)
    block = nn.Sequential(LIFNode(tau=2.0, backend=backend), nn.Linear(8, 5))
    net = nn.Sequential(nn.Linear(6, 8), Recomputed(block, time_chunks=time_chunks)).double()
    set_streaming(net, streaming)
    x = (torch.rand(8, 3, 6, dtype=DT) * 2).requires_grad_()
    with second_order():
        y = net(x)
        if streaming:  # the second call's recomputation starts from a carried state
            y = torch.cat([y, net(x.flip(0))])
    (g,) = torch.autograd.grad((y.mean(0) ** 2).sum(), x, create_graph=True)
    vector = torch.linspace(-1, 1, g.numel(), dtype=DT).view_as(g)
    return g.detach(), torch.autograd.grad((g * vector).sum(), x)[0]


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("time_chunks", [1, 2])
def test_through_recomputed_blocks_and_time_chunks(time_chunks, streaming):
    """The recomputation keeps the forward's opt-in (and reads the saved tensors once,
    as torch.utils.checkpoint requires): the reference loop's Hessian-vector product."""
    g_ref, hv_ref = _recomputed_hvp("torch", time_chunks, streaming)
    g, hv = _recomputed_hvp("cpu", time_chunks, streaming)
    assert hv_ref.abs().max() > 1e-3
    torch.testing.assert_close(g, g_ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(hv, hv_ref, atol=1e-12, rtol=1e-10)
