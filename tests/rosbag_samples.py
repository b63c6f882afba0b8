"""Small ROS 1 bag files (format 2.0) written byte for byte, for the rosbag reader and the
DAVISDATA / MVSEC / VPR dataset tests (no real bag is in ../shared/data).

The layout is what ``rosbag`` writes: the version line; a bag header record (op 3)
padded to 4096 bytes; chunks (op 5) holding connection (op 7) and message (op 2)
records, each followed by one index record (op 4) per connection; then, at the header's
``index_pos``, every connection record again and one chunk-info record (op 6) per chunk.
Tonic reads bags with importRosbag, which needs the bag header first, the index records
and the connection records after the chunks.
"""

from __future__ import annotations

import bz2
import struct
from pathlib import Path

import numpy as np

MAGIC = b"#ROSBAG V2.0\n"
MD5 = {
    "dvs_msgs/EventArray": "5e8beee5a6c107e504c2e78903c224b8",
    "geometry_msgs/PoseStamped": "d3812c3cbc69362b77dc0b19b345f8f5",
    "sensor_msgs/Image": "060021388200f6f0f447d0fcd9c64743",
    "sensor_msgs/Imu": "6a62c6daae103f4ff57a132d6f95cec2",
}


def field(name: str, value: bytes) -> bytes:
    item = name.encode() + b"=" + value
    return struct.pack("<i", len(item)) + item


def record(fields: dict[str, bytes], data: bytes) -> bytes:
    head = b"".join(field(k, v) for k, v in fields.items())
    return struct.pack("<i", len(head)) + head + struct.pack("<i", len(data)) + data


def time_bytes(ns: int) -> bytes:
    return struct.pack("<II", ns // 1_000_000_000, ns % 1_000_000_000)


def std_header(stamp_ns: int, seq: int = 0, frame_id: bytes = b"cam") -> bytes:
    return (
        struct.pack("<I", seq) + time_bytes(stamp_ns) + struct.pack("<I", len(frame_id)) + frame_id
    )


def event_array(stamp_ns: int, width: int, height: int, events: np.ndarray) -> bytes:
    """``events``: rows (x, y, t_ns, p)."""
    body = std_header(stamp_ns) + struct.pack("<III", height, width, len(events))
    for x, y, t, p in events.tolist():
        body += struct.pack("<HHIIB", x, y, t // 1_000_000_000, t % 1_000_000_000, p)
    return body


def pose_stamped(stamp_ns: int, pose: np.ndarray) -> bytes:
    return std_header(stamp_ns) + np.asarray(pose, "<f8").tobytes()


def image(stamp_ns: int, frame: np.ndarray, encoding: bytes = b"mono8") -> bytes:
    h, w = frame.shape[:2]
    data = frame.tobytes()
    return (
        std_header(stamp_ns) + struct.pack("<II", h, w) + struct.pack("<I", len(encoding))
        + encoding + struct.pack("<BI", 0, frame.strides[0]) + struct.pack("<I", len(data)) + data
    )  # fmt: skip


def imu(stamp_ns: int) -> bytes:
    return std_header(stamp_ns) + np.arange(4 + 9 + 3 + 9 + 3 + 9, dtype="<f8").tobytes()


def write_bag(
    path: Path,
    messages: list[tuple[str, str, int, bytes]],
    per_chunk: int = 3,
    compression: str = "none",
) -> None:
    """Write ``messages`` ``(topic, type, time_ns, body)`` in order, ``per_chunk`` to a
    chunk, compressed with ``"none"``, ``"bz2"`` or ``"lz4"``."""
    conns: dict[str, int] = {}
    types: dict[str, str] = {}
    chunks = []
    for lo in range(0, len(messages), per_chunk):
        data = b""
        index: dict[int, list[tuple[int, int]]] = {}
        for topic, kind, t, body in messages[lo : lo + per_chunk]:
            if topic not in conns:
                conns[topic], types[topic] = len(conns), kind
                data += conn_record(conns[topic], topic, kind)
            c = conns[topic]
            index.setdefault(c, []).append((t, len(data)))
            data += record(
                {"op": b"\x02", "conn": struct.pack("<i", c), "time": time_bytes(t)}, body
            )
        chunks.append(
            (data, index, messages[lo][2], messages[min(lo + per_chunk, len(messages)) - 1][2])
        )
    body = b""
    infos = []
    start = len(MAGIC) + 4096
    for data, index, t0, t1 in chunks:
        if compression == "lz4":  # the LZ4 frame format, as roslz4 writes it
            packed = __import__("lz4.frame").frame.compress(data)
        else:
            packed = bz2.compress(data) if compression == "bz2" else data
        infos.append((start + len(body), index, t0, t1))
        fields = {
            "op": b"\x05",
            "compression": compression.encode(),
            "size": struct.pack("<I", len(data)),
        }
        body += record(fields, packed)
        for c, entries in index.items():
            idx = b"".join(time_bytes(t) + struct.pack("<I", off) for t, off in entries)
            fields = {"op": b"\x04", "ver": struct.pack("<i", 1), "conn": struct.pack("<i", c),
                      "count": struct.pack("<i", len(entries))}  # fmt: skip
            body += record(fields, idx)
    index_pos = start + len(body)
    for topic, c in conns.items():
        body += conn_record(c, topic, types[topic])
    for pos, index, t0, t1 in infos:
        fields = {"op": b"\x06", "ver": struct.pack("<i", 1), "chunk_pos": struct.pack("<Q", pos),
                  "start_time": time_bytes(t0), "end_time": time_bytes(t1),
                  "count": struct.pack("<i", len(index))}  # fmt: skip
        body += record(fields, b"".join(struct.pack("<ii", c, len(e)) for c, e in index.items()))
    counts = {"conn_count": struct.pack("<i", len(conns)),
              "chunk_count": struct.pack("<i", len(chunks))}  # fmt: skip
    head = record({"op": b"\x03", "index_pos": struct.pack("<Q", index_pos), **counts}, b"")
    head = head[:-4] + struct.pack("<i", 4096 - len(head)) + b" " * (4096 - len(head))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(MAGIC + head + body)


def conn_record(c: int, topic: str, kind: str) -> bytes:
    info = b"".join(
        field(k, v.encode())
        for k, v in (("topic", topic), ("type", kind), ("md5sum", MD5.get(kind, "0" * 32)),
                     ("message_definition", f"# {kind}\n"))
    )  # fmt: skip
    return record({"op": b"\x07", "conn": struct.pack("<i", c), "topic": topic.encode()}, info)


def random_events(
    rng: np.random.Generator, n: int, width: int, height: int, t0_ns: int
) -> np.ndarray:
    """``n`` rows (x, y, t_ns, p), sorted by time, the first at ``t0_ns``; every later
    one is half a µs past a whole µs from it (so float seconds, as importRosbag computes
    them, cannot round across a µs and both readers floor to the same µs)."""
    t = t0_ns + np.sort(rng.integers(0, 50_000, n)) * 1000 + 500
    t[0] = t0_ns
    return np.stack(
        [rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n)], axis=1
    ).astype(np.int64)


def event_messages(topic: str, events: np.ndarray, width: int, height: int, per: int = 40) -> list:
    return [
        (topic, "dvs_msgs/EventArray", int(events[lo, 2]),
         event_array(int(events[lo, 2]), width, height, events[lo : lo + per]))
        for lo in range(0, len(events), per)
    ]  # fmt: skip
