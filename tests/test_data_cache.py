"""The on-disk cache: round trips, keying, crash atomicity, corruption, parallel fill."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import run_forked
from spikeflow.data import NMNIST, ArrayCache, parallel_map
from spikeflow.data.cache import (
    CacheCorruptionWarning,
    atomic_write_bytes,
    decode_entry,
    encode_entry,
)
from spikeflow.data.transforms import Denoise, DropEvent, RefractoryPeriod
from spikeflow.errors import ConfigurationError, DataFormatError


def write_atis(path: Path, t, x, y, p) -> None:
    """Encode events in N-MNIST's 40-bit format (t < 2**23 µs)."""
    t = np.asarray(t, dtype=np.int64)
    raw = np.zeros((len(t), 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (np.asarray(p) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def fake_nmnist(root: Path, per_label: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split in ("Train", "Test"):
        for label in range(10):
            for k in range(per_label):
                n = int(rng.integers(50, 400))
                write_atis(root / split / str(label) / f"{k:05d}.bin",
                           np.sort(rng.integers(0, 300_000, n)), rng.integers(0, 34, n),
                           rng.integers(0, 34, n), rng.integers(0, 2, n))  # fmt: skip
    return root


@pytest.fixture
def cache(tmp_path):
    return ArrayCache(tmp_path / "cache", {"name": "unit", "rep": "frames", "T": 4})


def test_entry_round_trip_restores_dtype_and_compacts(tmp_path):
    for arr in (np.arange(24, dtype=np.int32).reshape(2, 3, 4),
                np.random.default_rng(0).random((3, 2)).astype(np.float32),
                np.array([-5, 7], dtype=np.int64), np.zeros((0, 2, 3, 3), dtype=np.int32),
                np.array([70000], dtype=np.int64)):  # fmt: skip
        raw = encode_entry(arr, {"k": 1})
        back = decode_entry(raw, {"k": 1})
        assert back.dtype == arr.dtype and back.shape == arr.shape
        np.testing.assert_array_equal(back, arr)
    small = encode_entry(np.ones((10, 2, 34, 34), dtype=np.int32), {"k": 1})
    assert len(small) < 10 * 2 * 34 * 34 + 400  # stored as uint8
    with pytest.raises(ConfigurationError, match="JSON"):
        encode_entry(np.ones(2), {"k": object()})


def test_hit_miss_and_keying(cache):
    calls = []

    def compute():
        calls.append(1)
        return np.full((2, 3), len(calls), dtype=np.int32)

    key = {"file": {"path": "/a.bin", "size": 10, "mtime_ns": 1}}
    first = cache.get_or_compute(key, compute)
    again = cache.get_or_compute(key, compute)
    assert len(calls) == 1 and np.array_equal(first, again)
    for other in ({"file": {"path": "/a.bin", "size": 11, "mtime_ns": 1}},
                  {"file": {"path": "/a.bin", "size": 10, "mtime_ns": 2}},
                  {"file": {"path": "/b.bin", "size": 10, "mtime_ns": 1}}):  # fmt: skip
        cache.get_or_compute(other, compute)
    assert len(calls) == 4
    other_ns = ArrayCache(cache.directory.parent, {"name": "unit", "rep": "frames", "T": 5})
    assert other_ns.load(key) is None and other_ns.directory != cache.directory
    assert (cache.directory / "namespace.json").is_file()


def test_crash_mid_write_leaves_only_a_temporary_that_is_never_read(cache, tmp_path):
    key = {"file": "crash"}
    cache.store({"file": "earlier"}, np.zeros(2))  # the namespace folder is set up
    script = textwrap.dedent(f"""
        import os, numpy as np
        from spikeflow.data.cache import ArrayCache
        c = ArrayCache({str(cache.directory.parent)!r}, {cache.namespace!r})
        os.replace = lambda a, b: os._exit(3)   # die after writing, before the rename
        c.store({key!r}, np.arange(1000, dtype=np.int32))
    """)
    code, output = run_forked(script)
    assert code == 3, output
    temps = list(cache.directory.rglob(".*.tmp"))
    assert len(temps) == 1 and temps[0].stat().st_size > 1000
    assert not cache.path_for(key).exists()
    assert cache.load(key) is None
    got = cache.get_or_compute(key, lambda: np.arange(5, dtype=np.int32))
    assert got.tolist() == [0, 1, 2, 3, 4]
    assert cache.clear_temporaries(older_than_s=0) == 1
    assert not list(cache.directory.rglob(".*.tmp"))


def test_clear_temporaries_goes_on_past_a_file_it_may_not_delete(cache, monkeypatch):
    """A temporary it may not delete (another user's, in a shared cache) is left and
    named in one warning; the others, before and after it, are still deleted."""
    cache.store({"file": "earlier"}, np.zeros(2))
    temps = [cache.directory / sub / f".{name}.tmp" for sub in ("aa", "bb") for name in "xyz"]
    for tmp in temps:
        tmp.parent.mkdir(exist_ok=True)
        tmp.write_bytes(b"partial")
    locked = {temps[1], temps[4]}
    unlink = Path.unlink

    def guarded(self, *args, **kwargs):
        if self in locked:
            raise PermissionError(13, "Permission denied", str(self))
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", guarded)
    with pytest.warns(RuntimeWarning, match=r"could not delete 2 of the 6 old temporary") as w:
        assert cache.clear_temporaries(older_than_s=0) == 4
    message = str(w[0].message)
    assert all(f"{tmp} (PermissionError: Permission denied)" in message for tmp in locked)
    assert {t for t in temps if t.exists()} == locked


def test_failed_write_cleans_up_and_does_not_publish(cache, monkeypatch):
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        cache.store({"k": 1}, np.ones(3))
    with pytest.warns(RuntimeWarning, match="could not write"):
        assert cache.get_or_compute({"k": 1}, lambda: np.ones(3)).tolist() == [1, 1, 1]
    monkeypatch.undo()
    assert not list(cache.directory.rglob(".*.tmp")) and cache.load({"k": 1}) is None


@pytest.mark.parametrize("damage", ["truncate", "flip_header", "flip_payload", "flip_digest",
                                    "empty", "other_key"])  # fmt: skip
def test_corrupt_entry_is_detected_and_rebuilt(cache, damage):
    key = {"file": "x"}
    value = np.arange(300, dtype=np.int32).reshape(3, 100)
    path = cache.store(key, value)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "empty":
        raw = bytearray()
    elif damage == "other_key":
        raw = bytearray(cache.store({"file": "y"}, value).read_bytes())
        # a valid entry of another key, placed at this key's path
    else:
        pos = {"flip_header": 20, "flip_payload": len(raw) - 100, "flip_digest": len(raw) - 1}
        raw[pos[damage]] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError):
        decode_entry(bytes(raw), cache.full_key(key), path)
    calls = []
    with pytest.warns(CacheCorruptionWarning, match="rebuilding"):
        got = cache.get_or_compute(key, lambda: calls.append(1) or value)
    assert calls == [1] and np.array_equal(got, value)
    np.testing.assert_array_equal(cache.load(key), value)  # rebuilt entry is valid


def test_dataset_cache_keys_every_parameter(tmp_path):
    root = fake_nmnist(tmp_path / "nmnist", per_label=1)
    cdir = tmp_path / "cache"

    def make(**kw):
        args = {"data_type": "frame", "frames_number": 4, "cache_dir": cdir, **kw}
        return NMNIST(root, **args)

    base = make()
    assert base.preprocess(workers=1, progress=False) == 10
    assert make().preprocess(workers=1, progress=False) == 0  # re-run: all hits
    for variant in ({"frames_number": 5}, {"split_by": "time"}, {"train": False},
                    {"event_transform": Denoise(1000)}, {"event_transform": Denoise(2000)},
                    {"duration": 50_000, "frames_number": None}):  # fmt: skip
        assert make(**variant).preprocess(workers=1, progress=False) == 10, variant
    sample = base.samples[0][0]
    os.utime(sample, ns=(1, 1))  # touched file -> its entry misses, the others hit
    assert make().preprocess(workers=1, progress=False) == 1
    with pytest.raises(ConfigurationError, match="random"):
        make(event_transform=DropEvent(0.1))
    hashed = make(cache_identity="content")
    assert hashed.preprocess(workers=1, progress=False) == 10
    assert hashed[0][0].shape == (4, 2, 34, 34)


def test_parallel_preprocessing_equals_serial(tmp_path):
    root = fake_nmnist(tmp_path / "nmnist", per_label=4)
    et = RefractoryPeriod(2000)
    serial = NMNIST(root, data_type="frame", frames_number=6, event_transform=et,
                    cache_dir=tmp_path / "serial")  # fmt: skip
    threads = NMNIST(root, data_type="frame", frames_number=6, event_transform=et,
                     cache_dir=tmp_path / "threads")  # fmt: skip
    procs = NMNIST(root, data_type="frame", frames_number=6, event_transform=et,
                   cache_dir=tmp_path / "procs")  # fmt: skip
    assert serial.preprocess(workers=1, progress=False) == 40
    assert threads.preprocess(workers=2, executor="thread", progress=False) == 40
    assert procs.preprocess(workers=2, executor="process", progress=False) == 40
    for i in range(len(serial)):
        a = serial.cache.load(serial.cache_entry_key(i))
        for other in (threads, procs):
            b = other.cache.load(other.cache_entry_key(i))
            np.testing.assert_array_equal(a, b)
    assert parallel_map(abs, [-3, 1, -2], workers=2, executor="thread", progress=True) == [3, 1, 2]
    with pytest.raises(ConfigurationError, match="executor"):
        parallel_map(abs, [1], executor="gpu")


def test_parallel_map_progress_is_tqdm_or_nothing(capsys):
    """tqdm is a required dependency: progress=True draws its bar (there is no other
    fallback to document), progress=False prints nothing."""
    assert parallel_map(abs, [-1, 2], workers=1, progress=True, desc="counting") == [1, 2]
    err = capsys.readouterr().err
    assert "counting" in err and "2/2" in err and "item" in err  # tqdm's "n/total [unit]"
    assert parallel_map(abs, [-1, 2], workers=1, progress=False) == [1, 2]
    assert capsys.readouterr().err == ""
    doc = parallel_map.__doc__ or ""
    assert "tqdm" in doc and "stderr" not in doc and "counter" not in doc


# -- user subclasses, unreadable caches, file modes (second review of the cache) --------
import torch  # noqa: E402

from spikeflow.data import to_frames  # noqa: E402
from spikeflow.data.representations import Representation, ToFrame  # noqa: E402
from spikeflow.data.transforms import EventTransform  # noqa: E402


class _Counts(Representation):
    """A user's representation that declares no parameters (the base class asks for
    ``__call__`` only)."""

    def __init__(self, T: int) -> None:
        self.T = T

    def __call__(self, rec):
        return to_frames(rec, self.T, "number")


class _OnlyOn(Representation):
    def __call__(self, rec):
        return to_frames(rec, 1, "number")[:, 1:]


class _Shift(EventTransform):
    """A user's transform whose parameter is not passed to ``super().__init__``."""

    def __init__(self, dx: int) -> None:
        super().__init__()
        self.dx = dx

    def apply(self, events, sensor_size):
        out = events.copy()
        out["x"] = np.minimum(out["x"].astype(np.int64) + self.dx, sensor_size[0] - 1)
        return out, sensor_size


def test_user_subclasses_get_keys_of_their_own_and_spikeflows_keep_theirs():
    # They shared one key ({"name": "representation"} / {"name": "_Shift"}): a cached
    # dataset served one's frames for the other.
    keys = [_Counts(4).cache_key(), _Counts(8).cache_key(), _OnlyOn().cache_key()]
    assert len({repr(k) for k in keys}) == 3
    assert _Counts(4).cache_key() == _Counts(4).cache_key()  # stable
    assert _Shift(0).cache_key() != _Shift(5).cache_key()
    assert _Shift(5).cache_key() == _Shift(5).cache_key()
    assert ToFrame(4).cache_key() == {"name": "frames", "frames_number": 4, "split_by": "number"}
    assert Denoise(1000).cache_key() == {"name": "Denoise", "filter_time": 1000}


def test_a_cached_dataset_tells_user_representations_and_transforms_apart(tmp_path):
    root = fake_nmnist(tmp_path / "nmnist", per_label=1)
    cdir = tmp_path / "cache"

    def first(**kw):
        return NMNIST(root, train=False, data_type="frame", cache_dir=cdir, **kw)[0][0]

    assert first(custom_integrate_function=_Counts(4)).shape[0] == 4
    assert first(custom_integrate_function=_Counts(8)).shape[0] == 8
    assert first(custom_integrate_function=_OnlyOn()).shape[:2] == (1, 1)
    for dx in (0, 5):
        cached = first(frames_number=2, event_transform=_Shift(dx))
        fresh = NMNIST(root, train=False, data_type="frame", frames_number=2,
                       event_transform=_Shift(dx))[0][0]  # fmt: skip
        assert np.array_equal(np.asarray(cached), np.asarray(fresh)), dx


def test_an_entry_a_read_only_cache_cannot_delete_or_read_is_computed(cache, monkeypatch):
    key, value = {"file": "x"}, np.arange(10)
    path = cache.store(key, value)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x40
    path.write_bytes(bytes(raw))
    original_unlink = Path.unlink

    def read_only(self, *args, **kwargs):
        if self == path:
            raise OSError(30, "Read-only file system", str(self))
        return original_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", read_only)
    monkeypatch.setattr(Path, "write_bytes", read_only)
    with pytest.warns(CacheCorruptionWarning, match="could not delete it"):
        assert cache.load(key) is None  # was: OSError from the unlink
    monkeypatch.undo()
    path.write_bytes(encode_entry(value, cache.full_key(key)))
    original_read = Path.read_bytes

    def unreadable(self):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return original_read(self)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.warns(RuntimeWarning, match="could not read cache entry"):
        got = cache.get_or_compute(key, lambda: value + 1)
    assert np.array_equal(got, value + 1)


def test_a_header_without_a_key_is_a_format_error(cache):
    import hashlib
    import json
    import struct

    from spikeflow.data.cache import _MAGIC

    head = json.dumps({"dtype": "<i8", "stored_dtype": "<i8", "shape": [1]}).encode()
    body = _MAGIC + struct.pack("<I", len(head)) + head + np.int64(7).tobytes()
    raw = body + hashlib.sha256(body).digest()  # a valid digest, no "key" in the header
    with pytest.raises(DataFormatError, match=r"unreadable header.*key"):
        decode_entry(raw, {"k": 1}, "entry.sfc")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_writes_get_the_mode_a_new_file_would_get(cache, tmp_path):
    import torch

    from spikeflow.training.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        entry = cache.store({"k": 1}, np.arange(3))
        checkpoint = save_checkpoint({"a": torch.zeros(1)}, tmp_path / "run" / "last.pt")
    finally:
        os.umask(old)
    # mkstemp's 0o600 made a cache shared between users unreadable to the others.
    assert (entry.stat().st_mode & 0o777, checkpoint.stat().st_mode & 0o777) == (0o644, 0o644)
    assert (cache.directory / "namespace.json").stat().st_mode & 0o777 == 0o644
    os.chmod(checkpoint, 0o640)  # a file that exists keeps its permissions
    save_checkpoint({"a": torch.ones(1)}, checkpoint)
    assert checkpoint.stat().st_mode & 0o777 == 0o640


class _SelfClosure(ToFrame):
    """A subclass with a closure over ``self`` and a sparse tensor among its attributes."""

    def __init__(self, n: int, scale: float) -> None:
        super().__init__(n)
        self.scale = scale
        self.post = lambda a: a * self.scale
        self.mask = torch.eye(3).to_sparse()

    def __call__(self, rec):
        return self.post(super().__call__(rec))


def test_keys_of_subclasses_with_self_closures_odd_tensors_and_set_literals(keys_across_processes):
    # A closure over self recursed for ever; a sparse tensor could not be read as numpy.
    a, b = _SelfClosure(4, 2.0).cache_key(), _SelfClosure(4, 3.0).cache_key()
    assert a != b and a == _SelfClosure(4, 2.0).cache_key()
    meta = _SelfClosure(4, 2.0)
    meta.mask = torch.empty(2, device="meta")
    meta.cache_key()
    # A set literal in a method hashed in the order of its repr, which varies with the
    # hash seed: a new cache folder on every run (conftest._KEYS_ACROSS_PROCESSES).
    keys = {found["set_literal"] for found in keys_across_processes}
    assert len(keys) == 1, keys


def test_a_file_system_that_refuses_chmod_still_gets_checkpoints_and_entries(
    cache, tmp_path, monkeypatch
):
    import torch as torch_

    from spikeflow.training.checkpoint import save_checkpoint

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)  # vfat without quiet, some CIFS mounts
    path = save_checkpoint({"a": torch_.zeros(1)}, tmp_path / "last.pt")
    assert torch_.load(path)["a"].shape == (1,)
    cache.store({"k": 2}, np.arange(3))
    np.testing.assert_array_equal(cache.load({"k": 2}), np.arange(3))


def test_kernels_decoders_and_datasets_share_one_cache_folder(monkeypatch, tmp_path):
    from spikeflow._cbuild import cache_root
    from spikeflow.data import default_cache_dir

    monkeypatch.delenv("SPIKEFLOW_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # The built kernels went to ~/.cache/spikeflow while the datasets used XDG's folder.
    assert cache_root() == default_cache_dir() == tmp_path / "spikeflow"
    monkeypatch.setenv("SPIKEFLOW_CACHE_DIR", str(tmp_path / "own"))
    assert cache_root() == default_cache_dir() == tmp_path / "own"


def test_content_hashes_are_recorded_so_a_later_run_hashes_nothing(tmp_path, monkeypatch):
    """``cache_identity="content"`` hashes each file once and records the hash in the
    cache's root with the file's stat signature: a new instance (a later run) hashes
    nothing while the files stay as they are, and hashes again a file rewritten with
    its size and mtime kept (as ``cp -p`` or ``rsync -t`` keep them; its ctime moves),
    which the default ``"stat"`` identity cannot see."""
    from spikeflow.data import cache as cache_module
    from spikeflow.data.datasets import base as base_module

    monkeypatch.setattr(cache_module, "RACY_WINDOW_S", 0.0)  # files written just now
    root = fake_nmnist(tmp_path / "nmnist", per_label=1)
    hashed = []
    real = base_module.file_identity

    def counted(path, content_hash=False):
        if content_hash:
            hashed.append(Path(path).name)
        return real(path, content_hash)

    monkeypatch.setattr(base_module, "file_identity", counted)

    def make(identity: str) -> NMNIST:
        return NMNIST(root, data_type="frame", frames_number=4, cache_dir=tmp_path / "cache",
                      cache_identity=identity)  # fmt: skip

    assert make("content").preprocess(workers=1, progress=False) == 10
    assert len(hashed) == 10
    hashed.clear()
    later = make("content")
    assert later.preprocess(workers=1, progress=False) == 0 and hashed == []  # recorded
    assert make("stat").preprocess(workers=1, progress=False) == 10
    path = later.samples[0][0]
    before, raw = path.stat(), bytearray(path.read_bytes())
    raw[0] = (raw[0] + 1) % 34  # the first event's x: same size, other content
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the mtime kept
    assert make("stat").preprocess(workers=1, progress=False) == 0  # stat: fooled
    again = make("content")
    assert again.preprocess(workers=1, progress=False) == 1 and hashed == [path.name]
    assert not np.array_equal(again[0][0].numpy(), make("stat")[0][0].numpy())


def test_a_content_record_holds_on_another_machine_mounting_the_same_files(tmp_path, monkeypatch):
    """Data and cache on a network file system shared by several machines: each client
    numbers the mount (``st_dev``) as it mounts it, so the same file shows another
    device number there. The recorded hashes still hold (a signature keyed on the
    device was hashed again on every machine), records written with the device
    number by earlier versions too, and a file rewritten in place is still hashed
    again."""
    import json

    from spikeflow.data import cache as cache_module
    from spikeflow.data.datasets import base as base_module

    monkeypatch.setattr(cache_module, "RACY_WINDOW_S", 0.0)
    root = fake_nmnist(tmp_path / "nmnist", per_label=1)
    hashed = []
    real = base_module.file_identity

    def counted(path, content_hash=False):
        if content_hash:
            hashed.append(Path(path).name)
        return real(path, content_hash)

    monkeypatch.setattr(base_module, "file_identity", counted)

    def run() -> int:
        data = NMNIST(root, data_type="frame", frames_number=4, cache_dir=tmp_path / "cache",
                      cache_identity="content")  # fmt: skip
        hashed.clear()
        data.preprocess(workers=1, progress=False)
        return len(hashed)

    assert run() == 10  # machine A hashes every file once
    records = sorted((tmp_path / "cache" / "content-hashes").rglob("*.json"))
    assert len(records) == 10
    stat = Path.stat

    class OtherMount:  # what machine B's stat shows: the same file, its own device number
        def __init__(self, st):
            self.st = st

        def __getattr__(self, name):
            return getattr(self.st, name) + (7 if name == "st_dev" else 0)

    monkeypatch.setattr(Path, "stat", lambda self, **kw: OtherMount(stat(self, **kw)))
    assert run() == 0  # machine B: every record holds
    for record in records:  # as an earlier version wrote them: with A's device number
        text = json.loads(record.read_text())
        text["signature"]["device"] = stat(Path(text["signature"]["path"])).st_dev
        record.write_text(json.dumps(text))
    assert run() == 0
    victim = NMNIST(root).samples[0][0]
    victim.write_bytes(victim.read_bytes())  # rewritten: its ctime moves
    assert run() == 1


def test_entry_paths_and_stored_keys_are_those_of_the_full_keys_json(cache):
    """An entry's file and stored key come from the canonical JSON of the namespace and
    the entry's key together (built from the namespace's JSON made once): entries
    written before, by that definition, are still found and read."""
    import hashlib

    from spikeflow.data.cache import canonical_key

    odd = ArrayCache(cache.directory.parent, {"name": "ü/x", "z": [1, (2, 3)], "a": {"b": None}})
    keys = [{"file": {"path": "/d/ä.bin", "size": 3, "mtime_ns": 7}},
            {"recording": {"size": 1}, "csv": {"sha256": "ab"}, "ts": 1.5}]  # fmt: skip
    for store, key in ((cache, keys[0]), (odd, keys[0]), (odd, keys[1])):
        text = canonical_key(store.full_key(key))
        digest = hashlib.sha256(text.encode()).hexdigest()
        path = store.directory / digest[:2] / f"{digest}.sfc"
        assert store.path_for(key) == path
        array = np.arange(6, dtype=np.int16).reshape(2, 3) - 2
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_entry(array, store.full_key(key)))
        loaded = store.load(key)
        assert loaded is not None and np.array_equal(loaded, array)
    with pytest.warns(CacheCorruptionWarning, match="another key"):  # the stored key checked
        other = cache.path_for(keys[1])
        other.parent.mkdir(parents=True, exist_ok=True)
        other.write_bytes(encode_entry(np.zeros(2), cache.full_key(keys[0])))
        assert cache.load(keys[1]) is None


def test_a_dataset_resolves_each_file_once_and_stats_it_at_every_read(tmp_path, monkeypatch):
    """Cache keys of a dataset's files: the resolved path (symbolic links followed, as
    file_identity gives it: caches written before still hit) looked up once per file and
    dataset, the size and mtime at every read (a file touched during the run misses)."""
    from spikeflow.data.cache import file_identity

    real = fake_nmnist(tmp_path / "real", per_label=1)
    (tmp_path / "link").symlink_to(real)
    data = NMNIST(tmp_path / "link", data_type="frame", frames_number=4,
                  cache_dir=tmp_path / "cache")  # fmt: skip
    path = data.samples[0][0]
    identity = data.source_identity(path)
    assert identity == file_identity(path) and identity["path"].startswith(str(real.resolve()))
    resolved = []
    original = Path.resolve

    def counted(self: Path, strict: bool = False) -> Path:
        resolved.append(self)
        return original(self, strict)

    monkeypatch.setattr(Path, "resolve", counted)
    computed = []
    compute = data.representation
    data.representation = lambda rec: computed.append(1) or compute(rec)
    first = [data[0][0] for _ in range(3)]
    assert len(computed) == 1 and not resolved  # resolved at the identity above
    os.utime(path, ns=(5, 5))
    assert data.source_identity(path)["mtime_ns"] == 5
    touched = data[0][0]
    assert len(computed) == 2 and not resolved
    assert all(torch.equal(x, touched) for x in first)


def test_a_content_hash_is_not_recorded_for_a_racily_fresh_file_nor_leaves_a_temporary(
    tmp_path, monkeypatch
):
    """A file changed within ``RACY_WINDOW_S`` of the recording is not recorded (where
    times are kept coarsely, a same-size rewrite then would keep its signature); a write
    that fails leaves no temporary file."""
    from spikeflow.data import cache as cache_module
    from spikeflow.data.cache import (
        file_identity,
        recall_content_identity,
        remember_content_identity,
        stat_signature,
    )

    path, memo = tmp_path / "a.bin", tmp_path / "memo"
    path.write_bytes(b"events")
    identity, signature = file_identity(path, True), stat_signature(path)
    remember_content_identity(path, identity, signature, memo)
    assert recall_content_identity(path, memo) is None and not memo.exists()
    real = cache_module.time.time_ns
    monkeypatch.setattr(cache_module.time, "time_ns", lambda: real() + 4 * 10**9)

    def disk_full(fd, mode):
        os.close(fd)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module.os, "fdopen", disk_full)
    remember_content_identity(path, identity, signature, memo)
    assert [p.name for p in memo.rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    monkeypatch.setattr(cache_module.time, "time_ns", lambda: real() + 4 * 10**9)
    remember_content_identity(path, identity, signature, memo)
    assert recall_content_identity(path, memo) == identity
    (record,) = memo.rglob("*.json")
    for damaged in (b"\xff\xfe{", b'{"signature": 1}', b"[]", record.read_bytes()[:40]):
        record.write_bytes(damaged)  # a torn or foreign record: hashed again, replaced
        assert recall_content_identity(path, memo) is None
    remember_content_identity(path, identity, signature, memo)
    assert recall_content_identity(path, memo) == identity


def test_a_link_pointed_elsewhere_during_a_run_is_a_miss(tmp_path):
    """A dataset's folder is a symbolic link pointed, during the run, at another copy
    whose files have the same names, sizes and mtimes but other events: the memo of
    resolved paths sees the other inode and resolves again, so frames come from the
    files read now (a stale hit of the first copy's frames otherwise)."""
    import shutil

    first = fake_nmnist(tmp_path / "v1", per_label=1)
    second = shutil.copytree(first, tmp_path / "v2", copy_function=shutil.copy2)
    for path in sorted(Path(second).rglob("*.bin")):
        before, raw = path.stat(), bytearray(path.read_bytes())
        raw[0] = (raw[0] + 1) % 34  # the first event's x: same size, other content
        path.write_bytes(bytes(raw))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    link = tmp_path / "link"
    link.symlink_to(first)
    data = NMNIST(link, data_type="frame", frames_number=4, cache_dir=tmp_path / "cache")
    old = data[0][0]
    link.unlink()
    link.symlink_to(second)
    now = data[0][0]
    fresh = NMNIST(second, data_type="frame", frames_number=4, cache_dir=tmp_path / "other")
    assert torch.equal(now, fresh[0][0]) and not torch.equal(now, old)
    assert data.source_identity(data.samples[0][0])["path"].startswith(str(Path(second).resolve()))


def test_entries_are_not_fsynced_but_other_atomic_writes_are(cache, tmp_path, monkeypatch):
    """An entry a power loss cuts short fails its digest and is rebuilt (above), so
    entries skip the fsyncs that made filling a frame cache 14x slower; files nothing
    checks (configs, logs, listings) keep them."""
    cache.store({"file": "earlier"}, np.zeros(2))  # the namespace manifest is written
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    path = cache.store({"file": "x"}, np.arange(10))
    assert synced == [] and cache.load({"file": "x"}).tolist() == list(range(10))
    assert not list(path.parent.glob(".*.tmp"))
    atomic_write_bytes(tmp_path / "config.json", b"{}")
    assert len(synced) >= 1 and (tmp_path / "config.json").read_bytes() == b"{}"
