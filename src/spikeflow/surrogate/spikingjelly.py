"""SpikingJelly's surrogate family (methods document, section 2), one class each."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError
from spikeflow.surrogate.base import Surrogate, _mask, _require, _require_positive, _sign


class Sigmoid(Surrogate):
    """Sigmoid surrogate: primitive ``sigmoid(alpha x)``, derivative ``alpha s (1 - s)`` with
    ``s = sigmoid(alpha x)``; the field's default (alpha 4, SpikingJelly's ``Sigmoid``; used
    in STBP, Wu et al. 2018).
    """

    def __init__(self, alpha: float = 4.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        s = torch.sigmoid(alpha * x)
        return alpha * s * (1 - s)

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        return torch.sigmoid(alpha * x)


class ATan(Surrogate):
    """Arctangent surrogate: primitive ``atan(pi alpha x / 2) / pi + 1/2``, derivative
    ``(alpha / 2) / (1 + (pi alpha x / 2)^2)`` (alpha 2; SpikingJelly's ``ATan``, the PLIF
    convention of Fang et al. 2021).
    """

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        u = (math.pi / 2 * alpha) * x
        return (alpha / 2) / (1 + u * u)

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        return torch.atan((math.pi / 2 * alpha) * x) / math.pi + 0.5


class PiecewiseQuadratic(Surrogate):
    """Piecewise-quadratic surrogate: triangular derivative ``alpha - alpha^2 |x|`` on
    ``|x| <= 1/alpha`` (0 outside), primitive ``-(alpha^2/2) x |x| + alpha x + 1/2`` on that
    band, 0 below and 1 above (alpha 1; SpikingJelly's ``PiecewiseQuadratic``, after Esser
    et al. 2016 and Neftci et al. 2019).
    """

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return torch.clamp(alpha - (alpha * alpha) * torch.abs(x), min=0.0)

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        b = 1.0 / alpha
        xc = torch.clamp(x, -b, b)
        return -(alpha * alpha / 2) * xc * torch.abs(xc) + alpha * xc + 0.5


class PiecewiseExp(Surrogate):
    """Piecewise-exponential surrogate: derivative ``(alpha/2) exp(-alpha |x|)`` (Laplace
    density), primitive ``exp(alpha x)/2`` for ``x < 0`` and ``1 - exp(-alpha x)/2`` for
    ``x >= 0`` (alpha 1; SpikingJelly's ``PiecewiseExp``, after SLAYER, Shrestha & Orchard
    2018, and Neftci et al. 2019).
    """

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return (alpha / 2) * torch.exp(-alpha * torch.abs(x))

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        # exp(-alpha |x|) never overflows, so neither branch of the where can be inf.
        e = torch.exp(-alpha * (_sign(x) * x)) / 2
        return torch.where(x < 0, e, 1 - e)


class SoftSign(Surrogate):
    """Soft-sign surrogate: primitive ``(softsign(alpha x) + 1) / 2`` with
    ``softsign(u) = u / (1 + |u|)``, derivative ``alpha / (2 (1 + alpha |x|)^2)`` (alpha 2;
    SpikingJelly's ``SoftSign``, the fast sigmoid of SuperSpike, Zenke & Ganguli 2018).
    """

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        d = 1 + alpha * torch.abs(x)
        return alpha / (2 * d * d)

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        # softsign(alpha x) == x / (1/alpha + |x|): alpha x never formed, so no fp16 overflow.
        return 0.5 * x / (1 / alpha + _sign(x) * x) + 0.5


class Erf(Surrogate):
    """Gaussian-error-function surrogate: primitive ``erfc(-alpha x) / 2``, derivative
    ``(alpha / sqrt(pi)) exp(-alpha^2 x^2)`` (a Gaussian; alpha 2; SpikingJelly's ``Erf``,
    after Esser et al. 2015 and the Gaussian curve of STBP, Wu et al. 2018).
    """

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        u = alpha * x
        return (alpha / math.sqrt(math.pi)) * torch.exp(-u * u)

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        return torch.erfc(-alpha * x) / 2


class SuperSpike(Surrogate):
    """SuperSpike surrogate: derivative ``alpha / (|x| + 1)^2``, no primitive (alpha 1).
    This is SpikingJelly's ``SuperSpike`` convention, where alpha scales the height; the
    original of Zenke & Ganguli 2018 is ``1 / (1 + beta |x|)^2`` with beta a steepness.
    """

    has_primitive = False

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        d = torch.abs(x) + 1
        return alpha / (d * d)


class NonzeroSignLogAbs(Surrogate):
    """Nonzero-sign-log-abs surrogate: primitive ``sign(x) ln(alpha |x| + 1)`` with
    ``sign(0) = +1`` (unbounded, 0 at ``x = 0``, so not a smooth step), derivative
    ``1 / (1/alpha + |x|)`` (alpha 1; SpikingJelly's ``NonzeroSignLogAbs``).
    """

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return 1 / (1 / alpha + torch.abs(x))

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        s = _sign(x)
        return s * torch.log(alpha * (s * x) + 1)


class PiecewiseLeakyReLU(Surrogate):
    """Piecewise leaky-ReLU surrogate: derivative ``1/(2w)`` for ``|x| < w`` and ``c``
    outside; primitive ``x/(2w) + 1/2`` inside, ``c (x + w)`` below and ``c (x - w) + 1``
    above (unbounded when ``c != 0``; w 1, c 0.01; SpikingJelly's ``PiecewiseLeakyReLU``).
    """

    def __init__(self, w: float = 1.0, c: float = 0.01, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, w=w, c=c)
        _require_positive(self, "w")

    @staticmethod
    def derivative(x: Tensor, w: float, c: float) -> Tensor:
        inside = _mask(torch.abs(x) < w, x)
        return inside * (1 / (2 * w)) + (1 - inside) * c

    @staticmethod
    def primitive(x: Tensor, w: float, c: float) -> Tensor:
        xc = torch.clamp(x, -w, w)
        return xc / (2 * w) + 0.5 + c * (x - xc)


class LeakyKReLU(Surrogate):
    """Leaky k-ReLU surrogate: derivative ``k`` for ``x >= 0`` and ``leak`` for ``x < 0``,
    no primitive (leak 0, k 1; SpikingJelly's ``LeakyKReLU``).
    """

    has_primitive = False

    def __init__(self, leak: float = 0.0, k: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, leak=leak, k=k)

    @staticmethod
    def derivative(x: Tensor, leak: float, k: float) -> Tensor:
        nonneg = _mask(x >= 0, x)
        return nonneg * k + (1 - nonneg) * leak


class QPseudoSpike(Surrogate):
    """q-PseudoSpike surrogate: derivative ``(1 + 2|x|/(alpha - 1))^(-alpha)`` with a
    tail whose fatness alpha (= q, must be > 1) controls; primitive
    ``0.5 (1 - 2x/(alpha-1))^(1-alpha)`` for ``x < 0`` and
    ``1 - 0.5 (1 + 2x/(alpha-1))^(1-alpha)`` for ``x >= 0`` (alpha 2; Herranz-Celotti &
    Rouat 2022, "Surrogate gradients design"; SpikingJelly's ``QPseudoSpike``).
    """

    def __init__(self, alpha: float = 2.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require(self, "alpha", self.alpha > 1, "> 1")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return torch.pow(1 + (2 / (alpha - 1)) * torch.abs(x), -alpha)

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        # The base uses |x|, so it is >= 1 in both branches: no pow of a negative base.
        p = 0.5 * torch.pow(1 + (2 / (alpha - 1)) * (_sign(x) * x), 1 - alpha)
        return torch.where(x < 0, p, 1 - p)


class S2NN(Surrogate):
    """S2NN surrogate: sigmoid below threshold, logarithmic above; derivative
    ``alpha s (1 - s)`` (``s = sigmoid(alpha x)``) for ``x < 0`` and ``beta / (x + 1)`` for
    ``x >= 0``; primitive ``sigmoid(alpha x)`` / ``beta ln(x + 1) + 1/2`` (unbounded above;
    alpha 4, beta 1; Suetake et al. 2023; SpikingJelly's ``S2NN``).
    """

    def __init__(self, alpha: float = 4.0, beta: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha, beta=beta)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float, beta: float) -> Tensor:
        s = torch.sigmoid(alpha * x)
        xp = torch.clamp(x, min=0.0)
        return torch.where(x < 0, alpha * s * (1 - s), beta / (xp + 1))

    @staticmethod
    def primitive(x: Tensor, alpha: float, beta: float) -> Tensor:
        # clamp keeps log's argument >= 1 where the sigmoid branch is the one used.
        xp = torch.clamp(x, min=0.0)
        return torch.where(x < 0, torch.sigmoid(alpha * x), beta * torch.log(xp + 1) + 0.5)


class SquarewaveFourierSeries(Surrogate):
    """Square-wave Fourier-series surrogate: primitive
    ``1/2 + (2/pi) sum_{i=1}^{n-1} sin((2i-1) w x) / (2i-1)`` with ``w = 2 pi / T_period``
    (the first n-1 odd harmonics of a 0/1 square wave of period T_period, so periodic, not
    a bounded step), derivative ``(4 / T_period) sum cos((2i-1) w x)`` (n 2, T_period 8;
    SpikingJelly's ``SquarewaveFourierSeries``). ``n`` must be >= 2 (n = 1 is an empty sum).
    """

    def __init__(self, n: int = 2, T_period: float = 8.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, n=n, T_period=T_period)
        # n = 1 is an empty sum: a zero gradient everywhere, which cannot train.
        _require(self, "n", self.n.is_integer() and self.n >= 2, "an integer >= 2")
        _require_positive(self, "T_period")

    @staticmethod
    def derivative(x: Tensor, n: float, T_period: float) -> Tensor:
        omega = 2 * math.pi / T_period
        total: Tensor | None = None
        for i in range(1, int(n)):
            term = torch.cos(((2 * i - 1) * omega) * x)
            total = term if total is None else total + term
        if total is None:
            return torch.zeros_like(x)
        return (4 / T_period) * total

    @staticmethod
    def primitive(x: Tensor, n: float, T_period: float) -> Tensor:
        omega = 2 * math.pi / T_period
        total = 0.0 * x  # the empty sum, still attached to the graph
        for i in range(1, int(n)):
            c = 2 * i - 1
            total = total + torch.sin((c * omega) * x) / c
        return 0.5 + (2 / math.pi) * total


class Rect(Surrogate):
    """Rectangular surrogate: derivative ``alpha 1[|x| < 1/(2 alpha)]`` (a unit-area box of
    width ``1/alpha``), primitive ``clip(alpha x + 1/2, 0, 1)`` (alpha 1; the rectangular
    curve of STBP, Wu et al. 2018, with ``alpha = 1/a``).
    """

    def __init__(self, alpha: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return alpha * _mask(torch.abs(x) < 1 / (2 * alpha), x)

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        return torch.clamp(alpha * x + 0.5, 0.0, 1.0)


class Triangle(Surrogate):
    """Triangular surrogate: derivative ``max(gamma - |x|, 0) / gamma^2`` (a unit-area
    triangle of half-width gamma), primitive its piecewise-quadratic antiderivative
    ``(gamma + x)^2 / (2 gamma^2)`` on ``[-gamma, 0)`` and
    ``1 - (gamma - x)^2 / (2 gamma^2)`` on ``[0, gamma]``, 0 below, 1 above (gamma 1; the
    triangle of Esser et al. 2016 and Bellec et al. 2018, normalised to unit area).
    """

    def __init__(self, gamma: float = 1.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, gamma=gamma)
        _require_positive(self, "gamma")

    @staticmethod
    def derivative(x: Tensor, gamma: float) -> Tensor:
        return torch.clamp(gamma - torch.abs(x), min=0.0) / (gamma * gamma)

    @staticmethod
    def primitive(x: Tensor, gamma: float) -> Tensor:
        u = torch.clamp(gamma - _sign(x) * x, min=0.0)
        q = u * u / (2 * gamma * gamma)
        return torch.where(x < 0, q, 1 - q)


class FakeNumericalGradient(Surrogate):
    """Fake-numerical-gradient surrogate: derivative ``min(1/|x|, alpha)``, the slope of the
    secant from the step at 0 to ``x`` (``(H(x) - H(0)) / x`` up to the sign), capped at
    alpha, which is also its value at ``x = 0``; no primitive (alpha 0.3; SpikingJelly's
    ``FakeNumericalGradient``).
    """

    has_primitive = False

    def __init__(self, alpha: float = 0.3, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require_positive(self, "alpha")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        # 1 / max(|x|, 1/alpha) == min(1/|x|, alpha), with no division by zero at x = 0.
        return 1 / torch.clamp(torch.abs(x), min=1 / alpha)


class LogTailedReLU(Surrogate):
    """Log-tailed ReLU surrogate (Cai et al. 2017, "Deep Learning with Low Precision by
    Half-wave Gaussian Quantization"; SpikingJelly's ``LogTailedReLU``): derivative
    ``alpha`` for ``x <= 0``, 1 on ``(0, 1]`` and ``1/x`` above; primitive ``alpha x``,
    ``x`` and ``ln(x) + 1`` on those pieces (alpha 0, >= 0: no gradient below the
    threshold, a ReLU whose tail grows only logarithmically).
    """

    def __init__(self, alpha: float = 0.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=alpha)
        _require(self, "alpha", self.alpha >= 0, ">= 0")

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        below = _mask(x <= 0, x)
        # 1 / max(x, 1) is 1 on (0, 1] and 1/x above, with no division by zero.
        return below * alpha + (1 - below) / torch.clamp(x, min=1.0)

    @staticmethod
    def primitive(x: Tensor, alpha: float) -> Tensor:
        tail = torch.log(torch.clamp(x, min=1.0)) + 1
        return torch.where(x > 1, tail, torch.where(x > 0, x, alpha * x))


class DeterministicPass(Surrogate):
    """Straight-through estimator (SpikingJelly's ``DeterministicPass``): the Heaviside
    step forward, the gradient passed through unchanged (derivative 1 everywhere);
    ``spiking=False`` returns ``x`` itself (the primitive is the identity). No
    parameters.
    """

    def __init__(self, spiking: bool = True) -> None:
        super().__init__(spiking=spiking)

    @staticmethod
    def derivative(x: Tensor) -> Tensor:
        return torch.ones_like(x)

    @staticmethod
    def primitive(x: Tensor) -> Tensor:
        return x


class _BernoulliPass(torch.autograd.Function):
    """``bernoulli(p)`` forward (in ``p``'s dtype), the gradient passed straight through."""

    generate_vmap_rule = False

    @staticmethod
    def forward(ctx: Any, p: Tensor) -> Tensor:
        return torch.bernoulli(p.detach())

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Tensor:
        return grad_output


class PoissonPass(Surrogate):
    """Stochastic firing with a straight-through gradient (SpikingJelly's
    ``PoissonPass``): forward a spike with probability ``x`` (``torch.bernoulli(x)``, from
    torch's global generator, in ``x``'s dtype; SpikingJelly returns float32), backward
    the gradient unchanged; ``spiking=False`` returns ``x``. ``x`` is a probability in
    ``[0, 1]`` (as a neuron's spike function it gets ``H - threshold``, which must then
    lie there too).

    Random, so not a Heaviside step of ``x``: like snnTorch's
    :class:`~spikeflow.surrogate.StochasticSpikeOperator` it is not named in
    :data:`~spikeflow.surrogate.SURROGATES` (pass the class or an instance), and a
    declared neuron with it runs on the reference loop (the fused kernels fire by a
    Heaviside step and refuse it; ``backend="auto"`` falls back with a warning).

    Raises:
        ConfigurationError: (when called) ``x`` outside ``[0, 1]`` or NaN (naming its
            range), or ``strict=True`` (a random draw has no strict form).
    """

    heaviside_forward = False

    def __init__(self, spiking: bool = True) -> None:
        super().__init__(spiking=spiking)

    @staticmethod
    def derivative(x: Tensor) -> Tensor:
        from spikeflow.kernels.expr import Expr, TraceError  # (lazy: kernels import us)

        if isinstance(x, Expr):
            raise TraceError(
                "PoissonPass fires at random (torch.bernoulli), which the fused kernels "
                "cannot compile: run the neuron with backend='torch' (backend='auto' does "
                "so by itself)"
            )
        return torch.ones_like(x)

    @staticmethod
    def primitive(x: Tensor) -> Tensor:
        return x

    def forward(self, x: Tensor, strict: bool = False) -> Tensor:
        """Spikes drawn with probability ``x`` (straight-through gradient), or ``x``."""
        if strict:
            raise ConfigurationError(
                "PoissonPass fires at random with probability x: it has no strict form "
                "(strict_firing=True)"
            )
        if not self.spiking:
            return x
        inside = (x >= 0) & (x <= 1)
        if not bool(inside.all()):
            raise ConfigurationError(
                f"PoissonPass fires with probability x, which must lie in [0, 1]; got x in "
                f"[{x.min().item():g}, {x.max().item():g}]"
                + (" with NaN" if bool(torch.isnan(x).any()) else "")
            )
        return _BernoulliPass.apply(x)
