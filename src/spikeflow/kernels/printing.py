"""What the C and Triton printers share: scheduling a graph into statements."""

from __future__ import annotations

from collections.abc import Callable

from spikeflow.kernels.expr import Expr, topological

__all__ = ["emit", "indent"]


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
        name = f"t{len(temps)}"
        temps[node.key] = name
        lines.append(define.format(name=name, code=code))
    lines += [assign.format(name=dst, code=ref(e)) for dst, e in targets]
    return lines


def indent(lines: list[str], depth: int) -> str:
    """Join ``lines`` indented by ``depth`` levels of four spaces."""
    return "\n".join("    " * depth + line for line in lines)
