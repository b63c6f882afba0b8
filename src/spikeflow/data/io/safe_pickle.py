"""Loading the numpy pickles inside dataset files without trusting them.

Some official dataset files are pickles: CIFAR's Python batches (dicts of numeric arrays)
and Bullying10K's ``.npy`` files (an object array of structured event packets). A plain
:class:`pickle.Unpickler`, even one that only lets numpy's own globals through, hands the
file's values to numpy unchecked: a 120-byte file can crash numpy, an 83-byte one can ask
it for 16 GiB. :func:`load_numpy_pickle` answers every global a file may name with a
checked stand-in instead: dtypes are rebuilt from plain numbers (structured ones field by
field, within their item size: nested structures, sub-arrays and titles included), and
an array is made only after its shape, dtype and data size agree (numeric arrays with
:func:`numpy.frombuffer`, from ``_reconstruct`` and ``__setstate__`` as numpy pickles
them up to protocol 4, or from ``_frombuffer`` as it pickles them in protocol 5; object
arrays only from a list of distinct such arrays, one per element), and all that is made
holds no more than twice the file's bytes (so a file cannot copy one block of its data
many times through the memo). A dry run of the opcodes first refuses tuples nested
deeper than :data:`MAX_TUPLE_DEPTH` (hashing deeper ones crashes Python). Anything else
a file asks for (a class, a function, a string or object dtype where none is allowed) is
refused before it is built, so a tampered file cannot run code.
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

__all__ = [
    "MAX_DTYPE_DEPTH",
    "MAX_TUPLE_DEPTH",
    "PICKLE_ERRORS",
    "PicklePolicy",
    "load_numpy_pickle",
]


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
    """What a file may ask for: numpy's array reconstruction (``_reconstruct``, and
    protocol 5's ``_frombuffer``) and dtypes, ``_codecs.encode`` and ``bytes()`` (how
    protocols 0-2 written by Python 3 store bytes, and empty bytes), each answered by a
    checked stand-in that spends ``budget`` on what it makes."""

    def dtype(spec: Any, align: Any = False, copy: Any = True) -> _DtypeSpec:
        return _DtypeSpec(policy, spec)

    def reconstruct_array(cls: Any, shape: Any, code: Any) -> _ArraySpec:
        if cls is not _NDARRAY or shape != (0,):
            raise pickle.UnpicklingError(
                f"refusing _reconstruct({_short(cls)}, {_short(shape)}, ...): numpy pickles "
                "an array as _reconstruct(ndarray, (0,), b'b')"
            )
        return _ArraySpec(budget)

    def frombuffer(
        buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None
    ) -> _ArraySpec:
        # numpy's _frombuffer: frombuffer(buf, dtype).reshape(shape, order) (order "K":
        # reshape in C order, then transpose by axis_order)
        if (
            not isinstance(dtype, _DtypeSpec)
            or dtype.kind == "object"
            or not _is_shape(shape)
            or order not in ("C", "F", "K")
            or (order == "K") != (axis_order is not None)
            or (
                axis_order is not None
                and not (
                    isinstance(axis_order, tuple)
                    and sorted(a for a in axis_order if _is_size(a)) == list(range(len(shape)))
                )
            )
        ):
            raise pickle.UnpicklingError(
                f"refusing _frombuffer(..., {_short(dtype)}, {_short(shape)}, {_short(order)}, "
                f"{_short(axis_order)}): numpy pickles an array as _frombuffer(data, dtype, "
                "shape, 'C' or 'F' (or 'K' and a permutation of the axes))"
            )
        flat = _numeric_array(shape, dtype.resolved(), buf, budget)
        spec = _ArraySpec(budget)
        if axis_order is None:
            spec.array = flat.reshape(shape, order=order)
        else:
            spec.array = flat.reshape(shape).transpose(axis_order)
        return spec

    def latin1(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
        # How Python 3 writes bytes in protocols 0-2: _codecs.encode(str, 'latin1').
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise pickle.UnpicklingError(
                f"refusing _codecs.encode(..., {_short(encoding)}): only latin1 text becomes bytes"
            )
        budget.take(len(text), "_codecs.encode")
        return text.encode("latin1")

    def empty_bytes() -> bytes:
        # How Python 3 writes b"" in protocols 0-2: bytes() (of no argument only).
        return b""

    reconstruct = _Global("_reconstruct", reconstruct_array)
    from_buffer = _Global("_frombuffer", frombuffer)
    no_bytes = _Global("bytes", empty_bytes)
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): from_buffer,
        ("numpy._core.numeric", "_frombuffer"): from_buffer,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _Global("numpy.dtype", dtype),
        ("_codecs", "encode"): _Global("_codecs.encode", latin1),
        ("__builtin__", "bytes"): no_bytes,
        ("builtins", "bytes"): no_bytes,
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


#: What a loaded pickle may hold besides containers (and the arrays and dtypes made).
_PLAIN = (type(None), bool, int, float, str, bytes, bytearray)


def _finished(value: Any) -> Any:
    """``value`` with its array and dtype stand-ins replaced by what they made: at the
    top, as the items of lists and the values of dicts (at any depth; in place: these
    are the unpickler's own new containers). A stand-in anywhere else (in a tuple, a
    set, a dict key) or an object of another type (a numpy global, a memoryview) is
    refused. Iterative: lists may nest as deep as the file has bytes."""

    def made(v: Any) -> Any:
        if isinstance(v, _ArraySpec):
            if v.array is None:
                raise pickle.UnpicklingError("an array without its data (no state)")
            return v.array
        if isinstance(v, _DtypeSpec):
            return v.resolved()
        return v

    value = made(value)
    todo, seen = [value], set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, list):
            for k, item in enumerate(obj):
                obj[k] = item = made(item)
                todo.append(item)
        elif isinstance(obj, dict):
            for key, item in obj.items():
                obj[key] = item = made(item)  # (a value replaced: the dict keeps its size)
                todo += (key, item)
        elif isinstance(obj, tuple | set | frozenset):
            todo += obj
        elif isinstance(obj, _ArraySpec | _DtypeSpec):
            raise pickle.UnpicklingError(
                f"{'an array' if isinstance(obj, _ArraySpec) else 'a dtype'} inside a tuple, "
                "a set or a dict key: numpy arrays and dtypes are read at the top, in lists "
                "and as dict values only"
            )
        elif not isinstance(obj, (*_PLAIN, np.ndarray, np.dtype)):
            raise pickle.UnpicklingError(
                f"refusing {_short(obj)} ({type(obj).__name__}) in the loaded object: it "
                "holds containers, numbers, strings, bytes, numpy arrays and dtypes only"
            )
    return value


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
    :mod:`pickletools`, but as pickle runs them where the two differ: POP takes a MARK
    pushed right before it, BUILD leaves its object, a tuple too, on the stack) that tracks,
    per stack item and memo entry, the tuple depth of the object (0 for anything but a
    tuple or frozenset; both are immutable, so a memo entry keeps its depth)."""
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
        elif name == "POP":  # (right after a MARK, POP takes the mark, as pickle's does)
            if marks and marks[-1] == len(stack):
                marks.pop()
            elif stack:
                stack.pop()
        elif name == "BUILD":  # the object stays (BUILD of state None on a tuple: a no-op)
            if stack:
                stack.pop()  # (the state)
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
    docstring): containers, numbers, strings, bytes, and numpy arrays and dtypes as
    ``policy`` allows, the arrays and dtypes at the top, as list items or as dict values
    (at any depth; one inside a tuple, a set or a dict key is refused). The arrays (and
    latin-1 bytes) made in all hold no more than twice the bytes of ``raw`` (object
    arrays: 8 per element), so nothing referenced many times through the memo is copied
    many times. Out-of-band buffers (protocol 5) are refused: a file holds its data.

    Args:
        encoding: how Python 2 byte strings are decoded (``"latin1"`` keeps their bytes).

    Raises:
        One of :data:`PICKLE_ERRORS` (``pickle.UnpicklingError`` for whatever is
        refused); callers turn it into a :class:`~spikeflow.errors.DataFormatError`
        naming their file.
    """
    _check_tuple_depth(raw)
    return _finished(_CheckedUnpickler(raw, policy, encoding).load())
