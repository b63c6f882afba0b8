"""Tonic 1.7's argument forms of the event transforms: ``Denoise(neighbours=4,
tonic_start=True)`` (Tonic's events exactly, on real N-MNIST recordings and generated
streams), ``Downsample(spatial_factor=(sx, sy))`` and ``target_size``, ``DropEvent`` and
``RefractoryPeriod`` with a range drawn per sample, ``TimeJitter(sort_timestamps=False)``.
Random ones are compared with Tonic given the same draws (Tonic's numpy call replaced by
one returning spikeflow's draws), as tests/test_data_transforms_extra.py does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_shared_data
from spikeflow.data import transforms as T
from spikeflow.data.io import read_atis_bin
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
