"""An on-disk cache of computed arrays (frames, voxel grids, ...), safe against crashes.

**Keys.** An entry is keyed by a JSON-able mapping that must list everything its value
depends on; datasets use ``{dataset, split, representation name and parameters, event
transform parameters, CACHE_VERSION}`` for the *namespace* and the source file's
identity (:func:`file_identity`: resolved path, size and mtime, or a content hash) for
the entry. The key is serialised canonically (sorted JSON) and hashed (SHA-256), so a
change to any parameter is a miss, never a stale hit.

**Layout.** ``<root>/<namespace name>-<16 hex of the namespace hash>/``
holds ``namespace.json`` (the readable namespace) and ``<2 hex>/<64 hex>.sfc`` entries.

**Entry format** (``.sfc``): ``b"SFCACHE1"``, a little-endian uint32 header length,
a JSON header (the full key, dtype, shape, stored dtype), the raw C-order payload, and
a 32-byte SHA-256 of everything before it. Integer arrays with non-negative values are
stored in the smallest unsigned type that holds them and restored on read.

**Guarantees.** Writes are atomic: a temporary file in the same directory, then
``os.replace``; a crash leaves at most a ``.tmp`` file, which is never read (and
:meth:`ArrayCache.clear_temporaries` removes). Entries are not fsync-ed (14x faster per
entry here): after a power loss an entry may be short or empty. On read, a wrong magic,
size, digest or key (a truncated, emptied, bit-flipped or colliding entry) is detected,
reported with a :class:`CacheCorruptionWarning`, deleted, and the value is recomputed
and rewritten, so no state of the disk gives a wrong value.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow._cbuild import cache_root
from spikeflow._files import give_mode
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = [
    "CACHE_VERSION",
    "ArrayCache",
    "CacheCorruptionWarning",
    "atomic_write_bytes",
    "canonical_key",
    "decode_entry",
    "default_cache_dir",
    "encode_entry",
    "file_identity",
    "parallel_map",
    "recall_content_identity",
    "remember_content_identity",
    "stat_identity",
    "stat_signature",
]

#: Bump when a representation's numbers change, so old entries miss.
CACHE_VERSION = 1
_MAGIC = b"SFCACHE1"
_DIGEST = 32
_SUFFIX = ".sfc"


class CacheCorruptionWarning(RuntimeWarning):
    """A cache entry failed its checks; it was deleted and will be rebuilt."""


def default_cache_dir() -> Path:
    """``$SPIKEFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/spikeflow``, else ``~/.cache/spikeflow``
    (the folder the built kernels and decoders use too)."""
    return cache_root()


def canonical_key(key: Mapping[str, Any]) -> str:
    """The canonical JSON of a key (sorted keys, no spaces, tuples as lists)."""
    try:
        return json.dumps(key, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"cache key is not JSON-serialisable ({exc}): {key!r}") from None


def file_identity(path: str | os.PathLike, content_hash: bool = False) -> dict[str, Any]:
    """What identifies a source file: resolved path, size and mtime (ns), or its SHA-256.

    ``content_hash=True`` keys by content only (robust to moving the data or to tools
    that keep mtimes; reads the whole file once).
    """
    p = Path(path).resolve()
    if content_hash:
        st = p.stat()
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return {"size": st.st_size, "sha256": h.hexdigest()}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def stat_identity(
    path: str | os.PathLike, resolved: dict[Any, tuple[str, tuple[int, int]]]
) -> dict[str, Any]:
    """:func:`file_identity` of ``path`` by stat, for a caller that keys many reads of
    the same files: ``resolved`` (the caller's, ``path`` -> its resolved path and the
    device and inode it named) spares resolving the path (which walks every component)
    at every read. The file is stated at every read and its path resolved again when
    the file it names is another one (a symbolic link pointed elsewhere, the file
    replaced), so the identity is always that of the file read now."""
    st = os.stat(path)
    known = resolved.get(path)
    if known is None or known[1] != (st.st_dev, st.st_ino):
        known = resolved[path] = (str(Path(path).resolve()), (st.st_dev, st.st_ino))
    return {"path": known[0], "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def stat_signature(path: str | os.PathLike) -> dict[str, Any]:
    """What changes whenever the file at ``path`` is written, replaced or moved: its
    resolved path, size, mtime, ctime (which no tool can set back: ``touch -d``,
    ``cp -p`` and ``rsync -t`` leave it at the time of their write) and inode.

    Not the device number: the kernel numbers each mount as it mounts it (an NFS or
    other network file system gets a different one on every client, and may get
    another at its next mount), so a record keyed on it would be hashed again on
    every machine sharing the data (and rewritten by each in turn). Leaving it out
    cannot name a changed file as unchanged: every write or replacement on one file
    system moves the ctime (or the inode), and another file system mounted at the same
    path shows the same inode, size, mtime and ctime to the nanosecond only as a block
    copy of this one (a snapshot, an image), which holds the same bytes."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}  # fmt: skip


#: A file changed less than this many seconds before its hash would be recorded is not
#: recorded (git's "racily clean" files): where a file system keeps times coarsely
#: (FAT: 2 s; HFS+ and some NFS servers: 1 s; ext4 before Linux 6.13: a clock tick), a
#: rewrite of the same size within that time keeps the whole signature, and the record
#: would name the old content forever. Such a file is hashed again by the next run.
RACY_WINDOW_S = 3.0


def _memo_path(memo_root: Path, path: str | os.PathLike) -> Path:
    name = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()
    return Path(memo_root) / "content-hashes" / name[:2] / f"{name}.json"


def recall_content_identity(
    path: str | os.PathLike, memo_root: str | os.PathLike
) -> dict[str, Any] | None:
    """The content identity (:func:`file_identity` with ``content_hash=True``) recorded
    for ``path`` under ``memo_root`` by :func:`remember_content_identity`, if the file's
    :func:`stat_signature` is still the one recorded with it; else None (never
    recorded, or the file changed since: hash it again). A damaged record is None too.
    A record written before the signature left out the device number (its
    ``"device"`` entry) is read as if it had none (see :func:`stat_signature`)."""
    try:
        record = json.loads(_memo_path(Path(memo_root), path).read_bytes())
        signature = dict(record["signature"])
        signature.pop("device", None)
        if signature == stat_signature(path):
            identity = record["identity"]
            if isinstance(identity, dict) and isinstance(identity.get("sha256"), str):
                return identity
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def remember_content_identity(
    path: str | os.PathLike,
    identity: Mapping[str, Any],
    signature: Mapping[str, Any],
    memo_root: str | os.PathLike,
) -> None:
    """Record the content ``identity`` of ``path`` under ``memo_root``, with the
    ``signature`` taken before it was hashed, so that later runs skip the hashing while
    the file stays as it is (:func:`recall_content_identity`). Nothing is recorded when
    the file changed during the hashing or within :data:`RACY_WINDOW_S` seconds before
    now, or when ``memo_root`` cannot be written (the next run hashes again; no
    temporary file is left). Not fsync-ed: a record lost in a crash is only hashed again."""
    try:
        if stat_signature(path) != dict(signature):
            return
        changed = max(int(signature["mtime_ns"]), int(signature["ctime_ns"]))
        if time.time_ns() - changed < RACY_WINDOW_S * 1e9:
            return
        target = _memo_path(Path(memo_root), path)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"signature": dict(signature), "identity": dict(identity)})
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError:  # a full disk, say
        try:
            os.unlink(tmp)
        except OSError:
            pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir, fsync, replace).

    ``durable=False`` skips the two fsyncs (the file's and its folder's): the write is
    still atomic for a process that dies, but a power loss may leave the file empty or
    short, so only for files a reader checks and can rebuild (cache entries: their
    digest; about 14x faster per small file on this machine's disk)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        give_mode(tmp, path)  # not mkstemp's 0o600, which hides it from other users
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable and hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        try:
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)


def _compact_dtype(array: np.ndarray) -> np.dtype:
    if array.dtype.kind in "iu" and array.size and array.min() >= 0:
        top = int(array.max())
        for dt in (np.uint8, np.uint16, np.uint32):
            if top <= np.iinfo(dt).max:
                return np.dtype(dt) if np.dtype(dt).itemsize < array.dtype.itemsize else array.dtype
    return array.dtype


def encode_entry(array: np.ndarray, key: Mapping[str, Any]) -> bytes:
    """The bytes of a cache entry holding ``array`` under ``key`` (format in the module doc)."""
    array = np.asarray(array)
    if array.dtype.hasobject or array.dtype.names is not None:
        raise ConfigurationError(f"only plain numeric arrays can be cached; got {array.dtype}")
    stored = _compact_dtype(array)
    header = {
        "key": canonical_key(key),
        "dtype": array.dtype.str,
        "stored_dtype": stored.str,
        "shape": list(array.shape),
    }
    head = json.dumps(header, sort_keys=True).encode()
    body = _MAGIC + struct.pack("<I", len(head)) + head
    body += np.ascontiguousarray(array, dtype=stored).tobytes()
    return body + hashlib.sha256(body).digest()


def decode_entry(raw: bytes, key: Mapping[str, Any] | None = None, path: Any = None) -> np.ndarray:
    """Check and decode an entry; ``key`` (if given) must match the stored one.

    Raises:
        DataFormatError: naming ``path`` and what is wrong (magic, length, digest, key).
    """
    return _decode_entry(raw, None if key is None else canonical_key(key), path)


def _decode_entry(raw: bytes, key_text: str | None, path: Any) -> np.ndarray:
    """:func:`decode_entry` with the key as its canonical JSON (:func:`canonical_key`)."""
    where = path or "<cache entry>"
    if len(raw) < len(_MAGIC) + 4 + _DIGEST or raw[: len(_MAGIC)] != _MAGIC:
        raise DataFormatError(f"{where}: not a spikeflow cache entry (bad magic or too short)")
    if hashlib.sha256(raw[:-_DIGEST]).digest() != raw[-_DIGEST:]:
        raise DataFormatError(f"{where}: checksum mismatch (truncated or corrupted entry)")
    (hlen,) = struct.unpack_from("<I", raw, len(_MAGIC))
    start = len(_MAGIC) + 4
    try:
        header = json.loads(raw[start : start + hlen])
        dtype, stored = np.dtype(header["dtype"]), np.dtype(header["stored_dtype"])
        shape = tuple(int(s) for s in header["shape"])
        stored_key = header["key"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{where}: unreadable header ({type(exc).__name__}: {exc})") from None
    if key_text is not None and stored_key != key_text:
        raise DataFormatError(f"{where}: entry belongs to another key")
    payload = raw[start + hlen : -_DIGEST]
    if len(payload) != stored.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise DataFormatError(
            f"{where}: payload has {len(payload)} bytes, header says {shape} {stored}"
        )
    return np.frombuffer(payload, dtype=stored).reshape(shape).astype(dtype)


class ArrayCache:
    """Arrays on disk under ``root``, grouped in one namespace (see the module docstring).

    Args:
        root: the cache directory (created on first write).
        namespace: a JSON-able mapping shared by all entries (e.g. dataset and
            representation parameters); its ``"name"`` item, if any, names the folder.
    """

    def __init__(self, root: str | os.PathLike, namespace: Mapping[str, Any]) -> None:
        self.namespace = dict(namespace)
        text = canonical_key(self.namespace)
        self._namespace_text = text
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(
            self.namespace.get("name", "cache")))[:40]  # fmt: skip
        self.directory = Path(root) / f"{name}-{digest}"

    def full_key(self, key: Mapping[str, Any]) -> dict[str, Any]:
        """The key stored in an entry: the namespace plus the entry's own key."""
        return {"namespace": self.namespace, "entry": dict(key)}

    def _key_text(self, key: Mapping[str, Any]) -> str:
        """``canonical_key(self.full_key(key))``, from the namespace's JSON made once:
        the canonical JSON of a dict is its sorted items' JSON ("entry" < "namespace")."""
        return f'{{"entry":{canonical_key(dict(key))},"namespace":{self._namespace_text}}}'

    def path_for(self, key: Mapping[str, Any]) -> Path:
        """Where the entry for ``key`` lives (it may not exist)."""
        return self._path_for(self._key_text(key))

    def _path_for(self, key_text: str) -> Path:
        digest = hashlib.sha256(key_text.encode()).hexdigest()
        return self.directory / digest[:2] / (digest + _SUFFIX)

    def load(self, key: Mapping[str, Any]) -> np.ndarray | None:
        """The cached array, or ``None`` on a miss or a corrupt entry (deleted, warned)."""
        key_text = self._key_text(key)
        path = self._path_for(key_text)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # e.g. another user's entry that this one may not read
            warnings.warn(f"could not read cache entry {path}: {exc}; computing it",
                          RuntimeWarning, stacklevel=2)  # fmt: skip
            return None
        try:
            return _decode_entry(raw, key_text, path)
        except DataFormatError as exc:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as why:  # a read-only cache: the entry stays, the value is rebuilt
                warnings.warn(f"{exc}; rebuilding it (could not delete it: {why})",
                              CacheCorruptionWarning, stacklevel=2)  # fmt: skip
                return None
            warnings.warn(f"{exc}; deleting it and rebuilding", CacheCorruptionWarning,
                          stacklevel=2)  # fmt: skip
            return None

    def store(self, key: Mapping[str, Any], array: np.ndarray) -> Path:
        """Write ``array`` under ``key`` atomically; returns the entry's path."""
        manifest = self.directory / "namespace.json"
        if not manifest.exists():
            text = json.dumps(self.namespace, sort_keys=True, indent=1)
            atomic_write_bytes(manifest, text.encode())
        path = self.path_for(key)
        # Not fsync-ed (a frame cache of 70k files filled 14x faster): an entry a power
        # loss leaves short or empty fails its digest on read and is computed again.
        atomic_write_bytes(path, encode_entry(array, self.full_key(key)), durable=False)
        return path

    def get_or_compute(
        self, key: Mapping[str, Any], compute: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """Load the entry, or compute, store and return it.

        A failed write (e.g. a full disk) warns and returns the computed array.
        """
        hit = self.load(key)
        if hit is not None:
            return hit
        value = np.asarray(compute())
        try:
            self.store(key, value)
        except OSError as exc:
            warnings.warn(f"could not write cache entry {self.path_for(key)}: {exc}",
                          RuntimeWarning, stacklevel=2)  # fmt: skip
        return value

    def clear_temporaries(self, older_than_s: float = 3600.0) -> int:
        """Delete temporary files left by crashed writers (``.*.tmp`` files at least
        ``older_than_s`` seconds old); returns how many were deleted.

        A file that cannot be deleted (a ``PermissionError``: another user's, in a shared
        cache; any other ``OSError``) is left and the others are still deleted; one
        :class:`RuntimeWarning` after the sweep names how many were left, the first
        few of them and why.
        """
        if not self.directory.exists():
            return 0
        now, removed = time.time(), 0
        failed: list[str] = []
        for tmp in self.directory.rglob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime >= older_than_s:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:  # removed meanwhile (another process cleaning)
                pass
            except OSError as exc:
                failed.append(f"{tmp} ({type(exc).__name__}: {exc.strerror or exc})")
        if failed:
            shown = "; ".join(failed[:3]) + ("; ..." if len(failed) > 3 else "")
            warnings.warn(
                f"ArrayCache.clear_temporaries: could not delete {len(failed)} of the "
                f"{len(failed) + removed} old temporary files in {self.directory} (deleted "
                f"the other {removed}): {shown}",
                RuntimeWarning,
                stacklevel=2,
            )
        return removed


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item")


def _run_chunk(fn: Callable[[Any], Any], chunk: Sequence[Any]) -> list[Any]:
    return [fn(item) for item in chunk]


def parallel_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    workers: int | None = None,
    executor: str = "process",
    progress: bool = True,
    desc: str = "preprocessing",
    chunksize: int | None = None,
) -> list[Any]:
    """``[fn(item) for item in items]`` in parallel, in order, with a progress bar.

    Args:
        workers: parallel workers (default: the CPU count); ``0`` or ``1`` runs serially.
        executor: ``"process"`` (a pool started with ``spawn``, so it is safe with
            threads and CUDA; ``fn`` and the items must be picklable) or ``"thread"``.
        progress: show a tqdm progress bar (tqdm is a required dependency); ``False``
            shows nothing.
        chunksize: items per task (default: about 4 tasks per worker).
    """
    items = list(items)
    if executor not in ("process", "thread"):
        raise ConfigurationError(f"executor must be 'process' or 'thread'; got {executor!r}")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    bar = _progress(len(items), desc, progress)
    try:
        if workers <= 1 or len(items) <= 1:
            out = []
            for item in items:
                out.append(fn(item))
                if bar is not None:
                    bar.update(1)
            return out
        size = chunksize or max(1, -(-len(items) // (4 * workers)))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        pool: Executor
        if executor == "thread":
            pool = ThreadPoolExecutor(workers)
        else:
            import multiprocessing

            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results: list[Any] = [None] * len(chunks)
        with pool:
            futures = {pool.submit(_run_chunk, fn, c): i for i, c in enumerate(chunks)}
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                if bar is not None:
                    bar.update(len(chunks[i]))
        return [r for chunk in results for r in chunk]
    finally:
        if bar is not None:
            bar.close()
