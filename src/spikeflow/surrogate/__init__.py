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
  :class:`Triangle` (gamma=1), :class:`LogTailedReLU` (alpha=0, >= 0),
  :class:`DeterministicPass` (the straight-through estimator, no parameters);
- :class:`DSpike` (alpha=3, >= 0; SpikeDHS's, from :mod:`~spikeflow.surrogate.dspike`;
  ``"dspike"`` in :data:`SURROGATES`);
- the Gaussian mixtures of the long-sequence neurons' authors (from
  :mod:`~spikeflow.surrogate.gaussian_mixture`; sigma=0.5, p=0.15, scale=6, gamma=0.5):
  :class:`DoubleGaussian` (BRF's) and :class:`MultiGaussian` (the adaptive SRNN's and
  TC-LIF's sequential-MNIST one);
- :class:`ArctanSpike` (width=10, > 0; the event-based optical flow networks',
  :mod:`~spikeflow.surrogate.arctan_spike`, used by :mod:`spikeflow.flow`);
- derivative only (``has_primitive = False``, so no ``spiking=False``):
  :class:`SuperSpike` (alpha=1), :class:`LeakyKReLU` (leak=0, k=1),
  :class:`FakeNumericalGradient` (alpha=0.3);
- a multi-level count instead of a step (``heaviside_forward = False``):
  :class:`MultiLevelSpikeCount` (max_spike_count=4, grad_window=(0, max_spike_count)),
  the spike function of the multi-level (integer) neurons;
- Norse's shapes, any alpha, derivative only (:mod:`~spikeflow.surrogate.norse_style`;
  alpha=100, Norse's default): :class:`HeaviTanh`, :class:`HeaviErfc`,
  :class:`HeaviCirc`, :class:`NorseTriangle`, and its random :class:`Logistic` and
  :class:`CircDist` (not named in :data:`SURROGATES`, refused by the fused kernels);
- a random draw instead of a step (``heaviside_forward = False``): :class:`PoissonPass`
  (fires with probability ``x``, straight-through gradient; random: not named in
  :data:`SURROGATES`, refused by the fused kernels).

snnTorch's, by its definitions (derivative only): :class:`FastSigmoid` (slope=25),
:class:`SpikeRateEscape` (beta=1, slope=25), :class:`SparseFastSigmoid` (slope=25, B=1),
:class:`Triangular` (threshold=1), :class:`LeakySpikeOperator` (slope=0.1), and
:class:`StochasticSpikeOperator` (mean=0, variance=0.2; random: not named in
:data:`SURROGATES`, refused by the fused kernels).

:data:`SURROGATES` maps each class name to its class and :func:`get_surrogate` builds
one from a name (case-insensitive), a class or an instance.

The package's modules: :mod:`~spikeflow.surrogate.base` (the base class, the spike
function), :mod:`~spikeflow.surrogate.spikingjelly`, :mod:`~spikeflow.surrogate.snntorch_style`,
:mod:`~spikeflow.surrogate.multilevel` and :mod:`~spikeflow.surrogate.registry`; everything
public is importable from ``spikeflow.surrogate``.
"""

from spikeflow.surrogate.arctan_spike import ArctanSpike
from spikeflow.surrogate.base import Surrogate, heaviside
from spikeflow.surrogate.dspike import DSpike
from spikeflow.surrogate.gaussian_mixture import DoubleGaussian, MultiGaussian
from spikeflow.surrogate.multilevel import MultiLevelSpikeCount
from spikeflow.surrogate.norse_style import (
    CircDist,
    HeaviCirc,
    HeaviErfc,
    HeaviTanh,
    Logistic,
    NorseTriangle,
)
from spikeflow.surrogate.registry import SURROGATES, get_surrogate, surrogate_class
from spikeflow.surrogate.snntorch_style import (
    FastSigmoid,
    LeakySpikeOperator,
    SparseFastSigmoid,
    SpikeRateEscape,
    StochasticSpikeOperator,
    Triangular,
)
from spikeflow.surrogate.spikingjelly import (
    S2NN,
    ATan,
    DeterministicPass,
    Erf,
    FakeNumericalGradient,
    LeakyKReLU,
    LogTailedReLU,
    NonzeroSignLogAbs,
    PiecewiseExp,
    PiecewiseLeakyReLU,
    PiecewiseQuadratic,
    PoissonPass,
    QPseudoSpike,
    Rect,
    Sigmoid,
    SoftSign,
    SquarewaveFourierSeries,
    SuperSpike,
    Triangle,
)

__all__ = [
    "S2NN",
    "SURROGATES",
    "ATan",
    "ArctanSpike",
    "CircDist",
    "DSpike",
    "DeterministicPass",
    "DoubleGaussian",
    "Erf",
    "FakeNumericalGradient",
    "FastSigmoid",
    "HeaviCirc",
    "HeaviErfc",
    "HeaviTanh",
    "LeakyKReLU",
    "LeakySpikeOperator",
    "LogTailedReLU",
    "Logistic",
    "MultiGaussian",
    "MultiLevelSpikeCount",
    "NonzeroSignLogAbs",
    "NorseTriangle",
    "PiecewiseExp",
    "PiecewiseLeakyReLU",
    "PiecewiseQuadratic",
    "PoissonPass",
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
