"""The image operations shared by the augmentation policies of
:mod:`spikeflow.data.image_augment` (TrivialAugment-wide) and
:mod:`spikeflow.data.image_autoaugment` (AutoAugment, RandAugment), and their common base.

Each operation is Pillow's own (``ImageOps``, ``ImageEnhance``, ``Image.transform`` /
``Image.rotate``), which is what torchvision runs on PIL images, so a PIL pipeline gets
the same pixels for the same draw. On a PIL image of mode ``L`` or ``RGB``:

- ``ShearX``/``ShearY`` by ``m``: the output pixel ``(x, y)`` takes the input's
  ``(x + m·y, y)`` / ``(x, y + m·x)`` (about the top-left corner);
  ``TranslateX``/``TranslateY`` by ``t`` pixels (truncated to an int): ``(x - t, y)`` /
  ``(x, y - t)``; ``Rotate`` by ``θ`` degrees counter-clockwise about the centre.
  Pixels from outside the image are ``fill``; resampling is ``interpolation``.
- ``Brightness``, ``Color``, ``Contrast``, ``Sharpness``: ``ImageEnhance`` with the
  factor ``1 + m``.
- ``Posterize``: keep the top ``int(m)`` bits; ``Solarize``: invert the levels >= the
  threshold ``m``; ``AutoContrast``, ``Equalize``, ``Invert``: ``ImageOps``' (per
  channel); ``Identity``: the image itself.

A policy's magnitude bins are evenly spaced float32 values (``torch.linspace``, as
torchvision's tables are), so a bin's value, and the pixels, agree bit for bit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from spikeflow.data.frame_transforms import _RandomFrames
from spikeflow.data.image_transforms import (
    INTERPOLATIONS,
    _is_pil,
    pil_filter,
    pil_image_module,
)
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["IMAGE_OPERATIONS", "apply_image_operation", "bin_value"]

#: Every operation :func:`apply_image_operation` knows.
IMAGE_OPERATIONS: tuple[str, ...] = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
    "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
    "Invert",
)  # fmt: skip

_PIL_MODES = {"L": 1, "RGB": 3}
_ENHANCERS = ("Brightness", "Color", "Contrast", "Sharpness")


def bin_value(low: float, high: float, bins: int, index: int) -> float:
    """Bin ``index`` of ``bins`` evenly spaced float32 values from ``low`` to ``high``."""
    return float(torch.linspace(low, high, bins, dtype=torch.float32)[index])


def posterize_bits(span: int, bins: int, index: int) -> int:
    """The bits Posterize keeps in bin ``index``: ``8 - round(index · span / (bins - 1))``
    (8 down to ``8 - span``; ties to even)."""
    return 8 - round(index / ((bins - 1) / span))


def _shear_factor(m: float, vertical: bool) -> float:
    """The shear factor ``m`` as torchvision's affine computes it from the shear angle
    ``atan(m)`` given in degrees: ``tan`` of it (x), ``sin / cos`` of it (y). It differs
    from ``m`` in the last bits, enough to move a bilinear level by one."""
    angle = math.radians(math.degrees(math.atan(m)))
    return math.sin(angle) / math.cos(angle) if vertical else math.tan(angle)


def _check_interpolation(interpolation: Any, owner: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise ConfigurationError(f"{owner}: interpolation must be 'nearest', 'bilinear' or "
                                 f"'bicubic'; got {interpolation!r}")  # fmt: skip
    return str(interpolation)


def _fill_levels(fill: Any, owner: str) -> tuple[int, ...]:
    values = (fill,) if isinstance(fill, numbers.Real) else fill
    ok = isinstance(values, Sequence | np.ndarray) and not isinstance(values, str)
    if (
        not ok
        or len(values) == 0
        or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v <= 255
            for v in values
        )
    ):
        raise ConfigurationError(
            f"{owner}: fill must be a grey level 0..255 or one per channel; got {fill!r}"
        )
    return tuple(int(v) for v in values)


def apply_image_operation(
    image: Any,
    op: str,
    magnitude: float,
    interpolation: str = "nearest",
    fill: int | Sequence[int] = 0,
    owner: str = "apply_image_operation",
) -> Any:
    """``op`` (one of :data:`IMAGE_OPERATIONS`, see the module docstring) at the signed
    ``magnitude`` on a PIL image of mode ``L`` or ``RGB``; ``interpolation``
    (``"nearest"``, ``"bilinear"`` or ``"bicubic"``: Pillow's filter) and ``fill`` (a grey
    level 0..255, or one per channel) for the geometric ones.

    Raises:
        ConfigurationError: an unknown ``op`` or ``interpolation``, or ``fill`` not grey
            levels or of another channel count.
        DTypeError: ``image`` not a PIL image of mode ``L`` or ``RGB``.
    """
    pil = pil_image_module(owner)
    from PIL import ImageEnhance, ImageOps

    if op not in IMAGE_OPERATIONS:
        raise ConfigurationError(f"{owner}: unknown operation {op!r}; the operations are "
                                 f"{', '.join(IMAGE_OPERATIONS)}")  # fmt: skip
    if not _is_pil(image) or image.mode not in _PIL_MODES:
        got = f"mode {image.mode!r}" if _is_pil(image) else type(image).__name__
        raise DTypeError(f"{owner} takes a PIL image of mode L or RGB; got {got}")
    _check_interpolation(interpolation, owner)
    fill = _fill_levels(fill, owner)
    channels = _PIL_MODES[image.mode]
    if len(fill) not in (1, channels):
        raise ConfigurationError(f"{owner}: fill has {len(fill)} values for an image of "
                                 f"{channels} channel(s)")  # fmt: skip
    levels = tuple(fill) * channels if len(fill) == 1 else tuple(fill)
    fillcolor: int | tuple[int, ...] = levels[0] if channels == 1 else levels
    resample = pil_filter(pil, interpolation)
    m = magnitude
    # Pillow's affine data: the input point (a·x + b·y + c, d·x + e·y + f) of each output
    # point (x, y).
    affine = {
        "ShearX": (1.0, _shear_factor(m, vertical=False), 0.0, 0.0, 1.0, 0.0),
        "ShearY": (1.0, 0.0, 0.0, _shear_factor(m, vertical=True), 1.0, 0.0),
        "TranslateX": (1.0, 0.0, -float(int(m)), 0.0, 1.0, 0.0),
        "TranslateY": (1.0, 0.0, 0.0, 0.0, 1.0, -float(int(m))),
    }
    if op in affine:
        return image.transform(image.size, pil.Transform.AFFINE, affine[op], resample,
                               fillcolor=fillcolor)  # fmt: skip
    if op == "Rotate":
        return image.rotate(m, resample, fillcolor=fillcolor)
    if op in _ENHANCERS:
        return getattr(ImageEnhance, op)(image).enhance(1.0 + m)
    if op == "Posterize":
        return ImageOps.posterize(image, int(m))
    if op == "Solarize":
        return ImageOps.solarize(image, m)
    if op == "AutoContrast":
        return ImageOps.autocontrast(image)
    if op == "Equalize":
        return ImageOps.equalize(image)
    if op == "Invert":
        return ImageOps.invert(image)
    return image  # Identity


class PillowPolicy(_RandomFrames):
    """The base of the augmentation policies: the ``interpolation`` and ``fill``
    checks, :meth:`apply`, and a call on a PIL image or a tensor. A subclass sets
    :attr:`ops` and implements :meth:`augment` (its draws, then its operations on a PIL
    image).

    Input: a PIL image of mode ``L`` or ``RGB`` (returns one), or a tensor ``[C, H, W]``
    with C = 1 or 3, uint8 or float in [0, 1] (rounded to 256 levels; returned in its
    dtype; a float tensor outside [0, 1], a normalised one say, is refused).
    """

    #: The operations the policy draws from (:meth:`apply` refuses others).
    ops: ClassVar[tuple[str, ...]] = IMAGE_OPERATIONS

    def __init__(
        self,
        interpolation: str,
        fill: int | Sequence[int],
        generator: torch.Generator | int | None,
        **params: Any,
    ) -> None:
        owner = type(self).__name__
        self.interpolation = _check_interpolation(interpolation, owner)
        self.fill = _fill_levels(fill, owner)
        super().__init__(generator, **params, interpolation=interpolation, fill=self.fill)

    def apply(self, image: Any, op: str, magnitude: float) -> Any:
        """``op`` at ``magnitude`` on a PIL image of mode ``L`` or ``RGB``."""
        owner = type(self).__name__
        if op not in self.ops:
            raise ConfigurationError(f"{owner}: unknown operation {op!r}; the operations are "
                                     f"{', '.join(self.ops)}")  # fmt: skip
        return apply_image_operation(image, op, magnitude, self.interpolation, self.fill, owner)

    def augment(self, image: Any) -> Any:  # pragma: no cover
        """One random augmentation of a PIL image (mode ``L`` or ``RGB``)."""
        raise NotImplementedError

    def __call__(self, image: Any) -> Any:
        if _is_pil(image):
            if image.mode not in _PIL_MODES:
                raise DTypeError(f"{type(self).__name__} takes a PIL image of mode L or RGB; "
                                 f"got mode {image.mode!r}")  # fmt: skip
            self._check_fill(image)
            return self.augment(image)
        pil_input, restore = _tensor_to_pil(image, type(self).__name__)
        self._check_fill(pil_input)
        return restore(self.augment(pil_input))

    def _check_fill(self, image: Any) -> None:
        """``fill`` fits the image's channels: checked on every call, not only when a
        geometric operation happens to be drawn."""
        channels = _PIL_MODES[image.mode]
        if len(self.fill) not in (1, channels):
            raise ConfigurationError(f"{type(self).__name__}: fill has {len(self.fill)} values "
                                     f"for an image of {channels} channel(s)")  # fmt: skip


def _check_unit_range(x: torch.Tensor, owner: str) -> None:
    """A float image must be in [0, 1] (up to half a level of 255: rounding noise), or
    256 levels would clip it silently (a normalised image, say)."""
    if x.numel() == 0:
        return
    low, high = (float(v) for v in torch.aminmax(x.detach().float()))
    slack = 0.5 / 255.0
    if not (math.isfinite(low) and math.isfinite(high)) or low < -slack or high > 1 + slack:
        raise ConfigurationError(
            f"{owner} takes a float tensor in [0, 1] (it works on its 256 levels); got values "
            f"in [{low:.4g}, {high:.4g}]: apply it before Normalize, or give uint8 levels"
        )


def _tensor_to_pil(x: Any, owner: str) -> tuple[Any, Any]:
    """A tensor ``[C, H, W]`` (C = 1 or 3; uint8, or float in [0, 1]) as a PIL image, and
    the function that turns a PIL result back into a tensor of ``x``'s dtype."""
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"{owner} takes a PIL image or a tensor [C, H, W]; got "
                         f"{type(x).__name__}")  # fmt: skip
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ShapeError(f"{owner} takes a tensor [C, H, W] with C = 1 or 3; got "
                         f"shape {tuple(x.shape)}")  # fmt: skip
    if x.dtype == torch.uint8:
        levels = x
    elif x.is_floating_point():
        _check_unit_range(x, owner)
        levels = (x.detach() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    else:
        raise DTypeError(f"{owner} takes a uint8 or float tensor; got {x.dtype}")
    pil = pil_image_module(owner)
    array = levels.cpu().numpy()
    image = pil.fromarray(
        array[0] if x.shape[0] == 1 else np.ascontiguousarray(array.transpose(1, 2, 0))
    )

    def restore(result: Any) -> torch.Tensor:
        out = np.array(result, dtype=np.uint8)  # a writable copy
        out = out[None] if out.ndim == 2 else out.transpose(2, 0, 1)
        tensor = torch.from_numpy(np.ascontiguousarray(out)).to(x.device)
        return tensor if x.dtype == torch.uint8 else tensor.to(x.dtype).div_(255.0)

    return image, restore
