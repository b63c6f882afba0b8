"""Equations whose Triton printing once went wrong: every fused backend must equal the
reference loop on them (Triton through its interpreter without a GPU). Their GPU
compilation is checked in tests/test_kernels_triton_aot.py."""

from __future__ import annotations

import pytest
import torch

from conftest import fused_backends, kernel_device
from sample_neurons import BooleanArithmetic, ConstantBase, RefractoryFlag, ScalarTrace
from spikeflow.neurons import BaseNode, LIFNode

BACKENDS = fused_backends()


class OddPower(BaseNode):
    """Integer powers of a negative base: x ** 5 and x ** -5 (no special case in
    PyTorch's pow) and x ** p with an integer-valued parameter p."""

    @staticmethod
    def charge(x, v, *, p):
        return 0.5 * v + 0.05 * x**5 + 0.01 * (x + 2.0) ** -5 + 0.02 * x**p + x

    def neuron_params(self):
        return {"p": 3.0}


class Signed(BaseNode):
    @staticmethod
    def charge(x, v):
        return 0.6 * v + x + 0.1 * torch.sign(x - 0.5)


class DividedByParameter(BaseNode):
    @staticmethod
    def charge(x, v, *, c):
        return 0.5 * v + x + torch.clamp(x / c, -1.0, 1.0)

    def __init__(self, c: float = 0.0, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.c = c

    def neuron_params(self):
        return {"c": self.c}


def _check(make, x: torch.Tensor, backend: str, rtol: float, grads: bool = True) -> None:
    device = kernel_device(backend)
    x = x.to(device)
    outs = []
    for b in ("torch", backend):
        node = make(b).to(device)
        xi = x.clone().requires_grad_()
        spikes = node(xi)
        g = torch.randn(spikes.shape, generator=torch.Generator().manual_seed(1))
        (spikes * g.to(device, spikes.dtype)).sum().backward()
        outs.append((spikes, xi.grad, node.v_seq))
    (sr, gr, vr), (sf, gf, vf) = outs
    assert torch.equal(sr, sf), f"{int((sr != sf).sum())} spikes differ"
    torch.testing.assert_close(vf, vr, rtol=rtol, atol=rtol)
    if grads:
        torch.testing.assert_close(gf, gr, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [OddPower, ConstantBase, Signed, ScalarTrace, RefractoryFlag])
def test_float64_equations_match_the_reference(backend, cls):
    x = torch.rand(9, 2, 150, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _check(lambda b: cls(backend=b, store_v_seq=True).double(), x * 3.0 - 1.5, backend, 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_comparisons_used_as_numbers(backend):
    x = torch.rand(9, 2, 150, generator=torch.Generator().manual_seed(0)) * 2
    _check(lambda b: BooleanArithmetic(backend=b, store_v_seq=True), x, backend, 1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_negative_zero_parameter_is_not_its_positive_twin(backend):
    # x / 0.0 and x / -0.0 clamp to +1 and -1: the Triton backend once reused the device
    # copy of the Python floats of the first call (0.0 == -0.0) for the second.
    x = torch.rand(5, 40, generator=torch.Generator().manual_seed(0)) * 2 + 0.1
    for c in (0.0, -0.0):  # (the gradient of x / 0 is NaN)
        make = lambda b, c=c: DividedByParameter(c, backend=b, store_v_seq=True)  # noqa: E731
        _check(make, x, backend, 1e-5, grads=False)


@pytest.mark.parametrize("backend", BACKENDS[1:])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_streaming_half_inputs_keep_their_dtype(backend, dtype):
    # Triton computes a half input's state in float32; handed back as float32, the carried
    # state promoted the next chunk's input and output to float32.
    from spikeflow import functional as F

    device = kernel_device(backend)
    x = (torch.rand(6, 2, 40, device=device) * 2).to(dtype)
    node = LIFNode(backend=backend)
    with F.streaming(node):
        outs = [node(chunk) for chunk in x.split([2, 4])]
        carried = dict(node._state)
    assert [o.dtype for o in outs] == [dtype, dtype]
    assert {s.dtype for s in carried.values()} == {dtype}


class ArcTangent(BaseNode):
    """atan over small, moderate and large arguments: the interpreter's own atan was a
    polynomial good to ~1e-7, short of float64."""

    @staticmethod
    def charge(x, v):
        return 0.5 * v + x + 0.3 * torch.atan(x * 0.1) + 0.2 * torch.atan(x * 7.0 - 2.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_arctangent_to_float64_precision(backend):
    x = torch.rand(7, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _check(lambda b: ArcTangent(backend=b, store_v_seq=True).double(), x * 4 - 2, backend, 1e-12)


class TinyArguments(BaseNode):
    """log1p, expm1 and tanh of arguments near 1e-12, scaled up: the interpreter once
    built them from log/exp/sigmoid, losing most digits to cancellation there."""

    @staticmethod
    def charge(x, v):
        e = x * 1e-12
        u = torch.log1p(e) + torch.expm1(e) + torch.tanh(e) + torch.tanh(x * 30.0) * 1e-12
        return 0.5 * v + x + 1e11 * u


@pytest.mark.parametrize("backend", BACKENDS)
def test_functions_of_tiny_arguments_keep_their_digits(backend):
    x = torch.rand(6, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _check(lambda b: TinyArguments(backend=b, store_v_seq=True).double(), x - 0.5, backend, 1e-12)


@pytest.mark.parametrize("backend", fused_backends()[-1:])
def test_zero_dim_tensors_reach_the_triton_kernels_as_one_element_buffers(backend):
    """PLIF's 0-dim ``w`` and a learnable 0-dim threshold are read on the device from
    their own 1-element buffers (no expanded ``[N]`` copy: one launch fewer each way),
    with the reference loop's spikes and gradients."""
    from spikeflow.kernels import fused, triton_backend
    from spikeflow.neurons import ParametricLIFNode

    shapes: list[list[tuple[int, ...]]] = []

    class Spy:
        device_scalars = True

        def __init__(self, kernels):
            self.kernels = kernels

        def forward(self, T, n, buffers, scalars):
            shapes.append([tuple(b.shape) for b in buffers])
            self.kernels.forward(T, n, buffers, scalars)

        def backward(self, T, n, buffers, scalars, steps):
            shapes.append([tuple(b.shape) for b in buffers if b is not None])
            self.kernels.backward(T, n, buffers, scalars, steps)

    def spy(spec):
        return Spy(triton_backend._launcher(spec))

    device = kernel_device(backend)
    x = (torch.rand(5, 3, 7) * 2.5).to(device)
    grads = []
    for run in ("torch", spy):
        node = ParametricLIFNode(init_tau=1.7, learnable_threshold=True, backend="torch")
        node = node.to(device)
        xi = x.clone().requires_grad_()
        if run == "torch":
            spikes = node(xi)
            spikes.sum().backward()
        else:
            try:
                spikes, _, _ = triton_backend.run_with_launcher(
                    run, node.declaration(), xi, node.initial_state(xi[0]),
                    node.neuron_params(), node.v_threshold, node.firing_rule,
                )  # fmt: skip
                spikes.sum().backward()
            finally:
                fused.forget(run)
        grads.append((spikes, xi.grad, node.w.grad, node.v_threshold.grad))
    (s0, *g0), (s1, *g1) = grads
    assert torch.equal(s0, s1)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    forward, backward = shapes
    # w, the threshold, then x: two 1-element buffers before the [T, 3, 7] input.
    assert forward[:3] == [(1,), (1,), (5, 3, 7)]
    assert backward[:3] == [(1,), (1,), (5, 3, 7)]
