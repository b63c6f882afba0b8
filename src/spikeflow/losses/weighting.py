"""Class weights, reductions and population codes shared by the classification losses.

snnTorch's losses take ``weight`` (one weight per class) and ``reduction``; its count
losses and ``accuracy_rate`` also take ``population_code=True, num_classes=K``. The
rules here, the same for every spikeflow loss that takes them:

- ``weight`` ``w`` ``[K]`` scales each sample's loss by the weight of its label,
  ``w[y_b]`` (a float class distribution ``y_b`` gives ``y_b . w``);
- ``reduction="mean"`` is the plain mean of the (weighted) terms, as snnTorch's
  ``LossFunctions`` (and Keras's ``class_weight``) do; :func:`torch.nn.functional.
  cross_entropy` with ``weight`` divides by ``sum_b w[y_b]`` instead (reduction
  ``"sum"`` divided by ``weight[target].sum()`` gives that);
- ``reduction="sum"`` sums them; ``"none"`` returns them unreduced: one per sample
  ``[B]`` for the cross-entropy losses, one per sample and class ``[B, K]`` for the
  squared-error losses (as :class:`torch.nn.MSELoss` and snnTorch), so that ``"none"``
  summed is ``"sum"`` and its mean is ``"mean"``;
- ``population_code=True, num_classes=K``: the ``N = K * G`` outputs are ``K``
  consecutive groups of ``G`` neurons, and each group's outputs are summed (snnTorch's
  ``_population_code``); :class:`~spikeflow.layers.VotingLayer` takes their mean,
  ``1/G`` of it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from spikeflow._checks import check_flag, check_int
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["REDUCTIONS", "population_sum"]

#: The values of every loss's ``reduction``.
REDUCTIONS = ("mean", "sum", "none")


def check_reduction(loss: str, reduction: object) -> str:
    """``reduction`` if it is one of :data:`REDUCTIONS`, else a ConfigurationError."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ConfigurationError(
            f"{loss}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
        )
    return reduction


def check_weight(loss: str, weight: object) -> Tensor | None:
    """``weight`` (a list, tuple or 1-d tensor of finite reals ``>= 0``, one per class)
    as a float64 tensor, ``None`` as it is; else a ConfigurationError."""
    if weight is None:
        return None
    if isinstance(weight, Tensor):
        values = weight.detach().cpu().double()
    elif isinstance(weight, (list, tuple)) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in weight
    ):
        values = torch.tensor([float(v) for v in weight], dtype=torch.float64)
    else:
        raise ConfigurationError(
            f"{loss}: weight must be a list or 1-d tensor of class weights, got {weight!r}"
        )
    if values.dim() != 1 or values.numel() == 0:
        raise ConfigurationError(
            f"{loss}: weight must be a non-empty 1-d list of class weights, got shape "
            f"{tuple(values.shape)}"
        )
    if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ConfigurationError(
            f"{loss}: weight must hold finite values >= 0, got {values.tolist()}"
        )
    return values


def sample_weights(
    loss: str, weight: object, target: Tensor, classes: int, like: Tensor
) -> Tensor | None:
    """The weight of each sample (shape of ``target`` without its class axis): ``w[y]``
    for labels, ``y . w`` for a float class distribution; ``None`` without ``weight``.

    Raises:
        ShapeError: ``weight`` does not hold one value per class (``classes``).
    """
    values = check_weight(loss, weight)
    if values is None:
        return None
    if values.numel() != classes:
        raise ShapeError(
            f"{loss}: weight has {values.numel()} values, one per class is needed (K = {classes})"
        )
    values = values.to(device=like.device, dtype=like.dtype)
    if target.is_floating_point():
        return target.to(like.dtype) @ values
    return values[target.long()]


def reduce(terms: Tensor, reduction: str, per_sample: Tensor | None = None) -> Tensor:
    """``terms`` (samples on their leading axes, as ``per_sample``) weighted by
    ``per_sample`` where given, then reduced by ``reduction``."""
    if per_sample is not None:
        extra = terms.dim() - per_sample.dim()
        terms = terms * per_sample.reshape(*per_sample.shape, *([1] * extra))
    if reduction == "mean":
        return terms.mean()
    if reduction == "sum":
        return terms.sum()
    return terms


def check_population(loss: str, population_code: object, num_classes: object) -> int | None:
    """``num_classes`` as an int where ``population_code`` is set (it is needed then),
    ``None`` otherwise; else a ConfigurationError naming the argument."""
    if not check_flag(loss, "population_code", population_code):
        if num_classes is not None:
            raise ConfigurationError(
                f"{loss}: num_classes ({num_classes!r}) is only read with population_code=True"
            )
        return None
    if num_classes is None:
        raise ConfigurationError(f"{loss}: population_code=True needs num_classes=K")
    return check_int(f"{loss}: num_classes", num_classes, 1)


def population_sum(out_seq: Tensor, num_classes: int, loss: str = "population_sum") -> Tensor:
    """``out_seq`` ``[T, B, N]`` with its ``N = K * G`` outputs summed over each of the
    ``K = num_classes`` groups of ``G`` consecutive neurons: ``[T, B, K]``.

    snnTorch's population code sums the groups (over steps too);
    :class:`~spikeflow.layers.VotingLayer` averages them (``1/G`` of this).

    Raises:
        ShapeError: ``N`` is not a multiple of ``num_classes``.
    """
    num_classes = check_int(f"{loss}: num_classes", num_classes, 1)
    outputs = out_seq.shape[-1]
    if outputs % num_classes:
        raise ShapeError(
            f"{loss}: population_code needs the {outputs} outputs of out_seq "
            f"{tuple(out_seq.shape)} to be a multiple of num_classes = {num_classes}"
        )
    groups: Sequence[int] = (*out_seq.shape[:-1], num_classes, outputs // num_classes)
    return out_seq.reshape(groups).sum(-1)
