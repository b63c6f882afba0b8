"""Tonic's audio transforms (spikeflow.data.audio_transforms) against Tonic 1.7.

Deterministic transforms are checked equal to ``tonic.audio_transforms`` on the 20 real
FSDD recordings (../shared/data; skipped when absent); the Butterworth filters also
against their defining property (gain 1/sqrt(2) at the band edges, measured on tones).
:class:`AddNoise` is checked equal to Tonic with spikeflow's draws fed to Tonic's numpy
calls, and its SNR by measurement. The tests of the augmentations are in
test_audio_tonic_augment.py.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from conftest import require_shared_data
from spikeflow.data import audio_transforms as A
from spikeflow.data.io import AudioClip, read_wav
from spikeflow.errors import ConfigurationError, MissingExtraError, ShapeError

TA = pytest.importorskip("tonic.audio_transforms", reason="Tonic (with librosa) is the reference")


@pytest.fixture(scope="module")
def fsdd() -> list[AudioClip]:
    folder = require_shared_data("event-files", "fsdd-wav")
    clips = [read_wav(p) for p in sorted(folder.glob("*.wav"))]
    assert len(clips) == 20 and all(c.sample_rate == 8000 for c in clips)
    return clips


def f64(clip: AudioClip) -> np.ndarray:
    return clip.samples.astype(np.float64)  # [1, frames], Tonic's layout


# -- filter banks ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["Linear", "Mel"])
@pytest.mark.parametrize("rectify", [True, False])
def test_filter_banks_equal_tonic_on_fsdd(fsdd, kind, rectify):
    theirs = getattr(TA, f"{kind}ButterFilterBank")(
        order=2, low_freq=100, sampling_freq=8000, num_filters=16, rectify=rectify
    )
    ours = getattr(A, f"{kind}ButterFilterBank")(
        order=2, low_freq=100, sample_rate=8000, num_filters=16, rectify=rectify
    )
    np.testing.assert_allclose(ours.bands / 4000, theirs.compute_freq_bands(), rtol=1e-15)
    for clip in fsdd:
        want = theirs(f64(clip))  # [16, frames]
        got = ours(clip)  # a clip: [channels=1, bands, frames]
        assert got.shape == (1, *want.shape) and got.dtype == np.float64
        np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-15)
    # Mono [frames] gives [bands, frames]: the clip's [0].
    np.testing.assert_array_equal(ours(f64(fsdd[-1])[0]), got[0])


def test_filter_bank_defaults_and_orders_equal_tonic(fsdd):
    x = f64(fsdd[3])
    for order in (1, 4):
        theirs = TA.MelButterFilterBank(order=order, sampling_freq=8000, num_filters=8)
        ours = A.MelButterFilterBank(order=order, sample_rate=8000, num_filters=8)
        np.testing.assert_allclose(ours(x)[0], theirs(x), rtol=1e-10, atol=1e-14)
    # Tonic's defaults: order 2, 100 Hz, 16 kHz, 64 filters, rectified.
    d = A.LinearButterFilterBank()
    assert (d.order, d.low_freq, d.sample_rate, d.num_filters, d.rectify) == (
        2, 100.0, 16000.0, 64, True,
    )  # fmt: skip
    np.testing.assert_allclose(d.bands / 8000, TA.LinearButterFilterBank().compute_freq_bands())


def test_butter_filters_equal_tonic(fsdd):
    x = f64(fsdd[5])
    cases = [("lowpass", 900.0), ("highpass", 300.0), ("band", (300.0, 1200.0)),
             ("bandstop", (500.0, 700.0))]  # fmt: skip
    for btype, freq in cases:
        wn = tuple(np.array(freq) / 4000) if isinstance(freq, tuple) else freq / 4000
        for rectify in (False, True):
            want = TA.ButterFilter(3, wn, analog=False, btype=btype, rectify=rectify, axis=1)(x)
            got = A.ButterFilter(3, freq, 8000, btype, rectify)(x)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    bands = [(200.0, 400.0), (1000.0, 1500.0), (2500.0, 3900.0)]
    want = TA.ButterFilterBank(2, [tuple(np.array(b) / 4000) for b in bands], False, axis=1)(x)
    got = A.ButterFilterBank(2, bands, 8000, rectify=False)(x)
    np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-15)
    sos = A.butter_sos(2, (200.0, 400.0), 8000)
    np.testing.assert_allclose(A.SOSFilter(sos)(x), TA.SOSFilter(sos, axis=1)(x), rtol=1e-15)


def steady_gain(sos: np.ndarray, freq: float, rate: int) -> float:
    """The amplitude of a unit tone after ``sos``, once the transient has died out."""
    t = np.arange(4 * rate) / rate
    y = A.SOSFilter(sos)(np.sin(2 * np.pi * freq * t))[2 * rate :]
    return float(np.sqrt(2 * np.mean(y**2)))


def test_band_pass_is_butterworth_by_its_gain():
    """The defining property, not scipy's word: gain 1 at the centre sqrt(lo hi), 1/sqrt(2)
    at both edges, and an order-n band-pass falls ~(f/f_hi)^-n far above its band."""
    lo, hi, rate = 500.0, 1000.0, 8000
    for order in (2, 4):
        sos = A.butter_sos(order, (lo, hi), rate)
        assert steady_gain(sos, math.sqrt(lo * hi), rate) == pytest.approx(1.0, abs=2e-3)
        for edge in (lo, hi):
            assert steady_gain(sos, edge, rate) == pytest.approx(1 / math.sqrt(2), abs=2e-3)
        assert steady_gain(sos, 3000.0, rate) < 2.0 * (3000 / hi) ** -order


def test_filter_bank_layout_and_rate_check():
    bank = A.ButterFilterBank(2, [(200.0, 400.0), (800.0, 1600.0)], 8000, rectify=True)
    stereo = np.random.default_rng(0).standard_normal((2, 500))
    out = bank(stereo)
    assert out.shape == (2, 2, 500) and (out >= 0).all()
    np.testing.assert_array_equal(out[1], bank(stereo[1]))  # channel-major, band before time
    with pytest.raises(ConfigurationError, match=r"built for 8000 Hz audio; this clip is 16000"):
        bank(AudioClip(np.zeros((1, 100), np.float32), 16000, "x.wav"))


def test_filter_errors_name_the_problem():
    with pytest.raises(ConfigurationError, match=r"4500 Hz .* Nyquist frequency 4000 Hz"):
        A.butter_sos(2, (1000.0, 4500.0), 8000)
    with pytest.raises(
        ConfigurationError, match=r"band 1 \(3000, 4000\) Hz .* Nyquist frequency 4000"
    ):
        A.ButterFilterBank(2, [(100.0, 200.0), (3000.0, 4000.0)], 8000)
    with pytest.raises(ConfigurationError, match="low < high"):
        A.butter_sos(2, (800.0, 400.0), 8000)
    with pytest.raises(ConfigurationError, match=r"bandpass filter needs a \(low, high\) pair"):
        A.butter_sos(2, 400.0, 8000)
    with pytest.raises(ConfigurationError, match="btype must be one of"):
        A.butter_sos(2, 400.0, 8000, "notch")
    with pytest.raises(ConfigurationError, match="order"):
        A.butter_sos(0, 400.0, 8000, "low")
    with pytest.raises(ShapeError, match=r"bands must be \[\(low, high\), \.\.\.\]"):
        A.ButterFilterBank(2, [100.0, 200.0], 8000)
    with pytest.raises(ConfigurationError, match="low_freq=3900 Hz is above the top band"):
        A.MelButterFilterBank(low_freq=3900, sample_rate=8000, num_filters=64)
    with pytest.raises(ShapeError, match=r"SOSFilter: coeffs must be \[sections, 6\]"):
        A.SOSFilter(np.zeros((2, 5)))
    with pytest.raises(ShapeError, match=r"\[frames\] or \[channels, frames\]"):
        A.LinearButterFilterBank(sample_rate=8000, num_filters=4)(np.zeros((1, 2, 3)))
    with pytest.raises(ShapeError, match=r"look like \[frames, channels\] .* \.T"):
        A.AmplitudeScale()(np.zeros((500, 1)))


def test_missing_scipy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.signal", None)  # import raises ImportError
    with pytest.raises(MissingExtraError, match=r"scipy.*spikeflow\[data\]"):
        A.butter_sos(2, 400.0, 8000, "low")


# -- length, binning, gain ------------------------------------------------------------
def test_fix_length_bin_swap_equal_tonic(fsdd):
    for clip in fsdd[:3]:
        x = f64(clip)
        for n in (1000, x.shape[1], 8000):
            np.testing.assert_array_equal(A.FixLength(n)(x), TA.FixLength(n)(x))
        env = A.MelButterFilterBank(sample_rate=8000, num_filters=8)(x)[0]
        for new in (100, 330, 3999):  # 80 samples a bin; uneven bins; about 2 a bin
            want = TA.Bin(8000, new, 1)(env)
            np.testing.assert_allclose(A.Bin(8000, new)(env), want, rtol=1e-13)
        np.testing.assert_array_equal(A.SwapAxes()(env), TA.SwapAxes()(env))
    out = A.FixLength(3000)(fsdd[0])
    assert isinstance(out, AudioClip) and out.samples.shape == (1, 3000)
    assert out.samples.dtype == np.float32 and out.source == fsdd[0].source
    np.testing.assert_array_equal(out.samples[0, :2384], fsdd[0].samples[0])
    assert not out.samples[0, 2384:].any()


def test_bin_sums_by_hand_and_refuses_short_input():
    x = np.arange(10.0)
    np.testing.assert_array_equal(A.bin_samples(x, 3, 1), [0 + 1 + 2 + 3, 4 + 5 + 6, 7 + 8 + 9])
    with pytest.raises(ConfigurationError, match=r"5 samples at 8000 Hz make no bin at 100 Hz"):
        A.bin_samples(np.zeros(5), 8000, 100)
    with pytest.raises(ShapeError, match="axis=2"):
        A.bin_samples(np.zeros((2, 5)), 2, 1, axis=2)


def test_amplitude_scales_equal_tonic(fsdd):
    for clip in fsdd:
        x = f64(clip)
        np.testing.assert_allclose(A.AmplitudeScale()(x), TA.AmplitudeScale()(x), rtol=1e-15)
        for pct in (0.01, 0.2):
            want = TA.RobustAmplitudeScale(0.1, pct)(x)
            np.testing.assert_allclose(A.RobustAmplitudeScale(0.1, pct)(x), want, rtol=1e-15)
    x = f64(fsdd[0])
    assert np.abs(A.AmplitudeScale(0.5)(x)).max() == pytest.approx(0.5)
    # outlier_percent=0: the peak (Tonic indexes one past the end).
    with pytest.raises(IndexError):
        TA.RobustAmplitudeScale(0.1, 0.0)(x)
    np.testing.assert_allclose(A.RobustAmplitudeScale(0.1, 0.0)(x), A.AmplitudeScale(0.1)(x))
    silent = np.zeros((1, 50))
    np.testing.assert_array_equal(A.RobustAmplitudeScale()(silent), silent)
    spike = np.zeros((1, 1000))
    spike[0, 7] = -2.0  # mostly silence: the peak is scaled instead
    assert A.RobustAmplitudeScale(0.1)(spike)[0, 7] == pytest.approx(-0.1)
    with pytest.raises(ConfigurationError, match="outlier_percent"):
        A.RobustAmplitudeScale(0.1, 1.5)


def test_a_user_transform_is_keyed_by_its_code_and_attributes():
    class Gain(A.AudioTransform):  # its gain is an attribute, not a declared parameter
        def __init__(self, gain):
            super().__init__()
            self.gain = gain

        def apply(self, samples):
            return samples * self.gain

    assert Gain(2.0).cache_key() != Gain(3.0).cache_key()
    assert Gain(2.0).cache_key() == Gain(2.0).cache_key()
    assert A.FixLength(4).cache_key() == {"name": "FixLength", "length": 4, "axis": -1}


def test_filters_of_an_empty_clip_are_empty():
    empty = np.zeros((1, 0), np.float32)
    assert A.ButterFilter(2, 100.0, 8000, "lowpass")(empty).shape == (1, 0)
    assert A.SOSFilter(A.butter_sos(2, 100.0, 8000, "lowpass"))(empty).shape == (1, 0)
    bank = A.LinearButterFilterBank(sample_rate=8000, num_filters=3)(empty)
    assert bank.shape == (1, 3, 0) and bank.dtype == np.float64


def test_amplitude_scales_see_a_full_scale_negative_integer_sample():
    # |-32768| wraps to -32768 in int16 (np.abs): the peak must still be 32768.
    x = np.array([-32768, 100, -5], dtype=np.int16)
    want = x / 32768.0 * 0.5
    np.testing.assert_allclose(A.AmplitudeScale(0.5)(x), want, rtol=1e-15)
    np.testing.assert_allclose(A.RobustAmplitudeScale(0.5, 0.0)(x), want, rtol=1e-15)


# -- noise ---------------------------------------------------------------------------------
def test_add_noise_equals_tonic_with_the_same_draws(fsdd, monkeypatch):
    x = f64(fsdd[0])  # the shortest clip: every noise recording is long enough
    noise = [(f64(c), 0) for c in fsdd[1:6]]
    for seed in range(4):
        ours = A.AddNoise(noise, snr_db=5.0, tonic_scaling=True, seed=seed)
        got = ours(x)
        replay = np.random.default_rng(seed)
        first = int(replay.permutation(len(noise))[0])
        start = int(replay.integers(0, noise[first][0].shape[1] - x.shape[1], endpoint=True))
        draws = iter([np.array([first]), np.array([start])])
        monkeypatch.setattr(TA.np.random, "randint", lambda *a, d=draws, **k: next(d))
        want = TA.AddNoise(noise, snr=5.0)(x.copy())
        monkeypatch.undo()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def snr_of(signal: np.ndarray, mixed: np.ndarray) -> float:
    return 10 * math.log10((signal**2).mean() / ((mixed - signal) ** 2).mean())


def test_add_noise_reaches_the_snr_and_draws_uniformly(fsdd):
    x = f64(fsdd[0])
    noise = [f64(c) for c in fsdd[1:4]]
    for snr in (-5.0, 0.0, 20.0):
        mixed = A.AddNoise(noise, snr, normed=False, seed=1)(x)
        assert snr_of(x, mixed) == pytest.approx(snr, abs=1e-9)
        tonic_way = A.mix_at_snr(x, noise[0][:, : x.shape[1]], snr, False, tonic_scaling=True)
        p_ratio = 10 * math.log10((x**2).mean() / (noise[0][:, : x.shape[1]] ** 2).mean())
        assert snr_of(x, tonic_way) == pytest.approx(2 * snr - p_ratio, abs=1e-9)
    # Only recordings at least as long as the clip are drawn, each equally often: a
    # constant and an alternating long one (told apart by the sign of neighbours' product)
    # and two short ones that would raise a ShapeError-free but wrong-length mix if drawn.
    flat, alternating = np.ones((1, 400)), np.where(np.arange(400) % 2, -1.0, 1.0)[None]
    short = np.ones((1, 100))
    t = A.AddNoise([short, flat, short, alternating], 0.0, normed=False, seed=3)
    clip = np.zeros((1, 300))
    clip[0, 0] = 1.0
    picks = [int((t(clip) - clip)[0, 1:3].prod() < 0) for _ in range(200)]
    assert 70 < sum(picks) < 130  # binomial(200, 1/2): 100 +- 7
    assert t.random
    with pytest.raises(ConfigurationError, match="no noise recording has the clip's 9000 samples"):
        A.AddNoise(short, 0.0, seed=0)(np.ones((1, 9000)))
    with pytest.raises(ConfigurationError, match="silent"):
        A.mix_at_snr(x, np.zeros_like(x), 0.0)
    with pytest.raises(ShapeError, match="noise of shape"):
        A.mix_at_snr(x, x[:, :5], 0.0)


def test_filter_bank_envelopes_to_events():
    """Tonic stops at band envelopes; spikeflow's level-crossing encoder turns them into
    events: a tone burst at band 8's centre makes ON events at its onset, most of them in
    band 8 (order-2 band-passes leak into their neighbours), and OFF events at its end."""
    from spikeflow.data import level_crossings

    rate = 8000
    bank = A.MelButterFilterBank(order=2, low_freq=100, sample_rate=rate, num_filters=16)
    f0 = math.sqrt(bank.bands[8, 0] * bank.bands[8, 1])
    t = np.arange(rate) / rate
    burst = np.where((t >= 0.3) & (t < 0.7), np.sin(2 * np.pi * f0 * t), 0.0)
    env = A.SwapAxes()(A.Bin(rate, 100)(bank(burst)))  # [100 frames, 16 bands]
    db = 20 * np.log10(np.maximum(env, env.max() * 1e-2))  # a 40 dB floor
    events = level_crossings(db, 3.0, 10_000.0, initial=db.min())
    on, off = events[events["p"] == 1], events[events["p"] == 0]
    counts = np.bincount(on["x"], minlength=16)
    assert counts.argmax() == 8 and counts[8] > 1.5 * np.delete(counts, 8).max()
    # At the onset (the abrupt offset's click also raises a few bands briefly).
    assert on["t"].min() >= 290_000 and np.mean(on["t"] < 400_000) > 0.8
    assert np.mean(off["t"] >= 690_000) > 0.7  # at the offset (a few after the onset overshoot)


def test_optional_rates_and_filter_bank_orders_are_checked_where_given():
    noise = [np.ones(50)]
    for bad in (0, -8000, float("nan"), "8000", True):
        with pytest.raises(ConfigurationError, match=r"AddNoise: sample_rate must be"):
            A.AddNoise(noise, 10.0, sample_rate=bad)
    assert A.AddNoise(noise, 10.0, sample_rate=8000).sample_rate == 8000.0
    with pytest.raises(ConfigurationError, match=r"^ButterFilterBank: order must be an int"):
        A.ButterFilterBank(0, [(100.0, 200.0)], 8000)
    with pytest.raises(ConfigurationError, match=r"^MelButterFilterBank: order must be an int"):
        A.MelButterFilterBank(0, sample_rate=8000, num_filters=4)
