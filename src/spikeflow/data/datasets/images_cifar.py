"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from either official version: the Python
version (pickled batches; what torchvision downloads) or the binary version
(fixed-size records). 32x32 colour images, 50,000 training and 10,000 test images."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from spikeflow.data.datasets._common import Archive, prepare_root
from spikeflow.data.datasets.images import ImageDataset
from spikeflow.data.frame_transforms import RandomCropFrames, RandomHorizontalFlipFrames
from spikeflow.data.image_augment import TrivialAugmentWide
from spikeflow.data.io.images import read_cifar_binary, read_cifar_pickle
from spikeflow.errors import ConfigurationError

__all__ = ["CIFAR10", "CIFAR100", "CIFAR100_COARSE_CLASSES"]

_TORONTO = "https://www.cs.toronto.edu/~kriz/"


class _CIFAR(ImageDataset):
    image_size = (32, 32)
    channels = 3
    homepage: ClassVar[str] = "https://www.cs.toronto.edu/~kriz/cifar.html"
    #: The extracted folders of the Python and binary versions.
    python_folder: ClassVar[str]
    binary_folder: ClassVar[str]
    #: The official archive of each version (the Python one is downloaded).
    python_archive: ClassVar[Archive]
    binary_archive: ClassVar[Archive]
    #: The batch files of each split, per version.
    python_files: ClassVar[dict[str, tuple[str, ...]]]
    binary_files: ClassVar[dict[str, tuple[str, ...]]]

    augment_policies: ClassVar[tuple[str, ...]] = ("standard", "psn")

    def augmentation(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """``"standard"``: a random 32x32 crop of the image zero-padded by 4 on every
        side, then a horizontal flip with probability 1/2 (the usual CIFAR training
        augmentation). ``"psn"`` (the PSN paper's, methods.md 4.5): the same, then
        :class:`~spikeflow.data.image_augment.TrivialAugmentWide` (fill 0, nearest), then
        :class:`~spikeflow.data.image_augment.RandomErasing` with p = 0.1 (fill 0) on
        the float image. Mixup and CutMix, the rest of that recipe, act on batches
        (``spikeflow train --mixup 0.2 --cutmix 1.0``). ``auto_augment`` puts its policy
        after the crop and flip (in place of ``"psn"``'s TrivialAugment-wide);
        ``random_erase`` sets the erasing's probability (any policy; 0: none)."""
        steps: list[Callable[[torch.Tensor], torch.Tensor]] = [
            RandomCropFrames(32, padding=4), RandomHorizontalFlipFrames(0.5)
        ]  # fmt: skip
        steps += self._policy_steps()
        if self.augment_policy == "psn" and not self.auto_augment:
            steps.append(TrivialAugmentWide())
        return steps + self._erasing_steps(0.1 if self.augment_policy == "psn" else 0.0)

    def _layout(self) -> str:
        python = ", ".join(self.python_files[self.split])
        binary = ", ".join(self.binary_files[self.split])
        return (
            f"<root>/{self.python_folder}/{{{python}}} (Python version) or "
            f"<root>/{self.binary_folder}/{{{binary}}} (binary version)"
        )

    def _complete(self, folder: str, files: dict[str, tuple[str, ...]]) -> bool:
        return all((self.root / folder / name).is_file() for name in files[self.split])

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        title = type(self).__name__
        python_ready = self._complete(self.python_folder, self.python_files)
        binary_ready = self._complete(self.binary_folder, self.binary_files)
        if not python_ready and not binary_ready:
            # An archive on disk is used as it is; else the Python version is fetched.
            binary_only = (self.root / self.binary_archive.name).is_file() and not (
                self.root / self.python_archive.name
            ).is_file()
            version, folder, files = (
                (self.binary_archive, self.binary_folder, self.binary_files)
                if binary_only
                else (self.python_archive, self.python_folder, self.python_files)
            )
            prepare_root(
                title, self.root, self.root / folder, [version],
                download=self.download, homepage=self.homepage, layout=self._layout(),
                check=lambda: self._complete(folder, files),
            )  # fmt: skip
            binary_ready = binary_only
        if binary_ready and not self._complete(self.python_folder, self.python_files):
            parts = [self._read_binary(self.root / self.binary_folder / name)
                     for name in self.binary_files[self.split]]  # fmt: skip
        else:
            parts = [self._read_python(self.root / self.python_folder / name)
                     for name in self.python_files[self.split]]  # fmt: skip
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return images, labels

    def _read_python(self, path: Path) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _read_binary(self, path: Path) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


class CIFAR10(_CIFAR):
    """CIFAR-10: 10 classes of 32x32 colour images, 5,000 training and 1,000 test
    images each. Reads ``root/cifar-10-batches-py/`` (the Python version, what
    torchvision's ``CIFAR10`` extracts) or ``root/cifar-10-batches-bin/``; an official
    archive in ``root`` is MD5-checked and extracted on first use, and
    ``download=True`` fetches the Python version. Yields ``(float32 [3, 32, 32] in
    [0, 1], label)``; ``augment=True`` (or ``"standard"``) and ``augment="psn"``: see
    :meth:`augmentation`."""

    classes: ClassVar[tuple[str, ...]] = (
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    python_folder = "cifar-10-batches-py"
    binary_folder = "cifar-10-batches-bin"
    python_archive = Archive(
        "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
        _TORONTO + "cifar-10-python.tar.gz",
    )  # fmt: skip
    binary_archive = Archive("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")
    python_files: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
    }
    binary_files: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        "test": ("test_batch.bin",),
    }

    def _read_python(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return read_cifar_pickle(path, "labels", 10)

    def _read_binary(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return read_cifar_binary(path, label_bytes=1, num_classes=10)


#: CIFAR-100's 20 superclasses (``label="coarse"``), index = label.
CIFAR100_COARSE_CLASSES: tuple[str, ...] = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates",
    "people", "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)  # fmt: skip


class CIFAR100(_CIFAR):
    """CIFAR-100: 100 classes (grouped into 20 superclasses) of 32x32 colour images,
    500 training and 100 test images each. Reads ``root/cifar-100-python/`` or
    ``root/cifar-100-binary/`` as :class:`CIFAR10` does its folders.

    Args:
        label: ``"fine"`` (default; the 100 classes, :attr:`classes`) or ``"coarse"``
            (the 20 superclasses, :data:`CIFAR100_COARSE_CLASSES`; the instance's
            ``classes`` are then those).
        root, train, download, augment, transform, target_transform, auto_augment,
        random_erase: see :class:`~spikeflow.data.datasets.images.ImageDataset`.
    """

    classes: ClassVar[tuple[str, ...]] = (
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
        "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can",
        "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud",
        "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin",
        "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo",
        "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
        "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
        "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain",
        "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
        "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
        "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table",
        "tank", "telephone", "television", "tiger", "tractor", "train", "trout", "tulip",
        "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
    )  # fmt: skip
    python_folder = "cifar-100-python"
    binary_folder = "cifar-100-binary"
    python_archive = Archive(
        "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
        _TORONTO + "cifar-100-python.tar.gz",
    )  # fmt: skip
    binary_archive = Archive("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8")
    python_files: ClassVar[dict[str, tuple[str, ...]]] = {"train": ("train",), "test": ("test",)}
    binary_files: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": ("train.bin",),
        "test": ("test.bin",),
    }

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        download: bool = False,
        augment: bool | str = False,
        label: str = "fine",
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        auto_augment: str | None = None,
        random_erase: float | None = None,
    ) -> None:
        self.classes = self.classes_for(label)  # type: ignore[misc]
        self.label = label
        super().__init__(root, train, download, augment, transform, target_transform,
                         auto_augment, random_erase)  # fmt: skip

    @classmethod
    def classes_for(cls, label: str = "fine", **_: Any) -> tuple[str, ...]:
        """The classes of an instance built with ``label`` (no file is read): the 100
        fine classes, or the 20 superclasses for ``"coarse"``; the other arguments of
        the constructor are accepted and ignored (they do not change the classes).

        Raises:
            ConfigurationError: ``label`` is neither ``"fine"`` nor ``"coarse"``.
        """
        if label not in ("fine", "coarse"):
            raise ConfigurationError(f"CIFAR100: label must be 'fine' or 'coarse'; got {label!r}")
        return CIFAR100_COARSE_CLASSES if label == "coarse" else cls.classes

    def _read_python(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return read_cifar_pickle(path, f"{self.label}_labels", len(self.classes))

    def _read_binary(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        # Each record: the coarse label byte, the fine label byte, the pixels.
        index = 0 if self.label == "coarse" else 1
        return read_cifar_binary(path, 2, len(self.classes), label_index=index)
