"""ASL-DVS (.mat), N-CARS (Prophesee .dat) and POKER-DVS (Tonic's .npy release)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from spikeflow.data.datasets._common import (
    Archive,
    class_folder_samples,
    files_not_found,
    prepare_dataset_root,
    shown_path,
)
from spikeflow.data.datasets._split import RatioSplitDataset
from spikeflow.data.datasets.base import NeuromorphicDataset
from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import sort_by_time
from spikeflow.data.io.matlab import read_asl_dvs
from spikeflow.data.io.numpy_layouts import load_npy
from spikeflow.data.io.prophesee import read_dat

__all__ = ["ASLDVS", "NCARS", "POKERDVS", "read_pokerdvs"]


class ASLDVS(RatioSplitDataset):
    """ASL-DVS (Bi et al., 2019): 24 letters of American Sign Language (a-y without j),
    4,200 samples each (100,800), DAVIS240c, 240x180, 2 polarities; one ``.mat`` file
    per sample, read by :func:`~spikeflow.data.io.read_asl_dvs` (``y`` as stored).

    Layout: ``root/<letter>/<letter>_<nnnn>.mat`` (the per-letter zips inside the
    official ``ICCV2019_DVS_dataset.zip`` extracted in ``root``; spikeflow does that
    for an archive put in ``root``). Labels 0-23 follow :attr:`classes`. The Dropbox
    link of the release has expired and its repacked zip has no stable checksum (as
    SpikingJelly notes), so the download is manual and unchecked. No official split:
    ``train=None`` (default) all samples, else the per-class ``train_ratio`` (0.8) split.
    Other arguments: :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (240, 180, 2)
    classes: ClassVar[tuple[str, ...]] = tuple("abcdefghiklmnopqrstuvwxy")
    homepage = "https://github.com/PIX2NVS/NVS2Graph"
    archive = Archive("ICCV2019_DVS_dataset.zip", None, nested=True)
    default_train_ratio = 0.8
    layout = "<root>/<letter>/<letter>_<nnnn>.mat (24 letter folders a-y without j)"

    def _all_samples(self) -> list[tuple[Path, int]]:
        prepare_dataset_root(self, "ASL-DVS", self.root / "a", [self.archive], download=False)
        samples = class_folder_samples(self.root, self.classes, "*.mat")
        if not samples:
            problem = f"no .mat files under {shown_path(self.root)}"
            raise files_not_found(self, "ASL-DVS", problem, [self.archive])
        return samples

    def _read(self, path: Path) -> EventRecording:
        return read_asl_dvs(path, self.sensor_size[:2])


class NCARS(NeuromorphicDataset):
    """N-CARS (Sironi et al., 2018): 100 ms ATIS crops of cars and background, at most
    120x100 pixels, 2 polarities; 15,422 training and 8,607 test samples; Prophesee
    ``.dat`` files read by :func:`~spikeflow.data.io.read_dat`.

    Layout: ``root/n-cars_train/{background,cars}/obj_<n>_td.dat`` and
    ``root/n-cars_test/...`` (labels: background 0, cars 1). Prophesee hands the files
    out after a form on its web page, so the download is manual. Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (120, 100, 2)
    classes: ClassVar[tuple[str, ...]] = ("background", "cars")
    homepage = "https://www.prophesee.ai/2018/03/13/dataset-n-cars/"
    layout = "<root>/n-cars_{train,test}/{background,cars}/obj_<n>_td.dat"

    def _find_samples(self) -> list[tuple[Path, int]]:
        folder = self.root / f"n-cars_{self.split}"
        prepare_dataset_root(self, "N-CARS", folder, [], download=False)
        samples = class_folder_samples(folder, self.classes, "*.dat")
        if not samples:
            raise files_not_found(self, "N-CARS", f"no .dat files in {shown_path(folder)}", [])
        return samples

    def _read(self, path: Path) -> EventRecording:
        return read_dat(path, self.sensor_size[:2])


def read_pokerdvs(
    path: str | os.PathLike, sensor_size: tuple[int, int] = (35, 35)
) -> EventRecording:
    """Read a POKER-DVS sample of Tonic's release: a ``.npy`` integer array ``(N, 4)`` of
    ``(t [µs], x, y, p)`` rows, ``p`` 0/1 (or -1/1). Events are sorted by time (stable).

    Raises:
        DataFormatError: not a valid ``.npy``, a shape other than ``(N, 4)``, non-integer
            values, a negative time, a polarity outside {-1, 0, 1} or coordinates
            outside ``sensor_size``.
    """
    arr, start = load_npy(path)
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.dtype.kind not in "iu":
        raise format_error(
            path, 0, f"expected an (N, 4) integer array, got {arr.dtype} {arr.shape}"
        )
    t, x, y, p = (arr[:, k].astype(np.int64) for k in range(4))
    width, height = sensor_size
    bad = np.flatnonzero(
        (t < 0)
        | (x < 0)
        | (y < 0)
        | (x >= width)
        | (y >= height)
        | ((p != 0) & (p != 1) & (p != -1))
    )
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path,
            start + i * 4 * arr.dtype.itemsize,
            f"event {i} (t={t[i]}, x={x[i]}, y={y[i]}, "
            f"p={p[i]}) has a negative time, a polarity outside -1/0/1 or lies outside the "
            f"{width}x{height} sensor",
        )
    events = sort_by_time(make_events(t, x, y, (p > 0).astype(np.int8)))
    return EventRecording(events, (width, height, 2), str(path))


class POKERDVS(NeuromorphicDataset):
    """POKER-DVS (Serrano-Gotarredona & Linares-Barranco, 2015): the four card suits
    flipped in front of a DVS, 35x35 crops, 2 polarities, in Tonic's ``.npy`` release
    (``pips_train.tar.gz`` / ``pips_test.tar.gz``, MD5s of Tonic's ``POKERDVS``).

    Layout: ``root/pips_train/<dir>/*.npy`` and ``root/pips_test/<dir>/*.npy`` where each
    ``<dir>`` name ends with its suit code: ``cl`` (clubs, 0), ``he`` (hearts, 1), ``di``
    (diamonds, 2), ``sp`` (spades, 3), Tonic's numbering. Tonic no longer names a public
    URL for the archives, so the download is manual. Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (35, 35, 2)
    classes: ClassVar[tuple[str, ...]] = ("cl", "he", "di", "sp")
    homepage = "http://www2.imse-cnm.csic.es/caviar/POKERDVS.html"
    archives: ClassVar[dict[str, Archive]] = {
        "train": Archive("pips_train.tar.gz", "412bcfb96826e4fcb290558e8c150aae"),
        "test": Archive("pips_test.tar.gz", "eef2bf7d0d3defae89a6fa98b07c17af"),
    }
    layout = "<root>/pips_{train,test}/<...suit code>/*.npy"

    def _find_samples(self) -> list[tuple[Path, int]]:
        folder = self.root / f"pips_{self.split}"
        prepare_dataset_root(self, "POKER-DVS", folder, [self.archives[self.split]], download=False)
        samples = []
        for d in sorted(p for p in folder.iterdir() if p.is_dir()):
            code = d.name[-2:]
            if code not in self.classes:
                raise format_error(
                    d, None, f"folder name does not end with a suit code {self.classes}"
                )
            samples += [(f, self.classes.index(code)) for f in sorted(d.glob("*.npy"))]
        if not samples:
            archive = self.archives[self.split]
            raise files_not_found(
                self, "POKER-DVS", f"no .npy files in {shown_path(folder)}", [archive]
            )
        return sorted(samples, key=lambda s: (s[1], s[0].parent.name, s[0].name))

    def _read(self, path: Path) -> EventRecording:
        return read_pokerdvs(path, self.sensor_size[:2])
