"""The tiny digits training run the training tests share (imported, not collected)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch

from spikeflow.training import TrainConfig, load_checkpoint
from spikeflow.training.config import config_from_dict
from spikeflow.training.metric_logs import read_csv

#: A tiny digits run: ~0.1 s per epoch, which learns (tests/test_train_resume.py checks it:
#: the loss falls, the output layer fires, test accuracy well above chance).
#: With the recipe's settings (threshold 1, dropout 0.5, lr 1e-3) its 18 steps learn
#: nothing: at T = 2 a PLIF neuron (tau = 2) reaches 0.75 x of a constant input x, so
#: the hidden FC layer, whose inputs are about ±0.3 (PyTorch's default init over spike
#: inputs), stays silent, the output layer gets no input and no gradient, and the loss
#: stays at 0.1 (MSE; ln 10 with CE). And the BN running variances, starting at 1 and
#: 18 updates from the batches' (0.02-0.08), halve or worse the evaluation's inputs.
#: Threshold 0.25 makes every layer fire in training and evaluation; without dropout
#: and at lr 1e-2 the 18 steps learn (33-42% test accuracy on seeds 0-2).
TINY = {
    "train_samples": 192, "test_samples": 96, "batch_size": 32, "T": 2, "epochs": 3,
    "model_kwargs": {"channels": 8, "hidden": 32, "dropout": 0.0},
    "neuron_kwargs": {"v_threshold": 0.25}, "lr": 1e-2, "progress": False, "plots": "off",
    "device": "cpu",
}  # fmt: skip


#: TINY's settings tuned for plif_digits' PLIF neurons, which a run of another ``model``
#: or ``neuron`` leaves at its defaults (a PSN takes no v_threshold; the other models'
#: tests are calibrated at threshold 1 and their own learning rates).
PLIF_TUNING = ("neuron_kwargs", "lr")


def tiny(
    tmp_path: Path, name: str, *, base: dict[str, object] = TINY, **changes: object
) -> TrainConfig:
    """``base`` with ``changes``, writing to ``tmp_path / name``; with another ``model``
    or ``neuron`` in ``changes``, without base's :data:`PLIF_TUNING` unless given."""
    values = {**base, "output_dir": str(tmp_path / name), **changes}
    if "model" in changes or "neuron" in changes:
        for key in PLIF_TUNING:
            if key not in changes:
                values.pop(key, None)
    return config_from_dict(values)


def check_resume_is_exact(tmp_path: Path, **changes: object) -> dict:
    """Train ``tiny(**changes)`` whole ("full") and stopped after one epoch then resumed
    ("split"); assert the two final models are equal; return the split run's first
    checkpoint payload (what the resume started from)."""
    import torch

    from spikeflow.training import Trainer, config_for_resume, load_checkpoint

    Trainer(tiny(tmp_path, "full", **changes), log=None).fit()
    Trainer(tiny(tmp_path, "split", stop_after=1, **changes), log=None).fit()
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    full, split = (load_checkpoint(tmp_path / n / "last.pt")["model"] for n in ("full", "split"))
    assert full.keys() == split.keys()
    for key in full:
        assert torch.equal(full[key], split[key]), key
    return payload


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The model weights of ``run_dir``'s ``last.pt``."""
    return load_checkpoint(run_dir / "last.pt")["model"]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    """``run_dir``'s ``metrics.csv`` rows without the epoch times (which vary by run)."""
    rows = read_csv(run_dir / "metrics.csv")
    for row in rows:
        row.pop("epoch_time_s")
    return rows


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """The two state dicts hold the same keys and bit-equal tensors."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


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


class Interrupt:
    """Sends the process a real SIGINT (Ctrl-C) during step ``step`` of epoch ``epoch``;
    with ``second=True`` a second Ctrl-C follows at once (KeyboardInterrupt)."""

    def __init__(self, epoch: int, step: int, second: bool = False) -> None:
        self.epoch, self.step, self.second = epoch, step, second

    def on_step_end(self, trainer, epoch, step, loss):
        if (epoch, step) == (self.epoch, self.step):
            os.kill(os.getpid(), signal.SIGINT)
            if self.second:
                os.kill(os.getpid(), signal.SIGINT)
