"""``layers.SynapseFilter``: SpikingJelly 2.0's first-order synaptic filter.

Hand-computed steps; outputs and gradients (input and the learnable ``w``) equal to
SpikingJelly's in float64, multi-step and single-step, its ``state_dict`` loaded; the
closed form of a filter fed no spikes; float64 gradcheck; a learnable filter fitted to
a target time constant; chunked and single-step streaming equal to one call, no state
between multi-step calls; the errors.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.layers import SynapseFilter
from spikeflow.layers.synapse_filter import synapse_filter
from streaming_checks import check_chunked_streaming

F64 = torch.float64


def sj_layer():
    return pytest.importorskip(
        "spikingjelly.activation_based.layer", reason="SpikingJelly is not installed"
    )


def test_hand_computed_steps():
    # tau = 2: a spike adds 1 without decay, no spike halves the current
    f = SynapseFilter(tau=2.0)
    x = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0], dtype=F64).view(-1, 1)
    assert f(x).view(-1).tolist() == [1.0, 0.5, 1.5, 2.5, 1.25, 0.625]
    # graded input 0.5 with tau = 4: I = I - 0.5 I / 4 + 0.5
    g = SynapseFilter(tau=4.0)(torch.full((2, 1), 0.5, dtype=F64)).view(-1)
    assert g.tolist() == pytest.approx([0.5, 0.5 - 0.0625 + 0.5], abs=1e-15)


def test_decay_without_spikes_is_exponential():
    f = SynapseFilter(tau=5.0)
    x = torch.zeros(20, 3, dtype=F64)
    x[0] = 1.0
    y = f(x)[:, 0]
    want = (1 - 1 / 5.0) ** torch.arange(20, dtype=F64)
    torch.testing.assert_close(y, want, rtol=1e-14, atol=0)


@pytest.mark.parametrize("learnable", [False, True])
@pytest.mark.parametrize("graded", [False, True], ids=["spikes", "graded"])
def test_equals_spikingjelly_multi_step(learnable, graded):
    layer = sj_layer()
    theirs = layer.SynapseFilter(tau=3.5, learnable=learnable, step_mode="m").double()
    ours = SynapseFilter(tau=3.5, learnable=learnable).double()
    if learnable:
        with torch.no_grad():
            theirs.w.fill_(0.3)  # not the initial value: the loading below matters
        ours.load_state_dict(theirs.state_dict())
    x = torch.rand(16, 4, 3, 5, dtype=F64)
    x = (x > 0.6).to(F64) if graded is False else x * 2 - 0.5
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = theirs(x1), ours(x2)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
    g = torch.randn_like(want)
    params = [theirs.w] if learnable else []
    grads_theirs = torch.autograd.grad((want * g).sum(), [x1, *params])
    grads_ours = torch.autograd.grad((got * g).sum(), [x2, *([ours.w] if learnable else [])])
    for a, b in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if learnable:
        assert abs(grads_ours[1].item()) > 1e-3  # a gradient that matters was compared


def test_equals_spikingjelly_single_step():
    layer = sj_layer()
    theirs = layer.SynapseFilter(tau=6.0, learnable=True, step_mode="s").double()
    ours = SynapseFilter(tau=6.0, learnable=True, step_mode="s").double()
    torch.testing.assert_close(ours.w, theirs.w)  # the same initial w = -ln(tau - 1)
    assert ours.tau == pytest.approx(6.0, rel=1e-6)  # w was made in float32
    x = (torch.rand(10, 2, 7, dtype=F64) > 0.5).to(F64)
    with F.streaming(ours):
        got = torch.stack([ours(step) for step in x])
        assert ours.out_i.shape == (2, 7)
    want = torch.stack([theirs(step) for step in x])
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_gradcheck_input_and_rate():
    f = SynapseFilter(tau=3.0, learnable=True).double()
    x = torch.rand(6, 2, 3, dtype=F64, requires_grad=True)
    w = torch.tensor(0.4, dtype=F64, requires_grad=True)

    def run(x, w):
        return torch.func.functional_call(f, {"w": w}, (x,))

    assert torch.autograd.gradcheck(run, (x, w))


def test_learnable_tau_fits_a_target_filter():
    torch.manual_seed(0)
    x = (torch.rand(40, 8, 4) > 0.7).float()
    target = SynapseFilter(tau=4.0)(x)
    f = SynapseFilter(tau=20.0, learnable=True)
    opt = torch.optim.Adam(f.parameters(), lr=0.1)
    for _ in range(150):
        loss = (f(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert f.tau == pytest.approx(4.0, rel=0.02)


def test_streaming_chunks_and_single_steps_equal_one_call():
    x = (torch.rand(23, 3, 4, dtype=F64) > 0.5).to(F64)
    whole, _ = check_chunked_streaming(
        lambda: SynapseFilter(tau=3.0, learnable=True).double(), x, "w"
    )
    single = SynapseFilter(tau=3.0, learnable=True, step_mode="s").double()
    with F.streaming(single):
        steps = torch.stack([single(step) for step in x])
    torch.testing.assert_close(steps, whole, rtol=1e-14, atol=1e-14)


def test_no_state_between_multi_step_calls():
    f = SynapseFilter(tau=2.0)
    x = torch.ones(3, 2, 1)
    assert torch.equal(f(x), f(x))
    assert f.state is None
    with F.streaming(f):
        f(x)
        with pytest.raises(StateError, match="shape"):
            f(torch.ones(3, 5, 1))  # another batch: a new sequence


def test_errors():
    for tau in (1.0, 0.5, math.inf, True, "2"):
        with pytest.raises(ConfigurationError, match="tau"):
            SynapseFilter(tau=tau)
    with pytest.raises(ConfigurationError, match="learnable"):
        SynapseFilter(learnable=1)
    with pytest.raises(DTypeError, match="floating-point"):
        SynapseFilter()(torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ShapeError, match="T, B"):
        SynapseFilter()(torch.ones(3))
    with pytest.raises(StateError, match="streaming"):
        SynapseFilter(step_mode="s")(torch.ones(2, 3))
    with pytest.raises(ShapeError, match=r"single-step mode expects \[B, \.\.\.\], got a scalar"):
        SynapseFilter(step_mode="s")(torch.tensor(1.0))
    with pytest.raises(ShapeError, match="T >= 1"):  # was torch.stack's RuntimeError
        synapse_filter(torch.ones(0, 3), 0.5)
    assert "tau=100, learnable=False" in repr(SynapseFilter())


def test_docs_example():
    text = (Path(__file__).resolve().parents[1] / "docs" / "layers.md").read_text()
    match = re.search(r"<!-- layers: synapse-filter\b.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "no synapse-filter block in docs/layers.md"
    ns: dict = {}
    exec(compile(match.group(1), "docs/layers.md", "exec"), ns)
    assert ns["current"].shape == (4, 10)
    assert ns["syn"](torch.tensor([[1.0], [0.0], [1.0], [1.0]])).view(-1).tolist() == [
        1.0, 0.5, 1.5, 2.5,
    ]  # fmt: skip
