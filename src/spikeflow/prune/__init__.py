"""Pruning spiking networks while they train (methods.md 8): Grad R, STDS and LATS.

* Gradient Rewiring: :func:`apply_gradient_rewiring` then the :class:`GradRewiring`
  optimizer (Adam with a Laplace prior that sets the target sparsity).
* STDS and LATS (soft-threshold pruning): :func:`apply_soft_threshold`, then any
  optimizer and a threshold schedule: :class:`ThresholdSchedule` (STDS's sine and
  linear, S-LATS) or :class:`LATSThreshold` (threshold proportional to the summed
  learning rate).
* :func:`sparsity` reports the zero weights per layer; :func:`finalize` turns the
  reparameterised layers back into plain ones holding the sparse weights.

See ``docs/pruning.md``.
"""

from spikeflow.prune.reparam import (
    SignedStrength,
    SoftThreshold,
    apply_gradient_rewiring,
    apply_soft_threshold,
    finalize,
    prunable_layers,
    pruned_layers,
    set_threshold,
)
from spikeflow.prune.report import LayerSparsity, SparsityReport, sparsity
from spikeflow.prune.rewiring import GradRewiring, prior_centre
from spikeflow.prune.schedule import SHAPES, LATSThreshold, ThresholdSchedule, threshold_at

__all__ = [
    "SHAPES",
    "GradRewiring",
    "LATSThreshold",
    "LayerSparsity",
    "SignedStrength",
    "SoftThreshold",
    "SparsityReport",
    "ThresholdSchedule",
    "apply_gradient_rewiring",
    "apply_soft_threshold",
    "finalize",
    "prior_centre",
    "prunable_layers",
    "pruned_layers",
    "set_threshold",
    "sparsity",
    "threshold_at",
]
