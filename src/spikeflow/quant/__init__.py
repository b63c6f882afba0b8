"""Quantization-aware training: synaptic weights (:func:`apply_weight_quantization`,
symmetric, 2-16 bits, per output channel or per layer, straight-through gradient;
:func:`integer_weights` gives the integers and scales for hardware) and membrane
potentials (:func:`apply_membrane_quantization`, a signed fixed-point register of 2-24
bits relative to the threshold). See ``docs/quantization.md``."""

from spikeflow.quant.membrane import (
    MembraneQuantizer,
    apply_membrane_quantization,
    quantize_membrane,
    remove_membrane_quantization,
)
from spikeflow.quant.weights import WeightQuantizer, apply_weight_quantization, integer_weights

__all__ = [
    "MembraneQuantizer",
    "WeightQuantizer",
    "apply_membrane_quantization",
    "apply_weight_quantization",
    "integer_weights",
    "quantize_membrane",
    "remove_membrane_quantization",
]
