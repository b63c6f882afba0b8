"""ImageNet read without extracting (spikeflow.data.datasets.imagenet_archives and
spikeflow.data.io.tar_index): ILSVRC2012_img_train.tar (a tar of 1,000 <wnid>.tar) and
ILSVRC2012_img_val.tar read in place, and Kaggle's CLS-LOC layout. The archives are
written here with Python's tarfile from real JPEG bytes (Pillow), alongside the
extracted folders holding the same files; every sample read from an archive must be the
one read from its extracted file. As in test_data_imagenet.py, 1,000 classes (the count
ImageNet checks) hold one small shared JPEG each, three of them 300x200 JPEGs of their
label's colour."""

from __future__ import annotations

import functools
import gzip
import io
import multiprocessing
import os
import pickle
import random
import shutil
import subprocess
import tarfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeflow.data import ImageNet
from spikeflow.data.cache import CacheCorruptionWarning
from spikeflow.data.datasets import DatasetNotFoundError
from spikeflow.data.datasets import image_folder as image_folder_module
from spikeflow.data.datasets import imagenet_archives as archives_module
from spikeflow.data.datasets.image_folder import IMAGE_EXTENSIONS
from spikeflow.data.io.tar_index import RangeReader, index_tar
from spikeflow.errors import DataFormatError
from test_data_imagenet import VAL_LABELS, WNIDS, colour, meta_mat_bytes
from test_data_imagenet import write_devkit as write_devkit_anew

Image = pytest.importorskip("PIL.Image", reason="Pillow is the extra 'images'")
pytest.importorskip("scipy.io", reason="scipy writes the devkit's meta.mat")

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
#: The classes whose two training images are 300x200 JPEGs of their colour.
REAL_TRAIN = (0, 3, 999)


@functools.cache
def jpeg(label: int, size: tuple[int, int] = (300, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour(label)).save(buffer, format="JPEG")
    return buffer.getvalue()


@functools.cache
def meta_mat() -> bytes:
    return meta_mat_bytes()


def write_devkit(root: Path, val_labels: list[int]) -> None:
    """The devkit (its meta.mat written by scipy once per session)."""
    write_devkit_anew(root, val_labels, meta=meta_mat())


def tar_bytes(members: list[tuple[str, bytes]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """The tar ``tarfile.open(mode="w", format=fmt)`` writes of ``members``, byte for
    byte (headers by ``TarInfo.tobuf``, the end blocks, padding to a 10,240-byte record),
    without its copy loop (ten times slower on the 10 MB training archive)."""
    chunks = []
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1_300_000_000
        chunks += [info.tobuf(fmt, "utf-8", "surrogateescape"), data, bytes(-len(data) % 512)]
    chunks.append(bytes(1024))
    chunks.append(bytes(-sum(map(len, chunks)) % tarfile.RECORDSIZE))
    return b"".join(chunks)


def train_members() -> dict[str, list[tuple[str, bytes]]]:
    """WNID -> its images, in an unsorted order (the archive's order is not the
    listing's)."""
    out = {}
    for label, wnid in enumerate(WNIDS):
        if label in REAL_TRAIN:
            out[wnid] = [(f"{wnid}_{i}.JPEG", jpeg(label, (300 + i, 200))) for i in (27, 3)]
        else:
            out[wnid] = [(f"{wnid}_1.JPEG", jpeg(1000, (8, 8)))]
    return out


def val_members() -> list[tuple[str, bytes]]:
    members = [(f"ILSVRC2012_val_{n:08d}.JPEG", jpeg(label, (250 + n, 200)))
               for n, label in enumerate(VAL_LABELS, start=1)]  # fmt: skip
    random.Random(0).shuffle(members)
    return members


def backdate(path: Path, seconds: float = 60) -> None:
    """An archive last changed ``seconds`` ago (one changed just now is not indexed into
    the cache: it may still be being copied)."""
    os.utime(path, (time.time() - seconds, time.time() - seconds))


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict[str, Path]:
    """``folders``: train/ and val/ extracted with the devkit; ``archives``: the two
    archives of the same images with the devkit, nothing extracted. Read-only: a test
    that changes files copies them."""
    base = tmp_path_factory.mktemp("imagenet")
    folders, archives = base / "folders", base / "archives"
    classes = train_members()
    outer = []
    for wnid in reversed(WNIDS):  # the archive in another order than sorted
        (folders / "train" / wnid).mkdir(parents=True)
        for name, data in classes[wnid]:
            (folders / "train" / wnid / name).write_bytes(data)
        outer.append((f"{wnid}.tar", tar_bytes(classes[wnid])))
    archives.mkdir()
    (archives / TRAIN_TAR).write_bytes(tar_bytes(outer))
    (folders / "val").mkdir()
    for name, data in val_members():
        (folders / "val" / name).write_bytes(data)
    (archives / VAL_TAR).write_bytes(tar_bytes(val_members(), tarfile.PAX_FORMAT))
    for root in (folders, archives):
        write_devkit(root, VAL_LABELS)
    backdate(archives / TRAIN_TAR)
    backdate(archives / VAL_TAR)
    return {"folders": folders, "archives": archives}


def member_bytes(dataset: ImageNet, index: int) -> bytes:
    with dataset._open_image(index) as fh:
        return fh.read()


# -- the official archives, in place ---------------------------------------------------------


def test_the_training_archive_gives_the_extracted_folders_samples(release, tmp_path):
    extracted = ImageNet(release["folders"], train=True)
    archive = ImageNet(release["archives"], train=True, cache_dir=tmp_path / "cache")
    assert (extracted.source, archive.source) == ("folders", "archive")
    assert archive.classes == extracted.classes == tuple(WNIDS)
    assert archive.targets == extracted.targets and len(archive) == 1000 + len(REAL_TRAIN)
    assert archive.class_names == extracted.class_names is not None
    for i in range(len(archive)):
        relative = extracted.path(i).relative_to(release["folders"] / "train")
        assert archive.path(i) == release["archives"] / TRAIN_TAR / (
            f"{relative.parent}.tar/{relative.name}")  # fmt: skip
        assert member_bytes(archive, i) == extracted.path(i).read_bytes(), i
    for i in (0, 1, 4, 5, len(archive) - 1):  # the 300x200 images: decoded, through the pipeline
        x, y = archive[i]
        assert y == extracted.targets[i] and torch.equal(x, extracted[i][0])
        pixel = np.asarray(archive.load_image(i))[100, 150].astype(int)
        assert np.abs(pixel - colour(y)).max() <= 3
    assert archive.load_image(2).size == (8, 8)


def test_the_validation_archive_is_labelled_by_the_devkit(release, tmp_path):
    extracted = ImageNet(release["folders"], train=False)
    archive = ImageNet(release["archives"], train=False)
    assert archive.source == "archive" and archive.targets == VAL_LABELS == extracted.targets
    assert [archive.path(i).name for i in range(2)] == ["ILSVRC2012_val_00000001.JPEG",
                                                        "ILSVRC2012_val_00000002.JPEG"]  # fmt: skip
    for i in range(len(archive)):
        assert member_bytes(archive, i) == extracted.path(i).read_bytes()
        pixel = np.asarray(archive.load_image(i))[100, 120].astype(int)
        assert np.abs(pixel - colour(VAL_LABELS[i])).max() <= 3
    torch.testing.assert_close(archive[3][0], extracted[3][0], rtol=0, atol=0)
    root = tmp_path / "no-devkit"
    root.mkdir()
    (root / VAL_TAR).symlink_to(release["archives"] / VAL_TAR)
    with pytest.raises(DatasetNotFoundError, match=r"ILSVRC2012_img_val\.tar is labelled by "
                                                   "the devkit"):  # fmt: skip
        ImageNet(root, train=False)


def test_extracted_folders_win_over_the_archives(release, tmp_path):
    root = tmp_path / "both"
    root.mkdir()
    for name in (TRAIN_TAR, VAL_TAR, "ILSVRC2012_devkit_t12.tar.gz"):
        (root / name).symlink_to(release["archives"] / name)
    (root / "val").mkdir()  # an extraction of the validation split only
    for n in range(1, len(VAL_LABELS) + 1):
        (root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG").symlink_to(
            release["folders"] / "val" / f"ILSVRC2012_val_{n:08d}.JPEG")  # fmt: skip
    assert ImageNet(root, train=False).source == "folders"
    assert ImageNet(root, train=True, cache_dir=tmp_path / "c").source == "archive"
    missing = r"no folder .*/train or .*ILSVRC/Data/CLS-LOC/train, nor an archive .*img_train\.tar"
    with pytest.raises(DatasetNotFoundError, match=missing):
        ImageNet(tmp_path / "empty", train=True)


def test_the_index_is_cached_until_the_archive_changes(release, tmp_path, monkeypatch):
    root = tmp_path / "copy"
    root.mkdir()
    archive = root / VAL_TAR
    shutil.copy(release["archives"] / VAL_TAR, archive)
    write_devkit(root, VAL_LABELS)
    backdate(archive)
    calls = []
    real = archives_module.index_tar
    monkeypatch.setattr(archives_module, "index_tar", lambda *a: calls.append(a) or real(*a))
    first = ImageNet(root, train=False)  # cache_dir None: next to the archive
    beside = root / (VAL_TAR + ".spikeflow-index.npz")
    assert len(calls) == 1 and beside.is_file()
    again = ImageNet(root, train=False)
    assert len(calls) == 1 and again.targets == first.targets
    assert all(member_bytes(again, i) == member_bytes(first, i) for i in range(len(first)))

    def index(cache_dir=None, extensions=IMAGE_EXTENSIONS):
        return archives_module.archive_contents(archive, False, extensions, cache_dir)

    cache = tmp_path / "cache"
    assert index(cache).names() == index().names()  # its own cache file
    assert len(calls) == 2 and len(list((cache / "tar-indexes").glob("*.npz"))) == 1
    index(cache)
    assert len(calls) == 2
    assert len(index(extensions=(".png",))) == 0  # other extensions: indexed again,
    assert len(calls) == 3
    index(extensions=(".png",))  # ... into the file beside the archive
    assert len(calls) == 3
    assert len(index()) == len(VAL_LABELS) and len(calls) == 4
    backdate(archive, 30)  # another modification time: stale
    index()
    assert len(calls) == 5
    beside.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.warns(CacheCorruptionWarning, match="archive index cache .* is unreadable"):
        assert ImageNet(root, train=False).targets == VAL_LABELS
    assert len(calls) == 6
    index()
    assert len(calls) == 6
    os.utime(archive)  # changed just now: indexed, used, not written
    beside.unlink()
    index()
    assert len(calls) == 7 and not beside.exists()
    backdate(archive)
    monkeypatch.setattr(image_folder_module, "atomic_write_bytes", _read_only)  # its writer
    with pytest.warns(UserWarning, match=r"cannot write the archive index .*: .*read-only.*"
                                         "cache_dir='auto'"):  # fmt: skip
        assert len(index()) == len(VAL_LABELS)


def _read_only(path: Path, data: bytes) -> None:
    raise PermissionError(f"[Errno 13] read-only: {path}")


def test_unreadable_samples_are_named(release, tmp_path):
    root = tmp_path / "copy"
    root.mkdir()
    shutil.copy(release["archives"] / VAL_TAR, root / VAL_TAR)
    write_devkit(root, VAL_LABELS)
    dataset = ImageNet(root, train=False)
    with open(root / VAL_TAR, "ab") as fh:
        fh.write(bytes(10240))
    with pytest.raises(DataFormatError, match=r"img_val\.tar: changed since it was indexed"):
        dataset.load_image(0)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    name = "ILSVRC2012_val_00000001.JPEG"
    (garbage / VAL_TAR).write_bytes(tar_bytes([(name, jpeg(0)[:300])]))  # truncated JPEG
    write_devkit(garbage, VAL_LABELS[:1])
    with pytest.raises(DataFormatError, match=rf"img_val\.tar/{name}: cannot decode the image"):
        ImageNet(garbage, train=False)[0]


class _Probe(torch.utils.data.Dataset):
    """A DataLoader worker's view of an archive dataset: the member's bytes, and whether
    the reader's handle was opened by the worker's own process."""

    def __init__(self, dataset: ImageNet) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[bytes, bool]:
        data = member_bytes(self.dataset, index)
        return data, self.dataset._reader._pid == os.getpid()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_forked_workers_and_pickled_copies_open_their_own_handle(release):
    dataset = ImageNet(release["archives"], train=False)
    expected = [member_bytes(dataset, i) for i in range(len(dataset))]  # the parent's handle
    assert dataset._reader._fh is not None
    loader = torch.utils.data.DataLoader(_Probe(dataset), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")  # fmt: skip
    results = list(loader)
    assert [data for data, _ in results] == expected
    assert all(own for _, own in results)
    copy = pickle.loads(pickle.dumps(dataset))  # what a spawned worker gets
    assert copy._reader._fh is None
    assert [member_bytes(copy, i) for i in range(len(copy))] == expected
    torch.testing.assert_close(copy[0][0], dataset[0][0], rtol=0, atol=0)


# -- damaged archives --------------------------------------------------------------------------

#: Three classes, two 633-byte JPEGs each, in GNU headers: outer header at byte 0, the
#: first inner tar (10,240 bytes, tarfile pads to 20 blocks) at 512..10752; in it, its
#: first header at 512, that image at 1024..1657, the second header at 2048, its image at
#: 2560. The second inner tar's header is at 10752, its data at 11264..21504.
SMALL = {f"n0000000{k}": [(f"n0000000{k}_{i}.JPEG", jpeg(k, (8, 8))) for i in (1, 2)]
         for k in range(3)}  # fmt: skip


def small_outer(inner: dict[str, bytes] | None = None, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    inner = inner or {f"{w}.tar": tar_bytes(m) for w, m in SMALL.items()}
    return tar_bytes(list(inner.items()), fmt)


def with_link(kind: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("n00000000_1.JPEG")
        info.size = len(jpeg(0, (8, 8)))
        tar.addfile(info, io.BytesIO(jpeg(0, (8, 8))))
        link = tarfile.TarInfo("n00000000_2.JPEG")
        link.type, link.linkname = kind, "n00000000_1.JPEG"
        tar.addfile(link)
    return buffer.getvalue()


def corrupt_inner_header(data: bytes) -> bytes:
    out = bytearray(data)
    out[2048 + 10] ^= 0x40  # the second image's header, in the first inner tar
    return bytes(out)


def broken_archives() -> list:
    outer = small_outer()
    first_inner = tar_bytes(SMALL["n00000000"])
    gz = gzip.compress(first_inner, mtime=0)
    plain_member = tar_bytes(
        [("README.txt", b"hello")] + [(f"{w}.tar", tar_bytes(m)) for w, m in SMALL.items()]
    )
    return [
        pytest.param(
            outer[:3000],
            r"img_train\.tar: truncated at byte 0: member n00000000\.tar "
            r"needs bytes 512\.\.10752, the archive ends at byte 3000",
            id="truncated",
        ),
        pytest.param(
            outer[:15000],
            r"img_train\.tar: truncated at byte 10752: member "
            r"n00000001\.tar needs bytes 11264\.\.21504",
            id="truncated-later",
        ),
        pytest.param(
            outer[:32256],
            r"img_train\.tar: truncated at byte 32256: the archive ends "
            r"\(byte 32256\) without its end-of-archive block",
            id="cut-at-a-boundary",
        ),
        pytest.param(
            corrupt_inner_header(outer),
            r"img_train\.tar: member n00000000\.tar: byte "
            "2048: not a tar header",
            id="corrupt-header",
        ),
        pytest.param(
            small_outer({"n00000000.tar": gz}),
            r"img_train\.tar: member "
            r"n00000000\.tar \(data at byte 512\) is gzip-compressed",
            id="gzip-inner",
        ),
        pytest.param(
            gzip.compress(outer, mtime=0),
            r"img_train\.tar: is gzip-compressed data, "
            "not an uncompressed tar",
            id="gzip-outer",
        ),
        pytest.param(
            small_outer({"n00000000.tar": with_link(tarfile.SYMTYPE)}),
            r"img_train\.tar: member n00000000\.tar: member n00000000_2\.JPEG \(header "
            r"at byte 2048\) is a symbolic link, not a regular file",
            id="symlink",
        ),
        pytest.param(
            small_outer({"n00000000.tar": with_link(tarfile.LNKTYPE)}),
            r"n00000000_2\.JPEG \(header at byte 2048\) is a hard link",
            id="hardlink",
        ),
        pytest.param(
            plain_member,
            r"img_train\.tar: member README\.txt \(byte 0\) is not a "
            r"\.tar",
            id="not-a-tar",
        ),
        pytest.param(
            small_outer({"n00000000.tar": first_inner[:2200]}),
            r"member "
            r"n00000000\.tar: truncated at byte 2048: member n00000000_2\.JPEG needs "
            r"bytes 2560\.\.3193, the archive ends at byte 2712",
            id="inner-truncated",
        ),
        pytest.param(
            outer, r"img_train\.tar: expected 1000 inner <wnid>\.tar, found 3", id="three-classes"
        ),
    ]


@pytest.mark.parametrize(("data", "message"), broken_archives())
def test_a_damaged_archive_is_named_with_its_offset(tmp_path, data, message):
    (tmp_path / TRAIN_TAR).write_bytes(data)
    with pytest.raises(DataFormatError, match=message):
        ImageNet(tmp_path, train=True)


def test_an_empty_inner_tar_is_a_class_without_images(release, tmp_path):
    with tarfile.open(release["archives"] / TRAIN_TAR) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    members[5] = (members[5][0], tar_bytes([]))
    (tmp_path / TRAIN_TAR).write_bytes(tar_bytes(members))
    empty = members[5][0][:-4]
    with pytest.raises(DataFormatError, match=rf"no image of class\(es\) \['{empty}'\]"):
        ImageNet(tmp_path, train=True)


# -- the header parser against tarfile ----------------------------------------------------------


def test_the_header_parser_finds_what_tarfile_finds(tmp_path):
    """Long names (GNU 'L' records, pax 'path' records, ustar's name prefix), non-ASCII
    names, a directory (skipped), an empty file, and sizes of every padding; each
    member's data offset and size as tarfile reports them."""
    rng = np.random.default_rng(0)
    names = ["a.JPEG", "deep/" * 30 + "long.JPEG", "ümlaut/ñame.JPEG", "empty.JPEG",
             "x" * 99 + ".JPEG", "prefix/" * 14 + "p.JPEG"]  # fmt: skip
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        path = tmp_path / f"t{fmt}.tar"
        with tarfile.open(path, "w", format=fmt) as tar:
            tar.addfile(_directory("folder"))
            for k, name in enumerate(names):
                data = rng.bytes(0 if "empty" in name else int(rng.integers(1, 1500)) + k)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                try:
                    tar.addfile(info, io.BytesIO(data))
                except ValueError:  # a name ustar cannot store
                    assert fmt == tarfile.USTAR_FORMAT
        with tarfile.open(path) as tar:
            expected = [(m.name, m.offset_data, m.size) for m in tar if m.isfile()]
        found = index_tar(path)
        assert list(zip(found.names, found.offsets.tolist(), found.sizes.tolist())) == expected
        assert len(expected) >= 4 and found.group_names == ("",)
        with RangeReader(path) as reader, tarfile.open(path) as tar:
            for name, offset, size in expected:
                assert reader.read(offset, size) == tar.extractfile(name).read()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_archives_here_are_what_tarfile_writes(fmt):
    members = [*SMALL["n00000001"], ("ILSVRC2012_val_00000001.JPEG", jpeg(3, (9, 9)))]
    for chosen in ([], members):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
            for name, data in chosen:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 1_300_000_000
                tar.addfile(info, io.BytesIO(data))
        assert tar_bytes(chosen, fmt) == buffer.getvalue()


def test_indexing_reads_the_headers_and_not_the_images(tmp_path, monkeypatch):
    """Every read while indexing a tar of tars lies outside the images' bytes: 512-byte
    headers, and the first bytes of each inner tar (its first header) for the
    compression check."""
    path = tmp_path / "t.tar"
    path.write_bytes(small_outer())
    reads = []
    real = RangeReader.read_at
    monkeypatch.setattr(RangeReader, "read_at", lambda self, offset, size: reads.append(
        (offset, size)) or real(self, offset, size))  # fmt: skip
    found = index_tar(path, nested=True)
    assert len(found) == 6 and found.group_names == tuple(f"{w}.tar" for w in SMALL)
    assert found.offsets.tolist() == [1024, 2560, 11776, 13312, 22528, 24064]
    assert sorted({size for _, size in reads}) == [8, 512]
    images = list(zip(found.offsets.tolist(), (found.offsets + found.sizes).tolist()))
    assert not [r for r in reads for a, b in images if r[0] < b and a < r[0] + r[1]]


def _directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def test_base256_sizes_and_signed_checksums_are_read(tmp_path):
    """GNU's base-256 size field (tarfile writes it only past 8 GiB) and a checksum summed
    over signed bytes (old tar programs), in headers edited by hand."""
    data = bytes(range(256)) * 3
    header = bytearray(tarfile.TarInfo("é.JPEG").tobuf(tarfile.GNU_FORMAT))
    header[124:136] = b"\x80" + len(data).to_bytes(11, "big")
    header[148:156] = b" " * 8
    signed = sum(b - 256 if b > 127 else b for b in header)
    header[148:156] = b"%06o\x00 " % signed
    path = tmp_path / "edited.tar"
    path.write_bytes(bytes(header) + data + bytes(-len(data) % 512) + bytes(1024))
    found = index_tar(path)
    assert found.names == ["é.JPEG"] and found.offsets.tolist() == [512]
    assert found.sizes.tolist() == [len(data)]
    pax = bytearray(tar_bytes([("ñ.JPEG", data)], tarfile.PAX_FORMAT))
    at = pax.index(b" path=")
    assert pax[at - 2 : at] == b"16"  # the record's length: "16 path=ñ.JPEG\n", UTF-8
    path.write_bytes(pax)
    assert index_tar(path).names == ["ñ.JPEG"]
    pax[at - 2 : at] = b"99"
    path.write_bytes(pax)
    with pytest.raises(DataFormatError, match=r"edited\.tar: byte 0: a malformed pax header "
                                              "record at its byte 0"):  # fmt: skip
        index_tar(path)
    header[148:156] = b"%06o\x00 " % (signed + 1)
    path.write_bytes(bytes(header) + data + bytes(-len(data) % 512) + bytes(1024))
    with pytest.raises(DataFormatError, match=r"edited\.tar: byte 0: not a tar header"):
        index_tar(path)


def header(name: str = "a.JPEG", size: bytes = b"0", kind: bytes = b"0") -> bytes:
    """A ustar header with a raw size field and a valid checksum (hand-edited fields)."""
    info = tarfile.TarInfo(name)
    info.type = kind
    block = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    block[124:136] = size.ljust(12, b"\x00")
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def pax_header(key: bytes, value: bytes) -> bytes:
    record = b" %s=%s\n" % (key, value)
    record = b"%d%s" % (len(record) + 2, record)  # its length, two digits
    assert 10 <= len(record) < 100
    body = record + bytes(-len(record) % 512)
    return header("PaxHeader", b"%011o" % len(record), b"x") + body


END = bytes(1024)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            header(size=b"-7") + END, r"byte 0: the header's size field b'-7", id="negative"
        ),
        pytest.param(header(size=b"+7") + bytes(512) + END, r"byte 0: .*b'\+7", id="signed"),
        pytest.param(header(size=b"0o7") + bytes(512) + END, r"byte 0: .*b'0o7", id="0o"),
        pytest.param(header(size=b"\t7") + bytes(512) + END, r"byte 0: .*b'\\t7", id="tab"),
        pytest.param(
            header("././@LongLink", b"-2000", b"L") + header() + END,
            r"byte 0: the header's size field b'-2000",
            id="long-name-negative",
        ),
        pytest.param(
            pax_header(b"size", "²".encode()) + header() + END,
            r"byte 1024: member a\.JPEG: the pax size '²' is not a number",
            id="pax-size-superscript",
        ),
        pytest.param(
            pax_header(b"size", "١".encode()) + header() + bytes(512) + END,
            r"byte 1024: member a\.JPEG: the pax size '١' is not a number",
            id="pax-size-arabic",
        ),
        pytest.param(
            header("a.JPEG") + bytes(512) + header("b.JPEG") + END,
            r"byte 512: a zero block followed by a member header at byte 1024",
            id="lone-zero-block",
        ),
        pytest.param(
            header("../../x.JPEG") + END,
            r"member '\.\./\.\./x\.JPEG' \(header at byte 0\) is not a relative path",
            id="dot-dot",
        ),
        pytest.param(header("/x.JPEG") + END, r"member '/x\.JPEG' .*not a relative", id="absolute"),
        pytest.param(header("./../x.JPEG") + END, r"member '\.\./x\.JPEG' .*not", id="dot-dot-dot"),
        pytest.param(header(".//x.JPEG") + END, r"member '/x\.JPEG' .*not", id="dot-absolute"),
    ],
)
def test_hostile_headers_are_refused_with_file_and_offset(tmp_path, data, message):
    """Fields that ``int(text, 8)`` or ``str.isdigit`` would take (a negative size
    sent the scan backwards, forever for -2000), negative sizes of metadata headers (an
    OSError from pread), a lone zero block hiding the members after it, names that
    extract outside the folder."""
    path = tmp_path / "hostile.tar"
    path.write_bytes(data)
    with pytest.raises(DataFormatError, match=r"hostile\.tar: " + message):
        index_tar(path)


def test_an_oversized_pax_header_is_refused_unread(tmp_path):
    """A pax header (or long name) is read into memory: one claiming more than
    MAX_METADATA bytes is refused before the read (a sparse file keeps this small)."""
    from spikeflow.data.io.tar_index import MAX_METADATA

    path = tmp_path / "hostile.tar"
    size = MAX_METADATA + 1
    with open(path, "wb") as fh:
        fh.write(header("PaxHeader", b"%011o" % size, b"x"))
        fh.seek(512 + size + (-size % 512))
        fh.write(header() + END)
    with pytest.raises(DataFormatError, match=rf"hostile\.tar: byte 0: a pax header of {size} "
                                              "bytes"):  # fmt: skip
        index_tar(path)
    path.write_bytes(header("././@LongLink", b"%011o" % size, b"L") + END)
    with pytest.raises(DataFormatError, match=r"truncated at byte 0: a long-name header of"):
        index_tar(path)


def test_a_member_twice_in_an_inner_tar_is_refused(tmp_path):
    """Extracting keeps one of two same-named members; the archive would list both."""
    twice = tar_bytes([("n00000000_1.JPEG", jpeg(0, (8, 8))), ("n00000000_1.JPEG", b"x")])
    (tmp_path / TRAIN_TAR).write_bytes(small_outer({"n00000000.tar": twice}))
    with pytest.raises(DataFormatError, match=r"img_train\.tar: holds member n00000000\.tar/"
                                              r"n00000000_1\.JPEG twice \(data at bytes 1024 "
                                              r"and 2560\)"):  # fmt: skip
        ImageNet(tmp_path, train=True)


def test_names_starting_with_dot_slash_are_read_as_extracted(release, tmp_path):
    """``tar -C train -cf ILSVRC2012_img_train.tar .`` names its members
    ``./n01440764.tar`` (and an inner tar made so, ``./n01440764_1.JPEG``): extracting
    drops the ``./``, and so does the index (classes ``n01440764``, not
    ``./n01440764``)."""
    classes = train_members()
    outer = [(f"./{wnid}.tar", tar_bytes([(f"./{n}", d) for n, d in classes[wnid]]))
             for wnid in reversed(WNIDS)]  # fmt: skip
    (tmp_path / TRAIN_TAR).write_bytes(tar_bytes(outer))
    write_devkit(tmp_path, VAL_LABELS)
    dotted = ImageNet(tmp_path, train=True, cache_dir=tmp_path / "cache")
    official = ImageNet(release["archives"], train=True, cache_dir=tmp_path / "cache")
    assert dotted.classes == official.classes == tuple(WNIDS)
    assert dotted.targets == official.targets
    for i in (0, 1, 2, len(official) - 1):
        assert dotted.path(i).relative_to(tmp_path) == official.path(i).relative_to(
            release["archives"])  # fmt: skip
        assert member_bytes(dotted, i) == member_bytes(official, i)


@pytest.mark.skipif(shutil.which("tar") is None, reason="no tar program")
def test_an_archive_written_by_the_tar_program_from_a_folder(tmp_path):
    """What ``tar -C dir -cf x.tar .`` writes (GNU or BSD tar): ``./`` directory
    entries and ``./``-prefixed names, inner tars written the same way."""
    top = tmp_path / "train"
    top.mkdir()
    for wnid, members in SMALL.items():
        folder = tmp_path / wnid
        folder.mkdir()
        for name, data in members:
            (folder / name).write_bytes(data)
        subprocess.run(["tar", "-C", str(folder), "-cf", str(top / f"{wnid}.tar"), "."],
                       check=True)  # fmt: skip
    outer = tmp_path / "outer.tar"
    subprocess.run(["tar", "-C", str(top), "-cf", str(outer), "."], check=True)
    with tarfile.open(outer) as tar:
        assert sorted(m.name for m in tar if m.isfile()) == [f"./{w}.tar" for w in SMALL]
    found = index_tar(outer, nested=True)
    assert sorted(found.group_names) == [f"{w}.tar" for w in SMALL]
    expected = {f"{w}.tar/{name}": data for w, members in SMALL.items() for name, data in members}
    assert sorted(found.names) == sorted(expected)
    with RangeReader(outer) as reader:
        for name, offset, size in zip(found.names, found.offsets.tolist(), found.sizes.tolist()):
            assert reader.read(offset, size) == expected[name]
    flat = index_tar(top / "n00000001.tar")
    assert sorted(flat.names) == [name for name, _ in SMALL["n00000001"]]


def test_too_many_members_or_name_bytes_are_refused(tmp_path):
    """The index is held in memory: an archive listing more members (or bytes of
    names) than the limits is refused, naming the first member past them; ImageNet's training
    archive is far inside the default limits."""
    from spikeflow.data.io import tar_index

    assert tar_index.MAX_MEMBERS >= 10 * 1_281_167 and tar_index.MAX_NAME_BYTES >= 10 * 45e6
    path = tmp_path / "many.tar"
    path.write_bytes(tar_bytes([(f"{k}.JPEG", b"x") for k in range(4)] + [("skip.txt", b"")]))
    keep = archives_module._image_filter(IMAGE_EXTENSIONS)
    assert len(index_tar(path, keep, max_members=4, max_name_bytes=24)) == 4
    with pytest.raises(DataFormatError, match=r"many\.tar: member 3\.JPEG: more than 3 "):
        index_tar(path, keep, max_members=3)
    with pytest.raises(DataFormatError, match=r"member 3\.JPEG: .*or 18 bytes of their"):
        index_tar(path, keep, max_name_bytes=18)


def test_the_index_holds_no_python_object_per_member(tmp_path, monkeypatch):
    """Built in arrays (a name blob and int64 offsets): the peak while indexing 4,000
    members is a few tens of bytes each (it was about 170 with a list entry, a string
    and ints per member), and sorting them into the archive index about twice the final
    arrays (it was about 450). Names are turned into Python objects 100 at a time here
    (their memory does not grow with the archive)."""
    monkeypatch.setattr(archives_module, "_CHUNK", 100)
    groups, each = 4, 1000
    template = tarfile.TarInfo("x")
    template.mtime = 0
    inner = []
    for g in range(groups):
        infos = []
        for k in range(each):
            template.name = f"n{g:08d}_{k}.JPEG"
            infos.append(template.tobuf(tarfile.GNU_FORMAT))
        inner.append((f"n{g:08d}.tar", b"".join(infos) + END))
    path = tmp_path / "nested.tar"
    path.write_bytes(tar_bytes(inner))
    n = groups * each
    tracemalloc.start()
    try:
        found = index_tar(path, nested=True)
        index_peak = tracemalloc.get_traced_memory()[1] / n
        del found
        tracemalloc.reset_peak()
        contents = archives_module._index(path, True, IMAGE_EXTENSIONS, (1, 1))
        sort_peak = tracemalloc.get_traced_memory()[1] / n
    finally:
        tracemalloc.stop()
    assert len(contents) == n and contents.names()[:3] == [
        f"n00000000.tar/n00000000_{k}.JPEG" for k in (0, 1, 10)]  # fmt: skip
    assert index_peak < 80 and sort_peak < 160, (index_peak, sort_peak)


def _order_of(names: list[bytes]) -> tuple[list[str], int]:
    blob = np.frombuffer(b"".join(names), np.uint8)
    bounds = np.concatenate([[0], np.cumsum([len(n) for n in names])]).astype(np.int64)
    order, same = archives_module._name_order(blob, bounds)
    return [os.fsdecode(names[i]) for i in order.tolist()], same


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="utf-8"),  # numpy's byte strings
        pytest.param([b"\xff.JPEG", b"a\xe9.JPEG"], id="undecodable"),  # Python strings
        pytest.param([b"a\xc3", b"\xa9b"], id="character-cut-between-names"),
        pytest.param([b"x\x00", b"x"], id="nul"),  # numpy's b"x\x00" == b"x"
        pytest.param([b"z" * 20_000], id="one-long-name"),  # n * width > 1 MiB,
    ],
)
def test_names_sort_as_python_strings(extra, monkeypatch):
    """The archive index sorts each inner tar's names as strings (the extracted
    folders' order), by numpy where the bytes are UTF-8, else as Python strings; a
    name twice is found either way."""
    monkeypatch.setattr(archives_module, "_CHUNK", 7)  # chunk edges inside the names
    rng = random.Random(3)
    alphabet = ["a", "b", "B", "Z", ".", "_", "0", "9", "é", "ü", "中", "\ufffd", "😀", "\x7f"]
    texts = {"".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(60)}
    names = [t.encode() for t in texts]
    rng.shuffle(names)
    names = extra + names  # side by side, in one chunk
    ordered, same = _order_of(names)
    assert ordered == sorted(os.fsdecode(n) for n in names) and same == -1
    ordered, same = _order_of([*names, names[5]])
    assert same >= 0 and ordered[same] == ordered[same + 1] == os.fsdecode(names[5])
    assert _order_of([]) == ([], -1)


def _edit_npz(path: Path, **arrays) -> None:
    with np.load(path) as npz:
        contents = {k: npz[k] for k in npz.files}
    contents.update(arrays)
    with open(path, "wb") as fh:
        np.savez(fh, **contents)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (dict(data_offsets=np.asarray([-512, 1536])), "byte ranges are not inside the archive"),
        (dict(data_offsets=np.asarray([512, 10**9])), "byte ranges are not inside the archive"),
        (dict(sizes=np.asarray([4, -1])), "byte ranges are not inside the archive"),
        (dict(data_offsets=np.asarray([512.0, 1536.0])), "data_offsets array is not a 1-D int64"),
        (dict(blob=np.asarray([1, 2])), "blob array is not a 1-D uint8"),
        (dict(offsets=np.asarray([0, 13, 12])), "arrays do not match"),
    ],
)
def test_a_damaged_or_hostile_index_cache_is_rebuilt(tmp_path, edit, message):
    """A cache file whose arrays are well-formed but point outside the archive (its
    offsets are read at) is refused like an unreadable one, and the archive indexed
    again."""
    archive = tmp_path / "flat.tar"
    archive.write_bytes(tar_bytes([("a.JPEG", b"abcd"), ("b.JPEG", b"efgh")]))
    backdate(archive)
    cache = tmp_path / "cache"
    first = archives_module.archive_contents(archive, False, IMAGE_EXTENSIONS, cache)
    (index,) = (cache / "tar-indexes").glob("*.npz")
    blob = np.frombuffer(b"a.JPEGb.JPEG", np.uint8)
    assert first.data_offsets.tolist() == [512, 1536]
    assert first.blob.tobytes() == blob.tobytes()
    _edit_npz(index, **edit)
    with pytest.warns(CacheCorruptionWarning, match=message):
        again = archives_module.archive_contents(archive, False, IMAGE_EXTENSIONS, cache)
    assert again.names() == ["a.JPEG", "b.JPEG"]
    assert again.data_offsets.tolist() == [512, 1536] and again.sizes.tolist() == [4, 4]
    assert archives_module.archive_contents(archive, False, IMAGE_EXTENSIONS, cache).names() == [
        "a.JPEG", "b.JPEG"]  # fmt: skip


def test_validation_numbers_are_ascii_digits(tmp_path):
    """``\\d`` matches any script's digits: ``ILSVRC2012_val_٠٠٠٠٠٠٠١.JPEG`` is not
    image 1."""
    name = "ILSVRC2012_val_" + "٠" * 7 + "١.JPEG"
    (tmp_path / VAL_TAR).write_bytes(tar_bytes([(name, jpeg(0, (8, 8)))]))
    write_devkit(tmp_path, VAL_LABELS[:1])
    with pytest.raises(DataFormatError, match="not an official validation file name"):
        ImageNet(tmp_path, train=False)


# -- Kaggle's layout ----------------------------------------------------------------------------

SOLUTION_HEADER = "ImageId,PredictionString\n"


def solution_rows() -> list[str]:
    """The solution file's rows, shuffled: each image's WNID and its boxes (the label is
    the first token: a second box of another class does not change it)."""
    rows = [f"ILSVRC2012_val_{n:08d},{WNIDS[label]} 10 20 110 120 "
            f"{WNIDS[(label + n % 2) % 1000]} 0 0 5 5 \n"
            for n, label in enumerate(VAL_LABELS, start=1)]  # fmt: skip
    random.Random(1).shuffle(rows)
    return rows


def mapping_text() -> str:
    """The mapping, in another order than sorted (labels follow the sorted WNIDs)."""
    lines = [f"{wnid} thing {wnid[-4:]}, alias\n" for wnid in WNIDS]
    random.Random(2).shuffle(lines)
    return "".join(lines)


@pytest.fixture(scope="module")
def kaggle(release, tmp_path_factory) -> Path:
    """Kaggle's download, unzipped: the same images under ILSVRC/Data/CLS-LOC/ (links
    to the extracted release's), the solution and mapping files."""
    root = tmp_path_factory.mktemp("kaggle")
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    data.mkdir(parents=True)
    (data / "train").symlink_to(release["folders"] / "train", target_is_directory=True)
    (data / "val").symlink_to(release["folders"] / "val", target_is_directory=True)
    (root / "LOC_val_solution.csv").write_text(SOLUTION_HEADER + "".join(solution_rows()))
    (root / "LOC_synset_mapping.txt").write_text(mapping_text())
    return root


def test_kaggle_layout_gives_the_same_samples_and_labels(release, kaggle):
    val = ImageNet(kaggle, train=False)
    assert val.source == "kaggle" and val.classes == tuple(WNIDS)
    assert val.targets == VAL_LABELS
    assert val.class_names is not None and val.class_names[7] == f"thing {WNIDS[7][-4:]}, alias"
    official = ImageNet(release["folders"], train=False)
    for i in range(len(val)):
        assert val.path(i).name == official.path(i).name
        pixel = np.asarray(val.load_image(i))[100, 120].astype(int)
        assert np.abs(pixel - colour(val.targets[i])).max() <= 3
    train = ImageNet(kaggle, train=True)
    extracted = ImageNet(release["folders"], train=True)
    assert train.source == "kaggle" and train.targets == extracted.targets
    assert [train.path(i).name for i in range(len(train))] == [
        extracted.path(i).name for i in range(len(extracted))]  # fmt: skip


def kaggle_copy(kaggle: Path, tmp_path: Path) -> Path:
    root = tmp_path / "kaggle"
    shutil.copytree(kaggle, root, symlinks=True)
    return root


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("LOC_val_solution.csv", "Image,Labels\n", r"LOC_val_solution\.csv: line 1: header"),
        (
            "LOC_val_solution.csv",
            SOLUTION_HEADER + "ILSVRC2012_val_00000001\n",
            r"LOC_val_solution\.csv: line 2: 'ILSVRC2012_val_00000001' is not",
        ),
        (
            "LOC_val_solution.csv",
            SOLUTION_HEADER + "x,n01440764 1 2 3 4\n,n01440764 1\n",
            r"LOC_val_solution\.csv: line 3: ',n01440764 1' is not",
        ),
        (
            "LOC_val_solution.csv",
            SOLUTION_HEADER + "\nx,dog 1 2 3 4\n",
            r"LOC_val_solution\.csv: line 3: 'x,dog 1 2 3 4' is not",
        ),
        (
            "LOC_val_solution.csv",
            SOLUTION_HEADER + "x,n00000001 1 2 3 4\n",
            r"LOC_val_solution\.csv: line 2: WNID n00000001 is not one of the 1000 classes",
        ),
        (
            "LOC_val_solution.csv",
            SOLUTION_HEADER + f"x,{WNIDS[0]} 1\nx,{WNIDS[1]} 2\n",
            r"LOC_val_solution\.csv: line 3: ImageId x appears twice",
        ),
        (
            "LOC_synset_mapping.txt",
            "n01440764 tench\nn01443537\n",
            r"LOC_synset_mapping\.txt: line 2: 'n01443537' is not '<wnid> <words>'",
        ),
        (
            "LOC_synset_mapping.txt",
            "n01440764 tench\n\nwnid words\n",
            r"LOC_synset_mapping\.txt: line 3: 'wnid words' is not",
        ),
        (
            "LOC_synset_mapping.txt",
            "n01440764 tench\nn01440764 tench\n",
            r"LOC_synset_mapping\.txt: line 2: WNID n01440764 appears twice",
        ),
        (
            "LOC_synset_mapping.txt",
            "n01440764 tench\n",
            r"LOC_synset_mapping\.txt: 1 synsets; "
            "expected 1000",
        ),
    ],
)
def test_malformed_kaggle_files_name_file_and_line(kaggle, tmp_path, name, text, message):
    root = kaggle_copy(kaggle, tmp_path)
    (root / name).write_text(text)
    with pytest.raises(DataFormatError, match=message):
        ImageNet(root, train=False)


def test_kaggle_files_with_a_bom_crlf_and_quotes_are_read(tmp_path):
    """What a spreadsheet program saves: a byte-order mark before a quoted header, CRLF,
    quoted fields; a tab after the mapping's WNID."""
    solution = tmp_path / "LOC_val_solution.csv"
    text = '\ufeff"ImageId","PredictionString"\r\n"a","n01440764 1 2 3 4"\r\nb,n01443537 5\r\n'
    solution.write_bytes(text.encode())
    assert archives_module.read_val_solution(solution) == {"a": "n01440764", "b": "n01443537"}
    mapping = tmp_path / "LOC_synset_mapping.txt"
    mapping.write_bytes("\ufeffn01440764 tench, Tinca tinca\r\nn01443537\tgoldfish\r\n".encode())
    assert archives_module.read_synset_mapping(mapping, classes=2) == {
        "n01440764": "tench, Tinca tinca", "n01443537": "goldfish"}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("s.csv", SOLUTION_HEADER + 'x,"n01440764 1 2\n', r"s\.csv: line 2: unexpected end"),
        ("s.csv", SOLUTION_HEADER + "x,n٠١٤٤٠٧٦٤ 1\n", r"s\.csv: line 2: 'x,n٠١٤٤٠٧٦٤ 1' is not"),
        ("m.txt", "n٠١٤٤٠٧٦٤ fish\n", r"m\.txt: line 1: 'n٠١٤٤٠٧٦٤ fish' is not '<wnid>"),
    ],
)
def test_kaggle_files_cut_short_or_with_foreign_digits_are_refused(tmp_path, name, text, message):
    (tmp_path / name).write_text(text, encoding="utf-8")
    read = archives_module.read_val_solution if name.endswith(".csv") else functools.partial(
        archives_module.read_synset_mapping, classes=1)  # fmt: skip
    with pytest.raises(DataFormatError, match=message):
        read(tmp_path / name)


@pytest.mark.parametrize("name", ["s.csv", "m.txt"])
def test_kaggle_files_not_utf8_name_the_byte_offset(tmp_path, name):
    body = SOLUTION_HEADER + "x,n01440764 1\n" if name.endswith(".csv") else "n01440764 f\n"
    (tmp_path / name).write_bytes("\ufeff".encode() + body.encode() + b"\xff\n")
    read = archives_module.read_val_solution if name.endswith(".csv") else functools.partial(
        archives_module.read_synset_mapping, classes=1)  # fmt: skip
    offset = 3 + len(body.encode())
    with pytest.raises(DataFormatError, match=rf"{name}: byte offset {offset}: not UTF-8 text"):
        read(tmp_path / name)


def test_kaggle_validation_errors_are_named(kaggle, tmp_path):
    root = kaggle_copy(kaggle, tmp_path)
    solution = root / "LOC_val_solution.csv"
    rows = solution_rows()
    solution.write_text(SOLUTION_HEADER + "".join(rows[:-1]))
    with pytest.raises(DataFormatError, match=r"ILSVRC2012_val_\d{8}\.JPEG: has no row in "
                                              r".*LOC_val_solution\.csv \(1 image"):  # fmt: skip
        ImageNet(root, train=False)
    extra = f"ILSVRC2012_val_00000011,{WNIDS[4]} 1 2 3 4\n"
    solution.write_text(SOLUTION_HEADER + "".join(rows) + extra)
    message = r"csv labels 11 images, .* holds 10; missing \['ILSVRC2012_val_00000011'\]"
    with pytest.raises(DataFormatError, match=message):
        ImageNet(root, train=False)
    solution.unlink()
    with pytest.raises(DatasetNotFoundError, match="Kaggle's flat validation layout needs"):
        ImageNet(root, train=False)
    mapping = root / "LOC_synset_mapping.txt"
    mapping.write_text(mapping_text().replace(WNIDS[9], "n99999999"))
    message = r"CLS-LOC/train: the class folders are not the 1,000 WNIDs of LOC_synset_mapping\.txt"
    with pytest.raises(DataFormatError, match=message):
        ImageNet(root, train=True)
    write_devkit(root, VAL_LABELS)
    with pytest.raises(DataFormatError, match=r"LOC_synset_mapping\.txt: its WNIDs are not "
                                              "the devkit's"):  # fmt: skip
        ImageNet(root, train=True)
