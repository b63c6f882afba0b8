"""Compile a C source into a shared library once, cache it on disk, load it with ctypes.

One helper for every piece of run-time compiled C in spikeflow: the fused neuron kernels
(:mod:`spikeflow.kernels.cpu`, generated C) and the event-file decoders
(:mod:`spikeflow.data.io._native`, a hand-written C file shipped with the package). The
system C compiler (``$CC``, else ``cc``/``gcc``/``clang``) builds the library; it is
cached under ``$SPIKEFLOW_CACHE_DIR`` (default ``~/.cache/spikeflow``) in the caller's
subfolder, named by a hash of the source, the compiler, the flags and the machine, and
written with an atomic ``os.replace`` so that concurrent processes never load a
half-written file. Loading needs no compiler once the library is cached.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from spikeflow.errors import SpikeflowError

__all__ = ["CompilerNotFoundError", "build_library", "cache_root", "find_compiler"]

_LOCK = threading.Lock()
_LIBS: dict[str, ctypes.CDLL] = {}
_COMPILERS: dict[tuple[str | None, str | None], str | None] = {}


class CompilerNotFoundError(SpikeflowError, RuntimeError):
    """No C compiler for a part of spikeflow that compiles C at run time."""


def find_compiler(purpose: str, alternative: str) -> str:
    """The C compiler (``$CC`` or the first of cc, gcc, clang on ``PATH``).

    Looked up once per value of ``$CC`` and ``$PATH`` (``backend="auto"`` asks on every
    call, and a ``PATH`` search costs tens of microseconds).

    Raises:
        CompilerNotFoundError: none found; the message says that ``purpose`` needs one
            and suggests ``alternative``.
    """
    key = (os.environ.get("CC"), os.environ.get("PATH"))
    if key not in _COMPILERS:
        candidates = (key[0], "cc", "gcc", "clang")
        _COMPILERS[key] = next((c for c in candidates if c and shutil.which(c)), None)
    found = _COMPILERS[key]
    if found is None:
        raise CompilerNotFoundError(
            f"{purpose} but found no C compiler (tried $CC, cc, gcc, clang): install one "
            f"(e.g. apt-get install gcc) or {alternative}"
        )
    return found


def cache_root() -> Path:
    """``$SPIKEFLOW_CACHE_DIR``, default ``~/.cache/spikeflow``."""
    return Path(os.environ.get("SPIKEFLOW_CACHE_DIR") or Path.home() / ".cache" / "spikeflow")


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
        cc: the compiler (see :func:`find_compiler`).
        subdir: the cache subfolder (``kernels``, ``decoders``).
        prefix: the start of the cached file names.
        units: the compile flags of each object file built from ``source`` (one entry
            per object; several when parts of the source need different flags).
        link_flags: flags of the final ``-shared`` link.

    The library is loaded once per process (later calls return the same object).
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
        folder = cache_root() / subdir
        folder.mkdir(parents=True, exist_ok=True)
        so = folder / f"{prefix}_{key}.so"
        if not so.exists():
            src = folder / f"{prefix}_{key}.c"
            src.write_text(source)
            with tempfile.TemporaryDirectory(dir=folder) as work:
                objects = [str(Path(work) / f"u{i}.o") for i in range(len(units))]
                lib_tmp = str(Path(work) / "lib.so")
                cmds = [
                    [cc, *flags, "-c", str(src), "-o", obj] for flags, obj in zip(units, objects)
                ]
                cmds.append([cc, "-shared", *objects, "-o", lib_tmp, *link_flags])
                for cmd in cmds:
                    result = subprocess.run(cmd, capture_output=True, text=True)
                    if result.returncode != 0:
                        raise SpikeflowError(
                            f"compiling {src} failed ({' '.join(cmd)}):\n{result.stderr[-4000:]}"
                        )
                os.replace(lib_tmp, so)  # atomic: a half-written .so is never loaded
        lib = ctypes.CDLL(str(so))
        _LIBS[key] = lib
        return lib
