"""Bullying10K (Dong et al., NeurIPS 2023 Datasets and Benchmarks): ten actions, five of
them bullying, recorded by a DAVIS346; one ``.npy`` file of dv-python event packets per
sample.

The release's files are what the authors' converter wrote: ``np.save`` of the list of the
event packets dv-python read from each ``.aedat4`` recording (``f["events"].numpy()``),
each packet a structured array ``timestamp`` (µs), ``x``, ``y``, ``polarity`` (plus
padding fields). NumPy stored that list as a 1-D object array of packets (packets of
different lengths, the usual case: a pickle inside the ``.npy``) or, when every packet has
the same length, as one 2-D structured array. :func:`read_bullying10k` reads both. The
pickle is loaded by :func:`~spikeflow.data.io.safe_pickle.load_numpy_pickle`, which
builds only an object array of structured arrays of plain numbers, each checked against
its data before it is made: a crafted file cannot run code, crash numpy or ask for more
memory than it holds data.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikeflow._checks import check_flag
from spikeflow.data.datasets._common import (
    Archive,
    files_not_found,
    prepare_dataset_root,
    shown_path,
)
from spikeflow.data.datasets.base import NeuromorphicDataset
from spikeflow.data.events import EventRecording, format_error, make_events
from spikeflow.data.io._common import as_int64, read_bytes, sort_by_time
from spikeflow.data.io.numpy_layouts import _parse_npy
from spikeflow.data.io.safe_pickle import PICKLE_ERRORS, PicklePolicy, load_numpy_pickle
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = ["BULLYING10K_FIELDS", "Bullying10K", "read_bullying10k"]

#: The packet fields read (dv-python's event dtype; its padding fields are ignored).
BULLYING10K_FIELDS = ("timestamp", "x", "y", "polarity")

#: A Bullying10K pickle: an object array of structured arrays of plain numbers.
_PACKETS_PICKLE = PicklePolicy(
    "a Bullying10K sample (an array of event packets)", structured=True, object_arrays=True
)


def _load_packets(path: str | os.PathLike) -> tuple[list[np.ndarray], int | None]:
    """The packets of a Bullying10K ``.npy`` (each flattened) and, for a structured
    array, the byte offset of its data (``None`` for a pickle)."""
    raw = read_bytes(path)
    fmt = np.lib.format
    fh = io.BytesIO(raw)
    try:
        major, _minor = fmt.read_magic(fh)
        read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, _fortran, dtype = read_header(fh)
    except Exception as exc:  # numpy raises ValueError/SyntaxError/... on bad headers
        raise format_error(path, 0, f"not a valid .npy header: {exc}") from None
    if not dtype.hasobject:
        arr, start = _parse_npy(raw, path, None)
        if arr.dtype.names is None:
            raise format_error(
                path, 0, f"expected dv-python event packets (fields {BULLYING10K_FIELDS}), "
                f"got an array of {arr.dtype}"
            )  # fmt: skip
        return [arr.reshape(-1)], start
    start = fh.tell()
    if dtype != np.dtype(object):
        raise format_error(path, 0, f"dtype {dtype} mixes objects into a structure")
    try:
        obj = load_numpy_pickle(raw[start:], _PACKETS_PICKLE)
    except PICKLE_ERRORS as exc:
        raise format_error(
            path, start, f"the object array's pickle cannot be read: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(obj, np.ndarray) or obj.dtype != object or obj.shape != tuple(shape):
        raise format_error(
            path, start, f"the pickle holds {type(obj).__name__} "
            f"{getattr(obj, 'dtype', '')}{getattr(obj, 'shape', '')}, not the object array "
            f"of shape {tuple(shape)} the header promises"
        )  # fmt: skip
    packets = []
    for k, packet in enumerate(obj.reshape(-1)):
        if not isinstance(packet, np.ndarray) or packet.dtype.names is None:
            raise format_error(
                path, None, f"packet {k} is {type(packet).__name__} "
                f"{getattr(packet, 'dtype', '')}, not a structured array of events"
            )  # fmt: skip
        packets.append(packet.reshape(-1))
    return packets, None


def read_bullying10k(
    path: str | os.PathLike, sensor_size: tuple[int, int] = (346, 260)
) -> EventRecording:
    """Read a Bullying10K sample: a ``.npy`` of dv-python event packets (module
    docstring), concatenated in file order and sorted by time (stable; the packets are
    already in order, so this only matters for a damaged file). ``polarity`` 1 is ON.

    Raises:
        DataFormatError: an empty or truncated file, a bad ``.npy`` header, a pickle that
            names anything but NumPy arrays and dtypes or holds something else than the
            header promises, a packet without the fields :data:`BULLYING10K_FIELDS`,
            non-integer values, a polarity other than 0/1, or coordinates outside
            ``sensor_size``.
    """
    packets, start = _load_packets(path)
    for k, packet in enumerate(packets):
        missing = [f for f in BULLYING10K_FIELDS if f not in packet.dtype.names]
        if missing:
            raise format_error(
                path, start, f"packet {k} has no field(s) {missing} (dtype {packet.dtype}); "
                f"expected dv-python events {BULLYING10K_FIELDS}"
            )  # fmt: skip
    cols = {}
    for name in BULLYING10K_FIELDS:
        parts = [p[name] for p in packets]
        cols[name] = as_int64(np.concatenate(parts) if parts else np.zeros(0, np.int64), name, path)
    t, x, y, p = (cols[n] for n in BULLYING10K_FIELDS)
    itemsize = packets[0].dtype.itemsize if packets else 0

    def offset_of(i: int) -> int | None:
        return None if start is None else start + i * itemsize

    width, height = sensor_size
    bad = np.flatnonzero((x < 0) | (y < 0) | (x >= width) | (y >= height) | ((p != 0) & (p != 1)))
    if bad.size:
        i = int(bad[0])
        raise format_error(
            path, offset_of(i), f"event {i} (x={x[i]}, y={y[i]}, polarity={p[i]}) has a "
            f"polarity other than 0/1 or lies outside the {width}x{height} sensor"
        )  # fmt: skip
    events = sort_by_time(make_events(t, x, y, p.astype(np.int8)))
    return EventRecording(events, (width, height, 2), str(path))


def _sorted_files(folder: Path, suffix: str) -> list[Path]:
    """The files named ``*<suffix>`` under ``folder``, in the order of a top-down
    ``os.walk`` whose listings are sorted: a folder's files (by name), then each of its
    sub-folders (by name) in turn."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(suffix)]
    return found


#: figshare downloads and MD5s of the ten class archives, as SpikingJelly 2.0's
#: ``Bullying10kClassification.resource_url_md5`` lists them.
_FIGSHARE = {
    "handshake": ("41268834", "681d70f499e736a1e805305284ddc425"),
    "slapping": ("41247021", "84b41d6805958f9f62f425223916ffc2"),
    "punching": ("41263314", "40954f480ab210099d448b7b88fc4719"),
    "walking": ("41247024", "56e4cac9c0814ce701c3b2292c15b6a9"),
    "fingerguess": ("41253057", "f83114e5b4f0ea57cac86fb080c7e4d7"),
    "strangling": ("41261904", "8185ecd6f3147e9b609d22f06270aa86"),
    "greeting": ("41268792", "4a763fad728b04c8356db8544f1121fe"),
    "pushing": ("41268951", "7986c74ade7149a98672120a89b13ba8"),
    "hairgrabs": ("41277855", "a9cf690ed0a3305da4a4b8e110f64db1"),
    "kicking": ("41278008", "6c3218f977de4ac29c84a10b17779c33"),
}


class Bullying10K(NeuromorphicDataset):
    """Bullying10K (Dong et al., NeurIPS 2023): 10 actions (handshake, slapping,
    punching, walking, finger guessing, strangling, greeting, pushing, hair grabbing,
    kicking) by pairs of actors, DAVIS346 (346x260, 2 polarities), read by
    :func:`read_bullying10k`.

    Layout: ``root/<action>/.../<sample>.npy`` (the ten official ``<action>.zip``
    archives extracted in ``root``; ``download=True`` fetches them from figshare, MD5s and
    URLs of SpikingJelly 2.0). Labels follow :attr:`classes` (SpikingJelly's
    ``BULLYING10K_CATEGORY_LABEL``: handshake 0 ... kicking 9).

    Split (the release has none; the authors' loader, which SpikingJelly follows): every
    ``.npy`` file of all actions in one list, and every fifth file from the first
    (index 0, 5, 10, ...) is the test split, the others the training split. Both loaders
    take the list in directory-listing order, which the file system decides; spikeflow
    makes it deterministic: the action folders in sorted name order, each walked top
    down with sorted listings (a folder's files, then its sub-folders). SpikingJelly run
    with sorted listings gives the same split. Samples are ordered by label, then file
    name, as SpikingJelly's converted folders are; files that share a name in different
    sub-folders are all kept (SpikingJelly's conversion writes them to one file). Other
    arguments: :class:`~spikeflow.data.datasets.NeuromorphicDataset`.
    """

    sensor_size = (346, 260, 2)
    num_classes = 10
    classes: ClassVar[tuple[str, ...]] = tuple(_FIGSHARE)
    downloadable = True
    homepage = "https://github.com/Brain-Cog-Lab/Bullying10K"
    archives: ClassVar[tuple[Archive, ...]] = tuple(
        Archive(f"{name}.zip", md5, f"https://figshare.com/ndownloader/files/{file_id}")
        for name, (file_id, md5) in _FIGSHARE.items()
    )
    layout = "<root>/<action>/.../<sample>.npy (10 action folders, handshake ... kicking)"
    #: Every ``test_every``-th file of the whole list (from the first) is a test sample.
    test_every: ClassVar[int] = 5

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        *args: Any,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        if not isinstance(train, bool):
            raise ConfigurationError(
                f"Bullying10K: train must be True or False (the split of every fifth file); "
                f"got {train!r}"
            )
        self.download = check_flag("Bullying10K", "download", download)
        super().__init__(root, train, *args, **kwargs)

    def _find_samples(self) -> list[tuple[Path, int]]:
        def extracted() -> bool:
            return all((self.root / c).is_dir() for c in self.classes)

        prepare_dataset_root(
            self,
            "Bullying10K",
            self.root / "<action>",
            self.archives,
            download=self.download,
            check=extracted,
        )
        listing: list[tuple[Path, int]] = []
        empty = []
        for name in sorted(self.classes):
            files = _sorted_files(self.root / name, ".npy")
            if not files:
                empty.append(name)
            listing += [(f, self.classes.index(name)) for f in files]
        if len(empty) == len(self.classes):
            problem = f"no .npy files under {shown_path(self.root)}"
            raise files_not_found(self, "Bullying10K", problem, self.archives)
        if empty:
            raise DataFormatError(
                f"{self.root}: action folder(s) {empty} hold no .npy file; the extraction is "
                "incomplete"
            )
        test = self.test_every
        chosen = [s for k, s in enumerate(listing) if (k % test == 0) != self.train]
        return sorted(chosen, key=lambda s: (s[1], s[0].name, str(s[0])))

    def _read(self, path: Path) -> EventRecording:
        return read_bullying10k(path, self.sensor_size[:2])
