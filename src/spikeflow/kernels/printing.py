"""What the C and Triton printers share: scheduling a graph into statements, and the
types PyTorch gives the sub-expressions of parameters and constants alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from spikeflow.kernels.expr import COMPARE, LOGICAL, UNARY, Expr, topological

if TYPE_CHECKING:
    from spikeflow.kernels.spec import KernelSpec
    from spikeflow.kernels.step import StepGraph

__all__ = [
    "POW_SPECIAL",
    "Typing",
    "emit",
    "gradient_targets",
    "indent",
    "scalar_types",
    "user_name",
]

#: The constant exponents PyTorch's pow kernels (CPU and CUDA) compute without calling
#: pow, and how: ``x ** 2`` is ``x * x``, ``x ** 3`` is ``x * x * x`` (two roundings),
#: ``x ** -1`` is ``1 / x``, ``x ** -2`` is ``1 / (x * x)``, ``x ** 0.5`` is
#: ``sqrt(x)`` and ``x ** -0.5`` is ``rsqrt(x)`` (``1 / sqrt(x)`` on the CPU, CUDA's
#: ``rsqrt`` on a GPU). ``x ** 0`` is 1 and ``x ** 1`` is ``x`` (folded by the tracer).
#: Every other exponent goes through pow.
POW_SPECIAL = {
    2.0: "square",
    3.0: "cube",
    -1.0: "reciprocal",
    -2.0: "inverse_square",
    0.5: "sqrt",
    -0.5: "rsqrt",
}


def user_name(family: str, name: str) -> str:
    """The identifier of a user-named state or parameter in generated code.

    ``family`` (letters, digits and single underscores, not ending in one) and ``name``
    are joined by a double underscore, which no internal identifier of the generated
    code contains: user names can then collide neither with the generators' own names
    (a parameter called ``theta_`` or ``x_``) nor with each other (the first ``__``
    ends the family, so the pair can be read back).
    """
    return f"{family}__{name}"


def gradient_targets(spec: KernelSpec, grads: tuple[Expr, ...], gx: str) -> list[tuple[str, Expr]]:
    """The backward's ``(destination, expression)`` pairs for ``grads`` (in
    :attr:`StepGraph.gradients`' layout): the input's gradient into ``gx``, each state's
    into ``ngs__<state>``, and those of the parameters (and threshold) the spec
    differentiates into ``dp__<param>`` (``dtheta_``)."""
    decl = spec.graph.decl
    n_st, n_p = len(decl.state_names), len(decl.param_names)
    targets = [(gx, grads[0])]
    targets += [(user_name("ngs", s), e) for s, e in zip(decl.state_names, grads[1 : 1 + n_st])]
    targets += [
        (user_name("dp", p), e)
        for p, e, wanted in zip(
            decl.param_names, grads[1 + n_st : 1 + n_st + n_p], spec.grad_params
        )
        if wanted
    ]
    if spec.grad_theta:
        targets.append(("dtheta_", grads[-1]))
    return targets


def emit(
    targets: list[tuple[str, Expr]],
    names: dict[str, str],
    literal: Callable[[float], str],
    operation: Callable[[Expr, list[str]], str],
    define: str | Callable[[Expr, str, str], str],
    assign: str,
    result: Callable[[Expr, str], str] | None = None,
    prefix: str = "tmp",
) -> list[str]:
    """Statements computing every target, each common subexpression once.

    ``names`` maps variable names to code; ``literal`` prints a constant; ``operation``
    prints a node given its printed arguments; ``define`` formats a temporary's
    definition and ``assign`` a target's assignment (both with ``{name}`` and
    ``{code}``); ``define`` may also be a function of (node, name, code). ``result``
    (node, code) prints a target's value as assigned (a cast to the kernel's type).
    Temporaries are named ``<prefix><k>``.
    """
    temps: dict[tuple, str] = {}
    lines: list[str] = []

    def ref(node: Expr) -> str:
        if node.op == "const":
            return literal(node.value)
        if node.op == "var":
            return names[node.name]
        return temps[node.key]

    for node in topological([e for _, e in targets]):
        if node.op in ("const", "var") or node.key in temps:
            continue
        code = operation(node, [ref(a) for a in node.args])
        name = f"{prefix}{len(temps)}"
        temps[node.key] = name
        if isinstance(define, str):
            lines.append(define.format(name=name, code=code))
        else:
            lines.append(define(node, name, code))
    for dst, e in targets:
        code = ref(e) if result is None else result(e, ref(e))
        lines.append(assign.format(name=dst, code=code))
    return lines


def indent(lines: list[str], depth: int) -> str:
    """Join ``lines`` indented by ``depth`` levels of four spaces."""
    return "\n".join("    " * depth + line for line in lines)


# -- the types of the scalar-only sub-expressions ---------------------------------------
# The reference loop computes every operation in the dtype PyTorch gives it. A value
# that depends on the input or a state (a per-neuron value, computed in the kernels'
# compute type T) wins every promotion: T. A sub-expression of parameters, the threshold
# and constants alone does not: Python floats combine as Python numbers (double), a
# 0-dim tensor of dtype D with Python floats computes in D (each Python float rounded
# to D first), tensors promote as usual (a per-neuron [N] tensor over a 0-dim one). The
# kernels compute such sub-expressions in those types and round the result to T where
# it meets a per-neuron value, as PyTorch does.

#: Kinds of a typed value, in PyTorch's order of precedence: a Python number, a 0-dim
#: tensor, a tensor of one or more dimensions.
WEAK, ZERO, DIM = 0, 1, 2
#: The dtypes the kernels compute in.
_COMPUTABLE = (torch.float32, torch.float64)


@dataclass(frozen=True)
class Typing:
    """The types of a graph's sub-expressions of parameters, threshold and constants.

    Nodes absent from ``compute`` are computed in the kernel's type T (they depend on a
    per-neuron value, or only on constants, which the tracer folds or which come from
    ``torch.full_like`` and friends, tensors of T, or appear in the gradients only).

    Attributes:
        T: the kernels' compute dtype.
        compute: node key -> the dtype its operation computes in (T for an operation on
            booleans only).
        value: node key -> the dtype of its value (``torch.bool`` for a comparison).
        leaves: variable name -> the dtype of its value (float64 for a Python float),
            for the parameters and the threshold whose types are known.
        weak: keys of the typed nodes and the variables that are Python numbers in the
            reference loop (not tensors): what CUDA divides by as a reciprocal.
        raw: the variables whose value is wider than T (a Python float or a float64
            0-dim tensor, in a float32 kernel) and which an operation computing in that
            wider type uses: the kernels read them unrounded too.
    """

    T: torch.dtype
    compute: dict[tuple, torch.dtype] = field(default_factory=dict)
    value: dict[tuple, torch.dtype] = field(default_factory=dict)
    leaves: dict[str, torch.dtype] = field(default_factory=dict)
    weak: frozenset = frozenset()
    raw: frozenset = frozenset()

    def is_weak(self, node: Expr) -> bool:
        """Whether ``node`` is a Python number in the reference loop (a literal, a Python
        float parameter, an expression of them)."""
        return node.op == "const" or node.key in self.weak

    def stored(self, node: Expr) -> torch.dtype:
        """The dtype a node's value is held in by the kernels (a boolean: T, 0 or 1; a
        variable: T, see ``leaves`` for the value it stands for)."""
        v = self.value.get(node.key)
        return self.T if v is None or v == torch.bool else v


def _dummy(kind: int, dtype: torch.dtype) -> object:
    if kind == WEAK:
        return True if dtype == torch.bool else 1.0
    return torch.empty((1,) * (kind == DIM), dtype=dtype)


def _promote(a: tuple[int, torch.dtype], b: tuple[int, torch.dtype]) -> torch.dtype:
    """PyTorch's result dtype of an operation on values of these (kind, dtype)."""
    if a[0] == WEAK and b[0] == WEAK:  # Python arithmetic: double
        return torch.float64
    return torch.result_type(_dummy(*a), _dummy(*b))  # type: ignore[arg-type]


def _leaf_class(tag: object) -> tuple[int, torch.dtype] | None:
    if tag is False:
        return WEAK, torch.float64
    if isinstance(tag, tuple) and len(tag) == 2 and isinstance(tag[0], torch.dtype):
        return (ZERO if tag[1] else DIM), tag[0]
    return None  # unknown: computed in T


def scalar_types(graph: StepGraph, operands: tuple, T: torch.dtype) -> Typing:
    """The types PyTorch gives the graph's scalar-only sub-expressions (see above).

    ``operands``: per declared parameter, then the threshold, ``False`` (a Python
    float) or ``(dtype, zero_dim)``; empty: everything in ``T``, untyped.

    Raises:
        ScalarPrecisionError: such a sub-expression is computed in a dtype other than
            float32/float64 (float16, an integer type), or is a per-neuron value wider
            than ``T`` (a ``torch.where`` between float64 0-dim parameters, with a
            float32 input): the kernels cannot reproduce it.
    """
    if not operands:
        return Typing(T)
    names = [f"param_{p}" for p in graph.decl.param_names] + ["theta"]
    leaf = {n: c for n, c in zip(names, map(_leaf_class, operands)) if c is not None}
    # The forward's nodes (which the backward replays): a sub-expression only the
    # gradients use is computed in T, as PyTorch's autograd formulas mostly do.
    outputs = [graph.spike, *graph.new_state]
    # Per node: None (computed in T), "const", or (kind, dtype of its value).
    cls: dict[int, object] = {}
    compute: dict[tuple, torch.dtype] = {}
    value: dict[tuple, torch.dtype] = {}
    weak: set[tuple] = {("var", n) for n, c in leaf.items() if c[0] == WEAK}
    raw: set[str] = set()
    order = topological(outputs)
    # Nodes used only by comparisons: a per-neuron value wider than T there (v >
    # a.double()) only decides a boolean, computed in the wider type (exact).
    compared: dict[int, bool] = {}
    for node in order:
        for a in node.args:
            compared[id(a)] = compared.get(id(a), True) and node.op in COMPARE
    for node in order:
        if node.op == "const":
            cls[id(node)] = "const"
            continue
        if node.op == "var":
            cls[id(node)] = leaf.get(node.name)
            continue
        args = [cls[id(a)] for a in node.args]
        typed = _typed(node, args, T)
        cls[id(node)] = None if typed is None else typed[0]
        if typed is not None:
            (kind, dtype), computed = typed
            if not compared.get(id(node), False):
                _check(node, graph, leaf, kind, dtype, computed, T)
            compute[node.key] = computed
            value[node.key] = dtype
            if kind == WEAK:
                weak.add(node.key)
            if torch.promote_types(computed, T) != T:  # wider: read wide leaves unrounded
                wide = [a.name for a in node.args if a.op == "var" and a.name in leaf]
                raw.update(n for n in wide if leaf[n][1] == computed)
    leaves = {n: c[1] for n, c in leaf.items()}
    return Typing(T, compute, value, leaves, frozenset(weak), frozenset(raw))


def _typed(
    node: Expr, args: list[object], T: torch.dtype
) -> tuple[tuple[int, torch.dtype], torch.dtype] | None:
    """((kind, dtype of the value), dtype computed in) of a node whose arguments have
    the classes ``args``; None: computed in T."""
    op = node.op
    if op in ("spike", "spike_strict"):
        return None
    if op == "where":
        cond, a, b = args
        if a is None or b is None or (a == "const" and b == "const" and cond in (None, "const")):
            return None
        ca = (WEAK, torch.float64) if a == "const" else a
        cb = (WEAK, torch.float64) if b == "const" else b
        if ca[0] == WEAK and cb[0] == WEAK:  # torch.where(c, 1.0, 2.0): the default dtype
            dtype = torch.get_default_dtype()
        else:
            dtype = _promote(ca, cb)  # type: ignore[arg-type]
        # A per-neuron condition makes a per-neuron tensor of the branches' dtype.
        kind = DIM if cond is None else max(0 if cond == "const" else cond[0], ca[0], cb[0])  # type: ignore[index]
        return (kind, dtype), dtype
    if any(a is None for a in args) or all(a == "const" for a in args):
        return None
    typed = [(WEAK, torch.float64) if a == "const" else a for a in args]
    kind = max(k for k, _ in typed)  # type: ignore[misc]
    dtypes = [d for _, d in typed]  # type: ignore[misc]
    if op in LOGICAL:
        return (kind, torch.bool), T
    if op in COMPARE:
        both_bool = all(d == torch.bool for d in dtypes)
        return (kind, torch.bool), T if both_bool else _promote(*typed)  # type: ignore[arg-type]
    if op == "nograd":
        return typed[0], T if dtypes[0] == torch.bool else dtypes[0]  # type: ignore[return-value]
    if op == "tofloat":
        if node.name:  # .to(dtype) of a value or a comparison (see expr._cast)
            dtype = getattr(torch, node.name)
        elif dtypes[0] == torch.bool:  # .float() of a comparison
            dtype = torch.float64 if kind == WEAK else torch.float32
        else:
            dtype = dtypes[0]
        return (kind, dtype), dtype
    if op in UNARY:
        if kind == WEAK:  # -a, abs(a) of a Python float (torch functions refuse those)
            return (kind, torch.float64), torch.float64
        dtype = dtypes[0] if dtypes[0].is_floating_point else torch.get_default_dtype()
        return (kind, dtype), dtype
    dtype = _promote(*typed)  # type: ignore[arg-type]
    return (kind, dtype), dtype


def _check(
    node: Expr,
    graph: StepGraph,
    leaf: dict[str, tuple[int, torch.dtype]],
    kind: int,
    dtype: torch.dtype,
    computed: torch.dtype,
    T: torch.dtype,
) -> None:
    """Refuse a typed node the kernels cannot compute as PyTorch does."""
    narrow = computed not in _COMPUTABLE
    wide = kind == DIM and dtype != torch.bool and torch.promote_types(dtype, T) != T
    if not (narrow or wide):
        return
    from spikeflow.kernels.precision import ScalarPrecisionError

    def culprit(c: tuple[int, torch.dtype]) -> bool:
        if c[0] == WEAK:  # a Python float never is: it rounds to the tensors' dtype
            return False
        if wide:
            return torch.promote_types(c[1], T) != T
        return c[1] not in _COMPUTABLE

    found = [(s.name, leaf[s.name]) for s in topological([node])
             if s.op == "var" and s.name in leaf and culprit(leaf[s.name])]  # fmt: skip
    if not found:  # a cast made it wide (x * a.double()): the tensors it is made of
        found = [(s.name, leaf[s.name]) for s in topological([node])
                 if s.op == "var" and s.name in leaf and leaf[s.name][0] != WEAK]  # fmt: skip
    name, (ckind, cdtype) = found[0] if found else ("theta", (ZERO, computed))
    what = "the threshold" if name == "theta" else f"parameter {name[len('param_') :]!r}"
    shape = () if ckind == ZERO else (-1,)
    expression = repr(node) if len(repr(node)) <= 120 else repr(node)[:117] + "..."
    raise ScalarPrecisionError(what, cdtype, shape, T, expression, dtype if wide else computed)
