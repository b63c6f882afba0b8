"""Quantization-aware training of synaptic weights: :func:`apply_weight_quantization`
(symmetric, 2-16 bits, per output channel or per layer, straight-through gradient) and
:func:`integer_weights` (the integers and scales for hardware). See
``docs/quantization.md``."""

from spikeflow.quant.weights import WeightQuantizer, apply_weight_quantization, integer_weights

__all__ = ["WeightQuantizer", "apply_weight_quantization", "integer_weights"]
