"""The anchor-based YOLO loss (Lava-DL's ``YOLOLoss``, with CIoU): per scale, and per
time step or on the time-mean of the read-out.

For one scale with targets from :func:`~spikeflow.detection.yolo.assign_yolo_targets`
(positives ``P``, negatives ``N``; ignored slots take no loss), raw outputs ``t`` and
anchors ``p`` in cells:

* ``coord = mean_P,4 (σ(t_x) - x)², (σ(t_y) - y)², (t_w - log(w/p_w))², (t_h - log(h/p_h))²``
* ``iou = mean_P (1 - CIoU)²`` of the predicted box ``(σ(t_x), σ(t_y), p_w e^{t_w},
  p_h e^{t_h})`` and the target (:func:`~spikeflow.detection.boxes.complete_box_iou`);
* ``obj = mean_P BCE(t_obj, (1 - α) + α·max(CIoU, 0))`` (CIoU detached: the objectness
  target is the box's quality);
* ``noobj = mean_N BCE(t_obj, 0)``;
* ``cls = mean_P CE(t_cls, class)`` with label smoothing;

``λ_coord·coord + λ_obj·obj + λ_noobj·noobj + λ_cls·cls + λ_iou·iou``, summed over the
scales. A term over an empty set is 0 (Lava-DL's mean of nothing is NaN, and its training
script skips the batch). ``time_reduction="step"`` applies this to every step's read-out
and averages over the steps (Lava-DL sums them: ``T`` times this); ``"mean"`` applies it
once to the time-mean of the read-out (the rate-decoded output). The defaults are the
weights of Lava-DL's tiny YOLO training script (``train_sdnn.py``: λ 1, 2, 2, 4, 2,
``α = 0.8``, smoothing 0.1).

Lava-DL's ``bbox_ciou`` computes the centre distance from ``x_max₂ + x_min₂ - x_max₁ -
x_min₂`` (``x_min₂`` twice), i.e. from the right edges only; this loss uses the
centres, as the CIoU paper and torchvision do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_real
from spikeflow._processes import check_process_group
from spikeflow.detection.boxes import _complete_iou, box_convert
from spikeflow.detection.targets import check_target, global_count_share
from spikeflow.detection.yolo import (
    anchors_in_pixels,
    assign_yolo_targets,
    check_anchors,
    split_yolo_output,
)
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.common import check_positive_int

__all__ = ["YOLOLoss"]

_TERMS = ("coord", "obj", "noobj", "cls", "iou")


class YOLOLoss(nn.Module):
    """The YOLO loss (module docs): ``forward(outputs, targets)`` returns the total and
    its parts: ``box`` (``λ_coord·coord + λ_iou·iou``), ``obj`` (``λ_obj·obj +
    λ_noobj·noobj``), ``cls`` (``λ_cls·cls``), so ``total = box + obj + cls``; the five
    unweighted terms (``yolo_coord``, ``yolo_obj``, ``yolo_noobj``, ``yolo_cls``,
    ``yolo_iou``); and ``positives`` (the positive anchor slots of the batch).

    Args:
        num_classes: object classes.
        strides: pixels per cell of each scale (finest first).
        anchors: ``[S, A, 2]`` anchors, fractions of the image
            (:mod:`spikeflow.detection.yolo`).
        lambda_coord, lambda_obj, lambda_noobj, lambda_cls, lambda_iou: the weights.
        alpha_iou: ``α``, how much the objectness target follows the box's CIoU.
        label_smoothing: of the class cross-entropy.
        ignore_iou_threshold: of the assignment.
        time_reduction: ``"step"`` or ``"mean"`` (module docs).
        clamp_max: the largest ``t_w``, ``t_h`` taken by the CIoU's box (Lava-DL clamps
            only when decoding; a bound keeps ``e^{t}`` finite early in training).
        sync_processes: under data-parallel training, divide each term by the global
            batch's number of its cells (summed over the processes of
            ``process_group``), so the gradient DDP averages is one process's on the
            concatenated batch; every process must then call the loss as often, with
            gradients on. False (default): per process (as
            :class:`~spikeflow.detection.DetectionLoss`).
        process_group: the group to sum over (None: the default group).
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[float],
        anchors: Sequence[Sequence[Sequence[float]]] | Tensor,
        lambda_coord: float = 1.0,
        lambda_obj: float = 2.0,
        lambda_noobj: float = 2.0,
        lambda_cls: float = 4.0,
        lambda_iou: float = 2.0,
        alpha_iou: float = 0.8,
        label_smoothing: float = 0.1,
        ignore_iou_threshold: float = 0.0,
        time_reduction: str = "step",
        clamp_max: float = 5.0,
        sync_processes: bool = False,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.strides = tuple(
            check_real(f"strides[{i}]", s, 0.0, None, low_open=True) for i, s in enumerate(strides)
        )
        self.register_buffer("anchors", check_anchors(anchors, len(self.strides)))
        self.weights = {
            name: check_real(f"lambda_{name}", value, 0.0)
            for name, value in zip(
                _TERMS, (lambda_coord, lambda_obj, lambda_noobj, lambda_cls, lambda_iou)
            )
        }
        self.alpha_iou = check_real("alpha_iou", alpha_iou, 0.0, 1.0)
        self.label_smoothing = check_real("label_smoothing", label_smoothing, 0.0, 1.0)
        self.ignore_iou_threshold = check_real(
            "ignore_iou_threshold", ignore_iou_threshold, 0.0, 1.0
        )
        if time_reduction not in ("step", "mean"):
            raise ConfigurationError(
                f"time_reduction must be 'step' (a loss per step) or 'mean' (on the "
                f"time-mean), got {time_reduction!r}"
            )
        self.time_reduction = time_reduction
        self.clamp_max = check_real("clamp_max", clamp_max, 0.0, None, low_open=True)
        self.sync_processes = check_flag("YOLOLoss", "sync_processes", sync_processes)
        self.process_group = check_process_group("YOLOLoss", process_group)

    @property
    def num_anchors(self) -> int:
        """Anchors per cell."""
        return int(self.anchors.shape[1])

    def targets(
        self,
        outputs: Sequence[Tensor],
        targets: Sequence[Tensor],
        image_size: Sequence[int] | None = None,
    ) -> list[Tensor]:
        """The assigned targets of a batch: one ``[B, A, H_l, W_l, 6]`` tensor per scale
        (:func:`~spikeflow.detection.yolo.assign_yolo_targets`, float64), the boxes
        clipped to ``image_size`` (``(height, width)``) where given."""
        grids = [(int(o.shape[-2]), int(o.shape[-1])) for o in outputs]
        px = anchors_in_pixels(self.anchors.double(), grids, self.strides)
        per_image = []
        for i, target in enumerate(targets):
            check_target(target, f"targets[{i}]")
            if target.shape[0] and int(target[:, 0].max()) >= self.num_classes:
                raise ConfigurationError(
                    f"targets[{i}] has class_id {int(target[:, 0].max())}, but the loss has "
                    f"{self.num_classes} classes"
                )
            t = target.detach().double()
            per_image.append(
                assign_yolo_targets(
                    t[:, 1:],
                    t[:, 0].long(),
                    grids,
                    self.strides,
                    px,
                    self.ignore_iou_threshold,
                    image_size,
                )
            )
        return [torch.stack([img[s] for img in per_image]) for s in range(len(grids))]

    def forward(
        self,
        outputs: Sequence[Tensor],
        targets: Sequence[Tensor],
        image_size: Sequence[int] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``outputs``: one ``[T, B, A·(5 + C), H_l, W_l]`` (or ``[B, ...]``) per scale;
        ``targets``: ``B`` ``[K_i, 5]`` contract targets; ``image_size``: the input's
        ``(height, width)`` before the detector padded it (the boxes are clipped to it;
        None: to the padded image the grids cover).

        Raises:
            ShapeError: not one output per scale, or not one target per image, or an
                output's channels not ``A·(5 + num_classes)``.
            ConfigurationError: a class id ``>= num_classes``; others as ``check_target``.
        """
        if isinstance(outputs, Tensor) or len(outputs) != len(self.strides):
            raise ShapeError(
                f"YOLOLoss needs one output per scale ({len(self.strides)}), got "
                f"{type(outputs).__name__ if isinstance(outputs, Tensor) else len(outputs)}"
            )
        preds = [
            split_yolo_output(o, self.num_anchors, f"outputs[{n}]") for n, o in enumerate(outputs)
        ]
        for n, p in enumerate(preds):
            if p.shape[-1] != 5 + self.num_classes:
                raise ShapeError(
                    f"outputs[{n}] has {p.shape[-1]} values per anchor; {self.num_classes} "
                    f"classes need 5 + {self.num_classes}"
                )
            batch = p.shape[-5] if p.dim() >= 5 else -1
            if batch != len(targets):
                raise ShapeError(f"YOLOLoss got {batch} predictions but {len(targets)} targets")
        per_step = preds[0].dim() == 6
        if per_step and self.time_reduction == "mean":
            preds = [p.mean(0) for p in preds]
        tgts = [
            t.to(p.device, p.dtype)
            for p, t in zip(preds, self.targets(outputs, targets, image_size))
        ]
        grids = [(int(o.shape[-2]), int(o.shape[-1])) for o in outputs]
        px = anchors_in_pixels(self.anchors, grids, self.strides)
        terms = dict.fromkeys(_TERMS, torch.zeros((), device=preds[0].device))
        # each term's count of cells (positives, negatives per scale); with
        # sync_processes (DDP) this process's share of the global batch's, so the
        # averaged gradient is one process's on the concatenated batch
        local = torch.stack(
            [torch.stack(((t[..., 4] == 1).sum(), (t[..., 4] == 0).sum())) for t in tgts]
        )
        shares = global_count_share(
            local.to(preds[0].dtype), 0.0, self.sync_processes, self.process_group
        )
        for p, t, a, s, share in zip(preds, tgts, px, self.strides, shares):
            steps = p.unbind(0) if p.dim() == 6 else (p,)
            for step in steps:
                for name, value in self._scale(step, t, a.to(p) / s, share).items():
                    terms[name] = terms[name] + value / len(steps)
        positives = local[:, 0].sum().cpu().to(torch.get_default_dtype())
        parts = {f"yolo_{name}": value.detach() for name, value in terms.items()}
        w = self.weights
        box = w["coord"] * terms["coord"] + w["iou"] * terms["iou"]
        obj = w["obj"] * terms["obj"] + w["noobj"] * terms["noobj"]
        cls = w["cls"] * terms["cls"]
        parts.update(box=box.detach(), obj=obj.detach(), cls=cls.detach(), positives=positives)
        return box + obj + cls, parts

    def _scale(self, p: Tensor, t: Tensor, anchors: Tensor, counts: Tensor) -> dict[str, Tensor]:
        """The five unweighted terms of one scale and step: ``p`` ``[B, A, H, W, 5 + C]``
        raw outputs, ``t`` its targets, ``anchors`` ``[A, 2]`` in cells, ``counts`` what
        the sums over the positives and the negatives are divided by (their numbers, or
        under DDP this process's share of the global batch's)."""
        pos, neg = t[..., 4] == 1, t[..., 4] == 0
        n_pos, n_neg = counts[0], counts[1]
        zero = p.sum() * 0.0  # keeps the graph (and the device) where a set is empty
        noobj = (
            F.binary_cross_entropy_with_logits(
                p[..., 4][neg], torch.zeros_like(p[..., 4][neg]), reduction="sum"
            )
            / n_neg
            if bool(neg.any())
            else zero
        )
        if not bool(pos.any()):
            return {"coord": zero, "obj": zero, "noobj": noobj, "cls": zero, "iou": zero}
        anchor = anchors[None, :, None, None, :].expand(*p.shape[:-1], 2)[pos]
        pp, tp = p[pos], t[pos]
        xy = torch.sigmoid(pp[:, 0:2])
        wh = torch.exp(pp[:, 2:4].clamp(max=self.clamp_max)) * anchor
        pred_box = box_convert(torch.cat((xy, wh), -1), "cxcywh", "xyxy")
        true_box = box_convert(tp[:, :4], "cxcywh", "xyxy")
        ciou = _complete_iou(pred_box, true_box)
        target_obj = (1 - self.alpha_iou) + self.alpha_iou * ciou.detach().clamp(min=0)
        obj = F.binary_cross_entropy_with_logits(pp[:, 4], target_obj, reduction="sum")
        coord = F.mse_loss(
            torch.cat((xy, pp[:, 2:4]), -1),
            torch.cat((tp[:, 0:2], torch.log(tp[:, 2:4] / anchor)), -1),
            reduction="sum",
        )
        cls = F.cross_entropy(
            pp[:, 5:], tp[:, 5].long(), label_smoothing=self.label_smoothing, reduction="sum"
        )
        return {
            "coord": coord / (4 * n_pos),
            "obj": obj / n_pos,
            "noobj": noobj,
            "cls": cls / n_pos,
            "iou": ((1 - ciou) ** 2).sum() / n_pos,
        }

    def extra_repr(self) -> str:
        weights = ", ".join(f"{k}={v}" for k, v in self.weights.items())
        return (
            f"num_classes={self.num_classes}, strides={self.strides}, anchors="
            f"{self.num_anchors}/scale, {weights}, time_reduction={self.time_reduction!r}"
        )
