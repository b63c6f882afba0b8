"""Training losses for spiking classifiers (methods.md 9 and 11.2).

Every loss takes the network output as a time-major sequence ``out_seq`` of shape
``[T, B, K]`` (``K`` classes) and a target that is either integer class indices ``[B]``
or (all but ``"count"``) a float class distribution ``[B, K]`` (one-hot, label-smoothed,
mixup/cutmix mixtures).
Each returns a scalar averaged over the batch.

========================  =================================================================
name (:func:`get_loss`)   loss
========================  =================================================================
``"mse"``                 :func:`rate_mse_loss`: MSE of the time-mean against one-hot
``"ce"``                  :func:`ce_mean_loss`: cross-entropy of the time-mean
``"tet"``                 :func:`tet_loss`: per-step CE plus a MSE regulariser (TET)
``"count"``               :func:`spike_count_loss`: squared spike-count error with margins
========================  =================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_labels, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "LossFn",
    "ce_mean_loss",
    "get_loss",
    "list_losses",
    "rate_mse_loss",
    "spike_count_loss",
    "tet_loss",
]

LossFn = Callable[..., Tensor]


def _check(out_seq: Tensor, target: Tensor, loss: str) -> None:
    if not isinstance(out_seq, Tensor) or out_seq.dim() != 3:
        shape = tuple(out_seq.shape) if isinstance(out_seq, Tensor) else type(out_seq).__name__
        raise ShapeError(f"{loss}: out_seq must be a [T, B, K] tensor, got {shape}")
    if not out_seq.is_floating_point():
        raise DTypeError(f"{loss}: out_seq must be floating point, got {out_seq.dtype}")
    if out_seq.shape[0] == 0:
        raise ShapeError(f"{loss}: out_seq has T = 0 time steps")
    if out_seq.shape[1] == 0:  # the batch mean would be NaN
        raise ShapeError(f"{loss}: out_seq has an empty batch (shape {tuple(out_seq.shape)})")
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
        check_labels(loss, target, batch, classes)
    else:
        raise DTypeError(f"{loss}: target must be integer labels or float, got {target.dtype}")


def _as_distribution(target: Tensor, classes: int, dtype: torch.dtype) -> Tensor:
    if target.is_floating_point():
        return target.to(dtype)
    return F.one_hot(target.long(), classes).to(dtype)


def _ce_target(target: Tensor, dtype: torch.dtype) -> Tensor:
    return target.to(dtype) if target.is_floating_point() else target.long()


def rate_mse_loss(out_seq: Tensor, target: Tensor) -> Tensor:
    """MSE between the firing rate ``mean_t out_seq[t]`` and the one-hot target.

    ``L = 1/(B K) * sum_{b,k} (mean_t O[t,b,k] - y[b,k])^2`` (the PLIF-paper loss,
    methods.md 11.2). A float ``target`` ``[B, K]`` is used as the distribution ``y``.
    """
    _check(out_seq, target, "rate_mse_loss")
    rate = out_seq.mean(dim=0)
    return F.mse_loss(rate, _as_distribution(target, out_seq.shape[2], rate.dtype))


def ce_mean_loss(out_seq: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of the time-mean logits: ``CE(mean_t O[t], y)``.

    ``label_smoothing`` is passed to :func:`torch.nn.functional.cross_entropy`.
    """
    _check(out_seq, target, "ce_mean_loss")
    label_smoothing = _ce_arguments(label_smoothing)
    logits = out_seq.mean(dim=0)
    return F.cross_entropy(
        logits, _ce_target(target, logits.dtype), label_smoothing=label_smoothing
    )


def tet_loss(
    out_seq: Tensor,
    target: Tensor,
    lamb: float = 1e-3,
    phi: float = 1.0,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Temporal efficient training loss (Deng et al., ICLR 2022; methods.md 9).

    ``L = (1 - lamb) * (1/T) * sum_t CE(O[t], y) + lamb * MSE(O, phi)``, the MSE taken
    over all ``T*B*K`` elements of ``O`` against the constant ``phi``. At inference the
    prediction is the time-mean of ``O``.
    """
    _check(out_seq, target, "tet_loss")
    lamb, phi, label_smoothing = _tet_arguments(lamb, phi, label_smoothing)
    steps, batch, classes = out_seq.shape
    ce_target = _ce_target(target, out_seq.dtype)
    if target.is_floating_point():
        ce_target = ce_target.unsqueeze(0).expand(steps, batch, classes).reshape(-1, classes)
    else:
        ce_target = ce_target.unsqueeze(0).expand(steps, batch).reshape(-1)
    # CE with mean reduction over T*B samples == (1/T) sum_t (mean over B of CE at step t).
    per_step_ce = F.cross_entropy(
        out_seq.reshape(steps * batch, classes), ce_target, label_smoothing=label_smoothing
    )
    if lamb == 0.0:
        return per_step_ce
    regulariser = F.mse_loss(out_seq, torch.full_like(out_seq, phi))
    return (1.0 - lamb) * per_step_ce + lamb * regulariser


def spike_count_loss(
    out_seq: Tensor,
    target: Tensor,
    desired_count: float = 10.0,
    undesired_count: float = 1.0,
) -> Tensor:
    """Counting loss on output spikes (Zhu et al., NeurIPS 2023; methods.md 9, "count").

    With ``n_c = sum_t O[t, c]`` and target counts ``n*_c = desired_count`` for the label
    class and ``undesired_count`` otherwise, ``delta_c = (n_c - n*_c) / T``, where the
    label class is not penalised for firing more than ``n*`` and the others are not
    penalised for firing less. ``L = mean_b 1/2 sum_c delta_c^2``.

    ``target`` must be integer labels ``[B]``. Gradients flow through the spike counts
    by ordinary autograd (surrogate gradients), not the paper's spike-time attribution.
    """
    _check(out_seq, target, "spike_count_loss")
    desired_count, undesired_count = _count_arguments(desired_count, undesired_count)
    if target.is_floating_point():
        raise DTypeError("spike_count_loss: target must be integer class labels [B]")
    steps, _, classes = out_seq.shape
    counts = out_seq.sum(dim=0)
    is_label = F.one_hot(target.long(), classes).to(torch.bool)
    wanted = torch.where(is_label, desired_count, undesired_count).to(counts.dtype)
    diff = counts - wanted
    delta = torch.where(is_label, diff.clamp(max=0.0), diff.clamp(min=0.0)) / steps
    return 0.5 * delta.pow(2).sum(dim=1).mean()


def _real(loss: str, name: str, value: object, low: float | None = None,
          high: float | None = None) -> float:  # fmt: skip
    """``value`` as a float if it is a finite real number (in ``[low, high]``), else a
    ConfigurationError naming the loss and the argument."""
    return check_real(f"{loss}: {name}", value, low, high)


def _ce_arguments(label_smoothing: object) -> float:
    return _real("ce_mean_loss", "label_smoothing", label_smoothing, 0.0, 1.0)


def _tet_arguments(lamb: object, phi: object, label_smoothing: object) -> tuple[float, ...]:
    return (
        _real("tet_loss", "lamb", lamb, 0.0, 1.0),
        _real("tet_loss", "phi", phi),
        _real("tet_loss", "label_smoothing", label_smoothing, 0.0, 1.0),
    )


def _count_arguments(desired_count: object, undesired_count: object) -> tuple[float, float]:
    desired = _real("spike_count_loss", "desired_count", desired_count)
    undesired = _real("spike_count_loss", "undesired_count", undesired_count)
    if desired < undesired:
        raise ConfigurationError(
            f"spike_count_loss: desired_count ({desired_count}) must be >= "
            f"undesired_count ({undesired_count})"
        )
    return desired, undesired


#: Each loss's argument check, which get_loss runs on the arguments it binds.
_ARGUMENTS: dict[Callable[..., Tensor], Callable[..., object]] = {
    ce_mean_loss: _ce_arguments,
    tet_loss: _tet_arguments,
    spike_count_loss: _count_arguments,
}


_LOSSES: dict[str, LossFn] = {
    "mse": rate_mse_loss,
    "ce": ce_mean_loss,
    "tet": tet_loss,
    "count": spike_count_loss,
}


def list_losses() -> list[str]:
    """The names :func:`get_loss` accepts, sorted."""
    return sorted(_LOSSES)


def get_loss(name: str, **kwargs: Any) -> LossFn:
    """The loss called ``name`` (``"mse"``, ``"ce"``, ``"tet"``, ``"count"``).

    Keyword arguments (e.g. ``lamb=0.01`` for TET) are bound into the returned callable,
    which is then called as ``loss(out_seq, target)``.

    Raises:
        ConfigurationError: unknown name (the message lists the names).
    """
    key = name.lower().replace("-", "_") if isinstance(name, str) else name
    if key not in _LOSSES:
        raise ConfigurationError(f"unknown loss {name!r}; available: {', '.join(list_losses())}")
    fn = _LOSSES[key]
    if not kwargs:
        return fn
    accepted = [p for p in inspect.signature(fn).parameters if p not in ("out_seq", "target")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigurationError(
            f"loss {name!r} takes no argument(s) {unknown}; it accepts {accepted}"
        )
    # Checked now, not at the first training step (after the run folder was made).
    params = inspect.signature(fn).parameters
    _ARGUMENTS[fn](**{**{p: params[p].default for p in accepted}, **kwargs})

    def bound(out_seq: Tensor, target: Tensor) -> Tensor:
        return fn(out_seq, target, **kwargs)

    bound.__name__ = f"{fn.__name__}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    bound.__doc__ = fn.__doc__
    return bound
