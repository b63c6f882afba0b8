"""Event transforms by hand and against loop implementations; frame augmentations share
their random parameters across every time step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeflow.data import EventRecording, make_events, to_frames
from spikeflow.data import transforms as T
from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError
from tonic_events import fields, rec


# -- geometry -----------------------------------------------------------------------------
def test_flips_by_hand_and_input_untouched():
    r = rec([0, 1, 2], [0, 4, 2], [0, 2, 1], [0, 1, 1])
    before = r.events.copy()
    lr = T.FlipLR()(r)
    assert lr.events["x"].tolist() == [4, 0, 2] and lr.events["y"].tolist() == [0, 2, 1]
    ud = T.FlipUD()(r)
    assert ud.events["y"].tolist() == [2, 0, 1] and ud.events["x"].tolist() == [0, 4, 2]
    assert fields(T.FlipLR()(lr)) == fields(r) and lr.sensor_size == (5, 3, 2)
    assert T.FlipPolarity()(r).events["p"].tolist() == [1, 0, 0]
    np.testing.assert_array_equal(r.events, before)
    assert fields(T.RandomFlipLR(p=1.0)(r)) == fields(lr)
    assert fields(T.RandomFlipUD(p=0.0)(r)) == fields(r)
    with pytest.raises(ConfigurationError, match="sensor size"):
        T.FlipLR()(r.events)


def test_center_and_random_crop_by_hand():
    # sensor 6x4, crop 2x2: origin ((6-2)//2, (4-2)//2) = (2, 1)
    r = rec([0, 1, 2, 3, 4], [2, 3, 1, 4, 3], [1, 2, 1, 1, 3], sensor=(6, 4, 2))
    c = T.CenterCrop((2, 2))(r)
    assert c.sensor_size == (2, 2, 2)
    assert [(x, y) for _, x, y, _ in fields(c)] == [(0, 0), (1, 1)]
    assert c.events["t"].tolist() == [0, 1]
    for seed in range(5):
        out = T.RandomCrop((3, 2), seed=seed)(r)
        assert out.sensor_size == (3, 2, 2)
        # the output equals the crop at one of the (6-3+1) x (4-2+1) origins
        matches = []
        for x0 in range(4):
            for y0 in range(3):
                e = r.events
                k = (e["x"] >= x0) & (e["x"] < x0 + 3) & (e["y"] >= y0) & (e["y"] < y0 + 2)
                exp = [(t, x - x0, y - y0, p) for t, x, y, p in fields(e[k])]
                matches.append(exp == fields(out))
        assert any(matches)
    with pytest.raises(ConfigurationError, match="larger than"):
        T.CenterCrop(7)(r)


def test_crop_sizes_take_numpy_integers_and_refuse_non_integers():
    r = rec([0, 1], [2, 3], [1, 2], sensor=(6, 4, 2))
    for size in (np.int64(2), (np.int32(2), np.int64(2)), np.array([2, 2])):
        crop = T.CenterCrop(size)
        assert crop.size == (2, 2) and all(type(v) is int for v in crop.size)
        assert fields(crop(r)) == fields(T.CenterCrop(2)(r))
        assert type(T.RandomCrop(size, seed=0).size[0]) is int
    for bad in (2.5, (2.5, 2), True, (True, 2), (2,), (2, 0), "ab", None, np.array(2)):
        with pytest.raises(ConfigurationError, match=r"size must be an int or \(width, height\)"):
            T.CenterCrop(bad)
        # the frame crops shared the pattern: 2.5 was cut to 2, a numpy int a TypeError
        with pytest.raises(ConfigurationError, match=r"size must be an int or \(height, width\)"):
            T.CenterCropFrames(bad)
        with pytest.raises(ConfigurationError, match=r"size must be an int or \(height, width\)"):
            T.RandomCropFrames(bad)
    assert T.CenterCropFrames(np.int64(2)).size == (2, 2)
    assert T.RandomCropFrames((np.int32(3), 2)).size == (3, 2)


def test_downsample_and_merge_polarities():
    r = rec([0, 1, 2, 3], [0, 1, 2, 33], [0, 33, 3, 17], [0, 1, 1, 0], sensor=(34, 34, 2))
    d = T.Downsample(0.5)(r)
    assert d.events["x"].tolist() == [0, 0, 1, 16] and d.events["y"].tolist() == [0, 16, 1, 8]
    assert d.sensor_size == (17, 17, 2)
    assert T.Downsample(0.5)(rec([0], [34], [0], sensor=(35, 1, 2))).sensor_size == (18, 1, 2)
    m = T.MergePolarities()(r)
    assert m.sensor_size == (34, 34, 1) and not m.events["p"].any()
    np.testing.assert_array_equal(to_frames(m, 2)[:, 0], to_frames(r, 2).sum(axis=1))


# -- denoise ------------------------------------------------------------------------------
def test_denoise_by_hand():
    r = rec(
        [0, 50, 60, 70, 75, 200, 250, 260],
        [5, 6, 5, 9, 9, 6, 7, 8],
        [5, 5, 5, 9, 9, 6, 6, 7],
        sensor=(12, 12, 2),
    )
    # A(5,5,0): no earlier neighbour -> drop. B(6,5,50): A is a neighbour 50 µs before ->
    # keep. C(5,5,60): B neighbours it (10 µs) -> keep. D(9,9,70): isolated -> drop.
    # H(9,9,75): only its own pixel fired before -> drop. E(6,6,200): nearest neighbour C
    # 140 µs ago -> drop. F(7,6,250): E 50 µs ago -> keep. G(8,7,260): F diagonal -> keep.
    out = T.Denoise(filter_time=100)(r)
    assert out.events["t"].tolist() == [50, 60, 250, 260]


def loop_denoise(e, ft):
    keep = []
    for i in range(len(e)):
        ok = any(
            max(abs(int(e["x"][i]) - int(e["x"][j])), abs(int(e["y"][i]) - int(e["y"][j]))) == 1
            and e["t"][i] - e["t"][j] < ft
            for j in range(i)
        )
        keep.append(ok)
    return e[np.array(keep, dtype=bool)]


def loop_refractory(e, period):
    last = {}
    keep = []
    for i in range(len(e)):
        px = (int(e["x"][i]), int(e["y"][i]))
        ok = px not in last or e["t"][i] - last[px] >= period
        if ok:
            last[px] = e["t"][i]
        keep.append(ok)
    return e[np.array(keep, dtype=bool)]


stream = st.integers(0, 80).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 400), min_size=n, max_size=n).map(sorted),
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(ev=stream, window=st.integers(1, 150))
def test_denoise_and_refractory_equal_loops(ev, window):
    r = rec(*ev, sensor=(4, 4, 2))
    assert fields(T.Denoise(window)(r)) == fields(loop_denoise(r.events, window))
    assert fields(T.RefractoryPeriod(window)(r)) == fields(loop_refractory(r.events, window))


def loop_refractory_per_polarity(e, period):
    last, keep = {}, []
    for i in range(len(e)):
        key = (int(e["x"][i]), int(e["y"][i]), int(e["p"][i] != 0))
        ok = key not in last or e["t"][i] - last[key] >= period
        if ok:
            last[key] = e["t"][i]
        keep.append(ok)
    return e[np.array(keep, dtype=bool)]


busy_stream = st.integers(0, 300).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3000), min_size=n, max_size=n).map(sorted),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
    )
)


@settings(max_examples=80, deadline=None)
@given(ev=busy_stream, window=st.integers(1, 200), rounds=st.sampled_from([0, 1, 2, 5, 32]))
def test_refractory_pointer_doubling_equals_the_loop(ev, window, rounds):
    """Few pixels, long chains: with ``plain_rounds`` small every chain is finished by
    pointer doubling; the kept events must be exactly the plain loop's."""
    r = rec(*ev, sensor=(2, 2, 2))
    original = T.RefractoryPeriod.plain_rounds
    T.RefractoryPeriod.plain_rounds = rounds
    try:
        got = T.RefractoryPeriod(window)(r)
        got_pol = T.RefractoryPeriod(window, per_polarity=True)(r)
    finally:
        T.RefractoryPeriod.plain_rounds = original
    assert fields(got) == fields(loop_refractory(r.events, window))
    assert fields(got_pol) == fields(loop_refractory_per_polarity(r.events, window))


def test_refractory_busy_pixel_costs_about_as_much_as_spread_events():
    """200,000 events on one pixel, every one kept: as fast (within a small factor, timed
    against the same events over 34x34 pixels) instead of one Python step per event."""
    import time

    n = 200_000
    t = np.arange(n) * 2
    one = rec(t, np.zeros(n, int), np.zeros(n, int), sensor=(34, 34, 2))
    rng = np.random.default_rng(0)
    spread = rec(t, rng.integers(0, 34, n), rng.integers(0, 34, n), sensor=(34, 34, 2))
    refractory = T.RefractoryPeriod(1)

    def best(r):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            out = refractory(r)
            times.append(time.perf_counter() - start)
        return min(times), len(out)

    (busy, kept), (base, _) = best(one), best(spread)
    assert kept == n
    assert busy < 5 * base + 0.05, (busy, base)


def test_refractory_by_hand():
    # pixel a: 0 kept, 50 dropped, 100 kept (100 - 0 >= 100), 120 dropped, 210 kept
    # (110 after the kept 100; a previous-event rule would drop it: 90 after 120).
    # pixel b interleaved and independent: 60 kept, 70 dropped.
    r = rec([0, 50, 60, 70, 100, 120, 210], [0, 0, 1, 1, 0, 0, 0], [0] * 7)
    out = T.RefractoryPeriod(100)(r)
    assert out.events["t"].tolist() == [0, 60, 100, 210]
    assert len(T.RefractoryPeriod(0)(r)) == 7
    pol = rec([0, 10, 20], [0, 0, 0], [0, 0, 0], [0, 1, 0])
    assert T.RefractoryPeriod(100, per_polarity=True)(pol).events["t"].tolist() == [0, 10]
    with pytest.raises(DataFormatError, match="not sorted"):
        T.RefractoryPeriod(10)(rec([5, 1], [0, 0], [0, 0]))


def test_refractory_fractional_period_follows_the_documented_rule():
    # One pixel at t = 0, 0, 1, 2, 3: kept when t - t_kept >= period, i.e. ceil(period).
    r = rec([0, 0, 1, 2, 3], [0] * 5, [0] * 5)
    for period, kept in ((0.5, [0, 1, 2, 3]), (1.5, [0, 2]), (2.5, [0, 3]), (2.0, [0, 2])):
        assert T.RefractoryPeriod(period)(r).events["t"].tolist() == kept, period
        assert T.RefractoryPeriod(np.float32(period))(r).events["t"].tolist() == kept, period
    assert T.RefractoryPeriod(np.int64(2)).cache_key()["refractory_period"] == 2
    # the key holds the period applied: a cache made when 1.5 was cut to 1 is not reused
    assert T.RefractoryPeriod(1.5).cache_key() == T.RefractoryPeriod(2).cache_key()
    assert T.RefractoryPeriod(1.5).cache_key()["refractory_period"] == 2
    for bad in (-1, -0.5, float("inf"), float("nan"), True, "3", None):
        with pytest.raises(ConfigurationError, match=r"refractory_period must be .*got"):
            T.RefractoryPeriod(bad)


# -- time and drop transforms ---------------------------------------------------------------
def test_time_jitter_and_skew():
    r = rec(np.arange(0, 1000, 10), np.arange(100) % 5, np.arange(100) % 3)
    j = T.TimeJitter(std=30.0, seed=1)(r)
    assert np.all(np.diff(j.events["t"]) >= 0)
    assert sorted(zip(j.events["x"], j.events["y"])) == sorted(zip(r.events["x"], r.events["y"]))
    assert not np.array_equal(j.events["t"], r.events["t"])
    assert fields(T.TimeJitter(30.0, seed=1)(r)) == fields(j)
    assert fields(T.TimeJitter(0.0)(r)) == fields(r)
    assert T.TimeJitter(1e4, clip_negative=True, seed=0)(r).events["t"].min() >= 0
    s = T.TimeSkew(2.0, offset=5)(rec([0, 3, 10], [0, 1, 2], [0, 0, 0]))
    assert s.events["t"].tolist() == [5, 11, 25]
    assert T.TimeSkew((1.0, 2.0)).random and not T.TimeSkew(1.5).random


def test_sort_events_is_stable_by_hand():
    r = rec([5, 1, 5, 0, 1], [0, 1, 2, 3, 4], [0, 0, 1, 2, 2], [1, 0, 0, 1, 1])
    out = T.SortEvents()(r)
    # equal timestamps keep their input order: (1, x=1) before (1, x=4), (5, x=0) first
    assert fields(out) == [(0, 3, 2, 1), (1, 1, 0, 0), (1, 4, 2, 1), (5, 0, 0, 1), (5, 2, 1, 0)]
    assert out.sensor_size == r.sensor_size and fields(r)[0] == (5, 0, 0, 1)  # input kept
    assert not T.SortEvents().random
    jittered = T.TimeJitter(std=50.0, seed=3)(r)
    assert fields(T.SortEvents()(jittered)) == fields(jittered)  # already sorted: unchanged


def test_drop_event_pixel_and_time_window():
    r = rec(np.arange(200), np.arange(200) % 5, np.arange(200) % 3)
    d = T.DropEvent(0.25, seed=3)(r)
    assert len(d) == 150 and set(fields(d)) <= set(fields(r))
    assert np.all(np.diff(d.events["t"]) > 0)
    assert fields(T.DropEvent(0.25, seed=3)(r)) == fields(d)
    assert len(T.DropEvent(0.25, seed=3)(r.events)) == 150  # plain arrays work too

    dp = T.DropPixel(coordinates=[(0, 0), (4, 2)])(r)
    pix = set(zip(dp.events["x"].tolist(), dp.events["y"].tolist()))
    assert (0, 0) not in pix and (4, 2) not in pix and len(pix) == 13
    assert len(dp) == 200 - len([1 for _, x, y, _ in fields(r) if (x, y) in {(0, 0), (4, 2)}])
    rf = T.DropPixel(fraction=0.4, seed=0)(r)  # 6 of the 15 pixels
    assert len(set(zip(rf.events["x"].tolist(), rf.events["y"].tolist()))) == 15 - 6

    w = T.DropTimeWindow(0.25, seed=0)(r)  # span 199 -> a window of 49.75 µs: 49 or 50 events
    gone = sorted(set(range(200)) - set(w.events["t"].tolist()))
    assert len(gone) in (49, 50) and gone == list(range(gone[0], gone[-1] + 1))


def test_compose_random_flags_and_keys():
    c = T.Compose([T.Denoise(100), T.RefractoryPeriod(5)])
    assert not c.random and c.cache_key()["transforms"][0] == {
        "name": "Denoise",
        "filter_time": 100,
    }
    assert T.Compose([T.Denoise(100), T.DropEvent(0.1)]).random
    assert T.Compose([T.Denoise(100)]).cache_key() != T.Compose([T.Denoise(101)]).cache_key()
    r = rec([0, 1, 2], [0, 1, 4], [0, 1, 2])
    assert fields(T.Compose([T.FlipLR(), T.FlipLR()])(r)) == fields(r)
    assert "Denoise(filter_time=100)" in repr(c)


def test_seed_none_follows_torch_global_seed():
    r = rec(np.arange(100), np.arange(100) % 5, np.arange(100) % 3)
    torch.manual_seed(5)
    a = T.DropEvent(0.5)(r)
    torch.manual_seed(5)
    b = T.DropEvent(0.5)(r)
    c = T.DropEvent(0.5)(r)
    assert fields(a) == fields(b) and fields(b) != fields(c)


# -- frame augmentations --------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_frame_augmentations_share_parameters_across_time(seed):
    x = torch.rand(6, 2, 8, 10, generator=torch.Generator().manual_seed(seed))
    crop = T.RandomCropFrames((5, 4), padding=2, generator=seed)(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    origins = [
        (top, left)
        for top in range(12 - 5 + 1)
        for left in range(14 - 4 + 1)
        if torch.equal(crop, padded[..., top : top + 5, left : left + 4])
    ]
    assert len(origins) >= 1  # one crop window for all 6 steps
    flip = T.RandomHorizontalFlipFrames(0.5, generator=seed)(x)
    assert torch.equal(flip, x) or torch.equal(flip, x.flip(-1))
    vflip = T.RandomVerticalFlipFrames(0.5, generator=seed)(x)
    assert torch.equal(vflip, x) or torch.equal(vflip, x.flip(-2))
    rot = T.RandomRot90Frames(generator=seed)(x)
    rotations = [torch.rot90(x, k, (-2, -1)) for k in range(4)]
    assert any(rot.shape == r.shape and torch.equal(rot, r) for r in rotations)


def test_frame_augmentations_draw_anew_each_call_and_check_input():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    aug = T.RandomRot90Frames(generator=0)
    outs = {tuple(aug(x).flatten().tolist()) for _ in range(40)}
    assert len(outs) == 4
    assert torch.equal(T.CenterCropFrames(2)(x), x[..., 1:3, 1:3])
    with pytest.raises(ShapeError, match="larger"):
        T.RandomCropFrames(5)(x)
    with pytest.raises(ShapeError, match="tensor"):
        T.RandomHorizontalFlipFrames()(np.zeros((2, 4, 4)))


class _SameSample(torch.utils.data.Dataset):
    """One recording eight times, through a seeded random crop: differences are draws."""

    def __init__(self, transform) -> None:
        rng = np.random.default_rng(0)
        n = 2000
        self.recording = EventRecording(
            make_events(np.arange(n), rng.integers(0, 34, n), rng.integers(0, 34, n),
                        rng.integers(0, 2, n)),
            (34, 34, 2),
        )  # fmt: skip
        self.transform = transform

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        out = self.transform(self.recording)
        return torch.as_tensor(to_frames(out, 1) if isinstance(out, EventRecording) else out)


def _epochs(transform, workers: int) -> list[torch.Tensor]:
    loader = torch.utils.data.DataLoader(_SameSample(transform), batch_size=1,
                                         num_workers=workers)  # fmt: skip
    return [torch.cat(list(loader)) for _ in range(2)]


@pytest.mark.parametrize("make", [lambda: T.RandomCrop(20, seed=0),
                                  lambda: T.Compose([T.RandomCrop(20, seed=0)]),
                                  # Tonic's ranges, drawn per sample from the same stream
                                  lambda: T.DropEvent((0.1, 0.6), seed=np.random.default_rng(0)),
                                  lambda: T.RefractoryPeriod((100, 1500), seed=0)])  # fmt: skip
def test_a_seeded_transform_draws_anew_in_every_worker_and_epoch(make):
    # Workers copy the transform: with its stream copied as is, every epoch (and every
    # worker) repeated the same crops.
    torch.manual_seed(0)
    first, second = _epochs(make(), workers=2)
    assert not torch.equal(first, second)
    assert len({x.numpy().tobytes() for x in first}) == 8
    torch.manual_seed(0)
    again = _epochs(make(), workers=2)
    assert torch.equal(again[0], first) and torch.equal(again[1], second)  # reproducible


def test_a_seeded_frame_transform_draws_anew_in_every_worker_and_epoch():
    class Frames(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.x = torch.rand(2, 2, 34, 34)
            self.crop = T.RandomCropFrames(24, generator=0)

        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> torch.Tensor:
            return self.crop(self.x)

    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(Frames(), batch_size=1, num_workers=2)
    first, second = torch.cat(list(loader)), torch.cat(list(loader))
    assert not torch.equal(first, second)
    assert len({x.numpy().tobytes() for x in first}) == 8


def test_numpy_scalar_parameters_make_json_keys_and_seeds():
    import json

    from spikeflow.data.frame_transforms import RandomCropFrames

    # They were kept as numpy scalars: a cached dataset failed on the key (not JSON).
    assert json.dumps(T.Denoise(np.int64(1000)).cache_key()) == json.dumps(
        T.Denoise(1000).cache_key()
    )
    key = T.RefractoryPeriod(np.float32(1.5), per_polarity=np.True_).cache_key()
    assert json.loads(json.dumps(key)) == {"name": "RefractoryPeriod", "refractory_period": 2,
                                           "per_polarity": True}  # fmt: skip
    with pytest.raises(ConfigurationError, match="per_polarity"):
        T.RefractoryPeriod(2, per_polarity="False")
    for bad in ("1000", float("inf"), 0, True):
        with pytest.raises(ConfigurationError, match="filter_time"):
            T.Denoise(bad)
    frames = torch.arange(2 * 8 * 8.0).reshape(2, 8, 8)
    a = RandomCropFrames(4, generator=np.int64(3))(frames)
    assert torch.equal(a, RandomCropFrames(4, generator=3)(frames))
    for bad in (True, 2.5, "3"):
        with pytest.raises(ConfigurationError, match="generator"):
            RandomCropFrames(4, generator=bad)
