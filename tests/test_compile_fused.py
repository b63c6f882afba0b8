"""The fused CPU kernels inside torch.compile: one graph, the reference's results, and
recompilation exactly when the kernels depend on what changed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import fused_backends, kernel_device
from spikeflow.kernels import TraceError, registry
from spikeflow.neurons import BaseNode, LIFNode, ParametricLIFNode, TernaryLIFNode
from spikeflow.surrogate import Sigmoid, Surrogate

GAIN = 0.5  # read by _gained_charge: a captured number


def _gained_charge(x, v, *, tau):
    return v + (x * GAIN - v) / tau


def _cumsum_charge(x, v, *, tau):
    return v + (x - v) / tau + torch.cumsum(x, 0) * 0.0  # not elementwise: refused


def _node_class(charge, name: str) -> type[BaseNode]:
    def init(self, **kwargs):
        BaseNode.__init__(self, **kwargs)
        self.tau = 2.0

    return type(
        name,
        (BaseNode,),
        {
            "__init__": init,
            "charge": staticmethod(charge),
            "neuron_params": lambda self: {"tau": self.tau},
        },
    )


GainedNode = _node_class(_gained_charge, "GainedNode")
CumsumNode = _node_class(_cumsum_charge, "CumsumNode")


class Counter:
    """A torch.compile backend (aot_eager) that counts the graphs it compiles."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> object:
        from torch._dynamo.backends.debugging import aot_eager

        self.graphs += 1
        return aot_eager(gm, example_inputs)


def spikes_and_grad(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xi = x.detach().clone().requires_grad_()
    out = module(xi)
    (out * torch.linspace(0.5, 1.5, out.shape[-1], device=out.device)).sum().backward()
    return out.detach(), xi.grad


def set_backend(module: nn.Module, backend: str) -> None:
    for m in module.modules():
        if isinstance(m, BaseNode):
            m.backend = backend


def assert_matches_reference(module: nn.Module, out: torch.Tensor, grad: torch.Tensor,
                             x: torch.Tensor) -> None:  # fmt: skip
    backend = next(m.backend for m in module.modules() if isinstance(m, BaseNode))
    set_backend(module, "torch")
    try:
        ref_out, ref_grad = spikes_and_grad(module, x)
    finally:
        set_backend(module, backend)
    assert torch.equal(out, ref_out)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", fused_backends("auto"))
def test_fused_neurons_compile_into_one_graph(backend, monkeypatch):
    # Triton: on the GPU when there is one, else through its interpreter.
    # Before, the kernel lookup broke the graph at every neuron.
    built = []
    monkeypatch.setattr(registry, "entry_key", _recording(registry.entry_key, built))
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(16, 32),
        ParametricLIFNode(backend=backend),
        nn.Linear(32, 8),
        LIFNode(v_reset=None, backend=backend),
    )
    device = kernel_device(backend)
    net, x = net.to(device), torch.rand(6, 4, 16, device=device) * 2
    out, grad = spikes_and_grad(torch.compile(net, backend="aot_eager", fullgraph=True), x)
    assert_matches_reference(net, out, grad, x)
    assert built, "auto under torch.compile ran the reference loop, not the fused kernels"


def test_a_declared_fire_rule_compiles_into_one_graph(monkeypatch):
    # The compiled lookup rebuilds the declaration from its functions' parts: without
    # its fire rule the kernels fired by one Heaviside (binary spikes).
    built = []
    monkeypatch.setattr(registry, "entry_key", _recording(registry.entry_key, built))
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(8, 16), TernaryLIFNode(v_reset=0.2, backend="cpu"))
    x = torch.randn(6, 3, 8) * 3
    out, grad = spikes_and_grad(torch.compile(net, backend="aot_eager", fullgraph=True), x)
    assert_matches_reference(net, out, grad, x)
    assert built and (out == -1).any()


def _recording(fn, calls):
    def wrapper(*args, **kwargs):
        calls.append(args)
        return fn(*args, **kwargs)

    return wrapper


def test_a_cold_start_survives_dynamic_shapes_and_a_graph_break():
    # Declarations and kernels built while Dynamo traces: its analysis restarts (on a
    # graph break, on dynamic shapes) must see the same code path again.
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Sequential(nn.Linear(8, 8), GainedNode(backend="cpu"))
            self.b = nn.Sequential(nn.Linear(8, 8), LIFNode(tau=3.0, backend="cpu"))

        def forward(self, x):
            y = self.a(x)
            torch._dynamo.graph_break()
            return self.b(y)

    torch.manual_seed(1)
    net = Net()
    compiled = torch.compile(net, backend="aot_eager", dynamic=True)
    for T, B in ((4, 3), (7, 5), (2, 9)):
        x = torch.rand(T, B, 8) * 3
        out, grad = spikes_and_grad(compiled, x)
        assert_matches_reference(net, out, grad, x)


def test_annealed_float_threshold_and_surrogate_alpha_compile_once_more():
    # Their values travel to the kernels as a tensor computed from them: after the first
    # change (Dynamo then treats the number as an input) no value recompiles.
    counter = Counter()
    node = LIFNode(tau=2.0, backend="cpu", surrogate_function=Sigmoid(alpha=4.0))
    compiled = torch.compile(node, backend=counter, fullgraph=True)
    x = torch.rand(5, 3, 11) * 2.5
    graphs = []
    for theta, alpha in ((1.0, 4.0), (0.8, 4.0), (0.6, 3.0), (0.5, 2.0), (0.9, 5.0)):
        node.v_threshold = theta
        node.surrogate_function.alpha = alpha
        out, grad = spikes_and_grad(compiled, x)
        assert_matches_reference(node, out, grad, x)
        graphs.append(counter.graphs)
    assert graphs[-1] <= graphs[0] + 2, graphs  # the threshold, then alpha, go dynamic
    assert graphs[-2] == graphs[-1]


def test_a_changed_reset_value_recompiles_and_builds_its_kernels():
    # v_reset is folded into the generated code: each value is a guard and a kernel.
    node = LIFNode(tau=2.0, backend="cpu")
    compiled = torch.compile(node, backend="aot_eager", fullgraph=True)
    x = torch.rand(6, 2, 9) * 2.5
    for v_reset in (0.0, -0.3, None, 0.2):
        node.v_reset = v_reset
        out, grad = spikes_and_grad(compiled, x)
        assert_matches_reference(node, out, grad, x)


def test_a_captured_global_number_changed_between_calls_is_read_again(monkeypatch):
    node = GainedNode(backend="cpu")
    compiled = torch.compile(node, backend="aot_eager", fullgraph=True)
    x = torch.full((3, 1, 4), 0.6)
    for gain in (0.5, 2.0, 0.5):
        monkeypatch.setitem(globals(), "GAIN", gain)
        out, grad = spikes_and_grad(compiled, x)
        assert out.sum() == (4 if gain == 2.0 else 0)  # fires at the third step
        assert_matches_reference(node, out, grad, x)


def test_equations_the_tracer_refuses_under_compile():
    x = torch.rand(4, 2, 5) * 2
    with pytest.warns(UserWarning, match="cannot be compiled to a fused kernel"):
        out, grad = spikes_and_grad(torch.compile(CumsumNode(), backend="aot_eager"), x)
    assert_matches_reference(CumsumNode(), out, grad, x)
    with pytest.raises(TraceError, match=r"torch\.cumsum is not supported"):
        torch.compile(CumsumNode(backend="cpu"), backend="aot_eager")(x)


def test_mixed_precision_under_compile_falls_back_to_the_reference(monkeypatch):
    from spikeflow import kernels

    monkeypatch.setattr(kernels, "_WARNED", set())
    theta = torch.linspace(0.8, 1.2, 6, dtype=torch.float64)  # wider than the input
    x = torch.rand(5, 2, 6) * 2
    with pytest.warns(UserWarning, match="runs on the reference loop.*mixes precisions"):
        out = torch.compile(LIFNode(v_threshold=theta), backend="aot_eager")(x)
    assert torch.equal(out, LIFNode(v_threshold=theta, backend="torch")(x))


def test_the_plif_nmnist_network_compiles_with_inductor():
    # With explicit fused backends this failed in inductor ("cannot determine truth
    # value of Relational"): one graph break per neuron made Dynamo recompile the
    # shared Sequential frames per layer shape and switch to dynamic shapes.
    from spikeflow.models import create_model

    torch.manual_seed(0)
    net = create_model("plif_nmnist").eval()  # no dropout, fixed batch-norm statistics
    set_backend(net, "cpu")
    x = (torch.rand(3, 2, 2, 34, 34) > 0.8).float()
    compiled = torch.compile(net)
    out = compiled(x)
    out.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    eager = net(x)
    eager.sum().backward()
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5)
    for g, p in zip(grads, net.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-3, atol=1e-4)


class _Gain:
    """A callable object as the charge equation."""

    def __init__(self, gain: float) -> None:
        self.gain = gain

    def __call__(self, x, v):
        return v + (x * self.gain - v) / 2.0


class _MethodCharge(BaseNode):
    """A bound method as the charge equation."""

    def declaration(self):
        from spikeflow.neurons.declaration import declare

        return declare(self.method_charge, None, "MethodCharge")

    def method_charge(self, x, v):
        return v + (x * 1.5 - v) / 2.0


class _ObjectCharge(BaseNode):
    charge = _Gain(1.5)


@pytest.mark.parametrize("cls", [_MethodCharge, _ObjectCharge])
@pytest.mark.parametrize("backend", ["cpu", "auto"])
def test_bound_method_and_callable_object_charges_compile(cls, backend, monkeypatch):
    # Dynamo cannot hand a bound method (or a tuple holding a callable object) to a
    # constant function: they go as (function, instance) and as themselves.
    built = []
    monkeypatch.setattr(registry, "entry_key", _recording(registry.entry_key, built))
    node = cls(backend=backend)
    x = torch.rand(5, 2, 6) * 2
    out, grad = spikes_and_grad(torch.compile(node, backend="aot_eager", fullgraph=True), x)
    assert_matches_reference(node, out, grad, x)
    assert built


NP_GAIN = None  # set to a numpy scalar by the test


def _numpy_gained_charge(x, v, *, tau):
    return v + (x * NP_GAIN - v) / tau


NumpyGainedNode = _node_class(_numpy_gained_charge, "NumpyGainedNode")


def test_a_captured_numpy_scalar_under_compile(monkeypatch):
    # Dynamo makes a numpy scalar a tensor: no guard can follow its value, so the fused
    # path refuses it (auto runs the reference loop, which Dynamo guards itself).
    # Dynamo's "eager" backend: the guards and the refusal are Dynamo's, not the
    # backend's (aot_eager's tracing of the backward cost ~6 s more). Without the
    # refusal, the fused kernel keeps the first value: the second call fails, and the
    # explicit backend compiles with fullgraph=True instead of raising.
    np = pytest.importorskip("numpy")
    from spikeflow import kernels

    monkeypatch.setattr(kernels, "_WARNED", set())
    x = torch.rand(4, 2, 5) * 2
    compiled = torch.compile(NumpyGainedNode(), backend="eager")
    monkeypatch.setitem(globals(), "NP_GAIN", np.float64(0.5))
    with pytest.warns(UserWarning, match="numpy scalars"):  # while compiling
        out, grad = spikes_and_grad(compiled, x)
    assert_matches_reference(NumpyGainedNode(), out, grad, x)
    monkeypatch.setitem(globals(), "NP_GAIN", np.float64(2.0))  # an input to the graph
    out, grad = spikes_and_grad(compiled, x)
    assert out.sum() > 0
    assert_matches_reference(NumpyGainedNode(), out, grad, x)
    # An explicit fused backend raises the refusal, with or without fullgraph: while
    # Dynamo traces (a constant function's exception stops the compilation). Before,
    # without fullgraph, Dynamo left the frame to eager mode and tried each frame of the
    # kernel's eager launch in turn (~25 s), which then ran the kernel unrefused.
    for fullgraph in (True, False):
        torch._dynamo.reset()
        node = NumpyGainedNode(backend="cpu")
        with pytest.raises(Exception, match="numpy scalars") as info:
            torch.compile(node, backend="eager", fullgraph=fullgraph)(x)
        assert "backend='auto' runs the reference loop there" in str(info.value)


BIG = 2**53


def _big_charge(x, v, *, tau):
    return v + (x * (BIG - 2**53 + 0.5) - v) / tau


BigNode = _node_class(_big_charge, "BigNode")


def test_a_captured_int_beyond_float_precision_recompiles(monkeypatch):
    node = BigNode(backend="cpu")
    compiled = torch.compile(node, backend="aot_eager", fullgraph=True)
    x = torch.full((3, 1, 4), 0.9)
    for big in (2**53, 2**53 + 1, 2**53):  # equal as floats
        monkeypatch.setitem(globals(), "BIG", big)
        out, grad = spikes_and_grad(compiled, x)
        assert_matches_reference(node, out, grad, x)
        assert (out.sum() > 0) == (big == 2**53 + 1)


def test_identical_neurons_share_one_compiled_graph():
    # The surrogate instance is not a guard: layer-by-layer compilation (one
    # torch.compile per block, as for large models) compiles the neuron's code once.
    counter = Counter()
    layers = [LIFNode(tau=2.0, backend="cpu") for _ in range(10)]
    x = torch.rand(4, 2, 8) * 2
    expected = spikes_and_grad(LIFNode(tau=2.0, backend="torch"), x)
    for layer in layers:
        layer.compile(backend=counter, fullgraph=True)
        out, grad = spikes_and_grad(layer, x)
        assert torch.equal(out, expected[0])
        torch.testing.assert_close(grad, expected[1])
    assert counter.graphs == 1


def _partial_charge(gain, x, v, *, tau):
    return v + (x * gain - v) / tau


def test_a_partial_bound_float_changed_between_compiles():
    # Dynamo makes the float a partial binds an input once it changes; the partial goes
    # to the constant lookup as its parts, the float by its bit pattern (a guard).
    import functools

    counter = Counter()
    x = torch.full((3, 1, 4), 0.6)
    for gain in (0.5, 2.0, 0.5, 2.0):
        cls = _node_class(functools.partial(_partial_charge, gain), "PartialNode")
        node = cls(backend="cpu")
        out, grad = spikes_and_grad(torch.compile(node, backend=counter, fullgraph=True), x)
        assert out.sum() == (4 if gain == 2.0 else 0)
        assert_matches_reference(node, out, grad, x)


def _unassigned_closure():
    def charge(x, v, *, tau):
        if tau is None:
            return later  # never reached: the cell stays empty
        return v + (x - v) / tau

    return charge
    later = 1.0  # assigned after the return: an empty closure cell


def test_an_empty_closure_cell_falls_back_under_compile(monkeypatch):
    # Dynamo cannot trace reading an empty cell: auto runs the reference loop.
    from spikeflow import kernels

    monkeypatch.setattr(kernels, "_WARNED", set())
    node = _node_class(_unassigned_closure(), "EmptyCellNode")()
    x = torch.rand(5, 2, 6) * 2
    with pytest.warns(UserWarning, match="closure variables not yet assigned"):
        out, grad = spikes_and_grad(torch.compile(node, backend="aot_eager", fullgraph=True), x)
    assert_matches_reference(node, out, grad, x)


BIG_GAINS = [0.5] * 300  # more entries than the captured-value keys compare


def _big_container_charge(x, v, *, tau):
    return v + (x * BIG_GAINS[0] - v) / tau


class _NumpyWidthBox(Surrogate):
    """A surrogate whose derivative reads a numpy scalar (NP_WIDTH) from globals."""

    @staticmethod
    def derivative(x):
        return (torch.abs(x) < NP_WIDTH).float()


NP_WIDTH = None  # set to a numpy scalar by the test


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("numpy capture", "read numpy scalars"),
        ("unassigned closure", "closure variables not yet assigned"),
        ("large container", "more than 256 entries"),
        ("surrogate's numpy capture", "_NumpyWidthBox's functions read numpy scalars"),
    ],
)
def test_every_capture_refusal_stops_an_explicit_backend_at_once(case, reason, monkeypatch):
    # Each refusal of compiled_refusal, with and without fullgraph: raised while Dynamo
    # traces, which reports it as an InternalTorchDynamoError whose message starts with
    # "TraceError: " and whose __context__ is the TraceError (docs/kernels.md); auto runs
    # the reference loop in the graph instead, also without fullgraph.
    np = pytest.importorskip("numpy")
    from torch._dynamo.exc import InternalTorchDynamoError

    from spikeflow import kernels

    monkeypatch.setitem(globals(), "NP_GAIN", np.float64(0.5))
    monkeypatch.setitem(globals(), "NP_WIDTH", np.float32(0.5))
    charge = {"numpy capture": _numpy_gained_charge, "unassigned closure": _unassigned_closure(),
              "large container": _big_container_charge}.get(case, _gained_charge)  # fmt: skip
    cls = _node_class(charge, "RefusedNode")
    kwargs = {"surrogate_function": _NumpyWidthBox()} if case.startswith("surrogate") else {}
    x = torch.rand(5, 2, 6) * 2
    for fullgraph in (True, False):
        torch._dynamo.reset()
        with pytest.raises(InternalTorchDynamoError, match=r"^TraceError: ") as info:
            torch.compile(cls(backend="cpu", **kwargs), backend="eager", fullgraph=fullgraph)(x)
        cause = info.value.__context__
        assert isinstance(cause, TraceError) and reason in str(cause), cause
        assert "backend='auto' runs the reference loop there" in str(cause)
        torch._dynamo.reset()
        monkeypatch.setattr(kernels, "_WARNED", set())  # warned once per neuron and reason
        with pytest.warns(UserWarning, match=reason):
            out = torch.compile(cls(**kwargs), backend="eager", fullgraph=fullgraph)(x)
        assert torch.equal(out, cls(backend="torch", **kwargs)(x))


def test_torch_export_gets_the_reference_loop():
    # An exported program must not name kernels registered in this process only: auto
    # exports the reference loop (plain aten operators); a fused backend is refused.
    from spikeflow.errors import ConfigurationError

    net = nn.Sequential(nn.Linear(8, 8), LIFNode())
    x = torch.rand(4, 2, 8)
    program = torch.export.export(net, (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("spikeflow" in t for t in targets), targets
    assert torch.equal(program.module()(x), net(x))
    with pytest.raises(ConfigurationError, match=r"cannot be exported by torch\.export"):
        torch.export.export(nn.Sequential(nn.Linear(8, 8), LIFNode(backend="cpu")), (x,))


def test_one_step_under_compile_runs_the_reference_step(monkeypatch):
    # A single step has no time loop for a kernel to fuse; the compiler fuses the
    # reference step with the layers around it (a recurrent layer's per-step calls).
    from spikeflow.kernels import resolve_backend, run_cpu_or_reference, run_reference

    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert resolve_backend("auto", torch.rand(1, 4, 8), stepped=True) is run_reference
    assert resolve_backend("auto", torch.rand(5, 4, 8), stepped=True) is run_cpu_or_reference
    assert resolve_backend("cpu", torch.rand(1, 4, 8), stepped=True) is not run_reference
    # Other one-step calls keep the kernel: inductor can overwrite a reference step's
    # spikes that are a graph output during the backward (next test).
    assert resolve_backend("auto", torch.rand(1, 4, 8)) is run_cpu_or_reference


@pytest.mark.parametrize("stepped", [False, True])
def test_compiled_one_step_spikes_survive_the_backward(stepped):
    # CLIF with detach_reset and store_v_seq on the reference step under inductor: the
    # returned spikes were overwritten by the backward (found by review).
    from spikeflow import layers
    from spikeflow.neurons import ComplementaryLIFNode

    torch.manual_seed(0)
    kw = {"detach_reset": True, "store_v_seq": True}
    if stepped:
        model = layers.Recurrent(ComplementaryLIFNode(step_mode="s", **kw), 5)
        x = (torch.randn(3, 4, 5) * 3).requires_grad_()
    else:
        model = ComplementaryLIFNode(**kw)
        x = (torch.randn(1, 4, 5) * 3).requires_grad_()
    y = torch.compile(model)(x)
    before = y.detach().clone()
    y.sum().backward()
    assert torch.equal(y, before) and torch.equal(before, model(x.detach()))


def test_a_compiled_recurrent_layer_equals_eager():
    from spikeflow import layers

    torch.manual_seed(0)
    layer = layers.Recurrent(LIFNode(tau=2.0, step_mode="s"), 6)
    x = (torch.rand(12, 3, 6) * 1.6).requires_grad_()
    y = torch.compile(layer)(x)
    (gx,) = torch.autograd.grad(y.sum(), x)
    xe = x.detach().clone().requires_grad_()
    ye = layer(xe)
    (ge,) = torch.autograd.grad(ye.sum(), xe)
    assert torch.equal(y, ye) and 0.1 < y.mean() < 0.9
    torch.testing.assert_close(gx, ge)


@pytest.mark.parametrize("compiler", ["eager", "aot_eager"])
def test_a_double_backward_through_a_compiled_fused_neuron_is_refused(compiler):
    """Without the opt-in, inside torch.compile AOTAutograd refuses a double backward
    through the fused operators, and without AOTAutograd (Dynamo's "eager" backend)
    the operators' own formula refuses it by name."""
    from spikeflow.errors import ConfigurationError

    compiled = torch.compile(LIFNode(backend="cpu").double(), fullgraph=True, backend=compiler)
    x = (torch.rand(6, 3, 5, dtype=torch.float64) * 2).requires_grad_()
    (g,) = torch.autograd.grad(compiled(x).sum() + (x**3).sum(), x, create_graph=True)
    error = (ConfigurationError, "eager mode only") if compiler == "eager" else (
        RuntimeError, "does not currently support double backward")  # fmt: skip
    with pytest.raises(error[0], match=error[1]):
        torch.autograd.grad(g.pow(2).sum(), x)


@pytest.mark.parametrize(
    "backend, surrogate",
    [("cpu", "Sigmoid"), ("torch", "Sigmoid"), ("torch", "MultiLevelSpikeCount"),
     ("torch", "Logistic")],
)  # fmt: skip
def test_the_second_order_opt_in_refuses_a_compiled_neuron_by_name(backend, surrogate):
    """Under spikeflow.kernels.second_order() a neuron traced by torch.compile is
    refused by name (fullgraph): Dynamo's "eager" backend would silently drop the
    surrogate spike's second-order terms of the reference loop (the spike functions
    written as autograd.Function: the Heaviside's, the counts', Norse's random ones)."""
    from spikeflow import surrogate as surrogates
    from spikeflow.kernels import second_order

    spike = getattr(surrogates, surrogate)()
    node = LIFNode(backend=backend, surrogate_function=spike).double()
    compiled = torch.compile(node, fullgraph=True, backend="eager")
    x = (torch.rand(6, 3, 5, dtype=torch.float64) * 2).requires_grad_()
    with second_order(), pytest.raises(Exception, match=r"second_order\(\) is for eager mode"):
        compiled(x)


def test_under_the_opt_in_a_compiled_reference_loop_runs_eagerly():
    """Without fullgraph the refusal is a graph break: the neuron runs eagerly, where
    the reference loop's double backward is exact (under Dynamo's "eager" backend it
    silently lost the surrogate's terms before: d(derivative(x))/dx was dropped)."""
    from spikeflow.kernels import second_order

    x0 = torch.rand(8, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    results = []
    for compiled in (False, True):
        torch._dynamo.reset()
        node = LIFNode(tau=2.0, backend="torch").double()
        run = torch.compile(node, backend="eager") if compiled else node
        x = (x0 * 2).requires_grad_()
        with second_order():
            spikes = run(x)
        (g,) = torch.autograd.grad((spikes.mean(0) ** 2).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(g.pow(2).sum(), x)[0])
    assert results[0].abs().max() > 1e-3
    torch.testing.assert_close(results[1], results[0], atol=1e-12, rtol=1e-10)
