"""N-Omniglot (Li et al., Scientific Data 2022): the 1,623 handwritten characters of
Omniglot, their strokes replayed on a monitor and recorded by a DAVIS346; one AEDAT 4
recording per character holds its 20 drawers' samples, cut by a CSV of timestamps.

The format is that of the authors' loader (``data_loader/NOmniglot.py`` of
Brain-Cog-Lab/N-Omniglot; its conversion ``convert_aedat4_dir_to_events_dir`` is in their
BrainCog framework, ``braincog/datasets/NOmniglot/utils.py``):
``dvs_<set>/<alphabet>/character<NN>/<nnnn>.aedat4`` with ``<nnnn>.csv`` beside it (a
four-character stem), ``<set>`` ``background`` (Omniglot's 30 background alphabets, 964
characters) or ``evaluation`` (20 alphabets, 659 characters). The CSV has a header line,
then one row per drawer whose second and third columns are the timestamps (µs) of the
sample's first event and of the first event after it; the loader reads the events of the
recording's event stream and takes, for row ``i``, the events from the first one whose
timestamp equals the start to the first one whose timestamp equals the end (excluded),
for the first 20 rows.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow.data.datasets._common import listing_text, names_difference, shown_path
from spikeflow.data.datasets._cut import CutRecordingsDataset
from spikeflow.data.datasets._split import split_from_train
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.io.aedat4 import read_aedat4
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["NOMNIGLOT_ALPHABETS", "NOMNIGLOT_CLASSES", "NOmniglot", "read_nomniglot_csv"]

#: Omniglot's alphabets (Lake et al. 2015) and their numbers of characters, per set, in
#: sorted name order: the folders ``dvs_<set>/<alphabet>/character01 ...`` of N-Omniglot.
NOMNIGLOT_ALPHABETS: dict[str, dict[str, int]] = {
    "background": {
        "Alphabet_of_the_Magi": 20, "Anglo-Saxon_Futhorc": 29, "Arcadian": 26,
        "Armenian": 41, "Asomtavruli_(Georgian)": 40, "Balinese": 24, "Bengali": 46,
        "Blackfoot_(Canadian_Aboriginal_Syllabics)": 14, "Braille": 26,
        "Burmese_(Myanmar)": 34, "Cyrillic": 33, "Early_Aramaic": 22, "Futurama": 26,
        "Grantha": 43, "Greek": 24, "Gujarati": 48, "Hebrew": 22,
        "Inuktitut_(Canadian_Aboriginal_Syllabics)": 16, "Japanese_(hiragana)": 52,
        "Japanese_(katakana)": 47, "Korean": 40, "Latin": 26, "Malay_(Jawi_-_Arabic)": 40,
        "Mkhedruli_(Georgian)": 41, "N_Ko": 33, "Ojibwe_(Canadian_Aboriginal_Syllabics)": 14,
        "Sanskrit": 42, "Syriac_(Estrangelo)": 23, "Tagalog": 17, "Tifinagh": 55,
    },
    "evaluation": {
        "Angelic": 20, "Atemayar_Qelisayer": 26, "Atlantean": 26, "Aurek-Besh": 26,
        "Avesta": 26, "Ge_ez": 26, "Glagolitic": 45, "Gurmukhi": 45, "Kannada": 41,
        "Keble": 26, "Malayalam": 47, "Manipuri": 40, "Mongolian": 30,
        "Old_Church_Slavonic_(Cyrillic)": 45, "Oriya": 46, "Sylheti": 28,
        "Syriac_(Serto)": 23, "Tengwar": 25, "Tibetan": 42, "ULOG": 26,
    },
}  # fmt: skip

#: The 1,623 classes ``<alphabet>/character<NN>`` (index = label): the background set's
#: 964 (labels 0-963), then the evaluation set's 659 (964-1622), each alphabet's
#: characters in number order.
NOMNIGLOT_CLASSES: tuple[str, ...] = tuple(
    f"{alphabet}/character{k:02d}"
    for group in ("background", "evaluation")
    for alphabet, count in sorted(NOMNIGLOT_ALPHABETS[group].items())
    for k in range(1, count + 1)
)

_LABELS = {name: label for label, name in enumerate(NOMNIGLOT_CLASSES)}

#: Bump when the cut samples' content changes, so old cut caches miss.
CUT_VERSION = 1


def read_nomniglot_csv(path: str | os.PathLike, rows: int = 20) -> np.ndarray:
    """The ``(start, end)`` timestamps (µs, int64 ``[rows, 2]``) of an N-Omniglot CSV:
    columns 2 and 3 of the first ``rows`` lines after the header (blank lines skipped).

    Raises:
        DataFormatError: fewer rows, a row with fewer than 3 columns, a timestamp that
            is not an integer, or an end before its start.
    """
    text = listing_text(Path(path))
    lines = [r for r in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in r)]
    if len(lines) < rows + 1:
        raise DataFormatError(
            f"{path}: expected a header line and {rows} rows of sample timestamps, "
            f"found {max(len(lines) - 1, 0)} rows"
        )
    out = np.zeros((rows, 2), dtype=np.int64)
    for i, row in enumerate(lines[1 : rows + 1]):
        try:
            out[i] = int(row[1]), int(row[2])
        except (IndexError, ValueError):
            raise DataFormatError(
                f"{path}: row {i + 1} {row!r}: expected integer start and end timestamps "
                "in columns 2 and 3"
            ) from None
        if out[i, 1] < out[i, 0]:
            raise DataFormatError(
                f"{path}: row {i + 1}: end {out[i, 1]} is before start {out[i, 0]}"
            )
    return out


def _one_file(folder: Path, names: list[str], suffix: str) -> Path:
    """The file ``<nnnn><suffix>`` (a four-character stem) among ``names``, the entries
    of a character folder."""
    found = sorted(n for n in names if n.endswith(suffix) and len(n) == 4 + len(suffix))
    if len(found) != 1:
        raise DataFormatError(
            f"{folder}: expected one <nnnn>{suffix} file (a four-character name), found {found}"
        )
    return folder / found[0]


class NOmniglot(CutRecordingsDataset):
    """N-Omniglot (Li et al., Scientific Data 2022): 1,623 handwritten characters of 50
    alphabets, 20 drawers each (32,460 samples), DAVIS346 (346x260, 2 polarities); AEDAT 4
    recordings (:func:`~spikeflow.data.io.read_aedat4`) cut by CSV timestamps (module
    docstring).

    Layout: ``root/dvs_background/<alphabet>/character<NN>/<nnnn>.{aedat4,csv}`` and
    ``root/dvs_evaluation/...``; the background alphabets may also be split between
    ``dvs_background_1/`` and ``dvs_background_2/``, as the release's archives are named.
    The release (figshare, DOI 10.6084/m9.figshare.16821427) is three RAR archives,
    ``dvs_background_1.rar``, ``dvs_background_2.rar`` and ``dvs_evaluation.rar``, without
    published checksums, which spikeflow cannot extract: download and extract them into
    ``root`` yourself (unrar or 7-Zip).

    ``split``: ``"train"`` / ``"test"`` (``train=True`` / ``False``, the default
    ``"train"``) is the authors' classification set-up (their ``NOmniglotfull``): all
    1,623 characters, drawers 1-15 of each the training split and 16-20 the test split;
    ``"background"`` / ``"evaluation"`` are the few-shot sets, all 20 drawers of their
    964 / 659 characters. Labels are indices into :attr:`classes` in every split
    (evaluation characters 964-1622: the authors' evaluation labels plus 964, as their
    classification set-up numbers them). The authors list alphabets and drawers in
    directory-listing order, which the file system decides; spikeflow sorts the alphabet
    names and numbers characters and drawers (CSV rows) in order. Their loader crops
    frames to rows 4-253 and columns 54-303; spikeflow keeps the full sensor.

    Each recording is decoded once, on the first use of one of its samples, and its 20
    samples stored in an atomic, checksummed :class:`~spikeflow.data.ArrayCache` under
    ``cut_cache_dir`` (default: :func:`~spikeflow.data.default_cache_dir`), keyed by the
    recording's and the CSV's identity. Other arguments:
    :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (346, 260, 2)
    num_classes = 1623
    classes: ClassVar[tuple[str, ...]] = NOMNIGLOT_CLASSES
    splits: ClassVar[tuple[str, ...]] = ("train", "test", "background", "evaluation")
    homepage = "https://doi.org/10.6084/m9.figshare.16821427"
    layout = (
        "<root>/dvs_background/<alphabet>/character<NN>/<nnnn>.{aedat4,csv} (or the "
        "background alphabets split between dvs_background_1/ and dvs_background_2/) and "
        "<root>/dvs_evaluation/...; extract dvs_background_1.rar, dvs_background_2.rar and "
        "dvs_evaluation.rar with unrar or 7-Zip"
    )
    #: Samples (drawers) per character, and how many of them (the first) are training.
    drawers: ClassVar[int] = 20
    train_drawers: ClassVar[int] = 15
    #: The version of the cut (:data:`CUT_VERSION`): part of both caches' keys.
    cut_version: ClassVar[int] = CUT_VERSION
    sample_options: ClassVar[tuple[str, ...]] = ("cut_version",)

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool | None = None,
        split: str | None = None,
        *args: Any,
        cut_cache_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        split = split_from_train(split, train)
        if split not in self.splits:
            raise ConfigurationError(
                f"NOmniglot: split must be one of {self.splits}; got {split!r}"
            )
        self._split = split
        self._open_cut_cache(cut_cache_dir, "NOmniglot-cut")
        super().__init__(root, split == "train", *args, **kwargs)

    @property
    def split(self) -> str:
        """``"train"``, ``"test"``, ``"background"`` or ``"evaluation"``."""
        return self._split

    def _advice(self) -> str:
        return (
            "Its host needs a manual download, and spikeflow cannot extract RAR archives: "
            f"open {self.homepage}, download dvs_background_1.rar, dvs_background_2.rar and "
            f"dvs_evaluation.rar (figshare publishes no checksums for them) and extract them "
            f"into {self.root} with unrar or 7-Zip. Expected layout: {self.layout}"
        )

    def _set_folders(self, group: str) -> list[Path]:
        if group == "background":
            names = ["dvs_background", "dvs_background_1", "dvs_background_2"]
        else:
            names = ["dvs_evaluation"]
        return [self.root / n for n in names if (self.root / n).is_dir()]

    def _alphabet_folders(self, group: str) -> dict[str, Path]:
        """Each official alphabet of ``group`` -> its folder; checks that the folders
        found are exactly these."""
        official = NOMNIGLOT_ALPHABETS[group]
        found: dict[str, Path] = {}
        for parent in self._set_folders(group):
            for d in sorted(
                p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")
            ):
                if d.name in found:
                    raise DataFormatError(
                        f"N-Omniglot: alphabet {d.name!r} is in both {found[d.name]} and {d}"
                    )
                found[d.name] = d
        if set(found) != set(official):
            raise DataFormatError(
                f"N-Omniglot: the {group} set should hold Omniglot's {len(official)} {group} "
                f"alphabets; {names_difference(official, found)} (in "
                f"{[str(p) for p in self._set_folders(group)]}). The extraction is incomplete "
                "or this is not the official release"
            )
        return found

    def _find_samples(self) -> list[tuple[Path, int]]:
        groups = {"background": ["background"], "evaluation": ["evaluation"]}.get(
            self._split, ["background", "evaluation"]
        )

        absent = [g for g in groups if not self._set_folders(g)]
        if absent:
            raise DatasetNotFoundError(
                f"N-Omniglot not found: {shown_path(self.root / f'dvs_{absent[0]}')} does not "
                "exist. " + self._advice()
            )
        rows = range(self.drawers)
        if self._split == "train":
            rows = range(self.train_drawers)
        elif self._split == "test":
            rows = range(self.train_drawers, self.drawers)
        self.recordings: list[tuple[Path, Path, np.ndarray]] = []
        self._windows: list[tuple[int, int]] = []  # (recording, row) of each sample
        samples: list[tuple[Path, int]] = []
        for group in groups:
            for alphabet, folder in sorted(self._alphabet_folders(group).items()):
                count = NOMNIGLOT_ALPHABETS[group][alphabet]
                chars = sorted(p.name for p in folder.iterdir() if p.is_dir())
                expected = [f"character{k:02d}" for k in range(1, count + 1)]
                if chars != expected:
                    raise DataFormatError(
                        f"{folder}: expected the {count} folders character01 ... "
                        f"character{count:02d}, found {len(chars)}: "
                        f"{sorted(set(chars) ^ set(expected))[:5]} differ"
                    )
                for name in chars:
                    entries = os.listdir(folder / name)
                    aedat = _one_file(folder / name, entries, ".aedat4")
                    table = _one_file(folder / name, entries, ".csv")
                    times = read_nomniglot_csv(table, self.drawers)
                    label = _LABELS[f"{alphabet}/{name}"]
                    k = len(self.recordings)
                    self.recordings.append((aedat, table, times))
                    for row in rows:
                        self._windows.append((k, row))
                        samples.append((aedat, label))
        return samples

    def _cut_key(self, recording: int, row: int) -> dict[str, Any]:
        aedat, table, times = self.recordings[recording]
        return {
            "recording": self.source_identity(aedat),
            "csv": self.source_identity(table),
            "row": row,
            "start": int(times[row, 0]),
            "end": int(times[row, 1]),
        }

    def _cut(self, recording: int) -> int:
        """Decode one recording and store its samples; returns how many."""
        aedat, table, times = self.recordings[recording]
        ev = read_aedat4(aedat).events
        width, height = self.sensor_size[:2]
        outside = np.flatnonzero((ev["x"] >= width) | (ev["y"] >= height))
        if outside.size:
            i = int(outside[0])
            raise DataFormatError(
                f"{aedat}: event {i} at (x={ev['x'][i]}, y={ev['y'][i]}) lies outside the "
                f"DAVIS346's {width}x{height} sensor"
            )
        t = ev["t"]  # non-decreasing (read_aedat4 checks): the first match is a bisection
        for row, (start, end) in enumerate(times):
            bounds = []
            for what, value in (("start", start), ("end", end)):
                i = int(np.searchsorted(t, value, side="left"))
                if i == len(t) or t[i] != value:
                    raise DataFormatError(
                        f"{table}: row {row + 1}: the {what} timestamp {int(value)} is not the "
                        f"timestamp of an event of {aedat} (the authors' cut needs an exact match)"
                    )
                bounds.append(i)
            self._store_window(recording, row, ev[bounds[0] : bounds[1]])
        return len(times)
