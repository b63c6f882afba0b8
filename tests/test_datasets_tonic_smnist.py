"""SMNIST (spiking sequential MNIST, spikeflow.data.datasets.SMNIST) against Tonic 1.7's
``SMNIST`` reading the very same files.

No MNIST files are in ../shared/data, so the tests write small IDX files byte for byte
in the published format (big-endian magic 2051 / 2049, the counts and 28 x 28, then the
uint8 data), uncompressed in ``root/smnist/`` where Tonic's ``SMNIST(save_to=root)``
looks for them (Tonic then downloads nothing: its presence check is an existence check),
and gzip-compressed for spikeflow's other layouts. The images are random grey values
plus runs of 255 (the white-pixel neuron) and of 0. References: Tonic's events (t, x)
and targets; a per-pixel loop written from the encoding's description.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from spikeflow.data.datasets import DatasetNotFoundError
from spikeflow.data.datasets.smnist import SMNIST, smnist_encode
from spikeflow.data.download import DownloadError
from spikeflow.errors import ConfigurationError, DataFormatError
from test_data_datasets_helpers import http_server


def images_and_labels(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[0] = 0
    images[0, 5:9, 3:20] = 255  # a white bar on black: long rises and falls
    if n > 1:
        images[1][images[1] > 180] = 255
    return images, (np.arange(n) * 7 % 10).astype(np.uint8)


def idx_bytes(images: np.ndarray, labels: np.ndarray) -> tuple[bytes, bytes]:
    n = images.shape[0]
    return (
        struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes(),
        struct.pack(">II", 2049, n) + labels.tobytes(),
    )


def write_split(
    folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = False
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    img, lab = idx_bytes(images, labels)
    suffix = ".gz" if gz else ""
    pack = gzip.compress if gz else (lambda b: b)
    (folder / f"{prefix}-images-idx3-ubyte{suffix}").write_bytes(pack(img))
    (folder / f"{prefix}-labels-idx1-ubyte{suffix}").write_bytes(pack(lab))


def loop_reference(
    image: np.ndarray, num_neurons: int, duplicate: bool, dt: int
) -> list[tuple[int, int]]:
    """(t, x) pixel by pixel from the encoding's description (smnist_encode's docstring)."""
    v = [int(a) for a in image.reshape(-1)]
    half = num_neurons // 2
    levels = [int(a) for a in np.linspace(0.0, 254.0, half).astype(np.uint8)]
    out = []
    for k in range(783):
        for j, th in enumerate(levels):
            if v[k] < th <= v[k + 1]:
                out.append((k, num_neurons - j))
            if v[k + 1] < th <= v[k]:
                out.append((k, num_neurons - (half + j)))
    out += [(k, 0) for k in range(784) if v[k] == 255]
    out.sort()
    if duplicate:
        out = sorted(((2 * k + d, x) for k, x in out for d in (0, 1)), key=lambda e: e[0])
    return [(k * dt, x) for k, x in out]


@pytest.mark.parametrize(
    ("num_neurons", "duplicate", "dt"), [(99, True, 1000), (7, False, 3), (3, True, 1)]
)
def test_events_and_targets_match_tonic(tmp_path, num_neurons, duplicate, dt):
    tonic = pytest.importorskip("tonic")
    images, labels = images_and_labels(3)
    write_split(tmp_path / "smnist", "t10k", images, labels)
    ref = tonic.datasets.SMNIST(
        str(tmp_path), train=False, num_neurons=num_neurons, duplicate=duplicate, dt=float(dt)
    )
    ours = SMNIST(tmp_path, False, num_neurons=num_neurons, duplicate=duplicate, dt=dt)
    assert len(ours) == len(ref) == 3 and ours.sensor_size == (num_neurons, 1, 1)
    assert ours.targets == labels.tolist()
    for i in range(3):
        ev, target = ref[i]
        ev = ev[np.argsort(ev["t"], kind="stable")]  # Tonic's duplicates are not time-sorted
        rec, label = ours[i]
        assert label == int(target)
        np.testing.assert_array_equal(rec.events["t"], ev["t"].astype(np.int64))
        np.testing.assert_array_equal(rec.events["x"], ev["x"])
        assert (ev["p"] == 1).all()
        assert (rec.events["p"] == 0).all() and (rec.events["y"] == 0).all()
        assert rec.sensor_size == ref.sensor_size
        got = list(zip(rec.events["t"].tolist(), rec.events["x"].tolist()))
        assert got == loop_reference(images[i], num_neurons, duplicate, dt)


def test_layouts_frames_and_cache(tmp_path):
    images, labels = images_and_labels(2, seed=1)
    write_split(tmp_path / "MNIST" / "raw", "train", images, labels, gz=True)  # torchvision's
    ds = SMNIST(tmp_path, data_type="frame", frames_number=4, split_by="number")
    frames, label = ds[1]
    assert frames.shape == (4, 99) and label == 7
    rec = smnist_encode(images[1])
    counts = np.bincount(rec.events["x"], minlength=99)
    np.testing.assert_array_equal(frames.sum(0).numpy(), counts)
    # the options are part of the frame cache key; the row is part of the entry key
    a = SMNIST(tmp_path, frames_number=4, data_type="frame", cache_dir=tmp_path / "c")
    b = SMNIST(tmp_path, frames_number=4, data_type="frame", cache_dir=tmp_path / "c", dt=2)
    assert a.cache_namespace() != b.cache_namespace()
    assert a.cache_entry_key(0) != a.cache_entry_key(1)
    assert SMNIST.sensor_size_for(num_neurons=11) == (11, 1, 1)


def test_missing_damaged_and_bad_options(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"t10k-images-idx3-ubyte\.gz"):
        SMNIST(tmp_path, False)
    images, labels = images_and_labels(2)
    write_split(tmp_path / "smnist", "train", images, labels)
    lab = tmp_path / "smnist" / "train-labels-idx1-ubyte"
    raw = bytearray(lab.read_bytes())
    raw[9] = 12
    lab.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=r"labels-idx1-ubyte: offset 9: label 12"):
        SMNIST(tmp_path)
    lab.write_bytes(bytes(raw[:9]))
    with pytest.raises(DataFormatError, match="labels-idx1-ubyte: offset 8"):
        SMNIST(tmp_path)
    write_split(tmp_path / "smnist", "train", images[:, :27], labels)  # wrong header rows
    img = tmp_path / "smnist" / "train-images-idx3-ubyte"
    img.write_bytes(struct.pack(">IIII", 2051, 2, 27, 28) + images[:, :27].tobytes())
    with pytest.raises(DataFormatError, match=r"images-idx3-ubyte: expected uint8 images"):
        SMNIST(tmp_path)
    for bad in ({"num_neurons": 10}, {"num_neurons": 1}, {"dt": 0.5}, {"dt": -1}, {"duplicate": 1}):
        with pytest.raises(ConfigurationError, match="SMNIST"):
            SMNIST(tmp_path, **bad)
    with pytest.raises(ConfigurationError, match="784 uint8"):
        smnist_encode(np.zeros(784, dtype=np.int64))


def test_download_checks_md5(tmp_path, monkeypatch):
    images, labels = images_and_labels(2)
    img, lab = (gzip.compress(b) for b in idx_bytes(images, labels))
    files = {"/t10k-images-idx3-ubyte.gz": img, "/t10k-labels-idx1-ubyte.gz": lab}
    md5s = {name[1:]: hashlib.md5(body).hexdigest() for name, body in files.items()}
    with http_server(files) as (base, log):
        monkeypatch.setattr(SMNIST, "base_url", base + "/")
        monkeypatch.setattr(SMNIST, "md5s", md5s)
        ds = SMNIST(tmp_path / "dl", False, download=True)
        assert len(ds) == 2 and len(log) == 2
        assert (tmp_path / "dl" / "smnist" / "t10k-images-idx3-ubyte.gz").is_file()
        monkeypatch.setattr(SMNIST, "md5s", {k: "0" * 32 for k in md5s})
        with pytest.raises(DownloadError, match="md5"):
            SMNIST(tmp_path / "bad", False, download=True)


def test_constructor_arguments_are_keyed_or_cannot_change_a_sample():
    """The frame-cache audit of test_data_datasets_cache_keys, for a class that is not
    exported from spikeflow.data.datasets (so not in that file's list)."""
    from test_data_datasets_cache_keys import NOT_SAMPLE_CONTENT, constructor_arguments

    left = constructor_arguments(SMNIST) - set(SMNIST.sample_options) - set(NOT_SAMPLE_CONTENT)
    assert left == set()


@pytest.mark.parametrize("gz", [False, True])
def test_pickles_without_the_images_and_reads_them_back_bit_for_bit(tmp_path, gz):
    import pickle

    images, labels = images_and_labels(300, seed=2)
    write_split(tmp_path / "smnist", "t10k", images, labels, gz=gz)
    ds = SMNIST(tmp_path, train=False)
    state = pickle.dumps(ds)  # what each spawned DataLoader worker receives
    assert len(state) < images.nbytes / 4, len(state)
    worker = pickle.loads(state)
    for i in (0, 1, 157, 299):
        expected = smnist_encode(images[i]).events
        for rec in (ds.events(i), worker.events(i)):
            assert rec.events.tobytes() == expected.tobytes(), i
        assert worker[i][1] == ds[i][1] == labels[i]
    np.testing.assert_array_equal(worker.images, images)
    # a file replaced by one of another size after the dataset was built
    write_split(tmp_path / "smnist", "t10k", images[:10], labels[:10], gz=gz)
    with pytest.raises(DataFormatError, match=r"changed since the dataset was built: expected 300"):
        pickle.loads(state).events(0)


@pytest.mark.parametrize("gz", [False, True])
def test_a_file_rewritten_with_as_many_other_images_is_an_error(tmp_path, gz):
    """The labels are read when the dataset is built, the pixels again in each process:
    a file replaced by the same number of other images must not pair them silently."""
    import pickle

    images, labels = images_and_labels(20, seed=2)
    write_split(tmp_path / "smnist", "t10k", images, labels, gz=gz)
    state = pickle.dumps(SMNIST(tmp_path, train=False))
    np.testing.assert_array_equal(pickle.loads(state).images, images)  # unchanged: read
    other, _ = images_and_labels(20, seed=3)
    assert not np.array_equal(other, images)
    write_split(tmp_path / "smnist", "t10k", other, labels, gz=gz)
    with pytest.raises(DataFormatError, match=r"changed since the dataset was built: the 20 "):
        pickle.loads(state).events(0)
