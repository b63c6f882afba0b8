"""The optimizer of a ``spikeflow train`` run, built once here for the trainer
(:class:`~spikeflow.training.trainer.Trainer`) and for ``spikeflow eval --energy neuromc``
(:mod:`~spikeflow.training.neuromc_eval`), which prices the update of the optimizer the
run trained with.

The parameter groups (:func:`run_parameter_groups`): the model's own
(``optimizer_parameter_groups``, :mod:`~spikeflow.training.param_groups`) or
``--decolle-layer-lr``'s, e-prop's adaptive feedback ``B`` at the run's rate, the
learnable synaptic delays in a group of their own (``lr · delay_lr_scale``, no weight
decay), then with ``--no-decay-norm-bias`` the norms', biases' and neurons' parameters
out of weight decay. The optimizer (:func:`build_run_optimizer`): ``--optimizer`` (SGD
with ``--momentum`` and optionally ``--nesterov``, Adam, AdamW, RMSprop with
``--momentum`` and SpikingJelly's ``alpha``/``eps``) over them, or with ``--prune grad_r`` Grad R's
:class:`~spikeflow.prune.GradRewiring` with its prior on the synapse strengths alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from spikeflow.errors import ConfigurationError
from spikeflow.layers.delay import DelayedLinear
from spikeflow.training.decolle import decolle_parameter_groups
from spikeflow.training.param_groups import (
    model_parameter_groups,
    no_decay_parameters,
    without_decay,
)
from spikeflow.training.pruning import grad_rewiring_groups, make_grad_rewiring, prune_settings

__all__ = ["build_run_optimizer", "run_parameter_groups", "trained_parameters"]

#: ``--optimizer rmsprop``'s smoothing constant and epsilon: SpikingJelly's
#: ``train_classify`` (and torchvision's) values, not torch's defaults (0.99, 1e-8).
RMSPROP_ALPHA, RMSPROP_EPS = 0.9, 0.0316


def trained_parameters(model: nn.Module, eprop: Any = None) -> list[nn.Parameter]:
    """What a run's optimizer updates and its gradient clipping scales: ``model``'s
    parameters and, with e-prop's adaptive feedback (``eprop``, the run's
    :class:`~spikeflow.learn.EProp`), ``B`` (it takes ``W_out``'s steps)."""
    extra = [] if eprop is None else list(eprop.parameters())
    return [*model.parameters(), *extra]


def run_parameter_groups(
    config: Any,
    model: nn.Module,
    eprop: Any = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]] | None:
    """The optimizer's parameter groups of a run of ``config`` training ``model`` (None:
    one group of :func:`trained_parameters` at ``lr`` and ``weight_decay``; module
    docstring). A group with its own ``lr`` records its multiple of ``lr`` as
    ``"lr_scale"`` (the run's rate, which the metrics log, is ``lr / lr_scale``).
    ``log`` gets a note when ``--no-decay-norm-bias`` changes nothing.

    Raises:
        ConfigurationError: the model gives its own groups and ``--decolle-layer-lr``
            is set, or its groups are bad (:func:`~spikeflow.training.param_groups.
            check_parameter_groups`).
    """
    own = model_parameter_groups(model, config.lr, config.weight_decay)
    groups = decolle_parameter_groups(config, model)  # --decolle-layer-lr
    if own is not None and groups is not None:
        raise ConfigurationError(
            f"{type(model).__name__} gives its own optimizer parameter groups "
            "(optimizer_parameter_groups), which --decolle-layer-lr would replace: "
            "leave --decolle-layer-lr out, or set the layers' rates in those groups"
        )
    groups = own if own is not None else groups
    feedback = [] if eprop is None else list(eprop.parameters())
    if groups is not None and feedback:  # e-prop's adaptive B, at the run's lr
        groups = [*groups, {"params": feedback}]
    # Learnable synaptic delays get their own learning rate, without weight decay.
    delays = {id(m.delay) for m in model.modules() if isinstance(m, DelayedLinear)}
    if own is None and delays:
        groups = [
            *[{**g, "params": [p for p in g["params"] if id(p) not in delays]}
              for g in groups or [{"params": trained_parameters(model, eprop)}]],
            {"params": [p for p in model.parameters() if id(p) in delays],
             "lr": config.lr * config.delay_lr_scale, "weight_decay": 0.0},
        ]  # fmt: skip
        groups = [g for g in groups if g["params"]]
    if config.no_decay_norm_bias:
        groups = groups or [{"params": trained_parameters(model, eprop)}]
        groups = without_decay(groups, no_decay_parameters(model), config.weight_decay)
        if log is not None and all(g.get("weight_decay", config.weight_decay) == 0
                                   for g in groups):  # fmt: skip
            log("note: --no-decay-norm-bias changes nothing: no parameter group has "
                "weight decay (set --weight-decay)")  # fmt: skip
    if groups is not None:
        for group in groups:
            if "lr" in group and "lr_scale" not in group:
                group["lr_scale"] = float(group["lr"]) / float(config.lr)
    return groups


def build_run_optimizer(
    config: Any,
    model: nn.Module,
    *,
    eprop: Any = None,
    settings: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> torch.optim.Optimizer:
    """The optimizer a run of ``config`` trains ``model`` with, over
    :func:`run_parameter_groups` (module docstring), in its initial state.

    Args:
        config: the run's resolved configuration (``optimizer``, ``lr``,
            ``weight_decay``, ``momentum``, ``prune``, ...).
        model: the run's model as built for it (pruning's reparameterisation done).
        eprop: the run's e-prop rule (:func:`~spikeflow.training.eprop.eprop_rule`),
            whose adaptive feedback ``B`` the optimizer steps too; None without e-prop.
        settings: ``--prune``'s arguments with their defaults
            (:func:`~spikeflow.training.pruning.prune_settings`; None: derived from
            ``config``).
        log: where a note on options that change nothing goes (None: nowhere).

    Raises:
        ConfigurationError: bad parameter groups or pruning arguments.
    """
    groups = run_parameter_groups(config, model, eprop, log)
    if config.prune == "grad_r":
        if settings is None:
            settings = prune_settings(config.prune, config.prune_kwargs, config.optimizer,
                                      config.epochs)  # fmt: skip
        params = (model if groups is None
                  else grad_rewiring_groups(model, groups, settings["alpha"]))  # fmt: skip
        return make_grad_rewiring(params, config.lr, config.weight_decay, settings)
    chosen: Any = trained_parameters(model, eprop) if groups is None else groups
    if config.optimizer == "sgd":
        return torch.optim.SGD(chosen, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay,
                               nesterov=getattr(config, "nesterov", False))  # fmt: skip
    if config.optimizer == "rmsprop":  # SpikingJelly's / torchvision's TF-style constants
        return torch.optim.RMSprop(chosen, lr=config.lr, alpha=RMSPROP_ALPHA,
                                   eps=RMSPROP_EPS, momentum=config.momentum,
                                   weight_decay=config.weight_decay)  # fmt: skip
    if config.optimizer == "adamw":
        return torch.optim.AdamW(chosen, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(chosen, lr=config.lr, weight_decay=config.weight_decay)
