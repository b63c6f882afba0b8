"""The WKV recurrence of RWKV (Peng et al. 2023), the token mixer of SpikeGPT.

Per channel ``c``, with a decay rate ``w > 0`` (``w = exp(time_decay)``) and a bonus
``u`` for the current token, the output at token ``t`` is a softmax-like average of the
values seen so far, weighted by their keys and by how long ago they came:

    wkv_t = (Σ_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
          / (Σ_{i<t} e^{-(t-1-i) w + k_i}       + e^{u + k_t})

The sums up to ``t - 1`` are the state ``A_{t-1}`` (numerator) and ``B_{t-1}``
(denominator), updated as ``A_t = e^{-w} A_{t-1} + e^{k_t} v_t`` (``B`` likewise with
``v = 1``). The exponentials overflow for large keys, so the state is kept scaled by a
running maximum: ``(a, b, p)`` with ``A = a e^p`` and ``B = b e^p``, and every sum is
taken relative to the largest exponent in it (the numerically stable form of RWKV's
kernels). The maxima carry no gradient: the result does not depend on them.

Two forms compute the same numbers (equal in float64, tested):

* :func:`wkv_step`: one token (recurrent, streaming): ``[B, C]`` in, state in and out.
* :func:`wkv_sequence`: a whole sequence ``[T, B, C]`` in chunks, each chunk in parallel
  over its tokens (a ``[L, L]`` matrix of log weights, a max-shifted exponential), the
  state carried from chunk to chunk in closed form.

:func:`wkv_recurrent` runs :func:`wkv_step` over a sequence (the reference loop).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow._checks import check_int
from spikeflow.errors import DTypeError, ShapeError, StateError

__all__ = ["WKVState", "wkv_initial_state", "wkv_recurrent", "wkv_sequence", "wkv_step"]

#: The scaled state ``(a, b, p)``: numerator, denominator and the log of their scale.
WKVState = tuple[Tensor, Tensor, Tensor]


def wkv_initial_state(batch_channels: torch.Size, like: Tensor) -> WKVState:
    """The empty state (no token seen): ``a = b = 0`` and ``p = -inf``, each of shape
    ``batch_channels`` (``[B, C]``), dtype and device of ``like``."""
    zeros = like.new_zeros(batch_channels)
    return zeros, zeros.clone(), torch.full_like(zeros, float("-inf"))


def _check(decay: Tensor, bonus: Tensor, k: Tensor, v: Tensor, dims: int, form: str) -> None:
    named = (("decay", decay), ("bonus", bonus), ("k", k), ("v", v))
    for name, value in named:
        if not isinstance(value, Tensor):
            raise DTypeError(f"wkv: {name} must be a tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise DTypeError(f"wkv: {name} must be floating-point, got {value.dtype}")
    for name, value in named:
        if value.dtype != k.dtype:
            raise DTypeError(f"wkv: {name} is {value.dtype} but k is {k.dtype}: use one dtype")
    if k.dim() != dims or k.shape != v.shape:
        raise ShapeError(
            f"wkv: k and v must both be {form}; got k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    channels = k.shape[-1]
    for name, value in (("decay", decay), ("bonus", bonus)):
        if value.shape != (channels,):
            raise ShapeError(
                f"wkv: {name} must have one value per channel, shape ({channels},); "
                f"got {tuple(value.shape)}"
            )


def _check_state(state: WKVState | None, k_step: Tensor) -> WKVState:
    if state is None:
        return wkv_initial_state(k_step.shape, k_step)
    if not (isinstance(state, (tuple, list)) and len(state) == 3):
        raise StateError("wkv: state must be the tuple (a, b, p) a wkv call returned")
    for name, value in zip("abp", state):
        if not isinstance(value, Tensor) or value.shape != k_step.shape:
            found = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise StateError(
                f"wkv: state {name} must have one token's shape {tuple(k_step.shape)}; got {found}"
            )
    return tuple(state)  # type: ignore[return-value]


def wkv_step(
    decay: Tensor, bonus: Tensor, k: Tensor, v: Tensor, state: WKVState | None = None
) -> tuple[Tensor, WKVState]:
    """One token of the WKV recurrence (module docstring).

    Args:
        decay: the decay rates ``w`` (> 0), ``[C]``.
        bonus: the current token's bonus ``u``, ``[C]``.
        k, v: this token's keys and values, ``[B, C]``.
        state: ``(a, b, p)`` after the previous token (None: no token seen yet).

    Returns:
        ``wkv_t`` (``[B, C]``) and the state after this token.
    """
    _check(decay, bonus, k, v, 2, "[B, C]")
    a, b, p = _check_state(state, k)
    now = bonus + k
    top = torch.maximum(p, now).detach()
    old, new = torch.exp(p - top), torch.exp(now - top)
    out = (old * a + new * v) / (old * b + new)
    kept = p - decay
    top = torch.maximum(kept, k).detach()
    old, new = torch.exp(kept - top), torch.exp(k - top)
    return out, (old * a + new * v, old * b + new, top)


def wkv_recurrent(
    decay: Tensor, bonus: Tensor, k: Tensor, v: Tensor, state: WKVState | None = None
) -> tuple[Tensor, WKVState]:
    """:func:`wkv_step` over the tokens of ``k`` and ``v`` (``[T, B, C]``): the
    reference loop. Returns ``[T, B, C]`` and the state after the last token."""
    _check(decay, bonus, k, v, 3, "[T, B, C]")
    if k.shape[0] == 0:
        raise ShapeError("wkv: the sequence has no tokens (T = 0)")
    outs = []
    for k_t, v_t in zip(k, v):
        out, state = wkv_step(decay, bonus, k_t, v_t, state)
        outs.append(out)
    return torch.stack(outs), _check_state(state, k[0])


def _times(count: Tensor, decay: Tensor) -> Tensor:
    """``count · decay`` for token counts ``>= 0``, with ``0 · w = 0`` even where the
    decay overflowed to ``inf`` (``time_decay`` above ~88.7 in float32): no decay at all
    over zero tokens, as the one-token form has it."""
    return torch.where(count > 0, count * decay, torch.zeros_like(decay))


def _chunk(decay: Tensor, bonus: Tensor, k: Tensor, v: Tensor, state: WKVState) -> tuple:
    """One chunk ``[L, B, C]`` in parallel over its tokens, from ``state``."""
    a, b, p = state
    steps = k.shape[0]
    t = torch.arange(steps, device=k.device, dtype=k.dtype)
    lag = (t[:, None] - 1 - t[None, :])[..., None]  # [L(t), L(i), 1]: t-1-i
    # log weight of token i seen from token t: -(t-1-i) w + k_i (i < t), u + k_t (i = t)
    log_w = torch.where(lag >= 0, -_times(lag, decay), bonus)
    log_w = log_w.masked_fill(lag < -1, float("-inf"))[:, :, None, :] + k[None]
    from_state = p - _times(t[:, None, None], decay)  # the state's weight at token t: p - t w
    top = torch.maximum(log_w.amax(1), from_state).detach()  # [L, B, C]
    weights = torch.exp(log_w - top[:, None])
    scale = torch.exp(from_state - top)
    out = ((weights * v[None]).sum(1) + scale * a) / (weights.sum(1) + scale * b)
    # the state after the chunk: A = e^{-L w} A_0 + Σ_i e^{-(L-1-i) w + k_i} v_i
    log_end = -_times((steps - 1 - t)[:, None, None], decay) + k  # [L, B, C]
    end_state = p - steps * decay
    top = torch.maximum(log_end.amax(0), end_state).detach()
    weights, scale = torch.exp(log_end - top), torch.exp(end_state - top)
    return out, ((weights * v).sum(0) + scale * a, weights.sum(0) + scale * b, top)


def wkv_sequence(
    decay: Tensor,
    bonus: Tensor,
    k: Tensor,
    v: Tensor,
    state: WKVState | None = None,
    chunk: int = 8,
) -> tuple[Tensor, WKVState]:
    """The WKV of a whole sequence ``[T, B, C]`` (module docstring), ``chunk`` tokens
    at a time in parallel: equal to :func:`wkv_recurrent`, with ``O(T·chunk)`` work per
    channel and ``T / chunk`` Python steps instead of ``T``.

    Args:
        decay, bonus: ``w`` (> 0) and ``u``, ``[C]`` each.
        k, v: keys and values, ``[T, B, C]``.
        state: ``(a, b, p)`` to start from (None: no token seen yet).
        chunk: tokens per parallel chunk (memory ``chunk² · B · C`` per chunk).

    Returns:
        ``[T, B, C]`` and the state after the last token.
    """
    _check(decay, bonus, k, v, 3, "[T, B, C]")
    check_int("chunk", chunk, 1)
    if k.shape[0] == 0:
        raise ShapeError("wkv: the sequence has no tokens (T = 0)")
    current = _check_state(state, k[0])
    outs = []
    for k_part, v_part in zip(k.split(chunk), v.split(chunk)):
        out, current = _chunk(decay, bonus, k_part, v_part, current)
        outs.append(out)
    return torch.cat(outs), current
