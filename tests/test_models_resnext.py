"""ResNeXt and wide ResNets (spiking and SEW): the zoo's builders against SpikingJelly
2.0's and torchvision's counts, and the grouped bottleneck against SpikingJelly's with
the same weights (outputs and gradients in float64)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.models import create_model, model_arguments
from spikeflow.models.common import NeuronFactory
from spikeflow.models.resnet import (
    IMAGENET_NEURON_DEFAULTS,
    ResNetSkeleton,
    SpikingBasicBlock,
    SpikingBottleneck,
    spiking_resnext50_32x4d,
)
from spikeflow.models.sew_resnet import SEWBottleneck

VARIANTS = ["resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"]
#: torchvision's ANN counts (its model docs); IF neurons add no parameters.
TORCHVISION_PARAMETERS = {
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}
#: groups and width_per_group of each variant, as torchvision and SpikingJelly set them.
GROUPING = {
    "resnext50_32x4d": (32, 4),
    "resnext101_32x8d": (32, 8),
    "wide_resnet50_2": (1, 128),
    "wide_resnet101_2": (1, 128),
}
K = 5


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shapes(model: nn.Module) -> list[torch.Size]:
    return [v.shape for v in model.state_dict().values()]


@pytest.mark.parametrize("kind", ["spiking", "sew"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_builders_match_spikingjelly_and_torchvision_counts(spikingjelly_models, kind, variant):
    """Built on the meta device: the same tensors in the same order as SpikingJelly's
    model (SEW with PLIF, whose weight takes a place; the spiking ResNet with IF, see
    the report on its PLIF order), and torchvision's parameter count with IF."""
    m = spikingjelly_models
    sj_builder = getattr(m.sew_resnet if kind == "sew" else m.spiking_resnet, f"{kind}_{variant}")
    neuron = m.neuron.ParametricLIFNode if kind == "sew" else m.neuron.IFNode
    extra = {"cnf": "ADD"} if kind == "sew" else {}
    with torch.device("meta"):
        ours = create_model(f"{kind}_{variant}", neuron="plif" if kind == "sew" else "if", **extra)
        theirs = sj_builder(spiking_neuron=neuron, **extra)
    assert _shapes(ours) == _shapes(theirs)
    assert _n_params(ours) == _n_params(theirs)
    if kind == "spiking":  # IF: no neuron parameters; SEW has the same convs and BNs
        assert _n_params(ours) == TORCHVISION_PARAMETERS[variant]
    groups, width_per_group = GROUPING[variant]
    conv2 = ours.layer1[0].conv2
    assert conv2.groups == groups
    assert conv2.in_channels == conv2.out_channels == 64 * width_per_group * groups // 64


def _copy_weights_in_order(source: nn.Module, target: nn.Module) -> None:
    src, dst = list(source.state_dict().values()), target.state_dict()
    assert len(src) == len(dst)
    for (key, value), theirs in zip(dst.items(), src):
        assert value.shape == theirs.shape, key
        value.copy_(theirs)


def _assert_same_in_float64(theirs: nn.Module, ours: nn.Module, x: Tensor, firing: bool) -> None:
    """Give ``ours`` SpikingJelly's weights (BN's γ, β drawn so that spikes flow; more
    for AND, ``firing``), then compare the outputs and the gradients of the input and of
    every parameter, in order, for a random output gradient."""
    from spikingjelly.activation_based import functional

    functional.set_step_mode(theirs, "m")
    theirs.double()
    ours.double()
    with torch.no_grad():
        for bn in (b for b in theirs.modules() if isinstance(b, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(*((0.6, 1.2) if firing else (-0.2, 0.4)))
        if hasattr(theirs, "fc"):
            theirs.fc.bias.zero_()  # a non-zero output then needs spikes out of the last stage
        _copy_weights_in_order(theirs, ours)
    results = []
    g = None
    for model in (theirs, ours):
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        g = torch.randn_like(out) if g is None else g
        out.backward(g)
        results.append((out.detach(), xi.grad, [p.grad for p in model.parameters()]))
    (expected, expected_dx, expected_grads), (got, got_dx, got_grads) = results
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got_dx, expected_dx, rtol=1e-10, atol=1e-12)
    assert expected_dx.abs().sum() > 0
    assert len(got_grads) == len(expected_grads) > 0
    for ours_grad, their_grad in zip(got_grads, expected_grads):
        torch.testing.assert_close(ours_grad, their_grad, rtol=1e-10, atol=1e-12)
    assert expected_grads[0].abs().sum() > 0  # the first conv: gradients reach the start


@pytest.mark.parametrize(
    ("kind", "groups", "width_per_group", "stride", "cnf"),
    [
        ("spiking", 4, 16, 2, None),  # ResNeXt-like, with the downsample shortcut
        ("spiking", 1, 128, 1, None),  # wide, identity shortcut
        ("sew", 4, 16, 2, "ADD"),
        ("sew", 1, 128, 1, "ADD"),
        ("sew", 2, 32, 2, "AND"),
    ],
)
def test_grouped_bottleneck_matches_spikingjelly_in_float64(
    spikingjelly_models, kind, groups, width_per_group, stride, cnf
):
    """One grouped bottleneck (8 planes, 32 channels out) against SpikingJelly's, with IF,
    detach_reset and ATan(α=2) in both: outputs and gradients in float64."""
    from spikingjelly.activation_based import layer, surrogate

    m = spikingjelly_models
    torch.manual_seed(2)
    planes, out = 8, 32
    in_planes = 16 if stride != 1 else out
    sj_module = m.sew_resnet if kind == "sew" else m.spiking_resnet
    downsample = None
    if stride != 1:
        downsample = nn.Sequential(
            sj_module.conv1x1(in_planes, out, stride), layer.BatchNorm2d(out)
        )
    neuron_kwargs = {"detach_reset": True, "surrogate_function": surrogate.ATan()}
    grouping = {"groups": groups, "width_per_group": width_per_group}
    factory = NeuronFactory("if", None, IMAGENET_NEURON_DEFAULTS)
    if kind == "sew":
        theirs = sj_module.Bottleneck(
            in_planes, planes, stride, downsample, groups, width_per_group, cnf=cnf,
            spiking_neuron=m.neuron.IFNode, **neuron_kwargs,
        )  # fmt: skip
        ours = SEWBottleneck(in_planes, planes, stride, stride != 1, factory, cnf, **grouping)
    else:
        theirs = sj_module.Bottleneck(
            in_planes, planes, stride, downsample, groups, width_per_group,
            spiking_neuron=m.neuron.IFNode, **neuron_kwargs,
        )  # fmt: skip
        ours = SpikingBottleneck(in_planes, planes, stride, stride != 1, factory, **grouping)
    x = (torch.rand(2, 2, in_planes, 6, 6, dtype=torch.float64) < 0.5).double()
    _assert_same_in_float64(theirs, ours, x, firing=cnf == "AND")


@pytest.mark.parametrize("kind", ["spiking", "sew"])
def test_resnext_matches_spikingjelly_in_float64(spikingjelly_models, kind):
    """ResNeXt 32x4d with one block per stage (SpikingJelly's model class; its widths
    are fixed at 64): same weights, same output and gradients, in float64."""
    from spikingjelly.activation_based import surrogate

    m = spikingjelly_models
    torch.manual_seed(3)
    depths = [1, 1, 1, 1]
    options = {"num_classes": K, "groups": 32, "width_per_group": 4}
    neuron_kwargs = {"detach_reset": True, "surrogate_function": surrogate.ATan()}
    if kind == "sew":
        theirs = m.sew_resnet.SEWResNet(
            m.sew_resnet.Bottleneck, depths, cnf="ADD", spiking_neuron=m.neuron.IFNode,
            **options, **neuron_kwargs,
        )  # fmt: skip

        def block(*args: Any, **kwargs: Any) -> SEWBottleneck:
            return SEWBottleneck(*args, cnf="ADD", **kwargs)  # as the sew_ builders bind it

        block.expansion = SEWBottleneck.expansion  # type: ignore[attr-defined]
        ours = ResNetSkeleton(block, depths, **options)
    else:
        theirs = m.spiking_resnet.SpikingResNet(
            m.spiking_resnet.Bottleneck, depths, spiking_neuron=m.neuron.IFNode,
            **options, **neuron_kwargs,
        )  # fmt: skip
        ours = ResNetSkeleton(SpikingBottleneck, depths, **options)
    _assert_same_in_float64(theirs, ours, torch.rand(2, 2, 3, 16, 16, dtype=torch.float64), False)


def test_bottleneck_width_follows_groups_and_width_per_group():
    """int(planes · width_per_group / 64) · groups channels inside, 4 · planes out."""
    plif = NeuronFactory("plif")
    block = SpikingBottleneck(64, 32, 2, True, plif, groups=4, width_per_group=24)
    width = int(32 * 24 / 64) * 4  # 12 · 4 = 48
    assert (block.conv1.out_channels, block.conv2.groups, block.conv3.in_channels) == (
        width,
        4,
        width,
    )
    assert block.conv3.out_channels == block.bn3.num_features == 128
    assert block.conv2.weight.shape == (width, width // 4, 3, 3)
    sew = SEWBottleneck(64, 32, 1, False, plif, groups=4, width_per_group=24)
    assert sew.conv2.weight.shape == (width, width // 4, 3, 3)
    y = block(torch.rand(2, 1, 64, 8, 8))
    assert y.shape == (2, 1, 128, 4, 4)


def test_grouping_errors_name_what_was_wrong():
    with pytest.raises(ConfigurationError, match="basic block takes only groups=1"):
        ResNetSkeleton(SpikingBasicBlock, [1, 1, 1, 1], groups=2, base_width=8)
    with pytest.raises(ConfigurationError, match=r"groups must be a positive integer, got 0"):
        ResNetSkeleton(SpikingBottleneck, [1, 1, 1, 1], groups=0, base_width=8)
    with pytest.raises(ConfigurationError, match=r"width_per_group must be a positive integer"):
        ResNetSkeleton(SpikingBottleneck, [1, 1, 1, 1], width_per_group=-4, base_width=8)
    # base_width 8: int(8 · 4 / 64) = 0 channels per group in the first stage
    with pytest.raises(ConfigurationError, match=r"width .* is 0 for planes=8, width_per_group=4"):
        create_model("spiking_resnext50_32x4d", base_width=8)
    for name in ("spiking_resnext50_32x4d", "sew_wide_resnet50_2"):
        with pytest.raises(ConfigurationError, match="does not accept the argument"):
            create_model(name, groups=8)
        assert "groups" not in model_arguments(name)
        assert {"cnf", "base_width", "stem"} & set(model_arguments(name))
    with pytest.raises(ConfigurationError, match="fixes groups=32 and width_per_group=4"):
        spiking_resnext50_32x4d(width_per_group=8)


def test_a_block_without_groups_is_named_when_groups_are_asked() -> None:
    """A custom block written for ``(in_planes, planes, stride, downsample, neuron)``
    still builds with the defaults, and is named (not a bare TypeError) when the
    skeleton is asked for groups."""
    from spikeflow.models.resnet import ResNetSkeleton, SpikingBasicBlock

    class OldBlock(SpikingBasicBlock):
        def __init__(self, in_planes, planes, stride, downsample, neuron):
            super().__init__(in_planes, planes, stride, downsample, neuron)

    ResNetSkeleton(OldBlock, [1, 1, 1, 1], num_classes=3)
    with pytest.raises(ConfigurationError, match="'OldBlock' takes no groups"):
        ResNetSkeleton(OldBlock, [1, 1, 1, 1], num_classes=3, groups=2)
