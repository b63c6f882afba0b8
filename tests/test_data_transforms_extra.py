"""The event transforms Tonic has beyond the core set (spikeflow.data.transforms_extra).

Deterministic transforms are checked equal to Tonic 1.7's on real N-MNIST recordings
(../shared/data; skipped when absent) and on generated streams. Random ones are checked
equal to Tonic with the same random draws fed to both (Tonic's numpy call replaced by
one returning spikeflow's draws), and otherwise by statistics plus determinism under
``seed``. Each documented difference from Tonic is pinned by a test of its own.
"""

from __future__ import annotations

import inspect
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeflow.data import EventRecording, to_frames
from spikeflow.data import transforms as T
from spikeflow.errors import ConfigurationError, DataFormatError
from tonic_events import (
    TONIC_DTYPE,
    assert_same,
    fields,
    nmnist_recordings,
    rec,
    to_tonic,
    tonic_transforms,
)

sorted_stream = st.integers(0, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 5000), min_size=n, max_size=n).map(sorted),
        st.lists(st.integers(0, 7), min_size=n, max_size=n),
        st.lists(st.integers(0, 5), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
    )
)


# -- deterministic transforms equal Tonic's ------------------------------------------------
def test_deterministic_transforms_equal_tonic_on_real_recordings():
    tt = tonic_transforms()
    for r in nmnist_recordings():
        before = r.events.copy()
        te = to_tonic(r)
        t_min = int(r.events["t"].min())
        assert_same(T.CropTime(min=1000, max=200_000)(r), tt.CropTime(min=1000, max=200_000)(te))
        assert_same(T.CropTime(max=150_000)(r), tt.CropTime(max=150_000)(te))
        assert_same(T.TimeAlignment()(r), tt.TimeAlignment()(te))
        for n in (1, 2, 3, 7):
            assert_same(T.Decimation(n)(r), tt.Decimation(n)(te))
        # Tonic's reversal maps t -> t_max - t, spikeflow's keeps the span: t_min apart
        for flip in (True, False):
            ours = T.TimeReversal(flip_polarities=flip)(r)
            assert_same(ours, tt.RandomTimeReversal(p=1.0, flip_polarities=flip)(te), t_min)
            assert_same(T.RandomTimeReversal(1.0, flip)(r), to_tonic(ours))
        assert_same(T.RandomFlipPolarity(1.0)(r), tt.RandomFlipPolarity(p=1.0)(te))
        np.testing.assert_array_equal(r.events, before)  # the input is never modified


def _kept(full: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The mask of ``full``'s events that ``kept`` (a subsequence of it) holds."""
    mask, j = np.zeros(len(full), dtype=bool), 0
    for i, event in enumerate(zip(*(full[f] for f in "txyp"))):
        if j < len(kept) and event == tuple(kept[f][j] for f in "txyp"):
            mask[i], j = True, j + 1
    assert j == len(kept)
    return mask


def test_denoise_against_tonic_on_real_recordings():
    """The migration row: spikeflow's Denoise looks at 8 neighbours (Tonic: 4), so from
    t = filter_time on it keeps every event Tonic keeps; before it, Tonic keeps every
    event (its pixel memory starts at filter_time) and spikeflow only those with a
    neighbour in the window."""
    tt = tonic_transforms()
    window, early_dropped = 10_000, 0
    for r in nmnist_recordings():
        e = r.events
        ours = _kept(e, T.Denoise(window)(r).events)
        theirs = _kept(e, tt.Denoise(filter_time=window)(to_tonic(r)))
        early = e["t"] < window
        assert theirs[early].all()
        assert not (theirs & ~ours)[~early].any()
        early_dropped += int((~ours[early]).sum())
    assert early_dropped > 0


def test_stabilize_saccades_equals_tonic_and_by_hand():
    """Tonic's ``NMNIST(stabilize=True)`` (``tonic.datasets.nmnist.stabilize``) on the real
    recordings; by hand at the saccades' corners and across the sensor's edges."""
    stabilize = pytest.importorskip("tonic.datasets.nmnist", reason="no Tonic").stabilize
    for r in nmnist_recordings():
        before = r.events.copy()
        ours = T.StabilizeSaccades()(r)
        assert_same(ours, stabilize(to_tonic(r)))
        assert ours.sensor_size == r.sensor_size and 0 < len(ours) < len(r)
        np.testing.assert_array_equal(r.events, before)
    # t = 0: (+4, +2); t = 105 ms: (+0.5, -5); t = 210 ms: (-3, +2); t = 315 ms: (+4, +2)
    r = rec([0, 0, 52_500, 52_500, 105_000, 210_000, 315_000], [0, 30, 29, 5, 0, 5, 0],
            [0, 0, 4, 0, 6, 0, 0], sensor=(34, 34, 2))  # fmt: skip
    # x = 30 + 4 = 34 is off; at 52.5 ms (29, 4) -> (31.25, 2.5) -> (31, 2) and y = 0
    # goes to -1.5, off; 0.5 rounds to 0 (half to even)
    assert fields(T.StabilizeSaccades()(r)) == [
        (0, 4, 2, 0), (52_500, 31, 2, 0), (105_000, 0, 1, 0), (210_000, 2, 2, 0),
        (315_000, 4, 2, 0)]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(ev=sorted_stream, lo=st.integers(-10, 3000), width=st.integers(0, 3000),
       n=st.integers(1, 4))  # fmt: skip
def test_deterministic_transforms_equal_tonic_on_generated_streams(ev, lo, width, n):
    tt = tonic_transforms()
    r = rec(*ev, sensor=(8, 6, 2))
    te = to_tonic(r)
    assert_same(T.CropTime(lo, lo + width)(r), tt.CropTime(lo, lo + width)(te))
    if len(r) == 0:  # Tonic's Decimation returns a float array, TimeAlignment raises
        assert len(T.Decimation(n)(r)) == 0 and len(T.TimeAlignment()(r)) == 0
        return
    assert_same(T.Decimation(n)(r), tt.Decimation(n)(te))
    assert_same(T.TimeAlignment()(r), tt.TimeAlignment()(te))
    t_min = int(r.events["t"].min())
    assert_same(T.TimeReversal()(r), tt.RandomTimeReversal(p=1.0)(te), t_min)


def loop_decimation(e, n, per_polarity):
    counts, keep = {}, []
    for ev in e:
        key = (int(ev["x"]), int(ev["y"])) + ((int(ev["p"] != 0),) if per_polarity else ())
        counts[key] = counts.get(key, 0) + 1
        keep.append(counts[key] % n == 0)
    return e[np.array(keep, dtype=bool)]


@settings(max_examples=60, deadline=None)
@given(ev=sorted_stream, n=st.integers(1, 5), shuffle=st.randoms(use_true_random=False))
def test_decimation_equals_a_loop_also_per_polarity_and_unsorted(ev, n, shuffle):
    r = rec(*ev, sensor=(8, 6, 2))
    order = list(range(len(r)))
    shuffle.shuffle(order)  # the rule follows input order; sorting is not needed
    e = r.events[np.array(order, dtype=np.int64)]
    for per_polarity in (False, True):
        got = T.Decimation(n, per_polarity=per_polarity)(e)
        assert fields(got) == fields(loop_decimation(e, n, per_polarity))


def test_crop_time_by_hand_and_open_ends():
    r = rec([-5, 0, 10, 20, 30], [0, 1, 2, 3, 4], [0] * 5)
    assert T.CropTime(0, 20)(r).events["t"].tolist() == [0, 10, 20]  # both ends kept
    assert T.CropTime(min=10)(r).events["t"].tolist() == [10, 20, 30]
    assert T.CropTime(max=0)(r).events["t"].tolist() == [-5, 0]
    assert T.CropTime()(r).events["t"].tolist() == [-5, 0, 10, 20, 30]
    assert T.CropTime(20, 20)(r).events["t"].tolist() == [20]
    assert T.CropTime(0.5, 19.5)(r).events["t"].tolist() == [10]
    # Tonic's max=None became the first recording's last time, cropping later ones there
    crop = T.CropTime(min=0)
    assert len(crop(rec([0, 5], [0, 0], [0, 0]))) == 2
    assert len(crop(rec([0, 50], [0, 0], [0, 0]))) == 2
    assert crop(rec([0, 50], [0, 0], [0, 0])).sensor_size == (5, 3, 2)
    assert T.CropTime(0, 10).cache_key() == T.CropTime(0.0, np.float32(10.0)).cache_key()


def test_time_alignment_and_reversal_by_hand():
    r = rec([100, 100, 130, 160], [0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 1, 0])
    assert T.TimeAlignment()(r).events["t"].tolist() == [0, 0, 30, 60]
    rev = T.TimeReversal()(r)
    # t -> 100 + 160 - t, order reversed (also among equal times), polarity swapped
    assert fields(rev) == [(100, 3, 0, 1), (130, 2, 2, 0), (160, 1, 1, 0), (160, 0, 0, 1)]
    assert fields(T.TimeReversal()(rev)) == fields(r)  # an involution
    assert fields(T.TimeReversal(flip_polarities=False)(r))[0] == (100, 3, 0, 0)
    assert rev.sensor_size == r.sensor_size
    unsorted = T.TimeAlignment()(rec([7, 3, 5], [0, 1, 2], [0, 0, 0]))
    assert unsorted.events["t"].tolist() == [4, 0, 2]  # the minimum, not the first event


def test_empty_and_one_event_recordings():
    empty = rec([], [], [])
    one = rec([42], [3], [2], [1])
    transforms = [
        T.SpatialJitter(2.0, 2.0, seed=0), T.SpatialJitter(2.0, 2.0, outliers="clamp", seed=0),
        T.UniformNoise(5, seed=0), T.CropTime(0, 100), T.TimeAlignment(), T.TimeReversal(),
        T.RandomTimeReversal(0.5, seed=0), T.RandomFlipPolarity(0.5, seed=0),
        T.RandomFlipPolarity(0.5, per_event=True, seed=0), T.Decimation(2),
        T.DropArea(0.5, seed=0), T.DropArea((0.2, 0.9), seed=0), T.DropArea(1.0),
    ]  # fmt: skip
    for tf in transforms:
        out = tf(empty)
        assert len(out) == 0 and out.events.dtype == empty.events.dtype, tf
        assert out.sensor_size == (5, 3, 2), tf
    assert fields(T.TimeReversal()(one)) == [(42, 3, 2, 0)]
    assert fields(T.TimeAlignment()(one)) == [(0, 3, 2, 1)]
    assert fields(T.Decimation(1)(one)) == [(42, 3, 2, 1)] and len(T.Decimation(2)(one)) == 0
    noisy = T.UniformNoise(4, seed=1)(one)  # the span is one time: every noise event at 42
    assert len(noisy) == 5 and set(noisy.events["t"].tolist()) == {42}
    assert fields(noisy)[0] == (42, 3, 2, 1)  # equal times: the recording's event first


def test_no_transform_modifies_its_input():
    r = rec(np.arange(0, 400, 4), np.arange(100) % 5, np.arange(100) % 3, np.arange(100) % 2)
    before, plain = r.events.copy(), r.events.copy()
    for tf in (T.SpatialJitter(2.0, 2.0, seed=0), T.SpatialJitter(2.0, 2.0, 0.5, "clamp", 0),
               T.UniformNoise((1, 9), seed=0), T.CropTime(8, 100), T.TimeAlignment(),
               T.TimeReversal(), T.RandomTimeReversal(1.0), T.RandomFlipPolarity(1.0),
               T.RandomFlipPolarity(0.5, per_event=True, seed=0), T.Decimation(3, True),
               T.DropArea((0.2, 0.8), seed=0), T.EventDownsampling(2, 40),
               T.EventDownsampling((3, 2), 40, "differentiator", 1, 4)):  # fmt: skip
        out = tf(r)
        assert out.events is not r.events and r.sensor_size == (5, 3, 2), tf
        np.testing.assert_array_equal(r.events, before)
        if not tf.needs_sensor:
            tf(plain)
            np.testing.assert_array_equal(plain, before)


# -- SpatialJitter -------------------------------------------------------------------------
def test_spatial_jitter_equals_tonic_with_the_same_draws(monkeypatch):
    tt = tonic_transforms()
    cov = [[1.5, 0.4], [0.4, 0.8]]
    for seed, r in enumerate(nmnist_recordings()[:5]):
        before = r.events.copy()
        ours = T.SpatialJitter(1.5, 0.8, 0.4, seed=seed)(r)
        shift = np.random.default_rng(seed).multivariate_normal([0.0, 0.0], cov, size=len(r))
        fed = np.rint(shift)  # fed whole-pixel shifts, Tonic's truncation is our rounding
        monkeypatch.setattr(np.random, "multivariate_normal", lambda *a, s=fed, **k: s)
        theirs = tt.SpatialJitter((34, 34, 2), 1.5, 0.8, 0.4, clip_outliers=True)(to_tonic(r))
        assert_same(ours, theirs)
        assert 0 < len(r) - len(ours) < 0.2 * len(r)  # some events jittered off and dropped
        np.testing.assert_array_equal(r.events, before)
        assert ours.sensor_size == (34, 34, 2)


def test_spatial_jitter_clamp_and_drop_by_hand():
    r = rec(np.arange(2000), np.zeros(2000, int), np.full(2000, 2), sensor=(5, 3, 2))
    seed = 4
    shift = np.random.default_rng(seed).multivariate_normal([0, 0], [[4, 0], [0, 1]], 2000)
    x, y = np.rint(shift[:, 0]), np.rint(2 + shift[:, 1])
    clamp = T.SpatialJitter(4.0, 1.0, outliers="clamp", seed=seed)(r)
    assert clamp.events["x"].tolist() == np.clip(x, 0, 4).astype(int).tolist()
    assert clamp.events["y"].tolist() == np.clip(y, 0, 2).astype(int).tolist()
    assert clamp.events["t"].tolist() == list(range(2000))
    drop = T.SpatialJitter(4.0, 1.0, seed=seed)(r)
    inside = (x >= 0) & (x <= 4) & (y >= 0) & (y <= 2)
    assert drop.events["t"].tolist() == np.flatnonzero(inside).tolist()
    assert drop.events["x"].tolist() == x[inside].astype(int).tolist()
    assert 0 < len(drop) < 2000


def test_spatial_jitter_statistics_are_unbiased():
    """Rounding to the nearest pixel: mean offset 0 (Tonic's truncation gives −0.5),
    covariance that of the draws plus 1/12 on the diagonal from the rounding."""
    n = 40_000
    r = rec(np.arange(n), np.full(n, 100), np.full(n, 100), sensor=(201, 201, 2))
    out = T.SpatialJitter(var_x=4.0, var_y=1.0, sigma_xy=1.2, seed=0)(r)
    assert len(out) == n
    d = np.stack([out.events["x"] - 100.0, out.events["y"] - 100.0])
    assert np.abs(d.mean(axis=1)).max() < 0.05
    c = np.cov(d)
    assert abs(c[0, 0] - (4 + 1 / 12)) < 0.15 and abs(c[1, 1] - (1 + 1 / 12)) < 0.05
    assert abs(c[0, 1] - 1.2) < 0.06
    assert fields(T.SpatialJitter(4.0, 1.0, 1.2, seed=0)(r)) == fields(out)
    assert fields(T.SpatialJitter(4.0, 1.0, 1.2, seed=1)(r)) != fields(out)
    assert fields(T.SpatialJitter(0.0, 0.0)(r)) == fields(r)
    assert not T.SpatialJitter(0.0, 0.0).random and T.SpatialJitter(0.0, 0.5).random
    # |sigma_xy| = sqrt(var_x·var_y): singular, allowed; the offsets lie on one line
    line = T.SpatialJitter(4.0, 1.0, sigma_xy=-2.0, outliers="clamp", seed=0)(r).events
    d = np.stack([line["x"] - 100.0, line["y"] - 100.0])
    assert np.corrcoef(d)[0, 1] < -0.9  # -1 before rounding: -2 / sqrt(4.08 · 1.08)
    # only one axis jittered: the other never moves
    assert set(T.SpatialJitter(0.0, 2.0, seed=3)(r).events["x"].tolist()) == {100}


# -- UniformNoise ----------------------------------------------------------------------------
def test_uniform_noise_equals_tonic_with_the_same_draws(monkeypatch):
    tt = tonic_transforms()
    for seed, r in enumerate(nmnist_recordings()[:4]):
        ours = T.UniformNoise(n=3000, seed=seed)(r)
        rng = np.random.default_rng(seed)
        t = r.events["t"]
        draws = {
            "t": rng.integers(int(t.min()), int(t.max()), size=3000, endpoint=True),
            "x": rng.integers(0, 34, size=3000),
            "y": rng.integers(0, 34, size=3000),
            "p": rng.integers(0, 2, size=3000),
        }
        # Tonic draws one channel per call, in its dtype's field order (x, y, t, p).
        queue = iter([draws[name] + 0.25 for name in TONIC_DTYPE.names])
        monkeypatch.setattr(np.random, "uniform", lambda *a, q=queue, **k: next(q))
        theirs = tt.UniformNoise(sensor_size=(34, 34, 2), n=3000)(to_tonic(r))
        assert len(ours) == len(r) + 3000
        # Both sorted by time; Tonic's sort is unstable, so equal times may differ in order.
        assert np.all(np.diff(ours.events["t"]) >= 0) and np.all(np.diff(theirs["t"]) >= 0)
        key = lambda e: sorted(zip(*(np.asarray(e[f]).tolist() for f in "txyp")))  # noqa: E731
        assert key(ours.events) == key(theirs)


def test_uniform_noise_statistics_ranges_and_order():
    r = rec([10, 20, 20, 50], [0, 1, 2, 3], [0, 1, 2, 0], [1, 0, 1, 0], sensor=(4, 3, 2))
    out = T.UniformNoise(60_000, seed=0)(r)
    e = out.events
    assert len(out) == 60_004 and np.all(np.diff(e["t"]) >= 0)
    # every value of every field drawn about equally often, both ends included
    for name, values in (("x", range(4)), ("y", range(3)), ("p", range(2)),
                         ("t", range(10, 51))):  # fmt: skip
        counts = np.bincount(e[name].astype(np.int64) - values[0], minlength=len(values))
        assert len(counts) == len(values), name
        expected = 60_000 / len(values)
        assert np.abs(counts - expected).max() < 6 * np.sqrt(expected) + 4, name
    # stable: at equal times the recording's events come first, in their order
    at20 = [f for f in fields(out) if f[0] == 20]
    assert at20[:2] == [(20, 1, 1, 0), (20, 2, 2, 1)]
    assert (20, 1, 1, 0) in fields(out) and fields(out)[0] == (10, 0, 0, 1)
    # a one-channel sensor gets p = 0 only; a range of counts, both ends reached
    mono = T.UniformNoise(500, seed=1)(rec([0, 9], [0, 1], [0, 1], sensor=(2, 2, 1)))
    assert set(mono.events["p"].tolist()) == {0}
    sizes = {len(T.UniformNoise((3, 5), seed=s)(r)) - 4 for s in range(60)}
    assert sizes == {3, 4, 5}
    assert fields(T.UniformNoise(7, seed=2)(r)) == fields(T.UniformNoise(7, seed=2)(r))
    assert fields(T.UniformNoise(0)(r)) == fields(r) and not T.UniformNoise(0).random


# -- DropArea ------------------------------------------------------------------------------------
def test_drop_area_equals_tonic_with_the_same_draws(monkeypatch):
    tt = tonic_transforms()
    for ratio in (0.1, 0.3, 0.65):
        for seed, r in enumerate(nmnist_recordings()[:4]):
            ours = T.DropArea(ratio, seed=seed)(r)
            rng = np.random.default_rng(seed)
            w = h = int(34 * ratio)
            origin = iter([int(rng.integers(0, 34 - w + 1)), int(rng.integers(0, 34 - h + 1))])
            monkeypatch.setattr(np.random, "randint", lambda *a, o=origin, **k: next(o))
            theirs = tt.DropEventByArea(sensor_size=(34, 34, 2), area_ratio=ratio)(to_tonic(r))
            assert_same(ours, theirs)
            assert len(ours) < len(r) or ratio == 0.1


def test_drop_area_by_hand_bounds_and_ranges():
    # 10x4 sensor, ratio 0.5: a 5x2 box; every event on its own pixel
    xs, ys = np.meshgrid(np.arange(10), np.arange(4))
    r = rec(np.arange(40), xs.ravel(), ys.ravel(), sensor=(10, 4, 2))
    origins = set()
    for seed in range(200):
        out = T.DropArea(0.5, seed=seed)(r)
        gone = sorted(set(fields(r)) - set(fields(out)))
        assert len(gone) == 10 and len(out) == 30
        x0, y0 = min(g[1] for g in gone), min(g[2] for g in gone)
        box = {(x0 + i, y0 + j) for i in range(5) for j in range(2)}
        assert {(g[1], g[2]) for g in gone} == box
        origins.add((x0, y0))
    assert origins == {(x, y) for x in range(6) for y in range(3)}  # the far edges too
    assert len(T.DropArea(1.0)(r)) == 0 and not T.DropArea(1.0).random
    assert fields(T.DropArea(0.0)(r)) == fields(r) and not T.DropArea(0.0).random
    assert len(T.DropArea(0.05, seed=0)(r)) == 40  # a 0x0 box
    one_d = rec(np.arange(6), np.arange(6), np.zeros(6, int), sensor=(6, 1, 2))
    assert len(T.DropArea(0.9, seed=0)(one_d)) == 6  # height ⌊1·0.9⌋ = 0: no box
    sizes = {40 - len(T.DropArea((0.2, 0.6), seed=s)(r)) for s in range(100)}
    # ratio r in [0.2, 0.6]: boxes ⌊10r⌋ x ⌊4r⌋ = 2x0 (r < 0.25), 2x1, 3x1, 4x1, 5x2, 6x2
    assert {0, 2, 3, 4, 10} <= sizes <= {0, 2, 3, 4, 10, 12}
    assert T.DropArea((0.2, 0.6)).random


# -- EventDrop ------------------------------------------------------------------------------------
def event_drop_draws(seed: int, r: EventRecording) -> tuple[int, list, list, list]:
    """Replay EventDrop's draws (its docstring's order) with the generator of ``seed``:
    the strategy, then what Tonic draws with randint, uniform and choice, in turn."""
    rng = np.random.default_rng(seed)
    width, height = r.sensor_size[:2]
    k = int(rng.integers(0, 4))
    randint, uniform, choice = [k], [], []
    if k == 1:
        tenths = int(rng.integers(1, 10))
        t1 = int(r.events["t"].max())  # the recording starts at 0
        randint.append(tenths)
        uniform.append(rng.uniform(0, t1 - t1 * tenths / 10))
    elif k == 2:
        twentieths = int(rng.integers(1, 6))
        w, h = int(width * twentieths / 20), int(height * twentieths / 20)
        randint += [twentieths, int(rng.integers(0, width - w + 1)),
                    int(rng.integers(0, height - h + 1))]  # fmt: skip
    elif k == 3:
        tenths = int(rng.integers(1, 10))
        randint.append(tenths)
        n = len(r)
        choice.append(rng.choice(n, size=int(tenths / 10 * n + 0.5), replace=False))
    return k, randint, uniform, choice


def test_event_drop_equals_tonic_with_the_same_draws(monkeypatch):
    tt = tonic_transforms()
    seen = set()
    for i, raw in enumerate(nmnist_recordings()[:6]):
        r = T.TimeAlignment()(raw)  # Tonic's window lies in [0, t_last]
        for seed in range(10 * i, 10 * i + 10):
            ours = T.EventDrop(seed=seed)(r)
            k, randint, uniform, choice = event_drop_draws(seed, r)
            seen.add(k)
            queues = [iter(q) for q in (randint, uniform, choice)]
            for name, q in zip(("randint", "uniform", "choice"), queues):
                monkeypatch.setattr(np.random, name, lambda *a, q=q, **kw: next(q))
            theirs = tt.EventDrop(sensor_size=(34, 34, 2))(to_tonic(r))
            for q in queues:  # Tonic consumed every draw fed to it, no more
                assert next(q, None) is None, (seed, k)
            assert_same(ours, theirs)
            assert (len(ours) == len(r)) == (k == 0) or k == 2  # a box may miss every event
    assert seen == {0, 1, 2, 3}


def classify_event_drop(r: EventRecording, out: EventRecording) -> tuple[str, int]:
    """Which strategy produced ``out`` from ``r`` (every event on its own pixel, times
    0, 10, 20, ...), and its size: ("identity", 0), ("time", events), ("area", box side)
    or ("events", events)."""
    kept = {f[0] // 10 for f in fields(out)}
    gone = sorted(set(range(len(r))) - kept)
    assert [f for f in fields(r) if f[0] // 10 in kept] == fields(out)  # order kept
    if not gone:
        return "identity", 0
    xs = {int(r.events["x"][i]) for i in gone}
    ys = {int(r.events["y"][i]) for i in gone}
    if len(gone) == len(xs) * len(ys) and max(xs) - min(xs) == max(ys) - min(ys) == len(xs) - 1:
        return "area", len(xs)
    if gone == list(range(gone[0], gone[-1] + 1)):
        return "time", len(gone)
    return "events", len(gone)


def test_event_drop_strategies_ratios_and_frequencies_by_hand():
    # 20x20 sensor, one event per pixel (row by row) every 10 µs: N = 400, span 3990 µs
    xs, ys = np.meshgrid(np.arange(20), np.arange(20))
    r = rec(np.arange(400) * 10, xs.ravel(), ys.ravel(), sensor=(20, 20, 2))
    sizes: dict[str, set[int]] = {"identity": set(), "time": set(), "area": set(), "events": set()}
    counts = dict.fromkeys(sizes, 0)
    tf = T.EventDrop(seed=0)
    for _ in range(800):
        kind, size = classify_event_drop(r, tf(r))
        counts[kind] += 1
        sizes[kind].add(size)
    for n in counts.values():  # each strategy with probability 1/4 (sd 12.2)
        assert abs(n - 200) < 6 * 12.2, counts
    assert sizes["area"] == {1, 2, 3, 4, 5}  # boxes ⌊20·k/20⌋ for k = 1..5
    assert sizes["events"] == {40 * k for k in range(1, 10)}  # ⌊N·k/10 + ½⌋
    # a window of k/10 of the span: 399·k µs at 10 µs a step, so 39.9·k events ± 1
    assert all(any(abs(n - 39.9 * k) <= 1 for k in range(1, 10)) for n in sizes["time"])
    assert {min(range(1, 10), key=lambda k: abs(n - 39.9 * k)) for n in sizes["time"]} == set(
        range(1, 10))  # fmt: skip
    # Tonic's count rounds half up: 25 events at 0.1 -> 3 dropped (DropEvent's round: 2)
    small = rec(np.arange(25) * 10, np.arange(25) % 20, np.arange(25) // 20, sensor=(20, 20, 2))
    dropped = set()
    for seed in range(400):
        kind, size = classify_event_drop(small, T.EventDrop(seed=seed)(small))
        if kind == "events":
            dropped.add(size)
    assert 3 in dropped and 2 not in dropped
    assert len(T.DropEvent(0.1, seed=0)(small)) == 23


def test_event_drop_seed_empty_and_arguments():
    r = rec(np.arange(300), np.arange(300) % 5, np.arange(300) % 3, sensor=(5, 3, 2))
    assert fields(T.EventDrop(seed=4)(r)) == fields(T.EventDrop(seed=4)(r))
    assert len({len(T.EventDrop(seed=s)(r)) for s in range(40)}) > 5
    torch.manual_seed(3)
    a = fields(T.EventDrop()(r))
    torch.manual_seed(3)
    assert fields(T.EventDrop()(r)) == a
    empty = rec([], [], [])
    for seed in range(30):  # every strategy: Tonic's drop-by-time fails here
        out = T.EventDrop(seed=seed)(empty)
        assert len(out) == 0 and out.sensor_size == (5, 3, 2)
    assert T.EventDrop().random and T.EventDrop().cache_key() == {"name": "EventDrop"}
    with pytest.raises(ConfigurationError, match="EventDrop needs the sensor size"):
        T.EventDrop(seed=0)(r.events)
    before = r.events.copy()
    for seed in range(20):
        T.EventDrop(seed=seed)(r)
    np.testing.assert_array_equal(r.events, before)


# -- random application: reversal and polarity ------------------------------------------------
def test_random_time_reversal_and_polarity_probability_and_seed():
    r = rec([0, 5, 9], [0, 1, 2], [0, 1, 2], [0, 1, 1])
    rev = fields(T.TimeReversal()(r))
    for make in (lambda s: T.RandomTimeReversal(0.3, seed=s),
                 lambda s: T.RandomFlipPolarity(0.3, seed=s)):  # fmt: skip
        tf = make(0)
        outs = [fields(tf(r)) for _ in range(2000)]
        changed = sum(o != fields(r) for o in outs)
        assert abs(changed / 2000 - 0.3) < 0.04
        assert all(o in (fields(r), rev, fields(T.FlipPolarity()(r))) for o in outs)
        again = make(0)
        assert [fields(again(r)) for _ in range(2000)] == outs  # one stream per seed
        assert tf.random
    for p, flips in ((0.0, False), (1.0, True)):
        assert (fields(T.RandomTimeReversal(p)(r)) == rev) is flips
        assert (fields(T.RandomFlipPolarity(p)(r)) != fields(r)) is flips
        assert not T.RandomTimeReversal(p).random and not T.RandomFlipPolarity(p).random


def test_random_flip_polarity_per_event():
    n = 20_000
    r = rec(np.arange(n), np.zeros(n, int), np.zeros(n, int), np.arange(n) % 2)
    out = T.RandomFlipPolarity(0.25, per_event=True, seed=0)(r)
    flipped = out.events["p"] != r.events["p"]
    assert abs(flipped.mean() - 0.25) < 0.015
    np.testing.assert_array_equal(out.events["p"][flipped], 1 - r.events["p"][flipped])
    assert fields(T.RandomFlipPolarity(0.25, per_event=True, seed=0)(r)) == fields(out)
    assert (T.RandomFlipPolarity(1.0, per_event=True)(r).events["p"] == 1 - r.events["p"]).all()
    assert fields(T.RandomFlipPolarity(0.0, per_event=True)(r)) == fields(r)


def test_polarity_flips_refuse_channel_sensors():
    cochlea = rec([0, 1], [0, 3], [0, 0], [0, 5], sensor=(4, 1, 8))
    for tf in (T.TimeReversal(), T.RandomTimeReversal(1.0), T.RandomFlipPolarity(1.0)):
        with pytest.raises(ConfigurationError, match="channel index"):
            tf(cochlea)
    out = T.TimeReversal(flip_polarities=False)(cochlea)
    assert fields(out) == [(0, 3, 0, 5), (1, 0, 0, 0)]
    assert len(T.RandomTimeReversal(1.0, flip_polarities=False)(cochlea)) == 2


def test_seed_none_follows_torch_and_workers_get_their_own_draws():
    r = rec(np.arange(300), np.arange(300) % 5, np.arange(300) % 3, sensor=(5, 3, 2))
    for make in (lambda: T.SpatialJitter(1.0, 1.0), lambda: T.UniformNoise(50),
                 lambda: T.DropArea(0.5),
                 lambda: T.RandomFlipPolarity(0.5, per_event=True)):  # fmt: skip
        torch.manual_seed(3)
        a = fields(make()(r))
        torch.manual_seed(3)
        b, c = fields(make()(r)), fields(make()(r))
        assert a == b and b != c
    tf = pickle.loads(pickle.dumps(T.RandomTimeReversal(0.5, seed=1)))  # DataLoader workers
    assert fields(tf(r)) in (fields(r), fields(T.TimeReversal()(r)))


# -- arguments, keys, plain arrays ----------------------------------------------------------------
@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: T.SpatialJitter(var_x=-1.0), "var_x"),
        (lambda: T.SpatialJitter(var_y=float("nan")), "var_y"),
        (lambda: T.SpatialJitter(1.0, 1.0, sigma_xy=1.2), "sigma_xy"),
        (lambda: T.SpatialJitter(4.0, 1.0, sigma_xy=-2.01), "sigma_xy"),
        (lambda: T.SpatialJitter(sigma_xy="0"), "sigma_xy"),
        (lambda: T.SpatialJitter(outliers="clip"), "outliers"),
        (lambda: T.UniformNoise(-1), "n"),
        (lambda: T.UniformNoise(2.5), "n"),
        (lambda: T.UniformNoise((5, 2)), "n range"),
        (lambda: T.UniformNoise((1, 2, 3)), "n range"),
        (lambda: T.UniformNoise(True), "n"),
        (lambda: T.CropTime(10, 5), "min must be <= max"),
        (lambda: T.CropTime(min=float("inf")), "min"),
        (lambda: T.CropTime(max="9"), "max"),
        (lambda: T.TimeReversal(flip_polarities="yes"), "flip_polarities"),
        (lambda: T.RandomTimeReversal(p=1.5), "p"),
        (lambda: T.RandomTimeReversal(flip_polarities=1), "flip_polarities"),
        (lambda: T.RandomFlipPolarity(p=-0.1), "p"),
        (lambda: T.RandomFlipPolarity(per_event="False"), "per_event"),
        (lambda: T.Decimation(0), "n"),
        (lambda: T.Decimation(2.0), "n"),
        (lambda: T.Decimation(2, per_polarity=None), "per_polarity"),
        (lambda: T.DropArea(1.2), "area_ratio"),
        (lambda: T.DropArea((0.6, 0.2)), "area_ratio range"),
        (lambda: T.DropArea((0.1, 2.0)), r"area_ratio\[1\]"),
        (lambda: T.DropArea(None), "area_ratio"),
    ],
)
def test_bad_arguments_are_named(make, name):
    with pytest.raises(ConfigurationError, match=name):
        make()


def test_keys_random_flags_and_plain_arrays():
    r = rec([0, 5, 9], [0, 1, 2], [0, 1, 2], [0, 1, 1])
    keys = [
        T.SpatialJitter(np.float32(2.0), 1, 0.5, "clamp").cache_key(),
        T.UniformNoise((np.int64(1), 3)).cache_key(), T.CropTime(np.int64(1), 9).cache_key(),
        T.TimeAlignment().cache_key(), T.TimeReversal(np.False_).cache_key(),
        T.RandomTimeReversal(0.5).cache_key(), T.RandomFlipPolarity(0.5, True).cache_key(),
        T.Decimation(np.int64(3)).cache_key(), T.DropArea((0.1, 0.2)).cache_key(),
    ]  # fmt: skip
    assert [k["name"] for k in keys] == [
        "SpatialJitter", "UniformNoise", "CropTime", "TimeAlignment", "TimeReversal",
        "RandomTimeReversal", "RandomFlipPolarity", "Decimation", "DropArea",
    ]  # fmt: skip
    assert json.loads(json.dumps(keys))[0] == {"name": "SpatialJitter", "var_x": 2.0,
        "var_y": 1.0, "sigma_xy": 0.5, "outliers": "clamp"}  # fmt: skip
    assert keys[7] == {"name": "Decimation", "n": 3, "per_polarity": False}
    assert T.Decimation(3).cache_key() != T.Decimation(3, per_polarity=True).cache_key()
    assert T.CropTime(0, 10).cache_key() != T.CropTime(0, 11).cache_key()
    deterministic = [T.CropTime(0, 1), T.TimeAlignment(), T.TimeReversal(), T.Decimation(2)]
    assert not any(t.random for t in deterministic)
    assert not T.Compose(deterministic).random and T.Compose([*deterministic, T.DropArea()]).random
    # plain arrays work where no sensor size is needed, and are refused where it is
    assert fields(T.CropTime(1, 9)(r.events)) == [(5, 1, 1, 1), (9, 2, 2, 1)]
    assert fields(T.TimeReversal()(r.events)) == fields(T.TimeReversal()(r))
    for tf in (T.SpatialJitter(), T.UniformNoise(3), T.DropArea()):
        with pytest.raises(ConfigurationError, match="needs the sensor size"):
            tf(r.events)
    assert "Decimation(n=3, per_polarity=False)" in repr(T.Decimation(3))


def test_import_paths_and_a_fresh_interpreter():
    from spikeflow.data import transforms_extra

    for name in transforms_extra.__all__:
        assert getattr(T, name) is getattr(transforms_extra, name) and name in T.__all__
    code = ("from spikeflow.data.transforms_extra import CropTime\n"
            "from spikeflow.data.event_downsampling import EventDownsampling\n"
            "from spikeflow.data.transforms import SpatialJitter, DropArea\n"
            "print(CropTime(0, 1), EventDownsampling(2, 10), SpatialJitter(),"
            " DropArea())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_sorted_input_is_not_required_except_where_documented():
    r = rec([5, 1, 3], [0, 1, 2], [0, 0, 0])
    for tf in (T.CropTime(0, 4), T.Decimation(1), T.TimeAlignment(), T.TimeReversal(),
               T.SpatialJitter(seed=0), T.DropArea(seed=0),
               T.RandomFlipPolarity(seed=0)):  # fmt: skip
        tf(r)  # no DataFormatError
    noisy = T.UniformNoise(5, seed=0)(r)
    assert np.all(np.diff(noisy.events["t"]) >= 0)  # the result is sorted
    with pytest.raises(DataFormatError, match="not sorted"):
        T.EventDownsampling(2, 10)(r)


def test_composed_with_frames_on_a_real_recording():
    r = nmnist_recordings()[0]
    pipeline = T.Compose([T.TimeAlignment(), T.CropTime(max=100_000), T.Decimation(2),
                          T.SpatialJitter(0.5, 0.5, seed=0), T.DropArea(0.2, seed=0)])  # fmt: skip
    out = pipeline(r)
    assert out.sensor_size == (34, 34, 2) and out.events["t"].min() >= 0
    assert out.events["t"].max() <= 100_000 and 0 < len(out) < len(r) / 2
    assert to_frames(out, 4).sum() == len(out)


def test_tonic_event_arrays_go_in_as_recordings():
    r = nmnist_recordings()[0]
    theirs = EventRecording(to_tonic(r), (34, 34, 2))  # Tonic's int64 x, y, t, p layout
    for make in (lambda: T.CropTime(0, 50_000), lambda: T.Decimation(2), T.TimeReversal,
                 T.TimeAlignment, lambda: T.SpatialJitter(seed=0),
                 lambda: T.UniformNoise(9, seed=0), lambda: T.DropArea(seed=0),
                 lambda: T.RandomFlipPolarity(0.5, per_event=True, seed=0)):  # fmt: skip
        out = make()(theirs)
        assert out.events.dtype == TONIC_DTYPE and fields(out) == fields(make()(r)), make()


def _calls(cell: str) -> list[tuple[str, list[str]]]:
    """``Name(arg, key=value)`` in a table cell: the names and their argument names."""
    found = re.findall(r"`(\w+)\(([^)]*)\)`", cell)
    return [(name, [a.split("=")[0].strip() for a in args.split(",") if a.strip()])
            for name, args in found]  # fmt: skip


def test_migration_page_maps_every_tonic_transform():
    """docs/migration.md "From Tonic": each row's Tonic call exists in tonic.transforms
    with those arguments and its spikeflow call in spikeflow.data.transforms; every
    tonic.transforms class is on the page. The rows of Tonic's slicers and SlicedDataset
    (tonic.slicers, tonic) and its cached datasets map to spikeflow.data's, and every one of
    them is there."""
    tt = tonic_transforms()
    import tonic
    import tonic.slicers

    from spikeflow import data
    from spikeflow.data import slicing

    both = {"SlicedDataset", "DiskCachedDataset", "MemoryCachedDataset"}
    datasets = {*both, "Aug_DiskCachedDataset"}  # Tonic's names
    ours_slicing = {*both, "AugDiskCachedDataset", *slicing.__all__} - {"Slicer"}
    theirs_slicing = {n for n in dir(tonic.slicers) if n.startswith("Slice") and n != "Slicer"}
    text = (Path(__file__).resolve().parents[1] / "docs" / "migration.md").read_text()
    section = text.split("## From Tonic")[1]
    table, rest = section.split("Not in spikeflow:")
    mapped, sliced, ours_sliced = set(), set(), set()
    for row in (line for line in table.splitlines() if line.startswith("| `")):
        tonic_cell, ours_cell = row.split(" | ")[:2]
        for name, args in _calls(tonic_cell):
            owner = tt if hasattr(tt, name) else tonic if name in datasets else tonic.slicers
            params = inspect.signature(getattr(owner, name)).parameters
            assert set(args) <= set(params), (name, args)
            (mapped if owner is tt else sliced).add(name)
        assert _calls(ours_cell), row
        for name, args in _calls(ours_cell):
            assert name in T.__all__ or name in ours_slicing, name
            if name not in T.__all__:
                ours_sliced.add(name)
            params = inspect.signature(getattr(T if name in T.__all__ else data, name)).parameters
            assert set(args) - {"..."} <= set(params), (name, args)
    assert sliced == theirs_slicing | datasets
    assert ours_sliced == ours_slicing
    classes = {n for n in dir(tt) if inspect.isclass(getattr(tt, n))
               and getattr(tt, n).__module__.startswith("tonic")}  # fmt: skip
    listed = classes & set(re.findall(r"`(\w+)`", rest)) - mapped
    assert mapped <= classes and mapped | listed == classes, sorted(classes - mapped - listed)
    assert listed == {"NumpyAsType", "ToOneHotEncoding", "ToFrame",
                      "ToImage", "ToSparseTensor", "ToTimesurface", "ToAveragedTimesurface",
                      "ToVoxelGrid", "ToBinaRep"}  # fmt: skip
    assert {"SpatialJitter", "UniformNoise", "CropTime", "Decimation", "RandomTimeReversal",
            "RandomFlipPolarity", "DropEventByArea", "TimeAlignment",
            "EventDownsampling", "EventDrop"} <= mapped  # fmt: skip
