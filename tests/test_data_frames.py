"""Frames, voxel grids, time surfaces and pad_collate, against hand-computed values and
independent loop implementations of the rules in methods.md 11.1."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_shared_data
from spikeflow.data import (
    EventRecording,
    SliceByTime,
    ToFrame,
    ToFrameByDuration,
    ToFrameBySlices,
    ToTimeSurface,
    ToVoxelGrid,
    make_events,
    pad_collate,
    segment_index,
    to_frames,
    to_frames_by_duration,
    to_time_surfaces,
    to_voxel_grid,
)
from spikeflow.data.representations import CustomRepresentation, frame_representation
from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError

SENSOR = (3, 2, 2)  # W, H, P


def rec(t, x, y, p, sensor=SENSOR, source="mem.bin"):
    return EventRecording(make_events(np.array(t), np.array(x), np.array(y), np.array(p)),
                          sensor, source)  # fmt: skip


def expected(T, placed, sensor=SENSOR):
    """Frames from a hand list of (frame, channel, y, x)."""
    W, H, P = sensor
    out = np.zeros((T, P, H, W), dtype=np.int32)
    for j, c, y, x in placed:
        out[j, c, y, x] += 1
    return out


# -- split_by="number" ------------------------------------------------------------------
def test_number_split_by_hand_last_segment_takes_remainder():
    # N = 7, T = 3: Δ = 2, segments [0, 2), [2, 4), [4, 7): the last takes 3 events.
    r = rec([0, 10, 20, 30, 40, 50, 60], [0, 1, 2, 0, 1, 2, 0], [0, 0, 1, 1, 0, 1, 1],
            [0, 1, 1, 0, 0, 1, 1])  # fmt: skip
    want = expected(3, [(0, 0, 0, 0), (0, 1, 0, 1), (1, 1, 1, 2), (1, 0, 1, 0),
                        (2, 0, 0, 1), (2, 1, 1, 2), (2, 1, 1, 0)])  # fmt: skip
    got = to_frames(r, 3, "number")
    assert got.dtype == np.int32 and got.shape == (3, 2, 2, 3)
    np.testing.assert_array_equal(got, want)


def test_number_split_fewer_events_than_frames_all_in_last():
    r = rec([5, 7], [0, 1], [0, 1], [0, 1])
    got = to_frames(r, 5, "number")
    np.testing.assert_array_equal(got, expected(5, [(4, 0, 0, 0), (4, 1, 1, 1)]))


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_empty_recording_gives_zero_frames(split_by):
    r = rec([], [], [], [])
    got = to_frames(r, 4, split_by)
    assert got.shape == (4, 2, 2, 3) and not got.any()


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_single_frame_holds_everything(split_by):
    r = rec([0, 3, 9], [0, 1, 2], [0, 1, 0], [1, 1, 0])
    np.testing.assert_array_equal(
        to_frames(r, 1, split_by), expected(1, [(0, 1, 0, 0), (0, 1, 1, 1), (0, 0, 0, 2)])
    )


# -- split_by="time" --------------------------------------------------------------------
def test_time_split_by_hand_edges_and_last_event():
    # t_first = 100, t_last = 121, T = 3: Δt = ⌊21/3⌋ = 7; edges 100, 107, 114.
    # 106 -> 0; 107 -> 1 (left edge included); 113 -> 1; 114 -> 2; 121 (= t_first + 3Δt,
    # the final event) -> 2.
    t = [100, 106, 107, 113, 114, 121]
    r = rec(t, [0, 1, 2, 0, 1, 2], [0] * 6, [1] * 6)
    want = expected(3, [(0, 1, 0, 0), (0, 1, 0, 1), (1, 1, 0, 2), (1, 1, 0, 0),
                        (2, 1, 0, 1), (2, 1, 0, 2)])  # fmt: skip
    np.testing.assert_array_equal(to_frames(r, 3, "time"), want)


def test_time_split_last_segment_extends_past_uneven_span():
    # span 23, T = 3: Δt = 7; segments [0, 7), [7, 14) and [14, 23] (10 µs, not 7).
    r = rec([0, 6, 13, 14, 22, 23], [0, 0, 0, 1, 1, 1], [0] * 6, [0] * 6)
    got = to_frames(r, 3, "time")
    assert got.sum(axis=(1, 2, 3)).tolist() == [2, 1, 3]


def test_time_split_span_shorter_than_T_goes_to_last_frame():
    r = rec([50, 51, 52], [0, 1, 2], [0, 0, 0], [0, 0, 0])  # span 2 < T = 4 -> Δt = 0
    assert to_frames(r, 4, "time").sum(axis=(1, 2, 3)).tolist() == [0, 0, 0, 3]


# -- independent loop implementations ---------------------------------------------------
def loop_number(t, x, y, p, T, W, H):
    n = len(t)
    out = np.zeros((T, 2, H, W), dtype=np.int32)
    step = n // T
    for j in range(T):
        lo, hi = j * step, (j + 1) * step if j < T - 1 else n
        for i in range(lo, hi):
            out[j, 1 if p[i] != 0 else 0, y[i], x[i]] += 1
    return out


def loop_time(t, x, y, p, T, W, H):
    out = np.zeros((T, 2, H, W), dtype=np.int32)
    if not len(t):
        return out
    dt = (t[-1] - t[0]) // T
    for i in range(len(t)):
        for j in range(T):
            lo = t[0] + j * dt
            if (j == T - 1 and t[i] >= lo) or lo <= t[i] < lo + dt:
                out[j, 1 if p[i] != 0 else 0, y[i], x[i]] += 1
                break
    return out


events_strategy = st.integers(0, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 500), min_size=n, max_size=n).map(sorted),
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
        st.lists(st.integers(0, 2), min_size=n, max_size=n),
        st.lists(st.sampled_from([0, 1, -1]), min_size=n, max_size=n),
    )
)


@settings(max_examples=80, deadline=None)
@given(ev=events_strategy, T=st.integers(1, 12))
def test_rules_equal_independent_loops(ev, T):
    t, x, y, p = (np.array(a, dtype=np.int64) for a in ev)
    r = rec(t, x, y, p, sensor=(5, 3, 2))
    np.testing.assert_array_equal(to_frames(r, T, "number"), loop_number(t, x, y, p, T, 5, 3))
    np.testing.assert_array_equal(to_frames(r, T, "time"), loop_time(t, x, y, p, T, 5, 3))
    assert to_frames(r, T, "number").sum() == len(t) == to_frames(r, T, "time").sum()


# -- channels, sensors, user functions, errors -------------------------------------------
def test_channel_rule_and_one_d_sensor():
    r = rec([0, 1, 2, 3], [0, 5, 63, 5], [0, 0, 0, 0], [0, 1, -1, 0], sensor=(64, 1, 2))
    got = to_frames(r, 1)
    assert got.shape == (1, 2, 1, 64)
    assert got[0, 0, 0, 0] == 1 and got[0, 1, 0, 5] == 1 and got[0, 1, 0, 63] == 1
    assert got[0, 0, 0, 5] == 1
    merged = to_frames(EventRecording(r.events, (64, 1, 1)), 1)
    np.testing.assert_array_equal(merged[:, 0], got.sum(axis=1))
    channels = to_frames(
        EventRecording(
            make_events(np.arange(3), np.zeros(3), None, np.array([0, 3, 3])), (1, 1, 4)
        ),
        1,
    )
    assert channels[0, :, 0, 0].tolist() == [1, 0, 0, 2]


def test_user_split_function():
    r = rec([0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 0, 1], [0, 1, 1, 0])
    got = to_frames(r, 2, split_by=lambda ev, T: (ev["x"] % T).astype(np.int64))
    np.testing.assert_array_equal(got, expected(2, [(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 0, 2),
                                                    (0, 0, 1, 0)]))  # fmt: skip
    with pytest.raises(ConfigurationError, match="outside"):
        to_frames(r, 2, split_by=lambda ev, T: np.full(len(ev), T))
    with pytest.raises(ShapeError):
        to_frames(r, 2, split_by=lambda ev, T: np.zeros(1, dtype=np.int64))


def test_errors_name_the_problem():
    with pytest.raises(DataFormatError, match=r"mem\.bin.*not sorted.*event 2"):
        to_frames(rec([0, 5, 4], [0, 0, 0], [0, 0, 0], [0, 0, 0]), 2)
    with pytest.raises(DataFormatError, match=r"event 1 at \(x=3, y=0\) is outside the 3x2"):
        to_frames(rec([0, 1], [0, 3], [0, 0], [0, 0]), 2)
    # Signed coordinates (Tonic's int16 layout): a negative one is outside too.
    signed = np.zeros(2, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    signed["x"], signed["y"] = [1, -1], [0, 1]
    for field_ in ("x", "y"):
        ev = signed.copy()
        if field_ == "y":
            ev["x"], ev["y"] = [1, 0], [0, -1]
        with pytest.raises(DataFormatError, match=r"event 1 at \(x=-?\d, y=-?\d\) is outside"):
            to_frames(ev, 1, sensor_size=(3, 2, 2))
    with pytest.raises(ConfigurationError, match="frames_number"):
        to_frames(rec([0], [0], [0], [0]), 0)
    with pytest.raises(ConfigurationError, match="split_by"):
        to_frames(rec([0], [0], [0], [0]), 2, "bogus")
    with pytest.raises(ConfigurationError, match="sensor_size"):
        to_frames(make_events(np.zeros(1), np.zeros(1), None, np.zeros(1)), 2)
    # a Tonic user's plain array given to a representation object, which has no
    # sensor_size argument: the message says how to wrap it
    plain = make_events(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1))
    for representation in (ToFrame(2), ToFrameBySlices(SliceByTime(10))):
        with pytest.raises(ConfigurationError, match=r"EventRecording\(events, sensor_size\)"):
            representation(plain)
    with pytest.raises(DataFormatError, match="structured"):
        to_frames(np.zeros(3), 2, sensor_size=SENSOR)
    with pytest.raises(ConfigurationError, match="duration"):
        to_frames_by_duration(rec([0], [0], [0], [0]), 0)


def test_float_timestamps_are_refused_not_truncated():
    # t in seconds (a float field): cast to int64 every event would land in one frame.
    ev = np.zeros(4, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<f8"), ("p", "<i1")])
    ev["t"] = [0.0, 0.1, 0.2, 0.3]
    r = EventRecording(ev, SENSOR, "secs.h5")
    calls = [
        lambda: to_frames(r, 2), lambda: to_frames(r, 2, "time"),
        lambda: to_frames(r, 2, lambda e, T: np.zeros(len(e), dtype=np.int64)),
        lambda: to_frames_by_duration(r, 1000), lambda: to_voxel_grid(r, 2),
        lambda: to_time_surfaces(r, 2, 10.0), lambda: ToTimeSurface(2, 10.0)(r),
        lambda: segment_index(ev, 2, "time"), lambda: to_frames(ev[:0], 2, sensor_size=SENSOR),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(DataFormatError, match=r"field 't' must hold integer microseconds.*"
                                                  r"float64"):  # fmt: skip
            call()
    with pytest.raises(DataFormatError, match=r"^secs\.h5: field 't'"):
        to_frames(r, 2)
    # Integer timestamps of any width and signedness still work (readers' layouts).
    for dtype in ("<u4", "<i4", "<u8", "<i8"):
        ok = ev.astype([("x", "<i2"), ("y", "<i2"), ("t", dtype), ("p", "<i1")])
        ok["t"] = [0, 100, 200, 300]
        got = to_frames(ok, 2, "time", sensor_size=SENSOR)
        assert got.sum(axis=(1, 2, 3)).tolist() == [2, 2], dtype
        assert to_frames_by_duration(ok, 100, sensor_size=SENSOR).shape[0] == 4


# -- fixed duration + pad_collate -------------------------------------------------------
def test_duration_frames_by_hand():
    # t_first = 3, d = 10: frames [3, 13), [13, 23), [23, 33); 33 = t_first + 3d is the
    # last event and opens a 4th frame: K = ⌊30/10⌋ + 1 = 4.
    r = rec([3, 12, 13, 22, 33], [0, 1, 2, 0, 1], [0, 0, 1, 1, 0], [1, 0, 1, 0, 0])
    got = to_frames_by_duration(r, 10)
    want = expected(4, [(0, 1, 0, 0), (0, 0, 0, 1), (1, 1, 1, 2), (1, 0, 1, 0), (3, 0, 0, 1)])
    np.testing.assert_array_equal(got, want)
    assert to_frames_by_duration(rec([], [], [], []), 10).shape == (0, 2, 2, 3)
    assert to_frames_by_duration(rec([7], [0], [0], [0]), 10).shape == (1, 2, 2, 3)


def test_pad_collate_pads_and_masks():
    a = torch.ones(3, 2, 2, 3)
    b = torch.full((1, 2, 2, 3), 2.0)
    c = torch.zeros(0, 2, 2, 3)
    frames, labels, mask = pad_collate([(a, 1), (b, 7), (c, 0)])
    assert frames.shape == (3, 3, 2, 2, 3) and labels.tolist() == [1, 7, 0]
    assert mask.tolist() == [[True] * 3, [True, False, False], [False] * 3]
    assert torch.equal(frames[0], a) and torch.equal(frames[1, 0], b[0])
    assert not frames[1, 1:].any() and not frames[2].any()
    tm, _, tmask = pad_collate([(a, 1), (b, 7)], time_major=True)
    assert tm.shape == (3, 2, 2, 2, 3) and tmask.shape == (3, 2)
    assert torch.equal(tm[:, 1], frames[1]) and tmask[:, 1].tolist() == [True, False, False]
    only, m = pad_collate([a, b])
    assert only.shape == (2, 3, 2, 2, 3) and m.sum().item() == 4
    with pytest.raises(ShapeError, match="sample 1"):
        pad_collate([a, torch.ones(2, 2, 2, 2)])


@pytest.mark.parametrize("batch_first", [True, False])
def test_pad_collate_is_tonics_pad_tensors_plus_a_mask(batch_first):
    """docs/migration.md: Tonic's ``collation.PadTensors(batch_first=b)`` (snnTorch's
    tutorial 7) is ``pad_collate(..., time_major=not b)``: the same padded frames and
    labels, with the mask as a third item."""
    collation = pytest.importorskip("tonic.collation")
    gen = torch.Generator().manual_seed(0)
    batch = [(torch.rand(5, 2, 3, 3, generator=gen), 1), (torch.rand(3, 2, 3, 3, generator=gen), 4)]
    want_frames, want_labels = collation.PadTensors(batch_first=batch_first)(batch)
    frames, labels, mask = pad_collate(batch, time_major=not batch_first)
    assert torch.equal(frames, want_frames) and torch.equal(labels, want_labels)
    assert mask.sum().item() == 8


# -- voxel grid and time surfaces -------------------------------------------------------
def test_voxel_grid_by_hand():
    # bins = 3, t_first = 0, t_last = 10: τ = 2t/10. t=0 -> bin 0; t=2.5 -> half in bins 0
    # and 1; t=5 -> bin 1; t=10 -> bin 2. Sign: +1 for p != 0, -1 for p == 0.
    r = EventRecording(make_events(np.array([0, 2, 5, 10]), np.array([0, 1, 2, 0]),
                                   np.array([0, 0, 1, 1]), np.array([1, 1, 0, 1])),
                       SENSOR)  # fmt: skip
    # t=2 -> τ = 0.4: 0.6 in bin 0, 0.4 in bin 1
    got = to_voxel_grid(r, 3)
    assert got.shape == (3, 1, 2, 3) and got.dtype == np.float32
    want = np.zeros((3, 1, 2, 3), dtype=np.float32)
    want[0, 0, 0, 0] = 1
    want[0, 0, 0, 1], want[1, 0, 0, 1] = 0.6, 0.4
    want[1, 0, 1, 2] = -1
    want[2, 0, 1, 0] = 1
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not to_voxel_grid(rec([], [], [], []), 2).any()
    np.testing.assert_allclose(to_voxel_grid(rec([4, 4], [0, 1], [0, 0], [1, 0]), 3)[0, 0, 0],
                               [1, -1, 0])  # fmt: skip


def test_time_surfaces_by_hand():
    # T = 2, span 20 -> Δt = 10; surface 0 sampled at 10, surface 1 at t_last = 20.
    r = rec([0, 10, 20], [0, 0, 1], [0, 0, 0], [1, 1, 1])
    got = to_time_surfaces(r, 2, tau=10.0)
    assert got.shape == (2, 2, 2, 3)
    assert got[0, 1, 0, 0] == pytest.approx(math.exp(-1)) and got[0, 1, 0, 1] == 0
    assert got[1, 1, 0, 0] == pytest.approx(math.exp(-1)) and got[1, 1, 0, 1] == 1
    assert got[:, 0].sum() == 0
    with pytest.raises(ConfigurationError, match="tau"):
        to_time_surfaces(r, 2, tau=0)


def test_time_surfaces_validate_frames_number_and_tau():
    r = rec([0, 10, 20], [0, 0, 1], [0, 0, 0], [1, 1, 1])
    for bad in (2.9, True, "3", 0, -1, None):
        with pytest.raises(ConfigurationError, match=r"frames_number must be an int >= 1; got"):
            ToTimeSurface(bad, 10.0)
        with pytest.raises(ConfigurationError, match=r"frames_number must be an int >= 1; got"):
            to_time_surfaces(r, bad, 10.0)
    for bad in (0, -1.0, math.inf, math.nan, True, "10", None):
        with pytest.raises(ConfigurationError, match=r"tau must be a finite number > 0.*got"):
            ToTimeSurface(2, bad)
        with pytest.raises(ConfigurationError, match=r"tau must be a finite number > 0.*got"):
            to_time_surfaces(r, 2, bad)


# -- representation objects -------------------------------------------------------------
def test_representation_objects_and_keys():
    r = rec([0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 0, 1], [0, 1, 1, 0])
    np.testing.assert_array_equal(ToFrame(2, "time")(r), to_frames(r, 2, "time"))
    np.testing.assert_array_equal(ToFrameByDuration(2)(r), to_frames_by_duration(r, 2))
    np.testing.assert_array_equal(ToVoxelGrid(2)(r), to_voxel_grid(r, 2))
    np.testing.assert_array_equal(ToTimeSurface(2, 5.0)(r), to_time_surfaces(r, 2, 5.0))
    keys = [ToFrame(2).cache_key(), ToFrame(3).cache_key(), ToFrame(2, "time").cache_key(),
            ToFrameByDuration(2).cache_key(), ToVoxelGrid(2).cache_key()]  # fmt: skip
    assert len({repr(k) for k in keys}) == len(keys)

    def f1(ev, T):
        return np.zeros(len(ev), dtype=np.int64)

    def f2(ev, T):
        return np.full(len(ev), T - 1, dtype=np.int64)

    assert ToFrame(2, f1).cache_key() != ToFrame(2, f2).cache_key()
    custom = CustomRepresentation(lambda rr: np.array([len(rr)]), "count", {"scale": 1})
    assert custom(r).tolist() == [4] and custom.cache_key()["scale"] == 1
    assert isinstance(frame_representation(frames_number=4), ToFrame)
    assert isinstance(frame_representation(duration=100), ToFrameByDuration)
    with pytest.raises(ConfigurationError, match="exactly one"):
        frame_representation(frames_number=4, duration=100)
    with pytest.raises(ConfigurationError, match="exactly one"):
        frame_representation()


def test_representations_take_numpy_integers():
    r = rec([0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 0, 1], [0, 1, 1, 0])
    made = {
        "frames_number": (ToFrame(np.int64(2)), ToFrame(2)),
        "duration": (ToFrameByDuration(np.int32(2)), ToFrameByDuration(2)),
        "bins": (ToVoxelGrid(np.int16(2)), ToVoxelGrid(2)),
        "time_surface": (ToTimeSurface(np.uint8(2), np.float32(5.0)), ToTimeSurface(2, 5.0)),
    }
    for name, (numpy_made, plain) in made.items():
        assert numpy_made.cache_key() == plain.cache_key(), name
        json.dumps(numpy_made.cache_key())  # plain ints and floats
        np.testing.assert_array_equal(numpy_made(r), plain(r))
    assert type(ToFrame(np.int64(2)).frames_number) is int
    np.testing.assert_array_equal(to_voxel_grid(r, np.int64(3)), to_voxel_grid(r, 3))
    assert frame_representation(frames_number=np.int64(4)).cache_key() == ToFrame(4).cache_key()
    for make in (ToFrame, ToFrameByDuration, ToVoxelGrid, lambda v: to_voxel_grid(r, v)):
        for bad in (np.float64(2.0), np.bool_(True), True, 0, np.int64(0)):
            with pytest.raises(ConfigurationError, match=r"must be an int >= 1.*got"):
                make(bad)


# -- docs/data.md runs as printed -------------------------------------------------------
def test_docs_data_examples_run(monkeypatch):
    """Every python block of docs/data.md, in order, in one namespace, from the repo root
    (the examples read ../shared/data/nmnist-small)."""
    require_shared_data("nmnist-small")
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    text = (root / "docs" / "data.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 6
    ns: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/data.md python block {i}", "exec"), ns)
    # the values the text states
    frames = to_frames(ns["rec"], 10, "number")
    assert frames.sum(axis=(1, 2, 3)).tolist() == [502] * 9 + [510]
    t = ns["rec"].events["t"]
    assert (int(t[0]), int(t[-1])) == (937, 305341)
    assert ns["x"].shape == (10, 2, 16, 16) and ns["mask"].dtype == torch.bool
    cuts = ns["slicer"].get_slice_metadata(ns["rec"]).tolist()
    assert cuts == [[0, 1804], [1755, 3317], [2920, 4350]] and len(ns["pieces"]) == 3
    assert ns["frames"].shape == (5, 2, 34, 34) and ns["label"] == 0
    assert (len(ns["test"]), len(ns["sliced"])) == (100, 300)
    assert ns["piece"].shape == (5, 2, 34, 34) and ns["digit"] == 0
    assert ns["cached"].cache.directory.exists()


def test_coordinates_must_be_integers_and_may_be_uint64():
    from spikeflow.data import to_time_surfaces, to_voxel_grid

    def events(dtype):
        e = np.zeros(4, np.dtype([("t", "<i8"), ("x", dtype), ("y", dtype), ("p", "u1")]))
        e["t"], e["x"], e["y"], e["p"] = [0, 5, 9, 12], [0, 1, 2, 1], [1, 0, 1, 1], [1, 0, 1, 0]
        return e

    size = (3, 2, 2)
    for build in (lambda e: to_frames(e, 2, "number", sensor_size=size),
                  lambda e: to_time_surfaces(e, 2, 10.0, sensor_size=size),
                  lambda e: to_voxel_grid(e, 2, sensor_size=size)):  # fmt: skip
        want = build(events("<u2"))
        np.testing.assert_array_equal(build(events("<u8")), want)  # was a numpy casting error
        np.testing.assert_array_equal(build(events("<i8")), want)
        with pytest.raises(DataFormatError, match="field 'x' must hold integer"):
            build(events("<f8"))  # was accepted, or a numpy casting error
