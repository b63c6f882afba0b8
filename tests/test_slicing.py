"""Slicers (spikeflow.data.slicing) and SlicedDataset (spikeflow.data.sliced_dataset).

The slicers' cuts are checked equal to Tonic 1.7's on real N-MNIST recordings
(../shared/data; skipped when absent) and on generated streams, and against cuts worked
out by hand on small streams; SlicedDataset equal to Tonic's SlicedDataset on the real
N-MNIST test split read through spikeflow's NMNIST. Where spikeflow departs from Tonic
(stops clipped to the recording, empty recordings, no negative overlap) a test says so.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_shared_data
from spikeflow.data import (
    EVENT_DTYPE,
    NMNIST,
    EventRecording,
    SliceAtIndices,
    SliceAtTimePoints,
    SliceByEventBins,
    SliceByEventCount,
    SliceByTime,
    SliceByTimeBins,
    SlicedDataset,
    ToFrame,
    make_events,
)
from spikeflow.data.cache import ArrayCache, CacheCorruptionWarning
from spikeflow.data.sliced_dataset import dataset_key
from spikeflow.data.transforms import RandomFlipLR, TimeAlignment
from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError
from tonic_events import nmnist_recordings, to_tonic


def tonic_slicers():
    return pytest.importorskip("tonic.slicers", reason="Tonic is not installed")


def times(*t: int, source: str = "s") -> EventRecording:
    n = len(t)
    return EventRecording(make_events(np.array(t, np.int64), np.zeros(n), None, np.zeros(n)),
                          (4, 1, 2), source)  # fmt: skip


def assert_equal_to_tonic(ours, theirs, data) -> int:
    """Same cuts (Tonic's stops clipped to the length) and the same pieces."""
    events = data.events if isinstance(data, EventRecording) else data
    meta = ours.get_slice_metadata(data)
    assert meta.dtype == np.int64 and meta.ndim == 2 and meta.shape[1] == 2
    want = np.asarray(theirs.get_slice_metadata(to_tonic(events), 0), np.int64).reshape(-1, 2)
    np.testing.assert_array_equal(meta, np.minimum(want, len(events)))
    pieces, their_pieces = ours.slice(data), theirs.slice(events, 0)[0]
    assert len(pieces) == len(their_pieces) == len(meta)
    assert all(isinstance(p, EventRecording) and p.sensor_size == data.sensor_size for p in pieces)
    assert [p.events.tobytes() for p in pieces] == [events[a:b].tobytes() for a, b in meta]
    t = [np.asarray(p["t"], np.int64).tobytes() for p in their_pieces]
    assert t == [p.events["t"].astype(np.int64).tobytes() for p in pieces]
    return len(meta)


def pairs(ours, tonic_slicers):
    """(spikeflow slicer, Tonic slicer) built with the same arguments."""
    return ours, getattr(tonic_slicers, type(ours).__name__)(**ours.params())


# -- equal to Tonic ------------------------------------------------------------------------
def test_slicers_equal_tonic_on_real_recordings():
    ts = tonic_slicers()
    slicers = [
        SliceByTime(50_000), SliceByTime(50_000, 20_000, True), SliceByTime(33_333, 1),
        SliceByTime(70_000.5, 0.25, False), SliceByTime(70_000.5, 0.25, True),
        SliceByTime(40_000, 10_000, True, start_time=5_000, end_time=250_000),
        SliceByTime(10**7), SliceByEventCount(1000), SliceByEventCount(999, 500, True),
        SliceByEventCount(10**6, 3), SliceByTimeBins(3), SliceByTimeBins(4, 0.3),
        SliceByEventBins(3), SliceByEventBins(4, 0.3),
        SliceAtIndices([0, 7, 100, 4000], [10, 7, 5000, 10**6]),
        SliceAtTimePoints([0, 5000.5, 100_000], [10_000, 6000, 10**6]),
    ]  # fmt: skip
    counts = []
    for r in nmnist_recordings():
        for ours in slicers:
            counts.append(assert_equal_to_tonic(*pairs(ours, ts), r))
    assert max(counts) > 4 and min(counts) >= 1


sorted_stream = st.lists(st.integers(0, 400), max_size=40).map(sorted)


@settings(max_examples=60, deadline=None)
@given(t=sorted_stream, window=st.integers(5, 150), overlap=st.integers(0, 149),
       incomplete=st.booleans(), count=st.integers(1, 12), bins=st.integers(1, 5),
       fraction=st.sampled_from([0, 0.25, 0.5]), bounds=st.tuples(st.integers(-50, 300),
                                                                  st.integers(0, 300)))  # fmt: skip
def test_slicers_equal_tonic_on_generated_streams(
    t, window, overlap, incomplete, count, bins, fraction, bounds
):
    ts = tonic_slicers()
    r = times(*t)
    overlap = overlap % window
    start, end = bounds[0], bounds[0] + bounds[1]
    slicers = [
        SliceByEventCount(count, overlap % count, incomplete),
        SliceByEventBins(bins, fraction),
    ]
    timed = [SliceByTime(window, overlap, incomplete), SliceByTimeBins(bins, fraction),
             SliceByTime(window, overlap, incomplete, start_time=start, end_time=end),
             SliceByTime(window + 0.5, overlap, incomplete, start_time=start + 0.25)]  # fmt: skip
    # Tonic indexes t[0] and t[-1] of an empty recording (IndexError): see the test below
    for ours in slicers + (timed if t else timed[2:3]):
        assert_equal_to_tonic(*pairs(ours, ts), r)


# -- cuts worked out by hand ---------------------------------------------------------------
def cuts(slicer, data) -> list[list[int]]:
    return slicer.get_slice_metadata(data).tolist()


def test_slice_by_time_by_hand():
    r = times(*range(0, 101, 10))  # 11 events at 0, 10, ..., 100 µs
    # stride 20, d = 100: floor(70/20) + 1 = 4 windows, ceil(3.5) + 1 = 5
    assert cuts(SliceByTime(30, 10), r) == [[0, 3], [2, 5], [4, 7], [6, 9]]
    assert cuts(SliceByTime(30, 10, True), r) == [[0, 3], [2, 5], [4, 7], [6, 9], [8, 11]]
    # a window that ends exactly at the last event leaves it out (as Tonic), both ways
    assert cuts(SliceByTime(50), r) == cuts(SliceByTime(50, 0, True), r) == [[0, 5], [5, 10]]
    # a window longer than the recording: one slice of everything
    assert cuts(SliceByTime(1000), r) == cuts(SliceByTime(1000, 999, True), r) == [[0, 11]]
    assert cuts(SliceByTime(20, start_time=35, end_time=75), r) == [[4, 6], [6, 8]]
    assert cuts(SliceByTime(20, start_time=500), r) == [[11, 11]]  # starts after the end
    pieces = SliceByTime(30, 10).slice(r)
    assert [p.events["t"].tolist() for p in pieces[:2]] == [[0, 10, 20], [20, 30, 40]]
    assert all(p.source == "s" and p.sensor_size == (4, 1, 2) for p in pieces)


def test_count_and_index_slicers_by_hand():
    r = times(*range(10))
    assert cuts(SliceByEventCount(4), r) == [[0, 4], [4, 8]]
    assert cuts(SliceByEventCount(4, include_incomplete=True), r) == [[0, 4], [4, 8], [8, 10]]
    assert cuts(SliceByEventCount(4, 2), r) == [[0, 4], [2, 6], [4, 8], [6, 10]]
    assert cuts(SliceByEventCount(25), r) == [[0, 10]]  # fewer events than a slice: one
    assert cuts(SliceByEventBins(3), r) == [[0, 3], [3, 6], [6, 9]]  # the 10th is left out
    assert cuts(SliceByTimeBins(3), r) == [[0, 3], [3, 6], [6, 9]]  # b = 3 µs, t = 9 out
    assert cuts(SliceAtIndices([8, 0, 3], [20, 2, 3]), r) == [[8, 10], [0, 2], [3, 3]]
    assert cuts(SliceAtTimePoints([2.5, 0], [6, 100]), r) == [[3, 6], [0, 10]]
    starts, ends = np.array([2, 4]), torch.tensor([5, 9])
    at, points = SliceAtIndices(starts, ends), SliceAtTimePoints(starts, ends)
    starts[0], ends[1] = -1, 0  # the slicers keep copies of what they checked
    assert cuts(at, r) == cuts(points, r) == [[2, 5], [4, 9]]


def test_empty_recordings():
    ts = tonic_slicers()
    empty = EventRecording(np.zeros(0, EVENT_DTYPE), (4, 1, 2))
    # Tonic gives these too
    for ours in (SliceByEventCount(5), SliceByEventCount(5, 2, True), SliceByEventBins(3),
                 SliceAtIndices([0, 2], [4, 3]), SliceAtTimePoints([0], [9]),
                 SliceByTime(10, start_time=0, end_time=35)):  # fmt: skip
        assert_equal_to_tonic(*pairs(ours, ts), empty)
    assert cuts(SliceByEventCount(5), empty) == [[0, 0]]
    assert (
        cuts(SliceByTime(10, start_time=0, end_time=35, include_incomplete=True), empty)
        == [[0, 0]] * 4
    )
    # Tonic raises IndexError (it reads t[0], t[-1]); spikeflow: one empty slice, and
    # SliceByTimeBins bin_count of them
    for ours in (SliceByTime(10), SliceByTime(10, start_time=5), SliceByTime(10, end_time=5)):
        assert cuts(ours, empty) == [[0, 0]]
        with pytest.raises(IndexError):
            pairs(ours, ts)[1].get_slice_metadata(to_tonic(empty), 0)
    assert cuts(SliceByTimeBins(3), empty) == [[0, 0]] * 3
    assert [len(p) for p in SliceByTime(10).slice(empty)] == [0]


def test_frames_and_plain_arrays():
    frames = torch.arange(10 * 2 * 3 * 3).reshape(10, 2, 3, 3)
    pieces = SliceByEventCount(4, 1).slice(frames)
    assert [p.shape[0] for p in pieces] == [4, 4, 4] and torch.equal(pieces[1], frames[3:7])
    assert [p.shape[0] for p in SliceByEventBins(2).slice(frames.numpy())] == [5, 5]
    assert torch.equal(SliceAtIndices([2], [5]).slice(frames)[0], frames[2:5])
    with pytest.raises(ConfigurationError, match=r"SliceByTime cuts by time.*field 't'.*Tensor"):
        SliceByTime(10).slice(frames)
    with pytest.raises(ConfigurationError, match=r"SliceByEventCount: expected.*got list"):
        SliceByEventCount(2).slice([1, 2, 3])
    with pytest.raises(ShapeError, match="0-d"):
        SliceByEventCount(2).slice(np.array(3.0))
    plain = times(0, 5, 9).events
    pieces = SliceByTime(5, include_incomplete=True).slice(plain)
    assert all(type(p) is np.ndarray for p in pieces) and [len(p) for p in pieces] == [1, 2]


def test_unsorted_or_float_timestamps_are_refused():
    r = times(0, 10, 5, 20, source="rec.bin")
    for slicer in (SliceByTime(10), SliceByTimeBins(2), SliceAtTimePoints([0], [5])):
        name = type(slicer).__name__
        with pytest.raises(DataFormatError, match=rf"{name}: recording rec.bin is not sorted by "
                           r"time: event 2 at t=5 us comes after t=10 us.*SortEvents"):  # fmt: skip
            slicer.get_slice_metadata(r)
    assert cuts(SliceByEventCount(2), r) == [[0, 2], [2, 4]]  # counting needs no order
    seconds = np.zeros(3, [("t", "<f8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])
    with pytest.raises(DataFormatError, match=r"dtype float64; field 't' must hold integer"):
        SliceByTime(10).slice(seconds)
    with pytest.raises(ShapeError, match="1-D"):
        SliceByTime(10).slice(times(0, 1).events.reshape(1, 2))


def tonic_layout(t, dtype) -> np.ndarray:
    events = np.zeros(len(t), [("x", "<i8"), ("y", "<i8"), ("t", dtype), ("p", "<i8")])
    events["t"] = t
    return events


def test_time_slicers_are_exact_at_the_ends_of_int64():
    top = 2**63 - 1
    near_top = tonic_layout([top - 40, top - 20, top], "<i8")
    # a window that ends past int64 holds every event from its start (no wrap-around)
    assert cuts(SliceByTime(100), near_top) == [[0, 3]]
    assert cuts(SliceByTime(30, include_incomplete=True), near_top) == [[0, 2], [2, 3]]
    # uint64 timestamps are compared as integers, not as float64 (equal past 2**53)
    base = 2**62
    signed, unsigned = (tonic_layout(base + np.arange(4), dt) for dt in ("<i8", "<u8"))
    for slicer, want in [
        (SliceByTime(2), [[0, 2]]),
        (SliceByTime(2, 1, True), [[0, 2], [1, 3]]),
        (SliceByTimeBins(3), [[0, 1], [1, 2], [2, 3]]),
        (SliceAtTimePoints(np.array([base + 1], np.uint64), [base + 3]), [[1, 3]]),
    ]:
        assert cuts(slicer, unsigned) == cuts(slicer, signed) == want
    with pytest.raises(DataFormatError, match=r"timestamp t=9223372036854775808 us past the int64"):
        SliceByTime(2).slice(tonic_layout(np.array([2**63], np.uint64), "<u8"))
    # big-endian timestamps (copied once to native order) cut the same
    swapped = tonic_layout([0, 5, 5, 9, 20], ">i8")
    assert cuts(SliceByTime(5, 1, True), swapped) == [[0, 1], [1, 3], [3, 4], [4, 4], [4, 5]]
    with pytest.raises(ShapeError, match=r"field 't' of the recording holds \(2,\) values"):
        SliceByTime(2).slice(np.zeros(3, [("t", "<i8", (2,)), ("x", "<u2")]))


# -- bad arguments -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: SliceByTime(0), ConfigurationError, r"time_window must be > 0"),
        (lambda: SliceByTime(-5.0), ConfigurationError, r"time_window must be > 0"),
        (lambda: SliceByTime(10, 10), ConfigurationError, r"overlap must be in \[0, time_wi"),
        (lambda: SliceByTime(10, 12), ConfigurationError, r"overlap must be in \[0, time_wi"),
        (lambda: SliceByTime(10, -1), ConfigurationError, r"overlap must be in \[0, time_wi"),
        (lambda: SliceByTime(float("nan")), ConfigurationError, r"time_window must be a finite"),
        (lambda: SliceByTime("10"), ConfigurationError, r"time_window must be a finite"),
        (lambda: SliceByTime(10, include_incomplete="no"), ConfigurationError,
         r"include_incomplete must be True or False"),
        (lambda: SliceByTime(10, start_time=5, end_time=4), ConfigurationError,
         r"end_time \(4\) is before start_time \(5\)"),
        (lambda: SliceByTime(10, end_time=2**64), ConfigurationError,
         r"end_time = 18446744073709551616 µs is outside the int64 range"),
        (lambda: SliceAtTimePoints([0], np.array([2**63], np.uint64)), ConfigurationError,
         r"end_tw\[0\] = 9223372036854775808 µs is outside the int64 range"),
        (lambda: SliceByEventCount(0), ConfigurationError, r"event_count must be an integer >= 1"),
        (lambda: SliceByEventCount(2.0), ConfigurationError, r"event_count must be an integer"),
        (lambda: SliceByEventCount(4, 4), ConfigurationError, r"overlap must be in \[0, event_c"),
        (lambda: SliceByEventCount(4, -1), ConfigurationError, r"overlap must be an integer >= 0"),
        (lambda: SliceByTimeBins(0), ConfigurationError, r"bin_count must be an integer >= 1"),
        (lambda: SliceByEventBins(2, 1.0), ConfigurationError, r"overlap must be a finite real"),
        (lambda: SliceAtIndices([0, 1], [2]), ShapeError,
         r"start_indices has 2 entries but end_indices has 1"),
        (lambda: SliceAtIndices([3], [2]), ConfigurationError,
         r"slice 0 ends before it starts \(end_indices\[0\] = 2 < start_indices\[0\] = 3\)"),
        (lambda: SliceAtIndices([-1], [2]), ConfigurationError, r"start_indices\[0\] = -1 is neg"),
        (lambda: SliceAtIndices([0.5], [2]), ConfigurationError, r"start_indices must hold integ"),
        (lambda: SliceAtIndices([[0]], [[2]]), ShapeError, r"start_indices must be a 1-D"),
        (lambda: SliceAtTimePoints([0, 5], [1]), ShapeError, r"start_tw has 2 entries but"),
        (lambda: SliceAtTimePoints([0], [np.inf]), ConfigurationError, r"end_tw\[0\] = inf is n"),
        (lambda: SliceAtTimePoints([5], [1]), ConfigurationError, r"end_tw\[0\] = 1 < start_tw"),
    ],
)  # fmt: skip
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_slice_with_metadata_checks_the_rows():
    r = times(0, 1, 2, 3)
    slicer = SliceByEventCount(2)
    assert [len(p) for p in slicer.slice_with_metadata(r, [[1, 4], [0, 0]])] == [3, 0]
    for bad in ([[0, 5]], [[3, 2]], [[-1, 2]]):
        with pytest.raises(ConfigurationError, match=r"metadata row 0 = .* is not 0 <= start"):
            slicer.slice_with_metadata(r, bad)
    with pytest.raises(ConfigurationError, match=r"\[n, 2\] integer"):
        slicer.slice_with_metadata(r, [[0.0, 1.0]])


def test_cache_keys_and_reprs():
    assert SliceByTime(10).cache_key() == SliceByTime(np.int64(10)).cache_key()
    assert SliceByTime(10).cache_key() != SliceByTime(10, include_incomplete=True).cache_key()
    assert SliceAtIndices([0], [5]).cache_key() != SliceAtIndices([0], [6]).cache_key()
    assert repr(SliceByEventCount(5, 1)) == (
        "SliceByEventCount(event_count=5, overlap=1, include_incomplete=False)"
    )
    assert repr(SliceAtIndices(range(100), range(1, 101))).startswith(
        "SliceAtIndices(start_indices=[ 0,  1,  2, ..., 97, 98, 99]"
    )


# -- SlicedDataset -------------------------------------------------------------------------
_READS: dict[int, int] = {}  # outside the dataset: its attributes are its cache key


class Recordings(torch.utils.data.Dataset):
    """A small in-memory dataset of (EventRecording, label); counts its reads."""

    def __init__(self, lengths=(35, 0, 12), gap: int = 10) -> None:
        self.events = [times(*range(0, n * gap, gap)).events for n in lengths]
        self.classes = ("a", "b")
        self.targets = [i % 2 for i in range(len(lengths))]
        _READS[id(self)] = 0

    @property
    def reads(self) -> int:
        return _READS[id(self)]

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, i: int):
        _READS[id(self)] += 1
        return EventRecording(self.events[i], (4, 1, 2)), self.targets[i]


def test_sliced_dataset_by_hand():
    ds = Recordings()
    sliced = SlicedDataset(ds, SliceByEventCount(10, include_incomplete=True),
                           target_transform=lambda y: y + 10)  # fmt: skip
    # 35 events: 4 slices; none: one empty slice; 12 events: 2 slices
    assert len(sliced) == 7 and sliced.sample_index.tolist() == [0, 0, 0, 0, 1, 2, 2]
    assert sliced.slice_bounds.tolist()[3:6] == [[30, 35], [0, 0], [0, 10]]
    assert [m.tolist() for m in sliced.metadata] == [
        [[0, 10], [10, 20], [20, 30], [30, 35]], [[0, 0]], [[0, 10], [10, 12]]]  # fmt: skip
    piece, target = sliced[3]
    assert piece.events["t"].tolist() == [300, 310, 320, 330, 340] and target == 10
    assert sliced[-1][0].events["t"].tolist() == [100, 110] and sliced[-1][1] == 10
    assert sliced.classes == ("a", "b") and sliced.targets == [0, 0, 0, 0, 1, 0, 0]
    with pytest.raises(IndexError, match="SlicedDataset: index 7 is out of range for 7 slices"):
        sliced[7]
    with pytest.raises(IndexError):
        sliced[-8]
    assert len(SlicedDataset(ds, SliceAtIndices([], []))) == 0
    none = SlicedDataset(Recordings(lengths=()), SliceByTime(10))
    assert len(none) == 0 and none.metadata == [] and none.targets == []  # Tonic's: []


def test_sliced_dataset_equals_tonic_on_real_nmnist():
    root = require_shared_data("nmnist-small")
    tonic = pytest.importorskip("tonic", reason="Tonic is not installed")
    ts = tonic_slicers()
    nmnist = NMNIST(root, train=False)

    class AsTonic:  # the same recordings as Tonic's structured arrays
        def __len__(self) -> int:
            return len(nmnist)

        def __getitem__(self, i):
            r, y = nmnist[i]
            return to_tonic(r), y

    ours = SliceByTime(100_000, 20_000)
    sliced = SlicedDataset(nmnist, ours)
    theirs = tonic.SlicedDataset(AsTonic(), pairs(ours, ts)[1])
    assert len(sliced) == len(theirs) > 2 * len(nmnist)
    for i in range(len(sliced)):
        (piece, y), (their_piece, their_y) = sliced[i], theirs[i]
        assert y == their_y and len(piece) == len(their_piece)
        back = make_events(*(their_piece[name] for name in "txyp"))
        assert piece.events.tobytes() == back.tobytes()
    assert sliced.classes == NMNIST.classes
    assert sliced.targets == [nmnist.targets[i] for i in sliced.sample_index]


def test_sliced_dataset_frames_through_dataloader_workers():
    root = require_shared_data("nmnist-small")
    nmnist = torch.utils.data.Subset(NMNIST(root, train=False), range(0, 100, 10))
    sliced = SlicedDataset(nmnist, SliceByTime(100_000), transform=ToFrame(4))
    loader = torch.utils.data.DataLoader(sliced, batch_size=8, num_workers=2)
    frames, labels = (torch.cat(parts) for parts in zip(*loader))
    assert frames.shape == (len(sliced), 4, 2, 34, 34) and frames.sum() > 0
    plain = SlicedDataset(nmnist, SliceByTime(100_000))
    assert len(plain) == len(sliced) > 20
    for i in range(len(sliced)):  # what the main process computes
        piece, label = plain[i]
        np.testing.assert_array_equal(frames[i].numpy(), ToFrame(4)(piece))
        assert labels[i] == label == nmnist[int(sliced.sample_index[i])][1]


def test_sliced_dataset_refuses_what_it_cannot_slice(tmp_path, monkeypatch):
    ds = Recordings()
    ts = pytest.importorskip("tonic.slicers", reason="Tonic is not installed")
    with pytest.raises(ConfigurationError, match=r"a Tonic slicer: use spikeflow\.data's class"):
        SlicedDataset(ds, ts.SliceByTime(10))
    ds.transform = RandomFlipLR(0.5)
    with pytest.raises(ConfigurationError, match=r"wrapped dataset's transform .* is random"):
        SlicedDataset(ds, SliceByTime(10))
    for wrapped in (torch.utils.data.Subset(ds, [0, 2]), torch.utils.data.ConcatDataset([ds])):
        with pytest.raises(ConfigurationError, match=r"transform .* \(of the Recordings it "
                           r"wraps\) is random"):  # fmt: skip
            SlicedDataset(wrapped, SliceByTime(10))
    ds.transform = TimeAlignment()  # deterministic: fine
    SlicedDataset(ds, SliceByTime(10))
    with pytest.raises(ConfigurationError, match=r"dataset\[0\] returned EventRecording"):
        SlicedDataset([times(0, 1)], SliceByTime(10))
    with pytest.raises(ConfigurationError, match="map-style dataset"):
        SlicedDataset(iter([]), SliceByTime(10))
    monkeypatch.chdir(tmp_path)  # where a regression would write its cache
    with pytest.raises(ConfigurationError, match="metadata_path is an empty path"):
        SlicedDataset(ds, SliceByTime(10), metadata_path="")

    class Unclipped(SliceAtIndices):  # a user's slicer with Tonic's unclipped stops
        def get_slice_metadata(self, recording):
            return np.stack([self.start_indices, self.end_indices], axis=1)

    # refused when the cuts are computed, not later as "the dataset changed"
    with pytest.raises(ConfigurationError, match=r"Unclipped.get_slice_metadata of dataset\[1\]:"
                       r" metadata row 0 = \[0, 20\] is not 0 <= start <= stop <= 0"):  # fmt: skip
        SlicedDataset(ds, Unclipped([0], [20]))
    # events read later that no longer fit the cuts
    sliced = SlicedDataset(ds, SliceByEventCount(10))
    ds.events[0] = ds.events[0][:15]
    with pytest.raises(DataFormatError, match="sample 0 has 15 items now, but slice 2 ends at 30"):
        sliced[2]


# -- the metadata cache --------------------------------------------------------------------
def entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.sfc"))


def test_metadata_cache_hit_and_invalidation(tmp_path):
    ds = Recordings()
    first = SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path / "meta")
    assert ds.reads == 3 and len(entries(tmp_path)) == 1
    again = SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path / "meta")
    assert ds.reads == 3  # read back, not computed
    np.testing.assert_array_equal(again.slice_bounds, first.slice_bounds)
    np.testing.assert_array_equal(again.sample_index, first.sample_index)
    # another slicer, or the dataset's content changed: computed again, in its own entry
    other = SlicedDataset(ds, SliceByEventCount(10, 5), metadata_path=tmp_path / "meta")
    assert ds.reads == 6 and len(other) > len(first) and len(entries(tmp_path)) == 2
    ds.events[2] = ds.events[2][:5]
    changed = SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path / "meta")
    assert ds.reads == 9 and changed.slice_bounds[-1].tolist() == [0, 5]
    assert not list(tmp_path.rglob("*.tmp"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match=r"metadata_path .* is a file"):
        SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path / "file")


def test_metadata_cache_follows_the_files_of_a_spikeflow_dataset(tmp_path):
    real = require_shared_data("nmnist-small", "Test")
    for digit in range(10):  # one recording per class, in a folder the test may change
        (tmp_path / "Test" / str(digit)).mkdir(parents=True)
        shutil.copy(sorted((real / str(digit)).glob("*.bin"))[0], tmp_path / "Test" / str(digit))
    meta = tmp_path / "meta"
    first = SlicedDataset(NMNIST(tmp_path, train=False), SliceByTime(50_000), meta)
    hit = SlicedDataset(NMNIST(tmp_path, train=False), SliceByTime(50_000), meta)
    assert len(entries(meta)) == 1 and len(hit) == len(first)
    victim = next((tmp_path / "Test" / "3").glob("*.bin"))
    victim.write_bytes(victim.read_bytes()[: 5 * 400])  # the first 400 events only
    changed = SlicedDataset(NMNIST(tmp_path, train=False), SliceByTime(50_000), meta)
    assert len(entries(meta)) == 2 and len(changed) < len(first)
    piece, label = changed[int(np.flatnonzero(changed.sample_index == 3)[-1])]
    assert label == 3 and len(piece) > 0
    aligned = SlicedDataset(NMNIST(tmp_path, False, event_transform=TimeAlignment()),
                               SliceByTime(50_000), meta)  # fmt: skip
    assert len(entries(meta)) == 3 and len(aligned) == len(changed)


def test_dataset_keys():
    ds = Recordings()
    key = dataset_key(ds)
    assert key["class"].endswith("Recordings") and key["length"] == 3
    subset = torch.utils.data.Subset(ds, [0, 2])
    before = dataset_key(subset)
    ds.events[2] = ds.events[2][:5]  # the wrapped dataset's content: the subset's key too
    assert dataset_key(ds) != key and dataset_key(subset) != before

    class Keyed(Recordings):
        def cache_key(self):
            return {"version": 1}

    keyed = Keyed()
    first = dataset_key(keyed)
    keyed.events.pop()  # its own cache_key() is the whole identity
    assert dataset_key(keyed) == first

    # by content, not by a repr that elides the middle of the events
    a, b = times(*range(0, 50_000, 10)), times(*range(0, 50_000, 10))
    b.events["t"][100:-100] = 990
    assert repr(a) == repr(b) and dataset_key([(a, 0)]) != dataset_key([(b, 0)])
    ds.events = [a]
    before = dataset_key(ds)
    ds.events = [b]
    assert dataset_key(ds) != before
    ends = np.arange(1, 101)
    ds.events = [SliceAtIndices(range(100), ends)]
    before = dataset_key(ds)
    ends[50] += 5  # a slicer attribute counts by its cache_key(), not by its short repr
    ds.events = [SliceAtIndices(range(100), ends)]
    assert repr(ds.events[0]) == repr(SliceAtIndices(range(100), np.arange(1, 101)))
    assert dataset_key(ds) != before


def test_metadata_cache_of_a_list_dataset_follows_its_content(tmp_path):
    short, long = [(times(0, 1, 2), 0)], [(times(*range(0, 300, 10)), 0)]
    assert len(SlicedDataset(short, SliceByTime(10), tmp_path)) == 1
    assert len(SlicedDataset(long, SliceByTime(10), tmp_path)) == 29  # not short's cuts


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_metadata_cache_is_recomputed_with_a_warning(tmp_path, damage):
    ds = Recordings()
    want = SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path)
    (entry,) = entries(tmp_path)
    raw = bytearray(entry.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    else:
        del raw[len(raw) // 2 :]
    entry.write_bytes(bytes(raw))
    with pytest.warns(CacheCorruptionWarning, match="rebuilding"):
        got = SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path)
    assert ds.reads == 6
    np.testing.assert_array_equal(got.slice_bounds, want.slice_bounds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path)  # rewritten
    assert ds.reads == 6


def test_a_checksummed_but_impossible_table_is_recomputed(tmp_path):
    ds = Recordings()
    sliced = SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path)
    cache = ArrayCache(tmp_path, sliced.cache_namespace())
    cache.store({"what": "slice metadata"}, np.array([[5, 0, 10]]))  # sample 5 of 3
    with pytest.warns(CacheCorruptionWarning, match="a sample index out of range"):
        again = SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path)
    np.testing.assert_array_equal(again.slice_bounds, sliced.slice_bounds)


def test_metadata_write_is_atomic(tmp_path, monkeypatch):
    ds = Recordings()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)  # the rename that publishes an entry
    with pytest.warns(RuntimeWarning, match="could not write cache entry .*disk full"):
        sliced = SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path)
    assert len(sliced) == 5 and not entries(tmp_path) and not list(tmp_path.rglob("*.tmp"))
    monkeypatch.undo()
    SlicedDataset(ds, SliceByEventCount(10), metadata_path=tmp_path)
    assert ds.reads == 6 and len(entries(tmp_path)) == 1
