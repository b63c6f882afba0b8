"""Surnames by language: the data of PyTorch's char-RNN classification tutorial (and of
SpikingJelly's ``spiking_lstm_text.py`` example).

Layout: ``root/names/<Language>.txt``, one UTF-8 name per line (the tutorial's
``data.zip`` holds 18 such files; extracted, ``root`` is its ``data`` folder). Each name
is folded to ASCII as the tutorial does (:func:`fold_to_ascii`: Unicode NFD, accents
dropped, every character outside the 57 of :data:`NAME_LETTERS` dropped) and a sample is
its letters one-hot, ``[L, 57]`` float32 for a name of ``L`` letters, with the index of
its language (the files' names, sorted) as label.

Names have different lengths: batch them with
:func:`spikeflow.data.pad_collate` (``time_major=True``), which pads with all-zero
steps after each name's end and returns the mask ``[T_max, B]`` of real steps. A
forward (unidirectional) recurrent layer reads a name's steps before its padding, so
its output at step ``L - 1`` is the same padded or not: read each sample's output there
(``examples/spiking_lstm_text.py``). See docs/datasets.md ("Names by language").
"""

from __future__ import annotations

import os
import string
import unicodedata
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.data.datasets._common import shown_path
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = [
    "NAME_LETTERS",
    "NamesByLanguage",
    "encode_name",
    "fold_to_ascii",
    "read_names_file",
]

#: The 57 characters a folded name is made of (the tutorial's ``all_letters``: the ASCII
#: letters and `` .,;'``); a letter's one-hot index is its position here. (SpikingJelly's
#: example adds ``-``, 58.)
NAME_LETTERS: str = string.ascii_letters + " .,;'"
_INDEX = {letter: i for i, letter in enumerate(NAME_LETTERS)}

#: Where the tutorial's data comes from (named in the error of a missing folder).
DATA_URL = "https://download.pytorch.org/tutorial/data.zip"


def fold_to_ascii(text: str) -> str:
    """``text`` in the letters of :data:`NAME_LETTERS`, as the tutorial folds it: the
    NFD decomposition with its combining marks (``Mn``) dropped (``"Ślusàrski"`` ->
    ``"Slusarski"``), then every character outside the 57 dropped (``"ß"``, ``"-"``,
    digits, tabs, ``"\\r"``)."""
    # the combining marks (category Mn) are outside the 57 and go with the rest
    return "".join(c for c in unicodedata.normalize("NFD", text) if c in _INDEX)


def encode_name(name: str) -> Tensor:
    """The one-hot letters of ``name``, ``[len(name), 57]`` float32 (row ``t`` is letter
    ``t``, a 1 at its index in :data:`NAME_LETTERS`).

    Raises:
        ConfigurationError: ``name`` is not a non-empty string of those letters (fold it
            first with :func:`fold_to_ascii`).
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"encode_name: name must be a non-empty str, got {name!r}")
    bad = sorted({c for c in name if c not in _INDEX})
    if bad:
        raise ConfigurationError(
            f"encode_name: {name!r} holds {bad}, not among the 57 letters of NAME_LETTERS "
            "(fold it with fold_to_ascii first)"
        )
    indices = torch.tensor([_INDEX[c] for c in name])
    return torch.nn.functional.one_hot(indices, len(NAME_LETTERS)).to(torch.float32)


def read_names_file(path: str | os.PathLike) -> list[str]:
    """The names of one ``<Language>.txt``, folded (:func:`fold_to_ascii`), in file order,
    repeats kept.

    As the tutorial reads a file, each line is folded as it is: its spaces (the
    tutorial's letter ``" "``) are kept, inside a name and at its ends; ``"\\r"`` and tabs
    are dropped by the folding. Blank lines (a trailing newline, whitespace only) are
    skipped (the tutorial strips the file's ends; a blank line inside would be an empty
    name).

    Raises:
        DataFormatError: the file is not UTF-8 (its line and byte offset named), holds
            no name, or has a line with no letter left after folding (its line named).
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(
            f"{path}, line {line} (byte offset {exc.start}): not valid UTF-8 "
            f"({exc.reason}); the names files are UTF-8 text"
        ) from None
    names = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        folded = fold_to_ascii(line)
        if not folded.strip():
            raise DataFormatError(
                f"{path}, line {number}: {line.strip()!r} has no letter left after folding "
                'to ASCII (NAME_LETTERS: the ASCII letters and " .,;\'")'
            )
        names.append(folded)
    if not names:
        raise DataFormatError(f"{path}: no names (the file is empty or holds blank lines only)")
    return names


def _test_count(n: int, fraction: float) -> int:
    """How many of a language's ``n`` names are held out: ``fraction`` of them rounded
    half up, at most ``n - 1`` (a language keeps a training name)."""
    return min(n - 1, int(np.floor(n * fraction + 0.5)))


class NamesByLanguage(Dataset[tuple[Tensor, Any]]):
    """Surnames labelled with their language (see the module docstring for the layout).

    The split is deterministic, stratified and by name: each language's distinct names
    (after folding) are shuffled by a generator seeded with ``(seed, crc32 of the
    language)`` and ``round(test_fraction * n)`` of them (``n`` distinct names, at most
    ``n - 1``) are held out; every line of a held-out name is in the test split, the
    other lines in the training split, so a repeated name's copies are never in both.
    The samples keep the files' order within a split; a language's split depends only
    on its own file and ``seed``, and is the same names with or without ``deduplicate``.
    (SpikingJelly's example holds out the last 20% of each file's lines, repeats kept.)

    Args:
        root: the folder holding ``names/`` (the tutorial's extracted ``data``).
        split: ``"train"``, ``"test"`` or ``"all"`` (every name).
        test_fraction: the share of each language's distinct names held out, in
            ``[0, 1)`` (default 0.2).
        seed: the split's seed, an integer >= 0 (default 0).
        deduplicate: keep one copy of a name repeated within a language (default
            False: every line is a sample, as in the tutorial and SpikingJelly, so a
            frequent name weighs as often as it is listed).
        transform: applied to the ``[L, 57]`` one-hot letters.
        target_transform: applied to the label.

    Attributes:
        classes: the languages, sorted (index = label).
        names: the folded names of the split; ``targets`` their labels.

    Raises:
        DatasetNotFoundError: ``root/names`` is missing or holds no ``.txt`` file.
        DataFormatError: a file is not UTF-8, is empty, or has a line with no letter
            (:func:`read_names_file`).
        ConfigurationError: a bad argument.
    """

    splits = ("train", "test", "all")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        test_fraction: float = 0.2,
        seed: int = 0,
        deduplicate: bool = False,
        transform: Callable[[Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        owner = type(self).__name__
        if split not in self.splits:
            raise ConfigurationError(f"{owner}: split must be one of {self.splits}; got {split!r}")
        self.split = split
        self.test_fraction = check_real(
            f"{owner}: test_fraction", test_fraction, 0.0, 1.0, high_open=True
        )
        self.seed = check_int(f"{owner}: seed", seed, 0)
        self.deduplicate = check_flag(owner, "deduplicate", deduplicate)
        self.transform, self.target_transform = transform, target_transform
        self.root = Path(root)
        files = self._find_files()
        self.classes: tuple[str, ...] = tuple(path.stem for path in files)
        self.names: list[str] = []
        self.targets: list[int] = []
        for label, path in enumerate(files):
            names = read_names_file(path)
            distinct = list(dict.fromkeys(names))
            chosen = self._chosen(path.stem, distinct)
            for name in distinct if self.deduplicate else names:
                if name in chosen:
                    self.names.append(name)
                    self.targets.append(label)

    def _find_files(self) -> list[Path]:
        folder = self.root / "names"
        get = (
            f"Download {DATA_URL} (the PyTorch char-RNN tutorial's data), extract it and "
            "pass its data folder as root. Expected layout: root/names/<Language>.txt, "
            "one UTF-8 name per line"
        )
        if not folder.is_dir():
            hint = ""
            if self.root.is_dir() and any(self.root.glob("*.txt")):
                hint = " (root holds .txt files itself: pass the folder above it)"
            raise DatasetNotFoundError(
                f"names data not found: {shown_path(folder)} is not a folder{hint}. {get}"
            )
        files = sorted(p for p in folder.glob("*.txt") if p.is_file())
        if not files:
            raise DatasetNotFoundError(
                f"names data not found: {shown_path(folder)} holds no .txt file. {get}"
            )
        return files

    def _chosen(self, language: str, distinct: list[str]) -> set[str]:
        """The names of a language (its ``distinct`` ones, in file order) in this split."""
        n = len(distinct)
        if self.split == "all":
            return set(distinct)
        rng = np.random.default_rng([self.seed, zlib.crc32(language.encode("utf-8"))])
        held_out = set(rng.permutation(n)[: _test_count(n, self.test_fraction)].tolist())
        return {
            name for i, name in enumerate(distinct) if (i in held_out) == (self.split == "test")
        }

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[Tensor, Any]:
        x: Any = encode_name(self.names[index])
        y: Any = self.targets[index]
        if self.transform is not None:
            x = self.transform(x)
        if self.target_transform is not None:
            y = self.target_transform(y)
        return x, y

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"{len(self)} names, {len(self.classes)} languages)"
        )
