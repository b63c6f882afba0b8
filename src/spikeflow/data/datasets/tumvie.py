"""TUM-VIE (Klenk et al., 2021; Tonic's ``TUMVIE``), the event part: stereo Prophesee
Gen4 HD event cameras (1280x720) in handheld and head-mounted sequences, one HDF5 file
per recording and camera."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from spikeflow._checks import check_flag
from spikeflow.data.datasets._common import (
    Archive,
    _root_lock,
    how_to_get,
    select_names,
    shown_path,
)
from spikeflow.data.datasets.base import DatasetNotFoundError, NeuromorphicDataset
from spikeflow.data.datasets.dsec import checked_xytp, read_h5_datasets
from spikeflow.data.download import download_url
from spikeflow.data.events import EventRecording
from spikeflow.errors import ConfigurationError

__all__ = ["TUMVIE", "TUMVIE_RECORDINGS", "read_tumvie_events"]

#: The recordings as Tonic 1.7's ``TUMVIE`` lists them (``bike-night`` is the site's
#: ``bike-dark``).
TUMVIE_RECORDINGS: tuple[str, ...] = (
    "mocap-1d-trans", "mocap-3d-trans", "mocap-6dof", "mocap-desk", "mocap-desk2",
    "mocap-shake", "mocap-shake2", "office-maze", "running-easy", "running-hard",
    "skate-easy", "skate-hard", "loop-floor0", "loop-floor1", "loop-floor2", "loop-floor3",
    "floor2-dark", "slide", "bike-easy", "bike-hard", "bike-night",
)  # fmt: skip


def read_tumvie_events(
    path: str | os.PathLike, sensor_size: tuple[int, int] = (1280, 720)
) -> EventRecording:
    """Read a TUM-VIE ``<recording>-events_<camera>.h5``: group ``events`` with datasets
    ``x``, ``y``, ``t`` (µs), ``p`` (0/1), the fields Tonic's ``TUMVIE`` reads (times
    as stored). The release compresses with Blosc: install ``hdf5plugin``.

    Raises:
        DataFormatError: see :func:`~spikeflow.data.datasets.dsec.checked_xytp` and
            :func:`~spikeflow.data.datasets.dsec.read_h5_datasets`.
    """
    path = Path(path)
    raw = read_h5_datasets(path, ("events/x", "events/y", "events/t", "events/p"), "TUM-VIE")
    return checked_xytp(path, raw, sensor_size)


class TUMVIE(NeuromorphicDataset):
    """TUM-VIE (Klenk et al., "TUM-VIE: The TUM Stereo Visual-Inertial Event Dataset",
    IROS 2021), the event recordings of Tonic 1.7's ``TUMVIE``: one sample per
    recording, 1280x720 pixels, 2 polarities (:func:`read_tumvie_events`). The images,
    IMU and motion-capture data of Tonic's class are not read here.

    Layout (Tonic's): ``root/TUMVIE/<recording>/<recording>-events_<camera>.h5``.
    ``recording`` is ``"all"`` (the 21 of :data:`TUMVIE_RECORDINGS`), a name or a list
    of names; ``camera`` (keyword) ``"left"`` (default) or ``"right"``. There is no
    train/test split. ``download=True`` fetches each missing file from
    ``tumevent-vi.vision.in.tum.de`` (Tonic's URLs; no published checksum; GBs each).
    Reading needs ``hdf5plugin`` for the release's Blosc compression.

    Each item is ``(sample, recording name)``, the sample as in
    :class:`~spikeflow.data.datasets.NeuromorphicDataset` (an EventRecording, or frames
    ``[T, 2, 720, 1280]``). :attr:`classes` is empty. Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (1280, 720, 2)
    classes: ClassVar[tuple[str, ...]] = ()
    homepage = "https://vision.in.tum.de/data/datasets/visual-inertial-event-dataset"
    downloadable: ClassVar[bool] = True
    base_url: ClassVar[str] = "https://tumevent-vi.vision.in.tum.de/"
    layout = "<root>/TUMVIE/<recording>/<recording>-events_{left,right}.h5"
    sample_options = ("camera",)

    def __init__(
        self,
        root: str | os.PathLike,
        recording: str | list[str] | tuple[str, ...] = "all",
        *args: Any,
        camera: str = "left",
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        if camera not in ("left", "right"):
            raise ConfigurationError(f"TUMVIE: camera must be 'left' or 'right'; got {camera!r}")
        self.camera = camera
        self.recordings = select_names(
            "TUMVIE", recording, TUMVIE_RECORDINGS, "recording",
            "a TUM-VIE recording (TUMVIE_RECORDINGS; 'bike-dark' is 'bike-night')",
        )  # fmt: skip
        self.download = check_flag("TUMVIE", "download", download)
        super().__init__(root, True, *args, **kwargs)

    @property
    def split(self) -> str:
        """``"all"``: TUM-VIE has no train/test split."""
        return "all"

    def _path(self, recording: str) -> Path:
        return self.root / "TUMVIE" / recording / f"{recording}-events_{self.camera}.h5"

    def _url(self, recording: str) -> str:
        return f"{self.base_url}{recording}/{recording}-events_{self.camera}.h5"

    def _find_samples(self) -> list[tuple[Path, int]]:
        missing = [r for r in self.recordings if not self._path(r).is_file()]
        if missing and not self.download:
            files = [Archive(self._path(r).name, None, self._url(r)) for r in missing]
            advice = how_to_get("TUM-VIE", self.root / "TUMVIE", files, self.homepage, self.layout)
            raise DatasetNotFoundError(
                f"TUM-VIE: {len(missing)} event file(s) missing, e.g. "
                f"{shown_path(self._path(missing[0]))}. {advice}"
            )
        if missing:
            with _root_lock(self.root):
                for r in missing:
                    if not self._path(r).is_file():
                        download_url(self._url(r), self._path(r))
        return [(self._path(r), i) for i, r in enumerate(self.recordings)]

    def _read(self, path: Path) -> EventRecording:
        return read_tumvie_events(path, self.sensor_size[:2])

    @property
    def targets(self) -> list[str]:  # type: ignore[override]
        """The recording names, in order."""
        return list(self.recordings)

    def _target_of(self, index: int) -> Any:
        return self.recordings[index]
