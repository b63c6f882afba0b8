"""Anchor-based YOLO: CIoU by hand and against torchvision's formula written out; the
target assignment and the loss against Lava-DL's ``YOLOtarget``/``YOLOLoss`` transcribed
here as a float64 reference on random boxes; decoding back to the boxes the targets
came from; the spiking tiny YOLOv3 (sigma-delta with θ = 0 is the ANN at each step)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spikeflow.detection import (
    MeanAveragePrecision,
    YOLOLoss,
    assign_yolo_targets,
    complete_box_iou,
    complete_box_iou_loss,
    decode_yolo,
)
from spikeflow.detection.yolo import anchors_in_pixels, check_anchors
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.tiny_yolov3 import tiny_yolov3

torch.set_num_threads(1)


def random_boxes(n, size, gen, lo=4.0, hi=40.0, dtype=torch.float64):
    wh = lo + (hi - lo) * torch.rand(n, 2, generator=gen, dtype=dtype)
    c = torch.rand(n, 2, generator=gen, dtype=dtype) * torch.tensor(size, dtype=dtype)
    return torch.cat((c - wh / 2, c + wh / 2), 1)


# -- CIoU -------------------------------------------------------------------------------


def test_ciou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    # squares offset by (1, 1): IoU 1/7, enclosing (0,0,3,3): c² = 18, ρ² = 2, v = 0
    first = 1 / 7 - 2 / 18
    # 4x2 and 2x2 sharing a corner: IoU 4/8, enclosing 4x2: c² = 20, centres (2,1), (1,1)
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    second = 0.5 - 1 / 20 - v / (1 - 0.5 + v) * v
    got = complete_box_iou_loss(a, b)
    assert got.tolist() == pytest.approx([1 - first, 1 - second], abs=1e-14)
    assert complete_box_iou(a, b).diagonal().tolist() == pytest.approx([first, second], abs=1e-14)
    assert complete_box_iou(a, a).diagonal().tolist() == pytest.approx([1.0, 1.0])
    assert complete_box_iou_loss(a, b, "sum").item() == pytest.approx(2 - first - second)
    assert complete_box_iou_loss(a[:0], b[:0], "mean").item() == 0.0


def torchvision_ciou_loss(b1, b2, eps=1e-7):
    """torchvision.ops.complete_box_iou_loss's formula (torchvision 0.20), written out."""
    x1, y1, x2, y2 = b1.unbind(-1)
    x1g, y1g, x2g, y2g = b2.unbind(-1)
    xi1, yi1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xi2, yi2 = torch.min(x2, x2g), torch.min(y2, y2g)
    inter = (xi2 - xi1).clamp(min=0) * (yi2 - yi1).clamp(min=0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    xc1, yc1 = torch.min(x1, x1g), torch.min(y1, y1g)
    xc2, yc2 = torch.max(x2, x2g), torch.max(y2, y2g)
    diag = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
    dist = ((x2 + x1) / 2 - (x2g + x1g) / 2) ** 2 + ((y2 + y1) / 2 - (y2g + y1g) / 2) ** 2
    v = (
        4
        / torch.pi**2
        * (torch.atan((x2g - x1g) / (y2g - y1g)) - torch.atan((x2 - x1) / (y2 - y1))) ** 2
    )
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return 1 - iou + dist / diag + alpha * v


def test_ciou_loss_and_its_gradient_equal_torchvisions_formula():
    gen = torch.Generator().manual_seed(0)
    a = random_boxes(200, (60, 60), gen).requires_grad_()
    b = random_boxes(200, (60, 60), gen)
    ours = complete_box_iou_loss(a, b)
    ref = torchvision_ciou_loss(a, b)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
    assert (ours > 1).any() and (ours < 1).any()  # overlapping and disjoint pairs both
    (g_ours,) = torch.autograd.grad(ours.sum(), a)
    (g_ref,) = torch.autograd.grad(ref.sum(), a)
    assert torch.allclose(g_ours, g_ref, atol=1e-6, rtol=0)
    pair = complete_box_iou(a[:7].detach(), b[:5])
    for i in range(7):
        row = 1 - complete_box_iou_loss(a[i : i + 1].detach().expand(5, 4), b[:5])
        assert torch.allclose(pair[i], row, atol=1e-15)


def test_ciou_loss_checks_its_input():
    a = torch.zeros(3, 4)
    with pytest.raises(ShapeError, match=r"\[3, 4\] and \[2, 4\]"):
        complete_box_iou_loss(a, a[:2])
    with pytest.raises(ConfigurationError, match="reduction"):
        complete_box_iou_loss(a, a, "avg")


# -- Lava-DL's YOLOtarget and YOLOLoss, transcribed (lava-dl, src/lava/lib/dl/slayer/
# object_detection/yolo_base.py and boundingbox/metrics.py) --------------------------


def lava_wh_iou(wh1, wh2):
    inter = torch.min(wh1[:, None, 0], wh2[None, :, 0]) * torch.min(
        wh1[:, None, 1], wh2[None, :, 1]
    )
    union = (wh1[:, 0] * wh1[:, 1])[:, None] + (wh2[:, 0] * wh2[:, 1])[None, :] - inter + 1e-10
    return inter / union


def lava_targets(objects, anchors_norm, scales, ignore_iou_thres=0.5):
    """YOLOtarget.forward: objects [K, 6] = (cx, cy, w, h, conf, label) normalised, in
    decreasing area (tensor_from_annotation's order); scales (W, H) per scale."""
    num_anchors = anchors_norm.shape[1]
    flat_anchors = anchors_norm.reshape(-1, 2)
    tgts = [torch.zeros(num_anchors, h, w, 6, dtype=torch.float64) for (w, h) in scales]
    for obj in range(objects.shape[0]):
        x, y, width, height, _, label = objects[obj].tolist()
        ious = lava_wh_iou(objects[obj : obj + 1, 2:4], flat_anchors).flatten()
        has_anchor = [False] * len(scales)
        for idx in ious.argsort(descending=True).tolist():
            scale, a = divmod(idx, num_anchors)
            sx, sy = scales[scale]
            i, j = int(y * sy), int(x * sx)
            taken = tgts[scale][a, i, j, 4]
            if not taken and not has_anchor[scale]:
                tgts[scale][a, i, j, 4] = 1
                tgts[scale][a, i, j, :4] = torch.tensor(
                    [sx * x - j, sy * y - i, width * sx, height * sy], dtype=torch.float64
                )
                tgts[scale][a, i, j, 5] = int(label)
                has_anchor[scale] = True
            elif not (taken and ious[idx] > ignore_iou_thres):
                tgts[scale][a, i, j, 4] = -1
    return tgts


def lava_ciou(b1, b2, fix_centre=True):
    """bbox_ciou (cxcywh). Lava-DL's centre distance uses x_max2 + x_min2 - x_max1 - x_min2;
    ``fix_centre`` uses x_min1 for the last term, the distance of the centres."""
    eps = 1e-10
    x0a, x1a = b1[..., 0] - b1[..., 2] / 2, b1[..., 0] + b1[..., 2] / 2
    y0a, y1a = b1[..., 1] - b1[..., 3] / 2, b1[..., 1] + b1[..., 3] / 2
    x0b, x1b = b2[..., 0] - b2[..., 2] / 2, b2[..., 0] + b2[..., 2] / 2
    y0b, y1b = b2[..., 1] - b2[..., 3] / 2, b2[..., 1] + b2[..., 3] / 2
    dx = (torch.min(x1a, x1b) - torch.max(x0a, x0b)).clamp(min=0)
    dy = (torch.min(y1a, y1b) - torch.max(y0a, y0b)).clamp(min=0)
    inter = dx * dy
    iou = inter / ((x1a - x0a) * (y1a - y0a) + (x1b - x0b) * (y1b - y0b) - inter + eps)
    c2 = (
        (torch.max(x1a, x1b) - torch.min(x0a, x0b)) ** 2
        + (torch.max(y1a, y1b) - torch.min(y0a, y0b)) ** 2
        + eps
    )
    last_x, last_y = (x0a, y0a) if fix_centre else (x0b, y0b)
    rho2 = ((x1b + x0b - x1a - last_x) ** 2 + (y1b + y0b - y1a - last_y) ** 2) / 4
    v = (
        4
        / math.pi**2
        * (
            torch.atan((x1a - x0a) / (y1a - y0a + eps))
            - torch.atan((x1b - x0b) / (y1b - y0b + eps))
        )
        ** 2
    )
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return iou - (rho2 / c2 + alpha * v)


def lava_loss(predictions, targets, anchors_cells, lam, alpha_iou, smoothing, fix_centre=True):
    """YOLOLoss.forward: predictions per scale [B, A, H, W, 5 + C, T], targets per scale
    [B, A, H, W, 6, T]; anchors in cells per scale. Summed over steps and scales."""
    total = 0.0
    for time in range(predictions[0].shape[-1]):
        for p_all, t_all, anchors in zip(predictions, targets, anchors_cells):
            p, t = p_all[..., time].clone(), t_all[..., time].clone()
            obj, noobj = t[..., 4] == 1, t[..., 4] == 0
            no_object = F.binary_cross_entropy_with_logits(p[..., 4:5][noobj], t[..., 4:5][noobj])
            anchors = anchors.reshape(1, -1, 1, 1, 2)
            box = torch.cat([torch.sigmoid(p[..., 0:2]), torch.exp(p[..., 2:4]) * anchors], -1)
            ious = lava_ciou(box[obj], t[..., :4][obj], fix_centre)
            scale = (1 - alpha_iou) + alpha_iou * ious.detach().clamp(0)
            object_loss = F.binary_cross_entropy_with_logits(
                p[..., 4:5][obj].flatten(), scale * t[..., 4:5][obj].flatten()
            )
            iou_loss = torch.mean((1 - ious) ** 2)
            p[..., 0:2] = p[..., 0:2].sigmoid()
            t[..., 2:4] = torch.log(t[..., 2:4] / anchors + 1e-16)
            coord = F.mse_loss(p[..., :4][obj], t[..., :4][obj])
            cls = F.cross_entropy(p[..., 5:][obj], t[..., 5][obj].long(), label_smoothing=smoothing)
            total = total + (lam[0] * coord + lam[1] * object_loss + lam[2] * no_object
                             + lam[3] * cls + lam[4] * iou_loss)  # fmt: skip
    return total


ANCHORS = check_anchors([[(0.07, 0.15), (0.15, 0.11), (0.14, 0.29)],
                         [(0.28, 0.22), (0.38, 0.48), (0.90, 0.78)]]).double()  # fmt: skip
STRIDES = (16, 32)
IMAGE = (96, 128)  # (height, width): grids (6, 8) and (3, 4), not square
GRIDS = [(IMAGE[0] // s, IMAGE[1] // s) for s in STRIDES]


def separate_objects(gen, k, num_classes=4):
    """``k`` random boxes whose centres fall in different cells on every scale (Lava-DL's
    rule and spikeflow's agree there), sorted by decreasing area, and their classes."""
    while True:
        boxes = random_boxes(k, (IMAGE[1], IMAGE[0]), gen, 4.0, 80.0)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0.0, IMAGE[1] - 1e-3)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0.0, IMAGE[0] - 1e-3)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        cells = {(s, int(c[1] / s), int(c[0] / s)) for s in STRIDES for c in centre}
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        if len(cells) == len(STRIDES) * k and (area > 1).all():
            order = area.argsort(descending=True)
            classes = torch.randint(0, num_classes, (k,), generator=gen)
            return boxes[order], classes[order]


def as_lava_objects(boxes, classes):
    h, w = IMAGE
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    wh = boxes[:, 2:] - boxes[:, :2]
    norm = torch.tensor([w, h], dtype=torch.float64)
    return torch.cat((c / norm, wh / norm, torch.ones(len(boxes), 1, dtype=torch.float64),
                      classes[:, None].double()), 1)  # fmt: skip


def test_assignment_equals_lavas_yolotarget_on_random_boxes():
    gen = torch.Generator().manual_seed(1)
    px = anchors_in_pixels(ANCHORS, GRIDS, STRIDES)
    ignored = positives = 0
    for _ in range(40):
        boxes, classes = separate_objects(gen, int(torch.randint(1, 4, (1,), generator=gen)))
        ours = assign_yolo_targets(boxes, classes, GRIDS, STRIDES, px)
        ref = lava_targets(as_lava_objects(boxes, classes), ANCHORS,
                           [(w, h) for h, w in GRIDS])  # fmt: skip
        for o, r in zip(ours, ref):
            assert torch.allclose(o, r, atol=1e-12, rtol=0)
            ignored += int((o[..., 4] == -1).sum())
            positives += int((o[..., 4] == 1).sum())
    assert positives > 40 and ignored > 40  # one positive per object and scale, two ignored


def test_assignment_when_objects_share_a_cell_and_with_an_ignore_threshold():
    px = anchors_in_pixels(ANCHORS, GRIDS, STRIDES)  # scale 16: 9.0x14.4, 19.2x10.6, 17.9x27.8
    # two boxes centred in cell (1, 1) of scale 16: the larger, 18x28, first
    boxes = torch.tensor([[15.0, 10.0, 33.0, 38.0], [20.0, 20.0, 29.0, 34.0]], dtype=torch.float64)
    t = assign_yolo_targets(boxes, torch.tensor([2, 3]), GRIDS, STRIDES, px)[0]
    assert t[:, 1, 1, 4].tolist() == [1, -1, 1]  # 9x14: the best free anchor is anchor 0
    assert t[:, 1, 1, 5].tolist() == [3, 0, 2]
    assert t[0, 1, 1, :4].tolist() == pytest.approx([24.5 / 16 - 1, 27 / 16 - 1, 9 / 16, 14 / 16])
    # Lava-DL's rule: box 2 finds every slot taken (box 1's positive or ignored): it gets
    # none, and box 1's positive (wh-IoU 0.25 with box 2, under 0.5) is demoted to ignored
    ref = lava_targets(as_lava_objects(boxes, torch.tensor([2, 3])), ANCHORS,
                       [(w, h) for h, w in GRIDS])[0]  # fmt: skip
    assert ref[:, 1, 1, 4].tolist() == [-1, -1, -1]
    # two boxes that want the same anchor (2): the larger, taken first, gets it
    pair = torch.tensor([[17.0, 12.0, 33.0, 38.0], [15.0, 10.0, 33.0, 38.0]], dtype=torch.float64)
    t = assign_yolo_targets(pair, torch.tensor([3, 1]), GRIDS, STRIDES, px)[0]
    assert t[:, 1, 1, 4].tolist() == [-1, 1, 1]
    assert t[:, 1, 1, 5].tolist() == [0, 3, 1]  # the smaller one (class 3) gets anchor 1
    with pytest.raises(ShapeError, match=r"classes must be an integer tensor \[2\]"):
        assign_yolo_targets(pair, torch.tensor([3.0, 1.0]), GRIDS, STRIDES, px)
    with pytest.raises(ShapeError, match="one of each per scale"):
        assign_yolo_targets(pair, torch.tensor([3, 1]), GRIDS[:1], STRIDES, px)
    # a threshold ignores only the anchors that overlap the box enough
    one = boxes[:1]  # wh-IoU of 18x28 with the three anchors: 0.256, 0.368, 0.990
    for threshold, state in ((0.0, [-1, -1, 1]), (0.3, [0, -1, 1]), (0.5, [0, 0, 1])):
        t = assign_yolo_targets(one, torch.tensor([0]), GRIDS, STRIDES, px, threshold)[0]
        assert t[:, 1, 1, 4].tolist() == state, threshold


def to_lava_layout(out, num_anchors):
    """[T, B, A·P, H, W] -> Lava-DL's [B, A, H, W, P, T] (its yolo_raw of NCHWT)."""
    steps, b, c, h, w = out.shape
    return (
        out.permute(1, 2, 3, 4, 0)
        .reshape(b, num_anchors, c // num_anchors, h, w, steps)
        .permute(0, 1, 3, 4, 2, 5)
    )


@pytest.mark.parametrize("time_reduction", ["step", "mean"])
def test_loss_and_gradient_equal_lavas_yololoss_on_random_boxes(time_reduction):
    gen = torch.Generator().manual_seed(2)
    num_classes, steps, batch, a = 4, 3, 3, 3
    lam = (1.0, 2.0, 2.0, 4.0, 2.0)
    loss_fn = YOLOLoss(num_classes, STRIDES, ANCHORS, *lam, alpha_iou=0.8, label_smoothing=0.1,
                       time_reduction=time_reduction)  # fmt: skip
    targets, lava_tgts = [], [[] for _ in STRIDES]
    for _ in range(batch):
        boxes, classes = separate_objects(gen, 3, num_classes)
        targets.append(torch.cat((classes[:, None].double(), boxes), 1).float())
        # the float32 target as the loss reads it, for the reference too
        t64 = targets[-1].double()
        ref = lava_targets(as_lava_objects(t64[:, 1:], t64[:, 0].long()), ANCHORS,
                           [(w, h) for h, w in GRIDS])  # fmt: skip
        for s in range(len(STRIDES)):
            lava_tgts[s].append(ref[s])
    outs = [
        (0.7 * torch.randn(steps, batch, a * (5 + num_classes), h, w, generator=gen,
                           dtype=torch.float64)).requires_grad_()
        for h, w in GRIDS
    ]  # fmt: skip
    loss, parts = loss_fn(outs, targets)
    # Lava-DL: targets are per step (repeated here) and the loss sums the steps
    lava_steps = steps if time_reduction == "step" else 1
    tg = [torch.stack(t)[..., None].expand(*torch.stack(t).shape, lava_steps) for t in lava_tgts]
    preds = [
        to_lava_layout(o if time_reduction == "step" else o.mean(0, keepdim=True), a) for o in outs
    ]
    cells = [ANCHORS[s] * torch.tensor([GRIDS[s][1], GRIDS[s][0]]) for s in range(len(STRIDES))]
    ref = lava_loss(preds, tg, cells, lam, 0.8, 0.1) / lava_steps
    assert loss.item() == pytest.approx(ref.item(), rel=1e-8)  # Lava-DL's eps = 1e-10
    assert parts["box"] + parts["obj"] + parts["cls"] == pytest.approx(loss.item(), rel=1e-12)
    assert parts["positives"] == 2 * 3 * batch
    grads = torch.autograd.grad(loss, outs)
    ref_grads = torch.autograd.grad(ref, outs)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-8, rtol=1e-7), (g - r).abs().max()
    # Lava-DL's own centre term (right edges only) gives another loss
    buggy = lava_loss(preds, tg, cells, lam, 0.8, 0.1, fix_centre=False) / lava_steps
    assert abs(buggy.item() - loss.item()) > 1e-3


def test_a_scale_without_objects_adds_no_nan_and_the_loss_checks_its_input():
    loss_fn = YOLOLoss(2, STRIDES, ANCHORS)
    outs = [torch.zeros(2, 1, 21, h, w, requires_grad=True) for h, w in GRIDS]
    loss, parts = loss_fn(outs, [torch.zeros(0, 5)])
    assert math.isfinite(loss.item()) and parts["yolo_coord"] == 0 and parts["positives"] == 0
    assert loss.item() == pytest.approx(2 * 2 * math.log(2))  # λ_noobj·2 scales·BCE(0, 0)
    with pytest.raises(ShapeError, match="one output per scale"):
        loss_fn(outs[:1], [torch.zeros(0, 5)])
    with pytest.raises(ShapeError, match="1 predictions but 2 targets"):
        loss_fn(outs, [torch.zeros(0, 5)] * 2)
    with pytest.raises(ShapeError, match="5 \\+ 3"):
        YOLOLoss(3, STRIDES, ANCHORS)(outs, [torch.zeros(0, 5)])
    with pytest.raises(ConfigurationError, match="class_id 2"):
        loss_fn(outs, [torch.tensor([[2.0, 1, 1, 9, 9]])])
    with pytest.raises(ConfigurationError, match="time_reduction"):
        YOLOLoss(2, STRIDES, ANCHORS, time_reduction="sum")
    with pytest.raises(ConfigurationError, match="anchors has 1 scale"):
        YOLOLoss(2, STRIDES, ANCHORS[:1])


# -- decoding ---------------------------------------------------------------------------


def outputs_from_targets(tgts, num_classes, anchors_cells):
    """Raw outputs that decode to the assigned boxes: logit of the offsets, log of the
    size over the anchor, objectness +12 at positives (-12 elsewhere), the class +12."""
    outs = []
    for t, anchors in zip(tgts, anchors_cells):  # t [B, A, H, W, 6]
        b, a, h, w, _ = t.shape
        raw = torch.full((b, a, h, w, 5 + num_classes), -12.0, dtype=torch.float64)
        pos = t[..., 4] == 1
        raw[..., 0:2] = torch.logit(t[..., 0:2].clamp(1e-9, 1 - 1e-9))
        raw[..., 2:4] = torch.log(t[..., 2:4].clamp(min=1e-9) / anchors[None, :, None, None, :])
        raw[..., 4] = torch.where(pos, 12.0, -12.0)
        onehot = F.one_hot(t[..., 5].long(), num_classes).bool() & pos[..., None]
        raw[..., 5:] = torch.where(onehot, 12.0, 0.0)
        outs.append(raw.movedim(-1, 2).reshape(b, a * (5 + num_classes), h, w))
    return outs


def test_decoding_the_assigned_targets_gives_back_the_boxes_and_a_perfect_map():
    gen = torch.Generator().manual_seed(3)
    loss_fn = YOLOLoss(4, STRIDES, ANCHORS)
    targets = []
    for _ in range(4):
        boxes, classes = separate_objects(gen, 3)
        targets.append(torch.cat((classes[:, None].double(), boxes), 1).float())
    grids_out = [torch.zeros(1, 4, 27, h, w) for h, w in GRIDS]
    tgts = loss_fn.targets(grids_out, targets)
    cells = [ANCHORS[s] * torch.tensor([GRIDS[s][1], GRIDS[s][0]]) for s in range(len(STRIDES))]
    outs = outputs_from_targets(tgts, 4, cells)
    steps = [o[None].expand(2, *o.shape) for o in outs]  # [T, B, ...]: decoded from the mean
    dets = decode_yolo(steps, STRIDES, ANCHORS, image_size=IMAGE)
    metric = MeanAveragePrecision()
    metric.update(dets, targets)
    for d, t in zip(dets, targets):  # each box found on both scales: NMS keeps one
        assert len(d.boxes) == len(t)
        order = torch.argsort(d.boxes[:, 0])
        truth = t[torch.argsort(t[:, 1])]
        assert torch.allclose(d.boxes[order].float(), truth[:, 1:].clamp(min=0), atol=1e-4)
        assert d.classes[order].tolist() == truth[:, 0].long().tolist()
    assert metric.compute()["map"] == pytest.approx(1.0)


def test_decoding_one_anchor_by_hand():
    outs = [torch.full((1, 3 * 7, h, w), -20.0) for h, w in GRIDS]
    # scale 32, anchor 1 (0.38, 0.48 of 128x96 -> 48.64 x 46.08 px), cell (1, 2)
    outs[1][0, 7 + 0, 1, 2] = 0.0  # σ = 0.5: centre x (2.5)·32 = 80
    outs[1][0, 7 + 1, 1, 2] = math.log(3)  # σ = 0.75: centre y (1.75)·32 = 56
    outs[1][0, 7 + 2, 1, 2] = math.log(0.5)  # width 24.32
    outs[1][0, 7 + 3, 1, 2] = 9.0  # clamped at 5: height 46.08·e^5
    outs[1][0, 7 + 4, 1, 2] = 0.0  # objectness 0.5
    outs[1][0, 7 + 6, 1, 2] = 20.0  # class 1, probability ~1
    (d,) = decode_yolo(outs, STRIDES, ANCHORS.float(), score_threshold=0.3)
    h = 46.08 * math.exp(5)
    assert d.boxes.tolist() == [
        pytest.approx([80 - 12.16, 56 - h / 2, 80 + 12.16, 56 + h / 2], rel=1e-5)
    ]
    assert d.scores.tolist() == pytest.approx([0.5], rel=1e-6) and d.classes.tolist() == [1]
    (clipped,) = decode_yolo(outs, STRIDES, ANCHORS.float(), score_threshold=0.3, image_size=IMAGE)
    assert clipped.boxes[0, 1].item() == 0 and clipped.boxes[0, 3].item() == IMAGE[0]


# -- the spiking tiny YOLOv3 ------------------------------------------------------------


def test_tiny_yolov3_outputs_and_trains_end_to_end():
    torch.manual_seed(0)
    net = tiny_yolov3(num_classes=3, in_channels=2, width_mult=0.125)
    fine, coarse = net((torch.rand(2, 2, 2, 64, 96) < 0.2).float())
    assert fine.shape == (2, 2, 24, 4, 6) and coarse.shape == (2, 2, 24, 2, 3)
    # the objectness starts at the prior 0.01 (the read-outs' biases)
    objectness = torch.sigmoid(fine.reshape(2, 2, 3, 8, 4, 6)[:, :, :, 4])
    assert objectness.mean().item() == pytest.approx(0.01, abs=0.002)
    x = (torch.rand(2, 2, 2, 32, 64) < 0.2).float()
    targets = [torch.tensor([[1.0, 4, 3, 26, 29]]), torch.tensor([[2.0, 36, 2, 60, 30]])]
    loss_fn = net.criterion(label_smoothing=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    first = None
    for _ in range(30):
        loss, _ = loss_fn(net(x), targets)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first  # the network fits two canvases
    net.eval()
    dets = net.detect(x, score_threshold=0.0)
    assert len(dets) == 2 and dets[0].boxes.shape[1] == 4 and (dets[0].boxes[:, 2] <= 64).all()


def test_sigma_delta_tiny_yolov3_with_threshold_0_is_the_ann_at_each_step():
    torch.manual_seed(1)
    net = tiny_yolov3(num_classes=2, width_mult=0.125, block="sigma_delta", delta_threshold=0.0)
    net.eval()  # BN with running statistics: each step alone is a batch of one frame
    for head in (net.fine_head, net.coarse_head):  # read-outs that show the input well
        torch.nn.init.normal_(head[-1][0].layer.weight, std=1.0)
    x = torch.rand(3, 2, 2, 64, 64)
    together = net(x)
    for t in range(3):
        alone = net(x[t : t + 1])
        for a, b in zip(together, alone):
            assert torch.allclose(a[t], b[0], atol=1e-5)
    assert not torch.allclose(together[0][0], together[0][2], atol=1e-2)  # frames differ
    # with a threshold the deltas are quantised: the output moves away from the ANN's
    coarse = tiny_yolov3(num_classes=2, width_mult=0.125, block="sigma_delta", delta_threshold=0.5)
    state = {k: v for k, v in net.state_dict().items() if "threshold" not in k}
    coarse.load_state_dict(state, strict=False)
    coarse.eval()
    assert not torch.allclose(coarse(x)[0], together[0], atol=1e-3)


def test_tiny_yolov3_refuses_bad_arguments():
    with pytest.raises(ConfigurationError, match="block"):
        tiny_yolov3(block="cuba")
    with pytest.raises(ConfigurationError, match="anchors has 1 scale"):
        tiny_yolov3(anchors=[[(0.1, 0.1)]])
    with pytest.raises(ConfigurationError, match="> 0"):
        tiny_yolov3(anchors=[[(0.1, 0.0)], [(0.2, 0.2)]])
    with pytest.raises(ShapeError, match=r"\[T, B, C, H, W\]"):
        tiny_yolov3(width_mult=0.125)(torch.zeros(1, 2, 64, 64))


def test_tiny_yolov3_pads_its_input_to_a_multiple_of_32():
    torch.manual_seed(2)
    net = tiny_yolov3(num_classes=2, width_mult=0.125).eval()
    x = (torch.rand(2, 1, 2, 72, 80) < 0.3).float()
    padded = torch.zeros(2, 1, 2, 96, 96)
    padded[..., :72, :80] = x
    for a, b in zip(net(x), net(padded)):
        assert a.shape[-2:] == b.shape[-2:] and torch.equal(a, b)
    assert net(x)[0].shape[-2:] == (6, 6)
