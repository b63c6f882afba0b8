"""EventDownsampling (Ghosh et al. 2023, as Tonic 1.7 defines it): equal to Tonic on the
real N-MNIST files and on generated streams (with Tonic's window rule,
``include_incomplete=False``, and Tonic's times counted from the first event), and equal
to a plain per-window, per-pixel loop written from the docstring in every mode."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from spikeflow.data import EventRecording, make_events, to_frames
from spikeflow.data import transforms as T
from spikeflow.data.event_downsampling import EventDownsampling
from spikeflow.errors import ConfigurationError
from tonic_events import assert_same, fields, nmnist_recordings, rec, to_tonic


def tonic_downsample(r, target, duration, method, threshold, bins):
    tt = pytest.importorskip("tonic.transforms", reason="Tonic is not installed")
    tf = tt.EventDownsampling(sensor_size=r.sensor_size, target_size=target,
                              downsampling_method=method, dt=duration / 1000,
                              noise_threshold=threshold, differentiator_time_bins=bins)  # fmt: skip
    return tf(to_tonic(r))


def loop_downsample(r, target, duration, method="integrator", threshold=1, bins=2,
                    include_incomplete=True):  # fmt: skip
    """The docstring's definition, one window and one pixel at a time, in exact
    fractions."""
    e = r.events
    if len(e) == 0:
        return []
    (W, H, _), (w, h) = r.sensor_size, target
    t0 = int(e["t"][0])
    step = Fraction(duration, bins if method == "differentiator" else 1)
    span = int(e["t"][-1]) - t0
    n = int(span // step) + 1 if include_incomplete else max(int(span // step), 1)
    balance = np.zeros((n, h, w), dtype=np.int64)
    for ev in e:
        k = int((int(ev["t"]) - t0) // step)
        if k < n:
            x, y = int(np.floor(int(ev["x"]) * (w / W))), int(np.floor(int(ev["y"]) * (h / H)))
            balance[k, y, x] += 1 if ev["p"] != 0 else -1
    m = np.zeros((h, w), dtype=np.int64)
    fired = []  # (window, x, y, p)
    for k in range(n):
        m += balance[k]
        on, off = m >= threshold, m <= -threshold
        for p, mask in ((1, on), (0, off)):
            fired += [(k, int(x), int(y), p) for y, x in zip(*np.nonzero(mask))]  # row-major
        m[on | off] = 0
    if method == "integrator":
        return [(t0 + k * duration, x, y, p) for k, x, y, p in fired]
    counts: dict = {}
    for k, x, y, p in fired:
        key = (k // bins, y, x, p)
        counts[key] = counts.get(key, 0) + 1
    last = max((k for k, *_ in counts), default=0)
    out = []
    for j in range(last):
        for y in range(h):
            for x in range(w):
                for p in (0, 1):
                    if counts.get((j + 1, y, x, p), 0) > counts.get((j, y, x, p), 0):
                        out.append((t0 + j * duration, x, y, p))
    return out


CASES = [  # target, duration (µs), method, noise_threshold, differentiator_time_bins
    ((17, 17), 1000, "integrator", 1, 2),
    ((10, 8), 500, "integrator", 2, 2),
    ((34, 34), 2500, "integrator", 3, 2),
    ((5, 5), 1000, "integrator", 5, 2),
    ((17, 17), 1000, "differentiator", 1, 2),
    ((10, 8), 2000, "differentiator", 2, 4),
    ((12, 9), 5000, "differentiator", 3, 5),
    ((34, 34), 2000, "differentiator", 1, 8),
]


@pytest.mark.parametrize("target, duration, method, threshold, bins", CASES)
def test_equals_tonic_on_real_recordings(target, duration, method, threshold, bins):
    for r in nmnist_recordings():
        before = r.events.copy()
        theirs = tonic_downsample(r, target, duration, method, threshold, bins)
        tf = EventDownsampling(target, duration, method, threshold, bins, include_incomplete=False)
        ours = tf(r)
        assert len(ours) > 100 and ours.sensor_size == (*target, 2)
        assert_same(ours, theirs, t_shift=int(r.events["t"][0]))  # Tonic counts from 0
        assert_same(T.Compose([T.TimeAlignment(), tf])(r), theirs)
        np.testing.assert_array_equal(r.events, before)
        # The default integrates the last, partial window too; it changes the events of
        # the last (coarse) windows only: a differentiator event is stamped one window
        # before the rise it reports.
        full = EventDownsampling(target, duration, method, threshold, bins)(r)
        t0, span = int(r.events["t"][0]), int(r.events["t"][-1] - r.events["t"][0])
        step = duration // (bins if method == "differentiator" else 1)
        last = max(span // step, 1) * step // duration  # the window Tonic's rule cuts short
        cut = t0 + (last - (method == "differentiator")) * duration
        head = [f for f in fields(full) if f[0] < cut]
        assert head == [f for f in fields(ours) if f[0] < cut] and len(head) > len(ours) / 2
        assert fields(full) == loop_downsample(r, target, duration, method, threshold, bins)


stream = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 4000), min_size=n, max_size=n).map(sorted),
        st.lists(st.integers(0, 7), min_size=n, max_size=n),
        st.lists(st.integers(0, 5), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
    )
)
SETTINGS = dict(max_examples=80, deadline=None)


@settings(**SETTINGS)
@given(ev=stream, w=st.integers(1, 8), h=st.integers(1, 6),
       duration=st.sampled_from([100, 250, 400, 1000]),
       method=st.sampled_from(["integrator", "differentiator"]), threshold=st.integers(1, 3),
       bins=st.sampled_from([1, 2, 4, 5]))  # fmt: skip
def test_equals_tonic_on_generated_streams(ev, w, h, duration, method, threshold, bins):
    r = rec(*ev, sensor=(8, 6, 2))
    # Tonic asserts that its fine window is shorter than the last timestamp
    assume(method == "integrator" or duration / bins < r.events["t"][-1])
    ours = EventDownsampling((w, h), duration, method, threshold, bins, include_incomplete=False)(r)
    try:
        theirs = tonic_downsample(r, (w, h), duration, method, threshold, bins)
    except (ValueError, IndexError):  # Tonic fails when its integrator emits nothing
        if method == "integrator":
            assert len(ours) == 0
        return
    assert_same(ours, theirs, t_shift=int(r.events["t"][0]))


@settings(**SETTINGS)
@given(ev=stream, w=st.integers(1, 8), h=st.integers(1, 6), duration=st.integers(50, 1500),
       method=st.sampled_from(["integrator", "differentiator"]), threshold=st.integers(1, 4),
       bins=st.integers(1, 6), incomplete=st.booleans(), t0=st.integers(-5000, 10**9))  # fmt: skip
def test_equals_the_loop_in_every_mode(ev, w, h, duration, method, threshold, bins, incomplete,
                                       t0):  # fmt: skip
    """Any duration and bins (fine windows of fractional µs too, e.g. 1000/3), times off 0."""
    t, x, y, p = ev
    r = rec(np.array(t) + t0, x, y, p, sensor=(8, 6, 2))
    ours = EventDownsampling((w, h), duration, method, threshold, bins, incomplete)(r)
    assert fields(ours) == loop_downsample(r, (w, h), duration, method, threshold, bins,
                                           incomplete)  # fmt: skip
    assert ours.sensor_size == (w, h, 2)
    assert np.all(np.diff(ours.events["t"]) >= 0)


def test_integrator_and_differentiator_by_hand():
    # sensor 4x2 -> target 2x1: x 0,1 -> 0 and x 2,3 -> 1; windows of 10 µs from t = 100
    r = rec([100, 101, 105, 112, 121, 125, 131, 140],
            [0, 1, 2, 0, 1, 3, 0, 2],
            [0, 1, 0, 1, 0, 1, 1, 0],
            [1, 1, 0, 0, 1, 0, 1, 1], sensor=(4, 2, 2))  # fmt: skip
    # window 0 [100, 110): pixel 0 +2, pixel 1 -1; window 1: pixel 0 -1; window 2:
    # pixel 0 +1, pixel 1 -1; window 3: pixel 0 +1; window 4 [140]: pixel 1 +1.
    one = EventDownsampling((2, 1), 10, noise_threshold=1)(r)
    assert fields(one) == [(100, 0, 0, 1), (100, 1, 0, 0), (110, 0, 0, 0), (120, 0, 0, 1),
                           (120, 1, 0, 0), (130, 0, 0, 1), (140, 1, 0, 1)]  # fmt: skip
    # threshold 2: pixel 0 fires ON at once (+2), then -1, +1 (0), +1 (1): nothing more;
    # pixel 1: -1, -2 at window 2 fires OFF, then +1.
    two = EventDownsampling((2, 1), 10, noise_threshold=2)(r)
    assert fields(two) == [(100, 0, 0, 1), (120, 1, 0, 0)]
    assert len(EventDownsampling((2, 1), 10, noise_threshold=2, include_incomplete=False)(r)) == 2
    # Tonic's window count ⌊40/10⌋ = 4 leaves out window 4 and the event at t = 140
    tonic_rule = EventDownsampling((2, 1), 10, noise_threshold=1, include_incomplete=False)(r)
    assert fields(tonic_rule) == fields(one)[:-1]
    # Differentiator, 2 fine windows of 5 µs per 10 µs window, threshold 1. Fine windows:
    # 100, 101 -> 0; 105 -> 1; 112 -> 2; 121 -> 4; 125 -> 5; 131 -> 6; 140 -> 8. The fine
    # integrator: pixel 0 ON at k 0, 4, 6 and OFF at 2; pixel 1 OFF at 1, 5 and ON at 8.
    # Counts per 10 µs window j = k // 2: pixel 0 ON j0 1, j2 1, j3 1; pixel 0 OFF j1 1;
    # pixel 1 OFF j0 1, j2 1; pixel 1 ON j4 1. A rise from j to j + 1 is stamped j.
    diff = EventDownsampling((2, 1), 10, "differentiator", 1, 2)(r)
    assert fields(diff) == [(100, 0, 0, 0), (110, 0, 0, 1), (110, 1, 0, 0), (130, 1, 0, 1)]
    assert fields(diff) == loop_downsample(r, (2, 1), 10, "differentiator", 1, 2)


def test_edge_cases_and_sensor_sizes():
    empty = rec([], [], [], sensor=(8, 6, 2))
    for method in ("integrator", "differentiator"):
        out = EventDownsampling((4, 3), 100, method)(empty)
        assert len(out) == 0 and out.sensor_size == (4, 3, 2)
        one = rec([7], [5], [4], [0], sensor=(8, 6, 2))
        got = EventDownsampling((4, 3), 100, method)(one)
        assert fields(got) == ([(7, 2, 2, 0)] if method == "integrator" else [])
        quiet = rec([0, 1], [0, 0], [0, 0], [0, 1], sensor=(8, 6, 2))  # ON and OFF cancel
        assert len(EventDownsampling((4, 3), 100, method)(quiet)) == 0
    same = rec([0, 3, 9], [0, 7, 7], [5, 0, 0], [1, 0, 0], sensor=(8, 6, 2))
    out = EventDownsampling((8, 6), 1)(same)  # no spatial change, 1 µs windows
    assert fields(out) == [(0, 0, 5, 1), (3, 7, 0, 0), (9, 7, 0, 0)]
    assert EventDownsampling(1, 5)(same).sensor_size == (1, 1, 2)
    mono = rec([0, 1, 2], [0, 1, 2], [0, 0, 0], [0, 0, 0], sensor=(3, 1, 1))  # merged: OFF
    assert fields(EventDownsampling((1, 1), 10)(mono)) == [(0, 0, 0, 0)]
    # frames of the output: a sensor of (w, h, 2)
    r = rec(np.arange(50) * 10, np.arange(50) % 8, np.arange(50) % 6, np.arange(50) % 2,
            sensor=(8, 6, 2))  # fmt: skip
    frames = to_frames(EventDownsampling((4, 3), 20)(r), 3)
    assert frames.shape == (3, 2, 3, 4)


def test_arguments_keys_and_refusals():
    r = rec([0, 1], [0, 1], [0, 1], sensor=(8, 6, 2))
    for make, match in [
        (lambda: EventDownsampling((4, 3), 100, noise_threshold=0), "got 0: every pixel at rest"),
        (lambda: EventDownsampling((4, 3), 100, noise_threshold=-1), "noise_threshold"),
        (lambda: EventDownsampling((4, 3), 100, noise_threshold=1.5), "noise_threshold"),
        (lambda: EventDownsampling((4, 3), 100, "naive"), "naive method is Downsample"),
        (lambda: EventDownsampling((4, 3), 100, "median"), "downsampling_method"),
        (lambda: EventDownsampling((4, 3), 0), "duration"),
        (lambda: EventDownsampling((4, 3), 0.5), "duration"),
        (lambda: EventDownsampling((4, 3), 100, "differentiator", 1, 0), "time_bins"),
        (lambda: EventDownsampling((4, 0), 100), "target_size"),
        (lambda: EventDownsampling((4, 3, 2), 100), "target_size"),
        (lambda: EventDownsampling((4, 3), 100, include_incomplete="no"), "include_incomplete"),
    ]:  # fmt: skip
        with pytest.raises(ConfigurationError, match=match):
            make()
    with pytest.raises(ConfigurationError, match="larger than the 8x6 sensor"):
        EventDownsampling((9, 3), 100)(r)
    with pytest.raises(ConfigurationError, match="P = 4 channels"):
        EventDownsampling((4, 3), 100)(rec([0], [0], [0], sensor=(8, 6, 4)))
    with pytest.raises(ConfigurationError, match="needs the sensor size"):
        EventDownsampling((4, 3), 100)(r.events)
    tf = EventDownsampling(np.int64(4), np.int64(100), "differentiator", np.int64(2))
    key = tf.cache_key()
    assert json.loads(json.dumps(key)) == {
        "name": "EventDownsampling", "target_size": [4, 4], "duration": 100,
        "downsampling_method": "differentiator", "noise_threshold": 2,
        "differentiator_time_bins": 2, "include_incomplete": True,
    }  # fmt: skip
    assert EventDownsampling(4, 100).cache_key() != EventDownsampling(4, 101).cache_key()
    assert not tf.random and T.EventDownsampling is EventDownsampling


def test_a_long_busy_recording_is_fast():
    """200,000 events over 20 s in 1 ms windows (20,000 windows, every pixel active in
    most): the loop runs once per active window of the busiest pixel, each step numpy."""
    import time

    rng = np.random.default_rng(0)
    n = 200_000
    events = make_events(np.sort(rng.integers(0, 20_000_000, n)), rng.integers(0, 34, n),
                         rng.integers(0, 34, n), rng.integers(0, 2, n))  # fmt: skip
    r = EventRecording(events, (34, 34, 2))
    start = time.perf_counter()
    out = EventDownsampling((2, 2), 1000, noise_threshold=2)(r)
    assert time.perf_counter() - start < 5.0 and len(out) > 1000
