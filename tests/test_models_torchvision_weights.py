"""torchvision's ImageNet ANN weights into the spiking/SEW ResNets and VGGs.

The references: torchvision's key layout written out by hand, torchvision's ResNet and
VGG forward written with torch.nn.functional from those keys (float64), and SpikingJelly
2.0's ``spiking_resnet``/``sew_resnet``/``spiking_vgg``, whose ``pretrained=True`` loads
torchvision's state dict into them by name (their key names are torchvision's).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError
from spikeflow.models import create_model, load_torchvision_weights
from spikeflow.models.resnet import GROUPED_VARIANTS
from spikeflow.models.vgg import VGG_CONFIGS

BASIC = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
BOTTLENECK = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _bn_state(prefix: str, n: int, g: torch.Generator) -> dict[str, Tensor]:
    return {
        f"{prefix}.weight": torch.rand(n, generator=g) + 0.5,
        f"{prefix}.bias": torch.randn(n, generator=g) * 0.2,
        f"{prefix}.running_mean": torch.randn(n, generator=g) * 0.2,
        f"{prefix}.running_var": torch.rand(n, generator=g) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def _conv(out: int, inp: int, k: int, g: torch.Generator) -> Tensor:
    return torch.randn(out, inp, k, k, generator=g) * (2.0 / (inp * k * k)) ** 0.5


def torchvision_resnet_state(
    depth: int, num_classes: int = 1000, seed: int = 0, groups: int = 1, per_group: int = 64
) -> dict[str, Tensor]:
    """torchvision's ``resnet{depth}`` (ResNeXt / wide with ``groups``, ``per_group``)
    state dict layout, written out by hand, random values."""
    g = torch.Generator().manual_seed(seed)
    bottleneck = depth in BOTTLENECK
    state = {"conv1.weight": _conv(64, 3, 7, g), **_bn_state("bn1", 64, g)}
    inp = 64
    for i, count in enumerate((BOTTLENECK if bottleneck else BASIC)[depth]):
        planes = 64 * 2**i
        for j in range(count):
            p = f"layer{i + 1}.{j}"
            out = planes * (4 if bottleneck else 1)
            if bottleneck:
                w = int(planes * per_group / 64) * groups
                state[f"{p}.conv1.weight"] = _conv(w, inp, 1, g)
                state.update(_bn_state(f"{p}.bn1", w, g))
                state[f"{p}.conv2.weight"] = _conv(w, w // groups, 3, g)
                state.update(_bn_state(f"{p}.bn2", w, g))
                state[f"{p}.conv3.weight"] = _conv(out, w, 1, g)
                state.update(_bn_state(f"{p}.bn3", out, g))
            else:
                state[f"{p}.conv1.weight"] = _conv(planes, inp, 3, g)
                state.update(_bn_state(f"{p}.bn1", planes, g))
                state[f"{p}.conv2.weight"] = _conv(planes, planes, 3, g)
                state.update(_bn_state(f"{p}.bn2", planes, g))
            if j == 0 and (i > 0 or inp != out):
                state[f"{p}.downsample.0.weight"] = _conv(out, inp, 1, g)
                state.update(_bn_state(f"{p}.downsample.1", out, g))
            inp = out
    state["fc.weight"] = torch.randn(num_classes, inp, generator=g) * inp**-0.5
    state["fc.bias"] = torch.randn(num_classes, generator=g) * 0.1
    return state


def _bn(x: Tensor, s: dict[str, Tensor], p: str) -> Tensor:
    return F.batch_norm(
        x, s[f"{p}.running_mean"], s[f"{p}.running_var"], s[f"{p}.weight"], s[f"{p}.bias"],
        False, 0.0, 1e-5,
    )  # fmt: skip


def torchvision_resnet_forward(s: dict[str, Tensor], x: Tensor) -> Tensor:
    """torchvision's ResNet in eval mode, from its state dict alone (a reference loop)."""
    x = F.max_pool2d(F.relu(_bn(F.conv2d(x, s["conv1.weight"], None, 2, 3), s, "bn1")), 3, 2, 1)
    for i in range(1, 5):
        j = 0
        while f"layer{i}.{j}.conv1.weight" in s:
            p = f"layer{i}.{j}"
            stride = 2 if i > 1 and j == 0 else 1
            if f"{p}.conv3.weight" in s:
                y = F.relu(_bn(F.conv2d(x, s[f"{p}.conv1.weight"]), s, f"{p}.bn1"))
                w2 = s[f"{p}.conv2.weight"]
                groups = y.shape[1] // w2.shape[1]
                y = F.relu(_bn(F.conv2d(y, w2, None, stride, 1, 1, groups), s, f"{p}.bn2"))
                y = _bn(F.conv2d(y, s[f"{p}.conv3.weight"]), s, f"{p}.bn3")
            else:
                y = F.relu(_bn(F.conv2d(x, s[f"{p}.conv1.weight"], None, stride, 1), s, f"{p}.bn1"))
                y = _bn(F.conv2d(y, s[f"{p}.conv2.weight"], None, 1, 1), s, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in s:
                x = F.conv2d(x, s[f"{p}.downsample.0.weight"], None, stride)
                x = _bn(x, s, f"{p}.downsample.1")
            x = F.relu(y + x)
            j += 1
    return F.linear(x.mean((2, 3)), s["fc.weight"], s["fc.bias"])


def torchvision_vgg_state(
    depth: int, batch_norm: bool, hidden: int, num_classes: int, pool: int, seed: int = 0
) -> dict[str, Tensor]:
    """torchvision's ``vgg{depth}(_bn)`` layout (``features.i``, ``classifier.0/3/6``)
    with a ``hidden``-wide classifier after a ``pool`` x ``pool`` average pool."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    index, inp = 0, 3
    for item in VGG_CONFIGS[depth]:
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = _conv(item, inp, 3, g)
        state[f"features.{index}.bias"] = torch.randn(item, generator=g) * 0.1
        if batch_norm:
            state.update(_bn_state(f"features.{index + 1}", item, g))
        index += 3 if batch_norm else 2
        inp = item
    sizes = [(hidden, inp * pool * pool), (hidden, hidden), (num_classes, hidden)]
    for k, (o, i) in zip((0, 3, 6), sizes):
        state[f"classifier.{k}.weight"] = torch.randn(o, i, generator=g) * i**-0.5
        state[f"classifier.{k}.bias"] = torch.randn(o, generator=g) * 0.1
    return state


def torchvision_vgg_forward(s: dict[str, Tensor], x: Tensor, depth: int, pool: int) -> Tensor:
    """torchvision's VGG in eval mode (dropout off), from its state dict alone."""
    index = 0
    for item in VGG_CONFIGS[depth]:
        if item == "M":
            x = F.max_pool2d(x, 2, 2)
            index += 1
            continue
        x = F.conv2d(x, s[f"features.{index}.weight"], s[f"features.{index}.bias"], 1, 1)
        if f"features.{index + 1}.running_mean" in s:
            x = _bn(x, s, f"features.{index + 1}")
            index += 1
        x = F.relu(x)
        index += 2
    x = F.adaptive_avg_pool2d(x, pool).flatten(1)
    x = F.relu(F.linear(x, s["classifier.0.weight"], s["classifier.0.bias"]))
    x = F.relu(F.linear(x, s["classifier.3.weight"], s["classifier.3.bias"]))
    return F.linear(x, s["classifier.6.weight"], s["classifier.6.bias"])


def _as_ann(model: nn.Module, x: Tensor, T: int = 2) -> Tensor:
    """The model's per-step outputs on ``x`` repeated ``T`` times, in eval mode, float64."""
    model.double().eval()
    with torch.no_grad():
        return model(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))


# -- the mapping computes torchvision's function ---------------------------------------------


@pytest.mark.parametrize("name", ["spiking_resnet18", "spiking_resnet50"])
def test_resnet_with_relu_computes_torchvision_logits(name):
    """Neurons replaced by ReLU, the loaded Spiking ResNet is torchvision's ResNet."""
    torch.manual_seed(0)
    depth = int(name.removeprefix("spiking_resnet"))
    state = {k: v.double() for k, v in torchvision_resnet_state(depth, num_classes=10).items()}
    model = create_model(name, num_classes=10, neuron=nn.ReLU)
    report = load_torchvision_weights(model, state)
    assert report.architecture == f"resnet{depth}"
    assert sorted(report.loaded.values()) == sorted(state)  # every tensor used once
    assert report.kept == [] and report.skipped == []
    ours = model.state_dict()
    for key, theirs in report.loaded.items():
        assert torch.equal(ours[key], state[theirs]), key
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    out = _as_ann(model, x)
    expected = torchvision_resnet_forward(state, x)
    torch.testing.assert_close(out[0], expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out[1], expected, rtol=1e-10, atol=1e-10)
    assert expected.std() > 0.1  # not a degenerate network


@pytest.mark.parametrize("batch_norm", [True, False])
def test_vgg_with_relu_computes_torchvision_logits(batch_norm):
    name = f"spiking_vgg11{'_bn' if batch_norm else ''}"
    state = {
        k: v.double()
        for k, v in torchvision_vgg_state(11, batch_norm, hidden=64, num_classes=7, pool=2).items()
    }
    model = create_model(
        name, num_classes=7, neuron=nn.ReLU, pool_size=2, hidden_features=64, dropout=0.5
    )
    report = load_torchvision_weights(model, state)
    assert report.architecture == f"vgg11{'_bn' if batch_norm else ''}"
    assert report.loaded["classifier.1.weight"] == "classifier.0.weight"
    assert sorted(report.loaded.values()) == sorted(state)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    out = _as_ann(model, x)
    expected = torchvision_vgg_forward(state, x, 11, pool=2)
    torch.testing.assert_close(out[0], expected, rtol=1e-10, atol=1e-10)
    assert expected.std() > 0.1


# -- against SpikingJelly, whose pretrained=True loads torchvision's keys by name -------------


def _sj_state(model: nn.Module) -> dict[str, Tensor]:
    """SpikingJelly's state dict with random values (BN statistics included)."""
    g = torch.Generator().manual_seed(3)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value
        elif key.endswith("running_var") or (key.endswith(".weight") and value.dim() == 1):
            state[key] = torch.rand(value.shape, generator=g, dtype=torch.float64) + 0.5
        else:
            scale = value[0].numel() ** -0.5 if value.dim() > 1 else 0.2
            state[key] = torch.randn(value.shape, generator=g, dtype=torch.float64) * scale
    return state


@pytest.mark.parametrize(
    ("ours_name", "module", "theirs_name", "options"),
    [
        ("spiking_resnet18", "spiking_resnet", "spiking_resnet18", {}),
        ("sew_resnet18", "sew_resnet", "sew_resnet18", {"cnf": "ADD"}),
        ("sew_resnet50", "sew_resnet", "sew_resnet50", {"cnf": "ADD"}),
    ],
)
def test_resnets_equal_spikingjelly_loaded_by_name(
    spikingjelly_models, ours_name, module, theirs_name, options
):
    """SpikingJelly's model holds torchvision's keys; its state dict loaded into ours by
    name gives equal tensors and, with ReLU for both models' neurons, equal logits."""
    theirs = getattr(getattr(spikingjelly_models, module), theirs_name)(
        spiking_neuron=nn.ReLU, num_classes=10, **options
    )
    depth = int(theirs_name.rsplit("resnet", 1)[1])
    expected_keys = sorted(torchvision_resnet_state(depth, num_classes=10))
    assert sorted(theirs.state_dict()) == expected_keys  # torchvision's layout
    state = _sj_state(theirs)
    theirs.load_state_dict(state)
    model = create_model(ours_name, num_classes=10, neuron=nn.ReLU, **options)
    report = load_torchvision_weights(model, state)
    ours = model.state_dict()
    assert len(report.loaded) == len(state)
    for key, source in report.loaded.items():
        assert torch.equal(ours[key], state[source].to(ours[key].dtype)), key
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    theirs.double().eval()
    with torch.no_grad():
        expected = theirs(x)
    torch.testing.assert_close(_as_ann(model, x)[0], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("name", "cnf"), [("sew_resnet18", "AND"), ("sew_resnet18", "IAND"),
                                         ("sew_resnet50", "AND")])  # fmt: skip
def test_sew_spiking_forward_equals_spikingjelly(spikingjelly_models, name, cnf):
    """With the same IF neurons, SpikingJelly's SEW ResNet holding torchvision's keys and
    ours loaded from them emit the same logits over T steps (spikes, not ReLU). IAND's
    bottleneck is left out: SpikingJelly swaps its arguments (methods.md 3.1)."""
    from spikingjelly.activation_based.functional import set_step_mode

    sj = spikingjelly_models
    theirs = getattr(sj.sew_resnet, name)(
        spiking_neuron=sj.neuron.IFNode, detach_reset=True, num_classes=10, cnf=cnf
    )
    set_step_mode(theirs, "m")  # x is [T, B, C, H, W]
    state = _sj_state(theirs)
    theirs.load_state_dict(state)
    model = create_model(name, num_classes=10, cnf=cnf)
    load_torchvision_weights(model, state)
    x = torch.rand(3, 2, 3, 32, 32, dtype=torch.float64) * 2
    theirs.double().eval()
    model.double().eval()
    with torch.no_grad():
        expected, out = theirs(x), model(x)
    assert expected.std() > 0.05  # spikes reach the head
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


_ALL_RESNETS = [f"resnet{d}" for d in (18, 34, 50, 101, 152)] + list(GROUPED_VARIANTS)
_ALL_VGGS = [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]


def test_every_architecture_maps_spikingjelly_layout(spikingjelly_models):
    """Every ResNet, ResNeXt, wide ResNet and VGG: SpikingJelly's full-size state dict
    (built on the meta device: shapes only) maps onto ours, each key used once, each
    shape equal."""
    sj = spikingjelly_models
    with torch.device("meta"):
        for arch in _ALL_RESNETS + _ALL_VGGS:
            family = [("spiking_", sj.spiking_vgg)] if arch.startswith("vgg") else [
                ("spiking_", sj.spiking_resnet), ("sew_", sj.sew_resnet)
            ]  # fmt: skip
            for prefix, module in family:
                theirs = getattr(module, prefix + arch)(spiking_neuron=nn.ReLU)
                model = create_model(prefix + arch)
                state = theirs.state_dict()
                report = load_torchvision_weights(model, state)
                assert report.architecture == arch
                assert sorted(report.loaded.values()) == sorted(state), prefix + arch
                assert report.kept == []


# -- files, the constructors' pretrained= and the classifier ---------------------------------


STEM = {"conv1": "stem.0", "bn1": "stem.1"}


def test_pretrained_file_into_builders(tmp_path):
    path = tmp_path / "resnet18.pth"
    state = torchvision_resnet_state(18)
    torch.save(state, path)
    for name in ("spiking_resnet18", "sew_resnet18"):
        model = create_model(name, pretrained=str(path))
        ours = model.state_dict()
        for key, value in state.items():  # torchvision's stem conv1, bn1 is stem.0, stem.1
            head, rest = key.split(".", 1)
            mine = f"{STEM.get(head, head)}.{rest}"
            assert torch.equal(ours[mine], value), key
    with pytest.raises(FileNotFoundError, match=r"IMAGENET1K_V1.*resnet18"):
        create_model("spiking_resnet18", pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigurationError, match="downloads nothing"):
        create_model("spiking_resnet18", pretrained=True)
    with pytest.raises(
        ShapeError, match=r"'fc.weight' has shape \(1000, 512\).*\(10, 512\)"
    ) as info:
        create_model("spiking_resnet18", pretrained=path, num_classes=10)
    assert "pretrained_classifier='skip_last'" in str(info.value)


def test_pretrained_classifier_leaves_the_head_for_other_classes(tmp_path):
    """``pretrained_classifier=`` (a builder argument, so ``--model-kwargs`` reaches it)
    loads a file into a model with another head: the rest equals the file."""
    path = tmp_path / "resnet18.pth"
    state = torchvision_resnet_state(18)
    torch.save(state, path)
    model = create_model(
        "sew_resnet18", pretrained=path, pretrained_classifier="skip_last", num_classes=10
    )
    assert torch.equal(model.stem[0].weight, state["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.fc.weight.shape == (10, 512)
    vgg_path = tmp_path / "vgg11.pth"
    vgg_state = torchvision_vgg_state(11, False, hidden=4096, num_classes=1000, pool=7)
    torch.save(vgg_state, vgg_path)
    vgg = create_model(
        "spiking_vgg11", pretrained=str(vgg_path), pretrained_classifier="skip_all",
        num_classes=10, pool_size=1, hidden_features=32,
    )  # fmt: skip
    assert torch.equal(vgg.features[3].weight, vgg_state["features.3.weight"])
    with pytest.raises(ConfigurationError, match="pretrained_classifier must be one of"):
        create_model("spiking_resnet18", pretrained=path, pretrained_classifier="drop")
    with pytest.raises(ConfigurationError, match="pretrained_classifier='skip_last' needs"):
        create_model("spiking_resnet18", pretrained_classifier="skip_last")


def test_command_line_pretrained_path_and_saved_runs(tmp_path):
    """``--model-kwargs pretrained=/abs/path pretrained_classifier=skip_last`` builds the
    run's model with the file's weights; a run read back (eval, resume) is built without
    reading the file again: its checkpoint holds the weights, the file may be gone."""
    from spikeflow.cli import parse_kwargs
    from spikeflow.training.build import build_model
    from spikeflow.training.config import TrainConfig, resolve
    from spikeflow.training.data import DataInfo

    path = tmp_path / "resnet18.pth"
    state = torchvision_resnet_state(18)
    torch.save(state, path)
    kwargs = parse_kwargs([f"pretrained={path}", "pretrained_classifier=skip_last"], "-m")
    assert kwargs == {"pretrained": str(path), "pretrained_classifier": "skip_last"}
    config = resolve(TrainConfig(model="spiking_resnet18", model_kwargs=kwargs))
    info = DataInfo(10, 3, (32, 32), static=True)
    model = build_model(config, info)
    assert torch.equal(model.stem[0].weight, state["conv1.weight"])
    assert model.fc.weight.shape == (10, 512)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"resnet18\.pth"):
        build_model(config, info)
    saved = build_model(config, info, saved=True)
    assert not torch.equal(saved.stem[0].weight, state["conv1.weight"])


def test_vgg_with_other_pooling_warns():
    """torchvision's VGGs max-pool: an average- or sum-pooling VGG loads with a warning."""
    state = torchvision_vgg_state(11, True, hidden=32, num_classes=10, pool=1)
    options = {"num_classes": 10, "pool_size": 1, "hidden_features": 32}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_torchvision_weights(create_model("spiking_vgg11_bn", **options), state)
    for pooling in ("avg", "sum"):
        model = create_model("spiking_vgg11_bn", pooling=pooling, **options)
        with pytest.warns(UserWarning, match=r"vgg11_bn was trained with max pooling"):
            load_torchvision_weights(model, state)
        assert torch.equal(model.features[0].weight, state["features.0.weight"])


def test_classifier_skipped_and_reported():
    state = torchvision_resnet_state(18)  # 1000 classes
    model = create_model("spiking_resnet18", num_classes=10, neuron="plif")
    fc_before = model.fc.weight.detach().clone()
    with pytest.raises(ShapeError, match=r"classifier='skip_last'") as info:
        load_torchvision_weights(model, state)
    assert "'fc.weight'" in str(info.value) and "(10, 512)" in str(info.value)
    assert torch.equal(model.fc.weight, fc_before)
    report = load_torchvision_weights(model, state, classifier="skip_last")
    assert report.skipped == ["fc.bias", "fc.weight"]
    assert "fc.weight" in report.kept and "fc.bias" in report.kept
    assert "layer1.0.sn1.w" in report.kept  # PLIF's parameter: no ANN counterpart
    assert torch.equal(model.fc.weight, fc_before)
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert "fc.weight" not in report.loaded and len(report.loaded) == len(state) - 2
    # VGG for 32x32 images: a 1x1 pool and a narrow head, its classifier left whole.
    vgg_state = torchvision_vgg_state(11, True, hidden=4096, num_classes=1000, pool=7)
    vgg = create_model("spiking_vgg11_bn", num_classes=10, pool_size=1, hidden_features=64)
    with pytest.raises(ShapeError, match=r"'classifier.0.weight' has shape \(4096, 25088\)"):
        load_torchvision_weights(vgg, vgg_state, classifier="skip_last")
    report = load_torchvision_weights(vgg, vgg_state, classifier="skip_all")
    assert report.skipped == [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("bias", "weight")]
    assert torch.equal(vgg.features[4].weight, vgg_state["features.4.weight"])


def test_wrong_architecture_and_bad_inputs(tmp_path):
    torch.save(torchvision_resnet_state(18), tmp_path / "r18.pth")
    model = create_model("spiking_resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigurationError, match=r"\(resnet34\).*resnet18.*layer1.2.conv1.weight"):
        load_torchvision_weights(model, torchvision_resnet_state(34))
    with pytest.raises(ConfigurationError, match=r"\(resnet50\).*no place.*layer1.0.conv3.weight"):
        load_torchvision_weights(model, torchvision_resnet_state(50))
    with pytest.raises(ConfigurationError, match=r"\(resnet18\).*resnet34.*missing.*layer1.2"):
        load_torchvision_weights(create_model("spiking_resnet34"), torchvision_resnet_state(18))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    state = torchvision_resnet_state(18)
    with pytest.raises(ConfigurationError, match="classifier must be one of"):
        load_torchvision_weights(model, state, classifier="drop")
    with pytest.raises(ConfigurationError, match="stem='imagenet'"):
        load_torchvision_weights(create_model("sew_resnet18", stem="cifar"), state)
    with pytest.raises(ConfigurationError, match="MSResNet has no torchvision counterpart"):
        load_torchvision_weights(create_model("ms_resnet18"), state)
    with pytest.raises(ConfigurationError, match=r"no torchvision ResNet.*base_width 32"):
        load_torchvision_weights(create_model("spiking_resnet18", base_width=32), state)
    with pytest.raises(
        ShapeError, match=r"'conv1.weight' has shape \(64, 3, 7, 7\).*in_channels=3"
    ) as info:
        create_model("spiking_resnet18", in_channels=2, pretrained=tmp_path / "r18.pth")
    assert "pretrained_classifier" not in str(info.value)  # not the head's fault
    with pytest.raises(DataFormatError, match=r"'fc\.bias' holds a list"):
        load_torchvision_weights(model, {**state, "fc.bias": [0.0]})
    with pytest.raises(DataFormatError, match="ckpt\\['state_dict'\\]"):
        load_torchvision_weights(model, {"state_dict": state, "epoch": 3})
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(DataFormatError, match=r"bad\.pth"):
        load_torchvision_weights(model, bad)
    # DataParallel's prefix, and older files without num_batches_tracked, load.
    old = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    report = load_torchvision_weights(model, old)
    assert report.kept and all(k.endswith("num_batches_tracked") for k in report.kept)
    assert torch.equal(model.fc.bias, state["fc.bias"])
    # A torch.compile'd model (compiled lazily: nothing runs) and a compiled model's keys.
    compiled = torch.compile(create_model("sew_resnet18"))
    report = load_torchvision_weights(compiled, {f"_orig_mod.{k}": v for k, v in state.items()})
    assert len(report.loaded) == len(state)
    assert torch.equal(compiled.stem[0].weight, state["conv1.weight"])
