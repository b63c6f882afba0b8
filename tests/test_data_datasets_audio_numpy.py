"""SHD / SSC (HDF5 spiking audio) and the NumPy-released datasets (DVS-Lip, ES-ImageNet,
HARDVS) on small roots in tmp_path, in the official layouts.

No real sample of these formats exists in ../shared/data, so every file here is
synthetic, written in the published layout: SHD/SSC HDF5 files with ``spikes/times``,
``spikes/units`` (variable-length rows), ``labels`` and ``extra/`` (as Tonic reads
them); DVS-Lip structured ``.npy``; ES-ImageNet ``.npz`` with ``pos``/``neg``; HARDVS
``.npz`` with ``t, x, y, p``. References: the readers, Tonic's SHD loader, and
per-channel histograms computed here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spikeflow.data import HARDVS, SHD, SSC, DatasetNotFoundError, DVSLip, ESImageNet, pad_collate
from spikeflow.data.datasets import base as base_module
from spikeflow.data.io import SpikingAudioFile, read_dvs_lip, read_es_imagenet, read_hardvs
from spikeflow.data.transforms import Downsample
from spikeflow.errors import ConfigurationError, DataFormatError
from test_data_datasets_helpers import http_server

h5py = pytest.importorskip("h5py")


def write_spiking_audio(path, samples, labels, keys):
    """The SHD/SSC HDF5 layout: ragged float times (s) and uint16 units per sample, the
    label names in ``extra/keys`` (fixed-length byte strings, as h5py stores them)."""
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype("f4"))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype("u2"))
        for i, (t, u) in enumerate(samples):
            times[i], units[i] = t, u
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        if keys is not None:
            f.create_dataset("extra/keys", data=np.array([k.encode() for k in keys], dtype="S"))
        f.create_dataset("extra/speaker", data=np.zeros(len(samples), dtype=np.uint16))


def audio_samples(rng, n, classes):
    samples = []
    for _ in range(n):
        k = int(rng.integers(5, 60))
        samples.append((np.sort(rng.uniform(0, 0.9, k)).astype(np.float32),
                        rng.integers(0, 700, k).astype(np.uint16)))  # fmt: skip
    return samples, rng.integers(0, classes, n)


@pytest.fixture
def shd_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "shd"
    root.mkdir()
    data = {}
    for split, n in (("train", 7), ("test", 4)):
        samples, labels = audio_samples(rng, n, 20)
        write_spiking_audio(root / f"shd_{split}.h5", samples, labels, SHD.classes)
        data[split] = (samples, labels)
    return root, data


def test_shd_events_frames_and_tonic(shd_root, tmp_path):
    tonic = pytest.importorskip("tonic")
    root, data = shd_root
    train, test = SHD(root), SHD(root, train=False)
    assert (len(train), len(test)) == (7, 4) and test.split == "test"
    assert train.targets == list(data["train"][1])
    # Tonic's loader on the same file (it wants <save_to>/SHD/ with the zip beside it).
    (tmp_path / "tonic" / "SHD").mkdir(parents=True)
    (tmp_path / "tonic" / "SHD" / "shd_train.h5").write_bytes((root / "shd_train.h5").read_bytes())
    (tmp_path / "tonic" / "SHD" / "shd_train.h5.zip").write_bytes(b"")
    reference = tonic.datasets.SHD(str(tmp_path / "tonic"), train=True)
    for i, (times, units) in enumerate(data["train"][0]):
        rec, label = train[i]
        assert rec.sensor_size == (700, 1, 1) and label == int(data["train"][1][i])
        np.testing.assert_array_equal(rec.events["t"], np.rint(times.astype(np.float64) * 1e6))
        np.testing.assert_array_equal(rec.events["x"], units)
        assert not rec.events["y"].any() and not rec.events["p"].any()
        tonic_events, tonic_label = reference[i]
        assert tonic_label == label
        np.testing.assert_array_equal(rec.events["x"], tonic_events["x"])
        assert np.abs(rec.events["t"] - tonic_events["t"]).max() <= 1  # Tonic truncates
    frames = SHD(root, data_type="frame", duration=10_000)
    for i in (0, 6):
        x, _ = frames[i]
        t = np.rint(data["train"][0][i][0].astype(np.float64) * 1e6).astype(np.int64)
        k = (t - t[0]) // 10_000  # bin of each spike, from the first spike
        expected = np.zeros((k.max() + 1, 700))
        np.add.at(expected, (k, data["train"][0][i][1].astype(np.int64)), 1)
        assert x.shape == (k.max() + 1, 700) and x.dtype == torch.float32
        np.testing.assert_array_equal(x.numpy(), expected)
    batch, labels, mask = next(iter(DataLoader(frames, batch_size=3, collate_fn=pad_collate)))
    assert labels.tolist() == frames.targets[:3]
    assert batch.shape[0] == 3 and batch.shape[2] == 700 and mask.shape == batch.shape[:2]
    assert batch.transpose(0, 1).shape == (batch.shape[1], 3, 700)  # time-major
    fixed = SHD(root, data_type="frame", frames_number=5, split_by="time")
    assert fixed[0][0].shape == (5, 700) and fixed[0][0].sum().item() == len(train[0][0])
    # An event transform that changes the channel count changes the frames' width.
    half = SHD(root, data_type="frame", frames_number=5, event_transform=Downsample(0.5))
    assert half[0][0].shape == (5, 350) and half[0][0].sum().item() == len(train[0][0])
    clone = pickle.loads(pickle.dumps(train))  # what DataLoader workers receive
    np.testing.assert_array_equal(clone[3][0].events, train[3][0].events)
    train.close()


def test_shd_ssc_download_missing_and_bad_archive(shd_root, tmp_path, monkeypatch):
    root, _ = shd_root
    with pytest.raises(DatasetNotFoundError) as info:
        SHD(tmp_path / "none")
    msg = str(info.value)
    assert str(tmp_path / "none" / "shd_train.h5") in msg
    assert "https://zenkelab.org/datasets/shd_train.h5.zip" in msg
    payload = tmp_path / "shd_test.h5.zip"
    with zipfile.ZipFile(payload, "w") as zf:
        zf.write(root / "shd_test.h5", "shd_test.h5")
    body = payload.read_bytes()
    monkeypatch.setitem(SHD.md5s, "shd_test.h5.zip", hashlib.md5(body).hexdigest())
    with http_server({"/shd_test.h5.zip": body}) as (base, log):
        monkeypatch.setattr("spikeflow.data.datasets.audio._ZENKE", base + "/")
        ds = SHD(tmp_path / "dl", split="test", download=True)
        assert len(ds) == 4 and log == ["/shd_test.h5.zip"]
    np.testing.assert_array_equal(ds[2][0].events, SHD(root, split="test")[2][0].events)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "shd_test.h5.zip").write_bytes(body + b"x")
    with pytest.raises(DataFormatError, match="MD5"):
        SHD(tmp_path / "bad", split="test")
    with pytest.raises(ConfigurationError, match="contradicts"):
        SHD(root, split="test", train=True)
    # SSC: three splits.
    rng = np.random.default_rng(1)
    ssc = tmp_path / "ssc"
    ssc.mkdir()
    for split, n in (("train", 3), ("valid", 2), ("test", 5)):
        write_spiking_audio(ssc / f"ssc_{split}.h5", *audio_samples(rng, n, 35), SSC.classes)
    assert [len(SSC(ssc, split=s)) for s in ("train", "valid", "test")] == [3, 2, 5]
    valid = SSC(ssc, split="valid")
    with SpikingAudioFile(ssc / "ssc_valid.h5") as f:
        np.testing.assert_array_equal(valid[1][0].events, f[1][0].events)
    with pytest.raises(ConfigurationError, match="split"):
        SSC(ssc, split="val")
    bad_labels = np.array([0, 35])
    write_spiking_audio(ssc / "ssc_test.h5", audio_samples(rng, 2, 35)[0], bad_labels, None)
    with pytest.raises(DataFormatError, match="labels outside 0-34"):
        SSC(ssc, split="test")


def test_ssc_accepts_train_like_shd(tmp_path):
    rng = np.random.default_rng(6)
    root = tmp_path / "ssc"
    root.mkdir()
    for split in ("train", "test"):
        write_spiking_audio(root / f"ssc_{split}.h5", *audio_samples(rng, 2, 35), SSC.classes)
    assert SSC(root, train=False).split == "test" and SSC(root, train=True).split == "train"
    assert SSC(root, split="test", train=False).split == "test"
    with pytest.raises(ConfigurationError, match=r"split='valid' contradicts train=True"):
        SSC(root, split="valid", train=True)


def test_content_identity_hashes_each_source_file_once_per_dataset(shd_root, tmp_path, monkeypatch):
    root, _ = shd_root
    calls = []
    real = base_module.file_identity

    def counted(path, content_hash=False):
        calls.append((Path(path).name, content_hash))
        return real(path, content_hash)

    def stated(path, resolved):
        calls.append((Path(path).name, False))
        return real_stat(path, resolved)

    real_stat = base_module.stat_identity
    monkeypatch.setattr(base_module, "file_identity", counted)
    monkeypatch.setattr(base_module, "stat_identity", stated)  # (an absolute path's)
    ds = SHD(root, data_type="frame", frames_number=3, cache_dir=tmp_path / "c",
             cache_identity="content")  # fmt: skip
    for _ in range(2):
        for i in range(len(ds)):
            ds[i]
    assert calls == [("shd_train.h5", True)]  # not once per sample and epoch
    stat = SHD(root, data_type="frame", frames_number=3, cache_dir=tmp_path / "c")
    calls.clear()
    stat[0], stat[1]
    assert calls == [("shd_train.h5", False)] * 2  # stat is looked up each time


def test_shd_ssc_class_names_from_extra_keys(tmp_path):
    rng = np.random.default_rng(5)
    assert SHD.classes[:3] == ("zero", "one", "two") and SHD.classes[10] == "null"
    assert SHD.classes[19] == "neun" and len(SHD.classes) == SHD.num_classes == 20
    assert SSC.classes[0] == "backward" and SSC.classes[-1] == "zero"
    assert list(SSC.classes) == sorted(SSC.classes) and len(set(SSC.classes)) == 35
    # An instance takes the names from its file's extra/keys (here: other spellings).
    keys = [f"digit-{k}" for k in range(20)]
    root = tmp_path / "keys"
    root.mkdir()
    write_spiking_audio(root / "shd_train.h5", *audio_samples(rng, 3, 20), keys)
    ds = SHD(root)
    assert ds.classes == tuple(keys) and SHD.classes[0] == "zero"
    assert ds.classes[ds.targets[0]] == f"digit-{ds.targets[0]}"
    with SpikingAudioFile(root / "shd_train.h5") as f:
        assert f.label_names == tuple(keys)
    # No extra/keys: the documented names.
    write_spiking_audio(root / "shd_test.h5", *audio_samples(rng, 3, 20), None)
    assert SHD(root, split="test").classes == SHD.classes
    # A file whose extra/keys does not name the classes is refused, naming the file.
    write_spiking_audio(root / "shd_train.h5", *audio_samples(rng, 3, 20), keys[:19])
    with pytest.raises(DataFormatError, match=r"shd_train\.h5: extra/keys holds 19 label names"):
        SHD(root)
    write_spiking_audio(root / "shd_train.h5", *audio_samples(rng, 3, 20), ["a"] * 20)
    with pytest.raises(DataFormatError, match="1 distinct"):
        SHD(root)
    with h5py.File(root / "shd_test.h5", "a") as f:
        f.create_dataset("extra/keys", data=np.zeros((2, 20)))
    with pytest.raises(DataFormatError, match="extra/keys is not a 1-D array of strings"):
        SHD(root, split="test")
    with h5py.File(root / "shd_test.h5", "a") as f:
        del f["extra/keys"]
        f.create_dataset("extra/keys", data=np.array([b"zero", b"\xffne"] + [b"k"] * 18))
    with pytest.raises(DataFormatError, match=r"extra/keys\[1\] is not UTF-8: b'\\xffne'"):
        SHD(root, split="test")


# -- DVS-Lip, ES-ImageNet, HARDVS --------------------------------------------------------
LIP_DTYPE = np.dtype([("t", "<i4"), ("x", "i1"), ("y", "i1"), ("p", "i1")])


def lip_events(rng, n):
    ev = np.zeros(n, dtype=LIP_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 10**6, n))
    ev["x"], ev["y"], ev["p"] = (
        rng.integers(0, 128, n),
        rng.integers(0, 128, n),
        rng.integers(0, 2, n),
    )
    return ev


def test_dvslip(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "lip"
    words = list(DVSLip.classes)
    for split in ("train", "test"):
        for w in words:
            (root / "DVS-Lip" / split / w).mkdir(parents=True)
    for w, n in ((words[0], 2), (words[42], 1), (words[99], 3)):
        for i in range(n):
            np.save(root / "DVS-Lip" / "train" / w / f"{i}.npy", lip_events(rng, 50))
    np.save(root / "DVS-Lip" / "test" / words[7] / "0.npy", lip_events(rng, 20))
    train, test = DVSLip(root), DVSLip(root, train=False)
    assert train.targets == [0, 0, 42, 99, 99, 99] and test.targets == [7]
    for i, (path, _) in enumerate(train.samples):
        np.testing.assert_array_equal(train[i][0].events, read_dvs_lip(path).events)
        raw = np.load(path)
        np.testing.assert_array_equal(train[i][0].events["x"], raw["x"])
    assert train.classes[42] == "heavy" and len(DVSLip.classes) == DVSLip.num_classes
    assert [train.classes[k] for k in train.targets[:3]] == ["accused", "accused", words[42]]
    frames, _ = DVSLip(root, data_type="frame", frames_number=4)[5]
    assert frames.shape == (4, 2, 128, 128) and frames.sum().item() == 50
    with pytest.raises(DatasetNotFoundError) as info:
        DVSLip(tmp_path / "none")
    assert "DVS-Lip.zip" in str(info.value) and str(tmp_path / "none" / "DVS-Lip" / "train") in str(
        info.value
    )
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "DVS-Lip.zip").write_bytes(b"PK")
    with pytest.raises(DataFormatError, match="MD5"):
        DVSLip(tmp_path / "bad")
    (root / "DVS-Lip" / "test" / "syria").rename(root / "DVS-Lip" / "test" / "Syria")
    with pytest.raises(DataFormatError, match=r"missing \['syria'\], unexpected \['Syria'\]"):
        DVSLip(root, train=False)


def es_sample(path, rng, n=30):
    pos = np.stack([rng.integers(0, 200, n), rng.integers(0, 220, n), rng.integers(1, 9, n)], 1)
    neg = np.stack([rng.integers(0, 200, n), rng.integers(0, 220, n), rng.integers(1, 9, n)], 1)
    np.savez(path, pos=pos, neg=neg)
    return pos, neg


def test_es_imagenet(tmp_path):
    rng = np.random.default_rng(3)
    base = tmp_path / "es" / "ES-imagenet-0.18"
    for k in (0, 7, 10):
        (base / "train" / f"class{k}").mkdir(parents=True)
        for i in range(2):
            es_sample(base / "train" / f"class{k}" / f"n{k:03d}_{i}.npz", rng)
    (base / "val").mkdir()
    for name in ("v1.npz", "v2.npz"):
        es_sample(base / "val" / name, rng)
    (base / "vallabel.txt").write_text("v1.npz 7 100 120\nv2.npz 10 90 80\n")
    train, val = ESImageNet(tmp_path / "es"), ESImageNet(tmp_path / "es", train=False)
    assert train.targets == [0, 0, 7, 7, 10, 10] and val.targets == [7, 10]
    assert [train.classes[k] for k in (0, 7, 10)] == ["class0", "class7", "class10"]
    assert len(ESImageNet.classes) == ESImageNet.num_classes == 1000
    rec = val[1][0]
    np.testing.assert_array_equal(rec.events, read_es_imagenet(base / "val" / "v2.npz").events)
    raw = np.load(base / "val" / "v2.npz")
    assert len(rec) == len(raw["pos"]) + len(raw["neg"]) and rec.sensor_size == (256, 256, 2)
    # t is the step 1-8: duration=1 gives one frame per step (the docstring's advice).
    frames, _ = ESImageNet(tmp_path / "es", data_type="frame", duration=1)[0]
    t = read_es_imagenet(base / "train" / "class0" / "n000_0.npz").events["t"]
    per_step = [int((t == k).sum()) for k in range(1, 9)]
    assert frames.shape == (8, 2, 256, 256) and frames.sum(dim=(1, 2, 3)).tolist() == per_step
    (base / "vallabel.txt").write_text("v1.npz 7 100 120\nv2.npz 1000 90 80\n")
    with pytest.raises(DataFormatError, match=r"vallabel\.txt: line 2: label 1000 is outside"):
        ESImageNet(tmp_path / "es", train=False)
    (base / "train" / "class1000").mkdir()
    with pytest.raises(DataFormatError, match="class1000: class folder number 1000"):
        ESImageNet(tmp_path / "es")
    (base / "vallabel.txt").write_text("v1.npz seven\n")
    with pytest.raises(DataFormatError, match="line 1"):
        ESImageNet(tmp_path / "es", train=False)
    (base / "vallabel.txt").write_bytes(b"v1.npz 7\n\xff")  # before: UnicodeDecodeError
    with pytest.raises(DataFormatError, match=r"vallabel\.txt: byte offset 9: not UTF-8"):
        ESImageNet(tmp_path / "es", train=False)
    with pytest.raises(DatasetNotFoundError, match="unrar"):
        ESImageNet(tmp_path / "none")


def test_hardvs(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "hardvs"
    names = {"train": ["action_001/a", "action_001/b", "action_300/c"], "val": ["action_002/d"],
             "test": ["action_150/e", "action_001/f"]}  # fmt: skip
    for split, items in names.items():
        for item in items:
            cls, sample = item.split("/")
            (root / cls).mkdir(parents=True, exist_ok=True)
            n = 40
            np.savez(root / cls / f"{sample}.npz", t=np.sort(rng.integers(0, 10**6, n)),
                     x=rng.integers(0, 346, n), y=rng.integers(0, 260, n),
                     p=rng.integers(0, 2, n))  # fmt: skip
        (root / f"{split}_label.txt").write_text("".join(f"{i} 0\n" for i in items))
    train, val = HARDVS(root), HARDVS(root, split="val")
    test = HARDVS(root, train=False)
    assert train.targets == [0, 0, 299] and val.targets == [1] and test.targets == [149, 0]
    assert [test.classes[k] for k in test.targets] == ["action_150", "action_001"]
    assert len(HARDVS.classes) == HARDVS.num_classes == 300
    np.testing.assert_array_equal(
        test[0][0].events, read_hardvs(root / "action_150" / "e.npz").events
    )
    frames, _ = HARDVS(root, data_type="frame", frames_number=2)[2]
    assert frames.shape == (2, 2, 260, 346) and frames.sum().item() == 40
    # SpikingJelly's positional order: root, train_test_val, data_type, frames_number, ...
    ported = HARDVS(root, "test", "frame", 2, "number")
    assert ported.split == "test" and ported.targets == test.targets
    assert ported[0][0].shape == (2, 2, 260, 346)
    assert (train.split, val.split, test.split) == ("train", "val", "test") and not val.train
    assert HARDVS(root, split="test", train=False).targets == test.targets
    with pytest.raises(ConfigurationError, match=r"split='val' contradicts train=True"):
        HARDVS(root, split="val", train=True)
    with pytest.raises(ConfigurationError, match=r"HARDVS: split must be one of \('train', "
                       r"'val', 'test'\); got 'valid'"):  # fmt: skip
        HARDVS(root, split="valid")
    with pytest.raises(ConfigurationError, match=r"HARDVS takes no download argument: .*manual"):
        HARDVS(root, download=True)
    with pytest.raises(DatasetNotFoundError) as info:
        HARDVS(tmp_path / "none")
    assert "MINI_HARDVS_files.zip" in str(info.value) and "github.com/Event-AHU" in str(info.value)
    (root / "val_label.txt").write_text("action_301/x 0\n")
    with pytest.raises(DataFormatError, match="action_<001-300>"):
        HARDVS(root, split="val")
    zip_path = tmp_path / "z" / "MINI_HARDVS_files.zip"
    zip_path.parent.mkdir()
    zip_path.write_bytes(b"not it")
    with pytest.raises(DataFormatError, match="MD5"):
        HARDVS(tmp_path / "z")


def test_hardvs_official_zip_of_action_zips_extracts_into_action_folders(tmp_path, monkeypatch):
    """MINI_HARDVS_files.zip holds MINI_HARDVS_files/action_<nnn>.zip, each of flat
    <sample>.npz files (as SpikingJelly reads it): each goes to root/action_<nnn>/."""
    rng = np.random.default_rng(7)
    root = tmp_path / "hardvs"
    root.mkdir()
    with zipfile.ZipFile(root / "MINI_HARDVS_files.zip", "w") as outer:
        for a in (1, 2):
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w") as z:
                for k in range(2):
                    b = io.BytesIO()
                    np.savez(b, t=np.sort(rng.integers(0, 10**6, 9)), x=rng.integers(0, 346, 9),
                             y=rng.integers(0, 260, 9), p=rng.integers(0, 2, 9))  # fmt: skip
                    z.writestr(f"s{a}{k}.npz", b.getvalue())
            outer.writestr(f"MINI_HARDVS_files/action_{a:03d}.zip", inner.getvalue())
    md5 = hashlib.md5((root / "MINI_HARDVS_files.zip").read_bytes()).hexdigest()
    monkeypatch.setattr(HARDVS, "archive", dataclasses.replace(HARDVS.archive, md5=md5))
    # Without the label lists: extracted, then refused naming the separate downloads.
    with pytest.raises(DatasetNotFoundError, match="separate downloads") as info:
        HARDVS(root)
    assert "train_label.txt" in str(info.value) and "github.com/Event-AHU" in str(info.value)
    assert sorted(p.name for p in (root / "action_002").iterdir()) == ["s20.npz", "s21.npz"]
    assert not (root / "MINI_HARDVS_files").exists()
    (root / "train_label.txt").write_text("action_001/s10 0\naction_002/s21 1\n")
    ds = HARDVS(root)
    assert ds.targets == [0, 1] and len(ds[1][0]) == 9
    assert "separate downloads" in HARDVS.layout
    (root / "train_label.txt").write_bytes(b"action_001/s10 0\n\xe9")  # was UnicodeDecodeError
    with pytest.raises(DataFormatError, match=r"train_label\.txt: byte offset 17: not UTF-8"):
        HARDVS(root)


def test_spikingjellys_names_and_argument_order(shd_root):
    from spikeflow.data import SpikingHeidelbergDigits, SpikingSpeechCommands

    root, _ = shd_root
    ported = SpikingHeidelbergDigits(root, False, "frame", 4, "number")
    ours = SHD(root, train=False, data_type="frame", frames_number=4, split_by="number")
    assert type(ported) is SHD and ported.split == "test" and len(ported) == len(ours) == 4
    for i in range(len(ours)):
        assert np.array_equal(ported[i][0], ours[i][0]) and ported[i][1] == ours[i][1]
    assert SpikingHeidelbergDigits(root).split == "train"  # SpikingJelly's default
    with pytest.raises(ConfigurationError, match="custom_integrated_frames_dir_name is Spik"):
        SpikingHeidelbergDigits(root, True, "frame", 4, "number", None, None, "dir")
    with pytest.raises(TypeError, match="positional"):
        SpikingHeidelbergDigits(root, True, "frame", 4, "number", None, None, None, None, None, 1)
    assert SpikingSpeechCommands is SSC
