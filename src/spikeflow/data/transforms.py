"""Event transforms, and a torchvision-style :class:`Compose`.

Every event transform takes an :class:`~spikeflow.data.EventRecording` (or a plain
structured array, for the transforms that need no sensor size) and returns a new one;
the input is never modified. All are vectorised numpy. Transforms that need the sensor
size (flips, crops, downsampling) raise :class:`~spikeflow.errors.ConfigurationError`
on a plain array.

Random transforms take ``seed``: an int or a ``numpy.random.Generator`` gives one
reproducible stream held by the transform; inside a DataLoader worker the stream is
derived from that seed and the worker's seed (which PyTorch draws for every worker of
every epoch from its global generator), so workers and epochs get different draws and
``torch.manual_seed`` still makes the run reproducible (a copied stream would repeat
the same draws in every worker and every epoch). ``None`` (default) draws each call's
seed from PyTorch's global generator, so ``torch.manual_seed`` makes runs reproducible
and each DataLoader worker (seeded differently by PyTorch) gets different augmentations.

Transforms applied by a dataset before a cached representation must be deterministic
(``transform.random`` is False): a cached random draw would be the same every epoch.

Frame augmentations (``[T, C, H, W]`` tensors, the same random parameters for every
time step; and SpikingJelly's random temporal delete, which keeps random whole steps)
live in :mod:`spikeflow.data.frame_transforms`; spatial jitter and noise,
time cropping, alignment and reversal, random polarity flips, decimation, area drops
and EventDrop in :mod:`spikeflow.data.transforms_extra`; spatio-temporal downsampling in
:mod:`spikeflow.data.event_downsampling`; the noise filters (:class:`Denoise`,
:class:`RefractoryPeriod`) in :mod:`spikeflow.data.event_filters`; :class:`DropPixel`
and the hot-pixel functions in :mod:`spikeflow.data.hot_pixels`; the target transform
:class:`Repeat` in :mod:`spikeflow.data.target_transforms`. All are re-exported
here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from spikeflow._checks import check_int
from spikeflow.data._transform_args import factor_in_unit, pair_of_ints
from spikeflow.data.events import EventRecording
from spikeflow.data.frame_transforms import (
    CenterCropFrames,
    RandomCropFrames,
    RandomHorizontalFlipFrames,
    RandomRot90Frames,
    RandomRotationFrames,
    RandomTemporalDelete,
    RandomVerticalFlipFrames,
    int_pair,
    random_temporal_delete,
    rotate_frames,
)
from spikeflow.data.frames import unpack_events
from spikeflow.data.representations import callable_key, user_class_key
from spikeflow.data.target_transforms import Repeat
from spikeflow.errors import ConfigurationError

__all__ = [
    "CenterCrop",
    "CenterCropFrames",
    "Compose",
    "CropTime",
    "Decimation",
    "Denoise",
    "Downsample",
    "DropArea",
    "DropEvent",
    "DropPixel",
    "DropTimeWindow",
    "EventDownsampling",
    "EventDrop",
    "EventTransform",
    "FlipLR",
    "FlipPolarity",
    "FlipUD",
    "LavaShiftRotate",
    "MergePolarities",
    "RandomCrop",
    "RandomCropFrames",
    "RandomFlipLR",
    "RandomFlipPolarity",
    "RandomFlipUD",
    "RandomHorizontalFlipFrames",
    "RandomRot90Frames",
    "RandomRotationEvents",
    "RandomRotationFrames",
    "RandomTemporalDelete",
    "RandomTimeReversal",
    "RandomVerticalFlipFrames",
    "RefractoryPeriod",
    "Repeat",
    "RotateEvents",
    "SeededTransform",
    "SortEvents",
    "SpatialJitter",
    "StabilizeSaccades",
    "TimeAlignment",
    "TimeJitter",
    "TimeReversal",
    "TimeSkew",
    "UniformNoise",
    "drop_pixels_raster",
    "identify_hot_pixels",
    "identify_hot_pixels_raster",
    "random_temporal_delete",
    "rotate_frames",
]

Size = tuple[int, int, int]


class Compose:
    """Apply callables in order, like ``torchvision.transforms.Compose``."""

    def __init__(self, transforms: Iterable[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, data: Any) -> Any:
        for t in self.transforms:
            data = t(data)
        return data

    @property
    def random(self) -> bool:
        """True when any member is random."""
        return any(getattr(t, "random", False) for t in self.transforms)

    def cache_key(self) -> dict[str, Any]:
        """The members' keys, in order (see :func:`spikeflow.data.representations.callable_key`)."""
        return {"name": "Compose", "transforms": [callable_key(t) for t in self.transforms]}

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class SeededTransform:
    """Base of the transforms that may draw random numbers (the event transforms, the
    audio transforms): their parameters, which are the cache key, and their seed.

    ``seed`` is an int >= 0, a numpy ``Generator`` (used as is) or None (each call draws
    from torch's global generator); :meth:`rng` gives the generator of a call.
    """

    def __init__(self, seed: int | np.random.Generator | None = None, **params: Any) -> None:
        # numpy scalars as Python ones: the parameters are the cache key (JSON).
        self._params = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
        self._seed = seed
        if isinstance(seed, np.random.Generator):
            self._rng: np.random.Generator | None = seed
        elif seed is None:
            self._rng = None
        else:
            self._rng = np.random.default_rng(check_int("seed", seed, 0))
        self._worker_seed: int | None = None  # the DataLoader worker seed _rng is for

    @property
    def random(self) -> bool:
        """Whether the output depends on random draws."""
        return False

    def rng(self) -> np.random.Generator:
        """The generator for this call (see the module docstring)."""
        if self._rng is not None:
            info = torch.utils.data.get_worker_info()
            if info is not None and info.seed != self._worker_seed:
                # This worker's stream: from the transform's (as copied into the worker)
                # and the worker's seed, new for every worker of every epoch.
                base = int(self._rng.integers(2**62))
                self._rng = np.random.default_rng([base, info.seed])
                self._worker_seed = info.seed
            return self._rng
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"


class EventTransform(SeededTransform):
    """Base class: subclasses implement ``apply(events, sensor_size)``.

    ``apply`` gets the structured array and ``(W, H, P)`` (``None`` for a plain array)
    and returns ``(events, sensor_size)``.
    """

    needs_sensor: bool = False
    needs_sorted: bool = False

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        raise NotImplementedError  # pragma: no cover

    def __call__(self, data: EventRecording | np.ndarray) -> EventRecording | np.ndarray:
        if isinstance(data, EventRecording):
            arr, size, _ = unpack_events(data, need_sorted=self.needs_sorted)
            out, new_size = self.apply(arr, size)
            return EventRecording(out, tuple(new_size), data.source)
        if self.needs_sensor:
            raise ConfigurationError(
                f"{type(self).__name__} needs the sensor size: pass an EventRecording, "
                "not a plain event array"
            )
        if self.needs_sorted:
            unpack_events(data, (1 << 16, 1 << 16, 1 << 8))
        out, _ = self.apply(data, None)
        return out

    def cache_key(self) -> dict[str, Any]:
        """``{"name": class name, **parameters}`` (random transforms are never cached); a
        subclass written outside spikeflow also by its class and its ``apply`` (code and
        instance attributes, see :func:`~spikeflow.data.representations.user_class_key`)."""
        return {"name": type(self).__name__, **self._params,
                **user_class_key(self, self.apply)}  # fmt: skip


class SortEvents(EventTransform):
    """Sort events by time (stable: equal timestamps keep their order)."""

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        return events[np.argsort(events["t"], kind="stable")], sensor_size


class FlipLR(EventTransform):
    """Mirror left-right: ``x -> W - 1 - x``."""

    needs_sensor = True

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        out = events.copy()
        out["x"] = sensor_size[0] - 1 - events["x"].astype(np.int64)
        return out, sensor_size


class FlipUD(EventTransform):
    """Mirror up-down: ``y -> H - 1 - y``."""

    needs_sensor = True

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        out = events.copy()
        out["y"] = sensor_size[1] - 1 - events["y"].astype(np.int64)
        return out, sensor_size


def _flip_polarity(p: np.ndarray) -> np.ndarray:
    """ON/OFF swap (as Tonic): 0 -> 1, anything else -> 0."""
    return (p == 0).astype(np.int8)


class FlipPolarity(EventTransform):
    """Swap the two polarities: ``p -> 1`` where ``p == 0``, else ``0``."""

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        out = events.copy()
        out["p"] = _flip_polarity(events["p"])
        return out, sensor_size


class _RandomApply(EventTransform):
    def __init__(self, p: float, seed: int | np.random.Generator | None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigurationError(f"probability p must be in [0, 1]; got {p!r}")
        super().__init__(seed, p=p)
        self.p = p

    @property
    def random(self) -> bool:
        return 0.0 < self.p < 1.0

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        if self.rng().random() < self.p:
            return self.inner.apply(events, sensor_size)
        return events.copy(), sensor_size


class RandomFlipLR(_RandomApply):
    """:class:`FlipLR` with probability ``p``."""

    needs_sensor = True
    inner = FlipLR()

    def __init__(self, p: float = 0.5, seed: int | np.random.Generator | None = None) -> None:
        super().__init__(p, seed)


class RandomFlipUD(_RandomApply):
    """:class:`FlipUD` with probability ``p``."""

    needs_sensor = True
    inner = FlipUD()

    def __init__(self, p: float = 0.5, seed: int | np.random.Generator | None = None) -> None:
        super().__init__(p, seed)


class MergePolarities(EventTransform):
    """Set every polarity to 0; the sensor gets ``P = 1`` (frames then have one channel)."""

    def apply(self, events: np.ndarray, sensor_size: Size | None) -> tuple[np.ndarray, Any]:
        out = events.copy()
        out["p"] = 0
        return out, None if sensor_size is None else (*sensor_size[:2], 1)


class Downsample(EventTransform):
    """Scale coordinates: ``x -> ⌊x·fx⌋``, ``y -> ⌊y·fy⌋``, sensor ``⌈W·fx⌉ x ⌈H·fy⌉``
    (in exact decimals: 180 at 0.55 is 99).

    Give one of:

    - ``spatial_factor``: ``f`` for both axes, or ``(fx, fy)`` (Tonic's tuple form),
      each in ``(0, 1]``;
    - ``target_size``: ``(w, h)``, at most the sensor's ``(W, H)``: the factors are
      ``w / W`` and ``h / H`` of each recording's sensor (Tonic's ``target_size``, which
      also needs ``sensor_size``; spikeflow reads it from the recording), and the
      sensor becomes ``(w, h)``.

    Events keep their times (several events may now share a pixel and a timestamp);
    the products are taken in double precision, as Tonic's (its time factor is
    :class:`TimeSkew`).
    """

    needs_sensor = True

    def __init__(
        self,
        spatial_factor: float | tuple[float, float] | None = None,
        target_size: tuple[int, int] | None = None,
    ) -> None:
        if (spatial_factor is None) == (target_size is None):
            raise ConfigurationError(
                "Downsample: give spatial_factor (f or (fx, fy)) or target_size ((w, h)), "
                f"one of them; got spatial_factor={spatial_factor!r}, target_size={target_size!r}"
            )
        self.factors: tuple[float, float] | None = None
        self.target: tuple[int, int] | None = None
        if target_size is not None:
            self.target = pair_of_ints("Downsample: target_size", target_size)
            super().__init__(None, target_size=list(self.target))
            return
        if isinstance(spatial_factor, (tuple, list)):
            if len(spatial_factor) != 2:
                raise ConfigurationError(
                    f"Downsample: spatial_factor must be f or (fx, fy); got {spatial_factor!r}"
                )
            fx, fy = (
                factor_in_unit(f"spatial_factor[{i}]", v) for i, v in enumerate(spatial_factor)
            )
            self.factors = (fx, fy)
            self._decimals = (_as_written(spatial_factor[0]), _as_written(spatial_factor[1]))
            super().__init__(None, spatial_factor=[fx, fy])
        else:
            f = factor_in_unit("spatial_factor", spatial_factor)
            self.factors = (f, f)
            self._decimals = (_as_written(spatial_factor),) * 2
            super().__init__(None, spatial_factor=f)
        self.factor = self.factors[0]

    def cache_key(self) -> dict[str, Any]:
        """The base key; with ``spatial_factor`` also the sensor's rule (``"as written"``),
        so frames cached when the sensor was the ceiling of the float product (an empty
        row at 180 · 0.55, or for a float32 factor) miss instead of mixing two sizes."""
        key = super().cache_key()
        return key if self.factors is None else {**key, "sensor": "as written"}

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        w, h, p = sensor_size
        if self.target is not None:
            if self.target[0] > w or self.target[1] > h:
                raise ConfigurationError(
                    f"Downsample: target_size {self.target} is larger than the sensor "
                    f"({w}, {h}); it can only shrink it"
                )
            fx, fy = np.asarray(self.target, dtype=np.float64) / np.asarray((w, h))
            size = (self.target[0], self.target[1], p)
        else:
            fx, fy = self.factors
            # One pickled by an older spikeflow has no _decimals: its floats as written.
            written = getattr(self, "_decimals", None) or tuple(map(_as_written, self.factors))
            size = (_scaled_side(w, fx, written[0]), _scaled_side(h, fy, written[1]), p)
        out = events.copy()
        out["x"] = np.floor(events["x"] * fx).astype(np.uint16)
        out["y"] = np.floor(events["y"] * fy).astype(np.uint16)
        return out, size


def _as_written(factor: Any) -> Fraction:
    """The factor as written: a fraction or integer exactly, a float as its shortest
    decimal in its own precision (a numpy float32 ``0.55`` is 0.55, not the
    0.550000011920929 of its float64 value)."""
    if isinstance(factor, numbers.Rational):
        return Fraction(factor)
    if isinstance(factor, np.floating):
        return Fraction(np.format_float_positional(factor, unique=True, trim="0"))
    return Fraction(repr(float(factor)))


def _scaled_side(side: int, factor: float, written: Fraction) -> int:
    """``⌈side·f⌉`` of the factor as written (``written``, exactly): the float product
    can land just above a whole number (180 · 0.55 = 99.00000000000001), whose ceiling
    would add an empty row; never less than the last pixel's coordinate ``⌊(side - 1)
    · factor⌋`` (the float product the events get) plus one."""
    last = int(np.floor(np.float64(side - 1) * factor))
    return max(math.ceil(side * written), last + 1)


def _crop(events: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    keep = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
    out = events[keep].copy()
    out["x"] -= x0
    out["y"] -= y0
    return out


class CenterCrop(EventTransform):
    """Keep the centred ``size = (w, h)`` window (origin ``((W−w)//2, (H−h)//2))``)."""

    needs_sensor = True

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = int_pair(size, "size", "(width, height)")
        super().__init__(None, size=self.size)

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        w, h = self.size
        W, H, P = sensor_size
        if w > W or h > H:
            raise ConfigurationError(f"crop size {w}x{h} is larger than the {W}x{H} sensor")
        return _crop(events, (W - w) // 2, (H - h) // 2, w, h), (w, h, P)


class RandomCrop(CenterCrop):
    """Keep a ``size = (w, h)`` window at a uniformly random origin."""

    def __init__(
        self, size: int | Sequence[int], seed: int | np.random.Generator | None = None
    ) -> None:
        self.size = int_pair(size, "size", "(width, height)")
        EventTransform.__init__(self, seed, size=self.size)

    @property
    def random(self) -> bool:
        return True

    def apply(self, events: np.ndarray, sensor_size: Size) -> tuple[np.ndarray, Any]:
        w, h = self.size
        W, H, P = sensor_size
        if w > W or h > H:
            raise ConfigurationError(f"crop size {w}x{h} is larger than the {W}x{H} sensor")
        rng = self.rng()
        x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
        return _crop(events, x0, y0, w, h), (w, h, P)


# The modules below subclass EventTransform, so they are imported once it exists (the
# package's __init__ imports this module first, so importing them directly works too).
from spikeflow.data.event_downsampling import EventDownsampling  # noqa: E402
from spikeflow.data.event_filters import Denoise, RefractoryPeriod  # noqa: E402
from spikeflow.data.event_rotation import (  # noqa: E402
    LavaShiftRotate,
    RandomRotationEvents,
    RotateEvents,
)
from spikeflow.data.event_timing import (  # noqa: E402
    DropEvent,
    DropTimeWindow,
    TimeJitter,
    TimeSkew,
)
from spikeflow.data.hot_pixels import (  # noqa: E402
    DropPixel,
    drop_pixels_raster,
    identify_hot_pixels,
    identify_hot_pixels_raster,
)
from spikeflow.data.transforms_extra import (  # noqa: E402
    CropTime,
    Decimation,
    DropArea,
    EventDrop,
    RandomFlipPolarity,
    RandomTimeReversal,
    SpatialJitter,
    StabilizeSaccades,
    TimeAlignment,
    TimeReversal,
    UniformNoise,
)
