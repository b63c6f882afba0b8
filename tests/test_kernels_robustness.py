"""The fused kernels on inputs at the edges: overflowing functions, values on the
threshold, infinite constants, clamp ties, mixed dtypes, tracing, forks and a
damaged or shared kernel cache."""

from __future__ import annotations

import math
import os
import signal
import time
import warnings

import pytest
import torch

from conftest import fused_backends, kernel_device
from spikeflow import functional as F
from spikeflow.errors import ConfigurationError
from spikeflow.kernels.triton_backend import triton_available
from spikeflow.neurons import BaseNode, IFNode

BACKENDS = fused_backends()


def grads(node: BaseNode, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xr = x.clone().requires_grad_(True)
    spikes = node.to(x.device)(xr)
    spikes.sum().backward()
    return spikes.detach(), xr.grad


# Triton's interpreter (numpy) warns about the exp that overflows, which is the point.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_membrane_far_below_threshold_gives_finite_float32_gradients(backend):
    # u = v - 1 falls to -31: the Sigmoid surrogate's exp(-4 u) overflows to inf, whose
    # derivative is 0. A build assuming finite math turned it into NaN on every step.
    x = torch.full((30, 64), -1.0, device=kernel_device(backend))
    _, g_ref = grads(IFNode(backend="torch"), x)
    _, g = grads(IFNode(backend=backend), x)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-30)


class ExpCharge(BaseNode):
    """A charge through exp: its value depends on which libm the kernel calls."""

    @staticmethod
    def charge(x, v):
        return v * 0.5 + torch.exp(x)


def test_backward_replays_the_forward_bit_for_bit_through_libm():
    # Each neuron's threshold sits exactly on the H its forward computed at t = 0, so it
    # fires there (H >= theta). The backward recomputes H from the checkpoint; if it
    # called another exp (say the vector one) than the forward, a last-bit difference
    # would put H below theta and the reset's gradient would be another's. Reference:
    # the same kernel with the threshold one ulp lower, where every H clears it.
    torch.manual_seed(0)
    n = 4096
    x0 = torch.rand(n) * 4 - 2
    probe = ExpCharge(backend="cpu", v_threshold=1e30, store_v_seq=True)
    with torch.no_grad():
        probe(x0[None])
    h = probe.v_seq[0].clone()
    x = torch.stack([x0, torch.rand(n)])
    s_at, g_at = grads(ExpCharge(backend="cpu", v_threshold=h), x)
    below = torch.nextafter(h, torch.tensor(-math.inf))
    s_below, g_below = grads(ExpCharge(backend="cpu", v_threshold=below), x)
    assert s_at[0].all() and torch.equal(s_at, s_below)
    torch.testing.assert_close(g_at, g_below, rtol=1e-4, atol=1e-6)


class Capped(BaseNode):
    """An infinite constant in an equation (an open bound, a where branch)."""

    @staticmethod
    def charge(x, v):
        h = torch.clamp(v + x, -math.inf, 3.0)
        return torch.where(h > 2.5, h * 0.5, torch.maximum(h, torch.full_like(h, -math.inf)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_constants_compile_and_match_the_reference(backend):
    x = torch.randn(9, 2, 40, dtype=torch.float64, device=kernel_device(backend)) * 2
    s_ref, g_ref = grads(Capped(backend="torch").double(), x)
    s, g = grads(Capped(backend=backend).double(), x)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-12)


class FlooredIF(BaseNode):
    """An IF neuron whose membrane cannot fall below -1."""

    @staticmethod
    def charge(x, v):
        return torch.clamp(v + x, min=-1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clamp_passes_the_gradient_on_its_bound_as_torch_does(backend):
    # The membrane sits exactly on the floor during the silent steps: torch.clamp's
    # derivative there is 1 (a maximum would split it 0.5/0.5 at the tie).
    x = torch.tensor([[-2.0], [0.0], [0.0], [1.5]], dtype=torch.float64)
    x = x.expand(4, 8).contiguous().to(kernel_device(backend))
    _, g_ref = grads(FlooredIF(backend="torch", v_reset=None), x)
    _, g = grads(FlooredIF(backend=backend, v_reset=None), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    assert g[1:3].min() > 0.4


@pytest.fixture
def warn_afresh(monkeypatch):
    """backend="auto" warns once per neuron and reason: each test sees its warning."""
    from spikeflow import kernels

    monkeypatch.setattr(kernels, "_WARNED", set())


def refused_then_reference_on_auto(
    cls: type[BaseNode], x: torch.Tensor, match: str, **kwargs: object
) -> torch.Tensor:
    """Check that ``cls(**kwargs)`` on ``x`` is refused as mixed precision by every fused
    backend and gives the reference's spikes (and dtype) under backend="auto", with a
    warning; return those spikes."""
    from spikeflow.kernels import MixedPrecisionError

    s_ref = cls(backend="torch", **kwargs)(x)
    for backend in BACKENDS:
        backend = getattr(backend, "values", (backend,))[0]  # a pytest.param's value
        if backend == "triton" and not triton_available():
            continue
        device = kernel_device(backend)
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        with pytest.raises(MixedPrecisionError, match=match):
            cls(backend=backend, **moved)(x.detach().to(device))
    with pytest.warns(UserWarning, match="runs on the reference loop.*mixes precisions"):
        s = cls(backend="auto", **kwargs)(x)
    assert s.dtype == s_ref.dtype
    assert torch.equal(s, s_ref)
    return s


def test_a_wider_threshold_is_refused_and_auto_runs_the_reference(warn_afresh):
    # float32 input 0.7 (0.69999999) against a float64 per-neuron threshold 0.7: the
    # reference computes the comparison in float64 (PyTorch's promotion) and does not
    # fire; a kernel that cast the threshold to float32 (0.69999999) would.
    x = torch.full((1, 3), 0.7)
    theta = torch.full((3,), 0.7, dtype=torch.float64)
    match = (
        r"the threshold is a torch\.float64 tensor of shape \(3,\) but the input is "
        r"torch\.float32.*mixed precision.*one dtype.*backend='torch'"
    )
    s = refused_then_reference_on_auto(IFNode, x, match, v_threshold=theta)
    assert s.dtype == torch.float64 and not s.any()
    # One dtype runs fused: the neuron's, or the input's.
    for xx, th in ((x.double(), theta), (x, theta.float())):
        assert torch.equal(IFNode(backend="cpu", v_threshold=th)(xx), IFNode(v_threshold=th)(xx))


def test_jit_trace_records_the_reference_loop_and_refuses_an_explicit_kernel():
    from spikeflow.errors import ConfigurationError
    from spikeflow.neurons import LIFNode

    torch.manual_seed(0)
    x1, x2 = torch.randn(4, 2, 8) * 3, torch.randn(4, 2, 8) * 3
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), LIFNode(backend="auto")).eval()
    model.requires_grad_(False)
    traced = torch.jit.trace(model, x1)
    assert torch.equal(traced(x2), model(x2))
    model[1].backend = "cpu"
    with pytest.raises(ConfigurationError, match=r"torch\.jit\.trace"):
        torch.jit.trace(model, x1)


def test_zero_time_steps_are_refused_by_the_low_level_runner():
    from spikeflow.errors import ShapeError
    from spikeflow.kernels.cpu import run_cpu
    from spikeflow.kernels.reference import FiringRule
    from spikeflow.neurons import LIFNode
    from spikeflow.surrogate import Sigmoid

    node = LIFNode()
    x = torch.zeros(0, 100, requires_grad=True)
    rule = FiringRule(Sigmoid(), 0.0, False, False)
    with pytest.raises(ShapeError, match="at least one time step"):
        run_cpu(node.declaration(), x, {"v": torch.zeros(100)}, node.neuron_params(), 1.0, rule)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_the_cpu_kernels_without_hanging():
    # GNU OpenMP's thread pool does not survive fork(): a child entering a parallel
    # region that its parent had used waits for ever. The kernels run serially there.
    # (PyTorch's own parallel operators hang the same way in such a child.)
    from spikeflow.neurons import LIFNode

    x = torch.rand(16, 4096) * 2.5
    with torch.no_grad():
        expected = LIFNode(backend="cpu")(x).numpy().tobytes()  # on every thread
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no exceptions escaping
        try:
            with torch.no_grad():
                os.write(write, LIFNode(backend="cpu")(x).numpy().tobytes()[:64])
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 120
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in the CPU kernel")
        time.sleep(0.05)
    got = os.read(read, 64)
    os.close(read)
    assert got == expected[:64]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", ["membrane_only", "spikes_and_membrane", "membrane_sum"])
def test_the_recorded_membrane_is_differentiable_as_in_the_reference(backend, loss):
    # store_v_seq's v_seq carries gradients on every backend (a membrane loss trains).
    from spikeflow.neurons import ParametricLIFNode

    device = kernel_device(backend)
    torch.manual_seed(1)
    x = torch.rand(37, 3, 11, dtype=torch.float64, device=device) * 2
    w = torch.randn(37, 3, 11, dtype=torch.float64, device=device)
    results = []
    for b in ("torch", backend):
        node = ParametricLIFNode(backend=b, store_v_seq=True).double().to(device)
        xr = x.clone().requires_grad_(True)
        spikes = node(xr)
        v = node.v_seq
        assert v.requires_grad
        if loss == "membrane_only":
            total = (v * w).sum()
        elif loss == "spikes_and_membrane":
            total = (spikes * w).sum() + v.pow(2).mean()
        else:
            total = v.sum()
        total.backward()
        results.append((xr.grad, node.w.grad))
    (gx_ref, gw_ref), (gx, gw) = results
    torch.testing.assert_close(gx, gx_ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-9, atol=1e-12)


def _surrogate_classes():
    """The spike functions the kernels fire by (not MultiLevelSpikeCount, a count that
    they refuse: test_surrogate_multilevel.py; nor the random StochasticSpikeOperator,
    which they refuse too: test_surrogate_snntorch.py)."""
    import inspect

    from spikeflow import surrogate as S

    return [c for _, c in inspect.getmembers(S, inspect.isclass)
            if issubclass(c, S.Surrogate)
            and c not in (S.Surrogate, S.StochasticSpikeOperator)
            and c.heaviside_forward]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "cls", [c for c in _surrogate_classes() if c().params], ids=lambda c: c.__name__
)  # a surrogate without parameters (DeterministicPass) has nothing to anneal
def test_an_annealed_surrogate_parameter_reuses_one_kernel(backend, cls):
    # Surrogate parameters that the derivative uses arithmetically travel with each call:
    # annealing alpha needs no new kernel, and every value gives the reference's
    # gradient. (SquarewaveFourierSeries loops over n: its parameters stay constants.)
    from spikeflow.kernels import registry
    from spikeflow.neurons import LIFNode

    device = kernel_device(backend)
    torch.manual_seed(0)
    x = torch.rand(7, 2, 13, dtype=torch.float64, device=device) * 2.5
    base = cls().params
    name = "T_period" if "T_period" in base else next(iter(base))  # n must stay an int
    entries = None
    for scale in (1.0, 1.5, 0.6):
        params = {**base, name: base[name] * scale}
        results = []
        for b in ("torch", backend):
            node = LIFNode(tau=2.0, backend=b, surrogate_function=cls(**params)).double()
            results.append(grads(node.to(device), x))
        (s_ref, g_ref), (s, g) = results
        assert torch.equal(s, s_ref)
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-12)
        if entries is None:
            entries = len(registry._ENTRIES)
    grows = cls.__name__ == "SquarewaveFourierSeries"
    assert (len(registry._ENTRIES) > entries) == grows


class PowerOfRelu(BaseNode):
    """A learnable exponent on a base that is 0 wherever the input is negative."""

    @staticmethod
    def charge(x, v, *, p):
        return v + torch.relu(x) ** p

    def __init__(self, p: float = 1.5, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.p = torch.nn.Parameter(torch.tensor(p, dtype=torch.float64))

    def neuron_params(self) -> dict[str, torch.Tensor]:
        return {"p": self.p}


# Triton's interpreter (numpy) warns about log(0) and 0 * inf in the lanes that the
# gradient's where() then discards.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", [1.5, 0.0])
def test_a_learnable_exponent_has_torchs_gradient_where_the_base_is_zero(backend, p):
    # d(b ** p)/dp = b ** p * log(b) is 0 * -inf = NaN at b = 0; PyTorch gives 0 there
    # (when p >= 0), and no gradient to b where p == 0 (0 * b ** -1 = NaN at b = 0).
    device = kernel_device(backend)
    torch.manual_seed(0)
    x = (torch.rand(8, 16, dtype=torch.float64) - 0.3).to(device)
    results = []
    for b in ("torch", backend):
        node = PowerOfRelu(p, backend=b).to(device)
        xi = x.clone().requires_grad_()
        spikes = node(xi)
        (spikes * torch.linspace(0.5, 1.5, 16, dtype=torch.float64, device=device)).sum().backward()
        results.append((spikes, xi.grad, node.p.grad))
    (s_ref, gx_ref, gp_ref), (s, gx, gp) = results
    assert torch.equal(s, s_ref)
    assert torch.isfinite(gx).all() and torch.isfinite(gp).all()
    torch.testing.assert_close(gx, gx_ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gp, gp_ref, rtol=1e-9, atol=1e-12)


class MaxIF(BaseNode):
    @staticmethod
    def charge(x, v):
        return torch.maximum(v, x) * 0.5 + torch.minimum(v, x - 1.0) * 0.25 + x


class ClampWhereIF(BaseNode):
    @staticmethod
    def charge(x, v):
        return v * 0.5 + torch.clamp(x, -1.0, 1.0) + torch.where(v > 0.2, v, x).clamp(min=0.0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN arithmetic under the interpreter
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", ["KLIFNode", "MaxIF", "ClampWhereIF"])
def test_nan_propagates_through_relu_maximum_and_minimum_as_in_torch(backend, cls):
    # torch.relu/maximum/minimum propagate NaN; the kernels' `a > 0 ? a : 0` turned a
    # NaN membrane into a number, which then fired where the reference never does. Their
    # gradients (and where's and clamp's) select rather than multiply by a 0/1 mask, so
    # a NaN gradient is dropped where PyTorch drops it (clamp's at a NaN input).
    from spikeflow.neurons import KLIFNode

    device = kernel_device(backend)
    make = {"KLIFNode": KLIFNode, "MaxIF": MaxIF, "ClampWhereIF": ClampWhereIF}[cls]
    x = torch.tensor([[float("nan"), 0.5], [1.5, float("nan")], [1.5, 1.5], [1.5, 0.2]])
    x = x.repeat(1, 8).to(device)
    results = []
    for b in ("torch", backend):
        node = make(backend=b, store_v_seq=True).to(device)
        xi = x.clone().requires_grad_()
        spikes = node(xi)
        (spikes.sum() + node.v_seq.nan_to_num().sum()).backward()
        results.append((spikes, node.v_seq, xi.grad))
    (s_ref, v_ref, g_ref), (s, v, g) = results
    assert v_ref.isnan().any()
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(v, v_ref, equal_nan=True)
    torch.testing.assert_close(g, g_ref, equal_nan=True)


class FromFloat64State(IFNode):
    """An initial membrane in float64 (loaded from numpy, say) under a float32 input."""

    def initial_state(self, like):
        return {"v": torch.full(like.shape, 0.1, dtype=torch.float64, device=like.device)}


def test_a_wider_state_is_refused_and_auto_runs_the_reference(warn_afresh):
    # float32 0.9 (0.89999998) + float64 0.1 is below 1 in float64 (the reference, by
    # PyTorch's promotion) but reaches 1 in float32, where a kernel that cast the state
    # down to the input's dtype fired.
    x = torch.full((2, 4), 0.9, requires_grad=True)
    match = r"state 'v' is a torch\.float64 tensor of shape \(4,\) but the input is"
    s = refused_then_reference_on_auto(FromFloat64State, x, match)
    assert s.dtype == torch.float64 and not s[0].any()
    (g,) = torch.autograd.grad(s.sum(), x)
    assert g.dtype == torch.float32


class Float32Trace(BaseNode):
    """An adaptation trace started as float32 (``torch.full(shape, 0.1)``) beside a
    float64 input."""

    @staticmethod
    def charge(x, v, w):
        return v * 0.9 + x - w

    @staticmethod
    def update(h, s, w):
        return w * 0.9 + s

    def initial_state(self, like):
        return {**super().initial_state(like), "w": torch.full(like.shape, 0.1)}


class Float64Trace(Float32Trace):
    def initial_state(self, like):
        return {**super().initial_state(like), "w": torch.full(like.shape, 0.1).double()}


def test_a_narrower_state_is_refused_and_auto_runs_the_reference(warn_afresh):
    # The reference computes the trace's first step in float32 (0.1f * 0.9 rounded to
    # float32); the kernels cast the state to float64 first: other membranes.
    x = torch.rand(5, 6, dtype=torch.float64, requires_grad=True) * 0.8
    match = r"state 'w' is a torch\.float32 tensor of shape \(6,\) but the input is"
    refused_then_reference_on_auto(Float32Trace, x, match)
    v32 = Float32Trace(backend="torch", store_v_seq=True)
    v64 = Float64Trace(backend="torch", store_v_seq=True)
    v32(x), v64(x)
    assert not torch.equal(v32.v_seq, v64.v_seq)  # what casting the state changed


class TracedLIF(BaseNode):
    """LIF with a spike trace ``a`` (for a learning rule) that never feeds back."""

    def __init__(self, rho: torch.Tensor, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.rho = rho

    @staticmethod
    def charge(x, v, a):
        return v + (x - v) * 0.3

    @staticmethod
    def update(h, s, a, *, rho):
        return a * rho + s

    def neuron_params(self) -> dict[str, torch.Tensor]:
        return {"rho": self.rho}

    def initial_state(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        return {**super().initial_state(like), "a": torch.zeros_like(like)}


class AdaptIF(BaseNode):
    """An adaptation current ``w`` that a parameter ``b`` feeds after each spike."""

    def __init__(self, b: torch.Tensor, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.b = b

    @staticmethod
    def charge(x, v, w):
        return v + x * 0.3 - w

    @staticmethod
    def update(h, s, w, *, b):
        return w * 0.5 + b * s

    def neuron_params(self) -> dict[str, torch.Tensor]:
        return {"b": self.b}

    def initial_state(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        return {**super().initial_state(like), "w": torch.zeros_like(like)}


def test_a_wider_parameter_is_refused_where_the_reference_mixes_precisions(warn_afresh):
    # The reference keeps the membrane and the spikes float32 when a float64 per-neuron
    # parameter feeds only a trace, and computes step 0 in float32 and the later ones in
    # float64 when it enters through an adaptation current. The kernels promoted the whole
    # computation to float64: other spikes (x*0.3 rounds to 1 in float32 only), another
    # dtype. They now refuse, and auto runs the reference.
    x = torch.rand(6, 40) * 2.2
    x[0, :10] = 10.0 / 3.0
    rho = torch.full((40,), 0.9, dtype=torch.float64)
    s = refused_then_reference_on_auto(
        TracedLIF, x, r"parameter 'rho' is a torch\.float64", rho=rho
    )
    assert s.dtype == torch.float32 and s[0, :10].all()
    x = torch.full((2, 4), 10.0 / 3.0)
    b = torch.full((4,), 0.1, dtype=torch.float64)
    s = refused_then_reference_on_auto(AdaptIF, x, r"parameter 'b' is a torch\.float64", b=b)
    assert s.dtype == torch.float64 and s[0].all()
    # 0-dim tensors and Python floats never promote (PyTorch's rule): accepted, fused.
    for b in (torch.tensor(0.1, dtype=torch.float64), 0.1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert torch.equal(AdaptIF(b, backend="auto")(x), AdaptIF(b, backend="torch")(x))


@pytest.mark.skipif(not triton_available(), reason="triton is not installed")
def test_a_half_input_still_computes_in_a_wider_parameters_dtype_on_triton():
    # Half inputs compute in float32 on Triton: a float32 per-neuron threshold is fine.
    device = kernel_device("triton")
    x = (torch.rand(3, 64, device=device) * 2).half()
    theta = torch.full((64,), 0.7, device=device)
    s = IFNode(backend="triton", v_threshold=theta)(x)
    s_ref = IFNode(backend="torch", v_threshold=theta)(x)
    assert s.dtype == s_ref.dtype == torch.float32
    assert torch.equal(s, s_ref)


@pytest.mark.parametrize("backend", ["cpu", "auto"])
def test_batched_gradients_through_a_fused_neuron_are_refused_by_name(backend):
    # is_grads_batched (and jacobian(vectorize=True)) vmap the backward; the fused
    # backward read the data pointers of storage-less batched tensors and failed with
    # "Cannot access data pointer of Tensor that doesn't have storage".
    from spikeflow.errors import ConfigurationError
    from spikeflow.neurons import LIFNode

    xs = torch.rand(4, 1, 3, dtype=torch.float64) * 2
    x = xs.clone().requires_grad_()
    s = LIFNode(backend=backend).double()(x)
    eye = torch.eye(s.numel(), dtype=torch.float64).reshape(-1, *s.shape)
    match = r"batched gradients.*is_grads_batched.*backend='torch'"
    with pytest.raises(ConfigurationError, match=match):
        torch.autograd.grad(s, x, eye, is_grads_batched=True, retain_graph=True)
    node = LIFNode(backend=backend).double()
    with pytest.raises(ConfigurationError, match=match):
        torch.autograd.functional.jacobian(node, xs, vectorize=True)
    # The remedies: the reference loop, or an unbatched Jacobian.
    (j_ref,) = torch.autograd.grad(
        LIFNode(backend="torch").double()(x), x, eye, is_grads_batched=True
    )
    j = torch.autograd.functional.jacobian(LIFNode(backend=backend).double(), xs)
    torch.testing.assert_close(j.reshape(j_ref.shape), j_ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_ad_runs_the_reference_loop_on_auto_and_is_refused_by_a_fused_backend(backend):
    # The kernels read raw memory: a dual tensor's tangent was silently dropped.
    import torch.autograd.forward_ad as fwAD

    from spikeflow.errors import ConfigurationError
    from spikeflow.neurons import LIFNode
    from spikeflow.surrogate import Sigmoid

    device = kernel_device(backend)
    x = torch.rand(5, 3, device=device) * 2
    tangents = []
    for b in ("torch", "auto"):
        node = LIFNode(backend=b, surrogate_function=Sigmoid(spiking=False), store_v_seq=True)
        with fwAD.dual_level():
            spikes = node(fwAD.make_dual(x, torch.ones_like(x)))
            v_seq = node.v_seq
            tangents.append((fwAD.unpack_dual(spikes).tangent, fwAD.unpack_dual(v_seq).tangent))
    (ts_ref, tv_ref), (ts, tv) = tangents
    assert ts is not None and tv is not None
    torch.testing.assert_close(ts, ts_ref)
    torch.testing.assert_close(tv, tv_ref)
    node = LIFNode(backend=backend, surrogate_function=Sigmoid(spiking=False))
    with fwAD.dual_level(), pytest.raises(ConfigurationError, match="forward-mode AD"):
        node(fwAD.make_dual(x, torch.ones_like(x)))
    # A dual parameter too (the threshold), with a plain input.
    with fwAD.dual_level(), pytest.raises(ConfigurationError, match="forward-mode AD"):
        node.v_threshold = fwAD.make_dual(torch.tensor(1.0, device=device), torch.tensor(1.0))
        node(x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", ["threshold", "parameter", "state"])
def test_a_tensor_on_another_device_than_the_input_is_refused_by_name(backend, where):
    """The kernels would read its pointer on the wrong device (the C kernels crashed the
    interpreter); a "meta" tensor stands in for a GPU one beside a CPU input."""
    from spikeflow.kernels import BACKENDS as RUNNERS
    from spikeflow.neurons import LIFNode, ParametricLIFNode

    meta = torch.device("meta")
    x = torch.rand(4, 3, device=kernel_device(backend))
    node = ParametricLIFNode() if where == "parameter" else LIFNode()
    if where == "parameter":  # PLIF's decay = sigmoid(w): a 0-dim tensor not on the CPU
        node.w = torch.nn.Parameter(torch.tensor(0.0, device=meta))
    threshold = torch.ones(3, device=meta) if where == "threshold" else 1.0
    state = {"v": torch.zeros(3, device=meta)} if where == "state" else node.initial_state(x[0])
    names = {"threshold": "the threshold", "parameter": "parameter 'decay'", "state": "state 'v'"}
    with pytest.raises(ConfigurationError, match=f"{names[where]} is on device meta"):
        RUNNERS[backend](
            node.declaration(), x, state, node.neuron_params(), threshold, node.firing_rule
        )


@pytest.mark.parametrize("backend", fused_backends()[-1:])
def test_a_zero_dim_cpu_tensor_beside_an_input_elsewhere_is_a_host_scalar(backend):
    """PyTorch reads a 0-dim CPU tensor beside a GPU input on the host (a CUDA division
    by it multiplies by its reciprocal), which the Triton kernels would not reproduce:
    refused as a HostScalarError, which backend="auto" answers with the reference loop
    ("meta" stands in for the GPU; tests/test_kernels_cuda.py runs it on one)."""
    from spikeflow.kernels import HostScalarError
    from spikeflow.kernels.triton_backend import run_triton
    from spikeflow.neurons import LIFNode

    device = (
        torch.device("meta") if kernel_device(backend).type == "cpu" else kernel_device(backend)
    )
    x = torch.rand(4, 3, device=device)
    node = LIFNode()
    with pytest.raises(HostScalarError, match="the threshold is a 0-dim CPU tensor"):
        run_triton(node.declaration(), x, node.initial_state(x[0]), node.neuron_params(),
                   torch.tensor(0.9), node.firing_rule)  # fmt: skip
    # A carried 0-dim state cannot be moved by neuron.to(): the advice is a reset.
    with pytest.raises(HostScalarError, match=r"state 'v' is a 0-dim CPU.*reset_net"):
        run_triton(node.declaration(), x, {"v": torch.tensor(0.0)}, node.neuron_params(),
                   1.0, node.firing_rule)  # fmt: skip


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf arithmetic under the interpreter
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("last", [-math.inf, math.inf])
def test_an_infinite_membrane_at_the_last_step_keeps_the_reference_gradients(
    backend, v_reset, last
):
    """Without a gradient of the final state the last step's backward is the spike's
    alone: the absent state gradient used to enter as 0 and make 0 * inf = NaN, which
    then ran back through every step of that neuron (the reference stays finite)."""
    from spikeflow.neurons import LIFNode

    x = torch.tensor([[0.6, 0.6], [0.6, 0.6], [0.6, last]]).unsqueeze(1)  # [T, 1, 2]
    x = x.to(kernel_device(backend))
    got = []
    for b in ("torch", backend):
        for node in (IFNode(v_reset=v_reset, backend=b), LIFNode(v_reset=v_reset, backend=b)):
            spikes, gx = grads(node, x)
            got.append((spikes, gx))
    for (s_ref, g_ref), (s, g) in zip(got[:2], got[2:]):
        assert torch.equal(s, s_ref)
        assert torch.isfinite(g_ref).all()
        torch.testing.assert_close(g, g_ref)


def _last_step_inf_grads(node: BaseNode, x: torch.Tensor, loss, streaming: bool) -> torch.Tensor:
    xr = x.clone().requires_grad_(True)
    if streaming:  # the final states are outputs a loss can use
        with F.streaming(node):
            loss(node, node(xr)).backward()
    else:
        loss(node, node(xr)).backward()
    return xr.grad


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "case",
    [
        "izhikevich: spikes + final w",
        "alif: spikes + final a",
        "lif: v_seq recorded",
        "lif compiled",
    ],
)
def test_an_infinite_last_membrane_with_other_outputs_differentiated(backend, case):
    """The last step counts each output only where its gradient is not zero: a final
    state left out of the loss (beside one in it), a recorded membrane the loss does not
    use, and torch.compile, which hands the operator zeros for the gradients of unused
    outputs, all keep the reference's finite gradients."""
    from spikeflow.neurons import ALIFNode, IzhikevichNode, LIFNode

    x = torch.tensor([[0.6, 0.6], [0.6, 0.6], [0.6, -math.inf]], dtype=torch.float64)
    x = x.unsqueeze(1).to(kernel_device(backend))
    spikes_only = lambda node, s: s.sum()  # noqa: E731
    build, loss = {
        "izhikevich: spikes + final w": (
            lambda b: IzhikevichNode(backend=b),
            lambda node, s: s.sum() + node.state["w"].sum(),
        ),
        "alif: spikes + final a": (
            lambda b: ALIFNode(backend=b),
            lambda node, s: s.sum() + node.state["a"].sum(),
        ),
        "lif: v_seq recorded": (lambda b: LIFNode(store_v_seq=True, backend=b), spikes_only),
        "lif compiled": (lambda b: LIFNode(backend=b), spikes_only),
    }[case]
    grads = []
    for b in ("torch", backend):
        node = build(b).to(x.device)
        if case == "lif compiled":
            node = torch.compile(node, backend="aot_eager")
        grads.append(_last_step_inf_grads(node, x, loss, streaming="final" in case))
    assert torch.isfinite(grads[0]).all()
    torch.testing.assert_close(grads[1], grads[0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_last_step_keeps_nan_and_negative_zero_gradients_as_the_reference(backend):
    """Only the new states' parts of the last step are guarded: a NaN input there with a
    zero spike gradient (a loss on spikes[:-1]) is NaN through every step, as in the
    reference, and a -0.0 upstream gradient keeps its sign."""
    from spikeflow.neurons import LIFNode

    device = kernel_device(backend)
    x = (torch.rand(4, 1, 3, dtype=torch.float64) * 2).to(device)
    x[-1, 0, 1] = math.nan
    weights = torch.ones_like(x)
    weights[-1] = 0.0
    weights[-1, 0, 2] = -0.0
    got = []
    for b in ("torch", backend):
        xr = x.clone().requires_grad_(True)
        (LIFNode(backend=b)(xr) * weights).sum().backward()
        got.append(xr.grad)
    ref, fused = got
    assert torch.isnan(ref[:, 0, 1]).all() and torch.isnan(fused[:, 0, 1]).all()
    torch.testing.assert_close(fused, ref, equal_nan=True)
    assert torch.equal(torch.signbit(fused[-1]), torch.signbit(ref[-1]))


class ParamFedTrace(TracedLIF):
    """A trace ``a`` whose update reads a parameter alone, and feeds the charge."""

    @staticmethod
    def charge(x, v, a):
        return v + (x - v) * 0.3 + a

    @staticmethod
    def update(h, s, a, *, rho):
        return rho * 2.0


class ConstantTrace(ParamFedTrace):
    """The same trace set to a literal."""

    @staticmethod
    def update(h, s, a, *, rho):
        return 0.125


@pytest.mark.parametrize("rho_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cls", [ParamFedTrace, ConstantTrace])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_state_set_from_parameters_alone_has_the_steps_shape(backend, cls, rho_dtype):
    # The reference used to return such a state 0-dim (or as a Python float), the
    # kernels [B, N]; a streaming neuron then carried another shape into its next call.
    # A float64 0-dim one (which does not promote the float32 steps) stays float32.
    x = torch.rand(5, 3, 7, device=kernel_device(backend)) * 0.6
    finals, outputs = [], []
    for b in ("torch", backend):
        node = cls(torch.tensor(0.1, dtype=rho_dtype), backend=b, step_mode="m")
        node.to(x.device)
        with F.streaming(node):
            outputs.append(torch.cat([node(x), node(x)]))
            finals.append(node.state)
    assert torch.equal(outputs[0], outputs[1]) and outputs[0].dtype == x.dtype
    for name in ("v", "a"):
        assert finals[0][name].shape == finals[1][name].shape == x.shape[1:], name
        assert finals[0][name].dtype == finals[1][name].dtype == x.dtype, name
        torch.testing.assert_close(finals[0][name], finals[1][name])
