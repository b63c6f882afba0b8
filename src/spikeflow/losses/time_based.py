"""Time-based losses (Zhu et al., NeurIPS 2023; methods.md 9): gradients on spikes only.

A time-based training method (the event-driven layers of :mod:`spikeflow.event_driven`)
moves existing spikes; a loss for it says how much each *output spike* should move. These
losses keep a rate-based value (on the spike counts ``n_c = sum_t O[t, c]`` or on the
first-spike times) and give gradients to the positions where the output spiked, zero
elsewhere:

- :func:`spike_count_plus_loss` ("count+", the enhanced counting loss): the counting
  loss's ``dL/dn_c`` shared over neuron ``c``'s spikes (divided by ``n_c``), the label
  class's share raised by a class-balance factor;
- :func:`spike_count_sum0_loss` ("sum0"): the same, re-centred so the spike gradients
  of the batch sum to zero;
- :func:`ce_plus_loss` ("ce+"): cross-entropy on the logits ``2 n_c / T`` (silent
  neurons at ``silent_logit``), ``dL/dn_c`` shared over the spikes; a sample whose
  label neuron is silent gives no gradient;
- :func:`ttfs_loss` ("ttfs"): cross-entropy on ``1 - t_c / T`` (``t_c`` the first spike,
  silent neurons at ``silent_value``), the gradient on each neuron's first spike.

The gradient given to a spike is the gradient with respect to its presence, as in every
spikeflow layer; the event-driven layers read it as minus the gradient with respect to
its time (docs/event_driven.md). The value is the batch mean; the authors' code sums
the counting losses over the batch and scales them differently (docs/models.md).
These gradients are designed, not the derivative of the value: ``gradcheck`` does not
apply, and with surrogate-gradient networks silent output neurons get no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow.errors import ConfigurationError
from spikeflow.losses.rate import (
    _check_labels_only,
    _count_arguments,
    _count_within_steps,
    _real,
    count_error,
)
from spikeflow.losses.readout import first_spike_steps

__all__ = ["ce_plus_loss", "spike_count_plus_loss", "spike_count_sum0_loss", "ttfs_loss"]

_EPS = 1e-5  # the balance ratio's guard against 0/0 (as the authors')


def _cross_entropy_and_grad(scores: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``mean_b CE(scores_b, y_b)`` and its gradient with respect to ``scores``."""
    with torch.enable_grad():
        leaf = scores.detach().requires_grad_(True)
        value = F.cross_entropy(leaf, target.long())
        (grad,) = torch.autograd.grad(value, leaf)
    return value.detach(), grad


def _share_over_spikes(out_seq: Tensor, count_grad: Tensor) -> Tensor:
    """``dL/dn_c`` ``[B, K]`` shared over each neuron's spikes: ``O[t] * g / n`` (zero
    for a silent neuron)."""
    counts = out_seq.sum(dim=0)
    per_spike = torch.where(counts != 0, count_grad / counts, torch.zeros_like(counts))
    return out_seq * per_spike


def _balance_factor(counts: Tensor, is_label: Tensor, balance: float | None) -> Tensor:
    """``max(ratio / balance, 1)`` with ``ratio`` the batch's non-label over label spike
    counts (the counts clipped at the targets, as the authors')."""
    if balance is None:
        return counts.new_ones(())
    ratio = (counts[~is_label].sum() + _EPS) / (counts[is_label].sum() + _EPS)
    return (ratio / balance).clamp(min=1.0)


class _CountPlus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out_seq, target, desired, undesired, balance, centre):  # type: ignore[override]
        steps, batch, classes = out_seq.shape
        counts = out_seq.sum(dim=0)
        error = count_error(counts, target, desired, undesired)
        is_label = F.one_hot(target.long(), classes).to(torch.bool)
        clipped = counts.clamp(max=desired).where(is_label, counts.clamp(min=undesired))
        factor = _balance_factor(clipped, is_label, balance)
        count_grad = error / (steps * steps * batch)  # dL/dn for L = mean_b 1/2 |error/T|^2
        count_grad = torch.where(is_label, count_grad * factor, count_grad)
        ctx.save_for_backward(out_seq, count_grad)
        ctx.centre = centre
        return 0.5 * (error / steps).pow(2).sum(dim=1).mean()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        out_seq, count_grad = ctx.saved_tensors
        spike_grad = _share_over_spikes(out_seq, count_grad)
        if ctx.centre:
            total = out_seq.sum()
            if total != 0:
                spike_grad = spike_grad - out_seq * (spike_grad.sum() / total)
        return grad * spike_grad, None, None, None, None, None


def spike_count_plus_loss(
    out_seq: Tensor,
    target: Tensor,
    desired_count: float = 10.0,
    undesired_count: float = 1.0,
    balance: float | None = 10.0,
) -> Tensor:
    """The enhanced counting loss "count+" (Zhu et al., NeurIPS 2023; methods.md 9).

    Its value is :func:`spike_count_loss`'s, ``mean_b 1/2 sum_c ((n_c - n*_c) / T)^2``
    with the same margins. Its gradient goes to the spikes only: neuron ``c``'s
    ``dL/dn_c`` is divided equally among its ``n_c`` spikes (a neuron's spikes together
    receive what the count should change by). The label class's gradient is multiplied
    by ``max(r / balance, 1)``, ``r`` the batch's spike count of the other classes over
    that of the label classes (counts clipped at their targets); ``balance=None`` leaves
    it out. ``target`` must be integer labels ``[B]``.
    """
    return _count_plus(
        "spike_count_plus_loss", out_seq, target, desired_count, undesired_count, balance, False
    )


def spike_count_sum0_loss(
    out_seq: Tensor,
    target: Tensor,
    desired_count: float = 10.0,
    undesired_count: float = 1.0,
    balance: float | None = 10.0,
) -> Tensor:
    """ "count+" with zero-sum spike gradients ("sum0"; methods.md 9).

    The value and the spike gradients of :func:`spike_count_plus_loss`, minus their mean
    over all the batch's spikes (each spike of the batch gets ``- sum g / sum O``), so the
    gradients of the batch's spikes sum to zero.
    """
    return _count_plus(
        "spike_count_sum0_loss", out_seq, target, desired_count, undesired_count, balance, True
    )


class _CEPlus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out_seq, target, silent_logit):  # type: ignore[override]
        steps = out_seq.shape[0]
        counts = out_seq.sum(dim=0)
        logits = torch.where(counts != 0, 2.0 * counts / steps, silent_logit)
        value, logit_grad = _cross_entropy_and_grad(logits, target)
        label_count = counts.gather(1, target.long().view(-1, 1))
        count_grad = logit_grad * (2.0 / steps) * (label_count != 0)
        ctx.save_for_backward(out_seq, count_grad)
        return value

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        out_seq, count_grad = ctx.saved_tensors
        return grad * _share_over_spikes(out_seq, count_grad), None, None


def ce_plus_loss(out_seq: Tensor, target: Tensor, silent_logit: float = -20.0) -> Tensor:
    """Cross-entropy on spike counts with spike-shared gradients, "CE+" (methods.md 9).

    ``L = mean_b CE(z_b, y_b)`` on the logits ``z_c = 2 n_c / T``, ``silent_logit`` for
    a neuron that did not spike. ``dL/dn_c = (2 / T) dL/dz_c`` is divided equally among
    neuron ``c``'s spikes; a sample whose label neuron did not spike gives no gradient
    (as the authors'). ``target`` must be integer labels ``[B]``.
    """
    _check_labels_only(out_seq, target, "ce_plus_loss")
    silent_logit = _ce_plus_arguments(silent_logit)
    return _CEPlus.apply(out_seq, target, silent_logit)


class _TTFS(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out_seq, target, silent_value):  # type: ignore[override]
        steps = out_seq.shape[0]
        first = first_spike_steps(out_seq)
        fired = first < steps
        timing = torch.where(fired, 1.0 - first.to(out_seq.dtype) / steps, silent_value)
        value, timing_grad = _cross_entropy_and_grad(timing, target)
        # d timing / d t = -1/T; a spike's presence gradient is minus its time gradient.
        spike_grad = torch.zeros_like(out_seq)
        index = first.clamp(max=steps - 1).unsqueeze(0)
        spike_grad.scatter_(0, index, (timing_grad / steps * fired).unsqueeze(0))
        ctx.save_for_backward(spike_grad)
        return value

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (spike_grad,) = ctx.saved_tensors
        return grad * spike_grad, None, None


def ttfs_loss(out_seq: Tensor, target: Tensor, silent_value: float = -3.0) -> Tensor:
    """Time-to-first-spike cross-entropy, "TTFS" (methods.md 9).

    ``L = mean_b CE(s_b, y_b)`` on the scores ``s_c = 1 - t_c / T``, ``t_c`` the step of
    neuron ``c``'s first spike (0-based), ``silent_value`` for a neuron that did not
    spike (the authors use -3, and -20 in their "TTFS0"). Only the first spikes get a
    gradient: ``dL/dt_c = -(1/T) dL/ds_c``, given as the spike's presence gradient
    ``(1/T) dL/ds_c``. Predict with the ``first_spike`` readout. ``target`` must be
    integer labels ``[B]``.
    """
    _check_labels_only(out_seq, target, "ttfs_loss")
    silent_value = _ttfs_arguments(silent_value)
    return _TTFS.apply(out_seq, target, silent_value)


def _count_plus_arguments(
    desired_count: object,
    undesired_count: object,
    balance: object,
    loss: str = "spike_count_plus_loss",
) -> tuple[float, float, float | None]:
    desired, undesired = _count_arguments(desired_count, undesired_count, loss)
    if balance is not None:
        balance = _real(loss, "balance", balance)
        if balance <= 0:
            raise ConfigurationError(f"{loss}: balance must be > 0 or None, got {balance}")
    return desired, undesired, balance


def _sum0_arguments(
    desired_count: object, undesired_count: object, balance: object
) -> tuple[float, float, float | None]:
    return _count_plus_arguments(desired_count, undesired_count, balance, "spike_count_sum0_loss")


def _count_plus(
    loss: str,
    out_seq: Tensor,
    target: Tensor,
    desired_count: object,
    undesired_count: object,
    balance: object,
    sum0: bool,
) -> Tensor:
    """``count+`` (``sum0``: its zero-sum variant), its inputs and arguments checked;
    errors name ``loss``."""
    _check_labels_only(out_seq, target, loss)
    desired, undesired, balance = _count_plus_arguments(
        desired_count, undesired_count, balance, loss
    )
    _count_within_steps(loss, desired, out_seq.shape[0])
    return _CountPlus.apply(out_seq, target, desired, undesired, balance, sum0)


def _count_plus_fits(
    steps: int, of: str, desired_count: object, undesired_count: object, balance: object,
    loss: str = "spike_count_plus_loss",
) -> None:  # fmt: skip
    """What ``count+`` (``sum0``: ``loss``) would refuse at its first call on ``steps``
    steps (of ``of``): a ``desired_count`` above ``T``."""
    desired = _count_plus_arguments(desired_count, undesired_count, balance, loss)[0]
    _count_within_steps(loss, desired, steps, of)


def _sum0_fits(
    steps: int, of: str, desired_count: object, undesired_count: object, balance: object
) -> None:
    _count_plus_fits(steps, of, desired_count, undesired_count, balance, "spike_count_sum0_loss")


def _ce_plus_arguments(silent_logit: object) -> float:
    return _real("ce_plus_loss", "silent_logit", silent_logit)


def _ttfs_arguments(silent_value: object) -> float:
    return _real("ttfs_loss", "silent_value", silent_value)
