"""A small spiking network compiles with torch.compile in one graph (no graph breaks)."""

from __future__ import annotations

import torch
from torch import nn

from spikeflow import layers
from spikeflow.neurons import LIFNode, ParametricLIFNode
from spikeflow.surrogate import ATan


def test_conv_snn_compiles_fullgraph_and_matches_eager():
    torch._dynamo.reset()
    net = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1),
        layers.BatchNorm2d(4),
        ParametricLIFNode(surrogate_function=ATan()),
        layers.MaxPool2d(2),
        layers.Flatten(),
        layers.Linear(4 * 4 * 4, 5),
        LIFNode(v_reset=None, detach_reset=True),
    ).eval()
    x = torch.rand(3, 2, 2, 8, 8, requires_grad=True)
    eager = net(x)
    eager.sum().backward()
    grad_eager = x.grad.clone()
    x.grad = None
    # fullgraph=True fails on any graph break; aot_eager traces forward and backward
    # without a C++ compile, keeping the test fast.
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(x.grad, grad_eager)


def test_explicit_fused_backend_runs_under_compile():
    """The fused kernels are custom operators: correct under torch.compile (one graph:
    tests/test_compile_fused.py)."""
    torch._dynamo.reset()
    net = nn.Sequential(
        nn.Linear(16, 32),
        ParametricLIFNode(backend="cpu"),
        nn.Linear(32, 4),
        LIFNode(backend="cpu"),
    )
    x = torch.rand(6, 8, 16, requires_grad=True)
    eager = net(x)
    eager.sum().backward()
    grad_eager, x.grad = x.grad.clone(), None
    out = torch.compile(net, backend="aot_eager")(x)
    out.sum().backward()
    assert torch.equal(out, eager)
    torch.testing.assert_close(x.grad, grad_eager)


def test_models_with_other_surrogate_parameters_compile_in_one_process():
    # torch.compile makes a float that changed since an earlier compilation of the same
    # code symbolic; the surrogate's backward then failed to trace its arithmetic on it
    # ("lift_tracked_freevar_to_input"): a second model with another alpha or another
    # surrogate could not be compiled in the same process.
    from spikeflow.surrogate import Rect, Sigmoid

    torch.manual_seed(0)
    for surrogate in (Sigmoid(alpha=4.0), Rect(alpha=1.0), Sigmoid(alpha=2.0)):
        neuron = LIFNode(tau=2.0, backend="torch", surrogate_function=surrogate)
        x = (torch.rand(6, 2, 5) * 2.5).requires_grad_()
        y = torch.compile(neuron)(x)
        (gx,) = torch.autograd.grad(y.sum(), x)
        xe = x.detach().clone().requires_grad_()
        ye = neuron(xe)
        (ge,) = torch.autograd.grad(ye.sum(), xe)
        assert torch.equal(y, ye) and torch.allclose(gx, ge), type(surrogate).__name__
