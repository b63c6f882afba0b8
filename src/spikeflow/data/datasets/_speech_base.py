"""What the speech datasets share: WAV recordings encoded to events by an
:class:`~spikeflow.data.audio.AudioToEvents` (:class:`_SpeechDataset`), the encoder
argument's check and the reading of Speech Commands' list files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spikeflow.data.audio import AudioToEvents
from spikeflow.data.datasets._common import listing_text
from spikeflow.data.datasets._split import NamedSplitDataset
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.events import EventRecording
from spikeflow.data.io.wav import read_wav
from spikeflow.errors import ConfigurationError


def _encoder(value: Any) -> AudioToEvents:
    """``audio_to_events`` as an encoder: ``None`` the default, a dict its settings."""
    if value is None:
        return AudioToEvents()
    if isinstance(value, dict):
        try:
            return AudioToEvents(**value)
        except TypeError as exc:
            raise ConfigurationError(f"audio_to_events {value}: {exc}") from None
    if not callable(getattr(value, "cache_key", None)) or not callable(value):
        raise ConfigurationError(
            "audio_to_events must be an AudioToEvents, its settings as a dict, or an object "
            f"with __call__(clip) and cache_key(); got {type(value).__name__}"
        )
    return value


def _list_file_lines(path: Path, missing: str) -> list[str]:
    """The lines of a Speech Commands list file (``validation_list.txt``, ...) that are
    not blank, in order and as written (SpeechCommands strips them into a set,
    SpeechCommandsWaveforms keeps SpikingJelly's order); ``missing``: the message of
    the :class:`DatasetNotFoundError` raised when ``path`` is no file. A file that is
    not UTF-8 is a DataFormatError naming the byte offset (:func:`listing_text`)."""
    if not path.is_file():
        raise DatasetNotFoundError(missing)
    return [line for line in listing_text(path).splitlines() if line.strip()]


class _SpeechDataset(NamedSplitDataset):
    """WAV files encoded to events by ``audio_to_events`` (default ``AudioToEvents()``).

    The encoder's ``cache_key()`` is part of the dataset's cache key; ``sensor_size``
    is the encoder's ``(n_mels, 1, 2)``.
    """

    sensor_size = AudioToEvents().sensor_size
    sample_kind = "an audio dataset: speech recordings turned into cochlear events, not images"
    sample_options = ("audio_to_events",)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        *args: Any,
        audio_to_events: AudioToEvents | dict[str, Any] | None = None,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        encoder = _encoder(audio_to_events)
        self.audio_to_events = encoder
        self.sensor_size = tuple(encoder.sensor_size)  # type: ignore[misc]
        super().__init__(root, split, *args, download=download, **kwargs)

    @classmethod
    def sensor_size_for(
        cls, audio_to_events: AudioToEvents | dict[str, Any] | None = None, **_: Any
    ) -> tuple[int, int, int]:
        """The ``sensor_size`` a dataset built with these arguments has (the encoder's
        ``(n_mels, 1, 2)``), without building it."""
        return tuple(_encoder(audio_to_events).sensor_size)  # type: ignore[return-value]

    def _read(self, path: Path) -> EventRecording:
        return self.audio_to_events(read_wav(path))
