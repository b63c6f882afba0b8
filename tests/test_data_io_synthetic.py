"""Readers on small files built byte for byte from the published formats, in the test.

No real sample exists here for AEDAT 3.1 (DVS128 Gesture), SHD/SSC HDF5, ASL-DVS .mat,
DVS-Lip / HARDVS / ES-ImageNet .npy/.npz, and the real EVT 3.0 samples use only four
of the eleven word types. Each test below writes such a file from the format's
specification (cited in the reader's module docstring) with hand-chosen events, and
checks that the reader returns exactly those events.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikeflow.data.io import (
    SpikingAudioFile,
    decode_aedat2,
    decode_aedat4,
    decode_aedat31,
    decode_atis_bin,
    decode_dat,
    decode_evt2,
    decode_evt3,
    parse_aedat2_header,
    parse_aedat4,
    read_aedat31,
    read_asl_dvs,
    read_dvs_lip,
    read_es_imagenet,
    read_gesture_labels,
    read_hardvs,
    read_spiking_audio,
    split_by_labels,
)
from spikeflow.errors import DataFormatError

#: Every test here runs with the numpy and the compiled decoders (conftest.py).
pytestmark = pytest.mark.usefixtures("decoder")


def tuples(rec) -> list[tuple[int, int, int, int]]:
    return [tuple(int(v) for v in e) for e in rec.events]


# ---------------------------------------------------------------- AEDAT 3.1 (Gesture)
AEDAT31_HEADER = (
    b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
    b"#Start-Time: 2017-04-12 11:42:09 (TZ+0200)\r\n#!END-HEADER\r\n"
)


def aedat31_packet(etype: int, events: list[tuple[int, int]], overflow: int = 0) -> bytes:
    """28-byte packet header + 8-byte (data, timestamp) events, as cAER writes them."""
    n = len(events)
    valid = sum(d & 1 for d, _ in events)
    head = struct.pack("<hhiiiiii", etype, 1, 8, 4, overflow, n, n, valid)
    return head + b"".join(struct.pack("<Ii", d, t) for d, t in events)


def polarity(x: int, y: int, p: int, valid: int = 1) -> int:
    return x << 17 | y << 2 | p << 1 | valid


def test_aedat31_polarity_packets_byte_for_byte(tmp_path):
    raw = AEDAT31_HEADER + b"".join([
        aedat31_packet(0, [(0x1 << 1 | 1, 5)]),  # a special event: skipped
        aedat31_packet(1, [(polarity(10, 20, 1), 100), (polarity(127, 0, 0), 150)]),
        aedat31_packet(1, [(polarity(3, 4, 1, valid=0), 151), (polarity(0, 127, 0), 2)], 1),
    ])  # fmt: skip
    want = [(100, 10, 20, 1), (150, 127, 0, 0), ((1 << 31) + 2, 0, 127, 0)]
    rec = decode_aedat31(raw)
    assert rec.sensor_size == (128, 128, 2) and tuples(rec) == want
    path = tmp_path / "user01_natural.aedat"
    path.write_bytes(raw)
    assert tuples(read_aedat31(path)) == want


def test_gesture_labels_split_a_recording(tmp_path):
    events = [(polarity(i, i, i % 2), 1000 * i) for i in range(20)]
    rec = decode_aedat31(AEDAT31_HEADER + aedat31_packet(1, events))
    csv = tmp_path / "user01_natural_labels.csv"
    csv.write_text("class,startTime_usec,endTime_usec\n3,2000,5000\n11,5000,7001\n")
    parts = split_by_labels(rec, read_gesture_labels(csv))
    assert [label for _, label in parts] == [3, 11]
    assert parts[0][0].events["t"].tolist() == [2000, 3000, 4000]
    assert parts[1][0].events["t"].tolist() == [5000, 6000, 7000]
    csv.write_text("class,start,end\n")
    with pytest.raises(DataFormatError, match="byte offset 0"):
        read_gesture_labels(csv)
    csv.write_text("class,startTime_usec,endTime_usec\n1,50,x\n")
    with pytest.raises(DataFormatError, match="byte offset 34: line 2"):
        read_gesture_labels(csv)


# ---------------------------------------------------------------- AEDAT 2.0 (jAER)
def aedat2_file(chip: str, records: list[tuple[int, int]]) -> bytes:
    head = (
        "#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
        f"# AEChip: {chip}\r\n#Start of Preferences for this AEChip\r\n"
        "#End of Preferences for this AEChip\r\n"
    ).encode()
    return head + b"".join(struct.pack(">II", a, t) for a, t in records)


def test_aedat2_dvs128_layout():
    raw = aedat2_file("ch.unizh.ini.jaer.chip.retina.DVS128", [
        (5 << 8 | 9 << 1 | 1, 10),  # y 5, raw x 9, bit 0 set: OFF (jAER's DVS128 extractor)
        (0x8000, 11),  # external-input (special) event: skipped
        (127 << 8 | 0 << 1, 12),  # y 127, raw x 0, bit 0 clear: ON
    ])  # fmt: skip
    rec = decode_aedat2(raw)
    assert rec.sensor_size == (128, 128, 2)
    assert tuples(rec) == [(10, 127 - 9, 5, 0), (12, 127, 127, 1)]


def test_aedat2_davis346_skips_aps_imu_and_external_words():
    def dvs(x: int, y: int, p: int) -> int:
        return y << 22 | x << 12 | p << 11

    raw = aedat2_file("eu.seebetter.ini.chips.davis.Davis346red", [
        (dvs(0, 0, 1), 100),
        (0x80000000 | dvs(5, 5, 0) | 0x3FF, 101),  # APS reset read
        (0x80000C00 | 0x123, 102),  # IMU word
        (0x400 | 0x1, 103),  # external input
        (dvs(345, 259, 0), 104),
    ])  # fmt: skip
    rec = decode_aedat2(raw)
    assert rec.sensor_size == (346, 260, 2)
    assert tuples(rec) == [(100, 345, 0, 1), (104, 0, 259, 0)]
    with pytest.raises(DataFormatError, match=r"byte offset \d+: event 0 at \(x=346"):
        decode_aedat2(aedat2_file("Davis346red", [(dvs(346, 0, 0), 1)]))


def test_aedat2_timestamp_wraparound_is_unwrapped():
    raw = aedat2_file("DVS128", [(0, 2**32 - 10), (2, 5)])
    assert decode_aedat2(raw).events["t"].tolist() == [2**32 - 10, 2**32 + 5]
    # a wrap goes from near 2**32 to near 0: at most 2**24 us across it
    raw = aedat2_file("DVS128", [(0, 2**32 - 2**24 + 5), (2, 5)])
    assert decode_aedat2(raw).events["t"].tolist() == [2**32 - 2**24 + 5, 2**32 + 5]
    for before, after in ((2**32 - 2**24 + 4, 5), (0xFF000009, 0x11000010), (2**31, 0)):
        raw = aedat2_file("DVS128", [(0, before), (2, after)])
        with pytest.raises(DataFormatError, match=r"backwards at event 1 .*no 32-bit wrap"):
            decode_aedat2(raw)


def _davis(x: int, y: int, p: int) -> int:
    return y << 22 | x << 12 | p << 11


JAER_2019_HEADER = (
    b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
    b"# AEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n"
    b"#Start of Preferences for this AEChip\r\n#<preferences/>\r\n"
    b"#End of Preferences for this AEChip\r\n"
    b"# DataStartTime: System.currentTimeMillis() 1550780654891\r\n"
    b"#End Of ASCII Header\r\n"
)


def test_aedat2_header_ends_at_end_of_ascii_header():
    """jAER ends its header with '#End Of ASCII Header': a first record whose first byte
    is '#' (a DAVIS240 polarity event in rows 140-143) is data, not a header line."""
    records = [(_davis(100, 141, 1), 7), (_davis(3, 4, 0), 9), (_davis(5, 143, 1), 11)]
    body = b"".join(struct.pack(">II", a, t) for a, t in records)
    assert body[:1] == b"#" and body[16:17] == b"#"
    want = [(7, 139, 141, 1), (9, 236, 4, 0), (11, 234, 143, 1)]
    header = parse_aedat2_header(JAER_2019_HEADER + body)
    assert header.data_start == len(JAER_2019_HEADER)
    assert header.lines[-1] == "#End Of ASCII Header"
    assert tuples(decode_aedat2(JAER_2019_HEADER + body)) == want
    # Older jAER (no end line): after '#End of Preferences', a '#' line that is not
    # printable text is the first record (text lines there still belong to the header).
    old = JAER_2019_HEADER.replace(b"#End Of ASCII Header\r\n", b"")
    assert parse_aedat2_header(old + body).data_start == len(old)
    assert tuples(decode_aedat2(old + body)) == want
    # a text record after the end line is data too (here: truncated, named at its offset)
    with pytest.raises(DataFormatError, match=rf"byte offset {len(JAER_2019_HEADER)}: trunc"):
        decode_aedat2(JAER_2019_HEADER + b"# text\n")


# ---------------------------------------------------------------- AEDAT 4.0 (DV)
def fb_ioheader(compression: int, xml: str, table_position: int = -1) -> bytes:
    """IOHeader FlatBuffer: root offset, 'IOHE', vtable, table (int32, int64, string)."""
    text = xml.encode()
    vtable = struct.pack("<HHHHH", 10, 20, 4, 8, 16) + b"\0\0"  # at 8, fields 0-2
    table = struct.pack("<iiqI", 24 - 8, compression, table_position, 44 - 40)  # at 24
    string = struct.pack("<I", len(text)) + text + b"\0"  # at 44
    return struct.pack("<I", 24) + b"IOHE" + vtable + b"\0" * 4 + table + string


def fb_event_packet(events: list[tuple[int, int, int, int]]) -> bytes:
    """Size-prefixed EventPacket: vector of 16-byte Event structs (t, x, y, on)."""
    vtable = struct.pack("<HHH", 6, 8, 4) + b"\0\0"  # at 12
    table = struct.pack("<iI", 20 - 12, 28 - 24)  # at 20; vector length at 28
    body = b"".join(struct.pack("<qhh?3x", *e) for e in events)
    buf = struct.pack("<I", 16) + b"EVTS" + vtable + table + struct.pack("<I", len(events)) + body
    return struct.pack("<I", len(buf)) + buf


AEDAT4_XML = (
    '<dv version="2.0"><node name="outInfo" path="/o/"><node name="0" path="/o/0/">'
    '<attr key="originalOutputName" type="string">events</attr>'
    '<attr key="typeIdentifier" type="string">EVTS</attr>'
    '<node name="info" path="/o/0/info/"><attr key="sizeX" type="int">64</attr>'
    '<attr key="sizeY" type="int">48</attr></node></node></node></dv>'
)


#: The same stream without ``sizeX``/``sizeY``: the reader infers the size from the events.
AEDAT4_XML_NO_SIZE = AEDAT4_XML.replace(
    '<attr key="sizeX" type="int">64</attr><attr key="sizeY" type="int">48</attr>', ""
)


def aedat4_file(packets: list[bytes], compression: int = 0, xml: str = AEDAT4_XML) -> bytes:
    header = fb_ioheader(compression, xml)
    out = b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + header
    return out + b"".join(struct.pack("<ii", 0, len(p)) + p for p in packets)


def test_aedat4_uncompressed_events_byte_for_byte():
    first = [(1000, 1, 2, True), (1005, 63, 47, False)]
    second = [(1005, 0, 0, True)]
    raw = aedat4_file([fb_event_packet(first), fb_event_packet([]), fb_event_packet(second)])
    info = parse_aedat4(raw)
    assert info.compression == "none" and [s.packets for s in info.streams] == [3]
    rec = decode_aedat4(raw)
    assert rec.sensor_size == (64, 48, 2)
    assert tuples(rec) == [(1000, 1, 2, 1), (1005, 63, 47, 0), (1005, 0, 0, 1)]
    bad = aedat4_file([fb_event_packet([(5, 64, 0, True)])])
    with pytest.raises(DataFormatError, match="outside the 64x48 sensor"):
        decode_aedat4(bad)


@pytest.mark.parametrize(("code", "module"), [(1, "lz4.frame"), (3, "zstandard")])
def test_aedat4_compressed_packets(code, module):
    lib = pytest.importorskip(module)
    packet = fb_event_packet([(7, 3, 4, True), (9, 5, 6, False)])
    comp = lib.compress(packet) if code == 1 else lib.ZstdCompressor().compress(packet)
    rec = decode_aedat4(aedat4_file([comp], code))
    assert tuples(rec) == [(7, 3, 4, 1), (9, 5, 6, 0)]
    with pytest.raises(DataFormatError, match="packet is truncated"):
        decode_aedat4(aedat4_file([comp[:-3]], code))


# ---------------------------------------------------------------- Prophesee
def _time_high(value: int, last: int | None, loops: int, bits: int) -> int:
    """The loop count after a TIME_HIGH ``value`` (Prophesee's sample decoders: a loop
    when the time base drops by at least the counter's top minus 10 periods); any other
    decrease is refused, as the readers refuse it."""
    if last is not None and value < last:
        if last - value < (1 << bits) - 1 - 10:
            raise ValueError(f"TIME_HIGH {last} -> {value} is no wrap-around")
        loops += 1
    return loops


def evt2_reference(words: np.ndarray) -> list[tuple[int, int, int, int]]:
    """A plain state machine over EVT 2.0 words (the spec, one word at a time)."""
    out, high, loops, last = [], None, 0, None
    for w in words.tolist():
        typ = w >> 28
        if typ == 8:
            value = w & 0x0FFFFFFF
            loops = _time_high(value, last, loops, 28)
            high, last = value + (loops << 28), value
        elif typ <= 1 and high is not None:
            out.append(((high << 6) | (w >> 22 & 0x3F), w >> 11 & 0x7FF, w & 0x7FF, typ))
    return out


def evt3_reference(words: np.ndarray) -> list[tuple[int, int, int, int]]:
    """A plain state machine over EVT 3.0 words (the spec, one word at a time)."""
    out = []
    y = base = pol = high = None
    low, loops, last = 0, 0, None
    for w in words.tolist():
        typ, v = w >> 12, w & 0xFFF
        if typ == 0:
            y = v & 0x7FF
        elif typ == 6:
            low = v
        elif typ == 8:
            loops = _time_high(v, last, loops, 12)
            high, last = v + (loops << 12), v
        elif typ == 3:
            base, pol = v & 0x7FF, v >> 11
        elif typ == 2 and None not in (y, high):
            out.append(((high << 12) | low, v & 0x7FF, y, v >> 11))
        elif typ in (4, 5) and base is not None:
            n = 12 if typ == 4 else 8
            if None not in (y, high):
                out += [((high << 12) | low, base + k, y, pol) for k in range(n) if v >> k & 1]
            base += n
    return out


def test_evt2_words_byte_for_byte():
    def cd(p: int, ts: int, x: int, y: int) -> int:
        return p << 28 | ts << 22 | x << 11 | y

    words = [
        cd(1, 1, 9, 9),  # before any TIME_HIGH: dropped
        8 << 28 | 5,  # TIME_HIGH 5
        cd(1, 7, 3, 4),
        0xA << 28 | 3 << 22 | 1 << 8 | 1,  # EXT_TRIGGER: skipped
        0xE << 28 | 0x123,  # OTHERS, then CONTINUED: skipped
        0xF << 28 | 0x456,
        cd(0, 63, 2047 - 1280, 719),
        8 << 28 | 0x0FFFFFFF,  # last TIME_HIGH before the 34-bit wrap
        cd(0, 0, 0, 0),
        8 << 28 | 0,  # wrapped: one loop
        cd(1, 2, 1, 1),
    ]
    raw = b"% evt 2.0\n% format EVT2;height=720;width=1280\n" + struct.pack(
        f"<{len(words)}I", *words
    )
    rec = decode_evt2(raw)
    assert rec.sensor_size == (1280, 720, 2)
    assert tuples(rec) == [
        (5 << 6 | 7, 3, 4, 1),
        (5 << 6 | 63, 767, 719, 0),
        (0x0FFFFFFF << 6, 0, 0, 0),
        ((1 << 34) + 2, 1, 1, 1),
    ]


def test_evt3_every_word_type_byte_for_byte():
    words = [
        0x0000 | 7,  # EVT_ADDR_Y before any time: no event can be emitted yet
        0x2000 | 1 << 11 | 5,  # EVT_ADDR_X before TIME_HIGH: dropped
        0x8000 | 1,  # EVT_TIME_HIGH 1
        0x6000 | 5,  # EVT_TIME_LOW 5 -> t = 1 << 12 | 5
        0x0000 | 1 << 11 | 10,  # EVT_ADDR_Y 10 (bit 11: system type, ignored)
        0x2000 | 1 << 11 | 20,  # EVT_ADDR_X: ON at x 20
        0x3000 | 0 << 11 | 100,  # VECT_BASE_X 100, OFF
        0x4000 | 0b1000_0000_0101,  # VECT_12: x 100, 102, 111; base -> 112
        0x5000 | 0b1000_0001,  # VECT_8: x 112, 119; base -> 120
        0x7000 | 0xA,  # CONTINUED_4: skipped
        0xA000 | 1 << 8 | 1,  # EXT_TRIGGER: skipped
        0xE000 | 0x001,  # OTHERS + CONTINUED_12: skipped
        0xF000 | 0xABC,
        0x6000 | 6,  # EVT_TIME_LOW 6
        0x4000 | 1,  # VECT_12: x 120
        0x8000 | 4095,  # EVT_TIME_HIGH 4095
        0x6000 | 4095,
        0x2000 | 0 << 11 | 1,  # OFF at x 1, t = 4095 << 12 | 4095
        0x8000 | 0,  # EVT_TIME_HIGH wraps: 4096
        0x6000 | 0,
        0x0000 | 719,
        0x2000 | 1 << 11 | 1279,
    ]
    raw = b"% evt 3.0\n% geometry 1280x720\n% end\n" + struct.pack(f"<{len(words)}H", *words)
    rec = decode_evt3(raw)
    t0 = 1 << 12 | 5
    assert rec.sensor_size == (1280, 720, 2)
    assert tuples(rec) == [
        (t0, 20, 10, 1),
        *[(t0, x, 10, 0) for x in (100, 102, 111, 112, 119)],
        (t0 + 1, 120, 10, 0),
        ((4095 << 12) + 4095, 1, 10, 0),
        (4096 << 12, 1279, 719, 1),
    ]
    with pytest.raises(DataFormatError, match=r"byte offset \d+: unknown event word type 0x9"):
        decode_evt3(raw + struct.pack("<H", 0x9000))


def test_dat_with_geometry_header():
    events = [(0, 1, 2, 1), (10, 119, 99, 0)]
    body = b"".join(struct.pack("<II", t, p << 28 | y << 14 | x) for t, x, y, p in events)
    raw = b"% Data file containing Event2D events.\n% Version 2\n% Height 100\n% Width 120\n"
    rec = decode_dat(raw + bytes([0, 8]) + body)
    assert rec.sensor_size == (120, 100, 2) and tuples(rec) == events


# ---------------------------------------------------------------- containers
def test_shd_layout_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "shd_train.h5"
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (3,), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (3,), dtype=h5py.vlen_dtype(np.uint16))
        times[0], units[0] = np.array([0.5, 0.0125, 0.25], np.float32), np.array([699, 0, 7])
        times[1], units[1] = np.zeros(0, np.float32), np.zeros(0, np.uint16)
        times[2], units[2] = np.array([0.1], np.float32), np.array([700])
        f.create_dataset("labels", data=np.array([4, 19, 0], np.uint8))
    rec, label = read_spiking_audio(path, 0)
    assert label == 4 and rec.sensor_size == (700, 1, 1)
    assert tuples(rec) == [(12_500, 0, 0, 0), (250_000, 7, 0, 0), (500_000, 699, 0, 0)]
    with SpikingAudioFile(path) as f:
        assert len(f) == 3 and f.labels.tolist() == [4, 19, 0] and len(f[1][0]) == 0
        with pytest.raises(DataFormatError, match=r"spikes/units\[2\]\[0\] = 700"):
            f[2]


def test_asl_dvs_mat(tmp_path):
    sio = pytest.importorskip("scipy.io")
    path = tmp_path / "a_0001.mat"
    col = lambda *v: np.array(v, dtype=np.float64).reshape(-1, 1)  # noqa: E731
    sio.savemat(path, {"x": col(1, 239, 5), "y": col(2, 179, 6), "ts": col(30, 10, 20),
                       "pol": col(1, 0, 1)})  # fmt: skip
    rec = read_asl_dvs(path)
    assert rec.sensor_size == (240, 180, 2)
    assert tuples(rec) == [(10, 239, 179, 0), (20, 5, 6, 1), (30, 1, 2, 1)]
    sio.savemat(path, {"x": col(240), "y": col(0), "ts": col(0), "pol": col(0)})
    with pytest.raises(DataFormatError, match="outside the 240x180 sensor"):
        read_asl_dvs(path)


def test_dvs_lip_hardvs_es_imagenet_numpy_layouts(tmp_path):
    lip = np.array([(30, 1, 2, 1), (10, 127, 0, 0)],
                   dtype=[("t", "<i4"), ("x", "i1"), ("y", "i1"), ("p", "i1")])  # fmt: skip
    np.save(tmp_path / "lip.npy", lip)
    assert tuples(read_dvs_lip(tmp_path / "lip.npy")) == [(10, 127, 0, 0), (30, 1, 2, 1)]
    np.savez(tmp_path / "har.npz", t=np.array([5, 6]), x=np.array([345, 0]),
             y=np.array([259, 1]), p=np.array([-1, 1]))  # fmt: skip
    assert tuples(read_hardvs(tmp_path / "har.npz")) == [(5, 345, 259, 0), (6, 0, 1, 1)]
    np.savez(tmp_path / "es.npz", pos=np.array([[4, 5, 2]]), neg=np.array([[7, 8, 1]]))
    assert tuples(read_es_imagenet(tmp_path / "es.npz")) == [(1, 8, 7, 0), (2, 5, 4, 1)]
    np.save(tmp_path / "es.npy", np.array([[4, 5, 2, 1], [7, 8, 1, 255]], np.uint8))
    assert tuples(read_es_imagenet(tmp_path / "es.npy")) == [(1, 8, 7, 0), (2, 5, 4, 1)]
    np.save(tmp_path / "bad.npy", np.array([[4, 5, 2, 3]], np.uint8))
    with pytest.raises(DataFormatError, match="byte offset 128: event 0 has polarity 3"):
        read_es_imagenet(tmp_path / "bad.npy")


# ------------------------------------------- chunked fast path == whole-array checked path
def _without_fast_path(monkeypatch, module, decode, *args):
    """``decode(*args)`` once as is and once with the chunked fast path switched off
    (every reader then takes its whole-array path, which also names errors)."""
    fast = decode(*args)
    with monkeypatch.context() as m:
        m.setattr(module, "decode_in_chunks", lambda *a, **k: None)
        checked = decode(*args)
    return fast, checked


def test_chunked_fast_paths_equal_whole_array_paths(monkeypatch):
    """Random streams with every case the chunked decoders handle at chunk borders:
    invalid AEDAT 3.1 events, timestamp overflow packets, other packet types, DAVIS
    APS/IMU words, and chunks of 997 items."""
    import spikeflow.data.io._common as common
    from spikeflow.data.io import aedat2, aedat31

    monkeypatch.setattr(common, "CHUNK", 997)
    rng = np.random.default_rng(0)
    # AEDAT 3.1: packets of 1-2999 events, 10% invalid, overflow bumps, special packets.
    body, ovf, t = bytearray(AEDAT31_HEADER), 0, 0
    for _ in range(12):
        k = int(rng.integers(1, 3000))
        if rng.random() < 0.3:
            body += aedat31_packet(0, [(1, 5)])
        if rng.random() < 0.3:
            ovf, t = ovf + 1, 0
        ts = t + np.cumsum(rng.integers(0, 20, k))
        t = int(ts[-1])
        evs = [(polarity(int(x), int(y), int(p), int(v)), int(s)) for x, y, p, v, s in zip(
            rng.integers(0, 128, k), rng.integers(0, 128, k), rng.integers(0, 2, k),
            rng.random(k) < 0.9, ts)]  # fmt: skip
        body += aedat31_packet(1, evs, overflow=ovf)
    for sensor in [None, (128, 128)]:
        fast, checked = _without_fast_path(
            monkeypatch, aedat31, decode_aedat31, bytes(body), sensor, None
        )
        assert fast.sensor_size == checked.sensor_size and len(fast) > 10000
        np.testing.assert_array_equal(fast.events, checked.events)
    # AEDAT 2.0 DAVIS346: polarity words mixed with APS (bit 31) and IMU words.
    n = 5000
    addr = (
        (rng.integers(0, 260, n).astype(np.uint32) << 22)
        | (rng.integers(0, 346, n).astype(np.uint32) << 12)
        | (rng.integers(0, 2, n).astype(np.uint32) << 11)
    )
    addr[rng.random(n) < 0.2] |= np.uint32(0x80000000)
    recs = np.empty(n, dtype=[("a", ">u4"), ("t", ">u4")])
    recs["a"], recs["t"] = addr, np.cumsum(rng.integers(0, 9, n))
    raw = b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.Davis346B\r\n" + recs.tobytes()
    fast, checked = _without_fast_path(monkeypatch, aedat2, decode_aedat2, raw, None, None)
    assert len(fast) > 3000
    np.testing.assert_array_equal(fast.events, checked.events)

    # EVT 2.0 / 3.0 have no whole-array path: see test_evt_chunk_borders_equal_the_spec.


def evt2_stream(rng: np.random.Generator) -> bytes:
    """EVT 2.0: a TIME_HIGH every 100 CD words, wrapping around 2**28, CD words before
    the first TIME_HIGH (dropped), and EXT_TRIGGER words."""
    words = [0x1000_0000 | 5 << 11 | 7]
    high = (1 << 28) - 20
    for i in range(6000):
        if i % 100 == 0:
            high = (high + 1) % (1 << 28)
            words.append(0x8000_0000 | high)
        if i % 777 == 0:
            words.append(0xA000_0000)
        low = (i % 100) * 64 // 100
        x, y = int(rng.integers(0, 640)), int(rng.integers(0, 480))
        words.append(int(rng.integers(0, 2)) << 28 | low << 22 | x << 11 | y)
    return (
        b"% evt 2.0\n% format EVT2;height=480;width=640\n% end\n"
        + np.array(words, dtype="<u4").tobytes()
    )


def evt3_stream(rng: np.random.Generator, n: int = 6000) -> bytes:
    """EVT 3.0 with every word type in random order: vector runs (empty masks too),
    TIME_LOW / TIME_HIGH steps and a TIME_HIGH wrap-around, y / base x changes, skipped
    words, and events before the state is complete (dropped)."""
    words, high, low = [0x2000 | 7, 0x4FFF], 4090, 0  # no y / TIME_HIGH / base yet
    for _ in range(n):
        r = rng.random()
        if r < 0.05:
            high, low = (high + 1) % 4096, 0
            words += [0x8000 | high, 0x6000]
        elif r < 0.15:
            low = min(low + int(rng.integers(0, 40)), 4095)
            words.append(0x6000 | low)
        elif r < 0.25:
            words.append(int(rng.integers(0, 480)) | int(rng.integers(0, 2)) << 11)
        elif r < 0.35:
            words.append(0x3000 | int(rng.integers(0, 600)) | int(rng.integers(0, 2)) << 11)
        elif r < 0.75:
            words.append(0x4000 | int(rng.integers(0, 4096)))
        elif r < 0.85:
            words.append(0x5000 | int(rng.integers(0, 4096)))
        elif r < 0.95:
            words.append(0x2000 | int(rng.integers(0, 640)) | int(rng.integers(0, 2)) << 11)
        else:
            words.append(int(rng.choice([0x7, 0xA, 0xE, 0xF])) << 12 | int(rng.integers(0, 4096)))
    return b"% evt 3.0\n% end\n" + np.array(words, dtype="<u2").tobytes()


@pytest.mark.parametrize("chunk", [1, 7, 997, 1 << 16])
def test_evt_chunk_borders_equal_the_spec(monkeypatch, chunk):
    """The chunked EVT 2.0 / 3.0 decoders carry their state (TIME_HIGH and its wraps,
    TIME_LOW, y, the vector base x and polarity) across chunk borders anywhere: the
    events equal a plain state machine over the words, for any chunk size."""
    import spikeflow.data.io._common as common

    monkeypatch.setattr(common, "CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    for raw, decode, reference, size in (
        (evt2_stream(rng), decode_evt2, evt2_reference, 4),
        (evt3_stream(rng), decode_evt3, evt3_reference, 2),
    ):
        start = raw.index(b"% end\n") + 6
        words = np.frombuffer(raw, dtype=f"<u{size}", offset=start)
        want = reference(words)
        rec = decode(raw, (1 << 16, 2048))
        assert len(want) > 3000 and tuples(rec) == want
        assert int(rec.events["t"][-1]) > (1 << 34 if size == 4 else 1 << 24)  # wrapped


def test_atis_fast_path_equals_checked_path(monkeypatch):
    """The ATIS fast path (one big-endian word per event: y from its top byte, t, p)
    gives the events and sensor size of the checked path, at the edges of every field
    (x, y = 0 and 33, p = 0/1, t up to 2**23 - 1), with a given or an inferred size."""
    from spikeflow.data.io import atis_bin

    rng = np.random.default_rng(11)
    for n in (1, 2, 5, 4000):
        x, y, p = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
        x[0], y[-1] = 33, 33
        t = np.sort(rng.integers(0, 2**23, n))
        t[-1] = 2**23 - 1
        rows = np.stack([x, y, p << 7 | t >> 16, t >> 8 & 0xFF, t & 0xFF], 1)
        raw = rows.astype(np.uint8).tobytes()
        for size in ((34, 34), None):
            fast = decode_atis_bin(raw, size)
            with monkeypatch.context() as m:
                m.setattr(atis_bin, "_decode_fast", lambda *a: None)
                checked = decode_atis_bin(raw, size)
            np.testing.assert_array_equal(fast.events, checked.events)
            assert fast.sensor_size == checked.sensor_size == (34, 34, 2)
            assert fast.events["t"].tolist() == t.tolist()
            assert fast.events["p"].tolist() == p.tolist()
