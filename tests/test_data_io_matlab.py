"""The MAT v5 container check in front of scipy (spikeflow.data.io._matv5).

scipy's Cython MAT reader indexes a table of 20 dtypes with each numeric element's type
code, unchecked: a mutated code (an audit found 76 in an ASL-DVS file) killed the
process with SIGSEGV. The reproducer below builds that mutation from a valid file
written here and runs the reader in a worker process (so, without the check, the test
fails instead of killing pytest). The other tests run in-process: every malformed
structure must be a DataFormatError naming the file, the byte offset and the problem.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from spikeflow.data.io import read_asl_dvs, read_stmnist
from spikeflow.errors import DataFormatError
from test_data_io_fuzz import IsolatedReaders, mat_elements, mat_file

scipy_io = pytest.importorskip("scipy.io")

N = 6
ARRAYS = {
    "x": np.arange(N).reshape(N, 1) * 7,
    "y": np.arange(N).reshape(N, 1) * 3,
    "ts": np.arange(N).reshape(N, 1) * 100,
    "pol": (np.arange(N) % 2).reshape(N, 1),
}


def asl_bytes(tmp: Path, extra: dict | None = None, compress: bool = False) -> bytes:
    scipy_io.savemat(tmp / "valid.mat", {**ARRAYS, **(extra or {})}, do_compression=compress)
    return (tmp / "valid.mat").read_bytes()


def name_element(raw: bytes, name: str) -> int:
    """Offset of the (small-format) name element of variable ``name``."""
    tag = struct.pack("<HH", 1, len(name)) + name.encode()
    return raw.index(tag + bytes(4 - len(name)))


def write(tmp: Path, data: bytes) -> Path:
    path = tmp / "sample.mat"
    path.write_bytes(data)
    return path


def expect_error(path: Path, offset: int, match: str) -> None:
    with pytest.raises(DataFormatError, match=match) as info:
        read_asl_dvs(path)
    assert str(info.value).startswith(f"{path} at byte offset {offset}: "), str(info.value)


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    readers = IsolatedReaders(tmp_path_factory.mktemp("worker") / "stderr.txt")
    yield readers
    readers.close()


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
@pytest.mark.parametrize("code", [76, 0, 8, 10, 11, 14, 15, 19, 20, 31, 255, 65535])
def test_audit_reproducer_type_code_without_dtype(isolated, tmp_path, code, compress):
    """The audit's crash: the real part of ``ts`` tagged with type 76 (and every other
    code scipy has no dtype for; 31 and 32 read a neighbouring table out of bounds)."""
    raw = bytearray(asl_bytes(tmp_path))
    tag = name_element(raw, "ts") + 8  # the real part's tag follows the name element
    assert struct.unpack_from("<I", raw, tag)[0] in (1, 2, 3, 4, 5, 6, 12, 13)
    raw[tag : tag + 4] = struct.pack("<I", code)
    if compress:
        raw = mat_file(bytes(raw[:128]), mat_elements(bytes(raw)), compress=True)
    path = write(tmp_path, bytes(raw))
    status, message = isolated.read("asl", path)
    assert status == "rejected", (status, message)
    if compress:  # the third variable's compressed element; offset inside its data
        start = 128
        for _ in range(2):
            start += 8 + struct.unpack_from("<I", raw, start + 4)[0]
        where = f"at byte offset {start}: in the compressed element, at offset 48 of"
    else:
        where = f"at byte offset {tag}:"
    assert message.startswith(f"{path} {where}"), message
    assert f"'ts' real part has data type {code}, which is not a numeric MAT type" in message


def test_valid_files_plain_compressed_and_with_other_variables(tmp_path):
    want = read_asl_dvs(write(tmp_path, asl_bytes(tmp_path))).events
    assert want["x"].tolist() == ARRAYS["x"].ravel().tolist()
    others = {"note": "text", "cells": np.array([1, "a"], dtype=object), "s": {"a": 1}}
    for compress in (False, True):
        raw = asl_bytes(tmp_path, others, compress)
        np.testing.assert_array_equal(read_asl_dvs(write(tmp_path, raw)).events, want)


@pytest.mark.parametrize(
    "mutate,offset,match",
    [
        (lambda r: r[:100], 100, "truncated: 100 bytes, a MAT-file header has 128"),
        (lambda r: r[:126] + b"XX" + r[128:], 126, "endian indicator b'XX'"),
        (lambda r: r[:124] + b"\x00\x02" + r[126:], 124, "MAT version 0x0200"),
        (lambda r: r[:128] + struct.pack("<I", 9) + r[132:], 128, "top-level .* type 9"),
        (lambda r: r[:132] + struct.pack("<I", 10**6) + r[136:], 128, "of 1000000 bytes, only"),
        (lambda r: r + b"\x0e\x00\x00", "END", "truncated data element tag"),
    ],
    ids=["short-header", "endian", "version", "top-type", "top-size", "trailing"],
)  # fmt: skip
def test_malformed_container(tmp_path, mutate, offset, match):
    raw = asl_bytes(tmp_path)
    expect_error(write(tmp_path, mutate(raw)), len(raw) if offset == "END" else offset, match)


def test_malformed_matrix_headers_and_data(tmp_path):
    raw = asl_bytes(tmp_path)
    name = name_element(raw, "y")
    matrix, flags, dims = name - 40, name - 32, name - 16

    def patched(at: int, value: int, fmt: str = "<I") -> Path:
        data = bytearray(raw)
        data[at : at + struct.calcsize(fmt)] = struct.pack(fmt, value)
        return write(tmp_path, bytes(data))

    expect_error(patched(flags, 16), flags, "array flags of type 16")
    expect_error(patched(flags + 4, 4), flags, "array flags of type 6 and 4 bytes")
    expect_error(patched(dims + 8, -3, "<i"), dims, r"negative dimension in \[-3, 1\]")
    expect_error(patched(dims + 4, 4), dims, "dimensions of type 5 and 4 bytes")
    expect_error(
        patched(dims + 8, N + 1, "<i"), name + 8, rf"holds {8 * N} bytes, expected {N + 1} values"
    )
    expect_error(patched(name, 2, "<H"), name, "array name of type 2")
    expect_error(patched(name + 8 + 4, 10**6), name + 8, "the tag says 1000000 bytes")
    expect_error(patched(matrix + 4, 16), dims, "truncated dimensions tag: 8 tag bytes needed, 0")
    expect_error(patched(flags + 8, 1), matrix, "variable 'y' is a cell array")
    complex_flag = struct.unpack_from("<I", raw, flags + 8)[0] | 1 << 11
    imaginary = name + 8 + 8 + 8 * N  # after the real part: no room left in the matrix
    expect_error(patched(flags + 8, complex_flag), imaginary, "truncated 'y' imaginary part tag")


def test_malformed_compressed_elements(tmp_path):
    raw = asl_bytes(tmp_path, compress=True)
    size = struct.unpack_from("<I", raw, 132)[0]
    first = raw[136 : 136 + size]

    def with_first(payload: bytes) -> Path:
        head = struct.pack("<II", 15, len(payload))
        return write(tmp_path, raw[:128] + head + payload + raw[136 + size :])

    expect_error(with_first(b"\x78\x9c not zlib"), 128, "corrupt compressed element: zlib")
    expect_error(with_first(first[:-9]), 128, "does not end")
    element = zlib.decompress(first)
    expect_error(with_first(zlib.compress(element + bytes(8))), 128, "decompresses to more")
    shorter = element[:4] + struct.pack("<I", len(element)) + element[8:]
    expect_error(with_first(zlib.compress(shorter)), 128, rf"says {len(element) + 8}")
    expect_error(with_first(zlib.compress(b"\x05\x00\x00\x00")), 128, "less than one 8-byte")
    bomb = struct.pack("<II", 14, 1 << 30) + bytes(1 << 20)
    # refused before inflating: 1 GiB is more than 1032 times its ~1 KB of zlib bytes
    expect_error(with_first(zlib.compress(bomb, 9)), 128, "declares 1073741832 bytes, more than")


def test_real_compressed_stmnist_unchanged():
    from conftest import require_shared_data

    path = require_shared_data("event-files", "stmnist-mat", "sample_stmnist.mat")
    rec = read_stmnist(path)
    spikes = scipy_io.loadmat(path)["spiketrain"]  # the file is valid: scipy reads it
    assert len(rec) == int(np.count_nonzero(spikes[:100]))


def test_asl_dvs_without_a_sensor_size_infers_it_as_the_other_readers(tmp_path):
    """``sensor_size=None``, which the argument check accepts, takes the largest
    coordinates plus one (as read_numpy_events, read_dat, ...; a bare TypeError from
    unpacking None before); a file without events then has no size and is named."""
    path = write(tmp_path, asl_bytes(tmp_path))
    rec = read_asl_dvs(path, None)
    width, height = int(ARRAYS["x"].max()) + 1, int(ARRAYS["y"].max()) + 1
    assert rec.sensor_size == (width, height, 2) == (36, 16, 2)
    np.testing.assert_array_equal(rec.events, read_asl_dvs(path).events)
    assert read_asl_dvs(path, [40, 20]).sensor_size == (40, 20, 2)
    empty = {k: np.zeros((0, 1), np.int64) for k in ARRAYS}
    scipy_io.savemat(tmp_path / "empty.mat", empty)
    assert read_asl_dvs(tmp_path / "empty.mat").sensor_size == (240, 180, 2)
    with pytest.raises(DataFormatError, match=r"empty\.mat.*no events.*sensor size is unknown"):
        read_asl_dvs(tmp_path / "empty.mat", None)
