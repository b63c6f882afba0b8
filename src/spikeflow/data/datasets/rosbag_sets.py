"""The ROS-bag datasets of Tonic 1.7: the DAVIS event-camera dataset (``DAVISDATA``),
MVSEC (``MVSEC``) and event-based visual place recognition (``VPR``), read with
spikeflow's own ROS 1 bag reader (:mod:`spikeflow.data.io.rosbag`).

Each item is one recording: its events (times in µs from the recording's earliest
event, which is Tonic's first event when the messages are in time order) and a target:
the motion-capture or ground-truth pose (DAVISDATA, MVSEC) or the GPS track (VPR). The
images, IMU and depth maps of Tonic's classes are not read here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow._checks import check_flag
from spikeflow.data.datasets._common import (
    Archive,
    _root_lock,
    how_to_get,
    select_names,
    shown_path,
)
from spikeflow.data.datasets.base import DatasetNotFoundError, NeuromorphicDataset
from spikeflow.data.datasets.dsec import _HDF5_SIGNATURE, read_h5_datasets
from spikeflow.data.download import download_url
from spikeflow.data.events import EVENT_DTYPE, EventRecording, format_error
from spikeflow.data.io._common import import_optional, sort_by_time
from spikeflow.data.io.rosbag import decode_pose_stamped, read_rosbag, read_rosbag_events
from spikeflow.errors import ConfigurationError

__all__ = [
    "DAVISDATA",
    "DAVISDATA_RECORDINGS",
    "MVSEC",
    "MVSEC_ROWS_PER_READ",
    "MVSEC_SCENES",
    "VPR",
    "VPR_RECORDINGS",
    "pose_matrices_to_rows",
    "read_bag_pose",
    "read_mvsec_hdf5_events",
    "read_mvsec_hdf5_pose",
    "read_nmea_track",
]

#: DAVISDATA's recordings and the MD5 of each ``<recording>.bag`` (Tonic 1.7's list).
DAVISDATA_RECORDINGS: dict[str, str] = {
    "boxes_6dof": "c919cebc25e564935abfc0a3954bf016",
    "boxes_rotation": "1ec1ef4f354ce1908ed091703c1f98d0",
    "boxes_translation": "4fd11a69015022c72b375a4d000ee8cd",
    "calibration": "6e67817c7b6d2e95ca5796e89d219bac",
    "dynamic_6dof": "16e8cb3b151da15ff1fe6019b517e695",
    "dynamic_rotation": "77a2b0a87582e10e702365a38dc0c93c",
    "dynamic_translation": "2db36fd0c2945cbace48735f0416c506",
    "hdr_boxes": "67661ed4b472189432e35e8849faf200",
    "hdr_poster": "b59e37b616a3eda81184183b12b0dce5",
    "office_spiral": "60fe934450c558aff90ff5ba6b370a05",
    "office_zigzag": "3eba8fc8f42adbfd394b630852ce1f78",
    "outdoors_running": "7db2de811cb22b71fa34abd4ab1bba6b",
    "outdoors_walking": "2ef9b03c87d3c565d30211b7dcfaabc5",
    "poster_6dof": "e42ef11f523a52f11921cdb4a0fca231",
    "poster_rotation": "abcd843a894546775e5dda3560979edf",
    "poster_translation": "bb6736c56ff38f07cbe72613b72d25ed",
    "shapes_6dof": "9b9495ace2dd82881bcc5c0620dd595f",
    "shapes_rotation": "ee436cfe74b545fa25a2534f3ef021df",
    "shapes_translation": "2a805ba32671b237e4e13c023f276be9",
    "slider_close": "9426bbb70334c7b849dd5dd38eb7f2a9",
    "slider_depth": "b38a7a373f170f4b6aeca4f36e06f71a",
    "slider_far": "0f341da6aec0fd1801129e3d3a9981fa",
    "slider_hdr_close": "34cc10dd212ca1fddd3a8584046d5d1c",
    "slider_hdr_far": "c310f4f2d62cdf7b8d1c0a49315fb253",
    "urban": "c22db0b3ecbcbba8d282b0d8c3393851",
}

#: MVSEC's scenes: each recording's ``(data bag, MD5)``, ``(ground-truth bag, MD5)``
#: (Tonic 1.7's list).
MVSEC_SCENES: dict[str, tuple[tuple[tuple[str, str], tuple[str, str]], ...]] = {
    "outdoor_night": (
        (("outdoor_night1_data.bag", "534bea503649eeb2801316704d6ab041"),
         ("outdoor_night1_gt.bag", "7e169e4048307e01f1a7ba5931ca7d4d")),
        (("outdoor_night2_data.bag", "371ff73324ba94ecb368b4c220dc8e54"),
         ("outdoor_night2_gt.bag", "d235d28f1c93203a1d7738f8e7a67ca3")),
        (("outdoor_night3_data.bag", "fc40889a48de7b28e6e2506125b229ac"),
         ("outdoor_night3_gt.bag", "2bbdffc94f8dd54f71486fcecfc82fe6")),
    ),
    "motorcycle": (
        (("motorcycle_data.bag", "ae1d929563c63c4d15e0e3d3412d41c4"),
         ("motorcycle_gt.bag", "bebf1cd58837abd1ca625ba219b47388")),
    ),
    "indoor_flying": (
        (("indoor_flying1_data.bag", "fd01f35eb52a754e8195d478ed2a00a2"),
         ("indoor_flying1_gt.bag", "277b97ad46f9dba3896f651ca47297aa")),
        (("indoor_flying2_data.bag", "015ac75086b248167e9602b72485e0eb"),
         ("indoor_flying2_gt.bag", "3c7ba64cd7bede77b1809cc151e54ed2")),
        (("indoor_flying3_data.bag", "fda3408d3c72b2d7445540e5bdbd6396"),
         ("indoor_flying3_gt.bag", "cae5648c84ec09d0316a8d4805dee62e")),
        (("indoor_flying4_data.bag", "30ba3a744dcd4408fc4102e88c636acc"),
         ("indoor_flying4_gt.bag", "f050c886fb34f3890fcf85680e267a21")),
    ),
    "outdoor_day": (
        (("outdoor_day1_data.bag", "7438c34b71d08ff38f52cef68834e9be"),
         ("outdoor_day1_gt.bag", "36ec3dcd0a222c4c2102641a2dc91ff0")),
        (("outdoor_day2_data.bag", "536d20bc59720b995df49f925f96b74d"),
         ("outdoor_day2_gt.bag", "69fb399411d7098b3e2cf3850f593e7b")),
    ),
}  # fmt: skip

#: VPR's recordings: ``(bag, MD5)``, ``(NMEA GPS log, MD5)`` (Tonic 1.7's list).
VPR_RECORDINGS: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = (
    (("dvs_vpr_2020-04-21-17-03-03.bag", "04473f623aec6bda3d7eadfecfc1b2ce"),
     ("20200421_170039-sunset1_concat.nmea", "11f0107a4df845fd315e9134fbee5c1e")),
    (("dvs_vpr_2020-04-22-17-24-21.bag", "ca6db080a4054196fe65825bce3db351"),
     ("20200422_172431-sunset2_concat.nmea", "ff879bf22a9552a6d8500a98cff6c7f9")),
    (("dvs_vpr_2020-04-24-15-12-03.bag", "909569732e323ff04c94379a787f2a69"),
     ("20200424_151015-daytime_concat.nmea", "867fdf43ef393ac7e8de251c1a5cd585")),
    (("dvs_vpr_2020-04-27-18-13-29.bag", "e80b6c0434690908d855445792d4de3b"),
     ("20200427_181204-night_concat.nmea", "441e6673e0dfc8746f76cd646c4aba8d")),
    (("dvs_vpr_2020-04-28-09-14-11.bag", "7854ede61c0947adb0f072a041dc3bad"),
     ("20200428_091154-morning_concat.nmea", "b86af464ceac478711e52ef4271c198c")),
    (("dvs_vpr_2020-04-29-06-20-23.bag", "d7ccfeb6539f1e7b077ab4fe6f45193c"),
     ("20200429_061912-sunrise_concat.nmea", "ec04cf35c10eb5b519b11297adef024b")),
)  # fmt: skip


def read_bag_pose(path: str | os.PathLike, topic: str) -> np.ndarray | None:
    """The ``geometry_msgs/PoseStamped`` poses of ``topic`` in a bag as a float64 array
    ``[N, 8]`` of rows ``(t, x, y, z, qx, qy, qz, qw)``: ``t`` in µs from the topic's
    earliest stamp, rows stably sorted by it (Tonic counts from the first stamp in
    message order, ``ts - ts[0]``, which is the earliest in a bag written in time order;
    out of order, Tonic's times go negative), the quaternion in ROS's order (Tonic's
    ``rotation`` is ``(qw, qx, qy, qz)``). ``None`` when the bag has no such topic
    (Tonic's ``DAVISDATA`` target for recordings without motion capture).

    Raises:
        DataFormatError: a bad bag (:func:`~spikeflow.data.io.rosbag.read_rosbag`) or
            pose message.
    """
    found = read_rosbag(path, (topic,))
    if topic not in found:
        return None
    t_ns, pose = decode_pose_stamped(found[topic], path)
    order = np.argsort(t_ns, kind="stable")
    t_ns, pose = t_ns[order], pose[order]
    return np.column_stack([(t_ns - t_ns[0]) / 1000.0, pose])


_NMEA_LATLON = {"GGA": (1, 0), "RMC": (2, 0), "GLL": (0, 4)}  # lat field, time field


def _nmea_degrees(value: str, hemisphere: str, negative: str) -> float:
    if not value or value == "0":
        return 0.0
    m = re.fullmatch(r"(\d+)(\d\d\.\d+)", value)
    if m is None:
        raise ValueError(value)
    degrees = float(m.group(1)) + float(m.group(2)) / 60
    return -degrees if hemisphere == negative else degrees if hemisphere else 0.0


def read_nmea_track(path: str | os.PathLike) -> np.ndarray:
    """The GPS track of an NMEA 0183 log as Tonic 1.7's ``VPR.read_gps_file`` builds it
    (with pynmea2; this reads the same sentences without it): rows ``(latitude,
    longitude, seconds)`` in decimal degrees (south and west negative) and whole
    seconds since the first parsed sentence's time of day (hours, minutes and seconds
    only, as Tonic's).

    Positions come from the GGA, RMC and GLL sentences (any talker). A fix is kept when
    neither coordinate is 0, both differ from the last kept fix and it lies more than
    0.0001 degrees (Euclidean, in degrees) from it. Lines that are no NMEA sentence,
    fail their ``*hh`` checksum or have a malformed field are skipped, as pynmea2's
    ``ParseError`` makes Tonic skip them; other sentence types only set the first time.

    Returns:
        A float64 array ``[N, 3]`` (``[0, 3]`` without fixes).

    Raises:
        DataFormatError: the file is not text (naming it).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise format_error(path, exc.start, "not a text NMEA log (invalid UTF-8)") from None
    rows: list[tuple[float, float, int]] = []
    first: tuple[int, int, int] | None = None
    last = (0.0, 0.0)
    for line in lines:
        line = line.strip()
        m = re.fullmatch(r"\$([A-Z]{2})([A-Z]{3}),([^*]*)(?:\*([0-9A-Fa-f]{2}))?", line)
        if m is None:
            continue
        if m.group(4) is not None:
            check = 0
            for ch in line[1 : line.index("*")].encode("ascii", "replace"):
                check ^= ch
            if check != int(m.group(4), 16):
                continue
        kind, fields = m.group(2), m.group(3).split(",")
        if kind not in _NMEA_LATLON:
            continue  # pynmea2 has no position (or timestamp) for these
        lat_at, time_at = _NMEA_LATLON[kind]
        try:
            stamp = fields[time_at]
            hms = (int(stamp[0:2]), int(stamp[2:4]), int(stamp[4:6])) if stamp else None
            lat = _nmea_degrees(fields[lat_at], fields[lat_at + 1], "S")
            lon = _nmea_degrees(fields[lat_at + 2], fields[lat_at + 3], "W")
        except (IndexError, ValueError):
            continue
        if hms is None:
            continue
        if first is None:
            first = hms
        if (
            lat != 0
            and lon != 0
            and lat != last[0]
            and lon != last[1]
            and float(np.hypot(lat - last[0], lon - last[1])) > 0.0001
        ):
            seconds = (hms[0] - first[0]) * 3600 + (hms[1] - first[1]) * 60 + hms[2] - first[2]
            rows.append((lat, lon, seconds))
            last = (lat, lon)
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


@contextmanager
def _h5_dataset(path: Path, name: str) -> Iterator[Any]:
    """The h5py dataset ``name`` of ``path``, its file open (not read) while in use.

    Raises:
        DataFormatError: not an HDF5 file, no such dataset, or a file h5py cannot read.
    """
    h5py = import_optional("h5py", "MVSEC event files", "h5py")
    with open(path, "rb") as f:
        if f.read(8) != _HDF5_SIGNATURE:
            raise format_error(path, 0, "not an HDF5 file (no HDF5 signature at offset 0)")
    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                raise format_error(path, None, f"no dataset {name!r}")
            yield f[name]
    except OSError as exc:
        raise format_error(path, None, f"h5py cannot read the file ({exc})") from None


#: Rows of MVSEC's ``[N, 4]`` event dataset that :func:`read_mvsec_hdf5_events` reads
#: per slice (8 MiB of float64): the memory is the events plus one slice's temporaries.
MVSEC_ROWS_PER_READ = 1 << 18


def read_mvsec_hdf5_events(
    path: str | os.PathLike, camera: str = "left", sensor_size: tuple[int, int] = (346, 260)
) -> EventRecording:
    """The events of MVSEC's HDF5 release, ``<name>_data.hdf5``: dataset
    ``davis/<camera>/events`` of ``[N, 4]`` rows ``(x, y, t, p)``, ``t`` in seconds
    (float64) and ``p`` -1/+1. Times become µs from the earliest event: each rounded to
    the nearest µs from the first row's time (the bag's are floored from exact
    nanoseconds; float seconds of epoch times hold about 0.2 µs), then shifted by the
    smallest (0 when the rows are in time order, as MVSEC's are); ``p`` becomes 0/1 (a
    stored 0 is 0); events are stably sorted by time when the file's are not.

    The dataset is read through h5py in slices of :data:`MVSEC_ROWS_PER_READ` rows,
    each checked and decoded into the output, so the memory is the events (13 bytes
    each) and one slice, not the whole ``[N, 4]`` float64 array and its columns
    (about 6.6x less at 20 M events; ``docs/datasets.md``).

    Raises:
        DataFormatError: not HDF5, no such dataset, another shape or a non-numeric
            dtype, a fractional, non-finite or out-of-sensor pixel, a non-finite time,
            or a polarity other than -1, 0, 1 (naming the file, dataset and row).
    """
    path = Path(path)
    name = f"davis/{camera}/events"
    with _h5_dataset(path, name) as data:
        if data.ndim != 2 or data.shape[1] != 4:
            raise format_error(
                path, None, f"{name} has shape {data.shape}, not [N, 4] (x, y, t, p)"
            )
        if data.dtype.kind not in "iuf":
            raise format_error(path, None, f"{name} has non-numeric dtype {data.dtype}")
        n = int(data.shape[0])
        events = np.empty(n, EVENT_DTYPE)
        t0, low = 0.0, 0
        for lo in range(0, n, MVSEC_ROWS_PER_READ):
            rows = np.asarray(data[lo : lo + MVSEC_ROWS_PER_READ], dtype=np.float64)
            if lo == 0:
                t0 = float(rows[0, 2])
            us = _mvsec_rows(rows, lo, t0, sensor_size, name, path, events)
            low = min(low, int(us.min()))
    if low < 0:  # rows out of time order, an earlier one below the first
        events["t"] -= low
    return EventRecording(sort_by_time(events), (*sensor_size, 2), str(path))


def _mvsec_rows(
    rows: np.ndarray, lo: int, t0: float, sensor_size: tuple[int, int], name: str,
    path: Path, events: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Check MVSEC rows ``lo...`` (float64 ``[k, 4]``) and decode them into
    ``events[lo:lo + k]`` (``t``: µs from ``t0`` s, rounded); returns those times."""
    x, y, t, p = rows.T
    bad = np.flatnonzero(~np.isfinite(t) | ~np.isin(p, (-1.0, 0.0, 1.0)))
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, None, f"{name} row {lo + i}: t = {float(t[i])!r} s, p = {float(p[i])!r} "
            "(a finite time and a polarity of -1, 0 or 1 expected)"
        )  # fmt: skip
    for what, v, size in (("x", x, sensor_size[0]), ("y", y, sensor_size[1])):
        bad = np.flatnonzero(~((v >= 0) & (v < size) & (v == np.floor(v))))
        if bad.size:
            i = int(bad[0])
            raise format_error(
                path, None, f"{name} row {lo + i}: {what} = {float(v[i])!r} is no pixel of the "
                f"{sensor_size[0]}x{sensor_size[1]} sensor (a whole number in [0, {size}))"
            )  # fmt: skip
    us = np.rint((t - t0) * 1e6).astype(np.int64)
    out = events[lo : lo + len(rows)]
    out["t"], out["x"], out["y"], out["p"] = us, x, y, p > 0
    return us


def pose_matrices_to_rows(t_us: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Homogeneous ``[N, 4, 4]`` poses as ``[N, 8]`` rows ``(t, x, y, z, qx, qy, qz,
    qw)``: the translation column and the rotation's unit quaternion with ``qw >= 0``
    (each component's size from the diagonal, its sign from the off-diagonal
    differences).

    Raises:
        ConfigurationError: ``matrices`` is not ``[N, 4, 4]`` or ``t_us`` not ``[N]``.
    """
    m = np.asarray(matrices, np.float64)
    t = np.asarray(t_us, np.float64)
    if m.ndim != 3 or m.shape[1:] != (4, 4) or t.shape != (m.shape[0],):
        raise ConfigurationError(
            f"pose_matrices_to_rows: expected [N] times and [N, 4, 4] matrices; got "
            f"{t.shape} and {m.shape}"
        )
    r = m[:, :3, :3]
    d0, d1, d2 = r[:, 0, 0], r[:, 1, 1], r[:, 2, 2]
    qw = np.sqrt(np.maximum(0.0, 1 + d0 + d1 + d2)) / 2
    qx = np.copysign(np.sqrt(np.maximum(0.0, 1 + d0 - d1 - d2)) / 2, r[:, 2, 1] - r[:, 1, 2])
    qy = np.copysign(np.sqrt(np.maximum(0.0, 1 - d0 + d1 - d2)) / 2, r[:, 0, 2] - r[:, 2, 0])
    qz = np.copysign(np.sqrt(np.maximum(0.0, 1 - d0 - d1 + d2)) / 2, r[:, 1, 0] - r[:, 0, 1])
    return np.column_stack([t, m[:, :3, 3], qx, qy, qz, qw])


def read_mvsec_hdf5_pose(path: str | os.PathLike) -> np.ndarray:
    """The ground-truth pose of MVSEC's HDF5 release, ``<name>_gt.hdf5``: datasets
    ``davis/left/pose`` (``[N, 4, 4]`` homogeneous matrices) and ``davis/left/pose_ts``
    (seconds), as :func:`read_bag_pose`'s ``[N, 8]`` rows (``t`` µs from the first
    pose; :func:`pose_matrices_to_rows`).

    Raises:
        DataFormatError: not HDF5, a missing dataset, or shapes that do not match.
    """
    path = Path(path)
    raw = read_h5_datasets(path, ("davis/left/pose", "davis/left/pose_ts"), "MVSEC")
    pose, ts = raw["davis/left/pose"], np.asarray(raw["davis/left/pose_ts"], np.float64)
    if pose.ndim != 3 or pose.shape[1:] != (4, 4) or ts.shape != (pose.shape[0],):
        raise format_error(
            path, None, f"davis/left/pose has shape {pose.shape} and davis/left/pose_ts "
            f"{ts.shape}; expected [N, 4, 4] and [N]"
        )  # fmt: skip
    return pose_matrices_to_rows((ts - ts[0]) * 1e6 if ts.size else ts, pose)


class _BagDataset(NeuromorphicDataset):
    """A dataset of ROS bags: subclasses set ``folder``, ``event_topic``, the recordings
    (``self.recordings``: names; ``self._files``: ``[(file name, md5)]`` per recording,
    the first its events bag) and ``_target_of``."""

    classes: ClassVar[tuple[str, ...]] = ()
    downloadable: ClassVar[bool] = True
    base_url: ClassVar[str]
    folder: ClassVar[str]
    title: ClassVar[str]
    event_topic: ClassVar[str] = "/dvs/events"
    recordings: list[str]
    _files: list[list[tuple[str, str | None]]]

    def _url(self, recording: int, name: str) -> str:
        return self.base_url + name

    def _place(self, name: str) -> Path:
        return self.root / self.folder / name

    @property
    def split(self) -> str:
        """``"all"``: these datasets have no train/test split."""
        return "all"

    def _find_samples(self) -> list[tuple[Path, int]]:
        wanted = [(i, n, md5) for i, files in enumerate(self._files) for n, md5 in files]
        missing = [(i, n, md5) for i, n, md5 in wanted if not self._place(n).is_file()]
        if missing and not self.download:
            archives = [Archive(n, md5, self._url(i, n)) for i, n, md5 in missing]
            advice = how_to_get(self.title, self._place(""), archives, self.homepage, self.layout)
            raise DatasetNotFoundError(
                f"{self.title}: {len(missing)} file(s) missing, e.g. "
                f"{shown_path(self._place(missing[0][1]))}. {advice}"
            )
        if missing:
            with _root_lock(self.root):
                for i, n, md5 in missing:
                    download_url(self._url(i, n), self._place(n), md5=md5)
        return [(self._place(files[0][0]), i) for i, files in enumerate(self._files)]

    def _read(self, path: Path) -> EventRecording:
        return read_rosbag_events(path, self.event_topic, self.sensor_size[:2])[0]

    @property
    def targets(self) -> list[Any]:  # type: ignore[override]
        """Every recording's target, in order (reads each target file)."""
        return [self._target_of(i) for i in range(len(self))]


class DAVISDATA(_BagDataset):
    """The event-camera dataset of Mueggler et al. ("The event-camera dataset and
    simulator", IJRR 2017) as Tonic 1.7's ``DAVISDATA`` reads it: one ROS bag per
    recording, ``root/DAVISDATA/<recording>.bag``, events of topic ``/dvs/events`` from
    a DAVIS240C (240x180, 2 polarities).

    ``recording`` is ``"all"`` (the 25 of :data:`DAVISDATA_RECORDINGS`), a name or a list
    of names. ``download=True`` fetches missing bags from ``rpg.ifi.uzh.ch`` (Tonic's
    URLs, MD5-checked). Each item is ``(sample, pose)``: the sample as in
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`, the pose the motion capture
    of topic ``/optitrack/davis`` (:func:`read_bag_pose`: ``[N, 8]`` rows ``(t µs,
    x, y, z, qx, qy, qz, qw)``), or ``None`` for a recording without it (Tonic's).
    The images and IMU of Tonic's data tuple are not read.
    """

    sensor_size = (240, 180, 2)
    homepage = "https://rpg.ifi.uzh.ch/davis_data.html"
    base_url: ClassVar[str] = "http://rpg.ifi.uzh.ch/datasets/davis/"
    folder: ClassVar[str] = "DAVISDATA"
    title: ClassVar[str] = "DAVISDATA"
    layout = "<root>/DAVISDATA/<recording>.bag"
    pose_topic: ClassVar[str] = "/optitrack/davis"

    def __init__(
        self,
        root: str | os.PathLike,
        recording: str | list[str] | tuple[str, ...] = "all",
        *args: Any,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        self.recordings = select_names(
            "DAVISDATA", recording, DAVISDATA_RECORDINGS, "recording",
            f"a DAVISDATA recording (one of {list(DAVISDATA_RECORDINGS)})",
        )  # fmt: skip
        self._files = [[(f"{r}.bag", DAVISDATA_RECORDINGS[r])] for r in self.recordings]
        self.download = check_flag("DAVISDATA", "download", download)
        super().__init__(root, True, *args, **kwargs)

    def _target_of(self, index: int) -> Any:
        return read_bag_pose(self.samples[index][0], self.pose_topic)


class MVSEC(_BagDataset):
    """The Multi Vehicle Stereo Event Camera dataset (Zhu et al., RA-L 2018) as Tonic
    1.7's ``MVSEC`` reads it: each recording of a scene is a data bag and a ground-truth
    bag, ``root/MVSEC/<scene>/<name>_data.bag`` and ``<name>_gt.bag``
    (:data:`MVSEC_SCENES`); events of ``/davis/<camera>/events`` from a DAVIS346
    (346x260, 2 polarities).

    ``scene`` is ``"indoor_flying"``, ``"outdoor_day"``, ``"outdoor_night"`` or
    ``"motorcycle"``; ``camera`` (keyword) ``"left"`` (default) or ``"right"``.
    ``file_format="hdf5"`` reads MVSEC's HDF5 release instead (not Tonic's), the same
    names with ``.hdf5`` (:func:`read_mvsec_hdf5_events`, :func:`read_mvsec_hdf5_pose`;
    no published checksum).
    ``download=True`` fetches missing bags from ``visiondata.cis.upenn.edu`` (Tonic's
    URLs, MD5-checked; GBs each). Each item is ``(sample, pose)``: the pose the ground
    truth ``/davis/left/pose`` of the gt bag (:func:`read_bag_pose`; Tonic's third
    target). Not read: the depth maps, images and IMU of Tonic's tuples.
    """

    sensor_size = (346, 260, 2)
    homepage = "https://daniilidis-group.github.io/mvsec/"
    base_url: ClassVar[str] = "http://visiondata.cis.upenn.edu/mvsec/"
    folder: ClassVar[str] = "MVSEC"
    title: ClassVar[str] = "MVSEC"
    layout = "<root>/MVSEC/<scene>/<scene><n>_data.{bag,hdf5} with <scene><n>_gt.{bag,hdf5}"
    sample_options = ("camera", "file_format")
    pose_topic: ClassVar[str] = "/davis/left/pose"

    def __init__(
        self,
        root: str | os.PathLike,
        scene: str = "indoor_flying",
        *args: Any,
        camera: str = "left",
        file_format: str = "bag",
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        if file_format not in ("bag", "hdf5"):
            raise ConfigurationError(
                f"MVSEC: file_format must be 'bag' or 'hdf5'; got {file_format!r}"
            )
        if scene not in MVSEC_SCENES:
            raise ConfigurationError(
                f"MVSEC: scene must be one of {list(MVSEC_SCENES)}; got {scene!r}"
            )
        if camera not in ("left", "right"):
            raise ConfigurationError(f"MVSEC: camera must be 'left' or 'right'; got {camera!r}")
        self.scene, self.camera, self.file_format = scene, camera, file_format
        self._files = [list(pair) for pair in MVSEC_SCENES[scene]]
        if file_format == "hdf5":
            self._files = [[(n[: -len(".bag")] + ".hdf5", None) for n, _ in f] for f in self._files]
        self.recordings = [data[: -len("_data.bag")] for (data, _), _ in MVSEC_SCENES[scene]]
        self.download = check_flag("MVSEC", "download", download)
        super().__init__(root, True, *args, **kwargs)

    @property
    def event_topic(self) -> str:  # type: ignore[override]
        """``/davis/<camera>/events``."""
        return f"/davis/{self.camera}/events"

    def _place(self, name: str) -> Path:
        return self.root / self.folder / self.scene / name

    def _url(self, recording: int, name: str) -> str:
        return f"{self.base_url}{self.scene}/{name}"

    def _read(self, path: Path) -> EventRecording:
        if self.file_format == "hdf5":
            return read_mvsec_hdf5_events(path, self.camera, self.sensor_size[:2])
        return super()._read(path)

    def _target_of(self, index: int) -> Any:
        gt = self._place(self._files[index][1][0])
        if self.file_format == "hdf5":
            return read_mvsec_hdf5_pose(gt)
        return read_bag_pose(gt, self.pose_topic)


class VPR(_BagDataset):
    """Event-based visual place recognition (Fischer and Milford, "Event-Based Visual
    Place Recognition With Ensembles of Temporal Windows", RA-L 2020) as Tonic 1.7's
    ``VPR`` reads it: 6 traversals of one route, each a bag
    ``root/VPR/dvs_vpr_<date>.bag`` (events of ``/dvs/events``, DAVIS346: 346x260, 2
    polarities) and a GPS log ``root/VPR/<date>-<time of day>_concat.nmea``
    (:data:`VPR_RECORDINGS`).

    ``download=True`` fetches missing files from zenodo.org/record/4302805 (Tonic's
    URLs, MD5-checked). Each item is ``(sample, track)``: the track the GPS fixes of the
    log (:func:`read_nmea_track`, what Tonic's ``read_gps_file`` returns, without
    pynmea2). Not read: the images and IMU of Tonic's data tuple.
    """

    sensor_size = (346, 260, 2)
    homepage = "https://zenodo.org/record/4302805"
    base_url: ClassVar[str] = "https://zenodo.org/record/4302805/files/"
    folder: ClassVar[str] = "VPR"
    title: ClassVar[str] = "VPR"
    layout = "<root>/VPR/dvs_vpr_<date>.bag with <date>-<time>_concat.nmea"

    def __init__(
        self, root: str | os.PathLike, *args: Any, download: bool = False, **kwargs: Any
    ) -> None:
        self._files = [list(pair) for pair in VPR_RECORDINGS]
        self.recordings = [bag[: -len(".bag")] for (bag, _), _ in VPR_RECORDINGS]
        self.download = check_flag("VPR", "download", download)
        super().__init__(root, True, *args, **kwargs)

    def _target_of(self, index: int) -> Any:
        return read_nmea_track(self._place(self._files[index][1][0]))
