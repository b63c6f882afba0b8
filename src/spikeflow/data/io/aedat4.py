"""AEDAT 4.0 files (iniVation DV software): events, IMU and triggers; frames listed.

Layout: the 14-byte magic ``#!AER-DAT4.0\\r\\n``; a uint32 size and an ``IOHeader``
FlatBuffer (identifier ``IOHE``: field 0 compression -- 0 none, 1 LZ4, 2 LZ4 high,
3 Zstd, 4 Zstd high --, field 1 the int64 position of the closing data table or -1,
field 2 an XML "info node" describing each output stream: its numeric id,
``typeIdentifier`` (``EVTS``, ``FRME``, ``IMUS``, ``TRIG``), ``sizeX``/``sizeY``,
``source``); then packets: int32 stream id, int32 byte size, and that many bytes of a
size-prefixed FlatBuffer, compressed as the header says. An ``EventPacket`` (``EVTS``)
holds a vector of 16-byte structs (int64 t in µs, int16 x, int16 y, bool polarity,
3 padding bytes); ``IMUPacket`` and ``TriggerPacket`` hold vectors of tables. The data
table after the last packet (an index for seeking) is not needed and not read.

LZ4 and Zstd need the optional packages ``lz4`` and ``zstandard`` (extra ``data``).
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from os import PathLike

import numpy as np

from spikeflow.data.events import EventRecording, format_error
from spikeflow.data.io._common import (
    MAX_PACKET_BYTES,
    PathArg,
    RawBytes,
    as_bytes,
    check_monotonic,
    checked_recording,
    decode_in_chunks,
    empty_file_error,
    import_optional,
    indexed,
    read_bytes,
    sensor_recording,
)
from spikeflow.data.io._flatbuffers import FlatBuffer
from spikeflow.errors import ConfigurationError

__all__ = [
    "AEDAT4_IMU_DTYPE",
    "AEDAT4_TRIGGER_DTYPE",
    "Aedat4Info",
    "Aedat4Stream",
    "decode_aedat4",
    "parse_aedat4",
    "read_aedat4",
    "read_aedat4_imu",
    "read_aedat4_info",
    "read_aedat4_triggers",
]

MAGIC = b"#!AER-DAT4.0\r\n"
_COMPRESSION = ("none", "lz4", "lz4_high", "zstd", "zstd_high")
_KINDS = {"EVTS": "events", "FRME": "frames", "IMUS": "imu", "TRIG": "triggers"}
#: Why a stream's size can be unknown (there is no argument to pass it).
_NO_SIZE = "the event stream declares no sizeX/sizeY"
_EVENT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("_", "V3")])

#: IMU samples (table fields 0-10 of dv's ``IMU``): time, temperature, accelerometer
#: (g), gyroscope (deg/s), magnetometer.
AEDAT4_IMU_DTYPE = np.dtype(
    [("t", "<i8"), ("temperature", "<f4")]
    + [(f"{s}_{a}", "<f4") for s in ("accel", "gyro", "mag") for a in "xyz"]
)
#: Trigger events: time and dv's ``TriggerType`` code.
AEDAT4_TRIGGER_DTYPE = np.dtype([("t", "<i8"), ("type", "i1")])


@dataclass(frozen=True)
class Aedat4Stream:
    """One output stream declared in the header.

    Attributes:
        id: the stream id that tags its packets.
        name: the recorded output name (e.g. ``"events"``).
        type_identifier: the FlatBuffer identifier (``EVTS``, ``FRME``, ``IMUS``, ...).
        kind: ``"events"``, ``"frames"``, ``"imu"``, ``"triggers"`` or ``"other"``.
        size: ``(sizeX, sizeY)`` for event and frame streams, else ``None``.
        source: the camera that produced it (e.g. ``"DAVIS346_00000104"``).
        packets: how many packets of this stream the file holds.
    """

    id: int
    name: str
    type_identifier: str
    kind: str
    size: tuple[int, int] | None
    source: str | None
    packets: int


@dataclass(frozen=True)
class Aedat4Info:
    """The parsed header and packet index of an AEDAT 4 file.

    Attributes:
        compression: ``"none"``, ``"lz4"``, ``"lz4_high"``, ``"zstd"`` or ``"zstd_high"``.
        streams: every declared stream.
        packets: ``(stream_id, payload_offset, payload_size)`` of each packet, in order.
    """

    compression: str
    streams: tuple[Aedat4Stream, ...]
    packets: tuple[tuple[int, int, int], ...]

    def stream(self, kind: str, stream_id: int | None = None) -> Aedat4Stream:
        """The stream with ``stream_id`` (must be of ``kind``) or the first of ``kind``.

        Raises:
            StreamNotFoundError: (a LookupError) no such stream.
        """
        for s in self.streams:
            if (stream_id is None or s.id == stream_id) and s.kind == kind:
                return s
        have = ", ".join(f"{s.id}:{s.kind}" for s in self.streams) or "none"
        want = f"stream {stream_id!r} of kind {kind!r}" if stream_id is not None else kind
        raise StreamNotFoundError(f"no {want} in this file (streams: {have})")


class StreamNotFoundError(ConfigurationError, LookupError):
    """The stream an AEDAT 4 reader was asked for is not in the file (a spikeflow
    ConfigurationError that is also the LookupError it used to be)."""


def _streams_from_xml(text: str, path: PathArg, offset: int) -> list[dict]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise format_error(
            path, offset, f"the header's info-node XML is malformed: {exc}"
        ) from None
    out = []
    for node in root.iter("node"):
        attrs = {a.get("key"): (a.text or "") for a in node.findall("attr")}
        if "typeIdentifier" not in attrs:
            continue
        info = node.find("node[@name='info']")
        inf = (
            {a.get("key"): (a.text or "") for a in info.findall("attr")} if info is not None else {}
        )
        try:
            sid = int(node.get("name", ""))
            size = (int(inf["sizeX"]), int(inf["sizeY"])) if "sizeX" in inf else None
        except (ValueError, KeyError):
            raise format_error(
                path, offset, f"stream node {node.get('name')!r} has bad id/size"
            ) from None
        if size is not None and (min(size) <= 0 or max(size) > 65535):
            raise format_error(path, offset, f"stream {sid} has an impossible size {size}")
        ident = attrs["typeIdentifier"].strip()
        out.append(dict(
            id=sid, name=attrs.get("originalOutputName", ""), type_identifier=ident,
            kind=_KINDS.get(ident, "other"), size=size, source=inf.get("source"),
        ))  # fmt: skip
    return out


def parse_aedat4(raw: RawBytes, path: PathArg = None) -> Aedat4Info:
    """Parse the header and walk the packets of an AEDAT 4 file (nothing decompressed).

    Raises:
        DataFormatError: an empty file, a wrong magic, a bad IOHeader FlatBuffer or XML,
            an unknown compression, a packet of an undeclared stream, a packet size that
            runs past the end of the file (truncated) or past the data table.
    """
    data = as_bytes(raw)
    if not data:
        raise empty_file_error(path)
    if not data.startswith(MAGIC):
        raise format_error(
            path, 0, f"not an AEDAT 4.0 file: expected {MAGIC!r}, found {data[:14]!r}"
        )
    if len(data) < len(MAGIC) + 4:
        raise format_error(path, len(MAGIC), "truncated: no IOHeader after the magic")
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    hstart = len(MAGIC) + 4
    if size > len(data) - hstart:
        raise format_error(
            path, len(MAGIC), f"truncated: IOHeader of {size} bytes runs past the end"
        )
    fb = FlatBuffer(data[hstart : hstart + size], path, hstart, "IOHeader")
    root = fb.root(False, b"IOHE")
    comp = int(fb.scalar(root, 0, "i", 0))
    table_pos = int(fb.scalar(root, 1, "q", -1))
    xml = fb.string(root, 2) or ""
    if not 0 <= comp < len(_COMPRESSION):
        raise format_error(path, hstart, f"unknown compression type {comp}")
    streams = _streams_from_xml(xml, path, hstart)
    known = {s["id"] for s in streams}
    pos = hstart + size
    end = len(data) if table_pos < 0 else table_pos
    if end > len(data) or end < pos:
        raise format_error(path, hstart, f"data table position {table_pos} is outside the file")
    packets = []
    counts = dict.fromkeys(known, 0)
    while pos < end:
        if end - pos < 8:
            raise format_error(
                path, pos, f"truncated: {end - pos} byte(s) left, less than a packet header"
            )
        sid, psize = struct.unpack_from("<ii", data, pos)
        if sid not in known:
            raise format_error(
                path, pos, f"packet of stream {sid}, which the header does not declare"
            )
        if psize <= 0 or psize > end - pos - 8:
            raise format_error(
                path, pos, f"truncated or corrupt: packet of {psize} bytes, {end - pos - 8} remain"
            )  # fmt: skip
        packets.append((sid, pos, psize))
        counts[sid] += 1
        pos += 8 + psize
    return Aedat4Info(
        _COMPRESSION[comp],
        tuple(Aedat4Stream(packets=counts[s["id"]], **s) for s in streams),
        tuple(packets),
    )


def _decompress(data: bytes, pos: int, size: int, compression: str, path: PathArg) -> bytes:
    """One packet's payload, decompressed; bounded so that corrupt data cannot explode."""
    payload = data[pos + 8 : pos + 8 + size]
    if compression == "none":
        return payload
    limit = MAX_PACKET_BYTES
    if compression.startswith("lz4"):
        lz4 = import_optional("lz4.frame", "AEDAT 4 LZ4 packets", "lz4")
        limit = min(limit, 256 * size + 65536)  # LZ4 cannot expand more than ~255x
        try:
            dec = lz4.LZ4FrameDecompressor()
            out = dec.decompress(payload, max_length=limit)
            complete = dec.eof and not dec.unused_data
        except RuntimeError as exc:
            raise format_error(path, pos, f"corrupt LZ4 packet: {exc}") from None
    else:
        zstd = import_optional("zstandard", "AEDAT 4 Zstd packets", "zstandard")
        try:
            dec = zstd.ZstdDecompressor().decompressobj()
            chunks, total = [], 0
            for k in range(0, size, 1024):  # small steps keep a bomb's output bounded
                chunks.append(dec.decompress(payload[k : k + 1024]))
                total += len(chunks[-1])
                if total > limit or dec.eof:
                    break
            out = b"".join(chunks)
            complete = dec.eof and not dec.unused_data and k + 1024 >= size
        except zstd.ZstdError as exc:
            raise format_error(path, pos, f"corrupt Zstd packet: {exc}") from None
    if not complete or len(out) > limit:
        raise format_error(
            path, pos, f"{compression} packet is truncated, has trailing bytes, or decodes to "
            f"over {limit} bytes"
        )  # fmt: skip
    return out


def _select(info: Aedat4Info, kind: str, stream: int | None, path: PathArg) -> Aedat4Stream:
    try:
        return info.stream(kind, stream)
    except StreamNotFoundError as exc:
        if stream is not None:  # the argument names a stream the file lacks: name the file
            raise StreamNotFoundError(f"{path}: {exc}".replace(" in this file", "")) from None
        raise format_error(path, len(MAGIC) + 4, f"no {kind} stream is declared ({exc})") from None


def _packets(data: bytes, info: Aedat4Info, stream: Aedat4Stream, ident: bytes, path: PathArg):
    for k, (sid, pos, size) in enumerate(info.packets):
        if sid == stream.id:
            buf = _decompress(data, pos, size, info.compression, path)
            fb = FlatBuffer(buf, path, pos, f"packet {k} (stream {sid}, {ident.decode()})")
            yield pos, fb, fb.root(True, ident)


def decode_aedat4(raw: RawBytes, stream: int | None = None, path: PathArg = None) -> EventRecording:
    """Decode the polarity events of one event stream of an AEDAT 4 file.

    Args:
        raw: the whole file's bytes.
        stream: the stream id; ``None`` takes the first ``EVTS`` stream.
        path: the file name, for error messages.

    Raises:
        DataFormatError: anything :func:`parse_aedat4` rejects, a corrupt compressed
            packet, a bad FlatBuffer, a polarity byte other than 0/1, coordinates
            outside the stream's ``sizeX`` x ``sizeY``, timestamps that go backwards, or
            (a stream without ``sizeX``/``sizeY``) no events to infer the size from.
        StreamNotFoundError: (a ConfigurationError and LookupError) ``stream`` is given
            but is not an event stream of this file (the message names the file).
    """
    data = as_bytes(raw)
    info = parse_aedat4(data, path)
    target = _select(info, "events", stream, path)
    parts, where, counts = [], [], []
    for pos, fb, root in _packets(data, info, target, b"EVTS", path):
        start, n = fb.vector(root, 0, _EVENT.itemsize)
        parts.append(memoryview(fb.data)[start : start + n * _EVENT.itemsize])
        where.append(pos)
        counts.append(n)
    # One byte copy of every packet's events (numpy would copy structured rows field by field).
    ev = np.frombuffer(b"".join(parts), dtype=_EVENT)
    size = target.size

    def chunk(lo: int, hi: int) -> tuple[np.ndarray, ...] | None:
        c = ev[lo:hi]  # contiguous copies of the fields: later passes run at full speed
        x, y, on = (np.ascontiguousarray(c[k]) for k in ("x", "y", "on"))
        if int(x.min()) < 0 or int(y.min()) < 0 or int(on.max()) > 1:
            return None
        return np.ascontiguousarray(c["t"]), x, y, on

    fast = decode_in_chunks(len(ev), chunk, size)
    if fast is not None:
        return sensor_recording(fast[0], fast[1], path, inferred=size is None, note=_NO_SIZE)
    # A check failed: whole arrays, to locate and name the first problem.
    offsets = np.repeat(np.asarray(where, dtype=np.int64), np.asarray(counts, dtype=np.int64))

    def offset_of(i: int) -> int:
        return int(offsets[i])

    x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    bad = np.flatnonzero((x < 0) | (y < 0) | (ev["on"] > 1))
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, offset_of(i), f"event {i}: negative coordinate or polarity byte not 0/1 "
            f"(x={x[i]}, y={y[i]}, on={int(ev['on'][i])})"
        )  # fmt: skip
    # The chunked pass failed, so one of these checks raises (never the unknown size).
    p = ev["on"].astype(np.int8)
    return checked_recording(ev["t"], x, y, p, size, path, offset_of)


def read_aedat4(path: str | PathLike, stream: int | None = None) -> EventRecording:
    """Read the polarity events of an AEDAT 4 file (see :func:`decode_aedat4`)."""
    return decode_aedat4(read_bytes(path), stream, path)


def read_aedat4_info(path: str | PathLike) -> Aedat4Info:
    """The streams (id, kind, size, source, packet count) and packets of an AEDAT 4 file."""
    return parse_aedat4(read_bytes(path), path)


def _table_stream(
    path: str | PathLike, kind: str, ident: bytes, dtype: np.dtype, stream: int | None
) -> np.ndarray:
    data = read_bytes(path)
    info = parse_aedat4(data, path)
    target = _select(info, kind, stream, path)
    parts, where = [], []
    for pos, fb, root in _packets(data, info, target, ident, path):
        tables = fb.table_vector(root, 0)
        part = np.empty(tables.size, dtype=dtype)
        for k, name in enumerate(dtype.names):
            part[name] = fb.table_fields(tables, k, dtype[name].str)
        parts.append(part)
        where.append(pos)
    out = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    # The byte offset of a sample is its packet's (compressed packets have no finer one),
    # as for events.
    offsets = np.repeat(np.asarray(where, dtype=np.int64), [len(part) for part in parts])
    check_monotonic(out["t"], path, indexed(offsets), what=kind + " sample")
    return out


def read_aedat4_imu(path: str | PathLike, stream: int | None = None) -> np.ndarray:
    """The IMU samples of an AEDAT 4 file as an :data:`AEDAT4_IMU_DTYPE` array.

    Raises:
        DataFormatError: anything :func:`parse_aedat4` rejects, a bad packet, or samples
            whose time goes backwards (named at the byte offset of their packet).
    """
    return _table_stream(path, "imu", b"IMUS", AEDAT4_IMU_DTYPE, stream)


def read_aedat4_triggers(path: str | PathLike, stream: int | None = None) -> np.ndarray:
    """The trigger events of an AEDAT 4 file as an :data:`AEDAT4_TRIGGER_DTYPE` array.

    Raises:
        DataFormatError: as :func:`read_aedat4_imu`.
    """
    return _table_stream(path, "triggers", b"TRIG", AEDAT4_TRIGGER_DTYPE, stream)
