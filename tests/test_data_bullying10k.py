"""Bullying10K (spikeflow.data.Bullying10K, read_bullying10k) on roots built here.

No sample of the real dataset is in ../shared/data, so the tests write files in the
published format: each sample an ``np.save`` of the list of dv-python event packets
(structured ``timestamp <i8, x <i2, y <i2, polarity i1`` plus dv's padding fields), which
NumPy stores as a 1-D object array when the packets differ in length (a pickle in the
``.npy``; also with NumPy 1.x's module name ``numpy.core.multiarray``) and as a 2-D
structured array when they do not; under ``<action>/<sub-folder>/`` as the ten official
``<action>.zip`` archives hold them. The reference is SpikingJelly 2.0's own converter
(``create_raw_from_extracted`` and ``_convert_npy_to_npz`` of
``spikingjelly/datasets/bullying10k.py``, compiled from the installed source, run with
sorted directory listings) and the events its ``.npz`` files hold.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import math
import multiprocessing
import os
import pickle
import shutil
import time
import types
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.lib.recfunctions as rfn
import pytest
import torch

from spikeflow.data import Bullying10K, DatasetNotFoundError, read_bullying10k
from spikeflow.data.datasets._common import Archive
from spikeflow.errors import ConfigurationError, DataFormatError
from test_data_datasets_helpers import http_server

#: dv-python's event packet dtype (fields read by name; ``_p1``/``_p2`` are padding).
DV_EVENT = np.dtype(
    [("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1"),
     ("_p1", "<i2"), ("_p2", "i1")]
)  # fmt: skip


def packets_of(rng, n_packets, sizes=None, t0=1_684_000_000_000_000):
    """Time-ordered dv event packets (absolute µs timestamps, as DV records them)."""
    sizes = rng.integers(1, 60, n_packets) if sizes is None else sizes
    out, t = [], t0
    for n in sizes:
        pkt = np.zeros(int(n), DV_EVENT)
        pkt["timestamp"] = t + np.sort(rng.integers(0, 5000, int(n)))
        t = int(pkt["timestamp"][-1]) + int(rng.integers(1, 20000))
        pkt["x"], pkt["y"] = rng.integers(0, 346, int(n)), rng.integers(0, 260, int(n))
        pkt["polarity"] = rng.integers(0, 2, int(n))
        pkt["_p1"], pkt["_p2"] = rng.integers(-99, 99, int(n)), 7  # padding bytes, ignored
        out.append(pkt)
    return out


def save_packets(path: Path, packets: list[np.ndarray], numpy1: bool = False) -> None:
    """``np.save(path, packets)`` as the authors' converter ran it: ragged packets become
    a 1-D object array (NumPy < 1.24 made it from the list itself), equal ones a 2-D
    structured array. ``numpy1``: the pickle names ``numpy.core.multiarray``, as NumPy 1.x
    wrote it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if len({len(p) for p in packets}) == 1:
        np.save(path, np.stack(packets))
        return
    arr = np.empty(len(packets), dtype=object)
    for k, p in enumerate(packets):
        arr[k] = p
    if not numpy1:
        np.save(path, arr)
        return
    # NumPy 1.x: protocol 3 (globals as text lines), numpy.core.multiarray._reconstruct.
    buf = io.BytesIO()
    header = {"descr": "|O", "fortran_order": False, "shape": arr.shape}
    np.lib.format.write_array_header_1_0(buf, header)
    body = pickle.dumps(arr, protocol=3)
    old, new = b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n"
    assert body.count(old) == 1 and b"numpy._core" not in body.replace(old, b"")
    path.write_bytes(buf.getvalue() + body.replace(old, new))


def expected_events(packets):
    cat = np.concatenate(packets)
    return cat["timestamp"], cat["x"], cat["y"], cat["polarity"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Ten action folders of 2 sub-folders holding 2-3 samples each, and a sample at the
    top of every third action folder. Names sort against the walk order (``s1/<a>_z*``
    before ``s2/<a>_a*``), so the split order and the sample order differ."""
    rng = np.random.default_rng(10)
    root = tmp_path_factory.mktemp("bullying") / "b10k"
    for c, action in enumerate(Bullying10K.classes):
        layout = [("", "m0")] if c % 3 == 0 else []
        layout += [("s1", f"z{i}") for i in range(2 + c % 2)]
        layout += [("s2", f"a{i}") for i in range(2 + (c + 1) % 2)]
        for sub, stem in layout:
            n = int(rng.integers(1, 5))
            sizes = [25] * n if (c == 3 and sub == "s1") else None  # equal: a 2-D array
            save_packets(root / action / sub / f"{action}_{stem}.npy",
                         packets_of(rng, n, sizes), numpy1=(c % 2 == 1))  # fmt: skip
    return root


# -- SpikingJelly 2.0's converter, as installed --------------------------------------------
def _sorted_walk(top):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        yield dirpath, dirnames, sorted(filenames)


def spikingjelly_convert(extract_root: Path, raw_root: Path) -> None:
    """Run SpikingJelly's ``Bullying10kClassification.create_raw_from_extracted`` (and its
    ``_convert_npy_to_npz``) from the installed source, without importing the package
    (its ``__init__`` needs torchvision), with sorted directory listings."""
    spec = importlib.util.find_spec("spikingjelly")
    if spec is None or spec.origin is None:
        pytest.skip("SpikingJelly (a test extra) is not installed")
    source = Path(spec.origin).parent / "datasets" / "bullying10k.py"
    tree = ast.parse(source.read_text())
    keep = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            keep.append(node)  # BULLYING10K_CATEGORY_LABEL
        elif isinstance(node, ast.FunctionDef) and node.name == "_convert_npy_to_npz":
            keep.append(node)
        elif isinstance(node, ast.ClassDef) and node.name == "Bullying10kClassification":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "create_raw_from_extracted":
                    item.decorator_list = []
                    keep.append(item)
    quiet = types.SimpleNamespace(info=lambda *a, **k: None, debug=lambda *a, **k: None)
    sorted_os = types.SimpleNamespace(
        listdir=lambda p: sorted(os.listdir(p)), walk=_sorted_walk, path=os.path
    )
    namespace = {
        "np": np, "Path": Path, "os": sorted_os, "shutil": shutil, "time": time,
        "multiprocessing": multiprocessing, "ThreadPoolExecutor": ThreadPoolExecutor,
        "logger": quiet, "utils": types.SimpleNamespace(np_savez=np.savez),
        "configure": types.SimpleNamespace(max_threads_number_for_datasets_preprocess=2),
    }  # fmt: skip
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(source), "exec"), namespace)
    if "create_raw_from_extracted" not in namespace:
        pytest.skip(f"{source} has no create_raw_from_extracted")
    raw_root.mkdir(parents=True)
    namespace["create_raw_from_extracted"](None, extract_root, raw_root)


def spikingjelly_split(raw_root: Path, split: str) -> list[tuple[Path, int]]:
    """The samples of SpikingJelly's converted split, in its DatasetFolder order."""
    folder = raw_root / split
    return [(f, int(d.name)) for d in sorted(folder.iterdir()) for f in sorted(d.iterdir())]


@pytest.fixture(scope="module")
def sj_raw(root, tmp_path_factory):
    work = tmp_path_factory.mktemp("sj")
    shutil.copytree(root, work / "extract")
    spikingjelly_convert(work / "extract", work / "raw")
    return work / "raw"


@pytest.mark.parametrize("train", [True, False])
def test_split_order_labels_and_events_equal_spikingjellys(root, sj_raw, train):
    ds = Bullying10K(root, train=train)
    reference = spikingjelly_split(sj_raw, "train" if train else "test")
    assert len(ds) == len(reference) > 0
    assert [p.stem for p, _ in ds.samples] == [f.stem for f, _ in reference]
    assert ds.targets == [label for _, label in reference]
    for i, (npz, label) in enumerate(reference):
        rec, y = ds[i]
        assert y == label and rec.sensor_size == (346, 260, 2)
        with np.load(npz) as sj:
            for ours, theirs in zip("txyp", "txyp"):
                np.testing.assert_array_equal(rec.events[ours], sj[theirs])


def test_every_fifth_file_is_a_test_sample(root):
    train, test = Bullying10K(root, train=True), Bullying10K(root, train=False)
    everything = []  # a top-down walk, sorted: an action's own files, then its sub-folders'
    for action in sorted(Bullying10K.classes):
        folder = root / action
        everything += sorted(p for p in folder.iterdir() if p.is_file())
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            everything += sorted(sub.iterdir())
    assert len(test) == math.ceil(len(everything) / 5) and len(train) + len(test) == len(everything)
    assert {p for p, _ in test.samples} == set(everything[::5])
    assert not {p for p, _ in train.samples} & set(everything[::5])
    assert all(p.relative_to(root).parts[0] == Bullying10K.classes[y] for p, y in train.samples)


def test_reader_equals_the_packets_in_both_layouts_and_old_pickles(tmp_path):
    rng = np.random.default_rng(1)
    for name, sizes, numpy1 in (("ragged", None, False), ("old", None, True),
                                ("equal", [40, 40, 40], False), ("one", [9], False)):  # fmt: skip
        packets = packets_of(rng, 3 if sizes is None else len(sizes), sizes)
        path = tmp_path / f"{name}.npy"
        save_packets(path, packets, numpy1)
        rec = read_bullying10k(path)
        assert rec.events.dtype.names == ("t", "x", "y", "p")
        for field, want in zip("txyp", expected_events(packets)):
            np.testing.assert_array_equal(rec.events[field], want)
    # The loader SpikingJelly uses reads the same files.
    loaded = np.load(tmp_path / "old.npy", allow_pickle=True)
    assert loaded.dtype == object and loaded[0].dtype == DV_EVENT


def test_events_out_of_time_order_are_sorted_stably(tmp_path):
    packets = packets_of(np.random.default_rng(2), 2, [6, 5])
    packets[1]["timestamp"] = packets[0]["timestamp"][2]  # five ties, earlier than packet 0's end
    save_packets(tmp_path / "s.npy", packets)
    rec = read_bullying10k(tmp_path / "s.npy")
    t, x, y, p = expected_events(packets)
    order = np.argsort(t, kind="stable")
    for field, want in zip("txyp", (t, x, y, p)):
        np.testing.assert_array_equal(rec.events[field], want[order])


def test_a_pickle_naming_anything_but_numpy_arrays_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = packets_of(np.random.default_rng(3), 1)[0], Evil()
    np.save(tmp_path / "evil.npy", arr)
    with pytest.raises(DataFormatError, match=r"evil\.npy.*refusing (posix|nt)\.system"):
        read_bullying10k(tmp_path / "evil.npy")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "cannot be read|truncated"),
        ("no_field", r"no field\(s\) \['polarity'\]"),
        ("polarity", "polarity=2"),
        ("x", "x=346"),
        ("not_array", "element 1 of an object array is 5"),
        ("plain", "expected dv-python event packets"),
        ("empty", "empty file"),
    ],
)
def test_damaged_files_name_the_file_and_the_problem(tmp_path, damage, message):
    packets = packets_of(np.random.default_rng(4), 3, [5, 7, 4])
    path = tmp_path / "d.npy"
    if damage == "no_field":
        packets = [rfn.drop_fields(p, "polarity", usemask=False) for p in packets]
    elif damage == "polarity":
        packets[2]["polarity"][1] = 2
    elif damage == "x":
        packets[0]["x"][3] = 346
    save_packets(path, packets)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-30])
    elif damage == "not_array":
        arr = np.empty(2, dtype=object)
        arr[0], arr[1] = packets[0], 5
        np.save(path, arr)
    elif damage == "plain":
        np.save(path, np.arange(12).reshape(3, 4))
    elif damage == "empty":
        path.write_bytes(b"")
    with pytest.raises(DataFormatError, match=message) as info:
        read_bullying10k(path)
    assert str(path) in str(info.value)


def test_frames_and_the_split_argument(root):
    ds = Bullying10K(root, train=False, data_type="frame", frames_number=4, split_by="number")
    frames, label = ds[1]
    assert frames.shape == (4, 2, 260, 346) and frames.dtype == torch.float32
    assert (
        frames.sum().item() == len(Bullying10K(root, train=False)[1][0]) and label == ds.targets[1]
    )
    with pytest.raises(ConfigurationError, match="train must be True or False"):
        Bullying10K(root, train=None)


def test_files_with_one_name_in_two_subfolders_are_both_kept(tmp_path):
    rng = np.random.default_rng(5)
    for action in Bullying10K.classes:
        for sub in ("a", "b"):
            save_packets(tmp_path / action / sub / "0.npy", packets_of(rng, 2))
    both = Bullying10K(tmp_path, train=True).samples + Bullying10K(tmp_path, train=False).samples
    assert len(both) == 20 and len({p for p, _ in both}) == 20


def test_missing_dataset_names_the_archives_and_a_partial_one_is_refused(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        Bullying10K(tmp_path / "none")
    text = str(info.value)
    assert "handshake.zip" in text and "figshare.com/ndownloader/files/41268834" in text
    assert "download=True" in text or "download" in text
    for action in Bullying10K.classes:
        (tmp_path / "part" / action).mkdir(parents=True)
    save_packets(
        tmp_path / "part" / "kicking" / "k" / "1.npy", packets_of(np.random.default_rng(6), 1)
    )
    with pytest.raises(DataFormatError, match=r"action folder\(s\) \['fingerguess'"):
        Bullying10K(tmp_path / "part")


def _zip_action(archive: Path, src: Path, action: str) -> bytes:
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted((src / action).rglob("*.npy")):
            zf.write(f, f.relative_to(src).as_posix())
    return archive.read_bytes()


def test_download_fetches_checks_and_extracts_the_ten_archives(root, tmp_path, monkeypatch):
    bodies = {f"/{a}": _zip_action(tmp_path / f"{a}.zip", root, a) for a in Bullying10K.classes}
    with http_server(bodies) as (base, log):
        archives = tuple(
            Archive(f"{a}.zip", hashlib.md5(bodies[f"/{a}"]).hexdigest(), f"{base}/{a}")
            for a in Bullying10K.classes
        )
        monkeypatch.setattr(Bullying10K, "archives", archives)
        with pytest.raises(DatasetNotFoundError):
            Bullying10K(tmp_path / "dl")  # download=False: nothing fetched
        assert log == []
        got = Bullying10K(tmp_path / "dl", train=False, download=True)
        assert sorted(log) == sorted(bodies)
    want = Bullying10K(root, train=False)
    assert [(p.relative_to(tmp_path / "dl"), y) for p, y in got.samples] == [
        (p.relative_to(root), y) for p, y in want.samples
    ]
    np.testing.assert_array_equal(got[3][0].events, want[3][0].events)
    # A damaged archive in root is refused by its MD5.
    (tmp_path / "bad").mkdir()
    for a in archives:
        shutil.copy(tmp_path / a.name, tmp_path / "bad" / a.name)
    with open(tmp_path / "bad" / "kicking.zip", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(DataFormatError, match=r"kicking\.zip: MD5 differs"):
        Bullying10K(tmp_path / "bad")
