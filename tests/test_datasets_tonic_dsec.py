"""DSEC events (spikeflow.data.datasets.DSECEvents) against Tonic 1.7's ``DSEC`` with
``data_selection="events_left"`` / ``"events_right"`` reading the very same files.

No DSEC files are in ../shared/data, so the tests write small ``events.h5`` files with
h5py in the published layout (DSEC's documentation, and the fields Tonic reads): group
``events`` with ``x``, ``y`` (uint16), ``t`` (uint32 µs), ``p`` (uint8), the scalar
``t_offset`` (int64) and ``ms_to_idx`` (uint64), in
``DSEC/<recording>/events_<camera>/events.h5``. The release compresses with Blosc
(hdf5plugin); these files use gzip, which h5py reads without a plugin. Tonic's ``DSEC``
calls ``imageio.plugins.freeimage.download()`` (a network fetch of an image plugin it
needs only for flow PNGs) in its constructor; the test puts a stand-in ``imageio``
module with a no-op ``download`` in ``sys.modules`` (imageio is not installed here).
Tonic downloads nothing else: each events folder already holds an ``.h5``.
References: Tonic's events and ``ms_to_idx``; the arrays written.
"""

from __future__ import annotations

import io
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spikeflow.data.datasets import DatasetNotFoundError
from spikeflow.data.datasets.dsec import DSEC_RECORDINGS, DSECEvents, read_dsec_events
from spikeflow.errors import ConfigurationError, DataFormatError
from test_data_datasets_helpers import http_server

h5py = pytest.importorskip("h5py")


def dsec_events(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    t = np.sort(rng.integers(0, 5_000, n)).astype(np.uint32)
    return {
        "x": rng.integers(0, 640, n).astype(np.uint16),
        "y": rng.integers(0, 480, n).astype(np.uint16),
        "t": t,
        "p": rng.integers(0, 2, n).astype(np.uint8),
    }


def write_events(path: Path, ev: dict[str, np.ndarray], offset: int = 0, **extra) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    ms = np.searchsorted(ev["t"], np.arange(0, int(ev["t"].max()) // 1000 + 2) * 1000)
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        for name, values in ev.items():
            g.create_dataset(name, data=values, compression="gzip")
        f.create_dataset("t_offset", data=np.int64(offset))
        f.create_dataset("ms_to_idx", data=ms.astype(np.uint64))
    return ms


def build(root: Path) -> dict:
    rng = np.random.default_rng(2)
    written = {}
    for k, rec in enumerate(["thun_00_a", "zurich_city_00_a"]):
        for camera in ("left", "right"):
            ev = dsec_events(rng, 300 + 40 * k)
            path = root / "DSEC" / rec / f"events_{camera}" / "events.h5"
            ms = write_events(path, ev, offset=49_599_300_523 + k)
            written[rec, camera] = (ev, ms, 49_599_300_523 + k)
    return written


@pytest.fixture
def tonic_dsec(monkeypatch):
    tonic = pytest.importorskip("tonic")
    fake = types.ModuleType("imageio")
    fake.plugins = types.SimpleNamespace(freeimage=types.SimpleNamespace(download=lambda: None))
    monkeypatch.setitem(sys.modules, "imageio", fake)
    return tonic.datasets.DSEC


@pytest.mark.parametrize("camera", ["left", "right"])
def test_events_match_tonic(tmp_path, tonic_dsec, camera):
    written = build(tmp_path)
    names = ["thun_00_a", "zurich_city_00_a"]
    ref = tonic_dsec(str(tmp_path), split=names, data_selection=f"events_{camera}")
    ours = DSECEvents(tmp_path, names, camera=camera)
    assert len(ours) == len(ref) == 2 and ours.split == "train"
    for i, name in enumerate(names):
        (data,), _ = ref[i]
        rec, target = ours[i]
        assert target == name
        ev = data[f"events_{camera}"]
        for field in "txyp":
            np.testing.assert_array_equal(rec.events[field], ev[field].astype(np.int64))
        np.testing.assert_array_equal(ours.ms_to_idx(i), data["ms_to_idx"])
        raw, ms, offset = written[name, camera]
        np.testing.assert_array_equal(ours.ms_to_idx(i), ms)
        np.testing.assert_array_equal(rec.events["t"], raw["t"].astype(np.int64) + offset)
        assert rec.sensor_size == (640, 480, 2) == tuple(ref.sensor_size)


def test_selection_frames_and_errors(tmp_path):
    build(tmp_path)
    ds = DSECEvents(tmp_path, "zurich_city_00_a", data_type="frame", frames_number=2)
    frames, name = ds[0]
    assert frames.shape == (2, 2, 480, 640) and int(frames.sum()) == 340
    assert name == "zurich_city_00_a" and ds.targets == ["zurich_city_00_a"]
    assert len(DSEC_RECORDINGS["train"]) == 41 and len(DSEC_RECORDINGS["test"]) == 12
    with pytest.raises(ConfigurationError, match="mix train and test"):
        DSECEvents(tmp_path, ["thun_00_a", "thun_01_a"])
    with pytest.raises(ConfigurationError, match="'nowhere_00_a' is not a DSEC recording"):
        DSECEvents(tmp_path, "nowhere_00_a")
    with pytest.raises(ConfigurationError, match="camera must be"):
        DSECEvents(tmp_path, "thun_00_a", camera="center")
    with pytest.raises(DatasetNotFoundError, match=r"thun_01_a_events_left\.zip"):
        DSECEvents(tmp_path, "test")


def test_damaged_files(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "e.h5"
    ev = dsec_events(rng, 50)
    ev["t"][20] = ev["t"][19] - 1
    write_events(path, ev)
    with pytest.raises(DataFormatError, match=r"e\.h5: events/t row 20: time goes backwards"):
        read_dsec_events(path)
    ev = dsec_events(rng, 50)
    ev["x"][7] = 640
    write_events(path, ev)
    with pytest.raises(DataFormatError, match=r"event 7 \(x=640, .*outside the 640x480"):
        read_dsec_events(path)
    ev = dsec_events(rng, 50)
    ev["p"][3] = 2
    write_events(path, ev)
    with pytest.raises(DataFormatError, match=r"event 3 .*polarity"):
        read_dsec_events(path)
    ev = dsec_events(rng, 50)
    ev["y"] = ev["y"][:-1]
    write_events(path, ev)
    with pytest.raises(DataFormatError, match="differ in length"):
        read_dsec_events(path)
    with h5py.File(path, "w") as f:
        f.create_group("events").create_dataset("x", data=np.zeros(3))
    with pytest.raises(DataFormatError, match="no dataset 'events/y'"):
        read_dsec_events(path)
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(DataFormatError, match="offset 0: not an HDF5 file"):
        read_dsec_events(path)


def test_download_extracts_into_the_recording(tmp_path, monkeypatch):
    """Tonic's URL scheme <base>/<split>/<recording>/<recording>_events_<camera>.zip, the
    zip holding events.h5 at its top (Tonic extracts it into events_<camera>/)."""
    src = tmp_path / "src" / "events.h5"
    write_events(src, dsec_events(np.random.default_rng(6), 30))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(src, "events.h5")
    url_path = "/train/thun_00_a/thun_00_a_events_right.zip"
    with http_server({url_path: buf.getvalue()}) as (base, log):
        monkeypatch.setattr(DSECEvents, "base_url", base + "/")
        ds = DSECEvents(tmp_path / "dl", "thun_00_a", camera="right", download=True)
        assert len(ds[0][0]) == 30 and len(log) == 1
        assert (tmp_path / "dl" / "DSEC" / "thun_00_a" / "events_right" / "events.h5").is_file()


def test_constructor_arguments_are_keyed_or_cannot_change_a_sample():
    """The frame-cache audit of test_data_datasets_cache_keys, for a class that is not
    exported from spikeflow.data.datasets (so not in that file's list)."""
    from test_data_datasets_cache_keys import NOT_SAMPLE_CONTENT, constructor_arguments

    left = (
        constructor_arguments(DSECEvents) - set(DSECEvents.sample_options) - set(NOT_SAMPLE_CONTENT)
    )
    assert left == set()  # camera is a sample option
