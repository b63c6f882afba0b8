"""Randomly generated user neurons: the generated kernels equal the reference loop.

Each case builds a neuron class whose equations contain random elementwise expression
trees over the input, the state and the parameters: a one-state charge, or a second
state advanced after the spike (``update``), before it (``charge_returns_aux``), or
feeding a state-dependent ``threshold``. The trees use arithmetic, division, tanh,
sigmoid, atan, sin, cos, erf, log1p, exp, sqrt, abs, relu, maximum, minimum and where,
bounded so that the dynamics stay finite. In
float64 the fused kernels must give the reference loop's spikes exactly and its
gradients of the input and of a learnable parameter to 1e-9 (1e-5 under Triton's
interpreter), across surrogates, hard and soft reset and detach_reset: the "any
charge function a user writes" promise of the code generator, checked on shapes no
hand-written test thought of.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch
from torch import nn

from conftest import kernel_device
from spikeflow.kernels.codegen_c import CHECKPOINT
from spikeflow.kernels.triton_backend import triton_available
from spikeflow.neurons import BaseNode
from spikeflow.surrogate import ATan, PiecewiseQuadratic, Sigmoid, Triangle

Fn = Callable[..., torch.Tensor]

_UNARY: list[Fn] = [
    torch.tanh,
    torch.sigmoid,
    torch.atan,
    torch.sin,
    torch.cos,
    torch.erf,
    torch.abs,
    torch.relu,
    lambda z: torch.log1p(z * z),
    lambda z: torch.exp(-torch.abs(z)),
    lambda z: torch.sqrt(z * z + 1.0),
    lambda z: -z,
]
_BINARY: list[Fn] = [
    lambda p, q: p + q,
    lambda p, q: p - q,
    lambda p, q: p * q,
    lambda p, q: p / (1.0 + q * q),
    torch.maximum,
    torch.minimum,
    lambda p, q: torch.where(p > q, p, 0.5 * q),
]


def _random_expr(
    rng: random.Random,
    leaves: int,
    depth: int,
    unary: list[Fn] = _UNARY,
    constants: bool = True,
    p_unary: float = 0.45,
) -> Callable[[list], torch.Tensor]:
    """A random expression over ``leaves`` inputs, as a function of their list: unary
    functions from ``unary``, binary ones from ``_BINARY``, and (``constants``) some
    constant leaves."""
    if depth == 0 or rng.random() < 0.2:
        if constants and rng.random() < 0.2:
            c = rng.choice([0.5, -1.3, 2.0, 0.25])
            return lambda args: args[0] * 0.0 + c
        k = rng.randrange(leaves)
        return lambda args: args[k]
    sub = lambda: _random_expr(rng, leaves, depth - 1, unary, constants, p_unary)  # noqa: E731
    if rng.random() < p_unary:
        op, a = rng.choice(unary), sub()
        return lambda args: op(a(args))
    op = rng.choice(_BINARY)
    a, b = sub(), sub()
    return lambda args: op(a(args), b(args))


def _as_tensor(value, like):
    """A float parameter as a tensor (torch functions take no floats); traces to it."""
    return like * 0.0 + value if isinstance(value, float) else value


def _random_neuron(seed: int, kind: str, learnable: bool) -> type[BaseNode]:
    """A neuron with random equations. ``kind``: ``"one"`` state; ``"update"``, an
    auxiliary state advanced after the spike; ``"aux_first"``, advanced by the charge
    before firing; ``"threshold"``, an update plus a threshold that depends on it."""
    rng = random.Random(seed)
    f = _random_expr(rng, 4 if kind == "one" else 5, 4)
    g = _random_expr(rng, 4, 3)
    h = _random_expr(rng, 3, 2)

    if kind == "one":

        class RandomNeuron(BaseNode):
            @staticmethod
            def charge(x, v, *, a, b):
                a, b = _as_tensor(a, x), _as_tensor(b, x)
                return 0.6 * v + x + 0.4 * torch.tanh(f([x, v, a, b]))

    elif kind == "aux_first":

        class RandomNeuron(BaseNode):  # type: ignore[no-redef]
            charge_returns_aux = True

            @staticmethod
            def charge(x, v, w, *, a, b):
                a, b = _as_tensor(a, x), _as_tensor(b, x)
                w_new = 0.7 * w + 0.3 * x + 0.1 * torch.tanh(g([x, w, a, b]))
                return 0.6 * v + w_new + 0.4 * torch.tanh(f([x, v, a, b, w_new])), w_new

    else:

        class RandomNeuron(BaseNode):  # type: ignore[no-redef]
            @staticmethod
            def charge(x, v, w, *, a, b):
                a, b = _as_tensor(a, x), _as_tensor(b, x)
                return 0.6 * v + x - 0.3 * w + 0.4 * torch.tanh(f([x, v, a, b, w]))

            @staticmethod
            def update(h, s, w, *, a, b):
                a, b = _as_tensor(a, h), _as_tensor(b, h)
                return 0.8 * w + 0.2 * s + 0.1 * torch.tanh(g([h, w, a, b]))

        if kind == "threshold":

            def threshold(theta, w, *, a, b):
                a = _as_tensor(a, w)
                return theta + 0.3 * torch.sigmoid(h([w, a, theta + w * 0.0]))

            RandomNeuron.threshold = staticmethod(threshold)

    if kind != "one":
        RandomNeuron.initial_state = lambda self, like: {
            **BaseNode.initial_state(self, like),
            "w": torch.zeros_like(like),
        }

    def __init__(self, **kwargs):
        BaseNode.__init__(self, **kwargs)
        self.a = nn.Parameter(torch.tensor(0.7, dtype=torch.float64)) if learnable else 0.7

    RandomNeuron.__init__ = __init__
    RandomNeuron.neuron_params = lambda self: {"a": self.a, "b": -0.4}
    RandomNeuron.__name__ = RandomNeuron.__qualname__ = f"RandomNeuron{seed}"
    return RandomNeuron


SURROGATES = [Sigmoid(), ATan(), PiecewiseQuadratic(), Triangle()]
KINDS = ("one", "update", "aux_first", "threshold")
CASES = [(seed, KINDS[seed % 4], seed % 3 != 0) for seed in range(24)]


_TRITON = pytest.mark.skipif(not triton_available(), reason="triton is not installed")


@pytest.mark.parametrize(
    ("backend", "seed", "kind", "learnable"),
    [("cpu", *case) for case in CASES]
    # Triton's interpreter is slow: the first 6 random neurons cover it.
    + [pytest.param("triton", *case, marks=_TRITON) for case in CASES[:6]],
)
def test_random_neuron_equals_the_reference(backend, seed, kind, learnable):
    cls = _random_neuron(seed, kind, learnable)
    device = kernel_device(backend)
    rng = random.Random(1000 + seed)
    kwargs = dict(
        v_reset=rng.choice([0.0, None]),
        detach_reset=rng.choice([False, True]),
        surrogate_function=SURROGATES[seed % len(SURROGATES)],
    )
    torch.manual_seed(seed)
    T = CHECKPOINT + 5 if backend == "cpu" else 9
    x = (torch.rand(T, 3, 37, dtype=torch.float64) * 2.0 - 0.4).to(device)
    g = torch.randn_like(x)
    results = []
    for b in ("torch", backend):
        node = cls(backend=b, **kwargs).to(device=device, dtype=torch.float64)
        xi = x.clone().requires_grad_()
        spikes = node(xi)
        params = list(node.parameters())
        grads = torch.autograd.grad((spikes * g).sum(), [xi, *params], allow_unused=True)
        # A learnable parameter the random expression does not use: a zero gradient.
        grads = [torch.zeros_like(t) if d is None else d for t, d in zip([xi, *params], grads)]
        results.append((spikes.detach(), grads))
    (s_ref, g_ref), (s_fused, g_fused) = results
    assert torch.equal(s_fused, s_ref), "fused spikes differ from the reference loop"
    rate = s_ref.mean().item()
    assert 0.02 < rate < 0.98, f"degenerate random neuron (firing rate {rate:.3f})"
    assert len(g_fused) == len(g_ref) == 1 + int(learnable)
    # Triton's CPU interpreter has no libdevice: its flavour of the kernels computes atan
    # by a polynomial (error ~1e-7) and tanh through sigmoid, so float64 agrees to ~1e-6
    # there (the GPU flavour calls libdevice; the C kernels call libm).
    tol = 1e-9 if backend == "cpu" or device.type == "cuda" else 1e-5
    for a, b in zip(g_fused, g_ref):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)


_ARITH_UNARY: list[Fn] = [
    torch.abs,
    torch.relu,
    lambda z: -z,
    lambda z: z * 0.75,
    lambda z: z + 0.3,
    lambda z: 1.7 - z,
    lambda z: z / 3.0,
    lambda z: z / (1.0 + torch.abs(z)),
]


@pytest.mark.parametrize("seed", range(12))
def test_random_arithmetic_neuron_is_bit_exact_in_float32(seed):
    # The forward rounds every operation as the reference loop's PyTorch kernels do (no
    # contraction, no reassociation): with arithmetic only, the float32 membrane is
    # identical bit for bit, not just the spikes. (sqrt and transcendental functions are
    # left out: PyTorch's vectorised float32 versions are not correctly rounded.)
    f = _random_expr(random.Random(seed), 2, 5, _ARITH_UNARY, constants=False, p_unary=0.4)

    class ArithmeticNeuron(BaseNode):
        @staticmethod
        def charge(x, v):
            z = f([x, v])
            return 0.6 * v + x + 0.4 * (z / (1.0 + torch.abs(z)))

    ArithmeticNeuron.__name__ = ArithmeticNeuron.__qualname__ = f"ArithmeticNeuron{seed}"
    torch.manual_seed(seed)
    x = torch.rand(CHECKPOINT + 8, 4099) * 2.0 - 0.4  # 4099: a partial last block
    ref = ArithmeticNeuron(backend="torch", store_v_seq=True)
    fused = ArithmeticNeuron(backend="cpu", store_v_seq=True)
    assert torch.equal(fused(x), ref(x))
    assert torch.equal(fused.v_seq, ref.v_seq)
