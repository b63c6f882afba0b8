"""Representations: objects that turn an event recording into an array, with a cache key.

A representation is a callable ``rep(recording) -> np.ndarray`` with a ``cache_key()``
that lists every parameter its output depends on; datasets and
:class:`~spikeflow.data.cache.ArrayCache` use that key, so changing any parameter
computes a new entry instead of reading a stale one.

- :class:`ToFrame`: ``frames_number`` frames by ``split_by`` (:func:`.frames.to_frames`).
- :class:`ToFrameByDuration`: frames of ``duration`` µs (:func:`.frames.to_frames_by_duration`).
- :class:`ToFrameBySlices`: one frame per slice of a slicer, overlaps included
  (:func:`.frames.to_frames_by_slices`; Tonic's ``ToFrame``).
- :class:`ToVoxelGrid`: ``bins`` time bins, polarity-signed, bilinear in time.
- :class:`ToTimeSurface`: exponentially decaying time surfaces sampled ``frames_number`` times.
- :class:`CustomRepresentation`: a user function, keyed by a name and its parameters.

Count images, Bina-Rep, HATS and sparse frames are in
:mod:`spikeflow.data.representations_extra` (re-exported by :mod:`spikeflow.data`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from spikeflow._checks import is_count
from spikeflow.data.events import EventRecording
from spikeflow.data.frames import (
    SplitFunction,
    event_channels,
    segment_index,
    to_frames,
    to_frames_by_duration,
    to_frames_by_slices,
    unpack_events,
)
from spikeflow.errors import ConfigurationError

__all__ = [
    "CustomRepresentation",
    "Representation",
    "ToFrame",
    "ToFrameByDuration",
    "ToFrameBySlices",
    "ToTimeSurface",
    "ToVoxelGrid",
    "callable_key",
    "frame_representation",
    "to_time_surfaces",
    "to_voxel_grid",
]


def callable_key(fn: Any, _seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-able identity of a callable, for cache keys.

    Objects with a ``cache_key()`` method give that; ``functools.partial`` gives its
    function's key plus its arguments; a bound method gives its function's key plus its
    instance's attributes; plain functions give their module, qualified name and a hash
    of their bytecode, constants, the names they use (``np.log1p`` vs ``np.sqrt``),
    their default arguments and the values their closures hold (so editing the function
    changes the key). Arrays and tensors count by content; values whose repr is not
    stable across processes (``<... at 0x...>``) by their type only. Values a function
    reads from globals are *not* part of the key: give such parameters to
    :class:`CustomRepresentation` as ``params``.
    """
    import functools

    if hasattr(fn, "cache_key"):
        if id(fn) in _seen:  # an object whose attributes lead back to it
            return f"<recursive {type(fn).__qualname__}>"
        return fn.cache_key()
    seen = _seen | {id(fn)}
    if isinstance(fn, functools.partial):
        kw = {k: _value_key(v, seen) for k, v in sorted(fn.keywords.items())}
        return {"partial": callable_key(fn.func, seen),
                "args": [_value_key(a, seen) for a in fn.args], "kw": kw}  # fmt: skip
    owner = getattr(fn, "__self__", None)
    if owner is not None and hasattr(fn, "__func__") and not isinstance(owner, type):
        # The instance too: a closure among its attributes may hold it (a lambda using
        # self), whose next bound method would be a new object every time.
        if id(owner) in _seen:
            return f"<recursive {type(owner).__qualname__}>"
        seen = seen | {id(owner)}
        attributes = sorted(_attributes(owner).items())
        state = {k: _value_key(v, seen) for k, v in attributes}
        return {"method": callable_key(fn.__func__, seen), "instance": state}
    code = getattr(fn, "__code__", None)
    if code is None:
        raise ConfigurationError(
            f"cannot build a cache key for {fn!r}: give it a cache_key() method returning its "
            "parameters, or disable the cache (cache_dir=None)"
        )
    h = hashlib.sha256()
    _digest_code(code, h)
    for value in (fn.__defaults__ or (), fn.__kwdefaults__ or {}):
        h.update(repr(_value_key(value, seen)).encode())
    for cell in fn.__closure__ or ():
        try:
            content = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        h.update(repr(_value_key(content, seen)).encode())
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
    return {"function": name, "code_sha256": h.hexdigest()[:16]}


def user_class_key(obj: Any, method: Callable[..., Any]) -> dict[str, Any]:
    """For an instance of a class defined outside spikeflow (a user's subclass of a
    representation or transform): its class's qualified name and :func:`callable_key`
    of ``method``, the bound method that computes its output (its code and the
    instance's attributes), so that a subclass whose declared parameters miss what its
    output depends on still gets a key of its own. Empty for spikeflow's classes, whose
    parameters are their whole key."""
    cls = type(obj)
    if cls.__module__ == "spikeflow" or cls.__module__.startswith("spikeflow."):
        return {}
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "code": callable_key(method)}


def _attributes(owner: Any) -> dict[str, Any]:
    """An instance's attributes: its ``__dict__`` and its ``__slots__``."""
    found = dict(getattr(owner, "__dict__", {}))
    for cls in type(owner).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(owner, name):
                found[name] = getattr(owner, name)
    return found


def _digest_code(code: Any, h: Any) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            _digest_code(const, h)
        elif isinstance(const, frozenset):  # `x in {"a", "b"}`: its repr's order varies
            h.update(repr(sorted(map(repr, const))).encode())  # with the hash seed
        else:
            h.update(repr(const).encode())


def _value_key(value: Any, seen: frozenset[int] = frozenset()) -> Any:
    """A value as cache-key material, the same in every process: arrays and tensors by
    content (their repr elides the middle), containers element by element (sets
    sorted), callables by :func:`callable_key` (once: a function whose closure holds
    itself) or, where it refuses them, by :func:`_opaque_callable_key`, anything else by
    repr, or by type when the repr holds an address."""
    if isinstance(value, torch.Tensor):
        try:
            t = value.detach().cpu()
            t = (t.to_dense() if t.layout != torch.strided else t).resolve_conj().resolve_neg()
            array = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        except (RuntimeError, TypeError, NotImplementedError):  # a meta tensor, say
            return f"<tensor {value.dtype} {list(value.shape)} {value.layout} {value.device}>"
        return {"tensor": _digest(array), "dtype": str(t.dtype), "shape": list(t.shape)}
    if isinstance(value, np.ndarray):
        return {"array": _digest(value), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, (list, tuple)):
        return [_value_key(v, seen) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(repr(_value_key(v, seen)) for v in value)
    if isinstance(value, dict):
        return {repr(k): _value_key(v, seen) for k, v in sorted(value.items(), key=repr)}
    if callable(value) and not isinstance(value, type):
        if id(value) in seen:
            return f"<recursive {getattr(value, '__qualname__', type(value).__qualname__)}>"
        try:
            return callable_key(value, seen)
        except ConfigurationError:  # a builtin, a partial of one, a callable instance
            return _opaque_callable_key(value, seen)
    text = repr(value)
    if " at 0x" in text:  # an address: differs in every process
        return f"<{type(value).__module__}.{type(value).__qualname__}>"
    return text


def _opaque_callable_key(fn: Any, seen: frozenset[int]) -> Any:
    """A callable :func:`callable_key` refuses, by what it computes rather than by its
    repr (which two instances of one class often share, or which holds an address):
    a ``functools.partial`` by its function and arguments; an instance of a Python class
    with ``__call__`` (an ``nn.Module`` too) by its class, that method's code and its
    attributes; a builtin by its module and qualified name (``torch.mul`` vs
    ``torch.add``, whose reprs differ only in the name); else by repr or type."""
    if isinstance(fn, functools.partial):
        kw = {k: _value_key(v, seen) for k, v in sorted(fn.keywords.items())}
        return {"partial": _value_key(fn.func, seen),
                "args": [_value_key(a, seen) for a in fn.args], "kw": kw}  # fmt: skip
    cls = type(fn)
    if inspect.isfunction(inspect.getattr_static(cls, "__call__", None)):
        return {"class": f"{cls.__module__}.{cls.__qualname__}",
                "call": callable_key(fn.__call__, seen)}  # fmt: skip
    text = repr(fn)
    if " at 0x" not in text:
        return text
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return f"<{getattr(fn, '__module__', None) or cls.__module__}.{name}>"
    return f"<{cls.__module__}.{cls.__qualname__}>"


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _check_count(name: str, value: Any, unit: str = "") -> int:
    """``value`` as a plain int if it is an integer >= 1 (numpy integers too, not bools)."""
    if not is_count(value):
        raise ConfigurationError(f"{name} must be an int >= 1{unit}; got {value!r}")
    return int(value)  # a plain int: cache keys must be JSON-able


def _check_tau(tau: Any) -> float:
    """``tau`` as a float if it is a finite number > 0."""
    if (
        isinstance(tau, bool)
        or not isinstance(tau, numbers.Real)
        or not math.isfinite(tau)
        or not tau > 0
    ):
        raise ConfigurationError(f"tau must be a finite number > 0 (microseconds); got {tau!r}")
    return float(tau)


class Representation:
    """Base class: ``__call__(recording) -> np.ndarray`` and ``cache_key() -> dict``."""

    name: str = "representation"

    def __call__(self, events: EventRecording) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The parameters the output depends on (JSON-able)."""
        return {}

    def cache_key(self) -> dict[str, Any]:
        """``{"name": ..., **params}``: what a cache entry of this output is keyed by.
        A subclass written outside spikeflow is also keyed by its class and by its
        ``__call__`` (code and instance attributes, see :func:`user_class_key`)."""
        return {"name": self.name, **self.params(), **user_class_key(self, self.__call__)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class ToFrame(Representation):
    """``[T, P, H, W]`` int32 counts in ``frames_number`` segments split by ``split_by``."""

    name = "frames"

    def __init__(self, frames_number: int, split_by: str | SplitFunction = "number") -> None:
        if not callable(split_by) and split_by not in ("number", "time"):
            raise ConfigurationError(
                f"split_by must be 'number', 'time' or a function; got {split_by!r}"
            )
        self.frames_number = _check_count("frames_number", frames_number)
        self.split_by = split_by

    def params(self) -> dict[str, Any]:
        split = callable_key(self.split_by) if callable(self.split_by) else self.split_by
        return {"frames_number": self.frames_number, "split_by": split}

    def __call__(self, events: EventRecording) -> np.ndarray:
        return to_frames(events, self.frames_number, self.split_by)


class ToFrameByDuration(Representation):
    """``[K, P, H, W]`` int32 counts in frames of ``duration`` µs (variable ``K``)."""

    name = "frames_by_duration"

    def __init__(self, duration: int) -> None:
        self.duration = _check_count("duration", duration, " (microseconds)")

    def params(self) -> dict[str, Any]:
        return {"duration": self.duration}

    def __call__(self, events: EventRecording) -> np.ndarray:
        return to_frames_by_duration(events, self.duration)


class ToFrameBySlices(Representation):
    """``[K, P, H, W]`` int32 counts, one frame per slice ``slicer`` cuts (Tonic's
    ``ToFrame``: ``SliceByTime(time_window, overlap, include_incomplete)``,
    ``SliceByEventCount(event_count, overlap, include_incomplete)``,
    ``SliceByTimeBins(n, overlap)`` or ``SliceByEventBins(n, overlap)``); see
    :func:`~spikeflow.data.frames.to_frames_by_slices`."""

    name = "frames_by_slices"

    def __init__(self, slicer: Any) -> None:
        from spikeflow.data.slicing import Slicer  # (lazy: slicing imports this module)

        if not isinstance(slicer, Slicer):
            raise ConfigurationError(
                "ToFrameBySlices: slicer must be a spikeflow.data slicer (SliceByTime, "
                f"SliceByEventCount, SliceByTimeBins, ...); got {type(slicer).__name__}"
            )
        self.slicer = slicer

    def params(self) -> dict[str, Any]:
        return {"slicer": self.slicer.cache_key()}

    def __repr__(self) -> str:
        return f"ToFrameBySlices({self.slicer!r})"

    def __call__(self, events: EventRecording) -> np.ndarray:
        return to_frames_by_slices(events, self.slicer)


def to_voxel_grid(
    events: EventRecording | np.ndarray, bins: int, *, sensor_size: Sequence[int] | None = None
) -> np.ndarray:
    """A voxel grid ``[bins, 1, H, W]`` float32 (Zhu et al., 2019), bilinear in time.

    Each event is spread over the two time bins nearest its normalised time
    ``τ = (bins − 1)(t − t_first)/(t_last − t_first)`` (``τ = 0`` when all events share
    one timestamp), with weight ``1 − |k − τ|`` in bin ``k``, signed by polarity: ``+1``
    for ``p != 0`` and ``−1`` for ``p == 0``. An empty recording gives zeros.
    """
    bins = _check_count("bins", bins)
    arr, (width, height, _), _ = unpack_events(events, sensor_size)
    out = np.zeros(bins * height * width, dtype=np.float64)
    if len(arr):
        t = arr["t"].astype(np.float64)
        span = t[-1] - t[0]
        tau = (bins - 1) * (t - t[0]) / span if span > 0 else np.zeros_like(t)
        lower = np.minimum(np.floor(tau).astype(np.int64), bins - 1)
        frac = tau - lower
        sign = np.where(arr["p"] != 0, 1.0, -1.0)
        pix = arr["y"].astype(np.int64) * width + arr["x"].astype(np.int64)
        size = bins * height * width
        out += np.bincount(lower * height * width + pix, sign * (1 - frac), minlength=size)
        upper = lower + 1
        ok = upper < bins
        out += np.bincount(upper[ok] * height * width + pix[ok], (sign * frac)[ok], minlength=size)
    return out.astype(np.float32).reshape(bins, 1, height, width)


def to_time_surfaces(
    events: EventRecording | np.ndarray,
    frames_number: int,
    tau: float,
    *,
    sensor_size: Sequence[int] | None = None,
) -> np.ndarray:
    """Time surfaces ``[T, P, H, W]`` float32 with exponential decay ``tau`` (µs).

    The stream is split into ``T`` segments by the ``split_by="time"`` rule; surface
    ``k`` is sampled at the end of segment ``k`` (``s_k = t_first + (k+1)Δt`` for
    ``k < T−1`` and ``s_{T−1} = t_last``) and holds ``exp(−(s_k − t_last_event)/tau)``
    for every pixel and channel whose latest event up to and including segment ``k``
    happened at ``t_last_event``, and 0 where no event has happened yet.
    """
    T = _check_count("frames_number", frames_number)
    tau = _check_tau(tau)
    arr, (width, height, polarities), source = unpack_events(events, sensor_size)
    idx = segment_index(arr, T, "time")
    plane = polarities * height * width
    latest = np.full(T * plane, -np.inf)
    if len(arr):
        c = event_channels(arr["p"], polarities, source)
        y, x = arr["y"].astype(np.int64), arr["x"].astype(np.int64)
        flat = idx * plane + (c * height + y) * width + x
        np.maximum.at(latest, flat, arr["t"].astype(np.float64))
    latest = np.maximum.accumulate(latest.reshape(T, plane), axis=0)
    if len(arr):
        t0, t1 = int(arr["t"][0]), int(arr["t"][-1])
        dt = (t1 - t0) // T
        sample = t0 + (np.arange(T, dtype=np.float64) + 1) * dt
        sample[-1] = t1
    else:
        sample = np.zeros(T)
    surf = np.exp(-(sample[:, None] - latest) / tau)
    return surf.astype(np.float32).reshape(T, polarities, height, width)


class ToVoxelGrid(Representation):
    """:func:`to_voxel_grid` with ``bins`` time bins."""

    name = "voxel_grid"

    def __init__(self, bins: int) -> None:
        self.bins = _check_count("bins", bins)

    def params(self) -> dict[str, Any]:
        return {"bins": self.bins}

    def __call__(self, events: EventRecording) -> np.ndarray:
        return to_voxel_grid(events, self.bins)


class ToTimeSurface(Representation):
    """:func:`to_time_surfaces` with ``frames_number`` samples and decay ``tau`` µs."""

    name = "time_surface"

    def __init__(self, frames_number: int, tau: float) -> None:
        self.frames_number = _check_count("frames_number", frames_number)
        self.tau = _check_tau(tau)

    def params(self) -> dict[str, Any]:
        return {"frames_number": self.frames_number, "tau": self.tau}

    def __call__(self, events: EventRecording) -> np.ndarray:
        return to_time_surfaces(events, self.frames_number, self.tau)


class CustomRepresentation(Representation):
    """A user function ``fn(recording) -> array``, keyed by ``name`` and ``params``.

    ``fn``'s code is part of the key (see :func:`callable_key`); values it reads from
    outside (globals, closures) are not, so list them in ``params``.
    """

    def __init__(
        self,
        fn: Callable[[EventRecording], Any],
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"CustomRepresentation needs a callable; got {fn!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)
        self._params = dict(params or {})

    def params(self) -> dict[str, Any]:
        return {"function": callable_key(self.fn), **self._params}

    def __call__(self, events: EventRecording) -> np.ndarray:
        return np.asarray(self.fn(events))


def frame_representation(
    frames_number: int | None = None,
    split_by: str | SplitFunction | None = None,
    duration: int | None = None,
    custom_integrate_function: Callable[[EventRecording], Any] | None = None,
) -> Representation:
    """Pick the representation from SpikingJelly-style dataset arguments.

    Exactly one of ``frames_number`` (with ``split_by``, default ``"number"``),
    ``duration`` or ``custom_integrate_function`` must be given; a
    :class:`Representation` may also be passed as ``custom_integrate_function``.
    """
    given = [
        n
        for n, v in (
            ("frames_number", frames_number),
            ("duration", duration),
            ("custom_integrate_function", custom_integrate_function),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise ConfigurationError(
            "data_type='frame' needs exactly one of frames_number (with split_by), duration "
            f"or custom_integrate_function; got {given or 'none'}"
        )
    if split_by is not None and frames_number is None:
        raise ConfigurationError("split_by only applies with frames_number")
    if frames_number is not None:
        return ToFrame(frames_number, "number" if split_by is None else split_by)
    if duration is not None:
        return ToFrameByDuration(duration)
    if isinstance(custom_integrate_function, Representation):
        return custom_integrate_function
    from spikeflow.data.representations_extra import ToSparseTensor  # (it imports this module)

    if isinstance(custom_integrate_function, ToSparseTensor):
        raise ConfigurationError(
            "ToSparseTensor gives a torch sparse tensor, which the frame cache (numpy "
            "arrays) and a frame dataset's dense float32 samples cannot hold: use "
            "data_type='event' with transform=ToSparseTensor(...) and "
            "collate_fn=spikeflow.data.sparse_collate"
        )
    return CustomRepresentation(custom_integrate_function)  # type: ignore[arg-type]
