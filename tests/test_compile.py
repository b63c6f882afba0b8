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
