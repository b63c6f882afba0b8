"""The one index check of the data package (spikeflow.data._indexing.check_index), and
every map-style dataset class of spikeflow.data that uses it: bools refused, numpy
integers and 0-d integer tensors accepted, negative indices as Python's, and an
out-of-range index named with the length and what is indexed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spikeflow.data import (
    DiskCachedDataset,
    EventRecording,
    MemoryCachedDataset,
    NeuromorphicDataset,
    SlicedDataset,
    make_events,
)
from spikeflow.data._indexing import check_index
from spikeflow.data.slicing import SliceByEventCount
from spikeflow.errors import ConfigurationError

NOT_INDICES = [True, False, np.bool_(True), torch.tensor(True), 1.0, np.float32(2), "1", None,
               slice(0, 1), torch.tensor(1.0)]  # fmt: skip


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, 0), (4, 4), (-1, 4), (-5, 0), (np.int64(3), 3), (np.uint8(2), 2), (np.int16(-2), 3),
     (torch.tensor(1), 1), (torch.tensor(-1, dtype=torch.int8), 4)],
)  # fmt: skip
def test_integers_are_read_as_python_reads_a_list_index(index, expected):
    i = check_index("Owner", index, 5)
    assert i == expected and type(i) is int
    assert list(range(5))[index if not isinstance(index, torch.Tensor) else int(index)] == i


@pytest.mark.parametrize("index", NOT_INDICES, ids=repr)
def test_what_is_not_an_integer_is_refused_by_name(index):
    """A TypeError, as a Python list raises (``[0][1.0]``), and a ConfigurationError."""
    for caught in (TypeError, ConfigurationError):
        with pytest.raises(caught, match=r"^Owner: index must be an integer .* got "):
            check_index("Owner", index, 5)


@pytest.mark.parametrize(("index", "length"), [(5, 5), (-6, 5), (0, 0), (-1, 0), (2**70, 3)])
def test_out_of_range_names_the_index_the_length_and_what(index, length):
    with pytest.raises(IndexError, match=rf"^Owner: index {index} is out of range for {length} "
                       "slices$"):  # fmt: skip
        check_index("Owner", index, length, "slices")


class Tiny(NeuromorphicDataset):
    """Three one-event recordings (empty files named ``rec<k>`` in ``root``, which give
    their identity to the cache keys): a NeuromorphicDataset to index."""

    sensor_size = (4, 4, 2)
    classes = ("a", "b", "c")

    def _find_samples(self) -> list[tuple[Path, int]]:
        for k in range(3):
            (self.root / f"rec{k}").touch()
        return [(self.root / f"rec{k}", k) for k in range(3)]

    def _read(self, path: Path) -> EventRecording:
        k = int(path.name[-1])
        events = make_events(np.array([k]), np.array([k]), np.array([0]), np.array([1]))
        return EventRecording(events, self.sensor_size, str(path))


def cifar10(tmp_path: Path):
    from spikeflow.data import CIFAR10
    from test_data_image_augment import write_cifar10_binary

    write_cifar10_binary(tmp_path)
    return CIFAR10(tmp_path, train=False)


def spiking_audio(tmp_path: Path):
    pytest.importorskip("h5py")
    from spikeflow.data.io import SpikingAudioFile
    from test_data_datasets_audio_numpy import audio_samples, write_spiking_audio

    samples, labels = audio_samples(np.random.default_rng(0), 3, 20)
    write_spiking_audio(tmp_path / "shd.h5", samples, labels, None)
    return SpikingAudioFile(tmp_path / "shd.h5")


DATASETS = {  # name: (how to build it from tmp_path, its owner in messages, what it holds)
    "NeuromorphicDataset": (lambda tmp: Tiny(tmp), "Tiny", "samples"),
    "DiskCachedDataset": (lambda tmp: DiskCachedDataset(Tiny(tmp), tmp / "cache"),
                          "DiskCachedDataset", "samples"),
    "MemoryCachedDataset": (lambda tmp: MemoryCachedDataset(Tiny(tmp)), "MemoryCachedDataset",
                            "samples"),
    "SlicedDataset": (lambda tmp: SlicedDataset(Tiny(tmp), SliceByEventCount(1)),
                      "SlicedDataset", "slices"),
    "ImageDataset": (cifar10, "CIFAR10", "samples"),
    "SpikingAudioFile": (spiking_audio, "shd.h5", "samples"),
}  # fmt: skip


def label(item):
    return item[1]


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_indexes_alike(tmp_path, name):
    build, owner, what = DATASETS[name]
    data = build(tmp_path)
    n = len(data)
    assert n >= 2
    assert label(data[np.int64(1)]) == label(data[1]) == label(data[torch.tensor(1 - n)])
    assert label(data[-1]) == label(data[n - 1])
    for index in (True, np.bool_(False), torch.tensor(True)):
        with pytest.raises(ConfigurationError, match=r"index must be an integer .*not a bool"):
            data[index]
    for index in (1.0, np.float32(1), "1"):  # a TypeError, as a list's (SlicedDataset's was)
        with pytest.raises(TypeError, match=rf"{owner}: index must be an integer .* got "):
            data[index]
    with pytest.raises(IndexError, match=rf"{owner}: index {n} is out of range for {n} {what}$"):
        data[n]
    with pytest.raises(IndexError, match=rf"index {-n - 1} is out of range for {n} {what}$"):
        data[-n - 1]
    assert len(list(data)) == n  # iteration stops at the IndexError
