"""Hyper-parameter search with Optuna: a :class:`~spikeflow.training.Trainer` callback
that reports each epoch's metric to a trial and stops the run when the trial's pruner
says so.

Optuna marks a trial pruned when its objective raises ``optuna.TrialPruned``; raised in
the callback, it leaves :meth:`Trainer.fit` (which closes the run, its last epoch's
checkpoint written) and reaches ``study.optimize``. Optuna is the ``optuna`` extra, and
imported when the callback is made: a search without it fails before its first epoch,
not at its first pruning. See ``docs/training.md`` ("Hyper-parameter search").
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from spikeflow.errors import ConfigurationError, MissingExtraError

__all__ = ["OptunaPruning", "trial_pruned_exception"]


class _Trial(Protocol):
    """What the callback uses of an ``optuna.trial.Trial``."""

    def report(self, value: float, step: int) -> None: ...

    def should_prune(self) -> bool: ...


def trial_pruned_exception() -> type[Exception]:
    """``optuna.TrialPruned``, the exception that marks a trial pruned.

    Raises:
        MissingExtraError: optuna is not installed (the ``optuna`` extra).
    """
    try:
        import optuna
    except ImportError as exc:
        raise MissingExtraError(
            "pruning Optuna trials (spikeflow.training.optuna_pruning)", "optuna", "optuna"
        ) from exc
    return optuna.TrialPruned


class OptunaPruning:
    """Report ``monitor`` of every epoch to ``trial``; stop the run when it should prune.

    Pass it to ``Trainer(config, callbacks=[OptunaPruning(trial)])`` inside an Optuna
    objective. At the end of each epoch (after its checkpoint) it calls
    ``trial.report(row[monitor], epoch)`` (0-based epoch), then, if
    ``trial.should_prune()``, raises ``optuna.TrialPruned`` naming the epoch and value,
    which ends :meth:`Trainer.fit` and which ``study.optimize`` records as a pruned
    trial. The study's ``direction`` must match the metric ("maximize" for
    ``test_acc``, "minimize" for a loss). For one process: under ``torchrun`` every
    process would report to the trial.

    Args:
        trial: an ``optuna.trial.Trial`` (anything with ``report(value, step)`` and
            ``should_prune()``).
        monitor: the column of the epoch's metrics row to report (``Trainer``'s
            ``history`` rows: ``test_acc``, ``test_loss``, ``train_loss``, ...).

    Raises:
        MissingExtraError: optuna is not installed (the ``optuna`` extra).
        ConfigurationError: ``trial`` lacks ``report`` or ``should_prune``.
    """

    def __init__(self, trial: _Trial, monitor: str = "test_acc") -> None:
        self.pruned_exception = trial_pruned_exception()
        for method in ("report", "should_prune"):
            if not callable(getattr(trial, method, None)):
                raise ConfigurationError(
                    f"OptunaPruning: trial must have a {method}() method (an "
                    f"optuna.trial.Trial); got {type(trial).__name__}"
                )
        self.trial = trial
        self.monitor = monitor

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, Any]) -> None:
        """Report ``row[monitor]`` at step ``epoch``; raise ``optuna.TrialPruned`` if the
        trial should be pruned.

        Raises:
            ConfigurationError: ``row`` has no ``monitor`` column (the message lists
                those it has).
        """
        if self.monitor not in row:
            columns = ", ".join(sorted(row))
            raise ConfigurationError(
                f"OptunaPruning: monitor {self.monitor!r} is not a column of the epoch's "
                f"metrics (columns: {columns})"
            )
        value = float(row[self.monitor])
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            shown = f"{value:.6g}" if math.isfinite(value) else str(value)
            raise self.pruned_exception(
                f"trial pruned after epoch {epoch + 1}: {self.monitor} = {shown}"
            )
