"""N-MNIST (Orchard et al., 2015): MNIST digits recorded by an ATIS sensor on a moving
platform (three saccades, about 300 ms), 34x34 pixels, 2 polarities, 10 classes,
60,000 training and 10,000 test samples."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from spikeflow.data.datasets.base import DatasetNotFoundError, NeuromorphicDataset
from spikeflow.data.events import EventRecording
from spikeflow.data.io.atis_bin import read_atis_bin
from spikeflow.errors import DataFormatError

__all__ = ["NMNIST"]


class NMNIST(NeuromorphicDataset):
    """N-MNIST from the official extracted layout ``root/Train/<label>/<id>.bin`` and
    ``root/Test/<label>/<id>.bin`` (labels 0-9).

    The official archives ``Train.zip`` and ``Test.zip`` cannot be downloaded by a
    program: their host asks for a manual download through a web page
    (:attr:`homepage`). Put them in ``root`` and they are checked (MD5) and extracted
    there on first use, or extract them yourself. Samples are sorted by label, then by
    file name. Each yields ``(frames [T, 2, 34, 34] float32, label)`` with
    ``data_type="frame"``, or ``(EventRecording, label)`` with ``data_type="event"``; a
    DataLoader makes ``[B, T, 2, 34, 34]``, and ``x.transpose(0, 1)`` makes it
    time-major ``[T, B, 2, 34, 34]``. Arguments are those of
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.

    Example::

        train = NMNIST("data/nmnist", train=True, data_type="frame", frames_number=10,
                       split_by="number", cache_dir="auto")
        loader = DataLoader(train, batch_size=64, shuffle=True)
        for x, y in loader:          # x: [B, T, 2, 34, 34]
            x = x.transpose(0, 1)    # [T, B, 2, 34, 34], time-major
    """

    sensor_size = (34, 34, 2)
    classes: ClassVar[tuple[int, ...]] = tuple(range(10))
    homepage = "https://www.garrickorchard.com/datasets/n-mnist"
    #: archive name and MD5 of the official archives, per split folder.
    archives: ClassVar[dict[str, tuple[str, str]]] = {
        "Train": ("Train.zip", "20959b8e626244a1b502305a9e6e2031"),
        "Test": ("Test.zip", "69ca8762b2fe404d9b9bad1103e97832"),
    }

    def _folder(self) -> Path:
        return self.root / ("Train" if self.train else "Test")

    def _find_samples(self) -> list[tuple[Path, int]]:
        folder = self._folder()
        if not folder.is_dir():
            self._extract_official(folder)
        samples = []
        for label in self.classes:
            sub = folder / str(label)
            if sub.is_dir():
                samples += [(p, label) for p in sorted(sub.glob("*.bin")) if p.is_file()]
        if not samples:
            raise DatasetNotFoundError(
                f"N-MNIST: no samples in {folder}; expected {folder}/<label>/<id>.bin with "
                f"labels 0-9. {self._how_to_get()}"
            )
        return samples

    def _how_to_get(self) -> str:
        name = self._folder().name
        archive = self.archives[name][0]
        return (
            f"N-MNIST cannot be downloaded automatically: its host needs a manual download. "
            f"Open {self.homepage}, download {archive} (and the other split's archive), and "
            f"put it at {self.root / archive}; spikeflow checks and extracts it there on first "
            f"use. Or extract it yourself so that {self.root / name}/0/ holds .bin files."
        )

    def _extract_official(self, folder: Path) -> None:
        from spikeflow.data.download import check_integrity, extract_archive

        name, md5 = self.archives[folder.name]
        archive = self.root / name
        if not archive.is_file():
            raise DatasetNotFoundError(f"N-MNIST not found: {folder} does not exist. "
                                       + self._how_to_get())  # fmt: skip
        if not check_integrity(archive, md5=md5):
            raise DataFormatError(
                f"{archive}: MD5 differs from the official archive's ({md5}); it is "
                f"incomplete or not the official file. Download it again from {self.homepage}"
            )
        extract_archive(archive, self.root)
        if not folder.is_dir():
            raise DataFormatError(
                f"{archive}: extracted into {self.root} but {folder} did not appear; "
                f"extract it yourself so that {folder}/<label>/<id>.bin exist"
            )

    def _read(self, path: Path) -> EventRecording:
        return read_atis_bin(path, self.sensor_size[:2])
