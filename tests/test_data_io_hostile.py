"""Hostile inputs the byte fuzzers (test_data_io_fuzz.py) do not reach: bad
``sensor_size`` arguments, impossible sensor sizes in Prophesee headers, label files
with odd integers, ROS bags with non-UTF-8 names, and compressed streams (gzip IDX,
bz2/lz4 bag chunks) that expand far past the size their header declares.

Every file is built here, byte for byte (no real sample is needed).
"""

from __future__ import annotations

import bz2
import gzip
import re
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from rosbag_samples import MAGIC, conn_record, record, write_bag
from spikeflow.data.io import (
    decode_aedat31,
    decode_atis_bin,
    decode_bs1,
    decode_dat,
    decode_evt2,
    decode_evt3,
    parse_ntidigits_key,
    read_aedat2,
    read_aedat4,
    read_aedat4_imu,
    read_asl_dvs,
    read_dat,
    read_es_imagenet,
    read_events,
    read_gesture_labels,
    read_numpy_events,
    read_prophesee_raw,
    read_wav,
    set_decoder,
)
from spikeflow.data.io.aedat4 import StreamNotFoundError
from spikeflow.data.io.images import read_idx
from spikeflow.data.io.rosbag import read_rosbag, read_rosbag_events
from spikeflow.errors import ConfigurationError, DataFormatError, DTypeError
from test_data_io_synthetic import (
    AEDAT31_HEADER,
    aedat4_file,
    aedat31_packet,
    fb_event_packet,
    polarity,
)

ATIS = bytes([3, 4, 0x80, 0, 7])  # one event at (3, 4), polarity 1, t = 7 us
BS1 = bytes([0, 3, 0x80, 0, 7])  # one event on channel 3, polarity 1, t = 7 us
EVT2 = b"% evt 2.0\n" + struct.pack("<3I", 8 << 28 | 3, 1 << 28 | 9 << 11 | 5, 1 << 28 | 2 << 11)
EVT3 = b"% evt 3.0\n" + struct.pack("<4H", 0x8001, 0x6002, 0x0003, 0x2004)
DAT = b"% Version 2\n" + bytes([0, 8]) + struct.pack("<2I", 1, 1 << 28 | 3 << 14 | 4)
AEDAT31 = AEDAT31_HEADER + aedat31_packet(1, [(polarity(3, 4, 1), 7)])


def _file(tmp_path, name: str, raw: bytes):
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def _npy(tmp_path):
    arr = np.array([(1, 2, 3, 1)], dtype=[("t", "<i4"), ("x", "i1"), ("y", "i1"), ("p", "i1")])
    np.save(tmp_path / "e.npy", arr)
    return tmp_path / "e.npy"


READERS = {
    "decode_atis_bin": lambda tmp, size: decode_atis_bin(ATIS, size),
    "decode_aedat31": lambda tmp, size: decode_aedat31(AEDAT31, size),
    "decode_evt2": lambda tmp, size: decode_evt2(EVT2, size),
    "decode_evt3": lambda tmp, size: decode_evt3(EVT3, size),
    "decode_dat": lambda tmp, size: decode_dat(DAT, size),
    "read_prophesee_raw": lambda tmp, size: read_prophesee_raw(_file(tmp, "a.raw", EVT3), size),
    "read_numpy_events": lambda tmp, size: read_numpy_events(_npy(tmp), size),
    "read_es_imagenet": lambda tmp, size: read_es_imagenet(_file(tmp, "x.npz", b"PK"), size),
    "read_asl_dvs": lambda tmp, size: read_asl_dvs(_file(tmp, "x.mat", b"MATLAB"), size),
    "read_rosbag_events": lambda tmp, size: read_rosbag_events(
        _file(tmp, "x.bag", MAGIC), sensor_size=size
    ),
}
BAD_SIZES = [(0, 0), (-1, 5), (34, 34.0), (34,), (34, 34, 2), "34x34", (2**70, 5), (True, 5),
             (65537, 1), 34]  # fmt: skip


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("size", BAD_SIZES, ids=repr)
def test_a_bad_sensor_size_argument_is_named_before_the_file_is_read(tmp_path, reader, size):
    """Before: a ctypes ArgumentError (a float), an unpacking ValueError, a TypeError
    (a string), a DataFormatError blaming the file ("outside the 0x0 sensor"), or a
    recording of a 2**70-wide sensor that no frame can hold."""
    with pytest.raises(ConfigurationError, match=rf"{reader}: sensor_size must be None or "
                       r"\(width, height\).*got"):  # fmt: skip
        READERS[reader](tmp_path, size)


@pytest.mark.parametrize("channels", [0, -1, 64.5, "64", True, 2**70, (64,)], ids=repr)
def test_a_bad_channel_count_is_named(channels):
    """Before: 64.5 and 2**70 gave a recording of that many channels, "64" a TypeError,
    0 and -1 a DataFormatError blaming the file."""
    with pytest.raises(ConfigurationError, match=r"decode_bs1: channels must be None or an "
                       rf"integer in \[1, 65536\]; got {re.escape(repr(channels))}"):  # fmt: skip
        decode_bs1(BS1, channels)


def test_good_channel_counts_still_decode():
    for channels in [4, np.int32(4), 65536]:
        rec = decode_bs1(BS1, channels)
        assert rec.sensor_size == (int(channels), 1, 2) and type(rec.sensor_size[0]) is int
    assert decode_bs1(BS1, None).sensor_size == (4, 1, 2)


@pytest.mark.parametrize("decode", [decode_atis_bin, decode_aedat31, decode_evt2, decode_evt3,
                                    decode_dat])  # fmt: skip
def test_good_sensor_sizes_still_decode(decode):
    raw = {decode_atis_bin: ATIS, decode_aedat31: AEDAT31, decode_evt2: EVT2,
           decode_evt3: EVT3, decode_dat: DAT}[decode]  # fmt: skip
    for size in [(34, 34), (np.int64(34), np.uint16(34)), [34, 34], (65536, 65536)]:
        rec = decode(raw, size)
        assert rec.sensor_size == (int(size[0]), int(size[1]), 2)
        assert all(type(s) is int for s in rec.sensor_size)
        assert len(rec.events) >= 1


PROPHESEE_BAD_HEADERS = [
    b"% geometry 99999999999999999999x5\n",  # before: kept as the sensor size
    b"% geometry 0x0\n",  # before: every event "outside the 0x0 sensor"
    b"% geometry -3x4\n",  # before: ignored, the size inferred from the events
    b"% geometry 1e5x4\n",
    b"% geometry 1_0x1_0\n",  # before: int() read 10 x 10
    b"% geometry 640\n",
    b"% format EVT3;height=-5;width=5\n",
    b"% format EVT3;height=abc;width=5\n",
    b"% format EVT3;width=1_0;height=1_0\n",  # before: the regex read 1 x 1
    b"% format EVT3;height=70000;width=5\n",
]


@pytest.mark.parametrize("line", PROPHESEE_BAD_HEADERS, ids=lambda b: b.decode().strip())
@pytest.mark.parametrize("fmt", ["evt2", "evt3", "dat"])
def test_an_impossible_or_malformed_header_size_names_its_line(tmp_path, fmt, line):
    raw = {"evt2": EVT2, "evt3": EVT3, "dat": DAT}[fmt]
    first = raw.index(b"\n") + 1
    name = "x.dat" if fmt == "dat" else "x.raw"
    path = _file(tmp_path, name, raw[:first] + line + raw[first:])
    reader = read_dat if fmt == "dat" else read_prophesee_raw
    text = line.decode().strip()
    with pytest.raises(DataFormatError, match=r"header line .*(sensor side|expected WIDTHx)") as e:
        reader(path)
    assert str(e.value).startswith(str(path)) and text in str(e.value)


@pytest.mark.parametrize("line, size", [(b"% geometry 1280x720\n", (1280, 720)),
                                        (b"% format EVT3;height=720;width=1280\n", (1280, 720)),
                                        (b"% Width 304\n% Height 240\n", (304, 240)),
                                        (b"% geometry  40 x 30 \n", (40, 30))])  # fmt: skip
def test_good_header_sizes_are_read(line, size):
    for raw, decode in [(EVT2, decode_evt2), (EVT3, decode_evt3), (DAT, decode_dat)]:
        first = raw.index(b"\n") + 1
        assert decode(raw[:first] + line + raw[first:]).sensor_size == (*size, 2)


LABELS = b"class,startTime_usec,endTime_usec\n"


@pytest.mark.parametrize("row, problem", [
    (b"1,5,99999999999999999999", "a value out of range"),  # before: a bare OverflowError
    (b"1,-99999999999999999999,5", "a value out of range"),
    (b"1_0,5,9", "expected three integers"),  # before: read as class 10
    (b"1,5,9,", "expected three integers"),
    (b"1,0x5,9", "expected three integers"),
    (b"\xd9\xa1,5,9", "expected three integers"),
])  # fmt: skip
def test_label_rows_hold_three_decimal_integers_int64_holds(tmp_path, row, problem):
    path = _file(tmp_path, "u_labels.csv", LABELS + b"2,1,3\n" + row + b"\n")
    with pytest.raises(DataFormatError, match=f"byte offset {len(LABELS) + 6}: line 3: {problem}"):
        read_gesture_labels(path)


def test_label_rows_with_spaces_and_crlf_are_read(tmp_path):
    path = _file(tmp_path, "u_labels.csv", LABELS + b" 3 , 10 ,20\r\n+4,20,30\n\n")
    rows = read_gesture_labels(path)
    assert rows.tolist() == [(3, 10, 20), (4, 20, 30)]


def _bag(tmp_path, chunk: bytes, compression: str, size: int):
    fields = {"op": b"\x05", "compression": compression.encode(), "size": struct.pack("<I", size)}
    return _file(tmp_path, "x.bag", MAGIC + record(fields, chunk))


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError) as e:
            fn()
        return tracemalloc.get_traced_memory()[1] / 2**20, str(e.value)
    finally:
        tracemalloc.stop()


BOMB = 64 << 20  # 64 MiB of zeros: 50 KiB of bz2, 250 KiB of lz4


@pytest.mark.parametrize("compression", ["bz2", "lz4"])
def test_a_bag_chunk_is_not_decompressed_past_its_declared_size(tmp_path, compression):
    """Before: the whole stream was decompressed (64 MiB here; gigabytes for a real
    bomb), then compared with the 100 bytes the chunk header declares."""
    if compression == "lz4":
        lz4 = pytest.importorskip("lz4.frame")
        packed = lz4.compress(bytes(BOMB))
    else:
        packed = bz2.compress(bytes(BOMB))
    path = _bag(tmp_path, packed, compression, 100)
    peak, message = _peak_mib(lambda: read_rosbag(path))
    assert "holds more than 100 bytes, its header says 100" in message
    assert peak < 8, f"{peak:.1f} MiB for a chunk that declares 100 bytes"


def test_a_bag_chunk_whose_stream_does_not_end_is_refused(tmp_path):
    lz4 = pytest.importorskip("lz4.frame")
    data = conn_record(0, "/dvs/events", "dvs_msgs/EventArray")
    packed = lz4.compress(data, store_size=False, content_checksum=True)
    path = _bag(tmp_path, packed[:-8], "lz4", len(data))  # end mark and checksum cut
    with pytest.raises(DataFormatError, match="lz4 chunk's stream does not end"):
        read_rosbag(path)
    _bag(tmp_path, packed, "lz4", len(data))
    assert read_rosbag(path) == {}  # the whole stream: one connection, no messages


def bz2_most(packed: bytes) -> int:
    """By hand: blocks of at least 171 bits, each at most 100 000 x level bytes before
    the run-length stage that makes at most 259 of every 5."""
    return -(-8 * len(packed) // 171) * (packed[3] - 48) * 100_000 * 259 // 5


@pytest.mark.parametrize("level", [1, 9])
def test_a_bz2_chunk_declaring_more_than_bz2_can_expand_to_is_refused(tmp_path, level):
    """Before: a chunk of a few hundred bytes could declare 4 GiB and be inflated that
    far (decompression stops only at the declared size)."""
    data = conn_record(0, "/dvs/events", "dvs_msgs/EventArray") * 50
    packed = bz2.compress(data, level)
    path = _bag(tmp_path, packed, "bz2", len(data))
    assert read_rosbag(path) == {}  # honest: reads
    most = bz2_most(packed)
    assert most < 2**32 - 1
    at = _bag(tmp_path, packed, "bz2", 2**32 - 1).read_bytes().index(packed)  # the chunk's data
    with pytest.raises(DataFormatError) as info:
        read_rosbag(path)
    assert str(info.value) == (
        f"{path} at byte offset {at}: the bz2 chunk declares 4294967295 bytes, more "
        f"than its {len(packed)} compressed bytes can hold ({most} at most)"
    )


@pytest.mark.parametrize("level", [1, 9])
def test_bz2_at_its_best_ratio_is_within_the_bound(tmp_path, level):
    # 64 MiB of zeros, bz2's best case: refused only for its content (zeros are no
    # record), not for its declared size.
    packed = bz2.compress(bytes(BOMB), level)
    assert BOMB <= bz2_most(packed) < 3 * BOMB  # and not loose
    path = _bag(tmp_path, packed, "bz2", BOMB)
    with pytest.raises(DataFormatError, match="a record without a one-byte op field"):
        read_rosbag(path)


def test_an_lz4_chunk_declaring_more_than_255_per_byte_is_refused(tmp_path):
    lz4 = pytest.importorskip("lz4.frame")
    packed = lz4.compress(bytes(BOMB))
    assert BOMB <= 255 * len(packed)  # LZ4's best case fits
    path = _bag(tmp_path, packed, "lz4", 255 * len(packed) + 1)
    with pytest.raises(DataFormatError, match=rf"the lz4 chunk declares {255 * len(packed) + 1} "
                       rf"bytes, more than its {len(packed)} compressed bytes can hold "
                       rf"\({255 * len(packed)} at most\)"):  # fmt: skip
        read_rosbag(path)
    _bag(tmp_path, packed, "lz4", BOMB)
    with pytest.raises(DataFormatError, match="a record without a one-byte op field"):
        read_rosbag(path)


def test_a_topic_that_is_not_utf8_is_a_format_error(tmp_path):
    """Before: a bare UnicodeDecodeError."""
    write_bag(tmp_path / "a.bag", [("/dvs/events", "dvs_msgs/EventArray", 10**9, b"")])
    raw = (tmp_path / "a.bag").read_bytes()
    path = _file(tmp_path, "b.bag", raw.replace(b"topic=/dvs", b"topic=\xffdvs"))
    with pytest.raises(DataFormatError, match=r"connection topic b'\\xffdvs/events' is not UTF-8"):
        read_rosbag(path)


def _idx(shape: tuple[int, ...]) -> bytes:
    data = np.arange(int(np.prod(shape)), dtype=np.uint8).tobytes()
    return bytes([0, 0, 8, len(shape)]) + np.array(shape, ">u4").tobytes() + data


def test_a_gzip_idx_is_not_decompressed_past_its_declared_shape(tmp_path):
    """Before: gzip.decompress took the whole stream (64 MiB here) before the size check."""
    raw = _idx((10, 28, 28))
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    packed = bomb.compress(raw) + bomb.compress(bytes(BOMB)) + bomb.flush()
    path = _file(tmp_path, "bomb-idx3-ubyte.gz", packed)
    peak, message = _peak_mib(lambda: read_idx(path))
    assert f"more than the {len(raw)} bytes its IDX header declares" in message
    assert peak < 8, f"{peak:.1f} MiB for an IDX file that declares {len(raw)} bytes"


def test_a_gzip_idx_whose_header_declares_more_than_gzip_can_hold_is_refused_first(tmp_path):
    """A bomb under a header declaring 2^64 bytes: bounding the output by the declared
    size did not bound it (64 MiB were decompressed, gigabytes for a real bomb) before
    decode_idx refused the shape; deflate expands at most 1032 times."""
    head = bytes([0, 0, 8, 2]) + np.array([2**32 - 1] * 2, ">u4").tobytes()
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    packed = bomb.compress(head) + bomb.compress(bytes(BOMB)) + bomb.flush()
    path = _file(tmp_path, "bomb-idx3-ubyte.gz", packed)
    peak, message = _peak_mib(lambda: read_idx(path))
    assert "offset 4: the IDX shape (4294967295, 4294967295) declares" in message
    assert f"more than a gzip stream of {len(packed)} bytes can hold" in message
    assert peak < 8, f"{peak:.1f} MiB for a stream of {len(packed)} bytes"
    zeros = bytes([0, 0, 8, 2]) + np.array([1024, 4096], ">u4").tobytes() + bytes(1 << 22)
    packed = zlib.compress(zeros, 9, wbits=31)  # a real file near deflate's ratio still reads
    assert len(zeros) / len(packed) > 1000
    assert read_idx(_file(tmp_path, "zeros-idx2-ubyte.gz", packed)).shape == (1024, 4096)


def test_gzip_idx_members_padding_and_damage(tmp_path):
    raw = _idx((5, 7, 3))
    want = np.arange(105, dtype=np.uint8).reshape(5, 7, 3)
    for packed in [gzip.compress(raw), gzip.compress(raw[:30]) + gzip.compress(raw[30:]),
                   gzip.compress(raw) + bytes(8)]:  # fmt: skip
        np.testing.assert_array_equal(read_idx(_file(tmp_path, "a.gz", packed)), want)
    whole = gzip.compress(raw)
    for packed, problem in [
        (whole + b"junk", "trailing garbage"),
        (whole[:-6], "truncated"),
        (whole[:-4] + b"\0\0\0\0", "incorrect length"),  # ISIZE
        (gzip.compress(raw[:-1]), "needs 105 data bytes; the file holds 104"),
        (gzip.compress(b"\1\2\3\4"), "IDX files start with two zero bytes"),
    ]:
        with pytest.raises(DataFormatError, match=problem):
            read_idx(_file(tmp_path, "a.gz", packed))


def _aedat4(tmp_path):
    """An AEDAT 4 file with one event stream (id 0)."""
    packet = fb_event_packet([(1, 2, 3, True), (4, 5, 6, False)])
    return _file(tmp_path, "x.aedat4", aedat4_file([packet]))


@pytest.mark.parametrize("stream", [7, "0", (0, 0)], ids=repr)
def test_an_aedat4_stream_the_file_lacks_is_named_with_the_file(tmp_path, stream):
    """Before: a bare LookupError 'no stream 7 of kind ... in this file', no file named."""
    path = _aedat4(tmp_path)
    assert len(read_aedat4(path)) == 2
    with pytest.raises(StreamNotFoundError, match=rf"^{re.escape(str(path))}: no stream ") as e:
        read_aedat4(path, stream)
    assert isinstance(e.value, ConfigurationError) and isinstance(e.value, LookupError)
    with pytest.raises(StreamNotFoundError, match=re.escape(str(path))):
        read_aedat4_imu(path, stream)


def test_bad_reader_arguments_raise_spikeflow_errors(tmp_path):
    """Before: bare ValueError / TypeError; now spikeflow's ConfigurationError (a
    ValueError) and DTypeError (a TypeError), naming the function and the value."""
    aedat2 = _file(tmp_path, "x.aedat", b"#!AER-DAT2.0\r\n" + bytes(8))
    wav = tmp_path / "x.wav"
    wav.write_bytes(
        b"RIFF"
        + struct.pack("<I", 36 + 8)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
        + b"data"
        + struct.pack("<I", 8)
        + bytes(8)
    )
    cases = [
        (lambda: read_aedat2(aedat2, layout="dvs64"), ConfigurationError,
         r"decode_aedat2: layout must be one of \['davis240', 'davis346', 'dvs128'\], got 'dvs64'"),
        (lambda: read_wav(wav, -1), ConfigurationError, "read_wav: start must be an int >= 0"),
        (lambda: read_wav(wav, 0, 2.0), ConfigurationError, "read_wav: frames must be an int"),
        (lambda: read_wav(wav, 2, 3), ConfigurationError,
         r"read_wav: frames \[2, 5\) asked of .*x.wav, which has 4 frames"),
        (lambda: read_events(_file(tmp_path, "x.mat", b"MATLAB")), ConfigurationError,
         "cannot choose a reader for '.mat' files"),
        (lambda: parse_ntidigits_key("x"), ConfigurationError, "sample key 'x' is not"),
        (lambda: set_decoder("fast"), ConfigurationError, "decoder must be one of"),
        (lambda: decode_atis_bin(np.zeros(5, np.int16)), DTypeError,
         r"expected a 1-D uint8 array of raw bytes, got int16 \(5,\)"),
    ]  # fmt: skip
    assert read_wav(wav, 1, 2).frames == 2
    for call, kind, message in cases:
        with pytest.raises(kind, match=message):
            call()


def test_split_listings_that_are_not_utf8_are_format_errors(tmp_path):
    """Before: a bare UnicodeDecodeError (DVS128 Gesture read its listing in the locale's
    encoding, 3ET in UTF-8)."""
    from spikeflow.data.datasets import DVS128Gesture
    from spikeflow.data.datasets.eyetracking import ThreeETEyetracking

    gesture = tmp_path / "DvsGesture"
    gesture.mkdir()
    (gesture / "trials_to_train.txt").write_bytes(b"user01_natural.aedat\nuser02_\xe9.aedat\n")
    threeet = tmp_path / "ThreeET_Eyetracking"
    threeet.mkdir()
    (threeet / "train_files.txt").write_bytes(b"\xff\xfe4\x002\x00")  # UTF-16
    for build, listing, offset in [
        (lambda: DVS128Gesture(tmp_path, train=True, progress=False),
         gesture / "trials_to_train.txt", 28),
        (lambda: ThreeETEyetracking(tmp_path, "train"), threeet / "train_files.txt", 0),
    ]:  # fmt: skip
        with pytest.raises(DataFormatError, match=rf"^{re.escape(str(listing))}: byte offset "
                           rf"{offset}: not UTF-8 text"):  # fmt: skip
            build()


def test_a_nomniglot_csv_that_is_not_utf8_is_a_format_error(tmp_path):
    """Before: read in the locale's encoding (a bare UnicodeDecodeError under UTF-8)."""
    from spikeflow.data.datasets.nomniglot import read_nomniglot_csv

    rows = "".join(f"{k},{10 * k},{10 * k + 5},x\n" for k in range(3))
    path = _file(tmp_path, "a.csv", ("id,start,end,name\n" + rows).encode())
    assert read_nomniglot_csv(path, rows=3).tolist() == [[0, 5], [10, 15], [20, 25]]
    path.write_bytes(b"id,start,end,name\n0,0,5,\xe9\n")
    with pytest.raises(DataFormatError, match=r"a\.csv: byte offset 24: not UTF-8 text"):
        read_nomniglot_csv(path, rows=1)
