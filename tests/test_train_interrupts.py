"""Stopping a run: Ctrl-C (a real SIGINT) saves and resumes exactly, a second one
aborts, the command line exits with 130; a NaN loss or non-finite weights stop the run
with a message naming the last good checkpoint."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch

from spikeflow.cli import main
from spikeflow.training import (
    NonFiniteLossError,
    Trainer,
    config_for_resume,
    load_checkpoint,
)
from train_runs import (
    Interrupt,
    assert_same_weights,
    metrics,
    tiny,
    weights,
)

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")


def test_ctrl_c_saves_and_resume_mid_epoch_is_exact(tmp_path, capsys):
    Trainer(tiny(tmp_path, "full"), log=None).fit()
    result = Trainer(tiny(tmp_path, "cut"), callbacks=[Interrupt(1, 2)], log=None).fit()
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
    result = Trainer(tiny(tmp_path, "abort"), callbacks=[Interrupt(1, 2, second=True)],
                     log=said.append).fit()  # fmt: skip
    assert result.interrupted
    payload = load_checkpoint(tmp_path / "abort" / "last.pt")
    assert (payload["epoch"], payload["step"]) == (1, 0)  # epoch 1's checkpoint stands
    assert f"the last checkpoint is {tmp_path / 'abort' / 'last.pt'} (after epoch 1)" in said[-1]


def test_a_second_ctrl_c_before_any_checkpoint_says_none_was_written(tmp_path):
    """Aborted in its first epoch, a run names no checkpoint (it used to name a last.pt
    that did not exist)."""
    said: list[str] = []
    result = Trainer(tiny(tmp_path, "early"), callbacks=[Interrupt(0, 1, second=True)],
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
    Trainer(tiny(tmp_path, "cut"), callbacks=[Interrupt(0, 2)], log=None).fit()
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
