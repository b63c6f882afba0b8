"""Gradient Rewiring (Chen et al., IJCAI 2021; methods.md 8.1): Adam with a Laplace prior.

The hidden strengths θ of :class:`~spikeflow.prune.SignedStrength` layers are updated
by Adam on the redefined gradient ``s·∂L/∂w`` (the reparameterisation's backward), plus
the prior's step ``-η̂·α·sign(θ - μ)`` with ``η̂ = lr / (1 - β₁^k)``, not divided by
Adam's denominator. The prior's centre ``μ`` puts a share ``target_sparsity`` of its
mass below zero, where a synapse is pruned. Every other parameter gets plain Adam.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_real
from spikeflow.errors import ConfigurationError
from spikeflow.prune.reparam import SignedStrength, pruned_layers

__all__ = ["GradRewiring", "prior_centre"]


def prior_centre(alpha: float, target_sparsity: float) -> float:
    """The centre μ of the Laplace(μ, 1/α) prior with ``P(θ < 0) = target_sparsity``.

    ``μ = ln(2(1 - s*))/α`` for ``s* >= 0.5`` (the paper's case, μ <= 0) and
    ``μ = -ln(2 s*)/α`` below it (μ > 0).

    Raises:
        ConfigurationError: ``alpha`` not > 0 or ``target_sparsity`` outside ``(0, 1)``.
    """
    alpha = check_real("prior_centre: alpha", alpha, 0.0, low_open=True)
    target_sparsity = check_real("prior_centre: target_sparsity", target_sparsity, 0.0, 1.0,
                                 low_open=True, high_open=True)  # fmt: skip
    if target_sparsity >= 0.5:
        return math.log(2.0 * (1.0 - target_sparsity)) / alpha
    return -math.log(2.0 * target_sparsity) / alpha


def _alpha(value: Any) -> float:
    return check_real("GradRewiring: alpha", value, 0.0)


def _target(value: Any) -> float:
    return check_real("GradRewiring: target_sparsity", value, 0.0, 1.0, low_open=True,
                      high_open=True)  # fmt: skip


class GradRewiring(torch.optim.Adam):
    """Adam for a model prepared by :func:`~spikeflow.prune.apply_gradient_rewiring`,
    with Grad R's prior on the synapse strengths.

    Args:
        params: the model (its strengths get the prior, its other parameters plain
            Adam), or parameter groups as for ``torch.optim.Adam`` where every group
            sets its ``alpha`` (``0`` for parameters that are no strengths: batch norm,
            biases, neuron parameters) and may set its ``target_sparsity``.
        lr, betas, eps, weight_decay, amsgrad: as ``torch.optim.Adam``. In groups with
            a prior (``alpha > 0``) weight decay acts on the effective weight, as in the
            authors' code (``∂L/∂w + wd·w``, so a pruned synapse decays no further).
        alpha: the prior's strength α (``0`` turns it off: Adam on θ alone). The paper's
            CIFAR-10 default is ``1e-3``.
        target_sparsity: the prior's share of pruned synapses s*, in ``(0, 1)``.
        **adam_options: other ``torch.optim.Adam`` options (``foreach``, ``fused``, ...).

    Raises:
        ConfigurationError: a model with no Grad R layer, a parameter group without
            ``alpha``, ``alpha < 0``, a target sparsity outside ``(0, 1)``, or
            ``maximize=True`` (for the optimizer or a group).
    """

    def __init__(
        self,
        params: nn.Module | Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        alpha: float = 1e-3,
        target_sparsity: float = 0.95,
        **adam_options: Any,
    ) -> None:
        alpha, target_sparsity = _alpha(alpha), _target(target_sparsity)
        if isinstance(params, nn.Module):
            params = _groups_of(params)
        else:
            params = _explicit_groups(params)
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, **adam_options)  # fmt: skip
        # alpha and target_sparsity are ours: the base class's defaults do not hold
        # them, so they are filled in here (and by add_param_group from now on).
        self.defaults["alpha"] = alpha
        self.defaults["target_sparsity"] = target_sparsity
        for group in self.param_groups:
            group.setdefault("alpha", alpha)
            group.setdefault("target_sparsity", target_sparsity)
            _alpha(group["alpha"])
            _target(group["target_sparsity"])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As ``torch.optim.Optimizer.add_param_group``; ``alpha`` and
        ``target_sparsity`` default to the constructor's.

        Raises:
            ConfigurationError: the group (or the optimizer) has ``maximize=True``.
        """
        if param_group.get("maximize", self.defaults.get("maximize", False)):
            which = f"parameter group {len(self.param_groups)}"
            where = which if "maximize" in param_group else f"the optimizer (for {which})"
            raise ConfigurationError(
                f"GradRewiring: maximize=True is not supported (set by {where}): Grad R's "
                "prior step pulls the strengths towards its centre while Adam descends the "
                "loss; to maximise an objective, minimise its negative"
            )
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if "alpha" in self.defaults:
            group.setdefault("alpha", self.defaults["alpha"])
            group.setdefault("target_sparsity", self.defaults["target_sparsity"])

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One Adam step, then the prior's step on the groups with ``alpha > 0``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # The prior's direction is taken at θ before this step (as the paper's update).
        # Weight decay of the effective weight w = s·max(θ, 0) is wd·max(θ, 0) in θ
        # (s² = 1): added to the gradient while Adam's own decay (of θ) is off.
        pulls: list[tuple[dict[str, Any], Tensor, Tensor, float]] = []
        decays: list[tuple[dict[str, Any], float]] = []
        grads: list[tuple[Tensor, Tensor]] = []
        for group in self.param_groups:
            if group["alpha"] <= 0:
                continue
            centre = prior_centre(group["alpha"], group["target_sparsity"])
            decay = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                before = float(self.state[p]["step"]) if "step" in self.state[p] else 0.0
                pulls.append((group, p, torch.sign(p - centre), before))
                if decay != 0:
                    grads.append((p, p.grad))
                    p.grad = p.grad + decay * p.clamp(min=0)
            if decay != 0:
                decays.append((group, decay))
                group["weight_decay"] = 0.0
        try:
            _adam_step(self)
        finally:
            for group, decay in decays:
                group["weight_decay"] = decay
            for p, grad in grads:
                p.grad = grad
        for group, p, direction, before in pulls:
            step = float(self.state[p]["step"])
            if step <= before:  # a step the fused kernel skipped (inf/NaN gradients)
                continue
            beta1 = group["betas"][0]
            lr = float(group["lr"])
            p.add_(direction, alpha=-lr / (1.0 - beta1**step) * group["alpha"])
        return loss


def _adam_step(optimizer: GradRewiring) -> None:
    """Adam's step without the optimizer-hook wrapper torch puts around ``Adam.step``
    (this class's own ``step`` is wrapped already: hooks would run twice)."""
    step = torch.optim.Adam.step
    if getattr(step, "hooked", False):
        step = step.__wrapped__  # type: ignore[attr-defined]
    step(optimizer)


def _explicit_groups(params: Any) -> list[dict[str, Any]]:
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    for index, group in enumerate(groups):
        if "alpha" not in group:
            raise ConfigurationError(
                f"GradRewiring: parameter group {index} sets no alpha. Pass the model "
                "(GradRewiring(model, ...) finds its synapse strengths), or give every "
                "group an alpha: 0 for parameters that are no Grad R strengths (batch "
                "norm, biases, neuron parameters), which the prior would otherwise pull "
                "like synapses"
            )
    return groups


def _groups_of(model: nn.Module) -> list[dict[str, Any]]:
    strengths = [
        layer.parametrizations.weight.original
        for _, layer, _ in pruned_layers(model, SignedStrength)
    ]
    if not strengths:
        raise ConfigurationError(
            "GradRewiring: the model has no Grad R layer; call "
            "spikeflow.prune.apply_gradient_rewiring(model) before building the optimizer"
        )
    ids = {id(p) for p in strengths}
    others = [p for p in model.parameters() if id(p) not in ids]
    groups: list[dict[str, Any]] = [{"params": strengths}]
    if others:
        groups.append({"params": others, "alpha": 0.0})
    return groups
