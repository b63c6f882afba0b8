"""The multi-scale (FPN) spiking detector: per-level assignment by object size against a
hand-derived example and FCOS's ranges, the loss and decoder equal to the single-scale
ones on one level, one NMS across levels, a float64 gradcheck, the builder's shapes and
refusals, and a CLI run with ``--model-kwargs strides=[8,16]``."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import require_shared_data
from spikeflow.cli import main
from spikeflow.detection import DetectionLoss, assign_targets, decode, spiking_detector
from spikeflow.detection.multiscale import (
    MultiScaleDetectionLoss,
    SpikingFPNDetector,
    assign_targets_multiscale,
    decode_multiscale,
    fcos_size_ranges,
)
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.training.metric_logs import read_csv


def test_fcos_size_ranges_are_fcos_s():
    assert fcos_size_ranges((8, 16, 32, 64, 128)) == (
        (0.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, math.inf),
    )  # fmt: skip


def test_assignment_by_size_matches_the_hand_derived_example():
    """A 64x64 image, strides 8 (8x8 cells, centres 4 + 8j) and 16 (4x4, centres 8 + 16j),
    ranges [0, 16] and [16, inf] of max(l, t, r, b), centre radius 1.5 cells.

    Box 0 (8, 8, 24, 24), 16x16: level-0 cells with centres strictly inside are x, y in
    {12, 20}, all within 12 px of the centre (16, 16), reach max(l,t,r,b) = 12 <= 16:
    cells (1,1), (1,2), (2,1), (2,2) = 9, 10, 17, 18. On level 1 the centres 8 and 24
    are on its edges: none.
    Box 1 (0, 0, 64, 48): on level 0 the cells within 12 px of (32, 24) are x in {28, 36},
    y in {20, 28}, reach 36 > 16: none. On level 1, within 24 px: x in {24, 40}, y in
    {8, 24, 40}, reach >= 24 >= 16: rows 0-2, cols 1-2 = 1, 2, 5, 6, 9, 10.
    Box 2 (50, 50, 52, 52) claims no cell (the nearest centre, 52, is on its edge): it
    gets the cell containing its centre (51, 51) on the level whose range holds
    max(w, h) / 2 = 1: level 0, cell (6, 6) = 54.
    """
    boxes = torch.tensor([[8.0, 8, 24, 24], [0, 0, 64, 48], [50, 50, 52, 52]])
    level0, level1 = assign_targets_multiscale(
        boxes, [(8, 8), (4, 4)], (8, 16), size_ranges=[(0, 16), (16, math.inf)]
    )
    expected0 = torch.full((64,), -1)
    expected0[[9, 10, 17, 18]] = 0
    expected0[54] = 2
    expected1 = torch.full((16,), -1)
    expected1[[1, 2, 5, 6, 9, 10]] = 1
    assert torch.equal(level0, expected0) and torch.equal(level1, expected1)
    # With FCOS's ranges ([0, 64], [64, inf]) box 1's reach (at most 40) is level 0's:
    # its cells there are the centre-sampled ones, x in {28, 36}, y in {20, 28}.
    level0, level1 = assign_targets_multiscale(boxes, [(8, 8), (4, 4)], (8, 16))
    assert set(level0.eq(1).nonzero()[:, 0].tolist()) == {19, 20, 27, 28}
    assert bool((level1 == -1).all())


def test_one_level_is_the_single_scale_head():
    torch.manual_seed(0)
    pred = torch.randn(2, 5 + 3, 6, 5, dtype=torch.float64)
    targets = [torch.tensor([[0.0, 3, 4, 20, 30], [2, 10, 10, 12, 12]]), torch.zeros(0, 5)]
    ranges = [(0, math.inf)]
    single, parts = DetectionLoss(3, 8)(pred, targets)
    multi, mparts = MultiScaleDetectionLoss(3, (8,), ranges)([pred], targets)
    assert torch.equal(single, multi) and parts.keys() == mparts.keys()
    owner = assign_targets(targets[0][:, 1:], 6, 5, 8)
    (same,) = assign_targets_multiscale(targets[0][:, 1:], [(6, 5)], (8,), ranges)
    assert torch.equal(owner, same)
    for a, b in zip(decode(pred, 8), decode_multiscale([pred], (8,)), strict=True):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.classes, b.classes)
        assert torch.allclose(a.scores, b.scores, rtol=1e-12, atol=0)


def test_decoding_runs_one_nms_across_levels():
    # Level 0 (stride 8, 2x2) and level 1 (stride 16, 1x1) both predict the box
    # (0, 0, 16, 16) of class 1: the level-1 cell (centre 8, 8) with distances 8 = 16 *
    # softplus(raw), the level-0 cell (0, 0) (centre 4, 4) with l = t = 4, r = b = 12.
    def raw(pixels, stride):
        return math.log(math.expm1(pixels / stride))  # softplus^-1

    p0 = torch.full((1, 7, 2, 2), -10.0)
    p0[0, :4, 0, 0] = torch.tensor([raw(4, 8), raw(4, 8), raw(12, 8), raw(12, 8)])
    p0[0, 4, 0, 0], p0[0, 6, 0, 0] = 2.0, 2.0  # score sigmoid(2)^2
    p1 = torch.full((1, 7, 1, 1), -10.0)
    p1[0, :4, 0, 0] = raw(8, 16)
    p1[0, 4, 0, 0], p1[0, 6, 0, 0] = 3.0, 3.0  # the higher score: kept
    (found,) = decode_multiscale([p0, p1], (8, 16))
    assert found.boxes.shape == (1, 4) and found.classes.tolist() == [1]
    assert torch.allclose(found.boxes[0], torch.tensor([0.0, 0, 16, 16]), atol=1e-5)
    assert found.scores[0].item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item() ** 2)


def test_the_loss_passes_gradcheck_in_float64():
    torch.manual_seed(1)
    preds = [torch.randn(1, 6, 2, 2, dtype=torch.float64, requires_grad=True),
             torch.randn(1, 6, 1, 1, dtype=torch.float64, requires_grad=True)]  # fmt: skip
    # the small box's cells are on level 0, the large one's on level 1
    targets = [torch.tensor([[0.0, 1, 1, 7, 7], [0, 0, 0, 16, 15]])]
    loss = MultiScaleDetectionLoss(1, (8, 16), [(0, 6), (6, math.inf)])
    owners = assign_targets_multiscale(targets[0][:, 1:], [(2, 2), (1, 1)], (8, 16),
                                       [(0, 6), (6, math.inf)])  # fmt: skip
    assert [o.tolist() for o in owners] == [[0, -1, -1, -1], [1]]
    assert torch.autograd.gradcheck(lambda a, b: loss([a, b], targets)[0], preds)


def test_the_builder_shapes_and_refusals():
    torch.manual_seed(0)
    net = spiking_detector(3, 2, widths=(4, 8), strides=(4, 8, 16), fpn_channels=6)
    assert isinstance(net, SpikingFPNDetector) and len(net.stages) == 4  # P8, P16 added
    out = net(torch.rand(2, 1, 2, 64, 48))
    assert [tuple(o.shape) for o in out] == [(1, 8, 16, 12), (1, 8, 8, 6), (1, 8, 4, 3)]
    loss, _ = net.criterion()(out, [torch.tensor([[2.0, 1, 1, 40, 30]])])
    loss.backward()
    assert all(p.grad is not None for p in net.heads.parameters())
    # top-down: the finest level reads the coarser levels' laterals (BN on batch statistics)
    x = torch.rand(4, 2, 2, 64, 48)
    with torch.no_grad():
        before = net(x)[0]
        net.laterals[-1].weight.mul_(-5.0)
        assert not torch.equal(before, net(x)[0])
    assert net.size_ranges == fcos_size_ranges((4, 8, 16))
    for bad, match in [
        ({"strides": (6,)}, "power of two"),
        ({"strides": (16, 8)}, "increasing"),
        ({"fpn_channels": 8}, "need strides"),
        ({"strides": (2, 4), "extra_units": 1}, "stages past stride 4 would never run"),
        ({"strides": (8, 16), "size_ranges": [(0, 10)]}, "one \\(lo, hi\\) per level"),
        ({"strides": (8, 16), "size_ranges": [(0, 10), (10, 5)]}, "lo < hi"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            spiking_detector(3, 2, **bad)
    with pytest.raises(ShapeError, match="2 level outputs for 3 strides"):
        net.criterion()(out[:2], [torch.zeros(0, 5)])


def test_cli_trains_a_multi_scale_detector(tmp_path):
    root = require_shared_data("nmnist-small")
    out = tmp_path / "run"
    args = ["train", "--dataset", "nmnist_detection", "--data-dir", str(root), "--output-dir",
            str(out), "--train-samples", "8", "--test-samples", "4", "--batch-size", "4", "-T",
            "2", "--epochs", "1", "--model-kwargs", "widths=[4,8,16]", "strides=[8,16]",
            "--dataset-kwargs", "canvas_size=72", "digits=[1,2]", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    (row,) = read_csv(out / "metrics.csv")
    assert math.isfinite(float(row["train_loss"])) and float(row["test_map"]) >= 0


def test_detect_decodes_the_output_clipped_to_the_input():
    torch.manual_seed(0)
    net = spiking_detector(3, 2, widths=(4, 8), strides=(4, 8), fpn_channels=6).eval()
    x = torch.rand(2, 2, 2, 64, 48)
    kwargs = {"score_threshold": 0.0, "iou_threshold": 0.9, "max_detections": 50}
    with torch.no_grad():
        found = net.detect(x, **kwargs)
        wanted = decode_multiscale(net(x), net.strides, image_size=(64, 48), **kwargs)
        unclipped = decode_multiscale(net(x), net.strides, **kwargs)
    assert len(found) == 2 and all(len(d.scores) == 50 for d in found)
    for det, ref in zip(found, wanted, strict=True):
        for got, want in zip(det, ref, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert float(det.boxes[:, 2].max()) <= 48 and float(det.boxes[:, 3].max()) <= 64
    assert any(float(r.boxes[:, 2:].max()) > 48 for r in unclipped)  # clipping mattered
