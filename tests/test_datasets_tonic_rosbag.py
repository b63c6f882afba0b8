"""The ROS bag reader (spikeflow.data.io.rosbag) and the bag datasets DAVISDATA, MVSEC
and VPR (spikeflow.data.datasets.rosbag_sets) against Tonic 1.7's classes and
importRosbag reading the very same files.

No bag of these datasets is in ../shared/data, so the tests write small ROS 1 bags
byte for byte (tests/rosbag_samples.py: chunked, indexed, as rosbag writes them) with
every topic Tonic's ``__getitem__`` reads. importRosbag 1.0's EventArray decoder fails
under numpy 2 (``uint8 array * 2**8`` overflows: NEP 50), so the comparisons give its
module a numpy whose ``frombuffer`` widens to int64 first, which computes what it
computed under numpy 1's value-based casting. Tonic's VPR needs pynmea2 (absent), so
its GPS target is checked against hand-derived values instead.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from rosbag_samples import (
    event_messages,
    image,
    imu,
    pose_stamped,
    random_events,
    write_bag,
)
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.datasets.rosbag_sets import (
    DAVISDATA,
    MVSEC,
    MVSEC_SCENES,
    VPR,
    VPR_RECORDINGS,
    read_bag_pose,
    read_nmea_track,
)
from spikeflow.data.io.rosbag import read_rosbag, read_rosbag_events, rosbag_topics
from spikeflow.errors import ConfigurationError, DataFormatError

T0 = 1_400_000_000 * 10**9  # a 2014 epoch time, as the recordings have


@pytest.fixture
def tonic_numpy2(monkeypatch):
    """importRosbag's EventArray decoder, made to run under numpy 2 (see above)."""
    mod = pytest.importorskip("importRosbag.messageTypes.dvs_msgs_EventArray")
    shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    shim.frombuffer = lambda *a, **k: np.frombuffer(*a, **k).astype(np.int64)
    monkeypatch.setattr(mod, "np", shim)
    return pytest.importorskip("tonic")


def poses(n: int, t0: int) -> list:
    rng = np.random.default_rng(3)
    return [
        ("/optitrack/davis", "geometry_msgs/PoseStamped", t0 + k * 4_000_123,
         pose_stamped(t0 + k * 4_000_123, rng.normal(size=7)))
        for k in range(n)
    ]  # fmt: skip


def frames(topic: str, t0: int, shape: tuple[int, int], encoding: bytes = b"mono8") -> list:
    dtype = np.float32 if encoding == b"32FC1" else np.uint8
    return [
        (topic, "sensor_msgs/Image", t0 + k, image(t0 + k, np.full(shape, k, dtype), encoding))
        for k in range(2)
    ]


def davis_bag(path, rng, n=300, with_pose=True, topic="/dvs/events", size=(240, 180)):
    ev = random_events(rng, n, *size, T0 + 123_456_789)
    msgs = event_messages(topic, ev, *size)
    msgs += frames("/dvs/image_raw", T0, size[::-1])
    msgs += [("/dvs/imu", "sensor_msgs/Imu", T0 + 5, imu(T0 + 5))]
    if with_pose:
        msgs += poses(5, T0 + 77)
    write_bag(path, sorted(msgs, key=lambda m: m[2]))
    return ev


def test_bag_events_and_pose_match_importrosbag(tmp_path, tonic_numpy2):
    from importRosbag.importRosbag import importRosbag

    ev = davis_bag(tmp_path / "a.bag", np.random.default_rng(1))
    rec, first = read_rosbag_events(tmp_path / "a.bag")
    ref = importRosbag(str(tmp_path / "a.bag"), log="ERROR", disable_bar=True)
    e = ref["/dvs/events"]
    t_ref = ((e["ts"] - e["ts"][0]) * 1e6).astype(np.int64)  # Tonic's conversion
    assert first == ev[0, 2] and len(rec) == 300 and rec.sensor_size == (240, 180, 2)
    np.testing.assert_array_equal(rec.events["t"], t_ref)
    np.testing.assert_array_equal(rec.events["t"], (ev[:, 2] - ev[0, 2]) // 1000)
    for name, key in (("x", "x"), ("y", "y"), ("p", "pol")):
        np.testing.assert_array_equal(rec.events[name], e[key].astype(np.int64))
    pose = read_bag_pose(tmp_path / "a.bag", "/optitrack/davis")
    o = ref["/optitrack/davis"]
    np.testing.assert_allclose(pose[:, 0], (o["ts"] - o["ts"][0]) * 1e6, atol=0.5)
    np.testing.assert_array_equal(pose[:, 0], np.arange(5) * 4000.123)
    np.testing.assert_array_equal(pose[:, 1:4], o["point"])
    np.testing.assert_array_equal(pose[:, [7, 4, 5, 6]], o["rotation"])  # Tonic's wxyz
    assert rosbag_topics(tmp_path / "a.bag") == {
        "/dvs/events": "dvs_msgs/EventArray", "/dvs/image_raw": "sensor_msgs/Image",
        "/dvs/imu": "sensor_msgs/Imu", "/optitrack/davis": "geometry_msgs/PoseStamped",
    }  # fmt: skip


@pytest.mark.parametrize("compression", ["bz2", "lz4"])
def test_compressed_chunks_read_the_same(tmp_path, compression):
    if compression == "lz4":
        pytest.importorskip("lz4.frame")
    rng = np.random.default_rng(2)
    ev = random_events(rng, 120, 240, 180, T0)
    msgs = event_messages("/dvs/events", ev, 240, 180)
    write_bag(tmp_path / "plain.bag", msgs)
    write_bag(tmp_path / "packed.bag", msgs, compression=compression)
    plain, packed = (read_rosbag_events(tmp_path / f"{n}.bag")[0] for n in ("plain", "packed"))
    np.testing.assert_array_equal(plain.events, packed.events)
    assert len(read_rosbag(tmp_path / "packed.bag")["/dvs/events"].data) == 3


def test_davisdata_matches_tonic(tmp_path, tonic_numpy2):
    rng = np.random.default_rng(4)
    davis_bag(tmp_path / "DAVISDATA" / "boxes_6dof.bag", rng)
    davis_bag(tmp_path / "DAVISDATA" / "urban.bag", rng, n=50, with_pose=False)
    ours = DAVISDATA(tmp_path, ["boxes_6dof", "urban"])
    assert len(ours) == 2 and ours.recordings == ["boxes_6dof", "urban"]
    for i, name in enumerate(ours.recordings):
        (events, _, _), target = tonic_numpy2.datasets.DAVISDATA(str(tmp_path), name)[0]
        rec, pose = ours[i]
        for f in "txyp":
            np.testing.assert_array_equal(rec.events[f], events[f])
        if target is None:
            assert pose is None
        else:
            np.testing.assert_array_equal(pose[:, 0].astype(np.int64), target["ts"])
            np.testing.assert_array_equal(pose[:, 1:4], target["point"])
    frames_ = DAVISDATA(tmp_path, "urban", data_type="frame", frames_number=2)
    assert frames_[0][0].shape == (2, 2, 180, 240) and frames_[0][0].sum() == 50


def mvsec_files(root, rng):
    (data, _), (gt, _) = MVSEC_SCENES["motorcycle"][0]
    folder = root / "MVSEC" / "motorcycle"
    left = random_events(rng, 200, 346, 260, T0)
    right = random_events(rng, 150, 346, 260, T0 + 999)
    msgs = event_messages("/davis/left/events", left, 346, 260)
    msgs += event_messages("/davis/right/events", right, 346, 260)
    for side in ("left", "right"):
        msgs += frames(f"/davis/{side}/image_raw", T0, (260, 346))
        msgs += [(f"/davis/{side}/imu", "sensor_msgs/Imu", T0 + 3, imu(T0 + 3))]
    write_bag(folder / data, sorted(msgs, key=lambda m: m[2]))
    gt_msgs = [
        (t.replace("/optitrack/davis", "/davis/left/pose"), *rest) for t, *rest in poses(4, T0)
    ]
    for name in ("depth_image_raw", "depth_image_rect"):
        for side in ("left", "right"):
            gt_msgs += frames(f"/davis/{side}/{name}", T0, (260, 346), b"32FC1")
    write_bag(folder / gt, gt_msgs)


def test_mvsec_matches_tonic(tmp_path, tonic_numpy2):
    mvsec_files(tmp_path, np.random.default_rng(5))
    (ev_l, ev_r, *_), (_, _, pose_ref) = tonic_numpy2.datasets.MVSEC(str(tmp_path), "motorcycle")[0]
    for camera, ref in (("left", ev_l), ("right", ev_r)):
        ds = MVSEC(tmp_path, "motorcycle", camera=camera)
        rec, pose = ds[0]
        assert len(ds) == 1 and rec.sensor_size == (346, 260, 2) and len(rec) == len(ref)
        for f in "txyp":
            np.testing.assert_array_equal(rec.events[f], ref[f])
    np.testing.assert_array_equal(pose[:, 1:4], pose_ref["point"])
    np.testing.assert_array_equal(pose[:, [7, 4, 5, 6]], pose_ref["rotation"])
    with pytest.raises(ConfigurationError, match="scene must be one of"):
        MVSEC(tmp_path, "indoor")


NMEA = """$GPGSV,3,1,11,01,02,03,04*7A
$GPRMC,120000.00,A,2729.4000,S,15301.2000,E,0.0,0.0,210420,,,A*{rmc1}
$GPGGA,120001.00,2729.4000,S,15301.2000,E,1,08,0.9,10.0,M,0.0,M,,*{gga_same}
$GPGGA,120002.50,2729.4100,S,15301.2100,E,1,08,0.9,10.0,M,0.0,M,,*{gga}
$GPGGA,120003.00,2729.4100,S,15301.2200,E,1,08,0.9,10.0,M,0.0,M,,*{gga_lat_same}
$GPGLL,2729.4200,S,15301.2300,E,120104.00,A,A*00
$GPGLL,2729.4300,S,15301.2400,E,130105.00,A,A*{gll}
"""


def checksum(sentence: str) -> str:
    value = 0
    for ch in sentence[1 : sentence.index("*")].encode():
        value ^= ch
    return f"{value:02X}"


def nmea_text() -> str:
    lines = NMEA.splitlines()
    keys = [None, "rmc1", "gga_same", "gga", "gga_lat_same", None, "gll"]
    out = []
    for line, key in zip(lines, keys, strict=True):
        out.append(line.replace("{" + key + "}", checksum(line)) if key else line)
    return "\n".join(out) + "\n"


def test_read_nmea_track_hand_derived(tmp_path):
    (tmp_path / "g.nmea").write_text(nmea_text())
    track = read_nmea_track(tmp_path / "g.nmea")
    # kept: the RMC fix; the 12:00:02 GGA (both coordinates moved); the last GLL. Dropped:
    # the same position again, a fix whose latitude did not change, a bad checksum (*00)
    lat = [-(27 + 29.40 / 60), -(27 + 29.41 / 60), -(27 + 29.43 / 60)]
    lon = [153 + 1.20 / 60, 153 + 1.21 / 60, 153 + 1.24 / 60]
    np.testing.assert_allclose(track, np.column_stack([lat, lon, [0, 2, 3665]]), rtol=0, atol=1e-12)


def test_vpr_reads_each_traversal(tmp_path):
    rng = np.random.default_rng(6)
    written = []
    for (bag, _), (log, _) in VPR_RECORDINGS:
        ev = random_events(rng, 30, 346, 260, T0)
        write_bag(tmp_path / "VPR" / bag, event_messages("/dvs/events", ev, 346, 260))
        (tmp_path / "VPR" / log).write_text(nmea_text())
        written.append(ev)
    ds = VPR(tmp_path)
    assert len(ds) == 6 and ds.recordings[0] == "dvs_vpr_2020-04-21-17-03-03"
    rec, track = ds[5]
    np.testing.assert_array_equal(rec.events["x"], written[5][:, 0])
    np.testing.assert_array_equal(rec.events["t"], (written[5][:, 2] - written[5][0, 2]) // 1000)
    assert track.shape == (3, 3)


def test_bad_bags_and_missing_files_are_named(tmp_path):
    rng = np.random.default_rng(7)
    with pytest.raises(DatasetNotFoundError, match=r"boxes_6dof\.bag.*download=True.*rpg\.ifi"):
        DAVISDATA(tmp_path, "boxes_6dof")
    with pytest.raises(ConfigurationError, match="'box' is not a DAVISDATA recording"):
        DAVISDATA(tmp_path, "box")
    path = tmp_path / "DAVISDATA" / "boxes_6dof.bag"
    davis_bag(path, rng)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 100])
    with pytest.raises(
        DataFormatError, match=r"boxes_6dof\.bag at byte offset \d+: truncated record"
    ):
        DAVISDATA(tmp_path, "boxes_6dof")[0]
    path.write_bytes(b"#ROSBAG V1.2\n" + whole[13:])
    with pytest.raises(DataFormatError, match=r"at byte offset 0: not a ROS bag 2\.0 file"):
        read_rosbag(path)
    path.write_bytes(whole)
    with pytest.raises(DataFormatError, match=r"no messages on topic '/davis/left/events'"):
        read_rosbag_events(path, "/davis/left/events")
    with pytest.raises(DataFormatError, match=r"outside the 100x100 sensor"):
        read_rosbag_events(path, sensor_size=(100, 100))
    ev = random_events(rng, 5, 240, 180, T0)
    (topic, kind, t, body), *_ = event_messages("/dvs/events", ev, 240, 180)
    write_bag(tmp_path / "short.bag", [(topic, kind, t, body[:-1])])
    with pytest.raises(
        DataFormatError, match=r"short\.bag at byte offset \d+: EventArray .* 5 events"
    ):
        read_rosbag_events(tmp_path / "short.bag")


def test_mvsec_hdf5_release(tmp_path):
    """MVSEC's HDF5 release (not read by Tonic): events [N, 4] (x, y, t s, p ±1) and
    4x4 poses; references: the integer µs the float seconds were made from, and
    quaternions derived by hand (rotations about one axis) and by SciPy."""
    h5py = pytest.importorskip("h5py")
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    rng = np.random.default_rng(9)
    (data, _), (gt, _) = MVSEC_SCENES["outdoor_day"][1]
    folder = tmp_path / "MVSEC" / "outdoor_day"
    folder.mkdir(parents=True)
    us = np.sort(rng.integers(0, 30_000_000, 400))
    us[0] = 0
    xy = np.stack([rng.integers(0, 346, 400), rng.integers(0, 260, 400)], 1)
    p = rng.choice([-1.0, 1.0], 400)
    p[5] = 0.0  # read as 0, like -1
    rows = np.column_stack([xy, 1_504_000_000.25 + us / 1e6, p])
    mats = np.tile(np.eye(4), (3, 1, 1))
    mats[:, :3, 3] = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    mats[1, :3, :3] = rotation.from_rotvec([0, 0, 0.7]).as_matrix()
    mats[2, :3, :3] = rotation.from_rotvec([2.5, -1.0, 0.3]).as_matrix()
    for name in ("outdoor_day1_data.hdf5", "outdoor_day1_gt.hdf5"):
        (folder / name).write_bytes(b"")  # the first recording: present, not read
    with h5py.File(folder / data.replace(".bag", ".hdf5"), "w") as f:
        f["davis/left/events"] = rows
        f["davis/right/events"] = rows[:10]
    with h5py.File(folder / gt.replace(".bag", ".hdf5"), "w") as f:
        f["davis/left/pose"] = mats
        f["davis/left/pose_ts"] = 1_504_000_000.0 + np.array([0.0, 0.05, 0.1])
    ds = MVSEC(tmp_path, "outdoor_day", file_format="hdf5")
    rec, pose = ds[1]
    np.testing.assert_array_equal(rec.events["t"], us)
    np.testing.assert_array_equal(rec.events["x"], xy[:, 0])
    np.testing.assert_array_equal(rec.events["p"], (p > 0).astype(np.int8))
    assert len(MVSEC(tmp_path, "outdoor_day", camera="right", file_format="hdf5")[1][0]) == 10
    np.testing.assert_allclose(pose[:, 0], [0, 50_000, 100_000], atol=0.25)  # float64 epoch s
    np.testing.assert_array_equal(pose[:, 1:4], mats[:, :3, 3])
    np.testing.assert_allclose(pose[0, 4:], [0, 0, 0, 1])
    np.testing.assert_allclose(pose[1, 4:], [0, 0, np.sin(0.35), np.cos(0.35)], atol=1e-12)
    ref = rotation.from_matrix(mats[2, :3, :3]).as_quat()
    np.testing.assert_allclose(pose[2, 4:], ref * np.sign(ref[3]), atol=1e-12)
    with h5py.File(folder / data.replace(".bag", ".hdf5"), "w") as f:
        f["davis/left/events"] = np.column_stack([rows[:, :3], np.full(400, 2.0)])
    with pytest.raises(DataFormatError, match=r"outdoor_day2_data\.hdf5: davis/left/events row 0"):
        ds[1]
    with pytest.raises(ConfigurationError, match="file_format must be 'bag' or 'hdf5'"):
        MVSEC(tmp_path, "outdoor_day", file_format="h5")


def test_one_topic_string_is_refused(tmp_path):
    """A topic passed as one string was a set of its characters: no topic matched and
    the bag read as empty, without a word."""
    path = tmp_path / "one.bag"
    davis_bag(path, np.random.default_rng(8), n=20, with_pose=False)
    assert len(read_rosbag(path, ("/dvs/events",))["/dvs/events"].data) > 0
    with pytest.raises(ConfigurationError, match=r"topics must be a collection .* '/dvs/events'"):
        read_rosbag(path, "/dvs/events")
