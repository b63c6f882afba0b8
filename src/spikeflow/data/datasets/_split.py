"""Bases for the split arguments: datasets whose splits have names (``"train"``,
``"valid"``, ``"test"``, ...), and datasets without an official train/test split (all
samples, or a fixed per-class ratio split)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from spikeflow._checks import check_flag
from spikeflow.data.datasets._common import subset_by_ratio
from spikeflow.data.datasets.base import NeuromorphicDataset, check_train
from spikeflow.errors import ConfigurationError

__all__ = ["NamedSplitDataset", "RatioSplitDataset", "split_from_train"]


def split_from_train(split: str | None, train: bool | None) -> str:
    """``split``, or the one ``train`` names (``True``: ``"train"``, ``False``: ``"test"``;
    neither: ``"train"``).

    Raises:
        ConfigurationError: both are given and disagree.
    """
    if split is None:
        return "test" if train is False else "train"
    if train is not None and (split == "train") != bool(train):
        raise ConfigurationError(
            f"split={split!r} contradicts train={train!r} (train=True means split='train', "
            "train=False a held-out split: 'test' when no split is given); pass only one "
            "of them"
        )
    return split


class NamedSplitDataset(NeuromorphicDataset):
    """A dataset whose ``split`` is one of the names in :attr:`splits` (``train`` is
    ``split == "train"``); subclasses set what they need before calling this
    ``__init__``, which finds the samples."""

    splits: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        *args: Any,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        if split not in self.splits:
            raise ConfigurationError(
                f"{type(self).__name__}: split must be one of {self.splits}; got {split!r}"
            )
        self._split = split
        self.download = check_flag(type(self).__name__, "download", download)
        super().__init__(root, split == "train", *args, **kwargs)

    @property
    def split(self) -> str:
        """One of :attr:`splits`."""
        return self._split


class RatioSplitDataset(NeuromorphicDataset):
    """``train=None`` yields every sample (split ``"all"``); ``train=True``/``False`` the
    per-class split of :func:`~spikeflow.data.datasets._common.subset_by_ratio`: the first
    ``ceil(n * train_ratio)`` files of each class in sorted order are the training
    split. Subclasses implement ``_all_samples()`` instead of ``_find_samples()``."""

    default_train_ratio = 0.9

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool | None = None,
        *args: Any,
        train_ratio: float | None = None,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        ratio = self.default_train_ratio if train_ratio is None else float(train_ratio)
        if not 0.0 < ratio < 1.0:
            raise ConfigurationError(f"train_ratio must be in (0, 1); got {train_ratio!r}")
        train = check_train(type(self).__name__, train, allow_all=True)
        self.train_ratio = ratio
        self.download = check_flag(type(self).__name__, "download", download)
        self._split_name = "all" if train is None else ("train" if train else "test")
        self._subset = train
        super().__init__(root, bool(train), *args, **kwargs)

    @property
    def split(self) -> str:
        """``"train"``, ``"test"`` or ``"all"``."""
        return self._split_name

    def _all_samples(self) -> list[tuple[Path, int]]:  # pragma: no cover
        raise NotImplementedError

    def _find_samples(self) -> list[tuple[Path, int]]:
        return subset_by_ratio(self._all_samples(), self._subset, self.train_ratio)
