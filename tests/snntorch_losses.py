"""What the snnTorch-loss tests share (imported, not collected): the peer in float64 and
a value-and-gradient helper."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


def snntorch_functional(monkeypatch: pytest.MonkeyPatch):
    """``snntorch.functional``, skipping when snnTorch is absent. snnTorch builds its
    one-hot targets and accumulates ``mse_membrane_loss`` and ``ce_rate_loss`` in a
    module-level ``dtype`` (float32); it is set to float64 here so values compare
    exactly."""
    pytest.importorskip("snntorch")
    import snntorch.functional as sf
    import snntorch.functional.loss as sf_loss
    import snntorch.spikegen as spikegen

    monkeypatch.setattr(sf_loss, "dtype", torch.float64)
    monkeypatch.setattr(spikegen, "dtype", torch.float64)
    return sf


def value_and_grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """``fn(x)`` as a float and its gradient with respect to ``x`` (a fresh leaf)."""
    leaf = x.detach().clone().requires_grad_(True)
    value = fn(leaf).sum()  # snnTorch returns some losses as shape [1]
    (grad,) = torch.autograd.grad(value, leaf)
    return float(value.detach()), grad


def assert_same(fn_a, fn_b, x: torch.Tensor) -> None:
    """The two losses give the same value and gradient on ``x`` (float64 rounding)."""
    value_a, grad_a = value_and_grad(fn_a, x)
    value_b, grad_b = value_and_grad(fn_b, x)
    assert value_a == pytest.approx(value_b, rel=1e-12, abs=1e-14)
    torch.testing.assert_close(grad_a, grad_b, rtol=1e-10, atol=1e-14)
