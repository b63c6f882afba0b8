"""Reverse-mode differentiation of :mod:`spikeflow.kernels.expr` graphs: each
operation's partial derivatives, as PyTorch's autograd defines them (ties, NaNs, zero
bases and exponents included), and :func:`vjp`, which the step builder uses for the
fused kernels' backward. :mod:`spikeflow.kernels.expr` re-exports :func:`vjp`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from spikeflow.errors import ConfigurationError
from spikeflow.kernels.expr import BOOLEAN, Expr, apply, const, topological

__all__ = ["vjp"]


#: A partial derivative, or how the gradient ``g`` reaches an argument when PyTorch
#: selects it rather than multiplying by a 0/1 mask (a NaN or inf ``g`` is then dropped,
#: not turned into NaN by ``g * 0``).
Partial = Expr | Callable[[Expr], Expr] | None


def _selected(condition: Expr, when_true: bool) -> Callable[[Expr], Expr]:
    """The gradient where ``condition`` is ``when_true``, else 0 (PyTorch's ``where``)."""
    if when_true:
        return lambda g: apply("where", condition, g, 0.0)
    return lambda g: apply("where", condition, 0.0, g)


def _partials(node: Expr, surrogate: Callable[[Expr], Expr] | None) -> list[Partial]:
    """d node / d arg for each argument (None: no gradient), see :data:`Partial`."""
    a = node.args
    op = node.op
    if op == "add":
        return [const(1.0), const(1.0)]
    if op == "sub":
        return [const(1.0), const(-1.0)]
    if op == "mul":
        return [a[1], a[0]]
    if op == "div":
        return [apply("div", 1.0, a[1]), apply("neg", apply("div", node, a[1]))]
    if op == "neg":
        return [const(-1.0)]
    if op == "pow":
        # As PyTorch's pow_backward_self / pow_backward_exponent: no gradient to the base
        # where the exponent is 0, none to the exponent where the base is 0 and the
        # exponent >= 0 (0 * log(0) would be NaN there).
        base, ex = a
        d_base = apply("mul", ex, apply("pow", base, apply("sub", ex, 1.0)))
        if ex.is_const:
            return [d_base, None]
        d_base = apply("where", apply("eq", ex, 0.0), 0.0, d_base)
        d_ex = apply("mul", node, apply("log", base))
        if not base.is_const or base.value == 0:
            zero_base = apply("land", apply("eq", base, 0.0), apply("ge", ex, 0.0))
            d_ex = apply("where", zero_base, 0.0, d_ex)
        return [d_base, d_ex]
    if op == "exp":
        return [node]
    if op == "expm1":
        return [apply("add", node, 1.0)]
    if op == "log":
        return [apply("div", 1.0, a[0])]
    if op == "log1p":
        return [apply("div", 1.0, apply("add", a[0], 1.0))]
    if op == "sigmoid":
        return [apply("mul", node, apply("sub", 1.0, node))]
    if op == "tanh":
        return [apply("sub", 1.0, apply("mul", node, node))]
    if op == "atan":
        return [apply("div", 1.0, apply("add", 1.0, apply("mul", a[0], a[0])))]
    if op in ("erf", "erfc"):
        gauss = apply("exp", apply("neg", apply("mul", a[0], a[0])))
        d = apply("mul", 2 / math.sqrt(math.pi), gauss)
        return [d if op == "erf" else apply("neg", d)]
    if op == "abs":
        return [apply("sign", a[0])]
    if op == "sqrt":
        return [apply("div", 0.5, node)]
    if op == "rsqrt":
        return [apply("mul", -0.5, apply("div", node, a[0]))]
    if op == "sin":
        return [apply("cos", a[0])]
    if op == "cos":
        return [apply("neg", apply("sin", a[0]))]
    if op == "relu":  # threshold_backward: 0 where the input <= 0 (NaN passes the gradient)
        return [_selected(apply("le", a[0], 0.0), False)]
    if op in ("maximum", "minimum"):
        # As PyTorch: the gradient is halved on a tie and zero for the loser; a NaN
        # (neither wins) passes it to both.
        first_loses, second_loses = ("lt", "gt") if op == "maximum" else ("gt", "lt")
        tie = apply("eq", a[0], a[1])

        def share(loses: str) -> Callable[[Expr], Expr]:
            halved = apply("where", tie, 0.5, 1.0)
            return lambda g: apply("where", apply(loses, *a), 0.0, apply("mul", g, halved))

        return [share(first_loses), share(second_loses)]
    if op == "where":
        return [None, _selected(a[0], True), _selected(a[0], False)]
    if op in ("spike", "spike_strict"):
        if surrogate is None:
            raise ConfigurationError("a spike in the equations needs a surrogate derivative")
        return [surrogate(a[0])]
    if op == "tofloat" and a[0].op not in BOOLEAN:  # a cast of a value (see _cast)
        return [const(1.0)]
    # sign, floor, comparisons, tofloat (of a comparison), nograd: no gradient (as
    # PyTorch's floor, whose derivative is 0 everywhere)
    return [None] * len(a)


def vjp(
    outputs: list[Expr],
    cotangents: list[Expr],
    wrt: list[Expr],
    surrogate: Callable[[Expr], Expr] | None = None,
) -> list[Expr]:
    """Vector-Jacobian product: ``sum_k cotangent_k * d output_k / d w`` for each ``w``.

    ``surrogate(u)`` gives the derivative used for ``spike(u)`` nodes.
    """
    order = topological(outputs)
    adjoint: dict[int, Expr] = {}
    for out, cot in zip(outputs, cotangents):
        adjoint[id(out)] = apply("add", adjoint.get(id(out), const(0.0)), cot)
    for node in reversed(order):
        g = adjoint.get(id(node))
        if g is None or (g.is_const and g.value == 0) or not node.args:
            continue
        for arg, d in zip(node.args, _partials(node, surrogate)):
            if d is None or arg.is_const:
                continue
            contribution = d(g) if callable(d) else apply("mul", g, d)
            prev = adjoint.get(id(arg))
            adjoint[id(arg)] = contribution if prev is None else apply("add", prev, contribution)
    return [adjoint.get(id(w), const(0.0)) for w in wrt]
