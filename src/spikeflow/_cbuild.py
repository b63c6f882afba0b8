"""Compile a C source into a shared library once, cache it on disk, load it with ctypes.

One helper for every piece of run-time compiled C in spikeflow: the fused neuron kernels
(:mod:`spikeflow.kernels.cpu`, generated C) and the event-file decoders
(:mod:`spikeflow.data.io._native`, a hand-written C file shipped with the package). The
system C compiler (``$CC``, else ``cc``/``gcc``/``clang``) builds the library; it is
cached under :func:`cache_root` (``$SPIKEFLOW_CACHE_DIR``, else
``$XDG_CACHE_HOME/spikeflow``, else ``~/.cache/spikeflow``) in the caller's subfolder,
named by a hash of the source, the compiler, the flags and the machine, and written with
an atomic ``os.replace`` so that concurrent processes never load a half-written file.
Loading a cached library runs no compiler, but one must be installed: the compiler is
part of the cache key.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from spikeflow.errors import ConfigurationError, SpikeflowError

__all__ = [
    "BuildError",
    "CompilerNotFoundError",
    "build_library",
    "cache_folder",
    "cache_root",
    "find_compiler",
    "library_or_fallback",
    "use_c_kernels",
]

_LOCK = threading.Lock()
_LIBS: dict[str, ctypes.CDLL] = {}
_COMPILERS: dict[tuple[str | None, str | None], str | None] = {}
_WARNED: set[Path] = set()
#: Builds that failed in this process, by key: raised again without running the
#: compiler (backend="auto", which then runs the reference loop, asks on every call).
_FAILED: dict[str, BuildError] = {}


class CompilerNotFoundError(SpikeflowError, RuntimeError):
    """No C compiler for a part of spikeflow that compiles C at run time."""


class BuildError(SpikeflowError, RuntimeError):
    """The C compiler failed on a source (its message has the command and the
    compiler's last output), or the library it built could not be loaded.

    Attributes:
        detail: the compiler's last line of output (or the loader's error); empty when
            raised again inside a ``torch.compile`` trace (the message has it).
    """

    # No __init__ of its own: Dynamo constructs it in traced code (registry.py).
    detail: str = ""


def _build_error(message: str, detail: str) -> BuildError:
    error = BuildError(message)
    error.detail = detail
    return error


def find_compiler(purpose: str, alternative: str) -> str:
    """The C compiler (``$CC``, which may carry arguments such as ``ccache gcc``, or the
    first of cc, gcc, clang on ``PATH``).

    Looked up once per value of ``$CC`` and ``$PATH`` (``backend="auto"`` asks on every
    call, and a ``PATH`` search costs tens of microseconds).

    Raises:
        CompilerNotFoundError: none found; the message says that ``purpose`` needs one
            and suggests ``alternative``.
    """
    key = (os.environ.get("CC"), os.environ.get("PATH"))
    if key not in _COMPILERS:
        cc = key[0]
        if cc and not _runnable(cc):
            warnings.warn(
                f"$CC={cc!r} is not an executable on PATH; trying cc, gcc, clang",
                RuntimeWarning,
                stacklevel=2,
            )
        candidates = (cc, "cc", "gcc", "clang")
        _COMPILERS[key] = next((c for c in candidates if c and _runnable(c)), None)
    found = _COMPILERS[key]
    if found is None:
        raise CompilerNotFoundError(
            f"{purpose} but found no C compiler (tried $CC, cc, gcc, clang): install one "
            f"(e.g. apt-get install gcc) or {alternative}"
        )
    return found


def _runnable(command: str) -> bool:
    """Whether the program of ``command`` (``$CC`` may carry arguments) is on PATH."""
    words = shlex.split(command)
    return bool(words) and shutil.which(words[0]) is not None


def cache_root() -> Path:
    """spikeflow's cache folder (built kernels and decoders, dataset caches):
    ``$SPIKEFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/spikeflow``, else
    ``~/.cache/spikeflow``."""
    env = os.environ.get("SPIKEFLOW_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "spikeflow"


@functools.cache
def _cpu_identity() -> str:
    """The CPU's model and feature flags (Linux), part of the cache key: the kernels are
    built with ``-march=native``, so a cache shared between machines (a network home)
    must not hand one CPU's build to another that lacks its instructions."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""
    wanted = ("model name", "flags", "Features", "CPU part")
    lines = [ln for ln in text.splitlines() if ln.split(":")[0].strip() in wanted]
    return "\n".join(dict.fromkeys(lines))  # each distinct line once


def build_library(
    source: str,
    *,
    cc: str,
    subdir: str,
    prefix: str,
    units: Sequence[Sequence[str]],
    link_flags: Sequence[str] = (),
) -> ctypes.CDLL:
    """Compile ``source`` (or reuse the cached build) and return the loaded library.

    Args:
        source: the C source text.
        cc: the compiler (see :func:`find_compiler`), possibly with arguments
            (``"ccache gcc"``).
        subdir: the cache subfolder (``kernels``, ``decoders``).
        prefix: the start of the cached file names.
        units: the compile flags of each object file built from ``source`` (one entry
            per object; several when parts of the source need different flags).
        link_flags: flags of the final ``-shared`` link.

    The library is loaded once per process (later calls return the same object). A
    cached file that cannot be loaded (truncated, say) is rebuilt once.
    """
    key = hashlib.sha256(
        "\n".join([source, cc, *("\0".join(u) for u in units), *link_flags,
                   platform.machine(), platform.processor(), _cpu_identity()]).encode()
    ).hexdigest()[:24]  # fmt: skip
    lib = _LIBS.get(key)
    if lib is not None:
        return lib
    with _LOCK:
        lib = _LIBS.get(key)
        if lib is not None:
            return lib
        if key in _FAILED:
            raise _FAILED[key]
        try:
            lib = _build_and_load(source, cc, units, link_flags, cache_folder(subdir),
                                  f"{prefix}_{key}.so")  # fmt: skip
        except BuildError as error:
            _FAILED[key] = error
            raise
        _LIBS[key] = lib
        return lib


def _build_and_load(
    source: str,
    cc: str,
    units: Sequence[Sequence[str]],
    link_flags: Sequence[str],
    folder: Path,
    name: str,
) -> ctypes.CDLL:
    """Load ``folder/name``, building it first if it is absent or cannot be loaded."""
    so = folder / name
    if not so.exists():
        _compile(source, cc, units, link_flags, folder, so)
    try:
        return ctypes.CDLL(str(so))
    except OSError as error:  # a damaged cache entry: build it again
        _compile(source, cc, units, link_flags, folder, so)
        try:
            return ctypes.CDLL(str(so))
        except OSError:
            message = f"cannot load the freshly built {so}: {error}"
            raise _build_error(message, str(error)) from error


def _compile(
    source: str,
    cc: str,
    units: Sequence[Sequence[str]],
    link_flags: Sequence[str],
    folder: Path,
    so: Path,
) -> None:
    """Build ``so`` from ``source`` in a private folder and move it (and its source, for
    reading) into place atomically: concurrent builders never see each other's files."""
    compiler = shlex.split(cc)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        src = Path(work) / so.with_suffix(".c").name
        src.write_text(source)
        objects = [str(Path(work) / f"u{i}.o") for i in range(len(units))]
        lib_tmp = str(Path(work) / "lib.so")
        cmds = [
            [*compiler, *flags, "-c", str(src), "-o", obj] for flags, obj in zip(units, objects)
        ]
        cmds.append([*compiler, "-shared", *objects, "-o", lib_tmp, *link_flags])
        for cmd in cmds:
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                kept = so.with_suffix(".failed.c")
                os.replace(src, kept)
                output = result.stderr.strip() or result.stdout.strip()
                raise _build_error(
                    f"compiling {kept} failed ({' '.join(cmd)}):\n{output[-4000:]}",
                    output.splitlines()[-1] if output else f"exit status {result.returncode}",
                )
        os.replace(src, so.with_suffix(".c"))
        os.replace(lib_tmp, so)  # atomic: a half-written .so is never loaded


def _uid() -> int | None:
    """This process's user id (None where the platform has none)."""
    return os.getuid() if hasattr(os, "getuid") else None


def _safe_folder(path: Path) -> bool:
    """Whether ``path`` is a real folder of ours that no one else can write; one only
    readable by others is made private (mode 0700) on the way."""
    uid = _uid()
    try:
        info = path.lstat()  # a symlink is not a directory here
        ours = stat.S_ISDIR(info.st_mode) and (uid is None or info.st_uid == uid)
        if not ours or (uid is not None and info.st_mode & 0o022):  # others could write
            return False
        if uid is not None and info.st_mode & 0o077:
            path.chmod(0o700)
        return True
    except OSError:
        return False


@functools.cache
def _private_temp_root() -> Path:
    """``$TMPDIR/spikeflow-cache-<uid>`` if it is a real folder of ours that no one else
    can write (made private, mode 0700, if it was only readable by others), else a fresh
    private temporary folder for this process, removed at exit: libraries loaded from a
    folder that another user can write would run their code."""
    uid = _uid()
    root = Path(tempfile.gettempdir()) / f"spikeflow-cache-{uid if uid is not None else 'user'}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        pass
    return root if _safe_folder(root) else _fresh_temp_root()


@functools.cache
def _fresh_temp_root() -> Path:
    """A private temporary folder for this process, removed at exit (never reused)."""
    fresh = Path(tempfile.mkdtemp(prefix="spikeflow-cache-"))
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)
    return fresh


def cache_folder(subdir: str) -> Path:
    """``cache_root() / subdir``, created; where that cannot be written (a read-only
    home), a private per-user folder in the temporary directory, with a warning once."""
    folder = cache_root() / subdir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
        reason = "not writable"
    except OSError as error:
        reason = str(error)
    fallback = _private_temp_root() / subdir
    try:
        fallback.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        pass
    if not _safe_folder(fallback):  # e.g. made writable by all (umask 0) before
        fallback = _fresh_temp_root() / subdir
        fallback.mkdir(mode=0o700, exist_ok=True)
    if folder not in _WARNED:
        _WARNED.add(folder)
        warnings.warn(
            f"the compiled-code cache {folder} cannot be used ({reason}); building in "
            f"{fallback} instead: set SPIKEFLOW_CACHE_DIR to a writable folder to keep "
            "builds across runs",
            RuntimeWarning,
            stacklevel=3,
        )
    return fallback


def library_or_fallback(
    load: Callable[[], object], fallback: str, warned: set[str], stacklevel: int = 2
) -> bool:
    """For ``backend="auto"``: whether ``load()`` (a C library's loader) succeeds, so
    that the C kernels run. Without a C compiler: False. When the build fails: False and
    one RuntimeWarning per ``warned`` set, ``fallback`` (what runs instead and what to
    do) followed by the error; ``stacklevel`` is the caller's, as for
    ``warnings.warn``."""
    try:
        load()
    except CompilerNotFoundError:
        return False
    except BuildError as error:
        if "build" not in warned:
            warned.add("build")
            warnings.warn(f"{fallback}: {error}", RuntimeWarning, stacklevel=stacklevel + 1)
        return False
    return True


def use_c_kernels(
    backend: str,
    runs: bool,
    load: Callable[[], object],
    refusal: Callable[[], str],
    fallback: str,
    warned: set[str],
    stacklevel: int = 2,
    worth_it: Callable[[], bool] | None = None,
) -> bool:
    """Whether a layer with C kernels runs them: ``backend`` ``"c"`` raises a
    ConfigurationError (``refusal()``'s message) where they cannot run on its tensors (``runs``
    False) and lets ``load()`` name a missing compiler or a failed build; ``"auto"``
    runs them where they can, ``worth_it()`` (if given) says they pay, and they build
    (:func:`library_or_fallback`, ``fallback`` naming what runs instead); any other
    backend (``"torch"``, ``"triton"``) runs no C."""
    if backend == "c":
        if not runs:
            raise ConfigurationError(refusal())
        load()  # a missing compiler or a failed build raises, naming it
        return True
    if backend != "auto" or not runs or (worth_it is not None and not worth_it()):
        return False
    return library_or_fallback(load, fallback, warned, stacklevel=stacklevel + 1)
