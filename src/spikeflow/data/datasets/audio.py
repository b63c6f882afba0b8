"""Cochlea spike datasets in HDF5 files: the Spiking Heidelberg Datasets (Cramer et al.,
2020), SHD (spoken digits) and SSC (speech commands), 700 channels of a cochlea model;
and N-TIDIGITS18 (Anumula et al., 2018), spoken digits and digit sequences recorded
by the 64-channel Dynamic Audio Sensor.

Their frames (``ToFrame``, ``ToFrameByDuration``) are ``[T, C]`` spike counts per
channel (see :class:`ChannelFrames`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow._checks import check_flag
from spikeflow.data.datasets._common import (
    DOWNLOAD_ADVICE,
    Archive,
    first_names,
    prepare_root,
    shown_path,
)
from spikeflow.data.datasets._names import SHD_CLASSES, SSC_CLASSES
from spikeflow.data.datasets._split import NamedSplitDataset, split_from_train
from spikeflow.data.datasets.base import DatasetNotFoundError, NeuromorphicDataset, check_train
from spikeflow.data.download import download_url
from spikeflow.data.events import EventRecording
from spikeflow.data.io.hdf5_audio import SpikingAudioFile
from spikeflow.data.io.hdf5_ntidigits import NTIDIGITS_DIGITS, NTidigitsFile, parse_ntidigits_key
from spikeflow.data.representations import ToFrame, ToFrameByDuration
from spikeflow.errors import DataFormatError

__all__ = [
    "NTIDIGITS18",
    "SHD",
    "SSC",
    "ChannelFrames",
    "SpikingHeidelbergDigits",
    "SpikingSpeechCommands",
]

_ZENKE = "https://zenkelab.org/datasets/"


class ChannelFrames(NeuromorphicDataset):
    """A dataset of a 1-D sensor, ``sensor_size = (C, 1, 1)`` (one channel axis, one
    polarity), whose count frames are ``[T, C]`` instead of ``[T, 1, 1, C]`` (C is the
    sensor's channels, or what an event transform made of them); a DataLoader makes
    ``[B, T, C]``. Other representations come out as they are computed."""

    sample_kind = "an audio dataset: its samples are cochlear spike trains per channel, not images"

    def _representation(self, index: int) -> tuple[np.ndarray, bool]:
        array, computed = super()._representation(index)
        if isinstance(self.representation, (ToFrame, ToFrameByDuration)):
            array = array.reshape(array.shape[0], -1)
        return array, computed


class _OneFile(ChannelFrames):
    """Samples read from one HDF5 file, opened at the first read (in each DataLoader
    worker: an h5py handle does not cross processes)."""

    _file: Any = None

    def _open_file(self) -> Any:
        raise NotImplementedError

    def _reader(self) -> Any:
        if self._file is None:
            self._file = self._open_file()
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles do not cross processes; reopen there
        return state

    def close(self) -> None:
        """Close the HDF5 file (reopened on the next read)."""
        if self._file is not None:
            self._file.close()
            self._file = None


class _SpikingAudio(_OneFile, NamedSplitDataset):
    """A split file ``root/<prefix>_<split>.h5``; one sample per row, read lazily."""

    sensor_size = (700, 1, 1)
    channels = 700
    prefix: ClassVar[str]
    title: ClassVar[str]
    num_classes: ClassVar[int]
    # ``classes`` (index = label): the class attribute is the documented list; an
    # instance takes the names from its file's ``extra/keys`` (which must hold
    # ``num_classes`` distinct names) when the file has them.
    splits: ClassVar[tuple[str, ...]]
    #: archive name -> MD5, as listed by Tonic's SHD / SSC (zips on zenkelab.org).
    md5s: ClassVar[dict[str, str]]
    homepage = "https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/"
    downloadable: ClassVar[bool] = True

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        *args: Any,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        self._file: SpikingAudioFile | None = None
        super().__init__(root, split, *args, download=download, **kwargs)

    @property
    def h5_path(self) -> Path:
        """The split's HDF5 file."""
        return self.root / f"{self.prefix}_{self._split}.h5"

    def archive(self) -> Archive:
        """The split's official zip (holding the ``.h5``)."""
        name = f"{self.prefix}_{self._split}.h5.zip"
        return Archive(name, self.md5s[name], _ZENKE + name)

    def _find_samples(self) -> list[tuple[Path, int]]:
        layout = f"<root>/{self.prefix}_{{{','.join(self.splits)}}}.h5"
        prepare_root(
            self.title,
            self.root,
            self.h5_path,
            [self.archive()],
            download=self.download,
            homepage=self.homepage,
            layout=layout,
        )
        with SpikingAudioFile(self.h5_path, self.channels) as f:
            labels = f.labels
            names = f.label_names
        if names is not None:
            if len(names) != self.num_classes or len(set(names)) != len(names):
                raise DataFormatError(
                    f"{self.h5_path}: extra/keys holds {len(names)} label names "
                    f"({len(set(names))} distinct); {self.title} has {self.num_classes} "
                    f"classes: {first_names(names)}"
                )
            self.classes = names
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DataFormatError(
                f"{self.h5_path}: labels outside 0-{self.num_classes - 1} "
                f"(found {int(labels.min())}..{int(labels.max())})"
            )
        return [(self.h5_path, int(label)) for label in labels]

    def _open_file(self) -> SpikingAudioFile:
        return SpikingAudioFile(self.h5_path, self.channels)

    def cache_entry_key(self, index: int) -> dict[str, Any]:
        """The cache key of sample ``index``: the file and the row."""
        return {**super().cache_entry_key(index), "row": index % len(self)}

    def events(self, index: int) -> EventRecording:
        """Sample ``index``'s spikes: ``x`` = channel, ``t`` in µs, after ``event_transform``."""
        rec, _ = self._reader()[index]
        return rec if self.event_transform is None else self.event_transform(rec)


class SHD(_SpikingAudio):
    """Spiking Heidelberg Digits: spoken digits 0-9 in English and German (20 classes),
    8,156 training and 2,264 test samples, 700 channels.

    Layout: ``root/shd_train.h5`` and ``root/shd_test.h5`` (``shd_<split>.h5.zip``
    extracted in ``root``); ``download=True`` fetches the zips from zenkelab.org (URL
    and MD5 of Tonic's ``SHD``). ``split`` is ``"train"`` or ``"test"``
    (``train=`` is also accepted). Labels: :attr:`classes`, 0-9 the English digits
    ``"zero"``-``"nine"``, 10-19 the German ``"null"``-``"neun"``; an instance reads the
    names from its file's ``extra/keys``.

    With ``data_type="event"`` a sample is an EventRecording with ``x`` = channel
    (0-699), ``y = p = 0`` and ``t`` in µs, ``sensor_size = (700, 1, 1)``. With
    ``data_type="frame"`` and ``frames_number``/``duration`` it is a float32 spike-count
    tensor ``[T, 700]`` (binned as :mod:`spikeflow.data.frames` states, e.g.
    ``duration=10_000`` for the usual 10 ms bins: variable ``T``, batch with
    ``pad_collate``); a DataLoader makes ``[B, T, 700]``, ``x.transpose(0, 1)`` makes
    it time-major. Other arguments: :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    prefix = "shd"
    title = "SHD"
    num_classes = 20
    classes = SHD_CLASSES
    splits = ("train", "test")
    md5s: ClassVar[dict[str, str]] = {
        "shd_train.h5.zip": "f3252aeb598ac776c1b526422d90eecb",
        "shd_test.h5.zip": "1503a5064faa34311c398fb0a1ed0a6f",
    }

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        train: bool | None = None,
        *args: Any,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        split = split_from_train(split, train)
        super().__init__(root, split, *args, download=download, **kwargs)


class SSC(_SpikingAudio):
    """Spiking Speech Commands: 35 words of Google Speech Commands, 75,466 training,
    9,981 validation and 20,382 test samples, 700 channels.

    Layout: ``root/ssc_train.h5``, ``root/ssc_valid.h5``, ``root/ssc_test.h5``;
    ``split`` is ``"train"``, ``"valid"`` or ``"test"`` (``train=True``/``False`` is also
    accepted, as ``"train"``/``"test"``, as in :class:`SHD`); ``download=True`` fetches the
    zips from zenkelab.org (URL and MD5 of Tonic's ``SSC``). Labels: :attr:`classes`, the
    35 Speech Commands words in alphabetical order (an instance reads the names from its
    file's ``extra/keys``). Samples as in :class:`SHD`.
    """

    prefix = "ssc"
    title = "SSC"
    num_classes = 35
    classes = SSC_CLASSES
    splits = ("train", "valid", "test")
    md5s: ClassVar[dict[str, str]] = {
        "ssc_train.h5.zip": "d102be95e7144fcc0553d1f45ba94170",
        "ssc_valid.h5.zip": "b4eee3516a4a90dd0c71a6ac23a8ae43",
        "ssc_test.h5.zip": "a35ff1e9cffdd02a20eb850c17c37748",
    }

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *args: Any,
        download: bool = False,
        train: bool | None = None,
        **kwargs: Any,
    ) -> None:
        split = split_from_train(split, train)
        super().__init__(root, split, *args, download=download, **kwargs)


def SpikingHeidelbergDigits(  # SpikingJelly's class name
    root: str | os.PathLike, train: bool = True, *args: Any, **kwargs: Any
) -> SHD:
    """An :class:`SHD` built with SpikingJelly's name and argument order: ``(root,
    train=True, data_type, frames_number, split_by, duration, custom_integrate_function,
    custom_integrated_frames_dir_name, transform, target_transform)``, so a ported call
    such as ``SpikingHeidelbergDigits(root, False, "frame", 20, "number")`` reads the
    same."""
    return SHD(root, None, check_train("SpikingHeidelbergDigits", train), *args, **kwargs)


#: :class:`SSC` under SpikingJelly's name (the same arguments: ``root, split``, then
#: SpikingJelly's ``data_type, frames_number, ...`` in its order).
SpikingSpeechCommands = SSC


class NTIDIGITS18(_OneFile):
    """N-TIDIGITS18 (Anumula et al., Front. Neurosci. 2018): the TIDIGITS corpus played to
    the Dynamic Audio Sensor, a 64-channel silicon cochlea; single digits and digit
    sequences spoken by men and women, in a train and a test split.

    Layout: ``root/n-tidigits.hdf5``, the release's one HDF5 file (groups and keys:
    :mod:`spikeflow.data.io.hdf5_ntidigits`); ``download=True`` fetches it from the
    Dropbox link of Tonic's ``NTIDIGITS18`` and checks Tonic's MD5.

    ``single_digits=True`` (default) keeps the samples of one spoken digit, labelled
    by :attr:`classes` (Tonic's class numbers): ``"o"`` ("oh") 0, ``"1"``-``"9"``
    1-9, ``"z"`` ("zero") 10. ``single_digits=False`` keeps every sample, labelled by
    its digit string (``"7557"``), as Tonic's default does; such labels need a
    sequence loss, so ``spikeflow train`` refuses them. Tonic's default is
    ``single_digits=False``; spikeflow's is the classification task.

    A sample is an EventRecording with ``x`` = channel (0-63), ``y = p = 0`` and ``t`` in
    µs (rounded; Tonic truncates and sets ``p = 1``), ``sensor_size = (64, 1, 1)``; frames
    are ``[T, 64]`` (:class:`ChannelFrames`). :attr:`keys` holds each sample's key
    (speaker, production and digits: :func:`~spikeflow.data.io.parse_ntidigits_key`).
    Other arguments: :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (64, 1, 1)
    classes: ClassVar[tuple[str, ...]] = NTIDIGITS_DIGITS
    filename = "n-tidigits.hdf5"
    #: URL and MD5 of Tonic 1.7's ``NTIDIGITS18``.
    url = (
        "https://www.dropbox.com/scl/fi/1x4lxt9yyw25sc3tez8oi/n-tidigits.hdf5"
        "?e=2&rlkey=w8gi5udvib2zqzosusa5tr3wq&dl=1"
    )
    md5 = "360a2d11e5429555c9197381cf6b58e0"
    homepage = "https://docs.google.com/document/d/1Uxe7GsKKXcy6SlDUX4hoJVAC0-UkH-8kr5UXp0Ndi1M"
    downloadable: ClassVar[bool] = True

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        *args: Any,
        single_digits: bool = True,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        self.single_digits = check_flag("NTIDIGITS18", "single_digits", single_digits)
        self.download = check_flag("NTIDIGITS18", "download", download)
        self._file: NTidigitsFile | None = None
        self.keys: list[str] = []
        super().__init__(root, train, *args, **kwargs)

    @property
    def h5_path(self) -> Path:
        """The release's HDF5 file."""
        return self.root / self.filename

    def _find_samples(self) -> list[tuple[Path, Any]]:
        if not self.h5_path.is_file():
            if not self.download:
                raise DatasetNotFoundError(
                    f"N-TIDIGITS18 not found: {shown_path(self.h5_path)} does not exist. "
                    f"{DOWNLOAD_ADVICE} to download it (MD5-checked, resumable) from {self.url}, "
                    f"or download {self.filename} yourself (see {self.homepage}) and put it "
                    f"in {self.root}"
                )
            download_url(self.url, self.h5_path, md5=self.md5)
        with NTidigitsFile(self.h5_path, self.split) as f:
            keys = f.keys
        samples: list[tuple[Path, Any]] = []
        for key in keys:
            digits = parse_ntidigits_key(key)["digits"]
            if not self.single_digits:
                samples.append((self.h5_path, digits))
            elif len(digits) == 1:
                samples.append((self.h5_path, self.classes.index(digits)))
            else:
                continue  # a sequence, left out of the single-digit task
            self.keys.append(key)
        return samples

    def _open_file(self) -> NTidigitsFile:
        return NTidigitsFile(self.h5_path, self.split)

    def cache_entry_key(self, index: int) -> dict[str, Any]:
        """The cache key of sample ``index``: the file and the sample's key."""
        return {**super().cache_entry_key(index), "sample": self.keys[index % len(self)]}

    def events(self, index: int) -> EventRecording:
        """Sample ``index``'s spikes (``x`` = channel, ``t`` in µs), after ``event_transform``."""
        rec = self._reader().read(self.keys[index % len(self)])
        return rec if self.event_transform is None else self.event_transform(rec)
