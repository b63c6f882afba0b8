"""From sound to spikes: a mel filterbank front end and a level-crossing encoder.

:class:`AudioToEvents` turns an audio clip into events as a dynamic audio sensor
(a silicon cochlea) would: the clip's power in ``n_mels`` mel-spaced bands, every
``hop_ms``, in decibels, and an ON (OFF) event each time a band's level rises (falls)
by ``threshold_db`` from the level of its last event, at the time the change is
crossed (interpolated between frames). This is a DVS pixel's rule, on the log power of
a cochlear channel instead of the log intensity of a pixel, so the events do not depend
on the recording's gain. The result is an :class:`~spikeflow.data.EventRecording` with
``x`` = band (0 = lowest), ``y = 0``, ``p`` = 1 (ON) or 0 (OFF) and sensor size
``(n_mels, 1, 2)``: every representation and event transform of :mod:`spikeflow.data`
applies, and :class:`~spikeflow.data.FSDD` / :class:`~spikeflow.data.SpeechCommands`
train from raw WAV files with it.

The pieces are public: :func:`mel_filterbank` (the HTK or Slaney mel scale, optional
Slaney area normalisation), :func:`mel_spectrogram` (centred Hann-windowed frames) and
:func:`level_crossings` (the encoder on any ``[frames, channels]`` signal).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Protocol

import numpy as np

from spikeflow._checks import check_int, check_real
from spikeflow.data.events import EventRecording, make_events
from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError

__all__ = [
    "MEL_SCALES",
    "AudioToEvents",
    "hz_to_mel",
    "level_crossings",
    "mel_filterbank",
    "mel_spectrogram",
    "mel_to_hz",
]

#: The mel scales :func:`hz_to_mel` knows: HTK's ``2595 log10(1 + f / 700)``, and
#: Slaney's (the Auditory Toolbox's), linear below 1 kHz and logarithmic above.
MEL_SCALES = ("htk", "slaney")

# Slaney's scale: 3 mels per 200 Hz below 1 kHz, then 27 mels per factor 6.4.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


class _Clip(Protocol):
    samples: np.ndarray
    sample_rate: int


def _check_scale(scale: str) -> None:
    if scale not in MEL_SCALES:
        raise ConfigurationError(f"scale must be one of {MEL_SCALES}; got {scale!r}")


def hz_to_mel(freq: np.ndarray | float, scale: str = "htk") -> np.ndarray:
    """Frequencies in Hz to mels on ``scale`` (``"htk"`` or ``"slaney"``)."""
    _check_scale(scale)
    f = np.asarray(freq, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    above = f >= _SLANEY_BREAK_HZ
    safe = np.where(above, f, _SLANEY_BREAK_HZ)  # no log of 0 in the unused branch
    log_part = _SLANEY_BREAK_MEL + np.log(safe / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return np.where(above, log_part, f / _SLANEY_HZ_PER_MEL)


def mel_to_hz(mel: np.ndarray | float, scale: str = "htk") -> np.ndarray:
    """Mels on ``scale`` back to Hz (the inverse of :func:`hz_to_mel`)."""
    _check_scale(scale)
    m = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    above = m >= _SLANEY_BREAK_MEL
    log_part = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (m - _SLANEY_BREAK_MEL))
    return np.where(above, log_part, m * _SLANEY_HZ_PER_MEL)


def _positive(name: str, value: Any) -> float:
    return check_real(name, value, 0.0, low_open=True)


def _check_norm(norm: str | None) -> None:
    if norm not in (None, "slaney"):
        raise ConfigurationError(f"norm must be None or 'slaney'; got {norm!r}")


def _band(sample_rate: float, f_min: float, f_max: float | None) -> tuple[float, float]:
    nyquist = sample_rate / 2.0
    top = nyquist if f_max is None else float(f_max)
    if not 0.0 <= f_min < top:
        raise ConfigurationError(f"need 0 <= f_min < f_max; got f_min={f_min}, f_max={top}")
    if top > nyquist:
        raise ConfigurationError(
            f"f_max={top} Hz is above the Nyquist frequency {nyquist} Hz of a "
            f"{sample_rate} Hz recording: lower f_max, or leave it None (the Nyquist frequency)"
        )
    return float(f_min), top


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: str = "htk",
    norm: str | None = None,
) -> np.ndarray:
    """Triangular mel filters over the ``n_fft // 2 + 1`` bins of a real FFT.

    Filter ``i`` rises linearly (in Hz) from edge ``i`` to 1 at edge ``i + 1`` and falls
    to 0 at edge ``i + 2``, the ``n_mels + 2`` edges equally spaced on the mel ``scale``
    between ``f_min`` and ``f_max`` (default: the Nyquist frequency). ``norm="slaney"``
    scales each filter by ``2 / (width in Hz)`` (equal area, constant energy per band).

    Returns:
        float64 ``[n_mels, n_fft // 2 + 1]``.

    Raises:
        ConfigurationError: a bad argument, or a filter that covers no FFT bin (too many
            bands for ``n_fft``): it would be a channel that never fires.
    """
    n_fft, n_mels = check_int("n_fft", n_fft, 1), check_int("n_mels", n_mels, 1)
    sample_rate = int(_positive("sample_rate", sample_rate))
    _check_scale(scale)
    _check_norm(norm)
    low, high = _band(sample_rate, float(f_min), f_max)
    edges = mel_to_hz(np.linspace(hz_to_mel(low, scale), hz_to_mel(high, scale), n_mels + 2), scale)
    bins = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - left) / (centre - left)
    falling = (right - bins) / (right - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= 2.0 / (right - left)
    empty = np.flatnonzero(~weights.any(axis=1))
    if empty.size:
        i = int(empty[0])
        raise ConfigurationError(
            f"mel band {i} ({edges[i]:.1f}-{edges[i + 2]:.1f} Hz) covers no bin of a "
            f"{n_fft}-point FFT at {sample_rate} Hz (bins every {sample_rate / n_fft:.1f} Hz): "
            f"use fewer than n_mels={n_mels} bands, a larger n_fft or a higher f_min"
        )
    return weights


#: More channels than this in a [channels, frames] array is taken for a transposed clip.
_MAX_CHANNELS = 64


def _mono(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim not in (1, 2):
        raise ShapeError(
            f"audio samples must be [frames] or [channels, frames]; got shape {tuple(x.shape)}"
        )
    if x.dtype.kind not in "fiu":
        raise ConfigurationError(f"audio samples must be real numbers; got dtype {x.dtype}")
    if x.ndim == 2:
        if x.shape[0] > _MAX_CHANNELS and x.shape[0] > x.shape[1]:
            raise ShapeError(
                f"audio samples of shape {tuple(x.shape)} look like [frames, channels] (the "
                "layout of soundfile and scipy.io.wavfile); pass [channels, frames]: .T"
            )
        return x.mean(axis=0, dtype=np.float64)  # [channels, frames] -> mixed down
    return x.astype(np.float64)


def _frame_sizes(sample_rate: int, window_ms: float, hop_ms: float) -> tuple[int, int]:
    window = round(_positive("window_ms", window_ms) * sample_rate / 1000.0)
    hop = round(_positive("hop_ms", hop_ms) * sample_rate / 1000.0)
    if window < 2 or hop < 1:
        raise ConfigurationError(
            f"window_ms={window_ms} and hop_ms={hop_ms} give {window} and {hop} samples at "
            f"{sample_rate} Hz; need a window of 2 samples or more and a hop of 1 or more"
        )
    return window, hop


#: The bytes of complex spectra :func:`mel_spectrogram` computes at a time.
_BLOCK_BYTES = 1 << 22


@functools.lru_cache(maxsize=32)
def _cached_filterbank(*args: Any) -> np.ndarray:
    bank = mel_filterbank(*args)
    bank.flags.writeable = False
    return bank


def mel_spectrogram(
    samples: np.ndarray,
    sample_rate: int,
    *,
    n_mels: int = 40,
    window_ms: float = 25.0,
    hop_ms: float = 10.0,
    n_fft: int | None = None,
    f_min: float = 20.0,
    f_max: float | None = None,
    scale: str = "htk",
    norm: str | None = None,
) -> np.ndarray:
    """The power of ``samples`` in ``n_mels`` mel bands, one row every ``hop_ms``.

    Frame ``k`` is centred on sample ``k * hop`` (the clip is padded with
    ``window // 2`` zeros at both ends), weighted by a periodic Hann window of
    ``window_ms`` and zero-padded to ``n_fft`` points (default: the next power of two);
    its power spectrum ``|FFT|^2`` goes through :func:`mel_filterbank`. A clip of ``n``
    samples has ``(n - 1) // hop + 1`` frames (none when empty). Stereo
    ``[channels, frames]`` input is averaged to mono first.

    Returns:
        float64 ``[frames, n_mels]``.
    """
    x = _mono(samples)
    sample_rate = int(_positive("sample_rate", sample_rate))
    window, hop = _frame_sizes(sample_rate, window_ms, hop_ms)
    size = 1 << (window - 1).bit_length() if n_fft is None else check_int("n_fft", n_fft, 1)
    if size < window:
        raise ConfigurationError(
            f"n_fft={size} is shorter than the window ({window} samples = {window_ms} ms at "
            f"{sample_rate} Hz)"
        )
    bank = _cached_filterbank(sample_rate, size, n_mels, float(f_min), f_max, scale, norm)
    count = 0 if x.size == 0 else (x.size - 1) // hop + 1
    if count == 0:
        return np.zeros((0, bank.shape[0]))
    padded = np.concatenate([np.zeros(window // 2), x, np.zeros(window)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:count]
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(window) / window)
    # In blocks of frames: the windowed frames and their spectra, all at once, would take
    # (window + 4 (n_fft/2 + 1)) x 8 bytes per hop, ~17x the clip's float64 samples at
    # 48 kHz (24 GB for two hours); a block's spectra take about _BLOCK_BYTES.
    out = np.empty((count, bank.shape[0]))
    block = max(1, _BLOCK_BYTES // (16 * (size // 2 + 1)))
    for start in range(0, count, block):
        spectrum = np.fft.rfft(frames[start : start + block] * hann, n=size, axis=1)
        out[start : start + block] = (np.abs(spectrum) ** 2) @ bank.T
    return out


def level_crossings(
    signal: np.ndarray,
    threshold: float,
    step_us: float,
    initial: np.ndarray | float | None = None,
) -> np.ndarray:
    """Send-on-delta events of each column of ``signal`` (``[frames, channels]``).

    Each channel keeps a reference level (``initial``, default its first value). When
    the signal at frame ``k`` is ``n >= 1`` thresholds above (below) the reference, the
    channel emits ``n`` ON (OFF) events, one per level crossed, and the reference moves
    by ``n`` thresholds. An event's time is where the straight line between frames
    ``k - 1`` and ``k`` (``step_us`` apart, frame ``k`` at ``k * step_us``) crosses its
    level, rounded to the microsecond; events of frame 0 are at time 0.

    Returns:
        events of :data:`~spikeflow.data.EVENT_DTYPE`, sorted by time (equal times
        by frame, then channel, then crossing), ``x`` = channel, ``p`` = 1 ON / 0 OFF.
    """
    s = np.asarray(signal, dtype=np.float64)
    if s.ndim != 2:
        raise ShapeError(f"signal must be [frames, channels]; got shape {tuple(s.shape)}")
    if not np.isfinite(s).all():
        at = np.argwhere(~np.isfinite(s))[0]
        raise ConfigurationError(f"signal[{at[0]}, {at[1]}] is {s[tuple(at)]}: not finite")
    theta = _positive("threshold", threshold)
    step = _positive("step_us", step_us)
    frames, channels = s.shape
    if frames == 0:
        return _no_events()
    if initial is None:
        base = s[0].copy()
    else:
        start = np.asarray(initial, dtype=np.float64)
        if start.ndim > 1 or start.size not in (1, channels):
            raise ShapeError(
                f"initial must be a number or one per channel ({channels}); got shape "
                f"{tuple(start.shape)}"
            )
        if not np.isfinite(start).all():
            raise ConfigurationError(f"initial must be finite; got {initial!r}")
        base = np.broadcast_to(start, (channels,)).copy()
    # The reference is base + m * theta with an integer m, so a signal back at its base
    # (the silence floor) lands on a level exactly, whatever the path it took.
    units = (s - base) / theta
    refs = np.empty_like(s)
    counts = np.empty(s.shape, dtype=np.int64)  # signed: ON > 0, OFF < 0
    m = np.zeros(channels)
    for k in range(frames):  # the loop is over frames only
        n = np.trunc(units[k] - m)
        refs[k] = base + m * theta
        counts[k] = n
        m += n
    return _expand(s, refs, counts, theta, step)


def _no_events() -> np.ndarray:
    return make_events(*(np.zeros(0, np.int64),) * 4)


def _expand(
    s: np.ndarray, refs: np.ndarray, counts: np.ndarray, theta: float, step: float
) -> np.ndarray:
    """The events of :func:`level_crossings` from the per-frame counts."""
    k, c = np.nonzero(counts)
    n = counts[k, c]
    size = np.abs(n)
    total = int(size.sum())
    if total == 0:
        return _no_events()
    j = np.arange(total) - np.repeat(np.cumsum(size) - size, size) + 1  # 1..|n| per run
    k, c, n = (np.repeat(a, size) for a in (k, c, n))
    sign = np.sign(n)
    level = refs[k, c] + sign * j * theta
    before = s[np.maximum(k - 1, 0), c]
    after = s[k, c]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(k > 0, (level - before) / (after - before), 1.0)
    t = np.rint((k - 1 + np.clip(frac, 0.0, 1.0)) * step)
    t = np.where(k > 0, t, 0.0).astype(np.int64)
    order = np.argsort(t, kind="stable")
    p = (sign > 0).astype(np.int64)
    return make_events(t[order], c[order], None, p[order])


def _check_finite(clip: _Clip) -> None:
    """A NaN or infinite sample would make every band of every frame it touches NaN."""
    x = np.asarray(clip.samples)
    if x.dtype.kind != "f" or np.isfinite(x).all():
        return
    at = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
    where = getattr(clip, "source", None) or "audio clip"
    raise DataFormatError(
        f"{where}: sample {list(at)} (of shape {list(x.shape)}) is {x[at]}: the audio must "
        "be finite"
    )


class AudioToEvents:
    """Audio clip -> ON/OFF events of ``n_mels`` cochlear bands (see the module doc).

    Args:
        n_mels: number of mel bands (the sensor's width).
        threshold_db: the level change (dB of band power) of one event.
        window_ms, hop_ms, n_fft, f_min, f_max, scale, norm: the front end,
            :func:`mel_spectrogram` (``f_max`` default: the clip's Nyquist frequency; fix
            it for a corpus of several sample rates so band ``i`` means one frequency).
        dynamic_range_db: band powers below the clip's loudest band-frame minus this are
            raised to it (silence), and every band's reference starts there: a band
            emits ON events as its power rises out of the floor, and background noise
            under the floor emits nothing. The floor follows the clip's peak, so scaling
            a clip does not change its events.

    Calling it on an :class:`~spikeflow.data.io.AudioClip` (or anything with
    ``samples`` and ``sample_rate``) returns an EventRecording; :meth:`decibels` gives
    the floored band levels it encodes, ``[frames, n_mels]``.
    """

    def __init__(
        self,
        n_mels: int = 40,
        threshold_db: float = 2.0,
        *,
        window_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int | None = None,
        f_min: float = 20.0,
        f_max: float | None = None,
        scale: str = "htk",
        norm: str | None = None,
        dynamic_range_db: float = 60.0,
    ) -> None:
        self.n_mels = check_int("n_mels", n_mels, 1)
        self.threshold_db = _positive("threshold_db", threshold_db)
        self.window_ms = _positive("window_ms", window_ms)
        self.hop_ms = _positive("hop_ms", hop_ms)
        self.n_fft = None if n_fft is None else check_int("n_fft", n_fft, 1)
        self.f_min = check_real("f_min (Hz)", f_min, 0.0)
        self.f_max = None if f_max is None else _positive("f_max", f_max)
        _check_scale(scale)
        self.scale = scale
        _check_norm(norm)
        self.norm = norm
        self.dynamic_range_db = _positive("dynamic_range_db", dynamic_range_db)

    @property
    def sensor_size(self) -> tuple[int, int, int]:
        """``(n_mels, 1, 2)``: bands x one row x ON/OFF."""
        return (self.n_mels, 1, 2)

    def params(self) -> dict[str, Any]:
        """The settings the events depend on (JSON-able; the cache key)."""
        return {
            "n_mels": self.n_mels,
            "threshold_db": self.threshold_db,
            "window_ms": self.window_ms,
            "hop_ms": self.hop_ms,
            "n_fft": self.n_fft,
            "f_min": self.f_min,
            "f_max": self.f_max,
            "scale": self.scale,
            "norm": self.norm,
            "dynamic_range_db": self.dynamic_range_db,
        }

    def cache_key(self) -> dict[str, Any]:
        """What a cached representation of these events is keyed by."""
        return {"name": "audio_to_events", **self.params()}

    def _relative_levels(self, clip: _Clip) -> tuple[np.ndarray, float]:
        """The band levels in dB relative to the clip's loudest band-frame (exactly 0
        there, exactly ``-dynamic_range_db`` where floored), and that peak power."""
        _check_finite(clip)
        try:
            power = mel_spectrogram(
                clip.samples, clip.sample_rate, n_mels=self.n_mels, window_ms=self.window_ms,
                hop_ms=self.hop_ms, n_fft=self.n_fft, f_min=self.f_min, f_max=self.f_max,
                scale=self.scale, norm=self.norm,
            )  # fmt: skip
        except ConfigurationError as exc:  # settings this clip cannot take (its rate)
            where = getattr(clip, "source", None)
            if where is None:
                raise
            raise ConfigurationError(f"{where}: {exc}") from exc
        peak = float(power.max()) if power.size else 0.0
        floor = -self.dynamic_range_db
        if peak == 0.0:  # silence (or no frame): every band at the floor
            return np.full(power.shape, floor), peak
        # Ratios to the peak, not absolute dB: the peak is 0 dB whatever the gain. The
        # peak is dynamic_range_db above the floor (60 dB: 30 thresholds of 2 dB), on a
        # level exactly; in absolute dB a rounding error put it either side of that level
        # depending on the gain (its last ON event, and an OFF event, came and went).
        ratio = power / peak
        with np.errstate(divide="ignore"):  # log10(0) of silent bands, floored anyway
            levels = np.where(ratio > 10.0 ** (floor / 10.0), 10.0 * np.log10(ratio), floor)
        return levels, peak

    def decibels(self, clip: _Clip) -> tuple[np.ndarray, float]:
        """The clip's band levels in dB, floored, ``[frames, n_mels]``, and the floor.

        Raises:
            DataFormatError: a sample is NaN or infinite (a corrupt float WAV); the
                message names the clip's ``source`` and the sample.
        """
        levels, peak = self._relative_levels(clip)
        if peak == 0.0:
            tiny = 10.0 * math.log10(np.finfo(np.float64).tiny)
            return np.full(levels.shape, tiny), tiny
        peak_db = 10.0 * math.log10(peak)
        return levels + peak_db, peak_db - self.dynamic_range_db

    def __call__(self, clip: _Clip) -> EventRecording:
        # The levels relative to the peak: the events do not depend on the gain.
        levels, _ = self._relative_levels(clip)
        floor = -self.dynamic_range_db
        _, hop = _frame_sizes(int(clip.sample_rate), self.window_ms, self.hop_ms)
        step_us = hop * 1e6 / clip.sample_rate
        events = level_crossings(levels, self.threshold_db, step_us, initial=floor)
        return EventRecording(events, self.sensor_size, getattr(clip, "source", None))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"AudioToEvents({args})"
