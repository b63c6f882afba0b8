"""N-Omniglot (spikeflow.data.NOmniglot) on a root built here.

No sample of the real dataset is in ../shared/data, so the tests write the published
layout (that of the authors' loader, Brain-Cog-Lab/N-Omniglot, and its conversion in
their BrainCog framework): ``dvs_background_{1,2}/<alphabet>/character<NN>/<nnnn>.aedat4``
and ``dvs_evaluation/...`` for all 1,623 Omniglot characters, each folder one AEDAT 4.0
recording (uncompressed event packets of a 346x260 stream, the layout
spikeflow.data.io.read_aedat4 documents) and a ``<nnnn>.csv`` (a header line, then per
drawer ``index,start,end``) whose 20 rows cut it. The reference cut is a plain loop with
the authors' semantics, written here: ``list.index`` of the start and of the end
timestamp in the recording's timestamps, events ``[start_index, end_index)``.
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import spikeflow.data.datasets.nomniglot as nomniglot_module
from spikeflow.data import DatasetNotFoundError, NOmniglot
from spikeflow.data.datasets.nomniglot import NOMNIGLOT_ALPHABETS, NOMNIGLOT_CLASSES
from spikeflow.errors import ConfigurationError, DataFormatError
from test_data_io_synthetic import AEDAT4_XML, aedat4_file

XML_346 = AEDAT4_XML.replace(">64<", ">346<").replace(">48<", ">260<")
#: AEDAT 4 Event struct: int64 t, int16 x, int16 y, bool polarity, 3 padding bytes.
EVENT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")])


def event_packet(t, x, y, p) -> bytes:
    """A size-prefixed FlatBuffer EventPacket (file identifier EVTS) of these events."""
    body = np.zeros(len(t), EVENT)
    body["t"], body["x"], body["y"], body["on"] = t, x, y, p
    vtable = struct.pack("<HHH", 6, 8, 4) + b"\0\0"
    table = struct.pack("<iI", 20 - 12, 28 - 24)
    buf = struct.pack("<I", 16) + b"EVTS" + vtable + table + struct.pack("<I", len(t))
    buf += body.tobytes()
    return struct.pack("<I", len(buf)) + buf


def write_recording(folder: Path, stem: str, rng, rich: bool = False) -> None:
    """A character's recording: 20 drawers' strokes with up to two events between them
    and one after each (whose timestamp is the drawer's end), and the CSV of each
    drawer's start and end timestamps. ``rich``: more events, several per microsecond,
    and in about half the drawers the end timestamp shared with the drawer's last event
    (the first event of that timestamp ends the sample: both are left out)."""
    gaps = rng.integers(0, 3, 20)
    sizes = rng.integers(30, 80, 20) if rich else rng.integers(1, 4, 20)
    blocks = gaps + sizes + 1
    first = np.concatenate([[0], np.cumsum(blocks)[:-1]]) + gaps  # a drawer's first event
    after = first + sizes  # the event after it
    n = int(blocks.sum())
    step = rng.integers(1, 300, n)
    if rich:
        for a, b in zip(first, after):
            step[a + 1 : b] = rng.integers(0, 3, b - a - 1)
        step[after[rng.random(20) < 0.5]] = 0
    t = 1_632_000_000_000_000 + int(rng.integers(0, 10**9)) + np.cumsum(step)
    x, y, p = rng.integers(0, 346, n), rng.integers(0, 260, n), rng.integers(0, 2, n)
    folder.mkdir(parents=True, exist_ok=True)
    cuts = [0, *sorted(rng.choice(np.arange(1, n), size=3, replace=False)), n]
    packets = [event_packet(t[a:b], x[a:b], y[a:b], p[a:b]) for a, b in itertools.pairwise(cuts)]
    (folder / f"{stem}.aedat4").write_bytes(aedat4_file(packets, 0, XML_346))
    rows = "".join(f"{i},{t[a]},{t[b]}\n" for i, (a, b) in enumerate(zip(first, after)))
    (folder / f"{stem}.csv").write_text("sample,start_timestamp,end_timestamp\n" + rows)


#: Recordings with many events and boundary ties (the rest are tiny, to stay fast).
RICH = {"Korean/character07", "Tifinagh/character55", "Angelic/character01", "ULOG/character26"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """All 1,623 characters; the background alphabets split between dvs_background_1
    (the first 16) and dvs_background_2, as the release's archives are named."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("nomniglot") / "n"
    number = 0
    for group, alphabets in NOMNIGLOT_ALPHABETS.items():
        for k, (alphabet, count) in enumerate(sorted(alphabets.items())):
            part = "dvs_evaluation" if group == "evaluation" else f"dvs_background_{1 + (k >= 16)}"
            for c in range(1, count + 1):
                number += 1
                name = f"{alphabet}/character{c:02d}"
                folder = root / part / alphabet / f"character{c:02d}"
                write_recording(folder, f"{number:04d}", rng, rich=name in RICH)
    return root


@functools.lru_cache(maxsize=8)
def _decoded(aedat: Path) -> np.ndarray:
    from spikeflow.data.io import read_aedat4

    return read_aedat4(aedat).events


def reference_cut(aedat: Path, csv: Path, row: int) -> np.ndarray:
    """The authors' cut of one drawer, as a plain loop: ``[t, x, y, p]`` rows."""
    ev = _decoded(aedat)
    timestamps = [int(v) for v in ev["t"]]
    line = csv.read_text().splitlines()[1 + row].split(",")
    first, after = timestamps.index(int(line[1])), timestamps.index(int(line[2]))
    return np.array([[int(e[f]) for f in ("t", "x", "y", "p")] for e in ev[first:after]],
                    dtype=np.int64).reshape(-1, 4)  # fmt: skip


def as_table(rec) -> np.ndarray:
    ev = rec.events
    return np.stack([ev[f].astype(np.int64) for f in ("t", "x", "y", "p")], axis=1)


@pytest.fixture(scope="module")
def splits(root, tmp_path_factory):
    """The four splits of ``root``, sharing one cut cache."""
    cut = tmp_path_factory.mktemp("cut")
    return {
        "train": NOmniglot(root, cut_cache_dir=cut),  # the default split
        "test": NOmniglot(root, train=False, cut_cache_dir=cut),
        "background": NOmniglot(root, split="background", cut_cache_dir=cut),
        "evaluation": NOmniglot(root, split="evaluation", train=False, cut_cache_dir=cut),
    }


@pytest.mark.parametrize(
    ("split", "size"),
    [("train", 1623 * 15), ("test", 1623 * 5), ("background", 964 * 20),
     ("evaluation", 659 * 20)],
)  # fmt: skip
def test_split_sizes_and_labels(splits, split, size):
    ds = splits[split]
    assert ds.split == split and ds.train == (split == "train")
    assert len(ds) == size and len(NOmniglot.classes) == ds.num_classes == 1623
    counts = Counter(ds.targets)
    per = {"train": 15, "test": 5}.get(ds.split, 20)
    assert set(counts.values()) == {per}
    low = 964 if ds.split == "evaluation" else 0
    high = 964 if ds.split == "background" else 1623
    assert sorted(counts) == list(range(low, high)) and ds.targets == sorted(ds.targets)
    for i in range(0, len(ds), 997):  # each sample's folder is its class
        path, label = ds.samples[i]
        assert f"{path.parts[-3]}/{path.parts[-2]}" == NOMNIGLOT_CLASSES[label]


@pytest.mark.parametrize("split", ["train", "test", "background", "evaluation"])
def test_cut_equals_the_authors_semantics(splits, split):
    ds = splits[split]
    rows = {"train": range(15), "test": range(15, 20)}.get(split, range(20))
    names = [*sorted(RICH), "Latin/character01", "Oriya/character46"]
    for name in names:
        label = NOMNIGLOT_CLASSES.index(name)
        indices = [i for i, y in enumerate(ds.targets) if y == label]
        if (label < 964) != (split != "evaluation") and split in ("background", "evaluation"):
            assert indices == []
            continue
        assert len(indices) == len(rows)
        for i, row in zip(indices, rows):
            rec, y = ds[i]
            aedat, csv = ds.recordings[ds._windows[i][0]][:2]
            assert y == label and rec.sensor_size == (346, 260, 2)
            want = reference_cut(aedat, csv, row)
            np.testing.assert_array_equal(as_table(rec), want)
            assert len(want) > (20 if name in RICH else 0)


def test_each_recording_is_decoded_once_and_cached(root, tmp_path, monkeypatch):
    ds = NOmniglot(root, split="evaluation", cut_cache_dir=tmp_path)
    label = NOMNIGLOT_CLASSES.index("ULOG/character26")
    index = ds.targets.index(label)
    calls = []
    real = nomniglot_module.read_aedat4
    monkeypatch.setattr(nomniglot_module, "read_aedat4", lambda p: calls.append(p) or real(p))
    first = [as_table(ds[index + r][0]) for r in range(20)]
    assert len(calls) == 1  # one decode cut all 20 drawers
    again = NOmniglot(root, split="evaluation", cut_cache_dir=tmp_path)
    assert all(np.array_equal(as_table(again[index + r][0]), first[r]) for r in range(20))
    assert len(calls) == 1
    # A corrupt entry is detected and its recording cut again.
    entry = again.cut_cache.path_for(again.cache_entry_key(index + 3))
    entry.write_bytes(entry.read_bytes()[:-5])
    with pytest.warns(RuntimeWarning):
        np.testing.assert_array_equal(as_table(again[index + 3][0]), first[3])
    assert len(calls) == 2
    keys = [again.cache_entry_key(index + r) for r in range(20)]
    assert len({str(k) for k in keys}) == 20  # frames of two drawers never share an entry


def test_frames_and_their_cache(root, splits, tmp_path):
    cut = splits["evaluation"].cut_cache.directory.parent
    kw = {"split": "evaluation", "data_type": "frame", "frames_number": 3, "cut_cache_dir": cut}
    ds = NOmniglot(root, cache_dir=tmp_path, **kw)
    index = ds.targets.index(NOMNIGLOT_CLASSES.index("ULOG/character26")) + 4
    frames, y = ds[index]
    assert frames.shape == (3, 2, 260, 346) and frames.dtype == torch.float32
    assert y == ds.targets[index] and frames.sum().item() == len(splits["evaluation"][index][0])
    assert torch.equal(NOmniglot(root, cache_dir=tmp_path, **kw)[index][0], frames)
    assert not torch.equal(ds[index + 1][0], frames)  # the next drawer: its own entry


def test_merged_background_folder(root, splits, tmp_path):
    merged = tmp_path / "merged"
    (merged / "dvs_background").mkdir(parents=True)
    for part in ("dvs_background_1", "dvs_background_2"):
        for d in (root / part).iterdir():
            (merged / "dvs_background" / d.name).symlink_to(d)
    (merged / "dvs_evaluation").symlink_to(root / "dvs_evaluation")
    ds = NOmniglot(merged, split="background", cut_cache_dir=tmp_path / "c")
    ref = splits["background"]
    assert ds.targets == ref.targets
    assert [p.relative_to(merged).parts[2:] for p, _ in ds.samples] == [
        p.relative_to(root).parts[2:] for p, _ in ref.samples
    ]


def test_arguments(root, tmp_path):
    with pytest.raises(ConfigurationError, match="contradicts"):
        NOmniglot(root, split="test", train=True, cut_cache_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="split must be one of"):
        NOmniglot(root, split="valid", cut_cache_dir=tmp_path)


def _copy_character(root: Path, dest: Path, alphabet: str, character: str) -> Path:
    """A root holding the evaluation set's folders as symlinks, one character copied."""
    (dest / "dvs_evaluation").mkdir(parents=True)
    for d in (root / "dvs_evaluation").iterdir():
        if d.name != alphabet:
            (dest / "dvs_evaluation" / d.name).symlink_to(d)
    for c in (root / "dvs_evaluation" / alphabet).iterdir():
        target = dest / "dvs_evaluation" / alphabet / c.name
        if c.name == character:
            target.mkdir(parents=True)
            for f in c.iterdir():
                (target / f.name).write_bytes(f.read_bytes())
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(c)
    return dest / "dvs_evaluation" / alphabet / character


def test_a_timestamp_the_recording_lacks_is_named(root, tmp_path):
    folder = _copy_character(root, tmp_path / "r", "Avesta", "character03")
    csv = next(folder.glob("*.csv"))
    lines = csv.read_text().splitlines()
    i, start, end = lines[5].split(",")
    lines[5] = f"{i},{start},{int(end) + 10**9}"
    csv.write_text("\n".join(lines) + "\n")
    ds = NOmniglot(tmp_path / "r", split="evaluation", cut_cache_dir=tmp_path / "c")
    index = ds.targets.index(NOMNIGLOT_CLASSES.index("Avesta/character03"))
    with pytest.raises(DataFormatError, match=r"row 5: the end timestamp \d+ is not the timestamp"):
        ds[index]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("short_csv", "expected a header line and 20 rows"),
        ("bad_value", "row 2 .*expected integer start and end"),
        ("two_recordings", r"expected one <nnnn>\.aedat4 file"),
        ("no_csv", r"expected one <nnnn>\.csv file"),
    ],
)
def test_damaged_character_folders_are_named(root, tmp_path, damage, message):
    folder = _copy_character(root, tmp_path / "r", "Gurmukhi", "character12")
    csv = next(folder.glob("*.csv"))
    if damage == "short_csv":
        csv.write_text("\n".join(csv.read_text().splitlines()[:15]) + "\n")
    elif damage == "bad_value":
        lines = csv.read_text().splitlines()
        lines[2] = "1,12x,13"
        csv.write_text("\n".join(lines) + "\n")
    elif damage == "two_recordings":
        (folder / "9999.aedat4").write_bytes(next(folder.glob("*.aedat4")).read_bytes())
    else:
        csv.unlink()
    with pytest.raises(DataFormatError, match=message) as info:
        NOmniglot(tmp_path / "r", split="evaluation", cut_cache_dir=tmp_path / "c")
    assert str(folder) in str(info.value) or str(csv) in str(info.value)


def test_missing_and_incomplete_roots(root, tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        NOmniglot(tmp_path / "none")
    text = str(info.value)
    assert "10.6084/m9.figshare.16821427" in text and "dvs_background_1.rar" in text
    assert "unrar" in text and "cannot extract RAR" in text and "MD5" not in text
    partial = tmp_path / "partial" / "dvs_evaluation"
    partial.mkdir(parents=True)
    for d in sorted((root / "dvs_evaluation").iterdir())[1:]:
        (partial / d.name).symlink_to(d)
    with pytest.raises(DataFormatError, match=r"missing \['Angelic'\]"):
        NOmniglot(tmp_path / "partial", split="evaluation", cut_cache_dir=tmp_path)
    (partial / "Angelic").mkdir()
    for c in range(1, 20):  # one character short
        (partial / "Angelic" / f"character{c:02d}").symlink_to(
            root / "dvs_evaluation" / "Angelic" / f"character{c:02d}"
        )
    with pytest.raises(DataFormatError, match="expected the 20 folders character01"):
        NOmniglot(tmp_path / "partial", split="evaluation", cut_cache_dir=tmp_path)
