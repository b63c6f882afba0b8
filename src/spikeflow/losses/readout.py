"""Readouts: the class a ``[T, B, K]`` output sequence predicts."""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow._checks import check_labels
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["READOUTS", "accuracy", "first_spike_steps", "predict"]

#: ``rate``: the largest time-mean output; ``count``: the largest output sum (spike
#: count), ties to the earlier first spike; ``first_spike``: the earliest first spike,
#: ties to the larger sum; ``max``: the largest maximum over time (a membrane readout).
READOUTS = ("rate", "count", "first_spike", "max")


def predict(out_seq: Tensor, readout: str = "rate") -> Tensor:
    """The predicted class of each sample ``[B]`` of ``out_seq`` ``[T, B, K]``.

    ``"count"`` takes the class with the largest output sum ``n_c = Σ_t O[t, c]`` (the
    spike count of a spiking output, as the counting losses define it), ties to the
    class whose first nonzero output came earlier; ``"first_spike"`` the class with the
    earliest first nonzero output, ties to the larger sum; ``"max"`` the class with the
    largest ``max_t O[t, c]`` (for ``ce_max_membrane``). Remaining ties go to the
    lowest class index.
    """
    if readout == "rate":
        return out_seq.float().mean(0).argmax(-1)
    if readout == "max":
        return out_seq.max(dim=0).values.argmax(-1)
    if readout not in READOUTS:
        raise ConfigurationError(f"unknown readout {readout!r}; available: {', '.join(READOUTS)}")
    sums = out_seq.float().sum(dim=0)
    earliness = (out_seq.shape[0] - first_spike_steps(out_seq)).float()
    first, second = (sums, earliness) if readout == "count" else (earliness, sums)
    best = first == first.max(dim=-1, keepdim=True).values
    return torch.where(best, second, float("-inf")).argmax(-1)


def accuracy(out_seq: Tensor, target: Tensor, readout: str = "rate") -> float:
    """The share of samples whose :func:`predict` (with ``readout``) is their label.

    ``out_seq`` ``[T, B, K]``, ``target`` integer labels ``[B]``. snnTorch's
    ``accuracy_rate`` (the most spikes) is ``readout="rate"`` (or ``"count"``, which
    breaks ties by the earlier first spike); its ``accuracy_temporal`` (the earliest
    first spike) is ``"first_spike"``, except on ties (snnTorch: the lowest index, and
    a silent neuron ties with one firing at the last step).
    """
    if not isinstance(out_seq, Tensor) or out_seq.dim() != 3:
        shape = tuple(out_seq.shape) if isinstance(out_seq, Tensor) else type(out_seq).__name__
        raise ShapeError(f"accuracy: out_seq must be a [T, B, K] tensor, got {shape}")
    if out_seq.shape[0] == 0 or out_seq.shape[1] == 0:
        raise ShapeError(f"accuracy: out_seq has no steps or no samples ({tuple(out_seq.shape)})")
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise DTypeError("accuracy: target must be integer class labels [B]")
    check_labels("accuracy", target, out_seq.shape[1], out_seq.shape[2])
    return float((predict(out_seq, readout) == target.to(out_seq.device)).double().mean())


def first_spike_steps(out_seq: Tensor) -> Tensor:
    """The step of each neuron's first nonzero output ``[B, K]`` (int64), ``T`` for a
    neuron that never spiked."""
    steps = out_seq.shape[0]
    fired = out_seq != 0
    first = fired.to(torch.uint8).argmax(dim=0)
    return torch.where(fired.any(dim=0), first, steps)
