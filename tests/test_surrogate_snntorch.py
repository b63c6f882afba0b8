"""snnTorch's surrogates (``snntorch.surrogate``, snnTorch 1.0) as spikeflow surrogates.

The float64 backward of ``FastSigmoid``, ``SpikeRateEscape``, ``SparseFastSigmoid``,
``Triangular``, ``LeakySpikeOperator`` and ``StochasticSpikeOperator`` equal to
snnTorch's autograd functions on a grid (kinks included); names for ``get_surrogate``
and ``--neuron-kwargs``; the random SSO refused by the fused kernels, by name; one
network step of ``LeakyNode`` + ``FastSigmoid`` equal to snnTorch's
``Leaky(spike_grad=fast_sigmoid(25))``. Elsewhere: the formulas against independent
references (``tests/test_surrogate.py``'s table), and every other surrogate class on the
C and Triton kernels against the reference loop (``tests/test_kernels_robustness.py``).
"""

from __future__ import annotations

import types
import warnings

import pytest
import torch

from spikeflow.cli.kwargs import parse_kwargs
from spikeflow.errors import ConfigurationError
from spikeflow.kernels.expr import TraceError
from spikeflow.models import NeuronFactory
from spikeflow.neurons import LeakyNode, LIFNode
from spikeflow.surrogate import (
    SURROGATES,
    FastSigmoid,
    LeakyKReLU,
    LeakySpikeOperator,
    QPseudoSpike,
    SoftSign,
    SparseFastSigmoid,
    SpikeRateEscape,
    StochasticSpikeOperator,
    Triangular,
    get_surrogate,
)

snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
from snntorch import surrogate as snn_sg  # noqa: E402

F64 = torch.float64
#: A float64 grid with the kinks: 0 (Triangular, the spike), 1 (SpikeRateEscape's peak,
#: SparseFastSigmoid's default B) and -0.5 (a B below the threshold).
GRID = torch.unique(
    torch.cat([torch.linspace(-3, 3, 241, dtype=F64), torch.tensor([0.0, 1.0, -0.5], dtype=F64)])
)

PAIRS = {
    "fast_sigmoid()": (lambda: snn_sg.fast_sigmoid(), FastSigmoid()),
    "fast_sigmoid(3.5)": (lambda: snn_sg.fast_sigmoid(slope=3.5), FastSigmoid(slope=3.5)),
    "spike_rate_escape()": (lambda: snn_sg.spike_rate_escape(), SpikeRateEscape()),
    "spike_rate_escape(2.5, 4)": (
        lambda: snn_sg.spike_rate_escape(beta=2.5, slope=4),
        SpikeRateEscape(2.5, 4.0),
    ),
    "SFS()": (lambda: snn_sg.SFS(), SparseFastSigmoid()),
    "SFS(5, -0.5)": (lambda: snn_sg.SFS(slope=5, B=-0.5), SparseFastSigmoid(5.0, -0.5)),
    "triangular()": (lambda: snn_sg.triangular(), Triangular()),
    "triangular(0.25)": (lambda: snn_sg.triangular(threshold=0.25), Triangular(0.25)),
}


def _upstream(n):
    """A gradient of small dyadic numbers: snnTorch's spikes are float32, so the gradient
    reaching its backward is float32, and its products with the parameters there are
    rounded to float32 unless exact (as these are)."""
    sign = torch.randint(0, 2, (n,)) * 2 - 1
    return (torch.randint(1, 17, (n,)) * sign).to(F64) / 8  # never 0: every point counts


@pytest.mark.parametrize("label", PAIRS)
def test_backward_equals_snntorch(label):
    make_theirs, ours = PAIRS[label]
    g = _upstream(GRID.numel())
    x_snn, x_sf = GRID.clone().requires_grad_(), GRID.clone().requires_grad_()
    y_snn, y_sf = make_theirs()(x_snn), ours(x_sf, strict=True)
    assert torch.equal(y_snn.to(F64), y_sf)  # snnTorch fires on x > 0
    (y_snn * g).sum().backward()
    (y_sf * g).sum().backward()
    assert x_snn.grad.dtype == F64 and x_snn.grad.abs().sum() > 0
    torch.testing.assert_close(x_sf.grad, x_snn.grad, rtol=1e-14, atol=0)
    # the kinks, as snnTorch places them
    at = {v: x_sf.grad[GRID == v].item() / g[GRID == v].item() for v in (0.0, 1.0)}
    if isinstance(ours, Triangular):
        assert at[0.0] == -ours.threshold  # x >= 0: -threshold
    if isinstance(ours, SparseFastSigmoid) and ours.B == 1.0:
        assert at[1.0] == 0.0  # only x > B passes


def _snntorch_backward(function, x, grad, **attributes):
    """Call a snnTorch autograd function's backward directly (a stand-in context)."""
    ctx = types.SimpleNamespace(saved_tensors=((x > 0).to(x.dtype),), **attributes)
    result = function.backward(ctx, grad)
    return result[0] if isinstance(result, tuple) else result


@pytest.mark.parametrize("slope", [0.25, 0.1, 0.0])
def test_leaky_spike_operator_equals_snntorchs_backward(slope):
    g = _upstream(GRID.numel())
    want = _snntorch_backward(snn_sg.LeakySpikeOperator, GRID, g, slope=slope)
    got = g * LeakySpikeOperator.derivative(GRID, slope=slope)
    # snnTorch multiplies by a float32 mask times slope: slope rounded to float32
    torch.testing.assert_close(got, want, rtol=1e-7 if slope == 0.1 else 1e-15, atol=0)
    if slope == 0.0:  # snnTorch's heaviside(): the same gradient, x = 0 included
        x = GRID.clone().requires_grad_()
        (snn_sg.heaviside()(x) * g).sum().backward()
        torch.testing.assert_close(got, x.grad, rtol=1e-15, atol=0)
        assert LeakyKReLU.derivative(torch.zeros(1), leak=0.0, k=1.0).item() == 1.0  # not at 0


@pytest.mark.skipif(snn.__version__ != "1.0.0", reason="snnTorch 1.0's behaviour")
def test_snntorch_lso_fails():
    """docs: snnTorch 1.0's ``LSO()`` passes its slope to the stochastic operator, which
    takes two numbers; its ``LeakySpikeOperator`` backward returns one gradient for two
    inputs. Neither runs: the spikeflow class is that backward."""
    x = GRID.clone().requires_grad_()
    with pytest.raises(TypeError, match="variance"):
        snn_sg.LSO()(x)
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        snn_sg.LeakySpikeOperator.apply(x, 0.1).sum().backward()


def test_stochastic_spike_operator_equals_snntorch():
    g = _upstream(GRID.numel())
    grads = []
    for sso in (snn_sg.SSO(mean=0.1, variance=0.3), StochasticSpikeOperator(0.1, 0.3)):
        torch.manual_seed(7)  # the same uniform draws in the backward
        x = GRID.clone().requires_grad_()
        (sso(x) * g).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-15, atol=0)
    below = GRID <= 0
    assert torch.equal(grads[1][~below], g[~below])  # 1 where the neuron fires
    assert not torch.equal(  # and random elsewhere: another draw differs
        StochasticSpikeOperator.derivative(GRID, mean=0.1, variance=0.3),
        StochasticSpikeOperator.derivative(GRID, mean=0.1, variance=0.3),
    )


def test_stochastic_spike_operator_is_refused_by_the_fused_kernels():
    x = torch.rand(6, 2, 3) * 2
    with pytest.raises(TraceError, match=r"StochasticSpikeOperator draws random numbers"):
        LeakyNode(0.9, surrogate_function=StochasticSpikeOperator(), backend="cpu")(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = LeakyNode(0.9, surrogate_function=StochasticSpikeOperator())(x)  # auto
    assert any("draws random numbers" in str(w.message) for w in caught)
    assert torch.equal(s, LeakyNode(0.9, backend="torch")(x))
    assert "StochasticSpikeOperator" not in SURROGATES


def test_names():
    assert type(get_surrogate("fast_sigmoid")) is FastSigmoid
    assert get_surrogate("FastSigmoid", slope=10.0).slope == 10.0
    assert type(get_surrogate("spike-rate-escape")) is SpikeRateEscape
    assert type(get_surrogate("sparse_fast_sigmoid", B=0.5)) is SparseFastSigmoid
    assert type(get_surrogate("triangular")) is Triangular  # not Triangle
    assert type(get_surrogate("leaky_spike_operator")) is LeakySpikeOperator
    with pytest.raises(ConfigurationError, match="unknown surrogate 'stochastic_spike_op"):
        get_surrogate("stochastic_spike_operator")
    assert type(get_surrogate(StochasticSpikeOperator, variance=0.1)) is StochasticSpikeOperator
    # the command line: --neuron-kwargs surrogate_function=fast_sigmoid (or a table)
    for item in ("surrogate_function=fast_sigmoid",
                 "surrogate_function={name = 'fast_sigmoid', slope = 25.0}"):  # fmt: skip
        kwargs = parse_kwargs([item], "--neuron-kwargs")
        neuron = NeuronFactory("lif", kwargs)()
        assert isinstance(neuron.surrogate_function, FastSigmoid)
        assert neuron.surrogate_function.slope == 25.0
    item = "surrogate_function={name = 'sparse_fast_sigmoid', B = 0.5}"
    neuron = NeuronFactory("lif", parse_kwargs([item], "--neuron-kwargs"))()
    assert isinstance(neuron.surrogate_function, SparseFastSigmoid)
    assert neuron.surrogate_function.params == {"slope": 25.0, "B": 0.5}


def test_relations_the_docs_state():
    for k in (25.0, 2.0, 0.5):
        torch.testing.assert_close(
            SoftSign.derivative(GRID, alpha=k) * (2 / k), FastSigmoid.derivative(GRID, slope=k)
        )
    assert torch.equal(FastSigmoid.derivative(GRID, slope=2.0), QPseudoSpike.derivative(GRID, 2.0))
    for c in (1.0, 0.3):
        assert torch.equal(
            Triangular.derivative(GRID, threshold=c), LeakyKReLU.derivative(GRID, leak=c, k=-c)
        )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: FastSigmoid(slope=-1.0), r"FastSigmoid: parameter slope must be >= 0"),
        (lambda: SpikeRateEscape(beta=-0.1), r"SpikeRateEscape: parameter beta must be >= 0"),
        (lambda: SpikeRateEscape(slope=0.0), r"SpikeRateEscape: parameter slope must be > 0"),
        (lambda: SparseFastSigmoid(slope=-2.0), r"SparseFastSigmoid: parameter slope"),
        (lambda: StochasticSpikeOperator(variance=-0.2), r"parameter variance must be >= 0"),
        (lambda: StochasticSpikeOperator(spiking=False), "no smooth primitive"),
    ],
)
def test_bad_parameters_are_named(make, match):
    with pytest.raises(ConfigurationError, match=match):
        make()


# -- in the fused kernels --------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_leaky_fast_sigmoid_network_equals_snntorch(backend):
    """One network step (Linear -> Leaky, per-step in snnTorch) with snnTorch's own
    ``fast_sigmoid(25)`` (float32 spikes: gradients to float32 rounding)."""
    torch.manual_seed(3)
    fc = torch.nn.Linear(12, 8).double()
    x = torch.rand(10, 4, 12, dtype=F64) * 3
    leaky = snn.Leaky(beta=0.8, spike_grad=snn_sg.fast_sigmoid(slope=25))
    mem, spikes = None, []
    for x_t in x:
        spk, mem = leaky(fc(x_t)) if mem is None else leaky(fc(x_t), mem)
        spikes.append(spk)
    want = torch.stack(spikes)
    node = LeakyNode(0.8, surrogate_function=FastSigmoid(slope=25), backend=backend)
    got = node(fc(x))
    assert torch.equal(got, want.to(F64)) and 0.05 < want.mean() < 0.9
    g = torch.randn(want.shape, dtype=F64)
    (w_snn,) = torch.autograd.grad((want * g).sum(), fc.weight)
    (w_sf,) = torch.autograd.grad((got * g).sum(), fc.weight)
    assert w_snn.abs().sum() > 0
    torch.testing.assert_close(w_sf, w_snn, rtol=1e-5, atol=1e-6)
    # the field's LIF with the same surrogate is another neuron (snnTorch's subtract reset)
    lif = LIFNode(tau=5.0, decay_input=False, v_reset=None, strict_firing=True,
                  surrogate_function=FastSigmoid(), backend="torch")  # fmt: skip
    assert not torch.equal(lif(fc(x).detach()), got)
