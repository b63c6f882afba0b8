"""MeanAveragePrecision: COCO and VOC numbers derived by hand, batch-by-batch
accumulation, pycocotools as the reference (skipped when it is not installed), and the
errors on malformed predictions and targets."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch

from spikeflow.detection import Detections, MeanAveragePrecision
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

COCO_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")  # fmt: skip


def dets(boxes: list[list[float]], scores: list[float], classes: list[int]) -> Detections:
    return Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(classes, dtype=torch.long),
    )


def target(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)


def test_coco_and_voc_of_a_hand_worked_image():
    # Ground truth A = [0,0,10,10], B = [20,20,30,30]. Detections by score: A exactly
    # (TP at every threshold), a box on B with IoU 100/150 = 0.667 (TP at 0.50..0.65,
    # FP at 0.70..0.95), a box on nothing (FP).
    # TP, TP, FP: recall .5, 1, 1, precision 1, 1, .67 -> every recall point reads 1.
    # TP, FP, FP: recall .5 then flat; the 51 recall points 0.00..0.50 read 1, the
    # other 50 read 0 -> AP = 51/101.
    metric = MeanAveragePrecision()
    metric.update(
        [dets([[0, 0, 10, 10], [20, 20, 30, 35], [50, 50, 60, 60]], [0.9, 0.8, 0.7], [0, 0, 0])],
        [target([[0, 0, 0, 10, 10], [0, 20, 20, 30, 30]])],
    )
    r = metric.compute()
    assert r["map"] == pytest.approx((4 * 1.0 + 6 * 51 / 101) / 10)
    assert r["map_50"] == pytest.approx(1.0)
    assert r["map_75"] == pytest.approx(51 / 101)
    assert r["map_small"] == pytest.approx(r["map"])  # every box is small (area 100)
    assert math.isnan(r["map_medium"]) and math.isnan(r["map_large"])
    assert r["mar_1"] == pytest.approx(0.5)  # one detection per image: only A
    assert r["mar_10"] == r["mar_100"] == pytest.approx((4 * 1.0 + 6 * 0.5) / 10)
    assert r["map_voc50"] == pytest.approx(1.0)
    assert r["classes"] == [0]


def test_voc_all_points_differs_from_coco_101_points_and_needs_iou_above_half():
    # Class 1: G1 = [0,0,10,10], G2 = [100,100,110,110]. Detections: G1 exactly (TP), a
    # duplicate on G1 (FP), one on G2 with IoU 60/100 (TP): recall .5, .5, 1 and
    # precision 1, .5, .67. VOC (area under the monotone curve): .5·1 + .5·(2/3) = 5/6.
    # COCO@0.5: 51 recall points at 1 and 50 at 2/3 -> (51 + 100/3) / 101.
    # Class 2: one box with IoU exactly 0.5 with its ground truth: a TP for COCO
    # (IoU >= 0.5), an FP for VOC (IoU > 0.5).
    metric = MeanAveragePrecision(iou_thresholds=[0.5])
    metric.update(
        [dets([[0, 0, 10, 10], [0, 0, 10, 10], [100, 100, 110, 106], [0, 0, 10, 10]],
              [0.9, 0.8, 0.7, 0.6], [1, 1, 1, 2])],
        [target([[1, 0, 0, 10, 10], [1, 100, 100, 110, 110], [2, 0, 0, 10, 20]])],
    )  # fmt: skip
    r = metric.compute()
    assert r["map_50_per_class"][1] == pytest.approx((51 + 100 / 3) / 101)
    assert r["map_50_per_class"][2] == pytest.approx(1.0)
    assert r["map_voc50"] == pytest.approx((5 / 6 + 0.0) / 2)
    assert math.isnan(r["map_75"])  # 0.75 is not among the thresholds


def test_area_ranges_prefer_ground_truth_inside_the_range():
    # S = [0,0,30,30] (area 900, small), M = [0,0,40,40] (1600, medium); one detection
    # D = [0,0,32,32] (1024: inside both small and medium, COCO's edges are inclusive),
    # IoU(D, S) = 900/1024 = 0.879, IoU(D, M) = 1024/1600 = 0.64.
    # all: D takes S (higher IoU) up to threshold 0.85: recall 1/2 -> AP 51/101 at 8 of
    #   the 10 thresholds.
    # small: M is ignored; D takes S up to 0.85 (AP 1), an FP at 0.90 and 0.95 -> 0.8.
    # medium: S is ignored, so D takes M while IoU 0.64 qualifies (0.50-0.60: AP 1); at
    #   0.65-0.85 it takes the ignored S and is ignored (AP 0); at 0.90+ an FP -> 0.3.
    metric = MeanAveragePrecision()
    metric.update(
        [dets([[0, 0, 32, 32]], [0.9], [0])],
        [target([[0, 0, 0, 30, 30], [0, 0, 0, 40, 40]])],
    )
    r = metric.compute()
    assert r["map"] == pytest.approx(8 * 51 / 101 / 10)
    assert r["map_small"] == pytest.approx(0.8)
    assert r["map_medium"] == pytest.approx(0.3)
    assert math.isnan(r["map_large"])


def test_accumulating_by_batch_equals_one_update_and_reset_forgets():
    g = torch.Generator().manual_seed(0)
    preds, targets = [], []
    for _ in range(6):
        xy = torch.rand(3, 2, generator=g) * 50
        gt = torch.cat((torch.randint(0, 3, (3, 1), generator=g).float(), xy, xy + 10), 1)
        noisy = gt[:, 1:] + torch.randn(3, 4, generator=g)
        noisy[:, 2:] = torch.maximum(noisy[:, 2:], noisy[:, :2] + 1)
        preds.append(Detections(noisy, torch.rand(3, generator=g), gt[:, 0].long()))
        targets.append(gt)
    whole, split = MeanAveragePrecision(), MeanAveragePrecision()
    whole.update(preds, targets)
    split.update(preds[:2], targets[:2])
    split.update(preds[2:], targets[2:])
    a, b = whole.compute(), split.compute()
    assert all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in COCO_KEYS)
    assert 0.0 < a["map"] < 1.0
    split.reset()
    assert len(split) == 0
    with pytest.raises(ConfigurationError, match=r"compute\(\) before any update"):
        split.compute()


def test_torchvision_style_dicts_are_accepted():
    metric = MeanAveragePrecision()
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    metric.update(
        [{"boxes": boxes, "scores": torch.ones(1), "labels": torch.tensor([2])}],
        [{"boxes": boxes, "labels": torch.tensor([2])}],
    )
    assert metric.compute()["map"] == pytest.approx(1.0)
    with pytest.raises(DTypeError, match=r"targets\[0\] labels must be integers"):
        metric.update(
            [{"boxes": boxes, "scores": torch.ones(1), "labels": torch.tensor([2])}],
            [{"boxes": boxes, "labels": torch.tensor([2.0])}],
        )


def test_malformed_input_is_named():
    metric = MeanAveragePrecision()
    good_t = target([[0, 0, 0, 1, 1]])
    good_p = dets([[0, 0, 1, 1]], [0.5], [0])
    with pytest.raises(ShapeError, match="1 predictions but 2 targets"):
        metric.update([good_p], [good_t, good_t])
    with pytest.raises(ConfigurationError, match=r"predictions\[0\] boxes\[0\].*x_max < x_min"):
        metric.update([dets([[5, 0, 1, 1]], [0.5], [0])], [good_t])
    with pytest.raises(DTypeError, match=r"predictions\[0\] classes must be integers"):
        metric.update([Detections(good_p.boxes, good_p.scores, torch.zeros(1))], [good_t])
    with pytest.raises(ShapeError, match=r"predictions\[0\] scores must have shape \[1\]"):
        metric.update([Detections(good_p.boxes, torch.ones(2), good_p.classes)], [good_t])
    with pytest.raises(DTypeError, match=r"targets\[0\] must be float32"):
        metric.update([good_p], [good_t.double()])
    with pytest.raises(ShapeError, match=r"targets\[0\] must have shape \[K, 5\]"):
        metric.update([good_p], [torch.zeros(1, 4)])
    with pytest.raises(ConfigurationError, match="iou_thresholds must be"):
        MeanAveragePrecision(iou_thresholds=[-0.5])
    with pytest.raises(ConfigurationError, match="max_detections must be ascending"):
        MeanAveragePrecision(max_detections=(10, 1))
    assert len(metric) == 0  # nothing half-added


def _random_dataset(seed: int):
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(10):
        k = int(rng.integers(0, 5))
        xy, wh = rng.uniform(0, 150, (k, 2)), rng.uniform(5, 120, (k, 2))  # all area ranges
        gt = np.concatenate([rng.integers(0, 3, (k, 1)), xy, xy + wh], 1)
        boxes, classes = [], []
        for _ in range(int(rng.integers(0, 8))):
            if k and rng.random() < 0.7:  # a jittered true box, often of the wrong class
                row = gt[rng.integers(k)]
                b = row[1:] + rng.normal(0, 6, 4)
                b[2:] = np.maximum(b[2:], b[:2] + 1)
                c = int(row[0]) if rng.random() < 0.5 else int(rng.integers(0, 3))
            else:
                p = rng.uniform(0, 150, 2)
                b, c = np.concatenate([p, p + rng.uniform(5, 120, 2)]), int(rng.integers(0, 3))
            boxes.append(b)
            classes.append(c)
        preds.append(
            dets(np.reshape(boxes, (-1, 4)).tolist(), rng.random(len(boxes)).tolist(), classes)
        )
        targets.append(torch.tensor(gt, dtype=torch.float32).reshape(-1, 5))
    return preds, targets


def _pycocotools_stats(preds, targets) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, results = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets), start=1):
        images.append({"id": i})
        for row in t.double().tolist():
            x0, y0, x1, y1 = row[1:]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(row[0]) + 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": 0})  # fmt: skip
        for (x0, y0, x1, y1), s, c in zip(
            p.boxes.double().tolist(), p.scores.double().tolist(), p.classes.tolist()
        ):
            results.append(
                {
                    "image_id": i,
                    "category_id": c + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": s,
                }
            )
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c} for c in (1, 2, 3)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.where(evaluation.stats > -1, evaluation.stats, np.nan)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pycocotools(seed):
    pytest.importorskip("pycocotools", reason="pycocotools (the COCO reference) is not installed")
    preds, targets = _random_dataset(seed)
    metric = MeanAveragePrecision()
    metric.update(preds[:4], targets[:4])
    metric.update(preds[4:], targets[4:])
    ours = metric.compute()
    reference = _pycocotools_stats(preds, targets)
    np.testing.assert_allclose([ours[k] for k in COCO_KEYS], reference, rtol=0, atol=1e-12)
