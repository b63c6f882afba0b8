"""Run a NIR graph as a time-major spikeflow network, and flatten nested NIR graphs.

:class:`NIRGraphNetwork` executes a graph of modules joined by NIR's edges: the input
of a node is the **sum** of the outputs of the nodes with an edge into it. The graph is
split into strongly connected components:

* a node on no cycle runs once on the whole sequence ``[T, B, ...]`` (multi-step, the
  fast path, e.g. a convolution folds time into the batch);
* the nodes of a cycle (a recurrent connection) run step by step in single-step mode;
  an edge that closes the cycle carries the value of the previous step (zero at the
  first step). The cycle is entered where input from outside arrives, so a neuron with
  a recurrent weight gets ``W_in x[t] + W_rec s[t-1]``, as in
  :class:`~spikeflow.layers.LinearRecurrentContainer`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.base import MemoryModule, check_time_major
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.functional import set_step_mode
from spikeflow.layers._time import stepping_memory
from spikeflow.layers.containers import _MultiStepOnly

__all__ = ["NIRGraphNetwork", "inline_subgraphs"]

Edge = tuple[str, str]


def _kind(node: Any) -> str:
    return type(node).__name__


def _is_graph(node: Any) -> bool:
    return hasattr(node, "nodes") and hasattr(node, "edges") and _kind(node) == "NIRGraph"


def inline_subgraphs(
    nodes: dict[str, Any], edges: Sequence[Edge]
) -> tuple[dict[str, Any], list[Edge]]:
    """Replace each nested ``NIRGraph`` node by its nodes, named ``'<graph>.<node>'``.

    Edges into the nested graph go to the nodes its ``Input`` feeds; edges out of it
    leave from the nodes that feed its ``Output`` (a self-edge on the nested graph
    becomes the feedback from its outputs to its inputs).
    """
    nodes = dict(nodes)
    edges = list(dict.fromkeys((str(a), str(b)) for a, b in edges))
    for name in [n for n, node in nodes.items() if _is_graph(node)]:
        inner_nodes, inner_edges = inline_subgraphs(nodes[name].nodes, nodes[name].edges)
        inputs = [n for n, v in inner_nodes.items() if _kind(v) == "Input"]
        outputs = [n for n, v in inner_nodes.items() if _kind(v) == "Output"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ConfigurationError(
                f"nested NIR graph '{name}' has {len(inputs)} Input and {len(outputs)} "
                "Output nodes; only nested graphs with one of each are supported"
            )
        (src,), (dst,) = inputs, outputs
        if (src, dst) in inner_edges:
            raise ConfigurationError(
                f"nested NIR graph '{name}' connects its Input straight to its Output; "
                "such pass-through graphs are not supported"
            )
        full = {n: f"{name}.{n}" for n in inner_nodes}
        entries = [full[b] for a, b in inner_edges if a == src]
        exits = [full[a] for a, b in inner_edges if b == dst]
        del nodes[name]
        nodes.update({full[n]: v for n, v in inner_nodes.items() if n not in (src, dst)})
        rewired: list[Edge] = [(full[a], full[b]) for a, b in inner_edges if a != src and b != dst]
        for a, b in edges:
            sources = exits if a == name else [a]
            targets = entries if b == name else [b]
            rewired.extend((s, t) for s in sources for t in targets)
        edges = list(dict.fromkeys(rewired))
    return nodes, edges


def _components(names: list[str], succ: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components in topological order (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in names:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(succ[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    found.reverse()
    return found


def _safe_key(name: str, taken: set[str]) -> str:
    key = re.sub(r"\W", "_", name) or "node"
    if key[0].isdigit():
        key = f"n{key}"
    base, i = key, 1
    while key in taken:
        key, i = f"{base}_{i}", i + 1
    taken.add(key)
    return key


class NIRGraphNetwork(_MultiStepOnly, nn.Module):
    """A network imported from NIR: modules joined by summing edges (module docstring).

    Call it on a time-major sequence ``[T, B, ...]``; it returns ``[T, B, ...]`` (or a
    dict of them, by output name, for a graph with several outputs). Each call starts
    from the initial state, like every multi-step spikeflow module.

    Args:
        modules: one multi-step module per NIR node, by node name.
        edges: ``(source, target)`` pairs between node names, the input and the outputs.
        input_name: the name of the graph's input.
        output_names: the names of the graph's outputs.
        input_shape: the per-sample input shape ``[...]`` the graph was made for, if
            known (spikeflow's exports record it); inputs of another shape raise.

    Attributes:
        nodes: the modules (``nn.ModuleDict``; keys are the node names made valid).
        node_names: node name -> key in :attr:`nodes`.
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        edges: Iterable[Edge],
        input_name: str,
        output_names: Sequence[str],
        input_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = None if input_shape is None else tuple(int(n) for n in input_shape)
        taken: set[str] = set()
        self.node_names = {name: _safe_key(name, taken) for name in modules}
        self.nodes = nn.ModuleDict({self.node_names[n]: m for n, m in modules.items()})
        self.input_name = input_name
        self.output_names = list(output_names)
        known = {input_name, *modules, *self.output_names}
        self.edges = list(dict.fromkeys(edges))
        for a, b in self.edges:
            for end in (a, b):
                if end not in known:
                    raise ConfigurationError(
                        f"NIR edge ({a!r}, {b!r}) names an unknown node {end!r}"
                    )
        self.preds: dict[str, list[str]] = {n: [] for n in known}
        succ: dict[str, list[str]] = {n: [] for n in modules}
        for a, b in self.edges:
            self.preds[b].append(a)
            if a in succ and b in succ:
                succ[a].append(b)
        for name in [*modules, *self.output_names]:
            if not self.preds[name]:
                raise ConfigurationError(f"NIR node {name!r} has no input edge")
        order = list(modules)
        self.plan: list[list[str]] = []
        for component in _components(order, succ):
            members = set(component)
            cyclic = len(component) > 1 or component[0] in succ[component[0]]
            if not cyclic:
                self.plan.append(component)
                continue
            # Enter the cycle where outside input arrives; then follow its edges.
            entries = [
                n for n in order if n in members and any(p not in members for p in self.preds[n])
            ]
            if not entries:
                raise ConfigurationError(f"the NIR cycle {sorted(members)} receives no input")
            ordered: list[str] = []
            queue = list(entries)
            while queue:
                n = queue.pop(0)
                if n not in ordered:
                    ordered.append(n)
                    queue.extend(s for s in succ[n] if s in members and s not in ordered)
            self.plan.append(ordered)
            for n in ordered:
                set_step_mode(self.module(n), "s")
        self._cyclic = [len(c) > 1 or c[0] in succ[c[0]] for c in self.plan]

    def module(self, name: str) -> nn.Module:
        """The module of NIR node ``name``."""
        return self.nodes[self.node_names[name]]

    @staticmethod
    def _sum(terms: list[Tensor]) -> Tensor:
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    def _run_cycle(self, ordered: list[str], values: dict[str, Tensor]) -> None:
        members = set(ordered)
        modules = [self.module(n) for n in ordered]
        for m in modules:
            for sub in m.modules():
                if isinstance(sub, MemoryModule) and sub.streaming:
                    raise StateError(
                        "NIRGraphNetwork does not stream through recurrent (cyclic) parts of "
                        "a graph: call it on whole sequences, outside streaming()"
                    )
        sources = [p for n in ordered for p in self.preds[n] if p not in members]
        outputs: dict[str, list[Tensor]] = {n: [] for n in ordered}
        previous = self._before_start(ordered, modules, values)
        with stepping_memory(modules):
            for t in range(values[sources[0]].shape[0]):
                outside = {p: values[p][t] for p in sources}
                _, current = self._step(ordered, modules, outside, previous)
                for n in ordered:
                    outputs[n].append(current[n])
                previous = current
        for n in ordered:
            values[n] = torch.stack(outputs[n])

    def _step(
        self,
        ordered: list[str],
        modules: list[nn.Module],
        outside: dict[str, Tensor],
        previous: dict[str, Tensor],
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One step of a cycle: ``(inputs, outputs)`` of its nodes."""
        members = set(ordered)
        inputs: dict[str, Tensor] = {}
        current: dict[str, Tensor] = {}
        for n, module in zip(ordered, modules):
            terms = []
            for p in self.preds[n]:
                if p not in members:
                    terms.append(outside[p])
                elif p in current:
                    terms.append(current[p])
                elif p in previous:
                    terms.append(previous[p])
            inputs[n] = self._sum(terms)
            current[n] = module(inputs[n])
        return inputs, current

    def _before_start(
        self, ordered: list[str], modules: list[nn.Module], values: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """The outputs of a cycle's nodes one step before ``t = 0``, read by its back edges.

        Neurons have not fired (0). A stateless node (a recurrent ``Affine`` weight) is
        applied to its inputs then, all 0, so it gives its bias: ``W_rec s[-1] + b = b``,
        as snnTorch's ``RLeaky``/``RSynaptic`` (whose recurrent ``nn.Linear`` has a bias)
        compute it at the first step. Without biases in the cycle this is all zeros.
        """
        stateless = [
            not any(isinstance(m, MemoryModule) for m in module.modules()) for module in modules
        ]
        if not any(stateless):
            return {}
        members = set(ordered)
        outside = {p: values[p][0] for n in ordered for p in self.preds[n] if p not in members}
        # One probe step (state discarded) gives the shape of every node's input and output.
        with torch.no_grad(), stepping_memory(modules):
            inputs, outputs = self._step(ordered, modules, outside, {})
        before: dict[str, Tensor] = {}
        for n, module, pure in zip(ordered, modules, stateless):
            if not pure:
                before[n] = torch.zeros_like(outputs[n])
                continue
            terms = [torch.zeros_like(inputs[n])]
            terms += [before[p] for p in self.preds[n] if p in before]
            before[n] = module(self._sum(terms))
        return before

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        """Run the graph on ``x`` (``[T, B, ...]``)."""
        check_time_major(x, type(self).__name__)
        if x.shape[0] == 0:
            raise ShapeError(
                f"{type(self).__name__} needs at least one time step; got shape "
                f"{tuple(x.shape)} with T = 0"
            )
        if self.input_shape is not None and tuple(x.shape[2:]) != self.input_shape:
            raise ShapeError(
                f"the NIR graph takes samples of shape {self.input_shape} (input "
                f"[T, B, {', '.join(map(str, self.input_shape))}]); got shape {tuple(x.shape)}"
            )
        values: dict[str, Tensor] = {self.input_name: x}
        for component, cyclic in zip(self.plan, self._cyclic):
            if cyclic:
                self._run_cycle(component, values)
            else:
                (name,) = component
                values[name] = self.module(name)(self._sum([values[p] for p in self.preds[name]]))
        outs = {n: self._sum([values[p] for p in self.preds[n]]) for n in self.output_names}
        return outs[self.output_names[0]] if len(outs) == 1 else outs

    def extra_repr(self) -> str:
        return f"input={self.input_name!r}, outputs={self.output_names}, edges={len(self.edges)}"
