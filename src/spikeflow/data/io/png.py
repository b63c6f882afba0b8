"""A PNG decoder and encoder for 8- and 16-bit greyscale and colour images (stdlib zlib
and numpy only).

Ground-truth optical flow is published as 16-bit RGB PNG (DSEC, KITTI). Pillow (the
``images`` extra) opens such files as 8-bit RGB and drops the low byte of every
sample, which destroys the flow, so spikeflow reads them itself. The decoder validates
the signature, every chunk's length and CRC, the header, the compressed stream, its
length and every row's filter byte, and names the file, the byte offset and the problem.
Interlaced (Adam7) and palette images are refused with a clear message.
"""

from __future__ import annotations

import struct
import zlib
from os import PathLike
from pathlib import Path

import numpy as np

from spikeflow.data.events import format_error

__all__ = ["PNG_SIGNATURE", "decode_png", "encode_png", "read_png", "write_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel


def _chunks(raw: bytes, name: str) -> list[tuple[bytes, bytes, int]]:
    """``(type, data, offset)`` of every chunk up to IEND, each checked."""
    if raw[:8] != PNG_SIGNATURE:
        raise format_error(name, 0, f"not a PNG file (signature {raw[:8]!r})")
    out = []
    pos = 8
    while True:
        if pos + 8 > len(raw):
            raise format_error(name, pos, "file ends before the IEND chunk (truncated)")
        length, kind = struct.unpack(">I4s", raw[pos : pos + 8])
        end = pos + 12 + length
        if end > len(raw):
            raise format_error(
                name, pos, f"chunk {kind!r} of {length} bytes runs past the end of the file"
            )
        data = raw[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", raw[pos + 8 + length : end])
        if zlib.crc32(kind + data) & 0xFFFFFFFF != crc:
            raise format_error(name, pos, f"chunk {kind!r} fails its CRC check (corrupt)")
        out.append((kind, data, pos))
        if kind == b"IEND":
            return out
        pos = end


def _unfilter_rows(filtered: np.ndarray, kinds: np.ndarray, bpp: int) -> np.ndarray:
    """Rows filtered with None, Sub or Up only: one vectorised step per row."""
    height, stride = filtered.shape
    out = np.empty((height, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for r in range(height):
        line, kind = filtered[r], kinds[r]
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: running sum along each byte lane, modulo 256
            cur = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        else:  # Up
            cur = line + prior
        out[r] = cur
        prior = out[r]
    return out


def _unfilter_wavefront(filtered: np.ndarray, kinds: np.ndarray, bpp: int) -> np.ndarray:
    """Any mix of filters (Average and Paeth read the reconstructed left, up and
    up-left pixels): pixel ``(r, j)`` depends only on pixels of earlier anti-diagonals
    ``r + j``, so the image is decoded one anti-diagonal at a time, every row at once.
    The grid is stored skewed (``[r, r + j]``) so each diagonal is a column."""
    height, stride = filtered.shape
    width = stride // bpp
    diagonals = height + width - 1
    rows = np.arange(height)[:, None]
    cols = rows + np.arange(width)[None, :]  # skewed column of pixel (r, j)
    skewed = np.zeros((diagonals, height, bpp), np.int16)  # diagonal-major: contiguous steps
    skewed[cols.T, rows.T] = filtered.reshape(height, width, bpp).transpose(1, 0, 2)
    # rec[d + 2, r + 1]: reconstructed pixel of row r on diagonal d; row 0 and the two
    # first diagonals stay zero (the bytes before the image's first row and column)
    rec = np.zeros((diagonals + 2, height + 1, bpp), np.int16)
    masks = [np.broadcast_to((kinds == k)[:, None], (height, bpp)) for k in (1, 2, 3, 4)]
    counts = [np.concatenate([[0], np.cumsum(kinds == k)]) for k in (1, 2, 3, 4)]
    for d in range(diagonals):
        lo, hi = max(0, d - width + 1), min(height, d + 1)
        a = rec[d + 1, lo + 1 : hi + 1]  # left: (r, j - 1), diagonal d - 1
        b = rec[d + 1, lo:hi]  # up: (r - 1, j), diagonal d - 1
        c = rec[d, lo:hi]  # up-left: (r - 1, j - 1), diagonal d - 2
        pred = np.zeros_like(a)
        present = [int(n[hi] - n[lo]) for n in counts]
        if present[0]:  # Sub
            np.copyto(pred, a, where=masks[0][lo:hi])
        if present[1]:  # Up
            np.copyto(pred, b, where=masks[1][lo:hi])
        if present[2]:  # Average
            np.copyto(pred, (a + b) >> 1, where=masks[2][lo:hi])
        if present[3]:  # Paeth: the one of a, b, c closest to a + b - c (ties: a, b, c)
            pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
            paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
            np.copyto(pred, paeth, where=masks[3][lo:hi])
        pred += skewed[d, lo:hi]
        np.bitwise_and(pred, 0xFF, out=rec[d + 2, lo + 1 : hi + 1])
    return rec[cols + 2, rows + 1].astype(np.uint8).reshape(height, stride)


def _unfilter(
    data: bytes, height: int, stride: int, bpp: int, name: str, offset: int
) -> np.ndarray:
    """Undo the per-row filters (PNG spec, section 9): ``[height, stride]`` uint8."""
    rows = np.frombuffer(data, np.uint8).reshape(height, stride + 1)
    kinds = rows[:, 0]
    if (kinds > 4).any():
        r = int(np.flatnonzero(kinds > 4)[0])
        raise format_error(
            name, offset, f"IDAT: row {r} has filter type {int(kinds[r])}; PNG defines 0 to 4"
        )
    if (kinds >= 3).any():
        return _unfilter_wavefront(rows[:, 1:], kinds, bpp)
    return _unfilter_rows(rows[:, 1:], kinds, bpp)


def decode_png(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode a PNG of bit depth 8 or 16, greyscale or colour (with or without alpha),
    not interlaced: ``[H, W, C]`` uint8 or uint16 (C = 1, 2, 3 or 4).

    Raises:
        DataFormatError: a bad signature, chunk, CRC, header, compressed stream or row
            filter, or a kind of PNG this decoder does not read (palette, interlaced,
            bit depths below 8); the message names the file and the byte offset.
    """
    chunks = _chunks(bytes(raw), name)
    kind, header, offset = chunks[0]
    if kind != b"IHDR" or len(header) != 13:
        raise format_error(name, offset, f"the first chunk must be a 13-byte IHDR, found {kind!r}")
    width, height, depth, colour, method, filtering, interlace = struct.unpack(">IIBBBBB", header)
    if width == 0 or height == 0:
        raise format_error(name, offset, f"image of {width}x{height} pixels")
    if colour not in _CHANNELS:
        raise format_error(
            name,
            offset,
            f"colour type {colour} (palette or invalid) is not supported; 0, 2, 4, 6 are",
        )
    if depth not in (8, 16):
        raise format_error(name, offset, f"bit depth {depth} is not supported; 8 and 16 are")
    if method != 0 or filtering != 0:
        raise format_error(
            name, offset, f"compression method {method} / filter method {filtering}; PNG defines 0"
        )
    if interlace != 0:
        raise format_error(
            name, offset, "Adam7-interlaced PNG is not supported; re-save it without interlacing"
        )
    idat = [(data, pos) for k, data, pos in chunks if k == b"IDAT"]
    if not idat:
        raise format_error(name, None, "no IDAT chunk (no image data)")
    try:
        data = zlib.decompress(b"".join(d for d, _ in idat))
    except zlib.error as exc:
        problem = f"IDAT: corrupt compressed image data ({exc})"
        raise format_error(name, idat[0][1], problem) from exc
    channels = _CHANNELS[colour]
    bpp = channels * depth // 8
    stride = width * bpp
    if len(data) != height * (stride + 1):
        raise format_error(
            name, idat[0][1],
            f"IDAT: image data decompresses to {len(data)} bytes; {width}x{height} at {bpp} "
            f"bytes per pixel needs {height * (stride + 1)}",
        )  # fmt: skip
    rows = _unfilter(data, height, stride, bpp, name, idat[0][1])
    if depth == 8:
        return rows.reshape(height, width, channels)
    return rows.view(">u2").astype(np.uint16).reshape(height, width, channels)


def read_png(path: str | PathLike[str]) -> np.ndarray:
    """:func:`decode_png` of the file at ``path``."""
    return decode_png(Path(path).read_bytes(), str(path))


def encode_png(image: np.ndarray, filter_type: int = 0) -> bytes:
    """A PNG of ``image`` ``[H, W]`` or ``[H, W, C]`` (C = 1 to 4), uint8 or uint16,
    every row with filter ``filter_type`` (0 none, 1 Sub, 2 Up, 3 Average, 4 Paeth)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"encode_png takes uint8/uint16 [H, W] or [H, W, 1..4], got {img.dtype} {img.shape}"
        )
    if filter_type not in range(5):
        raise ValueError(f"filter_type must be 0 to 4, got {filter_type}")
    height, width, channels = img.shape
    depth = 16 if img.dtype == np.uint16 else 8
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = (
        img.astype(">u2" if depth == 16 else np.uint8)
        .reshape(height, -1)
        .view(np.uint8)
        .astype(np.int32)
    )
    bpp = channels * depth // 8
    lines = []
    prior = np.zeros(rows.shape[1], np.int32)
    for row in rows:
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prior[:-bpp]])
        if filter_type == 0:
            pred = np.zeros_like(row)
        elif filter_type == 1:
            pred = left
        elif filter_type == 2:
            pred = prior
        elif filter_type == 3:
            pred = (left + prior) >> 1
        else:
            p = left + prior - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prior), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, upleft))
        lines.append(bytes([filter_type]) + ((row - pred) & 0xFF).astype(np.uint8).tobytes())
        prior = row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(lines)))
        + chunk(b"IEND", b"")
    )


def write_png(path: str | PathLike[str], image: np.ndarray, filter_type: int = 0) -> None:
    """Write :func:`encode_png` of ``image`` to ``path``."""
    Path(path).write_bytes(encode_png(image, filter_type))
