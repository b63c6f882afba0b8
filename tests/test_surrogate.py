"""Tests of the surrogate family against the formulas of the methods document, section 2.

The reference formulas below are written independently of ``spikeflow.surrogate``, in
plain Python ``math`` on float64 grids, straight from the table in the spec.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.fx

import spikeflow.surrogate as sg_module
from spikeflow.errors import ConfigurationError
from spikeflow.surrogate import (
    S2NN,
    SURROGATES,
    ArctanSpike,
    ATan,
    DeterministicPass,
    DoubleGaussian,
    DSpike,
    Erf,
    FakeNumericalGradient,
    FastSigmoid,
    HeaviCirc,
    HeaviErfc,
    HeaviTanh,
    LeakyKReLU,
    LeakySpikeOperator,
    LogTailedReLU,
    MultiGaussian,
    NonzeroSignLogAbs,
    NorseTriangle,
    PiecewiseExp,
    PiecewiseLeakyReLU,
    PiecewiseQuadratic,
    QPseudoSpike,
    Rect,
    Sigmoid,
    SoftSign,
    SparseFastSigmoid,
    SpikeRateEscape,
    SquarewaveFourierSeries,
    SuperSpike,
    Surrogate,
    Triangle,
    Triangular,
    get_surrogate,
)

# --------------------------------------------------------------------------------------
# Reference formulas (independent of the implementation).


def _sig(u: float) -> float:
    if u >= 0:
        return 1 / (1 + math.exp(-u))
    e = math.exp(u)
    return e / (1 + e)


def _nzsign(x: float) -> float:
    return 1.0 if x >= 0 else -1.0


def sigmoid_d(x, alpha):
    s = _sig(alpha * x)
    return alpha * s * (1 - s)


def sigmoid_p(x, alpha):
    return _sig(alpha * x)


def atan_d(x, alpha):
    return (alpha / 2) / (1 + (math.pi * alpha * x / 2) ** 2)


def atan_p(x, alpha):
    return math.atan(math.pi * alpha * x / 2) / math.pi + 0.5


def pq_d(x, alpha):
    return alpha - alpha**2 * abs(x) if abs(x) <= 1 / alpha else 0.0


def pq_p(x, alpha):
    if x < -1 / alpha:
        return 0.0
    if x > 1 / alpha:
        return 1.0
    return -(alpha**2 / 2) * x * abs(x) + alpha * x + 0.5


def pe_d(x, alpha):
    return alpha / 2 * math.exp(-alpha * abs(x))


def pe_p(x, alpha):
    return math.exp(alpha * x) / 2 if x < 0 else 1 - math.exp(-alpha * x) / 2


def softsign_d(x, alpha):
    return alpha / (2 * (1 + alpha * abs(x)) ** 2)


def softsign_p(x, alpha):
    u = alpha * x
    return (u / (1 + abs(u)) + 1) / 2


def erf_d(x, alpha):
    return alpha / math.sqrt(math.pi) * math.exp(-(alpha**2) * x**2)


def erf_p(x, alpha):
    return math.erfc(-alpha * x) / 2


def superspike_d(x, alpha):
    return alpha / (abs(x) + 1) ** 2


def nsla_d(x, alpha):
    return 1 / (1 / alpha + abs(x))


def nsla_p(x, alpha):
    return _nzsign(x) * math.log(alpha * abs(x) + 1)


def plr_d(x, w, c):
    return 1 / (2 * w) if abs(x) < w else c


def plr_p(x, w, c):
    if x < -w:
        return c * (x + w)
    if x > w:
        return c * (x - w) + 1
    return x / (2 * w) + 0.5


def lkr_d(x, leak, k):
    return k if x >= 0 else leak


def qps_d(x, alpha):
    return (1 + 2 * abs(x) / (alpha - 1)) ** (-alpha)


def qps_p(x, alpha):
    if x < 0:
        return 0.5 * (1 - 2 * x / (alpha - 1)) ** (1 - alpha)
    return 1 - 0.5 * (1 + 2 * x / (alpha - 1)) ** (1 - alpha)


def s2nn_d(x, alpha, beta):
    if x < 0:
        s = _sig(alpha * x)
        return alpha * s * (1 - s)
    return beta / (x + 1)


def s2nn_p(x, alpha, beta):
    return _sig(alpha * x) if x < 0 else beta * math.log(x + 1) + 0.5


def sfs_d(x, n, T_period):
    omega = 2 * math.pi / T_period
    return 4 / T_period * sum(math.cos((2 * i - 1) * omega * x) for i in range(1, int(n)))


def sfs_p(x, n, T_period):
    omega = 2 * math.pi / T_period
    total = sum(math.sin((2 * i - 1) * omega * x) / (2 * i - 1) for i in range(1, int(n)))
    return 0.5 + 2 / math.pi * total


def rect_d(x, alpha):
    return alpha if abs(x) < 1 / (2 * alpha) else 0.0


def rect_p(x, alpha):
    return min(max(alpha * x + 0.5, 0.0), 1.0)


def tri_d(x, gamma):
    return max(gamma - abs(x), 0.0) / gamma**2


def tri_p(x, gamma):
    if x < -gamma:
        return 0.0
    if x > gamma:
        return 1.0
    if x < 0:
        return (gamma + x) ** 2 / (2 * gamma**2)
    return 1 - (gamma - x) ** 2 / (2 * gamma**2)


def fng_d(x, alpha):
    return alpha if x == 0 else min(1 / abs(x), alpha)


def ltr_d(x, alpha):
    return alpha if x <= 0 else 1.0 if x <= 1 else 1 / x


def ltr_p(x, alpha):
    return alpha * x if x <= 0 else x if x <= 1 else math.log(x) + 1


def ste_d(x):
    return 1.0


def ste_p(x):
    return x


# snnTorch's (snntorch.surrogate, 1.0), as its backward functions compute them.


def fast_sigmoid_d(x, slope):
    return 1 / (slope * abs(x) + 1) ** 2


def spike_rate_escape_d(x, beta, slope):
    return slope * math.exp(-beta * abs(x - 1))


def sparse_fast_sigmoid_d(x, slope, B):
    return fast_sigmoid_d(x, slope) if x > B else 0.0


def triangular_d(x, threshold):
    return -threshold if x >= 0 else threshold


def leaky_spike_operator_d(x, slope):
    return 1.0 if x > 0 else slope


def dspike_d(x, alpha):  # Li et al. 2021: the derivative of dspike_p on |x| <= 1/2
    return alpha / (2 * math.tanh(alpha / 2)) / math.cosh(alpha * x) ** 2 if abs(x) <= 0.5 else 0.0


def dspike_p(x, alpha):
    return math.tanh(alpha * min(max(x, -0.5), 0.5)) / (2 * math.tanh(alpha / 2)) + 0.5


def heavi_tanh_d(x, alpha):  # Norse's HeaviTanh backward, 1 - tanh² = sech² by hand
    e = math.exp(-2 * abs(alpha * x))  # sech²(u) = 4 e^{-2|u|} / (1 + e^{-2|u|})²
    return 4 * e / (1 + e) ** 2


def heavi_erfc_d(x, alpha):  # Norse's HeaviErfc backward
    return 2 / math.sqrt(math.pi) * math.exp(-((alpha * x) ** 2))


def heavi_circ_d(x, alpha):  # Norse's HeaviCirc backward, simplified by hand
    return alpha**3 / (alpha**2 + x**2) ** 1.5


def norse_triangle_d(x, alpha):  # Norse's Triangle backward
    return alpha * max(1 - abs(x), 0.0)


def arctan_spike_d(x, width):  # the flow networks' arctanspike (Hagenaars et al. 2021)
    return 1 / (1 + width * x * x)


def arctan_spike_p(x, width):  # its antiderivative, 0 at -inf
    return (math.atan(math.sqrt(width) * x) + math.pi / 2) / math.sqrt(width)


def _npdf(x, mu, width):
    return math.exp(-((x - mu) ** 2) / (2 * width**2)) / (width * math.sqrt(2 * math.pi))


def _ncdf(x, mu, width):
    return 0.5 * math.erfc((mu - x) / (width * math.sqrt(2)))


def double_gaussian_d(x, sigma, p, scale, gamma):  # BRF's (Higuchi et al. 2024)
    return gamma * ((1 + p) * _npdf(x, 0, sigma) - 2 * p * _npdf(x, 0, scale * sigma))


def double_gaussian_p(x, sigma, p, scale, gamma):
    return gamma * ((1 + p) * _ncdf(x, 0, sigma) - 2 * p * _ncdf(x, 0, scale * sigma))


def multi_gaussian_d(x, sigma, p, scale, gamma):  # Yin et al. 2021, TC-LIF's S-MNIST
    wide = scale * sigma
    side = _npdf(x, sigma, wide) + _npdf(x, -sigma, wide)
    return gamma * ((1 + p) * _npdf(x, 0, sigma) - p * side)


def multi_gaussian_p(x, sigma, p, scale, gamma):
    wide = scale * sigma
    side = _ncdf(x, sigma, wide) + _ncdf(x, -sigma, wide)
    return gamma * ((1 + p) * _ncdf(x, 0, sigma) - p * side)


# --------------------------------------------------------------------------------------
# The table.


@dataclass
class Spec:
    cls: type[Surrogate]
    defaults: dict
    other: dict  # a non-default parameter set
    d: Callable[..., float]
    p: Callable[..., float] | None = None
    bounded: bool = False  # primitive is a step from 0 to 1
    half_at_zero: bool = False  # primitive(0) == 1/2
    kinks: Callable[[dict], list[float]] = field(default=lambda params: [])
    exact_at_zero: bool = True  # primitive(0) exact in every dtype (else to its rounding)

    @property
    def id(self) -> str:
        return self.cls.__name__


SPECS = [
    Spec(Sigmoid, {"alpha": 4.0}, {"alpha": 1.5}, sigmoid_d, sigmoid_p, True, True),
    Spec(ATan, {"alpha": 2.0}, {"alpha": 0.7}, atan_d, atan_p, True, True),
    Spec(
        PiecewiseQuadratic,
        {"alpha": 1.0},
        {"alpha": 2.0},
        pq_d,
        pq_p,
        True,
        True,
        kinks=lambda q: [-1 / q["alpha"], 1 / q["alpha"]],
    ),
    Spec(PiecewiseExp, {"alpha": 1.0}, {"alpha": 3.0}, pe_d, pe_p, True, True),
    Spec(SoftSign, {"alpha": 2.0}, {"alpha": 5.0}, softsign_d, softsign_p, True, True),
    Spec(Erf, {"alpha": 2.0}, {"alpha": 0.8}, erf_d, erf_p, True, True),
    Spec(SuperSpike, {"alpha": 1.0}, {"alpha": 2.5}, superspike_d),
    Spec(NonzeroSignLogAbs, {"alpha": 1.0}, {"alpha": 4.0}, nsla_d, nsla_p),
    Spec(
        PiecewiseLeakyReLU,
        {"w": 1.0, "c": 0.01},
        {"w": 0.5, "c": 0.1},
        plr_d,
        plr_p,
        half_at_zero=True,
        kinks=lambda q: [-q["w"], q["w"]],
    ),
    Spec(LeakyKReLU, {"leak": 0.0, "k": 1.0}, {"leak": 0.2, "k": 1.5}, lkr_d),
    Spec(QPseudoSpike, {"alpha": 2.0}, {"alpha": 3.5}, qps_d, qps_p, True, True),
    Spec(
        S2NN,
        {"alpha": 4.0, "beta": 1.0},
        {"alpha": 2.0, "beta": 0.5},
        s2nn_d,
        s2nn_p,
        half_at_zero=True,
        kinks=lambda q: [0.0],
    ),
    Spec(
        SquarewaveFourierSeries,
        {"n": 2, "T_period": 8.0},
        {"n": 5, "T_period": 3.0},
        sfs_d,
        sfs_p,
        half_at_zero=True,
    ),
    Spec(
        Rect,
        {"alpha": 1.0},
        {"alpha": 2.0},
        rect_d,
        rect_p,
        True,
        True,
        kinks=lambda q: [-1 / (2 * q["alpha"]), 1 / (2 * q["alpha"])],
    ),
    Spec(
        Triangle,
        {"gamma": 1.0},
        {"gamma": 0.5},
        tri_d,
        tri_p,
        True,
        True,
        kinks=lambda q: [-q["gamma"], 0.0, q["gamma"]],
    ),
    Spec(FakeNumericalGradient, {"alpha": 0.3}, {"alpha": 2.0}, fng_d),
    Spec(
        LogTailedReLU,
        {"alpha": 0.0},
        {"alpha": 0.25},
        ltr_d,
        ltr_p,
        kinks=lambda q: [0.0, 1.0],
    ),
    Spec(DeterministicPass, {}, {}, ste_d, ste_p),
    Spec(FastSigmoid, {"slope": 25.0}, {"slope": 3.0}, fast_sigmoid_d),
    Spec(
        SpikeRateEscape,
        {"beta": 1.0, "slope": 25.0},
        {"beta": 2.5, "slope": 4.0},
        spike_rate_escape_d,
    ),
    Spec(
        SparseFastSigmoid,
        {"slope": 25.0, "B": 1.0},
        {"slope": 5.0, "B": -0.5},
        sparse_fast_sigmoid_d,
    ),
    Spec(Triangular, {"threshold": 1.0}, {"threshold": 0.3}, triangular_d),
    Spec(LeakySpikeOperator, {"slope": 0.1}, {"slope": 0.0}, leaky_spike_operator_d),
    Spec(
        DSpike,
        {"alpha": 3.0},
        {"alpha": 0.7},
        dspike_d,
        dspike_p,
        True,
        True,
        kinks=lambda q: [-0.5, 0.5],
    ),
    Spec(
        DoubleGaussian,
        {"sigma": 0.5, "p": 0.15, "scale": 6.0, "gamma": 0.5},
        {"sigma": 0.3, "p": 0.4, "scale": 2.5, "gamma": 1.5},
        double_gaussian_d,
        double_gaussian_p,
        exact_at_zero=False,
    ),
    Spec(
        MultiGaussian,
        {"sigma": 0.5, "p": 0.15, "scale": 6.0, "gamma": 0.5},
        {"sigma": 0.8, "p": 0.0, "scale": 3.0, "gamma": 2.0},
        multi_gaussian_d,
        multi_gaussian_p,
        exact_at_zero=False,
    ),
    Spec(
        ArctanSpike,
        {"width": 10.0},
        {"width": 2.5},
        arctan_spike_d,
        arctan_spike_p,
        exact_at_zero=False,
    ),
    Spec(HeaviTanh, {"alpha": 100.0}, {"alpha": 0.7}, heavi_tanh_d),
    Spec(HeaviErfc, {"alpha": 100.0}, {"alpha": 0.6}, heavi_erfc_d),
    Spec(HeaviCirc, {"alpha": 100.0}, {"alpha": 1.5}, heavi_circ_d),
    Spec(
        NorseTriangle,
        {"alpha": 100.0},
        {"alpha": 0.3},
        norse_triangle_d,
        kinks=lambda q: [-1.0, 0.0, 1.0],
    ),
]
WITH_PRIMITIVE = [s for s in SPECS if s.p is not None]
WITHOUT_PRIMITIVE = [s for s in SPECS if s.p is None]
ALL_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def spec_params(primitive_only: bool = False):
    """(spec, params) for the default and the non-default parameter set of every class."""
    return [
        pytest.param(s, getattr(s, kind), id=f"{s.id}-{kind}")
        for s in SPECS
        if s.p is not None or not primitive_only
        for kind in ("defaults", "other")
    ]


# A float64 grid with exact 0, the dyadic breakpoints (±1/4, ±1/2, ±1, ±2) and far points.
GRID = (
    torch.cat(
        [
            torch.arange(-400, 401, dtype=torch.float64) / 100,
            torch.tensor([-1e3, -37.0, -10.0, -6.5, 6.5, 10.0, 37.0, 1e3], dtype=torch.float64),
        ]
    )
    .sort()
    .values
)


def reference(fn: Callable[..., float], x: torch.Tensor, params: dict) -> torch.Tensor:
    return torch.tensor([fn(v, **params) for v in x.tolist()], dtype=torch.float64)


def away_from_kinks(spec: Spec, params: dict, x: torch.Tensor, gap: float = 1e-3):
    keep = torch.ones_like(x, dtype=torch.bool)
    for k in spec.kinks(params):
        keep &= (x - k).abs() > gap
    return x[keep]


def test_table_covers_the_family():
    # (MultiLevelSpikeCount, a count and not a step, has its own tests:
    # test_surrogate_multilevel.py)
    assert {s.id for s in SPECS} | {"MultiLevelSpikeCount"} == set(SURROGATES)
    assert len(SURROGATES) == 32
    for name, cls in SURROGATES.items():
        assert cls.__name__ == name
        assert name in sg_module.__all__
        assert cls.__doc__ and len(cls.__doc__.strip()) > 40
        assert cls.has_primitive == (name not in {s.id for s in WITHOUT_PRIMITIVE})
    for extra in ("SURROGATES", "get_surrogate", "Surrogate", "heaviside"):
        assert extra in sg_module.__all__


def test_dspike_is_built_by_name_as_the_command_line_gives_it():
    """``--neuron-kwargs surrogate_function=dspike`` (or a table with its alpha) reaches
    the model's neurons as a DSpike (was: an unknown surrogate name)."""
    from spikeflow.models import create_model

    assert type(get_surrogate("dspike")) is DSpike and get_surrogate("D_Spike").alpha == 3.0
    for value, alpha in (("dspike", 3.0), ({"name": "dspike", "alpha": 0.5}, 0.5)):
        model = create_model("plif_digits", neuron_kwargs={"surrogate_function": value})
        found = [m.surrogate_function for m in model.modules() if hasattr(m, "surrogate_function")]
        assert found and all(type(f) is DSpike and f.alpha == alpha for f in found)


def test_arctan_spike_is_registered_and_keeps_its_flow_import_path():
    """The optical flow networks' surrogate is built by name (as ``--neuron-kwargs
    surrogate_function=arctan_spike`` gives it) and is still importable from
    ``spikeflow.flow``, the same class."""
    from spikeflow.flow import ArctanSpike as FlowArctanSpike
    from spikeflow.flow.models import ArctanSpike as ModelsArctanSpike
    from spikeflow.models import create_model

    assert FlowArctanSpike is ArctanSpike and ModelsArctanSpike is ArctanSpike
    assert type(get_surrogate("arctan_spike")) is ArctanSpike
    assert get_surrogate("ArctanSpike", width=4.0).width == 4.0
    with pytest.raises(ConfigurationError, match="width"):
        get_surrogate("arctanspike", width=0.0)
    value = {"name": "arctan_spike", "width": 3.0}
    model = create_model("plif_digits", neuron_kwargs={"surrogate_function": value})
    found = [m.surrogate_function for m in model.modules() if hasattr(m, "surrogate_function")]
    assert found and all(type(f) is ArctanSpike and f.width == 3.0 for f in found)


def test_the_docs_page_lists_every_registered_surrogate():
    """docs/surrogates.md names every class of SURROGATES (in its tables or text) and
    shows it (a formula row or a section)."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "surrogates.md").read_text()
    missing = [name for name in SURROGATES if not re.search(rf"`{name}[`(]", page)]
    assert missing == []


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_defaults_and_params(spec: Spec):
    sg = spec.cls()
    assert sg.params == pytest.approx(spec.defaults)
    assert sg.spiking
    other = spec.cls(**spec.other)
    assert other.params == pytest.approx(spec.other)
    for name, value in spec.defaults.items():
        assert f"{name}={value:g}" in repr(sg)


# --------------------------------------------------------------------------------------
# Forward.


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_forward_is_heaviside(spec: Spec, dtype: torch.dtype):
    x = torch.tensor([-2.0, -0.5, -1e-3, 0.0, -0.0, 1e-3, 0.5, 2.0], dtype=dtype)
    x.requires_grad_(True)
    sg = spec.cls()
    y = sg(x)
    assert y.dtype == dtype
    assert y.grad_fn is not None
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    y_strict = sg(x, strict=True)
    assert y_strict.dtype == dtype
    assert y_strict.grad_fn is not None
    assert y_strict.tolist() == [0, 0, 0, 0, 0, 1, 1, 1]


# --------------------------------------------------------------------------------------
# Backward against the table.


@pytest.mark.parametrize(("spec", "params"), spec_params())
def test_backward_matches_formula(spec: Spec, params: dict):
    x = GRID.clone().requires_grad_(True)
    upstream = torch.linspace(0.5, 2.0, x.numel(), dtype=torch.float64)
    y = spec.cls(**params)(x)
    y.backward(upstream)
    expected = upstream * reference(spec.d, GRID, params)
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-12)
    # strict only changes the forward
    x.grad = None
    spec.cls(**params)(x, strict=True).backward(upstream)
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_derivative_and_primitive_keep_dtype_and_input(spec: Spec, dtype: torch.dtype):
    x = torch.linspace(-3, 3, 13, dtype=dtype)
    before = x.clone()
    params = spec.cls().params
    assert spec.cls.derivative(x, **params).dtype == dtype
    if spec.p is not None:
        assert spec.cls.primitive(x, **params).dtype == dtype
    assert torch.equal(x, before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_low_precision_backward(spec: Spec, dtype: torch.dtype):
    x = torch.cat([GRID[::8], torch.tensor([-6e4, -300.0, 300.0, 6e4], dtype=torch.float64)])
    xl = x.to(dtype).requires_grad_(True)
    sg = spec.cls()
    sg(xl).sum().backward()
    assert xl.grad.dtype == dtype
    assert torch.isfinite(xl.grad).all()
    expected = reference(spec.d, xl.detach().double(), sg.params)
    near = torch.ones_like(x, dtype=torch.bool)
    if spec.cls is SquarewaveFourierSeries:  # periodic: cos(w x) of a rounded w x at large x
        near = x.abs() <= 10
    torch.testing.assert_close(xl.grad.double()[near], expected[near], rtol=2e-2, atol=1e-2)
    if spec.p is not None:
        xl.grad = None
        y = spec.cls(spiking=False)(xl)
        assert y.dtype == dtype
        y.sum().backward()
        assert torch.isfinite(xl.grad).all()


def test_fake_numerical_gradient_at_zero():
    for alpha in (0.3, 2.0):
        for dtype in ALL_DTYPES:
            x = torch.zeros(3, dtype=dtype, requires_grad=True)
            FakeNumericalGradient(alpha=alpha)(x).sum().backward()
            assert torch.isfinite(x.grad).all()
            torch.testing.assert_close(
                x.grad.double(), torch.full((3,), alpha, dtype=torch.float64), rtol=1e-2, atol=0
            )


# --------------------------------------------------------------------------------------
# Primitives.


@pytest.mark.parametrize(("spec", "params"), spec_params(primitive_only=True))
def test_spiking_false_returns_primitive(spec: Spec, params: dict):
    sg = spec.cls(**params, spiking=False)
    assert not sg.spiking
    assert "spiking=False" in repr(sg)
    y = sg(GRID)
    torch.testing.assert_close(y, reference(spec.p, GRID, params), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("spec", "params"), spec_params(primitive_only=True))
def test_primitive_autograd_equals_derivative(spec: Spec, params: dict):
    x = away_from_kinks(spec, params, GRID).clone().requires_grad_(True)
    spec.cls(**params, spiking=False)(x).sum().backward()
    expected = spec.cls.derivative(x.detach(), **params)
    torch.testing.assert_close(x.grad, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(x.grad, reference(spec.d, x.detach(), params))


@pytest.mark.parametrize(("spec", "params"), spec_params(primitive_only=True))
def test_primitive_gradcheck(spec: Spec, params: dict):
    x = torch.tensor([-3.3, -1.7, -0.71, -0.33, -0.13, 0.11, 0.37, 0.77, 1.3, 2.9])
    x = away_from_kinks(spec, params, x.double(), gap=1e-2).requires_grad_(True)
    sg = spec.cls(**params, spiking=False)
    assert torch.autograd.gradcheck(sg, (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("spec", WITH_PRIMITIVE, ids=lambda s: s.id)
def test_primitive_gradient_finite_everywhere(spec: Spec, dtype: torch.dtype):
    # torch.where sends a zero gradient into the unused branch; an inf or NaN there
    # (log of a negative, pow of a negative base, exp overflow) turns it into NaN.
    x = torch.tensor(
        [-1e30, -1e4, -100.0, -10.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 100.0, 1e4],
        dtype=dtype,
    )
    x.requires_grad_(True)
    y = spec.cls(spiking=False)(x)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("spec", [s for s in SPECS if s.bounded], ids=lambda s: s.id)
def test_bounded_primitive_limits(spec: Spec):
    for params in (spec.defaults, spec.other):
        sg = spec.cls(**params, spiking=False)
        y = sg(torch.tensor([-1e7, -1e3, 1e3, 1e7], dtype=torch.float64))
        torch.testing.assert_close(
            y, torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-3
        )
        assert 0 <= y.min() and y.max() <= 1
        grid = sg(GRID)
        assert (grid.diff() >= -1e-15).all()  # monotone


@pytest.mark.parametrize("spec", WITH_PRIMITIVE, ids=lambda s: s.id)
def test_primitive_at_zero(spec: Spec):
    for params in (spec.defaults, spec.other):
        for dtype in ALL_DTYPES:
            y = spec.cls(**params, spiking=False)(torch.zeros(2, dtype=dtype))
            expected = 0.5 if spec.half_at_zero else spec.p(0.0, **params)
            if spec.exact_at_zero:
                assert y.tolist() == [expected, expected]
            else:  # a sum of erfc terms, each rounded: within a few of the dtype's ulps
                eps = torch.finfo(dtype).eps
                want = torch.full((2,), expected, dtype=dtype)
                torch.testing.assert_close(y, want, rtol=4 * eps, atol=0)
    assert NonzeroSignLogAbs(spiking=False)(torch.zeros(1)).item() == 0.0


@pytest.mark.parametrize("spec", WITHOUT_PRIMITIVE, ids=lambda s: s.id)
def test_spiking_false_without_primitive_raises(spec: Spec):
    with pytest.raises(ConfigurationError, match=spec.id):
        spec.cls(spiking=False)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_set_spiking_mode_switches_as_the_constructor_does(spec: Spec):
    # SpikingJelly's surrogate tutorial switches a built surrogate with set_spiking_mode
    x = GRID.clone()
    sg = spec.cls(**spec.other)
    spikes = sg(x)
    if spec.p is None:
        with pytest.raises(ConfigurationError, match=spec.id):
            sg.set_spiking_mode(False)
        assert sg.spiking and torch.equal(sg(x), spikes)
        return
    sg.set_spiking_mode(False)
    assert not sg.spiking
    assert torch.equal(sg(x), spec.cls(**spec.other, spiking=False)(x))
    sg.set_spiking_mode(True)
    assert torch.equal(sg(x), spikes)
    with pytest.raises(ConfigurationError, match="spiking"):
        sg.set_spiking_mode(0)


def test_squarewave_n1_is_rejected():
    """n = 1 is an empty sum, a zero gradient everywhere: a network could not learn."""
    with pytest.raises(ConfigurationError, match=r"SquarewaveFourierSeries.*n"):
        SquarewaveFourierSeries(n=1)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_fx_traceable(spec: Spec):
    """derivative/primitive are pure elementwise graphs (no branching on tensor values)."""
    params = spec.cls(**spec.other).params
    names = ("derivative", "primitive") if spec.p is not None else ("derivative",)
    for name in names:
        fn = getattr(spec.cls, name)

        class Wrapped(torch.nn.Module):
            def __init__(self, fn):
                super().__init__()
                self.fn = fn

            def forward(self, x):
                return self.fn(x, **params)

        traced = torch.fx.symbolic_trace(Wrapped(fn))
        assert torch.equal(traced(GRID), fn(GRID, **params))


# --------------------------------------------------------------------------------------
# Parameter validation.


BAD = [
    (QPseudoSpike, {"alpha": 1.0}),
    (QPseudoSpike, {"alpha": 0.5}),
    (SquarewaveFourierSeries, {"n": 0}),
    (SquarewaveFourierSeries, {"n": 2.5}),
    (SquarewaveFourierSeries, {"T_period": 0.0}),
    (SquarewaveFourierSeries, {"T_period": -8.0}),
    (Triangle, {"gamma": 0.0}),
    (Triangle, {"gamma": -1.0}),
    (PiecewiseLeakyReLU, {"w": 0.0}),
    (PiecewiseLeakyReLU, {"w": -1.0}),
] + [
    (s.cls, {"alpha": bad})
    for s in SPECS
    if "alpha" in s.defaults
    # LogTailedReLU's alpha is a slope below the threshold: 0 (its default) is fine;
    # DSpike's alpha 0 is its limit, the unit box.
    for bad in ((-1.0,) if s.cls in (LogTailedReLU, DSpike) else (-1.0, 0.0))
]


@pytest.mark.parametrize(("cls", "kwargs"), BAD, ids=lambda v: getattr(v, "__name__", str(v)))
def test_bad_parameters_raise(cls: type[Surrogate], kwargs: dict):
    ((name, value),) = kwargs.items()
    pattern = rf"{cls.__name__}\b.*\b{name}\b.*{re.escape(format(value, 'g'))}"
    with pytest.raises(ConfigurationError, match=pattern):
        cls(**kwargs)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_non_finite_or_non_numeric_parameters_raise(spec: Spec):
    for name in spec.defaults:
        for bad in (math.nan, math.inf, -math.inf):
            with pytest.raises(ConfigurationError, match=rf"{spec.id}.*{name}"):
                spec.cls(**{name: bad})
        for bad in ("2", None, True):
            with pytest.raises(ConfigurationError, match=rf"{spec.id}.*{name}"):
                spec.cls(**{name: bad})


def test_valid_edge_parameters():
    QPseudoSpike(alpha=1.001)
    SquarewaveFourierSeries(n=2)
    SquarewaveFourierSeries(n=3.0)
    LeakyKReLU(leak=-0.1, k=0.0)
    S2NN(beta=0.0)
    PiecewiseLeakyReLU(c=0.0)


# --------------------------------------------------------------------------------------
# Custom surrogates.


class Gaussian(Surrogate):
    """Gaussian pseudo-derivative of width sigma."""

    def __init__(self, sigma: float = 0.5, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, sigma=sigma)

    @staticmethod
    def derivative(x, sigma):
        return torch.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))


class Logistic(Surrogate):
    """Custom surrogate with a primitive."""

    def __init__(self, k: float = 3.0, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, k=k)

    @staticmethod
    def derivative(x, k):
        s = torch.sigmoid(k * x)
        return k * s * (1 - s)

    @staticmethod
    def primitive(x, k):
        return torch.sigmoid(k * x)


def test_custom_surrogate_end_to_end():
    x = GRID.clone().requires_grad_(True)
    sg = Gaussian(sigma=0.7)
    y = sg(x)
    assert torch.equal(y.detach(), (GRID >= 0).double())
    y.sum().backward()
    expected = reference(
        lambda v, sigma: math.exp(-v * v / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi)),
        GRID,
        {"sigma": 0.7},
    )
    torch.testing.assert_close(x.grad, expected)
    assert repr(sg) == "Gaussian(sigma=0.7)"
    # no primitive defined -> detected automatically
    assert not Gaussian.has_primitive
    with pytest.raises(ConfigurationError, match="Gaussian"):
        Gaussian(spiking=False)
    with pytest.raises(ConfigurationError, match="sigma"):
        Gaussian(sigma=math.nan)
    # one with a primitive supports spiking=False
    assert Logistic.has_primitive
    x.grad = None
    Logistic(k=2.0, spiking=False)(x).sum().backward()
    torch.testing.assert_close(x.grad, Logistic.derivative(GRID, k=2.0))

    # has_primitive follows whether primitive is overridden, also through subclasses
    class SteeperSigmoid(Sigmoid):
        def __init__(self, alpha: float = 8.0, spiking: bool = True) -> None:
            super().__init__(alpha=alpha, spiking=spiking)

    class SmoothSuperSpike(SuperSpike):
        @staticmethod
        def primitive(x, alpha):
            return torch.zeros_like(x)

    assert SteeperSigmoid.has_primitive and SteeperSigmoid(spiking=False).alpha == 8.0
    assert SmoothSuperSpike.has_primitive and not SuperSpike.has_primitive
    assert not SmoothSuperSpike(spiking=False).spiking
    # and get_surrogate builds them from the class
    assert get_surrogate(Gaussian, sigma=0.3).params == {"sigma": 0.3}


# --------------------------------------------------------------------------------------
# get_surrogate.


def test_get_surrogate():
    assert type(get_surrogate("atan")) is ATan
    assert type(get_surrogate("ATAN")) is ATan
    assert type(get_surrogate("Sigmoid")) is Sigmoid
    assert type(get_surrogate("piecewise_quadratic")) is PiecewiseQuadratic
    assert type(get_surrogate("s2nn")) is S2NN
    for name, cls in SURROGATES.items():
        assert type(get_surrogate(name.lower())) is cls
        assert type(get_surrogate(cls)) is cls
    sg = get_surrogate("erf", alpha=3.0, spiking=False)
    assert isinstance(sg, Erf) and sg.alpha == 3.0 and not sg.spiking
    assert get_surrogate(SuperSpike, alpha=2.0).alpha == 2.0
    inst = PiecewiseExp(alpha=2.0)
    assert get_surrogate(inst) is inst
    with pytest.raises(ConfigurationError, match="instance"):
        get_surrogate(inst, alpha=3.0)


@pytest.mark.parametrize("bad", ["relu", "", "atan2", 3, None, Surrogate, torch.nn.ReLU])
def test_get_surrogate_bad(bad):
    with pytest.raises(ConfigurationError) as info:
        get_surrogate(bad)
    message = str(info.value)
    for name in SURROGATES:
        assert name in message


def test_get_surrogate_bad_arguments():
    with pytest.raises(ConfigurationError, match=r"ATan.*beta"):
        get_surrogate("atan", beta=1.0)
    with pytest.raises(ConfigurationError, match=r"QPseudoSpike.*alpha.*0\.5"):
        get_surrogate("qpseudospike", alpha=0.5)


def test_registry_entries_are_the_classes():
    assert SURROGATES["ATan"] is ATan
    assert SURROGATES["LeakyKReLU"] is LeakyKReLU
    assert SURROGATES["Rect"] is Rect
    assert SURROGATES["SoftSign"] is SoftSign
    assert SURROGATES["NonzeroSignLogAbs"] is NonzeroSignLogAbs


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_forward_mode_tangent_equals_the_backward_pseudo_derivative(name):
    # torch.autograd.forward_ad through the spike: tangent * derivative(x), the same
    # pseudo-derivative the backward uses (and through a whole LIF on backend 'auto').
    import torch.autograd.forward_ad as fwAD

    from spikeflow.neurons import LIFNode

    sg = SURROGATES[name]()
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    t = torch.randn_like(x)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(sg(fwAD.make_dual(x, t))).tangent
    torch.testing.assert_close(tangent, t * type(sg).derivative(x, **sg.params))
    seq = torch.rand(6, 2, 7) * 2.5
    seq_t, g = torch.randn_like(seq), torch.randn_like(seq)
    with fwAD.dual_level():
        out_t = fwAD.unpack_dual(LIFNode(surrogate_function=sg)(fwAD.make_dual(seq, seq_t)))
    xr = seq.clone().requires_grad_()
    (LIFNode(surrogate_function=sg, backend="torch")(xr) * g).sum().backward()
    torch.testing.assert_close((out_t.tangent * g).sum(), (xr.grad * seq_t).sum())
