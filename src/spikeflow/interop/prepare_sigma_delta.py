"""Export forms of sigma-delta units: a unit whose activation is a mean-only batch norm
then a ReLU (Lava-DL's PilotNet SDNN, ``pilotnet_sdnn``) becomes a ReLU unit whose
synapse carries the norm as a bias.

In evaluation the norm subtracts its running mean ``m`` from the unit's decoded input
``σ_t = Σ_{s ≤ t} W Δ_s``; a :class:`~spikeflow.layers.DeltaSynapse` adds its bias once,
at a sequence's first step, so its sigma carries the bias at every step: ``σ_t − m`` is
the sigma of the same synapse with bias ``b − m``. Lava-DL's netx export writes the norm
the same way, as the neuron's bias. A norm that quantizes its mean (``pre_hook_fx``) is
refused: the folded bias would not be the value subtracted.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from spikeflow.layers.lava_norm import MeanOnlyBatchNorm
from spikeflow.layers.sigma_delta import DeltaSynapse, SigmaDelta

__all__ = ["fold_unit_norm", "unit_norm"]


def unit_norm(unit: nn.Module) -> MeanOnlyBatchNorm | None:
    """The mean-only batch norm of a :class:`SigmaDelta` unit whose activation is
    ``nn.Sequential(norm, nn.ReLU())`` (the norm itself or a module holding it as
    ``.norm``), else None."""
    if not isinstance(unit, SigmaDelta):
        return None
    act = unit.activation
    if not (isinstance(act, nn.Sequential) and len(act) == 2 and isinstance(act[1], nn.ReLU)):
        return None
    norm = act[0] if isinstance(act[0], MeanOnlyBatchNorm) else getattr(act[0], "norm", None)
    return norm if isinstance(norm, MeanOnlyBatchNorm) else None


def fold_unit_norm(
    synapse: nn.Module | None, unit: SigmaDelta, where: str
) -> tuple[DeltaSynapse, SigmaDelta] | str:
    """``(synapse with bias b − running_mean, unit with a plain ReLU)`` for a unit with a
    mean-only norm (:func:`unit_norm`) after ``synapse``; copies, the originals kept.
    Else the problem, for ``where`` (the unit's path), as a string."""
    norm = unit_norm(unit)
    if norm is None:
        return f"{where}: not a sigma-delta unit with a mean-only batch norm and a ReLU"
    if not isinstance(synapse, DeltaSynapse):
        return (
            f"{where}: its mean-only batch norm is exported as the bias of the DeltaSynapse "
            f"right before it; there is {type(synapse).__name__ if synapse else 'nothing'}"
        )
    if norm.pre_hook_fx is not None:
        return (
            f"{where}: its mean-only batch norm quantizes the mean it subtracts "
            "(pre_hook_fx), which a folded bias would not reproduce"
        )
    mean = norm.running_mean.detach()
    if synapse.bias is not None and synapse.bias.numel() != mean.numel():
        return (
            f"{where}: its norm's {mean.numel()} channel means do not fit the "
            f"{synapse.bias.numel()} biases of the synapse before it"
        )
    synapse, unit = copy.deepcopy(synapse), copy.deepcopy(unit)
    base = torch.zeros_like(mean) if synapse.bias is None else synapse.bias.detach()
    synapse.bias = nn.Parameter(base.reshape(-1) - mean.to(base.dtype), requires_grad=False)
    unit.activation = nn.ReLU()
    return synapse, unit
