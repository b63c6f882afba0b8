"""Bounding-box operations in pure PyTorch: format conversion, areas, IoU, GIoU, NMS.

Boxes are ``[N, 4]`` floating-point tensors. The canonical format is ``"xyxy"``:
``(x_min, y_min, x_max, y_max)`` in continuous pixel coordinates (a box covering pixel
columns 3..5 is ``x_min = 3, x_max = 6``), area ``(x_max - x_min) * (y_max - y_min)``,
no "+1" (the COCO convention, which pycocotools and torchvision use). ``"xywh"`` is
``(x_min, y_min, width, height)`` (COCO's JSON) and ``"cxcywh"`` is
``(x_center, y_center, width, height)``.

The names and semantics follow ``torchvision.ops`` (``box_convert``, ``box_area``,
``box_iou``, ``generalized_box_iou``, ``nms``, ``batched_nms``,
``clip_boxes_to_image``, ``complete_box_iou``, ``complete_box_iou_loss``), so code
written against it ports by changing the import.
Unlike torchvision, a box with ``x_max < x_min`` (or ``y_max < y_min``) is an error, not
a silently negative area.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "BOX_FORMATS",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "check_boxes",
    "clip_boxes_to_image",
    "complete_box_iou",
    "complete_box_iou_loss",
    "elementwise_box_iou",
    "generalized_box_iou",
    "nms",
]

#: The box formats :func:`box_convert` knows.
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def check_boxes(boxes: Tensor, name: str = "boxes", *, fmt: str = "xyxy") -> Tensor:
    """Check that ``boxes`` is a floating-point ``[N, 4]`` tensor of valid boxes.

    In ``"xyxy"`` a valid box has ``x_max >= x_min`` and ``y_max >= y_min``; in
    ``"xywh"``/``"cxcywh"`` non-negative width and height. Returns ``boxes`` unchanged.

    Raises:
        DTypeError: ``boxes`` is not a floating-point tensor.
        ShapeError: its shape is not ``[N, 4]``.
        ConfigurationError: a box is inverted or has a NaN coordinate; the message
            names the first such box and its coordinates.
    """
    if not isinstance(boxes, Tensor):
        raise DTypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if not boxes.is_floating_point():
        raise DTypeError(f"{name} must be a floating-point tensor, got dtype {boxes.dtype}")
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ShapeError(f"{name} must have shape [N, 4], got {list(boxes.shape)}")
    if boxes.numel() == 0:
        return boxes
    if fmt == "xyxy":
        bad_x = boxes[:, 2] < boxes[:, 0]
        bad_y = boxes[:, 3] < boxes[:, 1]
    else:
        bad_x, bad_y = boxes[:, 2] < 0, boxes[:, 3] < 0
    nan = torch.isnan(boxes).any(1)
    bad = bad_x | bad_y | nan
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        box = [round(v, 6) for v in boxes[i].tolist()]
        if bool(nan[i]):
            problem = "a NaN coordinate"
        elif fmt == "xyxy":
            problem = "x_max < x_min" if bool(bad_x[i]) else "y_max < y_min"
        else:
            problem = "a negative width" if bool(bad_x[i]) else "a negative height"
        raise ConfigurationError(f"{name}[{i}] = {box} ({fmt}) has {problem}")
    return boxes


def _check_format(name: str, fmt: str) -> str:
    if fmt not in BOX_FORMATS:
        raise ConfigurationError(f"{name} must be one of {BOX_FORMATS}, got {fmt!r}")
    return fmt


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert ``[N, 4]`` boxes between ``"xyxy"``, ``"xywh"`` and ``"cxcywh"``.

    Raises:
        ConfigurationError: an unknown format, or an invalid box (see :func:`check_boxes`).
        DTypeError, ShapeError: as :func:`check_boxes`.
    """
    _check_format("in_fmt", in_fmt)
    _check_format("out_fmt", out_fmt)
    check_boxes(boxes, fmt=in_fmt)
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        x0, y0, x1, y1 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x0, y0, x1, y1 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    else:
        x0, y0, x1, y1 = a, b, c, d
    if out_fmt == "xyxy":
        return torch.stack((x0, y0, x1, y1), -1)
    if out_fmt == "xywh":
        return torch.stack((x0, y0, x1 - x0, y1 - y0), -1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), -1)


def box_area(boxes: Tensor) -> Tensor:
    """Areas ``(x_max - x_min) * (y_max - y_min)`` of ``[N, 4]`` xyxy boxes, ``[N]``."""
    check_boxes(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, area1[:, None] + area2[None, :] - inter


def _divide(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with ``0 / 0 = 0`` (two empty boxes do not overlap)."""
    return torch.where(den > 0, num / den.clamp(min=torch.finfo(den.dtype).tiny), 0.0)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise intersection over union of xyxy boxes: ``[N, 4], [M, 4] -> [N, M]``.

    IoU = area(A ∩ B) / area(A ∪ B); two zero-area boxes have IoU 0 (torchvision gives
    NaN there).
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    inter, union = _inter_union(boxes1, boxes2)
    return _divide(inter, union)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al., CVPR 2019), ``[N, M]`` in ``[-1, 1]``:
    ``IoU - (area(C) - area(A ∪ B)) / area(C)`` with ``C`` the smallest box enclosing
    both ``A`` and ``B``."""
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    inter, union = _inter_union(boxes1, boxes2)
    iou = _divide(inter, union)
    lt = torch.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - _divide(enclosing - union, enclosing)


def elementwise_box_iou(boxes1: Tensor, boxes2: Tensor, generalized: bool = False) -> Tensor:
    """IoU (or GIoU with ``generalized=True``) of matching rows: ``[N, 4], [N, 4] -> [N]``.

    The differentiable form the box losses use (``1 - elementwise_box_iou(...)``).

    Raises:
        ShapeError: the two tensors have different numbers of boxes.
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    if boxes1.shape != boxes2.shape:
        raise ShapeError(
            f"elementwise_box_iou needs as many boxes in boxes1 as in boxes2, got "
            f"{list(boxes1.shape)} and {list(boxes2.shape)}"
        )
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.maximum(boxes1[:, :2], boxes2[:, :2])
    rb = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area1 + area2 - inter
    iou = _divide(inter, union)
    if not generalized:
        return iou
    wh_c = torch.maximum(boxes1[:, 2:], boxes2[:, 2:]) - torch.minimum(boxes1[:, :2], boxes2[:, :2])
    enclosing = wh_c[:, 0] * wh_c[:, 1]
    return iou - _divide(enclosing - union, enclosing)


def _complete_iou(b1: Tensor, b2: Tensor) -> Tensor:
    """CIoU of broadcastable ``[..., 4]`` xyxy boxes (the boxes are not checked)."""
    w1, h1 = b1[..., 2] - b1[..., 0], b1[..., 3] - b1[..., 1]
    w2, h2 = b2[..., 2] - b2[..., 0], b2[..., 3] - b2[..., 1]
    lt = torch.maximum(b1[..., :2], b2[..., :2])
    rb = torch.minimum(b1[..., 2:], b2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    iou = _divide(inter, w1 * h1 + w2 * h2 - inter)
    # squared diagonal of the enclosing box, squared distance of the centres
    wh_c = torch.maximum(b1[..., 2:], b2[..., 2:]) - torch.minimum(b1[..., :2], b2[..., :2])
    diagonal = wh_c[..., 0] ** 2 + wh_c[..., 1] ** 2
    centres = (b1[..., :2] + b1[..., 2:] - b2[..., :2] - b2[..., 2:]) / 2
    distance = centres[..., 0] ** 2 + centres[..., 1] ** 2
    # aspect-ratio consistency; atan2(w, h) = atan(w / h), and 0 for a 0 x 0 box
    v = (4 / math.pi**2) * (torch.atan2(w1, h1) - torch.atan2(w2, h2)) ** 2
    with torch.no_grad():  # the trade-off weight is a constant of the gradient (the paper's)
        alpha = _divide(v, 1 - iou + v)
    return iou - _divide(distance, diagonal) - alpha * v


def complete_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise complete IoU (Zheng et al., AAAI 2020), ``[N, 4], [M, 4] -> [N, M]``.

    ``CIoU = IoU - ρ²/c² - α·v``: ``ρ`` the distance between the two centres, ``c`` the
    diagonal of the smallest box enclosing both, ``v = (4/π²)·(atan(w₁/h₁) -
    atan(w₂/h₂))²`` the aspect-ratio mismatch and ``α = v / (1 - IoU + v)``, taken as a
    constant in the backward pass (as the paper, torchvision and Lava-DL do). In
    ``[-1.5, 1]``; 1 only for identical boxes. torchvision adds ``eps = 1e-7`` to its
    denominators; here ``0/0`` is 0 instead (two empty boxes: IoU 0, no penalty).
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    return _complete_iou(boxes1[:, None, :], boxes2[None, :, :])


def complete_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none") -> Tensor:
    """``1 - CIoU`` of matching rows (:func:`complete_box_iou`), ``[N, 4], [N, 4] -> [N]``,
    or its ``"mean"``/``"sum"`` (torchvision's ``complete_box_iou_loss``; the mean of no
    boxes is 0 here, NaN there). Differentiable.

    Raises:
        ShapeError: the two tensors have different numbers of boxes.
        ConfigurationError: ``reduction`` not ``"none"``, ``"mean"`` or ``"sum"``.
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    if boxes1.shape != boxes2.shape:
        raise ShapeError(
            f"complete_box_iou_loss needs as many boxes in boxes1 as in boxes2, got "
            f"{list(boxes1.shape)} and {list(boxes2.shape)}"
        )
    if reduction not in ("none", "mean", "sum"):
        raise ConfigurationError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    loss = 1.0 - _complete_iou(boxes1, boxes2)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / max(1, loss.numel())
    return loss


def _check_threshold(iou_threshold: float) -> float:
    if (
        isinstance(iou_threshold, bool)
        or not isinstance(iou_threshold, (int, float))
        or not math.isfinite(iou_threshold)
        or not 0.0 <= iou_threshold <= 1.0
    ):
        raise ConfigurationError(f"iou_threshold must be a number in [0, 1], got {iou_threshold!r}")
    return float(iou_threshold)


def _check_scores(scores: Tensor, count: int, name: str = "scores") -> None:
    if not isinstance(scores, Tensor):
        raise DTypeError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if not scores.is_floating_point():
        raise DTypeError(f"{name} must be a floating-point tensor, got dtype {scores.dtype}")
    if scores.dim() != 1 or scores.shape[0] != count:
        shape = list(scores.shape)
        raise ShapeError(f"{name} must have shape [{count}] (one per box), got {shape}")


#: Boxes NMS takes at a time (its greedy pass among them builds their IoU matrix).
_NMS_BLOCK = 256
#: The most box pairs whose IoU NMS computes at once (about 40 bytes of temporaries each).
_NMS_PAIRS = 1 << 20


def _suppressed(kept: Tensor, candidates: Tensor, threshold: float) -> Tensor:
    """``[M]`` bool: whether some box of ``kept`` ``[K, 4]`` has an IoU greater than
    ``threshold`` with each of ``candidates`` ``[M, 4]`` (``kept`` in slices of at most
    ``_NMS_PAIRS`` pairs: memory O(M), not O(K M))."""
    hit = torch.zeros(candidates.shape[0], dtype=torch.bool, device=candidates.device)
    step = max(1, _NMS_PAIRS // max(1, candidates.shape[0]))
    for start in range(0, kept.shape[0], step):
        inter, union = _inter_union(kept[start : start + step], candidates)
        hit |= (_divide(inter, union) > threshold).any(0)
    return hit


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression; the indices of the kept boxes, by decreasing score.

    Boxes are visited from the highest score down (ties in their original order); a box is
    kept unless its IoU with an already kept box is **greater than** ``iou_threshold``
    (torchvision's rule, so ``iou_threshold=1`` keeps every box and identical boxes with
    ``iou_threshold < 1`` keep only the first).

    Args:
        boxes: ``[N, 4]`` xyxy boxes.
        scores: ``[N]`` floating-point scores.
        iou_threshold: in ``[0, 1]``.

    Returns:
        int64 indices into ``boxes``, ``[K]``.

    Raises:
        ConfigurationError: ``iou_threshold`` outside ``[0, 1]`` or an invalid box.
        DTypeError, ShapeError: ``boxes``/``scores`` of the wrong dtype or shape.
    """
    check_boxes(boxes)
    _check_scores(scores, boxes.shape[0])
    threshold = _check_threshold(iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    ordered = boxes[order]
    kept: list[Tensor] = []  # positions in ``ordered``, block by block
    kept_boxes = ordered[:0]
    for start in range(0, ordered.shape[0], _NMS_BLOCK):
        block = ordered[start : start + _NMS_BLOCK]
        # the block's boxes no kept box of an earlier block suppresses, then the greedy
        # pass among them (in score order, as one pass over all boxes would go)
        alive = torch.nonzero(~_suppressed(kept_boxes, block, threshold)).flatten()
        candidates = block[alive]
        inter, union = _inter_union(candidates, candidates)
        overlaps = (_divide(inter, union) > threshold).cpu().numpy()
        removed = np.zeros(len(overlaps), dtype=bool)
        chosen: list[int] = []
        for i in range(len(overlaps)):
            if not removed[i]:
                chosen.append(i)
                removed |= overlaps[i]
        chosen_t = torch.tensor(chosen, dtype=torch.long, device=boxes.device)
        kept.append(start + alive[chosen_t])
        kept_boxes = torch.cat((kept_boxes, candidates[chosen_t]))
    return order[torch.cat(kept)]


def batched_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression done independently per class: a box only suppresses boxes
    of its own class. Indices of the kept boxes, by decreasing score.

    Args:
        boxes: ``[N, 4]`` xyxy boxes.
        scores: ``[N]`` floating-point scores.
        classes: ``[N]`` integer class ids (torchvision's ``idxs``).
        iou_threshold: in ``[0, 1]``.

    Raises:
        DTypeError: ``classes`` is not an integer tensor; others as :func:`nms`.
    """
    check_boxes(boxes)
    _check_scores(scores, boxes.shape[0])
    if not isinstance(classes, Tensor) or classes.is_floating_point() or classes.is_complex():
        what = classes.dtype if isinstance(classes, Tensor) else type(classes).__name__
        raise DTypeError(f"classes must be an integer tensor, got {what}")
    if classes.dim() != 1 or classes.shape[0] != boxes.shape[0]:
        raise ShapeError(
            f"classes must have shape [{boxes.shape[0]}] (one per box), got {list(classes.shape)}"
        )
    _check_threshold(iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    # Shift each class to its own region of the plane (torchvision's trick): boxes of
    # different classes then never overlap, and one NMS call does every class.
    span = boxes.max() - boxes.min() + 1
    shifted = boxes - boxes.min() + (classes.to(boxes.dtype) * span)[:, None]
    return nms(shifted, scores, iou_threshold)


def clip_boxes_to_image(boxes: Tensor, size: Sequence[int]) -> Tensor:
    """Clip xyxy boxes to an image of ``size = (height, width)``: x to ``[0, width]``, y to
    ``[0, height]`` (torchvision's argument order)."""
    check_boxes(boxes)
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ConfigurationError(f"size must be (height, width), two positive ints; got {size!r}")
    height, width = size
    x = boxes[:, 0::2].clamp(0, width)
    y = boxes[:, 1::2].clamp(0, height)
    return torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), -1)
