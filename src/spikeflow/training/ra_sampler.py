"""Repeated augmentation (``--ra-sampler``, ``--ra-reps``): the training order of
DeiT's ``RASampler``, which torchvision's reference recipe and SpikingJelly's
``train_classify.py`` use: each sample appears ``reps`` times in an epoch, the copies
dealt to different processes (each augments its copy on its own), and an epoch takes
``len(dataset) // 256 * 256`` draws in all, so it costs what a plain epoch costs.
"""

from __future__ import annotations

import torch

from spikeflow.errors import ConfigurationError

__all__ = ["repeated_augmentation_indices", "repeated_augmentation_length"]

#: The recipe's epoch: the dataset's size rounded down to a multiple of this.
_ROUND = 256


def repeated_augmentation_length(size: int, world_size: int) -> int:
    """The samples each of ``world_size`` processes takes in an epoch of a dataset of
    ``size`` samples: ``floor(size // 256 * 256 / world_size)``.

    Raises:
        ConfigurationError: fewer than 256 samples (an epoch would be empty).
    """
    if size < _ROUND:
        raise ConfigurationError(
            f"--ra-sampler: the training set has {size} samples; repeated augmentation "
            f"takes size // {_ROUND} * {_ROUND} of them per epoch (the recipe's rule), so "
            f"it needs at least {_ROUND}"
        )
    return (size // _ROUND * _ROUND) // world_size


def repeated_augmentation_indices(
    size: int, world_size: int, rank: int, seed: int, epoch: int, reps: int
) -> list[int]:
    """The training indices of process ``rank`` in ``epoch``: a permutation drawn from
    ``seed + epoch`` (as ``DistributedSampler`` draws), each index repeated ``reps``
    times in a row, every ``world_size``-th entry from ``rank`` on, cut to
    :func:`repeated_augmentation_length`.

    Raises:
        ConfigurationError: ``reps`` below 1, or fewer than 256 samples.
    """
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigurationError(f"ra_reps must be an integer >= 1, got {reps!r}")
    keep = repeated_augmentation_length(size, world_size)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed + epoch))
    repeated = order.repeat_interleave(reps).tolist()
    # (the recipe pads to a multiple of world_size first; the cut to ``keep`` never
    # reaches the padding: keep <= size / world_size <= each process's share)
    return repeated[rank::world_size][:keep]
