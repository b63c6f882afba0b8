"""Frames from slicers (``to_frames_by_slices``, ``ToFrameBySlices``): by hand, and equal
to Tonic's ``ToFrame`` (time_window / event_count / n_time_bins / n_event_bins, with
overlaps and incomplete slices) on the real N-MNIST files."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_shared_data
from spikeflow.data import (
    EventRecording,
    SliceAtIndices,
    SliceByEventBins,
    SliceByEventCount,
    SliceByTime,
    SliceByTimeBins,
    ToFrameBySlices,
    make_events,
    to_frames_by_slices,
)
from spikeflow.data.cache import canonical_key
from spikeflow.data.io import read_atis_bin
from spikeflow.errors import ConfigurationError, DataFormatError

# t: 0 10 20 30 40; x: 0 1 1 2 1; y: 0 0 1 1 1; p: 1 1 0 1 1 (sensor 3 x 2 x 2)
FIVE = EventRecording(make_events(np.array([0, 10, 20, 30, 40]), np.array([0, 1, 1, 2, 1]),
                                  np.array([0, 0, 1, 1, 1]), np.array([1, 1, 0, 1, 1])),
                      (3, 2, 2))  # fmt: skip


def frame(*events: tuple[int, int, int]) -> np.ndarray:
    """A [P, H, W] frame counting the (p, y, x) triples given."""
    out = np.zeros((2, 2, 3), dtype=np.int32)
    for p, y, x in events:
        out[p, y, x] += 1
    return out


def test_overlapping_event_counts_by_hand():
    # windows of 3 events sliding by 2: events [0, 3) and [2, 5); event 2 is in both
    got = to_frames_by_slices(FIVE, SliceByEventCount(3, overlap=1))
    assert got.dtype == np.int32
    want = np.stack([frame((1, 0, 0), (1, 0, 1), (0, 1, 1)),
                     frame((0, 1, 1), (1, 1, 2), (1, 1, 1))])  # fmt: skip
    np.testing.assert_array_equal(got, want)


def test_time_windows_by_hand_with_and_without_the_incomplete_one():
    # windows of 15 µs from t = 0 over the 40 µs span: [0, 15), [15, 30) are whole; the
    # incomplete [30, 45) holds the events at 30 and 40 (Tonic's slice counts)
    got = to_frames_by_slices(FIVE, SliceByTime(15))
    want = [frame((1, 0, 0), (1, 0, 1)), frame((0, 1, 1))]
    np.testing.assert_array_equal(got, np.stack(want))
    got = ToFrameBySlices(SliceByTime(15, include_incomplete=True))(FIVE)
    np.testing.assert_array_equal(got, np.stack([*want, frame((1, 1, 2), (1, 1, 1))]))


def test_arbitrary_cuts_and_empty_slices():
    got = to_frames_by_slices(FIVE, SliceAtIndices([0, 2, 1], [5, 2, 2]))
    np.testing.assert_array_equal(got[0], to_frames_by_slices(FIVE, SliceByEventBins(1))[0])
    assert got[0].sum() == 5 and got[1].sum() == 0
    np.testing.assert_array_equal(got[2], frame((1, 0, 1)))


def test_empty_recording_gives_the_slicers_empty_frames():
    empty = EventRecording(FIVE.events[:0], (3, 2, 2))
    assert to_frames_by_slices(empty, SliceByTimeBins(4)).shape == (4, 2, 2, 3)
    assert to_frames_by_slices(empty, SliceByTimeBins(4)).sum() == 0
    one = to_frames_by_slices(empty, SliceByEventCount(3))  # one empty slice, as the slicer
    assert one.shape == (1, 2, 2, 3) and one.sum() == 0


def test_bad_arguments_are_named():
    with pytest.raises(ConfigurationError, match=r"slicer must be a spikeflow\.data slicer"):
        ToFrameBySlices(lambda rec: rec)
    with pytest.raises(ConfigurationError, match="get_slice_metadata"):
        to_frames_by_slices(FIVE, 20)
    unsorted = EventRecording(FIVE.events[::-1].copy(), (3, 2, 2), source="f.bin")
    with pytest.raises(DataFormatError, match=r"f\.bin.*not sorted"):
        to_frames_by_slices(unsorted, SliceByEventCount(2))


def test_a_slicer_of_your_own_is_checked():
    class FromTheEnd(SliceByEventCount):  # a bad cut: start -1 would index the last event
        def get_slice_metadata(self, recording):
            return np.array([[-1, 1]])

    with pytest.raises(ConfigurationError, match=r"FromTheEnd: metadata row 0 = \[-1, 1\]"):
        to_frames_by_slices(FIVE, FromTheEnd(2))


def test_cache_key_follows_the_slicer():
    keys = {
        canonical_key(ToFrameBySlices(s).cache_key())
        for s in (
            SliceByTime(20),
            SliceByTime(20, 5),
            SliceByTime(20, include_incomplete=True),
            SliceByEventCount(20),
            SliceByTimeBins(20),
        )
    }
    assert len(keys) == 5
    assert repr(ToFrameBySlices(SliceByTime(20))).startswith("ToFrameBySlices(SliceByTime(")


@pytest.mark.parametrize(
    ("tonic_kwargs", "slicer"),
    [
        ({"time_window": 20_000.0}, SliceByTime(20_000)),
        ({"time_window": 20_000.0, "overlap": 5_000.0, "include_incomplete": True},
         SliceByTime(20_000, 5_000, include_incomplete=True)),
        ({"event_count": 500, "overlap": 100}, SliceByEventCount(500, 100)),
        ({"event_count": 500, "overlap": 100, "include_incomplete": True},
         SliceByEventCount(500, 100, include_incomplete=True)),
        ({"n_time_bins": 10, "overlap": 0.3}, SliceByTimeBins(10, 0.3)),
        ({"n_event_bins": 7, "overlap": 0.5}, SliceByEventBins(7, 0.5)),
    ],
)  # fmt: skip
def test_equal_to_tonic_to_frame_on_real_nmnist(tonic_kwargs, slicer):
    transforms = pytest.importorskip("tonic.transforms", reason="Tonic is not installed")
    files = sorted(require_shared_data("nmnist-small").glob("Train/*/*.bin"))[::250]
    for path in files:
        rec = read_atis_bin(path)
        events = np.zeros(len(rec), dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
        for field in "xytp":
            events[field] = rec.events[field]
        want = transforms.ToFrame(sensor_size=rec.sensor_size, **tonic_kwargs)(events)
        got = ToFrameBySlices(slicer)(rec)
        assert got.shape == want.shape, path
        np.testing.assert_array_equal(got, want, err_msg=str(path))


def _lava_fill_tensor(rec: EventRecording, steps: int, sampling_time: float) -> np.ndarray:
    """Lava-DL's ``slayer.io.read_2d_spikes(f).fill_tensor(zeros(C, H, W, steps),
    sampling_time)``, transcribed: times in ms, bin ``round(t / sampling_time)`` from
    ``t = 0``, OR-binned to ``1 / sampling_time``, bins past the end dropped."""
    e = rec.events
    width, height, channels = rec.sensor_size
    out = np.zeros((channels, height, width, steps))
    t = np.round(e["t"] / 1000 / sampling_time).astype(int)
    ok = t < steps
    out[e["p"][ok].astype(int), e["y"][ok], e["x"][ok], t[ok]] = 1 / sampling_time
    return out


@pytest.mark.parametrize(("steps", "sampling_time"), [(300, 1), (160, 2)])
def test_lava_fill_tensor_recipe_of_the_migration_page(steps, sampling_time):
    """docs/migration.md "From Lava-DL": ``SliceByTime`` windows centred on multiples of
    the sampling time give Lava-DL's input tensor, but for events exactly halfway
    between two bins (numpy rounds those to the even bin)."""
    s_us = 1000 * sampling_time
    slicer = SliceByTime(s_us, include_incomplete=True, start_time=-s_us // 2,
                         end_time=steps * s_us - s_us // 2)  # fmt: skip
    ties = 0
    for f in sorted(require_shared_data("nmnist-small").glob("Train/*/*.bin"))[::100]:
        rec = read_atis_bin(f)
        halfway = rec.events["t"] % (2 * s_us) == s_us // 2
        ties += int(halfway.sum())
        rec = EventRecording(rec.events[~halfway], rec.sensor_size)
        ours = np.minimum(ToFrameBySlices(slicer)(rec), 1) / sampling_time  # [T, C, H, W]
        assert ours.shape == (steps, *rec.sensor_size[::-1])
        np.testing.assert_array_equal(ours.transpose(1, 2, 3, 0),
                                      _lava_fill_tensor(rec, steps, sampling_time))  # fmt: skip
    assert ties > 0  # the exception is real on these files
