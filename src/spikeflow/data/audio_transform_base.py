"""The base class and input checks of the waveform transforms.

:class:`AudioTransform` (a :class:`~spikeflow.data.transforms.SeededTransform` over a
clip's samples) and the helpers every audio transform shares: reading the samples of an
array or an :class:`~spikeflow.data.io.AudioClip` (:func:`_samples`), checking a clip's
rate against the one a transform was built for, and checking an axis. Kept apart so that
:mod:`spikeflow.data.audio_transforms`, :mod:`spikeflow.data.audio_filters` and
:mod:`spikeflow.data.audio_augment` build on it without importing one another.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from spikeflow._checks import check_real
from spikeflow.data.audio import _MAX_CHANNELS
from spikeflow.data.io.wav import AudioClip
from spikeflow.data.representations import user_class_key
from spikeflow.data.transforms import SeededTransform
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["Audio", "AudioTransform", "Seed"]

Seed = int | np.random.Generator | None
Audio = np.ndarray | AudioClip


def _samples(data: Any, owner: str) -> tuple[np.ndarray, AudioClip | None]:
    """The samples of ``data`` (an array or a clip) and the clip, if it is one."""
    clip = data if isinstance(data, AudioClip) else None
    x = np.asarray(data.samples if clip is not None else data)
    if x.dtype.kind not in "fiu":
        raise ConfigurationError(
            f"{owner}: audio samples must be real numbers; got dtype {x.dtype}"
        )
    if x.ndim not in (1, 2):
        raise ShapeError(
            f"{owner}: audio samples must be [frames] or [channels, frames]; got shape "
            f"{tuple(x.shape)}"
        )
    if x.ndim == 2 and x.shape[0] > _MAX_CHANNELS and x.shape[0] > x.shape[1]:
        raise ShapeError(
            f"{owner}: audio samples of shape {tuple(x.shape)} look like [frames, channels] "
            "(the layout of soundfile and scipy.io.wavfile); pass [channels, frames]: .T"
        )
    return x, clip


def _check_rate(owner: str, clip: AudioClip | None, sample_rate: float) -> None:
    if clip is not None and clip.sample_rate != sample_rate:
        where = f"{clip.source}: " if clip.source else ""
        raise ConfigurationError(
            f"{where}{owner} was built for {sample_rate:g} Hz audio; this clip is "
            f"{clip.sample_rate} Hz: build one per sample rate (or resample the clip)"
        )


def _optional_rate(owner: str, sample_rate: float | None) -> float | None:
    """``sample_rate`` as a float if it is a positive finite number, ``None`` if it is
    ``None``; else a ConfigurationError naming ``owner``'s ``sample_rate``."""
    if sample_rate is None:
        return None
    return check_real(f"{owner}: sample_rate", sample_rate, 0.0, low_open=True)


class AudioTransform(SeededTransform):
    """Base class: subclasses implement ``apply(samples) -> array``.

    ``apply`` gets the samples as an array (``[frames]`` or ``[channels, frames]``, not
    to be modified) and returns the result. ``waveform`` says whether the result is
    still audio: then a clip in gives a clip out (float32, same rate and source).
    """

    waveform: bool = True
    #: The rate the transform was built for (checked against a clip's), or None.
    sample_rate: float | None = None

    def apply(self, samples: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover

    def __call__(self, data: Audio) -> Audio:
        name = type(self).__name__
        x, clip = _samples(data, name)
        if self.sample_rate is not None:
            _check_rate(name, clip, self.sample_rate)
        out = self.apply(x)
        if clip is None or not self.waveform:
            return out
        return dataclasses.replace(clip, samples=np.ascontiguousarray(out, dtype=np.float32))

    def cache_key(self) -> dict[str, Any]:
        """``{"name": class name, **parameters}`` (random transforms are never cached); a
        subclass written outside spikeflow also by its class and the method that computes
        its output, ``apply`` or its own ``__call__`` (code and instance attributes, see
        :func:`~spikeflow.data.representations.user_class_key`), as the event transforms."""
        own_call = type(self).__call__ is not AudioTransform.__call__
        method = self.__call__ if own_call else self.apply
        return {"name": type(self).__name__, **self._params, **user_class_key(self, method)}


def _axis(axis: int, ndim: int) -> int:
    if (
        isinstance(axis, bool)
        or not isinstance(axis, (int, np.integer))
        or not -ndim <= axis < ndim
    ):
        raise ShapeError(f"axis={axis!r} is not an axis of a {ndim}-d array")
    return int(axis) % ndim
