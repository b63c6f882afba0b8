"""Events stored as NumPy ``.npy`` / ``.npz`` files: DVS-Lip, HARDVS, ES-ImageNet.

* **Fields layout** (:func:`read_numpy_events`): a ``.npy`` structured array with
  fields ``t``, ``x``, ``y``, ``p`` -- DVS-Lip ships ``[('t', '<i4'), ('x', 'i1'),
  ('y', 'i1'), ('p', 'i1')]``, sensor 128x128 -- or a ``.npz`` holding four arrays
  ``t``, ``x``, ``y``, ``p`` -- the layout SpikingJelly's loader reads for HARDVS
  (DAVIS346, 346x260). ``p`` may be 0/1 or -1/+1 (-1 becomes 0).
* **ES-ImageNet** (:func:`read_es_imagenet`): ``.npz`` with ``pos`` and ``neg`` arrays
  of ``(row, column, step)`` triples, or (release 1.0) a ``.npy`` ``(N, 4)`` array of
  ``(row, column, step, polarity)`` with polarity 1 or 255 (-1 as uint8). ``step`` is
  the time step 1-8 of the synthetic "event" conversion, not microseconds, and is
  stored in ``t`` as is. Coordinates are the sample's own (the label files' width and
  height centre them in 256x256, as the official loader does).

Pickles are never loaded (object dtypes are rejected); ``.npy`` headers are parsed here
so a truncated file is reported with its byte offset, and ``.npz`` archives are read
member by member with :mod:`zipfile`, every archive failure becoming a DataFormatError
that names the file and the member. Events are returned sorted by time (stable) since
these layouts do not promise an order.
"""

from __future__ import annotations

import io
import math
import zipfile
from os import PathLike

import numpy as np

from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import (
    as_int64,
    check_zip_member_size,
    infer_size,
    read_bytes,
    read_head,
    sensor_size_arg,
    sort_by_time,
    unknown_size_error,
)

__all__ = ["load_npy", "read_dvs_lip", "read_es_imagenet", "read_hardvs", "read_numpy_events"]


def load_npy(path: str | PathLike) -> tuple[np.ndarray, int]:
    """Load a ``.npy`` file without pickles; returns ``(array, data_offset)``.

    Raises:
        DataFormatError: an empty file, a wrong magic or header, an object dtype, or
            data shorter than the header's shape (truncated).
    """
    return _parse_npy(read_bytes(path), path, None)


def _parse_npy(raw: bytes, path: str | PathLike, member: str | None) -> tuple[np.ndarray, int]:
    """The array in the bytes of a ``.npy`` file (or of ``member`` of an ``.npz``)."""

    def error(offset: int, problem: str) -> Exception:
        if member is None:
            return format_error(path, offset, problem)
        return format_error(path, None, f"member {member!r}, at offset {offset} of its data: "
                            + problem)  # fmt: skip

    fmt = np.lib.format
    fh = io.BytesIO(raw)
    try:
        major, _minor = fmt.read_magic(fh)
        if major == 1:
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
    except Exception as exc:  # numpy raises ValueError/SyntaxError/... on bad headers
        raise error(0, f"not a valid .npy header: {exc}") from None
    start = fh.tell()
    if dtype.hasobject:
        raise error(0, f"object dtype {dtype} is not allowed (it needs pickle)")
    if any(d < 0 for d in shape):
        raise error(0, f"the header's shape {shape} has a negative dimension")
    count = math.prod(shape)
    need = count * dtype.itemsize
    if len(raw) - start < need:
        whole = (len(raw) - start) // max(dtype.itemsize, 1)
        raise error(
            start + whole * dtype.itemsize, f"truncated: the header promises {count} "
            f"elements of {dtype.itemsize} bytes, the data holds {whole}"
        )  # fmt: skip
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=start)
    order = "F" if fortran else "C"
    return arr.reshape(shape, order=order), start


#: The first bytes of a ZIP archive (an ``.npz``), as opposed to a ``.npy``'s ``\x93NUMPY``.
_ZIP_MAGIC = b"PK\x03\x04"


def _load_npz(path: str | PathLike, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``names`` of an ``.npz`` (a ZIP of ``<name>.npy`` members), read
    member by member with zipfile (CRC-checked) and parsed by :func:`_parse_npy`.

    Every failure of the archive -- a damaged directory, a compression method other
    than stored or deflate (bzip2, LZMA, ...: :func:`check_zip_member_size`) or
    encryption, a corrupt compressed stream, a CRC mismatch -- is a DataFormatError
    naming the file (and the member).
    """
    try:
        archive = zipfile.ZipFile(path)
    except Exception as exc:  # BadZipFile, and OSError/ValueError/... on damaged directories
        raise format_error(
            path, 0, f"not a readable .npz (ZIP) archive: {type(exc).__name__}: {exc}"
        ) from None
    with archive:
        members = {}
        for info in archive.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            members.setdefault(key, info)
        missing = [n for n in names if n not in members]
        if missing:
            raise format_error(path, None, f"missing array(s) {missing} (found {list(members)})")
        arrays = {}
        for n in names:
            info = members[n]
            where = f"member {info.filename!r} (at byte offset {info.header_offset})"
            check_zip_member_size(info, path)  # before a forged size or a bomb is decompressed
            try:
                raw = archive.read(info)
            except Exception as exc:  # zlib/lzma/bz2 errors, bad CRC, encryption, EOF, ...
                raise format_error(
                    path, None, f"cannot read {where}: {type(exc).__name__}: {exc}"
                ) from None
            arrays[n] = _parse_npy(raw, path, info.filename)[0]
    return arrays


def _build(
    t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray,
    sensor_size: tuple[int, int] | None, path: str | PathLike, offset_of=None,
) -> EventRecording:  # fmt: skip
    """The recording of the columns, with ``sensor_size`` (``None``: the largest
    coordinates plus one, and no events is an error: the size is unknown)."""
    if not t.size == x.size == y.size == p.size:
        raise format_error(
            path,
            None,
            f"t, x, y, p have different lengths ({t.size}, {x.size}, {y.size}, {p.size})",
        )
    width, height = infer_size(x, y) if sensor_size is None else sensor_size
    bad = np.flatnonzero((x < 0) | (y < 0) | (x >= width) | (y >= height))
    if bad.size:
        i = int(bad[0])
        where = "has a negative coordinate" if sensor_size is None else (
            f"is outside the {width}x{height} sensor"
        )  # fmt: skip
        raise format_error(
            path, offset_of(i) if offset_of else None, f"event {i} at (x={x[i]}, y={y[i]}) "
            f"{where}"
        )  # fmt: skip
    if sensor_size is None and t.size == 0:
        raise unknown_size_error(path)
    events = sort_by_time(make_events(t, x, y, p.astype(np.int8)))
    return EventRecording(events, (width, height, 2), str(path))


def _polarity(p: np.ndarray, path: str | PathLike, offset_of=None) -> np.ndarray:
    bad = np.flatnonzero((p != 0) & (p != 1) & (p != -1))
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, offset_of(i) if offset_of else None, f"event {i} has polarity {p[i]}"
        )
    return np.where(p > 0, 1, 0)


def read_numpy_events(path: str | PathLike, sensor_size: tuple[int, int] | None) -> EventRecording:
    """Read a fields-layout ``.npy`` (structured) or ``.npz`` (four arrays) file.

    ``sensor_size``: ``(width, height)``, or ``None`` to take the largest coordinates
    plus one, as the other readers do without a size: a lower bound (a recording whose
    events miss the sensor's last rows or columns gets a smaller size, and recordings
    of one sensor get different ones), so pass the size to batch frames.

    Raises:
        DataFormatError: an empty file, not a readable .npy/.npz, missing fields,
            non-integer values, a polarity outside {-1, 0, 1}, coordinates outside
            ``sensor_size`` (negative ones, without it), or no events and no
            ``sensor_size``.
    """
    sensor_size = sensor_size_arg(sensor_size, "read_numpy_events")
    names = ("t", "x", "y", "p")
    if read_head(path, len(_ZIP_MAGIC)) == _ZIP_MAGIC:
        cols = _load_npz(path, names)
        offset_of = None
    else:
        arr, start = load_npy(path)
        if arr.dtype.names is None or any(n not in arr.dtype.names for n in names):
            raise format_error(
                path, 0, f"expected a structured array with fields {names}, got {arr.dtype}"
            )
        arr = arr.reshape(-1)
        cols = {n: arr[n] for n in names}

        def offset_of(i: int) -> int:
            return start + i * arr.dtype.itemsize

    t, x, y, p = (as_int64(cols[n], n, path) for n in names)
    return _build(t, x, y, _polarity(p, path, offset_of), sensor_size, path, offset_of)


def read_dvs_lip(path: str | PathLike) -> EventRecording:
    """Read a DVS-Lip sample (structured ``.npy``, sensor 128x128)."""
    return read_numpy_events(path, (128, 128))


def read_hardvs(path: str | PathLike) -> EventRecording:
    """Read a HARDVS sample in SpikingJelly's ``.npz`` layout (sensor 346x260)."""
    return read_numpy_events(path, (346, 260))


def read_es_imagenet(
    path: str | PathLike, sensor_size: tuple[int, int] | None = (256, 256)
) -> EventRecording:
    """Read an ES-ImageNet sample (``.npz`` ``pos``/``neg`` or release-1.0 ``.npy``).

    ``x`` is the column and ``y`` the row; ``t`` is the time step (1-8).
    ``sensor_size``: ``(width, height)``, or ``None`` for the largest coordinates plus
    one (as :func:`read_numpy_events`).

    Raises:
        DataFormatError: a wrong layout (not ``(N, 3)`` / ``(N, 4)``), a polarity other
            than 1/255, non-integer values, coordinates outside ``sensor_size``
            (negative ones, without it), or no events and no ``sensor_size``.
    """
    sensor_size = sensor_size_arg(sensor_size, "read_es_imagenet")
    if read_head(path, len(_ZIP_MAGIC)) == _ZIP_MAGIC:
        arrays = _load_npz(path, ("pos", "neg"))
        parts = []
        for pol, name in ((1, "pos"), (0, "neg")):
            a = arrays[name]
            if a.ndim != 2 or a.shape[1] != 3:
                raise format_error(path, None, f"{name} has shape {a.shape}, expected (N, 3)")
            parts.append((a, np.full(a.shape[0], pol)))
        rows = np.concatenate([a for a, _ in parts])
        p = np.concatenate([q for _, q in parts])
        offset_of = None
    else:
        rows, start = load_npy(path)
        if rows.ndim != 2 or rows.shape[1] != 4 or rows.dtype.names is not None:
            raise format_error(path, 0, f"expected an (N, 4) array, got {rows.dtype} {rows.shape}")
        raw_p = as_int64(rows[:, 3], "polarity", path)
        width_bytes = 4 * rows.dtype.itemsize

        def offset_of(i: int) -> int:
            return start + i * width_bytes

        bad = np.flatnonzero((raw_p != 1) & (raw_p != 255) & (raw_p != -1))
        if bad.size:
            i = int(bad[0])
            raise format_error(
                path, offset_of(i), f"event {i} has polarity {raw_p[i]}, not 1 or 255"
            )
        p = (raw_p == 1).astype(np.int64)
        rows = rows[:, :3]
    y, x, t = (as_int64(rows[:, k], name, path) for k, name in enumerate(("row", "column", "step")))
    return _build(t, x, y, p, sensor_size, path, offset_of)
