"""Helpers for tests against snnTorch in float64 (its own spike functions return float32)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

F64 = torch.float64


def f64(value: float) -> Tensor:
    return torch.tensor(value, dtype=F64)


class _ATan64(torch.autograd.Function):
    """snnTorch's ``atan()`` keeping the input's dtype (its own returns float32)."""

    @staticmethod
    def forward(ctx, x, alpha):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


def atan64(x: Tensor) -> Tensor:
    """snnTorch's ``atan()`` (alpha 2) as a spike function of ``x``'s dtype."""
    return _ATan64.apply(x, 2.0)
