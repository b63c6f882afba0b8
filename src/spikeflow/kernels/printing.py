"""What the C and Triton printers share: scheduling a graph into statements."""

from __future__ import annotations

from collections.abc import Callable

from spikeflow.kernels.expr import Expr, topological

__all__ = ["POW_SPECIAL", "emit", "indent", "user_name"]

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


def emit(
    targets: list[tuple[str, Expr]],
    names: dict[str, str],
    literal: Callable[[float], str],
    operation: Callable[[Expr, list[str]], str],
    define: str,
    assign: str,
) -> list[str]:
    """Statements computing every target, each common subexpression once.

    ``names`` maps variable names to code; ``literal`` prints a constant; ``operation``
    prints a node given its printed arguments; ``define`` formats a temporary's
    definition and ``assign`` a target's assignment (both with ``{name}`` and
    ``{code}``).
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
        name = f"tmp{len(temps)}"
        temps[node.key] = name
        lines.append(define.format(name=name, code=code))
    lines += [assign.format(name=dst, code=ref(e)) for dst, e in targets]
    return lines


def indent(lines: list[str], depth: int) -> str:
    """Join ``lines`` indented by ``depth`` levels of four spaces."""
    return "\n".join("    " * depth + line for line in lines)
