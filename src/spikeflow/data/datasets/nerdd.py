"""NeRDD (the Neuromorphic Event-based Reactive Driving Dataset; Tonic 1.7's ``NERDD``):
Prophesee 1280x720 driving scenes, each an ``.npz`` of events and a text file of boxes."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow.data.datasets._common import Archive, prepare_dataset_root
from spikeflow.data.datasets.base import NeuromorphicDataset
from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import (
    as_int64,
    check_in_sensor,
    check_zip_member_size,
    sort_by_time,
)
from spikeflow.errors import DataFormatError

__all__ = ["NERDD", "read_nerdd_boxes", "read_nerdd_events"]


def read_nerdd_events(
    path: str | os.PathLike, sensor_size: tuple[int, int] = (1280, 720)
) -> EventRecording:
    """A NeRDD ``Event/output_events.npz``: array ``data`` of ``[N, 4]`` rows ``(x, y,
    p, t)`` (t in µs), read as Tonic's ``NERDD`` reads it (``p`` as a bool: nonzero is
    1). Events are stably sorted by time when the file's are not.

    Raises:
        DataFormatError: not a readable ``.npz``, no ``data`` array, another shape, a
            fractional value, or a pixel outside ``sensor_size`` (naming the file).
    """
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # (which has no `with`: a TypeError)
            raise format_error(path, 0, "an .npy array, not an .npz archive holding 'data'")
        with loaded as npz:
            if "data" not in npz.files:
                raise format_error(path, None, f"no array 'data' (arrays: {npz.files})")
            for info in npz.zip.infolist():  # before a forged size is decompressed
                check_zip_member_size(info, path)
            data = npz["data"]
    except DataFormatError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise format_error(path, 0, f"not a readable .npz file ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 4:
        raise format_error(path, None, f"data has shape {data.shape}, not [N, 4] (x, y, p, t)")
    x, y, p, t = (as_int64(data[:, k], f"data[:, {k}]", path) for k in range(4))
    if x.size and min(x.min(), y.min()) < 0:
        i = int(np.flatnonzero((x < 0) | (y < 0))[0])
        raise format_error(path, None, f"event {i} has a negative coordinate ({x[i]}, {y[i]})")
    check_in_sensor(x, y, *sensor_size, path, lambda i: None)
    events = make_events(t, x, y, (p != 0).astype(np.int8))
    return EventRecording(sort_by_time(events), (*sensor_size, 2), str(path))


def read_nerdd_boxes(path: str | os.PathLike) -> np.ndarray:
    """A NeRDD ``ev_rgb_coordinates.txt``: one line ``<timestamp>:<v1>,<v2>,...`` per
    box, read as Tonic's ``NERDD`` reads it: a float32 array ``[M, 1 + k]`` of rows
    ``(timestamp, v1, ..., vk)`` (the values as stored; the dataset does not document
    their order).

    Raises:
        DataFormatError: not UTF-8 text, a line without ``:``, a value that is not a
            number, or lines of different lengths (naming the file and line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise format_error(path, exc.start, "not a text box file (invalid UTF-8)") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            raise format_error(path, None, f"line {number} is empty")
        stamp, colon, values = line.strip().partition(":")
        try:
            if not colon:
                raise ValueError("no ':'")
            row = [float(stamp), *(float(v) for v in values.split(","))]
        except ValueError as exc:
            raise format_error(path, None, f"line {number} {line!r}: {exc}") from None
        if rows and len(row) != len(rows[0]):
            raise format_error(
                path, None, f"line {number} has {len(row)} values, line 1 {len(rows[0])}"
            )
        rows.append(row)
    return np.array(rows, dtype=np.float32)


class NERDD(NeuromorphicDataset):
    """NeRDD (Magrini et al., the Neuromorphic Event-based Reactive Driving Dataset)
    as Tonic 1.7's ``NERDD`` reads it: Prophesee 1280x720 scenes (2 polarities),
    ``root/DATA/<archive>/<scene>/Event/output_events.npz`` (:func:`read_nerdd_events`)
    with ``root/DATA/<archive>/<scene>/ev_rgb_coordinates.txt``
    (:func:`read_nerdd_boxes`). ``<archive>`` ends in its number after 8 characters
    (Tonic reads ``int(name[8:])``), ``<scene>`` is a number. A scene that lacks one of
    the two files is skipped with a warning, as Tonic skips it (with a print).

    No split; samples sorted by archive number, then scene number (Tonic keeps
    ``os.listdir``'s order). The archive ``NeRDD.zip`` must be downloaded by hand (from
    the project's GitHub page) and put in ``root``; it is extracted on first use (no
    published checksum). Each item is ``(sample, target)`` with Tonic's target dict
    ``{"archive": int, "scene": int, "bboxes": float32 [M, 1 + k]}``.
    """

    sensor_size = (1280, 720, 2)
    classes: ClassVar[tuple[str, ...]] = ()
    homepage = "https://github.com/MagriniGabriele/NeRDD"
    layout = (
        "<root>/DATA/<archive>/<scene>/Event/output_events.npz with "
        "<root>/DATA/<archive>/<scene>/ev_rgb_coordinates.txt (from NeRDD.zip)"
    )

    def __init__(self, root: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        self.scenes: list[tuple[int, int]] = []
        super().__init__(root, True, *args, **kwargs)

    @property
    def split(self) -> str:
        """``"all"``: NeRDD has no train/test split."""
        return "all"

    def _find_samples(self) -> list[tuple[Path, int]]:
        data = self.root / "DATA"
        prepare_dataset_root(self, "NeRDD", data, [Archive("NeRDD.zip", None)], download=False)
        found = []
        for archive in (p for p in data.iterdir() if p.is_dir()):
            if not re.fullmatch(r"\d+", archive.name[8:]):
                raise format_error(
                    archive, None, "an archive folder's name must end in its number after "
                    "8 characters (Tonic reads int(name[8:]))"
                )  # fmt: skip
            for scene in (p for p in archive.iterdir() if p.is_dir()):
                if not scene.name.isdigit():
                    raise format_error(scene, None, "a scene folder's name must be a number")
                events = scene / "Event" / "output_events.npz"
                labels = scene / "ev_rgb_coordinates.txt"
                if not (events.is_file() and labels.is_file()):
                    missing = f"{events.name} or {labels.name}"
                    warnings.warn(f"NERDD: skipping {scene}: missing {missing}", stacklevel=2)
                    continue
                found.append((int(archive.name[8:]), int(scene.name), events))
        found.sort(key=lambda item: item[:2])
        self.scenes = [(a, s) for a, s, _ in found]
        return [(events, i) for i, (_, _, events) in enumerate(found)]

    def _read(self, path: Path) -> EventRecording:
        return read_nerdd_events(path, self.sensor_size[:2])

    @property
    def targets(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Every scene's target dict, in order (reads each box file)."""
        return [self._target_of(i) for i in range(len(self))]

    def _target_of(self, index: int) -> Any:
        archive, scene = self.scenes[index]
        labels = self.samples[index][0].parent.parent / "ev_rgb_coordinates.txt"
        return {"archive": archive, "scene": scene, "bboxes": read_nerdd_boxes(labels)}
