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

import gzip
import io
import math
import os
import pickle
import pickletools
import reprlib
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow.errors import DataFormatError

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


def _read_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when it is a gzip file (by its magic bytes)."""
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:  # truncated or corrupt stream
        raise DataFormatError(f"{path}: not a readable gzip file ({exc})") from exc


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
        label_index: which label byte to return (-1: the last, CIFAR-100's fine label).

    Returns:
        ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    Raises:
        DataFormatError: the size is not a whole number of records, or a label is not
            below ``num_classes`` (the message gives the record and its offset).
    """
    path = Path(path)
    raw = path.read_bytes()
    record = label_bytes + CIFAR_IMAGE_BYTES
    if not raw or len(raw) % record:
        raise DataFormatError(
            f"{path}: {len(raw)} bytes is not a whole number of {record}-byte CIFAR records "
            f"({label_bytes} label byte(s) + {CIFAR_IMAGE_BYTES} pixels)"
        )
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, label_index if label_index >= 0 else label_bytes - 1].astype(np.int64)
    _check_labels(labels, num_classes, path, lambda i: f"record {i} (offset {i * record})")
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32)
    return images, labels


def _check_labels(labels: np.ndarray, num_classes: int, path: Path, where: Any) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(
            f"{path}: {where(i)}: label {int(labels[i])} is not in [0, {num_classes})"
        )


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 40, 40


def _short(value: Any) -> str:
    """``repr(value)`` cut short, at any depth (a file's objects may nest deeply)."""
    return _REPR.repr(value)


#: The numpy dtypes a CIFAR pickle may hold (by kind): booleans, integers, floats. No
#: object, string, void or structured dtypes: numpy builds those from the pickle's data
#: without enough checks (an object array whose state is a short list reads past it).
_NUMERIC_KINDS = frozenset("biuf")


class _ArraySpec:
    """What an array's pickle asks for, checked before numpy sees any of it.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b'b')`` (an empty array)
    followed by ``__setstate__((1, shape, dtype, is_fortran, data))``. Both steps land
    here instead: the shape, dtype and data size are checked, and the array is made
    with :func:`numpy.frombuffer` from the data bytes (a copy, writable).
    """

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError(
                f"an array state is a tuple of 4 or 5; got {_short(state)}"
            )
        if len(state) == 5:
            version, *rest = state
            if version != 1:
                raise pickle.UnpicklingError(f"unknown array state version {_short(version)}")
            state = tuple(rest)
        shape, dtype, fortran, data = state
        if not isinstance(shape, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise pickle.UnpicklingError(
                f"an array shape is a tuple of sizes >= 0; got {_short(shape)}"
            )
        if not isinstance(dtype, _DtypeSpec):
            raise pickle.UnpicklingError(
                f"an array's dtype must be a numpy dtype; got {_short(dtype)}"
            )
        if isinstance(data, str):  # Python 2 byte strings, decoded as latin-1
            data = data.encode("latin1")
        if not isinstance(data, bytes | bytearray):
            raise pickle.UnpicklingError(f"array data must be bytes; got {type(data).__name__}")
        count = math.prod(shape)
        if count * dtype.dtype.itemsize != len(data):
            raise pickle.UnpicklingError(
                f"the array data holds {len(data)} bytes; shape {shape} of {dtype.dtype} "
                f"needs {count * dtype.dtype.itemsize}"
            )
        flat = np.frombuffer(bytearray(data), dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C")


class _DtypeSpec:
    """A numpy dtype from its pickle, ``dtype(spec, align, copy)`` then
    ``__setstate__((version, byteorder, None, None, None, ...))``: plain numbers only."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(spec, str) or len(spec) > 8:
            raise pickle.UnpicklingError(f"refusing numpy.dtype({_short(spec)})")
        dtype = np.dtype(spec)
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype:
            raise pickle.UnpicklingError(
                f"refusing numpy.dtype({spec!r}): a CIFAR batch holds numbers only"
            )
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if (
            not isinstance(state, tuple)
            or len(state) < 5
            or state[1] not in ("<", ">", "|", "=")
            or any(part is not None for part in state[2:5])
        ):
            raise pickle.UnpicklingError(f"refusing the dtype state {_short(state)}")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


class _Global:
    """One global a pickle may name. It holds no attribute a pickle can set (a BUILD
    opcode on it fails), so a file cannot change the unpickler for the next one."""

    __slots__ = ("_build", "_name")

    def __init__(self, name: str, build: Any) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_build", build)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._name} takes no attributes")

    def __call__(self, *args: Any) -> Any:
        if self._build is None:
            raise pickle.UnpicklingError(
                f"refusing a call of {self._name}: it is an argument of _reconstruct only"
            )
        return self._build(*args)

    def __repr__(self) -> str:
        return self._name


def _reconstruct(cls: Any, shape: Any, code: Any) -> _ArraySpec:
    if cls is not _NDARRAY or shape != (0,):
        raise pickle.UnpicklingError(
            f"refusing _reconstruct({_short(cls)}, {_short(shape)}, ...): numpy pickles an "
            "array as _reconstruct(ndarray, (0,), b'b')"
        )
    return _ArraySpec()


def _latin1(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    # How Python 3 writes bytes in protocols 0-2: _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"refusing _codecs.encode(..., {_short(encoding)}): only latin1 text becomes bytes"
        )
    return text.encode("latin1")


#: ``numpy.ndarray`` in a pickle: an argument of ``_reconstruct``, never called (the
#: class itself would allocate any shape it is given).
_NDARRAY = _Global("numpy.ndarray", None)

#: What a CIFAR pickle may ask for: numpy's array reconstruction and dtypes, and
#: ``_codecs.encode`` (how protocol-2 pickles written by Python 3 store bytes), each
#: answered by a checked stand-in.
_ALLOWED: dict[tuple[str, str], _Global] = {
    ("numpy.core.multiarray", "_reconstruct"): _Global("_reconstruct", _reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _Global("_reconstruct", _reconstruct),
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Global("numpy.dtype", _DtypeSpec),
    ("_codecs", "encode"): _Global("_codecs.encode", _latin1),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing {module}.{name}: a CIFAR batch holds only dicts, lists and numpy arrays"
            )
        return _ALLOWED[module, name]


def _arrays(value: Any) -> Any:
    """``value`` with every array stand-in replaced by its array (dicts and lists of
    a batch, one level deep as in the official files)."""
    if isinstance(value, _ArraySpec):
        if value.array is None:
            raise pickle.UnpicklingError("an array without its data (no state)")
        return value.array
    if isinstance(value, _DtypeSpec):
        return value.dtype
    if isinstance(value, list):
        return [_arrays(v) if isinstance(v, _ArraySpec | _DtypeSpec) else v for v in value]
    return value


#: The deepest nesting of tuples a CIFAR pickle may build (its own are 2 deep:
#: ``_reconstruct``'s arguments, an array's state). Hashing a tuple recurses in C
#: without a depth check: a dict key of a million nested tuples crashes Python.
_MAX_TUPLE_DEPTH = 32
_TUPLE_OPCODES = frozenset(("EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "FROZENSET"))


def _check_tuple_depth(raw: bytes) -> None:
    """Raise ``pickle.UnpicklingError`` if the opcodes of ``raw`` build tuples (or
    frozensets) nested deeper than :data:`_MAX_TUPLE_DEPTH`, before anything is built.

    A dry run of the pickle machine's stack (opcode stack effects from
    :mod:`pickletools`) that tracks, per stack item and memo entry, the tuple depth of
    the object (0 for anything but a tuple or frozenset; both are immutable, so a memo
    entry keeps its depth)."""
    stack: list[int] = []
    marks: list[int] = []
    memo: dict[Any, int] = {}
    for op, arg, _ in pickletools.genops(raw):
        name = op.name
        if name == "MARK":
            marks.append(len(stack))
            if len(marks) > _MAX_TUPLE_DEPTH:  # (a batch's nest 4 deep; this ends early)
                raise pickle.UnpicklingError(
                    f"marks nested more than {_MAX_TUPLE_DEPTH} deep (a CIFAR batch's are 4 deep)"
                )
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1] if stack else 0
        elif name in ("GET", "BINGET", "LONG_BINGET", "DUP"):
            stack.append(memo.get(arg, 0) if name != "DUP" else (stack[-1] if stack else 0))
        else:
            before = op.stack_before
            below = (
                before.index(pickletools.markobject)
                if pickletools.markobject in before
                else len(before)
            )
            taken: list[int] = []
            if below < len(before):  # pops down to the last mark
                start = marks.pop() if marks else 0
                taken, stack[start:] = stack[start:], []
            if below:
                taken, stack[-below:] = stack[-below:] + taken, []
            depth = 1 + max(taken, default=0) if name in _TUPLE_OPCODES else 0
            if depth > _MAX_TUPLE_DEPTH:
                raise pickle.UnpicklingError(
                    f"tuples nested more than {_MAX_TUPLE_DEPTH} deep (a CIFAR batch's are "
                    "2 deep; hashing deeper ones can crash Python)"
                )
            stack.extend([depth] * len(op.stack_after))


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
    raw = path.read_bytes()
    try:
        _check_tuple_depth(raw)
        # The official files were pickled by Python 2: their strings are bytes.
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
        if not isinstance(batch, dict):
            found = type(batch).__name__
            raise DataFormatError(f"{path}: a CIFAR batch is a dict; found {found}")
        return {key: _arrays(value) for key, value in batch.items()}
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            KeyError, IndexError, UnicodeDecodeError, RecursionError) as exc:  # fmt: skip
        if isinstance(exc, DataFormatError):
            raise
        raise DataFormatError(f"{path}: not a CIFAR batch pickle ({exc})") from exc


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
