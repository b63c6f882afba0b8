"""The first threshold crossing of a piecewise-monotone response, with implicit
gradients: SpikingJelly 2.0's ``timing_based.solver.first_spike_time``.

A timing-based neuron whose membrane is known in closed form between events fires at
the first time its residual ``F(t) = V(t) - θ`` (any function that crosses zero upward
when the neuron fires) reaches 0. If the caller splits the window into intervals on
which ``F`` is monotone, that time is found without sampling a time grid: the first
interval whose left end is below 0 and whose right end reaches 0 holds it, and a
safeguarded Newton iteration (bisection wherever a Newton step would leave the bracket
or shrink it slowly) finds it there to two units in the last place. Its gradient
follows from the implicit function theorem, ``dt*/dp = -(∂F/∂p) / (∂F/∂t)`` at the root,
for every parameter ``p`` the response takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError

__all__ = ["first_spike_time"]

_FLOATS = (torch.float32, torch.float64)
#: Bisection halves the bracket; adjacent floats are reached well within this many
#: steps for any float64 bracket (about 2100 halvings span its whole exponent range);
#: Newton steps, taken only when they shrink faster, take a handful.
_MAX_BISECTIONS = 2200

Response = Callable[..., tuple[Tensor, Tensor]]


def _evaluate(
    response: Response, time: Tensor, piece: Tensor, parameters: tuple[Tensor, ...]
) -> tuple[Tensor, Tensor]:
    """``response(time, piece, *parameters)`` checked: two finite tensors shaped, typed
    and placed as ``time``."""
    result = response(time, piece, *parameters)
    if (
        not isinstance(result, tuple)
        or len(result) != 2
        or not all(isinstance(v, Tensor) for v in result)
    ):
        raise DTypeError(
            f"first_spike_time: response must return a (residual, slope) pair of tensors, "
            f"got {type(result).__name__}"
        )
    value, slope = result
    for name, v in (("residual", value), ("slope", slope)):
        if v.shape != time.shape or v.dtype != time.dtype or v.device != time.device:
            raise ShapeError(
                f"first_spike_time: response's {name} must have the query times' shape, "
                f"dtype and device {tuple(time.shape)}, {time.dtype}, {time.device}; got "
                f"{tuple(v.shape)}, {v.dtype}, {v.device}"
            )
        if not bool(torch.isfinite(v).all()):
            raise ConfigurationError(f"first_spike_time: response returned a non-finite {name}")
    return value, slope


def _bracketed_root(
    response: Response,
    parameters: tuple[Tensor, ...],
    piece: Tensor,
    lo: Tensor,
    hi: Tensor,
    moving: Tensor,
) -> Tensor:
    """The zero of the increasing residual between ``lo`` (``F < 0``) and ``hi``
    (``F >= 0``) where ``moving``, else ``hi``: safeguarded Newton (a Newton step is taken
    when it stays inside the bracket and at least halves the previous step, else the
    bracket is bisected), to a step or bracket of two units in the last place."""
    eps, tiny = torch.finfo(lo.dtype).eps, torch.finfo(lo.dtype).tiny
    x = lo + (hi - lo) / 2
    previous = hi - lo
    root = hi.clone()
    done = ~moving
    for _ in range(_MAX_BISECTIONS):
        active = ~done
        if not bool(active.any()):
            break
        value, slope = response(torch.where(active, x, lo), piece, *parameters)
        if not bool(torch.isfinite(value[active]).all() & torch.isfinite(slope[active]).all()):
            raise ConfigurationError("first_spike_time: response returned a non-finite value")
        rising = value >= 0
        hi = torch.where(active & rising, x, hi)
        lo = torch.where(active & ~rising, x, lo)
        newton = x - value / torch.where(slope > 0, slope, 1.0)
        middle = lo + (hi - lo) / 2
        tol = 2 * eps * torch.maximum(lo.abs(), hi.abs()) + tiny
        # x is the root when F(x) = 0 or Newton's correction is below the tolerance
        converged = (value == 0) | ((slope > 0) & ((newton - x).abs() <= tol))
        narrow = (hi - lo <= tol) | (middle <= lo) | (middle >= hi)
        finished = active & (converged | narrow)
        root = torch.where(finished, torch.where(converged, x, hi), root)
        done |= finished
        step_ok = (slope > 0) & (newton > lo) & (newton < hi)
        step_ok &= 2 * (newton - x).abs() < previous
        proposal = torch.where(step_ok, newton, middle)
        step = (proposal - x).abs()
        x = torch.where(active, proposal, x)
        previous = torch.where(active, step, previous)
    else:  # pragma: no cover - bisection alone reaches adjacent floats first
        raise StateError("first_spike_time: the root search did not converge")
    return root


class _FirstSpike(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, response: Response, boundaries: Tensor, extrema: Tensor, *parameters: Tensor
    ) -> Tensor:
        ctx.set_materialize_grads(False)
        lower, upper = boundaries[..., :-1], boundaries[..., 1:]
        pieces = torch.arange(lower.shape[-1], device=boundaries.device).expand_as(lower)
        left, _ = _evaluate(response, lower, pieces, parameters)
        right, _ = _evaluate(response, upper, pieces, parameters)
        eps = torch.finfo(boundaries.dtype).eps
        # A flagged extremum that only touches 0 (within rounding) is grazing: no spike.
        roundoff = 64 * eps * (1 + left.abs() + right.abs())
        reaches = torch.where(extrema[..., 1], right > roundoff, right >= 0)
        bracket = (upper > lower) & (
            ((left < 0) & reaches) | ((left == 0) & (right > 0) & ~extrema[..., 0])
        )
        firing = bracket.any(-1, keepdim=True)
        chosen = bracket.to(torch.int8).argmax(-1, keepdim=True)
        lo, hi = lower.gather(-1, chosen), upper.gather(-1, chosen)
        at_start = firing & (left.gather(-1, chosen) == 0)
        root = _bracketed_root(response, parameters, chosen, lo, hi, firing & ~at_start)
        root = torch.where(at_start, lo, root)
        ctx.response = response
        ctx.save_for_backward(root, chosen, firing, *parameters)
        return torch.where(firing, root, torch.inf).squeeze(-1)

    @staticmethod
    def backward(ctx: Any, gradient: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        if torch.is_grad_enabled():
            raise StateError(
                "first_spike_time: only first-order gradients are supported "
                "(create_graph=True is not)"
            )
        root, chosen, firing, *parameters = ctx.saved_tensors
        needs = ctx.needs_input_grad[3:]
        if gradient is None or not any(needs):
            return (None, None, None, *(None for _ in parameters))
        used = firing & (gradient[..., None] != 0)
        with torch.enable_grad():
            state = tuple(p.detach().requires_grad_(n) for p, n in zip(parameters, needs))
            value, slope = _evaluate(ctx.response, root, chosen, state)
            if bool((used & (slope <= 0)).any()):
                raise ConfigurationError(
                    "first_spike_time: a spike whose time gradient is requested crosses "
                    "the threshold with zero slope (a horizontal inflection): its time "
                    "is not differentiable there"
                )
            factor = torch.where(used, -gradient[..., None] / torch.where(used, slope, 1), 0)
            requested = [p for p, n in zip(state, needs) if n]
            found = (
                torch.autograd.grad(value, requested, factor.detach(), allow_unused=True)
                if value.requires_grad
                else [None] * len(requested)
            )
        out: list[Tensor | None] = []
        grads = iter(found)
        for p, n in zip(parameters, needs):
            g = next(grads) if n else None
            out.append(torch.zeros_like(p) if n and g is None else g)
        return (None, None, None, *out)


def first_spike_time(
    response: Response,
    boundaries: Tensor,
    parameters: tuple[Tensor, ...],
    extrema: Tensor | None = None,
) -> Tensor:
    """The first upward zero crossing of a residual on a partition into monotone pieces
    (SpikingJelly 2.0's ``timing_based.solver.first_spike_time``; module docstring).

    ``response(time, piece, *parameters)`` returns ``(F, ∂F/∂t)`` at ``time [..., Q]``
    (``Q`` is ``K`` or 1), each of ``time``'s shape, dtype and device; ``piece`` (int64,
    the same shape) is the interval each query belongs to, so that the response can
    evaluate the interval's own (one-sided) expression at a boundary. Each leading index
    is an independent time axis. All differentiable dependencies must be in
    ``parameters`` (not in a closure): gradients reach exactly those. The caller must
    list every point where ``F`` changes monotonicity (stationary points, kinks) among
    the boundaries: the function checks the format, not that promise.

    A piece ``[a, b]`` holds the spike if ``F(a) < 0`` and ``F(b) >= 0`` (``F(b)`` above
    a rounding margin ``64 eps (1 + |F(a)| + |F(b)|)`` when ``b`` is flagged as a local
    extremum: touching the threshold there is grazing, not firing), or ``F(a) = 0``,
    ``F(b) > 0`` and ``a`` is not flagged; the first such piece wins and a crossing at
    the window's end counts. The root is found in the boundaries' dtype by safeguarded
    Newton steps inside the bracket, to a step or bracket of 2 ulp (as SJ's solver,
    whose tolerance is 8 ulp). Difference from SpikingJelly: float64 is supported as
    well as float32 (SJ: float32 only).

    Args:
        response: the residual and its time derivative, as above.
        boundaries: ``[..., K+1]`` (``K >= 1``), float32 or float64, finite and
            non-decreasing along the last axis (repeats make empty pieces).
        parameters: the response's tensor inputs; floating ones in the boundaries' dtype,
            all on their device, finite.
        extrema: ``[..., K, 2]`` bool, whether each piece's left / right end is a local
            extremum of ``F`` (``None``: none is).

    Returns:
        ``[...]`` the first crossing time, ``inf`` where there is none. First-order
        gradients (zero for ``inf``) flow to ``parameters``; the boundaries and flags only
        choose the piece.

    Raises:
        DTypeError: a response that is not callable, parameters that are not a tuple of
            tensors, or wrong dtypes.
        ShapeError: boundaries or flags of the wrong shape, or a response result that
            does not fit the query.
        ConfigurationError: non-finite or decreasing boundaries, non-finite parameters
            or responses, parameters on another device, or (in backward) a requested
            gradient of a crossing with zero slope.
        StateError: a second-order gradient (``create_graph=True``).
    """
    if not callable(response):
        raise DTypeError(f"first_spike_time: response must be callable, got {response!r}")
    if not isinstance(parameters, tuple) or not all(isinstance(p, Tensor) for p in parameters):
        raise DTypeError("first_spike_time: parameters must be a tuple of tensors")
    if not isinstance(boundaries, Tensor) or boundaries.dtype not in _FLOATS:
        got = boundaries.dtype if isinstance(boundaries, Tensor) else type(boundaries).__name__
        raise DTypeError(f"first_spike_time: boundaries must be float32 or float64, got {got}")
    if boundaries.ndim < 1 or boundaries.shape[-1] < 2:
        raise ShapeError(
            f"first_spike_time: boundaries must have shape [..., K+1] with K >= 1, got "
            f"{tuple(boundaries.shape)}"
        )
    if not bool(torch.isfinite(boundaries).all()):
        raise ConfigurationError("first_spike_time: boundaries must be finite")
    if bool((boundaries.diff() < 0).any()):
        raise ConfigurationError("first_spike_time: boundaries must be non-decreasing")
    for i, p in enumerate(parameters):
        if p.is_complex() or (p.is_floating_point() and p.dtype != boundaries.dtype):
            raise DTypeError(
                f"first_spike_time: parameters[{i}] is {p.dtype}; floating parameters must "
                f"have the boundaries' dtype {boundaries.dtype}"
            )
        if p.device != boundaries.device:
            raise ConfigurationError(
                f"first_spike_time: parameters[{i}] is on {p.device}, the boundaries on "
                f"{boundaries.device}"
            )
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise ConfigurationError(f"first_spike_time: parameters[{i}] is not finite")
    flags = (*boundaries.shape[:-1], boundaries.shape[-1] - 1, 2)
    if extrema is None:
        extrema = torch.zeros(flags, dtype=torch.bool, device=boundaries.device)
    if not isinstance(extrema, Tensor) or extrema.dtype != torch.bool:
        raise DTypeError("first_spike_time: extrema must be a bool tensor or None")
    if tuple(extrema.shape) != flags or extrema.device != boundaries.device:
        raise ShapeError(
            f"first_spike_time: extrema must have shape {flags} on the boundaries' device, "
            f"got {tuple(extrema.shape)} on {extrema.device}"
        )
    return _FirstSpike.apply(response, boundaries.detach(), extrema, *parameters)
