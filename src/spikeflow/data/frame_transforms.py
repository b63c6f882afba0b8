"""Frame augmentations: the same random parameters for every time step (torch ops).

Each transform takes a tensor ``[..., H, W]`` (a sample ``[T, C, H, W]``, or a batch
``[B, T, C, H, W]``), draws its random parameters **once per call** and applies them to
every leading index, so all time steps of a sample get the same crop, flip or rotation;
an event stream moved differently at each step would no longer be one scene. Given a
batch, the whole batch shares one draw; call it per sample (in the dataset) for
per-sample augmentation.

``generator``: a ``torch.Generator`` or an int seed gives a reproducible stream held by
the transform; ``None`` (default) uses PyTorch's global generator, which
``torch.manual_seed`` and each DataLoader worker seed.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spikeflow._checks import is_count
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "CenterCropFrames",
    "RandomCropFrames",
    "RandomHorizontalFlipFrames",
    "RandomRot90Frames",
    "RandomVerticalFlipFrames",
]


def int_pair(size: int | Sequence[int], what: str, names: str) -> tuple[int, int]:
    """``size`` (an int, numpy ints too, or a pair of them, each >= 1) as two ints;
    ``names`` says what the pair holds in the error, e.g. ``"(height, width)"``."""
    if isinstance(size, numbers.Integral):
        pair: tuple[Any, ...] = (size, size)
    elif isinstance(size, Sequence | np.ndarray) and np.ndim(size) == 1:
        pair = tuple(size)
    else:
        pair = ()
    if len(pair) != 2 or not all(is_count(v) for v in pair):
        raise ConfigurationError(f"{what} must be an int or {names} >= 1; got {size!r}")
    return int(pair[0]), int(pair[1])


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    return int_pair(size, "size", "(height, width)")


def _check(x: Any, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name} takes a tensor [..., H, W]; got {type(x).__name__}")
    if x.dim() < 2:
        raise ShapeError(f"{name} takes a tensor [..., H, W]; got shape {tuple(x.shape)}")
    return x


class _RandomFrames:
    random = True

    def __init__(self, generator: torch.Generator | int | None, **params: Any) -> None:
        self._params = params
        if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
            self.generator: torch.Generator | None = torch.Generator().manual_seed(int(generator))
        elif generator is None or isinstance(generator, torch.Generator):
            self.generator = generator
        else:
            raise ConfigurationError(
                f"{type(self).__name__}: generator must be a torch.Generator, an integer seed "
                f"or None; got {generator!r} ({type(generator).__name__})"
            )
        self._worker_seed: int | None = None

    def _stream(self) -> torch.Generator | None:
        """The generator for this draw: in a DataLoader worker, one derived from the
        transform's (as copied into the worker) and the worker's seed, so that workers
        and epochs differ (see :mod:`spikeflow.data.transforms`)."""
        if self.generator is not None:
            info = torch.utils.data.get_worker_info()
            if info is not None and info.seed != self._worker_seed:
                base = int(torch.randint(0, 2**62, (1,), generator=self.generator).item())
                self.generator = torch.Generator().manual_seed((base ^ info.seed) % 2**63)
                self._worker_seed = info.seed
        return self.generator

    def _randint(self, high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=self._stream()).item())

    def _rand(self) -> float:
        return float(torch.rand((1,), generator=self._stream()).item())

    def cache_key(self) -> dict[str, Any]:
        return {"name": type(self).__name__, **self._params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"


class CenterCropFrames:
    """Crop the centred ``size = (h, w)`` window of every frame (deterministic)."""

    random = False

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _hw(size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check(x, "CenterCropFrames")
        h, w = self.size
        H, W = x.shape[-2:]
        if h > H or w > W:
            raise ShapeError(f"crop {h}x{w} (h x w) is larger than the frames' {H}x{W}")
        top, left = (H - h) // 2, (W - w) // 2
        return x[..., top : top + h, left : left + w]

    def cache_key(self) -> dict[str, Any]:
        return {"name": "CenterCropFrames", "size": self.size}

    def __repr__(self) -> str:
        return f"CenterCropFrames(size={self.size})"


class RandomCropFrames(_RandomFrames):
    """Zero-pad by ``padding`` on every side, then crop ``size = (h, w)`` at one random
    origin shared by every time step."""

    def __init__(
        self, size: int | Sequence[int], padding: int = 0,
        generator: torch.Generator | int | None = None,
    ) -> None:  # fmt: skip
        if padding < 0:
            raise ConfigurationError(f"padding must be >= 0; got {padding}")
        super().__init__(generator, size=_hw(size), padding=padding)
        self.size, self.padding = _hw(size), padding

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check(x, "RandomCropFrames")
        if self.padding:
            x = F.pad(x, (self.padding,) * 4)
        h, w = self.size
        H, W = x.shape[-2:]
        if h > H or w > W:
            raise ShapeError(f"crop {h}x{w} (h x w) is larger than the padded frames' {H}x{W}")
        top, left = self._randint(H - h + 1), self._randint(W - w + 1)
        return x[..., top : top + h, left : left + w]


class RandomHorizontalFlipFrames(_RandomFrames):
    """Flip the width axis of every frame with probability ``p`` (one draw per call)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | int | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigurationError(f"p must be in [0, 1]; got {p!r}")
        super().__init__(generator, p=p)
        self.p = p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check(x, type(self).__name__)
        return x.flip(-1) if self._rand() < self.p else x


class RandomVerticalFlipFrames(RandomHorizontalFlipFrames):
    """Flip the height axis of every frame with probability ``p`` (one draw per call)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check(x, type(self).__name__)
        return x.flip(-2) if self._rand() < self.p else x


class RandomRot90Frames(_RandomFrames):
    """Rotate every frame by ``k·90°`` (counter-clockwise, ``torch.rot90`` over (H, W)),
    ``k`` drawn uniformly from ``ks`` once per call. Odd ``k`` swaps H and W."""

    def __init__(
        self, ks: Sequence[int] = (0, 1, 2, 3), generator: torch.Generator | int | None = None
    ) -> None:
        ks = tuple(int(k) for k in ks)
        if not ks:
            raise ConfigurationError("ks must list at least one multiple of 90 degrees")
        super().__init__(generator, ks=ks)
        self.ks = ks

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check(x, "RandomRot90Frames")
        k = self.ks[self._randint(len(self.ks))]
        return torch.rot90(x, k, dims=(-2, -1))
