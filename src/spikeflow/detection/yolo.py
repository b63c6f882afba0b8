"""Anchor-based YOLO detection (YOLOv3's, as Lava-DL's ``object_detection`` trains it):
anchors, target assignment and decoding to boxes (docs/detection.md, "Anchor-based
YOLO").

**Output layout.** A YOLO detector has one output per scale (stride ``s_l``, grid
``H_l x W_l``) with ``A`` anchors per cell: ``[T, B, A·(5 + C), H_l, W_l]`` per step, or
``[B, A·(5 + C), H_l, W_l]`` (a time-mean); channel ``a·(5 + C) + k`` is anchor ``a``'s
``k``-th value: ``t_x, t_y, t_w, t_h``, an objectness logit, ``C`` class logits.

**Boxes** (in pixels, cell ``(i, j)``, anchor ``(p_w, p_h)``): centre
``((σ(t_x) + j)·s, (σ(t_y) + i)·s)``, size ``(p_w·e^{t_w}, p_h·e^{t_h})`` with ``t_w,
t_h`` clamped at ``clamp_max`` (5, Lava-DL's); score ``σ(obj)·max softmax(classes)``.

**Anchors** are fractions of the image's width and height (Lava-DL's convention, so one
set serves any input size): ``anchors[l][a] = (w, h)`` for scale ``l`` (finest first);
in pixels they are ``(w·W_l·s_l, h·H_l·s_l)``.

**Assignment** (:func:`assign_yolo_targets`, Lava-DL's ``YOLOtarget``; the YOLOv3 paper
instead gives each object one prior over all scales and ignores the predictions whose
*decoded box* overlaps an object by more than 0.5):
objects are taken by decreasing area; each object's centre cell on every scale is its
cell there; the anchors of all scales are ranked by their IoU with the object's width and
height (both centred, ``wh_iou``); on each scale the best-ranked anchor whose slot at
that cell is not already another object's positive becomes the object's positive (one
per scale); the object's other anchors at that cell whose IoU exceeds
``ignore_iou_threshold`` are *ignored* (no objectness loss) unless they are positives.
With the default threshold 0 every other anchor of the centre cell is ignored, which is
what Lava-DL's code does when objects do not share a cell. Where they do, Lava-DL treats
a slot an earlier object merely ignored as taken, and demotes an earlier object's
positive to ignored when the later object's anchor IoU is at most its threshold; here a
positive is never demoted and an ignored slot can still become a positive.

**Boxes outside the grid.** A box is first clipped to the image the grids cover
(``H_l·s_l x W_l·s_l``, the padded input of :class:`~spikeflow.models.tiny_yolov3.TinyYOLOv3`),
so every centre offset is in ``[0, 1)`` (a sigmoid can reach it) and the size targets are
the visible part's, as YOLOv3's data pipelines clip labels. A box with zero width or
height after clipping (a degenerate label, or one wholly outside the image) gets no
anchor: its size target ``log(w / p_w)`` would be ``-inf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_real
from spikeflow.detection.boxes import check_boxes
from spikeflow.detection.head import select_detections
from spikeflow.detection.metrics import Detections
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.models.common import check_positive_int

__all__ = [
    "LAVA_TINY_YOLOV3_ANCHORS",
    "anchors_in_pixels",
    "assign_yolo_targets",
    "check_anchors",
    "decode_yolo",
    "split_yolo_output",
    "wh_iou",
]

#: Lava-DL's tiny YOLOv3 anchors (fractions of the image), finest scale first.
LAVA_TINY_YOLOV3_ANCHORS = (
    ((0.07, 0.15), (0.15, 0.11), (0.14, 0.29)),
    ((0.28, 0.22), (0.38, 0.48), (0.90, 0.78)),
)


def check_anchors(anchors: Any, num_scales: int | None = None) -> Tensor:
    """``anchors`` as a float32 tensor ``[S, A, 2]`` of positive (width, height)
    fractions, ``S = num_scales`` where given.

    Raises:
        ConfigurationError: not ``S`` lists of ``A`` positive ``(w, h)`` pairs.
    """
    try:
        t = torch.as_tensor(anchors, dtype=torch.float32)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"anchors must be one list of (width, height) pairs per scale, got {anchors!r}"
        ) from exc
    if t.dim() != 3 or t.shape[-1] != 2 or t.shape[1] == 0:
        raise ConfigurationError(
            f"anchors must be one list of (width, height) pairs per scale, shape [S, A, 2]; "
            f"got shape {list(t.shape)}"
        )
    if num_scales is not None and t.shape[0] != num_scales:
        raise ConfigurationError(
            f"anchors has {t.shape[0]} scale(s), the detector has {num_scales}"
        )
    if not bool((t > 0).all() & t.isfinite().all()):
        raise ConfigurationError(f"anchors must be finite and > 0, got {t.tolist()}")
    return t


def anchors_in_pixels(
    anchors: Tensor, grids: Sequence[tuple[int, int]], strides: Sequence[float]
) -> Tensor:
    """``[S, A, 2]`` anchors (fractions) in pixels of the image ``grid·stride`` of each scale."""
    sizes = torch.tensor([[w * s, h * s] for (h, w), s in zip(grids, strides)], dtype=anchors.dtype)
    return anchors * sizes.to(anchors.device)[:, None, :]


def wh_iou(wh1: Tensor, wh2: Tensor) -> Tensor:
    """IoU of boxes by width and height alone (both centred at one point): ``[N, 2], [M, 2]
    -> [N, M]``."""
    inter = torch.minimum(wh1[:, None, 0], wh2[None, :, 0]) * torch.minimum(
        wh1[:, None, 1], wh2[None, :, 1]
    )
    area1 = wh1[:, 0] * wh1[:, 1]
    area2 = wh2[:, 0] * wh2[:, 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def assign_yolo_targets(
    boxes: Tensor,
    classes: Tensor,
    grids: Sequence[tuple[int, int]],
    strides: Sequence[float],
    anchors_px: Tensor,
    ignore_iou_threshold: float = 0.0,
    image_size: Sequence[int] | None = None,
) -> list[Tensor]:
    """The YOLO targets of one image (the rule is in the module docs).

    Args:
        boxes: ``[K, 4]`` xyxy pixels (clipped to the image: ``image_size`` where given,
            within the grids' image; a box without area there gets no anchor).
        classes: ``[K]`` integer class ids.
        grids: ``(H_l, W_l)`` per scale.
        strides: pixels per cell per scale.
        anchors_px: ``[S, A, 2]`` anchors in pixels (:func:`anchors_in_pixels`).
        ignore_iou_threshold: in ``[0, 1]``.
        image_size: ``(height, width)`` of the input before a detector padded it to the
            grids' image (Gen1's 304x240 sensor padded to 320x256): the boxes are clipped
            to it; None: to the grids' image.

    Raises:
        ShapeError: ``classes`` not one integer per box, or not one grid, stride and
            anchor set per scale; others as :func:`~spikeflow.detection.check_boxes`.

    Returns:
        One ``[A, H_l, W_l, 6]`` tensor per scale (``boxes``' dtype): the centre's offset
        in its cell ``(t_x, t_y)`` in ``[0, 1)``, the box's width and height in cells,
        the state (1 positive, 0 negative, -1 ignored) and the class id (0 where not
        positive): Lava-DL's ``YOLOtarget`` layout.
    """
    check_boxes(boxes, "boxes")
    if (
        not isinstance(classes, Tensor)
        or classes.is_floating_point()
        or classes.shape != (boxes.shape[0],)
    ):
        what = f"{classes.dtype} {list(classes.shape)}" if isinstance(classes, Tensor) else classes
        raise ShapeError(
            f"classes must be an integer tensor [{boxes.shape[0]}] (one per box), got {what}"
        )
    threshold = check_real("ignore_iou_threshold", ignore_iou_threshold, 0.0, 1.0)
    if image_size is not None:
        if len(image_size) != 2:
            raise ShapeError(f"image_size must be (height, width), got {tuple(image_size)}")
        for name, v in zip(("height", "width"), image_size):
            check_real(f"image_size {name}", v, 0.0, None, low_open=True)
    if len(grids) != len(strides) or anchors_px.shape[0] != len(grids):
        raise ShapeError(
            f"{len(grids)} grids, {len(strides)} strides and {anchors_px.shape[0]} anchor "
            "scales: one of each per scale"
        )
    num_anchors = anchors_px.shape[1]
    out = [
        torch.zeros(num_anchors, h, w, 6, dtype=boxes.dtype, device=boxes.device) for h, w in grids
    ]
    if boxes.shape[0] == 0:
        return out
    # clip to the image (at most the one all the grids cover); boxes left without area
    # get no anchor
    height = min(h * s for (h, _), s in zip(grids, strides))
    width = min(w * s for (_, w), s in zip(grids, strides))
    if image_size is not None:
        height, width = min(height, image_size[0]), min(width, image_size[1])
    x, y = boxes[:, 0::2].clamp(0, width), boxes[:, 1::2].clamp(0, height)
    boxes = torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), -1)
    wh = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    ious = wh_iou(wh, anchors_px.reshape(-1, 2).to(boxes.dtype))  # [K, S·A]
    order = torch.sort(wh[:, 0] * wh[:, 1], descending=True, stable=True).indices
    for k in order.tolist():
        if not bool((wh[k] > 0).all()):
            continue
        cells = []
        for (h, w), s in zip(grids, strides):
            i = min(max(int(centre[k, 1] / s), 0), h - 1)
            j = min(max(int(centre[k, 0] / s), 0), w - 1)
            cells.append((i, j))
        has_anchor = [False] * len(grids)
        for flat in torch.sort(ious[k], descending=True, stable=True).indices.tolist():
            scale, a = divmod(flat, num_anchors)
            i, j = cells[scale]
            slot = out[scale][a, i, j]
            if not has_anchor[scale] and slot[4] != 1:
                s = strides[scale]
                slot[0] = centre[k, 0] / s - j
                slot[1] = centre[k, 1] / s - i
                slot[2:4] = wh[k] / s
                slot[4] = 1
                slot[5] = classes[k]
                has_anchor[scale] = True
            elif slot[4] != 1 and ious[k, flat] > threshold:
                slot[4] = -1
    return out


def split_yolo_output(out: Tensor, num_anchors: int, name: str = "output") -> Tensor:
    """``[..., A·(5 + C), H, W]`` -> ``[..., A, H, W, 5 + C]`` (a view where possible).

    Raises:
        DTypeError, ShapeError: not a floating-point tensor whose channels split into
            ``A`` groups of at least 6.
    """
    if not isinstance(out, Tensor) or not out.is_floating_point():
        what = out.dtype if isinstance(out, Tensor) else type(out).__name__
        raise DTypeError(f"{name} must be a floating-point tensor, got {what}")
    if out.dim() < 3 or out.shape[-3] % num_anchors or out.shape[-3] // num_anchors < 6:
        raise ShapeError(
            f"{name} must be [..., A·(5 + C), H, W] with A = {num_anchors} and C >= 1, got "
            f"{list(out.shape)}"
        )
    *lead, c, h, w = out.shape
    return out.reshape(*lead, num_anchors, c // num_anchors, h, w).movedim(-3, -1)


def decode_yolo(
    outputs: Sequence[Tensor],
    strides: Sequence[float],
    anchors: Tensor,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    pre_nms_top_k: int = 1000,
    max_detections: int = 100,
    image_size: Sequence[int] | None = None,
    clamp_max: float = 5.0,
) -> list[Detections]:
    """Boxes, scores and classes per image from a YOLO detector's outputs.

    Args:
        outputs: one tensor per scale, ``[T, B, A·(5 + C), H, W]`` (decoded from its
            time-mean) or ``[B, A·(5 + C), H, W]``.
        strides: pixels per cell per scale.
        anchors: ``[S, A, 2]`` fractions of the image (module docs).
        score_threshold: keep boxes with ``σ(obj)·max softmax`` above it.
        iou_threshold: class-wise NMS threshold, in ``[0, 1]``.
        pre_nms_top_k: the best boxes kept before NMS.
        max_detections: detections kept per image.
        image_size: ``(height, width)`` to clip to (default: no clipping).
        clamp_max: the largest ``t_w``, ``t_h`` (Lava-DL's 5).

    Returns:
        ``B`` :class:`~spikeflow.detection.Detections`, by decreasing score.
    """
    check_real("score_threshold", score_threshold, 0.0, 1.0)
    check_real("iou_threshold", iou_threshold, 0.0, 1.0)
    top_k = check_positive_int("pre_nms_top_k", pre_nms_top_k)
    keep_n = check_positive_int("max_detections", max_detections)
    if len(outputs) != len(strides) or len(outputs) != anchors.shape[0]:
        raise ShapeError(
            f"{len(outputs)} outputs for {len(strides)} strides and {anchors.shape[0]} "
            "anchor scales: one of each per scale"
        )
    grids = [(int(o.shape[-2]), int(o.shape[-1])) for o in outputs]
    px = anchors_in_pixels(anchors, grids, strides)
    all_boxes, all_scores, all_classes = [], [], []
    for out, s, a in zip(outputs, strides, px):
        p = split_yolo_output(out.detach(), anchors.shape[1])
        if p.dim() == 6:  # [T, B, A, H, W, 5 + C]: the time-mean
            p = p.mean(0)
        p = p.to(torch.promote_types(p.dtype, torch.float32))
        _, _, h, w, _ = p.shape
        gy, gx = torch.meshgrid(
            torch.arange(h, device=p.device, dtype=p.dtype),
            torch.arange(w, device=p.device, dtype=p.dtype),
            indexing="ij",
        )
        cx = (torch.sigmoid(p[..., 0]) + gx) * s
        cy = (torch.sigmoid(p[..., 1]) + gy) * s
        size = torch.exp(p[..., 2:4].clamp(max=clamp_max)) * a.to(p)[None, :, None, None, :]
        xyxy = torch.stack(
            (cx - size[..., 0] / 2, cy - size[..., 1] / 2, cx + size[..., 0] / 2,
             cy + size[..., 1] / 2), -1,
        )  # fmt: skip
        prob, cls = F.softmax(p[..., 5:], -1).max(-1)
        all_boxes.append(xyxy.flatten(1, 3))
        all_scores.append((torch.sigmoid(p[..., 4]) * prob).flatten(1))
        all_classes.append(cls.flatten(1))
    boxes, scores = torch.cat(all_boxes, 1), torch.cat(all_scores, 1)
    return select_detections(boxes, scores, torch.cat(all_classes, 1), score_threshold,
                             iou_threshold, top_k, keep_n, image_size)  # fmt: skip
