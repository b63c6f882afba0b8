"""The training run behind ``spikeflow train``: data, model, optimisation, checkpoints,
monitors, logs and plots, in one process or many (``torchrun``).

Exact resume: the data order of an epoch is a function of ``(seed, epoch)`` (a
:class:`~torch.utils.data.distributed.DistributedSampler`, in one process too), the
global generators (dropout masks) are saved per process in every checkpoint, and a run
interrupted within an epoch saves how many batches of it were done and the epoch's
running sums. So a run stopped anywhere and resumed computes the same numbers as one
that was never stopped.

:class:`Trainer` is put together from mixins, one module each: its setup
(:mod:`~spikeflow.training.trainer_setup`), epochs and steps
(:mod:`~spikeflow.training.trainer_steps`), checkpoints
(:mod:`~spikeflow.training.trainer_checkpoints`) and plots
(:mod:`~spikeflow.training.trainer_plots`); here are its task's hooks, the run and its
interruption, and the end of an epoch.
"""

from __future__ import annotations

import gc
import math
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from spikeflow.errors import ConfigurationError
from spikeflow.prune import sparsity
from spikeflow.training.build import build_model
from spikeflow.training.config import TrainConfig, resolve, resolved_readout
from spikeflow.training.data import build_datasets
from spikeflow.training.loop import EpochSums, evaluate, reduce_monitor
from spikeflow.training.metric_logs import epoch_columns
from spikeflow.training.monitors import LayerStats
from spikeflow.training.pruning import tracks_sparsity
from spikeflow.training.ra_sampler import repeated_augmentation_indices
from spikeflow.training.resume import config_for_resume, describe_position
from spikeflow.training.run_checks import run_loss
from spikeflow.training.run_folder import remove_empty_folders
from spikeflow.training.run_lock import RunLock
from spikeflow.training.train_config import warn_exponential_default
from spikeflow.training.trainer_checkpoints import CheckpointMixin
from spikeflow.training.trainer_plots import PlotsMixin
from spikeflow.training.trainer_setup import SetupMixin
from spikeflow.training.trainer_steps import NonFiniteLossError, StepsMixin, _StopRequested

__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "build_model", "config_for_resume"]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    output_dir: Path
    epochs_completed: int
    history: list[dict[str, Any]]
    best_test_acc: float
    best_epoch: int
    interrupted: bool = False
    plots: list[Path] = field(default_factory=list)

    @property
    def final_test_acc(self) -> float:
        """The last epoch's test accuracy (a detection run's: its test COCO mAP, as
        ``best_test_acc`` holds the best; a regression run's: its test loss, as
        ``best_test_acc`` holds the lowest); NaN before the first epoch."""
        if not self.history:
            return math.nan
        row = self.history[-1]
        for key in ("test_map", "test_r2"):
            if key in row:
                return float(row["test_map"] if key == "test_map" else row["test_loss"])
        return float(row["test_acc"])


class Trainer(SetupMixin, StepsMixin, CheckpointMixin, PlotsMixin):
    """Trains ``config``'s model on its dataset; :meth:`fit` runs it.

    Args:
        config: the run (unresolved fields are filled by
            :func:`~spikeflow.training.config.resolve`).
        resume: a checkpoint payload (:func:`~spikeflow.training.checkpoint.load_checkpoint`)
            to continue; ``config`` must then come from :func:`config_for_resume`. The
            model is then built as the run built it (see :func:`build_model`'s
            ``saved``).
        callbacks: objects with optional methods ``on_step_end(trainer, epoch, step,
            loss)`` and ``on_epoch_end(trainer, epoch, row)`` (0-based ``epoch``).
        log: where progress lines go (default ``print`` on rank 0; ``None`` = silent).
        resume_dir: the folder the ``resume`` checkpoint was read from: a resume that
            writes into another folder is refused there if it holds an earlier run
            (unless ``overwrite``), as a new run is.

    Raises:
        ConfigurationError: an invalid ``config``, or a detection dataset (trained by
            :class:`~spikeflow.training.detection_trainer.DetectionTrainer`).
    """

    def __init__(
        self,
        config: TrainConfig,
        resume: dict[str, Any] | None = None,
        callbacks: Sequence[Any] = (),
        log: Any = print,
        resume_dir: str | os.PathLike | None = None,
    ) -> None:
        self.config = resolve(config)
        warn_exponential_default(self.config)  # a run's, not an evaluation's
        if self.task_kind == "classification":
            from spikeflow.training.detection_task import detection_task

            if detection_task(self.config.dataset) is not None:
                raise ConfigurationError(
                    f"dataset {self.config.dataset!r} is a detection task, which Trainer "
                    "(classification) does not train: use spikeflow.training."
                    "detection_trainer.DetectionTrainer, or trainer_for(config)"
                )
            from spikeflow.training.regression_task import regression_task

            if regression_task(self.config.dataset) is not None:
                raise ConfigurationError(
                    f"dataset {self.config.dataset!r} is a regression task, which Trainer "
                    "(classification) does not train: use spikeflow.training."
                    "regression_trainer.RegressionTrainer, or trainer_for(config)"
                )
        self.resume_payload = resume
        self.resume_dir = resume_dir
        self.callbacks = list(callbacks)
        self._log = log
        self._stop_requested = False
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best_test_acc = -math.inf
        self.best_epoch = 0
        self._phase = "idle"
        self._stop_all = False
        #: The output folder this run created, and the topmost folder created with it.
        self._created: tuple[Path, Path] | None = None
        #: Rank 0's lock on the output folder while the run lives (run_lock.py).
        self._run_lock: RunLock | None = None
        #: The last checkpoint written or resumed from: its file (None: the resumed
        #: one) and (epoch, step).
        self._checkpoint: tuple[Path | None, tuple[int, int]] | None = None

    # -- setup ------------------------------------------------------------------------

    def log(self, message: str) -> None:
        """Print ``message`` on rank 0 (through tqdm, so bars stay intact)."""
        if self._log is not None and self.ctx.is_main:
            if self._log is print:
                tqdm.write(message)
            else:
                self._log(message)

    # -- what a task other than classification replaces (DetectionTrainer) ------------

    #: The task this trainer trains: a classification trainer refuses a detection
    #: dataset (DetectionTrainer's is "detection").
    task_kind: str = "classification"
    #: The running sums of an epoch; the DataLoader's ``collate_fn`` (None: default).
    sums_class: type[EpochSums] = EpochSums
    collate_fn: Any = None

    def _build_datasets(self) -> tuple[Any, Any, Any]:
        return build_datasets(self.config)

    def _build_model(self) -> nn.Module:
        return build_model(self.config, self.info)

    def _run_loss(self) -> Any:
        return run_loss(self.config, self.raw_model, self.info)

    def _resolved_readout(self) -> str:
        return resolved_readout(self.config)

    def _metric_columns(self) -> tuple[str, ...]:
        cfg = self.config
        return epoch_columns(tracks_sparsity(cfg), cfg.spike_reg != "none", cfg.model_ema)

    def _epoch_indices(self, sampler: Any) -> list[int]:
        """This process's training indices for the epoch: ``sampler``'s (a
        ``DistributedSampler`` set to the epoch), or with ``--ra-sampler`` the repeated
        augmentation's (:mod:`~spikeflow.training.ra_sampler`)."""
        cfg, ctx = self.config, self.ctx
        if not cfg.ra_sampler:
            return list(sampler)
        return repeated_augmentation_indices(
            len(self.train_set),
            ctx.world_size,
            ctx.rank,
            cfg.seed,
            self.epoch,
            cfg.ra_reps,  # type: ignore[arg-type]
        )

    def _update_ema(self, step: int) -> None:
        """After a batch's weight update: ``--model-ema``'s average takes the weights at
        every ``model_ema_steps``-th batch of the epoch (copies them in the warm-up)."""
        cfg = self.config
        if self.ema is not None and step % cfg.model_ema_steps == 0:
            self.ema.update(self.raw_model, copy_only=self.epoch < cfg.warmup_epochs)

    # -- the run ----------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train until ``epochs`` (or ``stop_after``) epochs are complete, or Ctrl-C; on
        ``config.threads`` CPU threads where it is set (restored afterwards)."""
        threads = torch.get_num_threads()
        if self.config.threads is not None:
            torch.set_num_threads(self.config.threads)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(threads)
            self._release_run_lock()

    def _release_run_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def _fit(self) -> TrainResult:
        try:
            self._setup()
        except BaseException:
            self._release_run_lock()  # (its file first: the folder may be removed)
            if self._created is not None:  # a refused run leaves no folder of its own
                remove_empty_folders(*self._created)
            if hasattr(self, "ctx"):
                self.ctx.close()
            raise
        cfg = self.config
        interrupted = finished = False
        previous_handler = self._install_sigint()
        try:
            info = f"{len(self.train_set)} train / {len(self.test_set)} test"  # type: ignore[arg-type]
            frames = "" if self.info.static else f" (frames split by {cfg.split_by})"
            self.log(f"spikeflow train: {cfg.dataset} ({info}), model {cfg.model}, T={cfg.T}"
                     f"{frames}, {self.ctx.world_size} process(es) on {self.ctx.device}; "
                     f"writing to {self.output_dir}")  # fmt: skip
            last_epoch = min(cfg.epochs, cfg.stop_after or cfg.epochs)
            if self.resume_payload is not None and self.epoch >= last_epoch:
                self.log(f"nothing to train: the resumed run has done {self.epoch} of its "
                         f"{cfg.epochs} epochs" + ("" if self.epoch >= cfg.epochs else
                         f" (--stop-after {cfg.stop_after})"))  # fmt: skip
            while self.epoch < last_epoch:
                self._train_epoch()
                self._end_epoch()
                self.epoch += 1
                self.step_in_epoch = 0
                if self._stop_after_evaluation() and self.epoch < last_epoch:
                    # Ctrl-C during the evaluation: the epoch's checkpoint is complete.
                    interrupted = True
                    self.log(f"stopped after epoch {self.epoch}: saved {self._last}; continue "
                             f"with  spikeflow train --resume {self._last}")  # fmt: skip
                    break
            finished = True
        except _StopRequested:
            interrupted = True
            self._save_interrupted()
        except KeyboardInterrupt:  # a second Ctrl-C: out at once, the last checkpoint stands
            interrupted = True
            self.log(self._aborted_message())
        finally:
            self._restore_sigint(previous_handler)
            self.train_monitor.remove()
            if getattr(self, "spike_reg", None) is not None:
                self.spike_reg.remove()
            if self.tensorboard is not None:
                self.tensorboard.close()
            # The DDP wrapper's reducer holds the process group: released first, the group
            # is torn down by close() below, while every process is in it, not later
            # when this trainer is collected (a peer gone by then: its gloo threads hung).
            if self.model is not self.raw_model:
                self.model = self.raw_model
                gc.collect()
            # After a complete run every process leaves the group together (no process
            # exits while another still tears down its connections); after an error a
            # barrier could wait forever, so there is none.
            self.ctx.close(sync=finished)
        plots = [] if interrupted else self._plots()
        return TrainResult(self.output_dir, self.epoch, self.history, self.best_test_acc,
                           self.best_epoch, interrupted, plots)  # fmt: skip

    def _stop_after_evaluation(self) -> bool:
        """Whether any process was asked to stop by the end of the epoch (during its
        evaluation): one reduction, so that every process stops at the saved epoch."""
        if not self.ctx.distributed:
            return self._stop_requested
        return self.ctx.all_reduce_sum([float(self._stop_requested)])[0] > 0

    @property
    def _last(self) -> Path:
        return self.output_dir / "last.pt"

    def _install_sigint(self) -> dict[int, Any] | None:
        """Ctrl-C (SIGINT) and SIGTERM (torchrun, batch schedulers) stop the run at the
        end of the current step; a second Ctrl-C raises KeyboardInterrupt at once."""
        if threading.current_thread() is not threading.main_thread():
            return None
        owner = os.getpid()

        def handler(signum: int, frame: Any) -> None:
            if os.getpid() != owner:  # a forked DataLoader worker: the main process decides
                return
            self._stop_requested = True
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            self.log(f"\n{name}: stopping after this step and saving a checkpoint "
                     "(Ctrl-C again aborts without saving)")  # fmt: skip
            signal.signal(signal.SIGINT, signal.default_int_handler)

        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _aborted_message(self) -> str:
        """What a run aborted by a second Ctrl-C says of the checkpoint that stands: the
        last one written or resumed from, or that none was written yet."""
        if self._checkpoint is None:
            return ("aborted: nothing saved, and no checkpoint was written before: the run "
                    "starts again from the beginning")  # fmt: skip
        path, position = self._checkpoint
        if path is None:
            where = f" in {self.resume_dir}" if self.resume_dir is not None else ""
            return (f"aborted: nothing saved; the last checkpoint is the one this run resumed "
                    f"from{where} ({describe_position(position)})")  # fmt: skip
        return (
            f"aborted: nothing saved; the last checkpoint is {path} ({describe_position(position)})"
        )

    @staticmethod
    def _restore_sigint(previous: dict[int, Any] | None) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)

    def _save_interrupted(self) -> None:
        """Save the run as of the end of the step just finished (Ctrl-C, SIGTERM): a
        stop is raised only between steps, so the weights, running sums and random
        states captured now are those the next step starts from. (No capture per step:
        the RNG state as of a step's start was once kept for a save in the middle of a
        step, which no interruption makes since a second Ctrl-C aborts unsaved.)"""
        if self._phase not in ("done", "idle"):  # (mid-step: never saved)
            self.log(f"interrupted while updating the weights: nothing saved; the last "
                     f"checkpoint is {self.output_dir / 'last.pt'}")  # fmt: skip
            return
        self.save(complete=False)
        self.log(f"interrupted in epoch {self.epoch + 1} after {self.step_in_epoch} steps: "
                 f"saved {self.output_dir / 'last.pt'}; continue with  spikeflow train "
                 f"--resume {self.output_dir / 'last.pt'}")  # fmt: skip

    def _end_epoch(self) -> None:
        cfg, ctx = self.config, self.ctx
        lr, train, train_layers, train_rate = self._epoch_train_totals()
        test, test_rate, test_layers = evaluate(
            self.raw_model, self.test_set, self.eval_loss_fn, T=cfg.T,  # type: ignore[arg-type]
            static=self.layout,
            batch_size=self.per_rank_batch, ctx=self.data_ctx, amp=cfg.amp, workers=cfg.workers,
            progress=cfg.progress, readout=self.readout,
        )  # fmt: skip
        ema = ""
        if self.ema is not None:  # the average, evaluated alike (rank 0's buffers)
            ctx.broadcast_buffers(self.ema.module)
            test_ema, rate_ema, _ = evaluate(
                self.ema.module, self.test_set, self.eval_loss_fn, T=cfg.T,  # type: ignore[arg-type]
                static=self.layout, batch_size=self.per_rank_batch, ctx=ctx, amp=cfg.amp,
                workers=cfg.workers, progress=cfg.progress, readout=self.readout,
            )  # fmt: skip
            ema = f" | EMA acc {100 * test_ema.accuracy:5.2f}%"
        row = {
            "epoch": self.epoch + 1, "lr": lr,
            "train_loss": train.mean_loss, "train_acc": train.accuracy, "train_rate": train_rate,
            "test_loss": test.mean_loss, "test_acc": test.accuracy, "test_rate": test_rate,
            "epoch_time_s": None,
        }  # fmt: skip
        row["epoch_time_s"] = round(time.perf_counter() - self._epoch_start, 3)
        if self.ema is not None:
            row.update(test_loss_ema=test_ema.mean_loss, test_acc_ema=test_ema.accuracy,
                       test_rate_ema=rate_ema)  # fmt: skip
        regularised = ""
        if self.spike_reg is not None:  # the term's mean over the epoch's samples
            row["train_spike_reg"] = train.mean_spike_reg
            regularised = f"  spike reg {train.mean_spike_reg:.4g}"
        pruned, layer_sparsity = "", {}
        if tracks_sparsity(cfg):
            report = sparsity(self.raw_model)
            row["sparsity"] = report.sparsity
            layer_sparsity = {layer.name: layer.sparsity for layer in report.layers}
            pruned = f"  sparsity {100 * row['sparsity']:.2f}%"
        self.history.append(row)
        best = test.accuracy > self.best_test_acc
        if best:
            self.best_test_acc, self.best_epoch = test.accuracy, self.epoch + 1
        layers: dict[str, list[LayerStats]] = {"train": train_layers, "test": test_layers}
        self._close_epoch(
            row,
            layers,
            best,
            f"epoch {self.epoch + 1:3d}/{cfg.epochs}  loss {train.mean_loss:.4f}  "
            f"acc {100 * train.accuracy:5.2f}%  rate {train_rate:.3f}{regularised} | test loss "
            f"{test.mean_loss:.4f}  acc {100 * test.accuracy:5.2f}%  rate {test_rate:.3f}"
            f"{pruned}{ema}",
            layer_sparsity,
        )

    def _epoch_train_totals(self) -> tuple[float, EpochSums, list[LayerStats], float]:
        """The end of an epoch's training (the detection trainer's too): the learning
        rate it ran at, its sums over every process, the monitor's layer statistics and
        mean firing rate over every process; rank 0's BN statistics then go to every
        process, to be evaluated and saved."""
        ctx = self.data_ctx  # (--tensor-parallel: over a data-parallel group)
        lr = self._run_lr()
        train = self.epoch_sums.reduced(ctx)
        reduce_monitor(self.train_monitor, ctx)
        train_layers = self.train_monitor.summary()
        train_rate = self.train_monitor.mean_firing_rate()
        ctx.broadcast_buffers(self.raw_model)  # evaluate (and save) rank 0's BN statistics
        return lr, train, train_layers, train_rate

    def _close_epoch(
        self,
        row: dict[str, Any],
        layers: dict[str, list[LayerStats]],
        best: bool,
        message: str,
        layer_sparsity: dict[str, float] | None = None,
    ) -> None:
        """The end of an evaluated epoch whose ``row`` is in the history (the detection
        trainer's too): the model checked finite, the schedule stepped, the logs
        written, the checkpoints saved, ``message`` logged, the callbacks called."""
        self._check_finite_model()
        if self.scheduler is not None:  # after the evaluation, just before the checkpoint
            self.scheduler.step()
        if self.csv is not None:
            self.csv.log_epoch(row, layers)
        if self.tensorboard is not None:
            self.tensorboard.log_epoch(row, layers, layer_sparsity or {})
        self.save(complete=True, best=best)
        self.log(message)
        for callback in self.callbacks:
            if hasattr(callback, "on_epoch_end"):
                callback.on_epoch_end(self, self.epoch, row)
