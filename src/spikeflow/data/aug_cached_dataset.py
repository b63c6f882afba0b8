"""Augmented copies cached on disk, one augmentation parameter per copy (Tonic's
``Aug_DiskCachedDataset``).

Some augmentations take a few discrete parameters (five noise levels, four stretch
rates) and are slow; caching each sample once per parameter and reading a random copy
at every epoch trains on all of them at the cost of one computation each. Copy ``c`` of
sample ``i`` is ``post_augment(augmentations[c](pre_augment(data_i)))``, so the copy
index names its parameter. spikeflow's choice augmentations (``RandomAmplitudeScale``,
``AddWhiteNoise``, ``RandomTimeStretch``, ``RandomPitchShift`` of
:mod:`spikeflow.data.audio_augment`) given whole are expanded into one copy per factor
(``transform.at(c)``, Tonic's ``aug_index = c`` with ``caching=True``).

Entries are :class:`~spikeflow.data.DiskCachedDataset`'s: one atomic, checksummed cache
entry per copy, in a folder keyed by the wrapped dataset and the augmentations
(changing either is a miss, never a stale hit).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from spikeflow.data._indexing import check_index
from spikeflow.data.cached_dataset import DiskCachedDataset
from spikeflow.data.representations import _value_key
from spikeflow.data.sliced_dataset import _pair, dataset_key
from spikeflow.errors import ConfigurationError

__all__ = ["AugDiskCachedDataset"]

Fn = Callable[[Any], Any]


def _per_copy(owner: str, augmentations: Any) -> list[Fn]:
    """One callable per copy: the list given, or a choice augmentation's ``at(c)``."""
    if callable(getattr(augmentations, "at", None)) and hasattr(augmentations, "factors"):
        return [augmentations.at(c) for c in range(len(augmentations.factors))]
    if isinstance(augmentations, (str, bytes)) or not isinstance(augmentations, Sequence):
        raise ConfigurationError(
            f"{owner}: augmentations must be a list of callables (one per copy) or a choice "
            f"augmentation with factors and at(); got {type(augmentations).__name__}"
        )
    if len(augmentations) == 0:
        raise ConfigurationError(f"{owner}: augmentations is empty; give at least one copy's")
    for c, fn in enumerate(augmentations):
        if not callable(fn):
            raise ConfigurationError(f"{owner}: augmentations[{c}] is not callable; got {fn!r}")
    return list(augmentations)


class AugDiskCachedDataset(DiskCachedDataset):
    """``dataset``'s samples cached on disk in augmented copies, one per augmentation
    (module docstring); a read picks a copy at random, then the transforms run.

    Args:
        dataset: a map-style dataset of ``(data, target)`` pairs (see
            :class:`~spikeflow.data.DiskCachedDataset` for what may be cached).
        cache_path: the cache folder (created when missing).
        augmentations: a list of callables, copy ``c`` made by ``augmentations[c]``; or
            one choice augmentation, expanded to ``[aug.at(c) for c in
            range(len(aug.factors))]``. The number of copies is their number.
        reset_cache: delete this dataset's cached copies first.
        transform, target_transform, transforms: applied after the cache, at every read.
        pre_augment, post_augment: applied to the data before and after the copy's
            augmentation (Tonic's ``pre_aug`` and ``post_aug``), before caching.
        key: the wrapped dataset's identity, instead of
            :func:`~spikeflow.data.sliced_dataset.dataset_key`'s.
        generator: where the copy a read picks is drawn from (as DiskCachedDataset's).

    Tonic's class sets ``aug_index`` on its first augmentation and replaces the wrapped
    dataset's ``transform``; this one leaves both objects as they are and augments the
    dataset's output. A copy's random augmentation (``AddWhiteNoise``'s noise) is drawn
    once, when the copy is made, and read back after that.

    Raises:
        ConfigurationError: augmentations that are not callables (named by index), an
            empty list, a ``pre_augment``/``post_augment`` that is not callable, or (in
            :meth:`cached_copy` / :meth:`generate_copy`) a copy index out of range; and
            DiskCachedDataset's errors.
    """

    owner = "AugDiskCachedDataset"

    def __init__(
        self,
        dataset: Any,
        cache_path: str | os.PathLike,
        augmentations: Sequence[Fn] | Any,
        reset_cache: bool = False,
        transform: Fn | None = None,
        target_transform: Fn | None = None,
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
        *,
        pre_augment: Fn | None = None,
        post_augment: Fn | None = None,
        key: Any = None,
        generator: torch.Generator | None = None,
    ) -> None:
        copies = _per_copy(self.owner, augmentations)
        for name, fn in (("pre_augment", pre_augment), ("post_augment", post_augment)):
            if fn is not None and not callable(fn):
                raise ConfigurationError(f"{self.owner}: {name} must be callable; got {fn!r}")
        self.augmentations = copies
        self.pre_augment, self.post_augment = pre_augment, post_augment
        identity = {
            "augmented": dataset_key(dataset) if key is None else key,
            "pre_augment": _value_key(pre_augment),
            "augmentations": [_value_key(fn) for fn in copies],
            "post_augment": _value_key(post_augment),
        }
        super().__init__(dataset, cache_path, reset_cache, transform, target_transform,
                         transforms, len(copies), key=identity, generator=generator)  # fmt: skip

    def _compute(self, i: int, which: int) -> tuple[Any, Any]:
        data, target = _pair(self.dataset[i], i, self.owner)
        if self.pre_augment is not None:
            data = self.pre_augment(data)
        data = self.augmentations[which](data)
        if self.post_augment is not None:
            data = self.post_augment(data)
        return data, target

    def _check_copy(self, index: int, copy: int) -> tuple[int, int]:
        i = check_index(self.owner, index, len(self))
        if isinstance(copy, bool) or not isinstance(copy, int) or not 0 <= copy < self.num_copies:
            raise ConfigurationError(
                f"{self.owner}: copy must be an integer in [0, {self.num_copies}); got {copy!r}"
            )
        return i, copy

    def cached_copy(self, index: int, copy: int) -> tuple[Any, Any]:
        """Copy ``copy`` of sample ``index`` as cached (made and stored on a miss),
        before the transforms."""
        return self._entry(*self._check_copy(index, copy))

    def generate_copy(self, index: int, copy: int) -> tuple[Any, Any]:
        """Make copy ``copy`` of sample ``index`` again and store it, replacing the
        cached one (Tonic's ``generate_copy``); returns it as :meth:`cached_copy` will."""
        return self._entry(*self._check_copy(index, copy), refresh=True)

    def generate_all(self, index: int) -> None:
        """Make and store every copy of sample ``index`` that is not cached yet (Tonic's
        ``generate_all``)."""
        for c in range(self.num_copies):
            self.cached_copy(index, c)
