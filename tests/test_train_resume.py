"""Run folders and exact resumes: a new run refuses an earlier run's folder (unless
--overwrite), a resume continues bit for bit (from an epoch's end or its last step), and
checkpoints are written atomically."""

from __future__ import annotations

import warnings

import pytest
import torch

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.training import (
    Trainer,
    config_for_resume,
    load_checkpoint,
    load_config_file,
)
from spikeflow.training.metric_logs import read_csv
from train_runs import (
    Interrupt,
    assert_same_weights,
    assert_tiny_run_learns,
    metrics,
    tiny,
    weights,
)

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")


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


def test_a_resume_after_the_last_step_of_the_first_epoch_is_exact_and_quiet(tmp_path):
    # It used to print torch's warning that the schedule "skips its first value" (the
    # scheduler stepped before any optimizer step of the resumed process).
    Trainer(tiny(tmp_path, "full"), log=None).fit()
    result = Trainer(tiny(tmp_path, "cut"), callbacks=[Interrupt(0, 5)], log=None).fit()
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


def test_resuming_a_finished_run_says_there_is_nothing_to_train(tmp_path, capsys):
    Trainer(tiny(tmp_path, "done", epochs=1), log=None).fit()
    before = weights(tmp_path / "done")
    assert main(["train", "--resume", str(tmp_path / "done"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nothing to train: the resumed run has done 1 of its 1 epochs" in out
    assert_same_weights(before, weights(tmp_path / "done"))


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
