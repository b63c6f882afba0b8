"""SLAYER's 1-D binary spike format ``.bs1`` (N-TIDIGITS, cochlea recordings).

Each event is 5 bytes, big-endian: a 16-bit channel (bytes 0-1), the polarity in bit 7
of byte 2, and a 23-bit microsecond timestamp (bits 6-0 of byte 2, then bytes 3 and 4):
after the address, the layout of the ATIS ``.bin`` format, whose helpers decode it.
The channel becomes ``x``; ``y`` is 0 (a 1-D sensor of height 1).
"""

from __future__ import annotations

from os import PathLike

import numpy as np

from spikeflow.data.events import EventRecording, make_events
from spikeflow.data.io._common import (
    MAX_SENSOR_SIDE,
    PathArg,
    RawBytes,
    as_u8,
    check_in_sensor,
    check_monotonic,
    empty_file_error,
    is_sensor_side,
    read_bytes,
    source_name,
    strided,
)
from spikeflow.data.io.atis_bin import check_whole_events, polarity_and_time
from spikeflow.errors import ConfigurationError

__all__ = ["decode_bs1", "read_bs1"]


def decode_bs1(raw: RawBytes, channels: int | None = 64, path: PathArg = None) -> EventRecording:
    """Decode the bytes of a ``.bs1`` file.

    Args:
        raw: the file's bytes.
        channels: number of channels to validate against (N-TIDIGITS: 64); ``None``
            infers it from the largest channel.
        path: the file name, for error messages.

    Raises:
        ConfigurationError: ``channels`` is not None nor an integer in ``[1, 65536]``.
        DataFormatError: an empty file, a length that is not a multiple of 5
            (truncated), a channel out of range, or timestamps that go backwards.
    """
    if channels is not None and not is_sensor_side(channels):
        raise ConfigurationError(
            f"decode_bs1: channels must be None or an integer in [1, {MAX_SENSOR_SIDE}]; "
            f"got {channels!r}"
        )
    data = as_u8(raw)
    if data.size == 0:
        raise empty_file_error(path)
    check_whole_events(data, path)
    ev = data.reshape(-1, 5)
    ch = ev[:, 0].astype(np.uint16) << 8 | ev[:, 1]
    p, t = polarity_and_time(ev)
    offset_of = strided(0, 5)
    if channels is None:
        channels = int(ch.max()) + 1
    else:
        channels = int(channels)
        check_in_sensor(ch, np.zeros_like(ch), channels, 1, path, offset_of)
    check_monotonic(t, path, offset_of)
    return EventRecording(make_events(t, ch, None, p), (channels, 1, 2), source_name(path))


def read_bs1(path: str | PathLike, channels: int | None = 64) -> EventRecording:
    """Read a SLAYER ``.bs1`` file (see :func:`decode_bs1`)."""
    return decode_bs1(read_bytes(path), channels, path)
