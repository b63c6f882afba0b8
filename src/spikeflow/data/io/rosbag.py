"""ROS 1 bag files (format 2.0), the container of the DAVIS event-camera dataset, MVSEC
and the event-based VPR recordings: the messages of chosen topics, and decoders for the
message types those datasets use (``dvs_msgs/EventArray``, ``geometry_msgs/PoseStamped``).

A bag starts with the line ``#ROSBAG V2.0``, then records: ``int32`` header length, the
header (fields ``int32 length`` + ``name=value``; ``op`` is the record type), ``int32``
data length, the data; all little-endian. Records read here: chunks (op 5; ``compression``
``none``, ``bz2`` or ``lz4``, holding connection and message records), connections (op 7:
``conn`` id, the data a connection header with ``topic`` and ``type``) and messages
(op 2: ``conn``, ``time``). The bag header (3), index (4) and chunk-info (6) records are
skipped: every message is found by walking the chunks in file order, so the order of a
topic's messages is the order in which they were written.

Message bodies are ROS-serialised: ``std_msgs/Header`` (``uint32 seq``, ``time stamp``
as ``uint32`` seconds and nanoseconds, ``string frame_id`` as ``uint32`` length + bytes)
then the type's fields. A ``dvs_msgs/EventArray`` holds ``uint32 height``, ``uint32
width`` and ``uint32`` count events of 13 packed bytes: ``uint16 x``, ``uint16 y``,
``time ts`` (seconds, nanoseconds), ``uint8 polarity``.
"""

from __future__ import annotations

import bz2
import mmap
import os
import struct
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import (
    check_in_sensor,
    empty_file_error,
    import_optional,
    sensor_size_arg,
)
from spikeflow.data.io._common import sort_by_time as _sort_by_time
from spikeflow.errors import ConfigurationError

__all__ = [
    "ROSBAG_MAGIC",
    "RosMessages",
    "decode_event_arrays",
    "decode_pose_stamped",
    "read_rosbag",
    "read_rosbag_events",
    "rosbag_topics",
]

ROSBAG_MAGIC = b"#ROSBAG V2.0\n"

#: What records are read from: the memory-mapped file or a decompressed chunk.
_Buffer = bytes | mmap.mmap

#: One packed ``dvs_msgs/Event``: x, y, ts (seconds, nanoseconds), polarity.
_EVENT = np.dtype([("x", "<u2"), ("y", "<u2"), ("s", "<u4"), ("ns", "<u4"), ("p", "u1")])
assert _EVENT.itemsize == 13


@dataclass
class RosMessages:
    """The messages of one topic of a bag, in file order.

    Attributes:
        topic: the topic name (``/dvs/events``).
        type: its message type (``dvs_msgs/EventArray``).
        data: each message's serialised body.
        offsets: each body's byte offset in the file (for messages inside a compressed
            chunk: the chunk's offset), for error messages.
    """

    topic: str
    type: str
    data: list[bytes] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


def _header_fields(buf: _Buffer, start: int, end: int, path: Path, where: int) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    pos = start
    while pos < end:
        if pos + 4 > end:
            raise format_error(path, where, "truncated record header field length")
        (n,) = struct.unpack_from("<i", buf, pos)
        if n < 0 or pos + 4 + n > end:
            raise format_error(
                path, where, f"a record header field of {n} bytes runs past its header"
            )
        item = buf[pos + 4 : pos + 4 + n]
        name, eq, value = item.partition(b"=")
        if not eq:
            raise format_error(path, where, f"a record header field without '=': {item[:40]!r}")
        fields[name.decode("latin-1")] = value
        pos += 4 + n
    return fields


def _records(
    buf: _Buffer, start: int, path: Path, base: int | None, chunk_at: int = 0
) -> list[tuple[dict[str, bytes], int, int]]:
    """``(header fields, data start, data end)`` of each record of ``buf[start:]``;
    ``base``: the file offset of ``buf[0]`` (``None`` inside a compressed chunk, whose
    records are then named by the chunk's offset ``chunk_at``)."""
    out = []
    pos = start
    while pos < len(buf):
        where = pos + base if base is not None else chunk_at
        inner = "" if base is not None else f" (byte {pos} of the decompressed chunk)"
        if pos + 4 > len(buf):
            raise format_error(path, where, f"truncated record{inner}: no header length")
        (hlen,) = struct.unpack_from("<i", buf, pos)
        if hlen < 0 or pos + 8 + hlen > len(buf):
            raise format_error(
                path, where, f"truncated record{inner}: a {hlen}-byte header runs past the end"
            )
        fields = _header_fields(buf, pos + 4, pos + 4 + hlen, path, where)
        (dlen,) = struct.unpack_from("<i", buf, pos + 4 + hlen)
        data = pos + 8 + hlen
        if dlen < 0 or data + dlen > len(buf):
            raise format_error(
                path, where, f"truncated record{inner}: {dlen} data bytes run past the end"
            )
        if "op" not in fields or len(fields["op"]) != 1:
            raise format_error(path, where, f"a record without a one-byte op field{inner}")
        out.append((fields, data, data + dlen))
        pos = data + dlen
    return out


def _int(fields: dict[str, bytes], name: str, fmt: str, path: Path, where: int) -> int:
    value = fields.get(name)
    if value is None or len(value) != struct.calcsize(fmt):
        raise format_error(path, where, f"record field {name!r} is missing or has the wrong size")
    return int(struct.unpack(fmt, value)[0])


def _utf8(fields: dict[str, bytes], name: str, path: Path, where: int) -> str:
    """A connection record's text field (a topic or type name), UTF-8 as ROS writes it."""
    try:
        return fields[name].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise format_error(
            path, where, f"connection {name} {fields[name][:60]!r} is not UTF-8 ({exc.reason})"
        ) from None


#: bzip2's largest expansion, from its format: a block holds at most 100 000 x (the
#: level digit of ``BZh1``-``BZh9``) bytes before its last stage, which turns every 5 of
#: them (a run of 4 and a count byte up to 255) into at most 259; a block takes at least
#: 171 bits (48 magic, 32 CRC, 1 + 24 flags and origin, 32 symbol map, 3 + 15 group and
#: selector counts, 2 x 8 code lengths). So ``n`` bytes hold at most ``ceil(8 n / 171)``
#: blocks (measured: 64 MiB of zeros, 2 blocks at level 9, take 79 bytes: room for 4).
_BZ2_BLOCK_BITS = 171
_BZ2_BYTES_PER_LEVEL = 100_000 * 259 // 5
#: LZ4's: a sequence of ``k`` match-length bytes (3 + k bytes with token and offset)
#: copies at most 19 + 255 k bytes, under 255 per byte; literals copy one per byte.
_LZ4_MAX_RATIO = 255


def _most_expansion(kind: str, data: bytes) -> int:
    """The most bytes a ``kind`` (bz2 or lz4) stream of ``data`` can decompress to."""
    if kind == "lz4":
        return _LZ4_MAX_RATIO * len(data)
    head = bytes(data[:4])
    level = head[3] - 48 if head[:3] == b"BZh" and b"1" <= head[3:] <= b"9" else 9
    return -(-8 * len(data) // _BZ2_BLOCK_BITS) * level * _BZ2_BYTES_PER_LEVEL


def _decompress(fields: dict[str, bytes], data: bytes, path: Path, where: int) -> bytes:
    """A chunk's records, decompressed to at most one byte more than the ``size`` its
    header declares (a damaged or hostile chunk cannot expand to gigabytes first). A
    declared size the compressed bytes cannot produce (:func:`_most_expansion`) is
    refused first: the bag's index records give message offsets inside a chunk, a lower
    bound only, so the format's own ratio is the upper bound."""
    kind = fields.get("compression", b"none").decode("latin-1")
    size = _int(fields, "size", "<I", path, where)
    ended = True
    if kind in ("bz2", "lz4") and size > (most := _most_expansion(kind, data)):
        raise format_error(  # refused before a forged size is decompressed
            path,
            where,
            f"the {kind} chunk declares {size} bytes, more than its {len(data)} compressed "
            f"bytes can hold ({most} at most)",
        )
    if kind == "none":
        out = data
    elif kind == "bz2":
        try:
            dec = bz2.BZ2Decompressor()
            out, ended = dec.decompress(data, max_length=size + 1), dec.eof
        except (OSError, ValueError, EOFError) as exc:
            raise format_error(path, where, f"bad bz2 chunk ({exc})") from None
    elif kind == "lz4":
        lz4 = import_optional("lz4.frame", "lz4-compressed ROS bags", "lz4")
        try:
            dec = lz4.LZ4FrameDecompressor()
            out = dec.decompress(bytes(data), max_length=size + 1)
            ended = dec.eof
        except RuntimeError as exc:
            raise format_error(path, where, f"bad lz4 chunk ({exc})") from None
    else:
        raise format_error(path, where, f"unknown chunk compression {kind!r} (none, bz2, lz4)")
    if len(out) == size and not ended:
        raise format_error(path, where, f"the {kind} chunk's stream does not end (truncated)")
    if len(out) != size:
        held = f"more than {size}" if len(out) > size else str(len(out))
        raise format_error(path, where, f"the chunk holds {held} bytes, its header says {size}")
    return out


def _walk(
    path: Path, topics: Collection[str] | None
) -> tuple[dict[int, tuple[str, str]], dict[str, RosMessages]]:
    """The connections ``{conn: (topic, type)}`` and the messages of ``topics``. The
    file is memory-mapped and only the chunks and the kept messages are copied (the
    bags of these datasets are GBs, mostly images)."""
    if path.stat().st_size == 0:
        raise empty_file_error(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _walk_buffer(path, buf, topics)


def _walk_buffer(
    path: Path, buf: mmap.mmap, topics: Collection[str] | None
) -> tuple[dict[int, tuple[str, str]], dict[str, RosMessages]]:
    head = buf[: len(ROSBAG_MAGIC)]
    if head != ROSBAG_MAGIC:
        raise format_error(path, 0, f"not a ROS bag 2.0 file (starts {head!r}, not '#ROSBAG V2.0')")
    conns: dict[int, tuple[str, str]] = {}
    # (conn, body, offset) of each message in file order whose topic is wanted or whose
    # connection record has not been seen yet
    pending: list[tuple[int, bytes, int]] = []

    def take(records: list, chunk: _Buffer, base: int | None, chunk_at: int) -> None:
        for fields, lo, hi in records:
            where = lo + base if base is not None else chunk_at
            op = fields["op"][0]
            if op == 7:
                conn = _int(fields, "conn", "<i", path, where)
                info = _header_fields(chunk, lo, hi, path, where)
                if "topic" not in info or "type" not in info:
                    raise format_error(path, where, "a connection record without topic or type")
                conns[conn] = (_utf8(info, "topic", path, where), _utf8(info, "type", path, where))
            elif op == 2:
                conn = _int(fields, "conn", "<i", path, where)
                if conn in conns and topics is not None and conns[conn][0] not in topics:
                    continue
                pending.append((conn, bytes(chunk[lo:hi]), where))
            elif op == 5 and base is not None:
                data = _decompress(fields, chunk[lo:hi], path, where)
                plain = fields.get("compression", b"none") == b"none"
                inner = _records(data, 0, path, lo + base if plain else None, where)
                take(inner, data, lo + base if plain else None, where)

    take(_records(buf, len(ROSBAG_MAGIC), path, 0), buf, 0, 0)
    out: dict[str, RosMessages] = {}
    for conn, body, where in pending:
        if conn not in conns:
            raise format_error(
                path, where, f"a message on connection {conn}, which no record defines"
            )
        topic, kind = conns[conn]
        if topics is not None and topic not in topics:
            continue
        entry = out.setdefault(topic, RosMessages(topic, kind))
        if entry.type != kind:
            raise format_error(path, where, f"topic {topic} carries both {entry.type} and {kind}")
        entry.data.append(body)
        entry.offsets.append(where)
    return conns, out


def rosbag_topics(path: str | os.PathLike) -> dict[str, str]:
    """Every topic of a ROS 1 bag and its message type, ``{"/dvs/events":
    "dvs_msgs/EventArray", ...}``, sorted by topic (topics without messages included).

    Raises:
        DataFormatError: see :func:`read_rosbag`.
    """
    conns, _ = _walk(Path(path), ())
    return dict(sorted(conns.values()))


def read_rosbag(
    path: str | os.PathLike, topics: Collection[str] | None = None
) -> dict[str, RosMessages]:
    """The messages of a ROS 1 bag (format 2.0), by topic, in file order.

    Args:
        path: the ``.bag`` file.
        topics: the topics to keep (``None``: all).

    Returns:
        ``{topic: RosMessages}`` for each kept topic that has messages.

    Raises:
        DataFormatError: not a bag 2.0 file, a truncated record, a record header
            field without ``=``, a chunk whose compression is unknown or whose size
            differs from its header, a message on an undefined connection, or a topic
            with two message types (naming the file and the byte offset).
        MissingExtraError: an lz4-compressed chunk and no ``lz4`` package.
        ConfigurationError: ``topics`` is one string (its characters would be the
            topics, matching none), not a collection of names.
    """
    if isinstance(topics, str | bytes):
        raise ConfigurationError(
            f"read_rosbag: topics must be a collection of topic names, not one string; got "
            f"{topics!r} (pass ({topics!r},))"
        )
    return _walk(Path(path), None if topics is None else set(topics))[1]


def _header_end(body: bytes, path: Path, where: int) -> tuple[int, int]:
    """``(stamp in ns, offset after the std_msgs/Header)`` of a message body."""
    if len(body) < 16:
        raise format_error(path, where, "message body shorter than a std_msgs/Header")
    _, sec, nsec, n = struct.unpack_from("<IIII", body, 0)
    if 16 + n > len(body):
        raise format_error(path, where, f"header frame_id of {n} bytes runs past the message")
    return sec * 1_000_000_000 + nsec, 16 + n


def decode_event_arrays(
    messages: RosMessages, path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """The events of a topic of ``dvs_msgs/EventArray`` messages, concatenated.

    Returns:
        ``(t_ns, x, y, p, (width, height))``: absolute event times in integer
        nanoseconds (int64), coordinates, polarity (int8, 0/1) and the size the messages
        declare (the first message's; all must agree).

    Raises:
        DataFormatError: another message type, a message shorter than its event count
            says or longer, a polarity other than 0/1, or messages declaring different
            sizes (naming the file and the message's offset).
    """
    path = Path(path)
    if messages.type != "dvs_msgs/EventArray":
        raise format_error(
            path, None, f"topic {messages.topic} is {messages.type}, not dvs_msgs/EventArray"
        )
    parts = []
    size: tuple[int, int] | None = None
    for body, where in zip(messages.data, messages.offsets, strict=True):
        _, pos = _header_end(body, path, where)
        if pos + 12 > len(body):
            raise format_error(path, where, "EventArray message truncated before its event count")
        height, width, count = struct.unpack_from("<III", body, pos)
        pos += 12
        if len(body) != pos + 13 * count:
            raise format_error(
                path, where, f"EventArray message of {len(body)} bytes does not hold its "
                f"{count} events of 13 bytes after a {pos}-byte head"
            )  # fmt: skip
        if size is None:
            size = (width, height)
        elif size != (width, height):
            raise format_error(
                path,
                where,
                f"message declares a {width}x{height} sensor, earlier ones {size[0]}x{size[1]}",
            )
        parts.append(np.frombuffer(body, _EVENT, count, pos))
    ev = np.concatenate(parts) if parts else np.zeros(0, _EVENT)
    bad = np.flatnonzero(ev["p"] > 1)
    if bad.size:
        raise format_error(
            path, None, f"{messages.topic}: event {int(bad[0])} has polarity {int(ev['p'][bad[0]])}"
        )
    t_ns = ev["s"].astype(np.int64) * 1_000_000_000 + ev["ns"].astype(np.int64)
    return t_ns, ev["x"].copy(), ev["y"].copy(), ev["p"].astype(np.int8), size or (0, 0)


def decode_pose_stamped(
    messages: RosMessages, path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """The poses of a topic of ``geometry_msgs/PoseStamped`` messages.

    Returns:
        ``(t_ns, pose)``: each header stamp in integer nanoseconds (int64) and a float64
        ``[N, 7]`` array of ``(x, y, z, qx, qy, qz, qw)`` as stored.

    Raises:
        DataFormatError: another message type, or a message of the wrong length.
    """
    path = Path(path)
    if messages.type != "geometry_msgs/PoseStamped":
        raise format_error(
            path, None, f"topic {messages.topic} is {messages.type}, not geometry_msgs/PoseStamped"
        )
    t = np.zeros(len(messages.data), np.int64)
    pose = np.zeros((len(messages.data), 7), np.float64)
    for i, (body, where) in enumerate(zip(messages.data, messages.offsets, strict=True)):
        t[i], pos = _header_end(body, path, where)
        if len(body) != pos + 56:
            raise format_error(
                path, where, f"PoseStamped message of {len(body)} bytes, expected {pos + 56}"
            )
        pose[i] = np.frombuffer(body, "<f8", 7, pos)
    return t, pose


def read_rosbag_events(
    path: str | os.PathLike,
    topic: str = "/dvs/events",
    sensor_size: tuple[int, int] | None = None,
) -> tuple[EventRecording, int]:
    """The events of one ``dvs_msgs/EventArray`` topic of a bag, with times in µs from
    the earliest event, in integer arithmetic: ``(t_ns - t_ns.min()) // 1000``.

    Tonic's ``DAVISDATA``, ``MVSEC`` and ``VPR`` count from the first event in message
    order (``ts - ts[0]``) and keep that order; for a bag whose messages are in time
    order (as a recorder writes them) that is the earliest event and the two agree. A
    bag with messages out of time order gave Tonic (and spikeflow before) negative
    times; here the origin is the earliest event and the events are sorted, so every
    time is ``>= 0`` (Tonic's times minus their minimum, stably sorted).

    Args:
        path: the ``.bag`` file.
        topic: the event topic.
        sensor_size: ``(width, height)``; ``None``: what the messages declare.

    Returns:
        The recording (2 polarities; events stably sorted by time when the messages
        are not in time order) and the origin, the earliest event's absolute time in ns
        (0 without events), to align other topics with it.

    Raises:
        DataFormatError: the topic is missing or of another type, a bad record or
            message (:func:`read_rosbag`, :func:`decode_event_arrays`), or an event
            outside the sensor (naming the file and event).
    """
    sensor_size = sensor_size_arg(sensor_size, "read_rosbag_events")
    path = Path(path)
    found = read_rosbag(path, (topic,))
    if topic not in found:
        raise format_error(path, None, f"no messages on topic {topic!r}")
    t_ns, x, y, p, declared = decode_event_arrays(found[topic], path)
    width, height = sensor_size or declared
    check_in_sensor(x, y, width, height, path, lambda i: None, f"{topic} event")
    origin = int(t_ns.min()) if len(t_ns) else 0
    t = (t_ns - origin) // 1000
    events = make_events(t, x, y, p)
    return EventRecording(_sort_by_time(events), (width, height, 2), str(path)), origin
