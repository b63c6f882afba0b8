"""Readers of the static image datasets' official files: IDX (MNIST, Fashion-MNIST,
KMNIST) and CIFAR-10/100 in both published versions (binary records and Python
pickles).

Every reader validates what it reads (magic numbers, sizes, label ranges) and raises
:class:`~spikeflow.errors.DataFormatError` naming the file, the byte offset where one
applies, and what was expected. The CIFAR pickles are read with an unpickler that
builds only plain containers and numeric numpy arrays (each checked against its data
before it is made), after a dry run of its opcodes has bounded how deep its tuples nest:
a pickle asking for anything else is refused, so a tampered file cannot run code, crash
Python or numpy, or ask for more memory than it holds data.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow.data.io._common import DEFLATE_MAX_RATIO
from spikeflow.data.io.safe_pickle import PICKLE_ERRORS, PicklePolicy, load_numpy_pickle
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = [
    "IDX_DTYPES",
    "decode_idx",
    "load_cifar_pickle",
    "read_cifar_binary",
    "read_cifar_pickle",
    "read_idx",
]

#: IDX type codes (the third magic byte) and the big-endian dtypes they name.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


#: The longest IDX header: 4 bytes, then 255 dimensions of 4 bytes.
_IDX_MAX_HEADER = 4 + 4 * 255


def _idx_total(head: bytes | bytearray) -> int | None:
    """The size of a whole IDX file from its first bytes (``None``: more are needed; 0:
    not an IDX header, which :func:`decode_idx` then names)."""
    if len(head) < 4:
        return None
    if head[0] or head[1] or head[2] not in IDX_DTYPES or head[3] == 0:
        return 0
    header = 4 + 4 * head[3]
    if len(head) < header:
        return None
    shape = np.frombuffer(bytes(head[4:header]), dtype=">u4")
    return header + math.prod(int(d) for d in shape) * IDX_DTYPES[head[2]].itemsize


def _gunzip_idx(raw: bytes, path: Path) -> bytes:
    """A gzip file's IDX content, decompressed to at most one byte past the size its
    header declares: a damaged or hostile stream (a "gzip bomb") cannot take gigabytes
    of memory before the size check. Members are read one after another, as gunzip
    does; the CRC-32 and length of each are checked."""
    out = bytearray()
    dec, pending = zlib.decompressobj(wbits=31), raw
    try:
        while True:
            total = _idx_total(out)
            if total == 0:  # not an IDX header: decode_idx names what is wrong
                return bytes(out)
            limit = _IDX_MAX_HEADER if total is None else total
            if total is not None and total > DEFLATE_MAX_RATIO * len(raw):
                shape = tuple(np.frombuffer(bytes(out[4 : 4 + 4 * out[3]]), dtype=">u4"))
                raise DataFormatError(  # a header sized to let a "gzip bomb" expand
                    f"{path}: offset 4: the IDX shape {tuple(int(d) for d in shape)} "
                    f"declares {total} bytes, more than a gzip stream of {len(raw)} bytes "
                    f"can hold ({DEFLATE_MAX_RATIO} per compressed byte at most)"
                )
            if len(out) > limit:
                raise DataFormatError(
                    f"{path}: the gzip stream holds more than the {limit} bytes its IDX "
                    "header declares"
                )
            chunk = dec.decompress(pending, min(limit + 1 - len(out), 1 << 24))
            out += chunk
            pending = dec.unconsumed_tail
            if dec.eof:
                rest = dec.unused_data
                if rest[:2] == _GZIP_MAGIC:  # another member
                    dec, pending = zlib.decompressobj(wbits=31), rest
                    continue
                if rest.strip(b"\0"):
                    raise DataFormatError(
                        f"{path}: {len(rest)} byte(s) of trailing garbage after the gzip stream"
                    )
                return bytes(out)
            if not chunk and not pending:
                raise DataFormatError(
                    f"{path}: not a readable gzip file (the stream ends early: truncated)"
                )
    except zlib.error as exc:  # corrupt deflate data, a CRC or length mismatch
        raise DataFormatError(f"{path}: not a readable gzip file ({exc})") from None


def _read_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when it is a gzip file (by its magic bytes)."""
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    return _gunzip_idx(raw, path)


def decode_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """The array an IDX byte stream holds (``[N, ...]`` in its own dtype).

    IDX: two zero bytes, a type code (:data:`IDX_DTYPES`), the number of dimensions,
    then each dimension as a big-endian uint32, then the data in C order.

    Raises:
        DataFormatError: a bad magic number, an unknown type code, or a data size that
            is not the product of the dimensions (the message names ``name``).
    """
    if len(raw) < 4:
        raise DataFormatError(f"{name}: {len(raw)} bytes, too short for an IDX header (4 bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise DataFormatError(
            f"{name}: offset 0: IDX files start with two zero bytes; found {raw[:2].hex()} "
            "(not an IDX file)"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataFormatError(f"{name}: offset 2: unknown IDX type code 0x{code:02X} ({known})")
    if ndim == 0:
        raise DataFormatError(f"{name}: offset 3: an IDX array of 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(
            f"{name}: {len(raw)} bytes, too short for the {ndim} dimensions its header declares"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no int64 wrap-around
    if len(raw) - header != expected:
        raise DataFormatError(
            f"{name}: offset {header}: shape {shape} of {dtype} needs {expected} data bytes; "
            f"the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not, told apart by its first bytes).

    Raises:
        DataFormatError: see :func:`decode_idx`; also a corrupt gzip stream.
    """
    path = Path(path)
    return decode_idx(_read_maybe_gzip(path), str(path))


#: Bytes per CIFAR image (3 x 32 x 32, channel-major rows).
CIFAR_IMAGE_BYTES = 3 * 32 * 32


def read_cifar_binary(
    path: str | os.PathLike, label_bytes: int, num_classes: int, label_index: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """Read a file of the CIFAR binary version: records of ``label_bytes`` label bytes
    (1 for CIFAR-10; 2 for CIFAR-100: coarse, fine) then 3072 pixel bytes.

    Args:
        label_bytes: label bytes at the start of each record (at least 1).
        label_index: which label byte to return, counted as a Python index into the
            ``label_bytes`` bytes (-1: the last, CIFAR-100's fine label).

    Returns:
        ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    Raises:
        ConfigurationError: ``label_bytes`` is below 1, or ``label_index`` is not in
            ``[-label_bytes, label_bytes)`` (it would read a pixel byte as the label).
        DataFormatError: the size is not a whole number of records, or a label is not
            below ``num_classes`` (the message gives the record and its offset).
    """
    path = Path(path)
    if not _is_int(label_bytes) or label_bytes < 1:
        raise ConfigurationError(
            f"read_cifar_binary: label_bytes must be an int >= 1; got {label_bytes!r}"
        )
    if not _is_int(label_index) or not -label_bytes <= label_index < label_bytes:
        raise ConfigurationError(
            f"read_cifar_binary: label_index must be an int in [{-label_bytes}, {label_bytes}) "
            f"(one of the {label_bytes} label byte(s)); got {label_index!r}"
        )
    raw = path.read_bytes()
    record = label_bytes + CIFAR_IMAGE_BYTES
    if not raw or len(raw) % record:
        raise DataFormatError(
            f"{path}: {len(raw)} bytes is not a whole number of {record}-byte CIFAR records "
            f"({label_bytes} label byte(s) + {CIFAR_IMAGE_BYTES} pixels)"
        )
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, label_index % label_bytes].astype(np.int64)
    _check_labels(labels, num_classes, path, lambda i: f"record {i} (offset {i * record})")
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32)
    return images, labels


def _is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_labels(labels: np.ndarray, num_classes: int, path: Path, where: Any) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(
            f"{path}: {where(i)}: label {int(labels[i])} is not in [0, {num_classes})"
        )


#: A CIFAR batch: a dict of numeric arrays and lists (no structured or object dtypes).
_CIFAR_PICKLE = PicklePolicy("a CIFAR batch")


def load_cifar_pickle(path: str | os.PathLike) -> dict[Any, Any]:
    """The dict one CIFAR batch pickle holds (keys as stored: bytes for Python 2's
    files), read by an unpickler that builds only plain containers and numeric numpy
    arrays, and checks every array's shape against its data before making it.

    Raises:
        DataFormatError: not a readable pickle, not a dict, or a pickle that asks for
            anything else (a class, a function, an object or string array, a bytes
            codec other than latin-1, an array whose data does not fit its shape,
            tuples nested more than 32 deep).
    """
    path = Path(path)
    try:
        # The official files were pickled by Python 2: their strings are bytes.
        batch = load_numpy_pickle(path.read_bytes(), _CIFAR_PICKLE, encoding="latin1")
    except PICKLE_ERRORS as exc:
        raise DataFormatError(f"{path}: not a CIFAR batch pickle ({exc})") from exc
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: a CIFAR batch is a dict; found {type(batch).__name__}")
    return batch


def read_cifar_pickle(
    path: str | os.PathLike, label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file of the CIFAR Python version (``data_batch_1``, ``test_batch``,
    CIFAR-100's ``train``/``test``): a pickled dict with ``data`` (uint8 ``[N, 3072]``)
    and the labels under ``label_key`` (``labels``; CIFAR-100 ``fine_labels`` or
    ``coarse_labels``).

    Returns:
        ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    Raises:
        DataFormatError: not a readable pickle, a pickle that asks for anything but
            plain containers and numpy arrays, a missing key, a wrong data shape or
            dtype, a label count that differs from the image count, or a label out of
            range.
    """
    path = Path(path)
    batch = load_cifar_pickle(path)
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", label_key):
        if key not in batch:
            raise DataFormatError(f"{path}: no {key!r} entry (it has {sorted(map(str, batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise DataFormatError(f"{path}: 'data' must be uint8 [N, 3072]; found {found}")
    if data.shape[1] != CIFAR_IMAGE_BYTES:
        raise DataFormatError(
            f"{path}: 'data' rows hold {data.shape[1]} values; CIFAR images have "
            f"{CIFAR_IMAGE_BYTES} (3 x 32 x 32)"
        )
    labels = np.asarray(batch[label_key])
    if (
        labels.ndim != 1
        or labels.size != data.shape[0]
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise DataFormatError(
            f"{path}: {label_key!r} must be {data.shape[0]} integer labels (one per image); "
            f"found {labels.dtype} {labels.shape}"
        )
    labels = labels.astype(np.int64)
    _check_labels(labels, num_classes, path, lambda i: f"{label_key}[{i}]")
    return data.reshape(-1, 3, 32, 32), labels
