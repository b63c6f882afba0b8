"""Quantization-aware training: synaptic weights (:func:`apply_weight_quantization`,
2-16 bits, per output channel or per layer, fixed scales or learned steps (LSQ,
:class:`LSQWeightQuantizer`); :func:`integer_weights` gives the integers and scales for
hardware), the real-valued input (:func:`apply_input_quantization`), integer-only
deployment with the scales folded into IF/LIF thresholds (:func:`fold_weight_scales`),
and membrane potentials (:func:`apply_membrane_quantization`, a signed fixed-point
register of 2-24 bits relative to the threshold). See ``docs/quantization.md``.
Loihi's fixed-point CUBA neuron, bit for bit as Lava's (:class:`LoihiCubaLIFNode`), and
training on Loihi's grids as Lava-DL's blocks train (:func:`loihi_grid`; sigma-delta
networks: :func:`loihi_sdnn_grid`): ``docs/loihi.md``."""

from spikeflow.quant.activation import (
    InputQuantizer,
    apply_input_quantization,
    remove_input_quantization,
)
from spikeflow.quant.fold import FoldedLayer, fold_weight_scales
from spikeflow.quant.loihi import LoihiCubaLIFNode, LoihiCubaState, loihi_cuba_lif
from spikeflow.quant.loihi_grid import LoihiCubaGrid, LoihiWeightGrid, loihi_grid
from spikeflow.quant.loihi_sdnn_grid import LoihiBiasGrid, loihi_sdnn_grid
from spikeflow.quant.lsq import LSQWeightQuantizer
from spikeflow.quant.membrane import (
    MembraneQuantizer,
    apply_membrane_quantization,
    quantize_membrane,
    remove_membrane_quantization,
)
from spikeflow.quant.state_levels import (
    LevelQuantizer,
    apply_state_quantization,
    snntorch_state_levels,
)
from spikeflow.quant.weights import (
    WeightQuantizer,
    apply_weight_quantization,
    integer_weights,
    weight_bits,
)

__all__ = [
    "FoldedLayer",
    "InputQuantizer",
    "LSQWeightQuantizer",
    "LevelQuantizer",
    "LoihiBiasGrid",
    "LoihiCubaGrid",
    "LoihiCubaLIFNode",
    "LoihiCubaState",
    "LoihiWeightGrid",
    "MembraneQuantizer",
    "WeightQuantizer",
    "apply_input_quantization",
    "apply_membrane_quantization",
    "apply_state_quantization",
    "apply_weight_quantization",
    "fold_weight_scales",
    "integer_weights",
    "loihi_cuba_lif",
    "loihi_grid",
    "loihi_sdnn_grid",
    "quantize_membrane",
    "remove_input_quantization",
    "remove_membrane_quantization",
    "snntorch_state_levels",
    "weight_bits",
]
