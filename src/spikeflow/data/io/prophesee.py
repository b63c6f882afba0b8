"""Prophesee / Metavision event files: EVT 2.0 and EVT 3.0 ``.raw``, and ``.dat``.

All three start with text header lines beginning with ``%`` (``% evt 3.0``,
``% format EVT3;height=720;width=1280``, ``% geometry 1280x720``, ``% Height 480``,
``% plugin_name hal_plugin_gen41_evk3``, optionally ``% end``), then little-endian
binary data:

* **EVT 2.0**: 32-bit words, type in bits 31-28. CD_OFF (0) / CD_ON (1): 6 timestamp
  LSBs in bits 27-22, ``x`` in 21-11, ``y`` in 10-0; EVT_TIME_HIGH (8): the timestamp's
  28 MSBs; EXT_TRIGGER (10), OTHERS (14), CONTINUED (15): skipped.
* **EVT 3.0**: 16-bit words, type in bits 15-12, decoded with a running state:
  EVT_ADDR_Y (0) sets ``y``; EVT_ADDR_X (2) emits one event (``x`` bits 10-0, polarity
  bit 11); VECT_BASE_X (3) sets the base ``x`` and polarity; VECT_12 (4) / VECT_8 (5)
  emit one event per set bit of their 12 / 8-bit mask at ``base + bit`` and advance the
  base by 12 / 8; EVT_TIME_LOW (6) / EVT_TIME_HIGH (8) set the low / high 12 bits of the
  24-bit time base; CONTINUED_4 (7), EXT_TRIGGER (10), OTHERS (14), CONTINUED_12 (15):
  skipped.
* **.dat** (N-CARS, ATIS/Gen1): after the header, one byte event type (0 or 12 = CD)
  and one byte event size (8), then 8-byte events: uint32 timestamp (µs) and uint32
  with ``x`` in bits 13-0, ``y`` in 27-14, polarity in bit 28 (bits 31-28 are
  Metavision's 4-bit ``p`` field; Prophesee's loaders read bit 28 only). A file without
  a ``"% "`` first line has no header and no type/size bytes (Event2D, 8 bytes), and
  timestamps past ``2**32`` µs wrap around (see :func:`decode_dat`).

The EVT words are decoded in chunks with the state carried across chunk borders
(:mod:`spikeflow.data.io._evt`), or by the compiled decoders (``_decoders.c``). The
time-high counters of both EVT formats wrap around (after 2**34 µs for EVT 2.0, 2**24 µs
for EVT 3.0): a decrease of the time-high value counts one wrap when it goes from the
top of the counter to near 0 (within 10 periods, as Prophesee's decoders count loops);
any other decrease is an error. Words before the first time-high word (and, for EVT
3.0, before the first ``y`` / base ``x``) carry no complete state and are dropped, as
Prophesee's decoder does. EVT 2.1 (``% evt 2.1``, ``% format EVT21``: 64-bit vectorised
words) is recognised and refused, not decoded as EVT 2.0.
"""

from __future__ import annotations

import re
from os import PathLike

import numpy as np

from spikeflow.data.events import EventRecording, format_error
from spikeflow.data.io._common import (
    MAX_SENSOR_SIDE,
    PathArg,
    RawBytes,
    as_bytes,
    check_monotonic,
    checked_recording,
    decode_line,
    empty_file_error,
    read_bytes,
    sensor_recording,
    sensor_size_arg,
    split_header_lines,
)
from spikeflow.data.io._evt import decode_evt2_words, decode_evt3_words
from spikeflow.data.io._native import compiled, native_events, new_events
from spikeflow.data.io.aedat2 import _NOT_A_WRAP, _unwrap_u32

__all__ = [
    "DAT_HEADER_START",
    "PROPHESEE_PLUGIN_SENSORS",
    "decode_dat",
    "decode_evt2",
    "decode_evt3",
    "parse_prophesee_header",
    "read_dat",
    "read_evt2",
    "read_evt3",
    "read_prophesee_raw",
]

#: How a ``.dat`` file with a header starts: Prophesee's loaders take the file for
#: headerless (Event2D events from byte 0) when its first line does not start so.
DAT_HEADER_START = b"% "

#: Sensor size of the camera plugins seen in the sample files (when no geometry line).
PROPHESEE_PLUGIN_SENSORS: dict[str, tuple[int, int]] = {
    "hal_plugin_gen3_fx3": (640, 480),
    "hal_plugin_gen41_evk3": (1280, 720),
}


def dat_body_start(data: bytes, start: int, size: int, path: PathArg) -> int:
    """The offset of a ``.dat`` file's first event: past the event type and size bytes
    at ``start`` (where its header ends), which must say CD events (type 0 or 12, 8
    bytes). ``size`` is the file's length; ``data`` holds at least its first
    ``min(size, start + 2)`` bytes. Raises DataFormatError (file and offset named)."""
    if size - start < 2:
        raise format_error(path, start, "truncated: no event type/size bytes after the header")
    etype, esize = data[start], data[start + 1]
    if etype not in (0, 12) or esize != 8:
        raise format_error(
            path, start, f"unsupported event type {etype} / size {esize} (expected CD "
            "events: type 0 or 12, size 8)"
        )  # fmt: skip
    return start + 2


def parse_prophesee_header(raw: RawBytes, path: PathArg = None) -> tuple[dict[str, str], int]:
    """Parse the ``%`` header lines.

    Returns:
        ``(fields, data_start)``: ``fields`` maps each header key (lower-cased first
        word, e.g. ``"evt"``, ``"format"``, ``"geometry"``, ``"height"``) to the rest
        of its line; ``data_start`` is the offset of the first binary byte.

    Raises:
        DataFormatError: an empty input (0 bytes), as every reader gives.
    """
    data = as_bytes(raw)
    if not data:
        raise empty_file_error(path)
    fields: dict[str, str] = {}
    pos = 0
    # Line by line: an explicit "% end" ends the header before the binary data, which
    # may itself start with '%' and hold no newline.
    while data.startswith(b"%", pos):
        eol = data.find(b"\n", pos)
        if eol < 0:  # a header line without an end: the file is truncated
            split_header_lines(data, b"%", path)  # raises, naming the offset
        text = decode_line(data[pos:eol].rstrip(b"\r"))[1:].strip()
        pos = eol + 1
        if text.lower() == "end":
            break
        key, _, value = text.partition(" ")
        fields.setdefault(key.lower(), value.strip())
    return fields, pos


def _encoding(fields: dict[str, str]) -> str | None:
    """The encoding the header names: ``"evt2"``, ``"evt21"``, ``"evt3"``, ... (``% evt
    2.0`` / ``% format EVT2;...``); EVT 2.1 when either line says so."""
    names = []
    if "evt" in fields:
        major, _, minor = fields["evt"].strip().partition(".")
        names.append("evt" + major + (minor.strip() if minor.strip("0 ") else ""))
    if "format" in fields:
        names.append(fields["format"].split(";")[0].strip().lower())
    if "evt21" in names:
        return "evt21"
    return names[0] if names else None


def _side(text: str, line: str, path: PathArg) -> int:
    """A sensor side the header gives (``line`` names where), checked: a malformed or
    impossible size would otherwise be ignored (the size then inferred) or kept (a
    sensor no array can hold)."""
    value = text.strip()
    if not re.fullmatch(r"[0-9]+", value) or not 1 <= int(value) <= MAX_SENSOR_SIDE:
        raise format_error(
            path, None, f"header line {line}: sensor side {value!r} is not an integer in "
            f"[1, {MAX_SENSOR_SIDE}]"
        )  # fmt: skip
    return int(value)


def _sensor_from_header(fields: dict[str, str], path: PathArg) -> tuple[int, int] | None:
    """``(width, height)`` from the ``format``, ``geometry`` or ``Width``/``Height``
    lines (in that order), else from the plugin name, else ``None``.

    Raises:
        DataFormatError: a size on one of those lines that is not a positive integer of
            at most :data:`MAX_SENSOR_SIDE` (naming the line).
    """
    fmt = fields.get("format", "")
    dims = {}
    for key, value in re.findall(r"(width|height)=([^;]*)", fmt):
        dims[key] = _side(value, f"'% format {fmt}'", path)
    if len(dims) == 2:
        return dims["width"], dims["height"]
    if "geometry" in fields:
        line = f"'% geometry {fields['geometry']}'"
        width, sep, height = fields["geometry"].partition("x")
        if not sep:
            raise format_error(path, None, f"header line {line}: expected WIDTHxHEIGHT")
        return _side(width, line, path), _side(height, line, path)
    if "width" in fields and "height" in fields:
        return (_side(fields["width"], f"'% Width {fields['width']}'", path),
                _side(fields["height"], f"'% Height {fields['height']}'", path))  # fmt: skip
    return PROPHESEE_PLUGIN_SENSORS.get(fields.get("plugin_name", "").strip())


def _words(data: bytes, start: int, dtype: str, path: PathArg) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    extra = (len(data) - start) % size
    if extra:
        whole = len(data) - extra
        raise format_error(
            path,
            whole,
            f"truncated: {extra} trailing byte(s) after the last whole {size}-byte word",
        )
    return np.frombuffer(data, dtype=dtype, offset=start)


def _check_encoding(fields: dict[str, str], want: str | None, path: PathArg) -> str | None:
    """The header's encoding; raises for EVT 2.1 and (``want`` given) for another one."""
    enc = _encoding(fields)
    if enc == "evt21":
        raise format_error(
            path, 0, "EVT 2.1 is not supported (the header says '% evt 2.1' / '% format "
            "EVT21': 64-bit vectorised words, which this reader would misread as EVT 2.0); "
            "convert the file to EVT 2.0 or 3.0, e.g. with Metavision's tools"
        )  # fmt: skip
    if want is not None and enc is not None and enc != want:
        raise format_error(path, 0, f"the header says the encoding is {enc!r}, not {want!r}")
    return enc


def _evt_recording(
    raw: RawBytes,
    sensor_size: tuple[int, int] | None,
    path: PathArg,
    name: str,
    header: tuple[dict[str, str], int] | None = None,
) -> EventRecording:
    """Decode an EVT 2.0 (``name="evt2"``) or 3.0 file: its header (refused when empty or
    naming another encoding; ``header``: what :func:`parse_prophesee_header` gave for
    ``raw``, checked to name ``name`` already), then its words, compiled when possible,
    else with numpy (which also names every problem)."""
    sensor_size = sensor_size_arg(sensor_size, f"decode_{name}")
    data = as_bytes(raw)
    if header is None:
        header = parse_prophesee_header(data, path)  # refuses an empty file
        _check_encoding(header[0], name, path)
    fields, start = header
    sensor = sensor_size or _sensor_from_header(fields, path)
    size = 4 if name == "evt2" else 2
    c = _decode_c("sf_" + name, data, start, size, sensor)
    if c is None:
        words = _words(data, start, "<u4" if name == "evt2" else "<u2", path)
        decode = decode_evt2_words if name == "evt2" else decode_evt3_words
        c = decode(words, start, sensor, path)
    return sensor_recording(c[0], c[1], path, inferred=sensor is None)


def _decode_c(
    name: str, data: bytes, start: int, size: int, sensor: tuple[int, int] | None
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The compiled EVT decoder ``name`` (``_decoders.c``), or ``None`` to take the numpy
    path. The output holds one event per EVT 2.0 word, and for EVT 3.0 the bound that
    ``sf_evt3_bound`` counts (one per EVT_ADDR_X and per set vector mask bit)."""
    lib = compiled()
    if lib is None or (len(data) - start) % size or (sensor is not None and min(sensor) < 0):
        return None
    n = (len(data) - start) // size
    cap = n if name == "sf_evt2" else lib.sf_evt3_bound(data, len(data), start)
    if cap < 0:
        return None
    width, height = sensor if sensor is not None else (-1, -1)
    out, ptr, meta = new_events(cap)
    k = getattr(lib, name)(data, len(data), start, width, height, ptr, cap, meta)
    return native_events(out, k, meta, sensor)


def decode_evt2(
    raw: RawBytes, sensor_size: tuple[int, int] | None = None, path: PathArg = None
) -> EventRecording:
    """Decode an EVT 2.0 ``.raw`` file.

    Args:
        raw: the whole file's bytes.
        sensor_size: ``(width, height)``; ``None`` reads it from the header
            (``format``/``geometry`` lines, else the plugin name) or, failing that,
            infers it from the largest coordinates.
        path: the file name, for error messages.

    Raises:
        DataFormatError: an empty file, a header declaring another encoding (EVT 2.1
            included), a length that is not a whole number of words (truncated), an
            unknown word type, a TIME_HIGH that goes back without wrapping around,
            coordinates outside the sensor, timestamps that go backwards, or no events
            and no sensor size to be had.
    """
    return _evt_recording(raw, sensor_size, path, "evt2")


def decode_evt3(
    raw: RawBytes, sensor_size: tuple[int, int] | None = None, path: PathArg = None
) -> EventRecording:
    """Decode an EVT 3.0 ``.raw`` file (every word type), in memory bounded by the file
    and its events (chunks; see :mod:`spikeflow.data.io._evt`).

    Args:
        raw: the whole file's bytes.
        sensor_size: as for :func:`decode_evt2`.
        path: the file name, for error messages.

    Raises:
        DataFormatError: as :func:`decode_evt2` (an odd data length is truncated), and,
            without a sensor size, an ``x`` past 65535 (a run of vector words).
    """
    return _evt_recording(raw, sensor_size, path, "evt3")


def read_evt2(path: str | PathLike, sensor_size: tuple[int, int] | None = None) -> EventRecording:
    """Read an EVT 2.0 ``.raw`` file (see :func:`decode_evt2`)."""
    return decode_evt2(read_bytes(path), sensor_size, path)


def read_evt3(path: str | PathLike, sensor_size: tuple[int, int] | None = None) -> EventRecording:
    """Read an EVT 3.0 ``.raw`` file (see :func:`decode_evt3`)."""
    return decode_evt3(read_bytes(path), sensor_size, path)


def read_prophesee_raw(
    path: str | PathLike, sensor_size: tuple[int, int] | None = None
) -> EventRecording:
    """Read a ``.raw`` file, choosing EVT 2.0 or 3.0 from its header (parsed once).

    Raises:
        DataFormatError: as :func:`decode_evt2`, and a header that names no encoding or
            one other than EVT 2.0 and 3.0.
    """
    sensor_size = sensor_size_arg(sensor_size, "read_prophesee_raw")
    data = read_bytes(path)
    header = parse_prophesee_header(data, path)
    enc = _check_encoding(header[0], None, path)
    if enc in ("evt2", "evt3"):
        return _evt_recording(data, sensor_size, path, enc, header)
    raise format_error(
        path,
        0,
        f"the header names no supported encoding (found {enc!r}; "
        "expected '% evt 2.0' or '% evt 3.0')",
    )


def decode_dat(
    raw: RawBytes, sensor_size: tuple[int, int] | None = None, path: PathArg = None
) -> EventRecording:
    """Decode a Prophesee ``.dat`` file of CD events (N-CARS, ATIS, Gen1/1Mpx Automotive).

    Read as Prophesee's own loaders read it (``src/io/dat_events_tools.py`` of the
    automotive dataset toolbox, ``metavision_core.event_io.dat_tools``): a file that
    starts with a ``"% "`` line has a header, then the event type and size bytes; a file
    that does not is headerless, Event2D (type 0) events of 8 bytes from byte 0. The
    polarity is bit 60 of each event (bit 28 of its second word: their ``P_MASK``); bits
    61-63 (the rest of Metavision's 4-bit ``p`` field, 0 in CD files) are ignored, as
    they are there. The 32-bit timestamps are unwrapped past ``2**32`` µs (71.6 min):
    Metavision writes ``uint32(t - origin)``, so a longer recording wraps around; a
    decrease counts as one wrap when at most ``2**24`` µs pass across it (from near
    ``2**32`` to near 0), as in :func:`~spikeflow.data.io.read_aedat2`; any other
    decrease is an error (Prophesee's loaders return the wrapped times as they are).

    Args:
        raw: the whole file's bytes.
        sensor_size: ``(width, height)``; ``None`` reads ``% Width``/``% Height`` or
            ``% geometry`` from the header, else infers it from the largest coordinates
            (N-CARS samples are crops of varying size).
        path: the file name, for error messages.

    Raises:
        DataFormatError: an empty file, a header without the type/size bytes, an event
            type other than CD (0 or 12) or a size other than 8, a truncated last event,
            coordinates outside the sensor, timestamps that go backwards other than by
            a 32-bit wrap-around, or no events and no sensor size to be had (naming the
            file and the byte offset).
    """
    sensor_size = sensor_size_arg(sensor_size, "decode_dat")
    data = as_bytes(raw)
    if not data:
        raise empty_file_error(path)
    fields: dict[str, str] = {}
    body = 0  # headerless: Event2D (type 0, 8 bytes) from byte 0, as Prophesee's loaders
    if data.startswith(DAT_HEADER_START):
        fields, start = parse_prophesee_header(data, path)
        body = dat_body_start(data, start, len(data), path)
    words = _words(data, body, "<u8", path)
    t = _unwrap_u32(words & 0xFFFFFFFF)
    a = words >> 32
    x = a & 0x3FFF
    y = (a >> 14) & 0x3FFF
    p = ((a >> 28) & 1).astype(np.int8)

    def offset_of(i: int) -> int:
        return body + 8 * i

    check_monotonic(t, path, offset_of, note=_NOT_A_WRAP)
    size = sensor_size or _sensor_from_header(fields, path)
    return checked_recording(t, x, y, p, size, path, offset_of)


def read_dat(path: str | PathLike, sensor_size: tuple[int, int] | None = None) -> EventRecording:
    """Read a Prophesee ``.dat`` file (see :func:`decode_dat`)."""
    return decode_dat(read_bytes(path), sensor_size, path)
