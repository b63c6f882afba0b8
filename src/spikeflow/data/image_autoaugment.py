"""AutoAugment's learned policies and RandAugment, without torchvision, on the
operations of :mod:`spikeflow.data.image_augment_ops` (Pillow's, those of
:class:`~spikeflow.data.image_augment.TrivialAugmentWide` plus ``Invert``).

- :class:`AutoAugment` (Cubuk et al., CVPR 2019): the 25 sub-policies learned on
  ImageNet, CIFAR-10 or SVHN (:data:`AUTO_AUGMENT_POLICIES`); per image one sub-policy
  drawn uniformly, whose two operations each run with their probability at their
  magnitude bin (0..9).
- :class:`RandAugment` (Cubuk et al., CVPR-W 2020): ``num_ops`` operations drawn
  uniformly from the 14 of TrivialAugment-wide, all at bin ``magnitude`` of
  ``num_magnitude_bins``.

Both use the magnitude ranges of these papers as torchvision tabulates them
(:func:`policy_magnitude`) and draw in torchvision's order, so with the same random
stream and a PIL image they give torchvision 0.28's pixels. :func:`augment_policy_transform`
builds one of ``spikeflow train --auto-augment``'s five names
(:data:`AUTO_AUGMENT_NAMES`). ``generator``: as in :mod:`spikeflow.data.image_augment`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from spikeflow._checks import check_int, check_real
from spikeflow.data.image_augment import (
    TRIVIAL_AUGMENT_WIDE_OPS,
    RandomErasing,
    TrivialAugmentWide,
)
from spikeflow.data.image_augment_ops import PillowPolicy, bin_value, posterize_bits
from spikeflow.data.image_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ToTensor,
    _normalize_steps,
)
from spikeflow.data.transforms import Compose
from spikeflow.errors import ConfigurationError

__all__ = [
    "AUTO_AUGMENT_NAMES",
    "AUTO_AUGMENT_POLICIES",
    "AutoAugment",
    "RandAugment",
    "augment_policy_transform",
    "imagenet_policy_transform",
    "policy_magnitude",
]

#: One operation of a sub-policy: ``(operation, probability, magnitude bin 0..9 or None)``.
Step = tuple[str, float, int | None]

# The sub-policies of Cubuk et al. 2019 (appendix tables), one per line: two steps of
# "operation probability bin" ("-": no magnitude).
_TABLES = {
    "imagenet": """
        Posterize 0.4 8   Rotate 0.6 9      | Solarize 0.6 5   AutoContrast 0.6 -
        Equalize 0.8 -    Equalize 0.6 -    | Posterize 0.6 7  Posterize 0.6 6
        Equalize 0.4 -    Solarize 0.2 4    | Equalize 0.4 -   Rotate 0.8 8
        Solarize 0.6 3    Equalize 0.6 -    | Posterize 0.8 5  Equalize 1.0 -
        Rotate 0.2 3      Solarize 0.6 8    | Equalize 0.6 -   Posterize 0.4 6
        Rotate 0.8 8      Color 0.4 0       | Rotate 0.4 9     Equalize 0.6 -
        Equalize 0.0 -    Equalize 0.8 -    | Invert 0.6 -     Equalize 1.0 -
        Color 0.6 4       Contrast 1.0 8    | Rotate 0.8 8     Color 1.0 2
        Color 0.8 8       Solarize 0.8 7    | Sharpness 0.4 7  Invert 0.6 -
        ShearX 0.6 5      Equalize 1.0 -    | Color 0.4 0      Equalize 0.6 -
        Equalize 0.4 -    Solarize 0.2 4    | Solarize 0.6 5   AutoContrast 0.6 -
        Invert 0.6 -      Equalize 1.0 -    | Color 0.6 4      Contrast 1.0 8
        Equalize 0.8 -    Equalize 0.6 -
    """,
    "cifar10": """
        Invert 0.1 -        Contrast 0.2 6      | Rotate 0.7 2        TranslateX 0.3 9
        Sharpness 0.8 1     Sharpness 0.9 3     | ShearY 0.5 8        TranslateY 0.7 9
        AutoContrast 0.5 -  Equalize 0.9 -      | ShearY 0.2 7        Posterize 0.3 7
        Color 0.4 3         Brightness 0.6 7    | Sharpness 0.3 9     Brightness 0.7 9
        Equalize 0.6 -      Equalize 0.5 -      | Contrast 0.6 7      Sharpness 0.6 5
        Color 0.7 7         TranslateX 0.5 8    | Equalize 0.3 -      AutoContrast 0.4 -
        TranslateY 0.4 3    Sharpness 0.2 6     | Brightness 0.9 6    Color 0.2 8
        Solarize 0.5 2      Invert 0.0 -        | Equalize 0.2 -      AutoContrast 0.6 -
        Equalize 0.2 -      Equalize 0.6 -      | Color 0.9 9         Equalize 0.6 -
        AutoContrast 0.8 -  Solarize 0.2 8      | Brightness 0.1 3    Color 0.7 0
        Solarize 0.4 5      AutoContrast 0.9 -  | TranslateY 0.9 9    TranslateY 0.7 9
        AutoContrast 0.9 -  Solarize 0.8 3      | Equalize 0.8 -      Invert 0.1 -
        TranslateY 0.7 9    AutoContrast 0.9 -
    """,
    "svhn": """
        ShearX 0.9 4      Invert 0.2 -        | ShearY 0.9 8      Invert 0.7 -
        Equalize 0.6 -    Solarize 0.6 6      | Invert 0.9 -      Equalize 0.6 -
        Equalize 0.6 -    Rotate 0.9 3        | ShearX 0.9 4      AutoContrast 0.8 -
        ShearY 0.9 8      Invert 0.4 -        | ShearY 0.9 5      Solarize 0.2 6
        Invert 0.9 -      AutoContrast 0.8 -  | Equalize 0.6 -    Rotate 0.9 3
        ShearX 0.9 4      Solarize 0.3 3      | ShearY 0.8 8      Invert 0.7 -
        Equalize 0.9 -    TranslateY 0.6 6    | Invert 0.9 -      Equalize 0.6 -
        Contrast 0.3 3    Rotate 0.8 4        | Invert 0.8 -      TranslateY 0.0 2
        ShearY 0.7 6      Solarize 0.4 8      | Invert 0.6 -      Rotate 0.8 4
        ShearY 0.3 7      TranslateX 0.9 3    | ShearX 0.1 6      Invert 0.6 -
        Solarize 0.7 2    TranslateY 0.6 7    | ShearY 0.8 4      Invert 0.8 -
        ShearX 0.7 9      TranslateY 0.8 3    | ShearY 0.8 5      AutoContrast 0.7 -
        ShearX 0.7 2      Invert 0.1 -
    """,
}


def _parse(table: str) -> tuple[tuple[Step, Step], ...]:
    """The sub-policies of one of :data:`_TABLES`, in reading order (left, then right)."""
    policies = []
    for line in table.strip().splitlines():
        for half in line.split("|"):
            words = half.split()
            steps = [
                (words[i], float(words[i + 1]), None if words[i + 2] == "-" else int(words[i + 2]))
                for i in (0, 3)
            ]
            policies.append((steps[0], steps[1]))
    return tuple(policies)


#: AutoAugment's learned policies: ``name -> 25 sub-policies``, each two steps
#: ``(operation, probability, magnitude bin 0..9 or None)``.
AUTO_AUGMENT_POLICIES: dict[str, tuple[tuple[Step, Step], ...]] = {
    name: _parse(table) for name, table in _TABLES.items()
}

#: ``spikeflow train --auto-augment``'s names: RandAugment, TrivialAugment-wide, and
#: AutoAugment's three policies.
AUTO_AUGMENT_NAMES: tuple[str, ...] = ("ra", "ta_wide", *AUTO_AUGMENT_POLICIES)

#: The operations of AutoAugment and RandAugment: ``name -> (range, signed)``. ``range``
#: is the largest magnitude (bin ``bins - 1``; the bins are evenly spaced from 0);
#: ``"width"`` / ``"height"``: ``150/331`` of the image's side (a 150-pixel shift of a
#: 331-pixel image); ``Posterize`` keeps 8 down to 4 bits, ``Solarize`` has the threshold
#: 255 down to 0; ``None``: no magnitude.
POLICY_OPS: dict[str, tuple[float | str | None, bool]] = {
    "Identity": (None, False),
    "ShearX": (0.3, True),
    "ShearY": (0.3, True),
    "TranslateX": ("width", True),
    "TranslateY": ("height", True),
    "Rotate": (30.0, True),
    "Brightness": (0.9, True),
    "Color": (0.9, True),
    "Contrast": (0.9, True),
    "Sharpness": (0.9, True),
    "Posterize": (4.0, False),
    "Solarize": (255.0, False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
    "Invert": (None, False),
}


def policy_magnitude(op: str, bin_index: int, bins: int, size: tuple[int, int]) -> float:
    """The (unsigned) magnitude of AutoAugment's / RandAugment's ``op`` (a name of
    :data:`POLICY_OPS`) in bin ``bin_index`` of ``bins``, for an image of ``size =
    (width, height)`` (PIL's order)."""
    largest, _ = POLICY_OPS[op]
    if largest is None:
        return 0.0
    if op == "Posterize":
        return float(posterize_bits(4, bins, bin_index))
    if op == "Solarize":
        return bin_value(255.0, 0.0, bins, bin_index)
    if isinstance(largest, str):
        side = size[0] if largest == "width" else size[1]
        largest = 150.0 / 331.0 * side
    return bin_value(0.0, largest, bins, bin_index)


class _DrawnOperations(PillowPolicy):
    """A policy whose :meth:`get_params` draws ``(operation, signed magnitude)`` pairs for
    an image's ``(width, height)``, applied in turn."""

    def get_params(self, size: tuple[int, int]) -> list[tuple[str, float]]:  # pragma: no cover
        raise NotImplementedError

    def augment(self, image: Any) -> Any:
        """One draw (:meth:`get_params`) applied to a PIL image."""
        for op, value in self.get_params(image.size):
            image = self.apply(image, op, value)
        return image


class AutoAugment(_DrawnOperations):
    """AutoAugment with one of its learned policies (:data:`AUTO_AUGMENT_POLICIES`).

    Per call, in torchvision's order: a sub-policy index uniform in ``0..24``, two
    uniforms ``u`` in [0, 1) and two signs; step ``i`` runs when ``u[i] <= p``, at the
    magnitude of its bin (:func:`policy_magnitude`, 10 bins), negated when its sign draw
    is 0 (signed ops).

    Args:
        policy: ``"imagenet"`` (default), ``"cifar10"`` or ``"svhn"``.
        interpolation: ``"nearest"`` (default, torchvision's), ``"bilinear"`` or
            ``"bicubic"``.
        fill: the grey level (0..255) of pixels moved in from outside, or one per
            channel (default 0).
        generator: see the module docstring.

    Input: as :class:`~spikeflow.data.image_augment.TrivialAugmentWide`'s (a PIL image
    of mode L or RGB, or a tensor ``[C, H, W]``, uint8 or float in [0, 1]).
    """

    ops: ClassVar[tuple[str, ...]] = tuple(POLICY_OPS)
    #: The magnitude bins of the learned policies.
    bins: ClassVar[int] = 10

    def __init__(
        self,
        policy: str = "imagenet",
        interpolation: str = "nearest",
        fill: int | Sequence[int] = 0,
        generator: torch.Generator | int | None = None,
    ) -> None:
        if not isinstance(policy, str) or policy not in AUTO_AUGMENT_POLICIES:
            names = ", ".join(repr(n) for n in AUTO_AUGMENT_POLICIES)
            raise ConfigurationError(f"AutoAugment: policy must be one of {names}; got {policy!r}")
        self.policy = policy
        self.policies = AUTO_AUGMENT_POLICIES[policy]
        super().__init__(interpolation, fill, generator, policy=policy)

    def get_params(self, size: tuple[int, int]) -> list[tuple[str, float]]:
        """One draw for an image of ``size = (width, height)``: the ``(operation, signed
        magnitude)`` of each step that runs, in order."""
        # One at a time: the same numbers as torchvision's rand((2,)) and randint(2, (2,)).
        index = self._randint(len(self.policies))
        uniforms = [self._rand(), self._rand()]
        signs = [self._randint(2), self._randint(2)]
        chosen = []
        for (op, p, bin_index), u, sign in zip(self.policies[index], uniforms, signs):
            if u > p:
                continue
            value = 0.0
            if bin_index is not None:
                value = policy_magnitude(op, bin_index, self.bins, size)
            if POLICY_OPS[op][1] and sign == 0:
                value = -value
            chosen.append((op, value))
        return chosen


class RandAugment(_DrawnOperations):
    """RandAugment: per call, ``num_ops`` times in turn, an operation drawn uniformly
    from the 14 of TrivialAugment-wide (:data:`POLICY_OPS` less ``Invert``) at bin
    ``magnitude`` of ``num_magnitude_bins`` (:func:`policy_magnitude`), then (signed ops)
    its sign, minus with probability 1/2; torchvision's draws.

    Args:
        num_ops: the operations per image (2, the paper's ImageNet setting).
        magnitude: the bin, ``0..num_magnitude_bins - 1`` (9; torchvision's default).
        num_magnitude_bins: the number of bins spanning each range (31).
        interpolation: ``"nearest"`` (default, torchvision's), ``"bilinear"`` or
            ``"bicubic"``.
        fill: the grey level (0..255) of pixels moved in from outside, or one per
            channel (default 0).
        generator: see the module docstring.
    """

    ops: ClassVar[tuple[str, ...]] = tuple(TRIVIAL_AUGMENT_WIDE_OPS)

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        interpolation: str = "nearest",
        fill: int | Sequence[int] = 0,
        generator: torch.Generator | int | None = None,
    ) -> None:
        self.num_ops = check_int("RandAugment: num_ops", num_ops, 0)
        bins = check_int("RandAugment: num_magnitude_bins", num_magnitude_bins, 2)
        self.num_magnitude_bins = bins
        self.magnitude = check_int("RandAugment: magnitude", magnitude, 0, bins - 1)
        super().__init__(interpolation, fill, generator, num_ops=self.num_ops,
                         magnitude=self.magnitude, num_magnitude_bins=bins)  # fmt: skip

    def get_params(self, size: tuple[int, int]) -> list[tuple[str, float]]:
        """One draw for an image of ``size = (width, height)``: ``num_ops`` pairs
        ``(operation, signed magnitude)``."""
        chosen = []
        for _ in range(self.num_ops):
            op = self.ops[self._randint(len(self.ops))]
            value = policy_magnitude(op, self.magnitude, self.num_magnitude_bins, size)
            if POLICY_OPS[op][1] and self._randint(2):
                value = -value
            chosen.append((op, value))
        return chosen


def augment_policy_transform(
    name: str,
    interpolation: str = "nearest",
    fill: int | Sequence[int] = 0,
    generator: torch.Generator | int | None = None,
) -> PillowPolicy:
    """The policy ``name`` of :data:`AUTO_AUGMENT_NAMES` (the reference recipes'
    ``--auto-augment``): ``"ra"`` :class:`RandAugment` (2 operations at bin 9 of 31),
    ``"ta_wide"`` :class:`~spikeflow.data.image_augment.TrivialAugmentWide`, or
    ``"imagenet"``, ``"cifar10"``, ``"svhn"``: :class:`AutoAugment` with that policy.

    Raises:
        ConfigurationError: another name (the message lists them).
    """
    if name == "ra":
        return RandAugment(interpolation=interpolation, fill=fill, generator=generator)
    if name == "ta_wide":
        return TrivialAugmentWide(interpolation=interpolation, fill=fill, generator=generator)
    if isinstance(name, str) and name in AUTO_AUGMENT_POLICIES:
        return AutoAugment(name, interpolation=interpolation, fill=fill, generator=generator)
    names = ", ".join(repr(n) for n in AUTO_AUGMENT_NAMES)
    raise ConfigurationError(f"auto_augment must be one of {names}; got {name!r}")


def imagenet_policy_transform(
    size: int | Sequence[int] = 224,
    policy: str = "ta_wide",
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    erasing: float = 0.0,
    generator: torch.Generator | int | None = None,
    interpolation: str = "bilinear",
) -> Compose:
    """The reference recipes' ImageNet training pipeline with an augmentation policy
    (torchvision's and SpikingJelly's ``--auto-augment POLICY --random-erase P``), in
    their order: :class:`~spikeflow.data.image_transforms.RandomResizedCrop` to ``size``
    (resampled by ``interpolation``: bilinear, bicubic or nearest), a horizontal flip
    with probability 1/2, the ``policy`` of :data:`AUTO_AUGMENT_NAMES`
    (:func:`augment_policy_transform`; fill 0, resampled by ``interpolation`` too, as
    the recipe passes its ``--interpolation`` to it) on the PIL image, ``ToTensor``,
    ``Normalize`` by ``mean``/``std`` (``None`` for both skips it), then, for ``erasing``
    > 0, :class:`~spikeflow.data.image_augment.RandomErasing` with that probability (fill
    0: the mean colour once normalised). ``generator`` seeds the random steps (an int
    seed ``s``: ``s``, ``s + 1``, ``s + 2``, ``s + 3`` for the crop, flip, policy and
    erasing; a ``torch.Generator`` is shared).

    Raises:
        ConfigurationError: an unknown ``policy``, or ``erasing`` not in [0, 1].
    """
    erasing = check_real("imagenet_policy_transform: erasing", erasing, 0.0, 1.0)
    gens: list[torch.Generator | int | None] = [generator] * 4
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        gens = [int(generator) + k for k in range(4)]
    steps: list[Any] = [
        RandomResizedCrop(size, interpolation=interpolation, generator=gens[0]),
        RandomHorizontalFlip(0.5, generator=gens[1]),
        augment_policy_transform(policy, interpolation=interpolation, generator=gens[2]),
        ToTensor(),
        *_normalize_steps(mean, std),
    ]
    if erasing > 0:
        steps.append(RandomErasing(erasing, generator=gens[3]))
    return Compose(steps)
