"""Spiking neurons, each declared once by its charge equation."""

from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.lif import IFNode, LIFNode, ParametricLIFNode, PLIFNode

__all__ = [
    "BaseNode",
    "IFNode",
    "LIFNode",
    "NeuronDeclaration",
    "PLIFNode",
    "ParametricLIFNode",
    "declare",
]
