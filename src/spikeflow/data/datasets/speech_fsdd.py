"""The Free Spoken Digit Dataset (:class:`FSDD`): spoken digits as WAV files, encoded
to cochlear events by :class:`~spikeflow.data.audio.AudioToEvents`. Also importable from
:mod:`spikeflow.data.datasets.speech`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from spikeflow.data.audio import AudioToEvents
from spikeflow.data.datasets._common import Archive, prepare_root
from spikeflow.data.datasets._speech_base import _SpeechDataset
from spikeflow.data.datasets._split import split_from_train
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["FSDD"]


# ``<digit>_<speaker>_<index>.wav``: the FSDD file name.
_FSDD_NAME = re.compile(r"^([0-9])_([A-Za-z]+)_([0-9]+)\.wav$")


class FSDD(_SpeechDataset):
    """The Free Spoken Digit Dataset (Jackson et al.): English digits 0-9 spoken by
    several speakers, 50 recordings of each digit per speaker (3,000 recordings of 6
    speakers in the current release), 8 kHz mono WAV, encoded to events by
    ``audio_to_events`` (:class:`~spikeflow.data.audio.AudioToEvents`; default 40 mel
    bands, 2 dB per event).

    Files are named ``<digit>_<speaker>_<index>.wav``; the label is the digit. The
    official split (the dataset's README): recordings with index 0-4 are the test
    split, 5-49 the training split (``split="train"``/``"test"``, or ``train=``).
    ``speakers`` keeps only the named speakers (e.g. a speaker-independent split:
    train on five, test on the sixth).

    Layout: the ``recordings/`` folder of the GitHub repository, as ``root/recordings/``,
    ``root/free-spoken-digit-dataset-master/recordings/`` (the extracted
    ``download=True`` archive: the repository's master branch zip, which GitHub builds on
    request, so it has no fixed MD5) or WAV files directly in ``root``.

    Samples: an EventRecording (``x`` = mel band, ``p`` = 1 ON / 0 OFF, ``t`` in µs,
    sensor ``(n_mels, 1, 2)``), or frames ``[T, 2, 1, n_mels]`` with
    ``data_type="frame"``. Other arguments: :class:`NeuromorphicDataset`.
    """

    classes = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    splits = ("train", "test")
    downloadable = True
    homepage = "https://github.com/Jakobovski/free-spoken-digit-dataset"
    archive = Archive(
        "free-spoken-digit-dataset-master.zip",
        None,
        "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip",
    )
    #: Recordings with an index below this are the test split.
    test_indices = 5

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        train: bool | None = None,
        *args: Any,
        download: bool = False,
        audio_to_events: AudioToEvents | dict[str, Any] | None = None,
        speakers: list[str] | tuple[str, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        if speakers is not None and (isinstance(speakers, str) or not speakers):
            raise ConfigurationError(
                f"speakers must be a non-empty list of speaker names; got {speakers!r}"
            )
        self.speakers = None if speakers is None else tuple(speakers)
        split = split_from_train(split, train)
        super().__init__(
            root, split, *args, audio_to_events=audio_to_events, download=download, **kwargs
        )

    def _folder(self) -> Path | None:
        for folder in (
            self.root / "recordings",
            self.root / "free-spoken-digit-dataset-master" / "recordings",
            self.root,
        ):
            if folder.is_dir() and any(folder.glob("*.wav")):
                return folder
        return None

    def _find_samples(self) -> list[tuple[Path, int]]:
        layout = "<root>/recordings/<digit>_<speaker>_<index>.wav"
        prepare_root(
            "FSDD", self.root, self.root / "recordings", [self.archive],
            download=self.download, homepage=self.homepage, layout=layout,
            check=lambda: self._folder() is not None,
        )  # fmt: skip
        folder = self._folder()
        assert folder is not None
        samples, seen = [], set()
        for path in sorted(folder.glob("*.wav")):
            match = _FSDD_NAME.match(path.name)
            if match is None:
                raise DataFormatError(
                    f"{path}: not an FSDD file name (<digit>_<speaker>_<index>.wav); "
                    f"the folder {folder} should hold only the dataset's recordings"
                )
            digit, speaker, index = int(match[1]), match[2], int(match[3])
            seen.add(speaker)
            if self.speakers is not None and speaker not in self.speakers:
                continue
            if (index < self.test_indices) == (self.split == "test"):
                samples.append((path, digit))
        if self.speakers is not None and not set(self.speakers) <= seen:
            raise ConfigurationError(
                f"FSDD: speaker(s) {sorted(set(self.speakers) - seen)} have no recordings in "
                f"{folder}; its speakers are {sorted(seen)}"
            )
        if not samples:
            which = "<" if self.split == "test" else ">="
            who = "" if self.speakers is None else f", speakers {list(self.speakers)}"
            raise DataFormatError(
                f"FSDD: {folder} holds no recording of the {self.split} split "
                f"(<digit>_<speaker>_<index>.wav with index {which} {self.test_indices}{who})"
            )
        samples.sort(key=lambda s: (s[1], s[0].name))
        return samples
