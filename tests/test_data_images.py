"""Static image datasets (MNIST family, CIFAR-10/100) and their readers.

No real MNIST or CIFAR file is in ../shared/data, so the files here are built byte for
byte in the published formats: IDX (the MNIST files' header and layout), the CIFAR
binary records, and CIFAR Python batches pickled the way Python 2's cPickle wrote the
official files (protocol 2, strings as byte strings, numpy's reconstruction calls).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeflow.cli import main
from spikeflow.data import CIFAR10, CIFAR100, KMNIST, MNIST, FashionMNIST
from spikeflow.data.datasets import CIFAR100_COARSE_CLASSES, DatasetNotFoundError
from spikeflow.data.datasets._common import Archive
from spikeflow.data.io.images import decode_idx, read_cifar_binary, read_cifar_pickle, read_idx
from spikeflow.errors import ConfigurationError, DataFormatError
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import build_datasets, dataset_shape

# -- writers of the published formats ---------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i2"): 0x0B, np.dtype(">f4"): 0x0D,
             np.dtype(">i4"): 0x0C}  # fmt: skip
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray,
                    gz: bool) -> None:  # fmt: skip
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in ((f"{prefix}-images-idx3-ubyte", images),
                        (f"{prefix}-labels-idx1-ubyte", labels)):  # fmt: skip
        raw = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)


def _py2_str(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _py2_int(v: int) -> bytes:
    return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)


def _py2_array(a: np.ndarray) -> bytes:
    """A uint8 numpy array as Python 2's cPickle (protocol 2) wrote it."""
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
             + b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1)
             + _py2_int(0) + b"tb")  # fmt: skip
    shape = b"(" + b"".join(_py2_int(d) for d in a.shape) + b"t"
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2_int(0)
            + b"\x85" + _py2_str(b"b") + b"\x87R" + b"(" + _py2_int(1) + shape + dtype
            + b"\x89" + _py2_str(a.tobytes()) + b"tb")  # fmt: skip


def py2_pickle(batch: dict[bytes, object]) -> bytes:
    out = b"\x80\x02}("
    for key, value in batch.items():
        out += _py2_str(key)
        if isinstance(value, np.ndarray):
            out += _py2_array(value)
        elif isinstance(value, list):
            out += b"](" + b"".join(_py2_int(v) for v in value) + b"e"
        else:
            out += _py2_str(value)  # type: ignore[arg-type]
    return out + b"u."


def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10_python(root: Path, per_batch: int = 6) -> tuple[np.ndarray, ...]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows, labels = [], []
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        data = cifar_images(per_batch, i)
        y = [(i + j) % 10 for j in range(per_batch)]
        (folder / name).write_bytes(py2_pickle({b"batch_label": name.encode(), b"labels": y,
                                                b"data": data}))  # fmt: skip
        rows.append(data)
        labels.append(y)
    return np.concatenate(rows[:5]), np.concatenate(labels[:5]), rows[5], np.array(labels[5])


# -- IDX -----------------------------------------------------------------------------


def test_idx_decodes_every_dtype_and_shape_by_hand():
    raw = bytes([0, 0, 0x08, 2]) + struct.pack(">II", 2, 3) + bytes(range(6))
    np.testing.assert_array_equal(decode_idx(raw), [[0, 1, 2], [3, 4, 5]])
    for array in (np.arange(-3, 3, dtype=">i2").reshape(2, 3),
                  np.linspace(0, 1, 8, dtype=">f4").reshape(2, 2, 2)):  # fmt: skip
        np.testing.assert_array_equal(decode_idx(idx_bytes(array)), array)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00", "too short for an IDX header"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"x", "offset 0: IDX files start with"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"x", "offset 2: unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", "offset 3: an IDX array of 0 dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "too short for the 3 dimensions"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(5),
         r"offset 12: shape \(2, 3\) of uint8 needs 6 data bytes; the file holds 5"),
        # 2^31 * 2^31 * 4 elements: 0 in int64 arithmetic, so no data passed the check
        (b"\x00\x00\x08\x03" + struct.pack(">III", 2**31, 2**31, 4),
         "needs 18446744073709551616 data bytes; the file holds 0"),
    ],
)  # fmt: skip
def test_bad_idx_bytes_are_named(raw, message):
    with pytest.raises(DataFormatError, match=message):
        decode_idx(raw, "f.idx")


def test_read_idx_takes_gzip_or_raw_and_names_a_corrupt_stream(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), read_idx(tmp_path / "a.gz"))
    (tmp_path / "b.gz").write_bytes(gzip.compress(idx_bytes(array))[:-6])
    with pytest.raises(DataFormatError, match=r"b\.gz: not a readable gzip file"):
        read_idx(tmp_path / "b.gz")


# -- the MNIST family ----------------------------------------------------------------------


def mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST, KMNIST])
@pytest.mark.parametrize("torchvision_layout", [False, True])
def test_mnist_family_reads_both_splits_exactly(tmp_path, cls, torchvision_layout):
    folder = tmp_path / cls.torchvision_folder / "raw" if torchvision_layout else tmp_path
    train_x, train_y = mnist_arrays(12, 0)
    test_x, test_y = mnist_arrays(5, 1)
    write_idx_split(folder, "train", train_x, train_y, gz=not torchvision_layout)
    write_idx_split(folder, "test", test_x, test_y, gz=torchvision_layout)
    train, test = cls(tmp_path), cls(tmp_path, train=False)
    assert (len(train), len(test), len(cls.classes)) == (12, 5, 10)
    assert train.targets == train_y.tolist() and test.targets == test_y.tolist()
    image, label = test[3]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28) and label == test_y[3]
    torch.testing.assert_close(image[0], torch.from_numpy(test_x[3] / 255.0).float())


def test_missing_mnist_files_name_them_and_the_download(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        MNIST(tmp_path, train=False)
    message = str(info.value)
    assert "missing t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in message
    assert "download=True" in message and "ossci-datasets" in message


def test_download_fetches_the_official_files_with_their_md5(tmp_path, monkeypatch):
    x, y = mnist_arrays(4, 2)
    calls = []

    def fake_download(url, path, *, md5=None, **kwargs):
        calls.append((url, Path(path).name, md5))
        array = x if "images" in url else y
        Path(path).write_bytes(gzip.compress(idx_bytes(array)))
        return Path(path)

    monkeypatch.setattr("spikeflow.data.datasets.images.download_url", fake_download)
    data = FashionMNIST(tmp_path, train=False, download=True)
    assert data.targets == y.tolist()
    assert calls == [
        (FashionMNIST.base_url + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "bef4ecab320f06d8554ea6380940ec79"),
        (FashionMNIST.base_url + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
         "bb300cfdad3c16e7a12a480ee83cd310"),
    ]  # fmt: skip


def test_inconsistent_mnist_files_are_named(tmp_path):
    x, y = mnist_arrays(6, 3)
    write_idx_split(tmp_path, "test", x, y[:5], gz=False)
    with pytest.raises(DataFormatError, match="5 labels for the 6 images"):
        MNIST(tmp_path, train=False)
    bad = y.copy()
    bad[4] = 10
    write_idx_split(tmp_path, "test", x, bad, gz=False)
    with pytest.raises(DataFormatError, match=r"offset 12: label 10 is not in \[0, 10\)"):
        MNIST(tmp_path, train=False)
    write_idx_split(tmp_path, "test", x.astype(">i2"), y, gz=False)
    with pytest.raises(DataFormatError, match=r"expected uint8 images \[N, 28, 28\]"):
        MNIST(tmp_path, train=False)
    write_idx_split(tmp_path, "test", np.zeros((6, 32, 32), np.uint8), y, gz=False)
    with pytest.raises(DataFormatError, match=r"images must be uint8 \[N, 1, 28, 28\]"):
        MNIST(tmp_path, train=False)


# -- CIFAR ------------------------------------------------------------------------------


def test_cifar10_python_version_reads_python2_pickles_exactly(tmp_path):
    train_x, train_y, test_x, test_y = write_cifar10_python(tmp_path)
    train, test = CIFAR10(tmp_path), CIFAR10(tmp_path, train=False)
    assert (len(train), len(test)) == (30, 6) and train.targets == train_y.tolist()
    np.testing.assert_array_equal(train.images.reshape(30, -1), train_x)
    image, label = test[2]
    assert label == test_y[2] and image.shape == (3, 32, 32)
    # A row is the red plane, then green, then blue, each row-major.
    green = torch.from_numpy(test_x[2, 1024:1028] / 255).float()
    torch.testing.assert_close(image[1, 0, :4], green)


def test_cifar10_binary_version_and_cifar100_labels(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i, name in enumerate([*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]):
        labels = np.array([i % 10, (i + 3) % 10], np.uint8)
        (folder / name).write_bytes(np.hstack([labels[:, None], cifar_images(2, i)]).tobytes())
    test = CIFAR10(tmp_path, train=False)
    assert test.targets == [5, 8]
    np.testing.assert_array_equal(test.images.reshape(2, -1), cifar_images(2, 5))
    # CIFAR-100 binary: coarse byte, fine byte, pixels.
    folder = tmp_path / "c100" / "cifar-100-binary"
    folder.mkdir(parents=True)
    coarse, fine = np.array([3, 19], np.uint8), np.array([97, 0], np.uint8)
    for name in ("train.bin", "test.bin"):
        records = np.hstack([coarse[:, None], fine[:, None], cifar_images(2, 7)])
        (folder / name).write_bytes(records.tobytes())
    assert CIFAR100(tmp_path / "c100").targets == [97, 0]
    data = CIFAR100(tmp_path / "c100", train=False, label="coarse")
    assert data.targets == [3, 19] and data.classes == CIFAR100_COARSE_CLASSES
    np.testing.assert_array_equal(data.images.reshape(2, -1), cifar_images(2, 7))


def test_cifar100_python_version_fine_and_coarse(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = cifar_images(3, 9)
    for name in ("train", "test"):
        (folder / name).write_bytes(
            py2_pickle({b"fine_labels": [99, 5, 42], b"coarse_labels": [0, 19, 7], b"data": data})
        )
    fine, coarse = CIFAR100(tmp_path, train=False), CIFAR100(tmp_path, label="coarse")
    assert fine.targets == [99, 5, 42] and coarse.targets == [0, 19, 7]
    assert (len(fine.classes), len(coarse.classes)) == (100, 20)
    with pytest.raises(ConfigurationError, match="label must be 'fine' or 'coarse'"):
        CIFAR100(tmp_path, label="super")


def test_pickles_written_by_python3_are_read_too(tmp_path):
    data = cifar_images(2, 4)
    for protocol in (2, 4):
        path = tmp_path / f"p{protocol}"
        path.write_bytes(pickle.dumps({"data": data, "labels": [1, 2]}, protocol=protocol))
        images, labels = read_cifar_pickle(path, "labels", 10)
        np.testing.assert_array_equal(images.reshape(2, -1), data)
        assert labels.tolist() == [1, 2]


def test_a_pickle_that_asks_for_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    payload = (b"\x80\x02cbuiltins\nopen\n" + _py2_str(str(marker).encode())
               + _py2_str(b"w") + b"\x86R.")  # fmt: skip
    (tmp_path / "evil").write_bytes(payload)
    with pytest.raises(DataFormatError, match=r"refusing builtins\.open"):
        read_cifar_pickle(tmp_path / "evil", "labels", 10)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({b"labels": [1]}, "no 'data' entry"),
        ({b"data": np.zeros((1, 3072), np.uint8)}, "no 'labels' entry"),
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [1, 2]}, "rows hold 3000 values"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "must be 2 integer labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]},
         r"b: labels\[1\]: label 10 is not in \[0, 10\)"),
    ],
)  # fmt: skip
def test_bad_cifar_batches_are_named(tmp_path, batch, message):
    (tmp_path / "b").write_bytes(py2_pickle(batch))
    with pytest.raises(DataFormatError, match=message):
        read_cifar_pickle(tmp_path / "b", "labels", 10)


def test_bad_cifar_records_are_named(tmp_path):
    (tmp_path / "r.bin").write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(DataFormatError, match="not a whole number of 3073-byte CIFAR records"):
        read_cifar_binary(tmp_path / "r.bin", 1, 10)
    records = np.zeros((3, 3073), np.uint8)
    records[2, 0] = 12
    (tmp_path / "r.bin").write_bytes(records.tobytes())
    with pytest.raises(DataFormatError, match=r"record 2 \(offset 6146\): label 12"):
        read_cifar_binary(tmp_path / "r.bin", 1, 10)


def test_cifar_label_index_picks_a_label_byte_and_never_a_pixel(tmp_path):
    """label_index is a Python index into the label bytes (CIFAR-100: coarse, fine);
    one past them would read the first pixel as the label, so it is refused."""
    records = np.zeros((2, 2 + 3072), np.uint8)
    records[:, 0] = [3, 4]  # coarse
    records[:, 1] = [7, 9]  # fine
    records[:, 2] = 5  # the first pixel byte
    (tmp_path / "r.bin").write_bytes(records.tobytes())
    for index, expected in [(0, [3, 4]), (1, [7, 9]), (-1, [7, 9]), (-2, [3, 4])]:
        images, labels = read_cifar_binary(tmp_path / "r.bin", 2, 10, label_index=index)
        assert labels.tolist() == expected, index
        assert images.shape == (2, 3, 32, 32) and images[0, 0, 0, 0] == 5
    for index in (2, 3, -3, 1.0):
        with pytest.raises(ConfigurationError, match=r"label_index must be an int in \[-2, 2\)"):
            read_cifar_binary(tmp_path / "r.bin", 2, 10, label_index=index)
    with pytest.raises(ConfigurationError, match="label_bytes must be an int >= 1; got 0"):
        read_cifar_binary(tmp_path / "r.bin", 0, 10)


def test_an_official_archive_is_checked_and_extracted(tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_cifar10_python(source, per_batch=2)
    root = tmp_path / "root"
    root.mkdir()
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    # Not the official file: its MD5 differs, and nothing is extracted.
    with pytest.raises(DataFormatError, match="MD5"):
        CIFAR10(root, train=False)
    assert not (root / "cifar-10-batches-py").exists()
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(CIFAR10, "python_archive", Archive(archive.name, md5))
    assert len(CIFAR10(root, train=False)) == 2 and len(CIFAR10(root)) == 10


def test_missing_cifar_names_the_layout_and_download(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        CIFAR10(tmp_path)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and "cifar-10-batches-bin" in message
    assert "download=True" in message


def test_augmentation_crops_and_flips_the_padded_image(tmp_path):
    write_cifar10_python(tmp_path, per_batch=2)
    plain = CIFAR10(tmp_path)
    augmented = CIFAR10(tmp_path, augment=True)
    torch.manual_seed(0)
    original = torch.nn.functional.pad(plain[0][0], (4, 4, 4, 4))
    seen = set()
    for _ in range(40):
        image = augmented[0][0]
        windows = [(top, left, flip) for top in range(9) for left in range(9) for flip in (0, 1)
                   if torch.equal(image, (original.flip(-1) if flip else original)
                                  [:, top:top + 32, left:left + 32])]  # fmt: skip
        assert windows, "not a 32x32 window of the padded image"
        seen.update(windows)
    assert len({w[2] for w in seen}) == 2 and len(seen) > 10


# -- spikeflow train ------------------------------------------------------------------------


def test_dataset_shape_and_build_datasets(tmp_path):
    assert dataset_shape("cifar10") == (10, (3, 32, 32))
    assert dataset_shape("CIFAR100") == (100, (3, 32, 32))
    assert dataset_shape("kmnist") == (10, (1, 28, 28))
    write_cifar10_python(tmp_path, per_batch=2)
    train, test, info = build_datasets(TrainConfig(dataset="cifar10", data_dir=str(tmp_path)))
    assert info.static
    assert (info.num_classes, info.in_channels, info.input_size) == (10, 3, (32, 32))
    assert train.augment and not test.augment  # the standard augmentation trains only
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path),
                         dataset_kwargs={"augment": False})  # fmt: skip
    assert not build_datasets(config)[0].augment


def test_dataset_shape_follows_the_dataset_kwargs():
    """The classes an argument chooses (CIFAR-100's 20 superclasses, Speech Commands'
    30 words of v0.01) are the ones a run without --model is told of."""
    from spikeflow.data.datasets import SpeechCommands
    from spikeflow.training.config import resolve

    assert dataset_shape("cifar100", {"label": "coarse"}) == (20, (3, 32, 32))
    assert dataset_shape("cifar100", {"label": "fine", "augment": "psn"})[0] == 100
    assert CIFAR100.classes_for(label="coarse") == CIFAR100_COARSE_CLASSES
    assert dataset_shape("speechcommands", {"version": "v0.01"})[0] == 30
    assert len(SpeechCommands.classes_for("v0.01")) == 30
    assert dataset_shape("speechcommands", {"task": "kws12"})[0] == 12
    mels = {"audio_to_events": {"n_mels": 64}}
    assert dataset_shape("speechcommands", mels)[1] == (2, 1, 64)
    assert dataset_shape("fsdd", mels)[1] == (2, 1, 64)
    assert dataset_shape("fsdd")[1] == (2, 1, 40)
    with pytest.raises(ConfigurationError, match="audio_to_events"):
        dataset_shape("fsdd", {"audio_to_events": {"mels": 64}})
    assert dataset_shape("imagenet", {"image_size": [64, 48]}) == (1000, (3, 64, 48))
    with pytest.raises(ConfigurationError, match=r"its frames are 3x32x32 per step, 20 classes"):
        resolve(TrainConfig(dataset="cifar100", dataset_kwargs={"label": "coarse"}))
    with pytest.raises(ConfigurationError, match="label must be 'fine' or 'coarse'; got 'big'"):
        dataset_shape("cifar100", {"label": "big"})
    with pytest.raises(ConfigurationError, match=r"takes no argument \['lable'\]"):
        dataset_shape("cifar100", {"lable": "coarse"})
    with pytest.raises(ConfigurationError, match="set by --T"):
        dataset_shape("nmnist", {"frames_number": 4})


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"data_dir": None}, ConfigurationError, "needs --data-dir"),
        ({"cache_dir": "c"}, ConfigurationError, "no frames to cache"),
        ({"split_by": "time"}, ConfigurationError, "no events to split"),
        ({"dataset_kwargs": {"label": "fine"}}, ConfigurationError, "takes no argument"),
        ({"dataset_kwargs": {"augment": "yes"}}, ConfigurationError, "augment must be"),
        ({"data_dir": "missing"}, DatasetNotFoundError, "Pass --download to download "),
    ],
)
def test_bad_options_for_image_datasets_are_named(tmp_path, changes, error, message):
    write_idx_split(tmp_path, "train", *mnist_arrays(4, 0), gz=True)
    write_idx_split(tmp_path, "test", *mnist_arrays(4, 1), gz=True)
    if changes.get("data_dir") == "missing":
        changes = {"data_dir": str(tmp_path / "missing")}
    config = TrainConfig(**{"dataset": "mnist", "data_dir": str(tmp_path), **changes})
    with pytest.raises(error, match=message):
        build_datasets(config)


def test_command_line_trains_and_evaluates_on_mnist_files(tmp_path):
    """A learnable task in MNIST's files: each class lights its own 7x7 block (plus
    noise). A run that read images and labels apart (or misaligned) would stay at
    chance (10%)."""
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            top, left = 7 * (c // 4), 7 * (c % 4)
            images[i, top : top + 7, left : left + 7] = 255
        return images, labels

    write_idx_split(tmp_path / "data", "train", *split(300), gz=True)
    write_idx_split(tmp_path / "data", "test", *split(100), gz=True)
    out = tmp_path / "run"
    args = ["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "-T", "2",
            "--model-kwargs", "channels=8", "dropout=0.0", "--epochs", "4", "--batch-size", "20",
            "--lr", "0.01", "--output-dir", str(out), "--no-progress", "--plots", "off",
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[-1]["test_acc"]) >= 0.8, rows[-1]
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--data-dir",
                 str(tmp_path / "data"), "--no-progress"]) == 0  # fmt: skip


def test_the_sequential_cifar_net_reads_one_column_per_step(tmp_path, capsys):
    """psn_seqcifar (methods.md 4.5): T = the image width, step t = column t."""
    from spikeflow.models.psn_seqcifar import image_to_columns
    from spikeflow.training.data import DataInfo, static_layout, to_time_major

    images = torch.rand(2, 3, 32, 32)
    model = torch.nn.Module()
    model.static_input = "columns"  # type: ignore[assignment]
    info = DataInfo(10, 3, (32, 32), static=True)
    layout = static_layout(model, info, 32)
    assert layout == "columns"
    torch.testing.assert_close(to_time_major(images, 32, layout), image_to_columns(images))
    assert to_time_major(images, 32, layout)[5, 1, 2, 7] == images[1, 2, 7, 5]
    with pytest.raises(ConfigurationError, match="T must be the image width, 32; got T=8"):
        static_layout(model, info, 8)
    with pytest.raises(ConfigurationError, match="the dataset yields frames"):
        static_layout(model, DataInfo(10, 2, (34, 34), static=False), 32)
    assert static_layout(torch.nn.Linear(1, 1), info, 8) is True

    write_cifar10_python(tmp_path / "data", per_batch=4)
    out = tmp_path / "run"
    base = ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
            "--model", "psn_seqcifar", "--model-kwargs", "channels=8", "--epochs", "1",
            "--batch-size", "10", "--output-dir", str(out), "--no-progress", "--plots", "off",
            "--device", "cpu"]  # fmt: skip
    assert main([*base, "-T", "8"]) != 0
    assert "T must be the image width, 32; got T=8 (pass -T 32)" in capsys.readouterr().err
    assert main([*base, "-T", "32"]) == 0
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--data-dir",
                 str(tmp_path / "data"), "--no-progress"]) == 0  # fmt: skip
