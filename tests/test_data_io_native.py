"""The compiled event-file decoders (``_decoders.c``) against the numpy decoders.

Exact equality (every field, sensor size, or the same error message) on every real
sample file and on all 1,100 N-MNIST files of ``../shared/data/nmnist-small`` (skipped
when absent), on synthetic edge cases, and the decoder setting itself. Random and
mutated bytes go through the compiled path in a worker process in
``test_data_io_fuzz.py``; the synthetic, error and fuzz tests run with both decoders
(the ``decoder`` fixture of ``conftest.py``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import require_shared_data
from spikeflow._cbuild import CompilerNotFoundError, cache_root
from spikeflow.data.io import (
    _native,
    decode_aedat2,
    decode_aedat31,
    decode_atis_bin,
    decode_evt2,
    decode_evt3,
    get_decoder,
    read_aedat2,
    read_aedat31,
    read_atis_bin,
    read_events,
    read_evt2,
    read_evt3,
    set_decoder,
    use_decoder,
)
from spikeflow.errors import DataFormatError
from test_data_io_synthetic import AEDAT31_HEADER, aedat2_file, aedat31_packet, polarity


def _have_c() -> bool:
    try:
        with use_decoder("c"):
            return True
    except CompilerNotFoundError:
        return False


pytestmark = pytest.mark.skipif(not _have_c(), reason="no C compiler for the compiled decoders")


def outcome(name: str, fn, *args):
    with use_decoder(name):
        try:
            rec = fn(*args)
        except DataFormatError as exc:
            return ("error", str(exc))
    assert rec.events.flags.c_contiguous
    return ("ok", rec.events.tobytes(), rec.events.dtype, rec.sensor_size, rec.source)


def assert_same(fn, *args) -> tuple:
    a, b = outcome("numpy", fn, *args), outcome("c", fn, *args)
    assert a == b, f"{fn.__name__}{args!r}: numpy {str(a)[:200]} != C {str(b)[:200]}"
    return a


REAL = [
    (read_atis_bin, "nmnist-bin/sample_nmnist.bin"),
    (lambda p: read_atis_bin(p, None), "nmnist-bin/sample_nmnist.bin"),
    *[(read_aedat2, f"aedat2/{f}") for f in ("IMU_translBoxes.aedat", "sample_aedat_header.aedat",
                                             "header_test_128.aedat_test",
                                             "header_test_240.aedat_test")],
    (read_evt2, "prophesee-evt2/evt2.raw"),
    (read_evt2, "prophesee-evt2/evt2_sample.raw"),
    (lambda p: read_evt2(p, (1280, 720)), "prophesee-evt2/evt2.raw"),
    (read_evt3, "prophesee-evt3/evt3_sample.raw"),
    (read_evt3, "prophesee-evt3/evt3_test_pedestrians.raw"),
    (lambda p: read_evt3(p, (1280, 720)), "prophesee-evt3/evt3_sample.raw"),
]  # fmt: skip


@pytest.mark.parametrize("reader, relative", REAL)
def test_real_sample_files_equal(reader, relative):
    assert_same(reader, require_shared_data("event-files", relative))


@pytest.mark.parametrize("chunk", [61, 997, 4096])
def test_real_evt_files_equal_at_any_chunk_size(monkeypatch, chunk):
    """The numpy EVT decoders work chunk by chunk with their state carried over (bounded
    memory): any chunk size gives the compiled decoder's events on every real file."""
    import spikeflow.data.io._common as common

    monkeypatch.setattr(common, "CHUNK", chunk)
    root = require_shared_data("event-files")
    files = sorted(root.glob("prophesee-evt*/*.raw"))
    assert len(files) == 4
    for path in files:
        read = read_evt2 if "evt2" in path.parent.name else read_evt3
        for size in (None, (1280, 720)):
            assert assert_same(read, path, size)[0] == "ok"


def test_every_real_event_file_equal():
    """read_events on every sample file (formats without a C path included)."""
    root = require_shared_data("event-files")
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in (".aedat", ".aedat4", ".raw", ".dat", ".bin", ".bs1"):
            assert_same(read_events, path)


def test_all_nmnist_small_files_equal():
    root = require_shared_data("nmnist-small")
    files = sorted(root.glob("*/*/*.bin"))
    assert len(files) == 1100
    for f in files:
        assert assert_same(read_atis_bin, f)[0] == "ok"
        assert_same(read_atis_bin, f, None)


def atis(events: list[tuple[int, int, int, int]]) -> bytes:
    return b"".join(bytes([x, y, p << 7 | t >> 16 & 0x7F, t >> 8 & 0xFF, t & 0xFF])
                    for x, y, p, t in events)  # fmt: skip


@pytest.mark.parametrize(
    "raw, size",
    [
        (b"", (34, 34)),
        (b"", None),
        (atis([(1, 2, 1, 5), (0, 240, 0, 0), (33, 33, 0, 1)]), (34, 34)),  # overflow marker
        (atis([(0, 240, 0, 0)] * 3), None),  # markers only: no events
        (atis([(34, 0, 0, 1)]), (34, 34)),  # outside the sensor
        (atis([(3, 3, 0, 9), (3, 3, 0, 8)]), (34, 34)),  # time goes backwards
        (atis([(255, 239, 1, 0x7FFFFF)]), None),  # field edges
        (atis([(1, 1, 0, 1)]) + b"\x00", (34, 34)),  # truncated
    ],
)
def test_atis_edge_cases_equal(raw, size):
    assert_same(decode_atis_bin, raw, size)
    assert_same(decode_atis_bin, np.frombuffer(raw, np.uint8), size)
    assert_same(decode_atis_bin, bytearray(raw), size)


def test_aedat31_edge_cases_equal():
    events = [(polarity(i % 128, (3 * i) % 128, i % 2), 10 * i) for i in range(50)]
    invalid = [(a & ~1, t) for a, t in events[:5]]  # valid bit cleared: dropped
    cases = [
        AEDAT31_HEADER,
        AEDAT31_HEADER + aedat31_packet(1, events) + aedat31_packet(0, [(3, 1)]),
        AEDAT31_HEADER + aedat31_packet(1, invalid + events[5:]),
        AEDAT31_HEADER + aedat31_packet(1, events) + aedat31_packet(1, events[:3], overflow=2),
        AEDAT31_HEADER + aedat31_packet(1, events[::-1]),  # backwards
        AEDAT31_HEADER + aedat31_packet(1, [(polarity(200, 1, 0), 1)]),  # outside DVS128
        AEDAT31_HEADER + aedat31_packet(1, [(polarity(1, 1, 0), -5)]),  # negative t
        (AEDAT31_HEADER + aedat31_packet(1, events))[:-3],  # truncated
    ]
    for raw in cases:
        for size in (None, (128, 128), (346, 260)):
            assert_same(decode_aedat31, raw, size)


def test_aedat2_edge_cases_equal():
    dvs = [(i << 1 | i % 2 | (i % 64) << 8, 3 * i) for i in range(40)]
    davis = [((i % 240) << 12 | (i % 180) << 22 | (i % 2) << 11, i) for i in range(40)]
    cases = [
        aedat2_file("DVS128", dvs),
        aedat2_file("DVS128", [*dvs[:3], (1 << 15, 7), (1 << 31, 2), *dvs[3:]]),  # specials
        aedat2_file("DVS128", [(1 << 16, 1)]),  # bits 16-30: wrong layout
        aedat2_file("DVS128", dvs[::-1]),  # backwards
        aedat2_file("DVS128", [(0, 0xFFFFFFF0), (0, 5)]),  # a 2**32 wrap-around
        aedat2_file("Davis240", davis),
        aedat2_file("Davis240", [(1 << 31 | 5, 3), (1 << 10, 4), *davis]),  # APS/IMU/ext
        aedat2_file("Davis240", [(300 << 12, 1)]),  # outside the 240x180 sensor
        aedat2_file("Davis346red", davis),
        aedat2_file("DVS128", dvs)[:-3],  # truncated
    ]
    for raw in cases:
        assert_same(decode_aedat2, raw)
    v1 = b"#!AER-DAT1.0\r\n" + b"".join(struct.pack(">HI", a & 0xFFFF, t) for a, t in dvs)
    assert_same(decode_aedat2, v1, "dvs128")


JAER_HEADER_LINES = [
    b"#!AER-DAT2.0\r\n",
    b"# !AER-DAT2.0\r\n",  # not a version line: '!' must follow '#' directly
    b"#!AER-DAT3.1\n",
    b"# HardwareInterface: DAVIS FX2 84010032\r\n",
    b"#HardwareInterface:x\n",
    b"# \t\x0b\x0cAEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n",
    b"#\r AEChip:DVS128\n",
    b"# the AEChip: is named later\n",  # not at the start of the line
    b"## AEChip: Davis346\n",  # two '#': not a key line
    b"#Start of Preferences for this AEChip\r\n",
    b"#End of Preferences for this AEChip\r\n",
    b"#End of Pref\n",
    b"#AEChip:\n",
    b"#\n",
    b"#" + b"x" * 3000 + b"\n",
    b"# <entry key='HardwareInterface:' value='AEChip:'/>\r\n",
    b"#End Of ASCII Header\r\n",  # the end of the header (jAER since 2017)
    b"#End Of ASCII Header \t\n",
    b"#End Of ASCII Headers\n",  # not the end line
    b"# End Of ASCII Header\n",  # not the end line either (a space before it)
    b"#\xc0\x00\x11\x94\n",  # not text: a binary record after the preferences
    b"#FH\x00\x11\x94\xfc\xf3\n",
]


def _python_header_scan(data: bytes):
    from spikeflow.data.io import aedat2

    end = aedat2._jaer_header_end(data, None)
    return aedat2._key_lines(data, end), end


@pytest.mark.parametrize("seed", range(40))
def test_jaer_header_scan_equal(seed):
    """The compiled scan of jAER's '#' header finds the same end and key lines as the
    Python scan (regex + bytes.find); a truncated header or too many key lines make it
    refuse, and then the Python scan reports."""
    from spikeflow.data.io import aedat2

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(JAER_HEADER_LINES), int(rng.integers(0, 90)))
    header = b"".join(JAER_HEADER_LINES[i] for i in picks)
    tails = [b"", b"\x00\x01#AEChip: x\n", b"#AEChip: cut", b"#", b"x#AEChip:\n", b"#\x00\x01"]
    for tail in tails:
        data = header + tail
        with use_decoder("c"):
            fast = aedat2._key_lines_compiled(data)
        try:
            reference = _python_header_scan(data)
        except DataFormatError:
            assert fast is None  # truncated: the C scan refuses, Python names it
            continue
        n_keys = len(reference[0])
        if n_keys > aedat2._MAX_KEY_LINES:
            assert fast is None
        else:
            assert fast == reference, (seed, tail)
        assert_same(decode_aedat2, data, "dvs128")


def test_jaer_header_scan_real_headers_equal():
    from spikeflow.data.io import aedat2

    def parsed(decoder: str, data: bytes, name: str):
        with use_decoder(decoder):
            try:
                return aedat2._parse_header(data, name, keep_lines=False)
            except DataFormatError as exc:
                return str(exc)

    names = ("IMU_translBoxes.aedat", "header_test_128.aedat_test",
             "header_test_240.aedat_test", "sample_aedat_header.aedat")  # fmt: skip
    for name in names:
        data = require_shared_data("event-files", "aedat2", name).read_bytes()
        with use_decoder("c"):
            fast = aedat2._key_lines_compiled(data)
        assert fast == _python_header_scan(data) and len(fast[0]) >= 3, name
        assert parsed("c", data, name) == parsed("numpy", data, name)
    # sample_aedat_header.aedat is a header cut inside the preferences: same error
    assert "never closed" in parsed("c", data, name)


EVT2, EVT3 = b"% evt 2.0\n", b"% evt 3.0\n"


def evt2(*words: int) -> bytes:
    return EVT2 + struct.pack(f"<{len(words)}I", *words)


def evt3(*words: int) -> bytes:
    return EVT3 + struct.pack(f"<{len(words)}H", *words)


def cd(typ: int, t6: int, x: int, y: int) -> int:
    return typ << 28 | t6 << 22 | x << 11 | y


@pytest.mark.parametrize(
    "raw",
    [
        EVT2,
        evt2(cd(1, 1, 2, 3), 8 << 28 | 5, cd(1, 1, 2, 3), cd(0, 63, 2047, 2047)),  # CD before TH
        evt2(8 << 28 | (1 << 28) - 2, cd(1, 0, 2, 3), 8 << 28 | 2, cd(0, 1, 4, 4)),  # a wrap
        evt2(8 << 28 | (1 << 28) - 11, cd(1, 0, 2, 3), 8 << 28 | 0, cd(0, 1, 4, 4)),  # the limit
        evt2(8 << 28 | (1 << 28) - 12, cd(1, 0, 2, 3), 8 << 28 | 0, cd(0, 1, 4, 4)),  # no wrap
        evt2(8 << 28 | 9, cd(1, 0, 2, 3), 8 << 28 | 2, cd(0, 1, 4, 4)),  # back: corrupted
        evt2(8 << 28 | 9, 8 << 28 | 8),  # back, no event after it: still corrupted
        evt2(8 << 28 | 9, 10 << 28, 14 << 28, 15 << 28, cd(1, 5, 1, 1)),  # skipped types
        evt2(8 << 28 | 9, cd(1, 5, 1, 1), cd(1, 4, 1, 1)),  # backwards
        evt2(8 << 28 | 9, 3 << 28),  # unknown type
        evt2(8 << 28 | 9, cd(1, 5, 700, 1)),  # outside 640x480 (with the size below)
        evt2(8 << 28 | 9, cd(1, 5, 1, 1))[:-1],  # truncated
        EVT3,
        evt3(0x2005, 0x0003, 0x8001, 0x2805, 0x6002, 0x2006),  # ADDR_X before y/high dropped
        evt3(0x8001, 0x0003, 0x3010, 0x4FFF, 0x50FF, 0x5000, 0x3810, 0x4001),  # vectors
        evt3(0x8001, 0x0003, 0x4FFF, 0x3010, 0x7123, 0xA000, 0xE000, 0xF000, 0x4003),
        evt3(0x8FFD, 0x0003, 0x2001, 0x8002, 0x2001, 0x6FFF, 0x2002),  # a TIME_HIGH wrap
        evt3(0x8FF5, 0x0003, 0x2001, 0x8000, 0x2001),  # the largest wrap (4085 -> 0)
        evt3(0x8FF4, 0x0003, 0x2001, 0x8000, 0x2001),  # 4084 -> 0: no wrap, corrupted
        evt3(0x8005, 0x0003, 0x2001, 0x8002, 0x2001, 0x6FFF, 0x2002),  # back: corrupted
        evt3(0x8005, 0x8004),  # back, no event after it: still corrupted
        evt3(0x8005, 0x6009, 0x0003, 0x2001, 0x6001, 0x2001),  # backwards
        evt3(0x8005, 0x0003, 0x1000),  # unknown type
        evt3(0x8001, 0x0003, 0x37FF, *[0x4FFF] * 3),  # vector x past 2047
        evt3(0x8001, 0x0003, 0x3000, *[0x4FFF] * 40),  # 12 events per word: a second try
        evt3(0x8001, 0x0003, 0x3000, *[0x4000] * 5500, 0x4001),  # x = 66000: past uint16
        evt3(0x8001, 0x0003, 0x3000, *[0x4000] * 5461, 0x4008),  # x = 65535: the last x
        evt3(0x8001, 0x0003, 0x2001)[:-1],  # truncated
        b"% evt 3.0\n% format EVT3;height=720;width=1280\n" + struct.pack("<2H", 0x8001, 0),
    ],
)
def test_evt_edge_cases_equal(raw):
    fn = decode_evt2 if raw.startswith(EVT2) else decode_evt3
    for size in (None, (640, 480), (2048, 2048)):
        assert_same(fn, raw, size)


def test_decoder_setting(monkeypatch):
    assert get_decoder() in ("auto", "numpy", "c")
    with pytest.raises(ValueError, match="decoder must be one of"):
        set_decoder("fast")
    with use_decoder("numpy"):
        assert get_decoder() == "numpy" and _native.compiled() is None
        with use_decoder("c"):
            assert _native.compiled() is not None
        assert get_decoder() == "numpy"
    monkeypatch.setattr(_native, "_choice", None)
    for value, want in (("numpy", "numpy"), (" C ", "c"), ("", "auto")):
        monkeypatch.setenv("SPIKEFLOW_DECODER", value)
        monkeypatch.delitem(_native._state, "env", raising=False)  # read once per process
        assert get_decoder() == want
        assert (_native.compiled() is None) == (want == "numpy")
    monkeypatch.setenv("SPIKEFLOW_DECODER", "numpy")
    assert get_decoder() == "auto"  # already read
    monkeypatch.setenv("SPIKEFLOW_DECODER", "fast")
    monkeypatch.delitem(_native._state, "env")
    with pytest.raises(ValueError, match="decoder must be one of"):
        get_decoder()


def test_missing_compiler(monkeypatch, tmp_path):
    """'c' without a compiler names what is missing; 'auto' falls back to numpy."""
    monkeypatch.setenv("SPIKEFLOW_CACHE_DIR", str(tmp_path))  # nothing cached there
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(_native, "_state", {})
    monkeypatch.setattr("spikeflow._cbuild._LIBS", {})
    with pytest.raises(CompilerNotFoundError, match=r"C compiler.*set_decoder\('numpy'\)"):
        set_decoder("c")
    with use_decoder("auto"):
        assert _native.compiled() is None
        raw = atis([(1, 2, 1, 5)])
        assert decode_atis_bin(raw).events["x"].tolist() == [1]


def test_library_cached_under_cache_dir():
    with use_decoder("c"):
        _native.compiled()
    assert list((cache_root() / "decoders").glob("decoders_*.so"))


def test_package_ships_the_c_source():
    source = Path(_native.__file__).with_name("_decoders.c")
    assert source.is_file()
    assert "_decoders.c" in (Path(__file__).parents[1] / "pyproject.toml").read_text()


def test_large_synthetic_aedat31_equal(tmp_path):
    """Many packets (the bench's Gesture-like generator, smaller)."""
    rng = np.random.default_rng(1)
    parts, t0 = [AEDAT31_HEADER], 0
    for _ in range(30):
        k = int(rng.integers(1, 400))
        t = t0 + np.cumsum(rng.integers(0, 5, k))
        t0 = int(t[-1])
        valid = rng.random(k) < 0.9
        ev = [(polarity(int(x), int(y), int(p)) & ~(0 if v else 1), int(tt))
              for x, y, p, v, tt in zip(rng.integers(0, 128, k), rng.integers(0, 128, k),
                                        rng.integers(0, 2, k), valid, t)]  # fmt: skip
        parts.append(aedat31_packet(1, ev))
    path = tmp_path / "g.aedat"
    path.write_bytes(b"".join(parts))
    assert assert_same(read_aedat31, path)[0] == "ok"


def test_valid_files_take_the_compiled_path(monkeypatch):
    """With decoder 'c', valid input never reaches the numpy code (it would raise)."""
    from spikeflow.data.io import aedat2, aedat31, atis_bin, prophesee

    def boom(*args, **kwargs):
        raise AssertionError("numpy path taken")

    monkeypatch.setattr(atis_bin, "_decode_fast", boom)
    monkeypatch.setattr(aedat31, "decode_in_chunks", boom)
    monkeypatch.setattr(aedat2, "decode_in_chunks", boom)
    monkeypatch.setattr(aedat2, "header_end", boom)
    monkeypatch.setattr(aedat2, "_key_lines", boom)
    monkeypatch.setattr(prophesee, "decode_evt2_words", boom)
    monkeypatch.setattr(prophesee, "decode_evt3_words", boom)
    events = [(polarity(i, i, i % 2), i) for i in range(20)]
    with use_decoder("c"):
        assert len(decode_atis_bin(atis([(1, 2, 1, 5), (0, 240, 0, 0), (3, 3, 0, 1)]))) == 2
        assert len(decode_atis_bin(atis([(1, 2, 1, 5)]), None)) == 1
        assert len(decode_aedat31(AEDAT31_HEADER + aedat31_packet(1, events))) == 20
        assert len(decode_aedat2(aedat2_file("DVS128", [(i << 1, i) for i in range(9)]))) == 9
        assert len(decode_aedat2(aedat2_file("Davis346red", [(5 << 12, 1)]))) == 1
        assert len(decode_evt2(evt2(8 << 28 | 9, cd(1, 5, 1, 1), cd(0, 6, 2, 1)))) == 2
        assert len(decode_evt3(evt3(0x8001, 0x0003, 0x3010, 0x4FFF, 0x2001))) == 13
