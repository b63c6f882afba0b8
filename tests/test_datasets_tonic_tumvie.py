"""TUM-VIE events (spikeflow.data.datasets.TUMVIE) against Tonic 1.7's ``TUMVIE``
reading the very same files.

No TUM-VIE files are in ../shared/data, so the tests write small
``<recording>-events_{left,right}.h5`` files with h5py in the layout Tonic reads (group
``events`` with ``x``, ``y`` uint16, ``t`` int64 µs, ``p`` uint8; gzip instead of the
release's Blosc, which needs hdf5plugin, absent here). Tonic's ``TUMVIE`` always
selects all 21 recordings (its ``recording == "all" or ["all"]`` test is always true)
and downloads any of the three files per recording that does not exist (existence only,
no hash), so every other recording gets empty placeholder files; its ``__getitem__``
also reads the IMU, motion-capture and image files, so the compared recording gets
small ones (a header line then numbers; one 4x4 JPEG per camera). References: Tonic's
events; the arrays written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spikeflow.data.datasets import DatasetNotFoundError
from spikeflow.data.datasets.tumvie import TUMVIE, TUMVIE_RECORDINGS, read_tumvie_events
from spikeflow.errors import ConfigurationError, DataFormatError
from test_data_datasets_helpers import http_server

h5py = pytest.importorskip("h5py")


def random_events(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "x": rng.integers(0, 1280, n).astype(np.uint16),
        "y": rng.integers(0, 720, n).astype(np.uint16),
        "t": np.sort(rng.integers(0, 10**7, n)).astype(np.int64) + 1_600_000_000,
        "p": rng.integers(0, 2, n).astype(np.uint8),
    }


def write_events(path: Path, ev: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        for name, values in ev.items():
            g.create_dataset(name, data=values, compression="gzip")


def write_tonic_extras(folder: Path) -> None:
    from PIL import Image

    (folder / "imu_data.txt").write_text("# t gx gy gz ax ay az\n0 1 2 3 4 5 6\n")
    (folder / "mocap_data.txt").write_text("# t x y z qx qy qz qw\n0 1 2 3 0 0 0 1\n")
    for side in ("left", "right"):
        (folder / f"{side}_images").mkdir()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / f"{side}_images" / "00000.jpg")
        (folder / f"{side}_images" / f"image_timestamps_{side}.txt").write_text("# t\n5\n")


def build(root: Path, compared: str = "mocap-desk") -> dict:
    rng = np.random.default_rng(8)
    written = {}
    for rec in TUMVIE_RECORDINGS:
        folder = root / "TUMVIE" / rec
        folder.mkdir(parents=True)
        (folder / f"{rec}-vi_gt_data.tar.gz").write_bytes(b"")
        for camera in ("left", "right"):
            path = folder / f"{rec}-events_{camera}.h5"
            if rec == compared:
                written[camera] = random_events(rng, 250 if camera == "left" else 180)
                write_events(path, written[camera])
            else:
                path.write_bytes(b"")
    write_tonic_extras(root / "TUMVIE" / compared)
    return written


def test_events_match_tonic(tmp_path):
    tonic = pytest.importorskip("tonic")
    written = build(tmp_path)
    ref = tonic.datasets.TUMVIE(str(tmp_path), recording="mocap-desk")
    data, _ = ref[TUMVIE_RECORDINGS.index("mocap-desk")]
    for camera in ("left", "right"):
        ours = TUMVIE(tmp_path, "mocap-desk", camera=camera)
        rec, name = ours[0]
        assert name == "mocap-desk" and rec.sensor_size == (1280, 720, 2)
        ev = data[f"events_{camera}"]
        for field in "txyp":
            np.testing.assert_array_equal(rec.events[field], ev[field])
            np.testing.assert_array_equal(rec.events[field], written[camera][field])


def test_selection_frames_and_errors(tmp_path):
    rng = np.random.default_rng(9)
    for rec in ("slide", "bike-easy"):
        write_events(tmp_path / "TUMVIE" / rec / f"{rec}-events_right.h5", random_events(rng, 60))
    ds = TUMVIE(
        tmp_path, ["slide", "bike-easy"], camera="right", data_type="frame", frames_number=3
    )
    frames, name = ds[1]
    assert frames.shape == (3, 2, 720, 1280) and int(frames.sum()) == 60 and name == "bike-easy"
    assert ds.targets == ["slide", "bike-easy"] and ds.split == "all"
    assert ds.cache_namespace()["sample_options"] == {"camera": "right"}
    with pytest.raises(ConfigurationError, match="'bike-dark' is not a TUM-VIE recording"):
        TUMVIE(tmp_path, "bike-dark")
    with pytest.raises(ConfigurationError, match="camera must be"):
        TUMVIE(tmp_path, "slide", camera="up")
    with pytest.raises(DatasetNotFoundError, match=r"slide-events_left\.h5"):
        TUMVIE(tmp_path, "slide")


def test_damaged_files(tmp_path):
    rng = np.random.default_rng(10)
    path = tmp_path / "r.h5"
    ev = random_events(rng, 40)
    ev["y"][11] = 720
    write_events(path, ev)
    with pytest.raises(DataFormatError, match=r"r\.h5: event 11 \(x=\d+, y=720"):
        read_tumvie_events(path)
    ev = random_events(rng, 40)
    ev["t"][30] = ev["t"][29] - 5
    write_events(path, ev)
    with pytest.raises(DataFormatError, match=r"r\.h5: events/t row 30: time goes backwards"):
        read_tumvie_events(path)
    with h5py.File(path, "w") as f:
        f.create_group("events")
    with pytest.raises(DataFormatError, match="no dataset 'events/x'"):
        read_tumvie_events(path)


def test_download_follows_tonic_urls(tmp_path, monkeypatch):
    src = tmp_path / "src.h5"
    write_events(src, random_events(np.random.default_rng(11), 25))
    with http_server({"/slide/slide-events_left.h5": src.read_bytes()}) as (base, log):
        monkeypatch.setattr(TUMVIE, "base_url", base + "/")
        ds = TUMVIE(tmp_path / "dl", "slide", download=True)
        assert len(ds[0][0]) == 25 and len(log) == 1
        assert (tmp_path / "dl" / "TUMVIE" / "slide" / "slide-events_left.h5").is_file()


def test_constructor_arguments_are_keyed_or_cannot_change_a_sample():
    """The frame-cache audit of test_data_datasets_cache_keys, for a class that is not
    exported from spikeflow.data.datasets (so not in that file's list)."""
    from test_data_datasets_cache_keys import NOT_SAMPLE_CONTENT, constructor_arguments

    left = constructor_arguments(TUMVIE) - set(TUMVIE.sample_options) - set(NOT_SAMPLE_CONTENT)
    assert left == {"recording"}  # selects files, as split does


def test_select_names_takes_all_one_name_or_a_list():
    from spikeflow.data.datasets._common import select_names

    known = ("a", "b", "c")
    assert select_names("X", "all", known, "recording", "-") == ["a", "b", "c"]
    assert select_names("X", "b", known, "recording", "-") == ["b"]
    assert select_names("X", ("c", "a"), known, "recording", "-") == ["c", "a"]
    for bad in ([], (), 3, None):
        with pytest.raises(ConfigurationError, match="X: recording must be 'all', a name or a"):
            select_names("X", bad, known, "recording", "-")
    with pytest.raises(ConfigurationError, match=r"^X: 'd' is not a letter \(a-c\)$"):
        select_names("X", ["a", "d"], known, "recording", "a letter (a-c)")
