"""Hostile inputs of the anchor-based YOLO: degenerate boxes, boxes outside the image,
more objects in one cell than anchors, and the tiny YOLOv3 arguments a block would
silently ignore."""

from __future__ import annotations

import pytest
import torch

from spikeflow.detection import YOLOLoss, assign_yolo_targets
from spikeflow.detection.yolo import anchors_in_pixels, check_anchors
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.tiny_yolov3 import tiny_yolov3

torch.set_num_threads(1)

ANCHORS = check_anchors([[(0.07, 0.15), (0.15, 0.11), (0.14, 0.29)],
                         [(0.28, 0.22), (0.38, 0.48), (0.90, 0.78)]])  # fmt: skip
STRIDES = (16, 32)
IMAGE = (64, 96)  # (height, width): grids 4x6 and 2x3
GRIDS = [(IMAGE[0] // s, IMAGE[1] // s) for s in STRIDES]
PX = anchors_in_pixels(ANCHORS.double(), GRIDS, STRIDES)


def assign(boxes, classes=None):
    boxes = torch.tensor(boxes, dtype=torch.float64)
    if classes is None:
        classes = torch.arange(len(boxes))
    return assign_yolo_targets(boxes, torch.as_tensor(classes), GRIDS, STRIDES, PX)


def random_outputs(batch, num_classes, seed):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, 3 * (5 + num_classes), h, w, generator=gen, dtype=torch.float64)
        .mul(0.5)
        .requires_grad_()
        for h, w in GRIDS
    ]


def test_degenerate_boxes_get_no_anchor_and_keep_the_loss_finite():
    valid = [1.0, 20.0, 12.0, 50.0, 40.0]
    flat_w = [0.0, 60.0, 10.0, 60.0, 30.0]  # zero width: log(0 / p_w) would be -inf
    flat_h = [2.0, 10.0, 50.0, 40.0, 50.0]  # zero height
    for degenerate in (flat_w, flat_h):
        t = assign([valid[1:], degenerate[1:]])
        assert [int((s[..., 4] == 1).sum()) for s in t] == [1, 1]  # the valid box's
        assert all(torch.equal(a, b) for a, b in zip(t, assign([valid[1:]])))
    loss_fn = YOLOLoss(3, STRIDES, ANCHORS)
    outs = random_outputs(2, 3, 0)
    targets = [torch.tensor([valid, flat_w, flat_h]), torch.tensor([flat_h])]
    loss, parts = loss_fn(outs, targets)
    grads = torch.autograd.grad(loss, outs)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
    assert int(parts["positives"]) == 2
    # the same loss and gradient as without the degenerate boxes
    ref, _ = loss_fn(outs, [torch.tensor([valid]), torch.zeros(0, 5)])
    assert torch.allclose(loss, ref, rtol=1e-12, atol=0)
    for g, r in zip(grads, torch.autograd.grad(ref, outs)):
        assert torch.allclose(g, r, rtol=1e-12, atol=1e-15)


def test_boxes_are_clipped_to_the_grids_image_before_assignment():
    # centre x = 104 lies right of the 96-pixel image: clipped, the box is 80..96
    out_right = assign([[80.0, 10.0, 128.0, 30.0]])
    assert all(torch.equal(a, b) for a, b in zip(out_right, assign([[80.0, 10.0, 96.0, 30.0]])))
    for scale, s in zip(out_right, STRIDES):
        (slot,) = scale[scale[..., 4] == 1]
        assert 0 <= slot[0] < 1 and 0 <= slot[1] < 1  # a sigmoid can reach the centre
        assert slot[2].item() == pytest.approx(16 / s)  # the visible width, in cells
    # above and left of the image: the part inside
    partly = assign([[-10.0, -6.0, 20.0, 30.0]])
    assert all(torch.equal(a, b) for a, b in zip(partly, assign([[0.0, 0.0, 20.0, 30.0]])))
    # wholly outside: nothing at all (no positive, no ignored slot in a corner cell)
    for outside in ([-30.0, -30.0, -5.0, -5.0], [100.0, 70.0, 130.0, 90.0]):
        assert all(not s.any() for s in assign([outside]))


def test_boxes_are_clipped_to_the_unpadded_image_where_it_is_given():
    # a 90x60 input padded to the grids' 96x64: a box over its right and bottom edges
    box, clipped = [[70.0, 40.0, 95.0, 63.0]], [[70.0, 40.0, 90.0, 60.0]]
    unpadded = assign_yolo_targets(
        torch.tensor(box, dtype=torch.float64), torch.tensor([0]), GRIDS, STRIDES, PX,
        image_size=(60, 90),
    )  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(unpadded, assign(clipped, [0])))
    assert not all(torch.equal(a, b) for a, b in zip(unpadded, assign(box, [0])))
    for scale, s in zip(unpadded, STRIDES):
        (slot,) = scale[scale[..., 4] == 1]
        assert slot[2:4].tolist() == pytest.approx([20 / s, 20 / s])  # the visible part
    # YOLOLoss passes the size on: the loss of the clipped targets
    loss_fn, outs = YOLOLoss(3, STRIDES, ANCHORS), random_outputs(1, 3, 1)
    given = loss_fn(outs, [torch.tensor([[0.0, *box[0]]])], image_size=(60, 90))[0]
    assert given == loss_fn(outs, [torch.tensor([[0.0, *clipped[0]]])])[0]
    with pytest.raises(ShapeError, match="image_size"):
        assign_yolo_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), GRIDS,
                            STRIDES, PX, image_size=(60,))  # fmt: skip


def test_more_objects_in_one_cell_than_anchors():
    # 8 boxes centred at (40, 24), one cell on each scale; 3 anchors per cell
    sides = torch.linspace(6.0, 30.0, 8, dtype=torch.float64)
    boxes = [[40 - a / 2, 24 - a * 0.6, 40 + a / 2, 24 + a * 0.6] for a in sides.tolist()]
    classes = list(range(8))
    for scale, s in zip(assign(boxes, classes), STRIDES):
        pos = scale[..., 4] == 1
        assert int(pos.sum()) == 3 and not (scale[..., 4] == -1).any()
        i, j = int(24 // s), int(40 // s)
        assert bool(pos[:, i, j].all())
        # objects are taken by decreasing area: the three largest hold the three anchors,
        # each its own (a later object never overwrites an earlier one's slot)
        assert sorted(scale[:, i, j, 5].long().tolist()) == [5, 6, 7]
        for a in range(3):
            k = int(scale[a, i, j, 5])
            assert scale[a, i, j, 2].item() == pytest.approx(sides[k].item() / s)


def test_tiny_yolov3_refuses_what_its_block_would_ignore():
    with pytest.raises(ConfigurationError, match=r"block='sigma_delta'.*neuron='plif'"):
        tiny_yolov3(width_mult=0.125, block="sigma_delta", neuron="plif")
    with pytest.raises(ConfigurationError, match=r"neuron_kwargs=\{'tau': 3.0\}"):
        tiny_yolov3(width_mult=0.125, block="sigma_delta", neuron_kwargs={"tau": 3.0})
    with pytest.raises(ConfigurationError, match=r"delta_threshold=0.2.*block='spiking'"):
        tiny_yolov3(width_mult=0.125, delta_threshold=0.2)
    # the defaults: LIF units, or sigma-delta with Lava-DL's threshold 0.1
    assert tiny_yolov3(width_mult=0.125, block="sigma_delta").delta_threshold == 0.1
    spiking = tiny_yolov3(width_mult=0.125, neuron="plif")
    assert type(spiking.backbone[0][2]).__name__ == "ParametricLIFNode"
