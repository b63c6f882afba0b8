"""Auxiliary states the firing never reads, and comparisons that fold to constants.

An auxiliary state that reaches neither the spike nor the membrane (a trace kept for
the loss or for logging) gets a gradient only from its final value: the reference
loop never differentiates its chain when the loss does not use it, so a Jacobian that
is infinite there (``sqrt``/``log`` of 0, a negative power of 0) must not turn the
fused backward's zero cotangent into NaN gradients of the spikes and the input
(``StepGraph.final_only``). Where the loss does use it, its gradient flows as in the
reference. And a comparison the tracer folds to a constant (``torch.ones_like(v) >
0.5``, a comparison of a captured number) combines with ``& | ^ ~`` and selects a
``torch.where`` branch as in the reference loop, with no ``tl.where`` on a float
condition in the Triton kernels.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow import functional as F
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.kernels.expr import topological
from spikeflow.kernels.registry import step_graph
from spikeflow.neurons import (
    ALIFNode,
    BaseNode,
    IzhikevichNode,
    LIFNode,
    ParametricLIFNode,
)

BACKENDS = fused_backends()
T = CHECKPOINT + 5  # across a checkpoint segment of the C backward


class _Traced(BaseNode):
    """An IF neuron with an auxiliary state ``w`` (initially 0) that never reaches the
    spike or the membrane."""

    @staticmethod
    def charge(x, v, w):
        return v + x

    def initial_state(self, like):
        return {**super().initial_state(like), "w": torch.zeros_like(like)}


class SqrtTrace(_Traced):
    @staticmethod
    def update(h, s, w):
        return torch.sqrt(w) + s  # d/dw is inf at w = 0


class LogTrace(_Traced):
    @staticmethod
    def update(h, s, w):
        return s + 0.5 * torch.exp(torch.log(w))  # w stays finite, d/dw is NaN at 0


class NegativePowerTrace(_Traced):
    @staticmethod
    def update(h, s, w):
        return s + 1.0 / (1.0 + w**-1.0)  # w / (1 + w), d/dw is NaN at 0


class TwoTraces(BaseNode):
    """Two states the firing never reads: ``w`` (smooth, read by the loss in the tests,
    whose gradient reaches the input through ``h`` and the spike) and ``z`` (a ``sqrt``
    of 0, never read)."""

    @staticmethod
    def charge(x, v, w, z):
        return v + x

    @staticmethod
    def update(h, s, w, z):
        return 0.5 * w + 0.3 * torch.tanh(h) + s, torch.sqrt(z) + s

    def initial_state(self, like):
        zeros = torch.zeros_like(like)
        return {**super().initial_state(like), "w": zeros, "z": zeros}


TRACES = [SqrtTrace, LogTrace, NegativePowerTrace]


def _make(cls, backend, device):
    kw = dict(v_threshold=torch.tensor(0.9), learnable_threshold=True)
    return cls(backend=backend, **kw).double().to(device)


def _grads(cls, backend, x, g, final=None):
    """Spikes, and the gradients of the input and the threshold of
    ``(spikes * g).sum()`` plus ``final(state)`` (of the final state) when given."""
    node = _make(cls, backend, x.device)
    xi = x.clone().requires_grad_()
    with F.streaming(node):
        spikes = node(xi)
        loss = (spikes * g).sum()
        if final is not None:
            loss = loss + final(node.state)
        grads = torch.autograd.grad(loss, [xi, *node.parameters()])
    return spikes.detach(), grads


def _assert_equal_to_reference(cls, backend, x, g, final=None):
    ref_spikes, ref = _grads(cls, "torch", x, g, final)
    spikes, fused = _grads(cls, backend, x, g, final)
    assert torch.equal(spikes, ref_spikes), "fused spikes differ from the reference loop"
    assert 0.05 < float(ref_spikes.mean()) < 0.95  # firing and resetting are exercised
    for a, b in zip(ref, fused):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-9)


def _inputs(backend, *shape):
    device = kernel_device(backend)
    x = (torch.rand(*shape, dtype=torch.float64) * 1.2).to(device)
    return x, torch.randn(*shape, dtype=torch.float64).to(device)


# -- bug 1: a state whose final value gets no gradient ----------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's sqrt/log(0) lanes
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_issue_reproduction_gives_finite_gradients(backend):
    torch.manual_seed(0)
    x = torch.rand(4, 6, dtype=torch.float64).to(kernel_device(backend))
    grads = []
    for b in ("torch", backend):
        xi = x.clone().requires_grad_()
        spikes = SqrtTrace(backend=b)(xi)
        spikes.sum().backward()
        grads.append(xi.grad)
    assert torch.isfinite(grads[1]).all()
    torch.testing.assert_close(grads[1], grads[0], atol=1e-12, rtol=1e-9)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", TRACES, ids=lambda c: c.__name__)
def test_unused_trace_with_an_infinite_jacobian(backend, cls):
    x, g = _inputs(backend, T, 3, 7)
    _assert_equal_to_reference(cls, backend, x, g)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_final_trace_read_by_the_loss_still_gets_its_gradient(backend):
    # w's final value is in the loss: its gradient flows back through every step (the
    # guard lets a non-zero cotangent through) while z's NaN Jacobian stays out.
    x, g = _inputs(backend, T, 3, 7)
    weights = torch.randn(3, 7, dtype=torch.float64).to(x.device)
    final = lambda state: (state["w"] * weights).sum()  # noqa: E731
    _assert_equal_to_reference(TwoTraces, backend, x, g, final)
    # Only through the final w (the spikes' gradient is zero): still the reference's.
    _assert_equal_to_reference(TwoTraces, backend, x, torch.zeros_like(g), final)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [SqrtTrace, TwoTraces], ids=lambda c: c.__name__)
def test_streaming_second_call(backend, cls):
    # The second call starts from the first's final state, which requires grad: its
    # backward hands the first call a final-state gradient (zero) for w.
    x, g = _inputs(backend, 2 * T, 3, 7)
    results = []
    for b in ("torch", backend):
        node = _make(cls, b, x.device)
        xi = x.clone().requires_grad_()
        with F.streaming(node):
            first = node(xi[:T])
            second = node(xi[T:])
            spikes = torch.cat([first, second])
            grads = torch.autograd.grad((spikes * g).sum(), [xi, *node.parameters()])
        results.append((spikes.detach(), grads))
    (ref_spikes, ref), (spikes, fused) = results
    assert torch.equal(spikes, ref_spikes)
    for a, b in zip(ref, fused):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize(
    ("node", "final_only"),
    [
        (SqrtTrace(), ("w",)),
        (TwoTraces(), ("w", "z")),
        (LIFNode(), ()),
        (ParametricLIFNode(), ()),
        (IzhikevichNode(), ()),
        (ALIFNode(), ()),
    ],
    ids=lambda p: type(p).__name__ if isinstance(p, BaseNode) else "",
)
def test_which_states_are_guarded_at_every_step(node, final_only):
    graph = step_graph(node.declaration(), node.firing_rule, dtype=torch.float64)
    assert graph.final_only == final_only


# -- bug 2: comparisons folded to constants -------------------------------------------

GAIN = 1.5  # a captured config number: GAIN > 1.0 is a Python bool in the equation


class FoldedLogic(BaseNode):
    @staticmethod
    def charge(x, v):
        on = torch.ones_like(v) > 0.5  # folds to true
        off = torch.zeros_like(v) >= 0.5  # folds to false
        big = GAIN > 1.0  # a Python bool
        terms = [
            (x > 0.3) & on,
            on & (x > 0.4),
            (x > 0.6) & off,
            (x > 0.2) & big,
            (x > 0.5) | off,
            off | (x < 0.1),
            (x > 0.7) | on,
            (v > 0.2) ^ on,
            off ^ (x > 0.45),
            (x > 0.35) ^ big,
            ~off & (x < 0.9),
            ~on | (x > 0.8),
            on & off,
            on | off,
            on ^ off,
            ~on,
            torch.logical_and(x > 0.25, on),
            torch.logical_or(off, x > 0.55),
            torch.logical_xor(on, x > 0.65),
            torch.logical_not(off),
        ]
        h = 0.6 * v + x
        for k, t in enumerate(terms):
            h = h + (0.003 * (k + 1)) * t.to(x.dtype)
        # Selections by the folded booleans pass the gradient to the chosen branch.
        return h + torch.where((x > 0.5) & on, 0.2 * x, 0.1 * v)


class FoldedWhere(BaseNode):
    @staticmethod
    def charge(x, v):
        on = torch.ones_like(v) > 0.5
        off = torch.full_like(v, GAIN) < 1.0
        return (
            torch.where(on, 0.7 * v, torch.tanh(v))
            + torch.where(off, torch.sigmoid(x), x)
            + x.where(on, 2.0 * v) * 0.1
            + torch.where(on, torch.where(x > 0.5, x * x, 0.0), x)
        )


def _no_where_on_a_constant(node):
    graph = step_graph(node.declaration(), node.firing_rule, dtype=torch.float64)
    for n in topological([graph.spike, *graph.new_state, *graph.gradients, *graph.last_step]):
        assert not (n.op == "where" and n.args[0].is_const), n


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [FoldedLogic, FoldedWhere], ids=lambda c: c.__name__)
def test_folded_comparisons_equal_the_reference(backend, cls):
    x, g = _inputs(backend, T, 3, 7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _assert_equal_to_reference(cls, backend, x, g)
    # No "tl.where with a non-boolean condition is deprecated" from Triton.
    assert not [w for w in caught if "where" in str(w.message)], [str(w.message) for w in caught]
    _no_where_on_a_constant(cls())


def test_a_logical_operator_still_refuses_numbers():
    from spikeflow.kernels.expr import TraceError, var

    c = var("x") > 0.0
    for bad in (lambda: c & 1, lambda: c | 0.5, lambda: var("x") & c, lambda: c ^ 2.0):
        with pytest.raises(TraceError, match="only between"):
            bad()
    assert (c & True) is c and (c | False) is c and (c ^ False) is c
    assert (c & False).value == 0.0 and (c | True).value == 1.0
    assert (c ^ True).op == "lnot"
