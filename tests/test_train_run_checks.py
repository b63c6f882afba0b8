"""What a training run checks before it starts (``spikeflow.training.run_checks``): the
settings that only the model's output or the dataset show wrong are refused before
``--overwrite`` removes the earlier run, naming the argument, its value and ``T``; the
checks refuse exactly what the first training step would; and a ``spike_max`` run that
stops on its own infinite loss says why."""

from __future__ import annotations

import functools
import math

import pytest
import torch

import train_runs
from spikeflow import functional
from spikeflow.cli import main
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.losses import check_loss_fits, get_loss, non_finite_loss_cause
from spikeflow.models import create_model
from spikeflow.models.common import output_steps
from spikeflow.neurons import PSN, DSRIFNode, GatedLIFNode, MaskedPSN
from spikeflow.training import Trainer
from spikeflow.training.build import build_model
from spikeflow.training.config import config_from_dict, resolve
from spikeflow.training.data import DataInfo
from spikeflow.training.run_checks import loss_is_summed, run_loss
from spikeflow.training.trainer import NonFiniteLossError

#: The shared tiny run, one epoch on fewer samples (T = 2).
TINY = {**train_runs.TINY, "train_samples": 64, "test_samples": 32, "epochs": 1}
tiny = functools.partial(train_runs.tiny, base=TINY)
DIGITS = DataInfo(num_classes=10, in_channels=1, input_size=(8, 8), static=True)
#: A small delay_snn: each layer's input padded by (5 - 1) // 2 = 2 steps.
DELAY = {"hidden": 4, "hidden_layers": 1, "max_delay": 5}


def files_of(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """A finished run's folder and its files (the tests below must leave them)."""
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    root = tmp_path_factory.mktemp("earlier")
    Trainer(tiny(root, "run"), log=None).fit()
    run = root / "run"
    assert {"last.pt", "best.pt", "metrics.csv", "config.toml"} <= set(files_of(run))
    return run, files_of(run)


def test_a_window_longer_than_T_is_refused_before_overwrite_removes_the_run(earlier_run, capsys):
    run, files = earlier_run
    args = ["train", "--output-dir", str(run), "--overwrite", "-T", "2", "--epochs", "1",
            "--train-samples", "64", "--test-samples", "32", "--no-progress",
            "--plots", "off", "--device", "cpu", "--loss", "spike_rate", "--loss-kwargs",
            "true_rate=0.5", "false_rate=0.1", "moving_window=5"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "spike_rate_loss: moving_window (5) is longer than the T = 2 steps" in err
    assert files_of(run) == files  # was: removed, then refused at the first step


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss": "spike_max", "loss_kwargs": {"moving_window": 3}},
         r"spike_max_loss: moving_window \(3\) is longer than the T = 2 steps"),
        ({"loss": "mse_temporal", "loss_kwargs": {"on_target": 4}},
         r"on_target and off_target must lie in \[-T, T\] = \[-2, 2\] for the T = 2"),
        ({"loss": "mse_temporal", "loss_kwargs": {"target_is_time": True}},
         r"target_is_time=True .* the targets here are class labels \[B\]"),
        ({"loss": "count"},  # its default desired_count, 10 spikes in 2 steps
         r"spike_count_loss: desired_count \(10\) is more than the T = 2 steps of the "
         r"model's output: .* give desired_count <= 2"),
        ({"model_kwargs": {**TINY["model_kwargs"], "num_classes": 5}},
         r"num_classes \(5\) is fewer than the 10 classes of dataset digits"),
        ({"model_kwargs": {**TINY["model_kwargs"], "num_classes": 12}, "mixup": 0.2},
         r"mixup/cutmix mix one-hot labels of the 10 classes .* num_classes is 12"),
        ({"loss": "ce_count", "loss_kwargs": {"weight": [1.0, 2.0, 3.0]}},
         r"weight has 3 values; the loss 'ce_count' needs one per class, 10 \(the model's"),
        ({"loss": "mse_count", "model_kwargs": {**TINY["model_kwargs"], "num_classes": 20},
          "loss_kwargs": {"population_code": True, "num_classes": 10}},
         r"population_code=true: .* accuracy, best checkpoint and spikeflow eval read one"),
        ({"neuron": "psn", "neuron_kwargs": {"T": 3}},
         r"layer 'features\.2': PSN was built for T=3 .* the T = 2 steps of every sample"),
        ({"neuron": "glif", "neuron_kwargs": {"T": 1}},
         r"GatedLIFNode was built for T=1 .* --neuron-kwargs T=2"),
        # delay_snn pads each layer's input: its neurons see more than T steps (the
        # check skipped it; the run failed at the first step after removing the run)
        ({"model": "delay_snn", "neuron": "psn", "model_kwargs": DELAY},
         r"layer 'net\.3': PSN was built for T=2 .* the 4 steps this layer sees for T = 2 "
         r"\(.* its output has 6\): pass --neuron-kwargs T=4, or .* extend_time=false"),
        ({"model": "delay_snn", "neuron": "psn", "model_kwargs": {**DELAY, "hidden_layers": 2}},
         r"layer 'net\.3': .* one --neuron-kwargs T cannot fit its layers' \[4, 6\] steps"),
    ],
)  # fmt: skip
def test_what_the_first_step_would_refuse_is_refused_before_overwrite(
    earlier_run, changes, message
):
    run, files = earlier_run
    config = tiny(run.parent, "run", overwrite=True, **changes)
    with pytest.raises(ConfigurationError, match=message):
        Trainer(config, log=None).fit()
    assert files_of(run) == files


@pytest.mark.parametrize("extend_time", [True, False])
def test_a_window_is_checked_against_the_steps_the_model_outputs(extend_time):
    """delay_snn pads each layer's input: its output is longer than T, and a window up
    to that length is accepted, one step more refused."""
    model = create_model("delay_snn", num_classes=10, in_features=64, hidden=4,
                         hidden_layers=1, max_delay=5, extend_time=extend_time)  # fmt: skip
    with torch.no_grad():
        steps = model(torch.rand(2, 3, 64)).shape[0]
    assert output_steps(model, 2) == steps == (6 if extend_time else 2)
    base = {"dataset": "digits", "model": "delay_snn", "T": 2, "loss": "spike_max",
            "model_kwargs": {"hidden": 4, "hidden_layers": 1, "max_delay": 5,
                             "extend_time": extend_time}}  # fmt: skip
    for window, fits in ((steps, True), (steps + 1, False)):
        config = resolve(config_from_dict({**base, "loss_kwargs": {"moving_window": window}}))
        model = build_model(config, DIGITS)
        if fits:
            assert callable(run_loss(config, model, DIGITS))
        else:
            with pytest.raises(ConfigurationError, match=rf"\({window}\) .* T = {steps} steps"):
                run_loss(config, model, DIGITS)


@pytest.mark.parametrize(("extend_time", "hidden_layers"), [(True, 1), (True, 2), (False, 2)])
def test_delay_snn_says_the_steps_each_layer_sees(extend_time, hidden_layers):
    """layer_steps(T), what the neuron check reads, is what each layer's input has."""
    model = create_model("delay_snn", num_classes=3, in_features=6, hidden=4, max_delay=5,
                         hidden_layers=hidden_layers, extend_time=extend_time)  # fmt: skip
    seen = {}

    def record(name):
        def hook(module, args):
            seen[name] = args[0].shape[0]  # (returns None: the input stays)

        return hook

    for index, layer in enumerate(model.net):
        layer.register_forward_pre_hook(record(f"net.{index}"))
    with torch.no_grad():
        model(torch.rand(3, 2, 6))
    assert model.layer_steps(3) == seen
    # each block's PadTime (net.0, net.5, ...) gets the steps the one before it padded
    pads = [seen[f"net.{5 * k}"] for k in range(hidden_layers + 1)]
    assert pads == [3 + 2 * k if extend_time else 3 for k in range(hidden_layers + 1)]


@pytest.mark.parametrize(
    ("neuron", "cls"), [("dsr_if", DSRIFNode), ("psn", PSN), ("glif", GatedLIFNode)]
)
def test_a_neuron_built_for_fixed_steps_gets_the_runs_T(neuron, cls):
    """Named with no T, it is built for the run's T (DSR's default of 20 fitted only
    T = 20: --neuron dsr_if was refused at T = 2); a T given stays."""
    base = {"dataset": "digits", "T": 3, "neuron": neuron}
    for kwargs, steps in (({}, 3), ({"T": 4}, 4)):
        config = resolve(config_from_dict({**base, "neuron_kwargs": kwargs}))
        model = build_model(config, DIGITS)
        layers = [m for m in model.modules() if isinstance(m, cls)]
        assert layers and {m.T for m in layers} == {steps}


@pytest.mark.parametrize(
    ("name", "kwargs", "key", "values"),
    [
        ("spike_rate", {"true_rate": 0.6, "false_rate": 0.1}, "moving_window", range(1, 6)),
        ("spike_max", {"mode": "softmax"}, "moving_window", range(1, 6)),
        ("spike_moid", {"alpha": 0.5}, "moving_window", range(1, 6)),
        ("mse_temporal", {}, "on_target", [-5, -4, -3, -1, 0, 2, 3, 4, [0, 1], [0, 4]]),
        ("mse_temporal", {"on_target": 0}, "off_target", [-4, -3, 2, 3]),
        ("count", {}, "desired_count", [1, 2, 3.5, 4, 5, 10]),
        ("count+", {"balance": None}, "desired_count", [1, 4, 4.5, 10]),
        ("sum0", {}, "desired_count", [2, 3, 5]),
    ],
)
def test_check_loss_fits_refuses_what_the_loss_refuses_at_its_call(name, kwargs, key, values):
    """For T = 1..4, ``check_loss_fits`` raises exactly when the loss, called on an
    output of T steps with labels, raises a ConfigurationError, with its message."""
    labels = torch.tensor([0, 2])
    for steps in range(1, 5):
        out = (torch.rand(steps, 2, 3) > 0.5).float()
        for value in values:
            value_kwargs = {**kwargs, key: value}
            if isinstance(value, list):  # one wanted step per spike, off_target alike
                value_kwargs["off_target"] = [-1] * len(value)
            try:
                get_loss(name, **value_kwargs)(out, labels)
                expected = None
            except ConfigurationError as exc:
                expected = str(exc)
            try:
                check_loss_fits(name, steps, value_kwargs)
                found = None
            except ConfigurationError as exc:
                found = str(exc)
            assert found == expected, (steps, value)


@pytest.mark.parametrize(
    "neuron",
    [
        lambda: PSN(T=3),
        lambda: MaskedPSN(k=2, T=3),
        lambda: GatedLIFNode(T=3),
        lambda: DSRIFNode(T=3),
    ],
    ids=["psn", "masked_psn", "glif", "dsr_if"],
)
def test_check_steps_refuses_what_the_neuron_refuses_at_its_call(neuron):
    module = neuron()
    for steps in range(1, 6):
        functional.reset_net(module)
        try:
            module(torch.rand(steps, 2, 4))
            expected = None
        except ShapeError as exc:
            expected = str(exc)
        try:
            module.check_steps(steps)
            found = None
        except ShapeError as exc:
            found = str(exc)
        assert (found is None) == (expected is None), steps
        assert found is None or expected.startswith(found), (found, expected)


def test_a_spike_max_run_stopped_by_its_infinite_loss_names_the_cause(tmp_path):
    """In probability mode (Lava-DL's default) a silent label neuron gives p = 0 and an
    infinite loss at the first batch: the message says so, not "lower the learning
    rate"; the loss keeps Lava-DL's values."""
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    with pytest.raises(NonFiniteLossError) as caught:
        Trainer(tiny(tmp_path, "max", loss="spike_max"), log=None).fit()
    message = str(caught.value)
    assert "(inf on at least one process) at epoch 1, step 1" in message
    assert "spike_max in its probability mode" in message and "mode=softmax" in message
    assert "Lower the learning rate" not in message
    silent = torch.zeros(4, 1, 3)
    silent[:, 0, 1] = 1.0  # class 1 fires, the label 0 does not
    assert get_loss("spike_max")(silent, torch.tensor([0])) == math.inf


def test_the_cause_is_named_for_spike_max_probability_and_inf_only():
    cause = non_finite_loss_cause("spike_max", {}, math.inf)
    assert "silent over the sequence" in cause and "mode=softmax" in cause
    window = non_finite_loss_cause("Spike-Max", {"moving_window": 4}, math.inf)
    assert "silent over a window of 4 steps" in window
    assert non_finite_loss_cause("spike_max", {"mode": "softmax"}, math.inf) == ""
    assert non_finite_loss_cause("spike_max", {}, math.nan) == ""  # a divergence
    assert non_finite_loss_cause("mse", {}, math.inf) == ""


def test_check_loss_fits_names_what_is_wrong_with_its_own_arguments():
    with pytest.raises(ConfigurationError, match="check_loss_fits: steps must be an integer"):
        check_loss_fits("mse", 0)
    with pytest.raises(ConfigurationError, match="unknown loss 'nope'"):
        check_loss_fits("nope", 4)
    with pytest.raises(ConfigurationError, match=r"needs the argument\(s\) \['true_rate'"):
        check_loss_fits("spike_rate", 4, {"moving_window": 2})
    check_loss_fits("mse", 1)  # the losses without step-dependent arguments take any T


@pytest.mark.parametrize("model", ["spiking_ssm", "recurrent_lif_seq"])
def test_a_pixel_model_needs_T_of_the_pixels_before_the_run_starts(model, tmp_path, capsys):
    """``input_mode='pixels'`` reads pixel t at step t: T must be H·W (64 for the digits).
    The check refuses exactly what the model's forward refuses, and before a run
    writes its folder (the docs' ``spikeflow train --model spiking_ssm`` without -T)."""
    small = {"d_model": 8} if model == "spiking_ssm" else {"hidden": 8}
    for T, fits in ((4, False), (63, False), (65, False), (64, True)):
        config = resolve(config_from_dict({"model": model, "T": T, "model_kwargs": small}))
        net = build_model(config, DIGITS)
        image = torch.rand(T, 2, 1, 8, 8)
        if fits:
            run_loss(config, net, DIGITS)
            assert net(image).shape == (1, 2, 10)
            continue
        with pytest.raises(ConfigurationError, match=f"T must be H·W = 64 .*got T = {T}"):
            run_loss(config, net, DIGITS)
        with pytest.raises(ShapeError, match="T = H·W"):
            net(image)
    frames = resolve(config_from_dict({"model": model, "T": 4, "model_kwargs": {
        **small, "input_mode": "frames"}}))  # fmt: skip
    run_loss(frames, build_model(frames, DIGITS), DIGITS)  # one frame per step: any T
    out = tmp_path / "run"
    assert main(["train", "--model", model, "--output-dir", str(out), "--no-progress"]) == 2
    assert "pass -T 64" in capsys.readouterr().err
    assert not out.exists()


def test_a_summed_loss_is_logged_per_sample_whatever_the_batch_size(tmp_path):
    """``--loss-kwargs reduction=sum``: train_loss and test_loss are the loss per sample,
    as with the batch mean (was: the batch sums times the batch size, over the samples);
    lr ~ 0 so that both runs log the same model's loss."""
    from spikeflow.training.metric_logs import read_csv

    logged = {}
    for reduction, batch in [("mean", 32), ("sum", 32), ("sum", 16)]:
        config = tiny(tmp_path, f"{reduction}{batch}", loss="ce_count", epochs=1, lr=1e-12,
                      batch_size=batch, loss_kwargs={"reduction": reduction})  # fmt: skip
        Trainer(config, log=None).fit()
        row = read_csv(tmp_path / f"{reduction}{batch}" / "metrics.csv")[-1]
        logged[reduction, batch] = (float(row["train_loss"]), float(row["test_loss"]))
    assert logged["sum", 32] == pytest.approx(logged["mean", 32], rel=1e-6)
    # Lava-DL's spike_rate sums by default: reduction=sum changes nothing there.
    lava = {"loss": "spike_rate", "loss_kwargs": {"true_rate": 0.5, "false_rate": 0.1}}
    explicit = {**lava["loss_kwargs"], "reduction": "sum"}
    assert not loss_is_summed(config_from_dict(lava))
    assert not loss_is_summed(config_from_dict({**lava, "loss_kwargs": explicit}))
    assert loss_is_summed(config_from_dict({"loss": "tet", "loss_kwargs": {"reduction": "sum"}}))
    assert logged["sum", 16][1] == pytest.approx(logged["mean", 32][1], rel=1e-6)
