"""Event-transform test helpers shared by several modules (imported, not collected):
small recordings, Tonic's event layout, and real N-MNIST recordings as a fixture."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_shared_data
from spikeflow.data import EventRecording, make_events

#: The event layout tonic.datasets.NMNIST gives (int64 fields x, y, t, p).
TONIC_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])


def rec(t, x, y, p=None, sensor=(5, 3, 2)):
    p = np.zeros(len(t), dtype=np.int8) if p is None else np.array(p)
    return EventRecording(make_events(np.array(t), np.array(x), np.array(y), p), sensor, "s")


def fields(r):
    e = r.events if isinstance(r, EventRecording) else r
    return list(zip(e["t"].tolist(), e["x"].tolist(), e["y"].tolist(), e["p"].tolist()))


def to_tonic(r) -> np.ndarray:
    e = r.events if isinstance(r, EventRecording) else r
    out = np.zeros(len(e), TONIC_DTYPE)
    for name in "xytp":
        out[name] = e[name]
    return out


def assert_same(ours, theirs, t_shift: int = 0) -> None:
    """Same events in the same order (``t_shift`` added to Tonic's times)."""
    e = ours.events if isinstance(ours, EventRecording) else ours
    assert len(e) == len(theirs)
    if len(e) == 0:  # Tonic's Decimation then returns np.array([]), without fields
        return
    for name in "txyp":
        want = np.asarray(theirs[name], np.int64) + (t_shift if name == "t" else 0)
        np.testing.assert_array_equal(np.asarray(e[name], np.int64), want, err_msg=name)


def tonic_transforms():
    return pytest.importorskip("tonic.transforms", reason="Tonic is not installed")


def nmnist_recordings() -> list[EventRecording]:
    """Real N-MNIST recordings (the test is skipped when ../shared/data is absent): the
    first of each digit in the test split, plus Tonic's own sample file."""
    root = require_shared_data("nmnist-small")
    if not _NMNIST:
        from spikeflow.data.io import read_atis_bin

        files = [sorted((root / "Test" / str(d)).glob("*.bin"))[0] for d in range(10)]
        sample = root.parent / "event-files" / "nmnist-bin" / "sample_nmnist.bin"
        _NMNIST.extend(read_atis_bin(f) for f in [*files, *([sample] if sample.exists() else [])])
    return _NMNIST


_NMNIST: list[EventRecording] = []
