"""The audio front end (spikeflow.data.audio): mel scales and filters against their
formulas (and librosa where installed), the spectrogram against a direct DFT, the
level-crossing encoder against a scalar loop, and AudioToEvents on real recordings."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from spikeflow.data import EVENT_DTYPE, AudioToEvents, level_crossings, mel_filterbank
from spikeflow.data.audio import hz_to_mel, mel_spectrogram, mel_to_hz
from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError

FSDD_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "event-files" / "fsdd-wav"
needs_fsdd = pytest.mark.skipif(
    not FSDD_DIR.is_dir(), reason=f"real FSDD recordings not found at {FSDD_DIR}"
)


def clip(samples: np.ndarray, rate: int) -> SimpleNamespace:
    return SimpleNamespace(samples=samples, sample_rate=rate, source=None)


def tone(freq: float, rate: int, seconds: float, start: float = 0.0, stop: float | None = None):
    """A tone from ``start`` to ``stop`` with 20 ms raised-cosine ramps (no click)."""
    t = np.arange(round(rate * seconds)) / rate
    end = seconds if stop is None else stop
    ramp = np.clip(np.minimum(t - start, end - t) / 0.02, 0.0, 1.0)
    gain = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return (0.5 * np.sin(2 * np.pi * freq * t) * gain).astype(np.float32)


# -- mel scales -------------------------------------------------------------------------
def test_mel_scales_hand_values_and_inverse():
    assert hz_to_mel(700.0, "htk") == pytest.approx(2595.0 * math.log10(2.0))
    assert hz_to_mel(0.0, "slaney") == 0.0
    assert hz_to_mel(1000.0, "slaney") == pytest.approx(15.0)
    assert hz_to_mel(6400.0, "slaney") == pytest.approx(42.0)  # 27 mels per factor 6.4
    assert hz_to_mel(500.0, "slaney") == pytest.approx(7.5)  # linear below 1 kHz
    f = np.array([0.0, 20.0, 999.0, 1000.0, 1001.0, 4000.0, 22050.0])
    for scale in ("htk", "slaney"):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, scale), scale), f, atol=1e-9)
    with pytest.raises(ConfigurationError, match="scale"):
        hz_to_mel(1.0, "bark")


# -- filter bank --------------------------------------------------------------------------
@pytest.mark.parametrize("scale", ["htk", "slaney"])
def test_filterbank_triangles_by_formula(scale):
    rate, n_fft, n_mels, f_min = 16000, 512, 40, 20.0
    bank = mel_filterbank(rate, n_fft, n_mels, f_min, None, scale)
    assert bank.shape == (n_mels, n_fft // 2 + 1)
    edges = mel_to_hz(
        np.linspace(hz_to_mel(f_min, scale), hz_to_mel(8000, scale), n_mels + 2), scale
    )
    bins = np.arange(n_fft // 2 + 1) * rate / n_fft
    for i in range(n_mels):
        lo, mid, hi = edges[i : i + 3]
        support = bins[bank[i] > 0]
        assert support.min() > lo and support.max() < hi  # zero outside the triangle
        for b, w in zip(bins, bank[i], strict=True):
            want = (b - lo) / (mid - lo) if b <= mid else (hi - b) / (hi - mid)
            assert w == pytest.approx(max(0.0, want), abs=1e-12)
    # Neighbouring triangles sum to 1 between their centres (no gaps in frequency).
    between = (bins > edges[1]) & (bins < edges[n_mels])
    np.testing.assert_allclose(bank.sum(axis=0)[between], 1.0, atol=1e-12)
    slaney = mel_filterbank(rate, n_fft, n_mels, f_min, None, scale, "slaney")
    np.testing.assert_allclose(slaney, bank * (2.0 / (edges[2:] - edges[:-2]))[:, None])


@pytest.mark.parametrize("htk", [True, False])
@pytest.mark.parametrize("norm", [None, "slaney"])
def test_filterbank_equals_librosa(htk, norm):
    librosa = pytest.importorskip("librosa", reason="librosa is an optional cross-check")
    ours = mel_filterbank(8000, 256, 40, 20.0, 3800.0, "htk" if htk else "slaney", norm)
    theirs = librosa.filters.mel(
        sr=8000, n_fft=256, n_mels=40, fmin=20.0, fmax=3800.0, htk=htk, norm=norm, dtype=np.float64
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_filterbank_errors_name_the_problem():
    with pytest.raises(ConfigurationError, match=r"mel band 0 .* covers no bin .*256-point"):
        mel_filterbank(8000, 256, 128, 0.0)
    with pytest.raises(ConfigurationError, match="above the Nyquist frequency 4000"):
        mel_filterbank(8000, 256, 20, 0.0, 5000.0)
    with pytest.raises(ConfigurationError, match="f_min < f_max"):
        mel_filterbank(8000, 256, 20, 4000.0)
    with pytest.raises(ConfigurationError, match="n_mels"):
        mel_filterbank(8000, 256, 0)
    with pytest.raises(ConfigurationError, match="norm"):
        mel_filterbank(8000, 256, 20, norm="area")


# -- spectrogram --------------------------------------------------------------------------
def direct_mel_power(x: np.ndarray, rate: int, window: int, hop: int, n_fft: int, bank):
    """Frames by explicit indices and a DFT by its sum, independent of the module."""
    frames = (len(x) - 1) // hop + 1
    hann = [0.5 - 0.5 * math.cos(2 * math.pi * n / window) for n in range(window)]
    k = np.arange(n_fft // 2 + 1)
    out = np.zeros((frames, bank.shape[0]))
    for f in range(frames):
        seg = np.zeros(window)
        for n in range(window):
            i = f * hop - window // 2 + n
            if 0 <= i < len(x):
                seg[n] = x[i] * hann[n]
        spectrum = (
            seg[None, :] * np.exp(-2j * np.pi * np.outer(k, np.arange(window)) / n_fft)
        ).sum(1)
        out[f] = bank @ np.abs(spectrum) ** 2
    return out


@pytest.mark.parametrize("block_bytes", [None, 1, 16 * 129 * 4])  # default, 1 and 4 frames
def test_mel_spectrogram_equals_a_direct_dft(block_bytes, monkeypatch):
    if block_bytes is not None:  # the frames go through the FFT in blocks of this size
        monkeypatch.setattr("spikeflow.data.audio._BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(0)
    rate = 8000
    x = rng.standard_normal(1237)
    got = mel_spectrogram(x, rate, n_mels=20, window_ms=25, hop_ms=10, f_min=50.0)
    bank = mel_filterbank(rate, 256, 20, 50.0)
    want = direct_mel_power(x, rate, 200, 80, 256, bank)
    assert got.shape == ((1237 - 1) // 80 + 1, 20)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_mel_spectrogram_memory_does_not_grow_with_the_frames():
    # A minute at 48 kHz: the frames and their spectra, all at once, peaked at 8.8
    # float64 copies of the clip (24 GB for a two-hour recording); in blocks, the clip
    # and its zero-padded copy (2 copies) and a block.
    import tracemalloc

    x = np.random.default_rng(0).standard_normal(48000 * 60)
    tracemalloc.start()
    try:
        power = mel_spectrogram(x, 48000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert power.shape == (6000, 40)
    assert peak < 3 * x.nbytes, f"peak {peak / 1e6:.0f} MB for a {x.nbytes / 1e6:.0f} MB clip"


def test_mel_spectrogram_matches_librosa_centred_frames():
    librosa = pytest.importorskip("librosa", reason="librosa is an optional cross-check")
    rng = np.random.default_rng(1)
    x = rng.standard_normal(16000)
    ours = mel_spectrogram(x, 16000, n_mels=40, window_ms=25, hop_ms=10, n_fft=512)
    theirs = librosa.feature.melspectrogram(
        y=x, sr=16000, n_fft=512, hop_length=160, win_length=400, window="hann", center=True,
        pad_mode="constant", power=2.0, n_mels=40, fmin=20.0, htk=True, norm=None,
    ).T  # fmt: skip
    n = min(len(ours), len(theirs))
    np.testing.assert_allclose(ours[:n], theirs[:n], rtol=1e-6, atol=1e-9)


def test_mel_spectrogram_tone_lands_in_its_band_and_stereo_mixes_down():
    rate = 16000
    x = tone(1000.0, rate, 0.5)
    power = mel_spectrogram(x, rate, n_mels=40)
    edges = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(8000.0), 42))
    loudest = int(np.bincount(power[5:-5].argmax(axis=1)).argmax())
    assert edges[loudest] < 1000.0 < edges[loudest + 2]
    stereo = np.stack([x, np.zeros_like(x)])
    np.testing.assert_allclose(mel_spectrogram(stereo, rate), mel_spectrogram(x / 2, rate))
    assert mel_spectrogram(np.zeros(0), rate).shape == (0, 40)
    with pytest.raises(ShapeError, match=r"\[channels, frames\]"):
        mel_spectrogram(np.zeros((1, 2, 3)), rate)
    with pytest.raises(ShapeError, match=r"look like \[frames, channels\]"):
        mel_spectrogram(stereo.T, rate)  # soundfile's layout
    with pytest.raises(ConfigurationError, match="real numbers"):
        mel_spectrogram(stereo.astype(np.complex64), rate)
    with pytest.raises(ConfigurationError, match="n_fft=128 is shorter than the window"):
        mel_spectrogram(x, rate, n_fft=128)


# -- level crossings --------------------------------------------------------------------
def scalar_level_crossings(signal, theta, step, initial):
    """One sample, one channel, one crossing at a time."""
    events = []
    for c in range(signal.shape[1]):
        ref = initial[c]
        for k in range(signal.shape[0]):
            v = signal[k, c]
            prev = signal[k - 1, c] if k else None
            while v - ref >= theta or ref - v >= theta:
                up = v - ref >= theta
                ref = ref + theta if up else ref - theta
                t = 0 if k == 0 else round((k - 1 + (ref - prev) / (v - prev)) * step)
                events.append((t, c, 0, int(up)))
    out = np.array(events, dtype=EVENT_DTYPE)
    return out[np.argsort(out["t"], kind="stable")] if len(out) else out


def test_level_crossings_hand_example():
    signal = np.array([[0.0], [2.5], [0.4]])
    ev = level_crossings(signal, 1.0, 100.0, initial=0.0)
    # Up through 1 and 2 between frames 0 and 1 (at 40 and 80 us), down through 1 after.
    assert ev["t"].tolist() == [40, 80, round(100 + 100 * 1.5 / 2.1)]
    assert ev["p"].tolist() == [1, 1, 0]
    assert ev["x"].tolist() == [0, 0, 0]
    first = level_crossings(np.array([[3.2], [3.2]]), 1.0, 10.0, initial=0.0)
    assert first["t"].tolist() == [0, 0, 0] and first["p"].tolist() == [1, 1, 1]
    assert len(level_crossings(signal, 1.0, 100.0)) == 3 - 0  # initial = first frame (0.0)


def test_level_crossings_equal_a_scalar_loop():
    rng = np.random.default_rng(2)
    signal = np.cumsum(rng.normal(0, 1.3, size=(60, 7)), axis=0)
    initial = rng.normal(0, 1, size=7)
    ours = level_crossings(signal, 0.7, 1000.0, initial=initial)
    theirs = scalar_level_crossings(signal, 0.7, 1000.0, initial)
    assert len(ours) > 100
    # The same events; within a microsecond the two orders may differ (rounding ties).
    key = lambda e: np.lexsort((e["p"], e["x"], e["t"]))  # noqa: E731
    a, b = ours[key(ours)], theirs[key(theirs)]
    np.testing.assert_array_equal(a[["x", "p"]], b[["x", "p"]])
    assert np.abs(a["t"] - b["t"]).max() <= 1
    assert (np.diff(ours["t"]) >= 0).all()


def test_level_crossings_track_the_signal_within_one_threshold():
    rng = np.random.default_rng(3)
    signal = np.cumsum(rng.normal(0, 2.0, size=(200, 5)), axis=0)
    theta, step = 0.5, 10_000.0
    ev = level_crossings(signal, theta, step, initial=signal[0])
    for c in range(5):
        mine = ev[ev["x"] == c]
        for k in range(200):
            upto = mine[mine["t"] <= k * step]
            level = signal[0, c] + theta * (2 * upto["p"].astype(int) - 1).sum()
            assert abs(signal[k, c] - level) < theta + 1e-9


def test_level_crossings_errors():
    with pytest.raises(ShapeError, match=r"\[frames, channels\]"):
        level_crossings(np.zeros(5), 1.0, 1.0)
    with pytest.raises(ConfigurationError, match="threshold"):
        level_crossings(np.zeros((5, 2)), 0.0, 1.0)
    with pytest.raises(ConfigurationError, match=r"signal\[3, 1\] is nan"):
        bad = np.zeros((5, 2))
        bad[3, 1] = np.nan
        level_crossings(bad, 1.0, 1.0)
    assert len(level_crossings(np.zeros((0, 3)), 1.0, 1.0)) == 0
    # A NaN reference was cast to a huge negative count: "repeats may not contain
    # negative values" from np.repeat.
    with pytest.raises(ConfigurationError, match="initial must be finite"):
        level_crossings(np.zeros((5, 2)), 1.0, 1.0, initial=np.nan)
    with pytest.raises(ConfigurationError, match="initial must be finite"):
        level_crossings(np.zeros((5, 2)), 1.0, 1.0, initial=[0.0, np.inf])
    with pytest.raises(ShapeError, match=r"one per channel \(2\); got shape \(3,\)"):
        level_crossings(np.zeros((5, 2)), 1.0, 1.0, initial=[0.0, 1.0, 2.0])


# -- AudioToEvents --------------------------------------------------------------------------
def test_tone_burst_gives_on_events_at_onset_and_off_events_at_offset():
    rate = 16000
    x = tone(1000.0, rate, 0.6, start=0.2, stop=0.4)
    x += np.random.default_rng(4).normal(0, 1e-4, x.shape).astype(np.float32)  # faint noise
    enc = AudioToEvents(n_mels=40, threshold_db=3.0)
    rec = enc(clip(x, rate))
    ev = rec.events
    assert rec.sensor_size == (40, 1, 2)
    on, off = ev[ev["p"] == 1], ev[ev["p"] == 0]
    assert len(on) > 20 and len(off) > 20
    # Onsets within a frame or two of 0.2 s, offsets of 0.4 s (the window is 25 ms).
    assert np.median(on["t"]) == pytest.approx(200_000, abs=20_000)
    assert np.median(off["t"]) == pytest.approx(400_000, abs=20_000)
    edges = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(8000.0), 42))
    busiest = int(np.bincount(on["x"], minlength=40).argmax())
    assert edges[busiest] < 1000.0 < edges[busiest + 2]
    # The noise floor is 60 dB under the peak: the noise alone emits nothing.
    assert not ((ev["t"] < 150_000) | (ev["t"] > 470_000)).any()


def same_events(a: np.ndarray, b: np.ndarray) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(np.sort(a[["x", "p"]]), np.sort(b[["x", "p"]]))
    assert np.abs(np.sort(a["t"]) - np.sort(b["t"])).max() <= 1


# Not only powers of two: the loudest band-frame is dynamic_range_db (60) above the floor,
# exactly on its 30th level of 2 dB, and in absolute dB a rounding error decided (with the
# gain) whether it crossed it: 1e-3, 0.01 and 0.1 lost an ON and an OFF event here.
@pytest.mark.parametrize("gain", [0.125, 1e-3, 0.01, 0.1, 3.0, 1e3, 1 / 32768, 32768.0])
def test_events_do_not_depend_on_gain(gain):
    rate = 8000
    rng = np.random.default_rng(5)
    x = (tone(440.0, rate, 0.5, 0.1, 0.3) + tone(1800.0, rate, 0.5, 0.2, 0.45)).astype(np.float64)
    x += rng.normal(0, 1e-3, x.shape)
    enc = AudioToEvents()
    a, b = enc(clip(x, rate)).events, enc(clip(x * gain, rate)).events
    assert len(a) > 100
    same_events(a, b)


@needs_fsdd
def test_real_recordings_give_the_same_events_at_any_gain():
    from spikeflow.data.io import read_wav

    enc = AudioToEvents()
    for path in sorted(FSDD_DIR.glob("*.wav"))[:6]:
        audio = read_wav(path)
        a = enc(audio).events
        for gain in (1e-6, 1e-3, 3.7, 1e6):
            same_events(a, enc(clip(audio.samples.astype(np.float64) * gain, 8000)).events)


def test_silence_and_empty_clips_give_no_events():
    enc = AudioToEvents()
    assert len(enc(clip(np.zeros(8000, np.float32), 8000))) == 0
    assert len(enc(clip(np.zeros(0, np.float32), 8000))) == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_a_data_error_naming_the_clip(bad):
    # A corrupt float WAV: the error names the file and the sample, not "signal[0, 0]"
    # of the spectrogram (a ConfigurationError, as if a setting were wrong).
    x = np.stack([tone(440.0, 8000, 0.5), tone(880.0, 8000, 0.5)])
    x[1, 1234] = bad
    audio = SimpleNamespace(samples=x, sample_rate=8000, source="rec.wav")
    with pytest.raises(DataFormatError, match=r"rec\.wav: sample \[1, 1234\] .* is -?(nan|inf):"):
        AudioToEvents()(audio)
    with pytest.raises(DataFormatError, match="audio clip: sample"):
        AudioToEvents().decibels(clip(x[1], 8000))


def test_audio_to_events_settings_and_errors():
    enc = AudioToEvents(n_mels=32, threshold_db=1.5, f_max=3000.0)
    assert enc.sensor_size == (32, 1, 2)
    assert enc.cache_key() != AudioToEvents(n_mels=32, threshold_db=1.0, f_max=3000.0).cache_key()
    assert "threshold_db=1.5" in repr(enc)
    with pytest.raises(ConfigurationError, match="threshold_db"):
        AudioToEvents(threshold_db=0)
    with pytest.raises(ConfigurationError, match="f_min"):
        AudioToEvents(f_min=-1.0)
    with pytest.raises(ConfigurationError, match="scale"):
        AudioToEvents(scale="erb")
    with pytest.raises(ConfigurationError, match="above the Nyquist frequency 4000"):
        AudioToEvents(f_max=6000.0)(clip(np.zeros(800, np.float32), 8000))
    named = SimpleNamespace(samples=np.zeros(800, np.float32), sample_rate=8000, source="a.wav")
    with pytest.raises(ConfigurationError, match=r"^a\.wav: f_max=6000.0 Hz is above the Nyq"):
        AudioToEvents(f_max=6000.0)(named)  # the error names the recording


@needs_fsdd
def test_real_recordings_encode_and_the_events_reconstruct_the_band_levels():
    from spikeflow.data.io import read_wav

    enc = AudioToEvents()
    for path in sorted(FSDD_DIR.glob("*.wav"))[:6]:
        audio = read_wav(path)
        rec = enc(audio)
        ev = rec.events
        assert rec.source == str(path)
        assert 500 < len(ev) < 20_000, path.name
        assert ev["x"].max() < 40 and (np.diff(ev["t"]) >= 0).all()
        assert ev["t"].max() <= audio.duration * 1e6 + 1
        # Each band's level = the floor plus theta times (ON - OFF) so far, within theta.
        levels, floor = enc.decibels(audio)
        step = 80 / 8000 * 1e6
        for band in (3, 17, 30):
            mine = ev[ev["x"] == band]
            counts = np.array([
                (2 * mine["p"][mine["t"] <= k * step].astype(int) - 1).sum()
                for k in range(len(levels))
            ])  # fmt: skip
            assert np.abs(levels[:, band] - (floor + 2.0 * counts)).max() < 2.0 + 1e-9
