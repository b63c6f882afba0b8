"""Learning rules: spike-timing-dependent plasticity (:class:`STDPLearner`,
:func:`stdp_update`; triplet STDP, :class:`TripletSTDPLearner`), also reward-modulated
(MSTDP, MSTDP-ET with :func:`eligibility_reward`), e-prop for recurrent spiking
networks (:class:`EProp`, :class:`EPropRSNN`), EventProp, the adjoint method for LIF networks
(:class:`EventPropLIF`, :func:`lif_adjoint`; refractory, LSNN and conductance-based
neurons: :func:`lif_refrac_adjoint`, :func:`lsnn_adjoint`, :func:`coba_lif_adjoint`
and their layers :class:`EventPropRefracLIF`, :class:`EventPropLSNN`, :class:`EventPropCobaLIF`),
and DECOLLE's layer-local learning
(:class:`DECOLLE`, :class:`DECOLLENetwork`), and Norse's correlation sensors
(:class:`CorrelationSensor`, :class:`LIFCorrelation`), and one-spike-per-neuron
convolutional STDP and R-STDP (Kheradpisheh et al. 2018, Mozafari et al. 2019:
:func:`first_spike_stdp`, :func:`reward_stdp`, :func:`k_winners`). See ``docs/learning.md``."""

from spikeflow.learn.adjoint_coba import CobaLIFAdjointParameters, coba_lif_adjoint
from spikeflow.learn.adjoint_layers import EventPropCobaLIF, EventPropLSNN, EventPropRefracLIF
from spikeflow.learn.adjoint_lsnn import LSNNAdjointParameters, lsnn_adjoint
from spikeflow.learn.adjoint_refrac import LIFRefracAdjointParameters, lif_refrac_adjoint
from spikeflow.learn.competitive import ConvWinnerTakeAll, WinnerTakeAll
from spikeflow.learn.correlation_sensor import (
    CorrelationSensor,
    CorrelationSensorState,
    LIFCorrelation,
    STDPSensorState,
    correlation_based_update,
    correlation_sensor_step,
    stdp_sensor_step,
)
from spikeflow.learn.decolle import (
    DECOLLE,
    DECOLLELayer,
    DECOLLENetwork,
    DECOLLEResult,
    DECOLLEState,
    decolle_loss,
    decolle_u_regularisation,
)
from spikeflow.learn.eligibility import eligibility_stdp_update
from spikeflow.learn.eprop import EProp, EPropResult
from spikeflow.learn.eprop_network import (
    EPropRSNN,
    RSNNOutput,
    RSNNState,
    RSNNStep,
    eprop_loss,
    rate_regularization,
)
from spikeflow.learn.eventprop import (
    EventPropLIF,
    LIFAdjointParameters,
    lif_adjoint,
    lif_recurrent_adjoint,
)
from spikeflow.learn.first_spike import (
    adaptive_rstdp_rates,
    decide,
    fire_once,
    first_spike_stdp,
    k_winners,
    kheradpisheh_rates,
    pointwise_inhibition,
    reward_stdp,
)
from spikeflow.learn.stdp import STDPLearner
from spikeflow.learn.stdp_rule import eligibility_reward, stdp_update
from spikeflow.learn.triplet import (
    TRIPLET_PRESETS,
    TripletParameters,
    TripletSTDPLearner,
    triplet_preset,
    triplet_stdp_update,
)

__all__ = [
    "DECOLLE",
    "TRIPLET_PRESETS",
    "CobaLIFAdjointParameters",
    "ConvWinnerTakeAll",
    "CorrelationSensor",
    "CorrelationSensorState",
    "DECOLLELayer",
    "DECOLLENetwork",
    "DECOLLEResult",
    "DECOLLEState",
    "EProp",
    "EPropRSNN",
    "EPropResult",
    "EventPropCobaLIF",
    "EventPropLIF",
    "EventPropLSNN",
    "EventPropRefracLIF",
    "LIFAdjointParameters",
    "LIFCorrelation",
    "LIFRefracAdjointParameters",
    "LSNNAdjointParameters",
    "RSNNOutput",
    "RSNNState",
    "RSNNStep",
    "STDPLearner",
    "STDPSensorState",
    "TripletParameters",
    "TripletSTDPLearner",
    "WinnerTakeAll",
    "adaptive_rstdp_rates",
    "coba_lif_adjoint",
    "correlation_based_update",
    "correlation_sensor_step",
    "decide",
    "decolle_loss",
    "decolle_u_regularisation",
    "eligibility_reward",
    "eligibility_stdp_update",
    "eprop_loss",
    "fire_once",
    "first_spike_stdp",
    "k_winners",
    "kheradpisheh_rates",
    "lif_adjoint",
    "lif_recurrent_adjoint",
    "lif_refrac_adjoint",
    "lsnn_adjoint",
    "pointwise_inhibition",
    "rate_regularization",
    "reward_stdp",
    "stdp_sensor_step",
    "stdp_update",
    "triplet_preset",
    "triplet_stdp_update",
]
