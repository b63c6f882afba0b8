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

from spikeflow.errors import DataFormatError

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


def make_events(t: np.ndarray, x: np.ndarray, y: np.ndarray | None, p: np.ndarray) -> np.ndarray:
    """Pack field arrays into an :data:`EVENT_DTYPE` array (``y=None``: all zero)."""
    out = np.empty(len(t), dtype=EVENT_DTYPE)
    out["t"] = t
    out["x"] = x
    out["y"] = 0 if y is None else y
    out["p"] = p
    return out
