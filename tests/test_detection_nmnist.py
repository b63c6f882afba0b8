"""NMNISTDetection: canvases composed from the real N-MNIST subset (../shared/data), their
boxes recomputed here from the source recordings, determinism, and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import require_shared_data
from spikeflow.data.datasets import NMNIST
from spikeflow.data.datasets.nmnist_detection import NMNISTDetection
from spikeflow.detection import check_target, collate
from spikeflow.errors import ConfigurationError


@pytest.fixture(scope="module")
def root():
    return require_shared_data("nmnist-small")


def reference_box(events: np.ndarray, threshold: int) -> tuple[int, int, int, int]:
    """The digit's box written independently: pixels with >= threshold events."""
    pixels, counts = np.unique(events["y"].astype(int) * 34 + events["x"], return_counts=True)
    busy = pixels[counts >= threshold]
    ys, xs = busy // 34, busy % 34
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_canvases_hold_the_real_digits_at_their_boxes(root):
    ds = NMNISTDetection(root, train=False, num_samples=6, canvas_size=(96, 80), frames_number=3)
    source = NMNIST(root, False, data_type="event")
    sizes = set()
    for i in range(len(ds)):
        frames, target = ds[i]
        check_target(target)
        layout = ds.layout(i)
        sizes.add(len(layout))
        assert 1 <= len(layout) <= 3 and frames.shape == (3, 2, 80, 96)
        expected_events = 0
        for row, (sample, x, y) in zip(target.tolist(), layout):
            recording, label = source[sample]
            expected_events += len(recording)
            assert 0 <= x <= 96 - 34 and 0 <= y <= 80 - 34
            x0, y0, x1, y1 = reference_box(recording.events, 3)
            assert row == [label, x + x0, y + y0, x + x1, y + y1]
        for a, (_, xa, ya) in enumerate(layout):  # the 34x34 placements never overlap
            for _, xb, yb in layout[a + 1 :]:
                assert abs(xa - xb) >= 34 or abs(ya - yb) >= 34
        assert frames.sum().item() == expected_events  # every event of every digit, once
        recording, same = ds.compose(i)
        assert torch.equal(same, target) and np.all(np.diff(recording.events["t"]) >= 0)
        # Each digit's events lie inside its box's placement square.
        ev = recording.events
        inside = np.zeros(len(ev), dtype=bool)
        for _, x, y in layout:
            inside |= (ev["x"] >= x) & (ev["x"] < x + 34) & (ev["y"] >= y) & (ev["y"] < y + 34)
        assert inside.all()
    assert len(sizes) > 1  # 1-3 digits, not always the same count


def test_canvases_are_deterministic_and_seeded(root):
    a = NMNISTDetection(root, False, num_samples=4, seed=3, data_type="event")
    b = NMNISTDetection(root, False, num_samples=4, seed=3, data_type="event")
    c = NMNISTDetection(root, False, num_samples=4, seed=4, data_type="event")
    assert [a.layout(i) for i in (3, 0)] == [b.layout(i) for i in (3, 0)]  # any order
    assert [a.layout(i) for i in range(4)] != [c.layout(i) for i in range(4)]
    assert a.layout(-1) == a.layout(3)
    rec_a, t_a = a[2]
    rec_b, t_b = b[2]
    assert np.array_equal(rec_a.events, rec_b.events) and torch.equal(t_a, t_b)
    assert rec_a.sensor_size == (96, 96, 2)


def test_placement_boxes_and_batching(root):
    ds = NMNISTDetection(root, True, num_samples=4, box="placement", digits=2, frames_number=2)
    for i in range(len(ds)):
        boxes = ds[i][1][:, 1:].tolist()
        assert [[x, y, x + 34, y + 34] for _, x, y in ds.layout(i)] == boxes
    frames, targets = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert frames.shape == (4, 2, 2, 96, 96) and [t.shape for t in targets] == [(2, 5)] * 4


def test_bad_arguments_are_named(root):
    with pytest.raises(ConfigurationError, match="does not surely fit 3 34x34 digits"):
        NMNISTDetection(root, canvas_size=64, digits=(1, 3))
    with pytest.raises(ConfigurationError, match="canvas_size must be an integer >= 34"):
        NMNISTDetection(root, canvas_size=(96, 20))
    with pytest.raises(ConfigurationError, match="box must be 'events' or 'placement'"):
        NMNISTDetection(root, box="tight")
    with pytest.raises(ConfigurationError, match=r"digits\[1\] must be an integer >= 2"):
        NMNISTDetection(root, digits=(2, 1))
    with pytest.raises(ConfigurationError, match="data_type must be 'frame' or 'event'"):
        NMNISTDetection(root, data_type="frames")
