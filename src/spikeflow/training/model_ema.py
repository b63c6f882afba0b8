"""Model EMA (``--model-ema``): an exponential moving average of a run's weights and
buffers, evaluated beside the trained model, as torchvision's reference classification
recipe keeps it (and SpikingJelly's ``train_classify.py``, whose published ImageNet
numbers use it).

The recipe's rules, kept here:

* the average is updated after the optimizer step of every ``steps``-th batch of an
  epoch (batch index ``i % steps == 0``, ``i`` counted from 0 in each epoch);
* the decay given (``--model-ema-decay``, default 0.99998) is adjusted to the run:
  ``adjust = world_size * batch_per_process * steps / epochs`` (spikeflow's
  ``batch_size`` is the global batch, ``world_size * batch_per_process``), then
  ``alpha = min(1, (1 - decay) * adjust)`` and the decay used is ``1 - alpha``;
* during the learning-rate warm-up (epoch < ``warmup_epochs``) every update copies the
  weights instead of averaging them;
* parameters and buffers are averaged alike (``use_buffers=True``): ``ema <- decay * ema
  + (1 - decay) * w`` (as ``torch.lerp(ema, w, 1 - decay)``), the first update a copy.
  Integer buffers (batch norms' ``num_batches_tracked``) are copied, not averaged.

Two departures, for what torchvision's models do not hold:

* values the trainer sets from the epoch, not trained (a schedule's position: the
  delays' Gaussian width ``sigma``, the masked PSN's ``mask_lambda``, STDS/LATS's pruning
  ``threshold``; :data:`SCHEDULED_BUFFERS`), are copied at every update: the average
  is evaluated at the run's current point of the schedule (a lagging ``mask_lambda < 1``
  would unmask future steps, a lagging ``sigma`` keep the delay kernels wider than the
  run made them);
* non-persistent buffers (constants, or per-episode noise drawn as the model runs) are
  not averaged: they are not in checkpoints, so ``eval --ema`` could not see them.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.layers.delay import DelayedLinear
from spikeflow.neurons.parallel import MaskedPSN
from spikeflow.prune.reparam import SoftThreshold

__all__ = ["SCHEDULED_BUFFERS", "ModelEMA", "adjusted_ema_decay", "ema_start_share"]

#: Buffers a schedule sets (module class, buffer name): copied by each update.
SCHEDULED_BUFFERS: tuple[tuple[type, str], ...] = (
    (DelayedLinear, "sigma"),
    (MaskedPSN, "mask_lambda"),
    (SoftThreshold, "threshold"),
)


def _averaged_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], set[str]]:
    """``model``'s parameters and persistent buffers by name, and the names of those
    a schedule sets (:data:`SCHEDULED_BUFFERS`)."""
    tensors = dict(model.named_parameters())
    scheduled = set()
    for prefix, module in model.named_modules():
        for name, buffer in module._buffers.items():
            if buffer is None or name in module._non_persistent_buffers_set:
                continue
            full = f"{prefix}.{name}" if prefix else name
            tensors.setdefault(full, buffer)
            if any(isinstance(module, cls) and name == n for cls, n in SCHEDULED_BUFFERS):
                scheduled.add(full)
    return tensors, scheduled


def adjusted_ema_decay(decay: float, global_batch: int, steps: int, epochs: int) -> float:
    """The decay the recipe uses for ``--model-ema-decay decay``: with ``adjust =
    global_batch * steps / epochs``, ``1 - min(1, (1 - decay) * adjust)``.

    Raises:
        ConfigurationError: ``decay`` outside [0, 1], or a count below 1.
    """
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay <= 1:
        raise ConfigurationError(f"model_ema_decay must be a number in [0, 1], got {decay!r}")
    for name, value in (("global batch", global_batch), ("model_ema_steps", steps),
                        ("epochs", epochs)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
    adjust = global_batch * steps / epochs
    return 1.0 - min(1.0, (1.0 - decay) * adjust)


def ema_start_share(
    decay: float, steps_per_epoch: int, steps: int, epochs: int, warmup_epochs: int = 0
) -> float:
    """The weight the run's last average still gives the weights of its first averaging
    update (the copy after the warm-up): ``decay ** (U - 1)``, with ``U =
    ceil(steps_per_epoch / steps) * (epochs - warmup_epochs)`` updates after the warm-up.

    The recipe's adjustment leaves the dataset out (its ``adjust`` is ``1 / total
    updates`` only up to the number of samples, constant on ImageNet), so
    ``decay ** U ~ exp(-(1 - D) * samples_per_epoch * (epochs - warmup) / epochs)``:
    the default ``D = 0.99998`` forgets its start on ImageNet's 1.28M samples
    (``e^-25``) but keeps most of it on a dataset of a few thousand.
    """
    updates = math.ceil(steps_per_epoch / steps) * max(0, epochs - warmup_epochs)
    return 1.0 if updates <= 1 else float(decay ** (updates - 1))


class ModelEMA:
    """The moving average of ``model``'s parameters and persistent buffers (those a
    schedule sets copied), held in a copy of it.

    Args:
        model: the trained model (not a DDP or compiled wrapper); copied now, so build
            this before hooks are put on ``model`` (the copy would carry them).
        decay: the decay of each update (already adjusted: :func:`adjusted_ema_decay`).

    Attributes:
        module: the copy holding the average; evaluate it like the model.
        updates: the updates that averaged so far (0: the next update copies).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ConfigurationError(f"EMA decay must be in [0, 1], got {decay!r}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.updates = 0

    def _pairs(self, model: nn.Module) -> list[tuple[bool, torch.Tensor, torch.Tensor]]:
        """(scheduled, average, current) for every parameter and persistent buffer,
        matched by name (scheduled: a buffer a schedule sets, copied)."""
        mine, scheduled = _averaged_tensors(self.module)
        theirs, _ = _averaged_tensors(model)
        missing = sorted(set(mine) ^ set(theirs))
        if missing:
            raise ConfigurationError(
                f"model EMA: the model's parameters and buffers no longer match its "
                f"average's (differ: {', '.join(missing[:5])})"
            )
        return [(name in scheduled, mine[name], theirs[name]) for name in mine]

    @torch.no_grad()
    def update(self, model: nn.Module, copy_only: bool = False) -> None:
        """Average ``model``'s weights in (the first time, or with ``copy_only``: copy
        them, and the next update copies again, as the recipe's warm-up does). An
        FSDP-sharded ``model``'s weights are gathered whole: every process calls this."""
        first = self.updates == 0
        for scheduled, average, current in self._pairs(model):
            if hasattr(current, "full_tensor"):  # an FSDP shard: gathered (every process)
                current = current.full_tensor()
            current = current.detach().to(average.device)
            copied = first or scheduled or not average.is_floating_point()
            if copied or average.shape != current.shape:
                if average.shape != current.shape:  # a state resized by the last batch
                    average.resize_(current.shape)
                average.copy_(current)
            else:
                average.lerp_(current, 1.0 - self.decay)
        self.updates = 0 if copy_only else self.updates + 1

    def state_dict(self) -> dict[str, Any]:
        """The average's weights (``module``'s state dict) and the update count."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s result.

        Raises:
            ConfigurationError: ``state`` lacks ``module`` or ``updates``, or its weights
                do not fit the model.
        """
        if not isinstance(state, dict) or "module" not in state or "updates" not in state:
            raise ConfigurationError(
                "the checkpoint's model_ema entry lacks 'module' or 'updates': it is damaged"
            )
        try:
            self.module.load_state_dict(state["module"])
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:300]
            raise ConfigurationError(
                f"the checkpoint's model_ema weights do not fit the model: {detail}"
            ) from exc
        self.updates = int(state["updates"])
