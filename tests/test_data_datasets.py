"""NMNIST on the real 1,100-sample subset (../shared/data/nmnist-small), and the
dataset base class's arguments, errors and archive handling."""

from __future__ import annotations

import fcntl
import re
import shutil
import threading
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from conftest import require_shared_data
from spikeflow.data import NMNIST, DatasetNotFoundError, EventRecording, download, pad_collate
from spikeflow.data.datasets._common import LOCK_FILE, Archive, marker_path, prepare_root
from spikeflow.data.download import DownloadError, file_hash
from spikeflow.data.transforms import Compose, Denoise, RandomFlipLR, RandomHorizontalFlipFrames
from spikeflow.errors import ConfigurationError, DataFormatError
from test_data_datasets_helpers import http_server

# Number of classes of each dataset, as its publication states it.
PUBLISHED_CLASS_COUNTS = {
    "ASLDVS": 24, "CIFAR10DVS": 10, "DVS128Gesture": 11, "DVSLip": 100, "ESImageNet": 1000,
    "FSDD": 10, "HARDVS": 300, "NAVGesture": 6, "NCARS": 2, "NCaltech101": 101, "NMNIST": 10,
    "POKERDVS": 4, "SHD": 20, "SSC": 35, "SpeechCommands": 35, "STMNIST": 10, "NTIDIGITS18": 11,
    "Bullying10K": 10, "NOmniglot": 1623, "SMNIST": 10,
}  # fmt: skip


def test_every_dataset_class_names_its_classes_before_reading_files():
    """``cls.classes`` (index = label) exists on the class itself, so the number of
    classes is known without a root (the trainer reads ``len(cls.classes)``)."""
    import spikeflow.data.datasets as module
    from spikeflow.data.datasets import NeuromorphicDataset

    found = {  # by class name: an alias (SpikingSpeechCommands = SSC) counts once
        cls.__name__: cls
        for name in module.__all__
        if isinstance(cls := getattr(module, name), type)
        and issubclass(cls, NeuromorphicDataset)
        and cls is not NeuromorphicDataset
    }
    assert set(found) == set(PUBLISHED_CLASS_COUNTS)
    for name, cls in found.items():
        names = vars(cls).get("classes", getattr(cls, "classes", None))
        assert isinstance(names, tuple), name
        assert all(isinstance(c, str) and c for c in names), name
        assert len(set(names)) == len(names) == PUBLISHED_CLASS_COUNTS[name], name
        assert getattr(cls, "num_classes", len(names)) == len(names), name


def test_nmnist_class_names_are_the_folder_names(nmnist_root):
    ds = NMNIST(nmnist_root, train=False)
    assert NMNIST.classes == tuple("0123456789")
    assert all(ds.classes[label] == path.parent.name for path, label in ds.samples)


@pytest.fixture(scope="module")
def nmnist_root():
    return require_shared_data("nmnist-small")


@pytest.mark.parametrize("train,split,count", [(True, "Train", 1000), (False, "Test", 100)])
def test_real_subset_sizes_labels_and_frames(nmnist_root, train, split, count):
    ds = NMNIST(nmnist_root, train=train, data_type="frame", frames_number=10, split_by="number")
    assert len(ds) == count
    on_disk = {int(d.name): len(list(d.glob("*.bin"))) for d in (nmnist_root / split).iterdir()}
    assert Counter(ds.targets) == on_disk and set(on_disk) == set(range(10))
    events = NMNIST(nmnist_root, train=train)  # data_type="event" by default
    for i in range(len(ds)):
        frames, label = ds[i]
        rec, label2 = events[i]
        assert isinstance(rec, EventRecording) and rec.sensor_size == (34, 34, 2)
        assert label == label2 == ds.samples[i][1]
        assert frames.shape == (10, 2, 34, 34) and frames.dtype == torch.float32
        assert frames.sum().item() == len(rec) > 0  # every event counted once
    assert ds.samples[0][0].parent.name == "0"  # sorted by label, then file name


def test_time_split_and_duration_batches(nmnist_root):
    ds = NMNIST(nmnist_root, train=False, data_type="frame", frames_number=4, split_by="time")
    x, y = next(iter(DataLoader(ds, batch_size=8)))
    assert x.shape == (8, 4, 2, 34, 34) and y.shape == (8,)
    assert x.transpose(0, 1).shape == (4, 8, 2, 34, 34)  # the time-major one-liner
    dur = NMNIST(nmnist_root, train=False, data_type="frame", duration=50_000)
    lengths = [dur[i][0].shape[0] for i in range(8)]
    for i, k in enumerate(lengths):
        t = dur.events(i).events["t"]
        assert k == (t[-1] - t[0]) // 50_000 + 1 >= 5  # ~300 ms recordings
    frames, labels, mask = next(iter(DataLoader(dur, batch_size=8, collate_fn=pad_collate)))
    assert frames.shape == (8, max(lengths), 2, 34, 34)
    assert mask.sum(1).tolist() == lengths and labels.tolist() == dur.targets[:8]
    for i in range(8):
        assert frames[i].sum().item() == len(dur.events(i))


def test_transforms_and_cache_on_real_files(nmnist_root, tmp_path):
    et = Compose([Denoise(5000)])
    cached = NMNIST(
        nmnist_root,
        train=False,
        data_type="frame",
        frames_number=5,
        event_transform=et,
        cache_dir=tmp_path,
        transform=RandomHorizontalFlipFrames(1.0),
    )
    plain = NMNIST(nmnist_root, train=False, data_type="frame", frames_number=5, event_transform=et)
    assert cached.preprocess(workers=2, executor="thread", progress=False) == 100
    for i in (0, 50, 99):
        assert torch.equal(cached[i][0], plain[i][0].flip(-1))
        assert plain[i][0].sum().item() == len(et(plain._read(plain.samples[i][0])))
    assert not any(nmnist_root.rglob(".*.tmp"))  # nothing written into the data folder
    events = NMNIST(nmnist_root, train=False, transform=RandomFlipLR(1.0))
    assert isinstance(events[0][0], EventRecording)


def test_argument_errors(nmnist_root):
    with pytest.raises(ConfigurationError, match="data_type='frame'"):
        NMNIST(nmnist_root, frames_number=10)
    with pytest.raises(ConfigurationError, match="exactly one"):
        NMNIST(nmnist_root, data_type="frame")
    with pytest.raises(ConfigurationError, match="data_type"):
        NMNIST(nmnist_root, data_type="voxels")
    with pytest.raises(ConfigurationError, match="preprocess"):
        NMNIST(nmnist_root, data_type="frame", frames_number=2).preprocess()
    with pytest.raises(IndexError):
        NMNIST(nmnist_root, train=False)[100]


def test_missing_dataset_says_where_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        NMNIST(tmp_path / "nowhere")
    msg = str(info.value)
    assert NMNIST.homepage in msg and "Train.zip" in msg and str(tmp_path / "nowhere") in msg
    assert "download=True" in msg and NMNIST.archives["Train"].url in msg
    assert isinstance(info.value, FileNotFoundError)
    folder = tmp_path / "empty" / "Test"
    folder.mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        NMNIST(tmp_path / "empty", train=False)
    msg = str(info.value)  # the problem, then where to get the files and the layout
    assert msg.startswith(
        f"N-MNIST: no samples in {folder}; expected {folder}/<label>/<id>.bin "
        "with labels 0-9. Pass download=True to download Test.zip "
    ), msg
    assert NMNIST.archives["Test"].url in msg and NMNIST.homepage in msg
    assert msg.endswith(f"Expected layout: {NMNIST.layout}")


#: Samples in the archive of :func:`_test_archive`: the first 2 files of each class.
ARCHIVE_SAMPLES = 2 * len(NMNIST.classes)


def _test_archive(nmnist_root: Path, archive: Path) -> Path:
    """``archive``, a zip holding the first 2 real test files of every class in the
    official layout (every class folder present, as in the official archive)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for label in NMNIST.classes:
            for f in sorted((nmnist_root / "Test" / label).glob("*.bin"))[:2]:
                zf.write(f, f"Test/{label}/{f.name}")
    return archive


def test_missing_class_folders_are_an_incomplete_extraction(nmnist_root, tmp_path):
    """A split folder without some class folders is refused with their names, not
    loaded as a dataset short of those classes (the labels, taken from the folder
    names, would still look right)."""
    split = tmp_path / "nmnist" / "Test"
    for label in NMNIST.classes:
        if label not in ("3", "7"):
            shutil.copytree(nmnist_root / "Test" / label, split / label)
    message = f"{split}: class folder(s) ['3', '7'] are missing (2 of 10); the extraction is"
    with pytest.raises(DataFormatError, match=re.escape(message)):
        NMNIST(tmp_path / "nmnist", train=False)
    for label in ("3", "7"):
        shutil.copytree(nmnist_root / "Test" / label, split / label)
    assert len(NMNIST(tmp_path / "nmnist", train=False)) == 100


def test_official_archive_is_checked_and_extracted(nmnist_root, tmp_path, monkeypatch):
    root = tmp_path / "nmnist"
    archive = _test_archive(nmnist_root, root / "Test.zip")
    with pytest.raises(DataFormatError, match="MD5"):
        NMNIST(root, train=False)  # not the official archive's checksum
    monkeypatch.setitem(NMNIST.archives, "Test", Archive("Test.zip", file_hash(archive, "md5")))
    ds = NMNIST(root, train=False, data_type="frame", frames_number=3)
    assert len(ds) == ARCHIVE_SAMPLES and (root / "Test").is_dir()
    first = ds.samples[0][0]
    assert (
        first.read_bytes() == (nmnist_root / "Test" / first.parent.name / first.name).read_bytes()
    )
    shutil.rmtree(root / "Test")
    with pytest.raises(FileNotFoundError):
        ds[0]


def test_an_interrupted_extraction_leaves_no_partial_dataset(nmnist_root, tmp_path, monkeypatch):
    root = tmp_path / "nmnist"
    archive = _test_archive(nmnist_root, root / "Test.zip")
    monkeypatch.setitem(NMNIST.archives, "Test", Archive("Test.zip", file_hash(archive, "md5")))
    real_copy, calls = download._copy_declared, [0]

    def interrupted(*args):  # Ctrl-C while the 6th file is written
        calls[0] += 1
        if calls[0] == 6:
            raise KeyboardInterrupt
        return real_copy(*args)

    monkeypatch.setattr(download, "_copy_declared", interrupted)
    with pytest.raises(KeyboardInterrupt):
        NMNIST(root, train=False)
    assert _visible(root) == ["Test.zip"]  # no half-filled Test/, no staging folder
    monkeypatch.setattr(download, "_copy_declared", real_copy)
    ds = NMNIST(root, train=False)
    assert len(ds) == ARCHIVE_SAMPLES
    assert _visible(root) == ["Test", "Test.zip"]


def _visible(root: Path) -> list[str]:
    """The entries of ``root`` besides the lock file and completion markers."""
    hidden = (LOCK_FILE, ".spikeflow-extracted-")
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(hidden))


def _small_root(root: Path, n: int = 20) -> Archive:
    """``root/Train.zip`` holding ``Train/<k % 4>/<k>.bin``; its Archive (no MD5)."""
    root.mkdir(parents=True)
    with zipfile.ZipFile(root / "Train.zip", "w") as zf:
        for k in range(n):
            zf.writestr(f"Train/{k % 4}/{k:03d}.bin", bytes([k]) * 10)
    return Archive("Train.zip", None)


def _prepare(root: Path, archive: Archive) -> None:
    prepare_root("X", root, root / "Train", [archive], download=False, homepage="h", layout="l")


def test_a_second_process_waits_for_the_lock_then_finds_the_dataset(tmp_path):
    """Two processes preparing one root: the second waits on root/.spikeflow.lock and,
    once it gets it, sees the dataset the first extracted instead of extracting over it."""
    root = tmp_path / "race"
    archive = _small_root(root)
    done: list[BaseException | None] = []

    def second() -> None:
        try:
            _prepare(root, archive)
            done.append(None)
        except BaseException as exc:  # reported by the assertion below
            done.append(exc)

    with open(root / LOCK_FILE, "a+b") as held:  # the first process, mid-extraction
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not (root / "Train").exists()  # waiting, not extracting
        _prepare_by_hand(root)  # the first process finishes: a complete tree and marker
        (root / "Train.zip").unlink()  # extracting again would now fail
    thread.join(10)
    assert done == [None]
    assert len(list((root / "Train").rglob("*.bin"))) == 20


def _prepare_by_hand(root: Path) -> None:
    with zipfile.ZipFile(root / "Train.zip") as zf:
        zf.extractall(root)
    marker_path(root, [Archive("Train.zip", None)]).write_text("complete\n")


def test_a_tree_left_part_moved_by_a_killed_extraction_is_extracted_again(tmp_path):
    root = tmp_path / "killed"
    archive = _small_root(root)
    # What a process killed while renaming leaves: its staging folder, part of the tree,
    # and the marker still saying "extracting".
    (root / ".spikeflow-extracting-k1ll3d" / "Train" / "3").mkdir(parents=True)
    (root / "Train" / "0").mkdir(parents=True)
    (root / "Train" / "0" / "000.bin").write_bytes(b"\0" * 10)
    marker = marker_path(root, [archive])
    marker.write_text("extracting\n")
    _prepare(root, archive)
    assert len(list((root / "Train").rglob("*.bin"))) == 20
    assert marker.read_text().strip() == "complete"
    assert _visible(root) == ["Train", "Train.zip"]  # the stale staging folder is gone
    # The same leftover without the archives is refused, naming the folder and marker.
    marker.write_text("extracting\n")
    (root / "Train.zip").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"Train is incomplete.*spikeflow-extracted"):
        _prepare(root, archive)


def test_a_root_extracted_by_older_spikeflow_without_marker_is_used(tmp_path):
    root = tmp_path / "old"
    archive = _small_root(root)
    _prepare_by_hand(root)
    marker_path(root, [archive]).unlink()  # older spikeflow wrote no marker
    (root / "Train.zip").unlink()  # nothing to extract from: it must not try
    _prepare(root, archive)
    assert len(list((root / "Train").rglob("*.bin"))) == 20


def test_download_from_mendeley_layout_checked_and_resumable(nmnist_root, tmp_path, monkeypatch):
    """download=True fetches the split's official archive (a local server stands in for
    Mendeley Data), checks its MD5 and extracts it; an interrupted download resumes."""
    assert NMNIST.archives["Train"].url.startswith("https://data.mendeley.com/public-files/")
    assert NMNIST.archives["Test"].md5 == "69ca8762b2fe404d9b9bad1103e97832"  # Tonic's
    archive = _test_archive(nmnist_root, tmp_path / "served.zip")
    body = archive.read_bytes()
    root = tmp_path / "fresh"
    root.mkdir()
    (root / "Test.zip.part").write_bytes(body[:1000])  # an earlier, interrupted download
    with http_server({"/test.zip": body}) as (base, log):
        served = Archive("Test.zip", file_hash(archive, "md5"), f"{base}/test.zip")
        monkeypatch.setitem(NMNIST.archives, "Test", served)
        ds = NMNIST(root, train=False, download=True)
        assert log == ["/test.zip"] and (root / "Test.zip").read_bytes() == body
        assert len(ds) == ARCHIVE_SAMPLES and ds.targets == sorted(ds.targets)
        assert NMNIST(root, train=False, download=True).samples == ds.samples  # no request
        assert log == ["/test.zip"]
        with pytest.raises(DatasetNotFoundError, match="download=True"):
            NMNIST(tmp_path / "other", train=False)  # no download without the flag
        assert log == ["/test.zip"]
        monkeypatch.setitem(NMNIST.archives, "Test", Archive("Test.zip", "0" * 32, served.url))
        with pytest.raises(DownloadError, match="md5 of the downloaded file"):
            NMNIST(tmp_path / "bad", train=False, download=True)
        assert not (tmp_path / "bad" / "Test.zip").exists()


def test_tonics_first_saccade_only_is_a_crop_time(nmnist_root):
    """docs/migration.md: Tonic's ``NMNIST(first_saccade_only=True)`` (its own
    ``__getitem__``, run on the real files) gives the events of
    ``NMNIST(event_transform=CropTime(max=99_999))``."""
    tonic_nmnist = pytest.importorskip("tonic.datasets.nmnist", reason="Tonic is not installed")
    from spikeflow.data.transforms import CropTime

    ours = NMNIST(nmnist_root, train=False, event_transform=CropTime(max=99_999))
    theirs = object.__new__(tonic_nmnist.NMNIST)  # its __init__ wants all 10,000 files
    theirs.data, theirs.targets = [str(f) for f, _ in ours.samples], list(ours.targets)
    theirs.first_saccade_only, theirs.stabilize = True, False
    theirs.transform = theirs.target_transform = theirs.transforms = None
    whole = NMNIST(nmnist_root, train=False)
    for i in range(0, len(ours), 9):
        (rec, label), (events, target) = ours[i], theirs[i]
        assert label == target and len(rec) == len(events) < len(whole[i][0])
        for name in "txyp":
            assert (rec.events[name].astype("int64") == events[name]).all(), name


def test_a_dataset_not_found_under_a_relative_root_names_the_folder_searched(tmp_path, monkeypatch):
    # "data/Train does not exist" alone did not say which working directory it was under.
    from spikeflow.data import NTIDIGITS18
    from spikeflow.data.datasets._common import how_to_get

    monkeypatch.chdir(tmp_path)
    absolute = tmp_path.resolve() / "data"
    with pytest.raises(DatasetNotFoundError) as info:
        NMNIST("data", train=True)
    message = str(info.value)
    train = absolute / "Train"
    assert f"N-MNIST not found: data/Train (absolute: {train}) does not exist" in message
    assert f"into data (absolute: {absolute}), or download them yourself" in message
    with pytest.raises(DatasetNotFoundError) as info:
        NTIDIGITS18("data", train=True)
    assert f"(absolute: {absolute / NTIDIGITS18.filename}) does not exist" in str(info.value)
    # An absolute root is shown as given, once.
    advice = how_to_get("X", absolute, [], "http://h", "L")
    assert f"in {absolute}." in advice and "absolute:" not in advice


def _problem_parts():
    from spikeflow.data.datasets.ebssa import EBSSA
    from spikeflow.data.datasets.image_folder import ImageFolder
    from spikeflow.data.datasets.imagenet import ImageNet
    from spikeflow.data.datasets.images import MNIST
    from spikeflow.data.datasets.prophesee_detection import Gen1Automotive
    from spikeflow.data.datasets.rosbag_sets import DAVISDATA
    from spikeflow.data.datasets.smnist import SMNIST
    from spikeflow.data.datasets.tumvie import TUMVIE

    tumvie = "TUMVIE/mocap-1d-trans/mocap-1d-trans-events_left.h5"
    imagenet = (
        "ImageNet (test): no folder data/val (absolute: {a}/val) or data/ILSVRC/Data/CLS-LOC/val "
        "(absolute: {a}/ILSVRC/Data/CLS-LOC/val), nor an archive data/ILSVRC2012_img_val.tar "
        "(absolute: {a}/ILSVRC2012_img_val.tar)"
    )
    # Each dataset's own message, as it starts (``{a}``: the absolute root).
    return {
        "MNIST": (
            lambda: MNIST("data", train=True),
            "MNIST (train) not found in data (absolute: {a}): missing",
        ),
        "SMNIST": (
            lambda: SMNIST("data", train=True),
            "SMNIST (train) not found in data (absolute: {a}): missing",
        ),
        "Gen1": (
            lambda: Gen1Automotive("data", split="train"),
            "Gen1 Automotive: the split folder data/train (absolute: {a}/train) does not exist",
        ),
        "ImageFolder": (
            lambda: ImageFolder("data", train=True),
            "ImageFolder (train): no folder data/train (absolute: {a}/train).",
        ),
        "ImageNet": (lambda: ImageNet("data", train=False), imagenet),
        "EBSSA": (
            lambda: EBSSA("data"),
            "EBSSA: data/EBSSA/labelled_ebssa.h5 (absolute: {a}/EBSSA/labelled_ebssa.h5) does",
        ),
        "TUMVIE": (
            lambda: TUMVIE("data"),
            f"TUM-VIE: 21 event file(s) missing, e.g. data/{tumvie} (absolute: {{a}}/{tumvie}).",
        ),
        "DAVISDATA": (
            lambda: DAVISDATA("data"),
            "DAVISDATA: 25 file(s) missing, e.g. data/DAVISDATA/boxes_6dof.bag (absolute: "
            "{a}/DAVISDATA/boxes_6dof.bag).",
        ),
    }


@pytest.mark.parametrize("name", sorted(_problem_parts()))
def test_a_datasets_own_not_found_message_names_the_absolute_path(name, tmp_path, monkeypatch):
    # Messages written in the dataset's module (not _common's) show relative paths too.
    monkeypatch.chdir(tmp_path)
    make, start = _problem_parts()[name]
    with pytest.raises(DatasetNotFoundError) as info:
        make()
    expected = start.format(a=tmp_path.resolve() / "data")
    assert str(info.value).startswith(expected), str(info.value)
