"""The CIFAR unpickler against hostile files: pickles of a few hundred bytes that ask
numpy for gigabytes, crash it, or expand strings exponentially, built opcode by opcode.

Each payload is kept small enough to be harmless when it is (wrongly) accepted, so a
regression fails the assertion instead of exhausting the machine; the one that crashed
numpy (a segfault) runs in a child process.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeflow.data.io.images import load_cifar_pickle as load_batch
from spikeflow.data.io.images import read_cifar_pickle
from spikeflow.errors import DataFormatError

# -- opcode writers --------------------------------------------------------------------

RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\n"
NDARRAY = b"cnumpy\nndarray\n"


def _int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)


def _text(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _dtype(spec: str) -> bytes:
    return b"cnumpy\ndtype\n" + _text(spec) + b"\x85R"


def _empty_array() -> bytes:
    """``_reconstruct(ndarray, (0,), b'b')``, as numpy pickles every array."""
    return RECONSTRUCT + NDARRAY + _int(0) + b"\x85" + b"C\x01b" + b"\x87R"


def _batch(array_opcodes: bytes) -> bytes:
    """``{'data': <array>, 'labels': [1]}`` around the opcodes of one array."""
    return (b"\x80\x02}(" + _text("data") + array_opcodes + _text("labels")
            + b"]" + _int(1) + b"a" + b"u.")  # fmt: skip


def _read(tmp_path: Path, payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    path = tmp_path / "batch"
    path.write_bytes(payload)
    return read_cifar_pickle(path, "labels", 10)


# -- the attacks ---------------------------------------------------------------------------


def test_an_object_array_asked_of_reconstruct_is_refused(tmp_path):
    # _reconstruct(ndarray, (n,), dtype('O')) allocates and fills n pointers: 2**31 - 1
    # elements (16 GiB) from an 83-byte file; a small n shows it is refused.
    payload = _batch(RECONSTRUCT + NDARRAY + _int(1 << 16) + b"\x85" + _dtype("O") + b"\x87R")
    with pytest.raises(DataFormatError, match="refusing"):
        _read(tmp_path, payload)


def test_ndarray_cannot_be_called_to_allocate(tmp_path):
    # ndarray((n,), 'O') is the constructor itself: the same allocation.
    payload = _batch(NDARRAY + _int(1 << 16) + b"\x85" + _text("O") + b"\x86R")
    with pytest.raises(DataFormatError, match="refusing"):
        _read(tmp_path, payload)


@pytest.mark.parametrize("spec", ["O", "V8", "S4", "(2,)u1", "M8[s]"])
def test_dtypes_other_than_plain_numbers_are_refused(tmp_path, spec):
    state = b"(" + _int(1) + _int(2) + b"\x85" + _dtype(spec) + b"\x89" + b"C\x00" + b"tb"
    with pytest.raises(DataFormatError, match="refusing"):
        _read(tmp_path, _batch(_empty_array() + state))


def test_an_exponential_codecs_expansion_is_refused(tmp_path):
    # encode(encode(...encode(b'a', 'hex')..., 'hex'), 'hex') doubles at each level:
    # 35 levels (about 500 bytes of pickle) ask for 34 GB; 12 show it is refused.
    payload = b"\x80\x02c_codecs\nencode\nq\x00C\x01a"
    for _ in range(12):
        payload += b"q\x010h\x00h\x01" + _text("hex") + b"\x86R"
    with pytest.raises(DataFormatError, match=r"refusing _codecs\.encode"):
        _read(tmp_path, _batch(payload[2:]))  # (the batch writes the protocol header)


def test_reconstruct_takes_only_numpys_empty_array(tmp_path):
    payload = _batch(RECONSTRUCT + NDARRAY + _int(1 << 30) + b"\x85" + _dtype("u1") + b"\x87R")
    with pytest.raises(
        DataFormatError, match=r"refusing _reconstruct\(numpy\.ndarray, \(1073741824,\)"
    ):
        _read(tmp_path, payload)


def test_a_pickle_cannot_change_the_unpickler_for_the_next_file(tmp_path):
    # BUILD with a slot state would set numpy.dtype's stand-in to _codecs.encode's.
    payload = (b"\x80\x02cnumpy\ndtype\n" + b"N}" + _text("_build") + b"c_codecs\nencode\n"
               + b"s\x86b.")  # fmt: skip
    with pytest.raises(DataFormatError, match="takes no attributes"):
        _read(tmp_path, payload)
    data = np.arange(3072, dtype=np.int64).astype(np.uint8)[None]
    (tmp_path / "good").write_bytes(pickle.dumps({"data": data, "labels": [4]}, protocol=2))
    images, _ = read_cifar_pickle(tmp_path / "good", "labels", 10)
    np.testing.assert_array_equal(images.reshape(1, -1), data)


def _deep_tuple_key(depth: int) -> bytes:
    """``{((...(),),): 1}``: a dict whose key is ``depth`` nested tuples."""
    return b"\x80\x02}" + b"(" * depth + b")" + b"t" * depth + b"K\x01s."


def test_files_that_crashed_python_are_refused_in_a_child_process(tmp_path):
    # numpy's ndarray.__setstate__ with an object dtype and a list shorter than the
    # shape reads past the list: a segfault (memory corruption) from ~120 bytes.
    state = (b"(" + _int(1) + _int(1 << 24) + b"\x85" + _dtype("O") + b"\x89"
             + b"]" + _int(1) + b"a" + b"tb")  # fmt: skip
    (tmp_path / "object_state").write_bytes(_batch(_empty_array() + state))
    # Hashing a dict key of a million nested tuples recurses in C past the stack
    # (3 MB of MARK and TUPLE opcodes; any unpickler that builds it crashes).
    (tmp_path / "deep_key").write_bytes(_deep_tuple_key(1_000_000))
    code = (
        "import sys\n"
        "from spikeflow.data.io.images import read_cifar_pickle\n"
        "from spikeflow.errors import DataFormatError\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        read_cifar_pickle(path, 'labels', 10)\n"
        "    except DataFormatError as exc:\n"
        "        print(exc)\n"
    )
    paths = [str(tmp_path / "object_state"), str(tmp_path / "deep_key")]
    done = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, f"the reader crashed (status {done.returncode}): {done.stderr}"
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and "refusing" in lines[0] and "nested" in lines[1], lines


def test_deep_tuples_are_refused_before_anything_is_built(tmp_path):
    # 1,000 levels do not crash, but naming the keys in an error raised RecursionError.
    with pytest.raises(DataFormatError, match="marks nested more than 32 deep"):
        _read(tmp_path, _deep_tuple_key(1000))
    with pytest.raises(DataFormatError, match="tuples nested more than 32 deep"):  # no MARK needed
        _read(tmp_path, b"\x80\x02}" + b")" + b"\x85" * 32 + b"K\x01s.")
    # through the memo: one tuple put and got back 40 times
    memo = b"".join(b"h\x00\x85q\x000" for _ in range(40))  # get, (it,), put, pop
    with pytest.raises(DataFormatError, match="tuples nested more than 32 deep"):
        _read(tmp_path, b"\x80\x02})q\x000" + memo + b"h\x00K\x01s.")
    second = b"".join(b"K\x00h\x00\x86q\x000" for _ in range(40))  # (0, it): not first
    with pytest.raises(DataFormatError, match="tuples nested more than 32 deep"):
        _read(tmp_path, b"\x80\x02})q\x000" + second + b"h\x00K\x01s.")
    legit = b"\x80\x02})q\x000" + memo[: 31 * 6] + b"h\x00K\x01s."  # 32 deep: read
    with pytest.raises(DataFormatError, match="no 'data' entry"):
        _read(tmp_path, legit)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (b"(" + _int(1) + _int(3) + b"\x85" + _dtype("u1") + b"\x89" + b"C\x02ab" + b"tb",
         "holds 2 bytes; shape"),
        (b"(" + _int(1) + _int(-1) + b"\x85" + _dtype("u1") + b"\x89" + b"C\x00" + b"tb",
         "shape"),
        (b"(" + _int(7) + _int(1) + b"\x85" + _dtype("u1") + b"\x89" + b"C\x01a" + b"tb",
         "version"),
        (b"N" + b"b", "state"),
    ],
)  # fmt: skip
def test_a_malformed_array_state_is_named(tmp_path, state, message):
    with pytest.raises(DataFormatError, match=message):
        _read(tmp_path, _batch(_empty_array() + state))


def test_an_array_never_given_its_state_is_named(tmp_path):
    with pytest.raises(DataFormatError, match="no state"):
        _read(tmp_path, _batch(_empty_array()))


def test_deep_nesting_is_a_format_error(tmp_path):
    payload = b"\x80\x02" + b"(" * 200_000 + b")" + b"t" * 199_999 + b"."
    with pytest.raises(DataFormatError):
        _read(tmp_path, payload)


def test_a_deep_list_in_an_error_message_is_a_format_error(tmp_path):
    # Lists nest without marks or tuples (append a new list, get it back from the memo):
    # naming the bad state in the message raised RecursionError.
    # memo 0: the outer list, memo 1: the innermost; each level appends a new innermost.
    deep = b"]q\x00q\x010" + b"h\x01]q\x01a0" * 100_000 + b"h\x00"
    with pytest.raises(DataFormatError, match="an array state is a tuple"):
        _read(tmp_path, _batch(_empty_array() + deep + b"b"))


# -- what must still load ------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("dtype", ["u1", "<i8", ">i4", "<f4", ">f8", "?"])
def test_numpy_arrays_pickled_by_python3_load_equal(tmp_path, protocol, dtype):
    data = np.random.default_rng(0).integers(0, 256, (3, 3072)).astype(np.uint8)
    labels = np.array([3, 0, 9], dtype=np.int64 if dtype in ("?", "<f4", ">f8") else dtype)
    extra = np.asfortranarray(np.arange(12).reshape(3, 4).astype(dtype))
    batch = {"data": data, "labels": labels, "extra": extra, "names": ["a", b"b"]}
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    images, read_labels = read_cifar_pickle(path, "labels", 10)
    np.testing.assert_array_equal(images.reshape(3, -1), data)
    assert images.flags.writeable
    assert read_labels.tolist() == [3, 0, 9] and read_labels.dtype == np.int64
    loaded = load_batch(path)
    assert loaded["extra"].dtype == extra.dtype and loaded["extra"].flags.f_contiguous
    np.testing.assert_array_equal(loaded["extra"], extra)
    assert loaded["names"] == ["a", b"b"]
