"""The epochs and steps of a :class:`~spikeflow.training.trainer.Trainer` run: the
data of an epoch, a training step of each method (BPTT, online, truncated BPTT, e-prop,
DECOLLE), the weight updates, and what a non-finite loss or model stops."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from spikeflow.errors import SpikeflowError
from spikeflow.layers.delay import DelayedLinear, clamp_delays, set_delay_sigma
from spikeflow.losses.distillation import distillation_loss
from spikeflow.neurons.parallel import mask_lambda, set_mask_lambda
from spikeflow.prune import ThresholdSchedule
from spikeflow.training.data import to_time_major
from spikeflow.training.decolle import decolle_train_step
from spikeflow.training.eprop import eprop_train_step
from spikeflow.training.fsdp import average_replicated_grads, is_sharded, local_part
from spikeflow.training.loop import autocast_context, count_correct
from spikeflow.training.online import online_backward, trains_per_step
from spikeflow.training.resume import describe_position
from spikeflow.training.run_checks import loss_is_summed, non_finite_advice
from spikeflow.training.tbptt import tbptt_backward

__all__ = ["NonFiniteLossError", "StepsMixin"]


class NonFiniteLossError(SpikeflowError, FloatingPointError):
    """The loss, or a weight or buffer of the model, became NaN or infinite; the message
    names where and when."""


class _StopRequested(Exception):
    """Ctrl-C was pressed: stop at the end of the current step."""


class StepsMixin:
    """The :class:`~spikeflow.training.trainer.Trainer`'s epoch and step methods (they
    read and set its attributes)."""

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
        data = getattr(self, "data_ctx", ctx)  # (--tensor-parallel: by data-parallel rank)
        sampler = DistributedSampler(self.train_set, num_replicas=data.world_size, rank=data.rank,
                                     shuffle=True, seed=cfg.seed)  # fmt: skip
        sampler.set_epoch(self.epoch)
        start = self.step_in_epoch
        self._epoch_start = time.perf_counter()
        if start == 0:
            self.epoch_sums = self.sums_class()
            self.train_monitor.reset()
        indices = self._epoch_indices(sampler)
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
                if not bar.disable and (step % 10 == 0 or step == steps - 1):
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
        # (No RNG capture here: a stop is only ever raised between steps, where the
        # checkpoint captures the state as it is; see Trainer._save_interrupted.)
        self._phase = "forward"
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        target = y
        if self.mixer is not None:  # drawn from the run's seed and step: a resume mixes alike
            draws = torch.Generator().manual_seed(cfg.seed * 1_000_033 + self.global_step)
            x, target, _ = self.mixer(x, y, draws)
        if self.views is not None:  # STCL: [2B, ...], then the loss reads both halves
            draws = torch.Generator().manual_seed(cfg.seed * 1_000_037 + self.global_step)
            x = self.views(x, draws, ctx.rank, ctx.world_size)  # (the global batch's draws)
        # --teacher: its logits of the same (mixed) batch, as the DataLoader yields it
        teacher_logits = None if self.teacher is None else self.teacher(x)
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
                backward=self._window_backward,
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
            if self.spike_reg is not None:
                self.spike_reg.clear()  # (what the evaluation's forwards left)
            with autocast_context(ctx.device, cfg.amp):
                # a model that supervises its output layer itself (event-driven nets) gets y
                model_y = y if self.views is None else y.repeat(2)
                out = self.model(x, target=model_y) if self._takes_target else self.model(x)
            if teacher_logits is None:
                loss = self.loss_fn(out.float(), target)
            else:
                loss = distillation_loss(
                    out.float(), target, teacher_logits, self.loss_fn,
                    cfg.kd_alpha, cfg.kd_temperature, self.readout,
                )  # fmt: skip
            out = out[:, : len(y)]  # (two views: the accuracy reads the first)
        value = total = float(loss.detach())
        regularised = 0.0
        if self.spike_reg is not None:  # on this forward's spikes (BPTT only: config checks)
            term = self.spike_reg()
            regularised = float(term.detach())
            loss = loss + term
            total = float(loss.detach())
        self._check_step_loss(total, step, steps)
        if not trains_per_step(cfg) and cfg.tbptt is None and self.decolle is None:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        # (else: updated after each window or DECOLLE step already)
        if not self._updates_within_batch():
            self._phase = "update"
            self._update()
        self._update_ema(step)
        self._phase = "done"
        self.epoch_sums.add(value * (1 if loss_is_summed(cfg) else len(y)),
                            count_correct(out.detach(), y, self.readout), len(y),
                            regularised * len(y))  # fmt: skip
        self.step_in_epoch = step + 1
        self.global_step += 1
        return total

    def _update(self) -> None:
        """One optimizer step on the gradients in ``.grad``: clipped (``clip_grad_norm``),
        through the gradient scaler, then the delays clamped and the pruning threshold
        moved."""
        cfg = self.config
        if self.replicated:  # FSDP: the scalar parameters it keeps whole, averaged as DDP does
            average_replicated_grads(self.replicated, self.ctx.world_size)
        if cfg.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients (fp16 scaling)
            tp = getattr(self, "tp", None)
            if tp is not None:  # the whole model's norm, over every process's slices
                tp.shards.clip_grad_norm_(self.raw_model, cfg.clip_grad_norm)
            else:
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

    def _window_backward(self, window_loss: Tensor) -> None:
        """Backpropagate a truncated-BPTT window's loss (through the gradient scaler),
        then under ``--fptt`` add the gradient of FPTT's penalty, scaled alike: after
        DDP averaged the task's gradient (the penalty's is the same on every process)."""
        self.scaler.scale(window_loss).backward()
        if self.fptt is not None:
            self.fptt.add_gradient(self.scaler.get_scale())

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
            scale = self.scaler.get_scale()
            self._update()
            # FPTT's mean and multiplier follow the weights, unless the scaler skipped
            # the step (fp16 overflow: the scale dropped and the weights did not move)
            if self.fptt is not None and self.scaler.get_scale() >= scale:
                self.fptt.update()
            self.optimizer.zero_grad(set_to_none=True)

        return after_window

    def _check_step_loss(self, value: float, step: int, steps: int) -> None:
        """After a step's forward (the detection trainer's too): one reduction tells
        every process whether any has a bad loss or was asked to stop, so all of them
        stop at the same step; raise :class:`NonFiniteLossError` where a loss is not
        finite."""
        bad, stop = self.ctx.all_reduce_sum(
            [0.0 if math.isfinite(value) else 1.0, float(self._stop_requested)]
        )
        self._stop_all = stop > 0
        if bad:
            self._phase = "idle"
            self._raise_non_finite(value, step, steps)

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

    def _check_finite_model(self) -> None:
        """Raise before saving when a weight or buffer (e.g. a BN running variance) is
        NaN or Inf although every loss was finite: the last checkpoint stays good."""
        tensors = [*self.raw_model.named_parameters(), *self.raw_model.named_buffers()]
        bad = [name for name, t in tensors if t.is_floating_point()
               and not bool(torch.isfinite(local_part(t)).all())]  # fmt: skip
        if is_sharded(self.raw_model) or getattr(self, "tp", None) is not None:
            # each process sees its shards (or channel slices): all of them decide
            found = {name for names in self.ctx.all_gather_object(bad) for name in names}
            bad = [name for name, _ in tensors if name in found]
        if bad:
            kept = self._last_good_checkpoint()
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise NonFiniteLossError(
                f"after epoch {self.epoch + 1} the model holds NaN/Inf values in {shown}; "
                f"training stopped and this epoch was not saved. {kept}. Lower the learning "
                f"rate (now {self._run_lr():g}) or check the data"
            )
