"""The event-camera datasets on small roots built in tmp_path in the official layouts.

Real files from ../shared/data/event-files where the format exists there: N-MNIST .bin
(standing in for N-Caltech101 samples; same 40-bit ATIS format), N-CARS .dat, the real
DVS128 header of a jAER file (for CIFAR10-DVS), a real DVS128 Gesture label CSV. Where
no real sample exists (CIFAR10-DVS events, DVS128 Gesture AEDAT 3.1 events, NavGesture
kAER .dat, POKER-DVS .npy, ASL-DVS .mat) the files are synthetic, written byte for byte
in the published format by tests/test_data_datasets_helpers.py. References: the
readers, SpikingJelly 2.0's own loaders and split function, and masks computed here.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import string
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import require_shared_data
from spikeflow.data import (
    ASLDVS,
    CIFAR10DVS,
    HARDVS,
    NCARS,
    NMNIST,
    POKERDVS,
    SHD,
    SSC,
    DatasetNotFoundError,
    DVS128Gesture,
    DVSLip,
    ESImageNet,
    NAVGesture,
    NCaltech101,
)
from spikeflow.data.cache import CacheCorruptionWarning
from spikeflow.data.datasets import base as base_module
from spikeflow.data.datasets import gesture as gesture_module
from spikeflow.data.datasets._common import Archive
from spikeflow.data.io import read_aedat2, read_asl_dvs, read_atis_bin, read_dat
from spikeflow.errors import ConfigurationError, DataFormatError
from test_data_datasets_helpers import (
    http_server,
    spikingjelly_functions,
    write_aedat2_dvs128,
    write_aedat31,
    write_kaer_td_dat,
    zip_tree,
)


def fields(rec):
    return [rec.events[k].astype(np.int64) for k in ("t", "x", "y", "p")]


def assert_same_events(rec, t, x, y, p):
    for got, want in zip(fields(rec), (t, x, y, p)):
        np.testing.assert_array_equal(got, np.asarray(want, dtype=np.int64))


# -- N-Caltech101 -----------------------------------------------------------------------
@pytest.fixture
def caltech_root(tmp_path):
    src = require_shared_data("event-files", "nmnist-bin", "sample_nmnist.bin")
    folder = tmp_path / "nc" / "Caltech101"
    for name in NCaltech101.classes:
        (folder / name).mkdir(parents=True)
    for name, count in (("Faces_easy", 3), ("accordion", 2), ("yin_yang", 1)):
        for i in range(count):
            shutil.copyfile(src, folder / name / f"image_{i + 1:04d}.bin")
    return tmp_path / "nc", src


def test_ncaltech101_layout_labels_events_and_split(caltech_root):
    root, src = caltech_root
    ds = NCaltech101(root)
    assert ds.split == "all" and len(ds) == 6
    assert ds.targets == [1, 1, 1, 4, 4, 100]  # sorted folder names, case-sensitive
    assert ds.classes[0] == "BACKGROUND_Google" and len(NCaltech101.classes) == 101
    assert [ds.classes[k] for k in (1, 4, 100)] == ["Faces_easy", "accordion", "yin_yang"]
    rec, label = ds[3]
    ref = read_atis_bin(src, (240, 180))
    assert label == 4 and rec.sensor_size == (240, 180, 2)
    np.testing.assert_array_equal(rec.events, ref.events)
    train = NCaltech101(root, train=True, train_ratio=0.5)
    test = NCaltech101(root, train=False, train_ratio=0.5)
    assert train.targets == [1, 1, 4, 100] and test.targets == [1, 4]  # ceil(n / 2) train
    assert {p for p, _ in train.samples} | {p for p, _ in test.samples} == {
        p for p, _ in ds.samples
    }
    frames, _ = NCaltech101(root, data_type="frame", frames_number=4)[0]
    assert frames.shape == (4, 2, 180, 240) and frames.sum().item() == len(ref)


def test_ncaltech101_missing_incomplete_and_download(caltech_root, tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as info:
        NCaltech101(tmp_path / "none")
    msg = str(info.value)
    assert str(tmp_path / "none" / "Caltech101") in msg and "data.mendeley.com" in msg
    assert "download=True" in msg
    root, _ = caltech_root
    shutil.rmtree(root / "Caltech101" / "pizza")
    with pytest.raises(
        DataFormatError,
        match=r"101 official N-Caltech101 class folders, found 100; missing \['pizza'\]",
    ):
        NCaltech101(root)
    (root / "Caltech101" / "Pizza").mkdir()  # a renamed folder would shift every label
    with pytest.raises(DataFormatError, match=r"unexpected \['Pizza'\]"):
        NCaltech101(root)
    (root / "Caltech101" / "Pizza").rename(root / "Caltech101" / "pizza")
    archive = zip_tree(tmp_path / "Caltech101.zip", root, sorted(root.rglob("*")))
    body = archive.read_bytes()
    with http_server({"/nc.zip": body}) as (base, log):
        good = Archive("Caltech101.zip", hashlib.md5(body).hexdigest(), f"{base}/nc.zip")
        monkeypatch.setattr(NCaltech101, "archive", good)
        ds = NCaltech101(tmp_path / "fresh", download=True)
        assert len(ds) == 6 and log == ["/nc.zip"]
        assert (tmp_path / "fresh" / "Caltech101.zip").read_bytes() == body
        monkeypatch.setattr(NCaltech101, "archive", Archive(good.name, "0" * 32, good.url))
        (tmp_path / "bad").mkdir()
        shutil.copyfile(archive, tmp_path / "bad" / "Caltech101.zip")
        with pytest.raises(DataFormatError, match="MD5"):
            NCaltech101(tmp_path / "bad")


# -- CIFAR10-DVS ------------------------------------------------------------------------
PER_CLASS = 101


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    header_src = require_shared_data("event-files", "aedat2", "header_test_128.aedat_test")
    raw = header_src.read_bytes()
    header = raw[: raw.index(b"#End Of ASCII Header") + len(b"#End Of ASCII Header\r\n")]
    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    truth = {}
    for name in CIFAR10DVS.classes:
        for i in range(PER_CLASS):
            n = int(rng.integers(1, 6))
            t = np.sort(rng.integers(0, 10**6, n))
            rx, ry, p = (rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))
            path = root / name / f"cifar10_{name}_{i}.aedat"
            write_aedat2_dvs128(path, header, t, rx, ry, p)
            truth[path] = (t, rx, ry, p)
    return root, truth


def test_cifar10dvs_both_split_rules_exact(cifar_root):
    _split_class_indices = spikingjelly_functions("utils", ("_split_class_indices",))[
        "_split_class_indices"
    ]
    root, _ = cifar_root
    everything = CIFAR10DVS(root, train=None)
    assert len(everything) == 10 * PER_CLASS and everything.split == "all"
    # 90/10: SpikingJelly's rule on its folder order (lexicographic names), per class.
    label_idx = [[] for _ in range(10)]
    for i, (_, label) in enumerate(everything.samples):
        label_idx[label].append(i)
    sj_train, sj_test = _split_class_indices(label_idx, 0.9, False)
    train = CIFAR10DVS(root, train=True)
    test = CIFAR10DVS(root, train=False)
    assert len(train) == 10 * 91 and len(test) == 10 * 10  # ceil(0.9 * 101) = 91
    assert [p for p, _ in train.samples] == [everything.samples[i][0] for i in sj_train]
    assert [p for p, _ in test.samples] == [everything.samples[i][0] for i in sj_test]
    assert {p.name for p, label in test.samples if label == 0} == {
        f"cifar10_airplane_{i}.aedat" for i in range(90, 100)
    }  # the last ten in lexicographic order: ..., _89, _9, _90, ..., _99
    # first100: indices 0-99 are the test split.
    train100 = CIFAR10DVS(root, train=True, split_rule="first100")
    test100 = CIFAR10DVS(root, train=False, split_rule="first100")
    assert len(test100) == 1000 and len(train100) == 10
    assert {p.name for p, _ in train100.samples} == {
        f"cifar10_{c}_100.aedat" for c in CIFAR10DVS.classes
    }
    assert train100.targets == list(range(10)) and train100.split == "train-first100"
    with pytest.raises(ConfigurationError, match="split_rule"):
        CIFAR10DVS(root, split_rule="80/20")


def test_cifar10dvs_events_match_reader_and_spikingjelly(cifar_root):
    _load_origin_data = spikingjelly_functions(
        "cifar10_dvs",
        (
            "_read_bits",
            "_skip_header",
            "_load_raw_events",
            "_parse_raw_address",
            "_load_events",
            "_load_origin_data",
        ),
    )["_load_origin_data"]
    root, truth = cifar_root
    sensor = CIFAR10DVS(root, train=None, orientation="sensor")
    upright = CIFAR10DVS(root, train=None)
    for i in (0, 505, 1009):
        path, label = sensor.samples[i]
        t, rx, ry, p = truth[path]
        rec, got_label = sensor[i]
        assert got_label == label == CIFAR10DVS.classes.index(path.parent.name)
        np.testing.assert_array_equal(rec.events, read_aedat2(path, layout="dvs128").events)
        assert_same_events(rec, t, 127 - rx, ry, 1 - p)  # jAER DVS128: address bit 0 set is OFF
        sj = _load_origin_data(path)
        assert_same_events(upright[i][0], sj["t"], sj["x"], sj["y"], sj["p"])
    frames_ds = CIFAR10DVS(root, train=False, data_type="frame", frames_number=3)
    frames, _ = frames_ds[0]
    assert frames.shape == (3, 2, 128, 128) and frames.sum().item() == len(frames_ds.events(0))
    assert frames_ds.samples[0] == CIFAR10DVS(root, train=False).samples[0]


def test_cifar10dvs_missing_and_download(cifar_root, tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as info:
        CIFAR10DVS(tmp_path / "none")
    msg = str(info.value)
    assert str(tmp_path / "none" / "airplane") in msg and "ndownloader.figshare.com" in msg
    root, _ = cifar_root
    served, archives = {}, {}
    for name in CIFAR10DVS.classes:
        members = sorted((root / name).glob("cifar10_*_1?.aedat"))  # 10-19: 10 files
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for m in members:
                zf.write(m, f"{name}/{m.name}")
        served[f"/{name}.zip"] = buf.getvalue()
    with http_server(served) as (base, log):
        for name in CIFAR10DVS.classes:
            md5 = hashlib.md5(served[f"/{name}.zip"]).hexdigest()
            archives[name] = Archive(f"{name}.zip", md5, f"{base}/{name}.zip")
        monkeypatch.setattr(CIFAR10DVS, "archives", archives)
        ds = CIFAR10DVS(tmp_path / "dl", train=None, download=True)
        assert len(ds) == 100 and sorted(log) == sorted(served)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "airplane.zip").write_bytes(served["/airplane.zip"][:-7] + b"garbage")
    with pytest.raises(DataFormatError, match="MD5"):
        CIFAR10DVS(tmp_path / "bad", train=None)


# -- DVS128 Gesture ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def gesture_root(tmp_path_factory):
    real_csv = require_shared_data(
        "event-files", "dvs128-gesture-labels", "user01_natural_labels.csv"
    )
    root = tmp_path_factory.mktemp("gesture")
    folder = root / "DvsGesture"
    folder.mkdir()
    rng = np.random.default_rng(1)
    truth = {}
    for name, span in (
        ("user01_natural", (50_000_000, 180_000_000)),
        ("user02_led", (0, 9_000_000)),
    ):
        n = 3000
        t = np.sort(rng.integers(*span, n))
        if name == "user02_led":  # events exactly on window edges: [start, end) semantics
            t[[100, 1500, 2500]] = (1_000_000, 4_000_000, 7_000_000)
            t = np.sort(t)
        x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
        write_aedat31(folder / f"{name}.aedat", t, x, y, p)
        truth[name] = (t, x, y, p)
    shutil.copyfile(real_csv, folder / "user01_natural_labels.csv")
    (folder / "user02_led_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n3,1000000,4000000\n11,3500000,7000000\n3,7000000,8999999\n"
    )  # overlapping windows, a repeated class: both occur in the real files
    (folder / "trials_to_train.txt").write_text("user01_natural.aedat\n\n")
    (folder / "trials_to_test.txt").write_text("user02_led.aedat\n")
    return root, truth


def test_gesture_cut_by_labels_matches_csv_and_spikingjelly(gesture_root, tmp_path):
    sj_utils = spikingjelly_functions("utils", ("load_aedat_v3",))
    sj_utils = types.SimpleNamespace(load_aedat_v3=sj_utils["load_aedat_v3"], np_savez=np.savez)
    _split_aedat_files_to_np = spikingjelly_functions(
        "dvs128_gesture", ("_split_aedat_files_to_np",), utils=sj_utils
    )["_split_aedat_files_to_np"]
    root, truth = gesture_root
    cut = tmp_path / "cut"
    train = DVS128Gesture(root, train=True, cut_cache_dir=cut, progress=False)
    rows = np.loadtxt(root / "DvsGesture" / "user01_natural_labels.csv", delimiter=",",
                      skiprows=1, dtype=np.int64)  # fmt: skip
    assert len(train) == 12 and train.targets == list(rows[:, 0] - 1)
    assert set(train.targets) == set(range(11)) and train.sensor_size == (128, 128, 2)
    t, x, y, p = truth["user01_natural"]
    sj_out = tmp_path / "sj"
    for label in range(11):
        (sj_out / str(label)).mkdir(parents=True)
    _split_aedat_files_to_np("user01_natural", root / "DvsGesture" / "user01_natural.aedat",
                             root / "DvsGesture" / "user01_natural_labels.csv", sj_out)  # fmt: skip
    seen = [0] * 11
    for i, (label, start, end) in enumerate(rows):
        rec, got = train[i]
        m = (t >= start) & (t < end)
        assert got == label - 1 and m.sum() > 0
        assert_same_events(rec, t[m], x[m], y[m], p[m])
        sj = np.load(sj_out / str(label - 1) / f"user01_natural_{seen[label - 1]}.npz")
        seen[label - 1] += 1
        assert_same_events(rec, sj["t"], sj["x"], sj["y"], sj["p"])
    test = DVS128Gesture(root, train=False, cut_cache_dir=cut, progress=False)
    assert test.targets == [2, 10, 2]
    t, x, y, p = truth["user02_led"]
    for i, (start, end) in enumerate([(1000000, 4000000), (3500000, 7000000), (7000000, 8999999)]):
        m = (t >= start) & (t < end)
        assert_same_events(test[i][0], t[m], x[m], y[m], p[m])
    edges = [test[i][0].events["t"] for i in range(3)]
    assert edges[0][0] == 1_000_000 and 4_000_000 not in edges[0] and 4_000_000 in edges[1]
    assert 7_000_000 not in edges[1] and edges[2][0] == 7_000_000
    frames, label = DVS128Gesture(root, train=False, cut_cache_dir=cut, data_type="frame",
                                  frames_number=8, progress=False)[1]  # fmt: skip
    assert frames.shape == (8, 2, 128, 128) and label == 10
    assert frames.sum().item() == len(test[1][0])


def test_gesture_getitem_reads_the_cut_cache_not_the_recording(gesture_root, tmp_path, monkeypatch):
    root, _ = gesture_root
    cut = tmp_path / "cut"
    first = DVS128Gesture(root, train=False, cut_cache_dir=cut, progress=False)
    reference = [first[i][0].events.copy() for i in range(len(first))]
    assert len(list(first.cut_cache.directory.rglob("*.sfc"))) == 3

    def no_decode(*args, **kwargs):
        raise AssertionError("a recording was decoded again")

    monkeypatch.setattr(gesture_module, "read_aedat31", no_decode)
    again = DVS128Gesture(root, train=False, cut_cache_dir=cut, progress=False)
    for i in range(len(again)):
        np.testing.assert_array_equal(again[i][0].events, reference[i])
    # a corrupt entry is detected, and its recording cut again
    monkeypatch.undo()
    entry = again.cut_cache.path_for(again._cut_key(0, 1))
    blob = bytearray(entry.read_bytes())
    blob[-40] ^= 0xFF
    entry.write_bytes(bytes(blob))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(again[1][0].events, reference[1])
    assert any(issubclass(w.category, CacheCorruptionWarning) for w in caught)
    assert not list(cut.rglob("*.tmp"))


def test_gesture_content_identity_hashes_recording_and_csv_once(gesture_root, tmp_path,
                                                                monkeypatch):  # fmt: skip
    root, _ = gesture_root
    calls = []
    real = base_module.file_identity

    def counted(path, content_hash=False):
        calls.append(Path(path).name)
        return real(path, content_hash)

    monkeypatch.setattr(base_module, "file_identity", counted)
    ds = DVS128Gesture(root, train=False, cut_cache_dir=tmp_path / "cut", progress=False,
                       cache_identity="content")  # fmt: skip
    for _ in range(2):
        for i in range(len(ds)):
            ds[i]  # reads one small cut entry; the recording is not hashed again
    assert sorted(calls) == ["user02_led.aedat", "user02_led_labels.csv"]


def test_gesture_missing_and_bad_archive(gesture_root, tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        DVS128Gesture(tmp_path / "none", cut_cache_dir=tmp_path / "c")
    msg = str(info.value)
    assert str(tmp_path / "none" / "DvsGesture") in msg and DVS128Gesture.homepage in msg
    assert "DvsGesture.tar.gz" in msg and "manual download" in msg
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "DvsGesture.tar.gz").write_bytes(b"\x1f\x8b not the archive")
    with pytest.raises(DataFormatError, match="MD5"):
        DVS128Gesture(tmp_path / "bad", cut_cache_dir=tmp_path / "c")
    root, _ = gesture_root
    broken = tmp_path / "broken" / "DvsGesture"
    shutil.copytree(root / "DvsGesture", broken)
    (broken / "user02_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,1,5\n")
    with pytest.raises(DataFormatError, match="class 12"):
        DVS128Gesture(broken.parent, train=False, cut_cache_dir=tmp_path / "c")


# -- NavGesture -------------------------------------------------------------------------
def test_navgesture_matches_spikingjelly_reader(tmp_path):
    _readATIS_tddat = spikingjelly_functions("nav_gesture", ("_readATIS_tddat",))["_readATIS_tddat"]
    rng = np.random.default_rng(2)
    root = tmp_path / "nav"
    files = {}
    for user in ("user01", "user02"):
        for code in ("le", "se", "do"):
            n = 200
            t = np.sort(rng.integers(0, 10**6, n))
            if user == "user02":
                t[[50, 120]] = t[[49, 119]] - 7  # timestamps that go backwards
            x, y, p = rng.integers(0, 304, n), rng.integers(0, 240, n), rng.integers(0, 2, n)
            path = root / user / f"{user}_{code}_01_td.dat"
            write_kaer_td_dat(path, t, x, y, p)
            files[path] = (code, t, x, y, p)
    ds = NAVGesture(root)
    assert len(ds) == 6 and ds.split == "all"
    assert ds.targets == [0, 0, 2, 2, 4, 4]  # do, le, se in sorted code order
    for i, (path, label) in enumerate(ds.samples):
        code, t, x, y, p = files[path]
        rec = ds[i][0]
        assert NAVGesture.classes[label] == code and rec.sensor_size == (304, 240, 2)
        keep = t >= np.maximum.accumulate(t)  # events going back in time are dropped
        assert keep.sum() == (198 if path.parent.name == "user02" else 200)
        assert_same_events(rec, t[keep], x[keep], 239 - y[keep], p[keep])
        if path.parent.name == "user01":  # SpikingJelly's reader (times from 0, y flipped)
            ts, xy, pol, removed = _readATIS_tddat(str(path))
            assert removed == 0
            assert_same_events(rec, ts + t[0], xy[:, 0], 239 - xy[:, 1], pol)
    assert len(NAVGesture(root, train=True, train_ratio=0.5)) == 3
    with pytest.raises(DatasetNotFoundError, match=r"navgesture-walk\.zip"):
        NAVGesture(tmp_path / "none")


# -- POKER-DVS, N-CARS, ASL-DVS ---------------------------------------------------------
def test_pokerdvs(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "poker"
    arrays = {}
    for split, dirs in (("train", ("1cl", "2he", "3di", "4sp", "5cl")), ("test", ("1sp",))):
        for d in dirs:
            n = 30
            arr = np.stack([np.sort(rng.integers(0, 10**5, n)), rng.integers(0, 35, n),
                            rng.integers(0, 35, n), rng.integers(0, 2, n)], 1)  # fmt: skip
            (root / f"pips_{split}" / d).mkdir(parents=True)
            np.save(root / f"pips_{split}" / d / "sample.npy", arr)
            arrays[root / f"pips_{split}" / d / "sample.npy"] = arr
    train = POKERDVS(root)
    assert train.targets == [0, 0, 1, 2, 3] and len(POKERDVS(root, train=False)) == 1
    for i, (path, _) in enumerate(train.samples):
        a = arrays[path]
        assert_same_events(train[i][0], a[:, 0], a[:, 1], a[:, 2], a[:, 3])
    frames, _ = POKERDVS(root, data_type="frame", frames_number=2)[0]
    assert frames.shape == (2, 2, 35, 35)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "pips_train.tar.gz").write_bytes(b"x")
    with pytest.raises(DataFormatError, match="MD5"):
        POKERDVS(tmp_path / "bad")
    with pytest.raises(DatasetNotFoundError, match=r"pips_train\.tar\.gz"):
        POKERDVS(tmp_path / "none")


def test_ncars_real_files(tmp_path):
    src = require_shared_data("event-files", "prophesee-dat")
    root = tmp_path / "ncars"
    for split in ("train", "test"):
        for cls in ("background", "cars"):
            (root / f"n-cars_{split}" / cls).mkdir(parents=True)
    shutil.copyfile(src / "sample_ncars.dat", root / "n-cars_train/cars/obj_000001_td.dat")
    shutil.copyfile(
        src / "NCARS_obj_004397_td.dat", root / "n-cars_train/background/obj_004397_td.dat"
    )
    shutil.copyfile(src / "NCARS_obj_004397_td.dat", root / "n-cars_test/cars/obj_004397_td.dat")
    train, test = NCARS(root), NCARS(root, train=False)
    assert train.targets == [0, 1] and test.targets == [1]
    reference = np.load(src / "dat_sample.npy")  # a reference decode of NCARS_obj_004397
    rec = train[0][0]
    assert rec.sensor_size == (120, 100, 2)
    assert_same_events(rec, reference["t"], reference["x"], reference["y"], reference["p"])
    np.testing.assert_array_equal(train[1][0].events, read_dat(src / "sample_ncars.dat").events)
    with pytest.raises(DatasetNotFoundError) as info:
        NCARS(tmp_path / "none")
    assert str(tmp_path / "none" / "n-cars_train") in str(info.value)
    assert "prophesee.ai" in str(info.value)


def _write_asl(path: Path, rng) -> None:
    from scipy.io import savemat

    n = 40
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"x": rng.integers(0, 240, (n, 1)), "y": rng.integers(0, 180, (n, 1)),
                   "ts": np.sort(rng.integers(0, 10**5, (n, 1)), 0),
                   "pol": rng.integers(0, 2, (n, 1))})  # fmt: skip


def test_asldvs_from_nested_official_archive(tmp_path):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(4)
    staging = tmp_path / "staging"
    letters = [c for c in string.ascii_lowercase if c not in "jz"]
    outer = tmp_path / "asl" / "ICCV2019_DVS_dataset.zip"
    outer.parent.mkdir()
    with zipfile.ZipFile(outer, "w") as zf:
        for k, letter in enumerate(letters):
            (staging / letter).mkdir(parents=True)
            for i in range(1 + (k == 3)):
                _write_asl(staging / letter / f"{letter}_{i + 1:04d}.mat", rng)
            inner = zip_tree(staging / f"{letter}.zip", staging,
                             sorted((staging / letter).iterdir()))  # fmt: skip
            zf.write(inner, inner.name)
    ds = ASLDVS(tmp_path / "asl")
    assert len(ds) == 25 and ds.targets == sorted([*range(24), 3])
    assert ds.classes[ds.targets[-1]] == "y" and not list((tmp_path / "asl").glob(".*inner"))
    for i in (0, 24):
        path = ds.samples[i][0]
        ref = read_asl_dvs(staging / path.parent.name / path.name)
        np.testing.assert_array_equal(ds[i][0].events, ref.events)
    assert len(ASLDVS(tmp_path / "asl", train=True, train_ratio=0.5)) == 24  # ceil(2/2)+23
    with pytest.raises(DatasetNotFoundError) as info:
        ASLDVS(tmp_path / "none")
    assert "ICCV2019_DVS_dataset.zip" in str(info.value) and "manual" in str(info.value)
    frames, _ = ASLDVS(tmp_path / "asl", data_type="frame", frames_number=2)[0]
    assert isinstance(frames, torch.Tensor) and frames.shape == (2, 2, 180, 240)


@pytest.mark.parametrize(
    "cls,kwargs,where,source",
    [
        (NMNIST, {}, "Train", "data.mendeley.com/public-files/datasets/468j46mzdv"),
        (NCaltech101, {}, "Caltech101", "data.mendeley.com/public-files/datasets/cy6cvx3ryv"),
        (CIFAR10DVS, {}, "airplane", "ndownloader.figshare.com/files/7712788"),
        (DVS128Gesture, {}, "DvsGesture", "research.ibm.com/interactive/dvsgesture"),
        (ASLDVS, {}, "a", "github.com/PIX2NVS/NVS2Graph"),
        (NCARS, {"train": False}, "n-cars_test", "prophesee.ai"),
        (POKERDVS, {}, "pips_train", "imse-cnm.csic.es/caviar/POKERDVS"),
        (NAVGesture, {"variant": "sit"}, "<user>", "navgesture-sit.zip"),
        (SHD, {}, "shd_train.h5", "https://zenkelab.org/datasets/shd_train.h5.zip"),
        (SSC, {"split": "valid"}, "ssc_valid.h5", "https://zenkelab.org/datasets/ssc_valid.h5.zip"),
        (DVSLip, {}, "DVS-Lip/train", "sites.google.com/view/event-based-lipreading"),
        (ESImageNet, {}, "ES-imagenet-0.18/train", "cloud.tsinghua.edu.cn"),
        (HARDVS, {}, "action_<nnn>", "github.com/Event-AHU/HARDVS"),
    ],
)
def test_missing_root_names_the_expected_path_and_the_source(tmp_path, cls, kwargs, where, source):
    if cls is DVS128Gesture:
        kwargs = {"cut_cache_dir": tmp_path / "cut"}
    root = tmp_path / "missing"
    with pytest.raises(DatasetNotFoundError) as info:
        cls(root, **kwargs)
    msg = str(info.value)
    assert str(root / where) in msg and source in msg and str(root) in msg
    assert isinstance(info.value, FileNotFoundError) and not (tmp_path / "cut").exists()
