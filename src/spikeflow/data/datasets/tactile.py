"""ST-MNIST (See et al., 2020): handwritten digits written with a finger on a 10x10
neuromorphic tactile sensor, one MATLAB ``.mat`` file per sample."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from spikeflow.data.datasets._common import (
    Archive,
    check_class_folders,
    class_folder_samples,
    files_not_found,
    prepare_dataset_root,
    shown_path,
)
from spikeflow.data.datasets._split import RatioSplitDataset
from spikeflow.data.events import EventRecording
from spikeflow.data.io.matlab import read_stmnist

__all__ = ["STMNIST"]


class STMNIST(RatioSplitDataset):
    """ST-MNIST, the Spiking Tactile MNIST (See et al., arXiv 2005.04319, 2020): digits
    0-9 written by 23 participants on a 100-taxel event-based tactile sensor, 6,953
    samples; taxel ``k`` is pixel ``(x, y) = (k % 10, k // 10)``, ON events ``p = 1``,
    OFF ``p = 0`` (:func:`~spikeflow.data.io.read_stmnist`), ``sensor_size = (10, 10, 2)``.

    Layout: ``root/data_submission/<digit>/*.mat``, the folder of the release's
    ``STMNIST dataset NUS Tee Research Group.zip`` (ScholarBank@NUS, behind a form, so
    the download is manual; spikeflow checks Tonic's MD5 and extracts a zip put in
    ``root``). The release's lookup table ``data_submission/LUT.mat`` and any file with
    ``LUT`` in its name are not samples (Tonic's rule). Labels are the digit folders
    (Tonic's prototype ``STMNIST`` reads the label from the folder the same way).

    The release has no train/test split (Tonic's prototype yields all 6,953 samples;
    the paper's split was random and is not published): ``train=None`` (default) yields
    every sample; ``train=True``/``False`` the deterministic per-class split of
    :class:`~spikeflow.data.datasets._split.RatioSplitDataset`, the first
    ``ceil(0.8 n)`` files of each digit (sorted by name) for training, the 80/20
    proportion of the public ST-MNIST loaders (``train_ratio`` changes it).
    Other arguments: :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sample_kind = "a tactile dataset: its samples are touch-sensor events, not images"

    sensor_size = (10, 10, 2)
    classes: ClassVar[tuple[str, ...]] = tuple("0123456789")
    homepage = "https://scholarbank.nus.edu.sg/handle/10635/168106"
    #: The release's zip and the MD5 Tonic's prototype STMNIST checks.
    archive = Archive(
        "STMNIST dataset NUS Tee Research Group.zip", "2eef16be7356bc1a8f540bb3698c4e0e"
    )
    default_train_ratio = 0.8
    layout = "<root>/data_submission/<digit 0-9>/*.mat (plus data_submission/LUT.mat)"

    def _all_samples(self) -> list[tuple[Path, int]]:
        folder = self.root / "data_submission"
        prepare_dataset_root(self, "ST-MNIST", folder, [self.archive], download=False)
        check_class_folders(folder, self.classes, "digit")
        samples = [
            (path, label)
            for path, label in class_folder_samples(folder, self.classes, "*.mat")
            if "LUT" not in path.name
        ]
        if not samples:
            raise files_not_found(
                self, "ST-MNIST", f"no .mat files under {shown_path(folder)}", [self.archive]
            )
        return samples

    def _read(self, path: Path) -> EventRecording:
        return read_stmnist(path)
