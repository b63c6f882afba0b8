"""Review of spikeflow.learn: empty batches and sequences, and the e-prop rule's
feedback matrix on the network's device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.errors import ShapeError
from spikeflow.learn import EProp, EPropRSNN, eligibility_stdp_update


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_carried_eligibility_of_an_empty_batch(kind: str) -> None:
    """A convolution's per-sample eligibility of a batch of 0 samples stacked an empty
    list (RuntimeError); the linear layer's gave zeros. Both: no change, [0, *w]."""
    if kind == "conv":
        synapse = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
        pre, post = torch.zeros(4, 0, 2, 5, 5), torch.zeros(4, 0, 3, 5, 5)
    else:
        synapse = nn.Linear(5, 3, bias=False).double()
        pre, post = torch.zeros(4, 0, 5), torch.zeros(4, 0, 3)
    delta, (x, y), z = eligibility_stdp_update(
        synapse, pre.double(), post.double(), 1.0, 2.0, 2.0, 3.0
    )
    assert torch.equal(delta, torch.zeros_like(synapse.weight))
    assert z.shape == (0, *synapse.weight.shape)
    assert x.shape == pre.shape[1:] and y.shape == post.shape[1:]


def test_a_sequence_without_steps_is_named() -> None:
    """T = 0: the network's forward failed with an IndexError and the rule's run with
    "finish(): no step was run"."""
    net = EPropRSNN(3, 2, n_lif=3, n_alif=2)
    with pytest.raises(ShapeError, match=r"T >= 1.*\(0, 2, 3\)"):
        net(torch.zeros(0, 2, 3))
    rule = EProp(net)
    with pytest.raises(ShapeError, match=r"T >= 1.*\(0, 2, 3\)"):
        rule.run(torch.zeros(0, 2, 3), torch.zeros(2, dtype=torch.long))
    assert rule.state_tensors() == {}


@pytest.mark.parametrize("feedback", ["random", "adaptive"])
def test_a_given_feedback_matrix_goes_to_the_networks_device(feedback: str) -> None:
    """A ``feedback_weight`` drawn on the CPU for a network elsewhere stayed on the CPU
    (only its dtype followed the network), so the first learning step failed on a
    device mismatch; the drawn default already followed the device."""
    net = EPropRSNN(3, 2, n_lif=4).to("meta")
    rule = EProp(net, feedback=feedback, feedback_weight=torch.randn(4, 2, dtype=torch.float64))
    assert rule.feedback_weight.device == net.output.weight.device
    assert rule.feedback_weight.dtype == net.output.weight.dtype
    drawn = EProp(net, feedback=feedback)
    assert drawn.feedback_weight.device == net.output.weight.device
