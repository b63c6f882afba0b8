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

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.data.audio import _MAX_CHANNELS, hz_to_mel, mel_to_hz
from spikeflow.data.io._common import import_optional
from spikeflow.data.io.wav import AudioClip
from spikeflow.data.representations import user_class_key
from spikeflow.data.transforms import SeededTransform
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

#: The Butterworth filter types :func:`butter_sos` designs (scipy's names).
FILTER_TYPES = ("lowpass", "highpass", "bandpass", "bandstop")
_FILTER_ALIASES = {"low": "lowpass", "high": "highpass", "band": "bandpass", "stop": "bandstop"}

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


def _axis(axis: int, ndim: int) -> int:
    if (
        isinstance(axis, bool)
        or not isinstance(axis, (int, np.integer))
        or not -ndim <= axis < ndim
    ):
        raise ShapeError(f"axis={axis!r} is not an axis of a {ndim}-d array")
    return int(axis) % ndim


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


# -- Butterworth filters ------------------------------------------------------------------
def _signal() -> Any:
    return import_optional("scipy.signal", "Butterworth filters", "scipy", "data")


def butter_sos(
    order: int, freq: float | Sequence[float], sample_rate: float, btype: str = "bandpass"
) -> np.ndarray:
    """A digital Butterworth filter as second-order sections (``scipy.signal.butter``).

    Args:
        order: the filter order (a band filter has twice as many poles).
        freq: the cut-off in Hz (low/high-pass), or ``(low, high)`` in Hz (band types).
        sample_rate: of the signal to filter, in Hz.
        btype: one of :data:`FILTER_TYPES` (or scipy's short names ``"low"``,
            ``"high"``, ``"band"``, ``"stop"``).

    Returns:
        float64 ``[sections, 6]``: ``scipy.signal.butter(order, freq / nyquist,
        btype, output="sos")``; Tonic passes the frequencies divided by the Nyquist
        frequency, which is the same filter.

    Raises:
        ConfigurationError: a frequency not strictly between 0 and the Nyquist
            frequency (scipy's "critical frequencies must be 0 < Wn < 1" does not say
            which band or what the Nyquist frequency is), band edges out of order, a
            single cut-off for a band type or a pair for a low/high-pass.
        MissingExtraError: scipy is not installed (``spikeflow[data]``).
    """
    order = check_int("butter_sos: order", order, 1)
    rate = check_real("butter_sos: sample_rate", sample_rate, 0.0, low_open=True)
    kind = _FILTER_ALIASES.get(btype, btype)
    if kind not in FILTER_TYPES:
        raise ConfigurationError(f"butter_sos: btype must be one of {FILTER_TYPES}; got {btype!r}")
    nyquist = rate / 2.0
    edges = np.atleast_1d(np.asarray(freq, dtype=np.float64))
    need = 2 if kind in ("bandpass", "bandstop") else 1
    if edges.shape != (need,):
        what = "a (low, high) pair in Hz" if need == 2 else "one cut-off frequency in Hz"
        raise ConfigurationError(f"butter_sos: a {kind} filter needs {what}; got {freq!r}")
    bad = (~np.isfinite(edges)) | (edges <= 0.0) | (edges >= nyquist)
    if bad.any():
        raise ConfigurationError(
            f"butter_sos: filter frequency {edges[bad][0]:g} Hz (of {freq!r}) is not strictly "
            f"between 0 and the Nyquist frequency {nyquist:g} Hz of {rate:g} Hz audio"
        )
    if need == 2 and not edges[0] < edges[1]:
        raise ConfigurationError(f"butter_sos: need low < high band edges; got {freq!r}")
    wn = edges / nyquist
    return _signal().butter(order, wn if need == 2 else wn[0], btype=kind, output="sos")


def _sosfilt(sos: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``scipy.signal.sosfilt`` along ``axis``, float64; a signal of no samples gives no
    samples (scipy fails on it with "cannot reshape array of size 0")."""
    if x.shape[axis] == 0:
        return np.zeros(x.shape, dtype=np.float64)
    return np.asarray(_signal().sosfilt(sos, x, axis=axis), dtype=np.float64)


def _check_sos(coeffs: Any) -> np.ndarray:
    sos = np.asarray(coeffs, dtype=np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] < 1:
        raise ShapeError(f"SOSFilter: coeffs must be [sections, 6]; got shape {tuple(sos.shape)}")
    if not np.isfinite(sos).all():
        raise ConfigurationError("SOSFilter: coeffs must be finite")
    if np.any(sos[:, 3] == 0):
        raise ConfigurationError("SOSFilter: each section's a0 (column 3) must be nonzero")
    return sos


class SOSFilter(AudioTransform):
    """Filter the clip with second-order sections along ``axis`` (Tonic's ``SOSFilter``:
    ``scipy.signal.sosfilt``, zero initial state), float64 out."""

    def __init__(self, coeffs: np.ndarray, axis: int = -1) -> None:
        super().__init__(axis=axis)
        self.coeffs, self.axis = _check_sos(coeffs), axis
        self._params["coeffs"] = self.coeffs.tolist()

    def apply(self, samples: np.ndarray) -> np.ndarray:
        return _sosfilt(self.coeffs, samples, _axis(self.axis, samples.ndim))


class ButterFilter(AudioTransform):
    """A Butterworth filter (Tonic's ``ButterFilter``), designed by :func:`butter_sos`.

    Args:
        order, freq, sample_rate, btype: see :func:`butter_sos` (``freq`` in Hz; Tonic's
            is a fraction of the Nyquist frequency: multiply it by ``sample_rate / 2``).
        rectify: return ``|output|`` (full-wave rectified: :class:`Bin` then sums it into
            the band's envelope).

    Tonic's ``analog=True`` (an analog design run as a digital filter) is not offered: it
    is not the filter its arguments describe.
    """

    def __init__(
        self,
        order: int,
        freq: float | Sequence[float],
        sample_rate: float,
        btype: str = "bandpass",
        rectify: bool = False,
    ) -> None:
        self.sos = butter_sos(order, freq, sample_rate, btype)
        freq_key = [float(f) for f in np.atleast_1d(freq)]
        super().__init__(order=order, freq=freq_key, sample_rate=float(sample_rate), btype=btype,
                         rectify=check_flag("ButterFilter", "rectify", rectify))  # fmt: skip
        self.sample_rate, self.rectify = float(sample_rate), rectify

    def apply(self, samples: np.ndarray) -> np.ndarray:
        out = _sosfilt(self.sos, samples)
        return np.abs(out) if self.rectify else out


def _check_bands(bands: Any, sample_rate: float) -> np.ndarray:
    edges = np.asarray(bands, dtype=np.float64)
    if edges.ndim != 2 or edges.shape[1] != 2 or edges.shape[0] < 1:
        raise ShapeError(
            f"ButterFilterBank: bands must be [(low, high), ...] in Hz; got shape "
            f"{tuple(edges.shape)}"
        )
    nyquist = sample_rate / 2.0
    for i, (lo, hi) in enumerate(edges):
        if not (0.0 < lo < hi < nyquist):
            raise ConfigurationError(
                f"ButterFilterBank: band {i} ({lo:g}, {hi:g}) Hz needs 0 < low < high < the "
                f"Nyquist frequency {nyquist:g} Hz of {sample_rate:g} Hz audio"
            )
    return edges


class ButterFilterBank(AudioTransform):
    """Butterworth band-pass filters side by side (Tonic's ``ButterFilterBank``).

    Each band ``(low, high)`` (Hz) is a :func:`butter_sos` band-pass of ``order``; the
    output is ``[..., bands, frames]``: a band axis before time (``[bands, frames]`` for
    ``[frames]``, ``[channels, bands, frames]`` for ``[channels, frames]``). Tonic
    concatenates the filters' outputs on axis 0, so for a mono ``[1, frames]`` clip its
    ``[bands, frames]`` is spikeflow's ``[0]``; for several channels Tonic orders the
    rows band-major. The result is not audio: a clip in gives an array out.
    """

    waveform = False

    def __init__(
        self, order: int, bands: Sequence[Sequence[float]], sample_rate: float, rectify: bool = True
    ) -> None:
        owner = type(self).__name__
        order = check_int(f"{owner}: order", order, 1)
        rate = check_real(f"{owner}: sample_rate", sample_rate, 0.0, low_open=True)
        self.bands = _check_bands(bands, rate)
        self.sos = np.stack([butter_sos(order, b, rate) for b in self.bands])
        super().__init__(order=order, bands=self.bands.tolist(),
                         sample_rate=rate,
                         rectify=check_flag("ButterFilterBank", "rectify", rectify))  # fmt: skip
        self.order, self.sample_rate, self.rectify = order, rate, rectify

    def apply(self, samples: np.ndarray) -> np.ndarray:
        out = np.stack([_sosfilt(sos, samples) for sos in self.sos], axis=-2)
        return np.abs(out) if self.rectify else out


def linear_bands(num_filters: int, low_freq: float, sample_rate: float) -> np.ndarray:
    """Tonic's linearly spaced bands, in Hz ``[num_filters, 2]``.

    Band ``i`` is ``(f_i, f_i (1 + 2 / num_filters))``: its width is ``2 / num_filters``
    of its low edge, the ``f_i`` equally spaced from ``low_freq`` to
    ``nyquist / (1 + 2 / num_filters) - 1``, so the top band ends 1 + 2/n Hz below the
    Nyquist frequency.
    """
    low, high, bandwidth = _span(num_filters, low_freq, sample_rate)
    freqs = np.linspace(low, high, num_filters)
    return np.stack([freqs, freqs * (1 + bandwidth)], axis=1)


def mel_bands(num_filters: int, low_freq: float, sample_rate: float) -> np.ndarray:
    """Tonic's mel-spaced bands, in Hz ``[num_filters, 2]``: as :func:`linear_bands`, the
    low edges equally spaced on the HTK mel scale (``2595 log10(1 + f / 700)``)."""
    low, high, bandwidth = _span(num_filters, low_freq, sample_rate)
    freqs = mel_to_hz(np.linspace(hz_to_mel(low), hz_to_mel(high), num_filters))
    return np.stack([freqs, freqs * (1 + bandwidth)], axis=1)


def _span(num_filters: int, low_freq: float, sample_rate: float) -> tuple[float, float, float]:
    n = check_int("num_filters", num_filters, 1)
    rate = check_real("sample_rate", sample_rate, 0.0, low_open=True)
    low = check_real("low_freq", low_freq, 0.0, low_open=True)
    bandwidth = 2.0 / n
    high = rate / 2.0 / (1.0 + bandwidth) - 1.0
    if not low <= high:
        raise ConfigurationError(
            f"low_freq={low:g} Hz is above the top band's low edge {high:g} Hz "
            f"(nyquist / (1 + 2/{n}) - 1 at {rate:g} Hz): lower low_freq or use fewer filters"
        )
    return low, high, bandwidth


class LinearButterFilterBank(ButterFilterBank):
    """Tonic's ``LinearButterFilterBank``: ``num_filters`` band-passes of
    :func:`linear_bands` (Tonic's ``sampling_freq`` is ``sample_rate`` here)."""

    def __init__(
        self,
        order: int = 2,
        low_freq: float = 100.0,
        sample_rate: float = 16000.0,
        num_filters: int = 64,
        rectify: bool = True,
    ) -> None:
        super().__init__(order, self._bands(num_filters, low_freq, sample_rate), sample_rate,
                         rectify)  # fmt: skip
        self.low_freq, self.num_filters = float(low_freq), num_filters
        self._params = {"order": order, "low_freq": float(low_freq),
                        "sample_rate": float(sample_rate), "num_filters": num_filters,
                        "rectify": rectify}  # fmt: skip

    _bands = staticmethod(linear_bands)


class MelButterFilterBank(LinearButterFilterBank):
    """Tonic's ``MelButterFilterBank``: ``num_filters`` band-passes of :func:`mel_bands`."""

    _bands = staticmethod(mel_bands)


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
