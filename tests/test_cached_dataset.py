"""DiskCachedDataset / MemoryCachedDataset: samples come back exactly (every kind of
value), the wrapped dataset is read once, transforms run after the cache, damaged or
missing entries are rebuilt, a sample is one atomic entry, and each dataset has its own
folder."""

from __future__ import annotations

import os
import pickle
import shutil
import time
import warnings
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing  # registers ForkingPickler's reductions of tensors

from conftest import require_shared_data
from spikeflow.data import (
    NMNIST,
    DiskCachedDataset,
    EventRecording,
    MemoryCachedDataset,
    ToFrame,
    make_events,
)
from spikeflow.data.cache import ArrayCache, CacheCorruptionWarning
from spikeflow.data.cached_dataset import STALE_AFTER_S
from spikeflow.errors import ConfigurationError


class Kinds(torch.utils.data.Dataset):
    """One sample of each kind of value the cache stores."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int):
        t = np.array([3, 9, 12]) * (i + 1)
        events = make_events(t, np.array([1, 2, 3]), np.array([0, 5, 6]), np.array([1, 0, 1]))
        samples = [
            (torch.randn(2, 3, generator=torch.Generator().manual_seed(i)).half() * self.scale,
             i),
            (torch.tensor([[1.5, -2.25]], dtype=torch.bfloat16) * self.scale, np.int64(7)),
            (np.array([-3, 0, 120], dtype=np.int8), torch.tensor([0.0, 1.0])),
            (EventRecording(events, (34, 34, 2), "file.bin"), 2.5),
            (torch.tensor([True, False, True]), True),
        ]  # fmt: skip
        return samples[i]


def same(a, b) -> bool:
    if isinstance(a, EventRecording):
        return (isinstance(b, EventRecording) and a.events.dtype == b.events.dtype
                and a.events.tobytes() == b.events.tobytes()
                and a.sensor_size == b.sensor_size and a.source == b.source)  # fmt: skip
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def test_every_kind_of_value_comes_back_exactly_from_a_fresh_instance(tmp_path, monkeypatch):
    first = DiskCachedDataset(Kinds(), tmp_path)
    direct = [Kinds()[i] for i in range(5)]
    for i in range(5):
        assert all(same(a, b) for a, b in zip(direct[i], first[i])), i

    def unreadable(self, i):
        raise AssertionError("the wrapped dataset was read again")

    monkeypatch.setattr(Kinds, "__getitem__", unreadable)
    again = DiskCachedDataset(Kinds(), tmp_path)
    for i in range(5):
        assert all(same(a, b) for a, b in zip(direct[i], again[i])), i
    assert same(direct[4][0], again[-1][0])  # negative indices


def test_another_dataset_gets_its_own_folder_and_reset_clears_only_its_own(tmp_path):
    one, two = DiskCachedDataset(Kinds(1.0), tmp_path), DiskCachedDataset(Kinds(2.0), tmp_path)
    assert one.cache.directory != two.cache.directory
    assert torch.equal(two[1][0], Kinds(2.0)[1][0])  # not the scale-1 entry
    one[0]
    DiskCachedDataset(Kinds(2.0), tmp_path, reset_cache=True)
    assert not two.cache.directory.exists() and one.cache.directory.exists()


def test_damaged_and_missing_entries_are_rebuilt(tmp_path):
    data = DiskCachedDataset(Kinds(), tmp_path)
    expected = data[0]
    entry = data.cache.path_for({"index": 0, "copy": 0})
    raw = bytearray(entry.read_bytes())
    raw[-40] ^= 0xFF
    entry.write_bytes(bytes(raw))
    with pytest.warns(CacheCorruptionWarning):
        assert all(same(a, b) for a, b in zip(expected, data[0]))
    entry.unlink()
    assert all(same(a, b) for a, b in zip(expected, data[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all(same(a, b) for a, b in zip(expected, data[0]))  # whole again


class Listed(torch.utils.data.Dataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def test_edge_values_come_back_exactly_and_alike_at_the_first_read(tmp_path):
    ring = np.zeros((), dtype=[("t", "<i8"), ("xy", ">u2", (2,))])
    ring["t"], ring["xy"] = 2**40, [3, 65000]
    events = np.zeros(2, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
    items = [
        (torch.tensor(3.0), torch.tensor(7)),  # 0-d tensors stay 0-d
        (ring, 1 + 2j),  # a 0-d structured array with a sub-array field; a complex
        (torch.tensor([1 + 2j, -3j]).conj(), torch.tensor([1.5, -2]).to(torch.float8_e4m3fn)),
        (EventRecording(events, (np.int64(34), 34, 2), Path("rec.bin")), np.uint64(2**64 - 1)),
        ((np.arange(3), {"imu": torch.ones(2), "n": 4}), [None, (1, 2.5)]),  # Tonic's tuples
    ]
    expected = [
        (torch.tensor(3.0), torch.tensor(7)),
        (ring, 1 + 2j),
        (torch.tensor([1 - 2j, 3j]), items[2][1]),
        (EventRecording(events, (34, 34, 2), "rec.bin"), np.uint64(2**64 - 1)),
        items[4],
    ]
    first = DiskCachedDataset(Listed(items), tmp_path)
    again = DiskCachedDataset(Listed(items), tmp_path)
    for i, pair in enumerate(expected):
        for got in (first[i], again[i]):
            for a, b in zip(pair, got):
                if isinstance(a, torch.Tensor) and a.dtype == torch.float8_e4m3fn:
                    assert b.dtype == a.dtype and torch.equal(b.view(torch.uint8),
                                                              a.view(torch.uint8))  # fmt: skip
                elif i == 4:
                    assert repr(a) == repr(b)  # the containers, their types and values
                else:
                    assert same(a, b) and getattr(a, "shape", 0) == getattr(b, "shape", 0), i
    assert same(again[torch.tensor(1)][0], ring) and same(again[np.int16(-5)][0], torch.tensor(3.0))
    with pytest.raises(
        ConfigurationError, match=r"index must be an integer .*; got tensor\(True\)"
    ):
        again[torch.tensor(True)]
    with pytest.raises(ConfigurationError, match=r"DiskCachedDataset: dataset\[0\] returned "
                       "tuple of length 3"):  # fmt: skip
        DiskCachedDataset(Listed([(1, 2, 3)]), tmp_path)[0]


def test_an_entry_does_not_hold_the_dataset_identity(tmp_path):
    big = Listed([(np.zeros(1), 0)] * 2000)  # its identity lists 2000 items
    data = DiskCachedDataset(big, tmp_path)
    data[0]
    assert data.cache.path_for({"index": 0, "copy": 0}).stat().st_size < 2000
    assert DiskCachedDataset(Listed([(np.zeros(1), 0)] * 1999), tmp_path).cache.directory != (
        data.cache.directory
    )


def test_a_sample_written_by_two_writers_at_once_is_one_of_theirs(tmp_path, monkeypatch):
    draws = iter(range(3, 100))

    class Random(torch.utils.data.Dataset):  # a random number of events each read
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int):
            n = next(draws)
            ev = np.zeros(n, dtype=[("t", "<i8"), ("x", "<i2")])
            ev["t"] = np.arange(n)
            return ev, n

    store, busy = ArrayCache.store, []

    def racing_store(self, key, array):  # the other writer runs amid this one's writes
        path = store(self, key, array)
        if not busy:
            busy.append(1)
            other[0]
        return path

    monkeypatch.setattr(ArrayCache, "store", racing_store)
    one, other = DiskCachedDataset(Random(), tmp_path), DiskCachedDataset(Random(), tmp_path)
    events, n = one[0]
    monkeypatch.setattr(ArrayCache, "store", store)
    events, n = DiskCachedDataset(Random(), tmp_path)[0]  # whichever write came last
    assert len(events) == n and n in (3, 4) and events["t"].tolist() == list(range(n))


class Noisy(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        return torch.rand(4), i


def test_transforms_run_after_the_cache_and_copies_keep_n_draws(tmp_path):
    calls = []

    def transform(x):
        calls.append(1)
        return x * 2

    # Tonic's argument order: reset_cache, transform, target_transform, transforms, copies
    data = DiskCachedDataset(Noisy(), tmp_path, False, transform, lambda y: y + 10, None, 3)
    torch.manual_seed(0)
    seen = {tuple(data[0][0].tolist()) for _ in range(40)}
    assert len(seen) == 3 and len(calls) == 40  # 3 cached draws, transformed at each read
    assert data[1][1] == 11
    one = DiskCachedDataset(Noisy(), tmp_path / "one")
    assert torch.equal(one[0][0], one[0][0])


def test_memory_cache_reads_the_wrapped_dataset_once():
    reads = []

    class Counted(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int):
            reads.append(i)
            return torch.full((2,), float(i)), i

    data = MemoryCachedDataset(Counted(), "cpu", transform=lambda x: x + 1,
                               transforms=lambda x, y: (x * 10, -y))  # fmt: skip
    values = [data[i][0].tolist() for i in (0, 1, 0, 2, 1)]
    assert values == [[10, 10], [20, 20], [10, 10], [30, 30], [20, 20]]
    assert reads == [0, 1, 2] and len(data) == 3 and data[2][1] == -2
    with pytest.raises(
        IndexError, match="MemoryCachedDataset: index 3 is out of range for 3 samples"
    ):
        data[3]
    with pytest.raises(ConfigurationError, match=r"MemoryCachedDataset: dataset\[0\] returned "
                       r"int; a \(data, target\) pair"):  # fmt: skip
        MemoryCachedDataset(Listed([7]))[0]


def test_bad_arguments_and_values_are_named(tmp_path):
    with pytest.raises(ConfigurationError, match="num_copies must be an integer >= 1"):
        DiskCachedDataset(Kinds(), tmp_path, num_copies=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="is a file"):
        DiskCachedDataset(Kinds(), tmp_path / "file")
    with pytest.raises(ConfigurationError, match="transform must be callable"):
        DiskCachedDataset(Kinds(), tmp_path, transform=3)
    with pytest.raises(ConfigurationError, match="map-style dataset"):
        MemoryCachedDataset(iter([]))

    class Named(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int):
            return torch.zeros(1), "seven"

    with pytest.raises(ConfigurationError, match="target is a str, which cannot be cached"):
        DiskCachedDataset(Named(), tmp_path)[0]


def test_real_nmnist_events_through_the_cache_and_dataloader_workers(tmp_path):
    root = require_shared_data("nmnist-small")
    nmnist = torch.utils.data.Subset(NMNIST(root, train=False), range(6))
    frames = ToFrame(4)
    data = DiskCachedDataset(nmnist, tmp_path, transform=frames)
    assert data.cache.directory.name.startswith("cached-Subset")
    loader = torch.utils.data.DataLoader(data, batch_size=3, num_workers=2)
    batches = [x for x, _ in loader]
    direct = [torch.as_tensor(frames(nmnist[i][0])) for i in range(6)]
    assert torch.equal(torch.cat(batches), torch.stack(direct))
    recording, label = DiskCachedDataset(nmnist, tmp_path)[5]  # written by the workers
    assert label == nmnist[5][1] and recording.events.tobytes() == nmnist[5][0].events.tobytes()


def test_a_cache_that_cannot_be_written_warns_once_per_dataset(tmp_path, monkeypatch):
    def read_only(self, key, array):
        raise PermissionError(13, "Permission denied", str(self.directory))

    monkeypatch.setattr(ArrayCache, "store", read_only)
    for _ in range(2):  # each dataset object warns once, naming the folder
        data = DiskCachedDataset(Kinds(), tmp_path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                for i in range(len(data)):
                    assert all(same(a, b) for a, b in zip(Kinds()[i], data[i])), i
        messages = [str(w.message) for w in caught]
        assert len(messages) == 1, messages
        assert str(data.cache.directory) in messages[0] and "without caching" in messages[0]
        assert caught[0].category is RuntimeWarning


def test_reset_while_another_process_writes_an_entry(tmp_path, monkeypatch):
    data, writer = DiskCachedDataset(Kinds(), tmp_path), DiskCachedDataset(Kinds(), tmp_path)
    for i in range(3):
        data[i]
    folder = data.cache.directory
    old = {p.parent.name for p in folder.glob("*/*.sfc")}
    late = writer.cache.path_for({"index": 3, "copy": 0})
    assert len(old) == 3 and late.parent.name not in old  # a folder the removal did not list
    rmdir, wrote = os.rmdir, []

    def busy_rmdir(*args, **kwargs):  # another writer's entry lands amid the removal
        if not wrote:
            wrote.append(1)
            writer[3]
        return rmdir(*args, **kwargs)

    monkeypatch.setattr(os, "rmdir", busy_rmdir)
    fresh = DiskCachedDataset(Kinds(), tmp_path, reset_cache=True)
    monkeypatch.setattr(os, "rmdir", rmdir)
    assert wrote and [p.name for p in tmp_path.iterdir()] == [folder.name]  # no leftovers
    assert sorted(folder.glob("*/*.sfc")) == [late]  # the old entries went, the new one stayed
    assert all(same(a, b) for a, b in zip(Kinds()[3], fresh[3]))
    DiskCachedDataset(Kinds(), tmp_path / "new", reset_cache=True)  # nothing to delete
    monkeypatch.setattr(shutil, "rmtree", lambda path, ignore_errors=False: None)
    with pytest.warns(RuntimeWarning, match="could not delete all of .*deleting"):
        DiskCachedDataset(Kinds(), tmp_path, reset_cache=True)
    assert not folder.exists()  # reset all the same: the old folder was renamed


class Mutable:
    def __init__(self) -> None:
        self.seen = [0]


def test_in_place_transforms_do_not_change_the_cache(tmp_path):
    def sample():
        events = make_events(np.array([1, 5]), np.array([2, 3]), np.array([0, 1]), np.array([1, 0]))
        return {"rec": EventRecording(events, (34, 34, 2)), "frames": [torch.ones(2, 3)]}, np.ones(
            2
        )

    def transform(data):  # what a careless augmentation does
        if isinstance(data, Mutable):
            data.seen.append(1)
            return len(data.seen)
        data["rec"].events["x"] += 1
        data["frames"][0].mul_(2)
        return data["rec"].events["x"].tolist(), data["frames"][0].sum().item()

    def target_transform(target):
        target += 1
        return target.tolist()

    def both(data, target):
        target[0] *= 10
        return transform(data), target.tolist()

    original = sample()
    for make in (MemoryCachedDataset, lambda d, **kw: DiskCachedDataset(d, tmp_path, **kw)):
        for kwargs, pair in (
            ({"transform": transform, "target_transform": target_transform}, [2.0, 2.0]),
            ({"transforms": both}, [10.0, 1.0]),
        ):
            data = make(Listed([original, sample()]), **kwargs)
            for _ in range(2):  # two epochs see the same
                assert [data[0], data[1]] == [(([3, 4], 12.0), pair)] * 2
    memory = MemoryCachedDataset(Listed([(Mutable(), 0)]), transform=transform)
    assert [memory[0][0] for _ in range(2)] == [2, 2]  # other objects: deep-copied
    assert original[0]["rec"].events["x"].tolist() == [2, 3] and original[1].tolist() == [1, 1]
    untouched = MemoryCachedDataset(Listed([original]))  # no transform: no copy
    assert untouched[0][0] is untouched[0][0] is original[0]


class Counter(torch.utils.data.Dataset):
    """A random dataset's stand-in: each read is a new value, 0, 1, 2, ..."""

    def __init__(self) -> None:
        self.n = 0

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int):
        self.n += 1
        return self.n - 1, 0


def test_an_explicit_generator_picks_the_copies_reproducibly(tmp_path, monkeypatch):
    def first_reads(folder, generator) -> list[int]:  # copy k holds the k-th new value
        data = DiskCachedDataset(Counter(), folder, num_copies=4, generator=generator)
        return [data[0][0] for _ in range(12)]

    def expected(seed: int) -> list[int]:  # the draws, each copy named by its first read
        g, order = torch.Generator().manual_seed(seed), {}
        return [order.setdefault(int(torch.randint(4, (), generator=g)), len(order))
                for _ in range(12)]  # fmt: skip

    state = torch.get_rng_state()
    runs = [first_reads(tmp_path / f"{k}", torch.Generator().manual_seed(5)) for k in range(2)]
    assert runs[0] == runs[1] == expected(5) != expected(6) and len(set(runs[0])) == 4
    assert torch.equal(torch.get_rng_state(), state)  # the global generator left alone
    # In a DataLoader worker: the worker's seed, not the copy of `generator` it holds.
    given = torch.Generator().manual_seed(5)
    info = type("WorkerInfo", (), {"seed": 1234})
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)
    assert first_reads(tmp_path / "worker", given) == expected(1234) != expected(5)
    assert torch.equal(given.get_state(), torch.Generator().manual_seed(5).get_state())
    # What a DataLoader worker gets: the generator's state as bytes, not as a tensor in
    # shared memory, which a spawned worker failed to rebuild ("unable to resize file").
    data = DiskCachedDataset(Counter(), tmp_path / "pickled", num_copies=4, generator=given)
    raw = bytes(ForkingPickler.dumps(data))
    assert b"rebuild_storage" not in raw
    assert torch.equal(pickle.loads(raw).generator.get_state(), given.get_state())
    with pytest.raises(ConfigurationError, match=r"generator must be a torch\.Generator"):
        DiskCachedDataset(Noisy(), tmp_path, num_copies=2, generator=5)


def test_what_crashed_processes_left_is_removed_at_construction_when_old(tmp_path):
    data = DiskCachedDataset(Kinds(), tmp_path)
    entry = data.cache.store({"index": 0, "copy": 0}, np.zeros(3, np.uint8))
    folder, hour_ago = data.cache.directory, time.time() - STALE_AFTER_S - 60
    left = {  # a crashed write's temporary file, a crashed reset's renamed folder
        "old": [entry.with_name(f".{entry.name}.x1.tmp"), tmp_path / f".{folder.name}.a1.deleting"],
        "new": [entry.with_name(f".{entry.name}.x2.tmp"), tmp_path / f".{folder.name}.a2.deleting"],
    }  # fmt: skip
    for age, (tmp, trash) in left.items():
        tmp.write_bytes(b"half")
        (trash / "ab").mkdir(parents=True)
        (trash / "ab" / "e.sfc").write_bytes(b"x")
        if age == "old":
            for path in (tmp, trash):
                os.utime(path, (hour_ago, hour_ago))
    other = tmp_path / ".cached-Other-0123456789abcdef.a3.deleting"  # another dataset's
    other.mkdir()
    os.utime(other, (hour_ago, hour_ago))
    DiskCachedDataset(Kinds(), tmp_path)
    assert not any(p.exists() for p in left["old"])
    assert all(p.exists() for p in [*left["new"], other, entry])  # maybe still in use
    # The folder is listed for temporaries at most once an hour (it may be huge).
    tmp = left["old"][0]
    tmp.write_bytes(b"half")
    os.utime(tmp, (hour_ago, hour_ago))
    DiskCachedDataset(Kinds(), tmp_path)
    assert tmp.exists()
    os.utime(folder / ".last-clean-up", (hour_ago, hour_ago))
    DiskCachedDataset(Kinds(), tmp_path)
    assert not tmp.exists() and entry.exists()


class FilesByPath(torch.utils.data.Dataset):
    """A dataset as Tonic's are written: its files' paths in a list, read at each item."""

    def __init__(self, root: Path) -> None:
        self.data = sorted(str(p) for p in root.glob("*.npy"))
        self.targets = list(range(len(self.data)))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return np.load(self.data[i]), self.targets[i]


def test_a_dataset_naming_its_files_misses_once_a_file_changes(tmp_path, monkeypatch):
    """A dataset that keeps its files' paths (Tonic's all do) is keyed by each file's
    size and mtime, not by its path alone: a file rewritten in place (same name, same
    size, new content) makes the dataset a miss, while unchanged files keep it a hit.
    (Tonic's own DiskCachedDataset keys by index only, SpikingJelly's frame folders by
    the frame options only: both would return the old sample.)"""
    data = tmp_path / "data"
    data.mkdir()
    for k in range(3):
        np.save(data / f"{k}.npy", np.full(4, k, np.int16))

    def first_values() -> list[int]:
        cached = DiskCachedDataset(FilesByPath(data), tmp_path / "cache")
        return [int(cached[k][0][0]) for k in range(3)]

    assert first_values() == [0, 1, 2]
    reads = []
    original = FilesByPath.__getitem__
    monkeypatch.setattr(FilesByPath, "__getitem__",
                        lambda self, i: reads.append(i) or original(self, i))  # fmt: skip
    assert first_values() == [0, 1, 2] and reads == []  # unchanged: every read a hit
    path = data / "1.npy"
    before = path.stat()
    np.save(path, np.full(4, 7, np.int16))  # same name, same size, new content
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    assert path.stat().st_size == before.st_size
    assert first_values() == [0, 7, 2] and reads == [0, 1, 2]  # the dataset's new folder


class FilesInFolder(torch.utils.data.Dataset):
    """A dataset that keeps only its folder and lists the files itself at each read."""

    def __init__(self, root: str | Path) -> None:
        self.root = root

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int):
        return np.load(os.path.join(self.root, f"{i}.npy")), i


def twin_copies(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders of three .npy files with the same names, sizes and mtimes (as
    ``cp -p`` or ``rsync -t`` leave them) but other values: 0, 1, 2 and 10, 11, 12."""
    first, second = tmp_path / "v1", tmp_path / "v2"
    for folder, base in ((first, 0), (second, 10)):
        folder.mkdir()
        for k in range(3):
            np.save(folder / f"{k}.npy", np.full(4, base + k, np.int16))
            os.utime(folder / f"{k}.npy", ns=(1_700_000_000_000_000_000,) * 2)
    return first, second


@pytest.mark.parametrize("holds", ["files", "folder"])
def test_a_link_pointed_at_another_copy_is_a_miss(tmp_path, holds):
    """The dataset's folder is a symbolic link, pointed between two runs at another copy
    whose files have the same names, sizes and mtimes: its key follows the real files,
    so the second run reads the new copy (a key by the link's path, as before, was a
    stale hit returning the first copy's values)."""
    first, second = twin_copies(tmp_path)
    link = tmp_path / "data"
    link.symlink_to(first)
    make = FilesByPath if holds == "files" else (lambda root: FilesInFolder(str(root)))

    def values() -> list[int]:
        cached = DiskCachedDataset(make(link), tmp_path / "cache")
        return [int(cached[k][0][0]) for k in range(3)]

    assert values() == [0, 1, 2]
    link.unlink()
    link.symlink_to(second)
    assert values() == [10, 11, 12]
    link.unlink()
    link.symlink_to(first)
    assert values() == [0, 1, 2]  # the first copy's entries again: a hit, not a rebuild
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_a_relative_path_counts_by_the_folder_it_names_now(tmp_path, monkeypatch):
    """A relative path counts by what it names from the working directory: from
    another folder holding another copy it is another key; the same real data named
    by a relative or an absolute path, directly or through a link, is one key."""
    from spikeflow.data.sliced_dataset import dataset_key

    first, second = twin_copies(tmp_path)
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "data").symlink_to(first)
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "data").symlink_to(second)
    keys = {}
    for run in ("run1", "run2"):
        monkeypatch.chdir(tmp_path / run)
        for name, dataset in (("folder", FilesInFolder("./data")),
                              ("files", FilesByPath(Path("data")))):  # fmt: skip
            keys[run, name] = dataset_key(dataset)
            real = first if run == "run1" else second
            same = FilesInFolder(str(real)) if name == "folder" else FilesByPath(real)
            assert keys[run, name] == dataset_key(same)
    assert keys["run1", "folder"] != keys["run2", "folder"]
    assert keys["run1", "files"] != keys["run2", "files"]
    monkeypatch.chdir(tmp_path / "run1")
    cached = DiskCachedDataset(FilesInFolder("./data"), tmp_path / "cache")
    assert [int(cached[k][0][0]) for k in range(3)] == [0, 1, 2]
    monkeypatch.chdir(tmp_path / "run2")
    cached = DiskCachedDataset(FilesInFolder("./data"), tmp_path / "cache")
    assert [int(cached[k][0][0]) for k in range(3)] == [10, 11, 12]


def test_the_key_of_real_paths_is_the_one_earlier_versions_wrote(tmp_path, monkeypatch):
    """Paths without links keep the key format they always had (an existing cache of
    such a dataset stays a hit): a file by its absolute path, size and mtime, a folder
    by the repr of its absolute path."""
    from spikeflow.data.sliced_dataset import dataset_key

    first, _ = twin_copies(tmp_path)
    real = Path(os.path.realpath(first))
    files = dataset_key(FilesByPath(real))["attributes"]["data"]
    assert files == [{"file": str(real / f"{k}.npy"), "size": 136,
                      "mtime_ns": 1_700_000_000_000_000_000} for k in range(3)]  # fmt: skip
    assert dataset_key(FilesInFolder(str(real)))["attributes"]["root"] == repr(str(real))
    assert dataset_key(FilesInFolder(real))["attributes"]["root"] == repr(real)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train").mkdir()  # no separator nor dot, an attribute: looked up
    assert dataset_key(FilesInFolder("train"))["attributes"]["root"] == repr(
        os.path.realpath(tmp_path / "train")
    )


def test_a_bare_relative_folder_name_counts_by_the_folder_it_names_now(tmp_path, monkeypatch):
    """``root="data"`` (no separator, no dot) names ``./data`` as much as ``"./data"``
    does: run from another folder holding another copy it is another key (it was kept
    as the string "'data'", one key from every folder: a stale hit returning the first
    copy's values). Inside a list such a string is a label, not looked up."""
    from spikeflow.data.sliced_dataset import dataset_key

    first, second = twin_copies(tmp_path)
    for run, real in (("run1", first), ("run2", second)):
        (tmp_path / run).mkdir()
        (tmp_path / run / "data").symlink_to(real)
    monkeypatch.chdir(tmp_path / "run1")
    assert dataset_key(FilesInFolder("data")) == dataset_key(FilesInFolder(str(first)))
    cached = DiskCachedDataset(FilesInFolder("data"), tmp_path / "cache")
    assert [int(cached[k][0][0]) for k in range(3)] == [0, 1, 2]
    monkeypatch.chdir(tmp_path / "run2")
    assert dataset_key(FilesInFolder("data")) == dataset_key(FilesInFolder(str(second)))
    cached = DiskCachedDataset(FilesInFolder("data"), tmp_path / "cache")
    assert [int(cached[k][0][0]) for k in range(3)] == [10, 11, 12]
    listed = FilesInFolder(str(second))
    listed.labels = ["data", "cat"]  # names in a list: never looked up
    assert dataset_key(listed)["attributes"]["labels"] == ["'data'", "'cat'"]
    assert dataset_key(FilesInFolder("cat"))["attributes"]["root"] == "'cat'"  # names none


def test_a_path_with_the_alternative_separator_is_looked_up(tmp_path, monkeypatch):
    """On Windows ``os.sep`` is a backslash and ``/`` the alternative separator: a
    file listed as ``"data/sample0"`` (no dot) was taken for a name, never looked up,
    so a rewritten file kept its key. Emulated here by setting ``os.sep``/``os.altsep``
    (``os.path`` keeps its own)."""
    from spikeflow.data.sliced_dataset import dataset_key

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sample0").write_bytes(b"abc")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "sep", "\\")
    monkeypatch.setattr(os, "altsep", "/")
    key = dataset_key([("data/sample0", 0)])  # a list of (data, target) pairs
    real = os.path.realpath(tmp_path / "data" / "sample0")
    assert key["items"][0][0] == {"file": real, "size": 3, "mtime_ns": os.stat(real).st_mtime_ns}
    assert key["items"][0][1] == "0"
    assert dataset_key([("sample0", 0)])["items"][0][0] == "'sample0'"  # a name: not looked up
