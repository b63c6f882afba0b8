"""An anchor-free spiking detection head, its training loss and its decoder.

**Design** (FCOS/YOLOX-like, one scale; docs/detection.md says why): every cell of the
backbone's feature map ``[T, B, C, H, W]`` (stride ``s`` pixels) predicts

* 4 box distances ``(l, t, r, b)`` from the cell centre ``((j + ½)s, (i + ½)s)`` to the
  box's left, top, right and bottom edges, ``softplus(raw)·s`` pixels;
* an objectness logit;
* one logit per class (independent sigmoids, as YOLOX).

The head is ``depth`` spiking conv units (conv3x3-BN-neuron) and a 1x1 conv read-out
applied at every step; the prediction is the **time-mean of the read-out** (its
"membrane", no spike at the output), as EMS-YOLO and SpikeYOLO decode. Channels of the
``[B, 5 + num_classes, H, W]`` output: ``0:4`` box, ``4`` objectness, ``5:`` classes.

**Assignment** (FCOS's centre sampling): a cell is a positive of ground-truth box ``g``
when its centre lies inside ``g`` and within ``center_radius·s`` of ``g``'s centre (in x
and in y); a cell claimed by several boxes takes the smallest; a box that claims no cell
(smaller than a cell) gets the cell containing its centre.

**Loss**: ``box_weight·Σ(1 − GIoU)`` (or IoU) over positives, ``+ obj_weight·Σ BCE`` of
objectness over all cells (target 1 at positives), ``+ cls_weight·Σ BCE`` of the class
logits at positives (one-hot targets), all divided by the number of positives in the
batch (at least 1). Weights default to YOLOX's (5, 1, 1).

**Decoding**: score = sigmoid(objectness)·sigmoid(best class logit); cells above
``score_threshold``, the ``pre_nms_top_k`` best, class-wise NMS, at most
``max_detections`` per image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow import layers
from spikeflow._checks import check_flag, check_real
from spikeflow._processes import check_process_group
from spikeflow.detection.boxes import (
    batched_nms,
    check_boxes,
    clip_boxes_to_image,
    elementwise_box_iou,
)
from spikeflow.detection.metrics import Detections
from spikeflow.detection.targets import global_count_share, pad_targets
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.models.common import NeuronFactory, NeuronSpec, check_positive_int

__all__ = [
    "HEAD_NEURON_DEFAULTS",
    "DetectionLoss",
    "SpikingDetectionHead",
    "assign_targets",
    "cell_centers",
    "decode",
    "decode_boxes",
]

#: The head's default neuron arguments: LIF τ = 2, detached hard reset, ATan surrogate.
HEAD_NEURON_DEFAULTS: dict[str, Any] = {
    "tau": 2.0,
    "detach_reset": True,
    "surrogate_function": "atan",
}


def _check_prediction(pred: Tensor, num_classes: int | None = None) -> None:
    if not isinstance(pred, Tensor):
        raise DTypeError(f"pred must be a tensor, got {type(pred).__name__}")
    if not pred.is_floating_point():
        raise DTypeError(f"pred must be floating point, got {pred.dtype}")
    if pred.dim() != 4 or pred.shape[1] < 6:
        raise ShapeError(
            f"pred must be the head's output [B, 5 + num_classes, H, W], got {list(pred.shape)}"
        )
    if num_classes is not None and pred.shape[1] != 5 + num_classes:
        raise ShapeError(
            f"pred has {pred.shape[1]} channels; {num_classes} classes need 5 + "
            f"{num_classes} = {5 + num_classes}"
        )


def _check_stride(stride: Any) -> float:
    return check_real("stride", stride, 0.0, None, low_open=True)


def cell_centers(height: int, width: int, stride: float, device: Any = None) -> Tensor:
    """Pixel coordinates ``[H·W, 2]`` (x, y) of the cell centres, row-major."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx.reshape(-1), gy.reshape(-1)), -1)


def decode_boxes(pred: Tensor, stride: float) -> Tensor:
    """The boxes every cell predicts, ``[B, H·W, 4]`` xyxy pixels, from the head's output
    ``[B, 5 + C, H, W]``: centre ∓ ``softplus(raw)·stride``.

    The boxes are computed in ``pred``'s dtype promoted to float32 at least: a half-
    precision (bfloat16, float16) ``pred`` gives float32 boxes, since pixel coordinates
    past 256 (bfloat16) or 2048 (float16) are not all representable in it (a large
    map's cell centres would be rounded by up to several pixels)."""
    _check_prediction(pred)
    s = _check_stride(stride)
    b, _, h, w = pred.shape
    dtype = torch.promote_types(pred.dtype, torch.float32)
    ltrb = F.softplus(pred[:, :4].to(dtype)).permute(0, 2, 3, 1).reshape(b, h * w, 4) * s
    c = cell_centers(h, w, s, pred.device).to(dtype)
    return torch.cat((c - ltrb[..., :2], c + ltrb[..., 2:]), -1)


def _assign(
    boxes: Tensor, valid: Tensor, height: int, width: int, stride: float, radius: float
) -> Tensor:
    """:func:`assign_targets` for a padded batch: ``boxes [B, K, 4]``, ``valid [B, K]``
    -> ``[B, H·W]``."""
    n_cells = height * width
    if boxes.shape[1] == 0:
        return torch.full((boxes.shape[0], n_cells), -1, dtype=torch.long, device=boxes.device)
    c = cell_centers(height, width, stride, boxes.device).to(boxes.dtype)  # [HW, 2]
    x, y = c[:, 0], c[:, 1]
    x0, y0, x1, y1 = (boxes[..., i, None] for i in range(4))  # [B, K, 1]
    inside = (x > x0) & (x < x1) & (y > y0) & (y < y1)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, radius * stride
    candidate = inside & ((x - cx).abs() < r) & ((y - cy).abs() < r)  # [B, K, HW]
    # A box that claims no cell gets the cell containing its centre.
    col = (cx / stride).floor().clamp(0, width - 1).long()
    row = (cy / stride).floor().clamp(0, height - 1).long()
    lonely = ~candidate.any(-1, keepdim=True)
    home = torch.arange(n_cells, device=boxes.device) == row * width + col
    candidate = (candidate | (lonely & home)) & valid[..., None]
    area = (x1 - x0) * (y1 - y0)
    cost = torch.where(candidate, area, torch.full_like(area, math.inf))
    best, which = cost.min(1)  # [B, HW]: the smallest claiming box
    return torch.where(torch.isfinite(best), which, torch.full_like(which, -1))


def assign_targets(
    boxes: Tensor, height: int, width: int, stride: float, center_radius: float = 1.5
) -> Tensor:
    """Which ground-truth box each cell learns: ``[H·W]`` int64, the box's row in
    ``boxes`` (``[K, 4]`` xyxy) or -1 (background). The rule is in the module docs.

    Raises:
        DTypeError, ShapeError, ConfigurationError: ``boxes`` is not a floating-point
            ``[K, 4]`` tensor of valid boxes (:func:`~spikeflow.detection.check_boxes`).
        ConfigurationError: ``height``/``width`` not positive integers, ``stride`` or
            ``center_radius`` not a finite number ``> 0``.
    """
    check_boxes(boxes, "boxes")
    check_positive_int("height", height)
    check_positive_int("width", width)
    s = _check_stride(stride)
    radius = check_real("center_radius", center_radius, 0.0, None, low_open=True)
    if boxes.shape[0] == 0:
        return torch.full((height * width,), -1, dtype=torch.long, device=boxes.device)
    valid = torch.ones(1, boxes.shape[0], dtype=torch.bool, device=boxes.device)
    return _assign(boxes[None], valid, height, width, s, radius)[0]


class DetectMixin:
    """:meth:`detect` for a detector module with a ``decode_output(out, score_threshold,
    iou_threshold, max_detections, image_size)`` method."""

    def detect(
        self,
        x: Tensor,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
    ) -> list[Detections]:
        """Boxes, scores and classes per image (``decode_output`` of the network's
        output), clipped to the input's size. Runs the network; put it in eval mode
        first."""
        return self.decode_output(  # type: ignore[attr-defined]
            self(x),  # type: ignore[operator]
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            image_size=(int(x.shape[-2]), int(x.shape[-1])),
        )


class SpikingDetectionHead(nn.Module):
    """Spiking conv units and a 1x1 read-out on a spiking feature map, decoded from the
    time-mean of the read-out: ``[T, B, C, H, W] -> [B, 5 + num_classes, H, W]``.

    Args:
        in_channels: channels ``C`` of the backbone's feature map.
        num_classes: object classes.
        hidden_channels: channels of the spiking conv units (default ``in_channels``).
        depth: number of conv3x3-BN-neuron units before the read-out (0: the read-out
            sits directly on the backbone's spikes).
        neuron, neuron_kwargs: the spiking neuron (default LIF, see
            :data:`HEAD_NEURON_DEFAULTS`), as in the model zoo.
        prior_prob: initial objectness and class probability (RetinaNet/YOLOX's prior,
            0.01: the read-out's bias starts at ``-log((1 - p) / p)``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden_channels: int | None = None,
        depth: int = 1,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        self.num_classes = check_positive_int("num_classes", num_classes)
        hidden = in_channels if hidden_channels is None else hidden_channels
        check_positive_int("hidden_channels", hidden)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ConfigurationError(f"depth must be an integer >= 0, got {depth!r}")
        p = check_real("prior_prob", prior_prob, 0.0, 1.0, low_open=True, high_open=True)
        factory = NeuronFactory(neuron, neuron_kwargs, HEAD_NEURON_DEFAULTS)
        units: list[nn.Module] = []
        channels = in_channels
        for _ in range(depth):
            units += [
                layers.Conv2d(channels, hidden, 3, padding=1, bias=False),
                layers.BatchNorm2d(hidden),
                factory(),
            ]
            channels = hidden
        self.in_channels = in_channels
        self.units = nn.Sequential(*units)
        self.readout = layers.Conv2d(channels, 5 + num_classes, 1)
        nn.init.normal_(self.readout.weight, std=0.01)
        with torch.no_grad():
            self.readout.bias.zero_()
            self.readout.bias[4:].fill_(-math.log((1 - p) / p))

    def forward(self, features: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` spikes -> ``[B, 5 + num_classes, H, W]``, the time-mean of
        the read-out."""
        if not isinstance(features, Tensor) or features.dim() != 5:
            shape = list(features.shape) if isinstance(features, Tensor) else type(features)
            raise ShapeError(f"the head expects features [T, B, C, H, W], got {shape}")
        if features.shape[2] != self.in_channels:
            raise ShapeError(
                f"the head was built for {self.in_channels} channels, got features "
                f"{list(features.shape)}"
            )
        return self.readout(self.units(features)).mean(0)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, num_classes={self.num_classes}"


class DetectionLoss(nn.Module):
    """The head's training loss (module docs): ``forward(pred, targets)`` returns the
    total and its parts ``{"box", "obj", "cls", "positives"}`` (detached).

    Args:
        num_classes: object classes.
        stride: pixels per cell of the head's output.
        center_radius: FCOS's centre-sampling radius, in cells (1.5).
        box_loss: ``"giou"`` (default) or ``"iou"``: ``1 - GIoU`` or ``1 - IoU``.
        box_weight, obj_weight, cls_weight: the weights (YOLOX's 5, 1, 1).
        sync_processes: under data-parallel training, divide by the positives of the
            global batch (summed over the processes of ``process_group``; the default
            group where None), so the gradient DDP averages is one process's on the
            concatenated batch. Every process must then call the loss as often, with
            gradients on (without gradients nothing is communicated). False (default):
            each process divides by its own; an initialised group alone never makes
            the loss communicate (the detection trainer sets it under ``torchrun``).
        process_group: the group to sum over (None: the default group).
    """

    def __init__(
        self,
        num_classes: int,
        stride: float,
        center_radius: float = 1.5,
        box_loss: str = "giou",
        box_weight: float = 5.0,
        obj_weight: float = 1.0,
        cls_weight: float = 1.0,
        sync_processes: bool = False,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.stride = _check_stride(stride)
        self.center_radius = check_real("center_radius", center_radius, 0.0, None, low_open=True)
        if box_loss not in ("giou", "iou"):
            raise ConfigurationError(f"box_loss must be 'giou' or 'iou', got {box_loss!r}")
        self.box_loss = box_loss
        self.box_weight = check_real("box_weight", box_weight, 0.0)
        self.obj_weight = check_real("obj_weight", obj_weight, 0.0)
        self.cls_weight = check_real("cls_weight", cls_weight, 0.0)
        owner = type(self).__name__
        self.sync_processes = check_flag(owner, "sync_processes", sync_processes)
        self.process_group = check_process_group(owner, process_group)

    def forward(self, pred: Tensor, targets: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """``pred`` ``[B, 5 + num_classes, H, W]`` (the head's output) and ``B`` targets
        ``[K_i, 5]`` (the contract of :mod:`spikeflow.detection.targets`).

        Raises:
            ShapeError: wrong ``pred`` shape or not one target per image.
            ConfigurationError: a class id ``>= num_classes``; others as ``check_target``.
        """
        _check_prediction(pred, self.num_classes)
        b, _, h, w = pred.shape
        if len(targets) != b:
            raise ShapeError(f"DetectionLoss got {b} predictions but {len(targets)} targets")
        gt_boxes, gt_classes, valid = pad_targets(targets)
        if bool((gt_classes >= self.num_classes).any()):
            i, j = (int(v) for v in (gt_classes >= self.num_classes).nonzero()[0])
            raise ConfigurationError(
                f"targets[{i}] has class_id {int(gt_classes[i, j])}, but the loss has "
                f"{self.num_classes} classes"
            )
        gt_boxes, gt_classes, valid = (
            gt_boxes.to(pred.device, pred.dtype),
            gt_classes.to(pred.device),
            valid.to(pred.device),
        )
        boxes_pred = decode_boxes(pred, self.stride)  # [B, HW, 4]
        flat = pred.permute(0, 2, 3, 1).reshape(b, h * w, -1)
        owner = _assign(gt_boxes, valid, h, w, self.stride, self.center_radius)  # [B, HW]
        return self._loss_terms(flat, boxes_pred, owner, gt_boxes, gt_classes)

    def _loss_terms(
        self, flat: Tensor, boxes_pred: Tensor, owner: Tensor, gt_boxes: Tensor, gt_classes: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss from the cells' outputs ``flat [B, N, 5 + C]``, their decoded boxes
        ``[B, N, 4]`` and owners ``[B, N]`` (-1: background; the cells of every level of
        a multi-scale head concatenated), and the padded ground truth."""
        pos = owner >= 0
        n_pos = pos.sum().to(flat.dtype)
        # with sync_processes (DDP): this process's share of the global batch's positives
        # (at least 1 in all), so the averaged gradient is one process's on the whole batch
        norm = global_count_share(n_pos, 1.0, self.sync_processes, self.process_group)
        index = owner.clamp(min=0)
        matched = torch.gather(gt_boxes, 1, index[..., None].expand(-1, -1, 4))[pos]
        iou = elementwise_box_iou(boxes_pred[pos], matched, self.box_loss == "giou")
        box = (1.0 - iou).sum() / norm
        onehot = F.one_hot(torch.gather(gt_classes, 1, index)[pos], self.num_classes)
        cls = (
            F.binary_cross_entropy_with_logits(
                flat[..., 5:][pos], onehot.to(flat.dtype), reduction="sum"
            )
            / norm
        )
        obj_target = pos.to(flat.dtype)
        obj = F.binary_cross_entropy_with_logits(flat[..., 4], obj_target, reduction="sum") / norm
        total = self.box_weight * box + self.obj_weight * obj + self.cls_weight * cls
        parts = {"box": box.detach(), "obj": obj.detach(), "cls": cls.detach(), "positives": n_pos}
        return total, parts

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, stride={self.stride}, box_loss={self.box_loss!r}, "
            f"weights=({self.box_weight}, {self.obj_weight}, {self.cls_weight})"
        )


def decode(
    pred: Tensor,
    stride: float,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    pre_nms_top_k: int = 1000,
    max_detections: int = 100,
    image_size: Sequence[int] | None = None,
) -> list[Detections]:
    """The head's output ``[B, 5 + C, H, W]`` as boxes, scores and classes per image.

    Args:
        pred: the head's output.
        stride: pixels per cell.
        score_threshold: keep cells with ``sigmoid(obj)·sigmoid(class)`` above this.
        iou_threshold: class-wise NMS threshold, in ``[0, 1]``.
        pre_nms_top_k: the best cells kept before NMS.
        max_detections: detections kept per image after NMS.
        image_size: ``(height, width)`` to clip boxes to (default: no clipping).

    Returns:
        ``B`` :class:`~spikeflow.detection.Detections` (boxes xyxy pixels, float32 at
        least: :func:`decode_boxes`; scores; int64 classes), by decreasing score.
    """
    _check_prediction(pred)
    s = _check_stride(stride)
    check_real("score_threshold", score_threshold, 0.0, 1.0)
    check_real("iou_threshold", iou_threshold, 0.0, 1.0)
    top_k = check_positive_int("pre_nms_top_k", pre_nms_top_k)
    keep_n = check_positive_int("max_detections", max_detections)
    boxes = decode_boxes(pred.detach(), s)
    b = pred.shape[0]
    flat = pred.detach().permute(0, 2, 3, 1).reshape(b, -1, pred.shape[1])
    return _decode_cells(boxes, flat, score_threshold, iou_threshold, top_k, keep_n, image_size)


def _decode_cells(
    boxes: Tensor,
    flat: Tensor,
    score_threshold: float,
    iou_threshold: float,
    top_k: int,
    keep_n: int,
    image_size: Sequence[int] | None,
) -> list[Detections]:
    """:func:`decode` from the cells' boxes ``[B, N, 4]`` and outputs ``[B, N, 5 + C]``
    (the cells of every level of a multi-scale head concatenated: one NMS over all)."""
    cls_prob, classes = torch.sigmoid(flat[..., 5:]).max(-1)
    scores = torch.sigmoid(flat[..., 4]) * cls_prob
    return select_detections(
        boxes, scores, classes, score_threshold, iou_threshold, top_k, keep_n, image_size
    )


def select_detections(
    boxes: Tensor,
    scores: Tensor,
    classes: Tensor,
    score_threshold: float,
    iou_threshold: float,
    top_k: int,
    keep_n: int,
    image_size: Sequence[int] | None,
) -> list[Detections]:
    """Per image of candidate ``boxes`` ``[B, N, 4]`` (xyxy) with their ``scores`` and
    ``classes`` ``[B, N]``: those scoring above ``score_threshold``, at most ``top_k`` of
    the best, clipped to ``image_size`` (``(H, W)``, None: not clipped), then class-wise
    NMS at ``iou_threshold``, at most ``keep_n`` kept."""
    out = []
    for i in range(boxes.shape[0]):
        keep = (scores[i] > score_threshold).nonzero()[:, 0]
        if keep.numel() > top_k:
            keep = keep[scores[i, keep].topk(top_k).indices]
        bx, sc, cl = boxes[i, keep], scores[i, keep], classes[i, keep]
        if image_size is not None:
            bx = clip_boxes_to_image(bx, image_size)
        kept = batched_nms(bx, sc, cl, iou_threshold)[:keep_n]
        out.append(Detections(bx[kept], sc[kept], cl[kept]))
    return out
