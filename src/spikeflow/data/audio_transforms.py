"""Waveform transforms of Tonic's audio front end: length, gain, binning, Butterworth banks.

These are the transforms of Tonic's ``tonic.audio_transforms`` (Tonic 1.7), on a clip's
samples before they become spikes: :class:`FixLength` (pad or crop),
:class:`Bin` (sum groups of samples: a lower rate), :class:`SwapAxes`,
:class:`AmplitudeScale` and :class:`RobustAmplitudeScale` (peak and percentile
normalisation), :class:`SOSFilter`, :class:`ButterFilter` and the Butterworth band-pass
filter banks :class:`ButterFilterBank`, :class:`LinearButterFilterBank` and
:class:`MelButterFilterBank` (a cochlea-like front end: rectified band outputs), and
:class:`AddNoise` (mix in a recorded noise at a signal-to-noise ratio). The random
augmentations of ``tonic.audio_augmentations`` are in
:mod:`spikeflow.data.audio_augment`.

Conventions (those of :mod:`spikeflow.data.audio`): samples are ``[frames]`` or
``[channels, frames]`` (:func:`~spikeflow.data.io.read_wav`'s layout), time on the last
axis. A transform takes a plain array or an :class:`~spikeflow.data.io.AudioClip`; a
waveform transform returns the same kind (a clip keeps its rate and source, its samples
float32 as :func:`~spikeflow.data.io.read_wav` gives them; an array comes back float64),
and a filter bank returns float64 band outputs ``[..., bands, frames]``. A transform
that needs the sample rate takes it when built and refuses a clip of another rate. The
input is never modified. Random ones take ``seed`` (an int, a ``numpy`` Generator or
None: torch's generator seeds each call) and report ``.random``.

The filters are designed and run by scipy (``scipy.signal.butter(..., output="sos")``
and ``sosfilt``), as Tonic does: scipy is in spikeflow's ``data`` extra, and a missing
scipy raises :class:`~spikeflow.errors.MissingExtraError` naming it. Where Tonic's
behaviour is questionable (a filter frequency at or above Nyquist, an out-of-range
percentile, the SNR of :class:`AddNoise`), the docstring says what spikeflow does and
why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.data.audio_filters import (
    FILTER_TYPES,
    ButterFilter,
    ButterFilterBank,
    LinearButterFilterBank,
    MelButterFilterBank,
    SOSFilter,
    butter_sos,
    linear_bands,
    mel_bands,
)
from spikeflow.data.audio_transform_base import (
    Audio,
    AudioTransform,
    Seed,
    _axis,
    _check_rate,
    _optional_rate,
    _samples,
)
from spikeflow.data.io.wav import AudioClip
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "FILTER_TYPES",
    "AddNoise",
    "AmplitudeScale",
    "AudioTransform",
    "Bin",
    "ButterFilter",
    "ButterFilterBank",
    "FixLength",
    "LinearButterFilterBank",
    "MelButterFilterBank",
    "RobustAmplitudeScale",
    "SOSFilter",
    "SwapAxes",
    "bin_samples",
    "butter_sos",
    "fix_length",
    "linear_bands",
    "mel_bands",
    "mix_at_snr",
    "normalize",
]


# -- length, axes, binning ------------------------------------------------------------
def fix_length(samples: np.ndarray, length: int, axis: int = -1) -> np.ndarray:
    """``samples`` cropped to ``length`` along ``axis`` (its first ``length``), or padded
    with zeros at the end (``librosa.util.fix_length``, which Tonic's FixLength calls)."""
    x = np.asarray(samples)
    length = check_int("length", length, 0)
    axis = _axis(axis, x.ndim)
    n = x.shape[axis]
    if n >= length:
        return x[(slice(None),) * axis + (slice(0, length),)].copy()
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, length - n)
    return np.pad(x, pad)


class FixLength(AudioTransform):
    """Crop or zero-pad the clip to ``length`` samples (Tonic's ``FixLength``).

    Tonic's default ``axis=1`` is time in ``[channels, frames]``; spikeflow's default
    ``-1`` is time in both ``[frames]`` and ``[channels, frames]``.
    """

    def __init__(self, length: int, axis: int = -1) -> None:
        super().__init__(length=check_int("length", length, 0), axis=axis)
        self.length, self.axis = self._params["length"], axis

    def apply(self, samples: np.ndarray) -> np.ndarray:
        return fix_length(samples, self.length, self.axis)


class SwapAxes(AudioTransform):
    """Swap two axes (Tonic's ``SwapAxes``: ``np.swapaxes``), e.g. band outputs
    ``[bands, frames]`` to ``[frames, bands]`` for :func:`~spikeflow.data.level_crossings`."""

    waveform = False

    def __init__(self, ax1: int = 0, ax2: int = 1) -> None:
        super().__init__(ax1=ax1, ax2=ax2)
        self.ax1, self.ax2 = ax1, ax2

    def __call__(self, data: Audio) -> np.ndarray:
        x = np.asarray(data.samples if isinstance(data, AudioClip) else data)
        return np.swapaxes(x, _axis(self.ax1, x.ndim), _axis(self.ax2, x.ndim)).copy()


def bin_samples(data: np.ndarray, orig_freq: float, new_freq: float, axis: int = -1) -> np.ndarray:
    """Sum ``data`` over consecutive groups along ``axis``: ``orig_freq`` -> ``new_freq``.

    As Tonic's ``Bin``: ``n = int(length / (orig_freq / new_freq))`` groups, of sizes as
    ``np.array_split`` makes them (the first ``length % n`` one longer), each summed. A
    rectified filter-bank output binned this way is its envelope at the lower rate.

    Raises:
        ConfigurationError: a frequency is not positive, or the data is too short for
            one group (Tonic's ``np.array_split`` fails with "number sections must be
            larger than 0").
    """
    x = np.asarray(data)
    if x.dtype.kind not in "fiub":
        raise ConfigurationError(f"Bin: data must be numbers; got dtype {x.dtype}")
    orig = check_real("Bin: orig_freq", orig_freq, 0.0, low_open=True)
    new = check_real("Bin: new_freq", new_freq, 0.0, low_open=True)
    axis = _axis(axis, x.ndim)
    n = int(x.shape[axis] / (orig / new))
    if n < 1:
        raise ConfigurationError(
            f"Bin: {x.shape[axis]} samples at {orig:g} Hz make no bin at {new:g} Hz (one bin "
            f"is {orig / new:g} samples); lower new_freq or pass a longer signal"
        )
    edges = np.cumsum([0] + [len(s) for s in np.array_split(np.arange(x.shape[axis]), n)])
    return np.add.reduceat(x, edges[:-1], axis=axis)


class Bin(AudioTransform):
    """Sum groups of samples along ``axis`` to go from ``orig_freq`` to ``new_freq``
    (Tonic's ``Bin``; see :func:`bin_samples`). The result is not audio: a clip in gives
    an array out."""

    waveform = False

    def __init__(self, orig_freq: float, new_freq: float, axis: int = -1) -> None:
        orig = check_real("Bin: orig_freq", orig_freq, 0.0, low_open=True)
        new = check_real("Bin: new_freq", new_freq, 0.0, low_open=True)
        super().__init__(orig_freq=orig, new_freq=new, axis=axis)
        self.orig_freq, self.new_freq, self.axis = orig, new, axis

    def __call__(self, data: Audio) -> np.ndarray:
        x = np.asarray(data.samples if isinstance(data, AudioClip) else data)
        return bin_samples(x, self.orig_freq, self.new_freq, self.axis)


# -- gain ------------------------------------------------------------------------------
def _scale_to(x: np.ndarray, reference: float, amplitude: float) -> np.ndarray:
    return x.astype(np.float64) / (reference if reference != 0.0 else 1.0) * amplitude


def _magnitudes(x: np.ndarray) -> np.ndarray:
    """``|x|`` in float64: ``np.abs`` of an integer array wraps its most negative value
    (``|-32768|`` is ``-32768`` in int16), which would hide a full-scale sample."""
    return np.abs(x.astype(np.float64))


def _peak(x: np.ndarray) -> float:
    """The largest ``|sample|`` (0 for no samples)."""
    return float(_magnitudes(x).max()) if x.size else 0.0


class AmplitudeScale(AudioTransform):
    """Scale the clip so its largest ``|sample|`` is ``max_amplitude`` (Tonic's
    ``AmplitudeScale``, default 158 mV); a silent clip stays silent."""

    def __init__(self, max_amplitude: float = 158e-3) -> None:
        amp = check_real("AmplitudeScale: max_amplitude", max_amplitude, 0.0, low_open=True)
        super().__init__(max_amplitude=amp)
        self.max_amplitude = amp

    def apply(self, samples: np.ndarray) -> np.ndarray:
        return _scale_to(samples, _peak(samples), self.max_amplitude)


class RobustAmplitudeScale(AudioTransform):
    """Scale the clip so the ``1 - outlier_percent`` quantile of ``|sample|`` becomes
    ``max_robust_amplitude`` (Tonic's ``RobustAmplitudeScale``): a few loud outliers do
    not shrink the rest.

    The reference is the ``int(n (1 - outlier_percent))``-th smallest ``|sample|`` of the
    ``n`` samples, as in Tonic, capped at the largest (Tonic indexes past the end, an
    IndexError, at ``outlier_percent=0``). When it is 0 (mostly silence), the peak is
    scaled to ``max_robust_amplitude`` instead; an all-zero clip stays zero (Tonic
    divides 0 by 0 there).
    """

    def __init__(self, max_robust_amplitude: float = 158e-3, outlier_percent: float = 0.01) -> None:
        amp = check_real(
            "RobustAmplitudeScale: max_robust_amplitude", max_robust_amplitude, 0.0, low_open=True
        )
        pct = check_real("RobustAmplitudeScale: outlier_percent", outlier_percent, 0.0, 1.0)
        super().__init__(max_robust_amplitude=amp, outlier_percent=pct)
        self.max_robust_amplitude, self.outlier_percent = amp, pct

    def apply(self, samples: np.ndarray) -> np.ndarray:
        if samples.size == 0:
            return samples.astype(np.float64)
        mags = np.sort(_magnitudes(samples.ravel()))
        k = min(int(len(mags) * (1 - self.outlier_percent)), len(mags) - 1)
        ref = float(mags[k])
        return _scale_to(samples, ref if ref != 0.0 else float(mags[-1]), self.max_robust_amplitude)


# -- noise ---------------------------------------------------------------------------------
def normalize(samples: np.ndarray) -> np.ndarray:
    """``samples`` minus their mean, divided by the largest ``|value|`` left (if not 0):
    Tonic's ``audio_transforms.normalize``, without its in-place change of the input."""
    x = np.asarray(samples, dtype=np.float64)
    x = x - x.mean()
    peak = float(np.abs(x).max()) if x.size else 0.0
    return x / peak if peak > 0 else x


def mix_at_snr(
    signal: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    normed: bool = True,
    tonic_scaling: bool = False,
) -> np.ndarray:
    """``signal + g * noise``, with ``g`` set for a signal-to-noise ratio of ``snr_db``.

    ``g = sqrt(P_s / P_n) 10^(-snr_db / 20)``, ``P`` the mean square: the mix's noise
    power is ``snr_db`` below the signal's. Tonic's ``AddNoise`` uses
    ``g = (P_s / P_n) 10^(-snr_db / 10)``, a power ratio applied to amplitudes: its SNR
    is ``2 snr_db - 10 log10(P_s / P_n)``, the asked one only when ``P_s = P_n`` and
    ``snr_db = 0``. ``tonic_scaling=True`` reproduces it. ``normed``: then
    :func:`normalize` the mix (Tonic's default).

    Raises:
        ShapeError: ``noise`` is not the shape of ``signal``.
        ConfigurationError: the noise is silent (no SNR reaches it).
    """
    s = np.asarray(signal, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)
    if s.shape != n.shape:
        raise ShapeError(f"mix_at_snr: noise of shape {n.shape} for a signal of shape {s.shape}")
    snr = check_real("mix_at_snr: snr_db", snr_db)
    p_signal, p_noise = float((s**2).mean()), float((n**2).mean())
    if p_noise == 0.0:
        raise ConfigurationError("mix_at_snr: the noise is silent (zero power): no SNR reaches it")
    if tonic_scaling:
        gain = (p_signal / p_noise) * 10.0 ** (-snr / 10.0)
    else:
        gain = np.sqrt(p_signal / p_noise) * 10.0 ** (-snr / 20.0)
    mixed = s + gain * n
    return normalize(mixed) if normed else mixed


class AddNoise(AudioTransform):
    """Mix in a random piece of a noise recording at ``snr_db`` (Tonic's ``AddNoise``).

    Each call draws a recording of ``noise`` (uniformly among those at least as long as
    the clip; Tonic redraws until one is, forever if none is), then a window of the
    clip's length at a uniform start (``0 .. L - n`` inclusive; Tonic never starts at the
    last position), and mixes it with :func:`mix_at_snr`.

    Args:
        noise: the noise recordings: arrays or clips shaped like the clips to augment
            (``[frames]`` or ``[channels, frames]``), or a dataset whose items are
            ``(noise, ...)`` as Tonic takes.
        snr_db: the signal-to-noise ratio in dB.
        normed: :func:`normalize` the mix.
        tonic_scaling: Tonic's gain (see :func:`mix_at_snr`).
        sample_rate: if given, clips (the noise's and the augmented ones) of another
            rate are refused.
        seed: see the module doc.
    """

    def __init__(
        self,
        noise: Sequence[Any],
        snr_db: float,
        normed: bool = True,
        tonic_scaling: bool = False,
        sample_rate: float | None = None,
        seed: Seed = None,
    ) -> None:
        self.noise = noise
        if len(noise) == 0:
            raise ConfigurationError("AddNoise: noise has no recordings")
        sample_rate = _optional_rate("AddNoise", sample_rate)
        super().__init__(seed, snr_db=check_real("AddNoise: snr_db", snr_db),
                         normed=check_flag("AddNoise", "normed", normed),
                         tonic_scaling=check_flag("AddNoise", "tonic_scaling", tonic_scaling),
                         sample_rate=sample_rate)  # fmt: skip
        self.snr_db, self.normed, self.tonic_scaling = float(snr_db), normed, tonic_scaling
        self.sample_rate = sample_rate

    @property
    def random(self) -> bool:
        return True

    def _recording(self, i: int) -> np.ndarray:
        item = self.noise[i]
        if isinstance(item, tuple):  # a dataset item (noise, label, ...)
            item = item[0]
        x, clip = _samples(item, f"AddNoise: noise[{i}]")
        if self.sample_rate is not None:
            _check_rate(f"AddNoise (noise[{i}])", clip, self.sample_rate)
        return x

    def apply(self, samples: np.ndarray) -> np.ndarray:
        rng = self.rng()
        n = samples.shape[-1]
        order = rng.permutation(len(self.noise))
        for i in order:  # the first long enough recording of a random order: uniform
            rec = self._recording(int(i))
            if rec.shape[-1] >= n:
                break
        else:
            raise ConfigurationError(
                f"AddNoise: no noise recording has the clip's {n} samples or more"
            )
        if rec.ndim != samples.ndim or rec.shape[:-1] != samples.shape[:-1]:
            raise ShapeError(
                f"AddNoise: noise[{int(i)}] has shape {rec.shape}; the clip {samples.shape} "
                "(the same channels needed)"
            )
        start = int(rng.integers(0, rec.shape[-1] - n, endpoint=True))
        piece = rec[..., start : start + n]
        return mix_at_snr(samples, piece, self.snr_db, self.normed, self.tonic_scaling)
