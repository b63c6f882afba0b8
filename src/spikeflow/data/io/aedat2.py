"""jAER AEDAT 1.0 / 2.0 files (DVS128, DAVIS240, DAVIS346; the CIFAR10-DVS container).

Layout: ASCII header lines starting with ``#`` (the first one ``#!AER-DAT2.0``; a file
without a version line is AEDAT 1.0), then big-endian ``(address, timestamp)`` records:
``uint32`` + ``int32`` (8 bytes) in 2.0, ``uint16`` + ``int32`` (6 bytes) in 1.0.
Timestamps tick in microseconds.

Address layouts (``layout=``):

* ``"dvs128"`` (128x128): ``x = 127 - ((addr >> 1) & 0x7F)``, ``y = (addr >> 8) & 0x7F``,
  ``p = 1 - (addr & 1)`` (jAER's DVS128 extractor: address bit 0 set is an OFF event);
  bit 15 (external input) or bit 31 marks a special event, skipped.
* ``"davis240"`` (240x180) and ``"davis346"`` (346x260), jAER's DAVIS layout: a
  polarity event has bit 31 = 0 and bit 10 = 0; ``y`` is bits 30-22, ``x`` bits 21-12,
  polarity bit 11. Bit 31 = 1 words are APS samples and IMU words (``0x80000C00`` set);
  bit 31 = 0 with bit 10 = 1 are external-input events. All of those are skipped. As in
  jAER, ``x`` is mirrored (``width - 1 - x``) and ``y`` is kept (origin bottom-left).

The layout is detected from the ``# AEChip:`` and ``# HardwareInterface:`` header lines
when ``layout`` is not given.

Where the header ends: jAER (since 2017) closes it with the line ``#End Of ASCII
Header`` (``AEDataFile.END_OF_HEADER_STRING``); the data starts right after it, even
when the first record's first byte is ``#`` (0x23: a DAVIS event in rows 140-143).
Older files end with the ``#End of Preferences for this AEChip`` line; after that line
a ``#`` line holding anything but printable ASCII text (a DAVIS polarity address always
has a 0x00 low byte) is taken for the first record, not for a header line.

A 32-bit timestamp wrap-around goes from near ``2**32`` to near 0: a decrease counts as
one only when the time across it, ``2**32 - before + after``, is at most ``2**24`` µs
(16.8 s without a polarity event); any other decrease is an error (a corrupted
timestamp, not a wrap: counting it as one would move every later event 71.6 minutes
into the future).
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from os import PathLike

import numpy as np

from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import (
    DVS_SENSOR_SIZES,
    ChunkDecoder,
    PathArg,
    RawBytes,
    as_bytes,
    check_in_sensor,
    check_monotonic,
    decode_in_chunks,
    decode_line,
    empty_file_error,
    header_end,
    read_bytes,
    source_name,
    split_header_lines,
)
from spikeflow.data.io._native import compiled, new_events, trimmed
from spikeflow.errors import ConfigurationError

__all__ = [
    "AEDAT2_LAYOUTS",
    "Aedat2Header",
    "decode_aedat2",
    "parse_aedat2_header",
    "read_aedat2",
    "read_aedat2_header",
]

#: Sensor ``(width, height)`` of each address layout (one per iniVation sensor).
AEDAT2_LAYOUTS: dict[str, tuple[int, int]] = DVS_SENSOR_SIZES

_REC_V2 = np.dtype([("addr", ">u4"), ("t", ">u4")])
_REC_V1 = np.dtype([("addr", ">u2"), ("t", ">u4")])


@dataclass(frozen=True)
class Aedat2Header:
    """What the text header of a jAER file says.

    Attributes:
        version: ``"1.0"`` or ``"2.0"``.
        data_start: byte offset of the first event record.
        hardware_interface: the ``# HardwareInterface:`` value, if any.
        chip: the ``# AEChip:`` value (a jAER class name), if any.
        layout: the address layout detected from those lines, or ``None``.
        lines: every header line, without the end-of-line characters.
    """

    version: str
    data_start: int
    hardware_interface: str | None
    chip: str | None
    layout: str | None
    lines: tuple[str, ...]


def _detect_layout(chip: str | None, hardware: str | None) -> str | None:
    if hardware and len(hardware.split()) > 1:
        hardware = hardware.rsplit(None, 1)[0]  # drop the serial number
    for text in (chip, hardware):
        if not text:
            continue
        low = text.lower().replace(" ", "")
        if "dvs128" in low:
            return "dvs128"
        if "346" in low:
            return "davis346"
        if "240" in low:
            return "davis240"
    return None


_KEYS = (b"!AER-DAT", b"HardwareInterface:", b"AEChip:", b"Start of Pref", b"End of Pref")


def _key_lines(data: bytes, end: int) -> list[tuple[int, str]]:
    """``(offset, line)`` of the header lines the parser reads, found with ``bytes.find``
    (a jAER header runs to thousands of lines; only a handful matter)."""
    found = []
    for key in _KEYS:
        pos = data.find(key, 0, end)
        while pos >= 0:
            start = data.rfind(b"\n", 0, pos) + 1
            prefix = data[start:pos]
            at_line_start = prefix == b"#" or (
                key != _KEYS[0] and prefix[:1] == b"#" and not prefix[1:].strip()
            )
            if at_line_start:
                stop = data.find(b"\n", pos, end)
                line = data[start : end if stop < 0 else stop].rstrip(b"\r")
                found.append((start, decode_line(line)))
            pos = data.find(key, pos + 1, end)
    return sorted(found)


_MAX_KEY_LINES = 64  # more key lines than this: the Python scan handles the header

_HASH_LINES = re.compile(rb"(?:#[^\n]*\n)*")  # every leading line that starts with '#'
_TEXT_LINES = re.compile(rb"(?:#[\t\r\x20-\x7e]*\n)*")  # ... and holds printable ASCII only
_TEXT_TAIL = re.compile(rb"#[\t\r\x20-\x7e]*")
_END_OF_HEADER = re.compile(rb"(?m)^#End Of ASCII Header[ \t\r]*\n")
_END_OF_PREFS = re.compile(rb"(?m)^#[ \t\r\x0b\x0c]*End of Pref[^\n]*\n")


def _jaer_header_end(data: bytes, path: PathArg) -> int:
    """Offset of the first record: after the ``#End Of ASCII Header`` line when there is
    one; else after the leading ``#`` lines, stopping after ``#End of Preferences`` at the
    first ``#`` line that is not printable text (a binary record that starts with 0x23).

    Raises:
        DataFormatError: a header line cut off by the end of the file.
    """
    end = _HASH_LINES.match(data).end()
    eoh = _END_OF_HEADER.search(data, 0, end)
    cut = eoh.end() if eoh else end
    prefs = _END_OF_PREFS.search(data, 0, cut)
    if prefs:
        text_end = _TEXT_LINES.match(data, prefs.end()).end()
        if text_end < cut:
            return text_end
        if eoh is None and end < len(data) and not _TEXT_TAIL.fullmatch(data, end):
            return end  # a last '#' "line" without an end of line that is not text: data
    if eoh:
        return cut
    return header_end(data, b"#", path)  # names a header line cut off by the end of file


def _key_lines_compiled(data: bytes) -> tuple[list[tuple[int, str]], int] | None:
    """``(_key_lines(data, end), end)`` from the compiled scan of the ``#`` lines (one
    ``memchr`` per line instead of a regex and a ``bytes.find`` per key over the whole
    header, which for a 175 kB jAER header is ~0.45 ms of Python); ``None`` when the
    compiled decoders are off or the scan refuses (truncated header, many key lines):
    the Python scan then runs and reports."""
    lib = compiled()
    if lib is None:
        return None
    found = (ctypes.c_int64 * (2 * _MAX_KEY_LINES))()
    count = ctypes.c_int64()
    end = lib.sf_jaer_header(data, len(data), found, _MAX_KEY_LINES, ctypes.byref(count))
    if end < 0:
        return None
    lines = []
    for i in range(count.value):
        start = found[2 * i]
        stop = data.find(b"\n", start, end)
        lines.append((start, decode_line(data[start:stop].rstrip(b"\r"))))
    return lines, end


def parse_aedat2_header(raw: RawBytes, path: PathArg = None) -> Aedat2Header:
    """Parse the ``#`` header of a jAER AEDAT 1.0/2.0 file.

    Raises:
        DataFormatError: an empty file, an unsupported ``#!AER-DAT`` version, a header
            line cut off by the end of the file, or a preferences block (``#Start of
            Preferences``) that is never closed before the data (a truncated header).
    """
    return _parse_header(as_bytes(raw), path, keep_lines=True)


def _parse_header(data: bytes, path: PathArg, keep_lines: bool) -> Aedat2Header:
    """The header; ``keep_lines=False`` leaves ``lines`` empty (jAER headers run to
    thousands of lines, and decoding needs only the few that one regex scan finds)."""
    if not data:  # an AEDAT 1.0 file need not have a header, but is never 0 bytes
        raise empty_file_error(path)
    fast = None if keep_lines else _key_lines_compiled(data)
    if fast is not None:
        found: list[tuple[int, bytes]] = []
        lines, data_start = fast
    else:
        data_start = _jaer_header_end(data, path)
        found = split_header_lines(data, b"#", path, limit=data_start)[0] if keep_lines else []
        lines = _key_lines(data, data_start)
    version = "1.0"
    hardware = chip = None
    prefs_open: int | None = None
    for off, line in lines:
        if line.startswith("#!AER-DAT"):
            version = line[len("#!AER-DAT") :].strip()
            if version not in ("1.0", "2.0"):
                raise format_error(
                    path, off, f"unsupported AEDAT version {version!r} in {line!r} (this reader "
                    "handles 1.0 and 2.0; use read_aedat31 or read_aedat4)"
                )  # fmt: skip
        body = line[1:].strip()
        if body.startswith("HardwareInterface:"):
            hardware = body.split(":", 1)[1].strip()
        elif body.startswith("AEChip:"):
            chip = body.split(":", 1)[1].strip()
        elif body.startswith("Start of Preferences"):
            prefs_open = off
        elif body.startswith("End of Preferences"):
            prefs_open = None
    if prefs_open is not None:
        raise format_error(
            path, data_start, f"truncated header: the preferences block opened at byte "
            f"{prefs_open} is never closed ('#End of Preferences' missing) before the "
            f"{'end of the file' if data_start == len(data) else 'binary data'}"
        )  # fmt: skip
    return Aedat2Header(
        version, data_start, hardware, chip, _detect_layout(chip, hardware),
        tuple(decode_line(line) for _, line in found),
    )  # fmt: skip


def read_aedat2_header(path: str | PathLike) -> Aedat2Header:
    """Read and parse only the header of a jAER AEDAT 1.0/2.0 file."""
    return parse_aedat2_header(read_bytes(path), path)


#: Most microseconds across a 32-bit timestamp wrap-around (``2**32 - before + after``).
WRAP_WINDOW = 1 << 24
_NOT_A_WRAP = (
    f", and is no 32-bit wrap-around (one goes from within {WRAP_WINDOW} us of 2**32 to "
    "near 0): a corrupted timestamp"
)


def _unwrap_u32(t: np.ndarray) -> np.ndarray:
    """uint32 microsecond timestamps to int64, undoing wrap-arounds at 2**32: decreases
    across which at most :data:`WRAP_WINDOW` µs pass (any other decrease is left in, for
    :func:`check_monotonic` to report)."""
    t = t.astype(np.int64)
    if t.size > 1:
        wraps = np.diff(t) <= WRAP_WINDOW - (1 << 32)
        if wraps.any():
            t[1:] += np.cumsum(wraps).astype(np.int64) << 32
    return t


def _chunk_decoder(records: np.ndarray, layout: str, width: int) -> ChunkDecoder:
    """Decode records ``[lo, hi)`` (for :func:`decode_in_chunks`); ``None`` on a DVS128
    address with bits 16-30 set (the whole-array path reports it)."""

    def decode(lo: int, hi: int) -> tuple[np.ndarray, ...] | None:
        chunk = records[lo:hi]
        addr = chunk["addr"].astype(np.uint32)
        if layout == "dvs128":
            if (addr & np.uint32(0x7FFF0000)).any():
                return None
            keep = (addr & np.uint32(0x80008000)) == 0
            a = addr[keep]
            xr, y, p = (a >> 1) & 0x7F, (a >> 8) & 0x7F, 1 - (a & 1)
        else:
            keep = (addr & np.uint32(0x80000400)) == 0
            a = addr[keep]
            xr, y, p = (a >> 12) & 0x3FF, (a >> 22) & 0x1FF, (a >> 11) & 1
        # uint32 arithmetic: an x beyond the sensor wraps to a huge value, and a timestamp
        # wrap-around reads as time going backwards; decode_in_chunks then gives up and
        # the whole-array path names the bad event or unwraps the timestamps.
        return chunk["t"][keep].astype(np.uint32), (width - 1) - xr, y, p

    return decode


def decode_aedat2(raw: RawBytes, layout: str | None = None, path: PathArg = None) -> EventRecording:
    """Decode the bytes of a jAER AEDAT 1.0/2.0 file into polarity events.

    Args:
        raw: the whole file's bytes (header included).
        layout: ``"dvs128"``, ``"davis240"`` or ``"davis346"``; ``None`` detects it
            from the header.
        path: the file name, for error messages.

    Raises:
        DataFormatError: an empty file or a bad header (see
            :func:`parse_aedat2_header`), an unknown layout, a data length that is not
            a whole number of records (truncated), a DVS128 address with bits 16-30 set,
            coordinates outside the sensor, or timestamps that go backwards (other than
            a wrap-around at 2**32, see the module docstring).
    """
    data = as_bytes(raw)
    header = _parse_header(data, path, keep_lines=False)
    if layout is None:
        layout = header.layout
        if layout is None:
            raise format_error(
                path, 0, "cannot tell the address layout from the header (no recognised "
                "'# AEChip:' or '# HardwareInterface:' line); pass layout= one of "
                f"{sorted(AEDAT2_LAYOUTS)}"
            )  # fmt: skip
    if layout not in AEDAT2_LAYOUTS:
        raise ConfigurationError(
            f"decode_aedat2: layout must be one of {sorted(AEDAT2_LAYOUTS)}, got {layout!r}"
        )
    rec = _REC_V2 if header.version == "2.0" else _REC_V1
    start = header.data_start
    nbytes = len(data) - start
    if nbytes % rec.itemsize:
        whole = nbytes - nbytes % rec.itemsize
        raise format_error(
            path, start + whole, f"truncated: the {nbytes} byte(s) after the header are not a "
            f"whole number of {rec.itemsize}-byte records ({nbytes % rec.itemsize} trailing "
            f"byte(s) after {whole // rec.itemsize} records; the data starts with "
            f"{data[start:start + 16]!r})"
        )  # fmt: skip
    width, height = AEDAT2_LAYOUTS[layout]
    lib = compiled()
    if lib is not None:
        n = nbytes // rec.itemsize
        out, ptr, meta = new_events(n)
        code = 0 if layout == "dvs128" else 1
        k = lib.sf_aedat2(data, len(data), start, rec.itemsize, code, width, height, ptr, n, meta)
        if k >= 0:
            return EventRecording(trimmed(out, k), (width, height, 2), source_name(path))
    records = np.frombuffer(data, dtype=rec, offset=start)
    fast = decode_in_chunks(len(records), _chunk_decoder(records, layout, width), (width, height))
    if fast is not None:
        return EventRecording(fast[0], (width, height, 2), source_name(path))
    # A check failed: whole arrays, to locate and name the first problem.
    addr = records["addr"].astype(np.uint32)
    if layout == "dvs128":
        odd = np.flatnonzero(addr & np.uint32(0x7FFF0000))
        if odd.size:
            i = int(odd[0])
            raise format_error(
                path, start + rec.itemsize * i, f"record {i}: address 0x{int(addr[i]):08x} has "
                "bits 16-30 set, which no DVS128 address has (wrong layout?)"
            )  # fmt: skip
        keep = np.flatnonzero((addr & np.uint32(0x80008000)) == 0)
        a = addr[keep]
        xr = (a >> 1) & 0x7F
        y = (a >> 8) & 0x7F
        p = 1 - (a & 1)  # bit 0 set: OFF (jAER)
    else:
        keep = np.flatnonzero((addr & np.uint32(0x80000400)) == 0)
        a = addr[keep]
        xr = (a >> 12) & 0x3FF
        y = (a >> 22) & 0x1FF
        p = (a >> 11) & 1

    def offset_of(i: int) -> int:
        return start + rec.itemsize * int(keep[i])

    check_in_sensor(xr, y, width, height, path, offset_of)
    t = _unwrap_u32(records["t"][keep])
    check_monotonic(t, path, offset_of, note=_NOT_A_WRAP)
    x = (width - 1) - xr.astype(np.int64)
    events = make_events(t, x, y, p.astype(np.int8))
    return EventRecording(events, (width, height, 2), source_name(path))


def read_aedat2(path: str | PathLike, layout: str | None = None) -> EventRecording:
    """Read the polarity events of a jAER AEDAT 1.0/2.0 file (see :func:`decode_aedat2`)."""
    return decode_aedat2(read_bytes(path), layout, path)
