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


def _directories(fh: BinaryIO, size: int) -> list[tuple[int, int]]:
    """Where a ``zipfile`` may look for the central directory: ``(start, size)`` pairs
    from the end record and from a ZIP64 end record; none without an end record
    (``zipfile`` then names the damage). The member counts they declare are not read:
    ``zipfile`` parses the records whatever they declare.

    The end record is found as ``zipfile`` finds it (the last 22 bytes when they are
    one without comment, else the last signature in the last 64 KiB + 22 bytes). A
    ZIP64 end record is taken both at the fixed place before its locator (CPython
    3.10-3.13.0) and where the locator points (later versions read it there when it
    carries extensible data), read from the file: they may lie before the bytes
    searched, behind a 64 KiB comment. Counting each candidate and keeping the most
    leaves no layout that one Python version parses in full behind a small count."""
    tail_size = min(size, 22 + (1 << 16))
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    no_comment = tail[-22:-18] == _EOCD and tail[-2:] == b"\0\0"
    at = len(tail) - 22 if no_comment else tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        return []
    (cd_size,) = struct.unpack("<L", tail[at + 12 : at + 16])
    end = size - tail_size + at
    found = [(end - cd_size, cd_size)]
    if end < 20:
        return found
    fh.seek(end - 20)
    locator = fh.read(20)
    if locator[:4] != _ZIP64_LOCATOR:
        return found
    (pointed,) = struct.unpack("<Q", locator[8:16])
    for record_at in {end - 76, pointed}:
        if 0 <= record_at <= end - 20 - 56:
            fh.seek(record_at)
            record = fh.read(56)
            if record[:4] == _ZIP64_EOCD:
                (cd_size,) = struct.unpack("<Q", record[40:48])
                found.append((record_at - cd_size, cd_size))
    return found


def _walk(fh: BinaryIO, pos: int, cd_size: int, limit: int) -> int:
    """The central directory records from ``pos`` on, ``cd_size`` bytes, as
    ``zipfile`` walks them; stops at a damaged one (``zipfile`` says where) or at
    ``limit + 1``."""
    end, count = pos + cd_size, 0
    fh.seek(max(pos, 0))
    while pos < end:
        header = fh.read(46)
        if len(header) < 46 or header[:4] != _CENTRAL:
            break
        count += 1
        if count > limit:
            break
        skip = sum(struct.unpack("<HHH", header[28:34]))
        fh.seek(skip, os.SEEK_CUR)
        pos += 46 + skip
    return count


def zip_member_count(archive: Path, limit: int) -> tuple[int, bool]:
    """The members of ZIP ``archive``: ``(count, exact)``. The central directory's
    records walked one by one (what ``zipfile`` parses, whatever the end records
    declare: a count declared too low or too high is not taken; the most of the
    places a ``zipfile`` may take the directory from, :func:`_directories`), the walk
    stopping at ``limit + 1`` (``exact`` False: there are more); ``(0, True)``
    without an end record. Walking 250,001 records takes about 0.4 s (``zipfile``:
    6 s to parse them)."""
    with open(archive, "rb") as fh:
        places = _directories(fh, os.fstat(fh.fileno()).st_size)
        count = max((_walk(fh, pos, cd_size, limit) for pos, cd_size in places), default=0)
    return count, count <= limit


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
