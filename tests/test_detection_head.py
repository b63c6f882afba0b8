"""The spiking detection head, its target assignment, loss (hand values and float64
gradcheck) and decoder, SpikingDetector, and a tiny detector that must learn."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.detection import (
    DetectionLoss,
    SpikingDetectionHead,
    assign_targets,
    decode,
    decode_boxes,
    elementwise_box_iou,
    spiking_detector,
)
from spikeflow.detection.head import cell_centers
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

STEPS = 60  # Adam steps of the learning test


def inverse_softplus(v: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.expm1(v))


def test_cell_centres_and_box_decoding_by_hand():
    assert cell_centers(2, 3, 8.0).tolist() == [
        [4, 4],
        [12, 4],
        [20, 4],
        [4, 12],
        [12, 12],
        [20, 12],
    ]
    pred = torch.zeros(1, 7, 2, 3)
    pred[0, :4] = inverse_softplus(torch.tensor([1.0, 2.0, 3.0, 4.0]))[:, None, None]
    boxes = decode_boxes(pred, 8.0)  # l, t, r, b = 8, 16, 24, 32 pixels from each centre
    assert boxes.shape == (1, 6, 4)
    assert torch.allclose(boxes[0, 0], torch.tensor([4 - 8, 4 - 16, 4 + 24, 4 + 32.0]))
    assert torch.allclose(boxes[0, 5], torch.tensor([20 - 8, 12 - 16, 20 + 24, 12 + 32.0]))


def test_assignment_by_hand():
    # A 4x4 grid of 8-pixel cells (centres 4, 12, 20, 28). Box 0 = [0,0,16,16] holds the
    # centres of cells 0, 1, 4, 5, all within 1.5 cells (12 px) of its centre (8, 8).
    # Box 1 = [0,0,32,32] holds every centre; within 12 px of (16, 16) (strictly) are
    # cells 5, 6, 9, 10; cell 5 goes to the smaller box 0. Box 2 = [25,25,27,27] holds no
    # centre: it gets the cell containing its centre (26, 26), cell 15.
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 32.0, 32.0], [25.0, 25.0, 27.0, 27.0]])
    owner = assign_targets(boxes, 4, 4, 8.0, center_radius=1.5)
    expected = [0, 0, -1, -1, 0, 0, 1, -1, -1, 1, 1, -1, -1, -1, -1, 2]
    assert owner.tolist() == expected
    assert assign_targets(torch.zeros(0, 4), 4, 4, 8.0).tolist() == [-1] * 16


def test_assignment_rejects_bad_arguments_by_name():
    """They gave silent nonsense: stride 0 assigned no cell, a negative stride cell 0,
    an inverted box or a [4] tensor an assignment, integer boxes a bare RuntimeError."""
    box = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    assert assign_targets(box, 4, 4, 8.0).tolist().count(0) == 9  # the good call: 3x3 cells
    for stride in (0.0, -8.0, math.nan):
        with pytest.raises(ConfigurationError, match="stride"):
            assign_targets(box, 4, 4, stride)
    for radius in (0.0, -1.0):
        with pytest.raises(ConfigurationError, match="center_radius"):
            assign_targets(box, 4, 4, 8.0, center_radius=radius)
    with pytest.raises(ConfigurationError, match=r"boxes\[0\].*x_max < x_min"):
        assign_targets(torch.tensor([[30.0, 10.0, 10.0, 30.0]]), 4, 4, 8.0)
    with pytest.raises(ShapeError, match=r"boxes must have shape \[N, 4\]"):
        assign_targets(torch.tensor([10.0, 10.0, 30.0, 30.0]), 4, 4, 8.0)
    with pytest.raises(DTypeError, match="boxes must be a floating-point"):
        assign_targets(box.long(), 4, 4, 8.0)
    for name, size in (("height", (0, 4)), ("width", (4, 2.5))):
        with pytest.raises(ConfigurationError, match=name):
            assign_targets(box, *size, 8.0)


def test_loss_parts_by_hand():
    # All-zero output: every logit 0 (BCE = log 2), every distance softplus(0)·8 = 8 ln 2.
    # One box [0,0,16,16] of class 1 owns cells 0, 1, 4, 5 (4 positives) of 16.
    pred = torch.zeros(1, 7, 4, 4)
    target = [torch.tensor([[1.0, 0.0, 0.0, 16.0, 16.0]])]
    total, parts = DetectionLoss(2, 8.0)(pred, target)
    assert parts["positives"].item() == 4
    assert parts["obj"].item() == pytest.approx(16 * math.log(2) / 4)
    assert parts["cls"].item() == pytest.approx(4 * 2 * math.log(2) / 4)
    d = 8 * math.log(2)
    centres = torch.tensor([[4.0, 4.0], [12.0, 4.0], [4.0, 12.0], [12.0, 12.0]])
    predicted = torch.cat((centres - d, centres + d), 1)
    giou = elementwise_box_iou(predicted, torch.tensor([[0.0, 0, 16, 16]]).expand(4, 4), True)
    assert parts["box"].item() == pytest.approx(float((1 - giou).mean()))
    assert total.item() == pytest.approx(
        5 * parts["box"].item() + parts["obj"].item() + parts["cls"].item()
    )
    # Distances that reproduce the box exactly at every positive: the box term is 0.
    exact = torch.zeros(1, 7, 4, 4)
    for cell, (cx, cy) in zip((0, 1, 4, 5), centres.tolist()):
        ltrb = torch.tensor([cx - 0, cy - 0, 16 - cx, 16 - cy]) / 8
        exact[0, :4, cell // 4, cell % 4] = inverse_softplus(ltrb)
    _, parts = DetectionLoss(2, 8.0)(exact, target)
    assert parts["box"].item() == pytest.approx(0.0, abs=1e-6)
    iou_loss = DetectionLoss(2, 8.0, box_loss="iou")(pred, target)[1]["box"]
    assert iou_loss.item() > parts["box"].item()


def test_loss_passes_float64_gradcheck_and_handles_empty_targets():
    pred = torch.randn(2, 7, 2, 2, dtype=torch.float64, requires_grad=True)
    targets = [
        torch.tensor([[1.0, 1.0, 2.0, 14.0, 11.0], [0.0, 6.0, 7.0, 15.0, 15.0]]),
        torch.zeros(0, 5),
    ]
    loss = DetectionLoss(2, 8.0)
    assert torch.autograd.gradcheck(lambda p: loss(p, targets)[0], (pred,), fast_mode=True)
    # No object anywhere: only the objectness term, normalised by 1.
    total, parts = loss(pred, [torch.zeros(0, 5)] * 2)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        pred[:, 4], torch.zeros_like(pred[:, 4]), reduction="sum"
    )
    assert total.item() == pytest.approx(expected.item())
    assert parts["box"].item() == parts["cls"].item() == 0.0


def test_head_decodes_the_time_mean_of_its_readout():
    head = SpikingDetectionHead(4, num_classes=3, depth=0)
    features = (torch.rand(5, 2, 4, 6, 6) > 0.5).float()
    out = head(features)
    assert out.shape == (2, 8, 6, 6)
    mean_first = torch.nn.functional.conv2d(
        features.mean(0), head.readout.weight, head.readout.bias
    )
    assert torch.allclose(out, mean_first, atol=1e-6)  # a 1x1 conv commutes with the mean
    # The prior: objectness and class logits start at -log(99).
    assert torch.allclose(head.readout.bias[4:], torch.full((4,), -math.log(99)))
    deep = SpikingDetectionHead(4, num_classes=3, depth=2, hidden_channels=8)
    assert deep(features).shape == (2, 8, 6, 6)
    with pytest.raises(ShapeError, match=r"head expects features \[T, B, C, H, W\]"):
        head(features[0])
    with pytest.raises(ShapeError, match="built for 4 channels"):
        head(features[:, :, :3])


def test_decode_keeps_the_best_box_per_object_and_class():
    # A 2x2 grid; cells 0 and 1 predict nearly the same box of class 0 (NMS keeps the
    # better), cell 3 a box of class 1; cell 2 is below the score threshold.
    pred = torch.full((1, 7, 2, 2), -10.0)
    pred[0, :4] = inverse_softplus(torch.tensor(1.0))  # 8-pixel distances
    pred[0, 4, 0, 0], pred[0, 4, 0, 1], pred[0, 4, 1, 1] = 3.0, 2.0, 1.0
    pred[0, 5, 0, 0] = pred[0, 5, 0, 1] = 5.0
    pred[0, 6, 1, 1] = 5.0
    pred[0, 0, 0, 1] = inverse_softplus(torch.tensor(2.0))  # cell 1: l = 16, box [-4,-4,20,12]
    (out,) = decode(pred, 8.0, iou_threshold=0.5)
    assert out.classes.tolist() == [0, 1]
    assert torch.allclose(out.boxes, torch.tensor([[-4.0, -4, 12, 12], [4.0, 4, 20, 20]]))
    score = torch.sigmoid(torch.tensor(3.0)) * torch.sigmoid(torch.tensor(5.0))
    assert out.scores[0].item() == pytest.approx(score.item())
    (both,) = decode(pred, 8.0, iou_threshold=0.9)  # IoU(cell 0, cell 1) = 256/384 < 0.9
    assert both.classes.tolist() == [0, 0, 1]
    (clipped,) = decode(pred, 8.0, image_size=(16, 16), max_detections=1)
    assert clipped.boxes.tolist() == [[0.0, 0.0, 12.0, 12.0]]
    with pytest.raises(ConfigurationError, match="iou_threshold must be"):
        decode(pred, 8.0, iou_threshold=-0.1)
    with pytest.raises(ShapeError, match=r"pred must be the head's output \[B, 5 \+ num_classes"):
        decode(pred[0], 8.0)


def test_loss_rejects_bad_targets_and_predictions():
    loss = DetectionLoss(2, 8.0)
    pred = torch.zeros(1, 7, 2, 2)
    with pytest.raises(
        ConfigurationError, match=r"targets\[0\] has class_id 2, but the loss has 2 classes"
    ):
        loss(pred, [torch.tensor([[2.0, 0, 0, 4, 4]])])
    with pytest.raises(ShapeError, match="1 predictions but 2 targets"):
        loss(pred, [torch.zeros(0, 5)] * 2)
    with pytest.raises(ShapeError, match=r"2 classes need 5 \+ 2 = 7"):
        loss(torch.zeros(1, 8, 2, 2), [torch.zeros(0, 5)])
    with pytest.raises(DTypeError, match="pred must be floating point"):
        loss(pred.long(), [torch.zeros(0, 5)])
    with pytest.raises(
        ConfigurationError, match=r"targets\[0\] boxes \(columns 1:5\)\[0\].*x_max < x_min"
    ):
        loss(pred, [torch.tensor([[0.0, 9, 0, 4, 4]])])
    with pytest.raises(ConfigurationError, match="box_loss must be 'giou' or 'iou'"):
        DetectionLoss(2, 8.0, box_loss="l1")
    with pytest.raises(ConfigurationError, match="stride"):
        DetectionLoss(2, 0.0)


def test_a_tiny_spiking_detector_learns_to_find_and_name_squares():
    # 16x16 images, each with one solid 6x6 square (class 0) or a hatched 8x8 one
    # (class 1) at a random place, repeated over T = 2 steps.
    g = torch.Generator().manual_seed(0)
    images, targets = torch.zeros(8, 1, 16, 16), []
    for i in range(8):
        cls, side = i % 2, 6 + 2 * (i % 2)
        x, y = (int(v) for v in torch.randint(0, 16 - side, (2,), generator=g))
        images[i, 0, y : y + side, x : x + side] = 1.0
        if cls:
            images[i, 0, y : y + side : 2, x : x + side : 2] = 0.0
        targets.append(torch.tensor([[cls, x, y, x + side, y + side]], dtype=torch.float32))
    frames = images.expand(2, -1, -1, -1, -1)
    net = spiking_detector(2, 1, widths=(16, 32), extra_units=0, head_depth=1)
    criterion = DetectionLoss(2, net.stride)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest on a loaded machine
    try:
        for _ in range(STEPS):
            loss, _ = criterion(net(frames), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    net.eval()
    hits = 0
    for det, t in zip(net.detect(frames), targets):
        if len(det.scores):
            iou = elementwise_box_iou(det.boxes[:1], t[:, 1:])
            hits += int(iou.item() > 0.5 and det.classes[0].item() == int(t[0, 0]))
    assert hits >= 7, f"the top detection was right on only {hits} of 8 images"
    with pytest.raises(ShapeError, match="missing the time dimension"):
        net(images)
