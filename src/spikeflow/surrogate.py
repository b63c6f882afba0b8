"""Surrogate gradients: Heaviside step forward, a smooth derivative backward.

Every surrogate is declared by two elementwise functions of ``x = H - threshold`` and
its named parameters:

- ``derivative(x, **params)``: the pseudo-derivative used in the backward pass;
- ``primitive(x, **params)``: the smooth step it is the derivative of, returned when the
  surrogate is built with ``spiking=False`` (omit it when no useful primitive exists).

Both use only elementwise ``torch`` arithmetic and math functions, so the fused-kernel
code generator can trace and emit them. Adding a surrogate takes a few lines::

    class Gaussian(Surrogate):
        '''Gaussian pseudo-derivative of width sigma.'''

        def __init__(self, sigma: float = 0.5, spiking: bool = True) -> None:
            super().__init__(spiking=spiking, sigma=sigma)

        @staticmethod
        def derivative(x, sigma):
            return torch.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))

Forward is ``1[x >= 0]`` (SpikingJelly's convention), or ``1[x > 0]`` when called with
``strict=True`` (STBP, MS-ResNet, TET).

The family (methods document, section 2; default parameters in brackets):

- :class:`Sigmoid` (alpha=4), :class:`ATan` (alpha=2), :class:`PiecewiseQuadratic`
  (alpha=1), :class:`PiecewiseExp` (alpha=1), :class:`SoftSign` (alpha=2), :class:`Erf`
  (alpha=2), :class:`NonzeroSignLogAbs` (alpha=1), :class:`PiecewiseLeakyReLU` (w=1,
  c=0.01), :class:`QPseudoSpike` (alpha=2, > 1), :class:`S2NN` (alpha=4, beta=1),
  :class:`SquarewaveFourierSeries` (n=2, T_period=8), :class:`Rect` (alpha=1),
  :class:`Triangle` (gamma=1);
- derivative only (``has_primitive = False``, so no ``spiking=False``):
  :class:`SuperSpike` (alpha=1), :class:`LeakyKReLU` (leak=0, k=1),
  :class:`FakeNumericalGradient` (alpha=0.3);
- a multi-level count instead of a step (``heaviside_forward = False``):
  :class:`MultiLevelSpikeCount` (max_spike_count=4, grad_window=(0, max_spike_count)),
  the spike function of the multi-level (integer) neurons.

snnTorch's, by its definitions (derivative only): :class:`FastSigmoid` (slope=25),
:class:`SpikeRateEscape` (beta=1, slope=25), :class:`SparseFastSigmoid` (slope=25, B=1),
:class:`Triangular` (threshold=1), :class:`LeakySpikeOperator` (slope=0.1), and
:class:`StochasticSpikeOperator` (mean=0, variance=0.2; random: not named in
:data:`SURROGATES`, refused by the fused kernels).

:data:`SURROGATES` maps each class name to its class and :func:`get_surrogate` builds
one from a name (case-insensitive), a class or an instance.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError

__all__ = [
    "S2NN",
    "SURROGATES",
    "ATan",
    "Erf",
    "FakeNumericalGradient",
    "FastSigmoid",
    "LeakyKReLU",
    "LeakySpikeOperator",
    "MultiLevelSpikeCount",
    "NonzeroSignLogAbs",
    "PiecewiseExp",
    "PiecewiseLeakyReLU",
    "PiecewiseQuadratic",
    "QPseudoSpike",
    "Rect",
    "Sigmoid",
    "SoftSign",
    "SparseFastSigmoid",
    "SpikeRateEscape",
    "SquarewaveFourierSeries",
    "StochasticSpikeOperator",
    "SuperSpike",
    "Surrogate",
    "Triangle",
    "Triangular",
    "get_surrogate",
    "heaviside",
    "surrogate_class",
]


def heaviside(x: Tensor, strict: bool = False) -> Tensor:
    """The spike function: ``1[x >= 0]`` (or ``1[x > 0]`` if ``strict``), in ``x``'s dtype."""
    return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside forward; ``grad * derivative(x)`` backward (and forward-mode tangent).

    Written with a separate ``setup_context`` and plain tensor ops so that the
    ``torch.func`` transforms (grad, vmap, jacrev, ...) work through it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, derivative: Callable[..., Tensor], params: dict, strict: bool) -> Tensor:
        return heaviside(x, strict)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, derivative, params, _ = inputs
        ctx.save_for_backward(x)
        ctx.derivative = derivative
        ctx.params = params

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        (x,) = ctx.saved_tensors
        return grad_output * ctx.derivative(x, **ctx.params), None, None, None


def forward_ad_active() -> bool:
    """Whether a ``torch.autograd.forward_ad.dual_level`` is open (outside one, no
    tensor carries a tangent). The forward-mode tests fail if torch renames the level."""
    return getattr(forward_ad, "_current_level", -1) >= 0


class _SurrogateSpikeWithTangent(_SurrogateSpike):
    """:class:`_SurrogateSpike` with forward-mode AD (``torch.autograd.forward_ad``):
    the tangent times the same pseudo-derivative the backward uses. A separate class,
    used only inside a ``dual_level``: ``torch.compile`` cannot trace a custom ``jvp``."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        _SurrogateSpike.setup_context(ctx, inputs, output)
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def jvp(ctx: Any, x_tangent: Tensor | None, *_: Any) -> Tensor | None:
        if x_tangent is None:
            return None
        (x,) = ctx.saved_tensors
        return x_tangent * ctx.derivative(x, **ctx.params)


class Surrogate(nn.Module):
    """Base class of surrogate spike functions.

    Args:
        spiking: if True (default) the forward is the Heaviside step and the backward
            uses :meth:`derivative`; if False the forward is the smooth
            :meth:`primitive` and autograd differentiates it.
        **params: the named parameters passed to :meth:`derivative` and
            :meth:`primitive` (e.g. ``alpha``); each becomes an attribute.
    """

    #: Whether :meth:`primitive` is defined (``spiking=False`` needs it). Unless a subclass
    #: sets it explicitly, it is True exactly when :meth:`primitive` is overridden.
    has_primitive: ClassVar[bool] = True
    #: Whether the spiking forward is the Heaviside step ``1[x >= 0]``, as the fused
    #: kernels compute it (:class:`MultiLevelSpikeCount`'s is a count: a declared neuron
    #: with it runs on the reference loop).
    heaviside_forward: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "has_primitive" not in cls.__dict__:
            cls.has_primitive = cls.primitive is not Surrogate.primitive

    def __init__(self, spiking: bool = True, **params: float) -> None:
        super().__init__()
        self.spiking = check_flag(type(self).__name__, "spiking", spiking)
        for name, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(
                    f"{type(self).__name__}: parameter {name} must be a number, got {value!r}"
                )
            if not math.isfinite(value):
                raise ConfigurationError(
                    f"{type(self).__name__}: parameter {name} must be finite, got {value}"
                )
        self._param_names = tuple(params)
        for name, value in params.items():
            setattr(self, name, float(value))
        if not spiking and not type(self).has_primitive:
            raise ConfigurationError(
                f"{type(self).__name__} defines only a pseudo-derivative, no smooth "
                "primitive, so spiking=False is not available for it"
            )

    @property
    def params(self) -> dict[str, float]:
        """The named parameters, as passed to :meth:`derivative` and :meth:`primitive`."""
        return {name: getattr(self, name) for name in self._param_names}

    @staticmethod
    def derivative(x: Tensor, **params: float) -> Tensor:
        """The pseudo-derivative at ``x`` (elementwise)."""
        raise NotImplementedError

    @staticmethod
    def primitive(x: Tensor, **params: float) -> Tensor:
        """The smooth step whose derivative is :meth:`derivative` (elementwise)."""
        raise NotImplementedError

    def forward(self, x: Tensor, strict: bool = False) -> Tensor:
        """Spikes ``1[x >= 0]`` (``1[x > 0]`` if ``strict``), or the primitive."""
        if not self.spiking:
            return type(self).primitive(x, **self.params)
        spike = _SurrogateSpikeWithTangent if forward_ad_active() else _SurrogateSpike
        params = self.params
        if torch.compiler.is_compiling():
            # Specialised: torch.compile makes a float that changed since an earlier
            # compilation (a second model's alpha) symbolic, and then fails to trace
            # the backward's arithmetic on it ("lift_tracked_freevar_to_input").
            params = {name: float(value) for name, value in params.items()}
        return spike.apply(x, type(self).derivative, params, strict)

    def extra_repr(self) -> str:
        parts = [f"{k}={v:g}" for k, v in self.params.items()]
        if not self.spiking:
            parts.append("spiking=False")
        return ", ".join(parts)


# --------------------------------------------------------------------------------------
# Helpers shared by the family (plain elementwise torch, traceable by the code generator).


def _sign(x: Tensor) -> Tensor:
    """``+1`` where ``x >= 0``, ``-1`` elsewhere, in ``x``'s dtype (no gradient).

    ``_sign(x) * x`` is ``|x|`` but, unlike ``torch.abs``, differentiates to ``+1`` at
    ``x = 0`` (the right derivative, matching the ``x >= 0`` branch of the primitives).
    """
    return (x >= 0).to(x.dtype) * 2 - 1


def _mask(cond: Tensor, x: Tensor) -> Tensor:
    """A boolean condition as ``0/1`` in ``x``'s dtype."""
    return cond.to(x.dtype)


def _require(surrogate: Surrogate, name: str, ok: bool, condition: str) -> None:
    """Raise :class:`ConfigurationError` naming the class, parameter and value unless ``ok``."""
    if not ok:
        raise ConfigurationError(
            f"{type(surrogate).__name__}: parameter {name} must be {condition}, got "
            f"{getattr(surrogate, name):g}"
        )


def _require_positive(surrogate: Surrogate, *names: str) -> None:
    for name in names:
        _require(surrogate, name, getattr(surrogate, name) > 0, "> 0")


# --------------------------------------------------------------------------------------
# The family.


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


def _spike_count(x: Tensor, params: dict) -> Tensor:
    """``round(clip(x, 0, D))`` (ties to even, as ``torch.round``), in ``x``'s dtype."""
    return torch.round(torch.clamp(x, 0.0, params["max_spike_count"]))


class _SpikeCount(_SurrogateSpike):
    """:class:`_SurrogateSpike` with the count forward of :class:`MultiLevelSpikeCount`."""

    @staticmethod
    def forward(x: Tensor, derivative: Callable[..., Tensor], params: dict, strict: bool) -> Tensor:
        return _spike_count(x, params)


class _SpikeCountWithTangent(_SurrogateSpikeWithTangent):
    """:class:`_SurrogateSpikeWithTangent` with the count forward (forward-mode AD)."""

    @staticmethod
    def forward(x: Tensor, derivative: Callable[..., Tensor], params: dict, strict: bool) -> Tensor:
        return _spike_count(x, params)


class MultiLevelSpikeCount(Surrogate):
    """Multi-level spike count (SpikingJelly 2.0's ``MultiLevelSpikeCount``): forward
    ``round(clip(x, 0, D))``, a count in ``{0, 1, ..., D}`` (ties to even, as
    ``torch.round``), not a Heaviside step; backward a rectangular straight-through
    estimator, derivative ``1[lower <= x <= upper]``; primitive ``clip(x, 0, D)``
    (``spiking=False``). The integer LIF applies it to ``H/θ``
    (:class:`~spikeflow.neurons.ILIFNode`, whose ``max_spike_count`` and ``grad_window``
    are these). Given to a declared neuron (``LIFNode(surrogate_function=...)``) it
    counts ``H - θ``, as in SpikingJelly, on the reference loop: the fused kernels fire
    by a Heaviside step (``backend="auto"`` falls back with a warning; ``"cpu"`` and
    ``"triton"`` refuse it).

    Args:
        max_spike_count: ``D``, the largest count, an integer >= 1 (default 4, I-LIF's;
            SpikingJelly has none).
        spiking: the count forward (default), or the primitive ``clip(x, 0, D)``.
        grad_window: ``(lower, upper)``, where the gradient passes, with
            ``lower <= upper`` (default ``(0, D)``); stored as the parameters
            ``grad_min`` and ``grad_max``.

    Raises:
        ConfigurationError: ``max_spike_count`` not an integer >= 1, a ``grad_window``
            that is not two finite numbers with ``lower <= upper``, ``strict=True`` at a
            call (a count has no strict form).
    """

    heaviside_forward = False

    def __init__(
        self,
        max_spike_count: int = 4,
        spiking: bool = True,
        grad_window: tuple[float, float] | None = None,
    ) -> None:
        name = type(self).__name__
        if (
            isinstance(max_spike_count, bool)
            or not isinstance(max_spike_count, int)
            or max_spike_count < 1
        ):
            raise ConfigurationError(
                f"{name}: max_spike_count must be an integer >= 1, got {max_spike_count!r}"
            )
        if grad_window is None:
            grad_window = (0.0, float(max_spike_count))
        if not isinstance(grad_window, (tuple, list)) or len(grad_window) != 2:
            raise ConfigurationError(
                f"{name}: grad_window must be (lower, upper), got {grad_window!r}"
            )
        super().__init__(spiking=spiking, max_spike_count=max_spike_count,
                         grad_min=grad_window[0], grad_max=grad_window[1])  # fmt: skip
        if not self.grad_min <= self.grad_max:
            raise ConfigurationError(
                f"{name}: grad_window must have lower <= upper, got "
                f"({self.grad_min:g}, {self.grad_max:g})"
            )

    @staticmethod
    def derivative(x: Tensor, max_spike_count: float, grad_min: float, grad_max: float) -> Tensor:
        return _mask((x >= grad_min) & (x <= grad_max), x)

    @staticmethod
    def primitive(x: Tensor, max_spike_count: float, grad_min: float, grad_max: float) -> Tensor:
        return torch.clamp(x, 0.0, max_spike_count)

    def forward(self, x: Tensor, strict: bool = False) -> Tensor:
        """Counts ``round(clip(x, 0, D))`` with the straight-through gradient, or the
        primitive (``spiking=False``)."""
        if strict:
            raise ConfigurationError(
                f"{type(self).__name__} counts round(clip(x, 0, D)): it has no strict form "
                "(strict_firing=True)"
            )
        if not self.spiking:
            return type(self).primitive(x, **self.params)
        count = _SpikeCountWithTangent if forward_ad_active() else _SpikeCount
        params = self.params
        if torch.compiler.is_compiling():  # specialised, as Surrogate.forward's
            params = {name: float(value) for name, value in params.items()}
        return count.apply(x, type(self).derivative, params, strict)

    def extra_repr(self) -> str:
        parts = [
            f"max_spike_count={int(self.max_spike_count)}",
            f"grad_window=({self.grad_min:g}, {self.grad_max:g})",
        ]
        if not self.spiking:
            parts.append("spiking=False")
        return ", ".join(parts)


# --------------------------------------------------------------------------------------
# snnTorch's surrogates (``snntorch.surrogate``, snnTorch 1.0), by its definitions: a
# pseudo-derivative each, no primitive. snnTorch's spike is ``1[x > 0]``: a neuron ported
# from it fires with ``strict_firing=True`` (LeakyNode's default).


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


# --------------------------------------------------------------------------------------
# Registry.

#: Every built-in surrogate, by class name.
SURROGATES: dict[str, type[Surrogate]] = {
    cls.__name__: cls
    for cls in (
        Sigmoid,
        ATan,
        PiecewiseQuadratic,
        PiecewiseExp,
        SoftSign,
        Erf,
        SuperSpike,
        NonzeroSignLogAbs,
        PiecewiseLeakyReLU,
        LeakyKReLU,
        QPseudoSpike,
        S2NN,
        SquarewaveFourierSeries,
        Rect,
        Triangle,
        FakeNumericalGradient,
        MultiLevelSpikeCount,
        FastSigmoid,
        SpikeRateEscape,
        SparseFastSigmoid,
        Triangular,
        LeakySpikeOperator,
    )
}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def surrogate_class(name_or_class: str | type[Surrogate]) -> type[Surrogate]:
    """The :class:`Surrogate` subclass a name in :data:`SURROGATES` (as
    :func:`get_surrogate` reads it) or a class stands for, without building one.

    Raises:
        ConfigurationError: an unknown name, the abstract base class, or another object.
    """
    if isinstance(name_or_class, type) and issubclass(name_or_class, Surrogate):
        if name_or_class is Surrogate:
            raise ConfigurationError(
                "get_surrogate: Surrogate is the abstract base class; pass one of "
                + ", ".join(SURROGATES)
            )
        cls = name_or_class
    elif isinstance(name_or_class, str):
        by_name = {_normalise(key): value for key, value in SURROGATES.items()}
        found = by_name.get(_normalise(name_or_class))
        if found is None:
            raise ConfigurationError(
                f"get_surrogate: unknown surrogate {name_or_class!r}; valid names "
                "(case-insensitive): " + ", ".join(SURROGATES)
            )
        cls = found
    else:
        raise ConfigurationError(
            "get_surrogate: expected a surrogate name, a Surrogate subclass or instance, got "
            f"{type(name_or_class).__name__}; valid names: " + ", ".join(SURROGATES)
        )
    return cls


def get_surrogate(name_or_instance: str | type[Surrogate] | Surrogate, **kwargs: Any) -> Surrogate:
    """Build a surrogate from a name, a class or an instance.

    Args:
        name_or_instance: a :class:`Surrogate` instance (returned as is; ``kwargs`` must
            then be empty), a :class:`Surrogate` subclass (built with ``kwargs``), or the
            name of one in :data:`SURROGATES`, case-insensitive and ignoring ``_``/``-``
            (``"atan"``, ``"Sigmoid"``, ``"piecewise_quadratic"``).
        **kwargs: the constructor's arguments (``alpha``, ``spiking``, ...).

    Raises:
        ConfigurationError: for an unknown name (the message lists the valid ones), an
            object that is no surrogate, arguments the class does not take, or bad values.
    """
    if isinstance(name_or_instance, Surrogate):
        if kwargs:
            raise ConfigurationError(
                f"get_surrogate: got an instance of {type(name_or_instance).__name__}, so "
                f"the arguments {sorted(kwargs)} cannot be applied; pass the class or name"
            )
        return name_or_instance
    cls = surrogate_class(name_or_instance)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        accepted = ", ".join(inspect.signature(cls).parameters)
        raise ConfigurationError(
            f"get_surrogate: {cls.__name__} does not take {sorted(kwargs)} ({exc}); its "
            f"parameters are: {accepted}"
        ) from None
    return cls(**kwargs)
