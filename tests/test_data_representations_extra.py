"""Count images, Bina-Rep, HATS and sparse frames: hand-computed examples, an independent
loop for HATS, edge cases and errors, and equality with Tonic 1.7 (synthetic events and
the real N-MNIST files; each Tonic test skips when Tonic or the data is absent).

Tonic equality: ``ToImage`` and the Bina-Rep packing are equal to the bit. HATS is equal
to float32 rounding: Tonic computes in float32 (timestamps, ``exp`` and the sums),
spikeflow in float64 rounded once, so values differ by a few float32 ulps (asserted
within ``rtol = 1e-5``; the largest difference seen on N-MNIST is below 1e-6). Frames
cut by Tonic's ``n_time_bins`` / ``n_event_bins`` drop the events of the stream's end
(docs/data.md); where that matters the tests state and check the exact difference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_shared_data
from spikeflow.data import (
    NMNIST,
    EventRecording,
    ToAveragedTimeSurface,
    ToBinaRep,
    ToImage,
    ToSparseTensor,
    bina_rep,
    make_events,
    sparse_collate,
    to_averaged_time_surfaces,
    to_bina_rep,
    to_frames,
    to_frames_by_duration,
    to_image,
    to_sparse_frames,
)
from spikeflow.data import representations_extra as extra
from spikeflow.data.io import read_atis_bin
from spikeflow.data.representations import frame_representation
from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError

SENSOR = (3, 2, 2)  # W, H, P
TONIC_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def rec(t, x, y, p, sensor=SENSOR, source="mem.bin"):
    return EventRecording(
        make_events(np.array(t), np.array(x), np.array(y), np.array(p)), sensor, source
    )


# Five events on the 3x2 sensor, used by every hand example below.
#   i   t   x  y  p
#   0   0   0  0  1
#   1  10   1  0  1
#   2  20   1  1  0
#   3  30   2  1  1
#   4  40   1  1  1
FIVE = rec([0, 10, 20, 30, 40], [0, 1, 1, 2, 1], [0, 0, 1, 1, 1], [1, 1, 0, 1, 1])
EMPTY = rec([], [], [], [])


def tonic():
    return pytest.importorskip("tonic.transforms", reason="Tonic is not installed")


def as_tonic(r: EventRecording) -> np.ndarray:
    """The events in the int64 layout ``tonic.datasets.NMNIST`` uses."""
    out = np.zeros(len(r), dtype=TONIC_DTYPE)
    for k in "txyp":
        out[k] = r.events[k]
    return out


def random_rec(n, sensor=(34, 34, 2), span=300_000, seed=0):
    rng = np.random.default_rng(seed)
    W, H, P = sensor
    return EventRecording(
        make_events(np.sort(rng.integers(0, span, n)), rng.integers(0, W, n),
                    rng.integers(0, H, n), rng.integers(0, P, n)), sensor)  # fmt: skip


def nmnist_files(count):
    root = require_shared_data("nmnist-small")
    files = sorted(root.glob("Train/*/*.bin"))
    return files[:: max(1, len(files) // count)][:count]


# -- ToImage -----------------------------------------------------------------------------
def test_image_by_hand():
    got = to_image(FIVE)
    want = np.zeros((2, 2, 3), dtype=np.int32)
    want[1, 0, 0] = 1  # event 0
    want[1, 0, 1] = 1  # event 1
    want[0, 1, 1] = 1  # event 2 (p = 0)
    want[1, 1, 2] = 1  # event 3
    want[1, 1, 1] = 1  # event 4
    assert got.dtype == np.int32 and got.shape == (2, 2, 3)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ToImage()(FIVE), want)
    np.testing.assert_array_equal(got, to_frames(FIVE, 1)[0])


def test_image_edges():
    assert to_image(EMPTY).shape == (2, 2, 3) and not to_image(EMPTY).any()
    one = to_image(rec([7], [2], [1], [0]))
    assert one.sum() == 1 and one[0, 1, 2] == 1
    # unsorted events are fine (no time order involved), repeated pixels add up
    r = rec([5, 1, 3], [0, 0, 0], [0, 0, 0], [1, 1, 1])
    assert to_image(r)[1, 0, 0] == 3
    # one channel: every polarity goes to it
    merged = to_image(EventRecording(FIVE.events, (3, 2, 1)))
    np.testing.assert_array_equal(merged[0], to_image(FIVE).sum(axis=0))
    # a plain array with sensor_size
    np.testing.assert_array_equal(to_image(FIVE.events, sensor_size=SENSOR), to_image(FIVE))
    with pytest.raises(ConfigurationError, match="sensor_size"):
        to_image(FIVE.events)
    with pytest.raises(DataFormatError, match=r"mem\.bin.*event 1 at \(x=3, y=0\) is outside"):
        to_image(rec([0, 1], [0, 3], [0, 0], [0, 0]))


def test_image_equals_tonic():
    tt = tonic()
    for r in (FIVE, random_rec(5_000), random_rec(300, sensor=(7, 5, 2), seed=3)):
        want = tt.ToImage(sensor_size=r.sensor_size)(as_tonic(r))
        np.testing.assert_array_equal(to_image(r), want)


def test_image_equals_tonic_on_nmnist():
    tt = tonic()
    to = tt.ToImage(sensor_size=(34, 34, 2))
    for f in nmnist_files(20):
        r = read_atis_bin(f)
        np.testing.assert_array_equal(to_image(r), to(as_tonic(r)), err_msg=str(f))


# -- Bina-Rep -----------------------------------------------------------------------------
def test_bina_rep_packing_by_hand():
    # T = 2 frames of N = 3 bits from 6 count frames of one pixel: counts 0, 2, 1 | 5, 0, 0
    # -> bits 011 = 3 and 100 = 4, over 2^3 - 1 = 7.
    frames = np.array([0, 2, 1, 5, 0, 0]).reshape(6, 1, 1, 1)
    got = bina_rep(frames, 3)
    assert got.dtype == np.float32 and got.shape == (2, 1, 1, 1)
    assert got.ravel().tolist() == [np.float32(3) / np.float32(7), np.float32(4) / np.float32(7)]
    # one bit: the binary frames themselves
    np.testing.assert_array_equal(bina_rep(frames, 1).ravel(), [0, 1, 1, 1, 0, 0])


def test_to_bina_rep_by_hand():
    # FIVE, T = 2, N = 2: 4 segments by time, Δt = ⌊40/4⌋ = 10: [0,10) [10,20) [20,30)
    # [30,40]: events 0 | 1 | 2 | 3, 4. Frame 0 packs segments 0 (bit 1 = 2) and 1 (bit 0 = 1);
    # frame 1 packs segments 2 and 3. Values over 2^2 - 1 = 3.
    got = to_bina_rep(FIVE, 2, 2)
    want = np.zeros((2, 2, 2, 3), dtype=np.float32)
    want[0, 1, 0, 0] = 2 / 3  # event 0, segment 0
    want[0, 1, 0, 1] = 1 / 3  # event 1, segment 1
    want[1, 0, 1, 1] = 2 / 3  # event 2, segment 2
    want[1, 1, 1, 2] = 1 / 3  # event 3, segment 3
    want[1, 1, 1, 1] = 1 / 3  # event 4, segment 3
    np.testing.assert_allclose(got, want, rtol=1e-7)
    np.testing.assert_array_equal(ToBinaRep(2, 2)(FIVE), got)
    # by number: Δ = ⌊5/4⌋ = 1: events 0 | 1 | 2 | 3, 4: the same segments here
    np.testing.assert_array_equal(to_bina_rep(FIVE, 2, 2, "number"), got)
    # two events of one pixel in one segment still set one bit
    twice = rec([0, 1, 10], [0, 0, 1], [0, 0, 0], [1, 1, 1])
    assert to_bina_rep(twice, 1, 2)[0, 1, 0, 0] == np.float32(2) / np.float32(3)


@pytest.mark.parametrize("split_by", ["number", "time", lambda ev, T: ev["x"].astype(np.int64) % T])
@pytest.mark.parametrize("T, N", [(1, 1), (3, 4), (2, 8), (1, 24)])
def test_to_bina_rep_is_bina_rep_of_frames(split_by, T, N):
    r = random_rec(3_000, sensor=(9, 7, 2), seed=T * N)
    want = bina_rep(to_frames(r, T * N, split_by), N)
    np.testing.assert_array_equal(to_bina_rep(r, T, N, split_by), want)


def test_bina_rep_edges():
    assert not to_bina_rep(EMPTY, 3, 4).any() and to_bina_rep(EMPTY, 3, 4).shape == (3, 2, 2, 3)
    # one event: Δt = 0, every event lands in the last segment: the lowest bit of frame T-1
    one = to_bina_rep(rec([5], [1], [0], [0]), 2, 3)
    assert one.sum() == np.float32(1) / np.float32(7) and one[1, 0, 0, 1] == one.sum()
    full = bina_rep(np.ones((24, 1)), 24)
    assert full.ravel().tolist() == [1.0]


def test_bina_rep_errors_name_the_argument():
    for bad in (0, 25, 2.0, True, "8", None):
        with pytest.raises(ConfigurationError, match="n_bits"):
            ToBinaRep(2, bad)
        with pytest.raises(ConfigurationError, match="n_bits"):
            bina_rep(np.zeros((4, 1)), bad)
    with pytest.raises(ConfigurationError, match="frames_number"):
        to_bina_rep(FIVE, 0, 2)
    with pytest.raises(ConfigurationError, match="split_by"):
        ToBinaRep(2, 2, "bogus")
    with pytest.raises(ConfigurationError, match="split_by"):
        to_bina_rep(FIVE, 2, 2, "bogus")
    with pytest.raises(ShapeError, match=r"multiple of n_bits=3.*\(4, 1\)"):
        bina_rep(np.zeros((4, 1)), 3)
    with pytest.raises(DataFormatError, match="not sorted"):
        to_bina_rep(rec([0, 5, 4], [0, 0, 0], [0, 0, 0], [0, 0, 0]), 1, 2)


def test_bina_rep_equals_tonic_on_the_same_frames():
    tt = tonic()
    for T, N in ((1, 2), (3, 8), (2, 24), (4, 5)):
        frames = to_frames(random_rec(4_000, seed=N), T * N, "time")
        want = tt.ToBinaRep(n_frames=T, n_bits=N)(frames)
        got = bina_rep(frames, N)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def _tonic_bina_rep_vs_ours(tt, r: EventRecording, T: int, N: int) -> None:
    """Tonic's recipe: ToFrame(n_time_bins=T·N) then ToBinaRep. Its last time bin ends at
    t_first + T·N·Δt, excluded, so it drops the last event(s) (docs/data.md): every
    frame but the last is equal; in the last one spikeflow may have the lowest bit set
    where Tonic has not, i.e. exactly 1/(2^N - 1) more, only at the pixels of the
    dropped events."""
    ev = as_tonic(r)
    want = tt.ToBinaRep(n_frames=T, n_bits=N)(
        tt.ToFrame(sensor_size=r.sensor_size, n_time_bins=T * N)(ev)
    )
    got = to_bina_rep(r, T, N, "time")
    np.testing.assert_array_equal(got[:-1], want[:-1])
    t = r.events["t"].astype(np.int64)
    dropped = r.events[t >= t[0] + T * N * ((t[-1] - t[0]) // (T * N))]
    extra_bits = np.zeros(got.shape[1:], dtype=bool)
    extra_bits[(dropped["p"] != 0).astype(int), dropped["y"], dropped["x"]] = True
    diff = got[-1].astype(np.float64) - want[-1].astype(np.float64)
    lsb = 1 / (2**N - 1)
    assert np.all(np.isclose(diff, 0) | (extra_bits & np.isclose(diff, lsb, rtol=1e-6)))


def test_bina_rep_pipeline_equals_tonic():
    tt = tonic()
    for T, N in ((2, 4), (3, 8)):
        _tonic_bina_rep_vs_ours(tt, random_rec(5_000, seed=T), T, N)


def test_bina_rep_equals_tonic_on_nmnist():
    tt = tonic()
    for f in nmnist_files(20):
        r = read_atis_bin(f)
        frames = to_frames(r, 3 * 8, "time")
        np.testing.assert_array_equal(
            bina_rep(frames, 8), tt.ToBinaRep(n_frames=3, n_bits=8)(frames)
        )
        _tonic_bina_rep_vs_ours(tt, r, 3, 8)


# -- HATS ---------------------------------------------------------------------------------
def test_hats_by_hand():
    # One cell (cell_size 3 covers the 3x2 sensor), S = 3 (ρ = 1), time_window 25, tau 10.
    # Channel 1 holds events 0, 1, 3, 4 (in that order); channel 0 only event 2.
    #   event 1 (1,0) t=10: event 0 at offset (dx, dy) = (-1, 0), age 10 -> e^-1 at [1, 0]
    #   event 3 (2,1) t=30: event 0 at dx = -2 (> ρ); event 1 at (-1, -1), age 20 -> e^-2
    #                       at [0, 0]
    #   event 4 (1,1) t=40: event 0 age 40 > 25; event 1 age 30 > 25; event 3 at (1, 0),
    #                       age 10 -> e^-1 at [1, 2]
    # Centre: 1 per event; everything divided by the 4 events of channel 1.
    got = to_averaged_time_surfaces(FIVE, cell_size=3, surface_size=3, time_window=25, tau=10)
    assert got.dtype == np.float32 and got.shape == (1, 2, 3, 3)
    want = np.zeros((1, 2, 3, 3))
    want[0, 0, 1, 1] = 1.0
    want[0, 1, 1, 1] = 4 / 4
    want[0, 1, 1, 0] = math.exp(-1) / 4
    want[0, 1, 0, 0] = math.exp(-2) / 4
    want[0, 1, 1, 2] = math.exp(-1) / 4
    np.testing.assert_allclose(got, want, rtol=1e-7)
    # The linear kernel 1 - age/(3 tau): age 10 -> 2/3, age 20 -> 1/3.
    lin = to_averaged_time_surfaces(FIVE, 3, 3, 25, 10, "lin")
    want[0, 1, 1, 0], want[0, 1, 0, 0], want[0, 1, 1, 2] = 2 / 12, 1 / 12, 2 / 12
    np.testing.assert_allclose(lin, want, rtol=1e-7)
    rep = ToAveragedTimeSurface(3, 3, 25, 10, "lin")
    np.testing.assert_array_equal(rep(FIVE), lin)


def test_hats_cells_window_edges_and_ties():
    # A 4x2 sensor in cells of 2: two cells side by side (cell 0: x 0-1, cell 1: x 2-3).
    # Event at x = 2 (cell 1) does not see its neighbour at x = 1 (cell 0).
    r = rec([0, 5, 5, 15], [1, 2, 2, 2], [0, 0, 1, 1], [1, 1, 1, 1], sensor=(4, 2, 2))
    got = to_averaged_time_surfaces(r, cell_size=2, surface_size=1, time_window=10, tau=5)
    # surface_size 1: only the same pixel counts. Cell 1, channel 1: events 1 (2,0), 2 (2,1),
    # 3 (2,1): event 3 sees event 2 (same pixel, age 10 = time_window: included).
    assert got.shape == (2, 2, 1, 1)
    assert got[0, 1, 0, 0] == 1.0
    assert got[1, 1, 0, 0] == pytest.approx((3 + math.exp(-2)) / 3)
    # a fractional window 9.5 excludes age 10
    got = to_averaged_time_surfaces(r, 2, 1, 9.5, 5)
    assert got[1, 1, 0, 0] == 1.0
    # same timestamp: the earlier event in the recording's order counts (age 0 -> weight 1),
    # the later one does not
    tie = rec([3, 3], [0, 0], [0, 0], [0, 0])
    got = to_averaged_time_surfaces(tie, 3, 3, 0, 10)
    assert got[0, 0, 1, 1] == pytest.approx((2 + 1) / 2)


def test_hats_edges():
    empty = to_averaged_time_surfaces(EMPTY, 2, 1)
    assert empty.shape == (2, 2, 1, 1) and not empty.any()  # ⌈3/2⌉ x ⌈2/2⌉ = 2 cells
    one = to_averaged_time_surfaces(rec([9], [2], [1], [0]), 2, 1)
    assert one[1, 0, 0, 0] == 1 and one.sum() == 1
    # default parameters (Tonic's): cells of 10, S = 5
    assert to_averaged_time_surfaces(random_rec(100)).shape == (16, 2, 5, 5)


def test_hats_errors_name_the_argument():
    for kwargs, name in [
        ({"cell_size": 0}, "cell_size"), ({"cell_size": 2.5}, "cell_size"),
        ({"surface_size": 4}, "surface_size"), ({"surface_size": 11}, "surface_size"),
        ({"surface_size": True}, "surface_size"), ({"time_window": -1}, "time_window"),
        ({"time_window": math.nan}, "time_window"), ({"time_window": "1"}, "time_window"),
        ({"tau": 0}, "tau"), ({"tau": math.inf}, "tau"), ({"decay": "linear"}, "decay"),
    ]:  # fmt: skip
        with pytest.raises(ConfigurationError, match=name):
            ToAveragedTimeSurface(**kwargs)
        with pytest.raises(ConfigurationError, match=name):
            to_averaged_time_surfaces(FIVE, **kwargs)
    with pytest.raises(DataFormatError, match="not sorted"):
        to_averaged_time_surfaces(rec([0, 5, 4], [0, 0, 0], [0, 0, 0], [0, 0, 0]))


def hats_loop(t, x, y, c, sensor, cell, S, window, tau, decay):
    """HATS as the paper states it, one event at a time, in float64."""
    W, H, P = sensor
    across = -(-W // cell)
    cells = across * -(-H // cell)
    rho = S // 2
    hist = np.zeros((cells, P, S, S))
    count = np.zeros((cells, P))
    memory: dict = {}
    for i in range(len(t)):
        k = (y[i] // cell) * across + x[i] // cell
        surface = np.zeros((S, S))
        surface[rho, rho] = 1
        for tj, xj, yj in memory.get((k, c[i]), []):
            dx, dy = xj - x[i], yj - y[i]
            if abs(dx) <= rho and abs(dy) <= rho and t[i] - tj <= window:
                age = t[i] - tj
                surface[dy + rho, dx + rho] += (
                    math.exp(-age / tau) if decay == "exp" else 1 - age / (3 * tau)
                )
        memory.setdefault((k, c[i]), []).append((t[i], x[i], y[i]))
        hist[k, c[i]] += surface
        count[k, c[i]] += 1
    return hist / np.maximum(count, 1)[:, :, None, None]


hats_events = st.integers(0, 80).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 60), min_size=n, max_size=n).map(sorted),
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(
    ev=hats_events,
    cell=st.integers(1, 4),
    half=st.integers(0, 2),
    window=st.sampled_from([0, 3, 7.5, 30, 1e9]),
    decay=st.sampled_from(["exp", "lin"]),
    chunk=st.sampled_from([1, 5, 1 << 21]),
)
def test_hats_equals_an_independent_loop(ev, cell, half, window, decay, chunk):
    S = min(2 * half + 1, cell if cell % 2 else cell - 1)
    t, x, y, c = (np.array(a, dtype=np.int64) for a in ev)
    sensor = (7, 5, 2)
    want = hats_loop(t, x, y, c, sensor, cell, S, window, 4.0, decay)
    old = extra._PAIR_CHUNK
    extra._PAIR_CHUNK = chunk  # tiny chunks: events whose pairs span several chunks
    try:
        got = to_averaged_time_surfaces(rec(t, x, y, c, sensor), cell, S, window, 4.0, decay)
    finally:
        extra._PAIR_CHUNK = old
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6, atol=1e-7)


def test_hats_equals_tonic():
    tt = tonic()
    for r, kw in [
        (FIVE, dict(cell_size=3, surface_size=3, time_window=25, tau=10)),
        (random_rec(3_000, span=100_000), dict(cell_size=10, surface_size=5, time_window=3_000,
                                              tau=1_000)),
        (random_rec(2_000, sensor=(13, 9, 2), span=20_000, seed=1),
         dict(cell_size=4, surface_size=3, time_window=500, tau=200)),
    ]:  # fmt: skip
        for decay in ("exp", "lin"):
            want = tt.ToAveragedTimesurface(sensor_size=r.sensor_size, decay=decay, **kw)(
                as_tonic(r)
            )
            got = to_averaged_time_surfaces(r, decay=decay, **kw)
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_hats_equals_tonic_on_nmnist():
    tt = tonic()
    for kw in (dict(), dict(time_window=10_000, tau=5_000)):  # Tonic's defaults, a wider window
        to = tt.ToAveragedTimesurface(sensor_size=(34, 34, 2), **kw)
        for f in nmnist_files(3):
            r = read_atis_bin(f)
            got, want = to_averaged_time_surfaces(r, **kw), to(as_tonic(r))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(f))


# -- sparse frames ------------------------------------------------------------------------
def test_sparse_frames_by_hand():
    # FIVE, T = 2 by number: Δ = ⌊5/2⌋ = 2: events 0, 1 | 2, 3, 4 (the last takes the rest)
    got = to_sparse_frames(FIVE, 2)
    assert got.layout == torch.sparse_coo and got.is_coalesced() and got.dtype == torch.float32
    assert got.shape == (2, 2, 2, 3)
    assert got.indices().T.tolist() == [[0, 1, 0, 0], [0, 1, 0, 1],  # (t, c, y, x), sorted
                                        [1, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 2]]  # fmt: skip
    assert got.values().tolist() == [1, 1, 1, 1, 1]
    twice = to_sparse_frames(rec([0, 1, 2], [0, 0, 2], [0, 0, 1], [1, 1, 0]), 1, dtype=torch.int32)
    assert twice.values().tolist() == [1, 2] and twice.dtype == torch.int32


@pytest.mark.parametrize("sensor", [(9, 7, 2), (300, 200, 2)])  # dense count / sorted path
@pytest.mark.parametrize("split_by", ["number", "time", lambda ev, T: ev["x"].astype(np.int64) % T])
def test_sparse_frames_equal_dense_frames(sensor, split_by):
    r = random_rec(2_000, sensor=sensor, seed=sensor[0])
    for T in (1, 3, 10):
        got = to_sparse_frames(r, T, split_by, dtype=torch.int32)
        assert got.is_coalesced()
        assert torch.equal(got.to_dense(), torch.from_numpy(to_frames(r, T, split_by)))
    by_time = to_sparse_frames(r, duration=30_000, dtype=torch.int32)
    assert torch.equal(by_time.to_dense(), torch.from_numpy(to_frames_by_duration(r, 30_000)))
    # the coalesced order is the sorted order of the flat index
    flat = np.ravel_multi_index(got.indices().numpy(), tuple(got.shape))
    assert (np.diff(flat) > 0).all()


def test_sparse_frames_edges_and_errors():
    e = to_sparse_frames(EMPTY, 4)
    assert e.shape == (4, 2, 2, 3) and e._nnz() == 0 and e.is_coalesced()
    assert to_sparse_frames(EMPTY, duration=10).shape == (0, 2, 2, 3)
    one = to_sparse_frames(rec([3], [2], [1], [1]), 3).to_dense()
    assert one.sum() == 1 and one[2, 1, 1, 2] == 1  # "number" with N < T: the last frame
    with pytest.raises(ConfigurationError, match=r"exactly one of frames_number.*duration"):
        to_sparse_frames(FIVE)
    with pytest.raises(ConfigurationError, match=r"exactly one of frames_number.*duration"):
        ToSparseTensor(4, duration=10)
    with pytest.raises(ConfigurationError, match="frames_number"):
        ToSparseTensor(0)
    with pytest.raises(ConfigurationError, match="duration"):
        to_sparse_frames(FIVE, duration=0)
    with pytest.raises(ConfigurationError, match="split_by only applies"):
        ToSparseTensor(duration=10, split_by="time")
    with pytest.raises(ConfigurationError, match="split_by"):
        to_sparse_frames(FIVE, 2, "bogus")
    with pytest.raises(ConfigurationError, match="dtype"):
        ToSparseTensor(2, dtype="float32")
    with pytest.raises(ConfigurationError, match="sparse_collate"):
        frame_representation(custom_integrate_function=ToSparseTensor(2))


def test_sparse_frames_equal_tonic():
    tt = tonic()
    for r in (FIVE, random_rec(4_000, seed=2)):
        # one frame of every event: equal, indices and values
        want = tt.ToSparseTensor(sensor_size=r.sensor_size, event_count=len(r))(as_tonic(r))
        got = to_sparse_frames(r, 1, dtype=want.dtype)
        assert torch.equal(got.indices(), want.coalesce().indices())
        assert torch.equal(got.values(), want.coalesce().values())
        # n_event_bins = T: frames 0..T-2 equal; Tonic drops the N mod T left-over events
        T = 4
        want = tt.ToSparseTensor(sensor_size=r.sensor_size, n_event_bins=T)(as_tonic(r))
        got = to_sparse_frames(r, T, dtype=torch.int64).to_dense()
        want = want.to_dense().long()
        assert torch.equal(got[:-1], want[:-1])
        tail = r.events[T * (len(r) // T) :]
        extra_counts = torch.zeros(got.shape[1:], dtype=torch.int64)
        np.add.at(extra_counts.numpy(), ((tail["p"] != 0).astype(int), tail["y"], tail["x"]), 1)
        assert torch.equal(got[-1], want[-1] + extra_counts)


def test_sparse_collate_pads_and_masks():
    a = to_sparse_frames(FIVE, 3)
    b = to_sparse_frames(rec([0, 20], [0, 2], [0, 1], [0, 1]), duration=10)  # K = 3
    c = to_sparse_frames(rec([4], [1], [1], [1]), duration=10)  # K = 1
    frames, labels, mask = sparse_collate([(a, 1), (b, 7), (c, 0)])
    assert frames.layout == torch.sparse_coo and frames.is_coalesced()
    assert frames.shape == (3, 3, 2, 2, 3) and labels.tolist() == [1, 7, 0]
    assert mask.tolist() == [[True] * 3, [True] * 3, [True, False, False]]
    dense = frames.to_dense()
    for i, s in enumerate((a, b, c)):
        assert torch.equal(dense[i, : s.shape[0]], s.to_dense())
    assert not dense[2, 1:].any()
    tm, _, tmask = sparse_collate([(a, 1), (c, 0)], time_major=True)
    assert tm.shape == (3, 2, 2, 2, 3) and tm.is_coalesced() and tmask.shape == (3, 2)
    assert torch.equal(tm.to_dense()[:1, 1], c.to_dense()) and not tm.to_dense()[1:, 1].any()
    only, m = sparse_collate([a, b])
    assert only.shape == (2, 3, 2, 2, 3) and m.all()
    with pytest.raises(ShapeError, match="sample 1 must be a sparse COO"):
        sparse_collate([a, a.to_dense()])
    with pytest.raises(ShapeError, match="sample 1 has shape"):
        sparse_collate([a, to_sparse_frames(EventRecording(FIVE.events, (3, 2, 1)), 3)])
    with pytest.raises(ConfigurationError, match="empty batch"):
        sparse_collate([])


# -- representation objects, keys, datasets -----------------------------------------------
def test_keys_are_distinct_json_and_take_numpy_numbers():
    keys = [
        ToImage().cache_key(), ToBinaRep(2).cache_key(), ToBinaRep(3).cache_key(),
        ToBinaRep(2, 4).cache_key(), ToBinaRep(2, split_by="number").cache_key(),
        ToAveragedTimeSurface().cache_key(), ToAveragedTimeSurface(cell_size=5).cache_key(),
        ToAveragedTimeSurface(surface_size=3).cache_key(),
        ToAveragedTimeSurface(time_window=2000).cache_key(),
        ToAveragedTimeSurface(tau=50).cache_key(), ToAveragedTimeSurface(decay="lin").cache_key(),
        ToSparseTensor(2).cache_key(), ToSparseTensor(duration=2).cache_key(),
        ToSparseTensor(2, dtype=torch.int32).cache_key(),
    ]  # fmt: skip
    assert len({json.dumps(k, sort_keys=True) for k in keys}) == len(keys)
    assert ToBinaRep(np.int64(2), np.uint8(4)).cache_key() == ToBinaRep(2, 4).cache_key()
    assert (ToAveragedTimeSurface(np.int32(5), np.int64(3), np.float32(100), np.float64(10))
            .cache_key() == ToAveragedTimeSurface(5, 3, 100, 10).cache_key())  # fmt: skip
    assert repr(ToBinaRep(2, 4)) == "ToBinaRep(frames_number=2, n_bits=4, split_by='time')"
    assert "duration=5" in repr(ToSparseTensor(duration=5))


def write_atis(path: Path, t, x, y, p) -> None:
    """N-MNIST's 40-bit format (t < 2**23 µs)."""
    t = np.asarray(t, dtype=np.int64)
    raw = np.zeros((len(t), 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (np.asarray(p) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


@pytest.fixture
def tiny_nmnist(tmp_path):
    rng = np.random.default_rng(0)
    for label in range(10):
        n = int(rng.integers(50, 200))
        write_atis(tmp_path / "Train" / str(label) / "00000.bin",
                   np.sort(rng.integers(0, 300_000, n)), rng.integers(0, 34, n),
                   rng.integers(0, 34, n), rng.integers(0, 2, n))  # fmt: skip
    return tmp_path


@pytest.mark.parametrize(
    "rep", [ToImage(), ToBinaRep(2, 4), ToAveragedTimeSurface(time_window=5000, tau=2000)]
)
def test_dataset_caches_the_representation(tiny_nmnist, tmp_path, rep):
    kw = dict(data_type="frame", custom_integrate_function=rep, cache_dir=tmp_path / "cache")
    ds = NMNIST(tiny_nmnist, **kw)
    first = [ds[i][0] for i in range(len(ds))]
    assert ds.preprocess(workers=0, progress=False) == 0  # every entry is already there
    again = NMNIST(tiny_nmnist, **kw)
    for i, x in enumerate(first):
        want = torch.from_numpy(rep(ds.events(i)).astype(np.float32))
        assert torch.equal(x, want) and torch.equal(again[i][0], want)
    assert again._representation(0)[1] is False  # read back from the cache
    assert ds.cache_namespace()["representation"] == rep.cache_key()


def test_event_dataset_with_sparse_frames_and_loader(tiny_nmnist):
    ds = NMNIST(tiny_nmnist, transform=ToSparseTensor(4))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=sparse_collate)
    frames, labels, mask = next(iter(loader))
    assert frames.shape == (3, 4, 2, 34, 34) and labels.tolist() == [0, 1, 2] and mask.all()
    for i in range(3):
        want = torch.from_numpy(to_frames(ds.events(i), 4)).float()
        assert torch.equal(frames.to_dense()[i], want)
