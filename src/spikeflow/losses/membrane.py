"""Membrane losses: on the output layer's membrane potential instead of its spikes.

Both take the output membrane as a time-major sequence ``out_seq`` ``[T, B, K]``, as a
non-spiking readout gives it (:class:`~spikeflow.neurons.LINode`, a plain linear layer
at every step, or a spiking output layer's ``v_seq`` with ``store_v_seq=True``):

- :func:`mse_membrane_loss`: the squared error of the membrane at every step against an
  "on" value for the label class and an "off" value for the others (snnTorch's
  ``mse_membrane_loss``);
- :func:`ce_max_membrane_loss`: cross-entropy of each neuron's largest membrane over
  time (snnTorch's ``ce_max_membrane_loss``, after SpyTorch); predict with the ``max``
  readout.

Values are batch means as everywhere in :mod:`spikeflow.losses` (docs/models.md lists
where snnTorch's conventions differ); ``weight`` and ``reduction`` follow
:mod:`spikeflow.losses.weighting`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses.rate import _ce_target, _check, _check_output, _real, _weighting_arguments
from spikeflow.losses.weighting import reduce, sample_weights

__all__ = ["ce_max_membrane_loss", "mse_membrane_loss"]

_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8)


def _per_step_distribution(out_seq: Tensor, target: Tensor, loss: str) -> Tensor:
    """The class distribution ``[T, B, K]`` or ``[B, K]`` of a membrane-loss target.

    Accepted: labels ``[B]`` or per-step labels ``[T, B]`` (integer), a distribution
    ``[B, K]`` or per-step distributions ``[T, B, K]`` (float).
    """
    _check_output(out_seq, loss)
    steps, batch, classes = out_seq.shape
    per_step = isinstance(target, Tensor) and target.dim() == (
        3 if target.is_floating_point() else 2
    )
    if not per_step:
        _check(out_seq, target, loss)
        one_hot = target.is_floating_point()
        return target.to(out_seq.dtype) if one_hot else _one_hot(target, classes, out_seq)
    wanted = (steps, batch, classes) if target.is_floating_point() else (steps, batch)
    if tuple(target.shape) != wanted:
        kind = "distributions [T, B, K]" if target.is_floating_point() else "labels [T, B]"
        raise ShapeError(
            f"{loss}: per-step {kind} must have shape {list(wanted)}, got {tuple(target.shape)}"
        )
    if target.is_floating_point():
        return target.to(out_seq.dtype)
    if target.dtype not in _INTEGER_DTYPES:
        raise DTypeError(f"{loss}: target must be integer labels or float, got {target.dtype}")
    if int(target.min()) < 0 or int(target.max()) >= classes:
        raise ConfigurationError(
            f"{loss}: labels must lie in [0, {classes - 1}], "
            f"got range [{int(target.min())}, {int(target.max())}]"
        )
    return _one_hot(target, classes, out_seq)


def _one_hot(labels: Tensor, classes: int, like: Tensor) -> Tensor:
    return F.one_hot(labels.long(), classes).to(like.dtype)


def mse_membrane_loss(
    out_seq: Tensor,
    target: Tensor,
    on_target: float = 1.0,
    off_target: float = 0.0,
    weight: object = None,
    reduction: str = "mean",
) -> Tensor:
    """Squared error of the output membrane against on/off targets, at every step.

    ``L = 1/(T B K) * sum_{t,b,k} (U[t,b,k] - u*[t,b,k])^2`` with
    ``u* = off_target + (on_target - off_target) * y``: ``on_target`` for the label
    class, ``off_target`` for the others (snnTorch's ``mse_membrane_loss``).

    Args:
        out_seq: the output membrane ``[T, B, K]``.
        target: integer labels ``[B]``, or per-step labels ``[T, B]`` (snnTorch's
            ``time_var_targets=True``); or a float class distribution ``y`` ``[B, K]``
            or per-step ``[T, B, K]`` (mixup, label smoothing).
        on_target: the membrane wanted for the label class.
        off_target: the membrane wanted for the other classes.
        weight: one weight per class; each sample's terms (at each step, with
            per-step labels) are scaled by its label's weight.
        reduction: ``"mean"`` (over the terms, weighted or not, as snnTorch), ``"sum"``
            or ``"none"``: the terms ``[B, K]``, each ``mean_t (U - u*)^2``.

    Predict with the ``rate`` readout (the largest time-mean membrane).

    Raises:
        ShapeError, DTypeError: ``out_seq`` is not a floating ``[T, B, K]`` tensor, or a
            target of none of the shapes above.
        ConfigurationError: labels outside ``[0, K)``, or a target value that is not a
            finite real number.
    """
    on_target, off_target, reduction = _mse_membrane_arguments(
        on_target, off_target, weight, reduction
    )
    y = _per_step_distribution(out_seq, target, "mse_membrane_loss")
    wanted = off_target + (on_target - off_target) * y
    squares = (out_seq - wanted).pow(2)  # [T, B, K]
    classes = out_seq.shape[2]
    per_sample = sample_weights("mse_membrane_loss", weight, target, classes, out_seq)
    if per_sample is not None:  # [B] or per-step [T, B]
        squares = squares * per_sample.reshape(-1, out_seq.shape[1], 1)
    return reduce(squares.mean(dim=0), reduction)


def ce_max_membrane_loss(
    out_seq: Tensor,
    target: Tensor,
    label_smoothing: float = 0.0,
    weight: object = None,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy of the largest membrane over time: ``mean_b CE(max_t U[t,b], y_b)``.

    snnTorch's ``ce_max_membrane_loss`` (after SpyTorch): the logits of a sample are
    each output neuron's maximum membrane over the ``T`` steps; the gradient reaches the
    step where the maximum was (the first such step on ties, as ``torch.max``).

    Args:
        out_seq: the output membrane ``[T, B, K]``.
        target: integer labels ``[B]`` or a float class distribution ``[B, K]``.
        label_smoothing: passed to :func:`torch.nn.functional.cross_entropy`.
        weight: one weight per class; each sample's loss is scaled by its label's.
        reduction: ``"mean"`` (the plain mean over samples, weighted or not, as
            snnTorch), ``"sum"`` or ``"none"`` (one loss per sample ``[B]``).

    Predict with the ``max`` readout (:func:`~spikeflow.losses.predict`).
    """
    if isinstance(target, Tensor) and target.dim() == 2 and not target.is_floating_point():
        raise DTypeError(
            "ce_max_membrane_loss: target must be labels [B] or a float class "
            f"distribution [B, K]; got integer {tuple(target.shape)} (per-step labels "
            "have no meaning for a maximum over time)"
        )
    _check(out_seq, target, "ce_max_membrane_loss")
    label_smoothing, reduction = _ce_max_membrane_arguments(label_smoothing, weight, reduction)
    logits = out_seq.max(dim=0).values
    terms = F.cross_entropy(
        logits,
        _ce_target(target, logits.dtype),
        label_smoothing=label_smoothing,
        reduction="none",
    )
    classes = out_seq.shape[2]
    per_sample = sample_weights("ce_max_membrane_loss", weight, target, classes, logits)
    return reduce(terms, reduction, per_sample)


def _mse_membrane_arguments(
    on_target: object, off_target: object, weight: object = None, reduction: object = "mean"
) -> tuple[float, float, str]:
    return (
        _real("mse_membrane_loss", "on_target", on_target),
        _real("mse_membrane_loss", "off_target", off_target),
        _weighting_arguments("mse_membrane_loss", weight, reduction),
    )


def _ce_max_membrane_arguments(
    label_smoothing: object, weight: object = None, reduction: object = "mean"
) -> tuple[float, str]:
    return (
        _real("ce_max_membrane_loss", "label_smoothing", label_smoothing, 0.0, 1.0),
        _weighting_arguments("ce_max_membrane_loss", weight, reduction),
    )
