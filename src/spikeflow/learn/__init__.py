"""Local learning rules: spike-timing-dependent plasticity (:class:`STDPLearner`,
:func:`stdp_update`), also reward-modulated (MSTDP, MSTDP-ET with
:func:`eligibility_reward`). See ``docs/learning.md``."""

from spikeflow.learn.competitive import WinnerTakeAll
from spikeflow.learn.eligibility import eligibility_stdp_update
from spikeflow.learn.stdp import STDPLearner
from spikeflow.learn.stdp_rule import eligibility_reward, stdp_update

__all__ = [
    "STDPLearner",
    "WinnerTakeAll",
    "eligibility_reward",
    "eligibility_stdp_update",
    "stdp_update",
]
