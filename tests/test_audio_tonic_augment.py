"""Tonic's audio augmentations (spikeflow.data.audio_augment) against Tonic 1.7 and librosa.

On the 20 real FSDD recordings (../shared/data; skipped when absent): the numpy phase
vocoder equals librosa's ``time_stretch`` and ``pitch_shift(res_type="fft")`` to float64
rounding; the random transforms equal Tonic's with spikeflow's draws fed to Tonic's
``random`` / numpy calls; the pitch shift (FFT resampling) is compared with Tonic's
(soxr) by spectra and by where a tone lands. :class:`RIR` is checked equal to Tonic's on
a generated impulse response file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import require_shared_data
from spikeflow.data import audio_augment as G
from spikeflow.data.io import AudioClip, read_wav
from spikeflow.errors import ConfigurationError, ShapeError

TG = pytest.importorskip(
    "tonic.audio_augmentations", reason="Tonic (with librosa) is the reference"
)
librosa = pytest.importorskip("librosa")


@pytest.fixture(scope="module")
def fsdd() -> list[np.ndarray]:
    folder = require_shared_data("event-files", "fsdd-wav")
    return [read_wav(p).samples.astype(np.float64) for p in sorted(folder.glob("*.wav"))]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# -- STFT and time stretch -------------------------------------------------------------
def test_stft_equals_librosa_and_inverts(fsdd):
    x = fsdd[7]
    for n_fft, hop in ((2048, None), (256, 64), (200, 50)):
        spec = G.stft(x, n_fft, hop)
        want = librosa.stft(x, n_fft=n_fft, hop_length=hop)
        assert spec.shape == want.shape
        np.testing.assert_allclose(spec, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
        np.testing.assert_allclose(G.istft(spec, x.shape[-1], n_fft, hop), x, atol=1e-12)


@pytest.mark.parametrize("rate", [0.5, 0.8, 1.2, 2.0])
def test_time_stretch_equals_librosa_on_fsdd(fsdd, rate):
    for x in fsdd[::4]:
        got = G.time_stretch(x, rate)
        want = librosa.effects.time_stretch(x, rate=rate)
        assert got.shape == want.shape == (1, round(x.shape[-1] / rate))
        assert rel(got, want) < 1e-12


def test_time_stretch_keeps_a_tone_and_scales_its_length():
    rate, f0 = 8000, 440.0
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * f0 * t) * np.hanning(rate)
    for r in (0.7, 1.5):
        y = G.time_stretch(tone, r)
        assert y.shape == (round(rate / r),)
        peak = np.fft.rfftfreq(y.size, 1 / rate)[np.abs(np.fft.rfft(y)).argmax()]
        assert abs(peak - f0) <= rate / y.size  # within one FFT bin: the pitch is kept


def test_random_time_stretch_equals_tonic_with_the_same_draw(fsdd, monkeypatch):
    factors = [0.8, 0.9, 1.1, 1.2]
    for seed in range(3):
        x = fsdd[seed]
        got = G.RandomTimeStretch(8000, 1, factors, seed=seed)(x)
        index = int(np.random.default_rng(seed).integers(len(factors)))
        monkeypatch.setattr(TG.random, "choice", lambda seq, i=index: seq[i])
        want = TG.RandomTimeStretch(8000, 1, factors)(x)
        monkeypatch.undo()
        assert got.shape == want.shape == (1, 8000)
        np.testing.assert_allclose(got, want, atol=1e-12 * np.abs(want).max())
    short = G.RandomTimeStretch(8000, 1, [1.25], fix_length=False, seed=0)(fsdd[0])
    assert short.shape == (1, round(fsdd[0].shape[1] / 1.25))


# -- pitch shift ---------------------------------------------------------------------------
def test_pitch_shift_equals_librosa_fft_resampling(fsdd):
    for x in fsdd[1::5]:
        for steps in (-5, 2):
            want = librosa.effects.pitch_shift(x, sr=8000, n_steps=steps, res_type="fft")
            got = G.pitch_shift(x, 8000, steps)
            assert got.shape == x.shape
            assert rel(got, want) < 1e-12


def test_pitch_shift_is_close_to_tonic_and_moves_a_tone(fsdd, monkeypatch):
    """Tonic resamples with soxr; spikeflow with an FFT. Both are band-limited, soxr's
    "hq" filter rolling off from about 0.91 of the Nyquist frequency (an FFT cuts at it):
    below 3.6 kHz the magnitude spectra agree to 1% of the energy."""
    worst = 0.0
    for i, x in enumerate(fsdd[::3]):
        index = int(np.random.default_rng(i).integers(10))
        got = G.RandomPitchShift(8000, seed=i)(x)
        monkeypatch.setattr(TG.random, "choice", lambda seq, j=index: seq[j])
        want = TG.RandomPitchShift(8000)(x)
        monkeypatch.undo()
        below = np.fft.rfftfreq(x.shape[-1], 1 / 8000) < 3600
        ours, theirs = (np.abs(np.fft.rfft(y))[..., below] for y in (got, want))
        worst = max(worst, float(((ours - theirs) ** 2).sum() / (theirs**2).sum()))
    assert worst < 0.01
    rate = 8000
    tone = np.sin(2 * np.pi * 440.0 * np.arange(rate) / rate) * np.hanning(rate)
    for steps in (-5, 3):
        y = G.pitch_shift(tone, rate, steps)
        peak = np.fft.rfftfreq(rate, 1 / rate)[np.abs(np.fft.rfft(y)).argmax()]
        assert abs(peak - 440.0 * 2 ** (steps / 12)) <= 1.0  # one 1 Hz bin


# -- amplitude and white noise ---------------------------------------------------------------
def test_random_amplitude_scale_equals_tonic(fsdd, monkeypatch):
    theirs = TG.RandomAmplitudeScale(8000, 0.02, 0.2)
    ours = G.RandomAmplitudeScale(0.02, 0.2, seed=5)
    assert ours.factors == [f / 1000 for f in theirs.factors]
    replay = np.random.default_rng(5)
    for x in fsdd[:5]:
        index = int(replay.integers(len(ours.factors)))
        got = ours(x)
        monkeypatch.setattr(TG.random, "choice", lambda seq, i=index: seq[i])
        want = theirs(x)
        monkeypatch.undo()
        np.testing.assert_allclose(got, want, rtol=1e-15)
        assert np.abs(got).max() == pytest.approx(ours.factors[index])
    peaks = {round(float(np.abs(ours(fsdd[0])).max()), 6) for _ in range(200)}
    assert peaks == {round(f, 6) for f in ours.factors}  # every level, no other
    with pytest.raises(ConfigurationError, match="give no level"):
        G.RandomAmplitudeScale(0.1, 0.1)
    # An int16 clip's full-scale -32768 is its peak (np.abs wraps it to -32768).
    loud = np.array([-32768, 100], dtype=np.int16)
    got = G.RandomAmplitudeScale(0.1, 0.11, seed=0)(loud)
    np.testing.assert_allclose(got, [-0.1, 100 / 327680])


def test_add_white_noise_equals_tonic_and_has_its_spread(fsdd, monkeypatch):
    x = fsdd[2]
    factors = [0.1, 0.2, 0.3, 0.4, 0.5]
    for seed in range(3):
        got = G.AddWhiteNoise(factors, seed=seed)(x)
        replay = np.random.default_rng(seed)
        index = int(replay.integers(len(factors)))
        draws = replay.standard_normal(x.shape)
        monkeypatch.setattr(TG.random, "choice", lambda seq, i=index: seq[i])
        monkeypatch.setattr(
            TG.np.random, "normal", lambda loc, sd, n, d=draws: loc + sd * d.ravel()
        )
        want = TG.AddWhiteNoise(8000, factors)(x)
        monkeypatch.undo()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    noise = G.AddWhiteNoise([0.3], seed=1)(x) - x
    assert noise.std() == pytest.approx(0.3 * x.std(), rel=0.05)  # ~2,400 draws
    assert abs(noise.mean()) < 4 * 0.3 * x.std() / math.sqrt(x.size)
    stereo = np.stack([x[0], -x[0]])
    assert G.AddWhiteNoise(seed=0)(stereo).shape == (2, x.shape[1])  # Tonic's fails here
    with pytest.raises(ShapeError, match="noise of shape"):
        G.add_white_noise(x, 0.1, np.zeros(3))


# -- reverberation ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rir_file(tmp_path_factory) -> str:
    wavfile = pytest.importorskip("scipy.io.wavfile")
    n = 12000  # 1.5 s at 8 kHz: Tonic keeps 1.01 .. 1.3 s
    h = np.random.default_rng(0).standard_normal(n) * np.exp(-np.arange(n) / 2000)
    path = tmp_path_factory.mktemp("rir") / "room.wav"
    wavfile.write(path, 8000, h.astype(np.float32))
    return str(path)


def test_rir_equals_tonic(fsdd, rir_file):
    ours = G.RIR(rir_file)
    theirs = TG.RIR(8000, rir_file)
    assert ours.rir.shape == (int(8000 * 1.3) - int(8000 * 1.01),)
    for x in fsdd[::5]:
        want = theirs(x.astype(np.float32))  # Tonic convolves in float32
        np.testing.assert_allclose(ours(x), want, atol=2e-6 * np.abs(want).max())
    x = fsdd[0][0, :700]
    h = ours.rir
    np.testing.assert_allclose(G.convolve_rir(x, h), np.convolve(x, h)[:700], atol=1e-12)


def test_rir_checks_rates_and_its_window(rir_file):
    t = G.RIR(rir_file)
    with pytest.raises(ConfigurationError, match=r"built for 8000 Hz audio; this clip is 16000"):
        t(AudioClip(np.zeros((1, 10), np.float32), 16000, "a.wav"))
    clip = t(AudioClip(np.ones((1, 10), np.float32), 8000, "a.wav"))
    assert isinstance(clip, AudioClip) and clip.samples.dtype == np.float32
    with pytest.raises(ConfigurationError, match=r"no nonzero sample between start_s=2 s"):
        G.RIR(rir_file, start_s=2.0, stop_s=3.0)
    with pytest.raises(ShapeError, match="rir must be"):
        G.convolve_rir(np.zeros(5), np.zeros((2, 2)))


def test_rir_cache_key_tells_responses_apart():
    # Two in-memory responses with no source: their outputs differ, so must their keys.
    h = np.zeros(12, np.float32)
    h[10] = 1.0
    g = h.copy()
    h[11], g[11] = 0.5, -0.5
    a, b = (G.RIR(AudioClip(r, 10, None), 1.0, 1.2) for r in (h, g))
    assert not np.allclose(a(np.array([1.0, 0.0])), b(np.array([1.0, 0.0])))
    assert a.cache_key() != b.cache_key()
    assert a.cache_key() == G.RIR(AudioClip(h.copy(), 10, None), 1.0, 1.2).cache_key()


def test_every_tonic_audio_class_has_a_counterpart():
    import tonic.audio_transforms as TA

    from spikeflow.data import audio_transforms as A

    names = {n for m in (TA, TG) for n, v in vars(m).items()
             if isinstance(v, type) and v.__module__ == m.__name__}  # fmt: skip
    ours = {**vars(A), **vars(G)}
    assert names and names <= set(ours), sorted(names - set(ours))
    assert "normalize" in ours
    for n in names:
        assert ours[n].__doc__ and "Tonic" in ours[n].__doc__


def test_optional_rates_are_checked_where_given():
    for cls in (G.RandomAmplitudeScale, G.AddWhiteNoise):
        for bad in (0, -16000.0, float("inf"), "16000", False):
            with pytest.raises(ConfigurationError, match=rf"{cls.__name__}: sample_rate must be"):
                cls(sample_rate=bad)
        assert cls(sample_rate=16000).sample_rate == 16000.0 and cls().sample_rate is None
