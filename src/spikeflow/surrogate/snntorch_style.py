"""snnTorch's surrogates (``snntorch.surrogate``, snnTorch 1.0), by its definitions: a
pseudo-derivative each, no primitive. snnTorch's spike is ``1[x > 0]``: a neuron ported
from it fires with ``strict_firing=True`` (LeakyNode's default)."""

from __future__ import annotations

import torch
from torch import Tensor

from spikeflow.surrogate.base import Surrogate, _mask, _require, _require_positive


class FastSigmoid(Surrogate):
    """snnTorch's ``fast_sigmoid(slope)``, the surrogate of its tutorials: derivative
    ``1 / (slope |x| + 1)^2`` (height 1 at ``x = 0``, area ``2 / slope``), no primitive
    (slope 25, snnTorch's default). ``SoftSign(alpha=slope)`` is the same curve times
    ``slope / 2``; ``QPseudoSpike(alpha=2)`` is ``FastSigmoid(slope=2)``.
    """

    def __init__(self, slope: float = 25.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, slope=slope)
        _require(self, "slope", self.slope >= 0, ">= 0")

    @staticmethod
    def derivative(x: Tensor, slope: float) -> Tensor:
        d = slope * torch.abs(x) + 1
        return 1 / (d * d)


class SpikeRateEscape(Surrogate):
    """snnTorch's ``spike_rate_escape(beta, slope)``: derivative
    ``slope exp(-beta |x - 1|)``, a Laplace bump centred one unit *above* the threshold
    (at ``H = θ + 1``: snnTorch's definition), no primitive (beta 1, slope 25).
    """

    def __init__(self, beta: float = 1.0, slope: float = 25.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, beta=beta, slope=slope)
        _require(self, "beta", self.beta >= 0, ">= 0")
        _require_positive(self, "slope")

    @staticmethod
    def derivative(x: Tensor, beta: float, slope: float) -> Tensor:
        return slope * torch.exp(-beta * torch.abs(x - 1))


class SparseFastSigmoid(Surrogate):
    """snnTorch's ``SFS(slope, B)`` (sparse fast sigmoid): :class:`FastSigmoid`'s
    derivative ``1 / (slope |x| + 1)^2`` where ``x > B`` and 0 elsewhere, so only a
    membrane more than ``B`` over the threshold passes a gradient; no primitive (slope
    25, B 1).
    """

    def __init__(self, slope: float = 25.0, B: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, slope=slope, B=B)
        _require(self, "slope", self.slope >= 0, ">= 0")

    @staticmethod
    def derivative(x: Tensor, slope: float, B: float) -> Tensor:
        d = slope * torch.abs(x) + 1
        return _mask(x > B, x) / (d * d)


class Triangular(Surrogate):
    """snnTorch's ``triangular(threshold)``: derivative ``threshold`` for ``x < 0`` and
    ``-threshold`` for ``x >= 0`` (the slopes of a tent ``-threshold |x|``, so the
    gradient changes sign at the threshold; snnTorch's definition, not a triangle-shaped
    pseudo-derivative: that is :class:`Triangle`). It equals
    ``LeakyKReLU(leak=threshold, k=-threshold)``; no primitive (threshold 1).
    """

    def __init__(self, threshold: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, threshold=threshold)

    @staticmethod
    def derivative(x: Tensor, threshold: float) -> Tensor:
        return threshold - (2 * threshold) * _mask(x >= 0, x)


class LeakySpikeOperator(Surrogate):
    """snnTorch's leaky spike operator (``LeakySpikeOperator``, ``LSO(slope)``):
    derivative 1 where the neuron fires (``x > 0``, snnTorch's spike, also under
    ``strict_firing=False``) and ``slope`` elsewhere; no primitive (slope 0.1).
    ``slope=0`` is snnTorch's ``heaviside()`` exactly. (snnTorch 1.0's ``LSO()`` calls
    its stochastic operator with the wrong arguments and fails; this is the
    ``LeakySpikeOperator`` backward it defines.)
    """

    def __init__(self, slope: float = 0.1, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, slope=slope)

    @staticmethod
    def derivative(x: Tensor, slope: float) -> Tensor:
        fired = _mask(x > 0, x)
        return fired + (1 - fired) * slope


class StochasticSpikeOperator(Surrogate):
    """snnTorch's ``SSO(mean, variance)`` (stochastic spike operator): derivative 1 where
    the neuron fires (``x > 0``) and ``(u - 1/2 + mean) variance`` elsewhere, ``u``
    uniform in ``[0, 1)`` drawn afresh at every backward (``torch.rand_like``, so the
    global generator's seed fixes it); no primitive (mean 0, variance 0.2).

    Random, so not a function of ``x``: two evaluations of :meth:`derivative` differ
    (gradcheck and the forward-mode tangent, which evaluate it again, do not apply), the
    fused backends refuse it with a ``TraceError`` (``backend="auto"`` runs the
    reference loop, with a warning), and it is not named in :data:`SURROGATES`, whose
    surrogates all have a derivative of ``x`` alone: pass the class or an instance.
    """

    def __init__(self, mean: float = 0.0, variance: float = 0.2, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, mean=mean, variance=variance)
        _require(self, "variance", self.variance >= 0, ">= 0")

    @staticmethod
    def derivative(x: Tensor, mean: float, variance: float) -> Tensor:
        from spikeflow.kernels.expr import Expr, TraceError  # (lazy: kernels import us)

        if isinstance(x, Expr):
            raise TraceError(
                "StochasticSpikeOperator draws random numbers in its backward "
                "(torch.rand_like), which the fused kernels cannot compile: run the neuron "
                "with backend='torch' (backend='auto' does so by itself)"
            )
        fired = _mask(x > 0, x)
        return fired + (1 - fired) * ((torch.rand_like(x) - 0.5 + mean) * variance)
