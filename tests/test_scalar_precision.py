"""Sub-expressions of parameters and constants alone (``a * a``, KLIF's ``(1 - k) c``)
are computed by the reference loop in the types PyTorch gives them (a Python float is a
double, a 0-dim tensor its own dtype), not in the input's: the fused kernels compute them
so too (forward and the backward's replay), refuse what they cannot reproduce, and on a
GPU divide by a Python number as PyTorch's CUDA kernels do (a reciprocal multiply)."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

from conftest import fused_backends, kernel_device, run_compiler_child
from spikeflow.kernels import MixedPrecisionError
from spikeflow.kernels.codegen_triton import generate_triton
from spikeflow.kernels.precision import ScalarPrecisionError
from spikeflow.kernels.triton_backend import triton_available
from spikeflow.neurons import BaseNode, KLIFNode

BACKENDS = fused_backends()
F32, F64 = torch.float32, torch.float64


class Parametrised(BaseNode):
    """A test neuron whose equations' parameters (``PARAMS``) are given positionally:
    ``ScaledIF(0.7, backend="cpu")``; an ``nn.Parameter`` is registered as one."""

    PARAMS: tuple[str, ...] = ()

    def __init__(self, *values: object, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        for name, value in zip(self.PARAMS, values, strict=True):
            setattr(self, name, value)

    def neuron_params(self):
        return {name: getattr(self, name) for name in self.PARAMS}


class ScaledIF(Parametrised):
    """``x * (a * a)``: a product of a parameter with itself, then with the input."""

    PARAMS = ("a",)

    @staticmethod
    def charge(x, v, *, a):
        return v + x * (a * a)


class SigmoidLeak(Parametrised):
    """A PLIF-like leak with the sigmoid of a 0-dim parameter inside the equation."""

    PARAMS = ("w",)

    def __init__(self, w: torch.Tensor, **kwargs: object) -> None:
        super().__init__(torch.nn.Parameter(w), **kwargs)

    @staticmethod
    def charge(x, v, *, w):
        return v + (x - v) * torch.sigmoid(w)


class ScaledThreshold(Parametrised):
    """A threshold that is a product of the (Python float) threshold and a parameter."""

    PARAMS = ("scale",)

    @staticmethod
    def charge(x, v):
        return 0.9 * v + x

    @staticmethod
    def threshold(theta, *, scale):
        return theta * scale


class Leaky(Parametrised):
    """``(x - v) / tau``: divided by a Python float (or whatever tau is)."""

    PARAMS = ("tau",)

    @staticmethod
    def charge(x, v, *, tau):
        return v + (x - v) / tau


class ByLiteral(Parametrised):
    @staticmethod
    def charge(x, v):
        return v + (x - v) / 3.0


class BySquare(Parametrised):
    """Divided by an expression of Python floats (a Python float in the reference)."""

    PARAMS = ("tau",)

    @staticmethod
    def charge(x, v, *, tau):
        return v + (x - v) / (tau * tau)


def _value(kind: str, value: float, device: torch.device) -> object:
    """A parameter value: a Python float, or a 0-dim tensor that requires grad."""
    if kind == "float":
        return value
    dtype = {"f32": F32, "f64": F64}[kind]
    return torch.nn.Parameter(torch.tensor(value, dtype=dtype, device=device))


def _run(make, x: torch.Tensor, backend: str, grad: bool = True):
    """(spikes, v_seq, x.grad, grads of the module's parameters) of ``make(backend)``."""
    node = make(backend)
    xi = x.clone().requires_grad_(grad)
    spikes = node(xi)
    grads = []
    if grad:
        g = torch.randn(spikes.shape, generator=torch.Generator().manual_seed(1))
        (spikes * g.to(x.device, spikes.dtype)).sum().backward()
        grads = [p.grad for p in node.parameters()]
    return spikes, node.v_seq, xi.grad, grads


def _assert_matches(make, x: torch.Tensor, backend: str, grad: bool = True) -> None:
    """Spikes identical and the membrane bit-identical to the reference loop's;
    gradients close."""
    sr, vr, gr, pr = _run(make, x, "torch", grad)
    sf, vf, gf, pf = _run(make, x, backend, grad)
    assert torch.equal(sr, sf), f"{int((sr != sf).sum())} spikes differ"
    assert vr.dtype == vf.dtype
    assert torch.equal(vr, vf), f"membrane differs by up to {float((vr - vf).abs().max()):.3g}"
    if grad:
        tol = 1e-5 if x.dtype == F32 else 1e-10
        torch.testing.assert_close(gf, gr, rtol=tol, atol=tol)
        for a, b in zip(pf, pr):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _input(dtype: torch.dtype, device: torch.device, n: int = 1000) -> torch.Tensor:
    return torch.rand(8, 2, n, generator=torch.Generator().manual_seed(0)).to(device, dtype)


# -- the scalar-only sub-expressions follow PyTorch's types ---------------------------


class CastSquare(Parametrised):
    """A cast inside a sub-expression of parameters: PyTorch rounds a float64 ``a`` to
    float32 before squaring it."""

    PARAMS = ("a",)

    @staticmethod
    def charge(x, v, *, a):
        return v + x * (a.float() * a.float())


class CastComparison(Parametrised):
    """``(a > b).double()``: a float64 0/1, whose products stay float64."""

    PARAMS = ("a", "b")

    @staticmethod
    def charge(x, v, *, a, b):
        return 0.5 * v + x * ((a > b).double() * 0.1 + 0.2)


class NumberOverState(Parametrised):
    """``0.37 / (1 + v)``: PyTorch computes ``(1 + v).reciprocal() * 0.37``."""

    @staticmethod
    def charge(x, v):
        return 0.5 * v + x + 0.37 / (1.0 + v)


@pytest.mark.parametrize("backend", BACKENDS)
def test_casts_and_reversed_division_follow_pytorch(backend):
    device = kernel_device(backend)
    a64 = torch.tensor(1.3933763242007426, dtype=F64, device=device)
    b64 = torch.tensor(0.5, dtype=F64, device=device)
    x32, x64 = _input(F32, device), _input(F64, device)
    _assert_matches(lambda b: CastSquare(a64, backend=b, store_v_seq=True), x32, backend, False)
    _assert_matches(
        lambda b: CastComparison(a64, b64, backend=b, store_v_seq=True), x64, backend, False
    )
    _assert_matches(lambda b: NumberOverState(backend=b, store_v_seq=True), x32, backend)


class NumberOverParameter(Parametrised):
    """``0.37 / (1 + b)``: Python divides a Python float ``b``; PyTorch computes a tensor
    ``b``'s as ``(1 + b).reciprocal() * 0.37``."""

    PARAMS = ("b",)

    @staticmethod
    def charge(x, v, *, b):
        return 0.5 * v + x * (0.37 / (1.0 + b))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["float", "f32", "f64", "per-neuron"])
def test_a_number_divided_by_parameters_follows_their_type(backend, kind):
    device = kernel_device(backend)
    x = _input(F32, device)
    if kind == "per-neuron":
        b = torch.linspace(0.1, 3.0, x.shape[-1], device=device)
    else:
        b = _value(kind, 0.7071, device)
    _assert_matches(lambda be: NumberOverParameter(b, backend=be, store_v_seq=True), x, backend)


class WidenedInComparison(Parametrised):
    """``a.double()`` of a per-neuron float32 ``a``, only compared: no mixed precision."""

    PARAMS = ("a",)

    @staticmethod
    def charge(x, v, *, a):
        return 0.5 * v + x * torch.where(v > a.double(), 0.5, 1.0)


class WidenedProduct(WidenedInComparison):
    """``x * a.double()``: the reference computes the membrane in float64 (refused)."""

    @staticmethod
    def charge(x, v, *, a):
        return 0.5 * v + x * a.double()


class CastLikeInput(CastSquare):
    """``a.to(x)``: the input's dtype, as ``a.to(x.dtype)``."""

    @staticmethod
    def charge(x, v, *, a):
        return v + x * (a.to(x) * a.to(x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_widening_casts_of_per_neuron_parameters(backend):
    device = kernel_device(backend)
    x = _input(F32, device)
    a = torch.linspace(0.1, 0.6, x.shape[-1], device=device)
    _assert_matches(lambda b: WidenedInComparison(a, backend=b, store_v_seq=True), x, backend)
    with pytest.raises(MixedPrecisionError, match=r"parameter 'a'"):
        WidenedProduct(a, backend=backend)(x)
    a64 = torch.tensor(1.3933763242007426, dtype=F64, device=device)
    _assert_matches(lambda b: CastLikeInput(a64, backend=b, store_v_seq=True), x, backend, False)


def test_a_refusal_names_the_tensor_not_the_python_float():
    class Select(Parametrised):
        PARAMS = ("a", "b")

        @staticmethod
        def charge(x, v, *, a, b):
            return v + torch.where(x > 0.5, a, b)

    node = Select(torch.tensor(0.3, dtype=F64), 0.1, backend="cpu")
    with pytest.raises(MixedPrecisionError, match=r"parameter 'a' is a 0-dim torch\.float64"):
        node(_input(F32, torch.device("cpu")))


_DIVIDED = {
    "by a Python float": lambda b: Leaky(2.7, backend=b, store_v_seq=True),
    "by a literal": lambda b: ByLiteral(backend=b, store_v_seq=True),
    "by an expression of Python floats": lambda b: BySquare(1.3, backend=b, store_v_seq=True),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("input_dtype", [F32, F64])
@pytest.mark.parametrize("case", list(_DIVIDED))
def test_division_by_python_numbers_matches_the_reference(backend, input_dtype, case):
    """On the CPU the reference divides; on a GPU PyTorch multiplies by the reciprocal of
    a Python-number divisor, and so must the GPU flavour (run here on CUDA tensors when
    there is a GPU: the check of that flavour against CUDA itself)."""
    x = _input(input_dtype, kernel_device(backend)) * 2
    _assert_matches(_DIVIDED[case], x, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("input_dtype", [F32, F64])
@pytest.mark.parametrize("kind", ["float", "f32", "f64"])
def test_product_of_a_parameter_with_itself(backend, input_dtype, kind):
    """``a * a``: a Python float squares in double, a 0-dim tensor in its dtype, then
    rounded to the input's dtype (before the fix: float32 input with a Python float or
    a float64 ``a``, float64 input with a float32 ``a`` differed by an ulp)."""
    device = kernel_device(backend)
    x = _input(input_dtype, device)

    def make(b):
        return ScaledIF(_value(kind, 0.7, device), backend=b, store_v_seq=True)

    _assert_matches(make, x, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("module_dtype", "input_dtype"), [(F32, F64), (F64, F32), (F32, F32)])
def test_klif_scaled_reset_with_a_0dim_k_of_another_dtype(backend, module_dtype, input_dtype):
    """KLIF's ``(1.0 - k) * v_rest`` (charge and threshold) in k's own dtype."""
    device = kernel_device(backend)
    x = (1.5 * _input(F64, device, 200)).to(input_dtype)

    def make(b):
        node = KLIFNode(scale_reset=True, v_reset=0.1, store_v_seq=True, backend=b)
        node = node.to(device, module_dtype)
        with torch.no_grad():
            node.k.fill_(1.3)
        return node

    _assert_matches(make, x, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("w_dtype", "input_dtype"), list(itertools.product([F32, F64], repeat=2)))
def test_sigmoid_of_a_0dim_parameter(backend, w_dtype, input_dtype):
    """A unary function of a 0-dim parameter is computed in its dtype (exact with
    float32 everywhere before the fix, and still so)."""
    device = kernel_device(backend)
    x = _input(input_dtype, device)

    def make(b):
        w = torch.tensor(-0.35, dtype=w_dtype, device=device)
        return SigmoidLeak(w, backend=b, store_v_seq=True)

    _assert_matches(make, x, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("input_dtype", [F32, F64])
@pytest.mark.parametrize("kind", ["float", "f32", "f64"])
def test_threshold_times_a_parameter(backend, input_dtype, kind):
    """A Python-float threshold times a parameter: the threshold is a scalar too (soft
    reset: the membrane after a spike shows the threshold's rounding)."""
    device = kernel_device(backend)
    x = 1.2 * _input(input_dtype, device)

    def make(b):
        scale = _value(kind, 0.7, device)
        return ScaledThreshold(scale, v_threshold=1.3, v_reset=None, backend=b, store_v_seq=True)

    _assert_matches(make, x, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_narrower_per_neuron_array_is_reproduced(backend):
    """A float32 per-neuron ``a`` with a float64 input: ``a * a`` is float32 arithmetic
    in the reference, and in the kernels."""
    device = kernel_device(backend)
    x = _input(F64, device)
    a = torch.linspace(0.5, 0.9, x.shape[-1], device=device)

    def make(b):
        return ScaledIF(a, backend=b, store_v_seq=True)

    _assert_matches(make, x, backend, grad=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_operand_dtypes_are_part_of_the_kernel_key(backend):
    """One neuron class called in turn with a Python float, a float64 and a float32
    0-dim ``a``: each gets its own kernels (a shared one would round one of them)."""
    device = kernel_device(backend)
    x = _input(F32, device)
    for kind in ("float", "f64", "f32", "float", "f64"):

        def make(b, kind=kind):
            return ScaledIF(_value(kind, 0.7, device), backend=b, store_v_seq=True)

        _assert_matches(make, x, backend, grad=False)


# -- what the kernels refuse ----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(), (1000,)], ids=["0-dim", "per-neuron"])
def test_half_parameter_in_a_scalar_only_expression_is_refused(backend, shape):
    """``a * a`` with a float16 ``a`` and a float32 input is float16 arithmetic in the
    reference: an explicit fused backend refuses it, ``auto`` runs the reference loop."""
    device = kernel_device(backend)
    x = _input(F32, device)
    a = torch.full(shape, 0.7, dtype=torch.float16, device=device)
    with pytest.raises(MixedPrecisionError, match="float16") as info:
        with torch.no_grad():
            ScaledIF(a, backend=backend)(x)
    assert isinstance(info.value, ScalarPrecisionError)
    assert info.value.dtype == torch.float16 and info.value.value == "parameter 'a'"
    if backend == "cpu":
        ref = ScaledIF(a, backend="torch", store_v_seq=True)
        auto = ScaledIF(a, backend="auto", store_v_seq=True)
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert torch.equal(auto(x), ref(x))
        assert torch.equal(auto.v_seq, ref.v_seq)
        assert any("reference loop" in str(w.message) for w in caught)


@pytest.mark.parametrize("backend", BACKENDS)
def test_half_parameter_meeting_the_input_directly_is_accepted(backend):
    """``x * a`` with a 0-dim float16 ``a``: PyTorch converts ``a`` to float32, exactly."""

    class Direct(Parametrised):
        @staticmethod
        def charge(x, v, *, a):
            return v + x * a

        def neuron_params(self):
            return {"a": torch.tensor(0.7, dtype=torch.float16, device=device)}

    device = kernel_device(backend)
    x = _input(F32, device)
    _assert_matches(lambda b: Direct(backend=b, store_v_seq=True), x, backend, grad=False)


# -- division by a Python number on a GPU ---------------------------------------------


class _NoKernels:
    """Kernels that do nothing (the tests read the specs or the sources only)."""

    def forward(self, *args: object) -> None:
        pass

    def backward(self, *args: object) -> None:
        pass


def _recording_launcher(record):
    """A launcher that hands each spec to ``record`` and builds no kernels (its own
    registry entries: forget them after use)."""

    def launcher(spec):
        record(spec)
        return _NoKernels()

    launcher.__name__ = f"recording_{id(launcher)}"
    return launcher


def _exact_source(node: BaseNode, x: torch.Tensor, exact: bool = True) -> str:
    """The Triton source (GPU flavour) the node's call would compile, without running it."""
    from spikeflow.kernels import fused
    from spikeflow.kernels.triton_backend import run_with_launcher

    sources: list[str] = []
    launcher = _recording_launcher(lambda spec: sources.append(generate_triton(spec, exact)))
    try:
        with torch.no_grad():
            run_with_launcher(launcher, node.declaration(), x, node.initial_state(x[0]),
                              node.neuron_params(), node.v_threshold, node.firing_rule)  # fmt: skip
    finally:
        fused.forget(launcher)
    return sources[0]


pytestmark_triton = pytest.mark.skipif(
    not triton_available(), reason="triton (the 'triton' extra) is not installed"
)


@pytestmark_triton
def test_gpu_flavour_multiplies_by_the_reciprocal_of_a_python_number():
    x = torch.rand(3, 4)
    src = _exact_source(Leaky(3.0), x)
    assert "(tmp0 * tl.div_rn(1.0 + zero_, p__tau))" in src
    # The literal's reciprocal, rounded to float32 / float64 (1/3 is inexact in both).
    src = _exact_source(ByLiteral(), x)
    assert f"* {float(torch.tensor(1.0) / torch.tensor(3.0))!r})" in src
    src64 = _exact_source(ByLiteral(), x.double())
    assert f"* {1 / 3!r})" in src64
    # An expression of Python floats: a Python float too, rounded to float32 first.
    src = _exact_source(BySquare(1.7), x)
    assert "tl.div_rn(1.0 + zero_, (tmp0).to(CT))" in src
    # A tensor divisor (a device tensor on a GPU) is divided by.
    forward = _exact_source(Leaky(torch.tensor(3.0)), x).split("def spikeflow_backward")[0]
    assert "tl.div_rn(tmp0, p__tau)" in forward and "zero_, p__tau)" not in forward
    # The interpreter's flavour (compared with the CPU reference) divides.
    src = _exact_source(Leaky(3.0), x, exact=False)
    assert "(tmp0 / p__tau)" in src


@pytestmark_triton
@pytest.mark.parametrize("dtype", [F32, F64])
def test_gpu_flavour_arithmetic_is_cudas(dtype):
    """The GPU flavour, run by the interpreter (this neuron calls no libdevice function),
    equals an emulation of PyTorch's CUDA arithmetic, ``(x - v) * (1 / tau)`` with
    ``1 / tau`` rounded to the input's dtype, bit for bit; CPU true division differs."""
    from spikeflow.kernels import fused
    from spikeflow.kernels.triton_backend import (
        _module,
        _TritonKernels,
        interpreting,
        run_with_launcher,
    )

    if not interpreting():
        pytest.skip("emulated on the interpreter; on a GPU tests/test_kernels_cuda.py applies")
    tau, theta = 2.7, 1.0
    x = 2.0 * torch.rand(6, 2, 4000, dtype=dtype, generator=torch.Generator().manual_seed(3))

    def launcher(spec):
        return _TritonKernels(_module(generate_triton(spec, exact=True)), spec.record_v)

    launcher.__name__ = "exact_flavour_on_the_interpreter"
    node = Leaky(tau)
    try:
        with torch.no_grad():
            spikes, _, v_seq = run_with_launcher(
                launcher, node.declaration(), x, node.initial_state(x[0]),
                node.neuron_params(), theta, node.firing_rule, record_v=True,
            )  # fmt: skip
    finally:
        fused.forget(launcher)

    inv = torch.tensor(1.0, dtype=dtype) / torch.tensor(tau, dtype=dtype)
    v = torch.zeros_like(x[0])
    cuda_s, cuda_v, true_v = [], [], []
    v_true = v.clone()
    for xt in x:  # the reference loop's arithmetic (hard reset to 0)
        h = v + (xt - v) * inv  # CUDA: a tensor divided by a CPU scalar
        s = (h - theta >= 0).to(dtype)
        v = h * (1.0 - s) + 0.0 * s
        cuda_s.append(s)
        cuda_v.append(v)
        h_true = v_true + (xt - v_true) / tau  # CPU: true division
        s_true = (h_true - theta >= 0).to(dtype)
        v_true = h_true * (1.0 - s_true) + 0.0 * s_true
        true_v.append(v_true)
    assert torch.equal(spikes, torch.stack(cuda_s))
    assert torch.equal(v_seq, torch.stack(cuda_v))
    assert not torch.equal(v_seq, torch.stack(true_v))  # the two roundings do differ


# -- built-in neurons -------------------------------------------------------------------


def test_builtin_neurons_have_no_scalar_only_subexpressions():
    """Their default configurations compute everything in the input's type, as before:
    the generated code does not change."""
    from spikeflow.kernels import fused
    from spikeflow.kernels.cpu import run_cpu  # noqa: F401  (the C backend's module)
    from spikeflow.kernels.fused import run_fused
    from spikeflow.neurons import (
        ALIFNode,
        ComplementaryLIFNode,
        CubaLIFNode,
        EIFNode,
        IFNode,
        IzhikevichNode,
        LIFNode,
        PLIFNode,
        QIFNode,
        RAFNode,
    )

    specs: list = []
    launcher = _recording_launcher(specs.append)
    nodes = [LIFNode(), PLIFNode(), IFNode(), IzhikevichNode(), ALIFNode(), KLIFNode(),
             KLIFNode(scale_reset=True), CubaLIFNode(), EIFNode(), QIFNode(),
             ComplementaryLIFNode(), ComplementaryLIFNode(v_reset=0.0), RAFNode()]  # fmt: skip
    try:
        for node, dtype in itertools.product(nodes, [F32, F64]):
            node = node.to(dtype)
            x = torch.rand(3, 5, dtype=dtype)
            specs.clear()
            with torch.no_grad():
                run_fused(launcher, "float" if dtype == F32 else "double", dtype, 1,
                          node.declaration(), x, node.initial_state(x[0]),
                          node.neuron_params(), node.v_threshold, node.firing_rule,
                          False)  # fmt: skip
            (spec,) = specs
            assert spec.operands, type(node).__name__
            # (KLIF's scaled reset has (1 - k) * v_rest, computed in k's dtype: the input's.)
            assert set(spec.typing.compute.values()) <= {dtype}, type(node).__name__
            assert not spec.typing.raw, type(node).__name__
    finally:
        fused.forget(launcher)


@pytestmark_triton
def test_gpu_flavour_of_typed_subexpressions_compiles_for_sm90():
    """Float64 arithmetic inside a float32 kernel (and float32 inside a float64 one)
    compiles for a GPU: Triton's compiler, with the interpreter off, in a child."""
    import textwrap

    child = textwrap.dedent(
        """
        import json, re, sys, torch
        sys.path.insert(0, TESTS)
        from test_scalar_precision import BySquare, Leaky, ScaledIF, SigmoidLeak
        from spikeflow.kernels.triton_aot import compile_for_gpu
        from spikeflow.neurons import KLIFNode

        f64 = torch.nn.Parameter(torch.tensor(0.7, dtype=torch.float64))
        cases = {
            "python_float": (ScaledIF(0.7), torch.float32),
            "f64_in_f32": (ScaledIF(f64), torch.float32),
            "klif_f32_in_f64": (KLIFNode(scale_reset=True, v_reset=0.1), torch.float64),
            "sigmoid_f64_in_f32": (SigmoidLeak(torch.tensor(-0.3, dtype=torch.float64)),
                                   torch.float32),
            "reciprocal": (BySquare(1.7), torch.float32),
            "leaky": (Leaky(3.0), torch.float32),
        }
        out = {}
        for name, (node, dtype) in cases.items():
            k = compile_for_gpu(node, torch.rand(6, 3, 4).to(dtype))
            fwd = k.forward.asm["ptx"]
            out[name] = {
                "cubin": min(len(k.forward.asm["cubin"]), len(k.backward.asm["cubin"])),
                "f64": len(re.findall(r"\\b(mul|add|sub)\\.rn\\.f64\\b", fwd)),
                "div_rn": len(re.findall(r"\\bdiv\\.rn\\.f32\\b", fwd)),
            }
        print(json.dumps(out))
        """
    )
    out = run_compiler_child(child)
    assert all(info["cubin"] > 1000 for info in out.values()), out
    assert out["python_float"]["f64"] >= 1 and out["f64_in_f32"]["f64"] >= 1  # a * a
    assert out["leaky"]["div_rn"] >= 1  # 1 / tau, IEEE, then a multiply
