"""File permissions for spikeflow's atomic writes (cache entries, checkpoints, NIR files),
and the lock that marks one as live while it writes.

An atomic write goes through a ``tempfile.mkstemp`` file, which is created with mode
0o600, then renamed over the target: without a ``chmod`` the result would be readable by
its owner only (a dataset cache shared between users could not be read by the others).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; callers fall back on file ages
    fcntl = None  # type: ignore[assignment]

__all__ = ["being_written", "file_mode", "give_mode", "load_weights_only", "lock_while_writing"]


def _umask() -> int:
    """The process's umask, read without changing it where Linux reports it (changing it
    and back is not thread-safe: another thread's new file would get the wrong mode)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(path: str | os.PathLike) -> int:
    """The permission bits ``path`` has, or the ones a new file there would get (0o666
    less the umask): what an atomic write's temporary file is given before it replaces
    ``path``."""
    try:
        return stat.S_IMODE(Path(path).stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def give_mode(temporary: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give an atomic write's ``temporary`` file the mode ``path`` has or a new file would
    get (:func:`file_mode`), where the file system allows it: one that refuses ``chmod``
    (vfat without ``quiet``, some CIFS mounts) keeps what it gives, as before."""
    try:
        os.chmod(temporary, file_mode(path))
    except OSError:
        pass


def lock_while_writing(fd: int) -> bool:
    """Take an exclusive advisory lock (``flock``) on an atomic write's temporary file,
    held until its descriptor is closed, so :func:`being_written` tells it from one a
    killed process left. False where the system or file system has no such locks."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def being_written(path: str | os.PathLike) -> bool:
    """Whether a live process holds ``path`` under :func:`lock_while_writing` (False
    where locks are not available, or the file cannot be opened)."""
    if fcntl is None:
        return False
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            except OSError:
                return False
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def load_weights_only(path: Path, what: str, damage: str, map_location: object = "cpu") -> object:
    """``torch.load(path, weights_only=True)`` (no pickled code runs); a missing file or
    one that does not load raises a ``ConfigurationError`` naming ``what`` and ``path``,
    ``damage`` saying what the file may be (``"truncated or damaged?"``)."""
    import torch

    from spikeflow.errors import ConfigurationError

    if not path.is_file():
        raise ConfigurationError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ConfigurationError(
            f"{what} {path} cannot be loaded ({damage}): {type(error).__name__}: {error}"
        ) from error
