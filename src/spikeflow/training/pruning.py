"""Pruning (``--prune grad_r|stds|lats --prune-kwargs ...``) and weight quantization
(``--weight-bits``) in ``spikeflow train``.

The model is reparameterised when it is built (:func:`reparameterise_weights`, so a resumed or
evaluated run loads its checkpoint into the same layers); Grad R replaces Adam by
:class:`~spikeflow.prune.GradRewiring`; STDS and LATS move their threshold after every
optimizer step (:func:`make_threshold_schedule`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError
from spikeflow.prune import (
    SHAPES,
    GradRewiring,
    LATSThreshold,
    SignedStrength,
    ThresholdSchedule,
    apply_gradient_rewiring,
    apply_soft_threshold,
    prunable_layers,
    pruned_layers,
)
from spikeflow.prune.schedule import _check_beta
from spikeflow.quant import apply_weight_quantization
from spikeflow.training.param_groups import split_group

__all__ = [
    "PRUNE_METHODS",
    "apply_pruning",
    "grad_rewiring_groups",
    "make_grad_rewiring",
    "make_threshold_schedule",
    "prune_settings",
    "reparameterise_weights",
    "tracks_sparsity",
]

PRUNE_METHODS = ("none", "grad_r", "stds", "lats")

_REQUIRED = object()
#: Each method's arguments (``--prune-kwargs``) and their defaults.
_ARGUMENTS: dict[str, dict[str, Any]] = {
    "none": {},
    "grad_r": {"alpha": 1e-3, "target_sparsity": 0.95, "exclude": []},
    "stds": {
        "final_threshold": _REQUIRED,
        "shape": "sine",
        "beta": None,
        "start_epoch": 0,
        "exclude": [],
    },
    "lats": {"l1": None, "final_threshold": None, "start_epoch": 0, "exclude": []},
}


def prune_settings(method: str, kwargs: dict[str, Any], optimizer: str,
                   epochs: int) -> dict[str, Any]:  # fmt: skip
    """``kwargs`` checked for ``method``, with its defaults filled in.

    Raises:
        ConfigurationError: an unknown method or argument, a missing or invalid value,
            or Grad R with another optimizer than Adam (its update is Adam's).
    """
    if method not in PRUNE_METHODS:
        raise ConfigurationError(f"prune must be one of {', '.join(PRUNE_METHODS)}; got {method!r}")
    accepted = _ARGUMENTS[method]
    owner = f"prune {method!r}"
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "no arguments"
        raise ConfigurationError(
            f"prune {method!r}: unknown argument(s) {unknown}; it takes {takes}"
        )
    values = {**accepted, **kwargs}
    missing = [name for name, value in values.items() if value is _REQUIRED]
    if missing:
        raise ConfigurationError(
            f"prune {method!r} needs {', '.join(missing)} (e.g. --prune-kwargs {missing[0]}=...)"
        )
    if method == "grad_r":
        if optimizer != "adam":
            raise ConfigurationError(
                f"prune 'grad_r' trains with Adam (Grad R's update is Adam's with a prior); "
                f"optimizer is {optimizer!r}: set optimizer = 'adam'"
            )
        check_real(f"{owner}: alpha", values["alpha"], 0.0)
        check_real(f"{owner}: target_sparsity", values["target_sparsity"], 0.0, 1.0,
                   low_open=True, high_open=True)  # fmt: skip
    elif method == "stds":
        check_real(f"{owner}: final_threshold", values["final_threshold"], 0.0)
        if values["shape"] not in SHAPES:
            raise ConfigurationError(
                f"prune 'stds': shape must be one of {', '.join(SHAPES)}; got {values['shape']!r}"
            )
        values["beta"] = _check_beta(values["shape"], values["beta"], owner)
    elif method == "lats":
        given = [name for name in ("l1", "final_threshold") if values[name] is not None]
        if len(given) != 1:
            raise ConfigurationError(
                f"prune 'lats' needs either l1 (the L1 strength λ) or final_threshold (the "
                f"threshold at the end, λ derived from the learning rates); got "
                f"{' and '.join(given) or 'neither'}"
            )
        check_real(f"{owner}: {given[0]}", values[given[0]], 0.0)
    start = values.get("start_epoch", 0)
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < epochs:
        raise ConfigurationError(
            f"{owner}: start_epoch must be an integer from 0 to epochs - 1 "
            f"({epochs - 1}), got {start!r}"
        )
    exclude = values.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(n, str) for n in exclude):
        raise ConfigurationError(
            f'{owner}: exclude must be a list of layer names (e.g. exclude=["features.0"]), '
            f"got {exclude!r}"
        )
    return values


def apply_pruning(model: nn.Module, method: str, exclude: Sequence[str] = ()) -> None:
    """Reparameterise ``model``'s linear and convolution weights for ``method``, except
    the layers named in ``exclude``.

    Raises:
        ConfigurationError: a name in ``exclude`` that is no linear or convolution layer
            of the model (the message lists them), or nothing left to prune.
    """
    if method == "none":
        return
    named = dict(prunable_layers(model))
    unknown = [name for name in exclude if name not in named]
    if unknown:
        raise ConfigurationError(
            f"prune {method!r}: exclude names {unknown}, which are no linear or convolution "
            f"layers of the model; they are: {', '.join(named)}"
        )
    chosen = [layer for name, layer in named.items() if name not in exclude]
    if not chosen:
        raise ConfigurationError(f"prune {method!r}: exclude leaves no layer to prune")
    if method == "grad_r":
        apply_gradient_rewiring(model, chosen)
    else:
        apply_soft_threshold(model, 0.0, chosen)


def reparameterise_weights(model: nn.Module, config: Any) -> None:
    """Prune (``config.prune``) and then quantize (``config.weight_bits``) ``model``'s
    weights, as the run trains them: after pruning, the pruned weight is quantized.

    Raises:
        ConfigurationError: pruning or quantization of a model with DelayedLinear layers,
            which neither covers.
    """
    from spikeflow.layers import DelayedLinear

    if tracks_sparsity(config) and any(isinstance(m, DelayedLinear) for m in model.modules()):
        raise ConfigurationError(
            f"model {config.model!r} has DelayedLinear layers, which pruning (--prune) and "
            "weight quantization (--weight-bits) do not cover (their weights would stay "
            "dense and in full precision, their delays would lose their own learning "
            "rate under grad_r): train it without them"
        )
    apply_pruning(model, config.prune, config.prune_kwargs.get("exclude", []))
    if config.weight_bits is not None:
        apply_weight_quantization(model, config.weight_bits, method=config.weight_quant)


def tracks_sparsity(config: Any) -> bool:
    """Whether the run's epochs log the share of zero weights (pruned or quantized)."""
    return config.prune != "none" or config.weight_bits is not None


def make_grad_rewiring(params: nn.Module | list[dict[str, Any]], lr: float,
                       weight_decay: float, settings: dict[str, Any]) -> GradRewiring:  # fmt: skip
    """Grad R's optimizer for a model (prepared by :func:`apply_pruning`), or for the
    parameter groups :func:`grad_rewiring_groups` made of it."""
    return GradRewiring(params, lr=lr, weight_decay=weight_decay, alpha=settings["alpha"],
                        target_sparsity=settings["target_sparsity"])  # fmt: skip


def grad_rewiring_groups(
    model: nn.Module, groups: list[dict[str, Any]], alpha: float
) -> list[dict[str, Any]]:
    """``groups`` (the run's parameter groups of ``model``) split for Grad R: each into
    its synapse strengths (the prior's ``alpha``) and its other
    parameters (``alpha`` 0: no prior), each part keeping the group's ``lr`` and
    ``weight_decay``.

    Raises:
        ConfigurationError: ``model`` has no Grad R layer.
    """
    strengths = {id(layer.parametrizations.weight.original)
                 for _, layer, _ in pruned_layers(model, SignedStrength)}  # fmt: skip
    if not strengths:
        raise ConfigurationError(
            "prune 'grad_r': the model has no Grad R layer (apply_gradient_rewiring)"
        )
    split: list[dict[str, Any]] = []
    for group in groups:
        prior, plain = split_group(group, strengths)
        if prior:
            split.append({**group, "params": prior, "alpha": alpha})
        if plain:
            split.append({**group, "params": plain, "alpha": 0.0})
    return split


def make_threshold_schedule(
    method: str,
    settings: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    steps_per_epoch: int,
    epoch_lrs: Callable[[], Sequence[float]] = tuple,
) -> ThresholdSchedule | LATSThreshold | None:
    """The threshold schedule STDS or LATS steps after each optimizer step (else None).

    LATS given a ``final_threshold`` D gets ``λ = D / (steps_per_epoch × Σ η_e)``, the
    sum over the pruned epochs' learning rates, which ``epoch_lrs()`` gives (called only
    then): the threshold then ends at D whatever the schedule (under a per-epoch cosine,
    the authors' "low-frequency" LATS)."""
    start = settings.get("start_epoch", 0)
    if method == "stds":
        return ThresholdSchedule(
            model, settings["final_threshold"], total_steps=epochs * steps_per_epoch,
            shape=settings["shape"], start_step=start * steps_per_epoch,
            beta=settings.get("beta"),
        )  # fmt: skip
    if method == "lats":
        l1 = settings.get("l1")
        if l1 is None:
            l1 = lats_strength(settings["final_threshold"], epoch_lrs()[start:], steps_per_epoch)
        return LATSThreshold(model, optimizer, l1, start_step=start * steps_per_epoch)
    return None


def lats_strength(
    final_threshold: float, epoch_lrs: Sequence[float], steps_per_epoch: int
) -> float:
    """The LATS strength λ whose threshold ``λ × Σ η`` reaches ``final_threshold`` after
    ``steps_per_epoch`` steps at each learning rate of ``epoch_lrs``."""
    total = steps_per_epoch * math.fsum(epoch_lrs)
    if not total > 0:
        raise ConfigurationError(
            "prune 'lats': final_threshold needs pruned epochs with a positive learning rate"
        )
    return final_threshold / total


def ignore_fixed_buffers(model: nn.Module) -> None:
    """Keep DistributedDataParallel from broadcasting Grad R's signs at every forward:
    they are as large as the weights and never change (every process starts with
    rank 0's model)."""
    names = [f"{name}.parametrizations.weight.{index}.sign" if name else
             f"parametrizations.weight.{index}.sign"
             for name, layer, _ in pruned_layers(model, SignedStrength)
             for index, reparam in enumerate(layer.parametrizations.weight)
             if isinstance(reparam, SignedStrength)]  # fmt: skip
    if names:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, names
        )
