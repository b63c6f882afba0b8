"""The checked stand-ins of :mod:`spikeflow.data.io.safe_pickle`: dtypes and arrays
rebuilt from a pickle's plain values, never from numpy's own reconstruction.

:class:`PicklePolicy` says what one kind of file may hold. :class:`_DtypeSpec` rebuilds a
dtype from plain numbers (structured ones field by field, within their item size:
nested structures, sub-arrays and titles included); :class:`_ArraySpec` makes an array
only after its shape, dtype and data size agree (numeric arrays with
:func:`numpy.frombuffer`, object arrays from a list of distinct such arrays), spending a
:class:`_Budget` of twice the file's bytes. The unpickler that hands a file's globals to
these stand-ins is in :mod:`spikeflow.data.io.safe_pickle`.
"""

from __future__ import annotations

import math
import pickle
import re
import reprlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_DTYPE_DEPTH", "PicklePolicy"]


@dataclass(frozen=True)
class PicklePolicy:
    """What one kind of file may hold.

    Attributes:
        what: the file's kind, for messages ("a CIFAR batch").
        structured: allow structured dtypes whose fields are plain numbers, nested
            structures or sub-arrays of those (at most :data:`MAX_DTYPE_DEPTH` deep).
        object_arrays: allow object arrays whose elements are (non-object) arrays.
        max_fields: most fields of a structured dtype.
        max_itemsize: largest item of a structured dtype, in bytes.
    """

    what: str
    structured: bool = False
    object_arrays: bool = False
    max_fields: int = 64
    max_itemsize: int = 4096


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 40, 40


def _short(value: Any) -> str:
    """``repr(value)`` cut short, at any depth (a file's objects may nest deeply)."""
    return _REPR.repr(value)


#: Plain number kinds: booleans, integers, floats (no complex, strings, dates, objects).
_NUMERIC_KINDS = frozenset("biuf")
#: The dtype specs numpy pickles for plain numbers ("b1", "i8", "u2", "f4", "f16", ...):
#: anything else (which numpy may parse as a structure, a date, a string, or not at
#: all) is refused before numpy sees it.
_NUMBER_SPEC = re.compile(r"[<>=|]?[biuf][0-9]{1,2}")
_VOID_SPEC = re.compile(r"V[1-9][0-9]{0,5}")
_OBJECT_SPEC = "O8"
#: The deepest nesting of structures and sub-arrays in a dtype (numpy's own code
#: recurses through them; Bullying10K's packets nest 1 deep).
MAX_DTYPE_DEPTH = 4
#: Most dimensions of an array or sub-array (numpy's limit), and the largest size of one.
_MAX_DIMS, _MAX_DIM = 64, 2**63 - 1


class _Budget:
    """The bytes the stand-ins may make in one load: twice the file's size. numpy's
    pickles hold every array's data once (protocols 0-2 as latin-1 text, turned into
    bytes and then into the array: two copies), so a file that references one block of
    data many times through the memo, to make many copies of it, runs out."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise pickle.UnpicklingError(
                f"{what} would make {nbytes} more bytes; the file may make only as many "
                "bytes as it holds (its data referenced again through the pickle memo?)"
            )
        self.left -= nbytes


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_DIM


def _is_shape(value: Any) -> bool:
    """A tuple of at most 64 sizes, each below 2**63 (checked before any arithmetic:
    products of huge file-given integers take minutes)."""
    return isinstance(value, tuple) and len(value) <= _MAX_DIMS and all(_is_size(d) for d in value)


class _DtypeSpec:
    """A numpy dtype from its pickle, ``dtype(spec, align, copy)`` then
    ``__setstate__((version, byteorder, subarray, names, fields, elsize, alignment,
    flags))``: a plain number, or (by policy) a structure of plain numbers, nested
    structures and sub-arrays of those, or the object dtype. The dtype exists only once
    its state has been checked."""

    def __init__(self, policy: PicklePolicy, spec: Any) -> None:
        self.policy = policy
        self.dtype: np.dtype | None = None
        self.kind = "number"
        self.depth = 0  # nesting of structures and sub-arrays
        if isinstance(spec, str) and policy.structured and _VOID_SPEC.fullmatch(spec):
            self.kind = "void"  # a structure or a sub-array: what it is comes with the state
            return
        if spec == _OBJECT_SPEC and policy.object_arrays:
            self.kind = "object"
            self.dtype = np.dtype(object)
            return
        if not isinstance(spec, str) or not _NUMBER_SPEC.fullmatch(spec):
            raise pickle.UnpicklingError(
                f"refusing numpy.dtype({_short(spec)}): {policy.what} holds "
                f"{'plain and structured numbers' if policy.structured else 'numbers only'}"
            )
        try:
            dtype = np.dtype(spec)
        except TypeError as exc:  # ("i3": not a size numpy has)
            raise pickle.UnpicklingError(f"refusing numpy.dtype({spec!r}): {exc}") from None
        if dtype.kind not in _NUMERIC_KINDS:  # (not reached for numpy's own specs)
            raise pickle.UnpicklingError(f"refusing numpy.dtype({spec!r}): not a plain number")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if (
            not isinstance(state, tuple)
            or len(state) < 5
            or state[1] not in ("<", ">", "|", "=")
            or (state[2] is not None and self.kind != "void")
        ):
            raise pickle.UnpicklingError(f"refusing the dtype state {_short(state)}")
        subarray, names, fields = state[2], state[3], state[4]
        elsize = state[5] if len(state) > 5 else None
        if self.kind == "void":
            if subarray is not None and names is None and fields is None:
                self.dtype = self._subarray(subarray, elsize)
            elif subarray is None:
                self.dtype = self._structure(names, fields, elsize)
            else:
                raise pickle.UnpicklingError(f"refusing the dtype state {_short(state)}")
            return
        if names is not None or fields is not None:
            raise pickle.UnpicklingError(
                f"refusing the dtype state {_short(state)}: fields on a plain dtype"
            )
        if self.kind == "number" and state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])

    def _item_size(self, elsize: Any, what: str) -> int:
        limit = self.policy.max_itemsize
        if not _is_size(elsize) or not 0 < elsize <= limit:
            raise pickle.UnpicklingError(
                f"refusing {what} of {_short(elsize)} bytes per item (1 to {limit})"
            )
        return elsize

    def _part(self, spec: Any) -> np.dtype | None:
        """The dtype of a field or a sub-array's element: a finished number or
        structure (or sub-array) of numbers not nested too deep; None if it is not."""
        if (
            not isinstance(spec, _DtypeSpec)
            or spec.kind not in ("number", "void")
            or spec.dtype is None
            or spec.depth >= MAX_DTYPE_DEPTH
        ):
            return None
        self.depth = max(self.depth, spec.depth + 1)
        return spec.dtype

    def _subarray(self, subarray: Any, elsize: Any) -> np.dtype:
        """A sub-array dtype (a field of several numbers): ``(element dtype, shape)``."""
        part = None
        if isinstance(subarray, tuple) and len(subarray) == 2 and _is_shape(subarray[1]):
            part = self._part(subarray[0])
        if part is None or not 0 < len(subarray[1]) <= 32:
            raise pickle.UnpicklingError(
                f"refusing the sub-array {_short(subarray)}: (a number or structure of "
                f"numbers nested at most {MAX_DTYPE_DEPTH} deep, a shape of 1 to 32 sizes)"
            )
        shape = subarray[1]
        size = self._item_size(elsize, "a sub-array dtype")
        if math.prod(shape) * part.itemsize != size:
            raise pickle.UnpicklingError(
                f"refusing the sub-array {_short(subarray)}: {shape} of {part} is not {size} bytes"
            )
        return np.dtype((part, shape))

    def _structure(self, names: Any, fields: Any, elsize: Any) -> np.dtype:
        policy = self.policy
        if (
            not isinstance(names, tuple)
            or not 0 < len(names) <= policy.max_fields
            or not all(isinstance(n, str) and 0 < len(n) <= 64 for n in names)
            or len(set(names)) != len(names)
            or not isinstance(fields, dict)
            or not set(names) <= set(fields)
        ):
            raise pickle.UnpicklingError(
                f"refusing a structured dtype with names {_short(names)} and fields "
                f"{_short(fields)}: up to {policy.max_fields} distinct names, each a field"
            )
        elsize = self._item_size(elsize, "a structured dtype")
        formats, offsets, titles = [], [], []
        for name in names:
            field = fields[name]
            part = None
            if isinstance(field, tuple) and len(field) in (2, 3) and _is_size(field[1]):
                part = self._part(field[0])
            title = field[2] if part is not None and len(field) == 3 else None
            if (
                part is None
                or field[1] + part.itemsize > elsize
                or (title is not None and not (isinstance(title, str) and 0 < len(title) <= 64))
            ):
                raise pickle.UnpicklingError(
                    f"refusing the field {name!r} {_short(field)}: a number, or a "
                    f"structure or sub-array of numbers nested at most {MAX_DTYPE_DEPTH} "
                    f"deep, at an offset inside the {elsize}-byte item (and a title, if "
                    "any, a string)"
                )
            formats.append(part)
            offsets.append(field[1])
            titles.append(title)
        named = [t for t in titles if t is not None]
        if (
            len(set(named)) != len(named)
            or set(named) & set(names)
            or set(fields) != set(names) | set(named)
            or any(fields[t] is not fields[n] and fields[t] != fields[n]
                   for n, t in zip(names, titles) if t is not None)
        ):  # fmt: skip
            raise pickle.UnpicklingError(
                f"refusing a structured dtype with names {_short(names)} and fields "
                f"{_short(fields)}: the fields are the names and their distinct titles"
            )
        spec = {"names": list(names), "formats": formats, "offsets": offsets, "itemsize": elsize}
        if named:
            spec["titles"] = titles
        return np.dtype(spec)

    def resolved(self) -> np.dtype:
        if self.dtype is None:
            raise pickle.UnpicklingError("a structured dtype without its fields (no state)")
        return self.dtype


def _data_bytes(data: Any, what: str) -> bytes | bytearray | memoryview:
    """An array's data as the file gave it: bytes (protocols 3-5), a bytearray or a
    read-only view of one (protocol 5), or Python 2 byte strings decoded as latin-1."""
    if isinstance(data, str):
        try:
            return data.encode("latin1")
        except UnicodeEncodeError:
            raise pickle.UnpicklingError(
                f"{what}: its data is text with characters above U+00FF, not bytes"
            ) from None
    if isinstance(data, memoryview) and data.c_contiguous and data.format == "B":
        return data
    if isinstance(data, bytes | bytearray):
        return data
    raise pickle.UnpicklingError(f"{what}: its data must be bytes; got {type(data).__name__}")


def _numeric_array(
    shape: tuple[int, ...], dtype: np.dtype, data: Any, budget: _Budget
) -> np.ndarray:
    """A C-ordered array of ``shape`` and ``dtype`` made from a copy of ``data``, once
    its size is checked and the budget has room (a 1-D array to reshape)."""
    count = math.prod(shape)
    raw = _data_bytes(data, f"an array of shape {shape} and dtype {dtype}")
    if count * dtype.itemsize != len(raw):  # (latin-1 text: one byte per character)
        raise pickle.UnpicklingError(
            f"the array data holds {len(raw)} bytes; shape {shape} of {dtype} "
            f"needs {count * dtype.itemsize}"
        )
    budget.take(len(raw), f"an array of shape {shape} and dtype {dtype}")
    return np.frombuffer(bytearray(raw), dtype=dtype)


class _ArraySpec:
    """What an array's pickle asks for, checked before numpy sees any of it.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b'b')`` (an empty array)
    followed by ``__setstate__((1, shape, dtype, is_fortran, data))``. Both steps land
    here instead: the shape, dtype and data size are checked, and the array is made
    with :func:`numpy.frombuffer` from the data bytes (a copy, writable), or for an
    object array from a list holding one finished array per element. (Protocol 5's
    ``_frombuffer`` makes one with its array already set.)
    """

    def __init__(self, budget: _Budget) -> None:
        self.array: np.ndarray | None = None
        self.budget = budget

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
        if not _is_shape(shape):
            raise pickle.UnpicklingError(
                f"an array shape is a tuple of up to {_MAX_DIMS} sizes from 0 to 2**63 - 1; "
                f"got {_short(shape)}"
            )
        if not isinstance(dtype, _DtypeSpec):
            raise pickle.UnpicklingError(
                f"an array's dtype must be a numpy dtype; got {_short(dtype)}"
            )
        order = "F" if fortran else "C"
        count = math.prod(shape)
        if dtype.kind == "object":
            self.array = _object_array(shape, order, count, data, self.budget)
            return
        flat = _numeric_array(shape, dtype.resolved(), data, self.budget)
        self.array = flat.reshape(shape, order=order)


def _object_array(
    shape: tuple[int, ...], order: str, count: int, data: Any, budget: _Budget
) -> np.ndarray:
    """An object array from its pickled element list: ``count`` finished arrays."""
    if not isinstance(data, list) or len(data) != count:
        found = f"a list of {len(data)}" if isinstance(data, list) else type(data).__name__
        raise pickle.UnpicklingError(
            f"an object array of shape {shape} needs a list of {count} elements; got {found}"
        )
    budget.take(8 * count, f"an object array of shape {shape}")
    out = np.empty(count, dtype=object)
    seen: dict[int, int] = {}
    for k, element in enumerate(data):
        if not isinstance(element, _ArraySpec) or element.array is None:
            raise pickle.UnpicklingError(
                f"element {k} of an object array is {_short(element)}; only arrays of "
                "numbers are allowed there"
            )
        if element.array.dtype == object:
            raise pickle.UnpicklingError(f"element {k} of an object array is an object array")
        if id(element) in seen:  # (a reader would concatenate one block many times)
            raise pickle.UnpicklingError(
                f"element {k} of an object array is element {seen[id(element)]} again"
            )
        seen[id(element)] = k
        out[k] = element.array
    return out.reshape(shape, order=order)
