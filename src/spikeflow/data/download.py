"""Downloads with checksums and resume, and archive extraction that cannot escape its root.

:func:`download_url` fetches over HTTP(S) with ``urllib`` into ``<file>.part``, resumes
an interrupted transfer with an HTTP ``Range`` request (restarting cleanly when the
server ignores it), verifies the MD5/SHA-256 when given, and only then renames the file
into place, so a file at the final path is always complete and verified (it and the
checksum functions are defined in :mod:`spikeflow.data.download_http`).

:func:`extract_archive` unpacks zip and tar (gz/bz2/xz) archives, refusing any member
that would land outside the destination: absolute names, ``..`` components, symbolic
or hard links whose target resolves outside, links written through earlier links, and
device files, FIFOs or sockets. Every member is checked before anything is written,
each write is checked again against the real (symlink-resolved) destination, and once
all members are written every symlink created is resolved again (a later member, such
as ``d -> .``, can change where an earlier link such as ``x -> d/../f`` leads): one that
now resolves outside is removed and the extraction refused.

Nothing is decompressed without a bound: a ZIP member compressed with anything but
stored or deflate (bzip2 and LZMA expand without limit) is refused, as is one declaring
more bytes than its compressed ones can produce (deflate: 1032 per byte), before any
member is read; the files' declared sizes together must fit under ``max_bytes`` and in
the free space of the destination; and each file is copied up to its declared size
only. Nor is an archive extracted whose members, or the files, folders and links they
create, outnumber ``max_members`` (:data:`DEFAULT_MAX_MEMBERS` by default): a ZIP's are
counted from its central directory before it is parsed. The members are written into a
hidden staging folder inside the destination and moved into place only once all of them
are written and checked, so a refused or killed extraction never leaves a part of the
archive where the whole is expected.
"""

from __future__ import annotations

import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from spikeflow.data._archive_limits import (
    DEFAULT_MAX_MEMBERS,
    UnsafeArchiveError,
    check_max_members,
    check_paths,
    check_total,
    check_zip_count,
)
from spikeflow.data._staging import (
    lock_folder,
    move_into,
    remove_empty_folders,
    remove_stale_staging,
)
from spikeflow.data.download_http import (
    _CHUNK,
    DownloadError,
    check_integrity,
    download_url,
    file_hash,
)
from spikeflow.errors import ConfigurationError, DataFormatError

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "DownloadError",
    "UnsafeArchiveError",
    "check_integrity",
    "download_url",
    "extract_archive",
    "file_hash",
]


def _member_parts(name: str, archive: Path) -> tuple[str, ...]:
    if "\x00" in name or not name.strip("/"):
        raise UnsafeArchiveError(f"{archive}: member with an empty or invalid name {name!r}")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'")
    return tuple(p for p in parts if p != ".")


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _link_escapes(member_parts: tuple[str, ...], target: str) -> bool:
    """True when a symlink at ``member_parts`` to ``target`` leaves the root (lexically)."""
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        return True
    depth = len(member_parts) - 1
    for part in target.replace("\\", "/").split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


class _Entry:
    def __init__(
        self, parts: tuple[str, ...], kind: str, link: str = "", mode: int = 0o644, size: int = 0
    ) -> None:
        self.parts, self.kind, self.link, self.mode = parts, kind, link, mode
        self.size = size  # a file's declared size in bytes


def _check_zip_member(info: zipfile.ZipInfo, archive: Path) -> None:
    """Refuse a member that could decompress without bound, before it is read: another
    method than stored or deflate, or a declared size its compressed bytes cannot give."""
    from spikeflow.data.io._common import DEFLATE_MAX_RATIO

    declared, packed, method = info.file_size, info.compress_size, info.compress_type
    where = f"{archive}: member {info.filename!r} (at byte offset {info.header_offset})"
    if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise UnsafeArchiveError(
            f"{where} uses ZIP compression method {method} (8 is deflate, 12 bzip2, 14 "
            "LZMA); only stored and deflate members are extracted, whose expansion is "
            "bounded: extract this archive with another tool"
        )
    if info.flag_bits & 0x1:  # (zipfile would raise a RuntimeError at its first read)
        raise DataFormatError(
            f"{where} is encrypted: extract this archive with a tool that asks for its password"
        )
    if method == zipfile.ZIP_STORED and declared != packed:
        raise UnsafeArchiveError(f"{where} is stored in {packed} bytes but declares {declared}")
    if method == zipfile.ZIP_DEFLATED and declared > DEFLATE_MAX_RATIO * packed:
        raise UnsafeArchiveError(
            f"{where} declares {declared} bytes, more than its {packed} deflate-compressed "
            f"bytes can hold ({DEFLATE_MAX_RATIO} per byte at most): a forged size or a bomb"
        )


def _tar_entries(
    tf: tarfile.TarFile, archive: Path, max_members: int | None
) -> Iterator[tuple[_Entry, Any]]:
    sizes: dict[tuple[str, ...], int] = {}  # the file members so far: their sizes
    for index, m in enumerate(tf):  # listed lazily: a bound stops the listing itself
        if max_members is not None and index >= max_members:
            raise UnsafeArchiveError(
                f"{archive}: holds more than max_members={max_members} members (counting "
                f"stopped at member {index + 1}, {m.name!r}, at byte offset {m.offset} of "
                "the tar stream); pass a larger max_members (or None) if you trust it"
            )
        parts = _member_parts(m.name, archive)
        if m.ischr() or m.isblk() or m.isfifo() or not (m.isfile() or m.isdir() or
                                                         m.issym() or m.islnk()):  # fmt: skip
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device file or FIFO")
        if m.issym():
            if _link_escapes(parts, m.linkname):
                raise UnsafeArchiveError(
                    f"{archive}: symlink {m.name!r} -> {m.linkname!r} points outside the root"
                )
            sizes.pop(parts, None)
            yield _Entry(parts, "symlink", m.linkname), m
        elif m.islnk():
            if _link_escapes(("",), m.linkname):
                raise UnsafeArchiveError(
                    f"{archive}: hard link {m.name!r} -> {m.linkname!r} points outside the root"
                )
            # A hard link is written as a copy of the file member it names, so it counts
            # at that file's size (a 1 GB file and 1000 links to it are 1 TB to write);
            # naming no earlier file member (as tar writes them) it is refused.
            size = sizes.get(_member_parts(m.linkname, archive))
            if size is None:
                raise UnsafeArchiveError(
                    f"{archive}: hard link {m.name!r} -> {m.linkname!r} does not name an "
                    "earlier file member of the archive"
                )
            sizes[parts] = size
            yield _Entry(parts, "hardlink", m.linkname, size=size), m
        elif m.isdir():
            sizes.pop(parts, None)
            yield _Entry(parts, "dir"), m
        else:
            sizes[parts] = m.size
            yield _Entry(parts, "file", mode=m.mode, size=m.size), m


#: The longest symlink target a ZIP member may declare (Linux's PATH_MAX).
_MAX_LINK_TARGET = 4096


def _zip_entries(zf: zipfile.ZipFile, archive: Path) -> Iterator[tuple[_Entry, Any]]:
    infos = zf.infolist()
    for info in infos:  # every member, before any is read
        _check_zip_member(info, archive)
    for info in infos:
        parts = _member_parts(info.filename, archive)
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device file")
        if kind == stat.S_IFLNK:
            if info.file_size > _MAX_LINK_TARGET:  # read whole, into memory, uncounted
                raise UnsafeArchiveError(
                    f"{archive}: symlink {info.filename!r} declares a {info.file_size}-byte "
                    f"target (a path is at most {_MAX_LINK_TARGET})"
                )
            target = zf.read(info).decode("utf-8", "surrogateescape")
            if _link_escapes(parts, target):
                raise UnsafeArchiveError(
                    f"{archive}: symlink {info.filename!r} -> {target!r} points outside the root"
                )
            yield _Entry(parts, "symlink", target), info
        elif info.is_dir():
            yield _Entry(parts, "dir"), info
        else:
            yield _Entry(parts, "file", mode=mode & 0o777 or 0o644, size=info.file_size), info


def _make_folders(folder: str, name: str, archive: Path) -> None:
    """Create ``folder`` (and its parents) for member ``name``; a file member on the way
    is a DataFormatError naming ``name``."""
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataFormatError(
            f"{archive}: member {name!r} lies in a folder that an earlier member made a file"
        ) from None


def _write(root: str, entry: _Entry, source: IO[bytes] | None, archive: Path) -> str | None:
    """Write one member; returns the path of the symlink it created, if it made one."""
    if not entry.parts:
        if entry.kind == "dir":
            return None  # the root itself ("./")
        raise UnsafeArchiveError(f"{archive}: a {entry.kind} member names the root itself")
    target = os.path.join(root, *entry.parts)
    parent = os.path.realpath(os.path.dirname(target))
    if not _inside(root, parent):
        raise UnsafeArchiveError(
            f"{archive}: member {'/'.join(entry.parts)!r} would be written through a link "
            "to outside the root"
        )
    target = os.path.join(parent, entry.parts[-1])
    name = "/".join(entry.parts)
    if entry.kind == "dir":
        if os.path.islink(target):
            raise UnsafeArchiveError(f"{archive}: directory {target!r} is an existing link")
        if os.path.lexists(target) and not os.path.isdir(target):
            raise DataFormatError(
                f"{archive}: member {name!r} is a folder, but an earlier member is a file "
                "of that name"
            )
        _make_folders(target, name, archive)
        return None
    _make_folders(parent, name, archive)
    if os.path.isdir(target) and not os.path.islink(target):
        raise DataFormatError(
            f"{archive}: member {name!r} is a {entry.kind}, but an earlier member made it a folder"
        )
    if os.path.lexists(target):
        os.unlink(target)  # replace, never write through an existing link
    if entry.kind == "symlink":
        resolved = os.path.realpath(os.path.join(parent, entry.link))
        if not _inside(root, resolved):
            raise UnsafeArchiveError(
                f"{archive}: symlink {'/'.join(entry.parts)!r} -> {entry.link!r} resolves "
                "outside the root"
            )
        os.symlink(entry.link, target)
        return target
    if entry.kind == "hardlink":
        src = os.path.realpath(os.path.join(root, *_member_parts(entry.link, archive)))
        if not _inside(root, src) or not os.path.isfile(src):
            raise UnsafeArchiveError(
                f"{archive}: hard link {'/'.join(entry.parts)!r} -> {entry.link!r} does not "
                "name an extracted file inside the root"
            )
        shutil.copyfile(src, target)
    else:
        assert source is not None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     (entry.mode & 0o755) | 0o600)  # fmt: skip
        with os.fdopen(fd, "wb") as out, source:
            _copy_declared(source, out, entry, archive)
    return None


def _copy_declared(source: IO[bytes], out: IO[bytes], entry: _Entry, archive: Path) -> None:
    """Copy a member's data, refusing more bytes than it declares (what the size checks
    counted on)."""
    left = entry.size
    while block := source.read(min(_CHUNK, left + 1)):
        if len(block) > left:
            raise UnsafeArchiveError(
                f"{archive}: member {'/'.join(entry.parts)!r} holds more than the {entry.size} "
                "bytes it declares"
            )
        out.write(block)
        left -= len(block)


#: Prefix of :func:`extract_archive`'s staging folder inside the destination.
_UNPACKING = ".spikeflow-unpacking-"


def _check_merge(source: Path, dest: Path, root: str, archive: Path) -> None:
    """Refuse to merge ``source`` into ``dest`` (:func:`move_into`) through a link of
    ``dest`` that leads outside ``root``, before anything moves."""
    for entry in source.iterdir():
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            if target.is_symlink() and not _inside(root, os.path.realpath(target)):
                raise UnsafeArchiveError(
                    f"{archive}: folder {entry.name!r} would be written through the existing "
                    f"link {target} to outside {root}"
                )
            _check_merge(entry, target, root, archive)


def _check_links(root: str, links: list[str], archive: Path, shown: Path) -> None:
    """Resolve every created symlink again now that all members exist; remove those
    that lead outside ``root`` (the staging folder of ``shown``) and raise."""
    escaping = [link for link in links if not _inside(root, os.path.realpath(link))]
    if escaping:
        for link in escaping:
            if os.path.islink(link):
                os.unlink(link)
        names = ", ".join(repr(os.path.relpath(link, root)) for link in escaping[:5])
        raise UnsafeArchiveError(
            f"{archive}: symlink(s) {names} resolve outside the root {shown} through other "
            "members (e.g. a later link to '.'); they were removed"
        )


def _is_zip(archive: Path) -> bool:
    """Whether ``archive`` is a ZIP file and no tar archive: ``zipfile`` looks for a
    ZIP's directory at the end of the file, so it also finds that of a ZIP stored last
    in an uncompressed tar, and would extract that ZIP instead of the tar.

    Raises:
        DataFormatError: ``zipfile`` refuses the end records it found (a ZIP64 locator
            naming several disks: a split archive), naming the archive.
    """
    try:
        is_zip = zipfile.is_zipfile(archive)
    except zipfile.BadZipFile as exc:  # (is_zipfile catches OSErrors only)
        raise DataFormatError(
            f"{archive} is a ZIP that cannot be read: {exc} (join a split archive's parts "
            "into one with `zip -s 0` first)"
        ) from exc
    return is_zip and not tarfile.is_tarfile(archive)


def extract_archive(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    max_members: int | None = DEFAULT_MAX_MEMBERS,
) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``dest`` safely; returns ``dest``.

    The members go to a staging folder inside ``dest`` and move into ``dest`` once all
    are written and checked: a refused extraction leaves ``dest`` as it was (and no
    ``dest`` where there was none). The staging folders of killed calls found there
    (unlocked, over a minute old: :mod:`spikeflow.data._staging`) are deleted first.

    Args:
        max_bytes: the most bytes the archive's files may declare in all (``None``: no
            limit but the free space in ``dest``, which always applies).
        max_members: the most entries the archive may create: its members, and its
            members with the folders their paths imply (:data:`DEFAULT_MAX_MEMBERS`,
            250,000; ``None``: no limit). A ZIP's are counted from its central
            directory before the destination is made, a tar's as they are listed;
            either before any member is written.

    Raises:
        UnsafeArchiveError: a member would escape ``dest`` or is a device file, FIFO or
            socket (checked for all members before anything is written), a symlink
            resolves outside ``dest`` once every member is written, a ZIP member is
            compressed with bzip2 or LZMA or declares more than its compressed bytes can
            hold, the files declare more bytes than ``max_bytes`` or the free space, or
            the members (or the entries they create) outnumber ``max_members``.
        DataFormatError: the file is neither a zip nor a tar archive, is damaged,
            truncated or encrypted, or its members make one name both a file and a folder.
    """
    archive = Path(archive)
    dest = Path(dest)
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
                                  or max_bytes < 0):  # fmt: skip
        raise ConfigurationError(f"max_bytes must be None or an integer >= 0; got {max_bytes!r}")
    check_max_members(max_members)
    is_zip = _is_zip(archive)
    if not is_zip and not tarfile.is_tarfile(archive):
        raise DataFormatError(f"{archive}: not a zip or tar archive (or a truncated one)")
    if is_zip:  # before dest is made (a tar's are counted as its listing is read)
        check_zip_count(archive, max_members)
    top = dest  # the topmost folder this call creates, removed again if it fails
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(dest, _UNPACKING)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=_UNPACKING))
    held = lock_folder(staging)  # locked while this call lives
    done = False
    try:
        root = os.path.realpath(staging)
        links = _unpack(archive, is_zip, root, dest, max_bytes, max_members)
        _check_links(root, links, archive, dest)
        _check_merge(staging, dest, os.path.realpath(dest), archive)
        move_into(staging, dest)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(held)
        if made and not done:  # a refused call leaves no folder of its own either
            remove_empty_folders(dest, top)
    return dest


#: What a damaged or truncated archive raises while it is read (and OSErrors without
#: an errno, such as gzip's BadGzipFile and bz2's "Invalid data stream").
_DAMAGED = (EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError)


def _unpack(
    archive: Path,
    is_zip: bool,
    root: str,
    dest: Path,
    max_bytes: int | None,
    max_members: int | None,
) -> list[str]:
    """Check every member, then write them into ``root``; returns the symlinks made.
    A damaged or truncated archive raises a DataFormatError naming it and the member."""
    written: list[str | None] = []
    name = None
    try:
        if is_zip:
            with zipfile.ZipFile(archive) as zf:
                entries = list(_zip_entries(zf, archive))
                check_paths([e for e, _ in entries], archive, max_members)
                check_total([e for e, _ in entries], archive, dest, max_bytes)
                for entry, info in entries:
                    name = info.filename
                    source = zf.open(info) if entry.kind == "file" else None
                    written.append(_write(root, entry, source, archive))
        else:
            with tarfile.open(archive, "r:*") as tf:
                entries = list(_tar_entries(tf, archive, max_members))
                check_paths([e for e, _ in entries], archive, max_members)
                check_total([e for e, _ in entries], archive, dest, max_bytes)
                for entry, m in entries:
                    name = m.name
                    source = tf.extractfile(m) if entry.kind == "file" else None
                    written.append(_write(root, entry, source, archive))
    except (*_DAMAGED, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the disk's, not the data's
            raise
        where = "" if name is None else f" (reading member {name!r})"
        raise DataFormatError(
            f"{archive} is damaged or truncated{where}: {type(exc).__name__}: {exc}; download "
            "it again"
        ) from exc
    return [link for link in written if link is not None]
