"""MemoryAccessCounter: bytes per aten operation equal to SpikingJelly 2.0's
MemoryAccessCounter on a small CNN (forward and backward, per module), its documented
corrections derived by hand, and its options and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.energy import MemoryAccessCounter, count_memory_access
from spikeflow.errors import ConfigurationError
from spikeflow.neurons import LIFNode

F32 = 4  # bytes per float32 element
I64 = 8


class SmallCNN(nn.Module):
    """conv-BN-sigmoid-max pool, a bias-free conv with a scaled residual, average pool,
    linear: every kind of rule in one forward and backward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.avg = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        h = self.pool(torch.sigmoid(self.bn(self.conv(x))))
        h = self.avg(self.conv2(h) * 0.5 + h)
        return self.fc(h.flatten(1)).mean(0)


def _spikingjelly_counts(model, x, backward, ignore=None):
    op_counter = pytest.importorskip(
        "spikingjelly.activation_based.op_counter", reason="SpikingJelly is not installed"
    )
    counter = op_counter.MemoryAccessCounter(extra_ignore_modules=ignore)
    with op_counter.DispatchCounterMode([counter]), torch.set_grad_enabled(backward):
        out = model(x)
        if backward:
            out.sum().backward()
    model.zero_grad()
    counts = {
        scope: {str(op): n for op, n in ops.items()} for scope, ops in counter.get_counts().items()
    }
    return counts, counter.get_total()


@pytest.mark.parametrize("training", [True, False])
def test_counts_equal_spikingjellys_on_a_small_cnn(training):
    torch.manual_seed(0)
    model, x = SmallCNN().train(training), torch.rand(4, 2, 8, 8)
    theirs, their_total = _spikingjelly_counts(model, x, backward=training)
    ours = count_memory_access(model, x, backward=training)
    mine = ours.by_module()
    assert mine.keys() == theirs.keys()  # Global, Net, Net.conv, ...: the same scopes
    corrected = {"aten.max_pool2d_with_indices_backward.default",
                 "aten.native_batch_norm_backward.default"}  # fmt: skip
    for scope, ops in theirs.items():
        assert {op: n for op, n in mine[scope].items() if op not in corrected} == {
            op: n for op, n in ops.items() if op not in corrected
        }, scope
    assert ours.by_op()["aten.convolution.default"] > 0
    if not training:
        assert ours.total == their_total
        return
    # the corrections, by hand: max pool's backward reads the gradient [4, 8, 4, 4] and
    # the int64 indices, writes the input's gradient [4, 8, 8, 8] (SpikingJelly: the
    # input in place of the indices) ...
    pool = ours.by_op()["aten.max_pool2d_with_indices_backward.default"]
    assert pool == 512 * F32 + 512 * I64 + 2048 * F32
    assert (
        theirs["Global"]["aten.max_pool2d_with_indices_backward.default"] == (512 + 2 * 2048) * F32
    )
    # ... batch norm's reads the gradient and input [4, 8, 8, 8], weight and the two saved
    # statistics (8 each), and writes the three gradients (SpikingJelly: no writes)
    norm = ours.by_op()["aten.native_batch_norm_backward.default"]
    assert norm == (2 * 2048 + 3 * 8) * F32 + (2048 + 8 + 8) * F32
    assert theirs["Global"]["aten.native_batch_norm_backward.default"] == (2 * 2048 + 3 * 8) * F32
    assert ours.total == their_total + (pool - (512 + 2 * 2048) * F32) + (2048 + 16) * F32
    # the backward steps SpikingJelly has no rule for are listed, not silently dropped
    assert {"aten.sigmoid_backward.default", "aten.avg_pool2d_backward.default"} <= set(
        ours.uncounted
    )


def test_a_linear_layer_by_hand_and_the_options():
    layer = nn.Linear(5, 3)
    x = torch.rand(2, 5)
    # addmm reads the bias (3), x (2x5) and the weight (5x3), writes the output (2x3)
    counts = count_memory_access(layer, x).by_op()
    assert counts == {"aten.addmm.default": (3 + 10 + 15 + 6) * F32, "aten.t.default": 0}
    model = nn.Sequential(layer, nn.ReLU())
    counter = count_memory_access(model, x)
    assert counter.uncounted == {"aten.relu.default": 1}
    relu_rule = {torch.ops.aten.relu.default: lambda args, kwargs, out: 2 * out.numel() * 4}
    counter = count_memory_access(model, x, extra_rules=relu_rule)
    assert counter.by_op()["aten.relu.default"] == 12 * F32 and not counter.uncounted
    assert counter.by_module()["Sequential.1"] == {"aten.relu.default": 12 * F32}
    skipped = count_memory_access(model, x, extra_rules=relu_rule, ignore_modules=[nn.Linear])
    assert skipped.by_op() == {"aten.relu.default": 12 * F32}
    layer, x = layer.double(), x.double()
    with MemoryAccessCounter() as counter:  # float64 costs twice the bytes
        layer(x)
    assert counter.total == 2 * (3 + 10 + 15 + 6) * F32
    counter.reset()
    assert counter.total == 0 and counter.by_module() == {}


def test_bad_rules_and_ignored_types_are_refused():
    with pytest.raises(ConfigurationError, match=r"rule for aten.relu.default must be callable"):
        MemoryAccessCounter(extra_rules={torch.ops.aten.relu.default: 3})
    with pytest.raises(ConfigurationError, match=r"ignore_modules must hold nn.Module subclasses"):
        MemoryAccessCounter(ignore_modules=[nn.Linear(2, 2)])
    with pytest.raises(ConfigurationError, match=r"backward=True but no output of ReLU requires"):
        count_memory_access(nn.ReLU(), torch.rand(3), backward=True)


class SpikingNet(nn.Module):
    """A grouped conv, average pool, a LIF neuron's reference loop and a bias-free linear
    layer over T steps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.avg = nn.AvgPool2d(2)
        self.lif = LIFNode(step_mode="m", backend="torch")
        self.fc = nn.Linear(8 * 4 * 4, 5, bias=False)

    def forward(self, x):  # [T, B, 4, 8, 8]
        h = self.avg(self.conv(x.flatten(0, 1)))
        return self.fc(self.lif(h.unflatten(0, x.shape[:2])).flatten(2))


@pytest.mark.parametrize("backward", [False, True])
def test_counts_equal_spikingjellys_on_a_spiking_net_and_ignored_modules_backward_too(backward):
    torch.manual_seed(0)
    model, x = SpikingNet(), torch.rand(3, 2, 4, 8, 8)
    for ignore in (None, [nn.Conv2d]):
        theirs, their_total = _spikingjelly_counts(model, x, backward, ignore)
        model.lif.reset()
        ours = count_memory_access(model, x, backward=backward, ignore_modules=ignore or ())
        model.zero_grad()
        model.lif.reset()
        assert ours.total == their_total and ours.by_module() == theirs, ignore
        if ignore:  # the conv's operations are left out, its backward's too
            assert "SpikingNet.conv" not in ours.by_module()
        else:
            assert ours.by_module()["SpikingNet.lif"]["aten.mul.Tensor"] > 0
            # the grouped conv's backward, by hand: the output gradient [6, 8, 8, 8], the
            # input [6, 4, 8, 8] and weight gradient [8, 2, 3, 3], the bias gradient (8);
            # the input needs no gradient
            grad = ours.by_op().get("aten.convolution_backward.default")
            assert grad == ((3072 + 1536 + 144 + 8) * F32 if backward else None)


def test_batch_norm_backward_in_evaluation_reads_the_running_statistics():
    norm, x = nn.BatchNorm2d(3).eval(), torch.rand(2, 3, 4, 4, requires_grad=True)
    counts = count_memory_access(norm, x, backward=True).by_op()
    # reads the gradient and the input (96 each), weight, running mean and variance (3
    # each); writes the input's, weight's and bias's gradients (96, 3, 3)
    assert counts["aten.native_batch_norm_backward.default"] == (2 * 96 + 3 * 3 + 96 + 2 * 3) * F32


def test_fused_neuron_kernels_are_listed_not_missed():
    kernels = pytest.importorskip("spikeflow.kernels")
    if kernels.resolve_backend("auto", torch.rand(2, 1)).__name__ == "run_reference":
        pytest.skip("no fused kernel here (no C compiler)")
    torch.manual_seed(0)
    x = torch.rand(4, 2, 16, requires_grad=True)
    node = LIFNode(step_mode="m")
    expected = node(x)
    expected.sum().backward()
    grad, x.grad = x.grad.clone(), None
    node.reset()
    with MemoryAccessCounter() as counter:
        spikes = node(x)
        spikes.sum().backward()
    assert torch.equal(spikes, expected) and torch.equal(x.grad, grad)  # the same results
    assert counter.uncounted["spikeflow.neuron_forward.default"] == 1
    assert counter.uncounted["spikeflow.neuron_backward.default"] == 1
    # outside the counter the eager path does not go through the operators
    from spikeflow.kernels import fused

    assert fused._operators_seen == 0
