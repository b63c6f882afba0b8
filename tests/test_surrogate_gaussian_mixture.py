"""BRF's double Gaussian and the adaptive SRNN's (TC-LIF's S-MNIST) multi-Gaussian.

Against transcriptions, written here, of each authors' spike function (float64):
AdaptiveAILab/brf-neurons' ``StepDoubleGaussianGrad`` and ZhangShimin1/TC-LIF's
``ActFun_adp``, both firing on ``x > 0`` and writing the normal density as
``exp(-(x - mu)² / (2 sigma²)) / sqrt(2 pi) / sigma``. The point-by-point formulas,
dtypes and primitives are in ``tests/test_surrogate.py``'s table; here: the authors'
backward, their ``>`` forward through ``strict``, the names the command line uses, and
the parameter errors. The neurons with them, on every backend: test_neurons_tclif_brf.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow.cli.kwargs import parse_kwargs
from spikeflow.errors import ConfigurationError
from spikeflow.models import create_model
from spikeflow.neurons import LIFNode
from spikeflow.surrogate import DoubleGaussian, MultiGaussian, get_surrogate

F64 = torch.float64


def _authors_density(x, mu, width):
    return torch.exp(-((x - mu) ** 2) / (2 * width**2)) / torch.sqrt(
        2 * torch.tensor(math.pi, dtype=x.dtype)
    ) / width  # fmt: skip


class BRFDoubleGaussianSpike(torch.autograd.Function):
    """BRF's: fires on ``x > 0``; backward ``0.5 ((1.15) N(x; 0, 0.5) - 0.3 N(x; 0, 3))``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.gt(0.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        p, length, wide = 0.15, 0.5, 6.0 * 0.5
        mix = (1.0 + p) * _authors_density(x, 0.0, length) - 2.0 * p * _authors_density(
            x, 0.0, wide
        )
        return grad * mix * 0.5


class TCLIFMultiGaussianSpike(torch.autograd.Function):
    """TC-LIF's S-MNIST one: fires on ``x > 0``; wings ``N(x; ±0.5, 3)``, weight 0.15."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.gt(0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        lens, height, wide = 0.5, 0.15, 6.0 * 0.5
        mix = (
            _authors_density(x, 0.0, lens) * (1.0 + height)
            - _authors_density(x, lens, wide) * height
            - _authors_density(x, -lens, wide) * height
        )
        return grad * mix * 0.5


AUTHORS = [(DoubleGaussian, BRFDoubleGaussianSpike), (MultiGaussian, TCLIFMultiGaussianSpike)]
IDS = ["double", "multi"]
# exact 0 (where > and >= differ), the peak, the wings' sign change (~1.27), far tails
GRID = torch.cat([torch.linspace(-8, 8, 1601, dtype=F64), torch.tensor([0.0, 1.27, -40.0])])


@pytest.mark.parametrize(("cls", "authors"), AUTHORS, ids=IDS)
def test_spikes_and_gradient_equal_the_authors(cls, authors):
    x_ours = GRID.clone().requires_grad_()
    x_theirs = GRID.clone().requires_grad_()
    g = torch.randn_like(GRID)
    ours = cls()(x_ours, strict=True)
    theirs = authors.apply(x_theirs)
    assert torch.equal(ours, theirs)
    (ours * g).sum().backward()
    (theirs * g).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-13, atol=1e-16)
    # the wings: negative beyond |x| ~ 1.27, positive inside
    d = cls.derivative(GRID, **cls().params)
    assert (d[GRID.abs() < 1.26] > 0).all() and (d[(GRID.abs() > 1.28) & (d != 0)] < 0).all()


@pytest.mark.parametrize(("cls", "authors"), AUTHORS, ids=IDS)
def test_non_strict_forward_fires_at_zero_only_there(cls, authors):
    # spikeflow's default (>=) differs from the authors' (>) exactly at the threshold
    ours = cls()(GRID)
    theirs = authors.apply(GRID)
    assert torch.equal((ours != theirs), GRID == 0)


@pytest.mark.parametrize("cls", [DoubleGaussian, MultiGaussian])
def test_primitive_rises_from_zero_to_gamma_times_one_minus_p(cls):
    sg = cls(sigma=0.4, p=0.2, scale=3.0, gamma=1.5, spiking=False)
    ends = sg(torch.tensor([-1e4, 1e4], dtype=F64))
    torch.testing.assert_close(ends, torch.tensor([0.0, 1.5 * 0.8], dtype=F64))
    x = torch.linspace(-5, 5, 41, dtype=F64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: sg(t), (x,))


@pytest.mark.parametrize(
    ("name", "cls"),
    [("double_gaussian", DoubleGaussian), ("MultiGaussian", MultiGaussian),
     ("multi-gaussian", MultiGaussian)],
)  # fmt: skip
def test_built_by_name_as_the_command_line_gives_it(name, cls):
    assert type(get_surrogate(name)) is cls
    kwargs = parse_kwargs(
        [f"surrogate_function={{name = '{name}', sigma = 0.3}}", "strict_firing=true"],
        "--neuron-kwargs",
    )
    net = create_model("recurrent_lif_seq", in_channels=1, input_mode="pixels", hidden=8,
                       neuron="tc_lif", neuron_kwargs=kwargs)  # fmt: skip
    cells = [m for m in net.modules() if hasattr(m, "surrogate_function")]
    assert cells and all(type(m.surrogate_function) is cls for m in cells)
    assert all(m.surrogate_function.sigma == 0.3 and m.strict_firing for m in cells)


@pytest.mark.parametrize("cls", [DoubleGaussian, MultiGaussian])
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"sigma": 0.0}, "sigma"), ({"scale": -1.0}, "scale"), ({"gamma": 0.0}, "gamma"),
     ({"p": -0.1}, "p"), ({"sigma": float("nan")}, "sigma")],
)  # fmt: skip
def test_bad_parameters_are_named(cls, kwargs, name):
    with pytest.raises(ConfigurationError, match=rf"{cls.__name__}: parameter {name} must"):
        cls(**kwargs)


@pytest.mark.parametrize("backend", fused_backends())
@pytest.mark.parametrize("cls", [DoubleGaussian, MultiGaussian])
def test_fused_kernels_take_the_parameters_at_run_time(cls, backend):
    """A LIF with each surrogate, two parameter sets through one compiled kernel (they
    are run-time arguments): the reference loop's spikes and input gradient."""
    device = kernel_device(backend)
    torch.manual_seed(0)
    x = (torch.rand(9, 2, 7, dtype=F64, device=device) * 1.5).requires_grad_()
    g = torch.randn(x.shape, dtype=F64, device=device)
    for params in ({}, {"sigma": 0.3, "p": 0.4, "scale": 2.5, "gamma": 1.5}):
        results = []
        for name in ("torch", backend):
            node = LIFNode(tau=2.0, surrogate_function=cls(**params), strict_firing=True,
                           backend=name)  # fmt: skip
            s = node(x)
            results.append((s, torch.autograd.grad((s * g).sum(), x)[0]))
        (s_ref, g_ref), (s_got, g_got) = results
        assert torch.equal(s_got, s_ref) and 0 < s_ref.mean() < 1
        torch.testing.assert_close(g_got, g_ref, rtol=1e-12, atol=1e-14)
