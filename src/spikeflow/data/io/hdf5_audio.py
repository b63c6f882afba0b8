"""Spiking audio in HDF5 (SHD and SSC, Cramer et al. 2020), through h5py (extra ``data``).

Layout: ``spikes/times`` (one float array of spike times in seconds per sample, stored
as variable-length rows), ``spikes/units`` (the matching channel of each spike, 0-699),
``labels`` (one integer class per sample); of the optional ``extra/`` group only
``extra/keys`` (the label names, :attr:`SpikingAudioFile.label_names`) is read. A
sample becomes an :class:`EventRecording` with ``x`` = unit, ``y`` = 0, ``p`` = 0 and
``t`` in microseconds (rounded to the nearest), sensor ``(700, 1, 1)``.

HDF5 has no byte offsets that mean anything to a user for variable-length data, so
errors here name the dataset and the element instead (``spikes/units[3][17]``); a file
that is not HDF5 at all is reported at byte offset 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from os import PathLike
from types import TracebackType
from typing import Any, Self

import numpy as np

from spikeflow.data._indexing import check_index
from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import import_optional, read_head, seconds_to_us, sort_by_time

__all__ = ["SpikingAudioFile", "read_spiking_audio"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Where the superblock may sit: at 0 or, after a user block, at 512, 1024, 2048, ...
_SIGNATURE_OFFSETS = (0, 512, 1024, 2048, 4096, 8192)


def _has_signature(path: str | PathLike) -> bool:
    """Whether the file holds the HDF5 signature where a superblock may start.

    Raises:
        DataFormatError: the file is empty.
    """
    head = read_head(path, _SIGNATURE_OFFSETS[-1] + len(HDF5_SIGNATURE))
    return any(
        head[where : where + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for where in _SIGNATURE_OFFSETS
    )


class HDF5Reader:
    """An HDF5 file opened for reading (after checking its signature), closed by
    :meth:`close` or at the end of a ``with`` block."""

    _file: Any

    def _open(self, path: str | PathLike, what: str) -> None:
        """Open ``path``; ``what`` names the files for the missing-h5py error."""
        h5py = import_optional("h5py", what, "h5py")
        self.path = str(path)
        if not _has_signature(path):
            raise format_error(path, 0, "not an HDF5 file (no HDF5 signature at offset 0)")
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise format_error(path, None, f"h5py cannot open the file: {exc}") from None

    def _strings(self, raw: np.ndarray, name: str) -> Iterator[tuple[int, Any]]:
        """``(i, item)`` for each item of ``raw``, the 1-D array of strings read from
        dataset ``name``, bytes decoded as UTF-8; one at a time, so the caller's check of
        item ``i`` comes before item ``i + 1`` is decoded.

        Raises:
            DataFormatError: ``raw`` is not a 1-D array of strings, or an item is not
                UTF-8 (the message names the item).
        """
        if raw.ndim != 1 or raw.dtype.kind not in "SUO":
            raise format_error(
                self.path, None, f"{name} is not a 1-D array of strings "
                f"(shape {raw.shape}, dtype {raw.dtype})"
            )  # fmt: skip
        for i, item in enumerate(raw.tolist()):
            if isinstance(item, bytes):
                try:
                    item = item.decode("utf-8")
                except UnicodeDecodeError:
                    raise format_error(
                        self.path, None, f"{name}[{i}] is not UTF-8: {item!r}"
                    ) from None
            yield i, item

    def _spikes(
        self, channel: np.ndarray, seconds: np.ndarray, channels: str, times: str
    ) -> EventRecording:
        """The recording of spikes at ``channel`` (integers) and ``seconds``, sorted by time
        (``x`` = channel, ``y = p = 0``, ``t`` in µs rounded to the nearest, sensor
        ``(self.channels, 1, 1)``); ``channels`` and ``times`` name the two datasets.

        Raises:
            DataFormatError: a channel outside ``[0, self.channels)``, or a time that is
                not a finite non-negative number (the message names the element).
        """
        bad = np.flatnonzero((channel < 0) | (channel >= self.channels))
        if bad.size:
            i = int(bad[0])
            raise format_error(
                self.path, None, f"{channels}[{i}] = {int(channel[i])} is outside the "
                f"{self.channels} channels"
            )  # fmt: skip
        t = seconds_to_us(seconds, self.path, times)
        events = make_events(t, channel, None, np.zeros(t.size, np.int8))
        return EventRecording(sort_by_time(events), (self.channels, 1, 1), self.path)

    def close(self) -> None:
        """Close the underlying HDF5 file."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()


class SpikingAudioFile(HDF5Reader):
    """Random access to the samples of an SHD/SSC HDF5 file.

    Use as a context manager (``with SpikingAudioFile(path) as f: rec, label = f[0]``)
    or call :meth:`close`.

    Args:
        path: the ``.h5`` file.
        channels: number of input channels (700 for SHD and SSC).

    Raises:
        DataFormatError: an empty file, not an HDF5 file, a missing ``spikes/times``,
            ``spikes/units`` or ``labels`` dataset, or datasets of different lengths.
        MissingExtraError: h5py is not installed.
    """

    def __init__(self, path: str | PathLike, channels: int = 700) -> None:
        self.channels = channels
        self._open(path, "SHD/SSC HDF5 files")
        try:
            self._times, self._units, self._labels = (
                self._dataset(name) for name in ("spikes/times", "spikes/units", "labels")
            )
            lengths = {len(self._times), len(self._units), len(self._labels)}
        except BaseException:
            self._file.close()
            raise
        if len(lengths) != 1:
            self._file.close()
            raise format_error(
                path, None, f"spikes/times, spikes/units and labels have different lengths "
                f"({len(self._times)}, {len(self._units)}, {len(self._labels)})"
            )  # fmt: skip

    def _dataset(self, name: str):
        try:
            obj = self._file[name]
            len(obj)
        except (KeyError, TypeError, OSError, ValueError) as exc:
            raise format_error(
                self.path, None, f"missing or unreadable dataset {name!r}: {exc}"
            ) from None
        return obj

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> np.ndarray:
        """Every sample's label (int64)."""
        return self._read(self._labels, "labels", slice(None)).astype(np.int64)

    @property
    def label_names(self) -> tuple[str, ...] | None:
        """The label names of ``extra/keys`` (index = label), decoded as UTF-8; ``None``
        when the file has no such dataset.

        Raises:
            DataFormatError: ``extra/keys`` exists but cannot be read or is not a 1-D
                array of UTF-8 strings.
        """
        try:
            if "extra/keys" not in self._file:
                return None
            keys = self._file["extra/keys"]
        except (KeyError, TypeError, OSError, ValueError, RuntimeError) as exc:
            raise format_error(self.path, None, f"unreadable dataset 'extra/keys': {exc}") from None
        names = []
        for i, key in self._strings(self._read(keys, "extra/keys", slice(None)), "extra/keys"):
            if not isinstance(key, str):
                raise format_error(self.path, None, f"extra/keys[{i}] is not a string: {key!r}")
            names.append(key)
        return tuple(names)

    def _read(self, dset, name: str, index):
        try:
            return np.asarray(dset[index])
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            raise format_error(self.path, None, f"cannot read {name}[{index}]: {exc}") from None

    def __getitem__(self, index: int) -> tuple[EventRecording, int]:
        """Sample ``index`` as ``(recording, label)``; the events are sorted by time.

        Raises:
            IndexError: ``index`` out of range (negative indices count from the end).
            ConfigurationError: ``index`` is not an integer (a bool included).
            DataFormatError: times and units of different lengths, a time that is not
                a finite non-negative number, or a unit outside ``[0, channels)``.
        """
        index = check_index(str(self.path), index, len(self))
        times = self._read(self._times, "spikes/times", index).reshape(-1)
        units = self._read(self._units, "spikes/units", index).reshape(-1)
        label = self._read(self._labels, "labels", index).reshape(-1)
        if label.size != 1 or not np.issubdtype(label.dtype, np.integer):
            raise format_error(self.path, None, f"labels[{index}] is not one integer: {label!r}")
        if times.shape != units.shape:
            raise format_error(
                self.path, None, f"sample {index}: {times.size} spike times but {units.size} units"
            )
        if not np.issubdtype(units.dtype, np.integer):
            raise format_error(self.path, None, f"spikes/units[{index}] has dtype {units.dtype}")
        rec = self._spikes(units, times, f"spikes/units[{index}]", f"spikes/times[{index}]")
        return rec, int(label[0])


def read_spiking_audio(
    path: str | PathLike, index: int, channels: int = 700
) -> tuple[EventRecording, int]:
    """Read sample ``index`` of an SHD/SSC file as ``(recording, label)``.

    Opens the file for this one sample; use :class:`SpikingAudioFile` to read many.
    """
    with SpikingAudioFile(path, channels) as f:
        return f[index]
