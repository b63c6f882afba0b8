"""N-TIDIGITS18 (Anumula et al., Front. Neurosci. 2018) in its one HDF5 file, through h5py
(extra ``data``).

Layout (the release's ``n-tidigits.hdf5``, as Tonic's ``NTIDIGITS18`` reads it):

* ``train_labels``, ``test_labels``: 1-D arrays of byte strings, one sample key each,
  ``<gender>-<speaker>-<production>-<digits>`` (``"man-im-a-7557"``: the first
  production of "7 5 5 7" by the man IM). ``<digits>`` is the spoken sequence, one
  character a digit: ``o`` ("oh"), ``1`` ... ``9`` and ``z`` ("zero").
* ``train_addresses/<key>``, ``test_addresses/<key>``: the channel of each spike,
  0-63 (the 64 channels of the Dynamic Audio Sensor cochlea).
* ``train_timestamps/<key>``, ``test_timestamps/<key>``: the time of each spike in
  seconds.

A sample becomes an :class:`EventRecording` with ``x`` = channel, ``y = p = 0`` and
``t`` in microseconds, rounded to the nearest (Tonic truncates), sorted by time
(stable); sensor ``(64, 1, 1)``. Errors name the dataset and element
(``test_addresses/man-im-a-7557[12]``); a file that is not HDF5 is reported at byte 0.
"""

from __future__ import annotations

import re
from os import PathLike

import numpy as np

from spikeflow.data.events import EventRecording, format_error
from spikeflow.data.io.hdf5_audio import HDF5Reader
from spikeflow.errors import ConfigurationError

__all__ = ["NTIDIGITS_DIGITS", "NTidigitsFile", "parse_ntidigits_key"]

#: The spoken digits as the keys spell them; index = single-digit class (Tonic's).
NTIDIGITS_DIGITS: tuple[str, ...] = ("o", "1", "2", "3", "4", "5", "6", "7", "8", "9", "z")
_KEY = re.compile(
    r"^(?P<gender>[^-]+)-(?P<speaker>[^-]+)-(?P<production>[^-]+)-(?P<digits>[oz1-9]+)$"
)


def parse_ntidigits_key(key: str) -> dict[str, str]:
    """The parts of a sample key: ``gender``, ``speaker``, ``production`` and ``digits``.

    Raises:
        ConfigurationError: (a ValueError) ``key`` is not
            ``<gender>-<speaker>-<production>-<digits>`` with ``<digits>`` made of ``o``,
            ``1``-``9`` and ``z``.
    """
    match = _KEY.match(key)
    if match is None:
        raise ConfigurationError(
            f"sample key {key!r} is not <gender>-<speaker>-<production>-<digits> with digits "
            f"from {''.join(NTIDIGITS_DIGITS)}"
        )
    return match.groupdict()


class NTidigitsFile(HDF5Reader):
    """One split of an N-TIDIGITS18 file: its sample keys and random access to them.

    Use as a context manager (``with NTidigitsFile(path, "test") as f: rec = f.read(key)``)
    or call :meth:`close`.

    Args:
        path: the ``.hdf5`` file.
        split: ``"train"`` or ``"test"``.
        channels: the cochlea's channels (64).

    Raises:
        DataFormatError: an empty file, not an HDF5 file, a missing ``<split>_labels``,
            ``<split>_addresses`` or ``<split>_timestamps``, or a key that is not UTF-8
            or not of the key format.
        MissingExtraError: h5py is not installed.
    """

    def __init__(self, path: str | PathLike, split: str, channels: int = 64) -> None:
        if split not in ("train", "test"):
            raise ConfigurationError(f"split must be 'train' or 'test'; got {split!r}")
        self.split, self.channels = split, channels
        self._open(path, "N-TIDIGITS HDF5 files")
        try:
            self.keys = self._read_keys()
            self._addresses, self._timestamps = (
                self._group(f"{split}_{name}") for name in ("addresses", "timestamps")
            )
        except BaseException:
            self._file.close()
            raise

    def _group(self, name: str):
        obj = self._file.get(name)
        if obj is None or not hasattr(obj, "keys"):
            found = sorted(self._file.keys())
            raise format_error(self.path, None, f"missing group {name!r} (found {found})")
        return obj

    def _read_keys(self) -> tuple[str, ...]:
        name = f"{self.split}_labels"
        dset = self._file.get(name)
        if dset is None or hasattr(dset, "keys"):
            found = sorted(self._file.keys())
            raise format_error(self.path, None, f"missing dataset {name!r} (found {found})")
        keys = []
        for i, key in self._strings(self._array(dset, name), name):
            try:
                parse_ntidigits_key(key)
            except (TypeError, ValueError) as exc:
                raise format_error(self.path, None, f"{name}[{i}]: {exc}") from None
            keys.append(key)
        return tuple(keys)

    def _array(self, dset, name: str) -> np.ndarray:
        try:
            return np.asarray(dset[()])
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            raise format_error(self.path, None, f"cannot read {name}: {exc}") from None

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, key: str) -> EventRecording:
        """The spikes of sample ``key``, sorted by time.

        Raises:
            DataFormatError: no addresses or timestamps for ``key``, arrays of different
                lengths or not 1-D, a non-integer or out-of-range channel, or a time
                that is not a finite non-negative number.
        """
        arrays = []
        for group, kind in ((self._addresses, "addresses"), (self._timestamps, "timestamps")):
            name = f"{self.split}_{kind}/{key}"
            if key not in group:
                raise format_error(self.path, None, f"missing dataset {name!r}")
            arrays.append(self._array(group[key], name))
        channel, seconds = arrays
        if channel.ndim != 1 or seconds.ndim != 1 or channel.shape != seconds.shape:
            raise format_error(
                self.path, None, f"sample {key!r}: addresses {channel.shape} and timestamps "
                f"{seconds.shape} are not 1-D arrays of one length"
            )  # fmt: skip
        for values, kind, kinds in ((channel, "addresses", "iu"), (seconds, "timestamps", "fiu")):
            if values.size and values.dtype.kind not in kinds:
                raise format_error(
                    self.path, None, f"{self.split}_{kind}/{key} has dtype {values.dtype}"
                )
        return self._spikes(
            channel.astype(np.int64), seconds, f"{self.split}_addresses/{key}",
            f"{self.split}_timestamps/{key}",
        )  # fmt: skip
