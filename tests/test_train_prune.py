"""Pruning through ``spikeflow train`` (``--prune``): runs, resumes, evaluation, errors."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
import torch

from spikeflow.cli import main
from spikeflow.prune import SignedStrength, SoftThreshold, prior_centre
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.metric_logs import read_csv
from train_runs import tiny

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")

METHODS = {
    "grad_r": {"alpha": 0.5, "target_sparsity": 0.9},
    "stds": {"final_threshold": 0.05, "shape": "sine"},
    "lats": {"l1": 20.0},
}


def _run(tmp_path, name, method, **changes):
    config = tiny(tmp_path, name, prune=method, prune_kwargs=METHODS[method], lr=0.01, **changes)
    return Trainer(config, log=None).fit()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_prunes_a_run_and_logs_its_sparsity(tmp_path, method):
    _run(tmp_path, "run", method)
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    sparsity = [float(r["sparsity"]) for r in rows]
    assert len(sparsity) == 3 and sparsity[-1] > 0.3, sparsity
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    kind = SignedStrength if method == "grad_r" else SoftThreshold
    model = payload["model"]
    hidden = [k for k in model if k.endswith("parametrizations.weight.original")]
    assert len(hidden) == 4  # the two convolutions and two linear layers of plif_digits
    if kind is SoftThreshold:
        thresholds = [float(v) for k, v in model.items() if k.endswith(".threshold")]
        assert len(thresholds) == 4 and min(thresholds) > 0
    # the logged sparsity is that of the saved weights: w = 0 where θ is pruned
    zeros = total = 0
    for key in hidden:
        theta = model[key]
        prefix = key.removesuffix("original")
        if kind is SignedStrength:
            dead = theta <= 0
        else:
            dead = theta.abs() <= model[prefix + "0.threshold"]
        zeros, total = zeros + int(dead.sum()), total + theta.numel()
    assert zeros / total == pytest.approx(sparsity[-1], abs=1e-12)


class _CtrlC:
    """A real SIGINT (Ctrl-C) during step ``step`` of epoch ``epoch``."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, trainer, epoch, step, loss):
        if (epoch, step) == (self.epoch, self.step):
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("where", ["epoch_end", "mid_epoch"])
def test_a_pruned_run_resumes_exactly(tmp_path, method, where):
    _run(tmp_path, "full", method)
    if where == "epoch_end":
        _run(tmp_path, "split", method, stop_after=1)
    else:  # Ctrl-C inside epoch 2: the checkpoint holds the schedule mid-way
        config = tiny(tmp_path, "split", prune=method, prune_kwargs=METHODS[method], lr=0.01)
        result = Trainer(config, callbacks=[_CtrlC(1, 2)], log=None).fit()
        assert result.interrupted
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    full = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    split = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert full.keys() == split.keys()
    for key in full:
        assert torch.equal(full[key], split[key]), key
    rows = [read_csv(tmp_path / run / "metrics.csv") for run in ("full", "split")]
    for table in rows:
        for row in table:
            row.pop("epoch_time_s")
    assert rows[0] == rows[1]


def test_grad_r_trains_with_the_rewiring_optimizer(tmp_path):
    config = tiny(tmp_path, "run", prune="grad_r", prune_kwargs=METHODS["grad_r"], lr=0.01,
                  stop_after=1)  # fmt: skip
    trainer = Trainer(config, log=None)
    trainer.fit()
    groups = trainer.optimizer.param_groups
    assert [g["alpha"] for g in groups] == [0.5, 0.0]
    assert groups[0]["target_sparsity"] == 0.9
    assert prior_centre(0.5, 0.9) < 0


def test_pruned_run_evaluates_from_its_checkpoint(tmp_path, capsys):
    _run(tmp_path, "run", "stds")
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    code = main(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--no-progress",
                 "--json", str(tmp_path / "eval.json")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "eval.json").read_text())
    logged = float(rows[best["epoch"] - 1]["test_acc"])
    assert result["test_acc"] == pytest.approx(logged, abs=1e-12)


def test_the_command_line_prunes_and_prints_the_sparsity(tmp_path, capsys):
    code = main(["train", "--epochs", "2", "--train-samples", "192", "--test-samples", "96",
                 "--prune", "stds", "--prune-kwargs", "final_threshold=0.05", "shape=linear",
                 "--output-dir", str(tmp_path / "run"), "--no-progress",
                 "--plots", "off"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"epoch   2/2 .* sparsity \d+\.\d\d%", out), out
    saved = (tmp_path / "run" / "config.toml").read_text()
    assert 'prune = "stds"' in saved and "final_threshold = 0.05" in saved


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prune", "stds"], r"prune 'stds' needs final_threshold \(e\.g\. --prune-kwargs "
                              r"final_threshold=\.\.\.\)"),
        (["--prune", "lats", "--prune-kwargs", "lambda=1"],
         r"prune 'lats': unknown argument\(s\) \['lambda'\]; it takes l1, final_threshold, "
         r"start_epoch, exclude"),
        (["--prune", "lats"], r"prune 'lats' needs either l1 .* or final_threshold .*; "
                              r"got neither"),
        (["--prune", "lats", "--prune-kwargs", "l1=1", "final_threshold=0.1"],
         r"prune 'lats' needs either l1 .*; got l1 and final_threshold"),
        (["--prune", "stds", "--prune-kwargs", "final_threshold=1", "shape=pgh"],
         r"prune 'stds': shape 'pgh' needs beta"),
        (["--prune", "stds", "--prune-kwargs", "final_threshold=1", "shape=pgh", "beta=0"],
         r"prune 'stds': beta must be a finite real number in \(0, inf\)"),
        (["--prune", "stds", "--prune-kwargs", "final_threshold=1", "beta=2"],
         r"prune 'stds': beta is for shape 'pgh' only; shape is 'sine'"),
        (["--prune", "grad_r", "--optimizer", "sgd"], r"prune 'grad_r' trains with Adam"),
        (["--prune", "grad_r", "--prune-kwargs", "target_sparsity=1"],
         r"prune 'grad_r': target_sparsity must be a finite real number in \(0, 1\), got 1"),
        (["--prune", "stds", "--prune-kwargs", "final_threshold=-1"],
         r"final_threshold must be a finite real number in \[0, inf\)"),
        (["--prune", "stds", "--prune-kwargs", "final_threshold=1", "shape=cos"],
         r"shape must be one of sine, linear, slats, pgh; got 'cos'"),
        (["--prune", "stds", "--epochs", "3", "--prune-kwargs", "final_threshold=1",
          "start_epoch=3"], r"start_epoch must be an integer from 0 to epochs - 1 \(2\), got 3"),
        (["--prune", "lats", "--epochs", "2", "--prune-kwargs", "l1=1", "start_epoch=-1"],
         r"prune 'lats': start_epoch must be an integer from 0 to epochs - 1 \(1\), got -1"),
        (["--prune", "lats", "--prune-kwargs", "l1=1", "exclude=[\"features.9\"]"],
         r"exclude names \['features.9'\], which are no linear or convolution layers of the "
         r"model; they are: features.0, features.3, classifier.2, classifier.5"),
        (["--prune", "lats", "--prune-kwargs", "l1=1", "exclude=features.0"],
         r"exclude must be a list of layer names"),
        (["--prune-kwargs", "l1=1"], r"prune 'none': unknown argument\(s\) \['l1'\]; "
                                     r"it takes no arguments"),
    ],
)  # fmt: skip
def test_bad_pruning_options_exit_with_status_2(tmp_path, capsys, args, message):
    code = main(["train", *args, "--output-dir", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["stds", "lats"])
def test_pruning_starts_at_start_epoch(tmp_path, method):
    kwargs = {**METHODS[method], "start_epoch": 1}
    config = tiny(tmp_path, "run", prune=method, prune_kwargs=kwargs, lr=0.01)
    Trainer(config, log=None).fit()
    sparsity = [float(r["sparsity"]) for r in read_csv(tmp_path / "run" / "metrics.csv")]
    assert sparsity[0] == 0.0 and sparsity[2] > 0.1, sparsity


def test_excluded_layers_stay_dense(tmp_path):
    kwargs = {**METHODS["grad_r"], "exclude": ["features.0", "classifier.5"]}
    Trainer(tiny(tmp_path, "run", prune="grad_r", prune_kwargs=kwargs, lr=0.01), log=None).fit()
    model = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    hidden = sorted(k for k in model if k.endswith("parametrizations.weight.original"))
    assert hidden == ["classifier.2.parametrizations.weight.original",
                      "features.3.parametrizations.weight.original"]  # fmt: skip
    assert "features.0.weight" in model and "classifier.5.weight" in model


def test_tensorboard_gets_the_sparsity_of_each_layer(tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard logging needs the 'tensorboard' extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny(tmp_path, "run", prune="stds", prune_kwargs=METHODS["stds"], lr=0.01,
                  tensorboard=True, epochs=2)  # fmt: skip
    Trainer(config, log=None).fit()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    layers = {"features.0", "features.3", "classifier.2", "classifier.5"}
    assert {"sparsity"} | {f"sparsity_layer/{name}" for name in layers} <= tags
    final = [events.Scalars(f"sparsity_layer/{name}")[-1].value for name in sorted(layers)]
    assert max(final) > 0


@pytest.mark.parametrize("schedule", ["cosine", "step", "none"])
def test_lats_given_a_final_threshold_ends_there(tmp_path, schedule):
    """λ is derived from the run's learning rates: the threshold reaches D at the end of
    the last epoch whatever the schedule (under cosine: the authors' per-epoch LATS)."""
    kwargs = {"final_threshold": 0.02, "start_epoch": 1}
    config = tiny(tmp_path, schedule, prune="lats", prune_kwargs=kwargs, lr=0.01,
                  schedule=schedule, step_size=1, gamma=0.5)  # fmt: skip
    trainer = Trainer(config, log=None)
    trainer.fit()
    assert trainer.pruning.thresholds[0] == pytest.approx(0.02, rel=1e-12)
    state = load_checkpoint(tmp_path / schedule / "last.pt")["model"]
    assert float(state["features.0.parametrizations.weight.0.threshold"]) == pytest.approx(0.02)
