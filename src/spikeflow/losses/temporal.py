"""snnTorch's spike-time losses: squared error and cross-entropy on first-spike times.

:func:`spike_times` reads the step of each neuron's first (or first ``F``) spikes from
``out_seq`` ``[T, B, K]``; a neuron without such a spike counts as firing at the last
step, ``T - 1`` (snnTorch's "shadow spike"). Its backward is snnTorch's sign estimator:
an earlier spike is a larger output at its step, so ``dL/dO[t_f] = -dL/dt_f`` at each
read spike (at step ``T - 1`` for a missing one), zero elsewhere; a surrogate-gradient
network passes that on through its surrogate.

- :func:`mse_temporal_loss`: squared error of the spike times against target times,
  ``on_target`` for the label class and ``off_target`` for the others (or given times),
  both divided by ``T``, with a ``tolerance`` (snnTorch's ``mse_temporal_loss``);
- :func:`ce_temporal_loss`: cross-entropy on ``-t`` or ``1 / (t + 1)`` (snnTorch's
  ``ce_temporal_loss``).

Both take ``weight`` and ``reduction`` (:mod:`spikeflow.losses.weighting`).

spikeflow's ``ttfs`` (:func:`~spikeflow.losses.ttfs_loss`) differs from
``ce_temporal``: its scores are ``1 - t / T`` (a temperature ``T`` higher), a silent
neuron gets a fixed score and no gradient. Predict with the ``first_spike`` readout.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_flag, check_int
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses.rate import _check_labels_only, _check_output, _real, _weighting_arguments
from spikeflow.losses.weighting import reduce, sample_weights

__all__ = ["ce_temporal_loss", "mse_temporal_loss", "spike_times"]

#: The score ``ce_temporal_loss`` gives a spike time ``t`` for each ``inverse``.
INVERSES = ("negate", "reciprocal")


class _SpikeTimes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out_seq, num_spikes):  # type: ignore[override]
        steps = out_seq.shape[0]
        fired = out_seq != 0
        order = fired.cumsum(dim=0)  # order[t] = the number of spikes up to step t
        steps_of = []
        for nth in range(1, num_spikes + 1):
            at = fired & (order == nth)
            first = at.to(torch.uint8).argmax(dim=0)
            steps_of.append(torch.where(at.any(dim=0), first, steps - 1))
        index = torch.stack(steps_of)
        ctx.save_for_backward(index)
        ctx.shape = out_seq.shape
        return index.to(out_seq.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (index,) = ctx.saved_tensors
        spike_grad = grad.new_zeros(ctx.shape).scatter_add_(0, index, -grad)
        return spike_grad, None


def spike_times(out_seq: Tensor, num_spikes: int = 1) -> Tensor:
    """The steps of each neuron's first ``num_spikes`` spikes, ``[F, ...]`` (``F =
    num_spikes``), in ``out_seq``'s dtype.

    ``out_seq`` is ``[T, ...]``; a spike is a nonzero output. ``times[f]`` is the
    0-based step of the ``(f+1)``-th spike, ``T - 1`` where a neuron fired fewer times.
    Backward: the sign estimator, ``dL/dO[times[f]] += -dL/dtimes[f]`` (summed where
    several ``f`` read the same step, e.g. ``T - 1``), zero at every other step.
    """
    if not isinstance(out_seq, Tensor) or out_seq.dim() < 1 or out_seq.shape[0] == 0:
        shape = tuple(out_seq.shape) if isinstance(out_seq, Tensor) else type(out_seq).__name__
        raise ShapeError(f"spike_times: out_seq must be a [T, ...] tensor with T >= 1, got {shape}")
    if not out_seq.is_floating_point():
        raise DTypeError(f"spike_times: out_seq must be floating point, got {out_seq.dtype}")
    num_spikes = check_int("spike_times: num_spikes", num_spikes, 1)
    return _SpikeTimes.apply(out_seq, num_spikes)


def _wrap(times: Tensor, steps: int, what: str, of: str = "out_seq") -> Tensor:
    """``times`` in ``[-T, T]``, the negative ones counted from the end (``-1`` is
    ``T - 1``), as steps in ``[0, T]`` (``T``: no spike within the ``T`` steps, as
    snnTorch's ``off_target=num_steps``); ``of``: what has the ``T`` steps (messages)."""
    if times.numel() and (float(times.min()) < -steps or float(times.max()) > steps):
        raise ConfigurationError(
            f"mse_temporal_loss: {what} must lie in [-T, T] = [{-steps}, {steps}] "
            f"for the T = {steps} steps of {of} (negative: from the end; T: no spike), "
            f"got range [{float(times.min())}, {float(times.max())}]"
        )
    return torch.where(times < 0, times + steps, times)


def _target_times(out_seq: Tensor, target: Tensor, on: list[float], off: list[float]) -> Tensor:
    """The wanted times ``[F, B, K]`` of labels ``[B]``: ``on`` for the label, ``off``."""
    steps, _, classes = out_seq.shape
    is_label = F.one_hot(target.long(), classes).to(torch.bool)
    on_t = torch.tensor(on, dtype=out_seq.dtype, device=out_seq.device).view(-1, 1, 1)
    off_t = torch.tensor(off, dtype=out_seq.dtype, device=out_seq.device).view(-1, 1, 1)
    return _wrap(torch.where(is_label, on_t, off_t), steps, "on_target and off_target")


def _given_times(out_seq: Tensor, target: Tensor) -> Tensor:
    """``target_is_time=True``: the times ``[B, K]`` or ``[F, B, K]`` as ``[F, B, K]``."""
    steps, batch, classes = out_seq.shape
    if not isinstance(target, Tensor) or target.dtype == torch.bool or target.is_complex():
        what = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise DTypeError(f"mse_temporal_loss: target times must be a real tensor, got {what}")
    if target.dim() not in (2, 3) or tuple(target.shape[-2:]) != (batch, classes):
        raise ShapeError(
            f"mse_temporal_loss: with target_is_time, target must be spike times [B, K] "
            f"= [{batch}, {classes}] or [F, B, K], got {tuple(target.shape)}"
        )
    if target.dim() == 3 and target.shape[0] == 0:
        raise ShapeError("mse_temporal_loss: target times have F = 0 spikes")
    times = target.to(out_seq.dtype).reshape(-1, batch, classes)
    if not bool(torch.isfinite(times).all()):
        raise ConfigurationError("mse_temporal_loss: target times must be finite")
    return _wrap(times, steps, "target times")


def mse_temporal_loss(
    out_seq: Tensor,
    target: Tensor,
    on_target: float | Sequence[float] = 0,
    off_target: float | Sequence[float] = -1,
    tolerance: float = 0,
    target_is_time: bool = False,
    weight: object = None,
    reduction: str = "mean",
) -> Tensor:
    """Squared error of spike times: ``mean_{f,b,k} ((t[f,b,k] - t*[f,b,k]) / T)^2``.

    snnTorch's ``mse_temporal_loss``. ``t`` are the :func:`spike_times` of ``out_seq``
    (``T - 1`` for a missing spike, gradients by the sign estimator). An error smaller
    than ``tolerance`` steps (``|t - t*| < tolerance``) counts as zero.

    Args:
        out_seq: the output spikes ``[T, B, K]``.
        target: integer labels ``[B]``; with ``target_is_time``, the wanted times
            ``[B, K]`` or ``[F, B, K]`` (steps, real numbers).
        on_target: the label class's wanted first-spike step, or a list of ``F`` steps
            for its first ``F`` spikes. Negative steps count from the end (``-1`` is
            ``T - 1``); every step must lie in ``[-T, T]``.
        off_target: the same for the other classes (default ``-1``: the last step, which
            a silent neuron meets); a list of the same length as ``on_target``.
            ``T`` (snnTorch's ``off_target=num_steps``) wants no spike within the ``T``
            steps; a silent neuron, read at ``T - 1``, is then one step (``1/T``) off,
            as in snnTorch.
        tolerance: a distance in steps below which an error is not penalised.
        target_is_time: ``target`` holds times, not labels (``on_target`` and
            ``off_target`` unused).
        weight: one weight per class; each sample's terms are scaled by its label's
            (not with ``target_is_time``: there are no labels).
        reduction: ``"mean"`` (over the terms, weighted or not, as snnTorch), ``"sum"``
            or ``"none"``: the terms, ``[B, K]`` for a single target step (a number, or
            times ``[B, K]``), ``[F, B, K]`` for lists of ``F`` steps.

    Raises:
        ShapeError, DTypeError: a wrong ``out_seq`` or ``target``.
        ConfigurationError: labels outside ``[0, K)``, a target step outside ``[-T,
            T]``, ``on_target`` and ``off_target`` of different lengths, a negative
            ``tolerance``, ``weight`` with ``target_is_time``.
    """
    on, off, tolerance, target_is_time, reduction = _mse_temporal_arguments(
        on_target, off_target, tolerance, target_is_time, weight, reduction
    )
    if target_is_time:
        _check_output(out_seq, "mse_temporal_loss")
        wanted = _given_times(out_seq, target)
        single = isinstance(target, Tensor) and target.dim() == 2
        per_sample = None
    else:
        _check_labels_only(out_seq, target, "mse_temporal_loss")
        wanted = _target_times(out_seq, target, on, off)
        single = not isinstance(on_target, (list, tuple, Tensor)) or (
            isinstance(on_target, Tensor) and on_target.dim() == 0
        )
        classes = out_seq.shape[2]
        per_sample = sample_weights("mse_temporal_loss", weight, target, classes, out_seq)
    steps = out_seq.shape[0]
    error = spike_times(out_seq, wanted.shape[0]) - wanted
    if tolerance > 0:
        error = torch.where(error.abs() < tolerance, torch.zeros_like(error), error)
    terms = (error / steps).pow(2)  # [F, B, K]
    if per_sample is not None:
        terms = terms * per_sample.reshape(1, -1, 1)
    return reduce(terms[0] if single else terms, reduction)


def ce_temporal_loss(
    out_seq: Tensor,
    target: Tensor,
    inverse: str = "negate",
    weight: object = None,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy on first-spike times: ``mean_b CE(s[b], y_b)``, ``s = g(t)``.

    snnTorch's ``ce_temporal_loss``. ``t`` are the first-spike steps of
    :func:`spike_times` (``T - 1`` for a silent neuron, which gets the gradient at that
    step); ``g(t) = -t`` for ``inverse="negate"``, ``1 / (t + 1)`` for
    ``"reciprocal"``. ``target`` must be integer labels ``[B]``.

    ``weight`` (one per class) scales each sample's loss by its label's weight and
    ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"`` (``[B]``), as in every
    spikeflow loss: the weighted ``"mean"`` is the plain mean over samples. snnTorch's
    ``ce_temporal_loss`` alone hands ``weight`` to :class:`torch.nn.CrossEntropyLoss`,
    whose mean divides by ``sum_b w[y_b]``: ``reduction="sum"`` divided by
    ``weight[target].sum()`` is that.
    """
    _check_labels_only(out_seq, target, "ce_temporal_loss")
    inverse, reduction = _ce_temporal_arguments(inverse, weight, reduction)
    times = spike_times(out_seq)[0]
    scores = -times if inverse == "negate" else 1.0 / (times + 1.0)
    terms = F.cross_entropy(scores, target.long(), reduction="none")
    per_sample = sample_weights("ce_temporal_loss", weight, target, out_seq.shape[2], scores)
    return reduce(terms, reduction, per_sample)


def _steps_list(name: str, value: object) -> list[float]:
    """A real or a non-empty list of reals (a 1-d tensor too), as floats."""
    if isinstance(value, Tensor):
        value = value.tolist() if value.dim() <= 1 else value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return [_real("mse_temporal_loss", name, value)]
    if isinstance(value, (list, tuple)) and value:
        return [_real("mse_temporal_loss", f"{name}[{i}]", v) for i, v in enumerate(value)]
    raise ConfigurationError(
        f"mse_temporal_loss: {name} must be a step or a non-empty list of steps, got {value!r}"
    )


def _mse_temporal_arguments(
    on_target: object,
    off_target: object,
    tolerance: object,
    target_is_time: object,
    weight: object = None,
    reduction: object = "mean",
) -> tuple[list[float], list[float], float, bool, str]:
    on = _steps_list("on_target", on_target)
    off = _steps_list("off_target", off_target)
    if len(on) != len(off):
        raise ConfigurationError(
            f"mse_temporal_loss: on_target ({len(on)} steps) and off_target ({len(off)} "
            "steps) must have the same length, one step per wanted spike"
        )
    target_is_time = check_flag("mse_temporal_loss", "target_is_time", target_is_time)
    if target_is_time and weight is not None:
        raise ConfigurationError(
            "mse_temporal_loss: weight (one per class) needs class labels as the target, "
            "not spike times (target_is_time=True)"
        )
    return (
        on,
        off,
        _real("mse_temporal_loss", "tolerance", tolerance, 0.0),
        target_is_time,
        _weighting_arguments("mse_temporal_loss", weight, reduction),
    )


def _mse_temporal_fits(
    steps: int,
    of: str,
    on_target: object,
    off_target: object,
    tolerance: object,
    target_is_time: object,
    weight: object = None,
    reduction: object = "mean",
) -> None:
    """What :func:`mse_temporal_loss` would refuse at its first call on ``steps`` steps
    (of ``of``) with class labels ``[B]``: target steps outside ``[-T, T]``, or
    ``target_is_time`` (its target is then spike times, not labels)."""
    on, off, _, times, _ = _mse_temporal_arguments(
        on_target, off_target, tolerance, target_is_time, weight, reduction
    )
    if times:
        raise ConfigurationError(
            "mse_temporal_loss: target_is_time=True takes the wanted spike times [B, K] or "
            "[F, B, K] as its target, but the targets here are class labels [B]: leave "
            "target_is_time out and give on_target/off_target"
        )
    _wrap(torch.tensor(on + off, dtype=torch.float64), steps, "on_target and off_target", of)


def _ce_temporal_arguments(
    inverse: object, weight: object = None, reduction: object = "mean"
) -> tuple[str, str]:
    if inverse not in INVERSES:
        raise ConfigurationError(
            f"ce_temporal_loss: inverse must be one of {', '.join(INVERSES)}, got {inverse!r}"
        )
    return str(inverse), _weighting_arguments("ce_temporal_loss", weight, reduction)
