"""Max-ResNet: against SpikingJelly 2.0's ``model.MaxResNet`` with its weights loaded as
they are (outputs, input and parameter gradients, batch-norm statistics), its
``max_resnet18``'s tensors, and argument and input errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models import create_model
from spikeflow.models.max_resnet import MaxResNet
from spikeflow.neurons import LIFNode

F64 = dict(rtol=1e-10, atol=1e-12)
SIZES = dict(stage_channels=(8, 16, 32), base_channels=4, num_classes=5)


@pytest.fixture(scope="module")
def sj():
    return pytest.importorskip(
        "spikingjelly.activation_based.model.ms_resnet", reason="SpikingJelly is not installed"
    )


@pytest.mark.parametrize("training", [False, True])
def test_equals_spikingjelly_with_its_weights(sj, float64, training):
    """The same outputs (the time-mean of ours), input and parameter gradients and
    running statistics, blocks with and without the max pool and width changes."""
    theirs = sj.MaxResNet(T=2, layers=(2, 1, 1), stem_kernel_size=3, stem_stride=1, **SIZES)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # firing batch norms (small running variances for eval)
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.1 + 0.05)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.8)
    ours = MaxResNet((2, 1, 1), **SIZES)
    ours.load_state_dict(theirs.state_dict())  # strict: the same names and shapes
    theirs.train(training)
    ours.train(training)
    x = torch.rand(2, 2, 3, 8, 8) * 2
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = theirs(x1), ours(x2)
    assert y2.shape == (2, 2, 5)
    torch.testing.assert_close(y2.mean(0), y1, **F64)
    grad = torch.randn_like(y1)
    (y1 * grad).sum().backward()
    (y2.mean(0) * grad).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **F64)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, **F64, msg=name)
        assert p.grad.abs().sum() > 0, name  # the case reaches every parameter
    for (name, b), c in zip(ours.named_buffers(), theirs.buffers(), strict=True):
        torch.testing.assert_close(b, c, **F64, msg=name)


def test_max_resnet18_has_spikingjellys_tensors(sj):
    with torch.device("meta"):
        theirs = sj.max_resnet18().state_dict()
        model = create_model("max_resnet18")
    ours = model.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == v.shape for k, v in theirs.items())
    assert sum(p.numel() for p in model.parameters()) == 12_502_090  # 12.50M
    neuron = model.layer2[0].spike1
    assert isinstance(neuron, LIFNode) and neuron.tau == 2.0 and neuron.detach_reset
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [3, 3, 2]
    assert hasattr(model.layer2[0], "max_pool") and not hasattr(model.layer1[0], "max_pool")


def test_arguments_and_inputs_are_checked():
    for kwargs, message in [
        ({"depths": (1, 1)}, r"depths must be 3 or 4 stage depths, got \(1, 1\)"),
        ({"depths": (1, 0, 1)}, r"depths\[1\] must be a positive integer, got 0"),
        ({"stage_channels": (8, 16)}, r"stage_channels \[8, 16\] must have one width per stage"),
        ({"stem_stride": 0}, "stem_stride must be a positive integer"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            MaxResNet(**{"depths": (1, 1, 1), **kwargs})
    four = MaxResNet((1, 1, 1, 1), stage_channels=None, base_channels=2, stem_pool=True,
                     zero_init_residual=True)  # fmt: skip
    assert four.layer4[0].conv2.out_channels == 16 and not four.layer1[0].bn2.weight.any()
    assert four(torch.rand(1, 2, 3, 16, 16)).shape == (1, 2, 10)
    with pytest.raises(ShapeError, match="missing the time dimension"):
        four(torch.rand(2, 3, 16, 16))
