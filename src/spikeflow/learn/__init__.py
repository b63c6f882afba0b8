"""Local learning rules: spike-timing-dependent plasticity (:class:`STDPLearner`,
:func:`stdp_update`). See ``docs/learning.md``."""

from spikeflow.learn.stdp import STDPLearner
from spikeflow.learn.stdp_rule import stdp_update

__all__ = ["STDPLearner", "stdp_update"]
