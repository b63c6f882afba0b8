"""Neurons shared by several test modules (imported, not collected by pytest)."""

from __future__ import annotations

import torch

from spikeflow.neurons import BaseNode


class AllOpsIF(BaseNode):
    """Every function the equation tracer accepts, in one charge, with a learnable
    parameter ``a`` (an exponent and a divisor)."""

    @staticmethod
    def charge(x, v, *, a):
        u = torch.tanh(x) + torch.sigmoid(v) + torch.atan(x) + torch.sin(v) + torch.cos(x)
        u = u + torch.erf(x) + torch.erfc(v) + torch.log(1.0 + x * x) + torch.log1p(v * v)
        u = u + torch.exp(-torch.abs(x)) + torch.expm1(-v * v) + torch.sqrt(1.0 + v * v)
        u = u + torch.rsqrt(1.0 + x * x) + torch.relu(x - 0.5) + torch.sign(v) * 0.1
        u = u + torch.maximum(x, v) - torch.minimum(x, v) + torch.where(x > v, x, v * 0.5)
        u = u + torch.pow(1.0 + x * x, a) + (x * x) ** 2 + torch.clamp(v, -1.0, 1.0)
        return 0.6 * v + x + 0.05 * u / a

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.a = torch.nn.Parameter(torch.tensor(1.5))

    def neuron_params(self) -> dict[str, torch.Tensor]:
        return {"a": self.a}
