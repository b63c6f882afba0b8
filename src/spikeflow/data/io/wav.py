"""RIFF/WAVE audio (``.wav``), read with numpy and :mod:`struct`, as :class:`AudioClip`.

A WAV file is ``RIFF`` <u32 size> ``WAVE`` followed by chunks: a 4-byte id, a
little-endian u32 payload size, the payload, and a pad byte after an odd-sized payload.
The ``fmt `` chunk (which must come before ``data``) describes the samples; every other
chunk (``LIST``, ``fact``, ``cue ``, ...) is skipped, and nothing after ``data`` is read.

Supported encodings: PCM integers (format tag 1: 8-bit unsigned, 16/24/32-bit signed),
IEEE floats (tag 3: 32/64-bit) and ``WAVE_FORMAT_EXTENSIBLE`` (tag 0xFFFE) whose
sub-format is one of these two (the container width, ``bits_per_sample``, sets the
scale; the valid-bits field and the channel mask are not used). Samples come back as
float32 ``[channels, frames]`` in [-1, 1]: integers divided by ``2**(bits - 1)``
(8-bit after subtracting 128), floats as stored.

The RIFF size is not trusted (writers get it wrong, streamed ones cannot know it): the
chunks are walked to the end of the file. A ``data`` size of 0xFFFFFFFF (e.g. ffmpeg
writing to a pipe), or of 0 while the RIFF size disagrees with the file (a header
written before the samples and never updated), means "until the end of the file": the
whole frames there are read and a partial last frame is dropped. Otherwise a ``data``
chunk must fit in the file and hold whole frames. The stdlib :mod:`wave` is not used:
it rejects float and most extensible files.
"""

from __future__ import annotations

import operator
import os
import struct
from dataclasses import dataclass
from os import PathLike
from typing import BinaryIO

import numpy as np

from spikeflow.data.events import format_error
from spikeflow.data.io._common import (
    PathArg,
    RawBytes,
    as_u8,
    empty_file_error,
    read_bytes,
    source_name,
)
from spikeflow.errors import ConfigurationError

__all__ = ["AudioClip", "WavInfo", "decode_wav", "read_wav", "wav_info"]

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
#: Bit depths each sample format supports.
_DEPTHS = {_PCM: (8, 16, 24, 32), _FLOAT: (32, 64)}
#: Names of common format tags this reader does not decode (for the error message).
_TAG_NAMES = {
    0: "unknown",
    2: "Microsoft ADPCM",
    6: "A-law",
    7: "mu-law",
    0x11: "IMA ADPCM",
    0x31: "GSM 6.10",
    0x50: "MPEG",
    0x55: "MPEG Layer 3",
    0x160: "WMA",
    0x161: "WMA",
    0x2000: "AC-3",
    0xF1AC: "FLAC",
}
_STREAMED = 0xFFFFFFFF  # the size a writer that cannot seek back leaves in place


@dataclass(frozen=True)
class AudioClip:
    """Decoded audio samples plus their sample rate.

    Attributes:
        samples: C-contiguous float32 array ``[channels, frames]`` scaled to [-1, 1].
        sample_rate: frames per second (Hz).
        source: the file the samples were read from (for messages), if any.
    """

    samples: np.ndarray
    sample_rate: int
    source: str | None = None

    @property
    def channels(self) -> int:
        """Number of channels (1 = mono, 2 = stereo, ...)."""
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        """Number of sample frames (one sample per channel each)."""
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds (``frames / sample_rate``)."""
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class _Format:
    """What the ``fmt `` chunk says: sample kind (``_PCM``/``_FLOAT``), layout, rate."""

    kind: int
    channels: int
    sample_rate: int
    bits: int

    @property
    def block_align(self) -> int:
        return self.channels * (self.bits // 8)


def _tag_name(tag: int) -> str:
    name = _TAG_NAMES.get(tag)
    return f"{tag} (0x{tag:04x}, {name})" if name else f"{tag} (0x{tag:04x})"


def _parse_fmt(payload: np.ndarray, at: int, size: int, path: PathArg) -> _Format:
    """Parse the ``fmt `` payload of ``size`` bytes that starts at file offset ``at``
    (``payload``: at least its first 40 bytes, where it has them)."""
    if size < 16:
        raise format_error(path, at, f"fmt chunk too short: {size} bytes, need at least 16")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", payload)
    kind = tag
    if tag == _EXTENSIBLE:
        if size < 18:
            raise format_error(
                path, at, f"fmt chunk too short for WAVE_FORMAT_EXTENSIBLE: {size} bytes, need 40"
            )
        (cb_size,) = struct.unpack_from("<H", payload, 16)
        if cb_size < 22:
            raise format_error(
                path, at + 16, f"WAVE_FORMAT_EXTENSIBLE extension size (cbSize) is {cb_size}, "
                "need at least 22"
            )  # fmt: skip
        if size < 40:
            raise format_error(
                path, at, f"fmt chunk too short for WAVE_FORMAT_EXTENSIBLE: {size} bytes, need 40"
            )
        # The sub-format GUID starts with the format tag it stands for (u16).
        (kind,) = struct.unpack_from("<H", payload, 24)
        if kind not in _DEPTHS:
            raise format_error(
                path, at + 24, f"unsupported WAVE_FORMAT_EXTENSIBLE sub-format {_tag_name(kind)} "
                "(supported: 1 = PCM, 3 = IEEE float)"
            )  # fmt: skip
    elif tag not in _DEPTHS:
        raise format_error(
            path, at, f"unsupported WAV format tag {_tag_name(tag)} (supported: 1 = PCM, "
            "3 = IEEE float, 0xFFFE = WAVE_FORMAT_EXTENSIBLE of those)"
        )  # fmt: skip
    if channels < 1:
        raise format_error(path, at + 2, f"{channels} channels (need at least 1)")
    if rate < 1:
        raise format_error(path, at + 4, f"sample rate {rate} Hz (need at least 1)")
    if bits not in _DEPTHS[kind]:
        what = "PCM" if kind == _PCM else "IEEE float"
        raise format_error(
            path, at + 14, f"unsupported bit depth {bits} for {what} (supported: "
            f"{', '.join(map(str, _DEPTHS[kind]))})"
        )  # fmt: skip
    fmt = _Format(kind, channels, rate, bits)
    if block_align != fmt.block_align:
        raise format_error(
            path, at + 12, f"block align {block_align} does not match {channels} channel(s) "
            f"x {bits // 8} byte(s) = {fmt.block_align}"
        )  # fmt: skip
    return fmt


def _samples(buf: np.ndarray, at: int, frames: int, fmt: _Format) -> np.ndarray:
    """``frames`` frames from offset ``at`` as a float32 ``[channels, frames]`` array."""
    n = frames * fmt.channels
    width = fmt.bits // 8
    raw = buf[at : at + n * width]
    if fmt.kind == _FLOAT:
        flat = raw.view("<f4" if width == 4 else "<f8").astype(np.float32)
    elif width == 1:  # unsigned, 128 = silence
        flat = (raw.astype(np.float32) - 128.0) * np.float32(1 / 128)
    elif width == 3:  # little-endian triplets; the top byte carries the sign
        b = raw.reshape(-1, 3)
        ints = b[:, 2].view(np.int8).astype(np.int32) << 16
        ints |= b[:, 1].astype(np.int32) << 8
        ints |= b[:, 0]
        flat = ints.astype(np.float32) * np.float32(2.0**-23)
    else:  # powers of two: exact scaling after the (rounding) conversion
        flat = raw.view("<i2" if width == 2 else "<i4").astype(np.float32)
        flat *= np.float32(2.0 ** -(fmt.bits - 1))
    return np.ascontiguousarray(flat.reshape(frames, fmt.channels).T)


def _check_magic(buf: np.ndarray, path: PathArg) -> int:
    """Check the 12-byte RIFF/WAVE header; returns the RIFF size field."""
    magic = buf[:4].tobytes()
    if magic == b"RIFX":
        raise format_error(path, 0, "big-endian RIFX WAV files are not supported")
    if magic in (b"RF64", b"BW64"):
        raise format_error(path, 0, f"{magic.decode()} (64-bit sizes) WAV files are not supported")
    if magic != b"RIFF" and not (len(buf) < 4 and b"RIFF".startswith(magic)):
        raise format_error(path, 0, f"not a WAV file: the magic is {magic!r}, expected b'RIFF'")
    if len(buf) < 12:
        raise format_error(path, 0, f"truncated RIFF header: {len(buf)} byte(s), need 12")
    form = buf[8:12].tobytes()
    if form != b"WAVE":
        raise format_error(path, 8, f"a RIFF file of form {form!r}, not b'WAVE'")
    return struct.unpack_from("<I", buf, 4)[0]


class _Bytes:
    """The bytes a WAV file is read from: all of them in memory, or an open file."""

    def __init__(self, buf: np.ndarray | None = None, file: BinaryIO | None = None) -> None:
        self.buf, self.file = buf, file
        self.size = len(buf) if buf is not None else os.fstat(file.fileno()).st_size

    def read(self, at: int, count: int) -> np.ndarray:
        """Up to ``count`` bytes from offset ``at`` (fewer at the end of the file)."""
        if self.buf is not None:
            return self.buf[at : at + count]
        self.file.seek(at)
        return np.frombuffer(self.file.read(count), dtype=np.uint8)


@dataclass(frozen=True)
class WavInfo:
    """What a WAV file's headers say, without its samples (:func:`wav_info`).

    Attributes:
        sample_rate: frames per second (Hz).
        channels: number of channels.
        frames: number of sample frames in the ``data`` chunk.
        bits_per_sample: container width of one sample (8, 16, 24, 32 or 64).
        is_float: IEEE float samples (else PCM integers).
        data_offset: file offset of the first sample.
    """

    sample_rate: int
    channels: int
    frames: int
    bits_per_sample: int
    is_float: bool
    data_offset: int

    @property
    def duration(self) -> float:
        """Length in seconds (``frames / sample_rate``)."""
        return self.frames / self.sample_rate


def _locate(src: _Bytes, path: PathArg) -> tuple[_Format, int, int]:
    """Walk the chunks to ``data``: its format, first sample's offset and frame count."""
    n = src.size
    if n == 0:
        raise empty_file_error(path)
    riff_size = _check_magic(src.read(0, 12), path)
    fmt: _Format | None = None
    seen: list[str] = []
    pos = 12
    while pos < n:
        if n - pos < 8:
            raise format_error(
                path, pos, f"truncated chunk header: {n - pos} byte(s) left, a chunk header "
                "needs 8"
            )  # fmt: skip
        cid, size = struct.unpack_from("<4sI", src.read(pos, 8))
        name = cid.decode("latin-1")
        seen.append(name)
        at, left = pos + 8, n - pos - 8
        if cid == b"data":
            if fmt is None:
                raise format_error(path, pos, "data chunk before any fmt chunk")
            return fmt, at, _data_frames(pos, size, riff_size, n, fmt, path)
        if size > left:
            raise format_error(
                path, pos, f"truncated {name!r} chunk: it declares {size} bytes but only {left} "
                "remain"
            )  # fmt: skip
        if cid == b"fmt " and fmt is None:
            fmt = _parse_fmt(src.read(at, min(size, 64)), at, size, path)
        pos = at + size + (size & 1)  # a missing pad byte at the very end is tolerated
    found = ", ".join(map(repr, seen)) or "none"
    missing = "no 'data' chunk" if fmt is not None else "no 'fmt ' chunk and no 'data' chunk"
    raise format_error(path, n, f"{missing} before the end of the file (chunks found: {found})")


def _data_frames(pos: int, size: int, riff_size: int, n: int, fmt: _Format, path: PathArg) -> int:
    """Frames of the ``data`` chunk whose header is at ``pos`` (size field ``size``) in
    a file of ``n`` bytes."""
    frame, left = fmt.block_align, n - pos - 8
    streamed = size == _STREAMED or (size == 0 and left > 0 and riff_size + 8 != n)
    if streamed:  # until the end of the file, whole frames only
        return left // frame
    if size > left:
        raise format_error(
            path, pos, f"truncated data chunk: it declares {size} bytes but only {left} remain"
        )
    frames, extra = divmod(size, frame)
    if extra:
        raise format_error(
            path, pos + 8 + size - extra, f"data chunk of {size} bytes is not a whole number "
            f"of {frame}-byte frames ({extra} byte(s) left over)"
        )  # fmt: skip
    return frames


def decode_wav(raw: RawBytes, path: PathArg = None) -> AudioClip:
    """Decode the bytes of a WAV file.

    Args:
        raw: the file's bytes (``bytes``, ``bytearray``, ``memoryview`` or a 1-D uint8
            array).
        path: the file name, for error messages.

    Returns:
        The samples as float32 ``[channels, frames]`` in [-1, 1] (zero frames allowed).

    Raises:
        DataFormatError: an empty file; not RIFF/WAVE (RIFX and RF64 named as
            unsupported); a truncated header, chunk header or chunk; no ``fmt `` chunk
            before ``data``, or no ``data`` chunk; a short ``fmt `` chunk; an unsupported
            format tag, sub-format or bit depth; zero channels or sample rate; a block
            align that does not match; a ``data`` size that is not whole frames.
    """
    buf = as_u8(raw)
    fmt, at, frames = _locate(_Bytes(buf), path)
    return AudioClip(_samples(buf, at, frames, fmt), fmt.sample_rate, source_name(path))


def wav_info(path: str | PathLike) -> WavInfo:
    """A WAV file's rate, channels, frame count and sample format from its headers,
    without reading the samples (a few small reads, whatever the file's length).

    Raises:
        DataFormatError: as :func:`decode_wav`, for the headers.
    """
    with open(path, "rb") as file:
        fmt, at, frames = _locate(_Bytes(file=file), path)
    return WavInfo(fmt.sample_rate, fmt.channels, frames, fmt.bits, fmt.kind == _FLOAT, at)


def _count_arg(name: str, value: object) -> int:
    try:
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        count = -1
    if isinstance(value, bool) or count < 0:
        raise ConfigurationError(f"read_wav: {name} must be an int >= 0, got {value!r}")
    return count


def read_wav(path: str | PathLike, start: int = 0, frames: int | None = None) -> AudioClip:
    """Read a ``.wav`` file (see :func:`decode_wav`), or only ``frames`` frames of it
    from frame ``start`` (``None``: to the end), reading only those samples' bytes.

    Raises:
        DataFormatError: as :func:`decode_wav`.
        ConfigurationError: (a ValueError) ``start``/``frames`` negative, or a window
            that ends after the file's last frame.
    """
    start = _count_arg("start", start)
    frames = None if frames is None else _count_arg("frames", frames)
    if start == 0 and frames is None:
        return decode_wav(read_bytes(path), path)
    with open(path, "rb") as file:
        src = _Bytes(file=file)
        fmt, at, total = _locate(src, path)
        count = total - start if frames is None else frames
        if start + max(count, 0) > total or start > total:
            raise ConfigurationError(
                f"read_wav: frames [{start}, {start + max(count, 0)}) asked of {path}, which "
                f"has {total} frames"
            )
        width = fmt.block_align
        window = src.read(at + start * width, count * width)
    where = f"{path} [{start}:{start + count}]"
    return AudioClip(_samples(window, 0, count, fmt), fmt.sample_rate, where)
