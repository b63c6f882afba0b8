"""One time step of a declared neuron as a symbolic graph, and its vector-Jacobian product.

This is what every fused backend generates code from: the declaration's charge and
update functions, the shared fire/reset rule (or the declaration's own ``fire``, whose
spike function may be called at several thresholds) and the surrogate derivative,
traced once into expressions (:mod:`spikeflow.kernels.expr`) and differentiated symbolically, so
nobody writes per-neuron backward code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from spikeflow.errors import ConfigurationError
from spikeflow.kernels.expr import Expr, TraceError, apply, const, tracing_dtype, var, vjp
from spikeflow.neurons.declaration import NeuronDeclaration
from spikeflow.surrogate import Surrogate

__all__ = ["StepGraph", "build_step", "symbolic_surrogate_params"]


@dataclass(frozen=True)
class StepGraph:
    """Inputs and outputs of one step, plus the backward expressions.

    Inputs are variables named ``x``, ``state_<name>``, ``param_<name>`` and ``theta``;
    cotangents are ``grad_spike`` and ``grad_state_<name>``.
    """

    decl: NeuronDeclaration
    spike: Expr
    new_state: tuple[Expr, ...]
    v_after_reset: Expr
    grad_x: Expr
    grad_state: tuple[Expr, ...]
    grad_params: tuple[Expr, ...]
    grad_theta: Expr
    #: The gradients of (x, the states, the parameters, the threshold) of the last step:
    #: each new state's contribution only where its cotangent (the final state's
    #: gradient, plus the last recorded membrane's for ``v``) is not zero. Those are
    #: absent when not differentiated (zeros under torch.compile), and the reference
    #: loop then never multiplies by the Jacobian, whose ``0 * inf`` would be NaN
    #: where the last membrane is infinite.
    last_step: tuple[Expr, ...] = ()
    #: The states that reach neither the spike nor ``v`` through any number of steps
    #: (an auxiliary trace the firing never reads): their cotangent can only come from
    #: their final state's gradient, so :attr:`gradients` count their parts, at every
    #: step, only where their cotangent is not zero, as :attr:`last_step` does. The
    #: reference loop never differentiates such a chain when the loss does not use the
    #: final state, where ``0 * inf`` (``sqrt`` or ``log`` of 0 in its update) would
    #: make NaN gradients for the spikes and the input. The others' parts are plain
    #: products (no cost for a neuron without such a state).
    final_only: tuple[str, ...] = ()
    #: Surrogate parameters that are variables ``sg_<name>`` of the backward (their
    #: values travel with each call, after the threshold, in this order); the others
    #: are constants of the generated code.
    surrogate_scalars: tuple[str, ...] = ()

    @property
    def gradients(self) -> tuple[Expr, ...]:
        """The gradients of (x, the states, the parameters, the threshold), in
        :attr:`last_step`'s layout."""
        return (self.grad_x, *self.grad_state, *self.grad_params, self.grad_theta)


def symbolic_surrogate_params(surrogate: Surrogate) -> tuple[str, ...]:
    """The parameters of ``surrogate`` that its derivative uses as plain arithmetic, so
    that a kernel can take them at run time (an annealed ``alpha`` then needs no new
    kernel). Empty when the surrogate is not spiking (its primitive is the forward,
    whose constants must round as the reference's do) or when the derivative uses a
    parameter in a way tracing cannot follow (a loop count, ``math.sqrt``)."""
    if not surrogate.spiking or not surrogate.params:
        return ()
    names = tuple(surrogate.params)
    try:
        out = type(surrogate).derivative(var("u"), **{n: var(f"sg_{n}") for n in names})
        _ = apply("tofloat", out)
    except Exception:  # any failure to trace: keep them constants
        return ()
    return names


def _trace(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on symbolic values; any failure becomes a TraceError that
    names ``what`` (an error of the tracer itself, or a TypeError/AttributeError of an
    operation it does not model)."""
    try:
        return fn(*args, **kwargs)
    except TraceError as exc:
        raise TraceError(f"{what}: {exc}") from exc
    except (ConfigurationError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise TraceError(
            f"{what} cannot be traced into a fused kernel ({type(exc).__name__}: {exc})"
        ) from exc


def build_step(
    decl: NeuronDeclaration,
    surrogate: Surrogate,
    v_reset: float | None,
    detach_reset: bool,
    strict: bool,
    surrogate_scalars: tuple[str, ...] = (),
    dtype: torch.dtype = torch.float32,
) -> StepGraph:
    """Trace one step of ``decl`` with the given fire/reset rule and differentiate it.

    ``surrogate_scalars``: surrogate parameters traced as variables ``sg_<name>``
    (see :func:`symbolic_surrogate_params`); the others are constants. ``dtype``: the
    input's dtype, which a traced value's ``.dtype`` reports.
    """
    with tracing_dtype(dtype):
        return _build_step(decl, surrogate, v_reset, detach_reset, strict, surrogate_scalars)


def _build_step(
    decl: NeuronDeclaration,
    surrogate: Surrogate,
    v_reset: float | None,
    detach_reset: bool,
    strict: bool,
    surrogate_scalars: tuple[str, ...],
) -> StepGraph:
    if surrogate.spiking and not type(surrogate).heaviside_forward:
        raise TraceError(
            f"the surrogate {type(surrogate).__name__}'s spiking forward is not a Heaviside "
            "step (a multi-level count, a random draw), and the fused kernels fire by one; "
            "backend='torch' runs it"
        )
    x = var("x")
    states = [var(f"state_{n}") for n in decl.state_names]
    params = {p: var(f"param_{p}") for p in decl.param_names}
    theta = var("theta")
    name = decl.name
    out = _trace(f"{name}.charge", decl.charge, x, *states,
                 **{k: params[k] for k in decl.charge_params})  # fmt: skip
    h, new_aux = decl.charged(out)  # a wrong count raises, as in the reference loop
    if new_aux is None:
        h, aux = apply("add", h, 0.0), list(states[1:])
    else:
        aux = list(new_aux)
    theta_eff = theta
    if decl.threshold is not None:  # a state-dependent threshold (fire and soft reset)
        thr_kw = {k: params[k] for k in decl.threshold_params}
        theta_eff = apply("add", _trace(f"{name}.threshold", decl.threshold, theta, *aux,
                                        **thr_kw), 0.0)  # fmt: skip

    def spike_of(u: object) -> Expr:
        """The spike function, as the reference loop's surrogate computes it."""
        if surrogate.spiking:
            return apply("spike_strict" if strict else "spike", u)
        # the smooth primitive, as the reference path runs it (spiking=False)
        primitive = type(surrogate).primitive
        return apply("tofloat", _trace(f"{type(surrogate).__name__}.primitive", primitive, u,
                                       **surrogate.params))  # fmt: skip

    event = None  # the hard reset's event, when a declared fire rule gives one
    if decl.fire is not None:  # the neuron's own fire rule (a ternary neuron's)
        fire_kw = {k: params[k] for k in decl.fire_params}
        fired = _trace(f"{name}.fire", decl.fire, h, theta_eff, spike_of, *aux, **fire_kw)
        spike, event = decl.fired(fired)
        spike = apply("add", spike, 0.0)  # a number (a constant output) as an expression
        if event is not None:
            event = apply("add", event, 0.0)
    else:
        spike = spike_of(apply("sub", h, theta_eff))
    s_reset = apply("nograd", spike) if detach_reset else spike
    if decl.update is not None:
        upd = _trace(f"{name}.update", decl.update, h, spike, *aux,
                     **{k: params[k] for k in decl.update_params})  # fmt: skip
        aux = list(decl.updated(upd))
    if decl.reset_membrane is not None:  # the neuron's own reset (aux after update)
        rst_kw = {k: params[k] for k in decl.reset_params}
        v_new = apply("add", _trace(f"{name}.reset_membrane", decl.reset_membrane, h, s_reset,
                                    theta_eff, *aux, **rst_kw), 0.0)  # fmt: skip
    elif v_reset is None:
        v_new = apply("sub", h, apply("mul", theta_eff, s_reset))
    else:
        if event is not None:
            s_reset = apply("nograd", event) if detach_reset else event
        v_new = apply(
            "add",
            apply("mul", h, apply("sub", 1.0, s_reset)),
            apply("mul", v_reset, s_reset),
        )
    new_state = (v_new, *(apply("add", a, 0.0) for a in aux))

    sg_params = {
        n: var(f"sg_{n}") if n in surrogate_scalars else v for n, v in surrogate.params.items()
    }
    derivative = type(surrogate).derivative

    def surrogate_grad(u: Expr) -> Expr:
        d = _trace(f"{type(surrogate).__name__}.derivative", derivative, u, **sg_params)
        return apply("tofloat", d)

    cotangents = [var("grad_spike"), *(var(f"grad_state_{n}") for n in decl.state_names)]
    wrt = [x, *states, *params.values(), theta]
    outputs = [spike, *new_state]
    n_states = len(states)
    # Each output's part of the vector-Jacobian product, alone (cotangent k, the others 0).
    parts = [
        vjp(outputs, [c if i == k else const(0.0) for i, c in enumerate(cotangents)], wrt,
            surrogate_grad)
        for k in range(len(cotangents))
    ]  # fmt: skip
    final_only = _final_only_states(parts, n_states)
    # The states whose cotangent can only come from their final state's gradient are
    # guarded at every step; the others as plain products (for a neuron without such a
    # state, all of them: the vjp of every output at once, as before).
    if final_only:
        grads = _guarded_vjp(outputs, cotangents, wrt, surrogate_grad, parts,
                             frozenset(1 + i for i in final_only))  # fmt: skip
    else:
        grads = vjp(outputs, cotangents, wrt, surrogate_grad)
    last_step = _guarded_vjp(outputs, cotangents, wrt, surrogate_grad, parts,
                             frozenset(range(1, len(cotangents))))  # fmt: skip
    return StepGraph(
        decl=decl,
        spike=spike,
        new_state=new_state,
        v_after_reset=v_new,
        grad_x=grads[0],
        grad_state=tuple(grads[1 : 1 + n_states]),
        grad_params=tuple(grads[1 + n_states : 1 + n_states + len(params)]),
        grad_theta=grads[-1],
        last_step=last_step,
        final_only=tuple(decl.state_names[i] for i in final_only),
        surrogate_scalars=tuple(surrogate_scalars),
    )


def _nonzero(e: Expr) -> bool:
    return not (e.is_const and e.value == 0)


def _final_only_states(parts: list[list[Expr]], n_states: int) -> tuple[int, ...]:
    """The states (indices into the declaration's states) that reach neither the spike nor
    the membrane ``v`` through any number of steps, along paths that carry a gradient:
    the complement of the smallest set that holds ``v`` (state 0, whose recorded
    membrane may have a gradient at every step) and every state that the spike or a
    state of the set reads with a gradient. ``parts[k][1 + i]``: the gradient of state
    ``i`` from output ``k`` (the spike, then the new states) alone."""
    live = {0}
    readers = [0, 1]  # outputs whose cotangent may be non-zero before the last step
    while readers:
        k = readers.pop()
        for i in range(n_states):
            if i not in live and _nonzero(parts[k][1 + i]):
                live.add(i)
                readers.append(1 + i)
    return tuple(i for i in range(n_states) if i not in live)


def _guarded_vjp(
    outputs: list[Expr],
    cotangents: list[Expr],
    wrt: list[Expr],
    surrogate_grad: Callable[[Expr], Expr],
    parts: list[list[Expr]],
    guarded: frozenset[int],
) -> tuple[Expr, ...]:
    """The vector-Jacobian product with the parts of the outputs in ``guarded`` (indices
    into ``outputs``) counted only where their cotangent is not zero (see
    :attr:`StepGraph.last_step` and :attr:`StepGraph.final_only`): the other outputs'
    parts as one product, then each guarded output's part (``parts[k]``, its product
    alone), in order. The spike's part is never guarded: the spikes' gradient is always
    given (a zero in it, from a loss on ``spikes[:-1]``, multiplies a NaN Jacobian into
    NaN, as in the reference). A guarded part left out adds ``-0.0``, the sum's identity
    (a ``-0.0`` gradient keeps its sign)."""
    zero = const(0.0)
    free = [zero if k in guarded else c for k, c in enumerate(cotangents)]
    totals = list(vjp(outputs, free, wrt, surrogate_grad))
    for k in sorted(guarded):
        for i, part in enumerate(parts[k]):
            if not _nonzero(part):
                continue
            part = apply("where", apply("ne", cotangents[k], 0.0), part, -0.0)
            totals[i] = apply("add", totals[i], part)
    return tuple(totals)
