"""The MAT v5 struct/cell/char reader (spikeflow.data.io.matlab_struct) against scipy's
reader on files scipy writes (compressed or not), on bytes written here by hand with
UTF-16 characters and big-endian numbers (MATLAB's other encodings), and on every
truncation and many byte flips of a file: a DataFormatError or the right value,
nothing else."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from spikeflow.data.io.matlab_struct import read_mat_variable
from spikeflow.errors import DataFormatError

sio = pytest.importorskip("scipy.io", reason="scipy writes the reference files")


def synsets_array() -> np.ndarray:
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O"),
              ("children", "O"), ("extra", "O")]  # fmt: skip
    array = np.zeros((1, 3), dtype=fields)
    array[0, 0] = (1.0, "n01440764", "tench, Tinca tinca", 0.0, np.zeros((1, 0)),
                   np.array(["ab", "cd"]))  # fmt: skip
    array[0, 1] = (2.0, "n01443537", "goldfish, Carassius auratus", 0.0, np.zeros((1, 0)),
                   np.int16([[1, 2, 3], [4, 5, 6]]))  # fmt: skip
    array[0, 2] = (1001.0, "n00001740", "entité, 实体", 2.0, np.array([[1.0, 2.0]]),
                   np.array([True, False]))  # fmt: skip
    return array


def scipy_bytes(compress: bool) -> bytes:
    buffer = io.BytesIO()
    sio.savemat(buffer, {"before": np.arange(5.0), "synsets": synsets_array(),
                         "cells": np.array([["x", np.eye(2)]], dtype=object)},
                do_compression=compress)  # fmt: skip
    return buffer.getvalue()


@pytest.mark.parametrize("compress", [False, True])
def test_struct_array_equals_scipys_reading(compress):
    data = scipy_bytes(compress)
    ours = read_mat_variable(data, "synsets", "meta.mat")
    theirs = sio.loadmat(io.BytesIO(data))["synsets"][0]
    assert len(ours) == len(theirs) == 3
    for mine, ref in zip(ours, theirs):
        assert list(mine) == list(ref.dtype.names)
        assert mine["WNID"] == str(ref["WNID"][0]) and mine["words"] == str(ref["words"][0])
        for key in ("ILSVRC2012_ID", "num_children", "children"):
            np.testing.assert_array_equal(mine[key], ref[key])
            assert mine[key].dtype == ref[key].dtype
    assert ours[0]["extra"] == ("ab", "cd")  # a 2 x 2 char matrix: its rows
    np.testing.assert_array_equal(ours[1]["extra"], [[1, 2, 3], [4, 5, 6]])
    assert ours[1]["extra"].dtype == np.int16
    assert ours[2]["extra"].dtype == bool and ours[2]["words"] == "entité, 实体"
    cells = read_mat_variable(data, "cells", "meta.mat")
    assert cells[0] == "x" and np.array_equal(cells[1], np.eye(2))
    np.testing.assert_array_equal(read_mat_variable(data, "before", "m"), [[0, 1, 2, 3, 4]])


# -- bytes written by hand: UTF-16 characters, byte order, MATLAB's empty [] ---------------


def element(order: str, kind: int, payload: bytes) -> bytes:
    return struct.pack(order + "II", kind, len(payload)) + payload + bytes(-len(payload) % 8)


def matrix(order: str, mclass: int, dims: tuple[int, ...], name: str, *parts: bytes) -> bytes:
    body = (element(order, 6, struct.pack(order + "II", mclass, 0))
            + element(order, 5, struct.pack(f"{order}{len(dims)}i", *dims))
            + element(order, 1, name.encode()) + b"".join(parts))  # fmt: skip
    return struct.pack(order + "II", 14, len(body)) + body


def utf16_chars(order: str, text: str) -> bytes:
    codec = "utf-16-le" if order == "<" else "utf-16-be"
    return matrix(order, 4, (1, len(text)), "", element(order, 4, text.encode(codec)))


def double(order: str, value: float) -> bytes:
    return matrix(order, 6, (1, 1), "", element(order, 9, struct.pack(order + "d", value)))


def handmade_file(order: str, compress: bool) -> bytes:
    fields = ["WNID", "words", "ILSVRC2012_ID", "children"]
    width = 16
    names = b"".join(f.encode().ljust(width, b"\0") for f in fields)
    rows = [("n02084071", "dog, domestic dog", 7.0), ("n02121808", "chat, Felis catus", 8.0)]
    values = b"".join(utf16_chars(order, w) + utf16_chars(order, t) + double(order, i)
                      + struct.pack(order + "II", 14, 0)  # MATLAB's [] in a field
                      for w, t, i in rows)  # fmt: skip
    body = matrix(order, 2, (2, 1), "synsets", element(order, 5, struct.pack(order + "i", width)),
                  element(order, 1, names), values)  # fmt: skip
    if compress:
        packed = zlib.compress(body)
        body = struct.pack(order + "II", 15, len(packed)) + packed
    indicator = b"IM" if order == "<" else b"MI"
    header = b"MATLAB 5.0 MAT-file, written by hand".ljust(116) + bytes(8)
    return header + struct.pack(order + "H", 0x0100) + indicator + body


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("compress", [False, True])
def test_utf16_chars_empty_fields_and_both_byte_orders(order, compress):
    data = handmade_file(order, compress)
    ours = read_mat_variable(data, "synsets", "meta.mat")
    read = [(s["WNID"], s["words"], float(s["ILSVRC2012_ID"][0, 0])) for s in ours]
    assert read == [
        ("n02084071", "dog, domestic dog", 7.0),
        ("n02121808", "chat, Felis catus", 8.0),
    ]
    assert ours[0]["children"].shape == (0, 0)
    if order == "<":  # scipy reads what this test wrote (the writer is right)
        ref = sio.loadmat(io.BytesIO(data))["synsets"]
        assert str(ref[1, 0]["words"][0]) == "chat, Felis catus"


# -- corrupt files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:100], "truncated: 100 bytes"),
        (lambda d: b"NOTMAT" + d[6:], "not a MAT-file"),
        (lambda d: d[:126] + b"XX" + d[128:], "endian indicator"),
        (lambda d: d[:124] + b"\x00\x02" + d[126:], "MAT version 0x0200"),
        (lambda d: d + struct.pack("<II", 3, 0), "top-level data element of type 3"),
    ],
)
def test_corrupt_headers_are_named(mutate, message):
    with pytest.raises(DataFormatError, match=message):
        read_mat_variable(mutate(scipy_bytes(False)), "synsets", "meta.mat")


# The matrix header of handmade_file("<", False): the miMATRIX tag at 128, then the
# array flags element at 136, the dimensions (2, 1) at 152 and the name at 168.
@pytest.mark.parametrize(
    ("at", "fmt", "value", "offset", "message"),
    [
        (136, "<I", 16, 136, "array flags of type 16 and 8 bytes, expected miUINT32 (6)"),
        (140, "<I", 4, 136, "array flags of type 6 and 4 bytes, expected miUINT32 (6)"),
        (156, "<I", 132, 152, "dimensions of type 5 and 132 bytes, expected miINT32 (5) "
                              "and 2 to 32 values"),
        (160, "<i", -2, 152, "negative dimension in [-2, 1]"),
        (168, "<I", 2, 168, "array name of type 2, expected miINT8 (1)"),
    ],
    ids=["flags-type", "flags-size", "too-many-dims", "negative-dim", "name-type"],
)  # fmt: skip
def test_corrupt_matrix_headers_name_the_element(at, fmt, value, offset, message):
    data = bytearray(handmade_file("<", False))
    assert data[128:140] == struct.pack("<III", 14, len(data) - 136, 6)  # the layout above
    struct.pack_into(fmt, data, at, value)
    with pytest.raises(DataFormatError) as info:
        read_mat_variable(bytes(data), "synsets", "meta.mat")
    assert str(info.value).startswith(f"meta.mat at byte offset {offset}: {message}"), info.value


def test_a_missing_variable_and_an_unsupported_class_are_named():
    with pytest.raises(DataFormatError, match=r"meta\.mat: no variable 'synset'"):
        read_mat_variable(scipy_bytes(True), "synset", "meta.mat")
    buffer = io.BytesIO()
    from scipy.sparse import csc_matrix

    sio.savemat(buffer, {"s": csc_matrix(np.eye(3))})
    with pytest.raises(DataFormatError, match="a sparse array, which this reader does not"):
        read_mat_variable(buffer.getvalue(), "s", "x.mat")


@pytest.mark.parametrize("compress", [False, True])
def test_every_truncation_and_byte_flip_is_an_error_or_the_value(compress):
    data = scipy_bytes(compress)
    expected = read_mat_variable(data, "synsets", "m")
    for cut in range(0, len(data), 7):
        with pytest.raises(DataFormatError):
            read_mat_variable(data[:cut], "synsets", "m")
    rng = np.random.default_rng(1)
    outcomes = set()
    for _ in range(400):
        flipped = bytearray(data)
        at = int(rng.integers(128, len(data)))
        flipped[at] ^= int(rng.integers(1, 256))
        try:
            value = read_mat_variable(bytes(flipped), "synsets", "m")
        except DataFormatError:
            outcomes.add("error")
            continue
        outcomes.add("read")
        assert isinstance(value, list | np.ndarray | str | tuple)
        if isinstance(value, list) and len(value) == len(expected):
            assert all(isinstance(v, dict) for v in value)
    assert "error" in outcomes


def test_of_two_variables_with_one_name_the_last_is_read():
    """MATLAB's and scipy's loaders keep the last variable of a repeated name."""
    header = b"MATLAB 5.0 MAT-file, written by hand".ljust(116) + bytes(8)
    header += struct.pack("<H", 0x0100) + b"IM"

    def named_double(name: str, value: float) -> bytes:
        return matrix("<", 6, (1, 1), name, element("<", 9, struct.pack("<d", value)))

    data = header + named_double("x", 1.0) + named_double("y", 5.0) + named_double("x", 2.0)
    assert float(np.asarray(read_mat_variable(data, "x", "dup.mat")).reshape(-1)[0]) == 2.0
    assert float(np.asarray(read_mat_variable(data, "y", "dup.mat")).reshape(-1)[0]) == 5.0
