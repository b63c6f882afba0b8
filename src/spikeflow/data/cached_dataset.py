"""Cache any dataset's samples, on disk or in memory, and augment after the cache (Tonic's
``DiskCachedDataset`` and ``MemoryCachedDataset``).

The usual pipeline reads and converts each recording once (events -> frames: the slow
part) and augments the converted sample at every epoch::

    frames = NMNIST(root, data_type="frame", frames_number=10)
    train = DiskCachedDataset(frames, "cache/nmnist", transform=RandomFlip(...))

``DiskCachedDataset`` keeps each sample in spikeflow's array cache
(:class:`~spikeflow.data.ArrayCache`: atomic writes, checksums, a damaged entry warned
about and rebuilt), in a folder keyed by the wrapped dataset's identity
(:func:`~spikeflow.data.sliced_dataset.dataset_key`: for a spikeflow dataset its
options, transforms and every file's path, size and modification time; for another
dataset its attributes, a path among them by its real file's path, size and
modification time), so changing the dataset or its files is a miss, never a stale hit.
With ``num_copies = n`` it keeps ``n`` draws of a random wrapped dataset per sample and
reads one of them at random.

A sample is stored as one cache entry, written atomically (a crash or a concurrent
writer leaves a whole sample or none): a small JSON manifest (what kind of value each
part is) and the bytes of its arrays: numpy arrays (structured event arrays field by
field), tensors (their dtype kept; returned on the CPU),
:class:`~spikeflow.data.EventRecording`, numbers, ``None`` and tuples, lists and dicts
(string keys) of these. The first read returns what later
reads will (the decoded sample), not the wrapped dataset's own objects.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import struct
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeflow.data._indexing import check_index
from spikeflow.data.cache import ArrayCache, _compact_dtype, canonical_key
from spikeflow.data.events import EventRecording
from spikeflow.data.sliced_dataset import _pair, dataset_key
from spikeflow.errors import ConfigurationError

__all__ = ["STALE_AFTER_S", "DiskCachedDataset", "MemoryCachedDataset"]

#: Bump when the stored layout of a sample changes, so old entries miss.
_LAYOUT_VERSION = 2


def _check_wrapped(owner: str, dataset: Any, transforms: dict[str, Any]) -> None:
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise ConfigurationError(
            f"{owner}: dataset must be a map-style dataset (__len__ and __getitem__); got "
            f"{type(dataset).__name__}"
        )
    for name, fn in transforms.items():
        if fn is not None and not callable(fn):
            raise ConfigurationError(f"{owner}: {name} must be callable; got {fn!r}")


class _Transformed(torch.utils.data.Dataset):
    """The shared part: length, indexing, transforms after the cache, ``classes``."""

    owner = "CachedDataset"

    def __init__(
        self, dataset: Any, transform: Any, target_transform: Any, transforms: Any
    ) -> None:
        _check_wrapped(self.owner, dataset, {"transform": transform,
                       "target_transform": target_transform, "transforms": transforms})  # fmt: skip
        self.dataset = dataset
        self.transform = transform
        self.target_transform = target_transform
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def classes(self) -> Any:
        """The wrapped dataset's ``classes`` (AttributeError if it has none)."""
        return self.dataset.classes

    def _cached(self, i: int) -> tuple[Any, Any]:
        raise NotImplementedError

    def _handed(self, data: Any, target: Any) -> tuple[Any, Any]:
        """What the transforms get of a cached pair (the pair itself: fresh objects)."""
        return data, target

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        data, target = self._handed(*self._cached(check_index(self.owner, index, len(self))))
        if self.transform is not None:
            data = self.transform(data)
        if self.target_transform is not None:
            target = self.target_transform(target)
        if self.transforms is not None:
            data, target = self.transforms(data, target)
        return data, target


#: Values that cannot change in place: handed out as they are.
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, np.generic, torch.dtype)


def _copy_array(array: np.ndarray) -> np.ndarray:
    """A copy of ``array``; a contiguous structured array (events) byte for byte, which
    is 5 to 10 times faster than numpy's field-by-field copy of its packed records."""
    if array.dtype.names is None or array.dtype.hasobject or not array.flags.c_contiguous:
        return array.copy(order="K")
    out = np.empty_like(array)
    out.reshape(-1).view(np.uint8)[...] = array.reshape(-1).view(np.uint8)
    return out


def _fresh(value: Any) -> Any:
    """A copy of a cached value that a transform may change in place without changing
    the cache: numpy arrays and tensors copied (layout, dtype and device kept),
    EventRecordings with their events copied, tuples, lists and dicts rebuilt around
    fresh items, immutable values (numbers, strings, None) as they are, anything else
    deep-copied."""
    if isinstance(value, np.ndarray):
        return _copy_array(value)
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, EventRecording):
        return dataclasses.replace(value, events=_copy_array(value.events))
    if isinstance(value, _IMMUTABLE):
        return value
    if type(value) in (tuple, list):  # subclasses (named tuples) are deep-copied below
        return type(value)(_fresh(v) for v in value)
    if type(value) is dict:
        return {k: _fresh(v) for k, v in value.items()}
    return copy.deepcopy(value)


class MemoryCachedDataset(_Transformed):
    """``dataset``'s samples kept in memory after their first read; the transforms run
    on every read, after the cache (Tonic's ``MemoryCachedDataset``). Each DataLoader
    worker process fills its own copy.

    A transform gets a copy of the cached data (and a target transform of the cached
    target): numpy arrays and tensors copied, EventRecordings with their events copied,
    tuples, lists and dicts of them rebuilt, other objects deep-copied; so a transform
    that changes its input in place (``events["x"] += 1``, ``frames.mul_(2)``) leaves
    the cache as it was (Tonic's hands it the cached objects, and the next epoch reads
    what the transform made of them). Without transforms, a read returns the cached
    objects themselves, not a copy (reads stay free): do not change them in place, or
    pass a transform (even ``transform=lambda x: x``) to read copies.

    Args:
        dataset: a map-style dataset of ``(data, target)`` pairs.
        device: move tensor data and targets there when they are cached (None: as read).
        transform, target_transform: applied to (a copy of) what the cache holds.
        transforms: then applied to both, ``data, target = transforms(data, target)``.
    """

    owner = "MemoryCachedDataset"

    def __init__(
        self,
        dataset: Any,
        device: str | torch.device | None = None,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
    ) -> None:
        super().__init__(dataset, transform, target_transform, transforms)
        self.device = None if device is None else torch.device(device)
        self.samples: dict[int, tuple[Any, Any]] = {}

    def _cached(self, i: int) -> tuple[Any, Any]:
        if i not in self.samples:
            pair = _pair(self.dataset[i], i, self.owner)
            if self.device is not None:
                pair = tuple(v.to(self.device) if isinstance(v, torch.Tensor) else v
                             for v in pair)  # fmt: skip
            self.samples[i] = pair  # type: ignore[assignment]
        return self.samples[i]

    def _handed(self, data: Any, target: Any) -> tuple[Any, Any]:
        both = self.transforms is not None
        if both or self.transform is not None:
            data = _fresh(data)
        if both or self.target_transform is not None:
            target = _fresh(target)
        return data, target


#: Age (seconds) after which a temporary file or a folder being deleted in a cache
#: folder counts as left by a crashed process, and is removed when a dataset is built.
STALE_AFTER_S = 3600.0
_TRASH = ".deleting"
_LAST_CLEAN_UP = ".last-clean-up"


def _remove_folder(folder: Path) -> None:
    """Delete ``folder`` even while other processes write entries into it: rename it to
    a unique sibling first (atomic; a writer's later entries make a fresh ``folder``),
    then delete that. A folder that is already gone is fine (another process reset it)."""
    trash = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}{_TRASH}")
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return
    try:
        os.utime(trash)  # renamed just now: not stale to other processes' clean-up
    except OSError:
        pass
    shutil.rmtree(trash, ignore_errors=True)  # the reset is done: the folder is fresh
    if trash.exists():
        warnings.warn(
            f"could not delete all of {trash} (the old cache, renamed); a later "
            f"construction removes it once it is {STALE_AFTER_S:.0f} s old",
            RuntimeWarning, stacklevel=3,
        )  # fmt: skip


def _remove_stale(cache: ArrayCache, older_than_s: float) -> None:
    """Remove what crashed processes left of ``cache``'s folder, when older than
    ``older_than_s`` (a live write or reset is seconds old): the renamed copies of it that
    a crashed reset did not finish deleting, and its temporary files (a crashed write).
    Finding the temporaries lists the whole folder (about 0.2 s per 100,000 entries), so
    it is done at most once per ``older_than_s``, by whichever process comes first (the
    modification time of the folder's ``.last-clean-up`` file says when it was last
    done). A folder this process may not change is left as it is."""
    folder = cache.directory
    now = time.time()
    try:
        for trash in folder.parent.glob(f".{folder.name}.*{_TRASH}"):
            if now - trash.stat().st_mtime >= older_than_s:
                shutil.rmtree(trash, ignore_errors=True)
        marker = folder / _LAST_CLEAN_UP
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            return
        if marker.exists() and now - marker.stat().st_mtime < older_than_s:
            return
        cache.clear_temporaries(older_than_s)
        marker.touch()  # now, also when it exists
    except OSError:  # a read-only cache, a folder removed meanwhile: nothing to clean
        pass


class DiskCachedDataset(_Transformed):
    """``dataset``'s samples cached on disk (module docstring; Tonic's
    ``DiskCachedDataset``, same argument order); the transforms run on every read, after
    the cache. Every read decodes the entry anew, so a transform that changes its input
    in place does not change the cache.

    Args:
        dataset: a map-style dataset of ``(data, target)`` pairs; data and target may be
            numpy arrays (structured or not), tensors, EventRecordings, numbers, None, or
            tuples, lists and dicts (string keys) of these.
        cache_path: the folder of the cache (created when missing); it may hold the
            caches of several datasets, each in a folder of its own.
        reset_cache: delete this dataset's cached samples first (only its own folder;
            safe while other processes write entries to it: theirs land in a fresh folder).
        transform, target_transform: applied to what the cache returns.
        transforms: then applied to both, ``data, target = transforms(data, target)``.
        num_copies: draws of each sample to keep (``> 1`` for a random ``dataset``);
            a read picks one at random (see ``generator``).
        key: the wrapped dataset's identity for the cache, instead of
            :func:`~spikeflow.data.sliced_dataset.dataset_key`'s (a JSON-able value;
            give one when the dataset reads files the automatic key does not see).
        generator: where the copy a read picks is drawn from (``num_copies > 1``).
            ``None`` (the default): torch's global generator, which a DataLoader seeds
            in each worker process at each epoch (from its ``generator`` or the global
            seed), so the draws in workers are reproducible; in the main process they
            depend on every other use of the global generator and change its state. A
            ``torch.Generator``: the draws in this process come from it, leaving the
            global generator alone; in a DataLoader worker process (which would hold an
            identical copy of it in every worker, at every epoch) they come from a
            generator of the worker's own seed (``get_worker_info().seed``) instead.

    At construction, temporary files and half-deleted copies of this dataset's folder
    that crashed processes left (older than :data:`STALE_AFTER_S`, an hour) are removed.

    Raises:
        ConfigurationError: a dataset that is not map-style, a transform that is not
            callable, ``num_copies < 1``, a ``generator`` that is not a
            ``torch.Generator``, or a ``cache_path`` that is a file; at a read, a part of
            a sample that cannot be stored (an object array, a string, a sparse tensor, a
            dict with keys that are not strings), or an index that is not an integer.
    """

    owner = "DiskCachedDataset"

    def __init__(
        self,
        dataset: Any,
        cache_path: str | os.PathLike,
        reset_cache: bool = False,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
        num_copies: int = 1,
        *,
        key: Any = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dataset, transform, target_transform, transforms)
        if isinstance(num_copies, bool) or not isinstance(num_copies, int) or num_copies < 1:
            raise ConfigurationError(f"{self.owner}: num_copies must be an integer >= 1; got "
                                     f"{num_copies!r}")  # fmt: skip
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ConfigurationError(f"{self.owner}: generator must be a torch.Generator or "
                                     f"None; got {type(generator).__name__}")  # fmt: skip
        self.cache_path = Path(cache_path)
        if self.cache_path.exists() and not self.cache_path.is_dir():
            raise ConfigurationError(
                f"{self.owner}: cache_path {str(self.cache_path)!r} is a file; it must be a "
                "folder to keep the cached samples in"
            )
        self.num_copies = num_copies
        self.generator = generator
        self._worker_generator: tuple[int, torch.Generator] | None = None
        self._write_failed = False
        identity = dataset_key(dataset) if key is None else key
        # hashed: the identity lists every file of a spikeflow dataset, and the namespace
        # is written into every entry's header
        digest = hashlib.sha256(canonical_key({"dataset": identity}).encode()).hexdigest()
        self.cache = ArrayCache(
            self.cache_path,
            {"name": f"cached-{type(dataset).__name__}", "samples": len(dataset),
             "dataset_sha256": digest, "layout": _LAYOUT_VERSION},
        )  # fmt: skip
        if reset_cache:
            _remove_folder(self.cache.directory)
        _remove_stale(self.cache, STALE_AFTER_S)

    def __getstate__(self) -> dict[str, Any]:
        """What pickling keeps (the copy a DataLoader worker gets): ``generator`` as its
        device and state bytes, not as a torch.Generator, whose state tensor a spawned
        worker could not rebuild from shared memory ("unable to resize file")."""
        state = dict(self.__dict__)
        state["_worker_generator"] = None  # made again from the worker's seed
        if self.generator is not None:
            raw = self.generator.get_state().numpy().tobytes()
            state["generator"] = (str(self.generator.device), raw)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild what :meth:`__getstate__` kept."""
        if state.get("generator") is not None:
            device, raw = state["generator"]
            generator = torch.Generator(device)
            generator.set_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
            state["generator"] = generator
        self.__dict__.update(state)

    def _draw_copy(self) -> int:
        """The copy a read picks (see ``generator`` in the class docstring)."""
        generator = self.generator
        if generator is not None:
            info = torch.utils.data.get_worker_info()
            if info is not None:  # a worker's own stream, new at each epoch's workers
                if self._worker_generator is None or self._worker_generator[0] != info.seed:
                    mine = torch.Generator().manual_seed(info.seed)
                    self._worker_generator = (info.seed, mine)
                generator = self._worker_generator[1]
        device = None if generator is None else generator.device  # a CUDA generator too
        return int(torch.randint(self.num_copies, (), generator=generator, device=device))

    def _cached(self, i: int) -> tuple[Any, Any]:
        which = 0 if self.num_copies == 1 else self._draw_copy()
        return self._entry(i, which)

    def _compute(self, i: int, which: int) -> tuple[Any, Any]:
        """Sample ``i`` of copy ``which`` as the cache stores it: here the wrapped
        dataset's item (a random dataset gives each copy a draw of its own)."""
        return _pair(self.dataset[i], i, self.owner)

    def _entry(self, i: int, which: int, refresh: bool = False) -> tuple[Any, Any]:
        """Copy ``which`` of sample ``i``: read from the cache, or (on a miss, or always
        with ``refresh``) computed, stored and returned as a later read will return it."""
        entry = {"index": i, "copy": which}
        raw = None if refresh else self.cache.load(entry)
        if raw is not None:
            return _unpack(raw.astype(np.uint8, copy=False).tobytes())
        data, target = self._compute(i, which)
        blob = _pack(self.owner, data, target)
        try:  # one entry, written atomically: a sample is whole or missing
            self.cache.store(entry, np.frombuffer(blob, dtype=np.uint8))
        except OSError as exc:  # a read-only or full disk: the sample is still returned
            if not self._write_failed:  # once per dataset object, not once per sample
                self._write_failed = True
                warnings.warn(
                    f"{self.owner}: cannot write to the cache folder {self.cache.directory} "
                    f"(sample {i}: {exc}); samples that are not cached there yet are "
                    "computed at every read, without caching (warned once for this dataset)",
                    RuntimeWarning, stacklevel=3,
                )  # fmt: skip
        return _unpack(blob)  # what a later read returns (on the CPU, same types)


#: torch dtypes numpy lacks, kept as the integers of their bits.
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _tensor_array(owner: str, name: str, value: torch.Tensor) -> np.ndarray:
    if value.layout != torch.strided:
        raise ConfigurationError(f"{owner}: the sample's {name} is a {value.layout} tensor, "
                                 "which cannot be cached; make it dense (to_dense())")  # fmt: skip
    tensor = value.detach().cpu().resolve_conj().resolve_neg()
    try:
        return tensor.numpy()
    except TypeError:  # bfloat16, float8, complex32: no numpy dtype; stored as bits
        if tensor.element_size() not in _BITS:
            raise ConfigurationError(
                f"{owner}: the sample's {name} is a {tensor.dtype} tensor, which cannot be cached"
            ) from None
        return tensor.view(_BITS[tensor.element_size()]).numpy()


def _array_spec(owner: str, name: str, array: np.ndarray, arrays: dict[str, np.ndarray]) -> Any:
    """A plain array's part name, or a structured array's dtype, shape and fields."""
    if array.dtype.hasobject:
        raise ConfigurationError(f"{owner}: the sample's {name} holds Python objects "
                                 f"({array.dtype}); only numeric arrays can be cached")  # fmt: skip
    if array.dtype.names is None:
        arrays[name] = array
        return name
    fields = [[f, _array_spec(owner, f"{name}.{f}", array[f], arrays)] for f in array.dtype.names]
    descr = np.lib.format.dtype_to_descr(array.dtype)
    return {"descr": descr, "shape": list(array.shape), "fields": fields}


def _encode(owner: str, name: str, value: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """``value`` as a manifest item; its arrays go into ``arrays`` (under ``name...``)."""
    if isinstance(value, EventRecording):
        item = _encode(owner, name, value.events, arrays)
        source = None if value.source is None else os.fspath(value.source)
        return {**item, "kind": "recording", "source": source,
                "sensor_size": [int(s) for s in value.sensor_size]}  # fmt: skip
    if value is None:
        return {"kind": "none"}
    if isinstance(value, (tuple, list)):  # a tuple of parts (Tonic's), a list of labels
        items = [_encode(owner, f"{name}.{k}", v, arrays) for k, v in enumerate(value)]
        return {"kind": type(value).__name__, "items": items}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ConfigurationError(
                f"{owner}: the sample's {name} is a dict with keys that are not all strings "
                f"({list(value)!r}); it cannot be cached"
            )
        items = [[k, _encode(owner, f"{name}.{k}", v, arrays)] for k, v in value.items()]
        return {"kind": "dict", "items": items}
    if isinstance(value, torch.Tensor):
        kind, dtype = "tensor", str(value.dtype).removeprefix("torch.")
        array = _tensor_array(owner, name, value)
    elif isinstance(value, (bool, int, float, complex, np.generic)):
        kind, dtype, array = type(value).__name__, None, np.asarray(value)
        if isinstance(value, np.generic):
            kind = "numpy_scalar"
    elif isinstance(value, np.ndarray):
        kind, dtype, array = "array", None, value
    else:
        raise ConfigurationError(
            f"{owner}: the sample's {name} is a {type(value).__name__}, which cannot be "
            "cached (numpy arrays, tensors, EventRecordings, numbers, None and tuples, "
            "lists and dicts of them can)"
        )
    return {"kind": kind, "dtype": dtype, "array": _array_spec(owner, name, array, arrays)}


def _pack(owner: str, data: Any, target: Any) -> bytes:
    """A sample as bytes: a little-endian uint32 manifest length, the JSON manifest (what
    kind of value each part is, and each array's dtype, stored dtype, shape and offset),
    then the arrays' C-order bytes (non-negative integers in the smallest unsigned type)."""
    arrays: dict[str, np.ndarray] = {}
    manifest: dict[str, Any] = {"data": _encode(owner, "data", data, arrays),
                                "target": _encode(owner, "target", target, arrays)}  # fmt: skip
    payload, offset, layout = [], 0, {}
    for name, array in arrays.items():
        stored = _compact_dtype(array)
        raw = np.ascontiguousarray(array, dtype=stored).tobytes()
        layout[name] = [array.dtype.str, stored.str, list(array.shape), offset]
        payload.append(raw)
        offset += len(raw)
    manifest["arrays"] = layout
    text = json.dumps(manifest, sort_keys=True).encode()
    return struct.pack("<I", len(text)) + text + b"".join(payload)


def _unpack(blob: bytes) -> tuple[Any, Any]:
    """The ``(data, target)`` that :func:`_pack` made ``blob`` of."""
    (length,) = struct.unpack_from("<I", blob)
    manifest = json.loads(blob[4 : 4 + length])
    start, arrays = 4 + length, {}
    for name, (dtype, stored, shape, offset) in manifest["arrays"].items():
        count = int(np.prod(shape, dtype=np.int64))
        flat = np.frombuffer(blob, np.dtype(stored), count, start + offset)
        arrays[name] = flat.reshape(shape).astype(np.dtype(dtype))  # a writable copy
    return _decode(manifest["data"], arrays), _decode(manifest["target"], arrays)


def _array(spec: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    if isinstance(spec, str):
        return arrays[spec]
    dtype = np.lib.format.descr_to_dtype(spec["descr"])
    array = np.zeros(tuple(spec["shape"]), dtype=dtype)
    for field, part in spec["fields"]:
        array[field] = _array(part, arrays)
    return array


def _decode(item: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """The value a manifest ``item`` describes, from the loaded ``arrays``."""
    kind = item["kind"]
    if kind == "none":
        return None
    if kind in ("tuple", "list"):
        items = [_decode(v, arrays) for v in item["items"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {k: _decode(v, arrays) for k, v in item["items"]}
    array = _array(item["array"], arrays)
    if kind == "recording":
        return EventRecording(array, tuple(item["sensor_size"]), item["source"])
    if kind == "tensor":  # dtypes numpy lacks (bfloat16, ...) were kept as their bits
        tensor = torch.from_numpy(array)
        dtype = getattr(torch, item["dtype"])
        return tensor if tensor.dtype == dtype else tensor.view(dtype)
    if kind == "numpy_scalar":
        return array[()]
    if kind in ("bool", "int", "float", "complex"):
        return {"bool": bool, "int": int, "float": float, "complex": complex}[kind](array[()])
    return array
