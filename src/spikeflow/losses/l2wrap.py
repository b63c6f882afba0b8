"""L2Wrap: the logits regulariser RWKV-4 and SpikeGPT train their language models with.

RWKV-4's and SpikeGPT's training returns ``L2Wrap.apply(loss, logits)``: the loss value
unchanged, but a backward pass that, besides the loss's own gradient, sends to every
position's *largest* logit the gradient ``scale · max / N`` (``N`` the number of
positions, ``scale = 1e-4``; every other logit gets nothing from it). That is the
gradient of the penalty

    P(logits) = scale / (2 N) · Σ_positions (max_j logits[..., j])²

so each step pushes the top logit towards 0 (it keeps the logits from drifting upward,
which the softmax cross-entropy does not see), without the penalty entering the
reported loss. :func:`l2wrap` is that function; :func:`l2wrap_penalty` is ``P``, its
value (for logging or to check the gradient).

As in their code, the extra gradient does not scale with the gradient flowing into the
loss: a loss multiplied by 3 after :func:`l2wrap` triples the cross-entropy's gradient,
not the regulariser's (``scale`` is the knob for that), and a loss scaler (float16
training's ``GradScaler``) leaves it unscaled, so the unscaling shrinks it.
``scaled=True`` multiplies it by that incoming gradient: then the backward is exactly
the gradient of ``loss + P`` (``torch.autograd.gradcheck`` passes), which the default
equals whenever the loss itself is backpropagated (incoming gradient 1). The term is
computed in (at least) float32 and cast to the logits' dtype last, so float16 logits
under a loss scaler keep it with ``scaled=True`` (``1e-4 / N`` alone underflows).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["l2wrap", "l2wrap_penalty"]

#: RWKV-4's and SpikeGPT's factor (per position).
L2WRAP_SCALE = 1e-4


def _check(loss: Tensor, logits: Tensor, scale: float) -> None:
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        found = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ShapeError(f"l2wrap: loss must be a scalar tensor; got {found}")
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        found = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise ShapeError(f"l2wrap: logits must be a floating-point tensor; got {found}")
    if logits.dim() < 1 or logits.numel() == 0:
        raise ShapeError(
            f"l2wrap: logits must be non-empty [..., vocab] (e.g. [T, B, vocab]); "
            f"got shape {tuple(logits.shape)}"
        )
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float))
        or not 0 <= scale < float("inf")
    ):
        raise ConfigurationError(f"l2wrap: scale must be a finite number >= 0; got {scale!r}")


class _L2Wrap(torch.autograd.Function):
    """Forward: ``loss``; backward: ``loss``'s gradient through, ``scale·max/N`` at
    each position's argmax of ``logits``."""

    @staticmethod
    def forward(ctx, loss: Tensor, logits: Tensor, scale: float, scaled: bool) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(logits)
        ctx.scale, ctx.scaled = scale, scaled
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_loss: Tensor) -> tuple[Tensor, Tensor, None, None]:  # type: ignore[override]
        (logits,) = ctx.saved_tensors
        positions = logits.numel() // logits.shape[-1]
        top, where = logits.max(-1, keepdim=True)
        # at least float32 until the end: in float16, scale/N (3e-9 for 32 x 1024) makes
        # the term underflow to 0 before a loss scaler's factor could lift it, and the
        # factor itself (65536) overflows to inf
        work = torch.promote_types(top.dtype, torch.float32)
        top = top.to(work) * (ctx.scale / positions)
        if ctx.scaled:
            top = top * grad_loss.to(work)
        grad_logits = torch.zeros_like(logits).scatter_(-1, where, top.to(logits.dtype))
        return grad_loss, grad_logits, None, None


def l2wrap(
    loss: Tensor, logits: Tensor, scale: float = L2WRAP_SCALE, scaled: bool = False
) -> Tensor:
    """``loss`` unchanged, with RWKV-4's/SpikeGPT's logits regulariser in its backward.

    Args:
        loss: the scalar training loss computed from ``logits`` (e.g. cross-entropy).
        logits: the model's logits ``[..., vocab]`` (``[T, B, vocab]`` for
            :class:`~spikeflow.models.spike_gpt.SpikeGPT`); ``N`` is their number of
            positions (all dimensions but the last).
        scale: the factor (their 1e-4); 0 turns it off.
        scaled: multiply the extra gradient by the gradient flowing into the returned
            loss (module docstring); False (their code) leaves it out.

    Returns:
        A scalar equal to ``loss``; backpropagating it gives ``loss``'s gradient plus
        ``scale · max / N`` at every position's largest logit (the gradient of
        :func:`l2wrap_penalty`), independent of the gradient flowing into it unless
        ``scaled``.
    """
    _check(loss, logits, scale)
    if not isinstance(scaled, bool):
        raise ConfigurationError(f"l2wrap: scaled must be True or False; got {scaled!r}")
    return _L2Wrap.apply(loss, logits, float(scale), scaled)


def l2wrap_penalty(logits: Tensor, scale: float = L2WRAP_SCALE) -> Tensor:
    """``scale / (2 N) · Σ max_j(logits)²`` over the ``N`` positions of ``logits``
    (``[..., vocab]``): the penalty whose gradient :func:`l2wrap` adds (at ties of the
    largest logit, autograd's choice of subgradient may differ). Summed in (at least)
    float32 and returned in the logits' dtype (a float16 sum of squares overflows)."""
    _check(torch.zeros(()), logits, scale)
    positions = logits.numel() // logits.shape[-1]
    top = logits.amax(-1).to(torch.promote_types(logits.dtype, torch.float32))
    return (top.square().sum() * (scale / (2 * positions))).to(logits.dtype)
