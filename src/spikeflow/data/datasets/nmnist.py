"""N-MNIST (Orchard et al., 2015): MNIST digits recorded by an ATIS sensor on a moving
platform (three saccades, about 300 ms), 34x34 pixels, 2 polarities, 10 classes,
60,000 training and 10,000 test samples."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from spikeflow._checks import check_flag
from spikeflow.data.datasets._common import (
    Archive,
    class_folder_samples,
    files_not_found,
    prepare_dataset_root,
    shown_path,
)
from spikeflow.data.datasets.base import NeuromorphicDataset
from spikeflow.data.events import EventRecording
from spikeflow.data.io.atis_bin import read_atis_bin

__all__ = ["NMNIST"]

_MENDELEY = "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"


class NMNIST(NeuromorphicDataset):
    """N-MNIST from the official extracted layout ``root/Train/<label>/<id>.bin`` and
    ``root/Test/<label>/<id>.bin`` (labels 0-9).

    The official archives are ``Train.zip`` and ``Test.zip``. ``download=True`` fetches
    the split's archive from Mendeley Data (the URLs and MD5s of Tonic's ``NMNIST``; the
    same files as on :attr:`homepage`), MD5-checked and resumable; or put the archives in
    ``root`` yourself. Either way they are checked (MD5) and extracted there on first
    use; or extract them yourself. A split folder without some of the class folders
    ``0``-``9`` (an extraction that stopped part way) raises ``DataFormatError``.
    Samples are sorted by label, then by file name. Each yields ``(frames [T, 2, 34,
    34] float32, label)`` with ``data_type="frame"``, or ``(EventRecording, label)``
    with ``data_type="event"``; a DataLoader makes ``[B, T, 2, 34, 34]``, and
    ``x.transpose(0, 1)`` makes it time-major ``[T, B, 2, 34, 34]``. Other arguments:
    those of :class:`~spikeflow.data.datasets.NeuromorphicDataset`.

    Example::

        train = NMNIST("data/nmnist", train=True, data_type="frame", frames_number=10,
                       split_by="number", cache_dir="auto", download=True)
        loader = DataLoader(train, batch_size=64, shuffle=True)
        for x, y in loader:          # x: [B, T, 2, 34, 34]
            x = x.transpose(0, 1)    # [T, B, 2, 34, 34], time-major
    """

    sensor_size = (34, 34, 2)
    #: The digit names ``"0"`` ... ``"9"`` (index = label), the official class folders.
    classes: ClassVar[tuple[str, ...]] = tuple(str(d) for d in range(10))
    homepage = "https://www.garrickorchard.com/datasets/n-mnist"
    downloadable: ClassVar[bool] = True
    #: The official archive of each split folder (URLs and MD5s as Tonic lists them).
    archives: ClassVar[dict[str, Archive]] = {
        "Train": Archive(
            "Train.zip",
            "20959b8e626244a1b502305a9e6e2031",
            _MENDELEY + "39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",
        ),
        "Test": Archive(
            "Test.zip",
            "69ca8762b2fe404d9b9bad1103e97832",
            _MENDELEY + "05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",
        ),
    }
    layout = "<root>/{Train,Test}/<label>/<id>.bin (labels 0-9)"

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        *args: Any,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        self.download = check_flag("NMNIST", "download", download)
        super().__init__(root, train, *args, **kwargs)

    def _folder(self) -> Path:
        return self.root / ("Train" if self.train else "Test")

    def _find_samples(self) -> list[tuple[Path, int]]:
        folder = self._folder()
        archive = self.archives[folder.name]
        prepare_dataset_root(self, "N-MNIST", folder, [archive], download=self.download)
        samples = class_folder_samples(folder, self.classes, "*.bin")
        if not samples:
            problem = (
                f"no samples in {shown_path(folder)}; expected {folder}/<label>/<id>.bin with "
                "labels 0-9"
            )
            raise files_not_found(self, "N-MNIST", problem, [archive])
        return samples

    def _read(self, path: Path) -> EventRecording:
        return read_atis_bin(path, self.sensor_size[:2])
