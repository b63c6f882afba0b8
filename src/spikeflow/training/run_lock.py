"""The advisory lock that keeps two live training runs out of one output folder.

A run holds an exclusive ``flock`` on ``<output_dir>/.spikeflow-run.lock`` from the
moment its folder is decided until its last file (the plots) is written. A second run
started in that folder meanwhile (a repeated command, two resumes of one run, two jobs
given the same ``--output-dir``) would interleave its checkpoints and logs with the
first's; it is refused instead, naming the folder and the process that holds it (the
lock file records the holder's pid, host, start time and command). The kernel drops a
``flock`` when its process dies, however it dies, so a lock left by a killed run never
blocks the next one. A process forked from the run (a DataLoader worker, a fork-started
pool) closes its copy of the lock's descriptor at once: the lock belongs to the open file,
which a forked child would otherwise share and keep locked after the run itself died
(until the child noticed, seconds later), refusing a ``--resume`` in the meantime. Where
``fcntl`` is missing (Windows) nothing is locked.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import weakref
from pathlib import Path

from spikeflow.errors import ConfigurationError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: runs are not guarded
    fcntl = None  # type: ignore[assignment]

__all__ = ["RUN_LOCK_FILE", "RunLock", "lock_run_folder"]

#: The lock file in a run's output folder (removed again when the run ends).
RUN_LOCK_FILE = ".spikeflow-run.lock"


#: The locks this process holds, closed in a forked child (:func:`_close_in_child`).
_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()


class RunLock:
    """A held run lock (:func:`lock_run_folder`); :meth:`release` gives it up."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path, self._fd = path, fd
        if fd is not None:
            _HELD.add(self)

    def release(self) -> None:
        """Remove the lock file and drop the lock (again: nothing). The file goes
        first, while still locked, so a run starting now creates a new one."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        _HELD.discard(self)


def _close_in_child() -> None:
    """After a fork, in the child: close its copies of the held locks' descriptors
    (closing, never unlocking, which would free the parent's lock too) and forget them,
    so the child neither keeps the folder locked nor removes the parent's lock file."""
    for lock in list(_HELD):
        if lock._fd is not None:
            try:
                os.close(lock._fd)
            except OSError:
                pass
            lock._fd = None
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def _holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its file records it."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"pid {info['pid']} on {info['host']}, started {info['started']}: "
                f"{info['command']}")  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not recorded itself yet"


def _open_locked(path: Path) -> int | None:
    """A descriptor of ``path`` (created if missing) holding its exclusive lock, or None
    when another open file description holds it. Retried when the file was replaced
    between the open and the lock (its holder released it: unlinked, then unlocked).
    Another user's lock file (a shared folder) is opened read-only: it locks as well."""
    cloexec = getattr(os, "O_CLOEXEC", 0)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | cloexec, 0o644)
        except PermissionError:
            fd = os.open(path, os.O_RDONLY | cloexec)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:  # a file system without locks: nothing to guard with
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def lock_run_folder(folder: str | os.PathLike) -> RunLock:
    """Take the run lock of ``folder`` (an existing folder) for this process.

    Returns:
        The held :class:`RunLock`; an inert one where locks are not available.

    Raises:
        ConfigurationError: a live process holds it; the message names ``folder`` and
            that process (pid, host, start time, command).
    """
    path = Path(folder) / RUN_LOCK_FILE
    if fcntl is None:
        return RunLock(path, None)
    try:
        fd = _open_locked(path)
    except OSError:  # no locks on this file system (or the file cannot be opened)
        return RunLock(path, None)
    if fd is None:
        raise ConfigurationError(
            f"output_dir {folder} is in use by another live training run ({_holder(path)}; "
            f"lock file {path}): two runs in one folder would overwrite each other's "
            "checkpoints and logs. Wait for it to end or stop it, or choose another "
            "--output-dir"
        )
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv)[:500],
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
    except OSError:  # opened read-only (another user's file): locked, not recorded
        pass
    return RunLock(path, fd)
