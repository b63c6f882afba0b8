"""ImageNet's images where they were downloaded, without extracting them: the official
archives read in place (an index of each image's bytes, cached), and the label files of
Kaggle's "ImageNet Object Localization Challenge" layout. Used by
:class:`~spikeflow.data.datasets.imagenet.ImageNet`.

* ``ILSVRC2012_img_train.tar``: an uncompressed tar of 1,000 uncompressed
  ``<wnid>.tar``, each holding that class's JPEGs. Every image is one contiguous byte
  range of the outer file (:mod:`spikeflow.data.io.tar_index`).
* ``ILSVRC2012_img_val.tar``: the 50,000 ``ILSVRC2012_val_<8 digits>.JPEG``, flat.
* Kaggle: ``ILSVRC/Data/CLS-LOC/{train/<wnid>/, val/}``, ``LOC_val_solution.csv``
  (``ImageId,PredictionString``; the first token of the prediction string is the
  image's WNID) and ``LOC_synset_mapping.txt`` (``<wnid> <words>`` per line).

**The index cache.** Indexing reads every member's 512-byte header (1.28 million for the
training archive: about 10 µs each here with the archive in the page cache, more when
each header is a disk seek), so the index is kept: in ``<cache_dir>/tar-indexes/``
when the dataset has a ``cache_dir``, else next to the archive as
``<archive>.spikeflow-index.npz``; written atomically, used while the archive keeps its
size and modification time, not written while the archive changed within the last 2
seconds (it may still be being copied), and rebuilt, with a
:class:`~spikeflow.data.cache.CacheCorruptionWarning`, when unreadable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeflow.data.cache import CacheCorruptionWarning, default_cache_dir
from spikeflow.data.datasets._common import listing_text
from spikeflow.data.datasets.image_folder import FileListing, read_npz_cache, write_npz_cache
from spikeflow.data.io.tar_index import index_tar
from spikeflow.errors import DataFormatError

__all__ = [
    "ArchiveContents",
    "ArchiveListing",
    "archive_contents",
    "read_synset_mapping",
    "read_val_solution",
]

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
#: Kaggle's image folders, ``train/`` and ``val/``, under ``root``.
KAGGLE_FOLDER = "ILSVRC/Data/CLS-LOC"
KAGGLE_VAL_SOLUTION = "LOC_val_solution.csv"
KAGGLE_SYNSETS = "LOC_synset_mapping.txt"
#: Bump when the index's content or order changes, so old cache files miss.
INDEX_VERSION = 1
INDEX_SUFFIX = ".spikeflow-index.npz"
#: A WordNet ID: ``n`` and 8 ASCII digits (``\d`` would take any script's digits).
WNID = re.compile(r"n[0-9]{8}")


@dataclass(frozen=True)
class ArchiveListing(FileListing):
    """A :class:`~spikeflow.data.datasets.image_folder.FileListing` of images inside
    an archive: ``relative(i)`` is the member's name (``<wnid>.tar/<image>`` in the
    training archive), and its bytes are ``sizes[i]`` bytes at ``data_offsets[i]`` of
    the archive, which had ``identity`` (size, st_mtime_ns) when indexed."""

    data_offsets: np.ndarray
    sizes: np.ndarray
    identity: tuple[int, int]


@dataclass(frozen=True)
class ArchiveContents:
    """The indexed images of an archive, sorted by (inner tar, name) -- the order of
    the extracted class folders' listing.

    Attributes:
        blob, offsets: the member names (UTF-8 / file-system bytes concatenated, name
            ``i`` at ``blob[offsets[i]:offsets[i + 1]]``).
        data_offsets, sizes: int64, where each image's bytes lie in the archive.
        groups: int64, each image's inner tar (an index of ``group_names``).
        group_names: the inner tars (``("",)`` for a flat archive).
        identity: the archive's (size, st_mtime_ns) when indexed.
    """

    blob: np.ndarray
    offsets: np.ndarray
    data_offsets: np.ndarray
    sizes: np.ndarray
    groups: np.ndarray
    group_names: tuple[str, ...]
    identity: tuple[int, int]

    def __len__(self) -> int:
        return int(self.sizes.shape[0])

    def names(self) -> list[str]:
        """Every member's name."""
        raw = self.blob.tobytes()
        return [os.fsdecode(raw[a:b]) for a, b in zip(self.offsets[:-1], self.offsets[1:])]


def _image_filter(extensions: Sequence[str]) -> Callable[[str], bool]:
    ends = tuple(e.lower() for e in extensions)

    def keep(name: str) -> bool:
        base = name.rsplit("/", 1)[-1]  # hidden files (macOS's ._x.JPEG) are skipped
        return not base.startswith(".") and base.lower().endswith(ends)

    return keep


def _name_order(blob: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, int]:
    """The order that sorts the names ``blob[bounds[i]:bounds[i + 1]]`` as strings
    (``os.fsdecode``: by code point), stable, and the first position ``j`` of that
    order whose name is also the next one's (-1: no name twice).

    UTF-8 bytes sort as their code points, so names that are UTF-8 (and hold no NUL,
    which numpy's byte strings drop) are sorted by numpy as fixed-width byte strings,
    filled a chunk at a time: no Python object per name. Others (undecodable bytes,
    one name far longer than the rest) are sorted as Python strings."""
    n = bounds.shape[0] - 1
    if n == 0:
        return np.zeros(0, np.int64), -1
    base = int(bounds[0])
    view = memoryview(blob)
    width = max(int(np.diff(bounds[k : k + _CHUNK + 1]).max()) for k in range(0, n, _CHUNK))
    fits = width * n <= 2 * (bounds[-1] - base) + (1 << 20)  # not one huge name
    keys: np.ndarray | None = np.empty(n, f"S{width}") if fits else None
    for k in range(0, n if fits else 0, _CHUNK):
        spans = bounds[k : k + _CHUNK + 1].tolist()
        raw = view[spans[0] : spans[-1]].tobytes()
        starts = np.frombuffer(raw, np.uint8)[np.subtract(spans[:-1], spans[0])]
        if b"\x00" in raw or ((starts & 0xC0) == 0x80).any() or not _is_utf8(raw):
            keys = None  # a NUL, a character cut between names, undecodable bytes
            break
        keys[k : k + len(spans) - 1] = [raw[a - spans[0] : b - spans[0]]
                                        for a, b in itertools.pairwise(spans)]  # fmt: skip
    if keys is None:
        spans = (bounds - base).tolist()
        raw = view[base : int(bounds[-1])].tobytes()
        texts = [os.fsdecode(raw[a:b]) for a, b in itertools.pairwise(spans)]
        order = sorted(range(n), key=texts.__getitem__)
        twice = (j for j in range(n - 1) if texts[order[j]] == texts[order[j + 1]])
        return np.asarray(order, np.int64), next(twice, -1)
    order = np.argsort(keys, kind="stable")
    for k in range(0, n - 1, _CHUNK):
        run = keys[order[k : k + _CHUNK + 1]]
        same = np.flatnonzero(run[1:] == run[:-1])
        if same.size:
            return order, k + int(same[0])
    return order, -1


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


#: Names handled at a time where each becomes a Python object.
_CHUNK = 1 << 12


def _index(archive: Path, nested: bool, extensions: Sequence[str],
           identity: tuple[int, int]) -> ArchiveContents:  # fmt: skip
    """Index ``archive`` and sort it by (inner tar, name): arrays throughout, each
    inner tar's names sorted on their own (the peak is about twice the final arrays)."""
    found = index_tar(archive, _image_filter(extensions), nested)
    twice = [name for name, count in Counter(found.group_names).items() if count > 1]
    if twice:
        raise DataFormatError(f"{archive}: holds member {twice[0]} twice")
    blob, bounds, starts = found.blob, found.name_offsets, found.group_starts.tolist()
    data_offsets, sizes, group_names = found.offsets, found.sizes, found.group_names
    del found  # each array is dropped once it is no longer needed
    prefixes = [os.fsencode(f"{g}/") if nested else b"" for g in group_names]
    counts = np.diff(starts)
    n = int(counts.sum())
    view = memoryview(blob)
    ranked = sorted(range(len(group_names)), key=group_names.__getitem__)
    take = np.empty(n if len(ranked) > 1 else 0, np.int64)  # the members in sorted order
    pos = 0
    for g in ranked:
        first = starts[g]
        order, same = _name_order(blob, bounds[first : starts[g + 1] + 1])
        if same >= 0:  # extracting keeps one: not that layout
            a, b = first + int(order[same]), first + int(order[same + 1])
            name = os.fsdecode(view[bounds[a] : bounds[a + 1]].tobytes())
            name = f"{group_names[g]}/{name}" if nested else name
            raise DataFormatError(f"{archive}: holds member {name} twice (data at bytes "
                                  f"{data_offsets[a]} and {data_offsets[b]})")  # fmt: skip
        if order.size == n:
            take = order  # one inner tar (a flat archive): no copy
        else:
            take[pos : pos + order.size] = order + first
        pos += order.size
        del order
    out = np.empty(int(bounds[-1]) + sum(len(p) * int(c) for p, c in zip(prefixes, counts)),
                   np.uint8)  # fmt: skip
    offsets = np.zeros(n + 1, np.int64)
    pos = 0
    for g in ranked:  # the names in that order, each after its inner tar's name
        prefix, stop = prefixes[g], pos + int(counts[g])
        for k in range(pos, stop, _CHUNK):
            chosen = take[k : min(k + _CHUNK, stop)]
            lo, hi = bounds[chosen], bounds[chosen + 1]
            part = prefix + prefix.join([view[a:b] for a, b in zip(lo.tolist(), hi.tolist())])
            at = int(offsets[k])
            out[at : at + len(part)] = np.frombuffer(part, np.uint8)
            offsets[k + 1 : k + 1 + chosen.size] = at + np.cumsum(hi - lo + len(prefix))
        pos = stop
    del view, blob, bounds
    data_offsets = data_offsets[take]
    sizes = sizes[take]
    del take
    groups = np.repeat(np.asarray(ranked, np.int64), counts[ranked])
    return ArchiveContents(out, offsets, data_offsets, sizes, groups, group_names, identity)


def _cache_path(archive: Path, nested: bool, extensions: Sequence[str],
                cache_dir: str | os.PathLike | None) -> Path:  # fmt: skip
    if cache_dir is None:
        return archive.with_name(archive.name + INDEX_SUFFIX)
    base = default_cache_dir() if cache_dir == "auto" else Path(cache_dir)
    key = json.dumps({"archive": str(archive.resolve()), "nested": nested,
                      "extensions": sorted(extensions), "version": INDEX_VERSION},
                     sort_keys=True)  # fmt: skip
    return base / "tar-indexes" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"


def _meta(nested: bool, extensions: Sequence[str], identity: tuple[int, int]) -> dict:
    return {"nested": nested, "extensions": sorted(extensions), "version": INDEX_VERSION,
            "identity": list(identity)}  # fmt: skip


def _check_cached(arrays: dict[str, np.ndarray], stored: object) -> tuple[str, ...]:
    """The group names of a cache file's ``stored`` metadata; ValueError when its
    arrays are not an index of an archive of ``stored["identity"][0]`` bytes (a foreign,
    damaged or hostile file: its offsets are read at)."""
    if not isinstance(stored, dict):
        raise ValueError("its metadata is not a JSON object")
    groups, identity = stored.get("group_names"), stored.get("identity")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ValueError("its group names are not a list of strings")
    if not isinstance(identity, list) or len(identity) != 2:
        raise ValueError("its archive identity is not (size, mtime)")
    dtypes = {"blob": np.uint8, "offsets": np.int64, "data_offsets": np.int64,
              "sizes": np.int64, "groups": np.int64}  # fmt: skip
    bad = [k for k, dtype in dtypes.items() if arrays[k].dtype != dtype or arrays[k].ndim != 1]
    if bad:
        raise ValueError(f"its {bad[0]} array is not a 1-D {np.dtype(dtypes[bad[0]])} array")
    n = arrays["sizes"].shape[0]
    offsets, data, sizes = arrays["offsets"], arrays["data_offsets"], arrays["sizes"]
    if (any(arrays[k].shape != (n,) for k in ("data_offsets", "groups"))
            or offsets.shape != (n + 1,) or offsets[0] != 0
            or offsets[-1] != arrays["blob"].size or (np.diff(offsets) < 0).any()):  # fmt: skip
        raise ValueError("its arrays do not match")
    if n and (data.min() < 0 or sizes.min() < 0 or (data > identity[0] - sizes).any()):
        raise ValueError("its byte ranges are not inside the archive")
    if n and not 0 <= arrays["groups"].min() <= arrays["groups"].max() < len(groups):
        raise ValueError("its group numbers do not match its groups")
    return tuple(groups)


def _read_cached(path: Path, meta: dict) -> ArchiveContents | None:
    if not path.is_file():
        return None
    try:
        arrays, stored = read_npz_cache(
            path, ("blob", "offsets", "data_offsets", "sizes", "groups")
        )
        if isinstance(stored, dict) and {**stored, "group_names": None} != {
                **meta, "group_names": None}:  # fmt: skip
            return None  # another archive version, other extensions: stale
        groups = _check_cached(arrays, stored)
        offsets = arrays["offsets"]
    except Exception as exc:  # a truncated, foreign or hostile file: index again
        warnings.warn(f"archive index cache {path} is unreadable ({exc}); indexing again",
                      CacheCorruptionWarning, stacklevel=4)  # fmt: skip
        return None
    return ArchiveContents(arrays["blob"], offsets, arrays["data_offsets"], arrays["sizes"],
                           arrays["groups"], groups, tuple(meta["identity"]))  # fmt: skip


def _write_cached(path: Path, contents: ArchiveContents, meta: dict) -> None:
    write_npz_cache(
        path, contents.identity[1],  # an archive changed just now may still be being copied
        {"blob": contents.blob, "offsets": contents.offsets,
         "data_offsets": contents.data_offsets, "sizes": contents.sizes,
         "groups": contents.groups},
        {**meta, "group_names": list(contents.group_names)},
        f"cannot write the archive index {path}: {{exc}} (cache_dir='auto' or a writable "
        "cache_dir keeps it)", stacklevel=4,
    )  # fmt: skip


def archive_contents(
    archive: Path,
    nested: bool,
    extensions: Sequence[str],
    cache_dir: str | os.PathLike | None,
) -> ArchiveContents:
    """The images (members ending in one of ``extensions``, case-insensitive; hidden
    names skipped) of an uncompressed tar (``nested``: a tar of uncompressed tars),
    sorted by inner tar then name, through the index cache of the module docstring
    (``cache_dir``: ``"auto"`` the user cache folder, a folder, or None: next to the
    archive).

    Raises:
        DataFormatError: what :func:`~spikeflow.data.io.tar_index.index_tar` refuses
            (a corrupt, truncated or compressed archive or inner tar, a link or other
            non-regular member), an inner tar twice.
    """
    stat = archive.stat()
    identity = (stat.st_size, stat.st_mtime_ns)
    meta = _meta(nested, extensions, identity)
    path = _cache_path(archive, nested, extensions, cache_dir)
    contents = _read_cached(path, meta)
    if contents is None:
        contents = _index(archive, nested, extensions, identity)
        _write_cached(path, contents, meta)
    return contents


# -- Kaggle's label files -----------------------------------------------------------------


def read_synset_mapping(path: Path, classes: int = 1000) -> dict[str, str]:
    """WNID -> words from Kaggle's ``LOC_synset_mapping.txt`` (``<wnid> <words>`` per
    line, e.g. ``n01440764 tench, Tinca tinca``; a UTF-8 byte-order mark, CRLF line
    ends and a tab after the WNID are read too), in file order.

    Raises:
        DataFormatError: a line that is not a WNID (``n`` and 8 digits), a space and
            words, or whose WNID repeats (the file and line named); not ``classes``
            lines.
    """
    text = listing_text(path)
    words: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        wnid, _, names = line.strip().replace("\t", " ", 1).partition(" ")
        if WNID.fullmatch(wnid) is None or not names.strip():
            raise DataFormatError(f"{path}: line {number}: {line[:40]!r} is not '<wnid> <words>' "
                                  "(a WNID is n and 8 digits)")  # fmt: skip
        if wnid in words:
            raise DataFormatError(f"{path}: line {number}: WNID {wnid} appears twice")
        words[wnid] = names.strip()
    if len(words) != classes:
        raise DataFormatError(f"{path}: {len(words)} synsets; expected {classes}")
    return words


def read_val_solution(path: Path, wnids: Collection[str] | None = None) -> dict[str, str]:
    """ImageId -> WNID from Kaggle's ``LOC_val_solution.csv`` (header
    ``ImageId,PredictionString``; the WNID is the prediction string's first token, the
    rest its boxes; a UTF-8 byte-order mark, CRLF line ends and quoted fields are read).

    Args:
        path: the file.
        wnids: the classes; a row labelled otherwise is refused (None: any WNID).

    Raises:
        DataFormatError: another header, a row without two fields, an empty ImageId, a
            first token that is not a WNID (or not one of ``wnids``), an ImageId twice;
            the file and line named.
    """
    known = None if wnids is None else set(wnids)
    text = listing_text(path)
    # strict: a quoted field left open (a file cut short) is an error, not a row
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    labels: dict[str, str] = {}
    try:
        for row in reader:
            number = reader.line_num
            if number == 1:
                if [f.strip() for f in row] != ["ImageId", "PredictionString"]:
                    raise DataFormatError(f"{path}: line 1: header {row!r}; expected "
                                          "ImageId,PredictionString")  # fmt: skip
                continue
            if not row or not "".join(row).strip():
                continue
            tokens = row[1].split() if len(row) == 2 else []
            if len(row) != 2 or not row[0].strip() or not tokens \
                    or WNID.fullmatch(tokens[0]) is None:  # fmt: skip
                raise DataFormatError(f"{path}: line {number}: {','.join(row)[:60]!r} is not "
                                      "'<ImageId>,<wnid> <box> ...'")  # fmt: skip
            image = row[0].strip()
            if known is not None and tokens[0] not in known:
                raise DataFormatError(f"{path}: line {number}: WNID {tokens[0]} is not one of "
                                      f"the {len(known)} classes")  # fmt: skip
            if image in labels:
                raise DataFormatError(f"{path}: line {number}: ImageId {image} appears twice")
            labels[image] = tokens[0]
    except csv.Error as exc:
        raise DataFormatError(f"{path}: line {reader.line_num}: {exc}") from None
    if not labels:
        raise DataFormatError(f"{path}: no label")
    return labels
