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
options, transforms and every file's path, size and modification time), so changing the
dataset or its files is a miss, never a stale hit. With ``num_copies = n`` it keeps ``n``
draws of a random wrapped dataset per sample and reads one of them at random.

A sample is stored as a small JSON manifest (what kind of value each part is) and one
entry per array: numpy arrays (structured event arrays field by field), tensors (their
dtype kept; returned on the CPU), :class:`~spikeflow.data.EventRecording`, numbers.
The manifest is written last and read first, so a crash between the parts is a miss.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeflow.data.cache import ArrayCache
from spikeflow.data.events import EventRecording
from spikeflow.data.sliced_dataset import _pair, dataset_key
from spikeflow.errors import ConfigurationError

__all__ = ["DiskCachedDataset", "MemoryCachedDataset"]

#: Bump when the stored layout of a sample changes, so old entries miss.
_LAYOUT_VERSION = 1


def _check_wrapped(owner: str, dataset: Any, transforms: dict[str, Any]) -> None:
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise ConfigurationError(
            f"{owner}: dataset must be a map-style dataset (__len__ and __getitem__); got "
            f"{type(dataset).__name__}"
        )
    for name, fn in transforms.items():
        if fn is not None and not callable(fn):
            raise ConfigurationError(f"{owner}: {name} must be callable; got {fn!r}")


def _index(owner: str, index: Any, length: int) -> int:
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise ConfigurationError(f"{owner}: index must be an integer; got {index!r}")
    i = int(index)
    if not -length <= i < length:
        raise IndexError(f"{owner}: index {i} is out of range for {length} samples")
    return i % length


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

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        data, target = self._cached(_index(self.owner, index, len(self)))
        if self.transform is not None:
            data = self.transform(data)
        if self.target_transform is not None:
            target = self.target_transform(target)
        if self.transforms is not None:
            data, target = self.transforms(data, target)
        return data, target


class MemoryCachedDataset(_Transformed):
    """``dataset``'s samples kept in memory after their first read; the transforms run
    on every read, after the cache (Tonic's ``MemoryCachedDataset``). Each DataLoader
    worker process fills its own copy.

    Args:
        dataset: a map-style dataset of ``(data, target)`` pairs.
        device: move tensor data and targets there when they are cached (None: as read).
        transform, target_transform: applied to what the cache returns.
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
            pair = _pair(self.dataset[i], i)
            if self.device is not None:
                pair = tuple(v.to(self.device) if isinstance(v, torch.Tensor) else v
                             for v in pair)  # fmt: skip
            self.samples[i] = pair  # type: ignore[assignment]
        return self.samples[i]


class DiskCachedDataset(_Transformed):
    """``dataset``'s samples cached on disk (module docstring; Tonic's
    ``DiskCachedDataset``, same argument order); the transforms run on every read, after
    the cache.

    Args:
        dataset: a map-style dataset of ``(data, target)`` pairs; data and target may be
            numpy arrays (structured or not), tensors, EventRecordings or numbers.
        cache_path: the folder of the cache (created when missing); it may hold the
            caches of several datasets, each in a folder of its own.
        reset_cache: delete this dataset's cached samples first (only its own folder).
        transform, target_transform: applied to what the cache returns.
        transforms: then applied to both, ``data, target = transforms(data, target)``.
        num_copies: draws of each sample to keep (``> 1`` for a random ``dataset``);
            a read picks one with torch's generator (seeded per DataLoader worker).
        key: the wrapped dataset's identity for the cache, instead of
            :func:`~spikeflow.data.sliced_dataset.dataset_key`'s (a JSON-able value;
            give one when the dataset reads files the automatic key does not see).

    Raises:
        ConfigurationError: a dataset that is not map-style, a transform that is not
            callable, ``num_copies < 1``, or a ``cache_path`` that is a file; at a read,
            a part of a sample that cannot be stored (an object array, a string).
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
    ) -> None:
        super().__init__(dataset, transform, target_transform, transforms)
        if isinstance(num_copies, bool) or not isinstance(num_copies, int) or num_copies < 1:
            raise ConfigurationError(f"{self.owner}: num_copies must be an integer >= 1; got "
                                     f"{num_copies!r}")  # fmt: skip
        self.cache_path = Path(cache_path)
        if self.cache_path.exists() and not self.cache_path.is_dir():
            raise ConfigurationError(
                f"{self.owner}: cache_path {str(self.cache_path)!r} is a file; it must be a "
                "folder to keep the cached samples in"
            )
        self.num_copies = num_copies
        identity = dataset_key(dataset) if key is None else key
        self.cache = ArrayCache(
            self.cache_path,
            {"name": f"cached-{type(dataset).__name__}", "dataset": identity,
             "layout": _LAYOUT_VERSION},
        )  # fmt: skip
        if reset_cache and self.cache.directory.exists():
            shutil.rmtree(self.cache.directory)

    def _cached(self, i: int) -> tuple[Any, Any]:
        copy = 0 if self.num_copies == 1 else int(torch.randint(self.num_copies, ()))
        entry = {"index": i, "copy": copy}
        stored = self._load(entry)
        if stored is not None:
            return stored
        data, target = _pair(self.dataset[i], i)
        parts: dict[str, np.ndarray] = {}
        manifest = {"data": _encode(self.owner, "data", data, parts),
                    "target": _encode(self.owner, "target", target, parts)}  # fmt: skip
        text = json.dumps(manifest, sort_keys=True).encode()
        parts["manifest"] = np.frombuffer(text, dtype=np.uint8)  # last: the parts are in
        try:
            for name, array in parts.items():
                self.cache.store({**entry, "part": name}, array)
        except OSError as exc:  # a read-only or full disk: the sample is still returned
            where = self.cache.directory
            message = f"{self.owner}: could not cache sample {i} in {where}: {exc}"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        return data, target

    def _load(self, entry: dict[str, Any]) -> tuple[Any, Any] | None:
        raw = self.cache.load({**entry, "part": "manifest"})
        if raw is None:
            return None
        manifest = json.loads(raw.astype(np.uint8).tobytes())
        arrays = {}
        for name in manifest["data"]["parts"] + manifest["target"]["parts"]:
            array = self.cache.load({**entry, "part": name})
            if array is None:  # deleted or damaged: compute the sample again
                return None
            arrays[name] = array
        return _decode(manifest["data"], arrays), _decode(manifest["target"], arrays)


def _encode(owner: str, name: str, value: Any, parts: dict[str, np.ndarray]) -> dict[str, Any]:
    """``value`` as a manifest item; its arrays go into ``parts`` (under ``name...``)."""
    if isinstance(value, EventRecording):
        item = _encode(owner, name, value.events, parts)
        return {**item, "kind": "recording", "sensor_size": list(value.sensor_size),
                "source": value.source}  # fmt: skip
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu()
        kind, dtype = "tensor", str(array.dtype).removeprefix("torch.")
        if array.dtype == torch.bfloat16:  # numpy has no bfloat16: stored as its bits
            array = array.view(torch.int16)
        array = array.numpy()
    elif isinstance(value, (bool, int, float, np.generic)) and not isinstance(value, str):
        kind, dtype, array = type(value).__name__, None, np.asarray(value)
        if isinstance(value, np.generic):
            kind = "numpy_scalar"
    elif isinstance(value, np.ndarray):
        kind, dtype, array = "array", None, value
    else:
        raise ConfigurationError(
            f"{owner}: the sample's {name} is a {type(value).__name__}, which cannot be "
            "cached (numpy arrays, tensors, EventRecordings and numbers can)"
        )
    if array.dtype.hasobject:
        raise ConfigurationError(f"{owner}: the sample's {name} holds Python objects "
                                 f"({array.dtype}); only numeric arrays can be cached")  # fmt: skip
    if array.dtype.names is None:
        parts[name] = array
        return {"kind": kind, "dtype": dtype, "parts": [name]}
    fields = []
    for field in array.dtype.names:
        parts[f"{name}.{field}"] = np.ascontiguousarray(array[field])
        fields.append([field, array.dtype.fields[field][0].str])
    return {"kind": kind, "dtype": dtype, "parts": [f"{name}.{f}" for f, _ in fields],
            "fields": fields}  # fmt: skip


def _decode(item: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """The value a manifest ``item`` describes, from the loaded ``arrays``."""
    if "fields" in item:
        fields = item["fields"]
        shape = arrays[item["parts"][0]].shape if fields else (0,)
        array = np.empty(shape, dtype=[(f, np.dtype(d)) for f, d in fields])
        for (field, _), part in zip(fields, item["parts"]):
            array[field] = arrays[part]
    else:
        array = arrays[item["parts"][0]]
    kind = item["kind"]
    if kind == "recording":
        return EventRecording(array, tuple(item["sensor_size"]), item["source"])
    if kind == "tensor":  # the cache restores numpy's dtype; bfloat16 was kept as bits
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.view(torch.bfloat16) if item["dtype"] == "bfloat16" else tensor
    if kind == "numpy_scalar":
        return array[()]
    if kind in ("bool", "int", "float"):
        return {"bool": bool, "int": int, "float": float}[kind](array[()])
    return array
