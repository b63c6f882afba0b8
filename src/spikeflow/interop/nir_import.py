"""Import a NIR graph (object or file) as a runnable spikeflow network.

Each NIR node becomes a multi-step spikeflow module (``layers.Linear``,
``layers.Conv2d``, a neuron, ...), nested graphs are inlined, and the modules are wired
by :class:`~spikeflow.interop.nir_graph.NIRGraphNetwork`, which takes time-major input
``[T, B, ...]``. Continuous time is discretised with forward Euler and the step ``dt``
(:mod:`.nir_mapping`); ``convention`` reads graphs the way a peer library means them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.interop._nir_deps import require_nir
from spikeflow.interop.nir_graph import NIRGraphNetwork, inline_subgraphs
from spikeflow.interop.nir_mapping import check_dt, default_dt
from spikeflow.interop.nir_modules import OffDiagonalLinear, Scale, Threshold
from spikeflow.interop.nir_neurons import delay_from_nir, neuron_from_metadata, neuron_from_nir
from spikeflow.layers import AvgPool2d, Conv1d, Conv2d, Delay, Flatten, Linear

__all__ = ["import_from_nir", "read_nir"]

_FEATURE = "NIR import"
_NEURONS = ("IF", "LIF", "CubaLIF", "LI")


def _tensor(value: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value), dtype=dtype)


def _ints(value: Any) -> int | tuple[int, ...] | str:
    if isinstance(value, bytes):
        value = value.decode("utf8")
    if isinstance(value, str):
        return value
    array = np.atleast_1d(np.asarray(value)).astype(np.int64)
    return tuple(int(v) for v in array) if array.size > 1 else int(array[0])


def _meta(node: Any, key: str, default: Any) -> Any:
    value = (getattr(node, "metadata", None) or {}).get(key, default)
    return bool(value) if isinstance(value, (bool, np.bool_)) else value


def _linear(node: Any, dtype: torch.dtype) -> nn.Module:
    weight = _tensor(node.weight, dtype)
    if weight.dim() != 2:
        raise ConfigurationError(
            f"NIR Linear/Affine weights must be 2-D, got {tuple(weight.shape)}"
        )
    bias = getattr(node, "bias", None)
    if _meta(node, "spikeflow_self_connections", True) is False:
        if weight.shape[0] != weight.shape[1]:
            raise ConfigurationError(
                "a NIR Linear/Affine marked spikeflow_self_connections=False must be square, "
                f"got weight {tuple(weight.shape)}"
            )
        layer: Linear = OffDiagonalLinear(weight.shape[0], bias=bias is not None, dtype=dtype)
    else:
        layer = Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(_tensor(bias, dtype).reshape(-1))
    return layer


def _conv(node: Any, dtype: torch.dtype) -> nn.Module:
    weight = _tensor(node.weight, dtype)
    cls = Conv1d if type(node).__name__ == "Conv1d" else Conv2d
    has_bias = bool(_meta(node, "spikeflow_bias", True))
    layer = cls(
        weight.shape[1] * int(node.groups),
        weight.shape[0],
        tuple(weight.shape[2:]),
        stride=_ints(node.stride),
        padding=_ints(node.padding),
        dilation=_ints(node.dilation),
        groups=int(node.groups),
        bias=has_bias,
        dtype=dtype,
    )
    with torch.no_grad():
        layer.weight.copy_(weight)
        if has_bias:
            layer.bias.copy_(_tensor(node.bias, dtype).reshape(-1))
    return layer


def _pool(node: Any) -> nn.Module:
    args = {k: _ints(getattr(node, k)) for k in ("kernel_size", "stride", "padding")}
    if type(node).__name__ == "SumPool2d":
        return AvgPool2d(**args, divisor_override=1)
    return AvgPool2d(**args)


def _flatten(node: Any) -> nn.Module:
    # NIR counts the dims of one sample; spikeflow's Flatten counts those of one step [B, ...].
    start, end = int(node.start_dim), int(node.end_dim)
    return Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)


def _shape(node: Any) -> tuple[int, ...]:
    for field in ("v_threshold", "tau", "r"):
        if getattr(node, field, None) is not None:
            return tuple(np.shape(getattr(node, field)))
    return ()


def _node_module(
    node: Any, name: str, dt: float, convention: str, dtype: torch.dtype, exact: bool
) -> nn.Module:
    kind = type(node).__name__
    if kind in ("Linear", "Affine"):
        return _linear(node, dtype)
    if kind in ("Conv1d", "Conv2d"):
        return _conv(node, dtype)
    if kind in ("AvgPool2d", "SumPool2d"):
        return _pool(node)
    if kind == "Flatten":
        return _flatten(node)
    if kind == "Scale":
        return Scale(_tensor(node.scale, dtype))
    if kind == "Threshold":
        strict = bool(_meta(node, "spikeflow_strict_firing", True))
        return Threshold(_tensor(node.threshold, dtype), strict=strict)
    if kind == "Delay":
        return Delay(delay_from_nir(node, name, dt))
    if kind in _NEURONS:
        if exact:
            nir = require_nir(_FEATURE)
            module = neuron_from_metadata(nir, node, _shape(node), dt, name)
            if module is not None:
                return module
        return neuron_from_nir(node, name, dt, convention, dtype)
    raise ConfigurationError(
        f"NIR node '{name}' has type {kind}, which spikeflow does not import (supported: "
        "Input, Output, Linear, Affine, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, "
        "Scale, Threshold, Delay, IF, LIF, CubaLIF, LI and nested NIRGraph)"
    )


def read_nir(path: str | Path) -> Any:
    """Read a NIR graph from an HDF5 file written by ``nir.write`` / :func:`write_nir`.

    Raises:
        ConfigurationError: the file does not exist, or is not a valid NIR file (damaged,
            truncated, another format); the message names it.
    """
    nir = require_nir(_FEATURE)
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"NIR file {str(path)!r} does not exist")
    # nir's reader rebuilds each node and infers a grouped convolution's input channels
    # as weight.shape[1] (in_channels / groups): read without its type check, correct
    # those input types, then check.
    try:
        graph = nir.read(str(path), type_check=False)
    except PermissionError:
        raise
    except (OSError, KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        # h5py: not an HDF5 file (OSError); nir: a missing field (KeyError), a bad value.
        raise ConfigurationError(
            f"{str(path)!r} is not a valid NIR file ({type(error).__name__}: {error}); it "
            "may be damaged or truncated, or not have been written by nir.write/write_nir"
        ) from error
    _fix_grouped_convs(graph, nir)
    if isinstance(graph, nir.NIRGraph):
        try:
            graph.infer_types()
        except ValueError as error:  # a well-formed file whose node types disagree
            raise ConfigurationError(
                f"NIR file {str(path)!r} was read, but its node types do not fit together ({error})"
            ) from error
    return graph


def _fix_grouped_convs(node: Any, nir: Any) -> None:
    """Set the input type of every grouped Conv1d/Conv2d under ``node`` to all its
    input channels (``weight.shape[1] * groups``)."""
    for child in getattr(node, "nodes", {}).values():
        _fix_grouped_convs(child, nir)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)) and int(node.groups) > 1:
        shape = node.input_type.get("input")
        if shape is not None:
            channels = int(node.weight.shape[1]) * int(node.groups)
            node.input_type = {"input": np.array([channels, *np.asarray(shape)[1:]])}


def import_from_nir(
    graph: Any,
    *,
    dt: float | None = None,
    convention: str = "nir",
    dtype: torch.dtype = torch.float32,
) -> NIRGraphNetwork:
    """A spikeflow network that runs a NIR graph on time-major input ``[T, B, ...]``.

    Args:
        graph: a ``nir.NIRGraph``, or the path of a NIR file.
        dt: the time step, in the graph's time unit. Default: the ``dt`` spikeflow
            exported the graph with (graph metadata), else the convention's
            (``'nir'``: 1, ``'snntorch'``: 1e-4, ``'norse'``: 1e-3).
        convention: how to read the neurons: ``'nir'`` (the NIR equations with forward
            Euler), ``'snntorch'`` (the same, ``dt = 1e-4``), or ``'norse'`` (Norse's
            cells: ``r`` ignored by IF/LIF/LI, CubaLIF input added to the current
            without the ``dt/tau_syn`` factor). See ``docs/nir.md``.
        dtype: dtype of weights and per-neuron parameters (default float32).

    Returns:
        A :class:`NIRGraphNetwork`. Nodes spikeflow exported come back as the exact
        spikeflow modules (arguments from the node metadata, if it agrees with the node).

    Raises:
        MissingExtraError: ``nir`` is not installed (extra ``nir``).
        ConfigurationError: an unsupported node type (named), a time constant shorter
            than ``dt``, several graph inputs, or a malformed graph.
    """
    nir = require_nir(_FEATURE)
    if isinstance(graph, (str, Path)):
        graph = read_nir(graph)
    if not isinstance(graph, nir.NIRNode):
        raise ConfigurationError(
            f"import_from_nir expects a nir.NIRGraph or a file path, got {type(graph).__name__}"
        )
    default = default_dt(convention)
    metadata = getattr(graph, "metadata", None) or {}
    if not isinstance(graph, nir.NIRGraph):
        graph = nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type=graph.input_type),
                "node": graph,
                "output": nir.Output(output_type=graph.output_type),
            },
            edges=[("input", "node"), ("node", "output")],
            type_check=False,
        )
    if dt is None:
        stored = metadata.get("spikeflow_dt") if isinstance(metadata, dict) else None
        dt = float(stored) if stored is not None and convention == "nir" else default
    dt = check_dt(dt)
    nodes, edges = inline_subgraphs(graph.nodes, graph.edges)
    inputs = [n for n, v in nodes.items() if type(v).__name__ == "Input"]
    outputs = [n for n, v in nodes.items() if type(v).__name__ == "Output"]
    if len(inputs) != 1 or not outputs:
        raise ConfigurationError(
            f"the NIR graph has {len(inputs)} Input and {len(outputs)} Output nodes; spikeflow "
            "imports graphs with exactly one Input and at least one Output"
        )
    exact = convention == "nir"
    modules = {
        name: _node_module(node, name, dt, convention, dtype, exact)
        for name, node in nodes.items()
        if name not in inputs and name not in outputs
    }
    # spikeflow's exporter writes the per-sample input shape; other tools may include the
    # batch (Norse) or leave it out, so only spikeflow's graphs are checked against it.
    shape = None
    if isinstance(metadata, dict) and str(_decode_text(metadata.get("source", ""))) == "spikeflow":
        shape = _input_shape(nodes[inputs[0]])
    return NIRGraphNetwork(modules, edges, inputs[0], outputs, input_shape=shape)


def _decode_text(value: Any) -> Any:
    return value.decode("utf8") if isinstance(value, bytes) else value


def _input_shape(node: Any) -> tuple[int, ...] | None:
    """The shape in a NIR ``Input`` node's ``input_type``, if it has one."""
    types = getattr(node, "input_type", None)
    if not isinstance(types, dict) or len(types) != 1:
        return None
    (value,) = types.values()
    if value is None:
        return None
    array = np.asarray(value)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        return None
    return tuple(int(n) for n in array)
