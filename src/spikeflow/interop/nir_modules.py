"""Stateless layers an imported NIR graph needs that torch does not have: NIR's Scale
and Threshold, and the recurrent weight of a network without self-connections.

Scale and Threshold work on any leading dims (``[T, B, ...]`` or ``[B, ...]``): their
parameter broadcasts against the trailing (per-sample) dims.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, DTypeError
from spikeflow.layers import Linear
from spikeflow.surrogate import Sigmoid, Surrogate

__all__ = ["OffDiagonalLinear", "Scale", "Threshold"]


def _as_parameter_tensor(name: str, value: float | Tensor) -> Tensor:
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise ConfigurationError(f"{name} must be a float or a tensor, got {value!r}")
    tensor = (
        torch.as_tensor(value, dtype=torch.get_default_dtype())
        if not isinstance(value, Tensor)
        else value.detach().clone()
    )
    if not tensor.is_floating_point():
        raise DTypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigurationError(f"{name} must be finite, got {value}")
    return tensor


class Scale(nn.Module):
    """Elementwise product ``y = x * scale`` (NIR ``Scale``).

    Args:
        scale: a float or a tensor broadcastable to one sample (e.g. ``[N]``).
    """

    def __init__(self, scale: float | Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", _as_parameter_tensor("scale", scale))

    def forward(self, x: Tensor) -> Tensor:
        """``x * scale``."""
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale=tensor{tuple(self.scale.shape)}"


class Threshold(nn.Module):
    """Stateless spike function ``y = Θ(x - threshold)`` (NIR ``Threshold``).

    NIR fires on ``x > threshold`` (``strict=True``, the default here); the backward
    pass uses the surrogate gradient.

    Args:
        threshold: a float or a tensor broadcastable to one sample.
        strict: fire on ``x > threshold`` (default) or on ``x >= threshold``.
        surrogate_function: the spike function (default ``Sigmoid(alpha=4)``).
    """

    def __init__(
        self,
        threshold: float | Tensor,
        strict: bool = True,
        surrogate_function: Surrogate | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("threshold", _as_parameter_tensor("threshold", threshold))
        self.strict = bool(strict)
        self.surrogate_function = Sigmoid() if surrogate_function is None else surrogate_function
        if not isinstance(self.surrogate_function, Surrogate):
            raise ConfigurationError(
                "surrogate_function must be a spikeflow.surrogate.Surrogate, got "
                f"{type(self.surrogate_function).__name__}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Spikes ``1[x > threshold]`` (``>=`` unless strict)."""
        return self.surrogate_function(x - self.threshold, strict=self.strict)

    def extra_repr(self) -> str:
        return f"threshold=tensor{tuple(self.threshold.shape)}, strict={self.strict}"


class _OffDiagonal(nn.Linear):
    """``nn.Linear`` applying ``W ⊙ (1 - I)``: the diagonal is held at zero."""

    off_diagonal: Tensor

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.off_diagonal, self.bias)


class OffDiagonalLinear(Linear, _OffDiagonal):
    """A square :class:`~spikeflow.layers.Linear` whose diagonal is always zero: the
    recurrent weight of a :class:`~spikeflow.layers.Recurrent` without self-connections
    (exported with ``metadata={"spikeflow_self_connections": False}``), so an imported
    network cannot learn the self-connections back.

    Args:
        features: the number of neurons (the weight is ``[features, features]``).
        bias: whether the layer has a bias.
        dtype: the parameters' dtype.
    """

    def __init__(self, features: int, bias: bool = True, dtype: torch.dtype | None = None) -> None:
        super().__init__(features, features, bias=bias, dtype=dtype)
        mask = 1.0 - torch.eye(features, dtype=self.weight.dtype)
        self.register_buffer("off_diagonal", mask, persistent=False)
