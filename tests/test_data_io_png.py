"""spikeflow.data.io.png: the vectorised row unfiltering against the PNG specification's
per-byte loop (section 9) for every filter type, mixed rows and every pixel size, and the
errors for files it refuses or that are broken (each names the file and the chunk)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from spikeflow.data.io.png import PNG_SIGNATURE, decode_png, encode_png
from spikeflow.errors import DataFormatError


def _spec_unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """The PNG specification's reconstruction, byte by byte (the reference)."""
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prior = [0] * stride
    for r in range(height):
        kind, filt, rec = int(rows[r, 0]), rows[r, 1:].tolist(), [0] * stride
        for i in range(stride):
            a = rec[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            paeth = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            rec[i] = (filt[i] + (0, a, b, (a + b) >> 1, paeth)[kind]) & 0xFF
        out[r], prior = rec, rec
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png(
    width: int, height: int, depth: int, colour: int, body: bytes, interlace: int = 0
) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(body))
        + _chunk(b"IEND", b"")
    )


# (width, height, depth, colour): bytes per pixel 1 (grey 8), 2 (grey 16, grey+alpha 8),
# 3 (RGB 8), 4 (RGBA 8, grey+alpha 16), 6 (RGB 16), 8 (RGBA 16); one-pixel rows and columns
_LAYOUTS = [
    (1, 1, 8, 0), (7, 1, 16, 2), (1, 9, 16, 6), (8, 5, 16, 0), (4, 13, 8, 4),
    (31, 20, 8, 2), (20, 31, 8, 6), (6, 6, 16, 4),
]  # fmt: skip
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


@pytest.mark.parametrize("layout", _LAYOUTS)
def test_random_rows_of_mixed_filters_equal_the_specification(layout: tuple) -> None:
    width, height, depth, colour = layout
    bpp = _CHANNELS[colour] * depth // 8
    rng = np.random.default_rng(width * 100 + height)
    for kinds in (rng.integers(0, 5, height), np.full(height, 3), np.full(height, 4)):
        body = rng.integers(0, 256, (height, width * bpp))
        raw = np.concatenate([kinds[:, None], body], axis=1).astype(np.uint8).tobytes()
        want = _spec_unfilter(raw, height, width * bpp, bpp)
        got = decode_png(_png(width, height, depth, colour, raw))
        if depth == 16:
            want = want.view(">u2").astype(np.uint16)
        assert np.array_equal(got.reshape(-1), want.reshape(-1)), kinds


@pytest.mark.parametrize("filter_type", range(5))
def test_every_filter_round_trips_every_layout(filter_type: int) -> None:
    rng = np.random.default_rng(filter_type)
    for width, height, depth, colour in _LAYOUTS:
        dtype = np.uint16 if depth == 16 else np.uint8
        image = rng.integers(0, 2**depth, (height, width, _CHANNELS[colour])).astype(dtype)
        assert np.array_equal(decode_png(encode_png(image, filter_type)), image)


def test_refused_and_broken_files_name_the_file_and_the_chunk() -> None:
    body = bytes([0, 1, 2, 3, 0, 4, 5, 6])  # 2 rows of 3 grey bytes, filter None
    good = _png(3, 2, 8, 0, body)
    assert decode_png(good, "ok.png").reshape(-1).tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(DataFormatError, match=r"^palette\.png at byte offset 8: colour type 3"):
        decode_png(_png(3, 2, 8, 3, body), "palette.png")
    with pytest.raises(DataFormatError, match=r"^lace\.png.*Adam7-interlaced"):
        decode_png(_png(3, 2, 8, 0, body, interlace=1), "lace.png")
    with pytest.raises(DataFormatError, match="bit depth 4"):
        decode_png(_png(3, 2, 4, 0, body), "low.png")
    bad_filter = bytes([0, 1, 2, 3, 5, 4, 5, 6])
    with pytest.raises(DataFormatError, match=r"^f\.png at byte offset 33: IDAT: row 1 .* type 5"):
        decode_png(_png(3, 2, 8, 0, bad_filter), "f.png")
    with pytest.raises(DataFormatError, match=r"IDAT: image data decompresses to 7 bytes"):
        decode_png(_png(3, 2, 8, 0, body[:-1]), "short.png")
    stream = bytearray(good)
    idat_data = 33 + 8
    stream[idat_data + 2] ^= 0xFF  # corrupt deflate data, CRC recomputed
    length = struct.unpack(">I", bytes(stream[33:37]))[0]
    fixed = bytes(stream[:33]) + _chunk(b"IDAT", bytes(stream[idat_data : idat_data + length]))
    fixed += bytes(stream[idat_data + length + 4 :])
    with pytest.raises(DataFormatError, match=r"z\.png at byte offset 33: IDAT: corrupt"):
        decode_png(fixed, "z.png")
    crc_bad = bytearray(good)
    crc_bad[idat_data] ^= 0x01  # a flipped bit inside IDAT: its CRC fails
    with pytest.raises(DataFormatError, match=r"^c\.png at byte offset 33: chunk b'IDAT' .*CRC"):
        decode_png(bytes(crc_bad), "c.png")
    for cut in (len(good) - 3, len(good) - 12, 40, 20, 9):
        with pytest.raises(DataFormatError, match=r"^t\.png at byte offset \d+: .*(truncat|past)"):
            decode_png(good[:cut], "t.png")
