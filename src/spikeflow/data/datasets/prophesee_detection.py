"""Prophesee's automotive detection datasets: Gen1 Automotive (de Tournemire et al.,
2020) and 1 Megapixel Automotive (Perot et al., NeurIPS 2020).

Each recording is a Prophesee ``.dat`` event file ``<name>_td.dat`` with a label file
``<name>_bbox.npy``: a structured array of boxes, one row per box, many boxes sharing a
timestamp. A sample is the time window of events that ends at one labelled timestamp
and its boxes at that timestamp; its target is a float32 tensor ``[K, 5]`` of rows
``(class_id, x_min, y_min, x_max, y_max)`` in pixels, clipped to the sensor (the
contract of spikeflow's detection head and mAP).

The ``.dat`` files are read by window: the events are fixed-size 8-byte records sorted
by time, so the window's first and last records are found by binary search on the file
(memory-mapped) and only the window is decoded, not the whole recording (a Gen1 file
holds a minute of events, a 1Mpx file several).
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from spikeflow._checks import check_flag
from spikeflow.data._indexing import check_index
from spikeflow.data.datasets._common import how_to_get, shown_path
from spikeflow.data.datasets.base import DatasetNotFoundError, NeuromorphicDataset
from spikeflow.data.events import EventRecording, format_error
from spikeflow.data.io._common import checked_recording, empty_file_error, first_decrease
from spikeflow.data.io.prophesee import (
    DAT_HEADER_START,
    dat_body_start,
    parse_prophesee_header,
)
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = [
    "GEN1_CLASSES",
    "ONE_MPX_CLASSES",
    "Gen1Automotive",
    "OneMpxAutomotive",
    "PropheseeDetection",
    "filter_boxes",
    "read_bbox_npy",
    "read_dat_window",
]

#: Gen1 Automotive's class names, index = ``class_id``.
GEN1_CLASSES: tuple[str, ...] = ("car", "pedestrian")
#: 1 Megapixel Automotive's class names, index = ``class_id`` (Prophesee's order).
ONE_MPX_CLASSES: tuple[str, ...] = (
    "pedestrian", "two wheeler", "car", "truck", "bus", "traffic sign", "traffic light",
)  # fmt: skip

#: The fields every box file must have (``ts``, or ``t`` in older files, besides).
_BOX_FIELDS = ("x", "y", "w", "h", "class_id")
#: Bytes of the header read to find where a ``.dat`` file's events start.
_HEADER_PROBE = 1 << 16


def read_bbox_npy(path: str | os.PathLike) -> np.ndarray:
    """Read a Prophesee ``<name>_bbox.npy`` label file.

    The published dtype (Gen1) is ``[('ts','<u8'), ('x','<f4'), ('y','<f4'),
    ('w','<f4'), ('h','<f4'), ('class_id','u1'), ('confidence','<f4'),
    ('track_id','<u4')]``; older files name the time ``t`` instead of ``ts`` and 1Mpx
    files have ``class_confidence``. Only ``ts``/``t`` (µs), ``x``, ``y`` (top-left
    corner, pixels), ``w``, ``h`` and ``class_id`` are read.

    Returns:
        A structured array with fields ``ts`` (int64 µs), ``x``, ``y``, ``w``, ``h``
        (float64) and ``class_id`` (int64), in the file's row order.

    Raises:
        DataFormatError: not an ``.npy`` file (or a pickled one), not a 1-D structured
            array, a missing field, a non-finite coordinate, a negative width, height or
            time, or times that go backwards (naming the file, and the row).
    """
    path = Path(path)
    try:
        raw = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise format_error(path, 0, f"not a readable .npy box file ({exc})") from None
    if not isinstance(raw, np.ndarray):  # an .npz (a ZIP): np.load opens it lazily
        raw.close()
        raise format_error(path, 0, "an .npz archive, not an .npy box file")
    names = raw.dtype.names
    if names is None or raw.ndim != 1:
        raise format_error(
            path, None, f"expected a 1-D structured array of boxes; got dtype {raw.dtype} "
            f"and shape {raw.shape}"
        )  # fmt: skip
    time = "ts" if "ts" in names else "t" if "t" in names else None
    missing = [n for n in _BOX_FIELDS if n not in names]
    if time is None or missing:
        lack = missing + (["ts (or t)"] if time is None else [])
        raise format_error(
            path, None, f"the box array lacks field(s) {lack}; its dtype is {raw.dtype} "
            "(expected Prophesee's ts/t, x, y, w, h, class_id, ...)"
        )  # fmt: skip
    out = np.empty(len(raw), dtype=[("ts", "<i8"), ("x", "<f8"), ("y", "<f8"), ("w", "<f8"),
                                    ("h", "<f8"), ("class_id", "<i8")])  # fmt: skip
    for name in ("x", "y", "w", "h"):
        if raw.dtype[name].kind not in "fiu":
            raise format_error(
                path, None, f"field {name!r} has dtype {raw.dtype[name]}, not a number"
            )
        out[name] = raw[name]
    for name, src in (("ts", time), ("class_id", "class_id")):
        if raw.dtype[src].kind not in "iu":
            raise format_error(
                path, None, f"field {src!r} has dtype {raw.dtype[src]}, not an integer"
            )
        out[name] = raw[src]
    coords = np.stack([out[n] for n in ("x", "y", "w", "h")], axis=1)
    bad = np.flatnonzero(~np.isfinite(coords).all(axis=1) | (out["w"] < 0) | (out["h"] < 0)
                         | (out["ts"] < 0) | (out["class_id"] < 0))  # fmt: skip
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, None, f"box row {i} (ts={out['ts'][i]}, x={out['x'][i]}, y={out['y'][i]}, "
            f"w={out['w'][i]}, h={out['h'][i]}, class_id={out['class_id'][i]}) has a "
            "non-finite coordinate or a negative size, time or class"
        )  # fmt: skip
    i = first_decrease(out["ts"])
    if i >= 0:
        raise format_error(
            path, None, f"box row {i}: time goes backwards ({out['ts'][i - 1]} -> "
            f"{out['ts'][i]} us)"
        )  # fmt: skip
    return out


def filter_boxes(
    boxes: np.ndarray, min_box_diag: float, min_box_side: float, skip_ts: int = 500_000
) -> np.ndarray:
    """The label filter of Prophesee's detection evaluation (``filter_boxes`` of its
    ``psee_evaluator``, used by RVT and most Gen1/1Mpx papers): keep the boxes whose
    time is after ``skip_ts`` µs (the first half second of each recording is
    dropped), whose diagonal ``sqrt(w**2 + h**2)`` is at least ``min_box_diag`` and
    whose width and height are both at least ``min_box_side`` pixels. The published
    thresholds: 30 and 10 for Gen1, 60 and 20 for 1Mpx (full resolution).

    Args:
        boxes: what :func:`read_bbox_npy` returns (fields ``ts``, ``w``, ``h``).
        min_box_diag: the smallest diagonal kept, pixels.
        min_box_side: the smallest width and height kept, pixels.
        skip_ts: boxes at or before this time (µs) are dropped.

    Returns:
        The rows of ``boxes`` kept, in order.
    """
    w, h = boxes["w"], boxes["h"]
    keep = (
        (boxes["ts"] > skip_ts)
        & (w**2 + h**2 >= float(min_box_diag) ** 2)
        & (w >= min_box_side)
        & (h >= min_box_side)
    )
    return boxes[keep]


def _dat_layout(path: Path) -> tuple[int, int]:
    """``(first event byte, number of events)`` of a ``.dat`` file, its header checked."""
    size = path.stat().st_size
    if size == 0:
        raise empty_file_error(path)
    with open(path, "rb") as f:
        head = f.read(_HEADER_PROBE)
    start = -2  # headerless (Event2D events from byte 0) unless a "% " line starts it
    while head.startswith(DAT_HEADER_START):
        try:
            _, start = parse_prophesee_header(head, path)
            # the probe may end at a line end inside the header, or before the type
            # and size bytes: then read further
            if start + 2 <= len(head) or len(head) >= size:
                break
        except DataFormatError:
            if len(head) >= size:
                raise
        with open(path, "rb") as f:  # a header longer than the probe: read it all
            head = f.read(min(size, 4 * len(head)))
    body = dat_body_start(head, start, size, path) if start >= 0 else 0
    extra = (size - body) % 8
    if extra:
        raise format_error(
            path, size - extra, f"truncated: {extra} trailing byte(s) after the last whole "
            "8-byte event"
        )  # fmt: skip
    return body, (size - body) // 8


def read_dat_window(
    path: str | os.PathLike, t_start: int, t_end: int, sensor_size: tuple[int, int]
) -> EventRecording:
    """The events of a Prophesee ``.dat`` file with ``t_start <= t < t_end`` (µs),
    decoding only that window: the records are found by binary search on the
    memory-mapped file (timestamps are sorted), as
    :func:`~spikeflow.data.io.prophesee.read_dat` decodes them (``t``: the record's
    low 32 bits; ``x`` bits 32-45, ``y`` 46-59, polarity bit 60; a file without a
    ``"% "`` first line is headerless, events from byte 0). The binary search needs the
    raw 32-bit times sorted: a recording past ``2**32`` µs (71.6 min, whose times wrap
    around) is for :func:`~spikeflow.data.io.prophesee.read_dat`, which unwraps them
    (Gen1 and 1Mpx recordings last a minute or a few).

    Raises:
        DataFormatError: an empty file, a bad or truncated header, an event type other
            than CD or a size other than 8, a truncated last event, a last timestamp
            below the first (times that wrap around 2**32 µs), and, inside the window, a
            pixel outside ``sensor_size`` or a time that goes backwards (naming the file
            and the byte offset).
    """
    path = Path(path)
    body, n = _dat_layout(path)
    if n == 0 or t_end <= t_start:
        return checked_recording(*(np.zeros(0, np.int64),) * 4, sensor_size, path, lambda i: body)
    words = np.memmap(path, dtype="<u8", mode="r", offset=body, shape=(n,))

    def time_of(i: int) -> int:
        return int(words[i]) & 0xFFFFFFFF

    if time_of(n - 1) < time_of(0):  # unsorted raw times: the search would miss events
        raise format_error(
            path, body + 8 * (n - 1), f"event {n - 1}'s 32-bit timestamp {time_of(n - 1)} "
            f"us is below event 0's {time_of(0)} us: the times wrap around 2**32 us (a "
            "recording past 71.6 min), which read_dat_window cannot search; read the file "
            "whole with spikeflow.data.io.read_dat, which unwraps them"
        )  # fmt: skip
    lo = bisect.bisect_left(range(n), t_start, key=time_of)
    hi = bisect.bisect_left(range(lo, n), t_end, key=time_of) + lo
    chunk = np.array(words[lo:hi])
    t = (chunk & 0xFFFFFFFF).astype(np.int64)
    a = chunk >> 32
    x, y, p = a & 0x3FFF, (a >> 14) & 0x3FFF, (a >> 28) & 1

    def offset_of(i: int) -> int:
        return body + 8 * (lo + i)

    return checked_recording(t, x, y, p.astype(np.int8), sensor_size, path, offset_of)


class PropheseeDetection(NeuromorphicDataset):
    """The base of :class:`Gen1Automotive` and :class:`OneMpxAutomotive`: recordings
    ``root/<split>/<name>_td.dat`` with labels ``root/<split>/<name>_bbox.npy``.

    Each sample is one labelled timestamp ``ts`` of one recording: the events with
    ``ts - window_us <= t < ts`` (times as recorded, not shifted) and the target, a
    float32 tensor ``[K, 5]`` of rows ``(class_id, x_min, y_min, x_max, y_max)``: the
    boxes at ``ts``, in file order, with ``x_max = x + w`` and ``y_max = y + h``, every
    coordinate clipped to ``[0, width]`` / ``[0, height]`` (a box wholly outside the
    sensor, of zero width or height once clipped, is dropped). Samples are ordered by
    recording name, then time.

    Args:
        root: the folder holding the split folders.
        split: ``"train"``, ``"val"`` or ``"test"`` (keyword-free second argument).
        window_us: the length of each sample's event window, µs (default 50 ms).
        filter_labels: apply :func:`filter_boxes` with the dataset's published
            thresholds (``min_box_diag``, ``min_box_side``, ``skip_ts``; each may be
            given instead); a timestamp left without boxes is then no sample.
        min_box_diag, min_box_side, skip_ts: the filter's thresholds (pixels, pixels,
            µs); ``None``: the dataset's defaults.
        Other arguments: :class:`~spikeflow.data.datasets.NeuromorphicDataset`.

    Raises:
        DatasetNotFoundError: the split folder is missing or holds no recording (the
            message says where to get the dataset).
        DataFormatError: a ``.dat`` file without its ``_bbox.npy`` (or the reverse), or
            a bad box file (:func:`read_bbox_npy`), a class id the dataset lacks.
    """

    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    title: ClassVar[str]
    default_filter: ClassVar[tuple[float, float, int]]
    layout = "<root>/{train,val,test}/<name>_td.dat with <name>_bbox.npy beside it"
    sample_options = ("window_us",)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *args: Any,
        window_us: int = 50_000,
        filter_labels: bool = False,
        min_box_diag: float | None = None,
        min_box_side: float | None = None,
        skip_ts: int | None = None,
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        if split not in self.splits:
            raise ConfigurationError(f"{owner}: split must be one of {self.splits}; got {split!r}")
        if (
            isinstance(window_us, bool)
            or not isinstance(window_us, int | np.integer)
            or window_us <= 0
        ):
            raise ConfigurationError(
                f"{owner}: window_us must be a positive int (µs); got {window_us!r}"
            )
        self._split = split
        self.window_us = int(window_us)
        self.filter_labels = check_flag(owner, "filter_labels", filter_labels)
        diag, side, skip = self.default_filter
        self.min_box_diag = float(diag if min_box_diag is None else min_box_diag)
        self.min_box_side = float(side if min_box_side is None else min_box_side)
        self.skip_ts = int(skip if skip_ts is None else skip_ts)
        if self.min_box_diag < 0 or self.min_box_side < 0 or self.skip_ts < 0:
            raise ConfigurationError(
                f"{owner}: min_box_diag, min_box_side and skip_ts must be >= 0; got "
                f"{self.min_box_diag}, {self.min_box_side}, {self.skip_ts}"
            )
        self._labels: list[tuple[int, torch.Tensor]] = []
        super().__init__(root, split == "train", *args, **kwargs)

    @property
    def split(self) -> str:
        """``"train"``, ``"val"`` or ``"test"``."""
        return self._split

    def _not_found(self, problem: str) -> DatasetNotFoundError:
        advice = how_to_get(self.title, self.root, [], self.homepage, self.layout)
        return DatasetNotFoundError(f"{self.title}: {problem}. {advice}")

    def _find_samples(self) -> list[tuple[Path, int]]:
        folder = self.root / self._split
        if not folder.is_dir():
            raise self._not_found(f"the split folder {shown_path(folder)} does not exist")
        dats = {p.name[: -len("_td.dat")]: p for p in folder.glob("*_td.dat")}
        boxes = {p.name[: -len("_bbox.npy")]: p for p in folder.glob("*_bbox.npy")}
        if not dats:
            raise self._not_found(f"{shown_path(folder)} holds no <name>_td.dat recording")
        for name in sorted(set(dats) ^ set(boxes)):
            have, lack = (dats, "_bbox.npy") if name in dats else (boxes, "_td.dat")
            raise format_error(have[name], None, f"has no {name}{lack} beside it")
        samples: list[tuple[Path, int]] = []
        for name in sorted(dats):
            for ts, target in self._windows(boxes[name]):
                samples.append((dats[name], len(self._labels)))
                self._labels.append((ts, target))
        return samples

    def _windows(self, bbox_path: Path) -> list[tuple[int, torch.Tensor]]:
        """``(ts, target)`` of every labelled timestamp of one box file."""
        boxes = read_bbox_npy(bbox_path)
        classes = len(self.classes)
        bad = np.flatnonzero(boxes["class_id"] >= classes)
        if bad.size:
            i = int(bad[0])
            raise format_error(
                bbox_path, None, f"box row {i} has class_id {boxes['class_id'][i]}; "
                f"{self.title} has {classes} classes {self.classes}"
            )  # fmt: skip
        if self.filter_labels:
            boxes = filter_boxes(boxes, self.min_box_diag, self.min_box_side, self.skip_ts)
        width, height = self.sensor_size[:2]
        x0 = np.clip(boxes["x"], 0, width)
        y0 = np.clip(boxes["y"], 0, height)
        x1 = np.clip(boxes["x"] + boxes["w"], 0, width)
        y1 = np.clip(boxes["y"] + boxes["h"], 0, height)
        rows = np.stack([boxes["class_id"], x0, y0, x1, y1], axis=1).astype(np.float32)
        inside = (x1 > x0) & (y1 > y0)
        times, starts = np.unique(boxes["ts"], return_index=True)
        ends = [*starts[1:], len(boxes)]
        out = []
        for ts, lo, hi in zip(times.tolist(), starts.tolist(), ends, strict=True):
            keep = inside[lo:hi]
            if not self.filter_labels or keep.any():
                out.append((int(ts), torch.from_numpy(rows[lo:hi][keep].copy())))
        return out

    def label_time(self, index: int) -> int:
        """Sample ``index``'s labelled timestamp (µs): its window ends there."""
        index = check_index(type(self).__name__, index, len(self))
        return self._labels[self.samples[index][1]][0]

    def events(self, index: int) -> EventRecording:
        """Sample ``index``'s events (its window of its recording), after
        ``event_transform``."""
        path, number = self.samples[index]
        ts = self._labels[number][0]
        rec = read_dat_window(path, ts - self.window_us, ts, self.sensor_size[:2])
        return rec if self.event_transform is None else self.event_transform(rec)

    def cache_entry_key(self, index: int) -> dict[str, Any]:
        """The cache key of sample ``index``: its file and labelled timestamp."""
        return {"file": self.source_identity(self.samples[index][0]), "ts": self.label_time(index)}

    @property
    def targets(self) -> list[torch.Tensor]:  # type: ignore[override]
        """Every sample's box tensor ``[K, 5]``, in order."""
        return [self._labels[number][1].clone() for _, number in self.samples]

    def _target_of(self, index: int) -> Any:
        return self._labels[self.samples[index][1]][1].clone()


class Gen1Automotive(PropheseeDetection):
    """Prophesee's Gen1 Automotive Detection Dataset (de Tournemire et al., "A Large
    Scale Event-based Detection Dataset for Automotive", 2020): 39 hours from an ATIS
    (304x240, 2 polarities) on a car, boxes of 2 classes (:data:`GEN1_CLASSES`: car 0,
    pedestrian 1) at 1, 2 or 4 Hz. Its host needs a form: download
    ``detection_dataset_duration_60s_ratio_1.0`` by hand and pass its folder (holding
    ``train``, ``val``, ``test``) as ``root``. Filter defaults: diagonal 30, side 10
    pixels, first 0.5 s skipped. See :class:`PropheseeDetection` for the samples,
    targets and arguments.
    """

    sensor_size = (304, 240, 2)
    classes: ClassVar[tuple[str, ...]] = GEN1_CLASSES
    title: ClassVar[str] = "Gen1 Automotive"
    homepage = "https://www.prophesee.ai/2020/01/24/prophesee-gen1-automotive-detection-dataset/"
    default_filter: ClassVar[tuple[float, float, int]] = (30.0, 10.0, 500_000)


class OneMpxAutomotive(PropheseeDetection):
    """Prophesee's 1 Megapixel Automotive Detection Dataset (Perot et al., "Learning to
    Detect Objects with a 1 Megapixel Event Camera", NeurIPS 2020): 15 hours from a
    Gen4 sensor (1280x720, 2 polarities) on a car, boxes of 7 classes
    (:data:`ONE_MPX_CLASSES`) at 60 Hz. Its host needs a form: download and extract
    the archives by hand so that ``root`` holds ``train``, ``val``, ``test``. Filter
    defaults: diagonal 60, side 20 pixels (full resolution), first 0.5 s skipped (RVT
    trains on 3 of the classes, pedestrian, two wheeler and car, at half resolution:
    remap with ``target_transform``). See :class:`PropheseeDetection`.
    """

    sensor_size = (1280, 720, 2)
    classes: ClassVar[tuple[str, ...]] = ONE_MPX_CLASSES
    title: ClassVar[str] = "1Mpx Automotive"
    homepage = "https://www.prophesee.ai/2020/11/24/automotive-megapixel-event-based-dataset/"
    default_filter: ClassVar[tuple[float, float, int]] = (60.0, 20.0, 500_000)
