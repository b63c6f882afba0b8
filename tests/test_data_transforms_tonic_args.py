"""Tonic 1.7's argument forms of the event transforms: ``Denoise(neighbours=4,
tonic_start=True)`` (Tonic's events exactly, on real N-MNIST recordings and generated
streams), ``Downsample(spatial_factor=(sx, sy))`` and ``target_size``, ``DropEvent`` and
``RefractoryPeriod`` with a range drawn per sample, ``TimeJitter(sort_timestamps=False)``.
Random ones are compared with Tonic given the same draws (Tonic's numpy call replaced by
one returning spikeflow's draws), as tests/test_data_transforms_extra.py does."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_shared_data
from spikeflow.data import transforms as T
from spikeflow.data.io import read_aedat2, read_atis_bin
from spikeflow.errors import ConfigurationError
from tonic_events import assert_same, rec, to_tonic, tonic_transforms

#: Recordings per digit of the N-MNIST test split read by the real-data tests.
PER_DIGIT = 3

_RECORDINGS: list = []


def _nmnist_recordings() -> list:
    """The first ``PER_DIGIT`` recordings of each digit (30 real N-MNIST samples)."""
    root = require_shared_data("nmnist-small")
    if not _RECORDINGS:
        for digit in range(10):
            files = sorted((root / "Test" / str(digit)).glob("*.bin"))[:PER_DIGIT]
            _RECORDINGS.extend(read_atis_bin(f) for f in files)
    return _RECORDINGS


sorted_stream = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3000), min_size=n, max_size=n).map(sorted),
        st.lists(st.integers(0, 7), min_size=n, max_size=n),
        st.lists(st.integers(0, 5), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
    )
)


# -- Denoise -------------------------------------------------------------------------------
@pytest.mark.parametrize("filter_time", [10_000, 2_500])
def test_tonic_denoise_equals_tonic_on_real_recordings(filter_time):
    """Same events, same order, on 30 N-MNIST recordings (all 1,100 were checked once
    at 10 ms and 3 ms); the default (8 neighbours, empty memory) keeps other events."""
    tt = tonic_transforms()
    differs = 0
    for r in _nmnist_recordings():
        ours = T.Denoise(filter_time, neighbours=4, tonic_start=True)(r)
        assert_same(ours, tt.Denoise(filter_time=filter_time)(to_tonic(r)))
        differs += len(T.Denoise(filter_time)(r)) != len(ours)
    assert differs > 0


@settings(max_examples=150, deadline=None)
@given(ev=sorted_stream, window=st.integers(1, 1500))
def test_tonic_denoise_equals_tonic_on_generated_streams(ev, window):
    """Small sensors, dense streams, pixels on the grid's edges (Tonic's grid is the
    events' [0, max x] x [0, max y], not the sensor)."""
    tt = tonic_transforms()
    r = rec(*ev, sensor=(8, 6, 2))
    assert_same(
        T.Denoise(window, neighbours=4, tonic_start=True)(r),
        tt.Denoise(filter_time=window)(to_tonic(r)),
    )


def test_denoise_options_by_hand():
    """Events at (0,0) t=5, (1,1) t=8, (1,0) t=50, window 10: the diagonal (1,1) counts
    for 8 neighbours only; Tonic's start keeps early events with a neighbour in the grid."""
    r = rec([5, 8, 50], [0, 1, 1], [0, 1, 0], sensor=(4, 4, 2))
    kept = {
        (8, False): [8],  # (1,1) sees (0,0) at t=5 on the diagonal
        (4, False): [],
        (4, True): [5, 8],  # t < 10: a neighbour in the 2x2 grid "fired at 0"
        (8, True): [5, 8],
    }
    for (neighbours, start), times in kept.items():
        out = T.Denoise(10, neighbours=neighbours, tonic_start=start)(r)
        assert out.events["t"].tolist() == times, (neighbours, start)
    # At t = filter_time the start memory is no longer recent (Tonic: t + window > t).
    at_window = rec([10, 10], [0, 1], [0, 0], sensor=(4, 4, 2))
    out = T.Denoise(10, neighbours=4, tonic_start=True)(at_window)
    assert out.events["x"].tolist() == [1]  # the second sees the first, 0 us before
    with pytest.raises(ConfigurationError, match=r"neighbours must be 4 .* or 8; got 6"):
        T.Denoise(10, neighbours=6)
    with pytest.raises(ConfigurationError, match="tonic_start must be True or False"):
        T.Denoise(10, tonic_start="yes")
    assert T.Denoise(10).cache_key() == {"name": "Denoise", "filter_time": 10}
    assert T.Denoise(10, 4, True).cache_key() != T.Denoise(10).cache_key()


# -- Downsample: per-axis factors and target_size --------------------------------------------
def test_downsample_tuple_and_target_size_equal_tonic_on_real_recordings():
    tt = tonic_transforms()
    for r in _nmnist_recordings()[::3]:
        te = to_tonic(r)
        ours = T.Downsample((0.5, 0.25))(r)
        assert_same(ours, tt.Downsample(spatial_factor=(0.5, 0.25))(te))
        assert ours.sensor_size == (17, 9, 2)  # ⌈34·0.5⌉, ⌈34·0.25⌉
        ours = T.Downsample(target_size=(17, 7))(r)
        theirs = tt.Downsample(sensor_size=(34, 34, 2), target_size=(17, 7))(te)
        assert_same(ours, theirs)
        assert ours.sensor_size == (17, 7, 2)
        assert int(ours.events["y"].max()) <= 6
        assert_same(T.Downsample((0.7, 0.7))(r), T.Downsample(0.7)(r).events)


def test_downsample_target_size_in_double_precision_equals_tonic():
    """A 25 x 240 sensor to (7, 21): ⌈25 · (7/25)⌉ is 8 in floating point, the sensor is
    (7, 21); y = 80, 160 land where a float32 factor times a float64 coordinate would
    floor otherwise (an all-float32 product does not: the test below catches that)."""
    tt = tonic_transforms()
    xs, ys = np.meshgrid(np.arange(25), np.arange(0, 240, 8))
    r = rec(np.arange(xs.size), xs.ravel(), ys.ravel(), sensor=(25, 240, 2))
    ours = T.Downsample(target_size=(7, 21))(r)
    theirs = tt.Downsample(sensor_size=(25, 240, 2), target_size=(7, 21))(to_tonic(r))
    assert_same(ours, theirs)
    assert ours.sensor_size == (7, 21, 2)


def test_downsample_sensor_is_exact_where_the_float_product_is_not():
    """The sensor is ⌈W·f⌉ of the factor as written: a real DAVIS240C recording (240 x
    180) at f = 0.55 gives 132 x 99, where 180 · 0.55 is 99.00000000000001 in floating
    point (whose ceiling, 100, added an empty row); the coordinates stay Tonic's."""
    folder = require_shared_data("event-files", "aedat2")
    r = read_aedat2(folder / "IMU_translBoxes.aedat")
    assert r.sensor_size == (240, 180, 2)
    ours = T.Downsample(0.55)(r)
    assert_same(ours, tonic_transforms().Downsample(spatial_factor=0.55)(to_tonic(r)))
    assert ours.sensor_size == (132, 99, 2)
    assert int(ours.events["y"].max()) == 98 and int(ours.events["x"].max()) <= 131
    # Every sensor of the grid and three-decimal factor: ⌈W·f⌉ in exact decimals, and
    # the last pixel's coordinate (Tonic's float product) inside it.
    for width in (34, 100, 180, 200, 300, 720):
        for k in range(1, 1001):
            f = k / 1000
            size = T.Downsample(f).apply(r.events[:0], (width, width, 2))[1]
            assert size[0] == -(-width * k // 1000), (width, f)
            assert np.floor((width - 1) * f) < size[0]
    # N-MNIST (34 x 34): Tonic's coordinates, and the size by hand.
    for r in _nmnist_recordings()[::5]:
        for f in (0.1, 0.25, 0.35, 0.55, 0.7):
            ours = T.Downsample(f)(r)
            assert_same(ours, tonic_transforms().Downsample(spatial_factor=f)(to_tonic(r)))
            side = -(-34 * round(f * 100) // 100)
            assert ours.sensor_size == (side, side, 2)


def test_downsample_sensor_of_numpy_float_factors_is_the_factor_as_written():
    """A numpy float32 factor is its own shortest decimal (float32 0.55 is 0.55, not the
    0.550000011920929 of its float64 value, whose ceiling added an empty row and column
    to a DAVIS240); the coordinates stay Tonic's (which multiplies by the float32) and
    every coordinate lies inside the sensor, also for a float16 factor above its decimal
    on a wide sensor."""
    r = rec(list(range(240)), list(range(240)), [y % 180 for y in range(240)],
            sensor=(240, 180, 2))  # fmt: skip
    for f, size in ((np.float32(0.55), (132, 99)), (np.float32(0.3), (72, 54)),
                    ((np.float32(0.55), np.float64(0.3)), (132, 54))):  # fmt: skip
        ours = T.Downsample(f)(r)
        assert_same(ours, tonic_transforms().Downsample(spatial_factor=f)(to_tonic(r)))
        assert ours.sensor_size == (*size, 2), f
    for width in (34, 180, 240, 346, 640):
        for k in range(1, 1001):
            got = T.Downsample(np.float32(k / 1000)).apply(r.events[:0], (width, 1, 2))[1]
            assert got[0] == -(-width * k // 1000), (width, k)
    # One pickled by an older spikeflow (no _decimals) still loads and gives the same size.
    old = pickle.loads(pickle.dumps(T.Downsample(0.55)))
    del old._decimals
    assert old(r).sensor_size == (132, 99, 2)
    # float16 0.3 is 0.30004883: x = 9999 goes to 3000, so the 10000-wide sensor is
    # 3001 wide, not ⌈10000 · 0.3⌉ = 3000.
    f16 = np.float16(0.3)
    wide = rec([0, 1], [0, 9999], [0, 0], sensor=(10000, 1, 2))
    ours = T.Downsample(f16)(wide)
    assert int(ours.events["x"].max()) == 3000 and ours.sensor_size == (3001, 1, 2)


def test_downsample_arguments_are_named():
    r = rec([0, 1], [3, 4], [1, 2], sensor=(5, 3, 2))
    with pytest.raises(ConfigurationError, match=r"give spatial_factor .* or target_size"):
        T.Downsample()
    with pytest.raises(ConfigurationError, match="one of them"):
        T.Downsample(0.5, target_size=(2, 2))
    with pytest.raises(ConfigurationError, match=r"spatial_factor must be f or \(fx, fy\)"):
        T.Downsample((0.5, 0.5, 0.5))
    with pytest.raises(ConfigurationError, match=r"spatial_factor\[1\] must be in \(0, 1\]"):
        T.Downsample((0.5, 1.5))
    with pytest.raises(ConfigurationError, match=r"target_size\[0\] must be an integer"):
        T.Downsample(target_size=(0, 2))
    with pytest.raises(ConfigurationError, match=r"target_size \(6, 2\) is larger than"):
        T.Downsample(target_size=(6, 2))(r)
    # The factor form's key names the sensor's rule, so that frames cached with the float
    # product's ceiling (an empty row) miss; the target_size form's sensor never changed.
    assert T.Downsample(0.5).cache_key() == {"name": "Downsample", "spatial_factor": 0.5,
                                             "sensor": "as written"}  # fmt: skip
    assert T.Downsample(target_size=(2, 2)).cache_key() == {"name": "Downsample",
                                                            "target_size": [2, 2]}  # fmt: skip


# -- random transforms with Tonic's ranges, fed the same draws -----------------------------------
def test_drop_event_range_equals_tonic_with_the_same_draws(monkeypatch):
    """Tonic draws p = low + (high - low) * random_sample(), then np.random.choice."""
    tt = tonic_transforms()
    counts = set()
    for i, r in enumerate(_nmnist_recordings()[::3]):
        for seed in range(3 * i, 3 * i + 3):
            ours = T.DropEvent((0.1, 0.6), seed=seed)(r)
            rng = np.random.default_rng(seed)
            u = float(rng.random())
            p = 0.5 * u + 0.1
            dropped = rng.choice(len(r), size=round(p * len(r)), replace=False)
            monkeypatch.setattr(np.random, "random_sample", lambda *a, u=u: u)
            monkeypatch.setattr(np.random, "choice", lambda *a, d=dropped, **k: d)
            assert_same(ours, tt.DropEvent(p=(0.1, 0.6))(to_tonic(r)))
            counts.add(len(r) - len(ours))
            assert 0.1 * len(r) - 1 <= len(r) - len(ours) <= 0.6 * len(r) + 1
    assert len(counts) > 5  # p is drawn per call


def test_refractory_period_range_equals_tonic_with_the_same_draws(monkeypatch):
    """The period is Tonic's draw, int(low + (high - low) * u), at every call. With it
    the rules differ as for a fixed period (docs/migration.md): spikeflow's (from the
    last kept event, ``>=``) at ``period + 1`` keeps every event Tonic's (from the
    previous event, kept or not, ``>``) keeps, on some recordings more."""
    tt = tonic_transforms()
    import tonic.functional as tonic_functional

    periods, more = set(), 0
    for i, r in enumerate(_nmnist_recordings()[::3]):
        seed = 100 + i
        ours = T.RefractoryPeriod((100.0, 5000.0), seed=seed)(r)
        u = float(np.random.default_rng(seed).random())
        period = int(4900.0 * u + 100.0)
        periods.add(period)
        drawn = []
        original = tonic_functional.refractory_period_numpy

        def spy(events, refractory_period, drawn=drawn, original=original):
            drawn.append(refractory_period)
            return original(events=events, refractory_period=refractory_period)

        monkeypatch.setattr(np.random, "random_sample", lambda *a, u=u: u)
        monkeypatch.setattr(tonic_functional, "refractory_period_numpy", spy)
        theirs = tt.RefractoryPeriod(delta=(100, 5000))(to_tonic(r))
        assert drawn == [period]
        assert_same(ours, T.RefractoryPeriod(period)(r).events)
        wider = Counter(map(tuple, T.RefractoryPeriod(period + 1)(r).events[list("txyp")].tolist()))
        tonic_kept = Counter(map(tuple, theirs[list("txyp")].tolist()))
        assert not tonic_kept - wider
        more += sum(wider.values()) > sum(tonic_kept.values())
    assert len(periods) == len(_nmnist_recordings()[::3]) and more > 0
    # The draw is truncated (Tonic's int), a fixed fractional period acts as its ceiling.
    same_pixel = rec([0, 300, 301, 700], [1, 1, 1, 1], [1, 1, 1, 1], sensor=(4, 4, 2))
    assert T.RefractoryPeriod(300.5)(same_pixel).events["t"].tolist() == [0, 301, 700]
    drawn = T.RefractoryPeriod((300.5, 300.5), seed=0)(same_pixel)
    assert drawn.events["t"].tolist() == [0, 300, 700]
    fixed = T.RefractoryPeriod((300, 300.9), seed=1)
    assert not fixed.random and T.RefractoryPeriod((1, 2000), seed=1).random
    with pytest.raises(ConfigurationError, match="range must have low <= high"):
        T.RefractoryPeriod((1000, 100))
    with pytest.raises(ConfigurationError, match=r"refractory_period\[1\] must be a finite"):
        T.RefractoryPeriod((100, -1))
    with pytest.raises(ConfigurationError, match=r"a period or a \(low, high\) range"):
        T.RefractoryPeriod((1, 2, 3))


def test_time_jitter_unsorted_equals_tonic_with_the_same_draws(monkeypatch):
    """``sort_timestamps=False`` keeps the input order, as Tonic's; fed integer shifts
    (spikeflow rounds its draws, Tonic truncates) both give the same events."""
    tt = tonic_transforms()
    for seed, r in enumerate(_nmnist_recordings()[::5]):
        ours = T.TimeJitter(500.0, seed=seed, sort_timestamps=False)(r)
        shifts = np.rint(np.random.default_rng(seed).normal(0.0, 500.0, len(r)))
        monkeypatch.setattr(np.random, "normal", lambda *a, s=shifts, **k: s)
        theirs = tt.TimeJitter(std=500.0, clip_negative=False, sort_timestamps=False)(to_tonic(r))
        assert_same(ours, theirs)
        assert (np.diff(ours.events["t"].astype(np.int64)) < 0).any()  # not re-sorted
        np.testing.assert_array_equal(ours.events["x"], r.events["x"])
        resorted = T.TimeJitter(500.0, seed=seed)(r).events
        np.testing.assert_array_equal(np.sort(ours.events["t"]), resorted["t"])
    with pytest.raises(ConfigurationError, match="sort_timestamps must be True or False"):
        T.TimeJitter(1.0, sort_timestamps="no")
    assert "sort_timestamps" not in T.TimeJitter(1.0).cache_key()


def test_drop_event_range_arguments_are_named():
    with pytest.raises(ConfigurationError, match=r"fraction range must have low <= high"):
        T.DropEvent((0.5, 0.1))
    with pytest.raises(ConfigurationError, match=r"fraction\[1\] must be a finite real"):
        T.DropEvent((0.1, 1.5))
    with pytest.raises(ConfigurationError, match=r"fraction must be p or a \(low, high\)"):
        T.DropEvent((0.1, 0.2, 0.3))
    with pytest.raises(ConfigurationError, match="fraction must be a finite real"):
        T.DropEvent("0.1")
    assert not T.DropEvent((0.0, 0.0)).random and T.DropEvent((0.0, 0.5)).random


@pytest.mark.parametrize(
    ("sensor", "kwargs"),
    [
        ((66, 44, 2), {"target_size": (39, 26)}),  # x = 22, 44 and y = 22: x·w/W whole
        ((346, 260, 2), {"spatial_factor": (0.53, 0.35)}),  # DAVIS346; x = 100, y = 20, ...
    ],
)
def test_downsample_floors_float64_products_as_tonic(sensor, kwargs):
    """Every pixel of the sensor: where ``x · f`` is a whole number, float32 factors (or
    products) floor one pixel lower or higher than Tonic's float64 ones."""
    tt = tonic_transforms()
    w, h, _ = sensor
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    r = rec(np.arange(xs.size), xs.ravel(), ys.ravel(), sensor=sensor)
    ours = T.Downsample(**kwargs)(r)
    their_kwargs = dict(kwargs, sensor_size=sensor) if "target_size" in kwargs else kwargs
    assert_same(ours, tt.Downsample(**their_kwargs)(to_tonic(r)))
