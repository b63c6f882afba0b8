"""Spiking MobileNetV2: against Norse 1.1's ``models.mobilenet`` with its weights, the
paper's parameter count, the block structure and the argument errors."""

import pytest
import torch
from torch import nn

from spikeflow import neurons, surrogate
from spikeflow.errors import ConfigurationError
from spikeflow.models import create_model
from spikeflow.models.mobilenet import InvertedResidual, SpikingMobileNetV2, make_divisible

torch.set_num_threads(1)

# Norse's LIF (LIFParameters() defaults, dt = 1e-3) as docs/norse_equivalents.md maps it.
NORSE_LIF = dict(
    tau_syn=1 / 200,
    tau_mem=1 / 100,
    r=(1 / 200) / 1e-3,
    v_leak=0.0,
    dt=1e-3,
    v_threshold=1.0,
    v_reset=0.0,
    strict_firing=True,
    detach_reset=False,
    surrogate_function=surrogate.SuperSpike(alpha=1.0),
)


def _norse_model(width_mult, num_classes):
    mobilenet = pytest.importorskip("norse.torch.models.mobilenet", reason="Norse not installed")
    from norse.torch.module.lif import LIF

    torch.manual_seed(0)
    theirs = mobilenet.MobileNetV2(num_classes=num_classes, width_mult=width_mult).double()

    class SpikesOnly(nn.Module):  # Norse's LIF returns (spikes, state): its Sequential
        def __init__(self, lif):  # then hands a tuple to the next conv (a TypeError in
            super().__init__()  # Norse 1.1's own forward), so the test keeps the spikes.
            self.lif = lif

        def forward(self, x):
            return self.lif(x)[0]

    for module in list(theirs.modules()):
        for name, child in module.named_children():
            if isinstance(child, LIF):
                setattr(module, name, SpikesOnly(child))
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(1.0, 3.0)
                m.bias.uniform_(0.0, 1.5)
    return theirs.eval()


def _norse_forward(theirs, x):
    y = theirs.features(x)
    y = theirs.pool(y).reshape(y.shape[0], y.shape[1], -1)
    return theirs.classifier(y)


def norse_to_spikeflow(state):
    """Norse's keys wrap each layer in ``Lift(...).lifted_module``; spikeflow's layers are
    the modules themselves."""
    return {k.replace(".lifted_module", ""): v for k, v in state.items()}


@pytest.mark.parametrize("width_mult", [0.25, 0.35])
def test_same_outputs_and_input_gradients_as_norse(width_mult):
    theirs = _norse_model(width_mult, num_classes=5)
    ours = SpikingMobileNetV2(
        num_classes=5, width_mult=width_mult, neuron=neurons.CubaLIFNode, neuron_kwargs=NORSE_LIF
    ).double()
    ours.load_state_dict(norse_to_spikeflow(theirs.state_dict()))
    ours.eval()
    torch.manual_seed(1)
    x = (4.0 * torch.rand(8, 2, 3, 32, 32, dtype=torch.float64)).requires_grad_()
    y_theirs = _norse_forward(theirs, x)
    (g_theirs,) = torch.autograd.grad(y_theirs.square().sum(), x)
    rates = []
    for m in ours.modules():
        if isinstance(m, neurons.CubaLIFNode):
            m.register_forward_hook(lambda m, i, o: rates.append(o.mean().item()))
    y_ours = ours(x)
    (g_ours,) = torch.autograd.grad(y_ours.square().sum(), x)
    assert len(rates) == 35 and all(0.0 < r < 1.0 for r in rates)  # every layer fires
    assert y_ours.shape == (8, 2, 5)
    assert not torch.allclose(y_ours[0], y_ours[-1])  # the steps differ
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-8, atol=1e-12)


def test_parameter_count_is_torchvisions_mobilenet_v2():
    with torch.device("meta"):
        model = create_model("spiking_mobilenet_v2")  # width 1.0, 1000 classes
    assert sum(p.numel() for p in model.parameters()) == 3_504_872  # torchvision's
    assert model.last_channel == 1280


@pytest.mark.parametrize("width_mult", [0.5, 1.4])
def test_parameter_shapes_are_norses_at_other_widths(width_mult):
    mobilenet = pytest.importorskip("norse.torch.models.mobilenet", reason="Norse not installed")
    with torch.device("meta"):
        theirs = mobilenet.MobileNetV2(num_classes=10, width_mult=width_mult)
        ours = create_model("spiking_mobilenet_v2", num_classes=10, width_mult=width_mult)
    expected = {k: v.shape for k, v in norse_to_spikeflow(theirs.state_dict()).items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected


def test_structure_residuals_depthwise_and_rounding():
    assert [make_divisible(v, 8) for v in (32 * 0.25, 16 * 0.35, 24 * 0.35, 1280)] == [
        8,
        8,
        8,
        1280,
    ]
    assert make_divisible(60, 8) == 64 and make_divisible(11, 8) == 16  # 10% rule: 8 < 9.9
    model = SpikingMobileNetV2(num_classes=3, width_mult=0.5)
    blocks = [m for m in model.features if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17
    assert [b.use_residual for b in blocks].count(True) == 10
    dw = blocks[1].conv[1][0]
    assert dw.groups == dw.in_channels == dw.out_channels == 8 * 6 and dw.stride == (2, 2)
    # a residual block adds its input: with its last BN zeroed it is the identity
    block = blocks[2]
    nn.init.zeros_(block.conv[-1].weight)
    nn.init.zeros_(block.conv[-1].bias)
    x = torch.randn(2, 1, block.conv[0][0].in_channels, 4, 4)
    torch.testing.assert_close(block.eval()(x), x)


def test_cifar_stem_keeps_twice_the_resolution():
    maps = {}
    for stem in ("imagenet", "cifar"):
        model = SpikingMobileNetV2(num_classes=4, width_mult=0.25, stem=stem, in_channels=1)
        out = model.features(torch.rand(2, 1, 1, 64, 64))
        maps[stem] = out.shape[-1]
        assert model(torch.rand(2, 1, 1, 8, 8)).shape == (2, 1, 4)
    assert (maps["imagenet"], maps["cifar"]) == (2, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(width_mult=0), "width_mult"),
        (dict(width_mult="1"), "width_mult"),
        (dict(width_mult=float("inf")), "width_mult must be finite"),
        (dict(dropout="0.2"), "dropout must be a number"),
        (dict(stem="tiny"), "stem"),
        (dict(dropout=1.0), "dropout"),
        (dict(num_classes=0), "num_classes"),
        (dict(inverted_residual_setting=[]), "inverted_residual_setting"),
        (dict(inverted_residual_setting=[(6, 24, 2)]), r"inverted_residual_setting\[0\]"),
        (dict(inverted_residual_setting=[(6, 24, 2, 3)]), r"s in \(1, 2\)"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        SpikingMobileNetV2(**kwargs)


def test_wrong_input_channels_are_named():
    model = SpikingMobileNetV2(num_classes=2, width_mult=0.25, in_channels=2)
    with pytest.raises(Exception, match="channel"):
        model(torch.rand(1, 1, 3, 8, 8))


def test_exports_to_nir_with_folded_bns_and_residual_sums():
    pytest.importorskip("nir", reason="the nir extra is not installed")
    pytest.importorskip("nirtorch", reason="the nir extra is not installed")
    from spikeflow.interop import export_to_nir, import_from_nir, prepare_for_export
    from spikeflow.interop.prepare import ResidualBlockForExport

    torch.manual_seed(0)
    model = SpikingMobileNetV2(num_classes=10, width_mult=0.35, stem="cifar", in_channels=2)
    model = model.double().eval()
    with torch.no_grad():  # non-trivial BN statistics: the folds must be exact
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(1.0, 3.0)
                m.bias.uniform_(0.0, 1.5)
    x = 4.0 * torch.rand(4, 2, 2, 16, 16, dtype=torch.float64)
    prepared = prepare_for_export(model, x)
    sums = [m for m in prepared.modules() if isinstance(m, ResidualBlockForExport)]
    assert len(sums) == 10  # the residual blocks, and only them
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepared.modules())
    graph = export_to_nir(prepared, x)
    kinds = [type(node).__name__ for node in graph.nodes.values()]
    assert kinds.count("Conv2d") == 52 and kinds.count("IF") == 35
    groups = sorted(int(n.groups) for n in graph.nodes.values() if type(n).__name__ == "Conv2d")
    assert groups.count(1) == 35 and groups[-1] > 1  # 17 depthwise convolutions
    y = model(x)
    assert y.abs().max() > 0.1
    torch.testing.assert_close(prepared(x), y, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(import_from_nir(graph).double()(x), y, rtol=1e-10, atol=1e-12)
