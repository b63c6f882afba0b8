"""DSEC (Gehrig et al., 2021; Tonic's ``DSEC``), the event part: stereo 640x480 event
cameras on a car, one HDF5 ``events.h5`` per recording and camera."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow._checks import check_flag
from spikeflow.data._indexing import check_index
from spikeflow.data.datasets._common import Archive, prepare_dataset_root
from spikeflow.data.datasets.base import NeuromorphicDataset
from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import as_int64, first_decrease, import_optional
from spikeflow.errors import ConfigurationError

__all__ = ["DSEC_RECORDINGS", "DSECEvents", "read_dsec_events"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: The recordings of each split, as Tonic 1.7's ``DSEC`` lists them (the DSEC site's).
DSEC_RECORDINGS: dict[str, tuple[str, ...]] = {
    "train": (
        *(f"interlaken_00_{c}" for c in "cdefg"),
        "thun_00_a",
        "zurich_city_00_a", "zurich_city_00_b",
        *(f"zurich_city_01_{c}" for c in "abcdef"),
        *(f"zurich_city_02_{c}" for c in "abcde"),
        "zurich_city_03_a",
        *(f"zurich_city_04_{c}" for c in "abcdef"),
        "zurich_city_05_a", "zurich_city_05_b",
        "zurich_city_06_a", "zurich_city_07_a", "zurich_city_08_a",
        *(f"zurich_city_09_{c}" for c in "abcde"),
        "zurich_city_10_a", "zurich_city_10_b",
        *(f"zurich_city_11_{c}" for c in "abc"),
    ),
    "test": (
        "thun_01_a", "thun_01_b", "interlaken_00_a", "interlaken_00_b", "interlaken_01_a",
        "zurich_city_12_a", "zurich_city_13_a", "zurich_city_13_b", "zurich_city_14_a",
        "zurich_city_14_b", "zurich_city_14_c", "zurich_city_15_a",
    ),
}  # fmt: skip


def read_h5_datasets(path: Path, names: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """The HDF5 datasets ``names`` of ``path`` as arrays (``hdf5plugin`` imported first
    when installed: the DSEC and TUM-VIE releases compress with Blosc).

    Raises:
        DataFormatError: not an HDF5 file, a missing dataset, or a file h5py cannot read
            (the message names ``what``'s compression and ``hdf5plugin``).
    """
    h5py = import_optional("h5py", f"{what} event files", "h5py")
    try:
        import hdf5plugin  # noqa: F401  (registers the Blosc filter the releases use)
    except ImportError:
        pass
    with open(path, "rb") as f:
        if f.read(8) != _HDF5_SIGNATURE:
            raise format_error(path, 0, "not an HDF5 file (no HDF5 signature at offset 0)")
    raw: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            for name in names:
                if name not in f:
                    raise format_error(path, None, f"no dataset {name!r}")
                raw[name] = np.asarray(f[name][()])
    except OSError as exc:
        raise format_error(
            path, None, f"h5py cannot read the file ({exc}); {what} compresses its events "
            "with Blosc: pip install hdf5plugin"
        ) from None  # fmt: skip
    return raw


def checked_xytp(
    path: Path, raw: dict[str, np.ndarray], sensor_size: tuple[int, int], t_offset: int = 0
) -> EventRecording:
    """The recording of datasets ``events/{x,y,t,p}`` in ``raw`` (times ``t + t_offset``).

    Raises:
        DataFormatError: fields of different lengths, a value that is not a whole
            number, a polarity other than 0/1, a pixel outside ``sensor_size`` or a time
            that goes backwards (naming ``path`` and the row).
    """
    sizes = {n: raw[f"events/{n}"].size for n in "xytp"}
    if len(set(sizes.values())) != 1:
        raise format_error(path, None, f"the events/ datasets differ in length: {sizes}")
    x, y, t, p = (as_int64(raw[f"events/{n}"], f"events/{n}", path) for n in "xytp")
    t = t + t_offset
    width, height = sensor_size
    bad = np.flatnonzero((x < 0) | (y < 0) | (x >= width) | (y >= height) | (p < 0) | (p > 1))
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, None, f"event {i} (x={x[i]}, y={y[i]}, p={p[i]}) lies outside the "
            f"{width}x{height} sensor or has a polarity other than 0/1"
        )  # fmt: skip
    i = first_decrease(t)
    if i >= 0:
        raise format_error(
            path, None, f"events/t row {i}: time goes backwards ({t[i - 1]} -> {t[i]} us)"
        )
    return EventRecording(make_events(t, x, y, p.astype(np.int8)), (width, height, 2), str(path))


def read_dsec_events(
    path: str | os.PathLike, sensor_size: tuple[int, int] = (640, 480)
) -> tuple[EventRecording, np.ndarray]:
    """Read a DSEC ``events.h5``: group ``events`` with datasets ``x``, ``y``, ``t``
    (µs, relative), ``p`` (0/1), the scalar ``t_offset`` (µs) and ``ms_to_idx`` (index
    of the first event at or after each millisecond). Times are ``t + t_offset``, as
    Tonic's ``DSEC`` makes them.

    The release compresses the datasets with Blosc: install ``hdf5plugin`` (it is
    imported here when present) or h5py cannot read them.

    Returns:
        The recording and ``ms_to_idx`` (int64).

    Raises:
        DataFormatError: not an HDF5 file, a missing dataset, fields of different
            lengths, a compression filter h5py lacks (the message says to install
            ``hdf5plugin``), a polarity other than 0/1, a pixel outside ``sensor_size``
            or a time that goes backwards (naming the file, dataset and row).
    """
    path = Path(path)
    raw = read_h5_datasets(
        path, ("events/x", "events/y", "events/t", "events/p", "t_offset", "ms_to_idx"), "DSEC"
    )
    if raw["t_offset"].size != 1:
        raise format_error(
            path, None, f"t_offset must be a scalar; got shape {raw['t_offset'].shape}"
        )
    offset = int(as_int64(raw["t_offset"], "t_offset", path)[0])
    rec = checked_xytp(path, raw, sensor_size, t_offset=offset)
    return rec, as_int64(raw["ms_to_idx"], "ms_to_idx", path, non_negative=True)


class DSECEvents(NeuromorphicDataset):
    """DSEC (Gehrig et al., "DSEC: A Stereo Event Camera Dataset for Driving Scenarios",
    RA-L 2021), the event recordings as Tonic 1.7's ``DSEC`` reads them with
    ``data_selection="events_left"`` or ``"events_right"``: one sample per recording,
    640x480 pixels, 2 polarities, times ``t + t_offset`` µs (:func:`read_dsec_events`).
    The images, disparity and optical-flow targets of Tonic's class are not read here.

    Layout (Tonic's): ``root/DSEC/<recording>/events_<camera>/events.h5``. ``split``
    is ``"train"`` (41 recordings) or ``"test"`` (12) (:data:`DSEC_RECORDINGS`), or a
    recording name or list of names from one split. ``camera`` (keyword) is
    ``"left"`` (default) or ``"right"``. ``download=True`` fetches each missing
    ``<recording>_events_<camera>.zip`` from ``download.ifi.uzh.ch/rpg/DSEC/`` (Tonic's
    URLs; DSEC publishes no checksums) into ``root`` and extracts it into the
    recording's folder; the zips are several GB each. Reading needs ``hdf5plugin`` for
    the release's Blosc compression.

    Each item is ``(sample, recording name)``: the sample as in
    :class:`~spikeflow.data.datasets.NeuromorphicDataset` (an EventRecording, or frames
    ``[T, 2, 480, 640]``); :meth:`ms_to_idx` gives the file's millisecond index for
    slicing. :attr:`classes` is empty. Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (640, 480, 2)
    classes: ClassVar[tuple[str, ...]] = ()
    homepage = "https://dsec.ifi.uzh.ch/"
    downloadable: ClassVar[bool] = True
    base_url: ClassVar[str] = "https://download.ifi.uzh.ch/rpg/DSEC/"
    layout = "<root>/DSEC/<recording>/events_{left,right}/events.h5"
    sample_options = ("camera",)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | list[str] | tuple[str, ...] = "train",
        *args: Any,
        camera: str = "left",
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        if camera not in ("left", "right"):
            raise ConfigurationError(
                f"DSECEvents: camera must be 'left' or 'right'; got {camera!r}"
            )
        self.camera = camera
        self.recordings, self._split = self._select(split)
        self.download = check_flag("DSECEvents", "download", download)
        super().__init__(root, self._split == "train", *args, **kwargs)

    @staticmethod
    def _select(split: Any) -> tuple[list[str], str]:
        if split in ("train", "test"):
            return list(DSEC_RECORDINGS[split]), split
        names = (
            [split]
            if isinstance(split, str)
            else list(split)
            if isinstance(split, list | tuple)
            else None
        )
        if not names or not all(isinstance(n, str) for n in names):
            raise ConfigurationError(
                f"DSECEvents: split must be 'train', 'test' or recording names; got {split!r}"
            )
        for n in names:
            if n not in DSEC_RECORDINGS["train"] and n not in DSEC_RECORDINGS["test"]:
                raise ConfigurationError(
                    f"DSECEvents: {n!r} is not a DSEC recording (DSEC_RECORDINGS)"
                )
        for which in ("train", "test"):
            if all(n in DSEC_RECORDINGS[which] for n in names):
                return names, which
        raise ConfigurationError(f"DSECEvents: {names} mix train and test recordings")

    @property
    def split(self) -> str:
        """``"train"`` or ``"test"`` (the split of the selected recordings)."""
        return self._split

    def _path(self, recording: str) -> Path:
        return self.root / "DSEC" / recording / f"events_{self.camera}" / "events.h5"

    def _archive(self, recording: str) -> Archive:
        name = f"{recording}_events_{self.camera}.zip"
        url = f"{self.base_url}{self._split}/{recording}/{name}"
        return Archive(name, None, url, into=f"DSEC/{recording}/events_{self.camera}")

    def _find_samples(self) -> list[tuple[Path, int]]:
        samples = []
        for number, recording in enumerate(self.recordings):
            path = self._path(recording)
            prepare_dataset_root(
                self, "DSEC", path, [self._archive(recording)], download=self.download
            )
            samples.append((path, number))
        return samples

    def _read(self, path: Path) -> EventRecording:
        return read_dsec_events(path, self.sensor_size[:2])[0]

    def ms_to_idx(self, index: int) -> np.ndarray:
        """Recording ``index``'s ``ms_to_idx`` (first event at or after each ms)."""
        index = check_index("DSECEvents", index, len(self))
        return read_dsec_events(self.samples[index][0], self.sensor_size[:2])[1]

    @property
    def targets(self) -> list[str]:  # type: ignore[override]
        """The recording names, in order."""
        return list(self.recordings)

    def _target_of(self, index: int) -> Any:
        return self.recordings[index]
