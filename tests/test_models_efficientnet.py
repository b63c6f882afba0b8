"""EfficientNet B0-B7, float and sigma-delta (spikeflow.models.efficientnet): parameter
counts against torchvision's and a hand count, the sigma-delta network against its
float twin at θ = 0 (outputs and gradients), torchvision's state-dict layout, stochastic
depth, the registry, and what the exporters say."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from spikeflow import interop
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers.sigma_delta import SigmaDelta, delta_activity
from spikeflow.models import create_model, load_torchvision_weights, model_arguments
from spikeflow.models.efficientnet import EfficientNet, SqueezeExcitation, StochasticDepth
from spikeflow.models.mobilenet import make_divisible

#: torchvision's ``num_params`` of ``efficientnet_b0`` ... ``b7`` (its weights' meta).
TORCHVISION_PARAMS = {
    "b0": 5_288_548,
    "b1": 7_794_184,
    "b2": 9_109_994,
    "b3": 12_233_232,
    "b4": 19_341_616,
    "b5": 30_389_784,
    "b6": 43_040_704,
    "b7": 66_347_960,
}
SMALL = dict(num_classes=7, width_mult=0.25, depth_mult=0.3, stem="cifar")


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise_norms(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t, lo, hi in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.5, 2.0),
                              (m.weight.data, 0.5, 1.5), (m.bias.data, -0.3, 0.3)):  # fmt: skip
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) * (hi - lo) + lo)


def _pair(activation="pl_silu", gate="relu1", **kwargs):
    """A float twin and a sigma-delta network with its weights, float64."""
    torch.manual_seed(0)
    options = {**SMALL, **kwargs}
    ann = create_model("efficientnet_b0", activation=activation, gate=gate, **options)
    _randomise_norms(ann)
    sdnn = create_model("efficientnet_b0_sdnn", activation=activation, gate=gate, **options)
    load_torchvision_weights(sdnn, ann.state_dict())
    return ann.double(), sdnn.double()


def _b0_by_hand(num_classes: int = 1000) -> int:
    """B0's parameters from the paper's table: conv weights, two per batch norm channel,
    squeeze-and-excitation convs with biases, the classifier with its bias."""
    rows = [(1, 3, 32, 16, 1), (6, 3, 16, 24, 2), (6, 5, 24, 40, 2), (6, 3, 40, 80, 3),
            (6, 5, 80, 112, 3), (6, 5, 112, 192, 4), (6, 3, 192, 320, 1)]  # fmt: skip
    total = 3 * 32 * 9 + 2 * 32  # stem conv3x3 + BN
    for expand, k, cin, cout, n in rows:
        for i in range(n):
            c = cin if i == 0 else cout
            hidden = c * expand
            if expand != 1:
                total += c * hidden + 2 * hidden  # expand 1x1 + BN
            total += hidden * k * k + 2 * hidden  # depthwise + BN
            sq = c // 4
            total += hidden * sq + sq + sq * hidden + hidden  # SE fc1, fc2 with biases
            total += hidden * cout + 2 * cout  # project + BN
    total += 320 * 1280 + 2 * 1280  # head conv1x1 + BN
    return total + 1280 * num_classes + num_classes


def test_b0_parameters_match_the_hand_count_and_torchvision():
    assert _b0_by_hand() == TORCHVISION_PARAMS["b0"]
    for name in ("efficientnet_b0", "efficientnet_b0_sdnn"):
        assert _n_params(create_model(name)) == 5_288_548
        assert _n_params(create_model(name, num_classes=10)) == _b0_by_hand(10)


@pytest.mark.parametrize("variant", list(TORCHVISION_PARAMS))
def test_compound_scaling_gives_torchvision_parameter_counts(variant):
    with torch.device("meta"):
        model = create_model(f"efficientnet_{variant}")
        sdnn = create_model(f"efficientnet_{variant}_sdnn")
    assert _n_params(model) == TORCHVISION_PARAMS[variant] == _n_params(sdnn)
    # torchvision's B5-B7 norms: eps 1e-3, momentum 0.01 (B0-B4: PyTorch's defaults)
    norm = (1e-3, 0.01) if variant in ("b5", "b6", "b7") else (1e-5, 0.1)
    for net in (model, sdnn):
        assert {(m.eps, m.momentum) for m in net.modules() if isinstance(m, nn.BatchNorm2d)} == {
            norm
        }


def test_stages_follow_the_scaled_table():
    model = create_model("efficientnet_b4")  # width 1.4, depth 1.8
    blocks = [len(stage) for stage in model.features[1:-1]]
    assert blocks == [math.ceil(n * 1.8) for n in (1, 2, 2, 3, 3, 4, 1)] == [2, 4, 4, 6, 6, 8, 2]
    outs = [stage[-1].block[-1][0].out_channels for stage in model.features[1:-1]]
    assert outs == [make_divisible(c * 1.4, 8) for c in (16, 24, 40, 80, 112, 192, 320)]
    assert model.last_channel == 4 * outs[-1] == 1792
    drops = [b.stochastic_depth.p for stage in model.features[1:-1] for b in stage]
    assert drops == pytest.approx([0.2 * i / 32 for i in range(32)])


@pytest.mark.parametrize(
    ("activation", "gate", "stem", "residual"),
    [
        ("pl_silu", "relu1", "cifar", True),
        ("silu", "sigmoid", "imagenet", True),
        ("relu", "relu1", "cifar", False),
        ("pl_silu", "hardsigmoid", "cifar", True),
    ],
)
def test_sigma_delta_equals_its_float_twin_at_every_step(activation, gate, stem, residual):
    ann, sdnn = _pair(activation, gate, stem=stem, residual=residual)
    ann.eval(), sdnn.eval()
    x = torch.rand(5, 2, 3, 16, 16, dtype=torch.float64)
    x[2:] = x[1]  # a still stretch: nothing to send there
    torch.testing.assert_close(sdnn(x), ann(x), rtol=1e-9, atol=1e-9)
    for t in range(5):  # each step alone through the float twin
        torch.testing.assert_close(sdnn(x)[t], ann(x[t : t + 1])[0], rtol=1e-9, atol=1e-9)


def test_sigma_delta_trains_as_its_float_twin_at_zero_threshold():
    """Training mode: the norms' batch statistics (time folded into the batch) and the
    gradients of every weight are the float twin's."""
    ann, sdnn = _pair(dropout=0.0, stochastic_depth_prob=0.0)
    ann.train(), sdnn.train()
    x = torch.rand(3, 2, 3, 16, 16, dtype=torch.float64)
    target = torch.randn(3, 2, 7, dtype=torch.float64)
    ((ann(x) - target) ** 2).sum().backward()
    ((sdnn(x) - target) ** 2).sum().backward()
    theirs = dict(ann.named_parameters())
    report = load_torchvision_weights(sdnn, ann.state_dict())
    for ours, name in report.loaded.items():
        if name in theirs:
            grad = dict(sdnn.named_parameters())[ours].grad
            torch.testing.assert_close(grad, theirs[name].grad, rtol=1e-8, atol=1e-10)


def test_the_compiled_twin_drops_a_sample_at_every_step():
    """Compiled code does not see the thread's time fold: the twin tells its stochastic
    depth the steps itself. A still input then gives the same output at every step
    (training mode), which per-step masks would not."""
    torch.manual_seed(0)
    net = EfficientNet(**SMALL, stochastic_depth_prob=0.9, dropout=0.0).train()
    compiled = torch.compile(net, backend="aot_eager", fullgraph=False)
    out = compiled(torch.rand(1, 32, 3, 8, 8).expand(3, -1, -1, -1, -1))
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    assert all(m.steps is None for m in net.modules() if isinstance(m, StochasticDepth))


def test_sigma_delta_drops_a_residual_at_every_step_as_its_twin():
    """Stochastic depth in training mode: drawn alike (one draw per sample), the SDNN's
    output at every step is the twin's; a branch dropped on some steps only would leave
    its other steps' changes in the sum and differ."""
    ann, sdnn = _pair(dropout=0.0, stochastic_depth_prob=0.9)
    ann.train(), sdnn.train()
    x = torch.rand(4, 6, 3, 16, 16, dtype=torch.float64)
    torch.manual_seed(5)
    theirs = ann(x)
    torch.manual_seed(5)
    ours = sdnn(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-8, atol=1e-9)
    torch.manual_seed(6)  # another draw differs: masks were drawn
    assert not torch.allclose(sdnn(x), theirs, rtol=1e-6, atol=1e-6)


def test_a_threshold_sends_fewer_changes_and_stays_close():
    ann, _ = _pair()
    ann.eval()
    x = torch.rand(1, 2, 3, 16, 16, dtype=torch.float64).expand(6, -1, -1, -1, -1).clone()
    x += 0.01 * torch.randn_like(x)  # a noisy still image
    rates = {}
    for theta in (0.0, 0.05):
        sdnn = create_model("efficientnet_b0_sdnn", threshold=theta, **SMALL).double().eval()
        load_torchvision_weights(sdnn, ann.state_dict())
        out = sdnn(x)
        rates[theta] = sum(delta_activity(sdnn, x).values())
        err = (out[-1] - ann(x)[-1]).abs().max() / ann(x)[-1].abs().max()
        assert (err < 1e-12) if theta == 0 else (1e-6 < err < 0.5), (theta, err)
    assert rates[0.05] < 0.5 * rates[0.0]


def _torchvision_b0_state(num_classes: int = 1000, width: float = 1.0) -> dict:
    """A state dict with the keys and shapes of torchvision's ``efficientnet_b0`` (its
    ``features.{stage}.{block}.block.{i}`` of ``Conv2dNormActivation`` ``0`` conv, ``1``
    norm, the ``SqueezeExcitation``'s ``fc1``/``fc2``, ``classifier.1``), random values."""
    gen = torch.Generator().manual_seed(1)
    state: dict[str, torch.Tensor] = {}

    def conv_bn(prefix: str, cin: int, cout: int, k: int, groups: int = 1) -> None:
        state[f"{prefix}.0.weight"] = torch.randn(cout, cin // groups, k, k, generator=gen)
        state[f"{prefix}.1.weight"] = torch.rand(cout, generator=gen) + 0.5
        state[f"{prefix}.1.bias"] = torch.randn(cout, generator=gen) * 0.1
        state[f"{prefix}.1.running_mean"] = torch.randn(cout, generator=gen) * 0.1
        state[f"{prefix}.1.running_var"] = torch.rand(cout, generator=gen) + 0.5
        state[f"{prefix}.1.num_batches_tracked"] = torch.tensor(7)

    def ch(c: int) -> int:
        return make_divisible(c * width, 8)

    rows = [(1, 3, 32, 16, 1), (6, 3, 16, 24, 2), (6, 5, 24, 40, 2), (6, 3, 40, 80, 3),
            (6, 5, 80, 112, 3), (6, 5, 112, 192, 4), (6, 3, 192, 320, 1)]  # fmt: skip
    conv_bn("features.0", 3, ch(32), 3)
    for stage, (expand, k, cin, cout, n) in enumerate(rows, start=1):
        for j in range(n):
            c, prefix, i = ch(cin) if j == 0 else ch(cout), f"features.{stage}.{j}.block", 0
            hidden = make_divisible(c * expand, 8)
            if hidden != c:
                conv_bn(f"{prefix}.0", c, hidden, 1)
                i = 1
            conv_bn(f"{prefix}.{i}", hidden, hidden, k, groups=hidden)
            sq = max(1, c // 4)
            state[f"{prefix}.{i + 1}.fc1.weight"] = torch.randn(sq, hidden, 1, 1, generator=gen)
            state[f"{prefix}.{i + 1}.fc1.bias"] = torch.randn(sq, generator=gen)
            state[f"{prefix}.{i + 1}.fc2.weight"] = torch.randn(hidden, sq, 1, 1, generator=gen)
            state[f"{prefix}.{i + 1}.fc2.bias"] = torch.randn(hidden, generator=gen)
            conv_bn(f"{prefix}.{i + 2}", hidden, ch(cout), 1)
    conv_bn("features.8", ch(320), 4 * ch(320), 1)
    state["classifier.1.weight"] = torch.randn(num_classes, 4 * ch(320), generator=gen)
    state["classifier.1.bias"] = torch.randn(num_classes, generator=gen)
    return state


def _torchvision_forward(state: dict, x: torch.Tensor, gate=torch.sigmoid) -> torch.Tensor:
    """torchvision's ``EfficientNet.forward`` (eval) written from its state dict with
    ``torch.nn.functional``: conv-BN-SiLU triplets, sigmoid-gated excitation, residual
    sums where the stride is 1 and the channels match, pool, linear."""

    def cbn(prefix: str, h: torch.Tensor, stride: int = 1, act: bool = True) -> torch.Tensor:
        w = state[f"{prefix}.0.weight"]
        groups = h.shape[1] // w.shape[1]
        h = F.conv2d(h, w, None, stride, w.shape[-1] // 2, groups=groups)
        mean, var = state[f"{prefix}.1.running_mean"], state[f"{prefix}.1.running_var"]
        gamma, beta = state[f"{prefix}.1.weight"], state[f"{prefix}.1.bias"]
        h = F.batch_norm(h, mean, var, gamma, beta, False, 0.0, 1e-5)
        return F.silu(h) if act else h

    strides = {1: 1, 2: 2, 3: 2, 4: 2, 5: 1, 6: 2, 7: 1}
    h = cbn("features.0", x, stride=2)
    for stage, first_stride in strides.items():
        j = 0
        while f"features.{stage}.{j}.block.0.0.weight" in state:
            p, inp = f"features.{stage}.{j}.block", h
            expands = f"{p}.3.0.weight" in state
            if expands:
                h = cbn(f"{p}.0", h)
            i = 1 if expands else 0
            h = cbn(f"{p}.{i}", h, stride=first_stride if j == 0 else 1)
            se = F.silu(F.conv2d(h.mean((2, 3), keepdim=True), state[f"{p}.{i + 1}.fc1.weight"],
                                 state[f"{p}.{i + 1}.fc1.bias"]))  # fmt: skip
            se = F.conv2d(se, state[f"{p}.{i + 1}.fc2.weight"], state[f"{p}.{i + 1}.fc2.bias"])
            h = cbn(f"{p}.{i + 2}", h * gate(se), act=False)
            if h.shape == inp.shape and (j > 0 or first_stride == 1):
                h = h + inp
            j += 1
    h = cbn("features.8", h).mean((2, 3))
    return F.linear(h, state["classifier.1.weight"], state["classifier.1.bias"])


def test_both_networks_compute_torchvisions_function():
    state = {k: v.double() if v.is_floating_point() else v
             for k, v in _torchvision_b0_state(num_classes=5, width=0.25).items()}  # fmt: skip
    for k in state:  # tame the random network, so that its output follows its input
        if k.endswith(".weight") and state[k].dim() == 4:
            state[k] *= 1.5 / math.sqrt(state[k][0].numel())
        if k.endswith(("bias", "running_mean")):
            state[k] *= 0.1
    x = torch.rand(3, 2, 3, 48, 40, dtype=torch.float64)
    expected = torch.stack([_torchvision_forward(state, step) for step in x])
    assert expected.std() > 0.1 and (expected[0] - expected[1]).abs().max() > 1e-2
    small = dict(num_classes=5, width_mult=0.25, activation="silu", gate="sigmoid")
    for name in ("efficientnet_b0", "efficientnet_b0_sdnn"):
        model = create_model(name, **small).double().eval()
        load_torchvision_weights(model, state)
        torch.testing.assert_close(model(x), expected, rtol=1e-9, atol=1e-9, msg=name)
    # the hard sigmoid gate: clamp(x / 6 + 0.5, 0, 1), 0.5 at 0 as a sigmoid (ReLU1: 0)
    expected = torch.stack([_torchvision_forward(state, s, _hard_sigmoid) for s in x])
    for name in ("efficientnet_b0", "efficientnet_b0_sdnn"):
        model = create_model(name, **{**small, "gate": "hardsigmoid"}).double().eval()
        load_torchvision_weights(model, state)
        torch.testing.assert_close(model(x), expected, rtol=1e-9, atol=1e-9, msg=name)


def _hard_sigmoid(s: torch.Tensor) -> torch.Tensor:
    return (s / 6 + 0.5).clamp(0, 1)


def test_torchvision_state_dict_loads_into_both_networks():
    state = _torchvision_b0_state()
    assert sum(v.numel() for k, v in state.items() if "running" not in k
               and "num_batches" not in k) == 5_288_548  # fmt: skip
    for name in ("efficientnet_b0", "efficientnet_b0_sdnn"):
        model = create_model(name)
        report = load_torchvision_weights(model, state)
        assert sorted(report.loaded.values()) == sorted(state) and not report.kept, name
        ours = model.state_dict()
        for mine, theirs in report.loaded.items():
            assert torch.equal(ours[mine], state[theirs]), (name, mine)
    sdnn_keys = create_model("efficientnet_b0_sdnn").state_dict()
    assert "features.1.0.block.0.0.layer.weight" in sdnn_keys  # a synapse's conv
    assert "features.1.0.block.1.activation.fc1.weight" in sdnn_keys  # the SE unit
    assert "classifier.1.bias" in sdnn_keys  # the classifier synapse's bias


def test_torchvision_weights_check_the_head_and_the_layout():
    state = _torchvision_b0_state(width=0.25)
    model = create_model("efficientnet_b0_sdnn", num_classes=10, width_mult=0.25)
    with pytest.raises(ShapeError, match=r"'classifier.1.bias' has shape \(1000,\), .*skip_last"):
        load_torchvision_weights(model, state)
    report = load_torchvision_weights(model, state, classifier="skip_last")
    assert report.skipped == ["classifier.1.bias", "classifier.1.weight"]
    assert sorted(report.kept) == ["classifier.1.bias", "classifier.1.layer.weight"]
    del state["features.1.0.block.1.fc1.weight"]
    with pytest.raises(ConfigurationError, match=r"missing \(features.1.0.block.1.fc1.weight\)"):
        load_torchvision_weights(model, state, classifier="skip_last")


def test_stochastic_depth_drops_a_sample_at_every_step():
    torch.manual_seed(0)
    drop = StochasticDepth(0.5, time_major=True).train()
    out = drop(torch.ones(4, 64, 3))
    kept = out[0, :, 0] != 0
    assert torch.equal(out != 0, kept[None, :, None].expand(4, 64, 3))
    assert set(out.unique().tolist()) <= {0.0, 2.0} and 10 < int(kept.sum()) < 54
    assert torch.equal(drop.eval()(torch.ones(4, 64, 3)), torch.ones(4, 64, 3))
    # the float twin folds time into the batch: the same mask for each sample's steps
    net = EfficientNet(**SMALL, stochastic_depth_prob=0.9, dropout=0.0)
    block = [b for b in net.modules() if getattr(b, "use_residual", False)][-1]
    assert block.stochastic_depth.p > 0.5
    seen = []
    block.stochastic_depth.register_forward_hook(lambda m, a, o: seen.append((a[0], o)))
    net.train()(torch.rand(1, 32, 3, 8, 8).expand(3, -1, -1, -1, -1))
    inp, out = seen[0]
    kept = (out.flatten(1) != 0).any(1).reshape(3, 32)
    assert torch.equal(kept, kept[:1].expand(3, 32)) and 0 < int(kept[0].sum()) < 32
    assert inp.shape[0] == 96


def test_arguments_are_checked_by_name():
    bad = [
        ({"variant": "b8"}, "variant must be one of b0, b1"),
        ({"activation": "gelu"}, "activation must be one of silu, pl_silu, relu"),
        ({"gate": "tanh"}, "gate must be one of sigmoid, relu1"),
        ({"stem": "tiny"}, "stem must be 'imagenet' or 'cifar'"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"width_mult": 0}, r"width_mult must be in \(0, 16\)"),
        ({"residual": "no"}, "residual must be true or false"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ConfigurationError, match=message):
            EfficientNet(**kwargs)
    with pytest.raises(ConfigurationError, match="learn_threshold must be true or false"):
        create_model("efficientnet_b0_sdnn", learn_threshold=1)
    with pytest.raises(ConfigurationError, match="does not accept the argument"):
        create_model("efficientnet_b0_sdnn", variant="b1")  # fixed by the builder
    model = create_model("efficientnet_b0_sdnn", **SMALL)
    with pytest.raises(ShapeError, match=r"EfficientNetSDNN"):
        model(torch.rand(2, 3, 16, 16))  # no time dimension
    assert {"threshold", "gate", "activation"} <= set(model_arguments("efficientnet_b0_sdnn"))


def test_empty_frames_are_refused_by_shape():
    """H or W of 0 (and no step for the SDNN, whose delta encoder needs a first one) is
    a ShapeError naming the shape, not an error from inside a convolution."""
    ann = create_model("efficientnet_b0", **SMALL).eval()
    sdnn = create_model("efficientnet_b0_sdnn", **SMALL).eval()
    for model in (ann, sdnn):
        with pytest.raises(ShapeError, match=r"H >= 1 and W >= 1, got shape \(2, 1, 3, 0, 8\)"):
            model(torch.rand(2, 1, 3, 0, 8))
        with pytest.raises(ShapeError, match=r"got shape \(2, 1, 3, 8, 0\)"):
            model(torch.rand(2, 1, 3, 8, 0))
        assert model(torch.rand(1, 1, 3, 1, 1)).shape == (1, 1, 7)  # T = B = H = W = 1
    with pytest.raises(ShapeError, match=r"EfficientNetSDNN needs T >= 1"):
        sdnn(torch.rand(0, 2, 3, 8, 8))
    assert ann(torch.rand(0, 2, 3, 8, 8)).shape == (0, 2, 7)
    assert sdnn(torch.rand(2, 0, 3, 8, 8)).shape == (2, 0, 7)


def test_registry_builds_small_learnable_thresholds_that_train():
    model = create_model("efficientnet_b0_sdnn", in_channels=1, threshold=0.05,
                         learn_threshold=True, **SMALL)  # fmt: skip
    thetas = [p for n, p in model.named_parameters() if n.endswith("threshold")]
    assert len(thetas) == 1 + sum(1 for n, _ in model.named_modules() if n.endswith(".delta"))
    out = model(torch.rand(4, 2, 1, 8, 8))
    assert out.shape == (4, 2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in thetas)


def test_exporters_refuse_the_networks_by_name():
    sdnn = create_model("efficientnet_b0_sdnn", **SMALL).eval()
    pytest.importorskip("nir", reason="NIR export needs the nir extra")
    with pytest.raises(ConfigurationError, match=r"'features.1.0' \(MBConv\)"):
        interop.export_to_nir(sdnn, torch.rand(2, 1, 3, 16, 16))
    with pytest.raises(ConfigurationError, match="got EfficientNetSDNN"):
        interop.export_netx(sdnn, "unused.net", (3, 16, 16))


def test_builders_load_a_weights_file(tmp_path):
    path = tmp_path / "efficientnet_b0.pth"
    state = _torchvision_b0_state(width=0.25)
    torch.save(state, path)
    sdnn = create_model("efficientnet_b0_sdnn", width_mult=0.25, pretrained=str(path))
    assert torch.equal(sdnn.state_dict()["features.8.1.activation.0.running_var"],
                       state["features.8.1.running_var"])  # fmt: skip
    ann = create_model("efficientnet_b0", width_mult=0.25, num_classes=7, pretrained=str(path),
                       pretrained_classifier="skip_last")  # fmt: skip
    assert torch.equal(ann.features[0][0].weight, state["features.0.0.weight"])
    assert ann.classifier[1].weight.shape == (7, 320)
    with pytest.raises(FileNotFoundError, match=r"none.pth. does not exist.*efficientnet_b0"):
        create_model("efficientnet_b0", pretrained=str(tmp_path / "none.pth"))


def test_a_relu1_gate_starts_half_open():
    """ReLU1 is 0 at 0, where a sigmoid is 0.5: its excitation starts with fc2's weights
    0 and bias 0.5, so every gate passes half its activation, inside ReLU1's linear
    range (He-initialised, a third of them would start clamped, without gradient)."""
    seen = []
    for gate in ("relu1", "sigmoid"):
        model = create_model("efficientnet_b0_sdnn", gate=gate, **SMALL)
        units = [m.activation for m in model.modules() if isinstance(m, SigmaDelta)
                 and isinstance(m.activation, SqueezeExcitation)]  # fmt: skip
        assert len(units) == 8
        hooks = [u.scale_activation.register_forward_hook(lambda m, a, o: seen.append(o))
                 for u in units]  # fmt: skip
        model(torch.rand(2, 3, 3, 16, 16))
        gates = torch.cat([g.flatten() for g in seen])
        if gate == "relu1":
            assert bool((gates == 0.5).all())
        else:  # torchvision's: He-initialised fc2, zero bias
            assert gates.std() > 0.01 and bool(((gates > 0) & (gates < 1)).all())
        seen.clear()
        for h in hooks:
            h.remove()
