"""The one event representation every reader returns (design principle 5).

Events are a NumPy structured array with fields ``t`` (int64, microseconds), ``x``,
``y`` (uint16 pixel coordinates; ``y`` is 0 for 1-D sensors such as cochleas) and
``p`` (int8 polarity: 0/1 for DVS sensors, or a channel index), sorted by time when the
format guarantees it. :class:`EventRecording` pairs the events with the sensor size.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike

import numpy as np

from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["EVENT_DTYPE", "EventRecording", "format_error", "make_events"]

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])


@dataclass(frozen=True)
class EventRecording:
    """Decoded events plus the sensor they come from.

    Attributes:
        events: structured array of :data:`EVENT_DTYPE`.
        sensor_size: ``(width, height, polarities)``; height 1 for 1-D sensors.
        source: the file the events were read from (for messages), if any.
    """

    events: np.ndarray
    sensor_size: tuple[int, int, int]
    source: str | None = None

    def __len__(self) -> int:
        return len(self.events)


def format_error(path: str | PathLike | None, offset: int | None, problem: str) -> DataFormatError:
    """A :class:`DataFormatError` naming the file, the byte offset and the problem."""
    where = str(path) if path is not None else "<bytes>"
    at = f" at byte offset {offset}" if offset is not None else ""
    return DataFormatError(f"{where}{at}: {problem}")


def _check_fits(name: str, values: np.ndarray) -> None:
    """Raise when ``values`` hold a number that field ``name`` of :data:`EVENT_DTYPE`
    cannot store exactly (numpy's cast would wrap it or cut its fraction silently)."""
    v = np.asarray(values)
    target = EVENT_DTYPE[name]
    if v.size == 0 or v.dtype == target or (v.dtype.kind in "bui" and np.can_cast(v.dtype, target)):
        return
    info = np.iinfo(target)
    if v.dtype.kind == "f":
        bad = ~np.isfinite(v) | (v != np.round(v)) | (v < info.min) | (v >= info.max + 1)
    elif v.dtype.kind in "ui":
        bad = (v < info.min) | (v > info.max)
    else:
        raise ConfigurationError(f"make_events: {name} has dtype {v.dtype}, not a number type")
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ConfigurationError(
            f"make_events: {name}[{i}] = {v.reshape(-1)[i].item()!r} does not fit the event "
            f"field {name!r} ({target}: whole numbers {info.min}..{info.max})"
        )


def make_events(t: np.ndarray, x: np.ndarray, y: np.ndarray | None, p: np.ndarray) -> np.ndarray:
    """Pack field arrays into an :data:`EVENT_DTYPE` array (``y=None``: all zero).

    Raises:
        ConfigurationError: a value that its field cannot hold exactly (``x``/``y``
            outside ``0..65535``, ``p`` outside ``-128..127``, ``t`` outside int64, a
            fraction, NaN or inf): numpy would wrap or truncate it without a word.
    """
    for name, values in (("t", t), ("x", x), ("y", y), ("p", p)):
        if values is not None:
            _check_fits(name, values)
    out = np.empty(len(t), dtype=EVENT_DTYPE)
    out["t"] = t
    out["x"] = x
    out["y"] = 0 if y is None else y
    out["p"] = p
    return out
