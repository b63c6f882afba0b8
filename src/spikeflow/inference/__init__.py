"""Inference with early exit over time steps (dynamic time steps).

* :func:`early_exit`: run a network step by step; each sample stops at the first step
  whose accumulated output passes an :class:`ExitRule` (SEENN-I's confidence, DT-SNN's
  entropy); the samples that exited leave the batch with their state.
* :func:`exit_from_outputs`: the same exits read off a whole run's outputs.
* :func:`threshold_sweep`, :class:`ThresholdSweep`: accuracy against mean steps for
  many thresholds from one pass.

See ``docs/training.md`` (early exit).
"""

from spikeflow.inference.early_exit import (
    ACCUMULATE,
    CRITERIA,
    EarlyExitResult,
    ExitRule,
    early_exit,
    exit_from_outputs,
    exit_scores,
)
from spikeflow.inference.state_rows import NetworkState, SteppedNetwork
from spikeflow.inference.sweep import SweepPoint, ThresholdSweep, threshold_sweep

__all__ = [
    "ACCUMULATE",
    "CRITERIA",
    "EarlyExitResult",
    "ExitRule",
    "NetworkState",
    "SteppedNetwork",
    "SweepPoint",
    "ThresholdSweep",
    "early_exit",
    "exit_from_outputs",
    "exit_scores",
    "threshold_sweep",
]
