"""Bullying10K's object-array pickles against hostile files (the CIFAR batches' own
attacks are in test_data_images_unpickler.py).

A Bullying10K ``.npy`` holds an object array of structured event packets, so its
unpickler must allow object and structured dtypes, which numpy builds from a file's
values with too few checks: a short element list is read past (a segfault), an object
field in a structure turns data bytes into pointers, a shape asks for any allocation.
Each payload here is small enough to be harmless if it were wrongly accepted; those
that crash numpy run in a child process.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeflow.data import read_bullying10k
from spikeflow.data.io.safe_pickle import MAX_DTYPE_DEPTH, PicklePolicy, load_numpy_pickle
from spikeflow.errors import DataFormatError

RECONSTRUCT = np.zeros(0).__reduce__()[0]
DV_EVENT = np.dtype(
    [("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1"),
     ("_p1", "<i2"), ("_p2", "i1")]
)  # fmt: skip
POLICY = PicklePolicy("a test file", structured=True, object_arrays=True)


class FakeArray:
    """Pickles as numpy pickles an array, with a state of the test's choosing."""

    def __init__(self, state, shape=(0,)):
        self.state, self.shape = state, shape

    def __reduce__(self):
        return RECONSTRUCT, (np.ndarray, self.shape, b"b"), self.state


class FakeDtype:
    """Pickles as ``numpy.dtype(spec)`` with a state of the test's choosing."""

    def __init__(self, spec, state):
        self.spec, self.state = spec, state

    def __reduce__(self):
        return np.dtype, (self.spec, False, True), self.state


def structure(fields, elsize=16):
    """A structured dtype's pickle: ``fields`` maps a name to (field dtype, offset)."""
    return FakeDtype(f"V{elsize}", (3, "|", None, tuple(fields), dict(fields), elsize, 1, 16))


def nested(depth):
    """A structure of one int64 ``x`` wrapped in ``depth - 1`` structures (field ``s``)."""
    dtype = structure({"x": (np.dtype("<i8"), 0)}, 8)
    for _ in range(depth - 1):
        dtype = structure({"s": (dtype, 0)}, 8)
    return dtype


def packet(n=3):
    p = np.zeros(n, DV_EVENT)
    p["timestamp"], p["x"], p["y"], p["polarity"] = np.arange(n), 5, 7, 1
    return p


def write_npy(path: Path, obj, shape) -> Path:
    """An ``.npy`` whose header promises an object array of ``shape``, then ``obj``'s
    pickle (as ``np.save`` writes object arrays)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|O", "fortran_order": False, "shape": shape}
    )
    path.write_bytes(buf.getvalue() + pickle.dumps(obj, protocol=3))
    return path


def object_array(elements, shape=None):
    shape = (len(elements),) if shape is None else shape
    return FakeArray((1, shape, np.dtype(object), False, list(elements)))


def test_real_packets_load_equal_and_as_numpy_would(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = packet(3), packet(5)[::-1].copy()
    loaded = load_numpy_pickle(pickle.dumps(ragged, protocol=3), POLICY)
    assert loaded.dtype == object and loaded.shape == (2,)
    for got, want in zip(loaded, ragged):
        assert got.dtype == DV_EVENT and got.flags.writeable
        np.testing.assert_array_equal(got, want)
    big_endian = packet(4).astype(DV_EVENT.newbyteorder(">"))
    again = load_numpy_pickle(pickle.dumps(big_endian, protocol=2), POLICY)
    assert again.dtype == big_endian.dtype
    np.testing.assert_array_equal(again, big_endian)


def test_files_that_crash_numpy_are_refused_in_a_child_process(tmp_path):
    # An object array whose element list is shorter than its shape: numpy reads past it.
    short = write_npy(tmp_path / "short.npy", object_array([packet()], (1 << 20,)), (1 << 20,))
    # A structure with an object field: the data bytes would become object pointers.
    pointers = structure({"o": (np.dtype(object), 0), "x": (np.dtype("<i8"), 8)})
    inner = FakeArray((1, (1,), pointers, False, b"\x41" * 16))
    as_pointers = write_npy(tmp_path / "pointers.npy", object_array([inner]), (1,))
    code = (
        "import sys\n"
        "from spikeflow.data import read_bullying10k\n"
        "from spikeflow.errors import DataFormatError\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        read_bullying10k(path)\n"
        "    except DataFormatError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(short), str(as_pointers)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, f"the reader crashed (status {done.returncode}): {done.stderr}"
    lines = done.stdout.splitlines()
    assert len(lines) == 2, lines
    assert "short.npy" in lines[0]
    assert "needs a list of 1048576 elements; got a list of 1" in lines[0]
    assert "pointers.npy" in lines[1] and "refusing" in lines[1] and "'o'" in lines[1]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        # _reconstruct asked for the allocation itself
        (FakeArray((1, (4,), np.dtype(object), False, [1, 2, 3, 4]), shape=(1 << 30,)),
         r"refusing _reconstruct\(numpy\.ndarray, \(1073741824,\)"),
        # an element that is not an array of numbers
        (object_array([packet(), 5]), "element 1 of an object array is 5"),
        (object_array([object_array([packet()])]), "element 0 of an object array is an object"),
        # structures: a field past the item, a huge item, names that are not the fields,
        # structures nested too deep, no fields at all
        (object_array([FakeArray((1, (1,), structure({"x": (np.dtype("<i8"), 12)}), False,
                                  b"\x00" * 16))]), r"field 'x'.*inside the 16-byte item"),
        (object_array([FakeArray((1, (0,), structure({"x": (np.dtype("<i8"), 0)}, 1 << 16),
                                  False, b""))]), "65536 bytes per item"),
        (object_array([FakeArray((1, (1,), FakeDtype("V8", (3, "|", None, ("x", "y"),
                                  {"x": (np.dtype("<i4"), 0)}, 8, 1, 16)), False,
                                  b"\x00" * 8))]), "each a field"),
        (object_array([FakeArray((1, (1,), nested(MAX_DTYPE_DEPTH + 1), False, b"\x00" * 8))]),
         "field 's'.*nested at most 4 deep"),
        (object_array([FakeArray((1, (1,), FakeDtype("V8", (3, "|", None, None, None, 8, 1,
                                  0)), False, b"\x00" * 8))]), "refusing a structured dtype"),
        # a plain dtype given fields, strings and dates
        (object_array([FakeArray((1, (1,), FakeDtype("<i8", (3, "<", None, ("x",),
                                  {"x": (np.dtype("<i8"), 0)}, 8, 1, 0)), False,
                                  b"\x00" * 8))]), "fields on a plain dtype"),
        (object_array([np.array(["ab"])]), r"refusing numpy\.dtype\('U2'\)"),
        (object_array([np.array([1], "M8[s]")]), "refusing numpy.dtype"),
        # data that does not fit its shape
        (object_array([FakeArray((1, (2,), DV_EVENT, False, b"\x00" * 16))]),
         r"holds 16 bytes; shape \(2,\)"),
    ],
)  # fmt: skip
def test_hostile_packets_are_refused_with_the_file_named(tmp_path, obj, message):
    path = write_npy(tmp_path / "bad.npy", obj, (2,))
    with pytest.raises(DataFormatError, match=message) as info:
        read_bullying10k(path)
    assert "bad.npy" in str(info.value)


def test_object_and_structured_dtypes_need_the_policy():
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = packet(3), packet(5)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing numpy\.dtype\('O8'\)"):
        load_numpy_pickle(pickle.dumps(ragged), PicklePolicy("x", structured=True))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing numpy\.dtype\('V16'\)"):
        load_numpy_pickle(pickle.dumps(packet()), PicklePolicy("x", object_arrays=True))
    plain = np.arange(6, dtype="<f4").reshape(2, 3)
    np.testing.assert_array_equal(load_numpy_pickle(pickle.dumps(plain), PicklePolicy("x")), plain)


def test_data_referenced_again_through_the_memo_is_not_copied_again(tmp_path):
    block = b"\x00" * 10_000  # pickled once; each further array names it by memo index
    many = {f"k{i}": FakeArray((1, (10_000,), np.dtype("u1"), False, block)) for i in range(200)}
    raw = pickle.dumps(many, protocol=3)
    assert len(raw) < 25_000  # ... yet it asks for 2 MB of arrays
    with pytest.raises(pickle.UnpicklingError, match="may make only as many bytes"):
        load_numpy_pickle(raw, PicklePolicy("x"))
    # _codecs.encode of one memoized latin-1 string, called again and again
    text = "a" * 10_000
    encode = (b"\x80\x02]q\x00c_codecs\nencode\nq\x01X" + len(text).to_bytes(4, "little")
              + text.encode() + b"X\x06\x00\x00\x00latin1\x86q\x02Ra")  # fmt: skip
    raw = encode + b"h\x01h\x02Ra" * 100 + b"."
    with pytest.raises(pickle.UnpicklingError, match=r"_codecs\.encode would make"):
        load_numpy_pickle(raw, PicklePolicy("x"))
    assert load_numpy_pickle(encode + b"h\x01h\x02Ra.", PicklePolicy("x")) == [text.encode()] * 2
    # one packet named twice in the object array (a reader would concatenate it twice)
    one = FakeArray((1, (2,), DV_EVENT, False, packet(2).tobytes()))
    path = write_npy(tmp_path / "twice.npy", object_array([one, one]), (2,))
    with pytest.raises(DataFormatError, match="element 1 of an object array is element 0 again"):
        read_bullying10k(path)


def as_numpy1(raw: bytes) -> bytes:
    """``raw`` as numpy 1.x writes it: ``numpy.core...`` for numpy 2's ``numpy._core...``
    (opcodes re-encoded; frames dropped, as they are optional)."""
    ops = list(pickletools.genops(raw))
    out = bytearray()
    for (op, arg, pos), nxt in zip(ops, [*ops[1:], (None, None, len(raw))]):
        part = raw[pos : nxt[2]]
        if op.name == "FRAME":
            continue
        if isinstance(arg, str) and arg.startswith("numpy._core"):
            new = arg.replace("numpy._core", "numpy.core")
            part = (b"c" + new.replace(" ", "\n").encode() + b"\n" if op.name == "GLOBAL"
                    else b"\x8c" + bytes([len(new)]) + new.encode())  # fmt: skip
        out += part
    return bytes(out)


@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2", "numpy1"])
@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_numpys_own_pickles_of_every_layout_load_equal(protocol, numpy1):
    # protocol 5 pickles arrays with _frombuffer; 0-2 write b"" as bytes()
    titled = np.dtype([(("a title", "a"), "<i4"), ("b", ">f8")])
    nested = np.dtype([("pos", [("x", "<i2"), ("y", ">i2")]), ("v", "<f4", (2, 3))])
    padded = np.dtype({"names": ["a", "b"], "formats": ["u1", "<i8"], "offsets": [0, 8],
                       "itemsize": 24})  # fmt: skip
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = packet(3), packet(0)
    arrays = {
        "empty": np.zeros((0, 3), ">i2"), "scalar": np.array(2.5), "bool": np.array([True]),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "strided": np.arange(24).reshape(2, 3, 4).transpose(1, 0, 2),
        "titled": np.ones(2, titled), "nested": np.ones(2, nested), "padded": np.ones(3, padded),
        "packets": ragged,
    }  # fmt: skip
    raw = pickle.dumps({"arrays": [arrays]}, protocol=protocol)
    loaded = load_numpy_pickle(as_numpy1(raw) if numpy1 else raw, POLICY)["arrays"][0]
    by_numpy = pickle.loads(raw)["arrays"][0]  # (our own pickle: safe to load)
    assert loaded.keys() == arrays.keys()
    for name, want in arrays.items():
        got = loaded[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        if want.dtype == object:
            for g, w in zip(got, want):
                assert g.dtype == w.dtype
                np.testing.assert_array_equal(g, w)
        else:
            strides = by_numpy[name].strides  # (protocols 0-4 write C order, 5 any)
            assert got.flags.writeable and (got.strides == strides or not got.size), name
            np.testing.assert_array_equal(got, want)
    assert loaded["titled"].dtype.fields["a title"][2] == "a title"


def test_tuples_hidden_from_the_depth_check_are_refused(tmp_path):
    # BUILD of state None on a tuple leaves it on the stack: 40 deep in steps of 20
    # (with a million levels, hashing the dict key crashed Python)
    build = b"\x80\x02}" + b")" + (b"\x85" * 20 + b"Nb") * 2 + b"K\x01s."
    # POP right after a MARK takes the mark: the TUPLE then wraps the deep tuple too
    pop = b"\x80\x02}(" + b")" + b"\x85" * 31 + b"(0t" + b"\x85" * 8 + b"K\x01s."
    for raw in (build, pop):
        with pytest.raises(pickle.UnpicklingError, match="tuples nested more than 32 deep"):
            load_numpy_pickle(raw, POLICY)


def test_shapes_and_dtype_specs_numpy_never_writes_are_refused_by_name():
    # a 2,000-digit dimension: the product of fifty took 20 s, its message failed
    huge = FakeArray((1, (0, 10**2000), np.dtype("u1"), False, b""))
    many = FakeArray((1, (0,) * 65, np.dtype("u1"), False, b""))
    for obj in (huge, many):
        with pytest.raises(pickle.UnpicklingError, match="shape is a tuple of up to 64 sizes"):
            load_numpy_pickle(pickle.dumps(obj, protocol=3), POLICY)
    for spec in ("1)i73", "a", "i4,i4", "(2,)i4", "i3"):  # SyntaxError, a warning, ...
        raw = pickle.dumps(FakeDtype(spec, (3, "<", None, None, None, -1, -1, 0)), protocol=3)
        with pytest.raises(pickle.UnpicklingError, match=r"refusing numpy\.dtype"):
            load_numpy_pickle(raw, POLICY)


def test_only_arrays_dtypes_and_plain_values_come_back():
    # stand-ins once came back as they were below the top level, and numpy globals too
    deep = load_numpy_pickle(pickle.dumps({"a": {"b": [np.arange(3)]}}), POLICY)
    assert isinstance(deep["a"]["b"][0], np.ndarray) and deep["a"]["b"][0].tolist() == [0, 1, 2]
    for raw, message in [
        (pickle.dumps((np.arange(2),)), "an array inside a tuple"),
        (pickle.dumps({(np.dtype("u1"), 1): 0}), "a dtype inside a tuple"),
        (b"cnumpy\ndtype\n.", r"refusing numpy\.dtype \(_Global\)"),
        (b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x98.", r"\(memoryview\)"),
    ]:
        with pytest.raises(pickle.UnpicklingError, match=message):
            load_numpy_pickle(raw, POLICY)
