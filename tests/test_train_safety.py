"""A training run loses no data and refuses early: atomic log rewrites, torn log tails,
reserved default folders, resumes into another folder, unwritable folders, checkpoints
that do not fit, and plots that cannot be written."""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import pytest

import train_runs
from spikeflow.errors import ConfigurationError
from spikeflow.training import (
    Trainer,
    config_for_resume,
    load_checkpoint,
    save_checkpoint,
    trainer,
)
from spikeflow.training.config import config_from_dict
from spikeflow.training.metric_logs import read_csv

pytest.importorskip("sklearn", reason="the digits need scikit-learn")

#: The shared tiny run, on fewer samples.
TINY = {**train_runs.TINY, "train_samples": 96, "test_samples": 64}
tiny = functools.partial(train_runs.tiny, base=TINY)


def epochs_logged(run: Path) -> list[str]:
    return [row["epoch"] for row in read_csv(run / "metrics.csv")]


def resume(run: Path, **overrides: object) -> Trainer:
    payload = load_checkpoint(run / "last.pt")
    return Trainer(config_for_resume(payload, overrides), resume=payload, log=None,
                   resume_dir=run)  # fmt: skip


def test_a_failed_log_rewrite_on_resume_keeps_the_log(tmp_path, monkeypatch):
    Trainer(tiny(tmp_path, "a", stop_after=2), log=None).fit()
    run = tmp_path / "a"
    before = (run / "metrics.csv").read_bytes()
    # The first file a resume writes is its rewrite of the log (a temporary file, then
    # a rename): the disk fills up once that temporary is written.
    real = os.fsync

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        resume(run).fit()
    monkeypatch.setattr(os, "fsync", real)
    assert (run / "metrics.csv").read_bytes() == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    resume(run).fit()
    assert epochs_logged(run) == ["1", "2", "3"]


def test_a_torn_log_tail_does_not_block_the_resume(tmp_path):
    Trainer(tiny(tmp_path, "a", stop_after=2), log=None).fit()
    run = tmp_path / "a"
    with open(run / "metrics.csv", "ab") as handle:
        handle.write(b"\0" * 300)  # what a power loss can leave
    with open(run / "layers.csv", "ab") as handle:
        handle.write(b"3,tra")
    resume(run).fit()
    assert epochs_logged(run) == ["1", "2", "3"]
    assert {row["epoch"] for row in read_csv(run / "layers.csv")} == {"1", "2", "3"}


def test_a_resume_into_another_folder_keeps_the_history(tmp_path):
    Trainer(tiny(tmp_path, "a", stop_after=2), log=None).fit()
    result = resume(tmp_path / "a", output_dir=str(tmp_path / "b")).fit()
    assert result.epochs_completed == 3
    b = tmp_path / "b"
    assert epochs_logged(b) == ["1", "2", "3"]
    assert {row["epoch"] for row in read_csv(b / "layers.csv")} == {"1", "2", "3"}
    assert (b / "best.pt").is_file()
    # without the source folder's logs, metrics.csv starts from the checkpoint's rows
    payload = load_checkpoint(tmp_path / "a" / "last.pt")
    payload["epoch"], payload["history"] = 2, payload["history"][:2]
    lone = tmp_path / "lone"
    save_checkpoint(payload, lone / "last.pt")
    resume(lone, output_dir=str(tmp_path / "c")).fit()
    assert epochs_logged(tmp_path / "c") == ["1", "2", "3"]


def test_the_default_folder_is_reserved_atomically(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names: list[str] = []
    threads = [threading.Thread(target=lambda: names.append(
        trainer._reserve_default_output_dir("digits"))) for _ in range(6)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 6 and all(Path(n).is_dir() for n in names)
    # a run refused after the reservation leaves no folder behind
    for n in names:
        Path(n).rmdir()
    bad = config_from_dict({**TINY, "model_kwargs": {"no_such_argument": 1}})
    with pytest.raises(ConfigurationError):
        Trainer(bad, log=None).fit()
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_an_unusable_output_folder_is_refused_before_any_work(tmp_path, monkeypatch, where):
    if where == "under_a_file":
        (tmp_path / "file").write_text("x")
        out, match = tmp_path / "file" / "run", "is a file"
    else:
        (tmp_path / "ro").mkdir()
        monkeypatch.setattr(trainer.os, "access", lambda path, mode: Path(path).name != "ro")
        out, match = tmp_path / "ro" / "run", "not writable"

    def no_data(*args, **kwargs):
        raise AssertionError("the dataset was read before the folder was checked")

    monkeypatch.setattr(trainer, "build_datasets", no_data)
    with pytest.raises(ConfigurationError, match=match):
        Trainer(config_from_dict({**TINY, "output_dir": str(out)}), log=None).fit()


def test_checkpoint_weights_that_do_not_fit_name_the_checkpoint(tmp_path):
    Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    payload = load_checkpoint(tmp_path / "a" / "last.pt")
    payload["config"]["model_kwargs"] = {"channels": 4, "hidden": 32}  # as if edited
    edited = tmp_path / "edited"
    save_checkpoint(payload, edited / "last.pt")
    with pytest.raises(ConfigurationError, match=r"edited: the checkpoint's weights do not fit"):
        resume(edited, output_dir=str(edited)).fit()
    del payload["model"]
    save_checkpoint(payload, edited / "last.pt")
    with pytest.raises(ConfigurationError, match=r"lacks \['model'\]"):
        load_checkpoint(edited / "last.pt")
    (edited / "empty.pt").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"cannot be loaded \(truncated or damaged\?\)"):
        load_checkpoint(edited / "empty.pt")


def test_a_plot_that_cannot_be_written_does_not_fail_the_run(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.figure

    real = matplotlib.figure.Figure.savefig

    def disk_full(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)
        with open(path, "r+b") as handle:
            handle.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", disk_full)
    messages: list[str] = []
    result = Trainer(tiny(tmp_path, "a", epochs=1, plots="on"), log=messages.append).fit()
    assert result.epochs_completed == 1 and result.plots == []
    assert any("plots not written" in m for m in messages)
    run = tmp_path / "a"
    assert not [p.name for p in run.iterdir() if p.suffix == ".png" or ".tmp" in p.name]
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


@pytest.mark.parametrize("value", [8.5, "eight", -8])
def test_a_model_argument_the_constructor_rejects_names_it(tmp_path, value):
    config = tiny(tmp_path, "a", model_kwargs={"channels": value, "hidden": 32})
    with pytest.raises(
        ConfigurationError, match=rf"channels must be a positive integer, got {value!r}"
    ):
        Trainer(config, log=None).fit()
    assert not (tmp_path / "a").exists()


def test_a_constructor_error_of_another_type_is_named_with_the_model_arguments(tmp_path):
    # plif_digits checks its sizes itself; a TypeError of the constructor (a dropout
    # given as a string, in its range comparison) comes back with the model's arguments.
    config = tiny(tmp_path, "a", model_kwargs={"hidden": 32, "dropout": "0.5"})
    with pytest.raises(ConfigurationError, match=r"model 'plif_digits' cannot be built with"):
        Trainer(config, log=None).fit()
    assert not (tmp_path / "a").exists()


def test_eval_of_weights_that_do_not_fit_names_the_checkpoint(tmp_path):
    from spikeflow.training.evaluation import evaluate_checkpoint

    Trainer(tiny(tmp_path, "a", epochs=1), log=None).fit()
    payload = load_checkpoint(tmp_path / "a" / "last.pt")
    payload["config"]["model_kwargs"] = {"channels": 4, "hidden": 32}
    save_checkpoint(payload, tmp_path / "edited.pt")
    with pytest.raises(ConfigurationError, match=r"edited\.pt: the checkpoint's weights do not"):
        evaluate_checkpoint(tmp_path / "edited.pt", progress=False)


def test_resume_from_an_older_checkpoint_into_its_own_folder_is_refused(tmp_path):
    from spikeflow.cli import main

    Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    run = tmp_path / "a"
    (run / "early.pt").write_bytes((run / "last.pt").read_bytes())  # like a best.pt
    resume(run).fit()
    last = (run / "last.pt").read_bytes()
    args = ["train", "--resume", str(run / "early.pt"), "--no-progress"]
    assert main(args) == 2
    assert (run / "last.pt").read_bytes() == last and epochs_logged(run) == ["1", "2", "3"]
    assert main([*args, "--output-dir", str(tmp_path / "branch")]) == 0
    assert epochs_logged(tmp_path / "branch") == ["1", "2", "3"]
    # repeating a model argument with its own value is no change on a resume
    assert main(["train", "--resume", str(run), "--no-progress",
                 "--model-kwargs", "channels=8"]) == 0  # fmt: skip


@pytest.mark.parametrize("how", ["hard link", "copy"])
def test_resume_from_a_best_pt_of_the_last_epoch_is_no_rewind(tmp_path, capsys, how):
    # best.pt of the last epoch holds what last.pt holds (a hard link, or a copy where the
    # file system has none): it used to be refused as replacing a "newer" last.pt.
    from spikeflow.cli import main

    Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    run = tmp_path / "a"
    assert os.path.samefile(run / "best.pt", run / "last.pt")  # epoch 1 is the best so far
    if how == "copy":
        (run / "best.pt").unlink()
        (run / "best.pt").write_bytes((run / "last.pt").read_bytes())
    assert main(["train", "--resume", str(run / "best.pt"), "--no-progress"]) == 0
    assert epochs_logged(run) == ["1", "2", "3"]
    # an older checkpoint is still refused, and the message says where both stand
    (run / "early.pt").write_bytes((run / "last.pt").read_bytes())
    payload = load_checkpoint(run / "early.pt")
    save_checkpoint({**payload, "epoch": 1, "step": 2}, run / "early.pt")
    assert main(["train", "--resume", str(run / "early.pt"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "(epoch 2, after step 2)" in err and "newer" in err and "(after epoch 3)" in err


def test_a_torchrun_restart_continues_the_run_from_its_folder(tmp_path, monkeypatch):
    from spikeflow.cli import main

    args = ["train", "--output-dir", str(tmp_path / "run"), "--no-progress", "--epochs", "3",
            "--train-samples", "96", "--test-samples", "64", "-T", "2",
            "--model-kwargs", "channels=8", "hidden=32", "--plots", "off"]  # fmt: skip
    assert main([*args, "--stop-after", "1"]) == 0  # the first attempt, stopped
    assert main(args) == 2  # an ordinary rerun is refused: the folder holds a run
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert main(args) == 0  # torchrun's restart of the same command continues it
    assert epochs_logged(tmp_path / "run") == ["1", "2", "3"]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3
