"""Readouts: the class a ``[T, B, K]`` output sequence predicts."""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError

__all__ = ["READOUTS", "first_spike_steps", "predict"]

#: ``rate``: the largest time-mean output; ``count``: the largest output sum (spike
#: count), ties to the earlier first spike; ``first_spike``: the earliest first spike,
#: ties to the larger sum.
READOUTS = ("rate", "count", "first_spike")


def predict(out_seq: Tensor, readout: str = "rate") -> Tensor:
    """The predicted class of each sample ``[B]`` of ``out_seq`` ``[T, B, K]``.

    ``"count"`` takes the class with the largest output sum ``n_c = Σ_t O[t, c]`` (the
    spike count of a spiking output, as the counting losses define it), ties to the
    class whose first nonzero output came earlier; ``"first_spike"`` the class with the
    earliest first nonzero output, ties to the larger sum. Remaining ties go to the
    lowest class index.
    """
    if readout == "rate":
        return out_seq.float().mean(0).argmax(-1)
    if readout not in READOUTS:
        raise ConfigurationError(f"unknown readout {readout!r}; available: {', '.join(READOUTS)}")
    sums = out_seq.float().sum(dim=0)
    earliness = (out_seq.shape[0] - first_spike_steps(out_seq)).float()
    first, second = (sums, earliness) if readout == "count" else (earliness, sums)
    best = first == first.max(dim=-1, keepdim=True).values
    return torch.where(best, second, float("-inf")).argmax(-1)


def first_spike_steps(out_seq: Tensor) -> Tensor:
    """The step of each neuron's first nonzero output ``[B, K]`` (int64), ``T`` for a
    neuron that never spiked."""
    steps = out_seq.shape[0]
    fired = out_seq != 0
    first = fired.to(torch.uint8).argmax(dim=0)
    return torch.where(fired.any(dim=0), first, steps)
