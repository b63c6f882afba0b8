"""EBSSA, event-based space situational awareness (Afshar et al., 2020; Tonic's
``EBSSA``): event-camera recordings of the night sky with labelled satellite tracks,
all in one HDF5 (MATLAB v7.3 style) file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from spikeflow.data._indexing import check_index
from spikeflow.data.datasets._common import files_not_found, shown_path
from spikeflow.data.datasets.base import NeuromorphicDataset
from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import as_int64, first_decrease, import_optional
from spikeflow.errors import ConfigurationError

__all__ = ["EBSSA", "EBSSA_BBOX_DTYPE", "read_ebssa_recording"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: The fields of an EBSSA target's ``bbox`` array (Tonic's).
EBSSA_BBOX_DTYPE = np.dtype(
    [("t", np.int64), ("x_min", float), ("y_min", float), ("x_max", float),
     ("y_max", float), ("id", np.uint8)]
)  # fmt: skip

#: Labels are snapped to this grid (µs), and boxes are this wide (pixels), as Tonic has them.
_LABEL_GRID_US = 10_000
_BOX = 10


def _field(group: Any, name: str, path: Path, where: str) -> np.ndarray:
    if name not in group:
        raise format_error(path, None, f"{where} has no field {name!r} (found {sorted(group)})")
    return np.asarray(group[name][()]).reshape(-1)


def _open(path: Path) -> Any:
    h5py = import_optional("h5py", "EBSSA files", "h5py")
    with open(path, "rb") as f:
        if f.read(8) != _HDF5_SIGNATURE:
            raise format_error(path, 0, "not an HDF5 file (no HDF5 signature at offset 0)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise format_error(path, None, f"h5py cannot open the file: {exc}") from None


def read_ebssa_recording(
    path: str | os.PathLike, key: str, sensor_size: tuple[int, int] = (240, 180)
) -> tuple[EventRecording, np.ndarray | None]:
    """Read recording ``key`` of an EBSSA file: the events of its ``TD`` group (datasets
    ``ts`` [µs], ``x``, ``y`` 1-based, ``p``) and the labels of its ``Obj`` group
    (``ts``, ``x``, ``y`` 1-based centres, ``id``) when it has one.

    Events: ``x - 1``, ``y - 1``, ``t = ts - ts[0]`` (the recording starts at 0),
    ``p = 1`` for a positive stored polarity, else 0. Labels: Tonic's boxes, a
    ``10 x 10`` pixel box per label, ``x_min = max(x - 1 - 5, 0)``,
    ``x_max = min(x_min + 10, max event x)`` (``y`` alike), the time
    ``round((ts - ts[0]) / 10 ms) * 10 ms`` (NumPy's round, half to even), as an
    :data:`EBSSA_BBOX_DTYPE` array; ``None`` without ``Obj``.

    Raises:
        DataFormatError: not an HDF5 file, no such recording or a missing field, event
            fields of different lengths, a value that is not a whole number, a
            polarity outside -1/0/1, a pixel outside ``sensor_size`` (after the 1-based
            shift) or a time that goes backwards (the message names file, recording,
            field and row).
    """
    path = Path(path)
    width, height = sensor_size
    with _open(path) as f:
        if key not in f:
            raise format_error(path, None, f"no recording {key!r}")
        group = f[key]
        where = f"recording {key!r}"
        if "TD" not in group:
            raise format_error(path, None, f"{where} has no 'TD' (events) group")
        td = group["TD"]
        raw = {n: _field(td, n, path, f"{where}/TD") for n in ("ts", "x", "y", "p")}
        obj = None
        if "Obj" in group:
            obj = {n: _field(group["Obj"], n, path, f"{where}/Obj") for n in ("ts", "x", "y", "id")}
    sizes = {n: v.size for n, v in raw.items()}
    if len(set(sizes.values())) != 1:
        raise format_error(path, None, f"{where}/TD fields differ in length: {sizes}")
    t, x, y, p = (as_int64(raw[n], f"{where}/TD/{n}", path) for n in ("ts", "x", "y", "p"))
    x, y = x - 1, y - 1
    bad = np.flatnonzero((x < 0) | (y < 0) | (x >= width) | (y >= height) | (p < -1) | (p > 1))
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, None, f"{where}/TD row {i} (x={x[i] + 1}, y={y[i] + 1} 1-based, p={p[i]}) lies "
            f"outside the {width}x{height} sensor or has a polarity outside -1/0/1"
        )  # fmt: skip
    i = first_decrease(t)
    if i >= 0:
        raise format_error(
            path, None, f"{where}/TD/ts row {i}: time goes backwards ({t[i - 1]} -> {t[i]} us)"
        )
    start = int(t[0]) if t.size else 0
    events = make_events(t - start, x, y, (p > 0).astype(np.int8))
    rec = EventRecording(events, (width, height, 2), f"{path}[{key}]")
    if obj is None:
        return rec, None
    sizes = {n: v.size for n, v in obj.items()}
    if len(set(sizes.values())) != 1:
        raise format_error(path, None, f"{where}/Obj fields differ in length: {sizes}")
    values = {n: np.asarray(obj[n], dtype=np.float64) for n in ("ts", "x", "y")}
    for n, v in values.items():
        if not np.isfinite(v).all():
            i = int(np.flatnonzero(~np.isfinite(v))[0])
            raise format_error(path, None, f"{where}/Obj/{n} row {i} is {v[i]}")
    ids = as_int64(obj["id"], f"{where}/Obj/id", path)
    if ids.size and (ids.min() < 0 or ids.max() > 255):
        i = int(np.flatnonzero((ids < 0) | (ids > 255))[0])
        raise format_error(path, None, f"{where}/Obj/id row {i} = {ids[i]} is not in 0..255")
    x_hi = int(x.max()) if x.size else 0
    y_hi = int(y.max()) if y.size else 0
    bbox = np.empty(ids.size, dtype=EBSSA_BBOX_DTYPE)
    bbox["t"] = np.round((values["ts"] - start) / _LABEL_GRID_US) * _LABEL_GRID_US
    bbox["x_min"] = np.maximum(values["x"] - 1 - _BOX / 2, 0)
    bbox["y_min"] = np.maximum(values["y"] - 1 - _BOX / 2, 0)
    bbox["x_max"] = np.minimum(bbox["x_min"] + _BOX, x_hi)
    bbox["y_max"] = np.minimum(bbox["y_min"] + _BOX, y_hi)
    bbox["id"] = ids
    return rec, bbox


class EBSSA(NeuromorphicDataset):
    """EBSSA (Afshar et al., "Event-based object detection and tracking for space
    situational awareness", IEEE Sensors Journal 20(24), 2020), the labelled part as
    Tonic 1.7's ``EBSSA`` reads it: 84 recordings in one HDF5 file
    ``root/EBSSA/labelled_ebssa.h5``, one top-level group per recording (its name is the
    recording id), each with a ``TD`` group of events and, when labelled, an ``Obj``
    group of satellite positions (:func:`read_ebssa_recording`). ``sensor_size`` is
    Tonic's ``(240, 180, 2)``; an event outside it raises ``DataFormatError``.

    The file is on Google Drive (Tonic fetches it with gdown, id
    ``1lCh2HWvxEzzaBHT5TlPuyUn6XPM5OVWN``, no checksum), so the download is manual: put
    it at ``root/EBSSA/labelled_ebssa.h5``, where Tonic's ``EBSSA(save_to=root)`` keeps it.

    ``split`` is ``"labelled"`` (the only part in the file, and the only one Tonic
    reads); there is no train/test split. Samples follow the file's group order (h5py's,
    by name). Each item is ``(sample, target)``: the sample as in
    :class:`~spikeflow.data.datasets.NeuromorphicDataset` (events, or frames
    ``[T, 2, 180, 240]``), the target Tonic's dict ``{"bbox": EBSSA_BBOX_DTYPE array or
    None, "recording_id": group name}``. :attr:`classes` is empty. Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (240, 180, 2)
    classes: ClassVar[tuple[str, ...]] = ()
    homepage = (
        "https://www.westernsydney.edu.au/icns/resources/reproducible_research3/"
        "publication_support_materials2/space_imaging"
    )
    drive_id = "1lCh2HWvxEzzaBHT5TlPuyUn6XPM5OVWN"
    layout = "<root>/EBSSA/labelled_ebssa.h5 (one group per recording: TD, and Obj if labelled)"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "labelled",
        *args: Any,
        **kwargs: Any,
    ) -> None:
        if split != "labelled":
            raise ConfigurationError(
                f"EBSSA: split must be 'labelled' (the file holds only the labelled "
                f"recordings; Tonic reads no other part); got {split!r}"
            )
        super().__init__(root, True, *args, **kwargs)

    @property
    def split(self) -> str:
        """``"labelled"``."""
        return "labelled"

    @property
    def h5_path(self) -> Path:
        """``root/EBSSA/labelled_ebssa.h5``."""
        return self.root / "EBSSA" / "labelled_ebssa.h5"

    def _find_samples(self) -> list[tuple[Path, int]]:
        if not self.h5_path.is_file():
            raise files_not_found(
                self, "EBSSA", f"{shown_path(self.h5_path)} does not exist (download it by hand "
                f"from Google Drive, file id {self.drive_id})", []
            )  # fmt: skip
        with _open(self.h5_path) as f:
            self.keys: list[str] = list(f.keys())
        if not self.keys:
            raise format_error(self.h5_path, None, "the file holds no recordings")
        return [(self.h5_path, i) for i in range(len(self.keys))]

    def cache_entry_key(self, index: int) -> dict[str, Any]:
        """The cache key of sample ``index``: the file and the recording's group name."""
        return {**super().cache_entry_key(index), "recording": self.keys[index]}

    def events(self, index: int) -> EventRecording:
        """Recording ``index``'s events, after ``event_transform``."""
        rec, _ = read_ebssa_recording(self.h5_path, self.keys[index], self.sensor_size[:2])
        return rec if self.event_transform is None else self.event_transform(rec)

    def target(self, index: int) -> dict[str, Any]:
        """Recording ``index``'s target: ``{"bbox": array or None, "recording_id": name}``."""
        index = check_index("EBSSA", index, len(self))
        _, bbox = read_ebssa_recording(self.h5_path, self.keys[index], self.sensor_size[:2])
        return {"bbox": bbox, "recording_id": self.keys[index]}

    @property
    def targets(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Every recording's target, in order (reads the whole file)."""
        return [self.target(i) for i in range(len(self))]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = check_index("EBSSA", index, len(self))
        target: Any
        if self.data_type == "event":  # one read gives both
            rec, bbox = read_ebssa_recording(self.h5_path, self.keys[index], self.sensor_size[:2])
            sample: Any = rec if self.event_transform is None else self.event_transform(rec)
            target = {"bbox": bbox, "recording_id": self.keys[index]}
        else:
            array = self._representation(index)[0]
            sample = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            target = self.target(index)
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return sample, target
