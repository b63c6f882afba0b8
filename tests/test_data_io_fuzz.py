"""Fuzzing every decoder with hypothesis: random bytes and mutations of valid files.

A decoder may return events or raise DataFormatError (or MissingExtraError for an
absent optional package) -- nothing else: no IndexError, struct.error, numpy error,
hang or out-of-bounds read. Inputs are kept small so every example runs in
milliseconds. Seeds are the synthetic files of test_data_io_synthetic.py and, when
../shared/data is present, the real samples (or their first kilobytes).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SHARED_DATA
from spikeflow.data import EVENT_DTYPE
from spikeflow.data.io import (
    decode_aedat2,
    decode_aedat4,
    decode_aedat31,
    decode_atis_bin,
    decode_bs1,
    decode_dat,
    decode_evt2,
    decode_evt3,
    read_es_imagenet,
    read_numpy_events,
    read_stmnist,
)
from spikeflow.errors import DataFormatError, MissingExtraError
from test_data_io_synthetic import (
    AEDAT31_HEADER,
    aedat2_file,
    aedat4_file,
    aedat31_packet,
    fb_event_packet,
    polarity,
)

ALLOWED = (DataFormatError, MissingExtraError)
#: More examples for a long local run: SPIKEFLOW_FUZZ_EXAMPLES=5000 (pytest this file)
EXAMPLES = int(os.environ.get("SPIKEFLOW_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
EF = SHARED_DATA / "event-files"


def real(relative: str, limit: int | None = None) -> list[bytes]:
    path = EF / relative
    if not path.exists():
        return []
    data = path.read_bytes()
    return [data[:limit] if limit else data]


def synthetic_aedat4() -> list[bytes]:
    packet = fb_event_packet([(1, 2, 3, True), (4, 5, 6, False), (4, 63, 47, True)])
    seeds = [aedat4_file([packet, fb_event_packet([])])]
    try:
        import lz4.frame

        seeds.append(aedat4_file([lz4.frame.compress(packet)], 1))
    except ImportError:
        pass
    try:
        import zstandard

        seeds.append(aedat4_file([zstandard.ZstdCompressor().compress(packet)], 3))
    except ImportError:
        pass
    return seeds


def atis_events(n: int) -> bytes:
    return b"".join(bytes([i % 34, (i * 7) % 34, (i % 2) << 7, 0, i]) for i in range(n))


SEEDS: dict[str, tuple] = {
    "atis": (decode_atis_bin, [atis_events(20), *real("nmnist-bin/sample_nmnist.bin", 4000)]),
    "bs1": (decode_bs1, real("slayer-bs1/NTIDIGITS_1.bs1") or [bytes(5) * 4]),
    "aedat2": (
        decode_aedat2,
        [
            aedat2_file("DVS128", [(i << 1 | i % 2, i) for i in range(16)]),
            aedat2_file("Davis346red", [(i << 12 | (i << 22), i) for i in range(16)]),
            *real("aedat2/header_test_128.aedat_test"),
        ],
    ),
    "aedat31": (
        decode_aedat31,
        [
            AEDAT31_HEADER
            + aedat31_packet(0, [(3, 1)])
            + aedat31_packet(1, [(polarity(i, i, i % 2), i) for i in range(8)])
            + aedat31_packet(1, [(polarity(5, 6, 1), 2)], overflow=1)
        ],
    ),
    "aedat4": (decode_aedat4, synthetic_aedat4() + real("aedat4/sample.aedat4")),
    "evt2": (
        decode_evt2,
        [
            b"% evt 2.0\n" + struct.pack("<4I", 8 << 28 | 3, 1 << 28 | 9, 0xA << 28, 2 << 22 | 7),
            *real("prophesee-evt2/evt2.raw", 3000),
        ],
    ),
    "evt3": (
        decode_evt3,
        [
            b"% evt 3.0\n" + struct.pack("<6H", 0x8001, 0x6002, 0x0003, 0x2004, 0x3010, 0x4FFF),
            *real("prophesee-evt3/evt3_sample.raw", 3000),
        ],
    ),
    "dat": (
        decode_dat,
        [
            b"% Version 2\n" + bytes([0, 8]) + struct.pack("<4I", 1, 1 << 28 | 3 << 14 | 4, 2, 5),
            *real("prophesee-dat/NCARS_obj_004397_td.dat"),
        ],
    ),
}

INTERESTING = [0, 1, -1, 8, 28, 0x7FFFFFFF, -(2**31), 0xFFFF, 2**30]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "byte", "int32", "cut", "insert", "delete"]))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[i] = draw(st.integers(0, 255))
        elif op == "int32":
            data[i : i + 4] = struct.pack("<i", draw(st.sampled_from(INTERESTING)))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data)


def decode_or_reject(decoder, raw: bytes) -> None:
    try:
        rec = decoder(raw)
    except ALLOWED as exc:
        assert "byte offset" in str(exc) or isinstance(exc, MissingExtraError)
        return
    ev = rec.events
    assert ev.dtype == EVENT_DTYPE
    assert np.all(np.diff(ev["t"]) >= 0)
    if len(ev):
        assert ev["x"].max() < rec.sensor_size[0] and ev["y"].max() < rec.sensor_size[1]


@pytest.mark.parametrize("fmt", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_mutations_of_valid_files(fmt, data):
    decoder, seeds = SEEDS[fmt]
    decode_or_reject(decoder, data.draw(mutated(seeds)))


@pytest.mark.parametrize("fmt", sorted(SEEDS))
@FUZZ
@given(raw=st.binary(max_size=512))
def test_random_bytes(fmt, raw):
    decode_or_reject(SEEDS[fmt][0], raw)


@pytest.mark.parametrize("fmt", ["aedat2", "aedat31", "aedat4", "evt2", "evt3", "dat"])
@FUZZ
@given(body=st.binary(max_size=256))
def test_valid_header_random_body(fmt, body):
    decoder, seeds = SEEDS[fmt]
    header = {
        "aedat2": seeds[0][: len(aedat2_file("DVS128", []))],
        "aedat31": AEDAT31_HEADER,
        "aedat4": aedat4_file([]),
        "evt2": b"% evt 2.0\n",
        "evt3": b"% evt 3.0\n",
        "dat": b"% Version 2\n\x00\x08",
    }[fmt]
    decode_or_reject(decoder, header + body)


def _npy_seeds(tmp: Path) -> list[tuple[object, bytes]]:
    lip = np.array(
        [(3, 1, 2, 1), (4, 5, 6, 0)], dtype=[("t", "<i4"), ("x", "i1"), ("y", "i1"), ("p", "i1")]
    )
    np.save(tmp / "lip.npy", lip)
    np.savez(tmp / "es.npz", pos=np.array([[1, 2, 3]]), neg=np.array([[4, 5, 6]]))
    seeds = [
        (lambda p: read_numpy_events(p, (128, 128)), (tmp / "lip.npy").read_bytes()),
        (read_es_imagenet, (tmp / "es.npz").read_bytes()),
    ]
    mat = EF / "stmnist-mat" / "sample_stmnist.mat"
    if mat.exists():
        seeds.append((read_stmnist, mat.read_bytes()))
    return seeds


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_container_files_mutated(tmp_path, data):
    """.npy / .npz / .mat go through numpy's and scipy's parsers: still only our error."""
    seeds = _npy_seeds(tmp_path)
    reader, seed = data.draw(st.sampled_from(seeds))
    path = tmp_path / "fuzzed.bin"
    path.write_bytes(data.draw(mutated([seed])))
    try:
        reader(path)
    except ALLOWED:
        pass
