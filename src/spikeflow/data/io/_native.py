"""The decoder choice: compiled C fast paths (``_decoders.c``) or the numpy readers.

The hot loops of the ATIS ``.bin`` (N-MNIST), AEDAT 3.x, AEDAT 1.0/2.0 (the records and
the scan of jAER's ``#`` text header) and Prophesee EVT 2.0/3.0 decoders exist twice: as
vectorised numpy code (the reference, which also locates and names every problem in a
bad file; chunked, for EVT 2.0/3.0 also on that error path, see ``_evt.py``) and as one
hand-written C file compiled at first use with
the system C compiler and cached like the fused neuron kernels
(:mod:`spikeflow._cbuild`, subfolder ``decoders``). A C function validates as it
decodes and returns a failure code on anything it does not accept; the reader then runs
its numpy path, so results and error messages are the same with either decoder.

Choose with :func:`set_decoder` / :func:`use_decoder` or the ``SPIKEFLOW_DECODER``
environment variable (read once, at the first decode, when no choice was set):
``"auto"`` (the default: C when a C compiler is available, else numpy), ``"numpy"``, or
``"c"`` (raises :class:`~spikeflow._cbuild.CompilerNotFoundError` without a compiler).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import numpy as np

from spikeflow._cbuild import CompilerNotFoundError, build_library, find_compiler
from spikeflow.data.events import EVENT_DTYPE
from spikeflow.errors import ConfigurationError

__all__ = ["DECODERS", "CompilerNotFoundError", "get_decoder", "set_decoder", "use_decoder"]

DECODERS = ("auto", "numpy", "c")
_FLAGS = ["-O3", "-fPIC", "-fno-strict-aliasing"]
_P, _I = ctypes.c_void_p, ctypes.c_int64
_SIGNATURES = {
    "sf_atis_bin": [_P, _I, _I, _I, _P, _I, _P],
    "sf_aedat31": [_P, _I, _P, _P, _P, _I, _I, _I, _P, _I, _P],
    "sf_aedat2": [_P, _I, _I, _I, _I, _I, _I, _P, _I, _P],
    "sf_evt2": [_P, _I, _I, _I, _I, _P, _I, _P],
    "sf_evt3": [_P, _I, _I, _I, _I, _P, _I, _P],
    "sf_evt3_bound": [_P, _I, _I],
    "sf_jaer_header": [_P, _I, _P, _I, _P],
}

_choice: str | None = None  # None: SPIKEFLOW_DECODER, else "auto"
# "lib": the loaded functions, "error": why not, "env": the SPIKEFLOW_DECODER choice
_state: dict[str, Any] = {}


def _check(name: str) -> str:
    if name not in DECODERS:
        raise ConfigurationError(f"decoder must be one of {DECODERS}, got {name!r}")
    return name


def get_decoder() -> str:
    """The decoder setting in force: ``"auto"``, ``"numpy"`` or ``"c"``.

    Without a :func:`set_decoder` call, ``SPIKEFLOW_DECODER`` decides; it is read once,
    at the first call (an ``os.environ`` lookup per file costs N-MNIST ~3% of its
    decode time)."""
    if _choice is not None:
        return _choice
    name = _state.get("env")
    if name is None:
        raw = os.environ.get("SPIKEFLOW_DECODER", "auto")
        name = _state["env"] = _check(raw.strip().lower() or "auto")
    return name


def set_decoder(name: str) -> None:
    """Choose the event-file decoders for this process: ``"auto"``, ``"numpy"``, ``"c"``.

    ``"c"`` builds the library now, so a missing compiler is reported here
    (:class:`~spikeflow._cbuild.CompilerNotFoundError`) and not at the first read.
    """
    global _choice
    _check(name)
    if name == "c":
        _load(strict=True)
    _choice = name


@contextmanager
def use_decoder(name: str) -> Iterator[None]:
    """``with use_decoder("numpy"): ...`` -- the decoder for the block, then the old one."""
    global _choice
    old = _choice
    set_decoder(name)
    try:
        yield
    finally:
        _choice = old


class _Lib:
    """The compiled decoders, as ctypes functions with their argument types set."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = ctypes.c_int64
            setattr(self, name, fn)
        self.lib = lib


def _load(strict: bool) -> _Lib | None:
    lib = _state.get("lib")
    if lib is not None:
        return lib
    if not strict and "error" in _state:
        return None
    try:
        if sys.byteorder != "little":
            raise CompilerNotFoundError("the compiled decoders support little-endian machines only")
        cc = find_compiler(
            "the compiled event-file decoders (decoder='c') need a C compiler",
            "use the numpy decoders (spikeflow.data.io.set_decoder('numpy'))",
        )
        source = resources.files("spikeflow.data.io").joinpath("_decoders.c").read_text()
        lib = _Lib(
            build_library(source, cc=cc, subdir="decoders", prefix="decoders", units=[_FLAGS])
        )
    except Exception as exc:  # auto: fall back to numpy; "c": report why
        _state["error"] = exc
        if strict:
            raise
        return None
    _state["lib"] = lib
    return lib


def compiled() -> _Lib | None:
    """The compiled decoders when the setting asks for them (and, for ``"auto"``, when
    they can be built), else ``None``: the caller runs its numpy path."""
    choice = get_decoder()
    if choice == "numpy":
        return None
    lib = _state.get("lib")
    if lib is not None:
        return lib
    return _load(strict=choice == "c")


_META = ctypes.c_int64 * 2
#: The C decoders' return code for "the output buffer is too small" (``_decoders.c``).
FAIL_CAPACITY = -5


def new_events(n: int) -> tuple[np.ndarray, int, Any]:
    """An uninitialised :data:`EVENT_DTYPE` array of ``n`` events, its data pointer and a
    2-slot ctypes int64 array for the largest x and y.

    ``ctypes.addressof(c_char.from_buffer(a))`` costs half of ``a.ctypes.data`` (which
    matters for N-MNIST's many small files)."""
    out = np.empty(n or 1, dtype=EVENT_DTYPE)  # from_buffer needs at least one byte
    return out if n else out[:0], ctypes.addressof(ctypes.c_char.from_buffer(out)), _META()


def native_events(
    out: np.ndarray, k: int, meta: Any, sensor_size: tuple[int, int] | None
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The result of a compiled decoder that wrote ``k`` events into ``out``
    (:func:`new_events`): ``None`` when it gave up (``k < 0``; the numpy path then decodes
    and names the problem), else the first ``k`` events (:func:`trimmed`) and
    ``sensor_size``, or the largest ``x`` and ``y`` it saw (``meta``) plus one."""
    if k < 0:
        return None
    if sensor_size is None:
        return trimmed(out, k), (meta[0] + 1, meta[1] + 1)
    width, height = sensor_size
    return trimmed(out, k), (width, height)


def trimmed(out: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` events of ``out``: a view when that keeps at least a third of it
    (copying megabytes costs more than the unused tail, whose pages were never touched),
    else a byte copy (numpy copies a packed structured array field by field)."""
    if 3 * k >= len(out):
        return out[:k]
    return out[:k].view(np.uint8).copy().view(EVENT_DTYPE)


def address(data: bytes | np.ndarray) -> int | bytes:
    """What a ``c_void_p`` argument takes for a buffer: the bytes object itself (no
    copy), or a contiguous array's data pointer."""
    if isinstance(data, bytes):
        return data
    return data.ctypes.data
