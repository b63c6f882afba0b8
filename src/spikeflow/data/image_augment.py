"""Image augmentations of the modern CIFAR / ImageNet recipes, without torchvision:
:class:`TrivialAugmentWide` and :class:`RandomErasing`.

:class:`TrivialAugmentWide` (Müller & Hutter, ICCV 2021) applies one operation drawn
uniformly from 14, at a strength drawn uniformly from 31 bins of its "wide" range (the
op set and ranges of torchvision's ``TrivialAugmentWide``). The operations are Pillow's
own (``ImageOps``, ``ImageEnhance``, ``Image.transform``/``Image.rotate``), which is what
torchvision runs on PIL images, so a PIL pipeline gets the same pixels for the same
draw; they live in :mod:`spikeflow.data.image_augment_ops`, shared with AutoAugment and
RandAugment (:mod:`spikeflow.data.image_autoaugment`). Tensors ``[C, H, W]`` (uint8, or
float in [0, 1]) are converted to a PIL image and back. :class:`RandomErasing` (Zhong
et al., AAAI 2020) overwrites a random box of a tensor image with probability ``p``.

``generator``: as in :mod:`spikeflow.data.image_transforms` (a ``torch.Generator`` or an
int seed gives a reproducible stream held by the transform, derived per DataLoader
worker; ``None`` uses PyTorch's global generator). Pillow is the optional extra
``images``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from spikeflow._checks import check_real
from spikeflow.data.frame_transforms import _RandomFrames
from spikeflow.data.image_augment_ops import PillowPolicy, bin_value, posterize_bits
from spikeflow.data.image_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _check_sequence_pair,
)
from spikeflow.data.transforms import Compose
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "TRIVIAL_AUGMENT_WIDE_OPS",
    "RandomErasing",
    "TrivialAugmentWide",
    "imagenet_trivial_augment_transform",
]

#: TrivialAugment-wide's operations: ``name -> (largest magnitude, signed)``. The 31
#: bins of a signed op are ``linspace(0, largest, 31)``, negated with probability 1/2;
#: ``Posterize`` keeps ``8 - round(k / 5)`` bits (8 down to 2) and ``Solarize`` has the
#: threshold ``linspace(255, 0, 31)[k]``; ``None``: no magnitude.
TRIVIAL_AUGMENT_WIDE_OPS: dict[str, tuple[float | None, bool]] = {
    "Identity": (None, False),
    "ShearX": (0.99, True),  # the shear factor (tangent of the angle)
    "ShearY": (0.99, True),
    "TranslateX": (32.0, True),  # pixels, truncated to an int
    "TranslateY": (32.0, True),
    "Rotate": (135.0, True),  # degrees, counter-clockwise
    "Brightness": (0.99, True),  # enhance factor 1 + magnitude
    "Color": (0.99, True),
    "Contrast": (0.99, True),
    "Sharpness": (0.99, True),
    "Posterize": (6.0, False),
    "Solarize": (255.0, False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}


class TrivialAugmentWide(PillowPolicy):
    """TrivialAugment, wide ranges: per call, one operation of
    :data:`TRIVIAL_AUGMENT_WIDE_OPS` drawn uniformly, then (if it has one) a magnitude
    bin ``k`` uniform in ``0..num_magnitude_bins-1``, then (signed ops) the sign, minus
    with probability 1/2; draws in torchvision's order. The operations are those of
    :mod:`spikeflow.data.image_augment_ops` (Pillow's, described there).

    Args:
        num_magnitude_bins: the number of strengths (31, the paper's).
        interpolation: ``"nearest"`` (default, torchvision's), ``"bilinear"`` or
            ``"bicubic"``.
        fill: the grey level (0..255) of pixels moved in from outside, or one per
            channel (default 0).
        generator: see the module docstring.

    Input: a PIL image (returns one), or a tensor ``[C, H, W]`` with C = 1 or 3, uint8
    or float in [0, 1] (rounded to 256 levels; returned in its dtype).
    """

    ops: ClassVar[tuple[str, ...]] = tuple(TRIVIAL_AUGMENT_WIDE_OPS)

    def __init__(
        self,
        num_magnitude_bins: int = 31,
        interpolation: str = "nearest",
        fill: int | Sequence[int] = 0,
        generator: torch.Generator | int | None = None,
    ) -> None:
        if (
            isinstance(num_magnitude_bins, bool)
            or not isinstance(num_magnitude_bins, numbers.Integral)
            or num_magnitude_bins < 2
        ):
            raise ConfigurationError(
                f"TrivialAugmentWide: num_magnitude_bins must be an int >= 2; "
                f"got {num_magnitude_bins!r}"
            )
        self.num_magnitude_bins = int(num_magnitude_bins)
        super().__init__(interpolation, fill, generator,
                         num_magnitude_bins=self.num_magnitude_bins)  # fmt: skip

    def magnitude(self, op: str, bin_index: int) -> float:
        """The (unsigned) magnitude of ``op`` in bin ``bin_index``."""
        largest, _ = TRIVIAL_AUGMENT_WIDE_OPS[op]
        if largest is None:
            return 0.0
        bins = self.num_magnitude_bins
        if op == "Posterize":
            return float(posterize_bits(int(largest), bins, bin_index))
        if op == "Solarize":
            return bin_value(largest, 0.0, bins, bin_index)
        return bin_value(0.0, largest, bins, bin_index)

    def get_params(self) -> tuple[str, float]:
        """One draw: ``(operation, signed magnitude)``."""
        op = self.ops[self._randint(len(self.ops))]
        largest, signed = TRIVIAL_AUGMENT_WIDE_OPS[op]
        if largest is None:
            return op, 0.0
        value = self.magnitude(op, self._randint(self.num_magnitude_bins))
        if signed and self._randint(2):
            value = -value
        return op, value

    def augment(self, image: Any) -> Any:
        """One draw (:meth:`get_params`) applied to a PIL image."""
        op, value = self.get_params()
        return self.apply(image, op, value)


class RandomErasing(_RandomFrames):
    """With probability ``p``, overwrite a random box of a tensor image ``[..., C, H, W]``
    (every leading index gets the same box) with ``value``.

    The box: up to 10 attempts, each drawing an area ``s·H·W`` with ``s ~ U(scale)`` and
    an aspect ratio ``r = exp(U(log ratio))`` (height / width), giving
    ``h = round(sqrt(s·H·W·r))``, ``w = round(sqrt(s·H·W/r))``; the first with ``h < H``
    and ``w < W`` is placed at a uniform random position. If none fits, the image is
    returned unchanged. A new tensor is returned; the input is not changed.

    Args:
        p: the probability of erasing.
        scale: the range of the box's area as a fraction of the image's.
        ratio: the range of its aspect ratio.
        value: the fill: a number, one per channel, or ``"random"`` (standard normal
            noise from the generator, per pixel).
        generator: see the module docstring.
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: Sequence[float] = (0.02, 0.33),
        ratio: Sequence[float] = (0.3, 3.3),
        value: float | Sequence[float] | str = 0.0,
        generator: torch.Generator | int | None = None,
    ) -> None:
        self.p = check_real("RandomErasing: p", p, 0.0, 1.0)
        self.scale = _check_sequence_pair(scale, "RandomErasing: scale", positive=False)
        if self.scale[1] > 1.0:
            raise ConfigurationError(f"RandomErasing: scale must lie in [0, 1]; got {scale!r}")
        self.ratio = _check_sequence_pair(ratio, "RandomErasing: ratio", positive=True)
        if isinstance(value, str):
            if value != "random":
                raise ConfigurationError(f"RandomErasing: value must be a number, one per "
                                         f"channel, or 'random'; got {value!r}")  # fmt: skip
            self.value: float | tuple[float, ...] | str = value
        elif isinstance(value, numbers.Real):
            self.value = check_real("RandomErasing: value", value)
        else:
            values = tuple(value)
            if not values:
                raise ConfigurationError("RandomErasing: value needs at least one channel")
            self.value = tuple(check_real("RandomErasing: value", v) for v in values)
        super().__init__(generator, p=self.p, scale=self.scale, ratio=self.ratio,
                         value=self.value)  # fmt: skip

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._rand()

    def get_params(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """A random box ``(top, left, h, w)`` of an image of ``height x width``, or
        ``None`` when no attempt fits."""
        area = height * width
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * self._uniform(*self.scale)
            aspect = math.exp(self._uniform(log_low, log_high))
            h = round(math.sqrt(target * aspect))
            w = round(math.sqrt(target / aspect))
            if h < height and w < width:
                return self._randint(height - h + 1), self._randint(width - w + 1), h, w
        return None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 3:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"RandomErasing takes a tensor [..., C, H, W]; got {got}")
        if not x.is_floating_point() and self.value == "random":
            raise DTypeError(f"RandomErasing: value='random' needs a float tensor; got {x.dtype}")
        channels = x.shape[-3]
        if isinstance(self.value, tuple) and len(self.value) not in (1, channels):
            raise ShapeError(f"RandomErasing: value has {len(self.value)} entries for "
                             f"{channels} channel(s)")  # fmt: skip
        if self._rand() >= self.p:
            return x
        box = self.get_params(int(x.shape[-2]), int(x.shape[-1]))
        if box is None:
            return x
        top, left, h, w = box
        if self.value == "random":
            patch = torch.randn((channels, h, w), generator=self._stream()).to(x.dtype)
        else:
            fill = self.value if isinstance(self.value, tuple) else (self.value,)
            patch = torch.tensor(fill, dtype=x.dtype).view(-1, 1, 1).expand(channels, h, w)
        out = x.clone()
        out[..., top : top + h, left : left + w] = patch.to(x.device)
        return out


def imagenet_trivial_augment_transform(
    size: int | Sequence[int] = 224,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    erasing: float = 0.1,
    generator: torch.Generator | int | None = None,
) -> Compose:
    """The standard ImageNet training augmentation with TrivialAugment-wide and random
    erasing (torchvision's reference recipe, ``--auto-augment ta_wide --random-erase
    0.1``; what ``augment="psn"`` of the image folders gives, as CIFAR's adds both to its
    crop and flip): :class:`~spikeflow.data.image_transforms.RandomResizedCrop` to
    ``size``, a horizontal flip with probability 1/2, :class:`TrivialAugmentWide`
    (bilinear, fill 0) on the PIL image, ``ToTensor``, ``Normalize`` by ``mean``/``std``
    (``None`` for both skips it), then :class:`RandomErasing` with probability
    ``erasing`` (fill 0: the mean colour once normalised). ``generator`` seeds the four
    random steps (one stream each, derived from it)."""
    from spikeflow.data.image_autoaugment import imagenet_policy_transform

    erasing = check_real("imagenet_trivial_augment_transform: erasing", erasing, 0.0, 1.0)
    return imagenet_policy_transform(size, "ta_wide", mean, std, erasing, generator)
