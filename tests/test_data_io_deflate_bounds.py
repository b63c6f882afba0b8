"""A deflate-compressed part of a file (an ``.npz`` member, a MAT v5 miCOMPRESSED
element) that declares more bytes than deflate can produce from its compressed bytes
(1032 per byte: a 258-byte match costs at least 2 bits) is refused before it is
decompressed, naming the file, the member or offset and both sizes; honest files, even
at deflate's best ratio, still read."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from conftest import require_shared_data
from spikeflow.data.datasets.nerdd import read_nerdd_events
from spikeflow.data.io import read_hardvs, read_stmnist
from spikeflow.errors import DataFormatError

CENTRAL = b"PK\x01\x02"


def central_sizes(raw: bytes, member: str) -> tuple[int, int, int]:
    """``(position of member's central header, compressed size, declared size)``."""
    pos = raw.find(CENTRAL)
    while pos >= 0:
        name_len = int.from_bytes(raw[pos + 28 : pos + 30], "little")
        if raw[pos + 46 : pos + 46 + name_len] == member.encode():
            packed, declared = struct.unpack_from("<II", raw, pos + 20)
            return pos, packed, declared
        pos = raw.find(CENTRAL, pos + 4)
    raise AssertionError(f"no member {member}")


def with_declared(raw: bytes, member: str, declared: int) -> bytes:
    """``raw`` with ``member``'s uncompressed size in the central directory set."""
    pos = central_sizes(raw, member)[0]
    return raw[: pos + 24] + struct.pack("<I", declared) + raw[pos + 28 :]


def hardvs_npz(path, n: int, compressed: bool) -> None:
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 10**6, n))
    x, y, p = rng.integers(0, 346, n), rng.integers(0, 260, n), rng.integers(0, 2, n)
    (np.savez_compressed if compressed else np.savez)(path, t=t, x=x, y=y, p=p)


def test_an_npz_member_declaring_more_than_deflate_can_hold_is_refused(tmp_path):
    path = tmp_path / "sample.npz"
    hardvs_npz(path, 100_000, compressed=True)
    valid = path.read_bytes()
    assert len(read_hardvs(path)) == 100_000
    _, packed, declared = central_sizes(valid, "x.npy")
    assert declared <= 1032 * packed
    path.write_bytes(with_declared(valid, "x.npy", 1032 * packed + 1))
    with pytest.raises(DataFormatError) as info:
        read_hardvs(path)
    message = str(info.value)
    assert message.startswith(f"{path} at byte offset "), message
    assert f"ZIP member 'x.npy' declares {1032 * packed + 1} bytes, more than its {packed} " in (
        message
    )


def test_a_stored_npz_member_declaring_another_size_is_refused(tmp_path):
    path = tmp_path / "sample.npz"
    hardvs_npz(path, 1000, compressed=False)
    valid = path.read_bytes()
    _, packed, _ = central_sizes(valid, "t.npy")
    path.write_bytes(with_declared(valid, "t.npy", 2**32 - 1))
    with pytest.raises(DataFormatError, match=r"at byte offset 0: ZIP member 't\.npy' is stored "
                       rf"uncompressed in {packed} bytes but declares 4294967295"):  # fmt: skip
        read_hardvs(path)


def test_an_npz_at_deflates_best_ratio_still_reads(tmp_path):
    # Zeros compress about as well as deflate allows: the bound must not refuse them.
    path = tmp_path / "zeros.npz"
    n = 2_000_000
    np.savez_compressed(path, t=np.zeros(n, np.int64), x=np.zeros(n, np.int16),
                        y=np.zeros(n, np.int16), p=np.zeros(n, np.int8))  # fmt: skip
    _, packed, declared = central_sizes(path.read_bytes(), "t.npy")
    assert declared > 900 * packed  # near the bound
    rec = read_hardvs(path)
    assert len(rec) == n and int(rec.events["t"].max()) == 0


def test_a_nerdd_npz_declaring_too_much_is_refused(tmp_path):
    path = tmp_path / "output_events.npz"
    rng = np.random.default_rng(1)
    n = 50_000
    data = np.stack([rng.integers(0, 1280, n), rng.integers(0, 720, n), rng.integers(0, 2, n),
                     np.sort(rng.integers(0, 10**6, n))], axis=1)  # fmt: skip
    np.savez_compressed(path, data=data)
    assert len(read_nerdd_events(path)) == n
    raw = path.read_bytes()
    path.write_bytes(with_declared(raw, "data.npy", 2**32 - 1))
    with pytest.raises(DataFormatError, match=r"ZIP member 'data\.npy' declares 4294967295 "):
        read_nerdd_events(path)


def forged_mat(raw: bytes, declared: int) -> bytes:
    """The MAT file ``raw`` (one miCOMPRESSED element) recompressed with its matrix tag
    declaring ``declared`` bytes after the tag."""
    size = struct.unpack_from("<I", raw, 132)[0]
    inner = zlib.decompress(raw[136 : 136 + size])
    payload = zlib.compress(inner[:4] + struct.pack("<I", declared) + inner[8:], 9)
    return raw[:128] + struct.pack("<II", 15, len(payload)) + payload


def test_a_mat_compressed_element_declaring_more_than_deflate_can_hold_is_refused(tmp_path):
    real = require_shared_data("event-files", "stmnist-mat", "sample_stmnist.mat")
    raw = real.read_bytes()
    assert struct.unpack_from("<I", raw, 128)[0] == 15  # miCOMPRESSED
    assert len(read_stmnist(real)) > 0  # the real file reads
    path = tmp_path / "forged.mat"
    true_size = len(zlib.decompress(raw[136:])) - 8
    path.write_bytes(forged_mat(raw, true_size))
    assert len(read_stmnist(path)) == len(read_stmnist(real))  # recompressed honestly: reads
    forged = forged_mat(raw, 2**32 - 9)
    path.write_bytes(forged)
    payload = len(forged) - 136
    with pytest.raises(DataFormatError) as info:
        read_stmnist(path)
    assert str(info.value) == (
        f"{path} at byte offset 128: compressed element's matrix tag declares 4294967295 "
        f"bytes, more than its {payload} zlib bytes can hold (1032 per compressed byte at most)"
    )


def rezipped(source, path, method: int) -> None:
    """The members of the ``.npz`` ``source`` written again to ``path`` with ZIP
    compression ``method`` (as a zip tool other than numpy may write them)."""
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w", method) as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info))


@pytest.mark.parametrize("method, name", [(12, "bzip2"), (14, "LZMA")])
def test_npz_members_compressed_with_bzip2_or_lzma_are_refused_by_name(tmp_path, method, name):
    """bzip2 and LZMA members (no bound on their expansion: zipfile decompresses a
    chunk of one whole) are refused before a byte is decompressed, naming the member and
    the method; numpy's own stored and deflate files still read."""
    source = tmp_path / "numpy.npz"
    hardvs_npz(source, 2000, compressed=True)
    path = tmp_path / "rezipped.npz"
    rezipped(source, path, method)
    with pytest.raises(DataFormatError) as info:
        read_hardvs(path)
    assert str(info.value).startswith(f"{path} at byte offset 0: ZIP member 't.npy' uses "
                                      f"compression method {method} ({name}); only stored "
                                      "and deflate members are read")  # fmt: skip
    nerdd = tmp_path / "output_events.npz"
    np.savez(tmp_path / "plain.npz", data=np.array([[1, 2, 1, 5], [3, 4, 0, 9]]))
    rezipped(tmp_path / "plain.npz", nerdd, method)
    with pytest.raises(DataFormatError, match=rf"ZIP member 'data\.npy' uses compression "
                       rf"method {method} \({name}\)"):  # fmt: skip
        read_nerdd_events(nerdd)
    rezipped(source, path, 8)  # deflate, written by zipfile: reads
    assert len(read_hardvs(path)) == 2000 and len(read_nerdd_events(tmp_path / "plain.npz")) == 2


def test_an_npy_and_an_npz_each_given_for_the_other_are_named(tmp_path):
    """NeRDD's events are an ``.npz`` and Prophesee's boxes an ``.npy``; each read of
    the other kind is a DataFormatError naming the file (was: a TypeError, since an
    array has no ``with``; an AttributeError of the lazily opened NpzFile)."""
    from spikeflow.data.datasets.prophesee_detection import read_bbox_npy

    events = np.array([[1, 2, 1, 5], [3, 4, 0, 9]])
    np.save(tmp_path / "array.npy", events)
    (tmp_path / "output_events.npz").write_bytes((tmp_path / "array.npy").read_bytes())
    with pytest.raises(DataFormatError, match=r"output_events\.npz at byte offset 0: an \.npy "
                       r"array, not an \.npz archive"):  # fmt: skip
        read_nerdd_events(tmp_path / "output_events.npz")
    np.savez(tmp_path / "zipped.npz", data=events)
    (tmp_path / "boxes_bbox.npy").write_bytes((tmp_path / "zipped.npz").read_bytes())
    with pytest.raises(DataFormatError, match=r"boxes_bbox\.npy at byte offset 0: an \.npz "
                       r"archive, not an \.npy box file"):  # fmt: skip
        read_bbox_npy(tmp_path / "boxes_bbox.npy")
    assert len(read_nerdd_events(tmp_path / "zipped.npz")) == 2
