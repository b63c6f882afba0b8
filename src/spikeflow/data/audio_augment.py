"""Random audio augmentations of Tonic (``tonic.audio_augmentations``), without librosa.

:class:`RandomTimeStretch` (a phase vocoder: :func:`time_stretch`),
:class:`RandomPitchShift` (:func:`pitch_shift`: stretch, then resample),
:class:`RandomAmplitudeScale` (a random peak level), :class:`AddWhiteNoise` (Gaussian
noise in proportion to the clip's standard deviation) and :class:`RIR` (reverberation:
convolution with a room impulse response, :func:`convolve_rir`). They follow
:mod:`spikeflow.data.audio_transforms` (arrays or clips in, time on the last axis,
``seed``, ``.random``).

Tonic calls librosa (``effects.time_stretch``, ``effects.pitch_shift``) and draws with
Python's ``random`` and numpy's global generator. spikeflow writes librosa's phase
vocoder, STFT and inverse STFT in numpy (the same frames, window and normalisation:
equal to librosa to float64 rounding), resamples with ``scipy.signal.resample`` (FFT)
where librosa's default is soxr (a library of its own), and draws from one numpy
Generator per transform. Tonic's ``caching`` / ``aug_index`` (a fixed choice per cached
copy) is ``transform.at(index)``, which :class:`~spikeflow.data.AugDiskCachedDataset`
calls for copy ``index``.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Sequence

import numpy as np

from spikeflow._checks import check_int, check_real
from spikeflow.data.audio_transform_base import AudioTransform, Seed, _optional_rate, _samples
from spikeflow.data.audio_transforms import _peak, _scale_to, fix_length
from spikeflow.data.io._common import import_optional
from spikeflow.data.io.wav import AudioClip, read_wav
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "RIR",
    "AddWhiteNoise",
    "RandomAmplitudeScale",
    "RandomPitchShift",
    "RandomTimeStretch",
    "add_white_noise",
    "convolve_rir",
    "istft",
    "phase_vocoder",
    "pitch_shift",
    "stft",
    "time_stretch",
]


# -- STFT, phase vocoder, time stretch -----------------------------------------------------
def _hann(n_fft: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic


def _check_fft(n_fft: int, hop_length: int | None) -> tuple[int, int]:
    n_fft = check_int("n_fft", n_fft, 2)
    hop = n_fft // 4 if hop_length is None else check_int("hop_length", hop_length, 1)
    if hop < 1:
        raise ConfigurationError(f"n_fft={n_fft} gives a hop of 0 samples: use n_fft >= 4")
    return n_fft, hop


def stft(samples: np.ndarray, n_fft: int = 2048, hop_length: int | None = None) -> np.ndarray:
    """The centred STFT of librosa's defaults: ``samples`` (time on the last axis) padded
    with ``n_fft // 2`` zeros at both ends, frames of ``n_fft`` every ``hop_length``
    (default ``n_fft // 4``) times a periodic Hann window, real FFT.

    Returns:
        complex128 ``[..., n_fft // 2 + 1, frames]``, ``1 + n // hop_length`` frames of
        ``n`` samples (``librosa.stft(y, n_fft=n_fft, hop_length=hop_length)``).
    """
    n_fft, hop = _check_fft(n_fft, hop_length)
    x = np.asarray(samples, dtype=np.float64)
    pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad), n_fft, axis=-1)[..., ::hop, :]
    return np.swapaxes(np.fft.rfft(frames * _hann(n_fft), axis=-1), -1, -2)


def istft(
    spectrum: np.ndarray, length: int, n_fft: int | None = None, hop_length: int | None = None
) -> np.ndarray:
    """The inverse of :func:`stft` (librosa's ``istft(..., length=length)``).

    Windowed inverse FFTs of the frames (at most those that reach the first ``length``
    samples) are overlap-added, the first ``n_fft // 2`` samples dropped, the result cut
    or zero-padded to ``length`` and divided by the summed squared window wherever that
    sum is above the smallest normal float64.
    """
    D = np.asarray(spectrum)
    if D.ndim < 2:
        raise ShapeError(f"istft: spectrum must be [..., bins, frames]; got shape {D.shape}")
    n_fft, hop = _check_fft(2 * (D.shape[-2] - 1) if n_fft is None else n_fft, hop_length)
    length = check_int("length", length, 0)
    n_frames = min(D.shape[-1], math.ceil((length + 2 * (n_fft // 2)) / hop))
    window = _hann(n_fft)
    frames = np.fft.irfft(D[..., :n_frames], n=n_fft, axis=-2) * window[:, None]
    total = n_fft + hop * (n_frames - 1)
    y = np.zeros((*D.shape[:-2], total))
    wss = np.zeros(total)
    for k in range(n_frames):  # over frames: a few per second of audio
        y[..., k * hop : k * hop + n_fft] += frames[..., k]
        wss[k * hop : k * hop + n_fft] += window**2
    y = fix_length(y[..., n_fft // 2 :], length)
    wss = fix_length(wss[n_fft // 2 :], length)
    ok = wss > np.finfo(np.float64).tiny
    y[..., ok] /= wss[ok]
    return y


def phase_vocoder(spectrum: np.ndarray, rate: float, hop_length: int | None = None) -> np.ndarray:
    """Resample an STFT's frames at ``rate`` (librosa's ``phase_vocoder``).

    Output frame ``t`` is read at input frame ``s = t * rate``: its magnitude interpolated
    linearly between frames ``floor(s)`` and ``floor(s) + 1`` (zeros past the end), its
    phase accumulated from frame 0's by each step's expected advance ``hop * omega_k``
    plus the measured deviation wrapped to ``[-pi, pi]``.
    """
    D = np.asarray(spectrum)
    rate = check_real("rate", rate, 0.0, low_open=True)
    if D.ndim < 2 or D.shape[-1] < 1:
        raise ShapeError(f"phase_vocoder: spectrum must be [..., bins, frames]; got {D.shape}")
    n_fft = 2 * (D.shape[-2] - 1)
    hop = n_fft // 4 if hop_length is None else check_int("hop_length", hop_length, 1)
    steps = np.arange(0, D.shape[-1], rate, dtype=np.float64)
    phi_advance = hop * np.linspace(0, np.pi, D.shape[-2])[:, None]
    padded = np.concatenate([D, np.zeros((*D.shape[:-1], 2), D.dtype)], axis=-1)
    i = steps.astype(np.int64)
    alpha = np.mod(steps, 1.0)
    mags, angles = np.abs(padded), np.angle(padded)
    mag = (1.0 - alpha) * mags[..., i] + alpha * mags[..., i + 1]
    dphase = angles[..., i + 1] - angles[..., i] - phi_advance
    dphase = dphase - 2.0 * np.pi * np.round(dphase / (2.0 * np.pi))
    # Frame 0's phase, then each step's advance, summed in the order librosa's loop adds.
    increments = np.concatenate([angles[..., :1], (phi_advance + dphase)[..., :-1]], axis=-1)
    phase = np.cumsum(increments, axis=-1)
    return mag * (np.cos(phase) + 1j * np.sin(phase))


def time_stretch(samples: np.ndarray, rate: float, n_fft: int = 2048) -> np.ndarray:
    """``samples`` played ``rate`` times faster at the same pitch (librosa's
    ``effects.time_stretch``): :func:`stft`, :func:`phase_vocoder`, :func:`istft` to
    ``round(n / rate)`` samples. Time on the last axis; float64 out."""
    x = np.asarray(samples, dtype=np.float64)
    rate = check_real("rate", rate, 0.0, low_open=True)
    stretched = phase_vocoder(stft(x, n_fft), rate)
    return istft(stretched, round(x.shape[-1] / rate), n_fft)


def pitch_shift(
    samples: np.ndarray, sample_rate: float, n_steps: float, bins_per_octave: int = 12
) -> np.ndarray:
    """``samples`` shifted by ``n_steps`` steps of ``1 / bins_per_octave`` octave (12:
    semitones) at the same duration (librosa's ``effects.pitch_shift``).

    :func:`time_stretch` by ``r = 2^(-n_steps / bins_per_octave)``, then resampled by
    ``scipy.signal.resample`` (FFT) from ``sample_rate / r`` to ``sample_rate``
    (``ceil(n r)`` samples) and cut or padded to the input's length. This is librosa's
    ``res_type="fft"``; its default (and Tonic's) is soxr's ``"soxr_hq"``, whose
    anti-aliasing filter rolls off from about 0.91 of the Nyquist frequency where the FFT
    cuts at it: below that the two spectra agree to 1% of the energy on FSDD, above it
    this keeps more of a shifted-up clip (docs/audio.md).

    Raises:
        MissingExtraError: scipy is not installed (``spikeflow[data]``).
    """
    x = np.asarray(samples, dtype=np.float64)
    check_real("sample_rate", sample_rate, 0.0, low_open=True)
    steps = check_real("n_steps", n_steps)
    rate = 2.0 ** (-steps / check_int("bins_per_octave", bins_per_octave, 1))
    stretched = time_stretch(x, rate)
    if rate != 1.0:
        signal = import_optional("scipy.signal", "pitch_shift", "scipy", "data")
        stretched = signal.resample(stretched, int(np.ceil(stretched.shape[-1] * rate)), axis=-1)
    return fix_length(stretched, x.shape[-1])


def _factors(owner: str, factors: Sequence[float], low: float | None = None) -> list[float]:
    values = list(factors) if isinstance(factors, (list, tuple, np.ndarray)) else None
    if not values:
        raise ConfigurationError(f"{owner}: factors must be a non-empty list; got {factors!r}")
    open_low = low is not None
    return [check_real(f"{owner}: factors[{i}]", v, low, low_open=open_low)
            for i, v in enumerate(values)]  # fmt: skip


class _RandomChoice(AudioTransform):
    """A random transform that draws one of ``factors`` per call."""

    factors: list[float]

    @property
    def random(self) -> bool:
        return True

    def draw(self) -> float:
        """A uniform draw from ``factors`` (this call's)."""
        return self.factors[int(self.rng().integers(len(self.factors)))]

    def at(self, index: int) -> _RandomChoice:
        """This transform with its choice fixed to ``factors[index]`` (Tonic's
        ``aug_index`` with ``caching=True``): the augmentation of copy ``index`` in
        :class:`~spikeflow.data.AugDiskCachedDataset`. Its cache key names the factor."""
        i = check_int(f"{type(self).__name__}.at: index", index, 0)
        if i >= len(self.factors):
            raise ConfigurationError(
                f"{type(self).__name__}.at: index {i} is past the {len(self.factors)} factors"
            )
        fixed = copy.copy(self)
        fixed.factors = [self.factors[i]]
        fixed._params = {**self._params, "factors": fixed.factors}
        return fixed


class RandomTimeStretch(_RandomChoice):
    """Stretch the clip by a factor drawn from ``factors`` (Tonic's ``RandomTimeStretch``).

    Args:
        sample_rate: the clips' rate in Hz (a clip of another rate is refused).
        sample_length: with ``fix_length``, the output is cut or zero-padded to
            ``round(sample_length * sample_rate)`` samples (``sample_length`` in seconds).
        factors: the rates of :func:`time_stretch` (> 1: faster, shorter).
        fix_length: see ``sample_length``; if False the length is ``round(n / rate)``.
        seed: see :mod:`spikeflow.data.audio_transforms`.
    """

    def __init__(
        self,
        sample_rate: float,
        sample_length: float,
        factors: Sequence[float] = (0.8, 0.9, 1.1, 1.2),
        fix_length: bool = True,
        seed: Seed = None,
    ) -> None:
        rate = check_real("RandomTimeStretch: sample_rate", sample_rate, 0.0, low_open=True)
        length = check_real("RandomTimeStretch: sample_length", sample_length, 0.0, low_open=True)
        self.factors = _factors("RandomTimeStretch", factors, 0.0)
        super().__init__(seed, sample_rate=rate, sample_length=length, factors=self.factors,
                         fix_length=bool(fix_length))  # fmt: skip
        self.sample_rate, self.sample_length, self.fix_length = rate, length, bool(fix_length)

    def apply(self, samples: np.ndarray) -> np.ndarray:
        out = time_stretch(samples, self.draw())
        if self.fix_length:
            out = fix_length(out, round(self.sample_length * self.sample_rate))
        return out


class RandomPitchShift(_RandomChoice):
    """Shift the pitch by a number of semitones drawn from ``factors`` (Tonic's
    ``RandomPitchShift``, default -5..-1 and 1..5); see :func:`pitch_shift`."""

    def __init__(
        self,
        sample_rate: float,
        factors: Sequence[float] = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5),
        seed: Seed = None,
    ) -> None:
        rate = check_real("RandomPitchShift: sample_rate", sample_rate, 0.0, low_open=True)
        self.factors = _factors("RandomPitchShift", factors)
        super().__init__(seed, sample_rate=rate, factors=self.factors)
        self.sample_rate = rate

    def apply(self, samples: np.ndarray) -> np.ndarray:
        return pitch_shift(samples, self.sample_rate, self.draw())


class RandomAmplitudeScale(_RandomChoice):
    """Scale the clip's peak to a level drawn from ``factors`` (Tonic's
    ``RandomAmplitudeScale``).

    The levels are Tonic's: every 10 mV from ``int(1000 min_amp)`` mV up to, not
    including, ``int(1000 max_amp)`` mV (the defaults give 0.058, 0.068, ..., 0.158).
    A silent clip stays silent. ``sample_rate`` (Tonic's unused ``samplerate``), if
    given, is checked against clips.
    """

    def __init__(
        self,
        min_amp: float = 0.058,
        max_amp: float = 0.159,
        sample_rate: float | None = None,
        seed: Seed = None,
    ) -> None:
        lo = check_real("RandomAmplitudeScale: min_amp", min_amp, 0.0, low_open=True)
        hi = check_real("RandomAmplitudeScale: max_amp", max_amp, 0.0, low_open=True)
        levels = [mv / 1000 for mv in range(int(1000 * lo), int(1000 * hi), 10)]
        if not levels or levels[0] <= 0:
            raise ConfigurationError(
                f"RandomAmplitudeScale: min_amp={lo:g} and max_amp={hi:g} V give no level (the "
                "levels are every 10 mV from int(1000 min_amp) to int(1000 max_amp) mV, "
                "exclusive, and must be above 0)"
            )
        self.factors = levels
        sample_rate = _optional_rate("RandomAmplitudeScale", sample_rate)
        super().__init__(seed, min_amp=lo, max_amp=hi, sample_rate=sample_rate)
        self.sample_rate = sample_rate

    def apply(self, samples: np.ndarray) -> np.ndarray:
        return _scale_to(samples, _peak(samples), self.draw())


def add_white_noise(samples: np.ndarray, factor: float, noise: np.ndarray) -> np.ndarray:
    """``samples + factor * std(samples) * noise``: Tonic's ``AddWhiteNoise`` with its
    standard normal draws ``noise`` (the shape of ``samples``) given."""
    x = np.asarray(samples, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)
    if n.shape != x.shape:
        raise ShapeError(
            f"add_white_noise: noise of shape {n.shape} for samples of shape {x.shape}"
        )
    return x + check_real("factor", factor, 0.0) * (x.std() * n)


class AddWhiteNoise(_RandomChoice):
    """Add Gaussian noise of standard deviation ``factor * std(clip)``, ``factor`` drawn
    from ``factors`` (Tonic's ``AddWhiteNoise``; :func:`add_white_noise`).

    The noise is drawn in the clip's shape (Tonic's is ``[size]``, which broadcasts only
    over one channel). ``sample_rate`` (Tonic's unused ``samplerate``), if given, is
    checked against clips.
    """

    def __init__(
        self,
        factors: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
        sample_rate: float | None = None,
        seed: Seed = None,
    ) -> None:
        self.factors = _factors("AddWhiteNoise", factors, None)
        for i, f in enumerate(self.factors):
            check_real(f"AddWhiteNoise: factors[{i}]", f, 0.0)
        sample_rate = _optional_rate("AddWhiteNoise", sample_rate)
        super().__init__(seed, factors=self.factors, sample_rate=sample_rate)
        self.sample_rate = sample_rate

    def apply(self, samples: np.ndarray) -> np.ndarray:
        factor = self.draw()
        return add_white_noise(samples, factor, self.rng().standard_normal(samples.shape))


# -- reverberation ---------------------------------------------------------------------------
def convolve_rir(samples: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Each channel of ``samples`` convolved with the impulse response ``rir`` (``[taps]``),
    causally, kept to the input's length: ``y[n] = sum_k rir[k] x[n - k]`` (Tonic's
    ``RIR`` after its cut and normalisation)."""
    x = np.asarray(samples, dtype=np.float64)
    h = np.asarray(rir, dtype=np.float64)
    if h.ndim != 1 or h.size == 0:
        raise ShapeError(f"convolve_rir: rir must be [taps] with taps >= 1; got shape {h.shape}")
    n = x.shape[-1]
    size = 1 << max(0, n + h.size - 2).bit_length()
    out = np.fft.irfft(np.fft.rfft(x, size, axis=-1) * np.fft.rfft(h, size), size, axis=-1)
    return out[..., :n]


class RIR(AudioTransform):
    """Reverberate the clip with a room impulse response (Tonic's ``RIR``).

    The response is read from a WAV file (or given as a clip), mixed to mono, cut to
    ``start_s .. stop_s`` seconds (Tonic's ``1.01 .. 1.3``, the direct sound and tail of
    the torchaudio sample it downloads), scaled to unit energy (``||h||_2 = 1``) and
    convolved with each channel (:func:`convolve_rir`), keeping the clip's length.

    spikeflow does not download: pass the file (Tonic fetches a torchaudio asset when the
    path does not exist). The clips must have the response's sample rate (Tonic convolves
    whatever the rates). Tonic sums a multichannel response's convolutions into one
    channel; spikeflow averages the response's channels first and keeps the clip's.
    The transform is deterministic (Tonic lists it with the random augmentations); its
    ``cache_key()`` holds a hash of the response it convolves with, besides its source.
    """

    def __init__(self, rir: str | AudioClip, start_s: float = 1.01, stop_s: float = 1.3) -> None:
        clip = rir if isinstance(rir, AudioClip) else read_wav(rir)
        start = check_real("RIR: start_s", start_s, 0.0)
        stop = check_real("RIR: stop_s", stop_s, 0.0, low_open=True)
        lo, hi = int(clip.sample_rate * start), int(clip.sample_rate * stop)
        x, _ = _samples(clip, "RIR")
        mono = x.mean(axis=0, dtype=np.float64) if x.ndim == 2 else x.astype(np.float64)
        h = mono[lo:hi]
        if not (start < stop) or h.size == 0 or not np.any(h):
            raise ConfigurationError(
                f"RIR: {clip.source or 'the response'} ({mono.size} samples at "
                f"{clip.sample_rate} Hz) has no nonzero sample between start_s={start:g} s and "
                f"stop_s={stop:g} s"
            )
        self.rir = h / np.linalg.norm(h)
        # The response's content is the key, not only its name: two in-memory clips
        # (source None) or a file rewritten in place must not share cached outputs.
        digest = hashlib.sha256(self.rir.tobytes()).hexdigest()[:16]
        super().__init__(rir=clip.source, rir_sha256=digest, start_s=start, stop_s=stop)
        self.sample_rate = clip.sample_rate

    def apply(self, samples: np.ndarray) -> np.ndarray:
        return convolve_rir(samples, self.rir)
