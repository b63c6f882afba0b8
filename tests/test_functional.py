"""spikeflow.functional's SpikingJelly-named helpers."""

from __future__ import annotations

import pytest
import torch

from spikeflow import functional as F


def test_spikingjellys_seq_to_ann_forward_and_multi_step_forward():
    sjf = pytest.importorskip("spikingjelly.activation_based.functional")
    from spikeflow import neurons

    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 8, 8)
    conv = torch.nn.Conv2d(2, 5, 3)
    for module in (conv, [conv, torch.nn.ReLU()]):
        torch.testing.assert_close(
            F.seq_to_ann_forward(x, module), sjf.seq_to_ann_forward(x, module)
        )
    node = neurons.LIFNode(step_mode="s")
    stepped = F.multi_step_forward(x, node)
    assert torch.equal(stepped, neurons.LIFNode()(x))
    assert node.state is None  # nothing carried out of the call
    assert torch.equal(F.multi_step_forward(x, [node]), stepped)  # fresh again
