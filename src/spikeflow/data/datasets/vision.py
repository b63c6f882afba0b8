"""N-Caltech101 (ATIS ``.bin``) and CIFAR10-DVS (jAER AEDAT 2.0): converted image datasets."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow._checks import check_flag
from spikeflow.data.datasets._common import (
    Archive,
    check_class_folders,
    files_not_found,
    prepare_dataset_root,
    shown_path,
    subset_by_ratio,
)
from spikeflow.data.datasets._names import NCALTECH101_CLASSES
from spikeflow.data.datasets._split import RatioSplitDataset
from spikeflow.data.datasets.base import NeuromorphicDataset, check_train
from spikeflow.data.events import EventRecording, make_events
from spikeflow.data.io.aedat2 import read_aedat2
from spikeflow.data.io.atis_bin import read_atis_bin
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["CIFAR10DVS", "NCaltech101"]


class NCaltech101(RatioSplitDataset):
    """N-Caltech101 (Orchard et al., 2015): Caltech101 images recorded by an ATIS on a
    moving platform; 101 classes (100 objects and ``BACKGROUND_Google``), 8,709 samples,
    crops of at most 240x180 pixels, 2 polarities.

    Layout: ``root/Caltech101/<class>/image_<nnnn>.bin`` (the official ``Caltech101.zip``
    extracted in ``root``). Labels are the indices of the class folders in sorted
    (case-sensitive) order, as SpikingJelly's folder dataset numbers them: :attr:`classes`
    (``"BACKGROUND_Google"`` is label 0); other folder names are refused. There is no
    official split: ``train=None`` (default) yields all samples, ``train=True``/``False``
    the first ``ceil(0.9 n)`` / the rest of each class's sorted files (``train_ratio``).
    ``download=True`` fetches ``Caltech101.zip`` from Mendeley Data (the URL and MD5 of
    Tonic's ``NCALTECH101``; the same MD5 SpikingJelly lists for that file). Events
    keep the sensor's coordinates (not shifted to 0); ``sensor_size`` is (240, 180, 2).
    Other arguments: :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (240, 180, 2)
    num_classes = 101
    #: The 101 class folder names in sorted order (index = label); the folders found
    #: under ``root`` must be exactly these.
    classes: ClassVar[tuple[str, ...]] = NCALTECH101_CLASSES
    homepage = "https://www.garrickorchard.com/datasets/n-caltech101"
    downloadable: ClassVar[bool] = True
    archive = Archive(
        "Caltech101.zip",
        "66201824eabb0239c7ab992480b50ba3",
        "https://data.mendeley.com/public-files/datasets/cy6cvx3ryv/files/"
        "36b5c52a-b49d-4853-addb-a836a8883e49/file_downloaded",
    )
    layout = "<root>/Caltech101/<class>/image_<nnnn>.bin (101 class folders)"

    def _all_samples(self) -> list[tuple[Path, int]]:
        folder = self.root / "Caltech101"
        prepare_dataset_root(self, "N-Caltech101", folder, [self.archive], download=self.download)
        classes = check_class_folders(folder, self.classes, "N-Caltech101 class")
        samples = [
            (p, label)
            for label, name in enumerate(classes)
            for p in sorted((folder / name).glob("*.bin"))
            if p.is_file()
        ]
        if not samples:
            raise files_not_found(
                self, "N-Caltech101", f"no samples in {shown_path(folder)}", [self.archive]
            )
        return samples

    def _read(self, path: Path) -> EventRecording:
        return read_atis_bin(path, self.sensor_size[:2])


CIFAR10DVS_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# figshare (the authors' release, Li et al. 2017), one zip per class; URLs and MD5s as
# listed by SpikingJelly's CIFAR10DVS.resource_url_md5.
_CIFAR10DVS_FILES = {
    "airplane": ("7712788", "0afd5c4bf9ae06af762a77b180354fdd"),
    "automobile": ("7712791", "8438dfeba3bc970c94962d995b1b9bdd"),
    "bird": ("7712794", "a9c207c91c55b9dc2002dc21c684d785"),
    "cat": ("7712812", "52c63c677c2b15fa5146a8daf4d56687"),
    "deer": ("7712815", "b6bf21f6c04d21ba4e23fc3e36c8a4a3"),
    "dog": ("7712818", "f379ebdf6703d16e0a690782e62639c3"),
    "frog": ("7712842", "cad6ed91214b1c7388a5f6ee56d08803"),
    "horse": ("7712851", "e7cbbf77bec584ffbf913f00e682782a"),
    "ship": ("7712836", "41c7bd7d6b251be82557c6cce9a7d5c9"),
    "truck": ("7712839", "89f3922fd147d9aeff89e76a2b0b70a7"),
}
_CIFAR_NAME = re.compile(r"cifar10_([a-z]+)_(\d+)\.aedat")


class CIFAR10DVS(NeuromorphicDataset):
    """CIFAR10-DVS (Li et al., 2017): 10,000 CIFAR-10 images (1,000 per class) recorded
    by a DVS128 from a moving monitor; jAER AEDAT 2.0 files, 128x128, 2 polarities.

    Layout: ``root/<class>/cifar10_<class>_<i>.aedat`` with the ten class names of
    :data:`CIFAR10DVS_CLASSES` (labels 0-9 in that order) and ``i`` = 0-999, i.e. the
    ten official per-class zips (``airplane.zip``, ...) extracted in ``root``;
    ``download=True`` fetches the missing ones from figshare (MD5-checked, resumable).

    Splits (there is no official one; ``split_rule`` picks one of the two in use):

    * ``"90/10"`` (default): SpikingJelly's ``split_to_train_test_set(0.9, ...,
      random_split=False)``: each class's files in lexicographic name order (as its
      folder dataset lists them: ``..._0``, ``..._1``, ``..._10``, ``..._100``, ...); the
      first ``ceil(0.9 n)`` (900) are the training split, the rest (100) the test split.
    * ``"first100"``: files with index ``i < 100`` are the test split, the rest the
      training split (the split of SpikingJelly's ``CIFAR10DVSTEBNSplit``).

    ``train=None`` yields all 10,000. ``orientation="spikingjelly"`` (default) maps the
    decoded events as SpikingJelly does, giving upright images: ``x' = 127 - y``,
    ``y' = x`` (from :func:`~spikeflow.data.io.read_aedat2`'s ``x, y``; its ``p``, 1 for
    ON, is SpikingJelly's ``1 - (addr & 1)`` already); ``"sensor"`` keeps the reader's
    events. Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (128, 128, 2)
    classes: ClassVar[tuple[str, ...]] = CIFAR10DVS_CLASSES
    homepage = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671"
    downloadable: ClassVar[bool] = True
    archives: ClassVar[dict[str, Archive]] = {
        name: Archive(f"{name}.zip", md5, f"https://ndownloader.figshare.com/files/{fid}")
        for name, (fid, md5) in _CIFAR10DVS_FILES.items()
    }
    layout = "<root>/<class>/cifar10_<class>_<i>.aedat (10 classes, i = 0-999)"
    #: 2: the reader's DVS128 polarity is jAER's (address bit 0 set is OFF); version 1
    #: had it inverted, so "sensor" samples cached then differ.
    decoder_version: ClassVar[int] = 2
    sample_options: ClassVar[tuple[str, ...]] = ("orientation", "decoder_version")

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool | None = True,
        *args: Any,
        split_rule: str = "90/10",
        orientation: str = "spikingjelly",
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        train = check_train("CIFAR10DVS", train, allow_all=True)
        if split_rule not in ("90/10", "first100"):
            raise ConfigurationError(
                f"split_rule must be '90/10' or 'first100'; got {split_rule!r}"
            )
        if orientation not in ("spikingjelly", "sensor"):
            raise ConfigurationError(
                f"orientation must be 'spikingjelly' or 'sensor'; got {orientation!r}"
            )
        self.split_rule = split_rule
        self.orientation = orientation
        self.download = check_flag("CIFAR10DVS", "download", download)
        self._subset = train
        super().__init__(root, bool(train), *args, **kwargs)

    @property
    def split(self) -> str:
        """``"train"``, ``"test"`` or ``"all"``, with the split rule."""
        if self._subset is None:
            return "all"
        return f"{'train' if self._subset else 'test'}-{self.split_rule.replace('/', '-')}"

    def _find_samples(self) -> list[tuple[Path, int]]:
        for name in self.classes:
            prepare_dataset_root(
                self, "CIFAR10-DVS", self.root / name, [self.archives[name]], download=self.download
            )
        per_class: list[list[tuple[Path, int]]] = []
        for label, name in enumerate(self.classes):
            files = sorted((self.root / name).glob("*.aedat"), key=lambda p: p.name)
            for p in files:
                m = _CIFAR_NAME.fullmatch(p.name)
                if m is None or m.group(1) != name:
                    raise DataFormatError(
                        f"{p}: not a CIFAR10-DVS file name (expected cifar10_{name}_<i>.aedat)"
                    )
            per_class.append([(p, label) for p in files])
        if not any(per_class):
            problem = f"no .aedat files under {shown_path(self.root)}"
            raise files_not_found(self, "CIFAR10-DVS", problem, list(self.archives.values()))
        if self._subset is None:
            return [s for group in per_class for s in group]
        if self.split_rule == "90/10":
            return subset_by_ratio([s for g in per_class for s in g], self._subset, 0.9)

        def is_test(p: Path) -> bool:
            m = _CIFAR_NAME.fullmatch(p.name)
            assert m is not None
            return int(m.group(2)) < 100

        return [s for g in per_class for s in g if is_test(s[0]) != self._subset]

    def _read(self, path: Path) -> EventRecording:
        rec = read_aedat2(path, layout="dvs128")
        if self.orientation == "sensor":
            return rec
        ev = rec.events
        x = 127 - ev["y"].astype(np.int64)
        events = make_events(ev["t"], x, ev["x"], ev["p"])
        return EventRecording(events, rec.sensor_size, rec.source)
