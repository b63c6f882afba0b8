"""Hot pixels (spikeflow.data.hot_pixels, DropPixel's hot_pixel_frequency / max_count):
against Tonic's functional.drop_pixel and DropPixel on real N-MNIST, N-CARS and DAVIS346
recordings with injected hot pixels, and by hand at the threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import require_shared_data
from spikeflow.data import EventRecording, make_events, to_frames
from spikeflow.data import transforms as T
from spikeflow.errors import ConfigurationError, ShapeError
from tonic_events import assert_same, nmnist_recordings, rec, to_tonic, tonic_transforms

#: Injected hot pixels (x, y) and their firing periods in µs (1 kHz to 4 kHz).
HOT = [((3, 30), 1000), ((17, 2), 250), ((33, 33), 500)]


def _tonic_functional():
    tonic_transforms()
    from tonic.functional import drop_pixel

    return drop_pixel


def _with_hot_pixels(r: EventRecording, hot=HOT) -> EventRecording:
    """``r`` plus regular events at each hot pixel over its span, merged in time order."""
    t0, t1 = int(r.events["t"].min()), int(r.events["t"].max())
    parts = [r.events]
    for k, ((x, y), period) in enumerate(hot):
        t = np.arange(t0 + 7 * k, t1 + 1, period)
        parts.append(make_events(t, np.full(t.size, x), np.full(t.size, y), t % 2))
    merged = np.concatenate(parts)
    return EventRecording(merged[np.argsort(merged["t"], kind="stable")], r.sensor_size, r.source)


def _ncars() -> EventRecording:
    from spikeflow.data.io import read_dat

    return read_dat(require_shared_data("event-files", "prophesee-dat", "sample_ncars.dat"))


def test_identify_and_drop_equal_tonic_on_real_recordings_with_hot_pixels():
    fn = _tonic_functional()
    tt = tonic_transforms()
    recordings = [*nmnist_recordings()[:6], _ncars()]
    for r in recordings:
        w, h = r.sensor_size[:2]
        hot = [((min(x, w - 1), min(y, h - 1)), p) for (x, y), p in HOT]
        noisy = _with_hot_pixels(r, hot)
        theirs_events = to_tonic(noisy)
        found = T.identify_hot_pixels(noisy.events, hot_pixel_frequency=900)
        assert {tuple(p) for p in found.tolist()} >= {c for c, _ in hot}, r.source
        for freq in (5, 30, 120, 900, 3000):  # 5-120 Hz also flag busy real pixels
            ours = T.identify_hot_pixels(noisy.events, hot_pixel_frequency=freq)
            theirs = fn.identify_hot_pixel(theirs_events, freq)
            np.testing.assert_array_equal(ours, np.asarray(theirs).reshape(-1, 2))
            kept = T.DropPixel(hot_pixel_frequency=freq)(noisy)
            assert_same(kept, tt.DropPixel(hot_pixel_frequency=freq)(theirs_events))
            assert kept.sensor_size == noisy.sensor_size
        clean = T.DropPixel(hot_pixel_frequency=900)(noisy)  # the injected ones, not more
        pixel = r.events["y"].astype(int) * w + r.events["x"]
        assert len(clean) == len(r) - np.isin(pixel, [y * w + x for (x, y), _ in hot]).sum()


def test_equal_to_tonic_on_a_real_davis346_recording():
    """A real DAVIS346 recording (117,667 events) with hot pixels injected: the same
    events kept; at 50 Hz thousands of real pixels count as hot too."""
    tt = tonic_transforms()
    from spikeflow.data.io import read_aedat4

    pytest.importorskip("lz4.frame", reason="AEDAT 4 packets are LZ4-compressed")
    r = read_aedat4(require_shared_data("event-files", "aedat4", "davis.aedat4"))
    noisy = _with_hot_pixels(r, [((300, 250), 200), ((0, 0), 250), ((100, 17), 100)])
    theirs_events = to_tonic(noisy)
    for freq in (50, 2000):
        kept = T.DropPixel(hot_pixel_frequency=freq)(noisy)
        assert_same(kept, tt.DropPixel(hot_pixel_frequency=freq)(theirs_events))
    found = {tuple(p) for p in T.identify_hot_pixels(noisy.events, 2000).tolist()}
    assert {(300, 250), (0, 0), (100, 17)} <= found


def test_raster_functions_equal_tonic_on_real_frames():
    fn = _tonic_functional()
    tt = tonic_transforms()
    noisy = _with_hot_pixels(nmnist_recordings()[0])
    frames = torch.from_numpy(to_frames(noisy, 8))  # [8, 2, 34, 34] counts
    for data in (frames, frames[3]):  # [T, C, H, W] and [C, H, W]
        for k in (0, 5, 40, 300):
            ours = T.identify_hot_pixels_raster(data, k)
            theirs = fn.identify_hot_pixel_raster(data.numpy(), k)
            assert [tuple(p) for p in ours.tolist()] == [tuple(map(int, p)) for p in theirs]
            dropped = T.DropPixel(max_count=k)(data)
            if k:  # Tonic's DropPixel takes 0 for "not given" and then fails
                want = tt.DropPixel(hot_pixel_frequency=k)(data.numpy().copy())
            else:
                want = fn.drop_pixel_raster(data.numpy().copy(), theirs)
            assert isinstance(dropped, torch.Tensor) and dropped.dtype == data.dtype
            np.testing.assert_array_equal(dropped.numpy(), want)
        coords = [(3, 30), (0, 0), (33, 1)]
        want = fn.drop_pixel_raster(data.numpy().copy(), coords)
        np.testing.assert_array_equal(T.drop_pixels_raster(data.numpy(), coords), want)
        np.testing.assert_array_equal(T.DropPixel(coordinates=coords)(data).numpy(), want)
    assert T.identify_hot_pixels_raster(frames, 40).tolist()[:1] and frames.sum() > 0


def test_a_stray_far_event_costs_no_dense_grid():
    """One event at a far coordinate (a corrupt word, a 16-bit sensor) must not make a
    width x height grid (65535^2 would be 32 GiB): the pixels are counted from the
    events then, with the same result as Tonic's dense histogram on the rest."""
    import tracemalloc

    fn = _tonic_functional()
    noisy = _with_hot_pixels(nmnist_recordings()[0]).events
    t_end = int(noisy["t"][-1])
    far = make_events([t_end] * 3, [5000] * 3, [4000] * 3, [1] * 3)  # 20M-pixel grid
    events = np.concatenate([noisy, far])
    for freq in (30, 900):
        tracemalloc.start()
        ours = T.identify_hot_pixels(events, hot_pixel_frequency=freq)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 16 * 2**20, peak  # the dense grid alone: 160 MB
        theirs = np.asarray(fn.identify_hot_pixel(to_tonic(noisy), freq)).reshape(-1, 2)
        span_limit = freq * (t_end - int(noisy["t"][0])) * 1e-6
        want = [*theirs.tolist(), *([[5000, 4000]] if 3 > span_limit else [])]
        assert ours.tolist() == want
    assert len(T.DropPixel(max_count=2)(events)) == len(T.DropPixel(max_count=2)(noisy))


def test_raster_counts_are_exact_in_half_precision_frames():
    """A pixel's total is summed in float64 / int64, not in the frames' dtype: float16
    sums stop growing at 2048 (Tonic's sum would call a pixel with 6000 counts cold);
    bfloat16 tensors, which numpy lacks, are counted too."""
    frames = torch.zeros(3000, 2, 4, 5, dtype=torch.float16)  # [T, C=2 polarities, H, W]
    frames[:, :, 1, 2] = 1  # 6000 events at (x=2, y=1)
    frames[:, 0, 3, 4] = 1  # 3000 at (4, 3)
    for data in (frames, frames.numpy(), frames.bfloat16(), frames.to(torch.uint8)):
        assert T.identify_hot_pixels_raster(data, 5000).tolist() == [[2, 1]]
        assert T.identify_hot_pixels_raster(data, 2999).tolist() == [[2, 1], [4, 3]]
        dropped = T.DropPixel(max_count=5000)(data)
        assert type(dropped) is type(data) and dropped.dtype == data.dtype
        kept = torch.as_tensor(np.asarray(dropped, dtype=np.float32)) if isinstance(
            dropped, np.ndarray) else dropped.float()  # fmt: skip
        assert kept[:, :, 1, 2].sum() == 0 and kept.sum() == 3000


def test_threshold_by_hand_and_events_by_count():
    # span 1,000,000 µs: at 3 Hz the limit is 3 events; a pixel with 4 is hot, 3 is not
    t = [0, 1, 2, 3, 4, 5, 6, 1_000_000]
    x = [1, 1, 1, 1, 2, 2, 2, 0]
    r = rec(t, x, [0] * 8, sensor=(3, 1, 2))
    assert T.identify_hot_pixels(r.events, hot_pixel_frequency=3).tolist() == [[1, 0]]
    assert T.identify_hot_pixels(r.events, hot_pixel_frequency=2.5).tolist() == [[1, 0], [2, 0]]
    assert T.identify_hot_pixels(r.events, max_count=3).tolist() == [[1, 0]]
    assert T.DropPixel(max_count=2)(r).events["x"].tolist() == [0]
    assert T.DropPixel(hot_pixel_frequency=3)(r).events["x"].tolist() == [2, 2, 2, 0]
    assert T.identify_hot_pixels(r.events[:0], hot_pixel_frequency=1).shape == (0, 2)
    assert len(T.DropPixel(hot_pixel_frequency=1)(r.events[:0])) == 0
    one = T.identify_hot_pixels(r.events[:1], hot_pixel_frequency=1e9)  # span 0: limit 0
    assert one.tolist() == [[1, 0]]
    key = T.DropPixel(hot_pixel_frequency=3).cache_key()
    assert key["hot_pixel_frequency"] == 3.0 and not T.DropPixel(max_count=2).random
    assert T.DropPixel(coordinates=[(0, 0)]).cache_key() == {
        "name": "DropPixel", "coordinates": [(0, 0)], "fraction": None
    }  # fmt: skip


def test_bad_input_is_named():
    with pytest.raises(ConfigurationError, match="exactly one"):
        T.DropPixel(coordinates=[(0, 0)], hot_pixel_frequency=5)
    with pytest.raises(ConfigurationError, match="hot_pixel_frequency must be"):
        T.DropPixel(hot_pixel_frequency=0)
    with pytest.raises(ConfigurationError, match="max_count must be"):
        T.DropPixel(max_count=-1)
    with pytest.raises(ConfigurationError, match=r"coordinates\[1\]"):
        T.DropPixel(coordinates=[(0, 0), (-1, 2)])
    frames = torch.zeros(4, 2, 5, 6)
    with pytest.raises(ShapeError, match=r"coordinates\[1\] = \(6, 0\) is outside the 6x5"):
        T.drop_pixels_raster(frames, [(5, 4), (6, 0)])
    with pytest.raises(ShapeError, match="got shape"):
        T.identify_hot_pixels_raster(torch.zeros(5, 6), 1)
    with pytest.raises(ConfigurationError, match="on frames"):
        T.DropPixel(hot_pixel_frequency=5)(frames)
    with pytest.raises(ConfigurationError, match="fields"):
        T.identify_hot_pixels(np.zeros(3), hot_pixel_frequency=5)
    assert torch.equal(T.DropPixel(coordinates=[(1, 1)])(frames), frames)
