"""COCO object detection (Lin et al. 2014; the 2017 split: 118,287 training and 5,000
validation images, 80 classes) from its official files, with the instances json read
here (no pycocotools needed); Pillow is the optional extra ``images``.

Layout under ``root`` (as the official zips extract)::

    train2017/000000000009.jpg ...          val2017/000000000139.jpg ...
    annotations/instances_train2017.json    annotations/instances_val2017.json

(or the image folders under ``images/``, Lava-DL's layout).

The json's ``categories`` (80 for COCO, ids 1..90 with gaps) become the contiguous
class indices 0..79 **in the json's order**; a box ``[x, y, w, h]`` becomes
``(x, y, x + w, y + h)``. Crowd annotations (``iscrowd: 1``) are left out of the
training target and kept, as ignored regions, in :meth:`ground_truth`, which COCO's
evaluation scores (docs/detection.md); samples are as
:class:`~spikeflow.data.datasets.frame_detection.FrameDetectionDataset` makes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeflow.data.datasets._common import shown_path
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.datasets.frame_detection import (
    FrameDetectionDataset,
    ImageRecord,
    check_image_boxes,
    check_images_present,
    records_from_arrays,
)
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["COCODetection", "read_json_file"]

#: The splits and the folder/json name stem of each (``<split><year>``).
COCO_SPLITS = ("train", "val")


def read_json_file(path: Path, title: str) -> Any:
    """The JSON document of ``path``.

    Raises:
        DataFormatError: the file is not valid JSON (the message names it and where).
    """
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{title}: {path}: not valid JSON at line {exc.lineno}, column {exc.colno} "
            f"(offset {exc.pos}): {exc.msg}"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{title}: {path}: not UTF-8 text at offset {exc.start}") from None


#: What ``iscrowd`` may be (0 / 1, or false / true); ``area`` left out: the box's area.
_FLAG_TYPES = (int, bool)
_NO_AREA = object()
_INF = float("inf")


def _check_unique_ids(ids: list[Any], path: Path) -> None:
    """Raise a DataFormatError naming the first annotation id that is not a number or
    string or that two annotations share (pycocotools keeps one annotation per id, and
    the errors here name annotations by id)."""
    try:
        if len(set(ids)) == len(ids):
            return
    except TypeError:
        pass
    seen: set[Any] = set()
    for j, aid in enumerate(ids):
        if type(aid) not in (int, float, str):
            raise DataFormatError(
                f"COCODetection: {path}: annotations[{j}]: id must be a number or a string; "
                f"got {aid!r}"
            )
        if aid in seen:
            raise DataFormatError(
                f"COCODetection: {path}: annotation id {aid!r} is used twice (annotations[{j}] "
                "and an earlier one)"
            )
        seen.add(aid)


def _field(item: Any, key: str, where: str) -> Any:
    if not isinstance(item, dict) or key not in item:
        raise DataFormatError(f"{where} has no {key!r}")
    return item[key]


class COCODetection(FrameDetectionDataset):
    """COCO detection (module docstring): ``(image [3, H, W], target [K, 5])`` samples.

    Args:
        root: the folder holding ``<split><year>/`` and ``annotations/``.
        split: ``"train"`` or ``"val"``.
        year: the release, ``"2017"`` (default) or ``"2014"``.
        annotation_file: another instances json (same schema) to read in place of
            ``annotations/instances_<split><year>.json``.
        image_size, resize, keep_empty, transform: as
            :class:`~spikeflow.data.datasets.frame_detection.FrameDetectionDataset`
            (default 416x416, letterboxed, images without annotations kept).

    Raises:
        DatasetNotFoundError: no annotation json or image folder, or an image the json
            lists missing from the folder (named, with an annotation id of it).
        DataFormatError: a json that is not COCO's instances schema: an annotation of an
            image id or a category id the json does not list, a malformed or negative
            box, or one outside its image, an ``iscrowd`` other than 0/1, an ``area``
            that is not a finite number >= 0 (left out, the box's area is used), an
            annotation id used twice (each names the json and the annotation id); an
            image without a file name or with non-int sizes.
        MissingExtraError: Pillow is not installed (extra ``images``).
    """

    title = "COCODetection"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        year: str = "2017",
        annotation_file: str | os.PathLike | None = None,
        image_size: int | Sequence[int] = 416,
        resize: str = "letterbox",
        keep_empty: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        if split not in COCO_SPLITS:
            raise ConfigurationError(
                f"COCODetection: split must be 'train' or 'val'; got {split!r}"
            )
        if not isinstance(year, str) or not year.isdigit():
            raise ConfigurationError(
                f"COCODetection: year must be a string such as '2017'; got {year!r}"
            )
        self.root = Path(root)
        self.split = split
        self.year = year
        folder = self.root / f"{split}{year}"
        lava = self.root / "images" / f"{split}{year}"  # Lava-DL's COCO layout
        self.image_folder = lava if not folder.is_dir() and lava.is_dir() else folder
        self.annotation_file = (
            self.root / "annotations" / f"instances_{split}{year}.json"
            if annotation_file is None
            else Path(annotation_file)
        )
        #: The json's category ids, in its order (class ``i`` is ``category_ids[i]``).
        self.category_ids: tuple[int, ...] = ()
        super().__init__(image_size, resize, keep_empty, transform)

    def _layout(self) -> str:
        return (f"<root>/{self.split}{self.year}/*.jpg and "
                f"<root>/annotations/instances_{self.split}{self.year}.json")  # fmt: skip

    def _read_records(self) -> list[ImageRecord]:
        path = self.annotation_file
        if not path.is_file():
            raise DatasetNotFoundError(
                f"COCODetection ({self.split}): no annotation file {shown_path(path)}. Expected "
                f"layout: {self._layout()} (cocodataset.org/#download: "
                f"{self.split}{self.year}.zip and annotations_trainval{self.year}.zip)"
            )
        if not self.image_folder.is_dir():
            raise DatasetNotFoundError(
                f"COCODetection ({self.split}): no image folder {shown_path(self.image_folder)}. "
                f"Expected layout: {self._layout()}"
            )
        doc = read_json_file(path, self.title)
        for key in ("images", "annotations", "categories"):
            if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
                raise DataFormatError(
                    f"COCODetection: {path} is not a COCO instances file: no {key!r} list"
                )
        names, category_index = self._categories(doc["categories"], path)
        files, image_ids, sizes, image_index = self._images(doc["images"], path)
        records = self._annotations(doc["annotations"], path, files, image_ids, sizes,
                                    image_index, category_index)  # fmt: skip
        self.classes = tuple(names)  # type: ignore[misc]
        check_images_present(records, self.image_folder, self.keep_empty,
                             f"COCODetection: {path}: image id", "annotation")  # fmt: skip
        return records

    def _categories(self, categories: list[Any], path: Path) -> tuple[list[str], dict[Any, int]]:
        names, index = [], {}
        for i, cat in enumerate(categories):
            cid = _field(cat, "id", f"COCODetection: {path}: categories[{i}]")
            if type(cid) not in (int, str):
                raise DataFormatError(
                    f"COCODetection: {path}: categories[{i}]: id must be an int or a string; "
                    f"got {cid!r}"
                )
            if cid in index:
                raise DataFormatError(f"COCODetection: {path}: category id {cid!r} is listed twice")
            index[cid] = len(names)
            names.append(str(cat.get("name", cid)))
        if not names:
            raise DataFormatError(f"COCODetection: {path}: the categories list is empty")
        self.category_ids = tuple(index)
        return names, index

    def _images(
        self, images: list[Any], path: Path
    ) -> tuple[list[Path], list[Any], np.ndarray, dict[Any, int]]:
        files, ids, sizes, index = [], [], [], {}
        for i, image in enumerate(images):
            where = f"COCODetection: {path}: images[{i}]"
            image_id = _field(image, "id", where)
            name = _field(image, "file_name", where)
            width, height = _field(image, "width", where), _field(image, "height", where)
            if not isinstance(name, str) or not name:
                raise DataFormatError(f"{where} (id {image_id!r}): file_name must be a file "
                                      f"name; got {name!r}")  # fmt: skip
            if not all(type(v) is int and v > 0 for v in (width, height)):
                raise DataFormatError(f"{where} (id {image_id!r}): width and height must be "
                                      f"positive ints; got {width!r}, {height!r}")  # fmt: skip
            if type(image_id) not in (int, str):
                raise DataFormatError(f"{where}: id must be an int or a string; got {image_id!r}")
            if image_id in index:
                raise DataFormatError(f"{where}: image id {image_id!r} is listed twice")
            index[image_id] = len(files)
            files.append(self.image_folder / name)
            ids.append(image_id)
            sizes.append((width, height))
        return files, ids, np.asarray(sizes, dtype=np.int64).reshape(-1, 2), index

    def _annotations(
        self,
        annotations: list[Any],
        path: Path,
        files: list[Path],
        image_ids: list[Any],
        sizes: np.ndarray,
        image_index: dict[Any, int],
        category_index: dict[Any, int],
    ) -> list[ImageRecord]:
        n = len(annotations)
        owner = np.empty(n, dtype=np.int64)
        classes = np.empty(n, dtype=np.int64)
        crowd = np.zeros(n, dtype=bool)
        area = np.empty(n, dtype=np.float64)
        boxes_given, ids = [], []
        number = (int, float)
        for j, ann in enumerate(annotations):
            try:  # the common case first: no message is built for a good annotation
                aid, box = ann["id"], ann["bbox"]
                o, c = image_index[ann["image_id"]], category_index[ann["category_id"]]
                ok = type(box) is list and len(box) == 4 and all(type(v) in number for v in box)
                flag, given = ann.get("iscrowd", 0), ann.get("area", _NO_AREA)
                ok = ok and type(flag) in _FLAG_TYPES and flag in (0, 1)
                ok = ok and (given is _NO_AREA or (type(given) in number and 0 <= given < _INF))
            except (KeyError, TypeError):
                ok = False
            if not ok:
                self._bad_annotation(ann, j, path, image_index, category_index)
            owner[j], classes[j] = o, c
            boxes_given.append(box)
            crowd[j] = bool(flag)
            area[j] = box[2] * box[3] if given is _NO_AREA else given
            ids.append(aid)
        _check_unique_ids(ids, path)
        xywh = np.asarray(boxes_given, dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        boxes = check_image_boxes(
            xyxy, sizes[owner, 0], sizes[owner, 1],
            lambda j: f"COCODetection: {path}: annotation id {ids[j]!r} (image "
                      f"{files[owner[j]].name})",
        )  # fmt: skip
        return records_from_arrays(files, image_ids, sizes, owner, boxes, classes, crowd,
                                   area, ids)  # fmt: skip

    @staticmethod
    def _bad_annotation(
        ann: Any, j: int, path: Path, image_index: dict[Any, int], category_index: dict[Any, int]
    ) -> None:
        """Raise the DataFormatError that says what is wrong with annotation ``j``."""
        aid = _field(ann, "id", f"COCODetection: {path}: annotations[{j}]")
        where = f"COCODetection: {path}: annotation id {aid!r}"
        image_id, cat = _field(ann, "image_id", where), _field(ann, "category_id", where)
        box = _field(ann, "bbox", where)
        try:  # a list or dict id is not hashable
            image_known, cat_known = image_id in image_index, cat in category_index
        except TypeError:
            raise DataFormatError(f"{where}: image_id and category_id must be numbers") from None
        if not image_known:
            raise DataFormatError(f"{where}: image_id {image_id!r} is not in the images list")
        if not cat_known:
            raise DataFormatError(
                f"{where}: category_id {cat!r} is not in the categories list "
                f"({', '.join(map(str, category_index))})"
            )
        if not (type(box) is list and len(box) == 4 and all(type(v) in (int, float) for v in box)):
            raise DataFormatError(
                f"{where}: bbox must be [x, y, width, height] numbers; got {box!r}"
            )
        flag = ann.get("iscrowd", 0)
        if not (type(flag) in _FLAG_TYPES and flag in (0, 1)):
            raise DataFormatError(f"{where}: iscrowd must be 0 or 1; got {flag!r}")
        raise DataFormatError(
            f"{where}: area must be a finite number >= 0 (the mask's area; leave it out for "
            f"the box's); got {ann.get('area')!r}"
        )

    def __repr__(self) -> str:
        return (
            super()
            .__repr__()
            .replace(
                "COCODetection(",
                f"COCODetection(root={str(self.root)!r}, split={self.split!r}, ",
                1,
            )
        )
