"""Export a spikeflow network to a NIR graph (``nir.NIRGraph``) and write it to a file.

The network is traced with ``nirtorch`` (``torch.fx`` underneath): every supported
module becomes one NIR node, sums of branches become edges into the same node (NIR
sums the inputs of a node; a branch with a factor other than 1, as in ``h + h``,
``2 * a - b``, goes through a ``Scale`` node: :mod:`.nir_sums`), and spikeflow's
sequence containers (``SeqToANNContainer``, ``MultiStepContainer``,
``StepModeContainer``) are read as the per-step chains they are. Recurrent containers
become cycles: the output of the loop feeds back into its first node. Shapes come from
one run on ``sample_input``. The node each module becomes is built by :mod:`.nir_nodes`.
"""

from __future__ import annotations

import copy
import operator
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from spikeflow._files import give_mode
from spikeflow.base import StepModule
from spikeflow.conversion.snn import ConvertedSNN
from spikeflow.errors import ConfigurationError, ShapeError, SpikeflowError
from spikeflow.interop._nir_deps import require_nir, require_nirtorch
from spikeflow.interop.nir_attention import attention_reason, attention_refusal
from spikeflow.interop.nir_converted import converted_to_nir
from spikeflow.interop.nir_graph import inline_subgraphs
from spikeflow.interop.nir_mapping import check_dt
from spikeflow.interop.nir_modules import Scale, Threshold
from spikeflow.interop.nir_neurons import NEURON_TYPES
from spikeflow.interop.nir_nodes import (
    _PROBE_B,
    _PROBE_T,
    _avg_pool,
    _Context,
    _conv,
    _delay,
    _flatten,
    _linear,
    _neuron,
    _record_shapes,
    _scale,
    _threshold,
)
from spikeflow.interop.nir_sums import OutputSink, trace_for_nir
from spikeflow.layers import (
    Delay,
    ElementWiseRecurrentContainer,
    LinearRecurrentContainer,
    MultiStepContainer,
    Recurrent,
    SeqToANNContainer,
    StepModeContainer,
)
from spikeflow.memory import has_recomputed_blocks, undo_recompute

__all__ = ["export_to_nir", "write_nir"]

_FEATURE = "NIR export"
_SEQUENCES = (SeqToANNContainer, MultiStepContainer, StepModeContainer)


# -- recurrent containers: cycles -------------------------------------------------------


def _linear_recurrent(module: LinearRecurrentContainer, ctx: _Context) -> Any:
    nir = ctx.nir
    n_in = module.in_features
    weight = module.rc.weight.detach().cpu().numpy()
    w_x, w_y = weight[:, :n_in].copy(), weight[:, n_in:].copy()
    if module.rc.bias is None:
        input_weight = nir.Linear(weight=w_x)
    else:
        input_weight = nir.Affine(weight=w_x, bias=module.rc.bias.detach().cpu().numpy())
    shape_in, shape_out = ctx.shape_in(module), ctx.shape_out(module)
    nodes = {
        "input": nir.Input(input_type={"input": np.array(shape_in)}),
        "input_weight": input_weight,
        "cell": _trace(module.sub_module, ctx),
        "recurrent_weight": nir.Linear(weight=w_y),
        "output": nir.Output(output_type={"output": np.array(shape_out)}),
    }
    edges = [
        ("input", "input_weight"),
        ("input_weight", "cell"),
        ("cell", "recurrent_weight"),
        ("recurrent_weight", "cell"),
        ("cell", "output"),
    ]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _recurrent(module: Recurrent, ctx: _Context) -> Any:
    nir = ctx.nir
    weight = module.feedback_weight().detach().cpu().numpy()
    if module.recurrent.bias is None:
        recurrent_weight = nir.Linear(weight=weight)
    else:
        bias = module.recurrent.bias.detach().cpu().numpy()
        recurrent_weight = nir.Affine(weight=weight, bias=bias)
    if not module.self_connections:  # the zero diagonal is structural, not learned
        recurrent_weight.metadata = {"spikeflow_self_connections": False}
    nodes = {
        "input": nir.Input(input_type={"input": np.array(ctx.shape_in(module))}),
        "cell": _trace(module.sub_module, ctx),
        "recurrent_weight": recurrent_weight,
        "output": nir.Output(output_type={"output": np.array(ctx.shape_out(module))}),
    }
    edges = [
        ("input", "cell"),
        ("cell", "recurrent_weight"),
        ("recurrent_weight", "cell"),
        ("cell", "output"),
    ]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _elementwise_recurrent(module: ElementWiseRecurrentContainer, ctx: _Context) -> Any:
    nir = ctx.nir
    if module.element_wise_function not in (torch.add, operator.add, Tensor.add):
        fn = getattr(module.element_wise_function, "__name__", repr(module.element_wise_function))
        raise ConfigurationError(
            f"'{ctx.names.get(id(module), '')}' (ElementWiseRecurrentContainer): NIR sums "
            f"the inputs of a node, so only element_wise_function=torch.add exports; got {fn}"
        )
    nodes = {
        "input": nir.Input(input_type={"input": np.array(ctx.shape_in(module))}),
        "cell": _trace(module.sub_module, ctx),
        "output": nir.Output(output_type={"output": np.array(ctx.shape_out(module))}),
    }
    edges = [("input", "cell"), ("cell", "cell"), ("cell", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


_RECURRENT = (LinearRecurrentContainer, ElementWiseRecurrentContainer, Recurrent)
_HANDLERS: dict[type, Callable[[Any, _Context], Any]] = {
    **dict.fromkeys(NEURON_TYPES, _neuron),
    LinearRecurrentContainer: _linear_recurrent,
    ElementWiseRecurrentContainer: _elementwise_recurrent,
    Recurrent: _recurrent,
    Scale: _scale,
    Threshold: _threshold,
    Delay: _delay,
}
# Torch layers and their spikeflow sequence versions (subclasses with a step_mode).
_LAYER_BASES: dict[type, Callable[[Any, _Context], Any]] = {
    nn.Linear: _linear,
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.AvgPool2d: _avg_pool,
    nn.Flatten: _flatten,
}


def _handler(module: nn.Module) -> Callable[[Any, _Context], Any] | None:
    cls = type(module)
    if parametrize.is_parametrized(module):
        # torch's subclass of the layer (a pruned layer): ``.weight`` is the effective one.
        cls = cls.__bases__[0]
    if cls in _HANDLERS:
        return _HANDLERS[cls]
    for base, handler in _LAYER_BASES.items():
        # The torch layer itself, or spikeflow's sequence version of it.
        if cls is base or (issubclass(cls, base) and cls.__module__.startswith("spikeflow.")):
            return handler
    return None


def _sequential_view(module: nn.Module) -> nn.Module:
    """``module`` with spikeflow's sequence containers replaced by ``nn.Sequential``.

    They run per-step modules in order, which is what ``nn.Sequential`` means to the
    tracer (NIR nodes are per-step operators).
    """
    if isinstance(module, _SEQUENCES):
        module = nn.Sequential(OrderedDict(module.named_children()))  # same children, names
    for name, child in list(module.named_children()):
        if _handler(child) is None:
            setattr(module, name, _sequential_view(child))
    return module


def _check_supported(module: nn.Module, prefix: str, ctx: _Context, bad: list[str]) -> None:
    for name, child in module.named_children():
        qualified = f"{prefix}.{name}" if prefix else name
        ctx.names[id(child)] = qualified
        if _handler(child) is not None:
            if isinstance(child, _RECURRENT):
                inner, inner_name = child.sub_module, f"{qualified}.sub_module"
                ctx.names[id(inner)] = inner_name
                if _handler(inner) is None:
                    _check_supported(inner, inner_name, ctx, bad)
            continue
        container = isinstance(child, nn.Sequential | nn.ModuleList | nn.ModuleDict)
        library = type(child).__module__.startswith(("torch.", "spikeflow.")) and not getattr(
            child, "nir_trace_inside", False
        )  # a prepared residual block is traced into, as a user's own module
        if not container and (library or isinstance(child, StepModule)):
            bad.append(
                f"'{qualified}' ({type(child).__name__})" + attention_reason(child, qualified)
            )
            continue
        _check_supported(child, qualified, ctx, bad)


def _typed(node: Any, module: nn.Module, ctx: _Context) -> Any:
    """``node`` with its input and output types from the traced shapes of ``module``
    (nirtorch compares the types of the nodes an input feeds; nir leaves some unset,
    e.g. pooling, and infers a grouped convolution's input channels wrongly)."""
    if id(module) in ctx.shapes and not isinstance(node, ctx.nir.NIRGraph):
        shape_in, shape_out = ctx.shapes[id(module)]
        node.input_type = {"input": np.array(shape_in)}
        node.output_type = {"output": np.array(shape_out)}
    return node


def _trace(module: nn.Module, ctx: _Context) -> Any:
    """The NIR graph of ``module`` (a nested graph for each recurrent container)."""
    nirtorch = require_nirtorch(_FEATURE)
    handler = _handler(module)
    root = nn.Sequential(module) if handler is not None else _sequential_view(module)
    if handler is not None:
        ctx.names.setdefault(id(module), type(module).__name__)
    handlers = {type(m): _handler(m) for m in root.modules() if _handler(m) is not None}
    handlers[Scale] = _scale
    traced = trace_for_nir(
        root,
        tuple(handlers),
        type(module).__name__,
        lambda k: Scale(torch.tensor(k, dtype=ctx.dtype)),
    )
    shape_in, shape_out = ctx.shape_in(module), ctx.shape_out(module)
    for name, source in traced.scales:  # a Scale has the shape of what it scales
        shape = (
            shape_in
            if source.op == "placeholder"
            else ctx.shape_out(traced.module.get_submodule(str(source.target)))
        )
        scale = traced.module.get_submodule(name)
        ctx.shapes[id(scale)], ctx.names[id(scale)] = (shape, shape), name
    module_map: dict[type, Callable[[nn.Module], Any]] = {
        cls: lambda mod, h=h: _typed(h(mod, ctx), mod, ctx) for cls, h in handlers.items()
    }
    module_map[OutputSink] = lambda _: ctx.nir.Output(output_type={"output": np.array(shape_out)})
    try:
        graph = nirtorch.torch_to_nir(traced.module, module_map, default_dict={}, type_check=False)
    except (ConfigurationError, ShapeError):
        raise
    except Exception as error:
        raise ConfigurationError(
            f"NIR export could not trace {type(module).__name__}: {error}. NIR graphs are "
            "chains and branches of modules joined by sums (x + y)"
        ) from error
    nodes, edges = _drop_sink(graph.nodes, graph.edges, traced.sink)
    for node in nodes.values():
        if isinstance(node, ctx.nir.Input):
            node.input_type = {"input": np.array(shape_in)}
            node.output_type = {"output": np.array(shape_in)}
    return ctx.nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _drop_sink(
    nodes: dict[str, Any], edges: list[tuple[str, str]], sink: str
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The graph without the :class:`OutputSink` node: what fed it feeds the output, and
    its typed ``Output`` node replaces nirtorch's untyped one."""
    (output,) = [b for a, b in edges if a == sink]
    nodes = dict(nodes)
    nodes[output] = nodes.pop(sink)
    return nodes, [(a, output if b == sink else b) for a, b in edges if a != sink]


def export_to_nir(
    net: nn.Module,
    sample_input: Tensor,
    *,
    dt: float = 1.0,
    soft_reset: str = "error",
) -> Any:
    """The NIR graph (``nir.NIRGraph``) of a spikeflow network.

    Args:
        net: the network; its modules must be among those of ``docs/nir.md`` (neurons
            IF/LIF/PLIF/CubaLIF/LI, Linear, Conv1d/2d, AvgPool2d, Flatten, Delay,
            Scale, Threshold, sequence and recurrent containers), joined by calls and
            additions.
        sample_input: a time-major input ``[T, B, ...]``; only its per-sample shape
            ``[...]`` is used (the network runs once on zeros to record shapes).
        dt: the time step in NIR's time unit: time constants are written as
            ``tau_steps * dt``. ``1.0`` (default) counts time in steps; use ``1e-4`` for
            snnTorch and ``1e-3`` for Norse, whose importers assume those steps.
        soft_reset: ``'error'`` (default): a neuron with soft reset (``v_reset=None``)
            raises, since NIR resets to ``v_reset``; ``'metadata'``: export it with
            ``v_reset = 0`` and mark the soft reset in the node's metadata (only
            spikeflow reads it back).

    Returns:
        A flat ``nir.NIRGraph`` (recurrent containers are inlined as cycles) whose nodes
        carry the spikeflow arguments in ``metadata`` for an exact round trip.

    A :class:`~spikeflow.conversion.ConvertedSNN` (the output of ANN-to-SNN conversion)
    is exported from its traced graph: IF neurons with spikes 0/1, each threshold θ folded
    into the next convolution or linear layer (a NIR ``Scale`` where it cannot be), and
    the soft reset and initial membrane in the metadata, so it needs
    ``soft_reset='metadata'``. Gated max pooling and group neurons do not export.
    Blocks recomputed for training (:func:`spikeflow.memory.recompute_blocks`) export as
    the plain network (``net`` itself is not changed).

    Raises:
        MissingExtraError: ``nir`` or ``nirtorch`` is not installed (extra ``nir``).
        ConfigurationError: a module NIR cannot express (named in the message), or an
            operation the tracer does not support.
        ShapeError: ``sample_input`` is not ``[T, B, ...]``.
    """
    nir = require_nir(_FEATURE)
    require_nirtorch(_FEATURE)
    dt = check_dt(dt)
    if soft_reset not in ("error", "metadata"):
        raise ConfigurationError(f"soft_reset must be 'error' or 'metadata', got {soft_reset!r}")
    if not isinstance(net, nn.Module):
        raise ConfigurationError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    if not isinstance(sample_input, Tensor) or sample_input.dim() < 2:
        shape = tuple(sample_input.shape) if isinstance(sample_input, Tensor) else None
        raise ShapeError(
            f"sample_input must be a time-major tensor [T, B, ...], got {shape or sample_input!r}"
        )
    _refuse_quantized_membranes(net)
    _refuse_quantized_inputs(net)
    if isinstance(net, ConvertedSNN):
        return _export_converted(net, sample_input, nir, dt, soft_reset)
    view = copy.deepcopy(net)
    if has_recomputed_blocks(view):  # recomputation is for training: export the network
        view = undo_recompute(view)
    try:
        shapes = _record_shapes(view, sample_input)
    except (SpikeflowError, RuntimeError) as error:  # e.g. attention built for a fixed T
        refusal = attention_refusal(view, f"[{_PROBE_T}, {_PROBE_B}, ...]", error)
        if refusal is None:
            raise
        raise refusal from error
    ctx = _Context(nir=nir, dt=dt, soft_reset=soft_reset, shapes=shapes)
    ctx.dtype = next(
        (p.dtype for p in view.parameters() if p.is_floating_point()), sample_input.dtype
    )
    ctx.names[id(view)] = type(view).__name__
    bad: list[str] = []
    if _handler(view) is None and isinstance(view, StepModule) and not isinstance(view, _SEQUENCES):
        bad.append(f"the network itself ({type(view).__name__})" + attention_reason(view, ""))
    elif _handler(view) is None:
        _check_supported(view, "", ctx, bad)
    else:  # one supported module, e.g. a recurrent container: check what it holds
        _check_supported(nn.Sequential(OrderedDict(net=view)), "", ctx, bad)
    if bad:
        raise ConfigurationError(
            "NIR export does not support these modules: " + ", ".join(bad) + ". See "
            "docs/nir.md for the modules NIR can express."
        )
    graph = _trace(view, ctx)
    nodes, edges = inline_subgraphs(graph.nodes, graph.edges)
    flat = _type_checked_graph(nir, nodes, edges)
    flat.metadata = {"spikeflow_dt": dt, "source": "spikeflow"}
    return flat


def _refuse_quantized_membranes(net: nn.Module) -> None:
    """Raise a ConfigurationError naming the neurons whose membranes are quantized."""
    quantizers = {name or type(net).__name__: module._modules["membrane_quantizer"]
                  for name, module in net.named_modules()
                  if module._modules.get("membrane_quantizer") is not None}  # fmt: skip
    if quantizers:
        kinds = sorted({type(q).__name__ for q in quantizers.values()})
        loihi = "LoihiCubaGrid" in kinds  # (quant.loihi_grid: Loihi's integer states)
        source = "loihi_grid" if loihi else "apply_membrane_quantization"
        to_loihi = "; a network on Loihi's grids goes to Loihi by interop.export_netx"
        raise ConfigurationError(
            f"NIR export: the membranes of {', '.join(quantizers)} are quantized "
            f"({', '.join(kinds)}: spikeflow.quant.{source}), which NIR cannot express: the "
            "exported neurons would not reproduce their spikes. Export the float model "
            "(quant.remove_membrane_quantization) if that is what the target runs"
            + (to_loihi if loihi else "")
        )


def _refuse_quantized_inputs(net: nn.Module) -> None:
    """Raise a ConfigurationError naming the layers whose inputs are quantized (a
    forward pre-hook, which the exported graph would leave out)."""
    quantized = [name or type(net).__name__ for name, module in net.named_modules()
                 if module._modules.get("input_quantizer") is not None]  # fmt: skip
    if quantized:
        raise ConfigurationError(
            f"NIR export: the inputs of {', '.join(quantized)} are quantized "
            "(spikeflow.quant.apply_input_quantization), which NIR cannot express: the "
            "exported graph would take the input unrounded. Quantize the input before the "
            "exported model (or export after quant.remove_input_quantization on purpose)"
        )


def _type_checked_graph(nir: Any, nodes: dict[str, Any], edges: list[tuple[str, str]]) -> Any:
    """``nir.NIRGraph`` with NIR's own type check (every edge joins equal shapes), which
    validates the export; a mismatch the checks above missed is a ConfigurationError."""
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, type_check=True)
    except ValueError as error:
        raise ConfigurationError(
            f"NIR export: the graph's shapes do not match ({error}); nodes: "
            + ", ".join(f"{name} ({type(node).__name__})" for name, node in nodes.items())
        ) from error


def _export_converted(
    net: ConvertedSNN, sample_input: Tensor, nir: Any, dt: float, soft_reset: str
) -> Any:
    """A converted SNN: its traced graph walked node by node (:mod:`.nir_converted`)."""
    if soft_reset != "metadata":
        raise ConfigurationError(
            "a converted network's IF neurons reset by subtraction (soft reset) and start "
            "at V0 = initial_membrane·θ, and NIR neurons reset to v_reset and start at 0: "
            "pass soft_reset='metadata' to export them as NIR IF nodes with v_reset = 0 and "
            "the soft reset and V0 in the node metadata (spikeflow reads them back and runs "
            "the same network; other tools would run IF neurons with reset to 0)"
        )
    ctx = _Context(nir=nir, dt=dt, soft_reset=soft_reset, shapes={})
    builders: dict[str, Callable[[Any, _Context], Any]] = {
        "linear": _linear,
        "conv": _conv,
        "pool": _avg_pool,
        "flatten": _flatten,
        "neuron": _neuron,
    }
    handlers = {
        kind: lambda m, c, build=build: _typed(build(m, c), m, c)
        for kind, build in builders.items()
    }
    nodes, edges = converted_to_nir(net, tuple(sample_input.shape[2:]), nir, ctx, handlers)
    graph = _type_checked_graph(nir, nodes, edges)
    graph.metadata = {"spikeflow_dt": dt, "source": "spikeflow", "spikeflow_converted": True}
    return graph


def write_nir(graph: Any, path: str | Path) -> None:
    """Write a NIR graph to ``path`` (HDF5, ``nir.write``), atomically.

    The graph is written to a temporary file in the same directory, which then replaces
    ``path``: a write that fails part way leaves an existing file at ``path`` as it was.

    Raises:
        ConfigurationError: ``graph`` is not a NIR graph, or holds a value (e.g. a
            ``None`` in its metadata) that HDF5 cannot store.
        FileNotFoundError: ``path``'s folder does not exist (named).
    """
    nir = require_nir("NIR export")
    if not isinstance(graph, nir.NIRNode):
        raise ConfigurationError(
            f"write_nir expects a nir.NIRGraph (from export_to_nir), got {type(graph).__name__}"
        )
    path = Path(path)
    if not path.parent.is_dir():  # (mkstemp's error would name the temporary file)
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        nir.write(temporary, graph)
        with open(temporary, "rb") as written:  # on disk before it replaces the file
            os.fsync(written.fileno())
        give_mode(temporary, path)  # not mkstemp's 0o600, which hides it from other users
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, (TypeError, ValueError)) and not isinstance(error, SpikeflowError):
            raise ConfigurationError(
                f"could not write the NIR graph to {str(path)!r} ({type(error).__name__}: "
                f"{error}); the graph holds a value HDF5 cannot store, e.g. None in its "
                "metadata. The file was not changed"
            ) from error
        raise
