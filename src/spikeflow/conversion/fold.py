"""Fold eval-mode batch norm into the convolution or linear layer before it (methods.md 7.1).

``BN(W x + b) = γ (W x + b - μ) / sqrt(σ² + ε) + β`` is again affine, so the pair becomes
one layer with ``W' = W · γ / sqrt(σ² + ε)`` (per output channel) and
``b' = (b - μ) · γ / sqrt(σ² + ε) + β``. Only running statistics are folded: a batch norm
that normalises with batch statistics in eval mode (``track_running_stats=False``) is not
a fixed affine map.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikeflow.errors import ConfigurationError

__all__ = [
    "FOLDABLE_LAYERS",
    "can_fold",
    "fold_batchnorm",
    "fold_batchnorm_in_graph",
    "folded_weights",
    "module_call_counts",
    "set_submodule",
]

#: Layers whose output channels are dim 0 of the weight (transposed convs are not).
FOLDABLE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def can_fold(layer: nn.Module, bn: nn.Module) -> bool:
    """Whether ``bn`` (with running statistics) can be folded into ``layer``."""
    if type(layer) not in FOLDABLE_LAYERS or not isinstance(bn, _BatchNorm):
        return False
    if bn.running_mean is None or bn.running_var is None:
        return False
    return bn.num_features == layer.weight.shape[0]


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


def fold_batchnorm_in_graph(gm: fx.GraphModule) -> list[tuple[str, str]]:
    """Fold every ``layer -> batch norm`` pair of a traced graph in place.

    A pair is folded when the batch norm's only input is a call of a foldable layer whose
    output goes nowhere else, and neither module is called elsewhere in the graph.
    Returns the ``(batch_norm_name, layer_name)`` pairs folded.
    """
    calls = module_call_counts(gm)
    folded: list[tuple[str, str]] = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        bn = gm.get_submodule(node.target)
        prev = node.args[0]
        if not isinstance(bn, _BatchNorm) or not isinstance(prev, fx.Node):
            continue
        if prev.op != "call_module" or len(prev.users) != 1:
            continue
        layer = gm.get_submodule(prev.target)
        if not can_fold(layer, bn) or calls[node.target] != 1 or calls[prev.target] != 1:
            continue
        set_submodule(gm, prev.target, fold_batchnorm(layer, bn))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        folded.append((node.target, prev.target))
    if folded:
        gm.delete_all_unused_submodules()
        gm.recompile()
    return folded
