"""``interop.prepare_for_export``: a trained network's inference form (batch norm folded,
dropout removed, voting as a Linear, containers flattened) computes what the network
computes in evaluation (float64, identical spikes), and what has no such form is named."""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.functional import reset_net
from spikeflow.interop import export_to_nir, import_from_nir, prepare_for_export
from spikeflow.models import create_model

pytest.importorskip("nirtorch")


def _exercise(model: nn.Module, offset: float = 0.2) -> nn.Module:
    """Random running statistics and affine parameters for every batch norm, and weights
    that make every layer fire some (not all) of the time."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                if module.weight is not None:
                    module.weight.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                    module.bias.copy_(torch.rand(n, generator=gen) - 0.5)
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                fan_in = module.weight[0].numel()
                module.weight.mul_(4).add_(offset / fan_in**0.5)
    return model


def _spikes(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every spiking neuron layer and of the network, in call order."""
    seen: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _a, out: seen.append(out))
        for m in model.modules()
        if isinstance(m, neurons.BaseNode)
    ]
    reset_net(model)
    with torch.no_grad():
        out = model(x)
    for hook in hooks:
        hook.remove()
    return [*seen, out]


ZOO = [
    ("plif_digits", {"pooling": "avg"}, (6, 5, 1, 8, 8)),
    ("plif_digits", {"pooling": "sum", "channels": 8, "dropout": 0.3}, (6, 5, 1, 8, 8)),
    ("plif_mnist", {"pooling": "avg", "channels": 8, "input_size": 12}, (4, 3, 1, 12, 12)),
    ("plif_nmnist", {"pooling": "avg", "channels": 6, "input_size": 16}, (4, 3, 2, 16, 16)),
]


@pytest.mark.parametrize(("name", "kwargs", "shape"), ZOO)
def test_zoo_models_prepared_compute_the_same_in_float64(name, kwargs, shape):
    model = _exercise(create_model(name, **kwargs).double().eval())
    prepared = prepare_for_export(model)
    assert isinstance(prepared, nn.Sequential) and not prepared.training
    kinds = {type(m) for m in prepared.modules()}
    assert not kinds & {layers.BatchNorm2d, layers.Dropout, layers.VotingLayer, nn.Identity}
    x = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    original, rewritten = _spikes(model, x), _spikes(prepared, x)
    assert len(original) == len(rewritten) >= 5
    for a, b in zip(original[:-1], rewritten[:-1], strict=True):
        assert 0 < a.mean() < 1  # the layer fires, and not always
        assert torch.equal(a, b)
    # the voting mean as a Linear with weights 1/vs: equal to float64 rounding
    torch.testing.assert_close(rewritten[-1], original[-1], rtol=0, atol=1e-14)
    assert original[-1].sum() > 0
    # the model itself is not changed, and the prepared one exports to NIR and back
    assert any(isinstance(m, layers.VotingLayer) for m in model.modules())
    net = import_from_nir(export_to_nir(prepared, x), dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(net(x), rewritten[-1])


def test_tdbn_folds_with_and_without_affine_parameters():
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    model = nn.Sequential(
        layers.Conv2d(2, 4, 3, padding=1, bias=False),
        layers.ThresholdDependentBatchNorm2d(4, alpha=0.5, v_threshold=3.0, affine=False),
        neurons.LIFNode(tau=2.0),
        layers.Flatten(),
        layers.Linear(4 * 5 * 5, 6),
        layers.ThresholdDependentBatchNorm1d(6, alpha=0.7, v_threshold=1.5),
        neurons.IFNode(),
    ).double()
    _exercise(model, offset=0.0)
    model.eval()
    prepared = prepare_for_export(model)
    assert [type(m) for m in prepared] == [
        layers.Conv2d, neurons.LIFNode, layers.Flatten, layers.Linear, neurons.IFNode,
    ]  # fmt: skip
    x = torch.rand(5, 3, 2, 5, 5, dtype=torch.float64, generator=gen) * 2
    original, rewritten = _spikes(model, x), _spikes(prepared, x)
    for a, b in zip(original, rewritten, strict=True):
        assert 0 < a.mean() < 1
        assert torch.equal(a, b)


def test_sequences_inside_other_modules_keep_their_names():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                layers.Linear(4, 4), layers.BatchNorm1d(4), layers.Dropout(0.5), neurons.IFNode()
            )

        def forward(self, x):
            return self.body(x) + x

    model = _exercise(Block().double(), offset=0.0).eval()
    prepared = prepare_for_export(model)
    assert type(prepared) is Block and list(dict(prepared.body.named_children())) == ["0", "3"]
    x = torch.rand(3, 2, 4, dtype=torch.float64) * 3
    assert torch.equal(_spikes(model, x)[-1], _spikes(prepared, x)[-1])


def test_the_max_pooling_refusal_names_the_residual_nets_that_export():
    """The refusal's list of alternatives names MS-ResNet and SEW's AND/IAND (both
    export since the membrane-shortcut and spike-product blocks did), and they prepare."""
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(create_model("plif_digits"))
    message = str(error.value)
    assert "(SEW: cnf=ADD, AND or IAND) --model-kwargs stem=cifar" in message
    assert "ms_resnet18/34/104" in message
    images = torch.rand(2, 1, 3, 16, 16)
    for name, kwargs in (("ms_resnet18", {}), ("sew_resnet18", {"cnf": "AND"})):
        net = create_model(name, stem="cifar", base_width=4, num_classes=10, **kwargs).eval()
        prepared = prepare_for_export(net, images)
        assert torch.allclose(prepared(images), net(images), atol=1e-5)


def test_what_has_no_inference_form_is_named():
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(create_model("plif_digits"))  # max pooling, the recipe's
    message = str(error.value)
    assert "'features.6' (MaxPool2d): NIR has no max pooling" in message
    assert "plif_digits --model-kwargs pooling=avg" in message
    model = nn.Sequential(
        layers.Conv2d(1, 2, 3),
        layers.BatchNormThroughTime2d(2, T=4),
        neurons.IFNode(),
        layers.Conv2d(2, 2, 3),
        layers.TemporalEffectiveBatchNorm2d(2, T=4),
        neurons.IFNode(),
        layers.BatchNorm2d(2),
        layers.Flatten(),
        layers.Linear(2, 3),
        layers.VotingLayer(2),
    )
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(model)
    message = str(error.value)
    assert "'1' (BatchNormThroughTime2d): BNTT has statistics and a scale per time step" in message
    assert "'4' (TemporalEffectiveBatchNorm2d): TEBN scales each time step" in message
    assert "'6' (BatchNorm2d): no Conv1d/2d/3d or Linear right before it" in message
    assert "'9' (VotingLayer)" in message and "multiple of voting_size=2" in message
    with pytest.raises(ConfigurationError, match=r"model must be a torch\.nn\.Module"):
        prepare_for_export("net")  # type: ignore[arg-type]


def test_a_prepared_zoo_model_runs_in_norse_spike_for_spike():
    """Norse 1.1 reads the exported graph (LIF, Conv2d, SumPool2d, Linear; its Flatten
    takes a batch of one) and computes the zoo model's outputs exactly."""
    norse = pytest.importorskip("norse.torch", reason="Norse (test-only peer) is not installed")
    model = create_model(
        "plif_digits", pooling="sum", channels=8, hidden=32,
        neuron_kwargs={"strict_firing": True},  # NIR fires on v > threshold
    )  # fmt: skip
    model = _exercise(model).eval()
    x = torch.rand(6, 1, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 3
    expected = _spikes(model, x)[-1]
    assert expected.sum() > 0
    graph = export_to_nir(prepare_for_export(model), x, dt=1e-3)  # Norse's time step
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        peer = norse.from_nir(graph, ignore_warnings=True)
        state, steps = None, []
        with torch.no_grad():
            for step in x:
                out, state = peer(step, state)
                steps.append(out)
    assert torch.equal(torch.stack(steps).reshape(expected.shape), expected)


@pytest.mark.parametrize("name", ["plif_digits", "plif_mnist"])
def test_zoo_pooling_argument(name):
    kinds = {
        pooling: [type(m) for m in create_model(name, pooling=pooling).modules()]
        for pooling in ("max", "avg", "sum")
    }
    assert layers.MaxPool2d in kinds["max"] and layers.AvgPool2d not in kinds["max"]
    assert layers.AvgPool2d in kinds["avg"] and layers.MaxPool2d not in kinds["avg"]
    sums = [m for m in create_model(name, pooling="sum").modules() if type(m) is layers.AvgPool2d]
    assert sums and all(m.divisor_override == 1 for m in sums)
    with pytest.raises(ConfigurationError, match=r"pooling must be one of \('max', 'avg', 'sum'\)"):
        create_model(name, pooling="min")


def test_a_parametrized_layer_folds_with_the_weight_it_uses():
    """A pruned or quantized layer (a torch parametrization) folds its effective weight."""

    class Grid(nn.Module):
        def forward(self, w):
            return torch.round(w * 8) / 8

    torch.manual_seed(4)
    model = nn.Sequential(
        layers.Conv2d(1, 3, 3, padding=1), layers.BatchNorm2d(3), neurons.LIFNode(tau=2.0)
    ).double()
    _exercise(model, offset=0.0)
    nn.utils.parametrize.register_parametrization(model[0], "weight", Grid())
    model.eval()
    prepared = prepare_for_export(model)
    assert not nn.utils.parametrize.is_parametrized(prepared[0])
    x = torch.rand(4, 2, 1, 6, 6, dtype=torch.float64) * 3
    original, rewritten = _spikes(model, x), _spikes(prepared, x)
    assert 0 < original[0].mean() < 1 and torch.equal(original[0], rewritten[0])


class _Wrapper(nn.Module):
    """A module of the user's own, running what it holds."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x)


def test_a_module_used_twice_in_a_sequence_keeps_both_places():
    """nn.Sequential(lin, bn, lin) runs lin twice (named_children lists it once): the
    prepared form has both places, the second one unfolded; a neuron used at two places
    (its state shared) is refused by name."""
    lin = layers.Linear(8, 8, dtype=torch.float64)
    model = _exercise(nn.Sequential(lin, layers.BatchNorm1d(8, dtype=torch.float64), lin))
    x = torch.rand(4, 2, 8, dtype=torch.float64)
    prepared = prepare_for_export(model)
    assert len(prepared) == 2
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model.eval()(x), rtol=1e-12, atol=1e-12)
    node = neurons.LIFNode()
    with pytest.raises(ConfigurationError, match=r"'2' \(LIFNode\) is the module at '0'"):
        prepare_for_export(nn.Sequential(node, layers.Linear(8, 8), node))
    block = _Wrapper(nn.Sequential(layers.Linear(8, 8), node))  # holding a neuron, twice
    with pytest.raises(ConfigurationError, match=r"'1' \(_Wrapper\) is the module at '0'"):
        prepare_for_export(nn.Sequential(block, block))


def test_forward_hooks_are_refused_by_name():
    """A hook changes what its module computes (torch's pruning and old weight norm
    recompute the weight before each call; flattening a hooked container drops its
    hook): refused with the way out, not exported as the bare weights."""
    from torch.nn.utils import prune

    def sequence():
        return nn.Sequential(layers.Linear(8, 8), layers.BatchNorm1d(8), layers.Linear(8, 3))

    pruned = sequence()
    prune.l1_unstructured(pruned[0], "weight", 0.5)
    with pytest.raises(ConfigurationError, match=r"'0' \(Linear\).*prune\.remove"):
        prepare_for_export(pruned)
    normed = sequence()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.nn.utils.weight_norm(normed[2])
    with pytest.raises(ConfigurationError, match=r"'2' \(Linear\).*remove_weight_norm"):
        prepare_for_export(normed)
    inner = sequence()
    inner.register_forward_hook(lambda _m, _a, out: out * 2)
    with pytest.raises(ConfigurationError, match=r"'0' \(Sequential\) has forward hooks"):
        prepare_for_export(nn.Sequential(inner, layers.Linear(3, 2)))
    prune.remove(pruned[0], "weight")  # made permanent: prepared
    assert isinstance(prepare_for_export(pruned), nn.Sequential)


def test_a_batch_norm_over_another_dim_than_the_linear_outputs_is_not_folded():
    """After a Linear, BatchNorm2d normalises dim 1 of [B, C, H, W] while the Linear maps
    W: refused even when C equals out_features. BatchNorm1d folds for [B, F] steps, and
    the folded Linear refuses a [B, C, L] step (there BatchNorm1d normalises C)."""

    def sequence(norm):
        return _exercise(nn.Sequential(layers.Linear(8, 8), norm).double()).eval()

    x4 = torch.rand(2, 3, 8, 5, 8, dtype=torch.float64)
    with pytest.raises(ConfigurationError, match=r"'1' \(BatchNorm2d\): it normalises dim 1"):
        prepare_for_export(sequence(layers.BatchNorm2d(8)))
    model = sequence(layers.BatchNorm1d(8))
    prepared = prepare_for_export(model)
    x = torch.rand(2, 3, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model(x), rtol=1e-12, atol=1e-12)
        model(x4[..., 0, :])  # the original runs on [T, B, C, L], normalising C
        with pytest.raises(ShapeError, match=r"expects \[T, B, 8\]"):
            prepared(x4[..., 0, :])


def test_a_single_step_network_stays_single_step():
    """The voting layer's Linear takes the voting layer's step mode: a network switched
    to single-step mode (streaming) runs prepared, one step at a time, as before."""
    from spikeflow.functional import set_step_mode, streaming

    model = nn.Sequential(
        layers.Linear(8, 20), neurons.IFNode(v_threshold=0.3), layers.VotingLayer(10)
    ).double()
    set_step_mode(model, "s")
    prepared = prepare_for_export(model)
    steps = torch.rand(4, 3, 8, dtype=torch.float64)
    with torch.no_grad():
        with streaming(model):
            expected = torch.stack([model(x) for x in steps])
        with streaming(prepared):
            got = torch.stack([prepared(x) for x in steps])
    assert expected.sum() > 0
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_a_batch_norm_after_a_weight_standardised_layer_is_not_folded():
    """WSConv2d computes with the standardised weight (mean 0, variance 1 per output
    channel), which undoes the fold's per-channel scale: refused by name."""
    from spikeflow.layers.weight_standardization import WSConv2d

    model = nn.Sequential(WSConv2d(3, 4, 3), layers.BatchNorm2d(4))
    with pytest.raises(ConfigurationError, match=r"'1' \(BatchNorm2d\): the WSConv2d before"):
        prepare_for_export(model)


def _vgg(classifier_std: float = 2.0, **kwargs) -> nn.Module:
    """A float64 spiking VGG-11 with average pooling, batch norm statistics set and
    classifier weights that make its hidden layers fire some of the time."""
    options = {"num_classes": 10, "in_channels": 2, "pool_size": 1, "hidden_features": 32}
    model = create_model("spiking_vgg11_bn", pooling="avg", **{**options, **kwargs})
    model = _exercise(model.double(), offset=0.0)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for module in model.classifier.modules():
            if isinstance(module, nn.Linear):
                std = classifier_std / module.in_features**0.5
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
    return model.eval()


@pytest.mark.parametrize(
    ("side", "pool_size", "pools"),
    [(32, 1, []), (64, 1, [(2, 2)]), (64, 2, [])],  # adaptive pool: removed, AvgPool2d(2)
)
def test_spiking_vgg_with_average_pooling_prepares_and_exports_exactly(side, pool_size, pools):
    model = _vgg(pool_size=pool_size)
    x = torch.rand(
        3, 2, 2, side, side, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    prepared = prepare_for_export(model, x * 3)
    assert isinstance(prepared, nn.Sequential)
    kinds = {type(m) for m in prepared.modules()}
    assert not kinds & {layers.BatchNorm2d, layers.Dropout, layers.AdaptiveAvgPool2d, nn.Identity}
    # five 2x2 pools from the features, then what the adaptive pool became
    kernels = [m.kernel_size for m in prepared if isinstance(m, nn.AvgPool2d)]
    assert kernels[:5] == [2] * 5 and kernels[5:] == pools
    original, rewritten = _spikes(model, x * 3), _spikes(prepared, x * 3)
    assert len(original) == len(rewritten) == 11  # 8 conv and 2 hidden neuron layers
    for a, b in zip(original[:-1], rewritten[:-1], strict=True):
        assert 0 < a.mean() < 1
        assert torch.equal(a, b)
    torch.testing.assert_close(rewritten[-1], original[-1], rtol=0, atol=1e-12)
    assert original[-1].abs().sum() > 0
    assert any(isinstance(m, layers.BatchNorm2d) for m in model.modules())  # not changed
    net = import_from_nir(export_to_nir(prepared, x), dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(net(x * 3), rewritten[-1])


def test_spiking_vgg_pooling_argument_and_what_does_not_export():
    small = {"num_classes": 4, "pool_size": 1, "hidden_features": 8}
    for pooling, kind in (("max", nn.MaxPool2d), ("avg", nn.AvgPool2d), ("sum", nn.AvgPool2d)):
        pools = [m for m in create_model("spiking_vgg11", pooling=pooling, **small).features]
        pools = [m for m in pools if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
        assert len(pools) == 5 and all(isinstance(m, kind) for m in pools)
        assert all(getattr(m, "divisor_override", None) == (1 if pooling == "sum" else None)
                   for m in pools if pooling != "max")  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"pooling must be one of"):
        create_model("spiking_vgg11", pooling="min", **small)
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(create_model("spiking_vgg11", **small), torch.rand(1, 1, 3, 32, 32))
    assert "'features.2' (MaxPool2d): NIR has no max pooling" in str(error.value)
    assert "spiking_vgg11/13/16/19(_bn) --model-kwargs pooling=avg" in str(error.value)
    model = create_model("spiking_vgg11", pooling="avg", **small)
    with pytest.raises(ConfigurationError, match=r"'avgpool' \(AdaptiveAvgPool2d\): NIR has no "
                       r"adaptive pooling; .*pass sample_input="):  # fmt: skip
        prepare_for_export(model)
    uneven = nn.Sequential(layers.Conv2d(1, 2, 3), layers.AdaptiveAvgPool2d((2, 3)))
    with pytest.raises(ConfigurationError, match=r"'1' \(AdaptiveAvgPool2d\): its output 2x3 "
                       r"does not divide its input 4x4"):  # fmt: skip
        prepare_for_export(uneven, torch.rand(2, 1, 1, 6, 6))


@pytest.mark.parametrize(
    ("name", "neuron_layers"),
    [("sew_resnet18", 20), ("spiking_resnet18", 17), ("spiking_resnet50", 49)],
)
def test_residual_nets_prepare_and_export_exactly(name, neuron_layers):
    """Spiking and SEW (ADD) ResNets, cifar stem (no max pool): each block becomes a
    ResidualBlockForExport with its batch norms folded; NIR sums the two paths."""
    from spikeflow.interop.prepare import ResidualBlockForExport

    model = create_model(name, stem="cifar", num_classes=10, in_channels=2, base_width=8)
    model = _exercise(model.double(), offset=0.0).eval()
    x = torch.rand(3, 2, 2, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    prepared = prepare_for_export(model, x)
    assert isinstance(prepared, nn.Sequential)
    assert sum(isinstance(m, ResidualBlockForExport) for m in prepared) == len(model.blocks())
    assert not {type(m) for m in prepared.modules()} & {layers.BatchNorm2d, nn.Identity}
    assert [m.kernel_size for m in prepared if isinstance(m, nn.AvgPool2d)] == [(2, 2)]
    original, rewritten = _spikes(model, x * 3), _spikes(prepared, x * 3)
    assert len(original) == len(rewritten) == neuron_layers + 1
    for a, b in zip(original[:-1], rewritten[:-1], strict=True):
        assert 0 < a.mean() < 1
        assert torch.equal(a, b)
    torch.testing.assert_close(rewritten[-1], original[-1], rtol=0, atol=1e-12)
    graph = export_to_nir(prepared, x)
    # a block with a downsample: both paths end in edges into one node (NIR sums them)
    assert any(len([e for e in graph.edges if e[1] == n]) == 2 for n in graph.nodes)
    net = import_from_nir(graph, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(net(x * 3), rewritten[-1])


def test_residual_nets_that_do_not_export_are_named():
    small = {"num_classes": 4, "base_width": 4, "stem": "cifar"}
    x = torch.rand(2, 1, 3, 8, 8)
    iand = create_model("sew_resnet18", cnf="IAND", **small)
    iand.layer2[0].downsample[-1] = nn.Identity()  # a shortcut of batch norm values
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(iand, x)
    message = str(error.value)
    assert "'layer2.0.downsample': SEW's cnf='IAND' exports on 0/1 spikes only" in message
    assert "'layer1.0'" not in message and "'layer2.1'" not in message
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(create_model("spiking_resnet18", **{**small, "stem": "imagenet"}), x)
    assert "'stem.3' (MaxPool2d): NIR has no max pooling" in str(error.value)
    assert "--model-kwargs stem=cifar" in str(error.value)


@pytest.mark.parametrize("name", ["sew_resnet18", "spiking_resnet18", "ms_resnet18"])
def test_a_prepared_residual_net_runs_in_snntorch(name):
    """snnTorch 1.0 reads the exported ResNet (its sums: several edges into one node; for
    MS-ResNet sums of real values into the next neurons and downsample convolutions) and
    computes the prepared network's outputs, to float32 rounding of the last Linear (a
    spike that differed would move an output by a weight, about 0.1 or more)."""
    pytest.importorskip("snntorch", reason="snnTorch (test-only peer) is not installed")
    from snntorch.import_nir import import_from_nir as snntorch_import

    from test_nir_peers import _quiet, _step_through

    lif = {"tau": 2.0, "decay_input": False, "strict_firing": True}  # snnTorch's Leaky
    model = create_model(
        name, stem="cifar", num_classes=10, in_channels=2, base_width=4,
        neuron="lif", neuron_kwargs=lif,
    )  # fmt: skip
    model = _exercise(model, offset=0.0).eval()
    x = torch.rand(4, 1, 2, 16, 16, generator=torch.Generator().manual_seed(3)) * 3  # B = 1:
    prepared = prepare_for_export(model, x)  # snnTorch's Flatten flattens the batch too
    expected = _spikes(prepared, x)[-1]
    assert expected.abs().sum() > 0
    graph = export_to_nir(prepared, x, dt=1e-4)  # snnTorch's time step
    with _quiet(), torch.no_grad():
        got = _step_through(snntorch_import(graph), x)
    torch.testing.assert_close(got.reshape(expected.shape), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("side", "kernel", "padding", "exports"),
    [(5, 2, 1, True), (3, 2, 1, True), (7, 3, 1, True), (6, 3, 1, False), (17, 2, 0, False)],
)
def test_a_ceil_mode_pool_whose_extra_window_would_start_in_the_padding_exports(
    side, kernel, padding, exports
):
    """torch drops ceil mode's last window where it would start in the right padding: on
    5x5 with kernel 2, stride 2, padding 1 both modes give 3 windows, and the same values
    (it was refused as partial); on 6x6 with kernel 3 and on 17x17 ceil mode adds one."""
    pool = layers.AvgPool2d(kernel, 2, padding, ceil_mode=True)
    torch.manual_seed(0)
    net = nn.Sequential(layers.Conv2d(1, 2, 1, bias=False), pool, neurons.IFNode(v_threshold=0.4))
    nn.init.ones_(net[0].weight)
    x = torch.rand(2, 3, 1, side, side)  # the padded windows' averages are lower
    if not exports:
        with pytest.raises(ConfigurationError, match=f"ceil_mode=True on a {side}x{side} input"):
            prepare_for_export(net, x)
        return
    prepared = prepare_for_export(net, x)
    assert not prepared[1].ceil_mode
    expected, got = _spikes(net.eval(), x)[-1], _spikes(prepared, x)[-1]
    assert 0 < expected.mean() < 1 and torch.equal(got, expected)
