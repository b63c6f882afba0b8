"""OptunaPruning: each epoch's metric reported to the trial, the run stopped by
optuna.TrialPruned when the trial should prune (a stub optuna module, so optuna is not
needed; the real one where installed), and the error naming the extra without it."""

from __future__ import annotations

import sys
import types

import pytest

from spikeflow.errors import ConfigurationError, MissingExtraError
from spikeflow.training import Trainer, config_for_resume, load_checkpoint
from spikeflow.training.optuna_pruning import OptunaPruning
from train_runs import tiny

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")


class _Pruned(Exception):
    """The stub optuna's TrialPruned."""


@pytest.fixture
def stub_optuna(monkeypatch):
    module = types.ModuleType("optuna")
    module.TrialPruned = _Pruned
    monkeypatch.setitem(sys.modules, "optuna", module)
    return module


class StubTrial:
    """Records reports; should prune from the ``prune_at``-th report on (1-based)."""

    def __init__(self, prune_at: int | None) -> None:
        self.prune_at = prune_at
        self.reports: list[tuple[float, int]] = []

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return self.prune_at is not None and len(self.reports) >= self.prune_at


def test_reports_every_epoch_and_stops_the_run_when_pruned(tmp_path, stub_optuna):
    trial = StubTrial(prune_at=2)
    trainer = Trainer(tiny(tmp_path, "pruned"), callbacks=[OptunaPruning(trial)], log=None)
    with pytest.raises(_Pruned, match=r"after epoch 2: test_acc = "):
        trainer.fit()
    # two of the three epochs ran, each reported with its 0-based index
    assert [row["epoch"] for row in trainer.history] == [1, 2]
    assert trial.reports == [(row["test_acc"], i) for i, row in enumerate(trainer.history)]
    assert load_checkpoint(tmp_path / "pruned" / "last.pt")["epoch"] == 2

    kept = StubTrial(prune_at=None)
    result = Trainer(
        tiny(tmp_path, "kept"), callbacks=[OptunaPruning(kept, monitor="test_loss")], log=None
    ).fit()
    assert result.epochs_completed == 3 and not result.interrupted
    assert kept.reports == [(row["test_loss"], i) for i, row in enumerate(result.history)]


def test_a_real_optuna_study_records_the_trial_pruned(tmp_path):
    optuna = pytest.importorskip("optuna", reason="optuna is the 'optuna' extra")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # accuracy is at most 1: a lower bound above it prunes at the first report
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.5)
    )

    def objective(trial):
        config = tiny(tmp_path, f"trial{trial.number}", lr=trial.suggest_float("lr", 1e-3, 1e-2))
        return Trainer(config, callbacks=[OptunaPruning(trial)], log=None).fit().final_test_acc

    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]


def test_missing_optuna_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'spikeflow\[optuna\]'"):
        OptunaPruning(StubTrial(prune_at=None))


def test_bad_trial_and_unknown_monitor_are_refused(stub_optuna):
    with pytest.raises(ConfigurationError, match=r"should_prune\(\) method.*got SimpleNamespace"):
        OptunaPruning(types.SimpleNamespace(report=lambda value, step: None))
    callback = OptunaPruning(StubTrial(prune_at=None), monitor="test_accuracy")
    with pytest.raises(ConfigurationError, match=r"'test_accuracy'.*columns: epoch, test_acc"):
        callback.on_epoch_end(None, 0, {"epoch": 1, "test_acc": 0.5})


def test_refused_under_torchrun(tmp_path, stub_optuna, monkeypatch):
    # torchrun sets WORLD_SIZE before any process group exists: refused when made ...
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigurationError, match=r"one process, not under torchrun \(2 proc"):
        OptunaPruning(StubTrial(prune_at=None))
    monkeypatch.setenv("WORLD_SIZE", "1")
    callback = OptunaPruning(StubTrial(prune_at=None))
    # ... and at an epoch's end of a run of several processes (each would report alone)
    trainer = types.SimpleNamespace(ctx=types.SimpleNamespace(world_size=4))
    with pytest.raises(ConfigurationError, match=r"not under torchrun \(4 processes\)"):
        callback.on_epoch_end(trainer, 0, {"test_acc": 0.5})
    assert callback.trial.reports == []
    one = types.SimpleNamespace(ctx=types.SimpleNamespace(world_size=1))
    callback.on_epoch_end(one, 0, {"test_acc": 0.5})
    assert callback.trial.reports == [(0.5, 0)]


def test_a_study_of_the_other_direction_is_refused(stub_optuna):
    def trial_of(direction):
        trial = StubTrial(prune_at=None)
        trial.study = types.SimpleNamespace(direction=types.SimpleNamespace(name=direction))
        return trial

    with pytest.raises(ConfigurationError, match=r"'test_loss' is to minimize but .* maximize"):
        OptunaPruning(trial_of("MAXIMIZE"), monitor="test_loss")
    with pytest.raises(ConfigurationError, match=r"'test_acc_ema' is to maximize but"):
        OptunaPruning(trial_of("MINIMIZE"), monitor="test_acc_ema")
    with pytest.raises(ConfigurationError, match=r"'test_r2' is to maximize"):
        OptunaPruning(trial_of("MINIMIZE"), monitor="test_r2")
    OptunaPruning(trial_of("MINIMIZE"), monitor="test_mse")
    OptunaPruning(trial_of("MAXIMIZE"), monitor="test_map")
    OptunaPruning(trial_of("MINIMIZE"), monitor="epoch_time_s")  # unknown: not checked


def test_a_real_study_of_the_other_direction_is_refused():
    optuna = pytest.importorskip("optuna", reason="optuna is the 'optuna' extra")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    with pytest.raises(ConfigurationError, match=r"'test_loss' is to minimize"):
        OptunaPruning(study.ask(), monitor="test_loss")
    OptunaPruning(study.ask(), monitor="test_acc")


def test_an_epoch_without_the_metric_is_not_reported(stub_optuna):
    trial = StubTrial(prune_at=1)  # would prune at the first report
    callback = OptunaPruning(trial, monitor="test_r2")
    callback.on_epoch_end(None, 0, {"epoch": 1, "test_r2": None})
    assert trial.reports == []
    with pytest.raises(_Pruned, match=r"after epoch 2: test_r2 = 0.25"):
        callback.on_epoch_end(None, 1, {"epoch": 2, "test_r2": 0.25})
    assert trial.reports == [(0.25, 1)]


def test_a_resumed_run_reports_at_its_own_epochs(tmp_path, stub_optuna):
    first = StubTrial(prune_at=None)
    Trainer(tiny(tmp_path, "split", stop_after=1), callbacks=[OptunaPruning(first)], log=None).fit()
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    resumed = StubTrial(prune_at=None)
    result = Trainer(config_for_resume(payload, {}), resume=payload, log=None,
                     callbacks=[OptunaPruning(resumed)]).fit()  # fmt: skip
    # the resumed process reports epochs 2 and 3 at steps 1 and 2, not again from 0
    assert [step for _, step in first.reports] == [0]
    assert [row["epoch"] for row in result.history] == [1, 2, 3]  # epoch 1's row restored
    assert resumed.reports == [(row["test_acc"], row["epoch"] - 1) for row in result.history[1:]]
    assert [step for _, step in resumed.reports] == [1, 2]
