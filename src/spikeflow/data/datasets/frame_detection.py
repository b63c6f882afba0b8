"""What the frame (camera image) detection datasets share: one record per image, the
letterbox (or stretch) to a fixed input size with the boxes moved alike, and the
ground truth in the image's own pixels that COCO's evaluation scores.

:class:`~spikeflow.data.datasets.coco_detection.COCODetection` and
:class:`~spikeflow.data.datasets.bdd100k_detection.BDD100KDetection` derive from
:class:`FrameDetectionDataset`. A sample is ``(image, target)``: the RGB image as a
float32 tensor ``[3, H, W]`` in ``[0, 1]`` (``(H, W)`` = ``image_size``), and the
``[K, 5]`` target of :mod:`spikeflow.detection.targets` (``class, x_min, y_min, x_max,
y_max`` in pixels of the resized image) of the image's objects, crowd regions left out
(they are no object to learn; COCO's evaluation ignores them). Spiking detectors see
the image as a static input: the training loop repeats it over the ``T`` steps (direct
encoding, the first layer's convolution turning pixels into currents), as for the
static image datasets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from spikeflow._checks import check_flag
from spikeflow.data._indexing import check_index
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.frame_transforms import int_pair
from spikeflow.data.image_transforms import pil_image_module
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = [
    "BOX_TOLERANCE",
    "FrameDetectionDataset",
    "ImageRecord",
    "check_image_boxes",
    "letterbox_geometry",
    "records_from_arrays",
]

#: How far (pixels) a box may reach past the image's border before it is an error; a box
#: within it is clipped to the image in the training target (COCO's own boxes overshoot
#: by rounding) and kept as it is in the ground truth that COCO's evaluation scores.
BOX_TOLERANCE = 1.0
#: The gray of the letterbox's padding (YOLO's 114 of 255).
PAD_VALUE = 114


@dataclass(frozen=True)
class ImageRecord:
    """One image and its annotations, in the image's own pixels.

    ``boxes [K, 4]`` float64 xyxy, ``classes [K]`` int64 (contiguous class indices),
    ``crowd [K]`` bool, ``area [K]`` float64 (COCO's annotation area: the mask's, which
    places the object in the small/medium/large ranges), ``ids`` the annotations' ids.
    """

    file: Path
    image_id: Any
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray
    crowd: np.ndarray
    area: np.ndarray
    ids: tuple[Any, ...]


def letterbox_geometry(
    width: int, height: int, size: tuple[int, int], mode: str
) -> tuple[int, int, int, int]:
    """``(new_width, new_height, left, top)``: the image's size after resizing into
    ``size`` ``(H, W)`` and its offset there. ``"letterbox"``: scaled by
    ``min(H / height, W / width)`` (sides rounded), centred, the rest padded (left and top
    padding ``(W - new_width) // 2``, ``(H - new_height) // 2``); ``"stretch"``: resized
    to ``W x H`` (aspect ratio not kept), no padding."""
    out_h, out_w = size
    if mode == "stretch":
        return out_w, out_h, 0, 0
    scale = min(out_h / height, out_w / width)
    new_w = min(out_w, max(1, round(width * scale)))
    new_h = min(out_h, max(1, round(height * scale)))
    return new_w, new_h, (out_w - new_w) // 2, (out_h - new_h) // 2


def check_image_boxes(
    boxes: np.ndarray, width: np.ndarray, height: np.ndarray, where: Callable[[int], str]
) -> np.ndarray:
    """Boxes ``[N, 4]`` ``x_min, y_min, x_max, y_max`` (pixels) checked against their
    images' ``width [N]`` and ``height [N]``, returned as float64 (a box may overshoot
    by :data:`BOX_TOLERANCE`). Zero-width or zero-height boxes pass.

    Raises:
        DataFormatError: the first box that is not finite, of negative size, or outside
            its image by more than :data:`BOX_TOLERANCE` (``where(i)`` names the file and
            the annotation of box ``i``).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    tol = BOX_TOLERANCE
    finite = np.isfinite(boxes).all(axis=1)
    safe = np.where(finite[:, None], boxes, 0.0)
    negative = (safe[:, 2] < safe[:, 0]) | (safe[:, 3] < safe[:, 1])
    outside = (
        (safe[:, 0] < -tol) | (safe[:, 1] < -tol)
        | (safe[:, 2] > width + tol) | (safe[:, 3] > height + tol)
    )  # fmt: skip
    bad = np.flatnonzero(~finite | negative | outside)
    if bad.size:
        i = int(bad[0])
        box = boxes[i].tolist()
        why = (
            "is not finite"
            if not finite[i]
            else "has a negative width or height"
            if negative[i]
            else f"lies outside the {int(width[i])}x{int(height[i])} image (by more than "
            f"{tol} pixel)"
        )
        raise DataFormatError(f"{where(i)}: the box (x_min, y_min, x_max, y_max) {box} {why}")
    return boxes


class FrameDetectionDataset(torch.utils.data.Dataset):
    """The base of the camera-image detection datasets (module docstring): a list of
    :class:`ImageRecord` (a subclass reads its annotation files into them), each image
    decoded with Pillow (the extra ``images``) when read, resized into ``image_size``.

    Subclasses set :attr:`classes` and :attr:`title`, and implement :meth:`_read_records`.

    Args:
        image_size: the output ``(H, W)`` (an int: square).
        resize: ``"letterbox"`` (default: aspect ratio kept, padded with gray 114) or
            ``"stretch"`` (resized to ``image_size``).
        keep_empty: keep the images without any annotation (default True: they teach
            the background, and COCO's evaluation counts their false positives); False
            drops them (an image with only crowd regions is not empty).
        transform: applied to the image tensor.
    """

    #: The class names; a target's class id indexes them.
    classes: ClassVar[tuple[str, ...]] = ()
    title: ClassVar[str] = "FrameDetectionDataset"
    #: The resize modes :attr:`resize` takes.
    resize_modes: ClassVar[tuple[str, ...]] = ("letterbox", "stretch")

    def __init__(
        self,
        image_size: int | Sequence[int] = 416,
        resize: str = "letterbox",
        keep_empty: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        title = self.title
        self.image_size: tuple[int, int] = int_pair(image_size, f"{title}: image_size", "(H, W)")
        if resize not in self.resize_modes:
            raise ConfigurationError(
                f"{title}: resize must be one of {', '.join(self.resize_modes)}; got {resize!r}"
            )
        self.resize = resize
        self.keep_empty = check_flag(title, "keep_empty", keep_empty)
        self.transform = transform
        pil_image_module(f"{title} (image files)")  # the extra, before reading anything
        records = self._read_records()
        if not self.keep_empty:
            records = [r for r in records if r.ids]
        self.records: list[ImageRecord] = records

    def _read_records(self) -> list[ImageRecord]:
        raise NotImplementedError

    # -- what the training run reads -----------------------------------------------------
    @property
    def sensor_size(self) -> tuple[int, int, int]:
        """``(W, H, 3)``: the output image's width, height and channels."""
        return self.image_size[1], self.image_size[0], 3

    def __len__(self) -> int:
        return len(self.records)

    def geometry(self, index: int) -> tuple[float, float, int, int]:
        """``(scale_x, scale_y, left, top)`` of image ``index``: a point ``(x, y)`` of the
        image lands on ``(x · scale_x + left, y · scale_y + top)`` of the output."""
        r = self.records[index]
        new_w, new_h, left, top = letterbox_geometry(r.width, r.height, self.image_size,
                                                     self.resize)  # fmt: skip
        return new_w / r.width, new_h / r.height, left, top

    def target(self, index: int) -> torch.Tensor:
        """The ``[K, 5]`` float32 target of image ``index`` in output pixels (boxes
        clipped to the image; crowd regions and zero-area boxes left out), without
        reading the image."""
        index = check_index(self.title, index, len(self))
        r = self.records[index]
        sx, sy, left, top = self.geometry(index)
        clipped = np.clip(r.boxes, 0.0, [r.width, r.height, r.width, r.height])
        keep = ~r.crowd & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        boxes = clipped[keep] * np.array([sx, sy, sx, sy]) + np.array([left, top, left, top])
        rows = np.concatenate([r.classes[keep, None].astype(np.float64), boxes], axis=1)
        return torch.from_numpy(rows.reshape(-1, 5)).to(torch.float32)

    def load_image(self, index: int) -> Any:
        """Image ``index`` decoded as an RGB PIL image (its own size, checked).

        Raises:
            DataFormatError: the file cannot be decoded, or its size is not the one its
                annotations give (the message names the file and the image id).
        """
        r = self.records[index]
        image_module = pil_image_module(f"{self.title} (image files)")
        try:
            with open(r.file, "rb") as fh:
                image = image_module.open(fh).convert("RGB")
        except FileNotFoundError:
            raise DataFormatError(f"{r.file}: image id {r.image_id!r}: the file is gone") from None
        except Exception as exc:  # Pillow raises many types on corrupt files
            raise DataFormatError(
                f"{r.file}: image id {r.image_id!r}: cannot decode the image: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if image.size != (r.width, r.height):
            raise DataFormatError(
                f"{r.file}: image id {r.image_id!r} is {image.size[0]}x{image.size[1]} pixels, "
                f"but its annotations say {r.width}x{r.height}"
            )
        return image

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        index = check_index(self.title, index, len(self))
        image = self.load_image(index)
        r = self.records[index]
        new_w, new_h, left, top = letterbox_geometry(r.width, r.height, self.image_size,
                                                     self.resize)  # fmt: skip
        image_module = pil_image_module()
        resized = image.resize((new_w, new_h), image_module.BILINEAR)
        out_h, out_w = self.image_size
        canvas = image_module.new("RGB", (out_w, out_h), (PAD_VALUE,) * 3)
        canvas.paste(resized, (left, top))
        pixels = torch.from_numpy(np.asarray(canvas, dtype=np.uint8).copy())
        sample: Any = pixels.permute(2, 0, 1).to(torch.float32).div_(255.0)
        if self.transform is not None:
            sample = self.transform(sample)
        return sample, self.target(index)

    # -- what COCO's evaluation reads ----------------------------------------------------
    def ground_truth(self, index: int) -> dict[str, torch.Tensor]:
        """Image ``index``'s annotations in its own pixels, as
        :class:`~spikeflow.detection.MeanAveragePrecision` takes them: ``boxes`` xyxy,
        ``labels``, ``iscrowd``, ``area`` (every annotation, boxes as the annotations
        give them, not clipped, as pycocotools reads them: a zero-area box is an object
        no detection can match, which counts in the recall as COCO's evaluation counts
        it, though the training target leaves it out)."""
        r = self.records[index]
        return {
            "boxes": torch.from_numpy(r.boxes.reshape(-1, 4).copy()),
            "labels": torch.from_numpy(r.classes.astype(np.int64)),
            "iscrowd": torch.from_numpy(r.crowd.astype(np.int64)),
            "area": torch.from_numpy(r.area.astype(np.float64)),
        }

    def to_original(self, index: int, boxes: torch.Tensor) -> torch.Tensor:
        """``boxes [N, 4]`` xyxy in output pixels of image ``index`` moved back to the
        image's own pixels (the letterbox undone), clipped to the image."""
        r = self.records[index]
        sx, sy, left, top = self.geometry(index)
        offset = boxes.new_tensor([left, top, left, top])
        scale = boxes.new_tensor([sx, sy, sx, sy])
        out = (boxes - offset) / scale
        limit = boxes.new_tensor([r.width, r.height, r.width, r.height])
        return torch.minimum(out.clamp(min=0), limit)

    def __repr__(self) -> str:
        return (
            f"{self.title}(samples={len(self)}, classes={len(self.classes)}, "
            f"image_size={self.image_size}, resize={self.resize!r}, keep_empty={self.keep_empty})"
        )


def check_images_present(
    records: Sequence[ImageRecord], folder: Path, keep_empty: bool, where: str, label: str
) -> None:
    """Raise if an image the records keep is not in ``folder`` (one listing, no per-file
    ``stat``); images without boxes count only when ``keep_empty``.

    Args:
        records: the images read from a json.
        folder: the image folder.
        keep_empty: whether images without boxes are kept.
        where: the message's start (``"COCODetection: <json>: image id"``).
        label: what a box is called in the json (``"annotation"``, ``"label"``).

    Raises:
        DatasetNotFoundError: naming the image, its first box id and the missing file.
    """
    with os.scandir(folder) as entries:
        present = {entry.name for entry in entries}
    for record in records:
        if (record.ids or keep_empty) and record.file.name not in present:
            which = f"{label} id {record.ids[0]!r}" if record.ids else f"no {label}"
            raise DatasetNotFoundError(
                f"{where} {record.image_id!r} ({which}) is the file {record.file}, which is missing"
            )


def records_from_arrays(
    files: Sequence[Path],
    image_ids: Sequence[Any],
    sizes: np.ndarray,
    owner: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    crowd: np.ndarray,
    area: np.ndarray,
    ids: Sequence[Any],
) -> list[ImageRecord]:
    """One :class:`ImageRecord` per image from the annotations' flat arrays (``owner[j]``:
    the image index of annotation ``j``; ``sizes [I, 2]``: width, height), each image's
    annotations in their file order."""
    order = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[order], np.arange(len(files) + 1))
    records = []
    for i, file in enumerate(files):
        sel = order[starts[i] : starts[i + 1]]
        records.append(
            ImageRecord(
                file=file,
                image_id=image_ids[i],
                width=int(sizes[i, 0]),
                height=int(sizes[i, 1]),
                boxes=boxes[sel].reshape(-1, 4),
                classes=classes[sel].astype(np.int64),
                crowd=crowd[sel].astype(bool),
                area=area[sel].astype(np.float64),
                ids=tuple(ids[j] for j in sel.tolist()),
            )
        )
    return records
