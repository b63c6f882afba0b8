"""A converted Transformer streams: fed in chunks (or step by step) under
``functional.streaming`` or ``functional.run``, it gives the numbers of the whole
sequence, bit for bit on the CPU; a module the ANN calls at two places gets one stateful
replacement per call."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from spikeflow.conversion.temporal import SpikeProduct, StepBias, TemporalDifference
from spikeflow.conversion.transformer import convert_transformer
from spikeflow.errors import StateError
from spikeflow.functional import reset_net, run, streaming
from test_conversion_transformer import TinyViT, quant

F64 = torch.float64


def chunks(seq: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    assert sum(sizes) == seq.shape[0]
    return list(seq.split(sizes))


@pytest.mark.parametrize(("pool", "builtin"), [("cls", False), ("mean", True)])
@pytest.mark.parametrize("sizes", [[5, 1, 7, 3], [1] * 16])
def test_a_converted_vit_streams_as_it_runs_whole(pool, builtin, sizes):
    torch.manual_seed(0)
    snn = convert_transformer(TinyViT(pool, builtin).to(F64).eval()).snn
    seq = torch.randn(16, 3, 8, 8, dtype=F64) * 0.3  # a wandering input, not an impulse
    whole = snn(seq)
    with streaming(snn):
        parts = torch.cat([snn(chunk) for chunk in chunks(seq, sizes)])
    assert parts.equal(whole)
    # and again after the context: each sequence starts from the initial state
    assert snn(seq).equal(whole)


def test_explicit_state_runs_continue_the_sequence():
    torch.manual_seed(1)
    snn = convert_transformer(TinyViT("cls").to(F64).eval()).snn
    seq = torch.randn(12, 2, 8, 8, dtype=F64) * 0.3
    whole = snn(seq)
    first, state = run(snn, seq[:4])
    second, _ = run(snn, seq[4:], state)
    assert torch.cat([first, second]).equal(whole)
    # the state holds each operator's running sums (and a temporal difference's f)
    names = {name for name, module in snn.named_modules() if isinstance(module, TemporalDifference)}
    assert names and all({"sum0", "out0"} <= set(state[n]) for n in names if "norm" in n)


class Shared(nn.Module):
    """One quantiser, one LayerNorm and one Linear called at two places each."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.a, self.b = nn.Linear(6, 8), nn.Linear(6, 8)
        self.q, self.norm, self.out = quant(g), nn.LayerNorm(8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.q(self.a(x))) + self.norm(self.q(self.b(x)))
        return self.out(self.q(h)) + self.out(self.q(self.a(x)))


def test_a_module_called_twice_gets_its_own_state_per_call():
    torch.manual_seed(2)
    ann = Shared().to(F64).eval()
    snn, report = convert_transformer(ann)
    x = torch.randn(4, 6, dtype=F64)
    torch.testing.assert_close(snn.accumulate(x, 24)[-1], ann(x).detach(), rtol=0, atol=1e-9)
    calls = [e for e in report.entries if "another call of" in e.detail]
    # q: 3 more calls, norm: 1, out: 1, a: 1
    assert sorted(e.detail.rsplit(" ", 1)[-1] for e in calls) == [
        "a)", "norm)", "out)", "q)", "q)", "q)"
    ]  # fmt: skip
    seq = torch.randn(10, 4, 6, dtype=F64) * 0.5
    whole = snn(seq)
    with streaming(snn):
        parts = torch.cat([snn(c) for c in chunks(seq, [3, 3, 4])])
    assert parts.equal(whole)
    first, state = run(snn, seq[:6])
    second, _ = run(snn, seq[6:], state)
    assert torch.cat([first, second]).equal(whole)


class Named(nn.Module):
    """A model whose own submodule is called ``td_0``, the name the converter gives its
    first temporal difference."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.td_0, self.q = nn.Linear(4, 4), quant(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.td_0(self.q(x).tanh())


def test_added_operators_never_replace_a_module_of_the_model():
    ann = Named().to(F64).eval()
    snn, _ = convert_transformer(ann)
    x = torch.randn(3, 4, dtype=F64)
    torch.testing.assert_close(snn.accumulate(x, 16)[-1], ann(x).detach(), rtol=0, atol=1e-9)


def test_a_new_batch_while_streaming_is_refused_by_name():
    snn = convert_transformer(TinyViT("cls").to(F64).eval()).snn
    with streaming(snn):
        snn(torch.randn(2, 3, 8, 8, dtype=F64))
        with pytest.raises(StateError, match="reset_net"):
            snn(torch.randn(2, 2, 8, 8, dtype=F64))
        reset_net(snn)
        snn(torch.randn(2, 2, 8, 8, dtype=F64))  # a new sequence after the reset


def test_each_operator_streams_alone():
    torch.manual_seed(5)
    a, b = torch.randn(9, 2, 3, 4, dtype=F64), torch.randn(9, 2, 4, 5, dtype=F64)
    ops = [
        (SpikeProduct("matmul"), (a, b)),
        (TemporalDifference(torch.nn.functional.gelu), (a,)),
        (StepBias(nn.Linear(4, 2).to(F64)), (a,)),
    ]
    for op, args in ops:
        whole = op(*args)
        with streaming(op):
            parts = torch.cat([op(*(x[:4] for x in args)), op(*(x[4:] for x in args))])
        assert parts.equal(whole), type(op).__name__
        running = whole.cumsum(0)
        if isinstance(op, SpikeProduct):  # the running sum is the product of the sums
            torch.testing.assert_close(running, a.cumsum(0) @ b.cumsum(0), rtol=0, atol=1e-12)


def test_a_state_of_another_batch_given_to_run_is_refused_by_name():
    snn = convert_transformer(TinyViT("cls").to(F64).eval()).snn
    _, state = run(snn, torch.randn(2, 3, 8, 8, dtype=F64))
    with pytest.raises(StateError, match="this call has 2 samples"):
        run(snn, torch.randn(2, 2, 8, 8, dtype=F64), state)


def test_a_streaming_net_pickles_and_its_copy_continues_the_sequence():
    # TinyViT is written under `from __future__ import annotations`: its forward's
    # annotation is the string "torch.Tensor", which fx's code made a global that
    # pickle could not name (AttributeError: 'str' object has no attribute '__name__')
    torch.manual_seed(6)
    snn = convert_transformer(TinyViT("cls").to(F64).eval()).snn
    seq = torch.randn(6, 2, 8, 8, dtype=F64) * 0.3
    whole = snn(seq)
    with streaming(snn):
        first = snn(seq[:2])
        copy = pickle.loads(pickle.dumps(snn))
    assert torch.cat([first, copy(seq[2:])]).equal(whole)


def test_the_carried_state_holds_one_step_not_the_chunk():
    # a view of the last step kept the whole chunk's sums and outputs alive (and in a
    # pickle): 64x the state for a chunk of 64 steps
    snn = convert_transformer(TinyViT("cls").to(F64).eval()).snn
    with streaming(snn):
        snn(torch.randn(8, 2, 8, 8, dtype=F64))
        states = [
            m.state for m in snn.modules() if isinstance(m, (SpikeProduct, TemporalDifference))
        ]
        assert states and all(
            v.untyped_storage().nbytes() == v.numel() * v.element_size()
            for state in states
            for v in state.values()
        )
