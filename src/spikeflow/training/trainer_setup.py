"""The setup of a :class:`~spikeflow.training.trainer.Trainer` run, before its first
step: the processes, the output folder and its refusals, the data, the model and the
checks of the training method against it, the optimizer, the schedules, the losses,
the monitors and the loggers (or, on ``--resume``, the state restored)."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.losses import loss_key
from spikeflow.models.common import reading_saved_run
from spikeflow.training import checkpoint as ckpt
from spikeflow.training.config import save_config
from spikeflow.training.data import static_layout
from spikeflow.training.decolle import check_decolle_model, decolle_rule
from spikeflow.training.distributed import ddp_options, setup_distributed
from spikeflow.training.eprop import eprop_rule
from spikeflow.training.eventprop import check_eventprop_model
from spikeflow.training.fptt import FPTTRegulariser
from spikeflow.training.fsdp import shard_model, shard_units
from spikeflow.training.loop import epoch_learning_rates, make_lr_scheduler
from spikeflow.training.metric_logs import CSVLogger, TensorBoardLogger, check_tensorboard
from spikeflow.training.mixing import BatchMixer
from spikeflow.training.model_ema import ModelEMA, adjusted_ema_decay, ema_start_share
from spikeflow.training.monitors import SpikeMonitor
from spikeflow.training.online import check_online_model
from spikeflow.training.pruning import (
    ignore_fixed_buffers,
    make_threshold_schedule,
    prune_settings,
)
from spikeflow.training.ra_sampler import repeated_augmentation_length
from spikeflow.training.run_checks import check_tbptt_run, check_two_view_data, logged_loss
from spikeflow.training.run_folder import (
    RUN_OUTPUTS,
    carry_history,
    check_output_dir,
    claim_for_launch,
    claimed_by_this_launch,
    earlier_run_files,
    remove_run_outputs,
    remove_stale_temporaries,
    reserve_default_output_dir,
)
from spikeflow.training.run_lock import lock_run_folder
from spikeflow.training.run_optimizer import build_run_optimizer, trained_parameters
from spikeflow.training.spike_reg import SpikeRegulariser
from spikeflow.training.sync_bn import convert_sync_batchnorm
from spikeflow.training.tbptt import tbptt_windows
from spikeflow.training.teacher import Teacher, load_teacher
from spikeflow.training.tensor_parallel_run import join_tensor_parallel
from spikeflow.training.trainer_checkpoints import seed_everything
from spikeflow.training.views import TWO_VIEW_LOSSES, TwoViews

__all__ = ["SetupMixin"]


class SetupMixin:
    """The :class:`~spikeflow.training.trainer.Trainer`'s setup methods (they read and
    set its attributes)."""

    def _setup(self) -> None:
        cfg = self.config
        if cfg.plots == "on":
            from spikeflow.training.plots import check_matplotlib

            check_matplotlib()
        if cfg.tensorboard:
            check_tensorboard()
        self.ctx = ctx = setup_distributed(cfg.device)
        # --tensor-parallel N: the groups, and the data-parallel view of the processes
        # that the sampler, the batch and the metrics' reductions use (ctx itself without)
        self.tp = join_tensor_parallel(ctx, cfg.tensor_parallel, self.task_kind)
        self.data_ctx = data = ctx if self.tp is None else self.tp.data_context(ctx)
        if cfg.amp == "fp16" and ctx.device.type != "cuda":
            raise ConfigurationError(
                "amp='fp16' needs a CUDA GPU (gradient scaling); on the CPU use amp='bf16' or 'off'"
            )
        if cfg.batch_size % data.world_size:  # type: ignore[operator]
            copies = "" if self.tp is None else " (--tensor-parallel: of model copies)"
            raise ConfigurationError(
                f"batch_size {cfg.batch_size} (the global batch) must be a multiple of the "
                f"number of processes{copies} ({data.world_size})"
            )
        self.per_rank_batch = cfg.batch_size // data.world_size  # type: ignore[operator]
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
                # held until the run's last file is written: a second live run is refused
                self._run_lock = lock_run_folder(Path(out))
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
        extra = -len(self.train_set) % data.world_size  # type: ignore[arg-type]
        if extra:
            self.log(
                f"note: {len(self.train_set)} training samples do not split evenly over "  # type: ignore[arg-type]
                f"{data.world_size} "
                + ("processes" if self.tp is None else "model copies (--tensor-parallel)")
                + f": each epoch repeats {extra} of them to even "
                "the shards (DistributedSampler), so its last step differs from a "
                "one-process run's"
            )
        seed_everything(cfg.seed)
        # A resume builds the checkpoint's model as its run did (build_model's ``saved``).
        with reading_saved_run() if self.resume_payload is not None else contextlib.nullcontext():
            self.raw_model = self._build_model().to(ctx.device)
        # Per-process streams for dropout etc. (rank 0's equals a one-process run's); the
        # processes of a tensor-parallel group draw alike (the same masks, sliced).
        seed_everything(cfg.seed + data.rank)
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
        if cfg.sync_bn:  # (refuses what it cannot sync in one process too)
            synced = convert_sync_batchnorm(self.raw_model)
            if ctx.distributed:
                self.log(f"--sync-bn: {len(synced)} batch norm(s) normalise over the "
                         f"global batch of {ctx.world_size} processes")  # fmt: skip
        # --model-ema: a copy made now, before the monitors' hooks are on the model
        self.ema = None
        if cfg.model_ema:
            decay = adjusted_ema_decay(cfg.model_ema_decay, cfg.batch_size, cfg.model_ema_steps,
                                       cfg.epochs)  # type: ignore[arg-type]  # fmt: skip
            self.ema = ModelEMA(self.raw_model, decay)
            self.log(f"--model-ema: decay {decay:.6g} per update (every "
                     f"{cfg.model_ema_steps} steps; --model-ema-decay {cfg.model_ema_decay} "
                     "adjusted to the run)")  # fmt: skip
        #: FSDP: the parameters left whole, whose gradients _update averages
        self.replicated: list[nn.Parameter] = []
        self._weights_loaded = False
        if ctx.distributed and cfg.fsdp:
            if self.resume_payload is not None:  # into the whole model, before it is cut
                ckpt.load_weights(self.raw_model, self.resume_payload,
                                  self.resume_dir or "the checkpoint")  # fmt: skip
                self._weights_loaded = True
            self.replicated = shard_model(self.raw_model)
            self.log(f"--fsdp: weights, gradients and optimizer state sharded over "
                     f"{ctx.world_size} processes ({len(shard_units(self.raw_model))} units "
                     f"gathered one at a time; {len(self.replicated)} scalar parameter(s) "
                     "kept whole)")  # fmt: skip
        elif cfg.fsdp:  # (one process: what it would shard is all there is)
            self.log("note: --fsdp with one process: nothing to shard, the run trains as "
                     "without it (launch it with torchrun --nproc_per_node=N, N > 1)")  # fmt: skip
        elif self.tp is not None:
            self._split_channels()
        elif ctx.distributed:
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
        self.fptt = (  # FPTT's running mean and multiplier, of the trained parameters
            None if cfg.fptt is None else FPTTRegulariser.for_optimizer(self.optimizer, cfg.fptt)
        )
        self.scheduler = self._make_scheduler()
        per_rank = (  # (--ra-sampler: refused here for fewer than 256 samples)
            repeated_augmentation_length(len(self.train_set), ctx.world_size)  # type: ignore[arg-type]
            if cfg.ra_sampler
            else math.ceil(len(self.train_set) / data.world_size)  # type: ignore[arg-type]
        )
        self.steps_per_epoch = math.ceil(per_rank / self.per_rank_batch)
        if self.ema is not None:
            self._log_ema_start_share()
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
        # per-step losses), a truncated-BPTT run with its windows' losses, a DECOLLE
        # run with its last layer's local loss (spikeflow eval's too).
        self.eval_loss_fn = logged_loss(cfg, self.loss_fn)
        self.mixer = (
            BatchMixer(self.info.num_classes, cfg.mixup, cfg.cutmix)
            if cfg.mixup or cfg.cutmix
            else None
        )
        # --loss stcl: the model sees two augmented views of each batch
        self.views = TwoViews() if loss_key(cfg.loss) in TWO_VIEW_LOSSES else None
        if self.views is not None:  # refused now, not at the first step (audio [B, T, F])
            check_two_view_data(cfg, self.info, self.per_rank_batch)
        self.readout = self._resolved_readout()
        # --teacher: a frozen network whose logits soften the targets (distillation)
        self.teacher = None
        if cfg.teacher is not None:
            self.teacher = self._load_teacher()
        # (under --compile too: its hooks add to tensors, which the graph does not guard
        # on the values of, so recording recompiles nothing after the first steps)
        self.train_monitor = SpikeMonitor(self.raw_model)
        # --spike-reg: the hooks record the training forward's spikes for the term
        self.spike_reg = (
            SpikeRegulariser(self.raw_model, cfg.spike_reg, cfg.spike_reg_kwargs)
            if cfg.spike_reg != "none"
            else None
        )
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
            stale = remove_stale_temporaries(self.output_dir)
            if stale:
                self.log(f"removed {len(stale)} temporary file(s) that a killed run left in "
                         f"{self.output_dir}: {', '.join(stale[:4])}"
                         + (", ..." if len(stale) > 4 else ""))  # fmt: skip
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

    def _split_channels(self) -> None:
        """``--tensor-parallel N``: split the model's channels over this process's
        tensor-parallel group (a resume's full weights loaded first, then sliced), and
        wrap it in DDP over its data-parallel group when there are several copies."""
        ctx, tp = self.ctx, self.tp
        if self.resume_payload is not None:  # into the whole model, before it is cut
            ckpt.load_weights(self.raw_model, self.resume_payload,
                              self.resume_dir or "the checkpoint")  # fmt: skip
            self._weights_loaded = True
        shards = tp.shard(self.raw_model)
        self.log(f"--tensor-parallel {tp.size}: {len(shards.pairs)} column/row layer pair(s) "
                 f"split over {tp.size} processes; {tp.data_size} data-parallel cop"
                 f"{'y' if tp.data_size == 1 else 'ies'} of the model")  # fmt: skip
        if tp.data_size > 1:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            ignore_fixed_buffers(self.raw_model)
            self.model = nn.parallel.DistributedDataParallel(
                self.raw_model, device_ids=device_ids, process_group=tp.data_group,
                **ddp_options(self.raw_model),
            )  # fmt: skip

    def _load_teacher(self) -> Teacher:
        """``--teacher``, loaded (:func:`~spikeflow.training.teacher.load_teacher`) and
        run on two training samples: its logits must be ``[2, classes]`` of this run's
        dataset (a mismatch is named now, not at the first step)."""
        cfg, ctx = self.config, self.ctx
        if self.resume_payload is not None and not Path(cfg.teacher).exists():  # type: ignore[arg-type]
            raise ConfigurationError(
                f"--resume: the run's teacher {cfg.teacher} (from its checkpoint) does not "
                "exist; give its new place: --resume RUN --teacher PATH"
            )
        given = Path(cfg.teacher).resolve()  # type: ignore[arg-type]
        out = self.output_dir.resolve()
        if given == out or (given.parent == out and given.name in RUN_OUTPUTS):
            raise ConfigurationError(
                f"--teacher {cfg.teacher} is this run's own output folder {self.output_dir} "
                "(or a checkpoint in it): the student's checkpoints would replace the "
                "teacher's (--overwrite deletes them first); give the student another "
                "--output-dir"
            )
        teacher = load_teacher(cfg.teacher, cfg, ctx.device)  # type: ignore[arg-type]
        count = min(2, len(self.train_set))  # type: ignore[arg-type]
        probe = torch.stack([self.train_set[i][0] for i in range(count)])
        try:
            logits = teacher(probe.to(ctx.device))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:  # its own layers'
            raise ConfigurationError(
                f"--teacher {cfg.teacher}: the teacher ({teacher.source}) cannot read this "
                f"run's batches (two samples: shape {tuple(probe.shape)}, {probe.dtype}, as "
                f"the DataLoader yields them): {type(exc).__name__}: {exc}"
            ) from exc
        classes = self.info.num_classes
        if tuple(logits.shape) != (len(probe), classes):
            raise ConfigurationError(
                f"--teacher {cfg.teacher}: the teacher ({teacher.source}) gives logits of shape "
                f"{tuple(logits.shape)} for {len(probe)} samples; this run's dataset has "
                f"{classes} classes, so [{len(probe)}, {classes}] was expected"
            )
        self.log(
            f"--teacher: {teacher.source}; loss = {cfg.kd_alpha:g} x soft-target KL at "
            f"temperature {cfg.kd_temperature:g} + {1 - cfg.kd_alpha:g} x {cfg.loss}"
        )
        return teacher

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """The run's optimizer (:func:`~spikeflow.training.run_optimizer.build_run_optimizer`,
        which ``spikeflow eval --energy neuromc`` prices too)."""
        return build_run_optimizer(self.config, self.raw_model, eprop=self.eprop,
                                   settings=self.prune_settings, log=self.log)  # fmt: skip

    def _trained_parameters(self) -> list[nn.Parameter]:
        """What the optimizer updates and the clipping scales
        (:func:`~spikeflow.training.run_optimizer.trained_parameters`)."""
        return trained_parameters(self.raw_model, self.eprop)

    def _run_lr(self) -> float:
        """The run's learning rate now (``--lr`` as scheduled), which the metrics log:
        the first parameter group's, over its multiple of ``lr`` where it has one
        (``--decolle-layer-lr``'s groups, a model's own); a group at no learning rate
        (``lr_scale`` 0) is passed over."""
        for group in self.optimizer.param_groups:
            scale = float(group.get("lr_scale", 1.0))
            if scale > 0:
                return float(group["lr"]) / scale
        return float(self.optimizer.param_groups[0]["lr"])

    def _make_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        return make_lr_scheduler(self.optimizer, self.config)

    def _log_ema_start_share(self) -> None:
        """--model-ema: say how much of its start the last average keeps (the recipe's
        decay is set for ImageNet's size; a small dataset barely moves it)."""
        cfg = self.config
        share = ema_start_share(self.ema.decay, self.steps_per_epoch, cfg.model_ema_steps,  # type: ignore[union-attr]
                                cfg.epochs, cfg.warmup_epochs)  # type: ignore[arg-type]  # fmt: skip
        if share > 0.05:
            self.log(
                f"--model-ema: warning: the last average will still hold {100 * share:.0f}% "
                "of the weights at its first update after the warm-up (the default decay "
                "suits ImageNet's 1.28M samples): lower --model-ema-decay, e.g. to "
                "1 - 5 / (training samples per epoch)"
            )
