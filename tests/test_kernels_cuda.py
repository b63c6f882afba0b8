"""The Triton kernels on a real GPU: spikes identical to the reference loop at sizes the
interpreter cannot run, autocast dtypes, the auto backend, and no host synchronisation.

Skipped without CUDA (CI has no GPU); `scripts/device_check.sh` runs this module on a
GPU machine. tests/test_kernels_fused.py and tests/test_neurons_zoo.py also run their
Triton cases on the GPU there (tests/conftest.py: ``kernel_device``).
"""

from __future__ import annotations

import pytest
import torch

from spikeflow.kernels import resolve_backend
from spikeflow.kernels.triton_backend import run_triton, triton_available
from spikeflow.neurons import IzhikevichNode, LIFNode, ParametricLIFNode

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and triton_available()),
    reason="needs a CUDA GPU and triton",
)
CUDA = torch.device("cuda")


def spikes_and_grads(node, x):
    """Spikes, and the gradients of (x, parameters) under an upstream gradient drawn
    from its own seeded generator: the same for every node compared."""
    x = x.clone().requires_grad_()
    y = node(x)
    draw = torch.Generator(device=y.device).manual_seed(1)
    g = torch.randn(y.shape, generator=draw, device=y.device, dtype=y.dtype)
    grads = torch.autograd.grad((y * g).sum(), [x, *node.parameters()])
    return y.detach(), grads


@pytest.mark.parametrize(
    ("T", "N"), [(4, 1_000_003), (64, 100_000), (256, 10_000)]
)  # odd N: a partial last block
@pytest.mark.parametrize("build", [
    lambda b: LIFNode(tau=2.0, backend=b),
    lambda b: LIFNode(tau=3.0, decay_input=False, v_reset=None, backend=b),
    lambda b: ParametricLIFNode(init_tau=2.5, detach_reset=True, backend=b),
])  # fmt: skip
def test_large_float32_spikes_identical_to_the_reference(T, N, build):
    torch.manual_seed(0)
    x = torch.rand(T, N, device=CUDA) * 2.5 - 0.3
    ref, fused = build("torch").to(CUDA), build("triton").to(CUDA)
    y_ref, g_ref = spikes_and_grads(ref, x)
    y, g = spikes_and_grads(fused, x)
    mismatches = int((y != y_ref).sum())
    assert mismatches == 0, f"{mismatches} of {y.numel()} spikes differ from the reference"
    for a, b in zip(g_ref, g):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_izhikevich_float64_on_the_gpu():
    x = torch.rand(32, 3, 1000, device=CUDA, dtype=torch.float64) * 20
    ref = IzhikevichNode(backend="torch").to(CUDA)
    fused = IzhikevichNode(backend="triton").to(CUDA)
    y_ref, g_ref = spikes_and_grads(ref, x)
    y, g = spikes_and_grads(fused, x)
    assert torch.equal(y, y_ref)
    for a, b in zip(g_ref, g):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_network_trains_with_the_fused_kernel(dtype):
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), LIFNode(tau=2.0)).to(CUDA)
    x = torch.rand(16, 8, 64, device=CUDA)
    with torch.autocast("cuda", dtype=dtype):
        h = net[0](x)
        assert resolve_backend("auto", h).fused is run_triton
        out = net[1](h)
    assert out.dtype == dtype
    out.float().sum().backward()
    assert net[0].weight.grad is not None and torch.isfinite(net[0].weight.grad).all()
    # The kernel computes in float32: the same spikes as the reference on the float32
    # image of the half input.
    ref = LIFNode(tau=2.0, backend="torch")(h.detach().float())
    assert torch.equal(out.detach().float(), ref)


def test_forward_and_backward_never_synchronise_with_the_host():
    """PLIF (0-dim learnable w) and a 0-dim learnable threshold: the kernels read them
    from device memory, so a whole training step runs without a host sync."""
    node = ParametricLIFNode(
        init_tau=2.0, v_threshold=torch.tensor(1.0), learnable_threshold=True, backend="triton"
    ).to(CUDA)
    x = torch.rand(16, 4096, device=CUDA, requires_grad=True)
    node(x).sum().backward()  # build and compile first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        node(x).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert node.w.grad is not None and node.v_threshold.grad is not None


def test_triton_kernels_inside_torch_compile_match_eager():
    """An explicit Triton backend inside torch.compile: one graph (fullgraph), the
    eager spikes and gradients. (backend="auto" keeps the reference loop under
    torch.compile on CUDA until this is measured against inductor's own kernels.)"""
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 128),
        ParametricLIFNode(backend="triton"),
        torch.nn.Linear(128, 32),
        LIFNode(v_reset=None, backend="triton"),
    ).to(CUDA)
    x = torch.rand(8, 4, 64, device=CUDA)
    eager, g_eager = spikes_and_grads(net, x)
    compiled, g_compiled = spikes_and_grads(torch.compile(net, fullgraph=True), x)
    assert torch.equal(compiled, eager)
    for a, b in zip(g_eager, g_compiled):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_a_zero_dim_cpu_tensor_beside_a_gpu_input_falls_back_and_a_gpu_array_is_refused():
    """PyTorch's rule: a 0-dim CPU tensor combines with tensors on any device, read on
    the host as a scalar (a division by it multiplies by its reciprocal): backend
    "auto" runs the reference loop for it (the Triton kernels would read it on the
    device), "triton" refuses it; a GPU tensor beside a CPU input is refused by name
    (the C kernels would read its pointer on the host)."""
    from spikeflow.errors import ConfigurationError
    from spikeflow.kernels import HostScalarError

    x = torch.rand(8, 1000, device=CUDA) * 2.5
    ref = spikes_and_grads(LIFNode(v_threshold=torch.tensor(0.9), backend="torch"), x)
    with pytest.warns(UserWarning, match="host scalar"):
        auto = spikes_and_grads(LIFNode(v_threshold=torch.tensor(0.9), backend="auto"), x)
    assert torch.equal(auto[0], ref[0])
    torch.testing.assert_close(auto[1][0], ref[1][0])
    with pytest.raises(HostScalarError):
        LIFNode(v_threshold=torch.tensor(0.9), backend="triton")(x)
    node = LIFNode(v_threshold=torch.ones(1000, device=CUDA), backend="cpu")
    with pytest.raises(ConfigurationError, match="the threshold is on device cuda"):
        node(torch.rand(8, 1000))
