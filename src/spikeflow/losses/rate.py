"""Rate-based losses: on the time-mean output or the spike counts (methods.md 9, 11.2).

Each takes the network output as a time-major sequence ``out_seq`` of shape
``[T, B, K]`` (``K`` classes) and a target that is either integer class indices ``[B]``
or (all but :func:`spike_count_loss`) a float class distribution ``[B, K]`` (one-hot,
label-smoothed, mixup/cutmix mixtures), and returns a scalar averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_labels, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses.weighting import check_reduction, check_weight, reduce, sample_weights

__all__ = ["ce_mean_loss", "rate_mse_loss", "spike_count_loss", "tet_loss"]


def _check_output(out_seq: Tensor, loss: str) -> None:
    """``out_seq`` is a floating ``[T, B, K]`` tensor with ``T, B >= 1``."""
    if not isinstance(out_seq, Tensor) or out_seq.dim() != 3:
        shape = tuple(out_seq.shape) if isinstance(out_seq, Tensor) else type(out_seq).__name__
        raise ShapeError(f"{loss}: out_seq must be a [T, B, K] tensor, got {shape}")
    if not out_seq.is_floating_point():
        raise DTypeError(f"{loss}: out_seq must be floating point, got {out_seq.dtype}")
    if out_seq.shape[0] == 0:
        raise ShapeError(f"{loss}: out_seq has T = 0 time steps")
    if out_seq.shape[1] == 0:  # the batch mean would be NaN
        raise ShapeError(f"{loss}: out_seq has an empty batch (shape {tuple(out_seq.shape)})")


def _check(out_seq: Tensor, target: Tensor, loss: str) -> None:
    _check_output(out_seq, loss)
    _, batch, classes = out_seq.shape
    if not isinstance(target, Tensor):
        raise DTypeError(f"{loss}: target must be a tensor, got {type(target).__name__}")
    if target.is_floating_point():
        if tuple(target.shape) != (batch, classes):
            raise ShapeError(
                f"{loss}: a float target must be a [B, K] = [{batch}, {classes}] class "
                f"distribution, got {tuple(target.shape)}"
            )
    elif target.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        check_labels(loss, target, batch, classes, out_seq.shape)
    else:
        raise DTypeError(f"{loss}: target must be integer labels or float, got {target.dtype}")


def _check_labels_only(out_seq: Tensor, target: Tensor, loss: str) -> None:
    """:func:`_check`, and integer class labels ``[B]`` only (no distribution)."""
    _check(out_seq, target, loss)
    if target.is_floating_point():
        raise DTypeError(f"{loss}: target must be integer class labels [B]")


def _as_distribution(target: Tensor, classes: int, dtype: torch.dtype) -> Tensor:
    if target.is_floating_point():
        return target.to(dtype)
    return F.one_hot(target.long(), classes).to(dtype)


def _ce_target(target: Tensor, dtype: torch.dtype) -> Tensor:
    return target.to(dtype) if target.is_floating_point() else target.long()


def rate_mse_loss(
    out_seq: Tensor, target: Tensor, weight: object = None, reduction: str = "mean"
) -> Tensor:
    """MSE between the firing rate ``mean_t out_seq[t]`` and the one-hot target.

    ``L = 1/(B K) * sum_{b,k} (mean_t O[t,b,k] - y[b,k])^2`` (the PLIF-paper loss,
    methods.md 11.2). A float ``target`` ``[B, K]`` is used as the distribution ``y``.
    ``weight`` (one per class) scales each sample's terms by its label's weight;
    ``reduction`` ``"mean"``, ``"sum"`` or ``"none"`` (the terms ``[B, K]``): the rules
    of :mod:`spikeflow.losses.weighting`.
    """
    _check(out_seq, target, "rate_mse_loss")
    reduction = _mse_arguments(weight, reduction)
    rate = out_seq.mean(dim=0)
    terms = (rate - _as_distribution(target, out_seq.shape[2], rate.dtype)).pow(2)
    per_sample = sample_weights("rate_mse_loss", weight, target, out_seq.shape[2], rate)
    return reduce(terms, reduction, per_sample)


def ce_mean_loss(
    out_seq: Tensor,
    target: Tensor,
    label_smoothing: float = 0.0,
    weight: object = None,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy of the time-mean logits: ``CE(mean_t O[t], y)``.

    ``label_smoothing`` is passed to :func:`torch.nn.functional.cross_entropy`.
    ``weight`` (one per class) scales each sample's loss by its label's weight;
    ``reduction`` ``"mean"``, ``"sum"`` or ``"none"`` (one loss per sample ``[B]``): the
    rules of :mod:`spikeflow.losses.weighting` (a weighted mean is the plain mean).
    """
    _check(out_seq, target, "ce_mean_loss")
    label_smoothing, reduction = _ce_arguments(label_smoothing, weight, reduction)
    logits = out_seq.mean(dim=0)
    per_sample = sample_weights("ce_mean_loss", weight, target, out_seq.shape[2], logits)
    terms = F.cross_entropy(
        logits,
        _ce_target(target, logits.dtype),
        label_smoothing=label_smoothing,
        reduction="none",
    )
    return reduce(terms, reduction, per_sample)


def tet_loss(
    out_seq: Tensor,
    target: Tensor,
    lamb: float = 1e-3,
    phi: float = 1.0,
    label_smoothing: float = 0.0,
    weight: object = None,
    reduction: str = "mean",
) -> Tensor:
    """Temporal efficient training loss (Deng et al., ICLR 2022; methods.md 9).

    ``L = (1 - lamb) * (1/T) * sum_t CE(O[t], y) + lamb * MSE(O, phi)``, the MSE taken
    over all ``T*B*K`` elements of ``O`` against the constant ``phi``. At inference the
    prediction is the time-mean of ``O``. With ``lamb=0`` it is snnTorch's
    ``ce_rate_loss``.

    ``weight`` (one per class) scales each sample's loss (both terms) by its label's
    weight; ``reduction`` ``"mean"``, ``"sum"`` or ``"none"`` (one loss per sample
    ``[B]``, ``(1 - lamb) mean_t CE + lamb mean_{t,k} (O - phi)^2``): the rules of
    :mod:`spikeflow.losses.weighting` (a weighted mean is the plain mean, as snnTorch's
    ``ce_rate_loss(weight=...)``).
    """
    _check(out_seq, target, "tet_loss")
    lamb, phi, label_smoothing, reduction = _tet_arguments(
        lamb, phi, label_smoothing, weight, reduction
    )
    steps, batch, classes = out_seq.shape
    ce_target = _ce_target(target, out_seq.dtype)
    if target.is_floating_point():
        ce_target = ce_target.unsqueeze(0).expand(steps, batch, classes).reshape(-1, classes)
    else:
        ce_target = ce_target.unsqueeze(0).expand(steps, batch).reshape(-1)
    per_step_ce = F.cross_entropy(
        out_seq.reshape(steps * batch, classes),
        ce_target,
        label_smoothing=label_smoothing,
        reduction="none",
    )
    terms = per_step_ce.reshape(steps, batch).mean(dim=0)  # (1/T) sum_t CE, per sample
    if lamb != 0.0:
        regulariser = (out_seq - phi).pow(2).mean(dim=(0, 2))
        terms = (1.0 - lamb) * terms + lamb * regulariser
    per_sample = sample_weights("tet_loss", weight, target, classes, out_seq)
    return reduce(terms, reduction, per_sample)


def spike_count_loss(
    out_seq: Tensor,
    target: Tensor,
    desired_count: float = 10.0,
    undesired_count: float = 1.0,
    weight: object = None,
    reduction: str = "mean",
) -> Tensor:
    """Counting loss on output spikes (Zhu et al., NeurIPS 2023; methods.md 9, "count").

    With ``n_c = sum_t O[t, c]`` and target counts ``n*_c = desired_count`` for the label
    class and ``undesired_count`` otherwise, ``delta_c = (n_c - n*_c) / T``, where the
    label class is not penalised for firing more than ``n*`` and the others are not
    penalised for firing less. ``L = mean_b 1/2 sum_c delta_c^2``.

    ``weight`` (one per class) scales each sample's loss by its label's weight;
    ``reduction`` ``"mean"``, ``"sum"`` or ``"none"`` (one loss per sample ``[B]``):
    the rules of :mod:`spikeflow.losses.weighting`.

    ``target`` must be integer labels ``[B]``. Gradients flow through the spike counts
    by ordinary autograd (surrogate gradients), not the paper's spike-time attribution.

    Raises:
        ConfigurationError: a ``desired_count`` above the ``T`` steps of ``out_seq``
            (a neuron that fires at most once per step never reaches it, so the label
            class would always be penalised; the message names both), or a bad argument.
    """
    _check_labels_only(out_seq, target, "spike_count_loss")
    desired_count, undesired_count = _count_arguments(desired_count, undesired_count)
    reduction = _weighting_arguments("spike_count_loss", weight, reduction)
    _count_within_steps("spike_count_loss", desired_count, out_seq.shape[0])
    delta = count_error(out_seq.sum(dim=0), target, desired_count, undesired_count)
    terms = 0.5 * (delta / out_seq.shape[0]).pow(2).sum(dim=1)
    per_sample = sample_weights("spike_count_loss", weight, target, out_seq.shape[2], terms)
    return reduce(terms, reduction, per_sample)


def count_error(
    counts: Tensor, target: Tensor, desired_count: float, undesired_count: float
) -> Tensor:
    """``n - n*`` for spike counts ``counts`` ``[B, K]``: the label class wants
    ``desired_count`` and is not penalised above it, the others want
    ``undesired_count`` and are not penalised below it (zero there)."""
    is_label = F.one_hot(target.long(), counts.shape[1]).to(torch.bool)
    wanted = torch.where(is_label, desired_count, undesired_count).to(counts.dtype)
    diff = counts - wanted
    return torch.where(is_label, diff.clamp(max=0.0), diff.clamp(min=0.0))


def _real(loss: str, name: str, value: object, low: float | None = None,
          high: float | None = None) -> float:  # fmt: skip
    """``value`` as a float if it is a finite real number (in ``[low, high]``), else a
    ConfigurationError naming the loss and the argument."""
    return check_real(f"{loss}: {name}", value, low, high)


def _weighting_arguments(loss: str, weight: object, reduction: object) -> str:
    """Check ``weight`` (its length is checked at the call, against ``K``) and return
    ``reduction``."""
    check_weight(loss, weight)
    return check_reduction(loss, reduction)


def _mse_arguments(weight: object = None, reduction: object = "mean") -> str:
    return _weighting_arguments("rate_mse_loss", weight, reduction)


def _ce_arguments(
    label_smoothing: object, weight: object = None, reduction: object = "mean"
) -> tuple[float, str]:
    return (
        _real("ce_mean_loss", "label_smoothing", label_smoothing, 0.0, 1.0),
        _weighting_arguments("ce_mean_loss", weight, reduction),
    )


def _tet_arguments(
    lamb: object,
    phi: object,
    label_smoothing: object,
    weight: object = None,
    reduction: object = "mean",
) -> tuple[float, float, float, str]:
    return (
        _real("tet_loss", "lamb", lamb, 0.0, 1.0),
        _real("tet_loss", "phi", phi),
        _real("tet_loss", "label_smoothing", label_smoothing, 0.0, 1.0),
        _weighting_arguments("tet_loss", weight, reduction),
    )


def _count_within_steps(loss: str, desired_count: float, steps: int, of: str = "out_seq") -> None:
    """Raise a ConfigurationError when ``desired_count`` is above ``steps``, the ``T``
    steps of ``of``: at most one spike per step, so no count reaches it."""
    if desired_count > steps:
        raise ConfigurationError(
            f"{loss}: desired_count ({desired_count:g}) is more than the T = {steps} steps "
            f"of {of}: a neuron that fires at most once per step never reaches it, so the "
            f"label class is always penalised; give desired_count <= {steps} (and "
            f"undesired_count below it), or a longer T"
        )


def _count_fits(
    steps: int, of: str, desired_count: object, undesired_count: object,
    loss: str = "spike_count_loss", weight: object = None, reduction: object = "mean",
) -> None:  # fmt: skip
    """What the counting loss ``loss`` would refuse at its first call on ``steps`` steps
    (of ``of``): a ``desired_count`` above ``T``."""
    desired, _ = _count_arguments(desired_count, undesired_count, loss)
    _count_within_steps(loss, desired, steps, of)


def _count_arguments(
    desired_count: object,
    undesired_count: object,
    loss: str = "spike_count_loss",
    weight: object = None,
    reduction: object = "mean",
) -> tuple[float, float]:
    _weighting_arguments(loss, weight, reduction)
    desired = _real(loss, "desired_count", desired_count)
    undesired = _real(loss, "undesired_count", undesired_count)
    if desired < undesired:
        raise ConfigurationError(
            f"{loss}: desired_count ({desired_count}) must be >= "
            f"undesired_count ({undesired_count})"
        )
    return desired, undesired
