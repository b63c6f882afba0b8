"""The training run of a detection task (``spikeflow train --dataset nmnist_detection``,
``gen1``, ``1mpx``): :class:`~spikeflow.training.trainer.Trainer` with its data, model,
loss, collate function, training step and end of epoch taken from a
:class:`~spikeflow.training.detection_task.DetectionTask`.

Everything else is the trainer's: the output folder and its refusals, config.toml,
atomic checkpoints (``last.pt``, ``best.pt``: the epoch of the highest test COCO mAP),
exact ``--resume`` (also from within an epoch), Ctrl-C, ``--device``, ``torchrun``,
``--amp``, ``--compile``, ``--clip-grad-norm``, the schedules and ``metrics.csv``
(``train_loss``, its parts ``train_box``, ``train_obj``, ``train_cls``, the same on the
test split, ``test_map``, ``test_map_50``, firing rates) and ``layers.csv``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from spikeflow.training.config import TrainConfig
from spikeflow.training.data import to_time_major
from spikeflow.training.detection_task import (
    DetectionSums,
    DetectionTask,
    _as_float,
    detection_loss,
    detection_task,
)
from spikeflow.training.loop import autocast_context
from spikeflow.training.task_trainer import TaskTrainer
from spikeflow.training.trainer import Trainer

__all__ = ["DETECTION_COLUMNS", "DetectionTrainer", "trainer_for"]

#: The columns of a detection run's ``metrics.csv``.
DETECTION_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_box",
    "train_obj",
    "train_cls",
    "train_rate",
    "test_loss",
    "test_box",
    "test_obj",
    "test_cls",
    "test_map",
    "test_map_50",
    "test_rate",
    "epoch_time_s",
)


def trainer_for(config: TrainConfig, **kwargs: Any) -> Trainer:
    """The trainer of ``config``'s task: :class:`DetectionTrainer` for a detection
    dataset, :class:`~spikeflow.training.regression_trainer.RegressionTrainer` for a
    regression one, else :class:`~spikeflow.training.trainer.Trainer`; ``kwargs`` go to it."""
    if detection_task(config.dataset) is not None:
        return DetectionTrainer(config, **kwargs)
    from spikeflow.training.regression_task import regression_task

    if regression_task(config.dataset) is not None:
        from spikeflow.training.regression_trainer import RegressionTrainer

        return RegressionTrainer(config, **kwargs)
    return Trainer(config, **kwargs)


class DetectionTrainer(TaskTrainer):
    """Trains a spiking detector on a detection dataset; :meth:`fit` runs it. Arguments
    as :class:`~spikeflow.training.trainer.Trainer`'s. ``best_test_acc`` of the result
    (and the checkpoints' ``best``) holds the best test **COCO mAP** here; the history's
    rows hold ``test_map`` and ``test_map_50``.

    Raises:
        ConfigurationError: ``config.dataset`` is not a detection dataset, or an option
            a detection run refuses (before anything is written).
    """

    task_kind = "detection"
    sums_class = DetectionSums
    collate_fn = staticmethod(DetectionTask.collate)

    task_of = staticmethod(detection_task)

    def _run_loss(self) -> Any:
        # under torchrun (DDP over the default group) the loss divides by the global
        # batch's counts: every process calls it once per training step, gradients on
        # (its evaluation, without gradients, communicates nothing)
        return self.task.make_loss(self.config, self.raw_model, self.ctx.distributed)

    def _resolved_readout(self) -> str:
        return "detection"

    def _metric_columns(self) -> tuple[str, ...]:
        return DETECTION_COLUMNS

    def _train_step(self, x: Tensor, y: Sequence[Tensor], step: int, steps: int) -> float:
        cfg, ctx = self.config, self.ctx
        self._phase = "forward"
        x = to_time_major(x.to(ctx.device, non_blocking=True), cfg.T, self.layout)
        targets = [t.to(ctx.device) for t in y]
        with autocast_context(ctx.device, cfg.amp):
            out = self.model(x)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        loss, parts = detection_loss(self.loss_fn, _as_float(out), targets, size)
        value = float(loss.detach())
        self._check_step_loss(value, step, steps)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._phase = "update"
        self._update()
        self._phase = "done"
        self.epoch_sums.add_parts(value, parts, len(targets))  # type: ignore[attr-defined]
        self.step_in_epoch = step + 1
        self.global_step += 1
        return value

    def _end_epoch(self) -> None:
        cfg, ctx = self.config, self.ctx
        lr, totals, train_layers, train_rate = self._epoch_train_totals()
        train: DetectionSums = totals  # type: ignore[assignment]
        test, metrics, test_rate, test_layers = self.task.evaluate(
            self.raw_model,
            self.test_set,
            self.loss_fn,
            T=cfg.T,  # type: ignore[arg-type]
            static=self.layout,
            batch_size=self.per_rank_batch,
            ctx=ctx,
            amp=cfg.amp,
            workers=cfg.workers,
            progress=cfg.progress,
        )
        tr, te = train.means(), test.means()
        row = {
            "epoch": self.epoch + 1,
            "lr": lr,
            "train_loss": tr["loss"],
            "train_box": tr["box"],
            "train_obj": tr["obj"],
            "train_cls": tr["cls"],
            "train_rate": train_rate,
            "test_loss": te["loss"],
            "test_box": te["box"],
            "test_obj": te["obj"],
            "test_cls": te["cls"],
            "test_map": float(metrics["map"]),
            "test_map_50": float(metrics["map_50"]),
            "test_rate": test_rate,
            "epoch_time_s": round(time.perf_counter() - self._epoch_start, 3),
        }
        self._close_task_epoch(
            row,
            row["test_map"],
            False,
            {"train": train_layers, "test": test_layers},
            f"epoch {self.epoch + 1:3d}/{cfg.epochs}  loss {tr['loss']:.4f} (box {tr['box']:.3f} "
            f"obj {tr['obj']:.3f} cls {tr['cls']:.3f})  rate {train_rate:.3f} | test loss "
            f"{te['loss']:.4f}  mAP {row['test_map']:.4f}  mAP@0.5 {row['test_map_50']:.4f}  "
            f"rate {test_rate:.3f}",
        )
