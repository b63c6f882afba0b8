"""The bounds :func:`~spikeflow.data.download.extract_archive` checks before it writes
anything: the bytes an archive's files declare (:func:`check_total`) and the entries it
would create (:func:`check_zip_count`, :func:`check_paths`).

``extract_archive`` refuses an archive whose members, or
the members together with the folders their paths imply, outnumber ``max_members``
(:data:`DEFAULT_MAX_MEMBERS` unless told otherwise): a ZIP of a million empty files is
a few tens of MB, yet costs a million inodes and minutes of file creation, and a
million parsed member records in memory. A ZIP's members are counted from its central
directory (:func:`zip_member_count`) before ``zipfile`` parses it into objects; a tar's
as they are listed, stopping at the first member over the bound.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from spikeflow.errors import ConfigurationError, SpikeflowError

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "UnsafeArchiveError",
    "check_max_members",
    "check_paths",
    "check_total",
    "check_zip_count",
    "count_paths",
    "zip_member_count",
]


class UnsafeArchiveError(SpikeflowError, ValueError):
    """An archive member would be written outside the destination, or is a device file;
    or the archive holds more than its bounds allow (bytes, members)."""

    __module__ = "spikeflow.data.download"  # where users import it from


class _Member(Protocol):
    """What the checks read of a listed member (``download._Entry``)."""

    parts: tuple[str, ...]
    kind: str
    size: int


#: ``extract_archive``'s default bound on the entries an archive may create: more than
#: twice the largest archive a spikeflow dataset extracts (Speech Commands v0.02,
#: 105,829 files in 36 folders).
DEFAULT_MAX_MEMBERS = 250_000

_EOCD = b"PK\x05\x06"  # end of central directory record (22 bytes + comment)
_ZIP64_LOCATOR = b"PK\x06\x07"  # 20 bytes, just before the end record
_ZIP64_EOCD = b"PK\x06\x06"  # 56 bytes (without its extensible data)
_CENTRAL = b"PK\x01\x02"  # a central directory header: 46 bytes + name, extra, comment


def check_max_members(value: object) -> None:
    """Refuse a ``max_members`` that is not ``None`` nor an integer >= 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"max_members must be None or an integer >= 1; got {value!r}")


def _end_record(fh: BinaryIO, size: int) -> tuple[int, int] | None:
    """The central directory's start and size, from the end record (ZIP64's where
    the end record defers to it); None when there is no end record (``zipfile`` then
    names the damage). Its member count is not read: ``zipfile`` parses the records
    whatever it declares (:func:`zip_member_count` walks them).

    Found as ``zipfile`` finds it (CPython 3.10-3.13), or the count would be of
    another directory than the one it parses: the last 22 bytes when they are an end
    record without comment, else the last signature in the last 64 KiB + 22 bytes;
    the ZIP64 locator and record at fixed places before it, read from the file (they
    may lie before the bytes searched, behind a 64 KiB comment)."""
    tail_size = min(size, 22 + (1 << 16))
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    no_comment = tail[-22:-18] == _EOCD and tail[-2:] == b"\0\0"
    at = len(tail) - 22 if no_comment else tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        return None
    (cd_size,) = struct.unpack("<L", tail[at + 12 : at + 16])
    end = size - tail_size + at
    cd_start = end - cd_size
    if end >= 76:
        fh.seek(end - 76)
        record = fh.read(76)  # the ZIP64 end record (56 bytes), then its locator (20)
        if record[56:60] == _ZIP64_LOCATOR and record[:4] == _ZIP64_EOCD:
            (cd_size,) = struct.unpack("<Q", record[40:48])
            cd_start = end - 76 - cd_size
    return cd_start, cd_size


def zip_member_count(archive: Path, limit: int) -> tuple[int, bool]:
    """The members of ZIP ``archive``: ``(count, exact)``. The central directory's
    records walked one by one (what ``zipfile`` parses, whatever the end record
    declares: a count declared too low or too high is not taken), the walk stopping
    at ``limit + 1`` (``exact`` False: there are more); ``(0, True)`` without an end
    record. Walking 250,001 records takes about 0.4 s (zipfile: 6 s to parse them)."""
    with open(archive, "rb") as fh:
        found = _end_record(fh, os.fstat(fh.fileno()).st_size)
        if found is None:
            return 0, True
        pos, cd_size = found
        end, count = pos + cd_size, 0
        fh.seek(max(pos, 0))
        while pos < end:
            header = fh.read(46)
            if len(header) < 46 or header[:4] != _CENTRAL:
                break  # damaged: zipfile says where
            count += 1
            if count > limit:
                return count, False
            skip = sum(struct.unpack("<HHH", header[28:34]))
            fh.seek(skip, os.SEEK_CUR)
            pos += 46 + skip
    return count, True


def count_paths(parts: Iterable[tuple[str, ...]], limit: int) -> int:
    """How many files, folders and links the member paths ``parts`` create: each path
    and every folder above it, once. Stops counting past ``limit``."""
    paths: set[str] = set()
    for member in parts:
        for depth in range(len(member), 0, -1):  # deepest first: above a known one, all are
            path = "/".join(member[:depth])
            if path in paths:
                break
            paths.add(path)
        if len(paths) > limit:
            break
    return len(paths)


def check_zip_count(archive: Path, max_members: int | None) -> None:
    """Refuse a ZIP of more than ``max_members`` members, its central directory's
    records counted (:func:`zip_member_count`) before ``zipfile`` parses them (a million
    records: half a GB of objects, 20 s)."""
    if max_members is None:
        return
    count, exact = zip_member_count(archive, max_members)
    if count > max_members:
        held = f"{count} members" if exact else f"more than {max_members} members"
        raise UnsafeArchiveError(
            f"{archive}: holds {held} (its central directory), more than "
            f"max_members={max_members}; pass a larger max_members (or None) if you trust it"
        )


def check_paths(entries: Sequence[_Member], archive: Path, max_members: int | None) -> None:
    """Refuse members whose paths create more than ``max_members`` files, folders and
    links, counting the folders they imply (1000 members 1000 folders deep each: a
    million folders)."""
    if max_members is None:
        return
    made = count_paths((e.parts for e in entries), max_members)
    if made > max_members:
        raise UnsafeArchiveError(
            f"{archive}: its {len(entries)} members create more than max_members="
            f"{max_members} files, folders and links, counting the folders their paths "
            "imply; pass a larger max_members (or None) if you trust it"
        )


def check_total(
    entries: Sequence[_Member], archive: Path, dest: Path, max_bytes: int | None
) -> None:
    """Refuse an archive whose files declare more bytes than ``max_bytes``, or need more
    than the free space where ``dest`` lies (counted in whole blocks of its file
    system), before anything is written."""
    files = [e for e in entries if e.kind in ("file", "hardlink")]  # (a link: a copy)
    total = sum(e.size for e in files)
    largest = max(files, key=lambda e: e.size, default=None)
    biggest = "" if largest is None else (
        f" (the largest file: {'/'.join(largest.parts)!r}, {largest.size} bytes)"
    )  # fmt: skip
    if max_bytes is not None and total > max_bytes:
        raise UnsafeArchiveError(
            f"{archive}: its files declare {total} bytes in all, more than "
            f"max_bytes={max_bytes}{biggest}"
        )
    try:  # each file takes whole blocks: 10^5 files of 10 bytes fill 400 MB, not 1 MB
        block = max(int(os.statvfs(dest).f_frsize), 1)
    except (AttributeError, OSError):  # (no statvfs on Windows)
        block = 1
    need = sum(-(-e.size // block) * block for e in files)
    free = shutil.disk_usage(dest).free
    if need > free:
        raise UnsafeArchiveError(
            f"{archive}: its files declare {total} bytes in all ({need} on disk in "
            f"{block}-byte blocks), more than the {free} bytes free in {dest}{biggest}; "
            "free space there or extract elsewhere"
        )
