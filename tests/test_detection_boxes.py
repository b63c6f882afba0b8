"""spikeflow.detection.boxes and the target contract: hand-derived cases, a brute-force
NMS reference, float64 gradcheck of the IoU losses, and the errors on bad input."""

from __future__ import annotations

import pytest
import torch

from spikeflow.detection import (
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    check_target,
    clip_boxes_to_image,
    collate,
    elementwise_box_iou,
    generalized_box_iou,
    nms,
)
from spikeflow.detection import boxes as boxes_module
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal within float32 rounding (torch.testing.assert_close imports
    torch.distributed, seconds on a busy machine)."""
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_box_convert_round_trips_and_hand_values():
    xyxy = torch.tensor([[1.0, 2.0, 5.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    xywh = torch.tensor([[1.0, 2.0, 4.0, 8.0], [0.0, 0.0, 0.0, 0.0]])
    cxcywh = torch.tensor([[3.0, 6.0, 4.0, 8.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(box_convert(xyxy, "xyxy", "xywh"), xywh)
    assert torch.equal(box_convert(xyxy, "xyxy", "cxcywh"), cxcywh)
    assert torch.equal(box_convert(xywh, "xywh", "xyxy"), xyxy)
    assert torch.equal(box_convert(cxcywh, "cxcywh", "xyxy"), xyxy)
    assert torch.equal(box_convert(xywh, "xywh", "cxcywh"), cxcywh)
    assert torch.equal(box_convert(cxcywh, "cxcywh", "xywh"), xywh)
    with pytest.raises(ConfigurationError, match="out_fmt must be one of"):
        box_convert(xyxy, "xyxy", "yxyx")
    with pytest.raises(ConfigurationError, match="negative width"):
        box_convert(torch.tensor([[0.0, 0.0, -1.0, 2.0]]), "xywh", "xyxy")


def test_area_iou_and_giou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    assert box_area(a).tolist() == [4.0, 1.0]
    # a0 ∩ b0 = [1,1,2,2], area 1; union 4 + 4 - 1 = 7; enclosing [0,0,3,3] = 9.
    # a0, b1: disjoint; enclosing [0,0,5,2] = 10, union 5. a1, b1: enclosing [0,0,5,1] = 5.
    iou = torch.tensor([[1 / 7, 0.0, 1.0], [0.0, 0.0, 0.25]])
    giou = torch.tensor([[1 / 7 - 2 / 9, -0.5, 1.0], [-4 / 9, -0.6, 0.25]])
    assert close(box_iou(a, b), iou)
    assert close(generalized_box_iou(a, b), giou)
    assert close(elementwise_box_iou(a, b[:2]), iou.diagonal())
    assert close(elementwise_box_iou(a, b[:2], generalized=True), giou.diagonal())
    empty = torch.zeros(1, 4)  # two zero-area boxes: IoU 0, not NaN
    assert box_iou(empty, empty).item() == 0.0
    assert box_iou(a, torch.zeros(0, 4)).shape == (2, 0)


def test_elementwise_iou_losses_pass_float64_gradcheck():
    pred = torch.tensor([[0.1, 0.2, 2.3, 1.9], [4.0, 0.5, 6.0, 3.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    for generalized in (False, True):
        torch.autograd.gradcheck(
            lambda p, g=generalized: elementwise_box_iou(p, target, g),
            (pred.clone().requires_grad_(),),
        )


def _nms_reference(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    """Textbook NMS: take the best remaining box, drop those overlapping it, repeat."""
    iou = box_iou(boxes, boxes).tolist()
    remaining = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep = []
    while remaining:
        best = remaining.pop(0)
        keep.append(best)
        remaining = [i for i in remaining if iou[best][i] <= threshold]
    return keep


def test_nms_by_hand_and_against_a_brute_force_reference():
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0],
         [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 25.0]]
    )  # fmt: skip
    scores = torch.tensor([0.9, 0.95, 0.3, 0.9, 0.5])
    # Visiting order 1, 0, 3 (a tie with 0: original order), 4, 2. IoU(0, 1) = 81/119
    # = 0.68; IoU(2, 4) = 50/100 = 0.5 exactly; 0 and 3 are identical.
    assert nms(boxes, scores, 0.49).tolist() == [1, 4]
    assert nms(boxes, scores, 0.5).tolist() == [1, 4, 2]  # IoU == threshold: kept
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 4, 2]
    assert nms(boxes, scores, 1.0).tolist() == [1, 0, 3, 4, 2]
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        xy = torch.rand(30, 2, generator=g) * 40
        rand_boxes = torch.cat((xy, xy + 5 + torch.rand(30, 2, generator=g) * 20), 1)
        rand_scores = torch.rand(30, generator=g)
        for threshold in (0.0, 0.3, 0.7):
            expected = _nms_reference(rand_boxes, rand_scores, threshold)
            assert nms(rand_boxes, rand_scores, threshold).tolist() == expected
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)


def _nms_full_matrix(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    """One greedy pass over the whole ``[N, N]`` IoU matrix (NMS before it went by blocks)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    over = box_iou(boxes[order], boxes[order]) > threshold
    removed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if not removed[i]:
            keep.append(int(order[i]))
            removed |= over[i]
    return keep


def _detector_boxes(n: int, objects: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` boxes jittered around ``objects`` objects of a 640x480 image, scores with ties."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(objects, 2, generator=g) * torch.tensor([640.0, 480.0])
    sizes = 10 + torch.rand(objects, 2, generator=g) * 100
    pick = torch.randint(0, objects, (n,), generator=g)
    c = centres[pick] + torch.randn(n, 2, generator=g) * 8
    s = sizes[pick] * (1 + 0.2 * torch.randn(n, 2, generator=g)).clamp(0.5, 1.5)
    scores = torch.randint(0, 50, (n,), generator=g).float() / 50  # many equal scores
    return torch.cat((c - s / 2, c + s / 2), 1), scores


def test_nms_in_blocks_equals_one_pass_over_the_full_iou_matrix(monkeypatch):
    # Default blocks (256 boxes, 2^20 pairs) on 1000 detector-like boxes, then tiny
    # blocks and pair slices so that every boundary case is crossed many times.
    boxes, scores = _detector_boxes(1000, 80, seed=3)
    for threshold in (0.0, 0.5, 0.9):
        keep = nms(boxes, scores, threshold).tolist()
        assert keep == _nms_full_matrix(boxes, scores, threshold)
        assert len(set(keep)) == len(keep) and 0 < len(keep) < 1000
    monkeypatch.setattr(boxes_module, "_NMS_BLOCK", 7)
    monkeypatch.setattr(boxes_module, "_NMS_PAIRS", 20)
    for seed in range(3):
        small, small_scores = _detector_boxes(300, 15, seed)
        classes = torch.randint(0, 3, (300,), generator=torch.Generator().manual_seed(seed))
        for threshold in (0.3, 0.7):
            assert nms(small, small_scores, threshold).tolist() == _nms_full_matrix(
                small, small_scores, threshold
            )
            per_class = set()
            for c in range(3):
                members = torch.nonzero(classes == c).flatten()
                kept = _nms_full_matrix(small[members], small_scores[members], threshold)
                per_class.update(members[kept].tolist())
            batched = batched_nms(small, small_scores, classes, threshold)
            assert set(batched.tolist()) == per_class and len(batched) == len(per_class)
            assert bool((small_scores[batched].diff() <= 0).all())


def test_batched_nms_only_suppresses_within_a_class():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [1.0, 0.0, 11.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 2]), 0.5).tolist() == [0, 1, 2]
    assert batched_nms(boxes, scores, torch.tensor([3, 3, 3]), 0.5).tolist() == [0]
    with pytest.raises(DTypeError, match="classes must be an integer tensor"):
        batched_nms(boxes, scores, torch.tensor([0.0, 1.0, 0.0]), 0.5)
    with pytest.raises(ShapeError, match=r"classes must have shape \[3\]"):
        batched_nms(boxes, scores, torch.tensor([0, 1]), 0.5)


def test_clip_boxes_to_image():
    boxes = torch.tensor([[-5.0, 2.0, 50.0, 70.0]])
    assert clip_boxes_to_image(boxes, (60, 40)).tolist() == [[0.0, 2.0, 40.0, 60.0]]
    with pytest.raises(ConfigurationError, match=r"size must be \(height, width\)"):
        clip_boxes_to_image(boxes, (60,))


def test_bad_boxes_and_thresholds_are_named():
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ShapeError, match=r"boxes1 must have shape \[N, 4\], got \[1, 3\]"):
        box_iou(torch.zeros(1, 3), good)
    with pytest.raises(
        DTypeError, match=r"boxes must be a floating-point tensor, got dtype torch\.int64"
    ):
        box_area(torch.tensor([[0, 0, 1, 1]]))
    with pytest.raises(
        ConfigurationError, match=r"boxes2\[1\] = \[5.0, 0.0, 2.0, 1.0\] \(xyxy\) has x_max < x_min"
    ):
        box_iou(good, torch.tensor([[0.0, 0.0, 1.0, 1.0], [5.0, 0.0, 2.0, 1.0]]))
    with pytest.raises(ConfigurationError, match="y_max < y_min"):
        box_area(torch.tensor([[0.0, 3.0, 1.0, 1.0]]))
    with pytest.raises(ConfigurationError, match="NaN"):
        box_area(torch.tensor([[0.0, float("nan"), 1.0, 1.0]]))
    for bad in (-0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ConfigurationError, match="iou_threshold must be a number in"):
            nms(good, torch.ones(1), bad)
    with pytest.raises(ShapeError, match=r"scores must have shape \[1\]"):
        nms(good, torch.ones(2), 0.5)
    with pytest.raises(DTypeError, match="scores must be a floating-point tensor"):
        nms(good, torch.ones(1, dtype=torch.long), 0.5)


def test_target_contract_and_collate():
    t0 = torch.tensor([[3.0, 1.0, 2.0, 5.0, 6.0]])
    t1 = torch.zeros(0, 5)
    frames = [torch.rand(4, 2, 8, 8), torch.rand(4, 2, 8, 8)]
    x, targets = collate([(frames[0], t0), (frames[1], t1)])
    assert x.shape == (2, 4, 2, 8, 8) and torch.equal(x[1], frames[1])
    assert targets[0] is t0 and targets[1].shape == (0, 5)
    xt, _ = collate([(frames[0], t0), (frames[1], t1)], time_major=True)
    assert xt.shape == (4, 2, 2, 8, 8) and torch.equal(xt[:, 1], frames[1])
    events, _ = collate([("recording a", t0), ("recording b", t1)])
    assert events == ["recording a", "recording b"]
    with pytest.raises(DTypeError, match=r"batch\[1\] target must be float32"):
        collate([(frames[0], t0), (frames[1], t0.double())])
    with pytest.raises(ShapeError, match=r"must have shape \[K, 5\].*got \[1, 4\]"):
        check_target(torch.zeros(1, 4))
    with pytest.raises(ConfigurationError, match=r"target\[0\] has class_id -1.0"):
        check_target(torch.tensor([[-1.0, 0.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(ConfigurationError, match=r"target\[0\] has class_id 1.5"):
        check_target(torch.tensor([[1.5, 0.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(ConfigurationError, match=r"columns 1:5\)\[0\].*x_max < x_min"):
        check_target(torch.tensor([[1.0, 5.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(ShapeError, match="samples of different shapes"):
        collate([(frames[0], t0), (torch.rand(3, 2, 8, 8), t1)])
    with pytest.raises(ConfigurationError, match="empty batch"):
        collate([])
