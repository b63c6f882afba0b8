"""Spike-count losses of snnTorch: cross-entropy and squared error on ``n = sum_t O[t]``.

- :func:`ce_count_loss`: cross-entropy with the spike counts as logits (snnTorch's
  ``ce_count_loss``); spikeflow's ``ce`` takes the time-mean, ``n / T``, instead;
- :func:`mse_count_loss`: squared error of the counts against ``T * correct_rate`` for
  the label class and ``T * incorrect_rate`` for the others, divided by ``T``
  (snnTorch's ``mse_count_loss``, after SLAYER); with the rates 1 and 0 it is ``T``
  times spikeflow's ``mse``.

Both take ``out_seq`` ``[T, B, K]`` and integer labels ``[B]`` or a float class
distribution ``[B, K]``, and return a batch mean (``reduction``, ``weight`` and
``population_code``: :mod:`spikeflow.losses.weighting`). Gradients are ordinary autograd
(every step of a neuron gets ``dL/dn``). Predict with the ``count`` readout.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from spikeflow.losses.rate import (
    _as_distribution,
    _ce_target,
    _check,
    _check_output,
    _real,
    _weighting_arguments,
)
from spikeflow.losses.weighting import check_population, population_sum, reduce, sample_weights

__all__ = ["ce_count_loss", "mse_count_loss"]


def ce_count_loss(
    out_seq: Tensor,
    target: Tensor,
    label_smoothing: float = 0.0,
    weight: object = None,
    reduction: str = "mean",
    population_code: bool = False,
    num_classes: int | None = None,
) -> Tensor:
    """Cross-entropy of the spike counts: ``mean_b CE(sum_t O[t,b], y_b)``.

    snnTorch's ``ce_count_loss``. The logits are counts, not rates: at a given firing
    rate they grow with ``T``, so the softmax sharpens as ``T`` grows (spikeflow's
    ``ce``, on ``n / T``, does not).

    Args:
        out_seq: the output ``[T, B, N]`` (spikes, or any per-step values to be summed).
        target: integer labels ``[B]`` or a float class distribution ``[B, K]``.
        label_smoothing: passed to :func:`torch.nn.functional.cross_entropy`.
        weight: one weight per class; each sample's loss is scaled by its label's.
        reduction: ``"mean"`` (the plain mean over samples, weighted or not, as
            snnTorch), ``"sum"`` or ``"none"`` (one loss per sample ``[B]``).
        population_code: the ``N = K * G`` outputs are ``K = num_classes`` groups of
            ``G`` consecutive neurons, and a class's count is its group's (snnTorch's
            ``population_code``; :mod:`spikeflow.losses.weighting`).
        num_classes: ``K``, with ``population_code`` only.
    """
    classes = _population_arguments("ce_count_loss", population_code, num_classes)
    if classes is not None:
        out_seq = _population_output(out_seq, classes, "ce_count_loss")
    _check(out_seq, target, "ce_count_loss")
    label_smoothing, reduction = _ce_count_arguments(label_smoothing, weight, reduction)
    counts = out_seq.sum(dim=0)
    terms = F.cross_entropy(
        counts,
        _ce_target(target, counts.dtype),
        label_smoothing=label_smoothing,
        reduction="none",
    )
    per_sample = sample_weights("ce_count_loss", weight, target, out_seq.shape[2], counts)
    return reduce(terms, reduction, per_sample)


def mse_count_loss(
    out_seq: Tensor,
    target: Tensor,
    correct_rate: float = 1.0,
    incorrect_rate: float = 0.0,
    weight: object = None,
    reduction: str = "mean",
    population_code: bool = False,
    num_classes: int | None = None,
) -> Tensor:
    """Squared spike-count error: ``1/T * 1/(B K) * sum_{b,k} (n[b,k] - n*[b,k])^2``.

    ``n = sum_t O[t]`` and ``n* = T * (incorrect_rate + (correct_rate - incorrect_rate)
    * y)``: ``T * correct_rate`` spikes wanted from the label class, ``T *
    incorrect_rate`` from the others (snnTorch's ``mse_count_loss``). snnTorch rounds
    the wanted counts down to integers (``int(T * rate)``); spikeflow keeps them exact,
    so the two agree where ``T * rate`` is a whole number.

    With ``population_code=True, num_classes=K``, ``n`` is the count of each class's
    group of ``G = N / K`` neurons and ``n* = T * G * rate`` (snnTorch's; a
    :class:`~spikeflow.layers.VotingLayer` output, the group mean, gives ``1/G^2`` of
    this loss with the same rates).

    Args:
        out_seq: the output spikes ``[T, B, N]``.
        target: integer labels ``[B]`` or a float class distribution ``y`` ``[B, K]``.
        correct_rate: the label class's wanted firing rate, in ``[0, 1]``.
        incorrect_rate: the other classes' wanted firing rate, in ``[0, 1]``.
        weight: one weight per class; each sample's terms are scaled by its label's.
        reduction: ``"mean"`` (over the ``B K`` terms, weighted or not, as snnTorch),
            ``"sum"`` or ``"none"`` (the terms ``[B, K]``, each divided by ``T``).
        population_code: sum groups of ``G`` consecutive outputs into ``K`` classes.
        num_classes: ``K``, with ``population_code`` only.
    """
    classes = _population_arguments("mse_count_loss", population_code, num_classes)
    group = 1
    if classes is not None:
        group = out_seq.shape[-1] // classes if isinstance(out_seq, Tensor) else 1
        out_seq = _population_output(out_seq, classes, "mse_count_loss")
    _check(out_seq, target, "mse_count_loss")
    correct_rate, incorrect_rate, reduction = _mse_count_arguments(
        correct_rate, incorrect_rate, weight, reduction
    )
    steps, _, classes = out_seq.shape
    y = _as_distribution(target, classes, out_seq.dtype)
    wanted = steps * group * (incorrect_rate + (correct_rate - incorrect_rate) * y)
    counts = out_seq.sum(dim=0)
    terms = (counts - wanted).pow(2) / steps
    per_sample = sample_weights("mse_count_loss", weight, target, classes, counts)
    return reduce(terms, reduction, per_sample)


def _population_arguments(loss: str, population_code: object, num_classes: object) -> int | None:
    return check_population(loss, population_code, num_classes)


def _population_output(out_seq: Tensor, classes: int, loss: str) -> Tensor:
    """``out_seq`` ``[T, B, N]`` with its groups summed, ``[T, B, K]``."""
    _check_output(out_seq, loss)
    return population_sum(out_seq, classes, loss)


def _ce_count_arguments(
    label_smoothing: object,
    weight: object = None,
    reduction: object = "mean",
    population_code: object = False,
    num_classes: object = None,
) -> tuple[float, str]:
    check_population("ce_count_loss", population_code, num_classes)
    return (
        _real("ce_count_loss", "label_smoothing", label_smoothing, 0.0, 1.0),
        _weighting_arguments("ce_count_loss", weight, reduction),
    )


def _mse_count_arguments(
    correct_rate: object,
    incorrect_rate: object,
    weight: object = None,
    reduction: object = "mean",
    population_code: object = False,
    num_classes: object = None,
) -> tuple[float, float, str]:
    check_population("mse_count_loss", population_code, num_classes)
    return (
        _real("mse_count_loss", "correct_rate", correct_rate, 0.0, 1.0),
        _real("mse_count_loss", "incorrect_rate", incorrect_rate, 0.0, 1.0),
        _weighting_arguments("mse_count_loss", weight, reduction),
    )
