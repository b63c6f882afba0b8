"""Every reader on the real sample files of ../shared/data (skipped when it is absent).

Plausibility checks (sensor, counts, time range, monotonic time) plus independent
checks: the first records decoded by hand from the raw bytes, a plain-Python reference
state machine for EVT 2.0/3.0, and the N-CARS reference decode ``dat_sample.npy``.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from conftest import require_shared_data
from spikeflow.data import EVENT_DTYPE, EventRecording
from spikeflow.data.io import (
    decode_evt2,
    decode_evt3,
    prophesee,
    read_aedat2,
    read_aedat2_header,
    read_aedat4,
    read_aedat4_imu,
    read_aedat4_info,
    read_aedat4_triggers,
    read_atis_bin,
    read_bs1,
    read_dat,
    read_events,
    read_evt2,
    read_evt3,
    read_gesture_labels,
    read_numpy_events,
    read_prophesee_raw,
    read_stmnist,
)
from spikeflow.errors import DataFormatError
from test_data_io_synthetic import evt2_reference, evt3_reference

#: Every test here runs with the numpy and the compiled decoders (conftest.py).
pytestmark = pytest.mark.usefixtures("decoder")


def ef(*parts: str):
    return require_shared_data("event-files", *parts)


def check_plausible(rec: EventRecording, size: tuple[int, int, int], count: int) -> np.ndarray:
    ev = rec.events
    assert ev.dtype == EVENT_DTYPE
    assert rec.sensor_size == size
    assert len(ev) == count
    assert np.all(np.diff(ev["t"]) >= 0)
    assert ev["x"].max() < size[0] and ev["y"].max() < size[1]
    assert set(np.unique(ev["p"])) <= set(range(size[2]))
    return ev


def test_nmnist_sample_first_events_by_hand():
    path = ef("nmnist-bin", "sample_nmnist.bin")
    raw = path.read_bytes()
    ev = check_plausible(read_atis_bin(path), (34, 34, 2), 4325)
    for i in range(5):
        b = raw[5 * i : 5 * i + 5]
        assert b[1] != 240  # no overflow marker among the first records
        t = (b[2] & 0x7F) << 16 | b[3] << 8 | b[4]
        assert tuple(ev[i]) == (t, b[0], b[1], b[2] >> 7)
    assert read_events(path).events.tobytes() == ev.tobytes()


def test_nmnist_small_all_files_decode():
    root = require_shared_data("nmnist-small")
    files = sorted(root.glob("*/*/*.bin"))
    assert len(files) == 1100
    total = 0
    for f in files:
        rec = read_atis_bin(f)
        assert rec.sensor_size == (34, 34, 2)
        total += len(rec)
    assert total == 4_518_827
    # ~300 ms recordings (three saccades)
    ev = read_atis_bin(files[0]).events
    assert 250_000 < ev["t"][-1] < 350_000


def test_aedat2_davis240_with_imu_words():
    path = ef("aedat2", "IMU_translBoxes.aedat")
    header = read_aedat2_header(path)
    assert (header.version, header.layout, header.data_start) == ("2.0", "davis240", 175268)
    assert header.chip == "eu.seebetter.ini.chips.davis.DAVIS240C"
    ev = check_plausible(read_aedat2(path), (240, 180, 2), 162_771)
    assert (int(ev["t"][0]), int(ev["t"][-1])) == (294_976_755, 297_049_406)
    raw = path.read_bytes()
    records = np.frombuffer(raw, dtype=">u4", offset=header.data_start).reshape(-1, 2)
    imu = (records[:, 0] & 0x80000C00) == 0x80000C00
    assert imu.sum() == 33_837 and imu.sum() + len(ev) == len(records)
    # the first polarity record, decoded by hand (jAER: x mirrored, y kept)
    addr, ts = next((int(a), int(t)) for a, t in records if not a >> 31 and not a & 0x400)
    want = (ts, 239 - (addr >> 12 & 0x3FF), addr >> 22 & 0x1FF, addr >> 11 & 1)
    assert tuple(int(v) for v in ev[0]) == want


@pytest.mark.parametrize(
    ("name", "layout", "data_start", "size", "error_at"),
    [
        ("header_test_128.aedat_test", "dvs128", 4241, 4279, 4273),
        ("header_test_240.aedat_test", "davis240", 303869, 303897, 303893),
    ],
)
def test_aedat2_real_headers_with_filler(name, layout, data_start, size, error_at):
    """Real headers followed by '$' filler: the header parses; the body is no events."""
    path = ef("aedat2", name)
    assert path.stat().st_size == size
    header = read_aedat2_header(path)
    assert (header.layout, header.data_start) == (layout, data_start)
    assert header.lines[-1] == "#End Of ASCII Header"
    with pytest.raises(DataFormatError, match=rf"at byte offset {error_at}: truncated.*\$\$"):
        read_aedat2(path)


def test_aedat2_truncated_header_only_file():
    """The preferences block is opened and the file ends: a truncated header."""
    path = ef("aedat2", "sample_aedat_header.aedat")
    for call in (read_aedat2_header, read_aedat2):
        with pytest.raises(DataFormatError, match=r"byte offset 599: truncated header.*372"):
            call(path)


def test_aedat4_dvxplorer_events_and_imu():
    path = ef("aedat4", "sample.aedat4")
    info = read_aedat4_info(path)
    assert info.compression == "lz4"
    kinds = {s.id: (s.kind, s.size, s.packets) for s in info.streams}
    assert kinds == {0: ("events", (320, 240), 59), 2: ("imu", None, 59), 3: ("triggers", None, 0)}
    ev = check_plausible(read_aedat4(path), (320, 240, 2), 111_954)
    assert tuple(int(v) for v in ev[0]) == (1_605_537_493_718_345, 154, 204, 0)
    assert int(ev["t"][-1] - ev["t"][0]) == 589_917
    imu = read_aedat4_imu(path)
    assert len(imu) == 475 and np.all(np.diff(imu["t"]) > 0)
    # gravity: |accel| about 1 g, room temperature
    g = np.sqrt(imu["accel_x"] ** 2 + imu["accel_y"] ** 2 + imu["accel_z"] ** 2)
    assert np.all(np.abs(g - 1) < 0.2) and np.all(
        (20 < imu["temperature"]) & (imu["temperature"] < 50)
    )
    assert len(read_aedat4_triggers(path)) == 0


def test_aedat4_davis346_all_streams_listed():
    path = ef("aedat4", "davis.aedat4")
    info = read_aedat4_info(path)
    listed = {s.kind: (s.id, s.type_identifier, s.packets) for s in info.streams}
    assert listed == {
        "events": (0, "EVTS", 13),
        "frames": (1, "FRME", 3),
        "imu": (2, "IMUS", 13),
        "triggers": (3, "TRIG", 11),
    }
    ev = check_plausible(read_events(path), (346, 260, 2), 117_667)
    assert np.bincount(ev["p"]).tolist() == [45_304, 72_363]
    triggers = read_aedat4_triggers(path)
    assert len(triggers) == 15 and set(triggers["type"].tolist()) == {6, 7, 8, 9}
    assert len(read_aedat4_imu(path)) == 130


@pytest.mark.parametrize("name", ["sample.aedat4", "davis.aedat4"])
def test_aedat4_matches_the_aedat_package(name):
    # The Rust `aedat` package (what tonic.io.read_aedat4 calls; in the test extra):
    # events, IMU samples and triggers equal, field by field.
    aedat = pytest.importorskip("aedat", reason="the aedat package (test extra) is needed")
    path = ef("aedat4", name)
    packets = list(aedat.Decoder(str(path)))

    def theirs(kind: str) -> np.ndarray:
        parts = [p[kind] for p in packets if kind in p]
        return np.concatenate(parts) if parts else np.zeros(0)

    ev, ref = read_aedat4(path).events, theirs("events")
    assert len(ev) == len(ref) > 100_000
    for ours, field in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")):
        np.testing.assert_array_equal(ev[ours].astype(np.int64), ref[field].astype(np.int64))
    imu, ref = read_aedat4_imu(path), theirs("imus")
    assert len(imu) == len(ref) > 100
    np.testing.assert_array_equal(imu["t"], ref["t"].astype(np.int64))
    for ours, field in (("temperature", "temperature"), ("accel_x", "accelerometer_x"),
                        ("accel_z", "accelerometer_z"), ("gyro_y", "gyroscope_y"),
                        ("mag_z", "magnetometer_z")):  # fmt: skip
        np.testing.assert_array_equal(imu[ours], ref[field])
    triggers, ref = read_aedat4_triggers(path), theirs("triggers")
    assert len(triggers) == len(ref)
    if len(ref):
        np.testing.assert_array_equal(triggers["t"], ref["t"].astype(np.int64))
        np.testing.assert_array_equal(triggers["type"].astype(np.int64), ref["source"])


def as_tuples(rec: EventRecording, n: int) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in e) for e in rec.events[:n]]


@pytest.mark.parametrize(
    ("name", "count", "span"), [("evt2.raw", 521_252, 95_871), ("evt2_sample.raw", 539_481, 50_000)]
)
def test_evt2_real_files(name, count, span):
    path = ef("prophesee-evt2", name)
    ev = check_plausible(read_evt2(path), (640, 480, 2), count)  # Gen3 VGA (plugin name)
    assert int(ev["t"][-1] - ev["t"][0]) == span
    raw = path.read_bytes()
    start = raw.index(b"% evt 2.0\n") + len(b"% evt 2.0\n")
    words = np.frombuffer(raw, dtype="<u4", offset=start)[:60_000]
    ref = evt2_reference(words)
    assert as_tuples(decode_evt2(raw[: start + 4 * len(words)]), len(ref)) == ref


@pytest.mark.parametrize(
    ("name", "count"), [("evt3_sample.raw", 219_596), ("evt3_test_pedestrians.raw", 5_000)]
)
def test_evt3_real_files_match_the_reference_state_machine(name, count):
    path = ef("prophesee-evt3", name)
    rec = read_evt3(path)
    check_plausible(rec, (1280, 720, 2), count)  # Gen4.1 HD (plugin name)
    raw = path.read_bytes()
    start = raw.index(b"% system_ID 48\n") + len(b"% system_ID 48\n")
    words = np.frombuffer(raw, dtype="<u2", offset=start)
    types = set((words >> 12).tolist())
    assert {0, 2, 6, 8} <= types  # the vector words are covered by the synthetic tests
    ref = evt3_reference(words[:40_000])
    assert len(ref) > 2_000
    assert as_tuples(rec, len(ref)) == ref
    assert read_events(path).events.tobytes() == rec.events.tobytes()


@pytest.mark.parametrize(
    ("folder", "name", "reader"),
    [
        ("prophesee-evt2", "evt2_sample.raw", read_evt2),
        ("prophesee-evt3", "evt3_sample.raw", read_evt3),
    ],
)
def test_read_prophesee_raw_parses_the_header_once(folder, name, reader, monkeypatch):
    path = ef(folder, name)
    parse, calls = prophesee.parse_prophesee_header, []

    def counted(*args):
        calls.append(args[1:])
        return parse(*args)

    monkeypatch.setattr(prophesee, "parse_prophesee_header", counted)
    rec = read_prophesee_raw(path)
    assert calls == [(path,)]  # once, for the encoding and the decoder both
    expected = reader(path)
    assert (rec.sensor_size, rec.source) == (expected.sensor_size, expected.source)
    assert rec.events.tobytes() == expected.events.tobytes()


def test_dat_equals_reference_decode():
    ref = np.load(ef("prophesee-dat", "dat_sample.npy"))
    ev = read_dat(ef("prophesee-dat", "NCARS_obj_004397_td.dat")).events
    assert len(ev) == len(ref) == 4407
    for name in "txyp":
        np.testing.assert_array_equal(ev[name].astype(np.int64), ref[name].astype(np.int64))
    other = read_dat(ef("prophesee-dat", "sample_ncars.dat"))
    check_plausible(other, (78, 42, 2), 2009)  # N-CARS crops: size inferred
    assert read_dat(ef("prophesee-dat", "sample_ncars.dat"), (120, 100)).sensor_size == (
        120,
        100,
        2,
    )


def test_numpy_events_without_a_sensor_size_infer_it(tmp_path):
    # The reference decode of an N-CARS .dat, a structured .npy: without a size it is
    # the largest coordinates plus one, as read_dat infers it (a TypeError before);
    # without events it is unknown, a negative coordinate is named with its offset
    path = ef("prophesee-dat", "dat_sample.npy")
    rec = read_numpy_events(path, None)
    dat = read_dat(ef("prophesee-dat", "NCARS_obj_004397_td.dat"))
    assert rec.sensor_size == dat.sensor_size == (
        int(dat.events["x"].max()) + 1, int(dat.events["y"].max()) + 1, 2
    )  # fmt: skip
    assert rec.events.tobytes() == dat.events.tobytes()
    assert read_numpy_events(path, (304, 240)).sensor_size == (304, 240, 2)
    ref = np.load(path)
    np.save(tmp_path / "none.npy", ref[:0])
    with pytest.raises(DataFormatError, match=r"none\.npy.*no events.*sensor size is unknown"):
        read_numpy_events(tmp_path / "none.npy", None)
    bad = ref.copy()
    bad["y"][7] = -1
    np.save(tmp_path / "negative.npy", bad)
    header = (tmp_path / "negative.npy").stat().st_size - bad.nbytes
    offset = header + 7 * ref.dtype.itemsize
    with pytest.raises(DataFormatError, match=rf"negative\.npy at byte offset {offset}: event 7 "
                       r"at \(x=\d+, y=-1\) has a negative coordinate"):  # fmt: skip
        read_numpy_events(tmp_path / "negative.npy", None)


def test_bs1_ntidigits():
    path = ef("slayer-bs1", "NTIDIGITS_1.bs1")
    ev = check_plausible(read_bs1(path), (64, 1, 2), 898)
    raw = path.read_bytes()
    ch, b2, b3, b4 = struct.unpack(">HBBB", raw[5:10])
    assert tuple(int(v) for v in ev[1]) == ((b2 & 0x7F) << 16 | b3 << 8 | b4, ch, 0, b2 >> 7)
    assert set(ev["p"].tolist()) == {1} and int(ev["t"][-1]) == 1_079_040


def test_stmnist_sample():
    pytest.importorskip("scipy")
    ev = check_plausible(read_stmnist(ef("stmnist-mat", "sample_stmnist.mat")), (10, 10, 2), 2346)
    assert np.bincount(ev["p"]).tolist() == [745, 1601]
    assert (int(ev["t"][0]), int(ev["t"][-1])) == (196_626, 895_745)
    # first column of the matrix: taxel 45 (x 5, y 4) at -1 (OFF), time 0.19662648 s
    assert tuple(int(v) for v in ev[0]) == (196_626, 5, 4, 0)


def test_gesture_labels_csv():
    labels = read_gesture_labels(ef("dvs128-gesture-labels", "user01_natural_labels.csv"))
    assert len(labels) == 12
    assert tuple(int(v) for v in labels[0]) == (1, 53_036_986, 59_508_469)
    assert sorted(set(labels["label"].tolist())) == list(range(1, 12))
    assert np.all(labels["end"] > labels["start"])


# ------------------------------------------ corrupted copies of the real files (tmp_path)
@pytest.mark.parametrize(
    ("relative", "marker", "size", "bits"),
    [
        ("prophesee-evt2/evt2_sample.raw", b"% evt 2.0\n", 4, 28),
        ("prophesee-evt3/evt3_sample.raw", b"% system_ID 48\n", 2, 12),
    ],
)
def test_evt_one_corrupted_time_high_is_an_error(tmp_path, relative, marker, size, bits):
    """One TIME_HIGH word of a real recording set 2 periods back (a flipped bit): it is
    no wrap-around (real files step TIME_HIGH by 0 or 1; a wrap goes from the top of the
    counter to near 0), so the reader names that word instead of moving every later
    event 2**34 / 2**24 us into the future."""
    src = ef(*relative.split("/"))
    raw = bytearray(src.read_bytes())
    start = raw.index(marker) + len(marker)
    words = np.frombuffer(bytes(raw), dtype=f"<u{size}", offset=start)
    shift = 8 * size - 4
    high = (words >> shift) == 8
    values = (words[high] & ((1 << bits) - 1)).astype(np.int64)
    assert set(np.diff(values).tolist()) == {0, 1}  # consecutive in the real file
    k = int(np.flatnonzero(high)[len(values) // 2])
    old = int(words[k]) & ((1 << bits) - 1)
    off = start + size * k
    raw[off : off + size] = (8 << shift | (old - 2)).to_bytes(size, "little")
    path = tmp_path / src.name
    path.write_bytes(raw)
    with pytest.raises(DataFormatError) as info:
        read_evt2(path) if size == 4 else read_evt3(path)
    assert str(info.value).startswith(
        f"{path} at byte offset {off}: EVT_TIME_HIGH goes back from {old} to {old - 2} in "
        f"word {k}, which is no wrap-around of its {bits}-bit counter"
    ), str(info.value)


def test_aedat2_one_corrupted_timestamp_byte_is_an_error(tmp_path):
    """The top byte of one polarity event's timestamp set to 0xFF: the drop after it is
    no 32-bit wrap-around (which goes from near 2**32 to near 0), so the reader names it
    instead of moving every later event 2**32 us (71.6 minutes) into the future."""
    src = ef("aedat2", "IMU_translBoxes.aedat")
    raw = bytearray(src.read_bytes())
    start = read_aedat2_header(src).data_start
    records = np.frombuffer(bytes(raw), dtype=">u4", offset=start).reshape(-1, 2)
    polarity = np.flatnonzero((records[:, 0] >> 31 == 0) & (records[:, 0] & 0x400 == 0))
    i, j = (int(v) for v in polarity[50_000:50_002])  # an event and the next one
    raw[start + 8 * i + 4] = 0xFF
    path = tmp_path / "davis240_ts_byte.aedat"
    path.write_bytes(raw)
    bad = (0xFF << 24) | int(records[i, 1]) & 0xFFFFFF
    with pytest.raises(DataFormatError) as info:
        read_aedat2(path)
    assert str(info.value).startswith(
        f"{path} at byte offset {start + 8 * j}: timestamp goes backwards at event 50001 "
        f"({bad} us -> {int(records[j, 1])} us), and is no 32-bit wrap-around"
    ), str(info.value)


def _davis_event(x: int, y: int, p: int) -> int:
    return y << 22 | x << 12 | p << 11


@pytest.mark.parametrize("end_of_header", [True, False], ids=["jaer-2017", "older-jaer"])
def test_aedat2_first_record_starting_with_hash(tmp_path, end_of_header):
    """A DAVIS240 polarity event in rows 140-143 has 0x23 ('#') as its first byte. As the
    first record it is data, not one more header line: jAER's '#End Of ASCII Header' line
    ends the header (a real jAER 2019 header); in an older file without it, a '#' line
    after '#End of Preferences' that is not text (a polarity address has a 0x00 low
    byte) is the first record."""
    events_src = ef("aedat2", "IMU_translBoxes.aedat")
    records = bytearray(events_src.read_bytes()[read_aedat2_header(events_src).data_start :])
    if end_of_header:
        header_src = ef("aedat2", "header_test_240.aedat_test")
        header = header_src.read_bytes()[: read_aedat2_header(header_src).data_start]
        assert header.endswith(b"#End Of ASCII Header\r\n")
    else:
        header = events_src.read_bytes()[: read_aedat2_header(events_src).data_start]
        assert b"#End Of ASCII Header" not in header
        assert header.endswith(b"#End of Preferences for this AEChip\r\n")
    t0 = struct.unpack_from(">I", records, 4)[0]
    struct.pack_into(">I", records, 0, _davis_event(100, 141, 1))
    assert records[:1] == b"#"
    path = tmp_path / "davis240_y141.aedat"
    path.write_bytes(header + records)
    assert read_aedat2_header(path).data_start == len(header)
    ev = read_aedat2(path).events
    assert len(ev) == 162_771 and tuple(int(v) for v in ev[0]) == (t0, 239 - 100, 141, 1)


@pytest.mark.parametrize(("name", "kind", "ident"), [
    ("sample.aedat4", "imu", b"IMUS"), ("davis.aedat4", "triggers", b"TRIG"),
])  # fmt: skip
def test_aedat4_imu_and_triggers_going_back_name_their_packet(tmp_path, name, kind, ident):
    """One IMU sample / trigger of a real file moved 10 s back: the error names the byte
    offset of the packet that holds it (as for events), not byte offset 0."""
    lz4 = pytest.importorskip("lz4.frame")
    from spikeflow.data.io._flatbuffers import FlatBuffer

    src = ef("aedat4", name)
    raw = src.read_bytes()
    info = read_aedat4_info(src)
    sid = info.stream(kind).id
    target = [k for k, (s, _, _) in enumerate(info.packets) if s == sid][2]
    out, bad_at = bytearray(raw[: info.packets[0][1]]), None
    for k, (s, pos, size) in enumerate(info.packets):
        payload = raw[pos + 8 : pos + 8 + size]
        if k == target:
            buf = bytearray(lz4.decompress(payload))
            fb = FlatBuffer(bytes(buf), src, pos, kind)
            t_at = fb.field(int(fb.table_vector(fb.root(True, ident), 0)[0]), 0)
            (t,) = struct.unpack_from("<q", buf, t_at)
            struct.pack_into("<q", buf, t_at, t - 10_000_000)
            payload, bad_at = lz4.compress(bytes(buf)), len(out)
        out += struct.pack("<ii", s, len(payload)) + payload
    # the IOHeader's data-table position (field 1): the new end of the packets
    (hsize,) = struct.unpack_from("<I", out, 14)
    fb = FlatBuffer(bytes(out[18 : 18 + hsize]), src, 18, "IOHeader")
    struct.pack_into("<q", out, 18 + fb.field(fb.root(False, b"IOHE"), 1), len(out))
    path = tmp_path / name
    path.write_bytes(out)
    read = read_aedat4_imu if kind == "imu" else read_aedat4_triggers
    with pytest.raises(DataFormatError) as info_:
        read(path)
    assert str(info_.value).startswith(
        f"{path} at byte offset {bad_at}: timestamp goes backwards at {kind} sample"
    ), str(info_.value)


def big_evt3(repeats: int) -> bytes:
    """The real EVT 3.0 sample's words repeated, each repeat's TIME_HIGH moved on so the
    time base keeps counting (and wraps around 4096 periods as a camera's does)."""
    raw = ef("prophesee-evt3", "evt3_sample.raw").read_bytes()
    start = raw.index(b"% system_ID 48\n") + len(b"% system_ID 48\n")
    body = np.frombuffer(raw, dtype="<u2", offset=start)
    high = (body >> 12) == 8
    parts = []
    for r in range(repeats):
        part = body.copy()
        part[high] = 0x8000 | ((part[high] & 0xFFF) + 3 * r) % 4096
        parts.append(part)
    return raw[:start] + np.concatenate(parts).tobytes()


def test_evt3_large_file_in_bounded_memory():
    """The numpy EVT 3.0 decoder works chunk by chunk (and so does its error path, which
    the compiled decoder falls back to): ~8 MB of real words decode in a few times the
    file's size (the events alone are ~4.6x), where whole-array decoding took ~65x."""
    import tracemalloc

    data = big_evt3(14)
    bad = data + struct.pack("<H", 0x2000 | 2000)  # one last event at x = 2000
    for raw, want in ((data, None), (bad, f"at byte offset {len(data)}: event ")):
        tracemalloc.start()
        try:
            try:
                rec = decode_evt3(raw, path="big.raw")
                n = len(rec)
                del rec
                error = None
            except DataFormatError as exc:
                error = str(exc)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 12 * len(raw), f"peak {peak / len(raw):.1f}x the file"
        if want is None:
            assert error is None and n == 14 * 219_596
        else:
            assert error is not None and want in error and "outside the 1280x720" in error
