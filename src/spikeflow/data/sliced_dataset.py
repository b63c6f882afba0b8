"""A dataset of slices: every recording of a dataset cut by a slicer, one sample per
slice (Tonic's ``tonic.SlicedDataset``).

The cuts are computed once, when the dataset is built, by reading every sample of the
wrapped dataset; with ``metadata_path`` they are kept on disk in a
:class:`~spikeflow.data.cache.ArrayCache` and read back the next time. The cache is
keyed by the slicer's parameters and by what identifies the wrapped dataset (see
:func:`dataset_key`), so a change to either computes the cuts anew instead of reading
stale ones; a damaged cache file is reported with a
:class:`~spikeflow.data.cache.CacheCorruptionWarning`, deleted and computed again; the
file is written atomically (a crash leaves no half-written cache).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from spikeflow.data._indexing import check_index
from spikeflow.data.cache import ArrayCache, CacheCorruptionWarning, canonical_key
from spikeflow.data.datasets.base import NeuromorphicDataset
from spikeflow.data.representations import _attributes, _value_key
from spikeflow.data.slicing import Slicer, _length, check_metadata
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["SLICE_METADATA_VERSION", "SlicedDataset", "dataset_key"]

#: Bump when the slicers' cuts change, so cached metadata misses.
SLICE_METADATA_VERSION = 1


def _is_dataset(value: Any) -> bool:
    return (
        hasattr(value, "__getitem__")
        and hasattr(value, "__len__")
        and not isinstance(value, (str, bytes, list, tuple, dict, np.ndarray, torch.Tensor))
    )


def _real_path(text: str, st: os.stat_result, dirs: dict[str, str]) -> str:
    """The real (symlink-free, absolute) path of ``text``, which ``os.lstat`` gave ``st``:
    its folder's real path (resolved once per folder, in ``dirs``) and its own name, or,
    for a link, the link resolved (``os.path.realpath`` walks every component: ~60 us a
    path, which a list of 10^5 files would pay ten times over)."""
    head, name = os.path.split(text)
    if stat.S_ISLNK(st.st_mode) or name in ("", ".", ".."):
        return os.path.realpath(text)
    folder = dirs.get(head)
    if folder is None:
        folder = dirs[head] = os.path.realpath(head or os.curdir)
    return os.path.join(folder, name)


def _path_key(value: str | os.PathLike, dirs: dict[str, str], bare: bool = False) -> Any:
    """The key of a string or path that names an existing file or folder, or None when
    it names none (most strings, and without a ``stat`` those with neither a separator
    nor a dot unless ``bare``, as a dataset's own attribute is: its ``root="data"``;
    a name too long or with a NUL byte).

    Both count by their real path (symbolic links followed, a relative path resolved
    against the working directory: the file a read would open now), so a link pointed
    at another copy, or a relative path used from another folder, is another key. A
    file: ``{"file": real path, "size", "mtime_ns"}`` (one ``stat``, no read). A folder:
    the key its real path would have as a plain value (the repr of that path), so a
    folder named by its real absolute path keeps the key it always had."""
    try:
        text = os.fspath(value)
        if not isinstance(text, str) or not text or len(text) > 4096:
            return None
        altsep = os.altsep or os.sep  # Windows: "/" beside "\\"
        if (not bare and isinstance(value, str) and "." not in text
                and os.sep not in text and altsep not in text):  # fmt: skip
            return None  # "train", "label3" in a list: not worth a failed stat each
        st = os.lstat(text)
        real = _real_path(text, st, dirs)
        if stat.S_ISLNK(st.st_mode):
            st = os.stat(real)
    except (OSError, ValueError, TypeError):
        return None
    if stat.S_ISREG(st.st_mode):
        return {"file": real, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if stat.S_ISDIR(st.st_mode) and isinstance(value, (str, PurePath)):
        return repr(real if isinstance(value, str) else type(value)(real))
    return None


def dataset_key(
    dataset: Any, _seen: frozenset[int] = frozenset(), _dirs: dict[str, str] | None = None
) -> Any:
    """A JSON-able identity of a map-style dataset, for the slice metadata cache.

    - a dataset with a ``cache_key()`` method: what it returns;
    - a :class:`~spikeflow.data.NeuromorphicDataset`: its class, split, ``data_type``,
      sample options, representation, ``event_transform`` and ``transform``, and every
      sample's label and identity (its
      :meth:`~spikeflow.data.NeuromorphicDataset.cache_entry_key`: its file's path, size
      and modification time, or content hash, plus its row or window in that file); so
      an edited, added or removed file changes the key;
    - a list or tuple of ``(data, target)`` pairs: its items, by the rule below;
    - any other dataset: its class, its length and its attributes (arrays and tensors by
      content, datasets among them, such as a ``Subset``'s, by this same rule, objects
      with a ``cache_key()`` by it, dataclasses such as EventRecordings field by field,
      lists, tuples and dicts item by item, a string or path that names an existing
      file by that file's real path (symbolic links followed, a relative path resolved
      against the working directory), size and modification time (:func:`_path_key`:
      Tonic's datasets keep their files' paths in a list, so an edited file, or a link
      pointed at another copy, is a miss), one that names a folder by the folder's real
      path (a bare name such as ``"data"`` is looked up as an attribute of its own, not
      inside a list: labels), callables by what they compute (a function's code,
      defaults and closure; an instance with ``__call__`` by its class, that method's
      code and its attributes), other values by their repr). Files such a dataset finds
      itself (by listing a folder it holds) count by the folder's real path only, a
      value whose repr elides its content (a pandas DataFrame) counts by what its repr
      shows, and an attribute that changes as it is used (a counter, a memo) makes every
      construction a miss: give such a dataset a ``cache_key()``.
    """
    if id(dataset) in _seen:
        return f"<recursive {type(dataset).__qualname__}>"
    seen = _seen | {id(dataset)}
    dirs: dict[str, str] = {} if _dirs is None else _dirs  # folder -> its real path
    cls = f"{type(dataset).__module__}.{type(dataset).__qualname__}"
    if callable(getattr(dataset, "cache_key", None)):
        return {"class": cls, "cache_key": dataset.cache_key()}
    if isinstance(dataset, NeuromorphicDataset):
        rep = dataset.representation
        options = {}
        for name in dataset.sample_options:
            value = getattr(dataset, name)
            options[name] = (
                value.cache_key() if callable(getattr(value, "cache_key", None)) else value
            )
        return {
            "class": cls,
            "split": dataset.split,
            "data_type": dataset.data_type,
            "sample_options": _value_key(options),
            "representation": None if rep is None else rep.cache_key(),
            "event_transform": _value_key(dataset.event_transform),
            "transform": _value_key(dataset.transform),
            "samples": [[dataset.cache_entry_key(i), _value_key(label)]
                        for i, (_, label) in enumerate(dataset.samples)],
        }  # fmt: skip

    def value(v: Any, inside: frozenset[int] = seen, attribute: bool = False) -> Any:
        if _is_dataset(v):
            return dataset_key(v, inside, dirs)
        if id(v) in inside:
            return f"<recursive {type(v).__qualname__}>"
        if isinstance(v, (list, tuple)):
            return [value(x, inside | {id(v)}) for x in v]
        if isinstance(v, dict):
            return {repr(k): value(x, inside | {id(v)})
                    for k, x in sorted(v.items(), key=repr)}  # fmt: skip
        if isinstance(v, (str, os.PathLike)):
            found = _path_key(v, dirs, bare=attribute)
            if found is not None:
                return found
        if callable(getattr(v, "cache_key", None)) and not callable(v):  # a slicer, say
            return {"class": f"{type(v).__module__}.{type(v).__qualname__}",
                    "cache_key": v.cache_key()}  # fmt: skip
        if dataclasses.is_dataclass(v) and not isinstance(v, type):  # repr elides arrays
            fields = {f.name: value(getattr(v, f.name), inside | {id(v)})
                      for f in dataclasses.fields(v)}  # fmt: skip
            return {"class": f"{type(v).__module__}.{type(v).__qualname__}", "fields": fields}
        return _value_key(v, inside)

    if isinstance(dataset, (list, tuple)):  # a plain list of (data, target) pairs
        return {"class": cls, "length": len(dataset), "items": [value(x) for x in dataset]}
    attributes = sorted(_attributes(dataset).items())
    return {
        "class": cls,
        "length": len(dataset),
        "attributes": {k: value(v, attribute=True) for k, v in attributes},
    }


def _check_deterministic(dataset: Any, _seen: frozenset[int] = frozenset()) -> None:
    """Refuse a random ``event_transform`` or ``transform`` of ``dataset`` or of a dataset
    it wraps (a ``Subset``'s, a ``ConcatDataset``'s, any dataset among its attributes)."""
    if id(dataset) in _seen:
        return
    seen = _seen | {id(dataset)}
    for name in ("event_transform", "transform"):
        fn = getattr(dataset, name, None)
        if getattr(fn, "random", False) is True:
            which = "" if not _seen else f" (of the {type(dataset).__name__} it wraps)"
            raise ConfigurationError(
                f"SlicedDataset: the wrapped dataset's {name} {fn!r}{which} is random, so the "
                "events read for a slice would not be those its cuts were computed on: give "
                "it to SlicedDataset(transform=...) instead, which is applied to each slice"
            )
    if isinstance(dataset, NeuromorphicDataset):
        return
    for v in _attributes(dataset).values():
        for inner in v if isinstance(v, (list, tuple)) else (v,):
            if not _is_dataset(inner):
                break  # a list of datasets (ConcatDataset's) or none (file paths, ...)
            _check_deterministic(inner, seen)


def _pair(item: Any, index: int, owner: str = "SlicedDataset") -> tuple[Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ConfigurationError(
            f"{owner}: dataset[{index}] returned {type(item).__name__}"
            f"{f' of length {len(item)}' if isinstance(item, (tuple, list)) else ''}; "
            "a (data, target) pair was expected"
        )
    return item[0], item[1]


class SlicedDataset(torch.utils.data.Dataset):
    """Every sample of ``dataset`` cut by ``slicer``: one sample per slice, yielding
    ``(transform(piece), target_transform(target))`` (Tonic's ``SlicedDataset``).

    Slices come in order: those of sample 0, then those of sample 1, and so on (a sample
    that gives no slice gives none); every slice keeps its sample's target. Reading a
    slice reads its whole sample (``dataset[i]``) and cuts it.

    Args:
        dataset: a map-style dataset whose items are ``(data, target)`` pairs: a spikeflow
            dataset with ``data_type="event"`` (data: EventRecordings), a dataset of
            structured event arrays, or, for the count slicers, of arrays or tensors cut
            along their first axis (frames). Its own transforms run before slicing and must
            not be random (refused: the cuts would not fit the events read later).
        slicer: a :class:`~spikeflow.data.slicing.Slicer` (``SliceByTime``, ...).
        metadata_path: a folder (created when missing) to cache the cuts in, or ``None``
            to compute them every time; one folder may hold the caches of several
            datasets and slicers (each is a file of its own, keyed as the module
            docstring says).
        transform: applied to each slice, e.g. ``ToFrame(10)`` for frames, frame
            augmentations, random event transforms.
        target_transform: applied to each target.

    Attributes:
        sample_index: int64 ``[len(self)]``, the wrapped sample each slice comes from.
        slice_bounds: int64 ``[len(self), 2]``, each slice's ``(start, stop)`` in it.
    """

    def __init__(
        self,
        dataset: Any,
        slicer: Slicer,
        metadata_path: str | os.PathLike | None = None,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if not isinstance(slicer, Slicer):
            hint = ""
            if type(slicer).__module__.startswith("tonic"):
                hint = " (a Tonic slicer: use spikeflow.data's class of the same name)"
            raise ConfigurationError(
                f"SlicedDataset: slicer must be a spikeflow.data.slicing.Slicer such as "
                f"SliceByTime; got {type(slicer).__name__}{hint}"
            )
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise ConfigurationError(
                f"SlicedDataset: dataset must be a map-style dataset (__len__ and "
                f"__getitem__); got {type(dataset).__name__}"
            )
        for name, fn in (("transform", transform), ("target_transform", target_transform)):
            if fn is not None and not callable(fn):
                raise ConfigurationError(f"SlicedDataset: {name} must be callable; got {fn!r}")
        _check_deterministic(dataset)
        self.dataset = dataset
        self.slicer = slicer
        self.transform = transform
        self.target_transform = target_transform
        if metadata_path is not None and not os.fspath(metadata_path):
            raise ConfigurationError(
                "SlicedDataset: metadata_path is an empty path (it would cache in the "
                "working directory); give a folder, or None not to cache the cuts"
            )
        self.metadata_path = None if metadata_path is None else Path(metadata_path)
        if self.metadata_path is not None and self.metadata_path.exists():
            if not self.metadata_path.is_dir():
                raise ConfigurationError(
                    f"SlicedDataset: metadata_path {str(self.metadata_path)!r} is a file; it "
                    "must be a folder to keep the slice metadata in"
                )
        table = self._load_or_compute()
        self.sample_index: np.ndarray = np.ascontiguousarray(table[:, 0])
        self.slice_bounds: np.ndarray = np.ascontiguousarray(table[:, 1:])

    # -- metadata ------------------------------------------------------------------------
    def compute_metadata(self) -> np.ndarray:
        """Read every sample and cut it: int64 ``[n_slices, 3]`` rows of ``(sample,
        start, stop)``."""
        tables = [np.zeros((0, 3), dtype=np.int64)]
        owner = f"SlicedDataset: {type(self.slicer).__name__}.get_slice_metadata"
        for i in range(len(self.dataset)):
            data, _ = _pair(self.dataset[i], i)
            meta = self.slicer.get_slice_metadata(data)
            meta = check_metadata(f"{owner} of dataset[{i}]", meta, _length(owner, data))
            rows = np.empty((len(meta), 3), dtype=np.int64)
            rows[:, 0] = i
            rows[:, 1:] = meta
            tables.append(rows)
        return np.concatenate(tables)

    def cache_namespace(self) -> dict[str, Any]:
        """What the cached cuts are keyed by: the slicer's ``cache_key()``, the wrapped
        dataset's class and length and a SHA-256 of :func:`dataset_key`, and
        :data:`SLICE_METADATA_VERSION`."""
        identity = canonical_key({"dataset": dataset_key(self.dataset)})
        return {
            "name": "slices",
            "slicer": self.slicer.cache_key(),
            "dataset": f"{type(self.dataset).__module__}.{type(self.dataset).__qualname__}",
            "samples": len(self.dataset),
            "dataset_sha256": hashlib.sha256(identity.encode()).hexdigest(),
            "version": SLICE_METADATA_VERSION,
        }

    def _valid(self, table: np.ndarray) -> str | None:
        """What is wrong with a table of cuts, or None."""
        if table.ndim != 2 or table.shape[1] != 3 or table.dtype.kind not in "iu":
            return f"not [n, 3] integers but {table.dtype} {list(table.shape)}"
        sample, start, stop = table.T.astype(np.int64)
        if len(table) and (sample.min() < 0 or sample.max() >= len(self.dataset)):
            return "a sample index out of range"
        if (np.diff(sample) < 0).any() or (start < 0).any() or (stop < start).any():
            return "rows out of order or a slice that ends before it starts"
        return None

    def _load_or_compute(self) -> np.ndarray:
        if self.metadata_path is None:
            return self.compute_metadata()
        cache = ArrayCache(self.metadata_path, self.cache_namespace())
        key = {"what": "slice metadata"}
        table = cache.get_or_compute(key, self.compute_metadata).astype(np.int64)
        problem = self._valid(table)
        if problem is not None:  # a checksummed entry that is still wrong: rebuild it
            warnings.warn(
                f"slice metadata {cache.path_for(key)}: {problem}; computing it again",
                CacheCorruptionWarning, stacklevel=3,
            )  # fmt: skip
            table = self.compute_metadata()
            try:
                cache.store(key, table)
            except OSError as exc:
                warnings.warn(f"could not write {cache.path_for(key)}: {exc}", RuntimeWarning,
                              stacklevel=3)  # fmt: skip
        return table

    @property
    def metadata(self) -> list[np.ndarray]:
        """The cuts of every wrapped sample: a list (one entry per sample) of int64
        ``[n_i, 2]`` ``(start, stop)`` arrays, as Tonic's ``SlicedDataset.metadata``."""
        counts = np.bincount(self.sample_index, minlength=len(self.dataset))
        if len(counts) == 0:  # no samples: no cuts (np.split would give one empty array)
            return []
        return np.split(self.slice_bounds, np.cumsum(counts)[:-1])

    # -- the dataset ---------------------------------------------------------------------
    @property
    def classes(self) -> Any:
        """The wrapped dataset's ``classes`` (class names, index = label)."""
        try:
            return self.dataset.classes
        except AttributeError:
            raise AttributeError(
                f"the wrapped dataset ({type(self.dataset).__name__}) has no 'classes'"
            ) from None

    @property
    def targets(self) -> list[Any]:
        """The target of every slice (its sample's), from the wrapped dataset's
        ``targets``, before ``target_transform``."""
        try:
            targets = self.dataset.targets
        except AttributeError:
            raise AttributeError(
                f"the wrapped dataset ({type(self.dataset).__name__}) has no 'targets'"
            ) from None
        return [targets[i] for i in self.sample_index.tolist()]

    def __len__(self) -> int:
        return len(self.sample_index)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = check_index("SlicedDataset", index, len(self), "slices")
        sample = int(self.sample_index[index])
        start, stop = (int(v) for v in self.slice_bounds[index])
        data, target = _pair(self.dataset[sample], sample)
        length = _length("SlicedDataset", data)
        if stop > length:
            where = f" (delete the cache in {self.metadata_path})" if self.metadata_path else ""
            raise DataFormatError(
                f"SlicedDataset: sample {sample} has {length} items now, but slice {index} "
                f"ends at {stop}: the dataset changed after its cuts were computed{where}"
            )
        piece = self.slicer.slice_with_metadata(data, [[start, stop]])[0]
        if self.transform is not None:
            piece = self.transform(piece)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return piece, target

    def __repr__(self) -> str:
        return (
            f"SlicedDataset(dataset={self.dataset!r}, slicer={self.slicer!r}, slices={len(self)})"
        )
