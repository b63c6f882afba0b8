"""spikeflow.data.NamesByLanguage (the char-RNN tutorial's surnames, docs/datasets.md):
the tutorial's ASCII folding and one-hot letters, the deterministic stratified split,
padding with pad_collate, and the errors of a bad layout or file (named with file and
line). The real data is not in CI: the layouts are written here."""

from __future__ import annotations

import string
import unicodedata

import pytest
import torch

from spikeflow.data import (
    NAME_LETTERS,
    DatasetNotFoundError,
    NamesByLanguage,
    encode_name,
    fold_to_ascii,
    pad_collate,
)
from spikeflow.data.datasets.names_by_language import read_names_file
from spikeflow.errors import ConfigurationError, DataFormatError


def _tutorial_fold(s: str) -> str:
    """The tutorial's ``unicodeToAscii``, written out as it describes it."""
    letters = string.ascii_letters + " .,;'"
    out = ""
    for c in unicodedata.normalize("NFD", s):
        if unicodedata.category(c) != "Mn" and c in letters:
            out += c
    return out


def _layout(root, files: dict[str, str]):
    (root / "names").mkdir(parents=True)
    for language, text in files.items():
        (root / "names" / f"{language}.txt").write_text(text, encoding="utf-8")
    return root


def test_folding_and_one_hot_letters():
    assert (
        len(NAME_LETTERS) == 57 and NAME_LETTERS.startswith("abc") and NAME_LETTERS[-5:] == " .,;'"
    )
    for raw in ["Ślusàrski", "Nguyễn", "Großmann", "O'Néal\r", "Müller-Lüdenscheidt", "Ærø 1"]:
        assert fold_to_ascii(raw) == _tutorial_fold(raw)
    assert fold_to_ascii("Ślusàrski") == "Slusarski" and fold_to_ascii("Groß\r") == "Gro"
    x = encode_name("Ab'")
    assert x.shape == (3, 57) and x.dtype == torch.float32
    assert x.sum(1).tolist() == [1.0, 1.0, 1.0]
    assert x.argmax(1).tolist() == [26, 1, 56]  # "A" after the 26 lower-case letters
    assert fold_to_ascii("Abdank-Skarbek") == "AbdankSkarbek"  # no hyphen, as the tutorial
    for bad in ["", "Zoë", "A-b", 3]:
        with pytest.raises(ConfigurationError, match="encode_name"):
            encode_name(bad)


def test_files_languages_and_samples(tmp_path):
    root = _layout(tmp_path, {
        "Polish": "Ślusàrski\nNowak\n\n",
        "English": "Smith\r\nJones\r\nSmith\r\n",  # a repeat, CRLF endings
        "Czech": "Dvořák",
    })  # fmt: skip
    ds = NamesByLanguage(root, "all", deduplicate=True)
    assert ds.classes == ("Czech", "English", "Polish")  # sorted file names
    assert ds.names == ["Dvorak", "Smith", "Jones", "Slusarski", "Nowak"]
    assert ds.targets == [0, 1, 1, 2, 2]
    x, y = ds[3]
    assert y == 2 and torch.equal(x, encode_name("Slusarski"))
    kept = NamesByLanguage(root, "all")  # the default keeps repeats, as the tutorial
    assert kept.names.count("Smith") == 2 and len(kept) == 6
    shaped = NamesByLanguage(root, "all", transform=lambda t: t.sum(), target_transform=str)
    assert shaped[0] == (torch.tensor(6.0), "0")
    assert "3 languages" in repr(ds) and read_names_file(root / "names" / "Czech.txt") == ["Dvorak"]


def test_split_is_stratified_deterministic_and_disjoint(tmp_path):
    sizes = {"A": 10, "B": 37, "C": 1, "D": 2}
    root = _layout(tmp_path, {k: "".join(f"{k}x{'a' * i}\n" for i in range(n))
                              for k, n in sizes.items()})  # fmt: skip
    train = NamesByLanguage(root, "train")
    test = NamesByLanguage(root, "test")
    every = NamesByLanguage(root, "all")
    assert sorted(train.names + test.names) == sorted(every.names)
    assert not set(train.names) & set(test.names)
    held = {c: test.targets.count(i) for i, c in enumerate(test.classes)}
    # round half up of 20%, at most n - 1: 10 -> 2, 37 -> 7, 1 -> 0, 2 -> 0 (0.4)
    assert held == {"A": 2, "B": 7, "C": 0, "D": 0}
    assert NamesByLanguage(root, "test", test_fraction=0.25).targets.count(0) == 3  # 2.5 -> 3
    assert NamesByLanguage(root, "test", test_fraction=0.5).targets.count(3) == 1  # 2 -> 1
    assert NamesByLanguage(root, "test", test_fraction=0.5).targets.count(2) == 0  # keeps 1
    again = NamesByLanguage(root, "test")
    assert again.names == test.names  # deterministic
    other = NamesByLanguage(root, "test", seed=1)
    assert other.names != test.names and len(other) == len(test)
    # within a split, the files' order; the held-out names are not the file's tail
    b_test = [n for n, t in zip(test.names, test.targets) if t == 1]
    b_all = [n for n, t in zip(every.names, every.targets) if t == 1]
    positions = [b_all.index(n) for n in b_test]
    assert positions == sorted(positions) and positions != list(range(30, 37))
    # two languages of the same size hold out different positions (each its own seed)
    twin = _layout(
        tmp_path / "twin", {k: "".join(f"{k}{'a' * i}\n" for i in range(20)) for k in "PQ"}
    )
    twins = NamesByLanguage(twin, "test")
    assert [len(n) for n in twins.names[:4]] != [len(n) for n in twins.names[4:]]
    # a language's split depends on its own file only
    (root / "names" / "B.txt").unlink()
    assert [n for n in NamesByLanguage(root, "test").names if n.startswith("A")] == [
        n for n in test.names if n.startswith("A")
    ]


def test_padded_batches_are_time_major_with_a_mask(tmp_path):
    root = _layout(tmp_path, {"X": "Li\nAbcde\nXyz\n"})
    ds = NamesByLanguage(root, "all")
    x, labels, mask = pad_collate([ds[i] for i in range(3)], time_major=True)
    assert x.shape == (5, 3, 57) and mask.shape == (5, 3) and labels.tolist() == [0, 0, 0]
    assert mask.sum(0).tolist() == [2, 5, 3]
    assert torch.equal(x[:2, 0], encode_name("Li")) and x[2:, 0].abs().sum() == 0


def test_missing_layout_is_named(tmp_path):
    with pytest.raises(
        DatasetNotFoundError, match=r"names data not found: .*names is not a folder"
    ):
        NamesByLanguage(tmp_path / "absent")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "English.txt").write_text("Smith\n")
    with pytest.raises(DatasetNotFoundError, match="pass the folder above it") as info:
        NamesByLanguage(tmp_path / "flat")
    assert "download.pytorch.org/tutorial/data.zip" in str(info.value)
    (tmp_path / "empty" / "names").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"holds no \.txt file"):
        NamesByLanguage(tmp_path / "empty")


def test_bad_files_are_named_with_their_line(tmp_path):
    names = _layout(tmp_path, {"Good": "Smith\n"}) / "names"
    (names / "Bad.txt").write_bytes("Nowak\nMüller\n".encode() + b"Sch\xf6n\n")  # Latin-1 ö
    with pytest.raises(
        DataFormatError, match=r"Bad\.txt, line 3 \(byte offset 17\): not valid UTF-8"
    ):
        NamesByLanguage(tmp_path)
    (names / "Bad.txt").write_text("Nowak\n\n王\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"Bad\.txt, line 3: '王' has no letter left"):
        NamesByLanguage(tmp_path)
    (names / "Bad.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"Bad\.txt: no names"):
        NamesByLanguage(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "val"}, "split must be one of"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"seed": -1}, "seed"),
        ({"deduplicate": "yes"}, "deduplicate"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    root = _layout(tmp_path, {"X": "Li\n"})
    with pytest.raises(ConfigurationError, match=match):
        NamesByLanguage(root, **kwargs)


def _tutorial_read(text: str) -> list[str]:
    """The tutorial's ``readLines``: the file's ends stripped, split on newlines, each
    line folded as it is."""
    return [_tutorial_fold(line) for line in text.strip().split("\n")]


def test_lines_are_read_as_the_tutorial_reads_them(tmp_path):
    text = "De la Cruz\r\n O'Neal \nvan\tDyke\nSmith\nSmith\n\n"
    root = _layout(tmp_path, {"X": text})
    names = read_names_file(root / "names" / "X.txt")
    assert names == _tutorial_read(text) == ["De la Cruz", " O'Neal ", "vanDyke", "Smith", "Smith"]
    assert NamesByLanguage(root, "all").names == names


def test_repeats_are_kept_and_split_by_name(tmp_path):
    # 10 distinct names, name i listed i + 1 times, the copies interleaved
    lines = [f"N{'a' * i}" for k in range(10) for i in range(10) if k <= i]
    root = _layout(tmp_path, {"X": "\n".join(lines) + "\n"})
    train, test = NamesByLanguage(root, "train"), NamesByLanguage(root, "test")
    assert len(train) + len(test) == len(lines) == 55
    assert not set(train.names) & set(test.names)  # a name's copies in one split
    assert len(set(test.names)) == 2  # round(0.2 * 10 distinct names)
    assert all(test.names.count(n) == lines.count(n) for n in test.names)
    unique = NamesByLanguage(root, "test", deduplicate=True)
    assert unique.names == sorted(set(test.names), key=lines.index)  # the same names
    for seed in range(5):  # other seeds: still no name in both splits
        a = NamesByLanguage(root, "train", seed=seed).names
        b = NamesByLanguage(root, "test", seed=seed).names
        assert not set(a) & set(b) and len(a) + len(b) == 55
