"""Argument checks shared across the package (neurons, surrogates, data transforms)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

from spikeflow.errors import ConfigurationError, ShapeError


def check_flag(owner: str, name: str, value: Any) -> bool:
    """``value`` as a bool, or a ConfigurationError naming ``owner`` and ``name``.

    Only ``True``/``False`` (numpy's too) are flags: ``bool("False")`` is True, so a
    string read from a config file would silently turn an option on.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ConfigurationError(
        f"{owner}: {name} must be True or False, got {value!r} ({type(value).__name__})"
    )


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int if it is an integer ``>= minimum`` and, if ``maximum`` is
    given, ``<= maximum`` (a Python or numpy integer, not a bool), else a
    ConfigurationError naming ``name`` (which may start with its owner,
    ``"RandAugment: magnitude"``), the range and the value."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Integral)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ConfigurationError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def is_count(value: Any) -> bool:
    """Whether ``value`` is an integer >= 1: a Python or numpy integer, not a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and bool(value >= 1)


def is_finite_nonnegative(value: Any) -> bool:
    """Whether ``value`` is a finite real number >= 0: a Python or numpy real, not a bool."""
    return (
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and value >= 0
    )


def check_real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float if it is a finite real number within the bounds (closed
    unless ``*_open``), else a ConfigurationError naming ``name`` (which may start with
    its owner, ``"tet_loss: phi"``), the interval and the value.

    Python and numpy reals count; bools and strings do not.
    """
    ok = (
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (low is None or (value > low if low_open else value >= low))
        and (high is None or (value < high if high_open else value <= high))
    )
    if not ok:
        where = ""
        if low is not None or high is not None:
            left = "(" if low_open or low is None else "["
            right = ")" if high_open or high is None else "]"
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            where = f" in {left}{lo}, {hi}{right}"
        raise ConfigurationError(f"{name} must be a finite real number{where}, got {value!r}")
    return float(value)


def check_labels(
    owner: str,
    target: Tensor,
    batch: int,
    classes: int | None,
    out_shape: Sequence[int] | None = None,
) -> None:
    """Integer class labels: shape ``[batch]``, every one in ``[0, classes)`` (``>= 0``
    for ``classes=None``); else a ShapeError or ConfigurationError naming ``owner``.

    ``out_shape``: the time-major ``[T, B, ...]`` output the labels go with; when the
    labels' length is its ``T`` instead of its ``B``, the error says that the output looks
    batch-first (snnTorch's and PyTorch's habit) and how to make it time-major."""
    if tuple(target.shape) != (batch,):
        hint = ""
        if out_shape is not None and target.dim() == 1 and target.shape[0] == out_shape[0]:
            hint = (
                f"; the output {tuple(out_shape)} has {out_shape[0]} along dim 0, which is "
                f"time: spikeflow's outputs are time-major [T, B, ...], so a batch-first "
                f"[B, T, ...] output needs .transpose(0, 1)"
            )
        raise ShapeError(
            f"{owner}: integer class labels must have shape [B] = [{batch}], "
            f"got {tuple(target.shape)}{hint}"
        )
    if classes is None:
        if target.numel() > 0 and int(target.min()) < 0:
            raise ConfigurationError(
                f"{owner}: labels must be >= 0, got a minimum of {int(target.min())}"
            )
        return
    if target.numel() > 0 and (int(target.min()) < 0 or int(target.max()) >= classes):
        raise ConfigurationError(
            f"{owner}: labels must lie in [0, {classes - 1}], "
            f"got range [{int(target.min())}, {int(target.max())}]"
        )


def broadcasts_to(shape: Sequence[int], target: Sequence[int]) -> bool:
    """Whether a tensor of ``shape`` broadcasts to ``target`` without changing it (each
    trailing dim equal or 1, no extra leading dim). ``torch.broadcast_shapes`` answers the
    same, at tens of microseconds a call: too slow for a check made on every step."""
    if len(shape) > len(target):
        return False
    return all(s == t or s == 1 for s, t in zip(reversed(shape), reversed(target)))
