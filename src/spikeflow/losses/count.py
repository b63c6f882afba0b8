"""Spike-count losses of snnTorch: cross-entropy and squared error on ``n = sum_t O[t]``.

- :func:`ce_count_loss`: cross-entropy with the spike counts as logits (snnTorch's
  ``ce_count_loss``); spikeflow's ``ce`` takes the time-mean, ``n / T``, instead;
- :func:`mse_count_loss`: squared error of the counts against ``T * correct_rate`` for
  the label class and ``T * incorrect_rate`` for the others, divided by ``T``
  (snnTorch's ``mse_count_loss``, after SLAYER); with the rates 1 and 0 it is ``T``
  times spikeflow's ``mse``.

Both take ``out_seq`` ``[T, B, K]`` and integer labels ``[B]`` or a float class
distribution ``[B, K]``, and return a batch mean. Gradients are ordinary autograd
(every step of a neuron gets ``dL/dn``). Predict with the ``count`` readout.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from spikeflow.losses.rate import _as_distribution, _ce_target, _check, _real

__all__ = ["ce_count_loss", "mse_count_loss"]


def ce_count_loss(out_seq: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of the spike counts: ``mean_b CE(sum_t O[t,b], y_b)``.

    snnTorch's ``ce_count_loss``. The logits are counts, not rates: at a given firing
    rate they grow with ``T``, so the softmax sharpens as ``T`` grows (spikeflow's
    ``ce``, on ``n / T``, does not).

    Args:
        out_seq: the output ``[T, B, K]`` (spikes, or any per-step values to be summed).
        target: integer labels ``[B]`` or a float class distribution ``[B, K]``.
        label_smoothing: passed to :func:`torch.nn.functional.cross_entropy`.
    """
    _check(out_seq, target, "ce_count_loss")
    label_smoothing = _ce_count_arguments(label_smoothing)
    counts = out_seq.sum(dim=0)
    return F.cross_entropy(
        counts, _ce_target(target, counts.dtype), label_smoothing=label_smoothing
    )


def mse_count_loss(
    out_seq: Tensor, target: Tensor, correct_rate: float = 1.0, incorrect_rate: float = 0.0
) -> Tensor:
    """Squared spike-count error: ``1/T * 1/(B K) * sum_{b,k} (n[b,k] - n*[b,k])^2``.

    ``n = sum_t O[t]`` and ``n* = T * (incorrect_rate + (correct_rate - incorrect_rate)
    * y)``: ``T * correct_rate`` spikes wanted from the label class, ``T *
    incorrect_rate`` from the others (snnTorch's ``mse_count_loss``). snnTorch rounds
    the wanted counts down to integers (``int(T * rate)``); spikeflow keeps them exact,
    so the two agree where ``T * rate`` is a whole number.

    Args:
        out_seq: the output spikes ``[T, B, K]``.
        target: integer labels ``[B]`` or a float class distribution ``y`` ``[B, K]``.
        correct_rate: the label class's wanted firing rate, in ``[0, 1]``.
        incorrect_rate: the other classes' wanted firing rate, in ``[0, 1]``.
    """
    _check(out_seq, target, "mse_count_loss")
    correct_rate, incorrect_rate = _mse_count_arguments(correct_rate, incorrect_rate)
    steps, _, classes = out_seq.shape
    y = _as_distribution(target, classes, out_seq.dtype)
    wanted = steps * (incorrect_rate + (correct_rate - incorrect_rate) * y)
    return F.mse_loss(out_seq.sum(dim=0), wanted) / steps


def _ce_count_arguments(label_smoothing: object) -> float:
    return _real("ce_count_loss", "label_smoothing", label_smoothing, 0.0, 1.0)


def _mse_count_arguments(correct_rate: object, incorrect_rate: object) -> tuple[float, float]:
    return (
        _real("mse_count_loss", "correct_rate", correct_rate, 0.0, 1.0),
        _real("mse_count_loss", "incorrect_rate", incorrect_rate, 0.0, 1.0),
    )
