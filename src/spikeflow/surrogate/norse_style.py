"""Norse 1.1's surrogate shapes (``norse/torch/functional/threshold.py``, read from its
code), with any ``alpha``: the pseudo-derivatives Norse's ``method="tanh"``,
``"heavi_erfc"``, ``"circ"`` and ``"triangle"`` use, and its two random spike
functions, ``Logistic`` and ``CircDist``.

Norse's backward is not the derivative of the smooth step its docstrings name (its
``tanh`` surrogate's height is 1 where ``1/2 + tanh(αx)/2`` has ``α/2``), so these are
derivative-only (no ``spiking=False``). Where a spikeflow surrogate already equals one
for every ``alpha`` it is not repeated here: Norse's ``super`` ignores its ``alpha``
(``SuperSpike(alpha=1.0)``, whatever Norse's ``alpha``). At one ``alpha`` each the
others equal older built-ins: ``HeaviTanh(2) = Sigmoid(4)``, ``HeaviErfc(2) = Erf(2)``,
``NorseTriangle(1) = Triangle(1) = PiecewiseQuadratic(1)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from spikeflow._second_order_flag import refuse_compiled_second_order
from spikeflow.errors import ConfigurationError
from spikeflow.surrogate.base import Surrogate, _require_positive

__all__ = ["CircDist", "HeaviCirc", "HeaviErfc", "HeaviTanh", "Logistic", "NorseTriangle"]


def _sech2(x: Tensor, alpha: float) -> Tensor:
    t = torch.tanh(alpha * x)
    return 1 - t * t


def _circ(x: Tensor, alpha: float) -> Tensor:
    """``α^3 / (α^2 + x^2)^(3/2)`` as ``(1 + (x/α)^2)^(-3/2)`` (no ``α^3`` to overflow
    in half precision)."""
    u = x / alpha
    r = 1 + u * u
    return 1 / (r * torch.sqrt(r))


class HeaviTanh(Surrogate):
    """Norse's ``HeaviTanh`` (``method="tanh"``): derivative ``1 - tanh(αx)^2`` (height
    1, width ``1/α``); no primitive (alpha 100, Norse's default). ``HeaviTanh(alpha=2)``
    is ``Sigmoid(alpha=4)``; another ``alpha`` is ``(2/α)·Sigmoid(alpha=2α)``."""

    has_primitive = False

    def __init__(self, alpha: float = 100.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return _sech2(x, alpha)


class HeaviErfc(Surrogate):
    """Norse's ``HeaviErfc`` (``method="heavi_erfc"``): derivative
    ``(2/√π) exp(-(αx)^2)`` (height ``2/√π`` whatever ``α``); no primitive (alpha 100).
    ``HeaviErfc(alpha=2)`` is ``Erf(alpha=2)``; another ``alpha`` is
    ``(2/α)·Erf(alpha=α)``."""

    has_primitive = False

    def __init__(self, alpha: float = 100.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        u = alpha * x
        return (2 / math.sqrt(math.pi)) * torch.exp(-u * u)


class HeaviCirc(Surrogate):
    """Norse's ``HeaviCirc`` (``method="circ"``): derivative ``α^3 / (α^2 + x^2)^(3/2)``
    (height 1, tails falling as ``|x|^-3``); no primitive (alpha 100). No older
    spikeflow surrogate has this shape."""

    has_primitive = False

    def __init__(self, alpha: float = 100.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return _circ(x, alpha)


class NorseTriangle(Surrogate):
    """Norse's ``Triangle`` (``method="triangle"``): derivative ``α max(1 - |x|, 0)``,
    width 1 whatever ``α`` (which sets the height); no primitive (alpha 100, Norse's
    ``LIFParameters`` default; its ``triangle_fn`` defaults to 0.3). ``NorseTriangle(1)``
    is ``Triangle(gamma=1)``; spikeflow's :class:`~spikeflow.surrogate.Triangle` keeps
    unit area and scales the width instead."""

    has_primitive = False

    def __init__(self, alpha: float = 100.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return alpha * torch.relu(1 - torch.abs(x))


class _BernoulliSpike(torch.autograd.Function):
    """A spike drawn with probability ``p`` (``torch.bernoulli``), the pseudo-derivative
    ``derivative(x, **params)`` backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: Tensor, derivative: Any, params: dict) -> Tensor:
        ctx.save_for_backward(x)
        ctx.derivative, ctx.params = derivative, params
        return torch.bernoulli(p)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple:
        (x,) = ctx.saved_tensors
        return grad_output * ctx.derivative(x, **ctx.params), None, None, None


class _RandomSpike(Surrogate):
    """A spike drawn at random with a probability that rises with ``x`` (Norse's
    ``Logistic`` and ``CircDist``): not a Heaviside step, so like
    :class:`~spikeflow.surrogate.PoissonPass` it is not named in ``SURROGATES`` and the
    fused kernels refuse it (``backend="auto"`` runs the reference loop)."""

    has_primitive = False
    heaviside_forward = False

    @staticmethod
    def probability(x: Tensor, alpha: float) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, strict: bool = False) -> Tensor:
        """Spikes drawn with :meth:`probability` of ``x`` from torch's global generator
        (Norse's draws for the same seed), the pseudo-derivative backward."""
        if strict:
            raise ConfigurationError(
                f"{type(self).__name__} fires at random: it has no strict form "
                "(strict_firing=True); build the neuron with strict_firing=False"
            )
        refuse_compiled_second_order()  # (a traced backward drops their terms)
        p = type(self).probability(x.detach(), self.alpha)
        return _BernoulliSpike.apply(x, p, type(self).derivative, self.params)


def _refuse_trace(name: str, x: object) -> None:
    from spikeflow.kernels.expr import Expr, TraceError  # (lazy: kernels import us)

    if isinstance(x, Expr):
        raise TraceError(
            f"{name} fires at random (torch.bernoulli), which the fused kernels cannot "
            "compile: run the neuron with backend='torch' (backend='auto' does so by itself)"
        )


class Logistic(_RandomSpike):
    """Norse's ``Logistic``: a spike with probability ``1/2 + tanh(αx)/2``, backward
    ``1 - tanh(αx)^2`` (:class:`HeaviTanh`'s); alpha 100. Random (see
    :class:`CircDist`)."""

    def __init__(self, alpha: float = 100.0) -> None:
        super().__init__(alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def probability(x: Tensor, alpha: float) -> Tensor:
        return 0.5 + 0.5 * torch.tanh(alpha * x)

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        _refuse_trace("Logistic", x)
        return _sech2(x, alpha)


class CircDist(_RandomSpike):
    """Norse's ``CircDist``: a spike with probability ``1/2 + x / (2 sqrt(x^2 + α^2))``,
    backward ``α^3 / (α^2 + x^2)^(3/2)`` (:class:`HeaviCirc`'s); alpha 100.

    Random: drawn from torch's global generator (the same spikes as Norse's for the same
    seed), so not named in :data:`~spikeflow.surrogate.SURROGATES` (pass the class or an
    instance); a neuron with it runs on the reference loop (the fused kernels fire by a
    Heaviside step and refuse it) and needs ``strict_firing=False``.
    """

    def __init__(self, alpha: float = 100.0) -> None:
        super().__init__(alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def probability(x: Tensor, alpha: float) -> Tensor:
        return 0.5 + 0.5 * (x / torch.sqrt(x * x + alpha * alpha))

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        _refuse_trace("CircDist", x)
        return _circ(x, alpha)
