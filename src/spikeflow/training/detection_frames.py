"""The camera-image detection datasets of ``spikeflow train`` (``--dataset coco``,
``bdd100k``): how their splits are built from ``--data-dir`` and ``--dataset-kwargs``,
and how their evaluation scores detections as COCO's does, in each image's own pixels
with its crowd regions (:mod:`spikeflow.training.detection_task` calls both)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from spikeflow.detection.metrics import Detections
from spikeflow.errors import ConfigurationError
from spikeflow.training.config import TrainConfig

__all__ = [
    "FRAME_DETECTION_DATASETS",
    "build_frame_splits",
    "in_image_id_order",
    "original_pixels",
]

#: ``--dataset`` name -> (class path, the folder ``--data-dir`` names).
FRAME_DETECTION_DATASETS = {
    "coco": ("COCODetection", "the folder holding train2017/, val2017/ and annotations/"),
    "bdd100k": ("BDD100KDetection", "the folder holding images/100k/ and labels/det_20/"),
}

#: What the run sets of the datasets' arguments, and how.
_SET_HERE = {
    "root": "set by --data-dir",
    "split": "set by the run (train, and val as the test split)",
    "transform": "Python only (a function)",
    "annotation_file": "the run reads the official json of each split",
    "label_file": "the run reads the official json of each split",
}


def _dataset_class(name: str) -> type:
    from spikeflow.data.datasets.bdd100k_detection import BDD100KDetection
    from spikeflow.data.datasets.coco_detection import COCODetection

    return COCODetection if name == "coco" else BDD100KDetection


def build_frame_splits(
    name: str,
    config: TrainConfig,
    with_train: bool,
    kwargs_of: Callable[[TrainConfig, type, dict[str, str]], dict[str, Any]],
) -> tuple[Dataset | None, Dataset]:
    """The train split (None unless ``with_train``) and the ``val`` split (the test
    split) of ``--dataset name``, with ``--dataset-kwargs`` (``image_size``, ``resize``,
    ``keep_empty``, ``year``; checked by ``kwargs_of``). ``keep_empty`` is the train
    split's: the test split keeps every image, as COCO's evaluation scores them all.

    Raises:
        ConfigurationError: ``--download`` or ``--cache-dir`` (nothing to download or
            cache), or a ``--dataset-kwargs`` key the dataset does not take.
    """
    cls = _dataset_class(name)
    if config.download:
        raise ConfigurationError(
            f"--download: {cls.__name__} is not downloaded automatically (its archives are "
            f"tens of GB); get them from its site: see help(spikeflow.data.{cls.__name__})"
        )
    if config.cache_dir is not None:
        raise ConfigurationError(
            f"--cache-dir {config.cache_dir}: dataset {name!r} decodes each JPEG as it is "
            "read and caches no frames: leave it out"
        )
    kwargs = kwargs_of(config, cls, _SET_HERE)
    train = cls(config.data_dir, "train", **kwargs) if with_train else None
    # the test split keeps its images without objects whatever keep_empty says: COCO's
    # evaluation of the official json counts the false positives on them
    return train, cls(config.data_dir, "val", **{**kwargs, "keep_empty": True})


def _base_and_indices(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """The dataset under any :class:`Subset` of ``dataset``, and the base index of each
    of ``dataset``'s samples."""
    indices = list(range(len(dataset)))  # type: ignore[arg-type]
    while isinstance(dataset, Subset):
        indices = [int(dataset.indices[i]) for i in indices]
        dataset = dataset.dataset
    return dataset, indices


def original_pixels(
    dataset: Dataset,
) -> Callable[[list[int], list[Detections]], tuple[list[Detections], list[Any]]] | None:
    """For a camera-image detection dataset (one with ``ground_truth`` and
    ``to_original``; or a Subset of one): a function that takes the sample indices of a
    batch and its detections (in the resized image's pixels) and returns them moved back
    to each image's own pixels with each image's ground truth there (crowd regions and
    annotation areas included), as COCO's evaluation scores them. None for any other."""
    base, indices = _base_and_indices(dataset)
    if not (hasattr(base, "ground_truth") and hasattr(base, "to_original")):
        return None

    def convert(batch: list[int], dets: list[Detections]) -> tuple[list[Detections], list[Any]]:
        moved, truths = [], []
        for i, d in zip(batch, dets, strict=True):
            j = indices[i]
            boxes = base.to_original(j, d.boxes.to(torch.float64))  # type: ignore[attr-defined]
            moved.append(Detections(boxes, d.scores, d.classes))
            truths.append(base.ground_truth(j))  # type: ignore[attr-defined]
        return moved, truths

    return convert


def in_image_id_order(
    dataset: Dataset, found: list[tuple[list[Detections], list[Any], list[int]]]
) -> list[tuple[list[Detections], list[Any], list[int]]]:
    """The evaluation's ``(detections, ground truths, sample indices)`` batches of
    ``dataset`` (a camera-image detection dataset or a Subset of one) as one entry per
    image, ordered by image id (ints before strings). COCO's ``accumulate`` ranks the
    detections of all images by score with a stable sort over the images in sorted id
    order, so detections of equal score (spike counts over ``T`` make them common) count
    in that order; the json's order (val2017's is not by id) or the processes' share
    would give another precision-recall curve."""
    base, indices = _base_and_indices(dataset)
    images = [
        ([d], [t], [i]) for dets, truths, batch in found for d, t, i in zip(dets, truths, batch)
    ]

    def key(entry: tuple[list[Detections], list[Any], list[int]]) -> tuple[bool, Any]:
        image_id = base.records[indices[entry[2][0]]].image_id  # type: ignore[attr-defined]
        return isinstance(image_id, str), image_id

    return sorted(images, key=key)
