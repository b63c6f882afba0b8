"""NeRDD (spikeflow.data.datasets.nerdd.NERDD) against Tonic 1.7's ``NERDD`` reading the
very same files.

No NeRDD file is in ../shared/data, so the tests write a small ``NeRDD.zip`` in the
layout Tonic reads (``DATA/<archive>/<scene>/Event/output_events.npz`` with ``data``
``[N, 4]`` rows ``(x, y, p, t)``, and ``<scene>/ev_rgb_coordinates.txt`` lines
``<t>:<v1>,...``); both libraries extract it. The real release's element types and box
columns are not published: the tests store int64 events and four box values.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.datasets.nerdd import NERDD, read_nerdd_boxes
from spikeflow.errors import DataFormatError


def npz_bytes(data: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, data=data)
    return buf.getvalue()


def write_zip(path, rng) -> dict:
    written = {}
    with zipfile.ZipFile(path, "w") as z:
        for archive, scene in ((10, 2), (2, 7), (2, 11)):
            n = int(rng.integers(20, 60))
            t = np.sort(rng.integers(0, 10**6, n))
            data = np.column_stack(
                [rng.integers(0, 1280, n), rng.integers(0, 720, n), rng.integers(0, 2, n), t]
            )
            boxes = [f"{k * 33.5}:{k},{k + 1.5},{k + 20},{k + 40.25}" for k in range(3)]
            base = f"DATA/archive_{archive}/{scene}"
            z.writestr(f"{base}/Event/output_events.npz", npz_bytes(data))
            z.writestr(f"{base}/ev_rgb_coordinates.txt", "\n".join(boxes) + "\n")
            written[(archive, scene)] = data
        z.writestr("DATA/archive_2/12/ev_rgb_coordinates.txt", "0:1,2,3,4\n")  # no events
    return written


def test_nerdd_matches_tonic(tmp_path):
    tonic = pytest.importorskip("tonic")
    written = write_zip(tmp_path / "NeRDD.zip", np.random.default_rng(0))
    ref = tonic.datasets.NERDD(str(tmp_path))  # extracts the zip
    with pytest.warns(UserWarning, match=r"skipping .*archive_2/12"):
        ours = NERDD(tmp_path)
    assert ours.scenes == [(2, 7), (2, 11), (10, 2)] and len(ref) == 3
    for j in range(len(ref)):
        events, target = ref[j]
        i = ours.scenes.index((target["archive"], target["scene"]))
        rec, mine = ours[i]
        assert rec.sensor_size == (1280, 720, 2)
        for f in "txyp":
            np.testing.assert_array_equal(rec.events[f], events[f].astype(np.int64))
        np.testing.assert_array_equal(mine["bboxes"], target["bboxes"])
        assert (mine["archive"], mine["scene"]) == (target["archive"], target["scene"])
        np.testing.assert_array_equal(rec.events["x"], written[ours.scenes[i]][:, 0])
    np.testing.assert_array_equal(ours[0][1]["bboxes"][1], np.float32([33.5, 1, 2.5, 21, 41.25]))


def test_nerdd_extracts_and_names_bad_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"NeRDD.*DATA does not exist.*NeRDD\.zip"):
        NERDD(tmp_path)
    write_zip(tmp_path / "NeRDD.zip", np.random.default_rng(1))
    with pytest.warns(UserWarning):
        ds = NERDD(tmp_path)  # extracted by spikeflow
    assert len(ds) == 3
    scene = tmp_path / "DATA" / "archive_2" / "7"
    (scene / "ev_rgb_coordinates.txt").write_text("0:1,2,3,4\n5:1,2\n")
    with pytest.raises(DataFormatError, match=r"ev_rgb_coordinates\.txt: line 2 has 3 values"):
        ds[0]
    (scene / "ev_rgb_coordinates.txt").write_text("0;1,2,3,4\n")
    with pytest.raises(DataFormatError, match=r"line 1 '0;1,2,3,4'"):
        read_nerdd_boxes(scene / "ev_rgb_coordinates.txt")
    (scene / "ev_rgb_coordinates.txt").write_bytes(b"0:1,2,3,4\n\xff\xfe:1,2\n")
    with pytest.raises(DataFormatError, match=r"byte offset 10: not a text box file"):
        read_nerdd_boxes(scene / "ev_rgb_coordinates.txt")  # (was a UnicodeDecodeError)
    (scene / "ev_rgb_coordinates.txt").write_text("0:1,2,3,4\n")
    (scene / "Event" / "output_events.npz").write_bytes(npz_bytes(np.array([[1300, 0, 1, 5]])))
    with pytest.raises(DataFormatError, match=r"output_events\.npz.*outside the 1280x720 sensor"):
        ds[0]
    (scene / "Event" / "output_events.npz").write_bytes(npz_bytes(np.zeros((2, 3))))
    with pytest.raises(DataFormatError, match=r"output_events\.npz: data has shape \(2, 3\)"):
        ds[0]
