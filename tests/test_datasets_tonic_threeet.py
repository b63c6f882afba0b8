"""3ET eye tracking (spikeflow.data.datasets.ThreeETEyetracking) against Tonic 1.7's
``ThreeET_Eyetracking`` reading the very same files.

No 3ET files are in ../shared/data, so the tests build a small root in the published
layout Tonic reads: ``ThreeET_Eyetracking/{train_files.txt, val_files.txt}``, HDF5
recordings ``data/<name>.h5`` holding one dataset ``events`` of ``(N, 4)`` rows
``(t µs, x, y, p)`` (written by h5py; int64 and whole float64 storage both), and label
files ``labels/<name>.txt`` of whitespace-separated numbers. Tonic's only presence check
is that ``ThreeET_Eyetracking/ThreeET_Eyetracking.zip`` exists (no hash), so an empty
placeholder of that name stands in for the archive it would otherwise download.
References: Tonic's events and float64 targets; the arrays written.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spikeflow.data.datasets import DatasetNotFoundError
from spikeflow.data.datasets.eyetracking import (
    ThreeETEyetracking,
    read_threeet_events,
    read_threeet_labels,
)
from spikeflow.data.download import DownloadError
from spikeflow.errors import ConfigurationError, DataFormatError
from test_data_datasets_helpers import http_server

h5py = pytest.importorskip("h5py")


def random_events(rng: np.random.Generator, n: int, dtype: str = "int64") -> np.ndarray:
    t = np.sort(rng.integers(0, 50_000, n)) + 1_000_000
    x, y, p = rng.integers(0, 240, n), rng.integers(0, 180, n), rng.integers(0, 2, n)
    return np.stack([t, x, y, p], axis=1).astype(dtype)


def write_recording(folder: Path, name: str, events: np.ndarray, labels: str) -> None:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "data" / f"{name}.h5", "w") as f:
        f.create_dataset("events", data=events)
    (folder / "labels" / f"{name}.txt").write_text(labels)


def build_root(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    folder = root / "ThreeET_Eyetracking"
    written = {}
    for k, name in enumerate(["1_1", "2_3", "4_2"]):
        events = random_events(rng, 200 + 50 * k, "float64" if k == 1 else "int64")
        rows = rng.uniform(0, 240, (5 + k, 3)).round(2)
        rows[:, 2] = rng.integers(0, 2, len(rows))
        write_recording(folder, name, events, "\n".join(" ".join(map(str, r)) for r in rows))
        written[name] = events
    (folder / "train_files.txt").write_text("4_2\n1_1\n")  # not sorted: kept in order
    (folder / "val_files.txt").write_text("2_3\n")
    return written


def test_events_and_targets_match_tonic(tmp_path):
    tonic = pytest.importorskip("tonic")
    written = build_root(tmp_path)
    (tmp_path / "ThreeET_Eyetracking" / "ThreeET_Eyetracking.zip").write_bytes(b"")
    for split, names in (("train", ["4_2", "1_1"]), ("val", ["2_3"])):
        ref = tonic.datasets.ThreeET_Eyetracking(str(tmp_path), split=split)
        ours = ThreeETEyetracking(tmp_path, split)
        assert len(ours) == len(ref) == len(names)
        for i, name in enumerate(names):
            ev, target = ref[i]
            rec, got = ours[i]
            for field in "txyp":
                np.testing.assert_array_equal(rec.events[field], ev[field])
            np.testing.assert_array_equal(rec.events["t"], written[name][:, 0])
            assert got.dtype == np.float64 and got.shape == target.shape
            np.testing.assert_array_equal(got, target)
            assert rec.sensor_size == (240, 180, 2) == tuple(ref.sensor_size)


def test_frames_targets_and_order(tmp_path):
    build_root(tmp_path)
    ds = ThreeETEyetracking(tmp_path, "train", data_type="frame", frames_number=3)
    frames, target = ds[1]
    assert frames.shape == (3, 2, 180, 240) and target.shape == (5, 3)
    assert int(frames.sum()) == 200  # every event lands in a frame
    assert [t.shape[0] for t in ds.targets] == [7, 5]
    assert [p.stem for p, _ in ds.samples] == ["4_2", "1_1"]
    with pytest.raises(ConfigurationError, match="split must be one of"):
        ThreeETEyetracking(tmp_path, "test")


def test_damaged_files(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "ThreeET_Eyetracking"
    events = random_events(rng, 20)
    events[7, 0] = events[6, 0] - 1
    write_recording(folder, "back", events, "1 2\n")
    with pytest.raises(DataFormatError, match=r"back\.h5: dataset 'events' row 7: time goes back"):
        read_threeet_events(folder / "data" / "back.h5")
    events = random_events(rng, 20)
    events[4, 1] = 240
    write_recording(folder, "out", events, "1 2\n")
    with pytest.raises(DataFormatError, match=r"out\.h5: dataset 'events' row 4 .*outside"):
        read_threeet_events(folder / "data" / "out.h5")
    events = random_events(rng, 20, "float64")
    events[2, 2] = 3.5
    write_recording(folder, "frac", events, "1 2\n")
    with pytest.raises(DataFormatError, match=r"frac\.h5: events\[:, 2\] \(y\)\[2\] = 3\.5"):
        read_threeet_events(folder / "data" / "frac.h5")
    with h5py.File(folder / "data" / "other.h5", "w") as f:
        f.create_dataset("ev", data=np.zeros((3, 4)))
    with pytest.raises(DataFormatError, match="no dataset 'events'"):
        read_threeet_events(folder / "data" / "other.h5")
    with h5py.File(folder / "data" / "shape.h5", "w") as f:
        f.create_dataset("events", data=np.zeros((3, 3)))
    with pytest.raises(DataFormatError, match=r"must be \(N, 4\)"):
        read_threeet_events(folder / "data" / "shape.h5")
    (folder / "data" / "text.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataFormatError, match="at byte offset 0: not an HDF5 file"):
        read_threeet_events(folder / "data" / "text.h5")
    (folder / "labels" / "bad.txt").write_text("1 2\n\n3 x\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt: line 3: '3 x'"):
        read_threeet_labels(folder / "labels" / "bad.txt")
    (folder / "labels" / "ragged.txt").write_text("1 2\n3 4 5\n")
    with pytest.raises(DataFormatError, match=r"ragged\.txt: line 2 has 3 columns"):
        read_threeet_labels(folder / "labels" / "ragged.txt")
    (folder / "labels" / "blank.txt").write_text("\n \n")
    assert read_threeet_labels(folder / "labels" / "blank.txt").shape == (0, 0)


def test_missing_files_and_download(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match=r"ThreeET_Eyetracking\.zip"):
        ThreeETEyetracking(tmp_path / "none")
    build_root(tmp_path / "a")
    (tmp_path / "a" / "ThreeET_Eyetracking" / "labels" / "4_2.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"names '4_2', but its label file"):
        ThreeETEyetracking(tmp_path / "a")
    # the archive's members sit at its top; it is extracted into root/ThreeET_Eyetracking
    src = tmp_path / "b" / "ThreeET_Eyetracking"
    build_root(tmp_path / "b")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(src).as_posix())
    body = buf.getvalue()
    archive = ThreeETEyetracking.archive
    with http_server({"/3et.zip": body}) as (base, log):
        good = type(archive)(archive.name, hashlib.md5(body).hexdigest(), base + "/3et.zip",
                             into=archive.into)  # fmt: skip
        monkeypatch.setattr(ThreeETEyetracking, "archive", good)
        ds = ThreeETEyetracking(tmp_path / "dl", "val", download=True)
        assert len(ds) == 1 and len(log) == 1
        assert ds[0][1].shape == (6, 3)
        bad = type(archive)(archive.name, "0" * 32, base + "/3et.zip", into=archive.into)
        monkeypatch.setattr(ThreeETEyetracking, "archive", bad)
        with pytest.raises(DownloadError, match=r"(?i)md5"):
            ThreeETEyetracking(tmp_path / "bad", download=True)


def test_constructor_arguments_are_keyed_or_cannot_change_a_sample():
    """The frame-cache audit of test_data_datasets_cache_keys, for a class that is not
    exported from spikeflow.data.datasets (so not in that file's list)."""
    from test_data_datasets_cache_keys import NOT_SAMPLE_CONTENT, constructor_arguments

    left = (
        constructor_arguments(ThreeETEyetracking)
        - set(ThreeETEyetracking.sample_options)
        - set(NOT_SAMPLE_CONTENT)
    )
    assert left == set()
