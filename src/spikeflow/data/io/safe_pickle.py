"""Loading the numpy pickles inside dataset files without trusting them.

Some official dataset files are pickles: CIFAR's Python batches (dicts of numeric arrays)
and Bullying10K's ``.npy`` files (an object array of structured event packets). A plain
:class:`pickle.Unpickler`, even one that only lets numpy's own globals through, hands the
file's values to numpy unchecked: a 120-byte file can crash numpy, an 83-byte one can ask
it for 16 GiB. :func:`load_numpy_pickle` answers every global a file may name with a
checked stand-in instead: dtypes are rebuilt from plain numbers (structured ones field by
field, within their item size), and an array is made only after its shape, dtype and data
size agree (numeric arrays with :func:`numpy.frombuffer`; object arrays only from a list
of distinct such arrays, one per element), and all that is made holds no more than twice
the file's bytes (so a file cannot copy one block of its data many times through the memo). A
dry run of the opcodes first refuses tuples nested deeper than :data:`MAX_TUPLE_DEPTH`
(hashing deeper ones crashes Python). Anything else a file asks for (a class, a
function, a string or object dtype where none is allowed) is refused before it is built,
so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
import reprlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_TUPLE_DEPTH", "PICKLE_ERRORS", "PicklePolicy", "load_numpy_pickle"]


@dataclass(frozen=True)
class PicklePolicy:
    """What one kind of file may hold.

    Attributes:
        what: the file's kind, for messages ("a CIFAR batch").
        structured: allow structured dtypes whose fields are plain numbers.
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
_VOID_SPEC = re.compile(r"V[1-9][0-9]{0,5}")
_OBJECT_SPEC = "O8"


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
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _DtypeSpec:
    """A numpy dtype from its pickle, ``dtype(spec, align, copy)`` then
    ``__setstate__((version, byteorder, subarray, names, fields, elsize, alignment,
    flags))``: a plain number, or (by policy) a structure of plain numbers or the object
    dtype. The dtype exists only once its state has been checked."""

    def __init__(self, policy: PicklePolicy, spec: Any) -> None:
        self.policy = policy
        self.dtype: np.dtype | None = None
        self.kind = "number"
        if isinstance(spec, str) and policy.structured and _VOID_SPEC.fullmatch(spec):
            self.kind = "structure"  # the fields come with the state
            return
        if spec == _OBJECT_SPEC and policy.object_arrays:
            self.kind = "object"
            self.dtype = np.dtype(object)
            return
        if not isinstance(spec, str) or len(spec) > 8:
            raise pickle.UnpicklingError(f"refusing numpy.dtype({_short(spec)})")
        dtype = np.dtype(spec)
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype:
            raise pickle.UnpicklingError(
                f"refusing numpy.dtype({spec!r}): {policy.what} holds "
                f"{'plain and structured numbers' if policy.structured else 'numbers only'}"
            )
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if (
            not isinstance(state, tuple)
            or len(state) < 5
            or state[1] not in ("<", ">", "|", "=")
            or state[2] is not None
        ):
            raise pickle.UnpicklingError(f"refusing the dtype state {_short(state)}")
        names, fields = state[3], state[4]
        elsize = state[5] if len(state) > 5 else None
        if self.kind == "structure":
            self.dtype = self._structure(names, fields, elsize)
            return
        if names is not None or fields is not None:
            raise pickle.UnpicklingError(
                f"refusing the dtype state {_short(state)}: fields on a plain dtype"
            )
        if self.kind == "number" and state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])

    def _structure(self, names: Any, fields: Any, elsize: Any) -> np.dtype:
        policy = self.policy
        if (
            not isinstance(names, tuple)
            or not 0 < len(names) <= policy.max_fields
            or not all(isinstance(n, str) and 0 < len(n) <= 64 for n in names)
            or len(set(names)) != len(names)
            or not isinstance(fields, dict)
            or set(fields) != set(names)
        ):
            raise pickle.UnpicklingError(
                f"refusing a structured dtype with names {_short(names)} and fields "
                f"{_short(fields)}: up to {policy.max_fields} distinct names, each a field"
            )
        if not _is_size(elsize) or not 0 < elsize <= policy.max_itemsize:
            raise pickle.UnpicklingError(
                f"refusing a structured dtype of {_short(elsize)} bytes per item "
                f"(1 to {policy.max_itemsize})"
            )
        formats, offsets = [], []
        for name in names:
            field = fields[name]
            if (
                not isinstance(field, tuple)
                or len(field) != 2
                or not isinstance(field[0], _DtypeSpec)
                or field[0].kind != "number"
                or field[0].dtype is None
                or not _is_size(field[1])
                or field[1] + field[0].dtype.itemsize > elsize
            ):
                raise pickle.UnpicklingError(
                    f"refusing the field {name!r} {_short(field)}: a plain number at an "
                    f"offset inside the {elsize}-byte item"
                )
            formats.append(field[0].dtype)
            offsets.append(field[1])
        return np.dtype(
            {"names": list(names), "formats": formats, "offsets": offsets, "itemsize": elsize}
        )

    def resolved(self) -> np.dtype:
        if self.dtype is None:
            raise pickle.UnpicklingError("a structured dtype without its fields (no state)")
        return self.dtype


class _ArraySpec:
    """What an array's pickle asks for, checked before numpy sees any of it.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b'b')`` (an empty array)
    followed by ``__setstate__((1, shape, dtype, is_fortran, data))``. Both steps land
    here instead: the shape, dtype and data size are checked, and the array is made
    with :func:`numpy.frombuffer` from the data bytes (a copy, writable), or for an
    object array from a list holding one finished array per element.
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
        if not isinstance(shape, tuple) or not all(_is_size(d) for d in shape):
            raise pickle.UnpicklingError(
                f"an array shape is a tuple of sizes >= 0; got {_short(shape)}"
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
        if not isinstance(data, str | bytes | bytearray):
            raise pickle.UnpicklingError(f"array data must be bytes; got {type(data).__name__}")
        dt = dtype.resolved()
        if count * dt.itemsize != len(data):  # (latin-1 text: one byte per character)
            raise pickle.UnpicklingError(
                f"the array data holds {len(data)} bytes; shape {shape} of {dt} "
                f"needs {count * dt.itemsize}"
            )
        self.budget.take(len(data), f"an array of shape {shape} and dtype {dt}")
        if isinstance(data, str):  # Python 2 byte strings, decoded as latin-1
            data = data.encode("latin1")
        self.array = np.frombuffer(bytearray(data), dtype=dt).reshape(shape, order=order)


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


class _Global:
    """One global a pickle may name. It holds no attribute a pickle can set (a BUILD
    opcode on it fails), so a file cannot change the unpickler."""

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


#: ``numpy.ndarray`` in a pickle: an argument of ``_reconstruct``, never called (the
#: class itself would allocate any shape it is given).
_NDARRAY = _Global("numpy.ndarray", None)


def _globals(policy: PicklePolicy, budget: _Budget) -> dict[tuple[str, str], _Global]:
    """What a file may ask for: numpy's array reconstruction and dtypes, and
    ``_codecs.encode`` (how protocol-2 pickles written by Python 3 store bytes), each
    answered by a checked stand-in that spends ``budget`` on what it makes."""

    def dtype(spec: Any, align: Any = False, copy: Any = True) -> _DtypeSpec:
        return _DtypeSpec(policy, spec)

    def reconstruct_array(cls: Any, shape: Any, code: Any) -> _ArraySpec:
        if cls is not _NDARRAY or shape != (0,):
            raise pickle.UnpicklingError(
                f"refusing _reconstruct({_short(cls)}, {_short(shape)}, ...): numpy pickles "
                "an array as _reconstruct(ndarray, (0,), b'b')"
            )
        return _ArraySpec(budget)

    def latin1(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
        # How Python 3 writes bytes in protocols 0-2: _codecs.encode(str, 'latin1').
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise pickle.UnpicklingError(
                f"refusing _codecs.encode(..., {_short(encoding)}): only latin1 text becomes bytes"
            )
        budget.take(len(text), "_codecs.encode")
        return text.encode("latin1")

    reconstruct = _Global("_reconstruct", reconstruct_array)
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _Global("numpy.dtype", dtype),
        ("_codecs", "encode"): _Global("_codecs.encode", latin1),
    }


class _CheckedUnpickler(pickle.Unpickler):
    def __init__(self, raw: bytes, policy: PicklePolicy, encoding: str) -> None:
        super().__init__(io.BytesIO(raw), encoding=encoding)
        self._policy = policy
        self._allowed = _globals(policy, _Budget(2 * len(raw)))

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(
                f"refusing {module}.{name}: {self._policy.what} holds only containers and "
                "numpy arrays"
            )
        return self._allowed[module, name]


def _finished(value: Any) -> Any:
    """``value`` with its array and dtype stand-ins replaced by what they made: at the
    top, and as the values of a dict or the items of a list at the top (one level deep,
    as in the files these readers take)."""

    def one(v: Any) -> Any:
        if isinstance(v, _ArraySpec):
            if v.array is None:
                raise pickle.UnpicklingError("an array without its data (no state)")
            return v.array
        if isinstance(v, _DtypeSpec):
            return v.resolved()
        return v

    if isinstance(value, dict):
        return {key: one(v) for key, v in value.items()}
    if isinstance(value, list):
        return [one(v) for v in value]
    return one(value)


#: The deepest nesting of tuples (or marks) a file may build; numpy's own pickles nest
#: 2 to 4 deep. Hashing a tuple recurses in C without a depth check: a dict key of a
#: million nested tuples crashes Python.
MAX_TUPLE_DEPTH = 32
_TUPLE_OPCODES = frozenset(("EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "FROZENSET"))


def _check_tuple_depth(raw: bytes) -> None:
    """Raise ``pickle.UnpicklingError`` if the opcodes of ``raw`` build tuples (or
    frozensets) or marks nested deeper than :data:`MAX_TUPLE_DEPTH`, before anything
    is built.

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
            if len(marks) > MAX_TUPLE_DEPTH:
                raise pickle.UnpicklingError(
                    f"marks nested more than {MAX_TUPLE_DEPTH} deep (numpy's pickles nest "
                    "2 to 4 deep)"
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
            if depth > MAX_TUPLE_DEPTH:
                raise pickle.UnpicklingError(
                    f"tuples nested more than {MAX_TUPLE_DEPTH} deep (numpy's pickles nest "
                    "2 deep; hashing deeper ones can crash Python)"
                )
            stack.extend([depth] * len(op.stack_after))


#: What a broken or hostile pickle raises while it is checked or loaded.
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                 KeyError, IndexError, UnicodeDecodeError, RecursionError)  # fmt: skip


def load_numpy_pickle(raw: bytes, policy: PicklePolicy, encoding: str = "latin1") -> Any:
    """The object the pickle ``raw`` holds, built by checked stand-ins (module
    docstring): containers, numbers, strings, and numpy arrays and dtypes as ``policy``
    allows. Arrays at the top, in a top-level dict's values or a top-level list's items
    are returned as arrays. The arrays (and latin-1 bytes) made in all hold no more than
    twice the bytes of ``raw`` (object arrays: 8 per element), so nothing referenced
    many times through the memo is copied many times.

    Args:
        encoding: how Python 2 byte strings are decoded (``"latin1"`` keeps their bytes).

    Raises:
        One of :data:`PICKLE_ERRORS` (``pickle.UnpicklingError`` for whatever is
        refused); callers turn it into a :class:`~spikeflow.errors.DataFormatError`
        naming their file.
    """
    _check_tuple_depth(raw)
    return _finished(_CheckedUnpickler(raw, policy, encoding).load())
