"""Mixup and CutMix of training batches (Zhang et al. 2018; Yun et al. 2019), as the
PSN paper's CIFAR recipes use them (methods.md 4.5).

A batch is mixed with a permutation of itself: mixup blends the inputs, ``λ x + (1 − λ)
x[perm]``; CutMix pastes a box of ``x[perm]`` into ``x`` (the same box at every time
step of a frame sequence, so a sample stays one scene). The target becomes the class
distribution ``λ onehot(y) + (1 − λ) onehot(y[perm])``, with λ the share of each sample
that is its own (for CutMix, recomputed from the box as clipped to the image). λ is
drawn from Beta(α, α) once per batch; with both α set, each batch uses one of the two
with probability 1/2. The draws come from a generator the caller seeds (the trainer:
from the run's seed and step, so a resumed run mixes as an uninterrupted one).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeflow._checks import check_labels
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["MIXABLE_LOSSES", "BatchMixer"]

#: The losses that take a class distribution as their target (spikeflow.losses: the
#: rate losses, the membrane losses, snnTorch's spike-count losses and Lava-DL's
#: SpikeMoid, whose binary cross-entropy reads each class's share as that class's target).
MIXABLE_LOSSES = (
    "mse", "ce", "tet", "mse_membrane", "ce_max_membrane", "ce_count", "mse_count", "spike_moid",
)  # fmt: skip


def _beta(alpha: float, generator: torch.Generator) -> float:
    """One draw of Beta(α, α) from ``generator`` (as the ratio of two Gamma draws)."""
    concentration = torch.tensor([alpha, alpha], dtype=torch.float64)
    gammas = torch._standard_gamma(concentration, generator=generator)
    return float(gammas[0] / gammas.sum())


class BatchMixer:
    """Mixup and/or CutMix of ``(x, y)`` batches (see the module docstring).

    Args:
        num_classes: the number of classes (the width of the target distributions).
        mixup: α of mixup's Beta(α, α); 0 turns mixup off.
        cutmix: α of CutMix's Beta(α, α); 0 turns CutMix off.

    Raises:
        ConfigurationError: a negative or non-finite α, both α zero, or fewer than two
            classes.
    """

    def __init__(self, num_classes: int, mixup: float = 0.0, cutmix: float = 0.0) -> None:
        for name, alpha in (("mixup", mixup), ("cutmix", cutmix)):
            if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
                raise ConfigurationError(f"{name} (α) must be a number >= 0, got {alpha!r}")
            if not math.isfinite(alpha) or alpha < 0:
                raise ConfigurationError(f"{name} (α) must be a finite number >= 0, got {alpha}")
        if mixup == 0 and cutmix == 0:
            raise ConfigurationError("BatchMixer needs mixup > 0 or cutmix > 0")
        if num_classes < 2:
            raise ConfigurationError(f"mixing needs at least 2 classes, got {num_classes}")
        self.num_classes = int(num_classes)
        self.mixup = float(mixup)
        self.cutmix = float(cutmix)

    def __call__(
        self, x: Tensor, y: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, float]:
        """Mix the batch ``x`` (``[B, ...]``; CutMix needs ``[B, ..., H, W]``) with labels
        ``y`` (``[B]``); returns the mixed batch, the target distributions ``[B,
        num_classes]`` (``x``'s floating dtype) and λ.

        Raises:
            ShapeError: labels that are not ``[B]``, or CutMix on a batch without two
                spatial dimensions.
            DTypeError: labels that are not integers.
            ConfigurationError: a label outside ``[0, num_classes)``.
        """
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ShapeError(
                f"mixing takes class labels [B] for a batch of {x.shape[0]}; got labels of "
                f"shape {tuple(y.shape)}"
            )
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise DTypeError(f"mixing takes integer class labels [B]; got {y.dtype}")
        check_labels("BatchMixer", y, x.shape[0], self.num_classes)
        use_cutmix = self.cutmix > 0 and (
            self.mixup == 0 or float(torch.rand((), generator=generator)) < 0.5
        )
        if use_cutmix and x.dim() < 4:
            raise ShapeError(
                f"cutmix pastes a box of height x width: it needs batches [B, ..., H, W] "
                f"(images or frames), got shape {tuple(x.shape)}; use mixup for these inputs"
            )
        lam = _beta(self.cutmix if use_cutmix else self.mixup, generator)
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
        if use_cutmix:
            x, lam = self._paste_box(x, perm, lam, generator)
        else:
            x = lam * x + (1.0 - lam) * x[perm]
        dtype = x.dtype if x.is_floating_point() else torch.float32
        one_hot = torch.nn.functional.one_hot(y.long(), self.num_classes).to(dtype)
        return x, lam * one_hot + (1.0 - lam) * one_hot[perm], lam

    @staticmethod
    def _paste_box(
        x: Tensor, perm: Tensor, lam: float, generator: torch.Generator
    ) -> tuple[Tensor, float]:
        """Paste the box of area ``(1 − λ) H W`` (clipped at the borders) around a random
        centre from ``x[perm]``; λ recomputed from the clipped box."""
        height, width = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy = int(torch.randint(height, (), generator=generator))
        cx = int(torch.randint(width, (), generator=generator))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        mixed = x.clone()
        mixed[..., top:bottom, left:right] = x[..., top:bottom, left:right][perm]
        return mixed, 1.0 - (bottom - top) * (right - left) / (height * width)
