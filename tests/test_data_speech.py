"""The speech datasets (FSDD, Google Speech Commands): WAV files encoded to events by
``AudioToEvents``, on roots built in tmp_path in the official layouts.

FSDD roots hold links ``<digit>_<speaker>_<index>.wav``: for the tests of samples, to
the 20 real recordings of ../shared/data/event-files/fsdd-wav (``<digit>_<speaker>_0.wav``,
speakers george and jackson: all in FSDD's test split), some linked again under other
indices to make a training split (those tests skip when the folder is absent); for the
tests of names, splits and layouts, to tone bursts written with the stdlib ``wave``
module. Speech Commands trees (the 35 or 30 word folders, a few of them holding files)
are filled with tone bursts too. The encoder itself is tested elsewhere: here it is the
reference the samples must equal.
"""

from __future__ import annotations

import csv
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import require_shared_data
from spikeflow.data import FSDD, DatasetNotFoundError, SpeechCommands
from spikeflow.data.audio import AudioToEvents
from spikeflow.data.io import read_wav
from spikeflow.errors import ConfigurationError, DataFormatError

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPEAKERS = ("george", "jackson")


def fsdd_real() -> Path:
    """The folder of the 20 real FSDD recordings (the test skips when it is absent)."""
    return require_shared_data("event-files", "fsdd-wav")


def link(dest: Path, source: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(source)
    return dest


#: The index-0 recording of each speaker is also linked under these indices: 4 is the
#: last test index, 5 the first training one (FSDD: 0-4 test, 5-49 train).
EXTRA_INDICES = {"george": (4, 5), "jackson": (10, 49)}


def fsdd_root(
    folder: Path, extra: dict[str, tuple[int, ...]] = EXTRA_INDICES, real: bool = True
) -> Path:
    """``folder`` holding ``<d>_<s>_<i>.wav`` for index 0 and each index in ``extra[s]``:
    links to the real ``<d>_<s>_0.wav`` or (``real=False``, for the tests of file
    names) to an 8 kHz tone burst per digit and speaker written under ``folder/../tones``."""
    source = fsdd_real() if real else folder.parent / "tones"
    for d in range(10):
        for k, s in enumerate(SPEAKERS):
            target = source / f"{d}_{s}_0.wav"
            if not real:
                write_tone(target, freq=200.0 + 60 * d + 25 * k, rate=8000)
            for i in (0, *extra.get(s, ())):
                link(folder / f"{d}_{s}_{i}.wav", target)
    return folder


def expected_split(folder: Path, split: str) -> list[tuple[str, int]]:
    """``(file name, digit)`` of a split, worked out from the names (sorted by digit,
    then name: the datasets' order)."""
    out = []
    for p in folder.glob("*.wav"):
        digit, _, index = p.stem.split("_")
        if (int(index) <= 4) == (split == "test"):
            out.append((p.name, int(digit)))
    return sorted(out, key=lambda s: (s[1], s[0]))


def names(ds) -> list[tuple[str, int]]:
    return [(p.name, label) for p, label in ds.samples]


@pytest.fixture
def fsdd(tmp_path) -> Path:
    """An FSDD root of the real recordings in the GitHub repository's layout:
    ``root/recordings/``."""
    fsdd_root(tmp_path / "fsdd" / "recordings")
    return tmp_path / "fsdd"


@pytest.fixture
def fsdd_names(tmp_path) -> Path:
    """The same file names as ``fsdd``, of generated tones (needs no real data)."""
    fsdd_root(tmp_path / "fsdd" / "recordings", real=False)
    return tmp_path / "fsdd"


def write_tone(path: Path, freq: float = 440.0, rate: int = 16000, seconds: float = 0.3) -> Path:
    """A 16-bit mono WAV: 0.1 s of silence, a ``seconds`` tone burst, 0.1 s of silence."""
    t = np.arange(int(rate * seconds)) / rate
    burst = np.sin(2 * np.pi * freq * t) * np.hanning(t.size)
    gap = np.zeros(rate // 10)
    samples = np.round(np.concatenate([gap, burst, gap]) * 20000).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


# -- FSDD: split, labels, layouts --------------------------------------------------------
def test_fsdd_official_split_by_file_names_and_digit_labels(fsdd_names):
    fsdd = fsdd_names
    folder = fsdd / "recordings"
    train, test = FSDD(fsdd, split="train"), FSDD(fsdd, split="test")
    assert names(test) == expected_split(folder, "test")
    assert names(train) == expected_split(folder, "train")
    assert (len(train), len(test)) == (30, 30)  # indices 5, 10, 49 | 0, 4
    assert {p.name for p, _ in test.samples} >= {
        "3_george_4.wav",
        "3_george_0.wav",
        "3_jackson_0.wav",
    }
    assert {p.name for p, _ in train.samples} >= {
        "3_george_5.wav",
        "3_jackson_10.wav",
        "7_jackson_49.wav",
    }
    assert (train.split, test.split, train.train, test.train) == ("train", "test", True, False)
    assert FSDD.classes == WORDS and train.classes == WORDS
    for ds in (train, test):
        assert ds.targets == [int(p.name[0]) for p, _ in ds.samples]
        assert sorted(set(ds.targets)) == list(range(10))
    # the default split is "train" (SpikingJelly's default)
    assert names(FSDD(fsdd)) == names(train)


def test_fsdd_train_argument_agrees_with_split_and_contradictions_raise(fsdd_names):
    fsdd = fsdd_names
    assert names(FSDD(fsdd, train=True)) == names(FSDD(fsdd, split="train"))
    assert names(FSDD(fsdd, train=False)) == names(FSDD(fsdd, split="test"))
    assert names(FSDD(fsdd, split="test", train=False)) == names(FSDD(fsdd, split="test"))
    for split, train in (("test", True), ("train", False)):
        with pytest.raises(ConfigurationError, match="contradicts"):
            FSDD(fsdd, split=split, train=train)
    with pytest.raises(ConfigurationError, match="split must be one of"):
        FSDD(fsdd, split="valid")


@pytest.mark.parametrize("layout", ["recordings", "archive", "flat"])
def test_fsdd_reads_each_layout(tmp_path, layout):
    root = tmp_path / "root"
    folder = {
        "recordings": root / "recordings",
        "archive": root / "free-spoken-digit-dataset-master" / "recordings",
        "flat": root,
    }[layout]
    fsdd_root(folder, real=False)
    for split in ("train", "test"):
        ds = FSDD(root, split=split)
        assert names(ds) == expected_split(folder, split)
        assert all(p.parent == folder for p, _ in ds.samples)


def test_fsdd_speakers_filter_and_its_errors(fsdd_names):
    fsdd = fsdd_names
    for speaker in SPEAKERS:
        for split in ("train", "test"):
            ds = FSDD(fsdd, split=split, speakers=[speaker])
            want = [s for s in expected_split(fsdd / "recordings", split) if f"_{speaker}_" in s[0]]
            assert names(ds) == want
            assert len(ds) == (10 if (speaker == "george") == (split == "train") else 20)
    both = FSDD(fsdd, split="test", speakers=("jackson", "george"))
    assert names(both) == names(FSDD(fsdd, split="test"))
    with pytest.raises(ConfigurationError, match=r"\['theo'\] have no recordings") as info:
        FSDD(fsdd, speakers=["george", "theo"])
    assert "['george', 'jackson']" in str(info.value)  # the speakers it has
    for bad in ("george", [], ()):  # a str would be read as speakers g, e, o, r...
        with pytest.raises(ConfigurationError, match="non-empty list of speaker names"):
            FSDD(fsdd, speakers=bad)


def test_fsdd_bad_file_name_raises_naming_it(fsdd_names):
    fsdd = fsdd_names
    for bad in ("notes.wav", "3_george_x.wav", "10_george_5.wav", "3_george.wav"):
        path = link(fsdd / "recordings" / bad, fsdd / "tones" / "3_george_0.wav")
        with pytest.raises(DataFormatError, match="not an FSDD file name") as info:
            FSDD(fsdd, split="test")
        assert str(path) in str(info.value)
        path.unlink()
    FSDD(fsdd, split="test")  # the folder is whole again


def test_fsdd_empty_split_raises(tmp_path):
    # index 0 only: no training split
    folder = fsdd_root(tmp_path / "only-test" / "recordings", extra={}, real=False)
    assert len(FSDD(folder.parent, split="test")) == 20
    with pytest.raises(DataFormatError, match="no recording of the train split") as info:
        FSDD(folder.parent, split="train")
    assert f"{folder} holds" in str(info.value) and "index >= 5" in str(info.value)
    # a speaker filter that leaves a split empty says so
    root = fsdd_root(tmp_path / "g" / "recordings", extra={"george": (5,)}, real=False).parent
    assert len(FSDD(root, split="train", speakers=["george"])) == 10
    with pytest.raises(DataFormatError, match=r"train split .*speakers \['jackson'\]"):
        FSDD(root, split="train", speakers=["jackson"])


def test_fsdd_missing_root_names_the_url_and_no_md5(tmp_path):
    root = tmp_path / "absent"
    with pytest.raises(DatasetNotFoundError) as info:
        FSDD(root)
    msg = str(info.value)
    assert FSDD.archive.url in msg and "free-spoken-digit-dataset-master.zip" in msg
    assert str(root / "recordings") in msg and "download=True" in msg
    assert "MD5" not in msg  # GitHub builds the zip on request: it has no fixed MD5
    assert FSDD.archive.md5 is None
    # an existing folder with no recording is not found either (not an empty split)
    (root / "recordings").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="FSDD not found"):
        FSDD(root)


# -- FSDD: samples -----------------------------------------------------------------------
def test_fsdd_events_equal_the_encoder_on_the_wav(fsdd):
    ds = FSDD(fsdd, split="train")
    enc = AudioToEvents()
    assert ds.sensor_size == enc.sensor_size == (40, 1, 2)
    for i in (0, 7, len(ds) - 1):
        rec, label = ds[i]
        path, want_label = ds.samples[i]
        ref = enc(read_wav(path))
        assert label == want_label == int(path.name[0])
        assert len(rec) > 100 and rec.sensor_size == (40, 1, 2)
        np.testing.assert_array_equal(rec.events, ref.events)
        np.testing.assert_array_equal(ds.events(i).events, ref.events)


def test_fsdd_frames_by_time_hold_every_event(fsdd):
    ds = FSDD(fsdd, split="test", data_type="frame", frames_number=8, split_by="time")
    events = FSDD(fsdd, split="test")
    for i in (0, 13, len(ds) - 1):
        frames, label = ds[i]
        assert frames.dtype == torch.float32 and frames.shape == (8, 2, 1, 40)
        assert label == events[i][1]
        rec = events[i][0]
        assert frames.sum().item() == len(rec)
        for p in (0, 1):  # channel = polarity (1 ON / 0 OFF)
            assert frames[:, p].sum().item() == int((rec.events["p"] == p).sum())
        per_band = frames.sum(dim=(0, 1, 2))
        np.testing.assert_array_equal(per_band.numpy(), np.bincount(rec.events["x"], minlength=40))


def test_fsdd_custom_encoder_sets_sensor_and_events(fsdd):
    enc = AudioToEvents(n_mels=32, threshold_db=3)
    ds = FSDD(fsdd, split="test", audio_to_events=enc)
    default = FSDD(fsdd, split="test")
    assert ds.sensor_size == (32, 1, 2) and default.sensor_size == (40, 1, 2)
    assert FSDD.sensor_size == (40, 1, 2)  # the class attribute is left alone
    rec, _ = ds[3]
    assert rec.sensor_size == (32, 1, 2) and int(rec.events["x"].max()) < 32
    np.testing.assert_array_equal(rec.events, enc(read_wav(ds.samples[3][0])).events)
    assert len(rec) < len(default[3][0])  # fewer bands, bigger steps
    frames = FSDD(fsdd, split="test", audio_to_events=enc, data_type="frame", frames_number=4)
    assert frames[3][0].shape == (4, 2, 1, 32) and frames[3][0].sum().item() == len(rec)
    # the settings as a dict are the same encoder
    as_dict = FSDD(fsdd, split="test", audio_to_events={"n_mels": 32, "threshold_db": 3})
    assert as_dict.sensor_size == (32, 1, 2)
    np.testing.assert_array_equal(as_dict[3][0].events, rec.events)
    with pytest.raises(ConfigurationError, match="audio_to_events must be an AudioToEvents"):
        FSDD(fsdd, audio_to_events=lambda clip: clip)
    with pytest.raises(ConfigurationError, match=r"audio_to_events .*bands"):
        FSDD(fsdd, audio_to_events={"bands": 32})


def test_fsdd_frame_cache_is_read_back_and_keyed_by_the_encoder(tmp_path, monkeypatch):
    # 20 distinct files (entries are keyed by the resolved file: links to one file share one)
    fsdd = fsdd_root(tmp_path / "fsdd", extra={})
    cache = tmp_path / "cache"
    kw = {"split": "test", "data_type": "frame", "frames_number": 5, "cache_dir": cache}
    first = FSDD(fsdd, **kw)
    assert first.preprocess(workers=1, progress=False) == len(first) == 20
    plain = FSDD(fsdd, split="test", data_type="frame", frames_number=5)
    want = [plain[i][0] for i in (0, 11, 19)]

    second = FSDD(fsdd, **kw)
    assert second.cache.directory == first.cache.directory
    assert second.preprocess(workers=1, progress=False) == 0  # all hits

    # a hit does not encode the file again
    def no_encoding(self, clip):
        raise AssertionError("encoded a sample that is in the cache")

    with monkeypatch.context() as m:
        m.setattr(AudioToEvents, "__call__", no_encoding)
        got = [FSDD(fsdd, **kw)[i][0] for i in (0, 11, 19)]
    for a, b in zip(got, want):
        assert torch.equal(a, b)

    # another encoder setting is another entry, not a stale hit
    for enc in (AudioToEvents(threshold_db=3), AudioToEvents(n_mels=32)):
        other = FSDD(fsdd, audio_to_events=enc, **kw)
        assert other.cache.directory != first.cache.directory
        assert other.preprocess(workers=1, progress=False) == 20
        ref = FSDD(fsdd, split="test", audio_to_events=enc, data_type="frame", frames_number=5)
        assert torch.equal(other[11][0], ref[11][0])
        assert not torch.equal(other[11][0], want[1])
    # an equal encoder (a new instance, or its settings as a dict) is the same entry
    for enc in (AudioToEvents(n_mels=40, threshold_db=2.0), {"threshold_db": 2}):
        same = FSDD(fsdd, audio_to_events=enc, **kw)
        assert same.preprocess(workers=1, progress=False) == 0


def test_fsdd_dataloader_batches_frames(fsdd):
    ds = FSDD(fsdd, split="train", data_type="frame", frames_number=6, split_by="time")
    loader = DataLoader(ds, batch_size=8, shuffle=False, num_workers=0)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [8, 8, 8, 6]
    x, y = batches[0]
    assert x.shape == (8, 6, 2, 1, 40) and x.dtype == torch.float32
    assert y.tolist() == ds.targets[:8]
    assert torch.equal(x[3], ds[3][0])


# -- Speech Commands ---------------------------------------------------------------------
#: word -> files in it (``<hash>_nohash_<n>.wav``); every other word folder is empty.
SC_FILES = {
    "backward": ["0a7c2a8d_nohash_0.wav"],
    "no": ["1b4c9b89_nohash_0.wav", "1b4c9b89_nohash_1.wav", "9ff2d2f4_nohash_0.wav"],
    "yes": ["004ae714_nohash_0.wav", "004ae714_nohash_1.wav", "0ab3b47d_nohash_0.wav",
            "c1d39ce8_nohash_3.wav"],
    "zero": ["5e3dde6b_nohash_0.wav", "5e3dde6b_nohash_2.wav"],
}  # fmt: skip
SC_VALID = ["yes/004ae714_nohash_1.wav", "no/9ff2d2f4_nohash_0.wav"]
SC_TEST = [
    "yes/c1d39ce8_nohash_3.wav",
    "backward/0a7c2a8d_nohash_0.wav",
    "zero/5e3dde6b_nohash_2.wav",
]


def speech_commands_root(
    root: Path, version: str = "v0.02", files: dict[str, list[str]] = SC_FILES
) -> Path:
    """The extracted archive's layout: a folder per word of ``version``, the files of
    ``files`` (tones of a different pitch each), ``_background_noise_`` with a WAV, the
    two lists (``word/file.wav`` lines; CRLF and a blank line, which must not matter)
    and the archive's LICENSE and README.md."""
    words = SpeechCommands.VERSIONS[version]
    for w in words:
        (root / w).mkdir(parents=True)
    for k, (w, fs) in enumerate(sorted(files.items())):
        for j, f in enumerate(fs):
            if w in words:
                write_tone(root / w / f, freq=300.0 + 150 * k + 40 * j)
    write_tone(root / "_background_noise_" / "white_noise.wav", freq=1000.0, seconds=1.0)
    (root / "_background_noise_" / "README.md").write_text("noise\n")
    (root / "validation_list.txt").write_text("\r\n".join(SC_VALID) + "\r\n\r\n")
    (root / "testing_list.txt").write_text("\n".join(SC_TEST) + "\n")
    (root / "LICENSE").write_text("CC-BY-4.0\n")
    (root / "README.md").write_text("Speech Commands\n")
    return root


@pytest.fixture
def sc_root(tmp_path) -> Path:
    return speech_commands_root(tmp_path / "sc")


def rel_names(ds) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p, _ in ds.samples]


def test_speech_commands_splits_partition_the_files(sc_root):
    every = {f"{w}/{f}" for w, fs in SC_FILES.items() for f in fs}
    splits = {s: SpeechCommands(sc_root, split=s) for s in ("train", "valid", "test")}
    found = {s: rel_names(ds) for s, ds in splits.items()}
    assert set(found["valid"]) == set(SC_VALID) and len(found["valid"]) == len(SC_VALID)
    assert set(found["test"]) == set(SC_TEST) and len(found["test"]) == len(SC_TEST)
    assert set(found["train"]) == every - set(SC_VALID) - set(SC_TEST)
    assert sum(len(v) for v in found.values()) == len(every)  # disjoint, nothing lost
    assert not any("_background_noise_" in n for v in found.values() for n in v)
    for s, ds in splits.items():
        assert ds.split == s and ds.train == (s == "train")
        # sorted by label, then file name
        assert ds.samples == sorted(ds.samples, key=lambda x: (x[1], x[0].name))


def test_speech_commands_labels_index_the_sorted_words(sc_root):
    words = SpeechCommands.VERSIONS["v0.02"]
    assert len(words) == 35 and list(words) == sorted(words)
    assert SpeechCommands.classes == words
    for split in ("train", "valid", "test"):
        ds = SpeechCommands(sc_root, split=split)
        assert ds.classes == words
        for path, label in ds.samples:
            assert label == sorted(words).index(path.parent.name)
    assert SpeechCommands(sc_root, split="test").targets == [
        words.index("backward"),
        words.index("yes"),
        words.index("zero"),
    ]


def test_speech_commands_split_aliases_and_train_argument(sc_root):
    valid = rel_names(SpeechCommands(sc_root, split="valid"))
    val = SpeechCommands(sc_root, split="val")
    assert val.split == "valid" and rel_names(val) == valid
    assert rel_names(SpeechCommands(sc_root, train=True)) == rel_names(
        SpeechCommands(sc_root, split="train")
    )
    assert rel_names(SpeechCommands(sc_root, train=False)) == rel_names(
        SpeechCommands(sc_root, split="test")
    )
    assert SpeechCommands(sc_root).split == "train"
    for split in ("valid", "val", "test"):  # train=True means split="train"
        with pytest.raises(ConfigurationError, match="contradicts"):
            SpeechCommands(sc_root, split=split, train=True)
    with pytest.raises(ConfigurationError, match="contradicts"):
        SpeechCommands(sc_root, split="train", train=False)
    with pytest.raises(ConfigurationError, match="split must be one of"):
        SpeechCommands(sc_root, split="validation")


def test_speech_commands_samples_and_frames(sc_root):
    ds = SpeechCommands(sc_root, split="train")
    rec, label = ds[0]
    path = ds.samples[0][0]
    np.testing.assert_array_equal(rec.events, AudioToEvents()(read_wav(path)).events)
    assert len(rec) > 0 and rec.sensor_size == (40, 1, 2) and label == ds.targets[0]
    frames = SpeechCommands(sc_root, split="train", data_type="frame", frames_number=5)
    assert frames[0][0].shape == (5, 2, 1, 40) and frames[0][0].sum().item() == len(rec)


def test_speech_commands_version_must_match_the_tree(sc_root, tmp_path):
    with pytest.raises(DataFormatError, match=r"SpeechCommands v0\.01: ") as info:
        SpeechCommands(sc_root, version="v0.01")
    msg = str(info.value)
    assert "unexpected ['backward', 'follow', 'forward', 'learn', 'visual']" in msg
    assert "version=" in msg
    # a v0.01 tree: 30 words, the labels index those
    v1 = speech_commands_root(tmp_path / "v1", version="v0.01")
    words = SpeechCommands.VERSIONS["v0.01"]
    assert len(words) == 30 and list(words) == sorted(words)
    assert not {"backward", "follow", "forward", "learn", "visual"} & set(words)
    splits = {s: SpeechCommands(v1, split=s, version="v0.01") for s in ("train", "valid", "test")}
    assert splits["train"].classes == words and splits["train"].version == "v0.01"
    assert rel_names(splits["test"]) == ["yes/c1d39ce8_nohash_3.wav", "zero/5e3dde6b_nohash_2.wav"]
    assert splits["test"].targets == [words.index("yes"), words.index("zero")]
    assert words.index("yes") != SpeechCommands.VERSIONS["v0.02"].index("yes")
    assert sum(len(ds) for ds in splits.values()) == 9  # all but backward's one file
    with pytest.raises(DataFormatError, match=r"v0.02.*missing \['backward'"):
        SpeechCommands(v1)


def test_speech_commands_background_noise_folder_is_not_a_class(sc_root):
    # with it the tree has 36 folders; it must be neither a class nor an error
    assert len([p for p in sc_root.iterdir() if p.is_dir()]) == 36
    every = [
        n for s in ("train", "valid", "test") for n in rel_names(SpeechCommands(sc_root, split=s))
    ]
    assert len(every) == 10
    # any other extra folder is
    (sc_root / "house2").mkdir()
    with pytest.raises(DataFormatError, match=r"unexpected \['house2'\]"):
        SpeechCommands(sc_root)


def test_speech_commands_list_that_is_not_utf8_is_named(sc_root):
    """Before: a bare UnicodeDecodeError (read in the locale's encoding)."""
    (sc_root / "testing_list.txt").write_bytes(b"yes/a.wav\nno/\xe9.wav\n")
    with pytest.raises(DataFormatError, match=r"testing_list\.txt: byte offset 13: not UTF-8"):
        SpeechCommands(sc_root, split="train")


@pytest.mark.parametrize("missing", ["validation_list.txt", "testing_list.txt"])
def test_speech_commands_missing_list_file_is_named(sc_root, missing):
    (sc_root / missing).unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        SpeechCommands(sc_root, split="train")
    assert str(sc_root / missing) in str(info.value)


def test_speech_commands_unknown_version_and_missing_root(tmp_path):
    with pytest.raises(ConfigurationError, match=r"version must be one of .*'v0.03'"):
        SpeechCommands(tmp_path, version="v0.03")
    for version in ("v0.02", "v0.01"):
        with pytest.raises(DatasetNotFoundError) as info:
            SpeechCommands(tmp_path / "absent", version=version)
        msg = str(info.value)
        url = f"http://download.tensorflow.org/data/speech_commands_{version}.tar.gz"
        assert url in msg and "MD5-checked" in msg and "download=True" in msg
        assert str(tmp_path / "absent" / "testing_list.txt") in msg


def test_speech_commands_cache_is_keyed_by_the_encoder(sc_root, tmp_path):
    kw = {"split": "train", "data_type": "frame", "frames_number": 3, "cache_dir": tmp_path / "c"}
    a = SpeechCommands(sc_root, **kw)
    assert a.preprocess(workers=1, progress=False) == len(a) == 5
    assert SpeechCommands(sc_root, **kw).preprocess(workers=1, progress=False) == 0
    b = SpeechCommands(sc_root, audio_to_events=AudioToEvents(threshold_db=4), **kw)
    assert b.cache.directory != a.cache.directory
    assert b.preprocess(workers=1, progress=False) == 5


# -- Speech Commands, 12-class keyword spotting --------------------------------------------
def kws12_test_set(folder: Path) -> dict[str, list[str]]:
    """The canonical test set's layout: a folder per class, the ``_silence_`` clips of
    noise and ``_unknown_`` of other words; returns class -> files written."""
    written = {"_silence_": ["silence_0.wav", "silence_1.wav"], "_unknown_": ["bed_ab.wav"],
               "yes": ["yes_1.wav", "yes_0.wav"], "go": ["go_3.wav"]}  # fmt: skip
    from spikeflow.data.datasets.speech import KWS12_CLASSES

    for k, name in enumerate(KWS12_CLASSES):
        (folder / name).mkdir(parents=True)
        for j, f in enumerate(written.get(name, [])):
            write_tone(folder / name / f, freq=350.0 + 60 * k + 25 * j)
    return written


def test_kws12_train_and_valid_labels_and_the_silence_windows(sc_root):
    from spikeflow.data.datasets.speech import KWS12_CLASSES

    assert KWS12_CLASSES[:2] == ("_silence_", "_unknown_") and len(KWS12_CLASSES) == 12
    # 2.2 s of background noise: one-second windows at 0, 0.5 and 1.0 s
    noise = write_tone(sc_root / "_background_noise_" / "zz_noise.wav", 500.0, seconds=2.0)
    ds = SpeechCommands(sc_root, split="train", task="kws12")
    words = SpeechCommands(sc_root, split="train")
    assert ds.classes == KWS12_CLASSES and len(ds) == len(words) + 1 + 3  # white_noise: 1 window
    unknown, silence = KWS12_CLASSES.index("_unknown_"), KWS12_CLASSES.index("_silence_")

    def kws_label(name: str) -> int:
        return KWS12_CLASSES.index(name) if name in KWS12_CLASSES else unknown

    want = sorted(((kws_label(p.parent.name), p.parent.name, p.name) for p, _ in words.samples))
    got = [(y, p.parent.name, p.name) for p, y in ds.samples[: len(words)]]
    assert got == want and {y for y, _, _ in got} == {unknown, 2, 3}  # yes, no, others
    tail = ds.samples[len(words) :]
    assert [(p.name, y) for p, y in tail] == [("white_noise.wav", silence)] + [
        ("zz_noise.wav", silence)
    ] * 3
    assert sorted(ds._window_starts.values()) == [0, 0, 8000, 16000]
    # a window's events are the encoder's on that second of the recording
    clip = read_wav(noise)
    index = len(words) + 2  # zz_noise.wav from 0.5 s
    second = type(clip)(np.ascontiguousarray(clip.samples[:, 8000:24000]), 16000)
    np.testing.assert_array_equal(ds[index][0].events, AudioToEvents()(second).events)
    assert ds[index][1] == silence
    assert not np.array_equal(ds[index][0].events, ds[index - 1][0].events)
    # valid: the listed recordings relabelled, no silence
    valid = SpeechCommands(sc_root, split="valid", task="kws12")
    assert [(p.parent.name, y) for p, y in valid.samples] == [
        ("yes", KWS12_CLASSES.index("yes")),
        ("no", KWS12_CLASSES.index("no")),
    ]
    assert SpeechCommands(sc_root, split="train", task="kws12", silence_hop=1.0)._window_starts
    assert len(SpeechCommands(sc_root, split="train", task="kws12", silence_hop=1.0)) == len(ds) - 1


def test_kws12_windows_are_cached_apart(sc_root, tmp_path):
    write_tone(sc_root / "_background_noise_" / "zz_noise.wav", 500.0, seconds=2.0)
    kw = {"split": "train", "task": "kws12", "data_type": "frame", "frames_number": 4,
          "cache_dir": tmp_path / "c"}  # fmt: skip
    ds = SpeechCommands(sc_root, **kw)
    assert ds.preprocess(workers=1, progress=False) == len(ds)
    again = SpeechCommands(sc_root, **kw)
    assert again.preprocess(workers=1, progress=False) == 0
    n = len(ds)
    for i in (n - 3, n - 2, n - 1):  # the three windows of one file: three entries
        assert torch.equal(again[i][0], ds[i][0])
    assert not torch.equal(ds[n - 3][0], ds[n - 2][0])
    # the words task of the same root is another cache
    words = SpeechCommands(sc_root, split="train", data_type="frame", frames_number=4,
                           cache_dir=tmp_path / "c")  # fmt: skip
    assert words.cache.directory != ds.cache.directory


def test_kws12_test_split_reads_the_canonical_test_set(sc_root):
    from spikeflow.data.datasets.speech import KWS12_CLASSES

    with pytest.raises(DatasetNotFoundError) as info:
        SpeechCommands(sc_root, split="test", task="kws12")
    msg = str(info.value)
    assert "http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz" in msg
    assert "speech_commands_test_set_v0.02" in msg
    written = kws12_test_set(sc_root / "speech_commands_test_set_v0.02")
    ds = SpeechCommands(sc_root, split="test", task="kws12")
    want = sorted(((KWS12_CLASSES.index(c), f) for c, fs in written.items() for f in fs))
    assert [(y, p.name) for p, y in ds.samples] == want
    assert ds[0][0].sensor_size == (40, 1, 2)
    (sc_root / "speech_commands_test_set_v0.02" / "_unknown_").rename(
        sc_root / "speech_commands_test_set_v0.02" / "unknown"
    )
    with pytest.raises(DataFormatError, match=r"missing \['_unknown_'\].*unexpected \['unknown'\]"):
        SpeechCommands(sc_root, split="test", task="kws12")


def test_kws12_test_set_is_downloaded_and_extracted_into_its_folder(sc_root, tmp_path, monkeypatch):
    import tarfile

    from spikeflow.data.datasets._common import Archive
    from test_data_datasets_helpers import http_server

    src = tmp_path / "src"
    written = kws12_test_set(src)
    archive = tmp_path / "speech_commands_test_set_v0.02.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=".")
    with http_server({"/t.tar.gz": archive.read_bytes()}) as (base, log):
        monkeypatch.setattr(
            SpeechCommands, "test_set_archive",
            lambda self: Archive(archive.name, None, f"{base}/t.tar.gz",
                                 into=self.test_set_folder.name),
        )  # fmt: skip
        ds = SpeechCommands(sc_root, split="test", task="kws12", download=True)
    assert len(ds) == sum(len(v) for v in written.values()) and log
    assert (sc_root / "speech_commands_test_set_v0.02" / "yes" / "yes_0.wav").is_file()
    assert not (sc_root / "yes" / "yes_0.wav").exists()  # not spilled into the main tree


def test_kws12_arguments_and_a_missing_noise_folder(sc_root):
    with pytest.raises(ConfigurationError, match=r"task must be one of \('words', 'kws12'\)"):
        SpeechCommands(sc_root, task="kws35")
    for hop in (0, True):  # (True == 1 once passed as a one-second hop)
        with pytest.raises(ConfigurationError, match="silence_hop"):
            SpeechCommands(sc_root, task="kws12", silence_hop=hop)
    for f in (sc_root / "_background_noise_").iterdir():
        f.unlink()
    with pytest.raises(DataFormatError, match=r"no WAV file in .*_background_noise_"):
        SpeechCommands(sc_root, split="train", task="kws12")
    assert len(SpeechCommands(sc_root, split="valid", task="kws12")) == 2  # valid needs none


# -- the command line --------------------------------------------------------------------
def test_cli_registry_lists_the_speech_datasets():
    from spikeflow.training.data import _neuromorphic_classes, list_datasets

    assert {"fsdd", "speechcommands"} <= set(list_datasets())
    assert _neuromorphic_classes()["fsdd"] is FSDD
    assert _neuromorphic_classes()["speechcommands"] is SpeechCommands
    assert FSDD.downloadable and SpeechCommands.downloadable


def test_fsdd_trains_from_the_command_line(tmp_path):
    from spikeflow.cli import main

    root = tmp_path / "fsdd"
    fsdd_root(root / "recordings", extra={"george": (5,), "jackson": (30,)})
    out = tmp_path / "run"
    args = [
        "train", "--dataset", "fsdd", "--data-dir", str(root), "--model", "rsnn",
        "--model-kwargs", "hidden=16", "hidden_layers=1", "--loss", "ce",
        "-T", "20", "--split-by", "time", "--epochs", "1", "--batch-size", "8",
        "--device", "cpu", "--output-dir", str(out), "--no-progress", "--plots", "off",
    ]  # fmt: skip
    assert main(args) == 0
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and int(rows[0]["epoch"]) == 1
    assert np.isfinite(float(rows[0]["train_loss"]))
    assert 0.0 <= float(rows[0]["test_acc"]) <= 1.0
    state = torch.load(out / "last.pt", weights_only=False)["model"]
    assert state["net.0.weight"].shape == (16, 80)  # 40 bands x 2 polarities per step
