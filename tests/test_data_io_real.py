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
    read_stmnist,
)
from spikeflow.errors import DataFormatError

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


def evt2_reference(words: np.ndarray) -> list[tuple[int, int, int, int]]:
    """A plain state machine over EVT 2.0 words (the spec, one word at a time)."""
    out, high, loops, last = [], None, 0, None
    for w in words.tolist():
        typ = w >> 28
        if typ == 8:
            value = w & 0x0FFFFFFF
            loops += last is not None and value < last
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
            loops += last is not None and v < last
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
