"""Accuracy against mean time steps for many exit thresholds, from one pass.

The network runs all ``T`` steps once per batch; for every threshold the exits are
read off the outputs after the fact (:func:`~spikeflow.inference.exit_from_outputs`),
which gives what :func:`~spikeflow.inference.early_exit` would for that threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from spikeflow._checks import check_labels
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.inference.early_exit import (
    Accumulate,
    Criterion,
    ExitRule,
    _check_outputs,
    _eval_mode,
    exit_from_outputs,
)

__all__ = ["SweepPoint", "ThresholdSweep", "threshold_sweep"]


@dataclass(frozen=True)
class SweepPoint:
    """One threshold's result: the share of samples predicted right, the mean steps
    run, the samples, and how many samples exited at each step (``exits[t]``: at step
    ``t + 1``)."""

    threshold: float
    accuracy: float
    mean_steps: float
    samples: int
    exits: tuple[int, ...]


class ThresholdSweep:
    """Running counts of :class:`SweepPoint` for each of ``thresholds`` of
    ``criterion`` (a sequence of numbers, or a 1-D array or tensor such as
    ``np.linspace(0, 1, 21)``): feed it each batch's outputs with :meth:`update`, read
    the curve with :meth:`points`.

    Raises:
        ConfigurationError: no thresholds, or a bad criterion, threshold or
            accumulation (as :class:`~spikeflow.inference.ExitRule`).
    """

    def __init__(
        self, criterion: Criterion, thresholds: Sequence[float], accumulate: Accumulate = "mean"
    ) -> None:
        if isinstance(thresholds, (Tensor, np.ndarray)) and thresholds.ndim == 1:
            thresholds = thresholds.tolist()  # np.linspace / torch.linspace: their floats
        if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Sequence):
            raise ConfigurationError(
                "ThresholdSweep: thresholds must be a sequence of numbers (or a 1-D array "
                f"or tensor), got {thresholds!r}"
            )
        if not thresholds:
            raise ConfigurationError("ThresholdSweep: thresholds is empty")
        self.rules = [ExitRule(criterion, t, accumulate) for t in thresholds]
        self._correct = [0] * len(self.rules)
        self._steps = [0] * len(self.rules)
        self._exits: list[Tensor | None] = [None] * len(self.rules)
        self._samples = 0
        self._length: int | None = None

    def update(self, out_seq: Tensor, labels: Tensor) -> None:
        """Add one batch: its outputs ``[T, B, K]`` over all steps and its labels ``[B]``.

        Raises:
            ShapeError: ``out_seq`` not ``[T, B, K]``, labels not ``[B]`` classes in
                ``[0, K)``, or a ``T`` other than the earlier batches'.
            DTypeError: labels that are not integers.
        """
        _check_outputs(out_seq)
        if (
            not isinstance(labels, Tensor)
            or labels.is_floating_point()
            or labels.dtype == torch.bool
        ):
            raise DTypeError("ThresholdSweep.update: labels must be integer class labels [B]")
        steps, batch, classes = out_seq.shape
        check_labels("ThresholdSweep.update", labels, batch, classes, out_seq.shape)
        if self._length is not None and steps != self._length:
            raise ShapeError(
                f"ThresholdSweep.update: this batch has T = {steps} steps, the earlier "
                f"ones {self._length}"
            )
        self._length = steps
        labels = labels.to(out_seq.device)
        for i, rule in enumerate(self.rules):
            result = exit_from_outputs(out_seq, rule)
            self._correct[i] += int((result.predictions == labels).sum())
            self._steps[i] += int(result.exit_steps.sum())
            counts = torch.bincount(result.exit_steps - 1, minlength=steps).cpu()
            previous = self._exits[i]
            self._exits[i] = counts if previous is None else previous + counts
        self._samples += batch

    def points(self) -> list[SweepPoint]:
        """The curve so far, one point per threshold in the order given.

        Raises:
            ConfigurationError: no batch was added.
        """
        if not self._samples:
            raise ConfigurationError("ThresholdSweep.points: no batch was added (update)")
        n = self._samples
        return [
            SweepPoint(rule.threshold, self._correct[i] / n, self._steps[i] / n, n,
                       tuple(int(c) for c in self._exits[i]))  # type: ignore[union-attr]
            for i, rule in enumerate(self.rules)
        ]  # fmt: skip


@torch.no_grad()
def threshold_sweep(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    criterion: Criterion,
    thresholds: Sequence[float],
    accumulate: Accumulate = "mean",
) -> list[SweepPoint]:
    """Accuracy against mean steps of ``model`` for each of ``thresholds``: one run of
    all ``T`` steps per batch ``(x_seq [T, B, ...], labels [B])`` (in eval mode, modes
    restored after), every threshold's exits read off its outputs.

    Raises:
        ConfigurationError: as :class:`ThresholdSweep`, or no batches.
        ShapeError: the model's output is not ``[T, B, K]``.
    """
    sweep = ThresholdSweep(criterion, thresholds, accumulate)
    with _eval_mode(model):
        for x_seq, labels in batches:
            sweep.update(model(x_seq), labels)
    return sweep.points()
