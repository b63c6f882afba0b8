"""Speech recordings (WAV files) turned into cochlear events by
:class:`~spikeflow.data.audio.AudioToEvents`: the Free Spoken Digit Dataset and Google
Speech Commands; and Speech Commands as raw waveforms
(:class:`SpeechCommandsWaveforms`, SpikingJelly's ``SPEECHCOMMANDS``).

:class:`FSDD` is defined in :mod:`spikeflow.data.datasets.speech_fsdd` and the base class
they share in :mod:`spikeflow.data.datasets._speech_base`."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow.data._indexing import check_index
from spikeflow.data.audio import AudioToEvents
from spikeflow.data.datasets._common import (
    Archive,
    check_class_folders,
    class_folder_samples,
    prepare_root,
    shown_path,
)
from spikeflow.data.datasets._names import SSC_CLASSES
from spikeflow.data.datasets._speech_base import _list_file_lines, _SpeechDataset
from spikeflow.data.datasets._split import split_from_train
from spikeflow.data.datasets.speech_fsdd import FSDD
from spikeflow.data.events import EventRecording
from spikeflow.data.io.wav import read_wav, wav_info
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["FSDD", "KWS12_CLASSES", "SpeechCommands", "SpeechCommandsWaveforms"]


#: The twelve classes of the keyword-spotting task, in the order of Warden's
#: TensorFlow tutorial (``train.py``): silence, unknown word, then the ten commands.
KWS12_CLASSES = ("_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on",
                 "off", "stop", "go")  # fmt: skip
_BACKGROUND = "_background_noise_"
#: The words v0.02 added to v0.01's 30.
_ADDED_IN_V2 = ("backward", "follow", "forward", "learn", "visual")


class SpeechCommands(_SpeechDataset):
    """Google Speech Commands (Warden, 2018): one-second 16 kHz WAV recordings of
    short words, encoded to events by ``audio_to_events``
    (:class:`~spikeflow.data.audio.AudioToEvents`).

    ``version="v0.02"`` (default): 35 words, 105,829 recordings, the words of
    :class:`SSC` (which is this dataset through a cochlea model); ``"v0.01"``: 30
    words, 64,727 recordings. Splits (``split=``, or ``train=True``/``False`` for
    ``"train"``/``"test"``): the release's ``validation_list.txt`` (``"valid"``) and
    ``testing_list.txt`` (``"test"``); every other recording is ``"train"``.

    ``task="words"`` (default): every word is a class; labels index :attr:`classes`,
    the words in alphabetical order; ``_background_noise_`` is not a class.

    ``task="kws12"``: the 12-class keyword-spotting task the dataset was published
    with (:data:`KWS12_CLASSES`): the ten commands, ``_unknown_`` for every other word
    and ``_silence_``. Its ``"train"`` split adds, as silence, one-second windows of the
    ``_background_noise_`` recordings every half second (``silence_hop``); ``"valid"``
    has no silence; ``"test"`` is the release's canonical test set
    (``speech_commands_test_set_<version>.tar.gz``: 4,890 / 3,081 clips in folders
    ``_silence_``, ``_unknown_`` and the commands), extracted in
    ``root/speech_commands_test_set_<version>/``. All of a word's recordings are kept
    (``_unknown_`` is about 60% of the training split; weigh or subsample it as your
    recipe does).

    Layout: the extracted archive in ``root``: ``root/<word>/<speaker>_nohash_<n>.wav``
    and ``root/{validation,testing}_list.txt``. ``download=True`` fetches
    ``speech_commands_<version>.tar.gz`` from download.tensorflow.org (MD5 of
    torchaudio's ``SPEECHCOMMANDS``) and extracts it there; with ``task="kws12"`` and
    ``split="test"``, the test set archive (no MD5 of record here: it is not checked).
    """

    #: The class names of each version.
    VERSIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "v0.02": SSC_CLASSES,
        "v0.01": tuple(w for w in SSC_CLASSES if w not in _ADDED_IN_V2),
    }
    classes = SSC_CLASSES
    splits = ("train", "valid", "test")
    downloadable = True
    homepage = "https://arxiv.org/abs/1804.03209"
    md5s: ClassVar[dict[str, str]] = {
        "v0.01": "3cd23799cb2bbdec517f1cc028f8d43c",
        "v0.02": "6b74f3901214cb2c2934e98196829835",
    }
    _lists: ClassVar[dict[str, str]] = {"valid": "validation_list.txt", "test": "testing_list.txt"}
    #: The tasks: every word a class, or the 12-class keyword spotting.
    tasks = ("words", "kws12")
    sample_options = ("audio_to_events", "task")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        train: bool | None = None,
        *args: Any,
        download: bool = False,
        version: str = "v0.02",
        audio_to_events: AudioToEvents | dict[str, Any] | None = None,
        task: str = "words",
        silence_hop: float = 0.5,
        **kwargs: Any,
    ) -> None:
        self.classes = self.classes_for(version, task)
        if isinstance(silence_hop, bool) or not (
            isinstance(silence_hop, int | float) and 0 < silence_hop <= 1
        ):
            raise ConfigurationError(
                f"SpeechCommands: silence_hop is the step between silence windows in seconds, "
                f"in (0, 1]; got {silence_hop!r}"
            )
        self.version = version
        self.task = task
        self.silence_hop = float(silence_hop)
        #: Sample index -> first frame of its window, for silence cut from background noise.
        self._window_starts: dict[int, int] = {}
        split = split_from_train("valid" if split == "val" else split, train)
        super().__init__(
            root, split, *args, audio_to_events=audio_to_events, download=download, **kwargs
        )

    @classmethod
    def classes_for(cls, version: str = "v0.02", task: str = "words", **_: Any) -> tuple[str, ...]:
        """The classes of an instance built with ``version`` and ``task`` (no file is
        read): 35 words for ``"v0.02"``, 30 for ``"v0.01"``, :data:`KWS12_CLASSES` for
        ``task="kws12"``; the other arguments of the constructor are accepted and ignored
        (they do not change the classes).

        Raises:
            ConfigurationError: an unknown ``version`` or ``task``.
        """
        if version not in cls.VERSIONS:
            raise ConfigurationError(
                f"SpeechCommands: version must be one of {tuple(cls.VERSIONS)}; got {version!r}"
            )
        if task not in cls.tasks:
            raise ConfigurationError(
                f"SpeechCommands: task must be one of {cls.tasks}; got {task!r}"
            )
        return KWS12_CLASSES if task == "kws12" else cls.VERSIONS[version]

    def archive(self) -> Archive:
        """The version's official ``.tar.gz``."""
        name = f"speech_commands_{self.version}.tar.gz"
        return Archive(name, self.md5s[self.version], f"http://download.tensorflow.org/data/{name}")

    @property
    def test_set_folder(self) -> Path:
        """Where ``task="kws12"`` reads the canonical 12-class test set."""
        return self.root / f"speech_commands_test_set_{self.version}"

    def test_set_archive(self) -> Archive:
        """The canonical 12-class test set of the version, extracted into
        :attr:`test_set_folder`."""
        name = f"speech_commands_test_set_{self.version}.tar.gz"
        url = f"http://download.tensorflow.org/data/{name}"
        return Archive(name, None, url, into=self.test_set_folder.name)

    def _listed(self, name: str) -> set[str]:
        path = self.root / name
        missing = (
            f"SpeechCommands: {shown_path(path)} is missing; it comes with the official archive "
            f"(the {self.version} release lists its validation and test recordings there)"
        )
        return {line.strip() for line in _list_file_lines(path, missing)}

    def _find_samples(self) -> list[tuple[Path, int]]:
        if self.task == "kws12" and self.split == "test":
            return self._kws12_test_samples()
        words = self._word_samples()
        if self.task == "words":
            return words
        index = {w: KWS12_CLASSES.index(w) for w in KWS12_CLASSES[2:]}
        unknown = KWS12_CLASSES.index("_unknown_")
        samples = [(p, index.get(self.VERSIONS[self.version][y], unknown)) for p, y in words]
        samples.sort(key=lambda s: (s[1], s[0].parent.name, s[0].name))
        if self.split == "train":
            for path, start in self._silence_windows():
                self._window_starts[len(samples)] = start
                samples.append((path, KWS12_CLASSES.index("_silence_")))
        return samples

    def _silence_windows(self) -> list[tuple[Path, int]]:
        """``(file, first frame)`` of each one-second window of the background-noise
        recordings, every ``silence_hop`` seconds (windows that fit whole)."""
        folder = self.root / _BACKGROUND
        files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
        if not files:
            raise DataFormatError(
                f"SpeechCommands kws12: no WAV file in {folder}; the training split's "
                "silence is cut from the release's background-noise recordings"
            )
        windows = []
        for path in files:
            info = wav_info(path)  # the headers only
            rate = info.sample_rate
            hop = max(1, round(self.silence_hop * rate))
            windows += [(path, start) for start in range(0, info.frames - rate + 1, hop)]
        return windows

    def _kws12_test_samples(self) -> list[tuple[Path, int]]:
        folder = self.test_set_folder
        layout = f"<root>/{folder.name}/<class>/<clip>.wav, classes {list(KWS12_CLASSES)}"
        prepare_root(
            f"SpeechCommands {self.version} 12-class test set", self.root, folder,
            [self.test_set_archive()], download=self.download, homepage=self.homepage,
            layout=layout,
        )  # fmt: skip
        found = check_class_folders(folder, sorted(KWS12_CLASSES), "class")
        assert set(found) == set(KWS12_CLASSES)
        samples = [
            (path, KWS12_CLASSES.index(name))
            for name in sorted(KWS12_CLASSES)
            for path in sorted((folder / name).glob("*.wav"))
        ]
        samples.sort(key=lambda s: (s[1], s[0].name))
        return samples

    def cache_entry_key(self, index: int) -> dict[str, Any]:
        """The file of sample ``index``, and for a silence window its first frame."""
        key = super().cache_entry_key(index)
        if index in self._window_starts:
            key["start"] = self._window_starts[index]
        return key

    def events(self, index: int) -> EventRecording:
        """Sample ``index``'s events (a silence window: one second of its recording)."""
        start = self._window_starts.get(index)
        if start is None:
            return super().events(index)
        path, _ = self.samples[index]
        rec = self.audio_to_events(read_wav(path, start, wav_info(path).sample_rate))
        return rec if self.event_transform is None else self.event_transform(rec)

    def _word_samples(self) -> list[tuple[Path, int]]:
        """The recordings of the split, labelled by word (index in the version's words)."""
        layout = "<root>/<word>/<speaker>_nohash_<n>.wav, <root>/{validation,testing}_list.txt"
        prepare_root(
            f"SpeechCommands {self.version}", self.root, self.root / "testing_list.txt",
            [self.archive()], download=self.download, homepage=self.homepage, layout=layout,
        )  # fmt: skip
        try:
            check_class_folders(
                self.root, self.VERSIONS[self.version], "word", ignore=(_BACKGROUND,)
            )
        except DataFormatError as exc:
            raise DataFormatError(
                f"SpeechCommands {self.version}: {exc} (v0.01 has 30 words, v0.02 35: is "
                "version= the release in the folder?)"
            ) from None
        samples = class_folder_samples(self.root, self.VERSIONS[self.version], "*.wav")
        listed = {split: self._listed(name) for split, name in self._lists.items()}
        keep = []
        for path, label in samples:
            rel = f"{path.parent.name}/{path.name}"
            split = next((s for s, names in listed.items() if rel in names), "train")
            if split == self.split:
                keep.append((path, label))
        return keep


#: The label of a silence window cut from the background noise (SpikingJelly's name).
SILENCE = "_silence_"


class SpeechCommandsWaveforms(torch.utils.data.Dataset):
    """Google Speech Commands as raw waveforms, as SpikingJelly's ``SPEECHCOMMANDS``
    with its example's ``Pad``: ``(waveform, label)``, float32 ``[1, length]``, the
    samples divided by their largest magnitude and zero-padded on both sides (the odd
    sample on the right; a longer clip is cut the same way; ``length=None``: as read).

    Args:
        root: the extracted release, or SpikingJelly's root above it
            (``root/SpeechCommands/speech_commands_<version>/``).
        split: ``"train"``, ``"valid"`` (or ``"val"``) or ``"test"``.
        label_dict: word -> label (SpikingJelly's first argument; ``"_silence_"`` labels
            silence). Default: the version's words alphabetically, then ``"_silence_"``.
        silence_count: random ``silence_size`` windows of a random background-noise
            recording appended after the recordings (drawn with torch's generator).
        length: frames of every waveform; ``version``: ``"v0.02"`` or ``"v0.01"``.

    Order (SpikingJelly's): ``"valid"``/``"test"`` follow the release's list files;
    ``"train"`` follows ``training_list.txt`` if present, else every other
    ``<word>/*_nohash_*.wav`` sorted by path (not written back into ``root``).
    :attr:`weights` are SpikingJelly's ``WeightedRandomSampler`` weights.

    Raises:
        ConfigurationError: a bad argument, or a word of the split with no label.
        DatasetNotFoundError: the release or a list file is missing.
        DataFormatError: a file is not a 16 kHz WAV; no background noise for silence.
    """

    sample_rate = 16000

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        label_dict: Mapping[str, int] | None = None,
        silence_count: int = 0,
        silence_size: int = 16000,
        length: int | None = 16000,
        version: str = "v0.02",
        transform: Callable[[Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        download: bool = False,
    ) -> None:
        split = "valid" if split == "val" else split
        if split not in SpeechCommands.splits:
            raise ConfigurationError(
                f"SpeechCommandsWaveforms: split must be one of {SpeechCommands.splits} "
                f"(or 'val'); got {split!r}"
            )
        words = SpeechCommands.classes_for(version)
        for name, value, low in (("silence_count", silence_count, 0),
                                 ("silence_size", silence_size, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(
                    f"SpeechCommandsWaveforms: {name} must be an integer >= {low}; got {value!r}"
                )
        if length is not None and (
            isinstance(length, bool) or not isinstance(length, int) or length < 1
        ):
            raise ConfigurationError(
                f"SpeechCommandsWaveforms: length must be a positive number of frames or "
                f"None; got {length!r}"
            )
        if label_dict is None:
            label_dict = {**{w: i for i, w in enumerate(words)}, SILENCE: len(words)}
        self.label_dict = dict(label_dict)
        self.split, self.version = split, version
        self.silence_count, self.silence_size, self.length = silence_count, silence_size, length
        self.transform, self.target_transform = transform, target_transform
        self.root = self._release_folder(Path(root), download)
        self.files = self._split_files()
        missing = sorted({f.split("/")[0] for f in self.files} - set(self.label_dict))
        if silence_count and SILENCE not in self.label_dict:
            missing.append(SILENCE)
        if missing:
            raise ConfigurationError(
                f"SpeechCommandsWaveforms: label_dict has no label for {missing} (words of "
                f"the {split} split in {self.root})"
            )
        self.noise_files = sorted((self.root / _BACKGROUND).glob("*.wav"))
        if silence_count and not self.noise_files:
            raise DataFormatError(
                f"SpeechCommandsWaveforms: silence_count={silence_count} needs the "
                f"background-noise recordings, but {self.root / _BACKGROUND} has no WAV file"
            )
        self.targets = [self.label_dict[f.split("/")[0]] for f in self.files]
        if silence_count:
            self.targets += [self.label_dict[SILENCE]] * silence_count
        self.weights = self._weights()

    def _release_folder(self, root: Path, download: bool) -> Path:
        """``root``, or SpikingJelly's ``root/SpeechCommands/speech_commands_<version>``."""
        nested = root / "SpeechCommands" / f"speech_commands_{self.version}"
        if not (root / "testing_list.txt").is_file() and (nested / "testing_list.txt").is_file():
            return nested
        name = f"speech_commands_{self.version}.tar.gz"
        archive = Archive(name, SpeechCommands.md5s[self.version],
                          f"http://download.tensorflow.org/data/{name}")  # fmt: skip
        layout = "<root>/<word>/<speaker>_nohash_<n>.wav, <root>/{validation,testing}_list.txt"
        prepare_root(
            f"SpeechCommands {self.version}", root, root / "testing_list.txt", [archive],
            download=download, homepage=SpeechCommands.homepage, layout=layout,
        )  # fmt: skip
        return root

    def _list(self, name: str) -> list[str]:
        path = self.root / name
        missing = (
            f"SpeechCommandsWaveforms: {shown_path(path)} is missing; it comes with the release"
        )
        return _list_file_lines(path, missing)

    def _split_files(self) -> list[str]:
        """The split's recordings, relative to the release folder, in SpikingJelly's order."""
        if self.split != "train":
            return self._list(SpeechCommands._lists[self.split])
        if (self.root / "training_list.txt").is_file():
            return self._list("training_list.txt")
        held_out = set(self._list("validation_list.txt")) | set(self._list("testing_list.txt"))
        found = (
            f"{p.parent.name}/{p.name}"
            for p in self.root.glob("*/*.wav")
            if "_nohash_" in p.name and p.parent.name != _BACKGROUND
        )
        return sorted(set(found) - held_out)

    def _weights(self) -> Tensor:
        """Per-sample weights that balance the labels, silence a label of its own."""
        counts = Counter(self.targets[: len(self.files)])
        inverse = {label: 1.0 / n for label, n in counts.items()}
        silence = 1.0 / self.silence_count if self.silence_count else 0.0
        total = sum(inverse.values()) + silence
        weights = [inverse[label] / total for label in self.targets[: len(self.files)]]
        return torch.tensor(weights + [silence / total] * self.silence_count, dtype=torch.float64)

    def __len__(self) -> int:
        return len(self.files) + self.silence_count

    def _read(self, path: Path, start: int = 0, frames: int | None = None) -> Tensor:
        clip = read_wav(path, start, frames)
        if clip.sample_rate != self.sample_rate:
            raise DataFormatError(
                f"SpeechCommandsWaveforms: {path} is sampled at {clip.sample_rate} Hz; Speech "
                f"Commands recordings are {self.sample_rate} Hz"
            )
        return torch.from_numpy(clip.samples.copy())

    def _silence(self) -> Tensor:
        """A random ``silence_size`` window of a random background-noise recording."""
        path = self.noise_files[int(torch.randint(len(self.noise_files), ()))]
        frames = wav_info(path).frames
        if frames <= self.silence_size:
            raise DataFormatError(
                f"SpeechCommandsWaveforms: {path} has {frames} frames, not more than "
                f"silence_size={self.silence_size}"
            )
        start = int(torch.randint(frames - self.silence_size, ()))
        return self._read(path, start, self.silence_size)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = check_index(type(self).__name__, index, len(self))
        label: Any = self.targets[index]
        if index < len(self.files):
            wave = self._read(self.root / self.files[index])
        else:
            wave = self._silence()
        peak = wave.abs().max()
        if peak > 0:
            wave = wave / peak
        if self.length is not None:
            left = (self.length - wave.shape[-1]) // 2
            wave = F.pad(wave, (left, self.length - wave.shape[-1] - left))
        if self.transform is not None:
            wave = self.transform(wave)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return wave, label

    def __repr__(self) -> str:
        return (
            f"SpeechCommandsWaveforms(root={str(self.root)!r}, split={self.split!r}, "
            f"recordings={len(self.files)}, silence_count={self.silence_count}, "
            f"length={self.length})"
        )
