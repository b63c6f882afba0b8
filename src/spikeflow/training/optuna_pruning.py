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
import os
from typing import Any, Protocol

import torch

from spikeflow.errors import ConfigurationError, MissingExtraError

__all__ = ["OptunaPruning", "metric_direction", "trial_pruned_exception"]


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


#: The direction a study must have for a metric column, by its name's ending (an EMA
#: column's ``_ema`` left out first); other columns are not checked.
_MAXIMISED = ("_acc", "_r2", "_map", "_map_50")
_MINIMISED = ("_loss", "_mse", "_mae")


def metric_direction(monitor: str) -> str | None:
    """``"maximize"`` or ``"minimize"`` for a known metrics column, else None."""
    name = monitor.removesuffix("_ema")
    if name.endswith(_MAXIMISED):
        return "maximize"
    if name.endswith(_MINIMISED):
        return "minimize"
    return None


def _study_direction(trial: Any) -> str | None:
    """The direction of ``trial``'s study (``"maximize"`` / ``"minimize"``), or None when
    the trial does not say (a stand-in trial, a multi-objective study)."""
    try:
        direction = trial.study.direction
    except Exception:  # no study, or several directions (optuna raises RuntimeError)
        return None
    name = getattr(direction, "name", direction)
    return name.lower() if isinstance(name, str) else None


def _world_size(trainer: Any = None) -> int:
    """The processes of the run: the trainer's, else an initialised process group's,
    else ``WORLD_SIZE`` (set by ``torchrun`` before any group exists)."""
    ctx = getattr(trainer, "ctx", None)
    if ctx is not None and isinstance(getattr(ctx, "world_size", None), int):
        return ctx.world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _refuse_distributed(world_size: int) -> None:
    if world_size > 1:
        raise ConfigurationError(
            f"OptunaPruning runs in one process, not under torchrun ({world_size} "
            "processes): each process would report to its own trial, and one pruned "
            "alone would leave the others waiting for it; run the search in one process"
        )


class OptunaPruning:
    """Report ``monitor`` of every epoch to ``trial``; stop the run when it should prune.

    Pass it to ``Trainer(config, callbacks=[OptunaPruning(trial)])`` inside an Optuna
    objective. At the end of each epoch (after its checkpoint) it calls
    ``trial.report(row[monitor], epoch)`` (0-based epoch), then, if
    ``trial.should_prune()``, raises ``optuna.TrialPruned`` naming the epoch and value,
    which ends :meth:`Trainer.fit` and which ``study.optimize`` records as a pruned
    trial. The study's ``direction`` must match the metric ("maximize" for
    ``test_acc``, "minimize" for a loss): a known column (``*_acc``, ``*_r2``,
    ``*_map`` maximised; ``*_loss``, ``*_mse``, ``*_mae`` minimised) in a study of the
    other direction is refused, as its pruner would stop the best trials. A row whose
    ``monitor`` is None (not measured that epoch) is not reported. One process only:
    under ``torchrun`` it is refused (each process would report to its own trial).

    Args:
        trial: an ``optuna.trial.Trial`` (anything with ``report(value, step)`` and
            ``should_prune()``).
        monitor: the column of the epoch's metrics row to report (``Trainer``'s
            ``history`` rows: ``test_acc``, ``test_loss``, ``train_loss``, ...).

    Raises:
        MissingExtraError: optuna is not installed (the ``optuna`` extra).
        ConfigurationError: ``trial`` lacks ``report`` or ``should_prune``; its study's
            direction is not ``monitor``'s; made under ``torchrun`` (``WORLD_SIZE`` > 1
            or a process group of several processes).
    """

    def __init__(self, trial: _Trial, monitor: str = "test_acc") -> None:
        self.pruned_exception = trial_pruned_exception()
        _refuse_distributed(_world_size())
        for method in ("report", "should_prune"):
            if not callable(getattr(trial, method, None)):
                raise ConfigurationError(
                    f"OptunaPruning: trial must have a {method}() method (an "
                    f"optuna.trial.Trial); got {type(trial).__name__}"
                )
        wanted, study = metric_direction(monitor), _study_direction(trial)
        if wanted is not None and study is not None and wanted != study:
            raise ConfigurationError(
                f"OptunaPruning: monitor {monitor!r} is to {wanted} but the trial's study "
                f"is to {study}: its pruner would stop the best trials (create the study "
                f"with direction={wanted!r}, or monitor another column)"
            )
        self.trial = trial
        self.monitor = monitor

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, Any]) -> None:
        """Report ``row[monitor]`` at step ``epoch``; raise ``optuna.TrialPruned`` if the
        trial should be pruned.

        Raises:
            ConfigurationError: ``row`` has no ``monitor`` column (the message lists
                those it has), or the run has several processes.
        """
        _refuse_distributed(_world_size(trainer))
        if self.monitor not in row:
            columns = ", ".join(sorted(row))
            raise ConfigurationError(
                f"OptunaPruning: monitor {self.monitor!r} is not a column of the epoch's "
                f"metrics (columns: {columns})"
            )
        if row[self.monitor] is None:  # not measured this epoch: nothing to report
            return
        value = float(row[self.monitor])
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            shown = f"{value:.6g}" if math.isfinite(value) else str(value)
            raise self.pruned_exception(
                f"trial pruned after epoch {epoch + 1}: {self.monitor} = {shown}"
            )
