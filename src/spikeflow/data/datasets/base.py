"""The base class of spikeflow's neuromorphic datasets.

A dataset yields ``(sample, label)`` with ``sample`` either the decoded
:class:`~spikeflow.data.EventRecording` (``data_type="event"``) or a float32 tensor of
frames ``[T, C, H, W]`` (``data_type="frame"``; ``C = 2`` polarity channels for the DVS
datasets). A ``DataLoader`` batches frames to ``[B, T, C, H, W]``; spikeflow's
multi-step layers are time-major, so make the batch ``[T, B, C, H, W]`` with::

    x = x.transpose(0, 1)   # [B, T, ...] -> [T, B, ...]

Frame arguments follow SpikingJelly: ``frames_number`` with ``split_by`` (``"number"``
or ``"time"``), or ``duration`` (µs per frame, a variable number of frames: batch with
``collate_fn=spikeflow.data.pad_collate``), or ``custom_integrate_function``
(``f(recording) -> array``, or a :class:`~spikeflow.data.representations.Representation`
such as ``ToVoxelGrid(5)``). Frames are cached on disk when ``cache_dir`` is given.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from spikeflow.data._indexing import check_index
from spikeflow.data.cache import (
    CACHE_VERSION,
    ArrayCache,
    default_cache_dir,
    file_identity,
    parallel_map,
    recall_content_identity,
    remember_content_identity,
    stat_identity,
    stat_signature,
)
from spikeflow.data.events import EventRecording
from spikeflow.data.frames import SplitFunction
from spikeflow.data.representations import Representation, callable_key, frame_representation
from spikeflow.errors import ConfigurationError, SpikeflowError

__all__ = ["DatasetNotFoundError", "NeuromorphicDataset", "check_train"]


class DatasetNotFoundError(SpikeflowError, FileNotFoundError):
    """A dataset's files are not where they should be; the message says how to get them."""


def _option_key(value: Any) -> Any:
    """A sample option in a cache key: an object's ``cache_key()`` (an encoder), else
    the value itself (a string or number)."""
    return value.cache_key() if callable(getattr(value, "cache_key", None)) else value


def _prepare(dataset: NeuromorphicDataset, index: int) -> bool:
    return dataset._representation(index)[1]


def check_train(owner: str, train: Any, allow_all: bool = False) -> bool | None:
    """``train`` as a bool (or None where ``allow_all``: every sample), else a
    ConfigurationError naming ``owner``; a string (SpikingJelly's ``data_type`` where its
    class takes no ``train``) is told so."""
    if isinstance(train, bool | np.bool_):
        return bool(train)
    if train is None and allow_all:
        return None
    allowed = "True, False or None" if allow_all else "True or False"
    hint = (
        f" (SpikingJelly's {owner} takes data_type second; spikeflow's takes the split "
        "there: pass data_type by keyword)"
        if isinstance(train, str)
        else ""
    )
    raise ConfigurationError(f"{owner}: train must be {allowed}; got {train!r}{hint}")


class NeuromorphicDataset(torch.utils.data.Dataset):
    """Base class: a list of ``(file, label)`` samples read by a format reader.

    Subclasses set ``sensor_size`` and ``classes`` and implement ``_find_samples()``
    (the sorted list of ``(path, label)`` of the split) and ``_read(path)`` (an
    EventRecording).

    The arguments up to ``target_transform`` are SpikingJelly's, in its order; the
    subclasses take their own options (``download``, ...) by keyword only, so a call
    ported from SpikingJelly binds the same values.

    Args:
        root: the dataset directory.
        train: the training split (True) or the test split.
        data_type: ``"event"`` (yield EventRecordings) or ``"frame"`` (yield frames).
        frames_number: ``T``, frames per sample (with ``split_by``).
        split_by: ``"number"`` (default) or ``"time"``, or a function; the exact bin
            edges are in :mod:`spikeflow.data.frames`.
        duration: µs per frame instead of ``frames_number`` (variable ``T``).
        custom_integrate_function: ``f(recording) -> array`` or a Representation,
            instead of the two above.
        custom_integrated_frames_dir_name: SpikingJelly's argument, kept for its
            positional order; must be None (frames are cached by the function itself).
        transform: applied to each sample as yielded (frames tensor or recording); may be
            random (it is never cached), e.g. the frame augmentations.
        target_transform: applied to the label.
        event_transform: applied to the events before the representation (and cached
            with it, so it must be deterministic when ``cache_dir`` is set).
        cache_dir: ``None`` (no disk cache), ``"auto"``
            (:func:`~spikeflow.data.cache.default_cache_dir`) or a directory.
        cache_identity: how a source file is identified in cache keys: ``"stat"``
            (path, size, mtime; looked up on each use) or ``"content"`` (SHA-256 of the
            bytes; hashed once per file and dataset instance, see :meth:`source_identity`).
    """

    sensor_size: ClassVar[tuple[int, int, int]]
    #: What a sample is, for refusals of image-only options (``--auto-augment``).
    sample_kind: ClassVar[str] = (
        "a neuromorphic dataset: its samples are event-camera frames, not images"
    )
    #: The class names, index = label. Every dataset defines the official list as a
    #: class attribute (so ``len(cls.classes)`` is the number of classes before any
    #: file is read); datasets that derive the names from the files (folder names, an
    #: HDF5 ``extra/keys``) check them and set the instance attribute to what they read.
    classes: ClassVar[tuple[str, ...]]
    #: Names of the attributes (constructor options such as CIFAR10-DVS's
    #: ``orientation``, or versions of derived data such as DVS128 Gesture's cut) that
    #: change a sample's events; :meth:`cache_namespace` includes their values. Every
    #: other constructor argument either only selects files (``root``, the split
    #: arguments; entries are keyed by each file's identity), is keyed on its own (the
    #: representation, ``event_transform``) or is never cached (``transform``).
    sample_options: ClassVar[tuple[str, ...]] = ()
    #: Whether ``download=True`` fetches the dataset (its host lets a program download
    #: it); ``spikeflow train --download`` is refused for the others.
    downloadable: ClassVar[bool] = False

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        data_type: str = "event",
        frames_number: int | None = None,
        split_by: str | SplitFunction | None = None,
        duration: int | None = None,
        custom_integrate_function: Callable[[EventRecording], Any] | None = None,
        custom_integrated_frames_dir_name: None = None,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        *,
        event_transform: Callable[[EventRecording], EventRecording] | None = None,
        cache_dir: str | os.PathLike | None = None,
        cache_identity: str = "stat",
    ) -> None:
        owner = type(self).__name__
        check_train(owner, train)
        if custom_integrated_frames_dir_name is not None:
            raise ConfigurationError(
                f"{owner}: custom_integrated_frames_dir_name is SpikingJelly's folder for "
                "custom frames; spikeflow keys cached frames by the function itself "
                "(cache_dir=...), so pass None"
            )
        if data_type not in ("event", "frame"):
            raise ConfigurationError(f"data_type must be 'event' or 'frame'; got {data_type!r}")
        if cache_identity not in ("stat", "content"):
            raise ConfigurationError(
                f"cache_identity must be 'stat' or 'content'; got {cache_identity!r}"
            )
        frame_args = (frames_number, split_by, duration, custom_integrate_function)
        if data_type == "event" and any(a is not None for a in frame_args):
            raise ConfigurationError(
                "frames_number, split_by, duration and custom_integrate_function need "
                "data_type='frame'"
            )
        self.root = Path(root)
        self.train = bool(train)
        self.data_type = data_type
        self.event_transform = event_transform
        self.transform = transform
        self.target_transform = target_transform
        self.cache_identity = cache_identity
        self._content_ids: dict[Path, dict[str, Any]] = {}  # path -> its SHA-256 identity
        # absolute path -> its resolved path and the (device, inode) it named then
        self._resolved: dict[Path, tuple[str, tuple[int, int]]] = {}
        self.representation: Representation | None = None
        self.cache: ArrayCache | None = None
        if data_type == "frame":
            self.representation = frame_representation(*frame_args)
            if cache_dir is not None:
                if getattr(event_transform, "random", False):
                    raise ConfigurationError(
                        f"event_transform {event_transform!r} is random and cannot be cached "
                        "(every epoch would see the same draw): pass cache_dir=None, or move "
                        "it to `transform` as a frame augmentation"
                    )
                root_dir = default_cache_dir() if cache_dir == "auto" else Path(cache_dir)
                self.cache = ArrayCache(root_dir, self.cache_namespace())
        self.samples: list[tuple[Path, int]] = self._find_samples()

    # -- to implement -------------------------------------------------------------------
    def _find_samples(self) -> list[tuple[Path, int]]:  # pragma: no cover
        raise NotImplementedError

    def _read(self, path: Path) -> EventRecording:  # pragma: no cover
        raise NotImplementedError

    # -- public -------------------------------------------------------------------------
    @property
    def split(self) -> str:
        """``"train"`` or ``"test"``."""
        return "train" if self.train else "test"

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def cache_namespace(self) -> dict[str, Any]:
        """Everything besides the file that a cached representation depends on: the
        dataset class, split, sensor size, :attr:`sample_options`, representation,
        event transform and cache version."""
        assert self.representation is not None
        et = self.event_transform
        return {
            "name": f"{type(self).__name__}-{self.split}",
            "dataset": f"{type(self).__module__}.{type(self).__qualname__}",
            "split": self.split,
            "sensor_size": list(self.sensor_size),
            "sample_options": {
                name: _option_key(getattr(self, name)) for name in self.sample_options
            },
            "representation": self.representation.cache_key(),
            "event_transform": None if et is None else callable_key(et),
            "cache_version": CACHE_VERSION,
        }

    def source_identity(self, path: Path) -> dict[str, Any]:
        """The cache-key identity of source file ``path`` (:func:`file_identity`).

        With ``cache_identity="content"`` the file is hashed once per dataset instance
        and the result reused (content mode means the files do not change; hashing a
        whole HDF5 file or recording per sample would read it again for every sample),
        and recorded in the cache's root with the file's
        :func:`~spikeflow.data.cache.stat_signature` (path, size, mtime, ctime, inode),
        so later runs read the record instead of hashing again while that signature
        holds (a moved or rewritten file, even one whose mtime a tool set back, is
        hashed again).
        ``"stat"`` is cheap and looked up each time, so an edited file is a miss; an
        absolute path is resolved (its symbolic links followed) once per dataset instance
        and again when it names another file (a link pointed elsewhere, a file replaced).
        """
        if self.cache_identity != "content":
            if not os.path.isabs(path):  # (resolved against the working directory of now)
                return file_identity(path)
            return stat_identity(path, self._resolved)
        found = self._content_ids.get(path)
        if found is None:
            memo = self._content_memo_root()
            found = None if memo is None else recall_content_identity(path, memo)
            if found is None:
                signature = stat_signature(path)
                found = file_identity(path, True)
                if memo is not None:
                    remember_content_identity(path, found, signature, memo)
            self._content_ids[path] = found
        return found

    def _content_memo_root(self) -> Path | None:
        """Where the content hashes of this dataset's files are recorded between runs:
        the root of its frames cache, else of its cut cache (None: no cache, no record)."""
        for cache in (self.cache, getattr(self, "cut_cache", None)):
            if cache is not None:
                return cache.directory.parent
        return None

    def cache_entry_key(self, index: int) -> dict[str, Any]:
        """The cache key of sample ``index`` within :meth:`cache_namespace`: its file."""
        return {"file": self.source_identity(self.samples[index][0])}

    def events(self, index: int) -> EventRecording:
        """Sample ``index``'s events, after ``event_transform``."""
        path, _ = self.samples[index]
        rec = self._read(path)
        return rec if self.event_transform is None else self.event_transform(rec)

    def _representation(self, index: int) -> tuple[np.ndarray, bool]:
        assert self.representation is not None
        rep = self.representation

        def compute() -> np.ndarray:
            return np.asarray(rep(self.events(index)))

        if self.cache is None:
            return compute(), True
        key = self.cache_entry_key(index)
        computed = []

        def compute_and_note() -> np.ndarray:
            computed.append(True)
            return compute()

        value = self.cache.get_or_compute(key, compute_and_note)
        return value, bool(computed)

    def _target_of(self, index: int) -> Any:
        """Item ``index``'s target before ``target_transform``: its class index (a
        dataset whose target is something else overrides this)."""
        return self.samples[index][1]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = check_index(type(self).__name__, index, len(self))
        label: Any = self._target_of(index)
        if self.data_type == "event":
            sample: Any = self.events(index)
        else:
            array = self._representation(index)[0]
            sample = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return sample, label

    def preprocess(
        self, workers: int | None = None, executor: str = "process", progress: bool = True
    ) -> int:
        """Compute and cache every sample's representation in parallel; returns how many
        were computed (the rest were already cached). Needs ``cache_dir``.

        See :func:`spikeflow.data.cache.parallel_map` for ``workers`` and ``executor``.
        """
        if self.cache is None:
            raise ConfigurationError(
                "preprocess() fills the disk cache: construct the dataset with "
                "data_type='frame' and a cache_dir"
            )
        done = parallel_map(
            functools.partial(_prepare, self), range(len(self)), workers=workers,
            executor=executor, progress=progress, desc=f"{type(self).__name__} {self.split}",
        )  # fmt: skip
        return int(sum(done))

    def __repr__(self) -> str:
        rep = f", representation={self.representation!r}" if self.representation else ""
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"samples={len(self)}, data_type={self.data_type!r}{rep})"
        )
