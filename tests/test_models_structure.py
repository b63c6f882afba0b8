"""The residual networks' shared structure (stems and stages, depth checks, the layer
order of their blocks) and the model registry's builders."""

from __future__ import annotations

import pickle
import sys

import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.models import create_model, list_models
from spikeflow.models.common import NeuronFactory
from spikeflow.models.ms_resnet import MSResNet
from spikeflow.models.registry import _builder
from spikeflow.models.resnet import ResNetSkeleton, SpikingBasicBlock, SpikingBottleneck
from spikeflow.models.sew_resnet import SEWBasicBlock, SEWBottleneck


@pytest.mark.parametrize(
    ("name", "stem", "side"),
    [
        ("ms_resnet18", "imagenet", 1),  # conv7x7/2, then all four stages halve: 32 -> 1
        ("ms_resnet18", "cifar", 4),  # conv3x3/1, the first stage keeps the size: 32 -> 4
        ("spiking_resnet18", "imagenet", 1),  # conv7x7/2, max pool /2, three stages halve
        ("sew_resnet50", "cifar", 4),  # conv3x3/1, no pool, three stages halve
    ],
)
def test_feature_maps_shrink_as_the_stems_and_stages_say(name, stem, side):
    model = create_model(name, num_classes=5, base_width=4, stem=stem).eval()
    channels = 32 * (4 if name == "sew_resnet50" else 1)
    out = model.forward_features(torch.rand(1, 1, 3, 32, 32))
    assert out.shape == (1, 1, channels, side, side)


@pytest.mark.parametrize(
    "make",
    [
        lambda depths: ResNetSkeleton(SpikingBasicBlock, depths, base_width=4),
        lambda depths: MSResNet(depths, base_width=4),
    ],
)
def test_stage_depths_are_checked(make):
    with pytest.raises(ConfigurationError, match=r"depths must have 4 stages, got \[2, 2, 2\]"):
        make((2, 2, 2))
    with pytest.raises(ConfigurationError, match=r"depths\[1\] must be a positive integer, got 0"):
        make((2, 0, 2, 2))


def test_residual_blocks_keep_their_layer_order():
    """A block's layer order is its parameters' order in a checkpoint and in an
    optimizer's state: the branch, then the spiking ResNet's downsample before its last
    neuron, SEW's after it (SpikingJelly's order: its weights load by position)."""
    plif = NeuronFactory("plif")  # a neuron with a parameter, so it has a place

    def order(block: nn.Module) -> list[str]:
        return list(dict.fromkeys(key.split(".")[0] for key in block.state_dict()))

    basic = ["conv1", "bn1", "sn1", "conv2", "bn2"]
    bottleneck = [*basic, "sn2", "conv3", "bn3"]
    assert order(SpikingBasicBlock(8, 16, 2, True, plif)) == [*basic, "downsample", "sn2"]
    assert order(SpikingBottleneck(8, 4, 2, True, plif)) == [*bottleneck, "downsample", "sn3"]
    assert order(SEWBasicBlock(8, 16, 2, True, plif)) == [*basic, "sn2", "downsample"]
    assert order(SEWBottleneck(8, 4, 2, True, plif)) == [*bottleneck, "sn3", "downsample"]


def test_builders_are_named_documented_and_picklable():
    for name in list_models():
        builder = _builder(name)
        assert builder.__name__ == builder.__qualname__ == name and builder.__doc__, name
        assert getattr(sys.modules[builder.__module__], name) is builder, name
        assert pickle.loads(pickle.dumps(builder)) is builder, name
