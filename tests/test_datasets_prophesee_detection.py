"""Prophesee's Gen1 Automotive and 1Mpx Automotive detection datasets
(spikeflow.data.datasets.prophesee_detection).

The event files are real: the N-CARS recording NCARS_obj_004397_td.dat of
../shared/data/event-files/prophesee-dat (a crop of a Gen1 ATIS recording, 100 ms), laid
out as ``<split>/<name>_td.dat`` (tests skip when ../shared/data is absent). No label
file of either dataset is there, so the tests write ``<name>_bbox.npy`` files in the
published dtype (Gen1's ``ts`` one, and the older ``t`` one with 1Mpx's
``class_confidence``). References: dat_sample.npy (the shared folder's decode of that
file, made by another reader) for the events, hand-derived boxes for the targets.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import require_shared_data
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.datasets.prophesee_detection import (
    Gen1Automotive,
    OneMpxAutomotive,
    filter_boxes,
    read_bbox_npy,
    read_dat_window,
)
from spikeflow.errors import ConfigurationError, DataFormatError

GEN1_DTYPE = np.dtype(
    [("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
     ("class_id", "u1"), ("confidence", "<f4"), ("track_id", "<u4")]
)  # fmt: skip
OLD_1MPX_DTYPE = np.dtype(
    [("t", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
     ("class_id", "u1"), ("class_confidence", "<f4"), ("track_id", "<u4")]
)  # fmt: skip


def shared_dat() -> tuple[Path, np.ndarray]:
    folder = require_shared_data("event-files", "prophesee-dat")
    return folder / "NCARS_obj_004397_td.dat", np.load(folder / "dat_sample.npy")


def build(root: Path, boxes: np.ndarray, split: str = "train", name: str = "rec") -> Path:
    dat, _ = shared_dat()
    (root / split).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dat, root / split / f"{name}_td.dat")
    np.save(root / split / f"{name}_bbox.npy", boxes)
    return root / split / f"{name}_td.dat"


def test_gen1_windows_and_boxes(tmp_path):
    _, ref = shared_dat()
    boxes = np.array(
        [(40_000, 10, 20, 30, 40, 0, 0.9, 1),  # inside
         (40_000, -5, 200, 50, 100, 1, 0.8, 2),  # crosses the left and bottom edges
         (40_000, 400, 10, 20, 20, 0, 0.7, 3),  # wholly right of the 304-wide sensor
         (95_000, 300.5, 1.5, 10, 4, 1, 0.6, 4)],  # crosses the right edge
        GEN1_DTYPE,
    )  # fmt: skip
    build(tmp_path, boxes)
    ds = Gen1Automotive(tmp_path, "train", window_us=30_000)
    assert len(ds) == 2 and ds.classes == ("car", "pedestrian")
    assert [ds.label_time(i) for i in range(2)] == [40_000, 95_000]
    for i, ts in enumerate((40_000, 95_000)):
        rec, target = ds[i]
        keep = (ref["t"] >= ts - 30_000) & (ref["t"] < ts)
        assert keep.sum() > 100 and rec.sensor_size == (304, 240, 2)
        for f in "txyp":
            np.testing.assert_array_equal(rec.events[f], ref[f][keep])
        assert target.dtype == torch.float32
    expect0 = [[0, 10, 20, 40, 60], [1, 0, 200, 45, 240]]
    np.testing.assert_array_equal(ds[0][1].numpy(), np.float32(expect0))
    np.testing.assert_array_equal(ds[1][1].numpy(), np.float32([[1, 300.5, 1.5, 304, 5.5]]))
    assert [t.shape[0] for t in ds.targets] == [2, 1]


def test_1mpx_old_t_field_and_classes(tmp_path):
    _, ref = shared_dat()
    boxes = np.array(
        [(60_000, 1000, 700, 500, 50, 6, 0.5, 1), (60_000, 3, 4, 5, 6, 2, 0.5, 2)],
        OLD_1MPX_DTYPE,
    )
    build(tmp_path, boxes, split="val")
    ds = OneMpxAutomotive(tmp_path, "val")  # 50 ms default window
    rec, target = ds[0]
    assert rec.sensor_size == (1280, 720, 2) and ds.split == "val"
    keep = (ref["t"] >= 10_000) & (ref["t"] < 60_000)
    np.testing.assert_array_equal(rec.events["t"], ref["t"][keep])
    expect = np.float32([[6, 1000, 700, 1280, 720], [2, 3, 4, 8, 10]])
    np.testing.assert_array_equal(target.numpy(), expect)
    # class 6 is a 1Mpx class, not a Gen1 one
    with pytest.raises(DataFormatError, match=r"rec_bbox\.npy.*row 0 has class_id 6.*2 classes"):
        Gen1Automotive(tmp_path, "val")
    boxes["class_id"] = [1, 2]  # 2 is one past Gen1's last class
    np.save(tmp_path / "val" / "rec_bbox.npy", boxes)
    with pytest.raises(DataFormatError, match=r"row 1 has class_id 2"):
        Gen1Automotive(tmp_path, "val")


def test_filter_boxes_thresholds(tmp_path):
    rows = np.array(
        [(500_000, 0, 0, 50, 50, 0, 1, 1),  # at skip_ts: dropped
         (500_001, 0, 0, 50, 50, 1, 1, 1),
         (600_000, 0, 0, 10, 28.3, 0, 1, 1),  # side 10, diagonal 30.01: kept
         (600_000, 0, 0, 9.9, 40, 0, 1, 1),  # side below 10
         (600_000, 0, 0, 20, 22.3, 0, 1, 1)],  # diagonal 29.96 < 30
        GEN1_DTYPE,
    )  # fmt: skip
    np.save(tmp_path / "b_bbox.npy", rows)
    kept = filter_boxes(read_bbox_npy(tmp_path / "b_bbox.npy"), 30, 10)
    assert kept["ts"].tolist() == [500_001, 600_000]
    assert kept["w"].tolist() == pytest.approx([50, 10])


def test_filter_labels_option_drops_empty_timestamps(tmp_path):
    boxes = np.array(
        [(20_000, 0, 0, 50, 50, 0, 1, 1),  # at most skip_ts=30_000: dropped
         (70_000, 0, 0, 5, 50, 0, 1, 1),  # side 5 < 10
         (70_000, 10, 10, 40, 40, 1, 1, 1),
         (80_000, 400, 10, 50, 50, 0, 1, 1),  # passes the filter, wholly off the sensor
         (90_000, 0, 0, 8, 8, 0, 1, 1)],  # its only box is too small
        GEN1_DTYPE,
    )  # fmt: skip
    build(tmp_path, boxes)
    unfiltered = Gen1Automotive(tmp_path)
    assert len(unfiltered) == 4 and unfiltered[2][1].shape == (0, 5)  # a labelled "nothing"
    ds = Gen1Automotive(tmp_path, filter_labels=True, skip_ts=30_000)
    assert len(ds) == 1 and ds.label_time(0) == 70_000
    np.testing.assert_array_equal(ds[0][1].numpy(), np.float32([[1, 10, 10, 50, 50]]))


def test_frames_cached_per_window(tmp_path):
    boxes = np.array([(40_000, 0, 0, 9, 9, 0, 1, 1), (90_000, 0, 0, 9, 9, 0, 1, 1)], GEN1_DTYPE)
    build(tmp_path / "data", boxes)
    kwargs = {"data_type": "frame", "frames_number": 2, "cache_dir": tmp_path / "cache"}
    ds = Gen1Automotive(tmp_path / "data", "train", **kwargs)
    direct = Gen1Automotive(tmp_path / "data", "train", data_type="frame", frames_number=2)
    for i in range(2):
        assert ds[i][0].shape == (2, 2, 240, 304)
        assert torch.equal(ds[i][0], direct[i][0])
    assert not torch.equal(ds[0][0], ds[1][0])
    assert torch.equal(ds[0][0], direct[0][0])  # read back from the cache


def test_read_dat_window_bounds_and_truncation(tmp_path):
    dat, ref = shared_dat()
    rec = read_dat_window(dat, int(ref["t"][10]), int(ref["t"][20]), (304, 240))
    np.testing.assert_array_equal(rec.events["t"], ref["t"][10:20])
    assert len(read_dat_window(dat, 5, 5, (304, 240))) == 0
    bad = tmp_path / "cut_td.dat"
    bad.write_bytes(dat.read_bytes()[:-3])
    with pytest.raises(DataFormatError, match=r"cut_td\.dat at byte offset \d+: truncated: 5"):
        read_dat_window(bad, 0, 10**6, (304, 240))


def test_bad_files_are_named(tmp_path):
    good = np.array([(40_000, 0, 0, 9, 9, 0, 1, 1)], GEN1_DTYPE)
    with pytest.raises(DatasetNotFoundError, match=r"split folder .*test does not exist"):
        Gen1Automotive(tmp_path, "test")
    dat = build(tmp_path, good)
    wrong = np.zeros(2, [("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("class_id", "u1")])
    np.save(tmp_path / "train" / "rec_bbox.npy", wrong)
    with pytest.raises(
        DataFormatError, match=r"rec_bbox\.npy: the box array lacks field\(s\) \['w', 'h'\]"
    ):
        Gen1Automotive(tmp_path)
    np.save(tmp_path / "train" / "rec_bbox.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(DataFormatError, match=r"rec_bbox\.npy: expected a 1-D structured array"):
        Gen1Automotive(tmp_path)
    backwards = np.array([(40_000, 0, 0, 9, 9, 0, 1, 1), (30_000, 0, 0, 9, 9, 0, 1, 1)], GEN1_DTYPE)
    np.save(tmp_path / "train" / "rec_bbox.npy", backwards)
    with pytest.raises(DataFormatError, match=r"box row 1: time goes backwards"):
        Gen1Automotive(tmp_path)
    np.save(tmp_path / "train" / "rec_bbox.npy", good)
    dat.write_bytes(dat.read_bytes()[:-1])
    ds = Gen1Automotive(tmp_path)  # the layout is checked when a sample is read
    with pytest.raises(DataFormatError, match=r"rec_td\.dat at byte offset .*truncated"):
        ds[0]
    (tmp_path / "train" / "rec_bbox.npy").unlink()
    with pytest.raises(DataFormatError, match=r"rec_td\.dat: has no rec_bbox\.npy beside it"):
        Gen1Automotive(tmp_path)
    with pytest.raises(ConfigurationError, match="split must be one of"):
        Gen1Automotive(tmp_path, "validation")
    with pytest.raises(ConfigurationError, match="window_us must be a positive int"):
        Gen1Automotive(tmp_path, window_us=0)


@pytest.mark.parametrize("cut", ["at the header's end", "one byte before it", "mid-header"])
def test_read_dat_window_header_as_long_as_the_probe(tmp_path, cut):
    """A header that ends at the 64 KiB probe's end, a byte before it, or has a line
    ending there and more lines was an IndexError (the type byte read past the probe)."""
    t = np.array([5, 10, 10, 20], np.uint64)
    x, y, p = np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8]), np.array([0, 1, 1, 0])
    fields = (x | (y << 14) | (p << 28)).astype(np.uint64)
    words = (t | (fields << np.uint64(32))).astype("<u8")
    head = b"% Width 304\n% Height 240\n"
    total = {"at the header's end": 1 << 16, "one byte before it": (1 << 16) - 1}.get(cut)
    filler = (total or 1 << 16) - len(head) - 5
    head += b"% c " + b"x" * filler + b"\n" + (b"% more\n" if total is None else b"")
    path = tmp_path / "long_td.dat"
    path.write_bytes(head + bytes([0, 8]) + words.tobytes())
    rec = read_dat_window(path, 10, 20, (304, 240))
    np.testing.assert_array_equal(rec.events["t"], [10, 10])
    np.testing.assert_array_equal(rec.events["x"], [2, 3])
    np.testing.assert_array_equal(rec.events["p"], [1, 1])
