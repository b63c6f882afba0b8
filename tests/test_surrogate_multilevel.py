"""``MultiLevelSpikeCount``, the count function of the multi-level (integer) neurons:
hand-computed counts (clipped, ties to even) and straight-through gradients; float64
gradcheck of its primitive and of a neuron built with it; equal to SpikingJelly 2.0's
in forward and backward; registered by name; the fused kernels refuse it (a count is
not their Heaviside step); the errors."""

from __future__ import annotations

import warnings

import pytest
import torch

from spikeflow.errors import ConfigurationError
from spikeflow.kernels import TraceError
from spikeflow.models.common import NeuronFactory
from spikeflow.neurons import LIFNode
from spikeflow.surrogate import SURROGATES, MultiLevelSpikeCount, get_surrogate

F64 = torch.float64


def test_counts_and_straight_through_gradient_by_hand():
    # D = 3, window [0.5, 2.5]: round(clip(x, 0, 3)) with ties to even (0.5 -> 0,
    # 1.5 -> 2, 2.5 -> 2); gradient 1 where 0.5 <= x <= 2.5, bounds included.
    sg = MultiLevelSpikeCount(3, grad_window=(0.5, 2.5))
    x = torch.tensor([-1.0, 0.4, 0.5, 1.5, 2.5, 2.6, 9.0], dtype=F64, requires_grad=True)
    y = sg(x)
    assert y.tolist() == [0.0, 0.0, 0.0, 2.0, 2.0, 3.0, 3.0] and y.dtype == F64
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    # the default window is [0, D]; spiking=False is the primitive clip(x, 0, D)
    assert MultiLevelSpikeCount(2).params == {"max_spike_count": 2, "grad_min": 0, "grad_max": 2}
    smooth = MultiLevelSpikeCount(2, spiking=False)(torch.tensor([-1.0, 0.7, 3.0]))
    assert smooth.tolist() == pytest.approx([0.0, 0.7, 2.0])
    assert repr(sg) == "MultiLevelSpikeCount(max_spike_count=3, grad_window=(0.5, 2.5))"


def test_gradcheck_float64():
    """The straight-through backward is the derivative of the clipped identity it stands
    for (gradcheck of the count's backward against the primitive's finite differences,
    away from the kinks at 0 and D); the primitive (``spiking=False``) in a neuron (a
    soft-reset LIF counting ``H - θ``) through the reference loop."""
    x = torch.tensor([-0.8, 0.3, 1.2, 2.7, 3.6], dtype=F64, requires_grad=True)
    count, smooth = MultiLevelSpikeCount(3), MultiLevelSpikeCount(3, spiking=False)

    def straight_through(x):  # the value of the primitive, the gradient of the count
        c = count(x)
        return c - c.detach() + smooth(x).detach()

    assert torch.autograd.gradcheck(straight_through, (x,))
    assert torch.autograd.gradcheck(smooth, (x,))
    node = LIFNode(v_reset=None, surrogate_function=MultiLevelSpikeCount(3, spiking=False),
                   backend="torch", store_v_seq=True)  # fmt: skip
    seq = (torch.rand(5, 2, 3, dtype=F64) * 3.0 + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: (node(s), node.v_seq), (seq,))


@pytest.mark.parametrize("grad_window", [None, (0.5, 2.0)])
@pytest.mark.parametrize("spiking", [True, False])
def test_equal_to_spikingjelly(grad_window, spiking):
    sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    ties = torch.arange(-4, 40, dtype=F64) / 8
    x = torch.cat([ties, torch.randn(200, dtype=F64) * 3])
    ours = MultiLevelSpikeCount(4, spiking=spiking, grad_window=grad_window)
    theirs = sj_surrogate.MultiLevelSpikeCount(4, spiking=spiking, grad_window=grad_window)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    assert torch.equal(y1, y2)
    g = torch.randn_like(x)
    assert torch.equal(torch.autograd.grad((y1 * g).sum(), x1)[0],
                       torch.autograd.grad((y2 * g).sum(), x2)[0])  # fmt: skip


def test_registered_by_name():
    assert SURROGATES["MultiLevelSpikeCount"] is MultiLevelSpikeCount
    for name in ("multi_level_spike_count", "MultiLevelSpikeCount", "multilevelspikecount"):
        assert type(get_surrogate(name)) is MultiLevelSpikeCount
    built = get_surrogate("multi_level_spike_count", max_spike_count=2, grad_window=(0.0, 1.0))
    assert built.params == {"max_spike_count": 2, "grad_min": 0, "grad_max": 1}
    # where a model's neurons take it by name (neuron_kwargs, --neuron-kwargs)
    spec = {"name": "multi_level_spike_count", "max_spike_count": 2}
    neuron = NeuronFactory("lif", {"surrogate_function": spec})()
    assert isinstance(neuron.surrogate_function, MultiLevelSpikeCount)
    assert neuron.surrogate_function.max_spike_count == 2


def test_fused_kernels_refuse_it_and_auto_runs_the_reference_loop():
    x = torch.rand(6, 2, 5) * 4.0
    with pytest.raises(TraceError, match="MultiLevelSpikeCount's spiking forward is not a Heav"):
        LIFNode(surrogate_function=MultiLevelSpikeCount(3), backend="cpu")(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auto = LIFNode(v_reset=None, surrogate_function=MultiLevelSpikeCount(3))(x)
    assert any("MultiLevelSpikeCount" in str(w.message) for w in caught)
    reference = LIFNode(v_reset=None, surrogate_function=MultiLevelSpikeCount(3), backend="torch")
    assert torch.equal(auto, reference(x)) and (auto == 2).any()


def test_bad_arguments_are_named():
    for bad in (0, 2.5, True, "4"):
        with pytest.raises(ConfigurationError, match="max_spike_count must be an integer >= 1"):
            MultiLevelSpikeCount(bad)
    with pytest.raises(ConfigurationError, match=r"grad_window must be \(lower, upper\)"):
        MultiLevelSpikeCount(2, grad_window=1.0)
    with pytest.raises(ConfigurationError, match="grad_window must have lower <= upper"):
        MultiLevelSpikeCount(2, grad_window=(2.0, 1.0))
    with pytest.raises(ConfigurationError, match="parameter grad_max must be finite"):
        MultiLevelSpikeCount(2, grad_window=(0.0, float("inf")))
    with pytest.raises(ConfigurationError, match="no strict form"):
        MultiLevelSpikeCount(2)(torch.zeros(3), strict=True)
