"""Layers for time-major spiking networks.

* :mod:`~spikeflow.layers.containers`: run per-step modules over a sequence.
* :mod:`~spikeflow.layers.sequence`, :mod:`~spikeflow.layers.sequence_norm`: torch
  layers with a ``step_mode`` (time folded into the batch in multi-step mode).
* :mod:`~spikeflow.layers.norm`, :mod:`~spikeflow.layers.neunorm`: tdBN, BNTT, TEBN
  and NeuNorm.
* :mod:`~spikeflow.layers.dropout`: dropout with one mask per sequence.
* :mod:`~spikeflow.layers.lava_blocks`: Lava-DL's k-winners-take-all block (``KWTA``)
  and ``TimeDecimation``.
* :mod:`~spikeflow.layers.lava_norm`: Lava-DL's neuron normalisations (mean-only and
  power-of-two-scaled batch norm).
* :mod:`~spikeflow.layers.misc`: output voting and delay.
* :mod:`~spikeflow.layers.recurrent`: recurrent containers and the recurrent layer of
  RSNNs.
* :mod:`~spikeflow.layers.ssm`, :mod:`~spikeflow.layers.ssm_block`: the S4D diagonal
  state-space layer and the spiking S4D block (docs/ssm.md).
* :mod:`~spikeflow.layers.wkv`, :mod:`~spikeflow.layers.rwkv`: RWKV's WKV recurrence and
  SpikeGPT's spiking RWKV block (docs/language.md).
* :mod:`~spikeflow.layers.spiking_rnn`: spiking LSTM, GRU and vanilla RNN (cells and
  stacked layers, SpikingJelly's ``rnn`` module).
* :mod:`~spikeflow.layers.attention`: spiking self-attention (Spikformer's SSA, the
  Spike-driven Transformer's SDSA).
* :mod:`~spikeflow.layers.attention_qk`: QKFormer's Q-K attention (token and channel
  masks).
* :mod:`~spikeflow.layers.attention_temporal`: temporal-wise (TA-SNN) and
  multi-dimensional (MA-SNN) attention over the steps of a sequence.
* :mod:`~spikeflow.layers.sigma_delta`: sigma-delta networks (delta encoder, sigma
  decoder, sigma-delta units, synapses fed deltas; Lava-DL's SDNN).
* :mod:`~spikeflow.layers.short_term_plasticity`: Tsodyks-Markram short-term
  synaptic plasticity (``docs/synapses.md``).
* :mod:`~spikeflow.layers.receptive_field`: scale-space spatial and temporal receptive
  fields with learnable scales, angles and ratios (Norse's).
* :mod:`~spikeflow.layers.delay`: learnable synaptic delays (``DelayedLinear``).
* :mod:`~spikeflow.layers.axonal_delay`: learnable axonal delays, one per neuron or
  channel (``AxonalDelay``, Lava-DL's ``axon.Delay``).
* :mod:`~spikeflow.layers.synapse_filter`: a first-order synaptic filter on spikes
  (SpikingJelly's ``SynapseFilter``).
* :mod:`~spikeflow.layers.drop_connect`: DropConnect (``DropConnectLinear``).
* :mod:`~spikeflow.layers.snntorch_lstm`: snnTorch's spiking LSTMs (``SLSTM``,
  ``SConv2dLSTM``: smooth gates, a spiking output).
* :mod:`~spikeflow.layers.graded_spikes`: snnTorch's learnable spike amplitudes
  (``GradedSpikes``).
* :mod:`~spikeflow.layers.weight_standardization`: weight-standardised ``WSConv2d``,
  ``WSLinear``.
* :mod:`~spikeflow.layers.t_last`: containers for time-last sequences ``[B, ..., T]``.
* :mod:`~spikeflow.layers.time_bins`: spike counts as binary events and back
  (``SpikeCountToBinary``, ``TemporalBinSum``).
* :mod:`~spikeflow.layers.print_shape`: ``PrintShapeModule``, for debugging shapes.
* :mod:`~spikeflow.layers.multicompartment`: multicompartment LIF layers, compartments
  coupled by a conductance matrix (Norse's ``lif_mc``, ``lif_mc_refrac``).

See ``docs/layers.md``.
"""

from spikeflow.layers.attention import (
    FeatureBatchNorm,
    SpikeDrivenSelfAttention,
    SpikingQKV,
    SpikingSelfAttention,
    merge_heads,
)
from spikeflow.layers.attention_qk import ChannelQKAttention, QKAttention, TokenQKAttention
from spikeflow.layers.attention_tcja import TCJA
from spikeflow.layers.attention_temporal import MultiDimensionalAttention, TemporalWiseAttention
from spikeflow.layers.axonal_delay import AxonalDelay, axonal_delay
from spikeflow.layers.containers import MultiStepContainer, SeqToANNContainer, StepModeContainer
from spikeflow.layers.delay import (
    DelayedLinear,
    clamp_delays,
    delay_sigma,
    round_delays,
    set_delay_sigma,
)
from spikeflow.layers.dendritic import DendriticLinear, DendriticRecurrent, dendritic_mask
from spikeflow.layers.drop_connect import DropConnectLinear
from spikeflow.layers.dropout import Dropout, Dropout2d
from spikeflow.layers.graded_spikes import GradedSpikes
from spikeflow.layers.lava_blocks import KWTA, TimeDecimation, lava_quantize_8bit
from spikeflow.layers.lava_norm import MeanOnlyBatchNorm, WgtScaleBatchNorm
from spikeflow.layers.misc import Delay, VotingLayer
from spikeflow.layers.multicompartment import (
    LIFMC,
    LIFMCRecurrent,
    LIFMCRefrac,
    LIFMCRefracRecurrent,
)
from spikeflow.layers.neunorm import NeuNorm
from spikeflow.layers.norm import (
    BatchNormThroughTime1d,
    BatchNormThroughTime2d,
    BatchNormThroughTime3d,
    TemporalEffectiveBatchNorm1d,
    TemporalEffectiveBatchNorm2d,
    TemporalEffectiveBatchNorm3d,
    ThresholdDependentBatchNorm1d,
    ThresholdDependentBatchNorm2d,
    ThresholdDependentBatchNorm3d,
)
from spikeflow.layers.print_shape import PrintShapeModule
from spikeflow.layers.real_spike import RealSpike
from spikeflow.layers.receptive_field import (
    SpatialReceptiveField2d,
    TemporalReceptiveField,
    spatial_parameters,
    spatial_receptive_field,
    spatial_receptive_fields,
    temporal_scale_distribution,
)
from spikeflow.layers.recurrent import (
    ElementWiseRecurrentContainer,
    LinearRecurrentContainer,
    Recurrent,
)
from spikeflow.layers.rwkv import RWKVChannelMix, RWKVTimeMix, SpikingRWKVBlock
from spikeflow.layers.sequence import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    Flatten,
    Linear,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
    MaxUnpool1d,
    MaxUnpool2d,
    MaxUnpool3d,
    SequenceLayerMixin,
    Upsample,
)
from spikeflow.layers.sequence_norm import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    LayerNorm,
)
from spikeflow.layers.short_term_plasticity import ShortTermPlasticity
from spikeflow.layers.sigma_delta import (
    DeltaEncoder,
    DeltaSynapse,
    SigmaDecoder,
    SigmaDelta,
    delta_activity,
    delta_encode,
    sigma_decode,
)
from spikeflow.layers.snntorch_lstm import SLSTM, SConv2dLSTM
from spikeflow.layers.spiking_rnn import (
    SpikingGRU,
    SpikingGRUCell,
    SpikingLSTM,
    SpikingLSTMCell,
    SpikingVanillaRNN,
    SpikingVanillaRNNCell,
)
from spikeflow.layers.ssm import S4D, s4d_initial_imag, ssm_parameter_groups
from spikeflow.layers.ssm_block import SpikingS4DBlock
from spikeflow.layers.synapse_filter import SynapseFilter
from spikeflow.layers.t_last import TLastMultiStepContainer, TLastSeqToANNContainer
from spikeflow.layers.time_bins import SpikeCountToBinary, TemporalBinSum
from spikeflow.layers.weight_standardization import WSConv2d, WSLinear

__all__ = [
    "KWTA",
    "LIFMC",
    "S4D",
    "SLSTM",
    "TCJA",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AxonalDelay",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormThroughTime1d",
    "BatchNormThroughTime2d",
    "BatchNormThroughTime3d",
    "ChannelQKAttention",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Delay",
    "DelayedLinear",
    "DeltaEncoder",
    "DeltaSynapse",
    "DendriticLinear",
    "DendriticRecurrent",
    "DropConnectLinear",
    "Dropout",
    "Dropout2d",
    "ElementWiseRecurrentContainer",
    "FeatureBatchNorm",
    "Flatten",
    "GradedSpikes",
    "GroupNorm",
    "LIFMCRecurrent",
    "LIFMCRefrac",
    "LIFMCRefracRecurrent",
    "LayerNorm",
    "Linear",
    "LinearRecurrentContainer",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "MeanOnlyBatchNorm",
    "MultiDimensionalAttention",
    "MultiStepContainer",
    "NeuNorm",
    "PrintShapeModule",
    "QKAttention",
    "RWKVChannelMix",
    "RWKVTimeMix",
    "RealSpike",
    "Recurrent",
    "SConv2dLSTM",
    "SeqToANNContainer",
    "SequenceLayerMixin",
    "ShortTermPlasticity",
    "SigmaDecoder",
    "SigmaDelta",
    "SpatialReceptiveField2d",
    "SpikeCountToBinary",
    "SpikeDrivenSelfAttention",
    "SpikingGRU",
    "SpikingGRUCell",
    "SpikingLSTM",
    "SpikingLSTMCell",
    "SpikingQKV",
    "SpikingRWKVBlock",
    "SpikingS4DBlock",
    "SpikingSelfAttention",
    "SpikingVanillaRNN",
    "SpikingVanillaRNNCell",
    "StepModeContainer",
    "SynapseFilter",
    "TLastMultiStepContainer",
    "TLastSeqToANNContainer",
    "TemporalBinSum",
    "TemporalEffectiveBatchNorm1d",
    "TemporalEffectiveBatchNorm2d",
    "TemporalEffectiveBatchNorm3d",
    "TemporalReceptiveField",
    "TemporalWiseAttention",
    "ThresholdDependentBatchNorm1d",
    "ThresholdDependentBatchNorm2d",
    "ThresholdDependentBatchNorm3d",
    "TimeDecimation",
    "TokenQKAttention",
    "Upsample",
    "VotingLayer",
    "WSConv2d",
    "WSLinear",
    "WgtScaleBatchNorm",
    "axonal_delay",
    "clamp_delays",
    "delay_sigma",
    "delta_activity",
    "delta_encode",
    "dendritic_mask",
    "lava_quantize_8bit",
    "merge_heads",
    "round_delays",
    "s4d_initial_imag",
    "set_delay_sigma",
    "sigma_decode",
    "spatial_parameters",
    "spatial_receptive_field",
    "spatial_receptive_fields",
    "ssm_parameter_groups",
    "temporal_scale_distribution",
]
