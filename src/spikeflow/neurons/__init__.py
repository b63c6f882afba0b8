"""Spiking neurons, each declared once by its charge equation, and parallel neurons.

* :mod:`~spikeflow.neurons.lif`: IF, LIF, parametric LIF.
* :mod:`~spikeflow.neurons.nonlinear`: QIF, EIF, Izhikevich.
* :mod:`~spikeflow.neurons.adaptive`: ALIF (adaptive threshold), KLIF (learnable slope),
  CLIF (complementary LIF).
* :mod:`~spikeflow.neurons.alpha`: snnTorch's alpha neuron.
* :mod:`~spikeflow.neurons.snntorch_style`: snnTorch's ``Leaky``, ``Synaptic`` and
  ``Lapicque``.
* :mod:`~spikeflow.neurons.associative`: snnTorch's ``AssociativeLeaky`` (a matrix
  state written by outer products, each entry a spiking neuron).
* :mod:`~spikeflow.neurons.delta_leaky`: snnTorch's ``DeltaLeaky`` (fires on a change of
  the membrane).
* :mod:`~spikeflow.neurons.snntorch_parallel`: snnTorch's ``LeakyParallel``,
  ``StateLeaky`` and ``LinearLeaky`` (all steps at once).
* :mod:`~spikeflow.neurons.adlif`: the adaptive LIF of Bittar & Garner (adLIF).
* :mod:`~spikeflow.neurons.gated_lif`: the gated LIF of Yao et al. (GLIF).
* :mod:`~spikeflow.neurons.current`: current-based LIF (NIR ``CubaLIF``).
* :mod:`~spikeflow.neurons.conductance`: conductance-based LIF (Norse's ``CobaLIF``).
* :mod:`~spikeflow.neurons.izhikevich`: the classic Izhikevich (2003) neuron in mV, with
  Izhikevich's (2004) named behaviours.
* :mod:`~spikeflow.neurons.liaf`: leaky integrate and analog fire (LIAF).
* :mod:`~spikeflow.neurons.ada_lif`: the LIF with an adaptation current subtracted from
  its drive (Norse's ``ada_lif_step``).
* :mod:`~spikeflow.neurons.adex`: the adaptive exponential integrate-and-fire neuron
  (AdEx, Norse's ``LIFAdEx``).
* :mod:`~spikeflow.neurons.resonator`: the resonate-and-fire neuron (RAF).
* :mod:`~spikeflow.neurons.brf`: the balanced resonate-and-fire neuron (BRF).
* :mod:`~spikeflow.neurons.tc_lif`: the two-compartment LIF (TC-LIF).
* :mod:`~spikeflow.neurons.dh_lif`: the LIF with dendritic heterogeneity (DH-LIF).
* :mod:`~spikeflow.neurons.lava_dl`: Lava-DL's SLAYER neurons beyond CUBA (ALIF;
  :mod:`~spikeflow.neurons.lava_rf`: RF-IZ and RF, complex input, stepped by a loop, and
  :mod:`~spikeflow.neurons.lava_adrf`: their adaptive ADRF-IZ and ADRF;
  :mod:`~spikeflow.neurons.lava_hoyer`: CUBA with Hoyer spiking).
* :mod:`~spikeflow.neurons.refractory`: LIF and current-based LIF with an absolute
  refractory period.
* :mod:`~spikeflow.neurons.adex_refractory`: the AdEx with an absolute refractory
  period (Norse's ``LIFAdExRefrac``).
* :mod:`~spikeflow.neurons.integrator`: the non-spiking leaky integrator (NIR ``LI``).
* :mod:`~spikeflow.neurons.ternary`: ternary (signed) spikes, IF and LIF (a declared
  fire rule with two thresholds); :mod:`~spikeflow.neurons.mpbn`: membrane potential
  batch normalisation (MPBN), stepped by a loop (:mod:`~spikeflow.neurons.loop`);
  :mod:`~spikeflow.neurons.ilif`: the integer LIF (I-LIF).
* :mod:`~spikeflow.neurons.converted`: IF neurons for ANN-to-SNN conversion (half-threshold
  start, activation-aware offset); :mod:`~spikeflow.neurons.few_spike`: few-spike neurons
  (FS, outlier-aware, hierarchically gated); :mod:`~spikeflow.neurons.dsr`: the DSR
  neurons (differentiation on spike representation).
* :mod:`~spikeflow.neurons.parallel`: the parallel spiking neurons (PSN, masked PSN,
  sliding PSN); :mod:`~spikeflow.neurons.parallel_lif`: the LIF without reset computed
  in parallel over time.
* :mod:`~spikeflow.neurons.ilc`: neurons with intra-layer connections (ILC-SAN's
  populations: IF, LIF, current-based LIF).
* :mod:`~spikeflow.neurons.noisy`: the noisy spiking neurons of NoisySAN (coloured
  exploration noise for reinforcement learning, :func:`powerlaw_psd_gaussian`);
  :mod:`~spikeflow.neurons.nonspiking`: non-spiking read-outs with a decoded membrane.
* :mod:`~spikeflow.neurons.tap`: :class:`SpikeTap`, the pass-through layer through which a
  network that computes its spikes in its own loop shows them to monitors and counters.

See ``docs/neurons.md`` and ``docs/neuron_zoo.md``.
"""

from spikeflow.neurons.ada_lif import AdaLIFNode
from spikeflow.neurons.adaptive import (
    AdaptiveLIFNode,
    ALIFNode,
    CLIFNode,
    ComplementaryLIFNode,
    KLIFNode,
)
from spikeflow.neurons.adex import AdExLIFNode
from spikeflow.neurons.adex_refractory import RefractoryAdExLIFNode
from spikeflow.neurons.adlif import AdLIFNode
from spikeflow.neurons.alpha import AlphaNode
from spikeflow.neurons.associative import AssociativeLeaky
from spikeflow.neurons.base import BaseNode
from spikeflow.neurons.brf import BRFNode
from spikeflow.neurons.conductance import CobaLIFNode
from spikeflow.neurons.converted import ActivationAwareIFNode, HalfThresholdIFNode
from spikeflow.neurons.current import CubaLIFNode
from spikeflow.neurons.declaration import NeuronDeclaration, declare
from spikeflow.neurons.delta_leaky import DeltaLeakyNode
from spikeflow.neurons.dh_lif import DendriticBranches, DHLIFNode
from spikeflow.neurons.dsr import DSRIFNode, DSRLIFNode
from spikeflow.neurons.few_spike import (
    FewSpikeNode,
    FewSpikeTable,
    HGNode,
    OutlierAwareThresholdNode,
)
from spikeflow.neurons.gated_lif import GatedLIFNode, GLIFNode
from spikeflow.neurons.ilc import ILCBaseNode, ILCCubaLIFNode, ILCIFNode, ILCLIFNode
from spikeflow.neurons.ilif import ILIFNode
from spikeflow.neurons.integrator import LeakyIntegrator, LINode
from spikeflow.neurons.izhikevich import IZHIKEVICH_PRESETS, Izhikevich2003Node, IzhikevichPreset
from spikeflow.neurons.lava_dl import LAVA_P_SCALE, LavaALIFNode, lava_decay_keep
from spikeflow.neurons.lava_hoyer import LavaCubaHoyerNode, hoyer_extremum, hoyer_regularizer
from spikeflow.neurons.lava_rf import LavaADRFIzNode, LavaADRFNode, LavaRFIzNode, LavaRFNode
from spikeflow.neurons.liaf import LIAFNode
from spikeflow.neurons.lif import IFNode, LIFNode, ParametricLIFNode, PLIFNode
from spikeflow.neurons.loop import LoopNode
from spikeflow.neurons.mpbn import MPBNBaseNode, MPBNLIFNode
from spikeflow.neurons.noisy import (
    NoisyBaseNode,
    NoisyCubaLIFNode,
    NoisyILCBaseNode,
    NoisyILCCubaLIFNode,
    NoisyNonSpikingBaseNode,
    NoisyNonSpikingIFNode,
    powerlaw_psd_gaussian,
)
from spikeflow.neurons.nonlinear import EIFNode, IzhikevichNode, QIFNode
from spikeflow.neurons.nonspiking import NonSpikingBaseNode, NonSpikingIFNode, NonSpikingLIFNode
from spikeflow.neurons.parallel import (
    PSN,
    MaskedPSN,
    SlidingPSN,
    band_mask,
    mask_lambda,
    set_mask_lambda,
    sliding_toeplitz,
)
from spikeflow.neurons.parallel_lif import NoResetLIFNode, lif_no_reset_matrix, linear_scan
from spikeflow.neurons.refractory import RefractoryCubaLIFNode, RefractoryLIFNode
from spikeflow.neurons.resonator import RAFNode, ResonateAndFireNode
from spikeflow.neurons.snntorch_parallel import LeakyParallel, LinearLeaky, StateLeakyNode
from spikeflow.neurons.snntorch_style import LapicqueNode, LeakyNode, SynapticNode
from spikeflow.neurons.tap import SpikeTap
from spikeflow.neurons.tc_lif import TCLIFNode
from spikeflow.neurons.ternary import TernaryIFNode, TernaryLIFNode

__all__ = [
    "IZHIKEVICH_PRESETS",
    "LAVA_P_SCALE",
    "PSN",
    "ALIFNode",
    "ActivationAwareIFNode",
    "AdExLIFNode",
    "AdLIFNode",
    "AdaLIFNode",
    "AdaptiveLIFNode",
    "AlphaNode",
    "AssociativeLeaky",
    "BRFNode",
    "BaseNode",
    "CLIFNode",
    "CobaLIFNode",
    "ComplementaryLIFNode",
    "CubaLIFNode",
    "DHLIFNode",
    "DSRIFNode",
    "DSRLIFNode",
    "DeltaLeakyNode",
    "DendriticBranches",
    "EIFNode",
    "FewSpikeNode",
    "FewSpikeTable",
    "GLIFNode",
    "GatedLIFNode",
    "HGNode",
    "HalfThresholdIFNode",
    "IFNode",
    "ILCBaseNode",
    "ILCCubaLIFNode",
    "ILCIFNode",
    "ILCLIFNode",
    "ILIFNode",
    "Izhikevich2003Node",
    "IzhikevichNode",
    "IzhikevichPreset",
    "KLIFNode",
    "LIAFNode",
    "LIFNode",
    "LINode",
    "LapicqueNode",
    "LavaADRFIzNode",
    "LavaADRFNode",
    "LavaALIFNode",
    "LavaCubaHoyerNode",
    "LavaRFIzNode",
    "LavaRFNode",
    "LeakyIntegrator",
    "LeakyNode",
    "LeakyParallel",
    "LinearLeaky",
    "LoopNode",
    "MPBNBaseNode",
    "MPBNLIFNode",
    "MaskedPSN",
    "NeuronDeclaration",
    "NoResetLIFNode",
    "NoisyBaseNode",
    "NoisyCubaLIFNode",
    "NoisyILCBaseNode",
    "NoisyILCCubaLIFNode",
    "NoisyNonSpikingBaseNode",
    "NoisyNonSpikingIFNode",
    "NonSpikingBaseNode",
    "NonSpikingIFNode",
    "NonSpikingLIFNode",
    "OutlierAwareThresholdNode",
    "PLIFNode",
    "ParametricLIFNode",
    "QIFNode",
    "RAFNode",
    "RefractoryAdExLIFNode",
    "RefractoryCubaLIFNode",
    "RefractoryLIFNode",
    "ResonateAndFireNode",
    "SlidingPSN",
    "SpikeTap",
    "StateLeakyNode",
    "SynapticNode",
    "TCLIFNode",
    "TernaryIFNode",
    "TernaryLIFNode",
    "band_mask",
    "declare",
    "hoyer_extremum",
    "hoyer_regularizer",
    "lava_decay_keep",
    "lif_no_reset_matrix",
    "linear_scan",
    "mask_lambda",
    "powerlaw_psd_gaussian",
    "set_mask_lambda",
    "sliding_toeplitz",
]
