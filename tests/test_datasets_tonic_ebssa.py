"""EBSSA (spikeflow.data.datasets.EBSSA) against Tonic 1.7's ``EBSSA`` reading the very
same file.

No EBSSA file is in ../shared/data, so the tests write a small
``EBSSA/labelled_ebssa.h5`` with h5py in the layout Tonic reads: one top-level group
per recording, a ``TD`` group of datasets ``ts`` (µs), ``x``, ``y`` (1-based), ``p``,
and for labelled recordings an ``Obj`` group of ``ts``, ``x``, ``y``, ``id``. The
release's element types are not published: one recording stores MATLAB v7.3's
``(1, N)`` float64 row vectors, the other ``(N,)`` integers. Tonic's presence check
(at least one ``.h5`` in ``EBSSA/``) passes, so it downloads nothing. References:
Tonic's events and bounding boxes; the arrays written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spikeflow.data.datasets import DatasetNotFoundError
from spikeflow.data.datasets.ebssa import EBSSA, read_ebssa_recording
from spikeflow.errors import ConfigurationError, DataFormatError

h5py = pytest.importorskip("h5py")


def recording(rng: np.random.Generator, n: int, start: int) -> dict[str, np.ndarray]:
    """Events from ``start`` on; the sensor's last column and row (1-based 240, 180) hit."""
    rec = {
        "ts": np.sort(rng.integers(0, 400_000, n)) + start,
        "x": rng.integers(1, 241, n),
        "y": rng.integers(1, 181, n),
        "p": rng.integers(0, 2, n),
    }
    rec["ts"][0] = start
    rec["x"][5], rec["y"][6] = 240, 180
    return rec


def write_file(
    path: Path, recs: dict[str, dict[str, dict[str, np.ndarray]]], matlab: set[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, groups in recs.items():
            g = f.create_group(key)
            for name, fields in groups.items():
                sub = g.create_group(name)
                for field, values in fields.items():
                    data = values.astype(np.float64)[None, :] if key in matlab else values
                    sub.create_dataset(field, data=data)


def build(root: Path) -> dict:
    rng = np.random.default_rng(5)
    start = 7_000_123
    obj = {
        "ts": np.array([start + 4_999, start + 15_000, start + 25_000, start + 200_000.0]),
        "x": np.array([3.5, 120.25, 238.0, 60.0]),  # near the edges: clipped boxes
        "y": np.array([2.0, 90.5, 179.75, 10.0]),
        "id": np.array([1, 2, 1, 3]),
    }
    recs = {
        "rec_a": {"TD": recording(rng, 300, start), "Obj": obj},
        "rec_b": {"TD": recording(rng, 120, 50)},
    }
    write_file(root / "EBSSA" / "labelled_ebssa.h5", recs, matlab={"rec_a"})
    return recs


def test_events_and_boxes_match_tonic(tmp_path):
    tonic = pytest.importorskip("tonic")
    recs = build(tmp_path)
    ref = tonic.datasets.EBSSA(str(tmp_path), split="labelled")
    ours = EBSSA(tmp_path)
    assert len(ours) == len(ref) == 2 and ours.keys == ref.keys == ["rec_a", "rec_b"]
    for i, key in enumerate(ours.keys):
        ev, target = ref[i]
        rec, got = ours[i]
        for field in "txyp":
            np.testing.assert_array_equal(rec.events[field], ev[field].astype(np.int64))
        td = recs[key]["TD"]
        np.testing.assert_array_equal(rec.events["x"], td["x"] - 1)
        np.testing.assert_array_equal(rec.events["t"], td["ts"] - td["ts"][0])
        assert got["recording_id"] == target["recording_id"] == key
        if target["bbox"] is None:
            assert got["bbox"] is None
        else:
            assert got["bbox"].dtype.names == target["bbox"].dtype.names
            for field in target["bbox"].dtype.names:
                np.testing.assert_array_equal(got["bbox"][field], target["bbox"][field])
    # by hand: times (ts - first event) / 10 ms rounded half to even; 10-pixel boxes from
    # the 0-based centre - 5, clipped to 0 and to the largest event coordinate (239, 179)
    box = ours.target(0)["bbox"]
    assert box["t"].tolist() == [0, 20_000, 20_000, 200_000]
    assert box["x_min"].tolist() == [0.0, 114.25, 232.0, 54.0]
    assert box["x_max"].tolist() == [10.0, 124.25, 239.0, 64.0]
    assert box["y_min"].tolist() == [0.0, 84.5, 173.75, 4.0]
    assert box["y_max"].tolist() == [10.0, 94.5, 179.0, 14.0]
    assert box["id"].tolist() == [1, 2, 1, 3]


def test_frames_and_options(tmp_path):
    build(tmp_path)
    ds = EBSSA(tmp_path, data_type="frame", frames_number=2)
    frames, target = ds[1]
    assert frames.shape == (2, 2, 180, 240) and int(frames.sum()) == 120
    assert target == {"bbox": None, "recording_id": "rec_b"}
    assert ds.cache_entry_key(0) != ds.cache_entry_key(1)
    assert [t["recording_id"] for t in ds.targets] == ["rec_a", "rec_b"]
    with pytest.raises(ConfigurationError, match="split must be 'labelled'"):
        EBSSA(tmp_path, "unlabelled")
    with pytest.raises(DatasetNotFoundError, match=r"labelled_ebssa\.h5 does not exist"):
        EBSSA(tmp_path / "none")


def damaged(tmp_path: Path, td: dict, obj: dict | None = None) -> Path:
    path = tmp_path / "d.h5"
    groups = {"TD": td} if obj is None else {"TD": td, "Obj": obj}
    write_file(path, {"r": groups}, matlab=set())
    return path


def test_damaged_files(tmp_path):
    rng = np.random.default_rng(1)
    good = recording(rng, 30, 100)
    td = dict(good, x=good["x"].copy())
    td["x"][3] = 0  # 1-based: 0 is outside
    with pytest.raises(DataFormatError, match=r"d\.h5: recording 'r'/TD row 3 \(x=0"):
        read_ebssa_recording(damaged(tmp_path, td), "r")
    td["x"][3] = 241  # one past the 240 columns
    with pytest.raises(DataFormatError, match=r"row 3 \(x=241, y=.* outside the 240x180"):
        read_ebssa_recording(damaged(tmp_path, td), "r")
    td = dict(good, ts=good["ts"].copy())
    td["ts"][9] = td["ts"][8] - 1
    with pytest.raises(DataFormatError, match=r"'r'/TD/ts row 9: time goes backwards"):
        read_ebssa_recording(damaged(tmp_path, td), "r")
    td = dict(good, p=good["p"] * 3)
    td["p"][0] = 3
    with pytest.raises(DataFormatError, match="polarity"):
        read_ebssa_recording(damaged(tmp_path, td), "r")
    td = {k: v for k, v in good.items() if k != "y"}
    with pytest.raises(DataFormatError, match=r"'r'/TD has no field 'y'"):
        read_ebssa_recording(damaged(tmp_path, td), "r")
    td = dict(good, p=good["p"][:-1])
    with pytest.raises(DataFormatError, match="TD fields differ in length"):
        read_ebssa_recording(damaged(tmp_path, td), "r")
    td = dict(good, x=good["x"] + 0.5)
    with pytest.raises(DataFormatError, match=r"TD/x\[0\] = .* is not an integer"):
        read_ebssa_recording(damaged(tmp_path, td), "r")
    obj = {
        "ts": np.array([100.0]),
        "x": np.array([np.nan]),
        "y": np.array([1.0]),
        "id": np.array([1]),
    }
    with pytest.raises(DataFormatError, match=r"'r'/Obj/x row 0 is nan"):
        read_ebssa_recording(damaged(tmp_path, good, obj), "r")
    with pytest.raises(DataFormatError, match="no recording 'q'"):
        read_ebssa_recording(damaged(tmp_path, good), "q")
    (tmp_path / "t.h5").write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(DataFormatError, match="offset 0: not an HDF5 file"):
        read_ebssa_recording(tmp_path / "t.h5", "r")


def test_constructor_arguments_are_keyed_or_cannot_change_a_sample():
    """The frame-cache audit of test_data_datasets_cache_keys, for a class that is not
    exported from spikeflow.data.datasets (so not in that file's list)."""
    from test_data_datasets_cache_keys import NOT_SAMPLE_CONTENT, constructor_arguments

    left = constructor_arguments(EBSSA) - set(EBSSA.sample_options) - set(NOT_SAMPLE_CONTENT)
    assert left == set()
