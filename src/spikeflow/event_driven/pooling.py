"""Adjusted average pooling (Zhu et al., NeurIPS 2022; methods.md 10).

Forward: an ordinary average over non-overlapping ``k x k`` windows. Backward: the
gradient of an output is split among the window's input spikes (each gets
``grad / spike count`` instead of ``grad / k²``), so that the sum of the spike-time
gradients is kept, as it is by max pooling and by the synapses (the paper's argument).
A window without spikes passes no gradient.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.errors import ShapeError

__all__ = ["AdjustedAvgPool2d", "adjusted_avg_pool2d"]

#: Called as ``observer(x, kernel_size, out)`` after each call of
#: :func:`adjusted_avg_pool2d` (NeuroMC's watch of functional pooling, which prices the
#: call as the module, adjusted backward included).
_OBSERVERS: list[Callable[[Tensor, int, Tensor], None]] = []
#: True while :func:`adjusted_avg_pool2d` runs with observers: its inner ``avg_pool2d``
#: is part of it, not a plain average pool of its own.
_RUNNING = contextvars.ContextVar("adjusted_avg_pool2d_running", default=False)


def adjusted_pool_running() -> bool:
    """Whether an observed :func:`adjusted_avg_pool2d` is running (its inner pool)."""
    return _RUNNING.get()


class _AdjustGradient(torch.autograd.Function):
    """Identity on the pooled mean ``m``; backward divides the gradient by ``m``, so the
    average pool's own backward (``/ k²``) then gives ``grad / (m k²)`` = grad / count.
    Means below ``1 / (k² + 1)`` (no spike in the window) pass nothing (the authors' rule,
    which also bounds the factor for non-binary inputs)."""

    @staticmethod
    def forward(ctx: Any, mean: Tensor, area: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(mean)
        ctx.area = area
        return mean.view_as(mean)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (mean,) = ctx.saved_tensors
        counted = mean >= 1.0 / (ctx.area + 1)
        factor = torch.where(counted, 1.0 / torch.where(counted, mean, 1.0), 0.0)
        return grad * factor, None


def adjusted_avg_pool2d(x: Tensor, kernel_size: int) -> Tensor:
    """Adjusted average pooling of ``x`` ``[T, B, C, H, W]`` (or any ``[..., H, W]``) over
    non-overlapping ``kernel_size`` windows (H and W cut to multiples of it, as
    :func:`torch.nn.functional.avg_pool2d` does)."""
    kernel_size = check_int("adjusted_avg_pool2d: kernel_size", kernel_size, 1)
    if x.dim() < 3:
        raise ShapeError(
            f"adjusted_avg_pool2d: expected input [..., H, W] with at least one leading "
            f"dim, got {list(x.shape)}"
        )
    height, width = x.shape[-2:]
    if height < kernel_size or width < kernel_size:
        raise ShapeError(
            f"adjusted_avg_pool2d: the {height}x{width} input is smaller than the "
            f"{kernel_size}x{kernel_size} window"
        )
    if not _OBSERVERS:
        return _adjusted(x, kernel_size)
    token = _RUNNING.set(True)
    try:
        out = _adjusted(x, kernel_size)
    finally:
        _RUNNING.reset(token)
    for observer in list(_OBSERVERS):
        observer(x, kernel_size, out)
    return out


def _adjusted(x: Tensor, kernel_size: int) -> Tensor:
    lead, (height, width) = x.shape[:-2], x.shape[-2:]
    pooled = F.avg_pool2d(x.reshape(-1, 1, height, width), kernel_size)
    pooled = _AdjustGradient.apply(pooled, kernel_size * kernel_size)
    return pooled.reshape(*lead, *pooled.shape[-2:])


class AdjustedAvgPool2d(nn.Module):
    """Module form of :func:`adjusted_avg_pool2d` (``[T, B, C, H, W]`` in and out)."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = check_int("AdjustedAvgPool2d: kernel_size", kernel_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        return adjusted_avg_pool2d(x, self.kernel_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"
