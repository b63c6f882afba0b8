"""Transforms of static images (ImageNet-style pipelines), without torchvision.

The geometric transforms (:class:`RandomResizedCrop`, :class:`Resize`,
:class:`CenterCrop`, :class:`RandomHorizontalFlip`) take a PIL image (resampled by
Pillow, as torchvision does for PIL images) or a tensor ``[..., H, W]`` (resampled by
``torch.nn.functional.interpolate`` with antialiasing, which agrees with Pillow to
within one grey level of 255 for bilinear); :class:`ToTensor` turns a PIL image into
float32 ``[C, H, W]`` in [0, 1] and :class:`Normalize` subtracts a per-channel mean and
divides by a standard deviation. :class:`~spikeflow.data.transforms.Compose` chains
them. :func:`imagenet_train_transform` and :func:`imagenet_eval_transform` build the
standard ImageNet pipelines.

These are not the event transforms of :mod:`spikeflow.data.transforms` (whose
``CenterCrop`` crops events): the names here are torchvision's image transforms.

``generator`` (random transforms): a ``torch.Generator`` or an int seed gives a
reproducible stream held by the transform (in a DataLoader worker, derived from it and
the worker's seed, so workers and epochs differ); ``None`` (default) uses PyTorch's
global generator, which ``torch.manual_seed`` and each DataLoader worker seed.
Pillow is the optional extra ``images``; only PIL inputs need it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spikeflow._checks import check_real
from spikeflow.data.frame_transforms import _RandomFrames, int_pair
from spikeflow.data.transforms import Compose
from spikeflow.errors import ConfigurationError, DTypeError, MissingExtraError, ShapeError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CenterCrop",
    "Compose",
    "Normalize",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "ToTensor",
    "imagenet_eval_transform",
    "imagenet_train_transform",
]

#: The per-channel (R, G, B) mean and standard deviation of the ImageNet training
#: images in [0, 1], the normalisation every ImageNet recipe (and torchvision) uses.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
#: PyTorch's mode for each name ("nearest-exact", source pixel floor((x + 0.5) · in / out),
#: is Pillow's NEAREST rule; Pillow accumulates the position in floating point, so where
#: (x + 0.5) · in / out is a whole number it can take the pixel before, e.g. 18 -> 81).
_TORCH_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}


def pil_image_module(feature: str = "reading images") -> ModuleType:
    """``PIL.Image``, or a :class:`MissingExtraError` naming the extra ``images``."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingExtraError(feature, "pillow", "images") from exc
    return Image


def _is_pil(image: Any) -> bool:
    module = type(image).__module__
    return module.startswith("PIL.") and hasattr(image, "size") and hasattr(image, "mode")


def image_hw(image: Any, owner: str) -> tuple[int, int]:
    """``(height, width)`` of a PIL image or a tensor ``[..., H, W]``."""
    if _is_pil(image):
        width, height = image.size
        return int(height), int(width)
    if isinstance(image, torch.Tensor):
        if image.dim() < 2:
            raise ShapeError(f"{owner} takes a tensor [..., H, W]; got shape {tuple(image.shape)}")
        return int(image.shape[-2]), int(image.shape[-1])
    raise ShapeError(
        f"{owner} takes a PIL image or a tensor [..., H, W]; got {type(image).__name__}"
    )


def _interpolation(value: Any) -> str:
    if value not in INTERPOLATIONS:
        raise ConfigurationError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {value!r}"
        )
    return str(value)


def pil_filter(pil: Any, interpolation: str) -> Any:
    """Pillow's filter (``pil.Resampling``) of one of :data:`INTERPOLATIONS`."""
    return {"bilinear": pil.Resampling.BILINEAR, "bicubic": pil.Resampling.BICUBIC,
            "nearest": pil.Resampling.NEAREST}[interpolation]  # fmt: skip


def resize_image(image: Any, size: tuple[int, int], interpolation: str = "bilinear") -> Any:
    """``image`` (PIL or tensor ``[..., H, W]``) resampled to ``size = (h, w)``.

    PIL images are resampled by Pillow (its filters widen with the scale factor, so a
    reduction averages every pixel it covers); float tensors by
    ``F.interpolate(..., antialias=True)``, which widens its filter the same way
    (bicubic uses PyTorch's a = -0.75, Pillow's a = -0.5); uint8 tensors are resampled
    in float32 and rounded back.
    """
    h, w = size
    if _is_pil(image):
        pil = pil_image_module("resizing PIL images")
        return image.resize((w, h), pil_filter(pil, interpolation))
    x = image
    if tuple(x.shape[-2:]) == (h, w):
        return x
    lead = x.shape[:-2]
    as_uint8 = x.dtype == torch.uint8
    if not (x.is_floating_point() or as_uint8):
        raise DTypeError(f"resizing takes a float or uint8 tensor; got {x.dtype}")
    flat = x.reshape(1, -1, *x.shape[-2:]).to(torch.float32 if as_uint8 else x.dtype)
    mode = _TORCH_MODES[interpolation]
    kwargs: dict[str, Any] = {} if mode == "nearest-exact" else {"antialias": True,
                                                                "align_corners": False}  # fmt: skip
    out = F.interpolate(flat, size=(h, w), mode=mode, **kwargs)
    if as_uint8:
        out = out.round().clamp(0, 255).to(torch.uint8)
    return out.reshape(*lead, h, w)


def crop_image(image: Any, top: int, left: int, height: int, width: int) -> Any:
    """The ``height x width`` window of ``image`` whose top-left pixel is ``(top, left)``
    (the window must lie inside the image)."""
    if _is_pil(image):
        return image.crop((left, top, left + width, top + height))
    return image[..., top : top + height, left : left + width]


def _check_sequence_pair(value: Any, name: str, positive: bool) -> tuple[float, float]:
    ok = isinstance(value, Sequence | np.ndarray) and not isinstance(value, str) and len(value) == 2
    pair = tuple(value) if ok else ()
    if not ok or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in pair
    ):
        raise ConfigurationError(
            f"{name} must be a pair (low, high) of finite numbers; got {value!r}"
        )
    low, high = float(pair[0]), float(pair[1])
    if low > high or (positive and low <= 0) or (not positive and low < 0):
        bound = "0 < low" if positive else "0 <= low"
        raise ConfigurationError(f"{name} must satisfy {bound} <= high; got {value!r}")
    return low, high


class RandomResizedCrop(_RandomFrames):
    """Crop a random window of random area and aspect ratio, then resize it to ``size``
    (the Inception / ResNet training augmentation).

    The window (:meth:`get_params`): up to 10 attempts, each drawing an area fraction
    ``s ~ U(scale)`` of the image and an aspect ratio ``r = exp(U(log ratio))``
    (width / height), giving ``w = round(sqrt(s·H·W·r))`` and ``h = round(sqrt(s·H·W/r))``;
    the first that fits inside the image is placed at a uniform random position. If
    none fits, the whole image cropped to the nearest ratio inside ``ratio`` is taken,
    centred.

    Args:
        size: the output ``(h, w)`` (an int: square).
        scale: the range of the window's area as a fraction of the image's.
        ratio: the range of its aspect ratio (width / height).
        interpolation: ``"bilinear"`` (default), ``"bicubic"`` or ``"nearest"``.
        generator: see the module docstring.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        interpolation: str = "bilinear",
        generator: torch.Generator | int | None = None,
    ) -> None:
        self.size = int_pair(size, "size", "(height, width)")
        self.scale = _check_sequence_pair(scale, "scale", positive=False)
        self.ratio = _check_sequence_pair(ratio, "ratio", positive=True)
        self.interpolation = _interpolation(interpolation)
        super().__init__(generator, size=self.size, scale=self.scale, ratio=self.ratio,
                         interpolation=self.interpolation)  # fmt: skip

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._rand()

    def get_params(self, height: int, width: int) -> tuple[int, int, int, int]:
        """A random window ``(top, left, h, w)`` of an image of ``height x width``."""
        area = height * width
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * self._uniform(*self.scale)
            aspect = math.exp(self._uniform(log_low, log_high))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = self._randint(height - h + 1)
                left = self._randint(width - w + 1)
                return top, left, h, w
        # No attempt fit: the largest centred window whose ratio is inside the range.
        image_ratio = width / height
        if image_ratio < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif image_ratio > self.ratio[1]:
            h, w = height, round(height * self.ratio[1])
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image: Any) -> Any:
        height, width = image_hw(image, "RandomResizedCrop")
        top, left, h, w = self.get_params(height, width)
        window = crop_image(image, top, left, h, w)
        return resize_image(window, self.size, self.interpolation)


class Resize:
    """Resize to ``size``: an int sets the shorter side (the longer one keeps the
    aspect ratio, ``int(size · long / short)``, truncated as torchvision does); a pair
    ``(h, w)`` sets both. Deterministic.

    Args:
        size: the shorter side, or ``(h, w)``.
        interpolation: ``"bilinear"`` (default), ``"bicubic"`` or ``"nearest"``.
    """

    random = False

    def __init__(self, size: int | Sequence[int], interpolation: str = "bilinear") -> None:
        if isinstance(size, numbers.Integral) and not isinstance(size, bool):
            if size < 1:
                raise ConfigurationError(f"size must be >= 1; got {size!r}")
            self.size: int | tuple[int, int] = int(size)
        else:
            self.size = int_pair(size, "size", "(height, width)")
        self.interpolation = _interpolation(interpolation)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(h, w)`` an image of ``height x width`` is resized to."""
        if isinstance(self.size, tuple):
            return self.size
        if height <= width:
            return self.size, int(self.size * width / height)
        return int(self.size * height / width), self.size

    def __call__(self, image: Any) -> Any:
        height, width = image_hw(image, "Resize")
        size = self.output_size(height, width)
        if size == (height, width):
            return image
        return resize_image(image, size, self.interpolation)

    def cache_key(self) -> dict[str, Any]:
        return {"name": "Resize", "size": self.size, "interpolation": self.interpolation}

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, interpolation={self.interpolation!r})"


def pad_image(image: Any, left: int, top: int, right: int, bottom: int) -> Any:
    """``image`` (PIL or tensor ``[..., H, W]``) with that many pixels of 0 added on
    each side (``ImageOps.expand`` for PIL images, as torchvision pads them)."""
    if _is_pil(image):
        from PIL import ImageOps

        return ImageOps.expand(image, border=(left, top, right, bottom), fill=0)
    return F.pad(image, (left, right, top, bottom))


class CenterCrop:
    """Crop the centred ``size = (h, w)`` window (deterministic). The offsets are
    ``round((H - h) / 2)`` and ``round((W - w) / 2)``, halves rounded to even, as
    torchvision's ``CenterCrop`` (so an evaluation matches published pipelines pixel for
    pixel). A window taller or wider than the image is padded with zeros first, as
    torchvision pads: ``(h - H) // 2`` rows above, the rest (one more when odd) below,
    and the same for the columns (left, then right)."""

    random = False

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = int_pair(size, "size", "(height, width)")

    def __call__(self, image: Any) -> Any:
        height, width = image_hw(image, "CenterCrop")
        h, w = self.size
        if h > height or w > width:
            rows, cols = max(h - height, 0), max(w - width, 0)
            image = pad_image(image, cols // 2, rows // 2, (cols + 1) // 2, (rows + 1) // 2)
            height, width = height + rows, width + cols
        top, left = round((height - h) / 2), round((width - w) / 2)
        return crop_image(image, top, left, h, w)

    def cache_key(self) -> dict[str, Any]:
        return {"name": "CenterCrop", "size": self.size}

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class RandomHorizontalFlip(_RandomFrames):
    """Mirror left-right with probability ``p`` (one draw per call)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | int | None = None) -> None:
        self.p = check_real("RandomHorizontalFlip: p", p, 0.0, 1.0)
        super().__init__(generator, p=self.p)

    def __call__(self, image: Any) -> Any:
        image_hw(image, "RandomHorizontalFlip")
        if self._rand() >= self.p:
            return image
        if _is_pil(image):
            return image.transpose(pil_image_module().Transpose.FLIP_LEFT_RIGHT)
        return image.flip(-1)


#: Pillow modes of 8-bit channels, and their channel count.
_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


class ToTensor:
    """A PIL image (mode ``L``, ``LA``, ``RGB`` or ``RGBA``) or a uint8 array ``[H, W]``
    / ``[H, W, C]`` as float32 ``[C, H, W]`` in [0, 1] (value / 255)."""

    random = False

    def __call__(self, image: Any) -> torch.Tensor:
        if _is_pil(image):
            if image.mode not in _MODES:
                raise DTypeError(
                    f"ToTensor takes an image of mode {', '.join(_MODES)}; got mode "
                    f"{image.mode!r} (convert it first, e.g. image.convert('RGB'))"
                )
            array = np.array(image, dtype=np.uint8)
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise DTypeError(f"ToTensor takes a uint8 array [H, W] or [H, W, C]; got "
                                 f"{image.dtype} of shape {image.shape}")  # fmt: skip
            array = image
        else:
            raise DTypeError(f"ToTensor takes a PIL image or a uint8 array; got "
                             f"{type(image).__name__}")  # fmt: skip
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        return tensor.to(torch.float32).div_(255.0)

    def cache_key(self) -> dict[str, Any]:
        return {"name": "ToTensor"}

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """``(x - mean[c]) / std[c]`` for each channel ``c`` of a float tensor
    ``[..., C, H, W]`` (a new tensor; the input is not changed)."""

    random = False

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        mean_t, std_t = tuple(mean), tuple(std)
        if len(mean_t) == 0 or len(mean_t) != len(std_t):
            raise ConfigurationError(f"Normalize: mean and std need one value per channel, "
                                     f"the same count; got {mean!r} and {std!r}")  # fmt: skip
        self.mean = tuple(check_real("Normalize: mean", m) for m in mean_t)
        self.std = tuple(check_real("Normalize: std", s, 0.0, low_open=True) for s in std_t)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise DTypeError(f"Normalize takes a float tensor [..., C, H, W]; got {got}")
        if x.dim() < 3 or x.shape[-3] != len(self.mean):
            raise ShapeError(f"Normalize: {len(self.mean)} channel(s) of mean/std for a tensor "
                             f"of shape {tuple(x.shape)} (expected [..., C, H, W])")  # fmt: skip
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    def cache_key(self) -> dict[str, Any]:
        return {"name": "Normalize", "mean": list(self.mean), "std": list(self.std)}

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def _normalize_steps(mean: Sequence[float] | None, std: Sequence[float] | None) -> list[Any]:
    if (mean is None) != (std is None):
        raise ConfigurationError("mean and std go together: give both, or None for both")
    return [] if mean is None or std is None else [Normalize(mean, std)]


def imagenet_train_transform(
    size: int | Sequence[int] = 224,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    generator: torch.Generator | int | None = None,
    interpolation: str = "bilinear",
) -> Compose:
    """The standard ImageNet training augmentation: :class:`RandomResizedCrop` to
    ``size`` (area 8%-100%, ratio 3/4-4/3, resampled by ``interpolation``: bilinear,
    bicubic or nearest), a horizontal flip with probability 1/2, :class:`ToTensor`, and
    :class:`Normalize` by ``mean``/``std`` (ImageNet's by default; ``None`` for both
    skips it). ``generator`` seeds both random steps (one stream each, derived from
    it)."""
    crop_gen: torch.Generator | int | None = generator
    flip_gen: torch.Generator | int | None = generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        crop_gen, flip_gen = int(generator), int(generator) + 1
    return Compose([RandomResizedCrop(size, interpolation=interpolation, generator=crop_gen),
                    RandomHorizontalFlip(0.5, generator=flip_gen), ToTensor(),
                    *_normalize_steps(mean, std)])  # fmt: skip


def imagenet_eval_transform(
    size: int | Sequence[int] = 224,
    resize: int | None = None,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    interpolation: str = "bilinear",
) -> Compose:
    """The standard ImageNet evaluation: :class:`Resize` of the shorter side to
    ``resize`` (default ``max(size) · 8 // 7``: 256 for 224; at least the crop's
    shorter side; resampled by ``interpolation``), :class:`CenterCrop` to ``size``,
    :class:`ToTensor` and :class:`Normalize` (as :func:`imagenet_train_transform`)."""
    h, w = int_pair(size, "size", "(height, width)")
    shorter = max(h, w) * 8 // 7 if resize is None else resize
    if (
        isinstance(shorter, bool)
        or not isinstance(shorter, numbers.Integral)
        or shorter < min(h, w)
    ):
        raise ConfigurationError(
            f"resize must be an integer >= the crop's shorter side ({min(h, w)}); got {resize!r}"
        )
    return Compose([Resize(int(shorter), interpolation), CenterCrop((h, w)), ToTensor(),
                    *_normalize_steps(mean, std)])  # fmt: skip
