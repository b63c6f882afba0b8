"""COCO's crowd regions (``iscrowd``) and annotation areas in
:class:`~spikeflow.detection.MeanAveragePrecision`: pycocotools' ``COCOeval`` as the
reference (skipped when it is not installed), and a hand-worked image."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from spikeflow.detection import Detections, MeanAveragePrecision
from spikeflow.errors import ShapeError
from spikeflow.training.detection_task import COCO_KEYS


def _dets(boxes, scores, classes):
    return Detections(
        torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
        torch.tensor(scores, dtype=torch.float64),
        torch.tensor(classes, dtype=torch.int64),
    )


def _target(boxes, labels, crowd, area=None):
    out = {
        "boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "iscrowd": torch.tensor(crowd, dtype=torch.int64),
    }
    if area is not None:
        out["area"] = torch.tensor(area, dtype=torch.float64)
    return out


def test_a_crowd_region_takes_many_detections_and_counts_in_no_recall():
    # one plain object and one crowd region of class 0; detections: one on the object
    # (0.9), two inside the crowd region ranked first (0.97, 0.95: its IoU is over their
    # own area, 1; theirs with it as a plain box is 0.01)
    target = _target([[0, 0, 10, 10], [20, 0, 120, 100]], [0, 0], [0, 1])
    dets = _dets([[0, 0, 10, 10], [30, 10, 40, 20], [50, 10, 60, 20]], [0.9, 0.97, 0.95], [0, 0, 0])
    metric = MeanAveragePrecision()
    metric.update([dets], [target])
    out = metric.compute()
    assert out["map"] == pytest.approx(1.0) and out["mar_100"] == pytest.approx(1.0)
    assert out["map_voc50"] == pytest.approx(1.0)  # the crowd region is "difficult"
    # as plain boxes, the two small detections are false positives (and the region a
    # missed object): precision 1/3 up to recall 1/2, then none
    plain = MeanAveragePrecision()
    plain.update([dets], [_target([[0, 0, 10, 10], [20, 0, 120, 100]], [0, 0], [0, 0])])
    out = plain.compute()
    assert out["map"] == pytest.approx(51 / 101 / 3) and out["map_voc50"] == pytest.approx(1 / 6)


@pytest.mark.parametrize("crowd_first", [True, False])
def test_voc_matches_a_detection_to_its_object_before_a_crowd_region(crowd_first):
    # a person [10, 10, 30, 30] at the edge of a crowd region [20, 0, 120, 100]; the
    # detection [16, 10, 36, 30] has IoU 280/520 = 0.54 with the person and lies 320/400
    # = 0.8 inside the region: it is the person's true positive (COCO's AP@0.5 is 1), not
    # a detection ignored on the crowd region with the person missed (VOC AP 0)
    boxes, crowd = [[20, 0, 120, 100], [10, 10, 30, 30]], [1, 0]
    if not crowd_first:
        boxes, crowd = boxes[::-1], crowd[::-1]
    metric = MeanAveragePrecision()
    metric.update([_dets([[16, 10, 36, 30]], [0.9], [0])], [_target(boxes, [0, 0], crowd)])
    out = metric.compute()
    assert out["map_50"] == pytest.approx(1.0) and out["map_voc50"] == pytest.approx(1.0)
    # a second detection inside the region, matching no object, is ignored (not a false
    # positive); a duplicate on the person is one
    metric.update(
        [_dets([[16, 10, 36, 30], [60, 40, 80, 60], [15, 10, 35, 30]], [0.9, 0.95, 0.8], [0] * 3)],
        [_target(boxes, [0, 0], crowd)],
    )
    # ranked: 0.95 (ignored), 0.9 (TP of image 0), 0.9 (TP of image 1), 0.8 (FP):
    # precision 1 up to recall 1
    assert metric.compute()["map_voc50"] == pytest.approx(1.0)


def test_the_given_area_places_a_ground_truth_in_the_area_ranges():
    # a 40x40 box (1600 px², medium) whose annotation area (its mask's) is 900 (small)
    target = _target([[0, 0, 40, 40]], [0], [0], area=[900.0])
    metric = MeanAveragePrecision()
    metric.update([_dets([[0, 0, 40, 40]], [0.9], [0])], [target])
    out = metric.compute()
    assert out["map_small"] == pytest.approx(1.0) and np.isnan(out["map_medium"])


def test_malformed_crowd_flags_are_named():
    target = _target([[0, 0, 4, 4]], [0], [0])
    target["iscrowd"] = torch.tensor([0, 1])
    with pytest.raises(ShapeError, match=r"targets\[0\] iscrowd"):
        MeanAveragePrecision().update([_dets([], [], [])], [target])


def _random_crowd_dataset(seed):
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(8):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 150, (n, 2))
        wh = rng.uniform(4, 120, (n, 2))
        gt = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(0, 3, n)
        crowd = rng.random(n) < 0.3
        area = np.prod(wh, 1) * rng.uniform(0.3, 1.0, n)  # a mask's area: under the box's
        m = int(rng.integers(0, 12))
        pick = rng.integers(0, max(n, 1), m)
        jitter = rng.normal(0, 6, (m, 4))
        boxes = gt[pick] + jitter if n else rng.uniform(0, 150, (m, 4))
        boxes = np.concatenate([boxes[:, :2], np.maximum(boxes[:, 2:], boxes[:, :2] + 1)], 1)
        classes = labels[pick] if n else rng.integers(0, 3, m)
        flip = rng.random(m) < 0.2
        classes = np.where(flip, rng.integers(0, 3, m), classes)
        preds.append(_dets(boxes.tolist(), rng.random(m).tolist(), classes.tolist()))
        targets.append(_target(gt.tolist(), labels.tolist(), crowd.astype(int).tolist(), area))
    return preds, targets


def _pycocotools_stats(preds, targets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, results = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets), start=1):
        images.append({"id": i})
        for (x0, y0, x1, y1), c, crowd, area in zip(
            t["boxes"].tolist(), t["labels"].tolist(), t["iscrowd"].tolist(), t["area"].tolist()
        ):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c + 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area,
                         "iscrowd": crowd})  # fmt: skip
        for (x0, y0, x1, y1), s, c in zip(p.boxes.tolist(), p.scores.tolist(), p.classes.tolist()):
            results.append({"image_id": i, "category_id": c + 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": s})  # fmt: skip
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c} for c in (1, 2, 3)]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.where(evaluation.stats > -1, evaluation.stats, np.nan)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_crowd_regions_and_areas_equal_pycocotools(seed):
    pytest.importorskip("pycocotools", reason="pycocotools (the COCO reference) is not installed")
    preds, targets = _random_crowd_dataset(seed)
    assert any(bool(t["iscrowd"].any()) for t in targets)
    metric = MeanAveragePrecision()
    metric.update(preds, targets)
    ours = metric.compute()
    reference = _pycocotools_stats(preds, targets)
    np.testing.assert_allclose([ours[k] for k in COCO_KEYS], reference, rtol=0, atol=1e-12)
