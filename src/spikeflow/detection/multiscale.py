"""A multi-scale (FPN-style) spiking detector: features at several strides of the
backbone, a top-down pathway, one :class:`~spikeflow.detection.SpikingDetectionHead` per
level, targets assigned per level by object size (FCOS), and decoding across the levels
with one class-wise NMS.

**Pyramid.** The backbone is a list of stages, each halving the resolution (stride
``2, 4, 8, ...``); the levels are taken at the stages whose stride is in ``strides``, and
levels above the backbone's last stride come from further conv3x3/2-BN-neuron stages on
it (FCOS's P6/P7). Top-down as FPN (Lin et al. 2017): each level's 1x1 lateral conv
(``fpn_channels``) plus the coarser level's merged input upsampled (nearest), then BN
and a spiking neuron, so every head reads spikes.

**A head per level, not shared.** FCOS shares its head's weights across levels, with
GroupNorm, because batch-norm statistics differ from level to level; spikeflow's head
has conv-BN-neuron units whose BN statistics and neuron thresholds set the firing of
each level, and shared BN statistics would be a blend fitting none. Separate heads keep
each level's statistics, at the cost of the head's parameters once per level (small
for the 2-3 levels used here). The box branch is stride-normalised anyway
(``softplus(raw)·stride``), which is what FCOS's per-level scale factor provides.

**Assignment** (FCOS, with its centre sampling): a cell of level ``l`` (stride ``s_l``)
is a positive of ground-truth box ``g`` when its centre lies inside ``g``, within
``center_radius·s_l`` of ``g``'s centre (in x and in y), and the largest of its four
distances ``max(l, t, r, b)`` to ``g``'s edges lies in the level's size range
``[lo_l, hi_l]``; a cell claimed by several boxes takes the smallest. A box that claims
no cell on any level gets, on the level whose range holds ``max(w, h) / 2``, the cell
containing its centre. Default ranges (:func:`fcos_size_ranges`): FCOS's
``[0, 64], [64, 128], [128, 256], [256, 512], [512, ∞)`` for strides 8-128, i.e.
``[8·s_{l-1}, 8·s_l]`` with 0 below the first and ∞ above the last level.

The loss and decoder are :class:`~spikeflow.detection.DetectionLoss`'s and
:func:`~spikeflow.detection.decode`'s over the cells of all levels together (the loss
normalised by all positives; one top-k and one class-wise NMS across levels).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow import layers
from spikeflow._checks import check_real
from spikeflow.detection.boxes import check_boxes
from spikeflow.detection.head import (
    HEAD_NEURON_DEFAULTS,
    DetectionLoss,
    DetectMixin,
    SpikingDetectionHead,
    _check_prediction,
    _decode_cells,
    cell_centers,
    decode_boxes,
)
from spikeflow.detection.metrics import Detections
from spikeflow.detection.targets import pad_targets
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.common import NeuronFactory, check_input, check_positive_int

__all__ = [
    "MultiScaleDetectionLoss",
    "SpikingFPNDetector",
    "assign_targets_multiscale",
    "check_strides",
    "decode_multiscale",
    "fcos_size_ranges",
]

SizeRanges = Sequence[Sequence[float]]


def check_strides(strides: Any) -> tuple[int, ...]:
    """``strides`` as a tuple of increasing powers of two ``>= 2``.

    Raises:
        ConfigurationError: empty, not whole powers of two >= 2, or not increasing.
    """
    if isinstance(strides, (str, bytes)) or not isinstance(strides, Sequence) or not strides:
        raise ConfigurationError(f"strides must be a non-empty sequence, got {strides!r}")
    out = []
    for i, s in enumerate(strides):
        if isinstance(s, bool) or not isinstance(s, int) or s < 2 or s & (s - 1):
            raise ConfigurationError(f"strides[{i}] must be a power of two >= 2, got {s!r}")
        out.append(int(s))
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ConfigurationError(f"strides must be increasing, got {tuple(out)}")
    return tuple(out)


def fcos_size_ranges(
    strides: Sequence[int], factor: float = 8.0
) -> tuple[tuple[float, float], ...]:
    """FCOS's size ranges for ``strides``: level ``l`` takes the cells whose largest
    distance to the box's edges is in ``[factor·s_{l-1}, factor·s_l]``, with 0 below the
    first level and ∞ above the last (strides 8-128 with ``factor = 8``: FCOS's 0, 64,
    128, 256, 512, ∞)."""
    strides = check_strides(strides)
    factor = check_real("factor", factor, 0.0, None, low_open=True)
    edges = [0.0, *(factor * s for s in strides[:-1]), math.inf]
    return tuple(itertools.pairwise(edges))


def _check_ranges(
    ranges: SizeRanges | None, strides: tuple[int, ...]
) -> tuple[tuple[float, float], ...]:
    if ranges is None:
        return fcos_size_ranges(strides)
    if isinstance(ranges, (str, bytes)) or not isinstance(ranges, Sequence):
        raise ConfigurationError(
            f"size_ranges must be a sequence of (lo, hi) pairs, got {ranges!r}"
        )
    if len(ranges) != len(strides):
        raise ConfigurationError(
            f"size_ranges must give one (lo, hi) per level: {len(strides)} strides {strides}, "
            f"got {len(ranges)} ranges"
        )
    out = []
    for i, pair in enumerate(ranges):
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise ConfigurationError(f"size_ranges[{i}] must be a (lo, hi) pair, got {pair!r}")
        lo = check_real(f"size_ranges[{i}][0]", pair[0], 0.0, None)
        hi = (
            float(pair[1])
            if pair[1] == math.inf
            else check_real(f"size_ranges[{i}][1]", pair[1], 0.0, None)
        )
        if hi <= lo:
            raise ConfigurationError(f"size_ranges[{i}] must have lo < hi, got {tuple(pair)}")
        out.append((lo, hi))
    return tuple(out)


def _assign_levels(
    boxes: Tensor,
    valid: Tensor,
    shapes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    ranges: Sequence[tuple[float, float]],
    radius: float,
) -> Tensor:
    """The owner of every cell of every level (levels concatenated, each row-major):
    ``boxes [B, K, 4]``, ``valid [B, K]`` -> ``[B, N]`` (-1: background)."""
    b, k = boxes.shape[:2]
    n_cells = sum(h * w for h, w in shapes)
    if k == 0:
        return torch.full((b, n_cells), -1, dtype=torch.long, device=boxes.device)
    x0, y0, x1, y1 = (boxes[..., i, None] for i in range(4))  # [B, K, 1]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = torch.maximum(x1 - x0, y1 - y0) / 2  # max(l, t, r, b) at the box's centre
    # The level of a box that claims no cell: the first whose range reaches max(w, h)/2.
    his = torch.tensor([hi for _, hi in ranges], dtype=boxes.dtype, device=boxes.device)
    home_level = (half[..., None] > his).sum(-1).clamp(max=len(ranges) - 1)  # [B, K, 1]
    candidates, homes = [], []
    for level, ((h, w), s, (lo, hi)) in enumerate(zip(shapes, strides, ranges, strict=True)):
        c = cell_centers(h, w, s, boxes.device).to(boxes.dtype)
        x, y = c[:, 0], c[:, 1]
        dist = torch.stack((x - x0, y - y0, x1 - x, y1 - y), -1)  # [B, K, HW, 4]
        inside = dist.amin(-1) > 0
        reach = dist.amax(-1)
        r = radius * s
        near = ((x - cx).abs() < r) & ((y - cy).abs() < r)
        candidates.append(inside & near & (reach >= lo) & (reach <= hi))
        col = (cx / s).floor().clamp(0, w - 1).long()
        row = (cy / s).floor().clamp(0, h - 1).long()
        home = torch.arange(h * w, device=boxes.device) == row * w + col
        homes.append(home & (home_level == level))
    candidate, home = torch.cat(candidates, -1), torch.cat(homes, -1)  # [B, K, N]
    lonely = ~candidate.any(-1, keepdim=True)
    candidate = (candidate | (lonely & home)) & valid[..., None]
    area = (x1 - x0) * (y1 - y0)
    cost = torch.where(candidate, area, torch.full_like(area, math.inf))
    best, which = cost.min(1)
    return torch.where(torch.isfinite(best), which, torch.full_like(which, -1))


def assign_targets_multiscale(
    boxes: Tensor,
    shapes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    size_ranges: SizeRanges | None = None,
    center_radius: float = 1.5,
) -> list[Tensor]:
    """Which ground-truth box each cell of each level learns: one ``[H_l·W_l]`` int64
    tensor per level, the box's row in ``boxes`` (``[K, 4]`` xyxy) or -1. The rule is
    in the module docs.

    Args:
        boxes: ``[K, 4]`` xyxy pixels.
        shapes: ``(H_l, W_l)`` of each level's grid.
        strides: each level's stride (:func:`check_strides`).
        size_ranges: ``(lo, hi)`` of ``max(l, t, r, b)`` per level (default
            :func:`fcos_size_ranges`).
        center_radius: FCOS's centre-sampling radius, in cells of each level.

    Raises:
        ConfigurationError, ShapeError, DTypeError: bad boxes, strides, ranges or shapes.
    """
    check_boxes(boxes, "boxes")
    strides = check_strides(strides)
    ranges = _check_ranges(size_ranges, strides)
    shapes = _check_shapes(shapes, strides)
    radius = check_real("center_radius", center_radius, 0.0, None, low_open=True)
    valid = torch.ones(1, boxes.shape[0], dtype=torch.bool, device=boxes.device)
    owner = _assign_levels(boxes[None], valid, shapes, strides, ranges, radius)[0]
    return list(owner.split([h * w for h, w in shapes]))


def _check_shapes(shapes: Any, strides: tuple[int, ...]) -> list[tuple[int, int]]:
    if not isinstance(shapes, Sequence) or len(shapes) != len(strides):
        raise ShapeError(f"shapes must give (H, W) for each of the {len(strides)} levels")
    return [(check_positive_int("H", int(h)), check_positive_int("W", int(w))) for h, w in shapes]


def _check_levels(preds: Any, strides: tuple[int, ...], num_classes: int | None) -> None:
    if isinstance(preds, Tensor) or not isinstance(preds, Sequence):
        raise ShapeError(
            f"a multi-scale detector's output is a list of {len(strides)} level outputs "
            f"[B, 5 + C, H_l, W_l], got {type(preds).__name__}"
        )
    if len(preds) != len(strides):
        raise ShapeError(f"got {len(preds)} level outputs for {len(strides)} strides {strides}")
    for p in preds:
        _check_prediction(p, num_classes)
    if len({(p.shape[0], p.shape[1]) for p in preds}) != 1:
        raise ShapeError(
            f"the levels' outputs differ in batch or channels: {[list(p.shape) for p in preds]}"
        )


def _flatten(preds: Sequence[Tensor], strides: Sequence[int]) -> tuple[Tensor, Tensor]:
    """All levels' cells: boxes ``[B, N, 4]`` and outputs ``[B, N, 5 + C]``."""
    boxes = torch.cat([decode_boxes(p, s) for p, s in zip(preds, strides, strict=True)], 1)
    flat = torch.cat([p.permute(0, 2, 3, 1).reshape(p.shape[0], -1, p.shape[1]) for p in preds], 1)
    return boxes, flat


class MultiScaleDetectionLoss(DetectionLoss):
    """:class:`~spikeflow.detection.DetectionLoss` over the levels of a multi-scale
    head: ``forward(preds, targets)`` with one ``[B, 5 + C, H_l, W_l]`` per level, cells
    assigned per level by size (module docs); returns the total and its parts.

    Args:
        num_classes: object classes.
        strides: each level's stride.
        size_ranges: ``(lo, hi)`` per level (default :func:`fcos_size_ranges`).
        center_radius, box_loss, box_weight, obj_weight, cls_weight, sync_processes,
            process_group: as DetectionLoss (the positives of every level counted).
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int],
        size_ranges: SizeRanges | None = None,
        center_radius: float = 1.5,
        box_loss: str = "giou",
        box_weight: float = 5.0,
        obj_weight: float = 1.0,
        cls_weight: float = 1.0,
        sync_processes: bool = False,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        self_strides = check_strides(strides)
        super().__init__(
            num_classes,
            self_strides[0],
            center_radius,
            box_loss,
            box_weight,
            obj_weight,
            cls_weight,
            sync_processes,
            process_group,
        )
        self.strides = self_strides
        self.size_ranges = _check_ranges(size_ranges, self_strides)

    def forward(  # type: ignore[override]
        self, preds: Sequence[Tensor], targets: Sequence[Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``preds``: one output per level; ``targets``: ``B`` ``[K_i, 5]`` tensors.

        Raises:
            ShapeError: not one output per level, or not one target per image.
            ConfigurationError: a class id ``>= num_classes``; others as ``check_target``.
        """
        _check_levels(preds, self.strides, self.num_classes)
        ref = preds[0]
        b = ref.shape[0]
        if len(targets) != b:
            raise ShapeError(
                f"MultiScaleDetectionLoss got {b} predictions but {len(targets)} targets"
            )
        gt_boxes, gt_classes, valid = pad_targets(targets)
        if bool((gt_classes >= self.num_classes).any()):
            i, j = (int(v) for v in (gt_classes >= self.num_classes).nonzero()[0])
            raise ConfigurationError(
                f"targets[{i}] has class_id {int(gt_classes[i, j])}, but the loss has "
                f"{self.num_classes} classes"
            )
        gt_boxes = gt_boxes.to(ref.device, ref.dtype)
        gt_classes, valid = gt_classes.to(ref.device), valid.to(ref.device)
        boxes_pred, flat = _flatten(preds, self.strides)
        shapes = [(int(p.shape[2]), int(p.shape[3])) for p in preds]
        owner = _assign_levels(
            gt_boxes, valid, shapes, self.strides, self.size_ranges, self.center_radius
        )
        return self._loss_terms(flat, boxes_pred, owner, gt_boxes, gt_classes)

    def extra_repr(self) -> str:
        return f"strides={self.strides}, size_ranges={self.size_ranges}, " + super().extra_repr()


def decode_multiscale(
    preds: Sequence[Tensor],
    strides: Sequence[int],
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    pre_nms_top_k: int = 1000,
    max_detections: int = 100,
    image_size: Sequence[int] | None = None,
) -> list[Detections]:
    """:func:`~spikeflow.detection.decode` over the levels of a multi-scale head: the
    cells of all levels scored together, the ``pre_nms_top_k`` best, one class-wise NMS.
    Arguments as :func:`~spikeflow.detection.decode`'s, ``preds`` one output per level."""
    strides = check_strides(strides)
    _check_levels(preds, strides, None)
    check_real("score_threshold", score_threshold, 0.0, 1.0)
    check_real("iou_threshold", iou_threshold, 0.0, 1.0)
    top_k = check_positive_int("pre_nms_top_k", pre_nms_top_k)
    keep_n = check_positive_int("max_detections", max_detections)
    boxes, flat = _flatten([p.detach() for p in preds], strides)
    return _decode_cells(boxes, flat, score_threshold, iou_threshold, top_k, keep_n, image_size)


class SpikingFPNDetector(DetectMixin, nn.Module):
    """Backbone stages, a spiking FPN and one head per level (module docs):
    ``[T, B, C, H, W]`` -> a list of ``[B, 5 + num_classes, H/s_l, W/s_l]``.

    Args:
        stages: modules ``[T, B, C, H, W] -> [T, B, C', H/2, W/2]``, in order; stage
            ``i`` ends at stride ``2**(i + 1)``; the last ends at the last stride.
        channels: the channels each stage puts out.
        strides: the levels (powers of two, each a stage's stride).
        num_classes: object classes.
        fpn_channels: channels of every level (laterals, heads).
        head_depth: spiking units in each head.
        neuron, neuron_kwargs: the neuron of the pyramid and heads (default LIF τ = 2).
        size_ranges: the per-level size ranges of the loss (default FCOS's).
        in_channels: input channels, checked at each call (None: not checked).
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        fpn_channels: int,
        head_depth: int = 1,
        neuron: Any = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        size_ranges: SizeRanges | None = None,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.strides = check_strides(strides)
        if len(stages) != len(channels):
            raise ConfigurationError(f"{len(stages)} stages but {len(channels)} channel counts")
        reach = 2 ** len(stages)
        if self.strides[-1] > reach:
            raise ConfigurationError(
                f"strides {self.strides} go past the stages' last stride {reach}"
            )
        self.levels = [int(math.log2(s)) - 1 for s in self.strides]  # stage index per level
        if self.levels[-1] < len(stages) - 1:
            raise ConfigurationError(
                f"strides {self.strides} end before the stages' last stride {reach}: the "
                f"stages past stride {self.strides[-1]} would never run (their parameters, "
                f"extra units among them, never trained); end the strides at {reach} or "
                "give fewer stages (widths)"
            )
        self.stages = nn.ModuleList(stages)
        check_positive_int("fpn_channels", fpn_channels)
        factory = NeuronFactory(neuron, neuron_kwargs, HEAD_NEURON_DEFAULTS)
        self.laterals = nn.ModuleList(
            layers.Conv2d(channels[i], fpn_channels, 1, bias=False) for i in self.levels
        )
        self.merges = nn.ModuleList(
            nn.Sequential(layers.BatchNorm2d(fpn_channels), factory()) for _ in self.levels
        )
        self.heads = nn.ModuleList(
            SpikingDetectionHead(
                fpn_channels,
                num_classes,
                depth=head_depth,
                neuron=neuron,
                neuron_kwargs=neuron_kwargs,
            )
            for _ in self.levels
        )
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.size_ranges = _check_ranges(size_ranges, self.strides)
        self.in_channels = in_channels
        self.stride = float(self.strides[0])

    def forward(self, x: Tensor) -> list[Tensor]:
        """One raw head output ``[B, 5 + num_classes, H_l, W_l]`` per level, finest
        first (train with :meth:`criterion`, decode with :meth:`decode_output`)."""
        if self.in_channels is not None:
            check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        features, h = [], x
        for i, stage in enumerate(self.stages[: self.levels[-1] + 1]):
            h = stage(h)
            if i in self.levels:
                features.append(h)
        merged: list[Tensor] = []
        top: Tensor | None = None
        for lateral, f in zip(reversed(self.laterals), reversed(features), strict=True):
            m = lateral(f)
            if top is not None:  # the coarser level's input, upsampled (nearest)
                t, b = top.shape[:2]
                up = F.interpolate(top.flatten(0, 1), size=m.shape[-2:], mode="nearest")
                m = m + up.unflatten(0, (t, b))
            merged.append(m)
            top = m
        merged.reverse()
        return [
            head(merge(m)) for head, merge, m in zip(self.heads, self.merges, merged, strict=True)
        ]

    def criterion(self, **kwargs: Any) -> MultiScaleDetectionLoss:
        """The training loss of this detector's output: :class:`MultiScaleDetectionLoss`
        on its classes, strides and size ranges, with ``kwargs``."""
        kwargs.setdefault("size_ranges", self.size_ranges)
        return MultiScaleDetectionLoss(self.num_classes, self.strides, **kwargs)

    def decode_output(
        self,
        out: Sequence[Tensor],
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
        image_size: Sequence[int] | None = None,
    ) -> list[Detections]:
        """Detections from this detector's output (:func:`decode_multiscale`)."""
        return decode_multiscale(
            out,
            self.strides,
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            image_size=image_size,
        )

    def extra_repr(self) -> str:
        return f"strides={self.strides}, size_ranges={self.size_ranges}"
