"""Staging folders for extractions: moving a finished one into place, and removing
those a killed extraction left.

An extraction writes into a hidden staging folder inside its destination, holding an
exclusive ``flock`` on it while it lives (:func:`lock_folder`), and renames its entries
into place once all are written and checked (:func:`move_into`). A staging folder that
a killed process left (part of an archive, possibly gigabytes) is no longer locked:
:func:`remove_stale_staging` deletes it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from spikeflow._files import lock_while_writing

__all__ = ["STALE_STAGING_S", "lock_folder", "move_into", "remove_empty_folders",
           "remove_stale_staging"]  # fmt: skip

#: Age (seconds) after which an unlocked staging folder counts as a killed call's (the
#: time between making the folder and locking it is covered by this).
STALE_STAGING_S = 60.0


def lock_folder(folder: Path) -> int:
    """A descriptor of ``folder`` holding its exclusive ``flock`` (none where locks are
    not available); close it to release the lock."""
    fd = os.open(folder, os.O_RDONLY)
    lock_while_writing(fd)
    return fd


def remove_stale_staging(dest: Path, prefix: str) -> None:
    """Delete the staging folders ``dest/<prefix>*`` that a killed process left: those
    not locked (:func:`lock_folder`) by a live one and at least :data:`STALE_STAGING_S`
    old."""
    now = time.time()
    for folder in dest.glob(f"{prefix}*"):
        try:
            if folder.is_symlink() or now - folder.lstat().st_mtime < STALE_STAGING_S:
                continue
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            if not lock_while_writing(fd):  # a live call holds it (or no locks here)
                continue
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


def move_into(source: Path, dest: Path) -> None:
    """Move every entry of ``source`` into ``dest`` by renaming, merging folders that
    exist on both sides (anything else there is replaced: a file by a folder too)."""
    for entry in sorted(source.iterdir()):
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            move_into(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif entry.is_dir() and not entry.is_symlink() and os.path.lexists(target):
                target.unlink()  # a file or link there: rename() cannot put a folder on it
            os.replace(entry, target)


def remove_empty_folders(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top`` (included) while they are empty."""
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top or folder.parent == folder:
            return
        folder = folder.parent
