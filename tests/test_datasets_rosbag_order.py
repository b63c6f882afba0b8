"""Time origins of the ROS bag readers and MVSEC's HDF5 release read in slices
(spikeflow.data.io.rosbag, spikeflow.data.datasets.rosbag_sets).

A bag whose messages are out of time order: Tonic 1.7 (importRosbag, ``ts - ts[0]``)
counts from the first event in message order and gives earlier events negative times;
spikeflow counts from the earliest and sorts, checked against the integer nanoseconds
the bag was written from. MVSEC's ``[N, 4]`` event dataset is read by slices of
``MVSEC_ROWS_PER_READ`` rows: any slice size gives the same events as one slice, row
numbers in errors are the file's, and the memory numpy allocates stays near the output
(tracemalloc; reading the whole array took about 6x more).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from rosbag_samples import event_messages, pose_stamped, random_events, write_bag
from spikeflow.data import EVENT_DTYPE
from spikeflow.data.datasets import rosbag_sets
from spikeflow.data.datasets.rosbag_sets import read_bag_pose, read_mvsec_hdf5_events
from spikeflow.data.io.rosbag import read_rosbag_events
from spikeflow.errors import DataFormatError
from test_datasets_tonic_rosbag import T0, tonic_numpy2  # noqa: F401  (a fixture)


def out_of_order_bag(path, rng) -> np.ndarray:
    """A bag of 120 events in 3 messages written in the order 2, 1, 3 (and poses in
    the order 3, 1, 2); returns the events (x, y, t_ns, p) in file order."""
    ev = random_events(rng, 120, 240, 180, T0 + 5_000_000)
    msgs = event_messages("/dvs/events", ev, 240, 180)
    msgs = [msgs[1], msgs[0], msgs[2]]
    rng_pose = np.random.default_rng(4)
    stamps = [T0 + 3_000_000, T0 + 1_000_000, T0 + 2_000_000]
    msgs += [
        ("/pose", "geometry_msgs/PoseStamped", s, pose_stamped(s, rng_pose.normal(size=7)))
        for s in stamps
    ]
    write_bag(path, msgs)
    return np.concatenate([ev[40:80], ev[:40], ev[80:]])


def test_out_of_order_bag_counts_from_the_earliest_event(tmp_path, tonic_numpy2):  # noqa: F811
    from importRosbag.importRosbag import importRosbag

    path = tmp_path / "swapped.bag"
    written = out_of_order_bag(path, np.random.default_rng(5))
    rec, origin = read_rosbag_events(path)
    order = np.argsort(written[:, 2], kind="stable")
    want = written[order]
    assert origin == int(written[:, 2].min()) == T0 + 5_000_000
    np.testing.assert_array_equal(rec.events["t"], (want[:, 2] - origin) // 1000)
    for k, name in enumerate("xy"):
        np.testing.assert_array_equal(rec.events[name], want[:, k])
    np.testing.assert_array_equal(rec.events["p"], want[:, 3])
    assert rec.events["t"].min() == 0
    # Tonic counts from the first event of the file: the earlier message goes negative
    e = importRosbag(str(path), log="ERROR", disable_bar=True)["/dvs/events"]
    tonic_us = (e["ts"] - e["ts"][0]) * 1e6
    assert tonic_us.min() < -1000 and tonic_us[0] == 0
    np.testing.assert_allclose(np.sort(tonic_us - tonic_us.min()), rec.events["t"], atol=1)


def test_out_of_order_poses_count_from_the_earliest_stamp(tmp_path):
    path = tmp_path / "swapped.bag"
    out_of_order_bag(path, np.random.default_rng(6))
    pose = read_bag_pose(path, "/pose")
    np.testing.assert_array_equal(pose[:, 0], [0.0, 1000.0, 2000.0])
    values = np.random.default_rng(4).normal(size=(3, 7))  # written for stamps 3, 1, 2
    np.testing.assert_array_equal(pose[:, 1:], values[[1, 2, 0]])


def mvsec_file(path, rows: np.ndarray, camera: str = "left") -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f[f"davis/{camera}/events"] = rows


def mvsec_rows(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` MVSEC rows (x, y, t s, p ±1) and the integer µs their times were made from."""
    us = np.sort(rng.integers(0, 10_000_000, n))
    us[0] = 0
    rows = np.column_stack(
        [rng.integers(0, 346, n), rng.integers(0, 260, n), 1_504_000_000.25 + us / 1e6,
         rng.choice([-1.0, 1.0], n)]
    )  # fmt: skip
    return rows, us


@pytest.mark.parametrize("per_read", [1, 7, 64, 1 << 18])
def test_mvsec_hdf5_slices_give_the_events(tmp_path, monkeypatch, per_read):
    rows, us = mvsec_rows(np.random.default_rng(7), 50)
    rows[[10, 11]] = rows[[11, 10]]  # two rows out of order
    us[[10, 11]] = us[[11, 10]]
    us[0] = us[1] + 5  # the first row 5 us after the second: the earliest is row 1
    rows[0, 2] = 1_504_000_000.25 + us[0] / 1e6
    assert us[1] < us[0] and us.min() > 0
    mvsec_file(tmp_path / "d.hdf5", rows)
    monkeypatch.setattr(rosbag_sets, "MVSEC_ROWS_PER_READ", per_read)
    rec = read_mvsec_hdf5_events(tmp_path / "d.hdf5")
    order = np.argsort(us, kind="stable")
    np.testing.assert_array_equal(rec.events["t"], us[order] - us.min())
    np.testing.assert_array_equal(rec.events["x"], rows[order, 0])
    np.testing.assert_array_equal(rec.events["y"], rows[order, 1])
    np.testing.assert_array_equal(rec.events["p"], rows[order, 3] > 0)
    assert rec.sensor_size == (346, 260, 2)


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        (3, 2.0, r"row 23: t = .* s, p = 2\.0 \(a finite time and a polarity"),
        (2, np.nan, r"row 23: t = nan s"),
        (0, 1.5, r"row 23: x = 1\.5 is no pixel of the 346x260 sensor"),
        (1, 260.0, r"row 23: y = 260\.0 is no pixel"),
        (0, -1.0, r"row 23: x = -1\.0 is no pixel"),
    ],
)
def test_mvsec_hdf5_errors_name_the_file_row(tmp_path, monkeypatch, column, value, problem):
    rows, _ = mvsec_rows(np.random.default_rng(8), 40)
    rows[23, column] = value
    mvsec_file(tmp_path / "bad.hdf5", rows)
    monkeypatch.setattr(rosbag_sets, "MVSEC_ROWS_PER_READ", 7)  # row 23: the 4th slice
    with pytest.raises(DataFormatError, match=r"bad\.hdf5: davis/left/events " + problem):
        read_mvsec_hdf5_events(tmp_path / "bad.hdf5")


def test_mvsec_hdf5_shape_dtype_and_file_errors(tmp_path):
    mvsec_file(tmp_path / "three.hdf5", np.zeros((4, 3)))
    with pytest.raises(DataFormatError, match=r"has shape \(4, 3\), not \[N, 4\]"):
        read_mvsec_hdf5_events(tmp_path / "three.hdf5")
    mvsec_file(tmp_path / "text.hdf5", np.array([[b"a", b"b", b"c", b"d"]]))
    with pytest.raises(DataFormatError, match="non-numeric dtype"):
        read_mvsec_hdf5_events(tmp_path / "text.hdf5")
    with pytest.raises(DataFormatError, match=r"no dataset 'davis/right/events'"):
        read_mvsec_hdf5_events(tmp_path / "three.hdf5", camera="right")
    (tmp_path / "no.hdf5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataFormatError, match=r"no\.hdf5 at byte offset 0: not an HDF5 file"):
        read_mvsec_hdf5_events(tmp_path / "no.hdf5")
    mvsec_file(tmp_path / "empty.hdf5", np.zeros((0, 4)))
    assert len(read_mvsec_hdf5_events(tmp_path / "empty.hdf5")) == 0


def test_mvsec_hdf5_memory_stays_near_the_output(tmp_path, monkeypatch):
    n = 40_000
    rows, us = mvsec_rows(np.random.default_rng(9), n)
    mvsec_file(tmp_path / "big.hdf5", rows)
    monkeypatch.setattr(rosbag_sets, "MVSEC_ROWS_PER_READ", 500)
    tracemalloc.start()
    try:
        rec = read_mvsec_hdf5_events(tmp_path / "big.hdf5")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(rec.events["t"], us)
    out = n * EVENT_DTYPE.itemsize  # 520 kB; the whole [N, 4] float64 array is 1.28 MB
    assert peak < 1.5 * out, (peak, out)
