"""The C kernels cut the neurons into blocks whose width depends on N, the thread count
and the neuron's number of states: every neuron must be covered exactly once, with
spikes and gradients equal to the reference loop's, whatever the cut."""

from __future__ import annotations

import pytest
import torch

from spikeflow.kernels import cpu
from spikeflow.kernels.codegen_c import BLOCK, CHECKPOINT, SEGMENT_BYTES, backward_width
from spikeflow.neurons import BaseNode, LIFNode, ParametricLIFNode


class DelayIF(BaseNode):
    """An IF neuron fed through a delay line of 7 states: 8 float64 states narrow the
    backward's blocks below ``BLOCK``."""

    @staticmethod
    def charge(x, v, d0, d1, d2, d3, d4, d5, d6):
        return 0.7 * v + 0.5 * x + 0.4 * d6

    @staticmethod
    def update(h, s, d0, d1, d2, d3, d4, d5, d6):
        return (s, d0, d1, d2, d3, d4, d5)

    def initial_state(self, like):
        names = ("d0", "d1", "d2", "d3", "d4", "d5", "d6")
        return {**super().initial_state(like), **{n: torch.zeros_like(like) for n in names}}


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"threads{n}")
def threads(request, monkeypatch):
    # Every call on all the threads, however small (PARALLEL_GRAIN keeps small calls on
    # one thread otherwise).
    monkeypatch.setattr(cpu, "PARALLEL_GRAIN", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def test_small_calls_stay_on_one_thread(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    grain = cpu.PARALLEL_GRAIN
    assert cpu.kernel_threads() == 4
    assert cpu.kernel_threads(grain - 1) == 1  # one step of a small layer
    assert cpu.kernel_threads(2 * grain) == 2
    assert cpu.kernel_threads(100 * grain) == 4


def _check(make, x: torch.Tensor) -> None:
    ref, fused = make("torch"), make("cpu")
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yf = ref(xr), fused(xf)
    assert torch.equal(yr, yf)
    g = torch.randn(yr.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    pr, pf = list(ref.parameters()), list(fused.parameters())
    gr = torch.autograd.grad((yr * g).sum(), [xr, *pr])
    gf = torch.autograd.grad((yf * g).sum(), [xf, *pf])
    for a, b in zip(gr, gf):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [1, 15, 17, BLOCK - 1, BLOCK + 1, 2 * BLOCK + 37, 5000])
def test_every_neuron_once_for_any_block_cut(threads, n):
    x = torch.rand(
        CHECKPOINT + 3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n)
    )
    _check(lambda b: LIFNode(tau=2.0, backend=b).double(), x * 2.5)
    _check(lambda b: ParametricLIFNode(init_tau=2.5, backend=b).double(), x * 2.5)


@pytest.mark.parametrize("n", [47, 1000])
def test_narrow_backward_blocks_of_a_neuron_with_many_states(threads, n):
    assert backward_width(8, CHECKPOINT, 8) < BLOCK  # what this test is about
    x = torch.rand(
        2 * CHECKPOINT + 5, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n)
    )
    _check(lambda b: DelayIF(backend=b), x * 1.5)


def test_backward_width():
    # One float32 state: full-width blocks; more or wider states: narrower ones, in
    # whole cache lines, never below 16.
    assert backward_width(1, CHECKPOINT, 4) == BLOCK
    for n_states, itemsize in [(1, 8), (2, 4), (8, 8), (129, 8), (1000, 8)]:
        w = backward_width(n_states, CHECKPOINT, itemsize)
        assert w % 16 == 0 and 16 <= w <= BLOCK
        assert w == 16 or w * n_states * CHECKPOINT * itemsize <= SEGMENT_BYTES
    assert backward_width(129, CHECKPOINT, 8) == 16
