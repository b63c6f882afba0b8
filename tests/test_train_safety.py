"""A training run loses no data and refuses early: atomic log rewrites, torn log tails,
reserved default folders, resumes into another folder, unwritable folders, checkpoints
that do not fit, plots that cannot be written, best.pt written before last.pt, and
torchrun restarts."""

from __future__ import annotations

import functools
import os
import threading
import time
from pathlib import Path

import pytest

import train_runs
from spikeflow.errors import ConfigurationError
from spikeflow.training import (
    Trainer,
    config_for_resume,
    load_checkpoint,
    run_folder,
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
        run_folder.reserve_default_output_dir("digits")[0])) for _ in range(6)]  # fmt: skip
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


@pytest.mark.parametrize("where", ["name_too_long", "mkdir_fails"])
def test_an_output_folder_that_cannot_be_created_is_refused_with_status_2(
    tmp_path, monkeypatch, capsys, where
):
    # It passed the checks of the folders above it, then failed after the data were
    # read (a traceback, status 1); it is now created in the check.
    from spikeflow.cli import main

    out = tmp_path / ("a" * 300)
    if where == "mkdir_fails":  # as under /proc, where root may write but not create
        out = tmp_path / "proc" / "run"
        real_mkdir = Path.mkdir

        def refused(self, *args, **kwargs):
            if self.name in ("proc", "run"):
                raise FileNotFoundError(2, "No such file or directory", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", refused)

    def no_data(*args, **kwargs):
        raise AssertionError("the dataset was read before the folder was checked")

    monkeypatch.setattr(trainer, "build_datasets", no_data)
    assert main(["train", "--output-dir", str(out), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: output_dir {out} cannot be created" in err and "--output-dir" in err
    assert "Traceback" not in err


def test_a_refused_run_removes_the_output_folders_it_created(tmp_path, monkeypatch):
    out = tmp_path / "new" / "run"
    config = tiny(tmp_path, "x", output_dir=str(out), model_kwargs={"no_such_argument": 1})
    with pytest.raises(ConfigurationError, match="no_such_argument"):
        Trainer(config, log=None).fit()
    assert list(tmp_path.iterdir()) == []  # run/ and new/ were made for it: both gone
    # the default folder: runs/ was made for it too (it used to stay, empty)
    default = tmp_path / "cwd"
    default.mkdir()
    monkeypatch.chdir(default)
    config = tiny(tmp_path, "x", output_dir=None, model_kwargs={"no_such_argument": 1})
    with pytest.raises(ConfigurationError, match="no_such_argument"):
        Trainer(config, log=None).fit()
    assert list(default.iterdir()) == []


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
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")  # torchrun's first attempt
    assert main([*args, "--stop-after", "1"]) == 0  # the first attempt, stopped
    assert main(args) == 2  # an ordinary rerun is refused: the folder holds a run
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert main(args) == 0  # torchrun's restart of the same command continues it
    assert epochs_logged(tmp_path / "run") == ["1", "2", "3"]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3


def _stopped_then_restarted(args: list[str], monkeypatch, capsys) -> tuple[str, str]:
    """Run ``spikeflow args`` as torchrun's first attempt, stopped after epoch 2 (as a
    failing node would), then as its restart; the restart's (stdout, stderr)."""
    from spikeflow.cli import main

    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert main([*args, "--stop-after", "2"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert main(args) == 0
    return capsys.readouterr()


def test_a_torchrun_restart_of_a_resume_continues_from_what_its_first_attempt_wrote(
    tmp_path, monkeypatch, capsys
):
    # A restart used to go back to the --resume checkpoint: refused in another
    # --output-dir (it holds the first attempt's run), a rewind in the same folder.
    a, b = tmp_path / "a", tmp_path / "b"
    Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    (a / "early.pt").write_bytes((a / "last.pt").read_bytes())
    common = ["--no-progress", "--plots", "off"]
    into_b = ["train", "--resume", str(a), "--output-dir", str(b), *common]
    out, err = _stopped_then_restarted(into_b, monkeypatch, capsys)
    assert f"torchrun restart: continuing from {b / 'last.pt'}" in err
    assert "epoch   2/3" not in out and "epoch   3/3" in out  # epoch 2 is not redone
    assert epochs_logged(b) == ["1", "2", "3"]
    # --resume of an older checkpoint with --overwrite: the restart does not rewind again
    rewind = ["train", "--resume", str(a / "early.pt"), "--overwrite", *common]
    out, err = _stopped_then_restarted(rewind, monkeypatch, capsys)
    assert f"continuing from {a / 'last.pt'}" in err and "epoch   2/3" not in out
    assert epochs_logged(a) == ["1", "2", "3"]


def test_a_torchrun_restart_leaves_a_newer_last_pt_of_another_run_alone(tmp_path, monkeypatch):
    from spikeflow.cli import main

    Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    Trainer(tiny(tmp_path, "other", lr=0.01), log=None).fit()  # 3 epochs, another lr
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    # not continued: the folder holds an earlier run, refused as without the restart
    args = ["train", "--resume", str(tmp_path / "a"), "--output-dir", str(tmp_path / "other"),
            "--no-progress"]  # fmt: skip
    assert main(args) == 2
    assert load_checkpoint(tmp_path / "other" / "last.pt")["epoch"] == 3


def test_a_torchrun_restart_takes_only_what_its_own_launch_wrote(tmp_path, monkeypatch, capsys):
    # The first attempt of a rewind (--resume early.pt --overwrite) died in its first
    # step, before any checkpoint: the run's newer last.pt, of an earlier launch, was
    # continued, and the rewind silently dropped.
    from spikeflow.cli import main
    from spikeflow.training import run_folder

    a = tmp_path / "a"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "first-launch")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    (a / "early.pt").write_bytes((a / "last.pt").read_bytes())
    resume(a).fit()  # on to epoch 3
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "second-launch")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    rewind = ["train", "--resume", str(a / "early.pt"), "--overwrite", "--no-progress",
              "--plots", "off"]  # fmt: skip
    assert main(rewind) == 0
    out, err = capsys.readouterr()
    assert "continuing from" not in err and "epoch   2/3" in out  # rewound as asked
    assert epochs_logged(a) == ["1", "2", "3"]
    # A first attempt into another folder died before its first checkpoint, after it
    # had claimed the folder and copied the source run's logs there: its restart goes on.
    b = tmp_path / "b"
    b.mkdir()
    run_folder.claim_for_launch(b)
    run_folder.carry_history(a, b, best_epoch=1)
    into_b = ["train", "--resume", str(a / "early.pt"), "--output-dir", str(b),
              "--no-progress", "--plots", "off"]  # fmt: skip
    capsys.readouterr()
    assert main(into_b) == 0
    assert "torchrun restart: replaced what the first attempt wrote" in capsys.readouterr().out
    assert epochs_logged(b) == ["1", "2", "3"]
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "third-launch")  # another launch: refused
    assert main(into_b) == 2


def test_a_static_rendezvous_restart_matches_configs_of_older_checkpoints(tmp_path):
    # Without a launch identity (--master-port: run id "none") a restart compares the
    # configs; an older checkpoint lacks keys added since, which blocked every restart.
    from spikeflow.cli.restart import continues as _continues

    Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    earlier = load_checkpoint(tmp_path / "a" / "last.pt")
    resume(tmp_path / "a").fit()
    later = load_checkpoint(tmp_path / "a" / "last.pt")
    for key in ("mask_schedule", "download", "readout"):  # what an older spikeflow lacked
        earlier["config"].pop(key, None)
    assert _continues(later, earlier) and not _continues(earlier, later)
    later["config"]["lr"] = 0.5  # another run's
    assert not _continues(later, earlier)
    later["config"]["old_option"] = 1  # a config this spikeflow cannot read: not its run
    assert not _continues(later, earlier)


def test_the_launch_identity_of_each_rendezvous(monkeypatch):
    from spikeflow.training.run_folder import launch_identity

    assert launch_identity() is None  # outside torchrun
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "3f2a")
    assert launch_identity() == "rdzv:3f2a"
    # a static rendezvous (--master-port) on one node: the torchrun agent, the workers'
    # parent (a multi-node static launch had none, a rewind's restart continued the
    # run it replaced); its start time tells a reused pid apart
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    agent = launch_identity()
    assert agent is not None and agent.startswith("agent:") and f":{os.getppid()}:" in agent
    assert not agent.endswith(":?")
    monkeypatch.setenv("WORLD_SIZE", "4")  # two nodes: their agents share nothing
    assert launch_identity() is None


def test_a_resume_into_another_folder_carries_only_the_best_pt_it_records(tmp_path):
    # A best.pt of a later epoch than the resumed one, or one a rewind kept from the
    # epochs it discarded, was copied: the branch then held weights its run never had.
    from spikeflow.training import run_folder

    a = tmp_path / "a"
    Trainer(tiny(tmp_path, "a"), log=None).fit()  # 3 epochs
    held = load_checkpoint(a / "best.pt")["epoch"]
    for recorded, carried in ((held + 1, False), (held - 1, False), (held, True)):
        b = tmp_path / f"b{recorded}"
        b.mkdir()
        run_folder.carry_history(a, b, best_epoch=recorded)
        assert (b / "best.pt").exists() is carried and (b / "metrics.csv").exists()


class _Killed(BaseException):
    """The process is killed (SIGKILL, a power loss): nothing after it runs."""


def _rising_accuracy(monkeypatch, run: list[Trainer]) -> None:
    """Every epoch's test accuracy beats the one before, so each is the best."""
    real = trainer.evaluate

    def evaluate(*args, **kwargs):
        total, rate, layers = real(*args, **kwargs)
        total.correct = total.count * (run[-1].epoch + 1) / 10
        return total, rate, layers

    monkeypatch.setattr(trainer, "evaluate", evaluate)


def test_a_kill_between_the_checkpoint_writes_keeps_the_best_weights(tmp_path, monkeypatch):
    # last.pt used to be written first: a kill before best.pt kept a stale best.pt that
    # no resume repaired, and `spikeflow eval` of the run evaluated the wrong epoch.
    run = tmp_path / "a"
    runs: list[Trainer] = [Trainer(tiny(tmp_path, "a"), log=None)]
    _rising_accuracy(monkeypatch, runs)
    real_replace, placed = os.replace, []

    def replace(src, dst):
        if str(dst).endswith(".pt"):
            placed.append(dst)
            if len(placed) == 4:  # epoch 1 placed two .pt files; epoch 2 one so far
                raise _Killed
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(_Killed):
        runs[0].fit()
    monkeypatch.setattr(os, "replace", real_replace)
    assert load_checkpoint(run / "best.pt")["epoch"] == 2  # the best epoch is saved
    assert load_checkpoint(run / "last.pt")["epoch"] == 1  # and will be redone
    runs.append(resume(run, stop_after=2))
    runs[-1].fit()
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert last["best"]["epoch"] == best["epoch"] == 2 and os.path.samefile(
        run / "best.pt", run / "last.pt"
    )


def test_a_resume_writes_again_a_stale_best_pt_of_the_best_epoch(tmp_path):
    # What an older spikeflow left when killed between writing last.pt and best.pt.
    Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    run = tmp_path / "a"
    epoch_1 = (run / "last.pt").read_bytes()
    resume(run, stop_after=2).fit()
    payload = load_checkpoint(run / "last.pt")
    save_checkpoint({**payload, "best": {"test_acc": 0.9, "epoch": 2}}, run / "last.pt")
    (run / "best.pt").unlink()
    (run / "best.pt").write_bytes(epoch_1)
    messages: list[str] = []
    payload = load_checkpoint(run / "last.pt")
    Trainer(config_for_resume(payload, {"stop_after": 2}), resume=payload, resume_dir=run,
            log=messages.append).fit()  # fmt: skip
    assert load_checkpoint(run / "best.pt")["epoch"] == 2
    assert any("did not hold the best epoch (2)" in m for m in messages)


def _left_by_a_killed_run(run: Path, age_s: float) -> list[str]:
    """The temporary files a run killed mid-write leaves (a partial checkpoint, log, plot,
    link and copy), ``age_s`` seconds old."""
    half = (run / "last.pt").read_bytes()[:5000]
    names = [".last.pt.k1lled.tmp", ".best.pt.x9.tmp", ".metrics.csv.q2.tmp",
             ".learning_curves.z7.tmp.png", ".last.pt.link", ".best.pt.copy"]  # fmt: skip
    for name in names:
        (run / name).write_bytes(half)
        os.utime(run / name, (time.time() - age_s,) * 2)
    return names


def test_a_resume_removes_what_killed_writes_left_and_nothing_else(tmp_path):
    """A run killed while writing a checkpoint leaves a partial ``.last.pt.*.tmp`` as
    large as a checkpoint (never read: the write is atomic); before, every kill of a
    preempted job left one more."""
    Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    run = tmp_path / "a"
    stale = _left_by_a_killed_run(run, 120)
    (run / ".best.pt.live.tmp").write_bytes(b"being written")  # fresh: a live writer's
    (run / ".notes.tmp").write_bytes(b"the user's")
    lines: list[str] = []
    payload = load_checkpoint(run / "last.pt")
    Trainer(config_for_resume(payload, {}), resume=payload, log=lines.append,
            resume_dir=run).fit()  # fmt: skip
    left = {p.name for p in run.iterdir() if p.name.startswith(".")}
    assert not left & set(stale)
    assert {".best.pt.live.tmp", ".notes.tmp"} <= left
    assert any(f"removed {len(stale)} temporary file(s) that a killed run left" in line
               for line in lines)  # fmt: skip
    assert epochs_logged(run) == ["1", "2", "3"]


def test_stale_temporaries_are_told_by_name_and_age(tmp_path):
    stale = _left_by_a_killed_run_without_a_run(tmp_path, 120)
    fresh = _left_by_a_killed_run_without_a_run(tmp_path / "fresh", 5)
    (tmp_path / ".config.toml.a.tmp").write_bytes(b"")
    os.utime(tmp_path / ".config.toml.a.tmp", (time.time() - 61,) * 2)
    for other in ("last.pt.tmp", ".last.pt", ".other.pt.a.tmp", "x.copy"):
        (tmp_path / other).write_bytes(b"")
        os.utime(tmp_path / other, (time.time() - 999,) * 2)
    assert run_folder.remove_stale_temporaries(tmp_path) == sorted([*stale, ".config.toml.a.tmp"])
    assert run_folder.remove_stale_temporaries(tmp_path / "fresh") == []
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == sorted(fresh)
    assert run_folder.remove_stale_temporaries(tmp_path / "fresh", older_than_s=0) == sorted(fresh)


def _left_by_a_killed_run_without_a_run(folder: Path, age_s: float) -> list[str]:
    folder.mkdir(exist_ok=True)
    (folder / "last.pt").write_bytes(bytes(6000))
    names = _left_by_a_killed_run(folder, age_s)
    (folder / "last.pt").unlink()
    return names


_SAVE_STARTED, _SAVE_GOES_ON = threading.Event(), threading.Event()


class _SlowToPickle:
    """Holds a checkpoint write open (as a large model on slow storage does) until told."""

    def __reduce__(self):
        _SAVE_STARTED.set()
        assert _SAVE_GOES_ON.wait(30)
        return (int, (0,))


def test_a_live_checkpoint_write_is_not_removed_however_old_its_file(tmp_path):
    """Another run starting in the folder (a resume of a run still writing, a requeued
    job) cleans temporaries a minute old; a checkpoint write that has taken longer (a
    large model on network storage, a stalled fsync) keeps a file that old while it is
    still being written: before, it was deleted and the write failed at its rename."""
    _SAVE_STARTED.clear()
    _SAVE_GOES_ON.clear()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            save_checkpoint({"format": "x", "slow": _SlowToPickle()}, tmp_path / "last.pt")
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert _SAVE_STARTED.wait(30)
        (live,) = tmp_path.glob(".last.pt.*.tmp")
        os.utime(live, (time.time() - 600,) * 2)  # ten minutes without a write
        assert run_folder.remove_stale_temporaries(tmp_path) == []
        assert live.exists()
    finally:
        _SAVE_GOES_ON.set()
        writer.join(30)
    assert errors == [] and (tmp_path / "last.pt").is_file()
    assert list(tmp_path.glob(".last.pt.*.tmp")) == []
    killed = tmp_path / ".last.pt.gone.tmp"  # one no process writes is still removed
    killed.write_bytes(b"partial")
    os.utime(killed, (time.time() - 600,) * 2)
    assert run_folder.remove_stale_temporaries(tmp_path) == [killed.name]


_HOLD_LOCK = """
import sys, time
from spikeflow.training.run_lock import lock_run_folder
lock = lock_run_folder(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def _holding_process(folder: Path):
    """A process that takes ``folder``'s run lock and sleeps (as a live run would)."""
    import subprocess
    import sys

    import spikeflow

    src = str(Path(spikeflow.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(folder)], env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_second_live_run_in_the_folder_is_refused_and_a_killed_runs_lock_does_not_block(
    tmp_path,
):
    import signal

    from spikeflow.training.run_lock import RUN_LOCK_FILE

    folder = tmp_path / "a"
    folder.mkdir()
    proc = _holding_process(folder)
    try:
        with pytest.raises(ConfigurationError) as info:
            Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
        message = str(info.value)
        assert f"output_dir {folder} is in use by another live training run (pid {proc.pid} " in (
            message
        )
        assert sorted(p.name for p in folder.iterdir()) == [RUN_LOCK_FILE]  # nothing written
    finally:
        proc.send_signal(signal.SIGKILL)  # killed: its lock file stays, unlocked
        proc.wait()
        proc.stdout.close()
    assert (folder / RUN_LOCK_FILE).is_file()
    result = Trainer(tiny(tmp_path, "a", stop_after=1), log=None).fit()
    assert result.epochs_completed == 1 and (folder / "last.pt").is_file()
    assert not (folder / RUN_LOCK_FILE).exists()  # released at the end of the run


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_the_run_lock_is_exclusive_within_one_process_too(tmp_path):
    from spikeflow.training.run_lock import lock_run_folder

    first = lock_run_folder(tmp_path)
    with pytest.raises(ConfigurationError, match=rf"pid {os.getpid()} on "):
        lock_run_folder(tmp_path)
    first.release()
    first.release()  # a second release does nothing
    lock_run_folder(tmp_path).release()
    assert list(tmp_path.iterdir()) == []


_FORK_HOLDING_LOCK = """
import os, sys, time
from spikeflow.training.run_lock import lock_run_folder
lock = lock_run_folder(sys.argv[1])
child = os.fork()
if child == 0:  # a forked worker (a DataLoader's): a release here must change nothing
    lock.release()
    time.sleep(120)
    os._exit(0)
print(child, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_neither_keeps_nor_drops_the_run_lock(tmp_path):
    """A run's forked children (DataLoader workers outlive a SIGKILL-ed run for
    seconds) do not hold its lock, and a release in one leaves the run's lock alone."""
    import signal
    import subprocess
    import sys

    import spikeflow
    from spikeflow.training.run_lock import RUN_LOCK_FILE, lock_run_folder

    src = str(Path(spikeflow.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", _FORK_HOLDING_LOCK, str(tmp_path)],
                            env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    child = int(proc.stdout.readline())
    try:
        time.sleep(0.2)  # the child's release() has run by now
        assert (tmp_path / RUN_LOCK_FILE).is_file()
        with pytest.raises(ConfigurationError, match=rf"pid {proc.pid} on "):
            lock_run_folder(tmp_path)  # the run still holds it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        os.kill(child, 0)  # the forked child lives on ...
        lock_run_folder(tmp_path).release()  # ... and the folder is free at once
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_lock_file_this_user_cannot_write_still_locks(tmp_path, monkeypatch):
    """In a shared folder the lock file may be another user's (0644): it is opened
    read-only and locked, never taken for a file system without locks (unguarded)."""
    from spikeflow.training import run_lock

    real_open = os.open

    def not_writable(path, flags, *args):
        if flags & os.O_RDWR and Path(path).name == run_lock.RUN_LOCK_FILE:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    proc = _holding_process(tmp_path)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(os, "open", not_writable)
            with pytest.raises(ConfigurationError, match=rf"pid {proc.pid} on "):
                run_lock.lock_run_folder(tmp_path)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    with monkeypatch.context() as patched:
        patched.setattr(os, "open", not_writable)
        held = run_lock.lock_run_folder(tmp_path)
    with pytest.raises(ConfigurationError, match="in use by another live training run"):
        run_lock.lock_run_folder(tmp_path)
    held.release()
    assert list(tmp_path.iterdir()) == []
