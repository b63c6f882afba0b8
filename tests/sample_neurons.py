"""Neurons shared by several test modules (imported, not collected by pytest)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
        u = u + torch.floor(x * 3.0 + v) * 0.25 + (v * 2.0).floor()
        return 0.6 * v + x + 0.05 * u / a

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.a = torch.nn.Parameter(torch.tensor(1.5))

    def neuron_params(self) -> dict[str, torch.Tensor]:
        return {"a": self.a}


class TorchStyleIF(BaseNode):
    """Equations written in everyday PyTorch style: tensor methods, ``F.relu``, the
    exponents PyTorch's pow special-cases, a learnable exponent on a base that is often
    0, NaN-propagating maximum/minimum, ``& | ~ ^`` between comparisons and
    ``torch.add`` with ``alpha=1``."""

    @staticmethod
    def charge(x, v, *, p):
        r = F.relu(x - 0.2)
        u = r**3 - 0.5 * v**2 + 0.1 * (1.0 + r) ** -2 + 0.2 * (1.0 + r) ** -0.5
        u = u + 0.3 * (1.0 + x * x) ** 0.5 + 0.05 * r**p + 0.01 * (1.5 + v.sin()) ** -1
        u = u + 0.1 * (x * 0.5).exp() - v.detach().clamp(min=-1.0, max=2.0) * 0.1
        u = torch.add(u, torch.maximum(x, v).sigmoid() - torch.minimum(x, v) * 0.2, alpha=1)
        hot = ((v > 0.3) & (x > 0.4)) | ~(x > -0.5)
        u = torch.where(hot, u + 0.2, u) + ((v > 0.5) ^ (x > 0.5)).float() * 0.05
        return 0.7 * v + x * 0.5 + 0.3 * u.where(u.abs() < 5.0, u.tanh())

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.p = torch.nn.Parameter(torch.tensor(1.5))

    def neuron_params(self) -> dict[str, torch.Tensor]:
        return {"p": self.p}


class ConstantBase(BaseNode):
    """A constant base to a traced exponent (its derivative holds log(2.0)) and
    functions of constants: computed in the kernel's type, not in float32."""

    @staticmethod
    def charge(x, v):
        three = torch.full_like(v, 3.0)
        return 0.5 * v + 0.1 * 2.0**x + x * torch.log(three) + torch.tanh(three * 0.2)


class ScalarTrace(BaseNode):
    """An auxiliary state whose new value depends on a Python-float parameter alone."""

    @staticmethod
    def charge(x, v, a):
        return 0.5 * v + x + 0.1 * a

    @staticmethod
    def update(h, s, a, *, rho):
        return rho * 0.5

    def neuron_params(self):
        return {"rho": 0.6}

    def initial_state(self, like):
        return {**super().initial_state(like), "a": torch.zeros_like(like)}


class BooleanArithmetic(BaseNode):
    """Comparisons used as numbers without a cast."""

    @staticmethod
    def charge(x, v):
        return 0.5 * v + x + (x > 0.5) / 4.0 + 0.1 * torch.sigmoid(v > 0.2)


class RefractoryFlag(BaseNode):
    """An auxiliary state that is a where between two literals (float32 to Triton
    unless printed in the kernel's type: a float64 kernel did not compile)."""

    @staticmethod
    def charge(x, v, r):
        return 0.5 * v + x * (1.0 - r)

    @staticmethod
    def update(h, s, r):
        return torch.where(h > 1.0, 1.0, 0.0)

    def initial_state(self, like):
        return {**super().initial_state(like), "r": torch.zeros_like(like)}


def lif_loop(x: torch.Tensor, threshold: float = 1.0, tau: float = 2.0) -> torch.Tensor:
    """A reference LIF over time (decay_input, hard reset to 0): H = V + (X - V)/τ,
    spike H >= θ."""
    v = torch.zeros_like(x[0])
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        h = v + (x[t] - v) / tau
        out[t] = (h >= threshold).to(x.dtype)
        v = h * (1 - out[t])
    return out
