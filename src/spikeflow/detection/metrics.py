"""Mean average precision for object detection: COCO's protocol and VOC's AP@0.5.

:class:`MeanAveragePrecision` accumulates ``(predictions, targets)`` batch by batch and
computes, at the end, the twelve numbers of COCO's ``COCOeval.summarize()`` (the protocol
Prophesee's Gen1/1Mpx evaluation uses) and VOC's AP at IoU 0.5.

**COCO** (pycocotools' ``COCOeval`` for ``iouType="bbox"``, re-implemented in numpy):

* IoU thresholds ``0.50:0.05:0.95``; recall thresholds ``0:0.01:1`` (101 points);
  ``maxDets`` ``(1, 10, 100)``; area ranges ``all`` ``[0, 1e10]``, ``small``
  ``[0, 32²]``, ``medium`` ``[32², 96²]``, ``large`` ``[96², 1e10]`` (box areas; a
  ground truth's ``area`` where its target gives one, below).
* Per image and class, detections are sorted by decreasing score (stable) and cut to
  ``maxDets``; each, in that order, takes the unmatched ground truth of highest IoU
  ``>= threshold`` (ground truths outside the area range only when no other is left;
  a detection matched to one is ignored, so is an unmatched detection outside the range).
* Per class, the detections of all images are ranked by score; precision at each of
  the 101 recall points is the highest precision at that recall or beyond; AP is their
  mean, mAP the mean over classes that have ground truth (and over IoU thresholds for
  ``map``). Recall (``mar_*``) is the final recall, averaged the same way.

**VOC** (``map_voc50``, the VOC2010+ devkit): per class, all detections ranked by score;
each takes the ground truth of highest IoU in its image; it is a true positive when that
IoU is **greater than** 0.5 and the ground truth is not taken yet, else a false positive;
AP is the area under the precision-recall curve made monotone (all points, not 11).
No ``maxDets`` cut, no area ranges; crowd regions (below) are its "difficult" objects.

**Crowd regions** (COCO's ``iscrowd``; targets given as dicts with an ``iscrowd`` key):
as ``COCOeval``, a crowd region is an ignored ground truth (it counts in no recall),
its IoU with a detection is the intersection over the *detection's* area, and it may
take any number of detections, each then ignored (neither true nor false positive). In
VOC's AP a crowd region is a "difficult" object: not counted, and a detection that
matches no object (IoU > 0.5) but lies in a crowd region (IoU > 0.5, over the
detection's area as above) is ignored; the objects are matched first, as in COCO. A dict
target may also give ``area`` (COCO's annotation area, the segmentation's), which then
places the ground truth in the area ranges instead of its box's area, as ``COCOeval``
does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from spikeflow.detection.boxes import check_boxes
from spikeflow.detection.targets import check_target
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["COCO_AREA_RANGES", "Detections", "MeanAveragePrecision", "voc_average_precision"]

#: COCO's area ranges (pixels²: of the box, or the target's ``area``), by name.
COCO_AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}


class Detections(NamedTuple):
    """One image's detections: ``boxes [N, 4]`` xyxy, ``scores [N]``, ``classes [N]`` int64."""

    boxes: Tensor
    scores: Tensor
    classes: Tensor


@dataclass
class _Image:
    gt_boxes: np.ndarray  # [G, 4]
    gt_classes: np.ndarray  # [G]
    gt_crowd: np.ndarray  # [G] bool
    gt_area: np.ndarray  # [G]: the area ranges' area (the box's unless given)
    dt_boxes: np.ndarray  # [D, 4]
    dt_scores: np.ndarray  # [D]
    dt_classes: np.ndarray  # [D]


def _iou(a: np.ndarray, b: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """Pairwise IoU ``[len(a), len(b)]`` in float64 (0 where the union is empty); where
    ``crowd[j]``, the intersection over the area of ``a`` alone (COCO's crowd IoU)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    wh = np.clip(
        np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]),
        0,
        None,
    )
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    if crowd is not None and crowd.any():
        union = np.where(crowd[None, :], area_a[:, None], union)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _prediction(pred: Any, i: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(boxes, scores, classes)`` of one image's prediction (Detections or a dict with
    torchvision's keys ``boxes``/``scores``/``labels``), checked."""
    if isinstance(pred, Mapping):
        missing = {"boxes", "scores", "labels"} - set(pred)
        if missing:
            raise ConfigurationError(f"predictions[{i}] lacks the keys {sorted(missing)}")
        boxes, scores, classes = pred["boxes"], pred["scores"], pred["labels"]
    elif isinstance(pred, tuple) and len(pred) == 3:
        boxes, scores, classes = pred
    else:
        raise ConfigurationError(
            f"predictions[{i}] must be a Detections (boxes, scores, classes) or a dict with "
            f"boxes/scores/labels, got {type(pred).__name__}"
        )
    check_boxes(boxes, f"predictions[{i}] boxes")
    n = boxes.shape[0]
    for name, value in (("scores", scores), ("classes", classes)):
        if not isinstance(value, Tensor):
            kind = type(value).__name__
            raise DTypeError(f"predictions[{i}] {name} must be a tensor, got {kind}")
        if value.shape != (n,):
            raise ShapeError(
                f"predictions[{i}] {name} must have shape [{n}] (one per box), got "
                f"{list(value.shape)}"
            )
    if not scores.is_floating_point():
        raise DTypeError(f"predictions[{i}] scores must be floating point, got {scores.dtype}")
    if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
        raise DTypeError(f"predictions[{i}] classes must be integers, got {classes.dtype}")
    return boxes, scores, classes


def _target(target: Any, i: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(boxes, classes, iscrowd, area)`` of one image's target ([K, 5] contract tensor
    or a dict with ``boxes``/``labels`` and optionally ``iscrowd``/``area``; None where
    not given), checked."""
    if isinstance(target, Mapping):
        missing = {"boxes", "labels"} - set(target)
        if missing:
            raise ConfigurationError(f"targets[{i}] lacks the keys {sorted(missing)}")
        boxes, classes = target["boxes"], target["labels"]
        check_boxes(boxes, f"targets[{i}] boxes")
        n = boxes.shape[0]
        if not isinstance(classes, Tensor) or classes.shape != (n,):
            raise ShapeError(f"targets[{i}] labels must be a tensor [{n}]")
        if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
            raise DTypeError(f"targets[{i}] labels must be integers, got {classes.dtype}")
        extra: list[Tensor | None] = []
        for key in ("iscrowd", "area"):
            value = target.get(key)
            if value is not None and (not isinstance(value, Tensor) or value.shape != (n,)):
                raise ShapeError(f"targets[{i}] {key} must be a tensor [{n}] (one per box)")
            if value is not None and value.is_complex():
                raise DTypeError(f"targets[{i}] {key} must be real, got {value.dtype}")
            extra.append(value)
        return boxes, classes, extra[0], extra[1]
    check_target(target, f"targets[{i}]")
    return target[:, 1:], target[:, 0], None, None


def _numpy(t: Tensor, dtype: Any) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy().astype(dtype, copy=False)


def voc_average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+'s AP: the area under the precision-recall curve after making precision
    monotonically non-increasing (all points, ``recall`` sorted ascending)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


class MeanAveragePrecision:
    """Accumulate detections and ground truth over a dataset; compute COCO mAP and VOC AP.

    Args:
        iou_thresholds: COCO's IoU thresholds (default ``0.50:0.05:0.95``).
        max_detections: detections kept per image and class, ascending; AP uses the last,
            ``mar_<n>`` is reported for each (default ``(1, 10, 100)``).
        area_ranges: also compute ``map_small``/``medium``/``large`` and their recalls
            (default True; they cost one more matching pass each).
        voc: also compute VOC's AP@0.5 (``map_voc50``; default True).

    Example::

        metric = MeanAveragePrecision()
        for frames, targets in loader:
            metric.update(detector.detect(frames), targets)
        result = metric.compute()   # {"map": ..., "map_50": ..., "map_voc50": ..., ...}

    ``update`` takes one list entry per image: predictions as :class:`Detections` (what
    :meth:`~spikeflow.detection.SpikingDetector.detect` returns) or dicts with
    torchvision's keys ``boxes``, ``scores``, ``labels``; targets as the ``[K, 5]``
    contract tensors (:mod:`spikeflow.detection.targets`) or dicts ``boxes``/``labels``.
    """

    def __init__(
        self,
        iou_thresholds: Sequence[float] | None = None,
        max_detections: Sequence[int] = (1, 10, 100),
        area_ranges: bool = True,
        voc: bool = True,
    ) -> None:
        if iou_thresholds is None:
            thresholds = np.linspace(0.5, 0.95, 10)
        else:
            thresholds = np.asarray(list(iou_thresholds), dtype=np.float64)
            if (
                thresholds.ndim != 1
                or thresholds.size == 0
                or not np.all((thresholds >= 0) & (thresholds <= 1))
            ):
                raise ConfigurationError(
                    f"iou_thresholds must be a non-empty list of numbers in [0, 1], got "
                    f"{list(iou_thresholds)!r}"
                )
        dets = list(max_detections)
        if (
            not dets
            or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in dets)
            or dets != sorted(set(dets))
        ):
            raise ConfigurationError(
                f"max_detections must be ascending distinct positive ints, got {max_detections!r}"
            )
        for name, flag in (("area_ranges", area_ranges), ("voc", voc)):
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{name} must be True or False, got {flag!r}")
        self.iou_thresholds = thresholds
        self.recall_thresholds = np.linspace(0.0, 1.0, 101)
        self.max_detections = tuple(dets)
        self.area_ranges = (
            dict(COCO_AREA_RANGES) if area_ranges else {"all": COCO_AREA_RANGES["all"]}
        )
        self.voc = voc
        self._images: list[_Image] = []

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._images.clear()

    def __len__(self) -> int:
        return len(self._images)

    def update(self, predictions: Sequence[Any], targets: Sequence[Any]) -> None:
        """Add one batch: ``predictions[i]`` and ``targets[i]`` belong to image ``i``.

        Raises:
            ShapeError: different numbers of predictions and targets.
            DTypeError, ShapeError, ConfigurationError: a malformed entry (named by index).
        """
        if len(predictions) != len(targets):
            raise ShapeError(
                f"update got {len(predictions)} predictions but {len(targets)} targets "
                "(one of each per image)"
            )
        batch = []  # all checked before any is added: a bad entry adds nothing
        for i, (pred, target) in enumerate(zip(predictions, targets)):
            boxes, scores, classes = _prediction(pred, i)
            gt_boxes, gt_classes, crowd, area = _target(target, i)
            gt = _numpy(gt_boxes, np.float64).reshape(-1, 4)
            batch.append(
                _Image(
                    gt_boxes=gt,
                    gt_classes=_numpy(gt_classes, np.int64).reshape(-1),
                    gt_crowd=(
                        np.zeros(len(gt), dtype=bool)
                        if crowd is None
                        else _numpy(crowd, np.float64).reshape(-1) != 0
                    ),
                    gt_area=_area(gt) if area is None else _numpy(area, np.float64).reshape(-1),
                    dt_boxes=_numpy(boxes, np.float64).reshape(-1, 4),
                    dt_scores=_numpy(scores, np.float64).reshape(-1),
                    dt_classes=_numpy(classes, np.int64).reshape(-1),
                )
            )
        self._images.extend(batch)

    def _match(
        self,
        dt: np.ndarray,
        dt_scores: np.ndarray,
        gt: np.ndarray,
        area: tuple[float, float],
        gt_crowd: np.ndarray,
        gt_area: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """COCO's ``evaluateImg`` for one image and class (detections sorted, cut):
        ``(matched [T, D], ignored [T, D], scores [D], gt_ignored [G])``."""
        lo, hi = area
        gt_ig = gt_crowd | (gt_area < lo) | (gt_area > hi)
        # COCO sorts the ignored ground truths last and stops at the first once it holds
        # a match: a detection takes an ignored one only when no other qualifies. A
        # crowd region stays available after a match (it may take many detections).
        n_t, n_d, n_g = len(self.iou_thresholds), len(dt), len(gt)
        matched = np.zeros((n_t, n_d), dtype=bool)
        ignored = np.zeros((n_t, n_d), dtype=bool)
        if n_g and n_d:
            ious = _iou(dt, gt, gt_crowd)
            gt_taken = np.zeros((n_t, n_g), dtype=bool)
            for t, thr in enumerate(self.iou_thresholds):
                floor = min(thr, 1 - 1e-10)
                for d in range(n_d):
                    cand = ~gt_taken[t] & (ious[d] >= floor)
                    pool = cand & ~gt_ig
                    if not pool.any():
                        pool = cand & gt_ig
                        if not pool.any():
                            continue
                    idx = np.flatnonzero(pool)
                    vals = ious[d, idx]
                    m = idx[len(vals) - 1 - int(np.argmax(vals[::-1]))]  # ties: the last
                    gt_taken[t, m] = not gt_crowd[m]
                    matched[t, d] = True
                    ignored[t, d] = gt_ig[m]
        dt_area = _area(dt)
        outside = (dt_area < lo) | (dt_area > hi)
        ignored |= ~matched & outside[None, :]
        return matched, ignored, dt_scores, gt_ig

    def _coco(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """precision ``[T, R, K, A, M]`` and recall ``[T, K, A, M]`` (-1: no ground
        truth), and the class ids ``K`` indexes."""
        classes = sorted(
            {int(c) for im in self._images for c in im.gt_classes}
            | {int(c) for im in self._images for c in im.dt_classes}
        )
        n_t, n_r = len(self.iou_thresholds), len(self.recall_thresholds)
        n_k, n_a, n_m = len(classes), len(self.area_ranges), len(self.max_detections)
        precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
        recall = -np.ones((n_t, n_k, n_a, n_m))
        max_det = self.max_detections[-1]
        for k, cls in enumerate(classes):
            per_image = []
            for im in self._images:
                gsel = im.gt_classes == cls
                sel = im.dt_classes == cls
                if not gsel.any() and not sel.any():
                    continue
                order = np.argsort(-im.dt_scores[sel], kind="mergesort")[:max_det]
                gt = (im.gt_boxes[gsel], im.gt_crowd[gsel], im.gt_area[gsel])
                per_image.append((im.dt_boxes[sel][order], im.dt_scores[sel][order], gt))
            for a, area in enumerate(self.area_ranges.values()):
                evals = [self._match(d, s, g, area, c, ga) for d, s, (g, c, ga) in per_image]
                n_pos = sum(int(np.count_nonzero(~e[3])) for e in evals)
                if n_pos == 0:
                    continue
                for m, cut in enumerate(self.max_detections):
                    p, r = precision[:, :, k, a, m], recall[:, k, a, m]
                    self._accumulate(evals, cut, n_pos, p, r)
        return precision, recall, classes

    def _accumulate(
        self,
        evals: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
        cut: int,
        n_pos: int,
        precision: np.ndarray,
        recall: np.ndarray,
    ) -> None:
        """COCO's ``accumulate`` for one class, area range and ``maxDets``; fills the
        ``[T, R]`` precision and ``[T]`` recall views in place."""
        n_t = len(self.iou_thresholds)
        scores = np.concatenate([e[2][:cut] for e in evals])
        order = np.argsort(-scores, kind="mergesort")
        matched = np.concatenate([e[0][:, :cut] for e in evals], axis=1)[:, order]
        ignored = np.concatenate([e[1][:, :cut] for e in evals], axis=1)[:, order]
        tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
        fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
        for t in range(n_t):
            n_d = tp.shape[1]
            rc = tp[t] / n_pos
            pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
            recall[t] = rc[-1] if n_d else 0.0
            q = np.zeros(len(self.recall_thresholds))
            if n_d:
                pr = np.maximum.accumulate(pr[::-1])[::-1]
                idx = np.searchsorted(rc, self.recall_thresholds, side="left")
                valid = idx < n_d
                q[valid] = pr[idx[valid]]
            precision[t] = q

    def _voc50(self) -> tuple[float, dict[int, float]]:
        """VOC's AP at IoU > 0.5 per class (crowd regions as "difficult" objects), and
        its mean over the classes with a non-crowd ground truth."""
        per_class: dict[int, float] = {}
        classes = sorted({int(c) for im in self._images for c in im.gt_classes[~im.gt_crowd]})
        for cls in classes:
            scores, image_of, rows = [], [], []
            n_pos = 0
            gts, difficult = [], []
            for j, im in enumerate(self._images):
                gsel = im.gt_classes == cls
                gts.append(im.gt_boxes[gsel])
                difficult.append(im.gt_crowd[gsel])
                n_pos += int(np.count_nonzero(~im.gt_crowd[gsel]))
                sel = np.flatnonzero(im.dt_classes == cls)
                scores.append(im.dt_scores[sel])
                image_of.append(np.full(len(sel), j))
                rows.append(sel)
            s = np.concatenate(scores)
            order = np.argsort(-s, kind="mergesort")
            img = np.concatenate(image_of)[order]
            row = np.concatenate(rows)[order]
            taken = [np.zeros(len(g), dtype=bool) for g in gts]
            tp = np.zeros(len(order))
            fp = np.ones(len(order))
            for d, (j, r) in enumerate(zip(img, row)):
                g = gts[j]
                if len(g) == 0:
                    continue
                ious = _iou(self._images[j].dt_boxes[r : r + 1], g, difficult[j])[0]
                # the objects first (as COCO's matching): a crowd region's IoU, over the
                # detection's area, is no rival to an object's plain IoU
                plain = np.where(difficult[j], -1.0, ious)
                best = int(np.argmax(plain))
                if plain[best] > 0.5:
                    if not taken[j][best]:
                        taken[j][best] = True
                        tp[d], fp[d] = 1.0, 0.0
                elif np.any(ious[difficult[j]] > 0.5):
                    fp[d] = 0.0  # on a difficult (crowd) object only: neither
            ctp = np.cumsum(tp)
            cfp = np.cumsum(fp)
            rec = ctp / n_pos
            prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
            per_class[cls] = voc_average_precision(rec, prec)
        mean = float(np.mean(list(per_class.values()))) if per_class else math.nan
        return mean, per_class

    def compute(self) -> dict[str, Any]:
        """The metrics over everything accumulated (NaN where nothing defines one).

        Returns a dict of floats: ``map`` (AP@[.50:.95], COCO's headline), ``map_50``,
        ``map_75``, ``map_small``/``map_medium``/``map_large`` (with ``area_ranges``),
        ``mar_<n>`` for each ``maxDets`` n, ``mar_small``/``medium``/``large``,
        ``map_voc50`` (with ``voc``), and ``classes`` (the class ids evaluated),
        ``map_per_class`` and ``map_50_per_class`` (dicts class id -> AP; NaN for a
        class without ground truth) — the first twelve are ``COCOeval.stats`` in order.

        Raises:
            ConfigurationError: nothing was accumulated.
        """
        if not self._images:
            raise ConfigurationError("MeanAveragePrecision.compute() before any update()")
        precision, recall, classes = self._coco()
        names = list(self.area_ranges)

        def mean(values: np.ndarray) -> float:
            v = values[values > -1]
            return float(v.mean()) if v.size else math.nan

        def at(threshold: float) -> int | None:
            hits = np.flatnonzero(np.isclose(self.iou_thresholds, threshold))
            return int(hits[0]) if hits.size else None

        out: dict[str, Any] = {"map": mean(precision[:, :, :, 0, -1])}
        for key, thr in (("map_50", 0.5), ("map_75", 0.75)):
            t = at(thr)
            out[key] = mean(precision[t, :, :, 0, -1]) if t is not None else math.nan
        for a, name in enumerate(names[1:], start=1):
            out[f"map_{name}"] = mean(precision[:, :, :, a, -1])
        for m, cut in enumerate(self.max_detections):
            out[f"mar_{cut}"] = mean(recall[:, :, 0, m])
        for a, name in enumerate(names[1:], start=1):
            out[f"mar_{name}"] = mean(recall[:, :, a, -1])
        if self.voc:
            out["map_voc50"], _ = self._voc50()
        out["classes"] = classes
        out["map_per_class"] = {c: mean(precision[:, :, k, 0, -1]) for k, c in enumerate(classes)}
        t50 = at(0.5)
        out["map_50_per_class"] = {
            c: mean(precision[t50, :, k, 0, -1]) if t50 is not None else math.nan
            for k, c in enumerate(classes)
        }
        return out
