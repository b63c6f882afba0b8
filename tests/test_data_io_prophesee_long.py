"""Prophesee ``.dat`` as Prophesee's loaders read it, and long recordings (past 2**32 µs)
in ``.dat``, EVT 2.0 and EVT 3.0 (spikeflow.data.io.prophesee).

References, all hand-derived from the layouts: Prophesee's loaders
(``src/io/dat_events_tools.py`` of prophesee-automotive-dataset-toolbox and
``metavision_core/event_io/dat_tools.py`` of OpenEB) take the polarity from bit 28 of the
second word only (``P_MASK = 2**29 - 2**28``) and read a file without a ``"% "`` first
line as headerless Event2D events of 8 bytes from byte 0; their ``.dat`` timestamps are
``uint32`` (Metavision writes ``uint32(t - origin)``), so a recording past 2**32 µs
wraps around and spikeflow unwraps it. The EVT files cross several TIME_HIGH wraps, so
their times pass 2**32 µs (EVT 3.0) and 2**35 µs (EVT 2.0); each runs with the numpy and
the compiled decoder (the ``decoder`` fixture). Files are a few hundred bytes to 6 KB.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from conftest import require_shared_data
from spikeflow.data.datasets.prophesee_detection import read_dat_window
from spikeflow.data.io import decode_dat, decode_evt2, decode_evt3, read_dat, read_events
from spikeflow.errors import DataFormatError

HEADER = b"% Data file containing Event2D events.\n% Version 2\n% Width 64\n% Height 48\n"


def word(t: int, x: int, y: int, nibble: int) -> bytes:
    """One 8-byte ``.dat`` event: ``t`` and the second word with ``nibble`` in bits 28-31."""
    return struct.pack("<II", t, nibble << 28 | y << 14 | x)


def tuples(rec) -> list[tuple[int, int, int, int]]:
    return [tuple(int(v) for v in e) for e in rec.events]


@pytest.fixture(autouse=True)
def _both_decoders(decoder):
    """Every test here runs with the numpy and the compiled decoder."""


def test_dat_polarity_is_bit_28_only():
    # bits 29-31 (the rest of Metavision's 4-bit p field, 0 in CD files) are ignored,
    # as Prophesee's loaders mask them out: nibble 0b1110 is OFF, 0b0011 is ON.
    body = word(1, 3, 4, 0b0001) + word(2, 5, 6, 0b1110) + word(3, 7, 8, 0b0011)
    body += word(4, 9, 10, 0b1000)
    rec = decode_dat(HEADER + bytes([12, 8]) + body)
    assert rec.sensor_size == (64, 48, 2)
    assert tuples(rec) == [(1, 3, 4, 1), (2, 5, 6, 0), (3, 7, 8, 1), (4, 9, 10, 0)]


def test_dat_without_header_is_event2d_from_byte_zero(tmp_path):
    events = [(0, 1, 2, 1), (7, 63, 47, 0), (9, 0, 0, 1)]
    body = b"".join(word(*e) for e in events)
    rec = decode_dat(body, (64, 48))
    assert tuples(rec) == events
    assert tuples(decode_dat(HEADER + bytes([0, 8]) + body)) == events
    # a first event whose time starts with '%' (0x25) but not "% " is still an event
    odd = word(0x25, 1, 1, 1) + word(0x26, 2, 2, 0)
    assert odd[:1] == b"%" and tuples(decode_dat(odd)) == [(0x25, 1, 1, 1), (0x26, 2, 2, 0)]
    with pytest.raises(DataFormatError, match=r"rec\.dat at byte offset 16: truncated: 3"):
        decode_dat(body[:19], path="rec.dat")
    # read_dat_window reads the same headerless file by binary search
    path = tmp_path / "bare_td.dat"
    path.write_bytes(body)
    assert tuples(read_dat(path)) == events
    assert tuples(read_dat_window(path, 5, 10, (64, 48))) == events[1:]
    # read_events goes by the extension, even when the first byte is "#" (AEDAT's mark)
    hashed = word(0x23, 1, 1, 1) + word(0x24, 2, 2, 0)
    path.write_bytes(hashed)
    assert hashed[:1] == b"#" and tuples(read_events(path)) == [(0x23, 1, 1, 1), (0x24, 2, 2, 0)]
    # and takes the polarity from bit 28 alone too
    path.write_bytes(word(1, 3, 4, 0b1110) + word(2, 5, 6, 0b0011))
    assert tuples(read_dat_window(path, 0, 10, (64, 48))) == [(1, 3, 4, 0), (2, 5, 6, 1)]


def test_dat_times_past_2_32_us_are_unwrapped(tmp_path):
    top = 1 << 32
    raw_t = [top - 100, top - 1, 5, 1000, top - 7, 3]  # two wrap-arounds
    body = b"".join(word(t, i, i, i % 2) for i, t in enumerate(raw_t))
    rec = decode_dat(HEADER + bytes([0, 8]) + body)
    want = [top - 100, top - 1, top + 5, top + 1000, 2 * top - 7, 2 * top + 3]
    assert [int(t) for t in rec.events["t"]] == want
    path = tmp_path / "long_td.dat"
    path.write_bytes(body)
    assert [int(t) for t in read_dat(path).events["t"]] == want


@pytest.mark.parametrize(
    ("before", "after"),
    [(5000, 10), ((1 << 32) - (1 << 24), 1)],  # far from the top; 2**24 + 1 us across
)
def test_dat_decrease_that_is_no_wrap_names_the_offset(before, after):
    body = word(1, 1, 1, 1) + word(before, 1, 1, 1) + word(after, 1, 1, 0)
    with pytest.raises(DataFormatError) as info:
        decode_dat(HEADER + bytes([0, 8]) + body, path="rec.dat")
    offset = len(HEADER) + 2 + 16
    assert f"rec.dat at byte offset {offset}: timestamp goes backwards at event 2" in str(
        info.value
    )
    assert "no 32-bit wrap-around" in str(info.value)


def test_dat_wrap_at_the_limit_is_a_wrap():
    body = word((1 << 32) - (1 << 24), 1, 1, 1) + word(0, 1, 1, 0)  # exactly 2**24 us across
    assert [int(t) for t in decode_dat(body, (64, 48)).events["t"]] == [
        (1 << 32) - (1 << 24),
        1 << 32,
    ]


def test_evt3_recording_past_2_32_us():
    # TIME_HIGH 0 -> 4090 -> wrap to 0, 300 times: 300 * 2**24 us (84 min) of events
    words = [0x0000 | 5]  # EVT_ADDR_Y 5
    want = []
    for k in range(300):
        words += [0x8000 | 0, 0x6000 | 7, 0x2000 | 1 << 11 | 3]  # ON at x 3
        words += [0x8000 | 4090, 0x6000 | 9, 0x2000 | 4]  # OFF at x 4
        base = k << 24
        want += [(base | 7, 3, 5, 1), (base | 4090 << 12 | 9, 4, 5, 0)]
    raw = b"% evt 3.0\n% geometry 64x48\n% end\n" + struct.pack(f"<{len(words)}H", *words)
    rec = decode_evt3(raw)
    assert tuples(rec) == want and int(rec.events["t"][-1]) > 1 << 32


def test_evt2_recording_past_2_35_us():
    # TIME_HIGH 0 -> 2**28 - 5 -> wrap to 0, three times: times past 2**35 us
    def cd(p: int, t6: int, x: int, y: int) -> int:
        return p << 28 | t6 << 22 | x << 11 | y

    words, want = [], []
    for k in range(3):
        words += [8 << 28 | 0, cd(1, 1, 2, 3), 8 << 28 | (1 << 28) - 5, cd(0, 63, 4, 5)]
        want += [((k << 34) | 1, 2, 3, 1), ((k << 34) | ((1 << 28) - 5) << 6 | 63, 4, 5, 0)]
    raw = b"% evt 2.0\n% format EVT2;height=48;width=64\n" + struct.pack(f"<{len(words)}I", *words)
    rec = decode_evt2(raw)
    assert tuples(rec) == want and int(rec.events["t"][-1]) > 1 << 35


def test_dat_equals_prophesee_mask_on_the_real_ncars_file():
    path = require_shared_data("event-files", "prophesee-dat") / "NCARS_obj_004397_td.dat"
    data = path.read_bytes()
    # Prophesee's loader: header lines start with "% ", then type and size bytes
    pos = 0
    while data.startswith(b"% ", pos):
        pos = data.index(b"\n", pos) + 1
    ref = np.frombuffer(data, [("t", "<u4"), ("_", "<i4")], offset=pos + 2)
    rec = read_dat(path)
    np.testing.assert_array_equal(rec.events["t"], ref["t"])
    np.testing.assert_array_equal(rec.events["x"], ref["_"] & 16383)
    np.testing.assert_array_equal(rec.events["y"], (ref["_"] & 268419072) >> 14)
    np.testing.assert_array_equal(rec.events["p"], (ref["_"] & 268435456) >> 28)


def test_dat_window_refuses_times_that_wrap(tmp_path):
    # raw times sorted no longer: the binary search found no event in [top - 200, top)
    # (two are there) and returned an empty window
    top = 1 << 32
    path = tmp_path / "long_td.dat"
    path.write_bytes(b"".join(word(t, 1, 1, 1) for t in (top - 100, top - 1, 5, 1000)))
    assert [int(t) for t in read_dat(path).events["t"]] == [top - 100, top - 1, top + 5, top + 1000]
    with pytest.raises(DataFormatError, match=r"byte offset 24: event 3's 32-bit timestamp"):
        read_dat_window(path, top - 200, top, (64, 48))
