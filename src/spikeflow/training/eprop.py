"""E-prop in ``spikeflow train`` (``--eprop FEEDBACK``; docs/training_methods.md).

The run's model must be a :class:`~spikeflow.learn.EPropRSNN` (the zoo's
``eprop_rsnn``). Each batch runs through :meth:`spikeflow.learn.EProp.run`, which adds
the gradients to ``.grad`` forward in time (no graph, memory independent of ``T``);
the optimizer then steps as after a backward pass. The loss is the cross-entropy of the
readout at every step averaged over the ``T`` steps (every step weighs ``1/T``: the
online per-step ``ce``, :func:`~spikeflow.training.online.per_step_loss`, which the
evaluation reports; with ``ce``'s ``label_smoothing``, of the smoothed labels), plus
Bellec's firing-rate regularisation when ``eprop_rate_strength > 0``. The prediction is
the class of the largest readout averaged over the steps (``--readout rate``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.learn.eprop import EProp
from spikeflow.learn.eprop_network import EPropRSNN
from spikeflow.models.common import flat_steps
from spikeflow.training.config import TrainConfig

__all__ = ["eprop_rule", "eprop_train_step"]


def eprop_rule(config: TrainConfig, model: nn.Module, distributed: bool) -> EProp | None:
    """The e-prop rule of a run (``None`` without ``config.eprop``), its random feedback
    drawn from the run's seed.

    Raises:
        ConfigurationError: the model is not an :class:`~spikeflow.learn.EPropRSNN`, or
            the run is distributed (e-prop's gradients are not averaged over processes).
    """
    if config.eprop is None:
        return None
    if not isinstance(model, EPropRSNN):
        raise ConfigurationError(
            f"--eprop trains Bellec et al.'s LIF/ALIF network, whose equations the rule "
            f"follows: use --model eprop_rsnn (got {config.model!r}, a "
            f"{type(model).__name__})"
        )
    if distributed:
        raise ConfigurationError(
            "--eprop runs in one process: its gradients are written forward in time, "
            "outside the backward pass that averages gradients over torchrun's processes"
        )
    return EProp(
        model, config.eprop, "ce", rate_target=config.eprop_rate_target,
        rate_strength=config.eprop_rate_strength,
        feedback_decay=config.eprop_feedback_decay,
        generator=torch.Generator().manual_seed(config.seed),
    )  # fmt: skip


def eprop_train_step(
    rule: EProp, x: Tensor, target: Tensor, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """One batch ``x`` ``[T, B, ...]``: the gradients into ``.grad``; returns the readout
    ``[T, B, K]`` and the loss (the per-step cross-entropy averaged over the steps, plus
    the rate regularisation), both detached.

    ``label_smoothing`` (``ce``'s, ``--loss-kwargs label_smoothing=S``): the labels
    ``target`` ``[B]`` are learnt as the distributions ``(1 − S)·onehot + S/K``, the
    target of ``torch.nn.functional.cross_entropy(..., label_smoothing=S)``.
    """
    network = rule.network
    flat = flat_steps("eprop_rsnn", x, network.in_features)
    weight = network.input.weight
    if label_smoothing:
        classes = network.out_features
        onehot = F.one_hot(target.long(), classes).to(weight.dtype)
        target = (1.0 - label_smoothing) * onehot + label_smoothing / classes
    result = rule.run(flat.to(weight.dtype), target, 1.0 / x.shape[0])
    return result.y, result.loss
