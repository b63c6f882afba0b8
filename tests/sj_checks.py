"""What the SpikingJelly comparison modules (``test_sj_*.py``) share: the float64
tolerances, SpikingJelly's modules (the test skipped where it is not installed) and
input gradients of a random weighting (imported, not collected by pytest). Their
``float64`` default-dtype fixture is in ``conftest.py``."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import pytest
import torch
from torch import Tensor

F64 = torch.float64
TIGHT = dict(rtol=1e-12, atol=1e-12)


def sj(module: str) -> ModuleType:
    """``spikingjelly.activation_based.<module>``; skips the test without SpikingJelly."""
    return pytest.importorskip(
        f"spikingjelly.activation_based.{module}", reason="SpikingJelly is not installed"
    )


def grads(y: Tensor, inputs: Tensor | Sequence[Tensor], g: Tensor) -> tuple[Tensor, ...]:
    """Gradients of ``(y * g).sum()`` with respect to ``inputs``."""
    return torch.autograd.grad((y * g).sum(), inputs)


def grad(y: Tensor, x: Tensor, g: Tensor) -> Tensor:
    """Gradient of ``(y * g).sum()`` with respect to the one tensor ``x``."""
    return grads(y, x, g)[0]
