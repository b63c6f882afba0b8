"""Threshold schedules for soft-threshold pruning (STDS, LATS; methods.md 8.2-8.3).

Call ``step()`` once after each optimizer step. Both keep their position in
``state_dict()`` so a resumed run continues the schedule.

* :class:`ThresholdSchedule`: ``d = D·g(x)`` with ``x = (step - start)/(total - start)``
  clipped to ``[0, 1]``; ``g`` is ``"sine"`` ``(1 + sin(π(x - 1/2)))/2`` or ``"linear"``
  ``x`` (STDS), or ``"slats"`` ``x + sin(πx)/π`` (S-LATS: LATS under a cosine learning
  rate, in closed form).
* :class:`LATSThreshold`: LATS itself, ``d ← d + λ·η`` with η the learning rate the
  optimizer just used, for any learning-rate schedule (an L1 penalty of constant
  strength λ, solved by ISTA).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.prune.reparam import SoftThreshold, _threshold, pruned_layers

__all__ = ["SHAPES", "LATSThreshold", "ThresholdSchedule", "threshold_at"]

SHAPES = ("sine", "linear", "slats")


def threshold_at(shape: str, x: float, final: float) -> float:
    """The threshold of the schedule ``shape`` at progress ``x`` in ``[0, 1]``."""
    if shape == "sine":
        return final * (1.0 + math.sin(math.pi * (x - 0.5))) / 2.0
    if shape == "linear":
        return final * x
    if shape == "slats":
        return final * (x + math.sin(math.pi * x) / math.pi)
    raise ConfigurationError(f"threshold shape must be one of {', '.join(SHAPES)}; got {shape!r}")


def _thresholds(model: nn.Module) -> list[torch.Tensor]:
    found = [reparam.threshold for _, _, reparam in pruned_layers(model, SoftThreshold)]
    if not found:
        raise ConfigurationError(
            "the model has no soft-threshold layer: call "
            "spikeflow.prune.apply_soft_threshold(model) before building the schedule"
        )
    return found


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class ThresholdSchedule:
    """The STDS / S-LATS threshold ``d``: 0 up to ``start_step``, ``final_threshold``
    from ``total_steps`` on.

    Args:
        model: a model prepared by :func:`~spikeflow.prune.apply_soft_threshold`.
        final_threshold: D, the threshold at the end.
        total_steps: the optimizer steps of the whole run (epochs × batches per epoch).
        shape: ``"sine"`` (STDS's default), ``"linear"`` or ``"slats"``.
        start_step: the step at which pruning starts.

    The threshold is set when the schedule is built (step 0) and after each ``step()``.
    """

    def __init__(
        self,
        model: nn.Module,
        final_threshold: float,
        total_steps: int,
        shape: str = "sine",
        start_step: int = 0,
    ) -> None:
        self.final_threshold = _threshold(final_threshold, "final_threshold", "ThresholdSchedule")
        self.total_steps = _count("total_steps", total_steps, 1)
        self.start_step = _count("start_step", start_step, 0)
        if self.start_step >= self.total_steps:
            raise ConfigurationError(
                f"start_step ({start_step}) must be below total_steps ({total_steps})"
            )
        threshold_at(shape, 0.0, 0.0)  # checks the name
        self.shape = shape
        self._targets = _thresholds(model)
        self.step_count = 0
        self._apply()

    @property
    def threshold(self) -> float:
        """The threshold at the current step."""
        x = (self.step_count - self.start_step) / (self.total_steps - self.start_step)
        return threshold_at(self.shape, min(max(x, 0.0), 1.0), self.final_threshold)

    def _apply(self) -> None:
        d = self.threshold
        for target in self._targets:
            target.fill_(d)

    def step(self) -> float:
        """Advance one optimizer step; return the new threshold."""
        self.step_count += 1
        self._apply()
        return self.threshold

    def state_dict(self) -> dict[str, Any]:
        """The schedule's position (its settings come from the constructor)."""
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position."""
        self.step_count = _count("step_count", state["step_count"], 0)
        self._apply()


class LATSThreshold:
    """LATS: each layer's threshold grows by ``l1 × (its learning rate)`` per step.

    Args:
        model: a model prepared by :func:`~spikeflow.prune.apply_soft_threshold`.
        optimizer: the optimizer training it (each layer reads the learning rate of the
            parameter group holding its hidden weight).
        l1: λ, the strength of the implied L1 penalty ``λ·‖w‖₁``.

    Raises:
        ConfigurationError: ``l1`` negative or not finite, or a soft-threshold layer
            whose hidden weight the optimizer does not train.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, l1: float) -> None:
        self.l1 = _threshold(l1, "l1", "LATSThreshold")
        self.optimizer = optimizer
        group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        self._targets: list[tuple[torch.Tensor, int]] = []
        for name, layer, reparam in pruned_layers(model, SoftThreshold):
            hidden = layer.parametrizations.weight.original
            if id(hidden) not in group_of:
                raise ConfigurationError(
                    f"layer {name!r}: the optimizer does not train its hidden weight "
                    "(build the optimizer after apply_soft_threshold)"
                )
            self._targets.append((reparam.threshold, group_of[id(hidden)]))
        if not self._targets:
            _thresholds(model)  # raises the error naming apply_soft_threshold

    def step(self) -> None:
        """Raise each threshold by λ·η for the step the optimizer just made."""
        for threshold, index in self._targets:
            lr = float(self.optimizer.param_groups[index]["lr"])
            threshold.add_(self.l1 * lr)

    def state_dict(self) -> dict[str, Any]:
        """The thresholds reached (also in the model's state dict)."""
        return {"thresholds": [float(t) for t, _ in self._targets]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the thresholds reached."""
        values = state["thresholds"]
        if len(values) != len(self._targets):
            raise ConfigurationError(
                f"LATSThreshold state holds {len(values)} thresholds; the model has "
                f"{len(self._targets)} soft-threshold layers"
            )
        for (threshold, _), value in zip(self._targets, values, strict=True):
            threshold.fill_(_threshold(value, "threshold", "LATSThreshold state"))
