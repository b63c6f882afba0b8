"""Fold eval-mode batch norm into the convolution or linear layer before it (methods.md 7.1).

``BN(W x + b) = γ (W x + b - μ) / sqrt(σ² + ε) + β`` is again affine, so the pair becomes
one layer with ``W' = W · γ / sqrt(σ² + ε)`` (per output channel) and
``b' = (b - μ) · γ / sqrt(σ² + ε) + β``. Only running statistics are folded: a batch norm
that normalises with batch statistics in eval mode (``track_running_stats=False``) is not
a fixed affine map.

A batch norm normalises dim 1 of its input; the fold scales the layer's output channels,
which are dim 1 of a batched convolution's output but the *last* dim of a linear layer's.
So in a graph a ``Linear -> BatchNorm1d`` pair is folded only where the Linear's output is
``[B, F]``, which only a forward pass shows (:func:`layer_output_shapes`): on ``[B, L, F]``
the batch norm normalises the L positions, and the pair is kept.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikeflow.base import MemoryModule
from spikeflow.conversion.calibrate import batch_input
from spikeflow.errors import ConfigurationError

__all__ = [
    "FOLDABLE_LAYERS",
    "can_fold",
    "fold_batchnorm",
    "fold_batchnorm_in_graph",
    "fold_problem",
    "folded_weights",
    "layer_output_shapes",
    "module_call_counts",
    "probe_output_shapes",
    "set_submodule",
]

#: Layers whose output channels are dim 0 of the weight (transposed convs are not).
FOLDABLE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def can_fold(layer: nn.Module, bn: nn.Module) -> bool:
    """Whether ``bn`` (with running statistics, over as many channels as ``layer`` has
    outputs) can be folded into ``layer``. Whether the fold is right also depends on the
    input's shape: :func:`fold_problem` checks that too."""
    return _pairing_problem(layer, bn) is None


def _pairing_problem(layer: nn.Module, bn: nn.Module) -> str | None:
    """Why the modules ``layer -> bn`` are no foldable pair, whatever the input (None: they are)."""
    if type(layer) not in FOLDABLE_LAYERS:
        return f"{type(layer).__name__} is not a Conv1d/2d/3d or Linear"
    if not isinstance(bn, _BatchNorm):
        return f"{type(bn).__name__} is not a batch norm"
    if bn.running_mean is None or bn.running_var is None:
        return "no running statistics (track_running_stats=False)"
    if bn.num_features != layer.weight.shape[0]:
        return (
            f"{type(bn).__name__} has {bn.num_features} features, {type(layer).__name__} "
            f"{layer.weight.shape[0]} outputs"
        )
    return None


def fold_problem(
    layer: nn.Module, bn: nn.Module, output_shape: tuple[int, ...] | None = None
) -> str | None:
    """Why ``bn`` applied to the output of ``layer`` cannot be folded into it (None: it can).

    ``output_shape`` is the shape of ``layer``'s output seen in a forward pass (None: not
    seen). A batch norm normalises dim 1 of its input, and the fold scales the layer's
    output channels: dim 1 of a convolution's output ``[B, C, ...]`` (a convolution's
    input is taken as batched unless ``output_shape`` shows otherwise), the last dim of a
    Linear's. So a Linear folds only where its output is seen to be ``[B, F]``.
    """
    problem = _pairing_problem(layer, bn)
    if problem is not None:
        return problem
    linear = isinstance(layer, nn.Linear)
    if output_shape is None:
        if linear:
            return (
                "a batch norm normalises dim 1 and a Linear's outputs are its last dim, the "
                "same dim only for a [B, F] output; no forward pass showed its shape (give "
                "calibration data)"
            )
        return None
    ndim = len(output_shape)
    # The output-feature dim: the last for a Linear; for a convolution, dim 1 when batched
    # (the output has as many dims as the weight) and dim 0 when not.
    feature_dim = ndim - 1 if linear else ndim - layer.weight.dim() + 1
    if feature_dim != 1:
        return (
            f"{type(bn).__name__} normalises dim 1 of its input {list(output_shape)}, but "
            f"the {type(layer).__name__}'s output features are dim {feature_dim}"
        )
    return None


def layer_output_shapes(model: nn.Module, *inputs: Any) -> dict[nn.Module, tuple[int, ...]]:
    """The output shape of every foldable layer (Conv1d/2d/3d, Linear) of ``model`` in one
    forward pass on ``inputs`` (its first call, for a layer called more than once): what
    :func:`fold_batchnorm_in_graph` needs to tell whether a batch norm after a layer
    normalises its output features.

    The probe leaves ``model`` as it found it: it runs in eval mode without gradients (a
    model in train mode would update its batch norms' running statistics from the probe
    batch, which the fold then bakes in, and run its dropout), starts every stateful
    module from its initial state, and afterwards puts back each submodule's ``training``
    flag and each stateful module's plain attributes: its carried state, recorded
    membrane (``v_seq``), single-step counter, ... It is an ordinary forward pass
    otherwise: forward hooks already on the model (a spike monitor) see the probe batch,
    and a buffer a module changes in its own forward keeps the change (no built-in layer
    does; :func:`spikeflow.conversion.convert` probes a copy)."""
    shapes: dict[nn.Module, tuple[int, ...]] = {}

    def record(module: nn.Module, _args: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            shapes.setdefault(module, tuple(output.shape))

    training = [(module, module.training) for module in model.modules()]
    memories = [module for module in model.modules() if isinstance(module, MemoryModule)]
    # A stateful module's carried state, recorded membrane, step counter (a masked
    # PSN's) ...: plain attributes, put back as they were.
    kept = [dict(module.__dict__) for module in memories]
    handles = [
        module.register_forward_hook(record)
        for module in model.modules()
        if type(module) in FOLDABLE_LAYERS
    ]
    try:
        model.eval()
        for module in memories:
            module.reset()
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training:
            module.training = flag
        for module, attributes in zip(memories, kept):
            for name in set(module.__dict__) - set(attributes):
                del module.__dict__[name]
            module.__dict__.update(attributes)
    return shapes


def probe_output_shapes(
    ann: nn.Module, data: Tensor | Iterable[Any]
) -> tuple[dict[nn.Module, tuple[int, ...]], Tensor | Iterable[Any]]:
    """The foldable layers' output shapes on the first calibration batch (BN folding
    checks them), and the calibration data to use from now on: an iterable is read once,
    so its first batch is put back in front of the rest."""
    modules = list(ann.modules())
    has_pair = any(isinstance(m, _BatchNorm) for m in modules) and any(
        type(m) in FOLDABLE_LAYERS for m in modules
    )
    if not has_pair:
        return {}, data
    if isinstance(data, Tensor):
        return layer_output_shapes(ann, batch_input(data)), data
    batches = iter(data)
    first = next(batches, None)
    if first is None:
        return {}, []
    return layer_output_shapes(ann, batch_input(first)), itertools.chain([first], batches)


def folded_weights(weight: Tensor, bias: Tensor | None, bn: _BatchNorm) -> tuple[Tensor, Tensor]:
    """``(W', b')`` of ``bn ∘ (W, b)``, computed in the weight's dtype."""
    if bn.running_mean is None or bn.running_var is None:
        raise ConfigurationError(
            f"{type(bn).__name__} has no running statistics (track_running_stats=False): "
            "it normalises with batch statistics and cannot be folded"
        )
    dtype = weight.dtype
    mean = bn.running_mean.to(dtype)
    inv_std = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
    gamma = bn.weight.to(dtype) if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.to(dtype) if bn.bias is not None else torch.zeros_like(mean)
    factor = gamma * inv_std
    shape = (-1,) + (1,) * (weight.dim() - 1)
    new_weight = weight * factor.reshape(shape)
    base = bias if bias is not None else torch.zeros_like(mean)
    new_bias = (base - mean) * factor + beta
    return new_weight, new_bias


def fold_batchnorm(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of ``layer`` (Conv1d/2d/3d or Linear) with the eval-mode ``bn`` folded in."""
    if not can_fold(layer, bn):
        raise ConfigurationError(
            f"cannot fold {type(bn).__name__} into {type(layer).__name__}: need a Conv1d/2d/3d "
            "or Linear followed by a batch norm with running statistics over its output "
            "channels"
        )
    fused = copy.deepcopy(layer)
    with torch.no_grad():
        weight, bias = folded_weights(layer.weight, layer.bias, bn)  # type: ignore[arg-type]
        fused.weight = nn.Parameter(weight)
        fused.bias = nn.Parameter(bias)
    return fused


def graph_module(root: nn.Module, graph: fx.Graph, name: str) -> fx.GraphModule:
    """``fx.GraphModule(root, graph, name)`` that pickles: a model written under ``from
    __future__ import annotations`` leaves string annotations on the traced nodes, which
    fx's generated code turns into globals pickle cannot name (``torch.save`` of the
    converted network failed with AttributeError)."""
    for node in graph.nodes:
        if isinstance(node.type, str):
            node.type = None
    return fx.GraphModule(root, graph, name)


def set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``target`` of ``root`` (replacing what is there)."""
    parent_name, _, name = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, name, module)


def module_call_counts(gm: fx.GraphModule) -> dict[str, int]:
    """How many ``call_module`` nodes of the graph call each submodule (by target)."""
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    return calls


def fold_batchnorm_in_graph(
    gm: fx.GraphModule,
    output_shapes: Mapping[nn.Module, tuple[int, ...]] | None = None,
    not_folded: dict[str, str] | None = None,
    keep: Callable[[nn.Module], bool] | None = None,
) -> list[tuple[str, str]]:
    """Fold every ``layer -> batch norm`` pair of a traced graph in place.

    A pair is folded when the batch norm's only input is a call of a foldable layer whose
    output goes nowhere else, neither module is called elsewhere in the graph, and the
    batch norm normalises the layer's output features (:func:`fold_problem`, given the
    layer's ``output_shapes`` entry from :func:`layer_output_shapes`; without one, a
    ``Linear -> batch norm`` pair is not folded).

    Args:
        gm: the traced graph (changed in place).
        output_shapes: the output shape of the graph's layers in a forward pass.
        not_folded: if given, filled with ``{batch norm target: why it was not folded}``
            for each batch norm that follows a Conv1d/2d/3d or Linear call but stays.
        keep: batch norms for which it is true stay, unlisted (a conversion rule's).

    Returns the ``(batch_norm_name, layer_name)`` pairs folded.
    """
    calls = module_call_counts(gm)
    shapes = output_shapes or {}
    folded: list[tuple[str, str]] = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        bn = gm.get_submodule(node.target)
        prev = node.args[0]
        if not isinstance(bn, _BatchNorm) or not isinstance(prev, fx.Node):
            continue
        if keep is not None and keep(bn):
            continue
        if prev.op != "call_module":
            continue
        layer = gm.get_submodule(prev.target)
        if type(layer) not in FOLDABLE_LAYERS:
            continue
        if len(prev.users) != 1:
            problem: str | None = f"the output of {prev.target} is also used elsewhere"
        elif calls[node.target] != 1 or calls[prev.target] != 1:
            problem = f"{node.target} or {prev.target} is called more than once"
        else:
            problem = fold_problem(layer, bn, shapes.get(layer))
        if problem is not None:
            if not_folded is not None:
                not_folded[node.target] = problem
            continue
        set_submodule(gm, prev.target, fold_batchnorm(layer, bn))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        folded.append((node.target, prev.target))
    if folded:
        gm.delete_all_unused_submodules()
        gm.recompile()
    return folded
