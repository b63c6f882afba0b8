"""Static image datasets read from their official files, for directly encoded SNNs
(the image is the input current at every step): MNIST, Fashion-MNIST, KMNIST,
CIFAR-10 and CIFAR-100. No torchvision needed.

Each keeps its split in memory as uint8 ``[N, C, H, W]`` (:attr:`ImageDataset.images`)
and yields ``(image float32 [C, H, W] in [0, 1], label)``; a DataLoader makes
``[B, C, H, W]``, and ``x.unsqueeze(0).expand(T, ...)`` the time-major input
``[T, B, C, H, W]`` (``spikeflow train`` does that). The folders torchvision
downloads to are found as well, so files already on disk are not fetched again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from spikeflow.data._indexing import check_index
from spikeflow.data.datasets._common import (
    Archive,
    _root_lock,
    augment_policy,
    auto_augment_name,
    how_to_get,
    random_erase_probability,
    shown_path,
)
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.download import download_url
from spikeflow.data.io.images import read_idx
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["KMNIST", "MNIST", "FashionMNIST", "ImageDataset"]


class ImageDataset(torch.utils.data.Dataset):
    """Base class of the static image datasets (see the module docstring).

    Subclasses set :attr:`classes`, :attr:`image_size`, :attr:`channels` and
    :attr:`homepage`, and implement ``_load()`` returning the split's
    ``(images uint8 [N, C, H, W], labels int64 [N])``.

    Args:
        root: the dataset folder.
        train: the training split (True) or the test split.
        download: fetch missing official files into ``root`` (MD5-checked, resumable).
        augment: the training augmentation applied before ``transform``
            (:meth:`augmentation`): ``False`` (none), ``True`` or ``"standard"`` (the
            dataset's standard one; CIFAR: a random 32x32 crop of the image padded by 4,
            and a horizontal flip with probability 1/2; the MNIST family: none), or
            another name of :attr:`augment_policies` (CIFAR: ``"psn"``, the PSN paper's
            recipe: crop and flip, :class:`~spikeflow.data.image_augment.TrivialAugmentWide`,
            then :class:`~spikeflow.data.image_augment.RandomErasing` with p = 0.1).
        transform: applied to each image tensor as yielded (may be random).
        target_transform: applied to the label.
        auto_augment: an augmentation policy of
            :data:`~spikeflow.data.image_autoaugment.AUTO_AUGMENT_NAMES` (``"ra"``,
            ``"ta_wide"``, ``"imagenet"``, ``"cifar10"``, ``"svhn"``; nearest
            interpolation, fill 0) run within ``augment``: after its crop and flip, in
            place of ``"psn"``'s TrivialAugment-wide (before its random erasing). None
            (default): none; needs ``augment`` on.
        random_erase: the probability of
            :class:`~spikeflow.data.image_augment.RandomErasing` (fill 0) as the last
            training step (the reference recipes' ``--random-erase``); it replaces
            ``"psn"``'s 0.1 (0: none). None (default): the dataset's own (``"psn"``: 0.1,
            else none); a positive one needs ``augment`` on.
    """

    classes: ClassVar[tuple[str, ...]]
    #: ``(height, width)`` of every image.
    image_size: ClassVar[tuple[int, int]]
    channels: ClassVar[int]
    homepage: ClassVar[str]
    downloadable: ClassVar[bool] = True
    #: The names ``augment`` takes besides True/False.
    augment_policies: ClassVar[tuple[str, ...]] = ("standard",)

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        download: bool = False,
        augment: bool | str = False,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        auto_augment: str | None = None,
        random_erase: float | None = None,
    ) -> None:
        for name, value in (("train", train), ("download", download)):
            if not isinstance(value, bool | np.bool_):
                raise ConfigurationError(f"{name} must be True or False; got {value!r}")
        self.root = Path(root)
        self.train = bool(train)
        self.download = bool(download)
        #: The augmentation policy's name (``"standard"``, ...), or None: no augmentation.
        self.augment_policy: str | None = self._policy(augment)
        self.augment = self.augment_policy is not None
        #: The policy of ``auto_augment`` (None: none).
        self.auto_augment: str | None = auto_augment_name(
            type(self).__name__, auto_augment, self.augment_policy, self.augment_policies
        )
        #: The probability of ``random_erase`` (None: the dataset's own).
        self.random_erase: float | None = random_erase_probability(
            type(self).__name__, random_erase, self.augment_policy
        )
        self.transform = transform
        self.target_transform = target_transform
        images, labels = self._load()
        self._check_arrays(images, labels)
        self.images: np.ndarray = images
        self.labels: np.ndarray = labels

    # -- to implement ----------------------------------------------------------------
    def _load(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def augmentation(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The steps of the training augmentation :attr:`augment_policy` (applied in
        order to the float image): by default the :attr:`auto_augment` policy, if any,
        then random erasing with probability :attr:`random_erase`, if set."""
        return self._policy_steps() + self._erasing_steps(0.0)

    def _policy_steps(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The :attr:`auto_augment` policy as a step (none: ``[]``)."""
        if self.auto_augment is None:
            return []
        from spikeflow.data.image_autoaugment import augment_policy_transform

        return [augment_policy_transform(self.auto_augment)]

    def _erasing_steps(self, default: float) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """Random erasing with probability :attr:`random_erase` (None: ``default``, the
        policy's own), or ``[]`` for 0."""
        from spikeflow.data.image_augment import RandomErasing

        p = default if self.random_erase is None else self.random_erase
        return [RandomErasing(p)] if p > 0 else []

    def _policy(self, augment: Any) -> str | None:
        return augment_policy(type(self).__name__, augment, self.augment_policies)

    # -- public ------------------------------------------------------------------------
    @property
    def split(self) -> str:
        """``"train"`` or ``"test"``."""
        return "train" if self.train else "test"

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order."""
        return self.labels.tolist()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = check_index(type(self).__name__, index, len(self))
        image: Any = torch.from_numpy(np.array(self.images[index], dtype=np.float32) / 255.0)
        if self.augment:
            for step in self._augmentation_steps:
                image = step(image)
        if self.transform is not None:
            image = self.transform(image)
        label: Any = int(self.labels[index])
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    @property
    def _augmentation_steps(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        steps = self.__dict__.get("_steps")
        if steps is None:
            steps = self.__dict__["_steps"] = self.augmentation()
        return steps

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"samples={len(self)}, augment={self.augment_policy or False!r}"
            + (f", auto_augment={self.auto_augment!r}" if self.auto_augment else "")
            + (f", random_erase={self.random_erase:g})" if self.random_erase is not None else ")")
        )

    def _check_arrays(self, images: np.ndarray, labels: np.ndarray) -> None:
        shape = (self.channels, *self.image_size)
        if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != shape:
            raise DataFormatError(
                f"{type(self).__name__} ({self.split}) in {self.root}: images must be uint8 "
                f"[N, {', '.join(map(str, shape))}]; read {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise DataFormatError(
                f"{type(self).__name__} ({self.split}) in {self.root}: {images.shape[0]} images "
                f"but {labels.shape[0]} labels"
            )


# -- the MNIST family (IDX files) -----------------------------------------------------

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class _IDXDataset(ImageDataset):
    """Images and labels from the four IDX files, gzip-compressed (``.gz``, as published)
    or not, directly in ``root`` or in torchvision's ``root/<Name>/raw``."""

    image_size = (28, 28)
    channels = 1
    #: Where the four ``.gz`` files are downloaded from.
    base_url: ClassVar[str]
    #: The official MD5 of each ``.gz`` file.
    md5s: ClassVar[dict[str, str]]
    #: torchvision's folder name (``root/<folder>/raw``).
    torchvision_folder: ClassVar[str]

    def _folders(self) -> list[Path]:
        return [self.root, self.root / self.torchvision_folder / "raw"]

    def _find(self, stem: str) -> Path | None:
        for folder in self._folders():
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    return folder / name
        return None

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        stems = _SPLIT_FILES[self.split]
        paths = [self._find(stem) for stem in stems]
        if any(p is None for p in paths):
            self._fetch([s for s, p in zip(stems, paths) if p is None])
            paths = [self._find(stem) for stem in stems]
        image_path, label_path = paths
        assert image_path is not None and label_path is not None
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise DataFormatError(
                f"{image_path}: expected uint8 images [N, 28, 28]; the IDX header says "
                f"{images.dtype} {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataFormatError(
                f"{label_path}: expected uint8 labels [N]; the IDX header says "
                f"{labels.dtype} {labels.shape}"
            )
        if labels.shape[0] != images.shape[0]:
            raise DataFormatError(
                f"{label_path}: {labels.shape[0]} labels for the {images.shape[0]} images of "
                f"{image_path}"
            )
        bad = np.flatnonzero(labels >= len(self.classes))
        if bad.size:
            i = int(bad[0])
            raise DataFormatError(
                f"{label_path}: offset {8 + i}: label {int(labels[i])} is not in "
                f"[0, {len(self.classes)})"
            )
        return images[:, None], labels.astype(np.int64)

    def _fetch(self, stems: Sequence[str]) -> None:
        names = [stem + ".gz" for stem in stems]
        if not self.download:
            layout = (
                f"<root>/{{{','.join(n for pair in _SPLIT_FILES.values() for n in pair)}}}"
                f"[.gz] (or torchvision's <root>/{self.torchvision_folder}/raw/)"
            )
            archives = [Archive(n, self.md5s[n], self.base_url + n) for n in names]
            advice = how_to_get(type(self).__name__, self.root, archives, self.homepage, layout)
            raise DatasetNotFoundError(
                f"{type(self).__name__} ({self.split}) not found in "
                f"{shown_path(self.root)}: missing {', '.join(names)}. {advice}"
            )
        with _root_lock(self.root):  # several processes (DDP ranks) fetch once
            for name in names:
                download_url(self.base_url + name, self.root / name, md5=self.md5s[name])


class MNIST(_IDXDataset):
    """MNIST handwritten digits (LeCun et al. 1998): 28x28 grey images, 10 classes,
    60,000 training and 10,000 test images, from the four official IDX files."""

    classes: ClassVar[tuple[str, ...]] = tuple(str(d) for d in range(10))
    homepage: ClassVar[str] = "https://yann.lecun.com/exdb/mnist/"
    # PyTorch's mirror of the original files (the homepage refuses programs).
    base_url: ClassVar[str] = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    md5s: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    torchvision_folder: ClassVar[str] = "MNIST"


class FashionMNIST(_IDXDataset):
    """Fashion-MNIST (Xiao et al. 2017): Zalando article images in MNIST's format,
    28x28 grey, 10 classes, 60,000 training and 10,000 test images."""

    classes: ClassVar[tuple[str, ...]] = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
    homepage: ClassVar[str] = "https://github.com/zalandoresearch/fashion-mnist"
    base_url: ClassVar[str] = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    md5s: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    torchvision_folder: ClassVar[str] = "FashionMNIST"


class KMNIST(_IDXDataset):
    """Kuzushiji-MNIST (Clanuwat et al. 2018): ten cursive Japanese (hiragana)
    characters in MNIST's format, 28x28 grey, 60,000 training and 10,000 test images."""

    classes: ClassVar[tuple[str, ...]] = (
        "o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo",
    )  # fmt: skip
    homepage: ClassVar[str] = "https://github.com/rois-codh/kmnist"
    base_url: ClassVar[str] = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
    md5s: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    }
    torchvision_folder: ClassVar[str] = "KMNIST"
