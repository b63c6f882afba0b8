"""Frame augmentations: the same random parameters for every time step (torch ops).

Each transform takes a tensor ``[..., H, W]`` (a sample ``[T, C, H, W]``, or a batch
``[B, T, C, H, W]``), draws its random parameters **once per call** and applies them to
every leading index, so all time steps of a sample get the same crop, flip or rotation;
an event stream moved differently at each step would no longer be one scene. Given a
batch, the whole batch shares one draw; call it per sample (in the dataset) for
per-sample augmentation.

:class:`RandomTemporalDelete` acts on the time axis instead: it keeps ``T_remain``
randomly chosen steps of a sample ``[T, ...]`` in their order (SpikingJelly's random
temporal delete), one draw per call, shared by a batch.

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

from spikeflow._checks import check_flag, check_int, is_count
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "CenterCropFrames",
    "RandomCropFrames",
    "RandomHorizontalFlipFrames",
    "RandomRot90Frames",
    "RandomRotationFrames",
    "RandomTemporalDelete",
    "RandomVerticalFlipFrames",
    "random_temporal_delete",
    "rotate_frames",
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


def rotate_frames(x: torch.Tensor, degrees: float, fill: float = 0.0) -> torch.Tensor:
    """Every frame of ``x`` ``[..., H, W]`` turned by ``degrees`` about its centre,
    counter-clockwise on screen for a positive angle: torchvision's ``F.rotate(x,
    degrees)`` on tensors (nearest interpolation, ``expand=False``, centre rotation).

    Output pixel ``(i, j)`` takes input pixel ``(cy + sin·dx + cos·dy, cx + cos·dx -
    sin·dy)`` rounded to the nearest (``grid_sample(mode="nearest",
    align_corners=False)``), with ``dx = j - cx``, ``dy = i - cy`` and ``(cx, cy) = ((W-1)/2,
    (H-1)/2)``; pixels whose source is off the frame get ``fill``. Integer tensors are
    sampled in float64 and cast back; the dtype and shape are kept.
    """
    x = _check(x, "rotate_frames")
    degrees = float(degrees)
    if not np.isfinite(degrees) or not np.isfinite(float(fill)):
        raise ConfigurationError(
            f"rotate_frames: degrees and fill must be finite; got {degrees!r}, {fill!r}"
        )
    H, W = x.shape[-2:]
    work = x.dtype if x.is_floating_point() else torch.float64
    rad = np.deg2rad(degrees)
    cos, sin = float(np.cos(rad)), float(np.sin(rad))
    # Pixel centres relative to the frame centre, then their source, normalised to
    # [-1, 1] over the frame's edges (align_corners=False).
    dy, dx = torch.meshgrid(
        torch.arange(H, dtype=work, device=x.device) - (H - 1) / 2,
        torch.arange(W, dtype=work, device=x.device) - (W - 1) / 2,
        indexing="ij",
    )
    grid = torch.stack(((cos * dx - sin * dy) / (W / 2), (sin * dx + cos * dy) / (H / 2)), -1)
    flat = x.reshape(1, -1, H, W).to(work)
    out = F.grid_sample(flat, grid[None], mode="nearest", padding_mode="zeros", align_corners=False)
    if fill:
        inside = F.grid_sample(
            torch.ones_like(flat[:, :1]), grid[None], mode="nearest", align_corners=False
        )
        out = torch.where(inside > 0, out, torch.as_tensor(float(fill), dtype=work))
    return out.reshape(x.shape).to(x.dtype)


class RandomRotationFrames(_RandomFrames):
    """:func:`rotate_frames` by an angle drawn uniformly from ``degrees`` once per call
    (the same for every step of a sample): torchvision's ``RandomRotation(degrees)``
    with its defaults (nearest, ``expand=False``, centre rotation, ``fill=0``).

    ``degrees`` is ``d`` for ``(-d, d)``, or a ``(low, high)`` range; the draw is
    ``torch.empty(1).uniform_(low, high)`` from ``generator`` (torchvision draws the same
    way from PyTorch's global generator).
    """

    def __init__(
        self,
        degrees: float | Sequence[float],
        fill: float = 0.0,
        generator: torch.Generator | int | None = None,
    ) -> None:
        if isinstance(degrees, numbers.Real) and not isinstance(degrees, bool):
            if degrees < 0:
                raise ConfigurationError(
                    f"RandomRotationFrames: degrees as one number must be >= 0; got {degrees!r}"
                )
            low, high = -float(degrees), float(degrees)
        elif (
            isinstance(degrees, Sequence | np.ndarray)
            and np.ndim(degrees) == 1
            and len(degrees) == 2
        ):
            low, high = float(degrees[0]), float(degrees[1])
        else:
            raise ConfigurationError(
                f"RandomRotationFrames: degrees must be a number or (low, high); got {degrees!r}"
            )
        if not (np.isfinite(low) and np.isfinite(high) and low <= high):
            raise ConfigurationError(
                f"RandomRotationFrames: degrees must be finite with low <= high; got {degrees!r}"
            )
        if not isinstance(fill, numbers.Real) or isinstance(fill, bool) or not np.isfinite(fill):
            raise ConfigurationError(
                f"RandomRotationFrames: fill must be a finite number; got {fill!r}"
            )
        super().__init__(generator, degrees=[low, high], fill=float(fill))
        self.degrees, self.fill = (low, high), float(fill)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check(x, "RandomRotationFrames")
        low, high = self.degrees
        angle = float(torch.empty(1).uniform_(low, high, generator=self._stream()).item())
        return rotate_frames(x, angle, self.fill)


Frames = torch.Tensor | np.ndarray


class RandomTemporalDelete(_RandomFrames):
    """Keep ``T_remain`` randomly chosen time steps of a sequence, in their order: the
    random temporal delete of SEW ResNet (Fang et al., NeurIPS 2021) on DVS Gesture,
    SpikingJelly's ``datasets.RandomTemporalDelete``.

    Each call draws ``T_remain`` distinct steps uniformly (``torch.randperm``), sorts
    them and returns those steps of the input (a tensor or a numpy array, as given;
    a copy). The time axis is the first, ``[T, ...]``: a sample ``[T, C, H, W]`` as a
    dataset's ``transform``, or a time-major batch ``[T, B, ...]``; with
    ``batch_first=True`` the second, ``[B, T, ...]`` as a DataLoader batches. A batch
    shares one draw, as in SpikingJelly.

    Args:
        T_remain: how many steps to keep, an integer from 1 to the input's ``T``
            (SpikingJelly lets 0 through, which leaves no step).
        batch_first: the input is ``[B, T, ...]`` (SpikingJelly's argument; here it
            defaults to ``False``).
        generator: a ``torch.Generator`` or an int seed for a reproducible stream;
            ``None`` (default): PyTorch's global generator.

    Raises:
        ConfigurationError: ``T_remain`` not an integer ``>= 1`` (a bool is not), or
            more than the input's steps (at the call); ``batch_first`` not a bool.
        ShapeError: the input is not a tensor or array with the time dim.

    Example::

        >>> frames = torch.arange(8.0).view(8, 1)           # [T=8, 1]
        >>> RandomTemporalDelete(5, generator=0)(frames).view(-1).tolist()   # 5 of 8, in order
        [0.0, 2.0, 3.0, 4.0, 7.0]
    """

    def __init__(
        self,
        T_remain: int,
        batch_first: bool = False,
        generator: torch.Generator | int | None = None,
    ) -> None:
        T_remain = _check_remain("RandomTemporalDelete", T_remain)
        batch_first = check_flag("RandomTemporalDelete", "batch_first", batch_first)
        super().__init__(generator, T_remain=T_remain, batch_first=batch_first)
        self.T_remain, self.batch_first = T_remain, batch_first

    def __call__(self, x_seq: Frames) -> Frames:
        return _temporal_delete(
            "RandomTemporalDelete", x_seq, self.T_remain, self.batch_first, self._stream()
        )


def random_temporal_delete(
    x_seq: Frames,
    T_remain: int,
    batch_first: bool = False,
    generator: torch.Generator | None = None,
) -> Frames:
    """``x_seq`` with ``T_remain`` of its time steps, drawn at random and kept in order
    (SpikingJelly's ``datasets.random_temporal_delete``; see
    :class:`RandomTemporalDelete`, which holds a seeded stream). ``x_seq`` is
    ``[T, ...]``, or ``[B, T, ...]`` with ``batch_first``; a batch shares one draw;
    ``generator`` None uses PyTorch's global generator.

    Raises:
        ConfigurationError: ``T_remain`` not an integer from 1 to ``T``, ``batch_first``
            not a bool, ``generator`` not a ``torch.Generator`` or None.
        ShapeError: ``x_seq`` is not a tensor or array with the time dim.
    """
    owner = "random_temporal_delete"
    T_remain = _check_remain(owner, T_remain)
    batch_first = check_flag(owner, "batch_first", batch_first)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigurationError(
            f"{owner}: generator must be a torch.Generator or None; got {generator!r}"
        )
    return _temporal_delete(owner, x_seq, T_remain, batch_first, generator)


def _check_remain(owner: str, T_remain: Any) -> int:
    return check_int(f"{owner}: T_remain", T_remain, 1)


def _temporal_delete(
    owner: str,
    x_seq: Frames,
    T_remain: int,
    batch_first: bool,
    generator: torch.Generator | None,
) -> Frames:
    dim = 1 if batch_first else 0
    layout = "[B, T, ...]" if batch_first else "[T, ...]"
    if not isinstance(x_seq, torch.Tensor | np.ndarray):
        raise ShapeError(f"{owner} takes a tensor or array {layout}; got {type(x_seq).__name__}")
    if x_seq.ndim <= dim:
        raise ShapeError(
            f"{owner} takes a tensor or array {layout}; got shape {tuple(x_seq.shape)}"
        )
    steps = x_seq.shape[dim]
    if T_remain > steps:
        raise ConfigurationError(
            f"{owner}: T_remain = {T_remain} is more than the input's {steps} time steps "
            f"(dim {dim} of shape {tuple(x_seq.shape)})"
        )
    keep = torch.randperm(steps, generator=generator)[:T_remain].sort().values
    if isinstance(x_seq, np.ndarray):
        return np.take(x_seq, keep.numpy(), axis=dim)
    return x_seq.index_select(dim, keep.to(x_seq.device))
