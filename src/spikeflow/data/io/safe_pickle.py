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

The stand-ins (and :class:`PicklePolicy`) are in
:mod:`spikeflow.data.io.pickle_standins`; this module holds the unpickler that hands
them a file's globals, the checks of what it finished building and the opcode dry run.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from typing import Any

import numpy as np

from spikeflow.data.io.pickle_standins import (
    MAX_DTYPE_DEPTH,
    PicklePolicy,
    _ArraySpec,
    _Budget,
    _DtypeSpec,
    _is_shape,
    _is_size,
    _numeric_array,
    _short,
)

__all__ = [
    "MAX_DTYPE_DEPTH",
    "MAX_TUPLE_DEPTH",
    "PICKLE_ERRORS",
    "PicklePolicy",
    "load_numpy_pickle",
]


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
