"""3ET event-based eye tracking (Chen et al., 2023; Tonic's ``ThreeET_Eyetracking``):
DVS recordings of an eye, one HDF5 file per recording, with the pupil position over
time as a regression target (not a class)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow.data._indexing import check_index
from spikeflow.data.datasets._common import (
    Archive,
    files_not_found,
    listed_names,
    prepare_dataset_root,
    shown_path,
)
from spikeflow.data.datasets._split import NamedSplitDataset
from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import as_int64, first_decrease, import_optional

__all__ = ["ThreeETEyetracking", "read_threeet_events", "read_threeet_labels"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_threeet_events(
    path: str | os.PathLike, sensor_size: tuple[int, int] = (240, 180)
) -> EventRecording:
    """Read a 3ET recording: HDF5 dataset ``events``, an ``(N, 4)`` array of rows
    ``(t [µs], x, y, p)``, ``p`` 0/1 (Tonic's ``ThreeET_Eyetracking`` reads the columns
    in this order). Integer or whole-float storage is accepted.

    Raises:
        DataFormatError: not an HDF5 file, no ``events`` dataset, a shape other than
            ``(N, 4)``, a value that is not a whole number, a negative time, a polarity
            other than 0/1, a pixel outside ``sensor_size`` or a time that goes backwards
            (the message names the file and the row).
    """
    h5py = import_optional("h5py", "3ET eye-tracking files", "h5py")
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(8) != _HDF5_SIGNATURE:
            raise format_error(path, 0, "not an HDF5 file (no HDF5 signature at offset 0)")
    try:
        with h5py.File(path, "r") as f:
            if "events" not in f or not isinstance(f["events"], h5py.Dataset):
                raise format_error(path, None, f"no dataset 'events' (found {sorted(f.keys())})")
            raw = f["events"][()]
    except OSError as exc:
        raise format_error(path, None, f"h5py cannot read the file: {exc}") from None
    if raw.ndim != 2 or raw.shape[1] != 4:
        raise format_error(
            path, None, f"dataset 'events' must be (N, 4) rows of t, x, y, p; got {raw.shape}"
        )
    t, x, y, p = (
        as_int64(raw[:, k], f"events[:, {k}] ({name})", path)
        for k, name in enumerate(("t", "x", "y", "p"))
    )
    width, height = sensor_size
    bad = np.flatnonzero(
        (t < 0) | (x < 0) | (y < 0) | (x >= width) | (y >= height) | (p < 0) | (p > 1)
    )
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, None, f"dataset 'events' row {i} (t={t[i]}, x={x[i]}, y={y[i]}, p={p[i]}) has "
            f"a negative time, a polarity other than 0/1 or lies outside the {width}x{height} "
            "sensor"
        )  # fmt: skip
    i = first_decrease(t)
    if i >= 0:
        raise format_error(
            path, None, f"dataset 'events' row {i}: time goes backwards ({t[i - 1]} us -> "
            f"{t[i]} us)"
        )  # fmt: skip
    return EventRecording(make_events(t, x, y, p.astype(np.int8)), (width, height, 2), str(path))


def read_threeet_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a 3ET label file: one line per labelled instant, whitespace-separated numbers
    (the release's pupil position and its other columns), as a float64 array
    ``[lines, columns]``, as Tonic parses it. Blank lines are skipped; a file of none
    but blank lines gives ``[0, 0]``.

    Raises:
        DataFormatError: a token that is not a number, or lines with different numbers
            of columns (the message names the file and line).
    """
    path = Path(path)
    rows: list[list[float]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                values = [float(tok) for tok in tokens]
            except ValueError:
                raise format_error(
                    path, None, f"line {number}: {line.strip()!r} is not whitespace-separated "
                    "numbers"
                ) from None  # fmt: skip
            if rows and len(values) != len(rows[0]):
                raise format_error(
                    path, None, f"line {number} has {len(values)} columns; the first line has "
                    f"{len(rows[0])}"
                )  # fmt: skip
            rows.append(values)
    if not rows:  # no labels (reshape(0, -1) would fail: the columns are unknown)
        return np.zeros((0, 0), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


class ThreeETEyetracking(NamedSplitDataset):
    """3ET (Chen et al., "3ET: Efficient Event-based Eye Tracking using a Change-Based
    ConvLSTM Network", arXiv 2308.11771, 2023), the dataset of Tonic 1.7's
    ``ThreeET_Eyetracking``: DVS recordings of an eye, 240x180 pixels, 2 polarities, each
    with a text file of labels (the pupil position over time).

    Layout (Tonic's): ``root/ThreeET_Eyetracking/{train_files.txt, val_files.txt}`` list
    the recordings of each split, one name per line; recording ``<name>`` is
    ``root/ThreeET_Eyetracking/data/<name>.h5`` (:func:`read_threeet_events`) with labels
    ``root/ThreeET_Eyetracking/labels/<name>.txt`` (:func:`read_threeet_labels`).
    ``download=True`` fetches ``ThreeET_Eyetracking.zip`` (Tonic's Dropbox URL and MD5)
    into ``root``, and it is checked and extracted into ``root/ThreeET_Eyetracking/``
    (as Tonic extracts it); or put the zip in ``root`` yourself.

    ``split`` is ``"train"`` or ``"val"`` (Tonic's names; ``train=True`` is not taken:
    the split is named). Samples keep the list file's order.

    Each item is ``(sample, target)``: the sample as in
    :class:`~spikeflow.data.datasets.NeuromorphicDataset` (an EventRecording, or frames
    ``[T, 2, 180, 240]``), the target the recording's float64 label array ``[n, k]``
    (a NumPy array, as Tonic's; recordings differ in ``n``, so batch with a collate that
    pads or keeps a list). :meth:`target` reads one without the events; there are no
    classes (:attr:`classes` is empty). Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (240, 180, 2)
    classes: ClassVar[tuple[str, ...]] = ()
    splits: ClassVar[tuple[str, ...]] = ("train", "val")
    homepage = "https://github.com/qinche106/cb-convlstm-eyetracking"
    downloadable: ClassVar[bool] = True
    #: Tonic's archive: its Dropbox URL and MD5; extracted into ``root/ThreeET_Eyetracking``.
    archive = Archive(
        "ThreeET_Eyetracking.zip",
        "b6c652b06fdfd85721f39e2dbe12f4e8",
        "https://dl.dropboxusercontent.com/s/1hyer8egd8843t9/ThreeET_Eyetracking.zip?dl=0",
        into="ThreeET_Eyetracking",
    )
    layout = (
        "<root>/ThreeET_Eyetracking/{train_files.txt, val_files.txt, data/<name>.h5, "
        "labels/<name>.txt}"
    )

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *args: Any,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, split, *args, download=download, **kwargs)

    @property
    def folder(self) -> Path:
        """``root/ThreeET_Eyetracking``."""
        return self.root / "ThreeET_Eyetracking"

    def _find_samples(self) -> list[tuple[Path, int]]:
        listing = self.folder / f"{self.split}_files.txt"
        prepare_dataset_root(self, "3ET", listing, [self.archive], download=self.download)
        names = listed_names(listing)
        if not names:
            raise files_not_found(
                self, "3ET", f"{shown_path(listing)} lists no recordings", [self.archive]
            )
        self.label_paths: list[Path] = []
        samples = []
        for number, name in enumerate(names):
            data = self.folder / "data" / f"{name}.h5"
            label = self.folder / "labels" / f"{name}.txt"
            for what, p in (("recording", data), ("label file", label)):
                if not p.is_file():
                    raise files_not_found(
                        self, "3ET", f"{listing} names {name!r}, but its {what} {shown_path(p)} is "
                        "missing", [self.archive]
                    )  # fmt: skip
            samples.append((data, number))
            self.label_paths.append(label)
        return samples

    def _read(self, path: Path) -> EventRecording:
        return read_threeet_events(path, self.sensor_size[:2])

    def target(self, index: int) -> np.ndarray:
        """Recording ``index``'s labels (:func:`read_threeet_labels`), float64 ``[n, k]``."""
        index = check_index(type(self).__name__, index, len(self))
        return read_threeet_labels(self.label_paths[index])

    @property
    def targets(self) -> list[np.ndarray]:  # type: ignore[override]
        """Every recording's label array, in order (reads all label files)."""
        return [self.target(i) for i in range(len(self))]

    def _target_of(self, index: int) -> Any:
        return self.target(index)
