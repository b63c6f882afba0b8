"""The OpenMP paths of the small C kernels on several threads: the event-driven neuron's
forward and backward and the packed/sparse spike Linear's, each equal bit for bit to its
one-thread result (their threads take disjoint blocks of neurons, rows or weight rows).

Under pytest-xdist every worker runs on its share of the cores (``conftest.py``: one
thread on CI's 2 cores), and the other tests' calls are below ``PARALLEL_GRAIN``, so
these tests set the threads themselves, with the grain at 1 so that every call is split.
The fused neuron kernels have theirs in ``test_kernels_blocks.py``."""

from __future__ import annotations

import pytest
import torch

from spikeflow.event_driven import EventDrivenNeuron
from spikeflow.event_driven.kernel import spike_backward, spike_forward
from spikeflow.kernels import cpu
from spikeflow.memory.spike_linear import bit_pack_spike_dense, packed_spike_linear, sparse_linear

THREADS = 3


@pytest.fixture
def on_threads(monkeypatch):
    """A function running ``fn`` on ``n`` threads, every call split (grain 1)."""
    try:
        cpu.compiler()
    except cpu.CompilerNotFoundError:
        pytest.skip("no C compiler")
    monkeypatch.setattr(cpu, "PARALLEL_GRAIN", 1)

    def run(n, fn):
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            assert cpu.kernel_threads(10**6) == n  # (the calls below are split n ways)
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_event_driven_c_kernels_on_several_threads(on_threads, dtype) -> None:
    neuron = EventDrivenNeuron(tau_m=8.0, tau_s=4.0, tau_grad=3.0, gradient="exponential",
                               max_dt_du_input=50.0, backend="c")  # fmt: skip
    reference = EventDrivenNeuron(tau_m=8.0, tau_s=4.0, tau_grad=3.0, gradient="exponential",
                                  max_dt_du_input=50.0, backend="torch")  # fmt: skip
    g = torch.Generator().manual_seed(3)
    # 1031 neurons: four blocks of 256 and a partial one, over three threads.
    current = (torch.randn(7, 1031, generator=g) * 0.6 + 0.15).to(dtype)
    grad_time = torch.randn(current.shape, generator=g).to(dtype)

    def both():
        out = spike_forward(current, neuron)
        return out, spike_backward(grad_time * out[0], *out, neuron)

    (fwd_n, bwd_n), (fwd_1, bwd_1) = on_threads(THREADS, both), on_threads(1, both)
    want = spike_forward(current, reference)
    want_b = spike_backward(grad_time * want[0], *want, reference)
    assert 0.02 < float(fwd_n[0].mean()) < 0.5
    for many, one, loop in zip((*fwd_n, *bwd_n), (*fwd_1, *bwd_1), (*want, *want_b)):
        assert torch.equal(many, one) and torch.equal(many, loop)


def test_spike_linear_c_kernels_on_several_threads(on_threads) -> None:
    g = torch.Generator().manual_seed(4)
    # 70 rows and 150 inputs: the weight gradient's tasks (64 inputs each) are 3.
    spike = (torch.rand(70, 150, generator=g) < 0.2).double()
    weight = torch.randn(5, 150, generator=g, dtype=torch.float64)
    grad = torch.randn(70, 5, generator=g, dtype=torch.float64)
    packed = bit_pack_spike_dense(spike)

    def run():
        w = weight.clone().requires_grad_()
        x = spike.clone().requires_grad_()
        out = packed_spike_linear(packed, w, backend="c")
        (gw,) = torch.autograd.grad((out * grad).sum(), w)
        out_s = sparse_linear(x, w, None, "sparse", backend="c")
        gx, gws = torch.autograd.grad((out_s * grad).sum(), (x, w))
        return out, gw, out_s, gx, gws

    many, one = on_threads(THREADS, run), on_threads(1, run)
    dense = spike @ weight.t()
    torch.testing.assert_close(many[0], dense, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(many[1], grad.t() @ spike, rtol=1e-12, atol=1e-12)
    for a, b in zip(many, one):
        assert torch.equal(a, b)
