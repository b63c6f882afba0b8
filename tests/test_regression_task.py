"""Regression in ``spikeflow train``: the decoding and losses, the metrics against numpy
by hand, the refusals, scikit-learn's diabetes data and a short run that beats the mean
predictor, evaluated again by ``spikeflow eval``."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.training import TrainConfig
from spikeflow.training.config import resolve
from spikeflow.training.regression_task import (
    RegressionLoss,
    RegressionSums,
    RegressionTask,
    regression_pairs,
)

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_match_numpy_by_hand():
    """MSE, MAE and R² summed batch by batch equal numpy's over all values at once (R²
    per output, then their mean)."""
    rng = np.random.default_rng(0)
    target = rng.normal(2.0, 3.0, size=(50, 2))
    pred = target + rng.normal(0.0, 1.5, size=target.shape)
    sums = RegressionSums()
    for lo in range(0, 50, 16):  # uneven batches
        p, t = torch.tensor(pred[lo : lo + 16]), torch.tensor(target[lo : lo + 16])
        sums.add_pairs(0.5, p, t, len(p))
    error = pred - target
    r2 = np.mean(1 - (error**2).sum(0) / ((target - target.mean(0)) ** 2).sum(0))
    got = sums.metrics()
    assert got["mse"] == pytest.approx((error**2).mean(), rel=1e-12)
    assert got["mae"] == pytest.approx(np.abs(error).mean(), rel=1e-12)
    assert got["r2"] == pytest.approx(r2, rel=1e-10)
    assert sums.mean_loss == pytest.approx(0.5)
    # the mean predictor scores R² = 0; constant targets have no R²
    mean = RegressionSums()
    means = torch.tensor(target.mean(0)).expand(50, 2)  # each output's mean
    mean.add_pairs(0.0, means, torch.tensor(target), 50)
    assert mean.metrics()["r2"] == pytest.approx(0.0, abs=1e-12)
    flat = RegressionSums()
    flat.add_pairs(0.0, torch.zeros(4), torch.ones(4), 4)
    assert np.isnan(flat.metrics()["r2"])


def test_r2_of_several_outputs_is_sklearns_uniform_average():
    """Outputs of different scales and offsets: R² is the mean of the per-output R²s
    (scikit-learn's default), not one pooled over the outputs (which the large output
    dominates and which counts the outputs' different means as explained)."""
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(1)
    scale, offset = np.array([0.01, 1.0, 300.0]), np.array([5.0, -2.0, 1000.0])
    target = rng.normal(size=(60, 3)) * scale + offset
    pred = target + rng.normal(size=target.shape) * scale * np.array([0.3, 1.2, 0.1])
    sums = RegressionSums()
    for lo in range(0, 60, 25):  # uneven batches
        p, t = torch.tensor(pred[lo : lo + 25]), torch.tensor(target[lo : lo + 25])
        sums.add_pairs(0.0, p, t, len(p))
    want = r2_score(target, pred)  # multioutput="uniform_average"
    assert sums.metrics()["r2"] == pytest.approx(want, rel=1e-9)
    error = pred - target
    pooled = 1 - (error**2).sum() / ((target - target.mean()) ** 2).sum()
    assert abs(pooled - want) > 0.1  # the old pooled R² is another number
    # per-step pairs [T, B, D] count every step's values, per output
    steps = torch.tensor(np.stack([pred, target]))
    per_step = RegressionSums()
    per_step.add_pairs(0.0, steps, torch.tensor(np.stack([target, target])), 60)
    both = np.concatenate([pred, target])
    assert per_step.metrics()["r2"] == pytest.approx(
        r2_score(np.concatenate([target, target]), both), rel=1e-9
    )
    # one output (1-D pairs)
    one = RegressionSums()
    one.add_pairs(0.0, torch.tensor(pred[:, 2]), torch.tensor(target[:, 2]), 60)
    assert one.metrics()["r2"] == pytest.approx(r2_score(target[:, 2], pred[:, 2]), rel=1e-9)
    # a constant output has no R² and is left out of the mean
    flat = np.concatenate([target[:, :2], np.full((60, 1), 3.0)], 1)
    one_flat = RegressionSums()
    one_flat.add_pairs(0.0, torch.tensor(pred), torch.tensor(flat), 60)
    assert one_flat.metrics()["r2"] == pytest.approx(r2_score(flat[:, :2], pred[:, :2]))
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = r2_score(flat, pred, multioutput="raw_values", force_finite=False)
    assert one_flat.metrics()["r2"] == pytest.approx(raw[np.isfinite(raw)].mean(), rel=1e-9)
    assert r2_score(flat, pred) != pytest.approx(one_flat.metrics()["r2"])  # (its default: 0)
    with pytest.raises(ShapeError, match="2 output"):
        sums.add_pairs(0.0, torch.zeros(4, 2), torch.zeros(4, 2), 4)
    with pytest.raises(ShapeError, match="differ in shape"):
        sums.add_pairs(0.0, torch.zeros(4, 3), torch.zeros(4, 1, 3), 4)


def test_per_output_sums_survive_a_checkpoint_of_two_processes():
    """A mid-epoch checkpoint sums the processes' per-output lists (one saw nothing)."""
    from spikeflow.training.checkpoint import epoch_state_payload

    a, b, empty = RegressionSums(), RegressionSums(), RegressionSums()
    a.add_pairs(0.0, torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 5.0]]), 1)
    b.add_pairs(
        0.0, torch.tensor([[3.0, 1.0], [0.0, 0.0]]), torch.tensor([[2.0, 4.0], [1.0, 1.0]]), 2
    )
    states = [{"epoch_sums": s.state_dict(), "monitor": {}} for s in (a, b, empty)]
    merged = RegressionSums(**epoch_state_payload(states)["epoch_sums"])
    whole = RegressionSums()
    whole.add_pairs(0.0, torch.tensor([[1.0, 2.0], [3.0, 1.0], [0.0, 0.0]]),
                    torch.tensor([[0.0, 5.0], [2.0, 4.0], [1.0, 1.0]]), 3)  # fmt: skip
    assert merged.metrics() == pytest.approx(whole.metrics())


class _TwoProcesses:
    """What DistContext's reductions return with two processes: these sums and
    ``other``'s."""

    def __init__(self, other: RegressionSums) -> None:
        self.other = other

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        import dataclasses

        theirs = [getattr(self.other, f.name) for f in dataclasses.fields(self.other)]
        return [a + b for a, b in zip(values, theirs)]

    def all_gather_object(self, obj):
        return [obj, (self.other.output_sse, self.other.output_y, self.other.output_y2)]


def test_a_resume_from_sums_without_per_output_ones_stays_pooled_for_the_epoch():
    """A mid-epoch checkpoint written before the per-output sums holds the pooled ones
    only: the rest of the epoch adds both, and R² must not take the per-output sums of
    part of the epoch over the values of all of it. It falls back to the pooled R² of
    the whole epoch, in one process and in two (one resumed, one starting afresh: a
    checkpoint of another process count gives process 0 all its sums)."""
    rng = np.random.default_rng(3)
    target = rng.normal(size=(40, 2)) * np.array([1.0, 20.0]) + np.array([0.0, 50.0])
    pred = target + rng.normal(size=target.shape) * 2.0
    before = RegressionSums()
    before.add_pairs(0.0, torch.tensor(pred[:20]), torch.tensor(target[:20]), 20)
    old_state = {k: v for k, v in before.state_dict().items() if not k.startswith("output")}
    resumed = RegressionSums(**old_state)
    resumed.add_pairs(0.0, torch.tensor(pred[20:]), torch.tensor(target[20:]), 20)
    error = pred - target
    pooled = 1 - (error**2).sum() / ((target - target.mean()) ** 2).sum()
    assert resumed.metrics()["r2"] == pytest.approx(pooled, rel=1e-10)
    fresh = RegressionSums()
    fresh.add_pairs(0.0, torch.tensor(pred[30:]), torch.tensor(target[30:]), 10)
    resumed = RegressionSums(**old_state)
    resumed.add_pairs(0.0, torch.tensor(pred[20:30]), torch.tensor(target[20:30]), 10)
    for a, b in ((resumed, fresh), (fresh, resumed)):
        assert a.reduced(_TwoProcesses(b)).metrics()["r2"] == pytest.approx(pooled, rel=1e-10)
    # two processes that both kept per-output sums: scikit-learn's R² of the whole split
    from sklearn.metrics import r2_score

    halves = [RegressionSums(), RegressionSums()]
    for half, rows in zip(halves, (slice(0, 25), slice(25, 40))):
        half.add_pairs(0.0, torch.tensor(pred[rows]), torch.tensor(target[rows]), 1)
    total = halves[0].reduced(_TwoProcesses(halves[1]))
    assert total.metrics()["r2"] == pytest.approx(r2_score(target, pred), rel=1e-10)


def test_readouts_and_losses_by_hand():
    """mean / last / per_step decode as their definitions, and each loss is torch's of
    the decoded pairs (per_step: the mean of a loop's per-step losses)."""
    torch.manual_seed(0)
    out = torch.randn(5, 3, 2)  # [T, B, D]
    target = torch.randn(3, 2)
    pred, tgt = regression_pairs(out, target, "mean")
    torch.testing.assert_close(pred, out.mean(0))
    torch.testing.assert_close(tgt, target)
    pred, _ = regression_pairs(out, target, "last")
    torch.testing.assert_close(pred, out[4])
    loop = sum(F.mse_loss(out[t], target) for t in range(5)) / 5
    torch.testing.assert_close(RegressionLoss("mse", "per_step")(out, target), loop)
    steps = torch.randn(3, 5, 2)  # a target per step, [B, T, D]
    loop = sum(F.l1_loss(out[t], steps[:, t]) for t in range(5)) / 5
    torch.testing.assert_close(RegressionLoss("l1", "per_step", True)(out, steps), loop)
    huber = RegressionLoss("huber", "last", delta=0.3)(out, target)
    torch.testing.assert_close(huber, F.huber_loss(out[4], target, delta=0.3))
    with pytest.raises(ConfigurationError, match="per_step"):
        regression_pairs(out, steps, "mean", per_step_targets=True)
    with pytest.raises(ShapeError, match=r"\(4,\)"):
        regression_pairs(out, torch.zeros(4), "mean")
    with pytest.raises(ConfigurationError, match="delta"):
        RegressionLoss("mse", "mean", delta=1.0)


def test_bad_targets_are_named():
    """NaN / infinite targets (a damaged dataset) are refused before the loss turns NaN
    and the run stops blaming the learning rate; bool and complex targets by dtype."""
    out = torch.randn(4, 3, 1)
    for value in (float("nan"), float("inf")):
        target = torch.tensor([[0.5], [value], [1.0]])
        with pytest.raises(ConfigurationError, match="1 NaN or infinite value"):
            RegressionLoss("mse", "mean")(out, target)
        with pytest.raises(ConfigurationError, match="NaN or infinite"):
            regression_pairs(out, target.expand(3, 4), "per_step", per_step_targets=True)
    for target in (torch.ones(3, 1, dtype=torch.bool), torch.ones(3, 1, dtype=torch.complex64)):
        with pytest.raises(DTypeError, match=str(target.dtype)):
            regression_pairs(out, target, "mean")
    with pytest.raises(DTypeError, match="list"):
        regression_pairs(out, [0.0, 1.0, 2.0], "mean")
    # integer targets are real values: read as float32
    _, tgt = regression_pairs(out, torch.tensor([[1], [2], [3]]), "last")
    assert tgt.dtype == torch.float32 and tgt[:, 0].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"readout": "rate"}, "--readout"),
        ({"mixup": 0.2}, "--mixup"),
        ({"online": True}, "--online"),
        ({"loss": "ce"}, "--loss ce"),
        ({"loss_kwargs": {"label_smoothing": 0.1}}, "label_smoothing"),
        # (it was accepted, logged as the loss, and never used by the regression step)
        ({"teacher": "teacher.pt"}, "--teacher"),
        ({"data_dir": "/somewhere"}, "--data-dir"),
    ],
)
def test_classification_options_refused_by_name(changes, named):
    config = TrainConfig(dataset="diabetes", **changes)
    with pytest.raises(ConfigurationError, match=named):
        if "data_dir" in changes:
            RegressionTask("diabetes").build_datasets(resolve(config))
        else:
            resolve(config)


@pytest.mark.parametrize("kind", ["regression", "detection"])
def test_task_trainer_refuses_a_dataset_of_another_task_by_name(kind):
    """RegressionTrainer / DetectionTrainer (their shared TaskTrainer) name themselves,
    the dataset and the task it is not, before anything is built."""
    from spikeflow.training.detection_trainer import DetectionTrainer
    from spikeflow.training.regression_trainer import RegressionTrainer

    trainer = RegressionTrainer if kind == "regression" else DetectionTrainer
    with pytest.raises(
        ConfigurationError,
        match=f"{trainer.__name__}: dataset 'digits' is not a {kind} dataset",
    ):
        trainer(TrainConfig(dataset="digits"))


@pytest.mark.parametrize(
    ("kind", "scores", "bests", "kept"),
    [  # regression: the lowest test loss; detection: the highest mAP; NaN the worst
        ("regression", [2.0, float("nan"), 3.0, 1.0], [True, False, False, True], 1.0),
        ("detection", [float("nan"), 0.1, float("nan"), 0.05], [True, True, False, False], 0.1),
        # a tie keeps the earlier epoch (as before the TaskTrainer refactor)
        ("regression", [1.0, 1.0, 2.0], [True, False, False], 1.0),
        ("detection", [0.2, 0.1, 0.2], [True, False, False], 0.2),
        # an infinite loss is no better than NaN; the first finite one replaces both
        ("regression", [float("inf"), float("nan"), 4.0], [True, False, True], 4.0),
        ("detection", [float("-inf"), float("nan"), 0.0], [True, False, True], 0.0),
        ("regression", [1.0, float("-inf")], [True, False], 1.0),  # any non-finite: worst
        ("detection", [0.0, float("inf")], [True, False], 0.0),
    ],
)
def test_task_trainers_keep_the_best_epoch(kind, scores, bests, kept):
    """TaskTrainer._close_task_epoch: the first epoch is the best so far, a non-finite
    score never beats a finite one, and the direction is the task's."""
    from spikeflow.training.detection_trainer import DetectionTrainer
    from spikeflow.training.regression_trainer import RegressionTrainer

    cls = RegressionTrainer if kind == "regression" else DetectionTrainer
    trainer = cls.__new__(cls)  # the rule alone: no data, model or output folder
    trainer.history, trainer.best_test_acc, trainer.best_epoch = [], -float("inf"), 0
    closed = []
    trainer._close_epoch = lambda row, layers, best, message, sparsity=None: closed.append(best)
    for epoch, score in enumerate(scores):
        trainer.epoch = epoch
        trainer._close_task_epoch({"epoch": epoch + 1}, score, kind == "regression", {}, "")
    assert closed == bests
    assert trainer.best_test_acc == kept and len(trainer.history) == len(scores)
    assert trainer.best_epoch == max(i + 1 for i, best in enumerate(bests) if best)


def test_time_pooled_output_and_regression_loss_on_classification_named():
    """An output already averaged over time ([B, D]) is not read as [T, B]: the error
    says why; --loss l1 / huber on a classification dataset is refused as a regression
    loss before the run (mse stays: a classification loss too)."""
    pooled = torch.randn(8, 1)  # a model that averaged its 5 steps itself
    for readout in ("mean", "last", "per_step"):
        with pytest.raises(ShapeError, match=r"time first.*averages over time"):
            regression_pairs(pooled, torch.randn(8, 1), readout)
    with pytest.raises(ShapeError, match="one scalar"):
        regression_pairs(torch.randn(5, 8, 1), torch.tensor(1.0), "mean")
    for loss in ("l1", "huber"):
        with pytest.raises(ConfigurationError, match=f"--loss {loss} is a regression loss"):
            resolve(TrainConfig(dataset="digits", loss=loss))
    assert resolve(TrainConfig(dataset="digits", loss="mse")).loss == "mse"


def test_regression_readout_only_for_regression_and_fitting_targets():
    # an explicit "mean" too: it was the default, so digits took it and ignored it, and
    # pilotnet turned it into per_step
    for readout in ("mean", "last", "per_step"):
        with pytest.raises(ConfigurationError, match="not a regression dataset"):
            resolve(TrainConfig(dataset="digits", regression_readout=readout))
    for readout in ("mean", "last"):
        with pytest.raises(ConfigurationError, match="use per_step"):
            resolve(TrainConfig(dataset="pilotnet", regression_readout=readout))
    assert resolve(TrainConfig(dataset="digits")).regression_readout is None
    assert (
        resolve(TrainConfig(dataset="diabetes", regression_readout="last")).regression_readout
        == "last"
    )
    assert resolve(TrainConfig(dataset="pilotnet")).regression_readout == "per_step"
    resolved = resolve(TrainConfig(dataset="diabetes"))
    assert (resolved.model, resolved.loss, resolved.regression_readout) == ("rsnn", "mse", "mean")


def test_diabetes_split_and_standardisation():
    """353 / 89 samples of sklearn's split (random_state 0), features and targets
    standardised with the training split's statistics."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    train, test, info = RegressionTask("diabetes").build_datasets(
        resolve(TrainConfig(dataset="diabetes"))
    )
    assert (len(train), len(test), info.num_classes, info.in_channels) == (353, 89, 1, 10)
    x_tr = train.tensors[0].double().numpy()
    y_tr, y_te = train.tensors[1].double().numpy(), test.tensors[1].double().numpy()
    np.testing.assert_allclose(x_tr.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(x_tr.std(0), 1, atol=1e-5)
    assert y_tr.mean() == pytest.approx(0, abs=1e-6) and y_tr.std() == pytest.approx(1, abs=1e-5)
    data = load_diabetes()
    _, _, raw_tr, raw_te = train_test_split(data.data, data.target, test_size=0.2, random_state=0)
    np.testing.assert_allclose(y_te[:, 0], (raw_te - raw_tr.mean()) / raw_tr.std(), rtol=1e-5)


def test_diabetes_run_beats_the_mean_predictor_and_eval_reports_it(tmp_path):
    """A short run (3 epochs) on the diabetes data: its best test R² is well above the
    mean predictor's 0; best.pt is the epoch of the lowest test loss, and ``spikeflow
    eval`` reports the same loss, MSE, MAE and R² for it."""
    from spikeflow.training.detection_trainer import trainer_for

    config = TrainConfig(dataset="diabetes", epochs=3, output_dir=str(tmp_path / "run"),
                         progress=False, threads=1)  # fmt: skip
    result = trainer_for(config, log=None).fit()
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    losses = [float(r["test_loss"]) for r in rows]
    best = int(np.argmin(losses))
    assert result.best_epoch == best + 1 and result.best_test_acc == pytest.approx(losses[best])
    assert float(rows[best]["test_r2"]) > 0.1
    assert float(rows[best]["test_mse"]) == pytest.approx(losses[best])  # (loss mse)
    from spikeflow.training.evaluation import evaluate_checkpoint, format_evaluation

    evaluated = evaluate_checkpoint(tmp_path / "run", progress=False)
    for key in ("test_loss", "test_mse", "test_mae", "test_r2"):
        assert evaluated[key] == pytest.approx(float(rows[best][key]), rel=1e-5)
    assert f"R^2 {evaluated['test_r2']:.4f}" in format_evaluation(evaluated)


def test_eval_cli_prints_the_metrics(tmp_path):
    from spikeflow.training.detection_trainer import trainer_for

    config = TrainConfig(dataset="diabetes", epochs=1, T=2, train_samples=64,
                         output_dir=str(tmp_path / "run"), progress=False, threads=1)  # fmt: skip
    trainer_for(config, log=None).fit()
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "spikeflow", "eval", str(tmp_path / "run"), "--no-progress"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "MSE" in done.stdout and "MAE" in done.stdout and "test R^2:" in done.stdout


def test_resume_within_an_epoch_gives_the_same_metrics(tmp_path):
    """A regression run stopped within its second epoch and resumed logs the metrics of
    a run never stopped (its running MSE/MAE/R² sums travel in the checkpoint)."""
    from spikeflow.training.checkpoint import load_checkpoint
    from spikeflow.training.detection_trainer import trainer_for
    from spikeflow.training.trainer import config_for_resume

    base = dict(dataset="diabetes", epochs=2, train_samples=128, test_samples=40,
                progress=False, threads=1)  # fmt: skip
    full = trainer_for(TrainConfig(output_dir=str(tmp_path / "a"), **base), log=None).fit()

    class Stop:
        def on_step_end(self, trainer, epoch, step, loss):
            if (epoch, step) == (1, 1):
                trainer._stop_requested = True

    stopped = trainer_for(
        TrainConfig(output_dir=str(tmp_path / "b"), **base), log=None, callbacks=[Stop()]
    ).fit()
    assert stopped.interrupted
    payload = load_checkpoint(tmp_path / "b" / "last.pt")
    config = config_for_resume(payload, {"output_dir": str(tmp_path / "b")})
    resumed = trainer_for(config, resume=payload, resume_dir=tmp_path / "b", log=None).fit()
    for key in ("train_loss", "train_mse", "train_mae", "train_r2", "test_mse", "test_r2"):
        assert [r[key] for r in resumed.history] == [r[key] for r in full.history], key
    assert full.history[-1]["train_r2"] != full.history[0]["train_r2"]  # it learns


def test_spike_reg_model_ema_and_tensorboard_on_a_regression_run(tmp_path):
    """--spike-reg adds its term to the loss (the weights move otherwise than without
    it; ``train_spike_reg`` logged), --model-ema averages after every
    ``model_ema_steps``-th step and is evaluated with the regression metrics (``spikeflow
    eval --ema`` gives the same), --tensorboard writes MSE / MAE / R² scalars."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spikeflow.training.checkpoint import load_checkpoint
    from spikeflow.training.detection_trainer import trainer_for
    from spikeflow.training.evaluation import evaluate_checkpoint

    base = dict(dataset="diabetes", epochs=1, T=4, train_samples=64, test_samples=32,
                batch_size=16, progress=False, threads=1)  # fmt: skip
    plain = trainer_for(TrainConfig(output_dir=str(tmp_path / "plain"), **base), log=None)
    plain.fit()
    extras = dict(spike_reg="l1_rate_sparsity", model_ema=True, model_ema_steps=1,
                  model_ema_decay=0.99, tensorboard=True,
                  spike_reg_kwargs={"strength": 0.05, "reduction": "mean"})  # fmt: skip
    run = trainer_for(TrainConfig(output_dir=str(tmp_path / "run"), **base, **extras), log=None)
    result = run.fit()
    row = result.history[-1]
    assert row["train_spike_reg"] > 0
    pairs = zip(plain.raw_model.state_dict().values(), run.raw_model.state_dict().values())
    assert not all(torch.equal(a, b) for a, b in pairs)  # the term's gradient reached the weights
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["model_ema"]["updates"] == 64 // 16  # one per step (model_ema_steps 1)
    evaluated = evaluate_checkpoint(tmp_path / "run" / "last.pt", ema=True, progress=False)
    assert evaluated["weights"] == "ema"
    for key in ("loss", "mse", "mae", "r2"):
        assert evaluated[f"test_{key}"] == pytest.approx(row[f"test_{key}_ema"], rel=1e-5)
    assert row["test_r2_ema"] != row["test_r2"]  # (the average is not the last weights)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    for tag, key in (
        ("r2/test", "test_r2"),
        ("mse/train", "train_mse"),
        ("r2_ema/test", "test_r2_ema"),
        ("spike_reg/train", "train_spike_reg"),
    ):
        assert events.Scalars(tag)[0].value == pytest.approx(row[key], rel=1e-5), tag


def test_event_rate_is_lava_dls_budget_and_records_sigma_delta_events():
    """event_rate = strength · Σ_l relu(mean|s_l| − max_rate)² (Lava-DL's PilotNet SDNN
    event loss) by hand, its float64 gradient by gradcheck; --spike-reg event_rate on
    pilotnet_sdnn records its 8 delta encoders (the input and the 7 units)."""
    from spikeflow.losses import event_rate
    from spikeflow.models import create_model
    from spikeflow.training.spike_reg import SpikeRegulariser

    torch.manual_seed(0)
    a = torch.randn(3, 2, 5, dtype=torch.float64) * 0.1
    b = torch.zeros(4, 2, 3, dtype=torch.float64)
    b[0, 0, 0] = 0.02  # mean |b| = 0.02 / 24, under the budget: costs nothing
    by_hand = 0.3 * max(float(a.abs().mean()) - 0.01, 0.0) ** 2
    assert float(event_rate([a, b], strength=0.3)) == pytest.approx(by_hand, rel=1e-12)
    a.requires_grad_(True)
    torch.autograd.gradcheck(lambda t: event_rate([t, b], strength=0.3), (a,))
    with pytest.raises(ConfigurationError, match="max_rate"):
        event_rate(a, max_rate=-1.0)
    net = create_model("pilotnet_sdnn", input_size=(33, 100), dropout=0.0)
    reg = SpikeRegulariser(net, "event_rate", {})
    try:
        net(torch.rand(3, 2, 3, 33, 100))
        recorded = reg.recorder.spikes
        assert len(recorded) == 8 and "blocks.0" in recorded
        want = 0.01 * sum(torch.relu(s.abs().mean() - 0.01) ** 2 for s in recorded.values())
        torch.testing.assert_close(reg(), want)
    finally:
        reg.remove()


def test_quantized_regression_run_trains_and_evaluates_quantized(tmp_path):
    """--weight-bits 3 --input-bits 4 on a regression run: every linear weight row holds
    at most 2^3 - 1 levels (signed, symmetric) after training, and ``spikeflow eval``
    rebuilds the quantized network (the same test loss and R² as the run logged)."""
    from spikeflow.training.detection_trainer import trainer_for
    from spikeflow.training.evaluation import evaluate_checkpoint

    config = TrainConfig(dataset="diabetes", epochs=1, T=4, train_samples=64, test_samples=32,
                         batch_size=16, weight_bits=3, input_bits=4, progress=False, threads=1,
                         output_dir=str(tmp_path / "run"))  # fmt: skip
    trainer = trainer_for(config, log=None)
    row = trainer.fit().history[-1]
    linear = [m for m in trainer.raw_model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 7
    from spikeflow.quant.activation import InputQuantizer

    assert any(isinstance(m, InputQuantizer) for m in trainer.raw_model.modules())
    for module in linear:
        assert max(len(torch.unique(w)) for w in module.weight.detach()) <= 7
    evaluated = evaluate_checkpoint(tmp_path / "run", progress=False)
    for key in ("test_loss", "test_r2"):
        assert evaluated[key] == pytest.approx(row[key], rel=1e-5)


def test_pruned_regression_run_logs_its_sparsity(tmp_path):
    """--prune stds on a regression run: the weights are pruned as they train and each
    epoch logs ``sparsity``, the share of zero linear weights counted by hand."""
    from spikeflow.training.detection_trainer import trainer_for

    config = TrainConfig(dataset="diabetes", epochs=2, T=4, train_samples=64, test_samples=32,
                         batch_size=16, prune="stds", prune_kwargs={"final_threshold": 0.05},
                         progress=False, threads=1, output_dir=str(tmp_path / "run"))  # fmt: skip
    trainer = trainer_for(config, log=None)
    row = trainer.fit().history[-1]
    weights = [m.weight.detach() for m in trainer.raw_model.modules()
               if isinstance(m, torch.nn.Linear)]  # fmt: skip
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert row["sparsity"] == pytest.approx(zeros, rel=1e-9) and zeros > 0.2
    header = open(tmp_path / "run" / "metrics.csv").readline().strip().split(",")
    assert "sparsity" in header and "test_r2" in header
