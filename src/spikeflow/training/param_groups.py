"""The optimizer's parameter groups of a ``spikeflow train`` run.

A model may say how its parameters train by defining a method
``optimizer_parameter_groups(lr, weight_decay) -> list[dict]`` (:data:`GROUPS_METHOD`):
parameter groups as ``torch.optim`` takes them, each a dict with ``"params"`` and, where
it differs from the run's, its own ``"lr"`` or ``"weight_decay"`` (S4's SSM parameters:
their own learning rate, no weight decay). The trainer checks them
(:func:`check_parameter_groups`: every trainable parameter of the model in exactly one
group) and uses them instead of its single group. ``--no-decay-norm-bias``
(:func:`without_decay`) then takes the normalisation layers' parameters, the biases, the
neurons' parameters and the learned quantization steps (:func:`no_decay_parameters`)
out of weight decay, in whichever groups they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from spikeflow._checks import is_finite_nonnegative
from spikeflow.errors import ConfigurationError
from spikeflow.layers import (
    BatchNormThroughTime1d,
    BatchNormThroughTime2d,
    BatchNormThroughTime3d,
    MeanOnlyBatchNorm,
    NeuNorm,
    TemporalEffectiveBatchNorm1d,
    TemporalEffectiveBatchNorm2d,
    TemporalEffectiveBatchNorm3d,
)
from spikeflow.neurons import BaseNode, DSRIFNode, LoopNode, NoResetLIFNode

__all__ = [
    "GROUPS_METHOD",
    "NEURON_TYPES",
    "NORM_TYPES",
    "check_parameter_groups",
    "model_parameter_groups",
    "no_decay_parameters",
    "split_group",
    "without_decay",
]

#: The name of the model method the trainer asks for parameter groups.
GROUPS_METHOD = "optimizer_parameter_groups"

#: Normalisation layers: all their parameters (scales and shifts) are "norm" parameters.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
    nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm,
    BatchNormThroughTime1d, BatchNormThroughTime2d, BatchNormThroughTime3d,
    TemporalEffectiveBatchNorm1d, TemporalEffectiveBatchNorm2d, TemporalEffectiveBatchNorm3d,
    MeanOnlyBatchNorm, NeuNorm,
)  # fmt: skip

#: Neurons whose parameters (learnable time constants, thresholds, PLIF's ``w``) are
#: "neuron" parameters. The PSNs are not among them: their T×T weights are a synapse
#: over time and keep their decay.
NEURON_TYPES: tuple[type[nn.Module], ...] = (BaseNode, LoopNode, NoResetLIFNode, DSRIFNode)

_KNOWN_KEYS = ("lr", "weight_decay")


def model_parameter_groups(
    model: nn.Module, lr: float, weight_decay: float
) -> list[dict[str, Any]] | None:
    """The groups ``model.optimizer_parameter_groups(lr, weight_decay)`` gives, checked
    (:func:`check_parameter_groups`); None where the model has no such method.

    Raises:
        ConfigurationError: the attribute is not callable, or its groups are bad.
    """
    method = getattr(model, GROUPS_METHOD, None)
    if method is None:
        return None
    source = f"{type(model).__name__}.{GROUPS_METHOD}"
    if not callable(method):
        raise ConfigurationError(f"{source} must be a method (lr, weight_decay) -> list[dict]")
    return check_parameter_groups(model, method(lr, weight_decay), source)


def check_parameter_groups(
    model: nn.Module, groups: Any, source: str = "parameter groups"
) -> list[dict[str, Any]]:
    """``groups`` as a list of new dicts with their ``"params"`` as lists, empty groups
    left out, if every trainable parameter of ``model`` is in exactly one group.

    A frozen parameter (``requires_grad=False``) may be left out. ``"lr"`` and
    ``"weight_decay"``, where a group sets them, must be finite numbers >= 0.

    Raises:
        ConfigurationError: naming ``source`` and the group: not a list of dicts, a group
            without ``"params"``, an entry that is not an ``nn.Parameter`` of ``model``,
            a parameter in two groups, a trainable parameter in none, or a bad
            ``lr``/``weight_decay``.
    """
    if isinstance(groups, dict) or not isinstance(groups, (list, tuple)):
        raise ConfigurationError(
            f"{source} must return a list of dicts (torch.optim parameter groups), "
            f"got {type(groups).__name__}"
        )
    names = {id(p): name for name, p in model.named_parameters(remove_duplicate=True)}
    seen: dict[int, int] = {}
    checked: list[dict[str, Any]] = []
    for index, group in enumerate(groups):
        where = f"{source}: group {index}"
        if not isinstance(group, dict) or "params" not in group:
            raise ConfigurationError(
                f"{where} must be a dict with 'params', got {_describe(group)}"
            )
        params = group["params"]
        if isinstance(params, (nn.Parameter, dict, str)) or not isinstance(params, Iterable):
            raise ConfigurationError(
                f"{where}: 'params' must be a list of parameters, got {_describe(params)}"
            )
        params = list(params)
        for position, p in enumerate(params):
            if not isinstance(p, nn.Parameter):
                raise ConfigurationError(
                    f"{where}: params[{position}] is {_describe(p)}, not an nn.Parameter"
                )
            if id(p) not in names:
                raise ConfigurationError(
                    f"{where}: params[{position}] (shape {tuple(p.shape)}) is not a "
                    f"parameter of {type(model).__name__}"
                )
            if id(p) in seen:
                raise ConfigurationError(
                    f"{source}: parameter {names[id(p)]!r} is in group {seen[id(p)]} and "
                    f"in group {index}; each parameter belongs to one group"
                )
            seen[id(p)] = index
        for key in _KNOWN_KEYS:
            if key in group:
                value = group[key]
                if not is_finite_nonnegative(value):
                    raise ConfigurationError(
                        f"{where}: {key} must be a finite number >= 0, got {value!r}"
                    )
        if params:
            checked.append({**group, "params": params})
    missing = [name for name, p in model.named_parameters()
               if p.requires_grad and id(p) not in seen]  # fmt: skip
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ConfigurationError(
            f"{source}: the trainable parameters {shown}{more} are in no group; every "
            "trainable parameter of the model must be in exactly one"
        )
    return checked


def no_decay_parameters(model: nn.Module) -> set[int]:
    """The ids of the parameters ``--no-decay-norm-bias`` keeps out of weight decay: those
    of normalisation layers (:data:`NORM_TYPES`), those a neuron (:data:`NEURON_TYPES`)
    holds itself (not those of a layer inside it, such as the ILC neurons' connection
    weights), and every bias (a parameter named ``bias``, ``bias_*`` or ``*_bias``, also under a
    parametrization), and the learned steps of quantized weights and inputs (LSQ: a
    scale, like a norm's gain)."""
    from spikeflow.quant.activation import InputQuantizer
    from spikeflow.quant.lsq import LSQWeightQuantizer

    found: set[int] = set()
    for module in model.modules():
        if isinstance(module, (NORM_TYPES, LSQWeightQuantizer, InputQuantizer)):
            found.update(id(p) for p in module.parameters())
        elif isinstance(module, NEURON_TYPES):  # its own, not a synapse it holds (ILC's conn)
            found.update(id(p) for p in module.parameters(recurse=False))
    for name, p in model.named_parameters():
        leaf = _leaf_name(name)
        if leaf == "bias" or leaf.startswith("bias_") or leaf.endswith("_bias"):
            found.add(id(p))
    return found


def without_decay(
    groups: list[dict[str, Any]], no_decay: set[int], weight_decay: float
) -> list[dict[str, Any]]:
    """``groups`` with the parameters in ``no_decay`` moved out of each decayed group
    (its own ``weight_decay``, else ``weight_decay``) into a copy of that group right
    after it, with ``weight_decay`` 0; groups without decay, and empty parts, as they are."""
    result: list[dict[str, Any]] = []
    for group in groups:
        if group.get("weight_decay", weight_decay) == 0:
            result.append(group)
            continue
        freed, kept = split_group(group, no_decay)
        if kept:
            result.append({**group, "params": kept})
        if freed:
            result.append({**group, "params": freed, "weight_decay": 0.0})
    return result


def split_group(group: dict[str, Any], ids: set[int]) -> tuple[list[Any], list[Any]]:
    """``group``'s parameters whose ids are in ``ids``, and the others, each in the
    group's order."""
    inside = [p for p in group["params"] if id(p) in ids]
    outside = [p for p in group["params"] if id(p) not in ids]
    return inside, outside


def _leaf_name(name: str) -> str:
    """``"fc.bias"`` -> ``"bias"``; ``"fc.parametrizations.bias.original"`` -> ``"bias"``."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[-3] == "parametrizations" and parts[-1].startswith("original"):
        return parts[-2]
    return parts[-1]


def _describe(value: Any) -> str:
    if hasattr(value, "shape"):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
