"""The base of datasets whose samples are windows cut out of longer recordings: each
recording is decoded once, its windows stored as small tables in an
:class:`~spikeflow.data.ArrayCache`, and a sample read back from its table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow.data.cache import ArrayCache, default_cache_dir
from spikeflow.data.datasets.base import NeuromorphicDataset
from spikeflow.data.events import EventRecording, make_events
from spikeflow.errors import DataFormatError

__all__ = ["CutRecordingsDataset"]


class CutRecordingsDataset(NeuromorphicDataset):
    """A dataset of windows cut from recordings. A subclass fills ``recordings`` (each a
    tuple whose first item is the recording's path) and ``_windows`` (the ``(recording,
    row)`` of each sample) when it lists its samples, and defines :meth:`_cut_key` and
    :meth:`_cut`; :meth:`events` cuts a recording at the first read of one of its
    windows, or again when its entry is missing or corrupt."""

    cut_version: ClassVar[int]
    recordings: list[tuple[Any, ...]]
    _windows: list[tuple[int, int]]

    def _open_cut_cache(self, cut_cache_dir: str | os.PathLike | None, name: str) -> None:
        """The cache of the cut windows (``t, x, y, p`` int64 rows) under
        ``cut_cache_dir`` (None or ``"auto"``: the default cache directory)."""
        base = default_cache_dir() if cut_cache_dir in (None, "auto") else Path(cut_cache_dir)
        self.cut_cache = ArrayCache(
            base,
            {"name": name, "columns": ["t", "x", "y", "p"], "cut_version": self.cut_version},
        )

    def _cut_key(self, recording: int, row: int) -> dict[str, Any]:
        """The cut-cache key of window ``row`` of ``recording``."""
        raise NotImplementedError

    def _cut(self, recording: int) -> int:
        """Decode one recording, store each of its windows; returns how many."""
        raise NotImplementedError

    def _store_window(self, recording: int, row: int, events: np.ndarray) -> None:
        """Store window ``row`` of ``recording`` (structured events) as int64 rows."""
        columns = [events[c].astype(np.int64) for c in ("t", "x", "y", "p")]
        self.cut_cache.store(self._cut_key(recording, row), np.stack(columns, axis=1))

    def cache_entry_key(self, index: int) -> dict[str, Any]:
        """The frames-cache key of sample ``index``: its recording, label table and row."""
        return self._cut_key(*self._windows[index])

    def events(self, index: int) -> EventRecording:
        """Sample ``index``'s events (its window of the recording), after ``event_transform``."""
        recording, row = self._windows[index]
        key = self._cut_key(recording, row)
        table = self.cut_cache.load(key)
        if table is None:  # missing or corrupt (warned and deleted): cut the recording again
            self._cut(recording)
            table = self.cut_cache.load(key)
            if table is None:
                raise DataFormatError(f"cannot store the cut samples in {self.cut_cache.directory}")
        events = make_events(table[:, 0], table[:, 1], table[:, 2], table[:, 3])
        rec = EventRecording(events, self.sensor_size, str(self.recordings[recording][0]))
        return rec if self.event_transform is None else self.event_transform(rec)
