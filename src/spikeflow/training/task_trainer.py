"""The part of :class:`~spikeflow.training.trainer.Trainer` that a trainer of a task
other than classification (:class:`~spikeflow.training.regression_trainer.
RegressionTrainer`, :class:`~spikeflow.training.detection_trainer.DetectionTrainer`)
replaces in the same way: the task looked up from ``--dataset``, whose datasets and
model the run trains, and no plots."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.training.config import TrainConfig
from spikeflow.training.monitors import LayerStats
from spikeflow.training.trainer import Trainer

__all__ = ["TaskTrainer"]


class TaskTrainer(Trainer):
    """A :class:`~spikeflow.training.trainer.Trainer` whose datasets and model come from
    ``self.task``: what ``task_of(config.dataset)`` returns (a subclass sets both
    ``task_of`` and ``task_kind``). Arguments as the trainer's.

    Raises:
        ConfigurationError: ``task_of`` finds no task for ``config.dataset``.
    """

    #: The task of a ``--dataset`` value, or None when it is not one of this kind.
    task_of: Callable[[Any], Any]

    def __init__(self, config: TrainConfig, *args: Any, **kwargs: Any) -> None:
        task = type(self).task_of(config.dataset)
        if task is None:
            raise ConfigurationError(
                f"{type(self).__name__}: dataset {config.dataset!r} is not a "
                f"{self.task_kind} dataset"
            )
        self.task = task
        super().__init__(config, *args, **kwargs)

    def _build_datasets(self) -> tuple[Any, Any, Any]:
        return self.task.build_datasets(self.config)

    def _build_model(self) -> nn.Module:
        return self.task.build_model(self.config, self.info)

    def _close_task_epoch(
        self,
        row: dict[str, Any],
        score: float,
        lower_is_better: bool,
        layers: dict[str, list[LayerStats]],
        message: str,
        layer_sparsity: dict[str, float] | None = None,
    ) -> None:
        """Append ``row`` to the history, keep ``score`` as ``best_test_acc`` when it is
        the best so far (the first epoch always; a non-finite score counts as the worst)
        and close the epoch (:meth:`~spikeflow.training.trainer.Trainer._close_epoch`)."""
        self.history.append(row)
        if not math.isfinite(score):
            score = math.inf if lower_is_better else -math.inf
        better = score < self.best_test_acc if lower_is_better else score > self.best_test_acc
        best = self.best_epoch == 0 or better
        if best:
            self.best_test_acc, self.best_epoch = score, self.epoch + 1
        self._close_epoch(row, layers, best, message, layer_sparsity)

    def _plots(self) -> list[Path]:
        return []  # (--plots on is refused by these tasks)
