"""Sums of branches for NIR export, shared by the plain and the converted export.

NIR sums the inputs of a node and has one edge per pair of nodes. A value that reaches
a node more than once in a sum (``h + h``, ``a + a + b``, ``2 * h + h``) is therefore one
edge with its factors summed, written as a NIR ``Scale`` node; a duplicate edge would be
merged into one and the factor lost. :func:`merge_sources` sums the factors (both
exports use it). :func:`trace_for_nir` traces a plain network and rewrites every sum
into the form ``nirtorch`` reads: distinct summands, each module output times a number
through a ``Scale`` module, joined by ``+``; and it marks the output with an
:class:`OutputSink` so that a branch from the input straight to the output exports.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import fx, nn

from spikeflow.conversion.classify import call_name
from spikeflow.errors import ConfigurationError

__all__ = [
    "OutputSink",
    "TracedSums",
    "linear_role",
    "merge_sources",
    "scaled_sources",
    "trace_for_nir",
]

Key = TypeVar("Key", bound=Hashable)

#: The operations a NIR sum can express, by role.
_LINEAR: dict[str, frozenset[Any]] = {
    "add": frozenset({operator.add, torch.add, "add"}),
    "sub": frozenset({operator.sub, torch.sub, "sub"}),
    "neg": frozenset({operator.neg, torch.neg, "neg"}),
    "mul": frozenset({operator.mul, torch.mul, "mul"}),
}


def merge_sources(sources: Iterable[tuple[Key, Any]]) -> list[tuple[Key, np.ndarray | None]]:
    """``sources`` (summands: a key and a factor, ``None`` for 1) with each key once and
    its factors summed: ``h + dropout(h)`` is ``2 h``, since NIR has one edge per pair of
    nodes. Summed factors are float64 arrays; a factor of a single summand is kept."""
    merged: dict[Key, Any] = {}
    for key, scale in sources:
        if key not in merged:
            merged[key] = scale
            continue
        previous = merged[key]
        merged[key] = (1.0 if previous is None else previous) + (1.0 if scale is None else scale)
    return [
        (key, None if s is None else np.asarray(s, dtype=np.float64)) for key, s in merged.items()
    ]


def scaled_sources(sources: Iterable[tuple[Key, Any]], factor: float) -> list[tuple[Key, Any]]:
    """``sources`` with every factor multiplied by the number ``factor``."""
    return [
        (key, np.asarray((1.0 if s is None else s) * factor, dtype=np.float64))
        for key, s in sources
    ]


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def linear_role(node: fx.Node) -> str | None:
    """``'add'``, ``'sub'``, ``'neg'`` or ``'mul'`` when ``node`` is a sum, difference or
    negation of signals, or a signal times a number (the operations a NIR sum with
    ``Scale`` nodes expresses); ``None`` otherwise."""
    if node.op not in ("call_function", "call_method") or node.kwargs:
        return None
    role = next((r for r, targets in _LINEAR.items() if node.target in targets), None)
    signals = [a for a in node.args if isinstance(a, fx.Node)]
    if role in ("add", "sub") and len(node.args) == 2 == len(signals):
        return role
    if role == "neg" and len(node.args) == 1 == len(signals):
        return role
    if role == "mul" and len(node.args) == 2 and len(signals) == 1:
        other = node.args[1] if node.args[0] is signals[0] else node.args[0]
        return role if _is_number(other) else None
    return None


def _terms(node: fx.Node) -> list[tuple[fx.Node, Any]]:
    """``node`` as summands: module outputs (or the input) with their factors."""
    role = linear_role(node)
    if role is None:
        return [(node, None)]
    if role == "neg":
        return scaled_sources(_terms(node.args[0]), -1.0)
    if role == "mul":
        signal, number = node.args if isinstance(node.args[0], fx.Node) else node.args[::-1]
        return scaled_sources(_terms(signal), float(number))
    left, right = _terms(node.args[0]), _terms(node.args[1])
    return left + (scaled_sources(right, -1.0) if role == "sub" else right)


class OutputSink(nn.Module):
    """Marks the network's output while it is traced for NIR; removed from the graph after
    (it gives the output a node with a type, which nirtorch needs when the input feeds it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``."""
        return x


class _Tracer(fx.Tracer):
    """``torch.fx`` tracing with the exported module types as leaves (as nirtorch's)."""

    def __init__(self, leaves: tuple[type[nn.Module], ...]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, module_qualified_name)


@dataclass
class TracedSums:
    """A traced network prepared for nirtorch (see :func:`trace_for_nir`).

    Attributes:
        module: the graph module to pass to ``nirtorch.torch_to_nir``.
        scales: each inserted ``Scale`` module's name in ``module`` and the node whose
            output it scales (its shape is that node's output shape).
        sink: the name of the :class:`OutputSink` in ``module``.
    """

    module: fx.GraphModule
    scales: list[tuple[str, fx.Node]] = field(default_factory=list)
    sink: str = "spikeflow_output"


def _free_name(gm: fx.GraphModule, base: str) -> str:
    name, i = base, 1
    while hasattr(gm, name):
        name, i = f"{base}_{i}", i + 1
    return name


def _why_not(node: fx.Node) -> str:
    """What a call that :func:`linear_role` refuses is, for the error message."""
    name = call_name(node)
    role = next((r for r, targets in _LINEAR.items() if node.target in targets), None)
    if role is None:
        return name
    if node.kwargs:
        return f"{name} with {', '.join(f'{key}=' for key in node.kwargs)}"
    if role == "mul":
        return f"{name} of two signals, or of a signal and a tensor"
    return f"{name} with a constant operand; NIR sums node outputs only"


def _check_operations(graph: fx.Graph, where: str) -> None:
    """Raise one error naming every operation a NIR graph cannot express."""
    bad = []
    for node in graph.nodes:
        if node.op in ("call_function", "call_method") and linear_role(node) is None:
            bad.append(f"'{node.name}' ({_why_not(node)})")
        elif node.op == "get_attr":
            bad.append(f"'{node.target}' (a tensor attribute used in forward)")
        elif node.op == "output" and not isinstance(node.args[0], fx.Node):
            bad.append("the returned value (not one tensor)")
    if bad:
        raise ConfigurationError(
            f"NIR export cannot express these operations in {where}.forward(): "
            + ", ".join(bad)
            + ". NIR graphs are modules joined by sums of their outputs: a + b, a - b, -a "
            "and a number times a (a Scale node) export; concatenation, products of "
            "signals, indexing, other calls and arguments such as alpha= do not"
        )


def _factors(node: fx.Node) -> list[tuple[fx.Node, float]]:
    """The distinct summands of the sum ``node`` with their factors (as numbers)."""
    return [
        (term, 1.0 if factor is None else float(factor))
        for term, factor in merge_sources(_terms(node))
    ]


def _scaled_node(
    traced: TracedSums,
    node: fx.Node,
    factor: float,
    cache: dict[tuple[fx.Node, float], fx.Node],
    make_scale: Callable[[float], nn.Module],
) -> fx.Node:
    """A call of a new ``make_scale(factor)`` module on ``node`` (one per node and factor)."""
    if (node, factor) not in cache:
        gm = traced.module
        name = _free_name(gm, f"{node.name}_scale")
        gm.add_submodule(name, make_scale(factor))
        with gm.graph.inserting_after(node):
            cache[(node, factor)] = gm.graph.call_module(name, (node,))
        traced.scales.append((name, node))
    return cache[(node, factor)]


def trace_for_nir(
    root: nn.Module,
    leaves: tuple[type[nn.Module], ...],
    where: str,
    make_scale: Callable[[float], nn.Module],
) -> TracedSums:
    """Trace ``root`` and rewrite its sums for nirtorch.

    Every input of a module (and the output) that is a sum is rebuilt from its distinct
    summands (:func:`merge_sources`): a summand with a factor other than 1 goes through
    a new ``make_scale(factor)`` module, a factor of 0 drops it, and the summands are
    joined by ``+`` (which nirtorch turns into edges into the same node).

    Raises:
        ConfigurationError: the network does not trace, uses an operation NIR cannot
            express (all named), or a sum whose summands cancel.
    """
    tracer = _Tracer(leaves)
    try:
        graph = tracer.trace(root)
    except Exception as error:
        raise ConfigurationError(
            f"NIR export could not trace {where}: {error}. NIR graphs are chains and "
            "branches of modules joined by sums (x + y); other operations in forward() "
            "(concatenation, products, indexing, control flow) do not export"
        ) from error
    _check_operations(graph, where)
    gm = fx.GraphModule(tracer.root, graph)
    traced = TracedSums(gm, sink=_free_name(gm, "spikeflow_output"))
    gm.add_submodule(traced.sink, OutputSink())
    output = next(n for n in graph.nodes if n.op == "output")
    with graph.inserting_before(output):
        output.args = (graph.call_module(traced.sink, (output.args[0],)),)
    scaled: dict[tuple[fx.Node, float], fx.Node] = {}
    for consumer in [n for n in graph.nodes if n.op == "call_module"]:
        for arg in consumer.all_input_nodes:
            if linear_role(arg) is None:
                continue
            summands = [
                node if k == 1.0 else _scaled_node(traced, node, k, scaled, make_scale)
                for node, k in _factors(arg)
                if k != 0.0
            ]
            if not summands:
                raise ConfigurationError(
                    f"NIR export of {where}: the input of '{consumer.name}' ('{arg.name}') "
                    "is a sum whose terms cancel (always 0); NIR has no constant-zero node"
                )
            total = summands[0]
            with graph.inserting_before(consumer):
                for summand in summands[1:]:
                    total = graph.call_function(operator.add, (total, summand))
            consumer.replace_input_with(arg, total)
    for node in reversed(list(graph.nodes)):  # what no longer reaches the output
        if node.op not in ("placeholder", "output") and not node.users:
            graph.erase_node(node)
    graph.lint()
    gm.recompile()
    return traced
