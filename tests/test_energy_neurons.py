"""The neurons' state updates: per-step counts from the declarations, by hand, and the
updates of tiny networks with known spikes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from spikeflow import neurons
from spikeflow.energy import E_AC, E_MUL, OperationCounter, count_operations, step_operations
from spikeflow.functional import streaming
from spikeflow.neurons.base import BaseNode


@pytest.mark.parametrize(
    ("make", "want"),
    [
        # H = V + X; hard reset V = 0 (an assignment), soft V = H - θ (an addition per spike)
        (lambda: neurons.IFNode(), (1, 0, 1, "hard")),
        (lambda: neurons.IFNode(v_reset=None), (1, 0, 1, "soft")),
        # H = V + (X - (V - V_r)) / τ: V_r = 0 is no subtraction
        (lambda: neurons.LIFNode(), (2, 1, 1, "hard")),
        (lambda: neurons.LIFNode(v_reset=-0.1), (3, 1, 1, "hard")),
        # H = V - V / τ + X
        (lambda: neurons.LIFNode(decay_input=False, v_reset=None), (2, 1, 1, "soft")),
        # 1/τ = sigmoid(w), one number for the layer: as LIF
        (lambda: neurons.PLIFNode(), (2, 1, 1, "hard")),
        # I' = I + (X - I) dt/τ_syn; H = V + (v_leak - V + r I') dt/τ_mem, v_leak 0, r 1
        (lambda: neurons.CubaLIFNode(), (4, 2, 1, "hard")),
        # a resistance per neuron (r I' is a multiplication) and v_leak 0.5
        (
            lambda: neurons.CubaLIFNode(r=torch.tensor([1.0, 2.0, 0.5]), v_leak=0.5),
            (5, 3, 1, "hard"),
        ),
        # the ternary fire: Θ(H - θ) - Θ(-H - θ), two comparisons and a subtraction
        (lambda: neurons.TernaryIFNode(), (2, 0, 2, "hard")),
    ],
)
def test_step_counts_from_the_declarations(make, want):
    step = step_operations(make(), torch.Size([2, 3]), torch.float32)
    assert (step.additions, step.multiplications, step.comparisons, step.reset) == want
    assert step.other == ()


def test_other_operations_are_listed_by_name():
    step = step_operations(neurons.EIFNode(), torch.Size([4]), torch.float32)
    assert dict(step.other) == {"exp": 1}  # Δ_T exp((V - θ_rh) / Δ_T)


def test_updates_of_known_spikes_soft_and_hard():
    """IF, soft reset: neuron 0 reaches 1 at t = 0 and fires (its reset one addition),
    then holds 0.5; neuron 1 holds 0, then 0.6. LIF (τ = 2), hard reset: neuron 0
    charges (2 - 0) / 2 = 1 and fires, then 0; neuron 1 0.2, then 0.3."""
    x = torch.tensor([[[1.0, 0.0]], [[0.5, 0.6]]])  # [T, B, N]
    soft = count_operations(neurons.IFNode(v_reset=None), x)
    (row,) = soft.neurons
    assert (row.name, row.kind, row.neuron_steps, row.resets) == ("(model)", "IFNode", 4, 1)
    assert (row.additions, row.multiplications, row.comparisons) == (4 + 1, 0, 4)
    x = torch.tensor([[[2.0, 0.4]], [[0.0, 0.4]]])
    hard = count_operations(nn.Sequential(nn.Identity(), neurons.LIFNode()), x)
    (row,) = hard.neurons
    assert (row.name, row.neuron_steps, row.resets) == ("1", 4, 1)
    assert (row.additions, row.multiplications, row.comparisons) == (8, 4, 4)
    assert hard.neuron_energy() == pytest.approx((8 + 4) * E_AC + 4 * E_MUL)  # one sample
    assert hard.energy(neurons=True) == pytest.approx(hard.energy() + hard.neuron_energy())
    assert hard.energy() == 0.0  # no layer: the updates only with neurons=True
    assert "neuron layer" in str(hard) and "energy(neurons=True)" in str(hard)


def test_single_steps_count_as_the_sequence():
    torch.manual_seed(0)
    x = torch.rand(5, 3, 4) * 1.5
    whole = count_operations(neurons.LIFNode(), x).neurons[0]
    lif = neurons.LIFNode(step_mode="s")
    with OperationCounter(lif) as counter, streaming(lif):
        for step in x:
            lif(step)
    stepped = counter.report(3).neurons[0]
    assert stepped.calls == 5 and whole.calls == 1
    assert (stepped.neuron_steps, stepped.resets, stepped.additions) == (
        whole.neuron_steps, whole.resets, whole.additions) and whole.resets > 0  # fmt: skip


class _ShapeCharge(BaseNode):
    """Runs (the reference loop) but cannot be traced: its charge reads a shape."""

    @staticmethod
    def charge(x: Tensor, v: Tensor) -> Tensor:
        return v + x * x.shape[-1]


def test_spiking_layers_of_other_kinds_are_listed():
    net = nn.Sequential(
        neurons.PSN(T=2),
        neurons.LIAFNode("relu", True),
        _ShapeCharge(backend="torch"),
        neurons.IFNode(),
    )
    report = count_operations(net, torch.rand(2, 1, 3))
    assert [n.name for n in report.neurons] == ["3"]
    assert report.neurons_not_counted[:2] == [
        "0 (PSN is not a declared neuron)",
        "1 (LIAFNode.forward computes more than its declaration)",
    ]
    assert report.neurons_not_counted[2].startswith("2 (its declaration: ")
    assert "shape" in report.neurons_not_counted[2]
    assert "neuron updates not counted: 0 (PSN" in str(report)
