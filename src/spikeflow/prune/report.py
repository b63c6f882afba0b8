"""How many synapses a model has left: per layer and in all."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spikeflow.prune.reparam import prunable_layers

__all__ = ["LayerSparsity", "SparsityReport", "sparsity"]


@dataclass(frozen=True)
class LayerSparsity:
    """The zero weights of one linear or convolution layer."""

    name: str
    zeros: int
    total: int

    @property
    def sparsity(self) -> float:
        """The share of weights that are zero."""
        return self.zeros / self.total if self.total else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """The zero weights of every linear and convolution layer of a model."""

    layers: tuple[LayerSparsity, ...]

    @property
    def zeros(self) -> int:
        """Zero weights in all layers."""
        return sum(layer.zeros for layer in self.layers)

    @property
    def total(self) -> int:
        """Weights in all layers."""
        return sum(layer.total for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """The share of all weights that are zero (pruned synapses)."""
        return self.zeros / self.total if self.total else 0.0

    @property
    def connectivity(self) -> float:
        """The share of all weights that are not zero (``1 - sparsity``)."""
        return 1.0 - self.sparsity

    def __str__(self) -> str:
        width = max([len(layer.name) for layer in self.layers] + [5])
        lines = [f"{'layer':<{width}}  {'weights':>10}  {'zero':>10}  {'sparsity':>8}"]
        for layer in self.layers:
            lines.append(f"{layer.name:<{width}}  {layer.total:>10}  {layer.zeros:>10}  "
                         f"{layer.sparsity:>8.2%}")  # fmt: skip
        lines.append(f"{'all':<{width}}  {self.total:>10}  {self.zeros:>10}  {self.sparsity:>8.2%}")
        return "\n".join(lines)


@torch.no_grad()
def sparsity(model: nn.Module) -> SparsityReport:
    """The zero weights of ``model``'s linear and convolution layers (their effective
    weights, pruned or not; biases are not synapses and are not counted)."""
    layers = []
    for name, layer in prunable_layers(model):
        weight = layer.weight
        layers.append(LayerSparsity(name or type(layer).__name__, int((weight == 0).sum()),
                                    weight.numel()))  # fmt: skip
    return SparsityReport(tuple(layers))
