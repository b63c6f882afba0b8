"""The optimizer's update on NeuroMC: which parameters are updated, and how.

SGD (momentum, weight decay, per param group; no Nesterov, dampening or maximize) is
priced per (momentum, weight decay, momentum buffer) group, Adam and AdamW over all the
parameters updated (those of AMSGrad groups apart: their running maximum of the second
moments costs a comparison and a 32-bit read and write more per element);
:mod:`spikeflow.energy.neuromc_costs` has the costs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.energy.neuromc_costs import Work
from spikeflow.errors import ConfigurationError

__all__ = ["check_optimizer", "optimizer_works"]


def check_optimizer(optimizer: object) -> None:
    """Raise a ConfigurationError unless NeuroMC prices ``optimizer``'s update (SGD
    without Nesterov, dampening or maximize; Adam; AdamW), naming what is not."""
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return
    if not isinstance(optimizer, torch.optim.SGD):
        raise ConfigurationError(
            f"NeuroMC prices SGD, Adam and AdamW updates; got optimizer {type(optimizer).__name__}"
        )
    for i, group in enumerate(optimizer.param_groups):
        for key, fine in (("nesterov", False), ("dampening", 0.0), ("maximize", False)):
            if group.get(key, fine) != fine:
                raise ConfigurationError(
                    f"NeuroMC prices plain SGD: param group {i} has {key}={group[key]!r} "
                    f"(needs {fine!r})"
                )


def optimizer_works(optimizer: torch.optim.Optimizer, stepped: set[Tensor]
                    ) -> list[tuple[str, Work, dict[str, int]]]:  # fmt: skip
    """``(op, work, loop dims)`` of the update of the parameters in ``stepped`` (the
    model's that got a gradient; an optimizer's other parameters, with stale gradients
    or none, are not updated by this step)."""
    params = [(g, p) for g in optimizer.param_groups for p in g["params"] if p in stepped]
    # By the class it is: a subclass (Grad R's GradRewiring, an Adam) is priced as it.
    adam = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))
    name = "adamw" if isinstance(optimizer, torch.optim.AdamW) else "adam" if adam else "sgd"
    groups: dict[tuple[bool, bool, bool, bool], int] = {}
    for group, p in params:
        if adam:  # all alike, but AMSGrad's (its extra state)
            key = (False, False, False, bool(group.get("amsgrad", False)))
        else:
            momentum = float(group.get("momentum", 0.0)) > 0.0
            decay = float(group.get("weight_decay", 0.0)) > 0.0
            buffer = momentum and "momentum_buffer" in optimizer.state.get(p, {})
            key = (momentum, decay, buffer, False)
        groups[key] = groups.get(key, 0) + p.numel()
    works = []
    for (momentum, decay, buffer, amsgrad), count in groups.items():
        if count == 0:
            continue
        kind = "adam" if adam else "sgd"
        work = Work(kind, "bp_grad_opt", elements=count, momentum=momentum,
                    weight_decay=decay, momentum_buffer=buffer, amsgrad=amsgrad)  # fmt: skip
        dims = {"B": 1, "T": 1, "C": 1, "K": 1, "OY": 1, "OX": 1, "FY": 1, "FX": count}
        works.append((name, work, dims))
    return works
