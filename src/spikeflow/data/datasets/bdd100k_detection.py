"""BDD100K object detection (Yu et al. 2020; 70,000 training and 10,000 validation
1280x720 dash-camera frames, 10 classes) from the official 100K release, with its label
json read here; Pillow is the optional extra ``images``.

Layout under ``root`` (as ``bdd100k_images_100k.zip`` and ``bdd100k_det_20_labels.zip``
extract)::

    images/100k/train/<name>.jpg ...     images/100k/val/<name>.jpg ...
    labels/det_20/det_train.json         labels/det_20/det_val.json

(without ``det_20``, the 2018 release's ``labels/bdd100k_labels_images_<split>.json``.)
Each label file is a list of frames ``{"name": ..., "labels": [{"id": ..., "category":
..., "box2d": {"x1", "y1", "x2", "y2"}, "attributes": {...}}, ...]}`` (``labels`` may be
missing or null: a frame with no object; a frame listed twice is an error). The 10
classes are :data:`BDD100K_CLASSES`, in the order of BDD100K's detection config; the
2018 release's names (``person``, ``motor``, ``bike``) are read as ``pedestrian``,
``motorcycle``, ``bicycle``, and ``caravan`` and ``van`` as ``car``, as BDD100K's
detection config maps them. As
BDD100K's own evaluation does, ``other person``, ``other vehicle`` and ``trailer`` are
ignored regions of ``pedestrian``, ``car`` and ``truck`` (as are labels marked
``"crowd": true``): left out of the training target, kept as crowd regions in
:meth:`ground_truth`. Labels without ``box2d`` (lanes, drivable areas) are skipped; one
of a detection class without ``box2d`` is an error.
Samples are as :class:`~spikeflow.data.datasets.frame_detection.FrameDetectionDataset`
makes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeflow.data.datasets._common import shown_path
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.datasets.coco_detection import read_json_file
from spikeflow.data.datasets.frame_detection import (
    FrameDetectionDataset,
    ImageRecord,
    check_image_boxes,
    check_images_present,
    records_from_arrays,
)
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["BDD100K_CLASSES", "BDD100KDetection"]

#: The 10 detection classes, in BDD100K's order (class id = index).
BDD100K_CLASSES = (
    "pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    "traffic light", "traffic sign",
)  # fmt: skip
#: The other names BDD100K's detection config (``configs/det.toml``, ``name_mapping``)
#: reads as a class: the 2018 release's ``person``, ``motor``, ``bike``, and ``caravan``
#: and ``van`` (cars).
LEGACY_NAMES = {
    "person": "pedestrian", "motor": "motorcycle", "bike": "bicycle", "caravan": "car",
    "van": "car",
}  # fmt: skip
#: The categories BDD100K's evaluation ignores, and the class whose ignored region each is.
IGNORED_CATEGORIES = {"other person": "pedestrian", "other vehicle": "car", "trailer": "truck"}
#: Every frame of the 100K release is 1280x720.
BDD100K_SIZE = (1280, 720)


class BDD100KDetection(FrameDetectionDataset):
    """BDD100K detection (module docstring): ``(image [3, H, W], target [K, 5])`` samples.

    Args:
        root: the folder holding ``images/100k/`` and ``labels/det_20/``.
        split: ``"train"`` or ``"val"``.
        label_file: another label json (same schema) to read in place of
            ``labels/det_20/det_<split>.json`` (or, without it, the 2018 release's
            ``labels/bdd100k_labels_images_<split>.json``).
        image_size, resize, keep_empty, transform: as
            :class:`~spikeflow.data.datasets.frame_detection.FrameDetectionDataset`
            (default 416x416, letterboxed, frames without labels kept).

    Raises:
        DatasetNotFoundError: no label json or image folder, or a labelled frame whose
            image is missing (named, with its first label id).
        DataFormatError: a json that is not BDD100K's frame list: an unknown category, a
            malformed box or one outside the 1280x720 frame, a detection class without
            ``box2d`` (naming the json, the frame and the label id); ``labels`` that is
            not a list or null, a frame listed twice; a frame whose image is not
            1280x720 (when read).
        MissingExtraError: Pillow is not installed (extra ``images``).
    """

    title = "BDD100KDetection"
    classes = BDD100K_CLASSES

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        label_file: str | os.PathLike | None = None,
        image_size: int | Sequence[int] = 416,
        resize: str = "letterbox",
        keep_empty: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        if split not in ("train", "val"):
            raise ConfigurationError(
                f"BDD100KDetection: split must be 'train' or 'val'; got {split!r}"
            )
        self.root = Path(root)
        self.split = split
        self.image_folder = self.root / "images" / "100k" / split
        det_20 = self.root / "labels" / "det_20" / f"det_{split}.json"
        release_2018 = self.root / "labels" / f"bdd100k_labels_images_{split}.json"
        if label_file is not None:
            self.label_file = Path(label_file)
        else:  # the 2020 detection labels, else the 2018 release's label file
            self.label_file = (
                det_20 if det_20.is_file() or not release_2018.is_file() else release_2018
            )

        super().__init__(image_size, resize, keep_empty, transform)

    def _read_records(self) -> list[ImageRecord]:
        path = self.label_file
        layout = (f"<root>/images/100k/{self.split}/*.jpg and "
                  f"<root>/labels/det_20/det_{self.split}.json (or the 2018 release's "
                  f"<root>/labels/bdd100k_labels_images_{self.split}.json)")  # fmt: skip
        folder = self.image_folder
        for what, where, ok in (
            ("label file", path, path.is_file()),
            ("image folder", folder, folder.is_dir()),
        ):
            if not ok:
                raise DatasetNotFoundError(
                    f"BDD100KDetection ({self.split}): no {what} {shown_path(where)}. Expected "
                    f"layout: {layout} (bdd-data.berkeley.edu: the 100K images and the "
                    "detection 2020 labels)"
                )
        frames = read_json_file(path, self.title)
        if not isinstance(frames, list):
            raise DataFormatError(f"BDD100KDetection: {path} is not a list of frames")
        class_of = {name: i for i, name in enumerate(BDD100K_CLASSES)}
        files, names, owner, classes, crowd, boxes, ids = [], [], [], [], [], [], []
        seen: set[str] = set()
        for f, frame in enumerate(frames):
            if not isinstance(frame, dict) or not isinstance(frame.get("name"), str):
                raise DataFormatError(f"BDD100KDetection: {path}: frame [{f}] has no 'name'")
            where = f"BDD100KDetection: {path}: frame {frame['name']!r}"
            if frame["name"] in seen:
                raise DataFormatError(f"{where} (frame [{f}]) is listed twice")
            seen.add(frame["name"])
            labels = frame.get("labels")
            labels = [] if labels is None else labels  # null or missing: no object
            if not isinstance(labels, list):
                raise DataFormatError(
                    f"{where}: 'labels' must be a list (or null); got {type(labels).__name__}"
                )
            for k, label in enumerate(labels):
                if not isinstance(label, dict):
                    raise DataFormatError(f"{where}: labels[{k}] is not an object")
                box = label.get("box2d")
                lid = label.get("id", k)
                category = label.get("category")
                category = LEGACY_NAMES.get(category, category)
                ignored = category in IGNORED_CATEGORIES
                name = IGNORED_CATEGORIES.get(category, category)
                if box is None and name not in class_of:
                    continue  # a lane or drivable area (poly2d)
                if box is None:
                    raise DataFormatError(
                        f"{where}: label id {lid!r}: category {category!r} has no box2d"
                    )
                if name not in class_of:
                    raise DataFormatError(
                        f"{where}: label id {lid!r}: category {category!r} is not one of the "
                        f"detection classes ({', '.join(BDD100K_CLASSES)}) or ignored ones "
                        f"({', '.join(IGNORED_CATEGORIES)})"
                    )
                try:
                    xyxy = [box[key] for key in ("x1", "y1", "x2", "y2")]
                    if not all(type(v) in (int, float) for v in xyxy):
                        raise TypeError
                except (KeyError, TypeError):
                    raise DataFormatError(
                        f"{where}: label id {lid!r}: box2d must hold numbers x1, y1, x2, y2; "
                        f"got {box!r}"
                    ) from None
                attributes = label.get("attributes") or {}
                if not isinstance(attributes, dict):
                    raise DataFormatError(
                        f"{where}: label id {lid!r}: attributes must be an object"
                    )
                owner.append(len(files))
                classes.append(class_of[name])
                crowd.append(ignored or bool(attributes.get("crowd", False)))
                boxes.append(xyxy)
                ids.append(lid)
            files.append(self.image_folder / frame["name"])
            names.append(frame["name"])
        width, height = BDD100K_SIZE
        owners = np.asarray(owner, dtype=np.int64)
        checked = check_image_boxes(
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            np.full(len(ids), width), np.full(len(ids), height),
            lambda j: f"BDD100KDetection: {path}: frame {names[owners[j]]!r}: label id {ids[j]!r}",
        )  # fmt: skip
        area = (checked[:, 2] - checked[:, 0]) * (checked[:, 3] - checked[:, 1])
        sizes = np.tile(np.asarray(BDD100K_SIZE, dtype=np.int64), (len(files), 1))
        records = records_from_arrays(files, names, sizes, owners, checked,
                                      np.asarray(classes, dtype=np.int64),
                                      np.asarray(crowd, dtype=bool), area, ids)  # fmt: skip
        check_images_present(records, self.image_folder, self.keep_empty,
                             f"BDD100KDetection: {path}: frame", "label")  # fmt: skip
        return records

    def __repr__(self) -> str:
        return (
            super()
            .__repr__()
            .replace(
                "BDD100KDetection(",
                f"BDD100KDetection(root={str(self.root)!r}, split={self.split!r}, ",
                1,
            )
        )
