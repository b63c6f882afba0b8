"""`spikeflow train` / `spikeflow eval`: the default run, config files, exact resume,
Ctrl-C, NaN stop, checkpoints that load with weights_only=True."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import warnings
from pathlib import Path

import pytest
import torch

from spikeflow.cli import main, parse_kwargs
from spikeflow.errors import ConfigurationError, MissingExtraError
from spikeflow.training import (
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    config_for_resume,
    load_checkpoint,
    load_config_file,
    save_checkpoint,
)
from spikeflow.training.config import config_from_dict, dump_toml, resolve
from spikeflow.training.metric_logs import read_csv
from train_runs import TINY, tiny

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    rows = read_csv(run_dir / "metrics.csv")
    for row in rows:
        row.pop("epoch_time_s")
    return rows


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def test_default_command_learns_the_digits(tmp_path, capsys):
    # The no-argument run (40 epochs) reaches ~99%; 3 epochs of it must already learn.
    code = main(["train", "--epochs", "3", "--output-dir", str(tmp_path / "run"),
                 "--no-progress", "--plots", "off"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["test_acc"]) > 0.8
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert 0.0 < float(rows[-1]["test_rate"]) < 1.0
    config = load_config_file(tmp_path / "run" / "config.toml")
    assert config["model"] == "plif_digits" and config["T"] == 4 and config["epochs"] == 3
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["step"] == 0
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "config"} <= set(ckpt)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["best"]["test_acc"] == max(float(r["test_acc"]) for r in rows)

    # eval on the best checkpoint gives the accuracy logged for its epoch
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"),
                 "--json", str(tmp_path / "eval.json")]) == 0  # fmt: skip
    result = json.loads((tmp_path / "eval.json").read_text())
    logged = float(rows[best["epoch"] - 1]["test_acc"])
    assert result["test_acc"] == pytest.approx(logged, abs=1e-12)
    assert result["samples"] == result["split_samples"] == 360 and len(result["layers"]) == 4
    assert (result["model"], result["dataset"], result["T"]) == ("plif_digits", "digits", 4)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"best.pt: plif_digits (T=4) after epoch {best['epoch']} of 3, "
                             "digits test split")  # fmt: skip
    assert lines[1].strip() == "all 360 test samples"
    assert f"accuracy {100 * logged:.2f}%" in lines[2] and "mean firing rate" in lines[2]
    assert lines[4].split() == ["spiking", "layer", "rate", "spikes/sample", "neurons", "v",
                                "mean", "v", "std"]  # fmt: skip
    assert [line.split()[0] for line in lines[5:9]] == [s["name"] for s in result["layers"]]
    assert lines[-1] == f"test accuracy: {logged:.4f}"


def test_a_new_run_refuses_a_folder_holding_an_earlier_run(tmp_path, capsys):
    Trainer(tiny(tmp_path, "run", epochs=1), log=None).fit()
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ConfigurationError, match=r"earlier run \(last\.pt, best\.pt"):
        Trainer(tiny(tmp_path, "run", epochs=1, seed=1), log=None).fit()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # the command line says how to go on; --overwrite replaces the run
    args = ["train", "--epochs", "1", "--output-dir", str(run), "--no-progress",
            "--train-samples", "64", "--test-samples", "32", "--plots", "off"]  # fmt: skip
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert load_checkpoint(run / "last.pt")["config"]["seed"] == 1
    # overwrite belongs to the invocation that gave it, as stop_after does: neither a
    # resume nor a rerun of the written config.toml inherits it
    assert config_for_resume(load_checkpoint(run / "last.pt"), {}).overwrite is False
    assert "overwrite" not in load_config_file(run / "config.toml")


def test_overwrite_removes_the_earlier_runs_outputs_first(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tensorboard")
    Trainer(tiny(tmp_path, "run", epochs=1, plots="on", tensorboard=True), log=None).fit()
    run = tmp_path / "run"
    assert {"raster.png", "tensorboard", "best.pt"} <= {p.name for p in run.iterdir()}
    (run / "notes.txt").write_text("mine")  # not the run's: stays
    Trainer(tiny(tmp_path, "run", epochs=1, seed=1, overwrite=True), log=None).fit()
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt", "config.toml", "last.pt", "layers.csv", "metrics.csv", "notes.txt"]  # fmt: skip
    assert [row["epoch"] for row in read_csv(run / "metrics.csv")] == ["1"]


def test_a_folder_left_by_a_run_that_failed_early_is_not_an_earlier_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("# what a run that diverged in epoch 1 leaves\n")
    assert Trainer(tiny(tmp_path, "run", epochs=1), log=None).fit().epochs_completed == 1


def test_a_resume_into_another_runs_folder_is_refused(tmp_path):
    Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    Trainer(tiny(tmp_path, "b", epochs=1, seed=9), log=None).fit()
    b_metrics = (tmp_path / "b" / "metrics.csv").read_bytes()
    resume = ["train", "--resume", str(tmp_path / "a"), "--output-dir", str(tmp_path / "b"),
              "--no-progress"]  # fmt: skip
    assert main(resume) == 2
    assert (tmp_path / "b" / "metrics.csv").read_bytes() == b_metrics
    assert main([*resume, "--overwrite"]) == 0
    assert load_checkpoint(tmp_path / "b" / "last.pt")["config"]["seed"] == 0
    # resuming into its own folder needs no --overwrite
    Trainer(tiny(tmp_path, "c", stop_after=1), log=None).fit()
    assert main(["train", "--resume", str(tmp_path / "c"), "--no-progress"]) == 0


def test_resume_with_the_same_config_and_kwargs_options(tmp_path):
    # The file's tables merge with --neuron-kwargs on the resume as on the first run,
    # and a table the file holds as a JSON string (a null in it) reads as a table.
    source = tmp_path / "run.toml"
    source.write_text(dump_toml({**TINY, "epochs": 2, "neuron": "lif",
                                 "neuron_kwargs": {"tau": 3.0, "v_reset": None}}))  # fmt: skip
    assert 'neuron_kwargs = "{' in source.read_text()
    first = ["train", "--config", str(source), "--neuron-kwargs", "detach_reset=true",
             "--no-progress"]  # fmt: skip
    assert main([*first, "--output-dir", str(tmp_path / "r"), "--stop-after", "1"]) == 0
    assert main([*first, "--resume", str(tmp_path / "r")]) == 0
    assert load_checkpoint(tmp_path / "r" / "last.pt")["config"]["neuron_kwargs"] == {
        "tau": 3.0, "v_reset": None, "detach_reset": True}  # fmt: skip


def assert_tiny_run_learns(run: Path) -> None:
    """The TINY run the training tests share learns: its loss falls every epoch, the
    output layer fires on the test split and the test accuracy is well above chance
    (0.1). (Once it did not: a silent output layer, loss 0.1 throughout, 10.4%.)"""
    rows = read_csv(run / "metrics.csv")
    losses = [float(r["train_loss"]) for r in rows]
    assert len(rows) == 3 and losses[0] > losses[1] > losses[2], losses
    assert float(rows[-1]["test_acc"]) > 0.25, rows[-1]
    output = [r for r in read_csv(run / "layers.csv") if r["split"] == "test"][-1]
    assert output["layer"].startswith("classifier") and float(output["firing_rate"]) > 0.01


def test_resume_continues_exactly(tmp_path):
    Trainer(tiny(tmp_path, "full"), log=None).fit()
    assert_tiny_run_learns(tmp_path / "full")
    first = Trainer(tiny(tmp_path, "split", stop_after=1), log=None).fit()
    assert first.epochs_completed == 1
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    # a resume may change runtime options only
    with pytest.raises(ConfigurationError, match="lr"):
        config_for_resume(payload, {"lr": 0.5})
    # stop_after belonged to the first invocation: a plain resume (what `--resume DIR`
    # passes) runs to the end; one that gives its own stops there.
    assert config_for_resume(payload, {"stop_after": 2}).stop_after == 2
    config = config_for_resume(payload, {})
    assert config.stop_after is None
    result = Trainer(config, resume=payload, log=None).fit()
    assert result.epochs_completed == 3
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "split"))
    assert metrics(tmp_path / "full") == metrics(tmp_path / "split")


class _Interrupt:
    """Sends the process a real SIGINT (Ctrl-C) during step ``step`` of epoch ``epoch``;
    with ``second=True`` a second Ctrl-C follows at once (KeyboardInterrupt)."""

    def __init__(self, epoch: int, step: int, second: bool = False) -> None:
        self.epoch, self.step, self.second = epoch, step, second

    def on_step_end(self, trainer, epoch, step, loss):
        if (epoch, step) == (self.epoch, self.step):
            os.kill(os.getpid(), signal.SIGINT)
            if self.second:
                os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_and_resume_mid_epoch_is_exact(tmp_path, capsys):
    Trainer(tiny(tmp_path, "full"), log=None).fit()
    result = Trainer(tiny(tmp_path, "cut"), callbacks=[_Interrupt(1, 2)], log=None).fit()
    assert result.interrupted and result.epochs_completed == 1
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (1, 3)
    # continue through the command line
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "cut"))
    assert metrics(tmp_path / "full") == metrics(tmp_path / "cut")


def test_ctrl_c_during_the_evaluation_stops_after_the_epoch_and_resumes_exactly(
    tmp_path, monkeypatch
):
    import spikeflow.training.trainer as trainer_module

    Trainer(tiny(tmp_path, "full"), log=None).fit()
    real_evaluate, calls = trainer_module.evaluate, []

    def evaluate_with_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the evaluation after epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate", evaluate_with_ctrl_c)
    result = Trainer(tiny(tmp_path, "cut"), log=None).fit()
    monkeypatch.undo()
    assert result.interrupted and result.epochs_completed == 2
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (2, 0)  # a complete epoch: nothing redone
    assert payload["scheduler"]["last_epoch"] == 2  # stepped once per finished epoch
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "cut"))
    assert metrics(tmp_path / "full") == metrics(tmp_path / "cut")


def test_a_second_ctrl_c_aborts_without_saving(tmp_path):
    said: list[str] = []
    result = Trainer(tiny(tmp_path, "abort"), callbacks=[_Interrupt(1, 2, second=True)],
                     log=said.append).fit()  # fmt: skip
    assert result.interrupted
    payload = load_checkpoint(tmp_path / "abort" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (1, 0)  # epoch 1's checkpoint stands
    assert f"the last checkpoint is {tmp_path / 'abort' / 'last.pt'} (after epoch 1)" in said[-1]


def test_a_second_ctrl_c_before_any_checkpoint_says_none_was_written(tmp_path):
    """Aborted in its first epoch, a run names no checkpoint (it used to name a last.pt
    that did not exist)."""
    said: list[str] = []
    result = Trainer(tiny(tmp_path, "early"), callbacks=[_Interrupt(0, 1, second=True)],
                     log=said.append).fit()  # fmt: skip
    assert result.interrupted
    assert not (tmp_path / "early" / "last.pt").exists()
    assert "no checkpoint was written before" in said[-1]
    assert "last.pt" not in said[-1]


class _SendSigint:
    def on_step_end(self, trainer, epoch, step, loss):
        if (epoch, step) == (0, 1):
            os.kill(os.getpid(), signal.SIGINT)


def test_a_real_sigint_stops_at_the_end_of_the_step(tmp_path):
    previous = signal.getsignal(signal.SIGINT)
    result = Trainer(tiny(tmp_path, "sig", epochs=1), callbacks=[_SendSigint()], log=None).fit()
    assert result.interrupted and result.history == []
    payload = load_checkpoint(tmp_path / "sig" / "last.pt")
    assert (payload["epoch"], payload["step"], payload["global_step"]) == (0, 2, 2)
    assert signal.getsignal(signal.SIGINT) is previous  # the handler is restored


class _InjectNaN:
    """From epoch 2 on, the loss is NaN (as when weights or a logit readout blow up)."""

    def on_epoch_end(self, trainer, epoch, row):
        if epoch == 0:
            loss_fn = trainer.loss_fn
            trainer.loss_fn = lambda out, y: loss_fn(out, y) * math.nan


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    trainer = Trainer(tiny(tmp_path, "nan"), callbacks=[_InjectNaN()], log=None)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1 of 6") as info:
        trainer.fit()
    assert "last.pt (after epoch 1)" in str(info.value)
    payload = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (1, 0)
    assert all(torch.isfinite(t).all() for t in payload["model"].values() if t.is_floating_point())


class _NaNFromNextStep:
    """After the first step this process runs, the loss is NaN."""

    def on_step_end(self, trainer, epoch, step, loss):
        loss_fn = trainer.loss_fn
        trainer.loss_fn = lambda out, y: loss_fn(out, y) * math.nan
        trainer.callbacks.remove(self)


def test_the_nan_message_names_the_mid_epoch_checkpoint_it_resumed_from(tmp_path):
    # It said "no checkpoint was saved (it failed in the first epoch)" although last.pt,
    # inside epoch 1, was there.
    Trainer(tiny(tmp_path, "cut"), callbacks=[_Interrupt(0, 2)], log=None).fit()
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (0, 3)
    trainer = Trainer(config_for_resume(payload, {}), resume=payload, log=None,
                      resume_dir=tmp_path / "cut", callbacks=[_NaNFromNextStep()])  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 5 of 6") as info:
        trainer.fit()
    assert (
        f"the last good checkpoint is the one this run resumed from (epoch 1, after step 3, "
        f"in {tmp_path / 'cut'})" in str(info.value)
    )
    # a run that saved an epoch names that checkpoint
    trainer = Trainer(tiny(tmp_path, "nan", epochs=2), callbacks=[_InjectNaN()], log=None)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    assert f"the last good checkpoint is {tmp_path / 'nan' / 'last.pt'} (after epoch 1)" in str(
        info.value
    )


class _BreakBatchNorm:
    """During epoch 2 a BN running variance becomes Inf while every loss stays finite."""

    def on_step_end(self, trainer, epoch, step, loss):
        if (epoch, step) == (1, 0):
            bn = next(m for m in trainer.raw_model.modules() if hasattr(m, "running_var"))
            bn.running_var[0] = math.inf


def test_non_finite_weights_stop_before_the_epoch_is_saved(tmp_path):
    trainer = Trainer(tiny(tmp_path, "inf"), callbacks=[_BreakBatchNorm()], log=None)
    with pytest.raises(NonFiniteLossError, match=r"after epoch 2 .*running_var") as info:
        trainer.fit()
    assert "last.pt (after epoch 1)" in str(info.value)
    payload = load_checkpoint(tmp_path / "inf" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (1, 0)
    assert all(torch.isfinite(t).all() for t in payload["model"].values() if t.is_floating_point())


def test_command_line_kwargs_add_to_the_config_files_table(tmp_path):
    source = tmp_path / "run.toml"
    values = {**TINY, "epochs": 1, "neuron": "lif",
              "neuron_kwargs": {"tau": 3.0, "v_threshold": 0.5}}  # fmt: skip
    source.write_text(dump_toml(values))
    out = tmp_path / "out"
    assert main(["train", "--config", str(source), "--output-dir", str(out), "--no-progress",
                 "--neuron-kwargs", "tau=4.0", "detach_reset=true"]) == 0  # fmt: skip
    written = load_config_file(out / "config.toml")["neuron_kwargs"]
    assert written == {"tau": 4.0, "v_threshold": 0.5, "detach_reset": True}


def test_config_file_round_trip_reproduces_the_run(tmp_path):
    source = tmp_path / "run.toml"
    values = {**TINY, "epochs": 2, "neuron": "lif", "neuron_kwargs": {"tau": 3.0},
              "optimizer": "sgd", "lr": 0.05, "schedule": "step", "step_size": 1}  # fmt: skip
    source.write_text(dump_toml(values))
    out1, out2 = tmp_path / "one", tmp_path / "two"
    assert main(["train", "--config", str(source), "--output-dir", str(out1)]) == 0
    written = load_config_file(out1 / "config.toml")
    assert {k: written[k] for k in values} == values
    assert main(["train", "--config", str(out1 / "config.toml"), "--output-dir", str(out2)]) == 0
    assert load_config_file(out2 / "config.toml") == written
    assert_same_weights(weights(out1), weights(out2))
    # the same numbers, epoch by epoch and layer by layer
    assert metrics(out1) == metrics(out2) and len(metrics(out1)) == 2
    assert read_csv(out1 / "layers.csv") == read_csv(out2 / "layers.csv")
    if _has_yaml():  # the same run from a YAML file
        import yaml

        (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
        out3 = tmp_path / "three"
        assert (
            main(["train", "--config", str(tmp_path / "run.yaml"), "--output-dir", str(out3)]) == 0
        )
        assert load_config_file(out3 / "config.toml") == written
        assert metrics(out3) == metrics(out1)


def test_config_formats_and_errors(tmp_path, monkeypatch):
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 2, "neuron_kwargs": {"tau": 2.5}}))
    (tmp_path / "c.yaml").write_text("epochs: 2\nneuron_kwargs:\n  tau: 2.5\n")
    (tmp_path / "bad.toml").write_text("epochz = 2\n")
    assert load_config_file(tmp_path / "c.json") == {"epochs": 2, "neuron_kwargs": {"tau": 2.5}}
    if _has_yaml():
        assert load_config_file(tmp_path / "c.yaml") == load_config_file(tmp_path / "c.json")
    with pytest.raises(ConfigurationError, match="epochz"):
        config_from_dict(load_config_file(tmp_path / "bad.toml"))
    with pytest.raises(ConfigurationError, match="optimizer"):
        config_from_dict({"optimizer": "rmsprop"}).validate()
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)
    with pytest.raises(MissingExtraError, match=r"spikeflow\[yaml\]"):
        load_config_file(tmp_path / "c.yaml")


def _has_yaml() -> bool:
    try:
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


def test_kwargs_options_parse_toml_values():
    parsed = parse_kwargs(["tau=2.0", "detach_reset=true", "surrogate_function=atan",
                           'sg={name = "sigmoid", alpha = 4}'], "--neuron-kwargs")  # fmt: skip
    assert parsed == {"tau": 2.0, "detach_reset": True, "surrogate_function": "atan",
                      "sg": {"name": "sigmoid", "alpha": 4}}  # fmt: skip
    assert parse_kwargs(['{"channels": 16}'], "--model-kwargs") == {"channels": 16}
    with pytest.raises(ConfigurationError, match="KEY=VALUE"):
        parse_kwargs(["tau"], "--neuron-kwargs")
    with pytest.raises(ConfigurationError, match=r"tau=2\.O"):  # a typo is not a string
        parse_kwargs(["tau=2.O"], "--neuron-kwargs")


def test_bad_options_exit_with_status_2(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist-ish", "--output-dir", str(tmp_path)]) == 2
    assert "unknown dataset 'mnist-ish'; available: " in capsys.readouterr().err
    assert main(["train", "--amp", "fp16", "--device", "cpu", "--output-dir", str(tmp_path)]) == 2
    assert "fp16" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "mnist-ish"], r"unknown dataset 'mnist-ish'; available: .*digits.*nmnist"),
        (["--model", "resnet9000"], r"unknown model 'resnet9000'; available: .*plif_digits.*"
                                    r"sew_resnet18.*spiking_vgg19_bn"),
        (["--neuron", "relu"], r"unknown neuron 'relu'; available: .*lif.*plif.*psn"),
        (["--loss", "hinge"], r"unknown loss 'hinge'; available: ce, ce\+, ce_count, "
                              r"ce_max_membrane, ce_temporal, count, count\+, kernel, mse, "
                              r"mse_count, mse_membrane, mse_temporal, spike_max, spike_moid, "
                              r"spike_rate, "
                              r"stcl, sum0, tcl, tet, timing, ttfs"),
        (["--model-kwargs", "channelz=8"], r"'plif_digits' does not accept the argument\(s\) "
                                           r"\['channelz'\]; it accepts .*channels"),
        (["--neuron-kwargs", "taux=2"], r"does not accept \['taux'\]; it accepts .*init_tau"),
        (["--neuron", "masked_psn"], r"MaskedPSN needs the argument\(s\) \['k'\].*"
                                     r"--neuron-kwargs k=\.\.\."),
        (["--epochs", "0"], r"epochs must be a positive integer, got 0"),
        (["--dataset", "nmnist"], r"dataset 'nmnist' needs --data-dir"),
        (["--data-dir", "{tmp}"], r"--data-dir .* was given, but the 'digits' dataset ships with "
                                  r"scikit-learn"),
        # options the digits would ignore are refused like --data-dir
        (["--cache-dir", "{tmp}"], r"--cache-dir .* was given, but the 'digits' dataset"),
        (["--split-by", "time", "--download"], r"--split-by time, --download were given, but "
                                               r"the 'digits' dataset"),
        (["--dataset", "nmnist", "--data-dir", "{tmp}"],
         r"--data-dir .*: N-MNIST not found: .*Train does not exist\. Pass --download to "
         r"download Train\.zip .*Expected layout: <root>/\{Train,Test\}/<label>/<id>\.bin"),
        (["--dataset", "dvs128gesture", "--model", "plif_dvsgesture", "--data-dir", "{tmp}",
          "--download"],
         r"--download: DVS128Gesture cannot be downloaded automatically"),
        (["--config", "{tmp}/missing.toml"], r"config file .*missing\.toml does not exist"),
        (["--resume", "{tmp}/nothing.pt"], r"checkpoint .*nothing\.pt does not exist"),
    ],
)  # fmt: skip
def test_bad_command_line_input_names_the_argument_and_the_choices(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main(["train", *args, "--output-dir", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("spikeflow train: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out" / "last.pt").exists()


def test_nmnist_subset_trains_through_the_command_line(tmp_path, capsys):
    from conftest import require_shared_data

    root = require_shared_data("nmnist-small")
    out = tmp_path / "nmnist"
    code = main([
        "train", "--dataset", "nmnist", "--data-dir", str(root), "--train-samples", "40",
        "--test-samples", "20", "--epochs", "1", "-T", "4", "--model-kwargs", "channels=4",
        "--output-dir", str(out), "--no-progress", "--plots", "off",
    ])  # fmt: skip
    assert code == 0
    config = load_config_file(out / "config.toml")
    assert (config["model"], config["T"], config["batch_size"]) == ("plif_nmnist", 4, 16)
    row = read_csv(out / "metrics.csv")[0]
    assert 0.0 <= float(row["test_acc"]) <= 1.0 and float(row["train_rate"]) > 0.0
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"test accuracy: {float(row['test_acc']):.4f}" in text
    assert "20 of the 100 test samples, as the run tested" in text
    # the whole test split of the subset (100 samples) on request
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--test-samples", "all",
                 "--json", str(tmp_path / "all.json"), "--no-progress"]) == 0  # fmt: skip
    result = json.loads((tmp_path / "all.json").read_text())
    assert result["samples"] == result["split_samples"] == 100
    assert "all 100 test samples" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--test-samples", "10",
                 "--no-progress"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "10 of the 100 test samples (--test-samples)" in text and "as the run" not in text
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--data-dir", str(tmp_path)]) == 2
    assert f"--data-dir {tmp_path}: N-MNIST not found" in capsys.readouterr().err


def test_progress_bars_show_loss_accuracy_and_firing_rate(tmp_path, monkeypatch):
    import tqdm as tqdm_module

    import spikeflow.training.loop as loop_module
    import spikeflow.training.trainer_steps as steps_module

    shown: list[tuple[str, dict[str, str]]] = []

    class RecordingBar(tqdm_module.tqdm):
        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            shown.append((self.desc, dict(kwargs)))
            super().set_postfix(ordered_dict, refresh, **kwargs)

    monkeypatch.setattr(steps_module, "tqdm", RecordingBar)
    monkeypatch.setattr(loop_module, "tqdm", RecordingBar)
    Trainer(tiny(tmp_path, "bars", epochs=1, progress=True), log=None).fit()
    row = read_csv(tmp_path / "bars" / "metrics.csv")[0]
    train = [values for desc, values in shown if desc == "epoch 1/1"]
    test = [values for desc, values in shown if desc == "test"]
    assert train and set(train[-1]) == {"loss", "acc", "rate"}
    assert test and set(test[-1]) == {"loss", "acc"}
    # the last values shown are the epoch's logged numbers
    assert float(train[-1]["loss"]) == pytest.approx(float(row["train_loss"]), abs=1e-4)
    assert float(train[-1]["acc"]) == pytest.approx(float(row["train_acc"]), abs=1e-3)
    assert float(train[-1]["rate"]) == pytest.approx(float(row["train_rate"]), abs=1e-3)
    assert float(train[-1]["rate"]) > 0
    assert float(test[-1]["acc"]) == pytest.approx(float(row["test_acc"]), abs=1e-3)


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """The write goes to a temporary file moved into place: a crash while writing epoch 2's
    checkpoint leaves epoch 1's intact and no temporary file behind."""
    real_save, calls = torch.save, []

    def save_then_crash(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", save_then_crash)
    with pytest.raises(OSError, match="No space left"):
        Trainer(tiny(tmp_path, "crash"), log=None).fit()
    monkeypatch.undo()
    run = tmp_path / "crash"
    payload = load_checkpoint(run / "last.pt")
    assert (payload["epoch"], payload["step"]) == (1, 0)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_amp_bf16_runs_the_forward_in_bfloat16_and_keeps_float32_weights(tmp_path, monkeypatch):
    import spikeflow.training.trainer as trainer_module

    dtypes: list[torch.dtype] = []
    real_build = trainer_module.build_model

    def build_and_watch(config, info):
        model = real_build(config, info)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        return model

    monkeypatch.setattr(trainer_module, "build_model", build_and_watch)
    result = Trainer(tiny(tmp_path, "bf16", amp="bf16", epochs=1), log=None).fit()
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert math.isfinite(result.history[0]["train_loss"])
    model = load_checkpoint(tmp_path / "bf16" / "last.pt")["model"]
    assert {t.dtype for t in model.values() if t.is_floating_point()} == {torch.float32}


def test_a_neuron_chosen_by_name_gets_T_when_it_needs_it(tmp_path):
    result = Trainer(tiny(tmp_path, "psn", neuron="psn", epochs=1), log=None).fit()
    assert result.epochs_completed == 1
    model = load_checkpoint(tmp_path / "psn" / "last.pt")["model"]
    # a PSN layer holds a T x T weight: T = 2, the run's T
    psn_weights = [t for k, t in model.items() if k.endswith(".weight") and t.shape == (2, 2)]
    assert len(psn_weights) == 4


def test_num_classes_prefers_classes_then_num_classes_then_labels():
    from spikeflow.training.data import dataset_num_classes

    class Named:
        classes = ("a", "b", "c")
        num_classes = 7
        targets = (0, 1)

    class Counted:
        num_classes = 5
        targets = (0, 1)

    class Labelled:
        targets = (0, 3, 1)

    class Unknown:
        pass

    named_on_instance = Counted()
    named_on_instance.classes = ["x", "y", "z", "w"]  # set by the constructor (DVS-Lip)
    assert dataset_num_classes(Named()) == 3
    assert dataset_num_classes(named_on_instance) == 4
    assert dataset_num_classes(Counted()) == 5
    assert dataset_num_classes(Labelled()) == 4
    with pytest.raises(ConfigurationError, match="cannot tell how many classes Unknown has"):
        dataset_num_classes(Unknown(), "Unknown")


def test_a_dataset_with_num_classes_only_sizes_the_model(tmp_path, monkeypatch):
    """A spikeflow.data dataset without ``classes``: ``num_classes`` (3) decides the output
    size, not the labels seen (0 and 1); the PLIF net is sized for its 6x6 frames."""
    from spikeflow.data import datasets as datasets_module

    class TinyFrames(datasets_module.NeuromorphicDataset):
        sensor_size = (6, 6, 2)
        num_classes = 3

        def _find_samples(self):
            return [(self.root / f"{i}.bin", i % 2) for i in range(8 if self.train else 4)]

        def __getitem__(self, index):
            generator = torch.Generator().manual_seed(index + 100 * self.train)
            frames = (torch.rand(2, 2, 6, 6, generator=generator) < 0.3).float()
            return frames, self.samples[index][1]

    class WideFrames(TinyFrames):
        sensor_size = (8, 6, 2)  # W x H x C: not square

    monkeypatch.setattr(datasets_module, "TinyFrames", TinyFrames, raising=False)
    monkeypatch.setattr(datasets_module, "WideFrames", WideFrames, raising=False)
    wide = tiny(tmp_path, "wide", dataset="wideframes", data_dir=str(tmp_path),
                model="plif_nmnist", train_samples=None, test_samples=None)  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"frames are 6x8 \(H x W\).*square inputs"):
        Trainer(wide, log=None).fit()
    config = tiny(tmp_path, "tinyframes", dataset="tinyframes", data_dir=str(tmp_path),
                  model="plif_nmnist", model_kwargs={"channels": 4}, batch_size=4, epochs=1,
                  train_samples=None, test_samples=None)  # fmt: skip
    Trainer(config, log=None).fit()
    model = load_checkpoint(tmp_path / "tinyframes" / "last.pt")["model"]
    linear = [t for k, t in model.items() if k.endswith("weight") and t.dim() == 2]
    assert linear[0].shape[1] == 4 * 1 * 1  # 6x6 -> 3x3 -> 1x1 after the two pools
    assert linear[-1].shape[0] == 3 * 10  # 3 classes, 10 voting neurons each


def test_ctrl_c_on_the_command_line_saves_and_exits_with_130(tmp_path):
    """A real ``python -m spikeflow train`` process gets SIGINT mid-run: it finishes the
    step, saves ``last.pt`` with its position, says how to resume, exits with 130."""
    import subprocess
    import sys
    import time

    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "spikeflow", "train", "--epochs", "1000", "-T", "2",
           "--train-samples", "192", "--test-samples", "32", "--model-kwargs", "channels=4",
           "hidden=16", "--output-dir", str(out), "--no-progress", "--plots", "off",
           "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.csv").exists():  # written after the first epoch
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no epoch finished in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Ctrl-C: stopping after this step and saving a checkpoint" in stdout
    assert f"spikeflow train --resume {out / 'last.pt'}" in stdout
    assert "Traceback" not in stderr
    payload = load_checkpoint(out / "last.pt")
    assert 1 <= payload["epoch"] < 1000 and payload["global_step"] >= 6


def test_download_option_reaches_the_dataset(tmp_path, monkeypatch, capsys):
    """`--download` is passed on as download=True (the dataset then fetches and checks)."""
    from spikeflow.data.datasets import DatasetNotFoundError
    from spikeflow.training import data as training_data

    seen = []

    class Fetchable:
        downloadable = True

        def __init__(self, root, train=True, download=False, **kwargs):
            seen.append(download)
            raise DatasetNotFoundError("no network in this test")

    monkeypatch.setattr(training_data, "_neuromorphic_classes", lambda: {"fetchable": Fetchable})
    for flag, expected in (([], False), (["--download"], True)):
        args = ["--dataset", "fetchable", "--model", "plif_nmnist", "--data-dir", str(tmp_path)]
        code = main(["train", *args, "--no-progress", "--output-dir", str(tmp_path / "o"), *flag])
        assert code == 2
        assert seen[-1] is expected
        # the hint to pass --download only where it was not passed, before the message
        hint = f"--data-dir {tmp_path} (from the command line: pass --download to fetch it): "
        assert (hint in capsys.readouterr().err) is not expected


@pytest.mark.parametrize("dataset", ["asldvs", "navgesture", "ncars"])
def test_download_is_refused_for_a_dataset_that_declares_it_cannot_download(
    tmp_path, capsys, dataset
):
    # ASL-DVS took --download (a `download` argument it inherits and ignores), then
    # advised --download in its not-found error.
    args = ["--dataset", dataset, "--model", "plif_nmnist", "--data-dir", str(tmp_path)]
    assert main(["train", *args, "--download", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--download: " in err and "cannot be downloaded automatically" in err
    assert "pass --download" not in err.lower()


def test_the_downloadable_datasets_are_those_the_docs_list():
    from spikeflow.training.data import _neuromorphic_classes

    found = {name for name, cls in _neuromorphic_classes().items() if cls.downloadable}
    assert found == {"nmnist", "ncaltech101", "cifar10dvs", "shd", "ssc", "fsdd", "speechcommands",
                     "ntidigits18", "bullying10k", "smnist"}  # fmt: skip
    docs = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    listed = (
        "N-MNIST, N-Caltech101, CIFAR10-DVS, SHD, SSC, FSDD, SpeechCommands, NTIDIGITS18, "
        "Bullying10K, SMNIST:"
    )
    assert f"where its host allows it ({listed}" in docs


class _MaskLambdas:
    """Records the masked PSNs' λ at the first step of every epoch."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_step_end(self, trainer, epoch, step, loss):
        if step == 0:
            values = {float(m.mask_lambda) for m in trainer.model.modules()
                      if hasattr(m, "mask_lambda")}  # fmt: skip
            assert len(values) == 1
            self.seen.append(values.pop())


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("paper", [0.0, 1.0, 1.0]), ("linear", [1 / 3, 2 / 3, 1.0]), ("none", [0.0, 0.0, 0.0])],
)
def test_masked_psn_mask_follows_the_schedule(tmp_path, schedule, expected):
    # methods.md 4.3: the progressive mask lambda = min(1, 8 epoch / (epochs - 1)).
    record = _MaskLambdas()
    config = tiny(tmp_path, schedule, neuron="masked_psn", neuron_kwargs={"k": 2},
                  mask_schedule=schedule)  # fmt: skip
    Trainer(config, log=None, callbacks=[record]).fit()
    assert record.seen == pytest.approx(expected)
    saved = [float(v) for k, v in weights(tmp_path / schedule).items() if k.endswith("mask_lambda")]
    assert saved and all(v == pytest.approx(expected[-1]) for v in saved)


def test_config_files_hold_any_unicode_and_resume_checks_a_config_file(tmp_path, capsys):
    # An emoji in a path: JSON's surrogate-pair escapes are not valid TOML.
    values = {"data_dir": str(tmp_path / "data 😀"), "epochs": 2}
    (tmp_path / "u.toml").write_text(dump_toml(values), encoding="utf-8")
    assert load_config_file(tmp_path / "u.toml") == values
    # --resume with --config: the file's values are checked like flags (not ignored).
    Trainer(tiny(tmp_path, "cut", stop_after=1), log=None).fit()
    (tmp_path / "other.toml").write_text(dump_toml({"lr": 0.5}))
    code = main(["train", "--resume", str(tmp_path / "cut"), "--config",
                 str(tmp_path / "other.toml"), "--no-progress"])  # fmt: skip
    assert code == 2 and "lr" in capsys.readouterr().err


def test_bad_eval_and_run_options_are_named(tmp_path, capsys):
    from spikeflow.training.distributed import pick_device
    from spikeflow.training.evaluation import evaluate_checkpoint

    with pytest.raises(ConfigurationError, match="workers must be"):
        evaluate_checkpoint(tmp_path / "none.pt", workers=-1)
    with pytest.raises(ConfigurationError, match="batch_size must be"):
        evaluate_checkpoint(tmp_path / "none.pt", batch_size=-3)
    with pytest.raises(ConfigurationError, match="'cpu' or 'cuda'"):
        pick_device("meta")
    (tmp_path / "a-file").write_text("")
    code = main(["train", "--output-dir", str(tmp_path / "a-file"), "--epochs", "1",
                 "--no-progress"])  # fmt: skip
    assert code == 2 and "not a folder" in capsys.readouterr().err
    # A refused run leaves no empty output folder behind.
    code = main(["train", "--model", "resnet9000", "--output-dir", str(tmp_path / "refused"),
                 "--no-progress"])  # fmt: skip
    assert code == 2 and not (tmp_path / "refused").exists()


def test_a_null_in_kwargs_survives_the_config_file(tmp_path):
    # TOML has no null: v_reset = None (soft reset) used to be dropped, so a rerun from
    # config.toml trained another network (hard reset).
    source = tmp_path / "run.json"
    values = {**TINY, "epochs": 1, "neuron": "lif", "neuron_kwargs": {"v_reset": None, "tau": 2.0}}
    source.write_text(json.dumps(values))
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", "--config", str(source), "--output-dir", str(one)]) == 0
    written = config_from_dict(load_config_file(one / "config.toml"))
    assert written.neuron_kwargs == {"v_reset": None, "tau": 2.0}
    assert main(["train", "--config", str(one / "config.toml"), "--output-dir", str(two)]) == 0
    assert metrics(one) == metrics(two)
    assert_same_weights(weights(one), weights(two))


def test_evaluation_opens_only_the_test_split(tmp_path):
    # `spikeflow eval` on a machine that holds only the test split of N-MNIST.
    from conftest import require_shared_data
    from spikeflow.data.datasets import DatasetNotFoundError
    from spikeflow.training.data import build_datasets

    shared = require_shared_data("nmnist-small")
    (tmp_path / "Test").symlink_to(shared / "Test")
    config = config_from_dict({"dataset": "nmnist", "data_dir": str(tmp_path), "T": 4,
                               "test_samples": 10})  # fmt: skip
    train, test, info = build_datasets(config, with_train=False)
    assert train is None and len(test) == 10 and info.num_classes == 10
    with pytest.raises(DatasetNotFoundError, match="Train"):
        build_datasets(config)


# -- config value checks, eval's --json and run folders (review 2) ----------------------


def test_bool_config_keys_must_be_true_or_false(tmp_path, capsys):
    # A config file's overwrite = "false" (a string) used to act as true.
    import dataclasses

    bools = {f.name for f in dataclasses.fields(TrainConfig) if f.type == "bool"}
    assert bools == {
        "overwrite",
        "progress",
        "tensorboard",
        "download",
        "online",
        "compile",
        "recompute",
        "decolle",
        "no_decay_norm_bias",
        "model_ema",
        "sync_bn",
        "fsdp",
        "ra_sampler",
        "teacher_ema",
    }
    for name in sorted(bools):
        for value in ("false", "no", 0, 1, None):
            with pytest.raises(ConfigurationError, match=rf"{name} must be true or false, got "
                                                         rf"{re.escape(repr(value))}"):  # fmt: skip
                config_from_dict({name: value}).validate()
        needs = {"teacher_ema": {"teacher": str(tmp_path / "teacher")}}.get(name, {})
        config_from_dict({name: True, **needs}).validate()
    Trainer(tiny(tmp_path, "precious", epochs=1, seed=7), log=None).fit()
    (tmp_path / "c.json").write_text(json.dumps({**TINY, "epochs": 1, "overwrite": "false"}))
    code = main(["train", "--config", str(tmp_path / "c.json"),
                 "--output-dir", str(tmp_path / "precious")])  # fmt: skip
    assert code == 2
    assert "overwrite must be true or false, got 'false'" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "precious" / "last.pt")["config"]["seed"] == 7


def test_resume_with_a_config_file_holding_an_unknown_key_names_it(tmp_path, capsys):
    Trainer(tiny(tmp_path, "run", epochs=2, stop_after=1), log=None).fit()
    (tmp_path / "typo.toml").write_text("epochz = 2\n")
    code = main(["train", "--resume", str(tmp_path / "run"), "--config",
                 str(tmp_path / "typo.toml"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("spikeflow train: error: unknown config key(s) ['epochz']; valid keys")
    assert len(read_csv(tmp_path / "run" / "metrics.csv")) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 99999999999999999999}, r"seed must be an integer from 0 to 2\*\*32 - 1 "
                                         r"\(4294967295\), got 99999999999999999999"),
        ({"seed": 2**32}, r"seed must be an integer .*got 4294967296"),
        ({"seed": -1}, r"seed must be an integer .*got -1"),
        ({"seed": 1.5}, r"seed must be an integer .*got 1\.5"),
        ({"output_dir": 5}, r"output_dir must be a string, got 5"),
        ({"loss": ["mse"]}, r"loss must be a string, got \['mse'\]"),
        ({"data_dir": 5}, r"data_dir must be a string, got 5"),
        ({"cache_dir": True}, r"cache_dir must be a string, got True"),
        ({"model": 5}, r"model must be a string, got 5"),
        ({"neuron": ["lif"]}, r"neuron must be a string, got \['lif'\]"),
        ({"device": 0}, r"device must be a string, got 0"),
        ({"optimizer": ["sgd"]}, r"optimizer must be a string, got \['sgd'\]"),
        ({"schedule": 1}, r"schedule must be a string, got 1"),
        ({"plots": False}, r"plots must be a string, got False"),
        ({"lr": True}, r"lr must be a finite number >= 0, got True"),
        ({"weight_decay": False}, r"weight_decay must be a finite number >= 0, got False"),
        ({"momentum": 5}, r"momentum must be >= 0 and < 1, got 5"),
        ({"momentum": 1.0}, r"momentum must be >= 0 and < 1, got 1\.0"),
    ],
)  # fmt: skip
def test_bad_config_values_exit_with_status_2_naming_the_key(tmp_path, capsys, change, message):
    (tmp_path / "c.json").write_text(json.dumps({**TINY, "epochs": 1, **change}))
    args = ["train", "--config", str(tmp_path / "c.json")]
    if "output_dir" not in change:
        args += ["--output-dir", str(tmp_path / "out")]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("spikeflow train: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_seed_on_the_command_line_is_range_checked_and_the_largest_seed_trains(tmp_path, capsys):
    args = ["train", "--epochs", "1", "--no-progress", "--plots", "off",
            "--train-samples", "64", "--test-samples", "32", "--model-kwargs", "channels=8",
            "hidden=32", "-T", "2", "--device", "cpu"]  # fmt: skip
    code = main([*args, "--seed", "99999999999999999999", "--output-dir", str(tmp_path / "a")])
    assert code == 2 and "seed must be an integer" in capsys.readouterr().err
    # every seed the check lets through trains (the trainer derives larger seeds from it)
    assert main([*args, "--seed", str(2**32 - 1), "--output-dir", str(tmp_path / "b")]) == 0
    assert load_checkpoint(tmp_path / "b" / "last.pt")["config"]["seed"] == 2**32 - 1


def test_path_options_take_a_pathlib_path_in_the_python_api(tmp_path):
    from spikeflow.training.config import resolve

    config = resolve(TrainConfig(output_dir=tmp_path / "run", cache_dir=tmp_path / "cache"))
    assert config.output_dir == str(tmp_path / "run")
    assert config.cache_dir == str(tmp_path / "cache")


def test_eval_checks_the_json_destination_before_evaluating(tmp_path, capsys, monkeypatch):
    import spikeflow.training.evaluation as evaluation

    Trainer(tiny(tmp_path, "run", epochs=1), log=None).fit()
    calls = []
    real = evaluation.evaluate_checkpoint
    monkeypatch.setattr(evaluation, "evaluate_checkpoint",
                        lambda *a, **k: calls.append(1) or real(*a, **k))  # fmt: skip
    checkpoint = str(tmp_path / "run" / "last.pt")
    missing = tmp_path / "no-such-dir" / "r.json"
    assert main(["eval", "--checkpoint", checkpoint, "--no-progress", "--json", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spikeflow eval: error: --json {missing}: the folder ")
    assert "does not exist" in err and not calls
    assert main(["eval", "--checkpoint", checkpoint, "--no-progress", "--json",
                 str(tmp_path)]) == 2  # fmt: skip
    assert "is a folder" in capsys.readouterr().err and not calls
    # a good destination: written, and no temporary file left beside it
    (tmp_path / "out").mkdir()
    assert main(["eval", "--checkpoint", checkpoint, "--no-progress", "--json",
                 str(tmp_path / "out" / "r.json")]) == 0  # fmt: skip
    assert calls and json.loads((tmp_path / "out" / "r.json").read_text())["samples"] == 96
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.json"]


def test_eval_json_is_written_atomically(tmp_path, monkeypatch):
    from spikeflow.training import evaluation

    target = tmp_path / "r.json"
    evaluation.write_json_atomic({"a": 1}, target)
    assert json.loads(target.read_text()) == {"a": 1}

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluation.os, "replace", fail)
    with pytest.raises(ConfigurationError, match=r"--json .*r\.json: cannot write it: .*space"):
        evaluation.write_json_atomic({"a": 2}, target)
    assert json.loads(target.read_text()) == {"a": 1}  # the earlier file stays whole
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # and no temporary


def test_eval_json_writes_non_finite_numbers_as_null(tmp_path):
    from spikeflow.training import evaluation

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    nan, inf = float("nan"), float("inf")
    data = {"test_rate": nan, "layers": [{"v_mean": nan, "v_std": -inf, "spikes": 2.5}],
            "pair": (1, inf), "name": "x", "n": 3}  # fmt: skip
    target = evaluation.write_json_atomic(data, tmp_path / "r.json")
    assert json.loads(target.read_text(), parse_constant=refuse) == {
        "test_rate": None, "layers": [{"v_mean": None, "v_std": None, "spikes": 2.5}],
        "pair": [1, None], "name": "x", "n": 3,
    }  # fmt: skip
    assert math.isnan(data["test_rate"])  # the caller's data is left as it was


def test_eval_takes_a_run_folder(tmp_path, capsys):
    Trainer(tiny(tmp_path, "run", epochs=1), log=None).fit()
    run = tmp_path / "run"
    assert main(["eval", "--checkpoint", str(run), "--no-progress", "--json",
                 str(tmp_path / "r.json")]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{run} is a run folder: evaluating its best.pt")
    assert lines[1].startswith(f"{run / 'best.pt'}: plif_digits (T=2) after epoch 1 of 1")
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["checkpoint"] == str(run / "best.pt") and result["run_folder"] == str(run)
    (run / "best.pt").unlink()  # without best.pt: its last.pt
    assert main(["eval", "--checkpoint", str(run), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"{run} is a run folder: evaluating its last.pt")
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--checkpoint", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "is a folder without best.pt or last.pt" in capsys.readouterr().err
    # the run as `spikeflow export RUN` takes it: the same evaluation as --checkpoint
    assert main(["eval", str(run), "--no-progress", "--json", str(tmp_path / "p.json")]) == 0
    assert capsys.readouterr().out.startswith(f"{run} is a run folder: evaluating its last.pt")
    positional = json.loads((tmp_path / "p.json").read_text())
    assert positional["checkpoint"] == str(run / "last.pt")
    assert positional["test_acc"] == json.loads((tmp_path / "r.json").read_text())["test_acc"]
    for argv, named in (
        ([], "one of the arguments RUN --checkpoint is required"),
        ([str(run), "--checkpoint", str(run)], "not allowed with argument RUN"),
    ):
        with pytest.raises(SystemExit):
            main(["eval", *argv])
        assert named in capsys.readouterr().err


def test_a_failed_config_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno

    from spikeflow.training.config import save_config

    target = tmp_path / "config.toml"
    save_config(tiny(tmp_path, "x"), target)
    before = target.read_text()

    def disk_full(fd: int) -> None:  # once the temporary file is written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_config(tiny(tmp_path, "x", seed=3), target)
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]
    assert target.read_text() == before


def test_config_toml_leaves_out_stop_after(tmp_path):
    # A rerun of a --stop-after run's config.toml trains every epoch of it.
    Trainer(tiny(tmp_path, "a", epochs=2, stop_after=1), log=None).fit()
    written = load_config_file(tmp_path / "a" / "config.toml")
    assert "stop_after" not in written and written["epochs"] == 2
    assert main(["train", "--config", str(tmp_path / "a" / "config.toml"),
                 "--output-dir", str(tmp_path / "b")]) == 0  # fmt: skip
    assert [int(r["epoch"]) for r in metrics(tmp_path / "b")] == [1, 2]


# -- Python's True/False/None in K=V options, quiet resumes, eval's hint (review 3) -----

#: The tiny run's options on the command line.
TINY_ARGS = ["--train-samples", "192", "--test-samples", "96", "--batch-size", "32", "-T", "2",
             "--no-progress", "--plots", "off", "--device", "cpu"]  # fmt: skip


def test_kwargs_options_read_pythons_constants():
    # False used to be the string 'False', which is truthy.
    parsed = parse_kwargs(["batch_norm=False", "detach_reset=True", "v_reset=None", "a=null",
                           "b=false", "c=none", "d=FALSE"], "--model-kwargs")  # fmt: skip
    assert parsed == {"batch_norm": False, "detach_reset": True, "v_reset": None, "a": None,
                      "b": False, "c": "none", "d": "FALSE"}  # fmt: skip


def test_a_bool_kwarg_does_what_it_says_or_is_refused(tmp_path, capsys):
    out = tmp_path / "no-bn"
    code = main(["train", *TINY_ARGS, "--epochs", "1", "--output-dir", str(out),
                 "--model-kwargs", "channels=8", "hidden=32", "batch_norm=False"])  # fmt: skip
    assert code == 0
    assert not [key for key in weights(out) if "running_mean" in key]  # no batch norm
    assert load_config_file(out / "config.toml")["model_kwargs"]["batch_norm"] is False
    # a value that is not a bool is an error naming the argument (it used to count as true)
    code = main(["train", *TINY_ARGS, "--epochs", "1", "--output-dir", str(tmp_path / "r1"),
                 "--neuron-kwargs", "learnable_threshold=yes"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "argument learnable_threshold must be true or false, got 'yes'" in err
    (tmp_path / "c.json").write_text(
        json.dumps({**TINY, "epochs": 1, "model_kwargs": {"batch_norm": "False"}})
    )
    code = main(["train", "--config", str(tmp_path / "c.json"),
                 "--output-dir", str(tmp_path / "r2")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "argument batch_norm must be true or false, got 'False' (str)" in err
    assert not (tmp_path / "r1" / "last.pt").exists() and not (tmp_path / "r2").exists()


def test_a_soft_reset_given_on_the_command_line_round_trips(tmp_path):
    # v_reset=None (soft reset) used to be the string 'None', refused by the neuron.
    from spikeflow.training.data import DataInfo
    from spikeflow.training.trainer import build_model

    args = ["train", *TINY_ARGS, "--epochs", "2", "--model-kwargs", "channels=8", "hidden=32",
            "--neuron", "lif", "--neuron-kwargs", "v_reset=None", "tau=2.0"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, "--output-dir", str(one), "--stop-after", "1"]) == 0
    config = config_from_dict(load_config_file(one / "config.toml"))
    assert config.neuron_kwargs == {"v_reset": None, "tau": 2.0}
    model = build_model(resolve(config), DataInfo(10, 1, (8, 8), static=True))
    lifs = [m for m in model.modules() if type(m).__name__ == "LIFNode"]
    assert lifs and all(m.v_reset is None for m in lifs)
    # a resume repeating the kwargs is no change; a rerun of config.toml is the same run
    assert main([*args, "--resume", str(one)]) == 0
    assert main(["train", "--config", str(one / "config.toml"), "--output-dir", str(two),
                 "--no-progress"]) == 0  # fmt: skip
    assert_same_weights(weights(one), weights(two))
    assert metrics(one) == metrics(two) and len(metrics(one)) == 2


def test_a_resume_after_the_last_step_of_the_first_epoch_is_exact_and_quiet(tmp_path):
    # It used to print torch's warning that the schedule "skips its first value" (the
    # scheduler stepped before any optimizer step of the resumed process).
    Trainer(tiny(tmp_path, "full"), log=None).fit()
    result = Trainer(tiny(tmp_path, "cut"), callbacks=[_Interrupt(0, 5)], log=None).fit()
    assert result.interrupted
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (0, 6)  # all 6 steps of epoch 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(config_for_resume(payload, {}), resume=payload, log=None,
                resume_dir=tmp_path / "cut").fit()  # fmt: skip
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "cut"))
    assert metrics(tmp_path / "full") == metrics(tmp_path / "cut")


def test_eval_does_not_suggest_the_download_option_it_lacks(tmp_path, capsys):
    Trainer(tiny(tmp_path, "a", epochs=1), log=None).fit()
    payload = load_checkpoint(tmp_path / "a" / "last.pt")
    payload["config"].update(dataset="nmnist", data_dir=str(tmp_path / "elsewhere"))
    save_checkpoint(payload, tmp_path / "nmnist.pt")
    assert main(["eval", "--checkpoint", str(tmp_path / "nmnist.pt"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "N-MNIST not found" in err and "download=True" not in err
    assert "spikeflow eval does not download; run spikeflow train --download to download" in err


def test_eval_of_a_digits_run_given_a_data_dir_does_not_advise_dataset(tmp_path, capsys):
    # It advised "also pass --dataset", an option spikeflow eval does not have.
    Trainer(tiny(tmp_path, "a", epochs=1), log=None).fit()
    args = ["eval", "--checkpoint", str(tmp_path / "a"), "--data-dir", str(tmp_path)]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--data-dir {tmp_path} was given, but the 'digits' dataset" in err
    assert "--dataset" not in err and "the run trained on the digits: leave it out" in err


# -- a run saved with a string where a bool goes still evaluates and resumes (review 6) --


def test_a_run_saved_with_a_string_bool_evaluates_and_resumes_as_it_ran(tmp_path, capsys):
    # Before K=V options read Python's False, `--neuron-kwargs detach_reset=False` saved
    # the string 'False' (config.toml and the checkpoint), which the neuron used as True.
    # eval and --resume of such a run refused it with no way out; they now read it as
    # the run did, with a warning, while new input (a rerun of config.toml) stays strict.
    from spikeflow.models.common import SavedRunWarning
    from spikeflow.training.evaluation import evaluate_checkpoint

    base = {**TINY, "epochs": 2, "neuron": "lif"}  # LIFNode's detach_reset defaults to False
    Trainer(tiny(tmp_path, "ran", base=base, neuron_kwargs={"detach_reset": True}), log=None).fit()
    old = tmp_path / "old"
    Trainer(tiny(tmp_path, "old", base=base, neuron_kwargs={"detach_reset": True},
                 stop_after=1), log=None).fit()  # fmt: skip
    expected = evaluate_checkpoint(old / "last.pt")
    # what the older spikeflow wrote
    payload = load_checkpoint(old / "last.pt")
    payload["config"]["neuron_kwargs"] = {"detach_reset": "False"}
    for name in ("last.pt", "best.pt"):
        save_checkpoint(payload, old / name)
    text = (old / "config.toml").read_text()
    assert "neuron_kwargs = {detach_reset = true}" in text
    (old / "config.toml").write_text(
        text.replace("{detach_reset = true}", '{detach_reset = "False"}')
    )
    with pytest.warns(SavedRunWarning, match=r"argument detach_reset is the string 'False'"):
        result = evaluate_checkpoint(old / "last.pt")
    assert (result["test_loss"], result["test_acc"]) == (
        expected["test_loss"], expected["test_acc"]
    )  # fmt: skip
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(old), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(
        "spikeflow eval: warning: neuron LIFNode: in the saved run, argument detach_reset "
        "is the string 'False', which is ambiguous"
    ), err
    assert "using True, what the run used" in err
    # --resume: the value the run used repeats it; False is a change, and says why
    resume = ["train", "--resume", str(old), "--no-progress"]
    assert main([*resume, "--neuron-kwargs", "detach_reset=False"]) == 2
    err = capsys.readouterr().err
    assert "fixed ['neuron_kwargs']" in err
    assert (
        "the checkpoint holds neuron_kwargs: detach_reset = 'False', which the run used as True"
        in err
    )
    assert main([*resume, "--neuron-kwargs", "detach_reset=True"]) == 0
    assert "warning: neuron LIFNode: in the saved run" in capsys.readouterr().err
    # it trained on as it had: the same weights as the run that never stopped
    assert_same_weights(weights(tmp_path / "ran"), weights(old))
    assert metrics(tmp_path / "ran") == metrics(old)
    # a rerun of config.toml is a new run: refused, saying what the old run used
    code = main(["train", "--config", str(old / "config.toml"),
                 "--output-dir", str(tmp_path / "rerun")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "argument detach_reset must be true or false, got 'False'" in err
    assert "that run used it as True" in err


def test_kwargs_options_read_pythons_constants_inside_lists_and_tables():
    # True/False/None used to be read only as a whole value: in the table the docs give
    # for a surrogate they were a TOML error. Quoted strings and keys stay as written.
    parsed = parse_kwargs(
        ['surrogate_function={name = "atan", spiking = False}', "channels=[32, None]",
         'nested={a = [True, {b = null}], "None" = None, True = "False", c = "x None y"}',
         "s=['None', \"True\", '''False''', \"a\\\"None\"]", "n=[1, 2] # None"],
        "--neuron-kwargs",
    )  # fmt: skip
    assert parsed == {
        "surrogate_function": {"name": "atan", "spiking": False},
        "channels": [32, None],
        "nested": {"a": [True, {"b": None}], "None": None, "True": "False", "c": "x None y"},
        "s": ["None", "True", "False", 'a"None'],
        "n": [1, 2],
    }
    with pytest.raises(ConfigurationError, match=r"True, False and None are read in lists"):
        parse_kwargs(["x=[Tru]"], "--neuron-kwargs")


@pytest.mark.parametrize(
    ("item", "column"),
    [("a={x = 2.O}", 7), ("a=[None, 2.O]", 9), ("a=[None, None, 1.2.3]", 17),
     ("a=[True, 2x]", 9)],
)  # fmt: skip
def test_a_toml_error_names_the_column_in_the_value_as_typed(item, column):
    # The parser's column counted its "v = " prefix and the long marker None becomes
    # ("column 48" for the 9th character).
    with pytest.raises(ConfigurationError, match=rf"\(at column {column} of the value\)$"):
        parse_kwargs([item], "--model-kwargs")


def test_a_resume_takes_a_bool_for_a_saved_string_only_where_an_old_parser_wrote_one():
    """Saved 'False'/'True' strings (the old K=V parser's) match the bool the run used;
    any other string (a surrogate name) given a bool on resume is a change, refused."""
    from spikeflow.training.config import TrainConfig, config_to_dict
    from spikeflow.training.trainer import config_for_resume

    saved = TrainConfig(neuron_kwargs={"surrogate_function": "atan", "detach_reset": "False"})
    payload = {"config": config_to_dict(saved)}
    config_for_resume(
        payload, {"neuron_kwargs": {"surrogate_function": "atan", "detach_reset": True}}
    )
    with pytest.raises(ConfigurationError, match="fixed \\['neuron_kwargs'\\]"):
        config_for_resume(
            payload, {"neuron_kwargs": {"surrogate_function": True, "detach_reset": True}}
        )


def test_eval_of_a_run_folder_notes_a_best_pt_the_run_no_longer_records(tmp_path):
    # After a rewind (--resume early.pt --overwrite) whose epochs never beat the
    # discarded ones, best.pt still holds a discarded epoch: eval now says so.
    from spikeflow.training.evaluation import evaluate_checkpoint, format_evaluation

    run = tmp_path / "run"
    Trainer(tiny(tmp_path, "run", epochs=2), log=None).fit()
    assert evaluate_checkpoint(run)["recorded_best_epoch"] is None  # consistent
    payload = load_checkpoint(run / "last.pt")
    held = load_checkpoint(run / "best.pt")["epoch"]
    payload["best"] = {"test_acc": 0.0, "epoch": held + 5}  # the rewound run's record
    save_checkpoint(payload, run / "last.pt")
    result = evaluate_checkpoint(run)
    assert result["recorded_best_epoch"] == held + 5
    assert (
        f"note: this best.pt holds epoch {held}, but the run's last.pt records epoch "
        f"{held + 5}" in format_evaluation(result)
    )


def test_resuming_a_finished_run_says_there_is_nothing_to_train(tmp_path, capsys):
    Trainer(tiny(tmp_path, "done", epochs=1), log=None).fit()
    before = weights(tmp_path / "done")
    assert main(["train", "--resume", str(tmp_path / "done"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nothing to train: the resumed run has done 1 of its 1 epochs" in out
    assert_same_weights(before, weights(tmp_path / "done"))
