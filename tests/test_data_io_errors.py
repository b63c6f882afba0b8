"""Bad input: every reader rejects truncated, mutated and wrong-magic data with a
DataFormatError that names the file, the exact byte offset and the problem.

The inputs are built byte for byte here (small variations of the synthetic files of
test_data_io_synthetic.py), so the expected offsets can be worked out by hand.
"""

from __future__ import annotations

import importlib.util
import re
import struct
from functools import partial

import numpy as np
import pytest

from spikeflow.data.io import (
    SpikingAudioFile,
    decode_aedat2,
    decode_aedat4,
    decode_aedat31,
    decode_atis_bin,
    decode_bs1,
    decode_dat,
    decode_evt2,
    decode_evt3,
    load_npy,
    parse_aedat2_header,
    parse_aedat4,
    parse_prophesee_header,
    read_asl_dvs,
    read_dvs_lip,
    read_es_imagenet,
    read_events,
    read_hardvs,
    read_numpy_events,
    read_spiking_audio,
    read_stmnist,
)
from spikeflow.errors import DataFormatError, MissingExtraError
from test_data_io_synthetic import (
    AEDAT4_XML_NO_SIZE,
    AEDAT31_HEADER,
    aedat2_file,
    aedat4_file,
    aedat31_packet,
    fb_event_packet,
    polarity,
)

#: Every test here runs with the numpy and the compiled decoders (conftest.py).
pytestmark = pytest.mark.usefixtures("decoder")

H2 = len(aedat2_file("DVS128", []))  # where the AEDAT 2.0 records start
H31 = len(AEDAT31_HEADER)
EVT2 = b"% evt 2.0\n"
EVT3 = b"% evt 3.0\n"
DAT = b"% Version 2\n"
#: An AEDAT 3.1 header without a ``#Source`` line: the sensor size comes from the events.
AEDAT31_NO_SOURCE = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"
A4 = len(aedat4_file([]))  # where the first AEDAT 4 packet starts


def atis(x: int, y: int, p: int, t: int) -> bytes:
    return bytes([x, y, p << 7 | t >> 16, t >> 8 & 0xFF, t & 0xFF])


def bs1(ch: int, p: int, t: int) -> bytes:
    return struct.pack(">HBBB", ch, p << 7 | t >> 16, t >> 8 & 0xFF, t & 0xFF)


def decode_atis_bin_any(raw: bytes, path: str):
    return decode_atis_bin(raw, None, path)


def dat_event(t: int, x: int, y: int, p: int) -> bytes:
    return struct.pack("<II", t, p << 28 | y << 14 | x)


CASES = [
    # (id, decode function, bytes, byte offset, problem regex)
    ("atis-truncated", decode_atis_bin, atis(1, 1, 0, 5) + b"\x01\x02", 5, "truncated"),
    ("atis-outside", decode_atis_bin, atis(1, 1, 0, 5) + atis(34, 0, 0, 6), 5, "outside"),
    ("atis-backwards", decode_atis_bin, atis(1, 1, 0, 9) + atis(1, 1, 0, 8), 5, "backwards"),
    # after an overflow marker (y = 240, not an event) events keep their number in the file
    (
        "atis-marker-outside",
        decode_atis_bin,
        atis(1, 1, 0, 5) + atis(0, 240, 0, 0) + atis(34, 0, 0, 6),
        10,
        r"event 2 at \(x=34, y=0\) is outside the 34x34",
    ),
    (
        "atis-marker-backwards",
        decode_atis_bin,
        atis(1, 1, 0, 5) + atis(0, 240, 0, 0) + atis(1, 1, 0, 9000) + atis(1, 1, 0, 10),
        15,
        "backwards at event 3 .17192 us -> 8202",
    ),
    ("bs1-truncated", decode_bs1, bs1(1, 0, 5)[:4], 0, "truncated"),
    ("bs1-outside", decode_bs1, bs1(1, 0, 5) + bs1(64, 1, 6), 5, "outside"),
    ("bs1-backwards", decode_bs1, bs1(1, 0, 9) + bs1(2, 0, 3), 5, "backwards"),
    ("aedat2-version", decode_aedat2, b"#!AER-DAT9.9\r\n", 0, "unsupported AEDAT version"),
    ("aedat2-open-line", decode_aedat2, b"#!AER-DAT2.0\r\n# no end", 14, "truncated header"),
    ("aedat2-layout", decode_aedat2, b"#!AER-DAT2.0\r\n", 0, "address layout"),
    ("aedat2-truncated", decode_aedat2, aedat2_file("DVS128", [(0, 1)])[:-3], H2, "truncated"),
    (
        "aedat2-backwards",
        decode_aedat2,
        aedat2_file("DVS128", [(0, 9), (0x8000, 1), (2, 8)]),
        H2 + 16,
        "backwards",
    ),
    (
        "aedat2-dvs128-bits",
        decode_aedat2,
        aedat2_file("DVS128", [(0, 1), (1 << 20, 2)]),
        H2 + 8,
        "bits 16-30",
    ),
    ("aedat31-magic", decode_aedat31, b"#!AER-DAT2.0\r\n", 0, "not an AEDAT 3.x file"),
    ("aedat31-no-end", decode_aedat31, b"#!AER-DAT3.1\r\n#Format: RAW\r\n", 28, "END-HEADER"),
    ("aedat31-short-header", decode_aedat31, AEDAT31_HEADER + b"\x01\x00", H31, "truncated"),
    (
        "aedat31-overrun",
        decode_aedat31,
        AEDAT31_HEADER + aedat31_packet(1, [(polarity(1, 1, 1), 5)] * 2)[:-8],
        H31,
        "truncated: the type-1 packet",
    ),
    (
        "aedat31-size",
        decode_aedat31,
        AEDAT31_HEADER + struct.pack("<hhiiiiii", 1, 1, 12, 4, 0, 0, 0, 0),
        H31,
        "polarity events must be 8 bytes",
    ),
    (
        "aedat31-backwards",
        decode_aedat31,
        AEDAT31_HEADER + aedat31_packet(1, [(polarity(1, 1, 1), 9), (polarity(1, 1, 1), 3)]),
        H31 + 28 + 8,
        "backwards",
    ),
    (
        "aedat31-outside",
        decode_aedat31,
        AEDAT31_HEADER + aedat31_packet(1, [(polarity(128, 0, 1), 1)]),
        H31 + 28,
        "outside the 128x128",
    ),
    ("aedat4-magic", decode_aedat4, b"#!AER-DAT3.1\r\n", 0, "not an AEDAT 4.0 file"),
    ("aedat4-no-header", decode_aedat4, aedat4_file([])[:30], 14, "truncated: IOHeader"),
    (
        "aedat4-stream",
        decode_aedat4,
        aedat4_file([]) + struct.pack("<ii", 5, 4) + b"abcd",
        A4,
        "stream 5",
    ),
    ("aedat4-truncated", decode_aedat4, aedat4_file([fb_event_packet([])])[:-1], A4, "truncated"),
    (
        "aedat4-identifier",
        decode_aedat4,
        aedat4_file([fb_event_packet([]).replace(b"EVTS", b"FRME")]),
        A4,
        "identifier",
    ),
    (
        "aedat4-backwards",
        decode_aedat4,
        aedat4_file([fb_event_packet([(5, 0, 0, True)]), fb_event_packet([(4, 0, 0, True)])]),
        A4 + 8 + 48,
        "backwards",
    ),
    ("evt2-truncated", decode_evt2, EVT2 + b"\0\0\0\x80\x01\x02", len(EVT2) + 4, "truncated"),
    (
        "evt2-type",
        decode_evt2,
        EVT2 + struct.pack("<2I", 8 << 28, 0x3 << 28),
        len(EVT2) + 4,
        "type 0x3",
    ),
    ("evt2-encoding", decode_evt2, EVT3, 0, "encoding is 'evt3'"),
    (
        "evt2-backwards",
        decode_evt2,
        EVT2 + struct.pack("<3I", 8 << 28 | 2, 1 << 28 | 5 << 22, 1 << 28 | 4 << 22),
        len(EVT2) + 8,
        "backwards",
    ),
    ("evt3-truncated", decode_evt3, EVT3 + b"\0\x80\x01", len(EVT3) + 2, "truncated"),
    (
        "evt3-type",
        decode_evt3,
        EVT3 + struct.pack("<2H", 0x8000, 0xC000),
        len(EVT3) + 2,
        "type 0xc",
    ),
    (
        "evt3-backwards",
        decode_evt3,
        EVT3 + struct.pack("<6H", 0x8001, 0x6009, 0x0001, 0x2001, 0x6003, 0x2002),
        len(EVT3) + 10,
        "backwards",
    ),
    (
        "evt3-outside",
        decode_evt3,
        b"% geometry 640x480\n" + struct.pack("<4H", 0x8000, 0x0001, 0x3000 | 636, 0x4FFF),
        19 + 6,
        "outside the 640x480",
    ),
    # A TIME_HIGH that decreases without wrapping around (from the top of its counter to
    # near 0) is a corrupted time word, named at its offset (not counted as a wrap).
    (
        "evt2-time-high-back",
        decode_evt2,
        EVT2 + struct.pack("<4I", 8 << 28 | 20, 1 << 28 | 5 << 22, 8 << 28 | 19, 1 << 28),
        len(EVT2) + 8,
        r"EVT_TIME_HIGH goes back from 20 to 19 in word 2, which is no wrap-around",
    ),
    (
        "evt2-time-high-not-near-top",
        decode_evt2,
        EVT2 + struct.pack("<3I", 8 << 28 | (1 << 28) - 12, 1 << 28, 8 << 28 | 0),
        len(EVT2) + 8,
        r"goes back from 268435444 to 0 .*within 10 of 268435455",
    ),
    (
        "evt3-time-high-back",
        decode_evt3,
        EVT3 + struct.pack("<5H", 0x8000 | 2862, 0x0001, 0x2001, 0x8000 | 2860, 0x2002),
        len(EVT3) + 6,
        r"EVT_TIME_HIGH goes back from 2862 to 2860 in word 3, which is no wrap-around of its "
        r"12-bit counter",
    ),
    (
        "evt3-time-high-not-near-top",
        decode_evt3,
        EVT3 + struct.pack("<2H", 0x8000 | 4084, 0x8000),
        len(EVT3) + 2,
        "goes back from 4084 to 0",
    ),
    (
        "aedat2-not-a-wrap",
        decode_aedat2,
        aedat2_file("DVS128", [(0, 0x11000005), (2, 0xFF000009), (4, 0x11000010)]),
        H2 + 16,
        r"backwards at event 2 \(4278190089 us -> 285212688 us\), and is no 32-bit wrap-around",
    ),
    # EVT 3.0 vectors past x = 65535 (no sensor size): not wrapped into uint16
    (
        "evt3-x-past-65535",
        decode_evt3,
        EVT3 + struct.pack("<5505H", 0x8000, 0x6000, 0x0005, 0x3000, *[0x4000] * 5500, 0x4001),
        len(EVT3) + 2 * 5504,
        r"event 0 at \(x=66000, y=5\) is past x = 65535",
    ),
    # EVT 2.1 (64-bit vectorised words) is refused, not decoded as EVT 2.0
    (
        "evt21-evt-line",
        decode_evt2,
        b"% evt 2.1\n" + struct.pack("<2Q", 8 << 60 | 100 << 32, 1 << 60 | 64 << 43 | 0b1011),
        0,
        "EVT 2.1 is not supported",
    ),
    (
        "evt21-format-line",
        decode_evt2,
        b"% format EVT21;height=320;width=320\n" + struct.pack("<Q", 8 << 60),
        0,
        "EVT 2.1 is not supported",
    ),
    # no events and no sensor size anywhere: not a 0x0 sensor
    ("evt3-header-only", decode_evt3, EVT3, 0, "no events and no sensor size.*sensor_size="),
    ("evt2-header-only", decode_evt2, EVT2, 0, "the sensor size is unknown"),
    ("evt3-no-event", decode_evt3, EVT3 + struct.pack("<2H", 0x8001, 1), 0, "size is unknown"),
    ("atis-no-event", decode_atis_bin_any, atis(0, 240, 0, 0), 0, "the sensor size is unknown"),
    ("dat-no-event", decode_dat, DAT + bytes([0, 8]), 0, "the sensor size is unknown"),
    ("aedat31-no-packet", decode_aedat31, AEDAT31_NO_SOURCE, 0, "no events and no sensor size"),
    (  # a polarity packet whose only event is invalidated (valid bit 0): dropped
        "aedat31-no-valid-event",
        decode_aedat31,
        AEDAT31_NO_SOURCE + aedat31_packet(1, [(polarity(5, 7, 1, valid=0), 100)]),
        0,
        r"the sensor size is unknown \(pass sensor_size=\)",
    ),
    (
        "aedat4-no-size-no-event",
        decode_aedat4,
        aedat4_file([fb_event_packet([])], xml=AEDAT4_XML_NO_SIZE),
        0,
        r"the sensor size is unknown \(the event stream declares no sizeX/sizeY\)",
    ),
    # empty files
    ("atis-empty", decode_atis_bin, b"", 0, r"empty file \(0 bytes\)"),
    ("bs1-empty", decode_bs1, b"", 0, "empty file"),
    ("evt2-empty", decode_evt2, b"", 0, "empty file"),
    ("evt3-empty", decode_evt3, b"", 0, "empty file"),
    ("aedat2-empty", partial(decode_aedat2, layout="dvs128"), b"", 0, "empty file"),
    ("aedat31-empty", decode_aedat31, b"", 0, "empty file"),
    ("aedat4-empty", decode_aedat4, b"", 0, "empty file"),
    ("dat-empty", decode_dat, b"", 0, "empty file"),
    # the public header parsers too (the Prophesee one returned an empty header)
    ("prophesee-header-empty", parse_prophesee_header, b"", 0, r"empty file \(0 bytes\)"),
    ("prophesee-header-empty-bytearray", parse_prophesee_header, bytearray(), 0, "empty file"),
    ("prophesee-header-empty-memoryview", parse_prophesee_header, memoryview(b""), 0, "empty"),
    ("prophesee-header-empty-array", parse_prophesee_header, np.zeros(0, np.uint8), 0, "empty"),
    ("aedat2-header-empty", parse_aedat2_header, b"", 0, "empty file"),
    ("aedat4-container-empty", parse_aedat4, b"", 0, "empty file"),
    ("dat-no-type", decode_dat, DAT, len(DAT), "truncated"),
    ("dat-type", decode_dat, DAT + bytes([2, 8]), len(DAT), "unsupported event type 2"),
    (
        "dat-truncated",
        decode_dat,
        DAT + bytes([0, 8]) + dat_event(1, 1, 1, 1)[:5],
        len(DAT) + 2,
        "truncated",
    ),
    # the polarity is bit 28 alone, as Prophesee's loaders read it (bits 29-31 ignored)
    ("dat-headerless-truncated", decode_dat, dat_event(1, 1, 1, 1)[:5], 0, "truncated: 5"),
    (
        "dat-not-a-wrap",
        decode_dat,
        DAT + bytes([0, 8]) + dat_event(2**31, 1, 1, 1) + dat_event(2, 1, 1, 0),
        len(DAT) + 10,
        r"backwards at event 1 \(2147483648 us -> 2 us\), and is no 32-bit wrap-around",
    ),
    (
        "dat-backwards",
        decode_dat,
        DAT + bytes([0, 8]) + dat_event(5, 1, 1, 1) + dat_event(2, 1, 1, 0),
        len(DAT) + 10,
        "backwards",
    ),
]


@pytest.mark.parametrize(  # "decode", not "decoder": that would replace the decoder fixture
    ("decode", "raw", "offset", "problem"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_bytes_name_file_offset_and_problem(decode, raw, offset, problem):
    with pytest.raises(DataFormatError) as info:
        decode(raw, path="recording.bin")
    message = str(info.value)
    assert message.startswith(f"recording.bin at byte offset {offset}: "), message
    assert re.search(problem, message), message


def test_empty_files_are_rejected(tmp_path):
    """A 0-byte file is an interrupted copy or extraction, not a recording without
    events: every reader and container loader (and read_events, whatever the extension)
    names it; a file holding only a header is a recording when the header gives the
    sensor size, else its size is unknown."""
    from spikeflow.data.datasets.dvs_misc import read_pokerdvs
    from spikeflow.data.datasets.gesture import read_navgesture_dat
    from spikeflow.data.io import (
        read_aedat2,
        read_aedat4,
        read_aedat31,
        read_atis_bin,
        read_bs1,
        read_dat,
        read_evt2,
        read_evt3,
        read_prophesee_raw,
    )

    readers = [
        ("sample.bin", read_atis_bin), ("sample.bin", lambda p: read_atis_bin(p, None)),
        ("sample.bs1", read_bs1), ("rec.raw", read_evt2), ("rec.raw", read_evt3),
        ("rec.raw", read_prophesee_raw), ("rec.dat", read_dat), ("rec.aedat", read_aedat2),
        ("rec.aedat", read_aedat31), ("rec.aedat4", read_aedat4),
        ("rec_td.dat", read_navgesture_dat),
        # containers: numpy, scipy and h5py would report a bad header instead
        ("rec.npy", load_npy), ("rec.npy", read_dvs_lip), ("rec.npz", read_hardvs),
        ("rec.npz", partial(read_numpy_events, sensor_size=(8, 8))),
        ("rec.npy", read_es_imagenet), ("rec.npz", read_es_imagenet), ("rec.npy", read_pokerdvs),
        ("rec.mat", read_stmnist), ("rec.mat", read_asl_dvs),
        *[(name, read_events) for name in
          ("sample.bin", "sample.bs1", "rec.raw", "rec.dat", "rec.aedat", "rec.aedat4",
           "rec.mat", "rec.npy", "rec.npz", "rec.h5")],
    ]  # fmt: skip
    if importlib.util.find_spec("h5py") is not None:  # else the extra is named first
        readers += [("rec.h5", SpikingAudioFile), ("rec.h5", partial(read_spiking_audio, index=0))]
    for name, read in readers:
        path = tmp_path / name
        path.write_bytes(b"")
        with pytest.raises(DataFormatError, match=r"at byte offset 0: empty file") as info:
            read(path)
        assert str(info.value).startswith(str(path)), (name, read)
    path = tmp_path / "header_only.raw"
    path.write_bytes(EVT3)
    with pytest.raises(DataFormatError, match=r"header_only.raw at byte offset 0: no events "
                       r"and no sensor size in the file: the sensor size is unknown"):  # fmt: skip
        read_evt3(path)
    assert read_evt3(path, (640, 480)).sensor_size == (640, 480, 2)
    path.write_bytes(EVT3 + b"% geometry 1280x720\n")
    rec = read_events(path)
    assert len(rec) == 0 and rec.sensor_size == (1280, 720, 2)


def test_inferred_sensor_size_comes_from_the_events():
    """AEDAT 3.1 without a #Source line and AEDAT 4 without sizeX/sizeY take the size
    from the largest coordinates (without events it is unknown: CASES above); a given
    size makes a file without valid events an empty recording."""
    invalid_only = AEDAT31_NO_SOURCE + aedat31_packet(1, [(polarity(5, 7, 1, valid=0), 100)])
    rec = decode_aedat31(invalid_only, (128, 128))
    assert len(rec) == 0 and rec.sensor_size == (128, 128, 2)
    one = AEDAT31_NO_SOURCE + aedat31_packet(1, [(polarity(5, 7, 1), 100)])
    assert decode_aedat31(one).sensor_size == (6, 8, 2)
    rec = decode_aedat4(aedat4_file([fb_event_packet([(1, 5, 6, True)])], xml=AEDAT4_XML_NO_SIZE))
    assert len(rec) == 1 and rec.sensor_size == (6, 7, 2)


def test_read_events_falls_back_to_the_extension(tmp_path):
    """When the first bytes name no format (a damaged magic or version line), the
    extension's reader is used and names the bad bytes; containers, whose content does
    not say which dataset layout they hold, still need their reader called directly."""
    good = aedat4_file([fb_event_packet([(1, 2, 3, True)])])
    path = tmp_path / "rec.aedat4"
    path.write_bytes(good)
    assert len(read_events(path)) == 1
    for damaged in (b"X" + good[1:], good.replace(b"AER-DAT", b"AER-DXT", 1)):
        path.write_bytes(damaged)
        message = f"{path} at byte offset 0: not an AEDAT 4.0 file: expected "
        with pytest.raises(DataFormatError, match=re.escape(message)):
            read_events(path)
    path = tmp_path / "rec.aedat"  # a damaged AEDAT 3.1 version line: read as jAER AEDAT
    path.write_bytes(b"X" + AEDAT31_HEADER[1:])
    with pytest.raises(DataFormatError, match=re.escape(f"{path} at byte offset 0: ")):
        read_events(path)
    path = tmp_path / "rec.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="call the format's reader"):
        read_events(path)
    # A headerless .bin whose first event is at x = 35 starts with "#": still ATIS.
    path = tmp_path / "rec.bin"
    path.write_bytes(bytes([35, 1, 0x80, 0, 100]))
    with pytest.raises(DataFormatError, match=r"event 0 at \(x=35, y=1\) is outside the 34x34"):
        read_events(path)


def test_make_events_refuses_values_its_fields_cannot_hold():
    """x = 66000 used to wrap to 464 in the uint16 field, p = 200 to -56, x = 1.5 to 1."""
    from spikeflow.data import make_events
    from spikeflow.errors import ConfigurationError

    t, z = np.arange(3), np.zeros(3, dtype=np.int64)
    ok = make_events(t, np.array([0, 65535, 7], dtype=np.int64), np.array([1.0, 2, 3]), z)
    assert ok["x"].tolist() == [0, 65535, 7] and ok["y"].tolist() == [1, 2, 3]
    for kwargs, problem in [
        ({"x": np.array([1, 66000, 3])}, r"x\[1\] = 66000 does not fit the event field 'x' "
                                         r"\(uint16: whole numbers 0..65535\)"),
        ({"x": np.array([-1, 0, 0])}, r"x\[0\] = -1"),
        ({"y": np.array([0, 0, 70000], dtype=np.uint32)}, r"y\[2\] = 70000"),
        ({"p": np.array([0, 200, 1])}, r"p\[1\] = 200 .*int8: whole numbers -128..127"),
        ({"x": np.array([0, 1.5, 2])}, r"x\[1\] = 1.5"),
        ({"x": np.array([0, np.nan, 2])}, r"x\[1\] = nan"),
        ({"t": np.array([0, 1, 2**63], dtype=np.uint64)}, r"t\[2\] = 9223372036854775808"),
    ]:  # fmt: skip
        args = {"t": t, "x": z, "y": z, "p": z, **kwargs}
        with pytest.raises(ConfigurationError, match=problem):
            make_events(**args)


def test_every_byte_prefix_of_a_valid_file_is_decoded_or_rejected():
    """Truncation anywhere: a clean decode of a prefix or a DataFormatError, never more."""
    raw = aedat4_file([fb_event_packet([(1, 2, 3, True), (4, 5, 6, False)])] * 2)
    for cut in range(len(raw)):
        try:
            decode_aedat4(raw[:cut])
        except DataFormatError as exc:
            assert "byte offset" in str(exc)


def test_container_formats_reject_foreign_files(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"PK\x03\x04 this is no zip archive")
    with pytest.raises(DataFormatError, match=r"junk.bin at byte offset 0: not a readable .npz"):
        read_es_imagenet(junk)
    junk.write_bytes(b"\x93NUMPY\x01\x00" + b"garbage")
    with pytest.raises(DataFormatError, match=r"at byte offset 0: not a valid .npy header"):
        load_npy(junk)
    junk.write_bytes(b"not matlab")
    with pytest.raises(DataFormatError, match="at byte offset 0: not a MAT-file"):
        read_stmnist(junk)
    try:
        with pytest.raises(DataFormatError, match="at byte offset 0: not an HDF5 file"):
            SpikingAudioFile(junk)
    except MissingExtraError:
        pass  # h5py absent: the extra is named instead (tested below)


def zip_field(raw: bytes, signature: bytes, offset: int, value: int, size: int = 2) -> bytes:
    """``raw`` with a field of every ZIP header of ``signature`` (local PK\\3\\4, central
    PK\\1\\2) set to ``value``."""
    out, pos = bytearray(raw), raw.find(signature)
    while pos >= 0:
        out[pos + offset : pos + offset + size] = value.to_bytes(size, "little")
        pos = raw.find(signature, pos + 4)
    return bytes(out)


LOCAL, CENTRAL = b"PK\x03\x04", b"PK\x01\x02"


@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
def test_malformed_npz_archives_name_the_file_and_member(tmp_path, compressed):
    """Each archive failure (zipfile raises NotImplementedError, RuntimeError, zlib.error,
    BadZipFile, EOFError, ...) is a DataFormatError naming the file and the member."""
    save = np.savez_compressed if compressed else np.savez
    path = tmp_path / "sample.npz"
    n = 40
    save(path, t=np.arange(n), x=np.arange(n) % 300, y=np.arange(n) % 200, p=np.arange(n) % 2)
    valid = path.read_bytes()
    assert len(read_hardvs(path)) == n

    def rejects(raw: bytes, *patterns: str) -> None:
        path.write_bytes(raw)
        with pytest.raises(DataFormatError) as info:
            read_hardvs(path)
        message = str(info.value)
        assert message.startswith(str(path)), message
        for pattern in patterns:
            assert re.search(pattern, message), (pattern, message)

    # the audit's case: a compression method zipfile cannot read (NotImplementedError)
    bad_method = zip_field(zip_field(valid, LOCAL, 8, 99), CENTRAL, 10, 99)
    rejects(bad_method, r"at byte offset 0: ZIP member 't\.npy' uses compression method 99 "
            r"\(AES encryption\)")  # fmt: skip
    rejects(zip_field(valid, CENTRAL, 8, 1), "member 't.npy'", "RuntimeError|encrypted")
    rejects(zip_field(valid, CENTRAL, 16, 0x12345678, 4), "member 't.npy'", "CRC|Bad")
    rejects(valid[: len(valid) // 2], "byte offset 0: not a readable .npz")
    first_data = (
        30 + int.from_bytes(valid[26:28], "little") + int.from_bytes(valid[28:30], "little")
    )
    corrupt = bytearray(valid)
    corrupt[first_data : first_data + 8] = b"\xff" * 8  # the deflate stream or the .npy magic
    rejects(bytes(corrupt), "member 't.npy'")


def test_integer_columns_share_one_check(tmp_path):
    """NumPy and MAT containers go through one integer check (io._common.as_int64): whole
    floats pass, fractions, non-numeric dtypes and values that int64 cannot hold do not
    (a uint64 time of 2**63 used to wrap to a negative int64 silently)."""
    path = tmp_path / "h.npz"
    base = {"x": np.arange(3), "y": np.arange(3), "p": np.array([0, 1, 1])}
    np.savez(path, t=np.array([1.0, 2.0, 3.0]), **base)
    assert read_hardvs(path).events["t"].tolist() == [1, 2, 3]
    for t, problem in [
        (np.array([1.0, 2.5, 3.0]), r"t\[1\] = 2.5 is not an integer"),
        (np.array(["a", "b", "c"]), "t has non-integer dtype <U1"),
        (np.array([1, 2, 2**63], dtype=np.uint64), r"t\[2\] = 9223372036854775808 is out of range"),
    ]:
        np.savez(path, t=t, **base)
        with pytest.raises(DataFormatError, match=problem):
            read_hardvs(path)


def test_truncated_npy_names_the_offset(tmp_path):
    path = tmp_path / "events.npy"
    np.save(path, np.arange(10, dtype="<i8").reshape(5, 2))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataFormatError, match="byte offset 192: truncated"):
        load_npy(path)


def test_missing_extra_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_lz4(name, *args, **kwargs):
        if name.startswith("lz4"):
            raise ImportError("no lz4 here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lz4)
    monkeypatch.delitem(__import__("sys").modules, "lz4.frame", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "lz4", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'spikeflow\[data\]'") as info:
        decode_aedat4(aedat4_file([b"\x04\x22\x4d\x18"], compression=1))
    assert info.value.package == "lz4" and info.value.extra == "data"


def test_truncated_hdf5_is_rejected(tmp_path):
    """Every truncation of an SHD-layout file is a DataFormatError.

    Only truncation is fuzzed for HDF5: a flipped byte inside the global heap can send
    libhdf5 itself into an endless loop (a known upstream class of bug, HDFGroup/hdf5
    #1707; h5py does not work around libhdf5), which no Python-level check can bound.
    """
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "shd.h5"
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (2,), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (2,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(2):
            times[i], units[i] = np.linspace(0, 1, 10, dtype=np.float32), np.arange(10)
        f.create_dataset("labels", data=np.array([1, 2]))
    seed = path.read_bytes()
    cut_path = tmp_path / "cut.h5"
    for cut in range(0, len(seed), 61):
        cut_path.write_bytes(seed[:cut])
        with pytest.raises(DataFormatError):
            with SpikingAudioFile(cut_path) as f:
                [f[i] for i in range(len(f))]


def test_arrays_of_other_elements_than_bytes_are_refused():
    # A uint32 view of an N-MNIST file decoded to wrong events and a 4-billion-pixel
    # sensor; the other decoders cut each element to its low byte (astype).
    raw = atis(3, 4, 1, 10) + atis(5, 6, 0, 20)
    assert len(decode_atis_bin(np.frombuffer(raw, np.uint8)).events) == 2
    words = np.frombuffer(raw, np.uint8)[:8].view("<u4")
    for decode in (decode_atis_bin, decode_evt2, decode_evt3, decode_dat):
        with pytest.raises(TypeError, match="uint8"):
            decode(words)


@pytest.mark.parametrize("shape", ["(-1,)", "(-1, -1)", "(2, -3)"])
def test_a_negative_dimension_in_a_npy_header_is_refused(tmp_path, shape):
    path = tmp_path / "events.npy"
    np.save(path, np.arange(6, dtype="<i8"))
    raw = path.read_bytes()
    header = raw[10 : 10 + struct.unpack("<H", raw[8:10])[0]]
    bad = header.replace(b"(6,)", shape.encode()).ljust(len(header) - 1) + b"\n"
    path.write_bytes(raw[:10] + bad[: len(header)] + raw[10 + len(header) :])
    with pytest.raises(DataFormatError, match="negative dimension"):
        load_npy(path)  # (-1,) read the whole buffer; the others raised numpy's ValueError


def test_an_explicit_prophesee_end_line_ends_the_header_before_percent_data():
    # Binary data whose first byte is '%' (0x25) and which holds no newline byte was
    # read as one more header line without an end: "truncated header".
    words = [8 << 28 | 0x25, 1 << 28 | 3 << 22 | 3 << 11 | 4, 0 << 28 | 7 << 22 | 7 << 11 | 2]
    data = struct.pack("<3I", *words)
    assert data[:1] == b"%" and b"\n" not in data
    header = b"% evt 2.0\n% format EVT2;height=480;width=640\n% end\n"
    fields, start = parse_prophesee_header(header + data)
    assert start == len(header) and fields["evt"] == "2.0"
    rec = decode_evt2(header + data)
    assert [int(t) for t in rec.events["t"]] == [0x25 << 6 | 3, 0x25 << 6 | 7]
    with pytest.raises(DataFormatError, match="truncated header"):
        decode_evt2(b"% evt 2.0\n% format EVT2;height=480;width=640\n" + data)
