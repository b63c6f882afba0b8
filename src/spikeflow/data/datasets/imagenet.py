"""ImageNet (ILSVRC-2012 classification; Russakovsky et al. 2015) from its extracted
image folders, with the labels of the official flat validation folder read from the
devkit. No torchvision needed; Pillow is the optional extra ``images``.

Layouts under ``root``:

* ``train/<wnid>/*.JPEG``: the 1,000 class folders (1,281,167 images) that extracting
  ``ILSVRC2012_img_train.tar`` and then each ``<wnid>.tar`` inside it gives;
* ``val/<wnid>/*.JPEG`` (50,000 images, 50 per class): the validation images sorted
  into class folders, as the common ``valprep.sh`` does; or ``val/ILSVRC2012_val_<n>.JPEG``
  as ``ILSVRC2012_img_val.tar`` extracts them, labelled from the devkit;
* the devkit, ``ILSVRC2012_devkit_t12.tar.gz`` (read in place, not extracted) or its
  extracted folder ``ILSVRC2012_devkit_t12/``: ``data/meta.mat`` (the ``synsets``
  struct array: ``ILSVRC2012_ID``, ``WNID``, ``words``, ``num_children``, ...; the
  1,000 classes are the synsets without children) and
  ``data/ILSVRC2012_validation_ground_truth.txt`` (the ``ILSVRC2012_ID`` of validation
  image 1, 2, ... one per line). Optional for the class-folder layouts; it adds the
  human-readable :attr:`ImageNet.class_names` and checks the folder names.

Or, without extracting anything:

* ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar`` themselves, read in place
  (:mod:`~spikeflow.data.datasets.imagenet_archives`: an index of each image's byte
  range, cached; one positioned read per sample); the validation archive is labelled
  from the devkit;
* Kaggle's "ImageNet Object Localization Challenge" download:
  ``ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG``, ``ILSVRC/Data/CLS-LOC/val/*.JPEG``
  labelled by ``LOC_val_solution.csv``, and ``LOC_synset_mapping.txt`` (class names).

Each split is looked for in that order: the extracted ``train/`` (``val/``) folder,
Kaggle's folder, then the archive; the first found is read.

Labels are the indices of the sorted WNIDs (torchvision's convention, so its
pretrained ANN weights and published label files agree), not the devkit's
``ILSVRC2012_ID`` order.
"""

from __future__ import annotations

import io
import math
import os
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
import torch

from spikeflow.data.datasets._common import Archive, shown_path
from spikeflow.data.datasets.image_folder import (
    IMAGE_EXTENSIONS,
    FileListing,
    ImageFolder,
    class_folder_names,
)
from spikeflow.data.datasets.imagenet_archives import (
    KAGGLE_FOLDER,
    KAGGLE_SYNSETS,
    KAGGLE_VAL_SOLUTION,
    TRAIN_ARCHIVE,
    VAL_ARCHIVE,
    ArchiveListing,
    archive_contents,
    read_synset_mapping,
    read_val_solution,
)
from spikeflow.data.image_transforms import IMAGENET_MEAN, IMAGENET_STD
from spikeflow.data.io.matlab_struct import read_mat_variable
from spikeflow.data.io.tar_index import RangeReader
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["ImageNet", "ImageNetDevkit", "read_imagenet_devkit"]

DEVKIT = Archive("ILSVRC2012_devkit_t12.tar.gz", "fa75699e90414af021442c21a62c3abf")
DEVKIT_FOLDER = "ILSVRC2012_devkit_t12"
META_MAT = "data/meta.mat"
VAL_GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
#: The official validation file names: ``ILSVRC2012_val_<8-digit number>.JPEG``.
VAL_NAME = re.compile(r"ILSVRC2012_val_([0-9]{8})\.jpe?g", re.IGNORECASE)
#: The WNIDs the classes must be, and what says so (for error messages).
Reference = tuple[tuple[str, ...], str]


@dataclass(frozen=True)
class ImageNetDevkit:
    """What spikeflow reads from the devkit.

    Attributes:
        wnid_by_id: ``ILSVRC2012_ID`` (1-1000) -> WNID, for the 1,000 classes.
        words: WNID -> its human-readable names (``"tench, Tinca tinca"``).
        val_ids: the ``ILSVRC2012_ID`` of each validation image, in file-number order
            (empty when only ``meta.mat`` was read).
    """

    wnid_by_id: dict[int, str]
    words: dict[str, str]
    val_ids: tuple[int, ...] = ()

    @property
    def wnids(self) -> tuple[str, ...]:
        """The 1,000 WNIDs, sorted: label = index."""
        return tuple(sorted(self.words))


def _scalar(value: Any, field: str, where: str, index: int) -> int:
    ok = isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size == 1
    number = float(value.reshape(())) if ok else math.nan
    if not math.isfinite(number) or number % 1:
        raise DataFormatError(f"{where}: synset {index}: {field} is {value!r}, not one integer")
    return int(number)


def parse_meta(
    data: bytes, where: str, classes: int = 1000
) -> tuple[dict[int, str], dict[str, str]]:
    """``(ILSVRC2012_ID -> WNID, WNID -> words)`` of the leaf synsets of a devkit
    ``meta.mat`` (``data`` its bytes; ``where`` names it in errors).

    Raises:
        DataFormatError: no ``synsets`` struct array with ``ILSVRC2012_ID``, ``WNID``,
            ``words`` and ``num_children``; not ``classes`` leaf synsets with the IDs
            1..``classes`` and distinct WNIDs.
    """
    synsets = read_mat_variable(data, "synsets", where)
    needed = ("ILSVRC2012_ID", "WNID", "words", "num_children")
    if not isinstance(synsets, list) or not all(isinstance(s, dict) for s in synsets):
        raise DataFormatError(f"{where}: 'synsets' is not a struct array")
    if synsets and not set(needed) <= set(synsets[0]):
        raise DataFormatError(f"{where}: 'synsets' has fields {sorted(synsets[0])}; expected "
                              f"{', '.join(needed)}")  # fmt: skip
    wnid_by_id: dict[int, str] = {}
    words: dict[str, str] = {}
    for i, synset in enumerate(synsets):
        if _scalar(synset["num_children"], "num_children", where, i) != 0:
            continue
        wnid, text = synset["WNID"], synset["words"]
        if not isinstance(wnid, str) or not wnid or not isinstance(text, str):
            raise DataFormatError(f"{where}: synset {i}: WNID {wnid!r} / words {text!r} are "
                                  "not strings")  # fmt: skip
        number = _scalar(synset["ILSVRC2012_ID"], "ILSVRC2012_ID", where, i)
        if number in wnid_by_id or wnid in words:
            raise DataFormatError(f"{where}: synset {i}: ILSVRC2012_ID {number} or WNID "
                                  f"{wnid!r} appears twice")  # fmt: skip
        wnid_by_id[number] = wnid
        words[wnid] = text
    if sorted(wnid_by_id) != list(range(1, classes + 1)):
        raise DataFormatError(
            f"{where}: expected {classes} leaf synsets with ILSVRC2012_ID 1..{classes}; found "
            f"{len(wnid_by_id)} (IDs {sorted(wnid_by_id)[:3]}...)"
        )
    return wnid_by_id, words


def parse_ground_truth(data: bytes, where: str, classes: int = 1000) -> tuple[int, ...]:
    """The validation labels (ILSVRC2012_IDs) of the ground-truth text, one per line.

    Raises:
        DataFormatError: a line that is not an integer in 1..``classes`` (named).
    """
    ids = []
    for number, line in enumerate(data.decode("ascii", "replace").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not text.isdigit() or not 1 <= int(text) <= classes:
            raise DataFormatError(
                f"{where}: line {number}: {text[:20]!r} is not an ILSVRC2012_ID in 1..{classes}"
            )
        ids.append(int(text))
    if not ids:
        raise DataFormatError(f"{where}: no label")
    return tuple(ids)


def read_imagenet_devkit(
    root: str | os.PathLike, ground_truth: bool = True
) -> ImageNetDevkit | None:
    """The devkit under ``root`` (its extracted folder, else its ``.tar.gz`` read in
    place); None when neither is there.

    Raises:
        DataFormatError: an unreadable archive, a missing member, or a member that
            :func:`parse_meta` / :func:`parse_ground_truth` refuses.
    """
    root = Path(root)
    folder, archive = root / DEVKIT_FOLDER, root / DEVKIT.name
    members = [META_MAT] + ([VAL_GROUND_TRUTH] if ground_truth else [])
    contents: dict[str, bytes] = {}
    if (folder / META_MAT).is_file():
        for member in members:
            if not (folder / member).is_file():
                raise DataFormatError(f"{folder}: missing {member} (an incomplete extraction?)")
            contents[member] = (folder / member).read_bytes()
        where = str(folder)
    elif archive.is_file():
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in members:
                    name = f"{DEVKIT_FOLDER}/{member}"
                    try:
                        handle = tar.extractfile(name)
                    except KeyError:
                        handle = None
                    if handle is None:
                        raise DataFormatError(f"{archive}: no member {name} (not the "
                                              "ILSVRC-2012 devkit?)")  # fmt: skip
                    contents[member] = handle.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataFormatError(f"{archive}: cannot read the archive: {exc}") from None
        where = str(archive)
    else:
        return None
    wnid_by_id, words = parse_meta(contents[META_MAT], f"{where}/{META_MAT}")
    ids = (parse_ground_truth(contents[VAL_GROUND_TRUTH], f"{where}/{VAL_GROUND_TRUTH}")
           if ground_truth else ())  # fmt: skip
    return ImageNetDevkit(wnid_by_id, words, ids)


def _names_listing(classes: tuple[str, ...], names: Sequence[str], labels: np.ndarray,
                   folders: dict[str, int]) -> FileListing:  # fmt: skip
    encoded = [os.fsencode(n) for n in names]
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return FileListing(classes, np.frombuffer(b"".join(encoded), np.uint8), offsets, labels,
                       folders)  # fmt: skip


class ImageNet(ImageFolder):
    """ImageNet ILSVRC-2012 classification: 1,000 classes, 1,281,167 training and
    50,000 validation images (the test split is the validation set), from the layouts
    of the module docstring. Yields ``(float32 [3, 224, 224], label)``: the training
    augmentation (``augment=True``: random resized crop, flip) or the evaluation
    pipeline (shorter side 256, centre crop 224), normalised by the ImageNet mean and
    standard deviation (:data:`~spikeflow.data.image_transforms.IMAGENET_MEAN`,
    ``IMAGENET_STD``).

    ImageNet cannot be downloaded by a program: register at https://image-net.org and
    download ``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar`` and
    ``ILSVRC2012_devkit_t12.tar.gz`` into ``root``. They can be read as they are (the
    archives in place), or extracted (docs/datasets.md)::

        mkdir train val && tar -xf ILSVRC2012_img_train.tar -C train
        for f in train/*.tar; do mkdir "${f%.tar}" && tar -xf "$f" -C "${f%.tar}" && rm "$f"; done
        tar -xf ILSVRC2012_img_val.tar -C val

    Kaggle's "ImageNet Object Localization Challenge" download, unzipped into ``root``,
    is read too. Each split is read from the first of its extracted folder, Kaggle's
    folder and its archive that exists.

    Attributes:
        classes: the 1,000 WNIDs, sorted (label = index).
        class_names: the human-readable names of each class (``"tench, Tinca tinca"``)
            from the devkit when it is in ``root``, else from Kaggle's
            ``LOC_synset_mapping.txt`` when the split is Kaggle's, else None.
        source: where the split is read from: ``"folders"`` (extracted), ``"kaggle"``
            or ``"archive"``. For an archive, :meth:`path` gives the archive joined
            with the member's name (``.../ILSVRC2012_img_train.tar/<wnid>.tar/<image>``),
            not a file on disk.

    Args:
        root: the folder holding ``train/``, ``val/`` and the devkit (or the archives,
            or Kaggle's files).
        train: the training split (True) or the validation split.
        augment, image_size, resize_size, mean, std, extensions, image_transform,
        transform, target_transform, auto_augment, random_erase, interpolation: see
            :class:`~spikeflow.data.datasets.image_folder.ImageFolder`.
        cache_dir: where the folder listing is cached (``"auto"``: the user cache
            folder; None: not cached). An archive's index is cached in
            ``<cache_dir>/tar-indexes/``, or with None next to the archive
            (``<archive>.spikeflow-index.npz``).

    Raises:
        DatasetNotFoundError: no ``train/`` (``val/``) folder, Kaggle folder or archive;
            a flat ``val/`` or validation archive without the devkit, a flat Kaggle
            ``val/`` without ``LOC_val_solution.csv`` or a class list.
        DataFormatError: not the 1,000 class folders or inner tars (or not the devkit's
            or ``LOC_synset_mapping.txt``'s WNIDs), a class without images, a flat
            validation folder or archive that does not match the devkit's ground truth
            or Kaggle's solution file, a malformed devkit or Kaggle file (line named), a
            corrupt, truncated or compressed archive or inner tar, or one holding links
            (archive and byte offset named).
    """

    num_classes: ClassVar[int | None] = 1000
    homepage: ClassVar[str] = "https://image-net.org/challenges/LSVRC/2012/"
    split_folders: ClassVar[dict[str, tuple[str, ...]]] = {"train": ("train",),
                                                           "test": ("val",)}  # fmt: skip
    downloadable: ClassVar[bool] = False

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
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
        if not isinstance(train, bool | np.bool_):
            raise ConfigurationError(f"ImageNet: train must be True or False; got {train!r}")
        self.class_names: tuple[str, ...] | None = None
        self.source = "folders"
        self._reader: RangeReader | None = None
        super().__init__(root, bool(train), augment, image_size, resize_size, mean, std,
                         extensions, cache_dir, image_transform, transform,
                         target_transform, auto_augment, random_erase,
                         interpolation)  # fmt: skip

    def _layout(self) -> str:
        return (
            "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (valprep.sh's layout) "
            f"or <root>/val/ILSVRC2012_val_<n>.JPEG with {DEVKIT.name} (or its extracted "
            f"{DEVKIT_FOLDER}/) in <root>; or Kaggle's <root>/{KAGGLE_FOLDER}/train/<wnid>/ "
            f"and val/ with <root>/{KAGGLE_VAL_SOLUTION} and {KAGGLE_SYNSETS}; or the archives "
            f"<root>/{TRAIN_ARCHIVE} and {VAL_ARCHIVE} (with the devkit), read in place. "
            "ImageNet needs a manual download: register at https://image-net.org, download "
            f"{TRAIN_ARCHIVE}, {VAL_ARCHIVE} and {DEVKIT.name}"
        )

    def _split_folder(self) -> Path:
        """The split's extracted folder, else Kaggle's, else its archive (this order:
        an extraction wins over the archive it came from); sets :attr:`source`."""
        name = "train" if self.train else "val"
        candidates = (("folders", self.root / name),
                      ("kaggle", self.root / KAGGLE_FOLDER / name))  # fmt: skip
        for source, folder in candidates:
            if folder.is_dir():
                self.source = source
                return folder
        archive = self.root / (TRAIN_ARCHIVE if self.train else VAL_ARCHIVE)
        if archive.is_file():
            self.source = "archive"
            return archive
        raise self._not_found(f"no folder {shown_path(candidates[0][1])} or "
                              f"{shown_path(candidates[1][1])}, nor an "
                              f"archive {shown_path(archive)}")  # fmt: skip

    # -- the listing ----------------------------------------------------------------------
    def _load(self) -> FileListing:
        if self.source == "archive":
            return self._load_archive()
        kaggle = self.source == "kaggle"
        flat = not self.train and not class_folder_names(self.folder)
        devkit = read_imagenet_devkit(self.root, ground_truth=flat and not kaggle)
        synsets = None
        if kaggle and (self.root / KAGGLE_SYNSETS).is_file():
            synsets = read_synset_mapping(self.root / KAGGLE_SYNSETS)
        if devkit is not None:
            self.class_names = tuple(devkit.words[w] for w in devkit.wnids)
        elif synsets is not None:
            self.class_names = tuple(synsets[w] for w in sorted(synsets))
        reference = self._reference(devkit, synsets)
        if flat:
            return self._kaggle_validation(reference) if kaggle else self._flat_validation(devkit)
        listing = super()._load()
        self._check_classes(listing, reference, "class folders")
        loose = self._loose_images(self.folder)
        if loose:
            raise DataFormatError(
                f"{self.folder}: holds class folders and {len(loose)} loose image(s) such as "
                f"{loose[0]}: an interrupted sorting of the validation images (valprep.sh)?"
            )
        return listing

    def _reference(self, devkit: ImageNetDevkit | None,
                   synsets: dict[str, str] | None) -> Reference | None:  # fmt: skip
        """The WNIDs the classes must be, and what says so: the devkit's, else those of
        Kaggle's synset mapping; None when neither is there."""
        if devkit is not None and synsets is not None and set(synsets) != set(devkit.wnids):
            raise DataFormatError(f"{self.root / KAGGLE_SYNSETS}: its WNIDs are not the "
                                  "devkit's")  # fmt: skip
        if devkit is not None:
            return devkit.wnids, "the devkit's 1,000 WNIDs"
        if synsets is not None:
            return tuple(sorted(synsets)), f"the 1,000 WNIDs of {KAGGLE_SYNSETS}"
        return None

    def _check_classes(self, listing: FileListing, reference: Reference | None,
                       what: str) -> None:  # fmt: skip
        if reference is not None and listing.classes != reference[0]:
            wnids = reference[0]
            missing = sorted(set(wnids) - set(listing.classes))
            raise DataFormatError(
                f"{self.folder}: the {what} are not {reference[1]} (missing {missing[:5]}, "
                f"unexpected {sorted(set(listing.classes) - set(wnids))[:5]})"
            )
        counts = np.bincount(listing.labels, minlength=len(listing.classes))
        if (counts == 0).any():
            absent = [listing.classes[i] for i in np.flatnonzero(counts == 0)[:5]]
            raise DataFormatError(f"{self.folder}: no image of class(es) {absent}: an "
                                  "incomplete extraction?")  # fmt: skip

    def _loose_images(self, folder: Path) -> list[str]:
        ends = tuple(e.lower() for e in self.extensions)
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries
                          if e.name.lower().endswith(ends) and e.is_file())  # fmt: skip

    def _flat_labels(self, names: Sequence[str], devkit: ImageNetDevkit,
                     where: Path) -> tuple[list[str], np.ndarray]:  # fmt: skip
        """The official validation images ``names`` (``ILSVRC2012_val_<n>.JPEG`` in
        ``where``) in number order, and their labels: line ``n`` of the devkit's ground
        truth."""
        numbers = []
        for name in names:
            match = VAL_NAME.fullmatch(name)
            if match is None:
                raise DataFormatError(f"{where / name}: not an official validation file "
                                      "name (ILSVRC2012_val_<8 digits>.JPEG)")  # fmt: skip
            numbers.append(int(match.group(1)))
        expected = len(devkit.val_ids)
        if sorted(numbers) != list(range(1, expected + 1)):
            absent = sorted(set(range(1, expected + 1)) - set(numbers))
            raise DataFormatError(
                f"{where}: {len(names)} validation images, the devkit's ground truth "
                f"labels {expected} (ILSVRC2012_val_00000001 ...); "
                + (
                    f"missing number(s) {absent[:5]}"
                    if absent
                    else f"numbers beyond {expected} or repeated"
                )
            )
        index = {wnid: i for i, wnid in enumerate(devkit.wnids)}
        order = np.argsort(np.asarray(numbers, np.int64), kind="stable")
        labels = np.asarray([index[devkit.wnid_by_id[devkit.val_ids[n - 1]]]
                             for n in sorted(numbers)], np.int64)  # fmt: skip
        return [names[i] for i in order], labels

    def _flat_validation(self, devkit: ImageNetDevkit | None) -> FileListing:
        """The official validation folder: ``ILSVRC2012_val_<n>.JPEG`` labelled by line
        ``n`` of the devkit's ground truth."""
        if devkit is None:
            raise self._not_found(
                f"{shown_path(self.folder)} holds no class folder: its flat official layout "
                f"needs the devkit's labels ({DEVKIT.name} or {DEVKIT_FOLDER}/ in {self.root}), "
                "or sort the images into class folders (valprep.sh)"
            )
        names, labels = self._flat_labels(self._loose_images(self.folder), devkit, self.folder)
        return _names_listing(devkit.wnids, names, labels,
                              {"": self.folder.stat().st_mtime_ns})  # fmt: skip

    def _kaggle_validation(self, reference: Reference | None) -> FileListing:
        """Kaggle's flat validation folder: ``<ImageId>.JPEG`` labelled by the WNID of
        its row in ``LOC_val_solution.csv``."""
        solution = self.root / KAGGLE_VAL_SOLUTION
        if not solution.is_file() or reference is None:
            raise self._not_found(
                f"{shown_path(self.folder)} holds no class folder: Kaggle's flat validation "
                f"layout needs its labels ({solution}) and the class list "
                f"({self.root / KAGGLE_SYNSETS} or the devkit, {DEVKIT.name} or {DEVKIT_FOLDER}/ "
                f"in {self.root})"
            )
        wnids = reference[0]
        wnid_of = read_val_solution(solution, wnids)
        names = self._loose_images(self.folder)
        ids = [name.rsplit(".", 1)[0] for name in names]
        unlabelled = [name for name, image in zip(names, ids) if image not in wnid_of]
        if unlabelled:
            raise DataFormatError(f"{self.folder / unlabelled[0]}: has no row in {solution} "
                                  f"({len(unlabelled)} image(s) have none)")  # fmt: skip
        if len(set(ids)) != len(wnid_of):
            absent = sorted(set(wnid_of) - set(ids))
            raise DataFormatError(
                f"{solution} labels {len(wnid_of)} images, {self.folder} holds {len(names)}"
                + (f"; missing {absent[:3]}: an incomplete extraction?" if absent else "")
            )
        index = {wnid: i for i, wnid in enumerate(wnids)}
        labels = np.asarray([index[wnid_of[image]] for image in ids], np.int64)
        return _names_listing(wnids, names, labels, {"": self.folder.stat().st_mtime_ns})

    def _load_archive(self) -> FileListing:
        """The split's archive, read in place: the training archive's 1,000 inner
        ``<wnid>.tar``, or the validation archive's flat images labelled by the devkit."""
        nested = bool(self.train)
        archive = self.folder
        devkit = read_imagenet_devkit(self.root, ground_truth=not nested)
        if devkit is not None:
            self.class_names = tuple(devkit.words[w] for w in devkit.wnids)
        elif not nested:
            raise self._not_found(
                f"{shown_path(archive)} is labelled by the devkit: put {DEVKIT.name} "
                f"(or {DEVKIT_FOLDER}/) in {self.root}"
            )
        contents = archive_contents(archive, nested, self.extensions, self.cache_dir)
        self._reader = RangeReader(archive, contents.identity)
        if nested:
            inner = [name.removesuffix(".tar") for name in contents.group_names]
            wnids = tuple(sorted(inner))
            if len(wnids) != self.num_classes:
                raise DataFormatError(f"{archive}: expected {self.num_classes} inner <wnid>.tar, "
                                      f"found {len(wnids)}")  # fmt: skip
            index = {wnid: i for i, wnid in enumerate(wnids)}
            lookup = np.asarray([index[name] for name in inner], np.int64)
            listing = ArchiveListing(wnids, contents.blob, contents.offsets,
                                     lookup[contents.groups], {}, contents.data_offsets,
                                     contents.sizes, contents.identity)  # fmt: skip
            self._check_classes(listing, self._reference(devkit, None), "inner tars")
            return listing
        assert devkit is not None
        members = contents.names()
        names, labels = self._flat_labels(members, devkit, archive)
        position = {name: i for i, name in enumerate(members)}
        take = np.asarray([position[name] for name in names], np.int64)
        flat = _names_listing(devkit.wnids, names, labels, {})
        return ArchiveListing(flat.classes, flat.blob, flat.offsets, flat.labels, {},
                              contents.data_offsets[take], contents.sizes[take],
                              contents.identity)  # fmt: skip

    # -- samples --------------------------------------------------------------------------
    def _open_image(self, index: int) -> BinaryIO:
        listing = self._listing
        if isinstance(listing, ArchiveListing) and self._reader is not None:
            offset, size = int(listing.data_offsets[index]), int(listing.sizes[index])
            return io.BytesIO(self._reader.read(offset, size))
        return super()._open_image(index)
