"""ST-MNIST (tactile, spikeflow.data.STMNIST) and N-TIDIGITS18 (cochlea,
spikeflow.data.NTIDIGITS18) on roots built in tmp_path.

Generated files follow the published layouts: ST-MNIST MAT v5 files (compressed, as
MATLAB saved the real sample) holding one double matrix ``spiketrain`` of 101 rows (100
taxel rows of -1/0/+1 and a row of times in seconds), in ``data_submission/<digit>/``
next to the release's ``data_submission/LUT.mat`` (the layout Tonic's prototype
STMNIST reads); N-TIDIGITS18 as the release's one HDF5 file (``<split>_labels`` byte
strings ``<gender>-<speaker>-<production>-<digits>``, ``<split>_addresses/<key>``,
``<split>_timestamps/<key>`` in seconds: the layout of Tonic's NTIDIGITS18 and the
release's description). The release's element dtypes are not published, so the
N-TIDIGITS reader is run on two (uint8/float32 and int64/float64). The real samples
in ../shared/data are used where they exist (skipped when absent): the ST-MNIST .mat
from Tonic's tests, and SLAYER's N-TIDIGITS .bs1 recording, whose events are written
into the HDF5 layout. References: a loop over the ``spiketrain`` columns, Tonic's
NTIDIGITS18 on the same file, and per-channel histograms.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import require_shared_data
from spikeflow.data import NTIDIGITS18, STMNIST, DatasetNotFoundError, to_frames
from spikeflow.data.datasets._common import Archive
from spikeflow.data.download import DownloadError
from spikeflow.data.io import NTidigitsFile, read_bs1, read_stmnist
from spikeflow.errors import ConfigurationError, DataFormatError
from test_data_datasets_helpers import http_server

h5py = pytest.importorskip("h5py")
sio = pytest.importorskip("scipy.io")


# -- ST-MNIST -------------------------------------------------------------------------------
def random_spiketrain(rng: np.random.Generator, n: int) -> np.ndarray:
    """``spiketrain`` as the release stores it: one event per column (a taxel row of
    +1 or -1), the column's time (s, increasing) in row 100."""
    train = np.zeros((101, n))
    train[rng.integers(0, 100, n), np.arange(n)] = rng.choice([-1.0, 1.0], n)
    train[100] = np.sort(rng.uniform(0.05, 1.5, n))
    return train


def write_stmnist(path: Path, spiketrain: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.savemat(path, {"spiketrain": spiketrain}, format="5", do_compression=True)


def reference_events(spiketrain: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(t µs, x, y, p) by a loop over the columns, then the taxels, stably sorted by t."""
    out = []
    for col in range(spiketrain.shape[1]):
        for k in range(100):
            v = spiketrain[k, col]
            if v != 0:
                out.append((round(spiketrain[100, col] * 1e6), k % 10, k // 10, int(v > 0)))
    return sorted(out, key=lambda e: e[0])


def fields(rec) -> list[tuple[int, int, int, int]]:
    e = rec.events
    return list(zip(*(e[f].astype(np.int64).tolist() for f in "txyp")))


@pytest.fixture
def stmnist_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    root = tmp_path / "stmnist"
    trains = {}
    for digit in range(10):
        for i in range(5):
            name = f"{digit}/sample_{i:02d}.mat"
            trains[name] = random_spiketrain(rng, int(rng.integers(20, 60)))
            write_stmnist(root / "data_submission" / name, trains[name])
    write_stmnist(root / "data_submission" / "LUT.mat", np.zeros((101, 1)))
    write_stmnist(root / "data_submission" / "3" / "LUT_copy.mat", np.zeros((101, 1)))
    return root, trains


def test_stmnist_samples_labels_split_and_events(stmnist_root):
    root, trains = stmnist_root
    every, train, test = STMNIST(root), STMNIST(root, train=True), STMNIST(root, train=False)
    assert (len(every), len(train), len(test)) == (50, 40, 10) and every.split == "all"
    assert every.targets == [d for d in range(10) for _ in range(5)]
    assert train.targets == [d for d in range(10) for _ in range(4)]
    assert test.targets == list(range(10))
    assert [p.name for p, _ in test.samples] == ["sample_04.mat"] * 10  # the last of each digit
    assert all("LUT" not in p.name for p, _ in every.samples)
    for i in (0, 17, 49):
        rec, label = every[i]
        path = every.samples[i][0]
        assert label == int(path.parent.name) and rec.sensor_size == (10, 10, 2)
        assert fields(rec) == reference_events(trains[f"{path.parent.name}/{path.name}"])
    assert len(STMNIST(root, train=True, train_ratio=0.4)) == 20


def test_stmnist_frames_cache_and_loader(stmnist_root, tmp_path):
    root, _ = stmnist_root
    events = STMNIST(root, train=True)
    frames = STMNIST(root, train=True, data_type="frame", frames_number=6, split_by="time",
                     cache_dir=tmp_path / "cache")  # fmt: skip
    x, label = frames[5]
    assert x.shape == (6, 2, 10, 10) and x.dtype == torch.float32 and label == events[5][1]
    np.testing.assert_array_equal(x.numpy(), to_frames(events[5][0], 6, split_by="time"))
    assert x.sum().item() == len(events[5][0])
    assert frames.preprocess(workers=0, progress=False) == 39  # sample 5 is cached already
    again = STMNIST(root, train=True, data_type="frame", frames_number=6, split_by="time",
                    cache_dir=tmp_path / "cache")  # fmt: skip
    assert again.preprocess(workers=0, progress=False) == 0
    batch, labels = next(iter(DataLoader(frames, batch_size=4)))
    assert batch.shape == (4, 6, 2, 10, 10) and labels.tolist() == frames.targets[:4]


def test_stmnist_real_sample_in_the_release_layout(tmp_path):
    real = require_shared_data("event-files", "stmnist-mat", "sample_stmnist.mat")
    root = tmp_path / "stmnist"
    for digit in range(10):
        (root / "data_submission" / str(digit)).mkdir(parents=True)
        shutil.copyfile(real, root / "data_submission" / str(digit) / "sample.mat")
    data = STMNIST(root)
    assert len(data) == 10 and data.targets == list(range(10))
    rec, label = data[7]
    assert label == 7
    spiketrain = sio.loadmat(real)["spiketrain"]
    assert fields(rec) == reference_events(spiketrain) == fields(read_stmnist(real))
    assert len(rec) == 2346 and rec.events["t"][0] == 196626  # 0.19662648 s
    x = STMNIST(root, data_type="frame", frames_number=10, split_by="number")[3][0]
    assert x.shape == (10, 2, 10, 10) and x.sum().item() == 2346


def zip_tree(root: Path, name: str) -> bytes:
    path = root.parent / name
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root).as_posix())
    return path.read_bytes()


def test_stmnist_archive_extraction_checksum_and_missing(stmnist_root, tmp_path, monkeypatch):
    tree, _ = stmnist_root
    name = STMNIST.archive.name
    body = zip_tree(tree, name)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / name).write_bytes(body)
    with pytest.raises(DataFormatError, match="MD5 differs from the official archive"):
        STMNIST(fresh)  # not the release's bytes
    monkeypatch.setattr(STMNIST, "archive", Archive(name, hashlib.md5(body).hexdigest()))
    assert len(STMNIST(fresh)) == 50 and (fresh / "data_submission" / "LUT.mat").is_file()
    with pytest.raises(DatasetNotFoundError) as info:
        STMNIST(tmp_path / "none")
    message = str(info.value)
    assert "cannot be downloaded automatically" in message and STMNIST.homepage in message
    assert "data_submission/<digit 0-9>/*.mat" in message and name in message
    shutil.rmtree(tree / "data_submission" / "4")
    with pytest.raises(DataFormatError, match=r"missing \['4'\]"):
        STMNIST(tree)
    with pytest.raises(ConfigurationError, match="train_ratio"):
        STMNIST(fresh, train=True, train_ratio=1.5)


# -- N-TIDIGITS18 ----------------------------------------------------------------------------
def write_ntidigits(path: Path, splits: dict, dtypes=("u1", "f4")) -> None:
    """The release's layout: per split, the keys in ``<split>_labels`` (fixed-length byte
    strings) and one addresses and one timestamps dataset (s) per key."""
    with h5py.File(path, "w") as f:
        for split, samples in splits.items():
            f.create_dataset(f"{split}_labels", data=np.array([k.encode() for k, _, _ in samples]))
            for key, channels, seconds in samples:
                f.create_dataset(f"{split}_addresses/{key}", data=np.asarray(channels, dtypes[0]))
                f.create_dataset(f"{split}_timestamps/{key}", data=np.asarray(seconds, dtypes[1]))


KEYS = {
    "train": ["man-ae-a-1", "woman-bc-b-o", "man-ae-a-7557", "woman-bc-a-z", "man-ae-b-9",
              "woman-dd-a-z8o", "man-ae-a-5", "man-ae-b-41"],
    "test": ["man-im-a-7557", "woman-km-a-2", "man-im-b-o", "woman-km-b-34z"],
}  # fmt: skip


def ntidigits_samples(rng: np.random.Generator, keys: list[str]) -> list:
    out = []
    for key in keys:
        n = int(rng.integers(30, 200))
        # unsorted on purpose: the reader sorts by time, stably
        out.append((key, rng.integers(0, 64, n), rng.uniform(0.0, 1.2, n)))
    return out


@pytest.fixture(params=[("u1", "f4"), ("i8", "f8")], ids=["uint8-float32", "int64-float64"])
def ntidigits_root(tmp_path: Path, request) -> tuple[Path, dict]:
    rng = np.random.default_rng(1)
    root = tmp_path / "ntidigits"
    root.mkdir()
    splits = {split: ntidigits_samples(rng, keys) for split, keys in KEYS.items()}
    write_ntidigits(root / "n-tidigits.hdf5", splits, request.param)
    stored = {  # what the file holds, at its dtype
        split: [(k, c.astype(request.param[0]), s.astype(request.param[1])) for k, c, s in samples]
        for split, samples in splits.items()
    }
    return root, stored


def test_ntidigits_single_digits_sequences_and_events(ntidigits_root):
    root, stored = ntidigits_root
    train, test = NTIDIGITS18(root), NTIDIGITS18(root, train=False)
    assert train.keys == ["man-ae-a-1", "woman-bc-b-o", "woman-bc-a-z", "man-ae-b-9", "man-ae-a-5"]
    assert train.targets == [1, 0, 10, 9, 5] and test.targets == [2, 0]
    assert train.classes == ("o", "1", "2", "3", "4", "5", "6", "7", "8", "9", "z")
    every = NTIDIGITS18(root, train=False, single_digits=False)
    assert every.keys == KEYS["test"] and every.targets == ["7557", "2", "o", "34z"]
    by_key = {k: (c, s) for k, c, s in stored["train"]}
    for i, key in enumerate(train.keys):
        rec, label = train[i]
        channels, seconds = by_key[key]
        t = np.rint(seconds.astype(np.float64) * 1e6).astype(np.int64)
        order = np.argsort(t, kind="stable")
        assert rec.sensor_size == (64, 1, 1) and label == train.targets[i]
        np.testing.assert_array_equal(rec.events["t"], t[order])
        np.testing.assert_array_equal(rec.events["x"], channels[order])
        assert not rec.events["y"].any() and not rec.events["p"].any()
    clone = pickle.loads(pickle.dumps(train))  # what DataLoader workers receive
    np.testing.assert_array_equal(clone[2][0].events, train[2][0].events)
    train.close()
    np.testing.assert_array_equal(train[2][0].events, clone[2][0].events)  # reopened


def test_ntidigits_equals_tonic(ntidigits_root, tmp_path):
    tonic = pytest.importorskip("tonic")
    root, _ = ntidigits_root
    where = tmp_path / "tonic" / "NTIDIGITS18"  # Tonic's <save_to>/<class name>/
    where.mkdir(parents=True)
    shutil.copyfile(root / "n-tidigits.hdf5", where / "n-tidigits.hdf5")
    for train in (True, False):
        for single in (True, False):
            ours = NTIDIGITS18(root, train=train, single_digits=single)
            theirs = tonic.datasets.NTIDIGITS18(str(tmp_path / "tonic"), train=train,
                                                single_digits=single)  # fmt: skip
            assert len(ours) == len(theirs)
            for i in range(len(ours)):
                rec, label = ours[i]
                events, target = theirs[i]
                assert label == target
                order = np.argsort(events["t"], kind="stable")  # Tonic keeps the file's order
                np.testing.assert_array_equal(rec.events["x"], events["x"][order])
                assert np.abs(rec.events["t"] - events["t"][order]).max() <= 1  # Tonic truncates
            theirs.data.close()


def test_ntidigits_frames_are_time_by_channel(ntidigits_root, tmp_path):
    root, _ = ntidigits_root
    events = NTIDIGITS18(root)
    frames = NTIDIGITS18(root, data_type="frame", frames_number=8, split_by="time",
                         cache_dir=tmp_path / "cache")  # fmt: skip
    for i in range(len(events)):
        x, label = frames[i]
        rec = events[i][0]
        assert x.shape == (8, 64) and label == events.targets[i]
        np.testing.assert_array_equal(x.sum(0).numpy(), np.bincount(rec.events["x"], minlength=64))
        np.testing.assert_array_equal(x.numpy(), to_frames(rec, 8, split_by="time").reshape(8, 64))
    # each sample its own cache entry (one file): keyed by the sample's key
    keys = {frames.cache_entry_key(i)["sample"] for i in range(len(frames))}
    assert keys == set(frames.keys)
    assert frames.preprocess(workers=0, progress=False) == 0  # all cached above
    batch, labels = next(iter(DataLoader(frames, batch_size=3)))
    assert batch.shape == (3, 8, 64) and labels.tolist() == frames.targets[:3]


def test_ntidigits_real_bs1_events_in_the_release_layout(tmp_path):
    real = read_bs1(require_shared_data("event-files", "slayer-bs1", "NTIDIGITS_1.bs1"))
    seconds = real.events["t"] / 1e6
    keys = ["man-ab-a-3", "woman-cd-b-o", "man-ab-b-4477"]
    root = tmp_path / "nt"
    root.mkdir()
    write_ntidigits(root / "n-tidigits.hdf5",
                    {"train": [(k, real.events["x"], seconds) for k in keys],
                     "test": [(keys[0], real.events["x"], seconds)]}, ("u1", "f8"))  # fmt: skip
    data = NTIDIGITS18(root)
    assert data.targets == [3, 0]
    rec, _ = data[1]
    np.testing.assert_array_equal(rec.events["t"], real.events["t"])
    np.testing.assert_array_equal(rec.events["x"], real.events["x"])
    assert len(rec) == 898 and rec.events["x"].max() == 63
    x = NTIDIGITS18(root, train=False, data_type="frame", duration=10_000)[0][0]
    span = int(real.events["t"][-1] - real.events["t"][0])
    assert x.shape == (span // 10_000 + 1, 64)
    np.testing.assert_array_equal(x.sum(0).numpy(), np.bincount(real.events["x"], minlength=64))


def test_ntidigits_download_and_missing(ntidigits_root, tmp_path, monkeypatch):
    root, _ = ntidigits_root
    body = (root / "n-tidigits.hdf5").read_bytes()
    with pytest.raises(DatasetNotFoundError) as info:
        NTIDIGITS18(tmp_path / "none")
    assert "download=True" in str(info.value) and NTIDIGITS18.url in str(info.value)
    monkeypatch.setattr(NTIDIGITS18, "md5", hashlib.md5(body).hexdigest())
    with http_server({"/n-tidigits.hdf5": body}) as (base, log):
        monkeypatch.setattr(NTIDIGITS18, "url", base + "/n-tidigits.hdf5")
        got = NTIDIGITS18(tmp_path / "dl", download=True)
        assert len(got) == 5 and len(log) == 1
        NTIDIGITS18(tmp_path / "dl", train=False, download=True)  # present: no request
        assert len(log) == 1
        monkeypatch.setattr(NTIDIGITS18, "md5", "0" * 32)
        with pytest.raises(DownloadError, match="md5"):
            NTIDIGITS18(tmp_path / "bad", download=True)
    assert not (tmp_path / "bad" / "n-tidigits.hdf5").exists()
    with pytest.raises(ConfigurationError, match="single_digits"):
        NTIDIGITS18(root, single_digits="yes")


def replace(f, name: str, change) -> None:
    """Write ``change(values)`` in place of dataset ``name``."""
    values = f[name][()]
    del f[name]
    f.create_dataset(name, data=change(values))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.__delitem__("test_labels"), "missing dataset 'test_labels'"),
        (lambda f: f.__delitem__("test_timestamps"), "missing group 'test_timestamps'"),
        (lambda f: f.__delitem__("test_addresses/woman-km-a-2"),
         "missing dataset 'test_addresses/woman-km-a-2'"),
        (lambda f: (f.__delitem__("test_labels"),
                    f.create_dataset("test_labels", data=np.array([b"man-im-7557"]))),
         r"test_labels\[0\]: sample key 'man-im-7557' is not"),
        (lambda f: (f.__delitem__("test_labels"),
                    f.create_dataset("test_labels", data=np.array([b"man-im-a-75x7"]))),
         r"test_labels\[0\]"),
        (lambda f: (f.__delitem__("test_labels"),
                    f.create_dataset("test_labels", data=np.array([b"man-im-a-7\xff57"]))),
         r"test_labels\[0\] is not UTF-8: b'man-im-a-7\\xff57'"),
        (lambda f: (f.__delitem__("test_labels"),
                    f.create_dataset("test_labels", data=np.array([[b"man-im-a-7557"]]))),
         r"test_labels is not a 1-D array of strings \(shape \(1, 1\)"),
        (lambda f: replace(f, "test_addresses/woman-km-a-2", lambda a: np.where(
            np.arange(len(a)) == 5, 64, a.astype(np.int64))),
         r"test_addresses/woman-km-a-2\[5\] = 64 is outside the 64 channels"),
        (lambda f: (f.__delitem__("test_timestamps/woman-km-a-2"),
                    f.create_dataset("test_timestamps/woman-km-a-2", data=np.ones(2))),
         "addresses .* and timestamps .* are not 1-D arrays of one length"),
        (lambda f: replace(f, "test_timestamps/woman-km-a-2", lambda a: np.where(
            np.arange(len(a)) == 7, np.nan, a)),
         r"test_timestamps/woman-km-a-2\[7\] = .*nan.* is not a valid time"),
        (lambda f: replace(f, "test_timestamps/woman-km-a-2", lambda a: a.astype("S8")),
         "test_timestamps/woman-km-a-2 has dtype"),
    ],
)  # fmt: skip
def test_ntidigits_bad_files_are_named(ntidigits_root, edit, message):
    root, _ = ntidigits_root
    path = root / "n-tidigits.hdf5"
    with h5py.File(path, "a") as f:
        edit(f)
    with pytest.raises(DataFormatError, match=message) as info:
        data = NTIDIGITS18(root, train=False)
        for i in range(len(data)):  # woman-km-a-2 is one of them
            data[i]
    assert str(path) in str(info.value)


def test_ntidigits_not_hdf5_and_bad_split(tmp_path):
    path = tmp_path / "n-tidigits.hdf5"
    path.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(DataFormatError, match="at byte offset 0: not an HDF5 file"):
        NTIDIGITS18(tmp_path)
    with pytest.raises(ConfigurationError, match="split must be 'train' or 'test'"):
        NTidigitsFile(path, "valid")
