"""STBP (methods.md 5.1): the neuron of :data:`STBP_DEFAULTS` and the whole STBP CNN
against float64 loops written from the paper's equations (spikes and gradients, the
gradient through the (1 − o) reset term included), NeuNorm / tdBN placement, bad
arguments, and the ``spikeflow train`` recipe on the digits."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.models import NeuronFactory, create_model
from spikeflow.models.stbp import STBP_DEFAULTS
from spikeflow.neurons import LIFNode

DECAY, THETA = 0.2, 0.5


class _RectSpike(torch.autograd.Function):
    """STBP's spike: forward 1[u > θ], backward 1[|u − θ| < 0.5] (the authors' ActFun)."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u > THETA).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * ((u - THETA).abs() < 0.5).to(u.dtype)


def _stbp_layer(currents):
    """u[t] = k·u[t−1]·(1 − o[t−1]) + I[t], o[t] = spike(u[t]) over a [T, ...] input."""
    u = torch.zeros_like(currents[0])
    o = torch.zeros_like(currents[0])
    out = []
    for current in currents:
        u = DECAY * u * (1 - o) + current
        o = _RectSpike.apply(u)
        out.append(o)
    return torch.stack(out)


def test_stbp_neuron_equals_the_papers_loop_in_float64():
    torch.manual_seed(0)
    x = torch.rand(12, 3, 40, dtype=torch.float64) * 1.2 - 0.1
    x[0, 0, :5] = THETA  # u = θ exactly at t = 0: STBP fires on u > θ only
    w = torch.randn(12, 3, 40, dtype=torch.float64)  # a loss weighting every spike
    x_ref = x.clone().requires_grad_(True)
    ref = _stbp_layer(x_ref)
    (ref * w).sum().backward()

    def ours(**change):
        x_ours = x.clone().requires_grad_(True)
        neuron = NeuronFactory("lif", change, defaults=STBP_DEFAULTS)()
        assert type(neuron) is LIFNode
        out = neuron.double()(x_ours)
        (out * w).sum().backward()
        return out, x_ours.grad

    out, grad = ours()
    assert 0.1 < ref.mean() < 0.9 and not ref[0, 0, :5].any()
    assert torch.equal(out, ref)
    torch.testing.assert_close(grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    # The reset term carries gradient here: detaching it changes the gradient.
    _, detached = ours(detach_reset=True)
    assert (detached - x_ref.grad).abs().max() > 1e-3


def _reference_cnn(model, x):
    """The authors' CNN forward (spiking_model.py) in plain torch, with ``model``'s weights:
    Bernoulli input, conv-LIF-avgpool twice, FC-LIF twice; x is [T, B, C, H, W]."""
    conv1, conv2 = (m for m in model.features if isinstance(m, torch.nn.Conv2d))
    fc1, fc2 = (m for m in model.classifier if isinstance(m, torch.nn.Linear))
    spikes_in = (torch.rand(x.shape, dtype=x.dtype) < x).to(x.dtype)
    T, B = x.shape[:2]
    h = _stbp_layer(F.conv2d(spikes_in.flatten(0, 1), conv1.weight, conv1.bias, padding=1)
                    .unflatten(0, (T, B)))  # fmt: skip
    h = F.avg_pool2d(h.flatten(0, 1), 2)
    h = _stbp_layer(F.conv2d(h, conv2.weight, conv2.bias, padding=1).unflatten(0, (T, B)))
    h = F.avg_pool2d(h.flatten(0, 1), 2).flatten(1)
    h = _stbp_layer(F.linear(h, fc1.weight, fc1.bias).unflatten(0, (T, B)))
    return _stbp_layer(F.linear(h, fc2.weight, fc2.bias))


def test_stbp_cnn_equals_the_authors_forward_and_gradients_in_float64():
    torch.manual_seed(1)
    model = create_model("stbp_cnn", input_size=8, channels=6, hidden=16).double()
    for p in model.parameters():  # larger weights: spikes in every layer
        p.data.mul_(3.0)
    x = torch.rand(10, 4, 1, 8, 8, dtype=torch.float64)
    target = F.one_hot(torch.arange(4), 10).to(torch.float64)

    torch.manual_seed(5)
    out = model(x)
    F.mse_loss(out.mean(0), target).backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(5)  # the same Bernoulli draws
    ref = _reference_cnn(model, x)
    F.mse_loss(ref.mean(0), target).backward()

    assert out.shape == (10, 4, 10) and 0.0 < ref.mean() < 1.0
    assert torch.equal(out, ref)
    for name, p in model.named_parameters():
        assert p.grad.abs().sum() > 0, name
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_bernoulli_encoding_draws_every_step_and_none_passes_frames():
    model = create_model("stbp_cnn", input_size=8, channels=4, hidden=8)
    x = torch.full((200, 2, 1, 8, 8), 0.3)
    spikes = model.encoder(x)
    assert set(spikes.unique().tolist()) == {0.0, 1.0}
    assert abs(spikes.mean().item() - 0.3) < 0.01  # rate = intensity
    assert not torch.equal(spikes[0], spikes[1])  # fresh draws per step
    with pytest.raises(ConfigurationError, match="PoissonEncoder"):
        model(torch.full((2, 1, 1, 8, 8), 3.0))  # counts are not probabilities
    frames = create_model("stbp_cnn", input_size=8, encoding="none").encoder
    assert isinstance(frames, torch.nn.Identity)


def test_eval_seed_fixes_each_samples_test_input_and_leaves_training_random():
    torch.manual_seed(3)
    model = create_model("stbp_mlp", input_size=8, hidden=32, eval_seed=3)
    for p in model.parameters():  # larger weights: output spikes to compare
        p.data.mul_(3.0)
    x = torch.rand(10, 6, 1, 8, 8)
    model.eval()
    state = torch.get_rng_state()
    out = model(x)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is not used
    assert 0.05 < out.mean() < 0.95
    assert torch.equal(model(x), out)
    order = [5, 3, 1, 0, 2, 4]  # any position, any batch size: the same spikes
    assert torch.equal(model(x[:, order]), out[:, order])
    assert torch.equal(model(x[:, 4:5]), out[:, 4:5])
    draws = model._fixed_draws(torch.full((400, 1, 8, 8), 0.3))
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    assert abs(draws.mean().item() - 0.3) < 0.01  # Bernoulli with the intensity
    assert not torch.equal(draws[0], draws[1])  # a draw per step
    other = create_model("stbp_mlp", input_size=8, hidden=32, eval_seed=4).eval()
    other.load_state_dict(model.state_dict())
    assert not torch.equal(other(x), out)
    model.train()  # training: fresh draws, as without eval_seed
    assert not torch.equal(model(x), model(x))
    assert not torch.equal(torch.get_rng_state(), state)


def test_norm_and_neunorm_options_place_their_layers():
    def kinds(model):
        return [type(m).__name__ for m in model.features]

    lif, pool, conv = "LIFNode", "AvgPool2d", "Conv2d"
    plain = create_model("stbp_cnn", input_size=8)
    assert kinds(plain) == [conv, lif, pool, conv, lif, pool, "Flatten"]
    assert plain.features[0].bias is not None
    td = create_model("stbp_cnn", input_size=8, norm="tdbn", neuron_kwargs={"v_threshold": 0.7})
    norm = "ThresholdDependentBatchNorm2d"
    assert kinds(td) == [conv, norm, lif, pool, conv, norm, lif, pool, "Flatten"]
    assert td.features[0].bias is None
    assert torch.equal(td.features[1].weight, torch.full((32,), 0.7))  # α·θ
    assert td.features[2].v_threshold == 0.7
    bn = create_model("stbp_cnn", input_size=8, norm="bn")
    assert type(bn.features[1]) is layers.BatchNorm2d
    nn_ = create_model("stbp_cnn", input_size=(12, 8), neunorm=True, neunorm_k=0.8)
    assert kinds(nn_) == [conv, lif, "NeuNorm", pool, conv, lif, "NeuNorm", pool, "Flatten"]
    assert (nn_.features[2].height, nn_.features[2].width, nn_.features[2].k) == (12, 8, 0.8)
    assert (nn_.features[6].height, nn_.features[6].width) == (6, 4)
    assert nn_(torch.rand(3, 2, 1, 12, 8)).shape == (3, 2, 10)
    mlp = create_model("stbp_mlp", input_size=8)
    assert [m.out_features for m in mlp.classifier if isinstance(m, torch.nn.Linear)] == [800, 10]


def test_neuron_override_is_honoured_with_the_stbp_settings_it_accepts():
    from spikeflow.neurons import ParametricLIFNode
    from spikeflow.surrogate import Rect

    model = create_model("stbp_cnn", input_size=8, neuron="plif")
    neurons = [m for m in model.modules() if isinstance(m, LIFNode | ParametricLIFNode)]
    assert len(neurons) == 4 and all(type(n) is ParametricLIFNode for n in neurons)
    for n in neurons:
        assert (n.v_threshold, n.v_reset, n.strict_firing, n.detach_reset) == (
            0.5,
            0.0,
            True,
            False,
        )
        assert not n.decay_input and type(n.surrogate_function) is Rect
        assert 1.0 / torch.sigmoid(n.w).item() == pytest.approx(2.0)  # PLIF's own init tau


@pytest.mark.parametrize(
    ("neuron", "neuron_kwargs", "theta"),
    [
        ("lif", {"v_threshold": torch.tensor([0.7])}, 0.7),  # a one-element tensor
        ("lif", {"v_threshold": 0.3, "learnable_threshold": True}, 0.3),
        ("leaky", None, 1.0),  # snnTorch's Leaky: its own θ, not STBP's 0.5
    ],
)
def test_tdbn_weight_starts_at_the_threshold_the_neurons_hold(neuron, neuron_kwargs, theta):
    model = create_model("stbp_cnn", input_size=8, norm="tdbn", neuron=neuron,
                         neuron_kwargs=neuron_kwargs)  # fmt: skip
    neurons = [m for m in model.modules() if type(m).__name__.endswith("Node")]
    assert len(neurons) == 4
    for held in neurons:
        assert float(torch.as_tensor(held.v_threshold).detach()) == pytest.approx(theta)
    for bn in (model.features[1], model.features[5]):
        assert torch.equal(bn.weight, torch.full((32,), theta))
    if neuron != "lif":  # (snnTorch's Leaky itself cannot be built on "meta")
        return
    with torch.device("meta"):  # a learnable θ is a tensor, without a value on "meta"
        meta = create_model("stbp_cnn", input_size=8, norm="tdbn", neuron=neuron,
                            neuron_kwargs=neuron_kwargs)  # fmt: skip
    assert (
        meta.features[1].weight.is_meta
        and meta.features[1].v_threshold == model.features[1].v_threshold
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("stbp_mlp", {"norm": "tdbn"}, "apply to the convs; arch='mlp' has none"),
        ("stbp_mlp", {"neunorm": True}, "apply to the convs"),
        ("stbp_cnn", {"norm": "layer"}, r"norm must be one of \('none', 'bn', 'tdbn'\)"),
        ("stbp_cnn", {"encoding": "poisson"}, "encoding must be one of"),
        ("stbp_cnn", {"neunorm": "yes"}, "neunorm must be true or false"),
        ("stbp_cnn", {"input_size": 3}, "at least 4x4, got 3x3"),
        ("stbp_mlp", {"hidden": [800, 0]}, "hidden must be a positive integer"),
        ("stbp_mlp", {"eval_seed": -1}, r"eval_seed must be None or an integer >= 0, got -1"),
        ("stbp_mlp", {"eval_seed": True}, "eval_seed must be None or an integer"),
        ("stbp_cnn", {"encoding": "none", "eval_seed": 0}, "encoding='none' draws none"),
        *(
            (
                "stbp_cnn",
                {"norm": norm, "neuron_kwargs": {"v_threshold": torch.full((32, 1, 1), 0.5)}},
                r"v_threshold must be one number .* shape \(32, 1, 1\)",
            )
            for norm in ("tdbn", "none")
        ),
    ],
)
def test_bad_arguments_are_named(name, kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        create_model(name, **kwargs)


def test_recipe_command_learns_the_digits(tmp_path):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")
    from spikeflow.cli import main
    from spikeflow.training.metric_logs import read_csv

    run = tmp_path / "run"
    code = main(["train", "--dataset", "digits", "--model", "stbp_mlp", "--T", "8",
                 "--loss", "mse", "--optimizer", "adam", "--lr", "1e-3", "--schedule", "step",
                 "--step-size", "40", "--gamma", "0.1", "--epochs", "2", "--batch-size", "100",
                 "--model-kwargs", "eval_seed=0",
                 "--no-progress", "--plots", "off", "--output-dir", str(run)])  # fmt: skip
    assert code == 0
    rows = read_csv(run / "metrics.csv")
    assert float(rows[-1]["test_acc"]) > 0.5  # chance is 0.1
    assert float(rows[-1]["lr"]) == pytest.approx(1e-3)
    # With eval_seed, spikeflow eval of best.pt (at another batch size) gives the logged
    # accuracy of the best epoch.
    report = tmp_path / "eval.json"
    assert main(["eval", str(run), "--batch-size", "7", "--no-progress",
                 "--json", str(report)]) == 0  # fmt: skip
    best = max(float(row["test_acc"]) for row in rows)
    assert json.loads(report.read_text())["test_acc"] == pytest.approx(best, abs=1e-6)


def test_nir_export_of_stbp_nets_round_trips_or_names_the_encoder():
    pytest.importorskip("nirtorch", reason="NIR export needs the 'nir' extra")
    from spikeflow.functional import reset_net
    from spikeflow.interop import export_to_nir, import_from_nir
    from spikeflow.interop.prepare import prepare_for_export

    torch.manual_seed(2)
    model = create_model("stbp_cnn", input_size=8, channels=6, hidden=16, encoding="none",
                         norm="tdbn").double()  # fmt: skip
    for p in model.parameters():
        p.data.mul_(3.0)
    model(torch.rand(6, 8, 1, 8, 8, dtype=torch.float64))  # running statistics
    model.eval()
    sample = torch.rand(4, 2, 1, 8, 8, dtype=torch.float64)
    # The Identity encoder goes, tdBN folds into the convs: the graph runs the same net.
    back = import_from_nir(export_to_nir(prepare_for_export(model), sample)).double()
    frames = (torch.rand(12, 3, 1, 8, 8, dtype=torch.float64) < 0.4).double()
    reset_net(model)
    expected = model(frames)
    assert expected.sum() > 0
    assert torch.equal(back(frames), expected)
    # Bernoulli input has no NIR node: refused by name.
    bernoulli = prepare_for_export(create_model("stbp_cnn", input_size=8))
    with pytest.raises(ConfigurationError, match=r"'encoder' \(PoissonEncoder\)"):
        export_to_nir(bernoulli, sample.float())
