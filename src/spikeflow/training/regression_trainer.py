"""The training run and the ``spikeflow eval`` of a regression task (``spikeflow train
--dataset diabetes``, ``pilotnet``): :class:`~spikeflow.training.trainer.Trainer` with
its data, model, loss, training step and end of epoch taken from a
:class:`~spikeflow.training.regression_task.RegressionTask`.

Everything else is the trainer's: the output folder, config.toml, atomic checkpoints
(``last.pt``, ``best.pt``: the epoch of the **lowest test loss**), exact ``--resume``,
Ctrl-C, ``--device``, ``torchrun``, ``--amp``, ``--compile``, ``--clip-grad-norm``, the
schedules, ``metrics.csv`` (:data:`REGRESSION_COLUMNS`) and ``layers.csv``, the weight
and input quantization, ``--prune`` (``sparsity`` logged), ``--spike-reg`` (its term added
to the regression loss), ``--model-ema`` (evaluated with the regression metrics:
:data:`REGRESSION_EMA_COLUMNS`) and ``--tensorboard``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from torch import Tensor

from spikeflow.prune import sparsity
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import to_time_major
from spikeflow.training.loop import autocast_context
from spikeflow.training.metric_logs import PRUNE_COLUMNS, SPIKE_REG_COLUMNS
from spikeflow.training.pruning import tracks_sparsity
from spikeflow.training.regression_task import (
    REGRESSION_LOSSES,
    RegressionSums,
    RegressionTask,
    regression_task,
)
from spikeflow.training.task_trainer import TaskTrainer

__all__ = [
    "REGRESSION_COLUMNS",
    "REGRESSION_EMA_COLUMNS",
    "RegressionTrainer",
    "evaluate_regression_checkpoint",
    "format_regression_evaluation",
]

#: The columns of a regression run's ``metrics.csv`` (then ``train_spike_reg`` with
#: ``--spike-reg``, :data:`REGRESSION_EMA_COLUMNS` with ``--model-ema``).
REGRESSION_COLUMNS = (
    "epoch", "lr", "train_loss", "train_mse", "train_mae", "train_r2", "train_rate",
    "test_loss", "test_mse", "test_mae", "test_r2", "test_rate", "epoch_time_s",
)  # fmt: skip
#: The model EMA's evaluation (``--model-ema``): its test loss and metrics.
REGRESSION_EMA_COLUMNS = (
    "test_loss_ema", "test_mse_ema", "test_mae_ema", "test_r2_ema", "test_rate_ema",
)  # fmt: skip


class RegressionTrainer(TaskTrainer):
    """Trains a model on a regression dataset; :meth:`fit` runs it. Arguments as
    :class:`~spikeflow.training.trainer.Trainer`'s. ``best_test_acc`` of the result (and
    the checkpoints' ``best``) holds the **lowest test loss** here, ``best_epoch`` its
    epoch; the history's rows hold ``test_mse``, ``test_mae`` and ``test_r2``.

    Raises:
        ConfigurationError: ``config.dataset`` is not a regression dataset, or an option
            a regression run refuses (before anything is written).
    """

    task_kind = "regression"
    sums_class = RegressionSums

    task_of = staticmethod(regression_task)

    def _run_loss(self) -> Any:
        return self.task.make_loss(self.config)

    def _resolved_readout(self) -> str:
        return self.config.regression_readout

    def _metric_columns(self) -> tuple[str, ...]:
        cfg = self.config
        return (REGRESSION_COLUMNS + (PRUNE_COLUMNS if tracks_sparsity(cfg) else ())
                + (SPIKE_REG_COLUMNS if cfg.spike_reg != "none" else ())
                + (REGRESSION_EMA_COLUMNS if cfg.model_ema else ()))  # fmt: skip

    def _train_step(self, x: Tensor, y: Tensor, step: int, steps: int) -> float:
        cfg, ctx = self.config, self.ctx
        self._phase = "forward"
        x = to_time_major(x.to(ctx.device, non_blocking=True), cfg.T, self.layout)  # type: ignore[arg-type]
        if self.spike_reg is not None:
            self.spike_reg.clear()  # (what the evaluation's forwards left)
        with autocast_context(ctx.device, cfg.amp):
            out = self.model(x)
        pred, target = self.loss_fn.pairs(out, y.to(ctx.device))
        loss = REGRESSION_LOSSES[self.loss_fn.loss](pred, target, **self.loss_fn.kwargs)
        value = total = float(loss.detach())
        regularised = 0.0
        if self.spike_reg is not None:  # on this forward's spikes / events
            term = self.spike_reg()
            regularised = float(term.detach())
            loss = loss + term
            total = float(loss.detach())
        self._check_step_loss(total, step, steps)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._phase = "update"
        self._update()
        self._update_ema(step)
        self._phase = "done"
        self.epoch_sums.add_pairs(value, pred, target, len(y), regularised)  # type: ignore[attr-defined]
        self.step_in_epoch = step + 1
        self.global_step += 1
        return value

    def _end_epoch(self) -> None:
        cfg = self.config
        lr, totals, train_layers, train_rate = self._epoch_train_totals()
        train: RegressionSums = totals  # type: ignore[assignment]
        test, test_rate, test_layers = self.task.evaluate(
            self.raw_model, self.test_set, self.loss_fn, T=cfg.T,  # type: ignore[arg-type]
            static=self.layout, batch_size=self.per_rank_batch, ctx=self.ctx, amp=cfg.amp,
            workers=cfg.workers, progress=cfg.progress,
        )  # fmt: skip
        tr, te = train.metrics(), test.metrics()
        ema = {}
        if self.ema is not None:  # the average, evaluated alike (rank 0's buffers)
            self.ctx.broadcast_buffers(self.ema.module)
            test_ema, rate_ema, _ = self.task.evaluate(
                self.ema.module, self.test_set, self.loss_fn, T=cfg.T,  # type: ignore[arg-type]
                static=self.layout, batch_size=self.per_rank_batch, ctx=self.ctx, amp=cfg.amp,
                workers=cfg.workers, progress=cfg.progress,
            )  # fmt: skip
            metrics = test_ema.metrics()
            ema = {"test_loss_ema": test_ema.mean_loss, "test_mse_ema": metrics["mse"],
                   "test_mae_ema": metrics["mae"], "test_r2_ema": metrics["r2"],
                   "test_rate_ema": rate_ema}  # fmt: skip
        row = {
            "epoch": self.epoch + 1, "lr": lr, "train_loss": train.mean_loss,
            "train_mse": tr["mse"], "train_mae": tr["mae"], "train_r2": tr["r2"],
            "train_rate": train_rate, "test_loss": test.mean_loss, "test_mse": te["mse"],
            "test_mae": te["mae"], "test_r2": te["r2"], "test_rate": test_rate,
            "epoch_time_s": round(time.perf_counter() - self._epoch_start, 3),
        }  # fmt: skip
        regularised = averaged = pruned = ""
        layer_sparsity: dict[str, float] = {}
        if tracks_sparsity(cfg):  # pruned or quantized: the share of zero weights
            report = sparsity(self.raw_model)
            row["sparsity"] = report.sparsity
            layer_sparsity = {layer.name: layer.sparsity for layer in report.layers}
            pruned = f"  sparsity {100 * report.sparsity:.2f}%"
        if self.spike_reg is not None:  # the term's mean over the epoch's samples
            row["train_spike_reg"] = train.mean_spike_reg
            regularised = f"  spike reg {train.mean_spike_reg:.4g}"
        if ema:
            row.update(ema)
            averaged = f" | EMA loss {ema['test_loss_ema']:.4f}  R2 {ema['test_r2_ema']:.4f}"
        self._close_task_epoch(
            row,
            row["test_loss"],
            True,
            {"train": train_layers, "test": test_layers},
            f"epoch {self.epoch + 1:3d}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
            f"R2 {tr['r2']:.4f}  rate {train_rate:.3f}{regularised} | test loss "
            f"{row['test_loss']:.4f}  MSE {te['mse']:.4f}  MAE {te['mae']:.4f}  R2 "
            f"{te['r2']:.4f}  rate {test_rate:.3f}{pruned}{averaged}",
            layer_sparsity,
        )


def evaluate_regression_checkpoint(
    path: Any,
    payload: dict[str, Any],
    config: TrainConfig,
    *,
    count: int | None,
    chosen_by: str,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int = 0,
    progress: bool = False,
    ema: bool = False,
) -> dict[str, Any]:
    """``spikeflow eval`` of a regression run's checkpoint ``path`` (its ``payload`` and
    saved ``config``) on ``count`` samples of the test split (None: all the run tested):
    what :func:`~spikeflow.training.evaluation.evaluate_checkpoint` returns for a
    classification run, with ``test_mse``, ``test_mae``, ``test_r2`` and
    ``regression_readout`` in place of the accuracy and its readout; with ``ema`` the
    weights' moving average a ``--model-ema`` run kept (``weights``: ``"ema"``)."""
    from spikeflow.models.common import reading_saved_run
    from spikeflow.training.checkpoint import load_weights
    from spikeflow.training.config import resolve
    from spikeflow.training.data import even_subset, static_layout
    from spikeflow.training.distributed import DistContext, pick_device
    from spikeflow.training.evaluation import run_fields

    config = resolve(replace(config, test_samples=None))
    task = RegressionTask(config.dataset)
    _, full, info = task.build_datasets(config, with_train=False)
    test_set = even_subset(full, count)
    ctx = DistContext(device=pick_device(device))
    with reading_saved_run():
        model = task.build_model(config, info).to(ctx.device)
    load_weights(model, payload, path, ema=ema)
    sums, rate, layers = task.evaluate(
        model, test_set, task.make_loss(config), T=config.T,  # type: ignore[arg-type]
        static=static_layout(model, info, config.T),  # type: ignore[arg-type]
        batch_size=batch_size or config.batch_size, ctx=ctx, amp=config.amp,  # type: ignore[arg-type]
        workers=workers, progress=progress,
    )  # fmt: skip
    metrics = sums.metrics()
    return {
        "checkpoint": str(path),
        **run_fields(config, payload, sums.count, full, chosen_by),
        "weights": "ema" if ema else "model",
        "test_loss": sums.mean_loss,
        "loss": config.loss,
        "test_mse": metrics["mse"],
        "test_mae": metrics["mae"],
        "test_r2": metrics["r2"],
        "regression_readout": config.regression_readout,
        "test_rate": rate,
        "amp": config.amp,
        "layers": [asdict(s) for s in layers],
    }


def format_regression_evaluation(result: dict[str, Any]) -> str:
    """The report ``spikeflow eval`` prints for a regression run's result."""
    lines = []
    if result.get("run_folder"):
        name = Path(result["checkpoint"]).name
        why = "the epoch with the lowest test loss" if name == "best.pt" else "its last epoch"
        lines.append(f"{result['run_folder']} is a run folder: evaluating its {name} ({why})")
    lines += [
        f"{result['checkpoint']}: {result['dataset']}, model {result['model']}, T={result['T']}, "
        f"epoch {result['epoch']}/{result['epochs']}, {result['samples']} of the "
        f"{result['split_samples']} test samples"
        + ("; the model EMA's weights (--ema)" if result.get("weights") == "ema" else ""),
        f"  {result['loss']} loss {result['test_loss']:.4f} (readout "
        f"{result['regression_readout']})   MSE {result['test_mse']:.4f}   MAE "
        f"{result['test_mae']:.4f}   R^2 {result['test_r2']:.4f}   mean firing rate "
        f"{result['test_rate']:.4f}",
        f"test R^2: {result['test_r2']:.4f}",
    ]
    return "\n".join(lines)
