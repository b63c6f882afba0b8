"""The training run behind ``spikeflow train``: data, model, optimisation, checkpoints,
monitors, logs and plots, in one process or many (``torchrun``).

Exact resume: the data order of an epoch is a function of ``(seed, epoch)`` (a
:class:`~torch.utils.data.distributed.DistributedSampler`, in one process too), the
global generators (dropout masks) are saved per process in every checkpoint, and a run
interrupted within an epoch saves how many batches of it were done and the epoch's
running sums. So a run stopped anywhere and resumed computes the same numbers as one
that was never stopped.
"""

from __future__ import annotations

import contextlib
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
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from spikeflow.errors import ConfigurationError, SpikeflowError
from spikeflow.layers.delay import DelayedLinear, clamp_delays, set_delay_sigma
from spikeflow.models.common import reading_saved_run
from spikeflow.neurons.parallel import mask_lambda, set_mask_lambda
from spikeflow.prune import ThresholdSchedule, sparsity
from spikeflow.training import checkpoint as ckpt
from spikeflow.training.build import build_model
from spikeflow.training.config import (
    TrainConfig,
    resolve,
    resolved_readout,
    save_config,
)
from spikeflow.training.data import build_datasets, static_layout, to_time_major
from spikeflow.training.decolle import (
    check_decolle_model,
    decolle_output_loss,
    decolle_parameter_groups,
    decolle_rule,
    decolle_train_step,
)
from spikeflow.training.distributed import ddp_options, setup_distributed
from spikeflow.training.eprop import eprop_rule, eprop_train_step
from spikeflow.training.eventprop import check_eventprop_model
from spikeflow.training.loop import (
    EpochSums,
    autocast_context,
    count_correct,
    epoch_learning_rates,
    evaluate,
    make_lr_scheduler,
    reduce_monitor,
)
from spikeflow.training.metric_logs import (
    CSVLogger,
    TensorBoardLogger,
    check_tensorboard,
    epoch_columns,
)
from spikeflow.training.mixing import BatchMixer
from spikeflow.training.monitors import LayerStats, SpikeMonitor
from spikeflow.training.online import (
    check_online_model,
    online_backward,
    per_step_loss,
    trains_per_step,
)
from spikeflow.training.pruning import (
    ignore_fixed_buffers,
    make_grad_rewiring,
    make_threshold_schedule,
    prune_settings,
    tracks_sparsity,
)
from spikeflow.training.resume import config_for_resume, describe_position
from spikeflow.training.run_checks import check_tbptt_run, non_finite_advice, run_loss
from spikeflow.training.run_folder import (
    carry_history,
    check_output_dir,
    claim_for_launch,
    claimed_by_this_launch,
    earlier_run_files,
    remove_empty_folders,
    remove_run_outputs,
    reserve_default_output_dir,
)
from spikeflow.training.tbptt import tbptt_backward, tbptt_windows, windowed_loss
from spikeflow.training.trainer_checkpoints import CheckpointMixin, seed_everything
from spikeflow.training.trainer_plots import PlotsMixin

__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "build_model", "config_for_resume"]


class NonFiniteLossError(SpikeflowError, FloatingPointError):
    """The loss, or a weight or buffer of the model, became NaN or infinite; the message
    names where and when."""


class _StopRequested(Exception):
    """Ctrl-C was pressed: stop at the end of the current step."""


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
        ``best_test_acc`` holds the best); NaN before the first epoch."""
        if not self.history:
            return math.nan
        row = self.history[-1]
        return float(row["test_map"] if "test_map" in row else row["test_acc"])


class Trainer(CheckpointMixin, PlotsMixin):
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
        if type(self)._build_datasets is Trainer._build_datasets:  # classification data
            from spikeflow.training.detection_task import detection_task

            if detection_task(self.config.dataset) is not None:
                raise ConfigurationError(
                    f"dataset {self.config.dataset!r} is a detection task, which Trainer "
                    "(classification) does not train: use spikeflow.training."
                    "detection_trainer.DetectionTrainer, or trainer_for(config)"
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
        self._step_start_rng: dict[str, Any] | None = None
        #: The output folder this run created, and the topmost folder created with it.
        self._created: tuple[Path, Path] | None = None
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

    def _setup(self) -> None:
        cfg = self.config
        if cfg.plots == "on":
            from spikeflow.training.plots import check_matplotlib

            check_matplotlib()
        if cfg.tensorboard:
            check_tensorboard()
        self.ctx = ctx = setup_distributed(cfg.device)
        if cfg.amp == "fp16" and ctx.device.type != "cuda":
            raise ConfigurationError(
                "amp='fp16' needs a CUDA GPU (gradient scaling); on the CPU use amp='bf16' or 'off'"
            )
        if cfg.batch_size % ctx.world_size:  # type: ignore[operator]
            raise ConfigurationError(
                f"batch_size {cfg.batch_size} (the global batch) must be a multiple of the "
                f"number of processes ({ctx.world_size})"
            )
        self.per_rank_batch = cfg.batch_size // ctx.world_size  # type: ignore[operator]
        # Rank 0 decides (and, for the default, reserves) the folder for every process;
        # all of them then refuse together instead of some waiting forever.
        out, problem = None, None
        if ctx.is_main:
            try:
                if cfg.output_dir:
                    out = cfg.output_dir
                    top = check_output_dir(Path(out))  # created now, or refused
                    self._created = None if top is None else (Path(out), top)
                else:  # checked there, before it is created
                    out, top = reserve_default_output_dir(cfg.dataset)
                    self._created = (Path(out), top)
            except ConfigurationError as exc:
                problem = str(exc)
        out, problem = ctx.all_gather_object((out, problem))[0]
        if problem:
            raise ConfigurationError(problem)
        self.output_dir = Path(out)
        cfg.output_dir = str(self.output_dir)
        # A new run, or a resume written into another run's folder, must not mix with
        # (or silently replace) the results there; rank 0's view decides for every process.
        self._replaces: list[str] = []
        self._first_attempts = False  # what _replaces holds is a first attempt's
        if self.resume_payload is None or (
            self.resume_dir is not None
            and self.output_dir.resolve() != Path(self.resume_dir).resolve()
        ):
            found = earlier_run_files(self.output_dir) if ctx.is_main else []
            # A torchrun restart whose first attempt claimed the folder and died before
            # its first checkpoint: those files are the first attempt's, to replace.
            own = ctx.is_main and bool(found) and claimed_by_this_launch(self.output_dir)
            found, own = ctx.all_gather_object((found, own))[0]
            self._first_attempts = own
            if found and not cfg.overwrite and not own:
                how = (f"continue that run with --resume {self.output_dir}, "
                       if "last.pt" in found else "")  # fmt: skip
                raise ConfigurationError(
                    f"output_dir {self.output_dir} holds an earlier run ({', '.join(found)}); "
                    f"choose another --output-dir, {how}or pass --overwrite (overwrite=true) "
                    "to replace it"
                )
            self._replaces = found

        self.train_set, self.test_set, self.info = self._build_datasets()
        extra = -len(self.train_set) % ctx.world_size  # type: ignore[arg-type]
        if extra:
            self.log(
                f"note: {len(self.train_set)} training samples do not split evenly over "  # type: ignore[arg-type]
                f"{ctx.world_size} processes: each epoch repeats {extra} of them to even "
                "the shards (DistributedSampler), so its last step differs from a "
                "one-process run's"
            )
        seed_everything(cfg.seed)
        # A resume builds the checkpoint's model as its run did (build_model's ``saved``).
        with reading_saved_run() if self.resume_payload is not None else contextlib.nullcontext():
            self.raw_model = self._build_model().to(ctx.device)
        # Per-process streams for dropout etc. (rank 0's equals a one-process run's).
        seed_everything(cfg.seed + ctx.rank)
        self.model: nn.Module = self.raw_model
        self.layout = static_layout(self.raw_model, self.info, cfg.T)
        self._takes_target = bool(getattr(self.raw_model, "takes_target", False))
        if cfg.online:
            check_online_model(self.raw_model, self._takes_target)
        check_tbptt_run(cfg, self.raw_model, self._takes_target)  # (only with --tbptt)
        self.eprop = eprop_rule(cfg, self.raw_model, ctx.distributed)
        check_decolle_model(cfg, self.raw_model, ctx.distributed)
        self.decolle = decolle_rule(cfg, self.raw_model)
        check_eventprop_model(cfg, self.raw_model)
        if self._takes_target and (cfg.mixup or cfg.cutmix):
            raise ConfigurationError(
                f"{type(self.raw_model).__name__} supervises its output spikes from the "
                "labels (event-driven training: a teacher spike for each sample's class), "
                "which a mixed batch does not have: train it without --mixup/--cutmix"
            )
        if ctx.distributed:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            ignore_fixed_buffers(self.raw_model)
            self.model = nn.parallel.DistributedDataParallel(
                self.raw_model, device_ids=device_ids, **ddp_options(self.raw_model)
            )
        if cfg.compile:  # training steps only: evaluation and checkpoints use raw_model
            self.model = torch.compile(self.model)
        # The pruning arguments with their defaults (checked already by resolve()).
        self.prune_settings = prune_settings(cfg.prune, cfg.prune_kwargs, cfg.optimizer,
                                             cfg.epochs)  # fmt: skip
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.steps_per_epoch = math.ceil(
            math.ceil(len(self.train_set) / ctx.world_size) / self.per_rank_batch  # type: ignore[arg-type]
        )
        # Truncated BPTT with per-window updates steps the optimizer once per window.
        per_window = cfg.tbptt is not None and cfg.tbptt_update == "window"
        updates = len(tbptt_windows(cfg.T, cfg.tbptt)) if per_window else 1  # type: ignore[arg-type]
        self.pruning = make_threshold_schedule(
            cfg.prune, self.prune_settings, self.raw_model, self.optimizer, cfg.epochs,
            self.steps_per_epoch * updates, lambda: epoch_learning_rates(cfg),
        )  # fmt: skip
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.amp == "fp16")
        self.loss_fn = self._run_loss()  # checked with the model
        # An online or e-prop run is evaluated with the loss it trains (the mean of
        # per-step losses), a truncated-BPTT run with its windows' losses.
        self.eval_loss_fn = per_step_loss(self.loss_fn) if trains_per_step(cfg) else self.loss_fn
        if cfg.tbptt is not None:
            self.eval_loss_fn = windowed_loss(self.loss_fn, cfg.tbptt)
        if cfg.decolle:  # the last layer's local loss, as the training logs it
            self.eval_loss_fn = decolle_output_loss(cfg.decolle_loss)
        self.mixer = (
            BatchMixer(self.info.num_classes, cfg.mixup, cfg.cutmix)
            if cfg.mixup or cfg.cutmix
            else None
        )
        self.readout = self._resolved_readout()
        # (under --compile too: its hooks add to tensors, which the graph does not guard
        # on the values of, so recording recompiles nothing after the first steps)
        self.train_monitor = SpikeMonitor(self.raw_model)
        self.epoch_sums = self.sums_class()
        resume_epoch = None
        if self.resume_payload is not None:
            resume_epoch = self._restore(self.resume_payload)
        self.csv = self.tensorboard = None
        if ctx.is_main:
            # Only now: a run refused above (unknown model, bad kwargs) leaves no folder,
            # and one with --overwrite keeps the earlier run until it is about to write.
            if self._replaces:
                remove_run_outputs(self.output_dir)
                self.log(
                    f"torchrun restart: replaced what the first attempt wrote in {self.output_dir}"
                    if self._first_attempts
                    else f"--overwrite: removed the earlier run in {self.output_dir}"
                )
            self.output_dir.mkdir(parents=True, exist_ok=True)
            claim_for_launch(self.output_dir)
            if resume_epoch is not None and self.resume_dir is not None:
                recorded_best = int(self.resume_payload["best"]["epoch"])
                carry_history(Path(self.resume_dir), self.output_dir, recorded_best)
            if self.resume_payload is not None:
                self._repair_best(self.resume_payload)
            self.csv = CSVLogger(self.output_dir, resume_epoch=resume_epoch, history=self.history,
                                 columns=self._metric_columns())  # fmt: skip
            if cfg.tensorboard:
                self.tensorboard = TensorBoardLogger(self.output_dir)
            save_config(cfg, self.output_dir / "config.toml")

    # -- what a task other than classification replaces (DetectionTrainer) ------------

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
        return epoch_columns(tracks_sparsity(self.config))

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        # Learnable synaptic delays get their own learning rate, without weight decay.
        delays = {id(m.delay): m.delay for m in self.raw_model.modules()
                  if isinstance(m, DelayedLinear)}  # fmt: skip
        params: Any = self._trained_parameters()
        groups = decolle_parameter_groups(cfg, self.raw_model)  # --decolle-layer-lr
        if groups is not None:
            params = groups
        if delays:
            params = [
                {"params": [p for p in params if id(p) not in delays]},
                {"params": list(delays.values()), "lr": cfg.lr * cfg.delay_lr_scale,
                 "weight_decay": 0.0},
            ]  # fmt: skip
        if cfg.prune == "grad_r":
            return make_grad_rewiring(self.raw_model, cfg.lr, cfg.weight_decay,
                                      self.prune_settings)  # fmt: skip
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)  # fmt: skip
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _trained_parameters(self) -> list[nn.Parameter]:
        """What the optimizer updates and the clipping scales: the model's parameters and,
        with e-prop's adaptive feedback, ``B`` (it takes ``W_out``'s steps)."""
        extra = [] if self.eprop is None else list(self.eprop.parameters())
        return [*self.raw_model.parameters(), *extra]

    def _run_lr(self) -> float:
        """The run's learning rate now (``--lr`` as scheduled), which the metrics log:
        the first parameter group's, over its multiple of ``lr`` where it has one
        (``--decolle-layer-lr``'s groups)."""
        group = self.optimizer.param_groups[0]
        return float(group["lr"]) / float(group.get("lr_scale", 1.0))

    def _make_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        return make_lr_scheduler(self.optimizer, self.config)

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

    def _fit(self) -> TrainResult:
        try:
            self._setup()
        except BaseException:
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
            self.log(f"aborted: nothing saved; the last checkpoint is {self._last}")
        finally:
            self._restore_sigint(previous_handler)
            self.train_monitor.remove()
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

    @staticmethod
    def _restore_sigint(previous: dict[int, Any] | None) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)

    def _save_interrupted(self) -> None:
        if self._phase == "update":
            self.log(f"interrupted while updating the weights: nothing saved; the last "
                     f"checkpoint is {self.output_dir / 'last.pt'}")  # fmt: skip
            return
        # Mid-step: the weights are those before the step; the RNG as it was then.
        rng = self._step_start_rng if self._phase == "forward" else None
        self.save(complete=False, rng=rng)
        self.log(f"interrupted in epoch {self.epoch + 1} after {self.step_in_epoch} steps: "
                 f"saved {self.output_dir / 'last.pt'}; continue with  spikeflow train "
                 f"--resume {self.output_dir / 'last.pt'}")  # fmt: skip

    def _set_mask_lambda(self) -> None:
        """The masked PSNs' progressive mask for this epoch (methods: PSN paper, 4.3);
        a buffer of the model, so checkpoints and resumed runs carry it."""
        cfg = self.config
        if cfg.mask_schedule != "none":
            value = mask_lambda(self.epoch, cfg.epochs, cfg.mask_schedule)
            if set_mask_lambda(self.model, value) and self.step_in_epoch == 0:
                self.log(f"masked PSN: mask lambda {value:.3f} for epoch {self.epoch + 1}")

    def _train_epoch(self) -> None:
        cfg, ctx = self.config, self.ctx
        sampler = DistributedSampler(self.train_set, num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=True, seed=cfg.seed)  # fmt: skip
        sampler.set_epoch(self.epoch)
        start = self.step_in_epoch
        self._epoch_start = time.perf_counter()
        if start == 0:
            self.epoch_sums = self.sums_class()
            self.train_monitor.reset()
        indices = list(sampler)
        steps = math.ceil(len(indices) / self.per_rank_batch)
        loader = DataLoader(
            self.train_set, batch_size=self.per_rank_batch,
            sampler=indices[start * self.per_rank_batch:], num_workers=cfg.workers,
            generator=torch.Generator().manual_seed(cfg.seed * 100_003 + self.epoch),
            pin_memory=ctx.device.type == "cuda", collate_fn=self.collate_fn,
        )  # fmt: skip
        self._set_mask_lambda()
        if set_delay_sigma(self.raw_model, self.epoch, cfg.epochs) and start == 0:
            widths = sorted({round(float(m.sigma), 3) for m in self.raw_model.modules()
                             if isinstance(m, DelayedLinear)})  # fmt: skip
            self.log(f"delays: Gaussian width {', '.join(map(str, widths))} steps for epoch "
                     f"{self.epoch + 1}")  # fmt: skip
        self.model.train()
        bar = tqdm(
            total=steps, initial=start, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            disable=not (cfg.progress and ctx.is_main), leave=False, dynamic_ncols=True,
        )  # fmt: skip
        try:
            for step, (x, y) in enumerate(loader, start=start):
                loss = self._train_step(x, y, step, steps)
                bar.update(1)
                if step % 10 == 0 or step == steps - 1:
                    bar.set_postfix(loss=f"{self.epoch_sums.mean_loss:.4f}",
                                    acc=f"{self.epoch_sums.accuracy:.3f}",
                                    rate=f"{self.train_monitor.mean_firing_rate():.3f}",
                                    refresh=False)  # fmt: skip
                for callback in self.callbacks:
                    if hasattr(callback, "on_step_end"):
                        callback.on_step_end(self, self.epoch, step, loss)
                if self._stop_all or (self._stop_requested and not ctx.distributed):
                    raise _StopRequested
        finally:
            bar.close()

    def _train_step(self, x: Tensor, y: Tensor, step: int, steps: int) -> float:
        cfg, ctx = self.config, self.ctx
        self._step_start_rng = ckpt.capture_rng_state()
        self._phase = "forward"
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        target = y
        if self.mixer is not None:  # drawn from the run's seed and step: a resume mixes alike
            draws = torch.Generator().manual_seed(cfg.seed * 1_000_033 + self.global_step)
            x, target, _ = self.mixer(x, y, draws)
        x = to_time_major(x, cfg.T, self.layout)
        if cfg.online:  # backpropagates each step as it runs (SLTT): nothing left to keep
            self.optimizer.zero_grad(set_to_none=True)
            result = online_backward(
                self.model, x, target, self.loss_fn, train_steps=cfg.online_steps,
                generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.global_step),
                backward=lambda step_loss: self.scaler.scale(step_loss).backward(),
                autocast=lambda: autocast_context(ctx.device, cfg.amp),
                trace_decay=cfg.online_trace_decay,
            )  # fmt: skip
            out, loss = result.output, result.loss
        elif cfg.tbptt is not None:  # windows of K steps, each backpropagated as it ends
            self.optimizer.zero_grad(set_to_none=True)
            per_window = cfg.tbptt_update == "window"
            result = tbptt_backward(
                self.model, x, target, self.loss_fn, cfg.tbptt,
                step=self._window_update(step, steps) if per_window else None,
                backward=lambda window_loss: self.scaler.scale(window_loss).backward(),
                autocast=lambda: autocast_context(ctx.device, cfg.amp),
            )  # fmt: skip
            out, loss = result.output, result.loss
        elif self.eprop is not None:  # the gradients forward in time, into .grad
            self.optimizer.zero_grad(set_to_none=True)
            smoothing = float(cfg.loss_kwargs.get("label_smoothing", 0.0))  # ce's only argument
            out, loss = eprop_train_step(self.eprop, x, target, smoothing)
        elif self.decolle is not None:  # local losses, each step backpropagated alone
            self.optimizer.zero_grad(set_to_none=True)
            per_step = cfg.decolle_update == "step"
            after = self._window_update(step, steps) if per_step else None
            out, loss = decolle_train_step(self.decolle, x, target, after)
        else:
            with autocast_context(ctx.device, cfg.amp):
                # a model that supervises its output layer itself (event-driven nets) gets y
                out = self.model(x, target=y) if self._takes_target else self.model(x)
            loss = self.loss_fn(out.float(), target)
        value = float(loss.detach())
        # One reduction tells every process whether any has a bad loss or was asked to
        # stop, so all of them stop at the same step.
        bad, stop = ctx.all_reduce_sum(
            [0.0 if math.isfinite(value) else 1.0, float(self._stop_requested)]
        )
        self._stop_all = stop > 0
        if bad:
            self._phase = "idle"
            self._raise_non_finite(value, step, steps)
        if not trains_per_step(cfg) and cfg.tbptt is None and self.decolle is None:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        # (else: updated after each window or DECOLLE step already)
        if not self._updates_within_batch():
            self._phase = "update"
            self._update()
        self._phase = "done"
        self.epoch_sums.add(value * len(y), count_correct(out.detach(), y, self.readout), len(y))
        self.step_in_epoch = step + 1
        self.global_step += 1
        return value

    def _update(self) -> None:
        """One optimizer step on the gradients in ``.grad``: clipped (``clip_grad_norm``),
        through the gradient scaler, then the delays clamped and the pruning threshold
        moved."""
        cfg = self.config
        if cfg.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients (fp16 scaling)
            torch.nn.utils.clip_grad_norm_(self._trained_parameters(), cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        clamp_delays(self.raw_model)  # learnable delays back into their range
        if isinstance(self.pruning, ThresholdSchedule):  # LATS moves from an optimizer hook
            self.pruning.step()

    def _updates_within_batch(self) -> bool:
        """Whether a batch updates the weights as it runs: truncated BPTT after every
        window, DECOLLE after every step."""
        cfg = self.config
        return (cfg.tbptt is not None and cfg.tbptt_update == "window") or (
            self.decolle is not None and cfg.decolle_update == "step"
        )

    def _window_update(self, step: int, steps: int) -> Any:
        """What truncated BPTT with per-window updates (and DECOLLE with per-step
        updates) calls after each window's (step's) backward: stop (on every process) if
        any window's loss is not finite, else update the weights and zero the gradients.
        From the first update on, the batch is in its ``update`` phase: an interruption
        saves nothing mid-batch."""

        def after_window(index: int, window_loss: Tensor) -> None:
            value = float(window_loss)
            if self.ctx.all_reduce_sum([0.0 if math.isfinite(value) else 1.0])[0]:
                self._phase = "idle"
                self._raise_non_finite(value, step, steps)
            self._phase = "update"
            self._update()
            self.optimizer.zero_grad(set_to_none=True)

        return after_window

    def _raise_non_finite(self, value: float, step: int, steps: int) -> None:
        kept = self._last_good_checkpoint()
        raise NonFiniteLossError(
            f"the loss became non-finite ({'nan' if math.isnan(value) else value} on at least "
            f"one process) at epoch {self.epoch + 1}, step {step + 1} of {steps} (global step "
            f"{self.global_step + 1}); training stopped. {kept}. "
            + non_finite_advice(self.config, value, self._run_lr())
        )

    def _last_good_checkpoint(self) -> str:
        """What a message about a diverged run says of the last checkpoint: the one
        written last, or resumed from, with its (epoch, step)."""
        if self._checkpoint is None:
            return "no checkpoint was saved (it failed before the first one)"
        path, position = self._checkpoint
        if path is None:
            where = f", in {self.resume_dir}" if self.resume_dir is not None else ""
            return (f"the last good checkpoint is the one this run resumed from "
                    f"({describe_position(position)}{where})")  # fmt: skip
        return f"the last good checkpoint is {path} ({describe_position(position)})"

    def _end_epoch(self) -> None:
        cfg, ctx = self.config, self.ctx
        lr = self._run_lr()
        train = self.epoch_sums.reduced(ctx)
        reduce_monitor(self.train_monitor, ctx)
        train_layers = self.train_monitor.summary()
        train_rate = self.train_monitor.mean_firing_rate()
        ctx.broadcast_buffers(self.raw_model)  # evaluate (and save) rank 0's BN statistics
        test, test_rate, test_layers = evaluate(
            self.raw_model, self.test_set, self.eval_loss_fn, T=cfg.T,  # type: ignore[arg-type]
            static=self.layout,
            batch_size=self.per_rank_batch, ctx=ctx, amp=cfg.amp, workers=cfg.workers,
            progress=cfg.progress, readout=self.readout,
        )  # fmt: skip
        row = {
            "epoch": self.epoch + 1, "lr": lr,
            "train_loss": train.mean_loss, "train_acc": train.accuracy, "train_rate": train_rate,
            "test_loss": test.mean_loss, "test_acc": test.accuracy, "test_rate": test_rate,
            "epoch_time_s": None,
        }  # fmt: skip
        row["epoch_time_s"] = round(time.perf_counter() - self._epoch_start, 3)
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
        self._check_finite_model()
        if self.scheduler is not None:  # after the evaluation, just before the checkpoint
            self.scheduler.step()
        layers: dict[str, list[LayerStats]] = {"train": train_layers, "test": test_layers}
        if self.csv is not None:
            self.csv.log_epoch(row, layers)
        if self.tensorboard is not None:
            self.tensorboard.log_epoch(row, layers, layer_sparsity)
        self.save(complete=True, best=best)
        self.log(
            f"epoch {self.epoch + 1:3d}/{cfg.epochs}  loss {train.mean_loss:.4f}  "
            f"acc {100 * train.accuracy:5.2f}%  rate {train_rate:.3f} | test loss "
            f"{test.mean_loss:.4f}  acc {100 * test.accuracy:5.2f}%  rate {test_rate:.3f}{pruned}"
        )
        for callback in self.callbacks:
            if hasattr(callback, "on_epoch_end"):
                callback.on_epoch_end(self, self.epoch, row)

    def _check_finite_model(self) -> None:
        """Raise before saving when a weight or buffer (e.g. a BN running variance) is
        NaN or Inf although every loss was finite: the last checkpoint stays good."""
        tensors = [*self.raw_model.named_parameters(), *self.raw_model.named_buffers()]
        bad = [name for name, t in tensors
               if t.is_floating_point() and not bool(torch.isfinite(t).all())]  # fmt: skip
        if bad:
            kept = self._last_good_checkpoint()
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise NonFiniteLossError(
                f"after epoch {self.epoch + 1} the model holds NaN/Inf values in {shown}; "
                f"training stopped and this epoch was not saved. {kept}. Lower the learning "
                f"rate (now {self._run_lr():g}) or check the data"
            )
