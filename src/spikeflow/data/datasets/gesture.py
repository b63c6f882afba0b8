"""DVS128 Gesture (AEDAT 3.1 recordings cut by label files) and NavGesture (ATIS td .dat)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow._checks import check_flag, check_int
from spikeflow.data.cache import parallel_map
from spikeflow.data.datasets._common import (
    Archive,
    files_not_found,
    listed_names,
    prepare_dataset_root,
    shown_path,
)
from spikeflow.data.datasets._cut import CutRecordingsDataset
from spikeflow.data.datasets._split import RatioSplitDataset
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import read_bytes
from spikeflow.data.io.aedat31 import read_aedat31, read_gesture_labels, split_by_labels
from spikeflow.data.io.prophesee import parse_prophesee_header
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["DVS128Gesture", "NAVGesture", "read_navgesture_dat"]

#: Bump when the cut samples' content changes, so old cut caches miss.
CUT_VERSION = 1


def _cut_recording(dataset: DVS128Gesture, recording: int) -> int:
    return dataset._cut(recording)


class DVS128Gesture(CutRecordingsDataset):
    """DVS128 Gesture (Amir et al., 2017): 11 hand and arm gestures by 29 subjects under
    3 lighting conditions, DVS128 (128x128, 2 polarities); 122 recordings cut into
    1,176 training and 288 test samples (the counts SpikingJelly reports for this cut).

    Layout: ``root/DvsGesture/`` holding ``userNN_<lighting>.aedat`` (AEDAT 3.1),
    ``userNN_<lighting>_labels.csv``, ``trials_to_train.txt`` and ``trials_to_test.txt``
    (the official ``DvsGesture.tar.gz`` extracted in ``root``; its host, IBM's Box,
    needs a manual download). The split lists name the recordings of each split.

    Each row ``class,startTime_usec,endTime_usec`` of a recording's label file is one
    sample: the events with ``start <= t < end`` (:func:`~spikeflow.data.io.split_by_labels`),
    label ``class - 1`` (0-10). Samples are ordered as the split list names the
    recordings, then by row. On first use every recording of the split is decoded once
    and its samples are stored in an atomic, checksummed
    :class:`~spikeflow.data.ArrayCache` under ``cut_cache_dir`` (default:
    :func:`~spikeflow.data.default_cache_dir`), keyed by the recording's and the label
    file's identity; ``__getitem__`` then reads one small entry, never a whole recording.
    A corrupt entry is detected, and its recording cut again. ``workers`` sets the
    threads that cut recordings in parallel. Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (128, 128, 2)
    num_classes = 11
    classes: ClassVar[tuple[str, ...]] = (
        "hand_clapping",
        "right_hand_wave",
        "left_hand_wave",
        "right_arm_clockwise",
        "right_arm_counter_clockwise",
        "left_arm_clockwise",
        "left_arm_counter_clockwise",
        "arm_roll",
        "air_drums",
        "air_guitar",
        "other_gestures",
    )
    homepage = "https://research.ibm.com/interactive/dvsgesture/"
    #: MD5 as listed by SpikingJelly's DVS128Gesture.resource_url_md5 (IBM Box release).
    archive = Archive("DvsGesture.tar.gz", "8a5c71fb11e24e5ca5b11866ca6c00a1")
    layout = (
        "<root>/DvsGesture/{userNN_<lighting>.aedat, userNN_<lighting>_labels.csv, "
        "trials_to_train.txt, trials_to_test.txt}"
    )
    #: The version of the cut (:data:`CUT_VERSION`): part of both caches' keys.
    cut_version: ClassVar[int] = CUT_VERSION
    sample_options: ClassVar[tuple[str, ...]] = ("cut_version",)

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        *args: Any,
        cut_cache_dir: str | os.PathLike | None = None,
        workers: int | None = None,
        progress: bool = True,
        **kwargs: Any,
    ) -> None:
        if workers is not None:
            workers = check_int("DVS128Gesture: workers", workers, 0)
        self.workers = workers
        self.progress = check_flag("DVS128Gesture", "progress", progress)
        self._open_cut_cache(cut_cache_dir, "DVS128Gesture-cut")
        super().__init__(root, train, *args, **kwargs)

    def _find_samples(self) -> list[tuple[Path, int]]:
        folder = self.root / "DvsGesture"
        prepare_dataset_root(self, "DVS128 Gesture", folder, [self.archive], download=False)
        listing = folder / ("trials_to_train.txt" if self.train else "trials_to_test.txt")
        if not listing.is_file():
            raise files_not_found(
                self, "DVS128 Gesture", f"{shown_path(listing)} is missing", [self.archive]
            )
        names = listed_names(listing)
        self.recordings: list[tuple[Path, Path, np.ndarray]] = []
        self._windows: list[tuple[int, int]] = []  # (recording, row) of each sample
        samples: list[tuple[Path, int]] = []
        for name in names:
            aedat = folder / name
            csv = folder / (Path(name).stem + "_labels.csv")
            for f in (aedat, csv):
                if not f.is_file():
                    raise DataFormatError(
                        f"{listing} names {name!r} but {shown_path(f)} does not exist"
                    )
            rows = read_gesture_labels(csv)
            bad = np.flatnonzero((rows["label"] < 1) | (rows["label"] > self.num_classes))
            if bad.size:
                raise DataFormatError(
                    f"{csv}: row {int(bad[0]) + 1} has class {int(rows['label'][bad[0]])}, "
                    f"expected 1-{self.num_classes}"
                )
            k = len(self.recordings)
            self.recordings.append((aedat, csv, rows))
            for row, label in enumerate(rows["label"]):
                self._windows.append((k, row))
                samples.append((aedat, int(label) - 1))
        if not samples:
            raise DatasetNotFoundError(
                f"DVS128 Gesture: {shown_path(listing)} lists no labelled recording"
            )
        todo = [k for k in range(len(self.recordings)) if not self._is_cut(k)]
        if todo:
            parallel_map(
                functools.partial(_cut_recording, self),
                todo,
                workers=self.workers,
                executor="thread",
                progress=self.progress,
                desc=f"DVS128Gesture {self.split}: cutting recordings",
            )
        return samples

    def _cut_key(self, recording: int, row: int) -> dict[str, Any]:
        aedat, csv, rows = self.recordings[recording]
        return {
            "recording": self.source_identity(aedat),
            "labels": self.source_identity(csv),
            "row": row,
            "start": int(rows["start"][row]),
            "end": int(rows["end"][row]),
        }

    def _is_cut(self, recording: int) -> bool:
        rows = self.recordings[recording][2]
        return all(
            self.cut_cache.path_for(self._cut_key(recording, r)).is_file() for r in range(len(rows))
        )

    def _cut(self, recording: int) -> int:
        """Decode one recording, store each of its samples; returns how many."""
        aedat, _, rows = self.recordings[recording]
        pieces = split_by_labels(read_aedat31(aedat, self.sensor_size[:2]), rows)
        for row, (piece, _) in enumerate(pieces):
            self._store_window(recording, row, piece.events)
        return len(pieces)


def read_navgesture_dat(
    path: str | os.PathLike, sensor_size: tuple[int, int] = (304, 240)
) -> EventRecording:
    """Read a NavGesture ``_td.dat`` file (ATIS TD events written by kAER).

    Layout: ``%`` header lines, then (when there is a header) one byte event type and
    one byte event size (8), then little-endian 64-bit events: timestamp (µs) in bits
    0-31, ``x`` in bits 32-40, ``y`` in bits 41-48, polarity bit 49. As SpikingJelly's
    loader does, ``y`` is flipped (``height - 1 - y``) and events whose timestamp is
    below an earlier one are dropped.

    Raises:
        DataFormatError: an event size other than 8, a truncated last event, or
            coordinates outside ``sensor_size``.
    """
    data = read_bytes(path)
    _, start = parse_prophesee_header(data, path)
    if start > 0:
        if len(data) - start < 2:
            raise format_error(path, start, "truncated: no event type/size bytes after the header")
        if data[start + 1] != 8:
            raise format_error(path, start + 1, f"event size {data[start + 1]}, expected 8")
        start += 2
    if (len(data) - start) % 8:
        whole = len(data) - (len(data) - start) % 8
        raise format_error(
            path, whole, "truncated: the data is not a whole number of 8-byte events"
        )
    words = np.frombuffer(data, dtype="<u8", offset=start)
    t = (words & 0xFFFFFFFF).astype(np.int64)
    x = (words >> 32) & 0x1FF
    y = (words >> 41) & 0xFF
    p = ((words >> 49) & 1).astype(np.int8)
    width, height = sensor_size
    bad = np.flatnonzero((x >= width) | (y >= height))
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path,
            start + 8 * i,
            f"event {i} at (x={int(x[i])}, y={int(y[i])}) is outside the {width}x{height} sensor",
        )
    keep = t >= np.maximum.accumulate(t) if t.size else np.ones(0, dtype=bool)
    events = make_events(t[keep], x[keep], (height - 1) - y[keep].astype(np.int64), p[keep])
    return EventRecording(events, (width, height, 2), str(path))


class NAVGesture(RatioSplitDataset):
    """NavGesture (Maro et al., 2020): 6 mid-air gestures over a phone, recorded by an ATIS
    (304x240, 2 polarities) by users walking (``variant="walk"``) or sitting
    (``"sit"``); kAER ``_td.dat`` files read by :func:`read_navgesture_dat`.

    Layout: ``root/<user>/<user>_<gesture>_<n>_td.dat`` (the per-user zips inside the
    official ``navgesture-walk.zip`` / ``navgesture-sit.zip`` extracted in ``root``).
    The gesture code is the second ``_`` field of the name; labels are the codes in
    sorted order: ``do`` (down), ``ho`` (home), ``le`` (left), ``ri`` (right), ``se``
    (select), ``up``. No official split: ``train=None`` (default) all samples, else the
    per-class ``train_ratio`` split. The host (neuromorphic-vision.com, URLs and MD5s of
    SpikingJelly's ``NAVGestureWalk``/``NAVGestureSit``) no longer serves the files to
    programs, so the download is manual. Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (304, 240, 2)
    classes: ClassVar[tuple[str, ...]] = ("do", "ho", "le", "ri", "se", "up")
    homepage = "https://www.neuromorphic-vision.com/public/downloads/navgesture/"
    archives: ClassVar[dict[str, Archive]] = {
        "walk": Archive("navgesture-walk.zip", "5d305266f13005401959e819abe206f0", nested=True),
        "sit": Archive("navgesture-sit.zip", "1571753ace4d9e0946e6503313712c22", nested=True),
    }
    default_train_ratio = 0.8
    layout = "<root>/<user>/<user>_<gesture>_<n>_td.dat"

    def __init__(
        self,
        root: str | os.PathLike,
        variant: str = "walk",
        train: bool | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        if variant not in self.archives:
            raise ConfigurationError(f"variant must be 'walk' or 'sit'; got {variant!r}")
        self.variant = variant
        super().__init__(root, train, *args, **kwargs)

    def _all_samples(self) -> list[tuple[Path, int]]:
        archive = self.archives[self.variant]

        def found() -> bool:
            return self.root.is_dir() and any(self.root.glob("*/*.dat"))

        prepare_dataset_root(
            self,
            f"NavGesture-{self.variant}",
            self.root / "<user>",
            [archive],
            download=False,
            check=found,
        )
        files = sorted(self.root.glob("*/*.dat"))
        samples = []
        for f in files:
            parts = f.stem.split("_")
            if len(parts) < 2 or parts[1] not in self.classes:
                raise DataFormatError(f"{f}: no gesture code (one of {self.classes}) in its name")
            samples.append((f, self.classes.index(parts[1])))
        by_class = sorted(samples, key=lambda s: (s[1], s[0].name))
        return by_class

    def _read(self, path: Path) -> EventRecording:
        return read_navgesture_dat(path, self.sensor_size[:2])
