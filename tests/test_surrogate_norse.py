"""Norse's surrogate shapes as built-ins (``spikeflow.surrogate.norse_style``): each
against Norse 1.1's own function in float64 on a grid at several ``alpha`` (the same
spikes, the same gradients), HeaviCirc's tails against the exact value (where Norse's
formula cancels), the random pair with the same seed, the older built-ins
they equal at one ``alpha`` only, the fused C and Triton kernels against the reference loop, the
registry names and the errors.
"""

from __future__ import annotations

import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow.errors import ConfigurationError
from spikeflow.kernels.expr import TraceError
from spikeflow.neurons import LIFNode
from spikeflow.surrogate import (
    SURROGATES,
    CircDist,
    Erf,
    HeaviCirc,
    HeaviErfc,
    HeaviTanh,
    Logistic,
    NorseTriangle,
    Sigmoid,
    Triangle,
    get_surrogate,
)

F64 = torch.float64
GRID = torch.cat(
    [torch.linspace(-3, 3, 601, dtype=F64), torch.tensor([1e-9, -1e-9, 40.0], dtype=F64)]
)
ALPHAS = [0.3, 1.0, 2.0, 7.5, 100.0]
#: (Norse's function name in norse.torch.functional.threshold, the spikeflow class)
SHAPES = [
    ("heavi_tanh_fn", HeaviTanh),
    ("heavi_erfc_fn", HeaviErfc),
    ("heavi_circ_fn", HeaviCirc),
    ("triangle_fn", NorseTriangle),
]


def _threshold():
    return pytest.importorskip("norse.torch.functional.threshold", reason="Norse is not installed")


def _spike_and_grad(fn, x):
    x = x.clone().requires_grad_()
    z = fn(x)
    (g,) = torch.autograd.grad(z.sum(), x)
    return z.detach(), g


@pytest.mark.parametrize("norse_name, cls", SHAPES, ids=[c.__name__ for _, c in SHAPES])
@pytest.mark.parametrize("alpha", ALPHAS)
def test_equals_norse(float64, norse_name, cls, alpha):
    """(float64 default dtype: Norse's HeaviErfc divides by a sqrt(pi) of that dtype.)"""
    threshold = _threshold()
    z_n, g_n = _spike_and_grad(lambda x: getattr(threshold, norse_name)(x, alpha), GRID)
    z, g = _spike_and_grad(lambda x: cls(alpha=alpha)(x, strict=True), GRID)
    assert torch.equal(z, z_n) and z[300] == 0  # Norse fires on x > 0: not at 0
    assert g_n.abs().max() > 0
    torch.testing.assert_close(g, g_n, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cls", [Logistic, CircDist])
@pytest.mark.parametrize("alpha", [0.5, 3.0])
def test_random_pair_equals_norse_with_the_same_seed(cls, alpha):
    threshold = _threshold()
    norse_fn = {Logistic: threshold.logistic_fn, CircDist: threshold.circ_dist_fn}[cls]
    x = torch.randn(4000, dtype=F64) * 2
    torch.manual_seed(11)
    z_n, g_n = _spike_and_grad(lambda v: norse_fn(v, alpha), x)
    torch.manual_seed(11)
    z, g = _spike_and_grad(lambda v: cls(alpha=alpha)(v), x)
    assert torch.equal(z, z_n)
    assert 0.2 < z.mean().item() < 0.8 and ((z == 1) & (x < 0)).any()  # random: not Θ(x)
    torch.testing.assert_close(g, g_n, rtol=1e-12, atol=1e-15)


def _circ_exact(x: float, alpha: float) -> float:
    """α³ / (α² + x²)^(3/2) with 50 significant digits."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 50
        a, u = Decimal(alpha), Decimal(x)
        return float(a**3 / (a * a + u * u) ** Decimal("1.5"))


def test_heavi_circ_tails_are_exact_where_norses_formula_cancels(float64):
    """Norse's backward subtracts two terms near 1/(2|x|) whose difference is the
    α²/(2|x|³) tail: in float64 it loses digits as |x|/α grows (relative 1e-7 at 1e5).
    HeaviCirc's (1 + (x/α)²)^(-3/2) keeps the exact value to a few ulps."""
    threshold = _threshold()
    cases = [(1e3, 0.01), (-1e5, 1.0), (40.0, 0.3), (2.5, 1.5), (7e6, 0.05)]
    x = torch.tensor([c[0] for c in cases], dtype=F64)
    for (value, alpha), xi in zip(cases, x, strict=True):
        want = _circ_exact(value, alpha)
        _, g = _spike_and_grad(lambda v, a=alpha: HeaviCirc(alpha=a)(v), xi.reshape(1))
        assert abs(g.item() - want) <= 4e-16 * want, (value, alpha)
    _, g_n = _spike_and_grad(lambda v: threshold.heavi_circ_fn(v, 1.0), x[1:2])
    assert abs(g_n.item() - _circ_exact(-1e5, 1.0)) > 1e-8 * _circ_exact(-1e5, 1.0)


def test_older_built_ins_equal_only_at_one_alpha():
    """HeaviTanh(2) = Sigmoid(4), HeaviErfc(2) = Erf(2), NorseTriangle(1) = Triangle(1);
    at another alpha each differs (so the new classes are not duplicates)."""
    x = GRID
    pairs = [(HeaviTanh, 2.0, Sigmoid(alpha=4.0)), (HeaviErfc, 2.0, Erf(alpha=2.0)),
             (NorseTriangle, 1.0, Triangle(gamma=1.0))]  # fmt: skip
    for cls, alpha, older in pairs:
        want = type(older).derivative(x, **older.params)
        torch.testing.assert_close(cls.derivative(x, alpha=alpha), want, rtol=1e-12, atol=1e-15)
        assert not torch.allclose(cls.derivative(x, alpha=3 * alpha), want)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("cls", [HeaviTanh, HeaviErfc, HeaviCirc, NorseTriangle])
def test_fused_kernels_equal_reference(cls, backend):
    torch.manual_seed(12)
    x = torch.rand(12, 2, 5, dtype=F64) * 1.5
    g = torch.randn_like(x)
    runs = []
    for name in ("torch", backend):
        device = kernel_device(name)
        xx = x.clone().to(device).requires_grad_()
        node = LIFNode(tau=2.0, strict_firing=True, surrogate_function=cls(alpha=1.5),
                       backend=name)  # fmt: skip
        s = node(xx)
        grad = torch.autograd.grad((s * g.to(device)).sum(), xx)[0]
        runs.append((s.detach().cpu(), grad.cpu()))
    assert torch.equal(runs[0][0], runs[1][0]) and 0.05 < runs[0][0].mean() < 0.9
    assert runs[0][1].abs().sum() > 0
    torch.testing.assert_close(runs[1][1], runs[0][1], rtol=1e-10, atol=1e-12)


def test_random_pair_in_a_neuron():
    x = torch.rand(6, 2, 3)
    with pytest.raises(TraceError, match="random draw"):
        LIFNode(surrogate_function=CircDist(alpha=0.5), backend="cpu")(x)
    with pytest.warns(UserWarning):
        out = LIFNode(surrogate_function=Logistic(alpha=0.5))(x)  # "auto": the loop
    assert out.shape == x.shape and set(out.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ConfigurationError, match="no strict form"):
        LIFNode(surrogate_function=Logistic(), strict_firing=True, backend="torch")(x)


def test_registry_and_errors():
    for name, cls in [("heavi_tanh", HeaviTanh), ("HeaviErfc", HeaviErfc),
                      ("heavi-circ", HeaviCirc), ("norse_triangle", NorseTriangle)]:  # fmt: skip
        built = get_surrogate(name, alpha=3.0)
        assert type(built) is cls and built.alpha == 3.0 and SURROGATES[cls.__name__] is cls
    assert cls().alpha == 100.0  # Norse's default
    assert "Logistic" not in SURROGATES and "CircDist" not in SURROGATES  # random
    for cls in (HeaviTanh, HeaviErfc, HeaviCirc, NorseTriangle, Logistic, CircDist):
        with pytest.raises(ConfigurationError, match="alpha must be > 0"):
            cls(alpha=0.0)
    with pytest.raises(ConfigurationError, match="spiking=False"):
        HeaviCirc(spiking=False)
