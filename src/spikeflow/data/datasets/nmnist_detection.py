"""A detection task composed from real N-MNIST recordings: 1-3 digits on a larger canvas.

Each canvas places ``k`` N-MNIST recordings (34x34 sensor, about 300 ms each, read by
:class:`~spikeflow.data.datasets.NMNIST`) at random, non-overlapping positions on a
``width x height`` canvas; their events are shifted there, merged and sorted by time (the
digits are recorded "at once"). The target lists one box per digit, class = the digit.

Everything about canvas ``i`` (``k``, which recordings, where) comes from
``numpy.random.default_rng([seed, i])``, so a canvas is the same on every machine, in
every worker and in any order of access. Training canvases draw from N-MNIST's ``Train``
split and test canvases from ``Test``, so held-out canvases hold held-out digits.

**Boxes** (``box=``):

* ``"events"`` (default): the tight box of the digit's pixels that received at least
  ``min_pixel_events`` events (3 by default; N-MNIST's sensor noise puts a few stray
  events on almost every pixel of the 34x34 patch, so the box of *all* events is nearly
  always the whole patch). A recording with no such pixel falls back to the box of all
  its events, and an empty one to its 34x34 placement. Median size on the real data:
  22x26 pixels.
* ``"placement"``: the 34x34 square the recording was placed in.

Boxes are in canvas pixels, continuous coordinates: a box over pixel columns 40..61 has
``x_min = 40, x_max = 62``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from spikeflow._checks import check_flag, check_int
from spikeflow.data._indexing import check_index
from spikeflow.data.datasets.nmnist import NMNIST
from spikeflow.data.events import EVENT_DTYPE, EventRecording
from spikeflow.data.frames import SPLIT_BY, to_frames
from spikeflow.errors import ConfigurationError

__all__ = ["NMNISTDetection", "digit_box"]

_SIDE = 34  # N-MNIST's sensor is 34x34
_MAX_TRIES = 100


def digit_box(events: np.ndarray, min_pixel_events: int = 3) -> tuple[int, int, int, int]:
    """The ``(x_min, y_min, x_max, y_max)`` box of one N-MNIST recording's digit, in its
    own 34x34 coordinates (``x_max`` one past the last column): the tight box of the
    pixels with at least ``min_pixel_events`` events, else of all events, else the
    whole patch."""
    if len(events) == 0:
        return 0, 0, _SIDE, _SIDE
    counts = np.zeros((_SIDE, _SIDE), dtype=np.int64)
    np.add.at(counts, (events["y"].astype(np.int64), events["x"].astype(np.int64)), 1)
    mask = counts >= min_pixel_events
    if not mask.any():
        mask = counts > 0
    cols = np.flatnonzero(mask.any(0))
    rows = np.flatnonzero(mask.any(1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


class NMNISTDetection(torch.utils.data.Dataset):
    """Canvases of 1-3 real N-MNIST digits with their boxes (see the module docs).

    Each item is ``(sample, target)``: ``sample`` is float32 frames ``[T, 2, H, W]``
    (``data_type="frame"``, event counts per polarity) or an
    :class:`~spikeflow.data.EventRecording` of the canvas (``data_type="event"``);
    ``target`` is float32 ``[K, 5]``, rows ``(class_id, x_min, y_min, x_max, y_max)``
    (the contract of :mod:`spikeflow.detection.targets`). Batch with
    ``collate_fn=spikeflow.detection.collate``.

    Args:
        root: the N-MNIST directory (``root/Train/<label>/<id>.bin``, as NMNIST reads).
        train: canvases from the training split (True) or the test split.
        num_samples: canvases in the dataset.
        canvas_size: ``(width, height)`` or one int (a square), at least 34.
        digits: ``(min, max)`` digits per canvas (inclusive), or one int.
        seed: the seed every canvas derives from.
        data_type: ``"frame"`` or ``"event"``.
        frames_number, split_by: ``T`` and the split rule of
            :func:`~spikeflow.data.to_frames` (over the merged canvas events).
        box: ``"events"`` or ``"placement"`` (module docs).
        min_pixel_events: the pixel threshold of ``box="events"``.
        min_gap: pixels kept free between two placements.
        transform: applied to the sample (frames or recording) as yielded.
        download: fetch N-MNIST into ``root`` (as :class:`NMNIST`).
    """

    classes: ClassVar[tuple[str, ...]] = NMNIST.classes

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        *,
        num_samples: int = 1000,
        canvas_size: int | tuple[int, int] = (96, 96),
        digits: int | tuple[int, int] = (1, 3),
        seed: int = 0,
        data_type: str = "frame",
        frames_number: int = 4,
        split_by: str = "number",
        box: str = "events",
        min_pixel_events: int = 3,
        min_gap: int = 0,
        transform: Callable[[Any], Any] | None = None,
        download: bool = False,
    ) -> None:
        self.train = check_flag("NMNISTDetection", "train", train)
        self.num_samples = check_int("num_samples", num_samples, 1)
        if isinstance(canvas_size, int) and not isinstance(canvas_size, bool):
            canvas_size = (canvas_size, canvas_size)
        if not isinstance(canvas_size, (tuple, list)) or len(canvas_size) != 2:
            raise ConfigurationError(
                f"canvas_size must be (width, height) or one int, got {canvas_size!r}"
            )
        self.width, self.height = (check_int("canvas_size", s, _SIDE) for s in canvas_size)
        if isinstance(digits, int) and not isinstance(digits, bool):
            digits = (digits, digits)
        if not isinstance(digits, (tuple, list)) or len(digits) != 2:
            raise ConfigurationError(f"digits must be (min, max) or one int, got {digits!r}")
        self.min_digits = check_int("digits[0]", digits[0], 1)
        self.max_digits = check_int("digits[1]", digits[1], self.min_digits)
        self.min_gap = check_int("min_gap", min_gap, 0)
        per_row = (self.width + self.min_gap) // (_SIDE + self.min_gap)
        per_col = (self.height + self.min_gap) // (_SIDE + self.min_gap)
        if per_row * per_col < self.max_digits:
            raise ConfigurationError(
                f"a {self.width}x{self.height} canvas does not surely fit {self.max_digits} "
                f"34x34 digits with min_gap={self.min_gap}; use a larger canvas_size or "
                "fewer digits"
            )
        self.seed = check_int("seed", seed, 0)
        if data_type not in ("frame", "event"):
            raise ConfigurationError(f"data_type must be 'frame' or 'event', got {data_type!r}")
        self.data_type = data_type
        self.frames_number = check_int("frames_number", frames_number, 1)
        if split_by not in SPLIT_BY:
            raise ConfigurationError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
        self.split_by = split_by
        if box not in ("events", "placement"):
            raise ConfigurationError(f"box must be 'events' or 'placement', got {box!r}")
        self.box = box
        self.min_pixel_events = check_int("min_pixel_events", min_pixel_events, 1)
        self.transform = transform
        self.digits_source = NMNIST(root, train, data_type="event", download=download)
        self.sensor_size = (self.width, self.height, 2)

    def __len__(self) -> int:
        return self.num_samples

    def layout(self, index: int) -> list[tuple[int, int, int]]:
        """Canvas ``index``'s digits: ``(N-MNIST sample index, x offset, y offset)`` each,
        from ``default_rng([seed, index])``."""
        index = check_index("NMNISTDetection", index, self.num_samples)
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.integers(self.min_digits, self.max_digits + 1))
        picks = rng.integers(0, len(self.digits_source), size=k)
        reach = _SIDE + self.min_gap
        xs = np.arange(self.width - _SIDE + 1)[None, :]
        ys = np.arange(self.height - _SIDE + 1)[:, None]
        for _ in range(_MAX_TRIES):
            # Each digit goes to a uniformly drawn free position; when an early digit
            # leaves no room for the next (one in the middle of a 96x96 canvas), the
            # layout is drawn again.
            placed: list[tuple[int, int]] = []
            free = np.ones((len(ys), xs.shape[1]), dtype=bool)
            while len(placed) < k and free.any():
                y, x = np.argwhere(free)[int(rng.integers(0, int(free.sum())))]
                placed.append((int(x), int(y)))
                free &= (np.abs(xs - x) >= reach) | (np.abs(ys - y) >= reach)
            if len(placed) == k:
                break
        else:
            raise ConfigurationError(
                f"canvas {index}: could not place {k} digits without overlap in "
                f"{_MAX_TRIES} tries; use a larger canvas_size"
            )
        return [(int(p), x, y) for p, (x, y) in zip(picks, placed)]

    def compose(self, index: int) -> tuple[EventRecording, Tensor]:
        """Canvas ``index`` as events (sorted by time, stable) and its ``[K, 5]`` target."""
        parts, rows = [], []
        for sample, x, y in self.layout(index):
            recording, label = self.digits_source[sample]
            ev = recording.events
            moved = np.empty(len(ev), dtype=EVENT_DTYPE)
            moved["t"], moved["p"] = ev["t"], ev["p"]
            moved["x"] = ev["x"].astype(np.int64) + x
            moved["y"] = ev["y"].astype(np.int64) + y
            parts.append(moved)
            if self.box == "events":
                x0, y0, x1, y1 = digit_box(ev, self.min_pixel_events)
            else:
                x0, y0, x1, y1 = 0, 0, _SIDE, _SIDE
            rows.append((label, x + x0, y + y0, x + x1, y + y1))
        events = np.concatenate(parts)
        events = events[np.argsort(events["t"], kind="stable")]
        recording = EventRecording(events, self.sensor_size, f"NMNISTDetection canvas {index}")
        return recording, torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)

    def __getitem__(self, index: int) -> tuple[Any, Tensor]:
        recording, target = self.compose(index)
        sample: Any = recording
        if self.data_type == "frame":
            frames = to_frames(recording, self.frames_number, self.split_by)
            sample = torch.from_numpy(frames.astype(np.float32))
        if self.transform is not None:
            sample = self.transform(sample)
        return sample, target

    def __repr__(self) -> str:
        return (
            f"NMNISTDetection({'train' if self.train else 'test'}, {self.num_samples} canvases "
            f"{self.width}x{self.height}, {self.min_digits}-{self.max_digits} digits, "
            f"box={self.box!r}, seed={self.seed})"
        )
