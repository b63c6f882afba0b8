"""The checkpoints of a :class:`~spikeflow.training.trainer.Trainer` run: what one
holds (every process's random states and, inside an epoch, running sums), writing it,
and restoring a run from it."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from spikeflow.errors import ConfigurationError
from spikeflow.training import checkpoint as ckpt
from spikeflow.training.config import config_to_dict
from spikeflow.training.fsdp import (
    full_model_state,
    full_optimizer_state,
    is_sharded,
    shard_optimizer_state,
)
from spikeflow.training.loop import EpochSums
from spikeflow.training.resume import checkpoint_position
from spikeflow.training.run_folder import launch_identity

__all__ = ["CheckpointMixin", "expand_optimizer_state", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's and Python's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global state user code draws from
    random.seed(seed)


def expand_optimizer_state(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, saved: dict[str, Any]
) -> None:
    """Broadcast the optimizer state of parameters loaded per layer into per-neuron ones.

    A neuron with ``shape`` loads a per-layer checkpoint by broadcasting each value to
    every neuron (``recurrent_lif_seq`` runs saved before it passed its hidden width);
    the optimizer's moments of such a parameter are broadcast the same way, so the run
    resumes as it would have, every neuron starting from its layer's state. Scalars
    such as Adam's ``step`` are left as they are.
    """
    names = {id(p): name for name, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            old = saved.get(names.get(id(param), ""))
            state = optimizer.state.get(param)
            if not isinstance(old, torch.Tensor) or old.shape == param.shape or not state:
                continue
            for key, value in state.items():
                if key != "step" and isinstance(value, torch.Tensor) and value.shape == old.shape:
                    view = value.reshape(*old.shape, *(1,) * (param.dim() - old.dim()))
                    state[key] = view.expand(param.shape).clone()


class CheckpointMixin:
    """The :class:`~spikeflow.training.trainer.Trainer`'s checkpoint methods (they read
    and set its attributes)."""

    def _payload(
        self, states: list[dict[str, Any]], complete: bool, gathered: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The checkpoint, from every process's ``rng`` and (inside an epoch) running
        sums, in rank order; ``gathered``: the full ``model`` and ``optimizer`` states
        of a sharded (FSDP) run."""
        running = {"epoch_sums": {}, "monitor": {}, "rank_epoch_state": []}
        tp = getattr(self, "tp", None)
        if not complete:  # every process's own sums, and their totals
            # --tensor-parallel: one entry per model copy (its group's first process,
            # which holds the copy's merged monitor sums), in data-parallel rank order
            copies = states if tp is None else states[:: tp.size]
            running = ckpt.epoch_state_payload(
                [{"epoch_sums": s["epoch_sums"], "monitor": s["monitor"]} for s in copies]
            )
        teacher = getattr(self, "teacher", None)
        # (how the run was split is not the run's: a resume takes its own --tensor-parallel)
        config = {k: v for k, v in config_to_dict(self.config).items()
                  if v is not None and k != "tensor_parallel"}  # fmt: skip
        return {
            "format": ckpt.CHECKPOINT_FORMAT,
            "config": config,
            "epoch": self.epoch + (1 if complete else 0),
            "step": 0 if complete else self.step_in_epoch,
            "global_step": self.global_step,
            "model": self.raw_model.state_dict() if gathered is None else gathered["model"],
            "optimizer": (
                self.optimizer.state_dict() if gathered is None else gathered["optimizer"]
            ),
            "scheduler": {} if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "pruning": {} if self.pruning is None else self.pruning.state_dict(),
            "eprop": {} if self.eprop is None else self.eprop.state_dict(),
            "fptt": {} if self.fptt is None else self.fptt.state_dict(),
            "model_ema": {} if self.ema is None else self.ema.state_dict(),
            # --teacher: which one (a resume may find it moved, not changed)
            "teacher": {} if teacher is None else {"digest": teacher.digest},
            "rng": [s["rng"] for s in states],
            "world_size": self.ctx.world_size,
            # (whose rng entries these are; absent without a split, as before the option)
            **({} if tp is None else {"tensor_parallel": tp.size}),
            **running,
            "history": self.history,
            "best": {"test_acc": self.best_test_acc, "epoch": self.best_epoch},
            "launch": launch_identity(),  # which torchrun launch wrote it (None: none)
        }

    def save(self, complete: bool, best: bool = False) -> None:
        """Write ``best.pt`` (when ``best``), then ``last.pt``, on rank 0
        (:func:`~spikeflow.training.checkpoint.write_run_checkpoint`); every rank
        contributes its RNG states (as they are now) and, inside an epoch, its running
        sums."""
        tp = getattr(self, "tp", None)
        monitor = {} if complete else self.train_monitor.state_dict()
        if tp is not None and not complete:  # the copy's sums (every process joins)
            monitor = tp.merge_monitor(monitor)
        mine = {
            "rng": ckpt.capture_rng_state(),
            "epoch_sums": {} if complete else self.epoch_sums.state_dict(),
            "monitor": monitor,
        }
        states = self.ctx.all_gather_object(mine)
        gathered = None
        if is_sharded(self.raw_model):  # every process joins the gathers; rank 0 keeps
            main = self.ctx.is_main
            gathered = {"model": full_model_state(self.raw_model, main),
                        "optimizer": full_optimizer_state(self.optimizer, main)}  # fmt: skip
        elif tp is not None:  # the slices gathered whole: the unsplit model's state
            gathered = {"model": tp.shards.full_state_dict(self.raw_model),
                        "optimizer": tp.shards.full_optimizer_state(self.raw_model,
                                                                    self.optimizer)}  # fmt: skip
        if self.ctx.is_main:
            ckpt.write_run_checkpoint(
                self._payload(states, complete, gathered), self.output_dir, best
            )
        self.ctx.barrier()
        position = (self.epoch + 1, 0) if complete else (self.epoch, self.step_in_epoch)
        self._checkpoint = (self._last, position)

    def _check_resumed_teacher(self, payload: dict[str, Any]) -> None:
        """A resumed ``--teacher`` run's teacher has the weights its checkpoint recorded
        (a ``--teacher`` given with ``--resume`` is the same teacher's new place)."""
        saved = payload.get("teacher", {}).get("digest")  # (none: an older checkpoint)
        teacher = getattr(self, "teacher", None)
        if saved is None or teacher is None or teacher.digest == saved:
            return
        raise ConfigurationError(
            f"--resume: the teacher {self.config.teacher} ({teacher.source}) is not the "
            f"run's teacher: its weights' SHA-256 is {teacher.digest[:16]}..., the "
            f"checkpoint's {saved[:16]}...; give --teacher the run's own teacher (moved "
            "or not), or start a new run to distil from another"
        )

    def _restore(self, payload: dict[str, Any]) -> int:
        self._check_resumed_teacher(payload)
        if not getattr(self, "_weights_loaded", False):  # (FSDP: before the model was cut)
            ckpt.load_weights(self.raw_model, payload, self.resume_dir or "the checkpoint")
        tp = getattr(self, "tp", None)
        try:
            if tp is None:
                self.optimizer.load_state_dict(payload["optimizer"])
            else:  # the full state, sliced as the parameters are
                tp.shards.load_full_optimizer_state(self.raw_model, self.optimizer,
                                                    payload["optimizer"])  # fmt: skip
        except ValueError as exc:  # torch's: the groups' sizes differ
            built = [len(g["params"]) for g in self.optimizer.param_groups]
            held = [len(g["params"]) for g in payload["optimizer"].get("param_groups", [])]
            raise ConfigurationError(
                f"--resume: the checkpoint's optimizer has parameter groups of sizes {held}, "
                f"this run builds groups of sizes {built} ({exc}): a run of another "
                "spikeflow version? (--no-decay-norm-bias takes the learned quantization "
                "steps out of weight decay since LSQ's first release)"
            ) from None
        expand_optimizer_state(self.optimizer, self.raw_model, payload["model"])
        if is_sharded(self.raw_model):  # the full moments, cut into this process's shards
            shard_optimizer_state(self.optimizer)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
            if int(payload["global_step"]) > 0:
                # The optimizer stepped before the checkpoint: tell the scheduler, which
                # otherwise warns that it "skips the first value of the schedule" when a
                # resume at the end of the first epoch steps it before any optimizer step
                # (the schedule is right either way: its state comes from the checkpoint).
                self.optimizer._opt_called = True  # type: ignore[attr-defined]
        self.scaler.load_state_dict(payload["scaler"])
        if self.eprop is not None:  # random or adaptive feedback: B
            self.eprop.load_state_dict(payload.get("eprop", {}))
        if self.fptt is not None:  # FPTT's running mean and multiplier
            if not payload.get("fptt"):
                raise ConfigurationError(
                    f"{self.resume_dir or 'the checkpoint'} was not trained with --fptt and "
                    "holds no running mean to resume FPTT from"
                )
            self.fptt.load_state_dict(payload["fptt"])
        if self.ema is not None:
            self.ema.load_state_dict(payload.get("model_ema", {}))
        self.epoch, self.step_in_epoch = int(payload["epoch"]), int(payload["step"])
        self.global_step = int(payload["global_step"])
        if self.pruning is not None:
            # Progress by epoch and step: steps per epoch change with the process count.
            steps = self.epoch * self.steps_per_epoch + self.step_in_epoch
            self.pruning.load_state_dict({**payload.get("pruning", {}), "step_count": steps})
        self.history = list(payload["history"])
        self.best_test_acc = float(payload["best"]["test_acc"])
        self.best_epoch = int(payload["best"]["epoch"])
        self._checkpoint = (None, checkpoint_position(payload))
        data = getattr(self, "data_ctx", self.ctx)  # (--tensor-parallel: per model copy)
        running = ckpt.epoch_state_for_rank(payload, data.rank, data.world_size)
        if running is not None:
            self.epoch_sums = getattr(self, "sums_class", EpochSums)(**running[0])
            if tp is None or tp.rank == 0:  # a copy's monitor sums: its first process's
                self.train_monitor.load_state_dict(running[1])
            if "rank_epoch_state" not in payload and int(payload["world_size"]) > 1:
                self.log(f"note: the checkpoint (of an older spikeflow) holds process 0's "
                         f"running sums only: epoch {self.epoch + 1}'s train metrics leave "
                         "out the other processes' steps before it")  # fmt: skip
        states = payload["rng"]
        split = 1 if tp is None else tp.size
        if len(states) == self.ctx.world_size and int(payload.get("tensor_parallel", 1)) == split:
            ckpt.restore_rng_state(states[self.ctx.rank])
        else:
            self.log(
                f"note: the checkpoint was written by {len(states)} processes "
                f"(--tensor-parallel {payload.get('tensor_parallel', 1)}), this run has "
                f"{self.ctx.world_size} (--tensor-parallel {split}): the random streams "
                "restart from the seed"
            )
            # (the processes of a tensor-parallel group draw alike)
            seed_everything(self.config.seed + data.rank + self.epoch)
        return self.epoch

    def _repair_best(self, payload: dict[str, Any]) -> None:
        """Write ``best.pt`` again from the resumed checkpoint when that is the best
        epoch it records but ``best.pt`` is missing, damaged or of an earlier epoch: an
        older spikeflow wrote ``last.pt`` first, and one killed before ``best.pt`` left
        a stale one. A ``best.pt`` of a later epoch (a run rewound with ``--overwrite``)
        is kept until the rewound run records a best of its own."""
        position = checkpoint_position(payload)
        if position != (int(payload["best"]["epoch"]), 0):
            return
        path = self.output_dir / "best.pt"
        try:
            held = checkpoint_position(ckpt.load_checkpoint(path)) if path.is_file() else None
        except ConfigurationError:  # damaged: replaced by the good copy
            held = None
        if held is None or held < position:
            ckpt.save_checkpoint(payload, path)
            self.log(f"note: {path} did not hold the best epoch ({payload['best']['epoch']}) "
                     "its run recorded: written again from the resumed checkpoint")  # fmt: skip
