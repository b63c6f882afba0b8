"""Image files sorted into class folders (``root/<class>/<image>``), read with Pillow
(the optional extra ``images``): :class:`ImageFolder` for any such dataset, the base of
:class:`~spikeflow.data.datasets.imagenet.ImageNet`.

Files are listed once, at construction, with ``os.scandir`` (no per-file ``stat``);
the list is held as one byte string of relative paths plus offsets (a few tens of MB
for ImageNet's 1.28 million files, shared by DataLoader workers without per-object
reference counts), and can be cached on disk (``cache_dir``) so that a later run skips
the listing. A sample is decoded when it is read, converted to RGB, and goes through
the standard pipeline of :mod:`spikeflow.data.image_transforms`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
import torch

from spikeflow._checks import check_flag
from spikeflow.data._indexing import check_index
from spikeflow.data.cache import CacheCorruptionWarning, atomic_write_bytes, default_cache_dir
from spikeflow.data.datasets._common import (
    augment_policy,
    auto_augment_name,
    first_names,
    random_erase_probability,
    shown_path,
)
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.frame_transforms import int_pair
from spikeflow.data.image_augment import RandomErasing
from spikeflow.data.image_autoaugment import imagenet_policy_transform
from spikeflow.data.image_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    imagenet_eval_transform,
    imagenet_train_transform,
    pil_image_module,
)
from spikeflow.data.transforms import Compose
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["IMAGE_EXTENSIONS", "FileListing", "ImageFolder", "list_class_folders"]

#: The file name endings read as images (case-insensitive), torchvision's list.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
)  # fmt: skip
#: Bump when the listing's content or order changes, so old cache files miss.
LISTING_VERSION = 1
#: A folder changed less than this many seconds ago may still be changing: its listing
#: is not cached (a file added within the same mtime tick would go unnoticed).
_SETTLE_S = 2.0


@dataclass(frozen=True)
class FileListing:
    """The image files of a split: paths relative to its folder (UTF-8 / file-system
    bytes, concatenated in ``blob``, file ``i`` at ``blob[offsets[i]:offsets[i + 1]]``),
    their labels, and the folders whose modification times vouch for the listing."""

    classes: tuple[str, ...]
    blob: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    #: Relative folder -> st_mtime_ns, for every folder listed (``""``: the split's).
    folders: dict[str, int]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def relative(self, index: int) -> str:
        """The path of file ``index`` relative to the split folder."""
        return os.fsdecode(self.blob[self.offsets[index] : self.offsets[index + 1]].tobytes())


def _visible(name: str) -> bool:
    # Hidden entries are skipped: .ipynb_checkpoints folders, macOS's ._<name>.JPEG.
    return not name.startswith(".")


def _files_under(folder: Path, relative: str, extensions: tuple[str, ...],
                 folders: dict[str, int]) -> list[str]:  # fmt: skip
    """The image files under ``folder`` (relative paths, ``relative/`` first): its own
    files sorted by name, then each sub-folder's in name order."""
    files, subfolders = [], []
    folders[relative] = folder.stat().st_mtime_ns
    with os.scandir(folder) as entries:
        for entry in entries:
            if not _visible(entry.name):
                continue
            if entry.name.lower().endswith(extensions) and entry.is_file():
                files.append(entry.name)
            elif entry.is_dir():
                subfolders.append(entry.name)
    out = [f"{relative}/{name}" for name in sorted(files)]
    for name in sorted(subfolders):
        out += _files_under(folder / name, f"{relative}/{name}", extensions, folders)
    return out


def class_folder_names(folder: Path) -> list[str]:
    """The sorted names of the visible sub-folders of ``folder``."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if _visible(e.name) and e.is_dir())


def list_class_folders(
    folder: str | os.PathLike,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    classes: Sequence[str] | None = None,
) -> FileListing:
    """List ``folder/<class>/**/<image>``: classes sorted by name (label = index), files
    sorted by path within each class (a class folder's own files first, then its
    sub-folders'). Names starting with ``.`` are skipped.

    Args:
        folder: the split folder.
        extensions: the file endings to list (case-insensitive).
        classes: the class list to label by (the training split's, for a test split
            that may lack some classes); None: the folder's own.

    Raises:
        DataFormatError: a class folder without images, or (with ``classes``) a folder
            that is not one of ``classes``.
    """
    root = Path(folder)
    found = class_folder_names(root)
    names = tuple(found) if classes is None else tuple(classes)
    index = {name: i for i, name in enumerate(names)}
    unknown = [name for name in found if name not in index]
    if unknown:
        raise DataFormatError(
            f"{root}: class folder(s) {unknown[:5]} are not among the {len(names)} classes "
            f"of the training split ({names[:3]}...); both splits must have the same classes"
        )
    folders = {"": root.stat().st_mtime_ns}
    chunks, lengths, labels, empty = [], [], [], []
    ends = tuple(e.lower() for e in extensions)
    for name in found:
        files = _files_under(root / name, name, ends, folders)
        if not files:
            empty.append(name)
        encoded = [os.fsencode(f) for f in files]
        chunks.append(b"".join(encoded))
        lengths.append(np.fromiter(map(len, encoded), np.int64, len(encoded)))
        labels.append(np.full(len(files), index[name], np.int64))
    if empty:
        raise DataFormatError(
            f"{root}: class folder(s) {first_names(empty)} hold no "
            f"image ({', '.join(extensions)}); an incomplete extraction?"
        )
    size = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
    blob = np.frombuffer(b"".join(chunks), np.uint8)
    label_array = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return FileListing(names, blob, offsets, label_array, folders)


# -- the listing cache ------------------------------------------------------------------


def _cache_file(cache_dir: Path, folder: Path, extensions: Sequence[str]) -> Path:
    key = json.dumps({"folder": str(folder.resolve()), "extensions": sorted(extensions),
                      "version": LISTING_VERSION}, sort_keys=True)  # fmt: skip
    return cache_dir / "image-lists" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"


def _still_valid(folder: Path, folders: dict[str, int]) -> bool:
    for relative, mtime in folders.items():
        try:
            if (folder / relative).stat().st_mtime_ns != mtime:
                return False
        except OSError:
            return False
    return True


def _read_cached(path: Path, folder: Path, classes: Sequence[str] | None) -> FileListing | None:
    if not path.is_file():
        return None
    try:
        arrays, meta = read_npz_cache(path, ("blob", "offsets", "labels"))
        blob, offsets, labels = arrays["blob"], arrays["offsets"], arrays["labels"]
        listing = FileListing(tuple(meta["classes"]), blob, offsets, labels, meta["folders"])
        n = len(labels)
        if offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != blob.size:
            raise ValueError("offsets do not match the paths")
    except Exception as exc:  # a truncated or foreign file: list again
        warnings.warn(f"image listing cache {path} is unreadable ({exc}); listing again",
                      CacheCorruptionWarning, stacklevel=3)  # fmt: skip
        return None
    same_classes = classes is None or tuple(classes) == listing.classes
    return listing if same_classes and _still_valid(folder, listing.folders) else None


def read_npz_cache(path: Path, names: Sequence[str]) -> tuple[dict[str, np.ndarray], Any]:
    """The arrays ``names`` and the JSON ``meta`` of a cache file that
    :func:`write_npz_cache` wrote (read whole, never unpickled). Raises whatever a
    truncated or foreign file makes numpy or json raise."""
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes().decode("utf-8"))
        return {name: npz[name] for name in names}, meta


def write_npz_cache(
    path: Path, changed_ns: int, arrays: dict[str, np.ndarray], meta: Any, failure: str,
    stacklevel: int = 3,
) -> bool:  # fmt: skip
    """Write ``arrays`` and the JSON ``meta`` to ``path`` atomically, unless what they
    describe changed ``_SETTLE_S`` ago or less (``changed_ns``: it may still be
    changing). A folder that cannot be written is a warning, ``failure`` followed by the
    error (it costs the next run the work, not this run). Whether it was written."""
    if changed_ns > time.time_ns() - int(_SETTLE_S * 1e9):
        return False
    buffer = io.BytesIO()
    text = json.dumps(meta).encode("utf-8")
    np.savez(buffer, **arrays, meta=np.frombuffer(text, np.uint8))
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        warnings.warn(failure.format(exc=exc), stacklevel=stacklevel + 1)
        return False
    return True


def _write_cached(path: Path, listing: FileListing) -> None:
    write_npz_cache(
        path, max(listing.folders.values(), default=0),  # a folder changed just now
        {"blob": listing.blob, "offsets": listing.offsets, "labels": listing.labels},
        {"classes": list(listing.classes), "folders": listing.folders},
        f"cannot write the image listing cache {path}: {{exc}}",
    )  # fmt: skip


def cached_listing(
    folder: Path,
    extensions: Sequence[str],
    cache_dir: str | os.PathLike | None,
    classes: Sequence[str] | None = None,
) -> FileListing:
    """:func:`list_class_folders`, through the cache in ``cache_dir`` (``"auto"``: the
    user cache folder; None: no cache). A cached listing is used while every folder it
    listed keeps its modification time (adding, removing or renaming a file changes
    its folder's); it is written atomically, and not for a folder changed within the
    last 2 seconds."""
    if cache_dir is None:
        return list_class_folders(folder, extensions, classes)
    base = default_cache_dir() if cache_dir == "auto" else Path(cache_dir)
    path = _cache_file(base, folder, extensions)
    listing = _read_cached(path, folder, classes)
    if listing is None:
        listing = list_class_folders(folder, extensions, classes)
        _write_cached(path, listing)
    return listing


# -- the dataset ------------------------------------------------------------------------


class ImageFolder(torch.utils.data.Dataset):
    """Images in class folders, ``<split folder>/<class>/<image>`` (sub-folders of a
    class folder are included), as torchvision's ``ImageFolder`` reads them: classes
    sorted by folder name, label = index; files sorted by path within each class.
    Yields ``(float32 [3, h, w], label)`` after the standard pipeline.

    Args:
        root: the dataset folder.
        train: None (default): ``root`` itself holds the class folders; True:
            ``root/train``; False: ``root/val`` (else ``root/test``). A test split is
            labelled by the training split's classes when ``root/train`` exists (it may
            lack some of them, not have others).
        augment: the training augmentation, a policy of :attr:`augment_policies` (as
            the static image datasets' ``augment``): ``True`` or ``"standard"``
            (:func:`~spikeflow.data.image_transforms.imagenet_train_transform`: random
            resized crop to ``image_size``, horizontal flip), ``"psn"`` (the same, then
            TrivialAugment-wide and, after the normalisation, random erasing with p =
            0.1:
            :func:`~spikeflow.data.image_augment.imagenet_trivial_augment_transform`);
            ``False`` (default): the evaluation pipeline
            (:func:`~spikeflow.data.image_transforms.imagenet_eval_transform`: the
            shorter side resized to ``resize_size``, centre crop ``image_size``).
        image_size: the output ``(h, w)`` (an int: square); default
            :attr:`default_image_size`, 224.
        resize_size: the evaluation's shorter side before the crop; default
            ``max(image_size) · 8 // 7`` (256 for 224). ``resize_size = image_size``
            keeps the whole of a square image.
        mean, std: the normalisation (default: ImageNet's,
            :data:`~spikeflow.data.image_transforms.IMAGENET_MEAN` / ``IMAGENET_STD``);
            None for both: values stay in [0, 1].
        extensions: the file endings read as images (case-insensitive).
        cache_dir: cache the file listing here (``"auto"``: the user cache folder;
            None: list the folders every time).
        image_transform: replaces the standard pipeline (it gets the RGB PIL image);
            then ``augment``, ``image_size``, ``resize_size``, ``mean`` and ``std`` are
            not used.
        transform: applied to the pipeline's output (a tensor).
        target_transform: applied to the label.
        auto_augment: an augmentation policy of
            :data:`~spikeflow.data.image_autoaugment.AUTO_AUGMENT_NAMES` (``"ra"``,
            ``"ta_wide"``, ``"imagenet"``, ``"cifar10"``, ``"svhn"``) run within
            ``augment``, in the reference recipes' order: crop and flip, the policy
            (bilinear, fill 0) on the PIL image, ``ToTensor``, ``Normalize``, then
            ``"psn"``'s random erasing (the policy takes the place of its
            TrivialAugment-wide):
            :func:`~spikeflow.data.image_autoaugment.imagenet_policy_transform`. None
            (default): none; needs ``augment`` on.
        random_erase: the probability of
            :class:`~spikeflow.data.image_augment.RandomErasing` (fill 0: the mean colour
            once normalised) after ``Normalize``, the last training step (the reference
            recipes' ``--random-erase``); it replaces ``"psn"``'s 0.1 (0: none). None
            (default): the dataset's own (``"psn"``: 0.1, else none); a positive one
            needs ``augment`` on.
        interpolation: how the training crop (``RandomResizedCrop``) and the evaluation's
            ``Resize`` resample: ``"bilinear"`` (default), ``"bicubic"`` or ``"nearest"``
            (the reference recipes' ``--interpolation``, which an ``auto_augment``
            policy's geometric operations use too).

    Raises:
        ConfigurationError: ``augment`` neither a bool nor a policy name, or set together
            with ``image_transform``; ``interpolation`` not one of the three;
            ``auto_augment`` not a policy name, or set without ``augment``;
            ``random_erase`` not in [0, 1], or positive without ``augment``.
        DatasetNotFoundError: no split folder, or no class folder in it.
        DataFormatError: a class folder without images; a test split with a class the
            training split lacks.
        MissingExtraError: Pillow is not installed (extra ``images``).
    """

    #: The number of classes where the dataset fixes it (None: the folders decide).
    num_classes: ClassVar[int | None] = None
    #: The output size when ``image_size`` is not given (``(h, w)``).
    default_image_size: ClassVar[tuple[int, int]] = (224, 224)
    channels: ClassVar[int] = 3
    #: The names ``augment`` takes besides True/False.
    augment_policies: ClassVar[tuple[str, ...]] = ("standard", "psn")
    #: Where a split's folder is looked for, in order, under ``root``.
    split_folders: ClassVar[dict[str, tuple[str, ...]]] = {"train": ("train",),
                                                           "test": ("val", "test")}  # fmt: skip

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool | None = None,
        augment: bool | str = False,
        image_size: int | Sequence[int] | None = None,
        resize_size: int | None = None,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        cache_dir: str | os.PathLike | None = None,
        image_transform: Callable[[Any], Any] | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        auto_augment: str | None = None,
        random_erase: float | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        title = type(self).__name__
        if train is not None:
            check_flag(title, "train", train)
        if interpolation not in INTERPOLATIONS:
            names = ", ".join(INTERPOLATIONS)
            raise ConfigurationError(f"{title}: interpolation must be one of {names}; "
                                     f"got {interpolation!r}")  # fmt: skip
        #: How the crop and the resize resample (``"bilinear"``, ``"bicubic"``, ``"nearest"``).
        self.interpolation: str = interpolation
        #: The augmentation policy's name (``"standard"``, ``"psn"``), or None: none.
        self.augment_policy: str | None = augment_policy(title, augment, self.augment_policies)
        self.augment = self.augment_policy is not None
        #: The policy of ``auto_augment`` (None: none).
        self.auto_augment: str | None = auto_augment_name(
            title, auto_augment, self.augment_policy, self.augment_policies
        )
        #: The probability of ``random_erase`` (None: the dataset's own).
        self.random_erase: float | None = random_erase_probability(
            title, random_erase, self.augment_policy
        )
        erasing = 0.1 if self.augment_policy == "psn" else 0.0
        erasing = erasing if self.random_erase is None else self.random_erase
        pil_image_module(f"{title} (image files)")  # the extra, before any listing
        if isinstance(extensions, str) or not all(
            isinstance(e, str) and e.startswith(".") for e in extensions
        ):
            raise ConfigurationError(f"{title}: extensions must be a sequence of endings such "
                                     f"as '.jpg'; got {extensions!r}")  # fmt: skip
        self.root = Path(root)
        self.train = None if train is None else bool(train)
        self.extensions = tuple(extensions)
        self.cache_dir = cache_dir
        size = self.default_image_size if image_size is None else image_size
        self.image_size: tuple[int, int] = int_pair(size, f"{title}: image_size", "(h, w)")
        if image_transform is not None:
            if self.augment:
                raise ConfigurationError(f"{title}: augment={augment!r} and image_transform "
                                         "both set the pipeline; give one")  # fmt: skip
            self.pipeline: Callable[[Any], Any] = image_transform
        elif self.augment_policy == "psn" or self.auto_augment is not None:
            self.pipeline = imagenet_policy_transform(self.image_size, self.auto_augment or
                                                      "ta_wide", mean, std, erasing,
                                                      interpolation=interpolation)  # fmt: skip
        elif self.augment:
            self.pipeline = imagenet_train_transform(self.image_size, mean, std,
                                                     interpolation=interpolation)  # fmt: skip
            if erasing > 0:  # the recipe's last step, after the normalisation
                self.pipeline = Compose([*self.pipeline.transforms, RandomErasing(erasing)])
        else:
            self.pipeline = imagenet_eval_transform(self.image_size, resize_size, mean, std,
                                                    interpolation)  # fmt: skip
        self.transform = transform
        self.target_transform = target_transform
        self.folder = self._split_folder()
        listing = self._load()
        self._listing = listing
        self.classes: tuple[str, ...] = listing.classes
        self.labels: np.ndarray = listing.labels

    # -- where the files are ------------------------------------------------------------
    @property
    def split(self) -> str | None:
        """``"train"``, ``"test"`` or None (``train=None``: the root's folders)."""
        return None if self.train is None else ("train" if self.train else "test")

    def _layout(self) -> str:
        if self.train is None:
            return "<root>/<class>/<image> (classes sorted by folder name)"
        folders = " or ".join(f"<root>/{f}/<class>/<image>" for f in self.split_folders["test"])
        return f"<root>/train/<class>/<image> and {folders}"

    def _not_found(self, what: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(f"{type(self).__name__} ({self.split or 'all'}): {what}. "
                                    f"Expected layout: {self._layout()}")  # fmt: skip

    def _split_folder(self) -> Path:
        if self.train is None:
            candidates = [self.root]
        else:
            candidates = [self.root / name for name in self.split_folders[self.split or ""]]
        for folder in candidates:
            if folder.is_dir():
                return folder
        raise self._not_found(f"no folder {' or '.join(map(shown_path, candidates))}")

    def _reference_classes(self) -> list[str] | None:
        """The training split's classes, which label a test split (None: its own)."""
        if self.train is not False:
            return None
        train_folder = self.root / self.split_folders["train"][0]
        return class_folder_names(train_folder) if train_folder.is_dir() else None

    def _load(self) -> FileListing:
        if not class_folder_names(self.folder):
            raise self._not_found(f"{shown_path(self.folder)} holds no class folder")
        listing = cached_listing(self.folder, self.extensions, self.cache_dir,
                                 self._reference_classes())  # fmt: skip
        if self.num_classes is not None and len(listing.classes) != self.num_classes:
            raise DataFormatError(f"{self.folder}: expected {self.num_classes} class folders, "
                                  f"found {len(listing.classes)}")  # fmt: skip
        return listing

    # -- samples ------------------------------------------------------------------------
    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order."""
        return self.labels.tolist()

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> label."""
        return {name: i for i, name in enumerate(self.classes)}

    def path(self, index: int) -> Path:
        """The file of sample ``index``."""
        return self.folder / self._listing.relative(index)

    def _open_image(self, index: int) -> BinaryIO:
        """The encoded bytes of sample ``index``, as a binary file (its file here; a
        dataset that reads archives in place returns the member's bytes)."""
        return open(self.path(index), "rb")

    def load_image(self, index: int) -> Any:
        """Sample ``index`` decoded as an RGB PIL image (no pipeline).

        Raises:
            DataFormatError: the file is not an image Pillow can decode (truncated,
                corrupt, or another format); the message names the file.
        """
        image_module = pil_image_module(f"{type(self).__name__} (image files)")
        path = self.path(index)
        try:
            with self._open_image(index) as fh:
                return image_module.open(fh).convert("RGB")
        except (FileNotFoundError, DataFormatError):
            raise
        except Exception as exc:  # Pillow raises many types on corrupt files
            raise DataFormatError(
                f"{path}: cannot decode the image: {type(exc).__name__}: {exc}"
            ) from None

    def __len__(self) -> int:
        return len(self._listing)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = check_index(type(self).__name__, index, len(self))
        sample = self.pipeline(self.load_image(index))
        if self.transform is not None:
            sample = self.transform(sample)
        label: Any = int(self.labels[index])
        if self.target_transform is not None:
            label = self.target_transform(label)
        return sample, label

    def __repr__(self) -> str:
        resample = self.interpolation
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"samples={len(self)}, classes={len(self.classes)}, image_size={self.image_size}, "
            f"augment={self.augment_policy or False!r}"
            + (f", auto_augment={self.auto_augment!r}" if self.auto_augment else "")
            + ("" if resample == "bilinear" else f", interpolation={resample!r}")
            + (f", random_erase={self.random_erase:g})" if self.random_erase is not None else ")")
        )
