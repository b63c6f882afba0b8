"""Readouts: the class a ``[T, B, K]`` output sequence predicts."""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError

__all__ = ["READOUTS", "first_spike_steps", "predict"]

#: ``rate``: the largest time-mean output; ``count``: the most spikes, ties to the
#: earlier first spike; ``first_spike``: the earliest first spike, ties to more spikes.
READOUTS = ("rate", "count", "first_spike")


def predict(out_seq: Tensor, readout: str = "rate") -> Tensor:
    """The predicted class of each sample ``[B]`` of ``out_seq`` ``[T, B, K]``.

    ``"count"`` and ``"first_spike"`` read spikes (nonzero outputs) and break ties
    exactly on integers: a class's key is ``n * (T + 1) + (T - t)`` or
    ``(T - t) * (T + 1) + n`` (``n`` its spike count, ``t`` its first-spike step, ``T``
    if silent); remaining ties go to the lowest class index.
    """
    if readout == "rate":
        return out_seq.float().mean(0).argmax(-1)
    if readout not in READOUTS:
        raise ConfigurationError(f"unknown readout {readout!r}; available: {', '.join(READOUTS)}")
    steps = out_seq.shape[0]
    counts = (out_seq != 0).sum(dim=0)
    earliness = steps - first_spike_steps(out_seq)
    if readout == "count":
        key = counts * (steps + 1) + earliness
    else:
        key = earliness * (steps + 1) + counts
    return key.argmax(-1)


def first_spike_steps(out_seq: Tensor) -> Tensor:
    """The step of each neuron's first nonzero output ``[B, K]`` (int64), ``T`` for a
    neuron that never spiked."""
    steps = out_seq.shape[0]
    fired = out_seq != 0
    first = fired.to(torch.uint8).argmax(dim=0)
    return torch.where(fired.any(dim=0), first, steps)
