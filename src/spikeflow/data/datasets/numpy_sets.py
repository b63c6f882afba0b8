"""Datasets released as NumPy files: DVS-Lip (.npy), ES-ImageNet (.npz), HARDVS (.npz)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

from spikeflow.data.datasets._common import (
    Archive,
    check_class_folders,
    files_not_found,
    listing_text,
    prepare_dataset_root,
    shown_path,
)
from spikeflow.data.datasets._names import DVSLIP_CLASSES, ES_IMAGENET_CLASSES, HARDVS_CLASSES
from spikeflow.data.datasets._split import NamedSplitDataset, split_from_train
from spikeflow.data.datasets.base import DatasetNotFoundError, NeuromorphicDataset
from spikeflow.data.events import EventRecording
from spikeflow.data.io.numpy_layouts import read_dvs_lip, read_es_imagenet, read_hardvs
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["HARDVS", "DVSLip", "ESImageNet"]


class DVSLip(NeuromorphicDataset):
    """DVS-Lip (Tan et al., 2022): 100 spoken words, lips recorded by a DAVIS346 and
    cropped to 128x128, 2 polarities; 14,896 training and 4,975 test samples; structured
    ``.npy`` files read by :func:`~spikeflow.data.io.read_dvs_lip`.

    Layout: ``root/DVS-Lip/{train,test}/<word>/<n>.npy`` (the official ``DVS-Lip.zip``
    extracted in ``root``; it is on Google Drive, which needs a manual download; MD5 of
    Tonic's ``DVSLip``). Labels are the indices of the 100 word folders in sorted order,
    as SpikingJelly's folder dataset numbers them: :attr:`classes` (``"accused"`` is label
    0); other folder names are refused.
    Other arguments: :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (128, 128, 2)
    num_classes = 100
    #: The 100 words in sorted order (index = label), the release's folder names.
    classes: ClassVar[tuple[str, ...]] = DVSLIP_CLASSES
    homepage = "https://sites.google.com/view/event-based-lipreading"
    archive = Archive("DVS-Lip.zip", "2dcb959255122d4cdeb6094ca282494b")
    layout = "<root>/DVS-Lip/{train,test}/<word>/<n>.npy (100 word folders)"

    def _find_samples(self) -> list[tuple[Path, int]]:
        folder = self.root / "DVS-Lip" / self.split
        prepare_dataset_root(self, "DVS-Lip", folder, [self.archive], download=False)
        classes = check_class_folders(folder, self.classes, "DVS-Lip word")
        samples = [
            (p, k) for k, c in enumerate(classes) for p in sorted((folder / c).glob("*.npy"))
        ]
        if not samples:
            raise files_not_found(
                self, "DVS-Lip", f"no .npy files in {shown_path(folder)}", [self.archive]
            )
        return samples

    def _read(self, path: Path) -> EventRecording:
        return read_dvs_lip(path)


_ES_CLASS = re.compile(r"class(\d+)")


class ESImageNet(NeuromorphicDataset):
    """ES-ImageNet (Lin et al., 2021): ImageNet (1,000 classes) converted to 8 steps of
    synthetic events in a 256x256 frame, 2 polarities (coordinates as stored, as
    SpikingJelly reads them; the official loader also centres each sample); about 1.26
    million training and 50,000 validation samples; ``.npz`` files read by
    :func:`~spikeflow.data.io.read_es_imagenet` (``t`` is the step 1-8, so
    ``duration=1`` gives one frame per step, ``[8, 2, 256, 256]``; ``frames_number=8,
    split_by="time"`` would not: its bins are ``floor((8 - 1) / 8) = 0`` steps wide).

    Layout: ``root/ES-imagenet-0.18/train/class<k>/<name>.npz`` (label ``k``),
    ``root/ES-imagenet-0.18/val/<name>.npz`` and ``root/ES-imagenet-0.18/vallabel.txt``
    (lines ``<name> <k> ...``), ``k`` in 0-999 (:attr:`classes` names them ``class<k>``;
    ES-ImageNet publishes no other names). ``train=False`` is the validation set. The release is a
    multi-part RAR archive on Tsinghua Cloud (the parts and MD5s SpikingJelly lists),
    which spikeflow cannot extract: download and extract it yourself (unrar or 7-Zip).
    Other arguments: :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (256, 256, 2)
    num_classes = 1000
    #: ``"class0"`` ... ``"class999"`` (index = label), the release's training folders;
    #: ES-ImageNet publishes class numbers, not names.
    classes: ClassVar[tuple[str, ...]] = ES_IMAGENET_CLASSES
    homepage = "https://cloud.tsinghua.edu.cn/d/94873ab4ec2a4eb497b3/"
    layout = (
        "<root>/ES-imagenet-0.18/{train/class<k>/<name>.npz, val/<name>.npz, vallabel.txt} "
        "(extract ES-imagenet-0.18.part01.rar ... with unrar or 7-Zip)"
    )

    def _find_samples(self) -> list[tuple[Path, int]]:
        base = self.root / "ES-imagenet-0.18"
        folder = base / ("train" if self.train else "val")
        prepare_dataset_root(self, "ES-ImageNet", folder, [], download=False)
        samples: list[tuple[Path, int]] = []
        if self.train:
            for d in folder.iterdir():
                m = _ES_CLASS.fullmatch(d.name)
                if d.is_dir() and m is not None:
                    if int(m.group(1)) >= self.num_classes:
                        raise DataFormatError(
                            f"{d}: class folder number {m.group(1)} is outside 0-"
                            f"{self.num_classes - 1} (expected class0 ... class999)"
                        )
                    samples += [(p, int(m.group(1))) for p in d.glob("*.npz")]
            samples.sort(key=lambda s: (s[1], s[0].name))
        else:
            labels = base / "vallabel.txt"
            if not labels.is_file():
                raise DatasetNotFoundError(
                    f"ES-ImageNet: {shown_path(labels)} is missing. Expected layout: "
                    f"{self.layout}; see {self.homepage}"
                )
            for lineno, line in enumerate(listing_text(labels).splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 2 or not parts[1].isdigit():
                    raise DataFormatError(
                        f"{labels}: line {lineno}: expected '<name> <label>', found {line!r}"
                    )
                if int(parts[1]) >= self.num_classes:
                    raise DataFormatError(
                        f"{labels}: line {lineno}: label {parts[1]} is outside 0-"
                        f"{self.num_classes - 1}"
                    )
                samples.append((folder / parts[0], int(parts[1])))
        if not samples:
            raise files_not_found(self, "ES-ImageNet", f"no samples in {shown_path(folder)}", [])
        return samples

    def _read(self, path: Path) -> EventRecording:
        return read_es_imagenet(path, self.sensor_size[:2])


class HARDVS(NamedSplitDataset):
    """HARDVS (Wang et al., 2024): 300 human actions recorded by a DAVIS346 (346x260, 2
    polarities); ``.npz`` files of ``t, x, y, p`` (the layout SpikingJelly reads) read by
    :func:`~spikeflow.data.io.read_hardvs`; the official train/val/test lists.

    Layout: ``root/action_<nnn>/<sample>.npz`` and ``root/{train,val,test}_label.txt``
    whose lines start with ``action_<nnn>/<sample>``; label ``nnn - 1`` (0-299).
    ``split`` is ``"train"``, ``"val"`` or ``"test"`` (``train=True``/``False`` is also
    accepted, as ``"train"``/``"test"``). The files are shared through cloud drives
    linked from the project page, so the download is manual. ``MINI_HARDVS_files.zip``
    put in ``root`` is MD5-checked (SpikingJelly's checksum) and extracted as
    SpikingJelly does: it holds ``MINI_HARDVS_files/action_<nnn>.zip``, each extracted
    into ``root/action_<nnn>/``. The three ``*_label.txt`` files are separate downloads
    (not in the zip). Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (346, 260, 2)
    num_classes = 300
    #: ``"action_001"`` ... ``"action_300"`` (index = label = ``nnn - 1``), the
    #: release's class folders; HARDVS publishes class numbers, not names.
    classes: ClassVar[tuple[str, ...]] = HARDVS_CLASSES
    homepage = "https://github.com/Event-AHU/HARDVS"
    #: Holds ``MINI_HARDVS_files/action_<nnn>.zip``, each of flat ``<sample>.npz``.
    archive = Archive(
        "MINI_HARDVS_files.zip", "9c4cc0d9ba043faa17f6f1a9e9aff982", nested=True,
        inner_folders=True,
    )  # fmt: skip
    layout = (
        "<root>/{action_<nnn>/<sample>.npz (from MINI_HARDVS_files.zip), train_label.txt, "
        "val_label.txt, test_label.txt (the label lists are separate downloads, not in "
        "the zip)}"
    )
    _line = re.compile(r"action_(\d{3})/(\S+)")
    #: The official split lists, ``<split>_label.txt``.
    splits = ("train", "val", "test")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *args: Any,
        train: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if "download" in kwargs:  # NamedSplitDataset's argument, not HARDVS's
            raise ConfigurationError(
                f"HARDVS takes no download argument: its files need a manual download from "
                f"{self.homepage}. Expected layout: {self.layout}"
            )
        super().__init__(root, split_from_train(split, train), *args, **kwargs)

    def _find_samples(self) -> list[tuple[Path, int]]:
        def extracted() -> bool:
            return self.root.is_dir() and any(self.root.glob("action_*"))

        prepare_dataset_root(
            self,
            "HARDVS",
            self.root / "action_<nnn>",
            [self.archive],
            download=False,
            check=extracted,
        )
        listing = self.root / f"{self._split}_label.txt"
        if not listing.is_file():
            raise DatasetNotFoundError(
                f"HARDVS: {shown_path(listing)} is missing. The split lists train_label.txt, "
                "val_label.txt and test_label.txt are separate downloads (they are not in "
                f"MINI_HARDVS_files.zip): download them from the links on {self.homepage} "
                f"and put them in {self.root}. Expected layout: {self.layout}"
            )
        samples = []
        for lineno, line in enumerate(listing_text(listing).splitlines(), 1):
            if not line.strip():
                continue
            m = self._line.match(line.split()[0])
            if m is None or not 1 <= int(m.group(1)) <= self.num_classes:
                raise DataFormatError(
                    f"{listing}: line {lineno}: expected "
                    f"'action_<001-300>/<sample>', found {line!r}"
                )
            path = self.root / f"action_{m.group(1)}" / f"{m.group(2)}.npz"
            samples.append((path, int(m.group(1)) - 1))
        if not samples:
            raise DatasetNotFoundError(f"HARDVS: {shown_path(listing)} lists no sample")
        return samples

    def _read(self, path: Path) -> EventRecording:
        return read_hardvs(path)
