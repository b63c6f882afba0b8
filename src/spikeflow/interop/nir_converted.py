"""NIR export of a converted network (:class:`~spikeflow.conversion.ConvertedSNN`).

A converted SNN is the ANN's traced graph (a ``torch.fx.GraphModule``) run on time
folded into the batch, with IF neurons (soft reset, initial membrane ``V0``, spikes worth
``θ``) in place of the activations. Its export walks that graph:

* convolutions, linear layers, average pooling and flatten (modules or
  ``torch.flatten`` / ``F.avg_pool2d`` calls) become their NIR nodes; identities and
  dropouts vanish; a sum ``a + b`` becomes two edges into the next node, and a
  difference, a negation or a product with a number puts a factor on a summand (a
  summand reached twice, ``h + dropout(h)``, is one edge with the factors summed:
  :func:`~.nir_sums.merge_sources`);
* each neuron becomes a NIR ``IF`` node emitting 0/1 spikes. A spike is worth ``θ`` in
  the SNN, so ``θ`` is folded into the next convolution or linear layer (its input
  columns are multiplied by ``θ``), carried through average pooling and flatten, and
  written as a NIR ``Scale`` node only where it cannot be folded (into a neuron, e.g.
  a residual addition, or into the output);
* soft reset and the initial membrane have no NIR field: they are kept in the node's
  metadata (``soft_reset='metadata'``), which only spikeflow reads back. Another tool
  would run the graph with reset to 0 and an empty membrane.

Gated max pooling and group neurons have no NIR equivalent and are refused by name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from spikeflow.conversion.group import GroupNeuron
from spikeflow.conversion.neuron import ConversionIFNode
from spikeflow.conversion.pooling import GatedMaxPool
from spikeflow.conversion.snn import ConvertedSNN, TimeFolded
from spikeflow.errors import ConfigurationError
from spikeflow.interop.nir_sums import linear_role, merge_sources, scaled_sources

__all__ = ["converted_to_nir"]

#: A value of the graph: the sum of NIR node outputs, each times a pending scale (None: 1).
Sources = list[tuple[str, "np.ndarray | None"]]

_PASS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_FLATTEN = (torch.flatten, "flatten")
_AVG_POOL = (F.avg_pool2d,)
_POOL_ARGS = (
    "kernel_size",
    "stride",
    "padding",
    "ceil_mode",
    "count_include_pad",
    "divisor_override",
)


class _ShapeRecorder(fx.Interpreter):
    """Per-sample output shape of every node, from one run of one step on zeros."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[fx.Node, tuple[int, ...]] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, Tensor):
            self.shapes[n] = tuple(int(s) for s in result.shape[1:])
        return result


def _dtype(snn: ConvertedSNN) -> torch.dtype:
    """The network's dtype (its parameters'; the default dtype without any)."""
    param = next(iter(snn.parameters()), None)
    return param.dtype if param is not None else torch.get_default_dtype()


def _record_shapes(
    gm: fx.GraphModule, sample_shape: tuple[int, ...], dtype: torch.dtype
) -> dict[fx.Node, tuple[int, ...]]:
    folded = [m for m in gm.modules() if isinstance(m, TimeFolded)]
    recorder = _ShapeRecorder(gm)
    for module in folded:
        module.steps = 1
    try:
        with torch.no_grad():
            recorder.run(torch.zeros((1, *sample_shape), dtype=dtype))
    finally:
        for module in folded:
            module.steps = None
    return recorder.shapes


def _uniform_per_channel(scale: np.ndarray) -> np.ndarray | None:
    """The per-channel values ``[C]`` of a ``[C, *spatial]`` scale, if constant in space."""
    if scale.ndim < 1:
        return None
    flat = scale.reshape(scale.shape[0], -1)
    return flat[:, 0].copy() if np.all(flat == flat[:, :1]) else None


class _Walker:
    def __init__(
        self,
        nir: Any,
        ctx: Any,
        gm: fx.GraphModule,
        shapes: dict[fx.Node, tuple[int, ...]],
        handlers: dict[str, Callable],
        dtype: torch.dtype,
    ) -> None:
        self.nir, self.ctx, self.gm, self.shapes = nir, ctx, gm, shapes
        self.handlers = handlers
        # Scale nodes keep the network's precision (a float64 θ must stay exact).
        self.dtype = np.float64 if dtype == torch.float64 else np.float32
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.values: dict[fx.Node, Sources] = {}
        self.scaled: dict[tuple[str, bytes], str] = {}
        self.bad: list[str] = []

    # -- helpers ------------------------------------------------------------------------

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        return self.shapes[node]

    def materialize(self, sources: Sources, shape: tuple[int, ...]) -> list[str]:
        """NIR node names whose outputs sum to the value (``Scale`` nodes where needed)."""
        names = []
        for name, scale in sources:
            if scale is None or np.all(scale == 1):
                names.append(name)
                continue
            key = (name, np.ascontiguousarray(scale).tobytes())
            if key not in self.scaled:
                scale_name = (
                    f"{name}_scale"
                    if f"{name}_scale" not in self.nodes
                    else f"{name}_scale{len(self.scaled)}"
                )
                self.nodes[scale_name] = self.nir.Scale(
                    scale=np.broadcast_to(scale, shape).astype(self.dtype)
                )
                self.edges.append((name, scale_name))
                self.scaled[key] = scale_name
            names.append(self.scaled[key])
        return names

    def common_scale(self, sources: Sources) -> tuple[bool, np.ndarray | None]:
        """Whether all sources share one pending scale, and that scale."""
        scales = [s for _, s in sources]
        first = scales[0]
        for other in scales[1:]:
            if (first is None) != (other is None):
                return False, None
            if first is not None and other is not None and not np.array_equal(first, other):
                return False, None
        return True, first

    def add_node(self, name: str, nir_node: Any, inputs: list[str]) -> None:
        self.nodes[name] = nir_node
        self.edges.extend((src, name) for src in inputs)

    def layer(self, node: fx.Node, module: nn.Module, kind: str, source: fx.Node) -> None:
        """A stateless NIR layer of ``module`` fed by ``source``."""
        sources = self.values[source]
        shape_in, shape_out = self.shape(source), self.shape(node)
        same, scale = self.common_scale(sources)
        out_scale: np.ndarray | None = None
        if scale is not None and same:
            folded = self.fold(module, kind, scale, shape_in, shape_out)
            if folded is not None:
                module, out_scale = folded
                sources = [(name, None) for name, _ in sources]
        inputs = self.materialize(sources, shape_in)
        self.ctx.shapes[id(module)] = (shape_in, shape_out)
        self.ctx.names[id(module)] = node.name
        handler = self.handlers["flatten" if kind == "flatten" else kind]
        self.add_node(node.name, handler(module, self.ctx), inputs)
        self.values[node] = [(node.name, out_scale)]

    def fold(
        self,
        module: nn.Module,
        kind: str,
        scale: np.ndarray,
        shape_in: tuple[int, ...],
        shape_out: tuple[int, ...],
    ) -> tuple[nn.Module, np.ndarray | None] | None:
        """``module`` with the input scale folded in (and the scale left on its output)."""
        full = np.broadcast_to(scale, shape_in).copy()
        if kind == "linear":
            if len(shape_in) != 1:
                return None
            layer = copy.deepcopy(module)
            with torch.no_grad():
                layer.weight.mul_(torch.as_tensor(full, dtype=layer.weight.dtype))
            return layer, None
        per_channel = _uniform_per_channel(full)
        if kind == "conv":
            if per_channel is None or module.groups != 1:
                return None
            layer = copy.deepcopy(module)
            column = torch.as_tensor(per_channel, dtype=layer.weight.dtype)
            with torch.no_grad():
                layer.weight.mul_(column.reshape((1, -1) + (1,) * (layer.weight.dim() - 2)))
            return layer, None
        if kind == "pool":
            if per_channel is None:
                return None
            shape = (-1,) + (1,) * (len(shape_out) - 1)
            return module, np.broadcast_to(per_channel.reshape(shape), shape_out).copy()
        if kind == "flatten":
            return module, full.reshape(shape_out).copy()
        return None

    # -- the walk -------------------------------------------------------------------------

    def walk(self) -> None:
        for node in self.gm.graph.nodes:
            if any(a not in self.values for a in node.all_input_nodes):
                continue  # an input was refused already (named in self.bad)
            self.visit(node)

    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self.nodes["input"] = self.nir.Input(input_type={"input": np.array(self.shape(node))})
            self.values[node] = [("input", None)]
        elif node.op == "call_module":
            self.call_module(node, self.gm.get_submodule(str(node.target)))
        elif node.op in ("call_function", "call_method"):
            self.call(node)
        elif node.op == "output":
            (result,) = node.args
            if not isinstance(result, fx.Node):
                self.bad.append("the network's output (not one tensor)")
                return
            shape = self.shape(result)
            self.nodes["output"] = self.nir.Output(output_type={"output": np.array(shape)})
            for name in self.materialize(self.values[result], shape):
                self.edges.append((name, "output"))
        elif node.op == "get_attr":
            self.bad.append(f"'{node.target}' (a tensor attribute used in forward)")

    def call_module(self, node: fx.Node, module: nn.Module) -> None:
        source = node.args[0] if node.args else None
        if len(node.args) != 1 or node.kwargs or not isinstance(source, fx.Node):
            self.bad.append(
                f"'{node.target}' ({type(module).__name__} called with several arguments)"
            )
            return
        if isinstance(module, _PASS_MODULES):
            self.values[node] = self.values[source]
        elif isinstance(module, TimeFolded):
            self.neuron(node, module.module, source)
        elif type(module) in (nn.Linear,):
            self.layer(node, module, "linear", source)
        elif type(module) in (nn.Conv1d, nn.Conv2d):
            self.layer(node, module, "conv", source)
        elif type(module) is nn.AvgPool2d:
            self.layer(node, module, "pool", source)
        elif type(module) is nn.Flatten:
            self.layer(node, module, "flatten", source)
        elif isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
            self.bad.append(
                f"'{node.target}' ({type(module).__name__}: NIR has no max "
                "pooling; train the ANN with average pooling)"
            )
        else:
            self.bad.append(f"'{node.target}' ({type(module).__name__})")

    def neuron(self, node: fx.Node, neuron: nn.Module, source: fx.Node) -> None:
        if isinstance(neuron, GatedMaxPool):
            self.bad.append(
                f"'{node.target}' (GatedMaxPool: NIR has no max pooling; train "
                "the ANN with average pooling)"
            )
            return
        if isinstance(neuron, GroupNeuron):
            self.bad.append(
                f"'{node.target}' (GroupNeuron: it fires up to m spikes per step, "
                "which no NIR neuron does)"
            )
            return
        if not isinstance(neuron, ConversionIFNode):
            self.bad.append(f"'{node.target}' ({type(neuron).__name__})")
            return
        shape = self.shape(source)
        plain = copy.deepcopy(neuron)
        plain.weighted = False
        self.ctx.shapes[id(plain)] = (shape, shape)
        self.ctx.names[id(plain)] = node.name
        inputs = self.materialize(self.values[source], shape)
        self.add_node(node.name, self.handlers["neuron"](plain, self.ctx), inputs)
        theta = neuron.v_threshold
        theta = theta.detach().cpu().numpy() if isinstance(theta, Tensor) else np.asarray(theta)
        self.values[node] = [(node.name, np.broadcast_to(theta, shape).astype(np.float64))]

    def call(self, node: fx.Node) -> None:
        target = node.target
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        role = linear_role(node)
        if role in ("add", "sub"):  # a sum: each NIR node once, factors summed
            right = self.values[tensors[1]]
            right = scaled_sources(right, -1.0) if role == "sub" else right
            self.values[node] = merge_sources(self.values[tensors[0]] + right)
        elif role in ("neg", "mul"):  # -h, c * h: a factor pending on h's sources
            number = next((a for a in node.args if not isinstance(a, fx.Node)), -1.0)
            self.values[node] = scaled_sources(self.values[tensors[0]], float(number))
        elif target in _FLATTEN and tensors and tensors[0] is node.args[0]:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            self.layer(node, nn.Flatten(int(start), int(end)), "flatten", tensors[0])
        elif target in _AVG_POOL and tensors and tensors[0] is node.args[0]:
            options = dict(zip(_POOL_ARGS, node.args[1:]))
            options.update({k: v for k, v in node.kwargs.items() if k != "input"})
            self.layer(node, nn.AvgPool2d(**options), "pool", tensors[0])
        else:
            what = target if isinstance(target, str) else getattr(target, "__name__", target)
            self.bad.append(f"'{node.name}' (call of {what})")


def converted_to_nir(
    snn: ConvertedSNN,
    sample_shape: tuple[int, ...],
    nir: Any,
    ctx: Any,
    handlers: dict[str, Callable],
) -> tuple[dict[str, Any], list[Any]]:
    """The NIR nodes and edges of a converted SNN (see the module docstring).

    ``ctx`` and ``handlers`` are :mod:`.nir_nodes`'s context and node builders for
    ``linear``, ``conv``, ``pool``, ``flatten`` and ``neuron``, which :mod:`.nir_export`
    passes in (typed there).
    """
    body = snn.body
    if snn.coding != "rate":
        raise ConfigurationError(
            f"NIR export of a converted network needs rate coding; this one uses "
            f"coding={snn.coding!r} (a bias step and signed differences, which NIR's IF "
            "nodes do not express): convert it with coding='rate' to export it"
        )
    if isinstance(body, TimeFolded) or not isinstance(body, fx.GraphModule):
        raise ConfigurationError(
            "NIR export of a converted network needs its traced graph, but this one was "
            f"converted module by module (body: {type(body).__name__}, not a torch.fx "
            "GraphModule); make the ANN traceable by torch.fx (convert(..., trace='fx') "
            "tells why it is not)"
        )
    nested = [name for name, m in body.named_modules() if name and isinstance(m, fx.GraphModule)]
    if nested:
        raise ConfigurationError(
            "NIR export of a converted network walks one traced graph; these parts were "
            f"traced separately (their parent did not trace): {', '.join(nested)}"
        )
    dtype = _dtype(snn)
    shapes = _record_shapes(body, sample_shape, dtype)
    walker = _Walker(nir, ctx, body, shapes, handlers, dtype)
    walker.walk()
    if walker.bad:
        raise ConfigurationError(
            "NIR export of the converted network does not support: "
            + ", ".join(walker.bad)
            + ". NIR expresses IF neurons, convolutions, linear layers, average pooling, "
            "flatten, sums and differences, and products with a number (see docs/nir.md)"
        )
    return _used(walker.nodes, walker.edges)


def _used(
    nodes: dict[str, Any], edges: list[tuple[str, str]]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The nodes (and their edges) on a path to the output: a branch the network computes
    but does not use would otherwise become a second output of the NIR graph."""
    used, stack = {"input", "output"}, ["output"]
    while stack:
        target = stack.pop()
        for a, b in edges:
            if b == target and a not in used:
                used.add(a)
                stack.append(a)
    kept = [(a, b) for a, b in edges if a in used and b in used]
    return {name: node for name, node in nodes.items() if name in used}, kept
