"""ANN-to-SNN conversion (methods.md 7): classic rate coding, QCFS and group neurons.

* :func:`convert`: trace a trained ReLU/QCFS network, fold batch norm, calibrate the
  scales (max-norm or percentile, per layer or per channel), replace activations by IF
  neurons with soft reset (or group neurons) and return ``(snn, report)``.
* :class:`ConversionRule` (with :func:`register_rule`, :func:`using_rules` or
  ``convert(..., rules=...)``):
  how convert calibrates and replaces an activation of a user's own module type.
* :class:`QCFS`: the quantisation-clip-floor-shift activation for training the ANN.
* :func:`constant_input`: the analog input repeated over T steps.
* :func:`to_sigma_delta`: a trained ``nn.Sequential`` ANN as a sigma-delta network (its
  layers send the changes of their activations; Lava-DL's SDNN).
* :func:`convert_transformer`: a quantised Transformer (:class:`SymmetricQuant`
  activations) as a spiking network of signed neurons (:class:`SignedIFNeuron`) and
  temporal-difference operators whose summed output equals the ANN's exactly; with
  ``encoders="sta"`` a float Transformer with calibrated :class:`STAEncoder` spike
  encoders (Spatio-Temporal Approximation, no training).
* :func:`convert_spikezip_qann`: a QANN in the SpikeZIP-TF code's own layout (ViT or
  RoBERTa attention modules carrying their quantisers; token embeddings and an attention
  mask) converted the same way, with SpikeZIP-TF's bias schedule; a Hugging Face
  RoBERTa/BERT encoder or sequence classifier with such attention modules in one call.
* :func:`convert_causal_lm`: a Hugging Face decoder LLM (Qwen2 / Llama layout) as a
  spiking model: temporal-difference RMSNorm, SiLU, gated product and causal GQA
  attention, calibrated signed spike encoders (:func:`calibrate_causal_lm`), generation
  with a KV cache, greedy, sampled or by beam search as ``transformers``' ``generate``
  (extra ``llm``: ``transformers``).
* :func:`fold_real_spikes`: a network trained with Real Spike amplitudes
  (:class:`~spikeflow.layers.RealSpike`) as one on binary spikes, the amplitudes
  folded into the weights that read them.
* :func:`fine_tunable`: a converted network fine-tuned with surrogate gradients through
  time (hybrid training, Rathi et al. 2020, its STDB surrogate; learnable thresholds
  and leak, DIET-SNN);
  :func:`frozen` gives plain neurons back.
* :func:`estimate_delay_start`: the warm-up steps to skip before reading out a
  converted network (``snn.rate(x, T, delay=d)``; SpikingJelly's delayed read-out).
* :func:`unevenness`: per neuron layer, the share of neurons whose spike count is off
  because their input arrived unevenly (the error left at T = L for QCFS).

See ``docs/conversion.md``.
"""

from spikeflow.conversion.calibrate import ActivationObserver, quantile
from spikeflow.conversion.convert import Conversion, convert
from spikeflow.conversion.delay import estimate_delay_start
from spikeflow.conversion.diagnose import uneven_counts, unevenness
from spikeflow.conversion.differential import (
    DifferentialMaxPool,
    DifferentialNeuron,
    differential_decode,
    differential_encode,
)
from spikeflow.conversion.fold import (
    fold_batchnorm,
    fold_batchnorm_in_graph,
    folded_weights,
    layer_output_shapes,
)
from spikeflow.conversion.gaussian import gaussian_threshold
from spikeflow.conversion.group import GroupNeuron
from spikeflow.conversion.hybrid import STDB, TrainableIFNode, fine_tunable, frozen
from spikeflow.conversion.llm import (
    SpikingCausalLM,
    SpikingKVCache,
    SpikingLMOutput,
    calibrate_causal_lm,
    convert_causal_lm,
)
from spikeflow.conversion.llm_encode import LLMCalibration, SignedSpikeEncoder
from spikeflow.conversion.llm_generate import SpikingGenerationOutput
from spikeflow.conversion.loihi_activations import (
    PiecewiseLinearSiLU,
    ReLU1,
    piecewise_linear_silu,
    relu1,
)
from spikeflow.conversion.multi_threshold import MultiThresholdNeuron
from spikeflow.conversion.neuron import ConversionIFNode
from spikeflow.conversion.pooling import GatedMaxPool
from spikeflow.conversion.qcfs import QCFS, floor_ste, qcfs
from spikeflow.conversion.real_spike import fold_real_spikes
from spikeflow.conversion.report import ConversionError, ConversionReport, ReportEntry
from spikeflow.conversion.rules import (
    ConversionRule,
    NeuronOptions,
    Replacement,
    RuleSite,
    register_rule,
    registered_rules,
    unregister_rule,
    using_rules,
)
from spikeflow.conversion.sigma_delta import SigmaDeltaNetwork, to_sigma_delta
from spikeflow.conversion.signed import SignedIFNeuron, SymmetricQuant, symmetric_quant
from spikeflow.conversion.snn import ConvertedSNN, TimeFolded, constant_input
from spikeflow.conversion.spikezip import (
    SpikeZIPConversion,
    SpikeZIPSNN,
    SpreadBias,
    TokenEmbedding,
    convert_spikezip_qann,
)
from spikeflow.conversion.sta import STAEncoder, sta_threshold
from spikeflow.conversion.temporal import (
    SpikeProduct,
    StepBias,
    TemporalDifference,
    impulse_input,
)
from spikeflow.conversion.transformer import (
    DifferenceSNN,
    TransformerConversion,
    convert_transformer,
)

__all__ = [
    "QCFS",
    "STDB",
    "ActivationObserver",
    "Conversion",
    "ConversionError",
    "ConversionIFNode",
    "ConversionReport",
    "ConversionRule",
    "ConvertedSNN",
    "DifferenceSNN",
    "DifferentialMaxPool",
    "DifferentialNeuron",
    "GatedMaxPool",
    "GroupNeuron",
    "LLMCalibration",
    "MultiThresholdNeuron",
    "NeuronOptions",
    "PiecewiseLinearSiLU",
    "ReLU1",
    "Replacement",
    "ReportEntry",
    "RuleSite",
    "STAEncoder",
    "SigmaDeltaNetwork",
    "SignedIFNeuron",
    "SignedSpikeEncoder",
    "SpikeProduct",
    "SpikeZIPConversion",
    "SpikeZIPSNN",
    "SpikingCausalLM",
    "SpikingGenerationOutput",
    "SpikingKVCache",
    "SpikingLMOutput",
    "SpreadBias",
    "StepBias",
    "SymmetricQuant",
    "TemporalDifference",
    "TimeFolded",
    "TokenEmbedding",
    "TrainableIFNode",
    "TransformerConversion",
    "calibrate_causal_lm",
    "constant_input",
    "convert",
    "convert_causal_lm",
    "convert_spikezip_qann",
    "convert_transformer",
    "differential_decode",
    "differential_encode",
    "estimate_delay_start",
    "fine_tunable",
    "floor_ste",
    "fold_batchnorm",
    "fold_batchnorm_in_graph",
    "fold_real_spikes",
    "folded_weights",
    "frozen",
    "gaussian_threshold",
    "impulse_input",
    "layer_output_shapes",
    "piecewise_linear_silu",
    "qcfs",
    "quantile",
    "register_rule",
    "registered_rules",
    "relu1",
    "sta_threshold",
    "symmetric_quant",
    "to_sigma_delta",
    "uneven_counts",
    "unevenness",
    "unregister_rule",
    "using_rules",
]
