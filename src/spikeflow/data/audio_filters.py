"""Butterworth filters and filter banks of Tonic's audio front end.

:func:`butter_sos` designs a digital Butterworth filter as second-order sections
(``scipy.signal.butter``); :class:`SOSFilter` and :class:`ButterFilter` run one filter
over a clip, and :class:`ButterFilterBank`, :class:`LinearButterFilterBank` and
:class:`MelButterFilterBank` run band-passes side by side (a cochlea-like front end:
rectified band outputs ``[..., bands, frames]``). These are Tonic 1.7's
``tonic.audio_transforms`` filters; they are also importable from
:mod:`spikeflow.data.audio_transforms` (the conventions are in its module doc). scipy
is in spikeflow's ``data`` extra; a missing scipy raises
:class:`~spikeflow.errors.MissingExtraError` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.data.audio import hz_to_mel, mel_to_hz
from spikeflow.data.audio_transform_base import AudioTransform, _axis
from spikeflow.data.io._common import import_optional
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "FILTER_TYPES",
    "ButterFilter",
    "ButterFilterBank",
    "LinearButterFilterBank",
    "MelButterFilterBank",
    "SOSFilter",
    "butter_sos",
    "linear_bands",
    "mel_bands",
]

#: The Butterworth filter types :func:`butter_sos` designs (scipy's names).
FILTER_TYPES = ("lowpass", "highpass", "bandpass", "bandstop")
_FILTER_ALIASES = {"low": "lowpass", "high": "highpass", "band": "bandpass", "stop": "bandstop"}


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
