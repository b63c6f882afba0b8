"""Argument checks and small pieces shared by the adjoint (EventProp) neurons of
:mod:`spikeflow.learn.eventprop`, :mod:`spikeflow.learn.adjoint_refrac`,
:mod:`spikeflow.learn.adjoint_lsnn` and :mod:`spikeflow.learn.adjoint_coba`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError


def check_euler_fields(
    owner: str, p: Any, rates: tuple[str, ...], nonnegative: tuple[str, ...] = ()
) -> None:
    """The checks a LIF-like neuron's parameters ``p`` share: ``dt > 0``; each of
    ``rates`` (inverse time constants) ``> 0`` with ``rate * dt <= 1``; ``v_leak``,
    ``v_th``, ``v_reset`` real; each of ``nonnegative`` ``>= 0``; ``v_reset < v_th``."""
    dt = check_real(f"{owner}: dt", p.dt, 0.0, low_open=True)
    for name in rates:
        value = check_real(f"{owner}: {name}", getattr(p, name), 0.0, low_open=True)
        if value * dt > 1.0:
            raise ConfigurationError(
                f"{owner}: {name} * dt must be <= 1 (a forward-Euler step may not "
                f"overshoot), got {name}={value} and dt={dt}"
            )
    for name in ("v_leak", "v_th", "v_reset"):
        check_real(f"{owner}: {name}", getattr(p, name))
    for name in nonnegative:
        check_real(f"{owner}: {name}", getattr(p, name), 0.0)
    if not p.v_reset < p.v_th:
        raise ConfigurationError(f"{owner}: v_reset ({p.v_reset}) must be below v_th ({p.v_th})")


def layer_weights(
    owner: str, in_features: int, out_features: int, recurrent: bool, weight_scale: float
) -> tuple[nn.Parameter, nn.Parameter | None]:
    """An EventProp layer's ``W_in`` ``[out, in]`` from ``N(0, weight_scale² · 2/in)``
    and, when ``recurrent``, ``W_rec`` ``[out, out]`` from ``N(0, weight_scale² ·
    2/out)`` (drawn in that order); ``weight_scale`` must be > 0 (ConfigurationError)."""
    scale = check_real(f"{owner}: weight_scale", weight_scale, 0.0, low_open=True)
    input_weights = nn.Parameter(
        torch.randn(out_features, in_features) * scale * math.sqrt(2.0 / in_features)
    )
    recurrent_weights = (
        nn.Parameter(
            torch.randn(out_features, out_features) * scale * math.sqrt(2.0 / out_features)
        )
        if recurrent
        else None
    )
    return input_weights, recurrent_weights


def save_layer(ctx: Any, x: Tensor, w_in: Tensor | None, w_rec: Tensor | None) -> None:
    """Keeps ``x`` (for ``W_in``'s gradient) and the weights for the backward pass."""
    ctx.has = (w_in is not None, w_rec is not None)
    kept = (x if w_in is not None else None, w_in, w_rec)
    ctx.save_for_backward(*[t for t in kept if t is not None])


def load_layer(ctx: Any) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(x, W_in, W_rec)`` as :func:`save_layer` kept them (None where absent)."""
    tensors = list(ctx.saved_tensors)
    x = tensors.pop(0) if ctx.has[0] else None
    w_in = tensors.pop(0) if ctx.has[0] else None
    w_rec = tensors.pop(0) if ctx.has[1] else None
    return x, w_in, w_rec


def check_sequence(owner: str, name: str, x: object, width: int | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        raise ConfigurationError(f"{owner}: {name} must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(f"{owner}: {name} must be floating-point, got dtype {x.dtype}")
    if x.dim() != 3:
        raise ShapeError(
            f"{owner}: {name} must be time-major [T, B, features], got shape {tuple(x.shape)}"
        )
    if width is not None and x.shape[2] != width:
        raise ShapeError(
            f"{owner}: {name} has {x.shape[2]} features per step, the weights take {width}"
        )
    if x.shape[0] == 0:
        raise ShapeError(f"{owner}: {name} has no time steps (shape {tuple(x.shape)})")
    check_finite(owner, name, x)
    return x


def check_finite(owner: str, name: str, x: Tensor) -> None:
    """Raise a :class:`ConfigurationError` naming ``name`` and the first NaN or infinite
    entry of ``x`` (it would spread through the membrane and every gradient); a meta
    tensor, which holds no values, passes."""
    if x.is_meta:
        return
    bad = ~torch.isfinite(x.detach())
    if bool(bad.any()):
        at = [int(i) for i in bad.nonzero()[0]]
        value = x.detach()[tuple(at)].item()
        raise ConfigurationError(
            f"{owner}: {name} must be finite (found NaN or inf: {value} at index {at})"
        )


def check_weight(owner: str, name: str, w: object, shape: tuple[int, int], x: Tensor) -> Tensor:
    if not isinstance(w, Tensor):
        raise ConfigurationError(f"{owner}: {name} must be a tensor, got {type(w).__name__}")
    if tuple(w.shape) != shape:
        raise ShapeError(f"{owner}: {name} must have shape {shape}, got {tuple(w.shape)}")
    if w.dtype != x.dtype or w.device != x.device:
        raise DTypeError(
            f"{owner}: {name} ({w.dtype}, {w.device}) must match the input ({x.dtype}, {x.device})"
        )
    check_finite(owner, name, w)
    return w


def check_layer(
    owner: str, x: object, input_weights: object, recurrent_weights: object
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``x`` ``[T, B, I]`` and the optional weights ``W_in`` ``[N, I]``, ``W_rec``
    ``[N, N]`` (without ``W_in``, ``x`` is the current ``[T, B, N]``)."""
    if input_weights is None:
        x = check_sequence(owner, "x", x)
        if recurrent_weights is not None:
            n = x.shape[2]
            check_weight(owner, "recurrent_weights", recurrent_weights, (n, n), x)
        return x, None, recurrent_weights  # type: ignore[return-value]
    if not isinstance(input_weights, Tensor) or input_weights.dim() != 2:
        got = (
            f"shape {tuple(input_weights.shape)}"
            if isinstance(input_weights, Tensor)
            else repr(input_weights)
        )
        raise ShapeError(f"{owner}: input_weights must be a [N, I] tensor, got {got}")
    n, width = input_weights.shape
    x = check_sequence(owner, "x", x, width)
    check_weight(owner, "input_weights", input_weights, (n, width), x)
    if recurrent_weights is not None:
        check_weight(owner, "recurrent_weights", recurrent_weights, (n, n), x)
    return x, input_weights, recurrent_weights  # type: ignore[return-value]


def start_layer(
    ctx: Any, x: Tensor, w_in: Tensor | None, w_rec: Tensor | None, p: Any, jumps: str
) -> Tensor:
    """A layer's forward set-up: keeps ``p``, ``jumps``, ``x`` and the weights on
    ``ctx`` (as :class:`~spikeflow.learn.EventPropLIF`'s function does; no zero
    gradients materialised) and returns the input current ``W_in x[t]`` (``x`` itself
    without ``W_in``)."""
    ctx.p, ctx.jumps = p, jumps
    ctx.set_materialize_grads(False)
    save_layer(ctx, x, w_in, w_rec)
    return x if w_in is None else torch.matmul(x, w_in.t())


def layer_backward(
    ctx: Any,
    grad_spikes: Tensor | None,
    grad_voltage: Tensor | None,
    eventprop: Callable[..., tuple[Tensor, Tensor, Tensor | None]],
    norse: Callable[..., tuple[Tensor, Tensor, Tensor | None]],
) -> tuple[Tensor | None, ...]:
    """A layer's autograd ``backward``: the missing output gradients as zeros, the
    adjoint loop of ``ctx.jumps`` (``eventprop`` or ``norse``, each called as
    ``(p, saved, grad_spikes, grad_voltage, W_in, W_rec)`` and returning ``(∂L/∂c, the λ
    paired with x for W_in, ∂L/∂W_rec)``), then the gradients of ``(x, W_in, W_rec, p,
    jumps)``. ``ctx.saved`` holds the forward's ``spikes`` and ``slope_minus``."""
    saved = ctx.saved
    x, w_in, w_rec = load_layer(ctx)
    ref, shape = saved.slope_minus, saved.spikes.shape
    grad_spikes = ref.new_zeros(shape) if grad_spikes is None else grad_spikes
    grad_voltage = ref.new_zeros(shape) if grad_voltage is None else grad_voltage
    backward = norse if ctx.jumps == "norse" else eventprop
    d_current, paired, d_rec = backward(ctx.p, saved, grad_spikes, grad_voltage, w_in, w_rec)
    d_x, d_in = input_gradients(ctx, x, w_in, d_current, paired)
    return d_x, d_in, d_rec, None, None


def adjoint_buffers(
    grad_voltage: Tensor, spikes: Tensor, w_rec: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """What each backward loop starts from: a zero state ``[B, N]``, ``∂L/∂c`` to fill
    ``[T, B, N]``, ``∂L/∂W_rec`` (zeros; None without ``W_rec``) and the (bool)
    ``spikes`` as ``grad_voltage``'s dtype."""
    zero = grad_voltage.new_zeros(grad_voltage.shape[1:])
    d_current = torch.empty_like(grad_voltage)
    d_rec = None if w_rec is None else torch.zeros_like(w_rec)
    return zero, d_current, d_rec, spikes.to(grad_voltage.dtype)


def input_gradients(
    ctx: Any, x: Tensor | None, w_in: Tensor | None, d_current: Tensor, paired: Tensor
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of ``x`` (or of the current, without ``W_in``) and of ``W_in``:
    ``∂L/∂x[t] = d_current[t] W_in`` and ``∂L/∂W_in = Σ_t paired[t]ᵀ x[t]``."""
    if w_in is None or x is None:
        return d_current, None
    d_x = torch.matmul(d_current, w_in) if ctx.needs_input_grad[0] else None
    d_in = None
    if ctx.needs_input_grad[1]:
        rows = x.shape[0] * x.shape[1]
        d_in = torch.mm(paired.reshape(rows, paired.shape[-1]).t(), x.reshape(rows, x.shape[-1]))
    return d_x, d_in


def shifted(d: Tensor) -> Tensor:
    """``d[t+1]`` at ``t`` (zero at the last step): Norse pairs ``x[t]`` with it."""
    return torch.cat([d[1:], torch.zeros_like(d[:1])])


def take(values: Tensor, counts: list[int], end: int, t: int) -> tuple[Tensor, int]:
    """The values of step ``t`` from a list kept in time order, read from its ``end``."""
    start = end - counts[t]
    return values[start:end], start


def fixed_time(slope: Tensor, before: Tensor, threshold: float | Tensor) -> Tensor:
    """``V̇⁻`` at each spike, infinite where the membrane already stood above the
    threshold before the step (``v_leak > v_th`` at ``t = 0``): such a spike comes at the
    first step whatever the input, its time has no derivative, and the jump is 0 (instead
    of a division by a slope that may be 0 or negative)."""
    return torch.where(before > threshold, torch.inf, slope)
