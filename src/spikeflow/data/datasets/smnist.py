"""Spiking sequential MNIST (Tonic's ``SMNIST``): each MNIST digit unrolled pixel by
pixel into a sequence of 784 grey values, encoded into spikes by threshold crossings."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow._checks import check_flag
from spikeflow.data.datasets._common import Archive, _root_lock, how_to_get, shown_path
from spikeflow.data.datasets.audio import ChannelFrames
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.datasets.images import MNIST
from spikeflow.data.download import download_url
from spikeflow.data.events import EventRecording, make_events
from spikeflow.data.io.images import read_idx
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["SMNIST", "smnist_encode"]

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _check_options(num_neurons: Any, dt: Any) -> tuple[int, int]:
    """``num_neurons`` (odd, 3-65533) and ``dt`` (a positive whole number of µs) checked."""
    if isinstance(num_neurons, bool) or not isinstance(num_neurons, int | np.integer):
        raise ConfigurationError(f"SMNIST: num_neurons must be an int; got {num_neurons!r}")
    if num_neurons % 2 == 0 or not 3 <= num_neurons <= 65533:
        raise ConfigurationError(
            f"SMNIST: num_neurons must be odd and in 3..65533 (half the neurons minus one "
            f"encode upward crossings, as many downward ones, one the white pixels); got "
            f"{num_neurons}"
        )
    if isinstance(dt, bool) or not isinstance(dt, int | float | np.integer | np.floating):
        raise ConfigurationError(f"SMNIST: dt must be a number of µs; got {dt!r}")
    if not (np.isfinite(dt) and dt > 0 and float(dt) == round(float(dt))):
        raise ConfigurationError(
            f"SMNIST: dt must be a positive whole number of µs (event times are integer "
            f"µs); got {dt!r}"
        )
    return int(num_neurons), int(dt)


def smnist_encode(
    image: np.ndarray, num_neurons: int = 99, duplicate: bool = True, dt: int = 1000
) -> EventRecording:
    """The spike encoding of Tonic 1.7's ``SMNIST`` for one MNIST image.

    The 784 grey values are read in row-major order; pixel ``k`` is step ``k``. With
    ``h = num_neurons // 2`` and the ``h`` thresholds ``linspace(0, 254, h)`` cast to
    uint8 (truncated), neuron ``j < h`` fires at step ``k`` when the value rises from
    below threshold ``j`` (at ``k - 1``) to at least it (at ``k``), neuron ``h + j`` when
    it falls from at least threshold ``j`` to below it, and neuron ``num_neurons`` at each
    step whose value is 255. The event's channel is ``x = num_neurons - neuron``. The
    threshold-0 neurons (``j = 0``) can never cross, so ``x`` stays in
    ``0..num_neurons - 1`` (``x = 0``: white pixels; channels 1 and ``h + 1`` stay
    silent), Tonic's ``sensor_size`` of ``num_neurons`` channels.
    Events are sorted by step, then ``x``. With ``duplicate`` each event is emitted
    twice, at steps ``2k`` and ``2k + 1``, and the events are then sorted stably by
    time (Tonic leaves each spike's two copies side by side, so its events go back in
    time where a step has several spikes; the same events, in time order). Times are
    ``step * dt`` µs; ``y = 0`` and ``p = 0`` (one polarity; Tonic writes ``p = 1``).

    Args:
        image: the ``28 x 28`` (or 784) uint8 grey values.
        num_neurons: odd, at least 3 (Tonic's default 99).
        duplicate: emit each spike twice (Tonic's default True).
        dt: µs per step, a positive whole number (Tonic's default 1000).

    Returns:
        An EventRecording with ``sensor_size = (num_neurons, 1, 1)``.

    Raises:
        ConfigurationError: an image that is not 784 uint8 values, or a bad option.
    """
    num_neurons, dt = _check_options(num_neurons, dt)
    duplicate = check_flag("smnist_encode", "duplicate", duplicate)
    values = np.asarray(image)
    if values.dtype != np.uint8 or values.size != 784:
        raise ConfigurationError(
            f"smnist_encode: image must be 784 uint8 grey values (28 x 28); got "
            f"{values.dtype} {values.shape}"
        )
    values = values.reshape(-1)
    half = num_neurons // 2
    levels = np.linspace(0.0, 254.0, half).astype(np.uint8)
    above = values[:, None] >= levels[None, :]  # [784, half]
    prev, cur = above[:-1], above[1:]
    up_step, up_neuron = np.nonzero(~prev & cur)
    down_step, down_neuron = np.nonzero(prev & ~cur)
    white = np.flatnonzero(values == 255)
    step = np.concatenate([up_step, down_step, white]).astype(np.int64)
    neuron = np.concatenate(
        [up_neuron, down_neuron + half, np.full(white.size, num_neurons)]
    ).astype(np.int64)
    # Crossings are found between steps k and k + 1 and belong to step k, as Tonic has
    # them (its comparison of pixel k with k + 1 reports index k).
    channel = num_neurons - neuron
    order = np.lexsort((channel, step))
    step, channel = step[order], channel[order]
    if duplicate:
        step = (2 * step[:, None] + np.arange(2)[None, :]).reshape(-1)
        channel = np.repeat(channel, 2)
        # Tonic interleaves the copies per spike (2k, 2k + 1, 2k, 2k + 1, ...): not in
        # time order when a step has several spikes; sort stably by time.
        order = np.argsort(step, kind="stable")
        step, channel = step[order], channel[order]
    events = make_events(step * dt, channel, None, np.zeros(step.size, dtype=np.int8))
    return EventRecording(events, (num_neurons, 1, 1), None)


class SMNIST(ChannelFrames):
    """Spiking sequential MNIST, the dataset of Tonic 1.7's ``SMNIST``: the MNIST images
    encoded by :func:`smnist_encode` (Tonic's encoding, event for event), the MNIST
    label as target; 60,000 training and 10,000 test samples.

    Layout: the four MNIST IDX files, uncompressed or ``.gz``, in ``root/smnist/``
    (where Tonic's ``SMNIST(save_to=root)`` keeps them), directly in ``root`` or in
    torchvision's ``root/MNIST/raw/``. ``download=True`` fetches the split's two
    ``.gz`` files into ``root/smnist/`` from the mirror Tonic uses
    (``storage.googleapis.com/cvdf-datasets/mnist/``; the official MD5s, the same as
    :class:`~spikeflow.data.datasets.MNIST`'s).

    Own options (keyword only): ``num_neurons`` (odd, default 99), ``duplicate``
    (default True), ``dt`` (µs per step, default 1000), as Tonic's; they change the
    events and are part of the frame cache key. ``sensor_size`` is
    ``(num_neurons, 1, 1)``, Tonic's (channels: see :func:`smnist_encode`).

    Samples: an EventRecording (``x`` = channel, ``t`` in µs, ``y = p = 0``), or with
    ``data_type="frame"`` spike counts ``[T, num_neurons]`` (a DataLoader makes
    ``[B, T, C]``). Other arguments: :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sample_kind = "a spike-train dataset: MNIST digits read pixel by pixel as spikes, not images"

    sensor_size = (99, 1, 1)
    classes: ClassVar[tuple[str, ...]] = tuple(str(d) for d in range(10))
    homepage = "https://yann.lecun.com/exdb/mnist/"
    downloadable: ClassVar[bool] = True
    #: Tonic's SMNIST mirror of the MNIST files.
    base_url: ClassVar[str] = "https://storage.googleapis.com/cvdf-datasets/mnist/"
    md5s: ClassVar[dict[str, str]] = MNIST.md5s
    sample_options = ("num_neurons", "duplicate", "dt")

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        *args: Any,
        num_neurons: int = 99,
        duplicate: bool = True,
        dt: int = 1000,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        self.num_neurons, self.dt = _check_options(num_neurons, dt)
        self.duplicate = check_flag("SMNIST", "duplicate", duplicate)
        self.download = check_flag("SMNIST", "download", download)
        self.sensor_size = (self.num_neurons, 1, 1)  # type: ignore[misc]
        super().__init__(root, train, *args, **kwargs)

    @classmethod
    def sensor_size_for(cls, num_neurons: int = 99, **_: Any) -> tuple[int, int, int]:
        """The ``sensor_size`` of a dataset built with ``num_neurons``, without files."""
        return (_check_options(num_neurons, 1)[0], 1, 1)

    def _find(self, stem: str) -> Path | None:
        for folder in (self.root / "smnist", self.root, self.root / "MNIST" / "raw"):
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    return folder / name
        return None

    def _find_samples(self) -> list[tuple[Path, int]]:
        stems = _FILES[self.split]
        paths = [self._find(stem) for stem in stems]
        missing = [stem + ".gz" for stem, p in zip(stems, paths) if p is None]
        if missing:
            if not self.download:
                archives = [Archive(n, self.md5s[n], self.base_url + n) for n in missing]
                layout = (
                    "<root>/smnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (or "
                    "directly in <root>, or torchvision's <root>/MNIST/raw/)"
                )
                advice = how_to_get("SMNIST", self.root / "smnist", archives, self.homepage, layout)
                raise DatasetNotFoundError(
                    f"SMNIST ({self.split}) not found in {shown_path(self.root)}: missing "
                    f"{', '.join(missing)}. {advice}"
                )
            with _root_lock(self.root):
                for name in missing:
                    target = self.root / "smnist" / name
                    download_url(self.base_url + name, target, md5=self.md5s[name])
            paths = [self._find(stem) for stem in stems]
        image_path, label_path = paths
        assert image_path is not None and label_path is not None
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
            raise DataFormatError(
                f"{image_path}: expected uint8 images [N, 28, 28]; the IDX header says "
                f"{images.dtype} {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataFormatError(
                f"{label_path}: expected {images.shape[0]} uint8 labels (one per image of "
                f"{image_path}); the IDX header says {labels.dtype} {labels.shape}"
            )
        bad = np.flatnonzero(labels > 9)
        if bad.size:
            i = int(bad[0])
            raise DataFormatError(
                f"{label_path}: offset {8 + i}: label {int(labels[i])} is not a digit 0-9"
            )
        # Only the file is kept, not its 47 MB of pixels: each process (a DataLoader
        # worker gets a pickled copy) reads them at its first sample (:attr:`images`).
        self._image_path, self._image_count = image_path, int(images.shape[0])
        # The pixels' checksum: a file rewritten with as many other images is caught
        # where the images are read again (the labels above are the old file's).
        self._image_crc = zlib.crc32(images)
        self._images: np.ndarray | None = None
        return [(image_path, int(label)) for label in labels]

    @property
    def images(self) -> np.ndarray:
        """The split's images, uint8 ``[N, 28, 28]``, read from the IDX file at the first
        access in each process (not pickled): an uncompressed file is memory-mapped, a
        ``.gz`` one decompressed.

        Raises:
            DataFormatError: the file no longer holds the ``N`` images it held when the
                dataset was built (another number of images, or other pixels: their
                CRC-32 is compared, one pass over the file per process).
        """
        if self._images is None:
            path, count = self._image_path, self._image_count
            with open(path, "rb") as f:
                head = f.read(16)
            if head[:2] == b"\x1f\x8b" or count == 0:  # gzip: no random access
                images = read_idx(path)
            else:
                images = np.memmap(path, np.uint8, "r", offset=16)
                if head == struct.pack(">IIII", 2051, count, 28, 28) and images.size == count * 784:
                    images = images.reshape(count, 28, 28)
            if images.dtype != np.uint8 or images.shape != (count, 28, 28):
                raise DataFormatError(
                    f"{path}: changed since the dataset was built: expected {count} uint8 "
                    f"images [{count}, 28, 28], found {images.dtype} {images.shape}"
                )
            crc = zlib.crc32(images)
            if crc != self._image_crc:
                raise DataFormatError(
                    f"{path}: changed since the dataset was built: the {count} images' "
                    f"pixels differ (CRC-32 {crc:08x}, built with {self._image_crc:08x}); "
                    "build the dataset again"
                )
            self._images = images
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = None  # read again in the process that unpickles it
        return state

    def cache_entry_key(self, index: int) -> dict[str, Any]:
        """The cache key of sample ``index``: the image file and the image's row."""
        return {**super().cache_entry_key(index), "row": index % len(self)}

    def events(self, index: int) -> EventRecording:
        """Sample ``index``'s spikes (:func:`smnist_encode`), after ``event_transform``."""
        image = self.images[index]
        rec = smnist_encode(image, self.num_neurons, self.duplicate, self.dt)
        rec = EventRecording(rec.events, rec.sensor_size, f"{self.samples[index][0]}[{index}]")
        return rec if self.event_transform is None else self.event_transform(rec)
