"""Fuzzing every decoder with hypothesis: random bytes and mutations of valid files.

A decoder may return events or raise DataFormatError (or MissingExtraError for an
absent optional package) -- nothing else: no IndexError, struct.error, numpy error,
hang or out-of-bounds read. Inputs are kept small so every example runs in
milliseconds. Seeds are the synthetic files of test_data_io_synthetic.py and, when
../shared/data is present, the real samples (or their first kilobytes).
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SHARED_DATA
from spikeflow.data import EVENT_DTYPE
from spikeflow.data.io import _native as compiled_decoders
from spikeflow.data.io import (
    decode_aedat2,
    decode_aedat4,
    decode_aedat31,
    decode_atis_bin,
    decode_bs1,
    decode_dat,
    decode_evt2,
    decode_evt3,
    read_es_imagenet,
    read_hardvs,
    read_numpy_events,
)
from spikeflow.errors import DataFormatError, MissingExtraError
from test_data_io_synthetic import (
    AEDAT31_HEADER,
    aedat2_file,
    aedat4_file,
    aedat31_packet,
    fb_event_packet,
    polarity,
)

#: Every test here runs with the numpy and the compiled decoders (conftest.py).
pytestmark = pytest.mark.usefixtures("decoder")

ALLOWED = (DataFormatError, MissingExtraError)
#: More examples for a long local run: SPIKEFLOW_FUZZ_EXAMPLES=5000 (pytest this file)
EXAMPLES = int(os.environ.get("SPIKEFLOW_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
EF = SHARED_DATA / "event-files"


def real(relative: str, limit: int | None = None) -> list[bytes]:
    path = EF / relative
    if not path.exists():
        return []
    data = path.read_bytes()
    return [data[:limit] if limit else data]


def synthetic_aedat4() -> list[bytes]:
    packet = fb_event_packet([(1, 2, 3, True), (4, 5, 6, False), (4, 63, 47, True)])
    seeds = [aedat4_file([packet, fb_event_packet([])])]
    try:
        import lz4.frame

        seeds.append(aedat4_file([lz4.frame.compress(packet)], 1))
    except ImportError:
        pass
    try:
        import zstandard

        seeds.append(aedat4_file([zstandard.ZstdCompressor().compress(packet)], 3))
    except ImportError:
        pass
    return seeds


def atis_events(n: int) -> bytes:
    return b"".join(bytes([i % 34, (i * 7) % 34, (i % 2) << 7, 0, i]) for i in range(n))


SEEDS: dict[str, tuple] = {
    "atis": (decode_atis_bin, [atis_events(20), *real("nmnist-bin/sample_nmnist.bin", 4000)]),
    "bs1": (decode_bs1, real("slayer-bs1/NTIDIGITS_1.bs1") or [bytes(5) * 4]),
    "aedat2": (
        decode_aedat2,
        [
            aedat2_file("DVS128", [(i << 1 | i % 2, i) for i in range(16)]),
            aedat2_file("Davis346red", [(i << 12 | (i << 22), i) for i in range(16)]),
            *real("aedat2/header_test_128.aedat_test"),
        ],
    ),
    "aedat31": (
        decode_aedat31,
        [
            AEDAT31_HEADER
            + aedat31_packet(0, [(3, 1)])
            + aedat31_packet(1, [(polarity(i, i, i % 2), i) for i in range(8)])
            + aedat31_packet(1, [(polarity(5, 6, 1), 2)], overflow=1)
        ],
    ),
    "aedat4": (decode_aedat4, synthetic_aedat4() + real("aedat4/sample.aedat4")),
    "evt2": (
        decode_evt2,
        [
            b"% evt 2.0\n" + struct.pack("<4I", 8 << 28 | 3, 1 << 28 | 9, 0xA << 28, 2 << 22 | 7),
            *real("prophesee-evt2/evt2.raw", 3000),
        ],
    ),
    "evt3": (
        decode_evt3,
        [
            b"% evt 3.0\n" + struct.pack("<6H", 0x8001, 0x6002, 0x0003, 0x2004, 0x3010, 0x4FFF),
            *real("prophesee-evt3/evt3_sample.raw", 3000),
        ],
    ),
    "dat": (
        decode_dat,
        [
            b"% Version 2\n" + bytes([0, 8]) + struct.pack("<4I", 1, 1 << 28 | 3 << 14 | 4, 2, 5),
            *real("prophesee-dat/NCARS_obj_004397_td.dat"),
        ],
    ),
}

INTERESTING = [0, 1, -1, 8, 28, 0x7FFFFFFF, -(2**31), 0xFFFF, 2**30]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "byte", "int32", "cut", "insert", "delete"]))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[i] = draw(st.integers(0, 255))
        elif op == "int32":
            data[i : i + 4] = struct.pack("<i", draw(st.sampled_from(INTERESTING)))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data)


def decode_or_reject(decoder, raw: bytes) -> None:
    try:
        rec = decoder(raw)
    except ALLOWED as exc:
        assert "byte offset" in str(exc) or isinstance(exc, MissingExtraError)
        return
    ev = rec.events
    assert ev.dtype == EVENT_DTYPE
    assert np.all(np.diff(ev["t"]) >= 0)
    if len(ev):
        assert ev["x"].max() < rec.sensor_size[0] and ev["y"].max() < rec.sensor_size[1]


@pytest.mark.parametrize("fmt", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_mutations_of_valid_files(fmt, data):
    decoder, seeds = SEEDS[fmt]
    decode_or_reject(decoder, data.draw(mutated(seeds)))


@pytest.mark.parametrize("fmt", sorted(SEEDS))
@FUZZ
@given(raw=st.binary(max_size=512))
def test_random_bytes(fmt, raw):
    decode_or_reject(SEEDS[fmt][0], raw)


@pytest.mark.parametrize("fmt", ["aedat2", "aedat31", "aedat4", "evt2", "evt3", "dat"])
@FUZZ
@given(body=st.binary(max_size=256))
def test_valid_header_random_body(fmt, body):
    decoder, seeds = SEEDS[fmt]
    header = {
        "aedat2": seeds[0][: len(aedat2_file("DVS128", []))],
        "aedat31": AEDAT31_HEADER,
        "aedat4": aedat4_file([]),
        "evt2": b"% evt 2.0\n",
        "evt3": b"% evt 3.0\n",
        "dat": b"% Version 2\n\x00\x08",
    }[fmt]
    decode_or_reject(decoder, header + body)


def _npy_seeds(tmp: Path) -> list[tuple[object, bytes]]:
    lip = np.array(
        [(3, 1, 2, 1), (4, 5, 6, 0)], dtype=[("t", "<i4"), ("x", "i1"), ("y", "i1"), ("p", "i1")]
    )
    np.save(tmp / "lip.npy", lip)
    np.savez(tmp / "es.npz", pos=np.array([[1, 2, 3]]), neg=np.array([[4, 5, 6]]))
    seeds = [
        (lambda p: read_numpy_events(p, (128, 128)), (tmp / "lip.npy").read_bytes()),
        (read_es_imagenet, (tmp / "es.npz").read_bytes()),
    ]
    return seeds  # .mat files: test_mat_files_mutated_in_a_subprocess (scipy can crash)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_container_files_mutated(tmp_path, data):
    """.npy / .npz go through numpy's parsers: still only our error."""
    seeds = _npy_seeds(tmp_path)
    reader, seed = data.draw(st.sampled_from(seeds))
    path = tmp_path / "fuzzed.bin"
    path.write_bytes(data.draw(mutated([seed])))
    try:
        reader(path)
    except ALLOWED:
        pass


#: (signature, offsets of its fields): version needed, flags, method, CRC-32, sizes,
#: name and extra lengths (and, central, the local header's offset).
ZIP_HEADERS = {
    b"PK\x03\x04": [(4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)],
    b"PK\x01\x02": [(6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (42, 4)],
    b"PK\x05\x06": [(8, 2), (10, 2), (12, 4), (16, 4)],
}
ZIP_VALUES = [0, 1, 8, 9, 12, 14, 99, 0xFFFF, 0xFFFFFFFF, 2**31, 7, 30]


@st.composite
def zip_mutated(draw, seeds: list[bytes]) -> bytes:
    """ZIP header fields (method, flags, CRC, sizes, offsets) of a local, central or
    end-of-directory record overwritten, or byte-level mutations."""
    raw = bytearray(draw(st.sampled_from(seeds)))
    if draw(st.integers(0, 3)) == 0:
        return draw(mutated([bytes(raw)]))
    for _ in range(draw(st.integers(1, 2))):  # zipfile trusts the central directory most
        signature = draw(st.sampled_from([b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06"]))
        starts = [i for i in range(len(raw) - 3) if raw[i : i + 4] == signature]
        at = draw(st.sampled_from(starts))
        offset, size = draw(st.sampled_from(ZIP_HEADERS[signature]))
        value = draw(st.sampled_from(ZIP_VALUES)) & (256**size - 1)
        raw[at + offset : at + offset + size] = value.to_bytes(size, "little")
    return bytes(raw)


def npz_seeds(tmp: Path) -> list[tuple[object, bytes]]:
    seeds = []
    for save in (np.savez, np.savez_compressed):
        save(tmp / "h.npz", t=np.arange(9), x=np.arange(9), y=np.arange(9), p=np.arange(9) % 2)
        seeds.append((read_hardvs, (tmp / "h.npz").read_bytes()))
        save(tmp / "es.npz", pos=np.array([[1, 2, 3]]), neg=np.array([[4, 5, 6], [7, 8, 1]]))
        seeds.append((read_es_imagenet, (tmp / "es.npz").read_bytes()))
    return seeds


@settings(
    max_examples=EXAMPLES, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(data=st.data())
def test_npz_archives_mutated(tmp_path, data):
    """HARDVS / ES-ImageNet .npz (zipfile, zlib, numpy; in-process: Python-level parsers):
    events or a DataFormatError naming the file -- never NotImplementedError ("That
    compression method is not supported"), RuntimeError (encrypted), zlib.error, ..."""
    reader, seed = data.draw(st.sampled_from(npz_seeds(tmp_path)))
    path = tmp_path / "fuzzed.npz"
    path.write_bytes(data.draw(zip_mutated([seed])))
    try:
        reader(path)
    except DataFormatError as exc:
        assert str(exc).startswith(str(path)), exc


# -- readers that hand the file to a C library: one subprocess, so a crash fails a test --
WORKER = """
import faulthandler, sys
faulthandler.enable()
from spikeflow.data.io import SpikingAudioFile, read_asl_dvs, read_stmnist
from spikeflow.errors import DataFormatError, MissingExtraError

def spiking_audio(path):
    with SpikingAudioFile(path) as f:
        f.labels
        f.label_names
        for i in range(len(f)):
            f[i]

READERS = {"asl": read_asl_dvs, "stmnist": read_stmnist, "h5": spiking_audio}

# The compiled decoders (C: an out-of-bounds access could kill the process), each run
# against the numpy decoder: same events and sensor size, or the same error message.
from spikeflow.data.io import (
    read_aedat2, read_aedat31, read_atis_bin, read_evt2, read_evt3, use_decoder,
)

def both(read):
    def one(name, path):
        with use_decoder(name):
            try:
                rec = read(path)
                return ("ok", rec.events.tobytes(), rec.sensor_size)
            except (DataFormatError, MissingExtraError) as exc:
                return ("rejected", str(exc))

    def run(path):
        a, b = one("numpy", path), one("c", path)
        if a != b:
            raise AssertionError(f"numpy and C decoders differ: {str(a)[:300]} / {str(b)[:300]}")
        if a[0] == "rejected":
            raise DataFormatError(a[1])
    return run

READERS.update({
    "c:atis": both(read_atis_bin), "c:atis-any": both(lambda p: read_atis_bin(p, None)),
    "c:aedat2": both(read_aedat2), "c:aedat31": both(read_aedat31),
    "c:evt2": both(read_evt2), "c:evt3": both(read_evt3),
    "c:evt3-sized": both(lambda p: read_evt3(p, (640, 480))),
})
sys.stdout.write("ready\\n")  # imports done: the reads' timeout starts after this
sys.stdout.flush()
for line in sys.stdin:
    name, path = line.rstrip("\\n").split("\\t", 1)
    try:
        READERS[name](path)
        out = "ok\\t"
    except (DataFormatError, MissingExtraError) as exc:
        out = "rejected\\t" + str(exc)
    except BaseException as exc:
        out = "other\\t" + type(exc).__name__ + ": " + str(exc)
    sys.stdout.write(out.replace("\\n", " ") + "\\n")
    sys.stdout.flush()
"""


#: Seconds the reader worker may take to import its modules.
STARTUP_TIMEOUT = 600.0


class ReaderCrashed(AssertionError):
    """The reader killed the worker process (e.g. a segmentation fault in C code)."""


class IsolatedReaders:
    """Runs readers in one long-lived worker process: a reader that crashes the
    interpreter (SIGSEGV in scipy, libhdf5, ...) fails the test instead of killing
    pytest; a reader that does not answer within ``timeout`` s is reported as hung.
    Returns ``(status, message)`` with status ``ok``, ``rejected`` (DataFormatError or
    MissingExtraError), ``other`` (any other exception) or ``hung``."""

    def __init__(self, stderr_path: Path, timeout: float = 20.0) -> None:
        self.stderr_path, self.timeout, self.proc = stderr_path, timeout, None

    def _start(self) -> subprocess.Popen:
        self._err = open(self.stderr_path, "wb")  # closed in _stop()
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._err,
        )  # fmt: skip
        # Importing torch and spikeflow can take long on a loaded machine: the per-read
        # timeout (a hung reader) starts once the worker says it is ready.
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
        line = proc.stdout.readline().decode() if ready else ""
        if line != "ready\n":
            proc.kill()
            proc.wait()
            self._err.close()
            tail = self.stderr_path.read_bytes()[-1500:].decode(errors="replace")
            raise AssertionError(f"the reader worker did not start: {line!r}; stderr:\n{tail}")
        return proc

    def _stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc = None
            self._err.close()

    def read(self, reader: str, path: Path) -> tuple[str, str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{reader}\t{path}\n".encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self._stop()
            return "hung", f"no answer within {self.timeout} s"
        line = self.proc.stdout.readline().decode()
        if not line:
            code = self.proc.wait()
            self._stop()
            tail = self.stderr_path.read_bytes()[-1500:].decode(errors="replace")
            raise ReaderCrashed(
                f"reader {reader!r} crashed the process (exit code {code}) on {path} "
                f"({path.stat().st_size} bytes); its stderr ends with:\n{tail}"
            )
        status, _, message = line.rstrip("\n").partition("\t")
        return status, message

    def close(self) -> None:
        self._stop()


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    readers = IsolatedReaders(tmp_path_factory.mktemp("worker") / "stderr.txt")
    yield readers
    readers.close()


def asl_mat_seeds(tmp: Path) -> list[bytes]:
    """ASL-DVS-layout MAT v5 files written by scipy, uncompressed and compressed."""
    from scipy.io import savemat

    rng = np.random.default_rng(5)
    n = 12
    arrays = {
        "x": rng.integers(0, 240, (n, 1)),
        "y": rng.integers(0, 180, (n, 1)),
        "ts": np.sort(rng.integers(0, 10**5, (n, 1)), 0),
        "pol": rng.integers(0, 2, (n, 1)),
    }
    seeds = []
    for compress in (False, True):
        savemat(tmp / "seed.mat", arrays, do_compression=compress)
        seeds.append((tmp / "seed.mat").read_bytes())
    return seeds


def check_isolated(isolated, reader: str, path: Path, hang_ok: bool = False) -> str:
    status, message = isolated.read(reader, path)
    assert status != "other", f"{reader} raised a non-spikeflow error on {path}: {message}"
    if status == "hung":
        assert hang_ok, f"{reader} hung on {path}"
    elif status == "rejected":
        assert str(path) in message, message
    return status


def mat_elements(raw: bytes) -> list[bytes]:
    """The top-level elements of a valid little-endian MAT v5 file, each as an
    uncompressed miMATRIX element (tag included)."""
    out, pos = [], 128
    while pos < len(raw):
        kind, size = struct.unpack_from("<II", raw, pos)
        body = raw[pos + 8 : pos + 8 + size]
        out.append(zlib.decompress(body) if kind == 15 else raw[pos : pos + 8 + size])
        pos += 8 + size
    return out


def mat_file(header: bytes, elements: list[bytes], compress: bool) -> bytes:
    """A MAT v5 file of these miMATRIX elements, each wrapped in miCOMPRESSED or not."""
    if not compress:
        return header + b"".join(elements)
    packed = [zlib.compress(e) for e in elements]
    return header + b"".join(struct.pack("<II", 15, len(z)) + z for z in packed)


#: Values written over tag words: every type code up to 20 (scipy has no dtype for
#: 0, 8, 10, 11, 14, 15, 19, 20 and reads out of bounds for them), and odd sizes.
MAT_WORDS = [*range(21), 31, 32, 76, 255, 65535, 0x10004, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def mat_mutated(draw, seeds: list[bytes]) -> bytes:
    """A structure-aware mutation: tag words (8-byte aligned inside a matrix) of one
    variable overwritten, the variables then stored compressed or not; or byte-level
    mutations of the whole file (the container, the zlib streams)."""
    raw = draw(st.sampled_from(seeds))
    if draw(st.booleans()):
        return draw(mutated([raw]))
    elements = mat_elements(raw)
    k = draw(st.integers(0, len(elements) - 1))
    element = bytearray(elements[k])
    for _ in range(draw(st.integers(1, 2))):
        at = 8 * draw(st.integers(1, len(element) // 8 - 1)) + draw(st.sampled_from([0, 4]))
        element[at : at + 4] = struct.pack("<I", draw(st.sampled_from(MAT_WORDS)))
    elements[k] = bytes(element)
    return mat_file(raw[:128], elements, draw(st.booleans()))


@settings(
    max_examples=EXAMPLES, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(data=st.data())
def test_mat_files_mutated_in_a_subprocess(isolated, tmp_path, data):
    """ASL-DVS and ST-MNIST .mat files (scipy's C parser): events or DataFormatError,
    never a crash (a data element's type code without a dtype made scipy segfault) or
    another error."""
    pytest.importorskip("scipy")
    corpus = [("asl", seed) for seed in asl_mat_seeds(tmp_path)]
    corpus += [("stmnist", seed) for seed in real("stmnist-mat/sample_stmnist.mat")]
    reader = data.draw(st.sampled_from(sorted({r for r, _ in corpus})))
    path = tmp_path / "fuzzed.mat"
    path.write_bytes(data.draw(mat_mutated([s for r, s in corpus if r == reader])))
    check_isolated(isolated, reader, path)


def shd_seed(tmp: Path) -> bytes:
    h5py = pytest.importorskip("h5py")
    path = tmp / "seed.h5"
    rng = np.random.default_rng(6)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (3,), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (3,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(3):
            times[i] = np.sort(rng.uniform(0, 1, 8)).astype(np.float32)
            units[i] = rng.integers(0, 700, 8)
        f.create_dataset("labels", data=np.array([1, 2, 3], dtype=np.uint16))
        f.create_dataset("extra/keys", data=np.array([b"zero", b"one", b"two", b"three"]))
    return path.read_bytes()


@settings(
    max_examples=EXAMPLES, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(data=st.data())
def test_hdf5_audio_mutated_in_a_subprocess(isolated, tmp_path, data):
    """SHD/SSC HDF5 files (libhdf5 through h5py): events or DataFormatError, never a
    crash or another error. A hang is tolerated: a wrong object size in a global heap
    sends libhdf5 itself into an endless loop (HDFGroup/hdf5 #1707), which no check in
    Python can interrupt; the worker is then killed and restarted."""
    path = tmp_path / "fuzzed.h5"
    path.write_bytes(data.draw(mutated([shd_seed(tmp_path)])))
    check_isolated(isolated, "h5", path, hang_ok=True)


# -- the compiled decoders (_decoders.c), in the worker: a crash fails the test ---------
COMPILED = {
    "atis": ["c:atis", "c:atis-any"], "aedat2": ["c:aedat2"], "aedat31": ["c:aedat31"],
    "evt2": ["c:evt2"], "evt3": ["c:evt3", "c:evt3-sized"],
}  # fmt: skip


def _compiled_available() -> bool:
    try:
        compiled_decoders.set_decoder("c")
    except compiled_decoders.CompilerNotFoundError:
        return False
    finally:
        compiled_decoders.set_decoder("auto")
    return True


@pytest.mark.skipif(not _compiled_available(), reason="no C compiler for the compiled decoders")
@pytest.mark.parametrize("fmt", sorted(COMPILED))
@settings(
    max_examples=EXAMPLES, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(data=st.data())
def test_compiled_decoders_on_random_and_mutated_bytes(isolated, tmp_path, fmt, data):
    """Random bytes, mutations of valid files and random bodies behind a valid header,
    through the C decoders in a worker process: no crash, and the same events or the
    same error as the numpy decoder."""
    seeds = SEEDS[fmt][1]
    kind = data.draw(st.sampled_from(["mutated", "random", "body"]))
    if kind == "mutated":
        raw = data.draw(mutated(seeds))
    elif kind == "random":
        raw = data.draw(st.binary(max_size=512))
    else:
        head = {
            "atis": b"", "aedat2": aedat2_file("DVS128", []), "aedat31": AEDAT31_HEADER,
            "evt2": b"% evt 2.0\n", "evt3": b"% evt 3.0\n",
        }  # fmt: skip
        raw = head[fmt] + data.draw(st.binary(max_size=256))
    path = tmp_path / f"sample.{fmt}"
    path.write_bytes(raw)
    for reader in COMPILED[fmt]:
        check_isolated(isolated, reader, path)
