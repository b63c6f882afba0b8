"""Lava-DL's ``SpikeMoid`` (``lava.lib.dl.slayer.loss.SpikeMoid``) in spikeflow's time-major
layout: the binary cross-entropy of each output neuron's rate squashed by a sigmoid,
for multi-label outputs (each class present or not) as well as single labels.

With rates ``r`` (the mean over the sequence ``[B, K]``, or with ``moving_window=W`` the
causal moving average ``[T, B, K]``, as :func:`spikeflow.losses.spike_rate_loss`),

    p = sigmoid((r − θ) / α),   L = −Σ [ y log p + (1 − y) log(1 − p) ]

summed (``reduction="sum"``, Lava-DL's default) or averaged over every sample, class (and
step). ``y`` is a multi-hot target ``[B, K]`` in ``[0, 1]`` (float or bool; held at every
step with a window, or per step ``[T, B, K]``; for an output ``[T, B, C, H, W]`` also in
its shape ``[B, C, H, W]``, flattened as Lava-DL flattens it) or, a spikeflow addition
that lets the loss train a classifier from the command line, integer labels ``[B]`` (per
step ``[T, B]`` with a window) taken as one-hot. Lava-DL's code is followed where its
docstring differs (``θ = 0`` by default, not 1).

The loss is computed from the logits ``(r − θ)/α`` (``binary_cross_entropy_with_logits``):
equal to Lava-DL's ``binary_cross_entropy`` of the sigmoid wherever that is not saturated;
where the sigmoid rounds to 0 or 1 (logits beyond about ±17 in float32, ±37 in
float64: a small ``α``) Lava-DL's logarithm is clamped at −100 and its gradient vanishes,
while this one stays exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses.readout import _check_sequence, _moving_average
from spikeflow.losses.slayer import _INTEGER_DTYPES, _reduction, _upcast, _window, _window_fits

__all__ = ["SpikeMoid", "spike_moid_loss"]

_OWNER = "spike_moid_loss"


def spike_moid_loss(
    out_seq: Tensor,
    target: Tensor,
    moving_window: int | None = None,
    reduction: str = "sum",
    alpha: float = 1.0,
    theta: float = 0.0,
) -> Tensor:
    """Lava-DL's ``SpikeMoid``: the binary cross-entropy of ``sigmoid((r − θ)/α)``
    against ``target`` (module docstring).

    Args:
        out_seq: the output spikes ``[T, B, K]`` (``[T, B, ...]``: trailing dims flattened).
        target: multi-hot targets ``[B, K]`` (or ``[B, ...]``, the output's trailing
            dims) with values in ``[0, 1]``, float or bool (with ``moving_window`` also
            per step ``[T, B, K]`` or ``[T, B, ...]``), or integer labels ``[B]``
            (``[T, B]`` per step with a window) taken as one-hot.
        moving_window: ``W``, an integer in ``[1, T]``, or None (the whole sequence).
        reduction: ``"sum"`` or ``"mean"``.
        alpha: ``α``, the sigmoid's temperature (> 0).
        theta: ``θ``, the rate at which ``p = 1/2``.

    Raises:
        ShapeError, DTypeError, ConfigurationError: a target of another shape or dtype
            (an integer multi-hot target: DTypeError, pass it as float), labels out of
            range, targets outside ``[0, 1]`` or NaN, bad arguments.
    """
    moving_window, reduction, alpha, theta = _spike_moid_arguments(
        moving_window, reduction, alpha, theta
    )
    _check_sequence(out_seq, _OWNER)
    out = _upcast(out_seq.flatten(2))
    _window_fits(_OWNER, moving_window, out.shape[0], "out_seq")
    rates = out.mean(0) if moving_window is None else _moving_average(out, moving_window)
    wanted = _targets(target, out_seq, rates, moving_window)
    logits = (rates - theta) / alpha
    return F.binary_cross_entropy_with_logits(logits, wanted, reduction=reduction)


def _targets(target: Tensor, out_seq: Tensor, rates: Tensor, window: int | None) -> Tensor:
    """``target`` as float targets the shape of ``rates`` (checked; module docstring)."""
    if not isinstance(target, Tensor):
        raise DTypeError(f"{_OWNER}: target must be a tensor, got {type(target).__name__}")
    steps, batch, classes = out_seq.shape[0], out_seq.shape[1], rates.shape[-1]
    labels = [(batch,)] + ([] if window is None else [(steps, batch)])
    # Lava-DL flattens the target as it flattens the output's trailing dims [C, H, W]
    per_sample = sorted({(batch, classes), (batch, *out_seq.shape[2:])}, key=len)
    per_step = [] if window is None else [(steps, *s) for s in per_sample]
    multi_hot = per_sample + per_step
    shape = tuple(target.shape)
    if target.dtype in _INTEGER_DTYPES and shape in labels:
        if int(target.min()) < 0 or int(target.max()) >= classes:
            raise ConfigurationError(
                f"{_OWNER}: target labels must lie in [0, {classes - 1}], "
                f"got range [{int(target.min())}, {int(target.max())}]"
            )
        wanted = F.one_hot(target.to(device=rates.device, dtype=torch.int64), classes)
    elif shape in multi_hot and (target.is_floating_point() or target.dtype == torch.bool):
        if bool(target.isnan().any()):
            raise ConfigurationError(f"{_OWNER}: multi-hot targets must lie in [0, 1], got NaN")
        if bool(((target < 0) | (target > 1)).any()):
            raise ConfigurationError(
                f"{_OWNER}: multi-hot targets must lie in [0, 1], got values in "
                f"[{float(target.min())}, {float(target.max())}]"
            )
        stepwise = window is not None and shape not in per_sample
        wanted = target.to(rates.device).reshape(
            (steps, batch, classes) if stepwise else (batch, classes)
        )
    elif shape in multi_hot:
        raise DTypeError(
            f"{_OWNER}: a multi-hot target {list(shape)} must be floating point or bool, "
            f"got {target.dtype} (integer targets are class labels [B]"
            f"{'' if window is None else ' or [T, B]'}; pass target.float() for 0/1 targets)"
        )
    else:
        wanted_shapes = " or ".join(
            [f"integer labels {list(s)}" for s in labels]
            + [f"targets {list(s)}" for s in multi_hot]
        )
        raise ShapeError(
            f"{_OWNER}: target must be {wanted_shapes} for out_seq {list(out_seq.shape)} "
            f"({steps} steps, {batch} samples and {classes} classes); got {target.dtype} "
            f"{shape}"
        )
    return wanted.to(rates.dtype).expand(rates.shape)


class SpikeMoid(nn.Module):
    """Lava-DL's ``slayer.loss.SpikeMoid``: :func:`spike_moid_loss` with its arguments
    bound; called as ``loss(out_seq, target)``."""

    def __init__(
        self,
        moving_window: int | None = None,
        reduction: str = "sum",
        alpha: float = 1.0,
        theta: float = 0.0,
    ) -> None:
        super().__init__()
        self.moving_window, self.reduction, self.alpha, self.theta = _spike_moid_arguments(
            moving_window, reduction, alpha, theta
        )

    def extra_repr(self) -> str:
        return (
            f"moving_window={self.moving_window}, reduction={self.reduction!r}, "
            f"alpha={self.alpha:g}, theta={self.theta:g}"
        )

    def forward(self, out_seq: Tensor, target: Tensor) -> Tensor:
        """:func:`spike_moid_loss` of ``out_seq`` ``[T, B, K]`` and ``target``."""
        return spike_moid_loss(
            out_seq, target, self.moving_window, self.reduction, self.alpha, self.theta
        )


def _spike_moid_arguments(
    moving_window: object, reduction: object, alpha: object, theta: object
) -> tuple[int | None, str, float, float]:
    return (
        _window(_OWNER, moving_window),
        _reduction(_OWNER, reduction),
        check_real(f"{_OWNER}: alpha", alpha, 0.0, low_open=True),
        check_real(f"{_OWNER}: theta", theta),
    )


def _spike_moid_fits(
    steps: int, of: str, moving_window: object, reduction: object, alpha: object, theta: object
) -> None:
    """What :func:`spike_moid_loss` would refuse at its first call on ``steps`` steps (of
    ``of``): a ``moving_window`` longer than ``T``."""
    window = _spike_moid_arguments(moving_window, reduction, alpha, theta)[0]
    _window_fits(_OWNER, window, steps, of)
