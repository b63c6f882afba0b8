"""Checks and steps the energy models share: a cost in joules, one counted forward."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from spikeflow._checks import is_finite_nonnegative
from spikeflow.errors import ConfigurationError

__all__ = ["check_joules", "hooked_forward"]


def check_joules(owner: str, name: str, value: object) -> float:
    """``value`` as a float: a finite number of joules >= 0 (not a bool), else a
    ConfigurationError that names ``owner`` and the argument ``name``."""
    if not is_finite_nonnegative(value):
        raise ConfigurationError(
            f"{owner}: {name} must be a finite number of joules >= 0, got {value!r}"
        )
    return float(value)


def hooked_forward(model: nn.Module, x: Tensor, handles: Iterable[RemovableHandle]) -> None:
    """Run ``model(x)`` once without gradients from a reset state, so that the hooks
    behind ``handles`` count it; then remove the hooks and reset the model again (also
    when the forward raises)."""
    from spikeflow.functional import reset_net

    reset_net(model)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        reset_net(model)
